//! The updater (used by the application and by the bootloader's recovery mode) and the
//! application's confirmation.
//!
//! A download goes to the slot that is not running:
//! 1. [`Download::begin`] refuses to start unless the running image's commit and confirmation
//!    are proven (until then the other slot holds its fallback). It erases nothing yet.
//! 2. [`Download::write`] takes the image in order, in chunks of any size, and programs whole
//!    32-byte words (all-0xFF words are left erased). The header is checked as soon as it
//!    arrives: a build linked for the other slot is refused before anything is erased or
//!    written. The target slot is erased as the image needs it, so a caller that keeps
//!    receiving during an erase overlaps the two: before the first word, the header sector
//!    and then the trailer sector (an old trailer must not outlive the new image's first word:
//!    it would commit or confirm it unverified; see [`crate::flash::erase_region`] for why the
//!    header goes first), then each sector in between as the image reaches it.
//! 3. [`Download::finish`] verifies the image in flash exactly as the bootloader will (hash,
//!    signature, load address, security counter), refuses an image that would never boot
//!    because the other slot holds a higher or equal version, and only then writes the
//!    committed word and its seal: the commit point.
//!
//! [`confirm`] is the application's "I am good": it writes a confirmed word of its own slot and
//! that word's seal, and only once a read shows both does it raise the stored security counter
//! to the image's. It is idempotent; call it on every boot after the self-test.

use embedded_storage::nor_flash::NorFlash;
use fut_image::{ImageVersion, Reject, SignatureCheck, TrustedKey, Verified};

use crate::boot::{expect, slot_header, stored_minimum, stored_minimum_with, verify_slot};
use crate::flash::{EccRead, FlashError, check_geometry, erase_region, program};
use crate::journal::{Journal, JournalError};
use crate::layout::{Layout, SlotId};
use crate::trailer::{Flag, PAIRS, Trailer, WORD};

/// Why an update step failed. Nothing was committed; the running image is untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError<E> {
    /// Flash failure.
    Flash(FlashError<E>),
    /// The target is the running slot.
    TargetIsRunning(SlotId),
    /// The running image's confirmation is not proven: the other slot holds its fallback.
    RunningUnconfirmed(SlotId),
    /// The image is invalid for the target slot.
    Rejected(Reject),
    /// More data than the slot holds.
    Oversize {
        /// Bytes the image may occupy.
        capacity: u32,
    },
    /// The other slot holds a version at least as high: this image would never boot.
    NotNewer {
        /// The other slot's version.
        other: ImageVersion,
        /// This image's version.
        image: ImageVersion,
    },
}

impl<E: core::fmt::Debug> core::fmt::Display for UpdateError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UpdateError::Flash(e) => write!(f, "{e}"),
            UpdateError::TargetIsRunning(s) => write!(f, "slot {s} is running: update the other slot"),
            UpdateError::RunningUnconfirmed(s) => write!(
                f,
                "the running image in slot {s} is not confirmed (or its confirmation was cut and is not proven); \
                 confirm it before updating, because the other slot holds its fallback"
            ),
            UpdateError::Rejected(r) => write!(f, "image rejected: {r}"),
            UpdateError::Oversize { capacity } => write!(f, "image exceeds the slot's {capacity} bytes"),
            UpdateError::NotNewer { other, image } => write!(
                f,
                "image version {image} is not newer than {other} in the other slot, so it would never boot; \
                 bump the version"
            ),
        }
    }
}

/// A download in progress.
#[derive(Debug)]
pub struct Download {
    layout: Layout,
    slot: SlotId,
    received: u32,
    word: [u8; WORD],
    fill: usize,
    /// Offset in the slot up to which its sectors are erased (whole sectors, from the first;
    /// the trailer sector apart).
    erased: u32,
    /// The trailer sector is erased.
    trailer: bool,
}

impl Download {
    /// Start a download into `target`. `running` is the slot the caller runs from (`None` in
    /// the bootloader's recovery mode). The target slot is erased as the download reaches
    /// each of its sectors, and entirely by [`Download::finish`].
    pub fn begin<F: NorFlash + EccRead>(
        flash: &mut F,
        layout: &Layout,
        target: SlotId,
        running: Option<SlotId>,
    ) -> Result<Download, UpdateError<F::Error>> {
        if !check_geometry(flash, layout) {
            return Err(UpdateError::Flash(FlashError::Geometry));
        }
        if let Some(r) = running {
            if r == target {
                return Err(UpdateError::TargetIsRunning(r));
            }
            let t = Trailer::read(flash, layout, r);
            if !t.is_settled() && !mutant!(DownloadWhileUnconfirmed) {
                // Confirmed, but the proof reads missing (a cut seal, or one that reads
                // differently from read to read): the application's confirmation is a fact, so
                // seal it again with a fresh pair before destroying the fallback.
                if !(t.is_committed() && t.is_confirmed()) {
                    return Err(UpdateError::RunningUnconfirmed(r));
                }
                match seal_confirmation(flash, layout, r) {
                    Ok(_) => {}
                    Err(ConfirmError::Flash(e)) => return Err(UpdateError::Flash(e)),
                    Err(_) => return Err(UpdateError::RunningUnconfirmed(r)),
                }
            }
        }
        Ok(Download {
            layout: *layout,
            slot: target,
            received: 0,
            word: [0xFF; WORD],
            fill: 0,
            erased: 0,
            trailer: false,
        })
    }

    /// The target slot.
    pub fn slot(&self) -> SlotId {
        self.slot
    }

    /// Bytes received so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Erase the next sector the slot needs, in the order header sector, trailer sector (so no
    /// trailer of an old image outlives the new image's first word: it would commit it, or
    /// confirm it, unverified), then the sectors in between, first to last. Whether the whole
    /// slot is erased now.
    pub fn erase_next<F: NorFlash + EccRead>(&mut self, flash: &mut F) -> Result<bool, UpdateError<F::Error>> {
        let slot = self.layout.slot(self.slot);
        let sector = self.layout.sector_size;
        let region = |at: u32| crate::layout::Region { offset: slot.offset + at, size: sector };
        let last = slot.size - sector;
        let mut erase = |at: u32| erase_region(flash, &self.layout, region(at)).map_err(UpdateError::Flash);
        if self.erased == 0 {
            if mutant!(TrailerSectorErasedFirst) && last > 0 {
                // The old order: the trailer sector before the header's.
                erase(last)?;
            }
            erase(0)?;
            self.erased = sector;
            self.trailer = last == 0;
        } else if !self.trailer {
            erase(last)?;
            self.trailer = true;
        } else if self.erased < last {
            erase(self.erased)?;
            self.erased += sector;
        }
        Ok(self.trailer && self.erased >= last)
    }

    /// Erase what the slot needs before slot offset `upto - 1` is written.
    fn erase_upto<F: NorFlash + EccRead>(&mut self, flash: &mut F, upto: u32) -> Result<(), UpdateError<F::Error>> {
        let last = self.layout.slot(self.slot).size - self.layout.sector_size;
        while !(self.trailer && (self.erased >= upto || self.erased >= last)) {
            self.erase_next(flash)?;
        }
        Ok(())
    }

    fn flush_word<F: NorFlash + EccRead>(&mut self, flash: &mut F) -> Result<(), UpdateError<F::Error>> {
        let in_slot = self.received - self.fill as u32;
        let at = self.layout.slot(self.slot).offset + in_slot;
        if self.received as usize == self.fill {
            // The first word is the header's start: refuse a wrong build before erasing or
            // writing anything.
            let e = expect(&self.layout, self.slot, 0);
            let h = fut_image::check_header(&mut &self.word[..], &e);
            match h {
                Ok(_) | Err(Reject::Truncated { .. }) => {}
                Err(r) => return Err(UpdateError::Rejected(r)),
            }
        }
        // The sector this word is in is erased before it is written (or left erased: an
        // all-0xFF word must read erased too, not as the old image's data).
        self.erase_upto(flash, in_slot + WORD as u32)?;
        if self.word.iter().any(|b| *b != 0xFF) {
            program(flash, &self.layout, at, &self.word).map_err(UpdateError::Flash)?;
        }
        self.word = [0xFF; WORD];
        self.fill = 0;
        Ok(())
    }

    /// Append `data`.
    pub fn write<F: NorFlash + EccRead>(
        &mut self,
        flash: &mut F,
        mut data: &[u8],
    ) -> Result<(), UpdateError<F::Error>> {
        let capacity = self.layout.image_capacity(self.slot);
        if self.received as u64 + data.len() as u64 > capacity as u64 {
            return Err(UpdateError::Oversize { capacity });
        }
        while !data.is_empty() {
            let n = (WORD - self.fill).min(data.len());
            self.word[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            self.received += n as u32;
            data = &data[n..];
            if self.fill == WORD {
                self.flush_word(flash)?;
            }
        }
        Ok(())
    }

    /// Verify what was written and commit it.
    pub fn finish<F: NorFlash + EccRead, C: SignatureCheck>(
        mut self,
        flash: &mut F,
        keys: &[TrustedKey],
        sig: &mut C,
    ) -> Result<Verified, UpdateError<F::Error>> {
        if self.fill > 0 {
            self.flush_word(flash)?;
        }
        let l = self.layout;
        // The sectors the image did not reach: nothing of an old image survives the commit.
        self.erase_upto(flash, l.slot(self.slot).size)?;
        let min = stored_minimum(flash, &l, keys, sig).minimum;
        let image = verify_slot(flash, &l, self.slot, keys, sig, min).map_err(UpdateError::Rejected)?;
        // The other slot: a valid, committed, untried-or-confirmed image of a higher or equal
        // version would win every boot.
        let other = self.slot.other();
        if !mutant!(NoNotNewerCheck)
            && Trailer::read(flash, &l, other).is_candidate()
            && let Ok(h) = slot_header(flash, &l, other)
            && h.version.boot_cmp(&image.version()).is_ge()
            && verify_slot(flash, &l, other, keys, sig, min).is_ok()
        {
            return Err(UpdateError::NotNewer { other: h.version, image: image.version() });
        }
        for f in [Flag::Committed, Flag::CommitSeal] {
            program(flash, &l, f.offset(&l, self.slot), &f.pattern()).map_err(UpdateError::Flash)?;
        }
        Ok(image)
    }
}

/// Why a confirmation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmError<E> {
    /// The slot's commit is not proven (the application is not running from a slot image).
    NotCommitted(SlotId),
    /// The image in the slot does not verify.
    Invalid(Reject),
    /// Every confirmation pair was used up by earlier cuts; the image keeps booting while its
    /// confirmed words read set, and an update through the bootloader's recovery mode renews
    /// the slot.
    Exhausted(SlotId),
    /// The words were written but do not read back as a proven confirmation.
    NotProven(SlotId),
    /// Flash failure.
    Flash(FlashError<E>),
    /// The security-counter journal could not be raised.
    Journal(JournalError<E>),
}

impl<E: core::fmt::Debug> core::fmt::Display for ConfirmError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfirmError::NotCommitted(s) => write!(f, "slot {s} holds no committed image to confirm"),
            ConfirmError::Invalid(r) => write!(f, "the image to confirm is invalid: {r}"),
            ConfirmError::Exhausted(s) => write!(
                f,
                "slot {s}'s confirmation words were all used up by interrupted confirmations; \
                 update the image again through the bootloader's recovery mode"
            ),
            ConfirmError::NotProven(s) => write!(
                f,
                "slot {s}'s confirmation was written but does not read back as proven; it is retried at the next boot"
            ),
            ConfirmError::Flash(e) => write!(f, "{e}"),
            ConfirmError::Journal(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl<E: core::fmt::Debug> std::error::Error for UpdateError<E> {}
#[cfg(feature = "std")]
impl<E: core::fmt::Debug> std::error::Error for ConfirmError<E> {}

/// The result of a confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    /// A confirmation pair was written now (false: a proven one was there already).
    pub newly: bool,
    /// The stored minimum security counter afterwards, as sealed in the journal.
    pub min_security_counter: u32,
}

/// Write confirmation pairs of `slot` until a read shows one proven: returns whether a pair
/// was written. A pair whose words refuse a program (they read non-erased) is skipped, and not
/// tried again in this call.
fn seal_confirmation<F: NorFlash + EccRead>(
    flash: &mut F,
    layout: &Layout,
    slot: SlotId,
) -> Result<bool, ConfirmError<F::Error>> {
    let mut tried = [false; PAIRS];
    let mut wrote = false;
    for _ in 0..=PAIRS {
        let t = Trailer::read(flash, layout, slot);
        if t.confirm_proven() {
            return Ok(wrote);
        }
        let Some(i) = (0..PAIRS).find(|&i| !tried[i] && t.next_confirm_pair_from(i) == Some(i as u8)) else {
            return Err(ConfirmError::Exhausted(slot));
        };
        tried[i] = true;
        let pair = [Flag::Confirmed(i as u8), Flag::ConfirmSeal(i as u8)];
        wrote = true;
        for f in pair {
            match program(flash, layout, f.offset(layout, slot), &f.pattern()) {
                Ok(()) => {}
                Err(FlashError::NotErased { .. }) => break,
                Err(e) => return Err(ConfirmError::Flash(e)),
            }
        }
    }
    Err(ConfirmError::NotProven(slot))
}

/// Confirm the image in `slot` (the caller's own) and raise the stored security counter.
///
/// 1. The slot's commit must be proven and its image must verify.
/// 2. Unless a proven confirmation is there already: write the next free confirmed word, then
///    its seal, and read both back.
/// 3. Only then raise the journal to the image's counter (this image is the floor that lets a
///    full journal be compacted).
pub fn confirm<F: NorFlash + EccRead, C: SignatureCheck>(
    flash: &mut F,
    layout: &Layout,
    slot: SlotId,
    keys: &[TrustedKey],
    sig: &mut C,
) -> Result<Confirmed, ConfirmError<F::Error>> {
    let trailers = [Trailer::read(flash, layout, SlotId::A), Trailer::read(flash, layout, SlotId::B)];
    let t = trailers[slot.index()];
    if !t.is_committed() {
        return Err(ConfirmError::NotCommitted(slot));
    }
    let min = stored_minimum_with(flash, layout, keys, sig, &trailers).minimum;
    let image = verify_slot(flash, layout, slot, keys, sig, min).map_err(ConfirmError::Invalid)?;
    let newly = seal_confirmation(flash, layout, slot)?;
    let floor = image.security_counter;
    let j = Journal::raise(flash, layout, image.security_counter, Some(floor)).map_err(ConfirmError::Journal)?;
    Ok(Confirmed { newly, min_security_counter: j.durable })
}
