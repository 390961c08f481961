//! Receiving while the flash bank erases.
//!
//! The H723 has one flash bank and this bootloader runs from it: while a sector erases
//! (1.1 s typical, 2.2 s at most at x32), every instruction fetch from flash waits. The FDCAN
//! keeps receiving into its RX FIFO 0, which holds three frames (embassy-stm32's message RAM
//! layout). So the erase is started and waited for by code in ITCM ([`erase_sector`]), with
//! interrupts masked, and that code moves every frame from the FIFO into a ring in AXI SRAM
//! ([`drain`]) while it waits. The main loop takes frames from the ring before it asks the
//! FDCAN driver for more ([`pop`]), so the order on the bus is kept.
//!
//! Everything here that runs during an erase touches only registers, ITCM and AXI SRAM:
//! volatile word copies (no `memcpy`, which lives in flash), raw pointers (no bounds checks,
//! whose panic path lives in flash). `cargo objdump` of `.itcm_text` shows no call out of it.

use core::mem::MaybeUninit;
use core::ptr::{addr_of_mut, read_volatile, write_volatile};

const FDCAN1: usize = 0x4000_A000;
const RXF0C: *const u32 = (FDCAN1 + 0xA0) as *const u32;
const RXF0S: *const u32 = (FDCAN1 + 0xA4) as *const u32;
const RXF0A: *mut u32 = (FDCAN1 + 0xA8) as *mut u32;
const RXESC: *const u32 = (FDCAN1 + 0xBC) as *const u32;
const IR: *mut u32 = (FDCAN1 + 0x50) as *mut u32;
const IE: *mut u32 = (FDCAN1 + 0x54) as *mut u32;
const IR_RF0N: u32 = 1;
const TXBC: *const u32 = (FDCAN1 + 0xC0) as *const u32;
const TXFQS: *const u32 = (FDCAN1 + 0xC4) as *const u32;
const TXESC: *const u32 = (FDCAN1 + 0xC8) as *const u32;
const TXBAR: *mut u32 = (FDCAN1 + 0xD0) as *mut u32;
const MSG_RAM: usize = 0x4000_AC00;

const FLASH: usize = 0x5200_2000;
const KEYR: *mut u32 = (FLASH + 0x04) as *mut u32;
const CR: *mut u32 = (FLASH + 0x0C) as *mut u32;
const SR: *const u32 = (FLASH + 0x10) as *const u32;
const CCR: *mut u32 = (FLASH + 0x14) as *mut u32;
const CR_LOCK: u32 = 1;
const CR_SER: u32 = 1 << 2;
const CR_PSIZE_X32: u32 = 2 << 4;
const CR_START: u32 = 1 << 7;
const CR_EOPIE: u32 = 1 << 16;
const SR_BUSY: u32 = 0b111; // BSY, WBNE, QW
/// WRPERR, PGSERR, STRBERR, INCERR, OPERR (RM0468 FLASH_SR).
const SR_ERRORS: u32 = (1 << 17) | (1 << 18) | (1 << 19) | (1 << 21) | (1 << 22);
/// Clear EOP and every error flag.
const CCR_ALL: u32 = 0x1FEF_0000;

const NVIC_ISER: *mut u32 = 0xE000_E100 as *mut u32;
const NVIC_ICER: *mut u32 = 0xE000_E180 as *mut u32;
const NVIC_ICPR: *mut u32 = 0xE000_E280 as *mut u32;
/// Interrupt numbers (RM0468 Table 147): FLASH and FDCAN1_IT0.
const IRQ_FLASH: u32 = 4;
const IRQ_FDCAN1_IT0: u32 = 19;

/// Frames the ring holds: 3.6 s of back-to-back 64-byte frames at 250 kbit/s / 1 Mbit/s
/// (319,600 of AXI SRAM's 320 KiB). A download starts with two sector erases (header and
/// trailer sector, 2.2 s), and the backlog they leave is still being written when the middle
/// sector's erase (1.1 s more) begins: about 3,000 frames at the peak.
pub const FRAMES: usize = 4700;

/// The standard identifier kept (the UDS requests); other frames are dropped.
const KEEP_ID: u32 = bootproof_uds::REQUEST_ID as u32;
const RESPONSE_ID: u32 = bootproof_uds::RESPONSE_ID as u32;

#[repr(C)]
struct Ring {
    /// Request frames still to come before the armed response goes out (0: none armed).
    armed: u32,
    /// The armed response: a classic-length frame on the response identifier.
    response: [u32; 2],
    /// Next slot to fill.
    head: u32,
    /// Next slot to take.
    tail: u32,
    /// Frames dropped because the ring was full.
    lost: u32,
    len: [u8; FRAMES],
    data: [[u32; 16]; FRAMES],
}

#[unsafe(link_section = ".axisram.ring")]
static mut RING: MaybeUninit<Ring> = MaybeUninit::uninit();

unsafe extern "C" {
    static mut __sitcm_text: u32;
    static mut __eitcm_text: u32;
    static __siitcm_text: u32;
}

/// Copy the ITCM code in place and empty the ring. Call once, before anything else here.
pub fn init() {
    // SAFETY: the linker script's symbols delimit `.itcm_text` (in ITCM) and its load image
    // (in flash); nothing runs from ITCM yet. The ring is only ever used through this module.
    unsafe {
        let mut dst = addr_of_mut!(__sitcm_text);
        let end = addr_of_mut!(__eitcm_text);
        let mut src = core::ptr::addr_of!(__siitcm_text);
        while dst < end {
            write_volatile(dst, read_volatile(src));
            dst = dst.add(1);
            src = src.add(1);
        }
        core::arch::asm!("dsb", "isb");
        let r = ring();
        write_volatile(addr_of_mut!((*r).head), 0);
        write_volatile(addr_of_mut!((*r).tail), 0);
        write_volatile(addr_of_mut!((*r).lost), 0);
        write_volatile(addr_of_mut!((*r).armed), 0);
    }
}

/// Send `frame` (8 bytes, on the response identifier) as soon as `frames` more request frames
/// have arrived, wherever the core is then (in an erase too): a response-pending for a request
/// whose last frame would otherwise wait behind an erase, past the tester's P2.
pub fn arm(frames: u32, frame: [u8; 8]) {
    // SAFETY: the ring's own fields.
    unsafe {
        let r = ring();
        write_volatile(addr_of_mut!((*r).response[0]), u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]));
        write_volatile(addr_of_mut!((*r).response[1]), u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]));
        write_volatile(addr_of_mut!((*r).armed), frames);
    }
}

/// Forget an armed response.
pub fn disarm() {
    // SAFETY: the ring's own field.
    unsafe { write_volatile(addr_of_mut!((*ring()).armed), 0) }
}

/// Put the armed response in the FDCAN's Tx FIFO/queue (as embassy's driver does: the element
/// at the put index, then its TXBAR bit).
#[unsafe(link_section = ".itcm_text.respond")]
#[inline(never)]
fn respond(r: *mut Ring) {
    // SAFETY: FDCAN1's Tx registers and the element at the put index, which is free.
    unsafe {
        let status = read_volatile(TXFQS);
        if status & (1 << 21) != 0 {
            return; // full: the tester times out and repeats
        }
        let put = (status >> 16) & 0x1F;
        let start = read_volatile(TXBC) & 0xFFFC;
        let field = field_bytes(read_volatile(TXESC) & 7);
        let e = (MSG_RAM + start as usize + put as usize * (8 + field as usize)) as *mut u32;
        write_volatile(e, (RESPONSE_ID & 0x7FF) << 18);
        // DLC 8, FD format, bit rate switching.
        write_volatile(e.add(1), (8 << 16) | (1 << 21) | (1 << 20));
        write_volatile(e.add(2), read_volatile(addr_of_mut!((*r).response[0])));
        write_volatile(e.add(3), read_volatile(addr_of_mut!((*r).response[1])));
        write_volatile(TXBAR, 1 << put);
    }
}

/// Bytes of a data field of size code `code` (RXESC/TXESC: 8, 12, 16, 20, 24, 32, 48, 64; a
/// DLC above 8 is code DLC − 8). Branches, not a match: a jump table would sit in flash, and
/// inlined into the ITCM code that calls it.
#[inline(always)]
fn field_bytes(code: u32) -> u32 {
    if code <= 4 {
        8 + 4 * code
    } else if code == 5 {
        32
    } else if code == 6 {
        48
    } else {
        64
    }
}

fn ring() -> *mut Ring {
    addr_of_mut!(RING).cast::<Ring>()
}

/// Move every frame waiting in the FDCAN's RX FIFO 0 into the ring.
#[unsafe(link_section = ".itcm_text.drain")]
#[inline(never)]
pub fn drain() {
    // SAFETY: FDCAN1's registers and message RAM (the element the get index names, acknowledged
    // after the copy), and the ring's own memory.
    unsafe {
        let r = ring();
        loop {
            let status = read_volatile(RXF0S);
            if status & 0x7F == 0 {
                return;
            }
            let get = (status >> 8) & 0x3F;
            let start = read_volatile(RXF0C) & 0xFFFC;
            // Element: two header words and the data field (F0DS: 8, 12, 16, 20, 24, 32, 48 or
            // 64 bytes).
            let field = field_bytes(read_volatile(RXESC) & 7);
            let element = (MSG_RAM + start as usize + get as usize * (8 + field as usize)) as *const u32;
            let r0 = read_volatile(element);
            let r1 = read_volatile(element.add(1));
            let standard = r0 & (1 << 30) == 0;
            if standard && (r0 >> 18) & 0x7FF == KEEP_ID {
                let dlc = (r1 >> 16) & 0xF;
                let len = if dlc <= 8 { dlc } else { field_bytes(dlc - 8) };
                let head = read_volatile(addr_of_mut!((*r).head));
                let tail = read_volatile(addr_of_mut!((*r).tail));
                let next = if head as usize + 1 == FRAMES { 0 } else { head + 1 };
                if next == tail {
                    write_volatile(addr_of_mut!((*r).lost), read_volatile(addr_of_mut!((*r).lost)) + 1);
                } else {
                    let dst = addr_of_mut!((*r).data).cast::<u32>().add(head as usize * 16);
                    let mut w = 0;
                    while w < (len as usize).div_ceil(4) {
                        write_volatile(dst.add(w), read_volatile(element.add(2 + w)));
                        w += 1;
                    }
                    write_volatile(addr_of_mut!((*r).len).cast::<u8>().add(head as usize), len as u8);
                    write_volatile(addr_of_mut!((*r).head), next);
                }
                let armed = read_volatile(addr_of_mut!((*r).armed));
                if armed == 1 {
                    respond(r);
                }
                if armed > 0 {
                    write_volatile(addr_of_mut!((*r).armed), armed - 1);
                }
            }
            write_volatile(RXF0A, get);
        }
    }
}

/// Erase flash sector `sector` (0..8), receiving into the ring meanwhile. Whether the erase
/// finished without an error flag.
///
/// The core sleeps in between (WFI): with every interrupt masked by PRIMASK (their handlers
/// are in flash) and only two enabled in the NVIC, a frame in the FIFO (FDCAN1 RF0N, the only
/// FDCAN interrupt enabled meanwhile) or the end of the erase (FLASH EOP) wakes it without
/// running a handler. The NVIC's and the FDCAN's enables are restored afterwards.
#[unsafe(link_section = ".itcm_text.erase")]
#[inline(never)]
pub fn erase_sector(sector: u32) -> bool {
    // SAFETY: the flash controller's registers (unlocked and locked again, as embassy's driver
    // does around each operation), FDCAN1's interrupt flag and the NVIC's enable and pending
    // registers, all restored before returning.
    unsafe {
        core::arch::asm!("cpsid i");
        // Read one by one (a zeroed array would call memclr, which lives in flash).
        let r = |i: usize| read_volatile(NVIC_ISER.add(i));
        let enabled = [r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7)];
        let mut i = 0;
        while i < 8 {
            write_volatile(NVIC_ICER.add(i), u32::MAX);
            i += 1;
        }
        write_volatile(NVIC_ISER, (1 << IRQ_FLASH) | (1 << IRQ_FDCAN1_IT0));
        // Only a new frame raises FDCAN1's line meanwhile (a finished transmission's flag
        // stays set for the driver, but does not wake us).
        let ie = read_volatile(IE);
        write_volatile(IE, IR_RF0N);
        if read_volatile(CR) & CR_LOCK != 0 {
            write_volatile(KEYR, 0x4567_0123);
            write_volatile(KEYR, 0xCDEF_89AB);
        }
        write_volatile(CCR, CCR_ALL);
        let cr = CR_EOPIE | CR_PSIZE_X32 | CR_SER | ((sector & 7) << 8);
        write_volatile(CR, cr);
        write_volatile(CR, cr | CR_START);
        core::arch::asm!("dsb");
        loop {
            // Clear the FIFO's flag first, then empty it: a frame after this sets it again.
            write_volatile(IR, IR_RF0N);
            write_volatile(NVIC_ICPR, 1 << IRQ_FDCAN1_IT0);
            drain();
            if read_volatile(SR) & SR_BUSY == 0 {
                break;
            }
            core::arch::asm!("dsb", "wfi");
        }
        let ok = read_volatile(SR) & SR_ERRORS == 0;
        write_volatile(CCR, CCR_ALL);
        write_volatile(CR, 0);
        write_volatile(CR, CR_LOCK);
        write_volatile(IE, ie);
        write_volatile(NVIC_ICPR, 1 << IRQ_FLASH);
        write_volatile(NVIC_ICER, (1 << IRQ_FLASH) | (1 << IRQ_FDCAN1_IT0));
        i = 0;
        while i < 8 {
            write_volatile(NVIC_ISER.add(i), enabled[i]);
            i += 1;
        }
        core::arch::asm!("dsb", "isb", "cpsie i");
        ok
    }
}

/// The next frame from the ring: (data, length).
pub fn pop() -> Option<([u8; 64], usize)> {
    // SAFETY: the ring's memory; the slot at `tail` was filled by `drain` (which only writes
    // at `head`, never at `tail` while it is not empty).
    unsafe {
        let r = ring();
        let tail = read_volatile(addr_of_mut!((*r).tail));
        if tail == read_volatile(addr_of_mut!((*r).head)) {
            return None;
        }
        let len = read_volatile(addr_of_mut!((*r).len).cast::<u8>().add(tail as usize)) as usize;
        let src = addr_of_mut!((*r).data).cast::<u32>().add(tail as usize * 16);
        let mut out = [0u8; 64];
        for w in 0..16 {
            out[4 * w..4 * w + 4].copy_from_slice(&read_volatile(src.add(w)).to_le_bytes());
        }
        let next = if tail as usize + 1 == FRAMES { 0 } else { tail + 1 };
        write_volatile(addr_of_mut!((*r).tail), next);
        Some((out, len))
    }
}

/// Frames the ring dropped because it was full (0 unless the bus outran a sector erase).
pub fn lost() -> u32 {
    // SAFETY: a read of the ring's counter.
    unsafe { read_volatile(addr_of_mut!((*ring()).lost)) }
}
