//! The RAM canary in SRAM4: a record that survives NRST and software resets (RAM keeps power)
//! and is lost at power-on (RAM powers up undefined). SRAM4 is outside the RAM the ROM
//! bootloader uses, so a trip through the ROM keeps it too.
//!
//! Every field is a 64-bit word written with one aligned 64-bit store: the H7's RAM ECC keeps
//! partial writes in a write cache that a reset can lose (ST's FAQ on SRAM content after reset).

use bootproof_beacon::Canary;

const MAGIC: u64 = 0x424F_4F54_5052_4F46; // "BOOTPROF"
const ROM_REQUEST: u64 = 0x524F_4D5F_454E_5452; // "ROM_ENTR"

#[repr(C, align(8))]
struct Cell {
    magic: u64,
    check: u64,
    boots: u64,
    rom: u64,
}

#[unsafe(link_section = ".canary")]
static mut CELL: core::mem::MaybeUninit<Cell> = core::mem::MaybeUninit::uninit();

fn cell() -> *mut Cell {
    core::ptr::addr_of_mut!(CELL).cast()
}

/// Check the canary and count this boot: (what it said, boots since it was last cold).
pub fn check() -> (Canary, u16) {
    // SAFETY: single-threaded at boot; the cell is plain memory in SRAM4.
    unsafe {
        let c = cell();
        let magic = core::ptr::read_volatile(&raw const (*c).magic);
        let check = core::ptr::read_volatile(&raw const (*c).check);
        let boots = core::ptr::read_volatile(&raw const (*c).boots);
        let (canary, boots) = Canary::judge(magic == MAGIC, boots, check);
        core::ptr::write_volatile(&raw mut (*c).magic, MAGIC);
        core::ptr::write_volatile(&raw mut (*c).boots, boots);
        core::ptr::write_volatile(&raw mut (*c).check, !boots);
        (canary, boots.min(u16::MAX as u64) as u16)
    }
}

/// Ask the next boot to enter the ROM bootloader.
pub fn request_rom() {
    // SAFETY: plain memory.
    unsafe { core::ptr::write_volatile(&raw mut (*cell()).rom, ROM_REQUEST) }
}

/// Whether the previous boot asked for the ROM bootloader (the request is cleared).
pub fn take_rom_request() -> bool {
    // SAFETY: plain memory.
    unsafe {
        let r = core::ptr::read_volatile(&raw const (*cell()).rom) == ROM_REQUEST;
        if r {
            core::ptr::write_volatile(&raw mut (*cell()).rom, 0);
        }
        r
    }
}
