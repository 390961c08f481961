//! The portable core of bootproof's bootloader: a bootloader that cannot be bricked.
//!
//! * [`layout`]: the one STM32H723 layout (bootloader, slots A and B, journal).
//! * [`trailer`]: per-slot committed / selected / confirmed words, each written once.
//! * [`boot`]: the boot decision (direct-XIP A/B, highest valid version, trial boot, automatic
//!   revert, recovery when nothing is valid).
//! * [`update`]: the updater (download into the inactive slot, verify, commit) and the
//!   application's confirmation.
//! * [`journal`]: the stored minimum security counter (anti-rollback).
//! * [`flash`]: ECC-safe reads and guarded writes through the embedded-storage `NorFlash` traits.
//! * `sim` (feature `sim`): a strict flash model that cuts power before, after or in the middle
//!   of any operation, and the sweep engine that proves no cut bricks the board.
//!
//! Images are MCUboot-format, checked by [`fut_image`]. The firmware binaries (bootloader and
//! application shims over embassy-stm32's flash driver) and the CAN update protocol are thin
//! layers over this crate.
//!
//! # What a power cut can leave behind
//!
//! Every operation of the core is one sector erase or one 32-byte word program. A cut before an
//! operation leaves the state before it; after it, the state after it; in the middle, a torn
//! word (reads as an ECC error) or a torn sector (every word reads as an ECC error).
//!
//! | cut during | leaves | next boot |
//! |---|---|---|
//! | erase of the target slot | target sector torn or partly erased; trailer sector erased first | target uncommitted: old image boots |
//! | image word program | target partially written, maybe one torn word | target uncommitted: old image boots |
//! | committed word | committed indeterminate | not committed: old image boots |
//! | selected word (first boot) | selected indeterminate | counts as a failed trial: old image boots |
//! | confirmed word | confirmed indeterminate | trial failed: old image boots (its slot is intact: the updater does not erase the fallback while the running image is unconfirmed) |
//! | journal record | one unreadable record | skipped; the next confirmation appends again |
//!
//! In every case the next download erases the target slot and starts clean.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

/// Whether a deliberate bug is switched on (feature `sim` only; always `false` in firmware).
macro_rules! mutant {
    ($m:ident) => {{
        #[cfg(feature = "sim")]
        let on = crate::sim::mutant::on(crate::sim::mutant::Mutant::$m);
        #[cfg(not(feature = "sim"))]
        let on = false;
        on
    }};
}

pub mod boot;
pub mod flash;
pub mod journal;
pub mod layout;
#[cfg(feature = "std")]
pub mod provision;
#[cfg(feature = "sim")]
pub mod sim;
pub mod trailer;
pub mod update;

pub use boot::{Chosen, Decision, RecoveryReason, SlotVerdict, decide};
pub use layout::{H723, Layout, SlotId};
pub use update::{ConfirmError, Confirmed, Download, UpdateError, confirm};
