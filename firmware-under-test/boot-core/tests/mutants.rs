//! The sweeps can fail: each deliberate bug in the core (`boot_core::sim::mutant`) is caught by
//! the single and pair sweeps, with a replayable failure. A sweep that passed a broken core
//! would prove nothing.
//!
//! One test in its own binary: the mutant switch is process-global.

use boot_core::sim::mutant::{self, Mutant};
use boot_core::sim::sweep::{self, Fixture};

#[test]
fn every_deliberate_bug_is_caught() {
    let fx = Fixture::with_test_key(1024);
    let jobs = sweep::exhaustive(&fx, 4);
    mutant::set(Mutant::None);
    let clean = sweep::execute(&fx, "the real core", &jobs);
    println!("{clean}");
    assert_eq!(clean.failed, 0);
    for m in Mutant::BUGS {
        mutant::set(m);
        let r = sweep::execute(&fx, &format!("mutant {m:?}"), &jobs);
        mutant::set(Mutant::None);
        println!(
            "mutant {m:?}: {} of {} runs fail; first: {}",
            r.failed,
            r.runs,
            r.failures.first().map(|f| f.to_string()).unwrap_or_default()
        );
        assert!(r.failed > 0, "the sweep did not catch {m:?}");
    }
}
