//! The STM32H723's flash for the boot core: embassy's driver for programs (32-byte words) and
//! sector erases, and reads that survive ECC errors.
//!
//! A read of a flash word whose ECC has a double error raises a precise bus fault (RM0468
//! §4.7.7). [`H7Flash::read_checked`] reads with FAULTMASK set and SCB.CCR.BFHFNMIGN on, so
//! the fault is ignored (the load returns garbage), then looks at FLASH_SR1: DBECCERR makes the
//! read an error, SNECCERR makes it "corrected". Both flags are cleared afterwards, so the
//! programming code never sees a stale one.

use boot_core::flash::{EccRead, ReadCheck};
use embassy_stm32::flash::{Blocking, Flash};
use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};

const FLASH_BASE: u32 = 0x0800_0000;
const FLASH_SIZE: u32 = 1024 * 1024;
const SR1: *mut u32 = 0x5200_2010 as *mut u32;
const CCR1: *mut u32 = 0x5200_2014 as *mut u32;
const SNECCERR: u32 = 1 << 25;
const DBECCERR: u32 = 1 << 26;
const SCB_CCR: *mut u32 = 0xE000_ED14 as *mut u32;
const BFHFNMIGN: u32 = 1 << 8;

/// Why a flash access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H7FlashError {
    /// A double ECC error in a word read.
    Ecc,
    /// Outside the flash.
    OutOfBounds,
    /// The driver refused or failed a program or erase.
    Driver,
}

impl NorFlashError for H7FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            H7FlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// The flash.
pub struct H7Flash {
    inner: Flash<'static, Blocking>,
    sector_erase: Option<fn(u32) -> bool>,
}

impl H7Flash {
    /// Take the peripheral.
    pub fn new(p: embassy_stm32::Peri<'static, embassy_stm32::peripherals::FLASH>) -> H7Flash {
        H7Flash { inner: Flash::new_blocking(p), sector_erase: None }
    }

    /// Erase sectors with `erase` (sector number → finished without error) instead of
    /// embassy's driver: for a caller that must keep doing something while the bank erases,
    /// from code outside flash.
    pub fn with_sector_erase(mut self, erase: fn(u32) -> bool) -> H7Flash {
        self.sector_erase = Some(erase);
        self
    }
}

impl ErrorType for H7Flash {
    type Error = H7FlashError;
}

impl EccRead for H7Flash {
    fn read_checked(&mut self, offset: u32, bytes: &mut [u8]) -> Result<ReadCheck, H7FlashError> {
        if offset as u64 + bytes.len() as u64 > FLASH_SIZE as u64 {
            return Err(H7FlashError::OutOfBounds);
        }
        if option_env!("BOOTPROOF_MUTANT") == Some("EccReadUnguarded") {
            // A deliberate bug, only in a mutant build (`BOOTPROOF_MUTANT=EccReadUnguarded`):
            // a plain read, so a double ECC error is a bus fault. The power-cut campaign on
            // the real binaries must catch it.
            for (i, b) in bytes.iter_mut().enumerate() {
                // SAFETY: a read of flash memory (which may fault: that is the bug).
                *b = unsafe { core::ptr::read_volatile((FLASH_BASE + offset + i as u32) as *const u8) };
            }
            return Ok(ReadCheck::Clean);
        }
        // SAFETY: register accesses of this core and the flash controller, and reads of flash
        // memory; FAULTMASK is restored before returning.
        let sr = unsafe {
            core::ptr::write_volatile(CCR1, SNECCERR | DBECCERR);
            let ccr = core::ptr::read_volatile(SCB_CCR);
            core::ptr::write_volatile(SCB_CCR, ccr | BFHFNMIGN);
            core::arch::asm!("dsb", "isb", "cpsid f");
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = core::ptr::read_volatile((FLASH_BASE + offset + i as u32) as *const u8);
            }
            core::arch::asm!("dsb", "cpsie f", "isb");
            core::ptr::write_volatile(SCB_CCR, ccr);
            let sr = core::ptr::read_volatile(SR1);
            core::ptr::write_volatile(CCR1, SNECCERR | DBECCERR);
            sr
        };
        if sr & DBECCERR != 0 {
            Err(H7FlashError::Ecc)
        } else if sr & SNECCERR != 0 {
            Ok(ReadCheck::Corrected)
        } else {
            Ok(ReadCheck::Clean)
        }
    }
}

impl ReadNorFlash for H7Flash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), H7FlashError> {
        self.read_checked(offset, bytes).map(|_| ())
    }

    fn capacity(&self) -> usize {
        FLASH_SIZE as usize
    }
}

impl NorFlash for H7Flash {
    const WRITE_SIZE: usize = 32;
    const ERASE_SIZE: usize = 128 * 1024;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), H7FlashError> {
        let Some(erase) = self.sector_erase else {
            return self.inner.blocking_erase(from, to).map_err(|_| H7FlashError::Driver);
        };
        let size = Self::ERASE_SIZE as u32;
        if !from.is_multiple_of(size) || !to.is_multiple_of(size) || from > to || to > FLASH_SIZE {
            return Err(H7FlashError::OutOfBounds);
        }
        for sector in from / size..to / size {
            if !erase(sector) {
                return Err(H7FlashError::Driver);
            }
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), H7FlashError> {
        self.inner.blocking_write(offset, bytes).map_err(|_| H7FlashError::Driver)
    }
}
