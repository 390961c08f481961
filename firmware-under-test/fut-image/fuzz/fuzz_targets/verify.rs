//! Fuzz the image parser and verifier: any input, any slot expectation, no panic, no
//! out-of-bounds. Whatever verifies must be consistent with `inspect` (same header, version,
//! load address, security counter and total length, inside the input), and its hashed bytes must
//! be the signed ones: the first `hdr_size + img_size + protect_tlv_size` bytes hash to the
//! SHA256 TLV and an ED25519 TLV verifies over that digest with the trusted key, both checked
//! here with sha2 and ed25519-dalek directly, independently of `verify`.
#![no_main]

use ed25519_dalek::{Signature, VerifyingKey};
use fut_image::{Ed25519Verify, Expect, Header, TrustedKey, tlv, verify};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

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
    let report = fut_image::inspect::inspect(data);
    if let Ok(r) = &report {
        let _ = r.to_string();
    }
    for (load_addr, capacity) in [(0x0802_0000u32, 0x5_FF80u32), (0x0808_0000, 0x5_FF80), (0, 64)] {
        let e = Expect { load_addr, capacity, header_align: 0x400, min_security_counter: 1 };
        let Ok(v) = verify(&mut &data[..], &e, &keys, &mut Ed25519Verify) else { continue };
        // Whatever verifies fits its slot and its claimed length is inside the input.
        assert!(v.total_len as usize <= data.len(), "total_len {} > input {}", v.total_len, data.len());
        assert!(v.total_len <= capacity);
        assert!(v.security_counter >= 1);
        assert_eq!(v.header.load_addr, load_addr);

        // (a) The same verdict as `inspect` gives.
        let r = report.as_ref().expect("verify accepted the image, so inspect must read it");
        assert_eq!(r.header, v.header);
        assert_eq!(r.header.version, v.version());
        assert_eq!(r.header.load_addr, v.header.load_addr);
        assert_eq!(r.security_counter(), Some(v.security_counter));
        assert_eq!(r.total_len, Some(v.total_len as usize));
        assert_eq!(r.computed_hash, Some(v.digest));
        assert_eq!(r.hash_matches(), Some(true));

        // (b) The hashed bytes are the signed ones.
        let h = Header::decode(data[..32].try_into().unwrap());
        let hashed = h.hdr_size as usize + h.img_size as usize + h.protect_tlv_size as usize;
        let digest: [u8; 32] = Sha256::digest(&data[..hashed]).into();
        assert_eq!(digest, v.digest);
        let sha = r.tlvs.iter().find(|t| !t.protected && t.kind == tlv::SHA256).expect("a SHA256 TLV");
        assert_eq!(sha.value[..], digest[..]);
        let pk = VerifyingKey::from_bytes(&keys[v.key_index].public).expect("trusted key");
        let signed = r.tlvs.iter().filter(|t| !t.protected && t.kind == tlv::ED25519).any(|t| {
            <[u8; 64]>::try_from(&t.value[..])
                .is_ok_and(|s| pk.verify_strict(&digest, &Signature::from_bytes(&s)).is_ok())
        });
        assert!(signed, "no ED25519 TLV verifies over the hashed bytes with the trusted key");
    }
});
