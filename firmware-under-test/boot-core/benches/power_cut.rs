//! Power-cut sweep speed: verified interruption points per second, at three image sizes.
//!
//! A point is one complete run: a scenario driven through its cuts, then every check (at every
//! boot: no brick, an intact known image, the stored minimum never down, no downgrade, nothing
//! older than a confirmed image, no second trial, nothing unbootable committed; at the end: the
//! goal, two stable boots, the bootloader untouched, no flash misuse, and a fresh update that
//! succeeds). Workload per size: every single cut of a full update and of a revert in all eight
//! cut modes, plus random runs with up to five cuts over every scenario that writes flash.
//!
//! Bar: 5,000 points/s at 1 KiB on this machine kind. Comparison: MCUboot's simulator verifies
//! about 470 interruption points per second here (`perm_with_fails`, 50,328 points in 107 s on
//! one thread: shared/reference/update-design.md §0). What each figure compares: MCUboot's swap
//! upgrade copies the image sector by sector (scratch, status words), so one of its points does
//! more flash work than one of ours, where an update is an erase and one program per 32-byte
//! word; ours does more checking per point (a full boot decision with SHA-256 and a cached
//! Ed25519 check at every boot, plus the ground-truth checks). Larger images mean more words to
//! program and to hash per boot, so points/s falls with size; the number of cut points grows
//! with size instead (a 256 KiB update is about 8,200 operations).
//!
//! `cargo bench -p boot-core --bench power_cut`

use boot_core::sim::sweep::{self, Fixture, Job, Scenario};

const BAR: f64 = 5_000.0;
const MCUBOOT: f64 = 470.0;

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "| image payload | ops per update | points | 1 thread: points/s | × bar | × MCUboot sim | {cores} threads: points/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (kib, random) in [(1usize, 20_000u64), (64, 400), (256, 100)] {
        let fx = Fixture::with_test_key(kib * 1024);
        let mut jobs: Vec<Job> = Vec::new();
        let ops = fx.ops(Scenario::FullUpdate);
        // Every single cut of the update and the revert, thinned for big images to keep the
        // run short (every k-th operation plus the last 12).
        let stride = (ops / 400).max(1);
        for sc in [Scenario::FullUpdate, Scenario::Revert] {
            jobs.extend(
                sweep::singles(&fx, sc).into_iter().filter(|(_, _, c)| c[0].at % stride == 0 || c[0].at + 12 >= ops),
            );
        }
        jobs.extend(sweep::random(&fx, &sweep::cuttable(&fx), 0xB007_C0DE, random));
        let one = sweep::execute_on(&fx, "1 thread", &jobs, 1);
        assert_eq!(one.failed, 0, "{one}");
        let all = sweep::execute_on(&fx, "all", &jobs, cores);
        assert_eq!(all.failed, 0, "{all}");
        let pps = one.points_per_second();
        println!(
            "| {kib} KiB | {ops} | {} | {:.0} | {:.2}× | {:.1}× | {:.0} |",
            one.runs,
            pps,
            pps / BAR,
            pps / MCUBOOT,
            all.points_per_second()
        );
    }
}
