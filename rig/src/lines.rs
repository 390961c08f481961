//! BOOT0, NRST and power: the three control lines, and the capabilities built on them.
//!
//! A [`Line`] is one digital output (a relay driven from a GPIO, a dry-run file entry, or a
//! twin's pin). Setting it is instantaneous and synchronous, so the safe state can be restored
//! from `Drop`, a panic hook or a signal handler. The timing a real relay needs (settle time,
//! reset hold, supply discharge) lives in the `Relay*` capability wrappers, which are the same
//! for the Pi and for the twin.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::time::Instant;
use async_trait::async_trait;
use bootproof_fixtures::{Level, Polarity};

use crate::error::LineError;

/// Longest NRST hold bootproof will ever apply.
pub use bootproof_fixtures::MAX_RESET_HOLD;

/// One control line. "Asserted" is the line's function: BOOT0 driven high, NRST held in reset,
/// power switched on.
pub trait Line: Send {
    /// Drive the line. Must be quick and must not block on I/O for long.
    fn set(&mut self, asserted: bool) -> Result<(), LineError>;
    /// The last state this process drove, if any.
    fn asserted(&self) -> Option<bool>;
    /// Human description, e.g. "NRST relay (GPIO 27, active-low)".
    fn describe(&self) -> String;
}

/// A line shared between its capability wrapper and the safe state.
pub type SharedLine = Arc<Mutex<Box<dyn Line>>>;

/// Wrap a line for sharing.
pub fn shared(line: impl Line + 'static) -> SharedLine {
    Arc::new(Mutex::new(Box::new(line)))
}

/// Lock a shared line even if a panicking thread poisoned it: the safe state must still run.
pub(crate) fn lock(line: &SharedLine) -> MutexGuard<'_, Box<dyn Line>> {
    line.lock().unwrap_or_else(|e| e.into_inner())
}

/// A line on an `embedded-hal` output pin, with the relay board's polarity.
pub struct GpioLine<P> {
    pin: P,
    polarity: Polarity,
    name: String,
    state: Option<bool>,
}

impl<P: embedded_hal::digital::OutputPin + Send> GpioLine<P> {
    /// Wrap `pin`. `name` should say what the line is and where, e.g. "BOOT0 relay (GPIO 17)".
    pub fn new(pin: P, polarity: Polarity, name: impl Into<String>) -> Self {
        Self { pin, polarity, name: name.into(), state: None }
    }
}

impl<P: embedded_hal::digital::OutputPin + Send> Line for GpioLine<P> {
    fn set(&mut self, asserted: bool) -> Result<(), LineError> {
        use embedded_hal::digital::Error as _;
        let r = match self.polarity.level_for(asserted) {
            Level::High => self.pin.set_high(),
            Level::Low => self.pin.set_low(),
        };
        r.map_err(|e| LineError::Gpio {
            line: self.describe(),
            message: format!("write failed ({:?}); check the GPIO is not claimed by another driver", e.kind()),
        })?;
        self.state = Some(asserted);
        Ok(())
    }

    fn asserted(&self) -> Option<bool> {
        self.state
    }

    fn describe(&self) -> String {
        let pol = match self.polarity {
            Polarity::High => "active-high",
            Polarity::Low => "active-low",
        };
        format!("{} ({pol})", self.name)
    }
}

/// Dry-run lines: each line's state is recorded in a small text file, rewritten atomically on
/// every change. The file reads like `boot0=low`, `nrst=released`, `power=on`.
#[derive(Clone)]
pub struct FileLines {
    path: PathBuf,
    state: Arc<Mutex<Vec<(String, String)>>>,
}

impl FileLines {
    /// Record lines in `path`. Existing content is kept until a line is driven.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let existing = fs::read_to_string(&path).unwrap_or_default();
        let state = existing
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect();
        Self { path, state: Arc::new(Mutex::new(state)) }
    }

    /// A line named `name` (`boot0`, `nrst` or `power`).
    pub fn line(&self, name: &str) -> FileLine {
        FileLine { lines: self.clone(), name: name.to_string(), state: None }
    }

    /// Read back a line's recorded value, e.g. `"low"` for BOOT0.
    pub fn read(path: &std::path::Path, name: &str) -> Option<String> {
        fs::read_to_string(path).ok()?.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    }

    fn write(&self, name: &str, value: &str) -> Result<(), LineError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => state.push((name.to_string(), value.to_string())),
        }
        let text: String = state.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let tmp = self.path.with_extension("tmp");
        let io = |source| LineError::File { path: self.path.clone(), source };
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)
    }
}

/// One line of a [`FileLines`] set.
pub struct FileLine {
    lines: FileLines,
    name: String,
    state: Option<bool>,
}

impl Line for FileLine {
    fn set(&mut self, asserted: bool) -> Result<(), LineError> {
        let value = match (self.name.as_str(), asserted) {
            ("boot0", true) => "high",
            ("boot0", false) => "low",
            ("nrst", true) => "asserted",
            ("nrst", false) => "released",
            ("power", true) => "on",
            ("power", false) => "off",
            (_, true) => "asserted",
            (_, false) => "released",
        };
        self.lines.write(&self.name, value)?;
        self.state = Some(asserted);
        Ok(())
    }

    fn asserted(&self) -> Option<bool> {
        self.state
    }

    fn describe(&self) -> String {
        format!("{} (dry-run file {})", self.name, self.lines.path.display())
    }
}

/// Selects the boot source: drives the BOOT0 pin.
///
/// The MCU samples BOOT0 only when NRST is released and at power-on; changing it while the core
/// runs has no effect until the next reset.
#[async_trait]
pub trait BootSelect: Send {
    /// Drive BOOT0 and wait for the relay to settle.
    async fn set_boot0(&mut self, level: Level) -> Result<(), LineError>;
    /// The level last driven, if any.
    fn boot0(&self) -> Option<Level>;
}

/// The NRST line.
#[async_trait]
pub trait ResetLine: Send {
    /// Hold the board in reset. The line is released automatically after `limit` (at most
    /// [`MAX_RESET_HOLD`]) even if [`ResetLine::release_reset`] is never called.
    async fn hold_reset(&mut self, limit: Duration) -> Result<(), LineError>;
    /// Release reset; the MCU samples BOOT0 and boots.
    async fn release_reset(&mut self) -> Result<(), LineError>;
    /// Assert, hold for `hold` (`None`: the configured default), release.
    async fn pulse_reset(&mut self, hold: Option<Duration>) -> Result<(), LineError>;
}

/// The board's power supply.
#[async_trait]
pub trait PowerSwitch: Send {
    /// Switch power on. If the board was switched off less than the discharge time ago, wait
    /// for the rest of it first, so every power-on is a real power-on reset.
    async fn power_on(&mut self) -> Result<(), LineError>;
    /// Switch power off.
    async fn power_off(&mut self) -> Result<(), LineError>;
    /// Off, wait `off_time` (`None`: the configured discharge time), on. An `off_time` shorter
    /// than the discharge time is refused.
    async fn power_cycle(&mut self, off_time: Option<Duration>) -> Result<(), LineError>;
    /// Whether power was last switched on, if known.
    fn is_on(&self) -> Option<bool>;
}

fn drive(line: &SharedLine, asserted: bool) -> Result<(), LineError> {
    lock(line).set(asserted)
}

fn describe(line: &SharedLine) -> String {
    lock(line).describe()
}

/// BOOT0 through a relay line.
pub struct RelayBootSelect {
    line: SharedLine,
    settle: Duration,
}

impl RelayBootSelect {
    /// Wrap `line` ("asserted" = BOOT0 high).
    pub fn new(line: SharedLine, settle: Duration) -> Self {
        Self { line, settle }
    }
}

#[async_trait]
impl BootSelect for RelayBootSelect {
    async fn set_boot0(&mut self, level: Level) -> Result<(), LineError> {
        tracing::debug!(line = %describe(&self.line), %level, "BOOT0");
        drive(&self.line, level.is_high())?;
        crate::time::sleep(self.settle).await;
        Ok(())
    }

    fn boot0(&self) -> Option<Level> {
        lock(&self.line).asserted().map(|a| if a { Level::High } else { Level::Low })
    }
}

/// NRST through a relay line.
pub struct RelayReset {
    line: SharedLine,
    settle: Duration,
    default_hold: Duration,
    /// Incremented on every hold/release so a stale auto-release never touches a newer hold.
    generation: Arc<Mutex<u64>>,
}

impl RelayReset {
    /// Wrap `line` ("asserted" = reset held).
    pub fn new(line: SharedLine, settle: Duration, default_hold: Duration) -> Self {
        Self { line, settle, default_hold, generation: Arc::new(Mutex::new(0)) }
    }

    fn bump(&self) -> u64 {
        let mut g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        *g += 1;
        *g
    }
}

#[async_trait]
impl ResetLine for RelayReset {
    async fn hold_reset(&mut self, limit: Duration) -> Result<(), LineError> {
        if limit > MAX_RESET_HOLD {
            return Err(LineError::Timing {
                line: describe(&self.line),
                message: format!("refusing to hold reset for {limit:?}; the limit is {MAX_RESET_HOLD:?}"),
            });
        }
        tracing::debug!(line = %describe(&self.line), ?limit, "NRST hold");
        drive(&self.line, true)?;
        let generation = self.bump();
        let (line, gen_cell) = (self.line.clone(), self.generation.clone());
        tokio::spawn(async move {
            crate::time::sleep(limit).await;
            if *gen_cell.lock().unwrap_or_else(|e| e.into_inner()) == generation {
                tracing::warn!("NRST held for its {limit:?} limit without release; releasing it");
                let _ = drive(&line, false);
            }
        });
        crate::time::sleep(self.settle).await;
        Ok(())
    }

    async fn release_reset(&mut self) -> Result<(), LineError> {
        tracing::debug!(line = %describe(&self.line), "NRST release");
        self.bump();
        drive(&self.line, false)?;
        crate::time::sleep(self.settle).await;
        Ok(())
    }

    async fn pulse_reset(&mut self, hold: Option<Duration>) -> Result<(), LineError> {
        let hold = hold.unwrap_or(self.default_hold);
        if hold < self.settle {
            return Err(LineError::Timing {
                line: describe(&self.line),
                message: format!(
                    "a {hold:?} reset pulse is shorter than the relay settle time {:?}: the relay would not close; use a longer hold",
                    self.settle
                ),
            });
        }
        if hold > MAX_RESET_HOLD {
            return Err(LineError::Timing {
                line: describe(&self.line),
                message: format!("refusing a {hold:?} reset pulse; the limit is {MAX_RESET_HOLD:?}"),
            });
        }
        tracing::debug!(line = %describe(&self.line), ?hold, "NRST pulse");
        self.bump();
        drive(&self.line, true)?;
        crate::time::sleep(hold).await;
        let released = drive(&self.line, false);
        self.bump();
        released?;
        crate::time::sleep(self.settle).await;
        Ok(())
    }
}

/// Power through a relay line.
pub struct RelayPower {
    line: SharedLine,
    settle: Duration,
    discharge: Duration,
    off_since: Option<Instant>,
}

impl RelayPower {
    /// Wrap `line` ("asserted" = powered).
    pub fn new(line: SharedLine, settle: Duration, discharge: Duration) -> Self {
        Self { line, settle, discharge, off_since: None }
    }
}

#[async_trait]
impl PowerSwitch for RelayPower {
    async fn power_on(&mut self) -> Result<(), LineError> {
        if let Some(off) = self.off_since {
            let remaining = self.discharge.saturating_sub(off.elapsed());
            if !remaining.is_zero() {
                tracing::info!("waiting {remaining:?} for the board to discharge before power-on");
                crate::time::sleep(remaining).await;
            }
        }
        tracing::debug!(line = %describe(&self.line), "power on");
        drive(&self.line, true)?;
        self.off_since = None;
        crate::time::sleep(self.settle).await;
        Ok(())
    }

    async fn power_off(&mut self) -> Result<(), LineError> {
        tracing::debug!(line = %describe(&self.line), "power off");
        drive(&self.line, false)?;
        if self.off_since.is_none() {
            self.off_since = Some(Instant::now());
        }
        crate::time::sleep(self.settle).await;
        Ok(())
    }

    async fn power_cycle(&mut self, off_time: Option<Duration>) -> Result<(), LineError> {
        let off = off_time.unwrap_or(self.discharge);
        if off < self.discharge {
            return Err(LineError::Timing {
                line: describe(&self.line),
                message: format!(
                    "a {off:?} power-off is shorter than this rig's discharge time {:?}: the board would not see a power-on reset; use at least the discharge time (lines.power.discharge_ms)",
                    self.discharge
                ),
            });
        }
        self.power_off().await?;
        let since = self.off_since.unwrap_or_else(Instant::now);
        crate::time::sleep(off.saturating_sub(since.elapsed())).await;
        self.power_on().await
    }

    fn is_on(&self) -> Option<bool> {
        lock(&self.line).asserted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as T};

    fn gpio(expect: &[T], polarity: Polarity) -> (SharedLine, PinMock) {
        let pin = PinMock::new(expect);
        (shared(GpioLine::new(pin.clone(), polarity, "test relay (GPIO 5)")), pin)
    }

    #[test]
    fn polarity_maps_asserted_to_gpio_level() {
        let (line, mut pin) = gpio(&[T::set(State::Low), T::set(State::High)], Polarity::Low);
        lock(&line).set(true).unwrap();
        lock(&line).set(false).unwrap();
        pin.done();
        let (line, mut pin) = gpio(&[T::set(State::High), T::set(State::Low)], Polarity::High);
        lock(&line).set(true).unwrap();
        lock(&line).set(false).unwrap();
        pin.done();
    }

    #[test]
    fn gpio_errors_name_the_line() {
        use embedded_hal_mock::eh1::MockError;
        let err = MockError::Io(std::io::ErrorKind::PermissionDenied);
        let (line, mut pin) = gpio(&[T::set(State::High).with_error(err)], Polarity::High);
        let e = lock(&line).set(true).unwrap_err().to_string();
        assert!(e.contains("GPIO 5") && e.contains("active-high"), "{e}");
        pin.done();
    }

    #[tokio::test(start_paused = true)]
    async fn reset_pulse_sequence_and_timing() {
        // Active-low NRST relay: assert = GPIO low, release = GPIO high.
        let (line, mut pin) = gpio(&[T::set(State::Low), T::set(State::High)], Polarity::Low);
        let mut reset = RelayReset::new(line, Duration::from_millis(20), Duration::from_millis(50));
        let t0 = Instant::now();
        reset.pulse_reset(None).await.unwrap();
        // hold 50 ms + settle 20 ms after release.
        assert_eq!(t0.elapsed(), Duration::from_millis(70));
        pin.done();
    }

    #[tokio::test(start_paused = true)]
    async fn reset_pulse_shorter_than_settle_is_refused_without_touching_the_line() {
        let (line, mut pin) = gpio(&[], Polarity::Low);
        let mut reset = RelayReset::new(line, Duration::from_millis(20), Duration::from_millis(50));
        let e = reset.pulse_reset(Some(Duration::from_millis(5))).await.unwrap_err().to_string();
        assert!(e.contains("shorter than the relay settle time"), "{e}");
        let e = reset.pulse_reset(Some(Duration::from_secs(60))).await.unwrap_err().to_string();
        assert!(e.contains("limit"), "{e}");
        pin.done();
    }

    #[tokio::test(start_paused = true)]
    async fn held_reset_is_released_automatically_at_its_limit() {
        let (line, mut pin) = gpio(&[T::set(State::High), T::set(State::Low)], Polarity::High);
        let mut reset = RelayReset::new(line.clone(), Duration::from_millis(1), Duration::from_millis(10));
        reset.hold_reset(Duration::from_secs(2)).await.unwrap();
        assert_eq!(lock(&line).asserted(), Some(true));
        crate::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(lock(&line).asserted(), Some(false), "NRST must not stay held forever");
        pin.done();
    }

    #[tokio::test(start_paused = true)]
    async fn auto_release_does_not_cut_a_later_hold_short() {
        let (line, mut pin) =
            gpio(&[T::set(State::High), T::set(State::Low), T::set(State::High), T::set(State::Low)], Polarity::High);
        let mut reset = RelayReset::new(line.clone(), Duration::from_millis(1), Duration::from_millis(10));
        reset.hold_reset(Duration::from_secs(1)).await.unwrap();
        reset.release_reset().await.unwrap();
        reset.hold_reset(Duration::from_secs(5)).await.unwrap();
        crate::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(lock(&line).asserted(), Some(true), "the first hold's timer released the second hold");
        reset.release_reset().await.unwrap();
        pin.done();
    }

    #[tokio::test(start_paused = true)]
    async fn power_cycle_waits_for_discharge_and_refuses_short_off_times() {
        let (line, mut pin) = gpio(&[T::set(State::Low), T::set(State::High)], Polarity::High);
        let mut power = RelayPower::new(line, Duration::from_millis(10), Duration::from_millis(500));
        let e = power.power_cycle(Some(Duration::from_millis(100))).await.unwrap_err().to_string();
        assert!(e.contains("discharge"), "{e}");
        let t0 = Instant::now();
        power.power_cycle(None).await.unwrap();
        // off settle (10) is part of the 500 ms off time; then on settle (10).
        assert_eq!(t0.elapsed(), Duration::from_millis(510));
        assert_eq!(power.is_on(), Some(true));
        pin.done();
    }

    #[tokio::test(start_paused = true)]
    async fn power_on_soon_after_off_waits_out_the_discharge() {
        let (line, mut pin) = gpio(&[T::set(State::Low), T::set(State::High)], Polarity::High);
        let mut power = RelayPower::new(line, Duration::from_millis(10), Duration::from_millis(300));
        let t0 = Instant::now();
        power.power_off().await.unwrap();
        power.power_on().await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_millis(310));
        pin.done();
    }

    #[tokio::test(start_paused = true)]
    async fn boot0_relay_reports_level() {
        let (line, mut pin) = gpio(&[T::set(State::Low), T::set(State::High)], Polarity::Low);
        let mut b = RelayBootSelect::new(line, Duration::from_millis(5));
        assert_eq!(b.boot0(), None);
        b.set_boot0(Level::High).await.unwrap();
        assert_eq!(b.boot0(), Some(Level::High));
        b.set_boot0(Level::Low).await.unwrap();
        assert_eq!(b.boot0(), Some(Level::Low));
        pin.done();
    }

    #[test]
    fn file_lines_record_levels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines");
        let lines = FileLines::new(&path);
        let mut boot0 = lines.line("boot0");
        let mut power = lines.line("power");
        boot0.set(true).unwrap();
        power.set(true).unwrap();
        boot0.set(false).unwrap();
        assert_eq!(FileLines::read(&path, "boot0").as_deref(), Some("low"));
        assert_eq!(FileLines::read(&path, "power").as_deref(), Some("on"));
        assert_eq!(FileLines::read(&path, "nrst"), None);
    }
}
