//! The boot beacon ([`bootproof_beacon`]) as the rig sees it: from CAN frames (one FD frame, or
//! four classic frames reassembled in order) and from console lines.

pub use bootproof_beacon::{
    Beacon, Canary, DecodeError, HEARTBEAT_ID, LEN, RAM_SYMBOL, REQUEST_ID, Slot, Stage, Version, flags, request,
};

use crate::can::{CanFrame, CanId};

/// Where a beacon was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// CAN (FD or classic).
    Can,
    /// The serial console.
    Console,
    /// The probe, from the firmware's RAM.
    Probe,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Can => "CAN",
            Via::Console => "serial",
            Via::Probe => "probe",
        })
    }
}

/// Finds beacons in a stream of CAN frames.
#[derive(Debug, Default)]
pub struct CanListener {
    classic: [Option<[u8; 8]>; 4],
}

impl CanListener {
    /// A listener with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one frame: a beacon (or why the frame on a beacon ID did not decode) when this
    /// frame completes one.
    pub fn feed(&mut self, f: &CanFrame) -> Option<Result<Beacon, DecodeError>> {
        let CanId::Standard(id) = f.id() else { return None };
        if id == bootproof_beacon::CAN_ID {
            self.classic = Default::default();
            return Some(Beacon::decode(f.data()));
        }
        let part = id.wrapping_sub(bootproof_beacon::CLASSIC_ID) as usize;
        if part >= 4 || f.data().len() != 8 {
            return None;
        }
        if part == 0 {
            self.classic = Default::default();
        } else if self.classic[part - 1].is_none() {
            // Out of order (a frame was lost): start over at the next first part.
            self.classic = Default::default();
            return None;
        }
        self.classic[part] = Some(f.data().try_into().expect("8 bytes"));
        if part < 3 {
            return None;
        }
        let mut b = [0u8; bootproof_beacon::LEN];
        for (i, p) in self.classic.iter().enumerate() {
            b[8 * i..8 * i + 8].copy_from_slice(&p.expect("all four parts"));
        }
        self.classic = Default::default();
        Some(Beacon::decode(&b))
    }
}

/// Finds beacon lines in console output (bytes in any chunking).
#[derive(Debug, Default)]
pub struct LineListener {
    line: Vec<u8>,
}

impl LineListener {
    /// A listener with an empty line.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; every complete `BEACON ...` line yields a result, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Beacon, DecodeError>> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                if line.contains("BEACON ") {
                    out.push(Beacon::parse_line(&line));
                }
            } else if self.line.len() < 512 {
                self.line.push(b);
            }
        }
        out
    }
}

/// One line for a timeline: `app 1.0.0+0 from slot A (vt 0x08020400): reset flags PINRSTF, RAM
/// canary retained, boot 2, trial, confirmed`. `flags` names the reset-flag bits.
pub fn describe(b: &Beacon, reset_flags: &[String]) -> String {
    let place = match b.slot {
        Slot::None => "from the start of flash".to_string(),
        s => format!("from slot {}", s.name()),
    };
    let mut s = format!(
        "{} {} {place} (vt {:#010x}): reset flags {}, RAM canary {}, boot {}",
        b.stage.name(),
        b.version,
        b.vector_table,
        if reset_flags.is_empty() { "none".to_string() } else { reset_flags.join("|") },
        b.canary.name(),
        b.boots
    );
    for (bit, name) in
        [(flags::TRIAL, "trial"), (flags::CONFIRMED, "confirmed"), (flags::CONFIRM_FAILED, "confirm FAILED")]
    {
        if b.flags & bit != 0 {
            s.push_str(", ");
            s.push_str(name);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Beacon {
        Beacon {
            stage: Stage::Application,
            slot: Slot::A,
            version: Version { major: 2, minor: 0, revision: 0, build: 0 },
            reset_flags: 0x0040_0000,
            vector_table: 0x0802_0400,
            canary: Canary::Retained,
            flags: flags::TRIAL | flags::CONFIRMED,
            boots: 2,
        }
    }

    #[test]
    fn fd_and_classic_frames_and_lines_decode() {
        let b = sample();
        let mut l = CanListener::new();
        let fd = CanFrame::fd(CanId::Standard(0x7A0), &b.encode(), true).unwrap();
        assert_eq!(l.feed(&fd), Some(Ok(b)));
        let other = CanFrame::classic(CanId::Standard(0x7A1), &[1, 0, 0, 0]).unwrap();
        assert_eq!(l.feed(&other), None);
        let parts = b.classic_frames();
        for (i, p) in parts.iter().enumerate() {
            let f = CanFrame::classic(CanId::Standard(0x7A4 + i as u16), p).unwrap();
            let r = l.feed(&f);
            assert_eq!(r, if i == 3 { Some(Ok(b)) } else { None });
        }
        // A lost part: nothing decodes until the next complete set.
        for i in [0usize, 2, 3] {
            let f = CanFrame::classic(CanId::Standard(0x7A4 + i as u16), &parts[i]).unwrap();
            assert_eq!(l.feed(&f), None, "part {i} after a lost part 1");
        }
        let mut line = String::new();
        b.write_line(&mut line).unwrap();
        let mut ll = LineListener::new();
        let bytes = format!("boot noise\r\n{line}\r\n");
        let (x, y) = bytes.as_bytes().split_at(20);
        assert!(ll.feed(x).is_empty());
        assert_eq!(ll.feed(y), vec![Ok(b)]);
    }

    #[test]
    fn a_broken_beacon_says_why() {
        let mut bad = sample().encode();
        bad[0] = 0x00;
        let fd = CanFrame::fd(CanId::Standard(0x7A0), &bad, true).unwrap();
        let e = CanListener::new().feed(&fd).unwrap().unwrap_err();
        assert!(e.to_string().contains("not a beacon"), "{e}");
    }

    #[test]
    fn describe_names_flags() {
        let d = describe(&sample(), &["PINRSTF".into()]);
        assert_eq!(
            d,
            "app 2.0.0+0 from slot A (vt 0x08020400): reset flags PINRSTF, RAM canary retained, boot 2, trial, confirmed"
        );
    }
}
