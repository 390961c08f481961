//! The minimal beacon firmware for the STM32F446RE (NUCLEO-F446RE).
#![no_std]
#![no_main]

use panic_halt as _;

#[cortex_m_rt::entry]
fn main() -> ! {
    // RCC_CSR (RM0390 §6.3.21): RMVF is bit 24.
    bootproof_minimal::run(bootproof_minimal::Board { reset_register: 0x4002_3874, rmvf_bit: 24 })
}
