//! `bootproof suite`: run the boot scenarios, one line each, and a summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use bootproof::scenarios::{self, Outcome, RunOptions, ScenarioResult};
use bootproof_fixtures::BoardProfile;
use bootproof_rig::Permissions;
use bootproof_rig::open::OpenOptions;
use clap::Args;

use super::{Cli, open_rig, open_twin};

#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// Run only these scenarios (repeatable): rom-get-id, seed-loop, reset-vs-power-on,
    /// blank-flash, interrupted-transfer, signed-boot, uds-update.
    #[arg(long = "scenario", value_name = "ID")]
    pub scenarios: Vec<String>,
    /// Allow the blank-flash scenario to mass-erase a physical board (always allowed on the twin).
    #[arg(long)]
    pub allow_mass_erase: bool,
    /// Application to flash instead of bootproof's firmware (ELF, HEX or BIN). It must send
    /// the bootproof beacon. On the twin it runs on the emulated core (the
    /// H7 with register models of its peripherals, other families with RCC's reset register).
    #[arg(long, value_name = "FILE")]
    pub app_image: Option<PathBuf>,
    /// Load address for a raw binary --app-image.
    #[arg(long, value_name = "ADDR", value_parser = super::flash::parse_addr, default_value = "0x08000000")]
    pub base: u32,
    /// Cut after every write command (slow: the real application is some 380 of them;
    /// default: the first, the middle and the last).
    #[arg(long)]
    pub exhaustive: bool,
    /// Print each scenario's timeline.
    #[arg(long)]
    pub timeline: bool,
    /// Every selected scenario must pass on every board: a skip fails the run (exit 4). For
    /// CI on a rig, where a skip means the rig proved less than it should.
    #[arg(long)]
    pub require_all: bool,
    /// At least N scenario runs must pass (exit 4 otherwise).
    #[arg(long, value_name = "N")]
    pub min_pass: Option<usize>,
}

/// Board events shown after a failure on the twin.
const TWIN_EVENTS: usize = 40;

/// Exit code of a run in which a scenario failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a run that proved less than it was asked to: nothing passed, a skip under
/// `--require-all`, or fewer passes than `--min-pass`.
pub const EXIT_PROVED_TOO_LITTLE: u8 = 4;

fn selected(a: &SuiteArgs) -> Result<Vec<&'static scenarios::Scenario>> {
    if a.scenarios.is_empty() {
        return Ok(scenarios::ALL.iter().collect());
    }
    a.scenarios
        .iter()
        .map(|id| {
            scenarios::find(id).ok_or_else(|| {
                let known: Vec<&str> = scenarios::ALL.iter().map(|s| s.id).collect();
                anyhow::anyhow!("unknown scenario `{id}`; known: {}", known.join(", "))
            })
        })
        .collect()
}

fn line(r: &ScenarioResult, title: &str) -> (char, String) {
    let secs = format!("{:>8.2} s", r.elapsed.as_secs_f64());
    match &r.outcome {
        Ok(Outcome::Pass) => ('P', format!("PASS  {:<12} {:<22} {secs}  {title}", r.board, r.id)),
        Ok(Outcome::Skip(why)) => ('S', format!("SKIP  {:<12} {:<22} {:>10}  {why}", r.board, r.id, "-")),
        Err(e) => ('F', format!("FAIL  {:<12} {:<22} {secs}  {e}", r.board, r.id)),
    }
}

pub async fn suite(cli: &Cli, a: &SuiteArgs) -> Result<ExitCode> {
    let list = selected(a)?;
    let wall = Instant::now();
    let mut results = Vec::new();
    let app_image = match &a.app_image {
        Some(p) => Some(bootproof_rig::image::FirmwareImage::load(p, Some(a.base))?),
        None => None,
    };
    if cli.rig.is_some() {
        let mut rig = open_rig(cli, OpenOptions::default()).await?;
        let mut permissions = Permissions::none();
        if a.allow_mass_erase {
            permissions = permissions.allow_mass_erase();
        }
        let opts = RunOptions { permissions, exhaustive: a.exhaustive, app_image };
        println!("bootproof suite: {} scenario(s) on rig {} ({})", list.len(), rig.name(), rig.board().name);
        for s in &list {
            let r = scenarios::run(s, &mut rig, opts.clone()).await;
            report(&r, s.title, a.timeline);
            results.push(r);
        }
    } else {
        let boards: Vec<String> = match cli.twin.as_deref() {
            None | Some("all") => BoardProfile::builtin_names().into_iter().map(String::from).collect(),
            Some(b) => vec![b.to_string()],
        };
        println!(
            "bootproof suite: {} scenario(s) on {} twin(s) ({}), virtual time",
            list.len(),
            boards.len(),
            boards.join(", ")
        );
        for board in &boards {
            for s in &list {
                // A fresh, blank twin per scenario.
                let twin = open_twin(cli, board)?;
                let mut rig = twin.rig();
                rig.restore_safe_state();
                let opts = RunOptions { app_image: app_image.clone(), exhaustive: a.exhaustive, ..RunOptions::twin() };
                let r = scenarios::run(s, &mut rig, opts).await;
                report(&r, s.title, a.timeline);
                if r.outcome.is_err() {
                    // What the board did, from the twin's side: the last events before the failure.
                    let events = twin.board().events();
                    println!("        the twin's last {} events:", events.len().min(TWIN_EVENTS));
                    for e in &events[events.len().saturating_sub(TWIN_EVENTS)..] {
                        println!("        {:>10.6} s  {}", e.at.as_secs_f64(), e.what);
                    }
                }
                results.push(r);
            }
        }
    }
    let count = |c| results.iter().filter(|r| line(r, "").0 == c).count();
    let (passed, skipped, failed) = (count('P'), count('S'), count('F'));
    let simulated: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    println!(
        "summary: {passed} passed, {skipped} skipped, {failed} failed; {simulated:.1} s of board time in {:.1} s of wall time",
        wall.elapsed().as_secs_f64()
    );
    if failed > 0 {
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let mut short = Vec::new();
    if passed == 0 {
        short.push("nothing was proved: no scenario passed".to_string());
    }
    if a.require_all && skipped > 0 {
        short.push(format!("--require-all: {skipped} scenario run(s) skipped (see SKIP lines for what each needs)"));
    }
    if let Some(n) = a.min_pass
        && passed < n
    {
        short.push(format!("--min-pass {n}: only {passed} passed"));
    }
    if !short.is_empty() {
        println!("NOT PROVED: {}", short.join("; "));
        return Ok(ExitCode::from(EXIT_PROVED_TOO_LITTLE));
    }
    Ok(ExitCode::SUCCESS)
}

fn report(r: &ScenarioResult, title: &str, timeline: bool) {
    println!("{}", line(r, title).1);
    if timeline || r.outcome.is_err() {
        for (at, e) in &r.timed {
            println!("        {:>10.6} s  {e}", at.as_secs_f64());
        }
    }
}
