//! Hand the core to an image as if it came out of reset: every peripheral the bootloader may
//! have touched back in reset, no interrupt enabled or pending, SysTick off, the vector table
//! moved, MSP from the image, then its reset handler.
//!
//! RM0468 §8.7 (RCC): each bus has a peripheral reset register (`*RSTR`); setting a bit holds
//! the peripheral in reset, clearing it releases it in its reset state. The clock enables
//! (`*ENR`) go back to their reset values, so the image starts from the clock gating it would
//! see after a reset. The system clock itself is left as the bootloader set it (HSI after
//! reset: the bootloader does not change it).

/// RCC base (RM0468 Table 8).
const RCC: u32 = 0x5802_4400;
/// (reset register, enable register, enable register's reset value) per bus, RM0468 §8.7:
/// AHB1, AHB2, AHB4 (not AHB3: it holds the flash interface, and the FMC/OCTOSPI this firmware
/// never enables), APB3, APB1L, APB1H, APB2, APB4.
const BUSES: [(u32, u32, u32); 7] = [
    (0x080, 0x0D8, 0x0000_0000), // AHB1RSTR, AHB1ENR
    (0x084, 0x0DC, 0x0000_0000), // AHB2RSTR, AHB2ENR
    (0x088, 0x0E0, 0x0000_0000), // AHB4RSTR, AHB4ENR
    (0x08C, 0x0E4, 0x0000_0000), // APB3RSTR, APB3ENR
    (0x090, 0x0E8, 0x0000_0000), // APB1LRSTR, APB1LENR
    (0x094, 0x0EC, 0x0000_0000), // APB1HRSTR, APB1HENR
    (0x098, 0x0F0, 0x0000_0000), // APB2RSTR, APB2ENR
];
/// APB4RSTR / APB4ENR: SYSCFG and friends (reset value of APB4ENR: 0x0001_0000, RTCAPB).
const APB4: (u32, u32, u32) = (0x09C, 0x0F4, 0x0001_0000);

/// Jump to the image whose vector table is at `vector_table`.
///
/// # Safety
/// `vector_table` must hold a verified image's vector table (initial SP, reset handler). The
/// caller gives up every peripheral it holds: they are reset under it.
pub unsafe fn jump(vector_table: u32) -> ! {
    // SAFETY: the caller hands over the whole chip; the addresses are RM0468's and PM0253's.
    unsafe {
        cortex_m::interrupt::disable();
        for (rstr, enr, enr_reset) in BUSES.into_iter().chain([APB4]) {
            let rstr = (RCC + rstr) as *mut u32;
            core::ptr::write_volatile(rstr, 0xFFFF_FFFF);
            core::ptr::write_volatile(rstr, 0);
            core::ptr::write_volatile((RCC + enr) as *mut u32, enr_reset);
        }
        let nvic = &*cortex_m::peripheral::NVIC::PTR;
        for i in 0..8 {
            nvic.icer[i].write(0xFFFF_FFFF);
            nvic.icpr[i].write(0xFFFF_FFFF);
        }
        let syst = &*cortex_m::peripheral::SYST::PTR;
        syst.csr.write(0);
        syst.rvr.write(0);
        syst.cvr.write(0);
        // Pending SysTick and PendSV cleared (ICSR.PENDSTCLR, PENDSVCLR).
        let scb = &*cortex_m::peripheral::SCB::PTR;
        scb.icsr.write((1 << 25) | (1 << 27));
        scb.vtor.write(vector_table);
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
        // Nothing is enabled or pending: interrupts back on, as after a reset.
        cortex_m::interrupt::enable();
        cortex_m::asm::bootload(vector_table as *const u32)
    }
}
