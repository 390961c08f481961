//! How many simulated power-cycle-and-boot cycles the twin runs per wall second, on one core.
//!
//! Each cycle goes through the same path a scenario uses: the rig's power switch (relay wrapper:
//! off, 100 ms discharge, on, settle), the power-on reset (flags, RAM loss, option bytes, empty
//! check), BOOT0 sampling, the vector fetch and firmware identification, and the firmware
//! starting. Three boot targets:
//! * `blank`: blank H7 flash, the core locks up;
//! * `rom`: BOOT0 high, the ROM bootloader task starts (its 54 ms start-up included);
//! * `app`: the stand-in app boots and its CAN announcement reaches the host.
//!
//! Run: `cargo bench -p bootproof-twin --bench boots`. Bar: ≥ 10,000 cycles per wall second.

use std::time::{Duration, Instant};

use bootproof_fixtures::{BoardProfile, Level};
use bootproof_rig::{CanEvent, Rig};
use bootproof_twin::{Twin, TwinOptions, standin};

#[derive(Clone, Copy)]
enum Target {
    Blank,
    Rom,
    App,
}

async fn setup(target: Target) -> (Twin, Rig) {
    let p = BoardProfile::builtin("stm32h723zg").unwrap();
    let mut opts = TwinOptions::for_profile(&p);
    opts.record_events = false;
    let twin = Twin::new(p.clone(), opts);
    let mut rig = twin.rig();
    if let Target::App = target {
        rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
        rig.power().unwrap().power_on().await.unwrap();
        let img = standin::image(&p, p.flash.base, 1, 16 * 1024);
        rig.probe().unwrap().flash(&img, &mut |_| {}).await.unwrap();
    }
    let boot0 = if let Target::Rom = target { Level::High } else { Level::Low };
    rig.boot0().unwrap().set_boot0(boot0).await.unwrap();
    (twin, rig)
}

async fn cycles(target: Target, n: u32) -> (Duration, Duration) {
    let (twin, mut rig) = setup(target).await;
    let virtual_start = bootproof_rig::time::Instant::now();
    let wall = Instant::now();
    for _ in 0..n {
        rig.power().unwrap().power_cycle(None).await.unwrap();
        match target {
            Target::Blank | Target::Rom => {
                let core = twin.board().core();
                assert!(matches!(core.run, bootproof_twin::board::Run::LockedUp | bootproof_twin::board::Run::Running));
                if let Target::Rom = target {
                    // Let the bootloader finish its start-up.
                    bootproof_rig::time::sleep(Duration::from_millis(55)).await;
                }
            }
            Target::App => loop {
                match rig.can().unwrap().recv(Duration::from_secs(1)).await.unwrap() {
                    CanEvent::Frame(f) if bootproof_rig::beacon::CanListener::new().feed(&f).is_some() => break,
                    _ => {}
                }
            },
        }
    }
    (wall.elapsed(), virtual_start.elapsed())
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let n = std::env::var("BOOTS_BENCH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000u32);
    println!("twin power-cycle-and-boot throughput, STM32H723ZG profile, one core, {n} cycles each");
    println!("{:<8} {:>14} {:>14} {:>16} {:>10}", "boots", "cycles/s", "µs/cycle", "virtual s/cycle", "vs bar");
    let mut worst = f64::MAX;
    for (name, target) in [("blank", Target::Blank), ("rom", Target::Rom), ("app", Target::App)] {
        // Warm-up, then measure.
        rt.block_on(cycles(target, n / 20));
        let (wall, virt) = rt.block_on(cycles(target, n));
        let rate = n as f64 / wall.as_secs_f64();
        worst = worst.min(rate);
        println!(
            "{name:<8} {rate:>14.0} {:>14.1} {:>16.3} {:>9.1}x",
            wall.as_secs_f64() * 1e6 / n as f64,
            virt.as_secs_f64() / n as f64,
            rate / 10_000.0
        );
    }
    println!("slowest: {worst:.0} cycles/s = {:.1}x the 10,000/s bar", worst / 10_000.0);
}
