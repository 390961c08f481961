//! The sweeps can fail: every deliberate bug in the core (`boot_core::sim::mutant`) is caught,
//! and caught by a check on outcomes (what boots, what counter is stored, what the core
//! accepted), not only by the flash model's misuse detector. A sweep that passed a broken core
//! would prove nothing.
//!
//! The kill table printed here (mutant, runs until the first outcome failure, the checks that
//! failed, the first replay string) is the proof's own test: a mutant that stops being caught
//! fails CI. The workload is every scenario uncut, every single cut of every scenario in every
//! mode, pairs of cuts of three scenarios, and 5,000 random runs; each mutant runs until the
//! first failure of an outcome check.
//!
//! One test in its own binary: the mutant switch is process-global.

use std::collections::BTreeMap;

use boot_core::sim::mutant::{self, Mutant};
use boot_core::sim::sweep::{self, Check, Fixture, Job, Scenario};

fn workload(fx: &Fixture) -> Vec<Job> {
    let mut jobs: Vec<Job> = Scenario::ALL.iter().map(|s| (*s, 0, vec![])).collect();
    for sc in sweep::cuttable(fx) {
        jobs.extend(sweep::singles(fx, sc));
    }
    for sc in sweep::cuttable(fx) {
        jobs.extend(sweep::seeded_singles(fx, sc, 8));
    }
    for sc in [Scenario::FullUpdate, Scenario::Revert, Scenario::SecondUpdate] {
        jobs.extend(sweep::pairs(fx, sc, 6, &sweep::PAIR_MODES_QUICK));
    }
    jobs.extend(sweep::random(fx, &sweep::cuttable(fx), 0x5EED_0FB0, 5_000));
    jobs
}

#[test]
fn every_deliberate_bug_is_caught_by_an_outcome_check() {
    let fx = Fixture::with_test_key(1024);
    let jobs = workload(&fx);
    mutant::set(Mutant::None);
    let clean = sweep::execute(&fx, "the real core", &jobs);
    println!("{clean}");
    assert_eq!(clean.failed, 0, "the real core fails its own proof");

    println!("\n| mutant | runs until caught | failing runs | caught by (outcome checks) | also | first replay |");
    println!("|---|---|---|---|---|---|");
    let mut survivors = Vec::new();
    let guarded: Vec<Mutant> = Mutant::GUARDED.iter().map(|(m, _)| *m).collect();
    let guards: Vec<Mutant> = Mutant::GUARDED.iter().map(|(_, g)| *g).collect();
    let rows: Vec<(String, Vec<Mutant>)> = Mutant::BUGS
        .iter()
        // A guard is a second line of defence: harmless alone by design, proven by its pair.
        .filter(|m| !guards.contains(m))
        .map(|&m| {
            let guard = Mutant::GUARDED.iter().find(|(b, _)| *b == m).map(|(_, g)| *g);
            match guard {
                Some(g) => (format!("{} (+{})", m.name(), g.name()), vec![m, g]),
                None => (m.name().to_string(), vec![m]),
            }
        })
        .collect();
    for (name, ms) in rows {
        let m = ms[0];
        mutant::set_all(&ms);
        let r = sweep::execute_until_caught(&fx, &name, &jobs);
        mutant::set(Mutant::None);
        let (outcome, mechanics): (BTreeMap<Check, u64>, BTreeMap<Check, u64>) =
            r.by_check.iter().map(|(c, n)| (*c, *n)).partition(|(c, _)| c.is_outcome());
        let first = r.failures.iter().find(|f| f.check.is_outcome()).map(|f| f.replay()).unwrap_or_else(|| "-".into());
        println!("| {name} | {} | {} | {:?} | {:?} | `{first}` |", r.runs, r.failed, outcome, mechanics);
        if !r.caught_by_outcome() {
            survivors.push(name);
        }
        if guarded.contains(&m) {
            // On its own the guard makes it harmless: show that it is, so the guard is known to
            // carry weight.
            mutant::set(m);
            let alone = sweep::execute_until_caught(&fx, m.name(), &jobs);
            mutant::set(Mutant::None);
            println!(
                "| {} alone | {} | {} | {:?} | (harmless while the guard stands) | |",
                m.name(),
                alone.runs,
                alone.failed,
                alone.by_check
            );
        }
    }
    assert!(survivors.is_empty(), "mutants not caught by any outcome check: {survivors:?}");
}
