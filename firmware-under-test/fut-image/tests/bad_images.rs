//! Every kind of bad image is rejected with its named reason, and no corruption of a valid
//! image gets through.

use std::path::Path;

use fut_image::keys::SigningKey;
use fut_image::sign::{SignOptions, sign};
use fut_image::{Ed25519Verify, Expect, Header, IMAGE_MAGIC, ImageVersion, Reject, verify};

fn key(name: &str) -> SigningKey {
    SigningKey::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keys").join(name)).unwrap()
}

const A: u32 = 0x0802_0000;
const EXPECT: Expect = Expect { load_addr: A, capacity: 0x6_0000 - 128, header_align: 0x400, min_security_counter: 3 };

fn opts() -> SignOptions {
    SignOptions { load_addr: A, header_size: 0x400, version: ImageVersion::new(1, 0, 0, 0), security_counter: 3 }
}

fn good() -> Vec<u8> {
    let payload: Vec<u8> = (0..1200u32).map(|i| (i * 13 + 1) as u8).collect();
    sign(&payload, &key("test-ed25519-a.pem"), &opts()).unwrap()
}

fn check(img: &[u8]) -> Result<fut_image::Verified, Reject> {
    verify(&mut &img[..], &EXPECT, &[key("test-ed25519-a.pem").trusted()], &mut Ed25519Verify)
}

fn with_header(img: &[u8], f: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut out = img.to_vec();
    let mut h = Header::decode(out[..32].try_into().unwrap());
    f(&mut h);
    out[..32].copy_from_slice(&h.encode());
    out
}

#[test]
fn the_good_image_verifies() {
    let v = check(&good()).unwrap();
    assert_eq!(v.security_counter, 3);
}

#[test]
fn corrupted_payload() {
    let mut img = good();
    img[0x400 + 600] ^= 0x80;
    assert_eq!(check(&img), Err(Reject::HashMismatch));
}

/// Offset of the unprotected TLV area (= end of the hashed region).
fn tlv_info(img: &[u8]) -> usize {
    Header::decode(img[..32].try_into().unwrap()).hashed_len() as usize
}

#[test]
fn truncated_images() {
    let img = good();
    let info = tlv_info(&img);
    // Before the unprotected TLV info: shorter than the header says.
    for len in [0, 16, 31] {
        assert_eq!(check(&img[..len]), Err(Reject::Truncated { needed: 32, have: len as u32 }), "length {len}");
    }
    for len in [32, 0x400, 0x400 + 1199, info, info + 3] {
        let want = Reject::Truncated { needed: info as u64 + 4, have: len as u32 };
        assert_eq!(check(&img[..len]), Err(want), "length {len}");
    }
    // Inside the unprotected TLVs: the area runs past the end.
    for len in [info + 4, img.len() - 80, img.len() - 1] {
        let want = Reject::TlvAreaTruncated { offset: info as u32, end: img.len() as u64, have: len as u32 };
        assert_eq!(check(&img[..len]), Err(want), "length {len}");
    }
}

/// Append an unprotected TLV entry declaring `declared` bytes with `value` present, and add
/// `counted` bytes to the area's info total.
fn append_tlv(img: &[u8], kind: u16, declared: u16, value: &[u8], counted: u16) -> Vec<u8> {
    let info = tlv_info(img);
    let mut m = img.to_vec();
    m.extend_from_slice(&kind.to_le_bytes());
    m.extend_from_slice(&declared.to_le_bytes());
    m.extend_from_slice(value);
    let tot = u16::from_le_bytes([m[info + 2], m[info + 3]]) + counted;
    m[info + 2..info + 4].copy_from_slice(&tot.to_le_bytes());
    m
}

/// Review finding: the value of an unknown unprotected TLV was never bounds-checked, so an
/// unknown TLV declared past the end of the file verified, with a `total_len` past the file.
#[test]
fn unknown_tlv_past_the_end_of_the_file_is_rejected() {
    let img = good();
    let info = tlv_info(&img);
    // The area's info total counts the whole declared value: the area runs past the file.
    let m = append_tlv(&img, 0x00A0, 100, &[0xEE; 10], 104);
    let r = check(&m).unwrap_err();
    assert_eq!(r, Reject::TlvAreaTruncated { offset: info as u32, end: img.len() as u64 + 104, have: m.len() as u32 });
    assert_eq!(r.name(), "tlv-area-truncated");
    let text = r.to_string();
    assert!(text.contains("ends at") && text.contains("send the whole signed image"), "{text}");
    // Nothing of it present, one byte declared.
    let m = append_tlv(&img, 0x00A0, 1, &[], 5);
    assert!(matches!(check(&m), Err(Reject::TlvAreaTruncated { .. })));
    // The info total counts only what is present: the entry runs past its area.
    let m = append_tlv(&img, 0x00A0, 100, &[0xEE; 10], 14);
    assert_eq!(
        check(&m),
        Err(Reject::BadTlvArea { why: "TLV entry runs past the area end", offset: img.len() as u32 })
    );
    // Complete, the unknown TLV is accepted (unprotected TLVs are not signed, as in MCUboot) and
    // counted in the total length.
    let m = append_tlv(&img, 0x00A0, 10, &[0xEE; 10], 14);
    assert_eq!(check(&m).unwrap().total_len as usize, m.len());
}

#[test]
fn an_accepted_images_total_len_never_exceeds_the_source() {
    let img = good();
    let with_unknown = append_tlv(&img, 0x00A0, 16, &[0xEE; 16], 20);
    for full in [img, with_unknown] {
        let mut source = full.clone();
        source.extend_from_slice(&[0xFF; 64]);
        source.extend_from_slice(&[0x00; 64]);
        let mut accepted = 0;
        for n in 0..=source.len() {
            match check(&source[..n]) {
                Ok(v) => {
                    assert!(v.total_len as usize <= n, "total_len {} from {n} bytes", v.total_len);
                    assert_eq!(v.total_len as usize, full.len());
                    accepted += 1;
                }
                Err(r) => assert!(n < full.len(), "{n} bytes: {r}"),
            }
        }
        assert_eq!(accepted, source.len() - full.len() + 1);
    }
}

#[test]
fn header_garbage() {
    let img = good();
    let mut g = img.clone();
    g[..32].copy_from_slice(&[0x5A; 32]);
    assert_eq!(check(&g), Err(Reject::BadMagic { found: 0x5A5A_5A5A }));
    let erased = vec![0xFF; 4096];
    assert_eq!(check(&erased), Err(Reject::BadMagic { found: 0xFFFF_FFFF }));
    assert!(matches!(check(&with_header(&img, |h| h.hdr_size = 8)), Err(Reject::BadHeader { .. })));
    assert!(matches!(check(&with_header(&img, |h| h.img_size = 0)), Err(Reject::BadHeader { .. })));
    assert!(matches!(check(&with_header(&img, |h| h.protect_tlv_size = 2)), Err(Reject::BadHeader { .. })));
    assert_eq!(check(&with_header(&img, |h| h.flags |= 0x20)), Err(Reject::UnsupportedFlags { flags: 0x120 }));
    assert_eq!(check(&with_header(&img, |h| h.flags |= 0x04)), Err(Reject::UnsupportedFlags { flags: 0x104 }));
    // A changed size field: the TLV info is no longer where it says.
    assert!(matches!(check(&with_header(&img, |h| h.img_size += 4)), Err(Reject::BadTlvArea { .. })));
    // Any header change that still parses breaks the hash.
    assert_eq!(check(&with_header(&img, |h| h.version.build = 9)), Err(Reject::HashMismatch));
    assert_eq!(IMAGE_MAGIC, u32::from_le_bytes(img[..4].try_into().unwrap()));
}

#[test]
fn oversize_image() {
    assert!(matches!(
        check(&with_header(&good(), |h| h.img_size = 0x6_0000)),
        Err(Reject::Oversize { capacity: 0x5_FF80, .. })
    ));
    let big = sign(&vec![0x11; 0x6_0000 - 0x400 - 100], &key("test-ed25519-a.pem"), &opts()).unwrap();
    assert!(matches!(check(&big), Err(Reject::Oversize { .. })));
}

#[test]
fn misaligned_header_size() {
    let img = sign(&[1; 100], &key("test-ed25519-a.pem"), &SignOptions { header_size: 0x200, ..opts() }).unwrap();
    assert_eq!(check(&img), Err(Reject::MisalignedHeader { hdr_size: 0x200, align: 0x400 }));
}

#[test]
fn bad_signature_and_unknown_key() {
    let mut img = good();
    let n = img.len();
    img[n - 10] ^= 0x01; // inside the Ed25519 signature (the last TLV)
    assert_eq!(check(&img), Err(Reject::BadSignature));
    let other = sign(&[7; 300], &key("test-ed25519-b.pem"), &opts()).unwrap();
    assert_eq!(check(&other), Err(Reject::UnknownKey));
    // No signature at all: drop the ED25519 TLV and fix the area length.
    let mut unsigned = good();
    unsigned.truncate(unsigned.len() - 68);
    let info = unsigned.len() - (4 + 36 + 36);
    let tot = u16::from_le_bytes([unsigned[info + 2], unsigned[info + 3]]) - 68;
    unsigned[info + 2..info + 4].copy_from_slice(&tot.to_le_bytes());
    assert_eq!(check(&unsigned), Err(Reject::NoSignature));
}

#[test]
fn wrong_load_address() {
    let img = sign(&[1; 100], &key("test-ed25519-a.pem"), &SignOptions { load_addr: 0x0808_0000, ..opts() }).unwrap();
    assert_eq!(check(&img), Err(Reject::WrongLoadAddress { expected: A, found: 0x0808_0000 }));
}

#[test]
fn rollback_below_the_security_counter() {
    let img = sign(&[1; 100], &key("test-ed25519-a.pem"), &SignOptions { security_counter: 2, ..opts() }).unwrap();
    assert_eq!(check(&img), Err(Reject::Rollback { image: 2, minimum: 3 }));
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let img = good();
    let k = [key("test-ed25519-a.pem").trusted()];
    let mut rejected = 0;
    for i in 0..img.len() {
        for bit in 0..8 {
            let mut m = img.clone();
            m[i] ^= 1 << bit;
            let r = verify(&mut &m[..], &EXPECT, &k, &mut Ed25519Verify);
            assert!(r.is_err(), "flip of bit {bit} at {i:#x} accepted");
            rejected += 1;
        }
    }
    println!("single-bit flips rejected: {rejected} of {}", img.len() * 8);
}

#[test]
fn every_reason_says_what_to_do() {
    let reasons = [
        Reject::BadMagic { found: 0 },
        Reject::MisalignedHeader { hdr_size: 0x20, align: 0x400 },
        Reject::NoLoadAddress,
        Reject::WrongLoadAddress { expected: 1, found: 2 },
        Reject::NoSecurityCounter,
        Reject::Rollback { image: 1, minimum: 2 },
        Reject::NoSignature,
        Reject::Truncated { needed: 10, have: 5 },
        Reject::TlvAreaTruncated { offset: 0x500, end: 0x600, have: 0x580 },
    ];
    for r in reasons {
        let s = r.to_string();
        assert!(s.contains("sign") || s.contains("send"), "{}: {s}", r.name());
    }
}
