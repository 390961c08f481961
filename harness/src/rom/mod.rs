//! Host-side clients for ST's ROM bootloader: FDCAN (AN5405), bxCAN (AN3154) and USART
//! (AN3155), over the rig's CAN and console capabilities.
//!
//! ```text
//! let mut rom = RomClient::open(&mut rig, None)?;   // picks the board's transport
//! rom.connect().await?;                              // waits out start-up, checks the chip ID
//! rom.write_memory(0x0802_0000, &block).await?;
//! rom.go(0x0802_0000).await?;
//! ```
//!
//! Every failure names the command, the stage and what to check: a NACK, a timeout, a wrong
//! chip (an error, not a warning), or readout protection.

mod can;
mod usart;

use std::time::Duration;

use bootproof_fixtures::{BoardProfile, RomTransportKind};
use bootproof_rig::console::ConsolePort;
use bootproof_rig::stm32rom::{EraseRequest, MAX_BLOCK, op};
use bootproof_rig::{CanBus, CanError, ConsoleError, Missing, Permissions, ProbeError, Rig};

/// How long a reply may take (per frame or byte burst).
pub const RESPONSE: Duration = Duration::from_millis(500);

/// A ROM bootloader failure.
#[derive(Debug, thiserror::Error)]
pub enum RomError {
    /// The bootloader refused a request.
    #[error("ROM bootloader NACKed {command} ({stage}){}", hint.map(|h| format!(": {h}")).unwrap_or_default())]
    Nack {
        /// Command name.
        command: &'static str,
        /// Which step.
        stage: &'static str,
        /// The likely cause.
        hint: Option<&'static str>,
    },
    /// No reply in time.
    #[error(
        "no reply to {command} ({stage}) within {waited:?}; is the board powered and in its ROM bootloader (BOOT0 high at reset), and does the {transport} link run at the bootloader's rate?"
    )]
    Timeout {
        /// Command name.
        command: &'static str,
        /// Which step.
        stage: &'static str,
        /// How long.
        waited: Duration,
        /// Transport.
        transport: RomTransportKind,
    },
    /// Nobody acknowledged our CAN frame.
    #[error(
        "no node acknowledged the {command} frame: nothing listens at {rates} (board unpowered, not in its ROM bootloader, wrong bit rate, or the bus is not terminated)"
    )]
    NoAck {
        /// Command name.
        command: &'static str,
        /// The bus's bit rates.
        rates: String,
    },
    /// The chip is not the one the board profile names.
    #[error(
        "wrong chip: the ROM bootloader reports PID {got:#05x}, but board profile {board} expects {expected:#05x}; check the rig config's `board` or the wiring"
    )]
    WrongChip {
        /// From the profile.
        expected: u16,
        /// From Get ID.
        got: u16,
        /// Profile name.
        board: String,
    },
    /// Readout protection blocks the operation.
    #[error(
        "{what} is blocked by readout protection (RDP level 1); remove it with Readout Unprotect (mass-erases the flash; needs --allow-readout-protection)"
    )]
    ReadoutProtected {
        /// What was attempted.
        what: String,
    },
    /// A request the client will not send.
    #[error("{0}")]
    Invalid(String),
    /// A reply that does not fit the protocol.
    #[error("unexpected reply to {command}: {got}")]
    Protocol {
        /// Command name.
        command: &'static str,
        /// What came.
        got: String,
    },
    /// A destructive operation without its opt-in.
    #[error(transparent)]
    NotPermitted(#[from] ProbeError),
    /// The board has no ROM bootloader transport this rig can reach.
    #[error(transparent)]
    NoTransport(#[from] Missing),
    /// CAN interface failure.
    #[error(transparent)]
    Can(#[from] CanError),
    /// Serial failure.
    #[error(transparent)]
    Console(#[from] ConsoleError),
}

/// What Get reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetInfo {
    /// Protocol version byte.
    pub protocol_version: u8,
    /// Supported opcodes.
    pub commands: Vec<u8>,
}

pub(crate) enum Link<'r> {
    Can { bus: &'r mut dyn CanBus, fd: bool },
    Usart(&'r mut ConsolePort),
}

/// A session with the ROM bootloader over one transport.
pub struct RomClient<'r> {
    link: Link<'r>,
    board: BoardProfile,
    kind: RomTransportKind,
    synced: bool,
}

fn check_block(addr: u32, len: usize, what: &str) -> Result<(), RomError> {
    if len == 0 || len > MAX_BLOCK {
        return Err(RomError::Invalid(format!(
            "{what} of {len} bytes at {addr:#010x}: the bootloader moves 1..=256 bytes per command"
        )));
    }
    Ok(())
}

impl<'r> RomClient<'r> {
    /// A client on `rig` for transport `kind` (default: the board's first transport the rig can
    /// reach: FDCAN/bxCAN if the rig has CAN, else USART).
    pub fn open(rig: &'r mut Rig, kind: Option<RomTransportKind>) -> Result<RomClient<'r>, RomError> {
        let board = rig.board().clone();
        let has_can = rig.has(bootproof_fixtures::Capability::Can);
        let kind = match kind {
            Some(k) => k,
            None => board
                .rom
                .transports
                .iter()
                .map(|t| t.kind())
                .find(|k| *k == RomTransportKind::Usart || has_can)
                .ok_or_else(|| RomError::Invalid(format!("{} lists no ROM bootloader transport", board.name)))?,
        };
        if board.rom.transport(kind).is_none() {
            let has: Vec<String> = board.rom.transports.iter().map(|t| t.kind().to_string()).collect();
            return Err(RomError::Invalid(format!(
                "{}'s ROM bootloader has no {kind} interface (it has: {})",
                board.name,
                has.join(", ")
            )));
        }
        let link = match kind {
            RomTransportKind::Fdcan | RomTransportKind::Bxcan => {
                Link::Can { bus: rig.can()?, fd: kind == RomTransportKind::Fdcan }
            }
            RomTransportKind::Usart => Link::Usart(rig.console()?),
        };
        Ok(RomClient { link, board, kind, synced: false })
    }

    /// The transport in use.
    pub fn transport(&self) -> RomTransportKind {
        self.kind
    }

    /// The board profile.
    pub fn board(&self) -> &BoardProfile {
        &self.board
    }

    fn timeout(&self, command: &'static str, stage: &'static str, waited: Duration) -> RomError {
        RomError::Timeout { command, stage, waited, transport: self.kind }
    }

    /// Open the session: wait until the bootloader has started (retrying while it does), sync
    /// (USART), and check the chip ID against the board profile.
    pub async fn connect(&mut self) -> Result<u16, RomError> {
        let startup = Duration::from_micros(self.board.rom.startup_us as u64);
        let attempts = 5;
        let mut last = None;
        for attempt in 0..attempts {
            let r = match &mut self.link {
                Link::Usart(_) => self.sync().await,
                Link::Can { fd: false, .. } => can::sync(self).await,
                Link::Can { fd: true, .. } => Ok(()),
            };
            let r = match r {
                Ok(()) => self.check_id().await,
                Err(e) => Err(e),
            };
            match r {
                Ok(pid) => return Ok(pid),
                Err(e @ (RomError::WrongChip { .. } | RomError::Nack { .. })) => return Err(e),
                Err(e) => {
                    tracing::debug!("ROM connect attempt {} failed: {e}", attempt + 1);
                    last = Some(e);
                    bootproof_rig::time::sleep(startup.max(Duration::from_millis(20))).await;
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Get: protocol version and command list.
    pub async fn get(&mut self) -> Result<GetInfo, RomError> {
        match self.link {
            Link::Can { .. } => can::get(self).await,
            Link::Usart(_) => usart::get(self).await,
        }
    }

    /// Get Version: the protocol version of this interface (AN3155 §3.2; USART V3.1 = 0x31,
    /// FDCAN V1.1 = 0x11, bxCAN V2.0 = 0x20). The bootloader ID is [`RomClient::bootloader_id`].
    pub async fn get_version(&mut self) -> Result<u8, RomError> {
        match self.link {
            Link::Can { .. } => can::get_version(self).await,
            Link::Usart(_) => usart::get_version(self).await,
        }
    }

    /// The bootloader ID (AN2606 §4.2: "programmed in the last byte address - 1 of the device
    /// system memory and can be read by using the Read memory command"), e.g. 0x93 = V9.3.
    pub async fn bootloader_id(&mut self) -> Result<u8, RomError> {
        let at = self.board.identity.bootloader_id_address;
        Ok(self.read_memory(at, 1).await?[0])
    }

    /// Get ID: the product ID, unchecked.
    pub async fn get_id(&mut self) -> Result<u16, RomError> {
        match self.link {
            Link::Can { .. } => can::get_id(self).await,
            Link::Usart(_) => usart::get_id(self).await,
        }
    }

    /// Get ID, checked against the board profile: a wrong chip is an error.
    pub async fn check_id(&mut self) -> Result<u16, RomError> {
        let pid = self.get_id().await?;
        if pid != self.board.identity.pid {
            return Err(RomError::WrongChip {
                expected: self.board.identity.pid,
                got: pid,
                board: self.board.name.clone(),
            });
        }
        Ok(pid)
    }

    /// Read Memory: up to 256 bytes.
    pub async fn read_memory(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, RomError> {
        check_block(addr, len, "Read Memory")?;
        match self.link {
            Link::Can { .. } => can::read_memory(self, addr, len).await,
            Link::Usart(_) => usart::read_memory(self, addr, len).await,
        }
    }

    /// Write Memory: up to 256 bytes. A flash write is padded with erased bytes to whole
    /// flash words and to the family's Write Memory alignment (AN2606 §4.6 Table 7), whichever
    /// is larger: an unaligned write fails and makes every later one fail until reset, and a
    /// flash word written in two parts is programmed twice (an ECC error on the H7, refused on
    /// the G0). The padding programs nothing where the flash is erased.
    pub async fn write_memory(&mut self, addr: u32, data: &[u8]) -> Result<(), RomError> {
        check_block(addr, data.len(), "Write Memory")?;
        let word = self.board.flash.word.max(self.board.rom.write_alignment).max(1);
        if !self.board.flash.contains(addr) {
            return match self.link {
                Link::Can { .. } => can::write_memory(self, addr, data).await,
                Link::Usart(_) => usart::write_memory(self, addr, data).await,
            };
        }
        let start = addr - addr % word;
        let end = (addr as u64 + data.len() as u64).div_ceil(word as u64) * word as u64;
        let mut buf = vec![self.board.flash.erased; (end - start as u64) as usize];
        buf[(addr - start) as usize..(addr - start) as usize + data.len()].copy_from_slice(data);
        if buf.len() > MAX_BLOCK {
            return Err(RomError::Invalid(format!(
                "Write Memory of {} bytes at {addr:#010x}: padded to {} bytes on {}'s {word}-byte boundaries, more than one command moves (256); split it on {word}-byte boundaries",
                data.len(),
                buf.len(),
                self.board.name
            )));
        }
        match self.link {
            Link::Can { .. } => can::write_memory(self, start, &buf).await,
            Link::Usart(_) => usart::write_memory(self, start, &buf).await,
        }
    }

    /// Erase sectors, a bank, or everything (mass erase needs the opt-in).
    pub async fn erase(&mut self, req: &EraseRequest, permissions: Permissions) -> Result<(), RomError> {
        let n = self.board.flash.sector_list().len();
        match req {
            EraseRequest::Mass | EraseRequest::Bank(_) => permissions.check_mass_erase()?,
            EraseRequest::Sectors(list) => {
                if list.is_empty() {
                    return Err(RomError::Invalid("erase of an empty sector list".into()));
                }
                if let Some(bad) = list.iter().find(|s| **s as usize >= n) {
                    return Err(RomError::Invalid(format!(
                        "sector {bad} does not exist on {} ({n} sectors)",
                        self.board.name
                    )));
                }
            }
        }
        let sectors = self.board.flash.sector_list();
        let waited = match req {
            EraseRequest::Sectors(list) => list.iter().map(|s| sectors[*s as usize].erase_ms as u64).sum::<u64>(),
            _ => self.board.flash.mass_erase_ms as u64,
        };
        // Datasheet maxima are up to ~4x the typical times.
        let timeout = Duration::from_millis(waited * 4 + 1000);
        match self.link {
            Link::Can { .. } => can::erase(self, req, timeout).await,
            Link::Usart(_) => usart::erase(self, req, timeout).await,
        }
    }

    /// Go: jump to the vector table at `addr` (no reset: the reset flags stay as they were).
    pub async fn go(mut self, addr: u32) -> Result<(), RomError> {
        match self.link {
            Link::Can { .. } => can::simple(&mut self, op::GO, &addr.to_be_bytes(), 1).await,
            Link::Usart(_) => usart::go(&mut self, addr).await,
        }
    }

    /// Readout Protect (RDP level 1). The MCU resets afterwards.
    pub async fn readout_protect(mut self, permissions: Permissions) -> Result<(), RomError> {
        permissions.check_readout_protection()?;
        match self.link {
            Link::Can { .. } => can::simple(&mut self, op::READOUT_PROTECT, &[], 2).await,
            Link::Usart(_) => usart::simple(&mut self, op::READOUT_PROTECT, 2, RESPONSE).await,
        }
    }

    /// Readout Unprotect: mass-erases the flash and returns to RDP level 0. The MCU resets.
    pub async fn readout_unprotect(mut self, permissions: Permissions) -> Result<(), RomError> {
        permissions.check_readout_protection()?;
        permissions.check_mass_erase()?;
        let t = Duration::from_millis(self.board.flash.mass_erase_ms as u64 * 4 + 2000);
        match self.link {
            Link::Can { .. } => can::readout_unprotect(&mut self, t).await,
            Link::Usart(_) => usart::simple(&mut self, op::READOUT_UNPROTECT, 2, t).await,
        }
    }

    async fn sync(&mut self) -> Result<(), RomError> {
        if self.synced {
            return Ok(());
        }
        usart::sync(self).await?;
        self.synced = true;
        Ok(())
    }
}
