//! AN3154: the ROM bootloader over classic CAN (bxCAN).
//!
//! 8-byte frames, 11-bit IDs equal to the command. The host opens with a synchronisation frame,
//! ID 0x79, which the bootloader ACKs (AN2662 §3.2). Get = ACK, N = 12 (bytes that follow minus
//! one), the protocol version (V2.0), one frame per opcode (12, with Speed), ACK. Speed (0x03) =
//! one byte, 1..=4 for 125/250/500/1000 kbit/s: ACK at the old rate, ACK at the new one. Write
//! Memory = command frame (address + N), ACK, then data frames of up to 8 bytes (any ID; 0x04
//! recommended) each ACKed, then a final ACK once written. Erase (0x43) = one frame: 0xFF for
//! a global erase, else up to 8 sector numbers; ACK, then ACK once erased. Write Protect = a
//! frame with the number of sectors, ACK, then frames with the sector codes, ACK, reset
//! (AN3154 §3.10).

use std::time::Duration;

use bootproof_rig::CanBus;
use bootproof_rig::can::{CanEvent, CanFrame, CanId};

use super::{ACK, After, EraseRequest, NACK, RomCore, commands, op, version};
use crate::bus::CanPort;

const WAIT: Duration = Duration::from_secs(3600);

struct Session {
    core: RomCore,
    port: CanPort,
}

impl Session {
    async fn send(&mut self, cmd: u8, data: &[u8]) -> bool {
        match CanFrame::classic(CanId::Standard(cmd as u16), data) {
            Ok(f) => self.port.send(&f).await.is_ok() && self.core.mcu.alive(),
            Err(_) => false,
        }
    }

    async fn ack(&mut self, cmd: u8) -> bool {
        self.send(cmd, &[ACK]).await
    }

    async fn nack(&mut self, cmd: u8) -> bool {
        self.send(cmd, &[NACK]).await
    }

    async fn next_frame(&mut self) -> Option<CanFrame> {
        loop {
            match self.port.recv(WAIT).await {
                Ok(CanEvent::Frame(f)) => return Some(f),
                _ => {
                    if !self.core.mcu.alive() {
                        return None;
                    }
                }
            }
        }
    }

    async fn reply(&mut self, cmd: u8, ack: bool) -> After {
        let sent = if ack { self.ack(cmd).await } else { self.nack(cmd).await };
        if sent { After::Continue } else { After::Stop }
    }

    async fn handle(&mut self, frame: CanFrame) -> After {
        let cmd = (frame.id().raw() & 0xFF) as u8;
        let data = frame.data().to_vec();
        let mcu = self.core.mcu.clone();
        let p = mcu.profile().clone();
        let protected = self.core.protected();
        let ok = match cmd {
            op::GET => {
                let cmds = commands(self.core.kind);
                let version = version(&p, self.core.kind);
                let mut ok = self.ack(cmd).await
                    && self.send(cmd, &[cmds.len() as u8]).await
                    && self.send(cmd, &[version]).await;
                for c in cmds {
                    ok = ok && self.send(cmd, &[c]).await;
                }
                ok && self.ack(cmd).await
            }
            op::CAN_SYNC => self.ack(cmd).await,
            op::SPEED => {
                let rate = match data.as_slice() {
                    [1] => 125_000,
                    [2] => 250_000,
                    [3] => 500_000,
                    [4] => 1_000_000,
                    _ => return self.reply(cmd, false).await,
                };
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                match mcu.can(bootproof_rig::can::Bitrates::classic(rate)) {
                    Ok(port) => self.port = port,
                    Err(_) => return After::Stop,
                }
                mcu.log(format!("ROM: bxCAN at {} kbit/s (Speed)", rate / 1000));
                self.ack(cmd).await
            }
            op::GET_VERSION => {
                self.ack(cmd).await
                    && self.send(cmd, &[version(&p, self.core.kind)]).await
                    && self.send(cmd, &[0x00, 0x00]).await
                    && self.ack(cmd).await
            }
            op::GET_ID => {
                let pid = p.identity.pid.to_be_bytes();
                self.ack(cmd).await && self.send(cmd, &pid).await && self.ack(cmd).await
            }
            op::READ => {
                if data.len() != 5 {
                    return self.reply(cmd, false).await;
                }
                let addr = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let len = data[4] as usize + 1;
                if protected || !self.core.readable(addr, len as u32) {
                    return self.reply(cmd, false).await;
                }
                let Some(bytes) = self.core.read(addr, len) else { return After::Stop };
                let mut ok = self.ack(cmd).await;
                for chunk in bytes.chunks(8) {
                    ok = ok && self.send(cmd, chunk).await;
                }
                ok && self.ack(cmd).await
            }
            op::WRITE => {
                if data.len() != 5 {
                    return self.reply(cmd, false).await;
                }
                let addr = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let len = data[4] as usize + 1;
                if protected || !self.core.write_target_ok(addr, len as u32) {
                    return self.reply(cmd, false).await;
                }
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                let mut payload = Vec::with_capacity(len);
                while payload.len() < len {
                    let Some(f) = self.next_frame().await else { return After::Stop };
                    let take = (len - payload.len()).min(f.data().len());
                    payload.extend_from_slice(&f.data()[..take]);
                    if !self.ack(cmd).await {
                        return After::Stop;
                    }
                }
                match self.core.write(addr, &payload).await {
                    Ok(ok) => return self.reply(cmd, ok).await,
                    Err(_) => return After::Stop,
                }
            }
            op::ERASE => {
                if data.is_empty() || protected {
                    return self.reply(cmd, false).await;
                }
                let req = if data == [0xFF] {
                    EraseRequest::Mass
                } else {
                    EraseRequest::Sectors(data.iter().map(|s| *s as u16).collect())
                };
                if !self.core.erase_ok(&req) {
                    return self.reply(cmd, false).await;
                }
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                match self.core.erase(&req).await {
                    Ok(ok) => return self.reply(cmd, ok).await,
                    Err(_) => return After::Stop,
                }
            }
            op::GO => {
                if data.len() != 4 {
                    return self.reply(cmd, false).await;
                }
                let addr = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                if protected || !self.core.go_target_ok(addr) {
                    return self.reply(cmd, false).await;
                }
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                return self.core.go(addr);
            }
            op::WRITE_PROTECT => {
                // The number of sectors (assumption `bxcan-write-protect-count`: the plain count,
                // AN3154's "0 < N ≤ 255"), then the sector codes in frames of up to 8.
                let n = match data.as_slice() {
                    [n] if *n > 0 && !protected => *n as usize,
                    _ => return self.reply(cmd, false).await,
                };
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                let mut sectors = Vec::with_capacity(n);
                while sectors.len() < n {
                    let Some(f) = self.next_frame().await else { return After::Stop };
                    let take = (n - sectors.len()).min(f.data().len());
                    sectors.extend_from_slice(&f.data()[..take]);
                }
                if !self.core.write_protect(&sectors) {
                    return self.reply(cmd, false).await;
                }
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                return self.core.option_reload().await;
            }
            op::WRITE_UNPROTECT => {
                if protected {
                    return self.reply(cmd, false).await;
                }
                self.core.write_unprotect();
                if !(self.ack(cmd).await && self.ack(cmd).await) {
                    return After::Stop;
                }
                return self.core.option_reload().await;
            }
            op::READOUT_PROTECT => {
                if protected {
                    return self.reply(cmd, false).await;
                }
                if mcu.set_rdp(crate::board::Rdp::Level1).is_err() || !(self.ack(cmd).await && self.ack(cmd).await) {
                    return After::Stop;
                }
                return self.core.option_reload().await;
            }
            op::READOUT_UNPROTECT => {
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                self.core.write_unprotect();
                if mcu.mass_erase().await.is_err()
                    || mcu.set_rdp(crate::board::Rdp::Level0).is_err()
                    || !self.ack(cmd).await
                {
                    return After::Stop;
                }
                return self.core.option_reload().await;
            }
            _ => self.nack(cmd).await,
        };
        if ok { After::Continue } else { After::Stop }
    }
}

/// Serve commands on bxCAN, starting with the frame that selected the interface.
pub(super) async fn serve(core: RomCore, port: CanPort, first: CanFrame) {
    let mut s = Session { core, port };
    let mut next = Some(first);
    loop {
        let frame = match next.take() {
            Some(f) => f,
            None => match s.next_frame().await {
                Some(f) => f,
                None => return,
            },
        };
        if s.core.think().await.is_err() || matches!(s.handle(frame).await, After::Stop) || !s.core.mcu.alive() {
            return;
        }
    }
}
