//! ISO 15765-2:2016 conformance of the ISO-TP codec and state machines (CAN FD, TX_DL = 64).
//!
//! Expected bytes come from the standard's frame formats (§9.6): SF `0L` (1-7 bytes) and
//! `00 LL` (8-62 bytes, CAN_DL > 8), FF `1L LL` with 62 data bytes and `10 00 LLLLLLLL` with 58
//! for more than 4095 bytes, CF `2N` with up to 63 bytes, FC `3S BS STmin`; STmin per Table 20;
//! padding with 0xCC up to a CAN FD length.

use std::time::Duration;

use bootproof_uds::isotp::{
    FlowStatus, Frame, MAX_MESSAGE, Next, PADDING, Pdu, PduError, Received, Receiver, RxError, SendError, Sender,
    TX_DL, decode, fd_len, st_min,
};

const FD_LENGTHS: [usize; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64];

/// A message whose bytes differ from their neighbours and from the padding byte.
fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 1) as u8).map(|b| if b == PADDING { 0x5A } else { b }).collect()
}

/// The frames a sender emits for `msg` when the receiver never limits it (BS 0, STmin 0).
fn frames_of(msg: &[u8]) -> Vec<Vec<u8>> {
    let mut tx = Sender::new(msg).unwrap();
    let mut out = Vec::new();
    loop {
        match tx.next() {
            Next::Send(f) => out.push(f.bytes().to_vec()),
            Next::AwaitFlow => tx.on_flow(Frame::flow(FlowStatus::ContinueToSend, 0, 0).bytes()).unwrap(),
            Next::Done => return out,
        }
    }
}

/// Data bytes in a frame of `len` bytes after `pci` bytes of PCI, and the padding after them.
fn assert_padded(frame: &[u8], used: usize) {
    assert!(FD_LENGTHS.contains(&frame.len()), "frame length {} is not a CAN FD length", frame.len());
    assert_eq!(frame.len(), fd_len(used).max(8), "frame of {used} used bytes has the wrong length");
    assert!(frame[used..].iter().all(|b| *b == PADDING), "padding is not 0xCC: {frame:02X?}");
}

/// What a Sender→Receiver loop produced.
struct Transfer {
    message: Vec<u8>,
    frames: Vec<Vec<u8>>,
    flow_controls: Vec<Vec<u8>>,
}

/// Feed every frame the sender emits to the receiver, and every flow control back.
fn transfer(msg: &[u8], block_size: u8, st: u8) -> Transfer {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut rx = Receiver::new(&mut buf, block_size, st);
    let mut tx = Sender::new(msg).unwrap();
    let mut frames = Vec::new();
    let mut flow_controls = Vec::new();
    let mut pending_flow: Option<Frame> = None;
    let mut message = None;
    for _ in 0..10_000 {
        match tx.next() {
            Next::Send(f) => {
                assert!(message.is_none(), "the sender sent after the receiver had the whole message");
                frames.push(f.bytes().to_vec());
                match rx.on_frame(f.bytes()) {
                    Received::Message(n) => message = Some(rx.message(n).to_vec()),
                    Received::Flow(fc) => {
                        assert!(pending_flow.is_none(), "two flow controls without the sender waiting");
                        flow_controls.push(fc.bytes().to_vec());
                        pending_flow = Some(fc);
                    }
                    Received::Partial => {}
                    other => panic!("receiver: {other:?} for frame {:02X?}", f.bytes()),
                }
            }
            Next::AwaitFlow => {
                let fc = pending_flow.take().expect("the sender waits for flow control the receiver did not send");
                tx.on_flow(fc.bytes()).unwrap();
                assert_eq!(tx.st_min(), st_min(st));
            }
            Next::Done => {
                assert!(pending_flow.is_none(), "flow control left over after the last frame");
                assert!(!rx.busy());
                assert_eq!(tx.sent(), msg.len());
                let message = message.expect("the sender finished but the receiver has no message");
                return Transfer { message, frames, flow_controls };
            }
        }
    }
    panic!("no end after 10,000 steps");
}

/// Consecutive frames after a first frame for a message of `len` bytes.
fn consecutive_frames(len: usize) -> usize {
    let first = if len <= 4095 { 62 } else { 58 };
    (len - first).div_ceil(63)
}

const LENGTHS: &[usize] =
    &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 61, 62, 63, 64, 125, 126, 127, 128, 188, 189, 4095, 4096, 4160];

#[test]
fn round_trip_every_length_with_exact_frame_formats() {
    for &len in LENGTHS {
        let msg = message(len);
        let frames = frames_of(&msg);
        let first = &frames[0];
        // Reassemble by decoding every frame.
        let mut got = Vec::new();
        match len {
            1..=7 => {
                assert_eq!(frames.len(), 1, "len {len}");
                assert_eq!(first[0], len as u8, "SF classic PCI 0L");
                assert_padded(first, 1 + len);
                assert_eq!(first.len(), 8);
                assert_eq!(decode(first), Ok(Pdu::Single(&msg)));
                got.extend_from_slice(&msg);
            }
            8..=62 => {
                assert_eq!(frames.len(), 1, "len {len}");
                assert_eq!(&first[..2], &[0x00, len as u8], "SF escape PCI 00 LL");
                assert_padded(first, 2 + len);
                assert!(first.len() > 8);
                assert_eq!(decode(first), Ok(Pdu::Single(&msg)));
                got.extend_from_slice(&msg);
            }
            _ => {
                assert_eq!(first.len(), TX_DL, "a first frame uses the whole TX_DL");
                let data_at = if len <= 4095 {
                    assert_eq!(&first[..2], &[0x10 | (len >> 8) as u8, len as u8], "FF PCI 1L LL");
                    2
                } else {
                    assert_eq!(&first[..2], &[0x10, 0x00], "FF escape PCI 10 00");
                    assert_eq!(&first[2..6], &(len as u32).to_be_bytes(), "FF escape length");
                    6
                };
                match decode(first) {
                    Ok(Pdu::First { len: l, data }) => {
                        assert_eq!(l as usize, len);
                        assert_eq!(data, &msg[..TX_DL - data_at]);
                        got.extend_from_slice(data);
                    }
                    other => panic!("len {len}: first frame decodes as {other:?}"),
                }
                assert_eq!(frames.len(), 1 + consecutive_frames(len), "len {len}");
                for (i, cf) in frames[1..].iter().enumerate() {
                    let left = len - got.len();
                    let n = left.min(63);
                    assert_eq!(cf[0], 0x20 | ((i + 1) & 0xF) as u8, "CF PCI 2N");
                    if n == 63 {
                        assert_eq!(cf.len(), TX_DL);
                    }
                    assert_padded(cf, 1 + n);
                    match decode(cf) {
                        Ok(Pdu::Consecutive { sn, data }) => {
                            assert_eq!(sn as usize, (i + 1) & 0xF);
                            got.extend_from_slice(&data[..n]);
                        }
                        other => panic!("len {len}: CF {i} decodes as {other:?}"),
                    }
                }
            }
        }
        assert_eq!(got, msg, "len {len}: decoded frames reassemble the message");
        // And through the receiver.
        assert_eq!(transfer(&msg, 0, 0).message, msg, "len {len}: receiver reassembly");
    }
}

#[test]
fn specific_frames_byte_for_byte() {
    assert_eq!(frames_of(&[0x10, 0x02]), vec![vec![0x02, 0x10, 0x02, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]]);
    assert_eq!(frames_of(&[1, 2, 3, 4, 5, 6, 7]), vec![vec![0x07, 1, 2, 3, 4, 5, 6, 7]]);
    // 8 bytes: escape SF, 10 bytes used, padded to 12.
    let f = &frames_of(&[9; 8])[0];
    assert_eq!(f, &[0x00, 0x08, 9, 9, 9, 9, 9, 9, 9, 9, 0xCC, 0xCC]);
    // 62 bytes fill a 64-byte escaped SF exactly.
    let f = &frames_of(&[9; 62])[0];
    assert_eq!((f.len(), f[0], f[1]), (64, 0x00, 62));
    // 63 bytes: FF with 62, then CF `21` with one byte, padded to 8.
    let fs = frames_of(&[9; 63]);
    assert_eq!(&fs[0][..3], &[0x10, 0x3F, 9]);
    assert_eq!(fs[1], vec![0x21, 9, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]);
    // 4095: the largest 12-bit FF_DL.
    assert_eq!(&frames_of(&[9; 4095])[0][..3], &[0x1F, 0xFF, 9]);
    // 4096: escape FF with the 32-bit length and 58 bytes of data.
    assert_eq!(&frames_of(&[9; 4096])[0][..7], &[0x10, 0x00, 0x00, 0x00, 0x10, 0x00, 9]);
    // Flow control: 3S BS STmin, padded to 8.
    assert_eq!(
        Frame::flow(FlowStatus::ContinueToSend, 8, 0x14).bytes(),
        &[0x30, 8, 0x14, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]
    );
    assert_eq!(Frame::flow(FlowStatus::Wait, 0, 0).bytes()[0], 0x31);
    assert_eq!(Receiver::overflow_frame().bytes(), &[0x32, 0, 0, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]);
}

#[test]
fn an_empty_message_has_no_encoding() {
    // SF_DL = 0 is invalid (§9.6.2.2): the sender refuses rather than emit a frame receivers ignore.
    assert_eq!(Sender::new(&[]).unwrap_err(), SendError::Empty);
    let mut buf = [0u8; 16];
    let mut rx = Receiver::new(&mut buf, 0, 0);
    assert_eq!(rx.on_frame(&[0x00, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]), Received::Ignored);
}

#[test]
fn sender_receiver_loop_with_block_sizes() {
    for &bs in &[0u8, 1, 8] {
        for &len in &[63usize, 64, 125, 126, 127, 500, 1000, 4095, 4096, 4160] {
            let msg = message(len);
            let t = transfer(&msg, bs, 0);
            assert_eq!(t.message, msg, "bs {bs} len {len}");
            let cfs = consecutive_frames(len);
            assert_eq!(t.frames.len(), 1 + cfs, "bs {bs} len {len}");
            // One flow control after the FF, then one after every full block that is not the last.
            let expected = if bs == 0 { 1 } else { 1 + (cfs - 1) / bs as usize };
            assert_eq!(t.flow_controls.len(), expected, "bs {bs} len {len}: flow controls");
            for fc in &t.flow_controls {
                assert_eq!(&fc[..3], &[0x30, bs, 0], "bs {bs} len {len}");
            }
        }
        // Single frames need no flow control.
        for len in 1..=62 {
            let t = transfer(&message(len), bs, 0);
            assert_eq!((t.frames.len(), t.flow_controls.len()), (1, 0));
        }
    }
}

#[test]
fn sender_stops_after_each_block_until_flow_control() {
    let msg = message(62 + 63 * 5);
    let mut tx = Sender::new(&msg).unwrap();
    assert!(matches!(tx.next(), Next::Send(f) if f.data[0] == 0x11));
    assert_eq!(tx.next(), Next::AwaitFlow);
    assert_eq!(tx.next(), Next::AwaitFlow, "still waiting without flow control");
    tx.on_flow(Frame::flow(FlowStatus::ContinueToSend, 2, 0xF3).bytes()).unwrap();
    assert_eq!(tx.st_min(), Duration::from_micros(300));
    assert!(matches!(tx.next(), Next::Send(f) if f.data[0] == 0x21));
    assert!(matches!(tx.next(), Next::Send(f) if f.data[0] == 0x22));
    assert_eq!(tx.next(), Next::AwaitFlow, "block of 2 done");
    tx.on_flow(Frame::flow(FlowStatus::ContinueToSend, 0, 5).bytes()).unwrap();
    assert_eq!(tx.st_min(), Duration::from_millis(5));
    for sn in 3..=5 {
        assert!(matches!(tx.next(), Next::Send(f) if f.data[0] == 0x20 | sn));
    }
    assert_eq!(tx.next(), Next::Done);
    assert_eq!(tx.sent(), msg.len());
}

#[test]
fn sequence_numbers_wrap_from_15_to_0() {
    let frames = frames_of(&message(62 + 63 * 40));
    let sns: Vec<u8> = frames[1..].iter().map(|f| f[0] & 0xF).collect();
    assert_eq!(&sns[..17], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1]);
    assert!(frames[1..].iter().all(|f| f[0] >> 4 == 2));
    for (i, sn) in sns.iter().enumerate() {
        assert_eq!(*sn as usize, (i + 1) % 16);
    }
    // The receiver follows the wrap (more than 16 CFs, several times).
    let msg = message(62 + 63 * 40);
    assert_eq!(transfer(&msg, 0, 0).message, msg);
    assert_eq!(transfer(&msg, 8, 0).message, msg);
}

#[test]
fn wrong_sequence_number_aborts_the_reception() {
    let msg = message(200);
    let frames = frames_of(&msg);
    let mut buf = [0u8; 256];
    let mut rx = Receiver::new(&mut buf, 0, 0);
    assert!(matches!(rx.on_frame(&frames[0]), Received::Flow(_)));
    assert_eq!(rx.on_frame(&frames[1]), Received::Partial);
    assert!(rx.busy());
    // CF 3 where 2 is due.
    assert_eq!(rx.on_frame(&frames[3]), Received::Aborted(RxError::WrongSequence { expected: 2, got: 3 }));
    assert!(!rx.busy());
    assert_eq!(rx.received(), 0);
    // The message is lost: its remaining frames are ignored.
    assert_eq!(rx.on_frame(&frames[2]), Received::Ignored);
    // A repeated CF (1 again after 1) is wrong too.
    assert!(matches!(rx.on_frame(&frames[0]), Received::Flow(_)));
    assert_eq!(rx.on_frame(&frames[1]), Received::Partial);
    assert_eq!(rx.on_frame(&frames[1]), Received::Aborted(RxError::WrongSequence { expected: 2, got: 1 }));
}

#[test]
fn first_frame_larger_than_the_buffer_overflows() {
    let msg = message(300);
    let frames = frames_of(&msg);
    let mut buf = [0u8; 299];
    let mut rx = Receiver::new(&mut buf, 0, 0);
    assert_eq!(rx.on_frame(&frames[0]), Received::Aborted(RxError::Overflow(300)));
    assert!(!rx.busy());
    assert_eq!(rx.on_frame(&frames[1]), Received::Ignored);
    // Exactly the buffer's size fits.
    let mut buf = [0u8; 300];
    let mut rx = Receiver::new(&mut buf, 0, 0);
    assert!(matches!(rx.on_frame(&frames[0]), Received::Flow(_)));
    // The sender given the overflow flow control stops.
    let mut tx = Sender::new(&msg).unwrap();
    assert!(matches!(tx.next(), Next::Send(_)));
    assert_eq!(tx.next(), Next::AwaitFlow);
    assert_eq!(tx.on_flow(Receiver::overflow_frame().bytes()), Err(SendError::Overflow));
}

#[test]
fn flow_control_wait_keeps_the_sender_waiting() {
    let msg = message(100);
    let mut tx = Sender::new(&msg).unwrap();
    assert!(matches!(tx.next(), Next::Send(_)));
    for _ in 0..3 {
        assert_eq!(tx.next(), Next::AwaitFlow);
        tx.on_flow(Frame::flow(FlowStatus::Wait, 0, 0).bytes()).unwrap();
    }
    assert_eq!(tx.next(), Next::AwaitFlow);
    tx.on_flow(Frame::flow(FlowStatus::ContinueToSend, 0, 0).bytes()).unwrap();
    assert!(matches!(tx.next(), Next::Send(f) if f.data[0] == 0x21));
    assert_eq!(tx.next(), Next::Done);
}

#[test]
fn sender_rejects_what_is_not_flow_control() {
    let msg = message(100);
    let mut tx = Sender::new(&msg).unwrap();
    assert!(matches!(tx.next(), Next::Send(_)));
    assert_eq!(tx.on_flow(&[0x33, 0, 0, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]), Err(SendError::UnexpectedPdu));
    assert_eq!(tx.on_flow(&[0x02, 0x50, 0x01, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]), Err(SendError::UnexpectedPdu));
}

#[test]
fn a_new_single_or_first_frame_replaces_a_reception() {
    let a = message(300);
    let fa = frames_of(&a);
    let mut buf = vec![0u8; 1024];
    let mut rx = Receiver::new(&mut buf, 0, 0);
    assert!(matches!(rx.on_frame(&fa[0]), Received::Flow(_)));
    assert_eq!(rx.on_frame(&fa[1]), Received::Partial);
    // A single frame: delivered, and the segmented message is dropped.
    assert_eq!(rx.on_frame(&[0x03, 0xAA, 0xBB, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]), Received::Message(3));
    assert_eq!(rx.message(3), &[0xAA, 0xBB, 0xCC]);
    assert!(!rx.busy());
    assert_eq!(rx.on_frame(&fa[2]), Received::Ignored);
    // A first frame: the new message starts over from sequence number 1.
    let b: Vec<u8> = message(150).iter().map(|x| x ^ 0xFF).collect();
    let fb = frames_of(&b);
    assert!(matches!(rx.on_frame(&fa[0]), Received::Flow(_)));
    assert_eq!(rx.on_frame(&fa[1]), Received::Partial);
    assert!(matches!(rx.on_frame(&fb[0]), Received::Flow(_)));
    assert_eq!(rx.received(), 62);
    assert_eq!(rx.on_frame(&fb[1]), Received::Partial);
    assert_eq!(rx.on_frame(&fb[2]), Received::Message(150));
    assert_eq!(rx.message(150), &b[..]);
}

#[test]
fn malformed_frames_are_named() {
    assert_eq!(decode(&[]), Err(PduError::Empty));
    for t in 4..=15u8 {
        assert_eq!(decode(&[t << 4, 0, 0, 0, 0, 0, 0, 0]), Err(PduError::UnknownType(t)));
    }
    // SF classic: length above 7.
    assert_eq!(decode(&[0x08, 1, 2, 3, 4, 5, 6, 7]), Err(PduError::BadLength));
    assert_eq!(decode(&[0x0F, 1, 2, 3, 4, 5, 6, 7]), Err(PduError::BadLength));
    // SF classic in a frame longer than 8 bytes (CAN_DL > 8 needs the escape).
    let mut f = [PADDING; 12];
    f[0] = 0x05;
    assert_eq!(decode(&f), Err(PduError::BadLength));
    // SF classic longer than its frame.
    assert_eq!(decode(&[0x07, 1, 2, 3]), Err(PduError::BadLength));
    // SF escape with a length below 8.
    let mut f = [PADDING; 12];
    f[..2].copy_from_slice(&[0x00, 0x07]);
    assert_eq!(decode(&f), Err(PduError::BadLength));
    f[1] = 0x00;
    assert_eq!(decode(&f), Err(PduError::BadLength));
    // SF escape longer than its frame, or in a frame of 8 bytes or fewer.
    f[1] = 11;
    assert_eq!(decode(&f), Err(PduError::BadLength));
    assert_eq!(decode(&[0x00, 0x08, 1, 2, 3, 4, 5, 6]), Err(PduError::BadLength));
    assert_eq!(decode(&[0x00]), Err(PduError::BadLength));
    // ... and the valid edges.
    f[1] = 10;
    assert!(matches!(decode(&f), Ok(Pdu::Single(d)) if d.len() == 10));
    assert!(matches!(decode(&[0x01, 0x3E, 0xCC]), Ok(Pdu::Single(&[0x3E]))));
    // FF whose length fits a single frame of its size.
    let mut ff = [0x55u8; 64];
    ff[..2].copy_from_slice(&[0x10, 62]);
    assert_eq!(decode(&ff), Err(PduError::BadFirstFrame));
    ff[..6].copy_from_slice(&[0x10, 0, 0, 0, 0, 0]);
    assert_eq!(decode(&ff), Err(PduError::BadFirstFrame), "FF_DL 0 (escape with 0)");
    ff[..2].copy_from_slice(&[0x10, 62]);
    ff[1] = 63;
    assert!(matches!(decode(&ff), Ok(Pdu::First { len: 63, .. })));
    // In a classic 8-byte frame, 7 fits a single frame and 8 does not.
    assert_eq!(decode(&[0x10, 7, 1, 2, 3, 4, 5, 6]), Err(PduError::BadFirstFrame));
    assert!(matches!(decode(&[0x10, 8, 1, 2, 3, 4, 5, 6]), Ok(Pdu::First { len: 8, data: &[1, 2, 3, 4, 5, 6] })));
    // FF escape with a length that fits the 12-bit format.
    ff[..6].copy_from_slice(&[0x10, 0, 0, 0, 0x0F, 0xFF]);
    assert_eq!(decode(&ff), Err(PduError::BadFirstFrame));
    ff[4..6].copy_from_slice(&[0x10, 0x00]);
    assert!(matches!(decode(&ff), Ok(Pdu::First { len: 4096, data }) if data.len() == 58));
    // A first frame shorter than 8 bytes.
    assert_eq!(decode(&[0x10, 0x40, 1, 2]), Err(PduError::BadFirstFrame));
    // FC: status 3 and above, and too short.
    assert_eq!(decode(&[0x33, 0, 0]), Err(PduError::BadFlowStatus(3)));
    assert_eq!(decode(&[0x3F, 0, 0]), Err(PduError::BadFlowStatus(15)));
    assert_eq!(decode(&[0x30, 0]), Err(PduError::BadLength));
    assert_eq!(decode(&[0x31, 4, 0xF5]), Ok(Pdu::Flow { status: FlowStatus::Wait, block_size: 4, st_min: 0xF5 }));
    // Every error has a message.
    for e in [
        PduError::Empty,
        PduError::UnknownType(4),
        PduError::BadLength,
        PduError::BadFirstFrame,
        PduError::BadFlowStatus(3),
    ] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn frames_that_are_not_for_the_receiver_are_ignored() {
    let mut buf = [0u8; 64];
    let mut rx = Receiver::new(&mut buf, 0, 0);
    // A CF with no message under way.
    assert_eq!(rx.on_frame(&[0x21, 1, 2, 3, 4, 5, 6, 7]), Received::Ignored);
    // Flow control (ours to send, not to receive).
    assert_eq!(rx.on_frame(&[0x30, 0, 0, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]), Received::Ignored);
    // A malformed frame with nothing under way.
    assert_eq!(rx.on_frame(&[0x40, 0, 0]), Received::Ignored);
    assert_eq!(rx.on_frame(&[]), Received::Ignored);
    // An SF larger than the buffer.
    let mut small = [0u8; 4];
    let mut rx = Receiver::new(&mut small, 0, 0);
    assert_eq!(rx.on_frame(&[0x05, 1, 2, 3, 4, 5, 0xCC, 0xCC]), Received::Ignored);
    assert_eq!(rx.on_frame(&[0x04, 1, 2, 3, 4, 0xCC, 0xCC, 0xCC]), Received::Message(4));
}

#[test]
fn receiver_sends_flow_control_per_block() {
    let msg = message(62 + 63 * 7);
    let frames = frames_of(&msg);
    let mut buf = vec![0u8; 1024];
    let mut rx = Receiver::new(&mut buf, 3, 0x0A);
    let fc = [0x30, 3, 0x0A, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC];
    assert!(matches!(rx.on_frame(&frames[0]), Received::Flow(f) if f.bytes() == fc));
    let got: Vec<Received> = frames[1..].iter().map(|f| rx.on_frame(f)).collect();
    let kinds: Vec<&str> = got
        .iter()
        .map(|r| match r {
            Received::Flow(f) => {
                assert_eq!(f.bytes(), fc);
                "flow"
            }
            Received::Partial => "partial",
            Received::Message(_) => "message",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["partial", "partial", "flow", "partial", "partial", "flow", "message"]);
    assert_eq!(rx.message(msg.len()), &msg[..]);
}

#[test]
fn a_frame_that_is_not_a_valid_pdu_is_ignored_and_the_reception_goes_on() {
    // ISO 15765-2:2016 §9.6 and §9.8.3: an unknown PCI type, or a single frame with an invalid
    // length, is ignored; it does not end the reception under way.
    let msg = message(200);
    let frames = frames_of(&msg);
    let mut buf = [0u8; 256];
    let mut rx = Receiver::new(&mut buf, 0, 0);
    assert!(matches!(rx.on_frame(&frames[0]), Received::Flow(_)));
    assert_eq!(rx.on_frame(&[0x40, 0, 0]), Received::Ignored, "unknown PCI type 4");
    assert_eq!(rx.on_frame(&[0x00]), Received::Ignored, "an FD single frame without its length byte");
    assert!(rx.busy());
    let mut last = Received::Ignored;
    for f in &frames[1..] {
        last = rx.on_frame(f);
    }
    assert_eq!(last, Received::Message(msg.len()));
    assert_eq!(rx.message(msg.len()), &msg[..]);
}

#[test]
fn st_min_encoding() {
    assert_eq!(st_min(0x00), Duration::ZERO);
    assert_eq!(st_min(0x01), Duration::from_millis(1));
    assert_eq!(st_min(0x7F), Duration::from_millis(127));
    assert_eq!(st_min(0xF1), Duration::from_micros(100));
    assert_eq!(st_min(0xF5), Duration::from_micros(500));
    assert_eq!(st_min(0xF9), Duration::from_micros(900));
    // Reserved values count as 127 ms.
    for reserved in [0x80, 0xAA, 0xF0, 0xFA, 0xFF] {
        assert_eq!(st_min(reserved), Duration::from_millis(127), "{reserved:#x}");
    }
}

#[test]
fn fd_lengths() {
    for n in 0..=8 {
        assert_eq!(fd_len(n), n);
    }
    let cases = [(9, 12), (12, 12), (13, 16), (17, 20), (21, 24), (25, 32), (32, 32), (33, 48), (49, 64), (64, 64)];
    for (n, len) in cases {
        assert_eq!(fd_len(n), len, "{n}");
    }
}
