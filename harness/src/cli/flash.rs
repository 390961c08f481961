//! `bootproof flash`: program an image through the ROM bootloader or the debug probe.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use bootproof::flash::{self, FlashEvent, FlashOptions};
use bootproof::rom::RomClient;
use bootproof_fixtures::{Level, RomTransportKind};
use bootproof_rig::image::FirmwareImage;
use bootproof_rig::open::OpenOptions;
use bootproof_rig::probe::FlashPhase;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::{Cli, open_rig};

/// Parse `0x08000000` or `134217728`.
pub fn parse_addr(s: &str) -> Result<u32, String> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("`{s}` is not an address; write it like 0x08000000"))
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Via {
    /// The ROM bootloader over CAN (FDCAN per AN5405, or bxCAN per AN3154).
    RomCan,
    /// The ROM bootloader over USART (AN3155).
    RomUsart,
    /// The debug probe.
    Probe,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Then {
    /// BOOT0 low + NRST: boot normally.
    Reset,
    /// ROM bootloader Go to the image's start (no reset).
    Go,
    /// Leave the board in the ROM bootloader.
    Stay,
}

#[derive(Debug, Args)]
pub struct FlashArgs {
    /// How to program.
    #[arg(long)]
    pub via: Via,
    /// The image: ELF, Intel HEX, or a raw binary (with --base).
    pub image: PathBuf,
    /// Load address of a raw binary.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub base: Option<u32>,
    /// Erase and write every sector even if its contents already match.
    #[arg(long)]
    pub no_skip: bool,
    /// Do not read the image back.
    #[arg(long)]
    pub no_verify: bool,
    /// What to do afterwards (ROM bootloader flashing).
    #[arg(long, default_value = "reset")]
    pub then: Then,
}

fn bar() -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:40}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

pub async fn flash(cli: &Cli, a: &FlashArgs) -> Result<ExitCode> {
    let image = FirmwareImage::load(&a.image, a.base)?;
    let opts = OpenOptions {
        probe: a.via == Via::Probe,
        can: a.via == Via::RomCan,
        console: a.via == Via::RomUsart,
        ..OpenOptions::default()
    };
    let mut rig = open_rig(cli, opts).await?;
    let p = rig.board().clone();
    image.check_within(p.flash.base, p.flash.end(), &format!("{} user flash", p.name))?;
    println!("{}: {} bytes in {} segment(s) at {:#010x}", image.name, image.len(), image.segments.len(), image.start());
    let pb = bar();
    if a.via == Via::Probe {
        let mut progress = |e: bootproof_rig::probe::FlashProgress| {
            pb.set_prefix(match e.phase {
                FlashPhase::Erase => "erase",
                FlashPhase::Program => "program",
                FlashPhase::Verify => "verify",
            });
            pb.set_length(e.total.unwrap_or(0));
            pb.set_position(e.done);
        };
        rig.probe()?.flash(&image, &mut progress).await?;
        pb.finish_and_clear();
        println!("flashed through the probe; the core was reset");
        return Ok(ExitCode::SUCCESS);
    }
    let kind = match a.via {
        Via::RomUsart => RomTransportKind::Usart,
        _ => p
            .rom
            .transports
            .iter()
            .map(|t| t.kind())
            .find(|k| *k != RomTransportKind::Usart)
            .with_context(|| format!("{}'s ROM bootloader has no CAN interface; use --via rom-usart", p.name))?,
    };
    let opts = FlashOptions { skip_unchanged: !a.no_skip, verify: !a.no_verify, stop_after_writes: None };
    let mut progress = |e: FlashEvent| match e {
        FlashEvent::Compare { sector } => pb.set_message(format!("comparing sector {sector}")),
        FlashEvent::Skip { sector } => pb.println(format!("sector {sector} already matches: skipped")),
        FlashEvent::Erase { sector, n, of } => {
            pb.set_prefix("erase");
            pb.set_message(format!("sector {sector} ({n}/{of})"));
        }
        FlashEvent::Write { done, total } => {
            pb.set_prefix("write");
            pb.set_message(String::new());
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }
        FlashEvent::Verify { done, total } => {
            pb.set_prefix("verify");
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }
    };
    let report = flash::flash_via_rom(&mut rig, Some(kind), &image, &opts, &mut progress).await?;
    pb.finish_and_clear();
    println!(
        "flashed over the ROM bootloader ({kind}): erased sectors {:?}, skipped {:?}, {} write commands, {} bytes{}",
        report.erased,
        report.skipped,
        report.writes,
        report.bytes,
        if report.verified { ", verified" } else { "" }
    );
    match a.then {
        Then::Stay => println!("the board stays in its ROM bootloader"),
        Then::Go => {
            RomClient::open(&mut rig, Some(kind))?.go(image.start()).await?;
            println!(
                "Go {:#010x}: the application runs (no reset: the reset flags still show how the ROM was entered)",
                image.start()
            );
        }
        Then::Reset => {
            rig.boot0()?.set_boot0(Level::Low).await?;
            rig.reset()?.pulse_reset(None).await?;
            println!("BOOT0 low + NRST: the board boots from flash");
        }
    }
    Ok(ExitCode::SUCCESS)
}
