//! The STM32H723's memory map as the emulated core sees it: the board's flash (with ECC double
//! errors as bus faults), RAM regions and backup SRAM, system memory (data reads; executing it
//! hands over to the twin's ROM bootloader model), the device information area, and the
//! peripheral models. Anything else is an access outside the model: logged in lenient mode, a
//! bus fault in strict mode.

use std::time::Duration;

use bootproof_cortex::decode::Size;
use bootproof_cortex::{Bus, BusError, Ctx};
use bootproof_fixtures::BoardProfile;

use super::periph::{FlashOp, Peripherals, Unmodelled};
use crate::board::{Board, State};

/// The bus over one quantum: the board's state is locked for its duration.
pub struct SocBus<'a> {
    /// The board's state.
    pub st: &'a mut State,
    /// Peripherals.
    pub p: &'a mut Peripherals,
    /// The board.
    pub board: &'a Board,
    /// The profile.
    pub profile: &'a BoardProfile,
    /// Unmodelled accesses fault.
    pub strict: bool,
    /// User flash: [start, end).
    pub flash: (u32, u32),
    /// Events for the twin's log, each at the core cycle it happened.
    pub log: &'a mut Vec<(u64, String)>,
}

impl SocBus<'_> {
    fn flash_contains(&self, addr: u32) -> bool {
        addr >= self.flash.0 && addr < self.flash.1
    }

    fn info_byte(&self, addr: u32) -> Option<u8> {
        self.board.info_byte(addr)
    }

    /// An access nothing here answers. In the peripheral space (0x4000_0000..0x6000_0000) the
    /// silicon has registers the twin does not model: reported, and read as zero (lenient) or
    /// a bus fault (strict). Anywhere else nothing is there on the silicon either (unused code
    /// or SRAM space, external memory without a controller set up, the vendor region): a bus
    /// fault, as on the chip.
    fn unmodelled(&mut self, addr: u32, write: bool, value: u32, ctx: Ctx) -> Result<u32, BusError> {
        if !(0x4000_0000..0x6000_0000).contains(&addr) {
            return Err(BusError::Unmapped(addr));
        }
        self.p.record_unmodelled(Unmodelled { addr, write, value, pc: ctx.pc });
        if self.strict { Err(BusError::Unmapped(addr)) } else { Ok(0) }
    }

    /// Start the flash controller's next operation, if one is waiting and none runs.
    fn start_flash_ops(&mut self, now: u64) {
        if self.p.flash.busy.is_some() || self.p.flash.started.is_empty() {
            return;
        }
        let op = self.p.flash.started.remove(0);
        let hz = self.p.core_hz() as u64;
        let dur = match &op {
            FlashOp::Program { .. } => Duration::from_micros(self.profile.flash.program_us as u64),
            FlashOp::Erase { sector } => Duration::from_millis(
                self.st.flash.sectors().get(*sector as usize).map(|s| s.erase_ms as u64).unwrap_or(0),
            ),
            FlashOp::Mass => Duration::from_millis(self.profile.flash.mass_erase_ms as u64),
        };
        let cycles = (dur.as_nanos() as u64).saturating_mul(hz) / 1_000_000_000;
        self.st.pending = Some(op.clone());
        self.p.flash.busy = Some((op, now + cycles.max(1)));
    }

    fn complete_flash_op(&mut self, now: u64) {
        let Some((_, done)) = &self.p.flash.busy else { return };
        if now < *done {
            return;
        }
        let Some(op) = self.p.flash_complete() else { return };
        self.st.pending = None;
        match op {
            FlashOp::Program { addr, data } => {
                if let Err(e) = self.st.flash.program_word(addr, &data) {
                    self.log.push((now, format!("flash controller: program at {addr:#010x}: {e}")));
                }
            }
            FlashOp::Erase { sector } => match self.st.flash.erase_sector(sector) {
                Ok(()) => self.log.push((now, format!("flash controller: sector {sector} erased"))),
                Err(e) => self.log.push((now, format!("flash controller: erase of sector {sector}: {e}"))),
            },
            FlashOp::Mass => {
                for s in 0..self.st.flash.sectors().len() as u32 {
                    let _ = self.st.flash.erase_sector(s);
                }
                self.log.push((now, "flash controller: bank erased".into()));
            }
        }
        self.start_flash_ops(now);
    }
}

fn size_bytes(size: Size) -> u32 {
    size.bytes()
}

impl Bus for SocBus<'_> {
    fn read(&mut self, addr: u32, size: Size, ctx: Ctx) -> Result<u32, BusError> {
        let n = size_bytes(size);
        if self.flash_contains(addr) {
            let mut b = [0u8; 4];
            return match self.st.flash.read_checked(addr, &mut b[..n as usize]) {
                Ok(None) => Ok(u32::from_le_bytes(b)),
                Ok(Some(w)) => {
                    self.p.flash_corrected(w);
                    Ok(u32::from_le_bytes(b))
                }
                Err(crate::flash::FlashFault::EccDouble(w)) => {
                    self.p.flash_ecc(w);
                    Err(BusError::Ecc(addr))
                }
                Err(_) => Err(BusError::Unmapped(addr)),
            };
        }
        if self.profile.ram_region(addr, n).is_some() {
            return Ok(self.st.ram.read_le(addr, n));
        }
        if let Some(b) = &self.profile.backup
            && addr >= b.base
            && addr + n <= b.base + b.size
        {
            return Ok(self.st.backup.read_le(addr, n));
        }
        if self.profile.is_system_memory(addr) || self.info_byte(addr).is_some() {
            let mut v = 0u32;
            for i in 0..n {
                let a = addr + i;
                let byte = self.info_byte(a).unwrap_or_else(|| self.board.system_memory_byte(a));
                v |= (byte as u32) << (8 * i);
            }
            return Ok(v);
        }
        if self.p.claims(addr) {
            let rsr = self.board.rsr_value(self.st);
            let rdp1 = self.st.rdp == crate::board::Rdp::Level1;
            let word = self.p.read(addr & !3, ctx.cycles, rsr, rdp1);
            let reg = (addr & !3).wrapping_sub(crate::emu::periph::addr::RCC);
            let is_rsr = match self.p.generic_reset_register() {
                Some(r) => addr & !3 == r,
                None => reg == crate::emu::periph::rcc::RSR || reg == crate::emu::periph::rcc::C1_RSR,
            };
            if is_rsr && self.p.rsr_read != Some(rsr) {
                self.p.rsr_read = Some(rsr);
                self.log.push((
                    ctx.cycles,
                    format!("firmware read {} = {rsr:#010x} at PC {:#010x}", self.profile.reset.register_name, ctx.pc),
                ));
            }
            let sh = (addr & 3) * 8;
            return Ok(match size {
                Size::Word => word,
                Size::Half => (word >> sh) & 0xFFFF,
                Size::Byte => (word >> sh) & 0xFF,
            });
        }
        self.unmodelled(addr, false, 0, ctx)
    }

    fn write(&mut self, addr: u32, size: Size, value: u32, ctx: Ctx) -> Result<(), BusError> {
        let n = size_bytes(size);
        if self.flash_contains(addr) {
            self.p.flash_write(addr, n, value);
            self.start_flash_ops(ctx.cycles);
            return Ok(());
        }
        if self.profile.ram_region(addr, n).is_some() {
            self.st.ram.write_le(addr, n, value);
            return Ok(());
        }
        if let Some(b) = &self.profile.backup
            && addr >= b.base
            && addr + n <= b.base + b.size
        {
            self.st.backup.write_le(addr, n, value);
            return Ok(());
        }
        if self.p.claims(addr) {
            let sh = (addr & 3) * 8;
            let (v, mask) = match size {
                Size::Word => (value, u32::MAX),
                Size::Half => ((value & 0xFFFF) << sh, 0xFFFF << sh),
                Size::Byte => ((value & 0xFF) << sh, 0xFF << sh),
            };
            let sectors = self.st.flash.sectors().len() as u32;
            let reg = (addr & !3).wrapping_sub(crate::emu::periph::addr::RCC);
            let is_rsr = match self.p.generic_reset_register() {
                Some(r) => addr & !3 == r,
                None => reg == crate::emu::periph::rcc::RSR || reg == crate::emu::periph::rcc::C1_RSR,
            };
            let r = &self.profile.reset;
            let rmvf_written = is_rsr && mask & (1 << r.rmvf_bit) != 0;
            if self.p.write(addr & !3, v, mask, ctx.cycles, sectors) {
                self.st.rsr = 0;
                self.st.rmvf = r.rmvf_held;
                self.log.push((ctx.cycles, format!("{} cleared (RMVF) by the firmware", r.register_name)));
            } else if rmvf_written && self.st.rmvf {
                // Assumption rsr-rmvf: RMVF written 0 lets the next reset's flags latch again.
                self.st.rmvf = false;
                self.log.push((ctx.cycles, format!("{} RMVF written 0 by the firmware", r.register_name)));
            }
            self.start_flash_ops(ctx.cycles);
            return Ok(());
        }
        self.unmodelled(addr, true, value, ctx).map(|_| ())
    }

    fn fetch(&mut self, addr: u32) -> Result<u16, BusError> {
        if self.flash_contains(addr) {
            let mut b = [0u8; 2];
            return match self.st.flash.read(addr, &mut b) {
                Ok(()) => Ok(u16::from_le_bytes(b)),
                Err(crate::flash::FlashFault::EccDouble(w)) => {
                    self.p.flash_ecc(w);
                    Err(BusError::Ecc(addr))
                }
                Err(_) => Err(BusError::Unmapped(addr)),
            };
        }
        if self.profile.is_system_memory(addr) {
            return Err(BusError::Handover(addr));
        }
        if self.profile.ram_region(addr, 2).is_some() {
            return Ok(self.st.ram.read_le(addr, 2) as u16);
        }
        Err(BusError::Unmapped(addr))
    }

    fn tick(&mut self, cycles: u64) {
        self.p.tick(cycles);
        self.complete_flash_op(cycles);
    }

    fn next_event(&self) -> u64 {
        self.p.next_event()
    }

    fn take_irq_lines(&mut self) -> Option<[u32; 8]> {
        self.p.take_lines()
    }

    fn code_version(&self) -> u64 {
        self.st.flash.version()
    }

    fn code_cacheable(&self, addr: u32) -> bool {
        self.flash_contains(addr)
    }

    /// Assumption `flash-busy-stalls-fetch`: the H723 has one flash bank, and a read of a bank
    /// that is programming or erasing waits until the operation ends (RM0468, embedded flash:
    /// no read-while-write within a bank). Firmware running from flash therefore stops for a
    /// word program or a sector erase; the peripherals (the FDCAN receiving into its message
    /// RAM) go on. Data reads of flash are not stalled in the model, only fetches.
    fn fetch_stalled_until(&self, addr: u32, cycles: u64) -> u64 {
        match &self.p.flash.busy {
            Some((_, done)) if self.flash_contains(addr) && *done > cycles => *done,
            _ => cycles,
        }
    }
}
