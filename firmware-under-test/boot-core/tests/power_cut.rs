//! The proof: no power cut, at any operation, in any mode, bricks the board.
//!
//! Always on (about 15 s on 2 cores): every single cut of a full update and of a revert in each
//! of the three modes, every pair of cuts of both, and 100,000 seeded random runs with up to
//! five cuts, all with 1 KiB-payload images.
//!
//! `BOOTPROOF_SWEEP=full` adds 1,000,000 random runs, and the single cuts and sampled pairs of
//! an update with a 64 KiB payload (`.ci/run` runs it in release mode; about 14 min on 2 cores
//! at the default pair stride of 64, about 7 min with `BOOTPROOF_PAIR_STRIDE=256` as CI runs it).
//! `BOOTPROOF_SEED` (hex) changes the random seed.
//! `BOOTPROOF_REPLAY='scenario:cut,cut'` replays one run (the failure message prints it).

use boot_core::sim::sweep::{self, Fixture, Report, Scenario};
use boot_core::sim::{Cut, CutMode, MemoCheck};

fn fixture() -> Fixture {
    // 1 KiB payloads: every operation kind of a real update (sector erases, header words,
    // payload words, TLV words, the trailer words, the journal) with few enough operations
    // that all pairs stay exhaustive. A 64 KiB image only repeats the payload words.
    Fixture::with_test_key(1024)
}

fn full() -> bool {
    std::env::var("BOOTPROOF_SWEEP").is_ok_and(|v| v == "full")
}

/// `BOOTPROOF_PAIR_STRIDE=N`: in the 64 KiB sweep, the first cut lands on every Nth operation
/// (default 64; CI uses 256 to stay within its time budget).
fn pair_stride() -> u32 {
    match std::env::var("BOOTPROOF_PAIR_STRIDE") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("BOOTPROOF_PAIR_STRIDE={v:?}: give a whole number of operations, at least 1")),
        Err(_) => 64,
    }
}

fn seed() -> u64 {
    std::env::var("BOOTPROOF_SEED")
        .ok()
        .map(|s| {
            let s = s.trim_start_matches("0x");
            u64::from_str_radix(s, 16).expect("BOOTPROOF_SEED is hex")
        })
        .unwrap_or(0xB007_C0DE)
}

fn pass(r: &Report) {
    println!("{r}");
    assert_eq!(r.failed, 0, "{r}");
}

#[test]
fn every_single_cut() {
    let fx = fixture();
    for sc in Scenario::ALL {
        let jobs = sweep::singles(&fx, sc);
        let n = fx.ops(sc);
        let r = sweep::execute(&fx, &format!("single cuts, {} ({n} operations × 3 modes)", sc.name()), &jobs);
        assert_eq!(r.runs, n as u64 * 3);
        assert_eq!(r.cuts, r.runs, "every single cut lands");
        pass(&r);
        assert!(r.runs_with_torn_reads > 0, "some cuts leave torn words the next boot must read past");
    }
}

#[test]
fn every_pair_of_cuts() {
    let fx = fixture();
    for sc in Scenario::ALL {
        let jobs = sweep::pairs(&fx, sc, 1);
        let r = sweep::execute(&fx, &format!("every pair of cuts, {}", sc.name()), &jobs);
        pass(&r);
        assert_eq!(r.by_cut_count[2], r.runs, "both cuts of every pair land");
    }
}

#[test]
fn a_larger_image_single_cuts_and_sampled_pairs() {
    if !full() {
        println!("64 KiB-payload sweep: set BOOTPROOF_SWEEP=full to run it");
        return;
    }
    let fx = Fixture::with_test_key(64 * 1024);
    let stride = pair_stride();
    for sc in Scenario::ALL {
        let n = fx.ops(sc);
        pass(&sweep::execute(
            &fx,
            &format!("64 KiB, single cuts, {} ({n} operations × 3)", sc.name()),
            &sweep::singles(&fx, sc),
        ));
        pass(&sweep::execute(
            &fx,
            &format!("64 KiB, pairs (first cut every {stride}th op + last 10), {}", sc.name()),
            &sweep::pairs(&fx, sc, stride),
        ));
    }
}

#[test]
fn random_runs_with_up_to_five_cuts() {
    let fx = fixture();
    let count = if full() { 1_000_000 } else { 100_000 };
    let s = seed();
    let jobs = sweep::random(&fx, s, count);
    let r = sweep::execute(&fx, &format!("random runs, seed {s:#x}"), &jobs);
    println!("  runs by cuts landed: {:?}", r.by_cut_count);
    pass(&r);
    assert_eq!(r.runs, count);
    assert!(r.by_cut_count[5] > 0, "some runs land five cuts");
}

#[test]
fn replay() {
    let fx = fixture();
    let spec = std::env::var("BOOTPROOF_REPLAY").unwrap_or_else(|_| "full-update:40t,3a,44b".into());
    let (sc, cuts) = sweep::parse_replay(&spec).expect("BOOTPROOF_REPLAY");
    let mut sig = MemoCheck::default();
    match sweep::run(&fx, sc, &cuts, &mut sig) {
        Ok(o) => println!("{spec}: ok, {o:?}"),
        Err(f) => panic!("{f}"),
    }
}

#[test]
fn failures_carry_a_replay_string_and_late_cuts_do_not_land() {
    let f = sweep::Failure {
        scenario: Scenario::Revert,
        cuts: vec![Cut { at: 3, mode: CutMode::Torn }, Cut { at: 0, mode: CutMode::Before }],
        seed: Some(9),
        what: "x".into(),
    };
    assert_eq!(f.replay(), "revert:3t,0b");
    assert!(f.to_string().contains("BOOTPROOF_REPLAY='revert:3t,0b'"), "{f}");
    assert_eq!(sweep::parse_replay("revert:3t,0b").unwrap(), (Scenario::Revert, f.cuts.clone()));
    assert!(sweep::parse_replay("sideways:3t").is_err());
    assert!(sweep::parse_replay("revert:3x").is_err());
    let fx = fixture();
    let mut sig = MemoCheck::default();
    let o = sweep::run(&fx, Scenario::Revert, &[Cut { at: 100_000, mode: CutMode::Torn }], &mut sig).unwrap();
    assert_eq!(o.effective_cuts, 0);
}
