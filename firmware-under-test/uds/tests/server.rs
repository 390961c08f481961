//! The bootloader's UDS server over the strict flash model: a whole update, resume, and every
//! refusal with its standard NRC; outcomes checked with the boot decision (what boots next).

use std::path::Path;

use boot_core::boot::decide;
use boot_core::journal;
use boot_core::layout::{H723, SlotId};
use boot_core::sim::{MemoCheck, StrictFlash};
use boot_core::trailer::provisioned;
use bootproof_uds::server::{Reply, Server};
use bootproof_uds::uds::{self, nrc};
use fut_image::keys::SigningKey;
use fut_image::sign::{SignOptions, sign};
use fut_image::{ImageVersion, TrustedKey};

fn key(name: &str) -> SigningKey {
    SigningKey::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keys").join(name)).unwrap()
}

fn trusted() -> Vec<TrustedKey> {
    vec![key("test-ed25519-a.pem").trusted()]
}

fn image_with(k: &SigningKey, slot: SlotId, version: u8, counter: u32, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len as u32).map(|i| (i * 13 + version as u32) as u8).collect();
    let opts = SignOptions {
        load_addr: H723.slot_address(slot),
        header_size: 0x400,
        version: ImageVersion::new(version, 0, 0, 0),
        security_counter: counter,
    };
    sign(&payload, k, &opts).unwrap()
}

fn image(slot: SlotId, version: u8, counter: u32) -> Vec<u8> {
    image_with(&key("test-ed25519-a.pem"), slot, version, counter, 10_000)
}

/// v1 (counter 1) in slot A, committed and confirmed; the journal stores 1.
fn board() -> StrictFlash {
    let mut f = StrictFlash::new();
    f.provision(H723.slot(SlotId::A).offset, &image(SlotId::A, 1, 1));
    for flag in provisioned(true) {
        f.provision(flag.offset(&H723, SlotId::A), &flag.pattern());
    }
    f.provision(H723.journal.offset, &journal::record(1));
    f.provision(H723.journal.offset + 32, &journal::seal());
    f
}

struct Tester {
    flash: StrictFlash,
    server: Server,
}

impl Tester {
    fn new() -> Tester {
        let mut flash = board();
        let d = decide(&mut flash, &H723, &trusted(), &mut MemoCheck::default());
        let running = d.chosen.map(|c| c.slot);
        Tester { flash, server: Server::new(H723, running, false, [1, 0, 0]) }
    }

    /// Send a request; a pending reply is finished as the firmware does. Returns the final
    /// response, and whether a response-pending came first.
    fn ask(&mut self, req: &[u8]) -> (Vec<u8>, bool) {
        let (r, pendings) = self.ask_counting(req);
        (r, pendings > 0)
    }

    /// [`Tester::ask`], with the number of response-pendings before the final response.
    fn ask_counting(&mut self, req: &[u8]) -> (Vec<u8>, usize) {
        let mut out = [0u8; 64];
        let mut reply = self.server.handle(&mut self.flash, req, &mut out);
        let mut pendings = 0;
        loop {
            match reply {
                Reply::Now(n) | Reply::ThenReset(n) => return (out[..n].to_vec(), pendings),
                Reply::Silent => return (Vec::new(), pendings),
                Reply::Pending(s) => {
                    assert_eq!(s, req[0]);
                    pendings += 1;
                    assert!(pendings < 10, "response-pending without end");
                    reply = self.server.run_pending(&mut self.flash, &trusted(), &mut MemoCheck::default(), &mut out);
                }
            }
        }
    }

    fn ok(&mut self, req: &[u8]) -> Vec<u8> {
        let (r, _) = self.ask(req);
        assert_eq!(r.first(), Some(&(req[0] + 0x40)), "request {req:02x?} answered {r:02x?}");
        r
    }

    fn nrc(&mut self, req: &[u8]) -> u8 {
        let (r, _) = self.ask(req);
        assert_eq!(r.len(), 3, "request {req:02x?} answered {r:02x?}");
        assert_eq!(&r[..2], &[0x7F, req[0]], "request {req:02x?} answered {r:02x?}");
        r[2]
    }

    fn download_request(&mut self, addr: u32, size: u32) -> Vec<u8> {
        let mut req = vec![0x34, 0x00, 0x44];
        req.extend_from_slice(&addr.to_be_bytes());
        req.extend_from_slice(&size.to_be_bytes());
        self.ask(&req).0
    }

    fn transfer(&mut self, counter: u8, data: &[u8]) -> Vec<u8> {
        let mut req = vec![0x36, counter];
        req.extend_from_slice(data);
        self.ask(&req).0
    }

    /// Programming session, erase, download `img` in 4 KiB blocks, exit, check: the check's
    /// routine status record.
    fn update(&mut self, img: &[u8]) -> Vec<u8> {
        self.ok(&[0x10, 0x02]);
        let (r, pendings) = self.ask_counting(&[0x31, 0x01, 0xFF, 0x00]);
        assert_eq!(r, [0x71, 0x01, 0xFF, 0x00]);
        assert_eq!(pendings, 3, "an erase of three sectors answers response-pending before each");
        let r = self.download_request(H723.slot_address(SlotId::B), img.len() as u32);
        assert_eq!(r, [0x74, 0x20, 0x10, 0x02], "maxNumberOfBlockLength 4098");
        for (i, block) in img.chunks(4096).enumerate() {
            let k = (i + 1) as u8;
            assert_eq!(self.transfer(k, block), [0x76, k]);
        }
        self.ok(&[0x37]);
        let (r, pending) = self.ask(&[0x31, 0x01, 0xFF, 0x01]);
        assert!(pending);
        assert_eq!(&r[..4], &[0x71, 0x01, 0xFF, 0x01]);
        r[4..].to_vec()
    }

    /// The firmware's path for one TransferData block: the server stores each frame's
    /// payload as it arrives (`frames` consecutive frames of them; all when `None`), then, if
    /// the reception completed, handles the request: whole, or by its first 64 bytes when it
    /// is longer than a 4 KiB reassembly buffer. The answer, if handled.
    fn streamed(&mut self, counter: u8, data: &[u8], frames: Option<usize>) -> Option<Vec<u8>> {
        let mut req = vec![0x36, counter];
        req.extend_from_slice(data);
        let head = req[..req.len().min(64)].to_vec();
        // ISO-TP FD: a first frame carries 62 bytes (58 past 4095), each consecutive frame 63.
        let mut at = 0;
        let mut n = if req.len() > 4095 { 58 } else { 62 }.min(req.len());
        let mut cfs = 0;
        loop {
            self.server.stream(&mut self.flash, &head, req.len(), at, &req[at..at + n]);
            at += n;
            if at == req.len() {
                break;
            }
            if frames.is_some_and(|f| cfs == f) {
                return None;
            }
            n = 63.min(req.len() - at);
            cfs += 1;
        }
        if req.len() <= bootproof_uds::isotp::MAX_MESSAGE {
            return Some(self.ask(&req).0);
        }
        let mut out = [0u8; 64];
        match self.server.handle_streamed(&mut self.flash, &head, req.len(), &mut out) {
            Reply::Now(n) => Some(out[..n].to_vec()),
            other => panic!("a streamed TransferData answered {other:?}"),
        }
    }

    /// The words of slot B holding `img`'s first bytes that are written, as `img` has them.
    fn written_prefix(&self, img: &[u8]) -> usize {
        let base = H723.slot(SlotId::B).offset;
        img.chunks(32)
            .take_while(|w| {
                let at = base + (w.as_ptr() as usize - img.as_ptr() as usize) as u32;
                self.flash.stable_clean(at).is_some_and(|got| got[..w.len()] == **w && w.len() == 32)
            })
            .count()
            * 32
    }

    fn boots(&mut self) -> (SlotId, u8, bool) {
        let d = decide(&mut self.flash, &H723, &trusted(), &mut MemoCheck::default());
        let c = d.chosen.unwrap_or_else(|| panic!("recovery: {d:?}"));
        (c.slot, c.image.version().major, c.trial)
    }
}

#[test]
fn a_whole_update_commits_and_the_next_boot_is_a_trial_of_the_new_image() {
    let mut t = Tester::new();
    assert_eq!(t.server.target(), SlotId::B);
    let status = t.update(&image(SlotId::B, 2, 2));
    assert_eq!(status, [0], "committed");
    assert_eq!(t.boots(), (SlotId::B, 2, true));
}

#[test]
fn reads_versions_slots_counter_and_progress() {
    let mut t = Tester::new();
    assert_eq!(t.ok(&[0x22, 0xF1, 0x80]), [0x62, 0xF1, 0x80, 1, 0, 0]);
    assert_eq!(t.ok(&[0x22, 0xF1, 0x86]), [0x62, 0xF1, 0x86, uds::session::DEFAULT]);
    assert_eq!(t.ok(&[0x22, 0xB0, 0x01]), [0x62, 0xB0, 0x01, 1, 0, 0, 0]);
    let s = t.ok(&[0x22, 0xB0, 0x00]);
    assert_eq!(s.len(), 3 + 28);
    assert_eq!(s[3], uds::SlotState::Confirmed as u8, "slot A: {s:02x?}");
    assert_eq!((s[4], s[12]), (1, 1), "slot A: v1, counter 1");
    assert_eq!(s[3 + 14], uds::SlotState::Empty as u8, "slot B");
    let p = t.ok(&[0x22, 0xB0, 0x02]);
    assert_eq!(p, [0x62, 0xB0, 0x02, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0], "target B, nothing under way");
}

#[test]
fn a_download_resumes_at_the_first_byte_not_received() {
    let mut t = Tester::new();
    let img = image(SlotId::B, 2, 2);
    t.ok(&[0x10, 0x02]);
    t.ok(&[0x31, 0x01, 0xFF, 0x00]);
    let base = H723.slot_address(SlotId::B);
    assert_eq!(t.download_request(base, img.len() as u32)[0], 0x74);
    assert_eq!(t.transfer(1, &img[..4096]), [0x76, 1]);
    // The host dies here. A new host asks where the download stands, and goes on.
    let p = t.ok(&[0x22, 0xB0, 0x02]);
    assert_eq!(p[3], 2, "slot B");
    let received = u32::from_le_bytes(p[4..8].try_into().unwrap());
    assert_eq!(received, 4096);
    assert_eq!(u32::from_le_bytes(p[8..12].try_into().unwrap()), img.len() as u32);
    assert_eq!(t.nrc(&[0x34, 0x00, 0x44, 0, 0, 0, 0, 0, 0, 0, 1]), nrc::CONDITIONS_NOT_CORRECT, "still transferring");
    t.ok(&[0x37]);
    assert_eq!(t.download_request(base, img.len() as u32)[..3], [0x7F, 0x34, nrc::REQUEST_OUT_OF_RANGE], "not at 0");
    assert_eq!(t.download_request(base + received, img.len() as u32)[0], 0x74);
    for (i, block) in img[4096..].chunks(4096).enumerate() {
        let k = (i + 1) as u8;
        assert_eq!(t.transfer(k, block), [0x76, k]);
    }
    t.ok(&[0x37]);
    assert_eq!(t.ok(&[0x31, 0x01, 0xFF, 0x01]), [0x71, 0x01, 0xFF, 0x01, 0]);
    assert_eq!(t.boots(), (SlotId::B, 2, true));
}

#[test]
fn block_sequence_counter_wrong_repeated_and_wrapping() {
    let mut t = Tester::new();
    // A large image, in small blocks, so the counter wraps 0xFF -> 0x00.
    let img = image_with(&key("test-ed25519-a.pem"), SlotId::B, 2, 2, 40_000);
    t.ok(&[0x10, 0x02]);
    t.ok(&[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!(t.download_request(H723.slot_address(SlotId::B), img.len() as u32)[0], 0x74);
    assert_eq!(t.transfer(2, &img[..100])[..3], [0x7F, 0x36, nrc::WRONG_BLOCK_SEQUENCE_COUNTER]);
    let mut k: u8 = 1;
    for (i, block) in img.chunks(128).enumerate() {
        assert_eq!(t.transfer(k, block), [0x76, k], "block {i}");
        if i == 3 {
            // The response to block 4 was lost: the tester sends it again; nothing is
            // written twice (the strict flash model would refuse it).
            assert_eq!(t.transfer(k, block), [0x76, k]);
        }
        k = k.wrapping_add(1);
    }
    assert!(img.len() / 128 > 256, "the counter wrapped");
    t.ok(&[0x37]);
    assert_eq!(t.ok(&[0x31, 0x01, 0xFF, 0x01]), [0x71, 0x01, 0xFF, 0x01, 0]);
    assert_eq!(t.boots(), (SlotId::B, 2, true));
}

#[test]
fn refusals_use_the_standard_nrcs_and_the_old_image_keeps_booting() {
    let mut t = Tester::new();
    // Default session: no programming services.
    assert_eq!(t.nrc(&[0x31, 0x01, 0xFF, 0x00]), nrc::SERVICE_NOT_SUPPORTED_IN_SESSION);
    assert_eq!(t.nrc(&[0x34, 0x00, 0x44, 0, 0, 0, 0, 0, 0, 0, 1]), nrc::SERVICE_NOT_SUPPORTED_IN_SESSION);
    assert_eq!(t.nrc(&[0x27, 0x01]), nrc::SERVICE_NOT_SUPPORTED);
    assert_eq!(t.nrc(&[0x10]), nrc::INCORRECT_LENGTH);
    assert_eq!(t.nrc(&[0x10, 0x03]), nrc::SUB_FUNCTION_NOT_SUPPORTED);
    assert_eq!(t.nrc(&[0x22, 0x12, 0x34]), nrc::REQUEST_OUT_OF_RANGE);
    t.ok(&[0x10, 0x02]);
    // Out of order.
    assert_eq!(t.nrc(&[0x36, 0x01, 0xAA]), nrc::REQUEST_SEQUENCE_ERROR);
    assert_eq!(t.nrc(&[0x37]), nrc::REQUEST_SEQUENCE_ERROR);
    assert_eq!(t.nrc(&[0x31, 0x01, 0xFF, 0x01]), nrc::REQUEST_SEQUENCE_ERROR);
    assert_eq!(t.nrc(&[0x34, 0x00, 0x44, 0x08, 0x08, 0, 0, 0, 0, 0x10, 0]), nrc::REQUEST_SEQUENCE_ERROR);
    assert_eq!(t.nrc(&[0x31, 0x01, 0x12, 0x34]), nrc::REQUEST_OUT_OF_RANGE);
    t.ok(&[0x31, 0x01, 0xFF, 0x00]);
    // Wrong address (slot A is running), oversize, wrong format.
    let a = H723.slot_address(SlotId::A);
    assert_eq!(t.download_request(a, 1000)[..3], [0x7F, 0x34, nrc::REQUEST_OUT_OF_RANGE]);
    let b = H723.slot_address(SlotId::B);
    assert_eq!(t.download_request(b, 2 << 20)[..3], [0x7F, 0x34, nrc::UPLOAD_DOWNLOAD_NOT_ACCEPTED]);
    assert_eq!(t.nrc(&[0x34, 0x00, 0x33, 0, 0, 0, 0, 0, 0, 0]), nrc::INCORRECT_LENGTH);
    // A build linked for slot A, sent to slot B: refused at its header.
    let wrong = image(SlotId::A, 2, 2);
    assert_eq!(t.download_request(b, wrong.len() as u32)[0], 0x74);
    assert_eq!(t.transfer(1, &wrong[..4096])[..3], [0x7F, 0x36, nrc::REQUEST_OUT_OF_RANGE]);
    assert_eq!(t.boots(), (SlotId::A, 1, false));
}

#[test]
fn the_check_names_why_an_image_is_refused_and_nothing_is_committed() {
    let kb = key("test-ed25519-b.pem");
    for (what, img, reason) in [
        ("foreign key", image_with(&kb, SlotId::B, 2, 2, 10_000), "unknown-key"),
        ("rollback", image(SlotId::B, 2, 0), "rollback"),
        ("downgrade", image(SlotId::B, 1, 1), "not-newer-than-the-other-slot"),
    ] {
        let mut t = Tester::new();
        let status = t.update(&img);
        assert_eq!(status[0], 1, "{what}: refused");
        let text = String::from_utf8_lossy(&status[1..]).to_string();
        assert_eq!(text, reason, "{what}");
        assert_eq!(t.boots(), (SlotId::A, 1, false), "{what}: v1 keeps booting");
    }
    // A corrupted payload.
    let mut t = Tester::new();
    let mut img = image(SlotId::B, 2, 2);
    img[0x400 + 77] ^= 0x10;
    assert_eq!(t.update(&img), b"\x01hash-mismatch");
    assert_eq!(t.boots(), (SlotId::A, 1, false));
}

#[test]
fn an_update_is_refused_while_the_running_image_is_on_trial() {
    let mut t = Tester::new();
    assert_eq!(t.update(&image(SlotId::B, 2, 2)), [0]);
    // The board boots B on trial; the next update would erase A, its fallback.
    let d = decide(&mut t.flash, &H723, &trusted(), &mut MemoCheck::default());
    let mut s = Server::new(H723, d.chosen.map(|c| c.slot), true, [1, 0, 0]);
    let mut out = [0u8; 64];
    assert_eq!(s.handle(&mut t.flash, &[0x31, 0x01, 0xFF, 0x00], &mut out), Reply::Pending(0x31));
    let r = s.run_pending(&mut t.flash, &trusted(), &mut MemoCheck::default(), &mut out);
    assert_eq!((r, &out[..3]), (Reply::Now(3), &[0x7F, 0x31, nrc::CONDITIONS_NOT_CORRECT][..]));
}

#[test]
fn session_control_reports_its_timing_and_reset_and_tester_present() {
    let mut t = Tester::new();
    let r = t.ok(&[0x10, 0x02]);
    assert_eq!(r, [0x50, 0x02, 0x00, 50, ((uds::P2_STAR_MS / 10) >> 8) as u8, (uds::P2_STAR_MS / 10) as u8]);
    assert_eq!(t.ok(&[0x3E, 0x00]), [0x7E, 0x00]);
    assert_eq!(t.ask(&[0x3E, 0x80]).0, Vec::<u8>::new(), "suppressed");
    let mut out = [0u8; 64];
    assert_eq!(t.server.handle(&mut t.flash, &[0x11, 0x01], &mut out), Reply::ThenReset(2));
    assert_eq!(&out[..2], &[0x51, 0x01]);
}

#[test]
fn a_truncated_transfer_is_refused_by_the_check_and_nothing_is_committed() {
    let mut t = Tester::new();
    let img = image(SlotId::B, 2, 2);
    t.ok(&[0x10, 0x02]);
    t.ok(&[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!(t.download_request(H723.slot_address(SlotId::B), img.len() as u32)[0], 0x74);
    assert_eq!(t.transfer(1, &img[..4096]), [0x76, 1]);
    t.ok(&[0x37]);
    let r = t.ok(&[0x31, 0x01, 0xFF, 0x01]);
    assert_eq!(r[4], 1, "refused: {r:02x?}");
    assert_eq!(String::from_utf8_lossy(&r[5..]), "incomplete-transfer");
    assert_eq!(t.boots(), (SlotId::A, 1, false));
    // The download is still there: the rest completes it.
    let base = H723.slot_address(SlotId::B);
    assert_eq!(t.download_request(base + 4096, img.len() as u32)[0], 0x74);
    for (i, block) in img[4096..].chunks(4096).enumerate() {
        assert_eq!(t.transfer(i as u8 + 1, block), [0x76, i as u8 + 1]);
    }
    t.ok(&[0x37]);
    assert_eq!(t.ok(&[0x31, 0x01, 0xFF, 0x01]), [0x71, 0x01, 0xFF, 0x01, 0]);
    assert_eq!(t.boots(), (SlotId::B, 2, true));
    // More data than announced is refused too.
    let mut t = Tester::new();
    t.ok(&[0x10, 0x02]);
    t.ok(&[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!(t.download_request(H723.slot_address(SlotId::B), 100)[0], 0x74);
    assert_eq!(t.transfer(1, &img[..4096])[..3], [0x7F, 0x36, nrc::TRANSFER_DATA_SUSPENDED]);
}

/// The firmware stores each TransferData block while its frames still arrive, so flash
/// programming overlaps the bus: the words are in flash before the request is complete, the
/// whole update commits, and the result is what a block-at-a-time download gives.
#[test]
fn blocks_stored_while_their_frames_arrive_commit_the_same_image() {
    let mut t = Tester::new();
    let img = image(SlotId::B, 2, 2);
    t.ok(&[0x10, 0x02]);
    t.ok(&[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!(t.download_request(H723.slot_address(SlotId::B), img.len() as u32)[0], 0x74);
    // Half of the first block's frames: its first words are programmed already.
    assert_eq!(t.streamed(1, &img[..4096], Some(32)), None);
    let early = t.written_prefix(&img);
    assert!((31 * 63 - 32..4096).contains(&early), "{early} bytes programmed from 32 frames");
    // That reception failed (N_Cr); the tester sends the block again: the stored part is not
    // programmed twice (the strict model would refuse it), the rest is.
    for (i, block) in img.chunks(4096).enumerate() {
        let k = (i + 1) as u8;
        assert_eq!(t.streamed(k, block, None), Some(vec![0x76, k]), "block {k}");
    }
    t.ok(&[0x37]);
    assert_eq!(t.ok(&[0x31, 0x01, 0xFF, 0x01]), [0x71, 0x01, 0xFF, 0x01, 0]);
    assert_eq!(t.boots(), (SlotId::B, 2, true));
}

/// Only the expected block of a download under way is stored early: a wrong counter, a
/// request in the default session or before RequestDownload writes nothing, and the complete
/// request gets the answer it always got.
#[test]
fn nothing_unexpected_is_stored_while_frames_arrive() {
    let mut t = Tester::new();
    let img = image(SlotId::B, 2, 2);
    assert_eq!(t.streamed(1, &img[..4096], None).unwrap(), [0x7F, 0x36, nrc::SERVICE_NOT_SUPPORTED_IN_SESSION]);
    t.ok(&[0x10, 0x02]);
    assert_eq!(t.streamed(1, &img[..4096], None).unwrap(), [0x7F, 0x36, nrc::REQUEST_SEQUENCE_ERROR]);
    t.ok(&[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!(t.download_request(H723.slot_address(SlotId::B), img.len() as u32)[0], 0x74);
    assert_eq!(t.streamed(2, &img[..4096], None).unwrap(), [0x7F, 0x36, nrc::WRONG_BLOCK_SEQUENCE_COUNTER]);
    assert_eq!(t.written_prefix(&img), 0, "nothing written");
    assert_eq!(t.streamed(1, &img[..4096], None).unwrap(), [0x76, 1]);
    assert_eq!(t.written_prefix(&img), 4096);
}

/// A build for the other slot is refused at its first frames, by the block's answer, and
/// the old image keeps booting.
#[test]
fn a_wrong_build_streamed_in_is_refused_by_its_block_answer() {
    let mut t = Tester::new();
    let wrong = image(SlotId::A, 2, 2);
    t.ok(&[0x10, 0x02]);
    t.ok(&[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!(t.download_request(H723.slot_address(SlotId::B), wrong.len() as u32)[0], 0x74);
    assert_eq!(t.streamed(1, &wrong[..4096], None).unwrap(), [0x7F, 0x36, nrc::REQUEST_OUT_OF_RANGE]);
    assert_eq!(t.boots(), (SlotId::A, 1, false));
}

/// Erasing as needed: the erase routine erases nothing, the whole image is one TransferData
/// block (maxNumberOfBlockLength in four bytes), each sector is erased when the download
/// reaches it, and the result commits and boots like any other download.
#[test]
fn erasing_as_needed_takes_the_image_as_one_block_and_erases_as_it_goes() {
    let mut t = Tester::new();
    t.server = Server::new(H723, Some(SlotId::A), false, [1, 0, 0]).erase_as_needed();
    let img = image_with(&key("test-ed25519-a.pem"), SlotId::B, 2, 2, 200_000);
    t.ok(&[0x10, 0x02]);
    let (r, pendings) = t.ask_counting(&[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!((r, pendings), (vec![0x71, 0x01, 0xFF, 0x00], 1), "nothing erased: one step");
    let cap = H723.image_capacity(SlotId::B) + 2;
    let r = t.download_request(H723.slot_address(SlotId::B), img.len() as u32);
    assert_eq!(r, [&[0x74, 0x40][..], &cap.to_be_bytes()].concat(), "maxNumberOfBlockLength in 4 bytes");
    // Half of the block: its sectors so far are erased and written.
    assert_eq!(t.streamed(1, &img, Some(1500)), None);
    let early = t.written_prefix(&img);
    assert!(early > 90_000, "{early} bytes programmed from 1500 frames");
    // The reception failed; the tester sends the block again: the stored part is skipped.
    assert_eq!(t.streamed(1, &img, None), Some(vec![0x76, 1]));
    t.ok(&[0x37]);
    assert_eq!(t.ok(&[0x31, 0x01, 0xFF, 0x01]), [0x71, 0x01, 0xFF, 0x01, 0]);
    assert_eq!(t.boots(), (SlotId::B, 2, true));
}

/// A block longer than the reassembly buffer that lost frames in the middle is refused
/// (0x71) by its completion, and nothing after the gap was written.
#[test]
fn a_streamed_block_with_a_gap_is_refused_and_sent_again() {
    let mut t = Tester::new();
    t.server = Server::new(H723, Some(SlotId::A), false, [1, 0, 0]).erase_as_needed();
    let img = image_with(&key("test-ed25519-a.pem"), SlotId::B, 2, 2, 20_000);
    t.ok(&[0x10, 0x02]);
    t.ok(&[0x31, 0x01, 0xFF, 0x00]);
    assert_eq!(t.download_request(H723.slot_address(SlotId::B), img.len() as u32)[0], 0x74);
    let mut req = vec![0x36, 1];
    req.extend_from_slice(&img);
    let head = req[..64].to_vec();
    let mut at = 0;
    for n in std::iter::once(58).chain(std::iter::repeat(63)).take(33) {
        t.server.stream(&mut t.flash, &head, req.len(), at, &req[at..at + n]);
        at += n;
    }
    // The next 16 frames are lost; one after them arrives.
    let after = at + 16 * 63;
    t.server.stream(&mut t.flash, &head, req.len(), after, &req[after..after + 63]);
    let mut out = [0u8; 64];
    let r = t.server.handle_streamed(&mut t.flash, &head, req.len(), &mut out);
    assert_eq!((r, &out[..3]), (Reply::Now(3), &[0x7F, 0x36, nrc::TRANSFER_DATA_SUSPENDED][..]));
    let w = t.written_prefix(&img);
    assert!(w <= at - 2, "{w} bytes written of {} streamed", at - 2);
    let word = (after - 2).next_multiple_of(32) as u32;
    let got = t.flash.stable_clean(H723.slot(SlotId::B).offset + word);
    assert_eq!(got, Some([0xFF; 32]), "the frame after the gap was not written");
    assert_eq!(t.streamed(1, &img, None), Some(vec![0x76, 1]));
    t.ok(&[0x37]);
    assert_eq!(t.ok(&[0x31, 0x01, 0xFF, 0x01]), [0x71, 0x01, 0xFF, 0x01, 0]);
}
