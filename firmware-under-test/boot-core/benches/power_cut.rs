//! Power-cut sweep speed: verified interruption points per second.
//!
//! A point is one complete run: the scenario driven through its cuts, then every invariant
//! checked (valid image booted at every boot, no second trial, bootloader untouched, no flash
//! misuse, goal reached, stable, and a fresh update that succeeds). Workload: every single cut
//! and every pair of cuts of a full update and of a revert, plus 20,000 random runs with up to
//! five cuts.
//!
//! Bar: 5,000 points/s on this machine kind. Baseline: MCUboot's simulator verifies about 470
//! interruption points per second here (`perm_with_fails`, 50,328 points in 107 s on one
//! thread: shared/reference/update-design.md §0), so the single-thread figure is the fair
//! comparison.
//!
//! `cargo bench -p boot-core --bench power_cut`

use boot_core::sim::sweep::{self, Fixture, Scenario};

const BAR: f64 = 5_000.0;
const MCUBOOT: f64 = 470.0;

fn main() {
    let fx = Fixture::with_test_key(1024);
    let mut jobs = sweep::exhaustive(&fx, 1);
    jobs.extend(sweep::random(&fx, 0xB007_C0DE, 20_000));
    let ops = [fx.ops(Scenario::FullUpdate), fx.ops(Scenario::Revert)];
    println!(
        "workload: {} points (singles + all pairs of both scenarios + 20,000 random); flash operations per uncut drive: full update {}, revert {}",
        jobs.len(),
        ops[0],
        ops[1]
    );
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for threads in [1, cores] {
        let r = sweep::execute_on(&fx, &format!("{threads} thread(s)"), &jobs, threads);
        assert_eq!(r.failed, 0, "{r}");
        let pps = r.points_per_second();
        println!(
            "{threads} thread(s): {} points in {:.2} s = {:.0} points/s; {:.1}x the 5,000 points/s bar; {:.1}x MCUboot's simulator (470 points/s)",
            r.runs,
            r.elapsed.as_secs_f64(),
            pps,
            pps / BAR,
            pps / MCUBOOT
        );
        if threads == cores {
            break;
        }
    }
}
