//! Flash time of a 256 KiB image through the ST ROM bootloader on the twin, against a floor
//! computed from the application notes and the datasheets, not from the twin's code:
//!
//! * **the frames**: the sequence AN5405 (FDCAN, STM32H723) and AN3154 (bxCAN, STM32F446)
//!   prescribe for erasing the image's sectors (all in one Erase command, as the protocol
//!   allows) and writing it in 256-byte Write Memory commands (and reading it back, with
//!   verify), every frame counted bit for bit with its stuff bits (`floor.rs`, ISO
//!   11898-1:2015) at the bit rates of AN2606 (Table 133: FDCAN 250 kbit/s, 1 Mbit/s data;
//!   Table 93: CAN2 125 kbit/s);
//! * **the flash**: the datasheets' typical erase and program times (`floor::datasheet` for
//!   the H7 at x32; `floor::datasheet_f4_x8` for the F446, whose ROM writes by byte).
//!
//! The ROM's own handling time is in no application note: the measurement runs with the twin's
//! named assumption `rom-latency` (the profile's `rom.latency.command_us` per command), and
//! the report shows what it adds. The ratio is measured ÷ floor; the breakdown says what
//! dominates: the wire, the flash, or the rest (ROM latency, and what the client does beyond
//! the minimum: one Erase command per sector, and a read-back of each erased sector).
//!
//! Run: `cargo bench -p bootproof --bench rom_flash`.

use std::time::Instant;

use bootproof::flash::{self, FlashOptions};
use bootproof::rom::RomClient;
use bootproof_fixtures::RomTransportKind;
use bootproof_rig::time;
use bootproof_twin::{Twin, standin};

#[path = "floor.rs"]
mod floor;

const SIZE: usize = 256 * 1024;
const BLOCK: usize = 256;

/// The floor: (seconds on the wire, seconds of flash work).
struct Floor {
    wire: f64,
    flash: f64,
    commands: usize,
    /// The same frames timed by the twin's own bus model (`bootproof_rig::can::wire_time`),
    /// to tell a disagreement about bits from one about the exchange.
    twin_wire: f64,
}

fn twin_wire(frames: &[(u16, Vec<u8>)], fd: bool, rates: bootproof_rig::can::Bitrates) -> f64 {
    use bootproof_rig::can::{CanFrame, CanId, wire_time};
    frames
        .iter()
        .map(|(id, d)| {
            let id = CanId::Standard(*id);
            let f = if fd { CanFrame::fd(id, d, true).unwrap() } else { CanFrame::classic(id, d).unwrap() };
            wire_time(&f, rates).as_secs_f64()
        })
        .sum()
}

/// AN5405 on the H723: Erase (0x44: count, ACK, ACK, the sector list in one 64-byte frame,
/// ACK when erased); per 256 bytes Write Memory (0x31: address + N, ACK, four 64-byte data
/// frames, ACK when written) and with verify Read Memory (0x11: address + N, ACK, four 64-byte
/// frames, ACK). The device answers on the command's ID.
fn fdcan_floor(image: &[u8], base: u32, verify: bool) -> Floor {
    const NOMINAL: u32 = 250_000; // AN2606 Table 133
    const DATA: u32 = 1_000_000;
    let sector = 128 * 1024;
    let sectors = image.len().div_ceil(sector);
    let mut frames: Vec<(u16, Vec<u8>)> = Vec::new();
    let ack = |f: &mut Vec<(u16, Vec<u8>)>, id: u16| f.push((id, vec![0x79]));
    frames.push((0x44, (sectors as u16).to_be_bytes().to_vec()));
    ack(&mut frames, 0x44);
    ack(&mut frames, 0x44);
    let mut list: Vec<u8> = (0..sectors as u16).flat_map(|s| s.to_be_bytes()).collect();
    list.resize(64, 0);
    frames.push((0x44, list));
    ack(&mut frames, 0x44);
    let mut commands = 1;
    for (i, block) in image.chunks(BLOCK).enumerate() {
        let addr = base + (i * BLOCK) as u32;
        let mut cmd = addr.to_be_bytes().to_vec();
        cmd.push((block.len() - 1) as u8);
        for id in [0x31u16].into_iter().chain(verify.then_some(0x11)) {
            frames.push((id, cmd.clone()));
            ack(&mut frames, id);
            for f in block.chunks(64) {
                frames.push((id, f.to_vec()));
            }
            ack(&mut frames, id);
            commands += 1;
        }
    }
    let wire = floor::fd_frames_secs(frames.iter().map(|(id, d)| (*id, d.as_slice())), NOMINAL, DATA);
    let flash = sectors as f64 * floor::datasheet::SECTOR_ERASE_S
        + image.len().div_ceil(32) as f64 * floor::datasheet::WORD_PROGRAM_S;
    let twin_wire = twin_wire(&frames, true, bootproof_rig::can::Bitrates::fd(NOMINAL, DATA));
    Floor { wire, flash, commands, twin_wire }
}

/// AN3154 on the F446: Erase (0x43: up to 8 sector numbers in one frame, ACK, ACK when
/// erased); per 256 bytes Write Memory (0x31: address + N, ACK, 32 data frames of 8 bytes each
/// ACKed, on ID 0x31, ACK when written) and with verify Read Memory (0x11: address + N, ACK, 32 frames of 8
/// bytes, ACK).
fn bxcan_floor(image: &[u8], base: u32, verify: bool) -> Floor {
    const RATE: u32 = 125_000; // AN2606 Table 93
    // F446 sectors: 4 × 16 KiB, 64 KiB, then 128 KiB (RM0390 Table 4).
    let sizes = [16 * 1024, 16 * 1024, 16 * 1024, 16 * 1024, 64 * 1024, 128 * 1024, 128 * 1024, 128 * 1024];
    let (mut covered, mut sectors, mut erase) = (0usize, Vec::new(), 0.0);
    for (i, s) in sizes.iter().enumerate() {
        if covered >= image.len() {
            break;
        }
        covered += s;
        sectors.push(i as u8);
        erase += match s {
            0x4000 => floor::datasheet_f4_x8::ERASE_16K_S,
            0x1_0000 => floor::datasheet_f4_x8::ERASE_64K_S,
            _ => floor::datasheet_f4_x8::ERASE_128K_S,
        };
    }
    let mut frames: Vec<(u16, Vec<u8>)> = Vec::new();
    let ack = |f: &mut Vec<(u16, Vec<u8>)>, id: u16| f.push((id, vec![0x79]));
    frames.push((0x43, sectors.clone()));
    ack(&mut frames, 0x43);
    ack(&mut frames, 0x43);
    let mut commands = 1;
    for (i, block) in image.chunks(BLOCK).enumerate() {
        let addr = base + (i * BLOCK) as u32;
        let mut cmd = addr.to_be_bytes().to_vec();
        cmd.push((block.len() - 1) as u8);
        frames.push((0x31, cmd.clone()));
        ack(&mut frames, 0x31);
        // "The bootloader does not check the standard ID of the data" (AN2662 §3.10; 0x04
        // recommended): the client sends them with the command's ID, 0x31, which stuffs fewer
        // bits than 0x04 (a run of eight zeros after SOF) and saves about 0.26 s here.
        for f in block.chunks(8) {
            frames.push((0x31, f.to_vec()));
            ack(&mut frames, 0x31);
        }
        ack(&mut frames, 0x31);
        commands += 1;
        if verify {
            frames.push((0x11, cmd));
            ack(&mut frames, 0x11);
            for f in block.chunks(8) {
                frames.push((0x11, f.to_vec()));
            }
            ack(&mut frames, 0x11);
            commands += 1;
        }
    }
    let wire = floor::classic_frames_secs(frames.iter().map(|(id, d)| (*id, d.as_slice())), RATE);
    let flash = erase + image.len() as f64 * floor::datasheet_f4_x8::PROGRAM_S;
    let twin_wire = twin_wire(&frames, false, bootproof_rig::can::Bitrates::classic(RATE));
    Floor { wire, flash, commands, twin_wire }
}

struct Row {
    label: String,
    measured: f64,
    floor: Floor,
    latency: f64,
    wall: std::time::Duration,
}

async fn run(board: &str, kind: RomTransportKind, verify: bool) -> Row {
    let twin = Twin::builtin(board).unwrap();
    let mut rig = twin.rig();
    let p = twin.board().profile().clone();
    let image = standin::image(&p, p.flash.base, 1, SIZE);
    let bytes: Vec<u8> = image.flash_words(1, p.flash.erased).into_values().flatten().collect();
    assert_eq!(bytes.len(), SIZE);
    rig.reset_into_rom().await.unwrap();
    let mut rom = RomClient::open(&mut rig, Some(kind)).unwrap();
    rom.connect().await.unwrap();
    let opts = FlashOptions { skip_unchanged: false, verify, stop_after_writes: None };
    let wall = Instant::now();
    let t0 = time::Instant::now();
    let report = flash::flash(&mut rom, &image, &opts, &Default::default(), &mut |_| {}).await.unwrap();
    let measured = t0.elapsed().as_secs_f64();
    let wall = wall.elapsed();
    assert_eq!(report.verified, verify);
    let floor = match kind {
        RomTransportKind::Fdcan => fdcan_floor(&bytes, p.flash.base, verify),
        _ => bxcan_floor(&bytes, p.flash.base, verify),
    };
    let latency = floor.commands as f64 * p.rom.latency.command_us as f64 * 1e-6;
    let label = format!("{board} {kind}{}", if verify { " + verify" } else { "" });
    Row { label, measured, floor, latency, wall }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    println!(
        "256 KiB through the ST ROM bootloader on the twin, against the application notes' frames and the datasheets' flash times"
    );
    println!(
        "{:<36} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>10} {:>7}",
        "protocol", "time s", "floor s", "ratio", "wire s", "flash s", "rest s", "latency s", "wall ms"
    );
    for (board, kind) in [("stm32h723zg", RomTransportKind::Fdcan), ("stm32f446re", RomTransportKind::Bxcan)] {
        for verify in [false, true] {
            let r = rt.block_on(run(board, kind, verify));
            let floor = r.floor.wire + r.floor.flash;
            println!(
                "{:<36} {:>8.3} {:>8.3} {:>6.3}x {:>8.3} {:>8.3} {:>8.3} {:>10.3} {:>7.0}",
                r.label,
                r.measured,
                floor,
                r.measured / floor,
                r.floor.wire,
                r.floor.flash,
                r.measured - floor,
                r.latency,
                r.wall.as_secs_f64() * 1e3
            );
            let dominant = if r.floor.wire > r.floor.flash { "the wire" } else { "the flash" };
            println!(
                "    dominated by {dominant} ({:.0} % of the floor); beyond the floor: {:.3} s, of which the ROM latency assumption ({} commands) is {:.3} s",
                100.0 * r.floor.wire.max(r.floor.flash) / floor,
                r.measured - floor,
                r.floor.commands,
                r.latency
            );
            println!(
                "    the same frames by the twin's bus model: {:.3} s ({:+.4} % against the floor's bit count)",
                r.floor.twin_wire,
                100.0 * (r.floor.twin_wire / r.floor.wire - 1.0)
            );
        }
    }
}
