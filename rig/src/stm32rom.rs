//! Vocabulary of ST's ROM bootloader protocols (AN3155 USART, AN3154 bxCAN, AN5405 FDCAN),
//! shared by the host-side client (bootproof) and the simulated bootloader (the twin).

use bootproof_fixtures::RomTransportKind;

/// ACK byte.
pub const ACK: u8 = 0x79;
/// NACK byte.
pub const NACK: u8 = 0x1F;
/// USART synchronisation byte (autobaud).
pub const SYNC: u8 = 0x7F;

/// Command opcodes.
pub mod op {
    /// Get.
    pub const GET: u8 = 0x00;
    /// Get Version (and read protection status).
    pub const GET_VERSION: u8 = 0x01;
    /// Get ID.
    pub const GET_ID: u8 = 0x02;
    /// Speed (bxCAN only: change the bit rate).
    pub const SPEED: u8 = 0x03;
    /// The bxCAN synchronisation frame's identifier (AN2662 §3.2: "Synchronization byte, 0x79,
    /// is in the RX identifier and not in the data field").
    pub const CAN_SYNC: u8 = 0x79;
    /// Read Memory.
    pub const READ: u8 = 0x11;
    /// Go.
    pub const GO: u8 = 0x21;
    /// Write Memory.
    pub const WRITE: u8 = 0x31;
    /// Erase (bxCAN, legacy USART).
    pub const ERASE: u8 = 0x43;
    /// Extended Erase (USART) / Erase (FDCAN).
    pub const EXT_ERASE: u8 = 0x44;
    /// Write Protect.
    pub const WRITE_PROTECT: u8 = 0x63;
    /// Write Unprotect.
    pub const WRITE_UNPROTECT: u8 = 0x73;
    /// Readout Protect.
    pub const READOUT_PROTECT: u8 = 0x82;
    /// Readout Unprotect.
    pub const READOUT_UNPROTECT: u8 = 0x92;

    /// Human name of an opcode.
    pub fn name(op: u8) -> &'static str {
        match op {
            GET => "Get",
            GET_VERSION => "Get Version",
            GET_ID => "Get ID",
            SPEED => "Speed",
            CAN_SYNC => "synchronisation",
            READ => "Read Memory",
            GO => "Go",
            WRITE => "Write Memory",
            ERASE => "Erase",
            EXT_ERASE => "Extended Erase",
            WRITE_PROTECT => "Write Protect",
            WRITE_UNPROTECT => "Write Unprotect",
            READOUT_PROTECT => "Readout Protect",
            READOUT_UNPROTECT => "Readout Unprotect",
            _ => "unknown command",
        }
    }
}

/// Most bytes one Read Memory or Write Memory moves.
pub const MAX_BLOCK: usize = 256;

/// The command list a transport's Get reports.
pub fn commands(kind: RomTransportKind) -> Vec<u8> {
    let erase = if kind == RomTransportKind::Bxcan { op::ERASE } else { op::EXT_ERASE };
    let mut list = vec![op::GET, op::GET_VERSION, op::GET_ID];
    if kind == RomTransportKind::Bxcan {
        // AN3154 §3.2 (AN2662 §3.4): Get lists Speed between Get ID and Read Memory.
        list.push(op::SPEED);
    }
    list.extend([
        op::READ,
        op::GO,
        op::WRITE,
        erase,
        op::WRITE_PROTECT,
        op::WRITE_UNPROTECT,
        op::READOUT_PROTECT,
        op::READOUT_UNPROTECT,
    ]);
    list
}

/// An erase request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseRequest {
    /// Everything (0xFFFF; bxCAN 0xFF).
    Mass,
    /// Bank 1 (0xFFFE) or bank 2 (0xFFFD).
    Bank(u8),
    /// These sectors (pages).
    Sectors(Vec<u16>),
}

/// XOR checksum as AN3155 uses it.
pub fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |a, b| a ^ b)
}
