//! Linker scripts from boot-core's layout (one per binary: the start of flash, slot A, slot B)
//! and the trusted public key the application checks its own image with when it confirms.

use std::fmt::Write as _;
use std::path::PathBuf;

use boot_core::layout::{H723, LinkFor, SlotId};

/// RAM: data, stack and the defmt-RTT buffer in DTCM; the canary in SRAM4, which neither the
/// ROM bootloader (its own RAM is the start of AXI SRAM) nor a reset touches.
const RAM: &str = "  RAM : ORIGIN = 0x20000000, LENGTH = 128K\n  SRAM4 : ORIGIN = 0x38000000, LENGTH = 16K\n";
const SECTIONS: &str = "\nSECTIONS\n{\n  .canary (NOLOAD) : ALIGN(8)\n  {\n    KEEP(*(.canary .canary.*));\n  } > SRAM4\n}\nINSERT BEFORE .uninit;\n";

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for (dir, to) in
        [("flash", LinkFor::WholeFlash), ("slot-a", LinkFor::Slot(SlotId::A)), ("slot-b", LinkFor::Slot(SlotId::B))]
    {
        let flash = H723.memory_x(to);
        let text = flash.replacen("}\n", &format!("{RAM}}}\n"), 1) + SECTIONS;
        let d = out.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("memory.x"), text).unwrap();
    }
    for (bin, dir) in [
        ("app", "flash"),
        ("app-slot-a", "slot-a"),
        ("app-slot-b", "slot-b"),
        ("app-slot-a-noconfirm", "slot-a"),
        ("app-slot-b-noconfirm", "slot-b"),
    ] {
        println!("cargo:rustc-link-arg-bin={bin}=-L{}", out.join(dir).display());
    }
    // The trusted key: BOOTPROOF_TRUST_KEY (a PEM public or private key), else the repository's
    // test key A (test-only!).
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../fixtures/keys/test-ed25519-a.pem");
    let path = std::env::var("BOOTPROOF_TRUST_KEY").unwrap_or_else(|_| default.to_string());
    let key = fut_image::keys::load_public(std::path::Path::new(&path))
        .unwrap_or_else(|e| panic!("BOOTPROOF_TRUST_KEY {path}: {e}"));
    let mut keys =
        String::from("/// Trusted Ed25519 public keys (from build.rs).\npub const TRUSTED: [[u8; 32]; 1] = [[");
    for b in key.public {
        write!(keys, "{b:#04x}, ").unwrap();
    }
    keys.push_str("]];\n");
    std::fs::write(out.join("trusted_keys.rs"), keys).unwrap();
    println!("cargo:rerun-if-env-changed=BOOTPROOF_TRUST_KEY");
    println!("cargo:rerun-if-changed={path}");
    println!("cargo:rerun-if-changed=build.rs");
}
