//! bootproof's application built never to confirm itself: a trial of it always fails, and
//! bootproof's bootloader reverts (the revert scenarios use it).
#![no_std]
#![no_main]

use {defmt_rtt as _, panic_probe as _};

#[embassy_executor::main]
async fn main(spawner: embassy_executor::Spawner) {
    bootproof_app::run(spawner, bootproof_app::Variant { confirms: false }).await
}
