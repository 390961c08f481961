//! What bootproof's NUCLEO-H723ZG firmware shares:
//! * [`flash`]: the H7 flash as the boot core's `NorFlash` + `EccRead` (embassy's driver for
//!   programs and erases; reads that turn a double ECC error's bus fault into an error);
//! * [`keys`]: the trusted Ed25519 public keys (from `BOOTPROOF_TRUST_KEY` at build time, else
//!   the repository's test key A);
//! * [`handover`]: the clean jump from the bootloader to an image;
//! * [`request`]: the application's request for the bootloader's update mode.
#![no_std]

pub mod flash;
pub mod handover;
pub mod request;

/// The public keys images are checked against (from build.rs).
pub mod keys {
    include!(concat!(env!("OUT_DIR"), "/trusted_keys.rs"));

    /// [`TRUSTED`] as the image verifier takes them.
    pub fn trusted() -> [fut_image::TrustedKey; 1] {
        [fut_image::TrustedKey::new(TRUSTED[0])]
    }
}
