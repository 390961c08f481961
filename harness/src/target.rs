//! Open what a command runs against: a physical rig from its config file.

use std::path::{Path, PathBuf};

use bootproof_fixtures::{BoardProfile, ConfigError, RigConfig};
use bootproof_rig::Rig;
use bootproof_rig::open::{OpenOptions, PartCheck};

/// Why a target could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The rig config or board profile is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Opening the rig failed (the lock, typically).
    #[error(transparent)]
    Rig(#[from] bootproof_rig::RigError),
}

/// The board profile a rig config names: a built-in name, or a path relative to the config.
pub fn board_for(config: &RigConfig) -> Result<BoardProfile, ConfigError> {
    let rel: PathBuf = config.path.parent().unwrap_or(Path::new(".")).join(&config.board);
    if config.board.ends_with(".toml") { BoardProfile::load(&rel) } else { BoardProfile::builtin(&config.board) }
}

/// Load a rig config and open the parts `opts` asks for. The checks include
/// [`config_checks`] of the config against its board.
pub async fn open_rig(path: &Path, opts: &OpenOptions) -> Result<(Rig, Vec<PartCheck>), TargetError> {
    let config = RigConfig::load(path)?;
    let board = board_for(&config)?;
    let extra = config_checks(&config, &board);
    let (rig, mut checks) = bootproof_rig::open::open(&config, board, opts).await?;
    checks.extend(extra);
    Ok((rig, checks))
}

/// The part name of [`config_checks`]' CAN line.
pub const CAN_RATES_PART: &str = "CAN rates vs the ROM";

/// Checks of a rig config against its board that no single part can make: the CAN interface
/// must run at the rates of the board's CAN ROM bootloader (its rates are fixed: AN5405 for
/// FDCAN, AN3154 for bxCAN), or the ROM scenarios and flashing over CAN cannot talk to it.
pub fn config_checks(config: &RigConfig, board: &BoardProfile) -> Vec<PartCheck> {
    use bootproof_fixtures::RomTransport;
    let Some(can) = &config.can else { return Vec::new() };
    let want = board.rom.transports.iter().find_map(|t| match t {
        RomTransport::Fdcan { nominal_bitrate, data_bitrate, .. } => Some((*nominal_bitrate, Some(*data_bitrate))),
        RomTransport::Bxcan { bitrate, .. } => Some((*bitrate, None)),
        RomTransport::Usart { .. } => None,
    });
    let Some((nominal, data)) = want else {
        return vec![PartCheck {
            part: CAN_RATES_PART.into(),
            ok: true,
            detail: format!("{}'s ROM bootloader has no CAN interface; can0 serves the application only", board.name),
        }];
    };
    let rate = |n: u32, d: Option<u32>| match d {
        Some(d) => format!("{n} bit/s, data {d} bit/s"),
        None => format!("{n} bit/s"),
    };
    let (have, need) = (rate(can.nominal_bitrate, can.data_bitrate), rate(nominal, data));
    // A classic (bxCAN) ROM needs no data rate; an FD interface still talks classic frames.
    let ok = can.nominal_bitrate == nominal && (data.is_none() || can.data_bitrate == data);
    let detail = if ok {
        format!("{have}: the {} ROM bootloader's rates", board.name)
    } else {
        format!(
            "[can] in {} says {have}, but the {} ROM bootloader runs at {need}; set nominal_bitrate = {nominal}{} (and the interface to match)",
            config.path.display(),
            board.name,
            data.map(|d| format!(", data_bitrate = {d}")).unwrap_or_default()
        )
    };
    vec![PartCheck { part: CAN_RATES_PART.into(), ok, detail }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(can: &str) -> RigConfig {
        let text = format!(
            "name = \"t\"\nboard = \"stm32h723zg\"\nlock = \"/tmp/t.lock\"\nprovides = [\"can\"]\n[can]\ninterface = \"can0\"\n{can}"
        );
        RigConfig::from_toml(&text, Path::new("/etc/bootproof/t.toml")).unwrap()
    }

    #[test]
    fn can_rates_that_disagree_with_the_rom_bootloader_are_flagged_with_the_fix() {
        let h7 = BoardProfile::builtin("stm32h723zg").unwrap();
        let ok = config_checks(&config("nominal_bitrate = 250_000\ndata_bitrate = 1_000_000\n"), &h7);
        assert!(ok[0].ok, "{ok:?}");
        let bad = config_checks(&config("nominal_bitrate = 500_000\ndata_bitrate = 2_000_000\n"), &h7);
        assert!(!bad[0].ok);
        assert!(
            bad[0].detail.contains("runs at 250000 bit/s, data 1000000 bit/s")
                && bad[0].detail.contains("nominal_bitrate = 250000, data_bitrate = 1000000"),
            "{}",
            bad[0].detail
        );
        // The F446's bxCAN ROM: 125 kbit/s classic.
        let f4 = BoardProfile::builtin("stm32f446re").unwrap();
        assert!(!config_checks(&config("nominal_bitrate = 250_000\n"), &f4)[0].ok);
        assert!(config_checks(&config("nominal_bitrate = 125_000\n"), &f4)[0].ok);
    }
}
