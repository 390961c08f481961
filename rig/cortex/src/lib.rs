//! An ARMv7E-M core (the Cortex-M7 of the STM32H723) for bootproof's twin: it executes real
//! firmware instruction by instruction over a [`Bus`] the caller provides (the chip's memory
//! map and peripherals), with the core's own system peripherals built in.
//!
//! * **Instructions** ([`decode`]): the whole Thumb-2 integer instruction set of ARMv7-M, and
//!   the ARMv7E-M DSP extension (saturating, parallel, packing and the DSP multiplies). No FPU:
//!   a floating-point or coprocessor instruction is a usage fault (NOCP), reported as such.
//! * **Exceptions**: reset, NMI, HardFault, MemManage, BusFault, UsageFault, SVCall, PendSV,
//!   SysTick and up to 240 external interrupts, with priorities (and PRIGROUP), PRIMASK,
//!   BASEPRI, FAULTMASK, stacking with 8-byte alignment, EXC_RETURN, late preemption of a
//!   return (tail chaining as a pop then a push), escalation to HardFault, and lockup.
//! * **System control space** ([`scs`]): NVIC, SCB (CPUID, ICSR, VTOR, AIRCR with
//!   SYSRESETREQ, SCR, CCR, SHPR, SHCSR, CFSR/HFSR/MMFAR/BFAR, CPACR, cache identification),
//!   SysTick, DWT (CYCCNT), the MPU's registers (stored, not enforced), FPU control registers,
//!   cache maintenance (no effect: the model has no caches), DHCSR/DEMCR.
//! * **Sleep**: WFI, WFE, SEV and the event register; [`Cpu::run`] returns [`Stop::Sleep`] so
//!   the caller can fast-forward time to the next event.
//! * **Time**: one cycle per instruction, two for taken branches, one more per register beyond
//!   the first two in multiple transfers, four for divisions, twelve for exception entry and
//!   return. Cycles drive SysTick, DWT and, through the bus, the chip's timers.
//!
//! Decoded instructions are cached per address for memory the bus declares cacheable (flash,
//! ROM); the bus bumps [`Bus::code_version`] when such memory changes.

pub mod decode;
mod exec;
pub mod scs;

use decode::{Insn, Size};

/// Context of a bus access: when and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// Core cycles since reset.
    pub cycles: u64,
    /// Address of the instruction making the access.
    pub pc: u32,
}

/// Why a bus access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Nothing is mapped at the address.
    #[error("nothing is mapped at {0:#010x}")]
    Unmapped(u32),
    /// A double ECC error (flash).
    #[error("double ECC error at {0:#010x}")]
    Ecc(u32),
    /// The access is not allowed (size, alignment or permission).
    #[error("access refused at {0:#010x}")]
    Refused(u32),
    /// An instruction fetch from code the caller models natively (a ROM): execution leaves
    /// the emulated core ([`Stop::Handover`]).
    #[error("handover at {0:#010x}")]
    Handover(u32),
}

impl BusError {
    /// The faulting address.
    pub fn addr(&self) -> u32 {
        match *self {
            BusError::Unmapped(a) | BusError::Ecc(a) | BusError::Refused(a) | BusError::Handover(a) => a,
        }
    }
}

/// The chip around the core: memory and peripherals. The core's system control space
/// (`0xE000_0000..0xE010_0000`) never reaches it.
pub trait Bus {
    /// Read `size` at `addr` (little-endian, zero-extended).
    fn read(&mut self, addr: u32, size: Size, ctx: Ctx) -> Result<u32, BusError>;
    /// Write the low `size` bytes of `value` at `addr`.
    fn write(&mut self, addr: u32, size: Size, value: u32, ctx: Ctx) -> Result<(), BusError>;
    /// Fetch an instruction halfword.
    fn fetch(&mut self, addr: u32) -> Result<u16, BusError>;
    /// Bring peripherals up to `cycles` (timers, transfers in flight).
    fn tick(&mut self, cycles: u64);
    /// The earliest cycle at which a peripheral changes by itself (`u64::MAX`: none).
    fn next_event(&self) -> u64;
    /// The external interrupt lines (bit n of word n / 32 = IRQ n), if they changed since the
    /// last call.
    fn take_irq_lines(&mut self) -> Option<[u32; 8]>;
    /// Changes whenever cacheable code memory changes.
    fn code_version(&self) -> u64 {
        0
    }
    /// Whether decoded instructions at `addr` may be cached.
    fn code_cacheable(&self, _addr: u32) -> bool {
        false
    }
    /// The cycle until which an instruction fetch at `addr` waits (memory busy, e.g. a flash
    /// bank programming or erasing); `cycles` (now) when it does not wait.
    fn fetch_stalled_until(&self, _addr: u32, cycles: u64) -> u64 {
        cycles
    }
}

/// Why [`Cpu::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The cycle budget is spent.
    Budget,
    /// WFI or WFE with nothing to wake it: advance time (to [`Bus::next_event`] or
    /// [`Cpu::next_event`]) or wait for an interrupt line.
    Sleep,
    /// The firmware requested a system reset (AIRCR.SYSRESETREQ).
    ResetRequest,
    /// The core locked up (a fault it cannot handle).
    Lockup {
        /// Why.
        why: String,
    },
    /// A BKPT instruction (the core is halted; resume with [`Cpu::resume_from_bkpt`]).
    Breakpoint(u8),
    /// The instruction limit of [`Cpu::run_for`] is reached (a debugger's single step).
    Stepped,
    /// Execution reached code the bus models natively ([`BusError::Handover`]); the core's
    /// registers are as they were at the branch there.
    Handover {
        /// The address reached.
        pc: u32,
    },
}

/// What the core is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Executing.
    Running,
    /// In WFI.
    WaitInterrupt,
    /// In WFE.
    WaitEvent,
    /// Halted at a BKPT.
    Halted,
    /// Locked up.
    Lockup,
}

/// Fault kinds the core raises, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultInfo {
    /// The exception taken (3 HardFault, 4 MemManage, 5 BusFault, 6 UsageFault).
    pub exception: u8,
    /// Where.
    pub pc: u32,
    /// What.
    pub what: String,
}

const NUM_EXC: usize = 16 + 240;

/// One page of decoded instructions (by halfword), with their lengths.
type CachePage = Box<[Option<(Insn, u8)>]>;

/// The core.
pub struct Cpu {
    /// R0..R15; R13 is the active stack pointer, R15 the address of the current instruction.
    r: [u32; 16],
    other_sp: u32,
    apsr: u32,
    ipsr: u16,
    itstate: u8,
    it_was_active: bool,
    /// EPSR.T is 0 (an interworking branch to an even address): the next instruction takes an
    /// INVSTATE usage fault. Holds the address of the instruction that cleared it, for reports.
    t_clear: Option<u32>,
    primask: bool,
    faultmask: bool,
    basepri: u8,
    control: u32,
    handler_mode: bool,
    event: bool,
    monitor: bool,
    state: RunState,
    cycles: u64,
    /// The system control space.
    pub scs: scs::Scs,
    pending: [u64; NUM_EXC / 64],
    active: [u64; NUM_EXC / 64],
    lines: [u32; 8],
    recheck: bool,
    next_bus_event: u64,
    cache: Vec<Option<CachePage>>,
    cache_version: u64,
    /// Instructions executed.
    pub instructions: u64,
    /// Cycles spent waiting on stalled instruction fetches ([`Bus::fetch_stalled_until`]).
    pub stalled: u64,
    /// The last fault, for reports.
    pub last_fault: Option<FaultInfo>,
    lockup_why: String,
}

/// `Cpu::t_clear` after an exception return (rather than a branch at an address).
const T_CLEAR_BY_RETURN: u32 = u32::MAX;

/// Instructions per cache page (a page covers 2 KiB of code).
const CACHE_PAGE: usize = 1024;

impl Default for Cpu {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpu {
    /// A core in reset.
    pub fn new() -> Cpu {
        Cpu {
            r: [0; 16],
            other_sp: 0,
            apsr: 0,
            ipsr: 0,
            itstate: 0,
            it_was_active: false,
            t_clear: None,
            primask: false,
            faultmask: false,
            basepri: 0,
            control: 0,
            handler_mode: false,
            event: false,
            monitor: false,
            state: RunState::Running,
            cycles: 0,
            scs: scs::Scs::new(),
            pending: [0; NUM_EXC / 64],
            active: [0; NUM_EXC / 64],
            lines: [0; 8],
            recheck: true,
            next_bus_event: 0,
            cache: Vec::new(),
            cache_version: 0,
            instructions: 0,
            stalled: 0,
            last_fault: None,
            lockup_why: String::new(),
        }
    }

    /// Reset (power-on or system reset): registers and system peripherals to their reset
    /// values, then SP and PC from the vector table at `vtor`.
    pub fn reset(&mut self, bus: &mut impl Bus, vtor: u32) -> Result<(), String> {
        let cycles = self.cycles;
        let cache = std::mem::take(&mut self.cache);
        let version = self.cache_version;
        *self = Cpu::new();
        self.cycles = cycles;
        self.cache = cache;
        self.cache_version = version;
        self.scs.reset(vtor);
        self.scs.systick_sync(self.cycles);
        let ctx = Ctx { cycles, pc: vtor };
        let sp = bus.read(vtor, Size::Word, ctx);
        let pc = bus.read(vtor + 4, Size::Word, ctx);
        match (sp, pc) {
            (Ok(sp), Ok(pc)) => {
                self.r[13] = sp & !3;
                self.r[14] = 0xFFFF_FFFF;
                self.r[15] = pc & !1;
                if pc & 1 == 0 {
                    self.lock_up(format!("reset vector {pc:#010x} has bit 0 clear (not Thumb)"));
                    return Err(self.lockup_why.clone());
                }
                Ok(())
            }
            (Err(e), _) | (_, Err(e)) => {
                self.lock_up(format!("bus fault reading the vector table at {vtor:#010x}: {e}"));
                Err(self.lockup_why.clone())
            }
        }
    }

    /// Start executing at `pc` with stack pointer `sp` in privileged thread mode using MSP,
    /// interrupts and faults unmasked: what a bootloader's jump leaves (VTOR is not changed).
    pub fn jump(&mut self, sp: u32, pc: u32) {
        self.r[13] = sp;
        self.r[15] = pc & !1;
        self.handler_mode = false;
        self.ipsr = 0;
        self.control = 0;
        self.itstate = 0;
        self.t_clear = None;
        self.active = [0; NUM_EXC / 64];
        self.state = RunState::Running;
        self.recheck = true;
    }

    /// The address of the next instruction.
    pub fn pc(&self) -> u32 {
        self.r[15]
    }

    /// A core register (0..=15; 15 reads as the next instruction's address).
    pub fn reg(&self, n: usize) -> u32 {
        self.r[n]
    }

    /// Set a core register (the debugger's write).
    pub fn set_reg(&mut self, n: usize, v: u32) {
        self.r[n] = if n == 15 { v & !1 } else { v };
    }

    /// xPSR as the debugger reads it.
    pub fn xpsr(&self) -> u32 {
        self.apsr
            | if self.t_clear.is_some() { 0 } else { 1 << 24 }
            | ((self.itstate as u32 & 3) << 25)
            | ((self.itstate as u32 >> 2) << 10)
            | self.ipsr as u32
    }

    /// Main and process stack pointers.
    pub fn sps(&self) -> (u32, u32) {
        if self.control & 2 != 0 && !self.handler_mode {
            (self.other_sp, self.r[13])
        } else {
            (self.r[13], self.other_sp)
        }
    }

    /// Cycles since the core was created.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// What the core is doing.
    pub fn state(&self) -> RunState {
        self.state
    }

    /// Why the core locked up.
    pub fn lockup_reason(&self) -> &str {
        &self.lockup_why
    }

    /// Leave a BKPT halt (the debugger resumes the core after the breakpoint).
    pub fn resume_from_bkpt(&mut self) {
        if self.state == RunState::Halted {
            self.r[15] += 2;
            self.state = RunState::Running;
        }
    }

    /// Advance time while the core sleeps (the caller fast-forwards to an event).
    pub fn idle_until(&mut self, cycles: u64) {
        if cycles > self.cycles {
            self.cycles = cycles;
        }
    }

    /// The earliest cycle at which the core's own peripherals (SysTick) need attention.
    pub fn next_event(&self) -> u64 {
        self.scs.systick_next(self.cycles)
    }

    /// Set an external interrupt line directly (for callers without a bus).
    pub fn set_irq_line(&mut self, irq: usize, level: bool) {
        let (w, b) = (irq / 32, irq % 32);
        if level {
            self.lines[w] |= 1 << b;
        } else {
            self.lines[w] &= !(1 << b);
        }
        self.recheck = true;
    }

    fn lock_up(&mut self, why: String) {
        self.state = RunState::Lockup;
        self.lockup_why = why;
        self.r[15] = 0xEFFF_FFFE;
    }

    /// Run until `budget` cycles are spent, or the core sleeps, locks up, halts or asks for a
    /// reset.
    pub fn run(&mut self, bus: &mut impl Bus, budget: u64) -> Stop {
        self.run_for(bus, budget, u64::MAX)
    }

    /// [`Cpu::run`], stopping also after `instructions` instructions ([`Stop::Stepped`]; a
    /// pending exception is entered first, as a debugger's step does with interrupts unmasked).
    pub fn run_for(&mut self, bus: &mut impl Bus, budget: u64, instructions: u64) -> Stop {
        let end = self.cycles.saturating_add(budget);
        let last = self.instructions.saturating_add(instructions);
        if bus.code_version() != self.cache_version {
            self.cache.clear();
            self.cache_version = bus.code_version();
        }
        self.next_bus_event = bus.next_event();
        loop {
            // Time-driven events: the chip's peripherals and SysTick.
            if self.cycles >= self.next_bus_event {
                bus.tick(self.cycles);
                self.next_bus_event = bus.next_event();
            }
            if let Some(lines) = bus.take_irq_lines()
                && lines != self.lines
            {
                self.lines = lines;
                self.recheck = true;
            }
            if self.scs.systick_due(self.cycles) && self.scs.systick_fire(self.cycles) {
                self.set_pending(15);
            }
            match self.state {
                RunState::Lockup => return Stop::Lockup { why: self.lockup_why.clone() },
                RunState::Halted => return Stop::Breakpoint(0),
                RunState::WaitInterrupt => {
                    if !self.wfi_wakeup() {
                        return Stop::Sleep;
                    }
                    self.state = RunState::Running;
                }
                RunState::WaitEvent => {
                    if self.event || self.wfi_wakeup() {
                        self.event = false;
                        self.state = RunState::Running;
                    } else {
                        return Stop::Sleep;
                    }
                }
                RunState::Running => {}
            }
            if self.cycles >= end {
                return Stop::Budget;
            }
            if self.recheck {
                self.recheck = false;
                if let Some(n) = self.preempting() {
                    let ret = self.r[15];
                    self.enter_exception(bus, n, ret);
                    continue;
                }
            }
            if let Some(stop) = self.step(bus) {
                return stop;
            }
            if self.scs.reset_requested {
                self.scs.reset_requested = false;
                return Stop::ResetRequest;
            }
            if self.instructions >= last {
                return Stop::Stepped;
            }
        }
    }

    /// Read memory as the debugger does (the system control space included).
    pub fn debug_read(&mut self, bus: &mut impl Bus, addr: u32, size: Size) -> Result<u32, BusError> {
        if scs::contains(addr) {
            return Ok(self.scs_read(addr, size));
        }
        bus.read(addr, size, Ctx { cycles: self.cycles, pc: self.r[15] })
    }

    fn fetch_decoded(&mut self, bus: &mut impl Bus, pc: u32) -> Result<(Insn, u8), BusError> {
        let cacheable = bus.code_cacheable(pc);
        if cacheable {
            let page = (pc >> 11) as usize;
            let idx = ((pc >> 1) as usize) & (CACHE_PAGE - 1);
            if let Some(Some(p)) = self.cache.get(page)
                && let Some(d) = p[idx]
            {
                return Ok(d);
            }
            let d = Self::decode_at(bus, pc)?;
            if self.cache.len() <= page {
                self.cache.resize_with(page + 1, || None);
            }
            let p = self.cache[page].get_or_insert_with(|| vec![None; CACHE_PAGE].into_boxed_slice());
            p[idx] = Some(d);
            return Ok(d);
        }
        Self::decode_at(bus, pc)
    }

    fn decode_at(bus: &mut impl Bus, pc: u32) -> Result<(Insn, u8), BusError> {
        let h1 = bus.fetch(pc)?;
        let h2 = if decode::is_32bit(h1) { bus.fetch(pc + 2)? } else { 0 };
        Ok(decode::decode(h1, h2))
    }

    /// Execute one instruction (or take a fault instead).
    fn step(&mut self, bus: &mut impl Bus) -> Option<Stop> {
        let pc = self.r[15];
        if let Some(from) = self.t_clear {
            // EPSR.T = 0: the instruction cannot execute (ARMv7-M ARM A2.3.1 BXWritePC, B1.5.14).
            self.scs.cfsr |= 1 << 17; // INVSTATE
            let why = if from == T_CLEAR_BY_RETURN {
                "an exception return whose stacked xPSR has T clear".to_string()
            } else {
                format!("the branch at {from:#010x} went to an address with bit 0 clear")
            };
            return self.fault(bus, 6, pc, format!("execution at {pc:#010x} with EPSR.T clear: {why} (INVSTATE)"));
        }
        let until = bus.fetch_stalled_until(pc, self.cycles);
        if until > self.cycles {
            // The fetch waits: time passes, peripherals run, interrupts pend; then try again.
            self.stalled += until - self.cycles;
            self.cycles = until;
            return None;
        }
        let (insn, len) = match self.fetch_decoded(bus, pc) {
            Ok(d) => d,
            Err(BusError::Handover(pc)) => return Some(Stop::Handover { pc }),
            Err(e) => {
                // Instruction fetch fault: MemManage (execute never) or BusFault (prefetch abort).
                self.scs.cfsr |= 1 << 8; // IBUSERR
                return self.fault(bus, 5, pc, format!("instruction fetch at {pc:#010x}: {e}"));
            }
        };
        self.instructions += 1;
        self.cycles += 1;
        exec::execute(self, bus, insn, pc, len)
    }

    // ---- exceptions -----------------------------------------------------------------------

    fn set_pending(&mut self, n: usize) {
        self.pending[n / 64] |= 1 << (n % 64);
        self.recheck = true;
    }

    fn is_pending(&self, n: usize) -> bool {
        self.pending[n / 64] >> (n % 64) & 1 != 0 || (n >= 16 && self.line(n - 16) && !self.is_active(n))
    }

    fn clear_pending(&mut self, n: usize) {
        self.pending[n / 64] &= !(1 << (n % 64));
    }

    fn is_active(&self, n: usize) -> bool {
        self.active[n / 64] >> (n % 64) & 1 != 0
    }

    fn line(&self, irq: usize) -> bool {
        irq < 240 && self.lines[irq / 32] >> (irq % 32) & 1 != 0
    }

    /// Priority of exception `n` (-3..=255).
    fn priority(&self, n: usize) -> i32 {
        match n {
            1 => -3,
            2 => -2,
            3 => -1,
            4..=15 => self.scs.shpr[n - 4] as i32,
            _ => self.scs.nvic_ipr[n - 16] as i32,
        }
    }

    fn group(&self, pri: i32) -> i32 {
        if pri < 0 {
            return pri;
        }
        let mask = !((2u32 << self.scs.prigroup()) - 1) & 0xFF;
        (pri as u32 & mask) as i32
    }

    /// The current execution priority (256: thread mode, nothing active or masked).
    fn execution_priority(&self, with_masks: bool) -> i32 {
        let mut p = 256;
        for w in 0..self.active.len() {
            let mut bits = self.active[w];
            while bits != 0 {
                let n = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                p = p.min(self.group(self.priority(n)));
            }
        }
        if with_masks {
            if self.basepri != 0 {
                p = p.min(self.group(self.basepri as i32));
            }
            if self.primask {
                p = p.min(0);
            }
            if self.faultmask {
                p = p.min(-1);
            }
        }
        p
    }

    fn enabled(&self, n: usize) -> bool {
        match n {
            2 | 3 | 11 | 12 | 14 | 15 => true,
            4 => self.scs.shcsr & (1 << 16) != 0,
            5 => self.scs.shcsr & (1 << 17) != 0,
            6 => self.scs.shcsr & (1 << 18) != 0,
            n if n >= 16 => self.scs.nvic_enabled(n - 16),
            _ => false,
        }
    }

    /// The pending, enabled exception with the highest priority: (number, group priority).
    fn best_pending(&self) -> Option<(usize, i32)> {
        let mut best: Option<(usize, i32, i32)> = None;
        let mut consider = |n: usize, this: &Cpu| {
            if !this.enabled(n) || this.is_active(n) && n < 16 {
                return;
            }
            let pri = this.priority(n);
            let g = this.group(pri);
            if best.is_none_or(|(_, bg, bp)| g < bg || (g == bg && pri < bp)) {
                best = Some((n, g, pri));
            }
        };
        for w in 0..self.pending.len() {
            let mut bits = self.pending[w];
            while bits != 0 {
                let n = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                consider(n, self);
            }
        }
        for w in 0..8 {
            let mut bits = self.lines[w];
            while bits != 0 {
                let irq = w * 32 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if !self.is_active(irq + 16) {
                    consider(irq + 16, self);
                }
            }
        }
        best.map(|(n, g, _)| (n, g))
    }

    /// The exception that preempts now, if any.
    fn preempting(&self) -> Option<usize> {
        let (n, g) = self.best_pending()?;
        (g < self.execution_priority(true)).then_some(n)
    }

    /// WFI wakes on an exception that would preempt if PRIMASK were clear.
    fn wfi_wakeup(&self) -> bool {
        let Some((_, g)) = self.best_pending() else { return false };
        let mut p = self.execution_priority(false);
        if self.basepri != 0 {
            p = p.min(self.group(self.basepri as i32));
        }
        g < p
    }

    fn xpsr_for_stack(&self) -> u32 {
        self.xpsr()
    }

    fn enter_exception(&mut self, bus: &mut impl Bus, n: usize, return_addr: u32) {
        self.cycles += 12;
        // The frame goes on the active stack.
        let mut sp = self.r[13];
        let mut xpsr = self.xpsr_for_stack();
        if self.scs.ccr & (1 << 9) != 0 && sp & 4 != 0 {
            sp -= 4;
            xpsr |= 1 << 9;
        }
        sp = sp.wrapping_sub(0x20);
        let frame = [self.r[0], self.r[1], self.r[2], self.r[3], self.r[12], self.r[14], return_addr, xpsr];
        let ctx = Ctx { cycles: self.cycles, pc: return_addr };
        for (i, v) in frame.iter().enumerate() {
            if let Err(e) = bus.write(sp + 4 * i as u32, Size::Word, *v, ctx) {
                self.lock_up(format!(
                    "bus fault stacking exception {n} at {:#010x} ({e}): stack pointer {:#010x} is outside RAM",
                    sp + 4 * i as u32,
                    self.r[13]
                ));
                return;
            }
        }
        self.r[13] = sp;
        let exc_return = if self.handler_mode {
            0xFFFF_FFF1
        } else if self.control & 2 != 0 {
            0xFFFF_FFFD
        } else {
            0xFFFF_FFF9
        };
        // Handler mode uses MSP.
        if !self.handler_mode && self.control & 2 != 0 {
            std::mem::swap(&mut self.r[13], &mut self.other_sp);
        }
        self.control &= !2;
        self.handler_mode = true;
        self.r[14] = exc_return;
        self.ipsr = n as u16;
        self.itstate = 0;
        self.t_clear = None;
        self.active[n / 64] |= 1 << (n % 64);
        self.clear_pending(n);
        self.event = true;
        self.monitor = false;
        self.recheck = true;
        let vector = self.scs.vtor.wrapping_add(4 * n as u32);
        match bus.read(vector, Size::Word, ctx) {
            Ok(handler) if handler & 1 == 1 => self.r[15] = handler & !1,
            Ok(handler) => {
                self.lock_up(format!(
                    "exception {n}'s vector at {vector:#010x} is {handler:#010x}: not a Thumb address (blank or wrong vector table)"
                ));
            }
            Err(e) => self.lock_up(format!("bus fault reading exception {n}'s vector at {vector:#010x}: {e}")),
        }
    }

    fn exception_return(&mut self, bus: &mut impl Bus, exc_return: u32) -> Option<Stop> {
        self.cycles += 12;
        let n = self.ipsr as usize;
        if !self.is_active(n) {
            return self.fault(bus, 6, self.r[15], format!("exception return from {n}, which is not active (INVPC)"));
        }
        self.active[n / 64] &= !(1 << (n % 64));
        let to_thread = exc_return & 8 != 0;
        let psp = exc_return & 4 != 0;
        match exc_return & 0xF {
            0x1 | 0x9 | 0xD => {}
            _ => return self.fault(bus, 6, self.r[15], format!("invalid EXC_RETURN {exc_return:#010x} (INVPC)")),
        }
        // Select the frame's stack.
        if to_thread && psp {
            std::mem::swap(&mut self.r[13], &mut self.other_sp);
            self.control |= 2;
        }
        let sp = self.r[13];
        let ctx = Ctx { cycles: self.cycles, pc: self.r[15] };
        let mut frame = [0u32; 8];
        for (i, slot) in frame.iter_mut().enumerate() {
            match bus.read(sp + 4 * i as u32, Size::Word, ctx) {
                Ok(v) => *slot = v,
                Err(e) => {
                    self.lock_up(format!("bus fault unstacking at {:#010x}: {e}", sp + 4 * i as u32));
                    return Some(Stop::Lockup { why: self.lockup_why.clone() });
                }
            }
        }
        let xpsr = frame[7];
        self.r[13] = sp + 0x20 + if xpsr & (1 << 9) != 0 { 4 } else { 0 };
        self.r[0] = frame[0];
        self.r[1] = frame[1];
        self.r[2] = frame[2];
        self.r[3] = frame[3];
        self.r[12] = frame[4];
        self.r[14] = frame[5];
        self.r[15] = frame[6] & !1;
        self.apsr = xpsr & 0xF80F_0000;
        self.itstate = (((xpsr >> 10) & 0x3F) << 2 | ((xpsr >> 25) & 3)) as u8;
        // EPSR.T from the frame: a frame with T clear faults (INVSTATE) on its first instruction.
        self.t_clear = if xpsr & (1 << 24) == 0 { Some(T_CLEAR_BY_RETURN) } else { None };
        self.handler_mode = !to_thread;
        self.ipsr = if to_thread { 0 } else { (xpsr & 0x1FF) as u16 };
        if !to_thread {
            // Nested return: the IPSR of the frame names the preempted handler.
            self.ipsr = (xpsr & 0x1FF) as u16;
        }
        self.event = true;
        self.monitor = false;
        self.recheck = true;
        if self.faultmask && n != 2 {
            self.faultmask = false;
        }
        None
    }

    /// Take a synchronous fault `exc` (4 MemManage, 5 BusFault, 6 UsageFault, 11 SVCall) for
    /// the instruction at `pc`; escalate to HardFault when it cannot be taken; lock up in a
    /// HardFault or NMI.
    fn fault(&mut self, bus: &mut impl Bus, exc: usize, pc: u32, what: String) -> Option<Stop> {
        let exec = self.execution_priority(true);
        let mut n = exc;
        if n != 3 && (!self.enabled(n) || self.group(self.priority(n)) >= exec) {
            n = 3;
            self.scs.hfsr |= 1 << 30; // FORCED
        }
        if n == 3 && exec <= -1 {
            let why = format!("{what}, while in HardFault or NMI: lockup");
            self.last_fault = Some(FaultInfo { exception: exc as u8, pc, what: what.clone() });
            self.lock_up(why);
            return Some(Stop::Lockup { why: self.lockup_why.clone() });
        }
        self.last_fault = Some(FaultInfo { exception: exc as u8, pc, what });
        // Synchronous exceptions return to the faulting instruction (SVC: the next one).
        let ret = if exc == 11 { pc + 2 } else { pc };
        self.itstate = if exc == 11 { self.itstate } else { 0 };
        self.enter_exception(bus, n, ret);
        if self.state == RunState::Lockup {
            return Some(Stop::Lockup { why: self.lockup_why.clone() });
        }
        None
    }

    // ---- flags and registers (for exec) ---------------------------------------------------

    fn read(&self, n: u8, pc: u32) -> u32 {
        if n == 15 { pc.wrapping_add(4) } else { self.r[n as usize] }
    }

    fn flag_c(&self) -> bool {
        self.apsr & (1 << 29) != 0
    }

    fn set_nzcv(&mut self, n: bool, z: bool, c: bool, v: bool) {
        self.apsr =
            (self.apsr & 0x0FFF_FFFF) | (n as u32) << 31 | (z as u32) << 30 | (c as u32) << 29 | (v as u32) << 28;
    }

    fn set_nzc(&mut self, result: u32, c: bool) {
        let v = self.apsr & (1 << 28) != 0;
        self.set_nzcv(result >> 31 == 1, result == 0, c, v);
    }

    fn in_it(&self) -> bool {
        self.itstate & 0xF != 0
    }

    fn cond_passed(&self, cond: u8) -> bool {
        let n = self.apsr & (1 << 31) != 0;
        let z = self.apsr & (1 << 30) != 0;
        let c = self.apsr & (1 << 29) != 0;
        let v = self.apsr & (1 << 28) != 0;
        let r = match cond >> 1 {
            0 => z,
            1 => c,
            2 => n,
            3 => v,
            4 => c && !z,
            5 => n == v,
            6 => !z && n == v,
            _ => true,
        };
        if cond & 1 == 1 && cond != 0xF { !r } else { r }
    }

    fn advance_it(&mut self) {
        if self.itstate & 0x7 == 0 {
            self.itstate = 0;
        } else {
            self.itstate = (self.itstate & 0xE0) | ((self.itstate << 1) & 0x1F);
        }
    }
}
