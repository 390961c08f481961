//! The one flash layout definition shared by the bootloader, the application and the host tools.
//!
//! STM32H723ZG: 1 MiB single-bank flash at `0x0800_0000`, eight 128 KiB sectors, 32-byte
//! (256-bit) flash words with ECC, each writable once per erase.
//!
//! | sectors | address | size | role |
//! |---|---|---|---|
//! | 0 | `0x0800_0000` | 128 KiB | bootloader: never erased or written by the update path |
//! | 1–3 | `0x0802_0000` | 384 KiB | slot A: image linked for `0x0802_0400` (header at the base) |
//! | 4–6 | `0x0808_0000` | 384 KiB | slot B: image linked for `0x0808_0400` |
//! | 7 | `0x080E_0000` | 128 KiB | security-counter journal (append-only 32-byte records) |
//!
//! Each slot ends with its trailer: [`TRAILER_LEN`] bytes holding the committed word and its
//! seal, the selected word, and the confirmation pairs (see [`crate::trailer`]). An image (header, payload and TLVs)
//! may use the rest of the slot, [`Layout::image_capacity`] bytes.

/// Bytes reserved at the end of each slot for its trailer: sixteen 32-byte words (committed,
/// its seal, selected, a spare, and six confirmation pairs; see [`crate::trailer`]).
pub const TRAILER_LEN: u32 = 16 * 32;

/// A slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlotId {
    /// Slot A (sectors 1–3 on the H723).
    A,
    /// Slot B (sectors 4–6 on the H723).
    B,
}

impl SlotId {
    /// Both slots.
    pub const ALL: [SlotId; 2] = [SlotId::A, SlotId::B];

    /// The other slot.
    pub fn other(self) -> SlotId {
        match self {
            SlotId::A => SlotId::B,
            SlotId::B => SlotId::A,
        }
    }

    /// 0 for A, 1 for B.
    pub fn index(self) -> usize {
        self as usize
    }

    /// "A" or "B".
    pub fn name(self) -> &'static str {
        match self {
            SlotId::A => "A",
            SlotId::B => "B",
        }
    }
}

impl core::fmt::Display for SlotId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A flash region, as an offset from the flash base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Offset from the flash base.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

impl Region {
    /// One past the end.
    pub const fn end(&self) -> u32 {
        self.offset + self.size
    }
    /// Whether `[offset, offset+len)` lies inside.
    pub const fn contains(&self, offset: u32, len: u32) -> bool {
        offset >= self.offset && (offset as u64 + len as u64) <= self.end() as u64
    }
    /// Whether it overlaps `other`.
    pub const fn overlaps(&self, other: &Region) -> bool {
        self.offset < other.end() && other.offset < self.end()
    }
}

/// A flash layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Board name.
    pub name: &'static str,
    /// Flash base address.
    pub flash_base: u32,
    /// Flash size.
    pub flash_size: u32,
    /// Erase unit (every sector the same size).
    pub sector_size: u32,
    /// Program unit (flash word).
    pub word: u32,
    /// The bootloader region.
    pub bootloader: Region,
    /// Slots A and B.
    pub slots: [Region; 2],
    /// The security-counter journal.
    pub journal: Region,
    /// Image header size: the vector table follows it and must be aligned to it.
    pub header_size: u32,
}

/// The STM32H723ZG layout.
pub const H723: Layout = Layout {
    name: "stm32h723zg",
    flash_base: 0x0800_0000,
    flash_size: 1024 * 1024,
    sector_size: 128 * 1024,
    word: 32,
    bootloader: Region { offset: 0, size: 128 * 1024 },
    slots: [Region { offset: 0x2_0000, size: 384 * 1024 }, Region { offset: 0x8_0000, size: 384 * 1024 }],
    journal: Region { offset: 0xE_0000, size: 128 * 1024 },
    header_size: 0x400,
};

/// A layout that does not hold together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// A region is not whole sectors.
    NotSectorAligned(&'static str),
    /// Two regions overlap.
    Overlap(&'static str, &'static str),
    /// A region runs past the end of flash.
    OutsideFlash(&'static str),
    /// The header size is not a multiple of the flash word.
    BadHeaderSize,
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LayoutError::NotSectorAligned(r) => write!(f, "{r} is not whole sectors"),
            LayoutError::Overlap(a, b) => write!(f, "{a} overlaps {b}"),
            LayoutError::OutsideFlash(r) => write!(f, "{r} runs past the end of flash"),
            LayoutError::BadHeaderSize => write!(f, "the header size is not a multiple of the flash word"),
        }
    }
}

impl Layout {
    /// The slot's region.
    pub fn slot(&self, s: SlotId) -> Region {
        self.slots[s.index()]
    }

    /// Absolute address of the slot base (where the image header is, and its `load_addr`).
    pub fn slot_address(&self, s: SlotId) -> u32 {
        self.flash_base + self.slot(s).offset
    }

    /// Absolute address of the slot's vector table (the application links for this).
    pub fn vector_table(&self, s: SlotId) -> u32 {
        self.slot_address(s) + self.header_size
    }

    /// Bytes an image may occupy in a slot (header, payload and TLVs).
    pub fn image_capacity(&self, s: SlotId) -> u32 {
        self.slot(s).size - TRAILER_LEN
    }

    /// Offset of the slot's trailer.
    pub fn trailer_offset(&self, s: SlotId) -> u32 {
        self.slot(s).end() - TRAILER_LEN
    }

    /// The slot whose base is `addr` (an image's load address).
    pub fn slot_at(&self, addr: u32) -> Option<SlotId> {
        SlotId::ALL.into_iter().find(|s| self.slot_address(*s) == addr)
    }

    /// The slot containing absolute address `addr`.
    pub fn slot_containing(&self, addr: u32) -> Option<SlotId> {
        let off = addr.checked_sub(self.flash_base)?;
        SlotId::ALL.into_iter().find(|s| self.slot(*s).contains(off, 1))
    }

    /// The sector indices of `r`.
    pub fn sectors(&self, r: Region) -> core::ops::Range<u32> {
        r.offset / self.sector_size..r.end() / self.sector_size
    }

    /// Check the layout: whole sectors, no overlaps, inside flash.
    pub const fn validate(&self) -> Result<(), LayoutError> {
        let regions = [
            ("the bootloader", self.bootloader),
            ("slot A", self.slots[0]),
            ("slot B", self.slots[1]),
            ("the journal", self.journal),
        ];
        let mut i = 0;
        while i < regions.len() {
            let (name, r) = regions[i];
            if !r.offset.is_multiple_of(self.sector_size) || !r.size.is_multiple_of(self.sector_size) || r.size == 0 {
                return Err(LayoutError::NotSectorAligned(name));
            }
            if r.end() > self.flash_size {
                return Err(LayoutError::OutsideFlash(name));
            }
            let mut j = i + 1;
            while j < regions.len() {
                if r.overlaps(&regions[j].1) {
                    return Err(LayoutError::Overlap(name, regions[j].0));
                }
                j += 1;
            }
            i += 1;
        }
        if !self.header_size.is_multiple_of(self.word) || self.header_size < 32 {
            return Err(LayoutError::BadHeaderSize);
        }
        Ok(())
    }

    /// The `MEMORY` block of a `memory.x` for code linked where `to` says. Firmware linker
    /// scripts must agree with this text (the firmware's build scripts generate theirs from it).
    #[cfg(feature = "std")]
    pub fn memory_x(&self, to: LinkFor) -> std::string::String {
        let (what, origin, len) = match to {
            LinkFor::Bootloader => ("the bootloader".into(), self.flash_base, self.bootloader.size),
            LinkFor::WholeFlash => {
                ("an application at the start of flash, with no bootloader".into(), self.flash_base, self.flash_size)
            }
            LinkFor::Slot(s) => (
                std::format!(
                    "slot {s}: after the {:#x}-byte image header; the slot trailer is excluded",
                    self.header_size
                ),
                self.vector_table(s),
                self.image_capacity(s) - self.header_size,
            ),
        };
        std::format!(
            "/* {} flash layout (boot-core::layout), {what} */\nMEMORY\n{{\n  FLASH : ORIGIN = {origin:#010X}, LENGTH = {len:#X}\n}}\n",
            self.name
        )
        .replace("0X", "0x")
    }
}

/// Where a firmware binary is linked (see [`Layout::memory_x`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFor {
    /// The bootloader region at the start of flash.
    Bootloader,
    /// An application that owns all of flash (no bootloader; the vector table at the flash base).
    WholeFlash,
    /// An application in a slot, after the image header, before the trailer.
    Slot(SlotId),
}

// The layout is checked at compile time.
const _: () = assert!(H723.validate().is_ok());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h723_layout_matches_the_design() {
        assert_eq!(H723.sectors(H723.bootloader), 0..1);
        assert_eq!(H723.sectors(H723.slot(SlotId::A)), 1..4);
        assert_eq!(H723.sectors(H723.slot(SlotId::B)), 4..7);
        assert_eq!(H723.sectors(H723.journal), 7..8);
        assert_eq!(H723.slot_address(SlotId::A), 0x0802_0000);
        assert_eq!(H723.slot_address(SlotId::B), 0x0808_0000);
        assert_eq!(H723.vector_table(SlotId::B), 0x0808_0400);
        assert_eq!(H723.image_capacity(SlotId::A), 384 * 1024 - 512);
        assert_eq!(H723.trailer_offset(SlotId::A), 0x7_FE00);
        assert_eq!(H723.slot_at(0x0808_0000), Some(SlotId::B));
        assert_eq!(H723.slot_at(0x0808_0400), None);
        assert_eq!(H723.slot_containing(0x0808_0400), Some(SlotId::B));
        assert_eq!(H723.slot_containing(0x0800_0400), None);
        assert_eq!(SlotId::A.other(), SlotId::B);
    }

    #[test]
    fn broken_layouts_are_named() {
        let mut l = H723;
        l.slots[1].offset = 0x6_0000;
        assert_eq!(l.validate(), Err(LayoutError::Overlap("slot A", "slot B")));
        let mut l = H723;
        l.journal.size = 0x1000;
        assert_eq!(l.validate(), Err(LayoutError::NotSectorAligned("the journal")));
        let mut l = H723;
        l.journal.offset = 0x10_0000;
        assert_eq!(l.validate(), Err(LayoutError::OutsideFlash("the journal")));
        let mut l = H723;
        l.header_size = 0x10;
        assert_eq!(l.validate(), Err(LayoutError::BadHeaderSize));
    }
}
