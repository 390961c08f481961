//! bootproof's own bootloader on the twin: the boot core (`boot-core`) running natively over
//! the simulated flash, and signed stand-in apps that confirm themselves.
//!
//! An *image set* is what a factory or a test flashes with the probe:
//! * the bootloader stand-in in sector 0 ([`bootloader_image`]): a vector table, a firmware
//!   descriptor of kind [`kind::BOOTLOADER`](crate::firmware::kind::BOOTLOADER), and the table
//!   of trusted Ed25519 public keys at [`KEYS_OFFSET`] (what the real bootloader links in);
//! * signed application images, one per slot ([`signed_app`]): a stand-in app linked for the
//!   slot's vector table (slot base + 0x400), wrapped in an MCUboot header and TLVs, installed
//!   committed (and, for the factory image, confirmed) by
//!   [`boot_core::provision::segments`].
//!
//! At every boot the bootloader firmware runs [`boot_core::decide`] over the twin's flash,
//! prints its verdict on the console (115200 8N1) and RTT, and jumps to the chosen image's
//! vector table (no reset: reset flags kept), or stays in recovery and announces it on CAN
//! (a [`bootproof_beacon`] beacon with stage `recovery`). A stand-in
//! app built with [`APP_CONFIRMS`] confirms its own slot after announcing itself; one built
//! without it never does (a broken update: the next boot reverts).
//!
//! The decision's flash operations happen at once and their silicon time (word program,
//! sector erase) plus [`VERIFY_TIME`] per decision is then spent in virtual time. The boot
//! core's own power-cut sweeps cover tearing those operations; the twin does not tear them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boot_core::flash::{EccRead, ReadCheck};
use boot_core::layout::{H723, Layout, SlotId};
use boot_core::{Decision, RecoveryReason, SlotVerdict};
use bootproof_fixtures::BoardProfile;
use bootproof_rig::image::FirmwareImage;
use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use fut_image::keys::SigningKey;
use fut_image::sign::{SignOptions, sign};
use fut_image::{Ed25519Verify, ImageVersion, TrustedKey};

use crate::board::{Mcu, McuError};
use crate::firmware::{Boot, DESCRIPTOR_LEN, DESCRIPTOR_OFFSET, Descriptor, Firmware, kind};
use crate::standin::{CONSOLE, announce, app_can_rates, firmware_image, say};
use crate::uart::BoardRx;

/// Offset of the trusted-key table from the vector table (right after the descriptor).
pub const KEYS_OFFSET: u32 = DESCRIPTOR_OFFSET + DESCRIPTOR_LEN as u32;
/// Key table magic.
pub const KEYS_MAGIC: [u8; 8] = *b"BPKEYS\0\0";
/// At most this many trusted keys.
pub const MAX_KEYS: usize = 4;
/// Stand-in app descriptor flag: the app confirms its slot after it announces itself.
pub const APP_CONFIRMS: u16 = 0x0001;
/// Time a boot decision spends verifying (SHA-256 and Ed25519 on a Cortex-M7: SEGGER measures
/// 35 ms for an Ed25519 verify on an H753 at 400 MHz).
pub const VERIFY_TIME: Duration = Duration::from_millis(40);

/// The boot core's layout for this board, if the board has the H723's flash geometry.
pub fn layout_for(p: &BoardProfile) -> Option<Layout> {
    let l = H723;
    let sectors = p.flash.sector_list();
    (p.flash.base == l.flash_base
        && p.flash.size() == l.flash_size
        && p.flash.word == l.word
        && sectors.iter().all(|s| s.size == l.sector_size))
    .then_some(l)
}

/// The key table bytes.
pub fn key_table(keys: &[TrustedKey]) -> Vec<u8> {
    let mut t = KEYS_MAGIC.to_vec();
    t.extend_from_slice(&(keys.len().min(MAX_KEYS) as u32).to_le_bytes());
    for k in keys.iter().take(MAX_KEYS) {
        t.extend_from_slice(&k.public);
    }
    t
}

/// The trusted keys in the image whose vector table is at `vt` (none if the table is absent).
pub fn read_keys(mcu: &Mcu, vt: u32) -> Vec<TrustedKey> {
    let mut head = [0u8; 12];
    if mcu.read(vt + KEYS_OFFSET, &mut head).is_err() || head[..8] != KEYS_MAGIC {
        return Vec::new();
    }
    let n = (u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize).min(MAX_KEYS);
    let mut out = Vec::new();
    for i in 0..n {
        let mut k = [0u8; 32];
        if mcu.read(vt + KEYS_OFFSET + 12 + 32 * i as u32, &mut k).is_ok() {
            out.push(TrustedKey::new(k));
        }
    }
    out
}

/// A flash error seen by the boot core on the twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinFlashError {
    /// ECC double error (torn word): the ECC-safe read reports it.
    Ecc,
    /// Out of range, misaligned, write-protected, or programmed twice.
    Refused,
    /// The board was reset under the firmware.
    Reset,
}

impl NorFlashError for TwinFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

/// The twin's flash as the boot core's `NorFlash` (offsets from the flash base). Reads of
/// torn words return an error instead of faulting: the ECC-safe reader of the real firmware.
pub struct TwinFlash<'a> {
    mcu: &'a Mcu,
    layout: Layout,
    /// Silicon time of the operations performed, to be spent by the caller.
    pub owed: Duration,
}

impl<'a> TwinFlash<'a> {
    /// Over `mcu`'s flash.
    pub fn new(mcu: &'a Mcu, layout: Layout) -> Self {
        TwinFlash { mcu, layout, owed: Duration::ZERO }
    }

    fn map(e: McuError) -> TwinFlashError {
        match e {
            McuError::Reset => TwinFlashError::Reset,
            McuError::Flash(crate::flash::FlashFault::EccDouble(_)) => TwinFlashError::Ecc,
            _ => TwinFlashError::Refused,
        }
    }
}

impl ErrorType for TwinFlash<'_> {
    type Error = TwinFlashError;
}

impl ReadNorFlash for TwinFlash<'_> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), TwinFlashError> {
        self.mcu.read(self.layout.flash_base + offset, bytes).map_err(Self::map)
    }
    fn capacity(&self) -> usize {
        self.layout.flash_size as usize
    }
}

impl EccRead for TwinFlash<'_> {
    /// A double error (a torn word) is an error; a word the ECC corrected reads as `Corrected`.
    fn read_checked(&mut self, offset: u32, bytes: &mut [u8]) -> Result<ReadCheck, TwinFlashError> {
        self.read(offset, bytes)?;
        Ok(if self.mcu.flash_corrected(self.layout.flash_base + offset, bytes.len()) {
            ReadCheck::Corrected
        } else {
            ReadCheck::Clean
        })
    }
}

impl NorFlash for TwinFlash<'_> {
    const WRITE_SIZE: usize = 32;
    const ERASE_SIZE: usize = 128 * 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), TwinFlashError> {
        let s = self.layout.sector_size;
        if !from.is_multiple_of(s) || !to.is_multiple_of(s) || from > to {
            return Err(TwinFlashError::Refused);
        }
        for sector in from / s..to / s {
            self.owed += self.mcu.erase_now(sector).map_err(Self::map)?;
        }
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), TwinFlashError> {
        self.owed += self.mcu.program_now(self.layout.flash_base + offset, bytes).map_err(Self::map)?;
        Ok(())
    }
}

/// The bootloader stand-in image (vector table at the start of flash) trusting `keys`.
pub fn bootloader_image(p: &BoardProfile, keys: &[TrustedKey]) -> FirmwareImage {
    let desc =
        Descriptor { kind: kind::BOOTLOADER, flags: 0, version: 1, image_len: 0, name: "bootproof bootloader".into() };
    firmware_image(p, p.flash.base, desc, 0x800, &key_table(keys), "bootproof-bootloader.bin".into())
}

/// How to build a signed stand-in app.
#[derive(Debug, Clone, Copy)]
pub struct AppSpec {
    /// The slot it is linked for.
    pub slot: SlotId,
    /// Its version (the stand-in announces the major number).
    pub version: ImageVersion,
    /// Its security counter.
    pub security_counter: u32,
    /// Whether it confirms itself (a healthy app) or never does (a broken update).
    pub confirms: bool,
}

/// A signed stand-in app image (the bytes an update would download), signed with `key`,
/// trusting `key` itself for its confirmation check.
pub fn signed_app(p: &BoardProfile, layout: &Layout, spec: AppSpec, key: &SigningKey) -> Vec<u8> {
    let vt = layout.vector_table(spec.slot);
    let flags = if spec.confirms { APP_CONFIRMS } else { 0 };
    let app = crate::standin::build(p, vt, spec.version.major as u32, 4096, flags, &key_table(&[key.trusted()]));
    let opts = SignOptions {
        load_addr: layout.slot_address(spec.slot),
        header_size: layout.header_size as u16,
        version: spec.version,
        security_counter: spec.security_counter,
    };
    sign(&app.raw, key, &opts).expect("a 4 KiB stand-in app signs")
}

/// Short form of a slot verdict, for the console line.
pub fn verdict(v: &SlotVerdict) -> String {
    match v {
        SlotVerdict::NotCommitted => "not committed".into(),
        SlotVerdict::TrialFailed => "trial failed (never confirmed)".into(),
        SlotVerdict::Invalid(r) => format!("rejected: {}", r.name()),
        SlotVerdict::NotChosen(v) => format!("v{v}, lower (not verified)"),
        SlotVerdict::SelectFailed => "select write failed".into(),
        SlotVerdict::Booted => "booted".into(),
    }
}

/// The bootloader's console line for a decision.
pub fn describe(d: &Decision) -> String {
    let slots = format!("A: {}; B: {}", verdict(&d.slots[0]), verdict(&d.slots[1]));
    match d.chosen {
        Some(c) => format!(
            "bootproof bootloader: {slots} -> slot {} v{}{} (vt {:#010x})",
            c.slot,
            c.image.version(),
            if c.trial { " on trial" } else { "" },
            c.vector_table
        ),
        None => {
            let why = match d.recovery {
                Some(RecoveryReason::Geometry) => "the flash driver does not match the layout",
                _ => "no valid image",
            };
            format!("bootproof bootloader: {slots} -> recovery ({why})")
        }
    }
}

/// The bootloader firmware (kind [`kind::BOOTLOADER`]).
pub struct BootloaderFirmware;

#[async_trait]
impl Firmware for BootloaderFirmware {
    fn name(&self) -> &str {
        "bootproof bootloader"
    }

    async fn run(self: Arc<Self>, mcu: Mcu, boot: Boot) {
        let p = mcu.profile().clone();
        let _ = mcu.rtt_enable();
        if mcu.uart_setup(BoardRx::Fixed(CONSOLE)).is_err() {
            return;
        }
        let (line, jump) = match layout_for(&p) {
            None => (format!("bootproof bootloader: {} does not have the H723 flash layout: recovery", p.name), None),
            Some(layout) => {
                let keys = read_keys(&mcu, boot.vector_table);
                let mut flash = TwinFlash::new(&mcu, layout);
                let d = boot_core::decide(&mut flash, &layout, &keys, &mut Ed25519Verify);
                let owed = flash.owed + VERIFY_TIME;
                if mcu.sleep(owed).await.is_err() {
                    return;
                }
                (describe(&d), d.chosen.map(|c| c.vector_table))
            }
        };
        mcu.log(line.clone());
        if !say(&mcu, &line).await {
            return;
        }
        if let Some(vt) = jump {
            let _ = mcu.jump(vt);
            return;
        }
        // Recovery: announce it, then wait for an update (the CAN update server is a later issue).
        if let Some(r) = app_can_rates(&p)
            && let Ok(mut port) = mcu.can(r)
        {
            let beacon = bootproof_beacon::Beacon {
                stage: bootproof_beacon::Stage::Recovery,
                slot: bootproof_beacon::Slot::None,
                version: bootproof_beacon::Version { major: 1, ..Default::default() },
                reset_flags: mcu.reset_flags(),
                vector_table: p.flash.base,
                canary: bootproof_beacon::Canary::Cold,
                flags: 0,
                boots: 0,
            };
            announce(&mut port, r, &beacon).await;
            loop {
                if mcu.sleep(Duration::from_secs(1)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The stand-in app's confirmation (called by [`crate::standin::StandInApp`] when its
/// descriptor has [`APP_CONFIRMS`]): the console line it prints.
pub async fn app_confirm(mcu: &Mcu, vt: u32) -> Option<String> {
    let layout = layout_for(mcu.profile())?;
    let slot = layout.slot_containing(vt)?;
    let keys = read_keys(mcu, vt);
    let mut flash = TwinFlash::new(mcu, layout);
    let r = boot_core::confirm(&mut flash, &layout, slot, &keys, &mut Ed25519Verify);
    mcu.sleep(flash.owed + VERIFY_TIME).await.ok()?;
    Some(match r {
        Ok(c) => format!(
            "bootproof stand-in app: slot {slot} confirmed{}; stored security counter {}",
            if c.newly { "" } else { " (already)" },
            c.min_security_counter
        ),
        Err(e) => format!("bootproof stand-in app: confirming slot {slot} failed: {e}"),
    })
}

/// A flash array at rest (no board, no time) as the boot core's read side: what a power-cut
/// campaign inspects between boots (the stored security counter, the trailers). Writes and
/// erases are refused.
pub struct ArrayFlash<'a> {
    array: &'a crate::flash::FlashArray,
    layout: Layout,
}

impl<'a> ArrayFlash<'a> {
    /// Over `array`, whose base is `layout.flash_base`.
    pub fn new(array: &'a crate::flash::FlashArray, layout: Layout) -> Self {
        ArrayFlash { array, layout }
    }
}

impl ErrorType for ArrayFlash<'_> {
    type Error = TwinFlashError;
}

impl ReadNorFlash for ArrayFlash<'_> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), TwinFlashError> {
        self.read_checked(offset, bytes).map(drop)
    }
    fn capacity(&self) -> usize {
        self.layout.flash_size as usize
    }
}

impl EccRead for ArrayFlash<'_> {
    fn read_checked(&mut self, offset: u32, bytes: &mut [u8]) -> Result<ReadCheck, TwinFlashError> {
        match self.array.read_checked(self.layout.flash_base + offset, bytes) {
            Ok(None) => Ok(ReadCheck::Clean),
            Ok(Some(_)) => Ok(ReadCheck::Corrected),
            Err(crate::flash::FlashFault::EccDouble(_)) => Err(TwinFlashError::Ecc),
            Err(_) => Err(TwinFlashError::Refused),
        }
    }
}

impl NorFlash for ArrayFlash<'_> {
    const WRITE_SIZE: usize = 32;
    const ERASE_SIZE: usize = 128 * 1024;
    fn erase(&mut self, _from: u32, _to: u32) -> Result<(), TwinFlashError> {
        Err(TwinFlashError::Refused)
    }
    fn write(&mut self, _offset: u32, _bytes: &[u8]) -> Result<(), TwinFlashError> {
        Err(TwinFlashError::Refused)
    }
}
