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
//! | `reset-vs-power-on` | NRST and power-on set the reset flags the facts sheet gives; RAM survives NRST, not power-off |
//! | `blank-flash` | a blank H7/F4 locks up silently; the ROM is still reachable; the empty-check part's latch |
//! | `interrupted-transfer` | power cut or NRST after every ROM write command never bricks the board |
//! | `signed-boot` | bootproof's bootloader boots the highest valid signed image, gives a new one one trial, reverts an unconfirmed one, rejects corrupted, rolled-back and foreign images by name, and stays in recovery when nothing is valid |

mod catalog;
mod signed;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bootproof_fixtures::{BoardProfile, Capability, Level, RomTransportKind};
use bootproof_rig::probe::CoreState;
use bootproof_rig::time::Instant;
use bootproof_rig::{CanEvent, Missing, Permissions, Rig, RigError};

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
    /// Cut at every write command (twin) rather than a sample (hardware).
    pub exhaustive: bool,
    /// The application image to flash, when the stand-in app cannot run (a physical board).
    pub app_image: Option<bootproof_rig::image::FirmwareImage>,
    /// Whether the board is the twin (the stand-in app runs only there).
    pub twin: bool,
}

impl RunOptions {
    /// Options for the twin: everything allowed, exhaustive, stand-in app.
    pub fn twin() -> Self {
        RunOptions {
            permissions: Permissions::none().allow_mass_erase(),
            exhaustive: true,
            app_image: None,
            twin: true,
        }
    }
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
    events: Vec<(Duration, String)>,
}

impl<'a> Ctx<'a> {
    /// A context over `rig`.
    pub fn new(rig: &'a mut Rig, opts: RunOptions) -> Self {
        Ctx { rig, opts, start: Instant::now(), events: Vec::new() }
    }

    /// The board profile.
    pub fn board(&self) -> BoardProfile {
        self.rig.board().clone()
    }

    /// Record a timeline event.
    pub fn event(&mut self, what: impl Into<String>) {
        let what = what.into();
        tracing::info!("{what}");
        self.events.push((self.start.elapsed(), what));
    }

    /// The timeline without times: identical on the twin and on hardware.
    pub fn timeline(&self) -> String {
        self.events.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// Drive BOOT0.
    pub async fn boot0(&mut self, level: Level) -> Result<(), ScenarioError> {
        self.rig.boot0()?.set_boot0(level).await?;
        self.event(format!("BOOT0 {level}"));
        Ok(())
    }

    /// Pulse NRST (default hold).
    pub async fn nrst(&mut self) -> Result<(), ScenarioError> {
        self.rig.reset()?.pulse_reset(None).await?;
        self.event("NRST pulse");
        Ok(())
    }

    /// Power-cycle with the rig's discharge time.
    pub async fn power_cycle(&mut self) -> Result<(), ScenarioError> {
        self.rig.power()?.power_cycle(None).await?;
        self.event("power cycle");
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
    /// ROM bootloader for its ID.
    pub async fn stage(&mut self) -> Result<Stage, ScenarioError> {
        bootproof_rig::time::sleep(self.boot_wait()).await;
        let b = self.rig.board().clone();
        if let Ok(probe) = self.rig.probe() {
            let s = probe.core_status().await?;
            return Ok(match (s.state, s.pc) {
                (CoreState::LockedUp, _) => Stage::LockedUp,
                (CoreState::Running | CoreState::Sleeping, Some(pc)) if b.is_system_memory(pc) => Stage::Rom,
                (CoreState::Running | CoreState::Sleeping, Some(pc)) if b.flash.contains(pc) => Stage::App,
                _ => Stage::Other,
            });
        }
        let kind = self.rom_transport();
        let mut rom = crate::rom::RomClient::open(self.rig, kind)?;
        Ok(if rom.get_id().await.is_ok() { Stage::Rom } else { Stage::Other })
    }

    /// Observe the stage, record it, and check it is `want`.
    pub async fn expect_stage(&mut self, want: Stage) -> Result<(), ScenarioError> {
        let got = self.stage().await?;
        self.event(format!("stage: {got}"));
        check(got == want, || format!("expected the {want}, but the board is {got}"))
    }

    /// On the twin, also wait for the stand-in app's CAN announcement and record it.
    pub async fn expect_announcement(&mut self) -> Result<(), ScenarioError> {
        if !self.opts.twin || self.can_transport().is_none() {
            return Ok(());
        }
        let b = self.rig.board().clone();
        let deadline = Instant::now() + Duration::from_secs(2);
        let can = self.rig.can()?;
        while Instant::now() < deadline {
            if let Ok(CanEvent::Frame(f)) = can.recv(Duration::from_millis(100)).await
                && let Some(a) = bootproof_twin::standin::Announcement::parse(&f)
            {
                let flags = b.reset.decode(a.rsr).join("|");
                self.event(format!(
                    "app announced on CAN: stage {:#04x}, v{}, reset flags {flags}",
                    a.stage, a.version
                ));
                return Ok(());
            }
        }
        Err(ScenarioError::Check("the stand-in app did not announce itself on CAN within 2 s".into()))
    }
}

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

/// The result of one scenario on one rig.
#[derive(Debug)]
pub struct ScenarioResult {
    /// Scenario id.
    pub id: &'static str,
    /// Board.
    pub board: String,
    /// Outcome, or the failure.
    pub outcome: Result<Outcome, ScenarioError>,
    /// Timeline without times.
    pub timeline: String,
    /// Timeline with times since the start.
    pub timed: Vec<(Duration, String)>,
    /// Duration (virtual on the twin).
    pub elapsed: Duration,
}

/// Run one scenario. A missing capability becomes a skip; the rig is returned to its safe state.
pub async fn run(s: &Scenario, rig: &mut Rig, opts: RunOptions) -> ScenarioResult {
    let board = rig.board().name.clone();
    let mut ctx = Ctx::new(rig, opts);
    let outcome = match (s.run)(&mut ctx).await {
        Err(ScenarioError::Missing(m)) => Ok(Outcome::Skip(m.to_string())),
        other => other,
    };
    let timed = std::mem::take(&mut ctx.events);
    let elapsed = ctx.start.elapsed();
    let timeline = timed.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>().join("\n");
    let report = ctx.rig.restore_safe_state();
    if !report.ok() {
        tracing::error!("safe state not fully restored after {}: {report}", s.id);
    }
    ScenarioResult { id: s.id, board, outcome, timeline, timed, elapsed }
}

/// A scenario by id.
pub fn find(id: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.id == id)
}
