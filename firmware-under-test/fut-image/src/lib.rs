//! MCUboot-compatible signed images for bootproof's bootloader.
//!
//! The format is MCUboot's (`docs/design.md`, "Image format"), so images signed with MCUboot's
//! `imgtool` boot here, and images signed by `bootproof image sign` pass `imgtool verify`:
//!
//! ```text
//! 0x000  header (32 bytes, little-endian), padded to `hdr_size` (0x400 on the H723: the vector
//!        table that follows must be 1 KiB aligned for VTOR)
//!          magic 0x96f3b83d | load_addr | hdr_size u16 | protect_tlv_size u16 | img_size
//!          flags (IMAGE_F_ROM_FIXED 0x100 required) | version major.minor.revision+build | pad
//! hdr    payload: the application, vector table first (img_size bytes)
//! +img   protected TLV area (info magic 0x6908): SEC_CNT 0x50 (u32)      } covered by the hash
//! +prot  unprotected TLV area (info magic 0x6907): SHA256 0x10 (32 bytes),
//!        KEYHASH 0x01 (SHA-256 of the key's DER SubjectPublicKeyInfo) or PUBKEY 0x02,
//!        ED25519 0x24 (signature over the 32-byte SHA-256 digest)
//! ```
//!
//! The hash covers the header, the payload and the protected TLVs. Each TLV area starts with a
//! 4-byte info header whose total length includes itself.
//!
//! Every length in the image is bounds-checked before it is believed: the header's extent must fit
//! the slot and be present in the source, each TLV area (info length) must fit the slot and be
//! present in the source, and each TLV entry, known or unknown, must lie inside its area. So a
//! verified image's [`Verified::total_len`] never exceeds the source's length.
//!
//! [`verify`] is the bootloader's check. It is `no_std`, allocation-free and bounds-checked: it
//! reads through a [`Source`] (a byte slice, or flash through an ECC-safe reader) and every read
//! error makes the image invalid ([`Reject::Unreadable`]), never a crash. It rejects with a named
//! [`Reject`] reason. With feature `std`, [`sign`], [`keys`] and [`inspect`] serve the host tools.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

#[cfg(feature = "std")]
pub mod inspect;
#[cfg(feature = "std")]
pub mod keys;
#[cfg(feature = "std")]
pub mod sign;

use core::cmp::Ordering;
use core::fmt;

use sha2::{Digest, Sha256};

/// Header magic (`IMAGE_MAGIC`).
pub const IMAGE_MAGIC: u32 = 0x96f3_b83d;
/// Size of the fixed header.
pub const HEADER_LEN: u32 = 32;
/// Magic of the protected TLV area's info header.
pub const TLV_PROT_INFO_MAGIC: u16 = 0x6908;
/// Magic of the unprotected TLV area's info header.
pub const TLV_INFO_MAGIC: u16 = 0x6907;
/// Header flag: the image runs in place at `load_addr` (`IMAGE_F_ROM_FIXED`).
pub const IMAGE_F_ROM_FIXED: u32 = 0x0000_0100;
/// At most this many TLV entries per area are examined; more is an invalid image (bounds the
/// work an attacker-controlled image can cause).
pub const MAX_TLVS: usize = 64;

/// TLV types this crate knows.
pub mod tlv {
    /// SHA-256 of the public key's DER SubjectPublicKeyInfo.
    pub const KEYHASH: u16 = 0x01;
    /// The public key itself (DER SubjectPublicKeyInfo), instead of KEYHASH.
    pub const PUBKEY: u16 = 0x02;
    /// SHA-256 of header + payload + protected TLVs.
    pub const SHA256: u16 = 0x10;
    /// SHA-384 digest (unsupported here).
    pub const SHA384: u16 = 0x11;
    /// SHA-512 digest (unsupported here).
    pub const SHA512: u16 = 0x12;
    /// Ed25519 signature over the SHA-256 digest.
    pub const ED25519: u16 = 0x24;
    /// "Pure" signature over the whole image (unsupported here).
    pub const SIG_PURE: u16 = 0x25;
    /// Security counter (protected area, u32).
    pub const SEC_CNT: u16 = 0x50;

    /// Name of a TLV type, for reports.
    pub fn name(t: u16) -> &'static str {
        match t {
            KEYHASH => "KEYHASH",
            PUBKEY => "PUBKEY",
            SHA256 => "SHA256",
            SHA384 => "SHA384",
            SHA512 => "SHA512",
            0x20 => "RSA2048_PSS",
            0x22 => "ECDSA_SIG",
            0x23 => "RSA3072_PSS",
            ED25519 => "ED25519",
            SIG_PURE => "SIG_PURE",
            0x30..=0x34 => "ENC",
            0x40 => "DEPENDENCY",
            SEC_CNT => "SEC_CNT",
            0x60 => "BOOT_RECORD",
            0x70..=0x73 => "DECOMP",
            _ => "unknown",
        }
    }
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32-byte key follows. The key hash in
/// KEYHASH TLVs is SHA-256 over these 44 bytes (as `imgtool` computes it).
pub const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// An image version, `major.minor.revision+build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ImageVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Revision.
    pub revision: u16,
    /// Build number (ignored when comparing, as MCUboot does by default).
    pub build: u32,
}

impl ImageVersion {
    /// A version.
    pub const fn new(major: u8, minor: u8, revision: u16, build: u32) -> Self {
        ImageVersion { major, minor, revision, build }
    }

    /// Compare as the boot decision does: major, minor, revision; the build number is ignored
    /// (MCUboot's default, without `MCUBOOT_VERSION_CMP_USE_BUILD_NUMBER`).
    pub fn boot_cmp(&self, other: &ImageVersion) -> Ordering {
        (self.major, self.minor, self.revision).cmp(&(other.major, other.minor, other.revision))
    }

    /// Parse `major[.minor[.revision[+build]]]` as `imgtool` accepts it.
    pub fn parse(s: &str) -> Option<ImageVersion> {
        let (main, build) = match s.split_once('+') {
            Some((m, b)) => (m, b.parse().ok()?),
            None => (s, 0),
        };
        let mut it = main.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        let revision = it.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        if it.next().is_some() {
            return None;
        }
        Some(ImageVersion { major, minor, revision, build })
    }
}

impl fmt::Display for ImageVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}+{}", self.major, self.minor, self.revision, self.build)
    }
}

/// The fixed 32-byte image header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `ih_magic`.
    pub magic: u32,
    /// `ih_load_addr`: where the image runs (the slot base) when ROM_FIXED is set.
    pub load_addr: u32,
    /// `ih_hdr_size`: offset of the payload.
    pub hdr_size: u16,
    /// `ih_protect_tlv_size`: size of the protected TLV area, info header included.
    pub protect_tlv_size: u16,
    /// `ih_img_size`: payload size.
    pub img_size: u32,
    /// `ih_flags`.
    pub flags: u32,
    /// `ih_ver`.
    pub version: ImageVersion,
}

impl Header {
    /// Decode (no validation).
    pub fn decode(b: &[u8; 32]) -> Header {
        let u16le = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32le = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Header {
            magic: u32le(0),
            load_addr: u32le(4),
            hdr_size: u16le(8),
            protect_tlv_size: u16le(10),
            img_size: u32le(12),
            flags: u32le(16),
            version: ImageVersion { major: b[20], minor: b[21], revision: u16le(22), build: u32le(24) },
        }
    }

    /// Encode (pad word zero).
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.load_addr.to_le_bytes());
        b[8..10].copy_from_slice(&self.hdr_size.to_le_bytes());
        b[10..12].copy_from_slice(&self.protect_tlv_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.img_size.to_le_bytes());
        b[16..20].copy_from_slice(&self.flags.to_le_bytes());
        b[20] = self.version.major;
        b[21] = self.version.minor;
        b[22..24].copy_from_slice(&self.version.revision.to_le_bytes());
        b[24..28].copy_from_slice(&self.version.build.to_le_bytes());
        b
    }

    /// Offset of the protected TLV area (= end of the payload).
    pub fn payload_end(&self) -> u64 {
        self.hdr_size as u64 + self.img_size as u64
    }

    /// Offset of the unprotected TLV area (= end of the hashed region).
    pub fn hashed_len(&self) -> u64 {
        self.payload_end() + self.protect_tlv_size as u64
    }
}

/// Why a read from a [`Source`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFault {
    /// Past the end of the source (a short file).
    OutOfBounds,
    /// The medium reported an error there (on H7 flash: an ECC double error, i.e. a torn or
    /// double-programmed flash word).
    Unreadable,
}

/// Where an image is read from: a byte slice, or a flash slot through an ECC-safe reader.
pub trait Source {
    /// Bytes available.
    fn len(&self) -> u32;
    /// Whether nothing is available.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fill `buf` from `offset`.
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ReadFault>;
}

impl Source for &[u8] {
    fn len(&self) -> u32 {
        u32::try_from(<[u8]>::len(self)).unwrap_or(u32::MAX)
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ReadFault> {
        let start = offset as usize;
        let end = start.checked_add(buf.len()).ok_or(ReadFault::OutOfBounds)?;
        let src = self.get(start..end).ok_or(ReadFault::OutOfBounds)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A public key the bootloader trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedKey {
    /// The Ed25519 public key.
    pub public: [u8; 32],
    /// SHA-256 of its DER SubjectPublicKeyInfo (what KEYHASH TLVs carry).
    pub hash: [u8; 32],
}

impl TrustedKey {
    /// Trust `public`.
    pub fn new(public: [u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(ED25519_SPKI_PREFIX);
        h.update(public);
        TrustedKey { public, hash: h.finalize().into() }
    }
}

/// The Ed25519 check, behind a trait so a host simulation can memoise it (the result for a
/// given key, digest and signature never changes).
pub trait SignatureCheck {
    /// Whether `signature` is a valid Ed25519 signature by `public` over `digest`.
    fn ed25519(&mut self, public: &[u8; 32], digest: &[u8; 32], signature: &[u8; 64]) -> bool;
}

/// The real check: ed25519-dalek's `verify_strict` (rejects small-order keys and
/// non-canonical signatures).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ed25519Verify;

impl SignatureCheck for Ed25519Verify {
    fn ed25519(&mut self, public: &[u8; 32], digest: &[u8; 32], signature: &[u8; 64]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public) else { return false };
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(digest, &sig).is_ok()
    }
}

/// What the slot expects of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The slot base address: the image must be signed `--rom-fixed` with this load address.
    pub load_addr: u32,
    /// Bytes the image may occupy, TLVs included (the slot minus its trailer).
    pub capacity: u32,
    /// The header size must be a multiple of this (vector-table alignment; 0x400 on H723).
    pub header_align: u32,
    /// Lowest acceptable security counter (the stored minimum).
    pub min_security_counter: u32,
}

/// A verified image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The header.
    pub header: Header,
    /// Its security counter.
    pub security_counter: u32,
    /// SHA-256 of header + payload + protected TLVs.
    pub digest: [u8; 32],
    /// Which trusted key signed it.
    pub key_index: usize,
    /// Total length: header, payload and both TLV areas.
    pub total_len: u32,
}

impl Verified {
    /// Its version (from the header).
    pub fn version(&self) -> ImageVersion {
        self.header.version
    }

    /// Where the vector table is: load address + header size.
    pub fn vector_table(&self) -> u32 {
        self.header.load_addr.wrapping_add(self.header.hdr_size as u32)
    }
}

/// Why an image was rejected. Each names what is wrong and, where it helps, how to fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No image header (erased slot, or not an MCUboot image).
    BadMagic {
        /// The first word found.
        found: u32,
    },
    /// The header is inconsistent.
    BadHeader {
        /// What is inconsistent.
        why: &'static str,
    },
    /// The header size does not align the vector table.
    MisalignedHeader {
        /// The header size.
        hdr_size: u16,
        /// The required alignment.
        align: u32,
    },
    /// Flags this bootloader does not support (RAM_LOAD, encryption, compression, ...).
    UnsupportedFlags {
        /// The flags.
        flags: u32,
    },
    /// The image was not signed for a fixed address (no `--rom-fixed`).
    NoLoadAddress,
    /// The image was linked and signed for another slot.
    WrongLoadAddress {
        /// This slot's base.
        expected: u32,
        /// The image's load address.
        found: u32,
    },
    /// The image (with its TLVs) does not fit the slot.
    Oversize {
        /// Bytes it needs.
        needed: u64,
        /// Bytes available.
        capacity: u32,
    },
    /// The image ends before its header says it does.
    Truncated {
        /// Bytes it needs.
        needed: u64,
        /// Bytes present.
        have: u32,
    },
    /// A TLV area's info header says the area runs past the end of the image: the file or
    /// transfer is incomplete, or the info length is corrupt.
    TlvAreaTruncated {
        /// Offset of the area's info header in the image.
        offset: u32,
        /// Where the area says it ends.
        end: u64,
        /// Bytes present.
        have: u32,
    },
    /// A TLV area is malformed.
    BadTlvArea {
        /// What is wrong.
        why: &'static str,
        /// Offset in the image.
        offset: u32,
    },
    /// No SHA256 TLV.
    NoHash,
    /// The SHA-256 over header, payload and protected TLVs does not match the SHA256 TLV.
    HashMismatch,
    /// No Ed25519 signature.
    NoSignature,
    /// Signed by a key this bootloader does not trust.
    UnknownKey,
    /// A trusted key's signature does not verify.
    BadSignature,
    /// No security counter in the protected TLVs.
    NoSecurityCounter,
    /// The security counter is below the stored minimum.
    Rollback {
        /// The image's counter.
        image: u32,
        /// The stored minimum.
        minimum: u32,
    },
    /// A read failed (an ECC error in flash): the image is treated as invalid.
    Unreadable {
        /// Offset in the image.
        offset: u32,
    },
}

impl Reject {
    /// A short stable name (for logs, CAN status codes and snapshots).
    pub fn name(&self) -> &'static str {
        match self {
            Reject::BadMagic { .. } => "bad-magic",
            Reject::BadHeader { .. } => "bad-header",
            Reject::MisalignedHeader { .. } => "misaligned-header",
            Reject::UnsupportedFlags { .. } => "unsupported-flags",
            Reject::NoLoadAddress => "no-load-address",
            Reject::WrongLoadAddress { .. } => "wrong-load-address",
            Reject::Oversize { .. } => "oversize",
            Reject::Truncated { .. } => "truncated",
            Reject::TlvAreaTruncated { .. } => "tlv-area-truncated",
            Reject::BadTlvArea { .. } => "bad-tlv-area",
            Reject::NoHash => "no-hash",
            Reject::HashMismatch => "hash-mismatch",
            Reject::NoSignature => "no-signature",
            Reject::UnknownKey => "unknown-key",
            Reject::BadSignature => "bad-signature",
            Reject::NoSecurityCounter => "no-security-counter",
            Reject::Rollback { .. } => "rollback",
            Reject::Unreadable { .. } => "unreadable",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reject::BadMagic { found } => write!(
                f,
                "no MCUboot image header (first word {found:#010x}, expected {IMAGE_MAGIC:#010x}): \
                 erased slot, or an unsigned binary; sign it with `bootproof image sign`"
            ),
            Reject::BadHeader { why } => write!(f, "image header is inconsistent: {why}"),
            Reject::MisalignedHeader { hdr_size, align } => write!(
                f,
                "header size {hdr_size:#x} does not align the vector table to {align:#x}: \
                 sign with --header-size {align:#x} --pad-header"
            ),
            Reject::UnsupportedFlags { flags } => write!(
                f,
                "image flags {flags:#x} ask for features this bootloader does not have \
                 (RAM load, encryption, compression): sign without them"
            ),
            Reject::NoLoadAddress => write!(
                f,
                "image has no fixed load address: sign with --rom-fixed <slot base> for the slot it is linked for"
            ),
            Reject::WrongLoadAddress { expected, found } => write!(
                f,
                "image is linked for {found:#010x} but this slot starts at {expected:#010x}: \
                 send the build linked for this slot"
            ),
            Reject::Oversize { needed, capacity } => {
                write!(f, "image needs {needed} bytes but the slot holds {capacity} (trailer excluded)")
            }
            Reject::Truncated { needed, have } => write!(
                f,
                "image is truncated: its header says {needed} bytes, only {have} present: \
                 the file or transfer is incomplete; send the whole signed image"
            ),
            Reject::TlvAreaTruncated { offset, end, have } => write!(
                f,
                "TLV area at offset {offset:#x} says it ends at {end:#x}, but the image has only {have} bytes: \
                 the file or transfer is incomplete (send the whole signed image), or the TLV info length \
                 is corrupt (sign it again)"
            ),
            Reject::BadTlvArea { why, offset } => write!(f, "TLV area at offset {offset:#x} is malformed: {why}"),
            Reject::NoHash => write!(f, "image has no SHA256 TLV: sign it (SHA-256 + Ed25519)"),
            Reject::HashMismatch => write!(f, "image hash does not match its contents: corrupted in transfer or flash"),
            Reject::NoSignature => write!(f, "image is not signed: sign it with an Ed25519 key the bootloader trusts"),
            Reject::UnknownKey => write!(f, "image is signed by a key this bootloader does not trust"),
            Reject::BadSignature => write!(f, "image signature does not verify: tampered, or signed with another key"),
            Reject::NoSecurityCounter => {
                write!(f, "image has no security counter in its protected TLVs: sign with --security-counter N")
            }
            Reject::Rollback { image, minimum } => write!(
                f,
                "image security counter {image} is below the stored minimum {minimum} (rollback refused): \
                 sign a build with --security-counter {minimum} or higher"
            ),
            Reject::Unreadable { offset } => {
                write!(f, "image unreadable at offset {offset:#x} (flash ECC error): treated as invalid")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Reject {}

fn read<S: Source>(src: &mut S, offset: u64, buf: &mut [u8]) -> Result<(), Reject> {
    let have = src.len();
    let end = offset + buf.len() as u64;
    if end > have as u64 {
        return Err(Reject::Truncated { needed: end, have });
    }
    src.read(offset as u32, buf).map_err(|e| match e {
        ReadFault::OutOfBounds => Reject::Truncated { needed: end, have },
        ReadFault::Unreadable => Reject::Unreadable { offset: offset as u32 },
    })
}

/// Read and check the header against the slot (magic, sizes, flags, load address).
pub fn check_header<S: Source>(src: &mut S, expect: &Expect) -> Result<Header, Reject> {
    let mut b = [0u8; 32];
    read(src, 0, &mut b)?;
    let h = Header::decode(&b);
    if h.magic != IMAGE_MAGIC {
        return Err(Reject::BadMagic { found: h.magic });
    }
    if (h.hdr_size as u32) < HEADER_LEN {
        return Err(Reject::BadHeader { why: "header size is smaller than the 32-byte header" });
    }
    if h.img_size == 0 {
        return Err(Reject::BadHeader { why: "image size is zero" });
    }
    if h.protect_tlv_size != 0 && h.protect_tlv_size < 4 {
        return Err(Reject::BadHeader { why: "protected TLV size is smaller than its info header" });
    }
    if expect.header_align > 1 && !(h.hdr_size as u32).is_multiple_of(expect.header_align) {
        return Err(Reject::MisalignedHeader { hdr_size: h.hdr_size, align: expect.header_align });
    }
    if h.flags & !IMAGE_F_ROM_FIXED != 0 {
        return Err(Reject::UnsupportedFlags { flags: h.flags });
    }
    if h.flags & IMAGE_F_ROM_FIXED == 0 {
        return Err(Reject::NoLoadAddress);
    }
    if h.load_addr != expect.load_addr {
        return Err(Reject::WrongLoadAddress { expected: expect.load_addr, found: h.load_addr });
    }
    // The unprotected TLV info must fit at least.
    let needed = h.hashed_len() + 4;
    if needed > expect.capacity as u64 {
        return Err(Reject::Oversize { needed, capacity: expect.capacity });
    }
    Ok(h)
}

struct Tlvs {
    offset: u64,
    end: u64,
}

/// Read a TLV area's info header at `offset`; return the entries' range. `declared` is the length
/// the image header gives the area (the protected area's `protect_tlv_size`), if any. The area
/// must fit the slot (`capacity`) and lie inside the source.
fn tlv_area<S: Source>(
    src: &mut S,
    offset: u64,
    magic: u16,
    declared: Option<u16>,
    capacity: u32,
) -> Result<Tlvs, Reject> {
    let mut info = [0u8; 4];
    read(src, offset, &mut info)?;
    let found = u16::from_le_bytes([info[0], info[1]]);
    let tot = u16::from_le_bytes([info[2], info[3]]) as u64;
    if found != magic {
        let why = if magic == TLV_PROT_INFO_MAGIC {
            "protected TLV info magic is not 0x6908"
        } else {
            "TLV info magic is not 0x6907 (image incomplete, or image size wrong)"
        };
        return Err(Reject::BadTlvArea { why, offset: offset as u32 });
    }
    if tot < 4 {
        return Err(Reject::BadTlvArea {
            why: "TLV area length is smaller than its info header",
            offset: offset as u32,
        });
    }
    if let Some(declared) = declared
        && tot != declared as u64
    {
        return Err(Reject::BadTlvArea {
            why: "protected TLV length differs from the header's protect_tlv_size",
            offset: offset as u32,
        });
    }
    let end = offset + tot;
    if end > capacity as u64 {
        return Err(Reject::Oversize { needed: end, capacity });
    }
    let have = src.len();
    if end > have as u64 {
        return Err(Reject::TlvAreaTruncated { offset: offset as u32, end, have });
    }
    Ok(Tlvs { offset: offset + 4, end })
}

impl Tlvs {
    /// Next entry: (type, value offset, value length).
    fn next<S: Source>(&mut self, src: &mut S) -> Result<Option<(u16, u64, u16)>, Reject> {
        if self.offset >= self.end {
            return Ok(None);
        }
        if self.offset + 4 > self.end {
            return Err(Reject::BadTlvArea {
                why: "TLV entry header crosses the area end",
                offset: self.offset as u32,
            });
        }
        let mut h = [0u8; 4];
        read(src, self.offset, &mut h)?;
        let t = u16::from_le_bytes([h[0], h[1]]);
        let len = u16::from_le_bytes([h[2], h[3]]);
        let value = self.offset + 4;
        if value + len as u64 > self.end {
            return Err(Reject::BadTlvArea { why: "TLV entry runs past the area end", offset: self.offset as u32 });
        }
        self.offset = value + len as u64;
        Ok(Some((t, value, len)))
    }
}

/// SHA-256 over `[0, len)` of `src`, in small chunks (no allocation).
pub fn digest<S: Source>(src: &mut S, len: u64) -> Result<[u8; 32], Reject> {
    let mut h = Sha256::new();
    let mut buf = [0u8; 256];
    let mut off = 0u64;
    while off < len {
        let n = ((len - off) as usize).min(buf.len());
        read(src, off, &mut buf[..n])?;
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.finalize().into())
}

/// The first SEC_CNT in the protected TLV area (`None` when there is none), bounds-checked.
fn protected_counter<S: Source>(src: &mut S, h: &Header, expect: &Expect) -> Result<Option<u32>, Reject> {
    let mut security_counter = None;
    if h.protect_tlv_size != 0 {
        let mut area = tlv_area(src, h.payload_end(), TLV_PROT_INFO_MAGIC, Some(h.protect_tlv_size), expect.capacity)?;
        // Its info length equals protect_tlv_size, so it ends exactly at hashed_len().
        let mut n = 0;
        while let Some((t, at, len)) = area.next(src)? {
            n += 1;
            if n > MAX_TLVS {
                return Err(Reject::BadTlvArea { why: "too many TLV entries", offset: at as u32 });
            }
            if t == tlv::SEC_CNT {
                if len != 4 {
                    return Err(Reject::BadTlvArea { why: "SEC_CNT is not 4 bytes", offset: at as u32 });
                }
                // The first SEC_CNT decides, as in MCUboot (and as `inspect` reports it).
                if security_counter.is_none() {
                    let mut v = [0u8; 4];
                    read(src, at, &mut v)?;
                    security_counter = Some(u32::from_le_bytes(v));
                }
            }
        }
    }
    Ok(security_counter)
}

/// The security counter an image *claims* (header and protected TLVs only: no hash, no
/// signature, so nothing is proven). Cheap: for deciding whether a full verification could
/// change anything.
pub fn claimed_security_counter<S: Source>(src: &mut S, expect: &Expect) -> Result<u32, Reject> {
    let h = check_header(src, expect)?;
    let needed = h.hashed_len() + 4;
    let have = src.len();
    if needed > have as u64 {
        return Err(Reject::Truncated { needed, have });
    }
    protected_counter(src, &h, expect)?.ok_or(Reject::NoSecurityCounter)
}

/// Verify an image completely: header, sizes, load address, hash, key, signature and security
/// counter. `keys` are the trusted keys; `sig` performs the Ed25519 check.
pub fn verify<S: Source, C: SignatureCheck>(
    src: &mut S,
    expect: &Expect,
    keys: &[TrustedKey],
    sig: &mut C,
) -> Result<Verified, Reject> {
    let h = check_header(src, expect)?;
    // What the header describes (header, payload, protected TLVs and the unprotected TLV info)
    // must be present before any of it is believed.
    let needed = h.hashed_len() + 4;
    let have = src.len();
    if needed > have as u64 {
        return Err(Reject::Truncated { needed, have });
    }
    let security_counter = protected_counter(src, &h, expect)?;
    let digest = digest(src, h.hashed_len())?;
    // Unprotected area: hash, key, signature.
    let mut area = tlv_area(src, h.hashed_len(), TLV_INFO_MAGIC, None, expect.capacity)?;
    let total_len = area.end as u32;
    let mut hash_ok = None;
    let mut key: Option<Option<usize>> = None; // Some(None): a key named but not trusted
    let mut saw_sig = false;
    let mut saw_trusted_sig = false;
    let mut verified_key = None;
    let mut n = 0;
    while let Some((t, at, len)) = area.next(src)? {
        n += 1;
        if n > MAX_TLVS {
            return Err(Reject::BadTlvArea { why: "too many TLV entries", offset: at as u32 });
        }
        match t {
            tlv::SHA256 => {
                if len != 32 {
                    return Err(Reject::BadTlvArea { why: "SHA256 is not 32 bytes", offset: at as u32 });
                }
                let mut v = [0u8; 32];
                read(src, at, &mut v)?;
                // The first SHA256 TLV decides, as in MCUboot.
                hash_ok.get_or_insert(v == digest);
            }
            tlv::KEYHASH => {
                if len != 32 {
                    return Err(Reject::BadTlvArea { why: "KEYHASH is not 32 bytes", offset: at as u32 });
                }
                let mut v = [0u8; 32];
                read(src, at, &mut v)?;
                key = Some(keys.iter().position(|k| k.hash == v));
            }
            tlv::PUBKEY => {
                if len as usize != ED25519_SPKI_PREFIX.len() + 32 {
                    key = Some(None);
                    continue;
                }
                let mut v = [0u8; 44];
                read(src, at, &mut v)?;
                key = Some(if v[..12] == ED25519_SPKI_PREFIX {
                    keys.iter().position(|k| k.public[..] == v[12..])
                } else {
                    None
                });
            }
            tlv::ED25519 => {
                saw_sig = true;
                if len != 64 {
                    return Err(Reject::BadTlvArea { why: "ED25519 signature is not 64 bytes", offset: at as u32 });
                }
                let Some(Some(k)) = key else { continue };
                saw_trusted_sig = true;
                // The signature is over the digest computed above, so it can be checked before
                // the SHA256 TLV is seen (TLV order does not matter); a hash already known to
                // mismatch rejects the image anyway, so the costly check is skipped then.
                if hash_ok == Some(false) || verified_key.is_some() {
                    continue;
                }
                let mut s = [0u8; 64];
                read(src, at, &mut s)?;
                if sig.ed25519(&keys[k].public, &digest, &s) {
                    verified_key = Some(k);
                }
            }
            tlv::SIG_PURE => {
                return Err(Reject::BadTlvArea {
                    why: "pure signatures (SIG_PURE) are not supported: sign the digest (imgtool without --pure)",
                    offset: at as u32,
                });
            }
            _ => {}
        }
    }
    match hash_ok {
        None => return Err(Reject::NoHash),
        Some(false) => return Err(Reject::HashMismatch),
        Some(true) => {}
    }
    let Some(key_index) = verified_key else {
        return Err(if !saw_sig {
            Reject::NoSignature
        } else if !saw_trusted_sig {
            Reject::UnknownKey
        } else {
            Reject::BadSignature
        });
    };
    let security_counter = security_counter.ok_or(Reject::NoSecurityCounter)?;
    if security_counter < expect.min_security_counter {
        return Err(Reject::Rollback { image: security_counter, minimum: expect.min_security_counter });
    }
    Ok(Verified { header: h, security_counter, digest, key_index, total_len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn version_parse_display_and_boot_order() {
        let v = ImageVersion::parse("1.2.3+4").unwrap();
        assert_eq!(v, ImageVersion::new(1, 2, 3, 4));
        assert_eq!(v.to_string(), "1.2.3+4");
        assert_eq!(ImageVersion::parse("2").unwrap(), ImageVersion::new(2, 0, 0, 0));
        assert_eq!(ImageVersion::parse("1.2.3.4"), None);
        assert_eq!(ImageVersion::parse("256.0.0"), None);
        assert_eq!(ImageVersion::parse("x"), None);
        assert_eq!(ImageVersion::new(1, 2, 3, 9).boot_cmp(&ImageVersion::new(1, 2, 3, 0)), Ordering::Equal);
        assert_eq!(ImageVersion::new(1, 10, 0, 0).boot_cmp(&ImageVersion::new(1, 9, 99, 0)), Ordering::Greater);
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            magic: IMAGE_MAGIC,
            load_addr: 0x0802_0000,
            hdr_size: 0x400,
            protect_tlv_size: 12,
            img_size: 1234,
            flags: IMAGE_F_ROM_FIXED,
            version: ImageVersion::new(1, 2, 3, 4),
        };
        assert_eq!(Header::decode(&h.encode()), h);
        assert_eq!(h.hashed_len(), 0x400 + 1234 + 12);
    }

    #[test]
    fn slice_source_reports_out_of_bounds() {
        let data = [1u8, 2, 3];
        let mut s: &[u8] = &data;
        let mut b = [0u8; 2];
        assert_eq!(s.read(1, &mut b), Ok(()));
        assert_eq!(b, [2, 3]);
        assert_eq!(s.read(2, &mut b), Err(ReadFault::OutOfBounds));
        assert_eq!(s.read(u32::MAX, &mut b), Err(ReadFault::OutOfBounds));
    }
}
