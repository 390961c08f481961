//! Bring-up commands: rig check/safe, power, reset, boot0, probe info, can monitor, console.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bootproof::inject;
use bootproof_rig::open::OpenOptions;
use bootproof_rig::{CanError, CanEvent, Capability, ConsoleError, Level};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Boot0Args, Cli, ConsoleArgs, LevelArg, MonitorArgs, PowerAction, PowerArgs, ResetArgs, ms, open_rig};

pub async fn rig_check(cli: &Cli) -> Result<ExitCode> {
    if cli.twin.is_some() {
        let mut rig = open_rig(cli, OpenOptions::default()).await?;
        println!("twin {} (simulated board, virtual time)", rig.board().name);
        let mut failed = 0;
        for cap in [
            Capability::Boot0,
            Capability::Nrst,
            Capability::Power,
            Capability::Probe,
            Capability::Can,
            Capability::Console,
        ] {
            let ok = rig.has(cap);
            failed += usize::from(!ok);
            let detail = match cap {
                Capability::Probe if ok => rig.probe()?.info().await.map(|i| i.chip).unwrap_or_default(),
                Capability::Can if ok => rig.can()?.bitrates().to_string(),
                _ if ok => "simulated".into(),
                _ => "not provided by this board's twin".into(),
            };
            println!("{} {:<28} {detail}", if ok { "PASS" } else { "FAIL" }, cap.to_string());
        }
        return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let Some(path) = &cli.rig else {
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

pub async fn probe_info(cli: &Cli) -> Result<ExitCode> {
    let mut rig = open_rig(cli, OpenOptions { can: false, console: false, ..OpenOptions::default() }).await?;
    let info = rig.probe()?.info().await?;
    println!("probe:  {}", info.probe);
    println!("chip:   {}", info.chip);
    if let Some(v) = info.target_voltage {
        println!("target: {v:.2} V");
    }
    let status = rig.probe()?.core_status().await?;
    println!("core:   {status}");
    let cause = rig.read_reset_cause().await?;
    println!("{}: {cause}", rig.board().reset.register_name);
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
