//! The firmware linker scripts agree with the one layout definition (failure mode F13 in
//! update-design.md: a bootloader and an app that disagree about partitions).
//!
//! Every `memory.x` under firmware-under-test/ must contain exactly the `MEMORY` block that
//! `Layout::memory_x` generates for what it links (the bootloader, or an app for slot A or B),
//! named by its first line's comment. The firmware crates generate theirs from this crate in
//! their build scripts; this test catches a hand edit.

use std::path::{Path, PathBuf};

use boot_core::layout::{H723, LinkFor, SlotId};

fn memory_x_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && !p.ends_with("target") {
            memory_x_files(&p, out);
        } else if p.file_name().is_some_and(|n| n == "memory.x") {
            out.push(p);
        }
    }
}

#[test]
fn generated_memory_x_matches_the_layout_table() {
    let bl = H723.memory_x(LinkFor::Bootloader);
    assert!(bl.contains("FLASH : ORIGIN = 0x08000000, LENGTH = 0x20000"), "{bl}");
    let a = H723.memory_x(LinkFor::Slot(SlotId::A));
    // Slot A: 0x08020000 + 0x400 header, 384 KiB − header − 512-byte trailer.
    assert!(a.contains("FLASH : ORIGIN = 0x08020400, LENGTH = 0x5FA00"), "{a}");
    let b = H723.memory_x(LinkFor::Slot(SlotId::B));
    assert!(b.contains("FLASH : ORIGIN = 0x08080400, LENGTH = 0x5FA00"), "{b}");
    let whole = H723.memory_x(LinkFor::WholeFlash);
    assert!(whole.contains("FLASH : ORIGIN = 0x08000000, LENGTH = 0x100000"), "{whole}");
}

#[test]
fn firmware_linker_scripts_agree_with_the_layout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    memory_x_files(&root, &mut files);
    if files.is_empty() {
        println!("no firmware linker scripts yet (firmware-under-test/**/memory.x): nothing to compare");
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let want = if text.contains("slot A") {
            H723.memory_x(LinkFor::Slot(SlotId::A))
        } else if text.contains("slot B") {
            H723.memory_x(LinkFor::Slot(SlotId::B))
        } else if text.contains("no bootloader") {
            H723.memory_x(LinkFor::WholeFlash)
        } else {
            H723.memory_x(LinkFor::Bootloader)
        };
        let block = |t: &str| t.lines().filter(|l| l.contains("ORIGIN")).map(str::trim).collect::<Vec<_>>().join("\n");
        assert_eq!(block(&text), block(&want), "{} disagrees with boot-core's layout", f.display());
    }
}
