//! The slot trailer: flag words at the end of each slot, each written once after the slot is
//! erased, and the proofs that make them safe to act on.
//!
//! | word | flag | written by | meaning |
//! |---|---|---|---|
//! | 0 | committed | the updater | download complete and verified |
//! | 1 | commit seal | the updater, right after committed | committed finished programming |
//! | 2 | selected | the bootloader, before the first jump | the image had its trial boot |
//! | 3 | (spare) | | |
//! | 4 + 2i | confirmed *i* (i = 0..5) | the application | the application says it is good |
//! | 5 + 2i | confirm seal *i* | the application, right after confirmed *i* | confirmed *i* finished programming |
//!
//! # Reading a word
//! A flag word reads as erased ([`WordState::Unset`]), exactly its pattern with no ECC event
//! ([`WordState::Set`]), or anything else ([`WordState::Indeterminate`]): other data, a double
//! ECC error, or a single error that ECC corrected. A word whose programming was cut can read
//! as any of the three, and differently at every read, so a single read of a word proves
//! nothing about whether its programming finished.
//!
//! # Proof by a later word
//! Words are programmed in a fixed order, and each writer checks the proof of the previous
//! step before it writes the next word. A word that reads as its pattern was therefore
//! *started*, and a word is only ever started after the word before it in the sequence
//! *finished*. So the committed word is proven finished once the commit seal, the selected
//! word, or any confirmed or confirm-seal word reads set; and confirmed *i* is proven finished
//! once its own seal reads set. A finished word reads back the same for good.
//!
//! | question | answer | used for |
//! |---|---|---|
//! | committed? ([`Trailer::is_committed`]) | committed and commit seal set, or any later word set | candidate for booting |
//! | selected? ([`Trailer::is_selected`]) | selected not erased (set or indeterminate) | a trial that may have started is never granted again |
//! | confirmed? ([`Trailer::is_confirmed`]) | some confirmed *i* or confirm seal *i* set | not a failed trial |
//! | confirmation proven? ([`Trailer::confirm_proven`]) | some confirm seal *i* set | raising the security counter; erasing the other slot (the fallback); the image's counter as a floor |
//!
//! Because a later word proves an earlier one, a single word that loses a bit later (a
//! corrected read counts as indeterminate) changes none of these answers.
//!
//! A confirmation whose proof is missing (power was cut before the seal) is written again with
//! the next pair; six pairs bound what repeated cuts can cost. Every decision that destroys a
//! fallback waits for a proof, so a word that reads set once and erased later can make the
//! board boot the older image, but never leave it with nothing to boot.

use crate::flash::{EccRead, WordRead, read_word};
use crate::layout::{Layout, SlotId};

/// Length of one flag word.
pub const WORD: usize = 32;

/// Confirmation pairs (confirmed word + seal) per slot.
pub const PAIRS: usize = 6;

/// A trailer word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Download complete and verified.
    Committed,
    /// The committed word finished programming.
    CommitSeal,
    /// Trial boot granted.
    Selected,
    /// The application confirmed the image (pair 0..[`PAIRS`]).
    Confirmed(u8),
    /// Confirmed *i* finished programming.
    ConfirmSeal(u8),
}

impl Flag {
    /// The word index in the trailer.
    pub fn index(self) -> u32 {
        match self {
            Flag::Committed => 0,
            Flag::CommitSeal => 1,
            Flag::Selected => 2,
            Flag::Confirmed(i) => 4 + 2 * i as u32,
            Flag::ConfirmSeal(i) => 5 + 2 * i as u32,
        }
    }

    /// The exact 32 bytes that mean "set".
    pub fn pattern(self) -> [u8; WORD] {
        let mut tag: [u8; 16] = *match self {
            Flag::Committed => b"bootproof:commit",
            Flag::CommitSeal => b"bootproof:cmseal",
            Flag::Selected => b"bootproof:select",
            Flag::Confirmed(_) => b"bootproof:confm_",
            Flag::ConfirmSeal(_) => b"bootproof:cfseal",
        };
        if let Flag::Confirmed(i) | Flag::ConfirmSeal(i) = self {
            tag[15] = b'0' + i;
        }
        let mut w = [0u8; WORD];
        w[..16].copy_from_slice(&tag);
        // The second half is the bitwise complement: every bit is 0 in exactly one half, so a
        // program that stopped early, or a mix of two patterns, never reads as a pattern.
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
    /// Exactly the flag's pattern, no ECC event.
    Set,
    /// Anything else: other data, or an ECC error (double, or a corrected single).
    Indeterminate,
}

/// Read one flag word.
pub fn read_flag<F: EccRead>(flash: &mut F, layout: &Layout, slot: SlotId, flag: Flag) -> WordState {
    WordState::of(read_word(flash, flag.offset(layout, slot)), flag)
}

impl WordState {
    /// What a word read means for `flag`.
    pub fn of(w: WordRead, flag: Flag) -> WordState {
        match w {
            WordRead::Erased => WordState::Unset,
            w if w.is(&flag.pattern()) => WordState::Set,
            _ => WordState::Indeterminate,
        }
    }
}

/// A slot's trailer, read once (every decision works from one snapshot: a word that reads
/// differently at each read must not give two answers within one decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// The committed word.
    pub committed: WordState,
    /// The commit seal.
    pub commit_seal: WordState,
    /// The selected word.
    pub selected: WordState,
    /// The confirmed words.
    pub confirmed: [WordState; PAIRS],
    /// Their seals.
    pub confirm_seal: [WordState; PAIRS],
}

impl Trailer {
    /// An erased trailer.
    pub const ERASED: Trailer = Trailer {
        committed: WordState::Unset,
        commit_seal: WordState::Unset,
        selected: WordState::Unset,
        confirmed: [WordState::Unset; PAIRS],
        confirm_seal: [WordState::Unset; PAIRS],
    };

    /// Read a slot's trailer.
    pub fn read<F: EccRead>(flash: &mut F, layout: &Layout, slot: SlotId) -> Trailer {
        Trailer::from_fn(|f| read_flag(flash, layout, slot, f))
    }

    /// A trailer from the state of each word (as a probe reads them, say).
    pub fn from_fn(mut state: impl FnMut(Flag) -> WordState) -> Trailer {
        let mut t = Trailer {
            committed: state(Flag::Committed),
            commit_seal: state(Flag::CommitSeal),
            selected: state(Flag::Selected),
            ..Trailer::ERASED
        };
        for i in 0..PAIRS {
            t.confirmed[i] = state(Flag::Confirmed(i as u8));
            t.confirm_seal[i] = state(Flag::ConfirmSeal(i as u8));
        }
        t
    }

    /// Committed, and the commit is proven finished: a candidate for booting.
    ///
    /// Each of the commit seal, the selected word and the confirmation words is only ever
    /// written after the commit was proven, so any of them reading set proves the committed
    /// word finished, even if that word itself now reads indeterminate (a corrected bit).
    pub fn is_committed(&self) -> bool {
        if mutant!(CommittedTornCountsAsSet) {
            return self.committed != WordState::Unset;
        }
        (self.committed == WordState::Set && self.commit_seal == WordState::Set)
            || self.selected == WordState::Set
            || self.confirmed.contains(&WordState::Set)
            || self.confirm_seal.contains(&WordState::Set)
    }

    /// Selected (indeterminate: yes).
    pub fn is_selected(&self) -> bool {
        if mutant!(SelectedTornCountsAsUnset) {
            return self.selected == WordState::Set;
        }
        self.selected != WordState::Unset
    }

    /// Some confirmed word or confirm seal is set (indeterminate: no). A seal is only written
    /// right after its confirmed word finished, so a set seal confirms as well.
    pub fn is_confirmed(&self) -> bool {
        if mutant!(ConfirmedTornCountsAsSet) {
            return self.confirmed.iter().any(|w| *w != WordState::Unset);
        }
        self.confirmed.contains(&WordState::Set) || self.confirm_seal.contains(&WordState::Set)
    }

    /// Some confirm seal is set: the confirmed word before it finished, and reads the same for
    /// good.
    pub fn confirm_proven(&self) -> bool {
        if mutant!(ConfirmationNeedsNoProof) {
            return self.is_confirmed();
        }
        self.confirm_seal.contains(&WordState::Set)
    }

    /// Committed and confirmed, both proven: this image may carry the stored minimum, and the
    /// other slot is no longer its fallback.
    pub fn is_settled(&self) -> bool {
        self.is_committed() && self.confirm_proven()
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

    /// The next confirmation pair that is entirely erased. A pair whose confirmed word reads
    /// anything but erased is never reused: its seal may be a cut program that reads erased.
    pub fn next_confirm_pair(&self) -> Option<u8> {
        self.next_confirm_pair_from(0)
    }

    /// [`Trailer::next_confirm_pair`], from pair `first` on.
    pub fn next_confirm_pair_from(&self, first: usize) -> Option<u8> {
        (first..PAIRS)
            .find(|&i| self.confirmed[i] == WordState::Unset && self.confirm_seal[i] == WordState::Unset)
            .map(|i| i as u8)
    }
}

/// The words to program, in order, to install an image as committed (and, if `confirmed`,
/// selected and confirmed), as factory provisioning does.
pub fn provisioned(confirmed: bool) -> &'static [Flag] {
    if confirmed {
        &[Flag::Committed, Flag::CommitSeal, Flag::Selected, Flag::Confirmed(0), Flag::ConfirmSeal(0)]
    } else {
        &[Flag::Committed, Flag::CommitSeal]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> std::vec::Vec<Flag> {
        let mut v = std::vec![Flag::Committed, Flag::CommitSeal, Flag::Selected];
        for i in 0..PAIRS as u8 {
            v.push(Flag::Confirmed(i));
            v.push(Flag::ConfirmSeal(i));
        }
        v
    }

    #[test]
    fn patterns_are_distinct_complemented_and_fit_the_trailer() {
        let flags = all();
        for (i, a) in flags.iter().enumerate() {
            let p = a.pattern();
            for j in 0..16 {
                assert_eq!(p[j] ^ p[16 + j], 0xFF, "{a:?}");
            }
            for b in &flags[i + 1..] {
                assert_ne!(p, b.pattern(), "{a:?} vs {b:?}");
                assert_ne!(a.index(), b.index());
            }
            assert!((a.index() as usize + 1) * WORD <= crate::layout::TRAILER_LEN as usize);
        }
    }

    #[test]
    fn interpretation_needs_proof_and_is_conservative() {
        use WordState::*;
        let t = |c, cs, s, f: WordState, fs: WordState| Trailer {
            committed: c,
            commit_seal: cs,
            selected: s,
            confirmed: [f, Unset, Unset, Unset, Unset, Unset],
            confirm_seal: [fs, Unset, Unset, Unset, Unset, Unset],
        };
        assert!(t(Set, Set, Unset, Unset, Unset).is_candidate(), "fresh commit, sealed");
        assert!(t(Indeterminate, Set, Set, Set, Set).is_settled(), "a later word proves a rotted commit");
        assert!(t(Set, Set, Set, Indeterminate, Set).is_settled(), "the seal proves a rotted confirmation");
        assert!(!t(Set, Unset, Unset, Unset, Unset).is_candidate(), "commit without its seal: not proven");
        assert!(!t(Set, Indeterminate, Unset, Unset, Unset).is_candidate(), "torn seal: not proven");
        assert!(t(Set, Unset, Set, Set, Set).is_candidate(), "a later word proves the commit");
        assert!(t(Set, Set, Set, Set, Set).is_settled(), "confirmed and proven");
        assert!(!t(Set, Set, Set, Set, Unset).is_settled(), "confirmed, seal missing: not proven");
        assert!(t(Set, Set, Set, Set, Unset).is_candidate(), "but still bootable");
        assert!(!t(Set, Set, Set, Unset, Unset).is_candidate(), "failed trial");
        assert!(!t(Set, Set, Indeterminate, Unset, Unset).is_candidate(), "torn select counts as selected");
        assert!(!t(Set, Set, Set, Indeterminate, Unset).is_candidate(), "torn confirm does not count");
        assert!(!t(Indeterminate, Set, Unset, Unset, Unset).is_candidate(), "torn commit does not count");
        assert!(!t(Unset, Unset, Unset, Unset, Unset).is_candidate(), "empty slot");
        assert_eq!(t(Set, Set, Set, Set, Unset).next_confirm_pair(), Some(1), "a started pair is never reused");
        assert_eq!(t(Set, Set, Set, Unset, Unset).next_confirm_pair(), Some(0));
    }
}
