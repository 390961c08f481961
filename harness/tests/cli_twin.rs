//! The CLI on twins running real firmware: probe commands against the emulated core, and the
//! suite's exit codes (a run that proved nothing is not green).

use std::process::{Command, Output};

fn bootproof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootproof")).args(args).output().expect("bootproof runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn probe_info_shows_where_the_real_firmware_is() {
    let o = bootproof(&["--twin", "stm32h723zg", "--image", "bootproof", "probe", "info"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("core:   running at pc=0x08") && out.contains("(emulated), in "), "{out}");
    // The firmware cleared the flags it read (RMVF).
    assert!(out.contains("RCC_RSR: 0x00000000"), "{out}");
}

#[test]
fn a_blank_twin_is_locked_up_and_says_why() {
    let o = bootproof(&["--twin", "stm32h723zg", "probe", "info"]);
    let (out, _) = text(&o);
    assert!(out.contains("locked up") && out.contains("blank flash at boot address 0x08000000"), "{out}");
}

#[test]
fn probe_rtt_decodes_the_firmware_defmt_log() {
    let o = bootproof(&["--twin", "stm32h723zg", "--image", "bootproof", "probe", "rtt", "--ms", "300"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("INFO bootproof app 1.0.0 at 0x08000000: RCC_RSR 0x00fa0000, canary cold, boot 1"), "{out}");
}

#[test]
fn probe_step_and_regs_work_on_the_emulated_core() {
    let o = bootproof(&["--twin", "stm32h723zg", "--image", "bootproof", "probe", "step", "3"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(out.matches("step ").count(), 3, "{out}");
    let o = bootproof(&["--twin", "stm32h723zg", "--image", "bootproof", "probe", "regs"]);
    let (out, _) = text(&o);
    assert!(out.contains(" sp 0x2001") && out.contains("xpsr 0x"), "{out}");
}

#[test]
fn image_outside_a_twin_is_refused_with_the_fix() {
    let (_, err) = text(&bootproof(&["--image", "bootproof", "probe", "info"]));
    assert!(err.contains("--image programs a twin's flash") && err.contains("bootproof flash"), "{err}");
    let (_, err) = text(&bootproof(&["--twin", "stm32h723zg", "--image", "x.elf", "suite"]));
    assert!(err.contains("suite --app-image"), "{err}");
    let (_, err) = text(&bootproof(&["--twin", "stm32h723zg", "--image", "/nonexistent.elf", "probe", "info"]));
    assert!(err.contains("/nonexistent.elf"), "{err}");
}

#[test]
fn a_suite_that_proved_nothing_is_not_green() {
    // The G071 has no CAN ROM interface: seed-loop skips, nothing passes.
    let o = bootproof(&["suite", "--twin", "stm32g071rb", "--scenario", "seed-loop"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("NOT PROVED: nothing was proved"), "{out}");
}

#[test]
fn require_all_fails_on_a_skip_and_min_pass_counts() {
    let o = bootproof(&[
        "suite",
        "--twin",
        "stm32f446re",
        "--scenario",
        "rom-get-id",
        "--scenario",
        "signed-boot",
        "--require-all",
    ]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("--require-all: 1 scenario run(s) skipped"), "{out}");
    let o = bootproof(&["suite", "--twin", "stm32f446re", "--scenario", "rom-get-id", "--min-pass", "2"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o).0);
    let o =
        bootproof(&["suite", "--twin", "stm32f446re", "--scenario", "rom-get-id", "--require-all", "--min-pass", "1"]);
    assert!(o.status.success(), "{}", text(&o).0);
}

#[test]
fn app_image_runs_a_users_firmware_and_one_without_a_beacon_fails_clearly() {
    let fw =
        bootproof::firmware::for_board(&bootproof_fixtures::BoardProfile::builtin("stm32h723zg").unwrap()).unwrap();
    let elf = fw.elf_path(bootproof::firmware::Binary::Flash).unwrap();
    fw.ensure_built().unwrap();
    let o =
        bootproof(&["suite", "--twin", "stm32h723zg", "--scenario", "seed-loop", "--app-image", elf.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    // Firmware that never sends the beacon: a vector table over a loop (`b .`).
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("silent.bin");
    let mut img = vec![0u8; 0x404];
    img[..4].copy_from_slice(&0x2002_0000u32.to_le_bytes());
    img[4..8].copy_from_slice(&0x0800_0401u32.to_le_bytes());
    img[0x400..0x402].copy_from_slice(&0xE7FEu16.to_le_bytes());
    std::fs::write(&bin, img).unwrap();
    let o =
        bootproof(&["suite", "--twin", "stm32h723zg", "--scenario", "seed-loop", "--app-image", bin.to_str().unwrap()]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("no boot beacon on CAN or the console"), "{out}");
}

/// The slot-B build of the app signed for slot B with `key` as v2 (counter 2), in a temp dir.
fn signed_b(dir: &std::path::Path, key: &str) -> String {
    let board = bootproof_fixtures::BoardProfile::builtin("stm32h723zg").unwrap();
    let fw = bootproof::firmware::for_board(&board).unwrap();
    fw.ensure_built().unwrap();
    let elf = fw.elf_path(bootproof::firmware::Binary::Slot(boot_core::layout::SlotId::B)).unwrap();
    let out = dir.join("app-b.bin").display().to_string();
    let key = format!("{}/../fixtures/keys/{key}", env!("CARGO_MANIFEST_DIR"));
    let o = bootproof(&[
        "image",
        "sign",
        "--key",
        &key,
        "--slot",
        "b",
        "--image-version",
        "2.0.0",
        "--security-counter",
        "2",
        &elf.display().to_string(),
        "-o",
        &out,
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    out
}

fn key_a() -> String {
    format!("{}/../fixtures/keys/test-ed25519-a.pem", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn update_via_uds_on_the_factory_twin_boots_the_new_image_which_confirms_itself() {
    let d = tempfile::tempdir().unwrap();
    let img = signed_b(d.path(), "test-ed25519-a.pem");
    let o = bootproof(&[
        "--twin",
        "stm32h723zg",
        "--image",
        "bootproof-factory",
        "update",
        "--via",
        "uds",
        &img,
        "--key",
        &key_a(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("v2.0.0+0 for slot B, security counter 2, ") && out.contains("signature good"), "{out}");
    assert!(out.contains("slot B written and committed: "), "{out}");
    assert!(out.contains("booted: app 2.0.0+0 from slot B") && out.contains("trial, confirmed"), "{out}");
    assert!(out.contains("the new image confirmed itself: it stays"), "{out}");
}

#[test]
fn update_refuses_an_image_signed_with_an_untrusted_key_before_touching_the_board() {
    let d = tempfile::tempdir().unwrap();
    let img = signed_b(d.path(), "test-ed25519-b.pem");
    let o = bootproof(&["--twin", "stm32h723zg", "update", "--via", "uds", &img, "--key", &key_a()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("refused before sending") && err.contains("does not trust"), "{err}");
}

#[test]
fn uds_read_reports_the_bootloader_and_both_slots() {
    let o = bootproof(&["--twin", "stm32h723zg", "--image", "bootproof-factory", "uds", "read"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "the application answers, not the bootloader: {out}{err}");
    assert!(err.contains("pass --enter"), "{err}");
    let o = bootproof(&["--twin", "stm32h723zg", "--image", "bootproof-factory", "uds", "read", "--enter"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    for line in [
        "bootloader: 1.0.0",
        "session: programming",
        "slot A: confirmed, v1.0.0+0, security counter 1",
        "slot B: empty",
        "stored security counter: 1",
        "an update would go to slot B; no download under way",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
}

#[test]
fn twin_serve_takes_twin_like_every_other_command() {
    // The board comes from --twin (or --board); neither, or two that disagree, is refused.
    let (_, err) = text(&bootproof(&["twin", "serve", "--usart-tcp", "127.0.0.1:0"]));
    assert!(err.contains("which board? give --twin BOARD"), "{err}");
    let (_, err) = text(&bootproof(&[
        "--twin",
        "stm32h723zg",
        "twin",
        "serve",
        "--board",
        "stm32f446re",
        "--usart-tcp",
        "127.0.0.1:0",
    ]));
    assert!(err.contains("--twin stm32h723zg and --board stm32f446re disagree"), "{err}");
    // With --twin the board is known and the next check speaks: nothing to serve.
    let (_, err) = text(&bootproof(&["--twin", "stm32h723zg", "twin", "serve"]));
    assert!(err.contains("nothing to serve"), "{err}");
    let (_, err) = text(&bootproof(&["--twin", "nosuchboard", "twin", "serve", "--usart-tcp", "127.0.0.1:0"]));
    assert!(err.contains("nosuchboard"), "{err}");
}

#[test]
fn rig_check_on_a_twin_lists_every_part_and_a_missing_one_is_not_a_failure() {
    let o = bootproof(&["--twin", "stm32g071rb", "rig", "check"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("n/a  CAN interface"), "the G071's twin has no CAN ROM interface: {out}");
    assert!(out.contains("PASS BOOT0 line") && out.contains("PASS debug probe"), "{out}");
}
