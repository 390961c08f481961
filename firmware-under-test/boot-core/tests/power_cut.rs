//! The proof: no power cut, at any operation, in any mode, with any read behaviour of the
//! words it disturbs, bricks the board, lets the stored minimum go down, or boots what the
//! scenario does not allow (the checks: `boot_core::sim::sweep`).
//!
//! Always on (see each test for its size): every scenario uncut; every single cut of every
//! scenario in all eight cut modes (before, after, torn with each of the six read modes); pairs
//! of cuts of every scenario (sampled first cut, four modes each); 100,000 seeded random runs
//! with up to five cuts in any mode, all with 1 KiB-payload images.
//!
//! `BOOTPROOF_SWEEP=full` adds every pair in all 64 mode combinations for the full update and
//! the revert, 1,000,000 random runs, and the single cuts and sampled pairs of 64 KiB images
//! for the full update, the revert and the second update (`.ci/run` runs it in release mode,
//! about 6 min on 2 cores). `BOOTPROOF_SEED` (hex) changes the random seed.
//! `BOOTPROOF_REPLAY='scenario@seed:cut,cut'` replays one run (the failure message prints it).

use boot_core::sim::sweep::{self, Fixture, Report, Scenario};
use boot_core::sim::{CutMode, MemoCheck};

fn fixture() -> Fixture {
    // 1 KiB payloads: every operation kind of a real update (sector erases, header words,
    // payload words, TLV words, the trailer words, the journal) with few enough operations
    // that pairs stay affordable. A 64 KiB image only repeats the payload words.
    Fixture::with_test_key(1024)
}

fn full() -> bool {
    std::env::var("BOOTPROOF_SWEEP").is_ok_and(|v| v == "full")
}

/// `BOOTPROOF_PAIR_STRIDE=N`: in the 64 KiB sweep, the first cut lands on every Nth operation
/// (default 64; CI uses 256 to stay within its time budget), the second on every 64th.
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
fn every_scenario_reaches_its_goal_uncut() {
    let fx = fixture();
    for sc in Scenario::ALL {
        let mut sig = MemoCheck::default();
        let o = sweep::run(&fx, sc, 0, &[], &mut sig).unwrap_or_else(|f| panic!("{f}"));
        println!("{:<22} {:>3} flash operations, {} boots", sc.name(), o.drive_ops[0], o.boots);
    }
}

#[test]
fn every_single_cut_in_every_mode() {
    let fx = fixture();
    for sc in sweep::cuttable(&fx) {
        let jobs = sweep::singles(&fx, sc);
        let n = fx.ops(sc);
        let r = sweep::execute(
            &fx,
            &format!("single cuts, {} ({n} operations × {} modes)", sc.name(), CutMode::ALL.len()),
            &jobs,
        );
        assert_eq!(r.runs, n as u64 * CutMode::ALL.len() as u64);
        assert_eq!(r.cuts, r.runs, "every single cut lands");
        pass(&r);
    }
}

#[test]
fn pairs_of_cuts() {
    let fx = fixture();
    for sc in sweep::cuttable(&fx) {
        let (stride, modes): (u32, &[CutMode]) = match sc {
            Scenario::FullUpdate | Scenario::Revert if full() => (1, &CutMode::ALL),
            Scenario::FullUpdate | Scenario::Revert => (1, &sweep::PAIR_MODES_QUICK),
            _ => (4, &sweep::PAIR_MODES_QUICK),
        };
        let jobs = sweep::pairs(&fx, sc, stride, modes);
        let r = sweep::execute(
            &fx,
            &format!(
                "pairs of cuts, {} (first cut every {stride}th op + last 12, {} modes each)",
                sc.name(),
                modes.len()
            ),
            &jobs,
        );
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
    for sc in [Scenario::FullUpdate, Scenario::Revert, Scenario::SecondUpdate] {
        let n = fx.ops(sc);
        pass(&sweep::execute(
            &fx,
            &format!("64 KiB, single cuts, {} ({n} operations × 8)", sc.name()),
            &sweep::singles(&fx, sc),
        ));
        pass(&sweep::execute(
            &fx,
            &format!("64 KiB, pairs (first cut every {stride}th op, second every 64th, + last 12 each), {}", sc.name()),
            &sweep::pairs_sampled(&fx, sc, stride, 64, &sweep::PAIR_MODES_QUICK),
        ));
    }
}

#[test]
fn random_runs_with_up_to_five_cuts() {
    let fx = fixture();
    let count = if full() { 1_000_000 } else { 100_000 };
    let s = seed();
    let jobs = sweep::random(&fx, &sweep::cuttable(&fx), s, count);
    let r = sweep::execute(&fx, &format!("random runs, seed {s:#x}"), &jobs);
    println!("  runs by cuts landed: {:?}", r.by_cut_count);
    let per_mode: Vec<String> = CutMode::ALL
        .iter()
        .map(|m| format!("{}: {}", m.code(), jobs.iter().filter(|(_, _, c)| c.iter().any(|c| c.mode == *m)).count()))
        .collect();
    println!("  runs with a cut in each mode: {}", per_mode.join(", "));
    pass(&r);
    assert_eq!(r.runs, count);
    assert!(r.by_cut_count[5] > 0, "some runs land five cuts");
    assert!(r.runs_with_torn_reads > count / 10, "disturbed words are read and survived");
}

#[test]
fn replay() {
    let fx = fixture();
    let spec = std::env::var("BOOTPROOF_REPLAY").unwrap_or_else(|_| "full-update@7:40tv,3a,44b".into());
    let (sc, seed, cuts) = sweep::parse_replay(&spec).expect("BOOTPROOF_REPLAY");
    let (r, trace) = sweep::replay(&fx, sc, seed, &cuts);
    for line in &trace {
        println!("  {line}");
    }
    match r {
        Ok(o) => println!("{spec}: ok, {o:?}"),
        Err(f) => panic!("{f}"),
    }
}

#[test]
fn failures_carry_a_replay_string_and_late_cuts_do_not_land() {
    use boot_core::sim::{Cut, ReadMode};
    let f = sweep::Failure {
        scenario: Scenario::Revert,
        cuts: vec![Cut { at: 3, mode: CutMode::Torn(ReadMode::Vary) }, Cut { at: 0, mode: CutMode::Before }],
        seed: 0x9f,
        check: sweep::Check::Brick,
        what: "x".into(),
    };
    assert_eq!(f.replay(), "revert@9f:3tv,0b");
    assert!(f.to_string().contains("BOOTPROOF_REPLAY='revert@9f:3tv,0b'"), "{f}");
    assert_eq!(sweep::parse_replay("revert@9f:3tv,0b").unwrap(), (Scenario::Revert, 0x9f, f.cuts.clone()));
    assert_eq!(sweep::parse_replay("revert:3t").unwrap().1, 0, "the seed defaults to 0");
    assert!(sweep::parse_replay("sideways:3t").is_err());
    assert!(sweep::parse_replay("revert:3x").is_err());
    assert!(sweep::parse_replay("revert@zz:3t").is_err());
    let fx = fixture();
    let mut sig = MemoCheck::default();
    let o = sweep::run(&fx, Scenario::Revert, 0, &[Cut { at: 100_000, mode: CutMode::Torn(ReadMode::Ecc) }], &mut sig)
        .unwrap();
    assert_eq!(o.effective_cuts, 0);
}
