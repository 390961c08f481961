//! The trusted public key the bootloader checks images with, and the application checks its
//! own image with when it confirms: BOOTPROOF_TRUST_KEY (a PEM public or private key), else
//! the repository's test key A (test-only!).

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
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
