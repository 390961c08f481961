//! Host simulation: a strict model of the H723 flash with power-cut injection and flash
//! physics that is not kind, a memoising signature check, the sweep engine ([`sweep`]) and the
//! deliberate bugs the sweeps must catch ([`mutant`]).
//!
//! # What the model assumes about the flash (the proof rests on this)
//! * **Geometry** (RM0468 §4.2, CMSIS `stm32h723xx.h`): 1 MiB, eight 128 KiB sectors, 32-byte
//!   flash words, each with its own ECC (SECDED); erased reads all ones with no ECC event.
//! * **A finished program or erase is stable**: the word reads back exactly, clean, every
//!   time (until [`StrictFlash::rot`] injects a retention failure).
//! * **A cut program** (power lost while a word programs) leaves that word *disturbed*: it
//!   was heading from its previous content (erased) to its intended content, and a read may
//!   return ([`ReadMode`]): a double ECC error (`DBECCERR`, a bus fault on silicon, an `Err`
//!   from the ECC-safe reader); the intended value with a corrected single error (`SNECCERR`);
//!   the intended value, clean ("stable as written"); all ones, clean ("stable as erased"); a
//!   mix of the two, clean; or a different one of these at every read ([`ReadMode::Vary`],
//!   seeded, so a replay string reproduces it). RM0468 does not say what a read of an
//!   interrupted word returns ("the contents of the flash memory are not guaranteed"); these
//!   modes cover every outcome a reader can observe.
//! * **A cut erase** disturbs every programmed word of the sector, heading from its old data to
//!   all ones, in the same read mode, except [`ReadMode::Mixed`], where each word stops in its
//!   own stable state (erased, as before, or in between; chosen per word from the seed): the
//!   cells of a sector do not all erase at the same pace. Words that were erased stay erased
//!   (assumed: an interrupted erase does not program cells).
//! * **Programming a disturbed word**: if the core's last read of the word showed anything but
//!   erased, that is misuse: recorded as a [`Violation`], and, as on silicon, the program
//!   happens and the word becomes a double error (RM0468: "inconsistent ECC code that will be
//!   systematically reported"). If the last
//!   read showed it erased, the core could not know (a firmware keeps no memory across power
//!   cycles, and the bootloader's reads are not the application's), and the model lets physics
//!   decide: the same 256 bits finish the interrupted program (assumed); different bits leave
//!   the word disturbed ([`ReadMode::Vary`] over the bitwise AND).
//! * Any program or erase of a finished, programmed word, misaligned access, or touch of the
//!   bootloader sector is a [`Violation`].
//!
//! Every word program and every sector erase is one *operation*, counted from power-on. A
//! [`Cut`] names an operation index and a [`CutMode`]: before it, after it, or in its middle
//! with a read mode. From then on every access fails with [`SimError::PowerLost`] until
//! [`StrictFlash::power_on`].
//!
//! Copy-on-write pages make cloning a whole flash cheap, so each run starts from a fresh copy.

pub mod sweep;

/// Deliberate bugs, for proving that the sweeps catch a broken core (mutation testing). Only
/// compiled with feature `sim`; the firmware never has them. Process-global: use them only
/// in a test binary of their own.
pub mod mutant {
    use core::sync::atomic::{AtomicU32, Ordering};

    macro_rules! mutants {
        ($($(#[doc = $d:literal])* $name:ident = $n:literal,)*) => {
            /// A deliberate bug.
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
            #[repr(u8)]
            pub enum Mutant {
                /// The real core.
                None = 0,
                $($(#[doc = $d])* $name = $n,)*
            }

            impl Mutant {
                /// Every bug.
                pub const BUGS: &'static [Mutant] = &[$(Mutant::$name,)*];

                /// Its name.
                pub fn name(self) -> &'static str {
                    match self {
                        Mutant::None => "None",
                        $(Mutant::$name => stringify!($name),)*
                    }
                }
            }
        };
    }

    mutants! {
        /// A torn selected word reads as unset (grants a second trial).
        SelectedTornCountsAsUnset = 1,
        /// A torn confirmed word reads as confirmed.
        ConfirmedTornCountsAsSet = 2,
        /// The boot path never writes the selected word.
        NoSelectWrite = 3,
        /// The journal scan stops at the first unreadable record and appends there.
        JournalAppendsOverTornRecord = 4,
        /// Anti-rollback switched off at boot: any counter boots.
        NoAntiRollbackAtBoot = 5,
        /// A download may start while the running image's confirmation is not proven: the
        /// fallback is erased.
        DownloadWhileUnconfirmed = 6,
        /// The updater's not-newer check is gone: an image that can never boot is committed.
        NoNotNewerCheck = 7,
        /// The journal's minimum is its last valid record, not its maximum.
        JournalLastNotMax = 8,
        /// A torn committed word counts as committed, proof or not.
        CommittedTornCountsAsSet = 9,
        /// A slot is erased trailer sector first (the old order).
        TrailerSectorErasedFirst = 10,
        /// The journal scan stops at the first erased-looking word.
        JournalScanStopsAtErased = 11,
        /// A confirmation counts as proven without its seal.
        ConfirmationNeedsNoProof = 12,
        /// Words are programmed without checking that they read erased (a guard: see
        /// [`Mutant::GUARDED`]).
        NoBlankCheck = 13,
        /// The journal counts unsealed raises as durable.
        JournalCountsUnsealed = 14,
        /// Raises are written without their seal.
        JournalNoSeal = 15,
        /// The journal appends among unreadable words instead of compacting.
        JournalIgnoresDamage = 16,
        /// The boot decision ignores the counters of confirmed images (journal only).
        NoCounterFloor = 17,
        /// The journal appends into a region that reads blank without erasing it first.
        JournalTrustsBlank = 18,
    }

    impl Mutant {
        /// Bugs that a second mechanism makes harmless on their own, with that mechanism's
        /// own mutant: each pair must be caught together.
        pub const GUARDED: &'static [(Mutant, Mutant)] = &[(Mutant::SelectedTornCountsAsUnset, Mutant::NoBlankCheck)];
    }

    static ACTIVE: AtomicU32 = AtomicU32::new(0);

    /// Switch one bug on (or [`Mutant::None`]: all off).
    pub fn set(m: Mutant) {
        set_all(&[m]);
    }

    /// Switch several bugs on at once.
    pub fn set_all(ms: &[Mutant]) {
        let bits = ms.iter().filter(|m| **m != Mutant::None).fold(0u32, |a, m| a | 1 << (*m as u8));
        ACTIVE.store(bits, Ordering::SeqCst);
    }

    /// Whether `m` is on.
    pub fn on(m: Mutant) -> bool {
        ACTIVE.load(Ordering::Relaxed) & (1 << (m as u8)) != 0
    }
}

use std::collections::HashMap;
use std::sync::Arc;
use std::vec::Vec;

use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use fut_image::SignatureCheck;

use crate::flash::{EccRead, ReadCheck};
use crate::layout::{H723, Layout, Region};

const PAGE: usize = 4096;
const WORD: usize = 32;
const WORDS_PER_PAGE: usize = PAGE / WORD;

/// The state of one flash word in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    /// Erased: reads all ones, may be programmed.
    Erased,
    /// Programmed once since the last erase, and the program finished.
    Programmed,
    /// A program or erase of it was cut, or it was misused: it reads per its [`ReadMode`].
    Disturbed,
    /// A finished word that lost its data later (retention): see [`Rot`].
    Rotted,
}

/// What a read of a disturbed word returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// A double ECC error, every time (`e`).
    Ecc,
    /// The intended value with a corrected single error, every time (`c`).
    Corrected,
    /// The intended value, clean: stable as written (`i`).
    Intended,
    /// The previous value, clean: stable as erased, for a program (`p`).
    Previous,
    /// Half intended, half previous, clean (`m`).
    Mixed,
    /// Any of the above, chosen afresh at every read (`v`; the bytes of a mix chosen at random).
    Vary,
}

impl ReadMode {
    /// All six.
    pub const ALL: [ReadMode; 6] =
        [ReadMode::Ecc, ReadMode::Corrected, ReadMode::Intended, ReadMode::Previous, ReadMode::Mixed, ReadMode::Vary];

    /// One-letter code.
    pub fn code(self) -> char {
        match self {
            ReadMode::Ecc => 'e',
            ReadMode::Corrected => 'c',
            ReadMode::Intended => 'i',
            ReadMode::Previous => 'p',
            ReadMode::Mixed => 'm',
            ReadMode::Vary => 'v',
        }
    }

    fn from_code(c: char) -> Option<ReadMode> {
        ReadMode::ALL.into_iter().find(|m| m.code() == c)
    }
}

/// How power is lost at a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CutMode {
    /// Before the operation: it never happens.
    Before,
    /// After the operation completed.
    After,
    /// In the middle: the word (or every programmed word of the sector) is left disturbed.
    Torn(ReadMode),
}

impl CutMode {
    /// Every mode: before, after, and torn in each read mode.
    pub const ALL: [CutMode; 8] = [
        CutMode::Before,
        CutMode::After,
        CutMode::Torn(ReadMode::Ecc),
        CutMode::Torn(ReadMode::Corrected),
        CutMode::Torn(ReadMode::Intended),
        CutMode::Torn(ReadMode::Previous),
        CutMode::Torn(ReadMode::Mixed),
        CutMode::Torn(ReadMode::Vary),
    ];

    /// Code for replay strings: `b`, `a`, `te`, `tc`, `ti`, `tp`, `tm`, `tv`.
    pub fn code(self) -> std::string::String {
        match self {
            CutMode::Before => "b".into(),
            CutMode::After => "a".into(),
            CutMode::Torn(m) => std::format!("t{}", m.code()),
        }
    }
}

/// A power cut at operation `at` (counted from the last power-on, from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cut {
    /// Operation index.
    pub at: u32,
    /// Mode.
    pub mode: CutMode,
}

impl core::fmt::Display for Cut {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}{}", self.at, self.mode.code())
    }
}

impl core::str::FromStr for Cut {
    type Err = std::string::String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            std::format!(
                "cut {s:?}: expected an operation index and b (before), a (after) or t (torn) with a read mode \
                 e, c, i, p, m or v (e.g. 41tv)"
            )
        };
        let digits = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let at = s[..digits].parse().map_err(|_| bad())?;
        let mode = match &s[digits..] {
            "b" => CutMode::Before,
            "a" => CutMode::After,
            "t" => CutMode::Torn(ReadMode::Ecc),
            m if m.len() == 2 && m.starts_with('t') => {
                CutMode::Torn(ReadMode::from_code(m.chars().nth(1).expect("two chars")).ok_or_else(bad)?)
            }
            _ => return Err(bad()),
        };
        Ok(Cut { at, mode })
    }
}

/// A retention failure injected into a finished word ([`StrictFlash::rot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rot {
    /// One bit flipped: ECC corrects it and flags `SNECCERR`.
    SingleBit,
    /// Two bits flipped: a double ECC error.
    DoubleBit,
    /// Several bits flipped in a way ECC cannot see: wrong data, clean.
    Silent,
}

/// Misuse of flash the model caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Program of a word that was programmed, or read as not erased since its erase.
    ProgramNotErased {
        /// Offset.
        offset: u32,
    },
    /// Program not whole aligned words, or erase not whole aligned sectors.
    Misaligned {
        /// Offset.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// Outside the flash.
    OutOfBounds {
        /// Offset.
        offset: u32,
    },
    /// Program or erase touching the bootloader.
    Bootloader {
        /// Offset.
        offset: u32,
    },
}

/// A simulated flash error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// Power was lost (at a cut, or since).
    PowerLost,
    /// Double ECC error reading a disturbed word.
    Ecc {
        /// Offset of the word.
        offset: u32,
    },
    /// A misuse (also recorded).
    Violation(Violation),
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SimError::Violation(Violation::Misaligned { .. }) => NorFlashErrorKind::NotAligned,
            SimError::Violation(Violation::OutOfBounds { .. }) => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// Counters kept by the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Word programs performed (whole or cut).
    pub programs: u64,
    /// Sector erases performed (whole or cut).
    pub erases: u64,
    /// Reads that touched a disturbed or rotted word.
    pub torn_reads: u64,
    /// Of which returned a double ECC error.
    pub ecc_errors: u64,
    /// Of which returned a corrected single error.
    pub corrected: u64,
}

#[derive(Clone)]
struct Page {
    data: [u8; PAGE],
    words: [Word; WORDS_PER_PAGE],
}

/// A disturbed or rotted word: where it was, where it was heading, how it reads.
#[derive(Debug, Clone, Copy)]
struct Disturbed {
    previous: [u8; WORD],
    intended: [u8; WORD],
    mode: ReadMode,
    /// The last read returned something other than clean all-ones: the core knows it is not
    /// erased.
    seen: bool,
}

/// The strict flash model (STM32H723 geometry).
#[derive(Clone)]
pub struct StrictFlash {
    layout: Layout,
    pages: Vec<Arc<Page>>,
    erased: Arc<Page>,
    disturbed: HashMap<u32, Disturbed>,
    ops: u32,
    cut: Option<Cut>,
    powered: bool,
    violations: Vec<Violation>,
    stats: Stats,
    seed: u64,
    reads: u64,
    erase_count: [u32; 8],
    trace: Option<Vec<std::string::String>>,
}

impl Default for StrictFlash {
    fn default() -> Self {
        Self::new()
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl StrictFlash {
    /// A blank H723 flash, powered.
    pub fn new() -> Self {
        let layout = H723;
        let erased = Arc::new(Page { data: [0xFF; PAGE], words: [Word::Erased; WORDS_PER_PAGE] });
        let n = layout.flash_size as usize / PAGE;
        StrictFlash {
            layout,
            pages: (0..n).map(|_| erased.clone()).collect(),
            erased,
            disturbed: HashMap::new(),
            ops: 0,
            cut: None,
            powered: true,
            violations: Vec::new(),
            stats: Stats::default(),
            seed: 0,
            reads: 0,
            erase_count: [0; 8],
            trace: None,
        }
    }

    /// Seed the reads of [`ReadMode::Vary`] words (the replay string carries it).
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    /// Record every operation from now on ([`StrictFlash::trace`]), for replays.
    pub fn enable_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// Add a line to the trace (when tracing).
    pub fn log(&mut self, line: impl FnOnce() -> std::string::String) {
        if let Some(t) = &mut self.trace {
            t.push(line());
        }
    }

    /// The operations recorded since [`StrictFlash::enable_trace`]: index, kind, offset, cut.
    pub fn trace(&self) -> &[std::string::String] {
        self.trace.as_deref().unwrap_or(&[])
    }

    fn note(&mut self, what: &str, offset: usize, cut: Option<CutMode>) {
        let i = self.ops - 1;
        if let Some(t) = &mut self.trace {
            let cut = cut.map(|c| std::format!("  <- cut {}", c.code())).unwrap_or_default();
            t.push(std::format!("op {i:3}: {what} {offset:#07x}{cut}"));
        }
    }

    /// Arm a cut (counted from the last power-on), or disarm with `None`.
    pub fn set_cut(&mut self, cut: Option<Cut>) {
        self.cut = cut;
    }

    /// Restore power: operation count back to 0, no cut armed.
    pub fn power_on(&mut self) {
        self.powered = true;
        self.ops = 0;
        self.cut = None;
        if let Some(t) = &mut self.trace {
            t.push("power on".into());
        }
    }

    /// Whether the board has power.
    pub fn powered(&self) -> bool {
        self.powered
    }

    /// Operations since power-on.
    pub fn ops(&self) -> u32 {
        self.ops
    }

    /// Misuse recorded so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Erases (finished or cut) of `sector` so far.
    pub fn erase_count(&self, sector: u32) -> u32 {
        self.erase_count[sector as usize]
    }

    /// State of the word at `offset`.
    pub fn word(&self, offset: u32) -> Word {
        let o = offset as usize;
        self.pages[o / PAGE].words[(o % PAGE) / WORD]
    }

    /// What the word at `offset` reads as for good, if it always reads the same data: a
    /// programmed word; a disturbed word that reads stably as intended or as before; a word
    /// whose single-bit error ECC corrects. `None` for words that fail, vary, or read as a mix.
    pub fn stable(&self, offset: u32) -> Option<[u8; WORD]> {
        match self.word(offset) {
            Word::Erased | Word::Programmed => Some(self.raw_word(offset)),
            Word::Disturbed | Word::Rotted => {
                let d = &self.disturbed[&offset];
                match d.mode {
                    ReadMode::Corrected | ReadMode::Intended => Some(d.intended),
                    ReadMode::Previous => Some(d.previous),
                    ReadMode::Ecc | ReadMode::Mixed | ReadMode::Vary => None,
                }
            }
        }
    }

    /// [`StrictFlash::stable`], without an ECC event at any read (no corrected error): what a
    /// metadata word must be to count.
    pub fn stable_clean(&self, offset: u32) -> Option<[u8; WORD]> {
        match self.word(offset) {
            Word::Disturbed | Word::Rotted if self.disturbed[&offset].mode == ReadMode::Corrected => None,
            _ => self.stable(offset),
        }
    }

    /// Whether a read of the word at `offset` can return exactly `pattern`, cleanly: it reads so
    /// for good, or it is disturbed and reads differently every time with `pattern` among the
    /// outcomes.
    pub fn can_read_as(&self, offset: u32, pattern: &[u8; WORD]) -> bool {
        self.stable_clean(offset) == Some(*pattern)
            || matches!(self.word(offset), Word::Disturbed)
                && self.disturbed[&offset].mode == ReadMode::Vary
                && (self.disturbed[&offset].intended == *pattern || self.disturbed[&offset].previous == *pattern)
    }

    /// Whether the word at `offset` reads as `data` for good ([`StrictFlash::stable`]).
    pub fn intact(&self, offset: u32) -> bool {
        self.stable(offset).is_some()
    }

    /// The data a finished word holds (behind ECC, as a debugger of the model sees it; for a
    /// disturbed or rotted word, the value it was heading to or held).
    pub fn raw(&self, offset: u32, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut o = offset as usize;
        let end = o + len;
        while o < end {
            let w = o & !31;
            let n = (w + WORD - o).min(end - o);
            out.extend_from_slice(&self.raw_word(w as u32)[o - w..o - w + n]);
            o += n;
        }
        out
    }

    /// [`StrictFlash::raw`] of the word at `offset` (aligned).
    pub fn raw_word(&self, offset: u32) -> [u8; WORD] {
        let o = offset as usize;
        match self.word(offset) {
            Word::Disturbed | Word::Rotted => self.disturbed[&offset].intended,
            _ => self.pages[o / PAGE].data[o % PAGE..o % PAGE + WORD].try_into().expect("one word"),
        }
    }

    /// Whether `offset..offset + len` reads as exactly `bytes` for good
    /// ([`StrictFlash::stable`]): no allocation, for the sweeps' checks.
    pub fn holds_intact(&self, offset: u32, bytes: &[u8]) -> bool {
        let end = offset + bytes.len() as u32;
        let plain = !self.disturbed.keys().any(|o| (offset..end).contains(o));
        if plain {
            // Nothing disturbed in the range: compare the pages' bytes directly.
            let mut o = offset as usize;
            let mut done = 0;
            while done < bytes.len() {
                let n = (PAGE - o % PAGE).min(bytes.len() - done);
                if self.pages[o / PAGE].data[o % PAGE..o % PAGE + n] != bytes[done..done + n] {
                    return false;
                }
                o += n;
                done += n;
            }
            return true;
        }
        bytes.chunks(WORD).enumerate().all(|(i, chunk)| {
            let at = offset + (i * WORD) as u32;
            self.stable(at).is_some_and(|w| w[..chunk.len()] == *chunk)
        })
    }

    /// The words of `r` that are not erased (pages untouched since their erase are skipped
    /// without a look).
    pub fn written_words(&self, r: Region) -> impl Iterator<Item = u32> + '_ {
        (r.offset as usize / PAGE..r.end() as usize / PAGE)
            .filter(|p| !Arc::ptr_eq(&self.pages[*p], &self.erased))
            .flat_map(move |p| {
                (0..WORDS_PER_PAGE)
                    .filter(move |w| self.pages[p].words[*w] != Word::Erased)
                    .map(move |w| (p * PAGE + w * WORD) as u32)
            })
    }

    /// Whether `r` holds exactly the same bytes and word states as in `other`. Pages still
    /// shared with `other` (never written since the copy) are identical without a look.
    pub fn same_region_as(&self, other: &StrictFlash, r: Region) -> bool {
        let pages = r.offset as usize / PAGE..r.end() as usize / PAGE;
        self.pages[pages.clone()]
            .iter()
            .zip(&other.pages[pages])
            .all(|(a, b)| Arc::ptr_eq(a, b) || (a.data[..] == b.data[..] && a.words[..] == b.words[..]))
    }

    /// Program `data` at `offset` outside the operation count and the cut (factory
    /// provisioning). All-0xFF words stay erased. Panics on misuse: it sets up tests.
    pub fn provision(&mut self, offset: u32, data: &[u8]) {
        assert!((offset as usize).is_multiple_of(WORD), "provision at {offset:#x}: not word aligned");
        for (i, chunk) in data.chunks(WORD).enumerate() {
            let mut w = [0xFF; WORD];
            w[..chunk.len()].copy_from_slice(chunk);
            if w.iter().all(|b| *b == 0xFF) {
                continue;
            }
            let at = offset as usize + i * WORD;
            assert_eq!(self.word(at as u32), Word::Erased, "provision at {at:#x}: word not erased");
            self.set_word(at, &w, Word::Programmed);
        }
    }

    /// Leave the word at `offset` disturbed, as a cut program of `intended` would (for tests).
    pub fn provision_disturbed(&mut self, offset: u32, intended: &[u8; WORD], mode: ReadMode) {
        assert_eq!(self.word(offset), Word::Erased, "provision at {offset:#x}: word not erased");
        self.disturb(offset as usize, [0xFF; WORD], *intended, mode, Word::Disturbed);
    }

    /// A retention failure in the finished word at `offset` (panics if it is not programmed).
    pub fn rot(&mut self, offset: u32, rot: Rot) {
        let at = offset as usize & !31;
        assert_eq!(self.word(at as u32), Word::Programmed, "rot at {at:#x}: not a programmed word");
        let data = self.raw_word(at as u32);
        let mut flipped = data;
        flipped[3] ^= 0x21;
        flipped[17] ^= 0x04;
        let mode = match rot {
            Rot::SingleBit => ReadMode::Corrected,
            Rot::DoubleBit => ReadMode::Ecc,
            Rot::Silent => ReadMode::Previous,
        };
        self.disturb(at, flipped, data, mode, Word::Rotted);
    }

    fn set_word(&mut self, at: usize, w: &[u8; WORD], state: Word) {
        let p = Arc::make_mut(&mut self.pages[at / PAGE]);
        p.data[at % PAGE..at % PAGE + WORD].copy_from_slice(w);
        p.words[(at % PAGE) / WORD] = state;
    }

    fn disturb(&mut self, at: usize, previous: [u8; WORD], intended: [u8; WORD], mode: ReadMode, state: Word) {
        self.set_word(at, &intended, state);
        self.disturbed.insert(at as u32, Disturbed { previous, intended, mode, seen: false });
    }

    /// Count an operation; returns the cut mode if this operation is the cut.
    fn op(&mut self) -> Option<CutMode> {
        let i = self.ops;
        self.ops += 1;
        match self.cut {
            Some(c) if c.at == i => {
                self.powered = false;
                Some(c.mode)
            }
            _ => None,
        }
    }

    fn violation(&mut self, v: Violation) -> SimError {
        self.violations.push(v);
        SimError::Violation(v)
    }

    fn program_word(&mut self, at: usize, w: &[u8], torn: Option<ReadMode>) -> Result<(), SimError> {
        self.stats.programs += 1;
        let w: [u8; WORD] = w.try_into().expect("one word");
        match self.word(at as u32) {
            Word::Erased => match torn {
                None => self.set_word(at, &w, Word::Programmed),
                Some(mode) => self.disturb(at, [0xFF; WORD], w, mode, Word::Disturbed),
            },
            Word::Disturbed if !self.disturbed[&(at as u32)].seen => {
                // The core saw only erased reads: physics decides (see the module docs).
                let d = self.disturbed[&(at as u32)];
                if d.intended == w && d.previous == [0xFF; WORD] && torn.is_none() {
                    self.disturbed.remove(&(at as u32));
                    self.set_word(at, &w, Word::Programmed);
                } else {
                    let and: Vec<u8> = d.intended.iter().zip(w).map(|(a, b)| a & b).collect();
                    let mode = torn.unwrap_or(ReadMode::Vary);
                    self.disturb(at, d.previous, and.try_into().expect("one word"), mode, Word::Disturbed);
                }
            }
            _ => {
                // Silicon does not refuse: it programs, and the word's ECC no longer matches.
                let prev = self.raw_word(at as u32);
                self.disturb(at, prev, w, ReadMode::Ecc, Word::Disturbed);
                self.violations.push(Violation::ProgramNotErased { offset: at as u32 });
            }
        }
        Ok(())
    }

    fn erase_sector(&mut self, from: usize, torn: Option<ReadMode>) {
        self.stats.erases += 1;
        self.erase_count[from / self.layout.sector_size as usize] += 1;
        let first = from / PAGE;
        let n = self.layout.sector_size as usize / PAGE;
        let Some(mode) = torn else {
            for i in first..first + n {
                self.pages[i] = self.erased.clone();
            }
            self.disturbed.retain(|o, _| (*o as usize) < from || (*o as usize) >= from + n * PAGE);
            return;
        };
        for i in first..first + n {
            if Arc::ptr_eq(&self.pages[i], &self.erased) {
                continue;
            }
            for w in 0..WORDS_PER_PAGE {
                let at = i * PAGE + w * WORD;
                if self.pages[i].words[w] == Word::Erased {
                    continue;
                }
                let old = self.raw_word(at as u32);
                // Mixed: each word stops in its own state, stable: erased, as before, or in
                // between (the cells of a sector do not all erase at the same pace).
                let m = match mode {
                    ReadMode::Mixed => [ReadMode::Intended, ReadMode::Previous, ReadMode::Mixed]
                        [(splitmix(self.seed ^ (at as u64).wrapping_mul(0x2545_F491)) % 3) as usize],
                    m => m,
                };
                self.disturb(at, old, [0xFF; WORD], m, Word::Disturbed);
            }
        }
    }

    fn touches_bootloader(&self, offset: u32, len: u32) -> bool {
        self.layout.bootloader.overlaps(&Region { offset, size: len })
    }

    /// What a read of a disturbed word returns now: the bytes and the ECC outcome.
    fn read_disturbed(&mut self, at: u32) -> Result<([u8; WORD], ReadCheck), ()> {
        self.stats.torn_reads += 1;
        let d = self.disturbed[&at];
        let mut x = splitmix(self.seed ^ (at as u64).rotate_left(29) ^ self.reads.wrapping_mul(0xA24B_AED4_963E_E407));
        self.reads += 1;
        let mode = match d.mode {
            ReadMode::Vary => {
                [ReadMode::Ecc, ReadMode::Corrected, ReadMode::Intended, ReadMode::Previous, ReadMode::Mixed]
                    [(x % 5) as usize]
            }
            m => m,
        };
        let out = match mode {
            ReadMode::Ecc => {
                self.stats.ecc_errors += 1;
                Err(())
            }
            ReadMode::Corrected => {
                self.stats.corrected += 1;
                Ok((d.intended, ReadCheck::Corrected))
            }
            ReadMode::Intended => Ok((d.intended, ReadCheck::Clean)),
            ReadMode::Previous => Ok((d.previous, ReadCheck::Clean)),
            ReadMode::Mixed | ReadMode::Vary => {
                let mut w = d.previous;
                for (i, b) in w.iter_mut().enumerate() {
                    let from_intended = if d.mode == ReadMode::Vary {
                        x = splitmix(x);
                        x & 1 == 0
                    } else {
                        i < WORD / 2
                    };
                    if from_intended {
                        *b = d.intended[i];
                    }
                }
                Ok((w, ReadCheck::Clean))
            }
        };
        let seen = !matches!(out, Ok((w, ReadCheck::Clean)) if w == [0xFF; WORD]);
        if let Some(d) = self.disturbed.get_mut(&at) {
            d.seen = seen;
        }
        out
    }
}

impl ErrorType for StrictFlash {
    type Error = SimError;
}

impl EccRead for StrictFlash {
    fn read_checked(&mut self, offset: u32, bytes: &mut [u8]) -> Result<ReadCheck, SimError> {
        if !self.powered {
            return Err(SimError::PowerLost);
        }
        let end = offset as usize + bytes.len();
        if end > self.layout.flash_size as usize {
            return Err(self.violation(Violation::OutOfBounds { offset }));
        }
        let mut check = ReadCheck::Clean;
        let mut o = offset as usize;
        let mut done = 0;
        while o < end {
            let n = (PAGE - o % PAGE).min(end - o);
            let (w0, w1) = ((o % PAGE) / WORD, (o % PAGE + n - 1) / WORD);
            let page = o / PAGE;
            let plain = self.pages[page].words[w0..=w1].iter().all(|w| matches!(w, Word::Erased | Word::Programmed));
            if plain {
                bytes[done..done + n].copy_from_slice(&self.pages[page].data[o % PAGE..o % PAGE + n]);
            } else {
                // Word by word.
                let mut p = o;
                while p < o + n {
                    let at = (p & !31) as u32;
                    let k = (WORD - p % WORD).min(o + n - p);
                    let dst = &mut bytes[done + (p - o)..done + (p - o) + k];
                    match self.word(at) {
                        Word::Erased | Word::Programmed => {
                            dst.copy_from_slice(&self.pages[page].data[p % PAGE..p % PAGE + k]);
                        }
                        Word::Disturbed | Word::Rotted => match self.read_disturbed(at) {
                            Ok((w, c)) => {
                                dst.copy_from_slice(&w[p % WORD..p % WORD + k]);
                                if c == ReadCheck::Corrected {
                                    check = ReadCheck::Corrected;
                                }
                            }
                            Err(()) => return Err(SimError::Ecc { offset: at }),
                        },
                    }
                    p += k;
                }
            }
            o += n;
            done += n;
        }
        Ok(check)
    }

    fn is_blank(&mut self, offset: u32, len: u32) -> Result<bool, SimError> {
        if self.powered && self.pristine(offset, len) {
            return Ok(true);
        }
        let mut buf = [0u8; PAGE];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(PAGE as u32) as usize;
            if self.read_checked(offset + at, &mut buf[..n])? != ReadCheck::Clean || buf[..n].iter().any(|b| *b != 0xFF)
            {
                return Ok(false);
            }
            at += n as u32;
        }
        Ok(true)
    }
}

impl StrictFlash {
    /// Whether every page of `offset..offset+len` is the shared erased page (nothing written
    /// since its erase): then it reads erased without a look.
    fn pristine(&self, offset: u32, len: u32) -> bool {
        let (a, b) = (offset as usize, offset as usize + len as usize);
        a.is_multiple_of(PAGE)
            && b.is_multiple_of(PAGE)
            && b <= self.layout.flash_size as usize
            && self.pages[a / PAGE..b / PAGE].iter().all(|p| Arc::ptr_eq(p, &self.erased))
    }
}

impl ReadNorFlash for StrictFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        self.read_checked(offset, bytes).map(|_| ())
    }

    fn capacity(&self) -> usize {
        self.layout.flash_size as usize
    }
}

impl NorFlash for StrictFlash {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = 128 * 1024;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerLost);
        }
        let s = self.layout.sector_size;
        if from > to || to > self.layout.flash_size {
            return Err(self.violation(Violation::OutOfBounds { offset: to }));
        }
        if !from.is_multiple_of(s) || !to.is_multiple_of(s) {
            return Err(self.violation(Violation::Misaligned { offset: from, len: to - from }));
        }
        if self.touches_bootloader(from, to - from) {
            return Err(self.violation(Violation::Bootloader { offset: from }));
        }
        let mut at = from;
        while at < to {
            let cut = self.op();
            self.note("erase sector", at as usize, cut);
            match cut {
                None => self.erase_sector(at as usize, None),
                Some(CutMode::Before) => return Err(SimError::PowerLost),
                Some(CutMode::After) => {
                    self.erase_sector(at as usize, None);
                    return Err(SimError::PowerLost);
                }
                Some(CutMode::Torn(m)) => {
                    self.erase_sector(at as usize, Some(m));
                    return Err(SimError::PowerLost);
                }
            }
            at += s;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerLost);
        }
        let len = bytes.len() as u32;
        if offset as usize + bytes.len() > self.layout.flash_size as usize {
            return Err(self.violation(Violation::OutOfBounds { offset }));
        }
        if !(offset as usize).is_multiple_of(WORD) || !bytes.len().is_multiple_of(WORD) {
            return Err(self.violation(Violation::Misaligned { offset, len }));
        }
        if self.touches_bootloader(offset, len) {
            return Err(self.violation(Violation::Bootloader { offset }));
        }
        for (i, w) in bytes.chunks(WORD).enumerate() {
            let at = offset as usize + i * WORD;
            let cut = self.op();
            self.note("program", at, cut);
            match cut {
                None => self.program_word(at, w, None)?,
                Some(CutMode::Before) => return Err(SimError::PowerLost),
                Some(CutMode::After) => {
                    self.program_word(at, w, None)?;
                    return Err(SimError::PowerLost);
                }
                Some(CutMode::Torn(m)) => {
                    self.program_word(at, w, Some(m))?;
                    return Err(SimError::PowerLost);
                }
            }
        }
        Ok(())
    }
}

/// Public key, digest, signature.
type SigKey = ([u8; 32], [u8; 32], [u8; 64]);

/// A [`SignatureCheck`] that remembers results: the answer for a given key, digest and
/// signature never changes, so the real Ed25519 check runs once per distinct triple. The
/// digest is always recomputed from flash by the caller; only the curve arithmetic is cached.
#[derive(Default)]
pub struct MemoCheck {
    seen: HashMap<SigKey, bool>,
    /// Real Ed25519 verifications performed.
    pub real: u64,
    /// Answers from memory.
    pub remembered: u64,
}

impl SignatureCheck for MemoCheck {
    fn ed25519(&mut self, public: &[u8; 32], digest: &[u8; 32], signature: &[u8; 64]) -> bool {
        let k = (*public, *digest, *signature);
        if let Some(v) = self.seen.get(&k) {
            self.remembered += 1;
            return *v;
        }
        self.real += 1;
        let v = fut_image::Ed25519Verify.ed25519(public, digest, signature);
        self.seen.insert(k, v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn read(f: &mut StrictFlash, at: u32) -> Result<([u8; 32], ReadCheck), SimError> {
        let mut b = [0u8; 32];
        f.read_checked(at, &mut b).map(|c| (b, c))
    }

    #[test]
    fn strict_flash_enforces_write_once_and_sector_erase() {
        let mut f = StrictFlash::new();
        f.write(0x2_0000, &[0x11; 32]).unwrap();
        assert_eq!(read(&mut f, 0x2_0000), Ok(([0x11; 32], ReadCheck::Clean)));
        assert_eq!(f.write(0x2_0000, &[0x11; 32]), Ok(()), "silicon does not refuse a second program");
        assert_eq!(f.violations(), &[Violation::ProgramNotErased { offset: 0x2_0000 }], "the model records it");
        assert_eq!(f.word(0x2_0000), Word::Disturbed, "double program leaves an ECC-inconsistent word");
        assert_eq!(read(&mut f, 0x2_0000), Err(SimError::Ecc { offset: 0x2_0000 }));
        assert!(matches!(f.write(0x2_0010, &[0; 32]), Err(SimError::Violation(Violation::Misaligned { .. }))));
        assert!(matches!(f.erase(0x2_0000, 0x3_0000), Err(SimError::Violation(Violation::Misaligned { .. }))));
        assert!(matches!(f.write(0x0, &[0; 32]), Err(SimError::Violation(Violation::Bootloader { .. }))));
        assert!(matches!(f.erase(0, 0x2_0000), Err(SimError::Violation(Violation::Bootloader { .. }))));
        f.erase(0x2_0000, 0x4_0000).unwrap();
        assert_eq!(read(&mut f, 0x2_0000), Ok(([0xFF; 32], ReadCheck::Clean)));
        assert_eq!(f.violations().len(), 5);
        assert_eq!(f.ops(), 3, "two programs (one a violation) and one sector erase counted");
        assert_eq!(f.erase_count(1), 1);
    }

    #[test]
    fn cut_programs_read_per_their_mode() {
        let data = [0x42u8; 96];
        for mode in CutMode::ALL {
            let mut f = StrictFlash::new();
            f.set_cut(Some(Cut { at: 1, mode }));
            assert_eq!(f.write(0x2_0000, &data), Err(SimError::PowerLost));
            assert!(!f.powered());
            let mut b = [0u8; 1];
            assert_eq!(f.read(0x2_0000, &mut b), Err(SimError::PowerLost), "no access without power");
            f.power_on();
            assert_eq!(f.word(0x2_0000), Word::Programmed);
            assert_eq!(f.word(0x2_0040), Word::Erased);
            let second = read(&mut f, 0x2_0020);
            match mode {
                CutMode::Before => assert_eq!(second, Ok(([0xFF; 32], ReadCheck::Clean))),
                CutMode::After => assert_eq!(second, Ok(([0x42; 32], ReadCheck::Clean))),
                CutMode::Torn(ReadMode::Ecc) => assert_eq!(second, Err(SimError::Ecc { offset: 0x2_0020 })),
                CutMode::Torn(ReadMode::Corrected) => assert_eq!(second, Ok(([0x42; 32], ReadCheck::Corrected))),
                CutMode::Torn(ReadMode::Intended) => assert_eq!(second, Ok(([0x42; 32], ReadCheck::Clean))),
                CutMode::Torn(ReadMode::Previous) => assert_eq!(second, Ok(([0xFF; 32], ReadCheck::Clean))),
                CutMode::Torn(ReadMode::Mixed) => {
                    let (w, c) = second.unwrap();
                    assert_eq!((&w[..16], &w[16..], c), (&[0x42; 16][..], &[0xFF; 16][..], ReadCheck::Clean));
                }
                CutMode::Torn(ReadMode::Vary) => {
                    // Over many reads, every outcome shows up.
                    let mut kinds = std::collections::HashSet::new();
                    for _ in 0..200 {
                        kinds.insert(match read(&mut f, 0x2_0020) {
                            Err(_) => "ecc",
                            Ok((_, ReadCheck::Corrected)) => "corrected",
                            Ok((w, _)) if w == [0x42; 32] => "intended",
                            Ok((w, _)) if w == [0xFF; 32] => "erased",
                            Ok(_) => "mix",
                        });
                    }
                    assert_eq!(kinds.len(), 5, "{kinds:?}");
                }
            }
            if matches!(mode, CutMode::Torn(_)) {
                assert_eq!(f.word(0x2_0020), Word::Disturbed);
            }
        }
    }

    #[test]
    fn vary_reads_are_reproducible_from_the_seed() {
        let run = |seed| {
            let mut f = StrictFlash::new();
            f.set_seed(seed);
            f.provision_disturbed(0x2_0000, &[0x11; 32], ReadMode::Vary);
            (0..50).map(|_| read(&mut f, 0x2_0000).map(|(w, c)| (w[0], w[31], c)).ok()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn reprogramming_a_disturbed_word_follows_what_the_core_could_know() {
        // Read only as erased: the same bits finish it.
        let mut f = StrictFlash::new();
        f.provision_disturbed(0x2_0000, &[0x11; 32], ReadMode::Previous);
        assert_eq!(read(&mut f, 0x2_0000), Ok(([0xFF; 32], ReadCheck::Clean)));
        f.write(0x2_0000, &[0x11; 32]).unwrap();
        assert_eq!(f.word(0x2_0000), Word::Programmed);
        assert!(f.violations().is_empty());
        // Different bits: still disturbed, not misuse.
        let mut f = StrictFlash::new();
        f.provision_disturbed(0x2_0000, &[0x11; 32], ReadMode::Previous);
        f.write(0x2_0000, &[0x22; 32]).unwrap();
        assert_eq!(f.word(0x2_0000), Word::Disturbed);
        assert!(f.violations().is_empty());
        // Seen as not erased: misuse.
        let mut f = StrictFlash::new();
        f.provision_disturbed(0x2_0000, &[0x11; 32], ReadMode::Intended);
        let _ = read(&mut f, 0x2_0000);
        f.write(0x2_0000, &[0x11; 32]).unwrap();
        assert_eq!(f.violations(), &[Violation::ProgramNotErased { offset: 0x2_0000 }]);
    }

    #[test]
    fn cut_erases_disturb_programmed_words_only() {
        let mut f = StrictFlash::new();
        f.provision(0x4_0000, &[0u8; 64]);
        f.set_cut(Some(Cut { at: 0, mode: CutMode::Torn(ReadMode::Ecc) }));
        assert_eq!(f.erase(0x4_0000, 0x6_0000), Err(SimError::PowerLost));
        f.power_on();
        assert!(matches!(read(&mut f, 0x4_0020), Err(SimError::Ecc { .. })));
        assert_eq!(read(&mut f, 0x4_0040), Ok(([0xFF; 32], ReadCheck::Clean)), "erased words stay erased");
        assert_eq!(f.stats().torn_reads, 1);
        // Stable as before: the old data reads back, but the word is not finished data.
        let mut g = StrictFlash::new();
        g.provision(0x4_0000, &[7u8; 32]);
        g.set_cut(Some(Cut { at: 0, mode: CutMode::Torn(ReadMode::Previous) }));
        let _ = g.erase(0x4_0000, 0x6_0000);
        g.power_on();
        assert_eq!(read(&mut g, 0x4_0000), Ok(([7; 32], ReadCheck::Clean)));
        assert_eq!(g.word(0x4_0000), Word::Disturbed);
        assert_eq!(g.stable(0x4_0000), Some([7; 32]), "stable as before");
        f.erase(0x4_0000, 0x6_0000).unwrap();
        assert_eq!(read(&mut f, 0x4_0020), Ok(([0xFF; 32], ReadCheck::Clean)));
        assert_eq!(f.word(0x4_0020), Word::Erased);
    }

    #[test]
    fn rot_reads_as_its_kind() {
        let mut f = StrictFlash::new();
        f.provision(0x2_0000, &[5u8; 96]);
        f.rot(0x2_0000, Rot::SingleBit);
        f.rot(0x2_0020, Rot::DoubleBit);
        f.rot(0x2_0040, Rot::Silent);
        assert_eq!(read(&mut f, 0x2_0000), Ok(([5; 32], ReadCheck::Corrected)));
        assert!(read(&mut f, 0x2_0020).is_err());
        let (w, c) = read(&mut f, 0x2_0040).unwrap();
        assert!(w != [5; 32] && c == ReadCheck::Clean);
        assert_eq!(f.stable(0x2_0000), Some([5; 32]), "ECC corrects it");
        assert_eq!(f.stable(0x2_0020), None);
        assert_ne!(f.stable(0x2_0040), Some([5; 32]));
    }

    #[test]
    fn same_region_sees_any_change() {
        let mut base = StrictFlash::new();
        base.provision(0, &[1u8; 64]);
        let copy = base.clone();
        assert!(copy.same_region_as(&base, H723.bootloader));
        let mut changed = base.clone();
        changed.provision(0x1_F000, &[0xFE]);
        assert!(!changed.same_region_as(&base, H723.bootloader));
        let mut torn = base.clone();
        Arc::make_mut(&mut torn.pages[0]).words[5] = Word::Disturbed;
        assert!(!torn.same_region_as(&base, H723.bootloader));
    }

    #[test]
    fn cut_strings_round_trip() {
        for mode in CutMode::ALL {
            let c = Cut { at: 41, mode };
            assert_eq!(c.to_string().parse::<Cut>().unwrap(), c);
        }
        assert_eq!("41t".parse::<Cut>().unwrap(), Cut { at: 41, mode: CutMode::Torn(ReadMode::Ecc) });
        assert_eq!("41tv".parse::<Cut>().unwrap().to_string(), "41tv");
        assert!("41".parse::<Cut>().is_err());
        assert!("xa".parse::<Cut>().is_err());
        assert!("41tx".parse::<Cut>().is_err());
    }
}
