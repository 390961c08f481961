//! Bring-up commands: rig check/safe, power, reset, boot0, probe info, can monitor, console.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bootproof::inject;
use bootproof_rig::open::OpenOptions;
use bootproof_rig::{CanError, CanEvent, Capability, ConsoleError, Level};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use bootproof_rig::defmt::DefmtLog;
use bootproof_rig::image::FirmwareImage;
use bootproof_rig::probe::{CoreState, CoreStatus};
use bootproof_rig::symbols::Symbols;

use super::{
    Boot0Args, Cli, ConsoleArgs, LevelArg, MonitorArgs, PowerAction, PowerArgs, ProbeCommand, ResetArgs, ms, open_rig,
};

pub async fn rig_check(cli: &Cli) -> Result<ExitCode> {
    if !cli.twin.is_empty() {
        let mut rig = open_rig(cli, OpenOptions::default()).await?;
        println!("twin {} (simulated board, virtual time)", rig.board().name);
        // A twin claims only the parts it models: one it lacks (the G071's has no CAN ROM
        // interface) is not applicable, not broken; scenarios that need it skip.
        for cap in bootproof_rig::PARTS {
            let ok = rig.has(cap);
            let detail = match cap {
                Capability::Probe if ok => rig.probe()?.info().await.map(|i| i.chip).unwrap_or_default(),
                Capability::Can if ok => rig.can()?.bitrates().to_string(),
                _ if ok => "simulated".into(),
                _ => "not modelled for this board: scenarios that need it skip".into(),
            };
            println!("{} {:<28} {detail}", if ok { "PASS" } else { "n/a " }, cap.to_string());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = cli.one_rig()? else {
        bail!("`rig check` needs a rig: pass --rig FILE (example configs are in fixtures/rigs/)");
    };
    let opts = OpenOptions { lock_timeout: cli.lock_timeout_s.map(Duration::from_secs), ..OpenOptions::default() };
    let (rig, checks) = match bootproof::target::open_rig(path, &opts).await {
        Ok(r) => r,
        Err(bootproof::target::TargetError::Rig(e @ bootproof_rig::RigError::Lock(_))) => {
            // Another job holds the rig (or the lock cannot be created): touch nothing.
            println!("FAIL {:<28} {e}", "rig lock");
            println!("other parts not checked: the rig lock is not held");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e).with_context(|| format!("opening rig {}", path.display())),
    };
    println!("rig {} ({}, board {})", rig.name(), path.display(), rig.board().name);
    for c in &checks {
        println!("{c}");
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        println!("all {} parts OK", checks.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} of {} parts FAILED", checks.len());
        Ok(ExitCode::FAILURE)
    }
}

pub async fn rig_safe(cli: &Cli) -> Result<ExitCode> {
    let rig = open_rig(cli, OpenOptions::lines_only()).await?;
    let report = rig.restore_safe_state();
    println!("{report}");
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub async fn power(cli: &Cli, a: &PowerArgs) -> Result<ExitCode> {
    let mut rig = open_rig(cli, OpenOptions::lines_only()).await?;
    let p = rig.power()?;
    match a.action {
        PowerAction::On => p.power_on().await?,
        PowerAction::Off => p.power_off().await?,
        PowerAction::Cycle => p.power_cycle(ms(a.off_ms)).await?,
    }
    inject::point("power")?;
    println!("power {}", if p.is_on() == Some(true) { "on" } else { "off" });
    // An explicit power command's result stands: on exit only BOOT0 and NRST return to safe.
    rig.leave_power_as_is();
    Ok(ExitCode::SUCCESS)
}

pub async fn reset(cli: &Cli, a: &ResetArgs) -> Result<ExitCode> {
    let mut rig = open_rig(cli, OpenOptions::lines_only()).await?;
    match a.boot0 {
        Some(LevelArg::High) => {
            rig.boot0()?.set_boot0(Level::High).await?;
            inject::point("boot0-high")?;
            let pulse = rig.reset()?.pulse_reset(ms(a.hold_ms)).await;
            rig.boot0()?.set_boot0(Level::Low).await?;
            pulse?;
            println!(
                "reset with BOOT0 high: the ROM bootloader is starting (BOOT0 back low; it is sampled only at reset)"
            );
        }
        Some(LevelArg::Low) => {
            rig.boot0()?.set_boot0(Level::Low).await?;
            rig.reset()?.pulse_reset(ms(a.hold_ms)).await?;
            println!("reset with BOOT0 low");
        }
        None => {
            rig.reset()?.pulse_reset(ms(a.hold_ms)).await?;
            println!("reset");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn boot0(cli: &Cli, a: &Boot0Args) -> Result<ExitCode> {
    let mut rig = open_rig(cli, OpenOptions::lines_only()).await?;
    let level: Level = a.level.into();
    rig.boot0()?.set_boot0(level).await?;
    println!("BOOT0 {level} (sampled at the next reset; restored low when this command exits)");
    inject::point(if level == Level::High { "boot0-high" } else { "boot0-low" })?;
    match a.hold_ms {
        Some(ms) => bootproof_rig::time::sleep(Duration::from_millis(ms)).await,
        None => {
            eprintln!("holding; press Ctrl-C to release");
            std::future::pending::<()>().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `name+off` for the PC, from `symbols`, unless the status already names it (the twin does).
fn status_line(s: &CoreStatus, symbols: Option<&Symbols>) -> String {
    let named = s.detail.as_deref().is_some_and(|d| d.contains(", in "));
    match (s.pc, symbols) {
        (Some(pc), Some(sym)) if !named => match sym.describe(pc) {
            Some(name) => format!("{s} in {name}"),
            None => s.to_string(),
        },
        _ => s.to_string(),
    }
}

fn load_symbols(path: Option<&std::path::Path>, session_elf: Option<&FirmwareImage>) -> Result<Option<Symbols>> {
    let (name, bytes) = match (path, session_elf) {
        (Some(p), _) => {
            let b = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            (p.display().to_string(), b)
        }
        (None, Some(img)) => (img.name.clone(), img.raw.clone()),
        (None, None) => return Ok(None),
    };
    Ok(Some(Symbols::from_elf(&name, &bytes)?))
}

pub async fn probe(cli: &Cli, c: &ProbeCommand) -> Result<ExitCode> {
    let mut rig = open_rig(cli, OpenOptions { can: false, console: false, ..OpenOptions::default() }).await?;
    let elf_arg = match c {
        ProbeCommand::Info(e) | ProbeCommand::Halt(e) | ProbeCommand::Regs(e) => e.elf.as_deref(),
        ProbeCommand::Step(a) => a.elf.elf.as_deref(),
        ProbeCommand::Rtt(a) => a.elf.as_deref(),
        _ => None,
    };
    let symbols = load_symbols(elf_arg, rig.elf.as_ref())?;
    let sym = symbols.as_ref();
    match c {
        ProbeCommand::Info(_) => {
            let info = rig.probe()?.info().await?;
            println!("probe:  {}", info.probe);
            println!("chip:   {}", info.chip);
            if let Some(v) = info.target_voltage {
                println!("target: {v:.2} V");
            }
            let status = rig.probe()?.core_status().await?;
            println!("core:   {}", status_line(&status, sym));
            let cause = rig.read_reset_cause().await?;
            println!("{}: {cause}", rig.board().reset.register_name);
        }
        ProbeCommand::Halt(_) => {
            let s = rig.probe()?.halt().await?;
            println!("core:   {}", status_line(&s, sym));
            println!("(left halted: `bootproof probe run` resumes it)");
        }
        ProbeCommand::Step(a) => {
            let probe = rig.probe()?;
            let s = probe.core_status().await?;
            if s.state != CoreState::Halted {
                let s = probe.halt().await?;
                println!("halted: {}", status_line(&s, sym));
            }
            for i in 1..=a.count {
                let s = probe.step().await?;
                println!("step {i:>3}: {}", status_line(&s, sym));
            }
            println!("(left halted: `bootproof probe run` resumes it)");
        }
        ProbeCommand::Run => {
            rig.probe()?.run().await?;
            println!("core:   {}", rig.probe()?.core_status().await?);
        }
        ProbeCommand::Regs(_) => {
            let probe = rig.probe()?;
            let s = probe.halt().await?;
            println!("core:   {}", status_line(&s, sym));
            println!("{}", probe.registers().await?);
            println!("(left halted: `bootproof probe run` resumes it)");
        }
        ProbeCommand::Read(a) => {
            let data = rig.probe()?.read_memory(a.address, a.len).await?;
            for (i, chunk) in data.chunks(16).enumerate() {
                let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                let text: String =
                    chunk.iter().map(|b| if b.is_ascii_graphic() || *b == b' ' { *b as char } else { '.' }).collect();
                println!("{:#010x}  {:<48} {text}", a.address + 16 * i as u32, hex.join(" "));
            }
        }
        ProbeCommand::Write(a) => {
            let hex = a.hex.trim_start_matches("0x");
            if hex.len() % 2 != 0 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("`{}` is not hex bytes: write pairs of hex digits, e.g. 0011aabb", a.hex);
            }
            let data: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("checked")).collect();
            // Into RAM with an ECC write buffer (the H7's AXI SRAM), as the hw backend does: the data
            // leaves the buffer, so a reset right after keeps it. Registers get exactly the write.
            let buffered = rig.board().ram_region(a.address, data.len() as u32).and_then(|r| r.ecc_write_buffer);
            if buffered.is_some() {
                bootproof_rig::probe::write_ram_durably(rig.probe()?, a.address, &data).await?;
            } else {
                rig.probe()?.write_memory(a.address, &data).await?;
            }
            println!("wrote {} byte(s) at {:#010x}", data.len(), a.address);
        }
        ProbeCommand::Rtt(a) => {
            let elf = match (&a.elf, rig.elf.as_ref()) {
                (Some(p), _) => Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?),
                (None, Some(img)) => Some(img.raw.clone()),
                (None, None) => None,
            };
            let mut log = match &elf {
                Some(e) => Some(DefmtLog::from_elf(e)?),
                None => None,
            };
            let probe = rig.probe()?;
            probe.rtt_attach(elf.as_deref(), Duration::from_secs(1)).await?;
            eprintln!("RTT attached{}", if log.is_some() { "; decoding defmt from the ELF" } else { " (raw text)" });
            let end = bootproof_rig::time::Instant::now() + Duration::from_millis(a.ms);
            let mut buf = [0u8; 1024];
            while bootproof_rig::time::Instant::now() < end {
                let n = probe.rtt_read(&mut buf).await?;
                match log.as_mut() {
                    Some(l) => {
                        for line in l.feed(&buf[..n])? {
                            println!("{line}");
                        }
                    }
                    None => print!("{}", String::from_utf8_lossy(&buf[..n])),
                }
                if n == 0 {
                    bootproof_rig::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn can_monitor(cli: &Cli, a: &MonitorArgs) -> Result<ExitCode> {
    let mut rig = open_rig(cli, OpenOptions { probe: false, console: false, ..OpenOptions::default() }).await?;
    let bus = rig.can()?;
    eprintln!("listening at {}; Ctrl-C to stop", bus.bitrates());
    let start = bootproof_rig::time::Instant::now();
    let idle = ms(a.idle_ms).unwrap_or(Duration::from_secs(3600 * 24 * 365));
    let mut frames = 0u64;
    loop {
        match bus.recv(idle).await {
            Ok(CanEvent::Frame(f)) => {
                println!("({:>10.6}) {f}", start.elapsed().as_secs_f64());
                frames += 1;
                if a.count.is_some_and(|c| frames >= c) {
                    break;
                }
            }
            Ok(CanEvent::Error(e)) => println!("({:>10.6}) ERROR {e}", start.elapsed().as_secs_f64()),
            Err(CanError::Timeout(_)) => {
                eprintln!("no traffic for {idle:?}; {frames} frame(s) seen");
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn console(cli: &Cli, a: &ConsoleArgs) -> Result<ExitCode> {
    let mut rig = open_rig(cli, OpenOptions { probe: false, can: false, ..OpenOptions::default() }).await?;
    let port = rig.console()?;
    eprintln!("attached at {}; Ctrl-C to detach", port.config());
    let idle = ms(a.idle_ms);
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut inbuf = [0u8; 256];
    let mut outbuf = [0u8; 256];
    let mut stdin_open = true;
    loop {
        let wait = idle.unwrap_or(Duration::from_millis(200));
        tokio::select! {
            r = stdin.read(&mut inbuf), if stdin_open => match r {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => port.write(&inbuf[..n]).await?,
            },
            r = port.raw().read(&mut outbuf, wait) => match r {
                Ok(n) => {
                    stdout.write_all(&outbuf[..n]).await?;
                    stdout.flush().await?;
                }
                Err(ConsoleError::Timeout { .. }) if idle.is_some() => break,
                Err(ConsoleError::Timeout { .. }) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}
