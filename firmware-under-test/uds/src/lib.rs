//! UDS (ISO 14229-1) on ISO-TP (ISO 15765-2) over CAN FD, shared by bootproof's bootloader (the
//! server) and its host client: [`isotp`] is the transport (frame codec, receiver and sender
//! state machines, timing), [`uds`] the diagnostic vocabulary and the update protocol's
//! identifiers.
//!
//! Addressing: normal addressing with 11-bit identifiers, physical requests on
//! [`REQUEST_ID`] (0x7E0), responses on [`RESPONSE_ID`] (0x7E8), the customary pair for the
//! first ECU. Frames are CAN FD with bit-rate switching, TX_DL = 64, on the bus the ROM
//! bootloader uses (250 kbit/s nominal, 1 Mbit/s data).
#![no_std]
#![warn(missing_docs)]

pub mod isotp;
#[cfg(feature = "server")]
pub mod server;
pub mod uds;

/// CAN ID of requests from the tester (physical addressing).
pub const REQUEST_ID: u16 = 0x7E0;
/// CAN ID of the server's responses.
pub const RESPONSE_ID: u16 = 0x7E8;
