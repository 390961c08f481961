//! The bootloader's linker script from boot-core's layout: sector 0 only, so a bootloader that
//! outgrows it fails to link instead of spilling into slot A. RAM: DTCM (SRAM4 is the
//! application's canary, which the bootloader must not touch).

use std::path::PathBuf;

use boot_core::layout::{H723, LinkFor};

const RAM: &str = "  RAM : ORIGIN = 0x20000000, LENGTH = 128K\n";

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let text = H723.memory_x(LinkFor::Bootloader).replacen("}\n", &format!("{RAM}}}\n"), 1);
    std::fs::write(out.join("memory.x"), text).unwrap();
    println!("cargo:rustc-link-arg-bin=bootloader=-L{}", out.display());
    println!("cargo:rerun-if-changed=build.rs");
}
