//! Updates over UDS on CAN FD with the real binaries on the twin's emulated core: bootproof's
//! bootloader in sector 0, the application in slot A; the host's updater talks to the
//! application (which resets into the bootloader's update mode), downloads a new image into
//! slot B, and the new image boots on trial and confirms itself.

use std::time::Duration;

use boot_core::layout::{H723, SlotId};
use bootproof::firmware::{Binary, BoardFirmware, for_board};
use bootproof::update::{self, Progress, UpdateError};
use bootproof_fixtures::{BoardProfile, Level};
use bootproof_rig::beacon::{Beacon, CanListener, Slot, Stage, flags};
use bootproof_rig::{CanEvent, Rig};
use bootproof_twin::{Twin, TwinOptions};
use fut_image::ImageVersion;
use fut_image::keys::SigningKey;

fn h723() -> BoardProfile {
    BoardProfile::builtin("stm32h723zg").unwrap()
}

fn key(name: &str) -> SigningKey {
    SigningKey::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/keys").join(name)).unwrap()
}

fn fw() -> BoardFirmware {
    for_board(&h723()).expect("firmware for the H723")
}

/// A slot build of the app, signed with test key A as `major`.0.0 with `counter`.
fn signed(build: Binary, major: u8, counter: u32) -> Vec<u8> {
    fw().signed(&H723, build, ImageVersion::new(major, 0, 0, 0), counter, &key("test-ed25519-a.pem")).unwrap()
}

/// The factory set (the bootloader, v1 in slot A committed and confirmed), powered on.
async fn factory() -> (Twin, Rig) {
    let set = fw().factory_set(&H723, &key("test-ed25519-a.pem")).unwrap();
    let twin = Twin::new(h723(), TwinOptions::for_profile(&h723()));
    twin.program(&set).unwrap();
    let mut rig = twin.rig();
    rig.boot0().unwrap().set_boot0(Level::Low).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    (twin, rig)
}

async fn beacon(rig: &mut Rig) -> Beacon {
    let mut l = CanListener::new();
    let can = rig.can().unwrap();
    loop {
        match can.recv(Duration::from_secs(5)).await {
            Ok(CanEvent::Frame(f)) => {
                if let Some(b) = l.feed(&f) {
                    return b.unwrap();
                }
            }
            Ok(_) => {}
            Err(e) => panic!("no beacon: {e}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_update_over_uds_boots_the_new_image_on_trial_and_it_confirms_itself() {
    let (twin, mut rig) = factory().await;
    let b = beacon(&mut rig).await;
    assert_eq!((b.stage, b.slot, b.version.major), (Stage::Application, Slot::A, 1));

    let plan = update::plan("v2", signed(Binary::Slot(SlotId::B), 2, 2), &H723, &[key("test-ed25519-a.pem").trusted()])
        .unwrap();
    let mut phases = Vec::new();
    let report = update::update(rig.can().unwrap(), &H723, &plan, &mut |p| phases.push(p)).await;
    let events: Vec<String> = twin.board().events().into_iter().map(|e| e.what).collect();
    let report = report.unwrap_or_else(|e| panic!("{e}\n{:#?}", &events[events.len().saturating_sub(30)..]));
    assert_eq!((report.slot, report.resumed_at, report.sent), (SlotId::B, 0, plan.image.len() as u32));
    assert!(phases.contains(&Progress::Erasing(SlotId::B)) && phases.contains(&Progress::Checking), "{phases:?}");

    let b = beacon(&mut rig).await;
    assert_eq!((b.stage, b.slot, b.version.major), (Stage::Application, Slot::B, 2), "{b:?}");
    assert_eq!(b.flags, flags::TRIAL | flags::CONFIRMED, "a trial that confirmed itself");
}

#[tokio::test(start_paused = true)]
async fn an_image_for_the_running_slot_is_refused_before_anything_is_erased() {
    let (_twin, mut rig) = factory().await;
    beacon(&mut rig).await;
    let plan = update::plan("v2 for slot A", signed(Binary::Slot(SlotId::A), 2, 2), &H723, &[]).unwrap();
    let e = update::update(rig.can().unwrap(), &H723, &plan, &mut |_| {}).await.unwrap_err();
    assert!(matches!(e, UpdateError::WrongSlot { linked: SlotId::A, target: SlotId::B, .. }), "{e}");
    assert!(e.to_string().contains("build and sign the slot-B variant"), "{e}");
    // Still v1: the bootloader is in update mode; a reset boots v1 again.
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    let b = beacon(&mut rig).await;
    assert_eq!((b.stage, b.slot, b.version.major), (Stage::Application, Slot::A, 1), "{b:?}");
}

#[tokio::test(start_paused = true)]
async fn a_second_update_goes_to_the_other_slot() {
    let (twin, mut rig) = factory().await;
    beacon(&mut rig).await;
    let v2 = update::plan("v2", signed(Binary::Slot(SlotId::B), 2, 2), &H723, &[]).unwrap();
    update::update(rig.can().unwrap(), &H723, &v2, &mut |_| {}).await.unwrap();
    let b = beacon(&mut rig).await;
    assert_eq!((b.slot, b.version.major, b.flags), (Slot::B, 2, flags::TRIAL | flags::CONFIRMED));
    let v3 = update::plan("v3", signed(Binary::Slot(SlotId::A), 3, 2), &H723, &[]).unwrap();
    let r = update::update(rig.can().unwrap(), &H723, &v3, &mut |_| {}).await;
    if let Err(e) = &r {
        let elf = fw().image(Binary::Bootloader).unwrap().raw;
        let probe = rig.probe().unwrap();
        probe.rtt_attach(Some(&elf), Duration::from_millis(10)).await.unwrap();
        let mut buf = vec![0u8; 65536];
        let n = probe.rtt_read(&mut buf).await.unwrap();
        let log = bootproof_rig::defmt::DefmtLog::from_elf(&elf).unwrap().feed(&buf[..n]);
        let events: Vec<String> = twin.board().events().into_iter().map(|e| e.what).collect();
        panic!("{e}\nRTT: {log:?}\n{:#?}", &events[events.len().saturating_sub(25)..]);
    }
    let b = beacon(&mut rig).await;
    assert_eq!((b.slot, b.version.major, b.flags), (Slot::A, 3, flags::TRIAL | flags::CONFIRMED));
}

/// The host dies part-way through the transfer (its future is dropped); a new run finds the
/// download under way and resumes it instead of erasing and starting over.
#[tokio::test(start_paused = true)]
async fn a_host_killed_mid_transfer_resumes_where_it_stopped() {
    let (_twin, mut rig) = factory().await;
    beacon(&mut rig).await;
    let v2 = update::plan("v2", signed(Binary::Slot(SlotId::B), 2, 2), &H723, &[]).unwrap();
    let mut quiet = |_| {};
    let first = update::update(rig.can().unwrap(), &H723, &v2, &mut quiet);
    // Long enough to enter update mode and send about half of the image (the whole image is
    // one TransferData, about 1.1 s on the bus), not enough to finish it.
    let cut = bootproof_rig::time::timeout(Duration::from_millis(700), first).await;
    assert!(cut.is_err(), "the first run was interrupted");
    let mut phases = Vec::new();
    let report = update::update(rig.can().unwrap(), &H723, &v2, &mut |p| phases.push(p)).await.unwrap();
    assert!(phases.iter().any(|p| matches!(p, Progress::Resuming(_))), "{phases:?}");
    assert!(!phases.iter().any(|p| matches!(p, Progress::Erasing(_))), "no second erase: {phases:?}");
    assert!(report.resumed_at > 0 && report.resumed_at < v2.image.len() as u32, "{report:?}");
    let b = beacon(&mut rig).await;
    assert_eq!((b.slot, b.version.major, b.flags), (Slot::B, 2, flags::TRIAL | flags::CONFIRMED));
}

/// Frames lost on the way (a receiver's FIFO overflowing): a consecutive frame of the
/// TransferData (the whole image is one), and later the positive answer to a TransferData.
/// The server drops the broken request (wrong sequence number) and keeps what it stored; the
/// tester times out, asks where the download stands and goes on from there; for the lost
/// answer, it finds the block stored whole and does not send it again.
#[tokio::test(start_paused = true)]
async fn lost_frames_cost_a_retry_not_the_update() {
    let (twin, mut rig) = factory().await;
    beacon(&mut rig).await;
    let mut seen = (0u32, 0u32);
    twin.board().can_bus().lose_frames(move |f| {
        let raw = match f.id() {
            bootproof_rig::can::CanId::Standard(id) => id,
            bootproof_rig::can::CanId::Extended(_) => return false,
        };
        let d = f.data();
        if raw == bootproof_uds::REQUEST_ID && d.first().is_some_and(|b| b >> 4 == 2) {
            seen.0 += 1;
            return seen.0 == 100; // a consecutive frame of the second block
        }
        if raw == bootproof_uds::RESPONSE_ID && d.len() > 2 && d[1] == 0x76 {
            seen.1 += 1;
            return seen.1 == 1; // the answer to the first TransferData that completes
        }
        false
    });
    let v2 = update::plan("v2", signed(Binary::Slot(SlotId::B), 2, 2), &H723, &[]).unwrap();
    let report = update::update(rig.can().unwrap(), &H723, &v2, &mut |_| {}).await.unwrap();
    assert_eq!(twin.board().can_bus().lost(), 2, "both losses happened");
    assert_eq!(report.resent, 2, "each loss cost one block sent again: {report:?}");
    let b = beacon(&mut rig).await;
    assert_eq!((b.slot, b.version.major, b.flags), (Slot::B, 2, flags::TRIAL | flags::CONFIRMED));
}

/// The host's controller goes bus-off in the middle of the transfer (its sends fail, it hears
/// nothing) and recovers 300 ms later, as SocketCAN's `restart-ms` does. The updater waits,
/// asks the bootloader where the download stands and goes on from there: no second erase, and
/// the image boots.
#[tokio::test(start_paused = true)]
async fn a_bus_off_mid_transfer_costs_a_pause_not_the_update() {
    let (twin, mut rig) = factory().await;
    beacon(&mut rig).await;
    let mut cfs = 0u32;
    twin.board().can_bus().bus_off(
        move |f| {
            let host = matches!(f.id(), bootproof_rig::can::CanId::Standard(id) if id == bootproof_uds::REQUEST_ID);
            if host && f.data().first().is_some_and(|b| b >> 4 == 2) {
                cfs += 1;
            }
            cfs == 700
        },
        Duration::from_millis(300),
    );
    let v2 = update::plan("v2", signed(Binary::Slot(SlotId::B), 2, 2), &H723, &[]).unwrap();
    let mut phases = Vec::new();
    let report = update::update(rig.can().unwrap(), &H723, &v2, &mut |p| phases.push(p)).await.unwrap();
    assert_eq!(twin.board().can_bus().bus_offs(), 1, "the bus-off happened");
    assert!(phases.iter().any(|p| matches!(p, Progress::Retrying(why) if why.contains("bus-off"))), "{phases:?}");
    assert!(phases.iter().any(|p| matches!(p, Progress::Resuming(_))), "{phases:?}");
    assert_eq!(phases.iter().filter(|p| matches!(p, Progress::Erasing(_))).count(), 1, "one erase: {phases:?}");
    assert!(report.resumed_at > 0, "{report:?}");
    let b = beacon(&mut rig).await;
    assert_eq!((b.slot, b.version.major, b.flags), (Slot::B, 2, flags::TRIAL | flags::CONFIRMED));
}

/// A second tester on the bus talks to the bootloader while the update runs (it reads the
/// bootloader's version every 150 ms). Its single frames cut into TransferData receptions
/// (ISO 15765-2 §9.8.3: a new single frame ends the reception under way) and its responses
/// reach the first tester too; the update still completes with the right image.
#[tokio::test(start_paused = true)]
async fn a_second_tester_talking_at_once_does_not_break_the_update() {
    let (twin, mut rig) = factory().await;
    beacon(&mut rig).await;
    let rates = rig.can().unwrap().bitrates();
    let mut other = twin.board().can_bus().attach("tester-2", rates);
    let v2 = update::plan("v2", signed(Binary::Slot(SlotId::B), 2, 2), &H723, &[]).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let chatter = async {
        let mut sent = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            bootproof_rig::time::sleep(Duration::from_millis(150)).await;
            let f = bootproof_rig::can::CanFrame::fd(
                bootproof_rig::can::CanId::Standard(bootproof_uds::REQUEST_ID),
                &[0x03, 0x22, 0xF1, 0x80, 0xCC, 0xCC, 0xCC, 0xCC],
                true,
            )
            .unwrap();
            use bootproof_rig::CanBus;
            other.send(&f).await.unwrap();
            sent += 1;
        }
        sent
    };
    let run = async {
        let r = update::update(rig.can().unwrap(), &H723, &v2, &mut |_| {}).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    };
    let (report, sent) = tokio::join!(run, chatter);
    let report = report.unwrap();
    assert!(sent > 20, "the second tester talked throughout: {sent} requests");
    assert_eq!(report.sent, v2.image.len() as u32);
    assert!(report.resent > 0, "its requests cut into some blocks, which were sent again: {report:?}");
    let b = beacon(&mut rig).await;
    assert_eq!((b.slot, b.version.major, b.flags), (Slot::B, 2, flags::TRIAL | flags::CONFIRMED));
}
