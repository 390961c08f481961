//! `bootproof image sign|verify|inspect`: the host tools for signed images.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bootproof(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootproof")).args(args).current_dir(dir).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn key(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/keys").join(name).display().to_string()
}

fn standin(dir: &Path, base: &str, out: &str) -> PathBuf {
    let o = bootproof(
        &["image", "standin", "--board", "stm32h723zg", "--base", base, "--app-version", "3", "--out", out],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    dir.join(out)
}

#[test]
fn sign_verify_inspect_round_trip_and_provisioning_hex() {
    let d = tempfile::tempdir().unwrap();
    standin(d.path(), "0x08080400", "app.bin");
    let ka = key("test-ed25519-a.pem");
    let o = bootproof(
        &[
            "image",
            "sign",
            "app.bin",
            "--key",
            &ka,
            "--slot",
            "b",
            "--image-version",
            "2.1.0+9",
            "--security-counter",
            "4",
            "--out",
            "app.signed.bin",
            "--provision",
            "app.hex",
            "--confirm",
        ],
        d.path(),
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("v2.1.0+9 for slot B (0x08080000), security counter 4"), "{t}");
    let o = bootproof(&["image", "verify", "app.signed.bin", "--key", &ka], d.path());
    assert!(o.status.success() && text(&o).starts_with("VALID"), "{}", text(&o));
    // The HEX holds the image and the two trailer words, nothing between.
    let hex = std::fs::read_to_string(d.path().join("app.hex")).unwrap();
    assert!(hex.starts_with(":020000040808"), "{hex}");
    assert!(hex.contains(":02000004080D"), "the trailer lives at the end of slot B: {hex}");
    let o = bootproof(&["image", "inspect", "app.signed.bin"], d.path());
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for want in ["version           2.1.0+9", "SEC_CNT", "KEYHASH", "ED25519", "(matches)", "slot              B"] {
        assert!(t.contains(want), "inspect lacks {want:?}: {t}");
    }
}

#[test]
fn verify_names_the_reason_and_fails() {
    let d = tempfile::tempdir().unwrap();
    standin(d.path(), "0x08020400", "app.bin");
    let ka = key("test-ed25519-a.pem");
    let kb = key("test-ed25519-b.pem");
    let o = bootproof(
        &["image", "sign", "app.bin", "-k", &ka, "--slot", "a", "--image-version", "1", "-o", "s.bin"],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    for (args, reason) in [
        (vec!["--key", kb.as_str()], "(unknown-key)"),
        (vec!["--key", ka.as_str(), "--slot", "b"], "(wrong-load-address)"),
        (vec!["--key", ka.as_str(), "--min-security-counter", "1"], "(rollback)"),
    ] {
        let mut a = vec!["image", "verify", "s.bin"];
        a.extend(args);
        let o = bootproof(&a, d.path());
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(reason), "{reason}: {}", text(&o));
    }
    let mut bytes = std::fs::read(d.path().join("s.bin")).unwrap();
    bytes[0x600] ^= 4;
    std::fs::write(d.path().join("bad.bin"), &bytes).unwrap();
    let o = bootproof(&["image", "verify", "bad.bin", "--key", &ka], d.path());
    assert!(text(&o).contains("(hash-mismatch)"), "{}", text(&o));
    let o = bootproof(&["image", "inspect", "bad.bin"], d.path());
    assert!(text(&o).contains("MISMATCH"), "{}", text(&o));
}

#[test]
fn bad_inputs_get_clear_errors_and_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    standin(d.path(), "0x08020400", "app.bin");
    let ka = key("test-ed25519-a.pem");
    let cases: [(&[&str], &str); 5] = [
        (
            &["image", "sign", "app.bin", "-k", &ka, "--slot", "b", "--image-version", "1", "-o", "o.bin"],
            "in slot A, not in slot B",
        ),
        (
            &["image", "sign", "app.bin", "-k", "missing.pem", "--slot", "a", "--image-version", "1", "-o", "o.bin"],
            "cannot read key file missing.pem",
        ),
        (
            &["image", "sign", "app.bin", "-k", "app.bin", "--slot", "a", "--image-version", "1", "-o", "o.bin"],
            "imgtool keygen",
        ),
        (
            &["image", "sign", "app.bin", "-k", &ka, "--slot", "a", "--image-version", "one", "-o", "o.bin"],
            "is not a version",
        ),
        (&["image", "inspect", "app.bin"], "not an MCUboot image"),
    ];
    for (args, want) in cases {
        let o = bootproof(args, d.path());
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    }
    assert!(!d.path().join("o.bin").exists(), "nothing written on error");
}

#[test]
fn private_keys_are_never_printed() {
    let d = tempfile::tempdir().unwrap();
    standin(d.path(), "0x08020400", "app.bin");
    let ka = key("test-ed25519-a.pem");
    let pem = std::fs::read_to_string(&ka).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let o = bootproof(
        &["image", "sign", "app.bin", "-k", &ka, "--slot", "a", "--image-version", "1", "-o", "s.bin", "-vvv"],
        d.path(),
    );
    let mut all = text(&o);
    for args in [vec!["image", "inspect", "s.bin"], vec!["image", "verify", "s.bin", "-k", ka.as_str(), "-vvv"]] {
        all += &text(&bootproof(&args, d.path()));
    }
    assert!(!all.contains(&body[..20]), "PEM body printed: {all}");
    assert!(!all.contains("PRIVATE KEY"), "{all}");
}

/// The README's example: sign the real application's slot-B build (its ELF) and verify it; the
/// slot-A build is refused for slot B, since it is linked for the other slot.
#[test]
fn the_readme_example_signs_the_real_slot_b_build() {
    let board = bootproof_fixtures::BoardProfile::builtin("stm32h723zg").unwrap();
    let fw = bootproof::firmware::for_board(&board).unwrap();
    fw.ensure_built().unwrap();
    let elf_b = fw.elf_path(bootproof::firmware::Binary::Slot(boot_core::layout::SlotId::B)).unwrap();
    let elf_a = fw.elf_path(bootproof::firmware::Binary::Slot(boot_core::layout::SlotId::A)).unwrap();
    let d = tempfile::tempdir().unwrap();
    let ka = key("test-ed25519-a.pem");
    let sign = |elf: &Path| {
        let elf = elf.display().to_string();
        let args = ["image", "sign", "--key", &ka, "--slot", "b", "--image-version", "1.2.3", &elf, "-o", "b.bin"];
        bootproof(&args, d.path())
    };
    let o = sign(&elf_b);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("v1.2.3+0 for slot B (0x08080000)"), "{}", text(&o));
    let o = bootproof(&["image", "verify", "--key", &ka, "--slot", "b", "b.bin"], d.path());
    assert!(o.status.success() && text(&o).starts_with("VALID"), "{}", text(&o));
    let o = sign(&elf_a);
    assert!(!o.status.success(), "a slot-A build signed for slot B: {}", text(&o));
    assert!(text(&o).contains("0x08020400"), "the error names where the build is linked: {}", text(&o));
}
