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
//! 4. or, with no valid image, stays in recovery: it sends a boot beacon with stage `recovery`
//!    on FDCAN1 (the ROM bootloader's pins and rates) every second and on the ST-LINK virtual
//!    COM port, and waits (the CAN update server comes next).
//!
//! It touches no peripheral but the flash controller before the jump, and it never writes
//! sector 0: `boot_core::flash` refuses.
#![no_std]
#![no_main]

use boot_core::layout::{H723, SlotId};
use boot_core::{Decision, RecoveryReason, SlotVerdict};
use bootproof_beacon::{Beacon, Canary, Slot, Stage, Version};
use defmt::{info, unwrap, warn};
use embassy_stm32::can::frame::{FdFrame, Header};
use embassy_stm32::can::{self, CanConfigurator};
use embassy_stm32::peripherals::FDCAN1;
use embassy_stm32::time::Hertz;
use embassy_stm32::{Config, bind_interrupts, rcc};
use embassy_time::{Duration, Ticker};
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
    recovery().await
}

/// No image to boot: say so on CAN (and in RAM for the probe), and wait.
async fn recovery() -> ! {
    let rsr = embassy_stm32::pac::RCC.rsr().read().0;
    let mut config = Config::default();
    // NUCLEO-H723ZG: HSE is the ST-LINK's 8 MHz MCO (bypass); FDCAN's kernel clock is HSE.
    config.rcc.hse = Some(rcc::Hse { freq: Hertz(8_000_000), mode: rcc::HseMode::Bypass });
    config.rcc.mux.fdcansel = rcc::mux::Fdcansel::HSE;
    let p = embassy_stm32::init(config);
    let beacon = Beacon {
        stage: Stage::Recovery,
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
    let mut ticker = Ticker::every(Duration::from_secs(1));
    loop {
        can.write_fd(&frame).await;
        ticker.next().await;
    }
}
