//! The power-cut sweep engine.
//!
//! A *run* starts from a scenario's base state and *drives* the scenario to its goal on a
//! simulated board whose power is cut at the given points. Each drive is a loop of boots: the
//! bootloader core decides, the application that runs does what the scenario says (a healthy
//! one confirms itself; a broken one never does, and the watchdog resets it), and the host
//! updates when the scenario says so. A cut ends the drive; power returns and a new drive
//! starts, with operations counted from 0 again; the next cut applies to it. After the last cut
//! the drive runs to its goal uncut.
//!
//! # Scenarios ([`Scenario`])
//! Images: OLD (v1, security counter 1, slot A), NEW (v2, 2, slot B), NEWER (v3, 3, slot A),
//! DOWN-CNT (v4, counter 1, slot A: newer version, older counter), DOWN-VER (v1.5, counter 2,
//! slot A), NEW2 (v2.1, 2, slot B), FRESH (v9, counter 3, either slot).
//!
//! | scenario | base | drive | goal |
//! |---|---|---|---|
//! | `full-update` | OLD confirmed | download NEW, trial, confirm | NEW confirmed, counter 2 |
//! | `revert` | OLD confirmed | download a NEW that never confirms, trial, watchdog | OLD, NEW's trial failed |
//! | `second-update` | OLD and NEW confirmed, counter 2 | download NEWER, trial, confirm | NEWER confirmed, counter 3 |
//! | `download-during-trial` | OLD confirmed | NEW on trial tries to update slot A (refused), never confirms | OLD, nothing of it erased |
//! | `downgrade` | NEW confirmed | the host sends DOWN-CNT (refused: counter) and DOWN-VER (refused: not newer) | NEW, both refused |
//! | `journal-nearly-full` | `second-update`'s, journal with one free word | as `second-update` (the raise compacts) | NEWER, counter 3, journal compacted |
//! | `planted-rollback` | NEW confirmed; DOWN-CNT written committed into A with a probe | boot | NEW, never DOWN-CNT |
//! | `rot-single` / `rot-double` / `rot-silent` | NEW confirmed; one word of NEW rots | boot | NEW (ECC corrects) / recovery (OLD is below the counter) |
//! | `rot-both` | both images rot | boot | recovery, never a jump |
//! | `update-after-revert` | OLD confirmed, NEW a failed trial in B | download NEW2 over it, trial, confirm | NEW2 confirmed; NEW never boots again |
//! | `flaky-app` | OLD confirmed | as `full-update`, but NEW's application crashes after its first confirmation attempt | NEW if that confirmation finished, else OLD |
//! | `rot-failed-trial` | OLD confirmed, NEW a failed trial | NEW's selected word loses a bit | OLD; NEW never boots again |
//! | `journal-out-of-order` | NEW rotted; journal 1, 2, then 1 again (a probe re-provisioned it) | boot | recovery: OLD stays below the counter |
//!
//! The journal of every base state is one a life with cuts leaves behind: counter 1 whose seal
//! was cut (it reads erased), the word left out after it, counter 1 again; then (from NEW on)
//! counter 2 cut in its program (a double ECC error), the word left out, counter 2 again.
//!
//! # Checks at every boot of every run (from the model's ground truth, not the core's view)
//! * **brick**: recovery while a slot holds an intact, committed image that is not a failed
//!   trial and whose counter is at least the stored minimum;
//! * **intact**: the booted slot holds exactly the bytes of a known signed image;
//! * **the stored minimum never decreases**: the highest counter in finished journal records and
//!   in images whose confirmation finished never goes down;
//! * the minimum the core enforces is never below that, nor below any raise it acknowledged;
//! * **no downgrade**: no image below the highest counter ever stored boots;
//! * **no replacement by an older image**: once an image's confirmation finished, nothing older
//!   boots (a revert of an unconfirmed trial goes back to the confirmed image, never below it);
//! * **no second trial**: an image whose application ran and never tried to confirm never boots
//!   again (until its slot is erased);
//! * **nothing unbootable is committed**: an untried committed image is never older than a
//!   confirmed image in the other slot;
//! * a trial boot has its selected word written, finished;
//! * **the expected image**: each scenario names which images may boot at all.
//!
//! At the end: the goal holds, two more boots are stable, the bootloader sector is bit-for-bit
//! untouched, the model saw no flash misuse, and a fresh update afterwards succeeds.
//!
//! A failure carries its scenario, seed and cut list, and prints how to replay it.

use std::string::{String, ToString};
use std::time::{Duration, Instant};
use std::vec::Vec;
use std::{format, vec};

use fut_image::keys::SigningKey;
use fut_image::sign::{SignOptions, sign};
use fut_image::{ImageVersion, Reject, TrustedKey};

use super::{Cut, CutMode, MemoCheck, ReadMode, Rot, StrictFlash};
use crate::boot::decide;
use crate::journal;
use crate::layout::{H723, Layout, SlotId};
use crate::trailer::{Flag, PAIRS, provisioned};
use crate::update::{Download, UpdateError, confirm};

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Download NEW, first boot, confirm.
    FullUpdate,
    /// Download a NEW that never confirms, first boot, revert.
    Revert,
    /// From NEW confirmed: download NEWER, first boot, confirm.
    SecondUpdate,
    /// NEW on trial tries to download into OLD's slot: refused; NEW never confirms; revert.
    DownloadDuringTrial,
    /// From NEW confirmed: the host sends a lower counter and a lower version: both refused.
    Downgrade,
    /// `SecondUpdate` with a journal that has no room left: the raise compacts it.
    JournalNearlyFull,
    /// From NEW confirmed, with a higher version of a lower counter written committed into
    /// slot A behind the updater's back.
    PlantedRollback,
    /// From NEW confirmed, one word of NEW's image rots.
    RotConfirmed(Rot),
    /// Both images rot.
    RotBoth,
    /// After a failed trial of NEW (slot B), the host sends NEW2 into B: trial, confirm.
    UpdateAfterRevert,
    /// NEW's application crashes during its first confirmation and never confirms again.
    FlakyApp,
    /// After a failed trial of NEW, its selected word loses a bit (ECC corrects it).
    RotFailedTrial,
    /// NEW (counter 2) has rotted, and a probe appended counter 1 after counter 2 in the
    /// journal (a re-provisioning that wrote the default): OLD (counter 1) must stay refused.
    JournalOutOfOrder,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 15] = [
        Scenario::FullUpdate,
        Scenario::Revert,
        Scenario::SecondUpdate,
        Scenario::DownloadDuringTrial,
        Scenario::Downgrade,
        Scenario::JournalNearlyFull,
        Scenario::PlantedRollback,
        Scenario::RotConfirmed(Rot::SingleBit),
        Scenario::RotConfirmed(Rot::DoubleBit),
        Scenario::RotConfirmed(Rot::Silent),
        Scenario::RotBoth,
        Scenario::UpdateAfterRevert,
        Scenario::FlakyApp,
        Scenario::RotFailedTrial,
        Scenario::JournalOutOfOrder,
    ];

    /// Name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FullUpdate => "full-update",
            Scenario::Revert => "revert",
            Scenario::SecondUpdate => "second-update",
            Scenario::DownloadDuringTrial => "download-during-trial",
            Scenario::Downgrade => "downgrade",
            Scenario::JournalNearlyFull => "journal-nearly-full",
            Scenario::PlantedRollback => "planted-rollback",
            Scenario::RotConfirmed(Rot::SingleBit) => "rot-single",
            Scenario::RotConfirmed(Rot::DoubleBit) => "rot-double",
            Scenario::RotConfirmed(Rot::Silent) => "rot-silent",
            Scenario::RotBoth => "rot-both",
            Scenario::UpdateAfterRevert => "update-after-revert",
            Scenario::FlakyApp => "flaky-app",
            Scenario::RotFailedTrial => "rot-failed-trial",
            Scenario::JournalOutOfOrder => "journal-out-of-order",
        }
    }

    /// Parse a name.
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// What the settled board boots, and the stored minimum then (`None`: recovery). The
    /// flaky application's depends on whether its confirmation finished.
    fn goal(self) -> Option<(&'static str, u32)> {
        match self {
            Scenario::FullUpdate | Scenario::FlakyApp => Some(("NEW", 2)),
            Scenario::UpdateAfterRevert => Some(("NEW2", 2)),
            Scenario::Revert | Scenario::DownloadDuringTrial | Scenario::RotFailedTrial => Some(("OLD", 1)),
            Scenario::SecondUpdate | Scenario::JournalNearlyFull => Some(("NEWER", 3)),
            Scenario::Downgrade | Scenario::PlantedRollback | Scenario::RotConfirmed(Rot::SingleBit) => {
                Some(("NEW", 2))
            }
            Scenario::RotConfirmed(_) | Scenario::RotBoth | Scenario::JournalOutOfOrder => None,
        }
    }

    /// Images that may boot at all during the scenario.
    fn allowed(self) -> &'static [&'static str] {
        match self {
            Scenario::FullUpdate | Scenario::Revert | Scenario::DownloadDuringTrial | Scenario::FlakyApp => {
                &["OLD", "NEW"]
            }
            Scenario::UpdateAfterRevert => &["OLD", "NEW2"],
            Scenario::RotFailedTrial => &["OLD"],
            Scenario::JournalOutOfOrder => &[],
            Scenario::SecondUpdate | Scenario::JournalNearlyFull => &["NEW", "NEWER"],
            Scenario::Downgrade | Scenario::PlantedRollback | Scenario::RotConfirmed(_) => &["NEW"],
            Scenario::RotBoth => &[],
        }
    }
}

/// A signed image the runs use.
#[derive(Debug, Clone)]
pub struct Img {
    /// Name (OLD, NEW, NEWER, DOWN-CNT, DOWN-VER, FRESH).
    pub name: &'static str,
    /// The slot it is linked for.
    pub slot: SlotId,
    /// Its version.
    pub version: ImageVersion,
    /// Its security counter.
    pub counter: u32,
    /// The signed bytes.
    pub bytes: Vec<u8>,
}

/// Images, keys and the base states.
pub struct Fixture {
    /// The layout.
    pub layout: Layout,
    /// The trusted keys.
    pub keys: Vec<TrustedKey>,
    /// Every image: OLD, NEW, NEWER, DOWN-CNT, DOWN-VER, FRESH (A), FRESH (B).
    pub images: Vec<Img>,
    /// OLD confirmed in A; journal: counter 1.
    pub base: StrictFlash,
    /// And NEW confirmed in B; journal: counter 2.
    pub base2: StrictFlash,
    /// Payload length of the images.
    pub payload_len: usize,
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

fn install(f: &mut StrictFlash, layout: &Layout, img: &Img, confirmed: bool) {
    f.provision(layout.slot(img.slot).offset, &img.bytes);
    for flag in provisioned(confirmed) {
        f.provision(flag.offset(layout, img.slot), &flag.pattern());
    }
}

fn raise(f: &mut StrictFlash, layout: &Layout, word: u32, counter: u32) {
    f.provision(layout.journal.offset + word * 32, &journal::record(counter));
    f.provision(layout.journal.offset + (word + 1) * 32, &journal::seal());
}

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

    /// Sign the images with `key` (payloads of `payload_len` bytes) and build the base states.
    pub fn new(key: &SigningKey, payload_len: usize) -> Fixture {
        let layout = H723;
        let mk = |name, slot: SlotId, version: ImageVersion, counter, seed| {
            let opts = SignOptions {
                load_addr: layout.slot_address(slot),
                header_size: layout.header_size as u16,
                version,
                security_counter: counter,
            };
            let bytes = sign(&payload(payload_len, seed), key, &opts).expect("sign");
            Img { name, slot, version, counter, bytes }
        };
        let v = |major, minor| ImageVersion::new(major, minor, 0, 0);
        let images = vec![
            mk("OLD", SlotId::A, v(1, 0), 1, 0x0123),
            mk("NEW", SlotId::B, v(2, 0), 2, 0x4567),
            mk("NEWER", SlotId::A, v(3, 0), 3, 0x89ab),
            mk("DOWN-CNT", SlotId::A, v(4, 0), 1, 0xcdef),
            mk("DOWN-VER", SlotId::A, v(1, 5), 2, 0x3141),
            mk("NEW2", SlotId::B, v(2, 1), 2, 0x2718),
            mk("FRESH", SlotId::A, v(9, 0), 3, 0x5926),
            mk("FRESH", SlotId::B, v(9, 0), 3, 0x5926),
        ];
        let mut base = StrictFlash::new();
        // A bootloader stand-in in sector 0.
        base.provision(0, &payload(16 * 1024, 0xB007));
        install(&mut base, &layout, &images[0], true);
        // Counter 1 whose seal was cut (reads erased), the word left out, counter 1 again.
        base.provision(layout.journal.offset, &journal::record(1));
        base.provision_disturbed(layout.journal.offset + 32, &journal::seal(), ReadMode::Previous);
        raise(&mut base, &layout, 3, 1);
        let mut base2 = base.clone();
        install(&mut base2, &layout, &images[1], true);
        // Counter 2 cut in its program (reads as a double ECC error), the word left out, counter
        // 2 again.
        base2.provision_disturbed(layout.journal.offset + 5 * 32, &journal::record(2), ReadMode::Ecc);
        raise(&mut base2, &layout, 7, 2);

        Fixture { layout, keys: vec![key.trusted()], images, base, base2, payload_len }
    }

    /// OLD confirmed in A, NEW committed in B with its trial run and failed.
    fn reverted(&self) -> StrictFlash {
        let mut f = self.base.clone();
        install(&mut f, &self.layout, self.img("NEW", None), false);
        f.provision(Flag::Selected.offset(&self.layout, SlotId::B), &Flag::Selected.pattern());
        f
    }

    /// Slot contents whose application ran and never tried to confirm, in the base state.
    fn dead_at_start(&self, scenario: Scenario) -> Vec<SlotId> {
        match scenario {
            Scenario::UpdateAfterRevert | Scenario::RotFailedTrial => vec![SlotId::B],
            _ => vec![],
        }
    }

    /// The image called `name` (for FRESH: the one for `slot`).
    pub fn img(&self, name: &str, slot: Option<SlotId>) -> &Img {
        self.images
            .iter()
            .find(|i| i.name == name && slot.is_none_or(|s| s == i.slot))
            .unwrap_or_else(|| panic!("no image {name}"))
    }

    /// A scenario's starting flash.
    pub fn base_for(&self, scenario: Scenario) -> StrictFlash {
        let l = &self.layout;
        match scenario {
            Scenario::FullUpdate | Scenario::Revert | Scenario::DownloadDuringTrial | Scenario::FlakyApp => {
                self.base.clone()
            }
            Scenario::UpdateAfterRevert => self.reverted(),
            Scenario::RotFailedTrial => {
                let mut f = self.reverted();
                f.rot(Flag::Selected.offset(l, SlotId::B), Rot::SingleBit);
                f
            }
            Scenario::JournalOutOfOrder => {
                let mut f = self.base2.clone();
                f.rot(l.slot(SlotId::B).offset + l.header_size + 64, Rot::DoubleBit);
                raise(&mut f, l, 9, 1);
                f
            }
            Scenario::SecondUpdate | Scenario::Downgrade => self.base2.clone(),
            Scenario::JournalNearlyFull => {
                // A long life: counter 1, then 4,090 words left by cut appends (half-written
                // records and seals, foreign bits), then counter 2 in the last full pair.
                let mut f = self.base.clone();
                install(&mut f, l, self.img("NEW", None), true);
                let words = l.journal.size / 32;
                for w in 5..words - 3 {
                    let mut junk = if w % 2 == 0 { journal::record(1 + w % 2) } else { journal::seal() };
                    for b in &mut junk[(w % 7) as usize + 16..] {
                        *b = 0xFF;
                    }
                    f.provision(l.journal.offset + w * 32, &junk);
                }
                raise(&mut f, l, words - 3, 2);
                f
            }
            Scenario::PlantedRollback => {
                let mut f = self.base2.clone();
                // Slot A re-written with a probe: DOWN-CNT, committed, never tried.
                let a = l.slot(SlotId::A);
                for s in l.sectors(a) {
                    let from = s * l.sector_size;
                    let _ = embedded_storage::nor_flash::NorFlash::erase(&mut f, from, from + l.sector_size);
                }
                install(&mut f, l, self.img("DOWN-CNT", None), false);
                f.power_on();
                f
            }
            Scenario::RotConfirmed(rot) => {
                let mut f = self.base2.clone();
                f.rot(l.slot(SlotId::B).offset + l.header_size + 64, rot);
                f
            }
            Scenario::RotBoth => {
                let mut f = self.base2.clone();
                f.rot(l.slot(SlotId::A).offset + l.header_size + 64, Rot::DoubleBit);
                f.rot(l.slot(SlotId::B).offset + l.header_size + 96, Rot::Silent);
                f
            }
        }
    }

    /// Operations of an uncut drive of `scenario` from its base state.
    pub fn ops(&self, scenario: Scenario) -> u32 {
        let mut sig = MemoCheck::default();
        match run(self, scenario, 0, &[], &mut sig) {
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
    /// Reads of disturbed words the core handled.
    pub torn_reads: u64,
}

/// Which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// Recovery although a bootable image existed.
    Brick,
    /// The booted slot does not hold an intact known image.
    NotIntact,
    /// The stored minimum went down.
    CounterDecreased,
    /// The core enforced less than what is stored or what it acknowledged.
    CounterIgnored,
    /// An image below the stored minimum booted.
    Downgrade,
    /// An older image replaced a confirmed one.
    OlderThanConfirmed,
    /// An image booted again after its trial failed.
    SecondTrial,
    /// An image that can never boot was committed.
    UnbootableCommitted,
    /// A trial boot without its selected word.
    TrialNotRecorded,
    /// An image the scenario does not allow booted, or the goal was not reached.
    Unexpected,
    /// The core refused or accepted something contrary to the scenario.
    WrongVerdict,
    /// The bootloader sector changed (mechanics).
    BootloaderTouched,
    /// The flash model saw misuse (mechanics).
    FlashMisuse,
}

impl Check {
    /// Checks on outcomes (what boots, what counter is stored, what the core accepted), as
    /// opposed to mechanics (how flash was used).
    pub fn is_outcome(self) -> bool {
        !matches!(self, Check::BootloaderTouched | Check::FlashMisuse)
    }
}

/// A failed run: what, and how to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Scenario.
    pub scenario: Scenario,
    /// Cut list.
    pub cuts: Vec<Cut>,
    /// The seed of the flash's varying reads.
    pub seed: u64,
    /// The check that failed.
    pub check: Check,
    /// What went wrong.
    pub what: String,
}

impl Failure {
    /// The replay string (`scenario@seed:cut,cut`), for `BOOTPROOF_REPLAY`.
    pub fn replay(&self) -> String {
        replay_string(self.scenario, self.seed, &self.cuts)
    }
}

/// A replay string.
pub fn replay_string(scenario: Scenario, seed: u64, cuts: &[Cut]) -> String {
    let cuts: Vec<String> = cuts.iter().map(|c| c.to_string()).collect();
    format!("{}@{seed:x}:{}", scenario.name(), cuts.join(","))
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} [{:?}]: {}\n  replay: BOOTPROOF_REPLAY='{}' cargo test -p boot-core --test power_cut replay",
            self.replay(),
            self.check,
            self.what,
            self.replay()
        )
    }
}

enum Stop {
    PowerLost,
    Fail(Check, String),
}

fn fail<T>(check: Check, what: String) -> Result<T, Stop> {
    Err(Stop::Fail(check, what))
}

/// What booted.
#[derive(Clone)]
struct Booted {
    slot: SlotId,
    img: Img,
    trial: bool,
}

struct Board<'a> {
    fx: &'a Fixture,
    scenario: Scenario,
    flash: StrictFlash,
    sig: &'a mut MemoCheck,
    boots: u32,
    /// The highest stored minimum the ground truth ever showed.
    stored_highest: u32,
    /// The highest minimum a confirmation acknowledged.
    acked: u32,
    /// Erases of the journal sector when it was acknowledged.
    acked_erases: u32,
    /// Runs of each image's application.
    runs: std::collections::HashMap<&'static str, u32>,
    /// The highest version whose confirmation finished.
    best_confirmed: Option<ImageVersion>,
    /// Slot contents (slot, its sectors' erase counts) whose application ran and never tried to
    /// confirm.
    dead: Vec<(SlotId, [u32; 3])>,
    refused: [bool; 2],
}

impl Board<'_> {
    fn lost<E: core::fmt::Debug>(&self, what: &str, e: E) -> Stop {
        if self.flash.powered() {
            Stop::Fail(Check::WrongVerdict, format!("{what} failed with power on: {e:?}"))
        } else {
            Stop::PowerLost
        }
    }

    fn layout(&self) -> Layout {
        self.fx.layout
    }

    /// Finished and exactly `flag`'s pattern (ground truth).
    fn gt_flag(&self, slot: SlotId, flag: Flag) -> bool {
        let at = flag.offset(&self.fx.layout, slot);
        self.flash.stable_clean(at) == Some(flag.pattern())
    }

    fn gt_committed(&self, slot: SlotId) -> bool {
        self.gt_flag(slot, Flag::Committed)
            && (self.gt_flag(slot, Flag::CommitSeal)
                || self.gt_flag(slot, Flag::Selected)
                || (0..PAIRS as u8)
                    .any(|i| self.gt_flag(slot, Flag::Confirmed(i)) || self.gt_flag(slot, Flag::ConfirmSeal(i))))
    }

    fn gt_confirmed(&self, slot: SlotId) -> bool {
        (0..PAIRS as u8).any(|i| self.gt_flag(slot, Flag::Confirmed(i)))
    }

    fn gt_settled(&self, slot: SlotId) -> bool {
        self.gt_committed(slot)
            && (0..PAIRS as u8)
                .any(|i| self.gt_flag(slot, Flag::Confirmed(i)) && self.gt_flag(slot, Flag::ConfirmSeal(i)))
    }

    fn gens(&self, slot: SlotId) -> [u32; 3] {
        let s = self.fx.layout.sectors(self.fx.layout.slot(slot));
        [s.start, s.start + 1, s.start + 2].map(|x| self.flash.erase_count(x))
    }

    /// Whether `slot` holds an application that ran and never tried to confirm, and none of
    /// its confirmation words can read as set (a word cut in its program that reads
    /// differently at each read may: then booting it again is the core's right).
    fn is_dead(&self, slot: SlotId) -> bool {
        let g = self.gens(slot);
        self.dead.contains(&(slot, g))
            && !(0..PAIRS as u8).any(|i| {
                [Flag::Confirmed(i), Flag::ConfirmSeal(i)]
                    .iter()
                    .any(|f| self.flash.can_read_as(f.offset(&self.fx.layout, slot), &f.pattern()))
            })
    }

    /// The stored minimum by ground truth in the journal alone.
    fn gt_journal(&self) -> u32 {
        let l = self.fx.layout;
        let mut m = 0;
        for at in self.flash.written_words(l.journal) {
            if let Some(w) = self.flash.stable(at)
                && let journal::Entry::Raise { counter, .. } = journal::parse(&w, crate::flash::ReadCheck::Clean)
            {
                m = m.max(counter);
            }
        }
        m
    }

    /// Which known image `slot` holds, exactly (every word intact).
    fn holds(&self, slot: SlotId) -> Option<Img> {
        let off = self.fx.layout.slot(slot).offset;
        self.fx
            .images
            .iter()
            // The header word first: it tells the images apart.
            .find(|img| {
                img.slot == slot
                    && self.flash.stable(off).is_some_and(|w| w[..] == img.bytes[..32])
                    && self.flash.holds_intact(off, &img.bytes)
            })
            .cloned()
    }

    /// The stored minimum by ground truth: finished journal raises, and the counters of intact
    /// images whose confirmation finished.
    fn gt_stored(&self) -> u32 {
        let mut m = self.gt_journal();
        for s in SlotId::ALL {
            if self.gt_settled(s)
                && let Some(img) = self.holds(s)
            {
                m = m.max(img.counter);
            }
        }
        m
    }

    /// A slot the core must boot rather than stay in recovery.
    fn gt_bootable(&self, slot: SlotId, min: u32) -> bool {
        let selected = self.flash.stable_clean(Flag::Selected.offset(&self.fx.layout, slot));
        self.holds(slot).is_some_and(|img| img.counter >= min)
            && self.gt_committed(slot)
            && (selected == Some([0xFF; 32]) || self.gt_confirmed(slot))
            && !self.is_dead(slot)
    }

    /// One boot: decide, check, return what booted (`None`: recovery, allowed).
    fn boot(&mut self) -> Result<Option<Booted>, Stop> {
        let l = self.layout();
        let d = decide(&mut self.flash, &l, &self.fx.keys, self.sig);
        if !self.flash.powered() {
            return Err(Stop::PowerLost);
        }
        self.boots += 1;
        let n = self.boots;
        let stored = self.gt_stored();
        if stored < self.stored_highest {
            return fail(
                Check::CounterDecreased,
                format!("boot {n}: the stored minimum went from {} down to {stored}", self.stored_highest),
            );
        }
        self.stored_highest = stored;
        let sector = self.fx.layout.sectors(self.fx.layout.journal).start;
        if self.acked > 0 && self.flash.erase_count(sector) == self.acked_erases && self.gt_journal() < self.acked {
            return fail(
                Check::CounterDecreased,
                format!("boot {n}: the journal no longer holds the acknowledged counter {}", self.acked),
            );
        }
        if stored < self.acked {
            return fail(
                Check::CounterDecreased,
                format!(
                    "boot {n}: neither the journal nor a confirmed image holds the acknowledged counter {}",
                    self.acked
                ),
            );
        }
        if d.min_security_counter < stored || d.min_security_counter < self.acked {
            return fail(
                Check::CounterIgnored,
                format!(
                    "boot {n}: the core enforced counter {} although {stored} is stored and {} was acknowledged",
                    d.min_security_counter, self.acked
                ),
            );
        }
        // Nothing unbootable committed.
        for s in SlotId::ALL {
            let o = s.other();
            if self.gt_committed(s)
                && self.flash.stable_clean(Flag::Selected.offset(&l, s)) == Some([0xFF; 32])
                && let (Some(mine), Some(theirs)) = (self.holds(s), self.holds(o))
                && self.gt_settled(o)
                && mine.version.boot_cmp(&theirs.version).is_le()
            {
                return fail(
                    Check::UnbootableCommitted,
                    format!(
                        "boot {n}: {} (v{}) is committed untried in slot {s} although slot {o} holds {} (v{}) confirmed: it can never boot",
                        mine.name, mine.version, theirs.name, theirs.version
                    ),
                );
            }
        }
        let Some(c) = d.chosen else {
            if let Some(s) = SlotId::ALL.into_iter().find(|s| self.gt_bootable(*s, self.stored_highest)) {
                return fail(
                    Check::Brick,
                    format!("boot {n}: recovery although slot {s} holds a bootable image: {:?}", d.slots),
                );
            }
            self.flash.log(|| format!("boot {n}: recovery {:?}", d.slots));
            return Ok(None);
        };
        let Some(img) = self.holds(c.slot) else {
            return fail(Check::NotIntact, format!("boot {n}: slot {} holds no known intact image: {d:?}", c.slot));
        };
        if img.counter < self.stored_highest {
            return fail(
                Check::Downgrade,
                format!(
                    "boot {n}: {} (counter {}) booted although counter {} is stored",
                    img.name, img.counter, self.stored_highest
                ),
            );
        }
        if let Some(b) = self.best_confirmed
            && img.version.boot_cmp(&b).is_lt()
        {
            return fail(
                Check::OlderThanConfirmed,
                format!("boot {n}: {} v{} booted after v{b} was confirmed", img.name, img.version),
            );
        }
        if self.is_dead(c.slot) {
            return fail(
                Check::SecondTrial,
                format!("boot {n}: {} in slot {} booted again after a trial that never confirmed", img.name, c.slot),
            );
        }
        if c.trial && !self.gt_flag(c.slot, Flag::Selected) {
            return fail(
                Check::TrialNotRecorded,
                format!("boot {n}: trial boot of slot {} without its selected word", c.slot),
            );
        }
        if img.name != "FRESH" && !self.scenario.allowed().contains(&img.name) {
            return fail(Check::Unexpected, format!("boot {n}: {} booted during {}", img.name, self.scenario.name()));
        }
        self.flash.log(|| {
            format!(
                "boot {n}: {} v{} from slot {}{}",
                img.name,
                img.version,
                c.slot,
                if c.trial { " (trial)" } else { "" }
            )
        });
        Ok(Some(Booted { slot: c.slot, img, trial: c.trial }))
    }

    fn confirm(&mut self, slot: SlotId) -> Result<(), Stop> {
        let l = self.layout();
        let c = confirm(&mut self.flash, &l, slot, &self.fx.keys, self.sig).map_err(|e| self.lost("confirm", e))?;
        self.flash.log(|| format!("confirm slot {slot}: acknowledged counter {}", c.min_security_counter));
        if c.min_security_counter >= self.acked {
            self.acked = c.min_security_counter;
            self.acked_erases = self.flash.erase_count(l.sectors(l.journal).start);
        }
        if self.gt_settled(slot)
            && let Some(img) = self.holds(slot)
            && self.best_confirmed.is_none_or(|b| img.version.boot_cmp(&b).is_gt())
        {
            self.best_confirmed = Some(img.version);
        }
        Ok(())
    }

    /// A download: `Ok(Err(refusal))` when the core refused it with power on.
    fn download(&mut self, img: &Img, running: SlotId) -> Result<Result<(), UpdateError<super::SimError>>, Stop> {
        let l = self.layout();
        let r = (|| {
            let mut d = Download::begin(&mut self.flash, &l, img.slot, Some(running))?;
            // The host sends the image in 256-byte blocks.
            for chunk in img.bytes.chunks(256) {
                d.write(&mut self.flash, chunk)?;
            }
            d.finish(&mut self.flash, &self.fx.keys, self.sig).map(|_| ())
        })();
        if !self.flash.powered() {
            return Err(Stop::PowerLost);
        }
        Ok(r)
    }

    /// A download the scenario expects to succeed.
    fn update(&mut self, img: &Img, running: SlotId) -> Result<(), Stop> {
        match self.download(img, running)? {
            Ok(()) => Ok(()),
            Err(e) => fail(Check::WrongVerdict, format!("the update to {} was refused: {e:?}", img.name)),
        }
    }

    /// Whether the application that just booted is broken (it never confirms; the watchdog
    /// resets it). Counts the run.
    fn broken(&mut self, b: &Booted) -> bool {
        let name = b.img.name;
        let run = {
            let r = self.runs.entry(name).or_default();
            *r += 1;
            *r
        };
        match self.scenario {
            Scenario::Revert | Scenario::DownloadDuringTrial => name == "NEW",
            // It crashed during its first confirmation, and is broken since, unless a confirmed
            // word of it finished (then it had said it is good, and is).
            Scenario::FlakyApp => {
                name == "NEW"
                    && run > 1
                    && !(0..PAIRS as u8)
                        .any(|i| self.gt_flag(b.slot, Flag::Confirmed(i)) || self.gt_flag(b.slot, Flag::ConfirmSeal(i)))
            }
            _ => false,
        }
    }

    /// Drive the scenario to its goal (or until power is lost).
    fn drive(&mut self) -> Result<(), Stop> {
        let sc = self.scenario;
        let fx = self.fx;
        for _ in 0..32 {
            let Some(b) = self.boot()? else {
                return if sc.goal().is_none() {
                    Ok(())
                } else {
                    fail(Check::Unexpected, format!("recovery during {}", sc.name()))
                };
            };
            let name = b.img.name;
            let broken = self.broken(&b);
            if sc == Scenario::DownloadDuringTrial && name == "NEW" {
                // The trial image tries to update the other slot before confirming.
                match self.download(fx.img("NEWER", None), b.slot)? {
                    Err(UpdateError::RunningUnconfirmed(_)) => self.refused[0] = true,
                    other => {
                        return fail(
                            Check::WrongVerdict,
                            format!("a download during NEW's trial was not refused as such: {other:?}"),
                        );
                    }
                }
            }
            if broken {
                // It never confirms; the watchdog resets it.
                let g = self.gens(b.slot);
                self.dead.push((b.slot, g));
                continue;
            }
            self.confirm(b.slot)?;
            match (sc, name) {
                (Scenario::FullUpdate | Scenario::FlakyApp, "NEW")
                | (Scenario::SecondUpdate | Scenario::JournalNearlyFull, "NEWER")
                | (Scenario::UpdateAfterRevert, "NEW2") => {
                    return Ok(());
                }
                (Scenario::FlakyApp, "OLD") if self.runs.contains_key("NEW") => return Ok(()),
                (Scenario::FullUpdate | Scenario::FlakyApp, "OLD") => self.update(fx.img("NEW", None), b.slot)?,
                (Scenario::UpdateAfterRevert, "OLD") => self.update(fx.img("NEW2", None), b.slot)?,
                (Scenario::RotFailedTrial, "OLD") => return Ok(()),
                (Scenario::Revert | Scenario::DownloadDuringTrial, "OLD") => {
                    if self.holds(SlotId::B).is_some_and(|i| i.name == "NEW") && self.is_dead(SlotId::B) {
                        return Ok(());
                    }
                    self.update(fx.img("NEW", None), b.slot)?;
                }
                (Scenario::SecondUpdate | Scenario::JournalNearlyFull, "NEW") => {
                    self.update(fx.img("NEWER", None), b.slot)?
                }
                (Scenario::Downgrade, "NEW") => {
                    for (i, name, want) in [(0, "DOWN-CNT", "rollback"), (1, "DOWN-VER", "not newer")] {
                        if self.refused[i] {
                            continue;
                        }
                        let r = self.download(fx.img(name, None), b.slot)?;
                        let ok = match &r {
                            Err(UpdateError::Rejected(Reject::Rollback { .. })) => want == "rollback",
                            Err(UpdateError::NotNewer { .. }) => want == "not newer",
                            _ => false,
                        };
                        if !ok {
                            return fail(
                                Check::WrongVerdict,
                                format!("sending {name}: expected a {want} refusal, got {r:?}"),
                            );
                        }
                        self.refused[i] = true;
                    }
                    return Ok(());
                }
                (Scenario::PlantedRollback | Scenario::RotConfirmed(_), "NEW") => return Ok(()),
                (_, other) => {
                    return fail(Check::Unexpected, format!("{other} booted during the {} drive", sc.name()));
                }
            }
        }
        fail(Check::Unexpected, "no progress after 32 boots (boot loop)".into())
    }

    /// The end-of-run checks.
    fn settle(&mut self) -> Result<(), Stop> {
        let sc = self.scenario;
        let l = self.layout();
        let goal = match sc {
            // The flaky application: NEW if a confirmed word of it finished, else OLD.
            Scenario::FlakyApp
                if !(0..PAIRS as u8).any(|i| {
                    self.gt_flag(SlotId::B, Flag::Confirmed(i)) || self.gt_flag(SlotId::B, Flag::ConfirmSeal(i))
                }) =>
            {
                Some(("OLD", 1))
            }
            _ => sc.goal(),
        };
        let Some((want, min)) = goal else {
            for i in 0..2 {
                if let Some(b) = self.boot()? {
                    return fail(
                        Check::Unexpected,
                        format!("settled boot {i}: {} booted, expected recovery", b.img.name),
                    );
                }
            }
            return self.mechanics();
        };
        let mut running = None;
        let mut i = 0;
        let mut watchdog = 0;
        while i < 2 {
            let b = self
                .boot()?
                .map_or_else(|| fail(Check::Unexpected, format!("settled boot {i}: recovery, expected {want}")), Ok)?;
            // A broken application the core may still read as confirmed (its confirmation words
            // read differently at every read): the watchdog resets it.
            if b.img.name != want && self.broken(&b) && watchdog < 32 {
                let g = self.gens(b.slot);
                self.dead.push((b.slot, g));
                watchdog += 1;
                continue;
            }
            i += 1;
            if b.img.name != want || b.trial {
                return fail(
                    Check::Unexpected,
                    format!(
                        "settled boot {i}: {} (trial {}) in slot {}, expected {want} confirmed",
                        b.img.name, b.trial, b.slot
                    ),
                );
            }
            running = Some(b.slot);
        }
        let running = running.expect("booted");
        let sm = crate::boot::stored_minimum(&mut self.flash, &l, &self.fx.keys, self.sig);
        if sm.minimum != min {
            return fail(
                Check::CounterIgnored,
                format!("settled: the stored minimum is {}, expected {min} ({:?})", sm.minimum, sm.journal),
            );
        }
        let j = sm.journal;
        match sc {
            Scenario::DownloadDuringTrial if !self.refused[0] => {
                return fail(Check::WrongVerdict, "NEW's trial never saw its download refused".into());
            }
            Scenario::Downgrade if self.refused != [true, true] => {
                return fail(Check::WrongVerdict, format!("refusals seen: {:?}", self.refused));
            }
            Scenario::JournalNearlyFull if j.used > 64 => {
                return fail(Check::Unexpected, format!("the journal was not compacted: {} words used", j.used));
            }
            _ => {}
        }
        self.mechanics()?;
        // A fresh update afterwards.
        let fresh = self.fx.img("FRESH", Some(running.other())).clone();
        self.confirm(running)?;
        self.update(&fresh, running)?;
        let b = self.boot()?.map_or_else(|| fail(Check::Unexpected, "recovery after the fresh update".into()), Ok)?;
        if b.img.name != "FRESH" || !b.trial {
            return fail(
                Check::Unexpected,
                format!("after the fresh update: {} (trial {}), expected FRESH on trial", b.img.name, b.trial),
            );
        }
        self.confirm(b.slot)?;
        let b2 = self.boot()?.map_or_else(|| fail(Check::Unexpected, "recovery after FRESH".into()), Ok)?;
        if b2.img.name != "FRESH" || b2.trial {
            return fail(Check::Unexpected, format!("after confirming FRESH: {} (trial {})", b2.img.name, b2.trial));
        }
        let sm = crate::boot::stored_minimum(&mut self.flash, &l, &self.fx.keys, self.sig);
        if sm.minimum != min.max(3) {
            return fail(
                Check::CounterIgnored,
                format!("stored minimum {} after FRESH, expected {}", sm.minimum, min.max(3)),
            );
        }
        self.mechanics()
    }

    fn mechanics(&self) -> Result<(), Stop> {
        if !self.flash.same_region_as(&self.fx.base, self.fx.layout.bootloader) {
            return fail(Check::BootloaderTouched, "the bootloader sector changed".into());
        }
        if let Some(v) = self.flash.violations().first() {
            return fail(Check::FlashMisuse, format!("flash misuse: {v:?} ({} in all)", self.flash.violations().len()));
        }
        Ok(())
    }
}

/// One run: `cuts` applied to successive drives, then the uncut drive and the checks. `seed`
/// seeds the reads of words left in [`ReadMode::Vary`].
pub fn run(fx: &Fixture, scenario: Scenario, seed: u64, cuts: &[Cut], sig: &mut MemoCheck) -> Result<Outcome, Failure> {
    run_with(fx, scenario, seed, cuts, sig, false).0
}

/// [`run`], recording every flash operation and boot: the trace a replay prints.
pub fn replay(fx: &Fixture, scenario: Scenario, seed: u64, cuts: &[Cut]) -> (Result<Outcome, Failure>, Vec<String>) {
    run_with(fx, scenario, seed, cuts, &mut MemoCheck::default(), true)
}

fn run_with(
    fx: &Fixture,
    scenario: Scenario,
    seed: u64,
    cuts: &[Cut],
    sig: &mut MemoCheck,
    trace: bool,
) -> (Result<Outcome, Failure>, Vec<String>) {
    let mut flash = fx.base_for(scenario);
    flash.set_seed(seed);
    if trace {
        flash.enable_trace();
    }
    let mut b = Board {
        fx,
        scenario,
        flash,
        sig,
        boots: 0,
        stored_highest: 0,
        acked: 0,
        acked_erases: 0,
        runs: Default::default(),
        best_confirmed: None,
        dead: fx.dead_at_start(scenario).into_iter().map(|s| (s, [0; 3])).collect(),
        refused: [false; 2],
    };
    let r = drive_all(&mut b, scenario, seed, cuts);
    let t = b.flash.trace().to_vec();
    (r, t)
}

fn drive_all(b: &mut Board<'_>, scenario: Scenario, seed: u64, cuts: &[Cut]) -> Result<Outcome, Failure> {
    let failure = |check, what: String| Failure { scenario, cuts: cuts.to_vec(), seed, check, what };
    let mut out = Outcome::default();
    let mut pending = cuts.iter();
    loop {
        let cut = pending.next().copied();
        b.flash.power_on();
        b.flash.set_cut(cut);
        match b.drive() {
            Ok(()) => {
                out.drive_ops.push(b.flash.ops());
                break;
            }
            Err(Stop::PowerLost) => {
                out.drive_ops.push(b.flash.ops());
                out.effective_cuts += 1;
            }
            Err(Stop::Fail(c, what)) => return Err(failure(c, format!("drive {}: {what}", out.drive_ops.len() + 1))),
        }
    }
    b.flash.power_on();
    match b.settle() {
        Ok(()) => {}
        Err(Stop::Fail(c, what)) => return Err(failure(c, format!("settle: {what}"))),
        Err(Stop::PowerLost) => return Err(failure(Check::Unexpected, "power lost in an uncut phase".into())),
    }
    out.boots = b.boots;
    out.torn_reads = b.flash.stats().torn_reads;
    Ok(out)
}

/// Parse a replay string `scenario[@seed]:cut,cut,...` (seed in hex).
pub fn parse_replay(s: &str) -> Result<(Scenario, u64, Vec<Cut>), String> {
    let (head, cuts) =
        s.split_once(':').ok_or_else(|| format!("{s:?}: expected scenario@seed:cut,cut (e.g. revert@0:41tv,3a)"))?;
    let (sc, seed) = match head.split_once('@') {
        Some((sc, seed)) => {
            (sc, u64::from_str_radix(seed, 16).map_err(|_| format!("seed {seed:?} in {s:?} is not hexadecimal"))?)
        }
        None => (head, 0),
    };
    let scenario = Scenario::parse(sc).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        format!("unknown scenario {sc:?}: one of {}", names.join(", "))
    })?;
    let cuts = cuts.split(',').filter(|c| !c.is_empty()).map(str::parse).collect::<Result<Vec<Cut>, _>>()?;
    Ok((scenario, seed, cuts))
}

/// A job: scenario, seed, cuts.
pub type Job = (Scenario, u64, Vec<Cut>);

/// A sweep's tally.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Sweep name.
    pub name: String,
    /// Runs (verified interruption points).
    pub runs: u64,
    /// Cuts that landed.
    pub cuts: u64,
    /// Runs in which a boot read a disturbed word (handled).
    pub runs_with_torn_reads: u64,
    /// Runs per number of effective cuts (index = cuts).
    pub by_cut_count: [u64; 6],
    /// Failures (the first 20).
    pub failures: Vec<Failure>,
    /// Total failures.
    pub failed: u64,
    /// Failures per check.
    pub by_check: std::collections::BTreeMap<Check, u64>,
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
                *self.by_check.entry(f.check).or_default() += 1;
                // Keep the first failure of each check, then the first 20.
                if self.failures.len() < 20 || !self.failures.iter().any(|x| x.check == f.check) {
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
        for (k, v) in o.by_check {
            *self.by_check.entry(k).or_default() += v;
        }
        for f in o.failures {
            if self.failures.len() < 20 || !self.failures.iter().any(|x| x.check == f.check) {
                self.failures.push(f);
            }
        }
    }

    /// Verified interruption points per second.
    pub fn points_per_second(&self) -> f64 {
        self.runs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Whether some failure came from a check on outcomes.
    pub fn caught_by_outcome(&self) -> bool {
        self.by_check.keys().any(|c| c.is_outcome())
    }
}

impl core::fmt::Display for Report {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}: {} runs, {} cuts landed, {} runs read a disturbed word (handled), {} failures, {:.2} s, {:.0} points/s",
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

/// Run `jobs` on all cores.
pub fn execute(fx: &Fixture, name: &str, jobs: &[Job]) -> Report {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    execute_on(fx, name, jobs, threads)
}

/// Run `jobs` on `threads` threads.
pub fn execute_on(fx: &Fixture, name: &str, jobs: &[Job], threads: usize) -> Report {
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
                    for (sc, seed, cuts) in part {
                        r.add(run(fx, *sc, *seed, cuts, &mut sig));
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

/// Run `jobs` in order on all cores until one fails an outcome check (mutation testing): the
/// report counts the runs done and the failures seen until then.
pub fn execute_until_caught(fx: &Fixture, name: &str, jobs: &[Job]) -> Report {
    use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let caught = AtomicBool::new(false);
    let mut total = Report { name: name.into(), ..Report::default() };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut sig = MemoCheck::default();
                    let mut r = Report::default();
                    while !caught.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((sc, seed, cuts)) = jobs.get(i) else { break };
                        let out = run(fx, *sc, *seed, cuts, &mut sig);
                        if out.as_ref().is_err_and(|f| f.check.is_outcome()) {
                            caught.store(true, Ordering::Relaxed);
                        }
                        r.add(out);
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

/// The seed of a deterministic job: derived from its scenario and cuts, so singles and pairs
/// with varying reads are reproducible from the replay string too.
fn job_seed(scenario: Scenario, cuts: &[Cut]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in replay_string(scenario, 0, cuts).bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01B3);
    }
    h & 0xFFFF_FFFF
}

/// Every single cut point of `scenario`, in every mode.
pub fn singles(fx: &Fixture, scenario: Scenario) -> Vec<Job> {
    let n = fx.ops(scenario);
    (0..n)
        .flat_map(|at| {
            CutMode::ALL.map(|mode| {
                let cuts = vec![Cut { at, mode }];
                (scenario, job_seed(scenario, &cuts), cuts)
            })
        })
        .collect()
}

/// Pairs of cut points of `scenario`: a first cut, then every cut point of the drive that
/// follows it. `stride` > 1 samples the first cut (every `stride`-th operation, plus the last
/// twelve, where the trailer words and the journal are); `modes` are the cut modes tried for
/// each of the two cuts.
pub fn pairs(fx: &Fixture, scenario: Scenario, stride: u32, modes: &[CutMode]) -> Vec<Job> {
    pairs_sampled(fx, scenario, stride, 1, modes)
}

/// [`pairs`], with the second cut sampled too (every `stride2`-th operation of its drive, plus
/// its last twelve): for large images, whose payload words all behave alike.
pub fn pairs_sampled(fx: &Fixture, scenario: Scenario, stride: u32, stride2: u32, modes: &[CutMode]) -> Vec<Job> {
    let n = fx.ops(scenario);
    let mut sig = MemoCheck::default();
    let mut jobs = Vec::new();
    let keep = |at: u32, stride: u32, n: u32| stride <= 1 || at.is_multiple_of(stride) || at + 12 >= n;
    for at in (0..n).filter(|at| keep(*at, stride, n)) {
        for &m1 in modes {
            let first = Cut { at, mode: m1 };
            let seed = job_seed(scenario, &[first]);
            let after = match run(fx, scenario, seed, &[first], &mut sig) {
                Ok(o) => *o.drive_ops.last().expect("one drive"),
                Err(_) => 1, // the single-cut sweep reports it; still pair it
            };
            // The same seed as the measured single cut: the first drive reads the same way.
            for at2 in (0..after).filter(|a| keep(*a, stride2, after)) {
                for &m2 in modes {
                    jobs.push((scenario, seed, vec![first, Cut { at: at2, mode: m2 }]));
                }
            }
        }
    }
    jobs
}

/// Scenarios with flash operations to cut.
pub fn cuttable(fx: &Fixture) -> Vec<Scenario> {
    Scenario::ALL.into_iter().filter(|s| fx.ops(*s) > 0).collect()
}

/// `count` random runs with 1 to 5 cuts each, from `seed` (reproducible): scenario (among
/// `scenarios`), cut positions (uniform over an uncut drive's operations) and modes drawn from
/// xorshift64*.
pub fn random(fx: &Fixture, scenarios: &[Scenario], seed: u64, count: u64) -> Vec<Job> {
    let ops: Vec<u64> = scenarios.iter().map(|s| fx.ops(*s).max(1) as u64).collect();
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
            let k = (next() % scenarios.len() as u64) as usize;
            let n = 1 + (next() % 5) as usize;
            let cuts = (0..n)
                .map(|_| Cut {
                    at: (next() % ops[k]) as u32,
                    mode: CutMode::ALL[(next() % CutMode::ALL.len() as u64) as usize],
                })
                .collect();
            (scenarios[k], run_seed & 0xFFFF_FFFF, cuts)
        })
        .collect()
}

/// Every single cut of `scenario` torn in the seeded read modes ([`ReadMode::Vary`], and
/// [`ReadMode::Mixed`], whose cut erases leave each word its own way), with `seeds` different
/// seeds: the same cuts read differently.
pub fn seeded_singles(fx: &Fixture, scenario: Scenario, seeds: u64) -> Vec<Job> {
    let n = fx.ops(scenario);
    let mut jobs = Vec::new();
    for at in 0..n {
        for mode in [ReadMode::Vary, ReadMode::Mixed] {
            for k in 0..seeds {
                let cuts = vec![Cut { at, mode: CutMode::Torn(mode) }];
                let seed = job_seed(scenario, &cuts) ^ (k + 1).wrapping_mul(0x9E37_79B9);
                jobs.push((scenario, seed & 0xFFFF_FFFF, cuts));
            }
        }
    }
    jobs
}

/// Cut modes for always-on pairs: before, after, and the two harshest torn reads.
pub const PAIR_MODES_QUICK: [CutMode; 4] =
    [CutMode::Before, CutMode::After, CutMode::Torn(ReadMode::Ecc), CutMode::Torn(ReadMode::Vary)];
