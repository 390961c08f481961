//! The C header encodes exactly what the Rust crate encodes: a C program built with the
//! system's C compiler prints the line for the same beacon.

use std::process::Command;

use bootproof_beacon::{Beacon, Canary, Slot, Stage, Version, flags};

#[test]
fn the_c_header_matches_the_rust_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("beacon.c");
    let exe = dir.path().join("beacon");
    std::fs::write(
        &src,
        r#"
#include <stdio.h>
#include "bootproof_beacon.h"
int main(void) {
    bootproof_beacon_t b = { BOOTPROOF_STAGE_APPLICATION, BOOTPROOF_SLOT_B, 2, 1, 300, 7,
        0x00FA0000u, 0x08080400u, BOOTPROOF_CANARY_RETAINED,
        BOOTPROOF_FLAG_TRIAL | BOOTPROOF_FLAG_CONFIRMED, 3 };
    char line[72];
    bootproof_beacon_line(&b, line);
    puts(line);
    return 0;
}
"#,
    )
    .unwrap();
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-I", include, "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("running the C compiler `{cc}`: {e}: install gcc (or set CC)"));
    assert!(out.status.success(), "the C header does not compile: {}", String::from_utf8_lossy(&out.stderr));
    let printed = Command::new(&exe).output().unwrap();
    let c_line = String::from_utf8(printed.stdout).unwrap();
    let b = Beacon {
        stage: Stage::Application,
        slot: Slot::B,
        version: Version { major: 2, minor: 1, revision: 300, build: 7 },
        reset_flags: 0x00FA_0000,
        vector_table: 0x0808_0400,
        canary: Canary::Retained,
        flags: flags::TRIAL | flags::CONFIRMED,
        boots: 3,
    };
    let mut rust_line = String::new();
    b.write_line(&mut rust_line).unwrap();
    assert_eq!(c_line.trim(), &rust_line[..7 + 64]);
    assert_eq!(Beacon::parse_line(&c_line), Ok(b));
}
