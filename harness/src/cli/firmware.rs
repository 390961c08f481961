//! `bootproof firmware`: build bootproof's own board firmware and report its size.

use std::process::ExitCode;

use anyhow::{Context, Result};
use bootproof::firmware::{Binary, BoardFirmware, footprint, for_board};
use bootproof_fixtures::BoardProfile;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum FirmwareCommand {
    /// Build the firmware of every built-in board (a no-op when it is up to date).
    Build,
    /// Build it and print each binary's flash and RAM use against the board's.
    Sizes,
}

fn all() -> Result<Vec<(BoardProfile, BoardFirmware)>> {
    let mut out = Vec::new();
    for name in BoardProfile::builtin_names() {
        let p = BoardProfile::builtin(name)?;
        if let Some(fw) = for_board(&p) {
            out.push((p, fw));
        }
    }
    Ok(out)
}

pub fn run(c: &FirmwareCommand) -> Result<ExitCode> {
    let boards = all()?;
    for (p, fw) in &boards {
        eprintln!("building {} firmware in {} ({})", p.name, fw.dir.display(), fw.target);
        fw.ensure_built().with_context(|| format!("the {} firmware", p.name))?;
    }
    if let FirmwareCommand::Sizes = c {
        println!("{:<12} {:<22} {:>9} {:>7} {:>9} {:>7}", "board", "binary", "flash", "of", "RAM", "of");
        for (p, fw) in &boards {
            let builds: &[Binary] = if fw.is_full() { &Binary::ALL } else { &[Binary::Flash] };
            for b in builds {
                let img = fw.image(*b)?;
                let f = footprint(&img.name, &img.raw, p)?;
                let region = match b {
                    Binary::Flash => p.flash.size() as u64,
                    Binary::Bootloader => boot_core::layout::H723.bootloader.size as u64,
                    Binary::Slot(s) | Binary::SlotNoConfirm(s) => {
                        let l = boot_core::layout::H723;
                        (l.image_capacity(*s) - l.header_size) as u64
                    }
                };
                let ram: u64 = p.ram.iter().map(|r| r.size as u64).sum();
                println!(
                    "{:<12} {:<22} {:>9} {:>6.1}% {:>9} {:>6.1}%",
                    p.name,
                    img.name,
                    f.flash,
                    100.0 * f.flash as f64 / region as f64,
                    f.ram,
                    100.0 * f.ram as f64 / ram as f64
                );
            }
        }
        println!(
            "flash: stored bytes against the region it is linked for (the whole flash, sector 0 for the bootloader, or a slot);"
        );
        println!("RAM: static data, bss and uninit (the stack comes on top) against all the board's RAM");
    }
    Ok(ExitCode::SUCCESS)
}
