//! The stand-in application: a minimal app image that says who it is.
//!
//! When the twin runs it, it announces itself
//! * on serial (115200 8N1): `bootproof stand-in app v3 stage=app vt=0x08000000 rsr=0x00fa0000 flags=CPURSTF|...`,
//! * on CAN: frame [`ANNOUNCE_ID`] = `[STAGE_APP, version, rsr (4 bytes LE), vt >> 16 (2 bytes LE)]`
//!   at the ROM bootloader's bit rates (FD with BRS on FDCAN parts, classic on bxCAN parts),
//!   then a heartbeat frame [`HEARTBEAT_ID`] = `[counter (4 bytes LE)]` every second,
//! * on RTT: the serial line.
//!
//! It does not clear the reset flags, so the probe can read them too. It stands in for the real
//! application until the firmware issue lands: on a physical board its image does not run (it
//! is not real code), so scenarios needing it are twin-only until then.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bootproof_fixtures::{BoardProfile, RomTransport};
use bootproof_rig::CanBus;
use bootproof_rig::can::{Bitrates, CanFrame, CanId};
use bootproof_rig::console::SerialConfig;
use bootproof_rig::image::{FirmwareImage, Segment};

use crate::board::Mcu;
use crate::firmware::{Boot, DESCRIPTOR_LEN, DESCRIPTOR_OFFSET, Descriptor, Firmware, kind, seal};
use crate::uart::BoardRx;

/// CAN ID of the boot announcement.
pub const ANNOUNCE_ID: u16 = 0x7A0;
/// CAN ID of the heartbeat.
pub const HEARTBEAT_ID: u16 = 0x7A1;
/// Stage code of an application.
pub const STAGE_APP: u8 = 0x02;
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
        let line = format!(
            "bootproof stand-in app v{version} stage=app vt={:#010x} rsr={rsr:#010x} flags={}",
            boot.vector_table,
            p.reset.decode(rsr).join("|")
        );
        let _ = mcu.rtt_enable();
        let rates = app_can_rates(&p);
        let mut can = rates.and_then(|r| mcu.can(r).ok());
        if mcu.uart_setup(BoardRx::Fixed(CONSOLE)).is_err() || !say(&mcu, &line).await {
            return;
        }
        if let (Some(port), Some(r)) = (can.as_mut(), rates) {
            let a = Announcement { stage: STAGE_APP, version: version as u8, rsr, vector_table: boot.vector_table };
            if let Some(f) = frame(r, ANNOUNCE_ID, &a.encode()) {
                let _ = port.send(&f).await;
            }
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
                && let Some(f) = frame(r, HEARTBEAT_ID, &counter.to_le_bytes())
            {
                let _ = port.send(&f).await;
            }
        }
    }
}

/// What a parsed announcement frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// Stage code.
    pub stage: u8,
    /// Version (low byte).
    pub version: u8,
    /// Reset flags as the app read them.
    pub rsr: u32,
    /// Vector table base.
    pub vector_table: u32,
}

impl Announcement {
    /// The frame's 8 data bytes (the vector table keeps its upper 16 bits).
    pub fn encode(&self) -> [u8; 8] {
        let r = self.rsr.to_le_bytes();
        let v = ((self.vector_table >> 16) as u16).to_le_bytes();
        [self.stage, self.version, r[0], r[1], r[2], r[3], v[0], v[1]]
    }

    /// Parse an [`ANNOUNCE_ID`] frame.
    pub fn parse(frame: &CanFrame) -> Option<Announcement> {
        let d = frame.data();
        if frame.id() != CanId::Standard(ANNOUNCE_ID) || d.len() < 8 {
            return None;
        }
        Some(Announcement {
            stage: d[0],
            version: d[1],
            rsr: u32::from_le_bytes([d[2], d[3], d[4], d[5]]),
            vector_table: (u16::from_le_bytes([d[6], d[7]]) as u32) << 16,
        })
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
