//! Firmware images: ELF, raw binary or Intel HEX, loaded into address-tagged segments.

use std::path::Path;

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("cannot read image {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The contents are not a valid image of the format.
    #[error("{name}: {message}")]
    Format {
        /// Image name.
        name: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// File format of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// ELF: loadable segments at their physical (load) addresses.
    Elf,
    /// Raw binary placed at `base`.
    Bin {
        /// Load address of the first byte.
        base: u32,
    },
    /// Intel HEX.
    Hex,
}

/// A contiguous run of bytes at an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Load address.
    pub address: u32,
    /// Bytes.
    pub data: Vec<u8>,
}

impl Segment {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.address as u64 + self.data.len() as u64
    }
}

/// A firmware image, as segments sorted by address, plus its original bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareImage {
    /// Name for messages (usually the file name).
    pub name: String,
    /// Format it was loaded from.
    pub format: ImageFormat,
    /// Sorted, non-overlapping segments.
    pub segments: Vec<Segment>,
    /// The original file bytes (probe-rs loads ELF/HEX itself).
    pub raw: Vec<u8>,
}

impl FirmwareImage {
    /// The image as whole flash words of `word` bytes, padded with `erased`, merged where
    /// segments share a word (a word is programmed once), in address order: what a flash
    /// loader programs.
    pub fn flash_words(&self, word: usize, erased: u8) -> std::collections::BTreeMap<u32, Vec<u8>> {
        let mut words = std::collections::BTreeMap::new();
        for seg in &self.segments {
            for (i, b) in seg.data.iter().enumerate() {
                let a = seg.address + i as u32;
                let base = a - a % word as u32;
                words.entry(base).or_insert_with(|| vec![erased; word])[(a - base) as usize] = *b;
            }
        }
        words
    }

    /// Load a file. The format comes from the extension (`.elf`/no extension with ELF magic,
    /// `.hex`/`.ihex`, anything else is binary and needs `bin_base`).
    pub fn load(path: &Path, bin_base: Option<u32>) -> Result<FirmwareImage, ImageError> {
        let raw =
            std::fs::read(path).map_err(|source| ImageError::Read { path: path.display().to_string(), source })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let format = if raw.starts_with(b"\x7fELF") {
            ImageFormat::Elf
        } else if ext == "hex" || ext == "ihex" {
            ImageFormat::Hex
        } else if ext == "elf" {
            return Err(ImageError::Format { name, message: "has an .elf extension but no ELF header".into() });
        } else {
            let base = bin_base.ok_or_else(|| ImageError::Format {
                name: name.clone(),
                message: "is a raw binary; give its load address with --base (e.g. --base 0x08000000)".into(),
            })?;
            ImageFormat::Bin { base }
        };
        Self::from_bytes(name, raw, format)
    }

    /// Parse bytes in a known format.
    pub fn from_bytes(name: impl Into<String>, raw: Vec<u8>, format: ImageFormat) -> Result<FirmwareImage, ImageError> {
        let name = name.into();
        let err = |message: String| ImageError::Format { name: name.clone(), message };
        let segments = match format {
            ImageFormat::Bin { base } => {
                if raw.is_empty() {
                    return Err(err("is empty".into()));
                }
                if base as u64 + raw.len() as u64 > 1 << 32 {
                    return Err(err(format!("{} bytes at {base:#010x} run past the 32-bit address space", raw.len())));
                }
                vec![Segment { address: base, data: raw.clone() }]
            }
            ImageFormat::Elf => elf_segments(&raw).map_err(err)?,
            ImageFormat::Hex => hex_segments(&raw).map_err(err)?,
        };
        let segments = normalize(&name, segments)?;
        Ok(FirmwareImage { name, format, segments, raw })
    }

    /// A binary image built in memory (recipes, tests). `raw` is the concatenation of the
    /// segments' bytes.
    pub fn from_segments(name: impl Into<String>, segments: Vec<Segment>) -> Result<FirmwareImage, ImageError> {
        let name = name.into();
        let segments = normalize(&name, segments)?;
        let raw = segments.iter().flat_map(|s| s.data.iter().copied()).collect();
        Ok(FirmwareImage { name, format: ImageFormat::Bin { base: segments[0].address }, segments, raw })
    }

    /// Total payload bytes.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.data.len()).sum()
    }

    /// Whether the image holds no bytes (never true for a loaded image).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lowest address.
    pub fn start(&self) -> u32 {
        self.segments[0].address
    }

    /// Check that every byte lies within `[start, end)`; the message names the first offender.
    pub fn check_within(&self, start: u32, end: u32, what: &str) -> Result<(), ImageError> {
        for s in &self.segments {
            if s.address < start || s.end() > end as u64 {
                return Err(ImageError::Format {
                    name: self.name.clone(),
                    message: format!(
                        "segment {:#010x}..{:#010x} is outside {what} {start:#010x}..{end:#010x}; was it linked for another chip or slot?",
                        s.address,
                        s.end()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Sort, reject overlaps, merge adjacent runs.
fn normalize(name: &str, mut segments: Vec<Segment>) -> Result<Vec<Segment>, ImageError> {
    let err = |message: String| ImageError::Format { name: name.to_string(), message };
    segments.retain(|s| !s.data.is_empty());
    segments.sort_by_key(|s| s.address);
    let mut merged: Vec<Segment> = Vec::new();
    for s in segments {
        match merged.last_mut() {
            Some(last) if last.end() > s.address as u64 => {
                return Err(err(format!(
                    "segments overlap at {:#010x}; the image would write the same bytes twice",
                    s.address
                )));
            }
            Some(last) if last.end() == s.address as u64 => last.data.extend_from_slice(&s.data),
            _ => merged.push(s),
        }
    }
    if merged.is_empty() {
        return Err(err("contains no loadable data".into()));
    }
    Ok(merged)
}

fn elf_segments(raw: &[u8]) -> Result<Vec<Segment>, String> {
    use object::read::elf::{ElfFile32, FileHeader, ProgramHeader};
    let elf = ElfFile32::<object::Endianness>::parse(raw)
        .map_err(|e| format!("is not a 32-bit ELF ({e}); build for thumbv7em-none-eabihf"))?;
    let endian = elf.endian();
    let mut out = Vec::new();
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) != object::elf::PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let data = ph.data(endian, raw).map_err(|_| "has a program header pointing outside the file".to_string())?;
        out.push(Segment { address: ph.p_paddr(endian), data: data.to_vec() });
    }
    if elf.elf_header().e_machine(endian) != object::elf::EM_ARM {
        return Err("is not an ARM ELF; build for thumbv7em-none-eabihf".into());
    }
    Ok(out)
}

fn hex_segments(raw: &[u8]) -> Result<Vec<Segment>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "is not text; Intel HEX files are ASCII".to_string())?;
    let mut out: Vec<Segment> = Vec::new();
    let mut upper: u32 = 0;
    let mut ended = false;
    for (i, rec) in ihex::Reader::new(text).enumerate() {
        let rec = rec.map_err(|e| format!("record {}: {e}", i + 1))?;
        match rec {
            ihex::Record::Data { offset, value } => {
                let address = upper.wrapping_add(offset as u32);
                match out.last_mut() {
                    Some(last) if last.end() == address as u64 => last.data.extend_from_slice(&value),
                    _ => out.push(Segment { address, data: value }),
                }
            }
            ihex::Record::ExtendedLinearAddress(a) => upper = (a as u32) << 16,
            ihex::Record::ExtendedSegmentAddress(a) => upper = (a as u32) << 4,
            ihex::Record::EndOfFile => {
                ended = true;
                break;
            }
            _ => {}
        }
    }
    if !ended {
        return Err("has no end-of-file record; it may be truncated".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_needs_a_base_and_lands_there() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.bin");
        std::fs::write(&p, [1, 2, 3, 4]).unwrap();
        let e = FirmwareImage::load(&p, None).unwrap_err().to_string();
        assert!(e.contains("--base"), "{e}");
        let img = FirmwareImage::load(&p, Some(0x0800_0000)).unwrap();
        assert_eq!(img.segments, vec![Segment { address: 0x0800_0000, data: vec![1, 2, 3, 4] }]);
        assert!(img.check_within(0x0800_0000, 0x0810_0000, "flash").is_ok());
        let e = img.check_within(0x0802_0000, 0x0808_0000, "slot A").unwrap_err().to_string();
        assert!(e.contains("slot A"), "{e}");
    }

    #[test]
    fn intel_hex_with_linear_address() {
        let text = ":020000040800F2\n:0400000001020304F2\n:0400040005060708DE\n:00000001FF\n";
        let img = FirmwareImage::from_bytes("a.hex", text.as_bytes().to_vec(), ImageFormat::Hex).unwrap();
        assert_eq!(img.segments, vec![Segment { address: 0x0800_0000, data: vec![1, 2, 3, 4, 5, 6, 7, 8] }]);
    }

    #[test]
    fn truncated_or_corrupt_hex_is_rejected() {
        let e = FirmwareImage::from_bytes("a.hex", b":0400000001020304F2\n".to_vec(), ImageFormat::Hex)
            .unwrap_err()
            .to_string();
        assert!(e.contains("end-of-file"), "{e}");
        let e = FirmwareImage::from_bytes("a.hex", b":0400000001020304F3\n:00000001FF\n".to_vec(), ImageFormat::Hex)
            .unwrap_err()
            .to_string();
        assert!(e.contains("record 1"), "{e}");
    }

    #[test]
    fn elf_extension_without_elf_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.elf");
        std::fs::write(&p, b"not an elf").unwrap();
        assert!(FirmwareImage::load(&p, None).unwrap_err().to_string().contains("no ELF header"));
        let e = FirmwareImage::from_bytes("x", b"\x7fELFjunk".to_vec(), ImageFormat::Elf).unwrap_err().to_string();
        assert!(e.contains("32-bit ELF"), "{e}");
    }

    #[test]
    fn elf_load_segments_use_physical_addresses() {
        // A minimal ELF32 with one PT_LOAD: vaddr 0x2000_0000 (RAM), paddr 0x0800_0000 (flash).
        let mut elf = vec![0u8; 52 + 32 + 4];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 1; // 32-bit
        elf[5] = 1; // little-endian
        elf[6] = 1;
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[18..20].copy_from_slice(&40u16.to_le_bytes()); // EM_ARM
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[28..32].copy_from_slice(&52u32.to_le_bytes()); // e_phoff
        elf[40..42].copy_from_slice(&52u16.to_le_bytes()); // e_ehsize
        elf[42..44].copy_from_slice(&32u16.to_le_bytes()); // e_phentsize
        elf[44..46].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = 52;
        elf[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        elf[ph + 4..ph + 8].copy_from_slice(&84u32.to_le_bytes()); // p_offset
        elf[ph + 8..ph + 12].copy_from_slice(&0x2000_0000u32.to_le_bytes()); // p_vaddr
        elf[ph + 12..ph + 16].copy_from_slice(&0x0800_0000u32.to_le_bytes()); // p_paddr
        elf[ph + 16..ph + 20].copy_from_slice(&4u32.to_le_bytes()); // p_filesz
        elf[ph + 20..ph + 24].copy_from_slice(&4u32.to_le_bytes()); // p_memsz
        elf[84..88].copy_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
        let img = FirmwareImage::from_bytes("t.elf", elf, ImageFormat::Elf).unwrap();
        assert_eq!(img.segments, vec![Segment { address: 0x0800_0000, data: vec![0xDE, 0xAD, 0xBE, 0xEF] }]);
    }

    #[test]
    fn overlapping_segments_are_rejected() {
        let e = FirmwareImage::from_segments(
            "x",
            vec![Segment { address: 0, data: vec![0; 8] }, Segment { address: 4, data: vec![0; 8] }],
        );
        assert!(e.unwrap_err().to_string().contains("overlap"));
        let ok = FirmwareImage::from_segments(
            "x",
            vec![Segment { address: 8, data: vec![2; 8] }, Segment { address: 0, data: vec![1; 8] }],
        )
        .unwrap();
        assert_eq!(ok.segments.len(), 1, "adjacent segments merge");
        assert_eq!(ok.raw[..8], [1; 8]);
        let text = ":0400000001020304F2\n:0400020001020304F0\n:00000001FF\n";
        let e = FirmwareImage::from_bytes("o.hex", text.as_bytes().to_vec(), ImageFormat::Hex).unwrap_err().to_string();
        assert!(e.contains("overlap"), "{e}");
    }
}
