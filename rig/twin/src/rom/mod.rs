//! ST's ROM bootloader (system memory boot), on FDCAN (AN5405), bxCAN (AN3154) and USART
//! (AN3155).
//!
//! After its start-up time (AN2606 Table 227) the bootloader enables every interface the
//! profile lists and serves the first one that shows valid activity: any frame on FDCAN/bxCAN
//! (protocol ≤ 2.1), the 0x7F sync byte at 8E1 on USART. The command semantics are shared
//! ([`RomCore`]); each transport only frames them.
//!
//! Malformed requests get what the real bootloader gives: NACK (bad complement, checksum,
//! length, address, alignment, protection) or silence (a read under readout protection on
//! FDCAN, assumption `rdp-read`), and never change flash, RAM or option bytes.

mod bxcan;
mod fdcan;
mod usart;

use std::time::Duration;

use bootproof_fixtures::{ResetKind, RomTransport, RomTransportKind};
use bootproof_rig::CanBus;
use bootproof_rig::can::{Bitrates, CanEvent};

use crate::board::{Mcu, McuError, Rdp};
use crate::bus::CanPort;
use crate::uart::BoardRx;

pub use bootproof_rig::stm32rom::{ACK, EraseRequest, NACK, commands, op};

/// The protocol version of interface `kind`: the version byte of Get and Get Version (AN3155,
/// AN3154, AN5405: "bootloader version" there means the protocol's, e.g. USART V3.1 = 0x31), not
/// the bootloader ID that AN2606 lists per device and tools read from system memory.
pub(crate) fn version(p: &bootproof_fixtures::BoardProfile, kind: RomTransportKind) -> u8 {
    p.rom.transport(kind).map(|t| t.protocol_version()).unwrap_or(0)
}

/// Outcome of a command that may end the session.
pub(crate) enum After {
    /// Keep serving.
    Continue,
    /// The bootloader is gone (jumped away, reset, faulted).
    Stop,
}

/// The bootloader's command semantics, shared by all transports.
pub(crate) struct RomCore {
    pub mcu: Mcu,
    pub kind: RomTransportKind,
    /// AN2606 §4.6: after an unaligned flash write, every later flash write fails until reset.
    program_error: bool,
}

impl RomCore {
    fn new(mcu: Mcu, kind: RomTransportKind) -> Self {
        Self { mcu, kind, program_error: false }
    }

    /// The bootloader's handling time between a request and its first answer (assumption
    /// `rom-latency`).
    async fn think(&self) -> Result<(), McuError> {
        let us = self.mcu.profile().rom.latency.command_us;
        if us > 0 { self.mcu.sleep(Duration::from_micros(us as u64)).await } else { Ok(()) }
    }

    fn protected(&self) -> bool {
        self.mcu.rdp() == Rdp::Level1
    }

    fn in_rom_ram(&self, addr: u32, len: u32) -> bool {
        let end = addr as u64 + len as u64;
        self.mcu.profile().rom.ram.iter().any(|r| addr >= r[0] && end <= r[1] as u64)
    }

    fn in_flash(&self, addr: u32, len: u32) -> bool {
        let f = &self.mcu.profile().flash;
        addr >= f.base && addr as u64 + len as u64 <= f.end() as u64
    }

    /// Whether Read Memory may read `[addr, addr+len)`.
    pub fn readable(&self, addr: u32, len: u32) -> bool {
        let p = self.mcu.profile();
        let sys = &p.system_memory;
        let in_sys = addr >= sys.base && addr as u64 + len as u64 <= sys.base as u64 + sys.size as u64;
        let id = &p.identity;
        let within = |base: u32, size: u32| addr >= base && addr as u64 + len as u64 <= base as u64 + size as u64;
        // The device information area: unique ID and flash size (what tools read to identify
        // the part).
        let info = within(id.uid_address, 12) || within(id.flash_size_address, 2);
        self.in_flash(addr, len) || self.in_rom_ram(addr, len) || in_sys || info
    }

    /// Whether Go may jump to `addr`.
    pub fn go_target_ok(&self, addr: u32) -> bool {
        self.in_flash(addr, 8) || self.in_rom_ram(addr, 8)
    }

    /// Read for the host. `None`: the read bus-faulted in the bootloader (it is now locked up).
    pub fn read(&self, addr: u32, len: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        match self.mcu.read(addr, &mut buf) {
            Ok(()) => Some(buf),
            Err(e) => {
                self.mcu.fault(format!("ROM bootloader bus fault reading {addr:#010x}: {e}"));
                None
            }
        }
    }

    /// Validate the target of a Write Memory before its data arrives.
    pub fn write_target_ok(&self, addr: u32, len: u32) -> bool {
        self.in_flash(addr, len) || self.in_rom_ram(addr, len)
    }

    /// Perform a Write Memory; `true` = ACK.
    pub async fn write(&mut self, addr: u32, data: &[u8]) -> Result<bool, McuError> {
        let len = data.len() as u32;
        if self.in_rom_ram(addr, len) {
            self.mcu.write(addr, data)?;
            return Ok(true);
        }
        if !self.in_flash(addr, len) {
            return Ok(false);
        }
        // AN2606 §4.6 Table 7: the address alignment per family (and §4.4: lengths in words).
        let align = self.mcu.profile().rom.write_alignment;
        if !addr.is_multiple_of(align) || !len.is_multiple_of(align) {
            self.program_error = true;
            self.mcu
                .log(format!("ROM: unaligned flash write {addr:#010x}+{len} refused; later writes fail until reset"));
            return Ok(false);
        }
        if self.program_error {
            return Ok(false);
        }
        let flash = &self.mcu.profile().flash;
        let first = flash.sector_at(addr).map(|s| s.index).unwrap_or(0);
        let last = flash.sector_at(addr + len - 1).map(|s| s.index).unwrap_or(0);
        if (first..=last).any(|s| self.mcu.is_write_protected(s)) {
            // "No error is returned when performing write operations on write-protected
            // sectors" (AN3155 §3.6, AN5405 §3.6, AN3154/AN2662 Write Memory notes): ACK,
            // nothing written. Assumption `rom-write-protected`.
            self.mcu.log(format!("ROM: write {addr:#010x}+{len} into a write-protected sector: ACK, nothing written"));
            return Ok(true);
        }
        // Part of a flash word: the whole word is programmed, the rest erased (assumption
        // `rom-partial-word`); a later write to the rest of it is a second program.
        let flash = &self.mcu.profile().flash;
        let word = flash.word.max(1);
        let start = addr - addr % word;
        let end = (addr + len).div_ceil(word) * word;
        let mut buf = vec![flash.erased; (end - start) as usize];
        buf[(addr - start) as usize..(addr - start + len) as usize].copy_from_slice(data);
        match self.mcu.program(start, &buf).await {
            Ok(()) => Ok(true),
            Err(McuError::Reset) => Err(McuError::Reset),
            Err(e) => {
                self.mcu.log(format!("ROM: flash program failed: {e}"));
                Ok(false)
            }
        }
    }

    /// Validate an erase request; `true` if it may proceed. Write protection is not checked
    /// here: the erase skips protected sectors and still answers ACK.
    pub fn erase_ok(&self, req: &EraseRequest) -> bool {
        let n = self.mcu.profile().flash.sector_list().len() as u32;
        match req {
            EraseRequest::Mass | EraseRequest::Bank(1) => true,
            EraseRequest::Bank(_) => false, // single-bank parts modelled
            EraseRequest::Sectors(list) => !list.is_empty() && list.iter().all(|s| (*s as u32) < n),
        }
    }

    /// Perform a validated erase; `true` = ACK. "No error is returned when performing erase
    /// operations on write-protected sectors" (AN3155 §3.7/§3.8, AN5405 §3.7, AN2662 §3.11):
    /// protected sectors are skipped, and a mass erase with any sector protected erases
    /// nothing (the controller's WRPERR), both answered ACK (assumption `rom-write-protected`).
    pub async fn erase(&self, req: &EraseRequest) -> Result<bool, McuError> {
        let n = self.mcu.profile().flash.sector_list().len() as u32;
        let protected: Vec<u32> = (0..n).filter(|s| self.mcu.is_write_protected(*s)).collect();
        let r = match req {
            EraseRequest::Mass | EraseRequest::Bank(_) if !protected.is_empty() => {
                self.mcu
                    .log(format!("ROM: mass erase with sectors {protected:?} write-protected: ACK, nothing erased"));
                Ok(())
            }
            EraseRequest::Mass | EraseRequest::Bank(_) => self.mcu.mass_erase().await,
            EraseRequest::Sectors(list) => {
                for s in list {
                    if protected.contains(&(*s as u32)) {
                        self.mcu.log(format!("ROM: sector {s} is write-protected: skipped, no error"));
                        continue;
                    }
                    match self.mcu.erase(*s as u32).await {
                        Ok(()) => {}
                        Err(e) => return if e == McuError::Reset { Err(e) } else { Ok(false) },
                    }
                }
                Ok(())
            }
        };
        match r {
            Ok(()) => Ok(true),
            Err(McuError::Reset) => Err(McuError::Reset),
            Err(_) => Ok(false),
        }
    }

    /// Apply write protection to `sectors` (then the option bytes reload).
    pub fn write_protect(&self, sectors: &[u8]) -> bool {
        let n = self.mcu.profile().flash.sector_list().len() as u32;
        if sectors.is_empty() || sectors.iter().any(|s| *s as u32 >= n) {
            return false;
        }
        sectors.iter().all(|s| self.mcu.set_write_protection(*s as u32, true).is_ok())
    }

    /// Remove all write protection.
    pub fn write_unprotect(&self) {
        for s in 0..self.mcu.profile().flash.sector_list().len() as u32 {
            let _ = self.mcu.set_write_protection(s, false);
        }
    }

    /// End of a protection command: option bytes reload, the MCU resets.
    pub async fn option_reload(&self) -> After {
        self.mcu.log("ROM: option bytes changed; option-byte reload reset");
        self.mcu.reset(ResetKind::OptionReload).await;
        After::Stop
    }

    /// Go: jump without reset.
    pub fn go(&self, addr: u32) -> After {
        let _ = self.mcu.jump(addr);
        After::Stop
    }
}

/// The bootloader's main loop.
pub(crate) async fn run(mcu: Mcu) {
    let profile = mcu.profile().clone();
    let startup = Duration::from_micros(profile.rom.startup_us as u64);
    clobber_own_ram(&mcu, &profile);
    if mcu.sleep(startup).await.is_err() {
        return;
    }
    mcu.log("ROM bootloader ready (interface detection)");
    // Interface detection: bring up every interface, serve the first with valid activity.
    let mut can: Option<(CanPort, RomTransportKind)> = None;
    let mut usart = false;
    for t in &profile.rom.transports {
        match t {
            RomTransport::Fdcan { nominal_bitrate, data_bitrate, .. } => {
                if let Ok(p) = mcu.can(Bitrates::fd(*nominal_bitrate, *data_bitrate)) {
                    can = Some((p, RomTransportKind::Fdcan));
                }
            }
            RomTransport::Bxcan { bitrate, .. } => {
                if let Ok(p) = mcu.can(Bitrates::classic(*bitrate)) {
                    can = Some((p, RomTransportKind::Bxcan));
                }
            }
            RomTransport::Usart { .. } => {
                usart = mcu.uart_setup(BoardRx::Autobaud).is_ok();
            }
        }
    }
    const FOREVER: Duration = Duration::from_secs(3600);
    loop {
        let activity = tokio::select! {
            ev = async {
                match can.as_mut() {
                    Some((port, _)) => port.recv(FOREVER).await.ok(),
                    None => std::future::pending().await,
                }
            } => ev.map(Activity::Can),
            bytes = async {
                if usart { mcu.uart_read(1, FOREVER).await.ok() } else { std::future::pending().await }
            } => bytes.map(Activity::Usart),
        };
        if !mcu.alive() {
            return;
        }
        match activity {
            Some(Activity::Can(CanEvent::Frame(first))) => {
                let (port, kind) = can.take().expect("a CAN interface delivered the frame");
                let _ = mcu.uart_setup(BoardRx::Closed);
                mcu.log(format!("ROM: {kind} selected"));
                let core = RomCore::new(mcu.clone(), kind);
                match kind {
                    RomTransportKind::Fdcan => fdcan::serve(core, port, first).await,
                    _ => bxcan::serve(core, port, first).await,
                }
                return;
            }
            Some(Activity::Usart(bytes)) if bytes.first() == Some(&0x7F) => {
                drop(can.take());
                mcu.log("ROM: USART selected (0x7F sync)");
                usart::serve(RomCore::new(mcu.clone(), RomTransportKind::Usart)).await;
                return;
            }
            // Bus errors, empty reads: keep listening.
            _ => {}
        }
    }
}

/// The bootloader's stack and variables overwrite its own RAM (AN2606's per-device "RAM" rows:
/// "… are used by the bootloader firmware"): a canary the application kept there is gone.
/// What exactly it writes is not documented; the twin writes a pattern that differs per run,
/// so nothing of the old contents can pass for retained (assumption `rom-own-ram`).
fn clobber_own_ram(mcu: &Mcu, profile: &bootproof_fixtures::BoardProfile) {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0x5EED);
    let mut x = RUNS.fetch_add(0x9E37_79B9, std::sync::atomic::Ordering::Relaxed) | 1;
    for [start, end] in &profile.rom.own_ram {
        let bytes: Vec<u8> = (*start..*end)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        if mcu.write(*start, &bytes).is_err() {
            mcu.log(format!("ROM: its RAM {start:#010x}..{end:#010x} is not in the board's RAM map"));
        }
    }
}

enum Activity {
    Can(CanEvent),
    Usart(Vec<u8>),
}
