//! The slot trailer: three flags, each in its own 32-byte flash word, each written once after
//! the slot is erased.
//!
//! | word (from the trailer start) | flag | written by | meaning |
//! |---|---|---|---|
//! | 0 | committed | the updater, last | download complete and verified |
//! | 1 | selected | the bootloader, before the first jump | the image had its trial boot |
//! | 2 | confirmed | the application | the application says it is good |
//! | 3 | (spare) | | |
//!
//! A flag word reads as one of three things: erased ([`WordState::Unset`]), exactly its
//! pattern ([`WordState::Set`]), or anything else, including an ECC error from a torn program
//! ([`WordState::Indeterminate`]). An indeterminate word is never written again (it is not
//! erased) and is interpreted conservatively:
//!
//! | flag | indeterminate reads as | why |
//! |---|---|---|
//! | committed | not committed | a commit that did not finish must not make a slot bootable |
//! | selected | selected | a trial that may have started must not be granted a second time |
//! | confirmed | not confirmed | only a finished confirmation counts |

use embedded_storage::nor_flash::ReadNorFlash;

use crate::layout::{Layout, SlotId};

/// Length of one flag word.
pub const WORD: usize = 32;

/// The three flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Download complete and verified.
    Committed,
    /// Trial boot granted.
    Selected,
    /// The application confirmed the image.
    Confirmed,
}

impl Flag {
    /// The word index in the trailer.
    pub fn index(self) -> u32 {
        self as u32
    }

    /// The exact 32 bytes that mean "set".
    pub fn pattern(self) -> [u8; WORD] {
        let tag: &[u8; 16] = match self {
            Flag::Committed => b"bootproof:commit",
            Flag::Selected => b"bootproof:select",
            Flag::Confirmed => b"bootproof:confrm",
        };
        let mut w = [0u8; WORD];
        w[..16].copy_from_slice(tag);
        // The second half is the bitwise complement: a half-programmed word cannot match.
        for i in 0..16 {
            w[16 + i] = !tag[i];
        }
        w
    }

    /// Offset of this flag's word in `slot`.
    pub fn offset(self, layout: &Layout, slot: SlotId) -> u32 {
        layout.trailer_offset(slot) + self.index() * WORD as u32
    }
}

/// What a flag word reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordState {
    /// Erased.
    Unset,
    /// Exactly the flag's pattern.
    Set,
    /// Neither, or unreadable (ECC error): a torn or foreign write.
    Indeterminate,
}

/// Read one flag word.
pub fn read_flag<F: ReadNorFlash>(flash: &mut F, layout: &Layout, slot: SlotId, flag: Flag) -> WordState {
    let mut w = [0u8; WORD];
    if flash.read(flag.offset(layout, slot), &mut w).is_err() {
        return WordState::Indeterminate;
    }
    if w == flag.pattern() {
        WordState::Set
    } else if w.iter().all(|b| *b == 0xFF) {
        WordState::Unset
    } else {
        WordState::Indeterminate
    }
}

/// A slot's trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// The committed word.
    pub committed: WordState,
    /// The selected word.
    pub selected: WordState,
    /// The confirmed word.
    pub confirmed: WordState,
}

impl Trailer {
    /// Read a slot's trailer.
    pub fn read<F: ReadNorFlash>(flash: &mut F, layout: &Layout, slot: SlotId) -> Trailer {
        Trailer {
            committed: read_flag(flash, layout, slot, Flag::Committed),
            selected: read_flag(flash, layout, slot, Flag::Selected),
            confirmed: read_flag(flash, layout, slot, Flag::Confirmed),
        }
    }

    /// Committed (indeterminate: no).
    pub fn is_committed(&self) -> bool {
        self.committed == WordState::Set
    }

    /// Selected (indeterminate: yes).
    pub fn is_selected(&self) -> bool {
        #[cfg(feature = "sim")]
        if crate::sim::mutant::on(crate::sim::mutant::Mutant::SelectedTornCountsAsUnset) {
            return self.selected == WordState::Set;
        }
        self.selected != WordState::Unset
    }

    /// Confirmed (indeterminate: no).
    pub fn is_confirmed(&self) -> bool {
        #[cfg(feature = "sim")]
        if crate::sim::mutant::on(crate::sim::mutant::Mutant::ConfirmedTornCountsAsSet) {
            return self.confirmed != WordState::Unset;
        }
        self.confirmed == WordState::Set
    }

    /// Its trial boot happened and the application never confirmed: rejected for good (until
    /// the slot is erased by the next download).
    pub fn trial_failed(&self) -> bool {
        self.is_selected() && !self.is_confirmed()
    }

    /// Committed and not a failed trial: worth verifying.
    pub fn is_candidate(&self) -> bool {
        self.is_committed() && !self.trial_failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_distinct_and_never_erased_looking() {
        let p = [Flag::Committed.pattern(), Flag::Selected.pattern(), Flag::Confirmed.pattern()];
        assert_ne!(p[0], p[1]);
        assert_ne!(p[1], p[2]);
        assert_ne!(p[0], p[2]);
        for w in p {
            assert!(w.iter().any(|b| *b != 0xFF));
            // Each bit is 0 in exactly one half: a program that stopped early leaves some of
            // those bits at 1, so it never reads as the pattern.
            for i in 0..16 {
                assert_eq!(w[i] ^ w[16 + i], 0xFF);
            }
        }
    }

    #[test]
    fn interpretation_of_indeterminate_words_is_conservative() {
        use WordState::*;
        let t = |c, s, f| Trailer { committed: c, selected: s, confirmed: f };
        assert!(t(Set, Unset, Unset).is_candidate(), "fresh commit: candidate");
        assert!(t(Set, Set, Set).is_candidate(), "confirmed: candidate");
        assert!(!t(Set, Set, Unset).is_candidate(), "failed trial");
        assert!(!t(Set, Indeterminate, Unset).is_candidate(), "torn select counts as selected");
        assert!(!t(Set, Set, Indeterminate).is_candidate(), "torn confirm does not count");
        assert!(!t(Indeterminate, Unset, Unset).is_candidate(), "torn commit does not count");
        assert!(!t(Unset, Unset, Unset).is_candidate(), "empty slot");
    }
}
