//! The parser on hostile input, on stable Rust (the cargo-fuzz target in `fuzz/` explores
//! further on nightly): 200,000 seeded mutations of a valid image — byte changes, header field
//! rewrites, truncations, extensions — never panic, and anything accepted is consistent.

use std::path::Path;

use fut_image::keys::SigningKey;
use fut_image::sign::{SignOptions, sign};
use fut_image::{Ed25519Verify, Expect, ImageVersion, verify};

#[test]
fn seeded_mutations_never_panic() {
    let key = SigningKey::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keys/test-ed25519-a.pem"))
        .unwrap();
    let opts = SignOptions {
        load_addr: 0x0802_0000,
        header_size: 0x400,
        version: ImageVersion::new(1, 0, 0, 0),
        security_counter: 1,
    };
    let good = sign(&[0x3C; 700], &key, &opts).unwrap();
    let keys = [key.trusted()];
    let e = Expect { load_addr: 0x0802_0000, capacity: 0x5_FF80, header_align: 0x400, min_security_counter: 0 };
    let mut x: u64 = 0x5EED_1234_ABCD_0001;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let fields = [0usize, 4, 8, 10, 12, 16, 20];
    let tail = good.len() - 160;
    let (mut accepted, mut rejected) = (0u32, 0u32);
    for _ in 0..200_000 {
        let mut m = good.clone();
        match rnd() % 20 {
            0..=4 => {
                for _ in 0..1 + rnd() % 4 {
                    let i = (rnd() as usize) % m.len();
                    m[i] = rnd() as u8;
                }
            }
            5..=9 => {
                // A header field gets an arbitrary value.
                let f = fields[(rnd() as usize) % fields.len()];
                let v = (rnd() as u32).to_le_bytes();
                let w = if f == 8 || f == 10 { 2 } else { 4 };
                m[f..f + w].copy_from_slice(&v[..w]);
            }
            10..=14 => {
                // The TLV areas get arbitrary bytes.
                let i = tail + (rnd() as usize) % (m.len() - tail);
                m[i] = rnd() as u8;
            }
            15..=18 => m.truncate((rnd() as usize) % m.len()),
            _ => m.extend((0..rnd() % 300).map(|_| rnd() as u8)),
        }
        match verify(&mut &m[..], &e, &keys, &mut Ed25519Verify) {
            Ok(v) => {
                accepted += 1;
                // Only changes outside the signed content can be accepted: trailing bytes.
                assert!(m.len() >= good.len() && m[..good.len()] == good[..], "accepted a changed image");
                assert_eq!(v.total_len as usize, good.len());
            }
            Err(r) => {
                rejected += 1;
                assert!(!r.name().is_empty());
            }
        }
        let _ = fut_image::inspect::inspect(&m).map(|r| r.to_string());
    }
    println!("mutations: {rejected} rejected, {accepted} accepted (only unchanged images with extra trailing bytes)");
    assert!(rejected > 180_000);
}
