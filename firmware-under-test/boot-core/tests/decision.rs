//! The boot decision, the updater and confirmation on the strict flash model: bad images are
//! rejected with their named reason and the old image keeps booting; refusals say why.

use std::path::Path;

use boot_core::boot::{RecoveryReason, SlotVerdict, decide};
use boot_core::flash::{EccRead, ReadCheck};
use boot_core::journal::{self, Journal, JournalError};
use boot_core::layout::{H723, SlotId};
use boot_core::sim::{Cut, CutMode, MemoCheck, ReadMode, SimError, StrictFlash};
use boot_core::trailer::{Trailer, WordState, provisioned};
use boot_core::update::{ConfirmError, Download, UpdateError, confirm};
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use fut_image::keys::SigningKey;
use fut_image::sign::{SignOptions, sign};
use fut_image::{Header, ImageVersion, Reject, TrustedKey};

fn key(name: &str) -> SigningKey {
    SigningKey::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keys").join(name)).unwrap()
}

fn trusted() -> Vec<TrustedKey> {
    vec![key("test-ed25519-a.pem").trusted()]
}

fn image(slot: SlotId, version: u8, counter: u32) -> Vec<u8> {
    image_with(&key("test-ed25519-a.pem"), slot, version, counter, 3000)
}

fn image_with(k: &SigningKey, slot: SlotId, version: u8, counter: u32, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len as u32).map(|i| (i * 7 + version as u32) as u8).collect();
    let opts = SignOptions {
        load_addr: H723.slot_address(slot),
        header_size: 0x400,
        version: ImageVersion::new(version, 0, 0, 0),
        security_counter: counter,
    };
    sign(&payload, k, &opts).unwrap()
}

/// OLD v1 (counter 1) in slot A, committed, selected and confirmed; the journal stores 1.
fn board() -> StrictFlash {
    let mut f = StrictFlash::new();
    f.provision(H723.slot(SlotId::A).offset, &image(SlotId::A, 1, 1));
    commit(&mut f, SlotId::A, true);
    f.provision(H723.journal.offset, &journal::record(1));
    f.provision(H723.journal.offset + 32, &journal::seal());
    f
}

/// Provision a slot's trailer as committed (and confirmed), as a download and a confirmation
/// would leave it.
fn commit(f: &mut StrictFlash, slot: SlotId, confirmed: bool) {
    for flag in provisioned(confirmed) {
        f.provision(flag.offset(&H723, slot), &flag.pattern());
    }
}

fn boots(f: &mut StrictFlash) -> (SlotId, u8) {
    let d = decide(f, &H723, &trusted(), &mut MemoCheck::default());
    let c = d.chosen.unwrap_or_else(|| panic!("recovery: {d:?}"));
    (c.slot, c.image.version().major)
}

fn download(f: &mut StrictFlash, img: &[u8], target: SlotId) -> Result<(), UpdateError<SimError>> {
    let mut d = Download::begin(f, &H723, target, Some(target.other()))?;
    for c in img.chunks(100) {
        d.write(f, c)?;
    }
    d.finish(f, &trusted(), &mut MemoCheck::default()).map(|_| ())
}

#[test]
fn a_good_update_boots_on_trial_then_confirms() {
    let mut f = board();
    download(&mut f, &image(SlotId::B, 2, 2), SlotId::B).unwrap();
    let d = decide(&mut f, &H723, &trusted(), &mut MemoCheck::default());
    let c = d.chosen.unwrap();
    assert_eq!((c.slot, c.trial, c.vector_table), (SlotId::B, true, 0x0808_0400));
    assert_eq!(d.slots, [SlotVerdict::NotChosen(ImageVersion::new(1, 0, 0, 0)), SlotVerdict::Booted]);
    let r = confirm(&mut f, &H723, SlotId::B, &trusted(), &mut MemoCheck::default()).unwrap();
    assert!(r.newly);
    assert_eq!(r.min_security_counter, 2);
    let again = confirm(&mut f, &H723, SlotId::B, &trusted(), &mut MemoCheck::default()).unwrap();
    assert!(!again.newly, "confirm is idempotent");
    let d = decide(&mut f, &H723, &trusted(), &mut MemoCheck::default());
    assert!(!d.chosen.unwrap().trial);
    assert_eq!(d.min_security_counter, 2);
    // OLD (counter 1) is now below the stored minimum: no longer a fallback.
    let old = boot_core::boot::verify_slot(&mut f, &H723, SlotId::A, &trusted(), &mut MemoCheck::default(), 2);
    assert_eq!(old, Err(Reject::Rollback { image: 1, minimum: 2 }));
}

#[test]
fn an_unconfirmed_update_reverts_on_the_next_boot() {
    let mut f = board();
    download(&mut f, &image(SlotId::B, 2, 2), SlotId::B).unwrap();
    assert_eq!(boots(&mut f), (SlotId::B, 2));
    // The app never confirms; the watchdog resets.
    let d = decide(&mut f, &H723, &trusted(), &mut MemoCheck::default());
    assert_eq!(d.chosen.unwrap().slot, SlotId::A);
    assert_eq!(d.slots[1], SlotVerdict::TrialFailed);
    assert_eq!(boots(&mut f), (SlotId::A, 1), "and stays reverted");
}

/// Each bad download is refused with its reason; nothing is committed; OLD keeps booting.
#[test]
fn bad_downloads_are_rejected_by_name_and_the_old_image_keeps_booting() {
    let good = image(SlotId::B, 2, 2);
    let mut corrupted = good.clone();
    corrupted[0x400 + 1500] ^= 0x10;
    let mut bad_sig = good.clone();
    let n = bad_sig.len();
    bad_sig[n - 1] ^= 0x40;
    let mut garbage = good.clone();
    garbage[..32].copy_from_slice(&[0x42; 32]);
    let mut oversize_header = good.clone();
    let mut h = Header::decode(oversize_header[..32].try_into().unwrap());
    h.img_size = 0x7_0000;
    oversize_header[..32].copy_from_slice(&h.encode());
    type Want = Box<dyn Fn(&UpdateError<SimError>) -> bool>;
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        ("corrupted payload", corrupted, Box::new(|e| *e == UpdateError::Rejected(Reject::HashMismatch))),
        (
            "truncated",
            good[..good.len() - 200].to_vec(),
            Box::new(|e| matches!(e, UpdateError::Rejected(Reject::BadTlvArea { .. }))),
        ),
        ("header garbage", garbage, Box::new(|e| *e == UpdateError::Rejected(Reject::BadMagic { found: 0x4242_4242 }))),
        ("oversize header", oversize_header, Box::new(|e| matches!(e, UpdateError::Rejected(Reject::Oversize { .. })))),
        (
            "oversize image",
            image(SlotId::B, 2, 2).into_iter().chain(std::iter::repeat_n(0u8, 0x6_0000)).collect(),
            Box::new(|e| matches!(e, UpdateError::Oversize { capacity: 0x5_FE00 })),
        ),
        ("bad signature", bad_sig, Box::new(|e| *e == UpdateError::Rejected(Reject::BadSignature))),
        (
            "unknown key",
            image_with(&key("test-ed25519-b.pem"), SlotId::B, 2, 2, 3000),
            Box::new(|e| *e == UpdateError::Rejected(Reject::UnknownKey)),
        ),
        (
            "wrong load address",
            image(SlotId::A, 2, 2),
            Box::new(|e| {
                *e == UpdateError::Rejected(Reject::WrongLoadAddress { expected: 0x0808_0000, found: 0x0802_0000 })
            }),
        ),
        ("not newer", image(SlotId::B, 1, 2), Box::new(|e| matches!(e, UpdateError::NotNewer { .. }))),
    ];
    for (what, img, want) in cases {
        let mut f = board();
        let e = download(&mut f, &img, SlotId::B).expect_err(what);
        assert!(want(&e), "{what}: {e:?}");
        assert!(!e.to_string().is_empty());
        assert_eq!(Trailer::read(&mut f, &H723, SlotId::B).committed, WordState::Unset, "{what}: not committed");
        assert_eq!(boots(&mut f), (SlotId::A, 1), "{what}: OLD keeps booting");
        assert!(f.violations().is_empty(), "{what}: {:?}", f.violations());
    }
}

#[test]
fn a_rolled_back_download_is_refused() {
    let mut f = board();
    download(&mut f, &image(SlotId::B, 2, 5), SlotId::B).unwrap();
    boots(&mut f);
    confirm(&mut f, &H723, SlotId::B, &trusted(), &mut MemoCheck::default()).unwrap();
    // Counter 5 is stored; a v3 with counter 4 is a rollback.
    let e = download(&mut f, &image(SlotId::A, 3, 4), SlotId::A).unwrap_err();
    assert_eq!(e, UpdateError::Rejected(Reject::Rollback { image: 4, minimum: 5 }));
    assert_eq!(boots(&mut f), (SlotId::B, 2));
}

/// Bad images planted directly (a probe, a bug, bit rot), committed: rejected at boot by name.
#[test]
fn bad_committed_images_are_rejected_at_boot() {
    let good = image(SlotId::B, 2, 2);
    let mut corrupted = good.clone();
    corrupted[0x500] ^= 1;
    let cases = [
        (corrupted, Reject::HashMismatch),
        (image(SlotId::A, 2, 2), Reject::WrongLoadAddress { expected: 0x0808_0000, found: 0x0802_0000 }),
        (image_with(&key("test-ed25519-b.pem"), SlotId::B, 2, 2, 500), Reject::UnknownKey),
        (image(SlotId::B, 2, 0), Reject::Rollback { image: 0, minimum: 1 }),
    ];
    for (img, reason) in cases {
        let mut f = board();
        // The stored minimum is 1 (board()).
        f.provision(H723.slot(SlotId::B).offset, &img);
        commit(&mut f, SlotId::B, false);
        let d = decide(&mut f, &H723, &trusted(), &mut MemoCheck::default());
        assert_eq!(d.slots[1], SlotVerdict::Invalid(reason), "{reason}");
        assert_eq!(d.chosen.unwrap().slot, SlotId::A);
        assert_eq!(
            Trailer::read(&mut f, &H723, SlotId::B).selected,
            WordState::Unset,
            "a rejected image is not selected"
        );
    }
}

#[test]
fn a_torn_word_read_at_boot_is_invalid_not_a_crash() {
    let mut f = board();
    let mut img = image(SlotId::B, 2, 2);
    // The whole image but one payload word, which a cut tears; then committed by hand (as a
    // buggy updater or a probe might): the boot reads the torn word through the ECC-safe
    // reader.
    let base = H723.slot(SlotId::B).offset;
    let word: Vec<u8> = img[0x600..0x620].to_vec();
    img[0x600..0x620].fill(0xFF);
    f.provision(base, &img);
    f.set_cut(Some(Cut { at: f.ops(), mode: CutMode::Torn(ReadMode::Ecc) }));
    assert_eq!(f.write(base + 0x600, &word), Err(SimError::PowerLost));
    f.power_on();
    commit(&mut f, SlotId::B, false);
    let d = decide(&mut f, &H723, &trusted(), &mut MemoCheck::default());
    assert!(matches!(d.slots[1], SlotVerdict::Invalid(Reject::Unreadable { .. })), "{:?}", d.slots[1]);
    assert_eq!(d.chosen.unwrap().slot, SlotId::A);
    assert!(f.stats().torn_reads > 0);
}

#[test]
fn nothing_valid_means_recovery() {
    let mut blank = StrictFlash::new();
    let d = decide(&mut blank, &H723, &trusted(), &mut MemoCheck::default());
    assert_eq!((d.chosen, d.recovery), (None, Some(RecoveryReason::NoValidImage)));
    assert_eq!(d.slots, [SlotVerdict::NotCommitted; 2]);
    // Only an image signed by an unknown key.
    let mut f = StrictFlash::new();
    f.provision(H723.slot(SlotId::A).offset, &image_with(&key("test-ed25519-b.pem"), SlotId::A, 1, 1, 100));
    commit(&mut f, SlotId::A, false);
    let d = decide(&mut f, &H723, &trusted(), &mut MemoCheck::default());
    assert_eq!(d.chosen, None);
    assert_eq!(d.slots[0], SlotVerdict::Invalid(Reject::UnknownKey));
    // Recovery can install an image (no running slot).
    let mut dl = Download::begin(&mut f, &H723, SlotId::B, None).unwrap();
    dl.write(&mut f, &image(SlotId::B, 1, 1)).unwrap();
    dl.finish(&mut f, &trusted(), &mut MemoCheck::default()).unwrap();
    assert_eq!(boots(&mut f), (SlotId::B, 1));
}

#[test]
fn highest_version_wins_and_ties_go_to_a() {
    let mut f = board();
    f.provision(H723.slot(SlotId::B).offset, &image(SlotId::B, 1, 1));
    commit(&mut f, SlotId::B, false);
    assert_eq!(boots(&mut f), (SlotId::A, 1), "tie: A");
    let mut f = StrictFlash::new();
    f.provision(H723.slot(SlotId::A).offset, &image(SlotId::A, 7, 1));
    f.provision(H723.slot(SlotId::B).offset, &image(SlotId::B, 9, 1));
    for s in SlotId::ALL {
        commit(&mut f, s, false);
    }
    assert_eq!(boots(&mut f), (SlotId::B, 9));
}

#[test]
fn updater_refusals_name_the_problem() {
    let mut f = board();
    let e = Download::begin(&mut f, &H723, SlotId::A, Some(SlotId::A)).unwrap_err();
    assert_eq!(e, UpdateError::TargetIsRunning(SlotId::A));
    // Running B on trial (unconfirmed): A holds the fallback and must not be erased.
    download(&mut f, &image(SlotId::B, 2, 2), SlotId::B).unwrap();
    boots(&mut f);
    let e = Download::begin(&mut f, &H723, SlotId::A, Some(SlotId::B)).unwrap_err();
    assert_eq!(e, UpdateError::RunningUnconfirmed(SlotId::B));
    assert!(e.to_string().contains("confirm"), "{e}");
    assert!(Trailer::read(&mut f, &H723, SlotId::A).is_settled(), "fallback untouched");
    // Confirming a slot with nothing committed.
    let mut blank = StrictFlash::new();
    let e = confirm(&mut blank, &H723, SlotId::A, &trusted(), &mut MemoCheck::default()).unwrap_err();
    assert_eq!(e, ConfirmError::NotCommitted(SlotId::A));
}

#[test]
fn a_cut_confirmation_reverts_or_is_sealed_again() {
    // Cut in the middle of the confirmed word (the first op of confirm), reading as a double
    // ECC error: not confirmed, so the trial failed and the intact fallback boots.
    let mut f = board();
    download(&mut f, &image(SlotId::B, 2, 2), SlotId::B).unwrap();
    boots(&mut f);
    f.power_on();
    f.set_cut(Some(Cut { at: 0, mode: CutMode::Torn(ReadMode::Ecc) }));
    assert!(confirm(&mut f, &H723, SlotId::B, &trusted(), &mut MemoCheck::default()).is_err());
    f.power_on();
    assert_eq!(boots(&mut f), (SlotId::A, 1), "reverts to the intact fallback");
    assert_eq!(Journal::read(&mut f, &H723).minimum, 1, "no raise happened");
    assert!(f.violations().is_empty());

    // Cut in the seal instead: the confirmed word finished, the image stays confirmed, and the
    // next confirmation writes a fresh pair before it raises the counter.
    let mut f = board();
    download(&mut f, &image(SlotId::B, 2, 2), SlotId::B).unwrap();
    boots(&mut f);
    f.power_on();
    f.set_cut(Some(Cut { at: 1, mode: CutMode::Torn(ReadMode::Ecc) }));
    assert!(confirm(&mut f, &H723, SlotId::B, &trusted(), &mut MemoCheck::default()).is_err());
    f.power_on();
    let t = Trailer::read(&mut f, &H723, SlotId::B);
    assert!(t.is_confirmed() && !t.confirm_proven(), "{t:?}");
    assert_eq!(Journal::read(&mut f, &H723).minimum, 1, "no raise without the proof");
    assert_eq!(boots(&mut f), (SlotId::B, 2), "still confirmed");
    let c = confirm(&mut f, &H723, SlotId::B, &trusted(), &mut MemoCheck::default()).unwrap();
    assert!(c.newly);
    assert_eq!(c.min_security_counter, 2);
    let t = Trailer::read(&mut f, &H723, SlotId::B);
    assert_eq!((t.confirmed[1], t.confirm_seal[1]), (WordState::Set, WordState::Set), "pair 1 written");
    assert!(f.violations().is_empty());
}

#[test]
fn the_journal_scans_everything_survives_cut_appends_and_compacts_with_a_floor() {
    let words = H723.journal.size / 32;
    let mut f = StrictFlash::new();
    f.provision(H723.journal.offset, &journal::record(3));
    f.provision(H723.journal.offset + 32, &journal::seal());
    // A cut append.
    f.set_cut(Some(Cut { at: 0, mode: CutMode::Torn(ReadMode::Ecc) }));
    assert!(Journal::raise(&mut f, &H723, 4, None).is_err());
    f.power_on();
    let j = Journal::read(&mut f, &H723);
    assert_eq!((j.minimum, j.durable, j.skipped), (3, 3, 1));
    assert_eq!(j.next, Some(H723.journal.offset + 4 * 32), "the word after garbage is left out");
    let j = Journal::raise(&mut f, &H723, 4, None).unwrap();
    assert_eq!((j.minimum, j.durable), (4, 4));
    // Records after an erased-looking word still count: the whole region is scanned.
    let mut g = StrictFlash::new();
    g.provision(H723.journal.offset, &journal::record(1));
    g.provision(H723.journal.offset + 10 * 32, &journal::record(2));
    g.provision(H723.journal.offset + 11 * 32, &journal::seal());
    assert_eq!(Journal::read(&mut g, &H723).minimum, 2);
    assert!(f.violations().is_empty());
    // Full: without a floor the raise is refused; with one, the journal is compacted.
    let mut full = StrictFlash::new();
    for i in 0..words {
        full.provision(
            H723.journal.offset + i * 32,
            &if i % 2 == 0 { journal::record(i / 2) } else { journal::seal() },
        );
    }
    let top = words / 2 - 1;
    assert_eq!(Journal::raise(&mut full, &H723, top + 1, None), Err(JournalError::Full));
    assert_eq!(
        Journal::raise(&mut full, &H723, top + 1, Some(top)),
        Err(JournalError::Full),
        "a floor below what is stored"
    );
    let j = Journal::raise(&mut full, &H723, top + 1, Some(top + 1)).unwrap();
    assert_eq!((j.minimum, j.durable, j.used), (top + 1, top + 1, 2));
    assert!(full.violations().is_empty());
}

#[test]
fn the_journal_takes_far_more_than_4096_raises_over_a_life() {
    let mut f = StrictFlash::new();
    let before = f.stats().erases;
    for c in 1..=6000 {
        let j = Journal::raise(&mut f, &H723, c, Some(c)).unwrap();
        assert_eq!(j.durable, c);
    }
    let compactions = f.stats().erases - before;
    println!("6,000 raises: {compactions} compactions");
    assert!((2..=4).contains(&compactions), "{compactions}");
    assert!(f.violations().is_empty());
}

/// A flash driver whose geometry does not match the layout: the bootloader refuses to guess.
struct SmallWords(StrictFlash);
impl ErrorType for SmallWords {
    type Error = SimError;
}
impl ReadNorFlash for SmallWords {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        self.0.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}
impl EccRead for SmallWords {
    fn read_checked(&mut self, offset: u32, bytes: &mut [u8]) -> Result<ReadCheck, SimError> {
        self.0.read_checked(offset, bytes)
    }
}
impl NorFlash for SmallWords {
    const WRITE_SIZE: usize = 16;
    const ERASE_SIZE: usize = 128 * 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        self.0.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        self.0.write(offset, bytes)
    }
}

#[test]
fn a_mismatched_flash_driver_means_recovery() {
    let mut f = SmallWords(board());
    let d = decide(&mut f, &H723, &trusted(), &mut MemoCheck::default());
    assert_eq!((d.chosen, d.recovery), (None, Some(RecoveryReason::Geometry)));
    assert!(Download::begin(&mut f, &H723, SlotId::B, Some(SlotId::A)).is_err());
}
