//! Relay lines on Raspberry Pi GPIO through rppal.

use bootproof_fixtures::{Level, Polarity};

use crate::LineError;
use crate::lines::{GpioLine, Line};

/// What to tell the user when rppal cannot give us `gpio`.
pub fn explain(e: &rppal::gpio::Error, gpio: u8) -> String {
    use rppal::gpio::Error::*;
    match e {
        UnknownModel => {
            "this machine is not a Raspberry Pi rppal recognises (unknown model): run bootproof on the rig's Pi, or use a dry-run rig (`backend = { file = ... }`)".into()
        }
        PinUsed(_) => format!(
            "GPIO {gpio} busy: is another bootproof holding the rig lock, or is the pin claimed by another driver (check /boot/firmware/config.txt overlays)?"
        ),
        PinNotAvailable(_) => format!("GPIO {gpio} does not exist on this Pi; use a BCM GPIO number 2..=27"),
        PermissionDenied(path) => format!(
            "permission denied opening {path}: add the CI user to the `gpio` group (see ci/README.md) and log in again"
        ),
        other => format!("GPIO {gpio}: {other}"),
    }
}

/// The GPIO level a relay line is opened at: its safe state (`safe_asserted`: BOOT0 low and
/// NRST released are not asserted; power is asserted when the rig's safe power is on) under the
/// line's polarity. rppal's plain `into_output()` would drive whatever the output latch holds
/// (0 after boot), which on an active-low relay HAT energises every relay for an instant at
/// first use; opening at this level makes the first edge the line ever sees a no-op.
pub fn opening_level(active: Polarity, safe_asserted: bool) -> Level {
    active.level_for(safe_asserted)
}

/// Claim BCM GPIO `gpio` as an output for the relay line `name`, driving its safe level
/// ([`opening_level`]) from the instant it becomes an output (rppal sets the level before the
/// mode).
///
/// Reset-on-drop is off (`set_reset_on_drop(false)`): with it on, dropping the pin (the rig is
/// dropped, or a line is reopened) would put it back to its previous mode, an input, so the
/// relay input floats and the HAT's pull decides; for a power relay whose safe state is "on"
/// that switches the board off, and on HATs with pull-downs on active-low inputs it energises
/// relays. Instead the pin stays an output at the level bootproof last drove, which is the safe
/// state: `Rig::drop`, the panic hook and the signal handlers restore it before the pin is
/// dropped. The pin is dropped only with the rig, never mid-run.
pub fn open_line(gpio: u8, active: Polarity, name: &str, safe_asserted: bool) -> Result<Box<dyn Line>, LineError> {
    let label = format!("{} relay (GPIO {gpio})", name.to_uppercase().replace("POWER", "power"));
    let err = |e: rppal::gpio::Error| LineError::Gpio { line: label.clone(), message: explain(&e, gpio) };
    let chip = rppal::gpio::Gpio::new().map_err(err)?;
    let pin = chip.get(gpio).map_err(err)?;
    let mut pin = match opening_level(active, safe_asserted) {
        Level::High => pin.into_output_high(),
        Level::Low => pin.into_output_low(),
    };
    pin.set_reset_on_drop(false);
    Ok(Box::new(GpioLine::new(pin, active, label)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rppal_error_gets_a_fix() {
        use rppal::gpio::Error::*;
        assert!(explain(&UnknownModel, 17).contains("not a Raspberry Pi"));
        assert!(explain(&PinUsed(17), 17).contains("GPIO 17 busy") && explain(&PinUsed(17), 17).contains("rig lock"));
        assert!(explain(&PinNotAvailable(40), 40).contains("2..=27"));
        assert!(explain(&PermissionDenied("/dev/gpiomem".into()), 17).contains("`gpio` group"));
    }

    #[test]
    fn lines_open_at_their_released_level_for_both_polarities() {
        // BOOT0 low / NRST released: not asserted.
        assert_eq!(opening_level(Polarity::Low, false), Level::High, "active-low HAT: GPIO high = relay off");
        assert_eq!(opening_level(Polarity::High, false), Level::Low, "active-high HAT: GPIO low = relay off");
        // Power, safe = on: the relay that powers the board is driven from the first instant.
        assert_eq!(opening_level(Polarity::Low, true), Level::Low);
        assert_eq!(opening_level(Polarity::High, true), Level::High);
    }

    #[test]
    fn opening_a_line_off_a_pi_says_so() {
        // This test machine is not a Pi: rppal reports an unknown model.
        match open_line(17, Polarity::Low, "boot0", false) {
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("BOOT0 relay (GPIO 17)") && e.contains("not a Raspberry Pi"), "{e}");
            }
            Ok(_) => eprintln!("running on a Raspberry Pi: GPIO 17 opened"),
        }
    }
}
