//! The twin's user flash: write-once words with ECC, erase by sector, torn operations.
//!
//! Semantics (RM0468/RM0399 embedded flash; RM0390 for the F4; RM0440/RM0490 for the G0's flash
//! design; the board profiles cite them):
//! * Erased flash reads as the profile's erased value (0xFF), without ECC error.
//! * On ECC parts a word may be programmed once per erase. Programming it again is an error in
//!   the model *and* leaves an ECC-inconsistent word, as on silicon ("the result may lead to an
//!   inconsistent ECC code that will be systematically reported"). On parts without ECC (F4) a
//!   second program can only clear bits, as NOR flash does. The G0's controller refuses a second
//!   program instead (PROGERR, `Reprogram::RefusedUnlessZero`).
//! * A program or erase interrupted by a power cut or reset leaves the word (or the whole
//!   sector) torn. Reading a torn or inconsistent word is an ECC double error: a bus fault for
//!   the reader (assumption `torn-word-reads`).
//!
//! Timing is not modelled here; the board charges program and erase time in virtual time and
//! tears the operation if a reset lands in that window.

use bootproof_fixtures::{Flash, Sector};

/// State of one program unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordState {
    /// Erased since the last program.
    Erased,
    /// Programmed once.
    Programmed,
    /// ECC-inconsistent: torn program, torn erase or double program. Reads fault.
    Inconsistent,
    /// Programmed, with one bit flipped since (retention, disturb): the ECC corrects it, so
    /// reads return the programmed data and flag a single error (SNECCERR on the H7).
    Corrected,
}

/// A flash operation: what the controller performs, what a reset tears while it is in flight,
/// and what [`FlashArray::record`] logs for power-cut replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashOp {
    /// Programming one word.
    Program {
        /// Address.
        addr: u32,
        /// Data (one word).
        data: Vec<u8>,
    },
    /// Erasing a sector.
    Erase {
        /// Sector.
        sector: u32,
    },
    /// Erasing the bank.
    Mass,
}

/// What a power cut leaves of an operation it interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// The word (or every word of a torn erase) is ECC-inconsistent: reads are double errors
    /// (assumption `torn-word-reads`, the default).
    Ecc,
    /// Less kind physics: the cells hold half the change and the ECC happens to match, so the
    /// word reads back cleanly as data that was never written (a program: half the intended
    /// bits; an erase: half the sector erased, the rest still the old data).
    Silent,
}

/// A flash access error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlashFault {
    /// Read of an ECC-inconsistent word: a double ECC error, i.e. a bus fault.
    #[error("ECC double error reading flash word at {0:#010x} (bus fault)")]
    EccDouble(u32),
    /// Address outside user flash.
    #[error("{0:#010x} is not in user flash")]
    OutOfRange(u32),
    /// Program not aligned to the flash word or not a whole number of words.
    #[error("program at {addr:#010x} ({len} bytes) is not aligned to the {word}-byte flash word")]
    Unaligned {
        /// Address.
        addr: u32,
        /// Length.
        len: usize,
        /// Word size.
        word: u32,
    },
    /// Second program of an ECC word without erase; the word is now inconsistent.
    #[error("flash word at {0:#010x} programmed twice without erase; its ECC is now inconsistent")]
    Overwrite(u32),
    /// The sector is write-protected.
    #[error("sector {0} is write-protected")]
    WriteProtected(u32),
    /// The controller refused a program of a word that is not erased (PROGERR); the word keeps
    /// its data.
    #[error(
        "flash word at {0:#010x} is not erased: the controller refused the program (PROGERR); erase the page first"
    )]
    NotErased(u32),
}

/// The user flash array.
#[derive(Clone)]
pub struct FlashArray {
    base: u32,
    word: u32,
    erased: u8,
    ecc: bool,
    reprogram: bootproof_fixtures::Reprogram,
    data: Vec<u8>,
    words: Vec<WordState>,
    sectors: Vec<Sector>,
    protected: Vec<bool>,
    erase_counts: Vec<u64>,
    program_count: u64,
    version: u64,
    log: Option<Vec<FlashOp>>,
}

impl FlashArray {
    /// A blank (fully erased) flash of the given geometry.
    pub fn new(geometry: &Flash) -> Self {
        let size = geometry.size() as usize;
        let sectors = geometry.sector_list();
        let n = sectors.len();
        FlashArray {
            base: geometry.base,
            word: geometry.word,
            erased: geometry.erased,
            ecc: geometry.ecc,
            reprogram: geometry.reprogram,
            data: vec![geometry.erased; size],
            words: vec![WordState::Erased; size / geometry.word as usize],
            sectors,
            protected: vec![false; n],
            erase_counts: vec![0; n],
            program_count: 0,
            version: 0,
            log: None,
        }
    }

    /// Base address.
    pub fn base(&self) -> u32 {
        self.base
    }
    /// One past the end.
    pub fn end(&self) -> u32 {
        self.base + self.data.len() as u32
    }
    /// Program unit.
    pub fn word(&self) -> u32 {
        self.word
    }
    /// Sectors.
    pub fn sectors(&self) -> &[Sector] {
        &self.sectors
    }
    /// Whether `addr` is in this flash.
    pub fn contains(&self, addr: u32) -> bool {
        addr >= self.base && addr < self.end()
    }
    /// Sector holding `addr`.
    pub fn sector_of(&self, addr: u32) -> Option<&Sector> {
        self.sectors.iter().find(|s| addr >= s.start && addr < s.end())
    }
    /// Erase count per sector (wear accounting).
    pub fn erase_counts(&self) -> &[u64] {
        &self.erase_counts
    }
    /// Total word programs.
    pub fn program_count(&self) -> u64 {
        self.program_count
    }
    /// Whether sector `index` is write-protected.
    pub fn is_protected(&self, index: u32) -> bool {
        self.protected.get(index as usize).copied().unwrap_or(false)
    }
    /// Set per-sector write protection (the WRPSN option bytes).
    pub fn set_protected(&mut self, index: u32, on: bool) {
        if let Some(p) = self.protected.get_mut(index as usize) {
            *p = on;
        }
    }

    fn word_index(&self, addr: u32) -> usize {
        ((addr - self.base) / self.word) as usize
    }

    /// State of the word holding `addr`.
    pub fn word_state(&self, addr: u32) -> WordState {
        self.words[self.word_index(addr)]
    }

    /// Read `buf.len()` bytes at `addr`. Fails on the first inconsistent word (double ECC).
    pub fn read(&self, addr: u32, buf: &mut [u8]) -> Result<(), FlashFault> {
        self.read_checked(addr, buf).map(drop)
    }

    /// [`FlashArray::read`], also saying which word (if any) the ECC corrected.
    pub fn read_checked(&self, addr: u32, buf: &mut [u8]) -> Result<Option<u32>, FlashFault> {
        let end = addr as u64 + buf.len() as u64;
        if !self.contains(addr) || end > self.end() as u64 {
            return Err(FlashFault::OutOfRange(if self.contains(addr) { self.end() } else { addr }));
        }
        if self.ecc && !buf.is_empty() {
            let first = self.word_index(addr);
            let last = self.word_index((end - 1) as u32);
            if let Some(i) = (first..=last).find(|i| self.words[*i] == WordState::Inconsistent) {
                return Err(FlashFault::EccDouble(self.base + i as u32 * self.word));
            }
        }
        let off = (addr - self.base) as usize;
        buf.copy_from_slice(&self.data[off..off + buf.len()]);
        if self.ecc && !buf.is_empty() {
            let (first, last) = (self.word_index(addr), self.word_index((end - 1) as u32));
            if let Some(i) = (first..=last).find(|i| self.words[*i] == WordState::Corrected) {
                return Ok(Some(self.base + i as u32 * self.word));
            }
        }
        Ok(None)
    }

    /// Flip one stored bit of the programmed word at `addr` (a retention error). With ECC the
    /// word stays readable, its data corrected, and reads flag it (a second flip in the same
    /// word is a double error); without ECC the bit reads flipped. Erased and inconsistent
    /// words are left as they are.
    pub fn flip_bit(&mut self, addr: u32, bit: u32) -> Result<(), FlashFault> {
        if !self.contains(addr) {
            return Err(FlashFault::OutOfRange(addr));
        }
        let i = self.word_index(addr);
        let byte = i * self.word as usize + (bit / 8) as usize % self.word as usize;
        self.version += 1;
        if self.ecc {
            if self.words[i] == WordState::Programmed {
                self.words[i] = WordState::Corrected;
            } else if self.words[i] == WordState::Corrected {
                // A second flipped bit: beyond the single-error correction.
                self.words[i] = WordState::Inconsistent;
            }
        } else {
            self.data[byte] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    /// Raw bytes without the ECC check (what a debugger sees behind ECC, for tests).
    pub fn raw(&self, addr: u32, len: usize) -> &[u8] {
        let off = (addr - self.base) as usize;
        &self.data[off..off + len]
    }

    /// Whether every byte of `[addr, addr+len)` is erased and every word consistent.
    pub fn is_blank(&self, addr: u32, len: usize) -> bool {
        let first = self.word_index(addr);
        let last = self.word_index(addr + len as u32 - 1);
        (first..=last).all(|i| self.words[i] == WordState::Erased)
    }

    /// Check a program request without performing it.
    pub fn check_program(&self, addr: u32, len: usize) -> Result<(), FlashFault> {
        if !self.contains(addr) || addr as u64 + len as u64 > self.end() as u64 {
            return Err(FlashFault::OutOfRange(addr));
        }
        if !addr.is_multiple_of(self.word) || !len.is_multiple_of(self.word as usize) || len == 0 {
            return Err(FlashFault::Unaligned { addr, len, word: self.word });
        }
        let mut a = addr;
        while a < addr + len as u32 {
            let s = self.sector_of(a).expect("in range");
            if self.is_protected(s.index) {
                return Err(FlashFault::WriteProtected(s.index));
            }
            a = s.end();
        }
        Ok(())
    }

    /// Changes whenever the contents change (for decoded-code caches).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Program one word at `addr` (aligned, `data.len() == word`).
    pub fn program_word(&mut self, addr: u32, data: &[u8]) -> Result<(), FlashFault> {
        self.check_program(addr, data.len())?;
        self.version += 1;
        debug_assert_eq!(data.len(), self.word as usize);
        if let Some(log) = &mut self.log {
            log.push(FlashOp::Program { addr, data: data.to_vec() });
        }
        let i = self.word_index(addr);
        let off = (addr - self.base) as usize;
        let old = self.words[i];
        if self.reprogram == bootproof_fixtures::Reprogram::RefusedUnlessZero
            && self.data[off..off + data.len()].iter().any(|b| *b != self.erased)
            && data.iter().any(|b| *b != 0)
        {
            return Err(FlashFault::NotErased(addr));
        }
        self.program_count += 1;
        // NOR: programming can only clear bits.
        for (d, s) in self.data[off..off + data.len()].iter_mut().zip(data) {
            *d &= *s;
        }
        let zero_allowed = self.reprogram == bootproof_fixtures::Reprogram::RefusedUnlessZero;
        if self.ecc && old != WordState::Erased && !zero_allowed {
            self.words[i] = WordState::Inconsistent;
            return Err(FlashFault::Overwrite(addr));
        }
        self.words[i] = WordState::Programmed;
        Ok(())
    }

    /// Erase one sector.
    pub fn erase_sector(&mut self, index: u32) -> Result<(), FlashFault> {
        let s = *self.sectors.get(index as usize).ok_or(FlashFault::OutOfRange(index))?;
        if self.is_protected(index) {
            return Err(FlashFault::WriteProtected(index));
        }
        self.version += 1;
        if let Some(log) = &mut self.log {
            log.push(FlashOp::Erase { sector: index });
        }
        let off = (s.start - self.base) as usize;
        self.data[off..off + s.size as usize].fill(self.erased);
        let first = self.word_index(s.start);
        let n = (s.size / self.word) as usize;
        self.words[first..first + n].fill(WordState::Erased);
        self.erase_counts[index as usize] += 1;
        Ok(())
    }

    /// Perform `op` at once (a replay of a recorded operation).
    pub fn apply(&mut self, op: &FlashOp) -> Result<(), FlashFault> {
        match op {
            FlashOp::Program { addr, data } => self.program_word(*addr, data),
            FlashOp::Erase { sector } => self.erase_sector(*sector),
            FlashOp::Mass => (0..self.sectors.len() as u32).try_for_each(|s| self.erase_sector(s)),
        }
    }

    /// `op` was cut by a power loss or reset, leaving what `how` says.
    pub fn tear(&mut self, op: &FlashOp, how: Tear) {
        match op {
            FlashOp::Program { addr, data } => self.tear_word_as(*addr, data, how),
            FlashOp::Erase { sector } => self.tear_sector_as(*sector, how),
            FlashOp::Mass => (0..self.sectors.len() as u32).for_each(|s| self.tear_sector_as(s, how)),
        }
    }

    /// Start (`true`) or stop logging every completed program and erase, for replays.
    pub fn record(&mut self, on: bool) {
        self.log = on.then(Vec::new);
    }

    /// The operations completed since [`FlashArray::record`] started, in order.
    pub fn recorded(&self) -> &[FlashOp] {
        self.log.as_deref().unwrap_or(&[])
    }

    /// A program of the word at `addr` was cut: the word is left half-programmed.
    pub fn tear_word(&mut self, addr: u32, data: &[u8]) {
        self.tear_word_as(addr, data, Tear::Ecc)
    }

    /// A program of the word at `addr` was cut, leaving what `how` says.
    pub fn tear_word_as(&mut self, addr: u32, data: &[u8], how: Tear) {
        self.version += 1;
        let i = self.word_index(addr);
        let off = (addr - self.base) as usize;
        // Half the bits made it.
        let half = data.len() / 2;
        for (d, s) in self.data[off..off + half].iter_mut().zip(data) {
            *d &= *s;
        }
        if self.ecc && how == Tear::Ecc {
            self.words[i] = WordState::Inconsistent;
        } else {
            self.words[i] = WordState::Programmed;
        }
    }

    /// An erase of sector `index` was cut: contents indeterminate until erased again.
    pub fn tear_sector(&mut self, index: u32) {
        self.tear_sector_as(index, Tear::Ecc)
    }

    /// An erase of sector `index` was cut, leaving what `how` says.
    pub fn tear_sector_as(&mut self, index: u32, how: Tear) {
        self.version += 1;
        let s = self.sectors[index as usize];
        let first = self.word_index(s.start);
        let n = (s.size / self.word) as usize;
        let off = (s.start - self.base) as usize;
        // Roughly half the sector got erased.
        self.data[off..off + s.size as usize / 2].fill(self.erased);
        let state = if self.ecc && how == Tear::Ecc { WordState::Inconsistent } else { WordState::Programmed };
        self.words[first..first + n].fill(state);
        self.erase_counts[index as usize] += 1;
    }

    /// Whether the flash-empty check would see an empty part (first word erased).
    pub fn first_word_erased(&self) -> bool {
        self.data[..4].iter().all(|b| *b == self.erased) && self.words[0] == WordState::Erased
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootproof_fixtures::BoardProfile;

    fn h7() -> FlashArray {
        FlashArray::new(&BoardProfile::builtin("stm32h723zg").unwrap().flash)
    }

    #[test]
    fn erased_flash_reads_ff_without_error() {
        let f = h7();
        let mut b = [0u8; 64];
        f.read(0x0800_0000, &mut b).unwrap();
        assert_eq!(b, [0xFF; 64]);
        assert!(f.is_blank(0x0800_0000, 0x100000));
    }

    #[test]
    fn a_word_is_written_once_per_erase() {
        let mut f = h7();
        f.program_word(0x0800_0020, &[0x11; 32]).unwrap();
        let mut b = [0u8; 32];
        f.read(0x0800_0020, &mut b).unwrap();
        assert_eq!(b, [0x11; 32]);
        // Second write: error, and the word becomes ECC-inconsistent.
        assert_eq!(f.program_word(0x0800_0020, &[0x10; 32]), Err(FlashFault::Overwrite(0x0800_0020)));
        assert_eq!(f.word_state(0x0800_0020), WordState::Inconsistent);
        assert_eq!(f.read(0x0800_0020, &mut b), Err(FlashFault::EccDouble(0x0800_0020)));
        // The neighbours are unaffected.
        f.read(0x0800_0000, &mut b).unwrap();
        f.read(0x0800_0040, &mut b).unwrap();
        // Erase heals it.
        f.erase_sector(0).unwrap();
        f.read(0x0800_0020, &mut b).unwrap();
        assert_eq!(b, [0xFF; 32]);
        assert_eq!(f.erase_counts()[0], 1);
    }

    #[test]
    fn unaligned_and_out_of_range_programs_are_refused_without_change() {
        let mut f = h7();
        assert!(matches!(f.program_word(0x0800_0008, &[0; 32]), Err(FlashFault::Unaligned { .. })));
        assert!(matches!(f.check_program(0x0800_0000, 16), Err(FlashFault::Unaligned { .. })));
        assert!(matches!(f.check_program(0x0810_0000, 32), Err(FlashFault::OutOfRange(_))));
        assert!(f.is_blank(0x0800_0000, 64));
        assert_eq!(f.program_count(), 0);
    }

    #[test]
    fn torn_word_and_torn_sector_read_as_double_ecc() {
        let mut f = h7();
        f.tear_word(0x0802_0000, &[0; 32]);
        let mut b = [0u8; 4];
        assert_eq!(f.read(0x0802_0000, &mut b), Err(FlashFault::EccDouble(0x0802_0000)));
        f.tear_sector(2);
        assert_eq!(f.read(0x0804_1000, &mut b), Err(FlashFault::EccDouble(0x0804_1000)));
        f.erase_sector(2).unwrap();
        f.read(0x0804_1000, &mut b).unwrap();
    }

    #[test]
    fn write_protected_sector_refuses_program_and_erase() {
        let mut f = h7();
        f.set_protected(0, true);
        assert_eq!(f.program_word(0x0800_0000, &[0; 32]), Err(FlashFault::WriteProtected(0)));
        assert_eq!(f.erase_sector(0), Err(FlashFault::WriteProtected(0)));
        f.program_word(0x0802_0000, &[0; 32]).unwrap();
    }

    #[test]
    fn f4_flash_without_ecc_allows_clearing_bits() {
        let mut f = FlashArray::new(&BoardProfile::builtin("stm32f446re").unwrap().flash);
        f.program_word(0x0800_0000, &[0xF0]).unwrap();
        f.program_word(0x0800_0000, &[0x3C]).unwrap();
        let mut b = [0u8; 1];
        f.read(0x0800_0000, &mut b).unwrap();
        assert_eq!(b, [0x30]);
        assert_eq!(f.sectors().len(), 8);
        assert_eq!(f.sector_of(0x0801_0000).unwrap().index, 4);
    }
}
