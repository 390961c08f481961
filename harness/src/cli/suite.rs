//! `bootproof suite`: run the boot scenarios, one line each, and a summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use bootproof::scenarios::{self, Outcome, RunOptions, ScenarioResult, Verdict};
use bootproof_fixtures::BoardProfile;
use bootproof_rig::Permissions;
use bootproof_rig::open::OpenOptions;
use clap::Args;

use super::{Cli, open_twin};

#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// Run only these scenarios (repeatable; default: all of them):
    /// rom-get-id (BOOT0 high + NRST: the ROM bootloader answers Get ID);
    /// seed-loop (ROM, flash over CAN, Go, NRST with BOOT0 still high, BOOT0 low + NRST);
    /// reset-vs-power-on (reset flags after NRST and power-on; RAM retention);
    /// blank-flash (a blank part locks up or latches the empty check; the ROM is reachable);
    /// interrupted-transfer (power cut or NRST after ROM write commands: never bricked);
    /// signed-boot (bootproof's bootloader: signed A/B images, trial, revert, refusals);
    /// uds-update (updates over UDS on CAN FD: trial, confirm, revert, refusals).
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
    /// Write a JUnit XML report: one test case per scenario and board, with its timeline, the
    /// firmware's RTT log and the console output.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a JSON report (the same content, and the counts).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a VCD waveform: BOOT0, NRST and power as wires, CAN frames, stages and events as
    /// strings (open in GTKWave or PulseView).
    #[arg(long, value_name = "FILE")]
    pub vcd: Option<PathBuf>,
}

/// Board events shown after a failure on the twin.
const TWIN_EVENTS: usize = 40;

/// Exit code of a run that could not start: bad arguments or input (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a run in which a scenario failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a run the rig could not carry out: a part the rig config `provides` missing
/// or broken, the rig lock or config unusable, bootproof's firmware not buildable. Like LAVA's
/// infrastructure errors: not a verdict on the board. Wins over [`EXIT_FAILED`], because the
/// other results of a broken rig cannot be trusted either.
pub const EXIT_INFRASTRUCTURE: u8 = 3;
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

fn line(r: &ScenarioResult, title: &str) -> String {
    let secs = format!("{:>8.2} s", r.elapsed.as_secs_f64());
    match (&r.outcome, r.verdict) {
        (Ok(Outcome::Pass), _) => format!("PASS  {:<12} {:<22} {secs}  {title}", r.board, r.id),
        (Ok(Outcome::Skip(why)), _) => format!("SKIP  {:<12} {:<22} {:>10}  {why}", r.board, r.id, "-"),
        (Err(e), Verdict::Infrastructure) => format!("INFRA {:<12} {:<22} {secs}  {e}", r.board, r.id),
        (Err(e), _) => format!("FAIL  {:<12} {:<22} {secs}  {e}", r.board, r.id),
    }
}

/// A result for a scenario that could not run because the rig is broken.
fn infrastructure(s: &scenarios::Scenario, rig: &str, board: &str, why: String) -> ScenarioResult {
    let now = bootproof_rig::time::Instant::now();
    ScenarioResult {
        id: s.id,
        board: board.to_string(),
        rig: rig.to_string(),
        outcome: Err(scenarios::ScenarioError::Infrastructure(why)),
        verdict: Verdict::Infrastructure,
        timeline: String::new(),
        timed: Vec::new(),
        elapsed: std::time::Duration::ZERO,
        rtt: Vec::new(),
        rtt_note: Some("not run".into()),
        console: String::new(),
        records: Vec::new(),
        start: now,
        initial_lines: [
            (bootproof_rig::record::Signal::Boot0, None),
            (bootproof_rig::record::Signal::Nrst, None),
            (bootproof_rig::record::Signal::Power, None),
        ],
    }
}

pub async fn suite(cli: &Cli, a: &SuiteArgs) -> Result<ExitCode> {
    let list = selected(a)?;
    // Refuse unwritable report paths before the run, not after an hour on the rig.
    for (flag, path) in [("--junit", &a.junit), ("--json", &a.json), ("--vcd", &a.vcd)] {
        if let Some(p) = path {
            std::fs::write(p, b"").with_context(|| {
                format!("{flag} {}: cannot write there; give a path in a writable directory", p.display())
            })?;
        }
    }
    let wall = Instant::now();
    let run_start = bootproof_rig::time::Instant::now();
    let mut results = Vec::new();
    let app_image = match &a.app_image {
        Some(p) => Some(bootproof_rig::image::FirmwareImage::load(p, Some(a.base))?),
        None => None,
    };
    if !cli.rig.is_empty() {
        for path in &cli.rig {
            let opts = OpenOptions {
                lock_timeout: cli.lock_timeout_s.map(std::time::Duration::from_secs),
                ..OpenOptions::default()
            };
            let (mut rig, checks) = match bootproof::target::open_rig(path, &opts).await {
                Ok(r) => r,
                Err(e) => {
                    // A rig that cannot be opened (config, lock) proves nothing: infrastructure.
                    let why = format!("rig {}: {e}", path.display());
                    println!("INFRA {why}");
                    for s in &list {
                        results.push(infrastructure(s, &path.display().to_string(), "-", why.clone()));
                    }
                    continue;
                }
            };
            println!("bootproof suite: {} scenario(s) on rig {} ({})", list.len(), rig.name(), rig.board().name);
            // A part the rig claims (`provides`) that did not open is a broken rig, not a skip.
            let mut broken: Vec<String> = rig
                .missing_parts()
                .into_iter()
                .filter(|m| rig.provides(m.capability))
                .map(|m| format!("`{}` is in `provides` but {m}", m.capability.section()))
                .collect();
            // A CAN interface at rates the ROM bootloader does not use is as broken as a missing one.
            broken.extend(
                checks
                    .iter()
                    .filter(|c| !c.ok && c.part == bootproof::target::CAN_RATES_PART)
                    .map(|c| c.detail.clone()),
            );
            for c in checks.iter().filter(|c| !c.ok) {
                println!("      {c}");
            }
            if !broken.is_empty() {
                let why = format!("rig {}: {}", rig.name(), broken.join("; "));
                println!("INFRA {why}; no scenario run on it (`bootproof rig check` lists every part)");
                let (name, board) = (rig.name().to_string(), rig.board().name.clone());
                for s in &list {
                    results.push(infrastructure(s, &name, &board, why.clone()));
                }
                continue;
            }
            let mut permissions = Permissions::none();
            if a.allow_mass_erase {
                permissions = permissions.allow_mass_erase();
            }
            let opts = RunOptions { permissions, exhaustive: a.exhaustive, app_image: app_image.clone() };
            for s in &list {
                let r = scenarios::run(s, &mut rig, opts.clone()).await;
                report(&r, s.title, a.timeline);
                results.push(r);
            }
        }
    } else {
        let boards: Vec<String> = match cli.twin.as_slice() {
            [] => BoardProfile::builtin_names().into_iter().map(String::from).collect(),
            [one] if one == "all" => BoardProfile::builtin_names().into_iter().map(String::from).collect(),
            many => many.to_vec(),
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
    let count = |v: Verdict, of: &[&ScenarioResult]| of.iter().filter(|r| r.verdict == v).count();
    let all: Vec<&ScenarioResult> = results.iter().collect();
    let (passed, skipped, failed, infra) = (
        count(Verdict::Pass, &all),
        count(Verdict::Skip, &all),
        count(Verdict::Fail, &all),
        count(Verdict::Infrastructure, &all),
    );
    // A summary per rig and board when the run had more than one.
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in &results {
        let k = (r.rig.clone(), r.board.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    if keys.len() > 1 {
        for (rig, board) in &keys {
            let of: Vec<&ScenarioResult> = results.iter().filter(|r| &r.rig == rig && &r.board == board).collect();
            println!(
                "  {board:<12} {rig:<28} {} passed, {} skipped, {} failed, {} infrastructure",
                count(Verdict::Pass, &of),
                count(Verdict::Skip, &of),
                count(Verdict::Fail, &of),
                count(Verdict::Infrastructure, &of)
            );
        }
    }
    let simulated: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let infra_text = if infra > 0 { format!(", {infra} infrastructure") } else { String::new() };
    println!(
        "summary: {passed} passed, {skipped} skipped, {failed} failed{infra_text}; {simulated:.1} s of board time in {:.1} s of wall time",
        wall.elapsed().as_secs_f64()
    );
    write_reports(a, &results, run_start, wall.elapsed())?;
    if infra > 0 {
        println!("INFRASTRUCTURE: {infra} scenario run(s) could not be judged: the rig is broken (see INFRA lines)");
        return Ok(ExitCode::from(EXIT_INFRASTRUCTURE));
    }
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

fn write_reports(
    a: &SuiteArgs,
    results: &[ScenarioResult],
    start: bootproof_rig::time::Instant,
    wall: std::time::Duration,
) -> Result<()> {
    use bootproof::report;
    if let Some(p) = &a.junit {
        report::write_file("JUnit", p, report::junit(results)?.as_bytes())?;
        println!("JUnit report: {}", p.display());
    }
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&report::json(results, wall))?;
        report::write_file("JSON", p, text.as_bytes())?;
        println!("JSON report: {}", p.display());
    }
    if let Some(p) = &a.vcd {
        let mut out = Vec::new();
        report::vcd(results, start, &mut out)?;
        report::write_file("VCD", p, &out)?;
        println!("VCD waveform: {}", p.display());
    }
    Ok(())
}

fn report(r: &ScenarioResult, title: &str, timeline: bool) {
    println!("{}", line(r, title));
    if timeline || r.outcome.is_err() {
        for (at, e) in &r.timed {
            println!("        {:>10.6} s  {e}", at.as_secs_f64());
        }
    }
}
