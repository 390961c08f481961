//! Flash access for the core: ECC-safe reads, and writes and erases that cannot reach the
//! bootloader.
//!
//! # ECC-safe reads
//! On the STM32H7 a read of a torn or twice-programmed flash word raises a double ECC error,
//! which is a precise bus fault. The [`NorFlash`] implementation the core is given must turn
//! that into an `Err` from `read` (on silicon: set `SCB.CCR.BFHFNMIGN` and mask faults around
//! the read, then check and clear `FLASH_SR.DBECCERR`, or read by DMA, which latches the flag
//! instead of faulting). The core treats every read error as "this is invalid": a torn image is
//! not a candidate, a torn trailer word has a defined meaning ([`crate::trailer`]), a torn
//! journal record is skipped. Nothing in the boot path panics on a read error.
//!
//! # Single-error-corrected reads
//! A word whose programming was interrupted can also read back as its intended value with
//! `FLASH_SR.SNECCERR` set (ECC corrected one bit), and that can change from one read to the
//! next. The core asks for that flag through [`EccRead::read_checked`]: a corrected read of
//! metadata (a trailer word, a journal seal) counts as indeterminate, never as proof. Image
//! bytes read with a corrected error are used as they are: the data is right, and the hash and
//! signature decide.
//!
//! # Guarded writes
//! Every program and erase goes through [`program`] and [`erase_region`], which refuse
//! anything outside the slots and the journal: the update path cannot touch the bootloader.
//! [`program`] reads every word first and refuses one that does not read erased: the core never
//! programs a word that has read non-erased.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use fut_image::{ReadFault, Source};

use crate::layout::{Layout, Region};

/// What a read found besides the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCheck {
    /// No ECC event.
    Clean,
    /// ECC corrected a single-bit error in at least one word read (`SNECCERR` on the H7): the
    /// data is the corrected value.
    Corrected,
}

/// A flash that reports single-error corrections (`SNECCERR`). A double error (`DBECCERR`)
/// is an `Err` from the read, as in [`ReadNorFlash::read`].
pub trait EccRead: ReadNorFlash {
    /// Read `bytes` at `offset` and report whether ECC corrected anything.
    fn read_checked(&mut self, offset: u32, bytes: &mut [u8]) -> Result<ReadCheck, Self::Error>;

    /// Whether `len` bytes at `offset` read as erased (all ones, no ECC event). The default
    /// reads them; a driver with a faster way (a hardware blank check, a model that knows)
    /// may override it, with the same answer.
    fn is_blank(&mut self, offset: u32, len: u32) -> Result<bool, Self::Error> {
        let mut buf = [0u8; 256];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(buf.len() as u32) as usize;
            if self.read_checked(offset + at, &mut buf[..n])? != ReadCheck::Clean
                || buf[..n].iter().fold(0xFF, |a, b| a & b) != 0xFF
            {
                return Ok(false);
            }
            at += n as u32;
        }
        Ok(true)
    }
}

/// One 32-byte metadata word as the core interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordRead {
    /// All ones, no ECC event.
    Erased,
    /// These bytes, no ECC event.
    Clean([u8; 32]),
    /// A double error, or a corrected single error: not to be trusted either way.
    Indeterminate,
}

impl WordRead {
    /// Not all-ones-and-clean: the word has been programmed (or disturbed) since its erase.
    pub fn is_erased(&self) -> bool {
        matches!(self, WordRead::Erased)
    }

    /// Exactly `pattern`, read cleanly.
    pub fn is(&self, pattern: &[u8; 32]) -> bool {
        matches!(self, WordRead::Clean(w) if w == pattern)
    }
}

/// Read the 32-byte word at `offset`.
pub fn read_word<F: EccRead>(flash: &mut F, offset: u32) -> WordRead {
    let mut w = [0u8; 32];
    match flash.read_checked(offset, &mut w) {
        Ok(ReadCheck::Clean) if w.iter().all(|b| *b == 0xFF) => WordRead::Erased,
        Ok(ReadCheck::Clean) => WordRead::Clean(w),
        Ok(ReadCheck::Corrected) | Err(_) => WordRead::Indeterminate,
    }
}

/// A flash operation the core refused or the flash failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError<E> {
    /// The flash driver failed (or, in the simulation, power was lost).
    Flash(E),
    /// The operation would touch the bootloader or another protected region.
    Protected {
        /// Offset.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// The driver's geometry does not match the layout.
    Geometry,
    /// A word to be programmed does not read erased (a torn earlier write, or a bug): it is
    /// never programmed again until its sector is erased.
    NotErased {
        /// Offset of the word.
        offset: u32,
    },
}

impl<E: core::fmt::Debug> core::fmt::Display for FlashError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FlashError::Flash(e) => write!(f, "flash driver error: {e:?}"),
            FlashError::Protected { offset, len } => write!(
                f,
                "refused to program or erase {len} bytes at offset {offset:#x}: outside the slots and the journal \
                 (the bootloader is never touched)"
            ),
            FlashError::NotErased { offset } => write!(
                f,
                "the flash word at offset {offset:#x} does not read erased, so it is not programmed again \
                 (an earlier write was interrupted); its sector must be erased first"
            ),
            FlashError::Geometry => {
                write!(
                    f,
                    "the flash driver's word or sector size does not match the layout: wrong driver for this chip"
                )
            }
        }
    }
}

/// Check that a driver's geometry matches `layout`.
pub fn check_geometry<F: NorFlash>(flash: &F, layout: &Layout) -> bool {
    F::WRITE_SIZE == layout.word as usize
        && F::ERASE_SIZE == layout.sector_size as usize
        && flash.capacity() >= layout.flash_size as usize
}

fn writable(layout: &Layout, offset: u32, len: u32) -> bool {
    let ok = |r: Region| r.contains(offset, len);
    !layout.bootloader.overlaps(&Region { offset, size: len })
        && (ok(layout.slots[0]) || ok(layout.slots[1]) || ok(layout.journal))
}

/// Program whole words at `offset` (inside a slot or the journal only). Each word is read
/// first and must read erased ([`FlashError::NotErased`] otherwise, with nothing written from
/// that word on).
pub fn program<F: NorFlash + EccRead>(
    flash: &mut F,
    layout: &Layout,
    offset: u32,
    data: &[u8],
) -> Result<(), FlashError<F::Error>> {
    let len = data.len() as u32;
    if !writable(layout, offset, len) || !data.len().is_multiple_of(32) {
        return Err(FlashError::Protected { offset, len });
    }
    for (i, w) in data.chunks(32).enumerate() {
        let at = offset + i as u32 * 32;
        if !mutant!(NoBlankCheck) && !read_word(flash, at).is_erased() {
            return Err(FlashError::NotErased { offset: at });
        }
        flash.write(at, w).map_err(FlashError::Flash)?;
    }
    Ok(())
}

/// Erase the sectors of `region` (inside the slots or the journal only), first sector first.
///
/// First sector first, so a slot's image header is gone before anything else, and its trailer
/// (in the last sector) goes last: a cut in the middle of an erase disturbs every programmed
/// word of that sector (they may read back as the old data, as erased, or as anything in
/// between, and differently at each read), and a disturbed trailer over an intact image could
/// bring an old commit back to life. With the header erased first, a disturbed trailer only
/// ever sits over an image that no longer verifies.
pub fn erase_region<F: NorFlash>(flash: &mut F, layout: &Layout, region: Region) -> Result<(), FlashError<F::Error>> {
    if !writable(layout, region.offset, region.size) {
        return Err(FlashError::Protected { offset: region.offset, len: region.size });
    }
    let trailer_first = mutant!(TrailerSectorErasedFirst);
    let sectors = layout.sectors(region);
    let n = sectors.len() as u32;
    for i in 0..n {
        let s = if trailer_first { sectors.end - 1 - i } else { sectors.start + i };
        let from = s * layout.sector_size;
        flash.erase(from, from + layout.sector_size).map_err(FlashError::Flash)?;
    }
    Ok(())
}

/// A slot seen as an image [`Source`] through an ECC-safe flash: read errors become
/// [`ReadFault::Unreadable`].
pub struct SlotSource<'a, F> {
    flash: &'a mut F,
    offset: u32,
    len: u32,
}

impl<'a, F: ReadNorFlash> SlotSource<'a, F> {
    /// The first `len` bytes of the region at `offset`.
    pub fn new(flash: &'a mut F, offset: u32, len: u32) -> Self {
        SlotSource { flash, offset, len }
    }
}

impl<F: ReadNorFlash> Source for SlotSource<'_, F> {
    fn len(&self) -> u32 {
        self.len
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ReadFault> {
        if offset as u64 + buf.len() as u64 > self.len as u64 {
            return Err(ReadFault::OutOfBounds);
        }
        self.flash.read(self.offset + offset, buf).map_err(|_| ReadFault::Unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{H723, SlotId};

    #[test]
    fn writes_outside_slots_and_journal_are_refused() {
        assert!(!writable(&H723, 0, 32), "bootloader");
        assert!(!writable(&H723, 0x1_FFE0, 64), "straddles bootloader and slot A");
        assert!(writable(&H723, 0x2_0000, 32));
        assert!(writable(&H723, H723.trailer_offset(SlotId::B), 32));
        assert!(writable(&H723, 0xE_0000, 32), "journal");
        assert!(!writable(&H723, 0x7_FFE0, 64), "straddles slot A and B");
        assert!(!writable(&H723, 0xF_FFE0, 64), "past the end");
    }
}
