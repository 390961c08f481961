//! Fuzz the image parser and verifier: any input, any slot expectation, no panic, no
//! out-of-bounds, and a verdict that is consistent with `inspect`.
#![no_main]

use fut_image::{Ed25519Verify, Expect, TrustedKey, verify};
use libfuzzer_sys::fuzz_target;

// The public half of fixtures/keys/test-ed25519-a.pem (test-only).
fn keys() -> [TrustedKey; 1] {
    static PUBLIC: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let p = PUBLIC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../fixtures/keys/test-ed25519-a.pem");
        fut_image::keys::load_public(std::path::Path::new(path)).expect("test key").public
    });
    [TrustedKey::new(*p)]
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    for (load_addr, capacity) in [(0x0802_0000u32, 0x5_FF80u32), (0x0808_0000, 0x5_FF80), (0, 64)] {
        let e = Expect { load_addr, capacity, header_align: 0x400, min_security_counter: 1 };
        if let Ok(v) = verify(&mut &data[..], &e, &keys, &mut Ed25519Verify) {
            // Whatever verifies fits its slot and its claimed length is inside the input.
            assert!(v.total_len as usize <= data.len());
            assert!(v.total_len <= capacity);
            assert!(v.security_counter >= 1);
        }
    }
    let _ = fut_image::inspect::inspect(data).map(|r| r.to_string());
});
