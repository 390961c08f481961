//! bootproof's bootloader for the NUCLEO-H723ZG: a thin shim over boot-core.
//!
//! At every reset it:
//! 1. runs [`boot_core::decide`] over the flash (`bootproof_h7::flash`: 32-byte words, sector
//!    erase, ECC-safe reads, so a torn word with a double ECC error reads as unreadable instead
//!    of bus-faulting the bootloader into a crash loop). The decision picks the highest valid
//!    version, writes the `selected` word before a trial's first boot, and skips a failed trial;
//! 2. logs the verdict of each slot with defmt over RTT;
//! 3. jumps to the chosen image ([`bootproof_h7::handover::jump`]): peripherals reset, no
//!    interrupt enabled or pending, VTOR and MSP from the image. The reset flags are left for the
//!    application to read and clear;
//! 4. or, with no valid image (recovery) or when the application asked for it (update mode:
//!    UDS DiagnosticSessionControl programming session, a flag in SRAM4 and a reset), serves
//!    UDS on ISO-TP over CAN FD on FDCAN1 (the ROM bootloader's pins and rates; requests on
//!    0x7E0, responses on 0x7E8; `bootproof_uds::server`), after a boot beacon with stage
//!    `recovery` or `update`. ECUReset ends it: the next boot decides again.
//!
//! It touches no peripheral but the flash controller before the jump, and it never writes
//! sector 0: `boot_core::flash` refuses.
#![no_std]
#![no_main]

mod ram;

use boot_core::layout::{H723, SlotId};
use boot_core::{Decision, RecoveryReason, SlotVerdict};
use bootproof_beacon::{Beacon, Canary, Slot, Stage, Version};
use bootproof_uds::isotp::{self, Received, Receiver, RxError};
use bootproof_uds::server::{Reply, Server};
use bootproof_uds::uds::{self, nrc};
use bootproof_uds::{REQUEST_ID, RESPONSE_ID};
use defmt::{info, unwrap, warn};
use embassy_futures::select::{Either, select};
use embassy_stm32::can::frame::{FdFrame, Header};
use embassy_stm32::can::{self, CanConfigurator};
use embassy_stm32::peripherals::FDCAN1;
use embassy_stm32::time::Hertz;
use embassy_stm32::{Config, bind_interrupts, rcc};
use embassy_time::{Duration, Timer};
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    FDCAN1_IT0 => can::IT0InterruptHandler<FDCAN1>;
    FDCAN1_IT1 => can::IT1InterruptHandler<FDCAN1>;
});

/// The boot beacon in RAM, for the probe (the contract's `bootproof_beacon::RAM_SYMBOL`):
/// written only in recovery (an application writes its own).
#[unsafe(no_mangle)]
#[used]
pub static mut BOOTPROOF_BEACON: [u8; bootproof_beacon::LEN] = [0; bootproof_beacon::LEN];

/// The bootloader's version, as its beacon and the update server report it.
const VERSION: Version = Version { major: 1, minor: 0, revision: 0, build: 0 };

fn verdict(s: SlotId, v: &SlotVerdict) {
    match v {
        SlotVerdict::NotCommitted => info!("slot {}: not committed", s.name()),
        SlotVerdict::TrialFailed => info!("slot {}: trial failed (never confirmed)", s.name()),
        SlotVerdict::Invalid(r) => warn!("slot {}: rejected: {}", s.name(), r.name()),
        SlotVerdict::NotChosen(_) => info!("slot {}: lower version (not verified)", s.name()),
        SlotVerdict::SelectFailed => warn!("slot {}: writing the selected word failed", s.name()),
        SlotVerdict::Booted => info!("slot {}: booted", s.name()),
    }
}

fn decide() -> Decision {
    // SAFETY: nothing else in this firmware uses the flash peripheral before the decision,
    // and embassy is not initialised yet (the jump must find a chip as after reset).
    let p = unsafe { embassy_stm32::Peripherals::steal() };
    let mut flash = bootproof_h7::flash::H7Flash::new(p.FLASH);
    let keys = bootproof_h7::keys::trusted();
    boot_core::decide(&mut flash, &H723, &keys, &mut fut_image::Ed25519Verify)
}

/// Make this firmware's RTT control block invisible, so a debugger attaching to the
/// application finds the application's block, not a stale one.
fn hide_rtt() {
    unsafe extern "C" {
        static mut _SEGGER_RTT: [u8; 16];
    }
    // SAFETY: the control block's 16-byte ID; nothing logs after this.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(_SEGGER_RTT), [0; 16]) };
}

#[embassy_executor::main]
async fn main(_spawner: embassy_executor::Spawner) {
    info!("bootproof bootloader {}.{}.{}", VERSION.major, VERSION.minor, VERSION.revision);
    if let Some(slot) = bootproof_h7::request::take() {
        // The application asked for update mode: no decision (it would mark an untried image
        // as tried); the requester's slot is the one to protect.
        let running = match slot {
            1 => Some(SlotId::A),
            2 => Some(SlotId::B),
            _ => None,
        };
        info!("update mode requested by the application (slot {})", slot);
        update_mode(running, true).await
    }
    let d = decide();
    verdict(SlotId::A, &d.slots[0]);
    verdict(SlotId::B, &d.slots[1]);
    if let Some(c) = d.chosen {
        info!(
            "-> slot {} {}.{}.{}{} (vector table {=u32:#010x})",
            c.slot.name(),
            c.image.version().major,
            c.image.version().minor,
            c.image.version().revision,
            if c.trial { " on trial" } else { "" },
            c.vector_table
        );
        hide_rtt();
        // SAFETY: the decision verified this image (hash, signature, slot, security counter);
        // the bootloader holds no peripheral it still needs.
        unsafe { bootproof_h7::handover::jump(c.vector_table) }
    }
    match d.recovery {
        Some(RecoveryReason::Geometry) => warn!("-> recovery: the flash driver does not match the layout"),
        _ => warn!("-> recovery: no valid image"),
    }
    update_mode(None, false).await
}

/// Serve UDS until ECUReset: announce the stage first (CAN and RAM).
async fn update_mode(running: Option<SlotId>, requested: bool) -> ! {
    let rsr = embassy_stm32::pac::RCC.rsr().read().0;
    let mut config = Config::default();
    // NUCLEO-H723ZG: HSE is the ST-LINK's 8 MHz MCO (bypass); FDCAN's kernel clock is HSE.
    config.rcc.hse = Some(rcc::Hse { freq: Hertz(8_000_000), mode: rcc::HseMode::Bypass });
    config.rcc.mux.fdcansel = rcc::mux::Fdcansel::HSE;
    // Update mode runs the core at 400 MHz: every word programmed waits for the code that
    // unpacks the frames around it (the core cannot fetch from flash while it programs), so the
    // clock is the update's speed. PLL1: HSE 8 MHz / 2 × 200 = 800 MHz VCO, P / 2 = 400 MHz,
    // at voltage scale 1 (RM0468 §6.6.2, DS13313 table "General operating conditions"); the
    // AHB and APB buses at 200 and 100 MHz. Update mode ends in a system reset, which puts the
    // clock tree back to HSI for the next boot decision and handover.
    config.rcc.pll1 = Some(rcc::Pll {
        source: rcc::PllSource::HSE,
        prediv: rcc::PllPreDiv::DIV2,
        mul: rcc::PllMul::MUL200,
        divp: Some(rcc::PllDiv::DIV2),
        divq: None,
        divr: None,
    });
    config.rcc.sys = rcc::Sysclk::PLL1_P;
    config.rcc.ahb_pre = rcc::AHBPrescaler::DIV2;
    config.rcc.apb1_pre = rcc::APBPrescaler::DIV2;
    config.rcc.apb2_pre = rcc::APBPrescaler::DIV2;
    config.rcc.apb3_pre = rcc::APBPrescaler::DIV2;
    config.rcc.apb4_pre = rcc::APBPrescaler::DIV2;
    config.rcc.voltage_scale = rcc::VoltageScale::Scale1;
    let p = embassy_stm32::init(config);
    let beacon = Beacon {
        stage: if requested { Stage::Update } else { Stage::Recovery },
        slot: Slot::None,
        version: VERSION,
        reset_flags: rsr,
        vector_table: H723.flash_base,
        canary: Canary::Cold,
        flags: 0,
        boots: 0,
    };
    // SAFETY: written once, before anything reads it; the probe reads it from outside.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(BOOTPROOF_BEACON), beacon.encode()) };
    let mut cfg = CanConfigurator::new(p.FDCAN1, p.PD0, p.PD1, Irqs);
    cfg.set_bitrate(250_000);
    cfg.set_fd_data_bitrate(1_000_000, true);
    let mut can = cfg.into_normal_mode();
    let id = unwrap!(embedded_can::StandardId::new(bootproof_beacon::CAN_ID));
    let frame = unwrap!(FdFrame::new(Header::new_fd(id.into(), 32, false, true), &beacon.encode()));
    can.write_fd(&frame).await;
    // Sector erases run from ITCM and keep receiving meanwhile (see `ram`).
    ram::init();
    let mut flash = bootproof_h7::flash::H7Flash::new(p.FLASH).with_sector_erase(ram::erase_sector);
    // The slot is erased as the download reaches it, while the frames keep coming (`ram`):
    // the whole image is one TransferData block.
    let mut server =
        Server::new(H723, running, requested, [VERSION.major, VERSION.minor, VERSION.revision as u8]).erase_as_needed();
    info!("serving UDS on 0x{:03x}/0x{:03x}, target slot {}", REQUEST_ID, RESPONSE_ID, server.target().name());
    serve(&mut can, &mut server, &mut flash).await
}

/// The request buffer: every request but TransferData whole, and a TransferData's first bytes
/// (its data goes to flash frame by frame: `Server::stream`).
static mut RX_BUF: [u8; isotp::MAX_MESSAGE] = [0; isotp::MAX_MESSAGE];

async fn serve(can: &mut can::Can<'static>, server: &mut Server, flash: &mut bootproof_h7::flash::H7Flash) -> ! {
    // SAFETY: the only use of the buffer, for the life of update mode.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(RX_BUF) };
    // Flow control for throughput: no block limit, no separation time (the FDCAN's RX FIFO
    // and this loop keep up with back-to-back 64-byte frames at 1 Mbit/s; during an erase the
    // ring takes them).
    let mut rx = Receiver::streaming(buf, 0, 0);
    let keys = bootproof_h7::keys::trusted();
    let mut out = [0u8; 64];
    loop {
        let data = if rx.busy() {
            match select(recv(can), Timer::after(to_embassy(isotp::N_CR))).await {
                Either::First(d) => d,
                Either::Second(()) => {
                    warn!(
                        "ISO-TP: no consecutive frame within N_Cr: message dropped ({} frames lost to a full ring)",
                        ram::lost()
                    );
                    rx.reset();
                    ram::disarm();
                    continue;
                }
            }
        } else {
            recv(can).await
        };
        let n = match rx.on_frame(&data.0[..data.1]) {
            Received::Message(n) => {
                ram::disarm();
                n
            }
            Received::Flow(fc) => {
                send_frame(can, fc.bytes()).await;
                // A request longer than the buffer (a whole image): when its last frame comes,
                // a response-pending goes out at once, even from inside a sector erase.
                let (total, got) = (rx.announced().unwrap_or(0), rx.received());
                if total > isotp::MAX_MESSAGE {
                    let mut pending = [0xCC; 8];
                    pending[..4].copy_from_slice(&[
                        3,
                        0x7F,
                        bootproof_uds::uds::sid::TRANSFER_DATA,
                        nrc::RESPONSE_PENDING,
                    ]);
                    ram::arm((total - got).div_ceil(63) as u32, pending);
                }
                stream(server, flash, &rx);
                continue;
            }
            Received::Aborted(RxError::Overflow(len)) => {
                warn!("ISO-TP: a {} byte request does not fit: overflow", len);
                send_frame(can, Receiver::overflow_frame().bytes()).await;
                continue;
            }
            Received::Aborted(_) => {
                warn!("ISO-TP: message aborted (sequence)");
                ram::disarm();
                continue;
            }
            Received::Partial => {
                // Program what has arrived of a TransferData block while the rest of its frames
                // are on the bus: two words per 64-byte frame take 260 µs, a frame at 250k/1M
                // about 700 µs; an erase the download reaches runs from ITCM and keeps
                // receiving into the ring.
                stream(server, flash, &rx);
                continue;
            }
            Received::Ignored => continue,
        };
        if n > rx.message(n).len() {
            // A TransferData longer than the buffer: its data went to flash frame by frame.
            stream(server, flash, &rx);
            let reply = server.handle_streamed(flash, rx.message(n), n, &mut out);
            if let Reply::Now(k) = reply {
                send_message(can, &out[..k]).await;
            }
            continue;
        }
        let mut reply = server.handle(flash, rx.message(n), &mut out);
        // A long request: a response-pending before each step (the erase routine takes a
        // sector per step), so the tester hears from us well inside P2*.
        while let Reply::Pending(service) = reply {
            send_message(can, &uds::negative(service, nrc::RESPONSE_PENDING)).await;
            reply = server.run_pending(flash, &keys, &mut fut_image::Ed25519Verify, &mut out);
        }
        match reply {
            Reply::Now(n) => send_message(can, &out[..n]).await,
            Reply::ThenReset(n) => {
                if n > 0 {
                    send_message(can, &out[..n]).await;
                }
                info!("ECUReset");
                // Let the frame leave the controller before the reset.
                Timer::after_millis(2).await;
                cortex_m::peripheral::SCB::sys_reset();
            }
            Reply::Silent | Reply::Pending(_) => {}
        }
    }
}

/// Hand the last frame's payload of a TransferData under way to the server.
fn stream(server: &mut Server, flash: &mut bootproof_h7::flash::H7Flash, rx: &Receiver<'_>) {
    let (at, chunk) = rx.chunk();
    let total = rx.announced().unwrap_or(at + chunk.len());
    server.stream(flash, rx.head(), total, at, chunk);
}

fn to_embassy(d: core::time::Duration) -> Duration {
    Duration::from_micros(d.as_micros() as u64)
}

/// The next frame for the server (request ID, standard); others are skipped. Frames received
/// during a sector erase come first, from the ring.
async fn recv(can: &mut can::Can<'static>) -> ([u8; 64], usize) {
    ram::drain();
    if let Some(f) = ram::pop() {
        return f;
    }
    loop {
        let Ok(env) = can.read_fd().await else { continue };
        let (f, _) = env.parts();
        if let embedded_can::Id::Standard(s) = f.header().id()
            && s.as_raw() == REQUEST_ID
        {
            let mut d = [0u8; 64];
            let n = f.data().len().min(64);
            d[..n].copy_from_slice(&f.data()[..n]);
            return (d, n);
        }
    }
}

async fn send_frame(can: &mut can::Can<'static>, data: &[u8]) {
    let id = unwrap!(embedded_can::StandardId::new(RESPONSE_ID));
    let f = unwrap!(FdFrame::new(Header::new_fd(id.into(), data.len() as u8, false, true), data));
    can.write_fd(&f).await;
}

/// Send one response with ISO-TP (the tester's flow control for segmented ones).
async fn send_message(can: &mut can::Can<'static>, msg: &[u8]) {
    let Ok(mut tx) = isotp::Sender::new(msg) else { return };
    loop {
        match tx.next() {
            isotp::Next::Send(f) => send_frame(can, f.bytes()).await,
            isotp::Next::Done => return,
            isotp::Next::AwaitFlow => match select(recv(can), Timer::after(to_embassy(isotp::N_BS))).await {
                Either::First(d) => {
                    if tx.on_flow(&d.0[..d.1]).is_err() {
                        return;
                    }
                }
                Either::Second(()) => return,
            },
        }
    }
}
