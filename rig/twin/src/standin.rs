//! The stand-in application: a minimal app image that says who it is.
//!
//! When the twin runs it, it sends the boot beacon ([`bootproof_beacon`], the contract the real
//! firmware also follows)
//! * on serial (115200 8N1): `BEACON <64 hex digits> stage=app ...`,
//! * on CAN at the ROM bootloader's bit rates: one 32-byte FD frame (ID 0x7A0) on FDCAN parts,
//!   four classic frames (0x7A4..0x7A7) on bxCAN parts; then a heartbeat (0x7A1, a 4-byte
//!   counter) every second,
//! * on RTT: the serial line.
//!
//! It does not clear the reset flags and keeps no RAM canary (it reports `cold`). It is *not*
//! real code: no scenario uses it. It remains as the twin's fast native oracle, for the twin's
//! own tests and for benchmarks that compare native boots with emulated ones.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bootproof_beacon::{Beacon, Canary, Slot, Stage, Version};
use bootproof_fixtures::{BoardProfile, RomTransport};
use bootproof_rig::CanBus;
use bootproof_rig::can::{Bitrates, CanFrame, CanId};
use bootproof_rig::console::SerialConfig;
use bootproof_rig::image::{FirmwareImage, Segment};

use crate::board::Mcu;
use crate::firmware::{Boot, DESCRIPTOR_LEN, DESCRIPTOR_OFFSET, Descriptor, Firmware, kind, seal};
use crate::uart::BoardRx;

/// Serial framing of the app console.
pub const CONSOLE: SerialConfig = SerialConfig { baud: 115_200, parity: bootproof_rig::console::Parity::None };

/// The CAN bit rates the stand-in app uses on `profile`: those of its ROM bootloader's CAN
/// interface, so one host interface configuration sees both.
pub fn app_can_rates(profile: &BoardProfile) -> Option<Bitrates> {
    profile.rom.transports.iter().find_map(|t| match t {
        RomTransport::Fdcan { nominal_bitrate, data_bitrate, .. } => {
            Some(Bitrates::fd(*nominal_bitrate, *data_bitrate))
        }
        RomTransport::Bxcan { bitrate, .. } => Some(Bitrates::classic(*bitrate)),
        RomTransport::Usart { .. } => None,
    })
}

/// The stand-in app's logic.
pub struct StandInApp;

/// A frame as the board's firmware sends it: FD with BRS when the bus has a data phase.
pub(crate) fn frame(rates: Bitrates, id: u16, data: &[u8]) -> Option<CanFrame> {
    let id = CanId::Standard(id);
    if rates.data.is_some() { CanFrame::fd(id, data, true).ok() } else { CanFrame::classic(id, data).ok() }
}

/// Print `line` on RTT and the console (CR LF); `false` if the board was reset meanwhile.
pub(crate) async fn say(mcu: &Mcu, line: &str) -> bool {
    mcu.rtt_write(format!("{line}\n").as_bytes());
    mcu.uart_write(format!("{line}\r\n").as_bytes()).await.is_ok()
}

#[async_trait]
impl Firmware for StandInApp {
    fn name(&self) -> &str {
        "stand-in app"
    }

    async fn run(self: Arc<Self>, mcu: Mcu, boot: Boot) {
        let p = mcu.profile().clone();
        let rsr = mcu.reset_flags();
        let version = boot.descriptor.version;
        let slot = match crate::bootloader::layout_for(&p).and_then(|l| l.slot_containing(boot.vector_table)) {
            Some(boot_core::layout::SlotId::A) => Slot::A,
            Some(boot_core::layout::SlotId::B) => Slot::B,
            None => Slot::None,
        };
        let beacon = Beacon {
            stage: Stage::Application,
            slot,
            version: Version { major: version as u8, ..Version::default() },
            reset_flags: rsr,
            vector_table: boot.vector_table,
            canary: Canary::Cold,
            flags: 0,
            boots: 1,
        };
        let mut line = String::new();
        let _ = beacon.write_line(&mut line);
        let _ = mcu.rtt_enable();
        let rates = app_can_rates(&p);
        let mut can = rates.and_then(|r| mcu.can(r).ok());
        if mcu.uart_setup(BoardRx::Fixed(CONSOLE)).is_err() || !say(&mcu, &line).await {
            return;
        }
        if let (Some(port), Some(r)) = (can.as_mut(), rates) {
            announce(port, r, &beacon).await;
        }
        if boot.descriptor.flags & crate::bootloader::APP_CONFIRMS != 0 {
            let Some(line) = crate::bootloader::app_confirm(&mcu, boot.vector_table).await else { return };
            mcu.log(line.clone());
            if !say(&mcu, &line).await {
                return;
            }
        }
        let mut counter: u32 = 0;
        loop {
            if mcu.sleep(Duration::from_secs(1)).await.is_err() {
                return;
            }
            counter += 1;
            if let (Some(port), Some(r)) = (can.as_mut(), rates)
                && let Some(f) = frame(r, bootproof_beacon::HEARTBEAT_ID, &counter.to_le_bytes())
            {
                let _ = port.send(&f).await;
            }
        }
    }
}

/// Send `beacon` as the contract says: one FD frame, or four classic frames.
pub(crate) async fn announce(port: &mut crate::bus::CanPort, rates: Bitrates, beacon: &Beacon) {
    if rates.data.is_some() {
        if let Some(f) = frame(rates, bootproof_beacon::CAN_ID, &beacon.encode()) {
            let _ = port.send(&f).await;
        }
    } else {
        for (i, part) in beacon.classic_frames().iter().enumerate() {
            if let Some(f) = frame(rates, bootproof_beacon::CLASSIC_ID + i as u16, part) {
                let _ = port.send(&f).await;
            }
        }
    }
}

/// Build a stand-in app image of `size` bytes (≥ 1 KiB) with its vector table at `vector_table`.
pub fn image(profile: &BoardProfile, vector_table: u32, version: u32, size: usize) -> FirmwareImage {
    build(profile, vector_table, version, size, 0, &[])
}

/// [`image`] with descriptor `flags` (see [`crate::bootloader::APP_CONFIRMS`]) and `extra`
/// bytes (the trusted-key table) right after the descriptor, covered by its CRC.
pub fn build(
    profile: &BoardProfile,
    vector_table: u32,
    version: u32,
    size: usize,
    flags: u16,
    extra: &[u8],
) -> FirmwareImage {
    let desc =
        Descriptor { kind: kind::STAND_IN_APP, flags, version, image_len: 0, name: "bootproof stand-in app".into() };
    firmware_image(profile, vector_table, desc, size, extra, format!("stand-in-app-v{version}.bin"))
}

/// A stand-in firmware image the twin recognises by `desc`: a plausible vector table, code-like
/// filler, the descriptor (its `image_len` set here) followed by `extra`, sealed by a CRC.
pub(crate) fn firmware_image(
    profile: &BoardProfile,
    vector_table: u32,
    mut desc: Descriptor,
    size: usize,
    extra: &[u8],
    file_name: String,
) -> FirmwareImage {
    let size = size.max(0x400).next_multiple_of(profile.flash.word as usize);
    let mut img = vec![0u8; size];
    // Filler that looks like code: deterministic, never a blank word.
    let mut x: u32 = 0x1234_5678 ^ desc.version;
    for b in img.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x as u8) & 0x7F;
    }
    // Vector table: initial SP at the top of the first data RAM, reset and 14 system handlers
    // inside the image (odd: Thumb).
    let sp = profile.ram.iter().find(|r| r.base >= 0x2000_0000).map(|r| r.base + r.size).unwrap_or(0x2000_8000);
    img[0..4].copy_from_slice(&sp.to_le_bytes());
    for i in 1..16u32 {
        let handler = vector_table + 0x400 + i * 0x10 + 1;
        img[(i * 4) as usize..(i * 4 + 4) as usize].copy_from_slice(&handler.to_le_bytes());
    }
    desc.image_len = size as u32;
    let at = DESCRIPTOR_OFFSET as usize;
    img[at..at + DESCRIPTOR_LEN].copy_from_slice(&desc.encode());
    let x = at + DESCRIPTOR_LEN;
    img[x..x + extra.len()].copy_from_slice(extra);
    seal(&mut img);
    FirmwareImage::from_segments(file_name, vec![Segment { address: vector_table, data: img }])
        .expect("one non-empty segment")
}
