//! The debug probe through probe-rs.
//!
//! probe-rs is blocking, so a dedicated thread owns the [`probe_rs::Session`] and serves
//! commands sent from the async side ([`ThreadedProbe`]). The decisions bootproof adds on top of
//! probe-rs live in the worker and are tested against a fake [`Target`]:
//! * attach under reset with retries, then a normal attach (probe-rs#4113: the first attach
//!   after a power cycle fails on STM32);
//! * never read a stale RTT control block: after every reset and flash the core is halted at the
//!   reset vector, the block's ID is zeroed, and the core resumes (probe-run#351, defmt#388);
//! * an attach under reset leaves the core halted at its reset vector: unless asked to halt,
//!   the worker resumes it, so `rig check` and `probe info` leave the board running;
//! * after a power cycle the debug port is reset and the session is stale: an operation that
//!   fails is retried once after a *normal* re-attach (never under reset, which would add
//!   PINRSTF to the reset flags a scenario is about to read);
//! * a write into the H7's AXI SRAM is followed by a rewrite of another word of it, so its last
//!   64-bit word leaves the ECC write buffer and survives an NRST ([`crate::probe::ecc_flush_word`]);
//! * mass erase only with the opt-in;
//! * the PC of a *running* core is sampled through DWT_PCSR, so the stage (ROM bootloader or
//!   application) can be told without halting the board.

use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use bootproof_fixtures::ProbeConfig;

use crate::error::ProbeError;
use crate::image::FirmwareImage;
use crate::probe::{
    CoreRegisters, CoreState, CoreStatus, DebugProbe, FlashPhase, FlashProgress, Permissions, ProbeInfo,
};

/// DEMCR (Debug Exception and Monitor Control Register).
const DEMCR: u32 = 0xE000_EDFC;
/// DEMCR.TRCENA: enables the DWT.
const TRCENA: u32 = 1 << 24;
/// DWT_PCSR: a sample of the running core's PC.
const DWT_PCSR: u32 = 0xE000_101C;

/// Blocking operations on an attached target: probe-rs's session, or a fake in tests.
pub trait Target: Send {
    /// Probe name and chip.
    fn info(&mut self) -> Result<ProbeInfo, String>;
    /// Read memory.
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), String>;
    /// Write memory.
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), String>;
    /// Halt.
    fn halt(&mut self) -> Result<(), String>;
    /// Resume.
    fn run(&mut self) -> Result<(), String>;
    /// Execute one instruction of the halted core; returns the PC after it.
    fn step(&mut self) -> Result<u32, String>;
    /// R0..R15, xPSR, MSP, PSP of the halted core.
    fn registers(&mut self) -> Result<CoreRegisters, String>;
    /// Reset and halt at the reset vector; returns the PC.
    fn reset_and_halt(&mut self) -> Result<u32, String>;
    /// State and, when halted, the PC.
    fn status(&mut self) -> Result<(CoreState, Option<u32>, Option<String>), String>;
    /// Program and verify segments.
    fn flash(&mut self, segments: &[(u32, Vec<u8>)], progress: &mut dyn FnMut(FlashProgress)) -> Result<(), String>;
    /// Mass erase.
    fn erase_all(&mut self) -> Result<(), String>;
    /// Erase sectors covering a range.
    fn erase_range(&mut self, start: u32, end: u32) -> Result<(), String>;
    /// Drop the session and attach again, normally (not under reset): after a power cycle the
    /// debug port was reset and the old session is stale.
    fn reattach(&mut self) -> Result<(), String>;
    /// Attach RTT (control block at `cb`, or scan RAM).
    fn rtt_attach(&mut self, cb: Option<u32>, timeout: Duration) -> Result<(), String>;
    /// Read RTT up-channel 0.
    fn rtt_read(&mut self, buf: &mut [u8]) -> Result<usize, String>;
}

/// Why one attach attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachFailure {
    /// The probe itself is missing or unusable: retrying cannot help.
    NoProbe(String),
    /// The probe is there but the target did not answer: worth a retry.
    Target(String),
}

/// Attach with `attempts` tries under reset (if asked), then one normal attach. Returns the
/// target and the errors of the failed attempts. A missing probe stops at once.
pub fn attach_with_retries<T>(
    attempts: u32,
    under_reset: bool,
    mut attach: impl FnMut(bool) -> Result<T, AttachFailure>,
    mut pause: impl FnMut(Duration),
) -> Result<(T, Vec<String>), Vec<String>> {
    let mut errors = Vec::new();
    let tries = if under_reset { attempts.max(1) } else { 0 };
    for i in 0..tries {
        match attach(true) {
            Ok(t) => return Ok((t, errors)),
            Err(AttachFailure::NoProbe(e)) => return Err(vec![e]),
            Err(AttachFailure::Target(e)) => {
                errors.push(format!("attach under reset, attempt {}: {e}", i + 1));
                pause(Duration::from_millis(200));
            }
        }
    }
    match attach(false) {
        Ok(t) => Ok((t, errors)),
        Err(AttachFailure::NoProbe(e)) => Err(vec![e]),
        Err(AttachFailure::Target(e)) => {
            errors.push(format!("normal attach: {e}"));
            Err(errors)
        }
    }
}

enum Cmd {
    Info(Reply<ProbeInfo>),
    Read(u32, usize, Reply<Vec<u8>>),
    Write(u32, Vec<u8>, Reply<()>),
    Halt(Reply<CoreStatus>),
    Run(Reply<()>),
    Step(Reply<CoreStatus>),
    Registers(Reply<CoreRegisters>),
    Reset { halt: bool, reply: Reply<CoreStatus> },
    Status(Reply<CoreStatus>),
    Flash(Vec<(u32, Vec<u8>)>, String, tokio::sync::mpsc::UnboundedSender<FlashProgress>, Reply<()>),
    EraseAll(Reply<()>),
    EraseRange(u32, u32, Reply<()>),
    RttAttach(Option<u32>, Duration, Reply<()>),
    RttRead(usize, Reply<Vec<u8>>),
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, ProbeError>>;

/// The STM32H7's AXI SRAM window (D1 domain, 0x2400_0000; the largest part has 1 MiB), where a
/// 64-bit ECC write buffer holds the last word written.
pub const H7_AXI_SRAM: std::ops::Range<u32> = 0x2400_0000..0x2410_0000;

/// Where writes need the ECC write buffer flushed, by probe-rs chip name.
pub fn ecc_buffered_ram(chip: &str) -> Option<std::ops::Range<u32>> {
    chip.to_ascii_uppercase().starts_with("STM32H7").then_some(H7_AXI_SRAM)
}

/// The worker: the target plus bootproof's rules around it.
pub struct Worker<T: Target> {
    target: T,
    /// The RTT control block of the firmware, once known: zeroed at every reset.
    rtt_block: Option<u32>,
    /// RAM behind an ECC write buffer (the H7's AXI SRAM).
    ecc_ram: Option<std::ops::Range<u32>>,
}

impl<T: Target> Worker<T> {
    /// A worker over `target`.
    pub fn new(target: T) -> Self {
        Worker { target, rtt_block: None, ecc_ram: None }
    }

    /// Flush the ECC write buffer after writes into `ram`.
    pub fn with_ecc_ram(mut self, ram: Option<std::ops::Range<u32>>) -> Self {
        self.ecc_ram = ram;
        self
    }

    /// Right after the attach: an attach under reset leaves the core halted at the reset
    /// vector; resume it, so opening the probe leaves the board running. A core found halted
    /// by a normal attach stays halted (someone halted it on purpose).
    pub fn release_attach_halt(&mut self, attached_under_reset: bool) -> Result<(), String> {
        if attached_under_reset && self.target.status()?.0 == CoreState::Halted {
            self.target.run()?;
        }
        Ok(())
    }

    /// Run `op`; if it fails, re-attach normally once and run it again (a power cycle made the
    /// session stale). Both errors are reported if the retry fails too.
    fn retrying<R>(&mut self, mut op: impl FnMut(&mut T) -> Result<R, String>) -> Result<R, String> {
        match op(&mut self.target) {
            Ok(r) => Ok(r),
            Err(first) => match self.target.reattach() {
                Ok(()) => op(&mut self.target)
                    .map_err(|again| format!("{again} (also after a normal re-attach; first attempt: {first})")),
                Err(e) => Err(format!(
                    "{first}; a normal re-attach failed too ({e}): is the board powered? (a power cycle resets the debug port)"
                )),
            },
        }
    }

    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), String> {
        self.retrying(|t| t.write(addr, data))?;
        let buffered = self.ecc_ram.as_ref().is_some_and(|r| r.contains(&addr));
        if let Some(word) = crate::probe::ecc_flush_word(addr, data.len()).filter(|_| buffered) {
            let mut same = [0u8; crate::probe::ECC_WORD as usize];
            self.target.read(word, &mut same)?;
            self.target.write(word, &same)?;
        }
        Ok(())
    }

    fn status(&mut self) -> Result<CoreStatus, ProbeError> {
        let (state, pc, detail) = self.retrying(|t| t.status()).map_err(ProbeError::Other)?;
        let pc = match (state, pc) {
            (CoreState::Running | CoreState::Sleeping, None) => self.running_pc(),
            (_, pc) => pc,
        };
        Ok(CoreStatus { state, pc, detail })
    }

    /// Sample the PC of a running core through DWT_PCSR (0xFFFFFFFF: no sample).
    fn running_pc(&mut self) -> Option<u32> {
        let mut d = [0u8; 4];
        self.target.read(DEMCR, &mut d).ok()?;
        let demcr = u32::from_le_bytes(d) | TRCENA;
        self.target.write(DEMCR, &demcr.to_le_bytes()).ok()?;
        self.target.read(DWT_PCSR, &mut d).ok()?;
        let pc = u32::from_le_bytes(d);
        (pc != 0xFFFF_FFFF).then_some(pc & !1)
    }

    /// Reset; with a known RTT block, halt at the reset vector, zero the block's ID, resume.
    fn reset(&mut self, halt: bool) -> Result<CoreStatus, ProbeError> {
        let pc = self.retrying(|t| t.reset_and_halt()).map_err(ProbeError::Other)?;
        if let Some(cb) = self.rtt_block {
            self.target
                .write(cb, &[0u8; 16])
                .map_err(|e| ProbeError::Rtt(format!("cannot clear the stale RTT block at {cb:#010x}: {e}")))?;
        }
        if halt {
            return Ok(CoreStatus { state: CoreState::Halted, pc: Some(pc), detail: Some("reset vector".into()) });
        }
        self.target.run().map_err(ProbeError::Other)?;
        self.status()
    }

    fn handle(&mut self, cmd: Cmd) {
        let other = ProbeError::Other;
        match cmd {
            Cmd::Info(r) => drop(r.send(self.target.info().map_err(other))),
            Cmd::Read(addr, len, r) => {
                let mut buf = vec![0u8; len];
                let res = self
                    .retrying(|t| t.read(addr, &mut buf))
                    .map(|()| buf)
                    .map_err(|message| ProbeError::Memory { address: addr, len, message });
                drop(r.send(res));
            }
            Cmd::Write(addr, data, r) => {
                let len = data.len();
                drop(r.send(self.write(addr, &data).map_err(|message| ProbeError::Memory {
                    address: addr,
                    len,
                    message,
                })));
            }
            Cmd::Halt(r) => {
                let res = self.retrying(|t| t.halt()).map_err(other).and_then(|()| self.status());
                drop(r.send(res));
            }
            Cmd::Run(r) => drop(r.send(self.retrying(|t| t.run()).map_err(other))),
            Cmd::Step(r) => {
                let res = self.target.step().map_err(other).and_then(|_| self.status());
                drop(r.send(res));
            }
            Cmd::Registers(r) => drop(r.send(self.target.registers().map_err(other))),
            Cmd::Reset { halt, reply } => drop(reply.send(self.reset(halt))),
            Cmd::Status(r) => drop(r.send(self.status())),
            Cmd::Flash(segments, name, progress, r) => {
                let mut send = |p: FlashProgress| {
                    let _ = progress.send(p);
                };
                let res = self
                    .target
                    .flash(&segments, &mut send)
                    .map_err(|message| ProbeError::Flash { image: name, message })
                    .and_then(|()| self.reset(false).map(drop));
                drop(r.send(res));
            }
            Cmd::EraseAll(r) => drop(r.send(self.target.erase_all().map_err(other))),
            Cmd::EraseRange(s, e, r) => drop(r.send(self.target.erase_range(s, e).map_err(other))),
            Cmd::RttAttach(cb, timeout, r) => {
                if cb.is_some() {
                    self.rtt_block = cb;
                }
                drop(r.send(self.target.rtt_attach(cb, timeout).map_err(ProbeError::Rtt)));
            }
            Cmd::RttRead(n, r) => {
                let mut buf = vec![0u8; n];
                let res = self.target.rtt_read(&mut buf).map(|k| buf[..k].to_vec()).map_err(ProbeError::Rtt);
                drop(r.send(res));
            }
        }
    }
}

/// A [`DebugProbe`] served by a [`Worker`] on its own thread.
pub struct ThreadedProbe {
    tx: mpsc::Sender<Cmd>,
}

impl ThreadedProbe {
    /// Serve `target` on a new thread.
    pub fn spawn<T: Target + 'static>(target: T) -> ThreadedProbe {
        Self::spawn_with(Worker::new(target))
    }

    /// Serve a configured worker on a new thread.
    pub fn spawn_with<T: Target + 'static>(worker: Worker<T>) -> ThreadedProbe {
        let (tx, rx) = mpsc::channel::<Cmd>();
        std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || {
                let mut w = worker;
                while let Ok(cmd) = rx.recv() {
                    w.handle(cmd);
                }
            })
            .expect("spawning the probe thread");
        ThreadedProbe { tx }
    }

    async fn call<R>(&self, make: impl FnOnce(Reply<R>) -> Cmd) -> Result<R, ProbeError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| ProbeError::Other("the probe thread stopped".into()))?;
        rx.await.map_err(|_| ProbeError::Other("the probe thread stopped".into()))?
    }
}

#[async_trait]
impl DebugProbe for ThreadedProbe {
    async fn info(&mut self) -> Result<ProbeInfo, ProbeError> {
        self.call(Cmd::Info).await
    }

    async fn flash(
        &mut self,
        image: &FirmwareImage,
        progress: &mut (dyn FnMut(FlashProgress) + Send),
    ) -> Result<(), ProbeError> {
        let segments: Vec<(u32, Vec<u8>)> = image.segments.iter().map(|s| (s.address, s.data.clone())).collect();
        let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel();
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Cmd::Flash(segments, image.name.clone(), ptx, reply))
            .map_err(|_| ProbeError::Other("the probe thread stopped".into()))?;
        while let Some(p) = prx.recv().await {
            progress(p);
        }
        rx.await.map_err(|_| ProbeError::Other("the probe thread stopped".into()))?
    }

    async fn erase_all(&mut self, permissions: Permissions) -> Result<(), ProbeError> {
        permissions.check_mass_erase()?;
        self.call(Cmd::EraseAll).await
    }

    async fn erase_range(&mut self, start: u32, end: u32) -> Result<(), ProbeError> {
        self.call(|r| Cmd::EraseRange(start, end, r)).await
    }

    async fn read_memory(&mut self, address: u32, len: usize) -> Result<Vec<u8>, ProbeError> {
        self.call(|r| Cmd::Read(address, len, r)).await
    }

    async fn write_memory(&mut self, address: u32, data: &[u8]) -> Result<(), ProbeError> {
        let data = data.to_vec();
        self.call(|r| Cmd::Write(address, data, r)).await
    }

    async fn reset(&mut self) -> Result<(), ProbeError> {
        self.call(|reply| Cmd::Reset { halt: false, reply }).await.map(drop)
    }

    async fn reset_and_halt(&mut self) -> Result<CoreStatus, ProbeError> {
        self.call(|reply| Cmd::Reset { halt: true, reply }).await
    }

    async fn halt(&mut self) -> Result<CoreStatus, ProbeError> {
        self.call(Cmd::Halt).await
    }

    async fn run(&mut self) -> Result<(), ProbeError> {
        self.call(Cmd::Run).await
    }

    async fn step(&mut self) -> Result<CoreStatus, ProbeError> {
        self.call(Cmd::Step).await
    }

    async fn registers(&mut self) -> Result<CoreRegisters, ProbeError> {
        self.call(Cmd::Registers).await
    }

    async fn core_status(&mut self) -> Result<CoreStatus, ProbeError> {
        self.call(Cmd::Status).await
    }

    async fn rtt_attach(&mut self, elf: Option<&[u8]>, timeout: Duration) -> Result<(), ProbeError> {
        let cb = match elf {
            Some(elf) => probe_rs::rtt::find_rtt_control_block_in_raw_file(elf)
                .map_err(|e| ProbeError::Rtt(format!("cannot read the ELF: {e}")))?
                .map(|a| a as u32),
            None => None,
        };
        self.call(|r| Cmd::RttAttach(cb, timeout, r)).await
    }

    async fn rtt_read(&mut self, buf: &mut [u8]) -> Result<usize, ProbeError> {
        let data = self.call(|r| Cmd::RttRead(buf.len(), r)).await?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }
}

// ---- probe-rs ------------------------------------------------------------------------------

/// probe-rs's core status as ours.
pub fn map_status(s: probe_rs::CoreStatus) -> (CoreState, Option<String>) {
    match s {
        probe_rs::CoreStatus::Running => (CoreState::Running, None),
        probe_rs::CoreStatus::Halted(reason) => (CoreState::Halted, Some(format!("{reason:?}"))),
        probe_rs::CoreStatus::LockedUp => (CoreState::LockedUp, None),
        probe_rs::CoreStatus::Sleeping => (CoreState::Sleeping, None),
        probe_rs::CoreStatus::Unknown => (CoreState::Unknown, None),
    }
}

/// Tracks probe-rs flash progress events as our progress.
#[derive(Default)]
pub struct ProgressMap {
    totals: [Option<u64>; 3],
    done: [u64; 3],
}

impl ProgressMap {
    fn phase(op: probe_rs::flashing::ProgressOperation) -> Option<(usize, FlashPhase)> {
        use probe_rs::flashing::ProgressOperation::*;
        match op {
            Erase => Some((0, FlashPhase::Erase)),
            Program => Some((1, FlashPhase::Program)),
            Verify => Some((2, FlashPhase::Verify)),
            Fill => None,
        }
    }

    /// Our progress for one probe-rs event, if it is one we report.
    pub fn map(&mut self, ev: probe_rs::flashing::ProgressEvent) -> Option<FlashProgress> {
        use probe_rs::flashing::ProgressEvent as E;
        match ev {
            E::AddProgressBar { operation, total } => {
                let (i, _) = Self::phase(operation)?;
                self.totals[i] = total;
                None
            }
            E::Progress { operation, size, .. } => {
                let (i, phase) = Self::phase(operation)?;
                self.done[i] += size;
                Some(FlashProgress { phase, done: self.done[i], total: self.totals[i] })
            }
            _ => None,
        }
    }
}

/// An attached probe-rs session.
pub struct ProbeRsTarget {
    /// `None` only between dropping a stale session and a failed re-attach.
    session: Option<probe_rs::Session>,
    cfg: ProbeConfig,
    probe: String,
    chip: String,
    voltage: Option<f32>,
    rtt: Option<probe_rs::rtt::Rtt>,
}

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// One attach: open the probe named in `cfg` and attach to its chip, under reset or normally.
/// Returns the session, the probe's name and the target voltage it measures.
fn attach_once(
    lister: &probe_rs::probe::list::Lister,
    cfg: &ProbeConfig,
    under_reset: bool,
) -> Result<(probe_rs::Session, String, Option<f32>), AttachFailure> {
    let selector_text = cfg.selector.to_string();
    let selector: probe_rs::probe::DebugProbeSelector = selector_text
        .parse()
        .map_err(|e| AttachFailure::NoProbe(format!("no usable probe matches {selector_text} ({e})")))?;
    let mut probe = lister.open(selector).map_err(|e| {
        let listed: Vec<String> = lister.list_all().iter().map(|p| format!("{p}")).collect();
        AttachFailure::NoProbe(format!(
            "no usable probe matches {selector_text} ({e}); probes present: {}; check the selector (VID:PID[:SERIAL], see `probe-rs list`), the USB cable and the udev rules (ci/udev)",
            if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
        ))
    })?;
    probe.select_protocol(probe_rs::probe::WireProtocol::Swd).map_err(|e| AttachFailure::NoProbe(e2s(e)))?;
    probe.set_speed(cfg.speed_khz).map_err(|e| AttachFailure::NoProbe(e2s(e)))?;
    let name = probe.get_name();
    let voltage = probe.get_target_voltage().ok().flatten();
    // Our own Permissions gate mass erase; probe-rs may do what we ask.
    let perms = probe_rs::Permissions::new().allow_erase_all();
    let session = if under_reset {
        probe.attach_under_reset(cfg.chip.as_str(), perms)
    } else {
        probe.attach(cfg.chip.as_str(), perms)
    }
    .map_err(|e| AttachFailure::Target(e2s(e)))?;
    Ok((session, name, voltage))
}

/// The live session (a free function, so the RTT state can be borrowed beside it).
fn live(session: &mut Option<probe_rs::Session>) -> Result<&mut probe_rs::Session, String> {
    session.as_mut().ok_or_else(|| {
        "the probe session was lost and re-attaching failed: power the board and run the command again".into()
    })
}

impl ProbeRsTarget {
    fn session(&mut self) -> Result<&mut probe_rs::Session, String> {
        live(&mut self.session)
    }
}

impl Target for ProbeRsTarget {
    fn info(&mut self) -> Result<ProbeInfo, String> {
        Ok(ProbeInfo { probe: self.probe.clone(), chip: self.chip.clone(), target_voltage: self.voltage })
    }

    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), String> {
        use probe_rs::MemoryInterface;
        live(&mut self.session)?.core(0).map_err(e2s)?.read(addr as u64, buf).map_err(e2s)
    }

    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), String> {
        use probe_rs::MemoryInterface;
        live(&mut self.session)?.core(0).map_err(e2s)?.write(addr as u64, data).map_err(e2s)
    }

    fn halt(&mut self) -> Result<(), String> {
        live(&mut self.session)?.core(0).map_err(e2s)?.halt(Duration::from_millis(500)).map(drop).map_err(e2s)
    }

    fn run(&mut self) -> Result<(), String> {
        live(&mut self.session)?.core(0).map_err(e2s)?.run().map_err(e2s)
    }

    fn step(&mut self) -> Result<u32, String> {
        let mut core = live(&mut self.session)?.core(0).map_err(e2s)?;
        if !core.core_halted().map_err(e2s)? {
            return Err("the core is running: halt it first (`bootproof probe halt`)".into());
        }
        Ok(core.step().map_err(e2s)?.pc as u32)
    }

    fn registers(&mut self) -> Result<CoreRegisters, String> {
        let mut core = live(&mut self.session)?.core(0).map_err(e2s)?;
        if !core.core_halted().map_err(e2s)? {
            return Err("the core is running: halt it first (`bootproof probe halt`)".into());
        }
        // ARMv7-M DCRSR register numbers: R0..R15 0..15, xPSR 16, MSP 17, PSP 18.
        let mut read = |n: u16| core.read_core_reg::<u32>(probe_rs::RegisterId(n)).map_err(e2s);
        let mut r = [0u32; 16];
        for (i, v) in r.iter_mut().enumerate() {
            *v = read(i as u16)?;
        }
        Ok(CoreRegisters { r, xpsr: read(16)?, msp: read(17)?, psp: read(18)? })
    }

    fn reset_and_halt(&mut self) -> Result<u32, String> {
        self.rtt = None; // the target zeroes its RTT cursors on reset (defmt#388)
        let info =
            live(&mut self.session)?.core(0).map_err(e2s)?.reset_and_halt(Duration::from_millis(500)).map_err(e2s)?;
        Ok(info.pc as u32)
    }

    fn status(&mut self) -> Result<(CoreState, Option<u32>, Option<String>), String> {
        let mut core = live(&mut self.session)?.core(0).map_err(e2s)?;
        let (state, detail) = map_status(core.status().map_err(e2s)?);
        let pc = if state == CoreState::Halted {
            let pc_reg = core.program_counter();
            core.read_core_reg::<u32>(pc_reg).ok()
        } else {
            None
        };
        Ok((state, pc, detail))
    }

    fn flash(&mut self, segments: &[(u32, Vec<u8>)], progress: &mut dyn FnMut(FlashProgress)) -> Result<(), String> {
        let mut loader = self.session()?.target().flash_loader();
        for (addr, data) in segments {
            loader.add_data(*addr as u64, data).map_err(e2s)?;
        }
        let mut map = ProgressMap::default();
        let mut opts = probe_rs::flashing::DownloadOptions::default();
        opts.verify = true;
        opts.progress = probe_rs::flashing::FlashProgress::new(move |ev| {
            if let Some(p) = map.map(ev) {
                progress(p);
            }
        });
        loader.commit(self.session()?, opts).map_err(e2s)
    }

    fn erase_all(&mut self) -> Result<(), String> {
        probe_rs::flashing::erase_all(self.session()?, &mut probe_rs::flashing::FlashProgress::empty(), false)
            .map_err(e2s)
    }

    fn erase_range(&mut self, start: u32, end: u32) -> Result<(), String> {
        probe_rs::flashing::erase(
            self.session()?,
            &mut probe_rs::flashing::FlashProgress::empty(),
            start as u64,
            end as u64,
            false,
        )
        .map_err(e2s)
    }

    fn reattach(&mut self) -> Result<(), String> {
        self.rtt = None;
        // The stale session holds the probe's USB handle: drop it before opening the probe again.
        self.session = None;
        let lister = probe_rs::probe::list::Lister::new();
        let (session, _, voltage) = attach_once(&lister, &self.cfg, false).map_err(|e| match e {
            AttachFailure::NoProbe(e) | AttachFailure::Target(e) => e,
        })?;
        tracing::info!("probe re-attached to {} (normal attach: the board was not reset)", self.chip);
        self.session = Some(session);
        self.voltage = voltage;
        Ok(())
    }

    fn rtt_attach(&mut self, cb: Option<u32>, timeout: Duration) -> Result<(), String> {
        use probe_rs::rtt::{ChannelMode, ScanRegion};
        let region = cb.map(|a| ScanRegion::Exact(a as u64)).unwrap_or(ScanRegion::Ram);
        let mut core = live(&mut self.session)?.core(0).map_err(e2s)?;
        let mut rtt = probe_rs::rtt::try_attach_to_rtt(&mut core, timeout, &region).map_err(e2s)?;
        // Never let the firmware block on a full buffer when the host detaches (relay cycling).
        if let Some(up) = rtt.up_channel(0) {
            up.set_mode(&mut core, ChannelMode::NoBlockTrim).map_err(e2s)?;
        }
        self.rtt = Some(rtt);
        Ok(())
    }

    fn rtt_read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let rtt = self.rtt.as_mut().ok_or("not attached; call rtt_attach after every reset")?;
        let mut core = live(&mut self.session)?.core(0).map_err(e2s)?;
        let up = rtt.up_channel(0).ok_or("the firmware has no RTT up channel 0")?;
        match up.read(&mut core, buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.rtt = None;
                Err(format!("{e}; the control block changed (a reset?): re-attach"))
            }
        }
    }
}

/// Open and attach the probe named in `cfg`. An attach under reset halts the core at its reset
/// vector; it is resumed before this returns, so opening the probe leaves the board running.
pub async fn open(cfg: &ProbeConfig) -> Result<Box<dyn DebugProbe>, ProbeError> {
    let cfg = cfg.clone();
    let (target, under_reset) = tokio::task::spawn_blocking(move || -> Result<(ProbeRsTarget, bool), ProbeError> {
        let lister = probe_rs::probe::list::Lister::new();
        let mut last_under_reset = false;
        let attach = |under_reset: bool| {
            last_under_reset = under_reset;
            attach_once(&lister, &cfg, under_reset)
        };
        match attach_with_retries(cfg.attach_retries, cfg.connect_under_reset, attach, std::thread::sleep) {
            Ok(((session, probe, voltage), _)) => Ok((
                ProbeRsTarget { session: Some(session), chip: cfg.chip.clone(), cfg: cfg.clone(), probe, voltage, rtt: None },
                last_under_reset,
            )),
            Err(errors) if errors.len() == 1 && errors[0].starts_with("no usable probe") => {
                Err(ProbeError::Open { selector: cfg.selector.to_string(), message: errors[0].clone() })
            }
            Err(errors) => Err(ProbeError::Attach {
                chip: cfg.chip.clone(),
                attempts: errors.len() as u32,
                message: format!(
                    "{}; is the board powered, NRST wired to the probe for connect-under-reset, and the chip name right?",
                    errors.join("; ")
                ),
            }),
        }
    })
    .await
    .map_err(|e| ProbeError::Other(format!("attach thread failed: {e}")))??;
    let chip = target.chip.clone();
    let mut worker = Worker::new(target).with_ecc_ram(ecc_buffered_ram(&chip));
    worker.release_attach_halt(under_reset).map_err(|e| {
        ProbeError::Other(format!(
            "attached under reset, but resuming the halted core failed ({e}); run `bootproof probe run`"
        ))
    })?;
    Ok(Box::new(ThreadedProbe::spawn_with(worker)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Log {
        calls: Vec<String>,
        mem: BTreeMap<u32, u8>,
        /// The core is halted (an attach under reset leaves it so).
        halted: bool,
        /// The session is stale (the board was power-cycled): every access fails.
        stale: bool,
        /// Re-attaching fails too (the board is off).
        unpowered: bool,
    }

    #[derive(Clone, Default)]
    struct Fake {
        log: Arc<Mutex<Log>>,
        running_pc: u32,
    }

    impl Fake {
        fn calls(&self) -> Vec<String> {
            self.log.lock().unwrap().calls.clone()
        }
        fn note(&self, s: &str) {
            self.log.lock().unwrap().calls.push(s.into());
        }
    }

    impl Target for Fake {
        fn info(&mut self) -> Result<ProbeInfo, String> {
            Ok(ProbeInfo { probe: "fake".into(), chip: "STM32H723ZGTx".into(), target_voltage: Some(3.3) })
        }
        fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), String> {
            if self.log.lock().unwrap().stale {
                self.note(&format!("read {addr:#010x} failed"));
                return Err("SWD error: the target did not answer".into());
            }
            if addr == DWT_PCSR {
                buf.copy_from_slice(&self.running_pc.to_le_bytes());
                return Ok(());
            }
            let log = self.log.lock().unwrap();
            for (i, b) in buf.iter_mut().enumerate() {
                *b = *log.mem.get(&(addr + i as u32)).unwrap_or(&0);
            }
            Ok(())
        }
        fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), String> {
            self.note(&format!("write {addr:#010x} {data:02x?}"));
            let mut log = self.log.lock().unwrap();
            for (i, b) in data.iter().enumerate() {
                log.mem.insert(addr + i as u32, *b);
            }
            Ok(())
        }
        fn halt(&mut self) -> Result<(), String> {
            self.note("halt");
            Ok(())
        }
        fn run(&mut self) -> Result<(), String> {
            self.note("run");
            self.log.lock().unwrap().halted = false;
            Ok(())
        }
        fn reset_and_halt(&mut self) -> Result<u32, String> {
            self.note("reset_and_halt");
            Ok(0x0800_0400)
        }
        fn step(&mut self) -> Result<u32, String> {
            self.note("step");
            Ok(0x0800_0402)
        }
        fn registers(&mut self) -> Result<CoreRegisters, String> {
            self.note("registers");
            Ok(CoreRegisters { r: [7; 16], xpsr: 0x0100_0000, msp: 0x2002_0000, psp: 0 })
        }
        fn status(&mut self) -> Result<(CoreState, Option<u32>, Option<String>), String> {
            if self.log.lock().unwrap().halted {
                return Ok((CoreState::Halted, Some(0x0800_0400), None));
            }
            Ok((CoreState::Running, None, None))
        }
        fn reattach(&mut self) -> Result<(), String> {
            self.note("reattach");
            let mut log = self.log.lock().unwrap();
            if log.unpowered {
                return Err("no target voltage".into());
            }
            log.stale = false;
            Ok(())
        }
        fn flash(
            &mut self,
            segments: &[(u32, Vec<u8>)],
            progress: &mut dyn FnMut(FlashProgress),
        ) -> Result<(), String> {
            self.note(&format!("flash {} segment(s)", segments.len()));
            progress(FlashProgress { phase: FlashPhase::Program, done: 10, total: Some(10) });
            Ok(())
        }
        fn erase_all(&mut self) -> Result<(), String> {
            self.note("erase_all");
            Ok(())
        }
        fn erase_range(&mut self, s: u32, e: u32) -> Result<(), String> {
            self.note(&format!("erase {s:#x}..{e:#x}"));
            Ok(())
        }
        fn rtt_attach(&mut self, cb: Option<u32>, _: Duration) -> Result<(), String> {
            self.note(&format!("rtt_attach {cb:x?}"));
            Ok(())
        }
        fn rtt_read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
            buf[..2].copy_from_slice(b"hi");
            Ok(2)
        }
    }

    #[test]
    fn attach_retries_under_reset_then_falls_back() {
        let mut tried = Vec::new();
        let mut pauses = 0;
        let r = attach_with_retries(
            3,
            true,
            |ur| {
                tried.push(ur);
                if tried.len() < 3 {
                    Err(AttachFailure::Target("timeout while attaching".into()))
                } else {
                    Ok("session")
                }
            },
            |_| pauses += 1,
        );
        let (s, errors) = r.unwrap();
        assert_eq!(s, "session");
        assert_eq!(tried, vec![true, true, true], "the first attach after a power cycle fails: retry");
        assert_eq!(errors.len(), 2);
        assert_eq!(pauses, 2);
        // All under-reset attempts fail: one normal attach, then every error is reported.
        let r: Result<((), _), _> = attach_with_retries(2, true, |_| Err(AttachFailure::Target("nope".into())), |_| {});
        let errors = r.unwrap_err();
        assert_eq!(errors.len(), 3);
        assert!(errors[2].starts_with("normal attach"));
        // A missing probe is reported once, without retries.
        let mut calls = 0;
        let r: Result<((), _), _> = attach_with_retries(
            3,
            true,
            |_| {
                calls += 1;
                Err(AttachFailure::NoProbe("no usable probe".into()))
            },
            |_| {},
        );
        assert_eq!((r.unwrap_err().len(), calls), (1, 1));
    }

    #[tokio::test]
    async fn mass_erase_needs_the_opt_in_before_touching_the_probe() {
        let fake = Fake::default();
        let mut p = ThreadedProbe::spawn(fake.clone());
        let e = p.erase_all(Permissions::none()).await.unwrap_err().to_string();
        assert!(e.contains("--allow-mass-erase"), "{e}");
        assert!(!fake.calls().contains(&"erase_all".to_string()));
        p.erase_all(Permissions::none().allow_mass_erase()).await.unwrap();
        assert!(fake.calls().contains(&"erase_all".to_string()));
    }

    #[tokio::test]
    async fn resets_clear_a_known_stale_rtt_block_before_the_core_runs() {
        let fake = Fake::default();
        let mut p = ThreadedProbe::spawn(fake.clone());
        // Without a known block, a reset just resets and runs.
        p.reset().await.unwrap();
        assert_eq!(fake.calls()[..2], ["reset_and_halt".to_string(), "run".to_string()]);
        // Once the block is known (found in the ELF), every reset zeroes it while halted.
        p.call(|r| Cmd::RttAttach(Some(0x2400_0078), Duration::from_millis(1), r)).await.unwrap();
        let before = fake.calls().len();
        p.reset().await.unwrap();
        let calls = fake.calls()[before..].to_vec();
        assert_eq!(calls[0], "reset_and_halt");
        assert!(calls[1].starts_with("write 0x24000078 [00, 00"), "{calls:?}");
        assert_eq!(calls[2], "run");
        // Flashing resets through the same path.
        let img = FirmwareImage::from_segments(
            "a.bin",
            vec![crate::image::Segment { address: 0x0800_0000, data: vec![1; 32] }],
        )
        .unwrap();
        let mut seen = Vec::new();
        p.flash(&img, &mut |pr| seen.push(pr)).await.unwrap();
        assert_eq!(seen.len(), 1);
        assert!(fake.calls().iter().rev().take(3).any(|c| c.starts_with("write 0x24000078")));
    }

    fn fake_with(f: impl FnOnce(&mut Log)) -> Fake {
        let fake = Fake::default();
        f(&mut fake.log.lock().unwrap());
        fake
    }

    #[test]
    fn an_attach_under_reset_leaves_the_core_running() {
        let fake = fake_with(|l| l.halted = true);
        Worker::new(fake.clone()).release_attach_halt(true).unwrap();
        assert_eq!(fake.calls(), ["run"], "halted by the attach under reset: resumed");
        // A normal attach that finds the core halted leaves it halted (someone halted it).
        let fake = fake_with(|l| l.halted = true);
        Worker::new(fake.clone()).release_attach_halt(false).unwrap();
        assert!(fake.calls().is_empty(), "{:?}", fake.calls());
        // Running already: nothing to do.
        let fake = Fake::default();
        Worker::new(fake.clone()).release_attach_halt(true).unwrap();
        assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    }

    #[tokio::test]
    async fn a_stale_session_after_a_power_cycle_is_reattached_normally() {
        let fake = fake_with(|l| {
            l.stale = true;
            l.mem.insert(0x5802_44D0, 0x00);
            l.mem.insert(0x5802_44D3, 0x0E); // some flags in the top byte
        });
        let mut p = ThreadedProbe::spawn(fake.clone());
        assert_eq!(p.read_u32(0x5802_44D0).await.unwrap(), 0x0E00_0000);
        let calls = fake.calls();
        assert_eq!(calls, ["read 0x580244d0 failed", "reattach"], "one normal re-attach, no reset: {calls:?}");
        // A board that stays off: both errors, with what to check.
        let fake = fake_with(|l| {
            l.stale = true;
            l.unpowered = true;
        });
        let mut p = ThreadedProbe::spawn(fake.clone());
        let e = p.read_u32(0x2000_0000).await.unwrap_err().to_string();
        assert!(e.contains("did not answer") && e.contains("re-attach failed") && e.contains("powered"), "{e}");
        assert!(!fake.calls().iter().any(|c| c.contains("reset")), "{:?}", fake.calls());
    }

    #[tokio::test]
    async fn writes_to_the_h7_axi_sram_flush_the_ecc_write_buffer() {
        assert_eq!(ecc_buffered_ram("STM32H723ZGTx"), Some(H7_AXI_SRAM));
        assert_eq!(ecc_buffered_ram("STM32F446RETx"), None);
        let fake = Fake::default();
        let mut p =
            ThreadedProbe::spawn_with(Worker::new(fake.clone()).with_ecc_ram(ecc_buffered_ram("STM32H723ZGTx")));
        let marker = *b"bootproof RAM marker: retained?!";
        p.write_memory(0x2404_FFC0, &marker).await.unwrap();
        let writes: Vec<String> = fake.calls().into_iter().filter(|c| c.starts_with("write")).collect();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert!(
            writes[1].starts_with("write 0x2404ffc0 [62, 6f, 6f, 74, 70, 72, 6f, 6f]"),
            "the first word again: {writes:?}"
        );
        assert_eq!(p.read_memory(0x2404_FFC0, 32).await.unwrap(), marker, "the rewrite changed nothing");
        // DTCM has no such buffer: one write.
        let before = fake.calls().len();
        p.write_memory(0x2000_0000, &marker).await.unwrap();
        assert_eq!(fake.calls()[before..].iter().filter(|c| c.starts_with("write")).count(), 1);
    }

    #[tokio::test]
    async fn step_and_registers_go_through_the_worker() {
        let fake = Fake::default();
        let mut p = ThreadedProbe::spawn(fake.clone());
        let s = p.step().await.unwrap();
        assert_eq!(s.state, CoreState::Running, "the fake's status after the step");
        let r = p.registers().await.unwrap();
        assert_eq!((r.r[15], r.msp), (7, 0x2002_0000));
        let calls: Vec<String> = fake.calls().into_iter().filter(|c| c == "step" || c == "registers").collect();
        assert_eq!(calls, ["step", "registers"]);
    }

    #[tokio::test]
    async fn running_core_pc_comes_from_dwt_pcsr() {
        let fake = Fake { running_pc: 0x1FF0_9A41, ..Fake::default() };
        let mut p = ThreadedProbe::spawn(fake.clone());
        let s = p.core_status().await.unwrap();
        assert_eq!((s.state, s.pc), (CoreState::Running, Some(0x1FF0_9A40)));
        assert!(fake.calls().iter().any(|c| c.starts_with("write 0xe000edfc")), "TRCENA set: {:?}", fake.calls());
        let mut p = ThreadedProbe::spawn(Fake { running_pc: 0xFFFF_FFFF, ..Fake::default() });
        assert_eq!(p.core_status().await.unwrap().pc, None, "no sample");
    }

    #[test]
    fn status_and_progress_mapping() {
        assert_eq!(map_status(probe_rs::CoreStatus::LockedUp).0, CoreState::LockedUp);
        assert_eq!(map_status(probe_rs::CoreStatus::Sleeping).0, CoreState::Sleeping);
        assert_eq!(map_status(probe_rs::CoreStatus::Halted(probe_rs::HaltReason::Request)).0, CoreState::Halted);
        use probe_rs::flashing::{ProgressEvent as E, ProgressOperation as O};
        let mut m = ProgressMap::default();
        assert_eq!(m.map(E::AddProgressBar { operation: O::Program, total: Some(100) }), None);
        let p = m.map(E::Progress { operation: O::Program, size: 40, time: Duration::ZERO }).unwrap();
        assert_eq!((p.phase, p.done, p.total), (FlashPhase::Program, 40, Some(100)));
        let p = m.map(E::Progress { operation: O::Program, size: 60, time: Duration::ZERO }).unwrap();
        assert_eq!(p.done, 100);
        assert_eq!(m.map(E::Progress { operation: O::Fill, size: 1, time: Duration::ZERO }), None);
    }

    #[tokio::test]
    async fn opening_a_missing_probe_says_what_is_there() {
        let cfg = ProbeConfig {
            selector: "0483:3754:NOSUCHSERIAL".parse().unwrap(),
            chip: "STM32H723ZGTx".into(),
            speed_khz: 4000,
            attach_retries: 1,
            connect_under_reset: true,
        };
        let e = open(&cfg).await.err().expect("no probe here").to_string();
        assert!(
            e.contains("no usable probe matches 0483:3754:NOSUCHSERIAL")
                && e.contains("probes present")
                && e.contains("ci/udev"),
            "{e}"
        );
        assert_eq!(e.matches("probes present").count(), 1, "reported once: {e}");
    }
}
