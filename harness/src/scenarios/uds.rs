//! `uds-update`: updates through bootproof's bootloader over UDS on CAN FD, with the real
//! bootloader and application binaries, judged by what boots (the beacon) and what the slots
//! hold afterwards.
//!
//! 1. Factory set through the probe: the bootloader and v1 in slot A, confirmed. v1 boots.
//! 2. Update to v2 (slot B): the application hands over to the bootloader's update mode, the
//!    download commits, v2 boots on trial and confirms itself; it keeps booting after NRST.
//! 3. Update again, to v3 (slot A), a build that never confirms: it boots once on trial; the
//!    next reset reverts to v2.
//! 4. A downgrade (v1 again, slot A): the bootloader verifies it and refuses to commit it
//!    (older than v2 in the other slot). v2 keeps booting.
//! 5. An image signed with a key the bootloader does not trust (v4, slot A): refused by the
//!    check routine, named. v2 keeps booting.

use boot_core::layout::{H723, SlotId};
use bootproof_fixtures::Level;
use bootproof_rig::beacon::flags;
use fut_image::ImageVersion;
use fut_image::keys::SigningKey;

use super::signed::expect_app;
use super::{Ctx, Outcome, ScenarioError, check};
use crate::firmware::Binary;
use crate::update::{self, UpdateError};

/// Run one update over UDS; the outcome for the timeline.
async fn run_update(c: &mut Ctx<'_>, what: &str, image: Vec<u8>) -> Result<Result<(), String>, ScenarioError> {
    let plan = update::plan(what, image, &H723, &[]).map_err(|e| ScenarioError::Check(e.to_string()))?;
    c.drain().await?;
    let r = update::update(c.rig.can()?, &H723, &plan, &mut |_| {}).await;
    Ok(match r {
        Ok(rep) => {
            c.event(format!("UDS update: {what} into slot {} committed; ECUReset", rep.slot));
            Ok(())
        }
        Err(UpdateError::Refused { slot, reason }) => {
            c.event(format!("UDS update: {what} into slot {slot} refused by the bootloader: {reason}"));
            Err(reason)
        }
        Err(e) => return Err(ScenarioError::Check(format!("UDS update of {what}: {e}"))),
    })
}

pub(super) async fn uds_update(c: &mut Ctx<'_>) -> Result<Outcome, ScenarioError> {
    let b = c.board();
    let Some(fw) = crate::firmware::for_board(&b).filter(|f| f.is_full()) else {
        return Ok(Outcome::Skip(format!(
            "bootproof's bootloader and UDS server are for the NUCLEO-H723ZG; {} has none",
            b.name
        )));
    };
    if let Some(skip) = super::signed::factory_rig_missing(c) {
        return Ok(skip);
    }
    let (ka, kb) = super::signed::test_keys();
    let signed = |build, major: u8, counter, k: &SigningKey| {
        fw.signed(&H723, build, ImageVersion::new(major, 0, 0, 0), counter, k)
    };

    // 1. Factory set.
    c.rig.reset_into_rom().await?;
    c.rig.probe()?.erase_all(c.opts.permissions).await?;
    c.event("mass erase through the probe");
    c.boot0(Level::Low).await?;
    let set = fw.factory_set(&H723, &ka)?;
    c.drain().await?;
    c.rig.probe()?.flash(&set, &mut |_| {}).await?;
    c.event("probe flashed the bootloader and v1 in slot A, confirmed");
    expect_app(c, 1, SlotId::A, 0).await?;

    // 2. v2 into slot B: a trial that confirms itself.
    let r = run_update(c, "v2 (slot B)", signed(Binary::Slot(SlotId::B), 2, 2, &ka)?).await?;
    check(r.is_ok(), || format!("v2 was refused: {r:?}"))?;
    expect_app(c, 2, SlotId::B, flags::TRIAL | flags::CONFIRMED).await?;
    c.nrst().await?;
    expect_app(c, 2, SlotId::B, 0).await?;

    // 3. Update again: v3 into slot A, never confirming: one trial, then the revert.
    let r = run_update(c, "v3 (slot A, never confirms)", signed(Binary::SlotNoConfirm(SlotId::A), 3, 2, &ka)?).await?;
    check(r.is_ok(), || format!("v3 was refused: {r:?}"))?;
    expect_app(c, 3, SlotId::A, flags::TRIAL).await?;
    c.nrst().await?;
    expect_app(c, 2, SlotId::B, 0).await?;

    // 4. A downgrade, and 5. a foreign key: verified by the bootloader, refused by name.
    for (what, image, reason) in [
        (
            "v1 (slot A, counter 2), a downgrade",
            signed(Binary::Slot(SlotId::A), 1, 2, &ka)?,
            "not-newer-than-the-other-slot",
        ),
        ("v4 (slot A) signed with test key B", signed(Binary::Slot(SlotId::A), 4, 2, &kb)?, "unknown-key"),
    ] {
        let r = run_update(c, what, image).await?;
        check(r.as_ref().err().map(String::as_str) == Some(reason), || {
            format!("{what}: expected the bootloader to refuse it ({reason}), got {r:?}")
        })?;
        c.nrst().await?;
        expect_app(c, 2, SlotId::B, 0).await?;
    }
    Ok(Outcome::Pass)
}
