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
//! # Guarded writes
//! Every program and erase goes through [`program`] and [`erase_region`], which refuse
//! anything outside the slots and the journal: the update path cannot touch the bootloader.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use fut_image::{ReadFault, Source};

use crate::layout::{Layout, Region};

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

/// Program whole words at `offset` (inside a slot or the journal only).
pub fn program<F: NorFlash>(
    flash: &mut F,
    layout: &Layout,
    offset: u32,
    data: &[u8],
) -> Result<(), FlashError<F::Error>> {
    let len = data.len() as u32;
    if !writable(layout, offset, len) {
        return Err(FlashError::Protected { offset, len });
    }
    flash.write(offset, data).map_err(FlashError::Flash)
}

/// Erase the sectors of `region` (inside the slots or the journal only), last sector first.
///
/// Last first, so a slot's trailer (the commit mark) is gone before anything else: an erase
/// cut anywhere leaves an uncommitted slot.
pub fn erase_region<F: NorFlash>(flash: &mut F, layout: &Layout, region: Region) -> Result<(), FlashError<F::Error>> {
    if !writable(layout, region.offset, region.size) {
        return Err(FlashError::Protected { offset: region.offset, len: region.size });
    }
    for s in layout.sectors(region).rev() {
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
