//! Write signed seed images for the cargo-fuzz corpus (`fuzz/run.sh` runs it before fuzzing):
//!
//! ```text
//! cargo run -p fut-image --features std --example fuzz_seeds -- DIR
//! ```
//!
//! The images are signed here with the test key (`fixtures/keys/test-ed25519-a.pem`, which the
//! fuzz target trusts) in the layouts the tests build: KEYHASH and PUBKEY, with and without extra
//! unknown TLVs in both areas, without a protected area, and for both slots. Each one that should
//! verify is checked to verify before it is written, so the fuzzer starts from accepted images.

#[path = "../tests/support/mod.rs"]
mod support;

use std::error::Error;
use std::path::PathBuf;

use fut_image::{Reject, tlv};
use support::{B, KeyTlv, Spec, check_with, expect, key};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(std::env::args_os().nth(1).ok_or("usage: fuzz_seeds DIR")?);
    std::fs::create_dir_all(&dir)?;
    let k = key("test-ed25519-a.pem");
    let trusted = k.trusted();
    let mut written = 0;
    for size in [1usize, 31, 32, 700] {
        for key_tlv in [KeyTlv::KeyHash, KeyTlv::PubKey] {
            for extras in [false, true] {
                let payload: Vec<u8> = (0..size).map(|i| (i * 37 + 11) as u8).collect();
                let mut s = Spec::new(payload, 3);
                s.key_tlv = key_tlv;
                if extras {
                    s.protected.push((0x7F01, vec![0xA5; 6]));
                    s.trailing.push((0x00A0, b"BOOT".to_vec()));
                }
                let kt = if key_tlv == KeyTlv::KeyHash { "keyhash" } else { "pubkey" };
                let name = format!("signed-{size}-{kt}{}.bin", if extras { "-extra-tlvs" } else { "" });
                let img = s.build(&k, &name);
                check_with(&img.bytes, &expect(1), &trusted).map_err(|r| format!("{name}: {r}"))?;
                std::fs::write(dir.join(&name), &img.bytes)?;
                written += 1;
            }
        }
    }
    // Slot B, and an image without protected TLVs (which has no security counter).
    let mut s = Spec::new(vec![0x3C; 100], 2);
    s.load_addr = B;
    std::fs::write(dir.join("signed-100-slot-b.bin"), s.build(&k, "").bytes)?;
    let mut s = Spec::new(vec![0x3C; 100], 2);
    s.protected.clear();
    s.trailing.push((tlv::SEC_CNT, 2u32.to_le_bytes().to_vec()));
    let img = s.build(&k, "");
    assert_eq!(check_with(&img.bytes, &expect(1), &trusted), Err(Reject::NoSecurityCounter));
    std::fs::write(dir.join("signed-100-no-protected-tlvs.bin"), img.bytes)?;
    written += 2;
    println!("{written} signed seed images in {}", dir.display());
    Ok(())
}
