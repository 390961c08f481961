//! Thumb-2 decoding for ARMv7E-M (ARMv7-M Architecture Reference Manual, DDI 0403E, chapter
//! A5 and the instruction pages of A7). Every 16- and 32-bit encoding of the integer and DSP
//! instruction sets decodes to an [`Insn`]; coprocessor and floating-point encodings decode to
//! [`Insn::Coprocessor`] (the core has no FPU: executing one is a usage fault).
//!
//! Decoding depends only on the instruction's bits, never on the core's state, so decoded
//! instructions can be cached per address.

/// A register number (0..=15; 13 = SP, 14 = LR, 15 = PC).
pub type Reg = u8;

/// A condition code (A7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond(pub u8);

impl Cond {
    /// Always.
    pub const AL: Cond = Cond(0xE);
}

/// Shift types (A7.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// Logical shift left.
    Lsl,
    /// Logical shift right.
    Lsr,
    /// Arithmetic shift right.
    Asr,
    /// Rotate right.
    Ror,
    /// Rotate right with extend (by one, through carry).
    Rrx,
}

/// Decode a shift type and a 5-bit immediate amount (DecodeImmShift).
pub fn decode_imm_shift(ty: u32, imm5: u32) -> (Shift, u8) {
    match ty {
        0 => (Shift::Lsl, imm5 as u8),
        1 => (Shift::Lsr, if imm5 == 0 { 32 } else { imm5 as u8 }),
        2 => (Shift::Asr, if imm5 == 0 { 32 } else { imm5 as u8 }),
        _ => {
            if imm5 == 0 {
                (Shift::Rrx, 1)
            } else {
                (Shift::Ror, imm5 as u8)
            }
        }
    }
}

/// Whether flags are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetFlags {
    /// Always (32-bit encodings with S=1, compares).
    Always,
    /// Never.
    Never,
    /// Only outside an IT block (most 16-bit data-processing encodings).
    OutsideIt,
}

/// The second operand of a data-processing instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// An immediate, with the carry its expansion produces (`None`: carry unchanged).
    Imm {
        /// Value.
        value: u32,
        /// Carry out of ThumbExpandImm, if it sets one.
        carry: Option<bool>,
    },
    /// A register shifted by an immediate.
    Reg {
        /// Register.
        rm: Reg,
        /// Shift type.
        shift: Shift,
        /// Amount.
        amount: u8,
    },
    /// A register shifted by a register.
    RegReg {
        /// Register.
        rm: Reg,
        /// Shift type.
        shift: Shift,
        /// Register holding the amount (low byte).
        rs: Reg,
    },
}

/// Data-processing operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpOp {
    /// Bitwise AND.
    And,
    /// Bitwise exclusive OR.
    Eor,
    /// Bitwise OR.
    Orr,
    /// Bitwise OR NOT.
    Orn,
    /// Bit clear.
    Bic,
    /// Move.
    Mov,
    /// Move NOT.
    Mvn,
    /// Add.
    Add,
    /// Add with carry.
    Adc,
    /// Subtract.
    Sub,
    /// Subtract with carry.
    Sbc,
    /// Reverse subtract.
    Rsb,
    /// Test (AND, flags only).
    Tst,
    /// Test equivalence (EOR, flags only).
    Teq,
    /// Compare (SUB, flags only).
    Cmp,
    /// Compare negative (ADD, flags only).
    Cmn,
}

/// Access size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Half,
    /// 32 bits.
    Word,
}

impl Size {
    /// Bytes.
    pub fn bytes(self) -> u32 {
        match self {
            Size::Byte => 1,
            Size::Half => 2,
            Size::Word => 4,
        }
    }
}

/// A memory offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// An immediate (already signed).
    Imm(i32),
    /// A register, shifted left.
    Reg {
        /// Register.
        rm: Reg,
        /// Left shift.
        lsl: u8,
    },
}

/// Multiply and divide operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MulOp {
    /// rd = rn * rm (low 32 bits).
    Mul,
    /// rd = ra + rn * rm.
    Mla,
    /// rd = ra - rn * rm.
    Mls,
    /// rdhi:rdlo = rn * rm (unsigned).
    Umull,
    /// rdhi:rdlo = rn * rm (signed).
    Smull,
    /// rdhi:rdlo += rn * rm (unsigned).
    Umlal,
    /// rdhi:rdlo += rn * rm (signed).
    Smlal,
    /// rdhi:rdlo = rn * rm + rdhi + rdlo (unsigned).
    Umaal,
    /// rd = rn / rm (unsigned).
    Udiv,
    /// rd = rn / rm (signed).
    Sdiv,
    /// Signed halfword multiply: rd = rn.half(n) * rm.half(m) (+ ra).
    Smulxy {
        /// Top half of rn.
        n_top: bool,
        /// Top half of rm.
        m_top: bool,
        /// Accumulate ra (SMLAxy, sets Q on overflow).
        acc: bool,
    },
    /// Signed word by halfword: rd = (rn * rm.half) >> 16 (+ ra).
    Smulwy {
        /// Top half of rm.
        m_top: bool,
        /// Accumulate ra.
        acc: bool,
    },
    /// Signed most-significant word multiply: rd = (rn * rm [+ ra << 32]) >> 32.
    Smmul {
        /// Round.
        round: bool,
        /// Accumulate (+) or subtract (-) ra; `None`: plain.
        acc: Option<bool>,
    },
    /// Dual signed 16-bit multiply add/subtract: rd = rn.lo*rm.lo ± rn.hi*rm.hi (+ ra).
    Smuad {
        /// Exchange rm's halves.
        x: bool,
        /// Subtract instead of add.
        sub: bool,
        /// Accumulate ra.
        acc: bool,
    },
    /// Signed halfword multiply accumulate long.
    Smlalxy {
        /// Top half of rn.
        n_top: bool,
        /// Top half of rm.
        m_top: bool,
    },
    /// Dual signed 16-bit multiply accumulate long (add or subtract).
    Smlald {
        /// Exchange rm's halves.
        x: bool,
        /// Subtract.
        sub: bool,
    },
    /// Unsigned sum of absolute differences (+ ra).
    Usad8 {
        /// Accumulate ra.
        acc: bool,
    },
}

/// Parallel add/subtract (A5.3.14/A5.3.15): the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParOp {
    /// Add 16 twice.
    Add16,
    /// Add and subtract with exchange.
    Asx,
    /// Subtract and add with exchange.
    Sax,
    /// Subtract 16 twice.
    Sub16,
    /// Add 8 four times.
    Add8,
    /// Subtract 8 four times.
    Sub8,
}

/// Parallel add/subtract: the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParKind {
    /// Signed, sets GE.
    Signed,
    /// Signed saturating.
    SignedSat,
    /// Signed halving.
    SignedHalf,
    /// Unsigned, sets GE.
    Unsigned,
    /// Unsigned saturating.
    UnsignedSat,
    /// Unsigned halving.
    UnsignedHalf,
}

/// A decoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insn {
    /// Data processing.
    Dp {
        /// Operation.
        op: DpOp,
        /// Flags.
        s: SetFlags,
        /// Destination (ignored for TST/TEQ/CMP/CMN).
        rd: Reg,
        /// First operand (ignored for MOV/MVN).
        rn: Reg,
        /// Second operand.
        op2: Operand,
        /// A 16-bit ADD/MOV with a high register writes PC as a branch.
        branch_pc: bool,
    },
    /// ADDW/SUBW and ADR: rd = rn ± imm12 (rn = 15 means Align(PC, 4)).
    AddImm {
        /// Destination.
        rd: Reg,
        /// Base.
        rn: Reg,
        /// Immediate, signed.
        imm: i32,
    },
    /// MOVW (`top` false) or MOVT.
    Mov16 {
        /// Destination.
        rd: Reg,
        /// Immediate.
        imm: u16,
        /// MOVT: write the top half.
        top: bool,
    },
    /// Load or store of one register.
    Mem {
        /// Load.
        load: bool,
        /// Size.
        size: Size,
        /// Sign-extend (loads).
        signed: bool,
        /// Transfer register.
        rt: Reg,
        /// Base (15: Align(PC, 4)).
        rn: Reg,
        /// Offset.
        offset: Offset,
        /// Pre-indexed (offset applied to the address).
        index: bool,
        /// Write the offset address back to rn.
        wback: bool,
    },
    /// LDRD / STRD.
    MemDual {
        /// Load.
        load: bool,
        /// First register.
        rt: Reg,
        /// Second register.
        rt2: Reg,
        /// Base.
        rn: Reg,
        /// Offset (signed).
        imm: i32,
        /// Pre-indexed.
        index: bool,
        /// Write back.
        wback: bool,
    },
    /// LDM / STM / PUSH / POP.
    Multi {
        /// Load.
        load: bool,
        /// Base.
        rn: Reg,
        /// Register list.
        list: u16,
        /// Increment after (IA) or decrement before (DB).
        increment: bool,
        /// Write back.
        wback: bool,
    },
    /// LDREX / STREX (and byte/halfword variants).
    Exclusive {
        /// Load.
        load: bool,
        /// Size.
        size: Size,
        /// Transfer register.
        rt: Reg,
        /// Status register (STREX).
        rd: Reg,
        /// Base.
        rn: Reg,
        /// Offset.
        imm: u32,
    },
    /// CLREX.
    Clrex,
    /// TBB / TBH.
    TableBranch {
        /// Base.
        rn: Reg,
        /// Index.
        rm: Reg,
        /// Halfword table.
        half: bool,
    },
    /// B (conditional or not).
    B {
        /// Condition (AL outside conditional encodings).
        cond: Cond,
        /// Offset from PC (instruction address + 4).
        imm: i32,
    },
    /// BL.
    Bl {
        /// Offset from PC.
        imm: i32,
    },
    /// BX / BLX (register).
    Bx {
        /// Target register.
        rm: Reg,
        /// Link.
        link: bool,
    },
    /// CBZ / CBNZ.
    Cbz {
        /// CBNZ.
        nonzero: bool,
        /// Register tested.
        rn: Reg,
        /// Offset from PC.
        imm: u32,
    },
    /// IT.
    It {
        /// First condition and mask, as ITSTATE's initial value.
        state: u8,
    },
    /// Multiply or divide.
    Mul {
        /// Operation.
        op: MulOp,
        /// Set flags (16-bit MULS; MUL outside IT).
        s: SetFlags,
        /// Destination (or RdLo).
        rd: Reg,
        /// RdHi for long operations; Ra for accumulating ones.
        ra: Reg,
        /// First operand.
        rn: Reg,
        /// Second operand.
        rm: Reg,
    },
    /// SXTB, UXTB, SXTH, UXTH, SXTB16, UXTB16, with optional add (SXTAB, ...).
    Extend {
        /// Signed.
        signed: bool,
        /// 8 (one byte), 16 (one halfword) or 0 (two bytes: *XTB16).
        bits: u8,
        /// Destination.
        rd: Reg,
        /// Added register (15: none).
        rn: Reg,
        /// Source.
        rm: Reg,
        /// Rotation (0, 8, 16, 24).
        rotate: u8,
    },
    /// Bit field clear / insert (rn = 15: clear).
    Bfi {
        /// Destination.
        rd: Reg,
        /// Source (15: BFC).
        rn: Reg,
        /// Lowest bit.
        lsb: u8,
        /// Highest bit.
        msb: u8,
    },
    /// UBFX / SBFX.
    Bfx {
        /// Signed.
        signed: bool,
        /// Destination.
        rd: Reg,
        /// Source.
        rn: Reg,
        /// Lowest bit.
        lsb: u8,
        /// Width minus one.
        widthm1: u8,
    },
    /// SSAT / USAT (and the 16-bit forms).
    Sat {
        /// Unsigned.
        unsigned: bool,
        /// Two halfwords.
        half: bool,
        /// Destination.
        rd: Reg,
        /// Source.
        rn: Reg,
        /// Saturate to this bit position.
        sat: u8,
        /// Shift applied first.
        shift: Shift,
        /// Amount.
        amount: u8,
    },
    /// CLZ, RBIT, REV, REV16, REVSH.
    Bits {
        /// Which: 0 CLZ, 1 RBIT, 2 REV, 3 REV16, 4 REVSH.
        op: u8,
        /// Destination.
        rd: Reg,
        /// Source.
        rm: Reg,
    },
    /// PKHBT / PKHTB.
    Pkh {
        /// PKHTB.
        tb: bool,
        /// Destination.
        rd: Reg,
        /// First operand.
        rn: Reg,
        /// Second operand (shifted).
        rm: Reg,
        /// Shift amount.
        amount: u8,
    },
    /// Parallel add/subtract.
    Parallel {
        /// Operation.
        op: ParOp,
        /// Kind.
        kind: ParKind,
        /// Destination.
        rd: Reg,
        /// First operand.
        rn: Reg,
        /// Second operand.
        rm: Reg,
    },
    /// QADD, QDADD, QSUB, QDSUB: rd = sat(rm ± [sat(2 *)] rn).
    SatArith {
        /// 0 QADD, 1 QDADD, 2 QSUB, 3 QDSUB.
        op: u8,
        /// Destination.
        rd: Reg,
        /// The value added to or subtracted from.
        rm: Reg,
        /// The other operand.
        rn: Reg,
    },
    /// SEL.
    Sel {
        /// Destination.
        rd: Reg,
        /// First operand.
        rn: Reg,
        /// Second operand.
        rm: Reg,
    },
    /// MRS.
    Mrs {
        /// Destination.
        rd: Reg,
        /// Special register.
        sysm: u8,
    },
    /// MSR.
    Msr {
        /// Source.
        rn: Reg,
        /// Special register.
        sysm: u8,
        /// APSR mask (bit 1: NZCVQ, bit 0: GE).
        mask: u8,
    },
    /// CPSIE / CPSID.
    Cps {
        /// Disable (set the mask).
        disable: bool,
        /// Affects PRIMASK.
        i: bool,
        /// Affects FAULTMASK.
        f: bool,
    },
    /// Hints and barriers that need no model: NOP, YIELD, DMB, DSB, ISB, PLD, PLI, DBG.
    Nop,
    /// WFI.
    Wfi,
    /// WFE.
    Wfe,
    /// SEV.
    Sev,
    /// BKPT.
    Bkpt(u8),
    /// SVC.
    Svc(u8),
    /// Permanently undefined (UDF), or an encoding this architecture leaves undefined.
    Undefined,
    /// A coprocessor or floating-point instruction (no FPU: usage fault).
    Coprocessor,
}

/// Whether the first halfword starts a 32-bit instruction.
pub fn is_32bit(hw1: u16) -> bool {
    hw1 >> 11 >= 0b11101
}

fn bits(x: u32, hi: u32, lo: u32) -> u32 {
    (x >> lo) & ((1u32 << (hi - lo + 1)) - 1)
}

fn bit(x: u32, n: u32) -> bool {
    (x >> n) & 1 != 0
}

fn sign_extend(value: u32, bits: u32) -> i32 {
    let shift = 32 - bits;
    ((value << shift) as i32) >> shift
}

/// ThumbExpandImm_C (A5.3.2): the value, and the carry it sets (`None`: unchanged).
pub fn thumb_expand_imm(imm12: u32) -> (u32, Option<bool>) {
    if imm12 >> 10 == 0 {
        let b = imm12 & 0xFF;
        let v = match (imm12 >> 8) & 3 {
            0 => b,
            1 => (b << 16) | b,
            2 => (b << 24) | (b << 8),
            _ => (b << 24) | (b << 16) | (b << 8) | b,
        };
        (v, None)
    } else {
        let unrotated = 0x80 | (imm12 & 0x7F);
        let v = unrotated.rotate_right(imm12 >> 7);
        (v, Some(v >> 31 == 1))
    }
}

/// Decode one instruction. `hw2` is ignored for 16-bit instructions. Returns the instruction
/// and its length in bytes.
pub fn decode(hw1: u16, hw2: u16) -> (Insn, u8) {
    if is_32bit(hw1) { (decode32(hw1 as u32, hw2 as u32), 4) } else { (decode16(hw1 as u32), 2) }
}

fn dp(op: DpOp, s: SetFlags, rd: u32, rn: u32, op2: Operand) -> Insn {
    Insn::Dp { op, s, rd: rd as Reg, rn: rn as Reg, op2, branch_pc: false }
}

fn reg(rm: u32) -> Operand {
    Operand::Reg { rm: rm as Reg, shift: Shift::Lsl, amount: 0 }
}

fn imm(v: u32) -> Operand {
    Operand::Imm { value: v, carry: None }
}

fn mem(load: bool, size: Size, signed: bool, rt: u32, rn: u32, offset: Offset) -> Insn {
    Insn::Mem { load, size, signed, rt: rt as Reg, rn: rn as Reg, offset, index: true, wback: false }
}

fn decode16(i: u32) -> Insn {
    use SetFlags::OutsideIt as IT;
    let (r0, r3, r6, r8) = (bits(i, 2, 0), bits(i, 5, 3), bits(i, 8, 6), bits(i, 10, 8));
    match i >> 10 {
        // Shift (immediate), add, subtract, move, compare.
        0b000000..=0b001111 => {
            let opcode = bits(i, 13, 9);
            match opcode {
                0b00000..=0b01011 => {
                    let ty = bits(i, 12, 11);
                    let imm5 = bits(i, 10, 6);
                    if ty == 0 && imm5 == 0 {
                        return dp(DpOp::Mov, IT, r0, 0, reg(r3));
                    }
                    let (shift, amount) = decode_imm_shift(ty, imm5);
                    dp(DpOp::Mov, IT, r0, 0, Operand::Reg { rm: r3 as Reg, shift, amount })
                }
                0b01100 => dp(DpOp::Add, IT, r0, r3, reg(r6)),
                0b01101 => dp(DpOp::Sub, IT, r0, r3, reg(r6)),
                0b01110 => dp(DpOp::Add, IT, r0, r3, imm(r6)),
                0b01111 => dp(DpOp::Sub, IT, r0, r3, imm(r6)),
                _ => {
                    let imm8 = i & 0xFF;
                    match bits(i, 12, 11) {
                        0 => dp(DpOp::Mov, IT, r8, 0, imm(imm8)),
                        1 => dp(DpOp::Cmp, SetFlags::Always, 0, r8, imm(imm8)),
                        2 => dp(DpOp::Add, IT, r8, r8, imm(imm8)),
                        _ => dp(DpOp::Sub, IT, r8, r8, imm(imm8)),
                    }
                }
            }
        }
        // Data processing (register).
        0b010000 => {
            let (rdn, rm) = (r0, r3);
            let sh = |shift| dp(DpOp::Mov, IT, rdn, 0, Operand::RegReg { rm: rdn as Reg, shift, rs: rm as Reg });
            match bits(i, 9, 6) {
                0 => dp(DpOp::And, IT, rdn, rdn, reg(rm)),
                1 => dp(DpOp::Eor, IT, rdn, rdn, reg(rm)),
                2 => sh(Shift::Lsl),
                3 => sh(Shift::Lsr),
                4 => sh(Shift::Asr),
                5 => dp(DpOp::Adc, IT, rdn, rdn, reg(rm)),
                6 => dp(DpOp::Sbc, IT, rdn, rdn, reg(rm)),
                7 => sh(Shift::Ror),
                8 => dp(DpOp::Tst, SetFlags::Always, 0, rdn, reg(rm)),
                9 => dp(DpOp::Rsb, IT, rdn, rm, imm(0)),
                10 => dp(DpOp::Cmp, SetFlags::Always, 0, rdn, reg(rm)),
                11 => dp(DpOp::Cmn, SetFlags::Always, 0, rdn, reg(rm)),
                12 => dp(DpOp::Orr, IT, rdn, rdn, reg(rm)),
                13 => Insn::Mul { op: MulOp::Mul, s: IT, rd: rdn as Reg, ra: 0, rn: rm as Reg, rm: rdn as Reg },
                14 => dp(DpOp::Bic, IT, rdn, rdn, reg(rm)),
                _ => dp(DpOp::Mvn, IT, rdn, 0, reg(rm)),
            }
        }
        // Special data processing and branch/exchange.
        0b010001 => {
            let rdn = (bits(i, 7, 7) << 3) | r0;
            let rm = bits(i, 6, 3);
            match bits(i, 9, 8) {
                0 => Insn::Dp {
                    op: DpOp::Add,
                    s: SetFlags::Never,
                    rd: rdn as Reg,
                    rn: rdn as Reg,
                    op2: reg(rm),
                    branch_pc: rdn == 15,
                },
                1 => dp(DpOp::Cmp, SetFlags::Always, 0, rdn, reg(rm)),
                2 => Insn::Dp {
                    op: DpOp::Mov,
                    s: SetFlags::Never,
                    rd: rdn as Reg,
                    rn: 0,
                    op2: reg(rm),
                    branch_pc: rdn == 15,
                },
                _ => Insn::Bx { rm: rm as Reg, link: bit(i, 7) },
            }
        }
        // LDR (literal).
        0b010010 | 0b010011 => mem(true, Size::Word, false, r8, 15, Offset::Imm(((i & 0xFF) * 4) as i32)),
        // Load/store single data item.
        0b010100..=0b100111 => {
            let op_a = bits(i, 15, 12);
            let op_b = bits(i, 11, 9);
            let imm5 = bits(i, 10, 6);
            match op_a {
                0b0101 => {
                    let off = Offset::Reg { rm: r6 as Reg, lsl: 0 };
                    match op_b {
                        0 => mem(false, Size::Word, false, r0, r3, off),
                        1 => mem(false, Size::Half, false, r0, r3, off),
                        2 => mem(false, Size::Byte, false, r0, r3, off),
                        3 => mem(true, Size::Byte, true, r0, r3, off),
                        4 => mem(true, Size::Word, false, r0, r3, off),
                        5 => mem(true, Size::Half, false, r0, r3, off),
                        6 => mem(true, Size::Byte, false, r0, r3, off),
                        _ => mem(true, Size::Half, true, r0, r3, off),
                    }
                }
                0b0110 => mem(bit(i, 11), Size::Word, false, r0, r3, Offset::Imm((imm5 * 4) as i32)),
                0b0111 => mem(bit(i, 11), Size::Byte, false, r0, r3, Offset::Imm(imm5 as i32)),
                0b1000 => mem(bit(i, 11), Size::Half, false, r0, r3, Offset::Imm((imm5 * 2) as i32)),
                _ => mem(bit(i, 11), Size::Word, false, r8, 13, Offset::Imm(((i & 0xFF) * 4) as i32)),
            }
        }
        // ADR.
        0b101000 | 0b101001 => Insn::AddImm { rd: r8 as Reg, rn: 15, imm: ((i & 0xFF) * 4) as i32 },
        // ADD (SP plus immediate).
        0b101010 | 0b101011 => Insn::AddImm { rd: r8 as Reg, rn: 13, imm: ((i & 0xFF) * 4) as i32 },
        // Miscellaneous.
        0b101100..=0b101111 => decode16_misc(i),
        // STM / LDM.
        0b110000 | 0b110001 => {
            Insn::Multi { load: false, rn: r8 as Reg, list: (i & 0xFF) as u16, increment: true, wback: true }
        }
        0b110010 | 0b110011 => {
            let list = (i & 0xFF) as u16;
            Insn::Multi { load: true, rn: r8 as Reg, list, increment: true, wback: list & (1 << r8) == 0 }
        }
        // Conditional branch, UDF, SVC.
        0b110100..=0b110111 => match bits(i, 11, 8) {
            0b1110 => Insn::Undefined,
            0b1111 => Insn::Svc((i & 0xFF) as u8),
            c => Insn::B { cond: Cond(c as u8), imm: sign_extend((i & 0xFF) << 1, 9) },
        },
        // B (unconditional).
        0b111000 | 0b111001 => Insn::B { cond: Cond::AL, imm: sign_extend((i & 0x7FF) << 1, 12) },
        _ => Insn::Undefined,
    }
}

fn decode16_misc(i: u32) -> Insn {
    let op = bits(i, 11, 5);
    let (r0, r3) = (bits(i, 2, 0) as Reg, bits(i, 5, 3) as Reg);
    match op {
        0b0110011 => Insn::Cps { disable: bit(i, 4), i: bit(i, 1), f: bit(i, 0) },
        0b0000000..=0b0000011 => Insn::AddImm { rd: 13, rn: 13, imm: ((i & 0x7F) * 4) as i32 },
        0b0000100..=0b0000111 => Insn::AddImm { rd: 13, rn: 13, imm: -(((i & 0x7F) * 4) as i32) },
        0b0010000..=0b0010001 => Insn::Extend { signed: true, bits: 16, rd: r0, rn: 15, rm: r3, rotate: 0 },
        0b0010010..=0b0010011 => Insn::Extend { signed: true, bits: 8, rd: r0, rn: 15, rm: r3, rotate: 0 },
        0b0010100..=0b0010101 => Insn::Extend { signed: false, bits: 16, rd: r0, rn: 15, rm: r3, rotate: 0 },
        0b0010110..=0b0010111 => Insn::Extend { signed: false, bits: 8, rd: r0, rn: 15, rm: r3, rotate: 0 },
        0b0100000..=0b0101111 => {
            let list = ((i & 0xFF) | (bits(i, 8, 8) << 14)) as u16;
            Insn::Multi { load: false, rn: 13, list, increment: false, wback: true }
        }
        0b1010000..=0b1010001 => Insn::Bits { op: 2, rd: r0, rm: r3 },
        0b1010010..=0b1010011 => Insn::Bits { op: 3, rd: r0, rm: r3 },
        0b1010110..=0b1010111 => Insn::Bits { op: 4, rd: r0, rm: r3 },
        0b1100000..=0b1101111 => {
            let list = ((i & 0xFF) | (bits(i, 8, 8) << 15)) as u16;
            Insn::Multi { load: true, rn: 13, list, increment: true, wback: true }
        }
        0b1110000..=0b1110111 => Insn::Bkpt((i & 0xFF) as u8),
        0b1111000..=0b1111111 => {
            let (firstcond, mask) = (bits(i, 7, 4), bits(i, 3, 0));
            if mask != 0 {
                if firstcond == 0xF || (firstcond == 0xE && mask.count_ones() != 1) {
                    return Insn::Undefined;
                }
                Insn::It { state: (i & 0xFF) as u8 }
            } else {
                match firstcond {
                    2 => Insn::Wfe,
                    3 => Insn::Wfi,
                    4 => Insn::Sev,
                    _ => Insn::Nop,
                }
            }
        }
        _ => {
            // CBZ / CBNZ: 1011 o0i1 iiii irrr.
            if i & 0b0000_0101_0000_0000 == 0b0000_0001_0000_0000 {
                let imm = (bits(i, 9, 9) << 6) | (bits(i, 7, 3) << 1);
                return Insn::Cbz { nonzero: bit(i, 11), rn: r0, imm };
            }
            Insn::Undefined
        }
    }
}

fn decode32(h1: u32, h2: u32) -> Insn {
    let op1 = bits(h1, 12, 11);
    let op2 = bits(h1, 10, 4);
    let op = bit(h2, 15);
    match op1 {
        0b01 => {
            if op2 & 0b1100100 == 0b0000000 {
                decode_ldm_stm(h1, h2)
            } else if op2 & 0b1100100 == 0b0000100 {
                decode_dual_excl(h1, h2)
            } else if op2 & 0b1100000 == 0b0100000 {
                decode_dp_shifted(h1, h2)
            } else {
                Insn::Coprocessor
            }
        }
        0b10 => {
            if op {
                decode_branch_misc(h1, h2)
            } else if op2 & 0b0100000 == 0 {
                decode_dp_modified_imm(h1, h2)
            } else {
                decode_dp_plain_imm(h1, h2)
            }
        }
        _ => {
            if op2 & 0b1110001 == 0b0000000 {
                decode_store_single(h1, h2)
            } else if op2 & 0b1100111 == 0b0000001 {
                decode_load(h1, h2, Size::Byte)
            } else if op2 & 0b1100111 == 0b0000011 {
                decode_load(h1, h2, Size::Half)
            } else if op2 & 0b1100111 == 0b0000101 {
                decode_load(h1, h2, Size::Word)
            } else if op2 & 0b1110000 == 0b0100000 {
                decode_dp_register(h1, h2)
            } else if op2 & 0b1111000 == 0b0110000 {
                decode_multiply(h1, h2)
            } else if op2 & 0b1111000 == 0b0111000 {
                decode_long_multiply(h1, h2)
            } else if op2 & 0b1000000 != 0 {
                Insn::Coprocessor
            } else {
                Insn::Undefined
            }
        }
    }
}

fn decode_ldm_stm(h1: u32, h2: u32) -> Insn {
    let op = bits(h1, 8, 7);
    let l = bit(h1, 4);
    let w = bit(h1, 5);
    let rn = bits(h1, 3, 0) as Reg;
    let list = h2 as u16;
    match op {
        0b01 => Insn::Multi { load: l, rn, list, increment: true, wback: w },
        0b10 => Insn::Multi { load: l, rn, list, increment: false, wback: w },
        _ => Insn::Undefined, // SRS/RFE: not in ARMv7-M
    }
}

fn decode_dual_excl(h1: u32, h2: u32) -> Insn {
    let op1 = bits(h1, 8, 7);
    let op2 = bits(h1, 5, 4);
    let op3 = bits(h2, 7, 4);
    let rn = bits(h1, 3, 0) as Reg;
    let rt = bits(h2, 15, 12) as Reg;
    let rd = bits(h2, 11, 8) as Reg;
    match (op1, op2) {
        (0b00, 0b00) => Insn::Exclusive { load: false, size: Size::Word, rt, rd, rn, imm: (h2 & 0xFF) * 4 },
        (0b00, 0b01) => Insn::Exclusive { load: true, size: Size::Word, rt, rd: 15, rn, imm: (h2 & 0xFF) * 4 },
        (0b01, 0b00) => match op3 {
            0b0100 => Insn::Exclusive { load: false, size: Size::Byte, rt, rd: bits(h2, 3, 0) as Reg, rn, imm: 0 },
            0b0101 => Insn::Exclusive { load: false, size: Size::Half, rt, rd: bits(h2, 3, 0) as Reg, rn, imm: 0 },
            _ => Insn::Undefined,
        },
        (0b01, 0b01) => match op3 {
            0b0000 => Insn::TableBranch { rn, rm: bits(h2, 3, 0) as Reg, half: false },
            0b0001 => Insn::TableBranch { rn, rm: bits(h2, 3, 0) as Reg, half: true },
            0b0100 => Insn::Exclusive { load: true, size: Size::Byte, rt, rd: 15, rn, imm: 0 },
            0b0101 => Insn::Exclusive { load: true, size: Size::Half, rt, rd: 15, rn, imm: 0 },
            _ => Insn::Undefined,
        },
        _ => {
            // LDRD / STRD (immediate, or literal when rn = 15).
            let p = bit(h1, 8);
            let u = bit(h1, 7);
            let w = bit(h1, 5);
            let l = bit(h1, 4);
            let imm = (h2 & 0xFF) as i32 * 4;
            Insn::MemDual { load: l, rt, rt2: rd, rn, imm: if u { imm } else { -imm }, index: p, wback: w }
        }
    }
}

fn decode_dp_shifted(h1: u32, h2: u32) -> Insn {
    let op = bits(h1, 8, 5);
    let s = bit(h1, 4);
    let rn = bits(h1, 3, 0);
    let rd = bits(h2, 11, 8);
    let rm = bits(h2, 3, 0);
    let imm5 = (bits(h2, 14, 12) << 2) | bits(h2, 7, 6);
    let ty = bits(h2, 5, 4);
    let (shift, amount) = decode_imm_shift(ty, imm5);
    let op2 = Operand::Reg { rm: rm as Reg, shift, amount };
    let sf = if s { SetFlags::Always } else { SetFlags::Never };
    let test = |o| dp(o, SetFlags::Always, 0, rn, op2);
    match op {
        0b0000 if rd == 15 && s => test(DpOp::Tst),
        0b0000 => dp(DpOp::And, sf, rd, rn, op2),
        0b0001 => dp(DpOp::Bic, sf, rd, rn, op2),
        0b0010 if rn == 15 => dp(DpOp::Mov, sf, rd, 0, op2),
        0b0010 => dp(DpOp::Orr, sf, rd, rn, op2),
        0b0011 if rn == 15 => dp(DpOp::Mvn, sf, rd, 0, op2),
        0b0011 => dp(DpOp::Orn, sf, rd, rn, op2),
        0b0100 if rd == 15 && s => test(DpOp::Teq),
        0b0100 => dp(DpOp::Eor, sf, rd, rn, op2),
        0b0110 => {
            // PKHBT / PKHTB.
            let tb = bit(h2, 5);
            if bit(h2, 4) || s {
                return Insn::Undefined;
            }
            Insn::Pkh {
                tb,
                rd: rd as Reg,
                rn: rn as Reg,
                rm: rm as Reg,
                amount: if tb && imm5 == 0 { 32 } else { imm5 as u8 },
            }
        }
        0b1000 if rd == 15 && s => test(DpOp::Cmn),
        0b1000 => dp(DpOp::Add, sf, rd, rn, op2),
        0b1010 => dp(DpOp::Adc, sf, rd, rn, op2),
        0b1011 => dp(DpOp::Sbc, sf, rd, rn, op2),
        0b1101 if rd == 15 && s => test(DpOp::Cmp),
        0b1101 => dp(DpOp::Sub, sf, rd, rn, op2),
        0b1110 => dp(DpOp::Rsb, sf, rd, rn, op2),
        _ => Insn::Undefined,
    }
}

fn decode_dp_modified_imm(h1: u32, h2: u32) -> Insn {
    let op = bits(h1, 8, 5);
    let s = bit(h1, 4);
    let rn = bits(h1, 3, 0);
    let rd = bits(h2, 11, 8);
    let imm12 = (bits(h1, 10, 10) << 11) | (bits(h2, 14, 12) << 8) | (h2 & 0xFF);
    let (value, carry) = thumb_expand_imm(imm12);
    let op2 = Operand::Imm { value, carry };
    let sf = if s { SetFlags::Always } else { SetFlags::Never };
    let test = |o| dp(o, SetFlags::Always, 0, rn, op2);
    match op {
        0b0000 if rd == 15 && s => test(DpOp::Tst),
        0b0000 => dp(DpOp::And, sf, rd, rn, op2),
        0b0001 => dp(DpOp::Bic, sf, rd, rn, op2),
        0b0010 if rn == 15 => dp(DpOp::Mov, sf, rd, 0, op2),
        0b0010 => dp(DpOp::Orr, sf, rd, rn, op2),
        0b0011 if rn == 15 => dp(DpOp::Mvn, sf, rd, 0, op2),
        0b0011 => dp(DpOp::Orn, sf, rd, rn, op2),
        0b0100 if rd == 15 && s => test(DpOp::Teq),
        0b0100 => dp(DpOp::Eor, sf, rd, rn, op2),
        0b1000 if rd == 15 && s => test(DpOp::Cmn),
        0b1000 => dp(DpOp::Add, sf, rd, rn, op2),
        0b1010 => dp(DpOp::Adc, sf, rd, rn, op2),
        0b1011 => dp(DpOp::Sbc, sf, rd, rn, op2),
        0b1101 if rd == 15 && s => test(DpOp::Cmp),
        0b1101 => dp(DpOp::Sub, sf, rd, rn, op2),
        0b1110 => dp(DpOp::Rsb, sf, rd, rn, op2),
        _ => Insn::Undefined,
    }
}

fn decode_dp_plain_imm(h1: u32, h2: u32) -> Insn {
    let op = bits(h1, 8, 4);
    let rn = bits(h1, 3, 0) as Reg;
    let rd = bits(h2, 11, 8) as Reg;
    let imm12 = (bits(h1, 10, 10) << 11) | (bits(h2, 14, 12) << 8) | (h2 & 0xFF);
    let imm16 = (bits(h1, 3, 0) << 12) | imm12;
    let imm5 = (bits(h2, 14, 12) << 2) | bits(h2, 7, 6);
    match op {
        0b00000 => Insn::AddImm { rd, rn, imm: imm12 as i32 },
        0b00100 => Insn::Mov16 { rd, imm: imm16 as u16, top: false },
        0b01010 => Insn::AddImm { rd, rn, imm: -(imm12 as i32) },
        0b01100 => Insn::Mov16 { rd, imm: imm16 as u16, top: true },
        0b10000 | 0b10010 | 0b11000 | 0b11010 => {
            let unsigned = op & 0b01000 != 0;
            let sh = bit(h1, 5);
            if op & 0b00010 != 0 && imm5 == 0 {
                // SSAT16 / USAT16.
                let sat = bits(h2, 3, 0) as u8;
                return Insn::Sat { unsigned, half: true, rd, rn, sat, shift: Shift::Lsl, amount: 0 };
            }
            let (shift, amount) = if sh { decode_imm_shift(2, imm5) } else { (Shift::Lsl, imm5 as u8) };
            let sat = bits(h2, 4, 0) as u8;
            Insn::Sat { unsigned, half: false, rd, rn, sat, shift, amount }
        }
        0b10100 => Insn::Bfx { signed: true, rd, rn, lsb: imm5 as u8, widthm1: bits(h2, 4, 0) as u8 },
        0b10110 => Insn::Bfi { rd, rn, lsb: imm5 as u8, msb: bits(h2, 4, 0) as u8 },
        0b11100 => Insn::Bfx { signed: false, rd, rn, lsb: imm5 as u8, widthm1: bits(h2, 4, 0) as u8 },
        _ => Insn::Undefined,
    }
}

fn decode_branch_misc(h1: u32, h2: u32) -> Insn {
    let op = bits(h1, 10, 4);
    let op1 = bits(h2, 14, 12);
    let s = bits(h1, 10, 10);
    let j1 = bits(h2, 13, 13);
    let j2 = bits(h2, 11, 11);
    match op1 {
        0b000 | 0b010 => {
            if op & 0b0111000 != 0b0111000 {
                // B<cond> (T3).
                let imm = (s << 20) | (j2 << 19) | (j1 << 18) | (bits(h1, 5, 0) << 12) | ((h2 & 0x7FF) << 1);
                return Insn::B { cond: Cond(bits(h1, 9, 6) as u8), imm: sign_extend(imm, 21) };
            }
            match op {
                0b0111000 | 0b0111001 => {
                    let mask = bits(h2, 11, 10) as u8;
                    Insn::Msr { rn: bits(h1, 3, 0) as Reg, sysm: (h2 & 0xFF) as u8, mask }
                }
                0b0111010 => {
                    // Hints and barriers (A5.3.4, change processor state / hints).
                    if bits(h2, 10, 8) != 0 {
                        return Insn::Undefined;
                    }
                    match h2 & 0xFF {
                        0 => Insn::Nop,
                        1 => Insn::Nop, // YIELD
                        2 => Insn::Wfe,
                        3 => Insn::Wfi,
                        4 => Insn::Sev,
                        _ => Insn::Nop, // DBG and unallocated hints
                    }
                }
                0b0111011 => match bits(h2, 7, 4) {
                    0b0010 => Insn::Clrex,
                    0b0100..=0b0110 => Insn::Nop, // DSB, DMB, ISB
                    _ => Insn::Undefined,
                },
                0b0111110 | 0b0111111 => Insn::Mrs { rd: bits(h2, 11, 8) as Reg, sysm: (h2 & 0xFF) as u8 },
                0b1111111 if op1 == 0b010 => Insn::Undefined, // UDF.W
                _ => Insn::Undefined,
            }
        }
        0b001 | 0b011 => {
            let i1 = !(j1 ^ s) & 1;
            let i2 = !(j2 ^ s) & 1;
            let imm = (s << 24) | (i1 << 23) | (i2 << 22) | (bits(h1, 9, 0) << 12) | ((h2 & 0x7FF) << 1);
            Insn::B { cond: Cond::AL, imm: sign_extend(imm, 25) }
        }
        0b101 | 0b111 => {
            let i1 = !(j1 ^ s) & 1;
            let i2 = !(j2 ^ s) & 1;
            let imm = (s << 24) | (i1 << 23) | (i2 << 22) | (bits(h1, 9, 0) << 12) | ((h2 & 0x7FF) << 1);
            Insn::Bl { imm: sign_extend(imm, 25) }
        }
        _ => Insn::Undefined, // BLX (immediate) switches to ARM: not in ARMv7-M
    }
}

fn decode_store_single(h1: u32, h2: u32) -> Insn {
    let op1 = bits(h1, 7, 5);
    let rn = bits(h1, 3, 0) as Reg;
    let rt = bits(h2, 15, 12) as Reg;
    let size = match op1 & 0b011 {
        0 => Size::Byte,
        1 => Size::Half,
        _ => Size::Word,
    };
    if op1 & 0b100 != 0 {
        // Imm12.
        return Insn::Mem {
            load: false,
            size,
            signed: false,
            rt,
            rn,
            offset: Offset::Imm((h2 & 0xFFF) as i32),
            index: true,
            wback: false,
        };
    }
    if bit(h2, 11) {
        // Imm8 with P/U/W (STRT when P=1 U=1 W=0: treated as STR).
        let p = bit(h2, 10);
        let u = bit(h2, 9);
        let w = bit(h2, 8);
        let imm = (h2 & 0xFF) as i32;
        return Insn::Mem {
            load: false,
            size,
            signed: false,
            rt,
            rn,
            offset: Offset::Imm(if u { imm } else { -imm }),
            index: p,
            wback: w,
        };
    }
    if bits(h2, 11, 6) == 0 {
        return Insn::Mem {
            load: false,
            size,
            signed: false,
            rt,
            rn,
            offset: Offset::Reg { rm: bits(h2, 3, 0) as Reg, lsl: bits(h2, 5, 4) as u8 },
            index: true,
            wback: false,
        };
    }
    Insn::Undefined
}

fn decode_load(h1: u32, h2: u32, size: Size) -> Insn {
    let signed = bit(h1, 8);
    let up12 = bit(h1, 7);
    let rn = bits(h1, 3, 0) as Reg;
    let rt = bits(h2, 15, 12) as Reg;
    // Memory hints (PLD/PLI) have rt = 15 for byte and halfword loads.
    let hint = rt == 15 && size != Size::Word;
    if rn == 15 {
        // Literal.
        if hint {
            return Insn::Nop;
        }
        let imm = (h2 & 0xFFF) as i32;
        return Insn::Mem {
            load: true,
            size,
            signed,
            rt,
            rn: 15,
            offset: Offset::Imm(if up12 { imm } else { -imm }),
            index: true,
            wback: false,
        };
    }
    let insn = if up12 {
        Insn::Mem {
            load: true,
            size,
            signed,
            rt,
            rn,
            offset: Offset::Imm((h2 & 0xFFF) as i32),
            index: true,
            wback: false,
        }
    } else if bit(h2, 11) {
        let p = bit(h2, 10);
        let u = bit(h2, 9);
        let w = bit(h2, 8);
        let imm = (h2 & 0xFF) as i32;
        Insn::Mem {
            load: true,
            size,
            signed,
            rt,
            rn,
            offset: Offset::Imm(if u { imm } else { -imm }),
            index: p,
            wback: w,
        }
    } else if bits(h2, 11, 6) == 0 {
        Insn::Mem {
            load: true,
            size,
            signed,
            rt,
            rn,
            offset: Offset::Reg { rm: bits(h2, 3, 0) as Reg, lsl: bits(h2, 5, 4) as u8 },
            index: true,
            wback: false,
        }
    } else {
        return Insn::Undefined;
    };
    if hint && let Insn::Mem { wback: false, .. } = insn {
        return Insn::Nop;
    }
    insn
}

fn decode_dp_register(h1: u32, h2: u32) -> Insn {
    let op1 = bits(h1, 7, 4);
    let op2 = bits(h2, 7, 4);
    let rn = bits(h1, 3, 0);
    let rd = bits(h2, 11, 8);
    let rm = bits(h2, 3, 0);
    if op1 & 0b1000 == 0 && op2 == 0 {
        // LSL/LSR/ASR/ROR (register).
        let shift = match bits(h1, 6, 5) {
            0 => Shift::Lsl,
            1 => Shift::Lsr,
            2 => Shift::Asr,
            _ => Shift::Ror,
        };
        let sf = if bit(h1, 4) { SetFlags::Always } else { SetFlags::Never };
        return dp(DpOp::Mov, sf, rd, 0, Operand::RegReg { rm: rn as Reg, shift, rs: rm as Reg });
    }
    if op1 & 0b1000 == 0 && op2 & 0b1000 != 0 {
        // Extends with optional add.
        let rotate = (bits(h2, 5, 4) * 8) as u8;
        let (signed, b) = match op1 {
            0b0000 => (true, 16),
            0b0001 => (false, 16),
            0b0010 => (true, 0),
            0b0011 => (false, 0),
            0b0100 => (true, 8),
            0b0101 => (false, 8),
            _ => return Insn::Undefined,
        };
        return Insn::Extend { signed, bits: b, rd: rd as Reg, rn: rn as Reg, rm: rm as Reg, rotate };
    }
    if op1 & 0b1000 != 0 && op2 & 0b1000 == 0 {
        // Parallel addition and subtraction.
        let op = match op1 & 0b111 {
            0b001 => ParOp::Add16,
            0b010 => ParOp::Asx,
            0b110 => ParOp::Sax,
            0b101 => ParOp::Sub16,
            0b000 => ParOp::Add8,
            0b100 => ParOp::Sub8,
            _ => return Insn::Undefined,
        };
        let kind = match op2 {
            0b0000 => ParKind::Signed,
            0b0001 => ParKind::SignedSat,
            0b0010 => ParKind::SignedHalf,
            0b0100 => ParKind::Unsigned,
            0b0101 => ParKind::UnsignedSat,
            0b0110 => ParKind::UnsignedHalf,
            _ => return Insn::Undefined,
        };
        return Insn::Parallel { op, kind, rd: rd as Reg, rn: rn as Reg, rm: rm as Reg };
    }
    if op1 & 0b1100 == 0b1000 && op2 & 0b1100 == 0b1000 {
        // Miscellaneous operations (A5.3.15).
        return match (op1 & 0b11, op2 & 0b11) {
            (0b00, q) => Insn::SatArith { op: q as u8, rd: rd as Reg, rm: rm as Reg, rn: rn as Reg },
            (0b01, 0b00) => Insn::Bits { op: 2, rd: rd as Reg, rm: rm as Reg },
            (0b01, 0b01) => Insn::Bits { op: 3, rd: rd as Reg, rm: rm as Reg },
            (0b01, 0b10) => Insn::Bits { op: 1, rd: rd as Reg, rm: rm as Reg },
            (0b01, 0b11) => Insn::Bits { op: 4, rd: rd as Reg, rm: rm as Reg },
            (0b10, 0b00) => Insn::Sel { rd: rd as Reg, rn: rn as Reg, rm: rm as Reg },
            (0b11, 0b00) => Insn::Bits { op: 0, rd: rd as Reg, rm: rm as Reg },
            _ => Insn::Undefined,
        };
    }
    Insn::Undefined
}

fn decode_multiply(h1: u32, h2: u32) -> Insn {
    let op1 = bits(h1, 6, 4);
    let op2 = bits(h2, 5, 4);
    let rn = bits(h1, 3, 0) as Reg;
    let ra = bits(h2, 15, 12) as Reg;
    let rd = bits(h2, 11, 8) as Reg;
    let rm = bits(h2, 3, 0) as Reg;
    let acc = ra != 15;
    let m = |op| Insn::Mul { op, s: SetFlags::Never, rd, ra, rn, rm };
    match op1 {
        0b000 => match op2 {
            0b00 if acc => m(MulOp::Mla),
            0b00 => m(MulOp::Mul),
            0b01 => m(MulOp::Mls),
            _ => Insn::Undefined,
        },
        0b001 => m(MulOp::Smulxy { n_top: bit(h2, 5), m_top: bit(h2, 4), acc }),
        0b010 => m(MulOp::Smuad { x: bit(h2, 4), sub: false, acc }),
        0b011 => m(MulOp::Smulwy { m_top: bit(h2, 4), acc }),
        0b100 => m(MulOp::Smuad { x: bit(h2, 4), sub: true, acc }),
        0b101 => m(MulOp::Smmul { round: bit(h2, 4), acc: acc.then_some(true) }),
        0b110 => m(MulOp::Smmul { round: bit(h2, 4), acc: Some(false) }),
        0b111 if op2 == 0 => m(MulOp::Usad8 { acc }),
        _ => Insn::Undefined,
    }
}

fn decode_long_multiply(h1: u32, h2: u32) -> Insn {
    let op1 = bits(h1, 6, 4);
    let op2 = bits(h2, 7, 4);
    let rn = bits(h1, 3, 0) as Reg;
    let rdlo = bits(h2, 15, 12) as Reg;
    let rdhi = bits(h2, 11, 8) as Reg;
    let rm = bits(h2, 3, 0) as Reg;
    let m = |op| Insn::Mul { op, s: SetFlags::Never, rd: rdlo, ra: rdhi, rn, rm };
    match (op1, op2) {
        (0b000, 0b0000) => m(MulOp::Smull),
        (0b001, 0b1111) => Insn::Mul { op: MulOp::Sdiv, s: SetFlags::Never, rd: rdhi, ra: 0, rn, rm },
        (0b010, 0b0000) => m(MulOp::Umull),
        (0b011, 0b1111) => Insn::Mul { op: MulOp::Udiv, s: SetFlags::Never, rd: rdhi, ra: 0, rn, rm },
        (0b100, 0b0000) => m(MulOp::Smlal),
        (0b100, 0b1000..=0b1011) => m(MulOp::Smlalxy { n_top: bit(h2, 5), m_top: bit(h2, 4) }),
        (0b100, 0b1100 | 0b1101) => m(MulOp::Smlald { x: bit(h2, 4), sub: false }),
        (0b101, 0b1100 | 0b1101) => m(MulOp::Smlald { x: bit(h2, 4), sub: true }),
        (0b110, 0b0000) => m(MulOp::Umlal),
        (0b110, 0b0110) => m(MulOp::Umaal),
        _ => Insn::Undefined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumb_expand_imm_matches_the_manual() {
        assert_eq!(thumb_expand_imm(0x0AB), (0xAB, None));
        assert_eq!(thumb_expand_imm(0x1AB), (0x00AB_00AB, None));
        assert_eq!(thumb_expand_imm(0x2AB), (0xAB00_AB00, None));
        assert_eq!(thumb_expand_imm(0x3AB), (0xABAB_ABAB, None));
        // 0x4FF: rotate 0xFF right by 9: 0x7F800000, carry 0.
        assert_eq!(thumb_expand_imm(0x4FF), (0x7F80_0000, Some(false)));
        assert_eq!(thumb_expand_imm(0x400), (0x8000_0000, Some(true)));
    }

    #[test]
    fn common_encodings() {
        // movs r0, #5
        assert_eq!(decode(0x2005, 0).0, dp(DpOp::Mov, SetFlags::OutsideIt, 0, 0, imm(5)));
        // bx lr
        assert_eq!(decode(0x4770, 0).0, Insn::Bx { rm: 14, link: false });
        // push {r4, r5, r7, lr}
        assert_eq!(
            decode(0xB5B0, 0).0,
            Insn::Multi { load: false, rn: 13, list: 0x40B0, increment: false, wback: true }
        );
        // pop {r4, r5, r7, pc}
        assert_eq!(decode(0xBDB0, 0).0, Insn::Multi { load: true, rn: 13, list: 0x80B0, increment: true, wback: true });
        // bl +0 (f000 f800)
        assert_eq!(decode(0xF000, 0xF800), (Insn::Bl { imm: 0 }, 4));
        // movw r0, #0x1234 (f241 2034)
        assert_eq!(decode(0xF241, 0x2034).0, Insn::Mov16 { rd: 0, imm: 0x1234, top: false });
        // ldr.w r1, [r2, #4] (f8d2 1004)
        assert_eq!(
            decode(0xF8D2, 0x1004).0,
            Insn::Mem {
                load: true,
                size: Size::Word,
                signed: false,
                rt: 1,
                rn: 2,
                offset: Offset::Imm(4),
                index: true,
                wback: false
            }
        );
        // cbz r0, +4 (b110)
        assert_eq!(decode(0xB110, 0).0, Insn::Cbz { nonzero: false, rn: 0, imm: 4 });
        // it eq (bf08)
        assert_eq!(decode(0xBF08, 0).0, Insn::It { state: 0x08 });
        // wfe, sev, wfi
        assert_eq!(decode(0xBF20, 0).0, Insn::Wfe);
        assert_eq!(decode(0xBF40, 0).0, Insn::Sev);
        assert_eq!(decode(0xBF30, 0).0, Insn::Wfi);
        // msr primask, r0 (f380 8810)
        assert_eq!(decode(0xF380, 0x8810).0, Insn::Msr { rn: 0, sysm: 0x10, mask: 2 });
        // mrs r0, primask (f3ef 8010)
        assert_eq!(decode(0xF3EF, 0x8010).0, Insn::Mrs { rd: 0, sysm: 0x10 });
        // udiv r0, r1, r2 (fbb1 f0f2)
        assert_eq!(
            decode(0xFBB1, 0xF0F2).0,
            Insn::Mul { op: MulOp::Udiv, s: SetFlags::Never, rd: 0, ra: 0, rn: 1, rm: 2 }
        );
        // vpush (coprocessor)
        assert_eq!(decode(0xED2D, 0x8B02).0, Insn::Coprocessor);
        // uxtab r0, r1, r2 (fa51 f082)
        assert_eq!(decode(0xFA51, 0xF082).0, Insn::Extend { signed: false, bits: 8, rd: 0, rn: 1, rm: 2, rotate: 0 });
    }
}
