//! Test support shared by the integration tests and the fuzz-seed example: a structure-aware image
//! builder and a map of where each structure lies in the image it builds.
//!
//! The builder lays images out exactly as [`fut_image::sign::sign`] does (checked by
//! `builder_matches_the_signer` in `robustness.rs`), with the knobs the signer does not have:
//! PUBKEY instead of KEYHASH, no protected area or extra protected TLVs, extra unprotected TLVs
//! after the signature, any header flags.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fut_image::keys::SigningKey;
use fut_image::{
    ED25519_SPKI_PREFIX, Ed25519Verify, Expect, Header, IMAGE_F_ROM_FIXED, IMAGE_MAGIC, ImageVersion, Reject,
    TLV_INFO_MAGIC, TLV_PROT_INFO_MAGIC, Verified, tlv, verify,
};
use sha2::{Digest, Sha256};

/// Slot A's base (where the images are linked).
pub const A: u32 = 0x0802_0000;
/// Slot B's base.
pub const B: u32 = 0x0808_0000;
/// Slot capacity on the H723 (slot minus trailer).
pub const CAPACITY: u32 = 0x6_0000 - 128;
/// The header size the H723 needs (vector table alignment).
pub const HDR: u16 = 0x400;

/// A test key from `fixtures/keys`.
pub fn key_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keys").join(name)
}

/// Load a test key from `fixtures/keys`.
pub fn key(name: &str) -> SigningKey {
    SigningKey::load(&key_path(name)).unwrap()
}

/// What slot A expects, with `min_security_counter`.
pub fn expect(min_security_counter: u32) -> Expect {
    Expect { load_addr: A, capacity: CAPACITY, header_align: HDR as u32, min_security_counter }
}

/// How the signing key is named in the unprotected TLVs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTlv {
    /// KEYHASH: SHA-256 of the key's SubjectPublicKeyInfo (imgtool's default).
    KeyHash,
    /// PUBKEY: the SubjectPublicKeyInfo itself (`imgtool --public-key-format full`).
    PubKey,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The payload (may be empty here, unlike with the signer).
    pub payload: Vec<u8>,
    /// `ih_load_addr`.
    pub load_addr: u32,
    /// `ih_hdr_size`.
    pub header_size: u16,
    /// `ih_flags`.
    pub flags: u32,
    /// `ih_ver`.
    pub version: ImageVersion,
    /// Protected TLVs in order; empty: no protected area (`protect_tlv_size` 0).
    pub protected: Vec<(u16, Vec<u8>)>,
    /// KEYHASH or PUBKEY.
    pub key_tlv: KeyTlv,
    /// Unprotected TLVs after the signature.
    pub trailing: Vec<(u16, Vec<u8>)>,
}

impl Spec {
    /// What `sign()` makes for slot A: SEC_CNT `security_counter`, KEYHASH, version 1.2.3.
    pub fn new(payload: Vec<u8>, security_counter: u32) -> Spec {
        Spec {
            payload,
            load_addr: A,
            header_size: HDR,
            flags: IMAGE_F_ROM_FIXED,
            version: ImageVersion::new(1, 2, 3, 0),
            protected: vec![(tlv::SEC_CNT, security_counter.to_le_bytes().to_vec())],
            key_tlv: KeyTlv::KeyHash,
            trailing: Vec::new(),
        }
    }

    /// Sign it with `key` (SHA256, key TLV, ED25519 over the digest, then `trailing`).
    pub fn build(&self, key: &SigningKey, name: impl Into<String>) -> Image {
        let mut out = Vec::new();
        let mut tlvs = Vec::new();
        let prot_len = if self.protected.is_empty() {
            0
        } else {
            4 + self.protected.iter().map(|(_, v)| 4 + v.len()).sum::<usize>()
        };
        let header = Header {
            magic: IMAGE_MAGIC,
            load_addr: self.load_addr,
            hdr_size: self.header_size,
            protect_tlv_size: prot_len as u16,
            img_size: self.payload.len() as u32,
            flags: self.flags,
            version: self.version,
        };
        out.extend_from_slice(&header.encode());
        out.resize(self.header_size as usize, 0xFF);
        out.extend_from_slice(&self.payload);
        let payload_end = out.len();
        if !self.protected.is_empty() {
            out.extend_from_slice(&TLV_PROT_INFO_MAGIC.to_le_bytes());
            out.extend_from_slice(&(prot_len as u16).to_le_bytes());
            for (t, v) in &self.protected {
                entry(&mut out, &mut tlvs, true, *t, v);
            }
        }
        let hashed_len = out.len();
        let digest: [u8; 32] = Sha256::digest(&out).into();
        let trusted = key.trusted();
        let mut area = Vec::new();
        let mut area_tlvs = Vec::new();
        entry(&mut area, &mut area_tlvs, false, tlv::SHA256, &digest);
        match self.key_tlv {
            KeyTlv::KeyHash => entry(&mut area, &mut area_tlvs, false, tlv::KEYHASH, &trusted.hash),
            KeyTlv::PubKey => {
                let mut spki = ED25519_SPKI_PREFIX.to_vec();
                spki.extend_from_slice(&trusted.public);
                entry(&mut area, &mut area_tlvs, false, tlv::PUBKEY, &spki);
            }
        }
        entry(&mut area, &mut area_tlvs, false, tlv::ED25519, &key.sign_digest(&digest));
        for (t, v) in &self.trailing {
            entry(&mut area, &mut area_tlvs, false, *t, v);
        }
        out.extend_from_slice(&TLV_INFO_MAGIC.to_le_bytes());
        out.extend_from_slice(&((area.len() + 4) as u16).to_le_bytes());
        let base = out.len();
        out.extend_from_slice(&area);
        tlvs.extend(area_tlvs.into_iter().map(|t| TlvAt { offset: t.offset + base, ..t }));
        Image {
            name: name.into(),
            bytes: out,
            hdr_size: self.header_size as usize,
            payload_end,
            hashed_len,
            tlvs,
            security_counter: self
                .protected
                .iter()
                .find(|(t, _)| *t == tlv::SEC_CNT)
                .map(|(_, v)| u32::from_le_bytes(v[..4].try_into().unwrap())),
            digest,
        }
    }
}

fn entry(out: &mut Vec<u8>, tlvs: &mut Vec<TlvAt>, protected: bool, kind: u16, value: &[u8]) {
    tlvs.push(TlvAt { protected, offset: out.len(), kind, len: value.len() });
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

/// Where one TLV entry lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlvAt {
    /// In the protected area.
    pub protected: bool,
    /// Offset of its 4-byte entry header.
    pub offset: usize,
    /// Type.
    pub kind: u16,
    /// Value length.
    pub len: usize,
}

impl TlvAt {
    /// Offset of the value.
    pub fn value(&self) -> usize {
        self.offset + 4
    }
    /// Offset just past the value.
    pub fn end(&self) -> usize {
        self.offset + 4 + self.len
    }
}

/// A built image and its map.
#[derive(Clone, Debug)]
pub struct Image {
    /// A name for messages.
    pub name: String,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Header size (payload offset).
    pub hdr_size: usize,
    /// End of the payload = the protected area's info header (if any).
    pub payload_end: usize,
    /// End of the hashed region = the unprotected area's info header.
    pub hashed_len: usize,
    /// Every TLV entry, protected first, in order.
    pub tlvs: Vec<TlvAt>,
    /// The first SEC_CNT, if any.
    pub security_counter: Option<u32>,
    /// SHA-256 of the hashed region.
    pub digest: [u8; 32],
}

impl Image {
    /// Total length.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    /// Whether it has a protected TLV area.
    pub fn has_protected(&self) -> bool {
        self.hashed_len > self.payload_end
    }
    /// The first entry of `kind` in the given area.
    pub fn find(&self, kind: u16, protected: bool) -> Option<TlvAt> {
        self.tlvs.iter().copied().find(|t| t.kind == kind && t.protected == protected)
    }
    /// The entries of one area.
    pub fn area(&self, protected: bool) -> impl Iterator<Item = TlvAt> + '_ {
        self.tlvs.iter().copied().filter(move |t| t.protected == protected)
    }
    /// Offset of an area's info header.
    pub fn info(&self, protected: bool) -> usize {
        if protected { self.payload_end } else { self.hashed_len }
    }
    /// End of an area.
    pub fn area_end(&self, protected: bool) -> usize {
        if protected { self.hashed_len } else { self.len() }
    }
}

/// Little-endian field writers.
pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
/// See [`put_u16`].
pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
/// Read a little-endian u16.
pub fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Verify `bytes` for slot A against the one trusted `key`.
pub fn check_with(bytes: &[u8], e: &Expect, key: &fut_image::TrustedKey) -> Result<Verified, Reject> {
    verify(&mut &bytes[..], e, &[*key], &mut Ed25519Verify)
}

/// What `inspect` says about an accepted image must agree with the verdict, and the bytes the
/// hash covers must be the signed ones (checked independently of `verify`).
pub fn assert_consistent(bytes: &[u8], v: &Verified, key: &fut_image::TrustedKey) {
    use ed25519_dalek::{Signature, VerifyingKey};
    assert!(v.total_len as usize <= bytes.len(), "total_len {} > source length {}", v.total_len, bytes.len());
    let r = fut_image::inspect::inspect(bytes).expect("verify accepted it, so inspect must read it");
    assert_eq!(r.header, v.header);
    assert_eq!(r.header.version, v.version());
    assert_eq!(r.header.load_addr, v.header.load_addr);
    assert_eq!(r.security_counter(), Some(v.security_counter));
    assert_eq!(r.total_len, Some(v.total_len as usize));
    assert_eq!(r.computed_hash, Some(v.digest));
    assert_eq!(r.hash_matches(), Some(true));
    assert!(r.problems.iter().all(|p| p.contains("after the TLVs")), "{:?}", r.problems);
    let h = Header::decode(bytes[..32].try_into().unwrap());
    let hashed = h.hdr_size as usize + h.img_size as usize + h.protect_tlv_size as usize;
    let digest: [u8; 32] = Sha256::digest(&bytes[..hashed]).into();
    assert_eq!(digest, v.digest);
    let pk = VerifyingKey::from_bytes(&key.public).unwrap();
    let signed = r
        .tlvs
        .iter()
        .filter(|t| !t.protected && t.kind == tlv::ED25519 && t.value.len() == 64)
        .any(|t| pk.verify_strict(&digest, &Signature::from_bytes(t.value[..].try_into().unwrap())).is_ok());
    assert!(signed, "no ED25519 TLV verifies over the hashed bytes");
}
