//! The F446 ROM bootloader over classic CAN (AN3154), command by command.

mod support;

use std::time::Duration;

use bootproof_rig::Rig;
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
        let twin = Twin::builtin("stm32f446re").unwrap();
        let mut rig = twin.rig();
        rom_up(&twin, &mut rig).await;
        Bench { twin, rig, tr: Transcript::new() }
    }
    async fn x_wait(&mut self, id: u16, data: &[u8], quiet: Duration) -> Vec<Vec<u8>> {
        let can = self.rig.can().unwrap();
        payload(&exchange(can, &mut self.tr, classic(id, data), quiet).await)
    }
    async fn x(&mut self, id: u16, data: &[u8]) -> Vec<Vec<u8>> {
        self.x_wait(id, data, Q).await
    }
    async fn write(&mut self, addr: u32, data: &[u8]) -> Vec<Vec<u8>> {
        let mut r = self.x(0x31, &[&addr.to_be_bytes()[..], &[(data.len() - 1) as u8]].concat()).await;
        if r != [vec![ACK]] {
            return r;
        }
        for chunk in data.chunks(8) {
            r.extend(self.x(0x04, chunk).await);
        }
        r
    }
    async fn alive(&mut self) {
        assert_eq!(self.x(0x02, &[]).await, vec![vec![ACK], vec![0x04, 0x21], vec![ACK]]);
    }
}

#[tokio::test(start_paused = true)]
async fn get_get_version_get_id() {
    let mut b = Bench::new().await;
    // AN2662 §3.4 (= AN3154 §3.2): ACK, N = 12, the version, 12 opcodes with Speed, ACK.
    let r = b.x(0x00, &[]).await;
    assert_eq!(r.len(), 16);
    assert_eq!(r[0], [ACK]);
    assert_eq!(r[1], [12], "N = bytes that follow - 1");
    assert_eq!(r[2], [0x20], "CAN protocol V2.0 (AN2606 Table 3, F446)");
    let cmds: Vec<u8> = r[3..15].iter().map(|f| f[0]).collect();
    assert_eq!(cmds, [0x00, 0x01, 0x02, 0x03, 0x11, 0x21, 0x31, 0x43, 0x63, 0x73, 0x82, 0x92], "bxCAN erase is 0x43");
    assert_eq!(r[15], [ACK]);
    // Get Version: the protocol version (AN2606 §4.2), not the bootloader ID 0x90.
    assert_eq!(b.x(0x01, &[]).await, vec![vec![ACK], vec![0x20], vec![0, 0], vec![ACK]]);
    b.alive().await;
    insta::assert_snapshot!("bxcan_get_version_id", b.tr.text());
}

#[tokio::test(start_paused = true)]
async fn write_acks_every_frame_then_the_write_and_reads_back() {
    let mut b = Bench::new().await;
    let data: Vec<u8> = (0..24u8).collect();
    let r = b.write(0x0800_4000, &data).await;
    // Command ACK, one ACK per 8-byte frame, and the final ACK after programming.
    assert_eq!(r, vec![vec![ACK], vec![ACK], vec![ACK], vec![ACK], vec![ACK]]);
    let r = b.x(0x11, &[0x08, 0x00, 0x40, 0x00, 23]).await;
    assert_eq!(r.first(), Some(&vec![ACK]));
    assert_eq!(r[1..4].concat(), data);
    assert_eq!(r.last(), Some(&vec![ACK]));
    insta::assert_snapshot!("bxcan_write_read", b.tr.text());
}

#[tokio::test(start_paused = true)]
async fn erase_sectors_and_global_erase() {
    let mut b = Bench::new().await;
    assert_eq!(b.write(0x0800_0000, &[1; 8]).await.len(), 3);
    assert_eq!(b.write(0x0800_4000, &[2; 8]).await.len(), 3);
    // Sector 1 (16 KiB, 400 ms at x8) only.
    let r = b.x_wait(0x43, &[0x01], Duration::from_millis(600)).await;
    assert_eq!(r, vec![vec![ACK], vec![ACK]]);
    {
        let st = b.twin.board().state();
        assert!(st.flash.is_blank(0x0800_4000, 0x4000));
        assert!(!st.flash.is_blank(0x0800_0000, 8));
    }
    // Mass erase: 16 s at x8.
    let r = b.x_wait(0x43, &[0xFF], Duration::from_secs(20)).await;
    assert_eq!(r, vec![vec![ACK], vec![ACK]]);
    assert!(b.twin.board().state().flash.is_blank(0x0800_0000, 0x8_0000));
}

#[tokio::test(start_paused = true)]
async fn malformed_requests_get_nack_and_change_nothing() {
    let mut b = Bench::new().await;
    assert_eq!(b.write(0x0800_0000, &[7; 16]).await.len(), 4);
    let before = fingerprint(&b.twin);
    let cases: Vec<(&str, u16, Vec<u8>)> = vec![
        ("read with a bad length", 0x11, vec![0x08, 0x00, 0x00]),
        ("read of a non-existent address", 0x11, vec![0x60, 0x00, 0x00, 0x00, 0x0F]),
        ("write with a bad length", 0x31, vec![0x08, 0x00]),
        ("write to a non-existent address", 0x31, vec![0x90, 0x00, 0x00, 0x00, 0x07]),
        ("erase of a non-existent sector", 0x43, vec![0x02, 0x0C]),
        ("erase with no sector", 0x43, vec![]),
        ("go to a non-existent address", 0x21, vec![0x60, 0x00, 0x00, 0x00]),
        ("unknown command", 0x44, vec![0xFF, 0xFF]),
    ];
    for (what, id, data) in cases {
        assert_eq!(b.x(id, &data).await, vec![vec![NACK]], "{what}");
        assert_eq!(fingerprint(&b.twin), before, "{what} changed state");
        b.alive().await;
    }
}

#[tokio::test(start_paused = true)]
async fn fd_frames_do_not_reach_a_bxcan_bootloader() {
    let twin = Twin::builtin("stm32f446re").unwrap();
    let mut rig = twin.rig();
    rom_up(&twin, &mut rig).await;
    let mut fd_tool = twin.attach_can("FD tool", bootproof_rig::can::Bitrates::fd(125_000, 1_000_000));
    let mut tr = Transcript::new();
    let r = exchange(&mut fd_tool, &mut tr, fd(0x02, &[]), Q).await;
    assert!(r.is_empty(), "a classic controller cannot take FD frames");
}

#[tokio::test(start_paused = true)]
async fn the_sync_frame_is_acked() {
    // AN2662 §3.2: "Synchronization byte, 0x79, is in the RX identifier and not in the data
    // field"; the bootloader answers ACK.
    let mut b = Bench::new().await;
    assert_eq!(b.x(0x79, &[]).await, vec![vec![ACK]]);
    b.alive().await;
}

#[tokio::test(start_paused = true)]
async fn speed_acks_at_the_old_rate_then_serves_at_the_new_one() {
    let mut b = Bench::new().await;
    // AN2662 §3.7: 0x02 = 250 kbit/s. The first ACK at 125 kbit/s; the second at 250 kbit/s,
    // which a 125 kbit/s host cannot receive.
    assert_eq!(b.x_wait(0x03, &[0x02], Duration::from_millis(20)).await, vec![vec![ACK]]);
    let mut fast =
        bootproof_rig::RigBuilder::new("fast", bootproof_fixtures::BoardProfile::builtin("stm32f446re").unwrap())
            .can(Box::new(b.twin.attach_can("host-250k", bootproof_rig::can::Bitrates::classic(250_000))))
            .build();
    let r = exchange(fast.can().unwrap(), &mut b.tr, classic(0x02, &[]), Q).await;
    assert_eq!(payload(&r), vec![vec![ACK], vec![0x04, 0x21], vec![ACK]], "Get ID at 250 kbit/s");
    // A code outside 1..=4: NACK, the rate stays.
    let r = exchange(fast.can().unwrap(), &mut b.tr, classic(0x03, &[0x07]), Q).await;
    assert_eq!(payload(&r), vec![vec![NACK]]);
}

#[tokio::test(start_paused = true)]
async fn write_protect_takes_the_count_then_the_sector_codes() {
    let mut b = Bench::new().await;
    // AN3154 §3.10: a frame with N (here 2), ACK; the sector codes; ACK; the option bytes reload.
    assert_eq!(b.x(0x63, &[0x02]).await, vec![vec![ACK]]);
    assert_eq!(b.x(0x04, &[0x05, 0x06]).await, vec![vec![ACK]]);
    bootproof_rig::time::sleep(Duration::from_millis(120)).await;
    let protected: Vec<bool> = (4..7).map(|s| b.twin.board().state().flash.is_protected(s)).collect();
    assert_eq!(protected, [false, true, true]);
    // A count of 0 is refused, nothing changes.
    let mut b = Bench::new().await;
    assert_eq!(b.x(0x63, &[0x00]).await, vec![vec![NACK]]);
    assert!(!(0..8).any(|s| b.twin.board().state().flash.is_protected(s)));
}
