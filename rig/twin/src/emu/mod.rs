//! Real firmware on the twin: the H723's Cortex-M7 emulated instruction by instruction
//! ([`bootproof_cortex`]), over the board's memory and register-level peripheral models
//! ([`periph`], [`bus`]).
//!
//! When the twin boots an image that carries no stand-in descriptor, it runs it here, on every
//! family: the STM32H7 with register models of the peripherals its firmware uses, the F4 and
//! G0 with their reset-cause register only (enough for a beacon-only firmware) at 16 MHz. A
//! blank or implausible vector table goes through the core too, and locks it up as on the chip:
//!
//! * **Time**: the core runs in quanta of [`QUANTUM`] of board time; executed cycles at the
//!   core clock the RCC model computes (64 MHz HSI after reset; PLLs and prescalers change it)
//!   advance the twin's virtual clock, so timelines stay exact. In WFI/WFE the runner jumps to
//!   the next timer or flash event, or wakes at once when a CAN frame or a serial byte arrives.
//! * **CAN**: when FDCAN1 leaves INIT, the node joins the twin's bus at the rates its bit-timing
//!   registers give over the kernel clock; frames go both ways through the message RAM.
//! * **Serial**: USART3 is the board's end of the serial link, at the frame format its registers
//!   set.
//! * **Flash**: the FLASH controller programs and erases the board's flash in real program and
//!   erase time; a reset or power cut in between tears the word or sector, as everywhere in the
//!   twin.
//! * **Resets**: AIRCR.SYSRESETREQ is a software reset (its RCC_RSR flags); a fault the core
//!   cannot handle locks it up; executing system memory hands over to the ROM bootloader model.
//! * **Accesses outside the models** are recorded with the address and the instruction's PC;
//!   in strict mode ([`crate::TwinOptions::strict_mmio`]) they are bus faults.

pub mod bus;
pub mod periph;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bootproof_cortex::decode::Size;
use bootproof_cortex::{Bus as _, Cpu, RunState, Stop};
use bootproof_fixtures::ResetKind;
use bootproof_rig::CanEvent;
use bootproof_rig::can::{Bitrates, CanFrame};
use bootproof_rig::console::SerialConfig;
use bootproof_rig::time::Instant;
use tokio::sync::mpsc;

use crate::board::{Gate, Mcu};
use crate::bus::CanPort;
use crate::uart::BoardRx;
use bus::SocBus;
use periph::{Oscillators, Peripherals};

/// Board time the core runs between looks at the outside world.
pub const QUANTUM: Duration = Duration::from_micros(50);

/// How the emulated firmware was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A reset: SP and PC from the vector table, VTOR = its address.
    Reset,
    /// The ROM bootloader's Go: SP and PC from the vector table, no reset, VTOR left as the
    /// ROM set it (the application must set its own).
    Go,
}

/// Counters of one emulated run, for benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Instructions executed.
    pub instructions: u64,
    /// Core cycles.
    pub cycles: u64,
    /// Wall time spent executing.
    pub wall: Duration,
}

/// Process-wide totals across emulated runs (for `bootproof suite` and the benchmarks).
pub fn totals() -> Stats {
    let t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    *t
}

static TOTALS: std::sync::Mutex<Stats> =
    std::sync::Mutex::new(Stats { instructions: 0, cycles: 0, wall: Duration::ZERO });

/// The core's registers, for the probe.
fn registers(cpu: &Cpu) -> bootproof_rig::probe::CoreRegisters {
    let mut r = [0u32; 16];
    for (i, v) in r.iter_mut().enumerate() {
        *v = cpu.reg(i);
    }
    r[15] = cpu.pc();
    let (msp, psp) = cpu.sps();
    bootproof_rig::probe::CoreRegisters { r, xpsr: cpu.xpsr(), msp, psp }
}

/// What is wrong with a vector table at a glance (prefixed to a lockup's reason), or nothing.
fn vector_table_hint(profile: &bootproof_fixtures::BoardProfile, vt: u32, sp: u32, reset: u32) -> String {
    if sp == 0xFFFF_FFFF && reset == 0xFFFF_FFFF {
        return format!("blank flash at boot address {vt:#010x}: ");
    }
    let sp_ok = profile.ram.iter().any(|r| sp > r.base && sp <= r.base + r.size) && sp.is_multiple_of(4);
    let reset_ok =
        reset & 1 == 1 && (profile.flash.contains(reset & !1) || profile.ram_region(reset & !1, 2).is_some());
    if sp_ok && reset_ok {
        String::new()
    } else {
        format!("implausible vector table at {vt:#010x} (SP {sp:#010x}, reset {reset:#010x}): ")
    }
}

/// The peripheral set for `profile`. The STM32H7 has register models of its peripherals
/// ([`periph`]); the other families run on the same core with only their reset-cause register
/// modelled, enough for firmware that reads its reset flags and reports through RAM (anything
/// else is an unmodelled access). The G0's Cortex-M0+ runs on the ARMv7E-M core: ARMv6-M is a
/// subset of its instructions.
fn peripherals(profile: &bootproof_fixtures::BoardProfile) -> Peripherals {
    use bootproof_fixtures::Family;
    match profile.family {
        Family::Stm32h7 => Peripherals::new(Oscillators::default()),
        // F4: HSI 16 MHz; G0: HSI16 (RM0390 §6.2.2, RM0444 §5.2.2).
        _ => Peripherals::generic(periph::Generic {
            reset_register: profile.reset.register,
            rmvf_bit: profile.reset.rmvf_bit,
            core_hz: 16_000_000,
        }),
    }
}

/// Cycle ↔ time at a core clock that may change.
struct Clock {
    time_base: Instant,
    cycle_base: u64,
    hz: u64,
}

impl Clock {
    fn time_of(&self, cycles: u64) -> Instant {
        let d = cycles.saturating_sub(self.cycle_base);
        self.time_base
            + Duration::from_nanos((d as u128 * 1_000_000_000 / self.hz as u128).min(u64::MAX as u128) as u64)
    }

    fn cycles_at(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.time_base);
        self.cycle_base + (d.as_nanos() * self.hz as u128 / 1_000_000_000) as u64
    }

    fn rebase(&mut self, cycles: u64, hz: u32) {
        if hz as u64 != self.hz {
            self.time_base = self.time_of(cycles);
            self.cycle_base = cycles;
            self.hz = hz.max(1) as u64;
        }
    }

    fn quantum(&self) -> u64 {
        (QUANTUM.as_nanos() * self.hz as u128 / 1_000_000_000) as u64
    }
}

enum CanIn {
    TxDone(u32, bool),
    Frame(CanFrame),
}

/// The CAN node: a task owning the bus port, transmitting requests in order and forwarding
/// received frames.
struct CanNode {
    rates: Bitrates,
    tx: mpsc::UnboundedSender<(u32, CanFrame)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CanNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn can_task(
    mut port: CanPort,
    mut req: mpsc::UnboundedReceiver<(u32, CanFrame)>,
    out: mpsc::UnboundedSender<CanIn>,
    notify: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            r = req.recv() => {
                let Some((i, f)) = r else { return };
                let acked = port.transmit(&f).await.unwrap_or(false);
                let _ = out.send(CanIn::TxDone(i, acked));
                notify.notify_one();
            }
            ev = port.next_event() => {
                match ev {
                    Some(CanEvent::Frame(f)) => {
                        let _ = out.send(CanIn::Frame(f));
                        notify.notify_one();
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        }
    }
}

struct UartWriter {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UartWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Run the firmware whose vector table is at `vt` until the board resets under it.
pub(crate) async fn run(mcu: Mcu, vt: u32, entry: Entry, strict: bool) {
    let board = mcu.board().clone();
    let profile = Arc::new(board.profile().as_ref().clone());
    let mut cpu = Cpu::new();
    let mut p = peripherals(&profile);
    let mut log: Vec<(u64, String)> = Vec::new();
    let mut hint = String::new();
    let flash = (profile.flash.base, profile.flash.end());
    {
        let mut st = board.state();
        if !mcu.alive_in(&st) {
            return;
        }
        let mut bus = SocBus { st: &mut st, p: &mut p, board: &board, profile: &profile, strict, flash, log: &mut log };
        let ctx = bootproof_cortex::Ctx { cycles: 0, pc: vt };
        if let (Ok(sp), Ok(reset)) = (bus.read(vt, Size::Word, ctx), bus.read(vt + 4, Size::Word, ctx)) {
            hint = vector_table_hint(&profile, vt, sp, reset);
        }
        match entry {
            Entry::Reset => {
                if let Err(why) = cpu.reset(&mut bus, vt) {
                    drop(st);
                    mcu.fault(format!("{hint}{why}"));
                    return;
                }
            }
            Entry::Go => {
                let sp = bus.read(vt, Size::Word, bootproof_cortex::Ctx { cycles: 0, pc: vt });
                let pc = bus.read(vt + 4, Size::Word, bootproof_cortex::Ctx { cycles: 0, pc: vt });
                match (sp, pc) {
                    (Ok(sp), Ok(pc)) if pc & 1 == 1 => {
                        cpu.jump(sp, pc);
                        cpu.scs.vtor = profile.system_memory.bootloader_entry;
                        if profile.rom.go_leaves_configured {
                            bus.p.rom_go_leftovers();
                        }
                    }
                    _ => {
                        drop(st);
                        mcu.fault(format!("Go to {vt:#010x}: no Thumb reset vector there"));
                        return;
                    }
                }
            }
        }
    }
    {
        let mut st = board.state();
        if mcu.alive_in(&st) {
            st.regs = Some(registers(&cpu));
            st.core.pc = cpu.pc();
        }
    }
    mcu.log(format!(
        "emulated Cortex-M7 starts at {:#010x} (vector table {vt:#010x}, SP {:#010x}, core clock {} MHz)",
        cpu.pc(),
        cpu.reg(13),
        p.core_hz() / 1_000_000
    ));
    let mut clock = Clock { time_base: Instant::now(), cycle_base: cpu.cycles(), hz: p.core_hz() as u64 };
    let wake = Arc::new(tokio::sync::Notify::new());
    let (can_in_tx, mut can_in) = mpsc::unbounded_channel::<CanIn>();
    let mut can_node: Option<CanNode> = None;
    let mut uart_cfg: Option<SerialConfig> = None;
    let uart = board.uart().clone();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let uart_writer = {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let link = uart.clone();
        let flight = in_flight.clone();
        let notify = wake.clone();
        let task = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                link.board_write(&bytes).await;
                flight.fetch_sub(bytes.len(), Ordering::SeqCst);
                notify.notify_one();
            }
        });
        UartWriter { tx, in_flight: in_flight.clone(), task }
    };
    let uart_notify = uart.board_notify();
    let mut at_bkpt = false;
    loop {
        let stepping = board.run_gate().await == Gate::Step;
        if at_bkpt {
            cpu.resume_from_bkpt();
            at_bkpt = false;
        }
        // Inputs that arrived since the last quantum.
        while let Ok(ev) = can_in.try_recv() {
            match ev {
                CanIn::TxDone(i, acked) => {
                    p.fdcan1.tx_done(i, acked);
                    if !acked && p.fdcan1.running() {
                        // Retransmission: back on the bus.
                        p.fdcan1.tx_on_bus &= !(1 << i);
                    }
                }
                CanIn::Frame(f) => p.fdcan1.receive(&f),
            }
            p.touch();
        }
        let bytes = uart.board_try_read(64);
        if !bytes.is_empty() {
            p.usart3_receive(&bytes, cpu.cycles());
        }
        let flight = uart_writer.in_flight.load(Ordering::SeqCst);
        if flight != p.usart3.in_flight {
            p.usart3.in_flight = flight;
            p.touch();
        }
        // One quantum.
        let wall = std::time::Instant::now();
        let before = (cpu.instructions, cpu.cycles());
        let stop = {
            let mut st = board.state();
            if !mcu.alive_in(&st) {
                return;
            }
            let budget = clock.quantum();
            let mut bus =
                SocBus { st: &mut st, p: &mut p, board: &board, profile: &profile, strict, flash, log: &mut log };
            let stop = if stepping { cpu.run_for(&mut bus, budget, 1) } else { cpu.run(&mut bus, budget) };
            st.core.pc = cpu.pc();
            st.regs = Some(registers(&cpu));
            stop
        };
        {
            let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
            t.instructions += cpu.instructions - before.0;
            t.cycles += cpu.cycles() - before.1;
            t.wall += wall.elapsed();
        }
        // Clock changes within the quantum, in order: cycles after each count at its rate.
        for (at, hz) in p.clock_changes.drain(..) {
            clock.rebase(at, hz);
        }
        for (at, line) in log.drain(..) {
            board.log_at(clock.time_of(at), line);
        }
        let mut violation = None;
        for u in p.unmodelled.drain(..) {
            let what = format!(
                "firmware {} {:#010x}{} at PC {:#010x}{}: outside the twin's peripheral models ({})",
                if u.write { "wrote" } else { "read" },
                u.addr,
                if u.write { format!(" = {:#010x}", u.value) } else { String::new() },
                u.pc,
                board.symbolize(u.pc).map(|s| format!(" ({s})")).unwrap_or_default(),
                if strict { "strict: the core stops" } else { "lenient: read as zero, write ignored" }
            );
            mcu.log(what.clone());
            if strict && violation.is_none() {
                violation = Some(what);
            }
        }
        if let Some(what) = violation {
            mcu.fault(format!("strict MMIO: {what}"));
            return;
        }
        // Outputs: the CAN node follows FDCAN1's state and rates.
        let rates = p.fdcan1.running().then(|| p.fdcan1.bitrates(p.rcc.fdcan_hz())).flatten();
        if rates != can_node.as_ref().map(|n| n.rates) {
            can_node = None;
            if let Some(r) = rates {
                match mcu.can(r) {
                    Ok(port) => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        let task = tokio::spawn(can_task(port, rx, can_in_tx.clone(), wake.clone()));
                        can_node = Some(CanNode { rates: r, tx, task });
                        mcu.log(format!("FDCAN1 joins the bus at {r}"));
                    }
                    Err(_) => return,
                }
            }
        }
        if let Some(node) = &can_node {
            for (i, f) in p.fdcan1.tx_requests.drain(..) {
                p.fdcan1.tx_on_bus |= 1 << i;
                let _ = node.tx.send((i, f));
            }
        } else {
            p.fdcan1.tx_requests.clear();
        }
        let cfg = p.usart3.config(p.rcc.usart3_hz());
        if cfg != uart_cfg {
            uart_cfg = cfg;
            if mcu.uart_setup(cfg.map(BoardRx::Fixed).unwrap_or(BoardRx::Closed)).is_err() {
                return;
            }
        }
        if !p.usart3.tx.is_empty() {
            let bytes: Vec<u8> = p.usart3.tx.drain(..).collect();
            uart_writer.in_flight.fetch_add(bytes.len(), Ordering::SeqCst);
            let _ = uart_writer.tx.send(bytes);
        }
        clock.rebase(cpu.cycles(), p.core_hz());
        match stop {
            Stop::Budget => bootproof_rig::time::sleep_until(clock.time_of(cpu.cycles())).await,
            // A step onto WFI: the debugger holds the core; no time passes for it.
            Stop::Sleep if stepping => {}
            Stop::Sleep => {
                let next = cpu.next_event().min(p.next_event());
                let until =
                    if next == u64::MAX { Instant::now() + Duration::from_secs(3600) } else { clock.time_of(next) };
                // Catch up to the cycles already executed first.
                bootproof_rig::time::sleep_until(clock.time_of(cpu.cycles())).await;
                if p.fdcan1.tx_on_bus == 0 && uart_writer.in_flight.load(Ordering::SeqCst) == 0 {
                    tokio::select! {
                        _ = bootproof_rig::time::sleep_until(until) => {}
                        _ = wake.notified() => {}
                        _ = uart_notify.notified() => {}
                    }
                } else {
                    tokio::select! {
                        _ = bootproof_rig::time::sleep_until(until) => {}
                        _ = wake.notified() => {}
                        _ = uart_notify.notified() => {}
                        _ = bootproof_rig::time::sleep(QUANTUM) => {}
                    }
                }
                cpu.idle_until(clock.cycles_at(Instant::now()));
            }
            Stop::ResetRequest => {
                mcu.log("firmware requested a system reset (AIRCR.SYSRESETREQ)");
                drop(can_node);
                mcu.reset(ResetKind::Software).await;
                return;
            }
            Stop::Lockup { why } => {
                let fault = cpu.last_fault.as_ref().map(|f| {
                    let place = board.symbolize(f.pc).map(|s| format!(", in {s}")).unwrap_or_default();
                    format!(" (last fault: {} at {:#010x}{place})", f.what, f.pc)
                });
                mcu.fault(format!("{hint}emulated core locked up: {why}{}", fault.unwrap_or_default()));
                return;
            }
            Stop::Breakpoint(imm) => {
                mcu.log(format!("firmware hit BKPT #{imm} at {:#010x}: core halted", cpu.pc()));
                board.debug_halt();
                at_bkpt = true;
            }
            Stop::Stepped => {}
            Stop::Handover { pc } => {
                mcu.log(format!("firmware jumped to system memory at {pc:#010x}: the ROM bootloader runs"));
                drop(can_node);
                let _ = mcu.jump(profile.system_memory.bootloader_entry);
                return;
            }
        }
        if cpu.state() == RunState::Lockup {
            mcu.fault(format!("{hint}{}", cpu.lockup_reason()));
            return;
        }
        if stepping {
            board.step_taken();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_after_a_clock_change_count_at_the_new_rate() {
        let t0 = Instant::now();
        let mut c = Clock { time_base: t0, cycle_base: 1_000, hz: 64_000_000 };
        assert_eq!(c.time_of(1_000 + 64_000), t0 + Duration::from_millis(1));
        assert_eq!(c.quantum(), 3_200);
        // 1 ms at 64 MHz, then 400 MHz: 400 more cycles are 1 µs.
        c.rebase(65_000, 400_000_000);
        assert_eq!(c.time_of(65_400), t0 + Duration::from_micros(1_001));
        assert_eq!(c.cycles_at(t0 + Duration::from_micros(1_002)), 65_800);
        assert_eq!(c.quantum(), 20_000);
        // The same rate again changes nothing.
        c.rebase(70_000, 400_000_000);
        assert_eq!(c.cycle_base, 65_000);
    }
}
