//! ISO 15765-2 (ISO-TP) on CAN FD: the four protocol data units, a receiver that reassembles
//! a message into a caller's buffer and says when to send flow control, and a sender that
//! segments a message under the receiver's flow control.
//!
//! Frame formats (ISO 15765-2:2016 §9.6, TX_DL = 64):
//!
//! | PDU | bytes | when |
//! |---|---|---|
//! | single frame | `0L data…` | up to 7 bytes |
//! | single frame, escaped | `00 LL data…` | 8 to 62 bytes (CAN FD only) |
//! | first frame | `1L LL data…` (62 bytes of data) | 63 to 4095 bytes |
//! | first frame, escaped | `10 00 LLLLLLLL data…` (58 bytes) | more than 4095 bytes |
//! | consecutive frame | `2N data…` (63 bytes; the last may be shorter) | N = 1, 2, … 15, 0, 1 … |
//! | flow control | `3S BS STmin` | S: 0 continue, 1 wait, 2 overflow |
//!
//! Frames shorter than a CAN FD length (0–8, 12, 16, 20, 24, 32, 48, 64) are padded with
//! [`PADDING`] up to the next one (§10.4.2.2).

use core::time::Duration;

/// Data bytes of a CAN FD frame (TX_DL).
pub const TX_DL: usize = 64;
/// Padding byte (the value ISO 15765-2 recommends).
pub const PADDING: u8 = 0xCC;
/// N_As / N_Ar: time to get a frame on the bus (ISO 15765-2 Table 16).
pub const N_A: Duration = Duration::from_millis(1000);
/// N_Bs: how long a sender waits for flow control.
pub const N_BS: Duration = Duration::from_millis(1000);
/// N_Cr: how long a receiver waits for the next consecutive frame.
pub const N_CR: Duration = Duration::from_millis(1000);
/// Largest message this crate handles (an UDS TransferData block plus headroom).
pub const MAX_MESSAGE: usize = 4096 + 64;

/// Flow status of a flow control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStatus {
    /// Continue to send.
    ContinueToSend,
    /// Wait for another flow control frame.
    Wait,
    /// The message does not fit: abort.
    Overflow,
}

/// One ISO-TP protocol data unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pdu<'a> {
    /// A whole message in one frame.
    Single(&'a [u8]),
    /// The start of a segmented message of `len` bytes.
    First {
        /// Length of the whole message.
        len: u32,
        /// Its first bytes.
        data: &'a [u8],
    },
    /// A continuation, with its sequence number (0–15).
    Consecutive {
        /// Sequence number.
        sn: u8,
        /// Data.
        data: &'a [u8],
    },
    /// Flow control from the receiver.
    Flow {
        /// Status.
        status: FlowStatus,
        /// Block size: consecutive frames before the next flow control (0: no limit).
        block_size: u8,
        /// Minimum separation time, encoded (see [`st_min`]).
        st_min: u8,
    },
}

/// Why a frame is not a valid ISO-TP PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduError {
    /// No data at all.
    Empty,
    /// The PCI type nibble is 4–15.
    UnknownType(u8),
    /// A length field that the frame contradicts (too long for the frame, or zero).
    BadLength,
    /// A first frame whose message would fit a single frame, or a short first frame.
    BadFirstFrame,
    /// A flow control frame with an unknown flow status.
    BadFlowStatus(u8),
}

impl core::fmt::Display for PduError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PduError::Empty => write!(f, "an empty frame is not an ISO-TP PDU"),
            PduError::UnknownType(t) => write!(f, "PCI type {t:#x} is not an ISO-TP PDU (0-3)"),
            PduError::BadLength => write!(f, "the PDU's length field disagrees with the frame"),
            PduError::BadFirstFrame => {
                write!(f, "malformed first frame (length below a single frame's, or frame too short)")
            }
            PduError::BadFlowStatus(s) => write!(f, "flow status {s} is not 0 (continue), 1 (wait) or 2 (overflow)"),
        }
    }
}

/// Decode the data of one CAN frame. Padding after the PDU is ignored.
pub fn decode(frame: &[u8]) -> Result<Pdu<'_>, PduError> {
    let first = *frame.first().ok_or(PduError::Empty)?;
    match first >> 4 {
        0 => {
            let len = (first & 0xF) as usize;
            if len != 0 {
                // Classic format: 1-7 bytes (ISO 15765-2 allows it in frames up to 8 bytes).
                if len > 7 || frame.len() > 8 || 1 + len > frame.len() {
                    return Err(PduError::BadLength);
                }
                Ok(Pdu::Single(&frame[1..1 + len]))
            } else {
                let len = *frame.get(1).ok_or(PduError::BadLength)? as usize;
                if len < 8 || 2 + len > frame.len() || frame.len() <= 8 {
                    return Err(PduError::BadLength);
                }
                Ok(Pdu::Single(&frame[2..2 + len]))
            }
        }
        1 => {
            if frame.len() < 8 {
                return Err(PduError::BadFirstFrame);
            }
            let short = (((first & 0xF) as u32) << 8) | frame[1] as u32;
            let (len, at) =
                if short != 0 { (short, 2) } else { (u32::from_be_bytes([frame[2], frame[3], frame[4], frame[5]]), 6) };
            // A message that fits one single frame of this frame's size is not segmented.
            let sf_max = if frame.len() > 8 { frame.len() - 2 } else { 7 };
            if (len as usize) <= sf_max || (at == 6 && len <= 4095) {
                return Err(PduError::BadFirstFrame);
            }
            Ok(Pdu::First { len, data: &frame[at..] })
        }
        2 => Ok(Pdu::Consecutive { sn: first & 0xF, data: &frame[1..] }),
        3 => {
            if frame.len() < 3 {
                return Err(PduError::BadLength);
            }
            let status = match first & 0xF {
                0 => FlowStatus::ContinueToSend,
                1 => FlowStatus::Wait,
                2 => FlowStatus::Overflow,
                s => return Err(PduError::BadFlowStatus(s)),
            };
            Ok(Pdu::Flow { status, block_size: frame[1], st_min: frame[2] })
        }
        t => Err(PduError::UnknownType(t)),
    }
}

/// The CAN FD frame length that holds `n` bytes (the next of 0–8, 12, 16, 20, 24, 32, 48, 64).
pub fn fd_len(n: usize) -> usize {
    match n {
        0..=8 => n,
        9..=12 => 12,
        13..=16 => 16,
        17..=20 => 20,
        21..=24 => 24,
        25..=32 => 32,
        33..=48 => 48,
        _ => 64,
    }
}

/// A frame's data, built in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes (the first `len` are the frame's data).
    pub data: [u8; TX_DL],
    /// Frame length: a CAN FD length.
    pub len: usize,
}

impl Frame {
    fn build(head: &[u8], body: &[u8]) -> Frame {
        let n = head.len() + body.len();
        let mut data = [PADDING; TX_DL];
        data[..head.len()].copy_from_slice(head);
        data[head.len()..n].copy_from_slice(body);
        Frame { data, len: fd_len(n).max(if n <= 8 { 8 } else { 0 }) }
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// A flow control frame.
    pub fn flow(status: FlowStatus, block_size: u8, st_min: u8) -> Frame {
        let s = match status {
            FlowStatus::ContinueToSend => 0,
            FlowStatus::Wait => 1,
            FlowStatus::Overflow => 2,
        };
        Frame::build(&[0x30 | s, block_size, st_min], &[])
    }
}

/// STmin in the frame's encoding → a duration (ISO 15765-2 Table 20; reserved values count as
/// 127 ms, as the standard asks).
pub fn st_min(encoded: u8) -> Duration {
    match encoded {
        0x00..=0x7F => Duration::from_millis(encoded as u64),
        0xF1..=0xF9 => Duration::from_micros(100 * (encoded - 0xF0) as u64),
        _ => Duration::from_millis(127),
    }
}

/// Segments one message into frames: the first (single or first frame), then consecutive
/// frames as flow control allows.
#[derive(Debug)]
pub struct Sender<'a> {
    msg: &'a [u8],
    at: usize,
    sn: u8,
    /// Consecutive frames left in this block (None: no limit).
    block_left: Option<u8>,
    /// Waiting for a flow control frame.
    awaiting_flow: bool,
    st_min: Duration,
}

/// What the sender wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send this frame (after the separation time, for a consecutive frame).
    Send(Frame),
    /// Wait for flow control (up to [`N_BS`]).
    AwaitFlow,
    /// The whole message has been sent.
    Done,
}

/// Why sending stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The receiver answered with overflow: the message does not fit its buffer.
    Overflow,
    /// A frame that is not flow control arrived while flow control was expected.
    UnexpectedPdu,
    /// The message is longer than ISO-TP carries.
    TooLong,
    /// The message is empty: ISO-TP has no encoding for it (SF_DL 0 is invalid, and receivers
    /// ignore such a frame).
    Empty,
}

impl<'a> Sender<'a> {
    /// Start sending `msg` (1 byte up to 2^32 − 1).
    pub fn new(msg: &'a [u8]) -> Result<Sender<'a>, SendError> {
        if msg.is_empty() {
            return Err(SendError::Empty);
        }
        if msg.len() > u32::MAX as usize {
            return Err(SendError::TooLong);
        }
        Ok(Sender { msg, at: 0, sn: 1, block_left: None, awaiting_flow: false, st_min: Duration::ZERO })
    }

    /// The separation time the receiver asked for.
    pub fn st_min(&self) -> Duration {
        self.st_min
    }

    /// The next step.
    // Not an iterator: the sequence depends on flow control fed in between (`on_flow`).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Next {
        if self.awaiting_flow {
            return Next::AwaitFlow;
        }
        let m = self.msg;
        if self.at == 0 {
            if m.len() <= 7 {
                self.at = m.len();
                return Next::Send(Frame::build(&[m.len() as u8], m));
            }
            if m.len() <= TX_DL - 2 {
                self.at = m.len();
                return Next::Send(Frame::build(&[0, m.len() as u8], m));
            }
            let f = if m.len() <= 4095 {
                self.at = TX_DL - 2;
                Frame::build(&[0x10 | (m.len() >> 8) as u8, m.len() as u8], &m[..self.at])
            } else {
                self.at = TX_DL - 6;
                let l = (m.len() as u32).to_be_bytes();
                Frame::build(&[0x10, 0, l[0], l[1], l[2], l[3]], &m[..self.at])
            };
            self.awaiting_flow = true;
            return Next::Send(f);
        }
        if self.at >= m.len() {
            return Next::Done;
        }
        if self.block_left == Some(0) {
            self.awaiting_flow = true;
            return Next::AwaitFlow;
        }
        let n = (TX_DL - 1).min(m.len() - self.at);
        let f = Frame::build(&[0x20 | self.sn], &m[self.at..self.at + n]);
        self.at += n;
        self.sn = (self.sn + 1) & 0xF;
        if let Some(b) = &mut self.block_left {
            *b -= 1;
        }
        Next::Send(f)
    }

    /// A frame from the receiver while [`Next::AwaitFlow`].
    pub fn on_flow(&mut self, frame: &[u8]) -> Result<(), SendError> {
        match decode(frame) {
            Ok(Pdu::Flow { status: FlowStatus::ContinueToSend, block_size, st_min: st }) => {
                self.awaiting_flow = false;
                self.block_left = (block_size != 0).then_some(block_size);
                self.st_min = st_min(st);
                Ok(())
            }
            Ok(Pdu::Flow { status: FlowStatus::Wait, .. }) => Ok(()),
            Ok(Pdu::Flow { status: FlowStatus::Overflow, .. }) => Err(SendError::Overflow),
            _ => Err(SendError::UnexpectedPdu),
        }
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> usize {
        self.at.min(self.msg.len())
    }
}

/// Reassembles messages into a caller's buffer.
///
/// A receiver made with [`Receiver::streaming`] also takes messages longer than its buffer:
/// it keeps their first bytes (as many as fit) and hands each frame's payload to the caller
/// as it arrives ([`Receiver::chunk`]), for a consumer that stores them itself (a bootloader
/// writing a long TransferData to flash).
#[derive(Debug)]
pub struct Receiver<'b> {
    buf: &'b mut [u8],
    /// (expected length, received so far, next sequence number, frames left in the block)
    progress: Option<(usize, usize, u8, u8)>,
    block_size: u8,
    st_min: u8,
    streaming: bool,
    /// The last first or consecutive frame's payload: (message offset, bytes, length).
    chunk: (usize, [u8; TX_DL], usize),
    /// The length of the last message completed.
    last: usize,
}

/// What a received frame means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A whole message of this length is in the buffer.
    Message(usize),
    /// Send this flow control frame.
    Flow(Frame),
    /// Part of a message: nothing to do.
    Partial,
    /// Not for this receiver (flow control, a consecutive frame with no message under way, or
    /// a frame that is not a valid PDU): ignored, as ISO 15765-2 §9.8.3 asks.
    Ignored,
    /// A message was under way and this frame ended it (wrong sequence number); it is lost.
    Aborted(RxError),
}

/// Why a reception was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxError {
    /// A consecutive frame with the wrong sequence number.
    WrongSequence {
        /// Expected.
        expected: u8,
        /// Received.
        got: u8,
    },
    /// The message is larger than the buffer: overflow was signalled.
    Overflow(u32),
}

impl<'b> Receiver<'b> {
    /// A receiver with `buf` for reassembly, asking senders for `block_size` frames per block
    /// (0: all) at `st_min` (encoded) apart.
    pub fn new(buf: &'b mut [u8], block_size: u8, st_min: u8) -> Receiver<'b> {
        Receiver { buf, progress: None, block_size, st_min, streaming: false, chunk: (0, [0; TX_DL], 0), last: 0 }
    }

    /// [`Receiver::new`], also taking messages longer than `buf` (see the type's docs).
    pub fn streaming(buf: &'b mut [u8], block_size: u8, st_min: u8) -> Receiver<'b> {
        Receiver { streaming: true, ..Receiver::new(buf, block_size, st_min) }
    }

    /// The reassembled message (valid after [`Received::Message`]); of a message longer than
    /// the buffer, its first bytes only.
    pub fn message(&self, len: usize) -> &[u8] {
        &self.buf[..len.min(self.buf.len())]
    }

    /// The payload of the last first or consecutive frame taken, with its offset in the
    /// message (valid after [`Received::Flow`], [`Received::Partial`] or a segmented
    /// [`Received::Message`]).
    pub fn chunk(&self) -> (usize, &[u8]) {
        (self.chunk.0, &self.chunk.1[..self.chunk.2])
    }

    /// The first bytes of the message under way, or of the last one completed (as many as the
    /// buffer holds).
    pub fn head(&self) -> &[u8] {
        let got = self.progress.map(|p| p.1).unwrap_or(self.last);
        &self.buf[..got.min(self.buf.len())]
    }

    fn keep(&mut self, at: usize, data: &[u8]) {
        self.chunk.0 = at;
        self.chunk.1[..data.len()].copy_from_slice(data);
        self.chunk.2 = data.len();
        if at < self.buf.len() {
            let n = data.len().min(self.buf.len() - at);
            self.buf[at..at + n].copy_from_slice(&data[..n]);
        }
    }

    /// Whether a segmented message is under way (the caller times it out after [`N_CR`]).
    pub fn busy(&self) -> bool {
        self.progress.is_some()
    }

    /// Forget a message under way (N_Cr timeout).
    pub fn reset(&mut self) {
        self.progress = None;
    }

    /// Bytes of the message under way.
    pub fn received(&self) -> usize {
        self.progress.map(|p| p.1).unwrap_or(0)
    }

    /// The length the first frame of the message under way announced.
    pub fn announced(&self) -> Option<usize> {
        self.progress.map(|p| p.0)
    }

    /// Take one frame.
    pub fn on_frame(&mut self, frame: &[u8]) -> Received {
        let pdu = match decode(frame) {
            Ok(p) => p,
            // An unknown PCI type or an invalid length: ignored, and a reception under way goes
            // on (ISO 15765-2:2016 §9.6 and §9.8.3).
            Err(_) => return Received::Ignored,
        };
        match pdu {
            Pdu::Single(d) => {
                // A new message replaces one under way (§9.8.3).
                self.progress = None;
                if d.len() > self.buf.len() {
                    return Received::Ignored;
                }
                self.buf[..d.len()].copy_from_slice(d);
                Received::Message(d.len())
            }
            Pdu::First { len, data } => {
                self.progress = None;
                if len as usize > self.buf.len() && !self.streaming {
                    return Received::Aborted(RxError::Overflow(len));
                }
                let n = data.len().min(len as usize);
                self.keep(0, &data[..n]);
                self.progress = Some((len as usize, n, 1, self.block_size));
                Received::Flow(Frame::flow(FlowStatus::ContinueToSend, self.block_size, self.st_min))
            }
            Pdu::Consecutive { sn, data } => {
                let Some((len, got, want, left)) = self.progress else { return Received::Ignored };
                if sn != want {
                    self.progress = None;
                    return Received::Aborted(RxError::WrongSequence { expected: want, got: sn });
                }
                let n = data.len().min(len - got);
                self.keep(got, &data[..n]);
                let got = got + n;
                if got == len {
                    self.progress = None;
                    self.last = len;
                    return Received::Message(len);
                }
                let left = left.saturating_sub(1);
                if self.block_size != 0 && left == 0 {
                    self.progress = Some((len, got, (sn + 1) & 0xF, self.block_size));
                    return Received::Flow(Frame::flow(FlowStatus::ContinueToSend, self.block_size, self.st_min));
                }
                self.progress = Some((len, got, (sn + 1) & 0xF, left));
                Received::Partial
            }
            Pdu::Flow { .. } => Received::Ignored,
        }
    }

    /// The flow control frame that refuses a first frame of `len` bytes (overflow).
    pub fn overflow_frame() -> Frame {
        Frame::flow(FlowStatus::Overflow, 0, 0)
    }
}
