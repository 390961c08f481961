//! Open a physical rig from its configuration, part by part.
//!
//! Each part (lock, each relay line, probe, CAN, console) is opened separately and reported as
//! a [`PartCheck`]. A part that fails to open becomes a [`crate::Missing`] capability with the
//! reason, so `bootproof rig check` can list every problem at once and scenarios that do not
//! need the part still run.

use std::time::Duration;

use bootproof_fixtures::{BoardProfile, Capability, LineBackend, LineConfig, LinesConfig, RigConfig, SafePower};

use crate::error::RigError;
use crate::lines::{self, FileLines, Line, SharedLine};
use crate::lock::RigLock;
use crate::{RelayBootSelect, RelayPower, RelayReset, Rig, RigBuilder, SafeState};

/// The outcome of opening one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCheck {
    /// Which part, e.g. "BOOT0 relay (GPIO 17)".
    pub part: String,
    /// Whether it opened.
    pub ok: bool,
    /// What was found, or what is wrong and how to fix it.
    pub detail: String,
}

impl std::fmt::Display for PartCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:<28} {}", if self.ok { "PASS" } else { "FAIL" }, self.part, self.detail)
    }
}

/// How to open a rig.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Command line written into the lock file for other jobs to see.
    pub command: String,
    /// Take the rig lock (off only for read-only diagnostics).
    pub lock: bool,
    /// Override of the config's lock timeout.
    pub lock_timeout: Option<Duration>,
    /// Open the debug probe (attaching under reset resets the board: commands that only
    /// switch lines leave it closed).
    pub probe: bool,
    /// Open the CAN interface.
    pub can: bool,
    /// Open the serial console.
    pub console: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            lock: true,
            lock_timeout: None,
            probe: true,
            can: true,
            console: true,
        }
    }
}

impl OpenOptions {
    /// Only the lock and the control lines.
    pub fn lines_only() -> Self {
        Self { probe: false, can: false, console: false, ..Self::default() }
    }
}

/// Whether a control line is asserted in the safe state: BOOT0 low and NRST released are not,
/// power is when the rig's safe power is on. A GPIO line is opened at this level.
pub fn safe_asserted(cap: Capability, lines: &LinesConfig) -> bool {
    cap == Capability::Power && lines.power.is_some_and(|p| p.safe == SafePower::On)
}

fn open_line(
    file: Option<&FileLines>,
    name: &str,
    cfg: &LineConfig,
    safe_asserted: bool,
) -> Result<Box<dyn Line>, String> {
    match file {
        Some(lines) => Ok(Box::new(lines.line(name))),
        None => open_rppal(name, cfg, safe_asserted),
    }
}

#[cfg(feature = "hw")]
fn open_rppal(name: &str, cfg: &LineConfig, safe_asserted: bool) -> Result<Box<dyn Line>, String> {
    crate::hw::gpio::open_line(cfg.gpio, cfg.active, name, safe_asserted).map_err(|e| e.to_string())
}

#[cfg(not(feature = "hw"))]
fn open_rppal(_name: &str, cfg: &LineConfig, _safe_asserted: bool) -> Result<Box<dyn Line>, String> {
    Err(format!(
        "GPIO {} needs the `hw` feature, which this bootproof was built without; rebuild with `cargo build --release --features hw` on the Pi",
        cfg.gpio
    ))
}

/// Open every configured part of `config` for `board`. Parts that fail are reported and left
/// out of the rig; the lock failing is an error (nothing may touch a rig another job holds).
pub async fn open(
    config: &RigConfig,
    board: BoardProfile,
    opts: &OpenOptions,
) -> Result<(Rig, Vec<PartCheck>), RigError> {
    let mut checks = Vec::new();
    let mut builder = RigBuilder::new(config.name.clone(), board).provides(&config.provides);
    if opts.lock {
        let timeout = opts.lock_timeout.unwrap_or(config.lock_timeout);
        let lock = RigLock::acquire(&config.lock, timeout, &opts.command, |msg| eprintln!("bootproof: {msg}")).await?;
        let detail = match &lock.took_over {
            Some(h) => format!("{} (took over from {h}, which is gone)", lock.path().display()),
            None => lock.path().display().to_string(),
        };
        checks.push(PartCheck { part: "rig lock".into(), ok: true, detail });
        builder = builder.lock(lock);
    }

    let mut safe_boot0: Option<SharedLine> = None;
    let mut safe_nrst: Option<SharedLine> = None;
    let mut safe_power: Option<(SharedLine, SafePower)> = None;
    match &config.lines {
        None => {
            for cap in [Capability::Boot0, Capability::Nrst, Capability::Power] {
                builder = builder.missing(cap, "the rig config has no [lines] section");
            }
        }
        Some(l) => {
            // One state file shared by all dry-run lines.
            let file = match &l.backend {
                LineBackend::File { path } => Some(FileLines::new(path)),
                LineBackend::Rppal => None,
            };
            let parts: [(&str, Capability, Option<LineConfig>); 3] = [
                ("boot0", Capability::Boot0, l.boot0),
                ("nrst", Capability::Nrst, l.nrst.map(|n| n.line)),
                ("power", Capability::Power, l.power.map(|p| p.line)),
            ];
            for (name, cap, cfg) in parts {
                let Some(cfg) = cfg else {
                    builder = builder
                        .missing(cap, format!("not configured; add [lines.{name}] to {}", config.path.display()));
                    continue;
                };
                let label = format!("{} relay (GPIO {})", name.to_uppercase().replace("POWER", "power"), cfg.gpio);
                match open_line(file.as_ref(), name, &cfg, safe_asserted(cap, l)) {
                    Ok(line) => {
                        let line = lines::shared(BoxedLine(line));
                        checks.push(PartCheck { part: label, ok: true, detail: lines::lock(&line).describe() });
                        match cap {
                            Capability::Boot0 => {
                                safe_boot0 = Some(line.clone());
                                builder = builder.boot0(Box::new(RelayBootSelect::new(line, l.settle)));
                            }
                            Capability::Nrst => {
                                let hold = l.nrst.map(|n| n.hold).unwrap_or(Duration::from_millis(50));
                                safe_nrst = Some(line.clone());
                                builder = builder.reset(Box::new(RelayReset::new(line, l.settle, hold)));
                            }
                            _ => {
                                let p = l.power.expect("power configured");
                                safe_power = Some((line.clone(), p.safe));
                                builder = builder.power(Box::new(RelayPower::new(line, l.settle, p.discharge)));
                            }
                        }
                    }
                    Err(e) => {
                        checks.push(PartCheck { part: label, ok: false, detail: e.clone() });
                        builder = builder.missing(cap, e);
                    }
                }
            }
        }
    }
    let safe = SafeState::new(safe_boot0, safe_nrst, safe_power);
    // Relay states survive process exit: start from the known safe state.
    let report = safe.restore();
    if !report.lines.is_empty() {
        checks.push(PartCheck { part: "safe state".into(), ok: report.ok(), detail: report.to_string() });
    }
    builder = builder.safe_state(safe);

    let not_opened = "not opened by this command";
    builder = if opts.probe {
        open_probe(config, builder, &mut checks).await
    } else {
        builder.missing(Capability::Probe, not_opened)
    };
    builder = if opts.can {
        open_can(config, builder, &mut checks).await
    } else {
        builder.missing(Capability::Can, not_opened)
    };
    builder = if opts.console {
        open_console(config, builder, &mut checks).await
    } else {
        builder.missing(Capability::Console, not_opened)
    };
    Ok((builder.build(), checks))
}

/// Lets a boxed line be shared like any other.
struct BoxedLine(Box<dyn Line>);

impl Line for BoxedLine {
    fn set(&mut self, asserted: bool) -> Result<(), crate::LineError> {
        self.0.set(asserted)
    }
    fn asserted(&self) -> Option<bool> {
        self.0.asserted()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

async fn open_probe(config: &RigConfig, builder: RigBuilder, checks: &mut Vec<PartCheck>) -> RigBuilder {
    let Some(p) = &config.probe else {
        return builder.missing(Capability::Probe, format!("not configured; add [probe] to {}", config.path.display()));
    };
    let part = format!("probe {}", p.selector);
    #[cfg(feature = "hw")]
    {
        match crate::hw::probe::open(p).await {
            Ok(mut probe) => {
                let detail = match probe.info().await {
                    Ok(i) => format!("{} → {}", i.probe, i.chip),
                    Err(e) => e.to_string(),
                };
                checks.push(PartCheck { part, ok: true, detail });
                builder.probe(probe)
            }
            Err(e) => {
                checks.push(PartCheck { part, ok: false, detail: e.to_string() });
                builder.missing(Capability::Probe, e.to_string())
            }
        }
    }
    #[cfg(not(feature = "hw"))]
    {
        let e = RigError::NotBuilt { part: "the debug probe (probe-rs)" }.to_string();
        checks.push(PartCheck { part, ok: false, detail: e.clone() });
        builder.missing(Capability::Probe, e)
    }
}

async fn open_can(config: &RigConfig, builder: RigBuilder, checks: &mut Vec<PartCheck>) -> RigBuilder {
    let Some(c) = &config.can else {
        return builder.missing(Capability::Can, format!("not configured; add [can] to {}", config.path.display()));
    };
    let part = format!("CAN {}", c.interface);
    #[cfg(feature = "hw")]
    {
        match crate::hw::can::open(c).await {
            Ok(bus) => {
                checks.push(PartCheck { part, ok: true, detail: bus.bitrates().to_string() });
                builder.can(bus)
            }
            Err(e) => {
                checks.push(PartCheck { part, ok: false, detail: e.to_string() });
                builder.missing(Capability::Can, e.to_string())
            }
        }
    }
    #[cfg(not(feature = "hw"))]
    {
        let e = RigError::NotBuilt { part: "the CAN interface (SocketCAN)" }.to_string();
        checks.push(PartCheck { part, ok: false, detail: e.clone() });
        builder.missing(Capability::Can, e)
    }
}

async fn open_console(config: &RigConfig, builder: RigBuilder, checks: &mut Vec<PartCheck>) -> RigBuilder {
    let Some(c) = &config.console else {
        return builder
            .missing(Capability::Console, format!("not configured; add [console] to {}", config.path.display()));
    };
    let part = format!("console {}", c.port.display());
    #[cfg(feature = "hw")]
    {
        match crate::hw::serial::open(c).await {
            Ok(console) => {
                checks.push(PartCheck { part, ok: true, detail: console.config().to_string() });
                builder.console(console)
            }
            Err(e) => {
                checks.push(PartCheck { part, ok: false, detail: e.to_string() });
                builder.missing(Capability::Console, e.to_string())
            }
        }
    }
    #[cfg(not(feature = "hw"))]
    {
        let e = RigError::NotBuilt { part: "the serial console (serialport)" }.to_string();
        checks.push(PartCheck { part, ok: false, detail: e.clone() });
        builder.missing(Capability::Console, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dry_config(dir: &Path) -> RigConfig {
        let text = include_str!("../../fixtures/rigs/dry-run.toml");
        RigConfig::from_toml(text, &dir.join("dry-run.toml")).unwrap()
    }

    #[tokio::test]
    async fn dry_run_rig_opens_lines_and_starts_in_the_safe_state() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dry_config(dir.path());
        let board = BoardProfile::builtin("stm32h723zg").unwrap();
        let (mut rig, checks) = open(&cfg, board, &OpenOptions::default()).await.unwrap();
        let lines_file = dir.path().join("dry-run.lines");
        assert_eq!(FileLines::read(&lines_file, "boot0").as_deref(), Some("low"));
        assert_eq!(FileLines::read(&lines_file, "nrst").as_deref(), Some("released"));
        assert_eq!(FileLines::read(&lines_file, "power").as_deref(), Some("on"));
        assert!(checks.iter().any(|c| c.part == "rig lock" && c.ok));
        assert!(rig.probe().is_err());
        let why = rig.can().err().unwrap().to_string();
        assert!(why.contains("[can]"), "{why}");
        rig.boot0().unwrap().set_boot0(crate::Level::High).await.unwrap();
        assert_eq!(FileLines::read(&lines_file, "boot0").as_deref(), Some("high"));
        drop(rig);
        assert_eq!(FileLines::read(&lines_file, "boot0").as_deref(), Some("low"), "drop restores the safe state");
    }

    #[test]
    fn lines_open_released_and_power_at_its_safe_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = dry_config(dir.path()).lines.unwrap();
        assert!(!safe_asserted(Capability::Boot0, &lines), "BOOT0 opens low");
        assert!(!safe_asserted(Capability::Nrst, &lines), "NRST opens released");
        assert!(safe_asserted(Capability::Power, &lines), "dry-run.toml: safe = on");
        lines.power.as_mut().unwrap().safe = SafePower::Off;
        assert!(!safe_asserted(Capability::Power, &lines), "safe = off opens unpowered");
    }

    #[tokio::test]
    async fn rppal_without_hw_feature_fails_each_line_with_the_fix() {
        if cfg!(feature = "hw") {
            return; // with `hw`, rppal reports the missing Pi instead; covered in hw::gpio.
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RigConfig::from_toml(
            include_str!("../../fixtures/rigs/nucleo-h723zg-pi.toml"),
            &dir.path().join("nucleo.toml"),
        )
        .unwrap();
        cfg.lock = dir.path().join("lock");
        let board = BoardProfile::builtin("stm32h723zg").unwrap();
        let (_rig, checks) = open(&cfg, board, &OpenOptions::default()).await.unwrap();
        let failed: Vec<_> = checks.iter().filter(|c| !c.ok).collect();
        assert_eq!(failed.len(), 6, "{checks:#?}");
        assert!(failed.iter().all(|c| c.detail.contains("--features hw")), "{failed:#?}");
    }
}
