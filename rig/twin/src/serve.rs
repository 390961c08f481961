//! Serving a twin to outside tools: its USART on a pseudo-terminal, on a raw TCP port or on an
//! RFC 2217 (Telnet COM-PORT-OPTION) port, and its CAN bus as a socketcand server (text
//! protocol, raw mode).
//!
//! * **pty**: the twin's serial link appears as a pseudo-terminal, symlinked at a path of your
//!   choice, for tools that need a device node (stm32flash). The baud rate the tool sets with
//!   termios is applied to the twin's side of the link. Parity cannot travel over a pty: the
//!   Linux pty driver clears PARENB and forces CS8 on every tcsetattr, so a tool that reads its
//!   settings back and checks them fails (stm32flash's default 8e1: "Failed to set terminal
//!   flags"; `-m 8n1` passes), and a pty has no modem lines (TIOCMSET fails with ENOTTY, so a
//!   tool that drives DTR/RTS fails). The parity is a serve option (default even, the ROM
//!   bootloader's 8E1).
//! * **RFC 2217** ([`crate::rfc2217`]): pyserial's `rfc2217://HOST:PORT` and other RFC 2217
//!   clients. The tool's baud rate, parity and data size are the host side of the twin's link:
//!   a tool that sets 8N1 against the ROM bootloader's 8E1 gets no answer, as from a chip.
//!   DTR and RTS drive NRST and BOOT0 as wired by [`Wiring`] (USB-serial adapters' DTR#/RTS#
//!   pins are low while the signal is asserted).
//! * **raw TCP**: bytes both ways at a framing fixed by the serve options (default 115200 8E1).
//! * **socketcand** (<https://github.com/linux-can/socketcand>, `doc/protocol.md`): the server
//!   greets with `< hi >`, accepts `< open BUS >` and `< rawmode >`, then forwards every classic
//!   frame as `< frame ID SECS.USECS DATA >` and takes `< send ID LEN B0 B1 … >`, as socketcand
//!   does; `< echo >` is echoed. socketcand's own releases carry no CAN FD: FD frames travel in
//!   the extension of socketcand's open CAN FD pull request, `< fdframe ID FLAGS SECS.USECS
//!   DATA >` out and `< fdsend ID FLAGS LEN B0 … >` in (FLAGS from linux/can.h: 01 BRS, 04
//!   FDF). Clients that know only classic frames (python-can's `socketcand` interface) see the
//!   FD lines as unparseable and skip them. Like socketcand, a malformed `send` gets no answer
//!   (it is logged). Each client is a node on the twin's bus at the twin host's bit rates.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bootproof_fixtures::Level;
use bootproof_rig::CanBus;
use bootproof_rig::can::{Bitrates, CanEvent, CanFrame, CanId};
use bootproof_rig::console::{Console, Parity, SerialConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::board::Board;
use crate::bus::CanBusModel;
use crate::rfc2217::{self, ComPortServer, Event, LineSettings, WireParity};
use crate::uart::UartLink;

/// Why serving failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The pseudo-terminal could not be created or linked.
    #[error("cannot create the USART pseudo-terminal at {path}: {message}")]
    Pty {
        /// The requested symlink.
        path: PathBuf,
        /// Why, and what to check.
        message: String,
    },
    /// A listening port could not be bound.
    #[error("cannot listen for {what} clients on {addr}: {source}; pick a free port (port 0 picks one)")]
    Bind {
        /// Which endpoint (socketcand, USART raw TCP, USART RFC 2217).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: io::Error,
    },
}

// ---- socketcand --------------------------------------------------------------------------

/// socketcand FD frame flags (linux/can.h).
const CANFD_BRS: u8 = 0x01;
const CANFD_FDF: u8 = 0x04;

/// A command from a socketcand client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `< open BUS >`
    Open(String),
    /// `< rawmode >`
    RawMode,
    /// `< send … >` / `< fdsend … >`
    Send(CanFrame),
    /// `< echo >`
    Echo,
    /// A `send` or `fdsend` socketcand cannot parse (socketcand answers nothing; logged).
    Malformed(String),
    /// Anything else (answered with `< error unknown command >`).
    Unknown(String),
}

fn parse_id(s: &str) -> Option<CanId> {
    let v = u32::from_str_radix(s, 16).ok()?;
    if s.len() == 8 {
        (v <= 0x1FFF_FFFF).then_some(CanId::Extended(v))
    } else {
        CanId::standard(v as u16).ok().filter(|_| v <= 0x7FF)
    }
}

/// Parse one `< … >` element.
pub fn parse_command(element: &str) -> Command {
    let inner = element.trim().trim_start_matches('<').trim_end_matches('>').trim();
    let mut words = inner.split_whitespace();
    let unknown = || Command::Unknown(inner.to_string());
    let malformed = || Command::Malformed(inner.to_string());
    match words.next() {
        Some("open") => words.next().map(|b| Command::Open(b.to_string())).unwrap_or_else(unknown),
        Some("rawmode") => Command::RawMode,
        Some("echo") => Command::Echo,
        Some("send") => {
            let (Some(id), Some(len)) =
                (words.next().and_then(parse_id), words.next().and_then(|l| l.parse::<usize>().ok()))
            else {
                return malformed();
            };
            let data: Option<Vec<u8>> = words.map(|b| u8::from_str_radix(b, 16).ok()).collect();
            match data {
                Some(d) if d.len() == len && len <= 8 => {
                    CanFrame::classic(id, &d).map(Command::Send).unwrap_or_else(|_| malformed())
                }
                _ => malformed(),
            }
        }
        Some("fdsend") => {
            let id = words.next().and_then(parse_id);
            let flags = words.next().and_then(|f| u8::from_str_radix(f, 16).ok());
            let len = words.next().and_then(|l| l.parse::<usize>().ok());
            let data: Option<Vec<u8>> = words.map(|b| u8::from_str_radix(b, 16).ok()).collect();
            match (id, flags, len, data) {
                (Some(id), Some(flags), Some(len), Some(d)) if d.len() == len => {
                    CanFrame::fd(id, &d, flags & CANFD_BRS != 0).map(Command::Send).unwrap_or_else(|_| malformed())
                }
                _ => malformed(),
            }
        }
        _ => unknown(),
    }
}

/// Render a received frame the way socketcand does in raw mode.
pub fn format_frame(f: &CanFrame, at: SystemTime) -> String {
    let t = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let id = match f.id() {
        CanId::Standard(i) => format!("{i:03X}"),
        CanId::Extended(i) => format!("{i:08X}"),
    };
    let data: String = f.data().iter().map(|b| format!("{b:02X}")).collect();
    let ts = format!("{}.{:06}", t.as_secs(), t.subsec_micros());
    if f.is_fd() {
        let flags = CANFD_FDF | if f.is_brs() { CANFD_BRS } else { 0 };
        format!("< fdframe {id} {flags:02X} {ts} {data} >")
    } else {
        format!("< frame {id} {ts} {data} >")
    }
}

/// Split a byte stream into `< … >` elements.
fn take_elements(buf: &mut String) -> Vec<String> {
    let mut out = Vec::new();
    while let (Some(start), Some(end)) = (buf.find('<'), buf.find('>')) {
        if end < start {
            buf.drain(..=end);
            continue;
        }
        out.push(buf[start..=end].to_string());
        buf.drain(..=end);
    }
    out
}

/// Listen for socketcand clients on `addr`; each client becomes a node on `bus` at `rates`,
/// answering for the bus name `bus_name`. Returns the bound address.
pub async fn socketcand(
    bus: CanBusModel,
    rates: Bitrates,
    addr: SocketAddr,
    bus_name: String,
) -> Result<SocketAddr, ServeError> {
    let (listener, local) = bind("socketcand", addr).await?;
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tracing::info!("socketcand client {peer} connected");
            tokio::spawn(client(stream, bus.clone(), rates, bus_name.clone()));
        }
    });
    Ok(local)
}

async fn client(stream: tokio::net::TcpStream, bus: CanBusModel, rates: Bitrates, bus_name: String) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    if wr.write_all(b"< hi >").await.is_err() {
        return;
    }
    let mut port = None;
    let mut raw = false;
    let mut pending = String::new();
    let mut chunk = Vec::new();
    loop {
        let frame_wait = async {
            match (&mut port, raw) {
                (Some(p), true) => p_recv(p).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            n = rd.read_until(b'>', &mut chunk) => {
                match n {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                pending.push_str(&String::from_utf8_lossy(&chunk));
                chunk.clear();
                for element in take_elements(&mut pending) {
                    let reply = match parse_command(&element) {
                        Command::Open(name) if name == bus_name => {
                            port = Some(bus.attach("socketcand", rates));
                            "< ok >".to_string()
                        }
                        Command::Open(name) => format!("< error no such bus {name}; this twin serves {bus_name} >"),
                        Command::RawMode if port.is_some() => {
                            raw = true;
                            "< ok >".to_string()
                        }
                        Command::RawMode => "< error open a bus first >".to_string(),
                        Command::Echo => "< echo >".to_string(),
                        Command::Send(f) => match port.as_mut() {
                            Some(p) => match p.send(&f).await {
                                Ok(()) => continue,
                                Err(e) => format!("< error {e} >"),
                            },
                            None => "< error open a bus first >".to_string(),
                        },
                        Command::Malformed(what) => {
                            tracing::warn!(
                                "socketcand: cannot parse `< {what} >` (socketcand answers nothing): classic is \
                                 `< send ID LEN B0 … >` with LEN 0..8 in decimal, CAN FD `< fdsend ID FLAGS LEN B0 … >` \
                                 with LEN one of 0..8, 12, 16, 20, 24, 32, 48, 64"
                            );
                            continue;
                        }
                        Command::Unknown(_) => "< error unknown command >".to_string(),
                    };
                    if wr.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
            ev = frame_wait => {
                let line = match ev {
                    CanEvent::Frame(f) => format_frame(&f, SystemTime::now()),
                    CanEvent::Error(e) => {
                        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                        let class = if matches!(e, bootproof_rig::BusError::NoAck) { 0x20 } else { 0x08 };
                        format!("< error {class:03X} {}.{:06} >", t.as_secs(), t.subsec_micros())
                    }
                };
                if wr.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn p_recv(p: &mut crate::bus::CanPort) -> CanEvent {
    loop {
        if let Ok(ev) = p.recv(Duration::from_secs(3600)).await {
            return ev;
        }
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { what, addr, source })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind { what, addr, source })?;
    Ok((listener, local))
}

// ---- USART over TCP: raw and RFC 2217 ------------------------------------------------------

/// What a modem line of the tool's serial adapter is wired to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTarget {
    /// Nothing: the line is ignored.
    None,
    /// The board's NRST: a low pin holds the board in reset.
    Nrst,
    /// The board's BOOT0: the pin's level, sampled at the next reset release.
    Boot0,
}

/// One modem line's wiring: where its pin goes and the pin's level while the tool asserts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineWire {
    /// Where the pin goes.
    pub target: LineTarget,
    /// Pin level while the signal is asserted: `Low` on USB-serial adapters' DTR#/RTS# pins.
    pub asserted: Level,
}

impl LineWire {
    /// Not connected.
    pub const NONE: LineWire = LineWire { target: LineTarget::None, asserted: Level::Low };

    fn pin(self, asserted: bool) -> Level {
        match (asserted, self.asserted) {
            (true, l) => l,
            (false, Level::Low) => Level::High,
            (false, Level::High) => Level::Low,
        }
    }
}

/// How DTR and RTS reach the board (stm32loader's and many adapters' wiring: DTR to NRST and RTS
/// to BOOT0, both pins low while asserted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wiring {
    /// DTR's pin.
    pub dtr: LineWire,
    /// RTS's pin.
    pub rts: LineWire,
}

impl Wiring {
    /// Neither line connected.
    pub const NONE: Wiring = Wiring { dtr: LineWire::NONE, rts: LineWire::NONE };

    /// stm32loader's default: DTR# to NRST, RTS# to BOOT0.
    pub const STM32LOADER: Wiring = Wiring {
        dtr: LineWire { target: LineTarget::Nrst, asserted: Level::Low },
        rts: LineWire { target: LineTarget::Boot0, asserted: Level::Low },
    };

    /// Drive the board from the lines' states. BOOT0 is set before NRST, so a reset released
    /// in the same step samples the new BOOT0.
    pub fn apply(&self, board: &Board, dtr: bool, rts: bool) {
        let pins = [(self.dtr, self.dtr.pin(dtr)), (self.rts, self.rts.pin(rts))];
        for (wire, level) in pins {
            if wire.target == LineTarget::Boot0 {
                board.set_boot0(level);
            }
        }
        for (wire, level) in pins {
            if wire.target == LineTarget::Nrst {
                board.set_nrst(level == Level::Low);
            }
        }
    }
}

impl std::fmt::Display for Wiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let one = |name: &str, w: LineWire| match w.target {
            LineTarget::None => format!("{name} not connected"),
            LineTarget::Nrst => format!("{name} -> NRST (pin {} while asserted)", w.asserted),
            LineTarget::Boot0 => format!("{name} -> BOOT0 (pin {} while asserted)", w.asserted),
        };
        write!(f, "{}, {}", one("DTR", self.dtr), one("RTS", self.rts))
    }
}

/// The board's USART on a TCP port, one client at a time: a handle that stops serving when
/// dropped.
pub struct TcpSerial {
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TcpSerial {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for TcpSerial {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accept clients on `listener`; a second client while one is connected is turned away.
fn serve_one_at_a_time<F, Fut>(what: &'static str, listener: TcpListener, handle: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let busy = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            if busy.swap(true, Ordering::SeqCst) {
                tracing::warn!("{what}: {peer} turned away: one serial client at a time, as on a real port");
                drop(stream);
                continue;
            }
            tracing::info!("{what}: client {peer} connected");
            let _ = stream.set_nodelay(true);
            let busy = busy.clone();
            let client = handle(stream);
            tokio::spawn(async move {
                client.await;
                tracing::info!("{what}: client {peer} disconnected");
                busy.store(false, Ordering::SeqCst);
            });
        }
    })
}

/// The board's USART as raw bytes on `addr` at a fixed `framing` (a TCP byte stream carries no
/// baud rate or parity).
pub async fn usart_tcp(link: UartLink, addr: SocketAddr, framing: SerialConfig) -> Result<TcpSerial, ServeError> {
    let (listener, local) = bind("USART raw TCP", addr).await?;
    let task = serve_one_at_a_time("USART raw TCP", listener, move |stream| {
        let link = link.clone();
        async move {
            let mut console = link.host_console();
            let _ = console.configure(framing).await;
            link.set_host_foreign(false);
            // What the board sent while no one listened is gone, as on a wire.
            let _ = console.discard_input().await;
            let (mut rd, mut wr) = stream.into_split();
            let mut inbuf = [0u8; 1024];
            let mut out = [0u8; 512];
            loop {
                tokio::select! {
                    n = rd.read(&mut inbuf) => {
                        let Ok(n @ 1..) = n else { return };
                        let _ = console.write(&inbuf[..n]).await;
                    }
                    r = console.read(&mut out, Duration::from_secs(3600)) => {
                        if let Ok(n) = r && wr.write_all(&out[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok(TcpSerial { local, task })
}

/// The board's USART on `addr` for RFC 2217 clients: the client's line settings are the host
/// side of the twin's serial link, its DTR and RTS drive the board through `wiring`. When the
/// client goes, DTR and RTS read deasserted, as an adapter's pins do when its port closes.
pub async fn usart_rfc2217(board: Arc<Board>, addr: SocketAddr, wiring: Wiring) -> Result<TcpSerial, ServeError> {
    let (listener, local) = bind("USART RFC 2217", addr).await?;
    let task =
        serve_one_at_a_time("USART RFC 2217", listener, move |stream| rfc2217_client(stream, board.clone(), wiring));
    Ok(TcpSerial { local, task })
}

/// The link's host framing for an RFC 2217 line; `foreign` when no board UART uses it.
fn framing_of(line: &LineSettings) -> (SerialConfig, bool) {
    let parity = match line.parity {
        WireParity::None => Parity::None,
        WireParity::Odd => Parity::Odd,
        WireParity::Even | WireParity::Mark | WireParity::Space => Parity::Even,
    };
    // A receiver samples one stop bit: 1, 1.5 and 2 stop bits all frame. Seven data bits or a
    // parity bit stuck at 1 or 0 do not (the board's UARTs use 8 data bits, none/even/odd).
    let foreign = line.data_size != 8 || matches!(line.parity, WireParity::Mark | WireParity::Space);
    (SerialConfig { baud: line.baud, parity }, foreign)
}

async fn rfc2217_client(stream: TcpStream, board: Arc<Board>, wiring: Wiring) {
    let link = board.uart().clone();
    let mut console = link.host_console();
    let start = LineSettings {
        baud: console.config().baud,
        parity: match console.config().parity {
            Parity::None => WireParity::None,
            Parity::Odd => WireParity::Odd,
            Parity::Even => WireParity::Even,
        },
        ..LineSettings::default()
    };
    let _ = console.discard_input().await; // nobody listened: gone, as on a wire
    let signature = format!("bootproof twin {}", board.profile().name);
    let mut proto = ComPortServer::new(start, signature);
    let (mut rd, mut wr) = stream.into_split();
    let mut inbuf = [0u8; 1024];
    let mut out = [0u8; 512];
    if wr.write_all(&proto.take_output()).await.is_ok() {
        loop {
            tokio::select! {
                n = rd.read(&mut inbuf) => {
                    let Ok(n @ 1..) = n else { break };
                    for ev in proto.feed(&inbuf[..n]) {
                        match ev {
                            Event::Data(d) => {
                                let _ = console.write(&d).await;
                            }
                            Event::Baud(_) | Event::Parity(_) | Event::DataSize(_) | Event::StopSize(_) => {
                                let (framing, foreign) = framing_of(&proto.line());
                                let _ = console.configure(framing).await;
                                link.set_host_foreign(foreign);
                            }
                            Event::Dtr(_) | Event::Rts(_) => {
                                let l = proto.line();
                                wiring.apply(&board, l.dtr, l.rts);
                            }
                            // BREAK holds the line low: nothing the twin's receivers act on.
                            Event::Break(_) => {}
                            Event::PurgeFromDevice => {
                                let _ = console.discard_input().await;
                            }
                            // Bytes for the device are on the wire at once: nothing waits.
                            Event::PurgeToDevice => {}
                        }
                    }
                    if wr.write_all(&proto.take_output()).await.is_err() {
                        break;
                    }
                }
                r = console.read(&mut out, Duration::from_secs(3600)), if !proto.suspended() => {
                    if let Ok(n) = r && wr.write_all(&rfc2217::escape(&out[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    link.set_host_foreign(false);
    wiring.apply(&board, false, false);
}

// ---- pty ----------------------------------------------------------------------------------

/// The twin's USART on a pseudo-terminal. Dropping it removes the symlink.
pub struct PtyBridge {
    link: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PtyBridge {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.link);
    }
}

impl PtyBridge {
    /// The symlink path.
    pub fn path(&self) -> &Path {
        &self.link
    }
}

fn baud_of(t: &nix::sys::termios::Termios) -> u32 {
    use nix::sys::termios::BaudRate::*;
    match nix::sys::termios::cfgetospeed(t) {
        B1200 => 1200,
        B2400 => 2400,
        B4800 => 4800,
        B9600 => 9600,
        B19200 => 19_200,
        B38400 => 38_400,
        B57600 => 57_600,
        B115200 => 115_200,
        B230400 => 230_400,
        B460800 => 460_800,
        B921600 => 921_600,
        _ => 115_200,
    }
}

fn baud_of_fd(fd: &OwnedFd) -> Option<u32> {
    nix::sys::termios::tcgetattr(fd.as_fd()).ok().map(|t| baud_of(&t))
}

/// Expose the twin's serial link as a pseudo-terminal symlinked at `path`. The pty starts raw
/// at 115200; the baud a client sets is mirrored, `parity` is applied (ptys carry none).
pub fn pty(link: UartLink, path: &Path, parity: Parity) -> Result<PtyBridge, ServeError> {
    use nix::sys::termios::{self, BaudRate, SetArg};
    let err = |message: String| ServeError::Pty { path: path.to_path_buf(), message };
    let pair = nix::pty::openpty(None, None).map_err(|e| err(format!("openpty failed: {e}")))?;
    let mut t = termios::tcgetattr(pair.slave.as_fd()).map_err(|e| err(e.to_string()))?;
    termios::cfmakeraw(&mut t);
    termios::cfsetspeed(&mut t, BaudRate::B115200).map_err(|e| err(e.to_string()))?;
    termios::tcsetattr(pair.slave.as_fd(), SetArg::TCSANOW, &t).map_err(|e| err(e.to_string()))?;
    let slave_path = nix::unistd::ttyname(pair.slave.as_fd()).map_err(|e| err(format!("ttyname: {e}")))?;
    if path.symlink_metadata().is_ok() {
        std::fs::remove_file(path).map_err(|e| err(format!("{e}; remove the existing file")))?;
    }
    std::os::unix::fs::symlink(&slave_path, path)
        .map_err(|e| err(format!("symlink to {}: {e}", slave_path.display())))?;
    // The master is driven by two blocking threads (no unsafe fd registration needed).
    let reader = pair.master.try_clone().map_err(|e| err(e.to_string()))?;
    let writer = pair.master;
    let slave = pair.slave; // kept open: the master reads EIO while no client holds the slave
    let (to_twin_tx, mut to_twin) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let (to_pty, to_pty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::Builder::new()
        .name("pty-read".into())
        .spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                match nix::unistd::read(reader.as_fd(), &mut buf) {
                    Ok(n) if n > 0 => {
                        if to_twin_tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(nix::errno::Errno::EIO) => std::thread::sleep(Duration::from_millis(20)),
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        })
        .map_err(|e| err(e.to_string()))?;
    std::thread::Builder::new()
        .name("pty-write".into())
        .spawn(move || {
            while let Ok(data) = to_pty_rx.recv() {
                let mut data = &data[..];
                while !data.is_empty() {
                    match nix::unistd::write(writer.as_fd(), data) {
                        Ok(w) => data = &data[w..],
                        Err(nix::errno::Errno::EINTR) => {}
                        Err(_) => return,
                    }
                }
            }
        })
        .map_err(|e| err(e.to_string()))?;
    let task = tokio::spawn(async move {
        let mut console = link.host_console();
        let mut out = [0u8; 512];
        loop {
            tokio::select! {
                data = to_twin.recv() => {
                    let Some(data) = data else { return };
                    let framing = SerialConfig { baud: baud_of_fd(&slave).unwrap_or(115_200), parity };
                    if framing != console.config() {
                        let _ = console.configure(framing).await;
                    }
                    let _ = console.write(&data).await;
                }
                r = console.read(&mut out, Duration::from_secs(3600)) => {
                    if let Ok(n) = r
                        && to_pty.send(out[..n].to_vec()).is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    Ok(PtyBridge { link: path.to_path_buf(), task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_socketcand_commands() {
        assert_eq!(parse_command("< open can0 >"), Command::Open("can0".into()));
        assert_eq!(parse_command("<rawmode>"), Command::RawMode);
        let Command::Send(f) = parse_command("< send 123 3 11 22 33 >") else { panic!() };
        assert_eq!((f.id(), f.data(), f.is_fd()), (CanId::Standard(0x123), &[0x11, 0x22, 0x33][..], false));
        let Command::Send(f) = parse_command("< send 1AAAAAAA 2 1 F1 >") else { panic!() };
        assert_eq!(f.id(), CanId::Extended(0x1AAA_AAAA));
        let Command::Send(f) = parse_command("< fdsend 031 01 5 08 02 00 00 FF >") else { panic!() };
        assert!(f.is_fd() && f.is_brs());
        assert_eq!(f.data(), &[8, 2, 0, 0, 0xFF]);
        // Length mismatch, bad hex, over-long classic frame, invalid FD length.
        // python-can's form: lowercase, unpadded data bytes.
        let Command::Send(f) = parse_command("< send 000 2 a 0 >") else { panic!() };
        assert_eq!((f.id(), f.data()), (CanId::Standard(0), &[0x0A, 0x00][..]));
        for bad in [
            "< send 123 3 11 22 >",
            "< send 12G 0 >",
            "< send 123 9 0 0 0 0 0 0 0 0 0 >",
            "< fdsend 1 01 9 0 0 0 0 0 0 0 0 0 >",
        ] {
            assert!(matches!(parse_command(bad), Command::Malformed(_)), "{bad}");
        }
        assert!(matches!(parse_command("< nonsense >"), Command::Unknown(_)));
    }

    #[test]
    fn formats_frames_like_socketcand() {
        let at = UNIX_EPOCH + Duration::from_micros(23_424_242);
        let f = CanFrame::classic(CanId::Standard(0x123), &[0x11, 0x22, 0x33, 0x44]).unwrap();
        assert_eq!(format_frame(&f, at), "< frame 123 23.424242 11223344 >");
        let f = CanFrame::fd(CanId::Standard(0x79), &[0x79], true).unwrap();
        assert_eq!(format_frame(&f, at), "< fdframe 079 05 23.424242 79 >");
    }

    #[tokio::test(start_paused = true)]
    async fn wiring_drives_nrst_and_boot0_by_each_pins_polarity() {
        let twin = crate::Twin::builtin("stm32g071rb").unwrap();
        let board = twin.board();
        board.set_power(true);
        let state = || {
            let st = board.state();
            (st.nrst_low, st.boot0)
        };
        // stm32loader's wiring, pins low while asserted: DTR holds reset, RTS deasserted is BOOT0 high.
        let w = Wiring::STM32LOADER;
        w.apply(board, true, false);
        assert_eq!(state(), (true, Level::High));
        w.apply(board, false, true);
        assert_eq!(state(), (false, Level::Low));
        // Inverted pins (`--dtr-asserted high --rts-asserted high`), lines swapped.
        let w = Wiring {
            dtr: LineWire { target: LineTarget::Boot0, asserted: Level::High },
            rts: LineWire { target: LineTarget::Nrst, asserted: Level::High },
        };
        w.apply(board, true, false);
        assert_eq!(state(), (true, Level::High));
        w.apply(board, false, true);
        assert_eq!(state(), (false, Level::Low));
        // Not connected: nothing moves.
        Wiring::NONE.apply(board, true, false);
        assert_eq!(state(), (false, Level::Low));
    }

    #[test]
    fn splits_a_stream_into_elements() {
        let mut s = String::from("junk< hi >< open can0 ><raw");
        assert_eq!(take_elements(&mut s), vec!["< hi >", "< open can0 >"]);
        assert_eq!(s, "<raw");
        s.push_str("mode >");
        assert_eq!(take_elements(&mut s), vec!["<rawmode >"]);
    }
}
