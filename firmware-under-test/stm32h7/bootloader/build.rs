//! The bootloader's linker script from boot-core's layout: sector 0 only, so a bootloader that
//! outgrows it fails to link instead of spilling into slot A. RAM: DTCM (SRAM4 is the
//! application's canary, which the bootloader must not touch).

use std::path::PathBuf;

use boot_core::layout::{H723, LinkFor};

const RAM: &str = "  RAM : ORIGIN = 0x20000000, LENGTH = 128K\n  ITCM : ORIGIN = 0x00001000, LENGTH = 60K\n  AXISRAM : ORIGIN = 0x24000000, LENGTH = 320K\n";

/// Code that runs while the flash bank erases (`src/ram.rs`): in ITCM, loaded from flash and
/// copied at start (`ram::init`); the receive ring in AXI SRAM, not initialised. ITCM starts
/// at 0x1000, so no function sits at address 0.
const SECTIONS: &str = "
SECTIONS
{
  .itcm_text : ALIGN(4)
  {
    __sitcm_text = .;
    *(.itcm_text .itcm_text.*);
    . = ALIGN(4);
    __eitcm_text = .;
  } > ITCM AT > FLASH
  __siitcm_text = LOADADDR(.itcm_text);

  .axisram (NOLOAD) : ALIGN(8)
  {
    *(.axisram .axisram.*);
  } > AXISRAM
} INSERT AFTER .gnu.sgstubs;
";

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let text = H723.memory_x(LinkFor::Bootloader).replacen("}\n", &format!("{RAM}}}\n"), 1) + SECTIONS;
    std::fs::write(out.join("memory.x"), text).unwrap();
    println!("cargo:rustc-link-arg-bin=bootloader=-L{}", out.display());
    println!("cargo:rerun-if-changed=build.rs");
}
