//! Errors of the rig capabilities. Every message names the part and what to check.

use std::path::PathBuf;
use std::time::Duration;

use crate::Capability;

/// A control line (BOOT0, NRST, power relay) could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The GPIO could not be claimed or written.
    #[error("{line}: {message}")]
    Gpio {
        /// Which line, e.g. "BOOT0 relay (GPIO 17, active-low)".
        line: String,
        /// What went wrong and what to check.
        message: String,
    },
    /// A timing request the rig cannot honour safely.
    #[error("{line}: {message}")]
    Timing {
        /// Which line.
        line: String,
        /// What went wrong and what to change.
        message: String,
    },
    /// The dry-run line file could not be written.
    #[error("cannot write line state to {path}: {source}; check the directory exists and is writable")]
    File {
        /// The state file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The debug probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No probe matched, or it could not be opened.
    #[error("probe {selector}: {message}")]
    Open {
        /// The selector from the rig config.
        selector: String,
        /// What went wrong and what to check.
        message: String,
    },
    /// Attaching to the target failed after all retries.
    #[error("cannot attach to {chip} after {attempts} attempt(s): {message}")]
    Attach {
        /// The chip.
        chip: String,
        /// Attempts made.
        attempts: u32,
        /// The last error and what to check.
        message: String,
    },
    /// A destructive operation was requested without its opt-in.
    #[error("{operation} is destructive and was not permitted; {how}")]
    NotPermitted {
        /// What was refused.
        operation: &'static str,
        /// How to allow it.
        how: &'static str,
    },
    /// A memory access failed.
    #[error("memory access at {address:#010x} ({len} bytes) failed: {message}")]
    Memory {
        /// Address.
        address: u32,
        /// Length.
        len: usize,
        /// Why.
        message: String,
    },
    /// Flashing failed.
    #[error("flashing {image} failed: {message}")]
    Flash {
        /// The image.
        image: String,
        /// Why and what to try.
        message: String,
    },
    /// RTT could not be used.
    #[error("RTT: {0}")]
    Rtt(String),
    /// Any other probe failure.
    #[error("probe: {0}")]
    Other(String),
}

/// The CAN interface failed.
#[derive(Debug, thiserror::Error)]
pub enum CanError {
    /// Nothing arrived in time.
    #[error("no CAN frame within {0:?}")]
    Timeout(Duration),
    /// The frame cannot be built as asked.
    #[error("invalid CAN frame: {0}")]
    InvalidFrame(String),
    /// The interface could not be opened or used.
    #[error("CAN interface {interface}: {message}")]
    Interface {
        /// Interface name.
        interface: String,
        /// What went wrong and what to check.
        message: String,
    },
    /// The frame needs CAN FD but the interface is classic.
    #[error(
        "CAN FD frame on classic interface {interface}; set can.data_bitrate in the rig config and bring the interface up with `fd on`"
    )]
    FdNotEnabled {
        /// Interface name.
        interface: String,
    },
}

/// The serial console failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Nothing (or not the expected text) arrived in time.
    #[error("{what} not seen within {timeout:?}{}", if seen.is_empty() { String::new() } else { format!("; last output: {seen:?}") })]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
        /// The tail of what did arrive.
        seen: String,
    },
    /// The port could not be opened or used.
    #[error("serial port {port}: {message}")]
    Port {
        /// Device path.
        port: String,
        /// What went wrong and what to check.
        message: String,
    },
    /// An expect pattern is not a valid regular expression.
    #[error("invalid expect pattern {pattern:?}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
}

/// The rig lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error(
        "rig lock {path} is still held by {holder} after {waited:?}: is another bootproof job using this rig? Wait for it to finish or stop it, then retry"
    )]
    Timeout {
        /// Lock file.
        path: PathBuf,
        /// Who holds it.
        holder: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The lock file could not be created or opened.
    #[error(
        "cannot open rig lock {path}: {source}; create its directory writable by this user (see ci/README.md) or set `lock` in the rig config"
    )]
    Open {
        /// Lock file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A capability the rig does not have. Scenarios turn this into a skip, not a failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("this rig has no {capability}: {reason}")]
pub struct Missing {
    /// The capability.
    pub capability: Capability,
    /// Why (not configured, failed to open, ...).
    pub reason: String,
}

/// Any rig failure.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// See [`LineError`].
    #[error(transparent)]
    Line(#[from] LineError),
    /// See [`ProbeError`].
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// See [`CanError`].
    #[error(transparent)]
    Can(#[from] CanError),
    /// See [`ConsoleError`].
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// See [`LockError`].
    #[error(transparent)]
    Lock(#[from] LockError),
    /// See [`Missing`].
    #[error(transparent)]
    Missing(#[from] Missing),
    /// See [`crate::image::ImageError`].
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The rig configuration or board profile is unusable.
    #[error(transparent)]
    Config(#[from] bootproof_fixtures::ConfigError),
    /// A backend this build does not include.
    #[error(
        "{part} needs the `hw` feature, which this bootproof was built without; rebuild with `cargo build --release --features hw` (Linux only)"
    )]
    NotBuilt {
        /// The part.
        part: &'static str,
    },
}
