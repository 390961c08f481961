//! Flash time of a 256 KiB image through the ST ROM bootloader on the twin, as a ratio against
//! the protocol's own floor: the wire time of every frame the protocol must exchange (exact bit
//! counts, stuff bits included) plus the flash's erase and program time.
//!
//! Run: `cargo bench -p bootproof --bench rom_flash`. Bar: ≤ 1.05× the floor for FDCAN (AN5405,
//! STM32H723) and bxCAN (AN3154, STM32F446). The ratio measures what the client adds: idle gaps,
//! polling, retries.

use std::time::Instant;

use bootproof::flash::{self, FlashOptions};
use bootproof::rom::RomClient;
use bootproof_fixtures::RomTransportKind;
use bootproof_rig::time;
use bootproof_twin::{Twin, standin};

const SIZE: usize = 256 * 1024;

struct Row {
    label: String,
    measured: std::time::Duration,
    floor: std::time::Duration,
    frames: u64,
    floor_frames: usize,
    wall: std::time::Duration,
}

async fn run(board: &str, kind: RomTransportKind, verify: bool) -> Row {
    let twin = Twin::builtin(board).unwrap();
    let mut rig = twin.rig();
    let p = twin.board().profile().clone();
    let image = standin::image(&p, p.flash.base, 1, SIZE);
    rig.reset_into_rom().await.unwrap();
    let mut rom = RomClient::open(&mut rig, Some(kind)).unwrap();
    rom.connect().await.unwrap();
    let frames_before = twin.board().can_bus().stats().frames;
    let opts = FlashOptions { skip_unchanged: false, verify, stop_after_writes: None };
    let wall = Instant::now();
    let t0 = time::Instant::now();
    let report = flash::flash(&mut rom, &image, &opts, &Default::default(), &mut |_| {}).await.unwrap();
    let measured = t0.elapsed();
    let wall = wall.elapsed();
    assert_eq!(report.verified, verify);
    let (floor, floor_frames) = flash::can_floor(&p, kind, &image, verify);
    let frames = twin.board().can_bus().stats().frames - frames_before;
    let label = format!("{board} {kind}{}", if verify { " + verify" } else { "" });
    Row { label, measured, floor, frames, floor_frames, wall }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    println!("256 KiB through the ST ROM bootloader on the twin (virtual time = physical time of the model)");
    println!(
        "{:<40} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>8}",
        "protocol", "time s", "floor s", "ratio", "frames", "floor fr", "KiB/s", "wall ms"
    );
    let mut worst: f64 = 0.0;
    for (board, kind) in [("stm32h723zg", RomTransportKind::Fdcan), ("stm32f446re", RomTransportKind::Bxcan)] {
        for verify in [false, true] {
            let r = rt.block_on(run(board, kind, verify));
            let ratio = r.measured.as_secs_f64() / r.floor.as_secs_f64();
            if !verify {
                worst = worst.max(ratio);
            }
            println!(
                "{:<40} {:>10.3} {:>10.3} {:>7.4}x {:>9} {:>9} {:>9.1} {:>8.0}",
                r.label,
                r.measured.as_secs_f64(),
                r.floor.as_secs_f64(),
                ratio,
                r.frames,
                r.floor_frames,
                SIZE as f64 / 1024.0 / r.measured.as_secs_f64(),
                r.wall.as_secs_f64() * 1e3
            );
        }
    }
    println!("worst erase+write ratio: {worst:.4}x the floor (bar: 1.05x)");
    let wall = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bootproof")).arg("suite").output();
    match out {
        Ok(o) if o.status.success() => {
            println!("`bootproof suite` (3 twins, 5 scenarios): {:.2} s wall (bar: 30 s)", wall.elapsed().as_secs_f64())
        }
        Ok(o) => println!("`bootproof suite` FAILED: {}", String::from_utf8_lossy(&o.stdout)),
        Err(e) => println!("`bootproof suite` could not run: {e}"),
    }
}
