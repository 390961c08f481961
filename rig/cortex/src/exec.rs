//! Instruction semantics (ARMv7-M ARM, A7.7).

use crate::decode::{DpOp, Insn, MulOp, Offset, Operand, ParKind, ParOp, SetFlags, Shift, Size};
use crate::{Bus, BusError, Cpu, Ctx, RunState, Stop};

/// Shift_C: the shifted value and the carry out.
pub(crate) fn shift_c(value: u32, shift: Shift, amount: u32, carry_in: bool) -> (u32, bool) {
    if amount == 0 && shift != Shift::Rrx {
        return (value, carry_in);
    }
    match shift {
        Shift::Lsl => match amount {
            1..=31 => (value << amount, (value >> (32 - amount)) & 1 == 1),
            32 => (0, value & 1 == 1),
            _ => (0, false),
        },
        Shift::Lsr => match amount {
            1..=31 => (value >> amount, (value >> (amount - 1)) & 1 == 1),
            32 => (0, value >> 31 == 1),
            _ => (0, false),
        },
        Shift::Asr => match amount {
            1..=31 => (((value as i32) >> amount) as u32, (value >> (amount - 1)) & 1 == 1),
            _ => {
                let neg = value >> 31 == 1;
                (if neg { u32::MAX } else { 0 }, neg)
            }
        },
        Shift::Ror => {
            let m = amount % 32;
            let r = if m == 0 { value } else { value.rotate_right(m) };
            (r, r >> 31 == 1)
        }
        Shift::Rrx => (((carry_in as u32) << 31) | (value >> 1), value & 1 == 1),
    }
}

/// AddWithCarry: result, carry, overflow.
pub(crate) fn add_with_carry(x: u32, y: u32, carry_in: bool) -> (u32, bool, bool) {
    let unsigned = x as u64 + y as u64 + carry_in as u64;
    let signed = x as i32 as i64 + y as i32 as i64 + carry_in as i64;
    let result = unsigned as u32;
    (result, unsigned >> 32 != 0, result as i32 as i64 != signed)
}

fn signed_sat(v: i64, bits: u32) -> (i32, bool) {
    let max = (1i64 << (bits - 1)) - 1;
    let min = -(1i64 << (bits - 1));
    if v > max {
        (max as i32, true)
    } else if v < min {
        (min as i32, true)
    } else {
        (v as i32, false)
    }
}

fn unsigned_sat(v: i64, bits: u32) -> (u32, bool) {
    let max = (1i64 << bits) - 1;
    if v > max {
        (max as u32, true)
    } else if v < 0 {
        (0, true)
    } else {
        (v as u32, false)
    }
}

impl Cpu {
    fn operand2(&self, op2: Operand, pc: u32) -> (u32, bool) {
        let c = self.flag_c();
        match op2 {
            Operand::Imm { value, carry } => (value, carry.unwrap_or(c)),
            Operand::Reg { rm, shift, amount } => shift_c(self.read(rm, pc), shift, amount as u32, c),
            Operand::RegReg { rm, shift, rs } => shift_c(self.read(rm, pc), shift, self.read(rs, pc) & 0xFF, c),
        }
    }

    fn mem_read(&mut self, bus: &mut impl Bus, addr: u32, size: Size, pc: u32) -> Result<u32, BusError> {
        if crate::scs::contains(addr) {
            return Ok(self.scs_read(addr, size));
        }
        let ctx = Ctx { cycles: self.cycles, pc };
        let align = size.bytes() - 1;
        if addr & align == 0 {
            return bus.read(addr, size, ctx);
        }
        // Unaligned: byte by byte (allowed for LDR/LDRH; CCR.UNALIGN_TRP not set).
        let mut v = 0;
        for i in 0..size.bytes() {
            v |= bus.read(addr.wrapping_add(i), Size::Byte, ctx)? << (8 * i);
        }
        Ok(v)
    }

    fn mem_write(&mut self, bus: &mut impl Bus, addr: u32, size: Size, value: u32, pc: u32) -> Result<(), BusError> {
        if crate::scs::contains(addr) {
            self.scs_write(addr, size, value);
            return Ok(());
        }
        let ctx = Ctx { cycles: self.cycles, pc };
        let align = size.bytes() - 1;
        if addr & align == 0 {
            return bus.write(addr, size, value, ctx);
        }
        for i in 0..size.bytes() {
            bus.write(addr.wrapping_add(i), Size::Byte, (value >> (8 * i)) & 0xFF, ctx)?;
        }
        Ok(())
    }

    /// A data abort: BusFault (precise) with the address, unless BFHFNMIGN lets a handler at
    /// priority -1 or -2 ignore it (the load then returns zero).
    fn data_abort(&mut self, bus: &mut impl Bus, e: BusError, pc: u32, load: bool) -> Result<u32, Option<Stop>> {
        if self.scs.ccr & (1 << 8) != 0 && self.execution_priority(true) < 0 {
            return Ok(0);
        }
        self.scs.cfsr |= (1 << 9) | (1 << 15); // PRECISERR, BFARVALID
        self.scs.bfar = e.addr();
        let what = format!("{} {:#010x}: {e}", if load { "load from" } else { "store to" }, e.addr());
        Err(self.fault(bus, 5, pc, what))
    }

    fn usage_fault(&mut self, bus: &mut impl Bus, bit: u32, pc: u32, what: String) -> Option<Stop> {
        self.scs.cfsr |= 1 << (16 + bit);
        self.fault(bus, 6, pc, what)
    }

    /// BXWritePC / LoadWritePC: an interworking branch, or an exception return.
    fn bx_write_pc(&mut self, bus: &mut impl Bus, addr: u32, pc: u32) -> Option<Stop> {
        if self.handler_mode && addr >> 28 == 0xF {
            return self.exception_return(bus, addr);
        }
        // EPSR.T = address<0>: with T clear the branch completes and the next instruction takes
        // an INVSTATE usage fault (A2.3.1 BXWritePC).
        if addr & 1 == 0 {
            self.t_clear = Some(pc);
        }
        self.r[15] = addr & !1;
        None
    }
}

fn pc_aligned(pc: u32) -> u32 {
    (pc + 4) & !3
}

macro_rules! abort {
    ($cpu:expr, $bus:expr, $e:expr, $pc:expr, $load:expr) => {
        match $cpu.data_abort($bus, $e, $pc, $load) {
            Ok(v) => v,
            Err(stop) => return stop,
        }
    };
}

/// Execute `insn` at `pc` (length `len`). Returns a stop reason, or `None` to go on.
pub(crate) fn execute(cpu: &mut Cpu, bus: &mut impl Bus, insn: Insn, pc: u32, len: u8) -> Option<Stop> {
    let next = pc.wrapping_add(len as u32);
    // Conditional execution inside an IT block.
    cpu.it_was_active = cpu.in_it();
    if cpu.it_was_active {
        let cond = cpu.itstate >> 4;
        let passed = cpu.cond_passed(cond);
        cpu.advance_it();
        if !passed {
            cpu.r[15] = next;
            return None;
        }
    }
    cpu.r[15] = next;
    match insn {
        Insn::Dp { op, s, rd, rn, op2, branch_pc } => {
            let (b, carry) = cpu.operand2(op2, pc);
            let a = cpu.read(rn, pc);
            let setflags = match s {
                SetFlags::Always => true,
                SetFlags::Never => false,
                // The IT state was advanced already: "in an IT block" means the one this
                // instruction belonged to.
                SetFlags::OutsideIt => !cpu.it_was_active,
            };
            let c_in = cpu.flag_c();
            let (result, arith) = match op {
                DpOp::And | DpOp::Tst => (a & b, None),
                DpOp::Eor | DpOp::Teq => (a ^ b, None),
                DpOp::Orr => (a | b, None),
                DpOp::Orn => (a | !b, None),
                DpOp::Bic => (a & !b, None),
                DpOp::Mov => (b, None),
                DpOp::Mvn => (!b, None),
                DpOp::Add | DpOp::Cmn => {
                    let (r, c, v) = add_with_carry(a, b, false);
                    (r, Some((c, v)))
                }
                DpOp::Adc => {
                    let (r, c, v) = add_with_carry(a, b, c_in);
                    (r, Some((c, v)))
                }
                DpOp::Sub | DpOp::Cmp => {
                    let (r, c, v) = add_with_carry(a, !b, true);
                    (r, Some((c, v)))
                }
                DpOp::Sbc => {
                    let (r, c, v) = add_with_carry(a, !b, c_in);
                    (r, Some((c, v)))
                }
                DpOp::Rsb => {
                    let (r, c, v) = add_with_carry(!a, b, true);
                    (r, Some((c, v)))
                }
            };
            let writes = !matches!(op, DpOp::Tst | DpOp::Teq | DpOp::Cmp | DpOp::Cmn);
            if writes && rd == 15 {
                // ADD PC / MOV PC (16-bit): a branch. Other encodings with Rd = PC are
                // unpredictable; treat them alike.
                let _ = branch_pc;
                cpu.r[15] = result & !1;
                cpu.cycles += 1;
                return None;
            }
            if writes {
                cpu.r[rd as usize] = result;
            }
            if setflags || !writes {
                match arith {
                    Some((c, v)) => cpu.set_nzcv(result >> 31 == 1, result == 0, c, v),
                    None => cpu.set_nzc(result, carry),
                }
            }
            None
        }
        Insn::AddImm { rd, rn, imm } => {
            let base = if rn == 15 { pc_aligned(pc) } else { cpu.r[rn as usize] };
            cpu.r[rd as usize] = base.wrapping_add(imm as u32);
            None
        }
        Insn::Mov16 { rd, imm, top } => {
            let r = &mut cpu.r[rd as usize];
            *r = if top { (*r & 0xFFFF) | ((imm as u32) << 16) } else { imm as u32 };
            None
        }
        Insn::Mem { load, size, signed, rt, rn, offset, index, wback } => {
            let base = if rn == 15 { pc_aligned(pc) } else { cpu.r[rn as usize] };
            let off = match offset {
                Offset::Imm(i) => i as u32,
                Offset::Reg { rm, lsl } => cpu.read(rm, pc) << lsl,
            };
            let offset_addr = base.wrapping_add(off);
            let addr = if index { offset_addr } else { base };
            if load {
                let raw = match cpu.mem_read(bus, addr, size, pc) {
                    Ok(v) => v,
                    Err(e) => abort!(cpu, bus, e, pc, true),
                };
                let v = match (size, signed) {
                    (Size::Byte, true) => raw as u8 as i8 as i32 as u32,
                    (Size::Half, true) => raw as u16 as i16 as i32 as u32,
                    _ => raw,
                };
                if wback && rn != 15 {
                    cpu.r[rn as usize] = offset_addr;
                }
                if rt == 15 {
                    cpu.cycles += 1;
                    return cpu.bx_write_pc(bus, v, pc);
                }
                cpu.r[rt as usize] = v;
            } else {
                let v = cpu.read(rt, pc);
                if let Err(e) = cpu.mem_write(bus, addr, size, v, pc) {
                    abort!(cpu, bus, e, pc, false);
                }
                if wback {
                    cpu.r[rn as usize] = offset_addr;
                }
            }
            None
        }
        Insn::MemDual { load, rt, rt2, rn, imm, index, wback } => {
            let base = if rn == 15 { pc_aligned(pc) } else { cpu.r[rn as usize] };
            let offset_addr = base.wrapping_add(imm as u32);
            let addr = if index { offset_addr } else { base };
            cpu.cycles += 1;
            if addr & 3 != 0 {
                return cpu.usage_fault(bus, 8, pc, format!("LDRD/STRD at unaligned {addr:#010x} (UNALIGNED)"));
            }
            if load {
                let lo = match cpu.mem_read(bus, addr, Size::Word, pc) {
                    Ok(v) => v,
                    Err(e) => abort!(cpu, bus, e, pc, true),
                };
                let hi = match cpu.mem_read(bus, addr + 4, Size::Word, pc) {
                    Ok(v) => v,
                    Err(e) => abort!(cpu, bus, e, pc, true),
                };
                cpu.r[rt as usize] = lo;
                cpu.r[rt2 as usize] = hi;
            } else {
                let (lo, hi) = (cpu.read(rt, pc), cpu.read(rt2, pc));
                if let Err(e) = cpu.mem_write(bus, addr, Size::Word, lo, pc) {
                    abort!(cpu, bus, e, pc, false);
                }
                if let Err(e) = cpu.mem_write(bus, addr + 4, Size::Word, hi, pc) {
                    abort!(cpu, bus, e, pc, false);
                }
            }
            if wback {
                cpu.r[rn as usize] = offset_addr;
            }
            None
        }
        Insn::Multi { load, rn, list, increment, wback } => {
            let n = list.count_ones();
            let base = cpu.r[rn as usize];
            let start = if increment { base } else { base.wrapping_sub(4 * n) };
            if start & 3 != 0 {
                return cpu.usage_fault(bus, 8, pc, format!("LDM/STM at unaligned {start:#010x} (UNALIGNED)"));
            }
            cpu.cycles += (n as u64).saturating_sub(2);
            let mut addr = start;
            let mut new_pc = None;
            for r in 0..16u8 {
                if list & (1 << r) == 0 {
                    continue;
                }
                if load {
                    let v = match cpu.mem_read(bus, addr, Size::Word, pc) {
                        Ok(v) => v,
                        Err(e) => abort!(cpu, bus, e, pc, true),
                    };
                    if r == 15 {
                        new_pc = Some(v);
                    } else {
                        cpu.r[r as usize] = v;
                    }
                } else {
                    let v = cpu.read(r, pc);
                    if let Err(e) = cpu.mem_write(bus, addr, Size::Word, v, pc) {
                        abort!(cpu, bus, e, pc, false);
                    }
                }
                addr = addr.wrapping_add(4);
            }
            if wback && !(load && list & (1 << rn) != 0) {
                cpu.r[rn as usize] = if increment { base.wrapping_add(4 * n) } else { start };
            }
            if let Some(v) = new_pc {
                cpu.cycles += 1;
                return cpu.bx_write_pc(bus, v, pc);
            }
            None
        }
        Insn::Exclusive { load, size, rt, rd, rn, imm } => {
            let addr = cpu.r[rn as usize].wrapping_add(imm);
            if addr & (size.bytes() - 1) != 0 {
                return cpu.usage_fault(bus, 8, pc, format!("exclusive access at unaligned {addr:#010x} (UNALIGNED)"));
            }
            if load {
                let v = match cpu.mem_read(bus, addr, size, pc) {
                    Ok(v) => v,
                    Err(e) => abort!(cpu, bus, e, pc, true),
                };
                cpu.r[rt as usize] = v;
                cpu.monitor = true;
            } else if cpu.monitor {
                let v = cpu.read(rt, pc);
                if let Err(e) = cpu.mem_write(bus, addr, size, v, pc) {
                    abort!(cpu, bus, e, pc, false);
                }
                cpu.r[rd as usize] = 0;
                cpu.monitor = false;
            } else {
                cpu.r[rd as usize] = 1;
            }
            None
        }
        Insn::Clrex => {
            cpu.monitor = false;
            None
        }
        Insn::TableBranch { rn, rm, half } => {
            let base = cpu.read(rn, pc);
            let index = cpu.read(rm, pc);
            let (addr, size) =
                if half { (base.wrapping_add(index << 1), Size::Half) } else { (base.wrapping_add(index), Size::Byte) };
            let off = match cpu.mem_read(bus, addr, size, pc) {
                Ok(v) => v,
                Err(e) => abort!(cpu, bus, e, pc, true),
            };
            cpu.r[15] = pc.wrapping_add(4).wrapping_add(off * 2);
            cpu.cycles += 2;
            None
        }
        Insn::B { cond, imm } => {
            if cond.0 == 0xE || cpu.cond_passed(cond.0) {
                cpu.r[15] = pc.wrapping_add(4).wrapping_add(imm as u32);
                cpu.cycles += 1;
            }
            None
        }
        Insn::Bl { imm } => {
            cpu.r[14] = next | 1;
            cpu.r[15] = pc.wrapping_add(4).wrapping_add(imm as u32);
            cpu.cycles += 1;
            None
        }
        Insn::Bx { rm, link } => {
            let target = cpu.read(rm, pc);
            if link {
                cpu.r[14] = next | 1;
            }
            cpu.cycles += 1;
            cpu.bx_write_pc(bus, target, pc)
        }
        Insn::Cbz { nonzero, rn, imm } => {
            if (cpu.r[rn as usize] != 0) == nonzero {
                cpu.r[15] = pc.wrapping_add(4).wrapping_add(imm);
                cpu.cycles += 1;
            }
            None
        }
        Insn::It { state } => {
            cpu.itstate = state;
            None
        }
        Insn::Mul { op, s, rd, ra, rn, rm } => exec_mul(cpu, bus, op, s, rd, ra, rn, rm, pc),
        Insn::Extend { signed, bits, rd, rn, rm, rotate } => {
            let v = cpu.read(rm, pc).rotate_right(rotate as u32);
            let add = if rn == 15 { 0 } else { cpu.read(rn, pc) };
            let r = match (bits, signed) {
                (8, false) => add.wrapping_add(v & 0xFF),
                (8, true) => add.wrapping_add(v as u8 as i8 as i32 as u32),
                (16, false) => add.wrapping_add(v & 0xFFFF),
                (16, true) => add.wrapping_add(v as u16 as i16 as i32 as u32),
                (_, false) => {
                    let lo = (add & 0xFFFF).wrapping_add(v & 0xFF) & 0xFFFF;
                    let hi = (add >> 16).wrapping_add((v >> 16) & 0xFF) & 0xFFFF;
                    lo | (hi << 16)
                }
                (_, true) => {
                    let lo = ((add & 0xFFFF) as i32).wrapping_add(v as u8 as i8 as i32) as u32 & 0xFFFF;
                    let hi = ((add >> 16) as i32).wrapping_add((v >> 16) as u8 as i8 as i32) as u32 & 0xFFFF;
                    lo | (hi << 16)
                }
            };
            cpu.r[rd as usize] = r;
            None
        }
        Insn::Bfi { rd, rn, lsb, msb } => {
            if msb >= lsb {
                let width = (msb - lsb + 1) as u32;
                let mask = if width == 32 { u32::MAX } else { ((1u32 << width) - 1) << lsb };
                let src = if rn == 15 { 0 } else { cpu.read(rn, pc) << lsb };
                let d = &mut cpu.r[rd as usize];
                *d = (*d & !mask) | (src & mask);
            }
            None
        }
        Insn::Bfx { signed, rd, rn, lsb, widthm1 } => {
            let v = cpu.read(rn, pc);
            let width = widthm1 as u32 + 1;
            let lsb = lsb as u32;
            if lsb + width <= 32 {
                let field = (v >> lsb) & if width == 32 { u32::MAX } else { (1 << width) - 1 };
                cpu.r[rd as usize] = if signed {
                    let sh = 32 - width;
                    (((field << sh) as i32) >> sh) as u32
                } else {
                    field
                };
            }
            None
        }
        Insn::Sat { unsigned, half, rd, rn, sat, shift, amount } => {
            let v = cpu.read(rn, pc);
            let q;
            let r = if half {
                let lo = v as u16 as i16 as i64;
                let hi = (v >> 16) as u16 as i16 as i64;
                if unsigned {
                    let (a, qa) = unsigned_sat(lo, sat as u32);
                    let (b, qb) = unsigned_sat(hi, sat as u32);
                    q = qa || qb;
                    (a & 0xFFFF) | (b << 16)
                } else {
                    let (a, qa) = signed_sat(lo, sat as u32 + 1);
                    let (b, qb) = signed_sat(hi, sat as u32 + 1);
                    q = qa || qb;
                    (a as u32 & 0xFFFF) | ((b as u32) << 16)
                }
            } else {
                let (operand, _) = shift_c(v, shift, amount as u32, cpu.flag_c());
                let x = operand as i32 as i64;
                if unsigned {
                    let (r, qq) = unsigned_sat(x, sat as u32);
                    q = qq;
                    r
                } else {
                    let (r, qq) = signed_sat(x, sat as u32 + 1);
                    q = qq;
                    r as u32
                }
            };
            cpu.r[rd as usize] = r;
            if q {
                cpu.apsr |= 1 << 27;
            }
            None
        }
        Insn::Bits { op, rd, rm } => {
            let v = cpu.read(rm, pc);
            cpu.r[rd as usize] = match op {
                0 => v.leading_zeros(),
                1 => v.reverse_bits(),
                2 => v.swap_bytes(),
                3 => ((v & 0x00FF_00FF) << 8) | ((v & 0xFF00_FF00) >> 8),
                _ => (((v & 0xFF) << 8) | ((v >> 8) & 0xFF)) as u16 as i16 as i32 as u32,
            };
            None
        }
        Insn::Pkh { tb, rd, rn, rm, amount } => {
            let a = cpu.read(rn, pc);
            let b = cpu.read(rm, pc);
            cpu.r[rd as usize] = if tb {
                let (s, _) = shift_c(b, Shift::Asr, amount as u32, false);
                (a & 0xFFFF_0000) | (s & 0xFFFF)
            } else {
                let s = b << amount;
                (a & 0xFFFF) | (s & 0xFFFF_0000)
            };
            None
        }
        Insn::Parallel { op, kind, rd, rn, rm } => {
            let (r, ge) = parallel(op, kind, cpu.read(rn, pc), cpu.read(rm, pc));
            cpu.r[rd as usize] = r;
            if let Some(ge) = ge {
                cpu.apsr = (cpu.apsr & !0x000F_0000) | ((ge as u32) << 16);
            }
            None
        }
        Insn::SatArith { op, rd, rm, rn } => {
            let m = cpu.read(rm, pc) as i32 as i64;
            let mut n = cpu.read(rn, pc) as i32 as i64;
            let mut q = false;
            if op & 1 == 1 {
                let (d, qq) = signed_sat(2 * n, 32);
                n = d as i64;
                q |= qq;
            }
            let (r, qq) = signed_sat(if op & 2 == 0 { m + n } else { m - n }, 32);
            cpu.r[rd as usize] = r as u32;
            if q || qq {
                cpu.apsr |= 1 << 27;
            }
            None
        }
        Insn::Sel { rd, rn, rm } => {
            let (a, b) = (cpu.read(rn, pc), cpu.read(rm, pc));
            let ge = (cpu.apsr >> 16) & 0xF;
            let mut r = 0;
            for i in 0..4 {
                let src = if ge & (1 << i) != 0 { a } else { b };
                r |= src & (0xFF << (8 * i));
            }
            cpu.r[rd as usize] = r;
            None
        }
        Insn::Mrs { rd, sysm } => {
            let (msp, psp) = cpu.sps();
            cpu.r[rd as usize] = match sysm {
                0..=7 => {
                    let mut v = 0;
                    if sysm & 1 != 0 {
                        v |= cpu.ipsr as u32;
                    }
                    if sysm & 4 == 0 {
                        v |= cpu.apsr & 0xF80F_0000;
                    }
                    v
                }
                8 => msp,
                9 => psp,
                16 => cpu.primask as u32,
                17 | 18 => cpu.basepri as u32,
                19 => cpu.faultmask as u32,
                20 => cpu.control & 7,
                _ => 0,
            };
            None
        }
        Insn::Msr { rn, sysm, mask } => {
            let v = cpu.read(rn, pc);
            match sysm {
                0..=3 => {
                    if mask & 2 != 0 {
                        cpu.apsr = (cpu.apsr & !0xF800_0000) | (v & 0xF800_0000);
                    }
                    if mask & 1 != 0 {
                        cpu.apsr = (cpu.apsr & !0x000F_0000) | (v & 0x000F_0000);
                    }
                }
                8 => {
                    if cpu.control & 2 != 0 && !cpu.handler_mode {
                        cpu.other_sp = v & !3;
                    } else {
                        cpu.r[13] = v & !3;
                    }
                }
                9 => {
                    if cpu.control & 2 != 0 && !cpu.handler_mode {
                        cpu.r[13] = v & !3;
                    } else {
                        cpu.other_sp = v & !3;
                    }
                }
                16 => cpu.primask = v & 1 != 0,
                17 => cpu.basepri = (v & 0xFF) as u8 & cpu.scs.priority_mask(),
                18 => {
                    let b = (v & 0xFF) as u8 & cpu.scs.priority_mask();
                    if b != 0 && (b < cpu.basepri || cpu.basepri == 0) {
                        cpu.basepri = b;
                    }
                }
                19 if cpu.execution_priority(true) > -1 => cpu.faultmask = v & 1 != 0,
                20 => {
                    if !cpu.handler_mode {
                        let spsel_new = v & 2;
                        if spsel_new != cpu.control & 2 {
                            std::mem::swap(&mut cpu.r[13], &mut cpu.other_sp);
                        }
                        cpu.control = (cpu.control & !3) | (v & 3);
                    } else {
                        cpu.control = (cpu.control & !1) | (v & 1);
                    }
                    cpu.control = (cpu.control & !4) | (v & 4);
                }
                _ => {}
            }
            cpu.recheck = true;
            None
        }
        Insn::Cps { disable, i, f } => {
            if i {
                cpu.primask = disable;
            }
            if f && (!disable || cpu.execution_priority(true) > -1) {
                cpu.faultmask = disable;
            }
            cpu.recheck = true;
            None
        }
        Insn::Nop => None,
        Insn::Wfi => {
            cpu.state = RunState::WaitInterrupt;
            None
        }
        Insn::Wfe => {
            if cpu.event {
                cpu.event = false;
            } else {
                cpu.state = RunState::WaitEvent;
            }
            None
        }
        Insn::Sev => {
            cpu.event = true;
            None
        }
        Insn::Bkpt(imm) => {
            cpu.r[15] = pc;
            cpu.state = RunState::Halted;
            Some(Stop::Breakpoint(imm))
        }
        Insn::Svc(_) => cpu.fault(bus, 11, pc, "SVC".into()),
        Insn::Undefined => {
            let h1 = bus.fetch(pc).unwrap_or(0);
            cpu.usage_fault(bus, 0, pc, format!("undefined instruction {h1:#06x} at {pc:#010x} (UNDEFINSTR)"))
        }
        Insn::Coprocessor => {
            let h1 = bus.fetch(pc).unwrap_or(0);
            let h2 = bus.fetch(pc + 2).unwrap_or(0);
            cpu.usage_fault(
                bus,
                3,
                pc,
                format!(
                    "floating-point or coprocessor instruction {h1:04x} {h2:04x} at {pc:#010x}: this core has no FPU (NOCP); build the firmware without floating point"
                ),
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn exec_mul(
    cpu: &mut Cpu,
    bus: &mut impl Bus,
    op: MulOp,
    s: SetFlags,
    rd: u8,
    ra: u8,
    rn: u8,
    rm: u8,
    pc: u32,
) -> Option<Stop> {
    let n = cpu.read(rn, pc);
    let m = cpu.read(rm, pc);
    let a = cpu.read(ra, pc);
    let half = |v: u32, top: bool| if top { (v >> 16) as u16 as i16 as i64 } else { v as u16 as i16 as i64 };
    match op {
        MulOp::Mul => {
            let r = n.wrapping_mul(m);
            cpu.r[rd as usize] = r;
            let setflags = match s {
                SetFlags::Always => true,
                SetFlags::Never => false,
                SetFlags::OutsideIt => !cpu.it_was_active,
            };
            if setflags {
                let c = cpu.flag_c();
                cpu.set_nzc(r, c);
            }
        }
        MulOp::Mla => cpu.r[rd as usize] = a.wrapping_add(n.wrapping_mul(m)),
        MulOp::Mls => cpu.r[rd as usize] = a.wrapping_sub(n.wrapping_mul(m)),
        MulOp::Umull | MulOp::Smull | MulOp::Umlal | MulOp::Smlal | MulOp::Umaal => {
            let lo = cpu.r[rd as usize];
            let hi = cpu.r[ra as usize];
            let acc = ((hi as u64) << 32) | lo as u64;
            let r: u64 = match op {
                MulOp::Umull => n as u64 * m as u64,
                MulOp::Smull => (n as i32 as i64 * m as i32 as i64) as u64,
                MulOp::Umlal => (n as u64 * m as u64).wrapping_add(acc),
                MulOp::Smlal => ((n as i32 as i64 * m as i32 as i64) as u64).wrapping_add(acc),
                _ => n as u64 * m as u64 + hi as u64 + lo as u64,
            };
            cpu.r[rd as usize] = r as u32;
            cpu.r[ra as usize] = (r >> 32) as u32;
            cpu.cycles += 1;
        }
        MulOp::Udiv | MulOp::Sdiv => {
            cpu.cycles += 3;
            if m == 0 {
                if cpu.scs.ccr & (1 << 4) != 0 {
                    return cpu.usage_fault(bus, 9, pc, "division by zero (DIVBYZERO)".into());
                }
                cpu.r[rd as usize] = 0;
            } else if op == MulOp::Udiv {
                cpu.r[rd as usize] = n / m;
            } else {
                cpu.r[rd as usize] = (n as i32).wrapping_div(m as i32) as u32;
            }
        }
        MulOp::Smulxy { n_top, m_top, acc } => {
            let p = half(n, n_top) * half(m, m_top);
            if acc {
                let r = p + a as i32 as i64;
                cpu.r[rd as usize] = r as u32;
                if r != r as i32 as i64 {
                    cpu.apsr |= 1 << 27;
                }
            } else {
                cpu.r[rd as usize] = p as u32;
            }
        }
        MulOp::Smulwy { m_top, acc } => {
            let p = (n as i32 as i64 * half(m, m_top)) >> 16;
            if acc {
                let r = p + a as i32 as i64;
                cpu.r[rd as usize] = r as u32;
                if r != r as i32 as i64 {
                    cpu.apsr |= 1 << 27;
                }
            } else {
                cpu.r[rd as usize] = p as u32;
            }
        }
        MulOp::Smmul { round, acc } => {
            let p = n as i32 as i64 * m as i32 as i64;
            let mut r = match acc {
                None => p,
                Some(true) => ((a as i32 as i64) << 32).wrapping_add(p),
                Some(false) => ((a as i32 as i64) << 32).wrapping_sub(p),
            };
            if round {
                r = r.wrapping_add(0x8000_0000);
            }
            cpu.r[rd as usize] = (r >> 32) as u32;
        }
        MulOp::Smuad { x, sub, acc } => {
            let m2 = if x { m.rotate_right(16) } else { m };
            let p1 = half(n, false) * half(m2, false);
            let p2 = half(n, true) * half(m2, true);
            let mut r = if sub { p1 - p2 } else { p1 + p2 };
            if acc {
                r += a as i32 as i64;
            }
            cpu.r[rd as usize] = r as u32;
            if !sub && r != r as i32 as i64 {
                cpu.apsr |= 1 << 27;
            }
        }
        MulOp::Smlalxy { n_top, m_top } => {
            let lo = cpu.r[rd as usize];
            let hi = cpu.r[ra as usize];
            let acc = (((hi as u64) << 32) | lo as u64) as i64;
            let r = acc.wrapping_add(half(n, n_top) * half(m, m_top));
            cpu.r[rd as usize] = r as u32;
            cpu.r[ra as usize] = (r >> 32) as u32;
        }
        MulOp::Smlald { x, sub } => {
            let m2 = if x { m.rotate_right(16) } else { m };
            let p1 = half(n, false) * half(m2, false);
            let p2 = half(n, true) * half(m2, true);
            let lo = cpu.r[rd as usize];
            let hi = cpu.r[ra as usize];
            let acc = (((hi as u64) << 32) | lo as u64) as i64;
            let r = acc.wrapping_add(if sub { p1 - p2 } else { p1 + p2 });
            cpu.r[rd as usize] = r as u32;
            cpu.r[ra as usize] = (r >> 32) as u32;
        }
        MulOp::Usad8 { acc } => {
            let mut r = if acc { a } else { 0 };
            for i in 0..4 {
                let x = (n >> (8 * i)) & 0xFF;
                let y = (m >> (8 * i)) & 0xFF;
                r = r.wrapping_add(x.abs_diff(y));
            }
            cpu.r[rd as usize] = r;
        }
    }
    None
}

/// Parallel add/subtract: the result and, for the plain signed/unsigned kinds, GE.
fn parallel(op: ParOp, kind: ParKind, a: u32, b: u32) -> (u32, Option<u8>) {
    let signed = matches!(kind, ParKind::Signed | ParKind::SignedSat | ParKind::SignedHalf);
    let (lanes, width) = match op {
        ParOp::Add8 | ParOp::Sub8 => (4, 8),
        _ => (2, 16),
    };
    let lane = |v: u32, i: u32| -> i64 {
        let x = (v >> (i * width)) & ((1 << width) - 1);
        if signed {
            let sh = 32 - width;
            (((x << sh) as i32) >> sh) as i64
        } else {
            x as i64
        }
    };
    let mut results = [0i64; 4];
    for i in 0..lanes {
        let (x, y, sub) = match op {
            ParOp::Add16 | ParOp::Add8 => (lane(a, i), lane(b, i), false),
            ParOp::Sub16 | ParOp::Sub8 => (lane(a, i), lane(b, i), true),
            // ASX: lo = a.lo - b.hi; hi = a.hi + b.lo.
            ParOp::Asx => {
                if i == 0 {
                    (lane(a, 0), lane(b, 1), true)
                } else {
                    (lane(a, 1), lane(b, 0), false)
                }
            }
            // SAX: lo = a.lo + b.hi; hi = a.hi - b.lo.
            ParOp::Sax => {
                if i == 0 {
                    (lane(a, 0), lane(b, 1), false)
                } else {
                    (lane(a, 1), lane(b, 0), true)
                }
            }
        };
        results[i as usize] = if sub { x - y } else { x + y };
    }
    let mut out = 0u32;
    let mut ge = 0u8;
    let ge_bits = if lanes == 4 { 1 } else { 2 };
    for i in 0..lanes {
        let r = results[i as usize];
        let v = match kind {
            ParKind::Signed => {
                if r >= 0 {
                    ge |= ((1 << ge_bits) - 1) << (i * ge_bits);
                }
                r
            }
            ParKind::Unsigned => {
                let is_sub = matches!(op, ParOp::Sub16 | ParOp::Sub8)
                    || (op == ParOp::Asx && i == 0)
                    || (op == ParOp::Sax && i == 1);
                let set = if is_sub { r >= 0 } else { r >= (1 << width) };
                if set {
                    ge |= ((1 << ge_bits) - 1) << (i * ge_bits);
                }
                r
            }
            ParKind::SignedSat => signed_sat(r, width).0 as i64,
            ParKind::UnsignedSat => unsigned_sat(r, width).0 as i64,
            ParKind::SignedHalf | ParKind::UnsignedHalf => r >> 1,
        };
        out |= ((v as u32) & ((1u32 << width) - 1)) << (i * width);
    }
    let ge = matches!(kind, ParKind::Signed | ParKind::Unsigned).then_some(ge);
    (out, ge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_and_carries() {
        assert_eq!(shift_c(0x8000_0001, Shift::Lsl, 1, false), (2, true));
        assert_eq!(shift_c(0x8000_0001, Shift::Lsr, 1, false), (0x4000_0000, true));
        assert_eq!(shift_c(0x8000_0000, Shift::Asr, 32, false), (u32::MAX, true));
        assert_eq!(shift_c(1, Shift::Ror, 1, false), (0x8000_0000, true));
        assert_eq!(shift_c(1, Shift::Rrx, 1, true), (0x8000_0000, true));
        assert_eq!(shift_c(5, Shift::Lsl, 0, true), (5, true), "amount 0 keeps the carry");
        assert_eq!(shift_c(1, Shift::Lsl, 32, false), (0, true));
        assert_eq!(shift_c(1, Shift::Lsl, 40, true), (0, false));
    }

    #[test]
    fn add_with_carry_flags() {
        assert_eq!(add_with_carry(0xFFFF_FFFF, 1, false), (0, true, false));
        assert_eq!(add_with_carry(0x7FFF_FFFF, 1, false), (0x8000_0000, false, true));
        // 5 - 3 = 5 + !3 + 1: carry set (no borrow).
        assert_eq!(add_with_carry(5, !3, true), (2, true, false));
        assert_eq!(add_with_carry(3, !5, true), (0xFFFF_FFFE, false, false));
    }

    #[test]
    fn parallel_ops() {
        // UADD8 with carries out of each byte: GE set per byte that overflowed.
        let (r, ge) = parallel(ParOp::Add8, ParKind::Unsigned, 0x80FF_0102, 0x8001_0101);
        assert_eq!(r, 0x0000_0203);
        assert_eq!(ge, Some(0b1100));
        // USUB8: GE set where no borrow.
        let (r, ge) = parallel(ParOp::Sub8, ParKind::Unsigned, 0x0102_0304, 0x0203_0201);
        assert_eq!(r, 0xFFFF_0103);
        assert_eq!(ge, Some(0b0011));
        // QADD16 saturates.
        let (r, _) = parallel(ParOp::Add16, ParKind::SignedSat, 0x7FFF_0001, 0x0001_0001);
        assert_eq!(r, 0x7FFF_0002);
    }
}
