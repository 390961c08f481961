//! bootproof: prove how STM32 boards boot.
//!
//! This crate holds the runner side of bootproof: opening a rig or a twin ([`target`]), and the
//! test hooks used to prove the safe state on every exit path ([`inject`]). The `bootproof`
//! binary (src/main.rs and src/cli/) is thin glue over it.

pub mod firmware;
pub mod flash;
pub mod inject;
pub mod report;
pub mod rom;
pub mod scenarios;
pub mod target;
pub mod uds;
pub mod update;
