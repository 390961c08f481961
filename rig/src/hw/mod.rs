//! Real hardware backends for a Raspberry Pi rig (feature `hw`, Linux).
//!
//! | module | crate | capability |
//! |---|---|---|
//! | [`gpio`] | rppal | relay lines (BOOT0, NRST, power) |
//! | [`probe`] | probe-rs | [`crate::DebugProbe`] |
//! | [`can`] | socketcan (tokio) | [`crate::CanBus`], classic and FD |
//! | [`serial`] | serialport | [`crate::Console`] |
//!
//! Architecture invariant: these are the only modules that name those crates. Blocking
//! libraries (probe-rs, serialport) run on their own threads, off the async runtime. Each
//! module keeps its conversions and decisions in plain functions that are unit-tested here
//! against fakes; the hardware itself is exercised only on the Pi.

pub mod can;
pub mod gpio;
pub mod probe;
pub mod serial;
