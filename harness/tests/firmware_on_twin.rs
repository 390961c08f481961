//! bootproof's real firmware on the twin's emulated core, through the probe as on a rig: where
//! it runs (PC and symbol), halt, step and registers, memory, and its defmt log over RTT
//! decoded from the ELF; and what the twin does with firmware that touches a register it does
//! not model, in lenient and strict mode.

use std::time::Duration;

use bootproof::firmware::{Binary, for_board};
use bootproof_fixtures::{BoardProfile, Level};
use bootproof_rig::Rig;
use bootproof_rig::defmt::DefmtLog;
use bootproof_rig::probe::CoreState;
use bootproof_twin::{Twin, TwinOptions};

fn h723() -> BoardProfile {
    BoardProfile::builtin("stm32h723zg").unwrap()
}

fn app() -> bootproof_rig::image::FirmwareImage {
    for_board(&h723()).expect("firmware for the H723").image(Binary::Flash).expect("the firmware builds")
}

async fn flashed(strict: bool) -> (Twin, Rig) {
    let p = h723();
    let opts = TwinOptions { strict_mmio: strict, ..TwinOptions::for_profile(&p) };
    let twin = Twin::new(p, opts);
    let mut rig = twin.rig();
    rig.boot0().unwrap().set_boot0(Level::Low).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    rig.probe().unwrap().flash(&app(), &mut |_| {}).await.unwrap();
    (twin, rig)
}

#[tokio::test(start_paused = true)]
async fn the_probe_shows_the_emulated_core_with_symbols_and_steps_it() {
    let (_twin, mut rig) = flashed(false).await;
    bootproof_rig::time::sleep(Duration::from_millis(300)).await;
    let probe = rig.probe().unwrap();
    let s = probe.core_status().await.unwrap();
    let detail = s.detail.clone().unwrap();
    assert_eq!(s.state, CoreState::Running, "{s}");
    assert!(detail.contains("(emulated)") && detail.contains(", in "), "PC with its symbol: {detail}");
    // Halt: the registers agree with the status.
    let h = probe.halt().await.unwrap();
    assert_eq!(h.state, CoreState::Halted);
    let r = probe.registers().await.unwrap();
    assert_eq!(Some(r.r[15]), h.pc);
    assert!((0x2000_0000..=0x2002_0000).contains(&r.r[13]), "SP in DTCM: {r}");
    // Halted means halted: no time passes for the firmware, its heartbeat counter stays.
    let before = probe.read_memory(0x2000_0000, 256).await.unwrap();
    bootproof_rig::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(probe.read_memory(0x2000_0000, 256).await.unwrap(), before, "RAM moved while halted");
    probe.run().await.unwrap();

    // From the reset vector, step by step: each step moves the PC, the registers follow.
    let h = probe.reset_and_halt().await.unwrap();
    assert_eq!(h.state, CoreState::Halted);
    let d = probe.core_status().await.unwrap().detail.unwrap();
    assert!(d.ends_with(", in Reset"), "at cortex-m-rt's Reset handler: {d}");
    let mut pcs = vec![h.pc.unwrap()];
    for _ in 0..5 {
        let s = probe.step().await.unwrap();
        assert_eq!(s.state, CoreState::Halted, "{s}");
        let r = probe.registers().await.unwrap();
        assert_eq!(Some(r.r[15]), s.pc);
        pcs.push(s.pc.unwrap());
    }
    assert!(pcs.windows(2).any(|w| w[0] != w[1]), "the PC moved: {pcs:x?}");
    assert!(pcs.iter().all(|pc| (0x0800_0000..0x0810_0000).contains(pc)), "in flash: {pcs:x?}");
    let s = probe.core_status().await.unwrap();
    let d = s.detail.unwrap();
    assert!(d.contains(", in "), "{d}");
}

#[tokio::test(start_paused = true)]
async fn defmt_over_rtt_is_decoded_from_the_elf() {
    let (_twin, mut rig) = flashed(false).await;
    let elf = app().raw;
    let probe = rig.probe().unwrap();
    probe.rtt_attach(Some(&elf), Duration::from_millis(500)).await.unwrap();
    bootproof_rig::time::sleep(Duration::from_millis(500)).await;
    let mut log = DefmtLog::from_elf(&elf).unwrap();
    let mut lines = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = probe.rtt_read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        lines.extend(log.feed(&buf[..n]).unwrap());
    }
    let text = lines.join("\n");
    assert!(
        text.contains("INFO bootproof app 1.0.0 at 0x08000000: RCC_RSR 0x") && text.contains("INFO beacon sent"),
        "{text}"
    );
    // Without the ELF the control block is found by scanning RAM.
    probe.reset().await.unwrap();
    probe.rtt_attach(None, Duration::from_millis(500)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn bootprofs_own_firmware_stays_inside_the_modelled_registers() {
    // Strict: any access outside the models would stop the core and fail the boot.
    let (twin, mut rig) = flashed(true).await;
    bootproof_rig::time::sleep(Duration::from_millis(500)).await;
    let s = rig.probe().unwrap().core_status().await.unwrap();
    assert_eq!(s.state, CoreState::Running, "{s}");
    let events = twin.board().events();
    assert!(!events.iter().any(|e| e.what.contains("outside the twin's peripheral models")), "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn the_app_reboots_into_the_rom_bootloader_on_request() {
    let (twin, mut rig) = flashed(false).await;
    bootproof_rig::time::sleep(Duration::from_millis(300)).await;
    // The console request, as a user types it on the ST-LINK virtual COM port.
    let port = rig.console().unwrap();
    port.configure(bootproof_rig::console::SerialConfig::n81(115_200)).await.unwrap();
    port.discard_input().await.unwrap();
    port.write_line("bootproof rom").await.unwrap();
    let said = port.expect("rebooting into the ROM bootloader", Duration::from_secs(1)).await.unwrap();
    assert!(said.line.contains("bootproof: rebooting"), "{}", said.line);
    bootproof_rig::time::sleep(Duration::from_millis(100)).await;
    // The app set its flag, reset through AIRCR.SYSRESETREQ, and on the next boot jumped to
    // system memory: ST's ROM bootloader answers on CAN with BOOT0 still low.
    let mut rom = bootproof::rom::RomClient::open(&mut rig, None).unwrap();
    let pid = rom.connect().await.unwrap();
    assert_eq!(pid, 0x483);
    let events: Vec<String> = twin.board().events().into_iter().map(|e| e.what).collect();
    let at = |s: &str| events.iter().position(|e| e.contains(s)).unwrap_or_else(|| panic!("{s}: {events:#?}"));
    let reset = at("firmware requested a system reset (AIRCR.SYSRESETREQ)");
    let jump = at("firmware jumped to system memory");
    assert!(reset < jump, "{events:#?}");
    // A software reset's flags, left for the ROM session (the app jumps before reading them).
    let flags = twin.board().state().rsr;
    let sw = twin.board().profile().reset.value_for(bootproof_fixtures::ResetKind::Software);
    assert_eq!(flags & sw, sw, "RSR {flags:#010x}");
}

#[tokio::test(start_paused = true)]
async fn a_can_request_reboots_into_the_rom_bootloader_too() {
    let (twin, mut rig) = flashed(false).await;
    bootproof_rig::time::sleep(Duration::from_millis(300)).await;
    let request = bootproof_rig::CanFrame::fd(
        bootproof_rig::CanId::Standard(bootproof_rig::beacon::REQUEST_ID),
        &[bootproof_rig::beacon::request::ENTER_ROM],
        true,
    )
    .unwrap();
    rig.can().unwrap().send(&request).await.unwrap();
    bootproof_rig::time::sleep(Duration::from_millis(100)).await;
    let pid = bootproof::rom::RomClient::open(&mut rig, None).unwrap().connect().await.unwrap();
    assert_eq!(pid, 0x483);
    assert!(twin.board().events().iter().any(|e| e.what.contains("firmware jumped to system memory")));
}
