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

/// Clear the reset-cause flags through the probe as the reference manuals ask: RMVF written 1,
/// then 0. On the H7, RMVF is a level (RM0468, RCC_RSR; the twin's assumption `rsr-rmvf`): left
/// at 1 it keeps the flags cleared, so the next reset's flags would be lost. The register's
/// other writable bits (LSION in the F4's and G0's RCC_CSR) keep their values.
pub async fn clear_reset_flags(
    probe: &mut (dyn DebugProbe + '_),
    reset: &bootproof_fixtures::ResetFlags,
) -> Result<(), ProbeError> {
    let rmvf = 1u32 << reset.rmvf_bit;
    let flags = reset.bits.values().fold(0u32, |a, b| a | (1 << b));
    let keep = probe.read_u32(reset.register).await? & !flags & !rmvf;
    probe.write_memory(reset.register, &(keep | rmvf).to_le_bytes()).await?;
    probe.write_memory(reset.register, &keep.to_le_bytes()).await
}

/// ECC granularity of the STM32H7's AXI SRAM: 64 bits.
pub const ECC_WORD: u32 = 8;

/// After writing `[addr, addr + len)`, the 64-bit word to write again so the last one leaves
/// the memory controller's ECC write buffer. The H7's AXI SRAM keeps the last word written in
/// that buffer until another word is written, and an NRST loses it (RM0468, AXI SRAM ECC; the
/// twin's assumption `axi-ecc-write-buffer`). Writing back the first word of the range (already
/// in the array: it left the buffer when the next word was written) pushes the last one out
/// and changes nothing if it is lost in turn. A range inside one word rewrites its neighbour
/// in the same 16 bytes with its own contents instead. `None` for an empty write.
pub fn ecc_flush_word(addr: u32, len: usize) -> Option<u32> {
    if len == 0 {
        return None;
    }
    let first = addr & !(ECC_WORD - 1);
    let last = (addr + len as u32 - 1) & !(ECC_WORD - 1);
    Some(if first != last { first } else { first ^ ECC_WORD })
}

/// Write RAM so the data survives a reset right after: the write, then the word named by
/// [`ecc_flush_word`] read and written back unchanged. Use it for markers and canaries a
/// scenario checks after NRST; harmless on memories without a write buffer.
pub async fn write_ram_durably(probe: &mut (dyn DebugProbe + '_), address: u32, data: &[u8]) -> Result<(), ProbeError> {
    probe.write_memory(address, data).await?;
    if let Some(word) = ecc_flush_word(address, data.len()) {
        let same = probe.read_memory(word, ECC_WORD as usize).await?;
        probe.write_memory(word, &same).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flush_word_is_another_word_already_in_the_array() {
        // The 32-byte marker at the end of the H723's AXI SRAM: its first word.
        assert_eq!(ecc_flush_word(0x2404_FFC0, 32), Some(0x2404_FFC0));
        // Unaligned, spanning two words: the first (partially written) word.
        assert_eq!(ecc_flush_word(0x2400_0004, 8), Some(0x2400_0000));
        // Inside one word: its neighbour in the same 16 bytes.
        assert_eq!(ecc_flush_word(0x2400_0008, 4), Some(0x2400_0000));
        assert_eq!(ecc_flush_word(0x2400_0000, 8), Some(0x2400_0008));
        assert_eq!(ecc_flush_word(0x2400_0000, 0), None);
        for (a, n) in [(0x2400_0000u32, 32usize), (0x2400_0003, 1), (0x2400_0006, 3), (0x2400_0010, 17)] {
            let w = ecc_flush_word(a, n).unwrap();
            let last = (a + n as u32 - 1) & !7;
            assert_ne!(w, last, "{a:#x}+{n}: the flush must write another word than the last");
            assert_eq!(w % 8, 0);
        }
    }
}
