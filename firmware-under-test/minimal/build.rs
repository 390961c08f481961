//! One `memory.x` per binary, from the board's memory map (the same numbers as bootproof's
//! board profiles, fixtures/boards/*.toml). The last 64 bytes of RAM hold the canary: the
//! stack starts below them.

use std::path::PathBuf;

/// (binary, flash size, RAM size)
const BOARDS: [(&str, u32, u32); 2] =
    [("minimal-stm32f446re", 512 * 1024, 128 * 1024), ("minimal-stm32g071rb", 128 * 1024, 36 * 1024)];

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for (bin, flash, ram) in BOARDS {
        let dir = out.join(bin);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "/* {bin}: flash and RAM of the board; the canary in the last 64 bytes of RAM */\n\
             MEMORY\n{{\n  FLASH : ORIGIN = 0x08000000, LENGTH = {flash:#x}\n  RAM : ORIGIN = 0x20000000, LENGTH = {:#x}\n  CANARY : ORIGIN = {:#x}, LENGTH = 64\n}}\n\n\
             SECTIONS\n{{\n  .canary (NOLOAD) : ALIGN(8)\n  {{\n    KEEP(*(.canary .canary.*));\n  }} > CANARY\n}}\nINSERT BEFORE .uninit;\n",
            ram - 64,
            0x2000_0000 + ram - 64
        );
        std::fs::write(dir.join("memory.x"), text).unwrap();
        println!("cargo:rustc-link-arg-bin={bin}=-L{}", dir.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
