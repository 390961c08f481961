//! The power-cut sweep engine.
//!
//! A *run* starts from the base state — the bootloader in sector 0, image OLD (v1, security
//! counter 1) in slot A, committed, selected and confirmed — and *drives* a scenario to its goal
//! on a simulated board whose power is cut at the given points:
//!
//! * [`Scenario::FullUpdate`]: the host downloads NEW (v2, counter 2) into slot B; the board
//!   reboots into it (first boot: selected); the healthy application confirms it (confirmed,
//!   then the journal raises the counter). Goal: NEW running and confirmed.
//! * [`Scenario::Revert`]: the same download, but NEW is broken: it never confirms, and the
//!   watchdog resets the board. Goal: OLD running again, NEW's trial recorded as failed.
//!
//! Each drive is a loop of boots. At each boot the bootloader core decides; the application
//! that runs confirms itself if it is healthy; the host downloads NEW again whenever OLD is
//! running and NEW has not had its trial (full update: until it is confirmed). A cut ends the
//! drive; power returns and a new drive starts, with operations counted from 0 again; the next
//! cut applies to it. After the last cut the drive runs to its goal uncut.
//!
//! After every run the engine checks, independently of the core's own logic:
//! 1. every boot chose an image (never recovery: a valid image existed throughout);
//! 2. every booted slot holds exactly the bytes of a known signed image (OLD or NEW), all words
//!    intact;
//! 3. no image was booted again after a trial that never confirmed (read from the raw model);
//! 4. the goal state holds, and two more boots are stable;
//! 5. the bootloader sector is bit-for-bit untouched, and the model saw no flash misuse (no
//!    program of a non-erased word, no partial erase, nothing in sector 0);
//! 6. a fresh update afterwards (v3 into the other slot) succeeds: it boots, confirms, and
//!    boots again.
//!
//! A failure carries its scenario, cut list and seed, and prints how to replay it.

use std::string::{String, ToString};
use std::time::{Duration, Instant};
use std::vec::Vec;
use std::{format, vec};

use fut_image::keys::SigningKey;
use fut_image::sign::{SignOptions, sign};
use fut_image::{ImageVersion, TrustedKey};

use super::{Cut, CutMode, MemoCheck, StrictFlash, Word};
use crate::boot::decide;
use crate::journal::Journal;
use crate::layout::{H723, Layout, SlotId};
use crate::trailer::{Flag, Trailer};
use crate::update::{Download, confirm};

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Download, first boot, confirm.
    FullUpdate,
    /// Download, first boot of a broken image, revert.
    Revert,
}

impl Scenario {
    /// Both.
    pub const ALL: [Scenario; 2] = [Scenario::FullUpdate, Scenario::Revert];

    /// Name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FullUpdate => "full-update",
            Scenario::Revert => "revert",
        }
    }

    /// Parse a name.
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// A signed image the runs use.
#[derive(Debug, Clone)]
pub struct Img {
    /// Name (OLD, NEW, FRESH).
    pub name: &'static str,
    /// The slot it is linked for.
    pub slot: SlotId,
    /// Its version.
    pub version: ImageVersion,
    /// The signed bytes.
    pub bytes: Vec<u8>,
}

/// Images, keys and the base flash state.
pub struct Fixture {
    /// The layout.
    pub layout: Layout,
    /// The trusted keys.
    pub keys: Vec<TrustedKey>,
    /// OLD: v1.0.0, counter 1, slot A.
    pub old: Img,
    /// NEW: v2.0.0, counter 2, slot B.
    pub new: Img,
    /// FRESH: v3.0.0, counter 2, one per slot.
    pub fresh: [Img; 2],
    /// The base state.
    pub base: StrictFlash,
}

fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The repository's test signing key, `fixtures/keys/test-ed25519-a.pem` (test-only).
pub const TEST_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/keys/test-ed25519-a.pem");

impl Fixture {
    /// [`Fixture::new`] with the repository's test key ([`TEST_KEY`]).
    ///
    /// # Panics
    /// If the key file cannot be read: the sweeps run from a checkout of this repository.
    pub fn with_test_key(payload_len: usize) -> Fixture {
        let key = SigningKey::load(std::path::Path::new(TEST_KEY))
            .unwrap_or_else(|e| panic!("{TEST_KEY}: {e}: run the sweeps from a bootproof checkout"));
        Fixture::new(&key, payload_len)
    }

    /// Sign the images with `key` (payloads of `payload_len` bytes) and build the base state.
    pub fn new(key: &SigningKey, payload_len: usize) -> Fixture {
        let layout = H723;
        let mk = |name, slot: SlotId, v: u8, counter, seed| {
            let version = ImageVersion::new(v, 0, 0, 0);
            let opts = SignOptions {
                load_addr: layout.slot_address(slot),
                header_size: layout.header_size as u16,
                version,
                security_counter: counter,
            };
            let bytes = sign(&payload(payload_len, seed), key, &opts).expect("sign");
            Img { name, slot, version, bytes }
        };
        let old = mk("OLD", SlotId::A, 1, 1, 0x0123);
        let new = mk("NEW", SlotId::B, 2, 2, 0x4567);
        let fresh = [mk("FRESH", SlotId::A, 3, 2, 0x89ab), mk("FRESH", SlotId::B, 3, 2, 0x89ab)];
        let mut base = StrictFlash::new();
        // A bootloader stand-in in sector 0.
        base.provision(0, &payload(16 * 1024, 0xB007));
        base.provision(layout.slot(SlotId::A).offset, &old.bytes);
        for f in [Flag::Committed, Flag::Selected, Flag::Confirmed] {
            base.provision(f.offset(&layout, SlotId::A), &f.pattern());
        }
        base.provision(layout.journal.offset, &crate::journal::record(1));
        Fixture { layout, keys: vec![key.trusted()], old, new, fresh, base }
    }

    /// Operations of an uncut drive of `scenario` from the base state.
    pub fn ops(&self, scenario: Scenario) -> u32 {
        let mut sig = MemoCheck::default();
        match run(self, scenario, &[], &mut sig) {
            Ok(o) => o.drive_ops[0],
            Err(f) => panic!("the uncut {} run fails: {f}", scenario.name()),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Operations performed by each drive (the last one ran uncut).
    pub drive_ops: Vec<u32>,
    /// Cuts that landed (a cut past the end of its drive does not).
    pub effective_cuts: usize,
    /// Boots.
    pub boots: u32,
    /// Reads of torn words the core handled (ECC errors reported, treated as invalid).
    pub torn_reads: u64,
}

/// A failed run: what, and how to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Scenario.
    pub scenario: Scenario,
    /// Cut list.
    pub cuts: Vec<Cut>,
    /// Seed, for random runs.
    pub seed: Option<u64>,
    /// What went wrong.
    pub what: String,
}

impl Failure {
    /// The replay string (`scenario:cut,cut`), for `BOOTPROOF_REPLAY`.
    pub fn replay(&self) -> String {
        let cuts: Vec<String> = self.cuts.iter().map(|c| c.to_string()).collect();
        format!("{}:{}", self.scenario.name(), cuts.join(","))
    }
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.replay())?;
        if let Some(s) = self.seed {
            write!(f, " (seed {s:#x})")?;
        }
        write!(
            f,
            ": {}\n  replay: BOOTPROOF_REPLAY='{}' cargo test -p boot-core --test power_cut replay",
            self.what,
            self.replay()
        )
    }
}

enum Stop {
    PowerLost,
    Fail(String),
}

struct Board<'a> {
    fx: &'a Fixture,
    flash: StrictFlash,
    sig: &'a mut MemoCheck,
    boots: u32,
}

impl Board<'_> {
    fn lost<E: core::fmt::Debug>(&self, what: &str, e: E) -> Stop {
        if self.flash.powered() { Stop::Fail(format!("{what} failed with power on: {e:?}")) } else { Stop::PowerLost }
    }

    /// The raw model's view of a trailer flag: (exactly the pattern, torn or foreign).
    fn raw_flag(&self, slot: SlotId, flag: Flag) -> (bool, bool) {
        let at = flag.offset(&self.fx.layout, slot);
        match self.flash.word(at) {
            Word::Erased => (false, false),
            Word::Torn => (false, true),
            Word::Programmed => {
                let set = self.flash.raw(at, 32)[..] == flag.pattern()[..];
                (set, !set)
            }
        }
    }

    /// Which known image `slot` holds, exactly (every word intact).
    fn holds(&self, slot: SlotId) -> Option<&'static str> {
        let off = self.fx.layout.slot(slot).offset;
        let fx = self.fx;
        [&fx.old, &fx.new, &fx.fresh[0], &fx.fresh[1]].into_iter().find_map(|img| {
            if img.slot != slot {
                return None;
            }
            let n = img.bytes.len();
            let intact = (0..n.div_ceil(32)).all(|w| self.flash.word(off + w as u32 * 32) != Word::Torn);
            (intact && self.flash.raw(off, n) == img.bytes).then_some(img.name)
        })
    }

    /// One boot: decide, check, return (slot, image name, trial).
    fn boot(&mut self) -> Result<(SlotId, &'static str, bool), Stop> {
        let before = [SlotId::A, SlotId::B].map(|s| {
            let (sel_set, sel_torn) = self.raw_flag(s, Flag::Selected);
            let (conf_set, _) = self.raw_flag(s, Flag::Confirmed);
            (sel_set || sel_torn) && !conf_set
        });
        let l = self.fx.layout;
        let d = decide(&mut self.flash, &l, &self.fx.keys, self.sig);
        if !self.flash.powered() {
            return Err(Stop::PowerLost);
        }
        self.boots += 1;
        let Some(c) = d.chosen else {
            return Err(Stop::Fail(format!("boot {}: recovery although a valid image existed: {d:?}", self.boots)));
        };
        if before[c.slot.index()] {
            return Err(Stop::Fail(format!(
                "boot {}: slot {} booted again after a trial that never confirmed",
                self.boots, c.slot
            )));
        }
        let Some(name) = self.holds(c.slot) else {
            return Err(Stop::Fail(format!("boot {}: slot {} holds no known intact image: {d:?}", self.boots, c.slot)));
        };
        if c.trial && self.raw_flag(c.slot, Flag::Selected) != (true, false) {
            return Err(Stop::Fail(format!(
                "boot {}: trial boot of slot {} without its selected word",
                self.boots, c.slot
            )));
        }
        Ok((c.slot, name, c.trial))
    }

    fn confirm(&mut self, slot: SlotId) -> Result<(), Stop> {
        let l = self.fx.layout;
        confirm(&mut self.flash, &l, slot, &self.fx.keys, self.sig).map(|_| ()).map_err(|e| self.lost("confirm", e))
    }

    fn download(&mut self, img: &Img, running: SlotId) -> Result<(), Stop> {
        let l = self.fx.layout;
        let mut d = Download::begin(&mut self.flash, &l, img.slot, Some(running))
            .map_err(|e| self.lost("download begin", e))?;
        // The host sends the image in 256-byte blocks.
        for chunk in img.bytes.chunks(256) {
            d.write(&mut self.flash, chunk).map_err(|e| self.lost("download write", e))?;
        }
        d.finish(&mut self.flash, &self.fx.keys, self.sig).map(|_| ()).map_err(|e| self.lost("download finish", e))
    }

    /// Drive `scenario` to its goal (or until power is lost).
    fn drive(&mut self, scenario: Scenario) -> Result<(), Stop> {
        let l = self.fx.layout;
        for _ in 0..24 {
            let (slot, name, _) = self.boot()?;
            let healthy = !(scenario == Scenario::Revert && name == "NEW");
            if healthy {
                self.confirm(slot)?;
            }
            match (scenario, name) {
                (Scenario::FullUpdate, "NEW") => return Ok(()),
                (_, "OLD") => {
                    let t = Trailer::read(&mut self.flash, &l, SlotId::B);
                    if !self.flash.powered() {
                        return Err(Stop::PowerLost);
                    }
                    if scenario == Scenario::Revert
                        && t.is_committed()
                        && t.trial_failed()
                        && self.holds(SlotId::B) == Some("NEW")
                    {
                        return Ok(());
                    }
                    let new = self.fx.new.clone();
                    self.download(&new, slot)?;
                }
                (Scenario::Revert, "NEW") => {} // broken: the watchdog resets it
                (_, other) => return Err(Stop::Fail(format!("{other} booted during the {} drive", scenario.name()))),
            }
        }
        Err(Stop::Fail("no progress after 24 boots (boot loop)".into()))
    }

    /// The end-of-run checks.
    fn settle(&mut self, scenario: Scenario) -> Result<(), String> {
        let want = match scenario {
            Scenario::FullUpdate => "NEW",
            Scenario::Revert => "OLD",
        };
        let stop = |s: Stop| match s {
            Stop::PowerLost => "power lost in an uncut phase".to_string(),
            Stop::Fail(f) => f,
        };
        let mut running = None;
        for i in 0..2 {
            let (slot, name, trial) = self.boot().map_err(stop)?;
            if name != want || trial {
                return Err(format!(
                    "settled boot {i}: {name} (trial {trial}) in slot {slot}, expected {want} confirmed"
                ));
            }
            if running.is_some_and(|r| r != slot) {
                return Err("settled boots alternate between slots".into());
            }
            running = Some(slot);
        }
        let running = running.expect("booted");
        if !self.flash.same_region_as(&self.fx.base, self.fx.layout.bootloader) {
            return Err("the bootloader sector changed".into());
        }
        if let Some(v) = self.flash.violations().first() {
            return Err(format!("flash misuse: {v:?} ({} in all)", self.flash.violations().len()));
        }
        // A fresh update afterwards.
        let fresh = self.fx.fresh[running.other().index()].clone();
        self.confirm(running).map_err(stop)?;
        self.download(&fresh, running).map_err(|s| format!("fresh update: {}", stop(s)))?;
        let (slot, name, trial) = self.boot().map_err(stop)?;
        if name != "FRESH" || !trial || slot != fresh.slot {
            return Err(format!(
                "after the fresh update: {name} in slot {slot} (trial {trial}), expected FRESH on trial"
            ));
        }
        self.confirm(slot).map_err(stop)?;
        let (slot2, name, trial) = self.boot().map_err(stop)?;
        if name != "FRESH" || trial || slot2 != slot {
            return Err(format!("after confirming the fresh update: {name} in slot {slot2} (trial {trial})"));
        }
        let j = Journal::read(&mut self.flash, &self.fx.layout);
        if j.minimum != 2 {
            return Err(format!("stored security counter {} after confirming counter-2 images", j.minimum));
        }
        if let Some(v) = self.flash.violations().first() {
            return Err(format!("flash misuse in the fresh update: {v:?}"));
        }
        Ok(())
    }
}

/// One run: `cuts` applied to successive drives, then the uncut drive and the checks.
pub fn run(fx: &Fixture, scenario: Scenario, cuts: &[Cut], sig: &mut MemoCheck) -> Result<Outcome, Failure> {
    let fail = |what: String| Failure { scenario, cuts: cuts.to_vec(), seed: None, what };
    let mut b = Board { fx, flash: fx.base.clone(), sig, boots: 0 };
    let mut out = Outcome::default();
    let mut pending = cuts.iter();
    loop {
        let cut = pending.next().copied();
        b.flash.power_on();
        b.flash.set_cut(cut);
        match b.drive(scenario) {
            Ok(()) => {
                out.drive_ops.push(b.flash.ops());
                break;
            }
            Err(Stop::PowerLost) => {
                out.drive_ops.push(b.flash.ops());
                out.effective_cuts += 1;
            }
            Err(Stop::Fail(what)) => return Err(fail(format!("drive {}: {what}", out.drive_ops.len() + 1))),
        }
    }
    b.flash.power_on();
    b.settle(scenario).map_err(fail)?;
    out.boots = b.boots;
    out.torn_reads = b.flash.stats().torn_reads;
    Ok(out)
}

/// Parse a replay string `scenario:cut,cut,...`.
pub fn parse_replay(s: &str) -> Result<(Scenario, Vec<Cut>), String> {
    let (sc, cuts) =
        s.split_once(':').ok_or_else(|| format!("{s:?}: expected scenario:cut,cut (e.g. revert:41t,3a)"))?;
    let scenario = Scenario::parse(sc).ok_or_else(|| format!("unknown scenario {sc:?}: full-update or revert"))?;
    let cuts = cuts.split(',').filter(|c| !c.is_empty()).map(str::parse).collect::<Result<Vec<Cut>, _>>()?;
    Ok((scenario, cuts))
}

/// A sweep's tally.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Sweep name.
    pub name: String,
    /// Runs (verified interruption points).
    pub runs: u64,
    /// Cuts that landed.
    pub cuts: u64,
    /// Runs in which a boot read a torn word (handled safely).
    pub runs_with_torn_reads: u64,
    /// Runs per number of effective cuts (index = cuts).
    pub by_cut_count: [u64; 6],
    /// Failures (the first 20).
    pub failures: Vec<Failure>,
    /// Total failures.
    pub failed: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Report {
    fn add(&mut self, r: Result<Outcome, Failure>) {
        self.runs += 1;
        match r {
            Ok(o) => {
                self.cuts += o.effective_cuts as u64;
                self.by_cut_count[o.effective_cuts.min(5)] += 1;
                if o.torn_reads > 0 {
                    self.runs_with_torn_reads += 1;
                }
            }
            Err(f) => {
                self.failed += 1;
                if self.failures.len() < 20 {
                    self.failures.push(f);
                }
            }
        }
    }

    fn merge(&mut self, o: Report) {
        self.runs += o.runs;
        self.cuts += o.cuts;
        self.runs_with_torn_reads += o.runs_with_torn_reads;
        for i in 0..6 {
            self.by_cut_count[i] += o.by_cut_count[i];
        }
        self.failed += o.failed;
        for f in o.failures {
            if self.failures.len() < 20 {
                self.failures.push(f);
            }
        }
    }

    /// Verified interruption points per second.
    pub fn points_per_second(&self) -> f64 {
        self.runs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl core::fmt::Display for Report {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}: {} runs, {} cuts landed, {} runs read a torn word (handled), {} failures, {:.2} s, {:.0} points/s",
            self.name,
            self.runs,
            self.cuts,
            self.runs_with_torn_reads,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.points_per_second()
        )?;
        for x in &self.failures {
            write!(f, "\n  FAIL {x}")?;
        }
        Ok(())
    }
}

/// Run `jobs` on all cores. Each job is a scenario and a cut list (and a seed, if random).
pub fn execute(fx: &Fixture, name: &str, jobs: &[(Scenario, Vec<Cut>, Option<u64>)]) -> Report {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    execute_on(fx, name, jobs, threads)
}

/// Run `jobs` on `threads` threads.
pub fn execute_on(fx: &Fixture, name: &str, jobs: &[(Scenario, Vec<Cut>, Option<u64>)], threads: usize) -> Report {
    let threads = threads.max(1).min(jobs.len().max(1));
    let start = Instant::now();
    let chunk = jobs.len().div_ceil(threads).max(1);
    let mut total = Report { name: name.into(), ..Report::default() };
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut sig = MemoCheck::default();
                    let mut r = Report::default();
                    for (sc, cuts, seed) in part {
                        r.add(run(fx, *sc, cuts, &mut sig).map_err(|mut f| {
                            f.seed = *seed;
                            f
                        }));
                    }
                    r
                })
            })
            .collect();
        for h in handles {
            total.merge(h.join().expect("sweep thread panicked"));
        }
    });
    total.elapsed = start.elapsed();
    total
}

/// Every single cut and the pairs (first cut every `stride`th operation) of every scenario.
pub fn exhaustive(fx: &Fixture, stride: u32) -> Vec<(Scenario, Vec<Cut>, Option<u64>)> {
    let mut jobs = Vec::new();
    for sc in Scenario::ALL {
        jobs.extend(singles(fx, sc));
        jobs.extend(pairs(fx, sc, stride));
    }
    jobs
}

/// Every single cut point of `scenario`, in each mode.
pub fn singles(fx: &Fixture, scenario: Scenario) -> Vec<(Scenario, Vec<Cut>, Option<u64>)> {
    let n = fx.ops(scenario);
    (0..n).flat_map(|at| CutMode::ALL.map(|mode| (scenario, vec![Cut { at, mode }], None))).collect()
}

/// Every pair of cut points of `scenario`: each single cut, then every cut point of the drive
/// that follows it, in every mode combination. `stride` > 1 samples the first cut (every
/// `stride`-th operation, plus the last ten, where the commit, select and confirm words are).
pub fn pairs(fx: &Fixture, scenario: Scenario, stride: u32) -> Vec<(Scenario, Vec<Cut>, Option<u64>)> {
    let n = fx.ops(scenario);
    let mut sig = MemoCheck::default();
    let mut jobs = Vec::new();
    for at in 0..n {
        if stride > 1 && !at.is_multiple_of(stride) && at + 10 < n {
            continue;
        }
        for m1 in CutMode::ALL {
            let first = Cut { at, mode: m1 };
            let after = match run(fx, scenario, &[first], &mut sig) {
                Ok(o) => *o.drive_ops.last().expect("one drive"),
                Err(_) => 1, // the single-cut sweep reports it; still pair it
            };
            for at2 in 0..after {
                for m2 in CutMode::ALL {
                    jobs.push((scenario, vec![first, Cut { at: at2, mode: m2 }], None));
                }
            }
        }
    }
    jobs
}

/// `count` random runs with 1 to 5 cuts each, from `seed` (reproducible): scenario, cut
/// positions (uniform over an uncut drive's operations) and modes drawn from xorshift64*.
pub fn random(fx: &Fixture, seed: u64, count: u64) -> Vec<(Scenario, Vec<Cut>, Option<u64>)> {
    let n = [fx.ops(Scenario::FullUpdate), fx.ops(Scenario::Revert)];
    (0..count)
        .map(|i| {
            let run_seed = seed ^ (i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut x = run_seed | 1;
            let mut next = || {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                x.wrapping_mul(0x2545_F491_4F6C_DD1D)
            };
            let sc = if next() & 1 == 0 { Scenario::FullUpdate } else { Scenario::Revert };
            let k = 1 + (next() % 5) as usize;
            let ops = n[(sc == Scenario::Revert) as usize] as u64;
            let cuts =
                (0..k).map(|_| Cut { at: (next() % ops) as u32, mode: CutMode::ALL[(next() % 3) as usize] }).collect();
            (sc, cuts, Some(run_seed))
        })
        .collect()
}
