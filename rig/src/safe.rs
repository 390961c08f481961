//! The safe state: BOOT0 low, NRST released, power as the rig config says.
//!
//! Every exit path restores it: [`crate::Rig`]'s `Drop` (normal end, error, unwinding panic),
//! the panic hook installed by [`install_panic_hook`] (covers panics on other threads and tasks),
//! and the signal handling of the `bootproof` binary (SIGINT, SIGTERM), which calls
//! [`restore_all`]. Restoring is synchronous and never panics, so it is safe in all of those
//! places. A SIGKILL cannot be caught: run `bootproof rig safe` from the CI job's cleanup step
//! (see `ci/`).

use std::sync::{Arc, Mutex, OnceLock};

use bootproof_fixtures::SafePower;

use crate::lines::{SharedLine, lock};

/// Handles on the lines that make up the safe state.
#[derive(Clone, Default)]
pub struct SafeState {
    boot0: Option<SharedLine>,
    nrst: Option<SharedLine>,
    power: Option<(SharedLine, SafePower)>,
}

/// The outcome of one restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SafeReport {
    /// One entry per line: what it was set to, or why that failed.
    pub lines: Vec<(String, Result<&'static str, String>)>,
}

impl SafeReport {
    /// Whether every line reached its safe level.
    pub fn ok(&self) -> bool {
        self.lines.iter().all(|(_, r)| r.is_ok())
    }
}

impl std::fmt::Display for SafeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, r)) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match r {
                Ok(state) => write!(f, "{name} {state}")?,
                Err(e) => write!(f, "{name} FAILED ({e})")?,
            }
        }
        Ok(())
    }
}

impl SafeState {
    /// A safe state over the given lines (any may be absent).
    pub fn new(boot0: Option<SharedLine>, nrst: Option<SharedLine>, power: Option<(SharedLine, SafePower)>) -> Self {
        Self { boot0, nrst, power }
    }

    /// Drive every line to its safe level: BOOT0 low first (so no reset can latch it high),
    /// then NRST released, then power as configured. Continues past failures.
    pub fn restore(&self) -> SafeReport {
        let mut report = SafeReport::default();
        let mut set = |line: &SharedLine, asserted: bool, name: &str, state: &'static str| {
            let result = lock(line).set(asserted).map(|()| state).map_err(|e| e.to_string());
            report.lines.push((name.to_string(), result));
        };
        if let Some(l) = &self.boot0 {
            set(l, false, "BOOT0", "low");
        }
        if let Some(l) = &self.nrst {
            set(l, false, "NRST", "released");
        }
        if let Some((l, safe)) = &self.power {
            match safe {
                SafePower::On => set(l, true, "power", "on"),
                SafePower::Off => set(l, false, "power", "off"),
            }
        }
        report
    }

    /// The lines this safe state drives, by signal.
    pub(crate) fn lines(&self) -> impl Iterator<Item = (crate::record::Signal, &SharedLine)> {
        use crate::record::Signal;
        [
            (Signal::Boot0, self.boot0.as_ref()),
            (Signal::Nrst, self.nrst.as_ref()),
            (Signal::Power, self.power.as_ref().map(|(l, _)| l)),
        ]
        .into_iter()
        .filter_map(|(s, l)| l.map(|l| (s, l)))
    }

    /// The same safe state without the power line (BOOT0 and NRST only).
    pub fn without_power(&self) -> SafeState {
        SafeState { power: None, ..self.clone() }
    }

    /// Whether this safe state covers no line at all.
    pub fn is_empty(&self) -> bool {
        self.boot0.is_none() && self.nrst.is_none() && self.power.is_none()
    }
}

type Registry = Mutex<Vec<(u64, SafeState)>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

/// Keeps a safe state registered for [`restore_all`] until dropped.
pub struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        registry().lock().unwrap_or_else(|e| e.into_inner()).retain(|(id, _)| *id != self.id);
    }
}

/// Register `state` so the panic hook and signal handlers can restore it.
pub fn register(state: SafeState) -> Registration {
    static NEXT: Mutex<u64> = Mutex::new(0);
    let id = {
        let mut n = NEXT.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        *n
    };
    registry().lock().unwrap_or_else(|e| e.into_inner()).push((id, state));
    Registration { id }
}

/// Restore every registered safe state. Called from the panic hook and from signal handlers.
pub fn restore_all() -> Vec<SafeReport> {
    // Clone out of the registry so a line driver that panics cannot poison it for others.
    let states: Vec<SafeState> =
        registry().lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(_, s)| s.clone()).collect();
    states.iter().map(SafeState::restore).collect()
}

/// Install a panic hook (once per process) that restores every registered safe state before the
/// previous hook runs.
pub fn install_panic_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = Arc::new(std::panic::take_hook());
        std::panic::set_hook(Box::new(move |info| {
            for report in restore_all() {
                eprintln!("bootproof: panic; rig restored to its safe state: {report}");
            }
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::{FileLines, shared};

    fn dry(dir: &std::path::Path) -> (FileLines, SafeState) {
        let lines = FileLines::new(dir.join("lines"));
        let s = SafeState::new(
            Some(shared(lines.line("boot0"))),
            Some(shared(lines.line("nrst"))),
            Some((shared(lines.line("power")), SafePower::Off)),
        );
        (lines, s)
    }

    #[test]
    fn restore_drives_every_line_to_its_safe_level() {
        let dir = tempfile::tempdir().unwrap();
        let (lines, s) = dry(dir.path());
        let mut b = lines.line("boot0");
        let mut n = lines.line("nrst");
        let mut p = lines.line("power");
        use crate::lines::Line;
        b.set(true).unwrap();
        n.set(true).unwrap();
        p.set(true).unwrap();
        let report = s.restore();
        assert!(report.ok(), "{report}");
        assert_eq!(report.to_string(), "BOOT0 low, NRST released, power off");
        let path = dir.path().join("lines");
        assert_eq!(FileLines::read(&path, "boot0").as_deref(), Some("low"));
        assert_eq!(FileLines::read(&path, "nrst").as_deref(), Some("released"));
        assert_eq!(FileLines::read(&path, "power").as_deref(), Some("off"));
    }

    #[test]
    fn registered_states_are_restored_by_restore_all_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (_lines, s) = dry(dir.path());
        let reg = register(s);
        assert!(restore_all().iter().any(|r| r.to_string().contains("power off")));
        drop(reg);
        let path = dir.path().join("lines");
        std::fs::remove_file(&path).unwrap();
        restore_all();
        assert!(!path.exists(), "a dropped registration was restored");
    }

    #[test]
    fn restore_continues_past_a_failing_line() {
        struct Broken;
        impl crate::lines::Line for Broken {
            fn set(&mut self, _: bool) -> Result<(), crate::LineError> {
                Err(crate::LineError::Gpio { line: "broken".into(), message: "no".into() })
            }
            fn asserted(&self) -> Option<bool> {
                None
            }
            fn describe(&self) -> String {
                "broken".into()
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let lines = FileLines::new(dir.path().join("lines"));
        let s = SafeState::new(Some(shared(Broken)), Some(shared(lines.line("nrst"))), None);
        let r = s.restore();
        assert!(!r.ok());
        assert_eq!(FileLines::read(&dir.path().join("lines"), "nrst").as_deref(), Some("released"));
    }
}
