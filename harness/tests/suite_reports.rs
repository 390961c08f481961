//! `bootproof suite`'s reports (JUnit, JSON, VCD) and its infrastructure exit code, through
//! the binary as CI runs it.

use std::process::{Command, Output};

fn bootproof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootproof"))
        .args(args)
        .env_remove("BOOTPROOF_RIG")
        .env_remove("BOOTPROOF_INJECT")
        .output()
        .expect("bootproof runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every value change of the wire `name` in `vcd`: (time in µs, level).
fn wire_changes(vcd: &str, name: &str) -> Vec<(u64, char)> {
    let mut parser = vcd::Parser::new(vcd.as_bytes());
    let header = parser.parse_header().expect("a VCD header");
    let first_scope = |items: &[vcd::ScopeItem]| {
        items
            .iter()
            .find_map(|i| match i {
                vcd::ScopeItem::Scope(s) => Some(s.clone()),
                _ => None,
            })
            .expect("a scope")
    };
    // bootproof > one scope per rig and board.
    let board = first_scope(&first_scope(&header.items).items);
    let id = board.find_var(name).unwrap_or_else(|| panic!("no wire {name}")).code;
    let mut t = 0;
    let mut out = Vec::new();
    for cmd in parser {
        match cmd.expect("a valid VCD command") {
            vcd::Command::Timestamp(ts) => t = ts,
            vcd::Command::ChangeScalar(i, v) if i == id => out.push((t, v.to_string().chars().next().unwrap())),
            _ => {}
        }
    }
    out
}

#[test]
fn a_passing_run_writes_junit_json_and_a_vcd_with_the_lines_as_driven() {
    let dir = tempfile::tempdir().unwrap();
    let (junit, json, vcd) = (dir.path().join("j.xml"), dir.path().join("r.json"), dir.path().join("r.vcd"));
    let o = bootproof(&[
        "suite",
        "--twin",
        "stm32f446re",
        "--twin",
        "stm32h723zg",
        "--scenario",
        "rom-get-id",
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--vcd",
        vcd.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    // Two boards: a summary line each.
    assert!(
        out.contains("  stm32f446re  twin:stm32f446re") && out.contains("  stm32h723zg  twin:stm32h723zg"),
        "{out}"
    );

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase name=\"rom-get-id\"").count(), 2, "{xml}");
    assert!(xml.contains("tests=\"2\" skipped=\"0\" failures=\"0\" errors=\"0\""), "{xml}");
    assert!(xml.contains("t=0: BOOT0 low, NRST released, power on"), "the timeline starts with the lines: {xml}");
    assert!(xml.contains("NRST pulse (held 20 ms)"), "hold times: {xml}");

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["summary"]["passed"], 2, "{report}");
    assert!(report["runs"][0]["can_frames"].as_u64().unwrap() > 0, "{report}");

    // The VCD: BOOT0 goes high before NRST is pulled low, NRST is low for the pulse's hold,
    // and BOOT0 is low again after the release (the ROM entry of rom-get-id).
    let vcd = std::fs::read_to_string(&vcd).unwrap();
    let boot0 = wire_changes(&vcd, "BOOT0");
    let nrst = wire_changes(&vcd, "NRST");
    let high = boot0.iter().find(|(_, v)| *v == '1').expect("BOOT0 driven high").0;
    let low = nrst.iter().find(|(t, v)| *v == '0' && *t >= high).expect("NRST pulled low").0;
    let released = nrst.iter().find(|(t, v)| *v == '1' && *t > low).expect("NRST released").0;
    assert_eq!(released - low, 20_000, "the twin's 20 ms reset hold, in µs: {nrst:?}");
    assert!(boot0.iter().any(|(t, v)| *v == '0' && *t >= released), "BOOT0 returned low: {boot0:?}");
    assert!(vcd.contains("$var string 1 ") && vcd.contains("stage"), "stages as string events");
    assert!(vcd.contains("##1"), "CAN FD frames with BRS in candump form");
}

#[test]
fn a_missing_part_the_rig_provides_is_an_infrastructure_failure_not_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    // The dry-run rig, claiming a probe it cannot open (this build has no `hw` backends, and
    // on a Pi the probe would be unplugged): exit 3, every scenario an infrastructure error.
    let config = include_str!("../../fixtures/rigs/dry-run.toml").replace(
        "provides = [\"boot0\", \"nrst\", \"power\"]",
        "provides = [\"boot0\", \"nrst\", \"power\", \"probe\"]",
    );
    let config = config.replace("name = \"dry-run\"", "name = \"dry-run-probe\"");
    let cfg = format!("{config}\n[probe]\nselector = \"0483:3754\"\nchip = \"STM32H723ZGTx\"\n");
    let path = dir.path().join("rig.toml");
    std::fs::write(&path, cfg).unwrap();
    let junit = dir.path().join("j.xml");
    let o = bootproof(&[
        "suite",
        "--rig",
        path.to_str().unwrap(),
        "--scenario",
        "rom-get-id",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("INFRA") && out.contains("`probe` is in `provides`"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("type=\"infrastructure\""), "{xml}");
    // The lines were still put in their safe state.
    let lines = dir.path().join("dry-run.lines");
    let read = |name| bootproof_rig::lines::FileLines::read(&lines, name);
    assert_eq!((read("boot0").as_deref(), read("nrst").as_deref()), (Some("low"), Some("released")));

    // The same rig without the claim: the scenarios that need a probe or CAN skip, nothing
    // passes, exit 4 (proved too little), not 3.
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, include_str!("../../fixtures/rigs/dry-run.toml")).unwrap();
    let o = bootproof(&["suite", "--rig", plain.to_str().unwrap(), "--scenario", "rom-get-id"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("SKIP"), "{out}");

    // Both rigs in one run: a summary per rig, and the broken one decides the exit code.
    let o = bootproof(&[
        "suite",
        "--rig",
        plain.to_str().unwrap(),
        "--rig",
        path.to_str().unwrap(),
        "--scenario",
        "rom-get-id",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("dry-run  ") && out.contains("dry-run-probe"), "a line per rig: {out}");
}

#[test]
fn a_report_path_that_cannot_be_written_is_refused_before_the_run() {
    let o =
        bootproof(&["suite", "--twin", "stm32h723zg", "--scenario", "rom-get-id", "--junit", "/nonexistent/dir/j.xml"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "a run that could not start is not a scenario failure: {out}");
    assert!(out.contains("--junit /nonexistent/dir/j.xml: cannot write there"), "{out}");
    assert!(!out.contains("PASS"), "nothing ran: {out}");
}
