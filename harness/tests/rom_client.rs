//! bootproof's ROM bootloader client against the twin, on all three transports.

use std::time::Duration;

use bootproof::flash::{self, FlashOptions};
use bootproof::rom::{RomClient, RomError};
use bootproof_fixtures::{BoardProfile, Level, RomTransportKind};
use bootproof_rig::stm32rom::EraseRequest;
use bootproof_rig::{CanEvent, Permissions, Rig, RigBuilder};
use bootproof_twin::{Twin, TwinOptions, standin};

const CASES: [(&str, RomTransportKind); 4] = [
    ("stm32h723zg", RomTransportKind::Fdcan),
    ("stm32h723zg", RomTransportKind::Usart),
    ("stm32f446re", RomTransportKind::Bxcan),
    ("stm32g071rb", RomTransportKind::Usart),
];

async fn rom_rig(board: &str) -> (Twin, Rig) {
    let twin = Twin::builtin(board).unwrap();
    let mut rig = twin.rig();
    rig.power().unwrap().power_on().await.unwrap();
    rig.reset_into_rom().await.unwrap();
    (twin, rig)
}

#[tokio::test(start_paused = true)]
async fn sessions_report_the_profile_identity_on_every_transport() {
    for (board, kind) in CASES {
        let (twin, mut rig) = rom_rig(board).await;
        let p = twin.board().profile().clone();
        let mut rom = RomClient::open(&mut rig, Some(kind)).unwrap();
        assert_eq!(rom.connect().await.unwrap(), p.identity.pid, "{board} {kind}");
        // Get Version and Get: the interface's protocol version (AN2606 §4.2, Table 3).
        let protocol = match kind {
            RomTransportKind::Fdcan => 0x11,
            RomTransportKind::Bxcan => 0x20,
            RomTransportKind::Usart => 0x31,
        };
        assert_eq!(rom.get_version().await.unwrap(), protocol, "{board} {kind}");
        let info = rom.get().await.unwrap();
        assert_eq!(info.protocol_version, protocol);
        assert_eq!(info.commands.len(), if kind == RomTransportKind::Bxcan { 12 } else { 11 });
        // System memory holds the bootloader ID byte (AN2606 Table 3: 0x93, 0x90; the G0 profile
        // models V11.2, 0xB2).
        let expected = match board {
            "stm32h723zg" => 0x93,
            "stm32f446re" => 0x90,
            _ => 0xB2,
        };
        assert_eq!(rom.bootloader_id().await.unwrap(), expected, "{board} {kind}");
        // The device information area: the flash size register (KiB) and the unique ID.
        let size = rom.read_memory(p.identity.flash_size_address, 2).await.unwrap();
        assert_eq!(u16::from_le_bytes([size[0], size[1]]) as u32 * 1024, p.flash.size(), "{board} {kind}");
        assert_eq!(rom.read_memory(p.identity.uid_address, 12).await.unwrap().len(), 12);
    }
}

#[tokio::test(start_paused = true)]
async fn a_wrong_chip_is_an_error() {
    // The board is an H74x (PID 0x450) but the rig's profile says H723.
    let mut board = BoardProfile::builtin("stm32h723zg").unwrap();
    board.identity.pid = 0x450;
    let opts = TwinOptions::for_profile(&board);
    let twin = Twin::new(board, opts);
    let mut twin_rig = twin.rig();
    twin_rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    twin_rig.power().unwrap().power_on().await.unwrap();
    bootproof_rig::time::sleep(Duration::from_millis(60)).await;
    let mut rig = RigBuilder::new("mislabelled", BoardProfile::builtin("stm32h723zg").unwrap())
        .can(Box::new(twin.attach_can("host2", bootproof_rig::can::Bitrates::fd(250_000, 1_000_000))))
        .build();
    let mut rom = RomClient::open(&mut rig, None).unwrap();
    let e = rom.connect().await.unwrap_err();
    assert!(matches!(e, RomError::WrongChip { expected: 0x483, got: 0x450, .. }), "{e}");
    assert!(e.to_string().contains("check the rig config's `board`"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn flash_verify_skip_and_go_on_every_transport() {
    for (board, kind) in CASES {
        let twin = Twin::builtin(board).unwrap();
        let mut rig = twin.rig();
        let p = twin.board().profile().clone();
        let img = standin::image(&p, p.flash.base, 7, 4096);
        let r = flash::flash_via_rom(&mut rig, Some(kind), &img, &FlashOptions::default(), &mut |_| {}).await.unwrap();
        assert!(r.verified && r.writes == 16 && !r.erased.is_empty(), "{board} {kind}: {r:?}");
        // Flashing the same image again skips every sector.
        let r2 = flash::flash_via_rom(&mut rig, Some(kind), &img, &FlashOptions::default(), &mut |_| {}).await.unwrap();
        assert_eq!((r2.writes, r2.erased.len()), (0, 0), "{board} {kind}: {r2:?}");
        assert_eq!(r2.skipped, r.erased);
        // Go starts the app.
        let rom = RomClient::open(&mut rig, Some(kind)).unwrap();
        rom.go(p.flash.base).await.unwrap();
        let core = rig.probe().unwrap().core_status().await.unwrap();
        assert_eq!(core.detail.as_deref(), Some("bootproof stand-in app v7"), "{board} {kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn errors_name_the_command_and_the_fix() {
    let (_twin, mut rig) = rom_rig("stm32h723zg").await;
    let mut rom = RomClient::open(&mut rig, Some(RomTransportKind::Fdcan)).unwrap();
    rom.connect().await.unwrap();
    let e = rom.write_memory(0x6000_0000, &[0; 32]).await.unwrap_err().to_string();
    assert!(e.contains("NACKed Write Memory (address)"), "{e}");
    // An unaligned flash write is padded to whole 32-byte flash words with erased bytes.
    rom.write_memory(0x0802_0008, &[0x5A; 32]).await.unwrap();
    let back = rom.read_memory(0x0802_0000, 64).await.unwrap();
    assert_eq!((&back[..8], &back[8..40], &back[40..]), (&[0xFF; 8][..], &[0x5A; 32][..], &[0xFF; 24][..]));
    let e = rom.write_memory(0x0802_0108, &[0; 256]).await.unwrap_err().to_string();
    assert!(e.contains("padded to 288 bytes") && e.contains("split it on 32-byte boundaries"), "{e}");
    let e = rom.read_memory(0x0800_0000, 300).await.unwrap_err().to_string();
    assert!(e.contains("1..=256"), "{e}");
    let e = rom.erase(&EraseRequest::Mass, Permissions::none()).await.unwrap_err().to_string();
    assert!(e.contains("--allow-mass-erase"), "{e}");
    let e = rom.erase(&EraseRequest::Sectors(vec![8]), Permissions::none()).await.unwrap_err().to_string();
    assert!(e.contains("sector 8 does not exist"), "{e}");
    // The session is still usable.
    rom.check_id().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn no_answer_says_what_to_check() {
    let twin = Twin::builtin("stm32h723zg").unwrap();
    let mut rig = twin.rig();
    rig.power().unwrap().power_on().await.unwrap(); // BOOT0 low, blank: locked up
    let mut rom = RomClient::open(&mut rig, Some(RomTransportKind::Fdcan)).unwrap();
    let e = rom.connect().await.unwrap_err().to_string();
    assert!(e.contains("no node acknowledged") && e.contains("not in its ROM bootloader"), "{e}");
    let mut rom = RomClient::open(&mut rig, Some(RomTransportKind::Usart)).unwrap();
    let e = rom.connect().await.unwrap_err().to_string();
    assert!(e.contains("no reply") && e.contains("BOOT0 high"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn readout_protection_is_reported_as_such() {
    for kind in [RomTransportKind::Fdcan, RomTransportKind::Usart] {
        let (twin, mut rig) = rom_rig("stm32h723zg").await;
        let mut rom = RomClient::open(&mut rig, Some(kind)).unwrap();
        rom.connect().await.unwrap();
        let e = rom.readout_protect(Permissions::none()).await.unwrap_err().to_string();
        assert!(e.contains("--allow-readout-protection"), "{e}");
        let rom = RomClient::open(&mut rig, Some(kind)).unwrap();
        rom.readout_protect(Permissions::none().allow_readout_protection()).await.unwrap();
        // The option-byte reload resets the MCU with BOOT0 low again: re-enter the bootloader.
        rig.reset_into_rom().await.unwrap();
        let mut rom = RomClient::open(&mut rig, Some(kind)).unwrap();
        rom.connect().await.unwrap();
        let e = rom.read_memory(0x0800_0000, 16).await.unwrap_err();
        assert!(matches!(e, RomError::ReadoutProtected { .. }), "{kind}: {e}");
        rom.readout_unprotect(Permissions::none().allow_readout_protection().allow_mass_erase()).await.unwrap();
        bootproof_rig::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(twin.board().state().rdp, bootproof_twin::board::Rdp::Level0, "{kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn flashing_recovers_when_a_torn_word_makes_the_bootloader_fault() {
    let twin = Twin::builtin("stm32h723zg").unwrap();
    let mut rig = twin.rig();
    let p = twin.board().profile().clone();
    let img = standin::image(&p, p.flash.base, 9, 4096);
    // A first flash stopped after 4 blocks, then a power cut during the 5th write's programming.
    let stop = FlashOptions { stop_after_writes: Some(4), ..FlashOptions::default() };
    flash::flash_via_rom(&mut rig, None, &img, &stop, &mut |_| {}).await.unwrap();
    {
        let mut rom = RomClient::open(&mut rig, None).unwrap();
        let blocks = flash::blocks(&img, 32, 0xFF);
        let b = &blocks[4];
        // Send the write; cut power once the bootloader has programmed its first word.
        let first_word_done = async {
            while twin.board().state().flash.word_state(b.address) != bootproof_twin::flash::WordState::Programmed {
                bootproof_rig::time::sleep(Duration::from_micros(10)).await;
            }
        };
        tokio::select! {
            _ = rom.write_memory(b.address, &b.data) => panic!("the write should not complete"),
            _ = first_word_done => {}
        }
    }
    twin.board().set_power(false);
    twin.board().set_power(true);
    let torn = (0..p.flash.size()).step_by(32).any(|o| {
        twin.board().state().flash.word_state(p.flash.base + o) == bootproof_twin::flash::WordState::Inconsistent
    });
    assert!(torn, "the cut left a torn word");
    let r = flash::flash_via_rom(&mut rig, None, &img, &FlashOptions::default(), &mut |_| {}).await.unwrap();
    assert_eq!(r.recoveries, 1, "{r:?}");
    assert!(r.verified);
    rig.reset_normal().await.unwrap();
    let hello = loop {
        if let CanEvent::Frame(f) = rig.can().unwrap().recv(Duration::from_secs(1)).await.unwrap()
            && let Some(a) = bootproof_rig::beacon::CanListener::new().feed(&f)
        {
            break a.unwrap();
        }
    };
    assert_eq!(hello.version.major, 9);
}

#[tokio::test(start_paused = true)]
async fn a_write_protected_sector_is_found_by_reading_back_not_by_a_nack() {
    // The ROM answers ACK to erases and writes of a write-protected sector and changes nothing
    // (AN3155 §3.6-3.8, AN5405 §3.6-3.7): the flash loop reads the erased sector back.
    for (board, kind) in CASES {
        let twin = Twin::builtin(board).unwrap();
        let mut rig = twin.rig();
        let p = twin.board().profile().clone();
        let v1 = standin::image(&p, p.flash.base, 1, 4096);
        flash::flash_via_rom(&mut rig, Some(kind), &v1, &FlashOptions::default(), &mut |_| {}).await.unwrap();
        twin.board().state().flash.set_protected(0, true);
        let before = twin.board().state().flash.clone();
        let v2 = standin::image(&p, p.flash.base, 2, 4096);
        let e =
            flash::flash_via_rom(&mut rig, Some(kind), &v2, &FlashOptions::default(), &mut |_| {}).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, flash::FlashError::NotErased { sector: 0, .. }) && msg.contains("write protection"),
            "{board} {kind}: {msg}"
        );
        let mut a = vec![0; 4096];
        let mut b = vec![0; 4096];
        before.read(p.flash.base, &mut a).unwrap();
        twin.board().state().flash.read(p.flash.base, &mut b).unwrap();
        assert_eq!(a, b, "{board} {kind}: v1 untouched");
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_usart_session_finds_the_bootloader_already_synced() {
    // The first session synced the autobaud; the second one's 0x7F is taken as a command byte,
    // so the client's second 0x7F gets a NACK (a complement that does not match), which proves
    // the bootloader is there. No byte but 0x7F goes out before an answer (AN2606 §99.2).
    for board in ["stm32h723zg", "stm32g071rb"] {
        let (twin, mut rig) = rom_rig(board).await;
        let pid = twin.board().profile().identity.pid;
        for session in 0..2 {
            let mut rom = RomClient::open(&mut rig, Some(RomTransportKind::Usart)).unwrap();
            assert_eq!(rom.connect().await.unwrap(), pid, "{board}, session {session}");
        }
        assert_eq!(twin.board().uart().lost().0, 0, "{board}: no byte lost to a wrong autobaud");
    }
}

#[tokio::test(start_paused = true)]
async fn a_usart_connect_during_the_bootloaders_start_up_never_locks_its_autobaud() {
    // Connecting at once after power-on: the first 0x7F arrives while the bootloader is still
    // starting (53.975 ms, AN2606 Table 227) and is lost. The retry must be another 0x7F: any
    // other byte would be the first the autobaud measures, locking a wrong rate until reset.
    let twin = Twin::builtin("stm32h723zg").unwrap();
    let mut rig = twin.rig();
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    let mut rom = RomClient::open(&mut rig, Some(RomTransportKind::Usart)).unwrap();
    assert_eq!(rom.connect().await.unwrap(), 0x483);
    rom.check_id().await.unwrap();
}
