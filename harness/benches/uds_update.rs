//! An update over UDS on CAN FD with the real bootloader and application on the twin, against
//! floors computed from the standards and the datasheet, not from the twin's models:
//!
//! * **payload bound**: the image's bytes in 64-byte consecutive frames (63 payload bytes
//!   each), back to back, nothing else: what the transfer phase could reach at best;
//! * **protocol floor**: every frame this protocol puts on the bus for the transfer, as it
//!   sends them: the TransferData (the whole image: its first frame and consecutive frames),
//!   the server's flow control and the 2-byte response;
//! * both with their exact bit counts (ISO 11898-1:2015: dynamic stuff bits over these very
//!   bytes, fixed stuff bits in the CRC field), counted by `floor.rs`, which shares no code
//!   with the twin's bus model, at the configured 250 kbit/s nominal and 1 Mbit/s data rates;
//! * **flash floor**: the datasheet's typical sector erase and word program times (x32
//!   parallelism, `floor::datasheet`): every sector of the slot (the design erases all of them:
//!   nothing of an old image survives a commit) and every word of the image.
//!
//! Two images: the application as built (about 97 KiB), and one filling the whole 384 KiB
//! slot (the application followed by incompressible data, so every word is programmed).
//! For the whole update the bound is max(bus floor, flash floor).
//!
//! Run: `cargo bench -p bootproof --bench uds_update`.

use boot_core::layout::{H723, SlotId};
use bootproof::firmware::{Binary, for_board};
use bootproof::update;
use bootproof_fixtures::{BoardProfile, Level};
use bootproof_rig::beacon::CanListener;
use bootproof_rig::{CanEvent, Rig};
use bootproof_twin::{Twin, TwinOptions};
use fut_image::ImageVersion;
use fut_image::keys::SigningKey;
use fut_image::sign::{SignOptions, sign};
use std::time::Duration;

#[path = "floor.rs"]
mod floor;
use floor::{datasheet, fd_frame_secs, fd_frames_secs};

const NOMINAL: u32 = 250_000;
const DATA: u32 = 1_000_000;

async fn wait_beacon(rig: &mut Rig) {
    let mut l = CanListener::new();
    loop {
        if let CanEvent::Frame(f) = rig.can().unwrap().recv(Duration::from_secs(5)).await.expect("a beacon")
            && l.feed(&f).is_some()
        {
            return;
        }
    }
}

/// The frames of the transfer phase: each TransferData block as ISO-TP sends it (the
/// bootloader takes the whole image as one), the server's flow control after its first frame,
/// and the response.
fn transfer_frames(image: &[u8]) -> Vec<(u16, Vec<u8>)> {
    use bootproof_uds::isotp::{FlowStatus, Frame, Next, Sender};
    let fc = Frame::flow(FlowStatus::ContinueToSend, 0, 0);
    let mut frames = Vec::new();
    let block = H723.image_capacity(SlotId::B) as usize;
    for (i, block) in image.chunks(block).enumerate() {
        let k = (i + 1) as u8;
        let mut req = vec![0x36, k];
        req.extend_from_slice(block);
        let mut tx = Sender::new(&req).unwrap();
        loop {
            match tx.next() {
                Next::Send(f) => frames.push((bootproof_uds::REQUEST_ID, f.bytes().to_vec())),
                Next::AwaitFlow => {
                    frames.push((bootproof_uds::RESPONSE_ID, fc.bytes().to_vec()));
                    tx.on_flow(fc.bytes()).unwrap();
                }
                Next::Done => break,
            }
        }
        let resp = [0x76, k];
        let Next::Send(f) = Sender::new(&resp).unwrap().next() else { unreachable!() };
        frames.push((bootproof_uds::RESPONSE_ID, f.bytes().to_vec()));
    }
    frames
}

/// Only the image's bytes, 63 to a 64-byte consecutive frame.
fn payload_frames(image: &[u8]) -> Vec<(u16, Vec<u8>)> {
    image
        .chunks(63)
        .enumerate()
        .map(|(i, c)| {
            let mut d = vec![0x20 | (i as u8 + 1) & 0x0F];
            d.extend_from_slice(c);
            d.resize(64, 0xCC);
            (bootproof_uds::REQUEST_ID, d)
        })
        .collect()
}

struct Run {
    report: update::Report,
    to_beacon: Duration,
    wall: Duration,
}

fn run(p: &BoardProfile, set: &bootproof_rig::image::FirmwareImage, plan: &update::Plan) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let wall = std::time::Instant::now();
    let (report, to_beacon) = rt.block_on(async {
        let twin = Twin::new(p.clone(), TwinOptions::for_profile(p));
        twin.program(set).unwrap();
        let mut rig = twin.rig();
        rig.boot0().unwrap().set_boot0(Level::Low).await.unwrap();
        rig.power().unwrap().power_on().await.unwrap();
        wait_beacon(&mut rig).await;
        let t0 = bootproof_rig::time::Instant::now();
        let report = update::update(rig.can().unwrap(), &H723, plan, &mut |_| {}).await.unwrap();
        wait_beacon(&mut rig).await;
        (report, t0.elapsed())
    });
    Run { report, to_beacon, wall: wall.elapsed() }
}

fn report(what: &str, image: &[u8], r: &Run) {
    let bytes = image.len();
    let secs = |f: &[(u16, Vec<u8>)]| fd_frames_secs(f.iter().map(|(id, d)| (*id, d.as_slice())), NOMINAL, DATA);
    let payload_bound = secs(&payload_frames(image));
    let protocol = secs(&transfer_frames(image));
    // Every sector of the slot: those the image covers, the trailer's (the commit is written
    // there), and any in between, since nothing of an old image may survive the commit
    // (boot-core's `Download::finish`).
    let sectors = (H723.slot(SlotId::B).size / H723.sector_size) as f64;
    let flash_floor = sectors * datasheet::SECTOR_ERASE_S + bytes.div_ceil(32) as f64 * datasheet::WORD_PROGRAM_S;
    let bound = protocol.max(flash_floor);
    let measured = r.report.transfer.as_secs_f64();
    let total = r.report.total.as_secs_f64();
    println!("{what}: {bytes} bytes in one TransferData");
    let wire = r.report.on_wire.as_secs_f64();
    println!(
        "  the image on the wire (its TransferData sent, twin board time): {wire:.3} s ({:.1} KiB/s)",
        bytes as f64 / wire / 1024.0
    );
    println!(
        "    payload bound (image bytes only, stuffed): {payload_bound:.3} s -> {:.1} % of it",
        100.0 * payload_bound / wire
    );
    println!(
        "  transfer phase (RequestDownload to TransferExit; the erases and programming overlap the bus): {measured:.3} s = {:.2}× the protocol floor ({protocol:.3} s, every frame, stuffed)",
        measured / protocol
    );
    println!(
        "  flash floor (datasheet, x32 typ: {sectors} × {:.1} s erase + {} words × {:.0} µs): {flash_floor:.3} s",
        datasheet::SECTOR_ERASE_S,
        bytes.div_ceil(32),
        datasheet::WORD_PROGRAM_S * 1e6
    );
    println!(
        "  whole update (update mode, erase, transfer, check, reset): {total:.3} s = {:.2}× max(bus {protocol:.3} s, flash {flash_floor:.3} s)",
        total / bound
    );
    println!(
        "  to the new image's beacon (its trial boot and confirmation included): {:.3} s = {:.2}×; {:.1} s wall",
        r.to_beacon.as_secs_f64(),
        r.to_beacon.as_secs_f64() / bound,
        r.wall.as_secs_f64()
    );
}

fn main() {
    let p = BoardProfile::builtin("stm32h723zg").unwrap();
    let fw = for_board(&p).expect("the H723 firmware");
    let key = SigningKey::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/keys/test-ed25519-a.pem"
    )))
    .unwrap();
    let set = fw.factory_set(&H723, &key).unwrap();
    let version = ImageVersion::new(2, 0, 0, 0);
    println!(
        "UDS update over CAN FD ({} kbit/s nominal, {} Mbit/s data, BRS); 64-byte frame of 0x00 bytes: {:.1} µs stuffed, {:.1} µs without dynamic stuff bits",
        NOMINAL / 1000,
        DATA / 1_000_000,
        fd_frames_secs([(bootproof_uds::REQUEST_ID, &[0u8; 64][..])], NOMINAL, DATA) * 1e6,
        fd_frame_secs(64, NOMINAL, DATA) * 1e6
    );

    let image = fw.signed(&H723, Binary::Slot(SlotId::B), version, 2, &key).unwrap();
    let plan = update::plan("v2", image, &H723, &[key.trusted()]).unwrap();
    report("the application as built", &plan.image, &run(&p, &set, &plan));

    // The application followed by incompressible filler, up to the slot's capacity.
    let app = fw.image(Binary::Slot(SlotId::B)).unwrap();
    let mut payload = bootproof::firmware::slot_payload(&app, &H723, SlotId::B).unwrap();
    let opts = SignOptions {
        load_addr: H723.slot_address(SlotId::B),
        header_size: H723.header_size as u16,
        version,
        security_counter: 2,
    };
    let tlvs = sign(&payload, &key, &opts).unwrap().len() - payload.len() - H723.header_size as usize;
    let fill = H723.image_capacity(SlotId::B) as usize - H723.header_size as usize - tlvs;
    let mut x = 0x2545_F491_u32;
    while payload.len() < fill {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        payload.push(x as u8);
    }
    let image = sign(&payload, &key, &opts).unwrap();
    assert_eq!(image.len(), H723.image_capacity(SlotId::B) as usize);
    let plan = update::plan("v2, slot-filling", image, &H723, &[key.trusted()]).unwrap();
    report("a whole 384 KiB slot", &plan.image, &run(&p, &set, &plan));
}
