//! AN5405: the ROM bootloader over FDCAN.
//!
//! FD frames with BRS, 11-bit IDs; the low 8 bits of the ID are the command. Replies use the
//! command as their ID (assumption `fdcan-response-id`). Framing as observed on H723 (mios):
//! Get = ACK, count, protocol version, one frame per opcode, ACK; Write Memory = command frame,
//! ACK, 64-byte data frames, one ACK at the end; Erase = count frame, ACK, (for a sector list:
//! ACK, then the list as 2-byte big-endian numbers), ACK when done.

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
        let frame = match CanFrame::fd_padded(CanId::Standard(cmd as u16), data, true, 0x00) {
            Ok(f) => f,
            Err(_) => return false,
        };
        self.port.send(&frame).await.is_ok() && self.core.mcu.alive()
    }

    async fn ack(&mut self, cmd: u8) -> bool {
        self.send(cmd, &[ACK]).await
    }

    async fn nack(&mut self, cmd: u8) -> bool {
        self.send(cmd, &[NACK]).await
    }

    /// The next data frame (any ID), or `None` if the bootloader is gone.
    async fn next_frame(&mut self) -> Option<CanFrame> {
        loop {
            match self.port.recv(WAIT).await {
                Ok(CanEvent::Frame(f)) => return Some(f),
                Ok(CanEvent::Error(_)) | Err(_) => {
                    if !self.core.mcu.alive() {
                        return None;
                    }
                }
            }
        }
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
                    return self.reply_nack(cmd).await;
                }
                let addr = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let len = data[4] as usize + 1;
                if protected {
                    // Observed on H723: the bootloader bus-faults silently (assumption rdp-read).
                    mcu.log("ROM: Read Memory under readout protection: no reply");
                    return After::Continue;
                }
                if !self.core.readable(addr, len as u32) {
                    return self.reply_nack(cmd).await;
                }
                let Some(bytes) = self.core.read(addr, len) else { return After::Stop };
                let mut ok = self.ack(cmd).await;
                for chunk in bytes.chunks(64) {
                    ok = ok && self.send(cmd, chunk).await;
                }
                ok && self.ack(cmd).await
            }
            op::WRITE => {
                if data.len() != 5 {
                    return self.reply_nack(cmd).await;
                }
                let addr = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let len = data[4] as usize + 1;
                if protected || !self.core.write_target_ok(addr, len as u32) {
                    return self.reply_nack(cmd).await;
                }
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                let mut payload = Vec::with_capacity(len);
                while payload.len() < len {
                    let Some(f) = self.next_frame().await else { return After::Stop };
                    let take = (len - payload.len()).min(f.data().len());
                    payload.extend_from_slice(&f.data()[..take]);
                }
                match self.core.write(addr, &payload).await {
                    Ok(true) => self.ack(cmd).await,
                    Ok(false) => self.nack(cmd).await,
                    Err(_) => return After::Stop,
                }
            }
            op::EXT_ERASE => {
                if data.len() != 2 || protected {
                    return self.reply_nack(cmd).await;
                }
                let count = u16::from_be_bytes([data[0], data[1]]);
                let req = match count {
                    0xFFFF => EraseRequest::Mass,
                    0xFFFE => EraseRequest::Bank(1),
                    0xFFFD => EraseRequest::Bank(2),
                    n if n == 0 || n as usize > p.flash.sector_list().len() => return self.reply_nack(cmd).await,
                    n => {
                        if !(self.ack(cmd).await && self.ack(cmd).await) {
                            return After::Stop;
                        }
                        let Some(list) = self.next_frame().await else { return After::Stop };
                        let d = list.data();
                        if d.len() < 2 * n as usize {
                            return self.reply_nack(cmd).await;
                        }
                        let sectors = d[..2 * n as usize].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                        let req = EraseRequest::Sectors(sectors);
                        if !self.core.erase_ok(&req) {
                            return self.reply_nack(cmd).await;
                        }
                        return match self.core.erase(&req).await {
                            Ok(true) => self.reply_ack(cmd).await,
                            Ok(false) => self.reply_nack(cmd).await,
                            Err(_) => After::Stop,
                        };
                    }
                };
                if !self.core.erase_ok(&req) {
                    return self.reply_nack(cmd).await;
                }
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                match self.core.erase(&req).await {
                    Ok(true) => self.ack(cmd).await,
                    Ok(false) => self.nack(cmd).await,
                    Err(_) => return After::Stop,
                }
            }
            op::GO => {
                if data.len() != 4 {
                    return self.reply_nack(cmd).await;
                }
                let addr = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                if protected || !self.core.go_target_ok(addr) {
                    return self.reply_nack(cmd).await;
                }
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                return self.core.go(addr);
            }
            op::WRITE_PROTECT => {
                let n = data.first().copied().unwrap_or(0) as usize;
                if protected || n == 0 || data.len() < 1 + n || !self.core.write_protect(&data[1..1 + n]) {
                    return self.reply_nack(cmd).await;
                }
                if !(self.ack(cmd).await && self.ack(cmd).await) {
                    return After::Stop;
                }
                return self.core.option_reload().await;
            }
            op::WRITE_UNPROTECT => {
                if protected {
                    return self.reply_nack(cmd).await;
                }
                self.core.write_unprotect();
                if !(self.ack(cmd).await && self.ack(cmd).await) {
                    return After::Stop;
                }
                return self.core.option_reload().await;
            }
            op::READOUT_PROTECT => {
                if protected {
                    return self.reply_nack(cmd).await;
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
                if mcu.mass_erase().await.is_err() || mcu.set_rdp(crate::board::Rdp::Level0).is_err() {
                    return After::Stop;
                }
                if !self.ack(cmd).await {
                    return After::Stop;
                }
                return self.core.option_reload().await;
            }
            _ => self.nack(cmd).await,
        };
        if ok { After::Continue } else { After::Stop }
    }

    async fn reply_nack(&mut self, cmd: u8) -> After {
        if self.nack(cmd).await { After::Continue } else { After::Stop }
    }

    async fn reply_ack(&mut self, cmd: u8) -> After {
        if self.ack(cmd).await { After::Continue } else { After::Stop }
    }
}

/// Serve commands on FDCAN, starting with the frame that selected the interface.
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
