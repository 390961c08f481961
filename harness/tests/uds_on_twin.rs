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
use bootproof_rig::image::{FirmwareImage, Segment};
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

/// The factory set: the bootloader, v1 in slot A committed and confirmed; powered on.
async fn factory() -> (Twin, Rig) {
    let mut segs = fw().image(Binary::Bootloader).unwrap().segments;
    let v1 = signed(Binary::Slot(SlotId::A), 1, 1);
    let provisioned = boot_core::provision::segments(&H723, SlotId::A, &v1, true).unwrap();
    segs.extend(provisioned.into_iter().map(|(address, data)| Segment { address, data }));
    let set = FirmwareImage::from_segments("factory set", segs).unwrap();
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
    eprintln!("{report:?}");
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
