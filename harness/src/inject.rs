//! Fault injection for exit-path tests.
//!
//! Setting `BOOTPROOF_INJECT=<kind>@<point>` makes the CLI fail on purpose when it reaches the
//! named point, so tests can prove the rig ends in its safe state on that path. `<kind>` is
//! `panic` or `error`. Points are listed where [`point`] is called (e.g. `boot0-high`, after
//! BOOT0 was driven high). Without the variable, [`point`] does nothing.

/// An injected error.
#[derive(Debug, thiserror::Error)]
#[error("injected error at `{0}` (BOOTPROOF_INJECT)")]
pub struct Injected(pub String);

/// Fail here if `BOOTPROOF_INJECT` names this point.
pub fn point(name: &str) -> Result<(), Injected> {
    let Ok(spec) = std::env::var("BOOTPROOF_INJECT") else { return Ok(()) };
    match spec.split_once('@') {
        Some(("panic", p)) if p == name => panic!("injected panic at `{name}` (BOOTPROOF_INJECT)"),
        Some(("error", p)) if p == name => Err(Injected(name.to_string())),
        _ => Ok(()),
    }
}
