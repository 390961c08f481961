//! The boot scenarios as Rust tests.
//!
//! The `rig` fixture gives the twin of a board profile by default (virtual time), and the real
//! rig named by `BOOTPROOF_RIG` when that is set (then only the cases for the rig's board run;
//! `BOOTPROOF_ALLOW_MASS_ERASE=1` allows the blank-flash scenario, `BOOTPROOF_APP_IMAGE` names
//! the application image to flash). Each scenario's timeline is an insta snapshot: it carries no
//! times, so a hardware run must produce the same text as the twin.
//!
//! On a rig (`cargo nextest run --profile rig`), a per-rig snapshot
//! `snapshots/ID@BOARD@RIG.snap` is used when it exists (record it on the first run with
//! `INSTA_UPDATE=always`, and review it against the twin's). Without one, the twin's snapshot is
//! the reference, with the boot history redacted on both sides: the reset flags, RAM canary and
//! boot count of a beacon depend on what the board went through before the scenario (a real
//! board is not fresh from the factory at every scenario), and the scenario's own checks assert
//! the ones that matter.

use bootproof::scenarios::{self, Outcome, RunOptions};
use bootproof_rig::Rig;
use rstest::{fixture, rstest};

/// What a scenario runs against.
struct Target {
    rt: tokio::runtime::Runtime,
    rig: Rig,
    opts: RunOptions,
    _twin: Option<bootproof_twin::Twin>,
}

#[fixture]
fn rig(#[default("stm32h723zg")] board: &str) -> Option<Target> {
    match std::env::var("BOOTPROOF_RIG") {
        Ok(path) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            let opts = bootproof_rig::open::OpenOptions::default();
            let (rig, _) = rt.block_on(bootproof::target::open_rig(std::path::Path::new(&path), &opts)).unwrap();
            if rig.board().name != board {
                return None; // this case is for another board
            }
            let mut permissions = bootproof_rig::Permissions::none();
            if std::env::var("BOOTPROOF_ALLOW_MASS_ERASE").as_deref() == Ok("1") {
                permissions = permissions.allow_mass_erase();
            }
            let app_image = std::env::var("BOOTPROOF_APP_IMAGE").ok().map(|p| {
                bootproof_rig::image::FirmwareImage::load(std::path::Path::new(&p), Some(0x0800_0000)).unwrap()
            });
            let opts = RunOptions { permissions, exhaustive: false, app_image };
            Some(Target { rt, rig, opts, _twin: None })
        }
        Err(_) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            let _guard = rt.enter();
            let twin = bootproof_twin::Twin::builtin(board).unwrap();
            let rig = twin.rig();
            rig.restore_safe_state();
            Some(Target { rt, rig, opts: RunOptions::twin(), _twin: Some(twin) })
        }
    }
}

fn run(target: Option<Target>, id: &str, board: &str, expect_pass: bool) {
    let Some(mut t) = target else {
        eprintln!("{id}@{board}: skipped, the rig is another board");
        return;
    };
    let s = scenarios::find(id).unwrap();
    let opts = t.opts.clone();
    let r = t.rt.block_on(scenarios::run(s, &mut t.rig, opts));
    for (at, e) in &r.timed {
        eprintln!("{:>12.6} s  {e}", at.as_secs_f64());
    }
    match (&r.outcome, expect_pass) {
        (Ok(Outcome::Pass), true) => {}
        (Ok(Outcome::Skip(why)), false) => eprintln!("{id}@{board}: skipped as expected: {why}"),
        (other, _) => panic!("{id}@{board}: {other:?}"),
    }
    // The firmware's size (write commands, bytes) changes with every firmware change: the
    // snapshot keeps everything else.
    let filters = vec![
        (r"\d+ write command\(s\), \d+ bytes", "[n] write command(s), [size] bytes"),
        (r"\d+ write commands per flash", "[n] write commands per flash"),
        (r"after write \d{2,}/\d+", "after write [k]/[n]"),
        (r"after write 1/\d+", "after write 1/[n]"),
        (r"\(\d{2,} writes,", "([n] writes,"),
    ];
    let snapshots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let on_rig = std::env::var("BOOTPROOF_RIG").is_ok();
    let rig_suffix = format!("{board}@{}", t.rig.name());
    if on_rig && !snapshots.join(format!("{id}@{rig_suffix}.snap")).exists() {
        // The twin's snapshot, boot history redacted on both sides.
        let twin = std::fs::read_to_string(snapshots.join(format!("{id}@{board}.snap"))).unwrap();
        let twin = twin.splitn(3, "---\n").nth(2).unwrap_or_default().trim_end().to_string();
        let mut got = r.timeline.clone();
        for (pattern, with) in &filters {
            got = regex::Regex::new(pattern).unwrap().replace_all(&got, *with).into_owned();
        }
        let history = regex::Regex::new(HISTORY).unwrap();
        let redact =
            |s: &str| history.replace_all(s, "reset flags [history], RAM canary [history], boot [n]").into_owned();
        assert_eq!(
            redact(&got),
            redact(&twin),
            "{id}@{board}: the rig's timeline differs from the twin's (boot history redacted); if the difference is \
             the rig's and not a bug, record snapshots/{id}@{rig_suffix}.snap with INSTA_UPDATE=always and review it"
        );
        return;
    }
    let suffix = if on_rig { rig_suffix } else { board.to_string() };
    insta::with_settings!({ snapshot_suffix => suffix, prepend_module_to_snapshot => false, filters => filters }, {
        insta::assert_snapshot!(id, r.timeline);
    });
}

/// A beacon's boot history: redacted when a rig is compared with the twin.
const HISTORY: &str = r"reset flags [A-Z|]*, RAM canary \w+, boot \d+";

/// The history redaction for rigs keeps what a scenario proves (which image, which slot, trial
/// and confirmation) and drops only what the board went through before.
#[test]
fn the_rigs_history_redaction_keeps_the_outcome() {
    let history = regex::Regex::new(HISTORY).unwrap();
    let line = "beacon: app 2.0.0+0 from slot B (vt 0x08080400): reset flags CPURSTF|PINRSTF|SFTRSTF, RAM canary retained, boot 2, trial, confirmed";
    let out = history.replace_all(line, "reset flags [history], RAM canary [history], boot [n]");
    assert_eq!(
        out,
        "beacon: app 2.0.0+0 from slot B (vt 0x08080400): reset flags [history], RAM canary [history], boot [n], trial, confirmed"
    );
}

#[rstest]
#[case::stm32h723zg("stm32h723zg")]
#[case::stm32f446re("stm32f446re")]
#[case::stm32g071rb("stm32g071rb")]
fn rom_get_id(#[case] board: &str) {
    run(rig::get(board), "rom-get-id", board, true);
}

#[rstest]
#[case::stm32h723zg("stm32h723zg", true)]
#[case::stm32f446re("stm32f446re", true)]
#[case::stm32g071rb("stm32g071rb", false)]
fn seed_loop(#[case] board: &str, #[case] applies: bool) {
    run(rig::get(board), "seed-loop", board, applies);
}

#[rstest]
#[case::stm32h723zg("stm32h723zg")]
#[case::stm32f446re("stm32f446re")]
#[case::stm32g071rb("stm32g071rb")]
fn reset_vs_power_on(#[case] board: &str) {
    run(rig::get(board), "reset-vs-power-on", board, true);
}

#[rstest]
#[case::stm32h723zg("stm32h723zg")]
#[case::stm32f446re("stm32f446re")]
#[case::stm32g071rb("stm32g071rb")]
fn blank_flash(#[case] board: &str) {
    run(rig::get(board), "blank-flash", board, true);
}

#[rstest]
#[case::stm32h723zg("stm32h723zg")]
#[case::stm32f446re("stm32f446re")]
#[case::stm32g071rb("stm32g071rb")]
fn interrupted_transfer(#[case] board: &str) {
    run(rig::get(board), "interrupted-transfer", board, true);
}

/// bootproof's bootloader: H723 layout only.
#[rstest]
#[case::stm32h723zg("stm32h723zg", true)]
#[case::stm32f446re("stm32f446re", false)]
#[case::stm32g071rb("stm32g071rb", false)]
fn signed_boot(#[case] board: &str, #[case] applies: bool) {
    run(rig::get(board), "signed-boot", board, applies);
}

/// Updates over UDS through bootproof's bootloader: the NUCLEO-H723ZG only.
#[rstest]
#[case::stm32h723zg("stm32h723zg", true)]
#[case::stm32f446re("stm32f446re", false)]
#[case::stm32g071rb("stm32g071rb", false)]
fn uds_update(#[case] board: &str, #[case] applies: bool) {
    run(rig::get(board), "uds-update", board, applies);
}

/// The default fixture is the H723 twin.
#[rstest]
fn the_default_rig_is_the_h723_twin(rig: Option<Target>) {
    if std::env::var("BOOTPROOF_RIG").is_ok() {
        return;
    }
    let t = rig.expect("twin");
    assert_eq!(t.rig.board().name, "stm32h723zg");
}
