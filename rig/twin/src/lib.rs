//! The twin: a simulated STM32 board behind the same rig capabilities as a real rig.
//!
//! [`Twin::rig`] returns a [`bootproof_rig::Rig`] whose BOOT0, NRST and power go through the
//! *same* relay wrappers as the Raspberry Pi backend (settle, hold and discharge times in
//! virtual time), whose probe is [`probe::TwinProbe`], whose CAN interface is a node on the
//! simulated bus ([`bus`]) and whose console is the simulated serial link ([`uart`]). The board
//! itself ([`board`]) follows the board profile, which cites ST's application notes, reference
//! manuals and datasheets: BOOT0 sampling, reset flags, RAM retention,
//! write-once ECC flash with torn operations ([`flash`]), the empty check, and ST's ROM
//! bootloader on FDCAN, bxCAN and USART ([`rom`]). Firmware runs through the [`firmware`] hook.
//!
//! Everything runs on tokio's clock through [`bootproof_rig::time`]; under a paused clock
//! (`#[tokio::test(start_paused = true)]`) with the virtual time scale, a 1.1 s sector erase
//! costs no wall time and every delay is exact to the microsecond.

pub mod board;
pub mod bootloader;
pub mod bus;
pub mod emu;
pub mod firmware;
pub mod flash;
mod mem;
pub mod probe;
pub mod rfc2217;
pub mod rom;
pub mod serve;
pub mod standin;
pub mod uart;

use std::sync::Arc;
use std::time::Duration;

use bootproof_fixtures::{BoardProfile, Capability, Level, SafePower};
use bootproof_rig::can::Bitrates;
use bootproof_rig::console::SerialConfig;
use bootproof_rig::lines::{Line, shared};
use bootproof_rig::{LineError, RelayBootSelect, RelayPower, RelayReset, Rig, RigBuilder, SafeState};

use crate::board::Board;
use crate::bus::{CanBusModel, CanPort};
use crate::firmware::Registry;
use crate::uart::UartLink;

/// How a twin is set up.
#[derive(Clone)]
pub struct TwinOptions {
    /// Power the board at creation.
    pub powered: bool,
    /// BOOT0 level at creation.
    pub boot0: Level,
    /// Relay settle time of the virtual rig.
    pub settle: Duration,
    /// Default NRST pulse of the virtual rig.
    pub reset_hold: Duration,
    /// Supply discharge time of the virtual rig.
    pub discharge: Duration,
    /// Bit rates of the host's CAN interface (default: the ROM bootloader's).
    pub host_can: Option<Bitrates>,
    /// Framing of the host's serial port.
    pub console: SerialConfig,
    /// Keep an event log (off for benchmarks).
    pub record_events: bool,
    /// Firmware the board can run.
    pub registry: Registry,
    /// Time scale ([`bootproof_rig::time`]): [`bootproof_rig::time::VIRTUAL_SCALE`] for
    /// microsecond-exact virtual time under a paused tokio clock (tests, `bootproof suite`), 1 for
    /// real time (`bootproof twin serve`). Applied to the creating thread.
    pub time_scale: u32,
    /// Emulated firmware: an access to an address no peripheral model covers is a bus fault
    /// (strict) instead of a logged read-as-zero / ignored write (lenient, the default).
    pub strict_mmio: bool,
}

impl TwinOptions {
    /// Defaults for `profile`: unpowered, BOOT0 low, 5 ms relays, 20 ms NRST pulse, 100 ms
    /// discharge, host CAN at the ROM bootloader's bit rates, console 115200 8N1.
    pub fn for_profile(profile: &BoardProfile) -> Self {
        TwinOptions {
            powered: false,
            boot0: Level::Low,
            settle: Duration::from_millis(5),
            reset_hold: Duration::from_millis(20),
            discharge: Duration::from_millis(100),
            host_can: standin::app_can_rates(profile),
            console: SerialConfig::n81(115_200),
            record_events: true,
            registry: Registry::builtin(),
            time_scale: bootproof_rig::time::VIRTUAL_SCALE,
            strict_mmio: false,
        }
    }
}

/// A simulated board with its bus and serial link.
pub struct Twin {
    board: Arc<Board>,
    opts: TwinOptions,
}

#[derive(Clone, Copy)]
enum Which {
    Power,
    Nrst,
    Boot0,
}

/// One of the twin board's control lines.
struct TwinLine {
    board: Arc<Board>,
    which: Which,
    state: Option<bool>,
}

impl Line for TwinLine {
    fn set(&mut self, asserted: bool) -> Result<(), LineError> {
        match self.which {
            Which::Power => self.board.set_power(asserted),
            Which::Nrst => self.board.set_nrst(asserted),
            Which::Boot0 => self.board.set_boot0(if asserted { Level::High } else { Level::Low }),
        }
        self.state = Some(asserted);
        Ok(())
    }

    fn asserted(&self) -> Option<bool> {
        self.state
    }

    fn describe(&self) -> String {
        match self.which {
            Which::Power => "twin power switch",
            Which::Nrst => "twin NRST",
            Which::Boot0 => "twin BOOT0",
        }
        .into()
    }
}

/// Why a twin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    /// An image that does not fit the board.
    #[error("{0}")]
    Image(String),
}

impl Twin {
    /// A twin of `profile`. If `opts.powered`, call this inside a tokio runtime (the board boots).
    pub fn new(profile: BoardProfile, opts: TwinOptions) -> Twin {
        bootproof_rig::time::set_thread_scale(Some(opts.time_scale));
        let board = Board::new(
            Arc::new(profile),
            CanBusModel::new(),
            UartLink::new(opts.console),
            opts.registry.clone(),
            opts.record_events,
        );
        board.set_strict_mmio(opts.strict_mmio);
        board.set_boot0(opts.boot0);
        if opts.powered {
            board.set_power(true);
        }
        Twin { board, opts }
    }

    /// Program `image` into the flash as a factory would (instantly, no timing), and keep its
    /// symbols when it is an ELF. Do it before powering the board; the flash must hold no
    /// other data where the image goes (a fresh twin is blank).
    pub fn program(&self, image: &bootproof_rig::image::FirmwareImage) -> Result<(), TwinError> {
        let p = self.board.profile().clone();
        image
            .check_within(p.flash.base, p.flash.end(), &format!("{} user flash", p.name))
            .map_err(|e| TwinError::Image(e.to_string()))?;
        let word = p.flash.word as usize;
        {
            let mut st = self.board.state();
            for (at, w) in image.flash_words(word, p.flash.erased) {
                if w.iter().all(|b| *b == p.flash.erased) {
                    continue;
                }
                st.flash
                    .program_word(at, &w)
                    .map_err(|e| TwinError::Image(format!("{}: programming {at:#010x}: {e}", image.name)))?;
            }
        }
        if image.format == bootproof_rig::image::ImageFormat::Elf
            && let Ok(symbols) = bootproof_rig::symbols::Symbols::from_elf(&image.name, &image.raw)
        {
            self.board.add_symbols(symbols);
        }
        Ok(())
    }

    /// A twin of a built-in profile with default options.
    pub fn builtin(name: &str) -> Result<Twin, bootproof_fixtures::ConfigError> {
        let p = BoardProfile::builtin(name)?;
        let opts = TwinOptions::for_profile(&p);
        Ok(Twin::new(p, opts))
    }

    /// The simulated board (for assertions on its internals).
    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// Another host node on the bus at `rates` (e.g. a second tool).
    pub fn attach_can(&self, name: &str, rates: Bitrates) -> CanPort {
        self.board.can_bus().attach(name, rates)
    }

    /// A rig over this twin: the same capabilities a physical rig provides. The safe state is
    /// BOOT0 low, NRST released, power on.
    pub fn rig(&self) -> Rig {
        let line = |which| shared(TwinLine { board: self.board.clone(), which, state: None });
        let (power, nrst, boot0) = (line(Which::Power), line(Which::Nrst), line(Which::Boot0));
        let o = &self.opts;
        let mut b = RigBuilder::new(format!("twin:{}", self.board.profile().name), (**self.board.profile()).clone())
            .boot0(Box::new(RelayBootSelect::new(boot0.clone(), o.settle)))
            .reset(Box::new(RelayReset::new(nrst.clone(), o.settle, o.reset_hold)))
            .power(Box::new(RelayPower::new(power.clone(), o.settle, o.discharge)))
            .probe(Box::new(probe::TwinProbe::new(self.board.clone())))
            .console(Box::new(self.board.uart().host_console()))
            .safe_state(SafeState::new(Some(boot0), Some(nrst), Some((power, SafePower::On))));
        b = match o.host_can {
            Some(rates) => b.can(Box::new(self.attach_can("host", rates))),
            None => {
                b.missing(Capability::Can, format!("{} has no CAN ROM bootloader interface", self.board.profile().name))
            }
        };
        b.build()
    }
}
