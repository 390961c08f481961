//! Power cuts on the real binaries: bootproof's bootloader and the application, executed by
//! the twin's emulated Cortex-M7, through a whole update over UDS and a revert.
//!
//! # How
//! 1. **Record.** One uncut life on the twin, every flash operation the firmware completes
//!    logged in order ([`FlashArray::record`]): the factory set boots v1 from slot A; an update
//!    over UDS downloads v2 into slot B (the slot erase, the TransferData words, the commit's
//!    trailer words); v2 boots on trial and confirms itself (the selected word, the confirm
//!    words, the journal's security counter); a reset; then v3 (a build that never confirms)
//!    goes into slot A the same way, boots once on trial, and the next reset reverts to v2 (the
//!    failed-trial words).
//! 2. **Cut.** A power cut leaves only the flash: RAM, the update-request word and the
//!    controller's state are gone. So a cut at any instant is the base flash, the operations
//!    before it completed, and the one in flight *torn* ([`Tear`]): ECC-inconsistent (reads are
//!    double errors), or, less kindly, half-written with a matching ECC so it reads back as
//!    data nobody wrote. Every operation other than an image word (erases, trailer words,
//!    journal records) is cut before, torn each way; image words are sampled evenly; at least
//!    [`DEFAULT_POINTS`] points (`BOOTPROOF_UDS_CUTS=N` for more, `BOOTPROOF_UDS_CUT=K:MODE` to
//!    replay one).
//! 3. **Power on** a fresh twin with that flash and watch what boots (the beacon on CAN FD).
//!
//! # Invariants at every point (outcomes, taken from the recording, not from the bootloader)
//! * **no brick**: an application boots (never recovery, never silence);
//! * **known and intact**: it is v1 in A, v2 in B or v3 in A, and its slot holds exactly the
//!   signed image's bytes;
//! * **nothing half-downloaded**: v2 only once all of its words were programmed, v3 likewise;
//! * **no replacement by an older image**: once v2's confirmation finished, v1 never boots;
//! * **no second trial**: v3 boots only as a trial, and never once its trial has started;
//! * **the stored security counter never decreases**: after the boot it is at least what the
//!   uncut life had stored before the cut (read on the host with the boot core from the flash,
//!   signatures checked natively).
//!
//! It prints the points, the bricks (0), the outcomes per kind of operation, and the slowest
//! point (power-on to beacon, board time).

use std::sync::Mutex;
use std::time::Duration;

use boot_core::layout::{H723, Layout, SlotId};
use bootproof::firmware::{Binary, BoardFirmware, for_board};
use bootproof::update;
use bootproof_fixtures::{BoardProfile, Level};
use bootproof_rig::beacon::{Beacon, CanListener, Slot, Stage, flags};
use bootproof_rig::time::Instant;
use bootproof_rig::{CanEvent, Rig};
use bootproof_twin::bootloader::ArrayFlash;
use bootproof_twin::flash::{FlashArray, FlashOp, Tear};
use bootproof_twin::{Twin, TwinOptions};
use fut_image::keys::SigningKey;
use fut_image::{Ed25519Verify, ImageVersion, TrustedKey};

/// Points cut by default.
const DEFAULT_POINTS: usize = 520;

fn h723() -> BoardProfile {
    BoardProfile::builtin("stm32h723zg").unwrap()
}

fn key() -> SigningKey {
    SigningKey::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/keys/test-ed25519-a.pem"))
        .unwrap()
}

fn fw() -> BoardFirmware {
    for_board(&h723()).expect("firmware for the H723")
}

/// The three signed images of the life.
struct Images {
    v1: Vec<u8>,
    v2: Vec<u8>,
    v3: Vec<u8>,
}

impl Images {
    fn build() -> Images {
        let k = key();
        let s = |b, major, counter| fw().signed(&H723, b, ImageVersion::new(major, 0, 0, 0), counter, &k).unwrap();
        Images {
            v1: s(Binary::Slot(SlotId::A), 1, 1),
            v2: s(Binary::Slot(SlotId::B), 2, 2),
            v3: s(Binary::SlotNoConfirm(SlotId::A), 3, 2),
        }
    }

    fn of(&self, slot: SlotId, major: u8) -> Option<&[u8]> {
        match (slot, major) {
            (SlotId::A, 1) => Some(&self.v1),
            (SlotId::B, 2) => Some(&self.v2),
            (SlotId::A, 3) => Some(&self.v3),
            _ => None,
        }
    }
}

/// What the uncut life did, and when (indices into `ops`: "after `k` operations").
struct Life {
    base: FlashArray,
    ops: Vec<FlashOp>,
    /// The stored minimum security counter after `k` operations, for every `k`.
    stored: Vec<u32>,
    /// v2's last image word programmed (v2 may boot only after it).
    v2_written: usize,
    /// v2's confirmation finished (v1 never boots again).
    v2_confirmed: usize,
    /// v3's last image word programmed.
    v3_written: usize,
    /// v3's trial started: its selected word is written (v3 never boots again).
    v3_tried: usize,
}

async fn beacon(rig: &mut Rig, within: Duration) -> Option<Beacon> {
    let mut l = CanListener::new();
    let can = rig.can().unwrap();
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match can.recv(left).await {
            Ok(CanEvent::Frame(f)) => {
                if let Some(Ok(b)) = l.feed(&f)
                    && matches!(b.stage, Stage::Application | Stage::Recovery)
                {
                    return Some(b);
                }
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn ops_so_far(twin: &Twin) -> usize {
    twin.board().state().flash.recorded().len()
}

/// The stored minimum security counter of `flash`, read with the boot core.
fn stored_minimum(flash: &FlashArray, keys: &[TrustedKey]) -> u32 {
    boot_core::boot::stored_minimum(&mut ArrayFlash::new(flash, H723), &H723, keys, &mut Ed25519Verify).minimum
}

/// The last program of slot `slot`'s image area among `ops[from..to]`.
fn last_image_word(ops: &[FlashOp], from: usize, to: usize, layout: &Layout, slot: SlotId, len: usize) -> usize {
    let start = layout.flash_base + layout.slot(slot).offset;
    (from..to)
        .rev()
        .find(|i| matches!(&ops[*i], FlashOp::Program { addr, .. } if (start..start + len as u32).contains(addr)))
        .map(|i| i + 1)
        .expect("the image's words are in the recording")
}

async fn record(images: &Images) -> Life {
    let twin = Twin::new(h723(), TwinOptions::for_profile(&h723()));
    twin.program(&fw().factory_set(&H723, &key()).unwrap()).unwrap();
    let base = twin.board().state().flash.clone();
    twin.board().state().flash.record(true);
    let mut rig = twin.rig();
    rig.boot0().unwrap().set_boot0(Level::Low).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    let within = Duration::from_secs(10);
    let b = beacon(&mut rig, within).await.expect("v1 boots");
    assert_eq!((b.slot, b.version.major), (Slot::A, 1));

    let settle = Duration::from_millis(200);
    let v2 = update::plan("v2", images.v2.clone(), &H723, &[]).unwrap();
    let u1_start = ops_so_far(&twin);
    update::update(rig.can().unwrap(), &H723, &v2, &mut |_| {}).await.unwrap();
    let u1_end = ops_so_far(&twin);
    let b = beacon(&mut rig, within).await.expect("v2 boots on trial");
    assert_eq!((b.slot, b.version.major, b.flags), (Slot::B, 2, flags::TRIAL | flags::CONFIRMED));
    bootproof_rig::time::sleep(settle).await;
    let v2_confirmed = ops_so_far(&twin);
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    let b = beacon(&mut rig, within).await.expect("v2 boots confirmed");
    assert_eq!((b.slot, b.version.major, b.flags), (Slot::B, 2, 0));

    let v3 = update::plan("v3", images.v3.clone(), &H723, &[]).unwrap();
    let u2_start = ops_so_far(&twin);
    update::update(rig.can().unwrap(), &H723, &v3, &mut |_| {}).await.unwrap();
    let u2_end = ops_so_far(&twin);
    let b = beacon(&mut rig, within).await.expect("v3 boots on trial");
    assert_eq!((b.slot, b.version.major, b.flags), (Slot::A, 3, flags::TRIAL));
    let v3_tried = ops_so_far(&twin);
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    let b = beacon(&mut rig, within).await.expect("the revert boots v2");
    assert_eq!((b.slot, b.version.major, b.flags), (Slot::B, 2, 0));
    bootproof_rig::time::sleep(settle).await;

    let ops = twin.board().state().flash.recorded().to_vec();
    let keys = [key().trusted()];
    let mut flash = base.clone();
    let mut stored = vec![stored_minimum(&flash, &keys)];
    for op in &ops {
        flash.apply(op).unwrap();
        stored.push(stored_minimum(&flash, &keys));
    }
    assert!(stored.windows(2).all(|w| w[0] <= w[1]), "the uncut life never lowers the stored minimum: {stored:?}");
    assert_eq!((stored[0], *stored.last().unwrap()), (1, 2));
    Life {
        v2_written: last_image_word(&ops, u1_start, u1_end, &H723, SlotId::B, images.v2.len()),
        v3_written: last_image_word(&ops, u2_start, u2_end, &H723, SlotId::A, images.v3.len()),
        base,
        stored,
        v2_confirmed,
        v3_tried,
        ops,
    }
}

/// Where a cut lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Between operations: `k` completed, the next not started.
    Between,
    /// In operation `k`, torn.
    Torn(Tear),
}

#[derive(Debug, Clone, Copy)]
struct Point {
    k: usize,
    cut: Cut,
}

impl Point {
    fn code(&self) -> String {
        match self.cut {
            Cut::Between => format!("{}:between", self.k),
            Cut::Torn(Tear::Ecc) => format!("{}:torn-ecc", self.k),
            Cut::Torn(Tear::Silent) => format!("{}:torn-silent", self.k),
        }
    }

    fn parse(s: &str) -> Point {
        let (k, m) = s.split_once(':').expect("BOOTPROOF_UDS_CUT=K:between|torn-ecc|torn-silent");
        let cut = match m {
            "between" => Cut::Between,
            "torn-ecc" => Cut::Torn(Tear::Ecc),
            "torn-silent" => Cut::Torn(Tear::Silent),
            _ => panic!("BOOTPROOF_UDS_CUT mode must be between, torn-ecc or torn-silent, not {m}"),
        };
        Point { k: k.parse().expect("BOOTPROOF_UDS_CUT=K:MODE with K a number"), cut }
    }
}

/// The kind of flash operation, for the report.
fn kind(op: &FlashOp, layout: &Layout) -> &'static str {
    match op {
        FlashOp::Erase { .. } | FlashOp::Mass => "erase",
        FlashOp::Program { addr, .. } => {
            let off = addr - layout.flash_base;
            let j = layout.journal;
            if (j.offset..j.offset + j.size).contains(&off) {
                return "journal";
            }
            match layout.slot_containing(*addr) {
                Some(s) if off >= layout.trailer_offset(s) => "trailer",
                Some(_) => "image",
                None => "other",
            }
        }
    }
}

fn sample(life: &Life, want: usize) -> Vec<Point> {
    let n = life.ops.len();
    let mut points = Vec::new();
    let mut image = Vec::new();
    for (k, op) in life.ops.iter().enumerate() {
        if kind(op, &H723) == "image" {
            image.push(k);
        } else {
            points.push(Point { k, cut: Cut::Between });
            points.push(Point { k, cut: Cut::Torn(Tear::Ecc) });
            points.push(Point { k, cut: Cut::Torn(Tear::Silent) });
        }
    }
    points.push(Point { k: n, cut: Cut::Between });
    // Image words: evenly spread, modes in turn, the first and last of each download included.
    let left = want.saturating_sub(points.len()).max(8);
    let stride = (image.len() as f64 / left as f64).max(1.0);
    let mut chosen: Vec<usize> =
        (0..left).map(|i| image[((i as f64 * stride) as usize).min(image.len() - 1)]).collect();
    for marks in [life.v2_written - 1, life.v3_written - 1] {
        chosen.push(marks);
    }
    chosen.sort_unstable();
    chosen.dedup();
    for (i, k) in chosen.into_iter().enumerate() {
        let cut = [Cut::Between, Cut::Torn(Tear::Ecc), Cut::Torn(Tear::Silent)][i % 3];
        points.push(Point { k, cut });
    }
    points.sort_by_key(|p| p.k);
    points
}

/// The flash a cut at `p` leaves, over `base` (the recorded one, or one with another
/// bootloader in sector 0).
fn flash_at(life: &Life, base: &FlashArray, p: Point) -> FlashArray {
    let mut f = base.clone();
    for op in &life.ops[..p.k] {
        f.apply(op).unwrap();
    }
    if let Cut::Torn(how) = p.cut {
        f.tear(&life.ops[p.k], how);
    }
    f
}

struct Seen {
    point: Point,
    kind: &'static str,
    booted: Option<Beacon>,
    board_time: Duration,
    stored_after: u32,
    intact: bool,
}

fn power_on(flash: FlashArray, images: &Images, keys: &[TrustedKey]) -> (Option<Beacon>, Duration, u32, bool) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let twin = Twin::new(h723(), TwinOptions::for_profile(&h723()));
        twin.board().state().flash = flash;
        let mut rig = twin.rig();
        rig.boot0().unwrap().set_boot0(Level::Low).await.unwrap();
        let t0 = Instant::now();
        rig.power().unwrap().power_on().await.unwrap();
        let b = beacon(&mut rig, Duration::from_secs(10)).await;
        let took = t0.elapsed();
        // Let a trial's confirmation (before its beacon) and anything after it settle.
        bootproof_rig::time::sleep(Duration::from_millis(200)).await;
        let st = twin.board().state();
        let stored = stored_minimum(&st.flash, keys);
        let intact = b.as_ref().is_some_and(|b| {
            let slot = if b.slot == Slot::A { SlotId::A } else { SlotId::B };
            images.of(slot, b.version.major).is_some_and(|img| {
                let mut got = vec![0u8; img.len()];
                st.flash.read(H723.flash_base + H723.slot(slot).offset, &mut got).is_ok() && got == img
            })
        });
        (b, took, stored, intact)
    })
}

/// Every invariant of the module's documentation; `Err` names the broken one.
fn judge(life: &Life, s: &Seen) -> Result<(), String> {
    let k = s.point.k;
    // Operations certainly finished: `k` (the torn one is not).
    let Some(b) = &s.booted else { return Err("brick: nothing booted within 10 s".into()) };
    if b.stage != Stage::Application {
        return Err(format!("brick: {:?} while an intact image was stored", b.stage));
    }
    if !s.intact {
        return Err(format!("booted {:?} v{} whose slot does not hold the signed image", b.slot, b.version.major));
    }
    match (b.slot, b.version.major) {
        (Slot::A, 1) if k >= life.v2_confirmed => {
            return Err("v1 booted after v2's confirmation had finished (replacement by an older image)".into());
        }
        (Slot::B, 2) if k < life.v2_written => return Err("v2 booted before all of its words were written".into()),
        (Slot::A, 3) if k < life.v3_written => return Err("v3 booted before all of its words were written".into()),
        (Slot::A, 3) if k >= life.v3_tried => return Err("v3 booted again after its trial had started".into()),
        (Slot::A, 3) if b.flags & flags::TRIAL == 0 => return Err("v3 booted as if confirmed".into()),
        (Slot::A, 1) | (Slot::B, 2) | (Slot::A, 3) => {}
        (slot, v) => return Err(format!("unknown image booted: v{v} in {slot:?}")),
    }
    if s.stored_after < life.stored[k] {
        return Err(format!(
            "the stored security counter fell from {} to {} across the cut",
            life.stored[k], s.stored_after
        ));
    }
    Ok(())
}

#[test]
fn power_cuts_through_an_update_and_a_revert_on_the_real_binaries_never_brick() {
    let started = std::time::Instant::now();
    let images = Images::build();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let life = rt.block_on(record(&images));
    drop(rt);
    let recorded = started.elapsed();

    let points = match std::env::var("BOOTPROOF_UDS_CUT") {
        Ok(one) => vec![Point::parse(&one)],
        Err(_) => {
            let want = std::env::var("BOOTPROOF_UDS_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_POINTS);
            let p = sample(&life, want);
            assert!(p.len() >= want.min(DEFAULT_POINTS), "{} points sampled", p.len());
            p
        }
    };
    let keys = [key().trusted()];
    let next = Mutex::new(0usize);
    let seen = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(&point) = points.get(i) else { break };
                    let (booted, board_time, stored_after, intact) =
                        power_on(flash_at(&life, &life.base, point), &images, &keys);
                    let kind = life.ops.get(point.k).map_or("end", |op| kind(op, &H723));
                    seen.lock().unwrap().push(Seen { point, kind, booted, board_time, stored_after, intact });
                }
            });
        }
    });
    let mut seen = seen.into_inner().unwrap();
    seen.sort_by_key(|s| (s.point.k, s.point.code()));

    let mut failures = Vec::new();
    let mut per_kind: std::collections::BTreeMap<&str, (usize, std::collections::BTreeMap<String, usize>)> =
        Default::default();
    for s in &seen {
        let what = s.booted.as_ref().map_or("nothing".to_string(), |b| {
            format!("{:?} v{}{}", b.slot, b.version.major, if b.flags & flags::TRIAL != 0 { " trial" } else { "" })
        });
        let e = per_kind.entry(s.kind).or_default();
        e.0 += 1;
        *e.1.entry(what.clone()).or_default() += 1;
        if let Err(why) = judge(&life, s) {
            failures.push(format!(
                "cut {} ({} op {:?}): booted {what}: {why}\n  replay: BOOTPROOF_UDS_CUT={} cargo nextest run -p bootproof --test power_cut_uds",
                s.point.code(),
                s.kind,
                life.ops.get(s.point.k).map(short),
                s.point.code()
            ));
        }
    }
    let bricks = seen.iter().filter(|s| !s.booted.as_ref().is_some_and(|b| b.stage == Stage::Application)).count();
    let slowest = seen.iter().max_by_key(|s| s.board_time).expect("points");
    println!(
        "power cuts on the real binaries: {} operations recorded (update v1→v2, confirm, update v2→v3, trial, revert)",
        life.ops.len()
    );
    println!("  points: {}  bricks: {bricks}  invariant failures: {}", seen.len(), failures.len());
    for (kind, (n, outcomes)) in &per_kind {
        println!("  {kind:>8}: {n:4} points → {outcomes:?}");
    }
    println!(
        "  slowest point: {} ({} op) power-on → beacon {:.3} s board time",
        slowest.point.code(),
        slowest.kind,
        slowest.board_time.as_secs_f64()
    );
    println!(
        "  wall: {:.1} s recording, {:.1} s total on {threads} threads",
        recorded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cut points broke an invariant:\n{}",
        failures.len(),
        seen.len(),
        failures.join("\n")
    );

    // The campaign must catch a real bug of the real binary: the same cut points that leave a
    // torn trailer or journal word reading as an ECC double error, on a bootloader built with
    // its ECC-safe read unguarded (a plain read: the double error is a bus fault). Sector 0 is
    // never written by the life, so the mutant simply takes the real bootloader's place.
    if std::env::var("BOOTPROOF_UDS_CUT").is_ok() {
        return;
    }
    let mutant = fw().mutant_bootloader("EccReadUnguarded").expect("the mutant bootloader builds");
    let mut base = life.base.clone();
    base.erase_sector(0).unwrap();
    for (addr, word) in mutant.flash_words(32, 0xFF) {
        base.program_word(addr, &word).unwrap();
    }
    let torn: Vec<Point> = seen
        .iter()
        .filter(|s| s.point.cut == Cut::Torn(Tear::Ecc) && matches!(s.kind, "trailer" | "journal"))
        .map(|s| s.point)
        .collect();
    let caught: Vec<String> = torn
        .iter()
        .filter_map(|p| {
            let (booted, ..) = power_on(flash_at(&life, &base, *p), &images, &keys);
            let brick = !booted.as_ref().is_some_and(|b| b.stage == Stage::Application);
            brick.then(|| p.code())
        })
        .collect();
    println!(
        "  mutant EccReadUnguarded (the bootloader reads flash without its ECC guard): {} of {} torn-ECC trailer/journal points brick it: {caught:?}",
        caught.len(),
        torn.len()
    );
    assert!(!torn.is_empty(), "the campaign tears trailer and journal words");
    assert!(!caught.is_empty(), "the campaign missed a bootloader that faults on a torn word");
}

fn short(op: &FlashOp) -> String {
    match op {
        FlashOp::Program { addr, .. } => format!("program {addr:#010x}"),
        FlashOp::Erase { sector } => format!("erase sector {sector}"),
        FlashOp::Mass => "mass erase".into(),
    }
}
