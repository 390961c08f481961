#!/usr/bin/env python3
"""The outside tools README's "The twin for other tools" names, run for real against
`bootproof twin serve`. Exits non-zero, naming the check, when any fails.

* python-can's `socketcand` interface on the F446RE twin (bxCAN ROM bootloader, classic CAN):
  Get and Get ID round trips.
* pyserial's `rfc2217://` client on the G071RB twin: 8N1 gets no answer from the ROM
  bootloader (8E1), 8E1 does; DTR held asserted holds NRST low (stm32loader's wiring).
* stm32loader (its own CLI code through ci/tools/stm32loader_url.py) over rfc2217://: reset into
  the ROM through DTR/RTS, mass erase, write, verify a 3 KB binary.
* stm32flash on the pty with `-m 8n1` (the twin applies 8E1): write, verify, read back; and its
  default 8e1 stopping at "Failed to set terminal flags", as README says.
* Your own firmware (`--image`, bootproof's H723 application): after a `reset` on the control
  channel, its boot beacon as a CAN FD frame on the socketcand port (the fdframe extension) and
  as a console line on the raw TCP USART at 8N1.

Usage: check_outside_tools.py [PATH-TO-bootproof]   (default: target/debug/bootproof)
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import can
import serial

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "debug" / "bootproof"
SHIM = ROOT / "ci" / "tools" / "stm32loader_url.py"
APP = ROOT / "firmware-under-test" / "stm32h7" / "target" / "thumbv7em-none-eabihf" / "release" / "app"
failures = []
passed = 0


def check(name, ok, detail=""):
    global passed
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""), flush=True)
    if ok:
        passed += 1
    else:
        failures.append(name)


class Serve:
    """`bootproof twin serve ARGS`, its announced endpoints, and its control channel."""

    def __init__(self, *args):
        self.p = subprocess.Popen(
            [str(BIN), "twin", "serve", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines = {}
        while not any(k.startswith("control on stdin") for k in self.lines):
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit(f"FAIL `bootproof twin serve {' '.join(args)}` exited: {self.p.wait()}")
            key, _, rest = line.partition(": ")
            self.lines[key] = rest.strip()
        time.sleep(0.1)  # the ROM bootloader's start-up, in real time

    def endpoint(self, key):
        return self.lines[key].split()[0]

    def control(self, command):
        self.p.stdin.write(command + "\n")
        self.p.stdin.flush()
        while True:
            line = self.p.stdout.readline()
            if line.startswith(("ok:", "error:")) or not line:
                return line.strip()

    def close(self):
        if self.p.poll() is None:
            self.control("quit")
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def recv_data(bus, timeout=2.0):
    msg = bus.recv(timeout)
    return None if msg is None else (msg.arbitration_id, bytes(msg.data))


def python_can_socketcand():
    serve = Serve("--board", "stm32f446re", "--socketcand", "127.0.0.1:0")
    try:
        host, port = serve.endpoint("socketcand").rsplit(":", 1)
        bus = can.Bus(interface="socketcand", host=host, port=int(port), channel="can0")
        try:
            # AN3154 Get: ID 0x00, no data. ACK, N-1 commands count, version, the commands, ACK.
            bus.send(can.Message(arbitration_id=0x00, data=b"", is_extended_id=False))
            first = recv_data(bus)
            check("python-can: Get is ACKed (0x79) on ID 0x00", first == (0x00, b"\x79"), f"got {first}")
            count = recv_data(bus)
            n = count[1][0] if count else 0
            frames = [recv_data(bus) for _ in range(n + 1 + 1)]  # version, commands, ACK
            ok = count is not None and all(f is not None for f in frames) and frames[-1] == (0x00, b"\x79")
            check("python-can: Get answers version and command list", ok, f"count {count}, then {frames}")
            if ok:
                check("python-can: CAN bootloader version 2.0 (0x20)", frames[0] == (0x00, b"\x20"), f"got {frames[0]}")
            # Get ID: ID 0x02. ACK, the product ID in one frame, ACK.
            bus.send(can.Message(arbitration_id=0x02, data=b"", is_extended_id=False))
            got = [recv_data(bus) for _ in range(3)]
            check(
                "python-can: Get ID answers the F446's product ID 0x0421",
                got == [(0x02, b"\x79"), (0x02, b"\x04\x21"), (0x02, b"\x79")],
                f"got {got}",
            )
        finally:
            bus.shutdown()
    finally:
        serve.close()


def rfc2217_pyserial_and_stm32loader(tmp):
    serve = Serve(
        "--board", "stm32g071rb", "--usart-rfc2217", "127.0.0.1:0", "--dtr", "nrst", "--rts", "boot0"
    )
    try:
        url = serve.endpoint("USART RFC 2217")
        check("RFC 2217: serve announces an rfc2217:// URL", url.startswith("rfc2217://"), url)

        def sync(parity):
            port = serial.serial_for_url(url, baudrate=115200, parity=parity, timeout=0.5)
            try:
                # stm32loader's sequence: BOOT0 high (RTS deasserted), NRST pulsed low (DTR).
                port.rts = False
                port.dtr = True
                time.sleep(0.05)
                held = serve.control("status")
                port.dtr = False
                time.sleep(0.1)
                port.reset_input_buffer()
                port.write(b"\x7f")
                answer = port.read(1)
                pid = b""
                if answer == b"\x79":
                    port.write(b"\x02\xfd")
                    pid = port.read(5)
                return held, answer, pid
            finally:
                port.close()

        held, answer, _ = sync(serial.PARITY_NONE)
        check("RFC 2217: DTR asserted holds NRST low (stm32loader's wiring)", "NRST low" in held, held)
        check("RFC 2217: 8N1 gets no answer from the ROM bootloader (8E1)", answer == b"", f"got {answer!r}")
        _, answer, pid = sync(serial.PARITY_EVEN)
        check("RFC 2217: 8E1 sync is ACKed", answer == b"\x79", f"got {answer!r}")
        check("RFC 2217: Get ID answers the G071's 0x0460", pid == b"\x79\x01\x04\x60\x79", f"got {pid.hex()}")

        blob = tmp / "blob.bin"
        blob.write_bytes(os.urandom(3000))
        run = subprocess.run(
            [sys.executable, str(SHIM), "-p", url, "-f", "G0", "-e", "-w", "-v", str(blob)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        out = run.stdout + run.stderr
        check(
            "stm32loader over rfc2217://: reset into the ROM, erase, write and verify 3000 bytes",
            run.returncode == 0 and "Verification OK" in out and "Chip id: 0x460" in out,
            f"exit {run.returncode}:\n{out}",
        )
    finally:
        serve.close()


def stm32flash_on_the_pty(tmp):
    if shutil.which("stm32flash") is None:
        check("stm32flash installed", False, "apt-get install stm32flash")
        return
    pty = tmp / "ttyTWIN"
    serve = Serve("--board", "stm32g071rb", "--usart-pty", str(pty))
    try:
        blob = tmp / "flash.bin"
        blob.write_bytes(os.urandom(2048))
        base = ["stm32flash", "-b", "115200"]
        run = subprocess.run(base + [str(pty)], capture_output=True, text=True, timeout=30)
        check(
            "stm32flash's default 8e1 on a pty stops at 'Failed to set terminal flags' (README says so)",
            run.returncode != 0 and "Failed to set terminal flags" in run.stdout + run.stderr,
            f"exit {run.returncode}: {run.stdout + run.stderr}",
        )
        run = subprocess.run(
            base + ["-m", "8n1", "-w", str(blob), "-v", "-S", "0x08000000", str(pty)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        out = run.stdout + run.stderr
        check(
            "stm32flash -m 8n1 on the pty: write and verify 2048 bytes",
            run.returncode == 0 and "0x0460" in out and "(100.00%) Done" in out,
            f"exit {run.returncode}:\n{out}",
        )
        back = tmp / "back.bin"
        run = subprocess.run(
            base + ["-m", "8n1", "-r", str(back), "-S", "0x08000000:2048", str(pty)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        check(
            "stm32flash -m 8n1 on the pty: read back what it wrote",
            run.returncode == 0 and back.exists() and back.read_bytes() == blob.read_bytes(),
            f"exit {run.returncode}: {run.stdout + run.stderr}",
        )
        run = subprocess.run(
            [sys.executable, "-m", "stm32loader", "-p", str(pty), "-f", "G0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        out = run.stdout + run.stderr
        check(
            "stm32loader on the pty fails (it drives DTR/RTS; a pty has no modem lines), as README says",
            run.returncode != 0 and "Chip id" not in out,
            f"exit {run.returncode}:\n{out}",
        )
    finally:
        serve.close()


def own_firmware_on_socketcand_and_raw_tcp():
    if not APP.exists():
        check("own firmware: the H723 app is built", False, f"no {APP}: (cd firmware-under-test/stm32h7 && cargo build --release)")
        return
    serve = Serve(
        "--board", "stm32h723zg", "--image", str(APP), "--boot0", "low",
        "--socketcand", "127.0.0.1:0", "--usart-tcp", "127.0.0.1:0", "--usart-parity", "none",
    )
    try:
        host, port = serve.endpoint("socketcand").rsplit(":", 1)
        sc = socket.create_connection((host, int(port)), timeout=5)
        hello = [sc.recv(64)]
        sc.sendall(b"< open can0 >")
        hello.append(sc.recv(64))
        sc.sendall(b"< rawmode >")
        hello.append(sc.recv(64))
        check("socketcand: hi, open, rawmode", hello == [b"< hi >", b"< ok >", b"< ok >"], f"got {hello}")
        pycan = can.Bus(interface="socketcand", host=host, port=int(port), channel="can0")
        uhost, uport = serve.endpoint("USART raw TCP").rsplit(":", 1)
        console = socket.create_connection((uhost, int(uport)), timeout=5)
        reply = serve.control("reset")
        sc.settimeout(0.1)
        console.settimeout(0.1)
        frames, text = b"", b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (b"< fdframe 7A0 05 " in frames and b"stage=app" in text):
            for sock, name in ((sc, "frames"), (console, "text")):
                try:
                    got = sock.recv(4096)
                except socket.timeout:
                    continue
                if name == "frames":
                    frames += got
                else:
                    text += got
        check(
            "own firmware: its boot beacon as a CAN FD frame (0x7A0, BRS) on socketcand after `reset`",
            b"< fdframe 7A0 05 " in frames,
            f"{reply}; got {frames[:400]!r}",
        )
        check(
            "own firmware: its BEACON console line on the raw TCP USART at 8N1",
            b"BEACON " in text and b"stage=app" in text,
            f"got {text[:300]!r}",
        )
        skipped = []
        try:
            while (msg := pycan.recv(0.3)) is not None:
                skipped.append(msg)
            crashed = None
        except Exception as e:
            crashed = e
        check(
            "python-can skips the FD frames it cannot parse (no message, no error)",
            crashed is None and not skipped,
            f"error {crashed!r}, messages {skipped}",
        )
        pycan.shutdown()
        sc.close()
        console.close()
    finally:
        serve.close()


def main():
    if not BIN.exists():
        raise SystemExit(f"FAIL no bootproof binary at {BIN}: run `cargo build -p bootproof` first")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for step in (
            python_can_socketcand,
            lambda: rfc2217_pyserial_and_stm32loader(tmp),
            lambda: stm32flash_on_the_pty(tmp),
            own_firmware_on_socketcand_and_raw_tcp,
        ):
            try:
                step()
            except Exception as e:  # a crash in one tool's check is that check failing
                check(getattr(step, "__name__", "outside tool check"), False, repr(e))
    print(f"outside tools checked in {time.monotonic() - started:.1f} s", flush=True)
    print(f"outside-tools: {passed} passed, {len(failures)} failed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
