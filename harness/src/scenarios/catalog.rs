//! The boot scenarios.

use std::time::Duration;

use bootproof_fixtures::{Capability, Level, ResetKind, RomTransportKind};
use bootproof_rig::CanEvent;
use bootproof_rig::beacon::{Beacon, Canary, Stage as BeaconStage};
use bootproof_rig::image::FirmwareImage;

use super::{AppImage, Body, Ctx, Outcome, Scenario, ScenarioError, Stage, check};
use crate::firmware::Binary;
use crate::flash::{self, FlashOptions, FlashReport};
use crate::rom::RomClient;

fn s1<'c, 'r>(c: &'c mut Ctx<'r>) -> Body<'c> {
    Box::pin(rom_get_id(c))
}
fn s2<'c, 'r>(c: &'c mut Ctx<'r>) -> Body<'c> {
    Box::pin(seed_loop(c))
}
fn s3<'c, 'r>(c: &'c mut Ctx<'r>) -> Body<'c> {
    Box::pin(reset_vs_power_on(c))
}
fn s4<'c, 'r>(c: &'c mut Ctx<'r>) -> Body<'c> {
    Box::pin(blank_flash(c))
}
fn s5<'c, 'r>(c: &'c mut Ctx<'r>) -> Body<'c> {
    Box::pin(interrupted_transfer(c))
}
fn s6<'c, 'r>(c: &'c mut Ctx<'r>) -> Body<'c> {
    Box::pin(super::signed::signed_boot(c))
}
fn s7<'c, 'r>(c: &'c mut Ctx<'r>) -> Body<'c> {
    Box::pin(super::uds::uds_update(c))
}

/// Every scenario, in order.
pub static ALL: [Scenario; 7] = [
    Scenario {
        id: "rom-get-id",
        title: "BOOT0 high + NRST: the ROM bootloader answers Get ID with the profile's PID",
        run: s1,
    },
    Scenario {
        id: "seed-loop",
        title: "the seed loop: ROM, flash over CAN, Go, NRST with BOOT0 high, BOOT0 low + NRST",
        run: s2,
    },
    Scenario {
        id: "reset-vs-power-on",
        title: "reset flags after NRST and power-on; RAM survives NRST but not power-off",
        run: s3,
    },
    Scenario {
        id: "blank-flash",
        title: "blank flash: lockup (or the empty-check latch), ROM still reachable",
        run: s4,
    },
    Scenario {
        id: "interrupted-transfer",
        title: "power cut or NRST after every ROM write command: never bricked",
        run: s5,
    },
    Scenario {
        id: "signed-boot",
        title: "bootproof's bootloader: signed A/B images, trial boot, revert, rejections, recovery",
        run: s6,
    },
    Scenario {
        id: "uds-update",
        title: "updates over UDS on CAN FD: A->B trial and confirm, again with a revert, downgrade and foreign key refused",
        run: s7,
    },
];

/// The application for the start of flash, or the skip saying why there is none.
macro_rules! app_or_skip {
    ($c:expr) => {
        match $c.app(Binary::Flash)? {
            AppImage::Image(i) => i,
            AppImage::None(why) => return Ok(Outcome::Skip(why)),
        }
    };
}

/// Check that the beacon is the application's, from the start of flash.
fn check_app(b: &Beacon, image: &FirmwareImage) -> Result<(), ScenarioError> {
    check(b.stage == BeaconStage::Application && b.vector_table == image.start(), || {
        format!(
            "expected the application at {:#010x}, but the beacon says {} at {:#010x}",
            image.start(),
            b.stage.name(),
            b.vector_table
        )
    })
}

/// Check the reset flags a beacon reports against the profile's value for `kind`.
fn check_flags(c: &Ctx<'_>, b: &Beacon, kind: ResetKind, exact: bool) -> Result<(), ScenarioError> {
    let p = c.rig.board();
    let want = p.reset.value_for(kind);
    let ok = if exact { b.reset_flags == want } else { b.reset_flags & want == want };
    check(ok, || {
        format!(
            "the application read {} = {:#010x} ({}), but after a {kind} the profile expects {}{want:#010x} ({})",
            p.reset.register_name,
            b.reset_flags,
            p.reset.decode(b.reset_flags).join("|"),
            if exact { "" } else { "at least " },
            p.reset.decode(want).join("|")
        )
    })
}

/// Check what the RAM canary said.
fn check_canary(b: &Beacon, want: Canary, boots: u16) -> Result<(), ScenarioError> {
    check(b.canary == want && b.boots == boots, || {
        format!(
            "expected the RAM canary {} at boot {boots}, the application found it {} at boot {}",
            want.name(),
            b.canary.name(),
            b.boots
        )
    })
}

fn describe(r: &FlashReport) -> String {
    format!(
        "erased sectors {:?}, {} write command(s), {} bytes{}",
        r.erased,
        r.writes,
        r.bytes,
        if r.verified { ", verified" } else { "" }
    )
}

/// Connect to the ROM bootloader over `kind` and record its ID.
async fn rom_id(c: &mut Ctx<'_>, kind: Option<RomTransportKind>) -> Result<(), ScenarioError> {
    let mut rom = RomClient::open(c.rig, kind)?;
    let pid = rom.connect().await?;
    let t = rom.transport();
    c.event(format!("ROM bootloader over {t}: Get ID -> PID {pid:#05x}"));
    Ok(())
}

async fn rom_get_id(c: &mut Ctx<'_>) -> Result<Outcome, ScenarioError> {
    let Some(kind) = c.rom_transport() else {
        return Ok(Outcome::Skip(
            "the rig reaches none of the board's ROM bootloader interfaces (CAN or console)".into(),
        ));
    };
    c.boot0(Level::High).await?;
    c.nrst().await?;
    c.boot0(Level::Low).await?;
    bootproof_rig::time::sleep(c.boot_wait()).await;
    rom_id(c, Some(kind)).await?;
    if c.rig.has(Capability::Probe) {
        c.expect_stage(Stage::Rom).await?;
    }
    Ok(Outcome::Pass)
}

async fn seed_loop(c: &mut Ctx<'_>) -> Result<Outcome, ScenarioError> {
    let b = c.board();
    let Some(kind) = c.can_transport() else {
        return Ok(Outcome::Skip(format!(
            "the seed loop flashes over CAN: {} has no CAN ROM bootloader interface, or the rig has no CAN",
            b.name
        )));
    };
    let image = app_or_skip!(c);
    // 1. BOOT0 high, then NRST: the ROM bootloader runs. BOOT0 stays high (the relay latch).
    c.boot0(Level::High).await?;
    c.nrst().await?;
    bootproof_rig::time::sleep(c.boot_wait()).await;
    // 2. Erase and flash the app over CAN.
    let report = {
        let mut rom = RomClient::open(c.rig, Some(kind))?;
        let pid = rom.connect().await?;
        let r = flash::flash(&mut rom, &image, &FlashOptions::default(), &Default::default(), &mut |_| {}).await?;
        c.event(format!("ROM bootloader over {kind}: PID {pid:#05x}; flashed {}: {}", image.name, describe(&r)));
        r
    };
    check(report.verified, || "the flash was not verified".into())?;
    // 3. Go: the app runs, without a reset: it still sees the NRST that entered the ROM.
    let entry = image.start();
    c.drain().await?;
    RomClient::open(c.rig, Some(kind))?.go(entry).await?;
    c.event(format!("Go {entry:#010x}"));
    c.expect_stage(Stage::App).await?;
    let first = c.expect_beacon().await?;
    check_app(&first, &image)?;
    check_flags(c, &first, ResetKind::Pin, false)?;
    // 4. NRST with BOOT0 still high: back in the ROM bootloader (the forum thread's trap).
    c.nrst().await?;
    c.expect_stage(Stage::Rom).await?;
    rom_id(c, Some(kind)).await?;
    // 5. BOOT0 low + NRST: the app runs; it cleared the flags last time, so exactly NRST's are
    //    set, and its RAM canary survived two resets and a session in the ROM bootloader.
    c.boot0(Level::Low).await?;
    c.nrst().await?;
    c.expect_stage(Stage::App).await?;
    let b = c.expect_beacon().await?;
    check_app(&b, &image)?;
    check_flags(c, &b, ResetKind::Pin, true)?;
    check_canary(&b, Canary::Retained, first.boots.saturating_add(1))?;
    Ok(Outcome::Pass)
}

/// A RAM address the ROM bootloader leaves alone: the last 64 bytes of its accessible RAM.
fn marker_address(b: &bootproof_fixtures::BoardProfile) -> u32 {
    b.rom.ram.last().map(|r| r[1] - 64).unwrap_or(b.ram[0].base + b.ram[0].size - 64)
}

async fn reset_vs_power_on(c: &mut Ctx<'_>) -> Result<Outcome, ScenarioError> {
    let b = c.board();
    for cap in [Capability::Probe, Capability::Nrst, Capability::Power, Capability::Boot0] {
        if !c.rig.has(cap) {
            return Ok(Outcome::Skip(format!("needs the {cap}")));
        }
    }
    // The ROM bootloader runs during the checks, so the probe can always connect.
    c.boot0(Level::High).await?;
    c.power_cycle().await?;
    bootproof_rig::time::sleep(c.boot_wait()).await;
    let cause = c.rig.read_reset_cause().await?;
    c.event(format!("{}: {cause}", b.reset.register_name));
    let want = b.reset.value_for(ResetKind::PowerOn);
    check(cause.raw == want, || {
        format!("after power-on {} = {:#010x}, the profile expects {want:#010x}", b.reset.register_name, cause.raw)
    })?;

    let marker = *b"bootproof RAM marker: retained?!";
    let at = marker_address(&b);
    // RMVF written 1 then 0 (on the H7 it clears the flags for as long as it stays 1), and the
    // marker written past the AXI SRAM's ECC write buffer (an NRST drops its last word).
    c.rig.clear_reset_flags().await?;
    bootproof_rig::probe::write_ram_durably(c.rig.probe()?, at, &marker).await?;
    c.event(format!("RMVF cleared the flags; RAM marker written at {at:#010x}"));

    c.nrst().await?;
    bootproof_rig::time::sleep(c.boot_wait()).await;
    let cause = c.rig.read_reset_cause().await?;
    c.event(format!("{}: {cause}", b.reset.register_name));
    let want = b.reset.value_for(ResetKind::Pin);
    check(cause.raw == want, || {
        format!("after NRST {} = {:#010x}, the profile expects {want:#010x}", b.reset.register_name, cause.raw)
    })?;
    let kept = c.rig.probe()?.read_memory(at, marker.len()).await? == marker;
    c.event(format!("RAM marker after NRST: {}", if kept { "kept" } else { "lost" }));
    check(kept, || "the RAM marker did not survive NRST (a system reset keeps RAM)".into())?;

    c.rig.clear_reset_flags().await?;
    c.power_cycle().await?;
    bootproof_rig::time::sleep(c.boot_wait()).await;
    let cause = c.rig.read_reset_cause().await?;
    c.event(format!("{}: {cause}", b.reset.register_name));
    let want = b.reset.value_for(ResetKind::PowerOn);
    check(cause.raw == want, || {
        format!("after a power cycle {} = {:#010x}, the profile expects {want:#010x}", b.reset.register_name, cause.raw)
    })?;
    let kept = c.rig.probe()?.read_memory(at, marker.len()).await? == marker;
    c.event(format!("RAM marker after power cycle: {}", if kept { "kept" } else { "lost" }));
    check(!kept, || {
        "the RAM marker survived a power cycle: did the supply really switch off (discharge time)?".into()
    })?;

    // The application's own view: it reads and clears the flags at every boot and keeps a RAM
    // canary.
    let image = match c.app(Binary::Flash)? {
        AppImage::Image(i) => i,
        AppImage::None(why) => {
            c.event(format!("the application's view is not checked: {why}"));
            return Ok(Outcome::Pass);
        }
    };
    c.boot0(Level::Low).await?;
    c.drain().await?;
    c.rig.probe()?.flash(&image, &mut |_| {}).await?;
    // Not the probe's reset: on a part with the empty-check latch it still enters the ROM.
    c.event(format!("probe flashed {}", image.name));
    c.power_cycle().await?;
    let b = c.expect_beacon().await?;
    check_app(&b, &image)?;
    check_flags(c, &b, ResetKind::PowerOn, true)?;
    check_canary(&b, Canary::Cold, 1)?;
    c.nrst().await?;
    let b = c.expect_beacon().await?;
    check_flags(c, &b, ResetKind::Pin, true)?;
    check_canary(&b, Canary::Retained, 2)?;
    c.power_cycle().await?;
    let b = c.expect_beacon().await?;
    check_flags(c, &b, ResetKind::PowerOn, true)?;
    check_canary(&b, Canary::Cold, 1)?;
    Ok(Outcome::Pass)
}

/// Listen for anything on CAN and the console for `d`; true if silent.
async fn silent(c: &mut Ctx<'_>, d: Duration) -> Result<bool, ScenarioError> {
    if let Ok(can) = c.rig.can()
        && let Ok(CanEvent::Frame(f)) = can.recv(d).await
    {
        c.event(format!("unexpected CAN frame: {f}"));
        return Ok(false);
    }
    if let Ok(port) = c.rig.console() {
        let mut buf = [0u8; 64];
        if let Ok(n) = port.raw().read(&mut buf, d).await {
            c.event(format!("unexpected serial output: {:?}", String::from_utf8_lossy(&buf[..n])));
            return Ok(false);
        }
    }
    Ok(true)
}

async fn blank_flash(c: &mut Ctx<'_>) -> Result<Outcome, ScenarioError> {
    let b = c.board();
    if !c.rig.has(Capability::Probe) {
        return Ok(Outcome::Skip("needs the debug probe to erase the whole flash".into()));
    }
    if !c.opts.permissions.mass_erase() {
        return Ok(Outcome::Skip("erases the whole flash: pass --allow-mass-erase to run it on this rig".into()));
    }
    let Some(kind) = c.rom_transport() else {
        return Ok(Outcome::Skip("the rig reaches none of the board's ROM bootloader interfaces".into()));
    };
    // The probe needs a running core; enter the ROM first, then erase everything.
    c.rig.reset_into_rom().await?;
    c.rig.probe()?.erase_all(c.opts.permissions).await?;
    c.event("mass erase through the probe");
    c.boot0(Level::Low).await?;
    c.nrst().await?;
    match &b.empty_check {
        None => {
            c.expect_stage(Stage::LockedUp).await?;
            let quiet = silent(c, Duration::from_secs(1)).await?;
            c.event(format!("CAN and serial for 1 s: {}", if quiet { "silent" } else { "NOT silent" }));
            check(quiet, || "a blank board with BOOT0 low talked on CAN or serial".into())?;
            c.boot0(Level::High).await?;
            c.nrst().await?;
            c.boot0(Level::Low).await?;
            bootproof_rig::time::sleep(c.boot_wait()).await;
            rom_id(c, Some(kind)).await?;
        }
        Some(ec) => {
            // The empty check boots the ROM bootloader with BOOT0 low.
            c.expect_stage(Stage::Rom).await?;
            rom_id(c, Some(kind)).await?;
            let image = app_or_skip!(c);
            let r = flash::flash_via_rom(c.rig, Some(kind), &image, &FlashOptions::default(), &mut |_| {}).await?;
            c.event(format!("flashed {} through the ROM bootloader: {}", image.name, describe(&r)));
            c.boot0(Level::Low).await?;
            c.nrst().await?;
            if ec.flag_cleared_by_bootloader {
                c.expect_stage(Stage::App).await?;
            } else {
                // The flag is re-evaluated only at power-on: NRST still enters the ROM.
                c.expect_stage(Stage::Rom).await?;
                c.power_cycle().await?;
                c.expect_stage(Stage::App).await?;
            }
            check_app(&c.expect_beacon().await?, &image)?;
        }
    }
    Ok(Outcome::Pass)
}

async fn interrupted_transfer(c: &mut Ctx<'_>) -> Result<Outcome, ScenarioError> {
    for cap in [Capability::Boot0, Capability::Nrst, Capability::Power] {
        if !c.rig.has(cap) {
            return Ok(Outcome::Skip(format!("needs the {cap}")));
        }
    }
    let Some(kind) = c.rom_transport() else {
        return Ok(Outcome::Skip("the rig reaches none of the board's ROM bootloader interfaces".into()));
    };
    let image = app_or_skip!(c);
    let b = c.board();
    let writes = flash::blocks(&image, b.flash.word.max(b.rom.write_alignment), b.flash.erased).len();
    let ks: Vec<usize> = if c.opts.exhaustive {
        (1..=writes).collect()
    } else {
        let mut s = vec![1, writes / 2, writes];
        s.dedup();
        s
    };
    c.event(format!(
        "{} write commands per flash of {}; cutting after {} of them",
        writes,
        image.name,
        if c.opts.exhaustive { "each" } else { "a sample" }
    ));
    for mode in ["power cut", "NRST pulse"] {
        for &k in &ks {
            // Erase and rewrite from scratch (no skipping: the previous round left the full
            // image), stopping after write k.
            let stop = FlashOptions { stop_after_writes: Some(k), skip_unchanged: false, verify: false };
            let partial = flash::flash_via_rom(c.rig, Some(kind), &image, &stop, &mut |_| {}).await?;
            check(partial.stopped_after == Some(k) && partial.writes == k, || {
                format!("the interrupted flash did not stop after write {k}: {partial:?}")
            })?;
            match mode {
                "power cut" => c.rig.power()?.power_cycle(None).await?,
                _ => c.rig.reset()?.pulse_reset(None).await?,
            }
            // Never bricked: BOOT0 high + reset reaches the ROM, and a fresh flash succeeds.
            c.rig.reset_into_rom().await?;
            let pid = {
                let mut rom = RomClient::open(c.rig, Some(kind))?;
                rom.connect().await?
            };
            let r = flash::flash_via_rom(c.rig, Some(kind), &image, &FlashOptions::default(), &mut |_| {}).await?;
            // Sectors the interrupted flash had completed compare equal and are skipped.
            check(r.verified, || format!("reflash after a {mode} after write {k} was not verified: {r:?}"))?;
            c.event(format!(
                "{mode} after write {k}/{writes}: ROM reached (PID {pid:#05x}), reflash verified ({} writes, {} sector(s) already complete{})",
                r.writes,
                r.skipped.len(),
                if r.recoveries > 0 { ", after re-entering the bootloader" } else { "" }
            ));
        }
    }
    c.boot0(Level::Low).await?;
    c.nrst().await?;
    if b.empty_check.as_ref().is_some_and(|e| !e.flag_cleared_by_bootloader) {
        // A part with the empty-check latch needs a power-on to leave the ROM after its flash
        // was blank (the cuts above erased it).
        c.power_cycle().await?;
    }
    c.expect_stage(Stage::App).await?;
    check_app(&c.expect_beacon().await?, &image)?;
    Ok(Outcome::Pass)
}
