//! Flashing an image through the ROM bootloader.
//!
//! 1. **Compare** (optional): each touched sector's image bytes are read back; a sector whose
//!    contents already match is skipped. Reading stops at the first difference.
//! 2. **Erase** each sector that differs, one Erase command per sector.
//! 3. **Write** in blocks of up to 256 bytes, aligned and padded (with the erased value) to the
//!    flash word, so no word is ever programmed twice.
//! 4. **Verify** (optional): every written byte is read back.
//!
//! On H7 a compare read that touches an ECC-inconsistent word (a write torn by an earlier
//! power cut) bus-faults the bootloader, which then goes silent. [`flash_via_rom`] recovers:
//! it re-enters the bootloader (BOOT0 high + NRST) and erases those sectors without comparing.

use std::collections::BTreeSet;

use bootproof_fixtures::{RomTransportKind, Sector};
use bootproof_rig::image::FirmwareImage;
use bootproof_rig::stm32rom::{EraseRequest, MAX_BLOCK};
use bootproof_rig::{Permissions, Rig, RigError};

use crate::rom::{RomClient, RomError};

/// Options of a flash.
#[derive(Debug, Clone)]
pub struct FlashOptions {
    /// Skip sectors whose contents already match.
    pub skip_unchanged: bool,
    /// Read every written byte back.
    pub verify: bool,
    /// Stop (successfully) after this many Write Memory commands, leaving the flash half
    /// written: for interrupted-transfer scenarios.
    pub stop_after_writes: Option<usize>,
}

impl Default for FlashOptions {
    fn default() -> Self {
        Self { skip_unchanged: true, verify: true, stop_after_writes: None }
    }
}

/// Progress of a flash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashEvent {
    /// Comparing sector `sector`.
    Compare {
        /// Sector index.
        sector: u32,
    },
    /// Sector `sector` already matches.
    Skip {
        /// Sector index.
        sector: u32,
    },
    /// Erasing sector `sector` (`n` of `of`).
    Erase {
        /// Sector index.
        sector: u32,
        /// Position.
        n: usize,
        /// Count.
        of: usize,
    },
    /// Bytes written so far.
    Write {
        /// Done.
        done: usize,
        /// Total.
        total: usize,
    },
    /// Bytes verified so far.
    Verify {
        /// Done.
        done: usize,
        /// Total.
        total: usize,
    },
}

/// What a flash did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlashReport {
    /// Sectors skipped because they matched.
    pub skipped: Vec<u32>,
    /// Sectors erased.
    pub erased: Vec<u32>,
    /// Write Memory commands sent.
    pub writes: usize,
    /// Bytes written (with padding).
    pub bytes: usize,
    /// Whether read-back verification ran and passed.
    pub verified: bool,
    /// Whether the flash stopped early on request.
    pub stopped_after: Option<usize>,
    /// Times the bootloader had to be re-entered after it stopped answering.
    pub recoveries: usize,
}

/// Why a flash failed.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    /// The image does not fit this board's flash.
    #[error(transparent)]
    Image(#[from] bootproof_rig::image::ImageError),
    /// The bootloader failed.
    #[error(transparent)]
    Rom(#[from] RomError),
    /// Read-back found different bytes.
    #[error(
        "verify failed at {address:#010x}: wrote {expected:#04x}, read {got:#04x}; the bootloader answered ACK, \
         which it also does for a write-protected sector (AN3155 §3.6, AN5405 §3.6): check the write protection \
         (option bytes), erase the sector and flash again"
    )]
    Verify {
        /// First differing address.
        address: u32,
        /// Written.
        expected: u8,
        /// Read.
        got: u8,
    },
    /// A sector still holds data after its erase was answered ACK.
    #[error(
        "sector {sector} did not erase: {address:#010x} reads {got:#04x} after the bootloader answered ACK; \
         it does so for a write-protected sector too (AN3155 §3.7, AN5405 §3.7: \"no error is returned\"): \
         remove the write protection (Write Unprotect, or the option bytes with STM32CubeProgrammer) and flash again"
    )]
    NotErased {
        /// The sector.
        sector: u32,
        /// The first address still written.
        address: u32,
        /// What it reads.
        got: u8,
    },
    /// The rig could not re-enter the bootloader.
    #[error("re-entering the ROM bootloader failed: {0}")]
    Rig(#[from] RigError),
}

/// One write block: flash-word aligned and padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Address.
    pub address: u32,
    /// Bytes (padded with the erased value).
    pub data: Vec<u8>,
}

/// The image cut into write blocks of at most 256 bytes, aligned and padded to `word`. Segments
/// that share a word are merged into it (a word is written once), and blocks break at gaps.
pub fn blocks(image: &FirmwareImage, word: u32, erased: u8) -> Vec<Block> {
    let step = (MAX_BLOCK - MAX_BLOCK % word as usize).max(word as usize);
    let mut out: Vec<Block> = Vec::new();
    for (address, data) in image.flash_words(word as usize, erased) {
        match out.last_mut() {
            Some(b) if b.address + b.data.len() as u32 == address && b.data.len() + data.len() <= step => {
                b.data.extend(data)
            }
            _ => out.push(Block { address, data }),
        }
    }
    out
}

/// The sectors an image touches.
pub fn touched_sectors(image: &FirmwareImage, sectors: &[Sector]) -> Vec<Sector> {
    sectors
        .iter()
        .filter(|s| {
            image.segments.iter().any(|seg| (seg.address as u64) < s.end() as u64 && seg.end() > s.start as u64)
        })
        .copied()
        .collect()
}

fn image_bytes_in(image: &FirmwareImage, s: &Sector) -> Vec<(u32, Vec<u8>)> {
    image
        .segments
        .iter()
        .filter_map(|seg| {
            let lo = seg.address.max(s.start);
            let hi = (seg.end() as u32).min(s.end());
            (lo < hi).then(|| (lo, seg.data[(lo - seg.address) as usize..(hi - seg.address) as usize].to_vec()))
        })
        .collect()
}

/// Flash `image` over an open ROM bootloader session.
pub async fn flash(
    rom: &mut RomClient<'_>,
    image: &FirmwareImage,
    opts: &FlashOptions,
    no_compare: &BTreeSet<u32>,
    progress: &mut (dyn FnMut(FlashEvent) + Send),
) -> Result<FlashReport, FlashError> {
    let board = rom.board().clone();
    image.check_within(board.flash.base, board.flash.end(), &format!("{} user flash", board.name))?;
    let sectors = touched_sectors(image, &board.flash.sector_list());
    let mut report = FlashReport::default();
    let mut to_erase = Vec::new();
    for s in &sectors {
        let mut same = opts.skip_unchanged && !no_compare.contains(&s.index);
        if same {
            progress(FlashEvent::Compare { sector: s.index });
            'cmp: for (addr, bytes) in image_bytes_in(image, s) {
                for (i, chunk) in bytes.chunks(MAX_BLOCK).enumerate() {
                    let a = addr + (i * MAX_BLOCK) as u32;
                    if rom.read_memory(a, chunk.len()).await? != chunk {
                        same = false;
                        break 'cmp;
                    }
                }
            }
        }
        if same {
            progress(FlashEvent::Skip { sector: s.index });
            report.skipped.push(s.index);
        } else {
            to_erase.push(*s);
        }
    }
    let erase_all = Permissions::none();
    let changed = |addr: u32| to_erase.iter().any(|s| addr >= s.start && addr < s.end());
    let todo: Vec<Block> = blocks(image, board.flash.word.max(board.rom.write_alignment), board.flash.erased)
        .into_iter()
        .filter(|b| changed(b.address))
        .collect();
    for (n, s) in to_erase.iter().enumerate() {
        progress(FlashEvent::Erase { sector: s.index, n: n + 1, of: to_erase.len() });
        rom.erase(&EraseRequest::Sectors(vec![s.index as u16]), erase_all).await?;
        // An ACK only says the command finished (AN5405 §3.7): the sector's first block to
        // write must read erased now, or the sector is protected.
        if let Some(b) = todo.iter().find(|b| b.address >= s.start && b.address < s.end()) {
            let back = rom.read_memory(b.address, b.data.len()).await?;
            if let Some(i) = back.iter().position(|x| *x != board.flash.erased) {
                return Err(FlashError::NotErased { sector: s.index, address: b.address + i as u32, got: back[i] });
            }
        }
        report.erased.push(s.index);
    }
    let total: usize = todo.iter().map(|b| b.data.len()).sum();
    if opts.stop_after_writes == Some(0) {
        report.stopped_after = Some(0);
        return Ok(report);
    }
    for b in &todo {
        rom.write_memory(b.address, &b.data).await?;
        report.writes += 1;
        report.bytes += b.data.len();
        progress(FlashEvent::Write { done: report.bytes, total });
        if opts.stop_after_writes == Some(report.writes) {
            report.stopped_after = Some(report.writes);
            return Ok(report);
        }
    }
    if opts.verify {
        let mut done = 0;
        for b in &todo {
            let back = rom.read_memory(b.address, b.data.len()).await?;
            if let Some(i) = back.iter().zip(&b.data).position(|(x, y)| x != y) {
                return Err(FlashError::Verify { address: b.address + i as u32, expected: b.data[i], got: back[i] });
            }
            done += b.data.len();
            progress(FlashEvent::Verify { done, total });
        }
        report.verified = true;
    }
    Ok(report)
}

/// Enter the ROM bootloader on `rig` (BOOT0 high + NRST), connect over `kind`, and flash. If the
/// bootloader stops answering while comparing a sector (a torn ECC word makes it bus-fault),
/// re-enter it once and erase that sector without comparing.
pub async fn flash_via_rom(
    rig: &mut Rig,
    kind: Option<RomTransportKind>,
    image: &FirmwareImage,
    opts: &FlashOptions,
    progress: &mut (dyn FnMut(FlashEvent) + Send),
) -> Result<FlashReport, FlashError> {
    let mut no_compare = BTreeSet::new();
    let mut recoveries = 0;
    loop {
        rig.reset_into_rom().await?;
        let mut rom = RomClient::open(rig, kind)?;
        rom.connect().await?;
        let mut current = None;
        let mut track = |e: FlashEvent| {
            if let FlashEvent::Compare { sector } = e {
                current = Some(sector);
            }
            progress(e);
        };
        match flash(&mut rom, image, opts, &no_compare, &mut track).await {
            Ok(mut r) => {
                r.recoveries = recoveries;
                return Ok(r);
            }
            Err(FlashError::Rom(RomError::Timeout { stage: "data" | "address" | "end", .. })) if recoveries < 3 => {
                let Some(sector) = current else {
                    return Err(FlashError::Rom(RomError::Invalid("the bootloader stopped answering".into())));
                };
                tracing::warn!(
                    "the ROM bootloader stopped answering while comparing sector {sector} (a torn flash word's ECC error bus-faults it); re-entering it and erasing the sector without comparing"
                );
                no_compare.insert(sector);
                recoveries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootproof_rig::image::Segment;

    #[test]
    fn blocks_are_word_aligned_and_padded() {
        let img =
            FirmwareImage::from_segments("x", vec![Segment { address: 0x0800_0010, data: vec![1; 300] }]).unwrap();
        let b = blocks(&img, 32, 0xFF);
        assert_eq!(b[0].address, 0x0800_0000);
        assert_eq!(&b[0].data[..16], &[0xFF; 16], "leading pad up to the word boundary");
        assert_eq!(b[0].data.len(), 256);
        assert_eq!(b[1].address, 0x0800_0100);
        assert_eq!(b[1].data.len(), 64, "316 bytes padded to 320");
        assert!(b.iter().all(|x| x.address % 32 == 0 && x.data.len() % 32 == 0));
        let f4 = blocks(&img, 1, 0xFF);
        assert_eq!(f4[0].address, 0x0800_0010);
        assert_eq!(f4.iter().map(|b| b.data.len()).sum::<usize>(), 300);
    }

    #[test]
    fn segments_sharing_a_word_are_written_once() {
        let img = FirmwareImage::from_segments(
            "x",
            vec![
                Segment { address: 0x0800_0000, data: vec![1; 40] },
                Segment { address: 0x0800_0028, data: vec![2; 8] },
                Segment { address: 0x0800_0200, data: vec![3; 4] },
            ],
        )
        .unwrap();
        let b = blocks(&img, 32, 0xFF);
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!((b[0].address, b[0].data.len()), (0x0800_0000, 64));
        assert_eq!(&b[0].data[32..48], &[1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]);
        assert_eq!((b[1].address, b[1].data.len()), (0x0800_0200, 32));
    }

    #[test]
    fn touched_sectors_of_an_image() {
        let p = bootproof_fixtures::BoardProfile::builtin("stm32h723zg").unwrap();
        let img = FirmwareImage::from_segments("x", vec![Segment { address: 0x0801_FFF0, data: vec![0; 32] }]).unwrap();
        let s: Vec<u32> = touched_sectors(&img, &p.flash.sector_list()).iter().map(|s| s.index).collect();
        assert_eq!(s, vec![0, 1]);
    }
}
