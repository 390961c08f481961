//! The simulated MCU: lines, resets, memory map, boot selection and the firmware hook.
//!
//! | event | reset flags | RAM | backup domain | BOOT0 sampled | empty flag re-evaluated |
//! |---|---|---|---|---|---|
//! | power-on | `power_on` set (RSR reset) | undefined | lost if VBAT is tied to VDD | yes | yes |
//! | NRST released | `pin` OR'ed in | kept | kept | yes | no |
//! | software reset / IWDG | `software` / `iwdg` OR'ed in | kept | kept | yes | no |
//! | option-byte reload | `option_reload` (else `pin`) OR'ed in | kept | kept | yes | yes |
//! | ROM Go | unchanged | kept | kept | no | no |
//!
//! Flags accumulate until cleared with RMVF, as on silicon. A flash program or erase that a
//! reset or power cut interrupts is torn (see [`crate::flash`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bootproof_fixtures::{BoardProfile, Level, ResetKind};
use bootproof_rig::can::Bitrates;
use bootproof_rig::time::Instant;
use tokio::sync::watch;

use crate::bus::{CanBusModel, CanPort};
use crate::firmware::{DESCRIPTOR_LEN, DESCRIPTOR_OFFSET, Descriptor, Registry, image_crc};
use crate::flash::{FlashArray, FlashFault, FlashOp};
use crate::mem::SparseMem;
use crate::uart::{BoardRx, UartLink};

/// What the core is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// No power.
    Off,
    /// Held in reset by NRST.
    InReset,
    /// Executing.
    Running,
    /// Halted by the debugger.
    Halted,
    /// Locked up after a fault in the fault handler (or the vector fetch).
    LockedUp,
}

impl Run {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Run::Off => "off",
            Run::InReset => "held in reset",
            Run::Running => "running",
            Run::Halted => "halted",
            Run::LockedUp => "locked up",
        }
    }
}

/// The core's state as the probe would see it, plus what the twin knows it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Core {
    /// Execution state.
    pub run: Run,
    /// Program counter.
    pub pc: u32,
    /// What runs: "ROM bootloader", "stand-in app v1", "unknown firmware at 0x08000000", or
    /// why it locked up.
    pub what: String,
}

/// What a halted emulated core does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Run.
    Run,
    /// Execute one instruction and stay halted.
    Step,
}

/// Readout protection level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rdp {
    /// No protection (0xAA).
    Level0,
    /// Level 1: flash not readable by debugger or bootloader.
    Level1,
}

/// Mutable board state (behind the board's lock).
pub struct State {
    /// Supply on.
    pub powered: bool,
    /// NRST held low externally.
    pub nrst_low: bool,
    /// BOOT0 pin level.
    pub boot0: Level,
    /// Incremented at every reset, power change and jump: firmware from an older generation is
    /// dead.
    pub generation: u64,
    /// Power-on count.
    pub power_cycles: u64,
    /// Reset-cause register's flags.
    pub rsr: u32,
    /// RMVF as last written, when the profile holds it (`reset.rmvf_held`, assumption
    /// `rsr-rmvf`): while set, the flags stay cleared and a reset's flags are lost.
    pub rmvf: bool,
    /// The word a debugger write left in a RAM region's ECC write buffer, with the content it
    /// replaces (assumption `axi-ecc-write-buffer`): a reset restores that content.
    pub ecc_pending: Option<(u32, Vec<u8>)>,
    /// Latched flash-empty flag (parts with the empty check).
    pub empty_flag: bool,
    /// Readout protection.
    pub rdp: Rdp,
    /// User flash.
    pub flash: FlashArray,
    /// RAM.
    pub ram: SparseMem,
    /// Backup SRAM.
    pub backup: SparseMem,
    /// Core.
    pub core: Core,
    /// RTT up-channel bytes, when the running firmware has RTT.
    pub rtt: Option<VecDeque<u8>>,
    /// The emulated core's registers (as of its last instruction), while firmware runs on it.
    pub regs: Option<bootproof_rig::probe::CoreRegisters>,
    /// Single steps the debugger asked for and the emulated core has not taken yet.
    pub(crate) step_requests: u32,
    /// The firmware runs on the emulated core (not natively).
    pub(crate) emulated: bool,
    /// A flash operation in flight (torn if a reset or power cut lands before it completes).
    pub(crate) pending: Option<FlashOp>,
    task: Option<tokio::task::AbortHandle>,
    can_nodes: Vec<CanPortId>,
    deferred_boot: Option<u32>,
    go_pending: bool,
}

type CanPortId = u64;

/// One twin event, for timelines and debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Virtual time since the twin was created.
    pub at: Duration,
    /// What happened.
    pub what: String,
}

/// A simulated board.
pub struct Board {
    profile: Arc<BoardProfile>,
    state: Mutex<State>,
    can: CanBusModel,
    uart: UartLink,
    registry: Registry,
    events: Mutex<Vec<Event>>,
    record: bool,
    epoch: Instant,
    halted: watch::Sender<bool>,
    /// Steps asked for (a counter; the emulated core waits on it while halted).
    steps: watch::Sender<u64>,
    /// Steps taken.
    stepped: watch::Sender<u64>,
    strict_mmio: std::sync::atomic::AtomicBool,
    /// Symbol tables of firmware loaded into the board, newest first.
    symbols: Mutex<Vec<Arc<bootproof_rig::symbols::Symbols>>>,
    me: Weak<Board>,
}

/// Why a firmware operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McuError {
    /// The board was reset or lost power under this firmware.
    #[error("reset or power loss under the running firmware")]
    Reset,
    /// Flash error.
    #[error(transparent)]
    Flash(#[from] FlashFault),
    /// Access to an address with nothing behind it.
    #[error("bus fault at {0:#010x}")]
    BusFault(u32),
}

impl Board {
    /// A board for `profile` on `can`/`uart`, unpowered, NRST released, BOOT0 low, blank flash.
    pub fn new(
        profile: Arc<BoardProfile>,
        can: CanBusModel,
        uart: UartLink,
        registry: Registry,
        record: bool,
    ) -> Arc<Board> {
        let flash = FlashArray::new(&profile.flash);
        Arc::new_cyclic(|me| Board {
            state: Mutex::new(State {
                powered: false,
                nrst_low: false,
                boot0: Level::Low,
                generation: 0,
                power_cycles: 0,
                rsr: 0,
                rmvf: false,
                ecc_pending: None,
                empty_flag: true,
                rdp: Rdp::Level0,
                flash,
                ram: SparseMem::default(),
                backup: SparseMem::default(),
                core: Core { run: Run::Off, pc: 0, what: "unpowered".into() },
                rtt: None,
                regs: None,
                step_requests: 0,
                emulated: false,
                pending: None,
                task: None,
                can_nodes: Vec::new(),
                deferred_boot: None,
                go_pending: false,
            }),
            profile,
            can,
            uart,
            registry,
            events: Mutex::new(Vec::new()),
            record,
            epoch: Instant::now(),
            halted: watch::channel(false).0,
            steps: watch::channel(0).0,
            stepped: watch::channel(0).0,
            strict_mmio: std::sync::atomic::AtomicBool::new(false),
            symbols: Mutex::new(Vec::new()),
            me: me.clone(),
        })
    }

    /// The board profile.
    pub fn profile(&self) -> &Arc<BoardProfile> {
        &self.profile
    }

    /// Emulated firmware: accesses outside the peripheral models fault (strict) or are logged.
    pub fn set_strict_mmio(&self, strict: bool) {
        self.strict_mmio.store(strict, std::sync::atomic::Ordering::Relaxed);
    }

    /// The CAN bus the board's controller attaches to.
    pub fn can_bus(&self) -> &CanBusModel {
        &self.can
    }

    /// The serial link.
    pub fn uart(&self) -> &UartLink {
        &self.uart
    }

    /// Lock the state (short critical sections only; never across an await).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arc(&self) -> Arc<Board> {
        self.me.upgrade().expect("board alive")
    }

    /// Record an event.
    pub fn log(&self, what: impl Into<String>) {
        if self.record {
            let at = self.epoch.elapsed();
            self.events.lock().unwrap_or_else(|e| e.into_inner()).push(Event { at, what: what.into() });
        }
    }

    /// Add the symbol table of firmware in the board's flash (the probe adds an ELF's when it
    /// flashes one; add others, e.g. of images written through the ROM bootloader, here). The
    /// newest table wins where tables overlap.
    pub fn add_symbols(&self, symbols: bootproof_rig::symbols::Symbols) {
        if symbols.is_empty() {
            return;
        }
        let mut t = self.symbols.lock().unwrap_or_else(|e| e.into_inner());
        t.insert(0, Arc::new(symbols));
        t.truncate(16);
    }

    /// `name+offset` for an address, from the symbol tables added so far.
    pub fn symbolize(&self, addr: u32) -> Option<String> {
        let t = self.symbols.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().find_map(|s| s.describe(addr))
    }

    /// Record an event that happened at `at` (the emulated core's cycle-exact time; not later
    /// than now). Events stay in time order.
    pub(crate) fn log_at(&self, at: Instant, what: impl Into<String>) {
        if self.record {
            let at = at.saturating_duration_since(self.epoch);
            let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            let pos = events.iter().rposition(|e| e.at <= at).map_or(0, |i| i + 1);
            events.insert(pos, Event { at, what: what.into() });
        }
    }

    /// Events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The core's current state.
    pub fn core(&self) -> Core {
        self.state().core.clone()
    }

    // ---- lines --------------------------------------------------------------------------

    /// Switch the supply.
    pub fn set_power(&self, on: bool) {
        let mut st = self.state();
        if on == st.powered {
            return;
        }
        if on {
            st.powered = true;
            st.power_cycles += 1;
            let pc = st.power_cycles;
            st.ram.power_loss(pc);
            if self.profile.backup.as_ref().is_none_or(|b| b.vbat_tied_to_vdd) {
                st.backup.power_loss(pc);
            }
            // RSR is reset by the power-on reset, then holds the power-on flags.
            st.rsr = self.profile.reset.value_for(ResetKind::PowerOn);
            st.rmvf = false;
            // Option bytes load at power-on: the empty check looks at the first flash word.
            st.empty_flag = st.flash.first_word_erased();
            self.log("power on (power-on reset)");
            if st.nrst_low {
                st.core = Core { run: Run::InReset, pc: 0, what: "held in reset (NRST low)".into() };
            } else {
                self.boot(&mut st);
            }
        } else {
            self.enter_reset(&mut st);
            st.powered = false;
            st.core = Core { run: Run::Off, pc: 0, what: "unpowered".into() };
            self.log("power off");
        }
    }

    /// Drive NRST (`true` = held low).
    pub fn set_nrst(&self, low: bool) {
        let mut st = self.state();
        if low == st.nrst_low {
            return;
        }
        st.nrst_low = low;
        if !st.powered {
            return;
        }
        if low {
            self.enter_reset(&mut st);
            self.latch_flags(&mut st, self.profile.reset.value_for(ResetKind::Pin));
            st.core = Core { run: Run::InReset, pc: 0, what: "held in reset (NRST low)".into() };
            self.log("NRST low");
        } else {
            self.log(format!("NRST released (BOOT0 {})", st.boot0));
            self.boot(&mut st);
        }
    }

    /// Drive the BOOT0 pin. Sampled only at the next reset release or power-on.
    pub fn set_boot0(&self, level: Level) {
        let mut st = self.state();
        if st.boot0 != level {
            st.boot0 = level;
            self.log(format!("BOOT0 {level}"));
        }
    }

    // ---- resets and boot ----------------------------------------------------------------

    /// Stop everything running: tear an in-flight flash operation, abort the firmware, detach
    /// its peripherals.
    fn enter_reset(&self, st: &mut State) {
        st.generation += 1;
        if let Some((at, old)) = st.ecc_pending.take() {
            st.ram.write(at, &old);
            self.log(format!(
                "RAM word {at:#010x} was still in the ECC write buffer: lost by the reset (write another word after it)"
            ));
        }
        match st.pending.take() {
            Some(FlashOp::Program { addr, data }) => {
                st.flash.tear_word(addr, &data);
                self.log(format!("flash word {addr:#010x} torn by reset/power loss"));
            }
            Some(FlashOp::Erase { sector }) => {
                st.flash.tear_sector(sector);
                self.log(format!("sector {sector} erase torn by reset/power loss"));
            }
            Some(FlashOp::Mass) => {
                for s in 0..st.flash.sectors().len() as u32 {
                    st.flash.tear_sector(s);
                }
                self.log("mass erase torn by reset/power loss");
            }
            None => {}
        }
        self.stop_firmware(st);
        st.regs = None;
        st.step_requests = 0;
        st.emulated = false;
        self.halted.send_replace(false);
    }

    fn stop_firmware(&self, st: &mut State) {
        if let Some(t) = st.task.take() {
            t.abort();
        }
        for id in st.can_nodes.drain(..) {
            self.can.detach(id);
        }
        self.uart.set_board_rx(BoardRx::Closed);
        st.rtt = None;
        st.deferred_boot = None;
    }

    /// An internal system reset of `kind` (software, watchdog, option-byte reload).
    pub fn system_reset(&self, kind: ResetKind) {
        let mut st = self.state();
        if !st.powered {
            return;
        }
        self.enter_reset(&mut st);
        let flags = if self.profile.reset.events.contains_key(kind.key()) {
            self.profile.reset.value_for(kind)
        } else {
            self.profile.reset.value_for(ResetKind::Pin)
        };
        self.latch_flags(&mut st, flags);
        if kind == ResetKind::OptionReload {
            st.empty_flag = st.flash.first_word_erased();
        }
        self.log(format!("{kind} reset"));
        if st.nrst_low {
            st.core = Core { run: Run::InReset, pc: 0, what: "held in reset (NRST low)".into() };
        } else {
            self.boot(&mut st);
        }
    }

    /// Sample BOOT0 and boot.
    fn boot(&self, st: &mut State) {
        st.generation += 1;
        let addr = self.profile.boot_address(st.boot0, st.empty_flag);
        let why = if self.profile.empty_check.is_some() && st.empty_flag && st.boot0 == Level::Low {
            " (flash-empty flag set)"
        } else {
            ""
        };
        self.log(format!("boot from {addr:#010x}{why}"));
        self.start_at(st, addr);
    }

    pub(crate) fn lock_up(&self, st: &mut State, pc: u32, why: String) {
        self.log(format!("core locked up: {why}"));
        st.core = Core { run: Run::LockedUp, pc, what: why };
    }

    fn spawn(&self, st: &mut State, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => st.task = Some(h.spawn(fut).abort_handle()),
            Err(_) => self.log("no async runtime: firmware not started"),
        }
    }

    /// Fetch the vector table at `vt` and run what is there (reset boot or ROM Go).
    fn start_at(&self, st: &mut State, vt: u32) {
        let profile = self.profile.clone();
        st.emulated = false;
        st.regs = None;
        if profile.is_system_memory(vt) {
            if let Some(ec) = &profile.empty_check
                && ec.flag_cleared_by_bootloader
            {
                st.empty_flag = false;
            }
            st.core =
                Core { run: Run::Running, pc: profile.system_memory.bootloader_entry, what: "ROM bootloader".into() };
            let mcu = Mcu { board: self.arc(), era: st.generation };
            self.spawn(st, crate::rom::run(mcu));
            return;
        }
        let mut v = [0u8; 8];
        if let Err(e) = self.mem_read(st, vt, &mut v, Access::Core) {
            return self.lock_up(st, vt, format!("bus fault fetching the vector table at {vt:#010x} ({e})"));
        }
        let sp = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        let reset = u32::from_le_bytes([v[4], v[5], v[6], v[7]]);
        if let Some((desc, fw)) = self.identify(st, vt) {
            st.core = Core { run: Run::Running, pc: reset & !1, what: format!("{} v{}", desc.name, desc.version) };
            self.log(format!("running {} v{} from {vt:#010x}", desc.name, desc.version));
            let mcu = Mcu { board: self.arc(), era: st.generation };
            let boot = crate::firmware::Boot { vector_table: vt, descriptor: desc };
            self.spawn(st, async move { fw.run(mcu, boot).await });
            return;
        }
        // Real firmware, or whatever the vector table holds (a blank one included): the
        // emulated core executes it, and faults and locks up as the silicon does.
        st.core = Core { run: Run::Running, pc: reset & !1, what: format!("firmware at {vt:#010x} (emulated)") };
        self.log(format!("running firmware at {vt:#010x} on the emulated core (SP {sp:#010x}, reset {reset:#010x})"));
        let mcu = Mcu { board: self.arc(), era: st.generation };
        let entry = if st.go_pending { crate::emu::Entry::Go } else { crate::emu::Entry::Reset };
        st.go_pending = false;
        let strict = self.strict_mmio.load(std::sync::atomic::Ordering::Relaxed);
        st.emulated = true;
        self.spawn(st, crate::emu::run(mcu, vt, entry, strict));
    }

    fn identify(&self, st: &State, vt: u32) -> Option<(Descriptor, Arc<dyn crate::firmware::Firmware>)> {
        let mut d = [0u8; DESCRIPTOR_LEN];
        self.mem_read(st, vt + DESCRIPTOR_OFFSET, &mut d, Access::Core).ok()?;
        let (desc, crc) = Descriptor::decode(&d)?;
        if desc.image_len < DESCRIPTOR_OFFSET + DESCRIPTOR_LEN as u32 || desc.image_len > self.profile.flash.size() {
            return None;
        }
        let mut image = vec![0u8; desc.image_len as usize];
        self.mem_read(st, vt, &mut image, Access::Core).ok()?;
        if image_crc(&image) != crc {
            return None;
        }
        let fw = self.registry.get(desc.kind)?;
        Some((desc, fw))
    }

    /// Jump to the application whose vector table is at `vt` (ROM Go): no reset, flags kept.
    fn jump(&self, era: u64, vt: u32) -> Result<(), McuError> {
        let mut st = self.state();
        if st.generation != era || !st.powered {
            return Err(McuError::Reset);
        }
        // The bootloader deinitialises its peripherals; the application brings up its own.
        st.generation += 1;
        st.task = None; // the caller (the ROM task) returns by itself
        for id in st.can_nodes.drain(..) {
            self.can.detach(id);
        }
        self.uart.set_board_rx(BoardRx::Closed);
        self.log(format!("Go {vt:#010x} (no reset: reset flags kept)"));
        st.go_pending = !self.profile.is_system_memory(vt);
        self.start_at(&mut st, vt);
        st.go_pending = false;
        Ok(())
    }

    // ---- memory map -----------------------------------------------------------------------

    /// Read through the memory map.
    pub(crate) fn mem_read(&self, st: &State, addr: u32, buf: &mut [u8], access: Access) -> Result<(), McuError> {
        let len = buf.len() as u32;
        let p = &self.profile;
        if p.flash.contains(addr) {
            if st.rdp == Rdp::Level1 && access != Access::Core {
                return Err(McuError::BusFault(addr));
            }
            return st.flash.read(addr, buf).map_err(McuError::Flash);
        }
        if p.ram_region(addr, len).is_some() {
            st.ram.read(addr, buf);
            return Ok(());
        }
        if let Some(b) = &p.backup
            && addr >= b.base
            && addr as u64 + len as u64 <= b.base as u64 + b.size as u64
        {
            st.backup.read(addr, buf);
            return Ok(());
        }
        let info = |a: u32| self.info_byte(a).is_some();
        let in_sys = p.is_system_memory(addr)
            && addr as u64 + len as u64 <= p.system_memory.base as u64 + p.system_memory.size as u64;
        if in_sys || (0..len).all(|i| info(addr + i)) {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = addr + i as u32;
                *b = self.info_byte(a).unwrap_or_else(|| self.system_memory_byte(a));
            }
            return Ok(());
        }
        let reg = p.reset.register;
        if addr >= reg && addr as u64 + len as u64 <= reg as u64 + 4 {
            let bytes = self.rsr_value(st).to_le_bytes();
            buf.copy_from_slice(&bytes[(addr - reg) as usize..(addr - reg + len) as usize]);
            return Ok(());
        }
        Err(McuError::BusFault(addr))
    }

    /// The device information area (the reference manual's "device electronic signature"): a
    /// fixed 96-bit unique ID and the flash size register (KiB, 16 bits), at the profile's
    /// addresses.
    pub(crate) fn info_byte(&self, addr: u32) -> Option<u8> {
        let id = &self.profile.identity;
        if (id.uid_address..id.uid_address + 12).contains(&addr) {
            let uid: [u8; 12] = *b"BOOTPROOF-ID";
            return Some(uid[(addr - id.uid_address) as usize]);
        }
        if (id.flash_size_address..id.flash_size_address + 2).contains(&addr) {
            let kib = (self.profile.flash.size() / 1024) as u16;
            return Some(kib.to_le_bytes()[(addr - id.flash_size_address) as usize]);
        }
        None
    }

    pub(crate) fn system_memory_byte(&self, addr: u32) -> u8 {
        let p = &self.profile;
        if addr == p.identity.bootloader_id_address {
            return p.identity.bootloader_id;
        }
        let entry = p.system_memory.bootloader_entry;
        if addr >= entry && addr < entry + 8 {
            // The bootloader's own vector table: SP in its RAM, reset handler in system memory.
            let sp = p.rom.ram.first().map(|r| r[1]).unwrap_or(0x2000_4000);
            let words = [sp, entry + 0x200 + 1];
            let i = ((addr - entry) / 4) as usize;
            return words[i].to_le_bytes()[((addr - entry) % 4) as usize];
        }
        // Stand-in for ROM code: a fixed, non-erased pattern.
        (addr.wrapping_mul(2_654_435_761) >> 24) as u8 | 0x01
    }

    /// A reset latches `flags` into the reset-cause register, unless RMVF is held (assumption
    /// `rsr-rmvf`): then they are lost.
    fn latch_flags(&self, st: &mut State, flags: u32) {
        if st.rmvf {
            self.log(format!(
                "{} flags {flags:#010x} lost: RMVF is still 1 (write it 0 after clearing)",
                self.profile.reset.register_name
            ));
        } else {
            st.rsr |= flags;
        }
    }

    /// The reset-cause register as read: the flags, and RMVF while it is held.
    pub(crate) fn rsr_value(&self, st: &State) -> u32 {
        st.rsr | ((st.rmvf as u32) << self.profile.reset.rmvf_bit)
    }

    /// A write of the reset-cause register with RMVF `set` (by the debugger, or `by` the
    /// firmware): 1 clears the flags; with `reset.rmvf_held` the bit stays until written 0.
    pub(crate) fn write_rmvf(&self, st: &mut State, set: bool, by: &str) {
        let r = &self.profile.reset;
        if set {
            st.rsr = 0;
            self.log(format!("{} cleared (RMVF){by}", r.register_name));
        } else if st.rmvf {
            self.log(format!("{} RMVF written 0{by}: flags latch again", r.register_name));
        }
        st.rmvf = set && r.rmvf_held;
    }

    /// A write from the debug port: through the memory map, and into the ECC write buffer of a
    /// RAM region that has one (`ecc_write_buffer`, assumption `axi-ecc-write-buffer`). The
    /// last word written stays in the buffer until a write to another word; a reset drops it.
    pub(crate) fn debug_write(&self, st: &mut State, addr: u32, data: &[u8]) -> Result<(), McuError> {
        let len = data.len() as u32;
        let word = self.profile.ram_region(addr, len).and_then(|r| r.ecc_write_buffer).filter(|w| *w > 0);
        let Some(word) = word.filter(|_| len > 0) else { return self.mem_write(st, addr, data) };
        let last = (addr + len - 1) / word * word;
        // Another word flushes the buffer; the same word keeps the content it had before.
        let old = match st.ecc_pending.take() {
            Some((at, old)) if at == last => old,
            _ => {
                let mut old = vec![0u8; word as usize];
                st.ram.read(last, &mut old);
                old
            }
        };
        self.mem_write(st, addr, data)?;
        st.ecc_pending = Some((last, old));
        Ok(())
    }

    /// Write through the memory map (RAM, backup SRAM, the reset-cause register's RMVF).
    pub(crate) fn mem_write(&self, st: &mut State, addr: u32, data: &[u8]) -> Result<(), McuError> {
        let len = data.len() as u32;
        let p = self.profile.clone();
        if p.ram_region(addr, len).is_some() {
            st.ram.write(addr, data);
            return Ok(());
        }
        if let Some(b) = &p.backup
            && addr >= b.base
            && addr as u64 + len as u64 <= b.base as u64 + b.size as u64
        {
            st.backup.write(addr, data);
            return Ok(());
        }
        if addr == p.reset.register && data.len() == 4 {
            let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            self.write_rmvf(st, v & (1 << p.reset.rmvf_bit) != 0, "");
            return Ok(());
        }
        Err(McuError::BusFault(addr))
    }

    // ---- timed flash operations -------------------------------------------------------------

    /// Program `data` at `addr` word by word, each taking the profile's program time. A reset
    /// during a word tears it.
    pub(crate) async fn timed_program(&self, era: u64, addr: u32, data: &[u8]) -> Result<(), McuError> {
        let word = self.profile.flash.word as usize;
        {
            let st = self.state();
            if st.generation != era {
                return Err(McuError::Reset);
            }
            st.flash.check_program(addr, data.len())?;
        }
        let t = Duration::from_micros(self.profile.flash.program_us as u64);
        for (i, chunk) in data.chunks(word).enumerate() {
            let a = addr + (i * word) as u32;
            {
                let mut st = self.state();
                if st.generation != era {
                    return Err(McuError::Reset);
                }
                st.pending = Some(FlashOp::Program { addr: a, data: chunk.to_vec() });
            }
            bootproof_rig::time::sleep(t).await;
            let mut st = self.state();
            if st.generation != era {
                return Err(McuError::Reset);
            }
            st.pending = None;
            st.flash.program_word(a, chunk)?;
        }
        Ok(())
    }

    /// Erase one sector in its erase time.
    pub(crate) async fn timed_erase(&self, era: u64, sector: u32) -> Result<(), McuError> {
        let ms = {
            let mut st = self.state();
            if st.generation != era {
                return Err(McuError::Reset);
            }
            let s = *st.flash.sectors().get(sector as usize).ok_or(McuError::Flash(FlashFault::OutOfRange(sector)))?;
            if st.flash.is_protected(sector) {
                return Err(McuError::Flash(FlashFault::WriteProtected(sector)));
            }
            st.pending = Some(FlashOp::Erase { sector });
            s.erase_ms
        };
        bootproof_rig::time::sleep(Duration::from_millis(ms as u64)).await;
        let mut st = self.state();
        if st.generation != era {
            return Err(McuError::Reset);
        }
        st.pending = None;
        st.flash.erase_sector(sector)?;
        self.log(format!("sector {sector} erased"));
        Ok(())
    }

    /// Mass erase in the mass-erase time. Refused if any sector is write-protected.
    pub(crate) async fn timed_mass_erase(&self, era: u64) -> Result<(), McuError> {
        {
            let mut st = self.state();
            if st.generation != era {
                return Err(McuError::Reset);
            }
            if let Some(s) = (0..st.flash.sectors().len() as u32).find(|s| st.flash.is_protected(*s)) {
                return Err(McuError::Flash(FlashFault::WriteProtected(s)));
            }
            st.pending = Some(FlashOp::Mass);
        }
        bootproof_rig::time::sleep(Duration::from_millis(self.profile.flash.mass_erase_ms as u64)).await;
        let mut st = self.state();
        if st.generation != era {
            return Err(McuError::Reset);
        }
        st.pending = None;
        for s in 0..st.flash.sectors().len() as u32 {
            st.flash.erase_sector(s)?;
        }
        self.log("mass erase");
        Ok(())
    }

    // ---- debugger side ----------------------------------------------------------------------

    /// Halt the core for the debugger. Returns the generation the debugger now owns.
    pub(crate) fn debug_halt(&self) -> Option<u64> {
        let mut st = self.state();
        if !st.powered || st.nrst_low {
            return None;
        }
        if st.core.run == Run::Running {
            st.core.run = Run::Halted;
            self.halted.send_replace(true);
            self.log("core halted by debugger");
        }
        Some(st.generation)
    }

    /// Resume a halted core (or start the boot deferred by reset-and-halt).
    pub(crate) fn debug_run(&self) {
        let mut st = self.state();
        if let Some(vt) = st.deferred_boot.take() {
            self.log("core resumed at the reset vector");
            self.start_at(&mut st, vt);
            return;
        }
        if st.core.run == Run::Halted {
            st.core.run = Run::Running;
            self.halted.send_replace(false);
            self.log("core resumed");
        }
    }

    /// System reset through AIRCR.SYSRESETREQ; `halt` stops at the reset vector.
    pub(crate) fn debug_reset(&self, halt: bool) {
        let mut st = self.state();
        if !st.powered {
            return;
        }
        self.enter_reset(&mut st);
        self.latch_flags(&mut st, self.profile.reset.value_for(ResetKind::Software));
        self.log(if halt { "debugger reset and halt" } else { "debugger reset" });
        if st.nrst_low {
            st.core = Core { run: Run::InReset, pc: 0, what: "held in reset (NRST low)".into() };
            return;
        }
        st.generation += 1;
        let vt = self.profile.boot_address(st.boot0, st.empty_flag);
        if halt && !self.profile.is_system_memory(vt) && self.identify(&st, vt).is_none() {
            // Firmware for the emulated core: it starts halted before its first instruction.
            self.start_at(&mut st, vt);
            if st.core.run == Run::Running {
                st.core.run = Run::Halted;
                self.halted.send_replace(true);
            }
            return;
        }
        if halt {
            let mut v = [0u8; 8];
            let pc =
                self.mem_read(&st, vt, &mut v, Access::Core).map(|_| u32::from_le_bytes([v[4], v[5], v[6], v[7]]) & !1);
            st.core = Core {
                run: Run::Halted,
                pc: if self.profile.is_system_memory(vt) {
                    self.profile.system_memory.bootloader_entry
                } else {
                    pc.unwrap_or(0xFFFF_FFFE)
                },
                what: "halted at the reset vector".into(),
            };
            st.deferred_boot = Some(vt);
        } else {
            self.start_at(&mut st, vt);
        }
    }

    /// What a halted emulated core waits for: the debugger resumes it, or asks for one step.
    pub(crate) async fn run_gate(&self) -> Gate {
        let mut halted = self.halted.subscribe();
        let mut steps = self.steps.subscribe();
        loop {
            if !*halted.borrow_and_update() {
                return Gate::Run;
            }
            steps.borrow_and_update();
            {
                let mut st = self.state();
                if st.step_requests > 0 {
                    st.step_requests -= 1;
                    return Gate::Step;
                }
            }
            tokio::select! {
                r = halted.changed() => if r.is_err() { return Gate::Run },
                _ = steps.changed() => {}
            }
        }
    }

    /// The emulated core took a step.
    pub(crate) fn step_taken(&self) {
        self.stepped.send_modify(|n| *n += 1);
    }

    /// Debugger single step of the halted emulated core; returns when it is taken (or the
    /// board reset under it).
    pub(crate) async fn debug_step(&self) -> Result<(), String> {
        let mut done = self.stepped.subscribe();
        let target = {
            let mut st = self.state();
            if st.core.run != Run::Halted {
                return Err(format!("the core is {}: halt it first", st.core.run.name()));
            }
            if !st.emulated {
                return Err(format!(
                    "{} runs natively in the twin: only firmware on the emulated core can be stepped",
                    st.core.what
                ));
            }
            st.step_requests += 1;
            *done.borrow_and_update() + st.step_requests as u64
        };
        self.steps.send_modify(|n| *n += 1);
        let wait = async {
            while *done.borrow_and_update() < target {
                if done.changed().await.is_err() {
                    break;
                }
            }
        };
        bootproof_rig::time::timeout(Duration::from_secs(1), wait)
            .await
            .map_err(|_| "the core did not take the step (reset or powered off meanwhile)".to_string())
    }

    /// Resolve once the debugger has not halted the core.
    pub(crate) async fn halt_gate(&self) {
        let mut rx = self.halted.subscribe();
        while *rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn register_can(&self, era: u64, id: CanPortId) -> bool {
        let mut st = self.state();
        if st.generation != era {
            return false;
        }
        st.can_nodes.push(id);
        true
    }
}

/// Who accesses memory (the debugger is subject to readout protection, the core is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The core itself (firmware, vector fetch).
    Core,
    /// The debug port.
    Debug,
}

/// The handle a running firmware gets: its view of the MCU. Every operation fails with
/// [`McuError::Reset`] once the board has been reset under it.
#[derive(Clone)]
pub struct Mcu {
    board: Arc<Board>,
    era: u64,
}

impl Mcu {
    /// The board profile.
    pub fn profile(&self) -> &BoardProfile {
        &self.board.profile
    }

    /// The board (for the twin's own models).
    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// Whether this firmware is still the one running.
    pub fn alive(&self) -> bool {
        self.board.state().generation == self.era
    }

    /// [`Mcu::alive`] with the state already locked.
    pub(crate) fn alive_in(&self, st: &State) -> bool {
        st.generation == self.era && st.powered
    }

    fn check(&self) -> Result<(), McuError> {
        if self.alive() { Ok(()) } else { Err(McuError::Reset) }
    }

    /// Wait (virtual time), honouring a debugger halt.
    pub async fn sleep(&self, d: Duration) -> Result<(), McuError> {
        self.board.halt_gate().await;
        bootproof_rig::time::sleep(d).await;
        self.board.halt_gate().await;
        self.check()
    }

    /// Read memory (flash ECC errors are bus faults).
    pub fn read(&self, addr: u32, buf: &mut [u8]) -> Result<(), McuError> {
        let st = self.board.state();
        if st.generation != self.era {
            return Err(McuError::Reset);
        }
        self.board.mem_read(&st, addr, buf, Access::Core)
    }

    /// Whether the ECC corrects a single error in a flash word of `[addr, addr + len)`.
    pub fn flash_corrected(&self, addr: u32, len: usize) -> bool {
        let st = self.board.state();
        let mut buf = vec![0u8; len];
        matches!(st.flash.read_checked(addr, &mut buf), Ok(Some(_)))
    }

    /// Read memory as the ROM bootloader does (subject to readout protection).
    pub fn read_protected(&self, addr: u32, buf: &mut [u8]) -> Result<(), McuError> {
        let st = self.board.state();
        if st.generation != self.era {
            return Err(McuError::Reset);
        }
        self.board.mem_read(&st, addr, buf, Access::Debug)
    }

    /// Write RAM or registers.
    pub fn write(&self, addr: u32, data: &[u8]) -> Result<(), McuError> {
        let mut st = self.board.state();
        if st.generation != self.era {
            return Err(McuError::Reset);
        }
        self.board.mem_write(&mut st, addr, data)
    }

    /// Program flash (word aligned), in real program time.
    pub async fn program(&self, addr: u32, data: &[u8]) -> Result<(), McuError> {
        self.board.halt_gate().await;
        self.board.timed_program(self.era, addr, data).await
    }

    /// Erase one sector, in real erase time.
    pub async fn erase(&self, sector: u32) -> Result<(), McuError> {
        self.board.halt_gate().await;
        self.board.timed_erase(self.era, sector).await
    }

    /// Program flash at once and return the time it takes on silicon, which the caller then
    /// spends (`sleep`). For native firmware's synchronous flash driver (the boot core's
    /// `NorFlash`): the operation cannot be torn by a reset in between, a simplification the
    /// boot core's own power-cut sweeps cover exhaustively.
    pub fn program_now(&self, addr: u32, data: &[u8]) -> Result<Duration, McuError> {
        let mut st = self.board.state();
        if st.generation != self.era || !st.powered {
            return Err(McuError::Reset);
        }
        st.flash.check_program(addr, data.len())?;
        let word = self.board.profile.flash.word as usize;
        for (i, chunk) in data.chunks(word).enumerate() {
            st.flash.program_word(addr + (i * word) as u32, chunk)?;
        }
        Ok(Duration::from_micros(self.board.profile.flash.program_us as u64 * data.len().div_ceil(word) as u64))
    }

    /// Erase one sector at once and return the time it takes on silicon (see
    /// [`Mcu::program_now`]).
    pub fn erase_now(&self, sector: u32) -> Result<Duration, McuError> {
        let mut st = self.board.state();
        if st.generation != self.era || !st.powered {
            return Err(McuError::Reset);
        }
        let s = *st.flash.sectors().get(sector as usize).ok_or(McuError::Flash(FlashFault::OutOfRange(sector)))?;
        st.flash.erase_sector(sector)?;
        drop(st);
        self.board.log(format!("sector {sector} erased"));
        Ok(Duration::from_millis(s.erase_ms as u64))
    }

    /// Erase all of flash.
    pub async fn mass_erase(&self) -> Result<(), McuError> {
        self.board.halt_gate().await;
        self.board.timed_mass_erase(self.era).await
    }

    /// The reset-cause register.
    pub fn reset_flags(&self) -> u32 {
        let st = self.board.state();
        self.board.rsr_value(&st)
    }

    /// Readout protection level.
    pub fn rdp(&self) -> Rdp {
        self.board.state().rdp
    }

    /// Set readout protection (option bytes; takes effect at the option-byte reload).
    pub fn set_rdp(&self, rdp: Rdp) -> Result<(), McuError> {
        let mut st = self.board.state();
        if st.generation != self.era {
            return Err(McuError::Reset);
        }
        st.rdp = rdp;
        Ok(())
    }

    /// Set or clear write protection of a sector.
    pub fn set_write_protection(&self, sector: u32, on: bool) -> Result<(), McuError> {
        let mut st = self.board.state();
        if st.generation != self.era {
            return Err(McuError::Reset);
        }
        st.flash.set_protected(sector, on);
        Ok(())
    }

    /// Whether a sector is write-protected.
    pub fn is_write_protected(&self, sector: u32) -> bool {
        self.board.state().flash.is_protected(sector)
    }

    /// Reset the MCU from inside (software reset, watchdog, option-byte reload). The caller's
    /// task is aborted; this never returns.
    pub async fn reset(&self, kind: ResetKind) -> McuError {
        if self.alive() {
            self.board.system_reset(kind);
        }
        std::future::pending::<()>().await;
        McuError::Reset
    }

    /// Jump to the vector table at `vt` without a reset (ROM bootloader Go).
    pub fn jump(&self, vt: u32) -> Result<(), McuError> {
        self.board.jump(self.era, vt)
    }

    /// Bring up the CAN controller at `rates`.
    pub fn can(&self, rates: Bitrates) -> Result<CanPort, McuError> {
        let port = self.board.can.attach("board", rates);
        if self.board.register_can(self.era, port.node_id()) { Ok(port) } else { Err(McuError::Reset) }
    }

    /// Set up the USART receiver.
    pub fn uart_setup(&self, rx: BoardRx) -> Result<(), McuError> {
        self.check()?;
        self.board.uart.set_board_rx(rx);
        Ok(())
    }

    /// Transmit on the USART.
    pub async fn uart_write(&self, data: &[u8]) -> Result<(), McuError> {
        self.board.halt_gate().await;
        self.check()?;
        self.board.uart.board_write(data).await;
        self.check()
    }

    /// Receive from the USART (empty after `timeout`).
    pub async fn uart_read(&self, max: usize, timeout: Duration) -> Result<Vec<u8>, McuError> {
        let data = self.board.uart.board_read(max, timeout).await;
        self.board.halt_gate().await;
        self.check()?;
        Ok(data)
    }

    /// Open an RTT up-channel.
    pub fn rtt_enable(&self) -> Result<(), McuError> {
        let mut st = self.board.state();
        if st.generation != self.era {
            return Err(McuError::Reset);
        }
        st.rtt = Some(VecDeque::new());
        Ok(())
    }

    /// Write to the RTT up-channel (dropped when full, like a non-blocking channel).
    pub fn rtt_write(&self, data: &[u8]) {
        let mut st = self.board.state();
        if st.generation != self.era {
            return;
        }
        if let Some(q) = st.rtt.as_mut() {
            let room = 1024usize.saturating_sub(q.len());
            q.extend(&data[..data.len().min(room)]);
        }
    }

    /// The core takes a fault it cannot handle (e.g. a bus fault in the ROM bootloader) and
    /// locks up. The calling firmware must return.
    pub fn fault(&self, why: impl Into<String>) {
        let mut st = self.board.state();
        if st.generation != self.era {
            return;
        }
        st.generation += 1;
        st.task = None;
        for id in st.can_nodes.drain(..) {
            self.board.can.detach(id);
        }
        self.board.uart.set_board_rx(BoardRx::Closed);
        let pc = st.core.pc;
        self.board.lock_up(&mut st, pc, why.into());
    }

    /// Record what the core executes (for the probe's PC).
    pub fn set_pc(&self, pc: u32) {
        let mut st = self.board.state();
        if st.generation == self.era {
            st.core.pc = pc;
        }
    }

    /// Log a twin event.
    pub fn log(&self, what: impl Into<String>) {
        self.board.log(what);
    }
}
