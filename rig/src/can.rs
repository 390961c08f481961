//! CAN and CAN FD frames, the [`CanBus`] capability, and the physics of frame wire time.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::CanError;

/// An 11-bit or 29-bit identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CanId {
    /// 11-bit base identifier.
    Standard(u16),
    /// 29-bit extended identifier.
    Extended(u32),
}

impl CanId {
    /// A standard ID; fails above 0x7FF.
    pub fn standard(id: u16) -> Result<CanId, CanError> {
        if id <= 0x7FF {
            Ok(CanId::Standard(id))
        } else {
            Err(CanError::InvalidFrame(format!("standard ID {id:#x} is above 0x7FF")))
        }
    }

    /// The raw identifier value.
    pub fn raw(self) -> u32 {
        match self {
            CanId::Standard(id) => id as u32,
            CanId::Extended(id) => id,
        }
    }
}

impl fmt::Display for CanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CanId::Standard(id) => write!(f, "{id:03X}"),
            CanId::Extended(id) => write!(f, "{id:08X}"),
        }
    }
}

/// Valid CAN FD payload lengths.
pub const FD_LENGTHS: [usize; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64];

/// A classic or FD data frame (remote frames are classic only).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CanFrame {
    id: CanId,
    len: u8,
    data: [u8; 64],
    fd: bool,
    brs: bool,
    rtr: bool,
}

impl CanFrame {
    /// A classic data frame of up to 8 bytes.
    pub fn classic(id: CanId, data: &[u8]) -> Result<CanFrame, CanError> {
        if data.len() > 8 {
            return Err(CanError::InvalidFrame(format!("{} bytes do not fit a classic frame (max 8)", data.len())));
        }
        Ok(Self::raw(id, data, false, false))
    }

    /// An FD frame. `data.len()` must be one of [`FD_LENGTHS`]; see [`CanFrame::fd_padded`].
    pub fn fd(id: CanId, data: &[u8], brs: bool) -> Result<CanFrame, CanError> {
        if !FD_LENGTHS.contains(&data.len()) {
            return Err(CanError::InvalidFrame(format!(
                "{} bytes is not a CAN FD length (0-8, 12, 16, 20, 24, 32, 48, 64)",
                data.len()
            )));
        }
        Ok(Self::raw(id, data, true, brs))
    }

    /// An FD frame padded with `pad` up to the next valid FD length.
    pub fn fd_padded(id: CanId, data: &[u8], brs: bool, pad: u8) -> Result<CanFrame, CanError> {
        let len = FD_LENGTHS
            .iter()
            .copied()
            .find(|l| *l >= data.len())
            .ok_or_else(|| CanError::InvalidFrame(format!("{} bytes exceed the 64-byte FD maximum", data.len())))?;
        let mut f = Self::raw(id, data, true, brs);
        f.data[data.len()..len].fill(pad);
        f.len = len as u8;
        Ok(f)
    }

    /// A classic remote frame.
    pub fn remote(id: CanId, dlc: u8) -> Result<CanFrame, CanError> {
        let mut f = Self::raw(id, &[], false, false);
        f.rtr = true;
        f.len = dlc.min(8);
        Ok(f)
    }

    fn raw(id: CanId, data: &[u8], fd: bool, brs: bool) -> CanFrame {
        let mut buf = [0u8; 64];
        buf[..data.len()].copy_from_slice(data);
        CanFrame { id, len: data.len() as u8, data: buf, fd, brs, rtr: false }
    }

    /// Identifier.
    pub fn id(&self) -> CanId {
        self.id
    }
    /// Payload (empty for remote frames).
    pub fn data(&self) -> &[u8] {
        if self.rtr { &[] } else { &self.data[..self.len as usize] }
    }
    /// Whether this is an FD frame.
    pub fn is_fd(&self) -> bool {
        self.fd
    }
    /// Whether the data phase uses the data bit rate.
    pub fn is_brs(&self) -> bool {
        self.brs
    }
    /// Whether this is a remote frame.
    pub fn is_remote(&self) -> bool {
        self.rtr
    }
    /// The 4-bit DLC code.
    pub fn dlc(&self) -> u8 {
        if self.rtr {
            return self.len;
        }
        FD_LENGTHS.iter().position(|l| *l == self.len as usize).unwrap_or(0) as u8
    }
}

impl fmt::Debug for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// candump-style: `123   [8]  01 02 03 04 05 06 07 08`, FD frames as `123  [64]  ... (BRS)`.
impl fmt::Display for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.id.to_string();
        if self.rtr {
            return write!(f, "{id:>8}   [{}]  remote request", self.len);
        }
        let width = if self.fd { 2 } else { 1 };
        write!(f, "{id:>8}   [{:0width$}] ", self.len)?;
        for b in self.data() {
            write!(f, " {b:02X}")?;
        }
        if self.fd {
            f.write_str(if self.brs { "  FD BRS" } else { "  FD" })?;
        }
        Ok(())
    }
}

/// An acceptance filter: a frame passes when `frame_id & mask == id & mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanFilter {
    /// Identifier to match.
    pub id: u32,
    /// Bits that must match.
    pub mask: u32,
    /// Match extended (29-bit) identifiers instead of standard ones.
    pub extended: bool,
}

impl CanFilter {
    /// Match exactly one standard ID.
    pub fn standard(id: u16) -> CanFilter {
        CanFilter { id: id as u32, mask: 0x7FF, extended: false }
    }

    /// Whether `frame` passes this filter.
    pub fn matches(&self, id: CanId) -> bool {
        match (id, self.extended) {
            (CanId::Standard(i), false) => (i as u32 & self.mask) == (self.id & self.mask),
            (CanId::Extended(i), true) => (i & self.mask) == (self.id & self.mask),
            _ => false,
        }
    }
}

/// A bus-level error reported by the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// A transmitted frame got no acknowledgement: nobody is listening at these bit rates.
    NoAck,
    /// The controller went bus-off.
    BusOff,
    /// The controller is error-passive.
    ErrorPassive,
    /// Bit, stuff, form or CRC errors seen on the bus (e.g. a bit-rate mismatch).
    Protocol(String),
    /// The receive queue overflowed; frames were lost.
    Overflow,
    /// Anything else.
    Other(String),
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::NoAck => f.write_str(
                "no ACK: no node acknowledged the frame (check bit rates, termination and that the board is powered)",
            ),
            BusError::BusOff => {
                f.write_str("bus-off (check wiring and termination; the interface restarts after restart-ms)")
            }
            BusError::ErrorPassive => f.write_str("error-passive"),
            BusError::Protocol(s) => write!(f, "protocol error: {s}"),
            BusError::Overflow => f.write_str("receive overflow: frames were lost"),
            BusError::Other(s) => f.write_str(s),
        }
    }
}

/// What a receive returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanEvent {
    /// A data or remote frame.
    Frame(CanFrame),
    /// A bus error.
    Error(BusError),
}

/// Nominal and data bit rates of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitrates {
    /// Arbitration-phase bit rate.
    pub nominal: u32,
    /// Data-phase bit rate, if the interface is CAN FD.
    pub data: Option<u32>,
}

impl Bitrates {
    /// Classic CAN at `nominal`.
    pub fn classic(nominal: u32) -> Bitrates {
        Bitrates { nominal, data: None }
    }
    /// CAN FD.
    pub fn fd(nominal: u32, data: u32) -> Bitrates {
        Bitrates { nominal, data: Some(data) }
    }
}

impl fmt::Display for Bitrates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.data {
            Some(d) => write!(f, "{} kbit/s / {} kbit/s FD", self.nominal / 1000, d / 1000),
            None => write!(f, "{} kbit/s", self.nominal / 1000),
        }
    }
}

/// A CAN interface.
#[async_trait]
pub trait CanBus: Send {
    /// The interface's bit rates.
    fn bitrates(&self) -> Bitrates;
    /// Queue a frame for transmission; returns once the frame has been sent on the wire.
    async fn send(&mut self, frame: &CanFrame) -> Result<(), CanError>;
    /// The next frame or bus error, or [`CanError::Timeout`].
    async fn recv(&mut self, timeout: Duration) -> Result<CanEvent, CanError>;
    /// Replace the acceptance filters (empty = accept all).
    fn set_filters(&mut self, filters: &[CanFilter]) -> Result<(), CanError>;
}

/// Bit counts of one frame on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameBits {
    /// Bits sent at the nominal rate (including stuff bits).
    pub nominal: u32,
    /// Bits sent at the data rate (FD with BRS; zero otherwise).
    pub data: u32,
    /// Stuff bits among them (dynamic and FD fixed stuff bits).
    pub stuff: u32,
}

impl FrameBits {
    /// Wire time at `rates`. FD frames without a data rate count everything at nominal.
    pub fn duration(&self, rates: Bitrates) -> Duration {
        let nominal_ns = self.nominal as u64 * 1_000_000_000 / rates.nominal as u64;
        let data_ns = match rates.data {
            Some(d) => self.data as u64 * 1_000_000_000 / d as u64,
            None => self.data as u64 * 1_000_000_000 / rates.nominal as u64,
        };
        Duration::from_nanos(nominal_ns + data_ns)
    }
}

/// Exact bit count of `frame`, per ISO 11898-1:2015: dynamic stuffing over the real CRC,
/// FD stuff count and fixed stuff bits, 3-bit intermission included.
pub fn frame_bits(frame: &CanFrame) -> FrameBits {
    let mut bits = Bits::default();
    bits.push(false); // SOF
    match frame.id {
        CanId::Standard(id) => {
            bits.push_value(id as u32, 11);
            bits.push(frame.rtr && !frame.fd); // RTR / RRS
            bits.push(false); // IDE
        }
        CanId::Extended(id) => {
            bits.push_value(id >> 18, 11);
            bits.push(true); // SRR
            bits.push(true); // IDE
            bits.push_value(id & 0x3FFFF, 18);
            bits.push(frame.rtr && !frame.fd); // RTR / RRS
        }
    }
    let data_bits: Vec<bool> = frame.data().iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)).collect();
    if !frame.fd {
        bits.push(false); // r0 (r1 too for extended, counted in IDE position above: r1,r0)
        if matches!(frame.id, CanId::Extended(_)) {
            bits.push(false);
        }
        bits.push_value(frame.dlc() as u32, 4);
        bits.extend(&data_bits);
        let crc = crc(&bits.v, 15, 0x4599);
        bits.push_value(crc, 15);
        let stuffed = stuff_count(&bits.v);
        // CRC delimiter, ACK slot, ACK delimiter, EOF 7, intermission 3.
        let total = bits.v.len() as u32 + stuffed + 13;
        return FrameBits { nominal: total, data: 0, stuff: stuffed };
    }
    // FD: FDF, res, BRS at nominal rate; ESI onwards in the data phase.
    bits.push(true); // FDF
    bits.push(false); // res
    bits.push(frame.brs); // BRS
    let arbitration_len = bits.v.len();
    bits.push(false); // ESI (error active)
    bits.push_value(frame.dlc() as u32, 4);
    bits.extend(&data_bits);
    // Dynamic stuffing up to the end of the data field; the ISO CRC covers the stuff bits.
    let (stuffed_stream, stuff_positions) = stuff(&bits.v);
    let stuff_in_arbitration = stuff_positions.iter().filter(|p| **p < arbitration_len).count() as u32;
    let dynamic = stuff_positions.len() as u32;
    // Stuff count (4 bits) and CRC-17 (up to 16 bytes) or CRC-21, with a fixed stuff bit before
    // the stuff count and after every 4 bits. Fixed stuffing is unconditional, so the length
    // does not depend on the CRC value.
    let crc_len = if frame.len <= 16 { 17 } else { 21 };
    let sc_crc = 4 + crc_len;
    let fixed = 1 + (sc_crc - 1) / 4;
    let arbitration = arbitration_len as u32 + stuff_in_arbitration;
    let data_phase = (stuffed_stream.len() as u32 - arbitration) + sc_crc + fixed + 1; // + CRC delimiter
    let (nominal, data) = if frame.brs { (arbitration + 12, data_phase) } else { (arbitration + 12 + data_phase, 0) };
    FrameBits { nominal, data, stuff: dynamic + fixed }
}

/// Wire time of `frame` at `rates`.
pub fn wire_time(frame: &CanFrame, rates: Bitrates) -> Duration {
    frame_bits(frame).duration(rates)
}

#[derive(Default)]
struct Bits {
    v: Vec<bool>,
}

impl Bits {
    fn push(&mut self, b: bool) {
        self.v.push(b);
    }
    fn push_value(&mut self, value: u32, n: u32) {
        for i in (0..n).rev() {
            self.v.push(value >> i & 1 == 1);
        }
    }
    fn extend(&mut self, bits: &[bool]) {
        self.v.extend_from_slice(bits);
    }
}

/// Number of stuff bits classic CAN inserts into `bits` (after 5 equal bits, a complement).
fn stuff_count(bits: &[bool]) -> u32 {
    stuff(bits).1.len() as u32
}

/// The stuffed stream and the positions (in the unstuffed input) after which stuff bits follow.
fn stuff(bits: &[bool]) -> (Vec<bool>, Vec<usize>) {
    let mut out = Vec::with_capacity(bits.len() + bits.len() / 4);
    let mut positions = Vec::new();
    let mut run = 0;
    let mut last = None;
    for (i, &b) in bits.iter().enumerate() {
        if Some(b) == last {
            run += 1;
        } else {
            run = 1;
            last = Some(b);
        }
        out.push(b);
        if run == 5 {
            out.push(!b);
            positions.push(i);
            last = Some(!b);
            run = 1;
        }
    }
    (out, positions)
}

fn crc(bits: &[bool], len: u32, poly: u32) -> u32 {
    let mask = (1u32 << len) - 1;
    let mut reg = 0u32;
    for &b in bits {
        let top = (reg >> (len - 1)) & 1 == 1;
        reg = (reg << 1) & mask;
        if top ^ b {
            reg ^= poly;
        }
    }
    reg & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_id(id: u16) -> CanId {
        CanId::standard(id).unwrap()
    }

    #[test]
    fn classic_eight_byte_frame_is_between_111_and_135_bits() {
        // update-design §5: 111 bits unstuffed, 135 worst case.
        let mut seed = 0x1234_5678u32;
        for _ in 0..500 {
            let mut data = [0u8; 8];
            for b in &mut data {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (seed >> 16) as u8;
            }
            let bits = frame_bits(&CanFrame::classic(std_id((seed >> 5) as u16 & 0x7FF), &data).unwrap());
            assert!((111..=135).contains(&bits.nominal), "{bits:?}");
            assert_eq!(bits.data, 0);
        }
    }

    #[test]
    fn stuffing_depends_on_content() {
        // All-zero data stuffs every fifth bit; alternating data never stuffs in the payload.
        let zeros = frame_bits(&CanFrame::classic(std_id(0x555), &[0; 8]).unwrap());
        let alt = frame_bits(&CanFrame::classic(std_id(0x555), &[0x55; 8]).unwrap());
        assert!(zeros.stuff >= 64 / 5, "{zeros:?}");
        assert!(alt.stuff < zeros.stuff, "{alt:?} vs {zeros:?}");
        assert_eq!(alt.nominal - alt.stuff, 111);
    }

    #[test]
    fn stuff_inserts_complement_after_five_equal_bits() {
        let (out, pos) = stuff(&[false; 10]);
        // 00000 [1] 00000 [1]: the stuff bit starts a run of its own value.
        assert_eq!(pos, vec![4, 9]);
        assert_eq!(out.len(), 12);
        assert!(out[5] && out[11]);
        // A run continuing the stuff bit's value is stuffed after 4 more: 00000 [1] 1111 [0].
        let (_, pos) = stuff(&[false, false, false, false, false, true, true, true, true]);
        assert_eq!(pos, vec![4, 8]);
    }

    #[test]
    fn classic_crc15_matches_a_known_vector() {
        // CRC-15/CAN of the ASCII bytes "123456789" is 0x059E.
        let bits: Vec<bool> = b"123456789".iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)).collect();
        assert_eq!(crc(&bits, 15, 0x4599), 0x059E);
    }

    #[test]
    fn fd_64_byte_frame_time_matches_the_physics_table() {
        // update-design §5: 500 k / 2 M, 64 B: 333 µs best, 406 µs worst (±1-2 %).
        let rates = Bitrates::fd(500_000, 2_000_000);
        let best = wire_time(&CanFrame::fd(std_id(0x555), &[0x55; 64], true).unwrap(), rates);
        let zeros = wire_time(&CanFrame::fd(std_id(0x000), &[0x00; 64], true).unwrap(), rates);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        assert!((us(best) - 333.0).abs() < 333.0 * 0.03, "best {}", us(best));
        // All-zero data stuffs one bit in five (~102 bits): between the best and the 4-in-1
        // worst case of 406 µs.
        assert!(us(zeros) > 380.0 && us(zeros) <= 406.0, "zeros {}", us(zeros));
    }

    #[test]
    fn fd_without_brs_runs_entirely_at_the_nominal_rate() {
        let f = CanFrame::fd(std_id(0x111), &[1; 8], false).unwrap();
        let bits = frame_bits(&f);
        assert_eq!(bits.data, 0);
        let with_brs = frame_bits(&CanFrame::fd(std_id(0x111), &[1; 8], true).unwrap());
        assert_eq!(with_brs.nominal + with_brs.data, bits.nominal);
    }

    #[test]
    fn fd_lengths_are_validated_and_padded() {
        assert!(CanFrame::fd(std_id(1), &[0; 9], true).is_err());
        let f = CanFrame::fd_padded(std_id(1), &[1; 9], true, 0xCC).unwrap();
        assert_eq!(f.data().len(), 12);
        assert_eq!(&f.data()[9..], &[0xCC; 3]);
        assert_eq!(f.dlc(), 9);
        assert!(CanFrame::classic(std_id(1), &[0; 9]).is_err());
        assert!(CanId::standard(0x800).is_err());
    }

    #[test]
    fn candump_style_display() {
        let f = CanFrame::classic(std_id(0x79), &[0x79]).unwrap();
        assert_eq!(f.to_string(), "     079   [1]  79");
        let f = CanFrame::fd(std_id(0x31), &[8, 0, 0, 0, 0xFF], true).unwrap();
        assert_eq!(f.to_string(), "     031   [05]  08 00 00 00 FF  FD BRS");
    }

    #[test]
    fn filters() {
        let f = CanFilter::standard(0x123);
        assert!(f.matches(std_id(0x123)));
        assert!(!f.matches(std_id(0x124)));
        assert!(!f.matches(CanId::Extended(0x123)));
        let any = CanFilter { id: 0, mask: 0, extended: false };
        assert!(any.matches(std_id(0x7FF)));
    }
}
