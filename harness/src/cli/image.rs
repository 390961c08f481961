//! `bootproof image`: image recipes and tools.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use bootproof_fixtures::BoardProfile;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Write the stand-in application image for a board (it runs on the twin only).
    Standin(StandinArgs),
}

#[derive(Debug, Args)]
pub struct StandinArgs {
    /// Board profile: built-in name or TOML.
    #[arg(long)]
    pub board: String,
    /// Version it announces.
    #[arg(long, default_value_t = 1)]
    pub app_version: u32,
    /// Size in bytes (at least 1024).
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    /// Vector table address (default: the start of user flash).
    #[arg(long, value_parser = super::flash::parse_addr)]
    pub base: Option<u32>,
    /// Output .bin file.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(c: &ImageCommand) -> Result<ExitCode> {
    match c {
        ImageCommand::Standin(a) => {
            let p = BoardProfile::resolve(&a.board)?;
            let base = a.base.unwrap_or(p.flash.base);
            let img = bootproof_twin::standin::image(&p, base, a.app_version, a.size);
            img.check_within(p.flash.base, p.flash.end(), &format!("{} user flash", p.name))?;
            std::fs::write(&a.out, &img.raw).with_context(|| format!("writing {}", a.out.display()))?;
            println!(
                "{}: stand-in app v{} for {}, {} bytes at {base:#010x}",
                a.out.display(),
                a.app_version,
                p.name,
                img.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
