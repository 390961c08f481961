//! The boot decision (direct-XIP A/B with trial boot and automatic revert).
//!
//! 1. Read both trailers once ([`Trailer`]) and the journal ([`Journal`]).
//! 2. The stored minimum security counter is the journal's minimum, raised to the counter of
//!    every image whose confirmation is proven and which verifies: such an image is where its
//!    counter lives while the journal is being compacted ([`stored_minimum`]). An image whose
//!    claimed counter is not above the journal's is not verified for this (it cannot change
//!    the minimum).
//! 3. A slot is a *candidate* when its commit is proven and it is not a failed trial (selected
//!    but not confirmed), and its header names this slot as its load address.
//! 4. Candidates are tried highest version first (ties: slot A): the full check is header,
//!    sizes, SHA-256, key hash, Ed25519 signature and security counter ≥ the stored minimum.
//! 5. The first that verifies boots. If it was not yet selected, the selected word is written
//!    first (its trial boot); if that write fails, the slot is skipped.
//! 6. If none verifies: recovery mode. The bootloader never jumps to an image it did not verify.
//!
//! The only flash write on this path is one 32-byte word (selected). There is no erase.
//!
//! | committed (proven) | selected | confirmed | state | boot decision |
//! |---|---|---|---|---|
//! | no, or not proven | – | – | empty, downloading, commit cut | skip |
//! | yes | unset | unset | new image | verify; write selected; boot (trial) |
//! | yes | set or indeterminate | unset or indeterminate | failed trial (or select cut) | skip (revert) |
//! | yes | any | set | confirmed | verify; boot |

use embedded_storage::nor_flash::NorFlash;
use fut_image::{Expect, Header, ImageVersion, Reject, SignatureCheck, TrustedKey, Verified};

use crate::flash::{EccRead, SlotSource, check_geometry, program};
use crate::journal::Journal;
use crate::layout::{Layout, SlotId};
use crate::trailer::{Flag, Trailer};

/// What became of one slot during the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotVerdict {
    /// No proven commit: empty, being downloaded, or the commit was cut.
    NotCommitted,
    /// Selected but never confirmed: its trial failed.
    TrialFailed,
    /// Committed, but the image is invalid.
    Invalid(Reject),
    /// Valid, but a higher version booted (not fully verified this boot).
    NotChosen(ImageVersion),
    /// Verified, but writing its selected word failed.
    SelectFailed,
    /// Booted.
    Booted,
}

/// The chosen image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    /// Its slot.
    pub slot: SlotId,
    /// The verified image.
    pub image: Verified,
    /// Where to jump: its vector table.
    pub vector_table: u32,
    /// This is its trial boot (selected was written just now).
    pub trial: bool,
}

/// Why the bootloader stays in recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryReason {
    /// No slot holds a valid, committed image that has not failed its trial.
    NoValidImage,
    /// The flash driver's word or sector size does not match the layout.
    Geometry,
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The image to boot, or `None`: stay in recovery mode.
    pub chosen: Option<Chosen>,
    /// Why recovery, when `chosen` is `None`.
    pub recovery: Option<RecoveryReason>,
    /// Per slot (A, B).
    pub slots: [SlotVerdict; 2],
    /// The stored minimum security counter this decision enforced.
    pub min_security_counter: u32,
    /// Of which: the journal's.
    pub journal_minimum: u32,
    /// The trailers as read.
    pub trailers: [Trailer; 2],
}

/// What a slot must satisfy.
pub fn expect(layout: &Layout, slot: SlotId, min_security_counter: u32) -> Expect {
    Expect {
        load_addr: layout.slot_address(slot),
        capacity: layout.image_capacity(slot),
        header_align: layout.header_size,
        min_security_counter,
    }
}

/// Read and check the header of the image in `slot` (load address, sizes, alignment): cheap,
/// no hash. The trailer is not considered.
pub fn slot_header<F: NorFlash>(flash: &mut F, layout: &Layout, slot: SlotId) -> Result<Header, Reject> {
    let e = expect(layout, slot, 0);
    fut_image::check_header(&mut SlotSource::new(flash, layout.slot(slot).offset, e.capacity), &e)
}

/// Verify the image in `slot` (trailer not considered).
pub fn verify_slot<F: NorFlash, C: SignatureCheck>(
    flash: &mut F,
    layout: &Layout,
    slot: SlotId,
    keys: &[TrustedKey],
    sig: &mut C,
    min_security_counter: u32,
) -> Result<Verified, Reject> {
    let e = expect(layout, slot, min_security_counter);
    let r = layout.slot(slot);
    fut_image::verify(&mut SlotSource::new(flash, r.offset, e.capacity), &e, keys, sig)
}

/// The stored minimum security counter and what it rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredMinimum {
    /// The enforced minimum: the journal's, raised to every floor.
    pub minimum: u32,
    /// The journal as read.
    pub journal: Journal,
    /// Per slot: the image's verification (any counter), for settled slots whose claimed
    /// counter is above the journal's (the others cannot raise the minimum and are not
    /// verified here).
    pub settled: [Option<Result<Verified, Reject>>; 2],
}

/// The stored minimum given trailers already read: the journal's minimum, raised to the counter
/// of every settled slot (commit and confirmation proven) whose image verifies.
pub fn stored_minimum_with<F: NorFlash + EccRead, C: SignatureCheck>(
    flash: &mut F,
    layout: &Layout,
    keys: &[TrustedKey],
    sig: &mut C,
    trailers: &[Trailer; 2],
) -> StoredMinimum {
    let journal = Journal::read(flash, layout);
    let mut m = StoredMinimum { minimum: journal.minimum, journal, settled: [None, None] };
    for slot in SlotId::ALL {
        if !trailers[slot.index()].is_settled() {
            continue;
        }
        // A counter the image does not even claim above what is stored cannot raise the
        // minimum: skip the hash and signature (the usual case: the journal is up to date).
        let e = expect(layout, slot, 0);
        let claimed =
            fut_image::claimed_security_counter(&mut SlotSource::new(flash, layout.slot(slot).offset, e.capacity), &e);
        if claimed.is_ok_and(|c| c <= m.minimum) || claimed.is_err() {
            continue;
        }
        let v = verify_slot(flash, layout, slot, keys, sig, 0);
        if let Ok(v) = v
            && !mutant!(NoCounterFloor)
        {
            m.minimum = m.minimum.max(v.security_counter);
        }
        m.settled[slot.index()] = Some(v);
    }
    m
}

/// The stored minimum security counter (reads both trailers).
pub fn stored_minimum<F: NorFlash + EccRead, C: SignatureCheck>(
    flash: &mut F,
    layout: &Layout,
    keys: &[TrustedKey],
    sig: &mut C,
) -> StoredMinimum {
    let t = [Trailer::read(flash, layout, SlotId::A), Trailer::read(flash, layout, SlotId::B)];
    stored_minimum_with(flash, layout, keys, sig, &t)
}

/// Decide what to boot, writing the selected word of a first boot.
pub fn decide<F: NorFlash + EccRead, C: SignatureCheck>(
    flash: &mut F,
    layout: &Layout,
    keys: &[TrustedKey],
    sig: &mut C,
) -> Decision {
    let trailers = [Trailer::read(flash, layout, SlotId::A), Trailer::read(flash, layout, SlotId::B)];
    let mut d = Decision {
        chosen: None,
        recovery: Some(RecoveryReason::NoValidImage),
        slots: [SlotVerdict::NotCommitted; 2],
        min_security_counter: 0,
        journal_minimum: 0,
        trailers,
    };
    if !check_geometry(flash, layout) {
        d.recovery = Some(RecoveryReason::Geometry);
        return d;
    }
    let stored = stored_minimum_with(flash, layout, keys, sig, &trailers);
    d.journal_minimum = stored.journal.minimum;
    d.min_security_counter = if mutant!(NoAntiRollbackAtBoot) { 0 } else { stored.minimum };
    // Candidates with their header versions.
    let mut cands: [Option<(SlotId, ImageVersion)>; 2] = [None, None];
    for slot in SlotId::ALL {
        let t = &trailers[slot.index()];
        if !t.is_committed() {
            continue;
        }
        if t.trial_failed() {
            d.slots[slot.index()] = SlotVerdict::TrialFailed;
            continue;
        }
        match slot_header(flash, layout, slot) {
            Ok(h) => cands[slot.index()] = Some((slot, h.version)),
            Err(rej) => d.slots[slot.index()] = SlotVerdict::Invalid(rej),
        }
    }
    // Highest version first; ties go to A.
    if let [Some(a), Some(b)] = cands
        && b.1.boot_cmp(&a.1).is_gt()
    {
        cands = [Some(b), Some(a)];
    }
    for (slot, version) in cands.into_iter().flatten() {
        if d.chosen.is_some() {
            d.slots[slot.index()] = SlotVerdict::NotChosen(version);
            continue;
        }
        // A settled slot was verified for the floor already: only its counter is left to check.
        let v = match stored.settled[slot.index()] {
            Some(Ok(v)) if v.security_counter < d.min_security_counter => {
                Err(Reject::Rollback { image: v.security_counter, minimum: d.min_security_counter })
            }
            Some(r) => r,
            None => verify_slot(flash, layout, slot, keys, sig, d.min_security_counter),
        };
        match v {
            Err(rej) => d.slots[slot.index()] = SlotVerdict::Invalid(rej),
            Ok(image) => {
                let t = &trailers[slot.index()];
                let trial = !t.is_selected();
                if trial
                    && !mutant!(NoSelectWrite)
                    && program(flash, layout, Flag::Selected.offset(layout, slot), &Flag::Selected.pattern()).is_err()
                {
                    d.slots[slot.index()] = SlotVerdict::SelectFailed;
                    continue;
                }
                d.slots[slot.index()] = SlotVerdict::Booted;
                d.chosen = Some(Chosen { slot, image, vector_table: image.vector_table(), trial });
                d.recovery = None;
            }
        }
    }
    d
}
