//! The boot beacon: what a firmware announces right after it boots, so a test harness can see
//! *what* booted and *how*. bootproof's firmware sends it; add it to your own firmware (Rust:
//! this crate; C: `include/bootproof_beacon.h`, the same layout) and bootproof's scenarios can
//! assert on your boards too.
//!
//! # The record (32 bytes, little-endian)
//!
//! | offset | size | field | values |
//! |---|---|---|---|
//! | 0 | 1 | magic | `0xB7` |
//! | 1 | 1 | format | `1` |
//! | 2 | 1 | stage | 1 bootloader, 2 application, 3 recovery (a bootloader with nothing to boot), 4 update mode |
//! | 3 | 1 | slot | 0 none (linked at the start of flash), 1 A, 2 B, 0xFF unknown |
//! | 4 | 1 | version major | |
//! | 5 | 1 | version minor | |
//! | 6 | 2 | version revision | |
//! | 8 | 4 | version build | |
//! | 12 | 4 | reset flags | the reset-cause register as read at boot, before clearing it (RCC_RSR on the H7) |
//! | 16 | 4 | vector table | where the firmware runs from |
//! | 20 | 1 | canary | 0 cold (RAM not retained: a power-on), 1 retained (a reset kept RAM), 2 corrupted |
//! | 21 | 1 | flags | bit 0 trial (booted unconfirmed), bit 1 confirmed itself this boot, bit 2 confirmation failed |
//! | 22 | 2 | boots | boots since RAM was last cold (the canary's counter) |
//! | 24 | 8 | reserved | zero |
//!
//! # Where it goes
//! * **CAN FD**: one frame, standard ID [`CAN_ID`] (0x7A0), 32 bytes, bit-rate switching on.
//! * **Classic CAN**: four frames, IDs [`CLASSIC_ID`] (0x7A4) to 0x7A7, eight bytes each, in
//!   order.
//! * **Serial**: one line, `BEACON ` then the 32 bytes as 64 hexadecimal digits, then a
//!   human-readable summary ([`Beacon::write_line`]); only the hex is part of the contract.
//! * **RAM**: the 32 bytes in a global named [`RAM_SYMBOL`] (`BOOTPROOF_BEACON`, unmangled,
//!   kept), written once per boot; bootproof finds it in the ELF and reads it through the debug
//!   probe. For firmware without CAN or a console, and rigs without them.
//!
//! A firmware may also send a heartbeat ([`HEARTBEAT_ID`], a 4-byte counter) and answer
//! requests on [`REQUEST_ID`] ([`request`]).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;

/// Record length.
pub const LEN: usize = 32;
/// First byte.
pub const MAGIC: u8 = 0xB7;
/// Format version.
pub const FORMAT: u8 = 1;
/// CAN ID of the beacon on CAN FD.
pub const CAN_ID: u16 = 0x7A0;
/// CAN ID of the heartbeat (4-byte little-endian counter).
pub const HEARTBEAT_ID: u16 = 0x7A1;
/// CAN ID of requests to the firmware (first data byte: [`request`]).
pub const REQUEST_ID: u16 = 0x7A2;
/// First of the four CAN IDs of the beacon on classic CAN.
pub const CLASSIC_ID: u16 = 0x7A4;
/// The symbol of the beacon in RAM.
pub const RAM_SYMBOL: &str = "BOOTPROOF_BEACON";

/// Requests a firmware may answer (first byte of a [`REQUEST_ID`] frame, or a console line).
pub mod request {
    /// Reboot into the ROM bootloader (console: `bootproof rom`).
    pub const ENTER_ROM: u8 = 1;
    /// System reset (console: `bootproof reset`).
    pub const RESET: u8 = 2;
    /// Send the beacon again (console: `bootproof beacon`).
    pub const BEACON: u8 = 3;
    /// Enter the bootloader's update mode (console: `bootproof update`).
    pub const UPDATE_MODE: u8 = 4;

    /// The request a console line asks for.
    pub fn from_line(line: &str) -> Option<u8> {
        match line.trim() {
            "bootproof rom" => Some(ENTER_ROM),
            "bootproof reset" => Some(RESET),
            "bootproof beacon" => Some(BEACON),
            "bootproof update" => Some(UPDATE_MODE),
            _ => None,
        }
    }
}

/// What is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// A bootloader (about to jump).
    Bootloader,
    /// The application.
    Application,
    /// A bootloader with nothing valid to boot.
    Recovery,
    /// A bootloader in update mode.
    Update,
}

impl Stage {
    fn code(self) -> u8 {
        match self {
            Stage::Bootloader => 1,
            Stage::Application => 2,
            Stage::Recovery => 3,
            Stage::Update => 4,
        }
    }

    fn from_code(c: u8) -> Option<Stage> {
        Some(match c {
            1 => Stage::Bootloader,
            2 => Stage::Application,
            3 => Stage::Recovery,
            4 => Stage::Update,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Bootloader => "bootloader",
            Stage::Application => "app",
            Stage::Recovery => "recovery",
            Stage::Update => "update",
        }
    }
}

/// Which slot the image runs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Linked at the start of flash (no bootloader).
    None,
    /// Slot A.
    A,
    /// Slot B.
    B,
    /// Not known.
    Unknown,
}

impl Slot {
    fn code(self) -> u8 {
        match self {
            Slot::None => 0,
            Slot::A => 1,
            Slot::B => 2,
            Slot::Unknown => 0xFF,
        }
    }

    fn from_code(c: u8) -> Slot {
        match c {
            0 => Slot::None,
            1 => Slot::A,
            2 => Slot::B,
            _ => Slot::Unknown,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Slot::None => "none",
            Slot::A => "A",
            Slot::B => "B",
            Slot::Unknown => "?",
        }
    }
}

/// What the RAM canary said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Canary {
    /// Not retained: the RAM lost power.
    Cold,
    /// Retained: a reset kept the RAM.
    Retained,
    /// Found but damaged.
    Corrupted,
}

impl Canary {
    fn code(self) -> u8 {
        match self {
            Canary::Cold => 0,
            Canary::Retained => 1,
            Canary::Corrupted => 2,
        }
    }

    fn from_code(c: u8) -> Option<Canary> {
        Some(match c {
            0 => Canary::Cold,
            1 => Canary::Retained,
            2 => Canary::Corrupted,
            _ => return None,
        })
    }

    /// What a RAM canary cell says at boot, and the boot count to write back: a cell whose
    /// magic matches and whose check word is the complement of its count was retained (this is
    /// boot `count + 1`); a matching magic with a bad check is corrupted; anything else is cold
    /// RAM (a power-on). Firmware keeps the cell in RAM that no reset clears and writes the
    /// magic, the returned count and its complement back.
    pub fn judge(magic_matches: bool, boots: u64, check: u64) -> (Canary, u64) {
        match (magic_matches, check == !boots) {
            (true, true) => (Canary::Retained, boots.wrapping_add(1)),
            (true, false) => (Canary::Corrupted, 1),
            (false, _) => (Canary::Cold, 1),
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Canary::Cold => "cold",
            Canary::Retained => "retained",
            Canary::Corrupted => "corrupted",
        }
    }
}

/// An image version (MCUboot's: major.minor.revision+build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Version {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Revision.
    pub revision: u16,
    /// Build.
    pub build: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}+{}", self.major, self.minor, self.revision, self.build)
    }
}

/// Flag bits.
pub mod flags {
    /// Booted as a trial (unconfirmed).
    pub const TRIAL: u8 = 1;
    /// Confirmed itself during this boot.
    pub const CONFIRMED: u8 = 2;
    /// Its confirmation failed.
    pub const CONFIRM_FAILED: u8 = 4;
}

/// A beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Beacon {
    /// Stage.
    pub stage: Stage,
    /// Slot.
    pub slot: Slot,
    /// Image version.
    pub version: Version,
    /// Reset-cause register at boot.
    pub reset_flags: u32,
    /// Vector table address.
    pub vector_table: u32,
    /// RAM canary.
    pub canary: Canary,
    /// [`flags`].
    pub flags: u8,
    /// Boots since RAM was last cold.
    pub boots: u16,
}

/// Why bytes or a line are not a beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than [`LEN`] bytes.
    Short(usize),
    /// The first byte is not [`MAGIC`].
    Magic(u8),
    /// A format this crate does not know.
    Format(u8),
    /// A stage code that does not exist.
    Stage(u8),
    /// A canary code that does not exist.
    Canary(u8),
    /// A line without `BEACON ` and 64 hexadecimal digits.
    Line,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short(n) => write!(f, "beacon too short: {n} of {LEN} bytes"),
            DecodeError::Magic(m) => write!(f, "not a beacon: first byte {m:#04x}, expected {MAGIC:#04x}"),
            DecodeError::Format(v) => {
                write!(f, "beacon format {v} is newer than this tool's ({FORMAT}): update bootproof")
            }
            DecodeError::Stage(s) => write!(f, "beacon stage {s} does not exist"),
            DecodeError::Canary(c) => write!(f, "beacon canary {c} does not exist"),
            DecodeError::Line => write!(f, "not a beacon line: expected `BEACON ` and 64 hexadecimal digits"),
        }
    }
}

impl Beacon {
    /// The 32 bytes.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = MAGIC;
        b[1] = FORMAT;
        b[2] = self.stage.code();
        b[3] = self.slot.code();
        b[4] = self.version.major;
        b[5] = self.version.minor;
        b[6..8].copy_from_slice(&self.version.revision.to_le_bytes());
        b[8..12].copy_from_slice(&self.version.build.to_le_bytes());
        b[12..16].copy_from_slice(&self.reset_flags.to_le_bytes());
        b[16..20].copy_from_slice(&self.vector_table.to_le_bytes());
        b[20] = self.canary.code();
        b[21] = self.flags;
        b[22..24].copy_from_slice(&self.boots.to_le_bytes());
        b
    }

    /// Parse the 32 bytes.
    pub fn decode(b: &[u8]) -> Result<Beacon, DecodeError> {
        if b.len() < LEN {
            return Err(DecodeError::Short(b.len()));
        }
        if b[0] != MAGIC {
            return Err(DecodeError::Magic(b[0]));
        }
        if b[1] != FORMAT {
            return Err(DecodeError::Format(b[1]));
        }
        let u16le = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32le = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Ok(Beacon {
            stage: Stage::from_code(b[2]).ok_or(DecodeError::Stage(b[2]))?,
            slot: Slot::from_code(b[3]),
            version: Version { major: b[4], minor: b[5], revision: u16le(6), build: u32le(8) },
            reset_flags: u32le(12),
            vector_table: u32le(16),
            canary: Canary::from_code(b[20]).ok_or(DecodeError::Canary(b[20]))?,
            flags: b[21],
            boots: u16le(22),
        })
    }

    /// The console line: `BEACON <64 hex digits> stage=... slot=... version=... rsr=... vt=...
    /// canary=... boots=... flags=...` (no line ending).
    pub fn write_line(&self, w: &mut impl fmt::Write) -> fmt::Result {
        w.write_str("BEACON ")?;
        for b in self.encode() {
            write!(w, "{b:02x}")?;
        }
        write!(
            w,
            " stage={} slot={} version={} rsr={:#010x} vt={:#010x} canary={} boots={}",
            self.stage.name(),
            self.slot.name(),
            self.version,
            self.reset_flags,
            self.vector_table,
            self.canary.name(),
            self.boots
        )?;
        if self.flags & flags::TRIAL != 0 {
            w.write_str(" trial")?;
        }
        if self.flags & flags::CONFIRMED != 0 {
            w.write_str(" confirmed")?;
        }
        if self.flags & flags::CONFIRM_FAILED != 0 {
            w.write_str(" confirm-failed")?;
        }
        Ok(())
    }

    /// Parse a console line written by [`Beacon::write_line`] (anything after the hex is
    /// ignored; leading text before `BEACON ` too).
    pub fn parse_line(line: &str) -> Result<Beacon, DecodeError> {
        let at = line.find("BEACON ").ok_or(DecodeError::Line)?;
        let hex = &line.as_bytes()[at + 7..];
        if hex.len() < 2 * LEN {
            return Err(DecodeError::Line);
        }
        let mut b = [0u8; LEN];
        for (i, out) in b.iter_mut().enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(DecodeError::Line);
            *out = (digit(hex[2 * i])? << 4 | digit(hex[2 * i + 1])?) as u8;
        }
        Beacon::decode(&b)
    }

    /// The four classic-CAN frames' payloads, for IDs [`CLASSIC_ID`]..=`CLASSIC_ID + 3`.
    pub fn classic_frames(&self) -> [[u8; 8]; 4] {
        let b = self.encode();
        let mut out = [[0u8; 8]; 4];
        for (i, f) in out.iter_mut().enumerate() {
            f.copy_from_slice(&b[8 * i..8 * i + 8]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;

    use super::*;

    fn sample() -> Beacon {
        Beacon {
            stage: Stage::Application,
            slot: Slot::B,
            version: Version { major: 2, minor: 1, revision: 300, build: 7 },
            reset_flags: 0x00FA_0000,
            vector_table: 0x0808_0400,
            canary: Canary::Retained,
            flags: flags::TRIAL | flags::CONFIRMED,
            boots: 3,
        }
    }

    #[test]
    fn canary_judgement() {
        assert_eq!(Canary::judge(false, 7, !7), (Canary::Cold, 1));
        assert_eq!(Canary::judge(true, 7, !7), (Canary::Retained, 8));
        assert_eq!(Canary::judge(true, 7, 7), (Canary::Corrupted, 1));
    }

    #[test]
    fn round_trips_through_bytes_lines_and_classic_frames() {
        let b = sample();
        assert_eq!(Beacon::decode(&b.encode()), Ok(b));
        let mut line = String::new();
        b.write_line(&mut line).unwrap();
        assert!(line.starts_with("BEACON b70102020201"), "{line}");
        assert!(line.ends_with("stage=app slot=B version=2.1.300+7 rsr=0x00fa0000 vt=0x08080400 canary=retained boots=3 trial confirmed"), "{line}");
        assert_eq!(Beacon::parse_line(&std::format!("noise {line}")), Ok(b));
        let frames = b.classic_frames();
        let joined: std::vec::Vec<u8> = frames.iter().flatten().copied().collect();
        assert_eq!(Beacon::decode(&joined), Ok(b));
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let e = sample().encode();
        assert_eq!(e[0], 0xB7);
        assert_eq!(e[2], 2, "stage at 2");
        assert_eq!(e[3], 2, "slot at 3");
        assert_eq!(&e[12..16], &0x00FA_0000u32.to_le_bytes(), "reset flags at 12");
        assert_eq!(&e[16..20], &0x0808_0400u32.to_le_bytes(), "vector table at 16");
        assert_eq!(e[20], 1, "canary at 20");
        assert_eq!(&e[24..], &[0; 8], "reserved");
    }

    #[test]
    fn bad_input_is_named() {
        let mut e = sample().encode();
        assert_eq!(Beacon::decode(&e[..10]), Err(DecodeError::Short(10)));
        e[0] = 0;
        assert_eq!(Beacon::decode(&e), Err(DecodeError::Magic(0)));
        let mut e = sample().encode();
        e[1] = 9;
        assert_eq!(Beacon::decode(&e), Err(DecodeError::Format(9)));
        let mut e = sample().encode();
        e[2] = 0x42;
        assert_eq!(Beacon::decode(&e), Err(DecodeError::Stage(0x42)));
        assert_eq!(Beacon::parse_line("BEACON zz"), Err(DecodeError::Line));
        assert!(std::format!("{}", DecodeError::Format(9)).contains("update bootproof"));
        assert_eq!(request::from_line(" bootproof rom\r"), Some(request::ENTER_ROM));
    }
}
