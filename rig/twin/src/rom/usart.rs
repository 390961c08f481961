//! AN3155: the ROM bootloader over USART (8E1, autobaud on 0x7F).
//!
//! Each command is its opcode followed by the complement; addresses and data blocks carry an
//! XOR checksum; lengths are sent as N = count − 1. Extended Erase (0x44) takes a 2-byte count
//! (0xFFFF mass, 0xFFFE bank 1, 0xFFFD bank 2) and 2-byte page numbers. There is no inter-byte
//! timeout: a half-sent command waits for its remaining bytes.

use std::collections::VecDeque;
use std::time::Duration;

use super::{ACK, After, EraseRequest, NACK, RomCore, commands, op, version};
use bootproof_rig::stm32rom::xor;

const WAIT: Duration = Duration::from_secs(3600);

struct Session {
    core: RomCore,
    input: VecDeque<u8>,
}

impl Session {
    async fn byte(&mut self) -> Option<u8> {
        loop {
            if let Some(b) = self.input.pop_front() {
                return Some(b);
            }
            let more = self.core.mcu.uart_read(256, WAIT).await.ok()?;
            self.input.extend(more);
        }
    }

    async fn bytes(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.byte().await?);
        }
        Some(out)
    }

    async fn send(&mut self, data: &[u8]) -> bool {
        self.core.mcu.uart_write(data).await.is_ok()
    }

    async fn reply(&mut self, ack: bool) -> After {
        if self.send(&[if ack { ACK } else { NACK }]).await { After::Continue } else { After::Stop }
    }

    /// Address + checksum. `None`: session over; `Some(None)`: bad checksum.
    async fn address(&mut self) -> Option<Option<u32>> {
        let b = self.bytes(5).await?;
        if xor(&b[..4]) != b[4] {
            return Some(None);
        }
        Some(Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    }

    async fn handle(&mut self, cmd: u8) -> After {
        let mcu = self.core.mcu.clone();
        let p = mcu.profile().clone();
        let protected = self.core.protected();
        match cmd {
            op::GET => {
                let cmds = commands(self.core.kind);
                let version = version(&p, self.core.kind);
                let mut out = vec![ACK, cmds.len() as u8, version];
                out.extend_from_slice(&cmds);
                out.push(ACK);
                if self.send(&out).await { After::Continue } else { After::Stop }
            }
            op::GET_VERSION => {
                let out = [ACK, version(&p, self.core.kind), 0x00, 0x00, ACK];
                if self.send(&out).await { After::Continue } else { After::Stop }
            }
            op::GET_ID => {
                let pid = p.identity.pid.to_be_bytes();
                if self.send(&[ACK, 0x01, pid[0], pid[1], ACK]).await { After::Continue } else { After::Stop }
            }
            op::READ => {
                if protected {
                    return self.reply(false).await;
                }
                if !self.send(&[ACK]).await {
                    return After::Stop;
                }
                let Some(addr) = self.address().await else { return After::Stop };
                let Some(addr) = addr else { return self.reply(false).await };
                // Validate the address now; the length comes next.
                if !self.core.readable(addr, 1) {
                    return self.reply(false).await;
                }
                if !self.send(&[ACK]).await {
                    return After::Stop;
                }
                let Some(n) = self.bytes(2).await else { return After::Stop };
                if n[0] ^ n[1] != 0xFF || !self.core.readable(addr, n[0] as u32 + 1) {
                    return self.reply(false).await;
                }
                let Some(data) = self.core.read(addr, n[0] as usize + 1) else { return After::Stop };
                let mut out = vec![ACK];
                out.extend_from_slice(&data);
                if self.send(&out).await { After::Continue } else { After::Stop }
            }
            op::GO => {
                if protected {
                    return self.reply(false).await;
                }
                if !self.send(&[ACK]).await {
                    return After::Stop;
                }
                let Some(addr) = self.address().await else { return After::Stop };
                match addr {
                    Some(a) if self.core.go_target_ok(a) => {
                        if !self.send(&[ACK]).await {
                            return After::Stop;
                        }
                        self.core.go(a)
                    }
                    _ => self.reply(false).await,
                }
            }
            op::WRITE => {
                if protected {
                    return self.reply(false).await;
                }
                if !self.send(&[ACK]).await {
                    return After::Stop;
                }
                let Some(addr) = self.address().await else { return After::Stop };
                let Some(addr) = addr.filter(|a| self.core.write_target_ok(*a, 1)) else {
                    return self.reply(false).await;
                };
                if !self.send(&[ACK]).await {
                    return After::Stop;
                }
                let Some(n) = self.byte().await else { return After::Stop };
                let Some(data) = self.bytes(n as usize + 1).await else { return After::Stop };
                let Some(cs) = self.byte().await else { return After::Stop };
                if cs != n ^ xor(&data) || !self.core.write_target_ok(addr, data.len() as u32) {
                    return self.reply(false).await;
                }
                match self.core.write(addr, &data).await {
                    Ok(ok) => self.reply(ok).await,
                    Err(_) => After::Stop,
                }
            }
            op::EXT_ERASE => {
                if protected {
                    return self.reply(false).await;
                }
                if !self.send(&[ACK]).await {
                    return After::Stop;
                }
                let Some(nb) = self.bytes(2).await else { return After::Stop };
                let n = u16::from_be_bytes([nb[0], nb[1]]);
                let req = if n >= 0xFFF0 {
                    let Some(cs) = self.byte().await else { return After::Stop };
                    if cs != nb[0] ^ nb[1] {
                        return self.reply(false).await;
                    }
                    match n {
                        0xFFFF => EraseRequest::Mass,
                        0xFFFE => EraseRequest::Bank(1),
                        0xFFFD => EraseRequest::Bank(2),
                        _ => return self.reply(false).await,
                    }
                } else {
                    let count = n as usize + 1;
                    let Some(pages) = self.bytes(2 * count).await else { return After::Stop };
                    let Some(cs) = self.byte().await else { return After::Stop };
                    if cs != xor(&nb) ^ xor(&pages) {
                        return self.reply(false).await;
                    }
                    EraseRequest::Sectors(pages.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect())
                };
                if !self.core.erase_ok(&req) {
                    return self.reply(false).await;
                }
                match self.core.erase(&req).await {
                    Ok(ok) => self.reply(ok).await,
                    Err(_) => After::Stop,
                }
            }
            op::WRITE_PROTECT => {
                if protected {
                    return self.reply(false).await;
                }
                if !self.send(&[ACK]).await {
                    return After::Stop;
                }
                let Some(n) = self.byte().await else { return After::Stop };
                let Some(sectors) = self.bytes(n as usize + 1).await else { return After::Stop };
                let Some(cs) = self.byte().await else { return After::Stop };
                if cs != n ^ xor(&sectors) || !self.core.write_protect(&sectors) {
                    return self.reply(false).await;
                }
                if !self.send(&[ACK]).await {
                    return After::Stop;
                }
                self.core.option_reload().await
            }
            op::WRITE_UNPROTECT => {
                if protected {
                    return self.reply(false).await;
                }
                self.core.write_unprotect();
                if !self.send(&[ACK, ACK]).await {
                    return After::Stop;
                }
                self.core.option_reload().await
            }
            op::READOUT_PROTECT => {
                if protected {
                    return self.reply(false).await;
                }
                if mcu.set_rdp(crate::board::Rdp::Level1).is_err() || !self.send(&[ACK, ACK]).await {
                    return After::Stop;
                }
                self.core.option_reload().await
            }
            op::READOUT_UNPROTECT => {
                if !self.send(&[ACK]).await {
                    return After::Stop;
                }
                self.core.write_unprotect();
                if mcu.mass_erase().await.is_err()
                    || mcu.set_rdp(crate::board::Rdp::Level0).is_err()
                    || !self.send(&[ACK]).await
                {
                    return After::Stop;
                }
                self.core.option_reload().await
            }
            _ => self.reply(false).await,
        }
    }
}

/// Serve commands on USART after the 0x7F sync byte.
pub(super) async fn serve(core: RomCore) {
    let mut s = Session { core, input: VecDeque::new() };
    // AN2606 Table 228: the USART's configuration time between the 0x7F and the ACK.
    let setup = Duration::from_micros(s.core.mcu.profile().rom.latency.usart_setup_us as u64);
    if s.core.mcu.sleep(setup).await.is_err() || !s.send(&[ACK]).await {
        return;
    }
    loop {
        let Some(cmd) = s.byte().await else { return };
        let Some(complement) = s.byte().await else { return };
        if s.core.think().await.is_err() {
            return;
        }
        let after = if cmd ^ complement != 0xFF { s.reply(false).await } else { s.handle(cmd).await };
        if matches!(after, After::Stop) || !s.core.mcu.alive() {
            return;
        }
    }
}
