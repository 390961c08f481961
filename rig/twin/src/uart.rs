//! The simulated serial link between the host's console and the board's USART.
//!
//! Bytes take their character time at the sender's framing. The receiver gets them only if its
//! framing matches (baud within 2.5 %, same parity); otherwise they are lost to framing and
//! parity errors. The ROM bootloader listens in autobaud mode: the first character must be 0x7F
//! sent 8E1; it then locks to the host's baud. Any other first character locks it to a wrong
//! baud, so nothing more gets through until the next reset (AN2606: "Receiving characters
//! different from 0x7F ... causes bootloader to start communication using a wrong baudrate").

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bootproof_rig::ConsoleError;
use bootproof_rig::console::{Console, Parity, SerialConfig};
use bootproof_rig::time::Instant;
use tokio::sync::Notify;

/// How the board's receiver is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardRx {
    /// USART disabled: everything is lost.
    Closed,
    /// Fixed framing.
    Fixed(SerialConfig),
    /// ROM bootloader autobaud: waiting for the 0x7F sync character at 8E1.
    Autobaud,
}

#[derive(Default)]
struct Side {
    queue: VecDeque<u8>,
    busy_until: Option<Instant>,
    notify: Arc<Notify>,
    lost: u64,
}

struct LinkState {
    host_config: SerialConfig,
    /// The host sends and expects a framing no board UART uses (see [`UartLink::set_host_foreign`]).
    host_foreign: bool,
    board_rx: BoardRx,
    host: Side,
    board: Side,
}

/// The serial link of one board.
#[derive(Clone)]
pub struct UartLink {
    inner: Arc<Mutex<LinkState>>,
}

/// Characters delivered together (the receiver sees them at the end of the burst).
pub const BURST: usize = 16;

fn compatible(a: SerialConfig, b: SerialConfig) -> bool {
    let ratio = a.baud as f64 / b.baud as f64;
    a.parity == b.parity && (0.975..=1.025).contains(&ratio)
}

impl UartLink {
    /// A link whose host side starts at `host_config`; the board side starts closed.
    pub fn new(host_config: SerialConfig) -> Self {
        UartLink {
            inner: Arc::new(Mutex::new(LinkState {
                host_config,
                host_foreign: false,
                board_rx: BoardRx::Closed,
                host: Side::default(),
                board: Side::default(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The host-side console.
    pub fn host_console(&self) -> HostConsole {
        HostConsole { link: self.clone() }
    }

    /// Set up the board's receiver (on reset: `Closed`).
    pub fn set_board_rx(&self, rx: BoardRx) {
        let mut s = self.lock();
        s.board_rx = rx;
        s.board.queue.clear();
    }

    /// Mark the host's framing as one no board UART of the twin uses (a data size other than 8
    /// bits, mark or space parity): from now on every character either way is a framing error,
    /// lost, as it is between two real UARTs that disagree on the frame. `false` returns to the
    /// host's [`SerialConfig`] alone deciding.
    pub fn set_host_foreign(&self, foreign: bool) {
        self.lock().host_foreign = foreign;
    }

    /// The board receiver's current setup.
    pub fn board_rx(&self) -> BoardRx {
        self.lock().board_rx
    }

    /// Characters lost to framing mismatches, (host → board, board → host).
    pub fn lost(&self) -> (u64, u64) {
        let s = self.lock();
        (s.board.lost, s.host.lost)
    }

    /// Board side: transmit `data` at the board's framing; returns when it is on the wire.
    /// Bytes reach the host in bursts of at most [`BURST`] characters, each at the time its
    /// last character has been sent.
    pub async fn board_write(&self, data: &[u8]) {
        for chunk in data.chunks(BURST) {
            let (end, cfg) = {
                let mut s = self.lock();
                let cfg = match s.board_rx {
                    BoardRx::Fixed(c) => c,
                    // The ROM answers at the baud it locked to, the host's after a good sync.
                    BoardRx::Autobaud | BoardRx::Closed => return,
                };
                let now = Instant::now();
                let start = s.board.busy_until.filter(|b| *b > now).unwrap_or(now);
                let end = start + cfg.char_time() * chunk.len() as u32;
                s.board.busy_until = Some(end);
                (end, cfg)
            };
            bootproof_rig::time::sleep_until(end).await;
            let mut s = self.lock();
            if compatible(cfg, s.host_config) && !s.host_foreign {
                s.host.queue.extend(chunk);
                s.host.notify.notify_one();
            } else {
                s.host.lost += chunk.len() as u64;
            }
        }
    }

    /// Board side: bytes received so far, without waiting.
    pub fn board_try_read(&self, max: usize) -> Vec<u8> {
        let mut s = self.lock();
        let n = s.board.queue.len().min(max);
        s.board.queue.drain(..n).collect()
    }

    /// Board side: notified when bytes arrive.
    pub fn board_notify(&self) -> Arc<Notify> {
        self.lock().board.notify.clone()
    }

    /// Board side: bytes received so far, waiting up to `timeout` for at least one.
    pub async fn board_read(&self, max: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            let notify = {
                let mut s = self.lock();
                if !s.board.queue.is_empty() {
                    let n = s.board.queue.len().min(max);
                    return s.board.queue.drain(..n).collect();
                }
                s.board.notify.clone()
            };
            if bootproof_rig::time::timeout_at(deadline, notify.notified()).await.is_err() {
                return Vec::new();
            }
        }
    }

    async fn host_write(&self, data: &[u8]) {
        for chunk in data.chunks(BURST) {
            self.host_burst(chunk).await;
        }
    }

    async fn host_burst(&self, data: &[u8]) {
        let (end, cfg) = {
            let mut s = self.lock();
            let cfg = s.host_config;
            let now = Instant::now();
            let start = s.host.busy_until.filter(|b| *b > now).unwrap_or(now);
            let end = start + cfg.char_time() * data.len() as u32;
            s.host.busy_until = Some(end);
            (end, cfg)
        };
        bootproof_rig::time::sleep_until(end).await;
        let mut s = self.lock();
        let mut delivered = 0;
        let foreign = s.host_foreign;
        for &b in data {
            match s.board_rx {
                BoardRx::Closed => break,
                BoardRx::Fixed(rx) => {
                    if compatible(cfg, rx) && !foreign {
                        s.board.queue.push_back(b);
                        delivered += 1;
                    } else {
                        s.board.lost += 1;
                    }
                }
                BoardRx::Autobaud => {
                    if cfg.parity == Parity::Even && b == 0x7F && !foreign {
                        s.board_rx = BoardRx::Fixed(cfg);
                        s.board.queue.push_back(b);
                        delivered += 1;
                    } else {
                        // Wrong sync character: the autobaud measures a wrong rate.
                        let wrong = SerialConfig { baud: cfg.baud / 2 + 1, parity: Parity::Even };
                        s.board_rx = BoardRx::Fixed(wrong);
                        s.board.lost += 1;
                    }
                }
            }
        }
        if delivered > 0 {
            s.board.notify.notify_one();
        }
    }
}

/// The host's console on the link; implements [`Console`].
pub struct HostConsole {
    link: UartLink,
}

#[async_trait]
impl Console for HostConsole {
    async fn configure(&mut self, config: SerialConfig) -> Result<(), ConsoleError> {
        self.link.lock().host_config = config;
        Ok(())
    }

    fn config(&self) -> SerialConfig {
        self.link.lock().host_config
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), ConsoleError> {
        self.link.host_write(data).await;
        Ok(())
    }

    async fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, ConsoleError> {
        let deadline = Instant::now() + timeout;
        loop {
            let notify = {
                let mut s = self.link.lock();
                if !s.host.queue.is_empty() {
                    let n = s.host.queue.len().min(buf.len());
                    for (i, b) in s.host.queue.drain(..n).enumerate() {
                        buf[i] = b;
                    }
                    return Ok(n);
                }
                s.host.notify.clone()
            };
            if bootproof_rig::time::timeout_at(deadline, notify.notified()).await.is_err() {
                return Err(ConsoleError::Timeout { what: "serial data".into(), timeout, seen: String::new() });
            }
        }
    }

    async fn discard_input(&mut self) -> Result<(), ConsoleError> {
        self.link.lock().host.queue.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn autobaud_locks_on_0x7f_at_8e1() {
        bootproof_rig::time::set_thread_scale(Some(bootproof_rig::time::VIRTUAL_SCALE));
        let link = UartLink::new(SerialConfig::e81(115_200));
        let mut host = link.host_console();
        link.set_board_rx(BoardRx::Autobaud);
        let t0 = Instant::now();
        host.write(&[0x7F]).await.unwrap();
        // Virtual time is exact to the microsecond.
        let d = t0.elapsed().abs_diff(SerialConfig::e81(115_200).char_time());
        assert!(d < Duration::from_micros(1), "{:?}", t0.elapsed());
        assert_eq!(link.board_read(16, Duration::ZERO).await, vec![0x7F]);
        assert_eq!(link.board_rx(), BoardRx::Fixed(SerialConfig::e81(115_200)));
        link.board_write(&[0x79]).await;
        let mut b = [0u8; 4];
        assert_eq!(host.read(&mut b, Duration::from_millis(1)).await.unwrap(), 1);
        assert_eq!(b[0], 0x79);
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_sync_or_parity_gets_nothing_through() {
        let link = UartLink::new(SerialConfig::n81(115_200));
        let mut host = link.host_console();
        link.set_board_rx(BoardRx::Autobaud);
        host.write(&[0x7F, 0x00, 0xFF]).await.unwrap();
        assert!(link.board_read(16, Duration::from_millis(5)).await.is_empty());
        // Even with the right framing afterwards, the autobaud has locked to a wrong rate.
        host.configure(SerialConfig::e81(115_200)).await.unwrap();
        host.write(&[0x7F]).await.unwrap();
        assert!(link.board_read(16, Duration::from_millis(5)).await.is_empty());
        assert!(link.lost().0 >= 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_foreign_host_framing_gets_nothing_through_either_way() {
        let link = UartLink::new(SerialConfig::e81(115_200));
        let mut host = link.host_console();
        link.set_board_rx(BoardRx::Autobaud);
        link.set_host_foreign(true);
        // 0x7F at 115200 with, say, 7 data bits: the autobaud measures a wrong rate.
        host.write(&[0x7F]).await.unwrap();
        assert!(link.board_read(16, Duration::from_millis(5)).await.is_empty());
        assert_ne!(link.board_rx(), BoardRx::Fixed(SerialConfig::e81(115_200)));
        // A board UART at the host's baud and parity still cannot frame it, nor the host the board's.
        link.set_board_rx(BoardRx::Fixed(SerialConfig::e81(115_200)));
        host.write(&[0x11]).await.unwrap();
        assert!(link.board_read(16, Duration::from_millis(5)).await.is_empty());
        link.board_write(&[0x79]).await;
        let mut b = [0u8; 4];
        assert!(host.read(&mut b, Duration::from_millis(5)).await.is_err());
        assert_eq!(link.lost(), (2, 1));
        // Back to 8 data bits: the same bytes pass.
        link.set_host_foreign(false);
        host.write(&[0x11]).await.unwrap();
        assert_eq!(link.board_read(16, Duration::from_millis(5)).await, vec![0x11]);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_board_side_loses_everything() {
        let link = UartLink::new(SerialConfig::n81(115_200));
        let mut host = link.host_console();
        host.write(b"hello").await.unwrap();
        link.set_board_rx(BoardRx::Fixed(SerialConfig::n81(115_200)));
        assert!(link.board_read(16, Duration::from_millis(1)).await.is_empty());
        link.board_write(b"up\r\n").await;
        let mut b = [0u8; 8];
        assert_eq!(host.read(&mut b, Duration::from_millis(1)).await.unwrap(), 4);
    }
}
