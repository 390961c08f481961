//! bootproof's stand-in application for the NUCLEO-H723ZG (embassy-stm32).
//!
//! At every boot it:
//! 1. reboots into the ROM bootloader if the previous boot asked for it (a flag in SRAM4 and a
//!    system reset, then a jump to system memory from a clean, just-reset state, as ST's
//!    application note on jumping to the bootloader describes);
//! 2. reads RCC_RSR and clears it (RMVF written 1, then 0);
//! 3. checks its RAM canary in SRAM4 (retained across NRST and software resets, lost at
//!    power-on) and counts boots since it was last cold;
//! 4. confirms itself with bootproof's boot core when it runs from slot A or B (the build
//!    variants `*-noconfirm` never do: their trials always fail);
//! 5. announces its boot beacon ([`bootproof_beacon`]) on FDCAN1 (PD0/PD1, 250 kbit/s nominal
//!    and 1 Mbit/s data with bit-rate switching: the ROM bootloader's pins and rates, so one bus
//!    serves both) and on USART3 (PD8/PD9, the ST-LINK virtual COM port, 115200 8N1), and logs
//!    with defmt over RTT;
//! 6. then sends a heartbeat every second and answers requests on CAN ID 0x7A2 or the console:
//!    reboot into the ROM bootloader, reset, send the beacon again.
#![no_std]

pub mod canary;

pub use bootproof_h7::flash as h7flash;

use boot_core::layout::{H723, SlotId};
use bootproof_beacon::{Beacon, Slot, Stage, Version, flags, request};
use defmt::{info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_stm32::can::frame::{FdFrame, Header};
use embassy_stm32::can::{self, CanConfigurator};
use embassy_stm32::peripherals::{FDCAN1, USART3};
use embassy_stm32::time::Hertz;
use embassy_stm32::usart::{self, BufferedUart};
use embassy_stm32::{Config, bind_interrupts, rcc};
use embassy_time::{Duration, Ticker};
use embedded_io_async::{Read, Write};

bind_interrupts!(struct Irqs {
    FDCAN1_IT0 => can::IT0InterruptHandler<FDCAN1>;
    FDCAN1_IT1 => can::IT1InterruptHandler<FDCAN1>;
    USART3 => usart::BufferedInterruptHandler<USART3>;
});

/// The public keys the image is checked against when it confirms itself.
pub use bootproof_h7::keys;

/// The boot beacon in RAM, for the probe (the name is the contract's
/// `bootproof_beacon::RAM_SYMBOL`).
#[unsafe(no_mangle)]
#[used]
pub static mut BOOTPROOF_BEACON: [u8; bootproof_beacon::LEN] = [0; bootproof_beacon::LEN];

/// Build variant.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Confirm itself when running as a trial.
    pub confirms: bool,
}

unsafe extern "C" {
    static __vector_table: u32;
}

/// Where this image runs from.
fn vector_table() -> u32 {
    // SAFETY: only the symbol's address is taken.
    core::ptr::addr_of!(__vector_table) as u32
}

fn slot_of(vt: u32) -> Option<SlotId> {
    H723.slot_containing(vt)
}

/// The version in the MCUboot header in front of the image (slot images), or the crate's.
fn version(vt: u32) -> Version {
    if let Some(slot) = slot_of(vt) {
        let base = H723.slot_address(slot);
        let mut h = [0u8; 32];
        for (i, b) in h.iter_mut().enumerate() {
            // SAFETY: reading the slot's header in flash.
            *b = unsafe { core::ptr::read_volatile((base + i as u32) as *const u8) };
        }
        let hdr = fut_image::Header::decode(&h);
        if hdr.magic == fut_image::IMAGE_MAGIC {
            let v = hdr.version;
            return Version { major: v.major, minor: v.minor, revision: v.revision, build: v.build };
        }
    }
    Version { major: 1, minor: 0, revision: 0, build: 0 }
}

/// Read RCC_RSR, then clear it: RMVF written 1 then 0 (RM0468 §8.7.36: set and cleared by
/// software).
fn reset_flags() -> u32 {
    let rcc = embassy_stm32::pac::RCC;
    let rsr = rcc.rsr().read().0;
    rcc.rsr().write(|w| w.set_rmvf(true));
    rcc.rsr().write(|w| w.set_rmvf(false));
    rsr
}

/// Confirm the image in `slot` with the boot core: returns the beacon flags.
fn confirm(flash: embassy_stm32::Peri<'static, embassy_stm32::peripherals::FLASH>, slot: SlotId) -> u8 {
    let mut f = h7flash::H7Flash::new(flash);
    let trailer = boot_core::trailer::Trailer::read(&mut f, &H723, slot);
    if trailer.confirm_proven() {
        // Confirmed and proven on an earlier boot: nothing to do (and no 10 M-cycle verify).
        return 0;
    }
    let trial = !trailer.is_confirmed();
    let keys = keys::trusted();
    let mut fl = if trial { flags::TRIAL } else { 0 };
    match boot_core::confirm(&mut f, &H723, slot, &keys, &mut fut_image::Ed25519Verify) {
        Ok(c) => {
            info!(
                "slot {} confirmed (newly: {}); stored security counter {}",
                slot.name(),
                c.newly,
                c.min_security_counter
            );
            if c.newly {
                fl |= flags::CONFIRMED;
            }
        }
        Err(_) => {
            warn!("slot {}: confirmation failed", slot.name());
            fl |= flags::CONFIRM_FAILED;
        }
    }
    fl
}

/// A response of the application's small UDS server.
#[derive(Debug, Clone, Copy)]
struct UdsResponse {
    data: [u8; 6],
    len: usize,
    enter_update_mode: bool,
}

/// A response of up to 6 bytes as its ISO-TP single frame.
fn single_frame(r: &UdsResponse) -> bootproof_uds::isotp::Frame {
    let mut tx = unwrap!(bootproof_uds::isotp::Sender::new(&r.data[..r.len]).ok());
    match tx.next() {
        bootproof_uds::isotp::Next::Send(f) => f,
        _ => defmt::panic!("a 6-byte response is one single frame"),
    }
}

/// The application's UDS server: only DiagnosticSessionControl (a programming session hands
/// over to the bootloader's update mode through a flag and a reset) and TesterPresent; every
/// other service is the bootloader's (serviceNotSupported here). Single frames only.
fn uds_request(frame: &[u8], slot: Option<SlotId>) -> Option<UdsResponse> {
    use bootproof_uds::uds::{P2_MS, P2_STAR_MS, negative, nrc, session, sid};
    let Ok(bootproof_uds::isotp::Pdu::Single(req)) = bootproof_uds::isotp::decode(frame) else { return None };
    let service = *req.first()?;
    let mut r = UdsResponse { data: [0; 6], len: 3, enter_update_mode: false };
    let mut neg = |code| {
        r.data[..3].copy_from_slice(&negative(service, code));
        Some(r)
    };
    match (service, req.get(1).copied(), req.len()) {
        (sid::DIAGNOSTIC_SESSION_CONTROL, Some(s), 2)
            if s & 0x7F == session::PROGRAMMING || s & 0x7F == session::DEFAULT =>
        {
            let programming = s & 0x7F == session::PROGRAMMING;
            if programming && slot.is_none() {
                // Linked at the start of flash: there is no bootproof bootloader to hand over to.
                return neg(nrc::CONDITIONS_NOT_CORRECT);
            }
            if programming {
                bootproof_h7::request::set(match slot {
                    Some(SlotId::A) => 1,
                    Some(SlotId::B) => 2,
                    None => 0,
                });
            }
            let (p2, p2s) = (P2_MS.to_be_bytes(), (P2_STAR_MS / 10).to_be_bytes());
            r.data = [service + 0x40, s & 0x7F, p2[0], p2[1], p2s[0], p2s[1]];
            r.len = 6;
            r.enter_update_mode = programming;
            Some(r)
        }
        (sid::DIAGNOSTIC_SESSION_CONTROL, Some(_), 2) => neg(nrc::SUB_FUNCTION_NOT_SUPPORTED),
        (sid::TESTER_PRESENT, Some(0x00), 2) => {
            r.data[..2].copy_from_slice(&[service + 0x40, 0]);
            r.len = 2;
            Some(r)
        }
        (sid::TESTER_PRESENT, Some(0x80), 2) => None,
        (sid::DIAGNOSTIC_SESSION_CONTROL | sid::TESTER_PRESENT, _, _) => neg(nrc::INCORRECT_LENGTH),
        _ => neg(nrc::SERVICE_NOT_SUPPORTED),
    }
}

/// Reboot into the ROM bootloader: a flag for the next boot, then a system reset.
fn reboot_into_rom() -> ! {
    canary::request_rom();
    cortex_m::peripheral::SCB::sys_reset()
}

/// The application.
pub async fn run(_spawner: Spawner, variant: Variant) -> ! {
    if canary::take_rom_request() {
        // SAFETY: right after a reset, nothing is set up: the clean state ST asks for.
        unsafe { rom::jump() }
    }
    let rsr = reset_flags();
    let (canary, boots) = canary::check();
    let vt = vector_table();
    let mut config = Config::default();
    // NUCLEO-H723ZG: HSE is the ST-LINK's 8 MHz MCO (bypass); FDCAN's kernel clock is HSE.
    config.rcc.hse = Some(rcc::Hse { freq: Hertz(8_000_000), mode: rcc::HseMode::Bypass });
    config.rcc.mux.fdcansel = rcc::mux::Fdcansel::HSE;
    let p = embassy_stm32::init(config);
    let slot = slot_of(vt);
    let version = version(vt);
    info!(
        "bootproof app {}.{}.{} at {=u32:#010x}: RCC_RSR {=u32:#010x}, canary {}, boot {}",
        version.major,
        version.minor,
        version.revision,
        vt,
        rsr,
        canary.name(),
        boots
    );
    let fl = match slot {
        Some(s) if variant.confirms => confirm(p.FLASH, s),
        Some(s) => {
            info!("slot {}: this build never confirms", s.name());
            flags::TRIAL
        }
        None => 0,
    };
    let beacon = Beacon {
        stage: Stage::Application,
        slot: match slot {
            None => Slot::None,
            Some(SlotId::A) => Slot::A,
            Some(SlotId::B) => Slot::B,
        },
        version,
        reset_flags: rsr,
        vector_table: vt,
        canary,
        flags: fl,
        boots,
    };
    // SAFETY: written once per boot, before anything reads it; the probe reads it from outside.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(BOOTPROOF_BEACON), beacon.encode()) };
    // FDCAN1 at the ROM bootloader's rates.
    let mut cfg = CanConfigurator::new(p.FDCAN1, p.PD0, p.PD1, Irqs);
    cfg.set_bitrate(250_000);
    cfg.set_fd_data_bitrate(1_000_000, true);
    let (mut tx, mut rx, _) = cfg.into_normal_mode().split();
    // USART3: the virtual COM port.
    let mut ucfg = usart::Config::default();
    ucfg.baudrate = 115_200;
    static mut TX_BUF: [u8; 256] = [0; 256];
    static mut RX_BUF: [u8; 64] = [0; 64];
    // SAFETY: the buffers are used only here, once.
    let (tx_buf, rx_buf) = unsafe { (&mut *core::ptr::addr_of_mut!(TX_BUF), &mut *core::ptr::addr_of_mut!(RX_BUF)) };
    let uart = unwrap!(BufferedUart::new(p.USART3, p.PD9, p.PD8, tx_buf, rx_buf, Irqs, ucfg));
    let (mut utx, mut urx) = uart.split();

    let announce = |b: &Beacon| {
        unwrap!(FdFrame::new(
            Header::new_fd(embedded_can::StandardId::new(bootproof_beacon::CAN_ID).unwrap().into(), 32, false, true),
            &b.encode()
        ))
    };
    let mut line: heapless::String<192> = heapless::String::new();
    let _ = beacon.write_line(&mut line);
    let _ = line.push_str("\r\n");
    let _ = utx.write_all(line.as_bytes()).await;
    tx.write_fd(&announce(&beacon)).await;
    info!("beacon sent");

    let mut ticker = Ticker::every(Duration::from_secs(1));
    let mut counter: u32 = 0;
    let mut console: heapless::Vec<u8, 64> = heapless::Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let req = match select(select(ticker.next(), rx.read_fd()), urx.read(&mut byte)).await {
            Either::First(Either::First(())) => {
                counter = counter.wrapping_add(1);
                let hb = unwrap!(FdFrame::new(
                    Header::new_fd(
                        embedded_can::StandardId::new(bootproof_beacon::HEARTBEAT_ID).unwrap().into(),
                        4,
                        false,
                        true
                    ),
                    &counter.to_le_bytes()
                ));
                tx.write_fd(&hb).await;
                None
            }
            Either::First(Either::Second(Ok(env))) => {
                let (frame, _) = env.parts();
                let id = match frame.header().id() {
                    embedded_can::Id::Standard(s) => s.as_raw(),
                    embedded_can::Id::Extended(_) => 0,
                };
                if id == bootproof_uds::REQUEST_ID {
                    if let Some(resp) = uds_request(frame.data(), slot) {
                        let f = single_frame(&resp);
                        tx.write_fd(&unwrap!(FdFrame::new(
                            Header::new_fd(
                                embedded_can::StandardId::new(bootproof_uds::RESPONSE_ID).unwrap().into(),
                                f.len as u8,
                                false,
                                true
                            ),
                            f.bytes()
                        )))
                        .await;
                        if resp.enter_update_mode {
                            info!("UDS: programming session: rebooting into the bootloader's update mode");
                            // Let the response leave the controller before the reset.
                            embassy_time::Timer::after_millis(2).await;
                            cortex_m::peripheral::SCB::sys_reset();
                        }
                    }
                    None
                } else {
                    (id == bootproof_beacon::REQUEST_ID).then(|| frame.data().first().copied()).flatten()
                }
            }
            Either::First(Either::Second(Err(_))) => None,
            Either::Second(Ok(1)) => {
                if byte[0] == b'\n' || byte[0] == b'\r' {
                    let r = core::str::from_utf8(&console).ok().and_then(request::from_line);
                    console.clear();
                    r
                } else {
                    let _ = console.push(byte[0]);
                    None
                }
            }
            Either::Second(_) => None,
        };
        match req {
            Some(request::ENTER_ROM) => {
                info!("request: reboot into the ROM bootloader");
                let _ = utx.write_all(b"bootproof: rebooting into the ROM bootloader\r\n").await;
                let _ = utx.flush().await;
                reboot_into_rom();
            }
            Some(request::RESET) => {
                info!("request: reset");
                cortex_m::peripheral::SCB::sys_reset();
            }
            Some(request::BEACON) => {
                let _ = utx.write_all(line.as_bytes()).await;
                tx.write_fd(&announce(&beacon)).await;
            }
            Some(other) => warn!("request {} not known", other),
            None => {}
        }
    }
}

/// Entering the ROM bootloader from software (ST: "STM32H7 bootloader jump from application").
pub mod rom {
    /// The H72x/H73x bootloader's vector table (AN2606 Table 133).
    pub const SYSTEM_MEMORY: u32 = 0x1FF0_9800;

    /// Jump to the ROM bootloader: VTOR to its vector table, MSP from it, then its reset
    /// handler, with interrupts enabled (the bootloader expects them).
    ///
    /// # Safety
    /// Call right after a reset, before anything is set up.
    pub unsafe fn jump() -> ! {
        // SAFETY: the caller guarantees a just-reset core; system memory holds the bootloader.
        unsafe {
            let scb = &*cortex_m::peripheral::SCB::PTR;
            scb.vtor.write(SYSTEM_MEMORY);
            let sp = core::ptr::read_volatile(SYSTEM_MEMORY as *const u32);
            let pc = core::ptr::read_volatile((SYSTEM_MEMORY + 4) as *const u32);
            cortex_m::interrupt::enable();
            cortex_m::asm::bootstrap(sp as *const u32, pc as *const u32)
        }
    }
}
