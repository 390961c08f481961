//! bootproof's minimal beacon firmware, for boards without a full application yet.
//!
//! At every boot it reads the reset-cause register and clears it (RMVF), checks its RAM canary
//! (kept across NRST and software resets, lost at power-on), and leaves its boot beacon
//! ([`bootproof_beacon`]) in RAM at the symbol `BOOTPROOF_BEACON`, where bootproof reads it
//! through the debug probe. Then it sleeps. It touches no other peripheral, so it runs
//! unchanged on the board and in bootproof's twin.
#![no_std]

use bootproof_beacon::{Beacon, Canary, Slot, Stage, Version};

/// Where the board keeps its reset flags.
pub struct Board {
    /// The reset-cause register (RCC_CSR on the F4 and G0).
    pub reset_register: u32,
    /// Its "remove reset flags" bit.
    pub rmvf_bit: u8,
}

/// The boot beacon, for the probe (the name is the contract's `bootproof_beacon::RAM_SYMBOL`).
#[unsafe(no_mangle)]
#[used]
pub static mut BOOTPROOF_BEACON: [u8; bootproof_beacon::LEN] = [0; bootproof_beacon::LEN];

const MAGIC: u64 = 0x424F_4F54_4D49_4E49; // "BOOTMINI"

#[repr(C, align(8))]
struct Cell {
    magic: u64,
    boots: u64,
    check: u64,
}

#[unsafe(link_section = ".canary")]
static mut CELL: core::mem::MaybeUninit<Cell> = core::mem::MaybeUninit::uninit();

unsafe extern "C" {
    static __vector_table: u32;
}

fn canary() -> (Canary, u16) {
    // SAFETY: single-threaded at boot; the cell is plain RAM outside every other section.
    unsafe {
        let c: *mut Cell = core::ptr::addr_of_mut!(CELL).cast();
        let magic = core::ptr::read_volatile(&raw const (*c).magic);
        let boots = core::ptr::read_volatile(&raw const (*c).boots);
        let check = core::ptr::read_volatile(&raw const (*c).check);
        let (state, boots) = Canary::judge(magic == MAGIC, boots, check);
        core::ptr::write_volatile(&raw mut (*c).magic, MAGIC);
        core::ptr::write_volatile(&raw mut (*c).boots, boots);
        core::ptr::write_volatile(&raw mut (*c).check, !boots);
        (state, boots.min(u16::MAX as u64) as u16)
    }
}

/// Read the reset flags, clear them, check the canary, publish the beacon, sleep.
pub fn run(board: Board) -> ! {
    let reg = board.reset_register as *mut u32;
    // SAFETY: the board's reset-cause register; RMVF is write-1-to-clear-the-flags.
    let flags = unsafe {
        let v = core::ptr::read_volatile(reg);
        core::ptr::write_volatile(reg, v | (1 << board.rmvf_bit));
        v
    };
    let (canary, boots) = canary();
    let beacon = Beacon {
        stage: Stage::Application,
        slot: Slot::None,
        version: Version { major: 1, minor: 0, revision: 0, build: 0 },
        reset_flags: flags,
        vector_table: core::ptr::addr_of!(__vector_table) as u32,
        canary,
        flags: 0,
        boots,
    };
    // SAFETY: written once per boot, before anyone reads it; the probe reads it from outside.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(BOOTPROOF_BEACON), beacon.encode()) };
    loop {
        // No interrupt is enabled: the core sleeps until the next reset.
        // SAFETY: WFI has no memory effects.
        unsafe { core::arch::asm!("wfi") };
    }
}
