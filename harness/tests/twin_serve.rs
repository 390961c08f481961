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
