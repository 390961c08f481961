//! Signing, byte-compatible with MCUboot's `imgtool sign --pad-header --rom-fixed ADDR
//! --header-size H -v VERSION -s COUNTER -k KEY.pem` for an Ed25519 key: Ed25519 signatures
//! are deterministic, so both tools produce the same bytes for the same inputs.

use std::vec::Vec;

use sha2::{Digest, Sha256};

use crate::keys::SigningKey;
use crate::{
    HEADER_LEN, Header, IMAGE_F_ROM_FIXED, IMAGE_MAGIC, ImageVersion, TLV_INFO_MAGIC, TLV_PROT_INFO_MAGIC, tlv,
};

/// How to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignOptions {
    /// The slot base the image is linked for (`--rom-fixed`).
    pub load_addr: u32,
    /// Header size; the payload (vector table first) starts here (`--header-size`).
    pub header_size: u16,
    /// Version (`-v`).
    pub version: ImageVersion,
    /// Security counter (`-s`).
    pub security_counter: u32,
}

/// Why signing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Empty payload.
    #[error("the payload is empty: give the application binary (vector table first)")]
    Empty,
    /// Header size too small.
    #[error("header size {0:#x} is smaller than the 32-byte header")]
    HeaderTooSmall(u16),
    /// Payload over 4 GiB.
    #[error("payload of {0} bytes is too large for an MCUboot image")]
    TooLarge(usize),
}

fn tlv_entry(out: &mut Vec<u8>, t: u16, value: &[u8]) {
    out.extend_from_slice(&t.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

/// Sign `payload` (the application binary, vector table first, linked for
/// `load_addr + header_size`) into a complete image.
pub fn sign(payload: &[u8], key: &SigningKey, opts: &SignOptions) -> Result<Vec<u8>, SignError> {
    if payload.is_empty() {
        return Err(SignError::Empty);
    }
    if (opts.header_size as u32) < HEADER_LEN {
        return Err(SignError::HeaderTooSmall(opts.header_size));
    }
    let img_size = u32::try_from(payload.len()).map_err(|_| SignError::TooLarge(payload.len()))?;
    // Protected TLVs: the security counter.
    let mut prot = Vec::new();
    tlv_entry(&mut prot, tlv::SEC_CNT, &opts.security_counter.to_le_bytes());
    let prot_len = (prot.len() + 4) as u16;
    let header = Header {
        magic: IMAGE_MAGIC,
        load_addr: opts.load_addr,
        hdr_size: opts.header_size,
        protect_tlv_size: prot_len,
        img_size,
        flags: IMAGE_F_ROM_FIXED,
        version: opts.version,
    };
    let mut out = Vec::with_capacity(opts.header_size as usize + payload.len() + 160);
    out.extend_from_slice(&header.encode());
    // Header padding is erased flash (0xFF), as `imgtool --pad-header` writes it: those words
    // are never programmed.
    out.resize(opts.header_size as usize, 0xFF);
    out.extend_from_slice(payload);
    out.extend_from_slice(&TLV_PROT_INFO_MAGIC.to_le_bytes());
    out.extend_from_slice(&prot_len.to_le_bytes());
    out.extend_from_slice(&prot);
    let digest: [u8; 32] = Sha256::digest(&out).into();
    let trusted = key.trusted();
    let mut tlvs = Vec::new();
    tlv_entry(&mut tlvs, tlv::SHA256, &digest);
    tlv_entry(&mut tlvs, tlv::KEYHASH, &trusted.hash);
    tlv_entry(&mut tlvs, tlv::ED25519, &key.sign_digest(&digest));
    out.extend_from_slice(&TLV_INFO_MAGIC.to_le_bytes());
    out.extend_from_slice(&((tlvs.len() + 4) as u16).to_le_bytes());
    out.extend_from_slice(&tlvs);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ed25519Verify, Expect, Reject, TrustedKey, verify};
    use std::path::Path;

    fn key(name: &str) -> SigningKey {
        SigningKey::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keys").join(name)).unwrap()
    }

    fn opts() -> SignOptions {
        SignOptions {
            load_addr: 0x0802_0000,
            header_size: 0x400,
            version: ImageVersion::new(1, 2, 3, 0),
            security_counter: 5,
        }
    }

    const EXPECT: Expect =
        Expect { load_addr: 0x0802_0000, capacity: 0x5_FF80, header_align: 0x400, min_security_counter: 0 };

    #[test]
    fn signed_image_verifies_and_reports_its_fields() {
        let k = key("test-ed25519-a.pem");
        let img = sign(&[0x5A; 1000], &k, &opts()).unwrap();
        let v = verify(&mut &img[..], &EXPECT, &[k.trusted()], &mut Ed25519Verify).unwrap();
        assert_eq!(v.version(), ImageVersion::new(1, 2, 3, 0));
        assert_eq!(v.security_counter, 5);
        assert_eq!(v.total_len as usize, img.len());
        assert_eq!(v.vector_table(), 0x0802_0400);
        // Trusting several keys: the index of the signer.
        let other = key("test-ed25519-b.pem").trusted();
        let v = verify(&mut &img[..], &EXPECT, &[other, k.trusted()], &mut Ed25519Verify).unwrap();
        assert_eq!(v.key_index, 1);
        // Not trusting it.
        assert_eq!(verify(&mut &img[..], &EXPECT, &[other], &mut Ed25519Verify), Err(Reject::UnknownKey));
        let none: [TrustedKey; 0] = [];
        assert_eq!(verify(&mut &img[..], &EXPECT, &none, &mut Ed25519Verify), Err(Reject::UnknownKey));
    }

    #[test]
    fn bad_options_are_refused() {
        let k = key("test-ed25519-a.pem");
        assert_eq!(sign(&[], &k, &opts()), Err(SignError::Empty));
        assert_eq!(sign(&[1], &k, &SignOptions { header_size: 16, ..opts() }), Err(SignError::HeaderTooSmall(16)));
    }
}
