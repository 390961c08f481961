//! The boot decision (direct-XIP A/B with trial boot and automatic revert).
//!
//! 1. Read the stored minimum security counter from the journal.
//! 2. A slot is a *candidate* when its trailer says committed and it is not a failed trial
//!    (selected but not confirmed), and its header names this slot as its load address.
//! 3. Candidates are tried highest version first (ties: slot A): the full check is header,
//!    sizes, SHA-256, key hash, Ed25519 signature and security counter ≥ the stored minimum.
//! 4. The first that verifies boots. If it was not yet selected, the selected word is written
//!    first (its trial boot); if that write fails, the slot is skipped.
//! 5. If none verifies: recovery mode. The bootloader never jumps to an image it did not verify.
//!
//! The only flash write on this path is one 32-byte word (selected). There is no erase.
//!
//! | committed | selected | confirmed | state | boot decision |
//! |---|---|---|---|---|
//! | unset | – | – | empty or downloading | skip |
//! | set | unset | unset | new image | verify; write selected; boot (trial) |
//! | set | set | unset | failed trial | skip (revert) |
//! | set | set | set | confirmed | verify; boot |
//! | indeterminate | – | – | commit torn | skip |
//! | set | indeterminate | unset | select torn | skip (counts as a failed trial) |
//! | set | set | indeterminate | confirm torn | skip (revert) |

use embedded_storage::nor_flash::NorFlash;
use fut_image::{Expect, Header, ImageVersion, Reject, SignatureCheck, TrustedKey, Verified};

use crate::flash::{SlotSource, check_geometry, program};
use crate::journal::Journal;
use crate::layout::{Layout, SlotId};
use crate::trailer::{Flag, Trailer};

/// What became of one slot during the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotVerdict {
    /// No commit mark: empty, being downloaded, or the commit was torn.
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
    /// The stored minimum security counter.
    pub min_security_counter: u32,
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

/// Decide what to boot, writing the selected word of a first boot.
pub fn decide<F: NorFlash, C: SignatureCheck>(
    flash: &mut F,
    layout: &Layout,
    keys: &[TrustedKey],
    sig: &mut C,
) -> Decision {
    let mut d = Decision {
        chosen: None,
        recovery: Some(RecoveryReason::NoValidImage),
        slots: [SlotVerdict::NotCommitted; 2],
        min_security_counter: 0,
    };
    if !check_geometry(flash, layout) {
        d.recovery = Some(RecoveryReason::Geometry);
        return d;
    }
    d.min_security_counter = Journal::read(flash, layout).minimum;
    // Candidates with their header versions.
    let mut cands: [Option<(SlotId, ImageVersion, Trailer)>; 2] = [None, None];
    for slot in SlotId::ALL {
        let t = Trailer::read(flash, layout, slot);
        if !t.is_committed() {
            continue;
        }
        if t.trial_failed() {
            d.slots[slot.index()] = SlotVerdict::TrialFailed;
            continue;
        }
        match slot_header(flash, layout, slot) {
            Ok(h) => cands[slot.index()] = Some((slot, h.version, t)),
            Err(rej) => d.slots[slot.index()] = SlotVerdict::Invalid(rej),
        }
    }
    // Highest version first; ties go to A.
    if let [Some(a), Some(b)] = cands
        && b.1.boot_cmp(&a.1).is_gt()
    {
        cands = [Some(b), Some(a)];
    }
    for (slot, version, t) in cands.into_iter().flatten() {
        if d.chosen.is_some() {
            d.slots[slot.index()] = SlotVerdict::NotChosen(version);
            continue;
        }
        match verify_slot(flash, layout, slot, keys, sig, d.min_security_counter) {
            Err(rej) => d.slots[slot.index()] = SlotVerdict::Invalid(rej),
            Ok(image) => {
                let trial = !t.is_selected();
                #[cfg(feature = "sim")]
                let skip_write = crate::sim::mutant::on(crate::sim::mutant::Mutant::NoSelectWrite);
                #[cfg(not(feature = "sim"))]
                let skip_write = false;
                if trial
                    && !skip_write
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
