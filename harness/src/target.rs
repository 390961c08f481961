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

/// Load a rig config and open the parts `opts` asks for.
pub async fn open_rig(path: &Path, opts: &OpenOptions) -> Result<(Rig, Vec<PartCheck>), TargetError> {
    let config = RigConfig::load(path)?;
    let board = board_for(&config)?;
    Ok(bootproof_rig::open::open(&config, board, opts).await?)
}
