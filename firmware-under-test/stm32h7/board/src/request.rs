//! The application's request to the bootloader for update mode (UDS DiagnosticSessionControl
//! programming session): a 64-bit word at the end of SRAM4, which a reset keeps and a
//! power-on loses (RAM powers up undefined; the magic makes garbage read as "no request").
//!
//! Written with one aligned 64-bit store: the H7's RAM ECC holds partial writes in a write
//! cache that a reset can lose (ST's FAQ on SRAM content after reset).

/// The word's address: the last 8 bytes of SRAM4 (RM0468 Table 7: SRAM4 at 0x3800_0000, 16 KiB).
pub const ADDRESS: u32 = 0x3800_3FF8;
/// "UPDATE" in the high bytes; the low byte says which slot the requester runs from.
const MAGIC: u64 = 0x5550_4441_5445_0000;

/// Ask the bootloader for update mode at the next reset, from an application running in
/// `slot` (0 none, 1 A, 2 B: the beacon's encoding). The bootloader protects that slot: the
/// update goes to the other one.
pub fn set(slot: u8) {
    // SAFETY: a word of SRAM4 that no linker section uses (the canary is at its start).
    unsafe { core::ptr::write_volatile(ADDRESS as *mut u64, MAGIC | slot as u64) };
    cortex_m::asm::dsb();
}

/// The requester's slot if update mode was asked for; clears the request either way.
pub fn take() -> Option<u8> {
    // SAFETY: as in `set`.
    unsafe {
        let p = ADDRESS as *mut u64;
        let v = core::ptr::read_volatile(p);
        core::ptr::write_volatile(p, 0);
        cortex_m::asm::dsb();
        (v & !0xFF == MAGIC && (v & 0xFF) <= 2).then_some((v & 0xFF) as u8)
    }
}
