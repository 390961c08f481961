//! The ROM bootloader over USART (AN3155) on the H723 and the G071, command by command.

mod support;

use std::time::Duration;

use bootproof_rig::Rig;
use bootproof_rig::console::SerialConfig;
use bootproof_twin::Twin;
use support::*;

const Q: Duration = Duration::from_millis(2);

struct Bench {
    twin: Twin,
    rig: Rig,
    tr: Transcript,
}

impl Bench {
    async fn new(board: &str) -> Bench {
        let twin = Twin::builtin(board).unwrap();
        let mut rig = twin.rig();
        rom_up(&twin, &mut rig).await;
        let mut tr = Transcript::new();
        assert_eq!(usart_sync(&mut rig, &mut tr).await, vec![ACK], "sync");
        Bench { twin, rig, tr }
    }
    async fn x(&mut self, out: &[u8]) -> Vec<u8> {
        usart_xfer(&mut self.rig, &mut self.tr, out, Q).await
    }
    async fn x_wait(&mut self, out: &[u8], quiet: Duration) -> Vec<u8> {
        usart_xfer(&mut self.rig, &mut self.tr, out, quiet).await
    }
    async fn cmd(&mut self, c: u8) -> Vec<u8> {
        self.x(&[c, !c]).await
    }
    async fn write(&mut self, addr: u32, data: &[u8]) -> Vec<u8> {
        let mut r = self.cmd(0x31).await;
        r.extend(self.x(&addr_cs(addr)).await);
        if r != [ACK, ACK] {
            return r;
        }
        let mut block = vec![(data.len() - 1) as u8];
        block.extend_from_slice(data);
        block.push(xor(&block));
        r.extend(self.x_wait(&block, Duration::from_millis(20)).await);
        r
    }
    async fn read(&mut self, addr: u32, len: usize) -> Vec<u8> {
        let mut r = self.cmd(0x11).await;
        r.extend(self.x(&addr_cs(addr)).await);
        let n = (len - 1) as u8;
        r.extend(self.x_wait(&[n, !n], Duration::from_millis(5)).await);
        r
    }
    async fn alive(&mut self) {
        let pid = self.twin.board().profile().identity.pid.to_be_bytes();
        assert_eq!(self.cmd(0x02).await, vec![ACK, 1, pid[0], pid[1], ACK]);
    }
}

#[tokio::test(start_paused = true)]
async fn get_get_version_get_id_h723() {
    let mut b = Bench::new("stm32h723zg").await;
    let r = b.cmd(0x00).await;
    assert_eq!(r, vec![ACK, 11, 0x31, 0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x44, 0x63, 0x73, 0x82, 0x92, ACK]);
    // Get Version: USART protocol V3.1 (AN3155 §3.2), not the bootloader ID 0x93.
    assert_eq!(b.cmd(0x01).await, vec![ACK, 0x31, 0, 0, ACK]);
    b.alive().await;
    insta::assert_snapshot!("usart_get_h723", b.tr.text());
}

#[tokio::test(start_paused = true)]
async fn write_read_erase_and_go_g071() {
    let mut b = Bench::new("stm32g071rb").await;
    let data: Vec<u8> = (0..64u8).collect();
    assert_eq!(b.write(0x0800_0800, &data).await, vec![ACK, ACK, ACK]);
    let r = b.read(0x0800_0800, 64).await;
    assert_eq!(&r[..3], &[ACK, ACK, ACK]);
    assert_eq!(&r[3..], &data[..]);
    // Extended erase of page 1: N = 0 (one page), page 0x0001, checksum.
    let mut req = vec![0x00, 0x00, 0x00, 0x01];
    req.push(xor(&req));
    let mut r = b.cmd(0x44).await;
    r.extend(b.x_wait(&req, Duration::from_millis(50)).await);
    assert_eq!(r, vec![ACK, ACK]);
    assert!(b.twin.board().state().flash.is_blank(0x0800_0800, 0x800));
    insta::assert_snapshot!("usart_write_read_erase_g071", b.tr.text());
}

#[tokio::test(start_paused = true)]
async fn mass_erase_with_special_code() {
    let mut b = Bench::new("stm32h723zg").await;
    assert_eq!(b.write(0x0802_0000, &[9; 32]).await, vec![ACK, ACK, ACK]);
    let mut r = b.cmd(0x44).await;
    r.extend(b.x_wait(&[0xFF, 0xFF, 0x00], Duration::from_secs(10)).await);
    assert_eq!(r, vec![ACK, ACK]);
    assert!(b.twin.board().state().flash.is_blank(0x0800_0000, 0x10_0000));
}

#[tokio::test(start_paused = true)]
async fn malformed_requests_get_nack_and_change_nothing() {
    let mut b = Bench::new("stm32h723zg").await;
    assert_eq!(b.write(0x0802_0000, &[0x5A; 32]).await, vec![ACK, ACK, ACK]);
    let before = fingerprint(&b.twin);

    // Command byte with a wrong complement.
    assert_eq!(b.x(&[0x11, 0x11]).await, vec![NACK], "bad complement");
    // Unknown command.
    assert_eq!(b.cmd(0x55).await, vec![NACK], "unknown command");
    // Read: bad address checksum.
    let mut bad = addr_cs(0x0802_0000);
    bad[4] ^= 1;
    assert_eq!(b.cmd(0x11).await, vec![ACK]);
    assert_eq!(b.x(&bad).await, vec![NACK], "read: bad address checksum");
    // Read: non-existent address.
    assert_eq!(b.cmd(0x11).await, vec![ACK]);
    assert_eq!(b.x(&addr_cs(0x6000_0000)).await, vec![NACK], "read: bad address");
    // Read: length byte without its complement.
    assert_eq!(b.cmd(0x11).await, vec![ACK]);
    assert_eq!(b.x(&addr_cs(0x0802_0000)).await, vec![ACK]);
    assert_eq!(b.x(&[0x0F, 0x0F]).await, vec![NACK], "read: bad length complement");
    // Write: bad data checksum.
    assert_eq!(b.cmd(0x31).await, vec![ACK]);
    assert_eq!(b.x(&addr_cs(0x0802_0100)).await, vec![ACK]);
    let mut block = vec![31u8];
    block.extend_from_slice(&[0x77; 32]);
    block.push(xor(&block) ^ 0x80);
    assert_eq!(b.x_wait(&block, Duration::from_millis(20)).await, vec![NACK], "write: bad checksum");
    // Write: non-existent address.
    assert_eq!(b.cmd(0x31).await, vec![ACK]);
    assert_eq!(b.x(&addr_cs(0x9000_0000)).await, vec![NACK], "write: bad address");
    // Erase: bad checksum, then a non-existent sector.
    assert_eq!(b.cmd(0x44).await, vec![ACK]);
    assert_eq!(b.x(&[0x00, 0x00, 0x00, 0x02, 0x00]).await, vec![NACK], "erase: bad checksum");
    let mut req = vec![0x00, 0x00, 0x00, 0x09];
    req.push(xor(&req));
    assert_eq!(b.cmd(0x44).await, vec![ACK]);
    assert_eq!(b.x(&req).await, vec![NACK], "erase: sector 9");
    // Go: non-existent address.
    assert_eq!(b.cmd(0x21).await, vec![ACK]);
    assert_eq!(b.x(&addr_cs(0x6000_0000)).await, vec![NACK], "go: bad address");

    assert_eq!(fingerprint(&b.twin), before);
    b.alive().await;

    // Unaligned H7 write (AN2606 Table 7: 8 bytes): NACK after the data; flash unchanged.
    assert_eq!(b.write(0x0802_0104, &[0x66; 32]).await, vec![ACK, ACK, NACK]);
    assert_eq!(fingerprint(&b.twin), before);
}

#[tokio::test(start_paused = true)]
async fn write_protected_sector_is_acked_and_left_unchanged_on_usart() {
    let mut b = Bench::new("stm32h723zg").await;
    // Write Protect sector 2: N = 0, sector 2, checksum.
    assert_eq!(b.cmd(0x63).await, vec![ACK]);
    assert_eq!(b.x(&[0x00, 0x02, 0x02]).await, vec![ACK]);
    bootproof_rig::time::sleep(Duration::from_millis(60)).await;
    assert!(b.twin.board().state().flash.is_protected(2));
    // After the reset the bootloader needs a new sync.
    assert_eq!(usart_sync(&mut b.rig, &mut b.tr).await, vec![ACK]);
    let before = fingerprint(&b.twin);
    // AN3155 §3.6: "No error is returned when performing write operations on write-protected
    // sectors."
    assert_eq!(b.write(0x0804_0000, &[1; 32]).await, vec![ACK, ACK, ACK]);
    assert_eq!(fingerprint(&b.twin), before);
    // AN3155 §3.8: nor for erase operations. Extended Erase of sector 2: N = 0, sector 2.
    let mut req = vec![0x00, 0x00, 0x00, 0x02];
    req.push(xor(&req));
    assert_eq!(b.cmd(0x44).await, vec![ACK]);
    assert_eq!(b.x(&req).await, vec![ACK]);
    assert_eq!(fingerprint(&b.twin), before);
    b.alive().await;
}

#[tokio::test(start_paused = true)]
async fn readout_protection_nacks_reads_on_usart() {
    let mut b = Bench::new("stm32h723zg").await;
    assert_eq!(b.cmd(0x82).await, vec![ACK, ACK]);
    bootproof_rig::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(usart_sync(&mut b.rig, &mut b.tr).await, vec![ACK]);
    let before = fingerprint(&b.twin);
    assert_eq!(b.cmd(0x11).await, vec![NACK], "read under RDP");
    assert_eq!(b.cmd(0x31).await, vec![NACK], "write under RDP");
    assert_eq!(b.cmd(0x44).await, vec![NACK], "erase under RDP");
    assert_eq!(fingerprint(&b.twin), before);
    b.alive().await;
}

#[tokio::test(start_paused = true)]
async fn wrong_framing_gets_no_answer() {
    let twin = Twin::builtin("stm32h723zg").unwrap();
    let mut rig = twin.rig();
    rom_up(&twin, &mut rig).await;
    let mut tr = Transcript::new();
    rig.console().unwrap().configure(SerialConfig::n81(115_200)).await.unwrap();
    assert!(usart_xfer(&mut rig, &mut tr, &[0x7F], Q).await.is_empty(), "8N1 sync: nothing");
}

#[tokio::test(start_paused = true)]
async fn g0_a_second_program_of_a_double_word_is_refused_and_keeps_the_data() {
    let mut b = Bench::new("stm32g071rb").await;
    // AN2606 Table 7: 4-byte alignment on the G0; the ROM programs the whole 64-bit double word.
    assert_eq!(b.write(0x0800_1004, &[0x5A; 4]).await, vec![ACK, ACK, ACK]);
    let before = fingerprint(&b.twin);
    // The other half of that double word: a second program. RM0440/RM0490 (the G0's flash
    // design): PROGERR, "the operation is aborted": NACK, the old data stays readable.
    assert_eq!(b.write(0x0800_1000, &[0x11; 4]).await, vec![ACK, ACK, NACK]);
    assert_eq!(fingerprint(&b.twin), before);
    let mut back = [0u8; 8];
    b.twin.board().state().flash.read(0x0800_1000, &mut back).unwrap();
    assert_eq!(back, [0xFF, 0xFF, 0xFF, 0xFF, 0x5A, 0x5A, 0x5A, 0x5A]);
}

#[tokio::test(start_paused = true)]
async fn f4_writes_need_4_byte_alignment() {
    let mut b = Bench::new("stm32f446re").await;
    let before = fingerprint(&b.twin);
    // AN2606 §4.6 Table 7: "STM32F4 | 4 bytes".
    assert_eq!(b.write(0x0800_4002, &[0x12; 4]).await, vec![ACK, ACK, NACK]);
    assert_eq!(fingerprint(&b.twin), before);
}
