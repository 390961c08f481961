//! Relay lines on Raspberry Pi GPIO through rppal.

use bootproof_fixtures::Polarity;

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

/// Claim BCM GPIO `gpio` as an output for the relay line `name`. Its level is left as it is (a
/// relay must not glitch on open); the rig drives the safe state right after. The level
/// persists when bootproof exits (rppal `reset_on_drop(false)`).
pub fn open_line(gpio: u8, active: Polarity, name: &str) -> Result<Box<dyn Line>, LineError> {
    let label = format!("{} relay (GPIO {gpio})", name.to_uppercase().replace("POWER", "power"));
    let err = |e: rppal::gpio::Error| LineError::Gpio { line: label.clone(), message: explain(&e, gpio) };
    let chip = rppal::gpio::Gpio::new().map_err(err)?;
    let mut pin = chip.get(gpio).map_err(err)?.into_output();
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
    fn opening_a_line_off_a_pi_says_so() {
        // This test machine is not a Pi: rppal reports an unknown model.
        match open_line(17, Polarity::Low, "boot0") {
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("BOOT0 relay (GPIO 17)") && e.contains("not a Raspberry Pi"), "{e}");
            }
            Ok(_) => eprintln!("running on a Raspberry Pi: GPIO 17 opened"),
        }
    }
}
