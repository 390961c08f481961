//! An update over UDS on CAN FD with the real bootloader and application on the twin, against
//! the floor of the bus, computed from the frame formats of ISO 15765-2 (ISO-TP) and ISO
//! 11898-1 (CAN FD) at the configured rates, not from the twin's bus model:
//!
//! * **payload bound**: the image's bytes in 64-byte consecutive frames (63 payload bytes
//!   each), back to back, nothing else: what the transfer phase could reach at best;
//! * **protocol floor**: per TransferData block, its first frame, consecutive frames, the
//!   tester's flow control frame and the 8-byte response, as this protocol sends them.
//!
//! Dynamic stuff bits are left out of both (they depend on the data), so both are lower bounds.
//! The flash floor (word programming and sector erase times from the datasheet) is not in this
//! benchmark yet: the twin's flash times are a placeholder assumption (see the board profile).
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
use std::time::Duration;

#[path = "floor.rs"]
mod floor;
use floor::fd_frame_secs;

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

fn main() {
    let p = BoardProfile::builtin("stm32h723zg").unwrap();
    let fw = for_board(&p).expect("the H723 firmware");
    let key = SigningKey::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/keys/test-ed25519-a.pem"
    )))
    .unwrap();
    let set = fw.factory_set(&H723, &key).unwrap();
    let image = fw.signed(&H723, Binary::Slot(SlotId::B), ImageVersion::new(2, 0, 0, 0), 2, &key).unwrap();
    let plan = update::plan("v2", image, &H723, &[key.trusted()]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let wall = std::time::Instant::now();
    let report = rt.block_on(async {
        let twin = Twin::new(p.clone(), TwinOptions::for_profile(&p));
        twin.program(&set).unwrap();
        let mut rig = twin.rig();
        rig.boot0().unwrap().set_boot0(Level::Low).await.unwrap();
        rig.power().unwrap().power_on().await.unwrap();
        wait_beacon(&mut rig).await;
        update::update(rig.can().unwrap(), &H723, &plan, &mut |_| {}).await.unwrap()
    });
    let wall = wall.elapsed();
    let bytes = plan.image.len();
    let frame64 = fd_frame_secs(64, NOMINAL, DATA);
    let payload_bound = bytes.div_ceil(63) as f64 * frame64;
    // Per block: 2 + block bytes of request: a first frame (62 bytes), then consecutive frames.
    let block = 4096usize;
    let mut protocol = 0.0;
    for chunk in (0..bytes).step_by(block).map(|at| block.min(bytes - at)) {
        let msg = chunk + 2;
        let cfs = (msg - 62).div_ceil(63);
        protocol += frame64 * (1 + cfs) as f64; // FF + CFs (the last padded to a CAN FD length: floor uses 64)
        protocol += 2.0 * fd_frame_secs(8, NOMINAL, DATA); // FC and the 2-byte response, padded to 8
    }
    let measured = report.transfer.as_secs_f64();
    println!(
        "UDS update over CAN FD ({} kbit/s nominal, {} Mbit/s data, BRS), {} bytes in {}-byte TransferData blocks",
        NOMINAL / 1000,
        DATA / 1_000_000,
        bytes,
        block
    );
    println!("  64-byte frame on the wire (no dynamic stuff bits): {:.1} µs", frame64 * 1e6);
    println!(
        "  transfer phase, measured (twin, board time): {measured:.3} s ({:.1} KiB/s)",
        bytes as f64 / measured / 1024.0
    );
    println!("  payload bound:  {payload_bound:.3} s -> {:.1} % of it reached", 100.0 * payload_bound / measured);
    println!("  protocol floor: {protocol:.3} s -> {:.1} % of it reached", 100.0 * protocol / measured);
    println!(
        "  whole update (enter, erase, transfer, check, reset): {:.3} s board time; {:.1} s wall",
        report.total.as_secs_f64(),
        wall.as_secs_f64()
    );
}
