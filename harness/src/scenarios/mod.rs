//! Boot scenarios: the seed thread's story as tests that run on the twin and on a real rig.
//!
//! Each scenario drives the rig through its capabilities only and records a timeline: line
//! changes, resets, ROM bootloader exchanges, flash summaries and the observed boot stage. The
//! timeline has no times in it, so a hardware run yields the same text as the twin (times are
//! kept separately, in [`ScenarioResult::timed`]).
//!
//! | id | what it proves |
//! |---|---|
//! | `rom-get-id` | BOOT0 high + NRST enters the ROM bootloader, which answers Get ID with the profile's PID |
//! | `seed-loop` | ROM → flash over CAN → Go runs the app → NRST with BOOT0 still high is back in the ROM → BOOT0 low + NRST runs the app |
//! | `reset-vs-power-on` | NRST and power-on set the reset flags the board profile's table gives; RAM survives NRST, not power-off |
//! | `blank-flash` | a blank H7/F4 locks up silently; the ROM is still reachable; the empty-check part's latch |
//! | `interrupted-transfer` | power cut or NRST after every ROM write command never bricks the board |
//! | `uds-update` | updates over UDS on CAN FD through bootproof's bootloader: a trial that confirms, an update again whose unconfirmed trial reverts, a downgrade and a foreign key refused by name; what boots judged by the beacon |
//! | `signed-boot` | bootproof's bootloader boots the highest valid signed image, gives a new one one trial, reverts an unconfirmed one, rejects corrupted, rolled-back and foreign images by name, and stays in recovery when nothing is valid |

mod catalog;
mod signed;
mod uds;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bootproof_fixtures::{BoardProfile, Capability, Level, RomTransportKind};
use bootproof_rig::probe::CoreState;
use bootproof_rig::record::{Event as RecEvent, Record, Signal};
use bootproof_rig::time::Instant;
use bootproof_rig::{CanEvent, Missing, Permissions, Rig, RigError};

use bootproof_rig::beacon::{Beacon, CanListener, LineListener, Via};
use bootproof_rig::console::SerialConfig;
use bootproof_rig::image::FirmwareImage;

use crate::firmware::{Binary, FirmwareError};
use crate::flash::FlashError;
use crate::rom::RomError;

pub use catalog::ALL;

/// How a scenario ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Pass,
    /// Not applicable to this rig or board (the reason says why).
    Skip(String),
}

/// Why a scenario failed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A check did not hold.
    #[error("check failed: {0}")]
    Check(String),
    /// The rig lacks a capability (the runner turns this into a skip).
    #[error(transparent)]
    Missing(#[from] Missing),
    /// Rig failure.
    #[error(transparent)]
    Rig(#[from] RigError),
    /// ROM bootloader failure.
    #[error(transparent)]
    Rom(#[from] RomError),
    /// Flashing failure.
    #[error(transparent)]
    Flash(#[from] FlashError),
    /// bootproof's firmware for the board could not be built or loaded.
    #[error(transparent)]
    Firmware(#[from] FirmwareError),
    /// The rig is broken: a part it claims to provide is missing.
    #[error("infrastructure: {0}")]
    Infrastructure(String),
}

impl From<bootproof_rig::ProbeError> for ScenarioError {
    fn from(e: bootproof_rig::ProbeError) -> Self {
        ScenarioError::Rig(e.into())
    }
}

impl From<bootproof_rig::LineError> for ScenarioError {
    fn from(e: bootproof_rig::LineError) -> Self {
        ScenarioError::Rig(e.into())
    }
}

impl From<bootproof_rig::CanError> for ScenarioError {
    fn from(e: bootproof_rig::CanError) -> Self {
        ScenarioError::Rig(e.into())
    }
}

/// Fail the scenario unless `cond` holds.
pub fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), ScenarioError> {
    if cond { Ok(()) } else { Err(ScenarioError::Check(what())) }
}

/// What a run may do and how hard it tries.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Destructive operations allowed (mass erase). Always granted on the twin.
    pub permissions: Permissions,
    /// Cut after every write command rather than a sample (first, middle, last).
    pub exhaustive: bool,
    /// The application to flash instead of bootproof's own firmware for the board (it must
    /// send the boot beacon, [`bootproof_rig::beacon`]); needed for boards bootproof has no
    /// firmware for.
    pub app_image: Option<FirmwareImage>,
}

impl RunOptions {
    /// Options for the twin: everything allowed, bootproof's firmware, the same sample of cut
    /// points as on hardware (a ROM flash of the real application is some 380 write commands;
    /// `--exhaustive` cuts after each).
    pub fn twin() -> Self {
        RunOptions { permissions: Permissions::none().allow_mass_erase(), exhaustive: false, app_image: None }
    }
}

/// The application image to flash, or why there is none (a skip).
pub enum AppImage {
    /// The image.
    Image(FirmwareImage),
    /// No image for this board: the reason, for a skip.
    None(String),
}

/// The boot stage the rig observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// ST's ROM bootloader (core running in system memory, or answering the ROM protocol).
    Rom,
    /// Code running from user flash.
    App,
    /// Locked up (e.g. blank flash).
    LockedUp,
    /// Anything else (off, in reset, halted).
    Other,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Rom => "ROM bootloader",
            Stage::App => "application (running from flash)",
            Stage::LockedUp => "locked up",
            Stage::Other => "not running",
        })
    }
}

/// A scenario's view of the rig, with its timeline.
pub struct Ctx<'a> {
    /// The rig.
    pub rig: &'a mut Rig,
    /// Options.
    pub opts: RunOptions,
    start: Instant,
    /// Timeline events: when they started, the text (the same on the twin and on a rig), and
    /// details that may differ by rig (hold times, where a stage was seen).
    events: Vec<(Duration, String, String)>,
    can_beacons: CanListener,
    line_beacons: LineListener,
    /// Where the application under test keeps its beacon in RAM (its `BOOTPROOF_BEACON`).
    beacon_in_ram: Option<u32>,
    /// The recorder's position when the scenario started.
    recorded_from: usize,
    /// The control lines when the scenario started.
    initial_lines: [(Signal, Option<bool>); 3],
    /// The firmware log over RTT.
    rtt: RttLog,
    /// Whether the application was seen running in this scenario (for naming the BOOT0 trap).
    app_seen: bool,
}

/// The firmware's defmt log over RTT, collected while a scenario runs: the probe is polled
/// while the scenario waits for a beacon and before every reset, and re-attached after each.
#[derive(Default)]
struct RttLog {
    /// The application's ELF: its RTT control block and defmt table.
    elf: Option<std::sync::Arc<Vec<u8>>>,
    decoder: Option<bootproof_rig::defmt::DefmtLog>,
    attached: bool,
    /// When the last attach failed (retried no more than every [`RTT_RETRY`]).
    failed_at: Option<Instant>,
    lines: Vec<String>,
    note: Option<String>,
}

/// How often a failed RTT attach is retried (the firmware sets its control block up early in
/// its start-up).
const RTT_RETRY: Duration = Duration::from_millis(100);

impl<'a> Ctx<'a> {
    /// A context over `rig`.
    pub fn new(rig: &'a mut Rig, opts: RunOptions) -> Self {
        let recorded_from = rig.recorder().len();
        let initial_lines = rig.recorder().lines();
        Ctx {
            rig,
            opts,
            start: Instant::now(),
            events: Vec::new(),
            can_beacons: CanListener::new(),
            line_beacons: LineListener::new(),
            beacon_in_ram: None,
            recorded_from,
            initial_lines,
            rtt: RttLog::default(),
            app_seen: false,
        }
    }

    /// The board profile.
    pub fn board(&self) -> BoardProfile {
        self.rig.board().clone()
    }

    /// Record a timeline event, now.
    pub fn event(&mut self, what: impl Into<String>) {
        self.event_at(Instant::now(), what, String::new());
    }

    /// Record a timeline event that started at `at`, with details that may differ between
    /// rigs (hold times, where something was seen); the details stay out of [`Ctx::timeline`].
    pub fn event_at(&mut self, at: Instant, what: impl Into<String>, detail: impl Into<String>) {
        let (what, detail) = (what.into(), detail.into());
        if detail.is_empty() {
            tracing::info!("{what}");
        } else {
            tracing::info!("{what} ({detail})");
        }
        let stream = if what.starts_with("stage: ") { "stage" } else { "event" };
        self.rig.recorder().mark_at(at, stream, what.clone());
        self.events.push((at.saturating_duration_since(self.start), what, detail));
    }

    /// The timeline without times: identical on the twin and on hardware.
    pub fn timeline(&self) -> String {
        self.events.iter().map(|(_, e, _)| e.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// Drive BOOT0.
    pub async fn boot0(&mut self, level: Level) -> Result<(), ScenarioError> {
        let at = Instant::now();
        self.rig.boot0()?.set_boot0(level).await?;
        self.event_at(at, format!("BOOT0 {level}"), "");
        Ok(())
    }

    /// How long `signal` was last held asserted since record position `from` (the hold of a
    /// pulse, the off time of a power cycle, as the lines were really driven), and when that
    /// started.
    fn last_hold(&self, from: usize, signal: Signal, asserted: bool) -> Option<(Instant, Duration)> {
        let changes = self.rig.recorder().line_changes(from);
        let start = changes.iter().rev().find(|(_, s, a)| *s == signal && *a == asserted)?.0;
        let end = changes.iter().find(|(at, s, a)| *s == signal && *a != asserted && *at >= start)?.0;
        Some((start, end.saturating_duration_since(start)))
    }

    /// Pulse NRST (default hold). The event is stamped when NRST was asserted, with its hold.
    pub async fn nrst(&mut self) -> Result<(), ScenarioError> {
        self.drain().await?;
        let (from, at) = (self.rig.recorder().len(), Instant::now());
        self.rig.reset()?.pulse_reset(None).await?;
        let (at, detail) = match self.last_hold(from, Signal::Nrst, true) {
            Some((start, held)) => (start, format!("held {}", ms(held))),
            None => (at, String::new()),
        };
        self.event_at(at, "NRST pulse", detail);
        Ok(())
    }

    /// Power-cycle with the rig's discharge time. The event is stamped when power went off,
    /// with the off time.
    pub async fn power_cycle(&mut self) -> Result<(), ScenarioError> {
        self.drain().await?;
        let (from, at) = (self.rig.recorder().len(), Instant::now());
        self.rig.power()?.power_cycle(None).await?;
        let (at, detail) = match self.last_hold(from, Signal::Power, false) {
            Some((start, off)) => (start, format!("off for {}", ms(off))),
            None => (at, String::new()),
        };
        self.event_at(at, "power cycle", detail);
        Ok(())
    }

    /// The ROM transport scenarios use: CAN if the rig and board have it, else USART.
    pub fn rom_transport(&self) -> Option<RomTransportKind> {
        let b = self.rig.board();
        let can = self.rig.has(Capability::Can);
        b.rom.transports.iter().map(|t| t.kind()).find(|k| *k != RomTransportKind::Usart && can).or_else(|| {
            (self.rig.has(Capability::Console) && b.rom.transport(RomTransportKind::Usart).is_some())
                .then_some(RomTransportKind::Usart)
        })
    }

    /// The CAN ROM transport, if any.
    pub fn can_transport(&self) -> Option<RomTransportKind> {
        self.rom_transport().filter(|k| *k != RomTransportKind::Usart)
    }

    /// Time for a freshly reset board to be observable: the ROM's start-up, at least 50 ms.
    pub fn boot_wait(&self) -> Duration {
        Duration::from_micros(self.rig.board().rom.startup_us as u64 + 2_000).max(Duration::from_millis(50))
    }

    /// Observe the boot stage: through the probe's PC when there is a probe, else by asking the
    /// ROM bootloader for its ID. Also says how it was seen.
    pub async fn stage(&mut self) -> Result<Stage, ScenarioError> {
        Ok(self.stage_seen().await?.0)
    }

    async fn stage_seen(&mut self) -> Result<(Stage, String), ScenarioError> {
        bootproof_rig::time::sleep(self.boot_wait()).await;
        let b = self.rig.board().clone();
        if let Ok(probe) = self.rig.probe() {
            let s = probe.core_status().await?;
            let stage = match (s.state, s.pc) {
                (CoreState::LockedUp, _) => Stage::LockedUp,
                (CoreState::Running | CoreState::Sleeping, Some(pc)) if b.is_system_memory(pc) => Stage::Rom,
                (CoreState::Running | CoreState::Sleeping, Some(pc)) if b.flash.contains(pc) => Stage::App,
                _ => Stage::Other,
            };
            let how = match s.pc {
                Some(pc) => format!("probe: core {:?}, PC {pc:#010x}", s.state),
                None => format!("probe: core {:?}", s.state),
            };
            return Ok((stage, how));
        }
        let kind = self.rom_transport();
        let mut rom = crate::rom::RomClient::open(self.rig, kind)?;
        Ok(match rom.get_id().await {
            Ok(pid) => (Stage::Rom, format!("the ROM bootloader answered Get ID ({pid:#05x})")),
            Err(e) => (Stage::Other, format!("no ROM bootloader answer: {e}")),
        })
    }

    /// BOOT0's level when NRST was last released in this scenario (from the recorded lines).
    fn boot0_at_last_release(&self) -> Option<bool> {
        let mut boot0 = self.initial_lines[0].1;
        let mut at_release = None;
        for (_, signal, asserted) in self.rig.recorder().line_changes(self.recorded_from) {
            match (signal, asserted) {
                (Signal::Boot0, _) => boot0 = Some(asserted),
                (Signal::Nrst, false) => at_release = Some(boot0),
                _ => {}
            }
        }
        at_release.flatten()
    }

    /// Observe the stage, record it, and check it is `want`. When the board comes back in the
    /// ROM bootloader after it ran the application, because BOOT0 was still high at the NRST
    /// release, the timeline names that trap (the seed thread's bug).
    pub async fn expect_stage(&mut self, want: Stage) -> Result<(), ScenarioError> {
        let at = Instant::now();
        let (got, how) = self.stage_seen().await?;
        self.event_at(at, format!("stage: {got}"), how);
        if got == Stage::App {
            self.app_seen = true;
        }
        if got == Stage::Rom && self.app_seen && self.boot0_at_last_release() == Some(true) {
            self.event(
                "trap: BOOT0 was still high when NRST released, so the chip booted the ROM bootloader again, not the application (BOOT0 is sampled at every reset)",
            );
        }
        check(got == want, || format!("expected the {want}, but the board is {got}"))
    }

    /// The application image for `build`: `--app-image` (for the start-of-flash build), else
    /// bootproof's own firmware for the board, built on first use. A board with neither gives
    /// [`AppImage::None`] (the scenario skips, saying so); a firmware that fails to build is an
    /// error, never a skip.
    pub fn app(&mut self, build: Binary) -> Result<AppImage, ScenarioError> {
        let image = match (&self.opts.app_image, crate::firmware::for_board(self.rig.board())) {
            (Some(img), _) if build == Binary::Flash => img.clone(),
            (_, Some(fw)) => fw.image(build)?,
            (_, None) => {
                return Ok(AppImage::None(format!(
                    "needs an application for {}: bootproof has no firmware for it; pass --app-image with a build that \
                     sends the bootproof beacon",
                    self.rig.board().name
                )));
            }
        };
        // The beacon in RAM, for rigs (and firmware) without CAN or a console.
        let symbols = bootproof_rig::symbols::Symbols::from_elf(&image.name, &image.raw).ok();
        self.beacon_in_ram = symbols.as_ref().and_then(|s| s.address_of(bootproof_rig::beacon::RAM_SYMBOL));
        // Its defmt log over RTT, for the report.
        if symbols.is_some() && self.rtt.elf.is_none() {
            self.rtt.elf = Some(std::sync::Arc::new(image.raw.clone()));
        }
        Ok(AppImage::Image(image))
    }

    /// Forget what CAN and the console delivered so far, so the next beacon is from the next
    /// boot (called before every reset, power cycle, Go and probe flash). It waits for
    /// [`QUIET`] of silence on both, at most [`DRAIN_MAX`]: a firmware may still be sending
    /// its console line (8 ms at 115200) when its CAN beacon has already arrived.
    pub async fn drain(&mut self) -> Result<(), ScenarioError> {
        // The last chance to read this boot's RTT log: try even if an attach just failed.
        self.rtt.failed_at = None;
        self.poll_rtt().await;
        let start = Instant::now();
        let mut last = Instant::now();
        while last.elapsed() < QUIET && start.elapsed() < DRAIN_MAX {
            if let Ok(can) = self.rig.can() {
                while let Ok(CanEvent::Frame(_)) = can.recv(Duration::ZERO).await {
                    last = Instant::now();
                }
            }
            if let Ok(port) = self.rig.console() {
                let mut buf = [0u8; 256];
                while let Ok(n) = port.raw().read(&mut buf, Duration::ZERO).await
                    && n > 0
                {
                    last = Instant::now();
                }
                let _ = port.discard_input().await;
            }
            bootproof_rig::time::sleep(Duration::from_millis(2)).await;
        }
        self.can_beacons = CanListener::new();
        self.line_beacons = LineListener::new();
        // RAM keeps the last boot's beacon across a reset: clear it (a board that is off or
        // in reset has no RAM to clear).
        if let Some(at) = self.beacon_in_ram
            && let Ok(probe) = self.rig.probe()
        {
            // Past the AXI SRAM's ECC write buffer, or the reset brings the old beacon's last word back.
            let _ = bootproof_rig::probe::write_ram_durably(probe, at, &[0u8; bootproof_rig::beacon::LEN]).await;
        }
        Ok(())
    }

    /// Wait for the next boot beacon on CAN or the console (the application's framing, 115200
    /// 8N1), or, after [`PROBE_GRACE`] without one, in the application's RAM through the probe;
    /// record it, and return it. No beacon within [`BEACON_WAIT`] fails the scenario; so does a
    /// beacon that does not decode.
    pub async fn expect_beacon(&mut self) -> Result<Beacon, ScenarioError> {
        let has_can = self.rig.has(Capability::Can);
        if let Ok(port) = self.rig.console()
            && port.config() != APP_CONSOLE
        {
            port.configure(APP_CONSOLE).await.map_err(|e| ScenarioError::Rig(e.into()))?;
        }
        let start = Instant::now();
        let deadline = start + BEACON_WAIT;
        let poll = Duration::from_millis(5);
        while Instant::now() < deadline {
            self.poll_rtt().await;
            if start.elapsed() >= PROBE_GRACE
                && let Some(at) = self.beacon_in_ram
                && let Ok(probe) = self.rig.probe()
                && let Ok(raw) = probe.read_memory(at, bootproof_rig::beacon::LEN).await
                && raw.iter().any(|b| *b != 0)
            {
                return self.seen(bootproof_rig::beacon::Beacon::decode(&raw), Via::Probe);
            }
            if has_can && let Ok(can) = self.rig.can() {
                while let Ok(ev) = can.recv(Duration::ZERO).await {
                    if let CanEvent::Frame(f) = ev
                        && let Some(r) = self.can_beacons.feed(&f)
                    {
                        return self.seen(r, Via::Can);
                    }
                }
            }
            if let Ok(port) = self.rig.console() {
                let mut buf = [0u8; 256];
                if let Ok(n) = port.raw().read(&mut buf, Duration::ZERO).await
                    && let Some(r) = self.line_beacons.feed(&buf[..n]).into_iter().next()
                {
                    return self.seen(r, Via::Console);
                }
            }
            bootproof_rig::time::sleep(poll).await;
        }
        let ram = match (self.beacon_in_ram, self.rig.has(Capability::Probe)) {
            (Some(at), true) => format!(", nor in RAM at {at:#010x}"),
            _ => String::new(),
        };
        Err(ScenarioError::Check(format!(
            "no boot beacon on {}{ram} within {BEACON_WAIT:?}: the application did not start, or does not send the bootproof beacon",
            match (has_can, self.rig.has(Capability::Console)) {
                (true, true) => "CAN or the console",
                (true, false) => "CAN",
                (false, true) => "the console",
                (false, false) => "CAN or the console (the rig has neither)",
            }
        )))
    }

    /// Collect what the application logged over RTT since the last poll (defmt-decoded). A
    /// target reset ends the attachment; the next poll attaches again. Does nothing without a
    /// probe or an application ELF.
    pub async fn poll_rtt(&mut self) {
        let Some(elf) = self.rtt.elf.clone() else { return };
        let Ok(probe) = self.rig.probe() else { return };
        if !self.rtt.attached {
            if self.rtt.failed_at.is_some_and(|t| t.elapsed() < RTT_RETRY) {
                return;
            }
            match probe.rtt_attach(Some(&elf), Duration::ZERO).await {
                Ok(()) => {
                    self.rtt.attached = true;
                    self.rtt.failed_at = None;
                    match &mut self.rtt.decoder {
                        Some(d) => d.restart(),
                        None => match bootproof_rig::defmt::DefmtLog::from_elf(&elf) {
                            Ok(d) => self.rtt.decoder = Some(d),
                            Err(e) => {
                                self.rtt.note = Some(e.to_string());
                                self.rtt.elf = None;
                                return;
                            }
                        },
                    }
                }
                Err(e) => {
                    self.rtt.failed_at = Some(Instant::now());
                    self.rtt.note = Some(e.to_string());
                    return;
                }
            }
        }
        let mut buf = [0u8; 1024];
        loop {
            match probe.rtt_read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(d) = &mut self.rtt.decoder {
                        match d.feed(&buf[..n]) {
                            Ok(lines) => self.rtt.lines.extend(lines),
                            Err(e) => self.rtt.lines.push(format!("(undecodable RTT bytes: {e})")),
                        }
                    }
                }
                Err(_) => {
                    // The target was reset (or the block moved): attach again next time.
                    self.rtt.attached = false;
                    break;
                }
            }
        }
    }

    fn seen(
        &mut self,
        r: Result<Beacon, bootproof_rig::beacon::DecodeError>,
        via: Via,
    ) -> Result<Beacon, ScenarioError> {
        let b = r.map_err(|e| ScenarioError::Check(format!("a boot beacon on {via} does not decode: {e}")))?;
        let flags = self.rig.board().reset.decode(b.reset_flags);
        self.event_at(
            Instant::now(),
            format!("beacon: {}", bootproof_rig::beacon::describe(&b, &flags)),
            format!("via {via}"),
        );
        self.app_seen = true;
        Ok(b)
    }
}

/// A duration in ms for timelines: "50 ms", "0.5 ms".
fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v >= 10.0 { format!("{v:.0} ms") } else { format!("{v:.1} ms") }
}

/// Silence on CAN and the console that ends [`Ctx::drain`].
pub const QUIET: Duration = Duration::from_millis(20);
/// The longest [`Ctx::drain`] waits for silence.
pub const DRAIN_MAX: Duration = Duration::from_millis(250);

/// How long to wait for a beacon on CAN or the console before also reading it from RAM.
pub const PROBE_GRACE: Duration = Duration::from_millis(250);

/// How long a boot may take to send its beacon (the application's clock and peripheral
/// start-up, plus a bootloader's signature check).
pub const BEACON_WAIT: Duration = Duration::from_secs(2);

/// The console framing of bootproof's application (the ST-LINK virtual COM port).
pub const APP_CONSOLE: SerialConfig = SerialConfig { baud: 115_200, parity: bootproof_rig::console::Parity::None };

/// A running scenario body.
pub type Body<'c> = Pin<Box<dyn Future<Output = Result<Outcome, ScenarioError>> + 'c>>;

/// A registered scenario.
pub struct Scenario {
    /// Stable id.
    pub id: &'static str,
    /// One line.
    pub title: &'static str,
    /// The body.
    pub run: for<'c, 'r> fn(&'c mut Ctx<'r>) -> Body<'c>,
}

/// How a scenario run ended, for exit codes and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held.
    Pass,
    /// Not applicable here (a capability the rig does not claim, or no firmware for the board).
    Skip,
    /// A check did not hold, or the board or its bootloader misbehaved.
    Fail,
    /// The rig itself is broken: a part the rig config `provides` is missing, a relay line
    /// failed, bootproof's firmware could not be built. Not a verdict on the board.
    Infrastructure,
}

/// The result of one scenario on one rig.
#[derive(Debug)]
pub struct ScenarioResult {
    /// Scenario id.
    pub id: &'static str,
    /// Board.
    pub board: String,
    /// The rig (a twin's is `twin:BOARD`).
    pub rig: String,
    /// Outcome, or the failure.
    pub outcome: Result<Outcome, ScenarioError>,
    /// Pass, skip, fail or infrastructure.
    pub verdict: Verdict,
    /// Timeline without times.
    pub timeline: String,
    /// Timeline with times since the start: a first line with the control lines' states at
    /// t=0, then each event when it started, with its details (hold times, where a stage was
    /// seen).
    pub timed: Vec<(Duration, String)>,
    /// Duration (virtual on the twin).
    pub elapsed: Duration,
    /// The firmware's defmt log over RTT during the run (empty without a probe or an ELF).
    pub rtt: Vec<String>,
    /// Why there is no RTT log, if there is none.
    pub rtt_note: Option<String>,
    /// What the application printed on the console (8N1) during the run.
    pub console: String,
    /// Lines, CAN frames, console bytes and marks recorded during the run.
    pub records: Vec<Record>,
    /// When the run started (the records' t=0).
    pub start: Instant,
    /// The control lines at t=0.
    pub initial_lines: [(Signal, Option<bool>); 3],
}

/// The control lines' states in words, e.g. "BOOT0 low, NRST released, power on".
pub fn describe_lines(lines: &[(Signal, Option<bool>); 3]) -> String {
    lines
        .iter()
        .map(|(s, a)| match a {
            Some(a) => format!("{} {}", s.name(), s.state(*a)),
            None => format!("{} not driven", s.name()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdict(outcome: &Result<Outcome, ScenarioError>) -> Verdict {
    match outcome {
        Ok(Outcome::Pass) => Verdict::Pass,
        Ok(Outcome::Skip(_)) => Verdict::Skip,
        Err(ScenarioError::Infrastructure(_))
        | Err(ScenarioError::Firmware(_))
        | Err(ScenarioError::Rig(RigError::Line(_))) => Verdict::Infrastructure,
        Err(_) => Verdict::Fail,
    }
}

/// Run one scenario. A missing capability becomes a skip, unless the rig config says the rig
/// provides it: then the part is broken, an infrastructure failure. The rig is returned to its
/// safe state.
pub async fn run(s: &Scenario, rig: &mut Rig, opts: RunOptions) -> ScenarioResult {
    let board = rig.board().name.clone();
    let rig_name = rig.name().to_string();
    let mut ctx = Ctx::new(rig, opts);
    let t0 = describe_lines(&ctx.initial_lines);
    let outcome = match (s.run)(&mut ctx).await {
        Err(ScenarioError::Missing(m)) if ctx.rig.provides(m.capability) => Err(ScenarioError::Infrastructure(
            format!("the rig config lists `{}` in `provides`, but {m}", m.capability.section()),
        )),
        Err(ScenarioError::Missing(m)) => Ok(Outcome::Skip(m.to_string())),
        other => other,
    };
    // What the board said last (its console line after a CAN beacon, its RTT log): collect it.
    let _ = ctx.drain().await;
    let events = std::mem::take(&mut ctx.events);
    let elapsed = ctx.start.elapsed();
    let timeline = events.iter().map(|(_, e, _)| e.as_str()).collect::<Vec<_>>().join("\n");
    let mut timed = vec![(Duration::ZERO, format!("t=0: {t0}"))];
    timed.extend(events.into_iter().map(|(at, e, d)| (at, if d.is_empty() { e } else { format!("{e} ({d})") })));
    let report = ctx.rig.restore_safe_state();
    if !report.ok() {
        tracing::error!("safe state not fully restored after {}: {report}", s.id);
    }
    let (records, dropped) = ctx.rig.recorder().take_since(ctx.recorded_from);
    if dropped > 0 {
        timed.push((elapsed, format!("(the recorder was full: {dropped} later records are not in the reports)")));
    }
    let console: Vec<u8> = records
        .iter()
        .filter_map(|r| match &r.event {
            RecEvent::ConsoleRx(b) => Some(b.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect();
    let rtt_note = if ctx.rtt.lines.is_empty() {
        Some(match (&ctx.rtt.note, ctx.rig.has(bootproof_fixtures::Capability::Probe)) {
            (_, false) => "no probe on this rig".to_string(),
            (Some(n), true) => n.clone(),
            (None, true) if ctx.rtt.elf.is_none() => "no application ELF in this scenario".to_string(),
            (None, true) => "the firmware logged nothing".to_string(),
        })
    } else {
        None
    };
    let verdict = verdict(&outcome);
    ScenarioResult {
        id: s.id,
        board,
        rig: rig_name,
        verdict,
        outcome,
        timeline,
        timed,
        elapsed,
        rtt: std::mem::take(&mut ctx.rtt.lines),
        rtt_note,
        console: String::from_utf8_lossy(&console).into_owned(),
        records,
        start: ctx.start,
        initial_lines: ctx.initial_lines,
    }
}

/// A scenario by id.
pub fn find(id: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.id == id)
}
