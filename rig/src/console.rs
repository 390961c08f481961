//! The serial console: raw byte I/O with timeouts ([`Console`]) and line-oriented helpers with
//! an expect-pattern matcher ([`ConsolePort`]).

use std::time::Duration;

use crate::time::Instant;
use async_trait::async_trait;

use crate::error::ConsoleError;

/// Parity of a serial link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// 8N1-style.
    None,
    /// Even parity (the ST ROM bootloader uses 8E1).
    Even,
    /// Odd parity.
    Odd,
}

/// Serial framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialConfig {
    /// Baud rate.
    pub baud: u32,
    /// Parity.
    pub parity: Parity,
}

impl SerialConfig {
    /// 8N1 at `baud`: typical application console.
    pub fn n81(baud: u32) -> SerialConfig {
        SerialConfig { baud, parity: Parity::None }
    }
    /// 8E1 at `baud`: the ST ROM bootloader's USART framing (AN3155).
    pub fn e81(baud: u32) -> SerialConfig {
        SerialConfig { baud, parity: Parity::Even }
    }
    /// Time one character takes on the wire (start + 8 data + parity + stop).
    pub fn char_time(&self) -> Duration {
        let bits = if self.parity == Parity::None { 10 } else { 11 };
        Duration::from_nanos(bits * 1_000_000_000 / self.baud as u64)
    }
}

impl std::fmt::Display for SerialConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        write!(f, "{} 8{p}1", self.baud)
    }
}

/// A serial link to the board.
#[async_trait]
pub trait Console: Send {
    /// Change the framing.
    async fn configure(&mut self, config: SerialConfig) -> Result<(), ConsoleError>;
    /// The current framing.
    fn config(&self) -> SerialConfig;
    /// Write all of `data`.
    async fn write(&mut self, data: &[u8]) -> Result<(), ConsoleError>;
    /// Read what is available (at least one byte), waiting up to `timeout`; returns
    /// [`ConsoleError::Timeout`] if nothing arrives.
    async fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, ConsoleError>;
    /// Drop anything received but not yet read.
    async fn discard_input(&mut self) -> Result<(), ConsoleError>;
}

/// A console with a line buffer: reads lines, waits for patterns, reads exact byte counts.
pub struct ConsolePort {
    inner: Box<dyn Console>,
    pending: Vec<u8>,
}

/// What [`ConsolePort::expect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectMatch {
    /// The line that matched.
    pub line: String,
    /// Lines seen before it.
    pub before: Vec<String>,
}

impl ConsolePort {
    /// Wrap a console.
    pub fn new(inner: Box<dyn Console>) -> Self {
        Self { inner, pending: Vec::new() }
    }

    /// The console inside (drops anything buffered).
    pub fn into_inner(self) -> Box<dyn Console> {
        self.inner
    }

    /// The raw console (bypasses the line buffer; call [`ConsolePort::discard_input`] first if
    /// lines may be pending).
    pub fn raw(&mut self) -> &mut dyn Console {
        &mut *self.inner
    }

    /// Change the framing; also drops buffered input, which belongs to the old framing.
    pub async fn configure(&mut self, config: SerialConfig) -> Result<(), ConsoleError> {
        self.pending.clear();
        self.inner.configure(config).await
    }

    /// Current framing.
    pub fn config(&self) -> SerialConfig {
        self.inner.config()
    }

    /// Drop buffered and pending input.
    pub async fn discard_input(&mut self) -> Result<(), ConsoleError> {
        self.pending.clear();
        self.inner.discard_input().await
    }

    /// Write bytes.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ConsoleError> {
        self.inner.write(data).await
    }

    /// Write `line` followed by `\r\n`.
    pub async fn write_line(&mut self, line: &str) -> Result<(), ConsoleError> {
        let mut data = Vec::with_capacity(line.len() + 2);
        data.extend_from_slice(line.as_bytes());
        data.extend_from_slice(b"\r\n");
        self.inner.write(&data).await
    }

    async fn fill(&mut self, deadline: Instant) -> Result<bool, ConsoleError> {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let mut buf = [0u8; 256];
        match self.inner.read(&mut buf, deadline - now).await {
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Err(ConsoleError::Timeout { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn take_line(&mut self) -> Option<String> {
        let pos = self.pending.iter().position(|b| *b == b'\n')?;
        let raw: Vec<u8> = self.pending.drain(..=pos).collect();
        let text = String::from_utf8_lossy(&raw);
        Some(text.trim_end_matches(['\r', '\n']).to_string())
    }

    fn tail(&self) -> String {
        let start = self.pending.len().saturating_sub(80);
        String::from_utf8_lossy(&self.pending[start..]).into_owned()
    }

    /// The next complete line (without its line ending).
    pub async fn read_line(&mut self, timeout: Duration) -> Result<String, ConsoleError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.take_line() {
                return Ok(line);
            }
            if !self.fill(deadline).await? {
                return Err(ConsoleError::Timeout { what: "a complete line".into(), timeout, seen: self.tail() });
            }
        }
    }

    /// Read lines until one matches `pattern` (a regular expression; plain text matches itself
    /// unless it contains regex metacharacters, see [`regex_lite::escape`]).
    pub async fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<ExpectMatch, ConsoleError> {
        let re = regex_lite::Regex::new(pattern)
            .map_err(|e| ConsoleError::Pattern { pattern: pattern.to_string(), message: e.to_string() })?;
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            while let Some(line) = self.take_line() {
                if re.is_match(&line) {
                    return Ok(ExpectMatch { line, before });
                }
                before.push(line);
            }
            if !self.fill(deadline).await? {
                let mut seen: Vec<String> = before.iter().rev().take(3).rev().cloned().collect();
                let tail = self.tail();
                if !tail.is_empty() {
                    seen.push(tail);
                }
                return Err(ConsoleError::Timeout {
                    what: format!("a line matching {pattern:?}"),
                    timeout,
                    seen: seen.join(" | "),
                });
            }
        }
    }

    /// Exactly `n` bytes (binary protocols such as AN3155).
    pub async fn read_exact(&mut self, n: usize, timeout: Duration) -> Result<Vec<u8>, ConsoleError> {
        let deadline = Instant::now() + timeout;
        while self.pending.len() < n {
            if !self.fill(deadline).await? {
                return Err(ConsoleError::Timeout { what: format!("{n} byte(s)"), timeout, seen: self.tail() });
            }
        }
        Ok(self.pending.drain(..n).collect())
    }
}

/// An in-memory console pair for tests: what one end writes, the other reads.
pub mod pipe {
    use super::*;
    use tokio::sync::mpsc;

    /// One end of a [`pair`].
    pub struct PipeConsole {
        tx: mpsc::UnboundedSender<u8>,
        rx: mpsc::UnboundedReceiver<u8>,
        config: SerialConfig,
    }

    /// Two connected consoles.
    pub fn pair(config: SerialConfig) -> (PipeConsole, PipeConsole) {
        let (atx, brx) = mpsc::unbounded_channel();
        let (btx, arx) = mpsc::unbounded_channel();
        (PipeConsole { tx: atx, rx: arx, config }, PipeConsole { tx: btx, rx: brx, config })
    }

    #[async_trait]
    impl Console for PipeConsole {
        async fn configure(&mut self, config: SerialConfig) -> Result<(), ConsoleError> {
            self.config = config;
            Ok(())
        }
        fn config(&self) -> SerialConfig {
            self.config
        }
        async fn write(&mut self, data: &[u8]) -> Result<(), ConsoleError> {
            for b in data {
                self.tx
                    .send(*b)
                    .map_err(|_| ConsoleError::Port { port: "pipe".into(), message: "peer closed".into() })?;
            }
            Ok(())
        }
        async fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, ConsoleError> {
            let first = crate::time::timeout(timeout, self.rx.recv())
                .await
                .map_err(|_| ConsoleError::Timeout { what: "data".into(), timeout, seen: String::new() })?
                .ok_or_else(|| ConsoleError::Port { port: "pipe".into(), message: "peer closed".into() })?;
            buf[0] = first;
            let mut n = 1;
            while n < buf.len() {
                match self.rx.try_recv() {
                    Ok(b) => {
                        buf[n] = b;
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            Ok(n)
        }
        async fn discard_input(&mut self) -> Result<(), ConsoleError> {
            while self.rx.try_recv().is_ok() {}
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pipe::pair;
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lines_expect_and_exact_reads() {
        let (a, mut b) = pair(SerialConfig::n81(115_200));
        let mut port = ConsolePort::new(Box::new(a));
        b.write(b"boot: rom\r\nstage=app rsr=0x00FA0000\r\n\x79\x1Fpartial").await.unwrap();
        assert_eq!(port.read_line(Duration::from_secs(1)).await.unwrap(), "boot: rom");
        let m = port.expect(r"stage=(\w+)", Duration::from_secs(1)).await.unwrap();
        assert_eq!(m.line, "stage=app rsr=0x00FA0000");
        assert_eq!(port.read_exact(2, Duration::from_secs(1)).await.unwrap(), vec![0x79, 0x1F]);
        let e = port.expect("never", Duration::from_secs(2)).await.unwrap_err().to_string();
        assert!(e.contains("\"never\"") && e.contains("partial"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn bad_pattern_is_reported() {
        let (a, _b) = pair(SerialConfig::n81(9600));
        let mut port = ConsolePort::new(Box::new(a));
        let e = port.expect("(", Duration::from_secs(1)).await.unwrap_err().to_string();
        assert!(e.contains("invalid expect pattern"), "{e}");
    }

    #[test]
    fn char_time() {
        assert_eq!(SerialConfig::e81(115_200).char_time(), Duration::from_nanos(95_486));
        assert_eq!(SerialConfig::n81(115_200).to_string(), "115200 8N1");
    }
}
