//! The rig ends in its safe state on every exit path of the CLI: normal end, error, panic,
//! SIGINT and SIGTERM. Each test runs the real `bootproof` binary on a dry-run rig whose lines
//! are recorded in a file, and reads the final line states back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bootproof");

struct DryRig {
    dir: tempfile::TempDir,
}

impl DryRig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/rigs/dry-run.toml")).unwrap();
        std::fs::write(dir.path().join("rig.toml"), text).unwrap();
        DryRig { dir }
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("rig.toml")
    }
    fn lines(&self) -> PathBuf {
        self.dir.path().join("dry-run.lines")
    }
    fn line(&self, name: &str) -> Option<String> {
        read_line(&self.lines(), name)
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--rig").arg(self.config()).args(args).env_remove("BOOTPROOF_INJECT").env_remove("BOOTPROOF_RIG");
        c.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        c
    }
    fn assert_safe(&self, out: &Output) {
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(self.line("boot0").as_deref(), Some("low"), "BOOT0 not low after exit; output:\n{all}");
        assert_eq!(self.line("nrst").as_deref(), Some("released"), "NRST not released after exit; output:\n{all}");
        assert_eq!(self.line("power").as_deref(), Some("on"), "power not as configured (on); output:\n{all}");
    }
    fn wait_for(&self, name: &str, value: &str, child: &mut Child) {
        let t0 = Instant::now();
        while self.line(name).as_deref() != Some(value) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("bootproof exited early ({status}) before {name}={value}");
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "{name} never became {value}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn read_line(path: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().unwrap().success();
    assert!(ok, "kill -{sig} failed");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn normal_end_restores_boot0_low() {
    let rig = DryRig::new();
    let out = rig.cmd(&["boot0", "high", "--hold-ms", "50"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("BOOT0 high"));
    rig.assert_safe(&out);
}

#[test]
fn sigterm_while_boot0_is_held_high_restores_the_safe_state() {
    let rig = DryRig::new();
    let mut child = rig.cmd(&["boot0", "high"]).spawn().unwrap();
    rig.wait_for("boot0", "high", &mut child);
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(stderr(&out).contains("stopped by SIGTERM"), "{}", stderr(&out));
    rig.assert_safe(&out);
}

#[test]
fn sigint_while_boot0_is_held_high_restores_the_safe_state() {
    let rig = DryRig::new();
    let mut child = rig.cmd(&["boot0", "high"]).spawn().unwrap();
    rig.wait_for("boot0", "high", &mut child);
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    rig.assert_safe(&out);
}

#[test]
fn panic_with_boot0_high_restores_the_safe_state() {
    let rig = DryRig::new();
    let out = rig.cmd(&["boot0", "high"]).env("BOOTPROOF_INJECT", "panic@boot0-high").output().unwrap();
    assert_eq!(out.status.code(), Some(101), "{}", stderr(&out));
    assert!(stderr(&out).contains("injected panic"), "{}", stderr(&out));
    rig.assert_safe(&out);
}

#[test]
fn panic_during_a_reset_with_boot0_high_restores_the_safe_state() {
    let rig = DryRig::new();
    let out = rig.cmd(&["reset", "--boot0", "high"]).env("BOOTPROOF_INJECT", "panic@boot0-high").output().unwrap();
    assert_eq!(out.status.code(), Some(101), "{}", stderr(&out));
    rig.assert_safe(&out);
}

#[test]
fn error_with_boot0_high_restores_the_safe_state() {
    let rig = DryRig::new();
    let out = rig.cmd(&["boot0", "high"]).env("BOOTPROOF_INJECT", "error@boot0-high").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("injected error at `boot0-high`"), "{}", stderr(&out));
    rig.assert_safe(&out);
}

#[test]
fn reset_with_boot0_high_returns_boot0_low_after_the_pulse() {
    let rig = DryRig::new();
    let out = rig.cmd(&["reset", "--boot0", "high"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    rig.assert_safe(&out);
}

#[test]
fn power_off_is_kept_but_boot0_and_nrst_are_safe() {
    let rig = DryRig::new();
    let out = rig.cmd(&["power", "off"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rig.line("power").as_deref(), Some("off"));
    assert_eq!(rig.line("boot0").as_deref(), Some("low"));
    assert_eq!(rig.line("nrst").as_deref(), Some("released"));
    // `rig safe` puts power back as configured.
    let out = rig.cmd(&["rig", "safe"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    rig.assert_safe(&out);
}

#[test]
fn power_cycle_shorter_than_the_discharge_time_is_refused() {
    let rig = DryRig::new();
    let out = rig.cmd(&["power", "cycle", "--off-ms", "5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("discharge"), "{}", stderr(&out));
    rig.assert_safe(&out);
}

#[test]
fn a_second_job_waits_for_the_lock_and_names_the_holder() {
    let rig = DryRig::new();
    let mut first = rig.cmd(&["boot0", "high"]).spawn().unwrap();
    rig.wait_for("boot0", "high", &mut first);
    let t0 = Instant::now();
    let out = rig.cmd(&["--lock-timeout-s", "1", "reset"]).output().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(900), "did not wait");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("held by pid {}", first.id())), "{err}");
    assert!(err.contains("boot0 high"), "holder command not named: {err}");
    // BOOT0 is still high: the waiting job did not touch the first job's lines.
    assert_eq!(rig.line("boot0").as_deref(), Some("high"));
    // A lock left by a killed job is taken over.
    signal(&first, "KILL");
    first.wait().unwrap();
    let out = rig.cmd(&["-v", "rig", "safe"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("took over rig lock"), "{}", stderr(&out));
    rig.assert_safe(&out);
}

#[test]
fn rig_check_without_hardware_fails_each_part_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/rigs/nucleo-h723zg-pi.toml"))
        .unwrap();
    let lock = dir.path().join("rig.lock");
    let text = text.replace("/run/bootproof/nucleo-h723zg-pi.lock", lock.to_str().unwrap());
    std::fs::write(dir.path().join("rig.toml"), text).unwrap();
    let out = Command::new(BIN).arg("rig").arg("check").arg("--rig").arg(dir.path().join("rig.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", stderr(&out));
    for part in [
        "BOOT0 relay (GPIO 17)",
        "NRST relay (GPIO 27)",
        "power relay (GPIO 22)",
        "probe 0483:3754",
        "CAN can0",
        "console /dev/serial",
    ] {
        let line = stdout.lines().find(|l| l.contains(part)).unwrap_or_else(|| panic!("no line for {part}:\n{stdout}"));
        assert!(line.starts_with("FAIL"), "{line}");
    }
    assert!(stdout.contains("PASS rig lock"), "{stdout}");
    assert!(stdout.contains("parts FAILED"), "{stdout}");
}

#[test]
fn commands_without_a_rig_say_how_to_name_one() {
    let out = Command::new(BIN).args(["power", "on"]).env_remove("BOOTPROOF_RIG").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--rig FILE"), "{}", stderr(&out));
}

#[test]
fn capability_missing_from_the_rig_is_a_clear_error() {
    let rig = DryRig::new();
    let out = rig.cmd(&["can", "monitor", "--count", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no CAN interface") && stderr(&out).contains("[can]"), "{}", stderr(&out));
    rig.assert_safe(&out);
}
