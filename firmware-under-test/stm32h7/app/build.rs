//! Linker scripts from boot-core's layout (one per binary: the start of flash, slot A, slot B).

use std::path::PathBuf;

use boot_core::layout::{H723, LinkFor, SlotId};

/// RAM: data, stack and the defmt-RTT buffer in DTCM; the canary in SRAM4 (its last 8 bytes
/// are the update-mode request, `bootproof_h7::request`), which neither the
/// ROM bootloader (its own RAM is the start of AXI SRAM) nor a reset touches.
const RAM: &str = "  RAM : ORIGIN = 0x20000000, LENGTH = 128K\n  SRAM4 : ORIGIN = 0x38000000, LENGTH = 16376\n";
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
    println!("cargo:rerun-if-changed=build.rs");
}
