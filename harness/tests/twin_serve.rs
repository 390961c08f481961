//! `bootproof twin serve` driven from outside the process, as other tools would: a socketcand
//! client over TCP, a serial client on the pseudo-terminal, and the control channel on stdin.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bootproof");

/// Read `< … >` elements from a socketcand connection.
struct Socketcand {
    stream: TcpStream,
    buf: String,
}

impl Socketcand {
    fn element(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let (Some(s), Some(e)) = (self.buf.find('<'), self.buf.find('>')) {
                let el = self.buf[s..=e].to_string();
                self.buf.drain(..=e);
                return el;
            }
            assert!(Instant::now() < deadline, "no socketcand element; have {:?}", self.buf);
            let mut b = [0u8; 512];
            let n = self.stream.read(&mut b).expect("socketcand read");
            assert!(n > 0, "socketcand closed");
            self.buf.push_str(&String::from_utf8_lossy(&b[..n]));
        }
    }
    fn send(&mut self, s: &str) {
        self.stream.write_all(s.as_bytes()).unwrap();
    }
}

fn read_exact_timeout(f: &mut std::fs::File, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        assert!(Instant::now() < deadline, "pty: got {out:02X?}, wanted {n} bytes");
        let mut b = [0u8; 64];
        match f.read(&mut b) {
            Ok(k) => out.extend_from_slice(&b[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("pty read: {e}"),
        }
    }
    out
}

#[test]
fn serve_answers_socketcand_and_pty_clients_and_obeys_the_control_channel() {
    let dir = tempfile::tempdir().unwrap();
    let pty = dir.path().join("ttyTWIN");
    let mut child = Command::new(BIN)
        .args(["twin", "serve", "--board", "stm32h723zg", "--socketcand", "127.0.0.1:0", "--usart-pty"])
        .arg(&pty)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut addr = None;
    while addr.is_none() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "serve exited early");
        if let Some(rest) = line.strip_prefix("socketcand: ") {
            addr = rest.split_whitespace().next().map(str::to_string);
        }
    }
    assert!(pty.symlink_metadata().is_ok(), "pty symlink created");

    // socketcand: hi, open, rawmode, then Get ID as an FD frame with BRS.
    std::thread::sleep(Duration::from_millis(100)); // the ROM bootloader's 54 ms start-up, in real time
    let mut sc = Socketcand { stream: TcpStream::connect(addr.unwrap()).unwrap(), buf: String::new() };
    assert_eq!(sc.element(), "< hi >");
    sc.send("< open can1 >");
    assert!(sc.element().starts_with("< error no such bus can1"));
    sc.send("< open can0 >");
    assert_eq!(sc.element(), "< ok >");
    sc.send("< rawmode >");
    assert_eq!(sc.element(), "< ok >");
    sc.send("< fdsend 002 01 0 >");
    let replies: Vec<String> = (0..3).map(|_| sc.element()).collect();
    assert!(replies[0].starts_with("< fdframe 002 05 ") && replies[0].ends_with(" 79 >"), "{replies:?}");
    assert!(replies[1].ends_with(" 0483 >"), "{replies:?}");
    assert!(replies[2].ends_with(" 79 >"), "{replies:?}");
    sc.send("< bogus >");
    assert_eq!(sc.element(), "< error unknown command >");

    // The ROM bootloader picked FDCAN; reset it through the control channel so USART is free.
    writeln!(stdin, "reset").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    while !line.starts_with("ok:") && !line.starts_with("error:") {
        line.clear();
        out.read_line(&mut line).unwrap();
    }
    assert!(line.contains("NRST pulsed") && line.contains("ROM bootloader"), "{line}");
    writeln!(stdin, "status").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("BOOT0 high") && line.contains("power on"), "{line}");
    std::thread::sleep(Duration::from_millis(100));

    // Serial client on the pty: raw at 115200 (parity cannot travel over a pty; serve applies
    // the ROM bootloader's even parity), sync, Get ID.
    let mut tty = std::fs::OpenOptions::new().read(true).write(true).open(&pty).unwrap();
    {
        use nix::sys::termios::{self, BaudRate, SetArg};
        let mut t = termios::tcgetattr(tty.as_fd()).unwrap();
        termios::cfmakeraw(&mut t);
        termios::cfsetspeed(&mut t, BaudRate::B115200).unwrap();
        t.control_chars[nix::libc::VMIN] = 0;
        t.control_chars[nix::libc::VTIME] = 1;
        termios::tcsetattr(tty.as_fd(), SetArg::TCSANOW, &t).unwrap();
    }
    tty.write_all(&[0x7F]).unwrap();
    assert_eq!(read_exact_timeout(&mut tty, 1), vec![0x79], "sync ACK");
    tty.write_all(&[0x02, 0xFD]).unwrap();
    assert_eq!(read_exact_timeout(&mut tty, 5), vec![0x79, 0x01, 0x04, 0x83, 0x79], "Get ID over the pty");

    writeln!(stdin, "quit").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(pty.symlink_metadata().is_err(), "pty symlink removed on exit");
}

#[test]
fn serve_without_anything_to_serve_says_what_to_add() {
    let out = Command::new(BIN).args(["twin", "serve", "--board", "stm32h723zg"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--usart-pty"));
}

#[test]
fn serve_refuses_a_non_loopback_socketcand_address() {
    let out = Command::new(BIN)
        .args(["twin", "serve", "--board", "stm32h723zg", "--socketcand", "0.0.0.0:29536"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

/// `bootproof twin serve ARGS` with its stdout lines up to the control prompt.
struct Served {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: BufReader<std::process::ChildStdout>,
    announced: Vec<String>,
}

impl Served {
    fn start(args: &[&str]) -> Served {
        let mut child = Command::new(BIN)
            .args(["twin", "serve"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut announced = Vec::new();
        loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "serve exited early: {announced:?}");
            let done = line.starts_with("control on stdin");
            announced.push(line.trim().to_string());
            if done {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100)); // the ROM bootloader's start-up
        Served { child, stdin, out, announced }
    }

    /// The first word after `prefix` on an announced line.
    fn endpoint(&self, prefix: &str) -> String {
        let line = self.announced.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}"));
        line[prefix.len()..].split_whitespace().next().unwrap().to_string()
    }

    fn control(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        loop {
            let mut line = String::new();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "serve exited");
            if line.starts_with("ok:") || line.starts_with("error:") {
                return line;
            }
        }
    }

    fn quit(mut self) {
        writeln!(self.stdin, "quit").unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Served {
    /// A failed assertion must not leave the server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Data bytes from an RFC 2217 server, Telnet commands and subnegotiations removed, until
/// `n` bytes or `wait` passes.
fn telnet_data(s: &mut TcpStream, n: usize, wait: Duration) -> Vec<u8> {
    const IAC: u8 = 255;
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let deadline = Instant::now() + wait;
    let (mut data, mut raw) = (Vec::new(), Vec::new());
    while data.len() < n && Instant::now() < deadline {
        let mut b = [0u8; 256];
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(k) => raw.extend_from_slice(&b[..k]),
            Err(_) => continue,
        }
        // Strip complete commands; keep an incomplete tail for the next read.
        let mut i = 0;
        while i < raw.len() {
            match (raw[i], raw.get(i + 1)) {
                (IAC, Some(&IAC)) => {
                    data.push(IAC);
                    i += 2;
                }
                (IAC, Some(&250)) => match raw[i..].windows(2).position(|w| w == [IAC, 240]) {
                    Some(end) => i += end + 2,
                    None => break,
                },
                (IAC, Some(251..=254)) if raw.len() > i + 2 => i += 3,
                (IAC, _) => break,
                (b, _) => {
                    data.push(b);
                    i += 1;
                }
            }
        }
        raw.drain(..i);
    }
    data
}

#[test]
fn serve_usart_on_raw_tcp_answers_the_rom_bootloader() {
    let served = Served::start(&["--board", "stm32g071rb", "--usart-tcp", "127.0.0.1:0"]);
    assert!(served.announced.iter().any(|l| l.contains("115200 8E1")), "{:?}", served.announced);
    let mut s = TcpStream::connect(served.endpoint("USART raw TCP: ")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A second client is turned away while the first is connected.
    let mut second = TcpStream::connect(served.endpoint("USART raw TCP: ")).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(matches!(second.read(&mut [0u8; 4]), Ok(0)), "second client turned away (closed at once)");
    s.write_all(&[0x7F]).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(b, [0x79], "sync ACK");
    s.write_all(&[0x02, 0xFD]).unwrap();
    let mut id = [0u8; 5];
    s.read_exact(&mut id).unwrap();
    assert_eq!(id, [0x79, 0x01, 0x04, 0x60, 0x79], "Get ID over raw TCP");
    served.quit();
}

#[test]
fn serve_usart_on_rfc2217_applies_the_clients_parity_and_wires_dtr_rts_to_nrst_boot0() {
    const IAC: u8 = 255;
    const SB: u8 = 250;
    const SE: u8 = 240;
    let sb = |code: u8, value: &[u8]| [&[IAC, SB, 44, code][..], value, &[IAC, SE]].concat();
    let mut served =
        Served::start(&["--board", "stm32g071rb", "--usart-rfc2217", "127.0.0.1:0", "--dtr", "nrst", "--rts", "boot0"]);
    let url = served.endpoint("USART RFC 2217: ");
    let addr = url.strip_prefix("rfc2217://").expect("an rfc2217:// URL");
    let mut s = TcpStream::connect(addr).unwrap();
    // The server opens the negotiation: WILL/DO BINARY, WILL/DO SGA, DO COM-PORT-OPTION.
    let mut hello = [0u8; 15];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut hello).unwrap();
    assert_eq!(hello, [IAC, 251, 0, IAC, 253, 0, IAC, 251, 3, IAC, 253, 3, IAC, 253, 44]);
    s.write_all(&[IAC, 251, 44]).unwrap();

    // 115200 8N1 (after 8E1, so the change is one) against the ROM bootloader's 8E1:
    // acknowledged as set, but the chip hears parity errors and never answers.
    s.write_all(&[sb(1, &115_200u32.to_be_bytes()), sb(2, &[8]), sb(3, &[3]), sb(3, &[1]), sb(4, &[1])].concat())
        .unwrap();
    s.write_all(&[0x7F]).unwrap();
    assert!(telnet_data(&mut s, 1, Duration::from_millis(300)).is_empty(), "no answer at 8N1");

    // DTR asserted: its pin goes low, holding NRST; RTS deasserted: BOOT0 high.
    s.write_all(&[sb(5, &[12]), sb(5, &[8])].concat()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let st = served.control("status");
    assert!(st.contains("NRST low") && st.contains("BOOT0 high"), "{st}");
    // DTR deasserted: NRST released, the ROM bootloader starts afresh; now 8E1.
    s.write_all(&[sb(5, &[9]), sb(3, &[3])].concat()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let st = served.control("status");
    assert!(st.contains("NRST released") && st.contains("ROM bootloader"), "{st}");
    s.write_all(&[0x7F]).unwrap();
    assert_eq!(telnet_data(&mut s, 1, Duration::from_secs(5)), [0x79], "sync ACK at 8E1");
    s.write_all(&[0x02, 0xFD]).unwrap();
    assert_eq!(telnet_data(&mut s, 5, Duration::from_secs(5)), [0x79, 0x01, 0x04, 0x60, 0x79], "Get ID");

    // RTS asserted drives BOOT0 low; the next reset boots from flash (empty: the G0's empty
    // check still picks the ROM, so check the pin itself).
    s.write_all(&sb(5, &[11])).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(served.control("status").contains("BOOT0 low"));
    // The client goes: DTR and RTS read deasserted, as a closed port's pins.
    s.write_all(&sb(5, &[8])).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(served.control("status").contains("NRST low"));
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    let st = served.control("status");
    assert!(st.contains("NRST released") && st.contains("BOOT0 high"), "{st}");
    served.quit();
}

#[test]
fn serve_refuses_two_usart_endpoints_and_dtr_rts_without_rfc2217() {
    let out = Command::new(BIN)
        .args(["twin", "serve", "--board", "stm32g071rb", "--usart-tcp", "127.0.0.1:0", "--usart-pty", "/tmp/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    let out = Command::new(BIN).args(["twin", "serve", "--board", "stm32g071rb", "--dtr", "nrst"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--usart-rfc2217"));
    let out = Command::new(BIN)
        .args(["twin", "serve", "--board", "stm32g071rb", "--usart-rfc2217", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
