//! The security-counter journal: the stored minimum security counter, kept as append-only
//! 32-byte records in the journal sector (sector 7 on the H723).
//!
//! A record is `magic | counter | !counter | 20 × 0xA5`. The stored minimum is the highest
//! counter among the valid records; an unreadable or malformed record (a torn append) is
//! skipped and never written again. Records are appended at the first erased word, so the scan
//! stops there. The sector is never erased by the core: 4,096 records cover 4,096 counter
//! bumps, and a bump happens only when a confirmed image carries a higher counter.

use embedded_storage::nor_flash::NorFlash;

use crate::flash::{FlashError, program};
use crate::layout::Layout;

/// Record magic ("BPSC").
pub const MAGIC: u32 = 0x4353_5042;
const WORD: u32 = 32;

/// The 32-byte record that stores `counter` (for provisioning and tests).
pub fn record(counter: u32) -> [u8; 32] {
    let mut w = [0xA5u8; 32];
    w[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    w[4..8].copy_from_slice(&counter.to_le_bytes());
    w[8..12].copy_from_slice(&(!counter).to_le_bytes());
    w
}

fn parse(w: &[u8; 32]) -> Option<u32> {
    let c = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
    (w == &record(c)).then_some(c)
}

/// What the journal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Journal {
    /// The stored minimum security counter (0 when no record).
    pub minimum: u32,
    /// Offset of the next free record, `None` when the sector is full.
    pub next: Option<u32>,
    /// Records skipped because they were unreadable or malformed.
    pub skipped: u32,
}

/// Why a bump failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalError<E> {
    /// No erased record left.
    Full,
    /// The flash failed.
    Flash(FlashError<E>),
}

impl<E: core::fmt::Debug> core::fmt::Display for JournalError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            JournalError::Full => write!(
                f,
                "the security-counter journal is full (4,096 raises): erase sector 7 with the probe and re-provision"
            ),
            JournalError::Flash(e) => write!(f, "security-counter journal: {e}"),
        }
    }
}

impl Journal {
    /// Scan the journal.
    pub fn read<F: NorFlash>(flash: &mut F, layout: &Layout) -> Journal {
        let r = layout.journal;
        let mut j = Journal { minimum: 0, next: None, skipped: 0 };
        let mut off = r.offset;
        let mut w = [0u8; 32];
        while off < r.end() {
            match flash.read(off, &mut w) {
                Ok(()) if w.iter().all(|b| *b == 0xFF) => {
                    j.next = Some(off);
                    break;
                }
                Ok(()) => match parse(&w) {
                    Some(c) => j.minimum = j.minimum.max(c),
                    None => j.skipped += 1,
                },
                Err(_) => {
                    #[cfg(feature = "sim")]
                    if crate::sim::mutant::on(crate::sim::mutant::Mutant::JournalAppendsOverTornRecord) {
                        j.next = Some(off);
                        break;
                    }
                    j.skipped += 1
                }
            }
            off += WORD;
        }
        j
    }

    /// Raise the stored minimum to `counter` (no write if it is already there).
    pub fn raise<F: NorFlash>(flash: &mut F, layout: &Layout, counter: u32) -> Result<Journal, JournalError<F::Error>> {
        let j = Journal::read(flash, layout);
        if counter <= j.minimum {
            return Ok(j);
        }
        let at = j.next.ok_or(JournalError::Full)?;
        program(flash, layout, at, &record(counter)).map_err(JournalError::Flash)?;
        Ok(Journal { minimum: counter, next: (at + WORD < layout.journal.end()).then_some(at + WORD), ..j })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_damage() {
        let r = record(7);
        assert_eq!(parse(&r), Some(7));
        let mut bad = r;
        bad[9] ^= 1;
        assert_eq!(parse(&bad), None);
        let mut bad = r;
        bad[31] = 0xFF;
        assert_eq!(parse(&bad), None);
        assert_eq!(parse(&[0xFF; 32]), None);
    }
}
