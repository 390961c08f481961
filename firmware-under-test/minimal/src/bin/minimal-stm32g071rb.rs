//! The minimal beacon firmware for the STM32G071RB (NUCLEO-G071RB).
#![no_std]
#![no_main]

use panic_halt as _;

#[cortex_m_rt::entry]
fn main() -> ! {
    // RCC_CSR (RM0444 §5.4.25): RMVF is bit 23.
    bootproof_minimal::run(bootproof_minimal::Board { reset_register: 0x4002_1060, rmvf_bit: 23 })
}
