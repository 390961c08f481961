//! The serial console through serialport (no libudev: `default-features = false`).
//!
//! serialport is blocking: a reader thread polls the port with a short timeout and hands bytes
//! to the async side over a channel; writes and reconfiguration go through a second handle of
//! the same open port. After a power cycle, USB serial adapters powered by the target may
//! re-enumerate: prefer `/dev/serial/by-id/...` paths and re-open the rig.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bootproof_fixtures::ConsoleConfig;
use serialport::SerialPort;
use tokio::sync::mpsc;

use crate::console::{Console, Parity, SerialConfig};
use crate::error::ConsoleError;

/// serialport's parity for ours.
pub fn parity(p: Parity) -> serialport::Parity {
    match p {
        Parity::None => serialport::Parity::None,
        Parity::Even => serialport::Parity::Even,
        Parity::Odd => serialport::Parity::Odd,
    }
}

/// Why a port could not be opened, and what to do.
pub fn explain_open(path: &str, e: &serialport::Error) -> String {
    match e.kind() {
        serialport::ErrorKind::NoDevice => format!(
            "{path} does not exist (or vanished after a power cycle): check `ls /dev/serial/by-id/` and use that stable path"
        ),
        serialport::ErrorKind::Io(std::io::ErrorKind::NotFound) => {
            format!("{path} does not exist: check `ls /dev/serial/by-id/`")
        }
        serialport::ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => {
            format!("permission denied on {path}: add the CI user to the `dialout` group (ci/README.md)")
        }
        _ if e.to_string().contains("busy") || e.to_string().contains("exclusive") => {
            format!("{path} is in use by another program (a terminal, ModemManager?): close it")
        }
        _ => format!("{path}: {e}"),
    }
}

/// A serial console.
pub struct SerialConsole {
    path: String,
    config: SerialConfig,
    port: Arc<Mutex<serialport::TTYPort>>,
    rx: mpsc::UnboundedReceiver<Result<Vec<u8>, String>>,
    pending: Vec<u8>,
    stop: Arc<AtomicBool>,
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn port_err(path: &str, message: impl Into<String>) -> ConsoleError {
    ConsoleError::Port { port: path.to_string(), message: message.into() }
}

/// Open the port in `cfg` at 8N1 and `cfg.baud`.
pub async fn open(cfg: &ConsoleConfig) -> Result<Box<dyn Console>, ConsoleError> {
    Ok(Box::new(SerialConsole::open(&cfg.port.to_string_lossy(), SerialConfig::n81(cfg.baud))?))
}

impl SerialConsole {
    /// Open `path` with `config`.
    pub fn open(path: &str, config: SerialConfig) -> Result<SerialConsole, ConsoleError> {
        let port = serialport::new(path, config.baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(parity(config.parity))
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(Duration::from_millis(20))
            .open_native()
            .map_err(|e| port_err(path, explain_open(path, &e)))?;
        let mut reader =
            port.try_clone_native().map_err(|e| port_err(path, format!("cannot clone the port handle: {e}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_r = stop.clone();
        std::thread::Builder::new()
            .name(format!("serial {path}"))
            .spawn(move || {
                let mut buf = [0u8; 512];
                while !stop_r.load(Ordering::Relaxed) {
                    match reader.read(&mut buf) {
                        Ok(0) => {}
                        Ok(n) => {
                            if tx.send(Ok(buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::TimedOut
                                || e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| port_err(path, e.to_string()))?;
        Ok(SerialConsole {
            path: path.to_string(),
            config,
            port: Arc::new(Mutex::new(port)),
            rx,
            pending: Vec::new(),
            stop,
        })
    }
}

#[async_trait]
impl Console for SerialConsole {
    async fn configure(&mut self, config: SerialConfig) -> Result<(), ConsoleError> {
        let mut p = self.port.lock().unwrap_or_else(|e| e.into_inner());
        p.set_baud_rate(config.baud)
            .map_err(|e| port_err(&self.path, format!("cannot set {} baud: {e}", config.baud)))?;
        p.set_parity(parity(config.parity))
            .map_err(|e| port_err(&self.path, format!("cannot set parity {:?}: {e}", config.parity)))?;
        self.config = config;
        Ok(())
    }

    fn config(&self) -> SerialConfig {
        self.config
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), ConsoleError> {
        let port = self.port.clone();
        let data = data.to_vec();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut p = port.lock().unwrap_or_else(|e| e.into_inner());
            p.write_all(&data).and_then(|()| p.flush())
        })
        .await
        .map_err(|e| port_err(&path, e.to_string()))?
        .map_err(|e| port_err(&self.path, format!("write failed: {e}")))
    }

    async fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, ConsoleError> {
        if self.pending.is_empty() {
            match crate::time::timeout(timeout, self.rx.recv()).await {
                Ok(Some(Ok(data))) => self.pending = data,
                Ok(Some(Err(e))) => {
                    return Err(port_err(&self.path, format!("read failed: {e}; the device may have been unplugged")));
                }
                Ok(None) => return Err(port_err(&self.path, "reader stopped")),
                Err(_) => {
                    return Err(ConsoleError::Timeout { what: "serial data".into(), timeout, seen: String::new() });
                }
            }
        }
        let n = self.pending.len().min(buf.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }

    async fn discard_input(&mut self) -> Result<(), ConsoleError> {
        self.pending.clear();
        while self.rx.try_recv().is_ok() {}
        let p = self.port.lock().unwrap_or_else(|e| e.into_inner());
        p.clear(serialport::ClearBuffer::Input).map_err(|e| port_err(&self.path, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn parity_maps() {
        assert_eq!(parity(Parity::Even), serialport::Parity::Even);
        assert_eq!(parity(Parity::None), serialport::Parity::None);
        assert_eq!(parity(Parity::Odd), serialport::Parity::Odd);
    }

    #[tokio::test]
    async fn missing_port_names_the_path_and_suggests_by_id() {
        let cfg = ConsoleConfig { port: "/dev/ttyNOPE9".into(), baud: 115_200, via_stlink: false };
        let e = open(&cfg).await.err().expect("no such port").to_string();
        assert!(e.contains("/dev/ttyNOPE9") && e.contains("/dev/serial/by-id"), "{e}");
    }

    #[tokio::test]
    async fn bytes_cross_a_real_pseudo_terminal_both_ways() {
        // A pty pair stands in for the USB serial adapter: serialport opens the slave.
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();
        let console = SerialConsole::open(slave.to_str().unwrap(), SerialConfig::n81(115_200)).unwrap();
        let master = std::fs::File::from(pty.master);
        let mut master_w = master.try_clone().unwrap();
        master_w.write_all(b"stage=app\r\n").unwrap();
        let mut port = crate::ConsolePort::new(Box::new(console));
        let line = port.read_line(Duration::from_secs(2)).await.unwrap();
        assert_eq!(line, "stage=app");
        port.write(b"\x7f").await.unwrap();
        let mut got = [0u8; 1];
        let mut master_r = master;
        master_r.read_exact(&mut got).unwrap();
        assert_eq!(got, [0x7F]);
        assert_eq!(port.config(), SerialConfig::n81(115_200));
    }
}
