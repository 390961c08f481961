//! `bootproof update --via uds IMAGE` and `bootproof uds read`: bootproof's bootloader over
//! UDS on CAN FD.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use boot_core::layout::{H723, SlotId};
use bootproof::uds::{UdsClient, UdsError};
use bootproof::update::{self, Progress};
use bootproof_rig::beacon::{CanListener, Stage, describe, flags};
use bootproof_rig::open::OpenOptions;
use bootproof_rig::{CanEvent, Rig};
use bootproof_uds::uds::{self, SlotState};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::Cli;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpdateVia {
    /// UDS (ISO 14229) on ISO-TP (ISO 15765-2) over CAN FD, to bootproof's bootloader.
    Uds,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// How to update.
    #[arg(long)]
    pub via: UpdateVia,
    /// The signed image (`bootproof image sign` output, for the slot the board does not run).
    pub image: PathBuf,
    /// A trusted public key (PEM): the image's signature is checked before anything is sent.
    /// Repeat for several. Without it only the bootloader checks.
    #[arg(long = "key", value_name = "PEM")]
    pub keys: Vec<PathBuf>,
    /// How long to wait for the new image's beacon after the reset, in ms.
    #[arg(long, default_value_t = 5000)]
    pub beacon_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum UdsCommand {
    /// Read the bootloader's data identifiers: its version, the session, both slots, the stored
    /// security counter and the download under way.
    Read {
        /// First ask an application for update mode (programming session: it resets into the
        /// bootloader).
        #[arg(long)]
        enter: bool,
    },
}

fn layout_for(rig: &Rig) -> Result<boot_core::layout::Layout> {
    bootproof_twin::bootloader::layout_for(rig.board()).with_context(|| {
        format!("bootproof's bootloader is laid out for the STM32H723; {} has another flash layout", rig.board().name)
    })
}

pub async fn update(cli: &Cli, a: &UpdateArgs) -> Result<ExitCode> {
    let bytes = std::fs::read(&a.image).with_context(|| format!("reading {}", a.image.display()))?;
    let mut keys = Vec::new();
    for k in &a.keys {
        keys.push(fut_image::keys::load_public(k).with_context(|| format!("trusted key {}", k.display()))?);
    }
    let name = a.image.display().to_string();
    let plan = update::plan(&name, bytes, &H723, &keys)?;
    println!(
        "{name}: v{} for slot {}, security counter {}, {} bytes{}",
        plan.version,
        plan.slot,
        plan.security_counter,
        plan.image.len(),
        if keys.is_empty() { " (signature not checked here: pass --key)" } else { ", signature good" }
    );
    let mut rig = super::open_rig(cli, OpenOptions { can: true, ..OpenOptions::default() }).await?;
    layout_for(&rig)?;
    let pb = ProgressBar::new(plan.image.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:40}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut progress = |p: Progress| match p {
        Progress::Entering => pb.set_prefix("entering"),
        Progress::Erasing(s) => {
            pb.set_prefix("erasing");
            pb.set_message(format!("slot {s}"));
        }
        Progress::Resuming(at) => pb.println(format!("resuming the interrupted download at byte {at}")),
        Progress::Transfer(done, _) => {
            pb.set_prefix("sending");
            pb.set_message(String::new());
            pb.set_position(done as u64);
        }
        Progress::Checking => pb.set_prefix("checking"),
        Progress::Resetting => pb.set_prefix("resetting"),
        Progress::Retrying(why) => {
            pb.println(format!("the bus failed under the update ({why}); going on where it stands"))
        }
    };
    let can = rig.can()?;
    let report = update::update(can, &H723, &plan, &mut progress).await;
    pb.finish_and_clear();
    let report = report?;
    let payload = (report.sent as f64) / report.on_wire.as_secs_f64().max(1e-9) / 1024.0;
    println!(
        "slot {} written and committed: {} bytes sent{} in {:.2} s on the wire ({payload:.1} KiB/s); the transfer with the slot's erases {:.2} s, {:.2} s in all; the board resets into the trial",
        report.slot,
        report.sent,
        match (report.resumed_at, report.resent) {
            (0, 0) => String::new(),
            (0, n) => format!(" (went on after {n} failed receptions)"),
            (at, 0) => format!(" (resumed at byte {at})"),
            (at, n) => format!(" (resumed at byte {at}, went on after {n} failed receptions)"),
        },
        report.on_wire.as_secs_f64(),
        report.transfer.as_secs_f64(),
        report.total.as_secs_f64(),
    );
    // What booted: the new image's beacon (trial, and whether it confirmed itself).
    let mut listener = CanListener::new();
    let deadline = bootproof_rig::time::Instant::now() + Duration::from_millis(a.beacon_ms);
    let can = rig.can()?;
    while bootproof_rig::time::Instant::now() < deadline {
        let left = deadline.saturating_duration_since(bootproof_rig::time::Instant::now());
        let Ok(CanEvent::Frame(f)) = can.recv(left).await else { continue };
        let Some(b) = listener.feed(&f) else { continue };
        let b = b.map_err(|e| anyhow::anyhow!("a beacon that does not decode: {e}"))?;
        let fl = rig.board().reset.decode(b.reset_flags);
        println!("booted: {}", describe(&b, &fl));
        let ok = b.stage == Stage::Application && b.version.major == plan.version.major;
        if !ok {
            println!("the new image did not boot: the bootloader kept the old one (see its RTT log for why)");
            return Ok(ExitCode::FAILURE);
        }
        if b.flags & flags::CONFIRMED != 0 || b.flags & flags::TRIAL == 0 {
            println!("the new image confirmed itself: it stays");
            return Ok(ExitCode::SUCCESS);
        }
        println!("the new image runs on trial and did not confirm itself: the next reset reverts to the old one");
        return Ok(ExitCode::FAILURE);
    }
    bail!(
        "no beacon within {} ms after the reset: the board did not announce what booted (does the image send the bootproof beacon on CAN?)",
        a.beacon_ms
    )
}

fn slot_line(slot: SlotId, rec: &[u8]) -> String {
    let state = SlotState::from_u8(rec[0]).map(SlotState::name).unwrap_or("unknown state");
    match SlotState::from_u8(rec[0]) {
        Some(SlotState::Committed) | Some(SlotState::Confirmed) => format!(
            "slot {slot}: {state}, v{}.{}.{}+{}, security counter {}",
            rec[1],
            rec[2],
            u16::from_le_bytes([rec[3], rec[4]]),
            u32::from_le_bytes([rec[5], rec[6], rec[7], rec[8]]),
            u32::from_le_bytes([rec[9], rec[10], rec[11], rec[12]])
        ),
        _ => format!("slot {slot}: {state}"),
    }
}

pub async fn uds(cli: &Cli, c: &UdsCommand) -> Result<ExitCode> {
    let UdsCommand::Read { enter } = c;
    let mut rig = super::open_rig(cli, OpenOptions { can: true, ..OpenOptions::default() }).await?;
    layout_for(&rig)?;
    let mut client = UdsClient::new(rig.can()?);
    if *enter {
        update::enter(&mut client).await?;
    }
    let v = match update::reach(&mut client).await? {
        Ok(v) => v,
        Err(UdsError::Negative { nrc: 0x11, .. }) => bail!(
            "the board runs an application, which does not serve these identifiers: pass --enter to ask it for the bootloader's update mode"
        ),
        Err(e) => return Err(e.into()),
    };
    println!("bootloader: {}.{}.{}", v.first().unwrap_or(&0), v.get(1).unwrap_or(&0), v.get(2).unwrap_or(&0));
    let s = client.read_did(uds::DID_ACTIVE_SESSION).await?;
    println!(
        "session: {}",
        match s.first() {
            Some(&uds::session::DEFAULT) => "default",
            Some(&uds::session::PROGRAMMING) => "programming",
            _ => "unknown",
        }
    );
    let slots = client.read_did(uds::DID_SLOTS).await?;
    if slots.len() >= 28 {
        println!("{}", slot_line(SlotId::A, &slots[..14]));
        println!("{}", slot_line(SlotId::B, &slots[14..28]));
    }
    let c = client.read_did(uds::DID_SECURITY_COUNTER).await?;
    if c.len() >= 4 {
        println!("stored security counter: {}", u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let (target, received, size) = update::progress(&mut client).await?;
    if size > 0 {
        println!("download into slot {target}: {received} of {size} bytes");
    } else {
        println!("an update would go to slot {target}; no download under way");
    }
    Ok(ExitCode::SUCCESS)
}
