//! `signed-boot`: bootproof's own bootloader (the boot core) on the board, through the probe
//! and the beacon only, so the same scenario runs on hardware. The applications in the slots are the real firmware (`app-slot-a`, `app-slot-b` and
//! their `-noconfirm` builds), signed here; they confirm themselves through the boot core on
//! the flash controller, and their beacons say what booted, whether it was a trial and whether
//! it confirmed itself. The bootloader is the real binary (`firmware-under-test/stm32h7/
//! bootloader`, built trusting test key A), on the board and on the twin's emulated core alike.
//!
//! 1. Factory image set: the bootloader (trusting the test key) and v1 in slot A, committed
//!    and confirmed. v1 boots.
//! 2. An update as the updater leaves it: v2 (security counter 2) in slot B, committed. It
//!    boots on trial, confirms itself, and keeps booting.
//! 3. A broken update: v3 in slot A never confirms. It boots once; the next boot reverts to v2.
//! 4. Bad images in slot A, each committed: a corrupted payload, a rollback below the stored
//!    security counter, a foreign key, a build linked for slot B (which the host's provisioning
//!    refuses, so it is written by hand). v2 keeps booting and none is selected.
//! 5. Both slots erased: the bootloader stays in recovery and says so on CAN.

use boot_core::layout::{Layout, SlotId};
use bootproof_fixtures::{Capability, Level};
use bootproof_rig::beacon::{Slot, Stage, flags};
use bootproof_rig::image::{FirmwareImage, Segment};
use bootproof_twin::bootloader;
use fut_image::ImageVersion;
use fut_image::keys::SigningKey;

use super::{Ctx, Outcome, ScenarioError, check};
use crate::firmware::Binary;

const TEST_KEY_A: &str = include_str!("../../../fixtures/keys/test-ed25519-a.pem");
const TEST_KEY_B: &str = include_str!("../../../fixtures/keys/test-ed25519-b.pem");

/// The repository's test keys A and B (test-only).
pub(super) fn test_keys() -> (SigningKey, SigningKey) {
    (key(TEST_KEY_A, "fixtures/keys/test-ed25519-a.pem"), key(TEST_KEY_B, "fixtures/keys/test-ed25519-b.pem"))
}

/// Why a scenario that starts from an erased flash and drives bootproof's bootloader cannot
/// run on this rig, if it cannot: it needs the probe, CAN, NRST and BOOT0, and the opt-in to
/// mass-erase.
pub(super) fn factory_rig_missing(c: &Ctx<'_>) -> Option<Outcome> {
    for cap in [Capability::Probe, Capability::Can, Capability::Nrst, Capability::Boot0] {
        if !c.rig.has(cap) {
            return Some(Outcome::Skip(format!("needs the {cap}")));
        }
    }
    if !c.opts.permissions.mass_erase() {
        return Some(Outcome::Skip(
            "starts from an erased flash: pass --allow-mass-erase to run it on this rig".into(),
        ));
    }
    None
}

fn key(text: &str, name: &str) -> SigningKey {
    SigningKey::from_pem(text, std::path::Path::new(name)).expect("the committed test keys parse")
}

/// Expect the app `major` from `slot` to announce itself, with the beacon `flags`.
/// The next beacon is the application `major` from `slot` with exactly `flags`.
pub(super) async fn expect_app(c: &mut Ctx<'_>, major: u8, slot: SlotId, flags: u8) -> Result<(), ScenarioError> {
    let b = c.expect_beacon().await?;
    let want_slot = match slot {
        SlotId::A => Slot::A,
        SlotId::B => Slot::B,
    };
    check(b.stage == Stage::Application && b.version.major == major && b.slot == want_slot && b.flags == flags, || {
        format!(
            "expected app v{major} from slot {slot} with flags {flags:#04x}, got {} v{} from slot {} with flags {:#04x}",
            b.stage.name(),
            b.version,
            b.slot.name(),
            b.flags
        )
    })
}

/// Read a slot's trailer words through the probe, as the boot core interprets them.
async fn trailer(c: &mut Ctx<'_>, layout: &Layout, slot: SlotId) -> Result<String, ScenarioError> {
    use boot_core::flash::WordRead;
    use boot_core::trailer::{Trailer, WordState};
    let base = layout.flash_base + layout.trailer_offset(slot);
    let raw = c.rig.probe()?.read_memory(base, boot_core::layout::TRAILER_LEN as usize).await;
    let t = Trailer::from_fn(|f| {
        let at = f.offset(layout, slot) - layout.trailer_offset(slot);
        let w = match &raw {
            Ok(b) => {
                let w: [u8; 32] = b[at as usize..at as usize + 32].try_into().expect("one word");
                if w == [0xFF; 32] { WordRead::Erased } else { WordRead::Clean(w) }
            }
            Err(_) => WordRead::Indeterminate,
        };
        WordState::of(w, f)
    });
    let word = |yes: bool, name: &str| if yes { name.to_string() } else { format!("not {name}") };
    let selected = match t.selected {
        WordState::Set => "selected".to_string(),
        WordState::Unset => "not selected".to_string(),
        WordState::Indeterminate => "selected: garbage".to_string(),
    };
    let confirmed = match (t.confirm_proven(), t.is_confirmed()) {
        (true, _) => "confirmed".to_string(),
        (false, true) => "confirmed (not proven)".to_string(),
        _ => "not confirmed".to_string(),
    };
    let t = format!("slot {slot} trailer: {}, {selected}, {confirmed}", word(t.is_committed(), "committed"));
    c.event(t.clone());
    Ok(t)
}

async fn flash_set(c: &mut Ctx<'_>, what: &str, segments: Vec<(u32, Vec<u8>)>) -> Result<(), ScenarioError> {
    c.drain().await?;
    let segs = segments.into_iter().map(|(address, data)| Segment { address, data }).collect();
    let img = FirmwareImage::from_segments(what, segs).map_err(|e| ScenarioError::Check(e.to_string()))?;
    c.rig.probe()?.flash(&img, &mut |_| {}).await?;
    c.event(format!("probe flashed {what}; the probe's reset boots it"));
    Ok(())
}

fn install(layout: &Layout, slot: SlotId, image: &[u8], confirmed: bool) -> Result<Vec<(u32, Vec<u8>)>, ScenarioError> {
    boot_core::provision::segments(layout, slot, image, confirmed)
        .map_err(|r| ScenarioError::Check(format!("provisioning slot {slot}: {r}")))
}

pub(super) async fn signed_boot(c: &mut Ctx<'_>) -> Result<Outcome, ScenarioError> {
    let b = c.board();
    let Some(layout) = bootloader::layout_for(&b) else {
        return Ok(Outcome::Skip(format!("bootproof's bootloader is laid out for the STM32H723; {} differs", b.name)));
    };
    let Some(fw) = crate::firmware::for_board(&b) else {
        return Ok(Outcome::Skip(format!("bootproof's firmware is for the NUCLEO-H723ZG; {} has none", b.name)));
    };
    if let Some(skip) = factory_rig_missing(c) {
        return Ok(skip);
    }
    let (ka, kb) = test_keys();
    let app = |slot, major: u8, counter, confirms: bool, k: &SigningKey| {
        let build = if confirms { Binary::Slot(slot) } else { Binary::SlotNoConfirm(slot) };
        fw.signed(&layout, build, ImageVersion::new(major, 0, 0, 0), counter, k)
    };

    // 1. The factory image set.
    c.rig.reset_into_rom().await?;
    c.rig.probe()?.erase_all(c.opts.permissions).await?;
    c.event("mass erase through the probe");
    c.boot0(Level::Low).await?;
    let mut set = fw.image(Binary::Bootloader)?.segments.into_iter().map(|s| (s.address, s.data)).collect::<Vec<_>>();
    set.extend(install(&layout, SlotId::A, &app(SlotId::A, 1, 1, true, &ka)?, true)?);
    flash_set(c, "the bootloader (trusting test key A) and v1 in slot A, committed and confirmed", set).await?;
    expect_app(c, 1, SlotId::A, 0).await?;

    // 2. A good update, as the updater leaves it: committed, not yet selected.
    let v2 = app(SlotId::B, 2, 2, true, &ka)?;
    flash_set(c, "v2 (security counter 2) in slot B, committed", install(&layout, SlotId::B, &v2, false)?).await?;
    expect_app(c, 2, SlotId::B, flags::TRIAL | flags::CONFIRMED).await?;
    let t = trailer(c, &layout, SlotId::B).await?;
    check(t.ends_with("committed, selected, confirmed"), || format!("v2 did not confirm itself: {t}"))?;
    c.nrst().await?;
    expect_app(c, 2, SlotId::B, 0).await?;

    // 3. A broken update: one trial, then back to v2.
    let v3 = app(SlotId::A, 3, 2, false, &ka)?;
    flash_set(c, "v3 (never confirms) in slot A, committed", install(&layout, SlotId::A, &v3, false)?).await?;
    expect_app(c, 3, SlotId::A, flags::TRIAL).await?;
    c.nrst().await?;
    expect_app(c, 2, SlotId::B, 0).await?;
    let t = trailer(c, &layout, SlotId::A).await?;
    check(t.ends_with("committed, selected, not confirmed"), || format!("v3's failed trial is not recorded: {t}"))?;
    c.nrst().await?;
    expect_app(c, 2, SlotId::B, 0).await?;

    // 4. Bad images, each committed in slot A (as a probe or a bug could leave them).
    let mut corrupted = app(SlotId::A, 4, 2, true, &ka)?;
    corrupted[0x400 + 0x200] ^= 0x01;
    let bad: [(&str, Vec<u8>); 3] = [
        ("v4 with one payload bit flipped", corrupted),
        ("v5 with security counter 1, below the stored 2", app(SlotId::A, 5, 1, true, &ka)?),
        ("v6 signed with test key B, which the bootloader does not trust", app(SlotId::A, 6, 2, true, &kb)?),
    ];
    for (what, img) in bad {
        flash_set(c, &format!("{what} in slot A, committed"), install(&layout, SlotId::A, &img, false)?).await?;
        expect_app(c, 2, SlotId::B, 0).await?;
        let t = trailer(c, &layout, SlotId::A).await?;
        check(t.contains("not selected"), || format!("a rejected image was selected: {t}"))?;
    }
    // A build linked for slot B placed in slot A. The host's provisioning refuses it, so
    // write it as a probe or a bug could: its bytes at slot A's base plus a committed word.
    let wrong = app(SlotId::B, 7, 2, true, &ka)?;
    let refused = install(&layout, SlotId::A, &wrong, false).is_err();
    c.event(format!("provisioning a slot-B build for slot A: {}", if refused { "refused" } else { "ACCEPTED" }));
    check(refused, || "a build linked for slot B was accepted for slot A".into())?;
    let mut body = wrong;
    body.resize(body.len().next_multiple_of(layout.word as usize), 0xFF);
    let mut forced = vec![(layout.slot_address(SlotId::A), body)];
    for f in boot_core::trailer::provisioned(false) {
        forced.push((layout.flash_base + f.offset(&layout, SlotId::A), f.pattern().to_vec()));
    }
    flash_set(c, "v7 linked for slot B written into slot A by hand, committed", forced).await?;
    expect_app(c, 2, SlotId::B, 0).await?;
    let t = trailer(c, &layout, SlotId::A).await?;
    check(t.contains("not selected"), || format!("an image linked for another slot was selected: {t}"))?;

    // 5. Nothing valid: recovery.
    for slot in SlotId::ALL {
        let r = layout.slot(slot);
        c.rig.probe()?.erase_range(layout.flash_base + r.offset, layout.flash_base + r.end()).await?;
    }
    c.event("probe erased slots A and B");
    c.nrst().await?;
    let a = c.expect_beacon().await?;
    check(a.stage == Stage::Recovery, || "with no valid image the bootloader did not stay in recovery".into())?;
    Ok(Outcome::Pass)
}
