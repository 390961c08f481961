//! `bootproof twin serve`: a twin in real time for outside tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bootproof_fixtures::{BoardProfile, Level};
use bootproof_rig::Rig;
use bootproof_rig::console::{Parity, SerialConfig};
use bootproof_twin::{Twin, TwinOptions, serve};
use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Cli, LevelArg};

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("usart").multiple(false))]
pub struct ServeArgs {
    /// Board profile: a built-in name or a profile TOML. The global --twin BOARD says the same
    /// (as for every other command); give one of them.
    #[arg(long, value_name = "BOARD")]
    pub board: Option<String>,
    /// Expose the board's USART on a pseudo-terminal symlinked at PATH (for tools that need a
    /// device node; a pty carries no parity and no modem lines).
    #[arg(long, value_name = "PATH", group = "usart")]
    pub usart_pty: Option<PathBuf>,
    /// Serve the board's USART to RFC 2217 clients (pyserial's rfc2217://ADDR:PORT) on
    /// ADDR:PORT (loopback; port 0 picks one). The tool's baud rate, parity and data size
    /// apply; DTR/RTS drive the board as --dtr/--rts say.
    #[arg(long, value_name = "ADDR:PORT", group = "usart")]
    pub usart_rfc2217: Option<SocketAddr>,
    /// Serve the board's USART as raw bytes on ADDR:PORT (loopback; port 0 picks one) at
    /// --usart-baud and --usart-parity.
    #[arg(long, value_name = "ADDR:PORT", group = "usart")]
    pub usart_tcp: Option<SocketAddr>,
    /// Parity on the pty and raw TCP endpoints (neither can carry it; RFC 2217 clients set
    /// their own). `even` is the ROM bootloader's 8E1; `none` suits an application console.
    #[arg(long, value_name = "PARITY", default_value = "even")]
    pub usart_parity: ParityArg,
    /// Baud rate of the raw TCP endpoint (the pty mirrors the tool's, RFC 2217 clients set it).
    #[arg(long, value_name = "BAUD", default_value_t = 115_200)]
    pub usart_baud: u32,
    /// What the RFC 2217 client's DTR drives (stm32loader's wiring: nrst).
    #[arg(long, value_name = "PIN", default_value = "none", requires = "usart_rfc2217")]
    pub dtr: PinArg,
    /// What the RFC 2217 client's RTS drives (stm32loader's wiring: boot0).
    #[arg(long, value_name = "PIN", default_value = "none", requires = "usart_rfc2217")]
    pub rts: PinArg,
    /// DTR's pin level while DTR is asserted: `low` as on USB-serial adapters' DTR# pin.
    #[arg(long, value_name = "LEVEL", default_value = "low")]
    pub dtr_asserted: LevelArg,
    /// RTS's pin level while RTS is asserted: `low` as on USB-serial adapters' RTS# pin.
    #[arg(long, value_name = "LEVEL", default_value = "low")]
    pub rts_asserted: LevelArg,
    /// Serve the CAN bus to socketcand clients on ADDR:PORT (loopback; port 0 picks one).
    #[arg(long, value_name = "ADDR:PORT")]
    pub socketcand: Option<SocketAddr>,
    /// socketcand bus name.
    #[arg(long, default_value = "can0")]
    pub bus_name: String,
    /// BOOT0 level at start; `high` (default) makes the ROM bootloader answer at once.
    #[arg(long, value_name = "LEVEL", default_value = "high")]
    pub boot0: LevelArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ParityArg {
    /// 8N1.
    None,
    /// 8E1 (ROM bootloader).
    Even,
    /// 8O1.
    Odd,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PinArg {
    /// Not connected.
    None,
    /// The board's NRST (a low pin holds it in reset).
    Nrst,
    /// The board's BOOT0.
    Boot0,
}

impl From<PinArg> for serve::LineTarget {
    fn from(p: PinArg) -> Self {
        match p {
            PinArg::None => serve::LineTarget::None,
            PinArg::Nrst => serve::LineTarget::Nrst,
            PinArg::Boot0 => serve::LineTarget::Boot0,
        }
    }
}

const HELP: &str = "commands: reset [MS] | power on|off|cycle [MS] | boot0 high|low | status | help | quit";

pub async fn serve(cli: &Cli, a: &ServeArgs) -> Result<ExitCode> {
    let board = match (cli.one_twin()?, a.board.as_deref()) {
        (Some(t), Some(b)) if t != b => bail!("--twin {t} and --board {b} disagree: give one"),
        (Some(t), _) => t.to_string(),
        (None, Some(b)) => b.to_string(),
        (None, None) => {
            bail!("which board? give --twin BOARD (stm32h723zg, stm32f446re, stm32g071rb, or a profile TOML)")
        }
    };
    if a.usart_pty.is_none() && a.usart_rfc2217.is_none() && a.usart_tcp.is_none() && a.socketcand.is_none() {
        bail!(
            "nothing to serve: give one of --usart-pty PATH, --usart-rfc2217 ADDR:PORT, --usart-tcp ADDR:PORT, \
             and/or --socketcand ADDR:PORT"
        );
    }
    for (flag, addr) in
        [("--socketcand", a.socketcand), ("--usart-rfc2217", a.usart_rfc2217), ("--usart-tcp", a.usart_tcp)]
    {
        if let Some(addr) = addr
            && !addr.ip().is_loopback()
        {
            bail!("{flag} {addr}: the twin serves loopback only (use 127.0.0.1:PORT)");
        }
    }
    let wiring = serve::Wiring {
        dtr: serve::LineWire { target: a.dtr.into(), asserted: a.dtr_asserted.into() },
        rts: serve::LineWire { target: a.rts.into(), asserted: a.rts_asserted.into() },
    };
    if wiring.dtr.target != serve::LineTarget::None && wiring.dtr.target == wiring.rts.target {
        bail!("--dtr and --rts both drive {:?}: wire each to a different pin, or one to `none`", wiring.dtr.target);
    }
    let profile = BoardProfile::resolve(&board)?;
    let mut opts = TwinOptions::for_profile(&profile);
    opts.time_scale = 1; // real time: outside tools have real timeouts
    opts.boot0 = a.boot0.into();
    opts.powered = false;
    opts.strict_mmio = cli.strict_mmio;
    let twin = Twin::new(profile.clone(), opts);
    if let Some(path) = &cli.twin_image {
        let img = super::image_arg(path, &profile)?;
        twin.program(&img)?;
        say(format!("flash: {} ({} bytes) programmed", img.name, img.len()));
    }
    twin.board().set_power(true);
    let mut rig = twin.rig();
    let p = twin.board().profile().clone();
    say(format!("twin {}: powered, BOOT0 {}: {}", p.name, Level::from(a.boot0), twin.board().core().what));
    let parity = match a.usart_parity {
        ParityArg::None => Parity::None,
        ParityArg::Even => Parity::Even,
        ParityArg::Odd => Parity::Odd,
    };
    let _serial = match (a.usart_rfc2217, a.usart_tcp) {
        (Some(addr), _) => {
            let s = serve::usart_rfc2217(twin.board().clone(), addr, wiring).await?;
            say(format!(
                "USART RFC 2217: rfc2217://{} (the tool's baud rate, parity and data size apply; {wiring})",
                s.local_addr()
            ));
            Some(s)
        }
        (None, Some(addr)) => {
            let framing = SerialConfig { baud: a.usart_baud, parity };
            let s = serve::usart_tcp(twin.board().uart().clone(), addr, framing).await?;
            say(format!("USART raw TCP: {} at {framing}", s.local_addr()));
            Some(s)
        }
        (None, None) => None,
    };
    let _pty = match &a.usart_pty {
        Some(path) => {
            let bridge = serve::pty(twin.board().uart().clone(), path, parity)?;
            let target = std::fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default();
            say(format!(
                "USART: {} -> {target} (parity {parity:?}; the baud rate your tool sets is mirrored)",
                path.display()
            ));
            Some(bridge)
        }
        None => None,
    };
    if let Some(addr) = a.socketcand {
        match twin
            .board()
            .profile()
            .rom
            .transports
            .iter()
            .any(|t| t.kind() != bootproof_fixtures::RomTransportKind::Usart)
        {
            true => {
                let rates = bootproof_twin::standin::app_can_rates(&p).expect("CAN transport present");
                let local = serve::socketcand(twin.board().can_bus().clone(), rates, addr, a.bus_name.clone()).await?;
                say(format!("socketcand: {local} bus {} at {rates}", a.bus_name));
            }
            false => bail!("{} has no CAN interface to serve; drop --socketcand", p.name),
        }
    }
    say(format!("control on stdin: {HELP}"));
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let Ok(Some(line)) = stdin.next_line().await else {
            say("stdin closed; serving until Ctrl-C or SIGTERM".into());
            std::future::pending::<()>().await;
            unreachable!();
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"quit") {
            say("ok: bye".into());
            return Ok(ExitCode::SUCCESS);
        }
        match control(&twin, &mut rig, &words).await {
            Ok(msg) => say(format!("ok: {msg}")),
            Err(e) => say(format!("error: {e:#}")),
        }
    }
}

/// Print a line without panicking when stdout is gone (the controlling tool exited).
fn say(line: String) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

async fn control(twin: &Twin, rig: &mut Rig, words: &[&str]) -> Result<String> {
    let ms = |w: Option<&&str>| -> Result<Option<Duration>> {
        w.map(|v| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .with_context(|| format!("`{v}` is not a number of milliseconds"))
        })
        .transpose()
    };
    Ok(match words {
        [] => String::new(),
        ["help"] => HELP.to_string(),
        ["status"] => {
            let st = twin.board().state();
            format!(
                "power {}, NRST {}, BOOT0 {}, core: {}, RSR {:#010x}",
                if st.powered { "on" } else { "off" },
                if st.nrst_low { "low" } else { "released" },
                st.boot0,
                st.core.what,
                st.rsr
            )
        }
        ["reset", rest @ ..] => {
            let hold = ms(rest.first())?;
            rig.reset()?.pulse_reset(hold).await?;
            format!("NRST pulsed; now {}", twin.board().core().what)
        }
        ["power", "on"] => {
            rig.power()?.power_on().await?;
            format!("power on; {}", twin.board().core().what)
        }
        ["power", "off"] => {
            rig.power()?.power_off().await?;
            "power off".into()
        }
        ["power", "cycle", rest @ ..] => {
            let off = ms(rest.first())?;
            rig.power()?.power_cycle(off).await?;
            format!("power cycled; {}", twin.board().core().what)
        }
        ["boot0", level @ ("high" | "low")] => {
            let l = if *level == "high" { Level::High } else { Level::Low };
            rig.boot0()?.set_boot0(l).await?;
            format!("BOOT0 {l} (sampled at the next reset)")
        }
        other => bail!("unknown command `{}`; {HELP}", other.join(" ")),
    })
}
