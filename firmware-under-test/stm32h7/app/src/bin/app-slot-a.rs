//! bootproof's application (see the crate documentation); it confirms itself when it runs as a
//! trial under bootproof's bootloader.
#![no_std]
#![no_main]

use {defmt_rtt as _, panic_probe as _};

#[embassy_executor::main]
async fn main(spawner: embassy_executor::Spawner) {
    bootproof_app::run(spawner, bootproof_app::Variant { confirms: true }).await
}
