//! Compatibility with MCUboot's own tooling, both ways:
//! * images signed by `imgtool` (committed under fixtures/images/imgtool, and signed live when
//!   imgtool is installed) verify here;
//! * images signed here are byte-identical to imgtool's and pass `imgtool verify`.
//!
//! With `BOOTPROOF_REQUIRE_IMGTOOL=1` (set by .ci/run) a missing imgtool is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use fut_image::keys::SigningKey;
use fut_image::sign::{SignOptions, sign};
use fut_image::{Ed25519Verify, Expect, ImageVersion, Reject, verify};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(root().join("fixtures/images/imgtool").join(name)).unwrap()
}

fn key() -> SigningKey {
    SigningKey::load(&root().join("fixtures/keys/test-ed25519-a.pem")).unwrap()
}

fn expect(slot_base: u32) -> Expect {
    Expect { load_addr: slot_base, capacity: 0x6_0000 - 128, header_align: 0x400, min_security_counter: 0 }
}

const A: u32 = 0x0802_0000;
const B: u32 = 0x0808_0000;

#[test]
fn committed_imgtool_images_verify() {
    let k = [key().trusted()];
    let v = verify(&mut &fixture("slot-a-1.2.3-s5.bin")[..], &expect(A), &k, &mut Ed25519Verify).unwrap();
    assert_eq!(v.version(), ImageVersion::new(1, 2, 3, 0));
    assert_eq!(v.security_counter, 5);
    assert_eq!(v.header.img_size, 1000);
    let v = verify(&mut &fixture("slot-b-1.2.3-s5-pubkey.bin")[..], &expect(B), &k, &mut Ed25519Verify).unwrap();
    assert_eq!(v.security_counter, 5);
    // The slot-A image in slot B: linked elsewhere.
    assert_eq!(
        verify(&mut &fixture("slot-a-1.2.3-s5.bin")[..], &expect(B), &k, &mut Ed25519Verify),
        Err(Reject::WrongLoadAddress { expected: B, found: A })
    );
    assert_eq!(
        verify(&mut &fixture("no-rom-fixed.bin")[..], &expect(A), &k, &mut Ed25519Verify),
        Err(Reject::NoLoadAddress)
    );
    assert_eq!(
        verify(&mut &fixture("no-security-counter.bin")[..], &expect(A), &k, &mut Ed25519Verify),
        Err(Reject::NoSecurityCounter)
    );
}

#[test]
fn our_signature_is_byte_identical_to_imgtools() {
    let ours = sign(
        &fixture("app.bin"),
        &key(),
        &SignOptions { load_addr: A, header_size: 0x400, version: ImageVersion::new(1, 2, 3, 0), security_counter: 5 },
    )
    .unwrap();
    assert_eq!(ours, fixture("slot-a-1.2.3-s5.bin"));
}

fn imgtool() -> Option<&'static str> {
    let found = Command::new("imgtool").arg("version").output().is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("BOOTPROOF_REQUIRE_IMGTOOL").is_some() {
        panic!("imgtool is required (BOOTPROOF_REQUIRE_IMGTOOL is set): pip install imgtool==2.5.0");
    }
    if !found {
        eprintln!("imgtool not installed: live cross-checks not run (the committed imgtool images were checked)");
    }
    found.then_some("imgtool")
}

#[test]
fn live_imgtool_round_trip_both_ways() {
    let Some(tool) = imgtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let keyf = root().join("fixtures/keys/test-ed25519-a.pem");
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 31 + 7) as u8).collect();
    let input = dir.path().join("app.bin");
    std::fs::write(&input, &payload).unwrap();
    for (version, counter, base) in [("2.5.9+77", 9u32, A), ("0.0.1", 0, B)] {
        // imgtool signs, we verify, and we sign the same bytes.
        let out = dir.path().join("imgtool.bin");
        let st = Command::new(tool)
            .args(["sign", "--pad-header", "--header-size", "0x400", "--align", "32", "--max-align", "32"])
            .args(["--slot-size", "0x60000", "--rom-fixed", &format!("{base:#x}"), "-v", version])
            .args(["-s", &counter.to_string(), "-k"])
            .arg(&keyf)
            .arg(&input)
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        let theirs = std::fs::read(&out).unwrap();
        let v = verify(&mut &theirs[..], &expect(base), &[key().trusted()], &mut Ed25519Verify).unwrap();
        assert_eq!(v.version(), ImageVersion::parse(version).unwrap());
        assert_eq!(v.security_counter, counter);
        let opts = SignOptions {
            load_addr: base,
            header_size: 0x400,
            version: ImageVersion::parse(version).unwrap(),
            security_counter: counter,
        };
        let ours = sign(&payload, &key(), &opts).unwrap();
        assert_eq!(ours, theirs, "byte-identical to imgtool for {version}");
        // We sign, imgtool verifies.
        let mine = dir.path().join("ours.bin");
        std::fs::write(&mine, &ours).unwrap();
        let o = Command::new(tool).args(["verify", "-k"]).arg(&keyf).arg(&mine).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && text.contains("Image was correctly validated"), "imgtool verify: {text}");
        // A corrupted byte: imgtool says so too.
        let mut bad = ours.clone();
        bad[0x500] ^= 0x01;
        std::fs::write(&mine, &bad).unwrap();
        let o = Command::new(tool).args(["verify", "-k"]).arg(&keyf).arg(&mine).output().unwrap();
        assert!(!o.status.success() || !String::from_utf8_lossy(&o.stdout).contains("correctly validated"));
    }
}
