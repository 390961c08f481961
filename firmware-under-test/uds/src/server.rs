//! The bootloader's UDS server in update mode, as a state machine over boot-core's updater:
//! no I/O and no time. The firmware feeds it reassembled requests and sends what it returns;
//! host tests and the power-cut campaign drive it the same way over the simulated flash.
//!
//! A request that takes longer than P2 (an erase, a verification) comes back as
//! [`Reply::Pending`]: the caller sends the response-pending NRC (`7F SID 78`) at once, then
//! calls [`Server::run_pending`], again as long as that returns [`Reply::Pending`] (the erase
//! routine does one sector per call, so a response-pending goes out every sector erase time,
//! well inside P2*).
//!
//! What each state allows (programming session only; the default session allows 0x10, 0x11,
//! 0x22 and 0x3E):
//!
//! | state | 0x31 FF00 erase | 0x34 download | 0x36 transfer | 0x37 exit | 0x31 FF01 check |
//! |---|---|---|---|---|---|
//! | idle | erases the inactive slot → erased | 0x24 | 0x24 | 0x24 | 0x24 |
//! | erased (received n) | erase again | at slot base + n → transferring | 0x24 | 0x24 | all received: verify, commit → idle; else refused "incomplete-transfer" |
//! | transferring | erase again | 0x22 | counter k → write; k-1 → repeat, ignored; else 0x73 | → erased | 0x24 |
//!
//! Resuming: after an interruption (host killed, frames lost, bus-off), a RequestDownload to
//! the address of the first byte not yet received continues the download; DID 0xB002 says
//! where that is. A reset or power cut of the board loses the download (it lives in RAM): the
//! slot is erased again and the transfer starts over, and the image in the other slot keeps
//! booting meanwhile, since nothing is committed until the check routine has verified the
//! whole image.

use boot_core::flash::EccRead;
use boot_core::layout::{Layout, SlotId};
use boot_core::trailer::Trailer;
use boot_core::update::{Download, UpdateError};
use embedded_storage::nor_flash::NorFlash;
use fut_image::{SignatureCheck, TrustedKey};

use crate::uds::{
    ADDRESS_AND_LENGTH_44, DID_ACTIVE_SESSION, DID_BOOTLOADER_VERSION, DID_DOWNLOAD_PROGRESS, DID_SECURITY_COUNTER,
    DID_SLOTS, MAX_BLOCK_LENGTH, P2_MS, P2_STAR_MS, RID_CHECK, RID_ERASE, SlotState, nrc, session, sid,
};

/// What to send for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// This many bytes of the output buffer.
    Now(usize),
    /// Nothing (a suppressed positive response).
    Silent,
    /// Send `7F SID 78`, then call [`Server::run_pending`].
    Pending(u8),
    /// Send this many bytes, then reset the chip (ECUReset).
    ThenReset(usize),
}

#[derive(Debug)]
enum State {
    Idle,
    /// The erase routine under way: one sector per [`Server::run_pending`].
    Erasing {
        dl: Download,
    },
    /// `block_start`: bytes received when the expected TransferData block began (a block
    /// streamed in part before its reception failed is resumed there, not written twice).
    Erased {
        dl: Download,
        transferring: Option<u8>,
        size: u32,
        block_start: u32,
    },
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Erase,
    Check,
    ReadSlots,
    ReadCounter,
}

/// The server.
#[derive(Debug)]
pub struct Server {
    layout: Layout,
    session: u8,
    state: State,
    /// The slot the chip would boot (its image is the fallback): the other one is the target.
    running: Option<SlotId>,
    pending: Option<Op>,
    version: [u8; 3],
    /// The last positive TransferData answered (for the repeat of a lost response).
    last_counter: Option<u8>,
    /// A programming failure while a block streamed in: the block's answer.
    stream_fault: Option<u8>,
    /// Erase the target slot as the download reaches it, not in the erase routine.
    erase_as_needed: bool,
}

/// Positive response SID.
const fn pos(s: u8) -> u8 {
    s + 0x40
}

fn neg(out: &mut [u8], service: u8, code: u8) -> Reply {
    out[..3].copy_from_slice(&crate::uds::negative(service, code));
    Reply::Now(3)
}

impl Server {
    /// A server for `layout`; `running` is the slot the boot decision chose (None in
    /// recovery); `programming` starts in the programming session (the application asked for
    /// update mode). `version` is the bootloader's.
    pub fn new(layout: Layout, running: Option<SlotId>, programming: bool, version: [u8; 3]) -> Server {
        Server {
            layout,
            session: if programming { session::PROGRAMMING } else { session::DEFAULT },
            state: State::Idle,
            running,
            pending: None,
            version,
            last_counter: None,
            stream_fault: None,
            erase_as_needed: false,
        }
    }

    /// Erase the target slot as the download reaches each sector (during TransferData) instead
    /// of in the erase routine, and take the whole image as one TransferData block: for a
    /// caller that keeps receiving while the flash erases (the bootloader's erase runs from
    /// RAM and buffers the frames), so the erases overlap the transfer.
    pub fn erase_as_needed(mut self) -> Server {
        self.erase_as_needed = true;
        self
    }

    /// The longest TransferData request taken (maxNumberOfBlockLength): 4098 bytes, or the
    /// whole image and its two header bytes when erasing as needed.
    pub fn block_length(&self) -> u32 {
        if self.erase_as_needed { self.layout.image_capacity(self.target()) + 2 } else { MAX_BLOCK_LENGTH as u32 }
    }

    /// The slot an update goes to.
    pub fn target(&self) -> SlotId {
        self.running.map(SlotId::other).unwrap_or(SlotId::A)
    }

    /// The active session.
    pub fn session(&self) -> u8 {
        self.session
    }

    /// Handle one request, writing the response to `out` (at least 64 bytes).
    pub fn handle<F: NorFlash + EccRead>(&mut self, flash: &mut F, req: &[u8], out: &mut [u8]) -> Reply {
        let Some(&service) = req.first() else { return Reply::Silent };
        let programming = self.session == session::PROGRAMMING;
        match service {
            sid::DIAGNOSTIC_SESSION_CONTROL => {
                if req.len() != 2 {
                    return neg(out, service, nrc::INCORRECT_LENGTH);
                }
                let s = req[1] & 0x7F;
                if s != session::DEFAULT && s != session::PROGRAMMING {
                    return neg(out, service, nrc::SUB_FUNCTION_NOT_SUPPORTED);
                }
                if s != self.session {
                    // Leaving a session ends what was under way (ISO 14229-1 §9.2).
                    self.session = s;
                    self.state = State::Idle;
                    self.last_counter = None;
                }
                if req[1] & 0x80 != 0 {
                    return Reply::Silent;
                }
                let p2 = P2_MS.to_be_bytes();
                let p2s = (P2_STAR_MS / 10).to_be_bytes();
                out[..6].copy_from_slice(&[pos(service), s, p2[0], p2[1], p2s[0], p2s[1]]);
                Reply::Now(6)
            }
            sid::ECU_RESET => {
                if req.len() != 2 {
                    return neg(out, service, nrc::INCORRECT_LENGTH);
                }
                if req[1] & 0x7F != 0x01 {
                    return neg(out, service, nrc::SUB_FUNCTION_NOT_SUPPORTED);
                }
                if req[1] & 0x80 != 0 {
                    return Reply::ThenReset(0);
                }
                out[..2].copy_from_slice(&[pos(service), 0x01]);
                Reply::ThenReset(2)
            }
            sid::TESTER_PRESENT => {
                if req.len() != 2 {
                    return neg(out, service, nrc::INCORRECT_LENGTH);
                }
                match req[1] {
                    0x00 => {
                        out[..2].copy_from_slice(&[pos(service), 0x00]);
                        Reply::Now(2)
                    }
                    0x80 => Reply::Silent,
                    _ => neg(out, service, nrc::SUB_FUNCTION_NOT_SUPPORTED),
                }
            }
            sid::READ_DATA_BY_IDENTIFIER => {
                if req.len() != 3 {
                    return neg(out, service, nrc::INCORRECT_LENGTH);
                }
                let did = u16::from_be_bytes([req[1], req[2]]);
                out[..3].copy_from_slice(&[pos(service), req[1], req[2]]);
                match did {
                    DID_BOOTLOADER_VERSION => {
                        out[3..6].copy_from_slice(&self.version);
                        Reply::Now(6)
                    }
                    DID_ACTIVE_SESSION => {
                        out[3] = self.session;
                        Reply::Now(4)
                    }
                    DID_DOWNLOAD_PROGRESS => {
                        let (received, size, next) = match &self.state {
                            State::Idle | State::Erasing { .. } => (0, 0, 0),
                            State::Erased { dl, transferring, size, .. } => {
                                (dl.received(), *size, transferring.unwrap_or(0))
                            }
                        };
                        out[3] = 1 + self.target().index() as u8;
                        out[4..8].copy_from_slice(&received.to_le_bytes());
                        out[8..12].copy_from_slice(&size.to_le_bytes());
                        out[12] = next;
                        Reply::Now(13)
                    }
                    DID_SLOTS => self.pend(Op::ReadSlots, service),
                    DID_SECURITY_COUNTER => self.pend(Op::ReadCounter, service),
                    _ => neg(out, service, nrc::REQUEST_OUT_OF_RANGE),
                }
            }
            sid::ROUTINE_CONTROL | sid::REQUEST_DOWNLOAD | sid::TRANSFER_DATA | sid::REQUEST_TRANSFER_EXIT
                if !programming =>
            {
                neg(out, service, nrc::SERVICE_NOT_SUPPORTED_IN_SESSION)
            }
            sid::ROUTINE_CONTROL => {
                if req.len() < 4 {
                    return neg(out, service, nrc::INCORRECT_LENGTH);
                }
                if req[1] != 0x01 {
                    return neg(out, service, nrc::SUB_FUNCTION_NOT_SUPPORTED);
                }
                match u16::from_be_bytes([req[2], req[3]]) {
                    RID_ERASE => {
                        self.state = State::Idle;
                        self.last_counter = None;
                        self.stream_fault = None;
                        self.pend(Op::Erase, service)
                    }
                    RID_CHECK => match &self.state {
                        State::Erased { transferring: None, .. } => self.pend(Op::Check, service),
                        _ => neg(out, service, nrc::REQUEST_SEQUENCE_ERROR),
                    },
                    _ => neg(out, service, nrc::REQUEST_OUT_OF_RANGE),
                }
            }
            sid::REQUEST_DOWNLOAD => {
                if req.len() != 11 {
                    return neg(out, service, nrc::INCORRECT_LENGTH);
                }
                if req[1] != 0x00 || req[2] != ADDRESS_AND_LENGTH_44 {
                    return neg(out, service, nrc::REQUEST_OUT_OF_RANGE);
                }
                let addr = u32::from_be_bytes([req[3], req[4], req[5], req[6]]);
                let size = u32::from_be_bytes([req[7], req[8], req[9], req[10]]);
                let layout = self.layout;
                let State::Erased { dl, transferring, size: announced, block_start } = &mut self.state else {
                    return neg(out, service, nrc::REQUEST_SEQUENCE_ERROR);
                };
                if transferring.is_some() {
                    return neg(out, service, nrc::CONDITIONS_NOT_CORRECT);
                }
                let base = layout.slot_address(dl.slot());
                let capacity = layout.image_capacity(dl.slot());
                // Fresh (at the base of an untouched slot) or a resume at the first byte not
                // yet received, with the size announced first.
                let resume = dl.received() > 0;
                if addr != base + dl.received() || size == 0 || (resume && size != *announced) {
                    return neg(out, service, nrc::REQUEST_OUT_OF_RANGE);
                }
                if size > capacity {
                    return neg(out, service, nrc::UPLOAD_DOWNLOAD_NOT_ACCEPTED);
                }
                *announced = size;
                *transferring = Some(1);
                *block_start = dl.received();
                self.last_counter = None;
                let m = self.block_length();
                if m <= 0xFFFF {
                    let m = (m as u16).to_be_bytes();
                    out[..4].copy_from_slice(&[pos(service), 0x20, m[0], m[1]]);
                    Reply::Now(4)
                } else {
                    let m = m.to_be_bytes();
                    out[..6].copy_from_slice(&[pos(service), 0x40, m[0], m[1], m[2], m[3]]);
                    Reply::Now(6)
                }
            }
            sid::TRANSFER_DATA => self.transfer(flash, req, req.len(), out),
            sid::REQUEST_TRANSFER_EXIT => {
                let State::Erased { transferring, .. } = &mut self.state else {
                    return neg(out, service, nrc::REQUEST_SEQUENCE_ERROR);
                };
                if transferring.is_none() {
                    return neg(out, service, nrc::REQUEST_SEQUENCE_ERROR);
                }
                *transferring = None;
                out[0] = pos(service);
                Reply::Now(1)
            }
            _ => neg(out, service, nrc::SERVICE_NOT_SUPPORTED),
        }
    }

    /// A TransferData request of `total` bytes whose data the caller passed to
    /// [`Server::stream`] as it arrived (it was longer than the caller's buffer): `head` is
    /// its first bytes (at least the service and the counter). Answers as [`Server::handle`]
    /// would; data that was not streamed makes it fail (0x71) without writing anything more.
    pub fn handle_streamed<F: NorFlash + EccRead>(
        &mut self,
        flash: &mut F,
        head: &[u8],
        total: usize,
        out: &mut [u8],
    ) -> Reply {
        if head.first() != Some(&sid::TRANSFER_DATA) {
            return neg(out, head.first().copied().unwrap_or(0), nrc::REQUEST_OUT_OF_RANGE);
        }
        if self.session != session::PROGRAMMING {
            return neg(out, sid::TRANSFER_DATA, nrc::SERVICE_NOT_SUPPORTED_IN_SESSION);
        }
        self.transfer(flash, head, total, out)
    }

    /// TransferData: `req` is the request or its first bytes, `total` its length.
    fn transfer<F: NorFlash + EccRead>(&mut self, flash: &mut F, req: &[u8], total: usize, out: &mut [u8]) -> Reply {
        let service = sid::TRANSFER_DATA;
        if total < 3 || req.len() < 2 || total > self.block_length() as usize {
            return neg(out, service, nrc::INCORRECT_LENGTH);
        }
        if let Some(code) = self.stream_fault.take() {
            return neg(out, service, code);
        }
        let k = req[1];
        let last = self.last_counter;
        let State::Erased { dl, transferring: Some(next), size, block_start } = &mut self.state else {
            return neg(out, service, nrc::REQUEST_SEQUENCE_ERROR);
        };
        if k != *next {
            // The repeat of the last block (its response was lost): already written.
            if Some(k) == last {
                out[..2].copy_from_slice(&[pos(service), k]);
                return Reply::Now(2);
            }
            return neg(out, service, nrc::WRONG_BLOCK_SEQUENCE_COUNTER);
        }
        let len = total - 2;
        if *block_start as u64 + len as u64 > *size as u64 {
            return neg(out, service, nrc::TRANSFER_DATA_SUSPENDED);
        }
        // Bytes of this block already stored while its frames arrived ([`Server::stream`]),
        // in this reception or an earlier one that failed part-way.
        let stored = (dl.received() - *block_start) as usize;
        if stored > len {
            return neg(out, service, nrc::TRANSFER_DATA_SUSPENDED);
        }
        if stored < len {
            // The rest must be here: a request longer than the caller's buffer was streamed.
            let Some(rest) = req.get(2 + stored..total) else {
                return neg(out, service, nrc::TRANSFER_DATA_SUSPENDED);
            };
            if let Err(code) = Self::store(dl, flash, rest) {
                self.state = State::Idle;
                return neg(out, service, code);
            }
        }
        *next = next.wrapping_add(1);
        *block_start = dl.received();
        self.last_counter = Some(k);
        out[..2].copy_from_slice(&[pos(service), k]);
        Reply::Now(2)
    }

    /// Append to the download; the negative response code of a failure.
    fn store<F: NorFlash + EccRead>(dl: &mut Download, flash: &mut F, data: &[u8]) -> Result<(), u8> {
        match dl.write(flash, data) {
            Ok(()) => Ok(()),
            // A build for the other slot, or more than the slot holds: nothing more is taken;
            // erase again to start over.
            Err(UpdateError::Rejected(_)) | Err(UpdateError::Oversize { .. }) => Err(nrc::REQUEST_OUT_OF_RANGE),
            Err(_) => Err(nrc::GENERAL_PROGRAMMING_FAILURE),
        }
    }

    /// Store part of a TransferData request while the rest of its frames are still on the
    /// bus: `head` is the request's first bytes (at least the service and the counter),
    /// `total` its announced length (ISO-TP's first frame), `chunk` the bytes at offset `at`
    /// of it. Flash programming then overlaps the transfer instead of following it. Only the
    /// expected block of a download under way in the programming session is stored, in order
    /// and only what the complete request would store (bytes already stored are skipped);
    /// anything else waits for [`Server::handle`], which stores the rest, checks the counter
    /// and answers. A programming failure here is that block's answer.
    pub fn stream<F: NorFlash + EccRead>(&mut self, flash: &mut F, head: &[u8], total: usize, at: usize, chunk: &[u8]) {
        if self.session != session::PROGRAMMING
            || self.stream_fault.is_some()
            || head.len() < 2
            || head[0] != sid::TRANSFER_DATA
            || total > self.block_length() as usize
        {
            return;
        }
        let State::Erased { dl, transferring: Some(next), size, block_start } = &mut self.state else { return };
        if head[1] != *next || *block_start as u64 + (total - 2) as u64 > *size as u64 {
            return;
        }
        // The chunk's data bytes: message offsets 2.. are data offsets 0..
        let (data_at, bytes) = if at < 2 { (0, chunk.get(2 - at..).unwrap_or(&[])) } else { (at - 2, chunk) };
        let stored = (dl.received() - *block_start) as usize;
        if data_at > stored {
            return; // a gap: the block will be refused and sent again
        }
        let Some(new) = bytes.get(stored - data_at..) else { return };
        if new.is_empty() {
            return;
        }
        if let Err(code) = Self::store(dl, flash, new) {
            self.state = State::Idle;
            self.stream_fault = Some(code);
        }
    }

    fn pend(&mut self, op: Op, service: u8) -> Reply {
        self.pending = Some(op);
        Reply::Pending(service)
    }

    /// Go on with the request that answered [`Reply::Pending`]: its final response in `out`,
    /// or [`Reply::Pending`] again (send another response-pending and call again).
    pub fn run_pending<F: NorFlash + EccRead, C: SignatureCheck>(
        &mut self,
        flash: &mut F,
        keys: &[TrustedKey],
        sig: &mut C,
        out: &mut [u8],
    ) -> Reply {
        let Some(op) = self.pending.take() else { return Reply::Silent };
        let l = self.layout;
        match op {
            Op::Erase => {
                let service = sid::ROUTINE_CONTROL;
                let rid = RID_ERASE.to_be_bytes();
                let dl = match core::mem::replace(&mut self.state, State::Idle) {
                    State::Erasing { dl } => Ok(dl),
                    _ => Download::begin(flash, &l, self.target(), self.running),
                };
                // Erasing as needed, the download erases what it reaches and nothing is erased
                // here. Otherwise one sector per call, a response-pending before each: the
                // firmware cannot receive while the bank erases (its code runs from it), so the
                // whole slot is erased before the transfer, and the tester hears from it every
                // 1.1 s.
                let step = |mut dl: Download| {
                    if self.erase_as_needed { Ok((dl, true)) } else { dl.erase_next(flash).map(|done| (dl, done)) }
                };
                match dl.and_then(step) {
                    Ok((dl, false)) => {
                        self.state = State::Erasing { dl };
                        self.pend(Op::Erase, service)
                    }
                    Ok((dl, true)) => {
                        self.state = State::Erased { dl, transferring: None, size: 0, block_start: 0 };
                        out[..4].copy_from_slice(&[pos(service), 0x01, rid[0], rid[1]]);
                        Reply::Now(4)
                    }
                    Err(UpdateError::RunningUnconfirmed(_)) | Err(UpdateError::TargetIsRunning(_)) => {
                        neg(out, service, nrc::CONDITIONS_NOT_CORRECT)
                    }
                    Err(_) => neg(out, service, nrc::GENERAL_PROGRAMMING_FAILURE),
                }
            }
            Op::Check => {
                let service = sid::ROUTINE_CONTROL;
                let rid = RID_CHECK.to_be_bytes();
                out[..4].copy_from_slice(&[pos(service), 0x01, rid[0], rid[1]]);
                if let State::Erased { dl, size, .. } = &self.state
                    && dl.received() != *size
                {
                    // Not all of the announced image arrived: nothing to verify yet; the
                    // download stays, so the tester can resume it.
                    let why = b"incomplete-transfer";
                    out[4] = 1;
                    out[5..5 + why.len()].copy_from_slice(why);
                    return Reply::Now(5 + why.len());
                }
                let State::Erased { dl, .. } = core::mem::replace(&mut self.state, State::Idle) else {
                    return neg(out, service, nrc::REQUEST_SEQUENCE_ERROR);
                };
                // routineStatusRecord: 0 committed, or 1 and the reason, as text.
                let why: &str = match dl.finish(flash, keys, sig) {
                    Ok(_) => {
                        out[4] = 0;
                        return Reply::Now(5);
                    }
                    Err(UpdateError::Rejected(r)) => r.name(),
                    Err(UpdateError::NotNewer { .. }) => "not-newer-than-the-other-slot",
                    Err(UpdateError::Oversize { .. }) => "oversize",
                    Err(_) => "flash-error",
                };
                out[4] = 1;
                let n = why.len().min(out.len() - 5);
                out[5..5 + n].copy_from_slice(&why.as_bytes()[..n]);
                Reply::Now(5 + n)
            }
            Op::ReadSlots => {
                let did = DID_SLOTS.to_be_bytes();
                out[..3].copy_from_slice(&[pos(sid::READ_DATA_BY_IDENTIFIER), did[0], did[1]]);
                let min = boot_core::boot::stored_minimum(flash, &l, keys, sig).minimum;
                for (i, slot) in SlotId::ALL.into_iter().enumerate() {
                    let rec = &mut out[3 + 14 * i..3 + 14 * (i + 1)];
                    rec.fill(0);
                    let t = Trailer::read(flash, &l, slot);
                    let state = if !t.is_committed() {
                        SlotState::Empty
                    } else if t.trial_failed() {
                        SlotState::TrialFailed
                    } else {
                        match boot_core::boot::verify_slot(flash, &l, slot, keys, sig, min) {
                            Ok(v) => {
                                let ver = v.version();
                                rec[1] = ver.major;
                                rec[2] = ver.minor;
                                rec[3..5].copy_from_slice(&ver.revision.to_le_bytes());
                                rec[5..9].copy_from_slice(&ver.build.to_le_bytes());
                                rec[9..13].copy_from_slice(&v.security_counter.to_le_bytes());
                                if t.is_confirmed() { SlotState::Confirmed } else { SlotState::Committed }
                            }
                            Err(_) => SlotState::Invalid,
                        }
                    };
                    rec[0] = state as u8;
                }
                Reply::Now(3 + 28)
            }
            Op::ReadCounter => {
                let did = DID_SECURITY_COUNTER.to_be_bytes();
                let min = boot_core::boot::stored_minimum(flash, &l, keys, sig).minimum;
                out[..3].copy_from_slice(&[pos(sid::READ_DATA_BY_IDENTIFIER), did[0], did[1]]);
                out[3..7].copy_from_slice(&min.to_le_bytes());
                Reply::Now(7)
            }
        }
    }
}
