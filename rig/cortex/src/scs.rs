//! The system control space (`0xE000_0000..0xE010_0000`): NVIC, SCB, SysTick, DWT, MPU and
//! FPU registers, cache maintenance, debug registers (ARMv7-M ARM chapter B3; Cortex-M7 TRM).
//!
//! | block | registers | model |
//! |---|---|---|
//! | NVIC `E000E100` | ISER, ICER, ISPR, ICPR, IABR, IPR (4 priority bits, as on the STM32H7), STIR `E000EF00` | full |
//! | SCB `E000ED00` | CPUID (Cortex-M7 r1p2), ICSR, VTOR, AIRCR (PRIGROUP, SYSRESETREQ), SCR, CCR, SHPR1-3, SHCSR, CFSR, HFSR, DFSR, MMFAR, BFAR, CPACR | full; SCR's sleep bits stored |
//! | SysTick `E000E010` | CSR, RVR, CVR, CALIB | full, counted in core cycles (CLKSOURCE 1) or cycles / 8 (0) |
//! | DWT `E0001000` | CTRL, CYCCNT, LAR | CYCCNT counts while enabled and DEMCR.TRCENA is set |
//! | MPU `E000ED90` | TYPE (16 regions), CTRL, RNR, RBAR, RASR and aliases | stored, not enforced |
//! | FPU `E000EF34` | FPCCR, FPCAR, FPDSCR, MVFR0-2 | stored (no FPU instructions execute) |
//! | caches `E000EF50..EF78`, CLIDR/CTR/CCSIDR/CSSELR | maintenance | accepted, no effect (the model has no caches) |
//! | debug `E000EDF0` | DHCSR, DCRSR, DCRDR, DEMCR | DEMCR stored; DHCSR reports the core's state |
//! | ITM/TPIU/ETM and the rest | | reads as zero, writes ignored |

use crate::decode::Size;
use crate::{Cpu, RunState};

/// System control space registers.
#[derive(Debug, Clone)]
pub struct Scs {
    /// Vector table offset.
    pub vtor: u32,
    /// AIRCR (PRIGROUP bits 10:8 kept).
    pub aircr: u32,
    /// SCR.
    pub scr: u32,
    /// CCR.
    pub ccr: u32,
    /// System handler priorities, exceptions 4..=15.
    pub shpr: [u8; 12],
    /// SHCSR.
    pub shcsr: u32,
    /// CFSR.
    pub cfsr: u32,
    /// HFSR.
    pub hfsr: u32,
    /// DFSR.
    pub dfsr: u32,
    /// MMFAR.
    pub mmfar: u32,
    /// BFAR.
    pub bfar: u32,
    /// CPACR.
    pub cpacr: u32,
    /// NVIC enables.
    pub nvic_iser: [u32; 8],
    /// NVIC priorities.
    pub nvic_ipr: [u8; 240],
    /// SysTick CSR.
    pub st_csr: u32,
    /// SysTick reload.
    pub st_rvr: u32,
    st_cvr: u32,
    st_last: u64,
    /// DWT CTRL.
    pub dwt_ctrl: u32,
    dwt_cyccnt: u32,
    dwt_last: u64,
    /// DEMCR.
    pub demcr: u32,
    mpu: [u32; 16 * 2],
    mpu_ctrl: u32,
    mpu_rnr: u32,
    fpccr: u32,
    fpcar: u32,
    fpdscr: u32,
    csselr: u32,
    /// A system reset was requested (AIRCR.SYSRESETREQ).
    pub reset_requested: bool,
    /// Addresses read or written in the system control space that the model does not know.
    pub unknown: Vec<(u32, bool)>,
}

impl Default for Scs {
    fn default() -> Self {
        Self::new()
    }
}

/// Priority bits implemented (STM32H7: 4).
const PRI_MASK: u8 = 0xF0;

impl Scs {
    /// Reset values.
    pub fn new() -> Scs {
        Scs {
            vtor: 0,
            aircr: 0,
            scr: 0,
            ccr: 0x0000_0200, // STKALIGN
            shpr: [0; 12],
            shcsr: 0,
            cfsr: 0,
            hfsr: 0,
            dfsr: 0,
            mmfar: 0,
            bfar: 0,
            cpacr: 0,
            nvic_iser: [0; 8],
            nvic_ipr: [0; 240],
            st_csr: 0x4, // CLKSOURCE reads 1 on parts without an external reference? H7: 0 selectable; reset 0x4
            st_rvr: 0,
            st_cvr: 0,
            st_last: 0,
            dwt_ctrl: 0x4000_0000,
            dwt_cyccnt: 0,
            dwt_last: 0,
            demcr: 0,
            mpu: [0; 32],
            mpu_ctrl: 0,
            mpu_rnr: 0,
            fpccr: 0xC000_0000,
            fpcar: 0,
            fpdscr: 0,
            csselr: 0,
            reset_requested: false,
            unknown: Vec::new(),
        }
    }

    /// Back to reset values with VTOR = `vtor`.
    pub fn reset(&mut self, vtor: u32) {
        *self = Scs::new();
        self.vtor = vtor;
    }

    /// PRIGROUP.
    pub fn prigroup(&self) -> u32 {
        (self.aircr >> 8) & 7
    }

    /// The implemented priority bits.
    pub fn priority_mask(&self) -> u8 {
        PRI_MASK
    }

    /// Whether IRQ `irq` is enabled.
    pub fn nvic_enabled(&self, irq: usize) -> bool {
        irq < 240 && self.nvic_iser[irq / 32] >> (irq % 32) & 1 != 0
    }

    // ---- SysTick --------------------------------------------------------------------------

    fn st_divider(&self) -> u64 {
        if self.st_csr & 4 != 0 { 1 } else { 8 }
    }

    /// Bring SysTick's counter to `cycles` without firing (used on reset and reconfiguration).
    pub fn systick_sync(&mut self, cycles: u64) {
        self.st_last = cycles;
    }

    /// Whether SysTick reaches zero at or before `cycles`.
    pub fn systick_due(&self, cycles: u64) -> bool {
        self.st_csr & 1 != 0 && cycles >= self.systick_next(self.st_last)
    }

    /// The cycle at which SysTick next reaches zero (`u64::MAX` when disabled).
    pub fn systick_next(&self, _now: u64) -> u64 {
        if self.st_csr & 1 == 0 {
            return u64::MAX;
        }
        let ticks = if self.st_cvr == 0 { self.st_rvr.max(1) as u64 + 1 } else { self.st_cvr as u64 };
        self.st_last + ticks * self.st_divider()
    }

    /// Advance SysTick to `cycles`; returns whether it wrapped with TICKINT set.
    pub fn systick_fire(&mut self, cycles: u64) -> bool {
        let mut fired = false;
        while self.systick_due(cycles) {
            let next = self.systick_next(self.st_last);
            self.st_last = next;
            self.st_cvr = self.st_rvr & 0x00FF_FFFF;
            self.st_csr |= 1 << 16;
            if self.st_csr & 2 != 0 {
                fired = true;
            }
            if self.st_rvr == 0 {
                self.st_csr &= !1;
            }
        }
        fired
    }

    fn systick_cvr(&self, cycles: u64) -> u32 {
        if self.st_csr & 1 == 0 {
            return self.st_cvr;
        }
        let elapsed = (cycles - self.st_last) / self.st_divider();
        (self.st_cvr as u64).saturating_sub(elapsed) as u32
    }

    fn dwt_cyccnt(&self, cycles: u64) -> u32 {
        if self.dwt_ctrl & 1 != 0 && self.demcr & (1 << 24) != 0 {
            self.dwt_cyccnt.wrapping_add((cycles - self.dwt_last) as u32)
        } else {
            self.dwt_cyccnt
        }
    }
}

/// Whether `addr` is in the system control space.
pub fn contains(addr: u32) -> bool {
    (0xE000_0000..0xE010_0000).contains(&addr)
}

impl Cpu {
    /// Read a system control space register.
    pub(crate) fn scs_read(&mut self, addr: u32, size: Size) -> u32 {
        let word = addr & !3;
        let v = self.scs_read_word(word);
        let sh = (addr & 3) * 8;
        match size {
            Size::Word => v,
            Size::Half => (v >> sh) & 0xFFFF,
            Size::Byte => (v >> sh) & 0xFF,
        }
    }

    fn scs_read_word(&mut self, a: u32) -> u32 {
        let cycles = self.cycles;
        let s = &self.scs;
        match a {
            0xE000_E004 => 7, // ICTR: 256 interrupt lines
            0xE000_E008 => 0, // ACTLR
            0xE000_E010 => {
                let v = s.st_csr;
                self.scs.st_csr &= !(1 << 16); // COUNTFLAG clears on read
                v
            }
            0xE000_E014 => s.st_rvr,
            0xE000_E018 => s.systick_cvr(cycles),
            0xE000_E01C => 0x4000_0000, // CALIB: no reference clock, no exact 10 ms value
            0xE000_E100..=0xE000_E11C => s.nvic_iser[((a - 0xE000_E100) / 4) as usize],
            0xE000_E180..=0xE000_E19C => s.nvic_iser[((a - 0xE000_E180) / 4) as usize],
            0xE000_E200..=0xE000_E21C | 0xE000_E280..=0xE000_E29C => {
                let w = (((a & 0x7F) / 4) as usize) * 32;
                (0..32).filter(|b| self.is_pending(16 + w + b)).fold(0, |acc, b| acc | (1 << b))
            }
            0xE000_E300..=0xE000_E31C => {
                let w = (((a - 0xE000_E300) / 4) as usize) * 32;
                (0..32).filter(|b| self.is_active(16 + w + b)).fold(0, |acc, b| acc | (1 << b))
            }
            0xE000_E400..=0xE000_E4EC => {
                let i = (a - 0xE000_E400) as usize;
                u32::from_le_bytes([s.nvic_ipr[i], s.nvic_ipr[i + 1], s.nvic_ipr[i + 2], s.nvic_ipr[i + 3]])
            }
            0xE000_ED00 => 0x411F_C272, // CPUID: Cortex-M7 r1p2
            0xE000_ED04 => {
                // ICSR: VECTACTIVE, RETTOBASE, VECTPENDING, ISRPENDING, PENDSTSET, PENDSVSET.
                let mut v = self.ipsr as u32;
                let active_count: u32 = self.active.iter().map(|w| w.count_ones()).sum();
                if active_count <= 1 {
                    v |= 1 << 11;
                }
                if let Some((n, _)) = self.best_pending() {
                    v |= (n as u32) << 12;
                }
                if (16..16 + 240).any(|n| self.is_pending(n)) {
                    v |= 1 << 22;
                }
                if self.is_pending(15) {
                    v |= 1 << 26;
                }
                if self.is_pending(14) {
                    v |= 1 << 28;
                }
                if self.is_pending(2) {
                    v |= 1 << 31;
                }
                v
            }
            0xE000_ED08 => s.vtor,
            0xE000_ED0C => 0xFA05_0000 | (s.aircr & 0x700),
            0xE000_ED10 => s.scr,
            0xE000_ED14 => s.ccr,
            0xE000_ED18..=0xE000_ED20 => {
                let i = (a - 0xE000_ED18) as usize;
                u32::from_le_bytes([s.shpr[i], s.shpr[i + 1], s.shpr[i + 2], s.shpr[i + 3]])
            }
            0xE000_ED24 => {
                let mut v = s.shcsr & 0x0007_0000;
                for (bit, n) in [(0, 4), (1, 5), (3, 6), (7, 11), (8, 12), (10, 14), (11, 15)] {
                    if self.is_active(n) {
                        v |= 1 << bit;
                    }
                }
                for (bit, n) in [(12, 6), (13, 4), (14, 5), (15, 11)] {
                    if self.is_pending(n) {
                        v |= 1 << bit;
                    }
                }
                v
            }
            0xE000_ED28 => s.cfsr,
            0xE000_ED2C => s.hfsr,
            0xE000_ED30 => s.dfsr,
            0xE000_ED34 => s.mmfar,
            0xE000_ED38 => s.bfar,
            0xE000_ED3C => 0,
            // Processor feature registers (Cortex-M7 TRM).
            0xE000_ED40 => 0x0000_0030,
            0xE000_ED44 => 0x0000_0200,
            0xE000_ED48 => 0x0010_0000,
            0xE000_ED4C => 0,
            0xE000_ED50 => 0x0010_1030,
            0xE000_ED54 => 0,
            0xE000_ED58 => 0x0100_0000,
            0xE000_ED5C => 0,
            0xE000_ED60 => 0x0110_1110,
            0xE000_ED64 => 0x0211_2111,
            0xE000_ED68 => 0x2123_2231,
            0xE000_ED6C => 0x0111_1131,
            0xE000_ED70 => 0x0131_0132,
            0xE000_ED78 => 0x0900_0003, // CLIDR: L1 I and D caches
            0xE000_ED7C => 0x8303_C003, // CTR
            0xE000_ED80 => {
                // CCSIDR for the selected cache (32 KiB D-cache, 4-way; 32 KiB I-cache, 2-way).
                if s.csselr & 1 == 0 { 0xF00F_E019 } else { 0xF01F_E009 }
            }
            0xE000_ED84 => s.csselr,
            0xE000_ED88 => s.cpacr,
            0xE000_ED90 => 16 << 8, // MPU TYPE: 16 regions
            0xE000_ED94 => s.mpu_ctrl,
            0xE000_ED98 => s.mpu_rnr,
            0xE000_ED9C | 0xE000_EDA4 | 0xE000_EDAC | 0xE000_EDB4 => {
                s.mpu[(s.mpu_rnr as usize % 16) * 2] | (s.mpu_rnr & 0xF)
            }
            0xE000_EDA0 | 0xE000_EDA8 | 0xE000_EDB0 | 0xE000_EDB8 => s.mpu[(s.mpu_rnr as usize % 16) * 2 + 1],
            0xE000_EDF0 => {
                // DHCSR: S_HALT, S_LOCKUP, S_SLEEP.
                let mut v = 0;
                if self.state == RunState::Halted {
                    v |= 1 << 17;
                }
                if self.state == RunState::Lockup {
                    v |= 1 << 19;
                }
                if matches!(self.state, RunState::WaitEvent | RunState::WaitInterrupt) {
                    v |= 1 << 18;
                }
                v
            }
            0xE000_EDFC => s.demcr,
            0xE000_EF34 => s.fpccr,
            0xE000_EF38 => s.fpcar,
            0xE000_EF3C => s.fpdscr,
            0xE000_EF40 => 0x1011_0021, // MVFR0 (single precision FPv5)
            0xE000_EF44 => 0x1100_0011,
            0xE000_EF48 => 0x0000_0040,
            0xE000_1000 => s.dwt_ctrl,
            0xE000_1004 => s.dwt_cyccnt(cycles),
            0xE000_1FB4 => 0, // DWT LSR: unlocked
            _ => {
                self.scs.unknown.push((a, false));
                0
            }
        }
    }

    /// Write a system control space register.
    pub(crate) fn scs_write(&mut self, addr: u32, size: Size, value: u32) {
        let word = addr & !3;
        let (v, mask) = match size {
            Size::Word => (value, u32::MAX),
            Size::Half => {
                let sh = (addr & 2) * 8;
                ((value & 0xFFFF) << sh, 0xFFFF << sh)
            }
            Size::Byte => {
                let sh = (addr & 3) * 8;
                ((value & 0xFF) << sh, 0xFF << sh)
            }
        };
        // Byte-addressable priority registers.
        if (0xE000_E400..0xE000_E4F0).contains(&addr) {
            for i in 0..size.bytes() {
                let idx = (addr - 0xE000_E400 + i) as usize;
                if idx < 240 {
                    self.scs.nvic_ipr[idx] = ((value >> (8 * i)) as u8) & PRI_MASK;
                }
            }
            self.recheck = true;
            return;
        }
        if (0xE000_ED18..0xE000_ED24).contains(&addr) {
            for i in 0..size.bytes() {
                let idx = (addr - 0xE000_ED18 + i) as usize;
                self.scs.shpr[idx] = ((value >> (8 * i)) as u8) & PRI_MASK;
            }
            self.recheck = true;
            return;
        }
        let old = self.scs_peek(word);
        let v = (old & !mask) | (v & mask);
        let cycles = self.cycles;
        match word {
            0xE000_E010 => {
                let was = self.scs.st_csr & 1;
                if was == 0 && v & 1 != 0 {
                    self.scs.systick_sync(cycles);
                } else if was != 0 {
                    // Keep the current count across a reconfiguration.
                    self.scs.st_cvr = self.scs.systick_cvr(cycles);
                    self.scs.systick_sync(cycles);
                }
                self.scs.st_csr = (self.scs.st_csr & (1 << 16)) | (v & 7);
            }
            0xE000_E014 => self.scs.st_rvr = v & 0x00FF_FFFF,
            0xE000_E018 => {
                self.scs.st_cvr = 0;
                self.scs.st_csr &= !(1 << 16);
                self.scs.systick_sync(cycles);
            }
            0xE000_E100..=0xE000_E11C => {
                self.scs.nvic_iser[((word - 0xE000_E100) / 4) as usize] |= v;
                self.recheck = true;
            }
            0xE000_E180..=0xE000_E19C => {
                self.scs.nvic_iser[((word - 0xE000_E180) / 4) as usize] &= !v;
                self.recheck = true;
            }
            0xE000_E200..=0xE000_E21C => {
                let w = (((word - 0xE000_E200) / 4) as usize) * 32;
                for b in 0..32 {
                    if v & (1 << b) != 0 && w + b < 240 {
                        self.set_pending(16 + w + b);
                    }
                }
            }
            0xE000_E280..=0xE000_E29C => {
                let w = (((word - 0xE000_E280) / 4) as usize) * 32;
                for b in 0..32 {
                    if v & (1 << b) != 0 && w + b < 240 {
                        self.clear_pending(16 + w + b);
                    }
                }
                self.recheck = true;
            }
            0xE000_ED04 => {
                if v & (1 << 28) != 0 {
                    self.set_pending(14);
                }
                if v & (1 << 27) != 0 {
                    self.clear_pending(14);
                }
                if v & (1 << 26) != 0 {
                    self.set_pending(15);
                }
                if v & (1 << 25) != 0 {
                    self.clear_pending(15);
                }
                if v & (1 << 31) != 0 {
                    self.set_pending(2);
                }
            }
            0xE000_ED08 => self.scs.vtor = v & 0xFFFF_FF80,
            0xE000_ED0C => {
                if v >> 16 == 0x05FA {
                    self.scs.aircr = v & 0x700;
                    if v & (1 << 2) != 0 {
                        self.scs.reset_requested = true;
                    }
                    self.recheck = true;
                }
            }
            0xE000_ED10 => self.scs.scr = v & 0x16,
            0xE000_ED14 => self.scs.ccr = v & 0x0007_031B,
            0xE000_ED24 => {
                self.scs.shcsr = v & 0x0007_0000;
                self.recheck = true;
            }
            0xE000_ED28 => self.scs.cfsr &= !v,
            0xE000_ED2C => self.scs.hfsr &= !v,
            0xE000_ED30 => self.scs.dfsr &= !v,
            0xE000_ED34 => self.scs.mmfar = v,
            0xE000_ED38 => self.scs.bfar = v,
            0xE000_ED84 => self.scs.csselr = v & 0xF,
            0xE000_ED88 => self.scs.cpacr = v & 0x00F0_0000,
            0xE000_ED94 => self.scs.mpu_ctrl = v & 7,
            0xE000_ED98 => self.scs.mpu_rnr = v & 0xFF,
            0xE000_ED9C | 0xE000_EDA4 | 0xE000_EDAC | 0xE000_EDB4 => {
                if v & (1 << 4) != 0 {
                    self.scs.mpu_rnr = v & 0xF;
                }
                self.scs.mpu[(self.scs.mpu_rnr as usize % 16) * 2] = v & !0x1F;
            }
            0xE000_EDA0 | 0xE000_EDA8 | 0xE000_EDB0 | 0xE000_EDB8 => {
                self.scs.mpu[(self.scs.mpu_rnr as usize % 16) * 2 + 1] = v;
            }
            0xE000_EDF0 | 0xE000_EDF4 | 0xE000_EDF8 => {}
            0xE000_EDFC => {
                if self.scs.demcr & (1 << 24) == 0 && v & (1 << 24) != 0 {
                    self.scs.dwt_last = cycles;
                }
                self.scs.demcr = v;
            }
            0xE000_EF00 => {
                let irq = (v & 0x1FF) as usize;
                if irq < 240 {
                    self.set_pending(16 + irq);
                }
            }
            0xE000_EF34 => self.scs.fpccr = v,
            0xE000_EF38 => self.scs.fpcar = v,
            0xE000_EF3C => self.scs.fpdscr = v,
            // Cache maintenance: accepted (no caches in the model).
            0xE000_EF50..=0xE000_EF78 => {}
            0xE000_1000 => {
                let cyc = self.scs.dwt_cyccnt(cycles);
                self.scs.dwt_cyccnt = cyc;
                self.scs.dwt_last = cycles;
                self.scs.dwt_ctrl = (self.scs.dwt_ctrl & 0xF000_0000) | (v & 0x0FFF_FFFF);
            }
            0xE000_1004 => {
                self.scs.dwt_cyccnt = v;
                self.scs.dwt_last = cycles;
            }
            0xE000_1FB0 => {} // DWT LAR
            0xE000_E008 | 0xE000_E01C => {}
            _ => self.scs.unknown.push((word, true)),
        }
    }

    fn scs_peek(&self, a: u32) -> u32 {
        match a {
            0xE000_E010 => self.scs.st_csr,
            0xE000_E014 => self.scs.st_rvr,
            0xE000_ED08 => self.scs.vtor,
            0xE000_ED0C => 0xFA05_0000 | self.scs.aircr,
            0xE000_ED10 => self.scs.scr,
            0xE000_ED14 => self.scs.ccr,
            0xE000_ED24 => self.scs.shcsr,
            0xE000_ED88 => self.scs.cpacr,
            0xE000_EDFC => self.scs.demcr,
            0xE000_1000 => self.scs.dwt_ctrl,
            _ => 0,
        }
    }
}
