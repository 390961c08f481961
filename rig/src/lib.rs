//! Rig capabilities: what a scenario can do to a board, on real hardware or on the twin.
//!
//! A [`Rig`] aggregates optional capabilities:
//!
//! | capability | trait | real backend (`hw`) | twin |
//! |---|---|---|---|
//! | BOOT0 level | [`BootSelect`] | relay on a Pi GPIO ([`RelayBootSelect`] over rppal) | twin pin |
//! | NRST | [`ResetLine`] | relay ([`RelayReset`]) | twin pin |
//! | power | [`PowerSwitch`] | relay ([`RelayPower`]) | twin supply |
//! | debug probe | [`DebugProbe`] | probe-rs | twin probe model |
//! | CAN / CAN FD | [`CanBus`] | SocketCAN | simulated bus with wire timing |
//! | serial console | [`Console`] → [`ConsolePort`] | serialport | simulated USART |
//!
//! A missing capability is reported as [`Missing`]; scenarios skip with its reason instead of
//! failing. The rig always ends in its safe state ([`safe`]): BOOT0 low, NRST released, power
//! as configured, on every exit path.
//!
//! Architecture invariant: nothing outside `rig::hw` names rppal, probe-rs, socketcan or
//! serialport; scenarios see only these traits.

pub mod beacon;
pub mod can;
pub mod console;
pub mod defmt;
mod error;
pub mod image;
pub mod lines;
pub mod lock;
pub mod open;
pub mod probe;
pub mod record;
pub mod safe;
pub mod stm32rom;
pub mod symbols;
pub mod time;

#[cfg(feature = "hw")]
pub mod hw;

pub use bootproof_fixtures::{self as fixtures, BoardProfile, Capability, Level, RigConfig};
pub use can::{BusError, CanBus, CanEvent, CanFilter, CanFrame, CanId};
pub use console::{Console, ConsolePort, SerialConfig};
pub use error::{CanError, ConsoleError, LineError, LockError, Missing, ProbeError, RigError};
pub use lines::{BootSelect, PowerSwitch, RelayBootSelect, RelayPower, RelayReset, ResetLine};
pub use probe::{CoreState, CoreStatus, DebugProbe, Permissions};
pub use safe::SafeState;

use std::time::Duration;

/// A decoded reset-cause register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetCause {
    /// Raw register value.
    pub raw: u32,
    /// Names of the set flags.
    pub flags: Vec<String>,
    /// Reset kinds whose flag pattern matches exactly.
    pub kinds: Vec<bootproof_fixtures::ResetKind>,
}

impl std::fmt::Display for ResetCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#010x} [{}]", self.raw, self.flags.join("|"))?;
        match self.kinds.as_slice() {
            [] => f.write_str(" (no single reset kind)"),
            kinds => write!(f, " = {}", kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(" or ")),
        }
    }
}

/// The capabilities that are parts of a rig, in the order checks list them (CAN FD and RTT
/// come with CAN and the probe).
pub const PARTS: [Capability; 6] =
    [Capability::Boot0, Capability::Nrst, Capability::Power, Capability::Probe, Capability::Can, Capability::Console];

/// One board's rig: its capabilities, its board profile and its safe state.
pub struct Rig {
    name: String,
    board: BoardProfile,
    boot0: Option<Box<dyn BootSelect>>,
    reset: Option<Box<dyn ResetLine>>,
    power: Option<Box<dyn PowerSwitch>>,
    probe: Option<Box<dyn DebugProbe>>,
    can: Option<Box<dyn CanBus>>,
    console: Option<ConsolePort>,
    missing: Vec<Missing>,
    provides: Vec<Capability>,
    safe: SafeState,
    recorder: record::Recorder,
    _registration: Option<safe::Registration>,
    _lock: Option<lock::RigLock>,
}

/// Builds a [`Rig`] from capabilities.
pub struct RigBuilder {
    rig: Rig,
}

impl RigBuilder {
    /// Start a rig named `name` for `board`.
    pub fn new(name: impl Into<String>, board: BoardProfile) -> Self {
        RigBuilder {
            rig: Rig {
                name: name.into(),
                board,
                boot0: None,
                reset: None,
                power: None,
                probe: None,
                can: None,
                console: None,
                missing: Vec::new(),
                provides: Vec::new(),
                safe: SafeState::default(),
                recorder: record::Recorder::new(),
                _registration: None,
                _lock: None,
            },
        }
    }

    /// BOOT0 control.
    pub fn boot0(mut self, b: Box<dyn BootSelect>) -> Self {
        self.rig.boot0 = Some(b);
        self
    }
    /// NRST control.
    pub fn reset(mut self, r: Box<dyn ResetLine>) -> Self {
        self.rig.reset = Some(r);
        self
    }
    /// Power control.
    pub fn power(mut self, p: Box<dyn PowerSwitch>) -> Self {
        self.rig.power = Some(p);
        self
    }
    /// Debug probe.
    pub fn probe(mut self, p: Box<dyn DebugProbe>) -> Self {
        self.rig.probe = Some(p);
        self
    }
    /// CAN interface.
    pub fn can(mut self, c: Box<dyn CanBus>) -> Self {
        self.rig.can = Some(c);
        self
    }
    /// Serial console.
    pub fn console(mut self, c: Box<dyn Console>) -> Self {
        self.rig.console = Some(ConsolePort::new(c));
        self
    }
    /// Record why a capability is absent.
    pub fn missing(mut self, capability: Capability, reason: impl Into<String>) -> Self {
        self.rig.missing.push(Missing { capability, reason: reason.into() });
        self
    }
    /// The capabilities the rig's config says it provides (`provides`): one of them missing
    /// is a broken rig, not a skip.
    pub fn provides(mut self, capabilities: &[Capability]) -> Self {
        self.rig.provides = capabilities.to_vec();
        self
    }
    /// The safe state to restore on drop, panic and signals.
    pub fn safe_state(mut self, safe: SafeState) -> Self {
        self.rig.safe = safe;
        self
    }
    /// Keep the rig lock for the rig's lifetime.
    pub fn lock(mut self, lock: lock::RigLock) -> Self {
        self.rig._lock = Some(lock);
        self
    }

    /// Finish: taps the control lines, CAN and the console for the rig's [`record::Recorder`],
    /// and registers the safe state with the panic hook and signal handlers.
    pub fn build(mut self) -> Rig {
        let recorder = self.rig.recorder.clone();
        for (signal, line) in self.rig.safe.lines() {
            recorder.tap(signal, line);
        }
        if let Some(inner) = self.rig.can.take() {
            self.rig.can = Some(Box::new(record::RecordingCan { inner, recorder: recorder.clone() }));
        }
        if let Some(port) = self.rig.console.take() {
            let inner = port.into_inner();
            self.rig.console = Some(ConsolePort::new(Box::new(record::RecordingConsole { inner, recorder })));
        }
        if !self.rig.safe.is_empty() {
            safe::install_panic_hook();
            self.rig._registration = Some(safe::register(self.rig.safe.clone()));
        }
        self.rig
    }
}

fn missing(list: &[Missing], capability: Capability) -> Missing {
    list.iter().find(|m| m.capability == capability).cloned().unwrap_or_else(|| Missing {
        capability,
        reason: format!("not configured; add [{}] to the rig config", capability.section()),
    })
}

impl Rig {
    /// Rig name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The board profile.
    pub fn board(&self) -> &BoardProfile {
        &self.board
    }

    /// BOOT0 control.
    pub fn boot0(&mut self) -> Result<&mut dyn BootSelect, Missing> {
        match &mut self.boot0 {
            Some(b) => Ok(b.as_mut()),
            None => Err(missing(&self.missing, Capability::Boot0)),
        }
    }

    /// NRST control.
    pub fn reset(&mut self) -> Result<&mut dyn ResetLine, Missing> {
        match &mut self.reset {
            Some(r) => Ok(r.as_mut()),
            None => Err(missing(&self.missing, Capability::Nrst)),
        }
    }

    /// Power control.
    pub fn power(&mut self) -> Result<&mut dyn PowerSwitch, Missing> {
        match &mut self.power {
            Some(p) => Ok(p.as_mut()),
            None => Err(missing(&self.missing, Capability::Power)),
        }
    }

    /// Debug probe.
    pub fn probe(&mut self) -> Result<&mut dyn DebugProbe, Missing> {
        match &mut self.probe {
            Some(p) => Ok(p.as_mut()),
            None => Err(missing(&self.missing, Capability::Probe)),
        }
    }

    /// CAN interface.
    pub fn can(&mut self) -> Result<&mut dyn CanBus, Missing> {
        match &mut self.can {
            Some(c) => Ok(c.as_mut()),
            None => Err(missing(&self.missing, Capability::Can)),
        }
    }

    /// Serial console.
    pub fn console(&mut self) -> Result<&mut ConsolePort, Missing> {
        match &mut self.console {
            Some(c) => Ok(c),
            None => Err(missing(&self.missing, Capability::Console)),
        }
    }

    /// Whether the rig's config claims `capability` (so its absence is a broken rig).
    pub fn provides(&self, capability: Capability) -> bool {
        self.provides.contains(&capability)
    }

    /// What is missing and why: every capability the rig does not have.
    pub fn missing_parts(&self) -> Vec<Missing> {
        PARTS.into_iter().filter(|c| !self.has(*c)).map(|c| missing(&self.missing, c)).collect()
    }

    /// Which capabilities are present.
    pub fn has(&self, capability: Capability) -> bool {
        match capability {
            Capability::Boot0 => self.boot0.is_some(),
            Capability::Nrst => self.reset.is_some(),
            Capability::Power => self.power.is_some(),
            Capability::Probe | Capability::Rtt => self.probe.is_some(),
            Capability::Can => self.can.is_some(),
            Capability::CanFd => self.can.as_ref().is_some_and(|c| c.bitrates().data.is_some()),
            Capability::Console => self.console.is_some(),
        }
    }

    /// Read and decode the reset-cause register through the probe.
    pub async fn read_reset_cause(&mut self) -> Result<ResetCause, RigError> {
        let reg = self.board.reset.register;
        let raw = self.probe()?.read_u32(reg).await?;
        let r = &self.board.reset;
        Ok(ResetCause { raw, flags: r.decode(raw), kinds: r.classify(raw) })
    }

    /// Clear the reset-cause flags through the probe: RMVF written 1, then 0.
    pub async fn clear_reset_flags(&mut self) -> Result<(), RigError> {
        let reset = self.board.reset.clone();
        Ok(probe::clear_reset_flags(self.probe()?, &reset).await?)
    }

    /// Enter the ROM bootloader the way the seed thread's relays do: BOOT0 high, pulse NRST,
    /// hold BOOT0 until the MCU has sampled it, then return BOOT0 low (it is sampled only at
    /// reset, so the bootloader keeps running). An unpowered board is powered first. Waits the
    /// bootloader's start-up time.
    pub async fn reset_into_rom(&mut self) -> Result<(), RigError> {
        self.boot0()?.set_boot0(Level::High).await?;
        if let Ok(p) = self.power()
            && p.is_on() != Some(true)
        {
            p.power_on().await?;
        }
        let pulse = self.reset()?.pulse_reset(None).await;
        // BOOT0 has been sampled at the NRST release inside the pulse; drop it low again.
        let low = self.boot0()?.set_boot0(Level::Low).await;
        pulse?;
        low?;
        crate::time::sleep(Duration::from_micros(self.board.rom.startup_us as u64)).await;
        Ok(())
    }

    /// Reset with BOOT0 low: boots whatever BOOT_ADD0 (or the empty check) selects.
    pub async fn reset_normal(&mut self) -> Result<(), RigError> {
        self.boot0()?.set_boot0(Level::Low).await?;
        self.reset()?.pulse_reset(None).await?;
        Ok(())
    }

    /// After an explicit power command: on drop, restore BOOT0 and NRST but leave power as it
    /// was commanded. Signals and panics still restore the full safe state.
    pub fn leave_power_as_is(&mut self) {
        self.safe = self.safe.without_power();
    }

    /// What happened on the rig's lines, CAN and console, time-stamped.
    pub fn recorder(&self) -> &record::Recorder {
        &self.recorder
    }

    /// Restore the safe state now.
    pub fn restore_safe_state(&self) -> safe::SafeReport {
        self.safe.restore()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !self.safe.is_empty() {
            let report = self.safe.restore();
            if report.ok() {
                tracing::debug!("rig {}: safe state restored: {report}", self.name);
            } else {
                tracing::error!("rig {}: safe state NOT fully restored: {report}", self.name);
                eprintln!("bootproof: rig {}: safe state NOT fully restored: {report}", self.name);
            }
        }
    }
}
