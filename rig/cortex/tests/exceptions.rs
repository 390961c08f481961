//! Exceptions against the ARMv7-M Architecture Reference Manual (DDI 0403E, chapter B1.5):
//! entry and return, the stacked frame, EXC_RETURN, priorities and masking, PendSV, SysTick,
//! faults and their escalation, lockup, WFI. Expected values come from the manual.

mod common;

use bootproof_cortex::{RunState, Stop};
use common::{CFSR, CODE, HFSR, ICSR, Machine, NVIC_ISER0, RAM, SHCSR, STACK_TOP, SYST_CSR};

// Exception numbers (B1.5.2).
const HARDFAULT: usize = 3;
const USAGEFAULT: usize = 6;
const SVCALL: usize = 11;
const PENDSV: usize = 14;
const SYSTICK: usize = 15;
const IRQ0: usize = 16;
const IRQ1: usize = 17;

/// xPSR.T (bit 24): always set in a frame stacked from Thumb code.
const T_BIT: u32 = 1 << 24;
/// The stacked xPSR bit 9 records a 4-byte alignment adjustment of the frame (B1.5.7).
const ALIGN_BIT: u32 = 1 << 9;

// CFSR bits (B3.2.15): UFSR is CFSR[31:16].
const UNDEFINSTR: u32 = 1 << 16;
const INVSTATE: u32 = 1 << 17;
const NOCP: u32 = 1 << 19;
const DIVBYZERO: u32 = 1 << 25;
/// HFSR.FORCED (B3.2.16).
const FORCED: u32 = 1 << 30;

#[rustfmt::skip]
const SVC_MAIN: &[u16] = &[
    0xf384, 0x8800,  // 0x000: msr apsr_nzcvq, r4
    0xdf05,          // 0x004: svc #5
    0xf3ef, 0x8600,  // 0x006: mrs r6, apsr
    0xbe00,          // 0x00a: bkpt #0
];

#[rustfmt::skip]
const SVC_HANDLER: &[u16] = &[
    0xbe01,          // 0x000: bkpt #1
    0x2000,          // 0x002: movs r0, #0
    0x2463,          // 0x004: movs r4, #99
    0x9d06,          // 0x006: ldr r5, [sp, #24]
    0x4770,          // 0x008: bx lr
];

fn svc_machine() -> Machine {
    let mut m = Machine::new(SVC_MAIN).handler(SVCALL, SVC_HANDLER);
    m.set(&[(0, 0x10), (1, 0x11), (2, 0x12), (3, 0x13), (12, 0x1C), (14, 0x0800_0AA1), (4, 0xA000_0000)]);
    m
}

/// SVC (A7.7.175, B1.5.6 ExceptionEntry, B1.5.8 ExceptionReturn): the frame on the main stack
/// holds R0-R3, R12, LR, the address of the instruction after the SVC and xPSR; LR is
/// EXC_RETURN 0xFFFFFFF9 (thread mode, main stack); the return restores R0-R3, R12, LR and
/// the flags, while registers the handler changed outside the frame keep their new values.
#[test]
fn svc_stacks_a_frame_and_returns() {
    let mut m = svc_machine();
    m.run_to_bkpt(1);
    assert_eq!(m.ipsr(), SVCALL as u32);
    assert_eq!(m.r(14), 0xFFFF_FFF9, "EXC_RETURN: thread mode, MSP");
    let sp = m.r(13);
    assert_eq!(sp, STACK_TOP - 0x20, "8-byte aligned SP: no padding");
    let svc_return = CODE + 6; // svc at CODE + 4
    assert_eq!(m.frame(sp), [0x10, 0x11, 0x12, 0x13, 0x1C, 0x0800_0AA1, svc_return, 0xA000_0000 | T_BIT]);

    m.resume().run_to_bkpt(0);
    assert_eq!(m.ipsr(), 0, "back in thread mode");
    assert_eq!(m.r(0), 0x10, "r0 restored from the frame (the handler zeroed it)");
    assert_eq!(m.r(4), 99, "r4 is not in the frame: the handler's value stays");
    assert_eq!(m.r(5), svc_return, "the handler read the stacked return address");
    assert_eq!(m.r(6), 0xA000_0000, "APSR restored: N and C (the handler's MOVS set Z)");
    assert_eq!(m.r(13), STACK_TOP);
    assert_eq!(m.r(14), 0x0800_0AA1);
}

/// Exception entry from a stack pointer that is 4 mod 8 (CCR.STKALIGN is 1 out of reset):
/// the frame is placed 8-byte aligned, 4 bytes lower, and the stacked xPSR bit 9 is set; the
/// return adds the 4 bytes back (B1.5.7, PushStack / PopStack).
#[test]
fn exception_entry_aligns_the_frame_to_8_bytes() {
    let mut m = svc_machine();
    m.set(&[(13, STACK_TOP - 4)]);
    m.run_to_bkpt(1);
    let sp = m.r(13);
    // (0x2000FFFC - 0x20) with bit 2 cleared.
    assert_eq!(sp, STACK_TOP - 0x28);
    assert_eq!(m.frame(sp)[7], 0xA000_0000 | T_BIT | ALIGN_BIT, "stacked xPSR");
    m.resume().run_to_bkpt(0);
    assert_eq!(m.r(13), STACK_TOP - 4, "SP back to its misaligned value");
    assert_eq!(m.cpu.xpsr() & ALIGN_BIT, 0);
}

#[rustfmt::skip]
const SVC_PSP_MAIN: &[u16] = &[
    0xf388, 0x8809,  // 0x000: msr psp, r8
    0x2002,          // 0x004: movs r0, #2
    0xf380, 0x8814,  // 0x006: msr control, r0
    0xf3bf, 0x8f6f,  // 0x00a: isb sy
    0xdf00,          // 0x00e: svc #0
    0xf3ef, 0x8914,  // 0x010: mrs r9, control
    0xbe00,          // 0x014: bkpt #0
];

#[rustfmt::skip]
const BKPT1_RETURN: &[u16] = &[
    0xbe01,          // 0x000: bkpt #1
    0x4770,          // 0x002: bx lr
];

/// Thread mode on the process stack (CONTROL.SPSEL = 1): the frame goes on PSP, the handler
/// runs on MSP and LR is 0xFFFFFFFD; the return goes back to PSP (B1.5.6, B1.5.8).
#[test]
fn svc_from_the_process_stack() {
    let psp = RAM + 0x8000;
    let mut m = Machine::new(SVC_PSP_MAIN).handler(SVCALL, BKPT1_RETURN);
    m.set(&[(8, psp), (1, 0x1111)]);
    m.run_to_bkpt(1);
    assert_eq!(m.r(14), 0xFFFF_FFFD, "EXC_RETURN: thread mode, PSP");
    assert_eq!(m.cpu.sps(), (STACK_TOP, psp - 0x20), "handler on MSP; frame on PSP");
    let frame = m.frame(psp - 0x20);
    assert_eq!((frame[0], frame[1], frame[6]), (2, 0x1111, CODE + 0x10));
    m.resume().run_to_bkpt(0);
    assert_eq!(m.r(13), psp, "thread mode back on PSP");
    assert_eq!(m.r(9), 2, "CONTROL.SPSEL still set");
}

#[rustfmt::skip]
const LDREX_SVC_MAIN: &[u16] = &[
    0xe850, 0x1f00,  // 0x000: ldrex r1, [r0]
    0xdf00,          // 0x004: svc #0
    0xe840, 0x3200,  // 0x006: strex r2, r3, [r0]
    0xbe00,          // 0x00a: bkpt #0
];

#[rustfmt::skip]
const RETURN: &[u16] = &[
    0x4770,          // 0x000: bx lr
];

/// Exception entry and return clear the local exclusive monitor (B1.5.6 ExceptionTaken, B1.5.8
/// ExceptionReturn: ClearExclusiveLocal), so a STREX with an exception between it and its
/// LDREX fails.
#[test]
fn exception_clears_the_exclusive_monitor() {
    let base = RAM + 0x300;
    let mut m = Machine::new(LDREX_SVC_MAIN).handler(SVCALL, RETURN);
    m.write32(base, 5);
    m.set(&[(0, base), (3, 77)]);
    m.run_to_bkpt(0);
    assert_eq!(m.r(1), 5);
    assert_eq!(m.r(2), 1, "strex fails");
    assert_eq!(m.read32(base), 5);
}

#[rustfmt::skip]
const PREEMPT_MAIN: &[u16] = &[
    0x2180,          // 0x000: movs r1, #128
    0xf88a, 0x1300,  // 0x002: strb.w r1, [r10, #768]
    0xf88a, 0xc301,  // 0x006: strb.w r12, [r10, #769]
    0x2103,          // 0x00a: movs r1, #3
    0xf8ca, 0x1000,  // 0x00c: str.w r1, [r10]
    0x2101,          // 0x010: movs r1, #1
    0xf8ca, 0x1100,  // 0x012: str.w r1, [r10, #256]
    0xf3bf, 0x8f4f,  // 0x016: dsb sy
    0xf3bf, 0x8f6f,  // 0x01a: isb sy
    0x013f,          // 0x01e: lsls r7, r7, #4
    0x3704,          // 0x020: adds r7, #4
    0xbe00,          // 0x022: bkpt #0
];

#[rustfmt::skip]
const PREEMPT_IRQ0: &[u16] = &[
    0x013f,          // 0x000: lsls r7, r7, #4
    0x3701,          // 0x002: adds r7, #1
    0x46f1,          // 0x004: mov r9, lr
    0x2102,          // 0x006: movs r1, #2
    0xf8ca, 0x1100,  // 0x008: str.w r1, [r10, #256]
    0xf3bf, 0x8f4f,  // 0x00c: dsb sy
    0xf3bf, 0x8f6f,  // 0x010: isb sy
    0x013f,          // 0x014: lsls r7, r7, #4
    0x3703,          // 0x016: adds r7, #3
    0x4770,          // 0x018: bx lr
];

#[rustfmt::skip]
const PREEMPT_IRQ1: &[u16] = &[
    0x013f,          // 0x000: lsls r7, r7, #4
    0x3702,          // 0x002: adds r7, #2
    0x46f0,          // 0x004: mov r8, lr
    0x4770,          // 0x006: bx lr
];

/// IRQ0 (priority 0x80) pended through NVIC_ISPR0 runs; it pends IRQ1, whose priority comes
/// from r12. A handler is preempted only by a strictly higher priority (lower value) (B1.5.4);
/// otherwise IRQ1 runs after IRQ0 returns. r7 logs the order (1: IRQ0, 2: IRQ1, 3: IRQ0 after
/// pending IRQ1, 4: thread). The nested handler's LR is 0xFFFFFFF1 (return to handler mode).
#[test]
fn interrupt_priorities_decide_preemption() {
    // (IRQ1 priority, log, IRQ1's EXC_RETURN)
    let cases = [
        (0x40, 0x1234, 0xFFFF_FFF1), // higher: preempts
        (0x80, 0x1324, 0xFFFF_FFF9), // equal: waits, then runs from thread mode
        (0xC0, 0x1324, 0xFFFF_FFF9), // lower: waits
    ];
    for (prio, log, lr) in cases {
        let mut m = Machine::new(PREEMPT_MAIN).handler(IRQ0, PREEMPT_IRQ0).handler(IRQ1, PREEMPT_IRQ1);
        m.set(&[(10, NVIC_ISER0), (12, prio), (7, 0)]);
        m.run_to_bkpt(0);
        assert_eq!(m.r(7), log, "IRQ1 priority {prio:#x}: order");
        assert_eq!(m.r(9), 0xFFFF_FFF9, "IRQ0 entered from thread mode");
        assert_eq!(m.r(8), lr, "IRQ1 priority {prio:#x}: EXC_RETURN");
        assert_eq!(m.r(13), STACK_TOP);
    }
}

#[rustfmt::skip]
const MASK_MAIN: &[u16] = &[
    0x2180,          // 0x000: movs r1, #128
    0xf88a, 0x1300,  // 0x002: strb.w r1, [r10, #768]
    0x2101,          // 0x006: movs r1, #1
    0xf8ca, 0x1000,  // 0x008: str.w r1, [r10]
    0xb672,          // 0x00c: cpsid i
    0xf8ca, 0x1100,  // 0x00e: str.w r1, [r10, #256]
    0xf3bf, 0x8f4f,  // 0x012: dsb sy
    0xf3bf, 0x8f6f,  // 0x016: isb sy
    0x013f,          // 0x01a: lsls r7, r7, #4
    0x3701,          // 0x01c: adds r7, #1
    0x2280,          // 0x01e: movs r2, #128
    0xf382, 0x8811,  // 0x020: msr basepri, r2
    0xb662,          // 0x024: cpsie i
    0xf3bf, 0x8f6f,  // 0x026: isb sy
    0x013f,          // 0x02a: lsls r7, r7, #4
    0x3702,          // 0x02c: adds r7, #2
    0xf8da, 0x3100,  // 0x02e: ldr.w r3, [r10, #256]
    0x2290,          // 0x032: movs r2, #144
    0xf382, 0x8811,  // 0x034: msr basepri, r2
    0xf3bf, 0x8f6f,  // 0x038: isb sy
    0x013f,          // 0x03c: lsls r7, r7, #4
    0x3703,          // 0x03e: adds r7, #3
    0xbe00,          // 0x040: bkpt #0
];

#[rustfmt::skip]
const MASK_IRQ0: &[u16] = &[
    0x013f,          // 0x000: lsls r7, r7, #4
    0x370a,          // 0x002: adds r7, #10
    0xf8da, 0x4100,  // 0x004: ldr.w r4, [r10, #256]
    0x4770,          // 0x008: bx lr
];

/// PRIMASK masks every configurable priority; BASEPRI masks priorities at or below its value
/// (an exception preempts only if its group priority is lower than BASEPRI's) (B1.5.4,
/// B1.4.3). A masked interrupt stays pending (ISPR reads 1); entry clears the pending bit.
#[test]
fn primask_and_basepri_mask_interrupts() {
    let mut m = Machine::new(MASK_MAIN).handler(IRQ0, MASK_IRQ0);
    m.set(&[(10, NVIC_ISER0), (7, 0)]);
    m.run_to_bkpt(0);
    // 1: masked by PRIMASK; 2: masked by BASEPRI 0x80; A: taken once BASEPRI is 0x90; 3.
    assert_eq!(m.r(7), 0x12A3);
    assert_eq!(m.r(3), 1, "IRQ0 pending while masked");
    assert_eq!(m.r(4), 0, "not pending in its handler");
}

#[rustfmt::skip]
const PENDSV_MAIN: &[u16] = &[
    0x21f0,          // 0x000: movs r1, #240
    0xf88a, 0x1c22,  // 0x002: strb.w r1, [r10, #3106]
    0x2180,          // 0x006: movs r1, #128
    0xf88a, 0x1300,  // 0x008: strb.w r1, [r10, #768]
    0x2101,          // 0x00c: movs r1, #1
    0xf8ca, 0x1000,  // 0x00e: str.w r1, [r10]
    0xf8ca, 0x1100,  // 0x012: str.w r1, [r10, #256]
    0xf3bf, 0x8f4f,  // 0x016: dsb sy
    0xf3bf, 0x8f6f,  // 0x01a: isb sy
    0x013f,          // 0x01e: lsls r7, r7, #4
    0x3704,          // 0x020: adds r7, #4
    0xbe00,          // 0x022: bkpt #0
];

#[rustfmt::skip]
const PENDSV_IRQ0: &[u16] = &[
    0x013f,          // 0x000: lsls r7, r7, #4
    0x3701,          // 0x002: adds r7, #1
    0xf04f, 0x5180,  // 0x004: mov.w r1, #268435456
    0xf8ca, 0x1c04,  // 0x008: str.w r1, [r10, #3076]
    0xf3bf, 0x8f4f,  // 0x00c: dsb sy
    0xf3bf, 0x8f6f,  // 0x010: isb sy
    0xf8da, 0x5c04,  // 0x014: ldr.w r5, [r10, #3076]
    0x013f,          // 0x018: lsls r7, r7, #4
    0x3702,          // 0x01a: adds r7, #2
    0x4770,          // 0x01c: bx lr
];

#[rustfmt::skip]
const PENDSV_HANDLER: &[u16] = &[
    0x013f,          // 0x000: lsls r7, r7, #4
    0x3703,          // 0x002: adds r7, #3
    0xf8da, 0x4c04,  // 0x004: ldr.w r4, [r10, #3076]
    0x4770,          // 0x008: bx lr
];

/// PendSV set through ICSR.PENDSVSET (B3.2.4) at the lowest priority (0xF0) from an IRQ
/// handler at 0x80: it stays pending (ICSR shows PENDSVSET and VECTPENDING = 14) until the
/// IRQ returns, then runs before thread mode resumes.
#[test]
fn pendsv_runs_when_nothing_higher_is_active() {
    let mut m = Machine::new(PENDSV_MAIN).handler(IRQ0, PENDSV_IRQ0).handler(PENDSV, PENDSV_HANDLER);
    m.set(&[(10, NVIC_ISER0), (7, 0)]);
    m.run_to_bkpt(0);
    assert_eq!(m.r(7), 0x1234);
    let icsr = m.r(5);
    assert_ne!(icsr & (1 << 28), 0, "PENDSVSET read in IRQ0");
    assert_eq!(icsr & 0x1FF, IRQ0 as u32, "VECTACTIVE in IRQ0");
    assert_eq!((icsr >> 12) & 0x1FF, PENDSV as u32, "VECTPENDING in IRQ0");
    let icsr = m.r(4);
    assert_eq!(icsr & (1 << 28), 0, "PENDSVSET clear in PendSV");
    assert_eq!(icsr & 0x1FF, PENDSV as u32, "VECTACTIVE in PendSV");
    assert_eq!(m.read32(ICSR) & (1 << 28), 0);
}

#[rustfmt::skip]
const SYSTICK_MAIN: &[u16] = &[
    0x2163,          // 0x000: movs r1, #99
    0xf8c9, 0x1004,  // 0x002: str.w r1, [r9, #4]
    0x2100,          // 0x006: movs r1, #0
    0xf8c9, 0x1008,  // 0x008: str.w r1, [r9, #8]
    0x2107,          // 0x00c: movs r1, #7
    0xf8c9, 0x1000,  // 0x00e: str.w r1, [r9]
    0xbe01,          // 0x012: bkpt #1
    0x3601,          // 0x014: loop: adds r6, #1
    0xe7fd,          // 0x016: b loop
];

#[rustfmt::skip]
const SYSTICK_HANDLER: &[u16] = &[
    0xf8d9, 0x4000,  // 0x000: ldr.w r4, [r9]
    0xf8d9, 0x3000,  // 0x004: ldr.w r3, [r9]
    0x3501,          // 0x008: adds r5, #1
    0xbe02,          // 0x00a: bkpt #2
    0x4770,          // 0x00c: bx lr
];

/// SysTick (B3.3): enabled with RVR = 99 on the processor clock (CLKSOURCE = 1) and TICKINT,
/// after clearing CVR, it reloads and counts down, reaching 0 every RVR + 1 = 100 cycles;
/// each time it sets COUNTFLAG (cleared by reading CSR) and pends the SysTick exception.
/// The core charges one cycle per simple instruction (its documented model), so entries are
/// 100 cycles apart up to the length of the interrupted instruction and the handler prefix.
#[test]
fn systick_fires_after_its_reload() {
    let mut m = Machine::new(SYSTICK_MAIN).handler(SYSTICK, SYSTICK_HANDLER);
    m.set(&[(9, SYST_CSR), (5, 0), (6, 0)]);
    m.run_to_bkpt(1);
    let enabled = m.cpu.cycles();
    m.resume().run_to_bkpt(2);
    let first = m.cpu.cycles();
    assert_eq!(m.ipsr(), SYSTICK as u32);
    assert_eq!(m.r(5), 1);
    assert_ne!(m.r(4) & (1 << 16), 0, "COUNTFLAG set");
    assert_eq!(m.r(3) & (1 << 16), 0, "COUNTFLAG cleared by the first read");
    assert!(m.r(6) > 10, "the thread loop ran before the first tick: {}", m.r(6));
    let delay = first - enabled;
    assert!((100..=130).contains(&delay), "first SysTick {delay} cycles after enabling");

    m.resume().run_to_bkpt(2);
    let period = m.cpu.cycles() - first;
    assert_eq!(m.r(5), 2);
    assert!((97..=103).contains(&period), "SysTick period {period} cycles");
}

#[rustfmt::skip]
const WFI_ALONE: &[u16] = &[
    0xbf30,          // 0x000: wfi
    0xbe00,          // 0x002: bkpt #0
];

/// WFI with nothing pending sleeps: `run` returns `Stop::Sleep`, and keeps doing so while
/// nothing happens (B1.5.18).
#[test]
fn wfi_with_nothing_pending_sleeps() {
    let mut m = Machine::new(WFI_ALONE);
    assert_eq!(m.run(), Stop::Sleep);
    assert_eq!(m.cpu.state(), RunState::WaitInterrupt);
    assert_eq!(m.cpu.next_event(), u64::MAX, "nothing will wake it");
    assert_eq!(m.run(), Stop::Sleep);
    assert_eq!(m.cpu.pc(), CODE + 2, "WFI completed; the next instruction waits");
}

#[rustfmt::skip]
const WFI_SYSTICK_MAIN: &[u16] = &[
    0x2163,          // 0x000: movs r1, #99
    0xf8c9, 0x1004,  // 0x002: str.w r1, [r9, #4]
    0x2100,          // 0x006: movs r1, #0
    0xf8c9, 0x1008,  // 0x008: str.w r1, [r9, #8]
    0x2107,          // 0x00c: movs r1, #7
    0xf8c9, 0x1000,  // 0x00e: str.w r1, [r9]
    0xbf30,          // 0x012: wfi
    0x013f,          // 0x014: lsls r7, r7, #4
    0x3702,          // 0x016: adds r7, #2
    0xbe00,          // 0x018: bkpt #0
];

#[rustfmt::skip]
const WFI_SYSTICK_HANDLER: &[u16] = &[
    0x013f,          // 0x000: lsls r7, r7, #4
    0x3701,          // 0x002: adds r7, #1
    0x2100,          // 0x004: movs r1, #0
    0xf8c9, 0x1000,  // 0x006: str.w r1, [r9]
    0x4770,          // 0x00a: bx lr
];

/// WFI woken by SysTick: the caller advances time to `Cpu::next_event`; the handler runs,
/// then the instruction after the WFI.
#[test]
fn wfi_wakes_on_systick() {
    let mut m = Machine::new(WFI_SYSTICK_MAIN).handler(SYSTICK, WFI_SYSTICK_HANDLER);
    m.set(&[(9, SYST_CSR), (7, 0)]);
    assert_eq!(m.run(), Stop::Sleep);
    let wake = m.cpu.next_event();
    assert!(wake > m.cpu.cycles() && wake != u64::MAX);
    m.cpu.idle_until(wake);
    m.run_to_bkpt(0);
    assert_eq!(m.r(7), 0x12);
}

#[rustfmt::skip]
const WFI_PRIMASK_MAIN: &[u16] = &[
    0x2101,          // 0x000: movs r1, #1
    0xf8ca, 0x1000,  // 0x002: str.w r1, [r10]
    0xb672,          // 0x006: cpsid i
    0xf8ca, 0x1100,  // 0x008: str.w r1, [r10, #256]
    0xbf30,          // 0x00c: wfi
    0x013f,          // 0x00e: lsls r7, r7, #4
    0x3701,          // 0x010: adds r7, #1
    0xb662,          // 0x012: cpsie i
    0xf3bf, 0x8f6f,  // 0x014: isb sy
    0x013f,          // 0x018: lsls r7, r7, #4
    0x3702,          // 0x01a: adds r7, #2
    0xbe00,          // 0x01c: bkpt #0
];

#[rustfmt::skip]
const LOG_A: &[u16] = &[
    0x013f,          // 0x000: lsls r7, r7, #4
    0x370a,          // 0x002: adds r7, #10
    0x4770,          // 0x004: bx lr
];

/// WFI returns at once when an interrupt is pending that would preempt if PRIMASK were clear,
/// without taking it; the interrupt is taken when PRIMASK is cleared (B1.5.18, B1.4.3).
#[test]
fn wfi_with_primask_set_wakes_without_taking_the_interrupt() {
    let mut m = Machine::new(WFI_PRIMASK_MAIN).handler(IRQ0, LOG_A);
    m.set(&[(10, NVIC_ISER0), (7, 0)]);
    m.run_to_bkpt(0);
    assert_eq!(m.r(7), 0x1A2);
}

#[rustfmt::skip]
const UDF_MAIN: &[u16] = &[
    0xbf00,          // 0x000: nop
    0xde00,          // 0x002: udf #0
    0xbe00,          // 0x004: bkpt #0
];

#[rustfmt::skip]
const BKPT3: &[u16] = &[
    0xbe03,          // 0x000: bkpt #3
];

/// An undefined instruction with UsageFault disabled (SHCSR.USGFAULTENA = 0 at reset) escalates
/// to HardFault: HFSR.FORCED and CFSR.UNDEFINSTR are set, the stacked return address is the
/// UDF's (B1.5.14, B3.2.15, B3.2.16).
#[test]
fn usage_fault_escalates_to_hard_fault_when_disabled() {
    let mut m = Machine::new(UDF_MAIN).handler(HARDFAULT, BKPT3);
    m.run_to_bkpt(3);
    assert_eq!(m.ipsr(), HARDFAULT as u32);
    assert_eq!(m.read32(HFSR), FORCED);
    assert_eq!(m.read32(CFSR), UNDEFINSTR);
    assert_eq!(m.r(14), 0xFFFF_FFF9);
    let frame = m.frame(m.r(13));
    assert_eq!(frame[6], CODE + 2, "stacked PC: the faulting UDF");
    assert_eq!(frame[7], T_BIT);
}

#[rustfmt::skip]
const UDF_USAGE_ENABLED_MAIN: &[u16] = &[
    0xf8da, 0x1c24,  // 0x000: ldr.w r1, [r10, #3108]
    0xf441, 0x2180,  // 0x004: orr r1, r1, #262144
    0xf8ca, 0x1c24,  // 0x008: str.w r1, [r10, #3108]
    0xf3bf, 0x8f4f,  // 0x00c: dsb sy
    0xf3bf, 0x8f6f,  // 0x010: isb sy
    0xde00,          // 0x014: udf #0
    0xbe00,          // 0x016: bkpt #0
];

#[rustfmt::skip]
const BKPT6: &[u16] = &[
    0xbe06,          // 0x000: bkpt #6
];

/// With SHCSR.USGFAULTENA set the same UDF takes UsageFault itself; HFSR stays clear and
/// SHCSR.USGFAULTACT (bit 3) shows it active.
#[test]
fn usage_fault_when_enabled() {
    let mut m = Machine::new(UDF_USAGE_ENABLED_MAIN).handler(USAGEFAULT, BKPT6);
    m.set(&[(10, NVIC_ISER0)]);
    m.run_to_bkpt(6);
    assert_eq!(m.ipsr(), USAGEFAULT as u32);
    assert_eq!(m.read32(CFSR), UNDEFINSTR);
    assert_eq!(m.read32(HFSR), 0);
    assert_ne!(m.read32(SHCSR) & (1 << 3), 0);
    let frame = m.frame(m.r(13));
    assert_eq!(frame[6], CODE + 0x14, "stacked PC: the UDF");
}

#[rustfmt::skip]
const NOCP_MAIN: &[u16] = &[
    0xf8da, 0x1c24,  // 0x000: ldr.w r1, [r10, #3108]
    0xf441, 0x2180,  // 0x004: orr r1, r1, #262144
    0xf8ca, 0x1c24,  // 0x008: str.w r1, [r10, #3108]
    0xf3bf, 0x8f4f,  // 0x00c: dsb sy
    0xf3bf, 0x8f6f,  // 0x010: isb sy
    0xee30, 0x0a81,  // 0x014: vadd.f32 s0, s1, s2
    0xbe00,          // 0x018: bkpt #0
];

/// A floating-point instruction with CPACR granting no coprocessor access (its reset value):
/// UsageFault with CFSR.NOCP (B3.2.15, B3.2.20).
#[test]
fn floating_point_instruction_is_a_nocp_usage_fault() {
    let mut m = Machine::new(NOCP_MAIN).handler(USAGEFAULT, BKPT6);
    m.set(&[(10, NVIC_ISER0)]);
    m.run_to_bkpt(6);
    assert_eq!(m.read32(CFSR), NOCP);
    assert_eq!(m.frame(m.r(13))[6], CODE + 0x14, "stacked PC: the VADD");
}

#[rustfmt::skip]
const DIV0_TRAP_MAIN: &[u16] = &[
    0xf8da, 0x1c24,  // 0x000: ldr.w r1, [r10, #3108]
    0xf441, 0x2180,  // 0x004: orr r1, r1, #262144
    0xf8ca, 0x1c24,  // 0x008: str.w r1, [r10, #3108]
    0xf8da, 0x1c14,  // 0x00c: ldr.w r1, [r10, #3092]
    0xf041, 0x0110,  // 0x010: orr r1, r1, #16
    0xf8ca, 0x1c14,  // 0x014: str.w r1, [r10, #3092]
    0xf3bf, 0x8f4f,  // 0x018: dsb sy
    0xf3bf, 0x8f6f,  // 0x01c: isb sy
    0xfb92, 0xf0f3,  // 0x020: sdiv r0, r2, r3
    0xbe00,          // 0x024: bkpt #0
];

/// SDIV by zero with CCR.DIV_0_TRP set: UsageFault with CFSR.DIVBYZERO (A7.7.127, B3.2.8).
#[test]
fn divide_by_zero_traps_when_enabled() {
    let mut m = Machine::new(DIV0_TRAP_MAIN).handler(USAGEFAULT, BKPT6);
    m.set(&[(10, NVIC_ISER0), (0, 0xAAAA), (2, 10), (3, 0)]);
    m.run_to_bkpt(6);
    assert_eq!(m.read32(CFSR), DIVBYZERO);
    assert_eq!(m.frame(m.r(13))[6], CODE + 0x20, "stacked PC: the SDIV");
    assert_eq!(m.r(0), 0xAAAA, "the destination is not written");
}

#[rustfmt::skip]
const HARDFAULT_UDF: &[u16] = &[
    0xde01,          // 0x000: udf #1
];

/// A fault in the HardFault handler (priority -1) cannot be taken: lockup (B1.5.15).
#[test]
fn fault_in_hard_fault_handler_locks_up() {
    let mut m = Machine::new(UDF_MAIN).handler(HARDFAULT, HARDFAULT_UDF);
    assert!(matches!(m.run(), Stop::Lockup { .. }));
    assert_eq!(m.cpu.state(), RunState::Lockup);
    assert!(matches!(m.run(), Stop::Lockup { .. }), "stays locked up");
}

#[rustfmt::skip]
const HARDFAULT_LOAD: &[u16] = &[
    0x6808,          // 0x000: ldr r0, [r1]
    0xbe03,          // 0x002: bkpt #3
];

/// The same with a precise bus fault (a load from unmapped memory) in the HardFault handler.
#[test]
fn bus_fault_in_hard_fault_handler_locks_up() {
    let mut m = Machine::new(UDF_MAIN).handler(HARDFAULT, HARDFAULT_LOAD);
    m.set(&[(1, 0x4000_0000)]);
    assert!(matches!(m.run(), Stop::Lockup { .. }));
}

#[rustfmt::skip]
const POP_EVEN_PC_MAIN: &[u16] = &[
    0xf8da, 0x1c24,  // 0x000: ldr.w r1, [r10, #3108]
    0xf441, 0x2180,  // 0x004: orr r1, r1, #262144
    0xf8ca, 0x1c24,  // 0x008: str.w r1, [r10, #3108]
    0xf3bf, 0x8f4f,  // 0x00c: dsb sy
    0xf3bf, 0x8f6f,  // 0x010: isb sy
    0xb401,          // 0x014: push {r0}
    0xbd00,          // 0x016: pop {pc}
    0xbe00,          // 0x018: bkpt #0
];

/// POP {PC} of an address with bit 0 clear (A7.7.99 LoadWritePC, A2.3.1 BXWritePC): the
/// branch happens with EPSR.T = 0, and the next instruction takes an INVSTATE UsageFault. The
/// POP completed, so the stacked return address is the branch target and SP is popped.
#[test]
fn pop_pc_with_bit_0_clear_is_an_invstate_fault_at_the_target() {
    let target = CODE + 0x40;
    let mut m = Machine::new(POP_EVEN_PC_MAIN).handler(USAGEFAULT, BKPT6);
    m.set(&[(10, NVIC_ISER0), (0, target)]);
    m.run_to_bkpt(6);
    assert_eq!(m.read32(CFSR), INVSTATE);
    let sp = m.r(13);
    assert_eq!(sp, STACK_TOP - 0x20, "the POP restored SP before the fault");
    let frame = m.frame(sp);
    assert_eq!(frame[6], target, "stacked PC: the branch target");
    assert_eq!(frame[7] & T_BIT, 0, "stacked EPSR.T is 0");
}
