//! `bootproof image inspect`: what an image file holds, without trusting it. Shows the header,
//! every TLV (hashes, key hashes and signatures are public data), and whether the hash matches.
//! Never shows private key material (an image contains none).

use std::fmt;
use std::string::String;
use std::vec::Vec;

use crate::keys::hex;
use crate::{Header, IMAGE_F_ROM_FIXED, IMAGE_MAGIC, TLV_INFO_MAGIC, TLV_PROT_INFO_MAGIC, tlv};

/// One TLV entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlvEntry {
    /// In the protected (hashed) area.
    pub protected: bool,
    /// Offset of the entry header in the image.
    pub offset: u32,
    /// Type.
    pub kind: u16,
    /// Value.
    pub value: Vec<u8>,
}

/// What an image file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// File length.
    pub file_len: usize,
    /// The header.
    pub header: Header,
    /// TLV entries, in order.
    pub tlvs: Vec<TlvEntry>,
    /// SHA-256 over header + payload + protected TLVs, if the file is long enough.
    pub computed_hash: Option<[u8; 32]>,
    /// The image's total length (header, payload and both TLV areas) as the unprotected TLV
    /// area's info header gives it; `None` when that info header is missing or has the wrong
    /// magic. It can exceed `file_len` for a truncated file (a problem is listed then).
    pub total_len: Option<usize>,
    /// Problems found while walking the layout (a partial report is still given).
    pub problems: Vec<String>,
}

impl Report {
    /// Whether the SHA256 TLV matches the computed hash.
    pub fn hash_matches(&self) -> Option<bool> {
        let h = self.computed_hash?;
        let t = self.tlvs.iter().find(|t| !t.protected && t.kind == tlv::SHA256)?;
        Some(t.value[..] == h[..])
    }

    /// The security counter, if present in the protected area.
    pub fn security_counter(&self) -> Option<u32> {
        let t = self.tlvs.iter().find(|t| t.protected && t.kind == tlv::SEC_CNT && t.value.len() == 4)?;
        Some(u32::from_le_bytes([t.value[0], t.value[1], t.value[2], t.value[3]]))
    }
}

fn walk(b: &[u8], off: usize, magic: u16, protected: bool, out: &mut Report) -> Option<usize> {
    let Some(info) = b.get(off..off + 4) else {
        out.problems.push(std::format!("file ends at {:#x}, before the TLV info at {off:#x}", b.len()));
        return None;
    };
    let m = u16::from_le_bytes([info[0], info[1]]);
    let tot = u16::from_le_bytes([info[2], info[3]]) as usize;
    if m != magic {
        out.problems.push(std::format!("TLV info at {off:#x} has magic {m:#06x}, expected {magic:#06x}"));
        return None;
    }
    let end = off + tot;
    let mut at = off + 4;
    while at + 4 <= end.min(b.len()) {
        let t = u16::from_le_bytes([b[at], b[at + 1]]);
        let len = u16::from_le_bytes([b[at + 2], b[at + 3]]) as usize;
        let Some(v) = b.get(at + 4..at + 4 + len) else {
            out.problems.push(std::format!("TLV at {at:#x} runs past the end of the file"));
            return None;
        };
        out.tlvs.push(TlvEntry { protected, offset: at as u32, kind: t, value: v.to_vec() });
        at += 4 + len;
    }
    if end > b.len() {
        out.problems.push(std::format!("TLV area ends at {end:#x}, past the end of the file ({:#x})", b.len()));
    }
    Some(end)
}

/// Inspect an image file.
pub fn inspect(b: &[u8]) -> Result<Report, String> {
    let Some(h) = b.get(..32) else {
        return Err(std::format!("{} bytes is too short for an MCUboot image header (32 bytes)", b.len()));
    };
    let header = Header::decode(h.try_into().expect("32 bytes"));
    if header.magic != IMAGE_MAGIC {
        return Err(std::format!(
            "not an MCUboot image: first word {:#010x}, expected {IMAGE_MAGIC:#010x} (sign it with `bootproof image sign`)",
            header.magic
        ));
    }
    let mut r = Report {
        file_len: b.len(),
        header,
        tlvs: Vec::new(),
        computed_hash: None,
        total_len: None,
        problems: Vec::new(),
    };
    let hashed = header.hashed_len() as usize;
    if header.protect_tlv_size != 0 {
        walk(b, header.payload_end() as usize, TLV_PROT_INFO_MAGIC, true, &mut r);
    }
    if hashed <= b.len() {
        use sha2::Digest;
        r.computed_hash = Some(sha2::Sha256::digest(&b[..hashed]).into());
    }
    r.total_len = walk(b, hashed, TLV_INFO_MAGIC, false, &mut r);
    if let Some(end) = r.total_len
        && end < b.len()
    {
        let rest = &b[end..];
        if rest.iter().all(|x| *x == 0xFF) {
            // imgtool --pad: erased filler up to the slot end (and possibly its trailer).
        } else {
            r.problems.push(std::format!(
                "{} bytes after the TLVs are not erased filler (an MCUboot trailer from `imgtool --pad --confirm`?); \
                 bootproof writes only the image proper",
                rest.len()
            ));
        }
    }
    Ok(r)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        writeln!(f, "MCUboot image, {} bytes", self.file_len)?;
        writeln!(f, "  version           {}", h.version)?;
        let fixed = if h.flags & IMAGE_F_ROM_FIXED != 0 { " (ROM_FIXED)" } else { " (not ROM_FIXED)" };
        writeln!(f, "  load address      {:#010x}{fixed}", h.load_addr)?;
        writeln!(f, "  flags             {:#x}", h.flags)?;
        writeln!(f, "  header size       {:#x}", h.hdr_size)?;
        writeln!(f, "  payload size      {} bytes", h.img_size)?;
        writeln!(f, "  vector table at   {:#010x}", h.load_addr.wrapping_add(h.hdr_size as u32))?;
        writeln!(f, "  protected TLVs    {} bytes", h.protect_tlv_size)?;
        for t in &self.tlvs {
            let area = if t.protected { "protected" } else { "" };
            let value = match t.kind {
                tlv::SEC_CNT if t.value.len() == 4 => {
                    std::format!("{}", u32::from_le_bytes([t.value[0], t.value[1], t.value[2], t.value[3]]))
                }
                _ if t.value.len() <= 64 => hex(&t.value),
                _ => std::format!("{}… ({} bytes)", hex(&t.value[..16]), t.value.len()),
            };
            writeln!(f, "  TLV {:#06x} {:<9} {area:<9} {value}", t.kind, tlv::name(t.kind))?;
        }
        match (self.computed_hash, self.hash_matches()) {
            (Some(c), Some(true)) => writeln!(f, "  hash              {} (matches)", hex(&c))?,
            (Some(c), Some(false)) => writeln!(f, "  hash              {} (MISMATCH: image corrupted)", hex(&c))?,
            (Some(c), None) => writeln!(f, "  hash              {} (no SHA256 TLV)", hex(&c))?,
            (None, _) => writeln!(f, "  hash              (file too short to hash)")?,
        }
        for p in &self.problems {
            writeln!(f, "  problem: {p}")?;
        }
        Ok(())
    }
}
