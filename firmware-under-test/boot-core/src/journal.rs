//! The security-counter journal: the stored minimum security counter, kept as append-only
//! 32-byte records in the journal sector (sector 7 on the H723).
//!
//! # Records
//! A record is 16 bytes (`"BPJ1"`, kind, value, `0x5A5A5A5A`) followed by their bitwise
//! complement, so a program cut half-way, or two records mixed in one word, never reads as a
//! valid record (each bit is 0 in exactly one half). Two kinds:
//! * **raise(c)**: the stored minimum is at least `c`;
//! * **seal**: written right after a raise, in the same pass; a seal that reads exactly proves
//!   the raise before it finished programming, so that raise reads the same for good.
//!
//! # Reading: the whole region, every time
//! * `minimum` is the highest raise that reads valid anywhere in the region, sealed or not,
//!   with or without a corrected ECC error. Counting an unsealed raise errs towards refusing old
//!   images, and that is safe: a raise is only ever written after its image's confirmation is
//!   proven (see [`crate::trailer`]), so an image that satisfies it stays bootable.
//! * `durable` is the highest *sealed* raise: what an acknowledged raise must reach.
//! * Unreadable or foreign words are skipped, never rewritten.
//!
//! # Appending, and what cuts can cost
//! A raise is two words, the record and its seal, appended after the last word that reads
//! anything but erased. If that last word is not a clean seal (a raise whose seal is missing,
//! or garbage), one word is left out: it may be a seal that was cut and reads erased, and a
//! word that may have been programmed is never programmed again. So a cut costs at most three
//! words, and the raise is retried until a read shows it sealed.
//!
//! A region that reads entirely erased is erased once more before its first raise: it may be a
//! compaction whose erase was cut, leaving words that read erased but would not hold a program.
//!
//! # When the region is full, or damaged
//! 4,096 words hold at least 1,365 raises even if every one is cut. When no pair fits, or more
//! than [`DAMAGED`] words are unreadable, the journal is compacted: the region is erased and the raise written at its start. Compaction is
//! only allowed to a caller that holds a floor, an image whose confirmation is proven and whose
//! counter is at least everything the region stores (the application confirming itself): while
//! the region is erased or half-erased, that image's counter keeps the minimum (the boot
//! decision counts the counters of images with proven confirmations, [`crate::boot`]). Without
//! a floor a full journal refuses the raise ([`JournalError::Full`]); the running image keeps
//! booting and nothing older is accepted. So a cut can never exhaust the journal, and the number
//! of raises over the product's life is bounded only by the sector's erase endurance.

use embedded_storage::nor_flash::NorFlash;

use crate::flash::{EccRead, FlashError, ReadCheck, erase_region, program};
use crate::layout::Layout;

/// Record magic.
pub const MAGIC: [u8; 4] = *b"BPJ1";
const WORD: u32 = 32;
const KIND_RAISE: u32 = 1;
const KIND_SEAL: u32 = 2;

fn encode(kind: u32, value: u32) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[0..4].copy_from_slice(&MAGIC);
    w[4..8].copy_from_slice(&kind.to_le_bytes());
    w[8..12].copy_from_slice(&value.to_le_bytes());
    w[12..16].copy_from_slice(&0x5A5A_5A5Au32.to_le_bytes());
    for i in 0..16 {
        w[16 + i] = !w[i];
    }
    w
}

/// The 32-byte record that raises the stored minimum to `counter` (for provisioning and tests).
pub fn record(counter: u32) -> [u8; 32] {
    encode(KIND_RAISE, counter)
}

/// The seal that follows a raise.
pub fn seal() -> [u8; 32] {
    encode(KIND_SEAL, 0)
}

/// What one journal word holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// All ones, no ECC event.
    Erased,
    /// A valid raise; `clean` is false if ECC corrected an error on the read.
    Raise {
        /// The counter.
        counter: u32,
        /// Read with no ECC event.
        clean: bool,
    },
    /// A seal, read with no ECC event.
    Seal,
    /// Anything else: foreign data, a cut program, a double ECC error, a corrected seal.
    Garbage,
}

/// Interpret one word read.
pub fn parse(w: &[u8; 32], check: ReadCheck) -> Entry {
    let (lo, hi) =
        (u128::from_le_bytes(w[..16].try_into().expect("16")), u128::from_le_bytes(w[16..].try_into().expect("16")));
    if check == ReadCheck::Clean && lo == u128::MAX && hi == u128::MAX {
        return Entry::Erased;
    }
    let u32le = |o: usize| u32::from_le_bytes([w[o], w[o + 1], w[o + 2], w[o + 3]]);
    // Magic, pad and the complement half (each bit 0 in exactly one half).
    if hi != !lo || w[0..4] != MAGIC || u32le(12) != 0x5A5A_5A5A {
        return Entry::Garbage;
    }
    match (u32le(4), u32le(8)) {
        (KIND_RAISE, counter) => Entry::Raise { counter, clean: check == ReadCheck::Clean },
        (KIND_SEAL, 0) if check == ReadCheck::Clean => Entry::Seal,
        _ => Entry::Garbage,
    }
}

/// What the journal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Journal {
    /// The stored minimum security counter: the highest raise that reads valid (0 when none).
    pub minimum: u32,
    /// The highest sealed raise (0 when none): proven programmed, reads the same for good.
    pub durable: u32,
    /// Offset of the next raise-and-seal pair, `None` when no pair fits.
    pub next: Option<u32>,
    /// Words in use: up to and including the last one that reads anything but erased.
    pub used: u32,
    /// Words that read as neither erased nor a valid record.
    pub skipped: u32,
}

/// Why a raise failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalError<E> {
    /// No pair fits and the caller holds no floor to compact with.
    Full,
    /// Words kept failing to read back as written.
    Unwritable,
    /// The flash failed.
    Flash(FlashError<E>),
}

impl<E: core::fmt::Debug> core::fmt::Display for JournalError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            JournalError::Full => write!(
                f,
                "the security-counter journal is full and no confirmed image can hold the counter while it is \
                 compacted; confirm the running image (its confirmation compacts the journal)"
            ),
            JournalError::Unwritable => write!(
                f,
                "the security-counter journal did not read back as written after four attempts: the sector may be \
                 worn out; replace the board or re-provision sector 7 with the probe"
            ),
            JournalError::Flash(e) => write!(f, "security-counter journal: {e}"),
        }
    }
}

const CHUNK: usize = 4096;

/// More unreadable words than this and the journal is compacted at the next raise. A cut costs
/// at most one unreadable word, so a healthy journal passes this only after 64 cuts in raises;
/// a compaction whose erase was cut leaves thousands.
pub const DAMAGED: u32 = 64;

impl Journal {
    /// Scan the whole journal region.
    pub fn read<F: EccRead>(flash: &mut F, layout: &Layout) -> Journal {
        let r = layout.journal;
        let words = r.size / WORD;
        let mut j = Journal { minimum: 0, durable: 0, next: None, used: 0, skipped: 0 };
        let mut last: Option<(u32, Entry)> = None;
        let mut pending: Option<u32> = None; // a raise waiting for its seal
        let mut chunk = [0u8; CHUNK];
        let per = (CHUNK as u32) / WORD;
        let mut c = 0;
        let mut stop = false;
        while c < words && !stop {
            let base = r.offset + c * WORD;
            let n = per.min(words - c);
            if !mutant!(JournalScanStopsAtErased) && flash.is_blank(base, n * WORD).unwrap_or(false) {
                // All erased (the common case): nothing to record.
                pending = None;
                c += n;
                continue;
            }
            let bytes = &mut chunk[..(n * WORD) as usize];
            let bulk = flash.read_checked(base, bytes);
            for k in 0..n {
                let e = match bulk {
                    Ok(ReadCheck::Clean) => {
                        let mut w = [0u8; 32];
                        w.copy_from_slice(&chunk[(k * WORD) as usize..((k + 1) * WORD) as usize]);
                        parse(&w, ReadCheck::Clean)
                    }
                    // Something in this chunk had an ECC event: read word by word.
                    _ => {
                        let mut w = [0u8; 32];
                        match flash.read_checked(base + k * WORD, &mut w) {
                            Ok(check) => parse(&w, check),
                            Err(_) => Entry::Garbage,
                        }
                    }
                };
                let i = c + k;
                match e {
                    Entry::Erased => {
                        if mutant!(JournalScanStopsAtErased) {
                            stop = true;
                            break;
                        }
                        pending = None;
                        continue;
                    }
                    Entry::Raise { counter, .. } => {
                        j.minimum = if mutant!(JournalLastNotMax) { counter } else { j.minimum.max(counter) };
                        pending = Some(counter);
                    }
                    Entry::Seal => {
                        if let Some(p) = pending.take() {
                            j.durable = j.durable.max(p);
                        }
                    }
                    Entry::Garbage => {
                        if mutant!(JournalAppendsOverTornRecord) {
                            // The old scan: stop at an unreadable record and append there.
                            j.next = Some(r.offset + i * WORD);
                            j.used = i;
                            return j;
                        }
                        j.skipped += 1;
                        pending = None;
                    }
                }
                last = Some((i, e));
            }
            c += n;
        }
        if mutant!(JournalCountsUnsealed) {
            j.durable = j.minimum;
        }
        let start = match last {
            None => 0,
            Some((i, Entry::Seal)) => i + 1,
            // A raise without its seal, or garbage: the next word may be a cut program.
            Some((i, _)) => i + 2,
        };
        j.used = last.map_or(0, |(i, _)| i + 1);
        j.next = (start + 1 < words).then_some(r.offset + start * WORD);
        j
    }

    /// Raise the stored minimum to `counter` and return once a read shows it sealed (no write
    /// if it already is). `floor`: the counter of an image whose confirmation is proven, which
    /// allows compacting a full journal (see the module documentation).
    pub fn raise<F: NorFlash + EccRead>(
        flash: &mut F,
        layout: &Layout,
        counter: u32,
        floor: Option<u32>,
    ) -> Result<Journal, JournalError<F::Error>> {
        let mut fresh = false;
        // Words this call saw refuse a program: never tried again in this call.
        let mut past = layout.journal.offset;
        for _ in 0..4 {
            let j = Journal::read(flash, layout);
            if j.durable >= counter {
                return Ok(j);
            }
            if j.used == 0 && !fresh && !mutant!(JournalTrustsBlank) {
                // A region that reads entirely erased may be a compaction cut in its erase, whose
                // words read erased but are not: erase it once more before the first write.
                erase_region(flash, layout, layout.journal).map_err(JournalError::Flash)?;
                fresh = true;
            }
            let at = j.next.map(|n| n.max(past)).filter(|n| n + WORD < layout.journal.end());
            // Many unreadable words mean the region is damaged: above all, a compaction cut in
            // its erase leaves every old word disturbed, and an append among them would not
            // hold. Compact instead of appending.
            let damaged = j.skipped > DAMAGED && !mutant!(JournalIgnoresDamage);
            let at = match at {
                Some(at) if !damaged => at,
                _ => {
                    let target = counter.max(j.minimum);
                    if floor.is_none_or(|f| f < target) {
                        return Err(JournalError::Full);
                    }
                    let r = layout.journal;
                    erase_region(flash, layout, r).map_err(JournalError::Flash)?;
                    fresh = true;
                    past = r.offset;
                    match append(flash, layout, r.offset, target) {
                        Ok(()) => {}
                        Err(FlashError::NotErased { offset }) => past = offset + 2 * WORD,
                        Err(e) => return Err(JournalError::Flash(e)),
                    }
                    continue;
                }
            };
            match append(flash, layout, at, counter) {
                Ok(()) => {}
                // A word that read non-erased is left alone, with a gap after it.
                Err(FlashError::NotErased { offset }) => past = offset + 2 * WORD,
                Err(e) => return Err(JournalError::Flash(e)),
            }
        }
        Err(JournalError::Unwritable)
    }
}

fn append<F: NorFlash + EccRead>(
    flash: &mut F,
    layout: &Layout,
    at: u32,
    counter: u32,
) -> Result<(), FlashError<F::Error>> {
    program(flash, layout, at, &record(counter))?;
    if !mutant!(JournalNoSeal) {
        program(flash, layout, at + WORD, &seal())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_damage() {
        let r = record(7);
        assert_eq!(parse(&r, ReadCheck::Clean), Entry::Raise { counter: 7, clean: true });
        assert_eq!(parse(&r, ReadCheck::Corrected), Entry::Raise { counter: 7, clean: false });
        assert_eq!(parse(&seal(), ReadCheck::Clean), Entry::Seal);
        assert_eq!(parse(&seal(), ReadCheck::Corrected), Entry::Garbage, "a corrected seal proves nothing");
        let mut bad = r;
        bad[9] ^= 1;
        assert_eq!(parse(&bad, ReadCheck::Clean), Entry::Garbage);
        let mut bad = r;
        bad[31] = 0xFF;
        assert_eq!(parse(&bad, ReadCheck::Clean), Entry::Garbage);
        assert_eq!(parse(&[0xFF; 32], ReadCheck::Clean), Entry::Erased);
        // A program cut half-way (some bits still 1) or two records mixed (bitwise AND) never
        // reads as a valid record.
        let (a, b) = (record(2), record(3));
        let mixed: std::vec::Vec<u8> = a.iter().zip(b).map(|(x, y)| x & y).collect();
        assert_eq!(parse(&mixed.try_into().unwrap(), ReadCheck::Clean), Entry::Garbage);
        let mut half = [0xFF; 32];
        half[..16].copy_from_slice(&a[..16]);
        assert_eq!(parse(&half, ReadCheck::Clean), Entry::Garbage);
    }
}
