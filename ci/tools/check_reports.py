#!/usr/bin/env python3
"""The suite's reports, read by the tools README names: GTKWave (vcd2fst/fst2vcd) and sigrok
(sigrok-cli, the library PulseView uses) for the VCD; Python's XML parser for the JUnit file
(the schema CI systems read); json for the JSON report.

Usage: check_reports.py path/to/bootproof
Exits non-zero, naming the check, when a report does not read as documented.
"""

import csv
import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path


def fail(what: str) -> None:
    print(f"FAIL {what}")
    sys.exit(1)


def main() -> None:
    exe = sys.argv[1]
    tmp = Path(tempfile.mkdtemp(prefix="bootproof-reports-"))
    junit, js, vcd = tmp / "junit.xml", tmp / "report.json", tmp / "run.vcd"
    run = subprocess.run(
        [exe, "suite", "--twin", "stm32h723zg", "--scenario", "rom-get-id", "--scenario", "seed-loop",
         "--junit", str(junit), "--json", str(js), "--vcd", str(vcd)],
        capture_output=True, text=True, timeout=600)
    print(run.stdout, end="")
    if run.returncode != 0:
        fail(f"bootproof suite exited {run.returncode}: {run.stderr}")

    # JUnit: one test case per scenario, each with its timeline, RTT log and console.
    root = ET.parse(junit).getroot()
    cases = root.findall("./testsuite/testcase")
    names = sorted(c.get("name") for c in cases)
    if names != ["rom-get-id", "seed-loop"]:
        fail(f"JUnit test cases {names}")
    seed = next(c for c in cases if c.get("name") == "seed-loop")
    out = seed.findtext("system-out") or ""
    for needle in ["t=0: BOOT0 low, NRST released, power on", "trap: BOOT0 was still high",
                   "RTT log (defmt):", "INFO bootproof app", "console (8N1):", "BEACON "]:
        if needle not in out:
            fail(f"JUnit system-out of seed-loop lacks {needle!r}")
    print("PASS JUnit: 2 test cases; seed-loop carries its timeline, RTT log and console")

    report = json.loads(js.read_text())
    if report["summary"]["passed"] != 2:
        fail(f"JSON summary {report['summary']}")
    print("PASS JSON: summary and runs")

    # GTKWave: vcd2fst converts it, fst2vcd shows the wires and the string events.
    fst = tmp / "run.fst"
    subprocess.run(["vcd2fst", str(vcd), str(fst)], check=True, capture_output=True)
    back = subprocess.run(["fst2vcd", str(fst)], check=True, capture_output=True, text=True).stdout
    for needle in ["$var wire 1", " BOOT0 $end", " NRST $end", " power $end", "$var string", " stage $end",
                   "sstage:_ROM_bootloader"]:
        if needle not in back:
            fail(f"GTKWave's fst2vcd output lacks {needle!r}")
    print("PASS GTKWave: vcd2fst/fst2vcd read the wires and the stage strings")

    # sigrok (PulseView's library): the four wires as logic channels, BOOT0 both ways.
    sr = subprocess.run(["sigrok-cli", "-I", "vcd:downsample=100", "-i", str(vcd), "-O", "csv"],
                        check=True, capture_output=True, text=True).stdout
    header = [l for l in sr.splitlines() if l.startswith("; Channels")]
    if not header or "BOOT0, NRST, power, can_frame" not in header[0]:
        fail(f"sigrok channels: {header}")
    rows = [r for r in csv.reader(l for l in sr.splitlines() if l and l[0] in "01")]
    boot0 = {r[0] for r in rows}
    nrst = {r[1] for r in rows}
    if boot0 != {"0", "1"} or nrst != {"0", "1"}:
        fail(f"sigrok: BOOT0 levels {boot0}, NRST levels {nrst}; both must be seen high and low")
    print(f"PASS sigrok: {header[0][2:]}; {len(rows)} samples, BOOT0 and NRST both ways")


if __name__ == "__main__":
    main()
