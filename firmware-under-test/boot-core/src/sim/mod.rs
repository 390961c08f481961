//! Host simulation: a strict model of the H723 flash with power-cut injection, a memoising
//! signature check, and the sweep engine ([`sweep`]).
//!
//! [`StrictFlash`] implements the embedded-storage `NorFlash` traits exactly as the firmware
//! sees flash, and is stricter than silicon about misuse:
//! * programs are whole, aligned 32-byte words, each to an erased word only; anything else is
//!   recorded as a [`Violation`] (and leaves an ECC-inconsistent word, as on silicon);
//! * erases are whole, aligned 128 KiB sectors;
//! * any program or erase touching the bootloader sector is a violation;
//! * every word program and every sector erase is one *operation*, counted from power-on.
//!
//! A [`Cut`] names an operation index and a [`CutMode`]: power is lost before the operation,
//! after it, or in its middle (a torn word, or a torn sector whose every word reads as an ECC
//! error). From then on every access fails with [`SimError::PowerLost`] until
//! [`StrictFlash::power_on`]. Reads of torn words fail with [`SimError::Ecc`]: the model of an
//! ECC-safe reader seeing a double ECC error.
//!
//! Copy-on-write pages make cloning a whole flash cheap, so each run starts from a fresh copy.

pub mod sweep;

/// Deliberate bugs, for proving that the sweeps catch a broken core (mutation testing). Only
/// compiled with feature `sim`; the firmware never has them. Process-global: use them only
/// in a test binary of their own.
pub mod mutant {
    use core::sync::atomic::{AtomicU8, Ordering};

    /// A deliberate bug.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Mutant {
        /// The real core.
        None = 0,
        /// A torn selected word reads as unset (grants a second trial).
        SelectedTornCountsAsUnset = 1,
        /// A torn confirmed word reads as confirmed.
        ConfirmedTornCountsAsSet = 2,
        /// The boot path never writes the selected word.
        NoSelectWrite = 3,
        /// The journal scan stops at an unreadable record and appends there.
        JournalAppendsOverTornRecord = 4,
    }

    impl Mutant {
        /// Every bug.
        pub const BUGS: [Mutant; 4] = [
            Mutant::SelectedTornCountsAsUnset,
            Mutant::ConfirmedTornCountsAsSet,
            Mutant::NoSelectWrite,
            Mutant::JournalAppendsOverTornRecord,
        ];
    }

    static ACTIVE: AtomicU8 = AtomicU8::new(0);

    /// Switch a bug on (or [`Mutant::None`]).
    pub fn set(m: Mutant) {
        ACTIVE.store(m as u8, Ordering::SeqCst);
    }

    /// Whether `m` is on.
    pub fn on(m: Mutant) -> bool {
        ACTIVE.load(Ordering::Relaxed) == m as u8
    }
}

use std::collections::HashMap;
use std::sync::Arc;
use std::vec::Vec;

use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use fut_image::SignatureCheck;

use crate::layout::{H723, Layout, Region};

const PAGE: usize = 4096;
const WORD: usize = 32;
const WORDS_PER_PAGE: usize = PAGE / WORD;

/// The state of one flash word in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    /// Erased: reads 0xFF, may be programmed.
    Erased,
    /// Programmed once since the last erase.
    Programmed,
    /// ECC-inconsistent (torn program, torn erase, or programmed twice): reads fail.
    Torn,
}

#[derive(Clone)]
struct Page {
    data: [u8; PAGE],
    words: [Word; WORDS_PER_PAGE],
}

/// How power is lost at a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CutMode {
    /// Before the operation: it never happens.
    Before,
    /// After the operation completed.
    After,
    /// In the middle: a torn word, or a torn sector.
    Torn,
}

impl CutMode {
    /// All three.
    pub const ALL: [CutMode; 3] = [CutMode::Before, CutMode::After, CutMode::Torn];

    /// One-letter code for replay strings: `b`, `a`, `t`.
    pub fn code(self) -> char {
        match self {
            CutMode::Before => 'b',
            CutMode::After => 'a',
            CutMode::Torn => 't',
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
        let mode = match s.chars().last() {
            Some('b') => CutMode::Before,
            Some('a') => CutMode::After,
            Some('t') => CutMode::Torn,
            _ => return Err(std::format!("cut {s:?} must end in b (before), a (after) or t (torn)")),
        };
        let at = s[..s.len() - 1].parse().map_err(|_| std::format!("cut {s:?} must start with an operation index"))?;
        Ok(Cut { at, mode })
    }
}

/// Misuse of flash the model caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Program of a word that was not erased.
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
    /// Double ECC error reading a torn word.
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
    /// Word programs performed (whole or torn).
    pub programs: u64,
    /// Sector erases performed (whole or torn).
    pub erases: u64,
    /// Reads that hit a torn word (and were reported as errors).
    pub torn_reads: u64,
}

/// The strict flash model (STM32H723 geometry).
#[derive(Clone)]
pub struct StrictFlash {
    layout: Layout,
    pages: Vec<Arc<Page>>,
    erased: Arc<Page>,
    ops: u32,
    cut: Option<Cut>,
    powered: bool,
    violations: Vec<Violation>,
    stats: Stats,
}

impl Default for StrictFlash {
    fn default() -> Self {
        Self::new()
    }
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
            ops: 0,
            cut: None,
            powered: true,
            violations: Vec::new(),
            stats: Stats::default(),
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

    /// State of the word at `offset`.
    pub fn word(&self, offset: u32) -> Word {
        let o = offset as usize;
        self.pages[o / PAGE].words[(o % PAGE) / WORD]
    }

    /// Raw bytes (behind ECC, as a debugger sees them).
    pub fn raw(&self, offset: u32, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut o = offset as usize;
        let end = o + len;
        while o < end {
            let p = &self.pages[o / PAGE];
            let n = (PAGE - o % PAGE).min(end - o);
            out.extend_from_slice(&p.data[o % PAGE..o % PAGE + n]);
            o += n;
        }
        out
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
            let p = Arc::make_mut(&mut self.pages[at / PAGE]);
            p.data[at % PAGE..at % PAGE + WORD].copy_from_slice(&w);
            p.words[(at % PAGE) / WORD] = Word::Programmed;
        }
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

    fn program_word(&mut self, at: usize, w: &[u8], torn: bool) -> Result<(), SimError> {
        self.stats.programs += 1;
        let was = self.word(at as u32);
        let p = Arc::make_mut(&mut self.pages[at / PAGE]);
        let d = &mut p.data[at % PAGE..at % PAGE + WORD];
        let n = if torn { WORD / 2 } else { WORD };
        // NOR programming clears bits only.
        for (x, y) in d[..n].iter_mut().zip(w) {
            *x &= *y;
        }
        let slot = &mut p.words[(at % PAGE) / WORD];
        if was != Word::Erased {
            *slot = Word::Torn;
            return Err(self.violation(Violation::ProgramNotErased { offset: at as u32 }));
        }
        *slot = if torn { Word::Torn } else { Word::Programmed };
        Ok(())
    }

    fn erase_sector(&mut self, from: usize, torn: bool) {
        self.stats.erases += 1;
        let first = from / PAGE;
        let n = self.layout.sector_size as usize / PAGE;
        for i in first..first + n {
            if torn {
                let p = Arc::make_mut(&mut self.pages[i]);
                p.words = [Word::Torn; WORDS_PER_PAGE];
                if i < first + n / 2 {
                    p.data = [0xFF; PAGE];
                }
            } else {
                self.pages[i] = self.erased.clone();
            }
        }
    }

    fn touches_bootloader(&self, offset: u32, len: u32) -> bool {
        self.layout.bootloader.overlaps(&Region { offset, size: len })
    }
}

impl ErrorType for StrictFlash {
    type Error = SimError;
}

impl ReadNorFlash for StrictFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerLost);
        }
        let end = offset as usize + bytes.len();
        if end > self.layout.flash_size as usize {
            return Err(self.violation(Violation::OutOfBounds { offset }));
        }
        let mut o = offset as usize;
        let mut done = 0;
        while o < end {
            let p = &self.pages[o / PAGE];
            let n = (PAGE - o % PAGE).min(end - o);
            let (w0, w1) = ((o % PAGE) / WORD, (o % PAGE + n - 1) / WORD);
            if let Some(w) = (w0..=w1).find(|w| p.words[*w] == Word::Torn) {
                self.stats.torn_reads += 1;
                return Err(SimError::Ecc { offset: ((o / PAGE) * PAGE + w * WORD) as u32 });
            }
            bytes[done..done + n].copy_from_slice(&p.data[o % PAGE..o % PAGE + n]);
            o += n;
            done += n;
        }
        Ok(())
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
            match self.op() {
                None => self.erase_sector(at as usize, false),
                Some(CutMode::Before) => return Err(SimError::PowerLost),
                Some(CutMode::After) => {
                    self.erase_sector(at as usize, false);
                    return Err(SimError::PowerLost);
                }
                Some(CutMode::Torn) => {
                    self.erase_sector(at as usize, true);
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
            match self.op() {
                None => self.program_word(at, w, false)?,
                Some(CutMode::Before) => return Err(SimError::PowerLost),
                Some(CutMode::After) => {
                    self.program_word(at, w, false)?;
                    return Err(SimError::PowerLost);
                }
                Some(CutMode::Torn) => {
                    self.program_word(at, w, true)?;
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

    #[test]
    fn strict_flash_enforces_write_once_and_sector_erase() {
        let mut f = StrictFlash::new();
        f.write(0x2_0000, &[0x11; 32]).unwrap();
        let mut b = [0u8; 32];
        f.read(0x2_0000, &mut b).unwrap();
        assert_eq!(b, [0x11; 32]);
        assert_eq!(
            f.write(0x2_0000, &[0x11; 32]),
            Err(SimError::Violation(Violation::ProgramNotErased { offset: 0x2_0000 }))
        );
        assert_eq!(f.word(0x2_0000), Word::Torn, "double program leaves ECC-inconsistent word");
        assert_eq!(f.read(0x2_0000, &mut b), Err(SimError::Ecc { offset: 0x2_0000 }));
        assert!(matches!(f.write(0x2_0010, &[0; 32]), Err(SimError::Violation(Violation::Misaligned { .. }))));
        assert!(matches!(f.erase(0x2_0000, 0x3_0000), Err(SimError::Violation(Violation::Misaligned { .. }))));
        assert!(matches!(f.write(0x0, &[0; 32]), Err(SimError::Violation(Violation::Bootloader { .. }))));
        assert!(matches!(f.erase(0, 0x2_0000), Err(SimError::Violation(Violation::Bootloader { .. }))));
        f.erase(0x2_0000, 0x4_0000).unwrap();
        f.read(0x2_0000, &mut b).unwrap();
        assert_eq!(b, [0xFF; 32]);
        assert_eq!(f.violations().len(), 5);
        assert_eq!(f.ops(), 3, "two programs (one a violation) and one sector erase counted");
    }

    #[test]
    fn cuts_before_after_and_torn() {
        let data = [0x42u8; 96];
        for (mode, expect) in [
            (CutMode::Before, [Word::Programmed, Word::Erased, Word::Erased]),
            (CutMode::After, [Word::Programmed, Word::Programmed, Word::Erased]),
            (CutMode::Torn, [Word::Programmed, Word::Torn, Word::Erased]),
        ] {
            let mut f = StrictFlash::new();
            f.set_cut(Some(Cut { at: 1, mode }));
            assert_eq!(f.write(0x2_0000, &data), Err(SimError::PowerLost));
            assert!(!f.powered());
            let mut b = [0u8; 1];
            assert_eq!(f.read(0x2_0000, &mut b), Err(SimError::PowerLost), "no access without power");
            f.power_on();
            let got = [f.word(0x2_0000), f.word(0x2_0020), f.word(0x2_0040)];
            assert_eq!(got, expect, "{mode:?}");
        }
        // A torn erase leaves the whole sector unreadable, until erased again.
        let mut f = StrictFlash::new();
        f.provision(0x4_0000, &[0u8; 64]);
        f.set_cut(Some(Cut { at: 0, mode: CutMode::Torn }));
        assert_eq!(f.erase(0x4_0000, 0x6_0000), Err(SimError::PowerLost));
        f.power_on();
        let mut b = [0u8; 4];
        assert!(matches!(f.read(0x5_FFF0, &mut b), Err(SimError::Ecc { .. })));
        assert_eq!(f.stats().torn_reads, 1);
        f.erase(0x4_0000, 0x6_0000).unwrap();
        f.read(0x5_FFF0, &mut b).unwrap();
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
        // Rewritten with the same bytes but a different word state: still a change.
        let mut torn = base.clone();
        Arc::make_mut(&mut torn.pages[0]).words[5] = Word::Torn;
        assert!(!torn.same_region_as(&base, H723.bootloader));
    }

    #[test]
    fn cut_strings_round_trip() {
        let c: Cut = "41t".parse().unwrap();
        assert_eq!(c, Cut { at: 41, mode: CutMode::Torn });
        assert_eq!(c.to_string(), "41t");
        assert!("41".parse::<Cut>().is_err());
        assert!("xa".parse::<Cut>().is_err());
    }
}
