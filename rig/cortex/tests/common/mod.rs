//! A test machine around the core: flash at `0x0800_0000` (vector table, code, handlers), RAM
//! at `0x2000_0000`, everything else a bus fault.
//!
//! Programs are Thumb-2 machine code assembled with `llvm-mc -triple=thumbv7em-none-eabi
//! -mattr=+dsp` and committed as halfwords with their assembly text, so the tests need no
//! assembler. Expected values in the tests come from the ARMv7-M Architecture Reference Manual
//! (DDI 0403E), not from running the emulator.
//!
//! Layout:
//! * `0x0800_0000` vector table: initial SP = top of RAM, reset = [`CODE`], every other vector
//!   a stub `bkpt #(0x80 + n)` at [`STUBS`] + 2n, so an unexpected exception n stops the run
//!   with `Stop::Breakpoint(0x80 + n)`.
//! * [`CODE`]: the program under test.
//! * [`HANDLERS`] + `0x100 * n`: the handler installed for exception n.

#![allow(dead_code)]

use bootproof_cortex::decode::Size;
use bootproof_cortex::{Bus, BusError, Cpu, Ctx, Stop};

pub const FLASH: u32 = 0x0800_0000;
pub const FLASH_SIZE: usize = 0x1_0000;
pub const RAM: u32 = 0x2000_0000;
pub const RAM_SIZE: usize = 0x1_0000;
/// Initial main stack pointer (8-byte aligned).
pub const STACK_TOP: u32 = RAM + RAM_SIZE as u32;
/// Where the program under test is loaded (the reset vector).
pub const CODE: u32 = FLASH + 0x200;
/// Default handler stubs: `bkpt #(0x80 + n)` for exception n.
pub const STUBS: u32 = FLASH + 0x1000;
/// Installed handlers: exception n at `HANDLERS + 0x100 * n`.
pub const HANDLERS: u32 = FLASH + 0x2000;
/// Vector table entries (16 system exceptions and 32 interrupts).
pub const NUM_VECTORS: usize = 16 + 32;
/// The `bkpt` immediate of an unexpected exception's stub is `UNEXPECTED + n`.
pub const UNEXPECTED: u8 = 0x80;

/// Core system control space registers used by the tests (ARMv7-M ARM B3.2.2, B3.4).
pub const NVIC_ISER0: u32 = 0xE000_E100;
pub const NVIC_ISPR0: u32 = 0xE000_E200;
pub const ICSR: u32 = 0xE000_ED04;
pub const CCR: u32 = 0xE000_ED14;
pub const SHCSR: u32 = 0xE000_ED24;
pub const CFSR: u32 = 0xE000_ED28;
pub const HFSR: u32 = 0xE000_ED2C;
pub const SYST_CSR: u32 = 0xE000_E010;

/// Flash and RAM; everything else is unmapped.
pub struct TestBus {
    pub flash: Vec<u8>,
    pub ram: Vec<u8>,
}

impl TestBus {
    fn at(&mut self, addr: u32, len: usize) -> Option<(&mut [u8], bool)> {
        let (mem, base, writable) = if (FLASH..FLASH + FLASH_SIZE as u32).contains(&addr) {
            (&mut self.flash, FLASH, false)
        } else if (RAM..RAM + RAM_SIZE as u32).contains(&addr) {
            (&mut self.ram, RAM, true)
        } else {
            return None;
        };
        let off = (addr - base) as usize;
        if off + len > mem.len() {
            return None;
        }
        Some((&mut mem[off..off + len], writable))
    }
}

impl Bus for TestBus {
    fn read(&mut self, addr: u32, size: Size, _ctx: Ctx) -> Result<u32, BusError> {
        let n = size.bytes() as usize;
        if !addr.is_multiple_of(size.bytes()) {
            return Err(BusError::Refused(addr));
        }
        let (bytes, _) = self.at(addr, n).ok_or(BusError::Unmapped(addr))?;
        Ok(bytes.iter().rev().fold(0, |acc, &b| (acc << 8) | b as u32))
    }

    fn write(&mut self, addr: u32, size: Size, value: u32, _ctx: Ctx) -> Result<(), BusError> {
        let n = size.bytes() as usize;
        if !addr.is_multiple_of(size.bytes()) {
            return Err(BusError::Refused(addr));
        }
        let (bytes, writable) = self.at(addr, n).ok_or(BusError::Unmapped(addr))?;
        if !writable {
            return Err(BusError::Refused(addr));
        }
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (value >> (8 * i)) as u8;
        }
        Ok(())
    }

    fn fetch(&mut self, addr: u32) -> Result<u16, BusError> {
        let (bytes, _) = self.at(addr, 2).ok_or(BusError::Unmapped(addr))?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn tick(&mut self, _cycles: u64) {}

    fn next_event(&self) -> u64 {
        u64::MAX
    }

    fn take_irq_lines(&mut self) -> Option<[u32; 8]> {
        None
    }
}

/// The core and its bus.
pub struct Machine {
    pub cpu: Cpu,
    pub bus: TestBus,
}

/// Cycle budget of [`Machine::run`].
pub const BUDGET: u64 = 100_000;

impl Machine {
    /// A machine with `code` at [`CODE`], reset (SP = [`STACK_TOP`], PC = [`CODE`]).
    pub fn new(code: &[u16]) -> Machine {
        let bus = TestBus { flash: vec![0xFF; FLASH_SIZE], ram: vec![0; RAM_SIZE] };
        let mut m = Machine { cpu: Cpu::new(), bus };
        m.put_flash32(FLASH, STACK_TOP);
        m.put_flash32(FLASH + 4, CODE | 1);
        for n in 2..NUM_VECTORS {
            let stub = STUBS + 2 * n as u32;
            // bkpt #(0x80 + n): 0xBE00 | imm8.
            m.put_code(stub, &[0xBE00 | (UNEXPECTED as u16 + n as u16)]);
            m.put_flash32(FLASH + 4 * n as u32, stub | 1);
        }
        m.put_code(CODE, code);
        m.cpu.reset(&mut m.bus, FLASH).expect("reset");
        m
    }

    /// Install `code` as the handler of exception `n`.
    pub fn handler(mut self, n: usize, code: &[u16]) -> Machine {
        assert!(n < NUM_VECTORS && code.len() * 2 <= 0x100);
        let at = HANDLERS + 0x100 * n as u32;
        self.put_code(at, code);
        self.put_flash32(FLASH + 4 * n as u32, at | 1);
        self
    }

    fn put_flash32(&mut self, addr: u32, v: u32) {
        let off = (addr - FLASH) as usize;
        self.bus.flash[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put_code(&mut self, addr: u32, code: &[u16]) {
        let off = (addr - FLASH) as usize;
        for (i, h) in code.iter().enumerate() {
            self.bus.flash[off + 2 * i..off + 2 * i + 2].copy_from_slice(&h.to_le_bytes());
        }
    }

    /// Set registers.
    pub fn set(&mut self, regs: &[(usize, u32)]) -> &mut Machine {
        for &(n, v) in regs {
            self.cpu.set_reg(n, v);
        }
        self
    }

    /// Run until the core stops (or [`BUDGET`] cycles pass).
    pub fn run(&mut self) -> Stop {
        self.cpu.run(&mut self.bus, BUDGET)
    }

    /// Run and expect `bkpt #imm`.
    pub fn run_to_bkpt(&mut self, imm: u8) -> &mut Machine {
        let stop = self.run();
        assert_eq!(
            stop,
            Stop::Breakpoint(imm),
            "expected bkpt #{imm}; pc {:#010x}, xpsr {:#010x}, last fault {:?}",
            self.cpu.pc(),
            self.cpu.xpsr(),
            self.cpu.last_fault
        );
        self
    }

    /// Leave a `bkpt` halt.
    pub fn resume(&mut self) -> &mut Machine {
        self.cpu.resume_from_bkpt();
        self
    }

    pub fn r(&self, n: usize) -> u32 {
        self.cpu.reg(n)
    }

    /// APSR.NZCV as a nibble (N is bit 3, V bit 0).
    pub fn nzcv(&self) -> u32 {
        self.cpu.xpsr() >> 28
    }

    /// APSR.Q.
    pub fn q(&self) -> bool {
        self.cpu.xpsr() & (1 << 27) != 0
    }

    /// APSR.GE[3:0].
    pub fn ge(&self) -> u32 {
        (self.cpu.xpsr() >> 16) & 0xF
    }

    /// IPSR: the active exception number (0 in thread mode).
    pub fn ipsr(&self) -> u32 {
        self.cpu.xpsr() & 0x1FF
    }

    pub fn read32(&mut self, addr: u32) -> u32 {
        self.cpu.debug_read(&mut self.bus, addr, Size::Word).expect("readable")
    }

    pub fn write32(&mut self, addr: u32, v: u32) {
        let off = (addr - RAM) as usize;
        self.bus.ram[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// The eight words of an exception frame at `sp`: R0-R3, R12, LR, return address, xPSR.
    pub fn frame(&mut self, sp: u32) -> [u32; 8] {
        std::array::from_fn(|i| self.read32(sp + 4 * i as u32))
    }
}
