//! FDCAN (AN5405) and bxCAN (AN3154) framing of the ROM bootloader client.
//!
//! Requests go out with the command as the standard ID (FD with BRS on FDCAN, classic on bxCAN).
//! Replies are matched on the low 8 bits of their ID, which accepts both the bare command ID the
//! H723 uses and 0x111-style IDs. Frames for other IDs (an application's traffic) are ignored.

use std::time::Duration;

use bootproof_rig::can::{CanEvent, CanFrame, CanId};
use bootproof_rig::stm32rom::{ACK, EraseRequest, NACK, op};
use bootproof_rig::{BusError, CanError};

use super::{GetInfo, Link, RESPONSE, RomClient, RomError};

impl RomClient<'_> {
    fn can_parts(&mut self) -> (&mut dyn bootproof_rig::CanBus, bool) {
        match &mut self.link {
            Link::Can { bus, fd } => (&mut **bus, *fd),
            Link::Usart(_) => unreachable!("CAN framing on a USART link"),
        }
    }
}

pub(super) async fn send(c: &mut RomClient<'_>, cmd: u8, data: &[u8]) -> Result<(), RomError> {
    let (bus, fd) = c.can_parts();
    let id = CanId::Standard(cmd as u16);
    let f = if fd { CanFrame::fd_padded(id, data, true, 0xFF)? } else { CanFrame::classic(id, data)? };
    bus.send(&f).await?;
    Ok(())
}

/// The next reply frame's data for `cmd`.
async fn reply(c: &mut RomClient<'_>, cmd: u8, stage: &'static str, timeout: Duration) -> Result<Vec<u8>, RomError> {
    let deadline = bootproof_rig::time::Instant::now() + timeout;
    let rates = c.can_parts().0.bitrates();
    loop {
        let left = deadline.saturating_duration_since(bootproof_rig::time::Instant::now());
        match c.can_parts().0.recv(left).await {
            Ok(CanEvent::Frame(f)) if f.id().raw() & 0xFF == cmd as u32 && !f.is_remote() => {
                return Ok(f.data().to_vec());
            }
            Ok(CanEvent::Frame(_)) => {}
            Ok(CanEvent::Error(BusError::NoAck)) => {
                return Err(RomError::NoAck { command: op::name(cmd), rates: rates.to_string() });
            }
            Ok(CanEvent::Error(e)) => tracing::debug!("bus error while waiting for {}: {e}", op::name(cmd)),
            Err(CanError::Timeout(_)) => return Err(c.timeout(op::name(cmd), stage, timeout)),
            Err(e) => return Err(e.into()),
        }
    }
}

async fn ack(
    c: &mut RomClient<'_>,
    cmd: u8,
    stage: &'static str,
    timeout: Duration,
    hint: Option<&'static str>,
) -> Result<(), RomError> {
    let d = reply(c, cmd, stage, timeout).await?;
    match d.first() {
        Some(&ACK) => Ok(()),
        Some(&NACK) => Err(RomError::Nack { command: op::name(cmd), stage, hint }),
        _ => Err(RomError::Protocol {
            command: op::name(cmd),
            got: format!("{d:02X?} where ACK/NACK was expected ({stage})"),
        }),
    }
}

/// bxCAN: the synchronisation frame, ID 0x79 (AN2662 §3.2: "Synchronization byte, 0x79, is in
/// the RX identifier and not in the data field"), answered with ACK. A bootloader already in a
/// session may NACK it; either answer shows it listens at this rate.
pub(super) async fn sync(c: &mut RomClient<'_>) -> Result<(), RomError> {
    send(c, op::CAN_SYNC, &[]).await?;
    match ack(c, op::CAN_SYNC, "synchronisation", RESPONSE, None).await {
        Ok(()) | Err(RomError::Nack { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(super) async fn get(c: &mut RomClient<'_>) -> Result<GetInfo, RomError> {
    send(c, op::GET, &[]).await?;
    ack(c, op::GET, "command", RESPONSE, None).await?;
    let n = one(c, op::GET, "count").await? as usize;
    let protocol_version = one(c, op::GET, "protocol version").await?;
    let mut commands = Vec::with_capacity(n);
    for _ in 0..n {
        commands.push(one(c, op::GET, "command list").await?);
    }
    ack(c, op::GET, "end", RESPONSE, None).await?;
    Ok(GetInfo { protocol_version, commands })
}

async fn one(c: &mut RomClient<'_>, cmd: u8, stage: &'static str) -> Result<u8, RomError> {
    let d = reply(c, cmd, stage, RESPONSE).await?;
    d.first()
        .copied()
        .ok_or_else(|| RomError::Protocol { command: op::name(cmd), got: format!("empty frame ({stage})") })
}

pub(super) async fn get_version(c: &mut RomClient<'_>) -> Result<u8, RomError> {
    send(c, op::GET_VERSION, &[]).await?;
    ack(c, op::GET_VERSION, "command", RESPONSE, None).await?;
    let v = one(c, op::GET_VERSION, "version").await?;
    reply(c, op::GET_VERSION, "option bytes", RESPONSE).await?;
    ack(c, op::GET_VERSION, "end", RESPONSE, None).await?;
    Ok(v)
}

pub(super) async fn get_id(c: &mut RomClient<'_>) -> Result<u16, RomError> {
    send(c, op::GET_ID, &[]).await?;
    ack(c, op::GET_ID, "command", RESPONSE, None).await?;
    let d = reply(c, op::GET_ID, "PID", RESPONSE).await?;
    if d.len() < 2 {
        return Err(RomError::Protocol { command: "Get ID", got: format!("{d:02X?}: expected 2 PID bytes") });
    }
    ack(c, op::GET_ID, "end", RESPONSE, None).await?;
    Ok(u16::from_be_bytes([d[0], d[1]]))
}

pub(super) async fn read_memory(c: &mut RomClient<'_>, addr: u32, len: usize) -> Result<Vec<u8>, RomError> {
    let mut req = addr.to_be_bytes().to_vec();
    req.push((len - 1) as u8);
    send(c, op::READ, &req).await?;
    match ack(c, op::READ, "address", RESPONSE, Some("readout protection, or the address is not readable")).await {
        Ok(()) => {}
        Err(RomError::Timeout { .. }) if c.can_parts().1 => {
            // The H723 FDCAN bootloader goes silent on reads under readout protection (mios).
            // If it still answers Get ID, that is what happened.
            return match get_id(c).await {
                Ok(_) => Err(RomError::ReadoutProtected { what: format!("Read Memory at {addr:#010x}") }),
                Err(_) => Err(c.timeout("Read Memory", "address", RESPONSE)),
            };
        }
        Err(e) => return Err(e),
    }
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let d = reply(c, op::READ, "data", RESPONSE).await?;
        let take = (len - out.len()).min(d.len());
        out.extend_from_slice(&d[..take]);
    }
    ack(c, op::READ, "end", RESPONSE, None).await?;
    Ok(out)
}

pub(super) async fn write_memory(c: &mut RomClient<'_>, addr: u32, data: &[u8]) -> Result<(), RomError> {
    let fd = c.can_parts().1;
    let mut req = addr.to_be_bytes().to_vec();
    req.push((data.len() - 1) as u8);
    send(c, op::WRITE, &req).await?;
    ack(c, op::WRITE, "address", RESPONSE, Some("readout protection, or the address is not writable")).await?;
    let chunk = if fd { 64 } else { 8 };
    for block in data.chunks(chunk) {
        send(c, op::WRITE, block).await?;
        if !fd {
            // AN3154: one ACK per data frame.
            ack(c, op::WRITE, "data frame", RESPONSE, None).await.map_err(|e| match e {
                RomError::Nack { .. } => {
                    RomError::Nack { command: "Write Memory", stage: "data frame", hint: Some("frame rejected") }
                }
                e => e,
            })?;
        }
    }
    // Programming: 256 bytes of flash words take about a millisecond; allow generously.
    let program = Duration::from_micros(
        c.board.flash.program_us as u64 * data.len().div_ceil(c.board.flash.word as usize) as u64,
    );
    ack(
        c,
        op::WRITE,
        "write",
        RESPONSE + program * 4,
        Some("write-protected sector, flash error, or an earlier unaligned write"),
    )
    .await
}

pub(super) async fn erase(c: &mut RomClient<'_>, req: &EraseRequest, timeout: Duration) -> Result<(), RomError> {
    let fd = c.can_parts().1;
    if fd {
        // AN5405: a 2-byte count; for a list, the bootloader ACKs twice, then takes the list.
        let count: u16 = match req {
            EraseRequest::Mass => 0xFFFF,
            EraseRequest::Bank(1) => 0xFFFE,
            EraseRequest::Bank(_) => 0xFFFD,
            EraseRequest::Sectors(l) => l.len() as u16,
        };
        send(c, op::EXT_ERASE, &count.to_be_bytes()).await?;
        ack(c, op::EXT_ERASE, "count", RESPONSE, Some("readout protection, a bad count, or a write-protected sector"))
            .await?;
        if let EraseRequest::Sectors(list) = req {
            ack(c, op::EXT_ERASE, "ready for the sector list", RESPONSE, None).await?;
            let bytes: Vec<u8> = list.iter().flat_map(|s| s.to_be_bytes()).collect();
            if bytes.len() > 64 {
                return Err(RomError::Invalid(format!(
                    "{} sectors do not fit one FDCAN erase frame (max 32)",
                    list.len()
                )));
            }
            send(c, op::EXT_ERASE, &bytes).await?;
        }
        ack(c, op::EXT_ERASE, "erase", timeout, Some("a sector does not exist or is write-protected")).await
    } else {
        // AN3154: one frame, 0xFF = global erase, else up to 8 sector numbers.
        let data: Vec<u8> = match req {
            EraseRequest::Mass | EraseRequest::Bank(_) => vec![0xFF],
            EraseRequest::Sectors(l) if l.len() <= 8 && l.iter().all(|s| *s < 0xFF) => {
                l.iter().map(|s| *s as u8).collect()
            }
            EraseRequest::Sectors(l) => {
                return Err(RomError::Invalid(format!("{} sectors do not fit one bxCAN erase frame (max 8)", l.len())));
            }
        };
        send(c, op::ERASE, &data).await?;
        ack(c, op::ERASE, "command", RESPONSE, Some("readout protection, a bad sector, or a write-protected sector"))
            .await?;
        ack(c, op::ERASE, "erase", timeout, None).await
    }
}

/// A command with `data` answered by `acks` ACK frames (Go, protection commands).
pub(super) async fn simple(c: &mut RomClient<'_>, cmd: u8, data: &[u8], acks: usize) -> Result<(), RomError> {
    send(c, cmd, data).await?;
    for i in 0..acks {
        let stage = if i == 0 { "command" } else { "completion" };
        ack(c, cmd, stage, RESPONSE, Some("readout protection, or a bad address")).await?;
    }
    Ok(())
}

pub(super) async fn readout_unprotect(c: &mut RomClient<'_>, timeout: Duration) -> Result<(), RomError> {
    send(c, op::READOUT_UNPROTECT, &[]).await?;
    ack(c, op::READOUT_UNPROTECT, "command", RESPONSE, None).await?;
    ack(c, op::READOUT_UNPROTECT, "mass erase", timeout, None).await
}
