//! The debug probe capability.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::ProbeError;
use crate::image::FirmwareImage;

/// Execution state of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreState {
    /// Executing.
    Running,
    /// Halted by the debugger or a breakpoint/vector catch.
    Halted,
    /// Locked up after a fault during fault handling (e.g. blank flash).
    LockedUp,
    /// In WFI/WFE.
    Sleeping,
    /// Powered off, held in reset or not reachable.
    Unknown,
}

impl fmt::Display for CoreState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CoreState::Running => "running",
            CoreState::Halted => "halted",
            CoreState::LockedUp => "locked up",
            CoreState::Sleeping => "sleeping",
            CoreState::Unknown => "unknown",
        })
    }
}

/// What the probe sees of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreStatus {
    /// State.
    pub state: CoreState,
    /// Program counter, when it can be read.
    pub pc: Option<u32>,
    /// Halt reason or other detail.
    pub detail: Option<String>,
}

impl fmt::Display for CoreStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.state)?;
        if let Some(pc) = self.pc {
            write!(f, " at pc={pc:#010x}")?;
        }
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// The core registers of a halted core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreRegisters {
    /// R0..R12, SP, LR, PC.
    pub r: [u32; 16],
    /// xPSR.
    pub xpsr: u32,
    /// Main stack pointer.
    pub msp: u32,
    /// Process stack pointer.
    pub psp: u32,
}

impl fmt::Display for CoreRegisters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 16] =
            ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "sp", "lr", "pc"];
        for (i, row) in NAMES.chunks(4).enumerate() {
            for (j, n) in row.iter().enumerate() {
                write!(f, "{n:>4} {:#010x}  ", self.r[4 * i + j])?;
            }
            writeln!(f)?;
        }
        let ipsr = self.xpsr & 0x1FF;
        write!(
            f,
            "xpsr {:#010x} (N{} Z{} C{} V{}, {})  msp {:#010x}  psp {:#010x}",
            self.xpsr,
            self.xpsr >> 31,
            (self.xpsr >> 30) & 1,
            (self.xpsr >> 29) & 1,
            (self.xpsr >> 28) & 1,
            if ipsr == 0 { "thread mode".to_string() } else { format!("handler mode, exception {ipsr}") },
            self.msp,
            self.psp
        )
    }
}

/// Phase of a flash operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashPhase {
    /// Erasing sectors.
    Erase,
    /// Programming.
    Program,
    /// Reading back.
    Verify,
}

/// A progress event of a flash operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashProgress {
    /// Phase.
    pub phase: FlashPhase,
    /// Bytes done in this phase.
    pub done: u64,
    /// Total bytes of this phase, if known.
    pub total: Option<u64>,
}

/// Explicit opt-ins for destructive operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Permissions {
    mass_erase: bool,
    readout_protection: bool,
}

impl Permissions {
    /// Nothing destructive allowed.
    pub fn none() -> Self {
        Self::default()
    }
    /// Allow erasing the whole flash.
    pub fn allow_mass_erase(mut self) -> Self {
        self.mass_erase = true;
        self
    }
    /// Allow changing readout protection (RDP), which on STM32 also mass-erases on removal.
    pub fn allow_readout_protection(mut self) -> Self {
        self.readout_protection = true;
        self
    }
    /// Check the mass-erase opt-in.
    pub fn check_mass_erase(&self) -> Result<(), ProbeError> {
        if self.mass_erase {
            Ok(())
        } else {
            Err(ProbeError::NotPermitted { operation: "mass erase", how: "pass --allow-mass-erase to allow it" })
        }
    }
    /// Check the readout-protection opt-in.
    pub fn check_readout_protection(&self) -> Result<(), ProbeError> {
        if self.readout_protection {
            Ok(())
        } else {
            Err(ProbeError::NotPermitted {
                operation: "changing readout protection",
                how: "pass --allow-readout-protection to allow it (removing it mass-erases the flash)",
            })
        }
    }
    /// Whether mass erase is allowed.
    pub fn mass_erase(&self) -> bool {
        self.mass_erase
    }
    /// Whether readout-protection changes are allowed.
    pub fn readout_protection(&self) -> bool {
        self.readout_protection
    }
}

/// Facts about the probe and target.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeInfo {
    /// Probe name and serial.
    pub probe: String,
    /// Target chip.
    pub chip: String,
    /// Target voltage, if the probe measures it.
    pub target_voltage: Option<f32>,
}

/// A debug probe attached to the board.
#[async_trait]
pub trait DebugProbe: Send {
    /// Probe and target description.
    async fn info(&mut self) -> Result<ProbeInfo, ProbeError>;
    /// Program an image, verify it, and reset the core. Progress goes to `progress`.
    async fn flash(
        &mut self,
        image: &FirmwareImage,
        progress: &mut (dyn FnMut(FlashProgress) + Send),
    ) -> Result<(), ProbeError>;
    /// Erase the whole flash. Needs [`Permissions::allow_mass_erase`].
    async fn erase_all(&mut self, permissions: Permissions) -> Result<(), ProbeError>;
    /// Erase the sectors covering `[start, end)`.
    async fn erase_range(&mut self, start: u32, end: u32) -> Result<(), ProbeError>;
    /// Read target memory.
    async fn read_memory(&mut self, address: u32, len: usize) -> Result<Vec<u8>, ProbeError>;
    /// Write target RAM or registers.
    async fn write_memory(&mut self, address: u32, data: &[u8]) -> Result<(), ProbeError>;
    /// System reset through the debug port (AIRCR.SYSRESETREQ: a *software* reset for the
    /// reset-cause flags), core left running.
    async fn reset(&mut self) -> Result<(), ProbeError>;
    /// System reset and halt at the reset vector.
    async fn reset_and_halt(&mut self) -> Result<CoreStatus, ProbeError>;
    /// Halt the core.
    async fn halt(&mut self) -> Result<CoreStatus, ProbeError>;
    /// Resume a halted core.
    async fn run(&mut self) -> Result<(), ProbeError>;
    /// Execute one instruction of the halted core; it stays halted. Returns the status after.
    async fn step(&mut self) -> Result<CoreStatus, ProbeError>;
    /// The core registers (the core must be halted).
    async fn registers(&mut self) -> Result<CoreRegisters, ProbeError>;
    /// Current core state and PC.
    async fn core_status(&mut self) -> Result<CoreStatus, ProbeError>;
    /// Attach to the RTT control block (found in `elf` if given, else by scanning RAM). Clears a
    /// stale control block left from before the last reset or flash.
    async fn rtt_attach(&mut self, elf: Option<&[u8]>, timeout: Duration) -> Result<(), ProbeError>;
    /// Bytes from RTT up-channel 0 (non-blocking; 0 when nothing is pending).
    async fn rtt_read(&mut self, buf: &mut [u8]) -> Result<usize, ProbeError>;

    /// Read one little-endian word.
    async fn read_u32(&mut self, address: u32) -> Result<u32, ProbeError> {
        let b = self.read_memory(address, 4).await?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}
