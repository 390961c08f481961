//! The UDS (ISO 14229-1:2020) vocabulary bootproof's bootloader serves, and the identifiers of
//! its update protocol.
//!
//! An update, as the host client runs it:
//! 1. `10 02` DiagnosticSessionControl → programming session (the application answers it by
//!    setting a flag and resetting into the bootloader's update mode);
//! 2. `31 01 FF00` RoutineControl start EraseMemory: erases the inactive slot (`7F 31 78`
//!    response-pending while the sectors erase, then `71 01 FF00`);
//! 3. `34 00 44 AAAAAAAA SSSSSSSS` RequestDownload to the slot's address (or, to resume, to the
//!    address of the first byte not yet received: [`DID_DOWNLOAD_PROGRESS`]);
//! 4. `36 NN data…` TransferData, block sequence counter from 1, wrapping 0xFF → 0x00;
//! 5. `37` RequestTransferExit;
//! 6. `31 01 FF01` RoutineControl start CheckProgrammingDependencies: verifies the image as
//!    the bootloader will (hash, signature, slot, security counter, newer than the other slot)
//!    and commits it;
//! 7. `11 01` ECUReset: the bootloader boots the new image on trial; the application confirms
//!    itself.

/// Service identifiers (requests; a positive response is the SID + 0x40).
pub mod sid {
    /// DiagnosticSessionControl.
    pub const DIAGNOSTIC_SESSION_CONTROL: u8 = 0x10;
    /// ECUReset.
    pub const ECU_RESET: u8 = 0x11;
    /// ReadDataByIdentifier.
    pub const READ_DATA_BY_IDENTIFIER: u8 = 0x22;
    /// RoutineControl.
    pub const ROUTINE_CONTROL: u8 = 0x31;
    /// RequestDownload.
    pub const REQUEST_DOWNLOAD: u8 = 0x34;
    /// TransferData.
    pub const TRANSFER_DATA: u8 = 0x36;
    /// RequestTransferExit.
    pub const REQUEST_TRANSFER_EXIT: u8 = 0x37;
    /// TesterPresent.
    pub const TESTER_PRESENT: u8 = 0x3E;
    /// A negative response's first byte.
    pub const NEGATIVE_RESPONSE: u8 = 0x7F;
}

/// Negative response codes (ISO 14229-1 Table A.1).
pub mod nrc {
    /// serviceNotSupported.
    pub const SERVICE_NOT_SUPPORTED: u8 = 0x11;
    /// subFunctionNotSupported.
    pub const SUB_FUNCTION_NOT_SUPPORTED: u8 = 0x12;
    /// incorrectMessageLengthOrInvalidFormat.
    pub const INCORRECT_LENGTH: u8 = 0x13;
    /// busyRepeatRequest.
    pub const BUSY_REPEAT_REQUEST: u8 = 0x21;
    /// conditionsNotCorrect.
    pub const CONDITIONS_NOT_CORRECT: u8 = 0x22;
    /// requestSequenceError.
    pub const REQUEST_SEQUENCE_ERROR: u8 = 0x24;
    /// requestOutOfRange.
    pub const REQUEST_OUT_OF_RANGE: u8 = 0x31;
    /// uploadDownloadNotAccepted.
    pub const UPLOAD_DOWNLOAD_NOT_ACCEPTED: u8 = 0x70;
    /// transferDataSuspended.
    pub const TRANSFER_DATA_SUSPENDED: u8 = 0x71;
    /// generalProgrammingFailure.
    pub const GENERAL_PROGRAMMING_FAILURE: u8 = 0x72;
    /// wrongBlockSequenceCounter.
    pub const WRONG_BLOCK_SEQUENCE_COUNTER: u8 = 0x73;
    /// requestCorrectlyReceived-ResponsePending.
    pub const RESPONSE_PENDING: u8 = 0x78;
    /// serviceNotSupportedInActiveSession.
    pub const SERVICE_NOT_SUPPORTED_IN_SESSION: u8 = 0x7F;

    /// The standard's name of `code`.
    pub fn name(code: u8) -> &'static str {
        match code {
            SERVICE_NOT_SUPPORTED => "serviceNotSupported",
            SUB_FUNCTION_NOT_SUPPORTED => "subFunctionNotSupported",
            INCORRECT_LENGTH => "incorrectMessageLengthOrInvalidFormat",
            BUSY_REPEAT_REQUEST => "busyRepeatRequest",
            CONDITIONS_NOT_CORRECT => "conditionsNotCorrect",
            REQUEST_SEQUENCE_ERROR => "requestSequenceError",
            REQUEST_OUT_OF_RANGE => "requestOutOfRange",
            UPLOAD_DOWNLOAD_NOT_ACCEPTED => "uploadDownloadNotAccepted",
            TRANSFER_DATA_SUSPENDED => "transferDataSuspended",
            GENERAL_PROGRAMMING_FAILURE => "generalProgrammingFailure",
            WRONG_BLOCK_SEQUENCE_COUNTER => "wrongBlockSequenceCounter",
            RESPONSE_PENDING => "requestCorrectlyReceived-ResponsePending",
            SERVICE_NOT_SUPPORTED_IN_SESSION => "serviceNotSupportedInActiveSession",
            _ => "(not an NRC bootproof's bootloader sends)",
        }
    }
}

/// Diagnostic sessions.
pub mod session {
    /// defaultSession.
    pub const DEFAULT: u8 = 0x01;
    /// programmingSession.
    pub const PROGRAMMING: u8 = 0x02;
}

/// P2server_max: the server answers within this (ms), or sends response-pending.
pub const P2_MS: u16 = 50;
/// P2*server_max after a response-pending (ms; sent in units of 10 ms): ISO 14229-2's default.
/// The longest operation between two response-pendings is one 128 KiB sector erase (the erase
/// routine sends one per sector): 2.2 s at most at x32 parallelism, 4 s at x8 (the datasheet's
/// maxima, as chrome-ec's STM32H7 flash driver cites them).
pub const P2_STAR_MS: u16 = 5_000;

/// DID: the bootloader's version, `major minor revision` (3 bytes).
pub const DID_BOOTLOADER_VERSION: u16 = 0xF180;
/// DID: the active session (1 byte; ISO 14229-1 Table C.1).
pub const DID_ACTIVE_SESSION: u16 = 0xF186;
/// DID: the state of slot A and B: per slot `state version(major minor revision u16-LE build
/// u32-LE) security-counter(u32-LE)`, 14 bytes each (see [`SlotState`]).
pub const DID_SLOTS: u16 = 0xB000;
/// DID: the stored minimum security counter (u32-LE).
pub const DID_SECURITY_COUNTER: u16 = 0xB001;
/// DID: the update's target slot (1 A, 2 B: the one not running) and the download under way:
/// bytes received (u32-LE), announced size (u32-LE), next block sequence counter (0: none
/// transferring).
pub const DID_DOWNLOAD_PROGRESS: u16 = 0xB002;

/// RID: EraseMemory (erase the inactive slot).
pub const RID_ERASE: u16 = 0xFF00;
/// RID: CheckProgrammingDependencies (verify the downloaded image and commit it).
pub const RID_CHECK: u16 = 0xFF01;

/// The state of a slot as DID 0xB000 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    /// Erased or never committed.
    Empty = 0,
    /// Committed and verified, not yet tried.
    Committed = 1,
    /// Tried and never confirmed.
    TrialFailed = 2,
    /// Confirmed.
    Confirmed = 3,
    /// Committed but does not verify.
    Invalid = 4,
}

impl SlotState {
    /// From the wire.
    pub fn from_u8(v: u8) -> Option<SlotState> {
        Some(match v {
            0 => SlotState::Empty,
            1 => SlotState::Committed,
            2 => SlotState::TrialFailed,
            3 => SlotState::Confirmed,
            4 => SlotState::Invalid,
            _ => return None,
        })
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            SlotState::Empty => "empty",
            SlotState::Committed => "committed",
            SlotState::TrialFailed => "trial failed",
            SlotState::Confirmed => "confirmed",
            SlotState::Invalid => "invalid",
        }
    }
}

/// A negative response: `7F SID NRC`.
pub fn negative(service: u8, code: u8) -> [u8; 3] {
    [sid::NEGATIVE_RESPONSE, service, code]
}

/// `addressAndLengthFormatIdentifier` 0x44: 4-byte address, 4-byte size.
pub const ADDRESS_AND_LENGTH_44: u8 = 0x44;

/// The largest TransferData request the bootloader accepts (SID, counter, 4096 data bytes):
/// its RequestDownload response says so (`maxNumberOfBlockLength`).
pub const MAX_BLOCK_LENGTH: u16 = 4096 + 2;
