//! The H723 ROM bootloader over FDCAN (AN5405), command by command, including malformed requests.

mod support;

use std::time::Duration;

use bootproof_rig::probe::CoreState;
use bootproof_rig::{CanFrame, Rig};

use bootproof_twin::Twin;
use support::*;

const Q: Duration = Duration::from_millis(5);

struct Bench {
    twin: Twin,
    rig: Rig,
    tr: Transcript,
}

impl Bench {
    async fn new() -> Bench {
        let twin = Twin::builtin("stm32h723zg").unwrap();
        let mut rig = twin.rig();
        rom_up(&twin, &mut rig).await;
        Bench { twin, rig, tr: Transcript::new() }
    }
    async fn x(&mut self, id: u16, data: &[u8]) -> Vec<Vec<u8>> {
        let f = fd(id, data);
        let can = self.rig.can().unwrap();
        payload(&exchange(can, &mut self.tr, f, Q).await)
    }
    async fn x_wait(&mut self, id: u16, data: &[u8], quiet: Duration) -> Vec<Vec<u8>> {
        let f = fd(id, data);
        let can = self.rig.can().unwrap();
        payload(&exchange(can, &mut self.tr, f, quiet).await)
    }
    async fn send(&mut self, f: CanFrame) {
        self.tr.tx(&f);
        self.rig.can().unwrap().send(&f).await.unwrap();
    }
    async fn collect(&mut self, quiet: Duration) -> Vec<Vec<u8>> {
        let can = self.rig.can().unwrap();
        payload(&collect(can, &mut self.tr, quiet).await)
    }
    async fn write(&mut self, addr: u32, data: &[u8]) -> Vec<Vec<u8>> {
        let mut r = self.x(0x31, &[&addr.to_be_bytes()[..], &[(data.len() - 1) as u8]].concat()).await;
        if r != [vec![ACK]] {
            return r;
        }
        for chunk in data.chunks(64) {
            self.send(fd(0x31, chunk)).await;
        }
        r.extend(self.collect(Q).await);
        r
    }
    async fn read(&mut self, addr: u32, len: usize) -> Vec<Vec<u8>> {
        self.x(0x11, &[&addr.to_be_bytes()[..], &[(len - 1) as u8]].concat()).await
    }
    /// The bootloader still answers Get ID.
    async fn alive(&mut self) {
        assert_eq!(self.x(0x02, &[]).await, vec![vec![ACK], vec![0x04, 0x83], vec![ACK]]);
    }
}

fn flat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[tokio::test(start_paused = true)]
async fn get_lists_the_fdcan_command_set() {
    let mut b = Bench::new().await;
    let r = b.x(0x00, &[]).await;
    assert_eq!(r[0], [ACK]);
    assert_eq!(r[1], [11], "number of commands");
    assert_eq!(r[2], [0x11], "FDCAN protocol V1.1");
    let cmds: Vec<u8> = r[3..14].iter().map(|f| f[0]).collect();
    assert_eq!(cmds, [0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x44, 0x63, 0x73, 0x82, 0x92]);
    assert_eq!(r[14], [ACK]);
    insta::assert_snapshot!("fdcan_get", b.tr.text());
}

#[tokio::test(start_paused = true)]
async fn get_version_and_get_id() {
    let mut b = Bench::new().await;
    // Get Version: the FDCAN protocol version V1.1 (AN5405 §3.2, AN2606 Table 3), not the
    // bootloader ID 0x93 (read from system memory instead).
    assert_eq!(b.x(0x01, &[]).await, vec![vec![ACK], vec![0x11], vec![0, 0], vec![ACK]]);
    b.alive().await;
    insta::assert_snapshot!("fdcan_get_version_get_id", b.tr.text());
}

#[tokio::test(start_paused = true)]
async fn write_one_kib_and_read_it_back() {
    let mut b = Bench::new().await;
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
    for (i, chunk) in data.chunks(256).enumerate() {
        let r = b.write(0x0802_0000 + i as u32 * 256, chunk).await;
        assert_eq!(r, vec![vec![ACK], vec![ACK]], "write {i}");
    }
    let mut back = Vec::new();
    for i in 0..4u32 {
        let r = b.read(0x0802_0000 + i * 256, 256).await;
        assert_eq!(r.first(), Some(&vec![ACK]));
        assert_eq!(r.last(), Some(&vec![ACK]));
        assert_eq!(r.len(), 6, "ACK, 4 × 64 bytes, ACK");
        back.extend(flat(&r[1..5]));
    }
    assert_eq!(back, data);
    insta::assert_snapshot!("fdcan_write_read_1k", b.tr.text());
}

#[tokio::test(start_paused = true)]
async fn go_jumps_to_the_application() {
    let mut b = Bench::new().await;
    let p = b.twin.board().profile().clone();
    let img = bootproof_twin::standin::image(&p, 0x0800_0000, 5, 2048);
    for (i, chunk) in img.segments[0].data.chunks(256).enumerate() {
        assert_eq!(b.write(0x0800_0000 + (i * 256) as u32, chunk).await, vec![vec![ACK], vec![ACK]]);
    }
    b.tr = Transcript::new();
    // The app prints its serial banner (~9 ms at 115200) before announcing on CAN.
    let r = b.x_wait(0x21, &0x0800_0000u32.to_be_bytes(), Duration::from_millis(20)).await;
    assert_eq!(r[0], [ACK]);
    let beacon = bootproof_rig::beacon::Beacon::decode(&r[1]).expect("the app's beacon");
    assert_eq!(beacon.stage, bootproof_rig::beacon::Stage::Application, "the app announced itself");
    insta::assert_snapshot!("fdcan_go", b.tr.text());
    let c = b.rig.probe().unwrap().core_status().await.unwrap();
    assert_eq!(c.detail.as_deref(), Some("bootproof stand-in app v5"));
}

#[tokio::test(start_paused = true)]
async fn erase_a_sector_list_and_mass_erase() {
    let mut b = Bench::new().await;
    for s in [1u32, 2, 3] {
        assert_eq!(b.write(0x0800_0000 + s * 0x2_0000, &[s as u8; 32]).await, vec![vec![ACK], vec![ACK]]);
    }
    let r = b.x(0x44, &[0x00, 0x02]).await;
    assert_eq!(r, vec![vec![ACK], vec![ACK]], "ACK, then ACK asking for the sector list");
    b.send(fd(0x44, &[0x00, 0x01, 0x00, 0x02])).await;
    let t0 = bootproof_rig::time::Instant::now();
    let r = b.collect(Duration::from_secs(3)).await;
    assert_eq!(r, vec![vec![ACK]]);
    assert!(t0.elapsed() >= Duration::from_millis(2200), "two 1.1 s sector erases");
    {
        let st = b.twin.board().state();
        assert!(st.flash.is_blank(0x0802_0000, 0x4_0000));
        assert!(!st.flash.is_blank(0x0806_0000, 32), "sector 3 untouched");
    }
    let r = b.x_wait(0x44, &[0xFF, 0xFF], Duration::from_secs(10)).await;
    assert_eq!(r, vec![vec![ACK], vec![ACK]]);
    assert!(b.twin.board().state().flash.is_blank(0x0800_0000, 0x10_0000));
}

#[tokio::test(start_paused = true)]
async fn malformed_requests_get_nack_and_change_nothing() {
    let mut b = Bench::new().await;
    assert_eq!(b.write(0x0802_0000, &[0xAB; 64]).await, vec![vec![ACK], vec![ACK]]);
    let before = fingerprint(&b.twin);
    let cases: Vec<(&str, u16, Vec<u8>)> = vec![
        ("read with a bad length", 0x11, vec![0x08, 0x02, 0x00]),
        ("read of a non-existent address", 0x11, vec![0x60, 0x00, 0x00, 0x00, 0x0F]),
        ("read past the end of flash", 0x11, vec![0x08, 0x0F, 0xFF, 0xF0, 0xFF]),
        ("write with a bad length", 0x31, vec![0x08, 0x02, 0x00, 0x00]),
        ("write to a non-existent address", 0x31, vec![0x60, 0x00, 0x00, 0x00, 0x1F]),
        ("write past the end of flash", 0x31, vec![0x08, 0x0F, 0xFF, 0xE0, 0xFF]),
        ("erase with a bad length", 0x44, vec![0x01]),
        ("erase of zero sectors", 0x44, vec![0x00, 0x00]),
        ("erase of more sectors than exist", 0x44, vec![0x00, 0x09]),
        ("erase of bank 2 on a single-bank part", 0x44, vec![0xFF, 0xFD]),
        ("go to a non-existent address", 0x21, vec![0x60, 0x00, 0x00, 0x00]),
        ("go with a bad length", 0x21, vec![0x08, 0x00]),
        ("write protect of a non-existent sector", 0x63, vec![0x01, 0x09]),
        ("unknown command", 0x55, vec![]),
    ];
    for (what, id, data) in cases {
        let r = b.x(id, &data).await;
        assert_eq!(r, vec![vec![NACK]], "{what}");
        assert_eq!(fingerprint(&b.twin), before, "{what} changed state");
        b.alive().await;
    }
    // A sector list naming a non-existent sector: NACK, nothing erased.
    assert_eq!(b.x(0x44, &[0x00, 0x02]).await, vec![vec![ACK], vec![ACK]]);
    b.send(fd(0x44, &[0x00, 0x01, 0x00, 0x09])).await;
    assert_eq!(b.collect(Q).await, vec![vec![NACK]]);
    assert_eq!(fingerprint(&b.twin), before);
    b.alive().await;
}

#[tokio::test(start_paused = true)]
async fn unaligned_h7_write_is_nacked_and_later_writes_fail_until_reset() {
    let mut b = Bench::new().await;
    let before = fingerprint(&b.twin);
    // AN2606 §4.6 Table 7: 8 bytes on the H72x.
    assert_eq!(b.write(0x0802_0004, &[0x11; 32]).await, vec![vec![ACK], vec![NACK]], "address not 8-byte aligned");
    assert_eq!(fingerprint(&b.twin), before);
    // AN2606 §4.6: every following program operation fails as well.
    assert_eq!(b.write(0x0802_0000, &[0x22; 32]).await, vec![vec![ACK], vec![NACK]]);
    assert_eq!(fingerprint(&b.twin), before);
    b.alive().await;
    b.rig.reset_into_rom().await.unwrap();
    assert_eq!(b.write(0x0802_0000, &[0x22; 32]).await, vec![vec![ACK], vec![ACK]], "a reset clears the error");
    // Length not a multiple of the alignment.
    let mut b = Bench::new().await;
    let before = fingerprint(&b.twin);
    assert_eq!(b.write(0x0802_0000, &[0x33; 12]).await, vec![vec![ACK], vec![NACK]]);
    assert_eq!(fingerprint(&b.twin), before);
}

#[tokio::test(start_paused = true)]
async fn an_aligned_part_of_a_flash_word_programs_the_word_and_the_rest_is_a_second_program() {
    let mut b = Bench::new().await;
    // 8-byte aligned, 16 bytes: the ROM programs the whole 32-byte word, the rest erased.
    assert_eq!(b.write(0x0802_0008, &[0x33; 16]).await, vec![vec![ACK], vec![ACK]]);
    let r = b.read(0x0802_0000, 32).await;
    let back = flat(&r[1..r.len() - 1]);
    assert_eq!(&back[..8], &[0xFF; 8]);
    assert_eq!(&back[8..24], &[0x33; 16]);
    // The rest of that word, later: a second program of the word, its ECC no longer matches.
    assert_eq!(b.write(0x0802_0018, &[0x44; 8]).await, vec![vec![ACK], vec![NACK]]);
    assert_eq!(
        b.twin.board().state().flash.word_state(0x0802_0000),
        bootproof_twin::flash::WordState::Inconsistent,
        "ECC double error"
    );
}

#[tokio::test(start_paused = true)]
async fn write_protection_blocks_writes_and_erases_until_removed() {
    let mut b = Bench::new().await;
    // Data in sector 2 (unprotected), to see that a refused mass erase erases nothing.
    assert_eq!(b.write(0x0804_0000, &[0x45; 32]).await, vec![vec![ACK], vec![ACK]]);
    // Protect sector 3: ACK, ACK, then the option bytes reload (a reset back into the ROM).
    let r = b.x(0x63, &[0x01, 0x03]).await;
    assert_eq!(r, vec![vec![ACK], vec![ACK]]);
    bootproof_rig::time::sleep(Duration::from_millis(60)).await;
    assert!(b.twin.board().state().flash.is_protected(3));
    let before = fingerprint(&b.twin);
    // AN5405: no error is returned for writes to protected sectors, and nothing is written.
    assert_eq!(b.write(0x0806_0000, &[0x44; 32]).await, vec![vec![ACK], vec![ACK]]);
    assert_eq!(fingerprint(&b.twin), before);
    // Erasing it: "No error is returned when performing erase operations on write-protected
    // sectors" (AN5405 §3.7): ACK, nothing erased.
    assert_eq!(b.x(0x44, &[0x00, 0x01]).await, vec![vec![ACK], vec![ACK]]);
    b.send(fd(0x44, &[0x00, 0x03])).await;
    assert_eq!(b.collect(Q).await, vec![vec![ACK]]);
    assert_eq!(fingerprint(&b.twin), before);
    assert_eq!(b.x(0x44, &[0xFF, 0xFF]).await, vec![vec![ACK], vec![ACK]], "mass erase with a protected sector");
    assert_eq!(fingerprint(&b.twin), before, "nothing erased, not even the unprotected sector 2");
    // Write Unprotect removes it (and resets).
    assert_eq!(b.x(0x73, &[]).await, vec![vec![ACK], vec![ACK]]);
    bootproof_rig::time::sleep(Duration::from_millis(60)).await;
    assert!(!b.twin.board().state().flash.is_protected(3));
    assert_eq!(b.write(0x0806_0000, &[0x44; 32]).await, vec![vec![ACK], vec![ACK]]);
    assert!(!b.twin.board().state().flash.is_blank(0x0806_0000, 32));
}

#[tokio::test(start_paused = true)]
async fn readout_protection_silences_reads_and_unprotect_mass_erases() {
    let mut b = Bench::new().await;
    assert_eq!(b.write(0x0802_0000, &[0x55; 32]).await, vec![vec![ACK], vec![ACK]]);
    assert_eq!(b.x(0x82, &[]).await, vec![vec![ACK], vec![ACK]]);
    bootproof_rig::time::sleep(Duration::from_millis(60)).await;
    let before = fingerprint(&b.twin);
    // Read under RDP: no reply at all (mios on H723); the bootloader is still alive.
    assert_eq!(b.read(0x0802_0000, 32).await, Vec::<Vec<u8>>::new());
    b.alive().await;
    assert_eq!(b.write(0x0802_0100, &[0x66; 32]).await, vec![vec![NACK]]);
    assert_eq!(b.x(0x44, &[0xFF, 0xFF]).await, vec![vec![NACK]]);
    assert_eq!(b.x(0x21, &0x0800_0000u32.to_be_bytes()).await, vec![vec![NACK]]);
    assert_eq!(fingerprint(&b.twin), before);
    let e = b.rig.probe().unwrap().read_memory(0x0802_0000, 4).await.unwrap_err().to_string();
    assert!(e.contains("readout-protected"), "{e}");
    // Readout Unprotect: ACK, mass erase, ACK, reset.
    let r = b.x_wait(0x92, &[], Duration::from_secs(12)).await;
    assert_eq!(r, vec![vec![ACK], vec![ACK]]);
    bootproof_rig::time::sleep(Duration::from_millis(60)).await;
    let r = b.read(0x0802_0000, 32).await;
    assert_eq!(flat(&r[1..2]), vec![0xFF; 32], "flash was mass-erased");
}

#[tokio::test(start_paused = true)]
async fn the_rom_answers_only_after_its_startup_time() {
    let twin = Twin::builtin("stm32h723zg").unwrap();
    let mut rig = twin.rig();
    rig.boot0().unwrap().set_boot0(bootproof_fixtures::Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    // 20 ms after power-on the bootloader is still starting: nobody acknowledges.
    bootproof_rig::time::sleep(Duration::from_millis(20)).await;
    let mut tr = Transcript::new();
    let r = exchange(rig.can().unwrap(), &mut tr, fd(0x02, &[]), Duration::from_millis(100)).await;
    assert!(r.is_empty());
    // After 53.975 ms it answers.
    bootproof_rig::time::sleep(Duration::from_millis(40)).await;
    let r = exchange(rig.can().unwrap(), &mut tr, fd(0x02, &[]), Q).await;
    assert_eq!(payload(&r)[1], vec![0x04, 0x83]);
    assert_eq!(rig.probe().unwrap().core_status().await.unwrap().state, CoreState::Running);
}

#[tokio::test(start_paused = true)]
async fn code_started_by_go_finds_the_bootloaders_clock_tree_and_pins() {
    // A program in RAM stores RCC_CFGR, RCC_D2CCIP1R and GPIOD_MODER at 0x2400_9000, then
    // spins. AN2606 §4.1: Go does not put the bootloader's registers back to reset values;
    // Table 133: 66 MHz from the PLL on HSI, FDCAN on PLL1Q (assumption `rom-go-leftovers`).
    let mut b = Bench::new().await;
    let base: u32 = 0x2400_8000;
    let mut prog = Vec::new();
    prog.extend_from_slice(&0x2400_A000u32.to_le_bytes()); // SP
    prog.extend_from_slice(&(base + 8 + 1).to_le_bytes()); // reset: Thumb
    for h in [
        // Code at base + 8, literals at base + 32..48; PC reads as Align(address + 4, 4).
        0x4805u16, // +8:  ldr r0, [pc, #20] -> RCC_CFGR
        0x4A06,    // +10: ldr r2, [pc, #24] -> results
        0x6801,    // ldr r1, [r0]
        0x6011,    // str r1, [r2]
        0x4805,    // +16: ldr r0, [pc, #20] -> RCC_D2CCIP1R
        0x6801,    // ldr r1, [r0]
        0x6051,    // str r1, [r2, #4]
        0x4805,    // +22: ldr r0, [pc, #20] -> GPIOD_MODER
        0x6801,    // ldr r1, [r0]
        0x6091,    // str r1, [r2, #8]
        0xE7FE,    // b .
        0xBF00,    // nop (literal pool alignment)
    ] {
        prog.extend_from_slice(&h.to_le_bytes());
    }
    for w in [0x5802_4410u32, 0x2400_9000, 0x5802_4450, 0x5802_0C00] {
        prog.extend_from_slice(&w.to_le_bytes());
    }
    assert_eq!(b.write(base, &prog).await, vec![vec![ACK], vec![ACK]]);
    let r = b.x_wait(0x21, &base.to_be_bytes(), Duration::from_millis(20)).await;
    assert_eq!(r, vec![vec![ACK]]);
    bootproof_rig::time::sleep(Duration::from_millis(5)).await;
    let mut got = [0u8; 12];
    b.twin.board().state().ram.read(0x2400_9000, &mut got);
    let word = |i: usize| u32::from_le_bytes(got[4 * i..4 * i + 4].try_into().unwrap());
    assert_eq!(word(0) >> 3 & 7, 3, "SWS: PLL1 is the system clock");
    assert_eq!(word(1) >> 28 & 3, 1, "FDCANSEL: PLL1Q");
    assert_eq!(word(2) & 0xF, 0b1010, "PD0/PD1 in alternate function mode");
}
