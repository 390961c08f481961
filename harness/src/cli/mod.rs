//! Command-line definitions and dispatch.

mod firmware;
mod flash;
mod image;
mod lines;
mod serve;
mod suite;
mod update;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bootproof_rig::Rig;
use bootproof_rig::image::{FirmwareImage, ImageFormat};
use bootproof_rig::open::OpenOptions;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Prove how STM32 boards boot: drive BOOT0, NRST and power, flash over CAN and the ROM
/// bootloader, and assert what the board does.
#[derive(Debug, Parser)]
#[command(name = "bootproof", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Rig to drive: a rig config TOML (see fixtures/rigs/). `suite` takes several (repeat the
    /// flag) and runs them one after the other; other commands take one.
    #[arg(long, global = true, env = "BOOTPROOF_RIG", value_name = "FILE", conflicts_with = "twin", action = clap::ArgAction::Append)]
    pub rig: Vec<PathBuf>,

    /// Drive a simulated board instead: a built-in board profile (stm32h723zg, stm32f446re,
    /// stm32g071rb) or a profile TOML. Runs on virtual time; the board starts blank and
    /// unpowered, and is gone when the command ends. `suite` takes several (repeat the flag;
    /// default: every built-in board) and `twin serve` serves one in real time.
    #[arg(long, global = true, value_name = "BOARD", action = clap::ArgAction::Append)]
    pub twin: Vec<String>,

    /// With --twin or `twin serve`: start the twin with this firmware in flash, as a probe
    /// would leave it (ELF, HEX or BIN at the start of flash). `bootproof` names bootproof's own
    /// application for the board, `bootproof-factory` its bootloader with the application in
    /// slot A (built if needed). The ELF's symbols name the PC in probe output.
    #[arg(long = "image", id = "twin_image", global = true, value_name = "FILE")]
    pub twin_image: Option<PathBuf>,

    /// With --twin, `suite` or `twin serve`: firmware on the emulated core that touches a
    /// peripheral register the twin does not model stops the core (and fails the scenario),
    /// naming the address, PC and symbol. Default: lenient (read as zero, logged).
    #[arg(long, global = true)]
    pub strict_mmio: bool,

    /// How long to wait for a rig another job holds, in seconds (default: the rig config's
    /// lock_timeout_s). Only with --rig: a twin has no lock.
    #[arg(long, global = true, env = "BOOTPROOF_LOCK_TIMEOUT_S", value_name = "SECONDS")]
    pub lock_timeout_s: Option<u64>,

    /// More log output (-v info, -vv debug, -vvv trace). BOOTPROOF_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The one rig config a command drives (`suite` takes several and does not use this).
    pub fn one_rig(&self) -> Result<Option<&PathBuf>> {
        match self.rig.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            many => bail!("--rig was given {} times: only `suite` runs several rigs; give one", many.len()),
        }
    }

    /// The one twin board a command drives (`suite` takes several and does not use this).
    pub fn one_twin(&self) -> Result<Option<&str>> {
        match self.twin.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.as_str())),
            many => bail!("--twin was given {} times: only `suite` runs several boards; give one", many.len()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check or reset the rig itself.
    #[command(subcommand)]
    Rig(RigCommand),
    /// Switch the board's power.
    Power(PowerArgs),
    /// Pulse NRST.
    Reset(ResetArgs),
    /// Drive BOOT0 and hold it while this command runs (it is restored low on exit).
    Boot0(Boot0Args),
    /// Talk to the debug probe.
    #[command(subcommand)]
    Probe(ProbeCommand),
    /// Watch the CAN bus.
    #[command(subcommand)]
    Can(CanCommand),
    /// Attach to the serial console: board output to stdout, stdin to the board.
    Console(ConsoleArgs),
    /// Run the boot scenarios (default: on the twins of every built-in board, virtual time).
    Suite(suite::SuiteArgs),
    /// Program an image through the ROM bootloader (CAN or USART) or the debug probe.
    Flash(flash::FlashArgs),
    /// Update the application through bootproof's bootloader (UDS on CAN FD).
    Update(update::UpdateArgs),
    /// Talk UDS to bootproof's bootloader.
    #[command(subcommand)]
    Uds(update::UdsCommand),
    /// Build and inspect images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// bootproof's own board firmware: build it, report its size.
    #[command(subcommand)]
    Firmware(firmware::FirmwareCommand),
    /// Run a simulated board for outside tools.
    #[command(subcommand)]
    Twin(TwinCommand),
}

#[derive(Debug, Subcommand)]
pub enum TwinCommand {
    /// Serve a twin in real time: its USART on a pseudo-terminal, its CAN bus as a socketcand
    /// server, and a control channel on stdin (reset, power, boot0, status, quit).
    Serve(serve::ServeArgs),
}

#[derive(Debug, Subcommand)]
pub enum RigCommand {
    /// Open every configured part and print one PASS/FAIL line each; exit non-zero on any FAIL.
    Check,
    /// Put the rig in its safe state: BOOT0 low, NRST released, power as configured.
    Safe,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PowerAction {
    /// Switch on (waits out the discharge time if the board was just switched off).
    On,
    /// Switch off.
    Off,
    /// Off, wait, on: a real power-on reset.
    Cycle,
}

#[derive(Debug, Args)]
pub struct PowerArgs {
    /// What to do.
    pub action: PowerAction,
    /// Off time for `cycle`, in ms (default and minimum: the rig's discharge time).
    #[arg(long, value_name = "MS")]
    pub off_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LevelArg {
    /// Low.
    Low,
    /// High.
    High,
}

impl From<LevelArg> for bootproof_rig::Level {
    fn from(l: LevelArg) -> Self {
        match l {
            LevelArg::Low => bootproof_rig::Level::Low,
            LevelArg::High => bootproof_rig::Level::High,
        }
    }
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// How long to hold NRST, in ms (default: the rig's `lines.nrst.hold_ms`).
    #[arg(long, value_name = "MS")]
    pub hold_ms: Option<u64>,
    /// Drive BOOT0 to this level for the reset. `high` enters the ROM bootloader; BOOT0 is
    /// returned low right after the reset (it is sampled only at reset).
    #[arg(long, value_name = "LEVEL")]
    pub boot0: Option<LevelArg>,
}

#[derive(Debug, Args)]
pub struct Boot0Args {
    /// Level to drive.
    pub level: LevelArg,
    /// Hold it this long, then restore the safe state (default: until Ctrl-C).
    #[arg(long, value_name = "MS")]
    pub hold_ms: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum ProbeCommand {
    /// Probe, chip, core state (PC and its symbol) and the decoded reset-cause register.
    Info(ElfArg),
    /// Halt the core and show where.
    Halt(ElfArg),
    /// Execute instructions of the core one at a time (halting it first), showing each PC.
    Step(StepArgs),
    /// Resume a halted core.
    Run,
    /// Halt the core and print its registers.
    Regs(ElfArg),
    /// Read memory (hex dump).
    Read(ReadArgs),
    /// Write bytes to RAM or a register.
    Write(WriteArgs),
    /// Attach to RTT and print the firmware's log: defmt-decoded with --elf, raw text without.
    Rtt(RttArgs),
}

#[derive(Debug, Args)]
pub struct ElfArg {
    /// The firmware's ELF, for symbols (default with --twin: the --image ELF).
    #[arg(long, value_name = "ELF")]
    pub elf: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StepArgs {
    /// Instructions to execute.
    #[arg(default_value_t = 1)]
    pub count: u32,
    #[command(flatten)]
    pub elf: ElfArg,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Address (0x...).
    #[arg(value_parser = flash::parse_addr)]
    pub address: u32,
    /// Bytes to read.
    #[arg(default_value_t = 64)]
    pub len: usize,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Address (0x...).
    #[arg(value_parser = flash::parse_addr)]
    pub address: u32,
    /// Bytes in hex, e.g. 0011aabb.
    pub hex: String,
}

#[derive(Debug, Args)]
pub struct RttArgs {
    /// The firmware's ELF: locates the control block and decodes defmt (default with --twin:
    /// the --image ELF).
    #[arg(long, value_name = "ELF")]
    pub elf: Option<PathBuf>,
    /// Stop after this long, in ms (virtual time on the twin).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum CanCommand {
    /// Print every frame and bus error, candump-style, until Ctrl-C.
    Monitor(MonitorArgs),
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Stop after this many frames.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long without traffic, in ms.
    #[arg(long, value_name = "MS")]
    pub idle_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Stop after this long without output, in ms (default: run until Ctrl-C).
    #[arg(long, value_name = "MS")]
    pub idle_ms: Option<u64>,
}

/// Set up tracing: BOOTPROOF_LOG wins, else -v levels; logs go to stderr.
pub fn init_logging(verbose: u8) {
    // Our crates at the chosen level; dependencies (probe-rs, nusb, ...) only their errors.
    let ours = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let default =
        format!("error,bootproof={ours},bootproof_rig={ours},bootproof_twin={ours},bootproof_fixtures={ours}");
    let filter = tracing_subscriber::EnvFilter::try_from_env("BOOTPROOF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// Run the command; SIGINT and SIGTERM stop it, restore the rig's safe state and exit 130/143.
pub async fn run_with_signals(cli: Cli) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        _ => {
            eprintln!("bootproof: cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let outcome = tokio::select! {
        r = run(cli) => Ok(r),
        _ = int.recv() => Err(("SIGINT", 130u8)),
        _ = term.recv() => Err(("SIGTERM", 143u8)),
    };
    // The command future is dropped here, which drops its rig and restores the safe state.
    // Restore anything still registered (rigs held by detached tasks) as well.
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("bootproof: error: {e:#}");
            ExitCode::FAILURE
        }
        Err((name, code)) => {
            let reports = bootproof_rig::safe::restore_all();
            let what = reports.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ");
            eprintln!(
                "bootproof: stopped by {name}; rig left in its safe state{}",
                if what.is_empty() { String::new() } else { format!(": {what}") }
            );
            ExitCode::from(code)
        }
    }
}

/// What a command drives: a physical rig, or a twin (kept alive alongside its rig).
pub struct Session {
    // Field order matters: the rig (and its safe state) goes before the twin.
    rig: Rig,
    _twin: Option<bootproof_twin::Twin>,
    /// The ELF a twin was started with (`--image`), for symbols.
    pub elf: Option<FirmwareImage>,
}

impl std::ops::Deref for Session {
    type Target = Rig;
    fn deref(&self) -> &Rig {
        &self.rig
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Rig {
        &mut self.rig
    }
}

/// How long a `--twin` session's board runs (virtual time) before the command acts.
pub const TWIN_SETTLE: Duration = Duration::from_millis(100);

/// A twin for `--twin BOARD` (strict MMIO with `--strict-mmio`), blank and unpowered.
pub fn open_twin(cli: &Cli, board: &str) -> Result<bootproof_twin::Twin> {
    let profile = bootproof_fixtures::BoardProfile::resolve(board)?;
    let mut opts = bootproof_twin::TwinOptions::for_profile(&profile);
    opts.strict_mmio = cli.strict_mmio;
    Ok(bootproof_twin::Twin::new(profile, opts))
}

/// The image `--image` names: a file; `bootproof` for bootproof's own application for
/// `board` at the start of flash; `bootproof-factory` for bootproof's bootloader with the
/// application in slot A (v1, signed with test key A, confirmed).
pub fn image_arg(path: &std::path::Path, board: &bootproof_fixtures::BoardProfile) -> Result<FirmwareImage> {
    let ours = |what: &str| {
        bootproof::firmware::for_board(board)
            .with_context(|| format!("bootproof has no {what} for {}; give an image file", board.name))
    };
    if path.as_os_str() == "bootproof" {
        return Ok(ours("firmware")?.image(bootproof::firmware::Binary::Flash)?);
    }
    if path.as_os_str() == "bootproof-factory" {
        let fw = ours("bootloader")?;
        if !fw.is_full() {
            bail!("bootproof's bootloader is for the NUCLEO-H723ZG; {} has only the minimal firmware", board.name);
        }
        let key = fut_image::keys::SigningKey::from_pem(
            include_str!("../../../fixtures/keys/test-ed25519-a.pem"),
            std::path::Path::new("fixtures/keys/test-ed25519-a.pem"),
        )?;
        return Ok(fw.factory_set(&boot_core::layout::H723, &key)?);
    }
    Ok(FirmwareImage::load(path, Some(board.flash.base))?)
}

/// Open the rig named by `--rig`, or a twin named by `--twin`, with `opts`.
async fn open_rig(cli: &Cli, mut opts: OpenOptions) -> Result<Session> {
    if let Some(board) = cli.one_twin()? {
        let twin = open_twin(cli, board)?;
        let image = match &cli.twin_image {
            Some(p) => Some(image_arg(p, twin.board().profile())?),
            None => None,
        };
        if let Some(img) = &image {
            twin.program(img)?;
        }
        let rig = twin.rig();
        // Like a physical rig: start from the safe state (powered), and let the board come up.
        rig.restore_safe_state();
        bootproof_rig::time::sleep(TWIN_SETTLE).await;
        return Ok(Session { rig, _twin: Some(twin), elf: image.filter(|i| i.format == ImageFormat::Elf) });
    }
    opts.lock_timeout = cli.lock_timeout_s.map(Duration::from_secs).or(opts.lock_timeout);
    let Some(path) = cli.one_rig()? else {
        bail!(
            "this command needs a rig: pass --rig FILE (or set BOOTPROOF_RIG; example configs are in fixtures/rigs/), or --twin BOARD for a simulated board"
        );
    };
    let (rig, _checks) =
        bootproof::target::open_rig(path, &opts).await.with_context(|| format!("opening rig {}", path.display()))?;
    Ok(Session { rig, _twin: None, elf: None })
}

/// Whether this command runs on virtual time: a twin (except `twin serve`), and `suite` without
/// a rig.
pub fn virtual_time(cli: &Cli) -> bool {
    match cli.command {
        Command::Twin(_) | Command::Image(_) | Command::Firmware(_) => false,
        Command::Suite(_) => cli.rig.is_empty(),
        _ => !cli.twin.is_empty(),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    refuse_ignored_flags(&cli)?;
    match &cli.command {
        Command::Rig(RigCommand::Check) => lines::rig_check(&cli).await,
        Command::Rig(RigCommand::Safe) => lines::rig_safe(&cli).await,
        Command::Power(a) => lines::power(&cli, a).await,
        Command::Reset(a) => lines::reset(&cli, a).await,
        Command::Boot0(a) => lines::boot0(&cli, a).await,
        Command::Probe(c) => lines::probe(&cli, c).await,
        Command::Can(CanCommand::Monitor(a)) => lines::can_monitor(&cli, a).await,
        Command::Console(a) => lines::console(&cli, a).await,
        Command::Twin(TwinCommand::Serve(a)) => serve::serve(&cli, a).await,
        // Exit 1 means a scenario failed: an error that stops the run before any verdict (a
        // bad argument, an unreadable image, an unwritable report) is exit 2, like clap's.
        Command::Suite(a) => suite::suite(&cli, a).await.or_else(|e| {
            eprintln!("bootproof: error: {e:#}");
            Ok(ExitCode::from(suite::EXIT_USAGE))
        }),
        Command::Flash(a) => flash::flash(&cli, a).await,
        Command::Update(a) => update::update(&cli, a).await,
        Command::Uds(c) => update::uds(&cli, c).await,
        Command::Image(c) => image::run(c),
        Command::Firmware(c) => firmware::run(c),
    }
}

/// Global flags that the chosen command would ignore are refused, naming the flag and what to
/// do instead: a flag that silently does nothing misleads.
fn refuse_ignored_flags(cli: &Cli) -> Result<()> {
    let name = match &cli.command {
        Command::Image(_) => Some("image"),
        Command::Firmware(_) => Some("firmware"),
        _ => None,
    };
    if let Some(name) = name {
        let given: Vec<&str> = [
            (!cli.rig.is_empty(), "--rig"),
            (!cli.twin.is_empty(), "--twin"),
            (cli.twin_image.is_some(), "--image"),
            (cli.strict_mmio, "--strict-mmio"),
            (cli.lock_timeout_s.is_some(), "--lock-timeout-s"),
        ]
        .into_iter()
        .filter_map(|(on, flag)| on.then_some(flag))
        .collect();
        if !given.is_empty() {
            bail!("`{name}` works on files and drives no board: drop {}", given.join(", "));
        }
        return Ok(());
    }
    let twin_session = !cli.twin.is_empty() || matches!(cli.command, Command::Twin(_));
    if cli.twin_image.is_some() {
        if matches!(cli.command, Command::Suite(_)) {
            bail!("`suite` flashes its own images: give yours with `suite --app-image FILE`");
        }
        if !twin_session {
            bail!(
                "--image programs a twin's flash: use it with --twin BOARD (or `twin serve`); on a rig, use `bootproof flash`"
            );
        }
    }
    if cli.strict_mmio && !cli.rig.is_empty() {
        bail!("--strict-mmio is about the twin's peripheral models; a rig has the real chip: drop it");
    }
    if cli.lock_timeout_s.is_some() && cli.rig.is_empty() {
        bail!(
            "--lock-timeout-s is how long to wait for a rig another job holds; without --rig there is no lock: drop it"
        );
    }
    if matches!(cli.command, Command::Twin(_)) && !cli.rig.is_empty() {
        bail!("`twin serve` runs a simulated board; drop --rig");
    }
    Ok(())
}

pub(crate) fn ms(v: Option<u64>) -> Option<Duration> {
    v.map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn suite_help_lists_every_scenario() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd.find_subcommand_mut("suite").unwrap().render_long_help().to_string();
        for s in &bootproof::scenarios::ALL {
            assert!(help.contains(&format!("{} (", s.id)), "`suite --help` does not list {}: {help}", s.id);
        }
    }

    #[test]
    fn flags_a_command_would_ignore_are_refused() {
        let refused = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            refuse_ignored_flags(&cli).unwrap_err().to_string()
        };
        assert!(refused(&["bootproof", "--twin", "stm32h723zg", "firmware", "sizes"]).contains("drop --twin"));
        assert!(
            refused(&["bootproof", "--twin", "stm32h723zg", "--lock-timeout-s", "5", "power", "on"])
                .contains("--lock-timeout-s")
        );
        let cli = Cli::try_parse_from(["bootproof", "--twin", "a", "--twin", "b", "power", "on"]).unwrap();
        assert!(cli.one_twin().unwrap_err().to_string().contains("only `suite` runs several boards"));
        let cli = Cli::try_parse_from(["bootproof", "--twin", "a", "--twin", "b", "suite"]).unwrap();
        assert!(refuse_ignored_flags(&cli).is_ok());
    }

    #[test]
    fn rig_and_twin_are_exclusive() {
        let e =
            Cli::try_parse_from(["bootproof", "--rig", "x.toml", "--twin", "stm32h723zg", "rig", "check"]).unwrap_err();
        assert!(e.to_string().contains("cannot be used with"), "{e}");
    }
}
