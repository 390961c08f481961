//! Boot behaviour of the twin, checked against the board profiles' sources (AN2606, the
//! reference manuals' reset and RCC_RSR sections).

mod support;

use std::time::Duration;

use bootproof_fixtures::{BoardProfile, BootSelection, Level, ResetKind};
use bootproof_rig::beacon::{CanListener, Stage};
use bootproof_rig::probe::CoreState;
use bootproof_rig::{CanBus, CanEvent, CanFrame, CanId, Permissions, Rig};
use bootproof_twin::standin;
use bootproof_twin::{Twin, TwinOptions};
use support::*;

const MS: Duration = Duration::from_millis(1);

fn twin(name: &str) -> Twin {
    Twin::builtin(name).unwrap()
}

async fn core(rig: &mut Rig) -> bootproof_rig::CoreStatus {
    rig.probe().unwrap().core_status().await.unwrap()
}

async fn rsr(rig: &mut Rig) -> u32 {
    rig.read_reset_cause().await.unwrap().raw
}

async fn clear_flags(rig: &mut Rig) {
    rig.clear_reset_flags().await.unwrap();
    assert_eq!(rsr(rig).await, 0, "RMVF clears every flag");
}

#[tokio::test(start_paused = true)]
async fn rmvf_left_at_one_loses_the_next_resets_flags() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rig.power().unwrap().power_on().await.unwrap();
    let b = rig.board().reset.clone();
    assert!(b.rmvf_held, "the H723 profile holds RMVF (assumption rsr-rmvf)");
    let (pin, rmvf) = (b.value_for(ResetKind::Pin), 1u32 << b.rmvf_bit);
    // The host's way (RMVF 1, then 0): the next NRST's flags latch.
    clear_flags(&mut rig).await;
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    assert_eq!(rsr(&mut rig).await, pin, "cleared with 1 then 0: NRST's flags are kept");
    // A host that writes 1 and forgets the 0: RMVF reads back set and NRST's flags are lost.
    rig.probe().unwrap().write_memory(b.register, &rmvf.to_le_bytes()).await.unwrap();
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    assert_eq!(rsr(&mut rig).await, rmvf, "RMVF still 1: the reset's flags are lost");
    rig.probe().unwrap().reset().await.unwrap();
    assert_eq!(rsr(&mut rig).await, rmvf, "a software reset's too");
    // RMVF written 0: flags latch again.
    rig.probe().unwrap().write_memory(b.register, &0u32.to_le_bytes()).await.unwrap();
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    assert_eq!(rsr(&mut rig).await, pin);
    // A power-on reset clears RMVF.
    rig.probe().unwrap().write_memory(b.register, &rmvf.to_le_bytes()).await.unwrap();
    rig.power().unwrap().power_cycle(None).await.unwrap();
    assert_eq!(rsr(&mut rig).await, b.value_for(ResetKind::PowerOn));
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    assert_eq!(rsr(&mut rig).await, b.value_for(ResetKind::PowerOn) | pin);

    // Profiles without the assumption: RMVF is a one-shot clear (F4: "set by software").
    let t = twin("stm32f446re");
    let mut rig = t.rig();
    rig.power().unwrap().power_on().await.unwrap();
    let b = rig.board().reset.clone();
    assert!(!b.rmvf_held);
    rig.probe().unwrap().write_memory(b.register, &(1u32 << b.rmvf_bit).to_le_bytes()).await.unwrap();
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    assert_eq!(rsr(&mut rig).await, b.value_for(ResetKind::Pin));
}

#[tokio::test(start_paused = true)]
async fn the_last_word_a_debugger_wrote_to_axi_sram_is_lost_by_nrst_unless_another_follows() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rig.power().unwrap().power_on().await.unwrap();
    let axi = rig.board().ram.iter().find(|r| r.name == "AXI-SRAM").unwrap().clone();
    assert_eq!(axi.ecc_write_buffer, Some(8), "assumption axi-ecc-write-buffer");
    let at = axi.base + axi.size - 0x40;
    let marker = *b"bootproof RAM marker: retained?!";
    async fn read(rig: &mut Rig, at: u32) -> Vec<u8> {
        rig.probe().unwrap().read_memory(at, 32).await.unwrap()
    }
    // A plain write: the marker's last 64-bit word is still in the buffer when NRST comes.
    let before = read(&mut rig, at).await;
    rig.probe().unwrap().write_memory(at, &marker).await.unwrap();
    assert_eq!(read(&mut rig, at).await, marker, "the debugger reads its own write back before the reset");
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    let after = read(&mut rig, at).await;
    assert_eq!(after[..24], marker[..24], "the words before the last were flushed by the next one");
    assert_eq!(after[24..], before[24..], "the last word was dropped with the buffer");
    // The host's way: write another word after it (bootproof_rig::probe::write_ram_durably).
    bootproof_rig::probe::write_ram_durably(rig.probe().unwrap(), at, &marker).await.unwrap();
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    assert_eq!(read(&mut rig, at).await, marker, "flushed: the whole marker survives NRST");
    // RAM without an ECC write buffer (DTCM) keeps a plain write.
    let dtcm = rig.board().ram.iter().find(|r| r.name == "DTCM").unwrap().base + 0x100;
    rig.probe().unwrap().write_memory(dtcm, &marker).await.unwrap();
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    assert_eq!(rig.probe().unwrap().read_memory(dtcm, 32).await.unwrap(), marker);
}

/// Flash the stand-in app through the probe (BOOT0 low afterwards).
async fn flash_standin(twin: &Twin, rig: &mut Rig, version: u32) {
    let p = twin.board().profile().clone();
    let img = standin::image(&p, p.flash.base, version, 4096);
    rig.probe().unwrap().flash(&img, &mut |_| {}).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn boot0_is_sampled_only_at_reset_release_and_power_on() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rig.power().unwrap().power_on().await.unwrap();
    assert_eq!(core(&mut rig).await.state, CoreState::LockedUp, "blank H7 with BOOT0 low locks up");
    // Raising BOOT0 while the core runs (here: is locked up) changes nothing...
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    bootproof_rig::time::sleep(100 * MS).await;
    assert_eq!(core(&mut rig).await.state, CoreState::LockedUp);
    // ...until NRST is released.
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    let c = core(&mut rig).await;
    assert_eq!((c.state, c.pc), (CoreState::Running, Some(0x1FF0_9800)), "{c}");
    // Dropping BOOT0 under the running bootloader does not stop it.
    rig.boot0().unwrap().set_boot0(Level::Low).await.unwrap();
    bootproof_rig::time::sleep(100 * MS).await;
    assert_eq!(core(&mut rig).await.pc, Some(0x1FF0_9800));
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    assert_eq!(core(&mut rig).await.state, CoreState::LockedUp);
    // Power-on samples it too.
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_cycle(None).await.unwrap();
    assert_eq!(core(&mut rig).await.pc, Some(0x1FF0_9800));
}

#[tokio::test(start_paused = true)]
async fn reset_flags_follow_the_profile_for_every_reset_kind() {
    for name in BoardProfile::builtin_names() {
        let t = twin(name);
        let mut rig = t.rig();
        let table = t.board().profile().reset.clone();
        rig.boot0().unwrap().set_boot0(Level::High).await.unwrap(); // ROM runs: the probe can connect
        rig.power().unwrap().power_on().await.unwrap();
        assert_eq!(rsr(&mut rig).await, table.value_for(ResetKind::PowerOn), "{name}: power-on");

        clear_flags(&mut rig).await;
        rig.reset().unwrap().pulse_reset(None).await.unwrap();
        assert_eq!(rsr(&mut rig).await, table.value_for(ResetKind::Pin), "{name}: NRST");

        clear_flags(&mut rig).await;
        rig.probe().unwrap().reset().await.unwrap();
        assert_eq!(rsr(&mut rig).await, table.value_for(ResetKind::Software), "{name}: software reset");

        for kind in [ResetKind::Iwdg, ResetKind::Wwdg, ResetKind::OptionReload] {
            clear_flags(&mut rig).await;
            t.board().system_reset(kind);
            let expect = if table.events.contains_key(kind.key()) {
                table.value_for(kind)
            } else {
                table.value_for(ResetKind::Pin)
            };
            assert_eq!(rsr(&mut rig).await, expect, "{name}: {kind}");
            assert_ne!(expect, 0);
        }

        // Flags accumulate until cleared: NRST after a power-on keeps the power-on flags.
        rig.power().unwrap().power_cycle(None).await.unwrap();
        rig.reset().unwrap().pulse_reset(None).await.unwrap();
        assert_eq!(
            rsr(&mut rig).await,
            table.value_for(ResetKind::PowerOn) | table.value_for(ResetKind::Pin),
            "{name}: accumulation"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn h723_flags_match_the_reset_flag_table_literally() {
    // The profile's reset-flag table (RM0433/RM0399 reset sections, assumption reset-flag-table): POR = POR|PIN|BOR|D1|D2|CPU; NRST = PIN|CPU; SW = SFT|PIN|CPU.
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    let cause = rig.read_reset_cause().await.unwrap();
    assert_eq!(cause.raw, 0x00FA_0000, "{cause}");
    assert_eq!(cause.kinds, [ResetKind::PowerOn]);
    clear_flags(&mut rig).await;
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    assert_eq!(rsr(&mut rig).await, 0x0042_0000);
    clear_flags(&mut rig).await;
    rig.probe().unwrap().reset().await.unwrap();
    assert_eq!(rsr(&mut rig).await, 0x0142_0000);
}

#[tokio::test(start_paused = true)]
async fn ram_survives_system_reset_but_not_power_off() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    let marker = *b"bootproof marker";
    let probe = rig.probe().unwrap();
    probe.write_memory(0x2400_8000, &marker).await.unwrap(); // AXI SRAM
    probe.write_memory(0x3880_0000, &marker).await.unwrap(); // backup SRAM
    // In the ROM bootloader's own RAM (AN2606 Table 133: "16 Kbytes, starting from address
    // 0x24000000, are used by the bootloader firmware"), and in its DTCM below 0x2000_4100.
    probe.write_memory(0x2400_1000, &marker).await.unwrap();
    probe.write_memory(0x2000_0100, &marker).await.unwrap();
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    assert_eq!(rig.probe().unwrap().read_memory(0x2400_8000, 16).await.unwrap(), marker, "NRST keeps RAM");
    for at in [0x2400_1000, 0x2000_0100] {
        assert_ne!(rig.probe().unwrap().read_memory(at, 16).await.unwrap(), marker, "the ROM ran and used {at:#x}");
    }
    rig.probe().unwrap().reset().await.unwrap();
    assert_eq!(rig.probe().unwrap().read_memory(0x2400_8000, 16).await.unwrap(), marker, "software reset keeps RAM");
    assert_eq!(rig.probe().unwrap().read_memory(0x3880_0000, 16).await.unwrap(), marker);
    rig.power().unwrap().power_cycle(None).await.unwrap();
    assert_ne!(rig.probe().unwrap().read_memory(0x2400_8000, 16).await.unwrap(), marker, "power-off loses RAM");
    assert_ne!(
        rig.probe().unwrap().read_memory(0x3880_0000, 16).await.unwrap(),
        marker,
        "NUCLEO: VBAT tied to VDD, the backup domain is lost too"
    );
}

#[tokio::test(start_paused = true)]
async fn backup_domain_survives_a_power_cycle_when_vbat_is_separate() {
    let mut p = BoardProfile::builtin("stm32h723zg").unwrap();
    p.backup.as_mut().unwrap().vbat_tied_to_vdd = false;
    let opts = TwinOptions::for_profile(&p);
    let t = Twin::new(p, opts);
    let mut rig = t.rig();
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    rig.probe().unwrap().write_memory(0x3880_0010, b"keep").await.unwrap();
    rig.power().unwrap().power_cycle(None).await.unwrap();
    assert_eq!(rig.probe().unwrap().read_memory(0x3880_0010, 4).await.unwrap(), b"keep");
}

#[tokio::test(start_paused = true)]
async fn blank_h7_locks_up_and_is_silent() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rig.power().unwrap().power_on().await.unwrap();
    let c = core(&mut rig).await;
    assert_eq!(c.state, CoreState::LockedUp, "{c}");
    let why = c.detail.unwrap();
    assert!(why.starts_with("blank flash at boot address 0x08000000: emulated core locked up"), "{why}");
    // Nothing on CAN: a frame gets no ACK; nothing on serial.
    let can = rig.can().unwrap();
    can.send(&fd(0x02, &[])).await.unwrap();
    assert_eq!(can.recv(100 * MS).await.unwrap(), CanEvent::Error(bootproof_rig::BusError::NoAck));
    assert!(matches!(can.recv(500 * MS).await, Err(bootproof_rig::CanError::Timeout(_))));
    let mut buf = [0u8; 16];
    assert!(rig.console().unwrap().raw().read(&mut buf, 500 * MS).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn stand_in_app_announces_itself_on_can_serial_and_rtt() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    flash_standin(&t, &mut rig, 3).await;
    rig.boot0().unwrap().set_boot0(Level::Low).await.unwrap();
    rig.power().unwrap().power_cycle(None).await.unwrap();
    let c = core(&mut rig).await;
    assert_eq!(c.state, CoreState::Running);
    assert_eq!(c.detail.as_deref(), Some("bootproof stand-in app v3"));
    let line = rig.console().unwrap().expect("stage=app", Duration::from_secs(1)).await.unwrap().line;
    assert!(line.contains("version=3.0.0+0") && line.contains("rsr=0x00fa0000"), "{line}");
    let mut l = CanListener::new();
    let ann = loop {
        match rig.can().unwrap().recv(Duration::from_secs(1)).await.unwrap() {
            CanEvent::Frame(f) => {
                if let Some(a) = l.feed(&f) {
                    break a.unwrap();
                }
            }
            CanEvent::Error(e) => panic!("{e}"),
        }
    };
    assert_eq!(
        (ann.stage, ann.version.major, ann.reset_flags, ann.vector_table),
        (Stage::Application, 3, 0x00FA_0000, 0x0800_0000)
    );
    // Heartbeat every second.
    let hb = rig.can().unwrap().recv(Duration::from_millis(1100)).await.unwrap();
    assert!(matches!(hb, CanEvent::Frame(f) if f.id() == CanId::Standard(bootproof_beacon::HEARTBEAT_ID)));
    let probe = rig.probe().unwrap();
    probe.rtt_attach(None, Duration::from_millis(100)).await.unwrap();
    let mut buf = [0u8; 256];
    let n = probe.rtt_read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("stage=app"));
}

/// A plausible vector table over code the twin cannot tell apart from anything else.
fn plausible_junk(base: u32, sp: u32) -> bootproof_rig::image::FirmwareImage {
    // SP at the top of RAM, reset vector inside flash, no descriptor, zeros after (on a
    // Cortex-M, 0x0000 is `movs r0, r0`), then erased flash.
    let mut img = vec![0u8; 1024];
    img[..4].copy_from_slice(&sp.to_le_bytes());
    img[4..8].copy_from_slice(&(base + 0x201).to_le_bytes());
    bootproof_rig::image::FirmwareImage::from_segments(
        "unknown.bin",
        vec![bootproof_rig::image::Segment { address: base, data: img }],
    )
    .unwrap()
}

/// On the H7 the same bytes execute: the zeros slide into erased flash, whose 0xFFFF is a
/// coprocessor instruction on a core without one; the fault's handler is vector 0: lockup, and
/// the twin says why.
#[tokio::test(start_paused = true)]
async fn unknown_firmware_executes_on_the_emulated_core_and_locks_up_on_its_fault() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    let image = plausible_junk(0x0800_0000, 0x2002_0000);
    rig.probe().unwrap().flash(&image, &mut |_| {}).await.unwrap();
    rig.reset_normal().await.unwrap();
    let c = core(&mut rig).await;
    assert_eq!(c.state, CoreState::LockedUp, "{c}");
    let why = c.detail.unwrap();
    assert!(why.contains("exception 3's vector at 0x0800000c is 0x00000000"), "{why}");
    assert!(why.contains("no FPU") && why.contains("0x08000400"), "the first fault is named: {why}");
}

#[tokio::test(start_paused = true)]
async fn implausible_vector_table_locks_up() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    let image = bootproof_rig::image::FirmwareImage::from_segments(
        "junk.bin",
        vec![bootproof_rig::image::Segment { address: 0x0800_0000, data: vec![0x12; 64] }],
    )
    .unwrap();
    rig.probe().unwrap().flash(&image, &mut |_| {}).await.unwrap();
    rig.reset_normal().await.unwrap();
    let c = core(&mut rig).await;
    assert_eq!(c.state, CoreState::LockedUp, "{c}");
    let why = c.detail.unwrap();
    assert!(why.starts_with("implausible vector table at 0x08000000 (SP 0x12121212, reset 0x12121212)"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn go_starts_the_app_without_a_reset_so_the_flags_stay() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    flash_standin(&t, &mut rig, 1).await; // the probe's reset lands in the ROM (BOOT0 high)
    clear_flags(&mut rig).await;
    rig.reset().unwrap().pulse_reset(None).await.unwrap();
    bootproof_rig::time::sleep(60 * MS).await;
    let mut tr = Transcript::new();
    let can = rig.can().unwrap();
    let r = exchange(can, &mut tr, fd(0x21, &0x0800_0000u32.to_be_bytes()), 20 * MS).await;
    assert_eq!(payload(&r)[0], vec![ACK]);
    let mut l = CanListener::new();
    let ann = r.iter().find_map(|f| l.feed(f)).expect("the app announced itself after Go").unwrap();
    assert_eq!(ann.reset_flags, 0x0042_0000, "Go is not a reset: RSR still shows the NRST that entered the bootloader");
    assert_eq!(core(&mut rig).await.detail.as_deref(), Some("bootproof stand-in app v1"));
}

#[tokio::test(start_paused = true)]
async fn power_cut_during_a_rom_write_tears_the_word_into_an_ecc_error() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rom_up(&t, &mut rig).await;
    let can = rig.can().unwrap();
    let mut tr = Transcript::new();
    exchange(can, &mut tr, fd(0x31, &[0x08, 0x02, 0x00, 0x00, 255]), 5 * MS).await;
    for i in 0..4u8 {
        let f = fd(0x31, &[i; 64]);
        can.send(&f).await.unwrap();
    }
    // The bootloader programs 8 words of 130 µs each; cut power in the middle.
    bootproof_rig::time::sleep(Duration::from_micros(400)).await;
    t.board().set_power(false);
    t.board().set_power(true);
    let states: Vec<_> = {
        let st = t.board().state();
        (0..8).map(|i| st.flash.word_state(0x0802_0000 + i * 32)).collect()
    };
    use bootproof_twin::flash::WordState::*;
    assert_eq!(states[..3], [Programmed, Programmed, Programmed], "{states:?}");
    assert_eq!(states[3], Inconsistent, "{states:?}");
    assert!(states[4..].iter().all(|s| *s == Erased), "{states:?}");
    let e = rig.probe().unwrap().read_memory(0x0802_0060, 32).await.unwrap_err().to_string();
    assert!(e.contains("ECC double error"), "{e}");
    // A ROM read of the torn word bus-faults the bootloader: it locks up, silent.
    rig.reset_into_rom().await.unwrap();
    let can = rig.can().unwrap();
    let r = exchange(can, &mut tr, fd(0x11, &[0x08, 0x02, 0x00, 0x60, 31]), 100 * MS).await;
    assert!(r.is_empty(), "{:?}", payload(&r));
    assert_eq!(core(&mut rig).await.state, CoreState::LockedUp);
}

#[tokio::test(start_paused = true)]
async fn empty_check_latch_on_g0_keeps_entering_the_rom_until_a_power_cycle() {
    let t = twin("stm32g071rb");
    let mut rig = t.rig();
    // Blank part, BOOT0 low: the empty check boots the ROM bootloader.
    rig.power().unwrap().power_on().await.unwrap();
    assert_eq!(core(&mut rig).await.detail.as_deref(), Some("ROM bootloader"));
    // Program the stand-in app through the ROM bootloader over USART.
    let mut tr = Transcript::new();
    assert_eq!(usart_sync(&mut rig, &mut tr).await, vec![ACK]);
    let p = t.board().profile().clone();
    let img = standin::image(&p, p.flash.base, 2, 2048);
    for (i, chunk) in img.segments[0].data.chunks(256).enumerate() {
        let addr = p.flash.base + (i * 256) as u32;
        assert_eq!(usart_xfer(&mut rig, &mut tr, &[0x31, 0xCE], MS * 2).await, vec![ACK]);
        assert_eq!(usart_xfer(&mut rig, &mut tr, &addr_cs(addr), MS * 2).await, vec![ACK]);
        let mut block = vec![(chunk.len() - 1) as u8];
        block.extend_from_slice(chunk);
        block.push(xor(&block));
        assert_eq!(usart_xfer(&mut rig, &mut tr, &block, MS * 50).await, vec![ACK]);
    }
    // NRST with BOOT0 low: still the ROM (the flag is re-evaluated only at power-on).
    rig.reset_normal().await.unwrap();
    assert_eq!(core(&mut rig).await.detail.as_deref(), Some("ROM bootloader"), "empty flag latched");
    // A power cycle re-evaluates it: the app runs.
    rig.power().unwrap().power_cycle(None).await.unwrap();
    assert_eq!(core(&mut rig).await.detail.as_deref(), Some("bootproof stand-in app v2"));
}

#[tokio::test(start_paused = true)]
async fn g0_bootloader_that_clears_the_empty_flag_crashes_on_reset_while_blank() {
    // AN2606 §48.3.1: V11.3+ clears the flag; a reset while the flash is still blank then boots
    // the empty flash.
    let mut p = BoardProfile::builtin("stm32g071rb").unwrap();
    p.empty_check.as_mut().unwrap().flag_cleared_by_bootloader = true;
    let opts = TwinOptions::for_profile(&p);
    let t = Twin::new(p, opts);
    let mut rig = t.rig();
    rig.power().unwrap().power_on().await.unwrap();
    assert_eq!(core(&mut rig).await.detail.as_deref(), Some("ROM bootloader"));
    rig.reset_normal().await.unwrap();
    assert_eq!(core(&mut rig).await.state, CoreState::LockedUp, "wrong boot on empty user flash");
    rig.power().unwrap().power_cycle(None).await.unwrap();
    assert_eq!(core(&mut rig).await.detail.as_deref(), Some("ROM bootloader"));
}

#[tokio::test(start_paused = true)]
async fn h7_boot_add0_pointing_at_system_memory_boots_the_rom_with_boot0_low() {
    let mut p = BoardProfile::builtin("stm32h723zg").unwrap();
    p.boot = BootSelection::H7BootAdd { boot_add0: 0x1FF0, boot_add1: 0x1FF0 };
    let opts = TwinOptions::for_profile(&p);
    let t = Twin::new(p, opts);
    let mut rig = t.rig();
    rig.power().unwrap().power_on().await.unwrap();
    assert_eq!(core(&mut rig).await.pc, Some(0x1FF0_9800), "AN2606 pattern 10: BOOT0=0 and BOOT_ADD0=0x1FF0");
}

#[tokio::test(start_paused = true)]
async fn probe_refuses_mass_erase_without_the_opt_in_and_needs_power() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    let e = rig.probe().unwrap().read_memory(0x0800_0000, 4).await.unwrap_err().to_string();
    assert!(e.contains("not powered"), "{e}");
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    flash_standin(&t, &mut rig, 1).await;
    let e = rig.probe().unwrap().erase_all(Permissions::none()).await.unwrap_err().to_string();
    assert!(e.contains("--allow-mass-erase"), "{e}");
    assert_ne!(rig.probe().unwrap().read_memory(0x0800_0000, 4).await.unwrap(), [0xFF; 4], "nothing erased");
    rig.probe().unwrap().erase_all(Permissions::none().allow_mass_erase()).await.unwrap();
    assert_eq!(rig.probe().unwrap().read_memory(0x0800_0000, 4).await.unwrap(), [0xFF; 4]);
    assert_eq!(t.board().state().flash.erase_counts().iter().sum::<u64>(), 8 + 1);
}

#[tokio::test(start_paused = true)]
async fn a_bit_rate_mismatch_means_no_communication_with_the_rom() {
    let t = twin("stm32h723zg");
    let mut rig = t.rig();
    rom_up(&t, &mut rig).await;
    let mut other = t.attach_can("tool at 500k/2M", bootproof_rig::can::Bitrates::fd(500_000, 2_000_000));
    other.send(&CanFrame::fd(CanId::Standard(0x02), &[], true).unwrap()).await.unwrap();
    assert_eq!(other.recv(10 * MS).await.unwrap(), CanEvent::Error(bootproof_rig::BusError::NoAck));
    assert!(matches!(other.recv(100 * MS).await, Err(bootproof_rig::CanError::Timeout(_))));
    // The bootloader is still waiting for a first frame at its own rates.
    let mut tr = Transcript::new();
    let r = exchange(rig.can().unwrap(), &mut tr, fd(0x02, &[]), 5 * MS).await;
    assert_eq!(payload(&r), vec![vec![ACK], vec![0x04, 0x83], vec![ACK]]);
}

/// Firmware that reads UART7's first register (0x40007C00, not modelled by the twin), then
/// spins: `ldr r0, [pc, #4]; ldr r1, [r0]; b .` with the literal after it.
fn touches_an_unmodelled_register() -> bootproof_rig::image::FirmwareImage {
    let mut img = vec![0u8; 0x40C];
    img[..4].copy_from_slice(&0x2002_0000u32.to_le_bytes());
    img[4..8].copy_from_slice(&0x0800_0401u32.to_le_bytes());
    for (i, h) in [0x4801u16, 0x6801, 0xE7FE, 0x0000].iter().enumerate() {
        img[0x400 + 2 * i..0x402 + 2 * i].copy_from_slice(&h.to_le_bytes());
    }
    img[0x408..0x40C].copy_from_slice(&0x4000_7C00u32.to_le_bytes());
    bootproof_rig::image::FirmwareImage::from_segments(
        "uart7.bin",
        vec![bootproof_rig::image::Segment { address: 0x0800_0000, data: img }],
    )
    .unwrap()
}

async fn run_unmodelled(strict: bool) -> (Twin, bootproof_rig::CoreStatus) {
    let p = BoardProfile::builtin("stm32h723zg").unwrap();
    let t = Twin::new(p.clone(), TwinOptions { strict_mmio: strict, ..TwinOptions::for_profile(&p) });
    let mut rig = t.rig();
    rig.power().unwrap().power_on().await.unwrap();
    rig.probe().unwrap().flash(&touches_an_unmodelled_register(), &mut |_| {}).await.unwrap();
    bootproof_rig::time::sleep(Duration::from_millis(10)).await;
    let c = core(&mut rig).await;
    (t, c)
}

#[tokio::test(start_paused = true)]
async fn an_unmodelled_register_is_reported_and_read_as_zero_when_lenient() {
    let (t, c) = run_unmodelled(false).await;
    assert_eq!((c.state, c.pc), (CoreState::Running, Some(0x0800_0404)), "spinning after the read: {c}");
    let events = t.board().events();
    let report = events.iter().find(|e| e.what.contains("outside the twin's peripheral models")).expect("reported");
    assert_eq!(
        report.what,
        "firmware read 0x40007c00 at PC 0x08000402: outside the twin's peripheral models (lenient: read as zero, write ignored)"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unmodelled_register_stops_the_core_when_strict() {
    let (_t, c) = run_unmodelled(true).await;
    assert_eq!(c.state, CoreState::LockedUp, "{c}");
    let why = c.detail.unwrap();
    assert!(why.starts_with("strict MMIO: firmware read 0x40007c00 at PC 0x08000402"), "{why}");
}
