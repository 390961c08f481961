//! Register-level models of the STM32H723's peripherals that firmware touches at boot (RM0468):
//! RCC, PWR, FLASH, GPIO, the general-purpose timers TIM2-TIM5, USART3, FDCAN1 with its message
//! RAM, and plain register files for SYSCFG, DBGMCU, EXTI and IWDG.
//!
//! What each model does and assumes is documented on it; every register not listed reads as its
//! reset value (zero unless stated) and keeps what is written.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bootproof_rig::can::{Bitrates, CanFrame, CanId};
use bootproof_rig::console::{Parity, SerialConfig};

/// A register file: offset → value, with a multiplicative hash (std's SipHash costs more than
/// the emulated instruction on register-heavy code).
type Regs = HashMap<u32, u32, BuildHasherDefault<RegHasher>>;

/// Fibonacci hashing of a register offset.
#[derive(Default)]
struct RegHasher(u64);

impl Hasher for RegHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Peripheral base addresses (RM0468 §2.3).
pub mod addr {
    /// TIM2..TIM5 (APB1L).
    pub const TIM: [u32; 4] = [0x4000_0000, 0x4000_0400, 0x4000_0800, 0x4000_0C00];
    /// USART3.
    pub const USART3: u32 = 0x4000_4800;
    /// FDCAN1 registers.
    pub const FDCAN1: u32 = 0x4000_A000;
    /// FDCAN message RAM (shared by FDCAN1..3).
    pub const FDCAN_RAM: u32 = 0x4000_AC00;
    /// Message RAM size.
    pub const FDCAN_RAM_SIZE: u32 = 0x2800;
    /// FLASH registers.
    pub const FLASH: u32 = 0x5200_2000;
    /// SYSCFG.
    pub const SYSCFG: u32 = 0x5800_0400;
    /// EXTI.
    pub const EXTI: u32 = 0x5800_0000;
    /// IWDG1.
    pub const IWDG1: u32 = 0x5800_4800;
    /// GPIOA (ports A..K at 0x400 steps).
    pub const GPIOA: u32 = 0x5802_0000;
    /// RCC.
    pub const RCC: u32 = 0x5802_4400;
    /// PWR.
    pub const PWR: u32 = 0x5802_4800;
    /// DBGMCU.
    pub const DBGMCU: u32 = 0x5C00_1000;
}

/// Interrupt numbers (RM0468 Table 140).
pub mod irq {
    /// FLASH global interrupt.
    pub const FLASH: usize = 4;
    /// FDCAN1 interrupt line 0.
    pub const FDCAN1_IT0: usize = 19;
    /// FDCAN1 interrupt line 1.
    pub const FDCAN1_IT1: usize = 21;
    /// TIM2..TIM5.
    pub const TIM: [usize; 4] = [28, 29, 30, 50];
    /// USART3.
    pub const USART3: usize = 39;
}

// ---- clocks ---------------------------------------------------------------------------------

/// Oscillator frequencies the board provides (NUCLEO-H723ZG: HSE 8 MHz from the ST-LINK's MCO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oscillators {
    /// HSE, when the board has one.
    pub hse_hz: u32,
}

impl Default for Oscillators {
    fn default() -> Self {
        Oscillators { hse_hz: 8_000_000 }
    }
}

const HSI_HZ: u32 = 64_000_000;
const CSI_HZ: u32 = 4_000_000;
const LSE_HZ: u32 = 32_768;

/// RCC: ready flags follow their enables, the system clock switch follows SW at once, the
/// reset-cause register is the board's (RMVF clears it), everything else is a register file.
#[derive(Debug, Clone)]
pub struct Rcc {
    regs: Regs,
    osc: Oscillators,
    /// (core clock, APB1 timer clock), recomputed at every RCC write.
    clocks: (u32, u32),
}

/// RCC register offsets used by the clock tree.
pub(crate) mod rcc {
    pub const CR: u32 = 0x00;
    pub const CFGR: u32 = 0x10;
    pub const D1CFGR: u32 = 0x18;
    pub const D2CFGR: u32 = 0x1C;
    pub const PLLCKSELR: u32 = 0x28;
    pub const PLLCFGR: u32 = 0x2C;
    pub const PLL1DIVR: u32 = 0x30;
    pub const PLL2DIVR: u32 = 0x38;
    pub const PLL3DIVR: u32 = 0x40;
    pub const D2CCIP1R: u32 = 0x50;
    pub const D2CCIP2R: u32 = 0x54;
    pub const BDCR: u32 = 0x70;
    pub const CSR: u32 = 0x74;
    pub const RSR: u32 = 0xD0;
    pub const C1_RSR: u32 = 0x130;
}

impl Rcc {
    fn new(osc: Oscillators) -> Rcc {
        let mut regs = Regs::default();
        regs.insert(rcc::CR, 0x0000_0025); // HSION, HSIRDY, HSIDIVF
        regs.insert(rcc::PLLCKSELR, 0x0202_0200);
        regs.insert(rcc::PLLCFGR, 0x01FF_0000);
        for d in [rcc::PLL1DIVR, rcc::PLL2DIVR, rcc::PLL3DIVR] {
            regs.insert(d, 0x0101_0280);
        }
        let mut r = Rcc { regs, osc, clocks: (0, 0) };
        r.clocks = (r.compute_core_hz(), r.compute_tim_apb1_hz());
        r
    }

    fn get(&self, off: u32) -> u32 {
        self.regs.get(&off).copied().unwrap_or(0)
    }

    fn read(&self, off: u32, rsr: u32) -> u32 {
        match off {
            rcc::RSR | rcc::C1_RSR => rsr,
            _ => self.get(off),
        }
    }

    /// Write; returns whether RMVF asked to clear the reset flags.
    fn write(&mut self, off: u32, v: u32) -> bool {
        let rmvf = self.write_reg(off, v);
        self.clocks = (self.compute_core_hz(), self.compute_tim_apb1_hz());
        rmvf
    }

    fn write_reg(&mut self, off: u32, v: u32) -> bool {
        match off {
            rcc::CR => {
                // Ready flags follow the enables: HSI, CSI, HSI48, HSE, PLL1..3; D1/D2 clocks ready.
                let mut r = v & 0x1515_59D9;
                for (on, rdy) in [(0, 2), (7, 8), (12, 13), (16, 17), (24, 25), (26, 27), (28, 29)] {
                    if v & (1 << on) != 0 {
                        r |= 1 << rdy;
                    }
                }
                r |= (1 << 5) | (1 << 14) | (1 << 15); // HSIDIVF, D1CKRDY, D2CKRDY
                self.regs.insert(off, r);
            }
            rcc::CFGR => {
                let sw = v & 7;
                self.regs.insert(off, (v & !0x38) | (sw << 3));
            }
            rcc::BDCR => {
                let mut r = v & !0x2;
                if v & 1 != 0 {
                    r |= 2; // LSERDY
                }
                self.regs.insert(off, r);
            }
            rcc::CSR => {
                let mut r = v & !0x2;
                if v & 1 != 0 {
                    r |= 2; // LSIRDY
                }
                self.regs.insert(off, r);
            }
            // A PLL's input divider and dividers are written only while it is off, the source
            // only while all are off (RM0468, the RCC_PLLCKSELR and RCC_PLLxDIVR register
            // descriptions); writes meanwhile leave those fields as they are. (embassy-stm32
            // 0.6 writes PLLCKSELR whole to switch an unused PLL off, PLL1 running.)
            rcc::PLLCKSELR => {
                let cr = self.get(rcc::CR);
                let on = |n: u32| cr & (1 << (24 + 2 * (n - 1))) != 0;
                let mut keep = 0;
                if (1..=3).any(on) {
                    keep |= 3;
                }
                for n in (1..=3).filter(|n| on(*n)) {
                    keep |= 0x3F << (4 + 8 * (n - 1));
                }
                let old = self.get(off);
                self.regs.insert(off, (v & !keep) | (old & keep));
            }
            rcc::PLL1DIVR | rcc::PLL2DIVR | rcc::PLL3DIVR => {
                let n = (off - rcc::PLL1DIVR) / 8 + 1;
                if self.get(rcc::CR) & (1 << (24 + 2 * (n - 1))) == 0 {
                    self.regs.insert(off, v);
                }
            }
            rcc::RSR | rcc::C1_RSR => return v & (1 << 16) != 0,
            _ => {
                self.regs.insert(off, v);
            }
        }
        false
    }

    fn pll_input(&self) -> u32 {
        match self.get(rcc::PLLCKSELR) & 3 {
            0 => self.hsi(),
            1 => CSI_HZ,
            2 => self.osc.hse_hz,
            _ => 0,
        }
    }

    fn hsi(&self) -> u32 {
        HSI_HZ >> ((self.get(rcc::CR) >> 3) & 3)
    }

    /// PLL `n` (1..=3) outputs P, Q, R in Hz (0 when off).
    fn pll(&self, n: u32) -> [u32; 3] {
        let cr = self.get(rcc::CR);
        if cr & (1 << (24 + 2 * (n - 1))) == 0 {
            return [0; 3];
        }
        let divm = (self.get(rcc::PLLCKSELR) >> (4 + 8 * (n - 1))) & 0x3F;
        if divm == 0 {
            return [0; 3];
        }
        let divr = self.get(rcc::PLL1DIVR + 8 * (n - 1));
        let vco = self.pll_input() as u64 / divm as u64 * ((divr & 0x1FF) as u64 + 1);
        let p = ((divr >> 9) & 0x7F) + 1;
        let q = ((divr >> 16) & 0x7F) + 1;
        let r = ((divr >> 24) & 0x7F) + 1;
        [(vco / p as u64) as u32, (vco / q as u64) as u32, (vco / r as u64) as u32]
    }

    fn sys_ck(&self) -> u32 {
        match self.get(rcc::CFGR) & 7 {
            0 => self.hsi(),
            1 => CSI_HZ,
            2 => self.osc.hse_hz,
            3 => self.pll(1)[0],
            _ => self.hsi(),
        }
    }

    fn ahb_div(code: u32) -> u32 {
        if code & 8 == 0 { 1 } else { [2, 4, 8, 16, 64, 128, 256, 512][(code & 7) as usize] }
    }

    fn apb_div(code: u32) -> u32 {
        if code & 4 == 0 { 1 } else { 2 << (code & 3) }
    }

    /// The core clock (sys_ck / D1CPRE).
    pub fn core_hz(&self) -> u32 {
        self.clocks.0
    }

    fn compute_core_hz(&self) -> u32 {
        (self.sys_ck() / Self::ahb_div((self.get(rcc::D1CFGR) >> 8) & 0xF)).max(1)
    }

    fn hclk(&self) -> u32 {
        self.compute_core_hz() / Self::ahb_div(self.get(rcc::D1CFGR) & 0xF)
    }

    fn pclk1(&self) -> u32 {
        self.hclk() / Self::apb_div((self.get(rcc::D2CFGR) >> 4) & 7)
    }

    /// The APB1 timers' clock (twice PCLK1 when APB1 is divided).
    pub fn tim_apb1_hz(&self) -> u32 {
        self.clocks.1
    }

    fn compute_tim_apb1_hz(&self) -> u32 {
        let div = Self::apb_div((self.get(rcc::D2CFGR) >> 4) & 7);
        if div == 1 { self.pclk1() } else { self.pclk1() * 2 }
    }

    /// FDCAN's kernel clock (FDCANSEL).
    pub fn fdcan_hz(&self) -> u32 {
        match (self.get(rcc::D2CCIP1R) >> 28) & 3 {
            0 => self.osc.hse_hz,
            1 => self.pll(1)[1],
            2 => self.pll(2)[1],
            _ => 0,
        }
    }

    /// USART3's kernel clock (USART234578SEL).
    pub fn usart3_hz(&self) -> u32 {
        match self.get(rcc::D2CCIP2R) & 7 {
            0 => self.pclk1(),
            1 => self.pll(2)[1],
            2 => self.pll(3)[1],
            3 => self.hsi(),
            4 => CSI_HZ,
            5 => LSE_HZ,
            _ => 0,
        }
    }
}

/// PWR: the voltage scaling and supply configuration report ready at once (VOSRDY,
/// ACTVOSRDY; ACTVOS mirrors VOS).
#[derive(Debug, Clone)]
pub struct Pwr {
    regs: Regs,
}

impl Pwr {
    fn new() -> Pwr {
        let mut regs = Regs::default();
        regs.insert(0x00, 0xF000_C000); // CR1
        regs.insert(0x0C, 0x0000_0046); // CR3: SCUEN | LDOEN | ...
        regs.insert(0x18, 0x0000_4000); // D3CR: VOS = scale 3
        Pwr { regs }
    }

    fn read(&self, off: u32) -> u32 {
        match off {
            // CSR1: ACTVOSRDY, ACTVOS = D3CR.VOS.
            0x04 => (1 << 13) | (self.regs.get(&0x18).copied().unwrap_or(0) & 0xC000),
            0x18 => self.regs.get(&0x18).copied().unwrap_or(0) | (1 << 13),
            _ => self.regs.get(&off).copied().unwrap_or(0),
        }
    }

    fn write(&mut self, off: u32, v: u32) {
        self.regs.insert(off, v);
    }
}

// ---- GPIO -----------------------------------------------------------------------------------

/// A GPIO port: a register file; BSRR sets and resets ODR bits; IDR reads ODR for outputs and
/// 0 for inputs (nothing drives the pins).
#[derive(Debug, Clone)]
pub struct Gpio {
    moder: u32,
    regs: [u32; 10],
    odr: u32,
}

impl Gpio {
    fn new(port: usize) -> Gpio {
        let moder = match port {
            0 => 0xABFF_FFFF,
            1 => 0xFFFF_FEBF,
            _ => 0xFFFF_FFFF,
        };
        let mut regs = [0; 10];
        if port == 0 {
            regs[3] = 0x6400_0000; // PUPDR (SWD pins)
        }
        if port == 1 {
            regs[3] = 0x0000_0100;
            regs[2] = 0x0000_00C0; // OSPEEDR
        }
        Gpio { moder, regs, odr: 0 }
    }

    fn read(&self, off: u32) -> u32 {
        match off {
            0x00 => self.moder,
            0x10 => {
                // IDR: outputs read back what they drive.
                let mut v = 0;
                for pin in 0..16 {
                    if (self.moder >> (2 * pin)) & 3 == 1 && self.odr & (1 << pin) != 0 {
                        v |= 1 << pin;
                    }
                }
                v
            }
            0x14 => self.odr,
            0x18 => 0,
            o if o < 0x28 => self.regs[(o / 4) as usize],
            _ => 0,
        }
    }

    fn write(&mut self, off: u32, v: u32) {
        match off {
            0x00 => self.moder = v,
            0x14 => self.odr = v & 0xFFFF,
            0x18 => self.odr = (self.odr | (v & 0xFFFF)) & !(v >> 16),
            o if o < 0x28 => self.regs[(o / 4) as usize] = v,
            _ => {}
        }
    }

    /// Whether `pin` drives high as an output.
    pub fn output_high(&self, pin: u32) -> bool {
        (self.moder >> (2 * pin)) & 3 == 1 && self.odr & (1 << pin) != 0
    }

    /// The alternate function of `pin` (when its mode is alternate).
    pub fn alternate(&self, pin: u32) -> Option<u32> {
        if (self.moder >> (2 * pin)) & 3 != 2 {
            return None;
        }
        let afr = self.regs[8 + (pin / 8) as usize];
        Some((afr >> (4 * (pin % 8))) & 0xF)
    }
}

// ---- general-purpose timers ------------------------------------------------------------------

/// TIM2..TIM5 as up-counters (RM0468 §39): CEN, PSC (loaded at the update event or UG), ARR,
/// CCR1-4 compare flags, UIF, DIER and the interrupt line. 32-bit counters for TIM2/TIM5,
/// 16-bit for TIM3/TIM4. Down-counting, one-pulse and slave modes are not modelled.
#[derive(Debug, Clone)]
pub struct GpTimer {
    bits32: bool,
    cr1: u32,
    dier: u32,
    sr: u32,
    psc: u32,
    psc_active: u32,
    arr: u32,
    ccr: [u32; 4],
    regs: Regs,
    /// Counter value at `base_cycle` and the fractional timer ticks.
    cnt: u64,
    base_cycle: u64,
    frac: u128,
}

impl GpTimer {
    fn new(bits32: bool) -> GpTimer {
        GpTimer {
            bits32,
            cr1: 0,
            dier: 0,
            sr: 0,
            psc: 0,
            psc_active: 0,
            arr: if bits32 { u32::MAX } else { 0xFFFF },
            ccr: [0; 4],
            regs: Regs::default(),
            cnt: 0,
            base_cycle: 0,
            frac: 0,
        }
    }

    fn running(&self) -> bool {
        self.cr1 & 1 != 0
    }

    fn period(&self) -> u64 {
        self.arr as u64 + 1
    }

    /// Counter ticks between `base_cycle` and `cycles` (timer ticks after the prescaler).
    fn ticks_to(&self, cycles: u64, core_hz: u32, tim_hz: u32) -> (u64, u128) {
        if !self.running() || cycles <= self.base_cycle {
            return (0, self.frac);
        }
        // ticks = (cycles - base) * tim_hz / core_hz / (psc + 1), with the remainder kept.
        let num = (cycles - self.base_cycle) as u128 * tim_hz as u128 + self.frac;
        let den = core_hz as u128 * (self.psc_active as u128 + 1);
        ((num / den) as u64, num % den)
    }

    /// Bring the counter to `cycles`, latching UIF and CCxIF for every event crossed.
    fn sync(&mut self, cycles: u64, core_hz: u32, tim_hz: u32) {
        let (ticks, frac) = self.ticks_to(cycles, core_hz, tim_hz);
        if cycles > self.base_cycle {
            self.base_cycle = cycles;
        }
        self.frac = frac;
        if ticks == 0 {
            return;
        }
        let period = self.period();
        let old = self.cnt;
        let new_abs = old + ticks;
        if new_abs >= period {
            self.sr |= 1; // UIF
            self.psc_active = self.psc;
        }
        for (ch, ccr) in self.ccr.iter().enumerate() {
            let c = *ccr as u64;
            if c >= period {
                continue;
            }
            // Counter values in (old, old + ticks], modulo the period.
            let crossed = if ticks >= period {
                true
            } else if c > old {
                c <= new_abs
            } else {
                c + period <= new_abs
            };
            if crossed {
                self.sr |= 2 << ch;
            }
        }
        self.cnt = new_abs % period;
    }

    /// The cycle at which the next flag sets (`u64::MAX`: never).
    fn next_event(&self, core_hz: u32, tim_hz: u32) -> u64 {
        if !self.running() || tim_hz == 0 {
            return u64::MAX;
        }
        let period = self.period();
        let mut ticks = period - self.cnt; // to the update event
        for c in self.ccr {
            let c = c as u64;
            if c < period {
                let d = if c > self.cnt { c - self.cnt } else { c + period - self.cnt };
                ticks = ticks.min(d);
            }
        }
        // cycles = ceil((ticks * core_hz * (psc+1) - frac) / tim_hz)
        let need = ticks as u128 * core_hz as u128 * (self.psc_active as u128 + 1);
        let need = need.saturating_sub(self.frac);
        let cycles = need.div_ceil(tim_hz as u128);
        self.base_cycle.saturating_add(cycles.min(u64::MAX as u128 / 2) as u64)
    }

    fn read(&mut self, off: u32, cycles: u64, core_hz: u32, tim_hz: u32) -> u32 {
        self.sync(cycles, core_hz, tim_hz);
        match off {
            0x00 => self.cr1,
            0x0C => self.dier,
            0x10 => self.sr,
            0x24 => self.cnt as u32,
            0x28 => self.psc,
            0x2C => self.arr,
            0x34..=0x40 => self.ccr[((off - 0x34) / 4) as usize],
            _ => self.regs.get(&off).copied().unwrap_or(0),
        }
    }

    fn write(&mut self, off: u32, v: u32, cycles: u64, core_hz: u32, tim_hz: u32) {
        self.sync(cycles, core_hz, tim_hz);
        let mask = if self.bits32 { u32::MAX } else { 0xFFFF };
        match off {
            0x00 => {
                if self.cr1 & 1 == 0 && v & 1 != 0 {
                    self.base_cycle = cycles;
                    self.frac = 0;
                }
                self.cr1 = v & 0x3FF;
            }
            0x0C => self.dier = v,
            0x10 => self.sr &= v, // rc_w0
            0x14 => {
                if v & 1 != 0 {
                    // UG: reinitialise the counter, load the prescaler; UIF unless URS.
                    self.cnt = 0;
                    self.frac = 0;
                    self.base_cycle = cycles;
                    self.psc_active = self.psc;
                    if self.cr1 & (1 << 2) == 0 {
                        self.sr |= 1;
                    }
                }
                for ch in 0..4 {
                    if v & (2 << ch) != 0 {
                        self.sr |= 2 << ch;
                    }
                }
            }
            0x24 => {
                self.cnt = (v & mask) as u64 % self.period();
                self.base_cycle = cycles;
                self.frac = 0;
            }
            0x28 => self.psc = v & 0xFFFF,
            0x2C => self.arr = v & mask,
            0x34..=0x40 => self.ccr[((off - 0x34) / 4) as usize] = v & mask,
            _ => {
                self.regs.insert(off, v);
            }
        }
    }

    fn irq(&self) -> bool {
        self.sr & self.dier & 0x1F != 0
    }
}

// ---- USART3 ---------------------------------------------------------------------------------

/// USART3 (RM0468 §53): transmit and receive through the board's serial link, with the FIFO
/// (8 deep, FIFOEN) or a single data register. The frame format (baud from BRR and PRESC over
/// the kernel clock, parity from PCE/PS) sets the board side of the link.
#[derive(Debug, Clone)]
pub struct Usart {
    cr1: u32,
    cr2: u32,
    cr3: u32,
    brr: u32,
    presc: u32,
    regs: Regs,
    rx: VecDeque<u8>,
    ore: bool,
    /// Bytes written to TDR, not yet handed to the link.
    pub tx: Vec<u8>,
    /// Bytes on their way on the wire (set by the link's writer).
    pub in_flight: usize,
    /// IDLE: the line went quiet for a character time after receiving.
    idle: bool,
    /// The core cycle IDLE rises at, after the last received character.
    idle_at: Option<u64>,
    /// Characters from the link not yet on the RX pin: they arrive one character time apart.
    incoming: VecDeque<u8>,
    /// When the next of them completes.
    next_in: u64,
}

impl Usart {
    fn new() -> Usart {
        Usart {
            cr1: 0,
            cr2: 0,
            cr3: 0,
            brr: 0,
            presc: 0,
            regs: Regs::default(),
            rx: VecDeque::new(),
            ore: false,
            tx: Vec::new(),
            in_flight: 0,
            idle: false,
            idle_at: None,
            incoming: VecDeque::new(),
            next_in: 0,
        }
    }

    fn fifo_depth(&self) -> usize {
        if self.cr1 & (1 << 29) != 0 { 8 } else { 1 }
    }

    fn isr(&self) -> u32 {
        let pending = self.tx.len() + self.in_flight;
        let mut v = 0;
        if self.ore {
            v |= 1 << 3;
        }
        if self.idle {
            v |= 1 << 4; // IDLE
        }
        if !self.rx.is_empty() {
            v |= 1 << 5; // RXNE / RXFNE
        }
        if pending < self.fifo_depth() {
            v |= 1 << 7; // TXE / TXFNF
        }
        if pending == 0 {
            v |= (1 << 6) | (1 << 23); // TC, TXFE
        }
        if self.cr1 & 1 != 0 {
            if self.cr1 & (1 << 3) != 0 {
                v |= 1 << 21; // TEACK
            }
            if self.cr1 & (1 << 2) != 0 {
                v |= 1 << 22; // REACK
            }
        }
        if self.rx.len() >= self.fifo_depth() {
            v |= 1 << 24; // RXFF
        }
        v
    }

    /// The frame format the USART is set to, when it is enabled to receive or transmit.
    pub fn config(&self, kernel_hz: u32) -> Option<SerialConfig> {
        if self.cr1 & 1 == 0 || self.brr == 0 {
            return None;
        }
        let presc =
            [1, 2, 4, 6, 8, 10, 12, 16, 32, 64, 128, 256].get(self.presc as usize & 0xF).copied().unwrap_or(256);
        let clk = kernel_hz / presc;
        let over8 = self.cr1 & (1 << 15) != 0;
        let div = if over8 { ((self.brr & 0xFFF0) | ((self.brr & 7) << 1)) as u64 } else { self.brr as u64 };
        let baud = if over8 { 2 * clk as u64 / div.max(1) } else { clk as u64 / div.max(1) };
        let parity = match (self.cr1 >> 10 & 1, self.cr1 >> 9 & 1) {
            (0, _) => Parity::None,
            (_, 0) => Parity::Even,
            _ => Parity::Odd,
        };
        Some(SerialConfig { baud: baud as u32, parity })
    }

    fn read(&mut self, off: u32) -> u32 {
        match off {
            0x00 => self.cr1,
            0x04 => self.cr2,
            0x08 => self.cr3,
            0x0C => self.brr,
            0x1C => self.isr(),
            0x24 => self.rx.pop_front().map(|b| b as u32).unwrap_or(0),
            0x2C => self.presc,
            _ => self.regs.get(&off).copied().unwrap_or(0),
        }
    }

    fn write(&mut self, off: u32, v: u32) {
        match off {
            0x00 => self.cr1 = v,
            0x04 => self.cr2 = v,
            0x08 => self.cr3 = v,
            0x0C => self.brr = v & 0xFFFF,
            0x18 => {
                if v & (1 << 3) != 0 {
                    self.rx.clear(); // RXFRQ
                }
            }
            0x20 => {
                if v & (1 << 3) != 0 {
                    self.ore = false;
                }
                if v & (1 << 4) != 0 {
                    self.idle = false; // IDLECF
                }
            }
            0x28 => {
                if self.cr1 & 1 != 0 && self.cr1 & (1 << 3) != 0 {
                    self.tx.push(v as u8);
                }
            }
            0x2C => self.presc = v & 0xF,
            _ => {
                self.regs.insert(off, v);
            }
        }
    }

    /// A byte arrived from the link at core cycle `now`; IDLE rises `char_cycles` later unless
    /// another byte follows.
    pub fn receive(&mut self, b: u8, now: u64, char_cycles: u64) {
        if self.cr1 & 1 == 0 || self.cr1 & (1 << 2) == 0 {
            return;
        }
        self.idle_at = Some(now + char_cycles);
        if self.rx.len() >= self.fifo_depth() {
            self.ore = true;
        } else {
            self.rx.push_back(b);
        }
    }

    fn irq(&self) -> bool {
        let isr = self.isr();
        (self.cr1 & (1 << 5) != 0 && isr & (1 << 5) != 0)
            || (self.cr1 & (1 << 7) != 0 && isr & (1 << 7) != 0)
            || (self.cr1 & (1 << 6) != 0 && isr & (1 << 6) != 0)
            || (self.cr3 & 1 != 0 && self.ore)
            || (self.cr1 & (1 << 4) != 0 && self.idle)
    }
}

// ---- FDCAN1 ---------------------------------------------------------------------------------

/// FDCAN1 (RM0468 §56, Bosch M_CAN): the INIT/CCE handshake, bit timing (nominal and data, mapped
/// to the bus's rates over the kernel clock), the message RAM layout registers, transmit
/// buffers and the Tx FIFO/queue (TXBAR, TXBRP, TXBTO, TXFQS), the Tx event FIFO, Rx FIFO 0
/// and 1 with the standard filter list and the global filter, the interrupt register with its
/// two lines, and error counters that reach bus-off when nobody acknowledges.
#[derive(Debug, Clone)]
pub struct Fdcan {
    regs: Regs,
    /// Message RAM (shared).
    pub ram: Vec<u8>,
    ir: u32,
    cccr: u32,
    txbrp: u32,
    txbto: u32,
    txbcf: u32,
    rxf: [Fifo; 2],
    txef: Fifo,
    /// Frames requested for transmission: (buffer index, frame), not yet on the bus.
    pub tx_requests: Vec<(u32, CanFrame)>,
    /// Buffers handed to the bus and not yet reported.
    pub tx_on_bus: u32,
    tec: u32,
    bus_off: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Fifo {
    get: u32,
    fill: u32,
    lost: bool,
}

mod can_reg {
    pub const CREL: u32 = 0x00;
    pub const ENDN: u32 = 0x04;
    pub const DBTP: u32 = 0x0C;
    pub const CCCR: u32 = 0x18;
    pub const NBTP: u32 = 0x1C;
    pub const ECR: u32 = 0x40;
    pub const PSR: u32 = 0x44;
    pub const IR: u32 = 0x50;
    pub const IE: u32 = 0x54;
    pub const ILS: u32 = 0x58;
    pub const ILE: u32 = 0x5C;
    pub const GFC: u32 = 0x80;
    pub const SIDFC: u32 = 0x84;
    pub const RXF0C: u32 = 0xA0;
    pub const RXF0S: u32 = 0xA4;
    pub const RXF0A: u32 = 0xA8;
    pub const RXF1C: u32 = 0xB0;
    pub const RXF1S: u32 = 0xB4;
    pub const RXF1A: u32 = 0xB8;
    pub const RXESC: u32 = 0xBC;
    pub const TXBC: u32 = 0xC0;
    pub const TXFQS: u32 = 0xC4;
    pub const TXESC: u32 = 0xC8;
    pub const TXBRP: u32 = 0xCC;
    pub const TXBAR: u32 = 0xD0;
    pub const TXBCR: u32 = 0xD4;
    pub const TXBTO: u32 = 0xD8;
    pub const TXBCF: u32 = 0xDC;
    pub const TXBTIE: u32 = 0xE0;
    pub const TXEFC: u32 = 0xF0;
    pub const TXEFS: u32 = 0xF4;
    pub const TXEFA: u32 = 0xF8;
}

/// Bytes of a data field per size code (RXESC/TXESC).
fn data_field(code: u32) -> u32 {
    [8, 12, 16, 20, 24, 32, 48, 64][(code & 7) as usize]
}

/// DLC to length (CAN FD).
fn dlc_len(dlc: u32) -> usize {
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64][(dlc & 0xF) as usize]
}

fn len_dlc(len: usize) -> u32 {
    match len {
        0..=8 => len as u32,
        9..=12 => 9,
        13..=16 => 10,
        17..=20 => 11,
        21..=24 => 12,
        25..=32 => 13,
        33..=48 => 14,
        _ => 15,
    }
}

impl Fdcan {
    fn new() -> Fdcan {
        let mut regs = Regs::default();
        regs.insert(can_reg::CREL, 0x3214_1218);
        regs.insert(can_reg::ENDN, 0x8765_4321);
        regs.insert(can_reg::DBTP, 0x0000_0A33);
        regs.insert(can_reg::NBTP, 0x0600_0A03);
        regs.insert(can_reg::PSR, 0x0000_0707);
        Fdcan {
            regs,
            ram: vec![0; addr::FDCAN_RAM_SIZE as usize],
            ir: 0,
            cccr: 1,
            txbrp: 0,
            txbto: 0,
            txbcf: 0,
            rxf: [Fifo::default(); 2],
            txef: Fifo::default(),
            tx_requests: Vec::new(),
            tx_on_bus: 0,
            tec: 0,
            bus_off: false,
        }
    }

    fn get(&self, off: u32) -> u32 {
        self.regs.get(&off).copied().unwrap_or(0)
    }

    fn ram_word(&self, byte: u32) -> u32 {
        let i = byte as usize;
        if i + 4 > self.ram.len() {
            return 0;
        }
        u32::from_le_bytes([self.ram[i], self.ram[i + 1], self.ram[i + 2], self.ram[i + 3]])
    }

    fn set_ram_word(&mut self, byte: u32, v: u32) {
        let i = byte as usize;
        if i + 4 <= self.ram.len() {
            self.ram[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Whether the controller is operating (INIT cleared).
    pub fn running(&self) -> bool {
        self.cccr & 1 == 0 && !self.bus_off
    }

    /// The bit rates the bit-timing registers give over `kernel_hz`.
    pub fn bitrates(&self, kernel_hz: u32) -> Option<Bitrates> {
        if kernel_hz == 0 {
            return None;
        }
        let nbtp = self.get(can_reg::NBTP);
        let nbrp = ((nbtp >> 16) & 0x1FF) + 1;
        let ntq = 1 + ((nbtp >> 8) & 0xFF) + 1 + (nbtp & 0x7F) + 1;
        let nominal = kernel_hz / (nbrp * ntq);
        if self.cccr & (1 << 8) == 0 {
            return Some(Bitrates::classic(nominal));
        }
        let dbtp = self.get(can_reg::DBTP);
        let dbrp = ((dbtp >> 16) & 0x1F) + 1;
        let dtq = 1 + ((dbtp >> 8) & 0x1F) + 1 + ((dbtp >> 4) & 0xF) + 1;
        let data = if self.cccr & (1 << 9) != 0 { kernel_hz / (dbrp * dtq) } else { nominal };
        Some(Bitrates::fd(nominal, data))
    }

    fn tx_layout(&self) -> (u32, u32, u32, u32) {
        let txbc = self.get(can_reg::TXBC);
        let tbsa = txbc & 0xFFFC;
        let ndtb = (txbc >> 16) & 0x3F;
        let tfqs = (txbc >> 24) & 0x3F;
        let elem = 8 + data_field(self.get(can_reg::TXESC));
        (tbsa, ndtb, tfqs, elem)
    }

    fn txfqs(&self) -> u32 {
        let (_, ndtb, tfqs, _) = self.tx_layout();
        let mut free = 0;
        let mut put = None;
        for i in ndtb..ndtb + tfqs {
            if self.txbrp & (1 << i) == 0 {
                free += 1;
                if put.is_none() {
                    put = Some(i);
                }
            }
        }
        let full = put.is_none();
        let put = put.unwrap_or(ndtb);
        let get = (ndtb..ndtb + tfqs).find(|i| self.txbrp & (1 << i) != 0).unwrap_or(ndtb);
        free | (get << 8) | (put << 16) | ((full as u32) << 21)
    }

    fn fifo_status(&self, n: usize) -> u32 {
        let cfg = self.get(if n == 0 { can_reg::RXF0C } else { can_reg::RXF1C });
        let size = (cfg >> 16) & 0x7F;
        let f = self.rxf[n];
        let put = if size == 0 { 0 } else { (f.get + f.fill) % size };
        f.fill | (f.get << 8) | (put << 16) | (((f.fill >= size && size > 0) as u32) << 24) | ((f.lost as u32) << 25)
    }

    fn read(&mut self, off: u32) -> u32 {
        match off {
            can_reg::CCCR => self.cccr,
            can_reg::ECR => self.tec.min(255),
            can_reg::PSR => {
                let mut v = 0x0000_0707;
                if self.tec >= 128 {
                    v |= 1 << 5; // EP
                }
                if self.tec >= 96 {
                    v |= 1 << 6; // EW
                }
                if self.bus_off {
                    v |= 1 << 7; // BO
                }
                v
            }
            can_reg::IR => self.ir,
            can_reg::RXF0S => self.fifo_status(0),
            can_reg::RXF1S => self.fifo_status(1),
            can_reg::TXFQS => self.txfqs(),
            can_reg::TXBRP => self.txbrp,
            can_reg::TXBTO => self.txbto,
            can_reg::TXBCF => self.txbcf,
            can_reg::TXEFS => {
                let cfg = self.get(can_reg::TXEFC);
                let size = (cfg >> 16) & 0x3F;
                let put = if size == 0 { 0 } else { (self.txef.get + self.txef.fill) % size };
                self.txef.fill
                    | (self.txef.get << 8)
                    | (put << 16)
                    | (((self.txef.fill >= size && size > 0) as u32) << 24)
            }
            _ => self.get(off),
        }
    }

    fn write(&mut self, off: u32, v: u32) {
        let protected = self.cccr & 3 != 3;
        match off {
            can_reg::CCCR => {
                let init = v & 1;
                let mut c = (self.cccr & !1) | init;
                // The configuration bits take the written value while the register is
                // unprotected (INIT and CCE set before this write, or set by it).
                if !protected || (init != 0 && v & 2 != 0) {
                    c = (c & 3) | (v & !3 & 0xF3FC);
                }
                if init != 0 {
                    c = (c & !2) | (v & 2); // CCE writable while INIT
                } else {
                    c &= !2;
                    self.bus_off = false;
                    self.tec = 0;
                }
                self.cccr = c;
                if init != 0 {
                    // Entering INIT cancels pending transmissions.
                    self.txbrp = 0;
                    self.tx_requests.clear();
                }
            }
            can_reg::IR => self.ir &= !v,
            can_reg::RXF0A => self.ack_fifo(0, v),
            can_reg::RXF1A => self.ack_fifo(1, v),
            can_reg::TXEFA => {
                let cfg = self.get(can_reg::TXEFC);
                let size = ((cfg >> 16) & 0x3F).max(1);
                let ai = v & 0x1F;
                let consumed = (ai + size - self.txef.get) % size + 1;
                self.txef.fill = self.txef.fill.saturating_sub(consumed);
                self.txef.get = (ai + 1) % size;
            }
            can_reg::TXBAR => {
                if self.running() {
                    self.request(v & !self.txbrp);
                }
            }
            can_reg::TXBCR => {
                let cancel = v & self.txbrp & !self.tx_on_bus;
                self.txbrp &= !cancel;
                self.txbcf |= cancel;
                self.tx_requests.retain(|(i, _)| cancel & (1 << i) == 0);
            }
            can_reg::NBTP
            | can_reg::DBTP
            | can_reg::TXBC
            | can_reg::TXESC
            | can_reg::RXESC
            | can_reg::RXF0C
            | can_reg::RXF1C
            | can_reg::TXEFC
            | can_reg::SIDFC
            | can_reg::GFC => {
                if !protected {
                    self.regs.insert(off, v);
                }
            }
            can_reg::CREL
            | can_reg::ENDN
            | can_reg::ECR
            | can_reg::PSR
            | can_reg::TXFQS
            | can_reg::TXBRP
            | can_reg::TXBTO
            | can_reg::TXBCF
            | can_reg::RXF0S
            | can_reg::RXF1S
            | can_reg::TXEFS => {}
            _ => {
                self.regs.insert(off, v);
            }
        }
    }

    fn ack_fifo(&mut self, n: usize, v: u32) {
        let cfg = self.get(if n == 0 { can_reg::RXF0C } else { can_reg::RXF1C });
        let size = ((cfg >> 16) & 0x7F).max(1);
        let ai = v & 0x3F;
        let f = &mut self.rxf[n];
        let consumed = (ai + size - f.get) % size + 1;
        f.fill = f.fill.saturating_sub(consumed);
        f.get = (ai + 1) % size;
    }

    fn request(&mut self, bits: u32) {
        let (tbsa, _, _, elem) = self.tx_layout();
        for i in 0..32 {
            if bits & (1 << i) == 0 {
                continue;
            }
            let at = tbsa + i * elem;
            let t0 = self.ram_word(at);
            let t1 = self.ram_word(at + 4);
            let xtd = t0 & (1 << 30) != 0;
            let id = if xtd { CanId::Extended(t0 & 0x1FFF_FFFF) } else { CanId::Standard(((t0 >> 18) & 0x7FF) as u16) };
            let fdf = t1 & (1 << 21) != 0 && self.cccr & (1 << 8) != 0;
            let brs = t1 & (1 << 20) != 0 && self.cccr & (1 << 9) != 0;
            let len = if fdf { dlc_len(t1 >> 16) } else { dlc_len(t1 >> 16).min(8) };
            let start = (at + 8) as usize;
            let data: Vec<u8> = self.ram.get(start..start + len).map(|d| d.to_vec()).unwrap_or_default();
            let frame = if t0 & (1 << 29) != 0 && !fdf {
                CanFrame::remote(id, (t1 >> 16 & 0xF) as u8)
            } else if fdf {
                CanFrame::fd(id, &data, brs)
            } else {
                CanFrame::classic(id, &data)
            };
            self.txbrp |= 1 << i;
            self.txbcf &= !(1 << i);
            self.txbto &= !(1 << i);
            match frame {
                Ok(f) => self.tx_requests.push((i, f)),
                Err(_) => {
                    // An impossible element (e.g. DLC > 8 classic): treat as sent.
                    self.tx_done(i, true);
                }
            }
        }
    }

    /// The bus reports buffer `i` transmitted (`acked`) or failed.
    pub fn tx_done(&mut self, i: u32, acked: bool) {
        self.tx_on_bus &= !(1 << i);
        if self.txbrp & (1 << i) == 0 {
            return;
        }
        if !acked {
            // No ACK: the controller retransmits; TEC rises by 8 each time (bounded at
            // error passive for missing ACKs, ISO 11898-1 §12.1.4.2 exception 1), then the
            // frame stays pending. The model gives up after 32 attempts: bus-off.
            self.tec += 8;
            if self.tec >= 256 {
                self.bus_off = true;
                self.cccr |= 1;
                self.ir |= 1 << 25; // BO
                self.txbrp = 0;
                self.tx_requests.clear();
            }
            return;
        }
        self.tec = self.tec.saturating_sub(1);
        self.txbrp &= !(1 << i);
        self.txbto |= 1 << i;
        if self.get(can_reg::TXBTIE) & (1 << i) != 0 {
            self.ir |= 1 << 9; // TC
        }
        let (tbsa, ndtb, tfqs, elem) = self.tx_layout();
        if i >= ndtb && i < ndtb + tfqs && (ndtb..ndtb + tfqs).all(|b| self.txbrp & (1 << b) == 0) {
            self.ir |= 1 << 11; // TFE
        }
        // Tx event FIFO.
        let t1 = self.ram_word(tbsa + i * elem + 4);
        if t1 & (1 << 23) != 0 {
            let cfg = self.get(can_reg::TXEFC);
            let size = (cfg >> 16) & 0x3F;
            if size > 0 {
                if self.txef.fill >= size {
                    self.ir |= 1 << 15; // TEFL
                } else {
                    let put = (self.txef.get + self.txef.fill) % size;
                    let at = (cfg & 0xFFFC) + put * 8;
                    let t0 = self.ram_word(tbsa + i * elem);
                    self.set_ram_word(at, t0);
                    self.set_ram_word(at + 4, (t1 & 0xFF3F_0000) | (1 << 22));
                    self.txef.fill += 1;
                    self.ir |= 1 << 12; // TEFN
                }
            }
        }
    }

    /// A frame arrived from the bus: filter it into Rx FIFO 0 or 1.
    pub fn receive(&mut self, frame: &CanFrame) {
        if !self.running() {
            return;
        }
        let (std_id, ext) = match frame.id() {
            CanId::Standard(s) => (s as u32, false),
            CanId::Extended(e) => (e, true),
        };
        let gfc = self.get(can_reg::GFC);
        // Standard filter list.
        let mut target = None;
        let mut index = 0x7F;
        if !ext {
            let sidfc = self.get(can_reg::SIDFC);
            let lss = (sidfc >> 16) & 0xFF;
            let base = sidfc & 0xFFFC;
            for f in 0..lss {
                let e = self.ram_word(base + 4 * f);
                let sft = e >> 30;
                let sfec = (e >> 27) & 7;
                let id1 = (e >> 16) & 0x7FF;
                let id2 = e & 0x7FF;
                let hit = match sft {
                    0 => std_id >= id1.min(id2) && std_id <= id1.max(id2),
                    1 => std_id == id1 || std_id == id2,
                    2 => std_id & id2 == id1 & id2,
                    _ => false,
                };
                if hit && sfec != 0 {
                    target = match sfec {
                        1 => Some(0),
                        2 => Some(1),
                        3 => Some(usize::MAX), // reject
                        _ => Some(0),
                    };
                    index = f;
                    break;
                }
            }
        }
        let target = match target {
            Some(usize::MAX) => return,
            Some(t) => t,
            None => {
                let anf = if ext { (gfc >> 2) & 3 } else { (gfc >> 4) & 3 };
                match anf {
                    0 => 0,
                    1 => 1,
                    _ => return,
                }
            }
        };
        let cfg = self.get(if target == 0 { can_reg::RXF0C } else { can_reg::RXF1C });
        let size = (cfg >> 16) & 0x7F;
        let esc = self.get(can_reg::RXESC);
        let elem = 8 + data_field(if target == 0 { esc } else { esc >> 4 });
        if size == 0 {
            return;
        }
        let fifo = self.rxf[target];
        if fifo.fill >= size {
            self.rxf[target].lost = true;
            self.ir |= 1 << (3 + 4 * target as u32); // RFxL
            return;
        }
        let put = (fifo.get + fifo.fill) % size;
        let at = (cfg & 0xFFFC) + put * elem;
        let r0 = if ext { (1 << 30) | std_id } else { std_id << 18 } | if frame.is_remote() { 1 << 29 } else { 0 };
        let mut r1 = len_dlc(frame.data().len()) << 16;
        if frame.is_fd() {
            r1 |= 1 << 21;
        }
        if frame.is_brs() {
            r1 |= 1 << 20;
        }
        if index != 0x7F {
            r1 |= index << 24;
        } else {
            r1 |= 1 << 31; // ANMF
        }
        self.set_ram_word(at, r0);
        self.set_ram_word(at + 4, r1);
        let n = frame.data().len().min((elem - 8) as usize);
        let s = (at + 8) as usize;
        if s + n <= self.ram.len() {
            self.ram[s..s + n].copy_from_slice(&frame.data()[..n]);
        }
        self.rxf[target].fill += 1;
        self.ir |= 1 << (4 * target as u32); // RFxN
        if self.rxf[target].fill >= size {
            self.ir |= 1 << (2 + 4 * target as u32); // RFxF
        }
    }

    fn lines(&self) -> (bool, bool) {
        let ie = self.get(can_reg::IE);
        let ils = self.get(can_reg::ILS);
        let ile = self.get(can_reg::ILE);
        let active = self.ir & ie;
        (ile & 1 != 0 && active & !ils != 0, ile & 2 != 0 && active & ils != 0)
    }
}

// ---- FLASH controller -----------------------------------------------------------------------

pub use crate::flash::FlashOp;

/// The FLASH controller (RM0468 §4): KEYR unlock (a wrong key locks until reset), CR (PG, SER,
/// BER, FW, START, SNB), SR (BSY, WBNE, QW, EOP, WRPERR, PGSERR, INCERR, DBECCERR), CCR,
/// ECC_FA, OPTSR_CUR (RDP), BOOT_CUR. Programs collect 32 bytes in the write buffer, then take
/// the profile's word program time; erases take the sector's erase time. ACR keeps what is
/// written (latency is not modelled).
#[derive(Debug, Clone)]
pub struct FlashCtl {
    regs: Regs,
    locked: bool,
    key_step: u8,
    key_broken: bool,
    cr: u32,
    sr: u32,
    buffer: Option<(u32, [u8; 32], u32)>,
    /// The operation in progress and the cycle it completes.
    pub busy: Option<(FlashOp, u64)>,
    /// Operations to start (handed to the board, which tears them on a reset).
    pub started: Vec<FlashOp>,
    ecc_fa: u32,
}

mod flash_reg {
    pub const ACR: u32 = 0x00;
    pub const KEYR: u32 = 0x04;
    pub const CR: u32 = 0x0C;
    pub const SR: u32 = 0x10;
    pub const CCR: u32 = 0x14;
    pub const OPTSR_CUR: u32 = 0x1C;
    pub const BOOT_CUR: u32 = 0x40;
    pub const ECC_FA: u32 = 0x60;
}

impl FlashCtl {
    fn new() -> FlashCtl {
        let mut regs = Regs::default();
        regs.insert(flash_reg::ACR, 0x0000_0037);
        regs.insert(flash_reg::BOOT_CUR, 0x1FF0_0800);
        FlashCtl {
            regs,
            locked: true,
            key_step: 0,
            key_broken: false,
            // CR1's reset value is 0x0000_0031: PSIZE = 3 and LOCK, which `locked` holds (so a
            // read-modify-write after the unlock does not write LOCK back).
            cr: 0x30,
            sr: 0,
            buffer: None,
            busy: None,
            started: Vec::new(),
            ecc_fa: 0,
        }
    }

    fn read(&self, off: u32, rdp_level1: bool) -> u32 {
        match off {
            flash_reg::CR => self.cr | self.locked as u32,
            flash_reg::SR => {
                let mut v = self.sr;
                if self.busy.is_some() {
                    v |= 1 | (1 << 2); // BSY, QW
                }
                if self.buffer.is_some() {
                    v |= 1 << 1; // WBNE
                }
                v
            }
            flash_reg::OPTSR_CUR => {
                // RDP in bits 15:8 (0xAA: level 0), IWDG1_SW, NRST bits set.
                let rdp = if rdp_level1 { 0xBB } else { 0xAA };
                0x0000_00D0 | (rdp << 8)
            }
            flash_reg::ECC_FA => self.ecc_fa,
            _ => self.regs.get(&off).copied().unwrap_or(0),
        }
    }

    /// Register write; `sectors` is the number of sectors.
    fn write(&mut self, off: u32, v: u32, sectors: u32) {
        match off {
            flash_reg::KEYR => {
                if self.key_broken || !self.locked {
                    // A key write to an unlocked register, or after a wrong key, locks until reset.
                    self.locked = true;
                    self.key_broken = true;
                    return;
                }
                match (self.key_step, v) {
                    (0, 0x4567_0123) => self.key_step = 1,
                    (1, 0xCDEF_89AB) => {
                        self.locked = false;
                        self.key_step = 0;
                    }
                    _ => {
                        self.key_broken = true;
                    }
                }
            }
            flash_reg::CR => {
                if self.locked {
                    return;
                }
                if v & 1 != 0 {
                    self.locked = true;
                }
                self.cr = v & !(1 | (1 << 7));
                if v & (1 << 6) != 0 {
                    // FW: force the partial buffer out.
                    self.cr &= !(1 << 6);
                    if let Some((addr, data, _)) = self.buffer.take() {
                        self.started.push(FlashOp::Program { addr, data: data.to_vec() });
                    }
                }
                if v & (1 << 7) != 0 {
                    if self.busy.is_some() {
                        self.sr |= 1 << 21; // INCERR-like: operation refused
                    } else if v & (1 << 3) != 0 {
                        self.started.push(FlashOp::Mass);
                    } else if v & (1 << 2) != 0 {
                        let snb = (v >> 8) & 7;
                        if snb < sectors {
                            self.started.push(FlashOp::Erase { sector: snb });
                        } else {
                            self.sr |= 1 << 18; // PGSERR
                        }
                    }
                }
            }
            flash_reg::CCR => self.sr &= !(v & 0x1FFE_0000 | v & (1 << 16)),
            flash_reg::SR | flash_reg::OPTSR_CUR | flash_reg::BOOT_CUR | flash_reg::ECC_FA => {}
            _ => {
                self.regs.insert(off, v);
            }
        }
    }

    /// A write into flash memory itself (program sequence).
    fn write_flash(&mut self, addr: u32, size: u32, value: u32) -> bool {
        if self.locked || self.cr & 2 == 0 {
            self.sr |= 1 << 18; // PGSERR: write without PG
            return false;
        }
        let word = addr & !31;
        let (waddr, data, count) = self.buffer.get_or_insert((word, [0xFF; 32], 0));
        if *waddr != word {
            // Crossing into another flash word before the first is complete.
            self.sr |= 1 << 21; // INCERR
            self.buffer = None;
            return false;
        }
        for i in 0..size {
            data[((addr & 31) + i) as usize] = (value >> (8 * i)) as u8;
        }
        *count += size;
        if *count >= 32 {
            let (addr, data, _) = self.buffer.take().expect("buffer");
            self.started.push(FlashOp::Program { addr, data: data.to_vec() });
        }
        true
    }

    fn irq(&self) -> bool {
        self.cr & (1 << 16) != 0 && self.sr & (1 << 16) != 0
    }
}

// ---- the whole set --------------------------------------------------------------------------

/// One register access the models did not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmodelled {
    /// Address.
    pub addr: u32,
    /// Write (or read).
    pub write: bool,
    /// Value written.
    pub value: u32,
    /// The instruction's address.
    pub pc: u32,
}

/// The chip's peripherals.
#[derive(Debug, Clone)]
pub struct Peripherals {
    /// RCC.
    pub rcc: Rcc,
    /// PWR.
    pub pwr: Pwr,
    /// FLASH.
    pub flash: FlashCtl,
    /// GPIOA..GPIOK.
    pub gpio: Vec<Gpio>,
    /// TIM2..TIM5.
    pub tim: [GpTimer; 4],
    /// USART3.
    pub usart3: Usart,
    /// FDCAN1.
    pub fdcan1: Fdcan,
    plain: Regs,
    /// Accesses outside every model (first ones; the count is in `unmodelled_count`).
    pub unmodelled: Vec<Unmodelled>,
    /// How many accesses were outside every model.
    pub unmodelled_count: u64,
    /// Core clock changes (core cycle, new Hz) since the runner last looked.
    pub clock_changes: Vec<(u64, u32)>,
    lines: [u32; 8],
    lines_dirty: bool,
    /// The reset-cause value the firmware last read (the timeline shows each new one once).
    pub rsr_read: Option<u32>,
    /// A family without register models: only its reset-cause register, at its reset clock.
    generic: Option<Generic>,
}

/// The one register modelled on families other than the H7: the reset-cause register (read:
/// the board's flags; writing its RMVF bit clears them), with the core on its reset clock.
#[derive(Debug, Clone, Copy)]
pub struct Generic {
    /// Address of the reset-cause register.
    pub reset_register: u32,
    /// Its RMVF bit.
    pub rmvf_bit: u8,
    /// Core clock after reset (the internal RC oscillator).
    pub core_hz: u32,
}

/// Plain register files: SYSCFG, EXTI, IWDG1, DBGMCU, and the rest of the D3/D1 peripherals
/// firmware touches during init.
fn plain_region(addr: u32) -> bool {
    let ranges = [
        (addr::SYSCFG, 0x400),
        (addr::EXTI, 0x400),
        (addr::IWDG1, 0x400),
        (addr::DBGMCU, 0x400),
        (0x5800_2400, 0x400),  // BDMA... (DMAMUX2)
        (0x4002_0000, 0x800),  // DMA1/DMA2
        (0x4002_0800, 0x400),  // DMAMUX1
        (0x5200_0000, 0x1000), // MDMA
        (0x5800_5400, 0x400),  // BDMA
    ];
    ranges.iter().any(|(b, s)| addr >= *b && addr < b + s)
}

impl Peripherals {
    /// Reset state for `osc`.
    pub fn new(osc: Oscillators) -> Peripherals {
        let mut plain = Regs::default();
        plain.insert(addr::DBGMCU, 0x1001_6483); // IDCODE: REV_ID 0x1001 (Z), DEV_ID 0x483
        Peripherals {
            rcc: Rcc::new(osc),
            pwr: Pwr::new(),
            flash: FlashCtl::new(),
            gpio: (0..11).map(Gpio::new).collect(),
            tim: [GpTimer::new(true), GpTimer::new(false), GpTimer::new(false), GpTimer::new(true)],
            usart3: Usart::new(),
            fdcan1: Fdcan::new(),
            plain,
            unmodelled: Vec::new(),
            unmodelled_count: 0,
            clock_changes: Vec::new(),
            lines: [0; 8],
            lines_dirty: true,
            rsr_read: None,
            generic: None,
        }
    }

    /// The peripherals of a family the twin has no register models for: only `g`.
    pub fn generic(g: Generic) -> Peripherals {
        Peripherals { generic: Some(g), ..Peripherals::new(Oscillators::default()) }
    }

    /// The reset-cause register's address, when this is a [`Generic`] set.
    pub fn generic_reset_register(&self) -> Option<u32> {
        self.generic.map(|g| g.reset_register)
    }

    /// The core clock.
    pub fn core_hz(&self) -> u32 {
        match self.generic {
            Some(g) => g.core_hz,
            None => self.rcc.core_hz(),
        }
    }

    /// Whether `addr` is a peripheral register this set models.
    pub fn claims(&self, addr: u32) -> bool {
        if let Some(g) = self.generic {
            return addr & !3 == g.reset_register;
        }
        let a = addr;
        addr::TIM.iter().any(|b| a >= *b && a < b + 0x400)
            || (addr::USART3..addr::USART3 + 0x400).contains(&a)
            || (addr::FDCAN1..addr::FDCAN1 + 0x400).contains(&a)
            || (addr::FDCAN_RAM..addr::FDCAN_RAM + addr::FDCAN_RAM_SIZE).contains(&a)
            || (addr::FLASH..addr::FLASH + 0x400).contains(&a)
            || (addr::GPIOA..addr::GPIOA + 11 * 0x400).contains(&a)
            || (addr::RCC..addr::RCC + 0x400).contains(&a)
            || (addr::PWR..addr::PWR + 0x400).contains(&a)
            || plain_region(a)
    }

    /// Read a register (word access; sub-word reads are extracted by the caller).
    pub fn read(&mut self, addr: u32, cycles: u64, rsr: u32, rdp_level1: bool) -> u32 {
        if self.generic.is_some() {
            return rsr;
        }
        let (core, tim_hz) = (self.rcc.core_hz(), self.rcc.tim_apb1_hz());
        if let Some(t) = addr::TIM.iter().position(|b| addr >= *b && addr < b + 0x400) {
            // A timer catches up to the present when read: its flags may rise.
            self.lines_dirty = true;
            self.tim[t].read(addr - addr::TIM[t], cycles, core, tim_hz)
        } else if (addr::USART3..addr::USART3 + 0x400).contains(&addr) {
            // Reading RDR pops the receive FIFO: the only read with a side effect on a line.
            self.lines_dirty = true;
            self.usart3.read(addr - addr::USART3)
        } else if (addr::FDCAN1..addr::FDCAN1 + 0x400).contains(&addr) {
            self.fdcan1.read(addr - addr::FDCAN1)
        } else if (addr::FDCAN_RAM..addr::FDCAN_RAM + addr::FDCAN_RAM_SIZE).contains(&addr) {
            self.fdcan1.ram_word(addr - addr::FDCAN_RAM)
        } else if (addr::FLASH..addr::FLASH + 0x400).contains(&addr) {
            self.flash.read(addr - addr::FLASH, rdp_level1)
        } else if (addr::GPIOA..addr::GPIOA + 11 * 0x400).contains(&addr) {
            let p = ((addr - addr::GPIOA) / 0x400) as usize;
            self.gpio[p].read((addr - addr::GPIOA) % 0x400)
        } else if (addr::RCC..addr::RCC + 0x400).contains(&addr) {
            self.rcc.read(addr - addr::RCC, rsr)
        } else if (addr::PWR..addr::PWR + 0x400).contains(&addr) {
            self.pwr.read(addr - addr::PWR)
        } else {
            self.plain.get(&addr).copied().unwrap_or(0)
        }
    }

    /// Write a register (word-wide value; `mask` marks the bytes written). Returns whether the
    /// reset flags must be cleared (RMVF).
    pub fn write(&mut self, addr: u32, value: u32, mask: u32, cycles: u64, flash_sectors: u32) -> bool {
        if let Some(g) = self.generic {
            return value & mask & (1 << g.rmvf_bit) != 0;
        }
        let (core, tim_hz) = (self.rcc.core_hz(), self.rcc.tim_apb1_hz());
        self.lines_dirty = true;
        let merge = |old: u32| (old & !mask) | (value & mask);
        if let Some(t) = addr::TIM.iter().position(|b| addr >= *b && addr < b + 0x400) {
            let off = addr - addr::TIM[t];
            let old = if off == 0x10 { u32::MAX } else { self.tim[t].read(off, cycles, core, tim_hz) };
            self.tim[t].write(off, merge(old), cycles, core, tim_hz);
        } else if (addr::USART3..addr::USART3 + 0x400).contains(&addr) {
            let off = addr - addr::USART3;
            let old = if off == 0x28 { 0 } else { self.usart3.read(off) };
            self.usart3.write(off, merge(old));
        } else if (addr::FDCAN1..addr::FDCAN1 + 0x400).contains(&addr) {
            let off = addr - addr::FDCAN1;
            let old = match off {
                0x50 | 0xA8 | 0xB8 | 0xD0 | 0xD4 | 0xF8 => 0,
                _ => self.fdcan1.read(off),
            };
            self.fdcan1.write(off, merge(old));
        } else if (addr::FDCAN_RAM..addr::FDCAN_RAM + addr::FDCAN_RAM_SIZE).contains(&addr) {
            let off = addr - addr::FDCAN_RAM;
            let old = self.fdcan1.ram_word(off);
            self.fdcan1.set_ram_word(off, merge(old));
        } else if (addr::FLASH..addr::FLASH + 0x400).contains(&addr) {
            let off = addr - addr::FLASH;
            let old = if off == flash_reg::CCR || off == flash_reg::KEYR { 0 } else { self.flash.read(off, false) };
            self.flash.write(off, merge(old), flash_sectors);
        } else if (addr::GPIOA..addr::GPIOA + 11 * 0x400).contains(&addr) {
            let p = ((addr - addr::GPIOA) / 0x400) as usize;
            let off = (addr - addr::GPIOA) % 0x400;
            let old = if off == 0x18 { 0 } else { self.gpio[p].read(off) };
            self.gpio[p].write(off, merge(old));
        } else if (addr::RCC..addr::RCC + 0x400).contains(&addr) {
            let off = addr - addr::RCC;
            let old = self.rcc.read(off, 0);
            // Everything timed in core cycles is brought to the present at the old clocks, and
            // what is still to come is rescaled to the new ones.
            for t in &mut self.tim {
                t.sync(cycles, core, tim_hz);
            }
            let rmvf = self.rcc.write(off, merge(old));
            let (new_core, new_tim) = (self.rcc.core_hz(), self.rcc.tim_apb1_hz());
            if (new_core, new_tim) != (core, tim_hz) {
                self.clocks_changed(cycles, core, new_core);
            }
            return rmvf;
        } else if (addr::PWR..addr::PWR + 0x400).contains(&addr) {
            let off = addr - addr::PWR;
            let old = self.pwr.read(off);
            self.pwr.write(off, merge(old));
        } else if plain_region(addr) {
            let old = self.plain.get(&addr).copied().unwrap_or(0);
            if addr != addr::DBGMCU {
                self.plain.insert(addr, merge(old));
            }
        }
        false
    }

    /// The core clock went from `old` to `new` Hz at core cycle `now`: deadlines counted in
    /// core cycles keep their time. Timers were brought to `now` at the old clocks; their
    /// fraction of a tick is dropped (at most one tick early or late, once).
    fn clocks_changed(&mut self, now: u64, old: u32, new: u32) {
        let scale = |at: u64| {
            if at <= now {
                at
            } else {
                now.saturating_add(
                    ((at - now) as u128 * new as u128 / old.max(1) as u128).min(u64::MAX as u128 / 2) as u64
                )
            }
        };
        for t in &mut self.tim {
            t.frac = 0;
        }
        if let Some((_, done)) = &mut self.flash.busy {
            *done = scale(*done);
        }
        self.usart3.idle_at = self.usart3.idle_at.map(scale);
        self.usart3.next_in = scale(self.usart3.next_in);
        if new != old {
            self.clock_changes.push((now, new));
        }
    }

    /// What the ROM bootloader leaves configured when its Go jumps to the application, on the
    /// H72x (assumption `rom-go-leftovers`). AN2606 §4.1: "When executing the Go command, the
    /// peripheral registers used by the bootloader are not initialized to their default reset
    /// values before jumping to the user application"; its Table 133 gives what it set: "The
    /// system clock frequency is 66 MHz (using PLL clocked by the HSI)", "20 MHz derived from
    /// the PLLQ is used for FDCAN", "Voltage is set to Voltage Range 3", and the IWDG prescaler
    /// at its maximum. The bootloader brings up every interface it listens on, so FDCAN1 and
    /// USART3 keep their clocks and pins (PD0/PD1 AF9, PD8/PD9 AF7). The PLL settings are the
    /// twin's choice (AN2606 gives the frequencies only): HSI / 32 × 330 = 660 MHz, P / 10,
    /// Q / 33. (AN3155 §3.5 and AN5405 §3.5 say Go resets the registers it used; AN2606's note
    /// says it does not: the application must not rely on either.)
    pub fn rom_go_leftovers(&mut self) {
        if self.generic.is_some() {
            return;
        }
        let all = u32::MAX;
        let r = addr::RCC;
        self.write(r + rcc::PLLCKSELR, 32 << 4, all, 0, 0);
        self.write(r + rcc::PLL1DIVR, 329 | (9 << 9) | (32 << 16), all, 0, 0);
        let cr = self.rcc.get(rcc::CR);
        self.write(r + rcc::CR, cr | (1 << 24), all, 0, 0);
        self.write(r + rcc::CFGR, 3, all, 0, 0);
        self.write(r + rcc::D2CCIP1R, 1 << 28, all, 0, 0);
        let set = |p: &mut Peripherals, off: u32, bits: u32| {
            let v = p.rcc.get(off) | bits;
            p.write(r + off, v, all, 0, 0);
        };
        set(self, 0xE0, 1 << 3); // AHB4ENR: GPIOD
        set(self, 0xEC, 1 << 8); // APB1HENR: FDCAN
        set(self, 0xE8, 1 << 18); // APB1LENR: USART3
        let d = addr::GPIOA + 3 * 0x400;
        let moder = self.gpio[3].read(0x00);
        let af_mode = |m: u32, pin: u32| (m & !(3 << (2 * pin))) | (2 << (2 * pin));
        let moder = [0, 1, 8, 9].into_iter().fold(moder, af_mode);
        self.write(d, moder, all, 0, 0);
        let afrl = (self.gpio[3].read(0x20) & !0xFF) | 0x99;
        self.write(d + 0x20, afrl, all, 0, 0);
        let afrh = (self.gpio[3].read(0x24) & !0xFF) | 0x77;
        self.write(d + 0x24, afrh, all, 0, 0);
        let d3cr = (self.pwr.read(0x18) & !0xC000) | (1 << 14);
        self.write(addr::PWR + 0x18, d3cr, all, 0, 0);
        self.write(addr::IWDG1 + 0x04, 6, all, 0, 0);
        self.clock_changes.clear();
    }

    /// A write into the flash array while the controller may be programming.
    pub fn flash_write(&mut self, addr: u32, size: u32, value: u32) -> bool {
        self.flash.write_flash(addr, size, value)
    }

    /// Bring timers to `cycles`.
    pub fn tick(&mut self, cycles: u64) {
        let (core, tim_hz) = (self.rcc.core_hz(), self.rcc.tim_apb1_hz());
        for t in &mut self.tim {
            t.sync(cycles, core, tim_hz);
        }
        self.usart3_deliver(cycles);
        if self.usart3.idle_at.is_some_and(|at| cycles >= at) {
            self.usart3.idle_at = None;
            self.usart3.idle = true;
        }
        self.lines_dirty = true;
    }

    /// Bytes for USART3 from the link, from core cycle `now` on: they reach the receiver one
    /// character time apart, as on the wire (the link hands them over in bursts).
    pub fn usart3_receive(&mut self, bytes: &[u8], now: u64) {
        if self.usart3.incoming.is_empty() {
            self.usart3.next_in = self.usart3.next_in.max(now);
        }
        self.usart3.incoming.extend(bytes);
        self.usart3_deliver(now);
    }

    fn usart3_char_cycles(&self) -> u64 {
        let cfg = self.usart3.config(self.rcc.usart3_hz());
        let bits = if cfg.is_some_and(|c| c.parity != Parity::None) { 11 } else { 10 };
        let baud = cfg.map(|c| c.baud).unwrap_or(115_200).max(1) as u64;
        (bits * self.core_hz() as u64 / baud).max(1)
    }

    fn usart3_deliver(&mut self, now: u64) {
        let cc = self.usart3_char_cycles();
        while now >= self.usart3.next_in
            && let Some(b) = self.usart3.incoming.pop_front()
        {
            let at = self.usart3.next_in;
            self.usart3.receive(b, at, cc);
            self.usart3.next_in = at + cc;
            self.lines_dirty = true;
        }
    }

    /// The earliest cycle a timer or the flash controller changes by itself.
    pub fn next_event(&self) -> u64 {
        let (core, tim_hz) = (self.rcc.core_hz(), self.rcc.tim_apb1_hz());
        let mut n = self.tim.iter().map(|t| t.next_event(core, tim_hz)).min().unwrap_or(u64::MAX);
        if let Some(at) = self.usart3.idle_at {
            n = n.min(at);
        }
        if !self.usart3.incoming.is_empty() {
            n = n.min(self.usart3.next_in);
        }
        if let Some((_, done)) = &self.flash.busy {
            n = n.min(*done);
        }
        n
    }

    /// The interrupt lines, if they may have changed.
    pub fn take_lines(&mut self) -> Option<[u32; 8]> {
        if !self.lines_dirty {
            return None;
        }
        self.lines_dirty = false;
        let mut l = [0u32; 8];
        let mut set = |n: usize, on: bool| {
            if on {
                l[n / 32] |= 1 << (n % 32);
            }
        };
        for (i, t) in self.tim.iter().enumerate() {
            set(irq::TIM[i], t.irq());
        }
        set(irq::USART3, self.usart3.irq());
        let (it0, it1) = self.fdcan1.lines();
        set(irq::FDCAN1_IT0, it0);
        set(irq::FDCAN1_IT1, it1);
        set(irq::FLASH, self.flash.irq());
        if l != self.lines {
            self.lines = l;
        }
        Some(l)
    }

    /// Mark the lines for re-evaluation (after an asynchronous change: a frame arrived).
    pub fn touch(&mut self) {
        self.lines_dirty = true;
    }

    /// Complete a flash operation (called when it is due); returns it.
    pub fn flash_complete(&mut self) -> Option<FlashOp> {
        let (op, _) = self.flash.busy.take()?;
        if self.flash.cr & (1 << 16) != 0 {
            self.flash.sr |= 1 << 16; // EOP
        }
        self.lines_dirty = true;
        Some(op)
    }

    /// The ECC corrected a single error in the flash word at `addr` (SNECCERR1, ECC_FA1R).
    pub fn flash_corrected(&mut self, addr: u32) {
        self.flash.sr |= 1 << 25; // SNECCERR
        self.flash.ecc_fa = ((addr - 0x0800_0000) / 32) & 0x7FFF;
        self.lines_dirty = true;
    }

    /// Record an ECC double error at `addr` in the flash controller's status.
    pub fn flash_ecc(&mut self, addr: u32) {
        self.flash.sr |= 1 << 26; // DBECCERR
        self.flash.ecc_fa = ((addr - 0x0800_0000) / 32) & 0x7FFF;
    }

    /// Record an access outside every model.
    pub fn record_unmodelled(&mut self, u: Unmodelled) {
        self.unmodelled_count += 1;
        if self.unmodelled.len() < 64 && !self.unmodelled.iter().any(|x| x.addr == u.addr && x.write == u.write) {
            self.unmodelled.push(u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_tree_defaults_and_pll() {
        let mut r = Rcc::new(Oscillators::default());
        assert_eq!(r.core_hz(), 64_000_000);
        assert_eq!(r.tim_apb1_hz(), 64_000_000);
        // HSE 8 MHz / M 1 * N 100 / P 2 = 400 MHz, Q 10 = 80 MHz.
        r.write(rcc::PLLCKSELR, 2 | (1 << 4));
        r.write(rcc::PLL1DIVR, 99 | (1 << 9) | (9 << 16));
        r.write(rcc::CR, r.get(rcc::CR) | (1 << 16) | (1 << 24));
        assert_ne!(r.get(rcc::CR) & (1 << 25), 0, "PLL1RDY follows PLL1ON");
        r.write(rcc::CFGR, 3);
        assert_eq!(r.get(rcc::CFGR) >> 3 & 7, 3, "SWS follows SW");
        r.write(rcc::D1CFGR, 8); // HPRE /2
        assert_eq!(r.core_hz(), 400_000_000);
        r.write(rcc::D2CFGR, 4 << 4); // APB1 /2
        assert_eq!(r.tim_apb1_hz(), 200_000_000);
        r.write(rcc::D2CCIP1R, 1 << 28);
        assert_eq!(r.fdcan_hz(), 80_000_000);
    }

    #[test]
    fn a_running_plls_dividers_and_source_hold_against_writes() {
        let mut r = Rcc::new(Oscillators::default());
        r.write(rcc::PLLCKSELR, 2 | (2 << 4));
        r.write(rcc::PLL1DIVR, 199 | (1 << 9));
        r.write(rcc::CR, r.get(rcc::CR) | (1 << 16) | (1 << 24));
        r.write(rcc::CFGR, 3);
        assert_eq!(r.core_hz(), 400_000_000);
        // What embassy-stm32 0.6 writes to switch PLL2 off while PLL1 runs: the whole register.
        r.write(rcc::PLLCKSELR, 0);
        r.write(rcc::PLL1DIVR, 0);
        assert_eq!(r.get(rcc::PLLCKSELR), 2 | (2 << 4), "DIVM1 and PLLSRC kept");
        assert_eq!(r.core_hz(), 400_000_000, "PLL1 runs on");
        // PLL2's divider is writable (PLL2 is off); the source is not (PLL1 is on).
        r.write(rcc::PLLCKSELR, 2 | (2 << 4) | (5 << 12));
        assert_eq!(r.get(rcc::PLLCKSELR) >> 12 & 0x3F, 5);
        // Off again, everything is writable.
        r.write(rcc::CFGR, 0);
        r.write(rcc::CR, r.get(rcc::CR) & !(1 << 24));
        r.write(rcc::PLLCKSELR, 0);
        r.write(rcc::PLL1DIVR, 0x0101_0280);
        assert_eq!((r.get(rcc::PLLCKSELR), r.get(rcc::PLL1DIVR)), (0, 0x0101_0280));
    }

    #[test]
    fn a_clock_change_keeps_the_time_of_timer_and_flash_deadlines() {
        let mut p = Peripherals::new(Oscillators::default());
        let w = |p: &mut Peripherals, a: u32, v: u32, at: u64| p.write(a, v, u32::MAX, at, 8);
        let r = addr::RCC;
        // HSI 64 MHz, HPRE /2: core 64 MHz, timers 32 MHz. PLL1 from HSI: /4 × 16 / 2 = 128 MHz.
        w(&mut p, r + rcc::D1CFGR, 8, 0);
        w(&mut p, r + rcc::PLLCKSELR, 4 << 4, 0);
        w(&mut p, r + rcc::PLL1DIVR, 15 | (1 << 9), 0);
        let cr = p.rcc.get(rcc::CR);
        w(&mut p, r + rcc::CR, cr | (1 << 24), 0);
        assert_eq!((p.core_hz(), p.rcc.tim_apb1_hz()), (64_000_000, 32_000_000));
        // TIM2 at 1 MHz, compare 1 at 1000 µs; a sector erase due at 1 ms too.
        let t = addr::TIM[0];
        w(&mut p, t + 0x28, 31, 0);
        w(&mut p, t + 0x14, 1, 0);
        w(&mut p, t + 0x34, 1000, 0);
        w(&mut p, t + 0x10, 0, 0);
        w(&mut p, t, 1, 0);
        p.flash.busy = Some((FlashOp::Erase { sector: 1 }, 64_000));
        assert_eq!(p.next_event(), 64_000);
        // At 500 µs the core switches to PLL1: core 128 MHz, timers 64 MHz (TIM2 now at 2 MHz:
        // its prescaler stays). 500 ticks remain at 2 MHz = 250 µs = 32,000 cycles; the erase's
        // remaining 500 µs are 64,000 cycles at 128 MHz.
        w(&mut p, r + rcc::CFGR, 3, 32_000);
        assert_eq!(p.core_hz(), 128_000_000);
        assert_eq!(p.next_event(), 32_000 + 32_000);
        assert_eq!(p.flash.busy.as_ref().map(|b| b.1), Some(32_000 + 64_000));
        assert_eq!(p.clock_changes, [(32_000, 128_000_000)]);
        // The timer reads 500 at the switch and 999 one cycle before its compare.
        assert_eq!(p.read(t + 0x24, 63_999, 0, false), 999);
        assert_eq!(p.read(t + 0x10, 63_999, 0, false) & 2, 0);
        assert_ne!(p.read(t + 0x10, 64_000, 0, false) & 2, 0, "CC1IF at 1000 µs");
    }

    #[test]
    fn timer_counts_and_flags_compares() {
        let mut t = GpTimer::new(false);
        let (core, clk) = (64_000_000, 64_000_000);
        t.write(0x28, 1951, 0, core, clk); // 32.768 kHz
        t.write(0x14, 1, 0, core, clk);
        t.sr = 0;
        t.write(0x34, 0x8000, 0, core, clk);
        t.write(0x00, 1, 0, core, clk);
        assert_eq!(t.read(0x24, 1952 * 10, core, clk), 10);
        let due = t.next_event(core, clk);
        assert_eq!(due, 1952 * 0x8000);
        t.sync(due, core, clk);
        assert_eq!(t.sr & 2, 2, "CC1IF at the compare");
        t.sync(1952 * 0x1_0000, core, clk);
        assert_eq!(t.sr & 1, 1, "UIF at the wrap");
    }

    #[test]
    fn fdcan_bit_timing_maps_to_rates() {
        let mut c = Fdcan::new();
        c.write(can_reg::CCCR, 3);
        c.write(can_reg::NBTP, 0x0001_0C01); // NBRP 2, 1+13+2 = 16 tq
        c.write(can_reg::DBTP, 0x0000_0500); // 8 tq
        c.write(can_reg::CCCR, 3 | (1 << 8) | (1 << 9));
        assert_eq!(c.bitrates(8_000_000), Some(Bitrates::fd(250_000, 1_000_000)));
    }

    #[test]
    fn fdcan_transmits_from_its_tx_queue_and_receives_into_fifo0() {
        let mut c = Fdcan::new();
        c.write(can_reg::CCCR, 3);
        c.write(can_reg::TXBC, (3 << 24) | 0x278);
        c.write(can_reg::TXESC, 7);
        c.write(can_reg::RXF0C, (3 << 16) | 0xB0);
        c.write(can_reg::RXESC, 7);
        c.write(can_reg::TXBTIE, u32::MAX);
        c.write(can_reg::CCCR, 0x300);
        assert!(c.running());
        assert_eq!(c.txfqs() & 0x3F, 3, "three free");
        // Element 0: std ID 0x123, FD, BRS, 64 bytes.
        c.set_ram_word(0x278, 0x123 << 18);
        c.set_ram_word(0x27C, (15 << 16) | (1 << 21) | (1 << 20));
        c.write(can_reg::TXBAR, 1);
        assert_eq!(c.tx_requests.len(), 1);
        let (i, f) = c.tx_requests.remove(0);
        assert_eq!((i, f.id(), f.data().len(), f.is_brs()), (0, CanId::Standard(0x123), 64, true));
        c.tx_done(i, true);
        assert_eq!(c.read(can_reg::TXBTO) & 1, 1);
        assert_ne!(c.read(can_reg::IR) & (1 << 9), 0, "TC");
        let f = CanFrame::fd(CanId::Standard(0x7A2), &[1, 2, 3], true).unwrap();
        c.receive(&f);
        assert_eq!(c.read(can_reg::RXF0S) & 0x7F, 1);
        assert_eq!(c.ram_word(0xB0) >> 18, 0x7A2);
        c.write(can_reg::RXF0A, 0);
        assert_eq!(c.read(can_reg::RXF0S) & 0x7F, 0);
    }

    #[test]
    fn flash_controller_unlocks_programs_and_locks_on_a_wrong_key() {
        let mut f = FlashCtl::new();
        f.write(flash_reg::CR, 2, 8);
        assert!(f.locked, "locked: CR writes ignored");
        f.write(flash_reg::KEYR, 0x4567_0123, 8);
        f.write(flash_reg::KEYR, 0xCDEF_89AB, 8);
        assert!(!f.locked);
        f.write(flash_reg::CR, 2, 8);
        for i in 0..8 {
            assert!(f.write_flash(0x0802_0000 + 4 * i, 4, i));
        }
        assert_eq!(f.started.len(), 1);
        let mut g = FlashCtl::new();
        g.write(flash_reg::KEYR, 0x1111_1111, 8);
        g.write(flash_reg::KEYR, 0x4567_0123, 8);
        g.write(flash_reg::KEYR, 0xCDEF_89AB, 8);
        assert!(g.locked, "a wrong key locks until reset");
    }

    #[test]
    fn usart_frame_format_from_brr_and_parity() {
        let mut u = Usart::new();
        u.write(0x0C, 0x22C);
        u.write(0x00, 1 | (1 << 3) | (1 << 2));
        let c = u.config(64_000_000).unwrap();
        assert!((115_000..=115_300).contains(&c.baud));
        assert_eq!(c.parity, Parity::None);
        u.write(0x00, 1 | (1 << 3) | (1 << 10) | (1 << 12));
        assert_eq!(u.config(64_000_000).unwrap().parity, Parity::Even);
    }
}
