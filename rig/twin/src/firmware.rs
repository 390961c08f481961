//! Firmware the twin can run: the hook trait, the descriptor that identifies an image, and the
//! registry of known firmware.
//!
//! A real Cortex-M image cannot run natively on the host. The twin instead recognises images by
//! a small *firmware descriptor* placed [`DESCRIPTOR_OFFSET`] bytes after the vector table (after
//! the 166-entry H7 vector table), checks its CRC over the whole image, and runs the matching
//! [`Firmware`] implementation: our firmware's portable logic, compiled for the host.
//!
//! An image without a valid descriptor whose vector table is *plausible* (initial SP inside a RAM
//! region or at its end, reset vector odd and inside flash) is "running, unknown firmware": the
//! core is reported running at the reset vector, the firmware is silent on CAN and serial, does
//! not touch flash, and can be halted, reset and read by the probe. Anything else faults at the
//! vector fetch and the core locks up.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::board::Mcu;

/// Offset of the descriptor from the vector table base.
pub const DESCRIPTOR_OFFSET: u32 = 0x300;
/// Descriptor magic.
pub const DESCRIPTOR_MAGIC: [u8; 8] = *b"BPFWDESC";
/// Descriptor size in bytes.
pub const DESCRIPTOR_LEN: usize = 48;

/// Known firmware kinds.
pub mod kind {
    /// The stand-in application (issue 5): announces itself on CAN, serial and RTT.
    pub const STAND_IN_APP: u16 = 1;
    /// bootproof's bootloader (the boot core): see [`crate::bootloader`].
    pub const BOOTLOADER: u16 = 2;
}

/// What the descriptor says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Firmware kind (see [`kind`]).
    pub kind: u16,
    /// Flags (kind-specific).
    pub flags: u16,
    /// Version.
    pub version: u32,
    /// Image length in bytes from the vector table base (covers the CRC).
    pub image_len: u32,
    /// Name.
    pub name: String,
}

impl Descriptor {
    /// Encode with a zero CRC field; [`seal`] fills it in.
    pub fn encode(&self) -> [u8; DESCRIPTOR_LEN] {
        let mut d = [0u8; DESCRIPTOR_LEN];
        d[..8].copy_from_slice(&DESCRIPTOR_MAGIC);
        d[8..10].copy_from_slice(&self.kind.to_le_bytes());
        d[10..12].copy_from_slice(&self.flags.to_le_bytes());
        d[12..16].copy_from_slice(&self.version.to_le_bytes());
        d[16..20].copy_from_slice(&self.image_len.to_le_bytes());
        let name = self.name.as_bytes();
        let n = name.len().min(24);
        d[24..24 + n].copy_from_slice(&name[..n]);
        d
    }

    /// Decode the fixed fields (no CRC check).
    pub fn decode(d: &[u8]) -> Option<(Descriptor, u32)> {
        if d.len() < DESCRIPTOR_LEN || d[..8] != DESCRIPTOR_MAGIC {
            return None;
        }
        let u16le = |o: usize| u16::from_le_bytes([d[o], d[o + 1]]);
        let u32le = |o: usize| u32::from_le_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]);
        let name_bytes = &d[24..48];
        let end = name_bytes.iter().position(|b| *b == 0).unwrap_or(24);
        Some((
            Descriptor {
                kind: u16le(8),
                flags: u16le(10),
                version: u32le(12),
                image_len: u32le(16),
                name: String::from_utf8_lossy(&name_bytes[..end]).into_owned(),
            },
            u32le(20),
        ))
    }
}

/// CRC-32 of `image` with the descriptor's CRC field taken as zero.
pub fn image_crc(image: &[u8]) -> u32 {
    let crc_at = DESCRIPTOR_OFFSET as usize + 20;
    let mut h = crc32fast::Hasher::new();
    h.update(&image[..crc_at]);
    h.update(&[0; 4]);
    h.update(&image[crc_at + 4..]);
    h.finalize()
}

/// Fill in the CRC of an image built with [`Descriptor::encode`] at [`DESCRIPTOR_OFFSET`].
pub fn seal(image: &mut [u8]) {
    let crc = image_crc(image);
    let at = DESCRIPTOR_OFFSET as usize + 20;
    image[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// How a firmware was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// Its vector table (VTOR).
    pub vector_table: u32,
    /// Its descriptor.
    pub descriptor: Descriptor,
}

/// Firmware logic the twin runs natively when a matching image boots.
#[async_trait]
pub trait Firmware: Send + Sync {
    /// Human name.
    fn name(&self) -> &str;
    /// Run until the board resets (the task is then aborted) or the firmware returns.
    async fn run(self: Arc<Self>, mcu: Mcu, boot: Boot);
}

/// Firmware implementations by kind.
#[derive(Clone, Default)]
pub struct Registry {
    by_kind: HashMap<u16, Arc<dyn Firmware>>,
}

impl Registry {
    /// The built-in firmware (the stand-in app and bootproof's bootloader).
    pub fn builtin() -> Self {
        let mut r = Registry::default();
        r.register(kind::STAND_IN_APP, Arc::new(crate::standin::StandInApp));
        r.register(kind::BOOTLOADER, Arc::new(crate::bootloader::BootloaderFirmware));
        r
    }

    /// Add or replace the firmware for `kind`.
    pub fn register(&mut self, kind: u16, fw: Arc<dyn Firmware>) {
        self.by_kind.insert(kind, fw);
    }

    /// The firmware for `kind`.
    pub fn get(&self, kind: u16) -> Option<Arc<dyn Firmware>> {
        self.by_kind.get(&kind).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trip_and_crc() {
        let d = Descriptor { kind: 1, flags: 0, version: 7, image_len: 0x400, name: "stand-in".into() };
        let mut img = vec![0xAAu8; 0x400];
        img[DESCRIPTOR_OFFSET as usize..DESCRIPTOR_OFFSET as usize + DESCRIPTOR_LEN].copy_from_slice(&d.encode());
        seal(&mut img);
        let (back, crc) = Descriptor::decode(&img[DESCRIPTOR_OFFSET as usize..]).unwrap();
        assert_eq!(back, d);
        assert_eq!(crc, image_crc(&img));
        img[0x3FF] ^= 1;
        assert_ne!(crc, image_crc(&img), "a changed byte changes the CRC");
    }
}
