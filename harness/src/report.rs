//! Reports of a suite run for people and CI: JUnit XML, JSON and a VCD waveform.
//!
//! - **JUnit** (`--junit`): one `<testsuite>` per rig and board, one `<testcase>` per scenario.
//!   A failed check is a `<failure>`, a broken rig an `<error type="infrastructure">`, a skip
//!   `<skipped>` with its reason. Each case's `system-out` holds the timeline with times, the
//!   firmware's RTT log and the console output. Times are board time (virtual on the twin).
//! - **JSON** (`--json`): the same, plus per-verdict counts, for scripts.
//! - **VCD** (`--vcd`): BOOT0, NRST and power as wires (the pin levels: NRST low while held),
//!   one scope per rig and board, on one time axis in microseconds; CAN frames, stages,
//!   timeline events and the running scenario as string events (GTKWave shows them; PulseView
//!   shows the wires and the `can_frame` wire, which toggles on every frame).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use bootproof_rig::record::Event;
use bootproof_rig::time::Instant;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::scenarios::{Outcome, ScenarioResult, Verdict, describe_lines};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Writing the file failed.
    #[error("cannot write the {what} report {path}: {source}; check the directory exists and is writable")]
    Io {
        /// Which report.
        what: &'static str,
        /// Where.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The JUnit serializer failed.
    #[error("cannot serialize the JUnit report: {0}")]
    Junit(String),
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Skip => "skip",
        Verdict::Fail => "fail",
        Verdict::Infrastructure => "infrastructure",
    }
}

/// What the result says in one line: the skip reason or the failure.
fn message(r: &ScenarioResult) -> String {
    match &r.outcome {
        Ok(Outcome::Pass) => String::new(),
        Ok(Outcome::Skip(why)) => why.clone(),
        Err(e) => e.to_string(),
    }
}

/// The case's text: timeline with times, RTT log, console.
pub fn case_text(r: &ScenarioResult) -> String {
    let mut out = String::from("timeline (board time):\n");
    for (at, e) in &r.timed {
        out.push_str(&format!("{:>12.6} s  {e}\n", at.as_secs_f64()));
    }
    out.push_str("\nRTT log (defmt):\n");
    match &r.rtt_note {
        Some(why) if r.rtt.is_empty() => out.push_str(&format!("  (none: {why})\n")),
        _ => r.rtt.iter().for_each(|l| out.push_str(&format!("  {l}\n"))),
    }
    out.push_str("\nconsole (8N1):\n");
    if r.console.is_empty() {
        out.push_str("  (nothing)\n");
    } else {
        r.console.lines().for_each(|l| out.push_str(&format!("  {l}\n")));
    }
    out
}

/// The JUnit XML of a run.
pub fn junit(results: &[ScenarioResult]) -> Result<String, ReportError> {
    let mut report = Report::new("bootproof suite");
    let mut suites: BTreeMap<(String, String), TestSuite> = BTreeMap::new();
    let mut total = Duration::ZERO;
    for r in results {
        let status = match r.verdict {
            Verdict::Pass => TestCaseStatus::success(),
            Verdict::Skip => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(message(r));
                s
            }
            Verdict::Fail => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(message(r)).set_type("scenario failed");
                s
            }
            Verdict::Infrastructure => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(message(r)).set_type("infrastructure");
                s
            }
        };
        let mut case = TestCase::new(r.id, status);
        case.set_classname(format!("{}.{}", r.rig, r.board)).set_time(r.elapsed).set_system_out(case_text(r));
        total += r.elapsed;
        suites
            .entry((r.rig.clone(), r.board.clone()))
            .or_insert_with(|| TestSuite::new(format!("{} ({})", r.board, r.rig)))
            .add_test_case(case);
    }
    report.set_time(total);
    report.add_test_suites(suites.into_values());
    report.to_string().map_err(|e| ReportError::Junit(e.to_string()))
}

/// The JSON report of a run.
pub fn json(results: &[ScenarioResult], wall: Duration) -> serde_json::Value {
    let count = |v| results.iter().filter(|r| r.verdict == v).count();
    let runs: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let frames = r.records.iter().filter(|x| matches!(x.event, Event::CanTx(_) | Event::CanRx(_))).count();
            serde_json::json!({
                "rig": r.rig,
                "board": r.board,
                "scenario": r.id,
                "verdict": verdict_name(r.verdict),
                "message": message(r),
                "board_time_s": r.elapsed.as_secs_f64(),
                "lines_at_start": describe_lines(&r.initial_lines),
                "timeline": r.timed.iter().map(|(at, e)| serde_json::json!({"t_s": at.as_secs_f64(), "event": e})).collect::<Vec<_>>(),
                "rtt": r.rtt,
                "rtt_note": r.rtt_note,
                "console": r.console,
                "can_frames": frames,
            })
        })
        .collect();
    serde_json::json!({
        "tool": "bootproof suite",
        "version": env!("CARGO_PKG_VERSION"),
        "summary": {
            "passed": count(Verdict::Pass),
            "skipped": count(Verdict::Skip),
            "failed": count(Verdict::Fail),
            "infrastructure": count(Verdict::Infrastructure),
            "wall_time_s": wall.as_secs_f64(),
        },
        "runs": runs,
    })
}

/// A string event value for VCD: no whitespace (it would end the token).
fn token(s: &str) -> String {
    s.chars().map(|c| if c.is_whitespace() { '_' } else { c }).collect()
}

fn frame_text(f: &bootproof_rig::CanFrame) -> String {
    let data: String = f.data().iter().map(|b| format!("{b:02X}")).collect();
    // candump's compact form: ID#DATA, CAN FD ID##<flags>DATA (flag 1: bit-rate switch).
    if f.is_fd() { format!("{}##{}{data}", f.id(), u8::from(f.is_brs())) } else { format!("{}#{data}", f.id()) }
}

struct Vars {
    wires: [vcd::IdCode; 3],
    can_frame: vcd::IdCode,
    can_tx: vcd::IdCode,
    can_rx: vcd::IdCode,
    can_error: vcd::IdCode,
    stage: vcd::IdCode,
    event: vcd::IdCode,
    scenario: vcd::IdCode,
}

/// Write the VCD of a run to `out`. Times are microseconds since `start` (board time on the
/// twin); each rig and board is a scope.
pub fn vcd(results: &[ScenarioResult], start: Instant, out: impl Write) -> io::Result<()> {
    let mut w = vcd::Writer::new(out);
    w.timescale(1, vcd::TimescaleUnit::US)?;
    w.comment("bootproof suite: BOOT0, NRST and power as pin levels; CAN frames, stages and events as strings")?;
    let mut scopes: BTreeMap<(String, String), Vars> = BTreeMap::new();
    w.add_module("bootproof")?;
    for r in results {
        let key = (r.rig.clone(), r.board.clone());
        if scopes.contains_key(&key) {
            continue;
        }
        let name = token(&format!("{}_{}", r.rig, r.board).replace([':', '.'], "_"));
        w.add_module(&name)?;
        let wires = [w.add_wire(1, "BOOT0")?, w.add_wire(1, "NRST")?, w.add_wire(1, "power")?];
        let can_frame = w.add_wire(1, "can_frame")?;
        let string = |w: &mut vcd::Writer<_>, n: &str| w.add_var(vcd::VarType::String, 1, n, None);
        let vars = Vars {
            wires,
            can_frame,
            can_tx: string(&mut w, "can_tx")?,
            can_rx: string(&mut w, "can_rx")?,
            can_error: string(&mut w, "can_error")?,
            stage: string(&mut w, "stage")?,
            event: string(&mut w, "event")?,
            scenario: string(&mut w, "scenario")?,
        };
        w.upscope()?;
        scopes.insert(key, vars);
    }
    w.upscope()?;
    w.enddefinitions()?;

    // Every change, in time order.
    enum Change {
        Wire(vcd::IdCode, Option<bool>),
        Text(vcd::IdCode, String),
    }
    let mut changes: Vec<(u64, usize, Change)> = Vec::new();
    let us = |at: Instant| at.saturating_duration_since(start).as_micros() as u64;
    let mut seq = 0usize;
    let mut push = |changes: &mut Vec<(u64, usize, Change)>, t: u64, c: Change| {
        changes.push((t, seq, c));
        seq += 1;
    };
    let mut toggles: BTreeMap<(String, String), bool> = BTreeMap::new();
    for r in results {
        let v = &scopes[&(r.rig.clone(), r.board.clone())];
        let t0 = us(r.start);
        push(&mut changes, t0, Change::Text(v.scenario, token(r.id)));
        for (i, (signal, asserted)) in r.initial_lines.iter().enumerate() {
            push(&mut changes, t0, Change::Wire(v.wires[i], asserted.map(|a| signal.pin_high(a))));
        }
        for rec in &r.records {
            let t = us(rec.at);
            match &rec.event {
                Event::Line { signal, asserted } => {
                    push(&mut changes, t, Change::Wire(v.wires[signal.index()], Some(signal.pin_high(*asserted))));
                }
                Event::CanTx(f) | Event::CanRx(f) => {
                    let var = if matches!(rec.event, Event::CanTx(_)) { v.can_tx } else { v.can_rx };
                    push(&mut changes, t, Change::Text(var, frame_text(f)));
                    let bit = toggles.entry((r.rig.clone(), r.board.clone())).or_default();
                    *bit = !*bit;
                    push(&mut changes, t, Change::Wire(v.can_frame, Some(*bit)));
                }
                Event::CanError(e) => push(&mut changes, t, Change::Text(v.can_error, token(e))),
                Event::ConsoleRx(_) => {}
                Event::Mark { stream, text } => {
                    let var = if *stream == "stage" { v.stage } else { v.event };
                    push(&mut changes, t, Change::Text(var, token(text)));
                }
            }
        }
        push(&mut changes, us(r.start + r.elapsed), Change::Text(v.scenario, format!("{}_done", token(r.id))));
    }
    changes.sort_by_key(|(t, s, _)| (*t, *s));
    let mut now = None;
    w.begin(vcd::SimulationCommand::Dumpvars)?;
    for v in scopes.values() {
        for id in v.wires {
            w.change_scalar(id, vcd::Value::X)?;
        }
        w.change_scalar(v.can_frame, vcd::Value::V0)?;
    }
    w.end()?;
    for (t, _, c) in changes {
        if now != Some(t) {
            w.timestamp(t)?;
            now = Some(t);
        }
        match c {
            Change::Wire(id, level) => w.change_scalar(
                id,
                match level {
                    Some(true) => vcd::Value::V1,
                    Some(false) => vcd::Value::V0,
                    None => vcd::Value::X,
                },
            )?,
            Change::Text(id, s) => w.change_string(id, &s)?,
        }
    }
    w.flush()
}

/// Write `text` to `path`, naming the report in the error.
pub fn write_file(what: &'static str, path: &std::path::Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Io { what, path: path.display().to_string(), source })
}
