//! Instruction semantics against the ARMv7-M Architecture Reference Manual (DDI 0403E, chapter
//! A7 pseudo-code). Every expected value is worked out from the manual, in the comments; the
//! programs are `llvm-mc` output (see `common/mod.rs`).

mod common;

use common::{Machine, RAM, STACK_TOP};

/// Run `code` from reset with `regs` set, to its `bkpt #0`.
fn run(code: &[u16], regs: &[(usize, u32)]) -> Machine {
    let mut m = Machine::new(code);
    m.set(regs);
    m.run_to_bkpt(0);
    m
}

/// Initial APSR values the flag tests start from: all clear, and N Z C V Q all set.
const APSR_CLEAR: u32 = 0;
const APSR_ALL: u32 = 0xF800_0000;

/// Run a flag-setting `op r0, r1, r2` program (APSR set from r4 first) for each case and both
/// initial APSR values: NZCV come from the instruction, Q is left alone.
fn check_flags(code: &[u16], name: &str, cases: &[(u32, u32, u32, u32)]) {
    for &(a, b, result, nzcv) in cases {
        for init in [APSR_CLEAR, APSR_ALL] {
            let m = run(code, &[(1, a), (2, b), (4, init)]);
            assert_eq!(m.r(0), result, "{name} {a:#x}, {b:#x} (APSR {init:#x})");
            assert_eq!(m.nzcv(), nzcv, "{name} {a:#x}, {b:#x} (APSR {init:#x}): NZCV");
            assert_eq!(m.q(), init & (1 << 27) != 0, "{name} must not touch Q");
        }
    }
}

#[rustfmt::skip]
const ADDS: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0x1888,          // 0x004: adds r0, r1, r2
    0xbe00,          // 0x006: bkpt #0
];

/// ADDS (A7.7.3): AddWithCarry(Rn, Rm, '0'); C is the unsigned carry out, V the signed overflow.
#[test]
fn adds_flags_at_carry_and_overflow_edges() {
    check_flags(
        ADDS,
        "adds",
        &[
            // (Rn, Rm, result, NZCV)
            (1, 2, 3, 0b0000),
            (0xFFFF_FFFF, 1, 0, 0b0110),                     // unsigned wrap: Z C
            (0x7FFF_FFFF, 1, 0x8000_0000, 0b1001),           // signed overflow: N V
            (0x8000_0000, 0x8000_0000, 0, 0b0111),           // Z C V
            (0x8000_0000, 0xFFFF_FFFF, 0x7FFF_FFFF, 0b0011), // negative + negative = positive: C V
            (0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFE, 0b1010), // -1 + -1: N C, no overflow
            (0, 0, 0, 0b0100),
        ],
    );
}

#[rustfmt::skip]
const SUBS: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0x1a88,          // 0x004: subs r0, r1, r2
    0xbe00,          // 0x006: bkpt #0
];

/// SUBS (A7.7.174): AddWithCarry(Rn, NOT(Rm), '1'); C set means no borrow.
#[test]
fn subs_flags_at_borrow_and_overflow_edges() {
    check_flags(
        SUBS,
        "subs",
        &[
            (5, 3, 2, 0b0010),
            (3, 5, 0xFFFF_FFFE, 0b1000), // borrow: C clear
            (5, 5, 0, 0b0110),
            (0, 0, 0, 0b0110),
            (0, 1, 0xFFFF_FFFF, 0b1000),
            (0x8000_0000, 1, 0x7FFF_FFFF, 0b0011), // INT_MIN - 1 overflows
            (0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000, 0b1001), // INT_MAX - (-1) overflows, borrows
        ],
    );
}

#[rustfmt::skip]
const ADCS: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xeb51, 0x0002,  // 0x004: adcs.w r0, r1, r2
    0xbe00,          // 0x008: bkpt #0
];

/// ADCS (A7.7.2): AddWithCarry(Rn, Rm, APSR.C).
#[test]
fn adcs_uses_and_sets_the_carry() {
    // (Rn, Rm, carry in, result, NZCV)
    let cases = [
        (1, 1, true, 3, 0b0000),
        (0xFFFF_FFFF, 0, true, 0, 0b0110),
        (0xFFFF_FFFF, 0, false, 0xFFFF_FFFF, 0b1000),
        (0x7FFF_FFFF, 0, true, 0x8000_0000, 0b1001),
        (0x7FFF_FFFF, 0xFFFF_FFFF, true, 0x7FFF_FFFF, 0b0010), // 2^31-1 + -1 + 1: carry, no overflow
        (0xFFFF_FFFF, 0xFFFF_FFFF, true, 0xFFFF_FFFF, 0b1010),
        (0x8000_0000, 0x8000_0000, false, 0, 0b0111),
    ];
    for (a, b, c, result, nzcv) in cases {
        for other in [0, 0xD800_0000] {
            let init = other | (c as u32) << 29;
            let m = run(ADCS, &[(1, a), (2, b), (4, init)]);
            assert_eq!((m.r(0), m.nzcv()), (result, nzcv), "adcs {a:#x}, {b:#x}, C={c} (APSR {init:#x})");
        }
    }
}

#[rustfmt::skip]
const SBCS: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xeb71, 0x0002,  // 0x004: sbcs.w r0, r1, r2
    0xbe00,          // 0x008: bkpt #0
];

/// SBCS (A7.7.125): AddWithCarry(Rn, NOT(Rm), APSR.C): a borrow in when C is clear.
#[test]
fn sbcs_uses_and_sets_the_borrow() {
    let cases = [
        (5, 3, true, 2, 0b0010),
        (5, 3, false, 1, 0b0010), // 5 + 0xFFFFFFFC + 0 = 0x1_00000001
        (0, 0, false, 0xFFFF_FFFF, 0b1000),
        (0, 0, true, 0, 0b0110),
        (0x8000_0000, 0, false, 0x7FFF_FFFF, 0b0011), // INT_MIN - 0 - 1 overflows
        (0x7FFF_FFFF, 0xFFFF_FFFF, true, 0x8000_0000, 0b1001),
    ];
    for (a, b, c, result, nzcv) in cases {
        for other in [0, 0xD800_0000] {
            let init = other | (c as u32) << 29;
            let m = run(SBCS, &[(1, a), (2, b), (4, init)]);
            assert_eq!((m.r(0), m.nzcv()), (result, nzcv), "sbcs {a:#x}, {b:#x}, C={c} (APSR {init:#x})");
        }
    }
}

#[rustfmt::skip]
const LSL_REG: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xfa11, 0xf002,  // 0x004: lsls.w r0, r1, r2
    0xf3ef, 0x8500,  // 0x008: mrs r5, apsr
    0xf384, 0x8800,  // 0x00c: msr apsr_nzcvq, r4
    0x460b,          // 0x010: mov r3, r1
    0x4093,          // 0x012: lsls r3, r2
    0xbe00,          // 0x014: bkpt #0
];

#[rustfmt::skip]
const LSR_REG: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xfa31, 0xf002,  // 0x004: lsrs.w r0, r1, r2
    0xf3ef, 0x8500,  // 0x008: mrs r5, apsr
    0xf384, 0x8800,  // 0x00c: msr apsr_nzcvq, r4
    0x460b,          // 0x010: mov r3, r1
    0x40d3,          // 0x012: lsrs r3, r2
    0xbe00,          // 0x014: bkpt #0
];

#[rustfmt::skip]
const ASR_REG: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xfa51, 0xf002,  // 0x004: asrs.w r0, r1, r2
    0xf3ef, 0x8500,  // 0x008: mrs r5, apsr
    0xf384, 0x8800,  // 0x00c: msr apsr_nzcvq, r4
    0x460b,          // 0x010: mov r3, r1
    0x4113,          // 0x012: asrs r3, r2
    0xbe00,          // 0x014: bkpt #0
];

#[rustfmt::skip]
const ROR_REG: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xfa71, 0xf002,  // 0x004: rors.w r0, r1, r2
    0xf3ef, 0x8500,  // 0x008: mrs r5, apsr
    0xf384, 0x8800,  // 0x00c: msr apsr_nzcvq, r4
    0x460b,          // 0x010: mov r3, r1
    0x41d3,          // 0x012: rors r3, r2
    0xbe00,          // 0x014: bkpt #0
];

/// Shift by register, 32-bit (T2) and 16-bit (T1) encodings (A7.7.68, A7.7.70, A7.7.10,
/// A7.7.117): the amount is Rm<7:0>; Shift_C (A7.4.2) keeps C for an amount of 0, and shifts
/// of 32 or more give 0 (or the sign for ASR) with the carry of the last bit shifted out.
/// Each case: (value, Rm, carry in, result, carry out); N and Z follow the result, V is kept.
fn check_shift(code: &[u16], name: &str, cases: &[(u32, u32, bool, u32, bool)]) {
    for &(value, amount, cin, result, cout) in cases {
        // V set on entry: a shift keeps it.
        let init = (cin as u32) << 29 | 1 << 28;
        let m = run(code, &[(1, value), (2, amount), (4, init)]);
        let nzcv = ((result >> 31) << 3) | ((result == 0) as u32) << 2 | (cout as u32) << 1 | 1;
        let what = format!("{name} {value:#x} by {amount:#x} (C={cin})");
        assert_eq!(m.r(0), result, "{what}: 32-bit result");
        assert_eq!(m.r(5) >> 28, nzcv, "{what}: 32-bit NZCV");
        assert_eq!(m.r(3), result, "{what}: 16-bit result");
        assert_eq!(m.nzcv(), nzcv, "{what}: 16-bit NZCV");
    }
}

#[test]
fn lsl_by_register() {
    check_shift(
        LSL_REG,
        "lsl",
        &[
            (0x8000_0001, 1, false, 2, true),
            (1, 0, true, 1, true), // amount 0: carry unchanged
            (1, 0, false, 1, false),
            (3, 32, false, 0, true), // carry = bit 0
            (2, 32, true, 0, false),
            (0xFFFF_FFFF, 33, true, 0, false),
            (1, 0x101, true, 2, false), // only Rm<7:0> counts
            (0x8000_0000, 0xFF, true, 0, false),
        ],
    );
}

#[test]
fn lsr_by_register() {
    check_shift(
        LSR_REG,
        "lsr",
        &[
            (0x8000_0001, 1, false, 0x4000_0000, true),
            (0xF0, 4, true, 0xF, false),
            (0x8, 4, false, 0, true),
            (0x8000_0000, 32, false, 0, true), // carry = bit 31
            (0x8000_0000, 33, true, 0, false),
            (0x1234, 0, true, 0x1234, true),
        ],
    );
}

#[test]
fn asr_by_register() {
    check_shift(
        ASR_REG,
        "asr",
        &[
            (0x8000_0000, 31, false, 0xFFFF_FFFF, false), // carry = bit 30
            (0x8000_0000, 32, false, 0xFFFF_FFFF, true),
            (0x8000_0000, 200, false, 0xFFFF_FFFF, true),
            (0x7FFF_FFFF, 32, true, 0, false),
            (0x7FFF_FFFF, 40, true, 0, false),
            (0xFFFF_FF00, 4, true, 0xFFFF_FFF0, false),
        ],
    );
}

#[test]
fn ror_by_register() {
    check_shift(
        ROR_REG,
        "ror",
        &[
            (1, 1, false, 0x8000_0000, true),
            (0x1234_5678, 8, true, 0x7812_3456, false),
            (1, 32, true, 1, false), // ROR by 32: value unchanged, carry = bit 31
            (0x8000_0000, 32, false, 0x8000_0000, true),
            (0x1234_5678, 36, false, 0x8123_4567, true), // 36 mod 32 = 4
            (0x1234_5678, 0, true, 0x1234_5678, true),
        ],
    );
}

#[rustfmt::skip]
const MULTIPLY: &[u16] = &[
    0xfb01, 0xf002,  // 0x000: mul r0, r1, r2
    0xfba1, 0x3402,  // 0x004: umull r3, r4, r1, r2
    0xfb81, 0x5602,  // 0x008: smull r5, r6, r1, r2
    0xfb01, 0x8702,  // 0x00c: mla r7, r1, r2, r8
    0xfb01, 0x8912,  // 0x010: mls r9, r1, r2, r8
    0xfbe1, 0xab02,  // 0x014: umlal r10, r11, r1, r2
    0xbe00,          // 0x018: bkpt #0
];

/// MUL, UMULL, SMULL, MLA, MLS, UMLAL (A7.7.84, A7.7.189, A7.7.149, A7.7.74, A7.7.75,
/// A7.7.188).
#[test]
fn multiplies() {
    // (Rn, Rm, Ra, mul, umull hi:lo, smull hi:lo, mla, mls, umlal of 0xFFFFFFFF_00000001)
    struct Case {
        n: u32,
        m: u32,
        a: u32,
        mul: u32,
        umull: u64,
        smull: u64,
        mla: u32,
        mls: u32,
        umlal: u64,
    }
    let cases = [
        Case {
            n: 0xFFFF_FFFF,
            m: 0xFFFF_FFFF,
            a: 5,
            mul: 1,
            umull: 0xFFFF_FFFE_0000_0001, // (2^32-1)^2
            smull: 1,                     // -1 * -1
            mla: 6,
            mls: 4,
            umlal: 0xFFFF_FFFE_0000_0001u64.wrapping_add(0xFFFF_FFFF_0000_0001),
        },
        Case {
            n: 0x8000_0000,
            m: 2,
            a: 0,
            mul: 0,
            umull: 0x1_0000_0000,
            smull: 0xFFFF_FFFF_0000_0000, // -2^31 * 2 = -2^32
            mla: 0,
            mls: 0,
            umlal: 0x0000_0000_0000_0001, // 2^32 + 0xFFFFFFFF_00000001 wraps to 1
        },
        Case {
            n: 0x1234_5678,
            m: 0x9ABC_DEF0,
            a: 0x1111_1111,
            mul: 0x242D_2080,
            umull: 0x0B00_EA4E_242D_2080,
            smull: 0xF8CC_93D6_242D_2080, // Rm is negative: hi = 0x0B00EA4E - Rn
            mla: 0x353E_3191,
            mls: 0xECE3_F091,
            umlal: 0x0B00_EA4D_242D_2081,
        },
    ];
    for c in cases {
        let m = run(MULTIPLY, &[(1, c.n), (2, c.m), (8, c.a), (10, 0x0000_0001), (11, 0xFFFF_FFFF)]);
        let what = format!("{:#x} * {:#x}", c.n, c.m);
        assert_eq!(m.r(0), c.mul, "mul {what}");
        assert_eq!((m.r(4), m.r(3)), ((c.umull >> 32) as u32, c.umull as u32), "umull {what}");
        assert_eq!((m.r(6), m.r(5)), ((c.smull >> 32) as u32, c.smull as u32), "smull {what}");
        assert_eq!(m.r(7), c.mla, "mla {what}");
        assert_eq!(m.r(9), c.mls, "mls {what}");
        assert_eq!((m.r(11), m.r(10)), ((c.umlal >> 32) as u32, c.umlal as u32), "umlal {what}");
    }
}

#[rustfmt::skip]
const MULS: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0x4348,          // 0x004: muls r0, r1, r0
    0xbe00,          // 0x006: bkpt #0
];

/// MULS (16-bit, outside IT): N and Z from the result, C and V unchanged (A7.7.84).
#[test]
fn muls_sets_n_and_z_only() {
    let m = run(MULS, &[(0, 0x1_0000), (1, 0x1_0000), (4, 0x3000_0000)]);
    assert_eq!((m.r(0), m.nzcv()), (0, 0b0111));
    let m = run(MULS, &[(0, 0xFFFF_FFFF), (1, 1), (4, 0)]);
    assert_eq!((m.r(0), m.nzcv()), (0xFFFF_FFFF, 0b1000));
    let m = run(MULS, &[(0, 3), (1, 7), (4, 0xC000_0000)]);
    assert_eq!((m.r(0), m.nzcv()), (21, 0b0000));
}

#[rustfmt::skip]
const DIVIDE: &[u16] = &[
    0xfbb1, 0xf0f2,  // 0x000: udiv r0, r1, r2
    0xfb91, 0xf3f2,  // 0x004: sdiv r3, r1, r2
    0xbe00,          // 0x008: bkpt #0
];

/// UDIV and SDIV (A7.7.195, A7.7.127): round towards zero; division by zero gives 0 while
/// CCR.DIV_0_TRP is clear (its reset value); INT_MIN / -1 is INT_MIN (the low 32 bits of 2^31).
#[test]
fn divides() {
    // (Rn, Rm, udiv, sdiv)
    let cases = [
        (7, 2, 3, 3),
        (0xFFFF_FFF9, 2, 0x7FFF_FFFC, 0xFFFF_FFFD), // -7 / 2 = -3
        (7, 0xFFFF_FFFE, 0, 0xFFFF_FFFD),           // 7 / -2 = -3
        (0xFFFF_FFF9, 0xFFFF_FFFE, 0, 3),           // -7 / -2 = 3
        (1234, 0, 0, 0),
        (0x8000_0000, 0, 0, 0),
        (0x8000_0000, 0xFFFF_FFFF, 0, 0x8000_0000),
        (0xFFFF_FFFF, 1, 0xFFFF_FFFF, 0xFFFF_FFFF),
    ];
    for (n, d, udiv, sdiv) in cases {
        let m = run(DIVIDE, &[(1, n), (2, d), (0, 0xAAAA_AAAA), (3, 0xAAAA_AAAA)]);
        assert_eq!(m.r(0), udiv, "udiv {n:#x} / {d:#x}");
        assert_eq!(m.r(3), sdiv, "sdiv {n:#x} / {d:#x}");
    }
}

#[rustfmt::skip]
const LDM_STM: &[u16] = &[
    0xc00e,          // 0x000: stm r0!, {r1, r2, r3}
    0xe930, 0x0070,  // 0x002: ldmdb r0!, {r4, r5, r6}
    0xb406,          // 0x006: push {r1, r2}
    0xe8bd, 0x0300,  // 0x008: pop.w {r8, r9}
    0xe890, 0x0401,  // 0x00c: ldm.w r0, {r0, r10}
    0xbe00,          // 0x010: bkpt #0
];

/// STM (increment after), LDMDB, PUSH, POP and LDM with the base in the list (A7.7.159,
/// A7.7.41, A7.7.101, A7.7.99, A7.7.40): lowest register at the lowest address; write-back
/// is the final address; LDM with Rn in the list has no write-back and loads Rn.
#[test]
fn load_and_store_multiple() {
    let base = RAM + 0x100;
    let (a, b, c) = (0x1111_1111, 0x2222_2222, 0x3333_3333);
    let mut m = run(LDM_STM, &[(0, base), (1, a), (2, b), (3, c)]);
    assert_eq!([m.read32(base), m.read32(base + 4), m.read32(base + 8)], [a, b, c]);
    assert_eq!([m.r(4), m.r(5), m.r(6)], [a, b, c], "ldmdb");
    // push {r1, r2}: r1 at SP - 8, r2 at SP - 4.
    assert_eq!([m.read32(STACK_TOP - 8), m.read32(STACK_TOP - 4)], [a, b]);
    assert_eq!([m.r(8), m.r(9)], [a, b], "pop");
    assert_eq!(m.r(13), STACK_TOP, "push then pop leaves SP");
    // ldmdb r0! wrote back base; ldm r0, {r0, r10} loads r0 from [base].
    assert_eq!([m.r(0), m.r(10)], [a, b]);
}

#[rustfmt::skip]
const CALL_RET: &[u16] = &[
    0xf000, 0xf802,  // 0x000: bl func
    0x3701,          // 0x004: adds r7, #1
    0xbe00,          // 0x006: bkpt #0
    0xb510,          // 0x008: func: push {r4, lr}
    0x242a,          // 0x00a: movs r4, #42
    0x4625,          // 0x00c: mov r5, r4
    0xbd10,          // 0x00e: pop {r4, pc}
];

/// BL, PUSH {.., LR} and POP {.., PC} (A7.7.18, A7.7.101, A7.7.99): LR = return address | 1;
/// POP loads PC (LoadWritePC) and restores the callee-saved register.
#[test]
fn call_and_return_through_push_and_pop_pc() {
    let mut m = run(CALL_RET, &[(4, 0x4444_4444), (7, 10)]);
    let ret = common::CODE + 4;
    assert_eq!(m.read32(STACK_TOP - 8), 0x4444_4444, "pushed r4");
    assert_eq!(m.read32(STACK_TOP - 4), ret | 1, "pushed lr: the return address with bit 0 set");
    assert_eq!(m.r(4), 0x4444_4444, "r4 restored by pop");
    assert_eq!(m.r(5), 42);
    assert_eq!(m.r(7), 11, "returned to the instruction after bl");
    assert_eq!(m.r(13), STACK_TOP);
    assert_eq!(m.r(14), ret | 1);
    assert_eq!(m.cpu.pc(), common::CODE + 6, "halted at the final bkpt");
}

#[rustfmt::skip]
const IT_ITTE: &[u16] = &[
    0x4288,          // 0x000: cmp r0, r1
    0xbfc6,          // 0x002: itte gt
    0x2201,          // 0x004: movgt r2, #1
    0x2301,          // 0x006: movgt r3, #1
    0x2401,          // 0x008: movle r4, #1
    0xbf8c,          // 0x00a: ite hi
    0x2501,          // 0x00c: movhi r5, #1
    0x2502,          // 0x00e: movls r5, #2
    0xbe00,          // 0x010: bkpt #0
];

/// IT (A7.7.38, A7.3.1): ITTE GT then ITE HI; the 16-bit MOVs inside do not set flags, so
/// both blocks test the flags of the CMP.
#[test]
fn it_blocks_with_then_and_else() {
    // (r0, r1) -> r2, r3, r4 (GT: r2 = r3 = 1, else r4 = 1), r5 (HI: 1, LS: 2)
    let cases = [
        (5, 3, [1, 1, 0, 1]),
        (3, 5, [0, 0, 1, 2]),
        (7, 7, [0, 0, 1, 2]),
        (0x8000_0000, 1, [0, 0, 1, 1]), // signed -2^31 <= 1, unsigned higher
        (1, 0x8000_0000, [1, 1, 0, 2]), // signed 1 > -2^31, unsigned lower
        (0xFFFF_FFFF, 0xFFFF_FFFE, [1, 1, 0, 1]),
    ];
    for (a, b, expect) in cases {
        let m = run(IT_ITTE, &[(0, a), (1, b), (2, 0), (3, 0), (4, 0), (5, 0)]);
        assert_eq!([m.r(2), m.r(3), m.r(4), m.r(5)], expect, "cmp {a:#x}, {b:#x}");
    }
}

#[rustfmt::skip]
const IT_NO_FLAGS: &[u16] = &[
    0x2805,          // 0x000: cmp r0, #5
    0xbf0c,          // 0x002: ite eq
    0x1c49,          // 0x004: addeq r1, r1, #1
    0x1e49,          // 0x006: subne r1, r1, #1
    0xbe00,          // 0x008: bkpt #0
];

/// A 16-bit ADD/SUB (immediate) inside an IT block does not set flags (A7.7.3 T1: setflags =
/// !InITBlock()).
#[test]
fn sixteen_bit_arithmetic_in_it_block_leaves_flags() {
    // cmp 5, 5: N=0 Z=1 C=1 V=0; the ADD makes 0x80000000 (would be N V outside IT).
    let m = run(IT_NO_FLAGS, &[(0, 5), (1, 0x7FFF_FFFF)]);
    assert_eq!((m.r(1), m.nzcv()), (0x8000_0000, 0b0110));
    // cmp 6, 5: C=1 only; the SUB makes 0x7FFFFFFF (would be C V outside IT).
    let m = run(IT_NO_FLAGS, &[(0, 6), (1, 0x8000_0000)]);
    assert_eq!((m.r(1), m.nzcv()), (0x7FFF_FFFF, 0b0010));
}

#[rustfmt::skip]
const CBZ_CBNZ: &[u16] = &[
    0xb108,          // 0x000: cbz r0, zero
    0x2101,          // 0x002: movs r1, #1
    0xe000,          // 0x004: b test_nz
    0x2102,          // 0x006: zero: movs r1, #2
    0xb908,          // 0x008: test_nz: cbnz r0, nonzero
    0x2203,          // 0x00a: movs r2, #3
    0xbe00,          // 0x00c: bkpt #0
    0x2204,          // 0x00e: nonzero: movs r2, #4
    0xbe00,          // 0x010: bkpt #0
];

/// CBZ / CBNZ (A7.7.21): branch on zero / non-zero without touching flags.
#[test]
fn compare_and_branch_on_zero() {
    let m = run(CBZ_CBNZ, &[(0, 0), (4, 0)]);
    assert_eq!((m.r(1), m.r(2)), (2, 3));
    let m = run(CBZ_CBNZ, &[(0, 5)]);
    assert_eq!((m.r(1), m.r(2)), (1, 4));
    let m = run(CBZ_CBNZ, &[(0, 0x8000_0000)]);
    assert_eq!((m.r(1), m.r(2)), (1, 4));
}

#[rustfmt::skip]
const TBB: &[u16] = &[
    0xe8df, 0xf000,  // 0x000: tbb [pc, r0]
    0x0402,          // 0x004: table: .byte (case0-table)/2; .byte (case1-table)/2
    0x0006,          // 0x006: .byte (case2-table)/2; .byte 0
    0x210a,          // 0x008: case0: movs r1, #10
    0xbe00,          // 0x00a: bkpt #0
    0x210b,          // 0x00c: case1: movs r1, #11
    0xbe00,          // 0x00e: bkpt #0
    0x210c,          // 0x010: case2: movs r1, #12
    0xbe00,          // 0x012: bkpt #0
];

#[rustfmt::skip]
const TBH: &[u16] = &[
    0xe8df, 0xf010,  // 0x000: tbh [pc, r0, lsl #1]
    0x0003,          // 0x004: table: .short (case0-table)/2
    0x0005,          // 0x006: .short (case1-table)/2
    0x0007,          // 0x008: .short (case2-table)/2
    0x2114,          // 0x00a: case0: movs r1, #20
    0xbe00,          // 0x00c: bkpt #0
    0x2115,          // 0x00e: case1: movs r1, #21
    0xbe00,          // 0x010: bkpt #0
    0x2116,          // 0x012: case2: movs r1, #22
    0xbe00,          // 0x014: bkpt #0
];

/// TBB / TBH (A7.7.185): branch to PC + 2 * table[Rm], with PC the address of the TBB + 4
/// (here the table's own address).
#[test]
fn table_branches() {
    for (i, expect) in [(0, 10), (1, 11), (2, 12)] {
        let m = run(TBB, &[(0, i)]);
        assert_eq!(m.r(1), expect, "tbb index {i}");
    }
    for (i, expect) in [(0, 20), (1, 21), (2, 22)] {
        let m = run(TBH, &[(0, i)]);
        assert_eq!(m.r(1), expect, "tbh index {i}");
    }
}

#[rustfmt::skip]
const EXCLUSIVE: &[u16] = &[
    0xe850, 0x1f00,  // 0x000: ldrex r1, [r0]
    0x3101,          // 0x004: adds r1, #1
    0xe840, 0x1200,  // 0x006: strex r2, r1, [r0]
    0xe840, 0x6300,  // 0x00a: strex r3, r6, [r0]
    0xe850, 0x4f01,  // 0x00e: ldrex r4, [r0, #4]
    0xf3bf, 0x8f2f,  // 0x012: clrex
    0xe840, 0x6501,  // 0x016: strex r5, r6, [r0, #4]
    0xe8d8, 0x7f5f,  // 0x01a: ldrexh r7, [r8]
    0xe8c8, 0x6f59,  // 0x01e: strexh r9, r6, [r8]
    0xbe00,          // 0x022: bkpt #0
];

/// LDREX / STREX / CLREX (A7.7.52, A7.7.167, A7.7.23, A3.4): STREX stores and returns 0 only
/// while the local monitor is in the exclusive state; any STREX and CLREX clear the monitor.
#[test]
fn exclusive_monitor() {
    let base = RAM + 0x200;
    let mut m = Machine::new(EXCLUSIVE);
    m.write32(base, 41);
    m.write32(base + 4, 7);
    m.write32(base + 8, 0x1234_5678);
    m.set(&[(0, base), (6, 0xDEAD), (8, base + 10)]);
    m.run_to_bkpt(0);
    assert_eq!(m.r(1), 42);
    assert_eq!(m.r(2), 0, "first strex succeeds");
    assert_eq!(m.r(3), 1, "second strex fails: the first one cleared the monitor");
    assert_eq!(m.read32(base), 42, "failed strex does not store");
    assert_eq!(m.r(4), 7);
    assert_eq!(m.r(5), 1, "strex after clrex fails");
    assert_eq!(m.read32(base + 4), 7);
    assert_eq!(m.r(7), 0x1234, "ldrexh loads the halfword at base + 10");
    assert_eq!(m.r(9), 0, "strexh succeeds");
    assert_eq!(m.read32(base + 8), 0xDEAD_5678);
}

#[rustfmt::skip]
const BITFIELD: &[u16] = &[
    0xf361, 0x2013,  // 0x000: bfi r0, r1, #8, #12
    0xf36f, 0x120b,  // 0x004: bfc r2, #4, #8
    0xf3c4, 0x7303,  // 0x008: ubfx r3, r4, #28, #4
    0xf344, 0x7503,  // 0x00c: sbfx r5, r4, #28, #4
    0xf3c1, 0x1607,  // 0x010: ubfx r6, r1, #4, #8
    0xf341, 0x1707,  // 0x014: sbfx r7, r1, #4, #8
    0xf361, 0x081f,  // 0x018: bfi r8, r1, #0, #32
    0xf341, 0x091f,  // 0x01c: sbfx r9, r1, #0, #32
    0xbe00,          // 0x020: bkpt #0
];

/// BFI, BFC, UBFX, SBFX (A7.7.14, A7.7.13, A7.7.193, A7.7.126), including full-width fields.
#[test]
fn bit_fields() {
    let m = run(BITFIELD, &[(0, 0xFFFF_FFFF), (1, 0x1234_5ABC), (2, 0xFFFF_FFFF), (4, 0xA000_0000), (8, 0)]);
    assert_eq!(m.r(0), 0xFFFA_BCFF, "bfi: bits 19:8 = 0xABC");
    assert_eq!(m.r(2), 0xFFFF_F00F, "bfc: bits 11:4 cleared");
    assert_eq!(m.r(3), 0xA, "ubfx bits 31:28");
    assert_eq!(m.r(5), 0xFFFF_FFFA, "sbfx bits 31:28 = 0b1010 = -6");
    assert_eq!(m.r(6), 0xAB, "ubfx bits 11:4");
    assert_eq!(m.r(7), 0xFFFF_FFAB, "sbfx bits 11:4 (0xAB has its top bit set)");
    assert_eq!(m.r(8), 0x1234_5ABC, "bfi of 32 bits");
    assert_eq!(m.r(9), 0x1234_5ABC, "sbfx of 32 bits");
}

#[rustfmt::skip]
const BIT_OPS: &[u16] = &[
    0xfab1, 0xf081,  // 0x000: clz r0, r1
    0xfab9, 0xf889,  // 0x004: clz r8, r9
    0xfabb, 0xfa8b,  // 0x008: clz r10, r11
    0xfa91, 0xfca1,  // 0x00c: rbit r12, r1
    0xba0a,          // 0x010: rev r2, r1
    0xba4b,          // 0x012: rev16 r3, r1
    0xbacc,          // 0x014: revsh r4, r1
    0xbaf5,          // 0x016: revsh r5, r6
    0xfa96, 0xf786,  // 0x018: rev.w r7, r6
    0xbe00,          // 0x01c: bkpt #0
];

/// CLZ, RBIT, REV, REV16, REVSH (A7.7.24, A7.7.112, A7.7.113, A7.7.114, A7.7.115), 16- and
/// 32-bit encodings.
#[test]
fn bit_and_byte_reversal() {
    let m = run(BIT_OPS, &[(1, 0x1234_5678), (9, 0), (11, 1), (6, 0x1234_5680)]);
    assert_eq!(m.r(0), 3, "clz 0x12345678");
    assert_eq!(m.r(8), 32, "clz 0");
    assert_eq!(m.r(10), 31, "clz 1");
    assert_eq!(m.r(12), 0x1E6A_2C48, "rbit 0x12345678");
    assert_eq!(m.r(2), 0x7856_3412, "rev");
    assert_eq!(m.r(3), 0x3412_7856, "rev16");
    assert_eq!(m.r(4), 0x0000_7856, "revsh: 0x78 is positive");
    assert_eq!(m.r(5), 0xFFFF_8056, "revsh: 0x80 sign-extends");
    assert_eq!(m.r(7), 0x8056_3412, "rev.w");
}

#[rustfmt::skip]
const SAT: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xf301, 0x0007,  // 0x004: ssat r0, #8, r1
    0xf3ef, 0x8500,  // 0x008: mrs r5, apsr
    0xf384, 0x8800,  // 0x00c: msr apsr_nzcvq, r4
    0xf381, 0x0208,  // 0x010: usat r2, #8, r1
    0xf3ef, 0x8600,  // 0x014: mrs r6, apsr
    0xbe00,          // 0x018: bkpt #0
];

/// SSAT / USAT to 8 bits (A7.7.138, A7.7.198): Q is set only when the value is clamped.
#[test]
fn signed_and_unsigned_saturation() {
    // (value, ssat #8, Q, usat #8, Q)
    let cases = [
        (100, 100, false, 100, false),
        (127, 127, false, 127, false),
        (128, 127, true, 128, false),
        (255, 127, true, 255, false),
        (300, 127, true, 255, true),
        (0xFFFF_FFFF, 0xFFFF_FFFF, false, 0, true), // -1
        (0xFFFF_FF80, 0xFFFF_FF80, false, 0, true), // -128
        (0xFFFF_FF7F, 0xFFFF_FF80, true, 0, true),  // -129
        (0x8000_0000, 0xFFFF_FF80, true, 0, true),
    ];
    for (v, s, sq, u, uq) in cases {
        let m = run(SAT, &[(1, v), (4, 0)]);
        assert_eq!(m.r(0), s, "ssat #8, {v:#x}");
        assert_eq!(m.r(5) & (1 << 27) != 0, sq, "ssat #8, {v:#x}: Q");
        assert_eq!(m.r(2), u, "usat #8, {v:#x}");
        assert_eq!(m.r(6) & (1 << 27) != 0, uq, "usat #8, {v:#x}: Q");
    }
}

#[rustfmt::skip]
const SAT_SHIFTED_STICKY: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xf301, 0x200f,  // 0x004: ssat r0, #16, r1, lsl #8
    0x18da,          // 0x008: adds r2, r3, r3
    0xf3a7, 0x1604,  // 0x00a: usat r6, #4, r7, asr #4
    0xf3ef, 0x8500,  // 0x00e: mrs r5, apsr
    0xf329, 0x0807,  // 0x012: ssat16 r8, #8, r9
    0xf3a9, 0x0a08,  // 0x016: usat16 r10, #8, r9
    0xbe00,          // 0x01a: bkpt #0
];

/// SSAT with a shift, USAT with ASR, SSAT16, USAT16 (A7.7.139, A7.7.199); Q is sticky: a
/// later ADDS and a non-saturating USAT leave it set.
#[test]
fn saturation_with_shift_halves_and_sticky_q() {
    let m = run(SAT_SHIFTED_STICKY, &[(1, 0x100), (3, 1), (4, 0), (7, 200), (9, 0x0100_FF00)]);
    assert_eq!(m.r(0), 0x7FFF, "ssat #16 of 0x100 << 8 = 65536");
    assert_eq!(m.r(2), 2);
    assert_eq!(m.r(6), 12, "usat #4 of 200 >> 4 = 12 fits");
    assert_eq!(m.r(5) >> 27, 0b00001, "NZCV from adds 1 + 1 all clear, Q still set");
    // Halves: 0x0100 = 256 and 0xFF00 = -256.
    assert_eq!(m.r(8), 0x007F_FF80, "ssat16 #8: 127 and -128");
    assert_eq!(m.r(10), 0x00FF_0000, "usat16 #8: 255 and 0");
    assert!(m.q());
}

#[rustfmt::skip]
const QADD_QSUB: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xfa82, 0xf081,  // 0x004: qadd r0, r1, r2
    0xf3ef, 0x8500,  // 0x008: mrs r5, apsr
    0xf384, 0x8800,  // 0x00c: msr apsr_nzcvq, r4
    0xfa82, 0xf3a1,  // 0x010: qsub r3, r1, r2
    0xf3ef, 0x8600,  // 0x014: mrs r6, apsr
    0xbe00,          // 0x018: bkpt #0
];

/// QADD / QSUB (A7.7.102, A7.7.109): `qadd rd, rm, rn` = SignedSat(Rm + Rn, 32); `qsub rd, rm,
/// rn` = SignedSat(Rm - Rn, 32).
#[test]
fn saturating_add_and_subtract() {
    // (Rm, Rn, qadd, Q, qsub, Q)
    let cases = [
        (5, 6, 11, false, 0xFFFF_FFFF, false),
        (0x7FFF_FFFF, 1, 0x7FFF_FFFF, true, 0x7FFF_FFFE, false),
        (0x8000_0000, 0xFFFF_FFFF, 0x8000_0000, true, 0x8000_0001, false),
        (0x8000_0000, 1, 0x8000_0001, false, 0x8000_0000, true),
        (0x7FFF_FFFF, 0xFFFF_FFFF, 0x7FFF_FFFE, false, 0x7FFF_FFFF, true),
        (0, 0x8000_0000, 0x8000_0000, false, 0x7FFF_FFFF, true),
    ];
    for (a, b, add, addq, sub, subq) in cases {
        let m = run(QADD_QSUB, &[(1, a), (2, b), (4, 0)]);
        assert_eq!((m.r(0), m.r(5) & (1 << 27) != 0), (add, addq), "qadd {a:#x}, {b:#x}");
        assert_eq!((m.r(3), m.r(6) & (1 << 27) != 0), (sub, subq), "qsub {a:#x}, {b:#x}");
    }
}

#[rustfmt::skip]
const QDADD_QDSUB: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xfa82, 0xf091,  // 0x004: qdadd r0, r1, r2
    0xf3ef, 0x8500,  // 0x008: mrs r5, apsr
    0xf384, 0x8800,  // 0x00c: msr apsr_nzcvq, r4
    0xfa82, 0xf3b1,  // 0x010: qdsub r3, r1, r2
    0xf3ef, 0x8600,  // 0x014: mrs r6, apsr
    0xbe00,          // 0x018: bkpt #0
];

/// QDADD / QDSUB (A7.7.104, A7.7.105): SignedSat(Rm ± SignedSat(2 * Rn)); the doubling alone
/// can set Q.
#[test]
fn saturating_double_add_and_subtract() {
    let m = run(QDADD_QDSUB, &[(1, 10), (2, 3), (4, 0)]);
    assert_eq!((m.r(0), m.r(3), m.r(5) >> 27 & 1, m.r(6) >> 27 & 1), (16, 4, 0, 0));
    // 2 * 0x40000000 saturates to 0x7FFFFFFF.
    let m = run(QDADD_QDSUB, &[(1, 1), (2, 0x4000_0000), (4, 0)]);
    assert_eq!((m.r(0), m.r(5) >> 27 & 1), (0x7FFF_FFFF, 1));
    assert_eq!((m.r(3), m.r(6) >> 27 & 1), (0x8000_0002, 1), "1 - 0x7FFFFFFF");
}

#[rustfmt::skip]
const SADD16_SEL: &[u16] = &[
    0xfa91, 0xf002,  // 0x000: sadd16 r0, r1, r2
    0xfaa4, 0xf385,  // 0x004: sel r3, r4, r5
    0xbe00,          // 0x008: bkpt #0
];

/// SADD16 (A7.7.118): GE[1:0] and GE[3:2] set when each signed halfword sum is >= 0; SEL
/// (A7.7.124) takes byte i from Rn when GE[i] is set, else from Rm.
#[test]
fn sadd16_sets_ge_and_sel_uses_it() {
    let (rn, rm) = (0xAABB_CCDD, 0x1122_3344);
    // (a, b, result, GE, sel)
    let cases = [
        (0x7FFF_0001, 0x0001_FFFF, 0x8000_0000, 0b1111, 0xAABB_CCDD), // 32767 + 1; 1 + -1
        (0x8000_0001, 0xFFFF_FFFE, 0x7FFF_FFFF, 0b0000, 0x1122_3344), // -32768 + -1; 1 + -2
        (0x0005_FFFB, 0xFFFA_0005, 0xFFFF_0000, 0b0011, 0x1122_CCDD), // 5 + -6; -5 + 5
    ];
    for (a, b, result, ge, sel) in cases {
        let m = run(SADD16_SEL, &[(1, a), (2, b), (4, rn), (5, rm)]);
        assert_eq!((m.r(0), m.ge(), m.r(3)), (result, ge, sel), "sadd16 {a:#x}, {b:#x}");
        assert_eq!(m.nzcv(), 0, "NZCV untouched");
    }
}

#[rustfmt::skip]
const UADD8_SEL: &[u16] = &[
    0xfa81, 0xf042,  // 0x000: uadd8 r0, r1, r2
    0xfaa4, 0xf385,  // 0x004: sel r3, r4, r5
    0xbe00,          // 0x008: bkpt #0
];

/// UADD8 (A7.7.182): GE[i] set when byte sum i is >= 0x100.
#[test]
fn uadd8_sets_ge_and_sel_uses_it() {
    let (rn, rm) = (0xAABB_CCDD, 0x1122_3344);
    let cases = [
        (0x80FF_0102, 0x8001_0101, 0x0000_0203, 0b1100, 0xAABB_3344),
        (0x0102_0304, 0xFF00_0000, 0x0002_0304, 0b1000, 0xAA22_3344),
        (0xFFFF_FFFF, 0x0101_0101, 0x0000_0000, 0b1111, 0xAABB_CCDD),
        (0x7F7F_7F7F, 0x0000_0000, 0x7F7F_7F7F, 0b0000, 0x1122_3344),
    ];
    for (a, b, result, ge, sel) in cases {
        let m = run(UADD8_SEL, &[(1, a), (2, b), (4, rn), (5, rm)]);
        assert_eq!((m.r(0), m.ge(), m.r(3)), (result, ge, sel), "uadd8 {a:#x}, {b:#x}");
    }
}

#[rustfmt::skip]
const EXTEND: &[u16] = &[
    0xfa3f, 0xf081,  // 0x000: uxtb16 r0, r1
    0xfa3f, 0xf291,  // 0x004: uxtb16 r2, r1, ror #8
    0xfa14, 0xf381,  // 0x008: uxtah r3, r4, r1
    0xfa14, 0xf5a1,  // 0x00c: uxtah r5, r4, r1, ror #16
    0xfa04, 0xf687,  // 0x010: sxtah r6, r4, r7
    0xbe00,          // 0x014: bkpt #0
];

/// UXTB16, UXTAH, SXTAH with rotations (A7.7.223, A7.7.220, A7.7.180).
#[test]
fn extends() {
    let m = run(EXTEND, &[(1, 0x1234_5678), (4, 0x0000_FFFF), (7, 0x0000_8000)]);
    assert_eq!(m.r(0), 0x0034_0078, "uxtb16: bytes 0 and 2");
    assert_eq!(m.r(2), 0x0012_0056, "uxtb16 ror #8: bytes 1 and 3");
    assert_eq!(m.r(3), 0x0001_5677, "uxtah: 0xFFFF + 0x5678");
    assert_eq!(m.r(5), 0x0001_1233, "uxtah ror #16: 0xFFFF + 0x1234");
    assert_eq!(m.r(6), 0x0000_7FFF, "sxtah: 0xFFFF + -32768");
}

#[rustfmt::skip]
const PACK: &[u16] = &[
    0xeac1, 0x2002,  // 0x000: pkhbt r0, r1, r2, lsl #8
    0xeac1, 0x2322,  // 0x004: pkhtb r3, r1, r2, asr #8
    0xeac1, 0x0402,  // 0x008: pkhbt r4, r1, r2
    0xeac1, 0x0526,  // 0x00c: pkhtb r5, r1, r6, asr #32
    0xbe00,          // 0x010: bkpt #0
];

/// PKHBT / PKHTB (A7.7.100): BT = bottom of Rn, top of (Rm LSL n); TB = top of Rn, bottom of
/// (Rm ASR n), ASR #32 included.
#[test]
fn pack_halfwords() {
    let m = run(PACK, &[(1, 0x1111_2222), (2, 0x00AB_CDEF), (6, 0x8000_0000)]);
    assert_eq!(m.r(0), 0xABCD_2222);
    assert_eq!(m.r(3), 0x1111_ABCD);
    assert_eq!(m.r(4), 0x00AB_2222);
    assert_eq!(m.r(5), 0x1111_FFFF, "asr #32 of a negative value is all ones");
}

#[rustfmt::skip]
const DSP_MULTIPLY: &[u16] = &[
    0xf38c, 0x8800,  // 0x000: msr apsr_nzcvq, r12
    0xfb11, 0x3002,  // 0x004: smlabb r0, r1, r2, r3
    0xf3ef, 0x8700,  // 0x008: mrs r7, apsr
    0xf38c, 0x8800,  // 0x00c: msr apsr_nzcvq, r12
    0xfb21, 0x3402,  // 0x010: smlad r4, r1, r2, r3
    0xf3ef, 0x8800,  // 0x014: mrs r8, apsr
    0xf38c, 0x8800,  // 0x018: msr apsr_nzcvq, r12
    0xfb21, 0xf502,  // 0x01c: smuad r5, r1, r2
    0xf3ef, 0x8900,  // 0x020: mrs r9, apsr
    0xfb11, 0x3622,  // 0x024: smlatb r6, r1, r2, r3
    0xbe00,          // 0x028: bkpt #0
];

/// SMLABB, SMLATB, SMLAD, SMUAD (A7.7.133, A7.7.134, A7.7.148): signed 16x16 products; Q set
/// when the 32-bit result overflows (the result wraps).
#[test]
fn dsp_multiplies() {
    // r1 = (3, -2), r2 = (4, 5), r3 = 100.
    let m = run(DSP_MULTIPLY, &[(1, 0x0003_FFFE), (2, 0x0004_0005), (3, 100), (12, 0)]);
    assert_eq!(m.r(0), 90, "smlabb: -2 * 5 + 100");
    assert_eq!(m.r(6), 115, "smlatb: 3 * 5 + 100");
    assert_eq!(m.r(4), 102, "smlad: -10 + 12 + 100");
    assert_eq!(m.r(5), 2, "smuad: -10 + 12");
    assert_eq!([m.r(7) >> 27 & 1, m.r(8) >> 27 & 1, m.r(9) >> 27 & 1], [0, 0, 0]);

    // Halves of -32768: each product is 2^30.
    let m = run(DSP_MULTIPLY, &[(1, 0x8000_8000), (2, 0x8000_8000), (3, 0), (12, 0)]);
    assert_eq!((m.r(0), m.r(7) >> 27 & 1), (0x4000_0000, 0), "smlabb: 2^30, no overflow");
    assert_eq!((m.r(4), m.r(8) >> 27 & 1), (0x8000_0000, 1), "smlad: 2^31 overflows");
    assert_eq!((m.r(5), m.r(9) >> 27 & 1), (0x8000_0000, 1), "smuad: 2^31 overflows");
    assert_eq!(m.r(6), 0x4000_0000);

    let m = run(DSP_MULTIPLY, &[(1, 0x8000_8000), (2, 0x8000_8000), (3, 0x4000_0000), (12, 0)]);
    assert_eq!((m.r(0), m.r(7) >> 27 & 1), (0x8000_0000, 1), "smlabb: 2^30 + 2^30 overflows");
    assert_eq!((m.r(4), m.r(8) >> 27 & 1), (0xC000_0000, 1), "smlad: 3 * 2^30");
}

#[rustfmt::skip]
const USAD: &[u16] = &[
    0xfb71, 0xf002,  // 0x000: usad8 r0, r1, r2
    0xfb71, 0x4302,  // 0x004: usada8 r3, r1, r2, r4
    0xbe00,          // 0x008: bkpt #0
];

/// USAD8 / USADA8 (A7.7.196, A7.7.197): sum of absolute byte differences.
#[test]
fn sum_of_absolute_differences() {
    // |01-FF| + |FF-00| + |10-20| + |FF-FF| = 254 + 255 + 16 + 0 = 525.
    let m = run(USAD, &[(1, 0x01FF_10FF), (2, 0xFF00_20FF), (4, 1000)]);
    assert_eq!((m.r(0), m.r(3)), (525, 1525));
}
