//! Raw protocol helpers for the twin's tests: frames and bytes exactly as the application notes
//! define them, independent of bootproof's own ROM client.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::Duration;

use bootproof_fixtures::Level;
use bootproof_rig::console::SerialConfig;
use bootproof_rig::time::Instant;
use bootproof_rig::{CanBus, CanEvent, CanFrame, CanId, Rig};
use bootproof_twin::Twin;

pub const ACK: u8 = 0x79;
pub const NACK: u8 = 0x1F;

/// A transcript of an exchange, for snapshots: one line per frame or byte burst, with the
/// virtual time in µs since the transcript started.
#[derive(Default)]
pub struct Transcript {
    start: Option<Instant>,
    pub lines: Vec<String>,
}

impl Transcript {
    pub fn new() -> Self {
        Transcript { start: Some(Instant::now()), lines: Vec::new() }
    }
    fn t(&self) -> u128 {
        self.start.map(|s| s.elapsed().as_micros()).unwrap_or(0)
    }
    pub fn tx(&mut self, f: &CanFrame) {
        let line = format!("{:>9} us  -> {}", self.t(), f.to_string().trim_start());
        self.lines.push(line);
    }
    pub fn rx(&mut self, f: &CanFrame) {
        let line = format!("{:>9} us  <- {}", self.t(), f.to_string().trim_start());
        self.lines.push(line);
    }
    pub fn bytes(&mut self, dir: &str, b: &[u8]) {
        let mut s = format!("{:>9} us  {dir} ", self.t());
        for x in b {
            let _ = write!(s, " {x:02X}");
        }
        self.lines.push(s);
    }
    pub fn note(&mut self, n: &str) {
        let line = format!("{:>9} us  -- {n}", self.t());
        self.lines.push(line);
    }
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

pub fn fd(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::fd_padded(CanId::Standard(id), data, true, 0).unwrap()
}

pub fn classic(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::classic(CanId::Standard(id), data).unwrap()
}

/// Send a frame, then collect frames until `quiet` passes without one.
pub async fn exchange(can: &mut dyn CanBus, tr: &mut Transcript, f: CanFrame, quiet: Duration) -> Vec<CanFrame> {
    tr.tx(&f);
    can.send(&f).await.unwrap();
    collect(can, tr, quiet).await
}

pub async fn collect(can: &mut dyn CanBus, tr: &mut Transcript, quiet: Duration) -> Vec<CanFrame> {
    let mut out = Vec::new();
    while let Ok(ev) = can.recv(quiet).await {
        if let CanEvent::Frame(f) = ev {
            tr.rx(&f);
            out.push(f);
        }
    }
    out
}

/// Data bytes of the frames, flattened.
pub fn payload(frames: &[CanFrame]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| f.data().to_vec()).collect()
}

/// Power the twin with BOOT0 high and wait for the ROM bootloader.
pub async fn rom_up(twin: &Twin, rig: &mut Rig) {
    rig.boot0().unwrap().set_boot0(Level::High).await.unwrap();
    rig.power().unwrap().power_on().await.unwrap();
    bootproof_rig::time::sleep(Duration::from_micros(twin.board().profile().rom.startup_us as u64 + 1000)).await;
}

/// Flash contents, word states and protection: what a malformed request must not change.
pub fn fingerprint(twin: &Twin) -> (u64, Vec<bool>, String) {
    let st = twin.board().state();
    let p = twin.board().profile();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in st.flash.raw(p.flash.base, p.flash.size() as usize) {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    let mut a = p.flash.base;
    while a < p.flash.end() {
        h = (h ^ st.flash.word_state(a) as u64).wrapping_mul(0x100000001b3);
        a += p.flash.word;
    }
    let wrp = (0..p.flash.sector_list().len() as u32).map(|s| st.flash.is_protected(s)).collect();
    (h, wrp, format!("{:?}", st.rdp))
}

/// USART: write bytes, then read until `quiet` passes.
pub async fn usart_xfer(rig: &mut Rig, tr: &mut Transcript, out: &[u8], quiet: Duration) -> Vec<u8> {
    let port = rig.console().unwrap();
    if !out.is_empty() {
        tr.bytes("->", out);
        port.write(out).await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = port.raw().read(&mut buf, quiet).await {
        tr.bytes("<-", &buf[..n]);
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// USART: sync at 8E1.
pub async fn usart_sync(rig: &mut Rig, tr: &mut Transcript) -> Vec<u8> {
    rig.console().unwrap().configure(SerialConfig::e81(115_200)).await.unwrap();
    usart_xfer(rig, tr, &[0x7F], Duration::from_millis(5)).await
}

pub fn xor(b: &[u8]) -> u8 {
    b.iter().fold(0, |a, x| a ^ x)
}

pub fn addr_cs(addr: u32) -> Vec<u8> {
    let mut v = addr.to_be_bytes().to_vec();
    v.push(xor(&v));
    v
}
