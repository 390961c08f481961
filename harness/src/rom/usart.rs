//! USART (AN3155) framing of the ROM bootloader client: 8E1, 0x7F sync, command + complement,
//! XOR checksums, N = count − 1.

use std::time::Duration;

use bootproof_rig::console::SerialConfig;
use bootproof_rig::stm32rom::{ACK, EraseRequest, NACK, SYNC, op, xor};

use super::{GetInfo, Link, RESPONSE, RomClient, RomError};

impl RomClient<'_> {
    fn port(&mut self) -> &mut bootproof_rig::ConsolePort {
        match &mut self.link {
            Link::Usart(p) => p,
            Link::Can { .. } => unreachable!("USART framing on a CAN link"),
        }
    }
}

async fn write(c: &mut RomClient<'_>, bytes: &[u8]) -> Result<(), RomError> {
    Ok(c.port().write(bytes).await?)
}

async fn read(
    c: &mut RomClient<'_>,
    n: usize,
    command: &'static str,
    stage: &'static str,
    timeout: Duration,
) -> Result<Vec<u8>, RomError> {
    match c.port().read_exact(n, timeout).await {
        Ok(b) => Ok(b),
        Err(bootproof_rig::ConsoleError::Timeout { .. }) => Err(c.timeout(command, stage, timeout)),
        Err(e) => Err(e.into()),
    }
}

async fn ack(
    c: &mut RomClient<'_>,
    cmd: u8,
    stage: &'static str,
    timeout: Duration,
    hint: Option<&'static str>,
) -> Result<(), RomError> {
    let b = read(c, 1, op::name(cmd), stage, timeout).await?;
    match b[0] {
        ACK => Ok(()),
        NACK => Err(RomError::Nack { command: op::name(cmd), stage, hint }),
        x => Err(RomError::Protocol {
            command: op::name(cmd),
            got: format!("{x:#04x} where ACK/NACK was expected ({stage})"),
        }),
    }
}

/// Set 8E1, send 0x7F, expect ACK. Only 0x7F ever goes out before the bootloader has answered:
/// any other first byte would make its autobaud measure a wrong rate, kept until reset (AN2606
/// §99.2, "Receiving characters different from 0x7F … causes bootloader to start communication
/// using a wrong baudrate"). Without an answer, a second 0x7F: a bootloader still starting
/// syncs on it (ACK); one synced earlier took the first 0x7F as a command byte and now NACKs a
/// complement that does not match. Either answer proves a bootloader at this rate.
pub(super) async fn sync(c: &mut RomClient<'_>) -> Result<(), RomError> {
    let baud = c.port().config().baud;
    c.port().configure(SerialConfig::e81(baud)).await?;
    c.port().discard_input().await?;
    let wait = Duration::from_millis(100);
    for _ in 0..2 {
        write(c, &[SYNC]).await?;
        match read(c, 1, "sync (0x7F)", "autobaud", wait).await {
            Ok(b) if b[0] == ACK || b[0] == NACK => return Ok(()),
            Ok(b) => return Err(RomError::Protocol { command: "sync (0x7F)", got: format!("{:#04x}", b[0]) }),
            Err(RomError::Timeout { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Err(c.timeout("sync (0x7F)", "autobaud", wait * 2))
}

async fn command(c: &mut RomClient<'_>, cmd: u8, hint: Option<&'static str>) -> Result<(), RomError> {
    write(c, &[cmd, !cmd]).await?;
    ack(c, cmd, "command", RESPONSE, hint).await
}

pub(super) async fn get(c: &mut RomClient<'_>) -> Result<GetInfo, RomError> {
    command(c, op::GET, None).await?;
    let n = read(c, 1, "Get", "count", RESPONSE).await?[0] as usize;
    let body = read(c, n + 1, "Get", "list", RESPONSE).await?;
    ack(c, op::GET, "end", RESPONSE, None).await?;
    Ok(GetInfo { protocol_version: body[0], commands: body[1..].to_vec() })
}

pub(super) async fn get_version(c: &mut RomClient<'_>) -> Result<u8, RomError> {
    command(c, op::GET_VERSION, None).await?;
    let b = read(c, 3, "Get Version", "version", RESPONSE).await?;
    ack(c, op::GET_VERSION, "end", RESPONSE, None).await?;
    Ok(b[0])
}

pub(super) async fn get_id(c: &mut RomClient<'_>) -> Result<u16, RomError> {
    command(c, op::GET_ID, None).await?;
    let n = read(c, 1, "Get ID", "count", RESPONSE).await?[0] as usize;
    let pid = read(c, n + 1, "Get ID", "PID", RESPONSE).await?;
    ack(c, op::GET_ID, "end", RESPONSE, None).await?;
    if pid.len() != 2 {
        return Err(RomError::Protocol { command: "Get ID", got: format!("{pid:02X?}: expected 2 PID bytes") });
    }
    Ok(u16::from_be_bytes([pid[0], pid[1]]))
}

fn with_xor(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.push(xor(bytes));
    v
}

async fn address(c: &mut RomClient<'_>, cmd: u8, addr: u32) -> Result<(), RomError> {
    write(c, &with_xor(&addr.to_be_bytes())).await?;
    ack(c, cmd, "address", RESPONSE, Some("the address is not accessible")).await
}

pub(super) async fn read_memory(c: &mut RomClient<'_>, addr: u32, len: usize) -> Result<Vec<u8>, RomError> {
    match command(c, op::READ, None).await {
        Err(RomError::Nack { .. }) => {
            return Err(RomError::ReadoutProtected { what: format!("Read Memory at {addr:#010x}") });
        }
        r => r?,
    }
    address(c, op::READ, addr).await?;
    let n = (len - 1) as u8;
    write(c, &[n, !n]).await?;
    ack(c, op::READ, "length", RESPONSE, Some("the range is not readable")).await?;
    let t = RESPONSE + c.port().config().char_time() * len as u32;
    read(c, len, "Read Memory", "data", t).await
}

pub(super) async fn write_memory(c: &mut RomClient<'_>, addr: u32, data: &[u8]) -> Result<(), RomError> {
    match command(c, op::WRITE, None).await {
        Err(RomError::Nack { .. }) => {
            return Err(RomError::ReadoutProtected { what: format!("Write Memory at {addr:#010x}") });
        }
        r => r?,
    }
    address(c, op::WRITE, addr).await?;
    let mut block = vec![(data.len() - 1) as u8];
    block.extend_from_slice(data);
    write(c, &with_xor(&block)).await?;
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
    match command(c, op::EXT_ERASE, None).await {
        Err(RomError::Nack { .. }) => return Err(RomError::ReadoutProtected { what: "Extended Erase".into() }),
        r => r?,
    }
    let payload = match req {
        EraseRequest::Mass => with_xor(&[0xFF, 0xFF]),
        EraseRequest::Bank(1) => with_xor(&[0xFF, 0xFE]),
        EraseRequest::Bank(_) => with_xor(&[0xFF, 0xFD]),
        EraseRequest::Sectors(list) => {
            let mut v = ((list.len() - 1) as u16).to_be_bytes().to_vec();
            v.extend(list.iter().flat_map(|s| s.to_be_bytes()));
            with_xor(&v)
        }
    };
    write(c, &payload).await?;
    ack(c, op::EXT_ERASE, "erase", timeout, Some("a sector does not exist or is write-protected")).await
}

pub(super) async fn go(c: &mut RomClient<'_>, addr: u32) -> Result<(), RomError> {
    match command(c, op::GO, None).await {
        Err(RomError::Nack { .. }) => return Err(RomError::ReadoutProtected { what: "Go".into() }),
        r => r?,
    }
    address(c, op::GO, addr).await
}

/// A command answered by `acks` ACKs (protection commands).
pub(super) async fn simple(c: &mut RomClient<'_>, cmd: u8, acks: usize, timeout: Duration) -> Result<(), RomError> {
    command(c, cmd, Some("readout protection is active")).await?;
    for _ in 1..acks {
        ack(c, cmd, "completion", timeout, None).await?;
    }
    Ok(())
}
