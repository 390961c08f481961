//! The twin's debug probe: flash, erase, memory, core control and RTT over the simulated board.
//!
//! It behaves as probe-rs does against the real part where the twin can tell: flashing halts
//! the core, erases the touched sectors, programs, verifies and resets with SYSRESETREQ (so the
//! reset flags show a software reset); the board must be powered and out of reset; readout
//! protection blocks flash reads; mass erase needs its opt-in.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bootproof_rig::ProbeError;
use bootproof_rig::image::FirmwareImage;
use bootproof_rig::probe::{
    CoreRegisters, CoreState, CoreStatus, DebugProbe, FlashPhase, FlashProgress, Permissions, ProbeInfo,
};
use bootproof_rig::symbols::Symbols;

use crate::board::{Access, Board, McuError, Rdp, Run};

/// The probe attached to a twin board.
pub struct TwinProbe {
    board: Arc<Board>,
    rtt: Option<Rtt>,
}

impl TwinProbe {
    /// A probe on `board`.
    pub fn new(board: Arc<Board>) -> Self {
        Self { board, rtt: None }
    }

    fn connected(&self) -> Result<(), ProbeError> {
        let st = self.board.state();
        if !st.powered {
            return Err(ProbeError::Other("no response from the target: it is not powered".into()));
        }
        if st.nrst_low {
            return Err(ProbeError::Other("target held in reset (NRST low)".into()));
        }
        Ok(())
    }

    fn halt_for_flash(&self) -> Result<u64, ProbeError> {
        self.connected()?;
        let st = self.board.state();
        if st.rdp == Rdp::Level1 {
            return Err(ProbeError::Flash {
                image: "flash".into(),
                message:
                    "flash is readout-protected (RDP level 1); remove it with a Readout Unprotect, which mass-erases"
                        .into(),
            });
        }
        drop(st);
        self.board.debug_halt().ok_or_else(|| ProbeError::Other("target not reachable".into()))
    }

    fn map(e: McuError, what: &str) -> ProbeError {
        match e {
            McuError::Reset => {
                ProbeError::Other(format!("{what}: the target was reset or lost power during the operation"))
            }
            e => ProbeError::Other(format!("{what}: {e}")),
        }
    }
}

#[async_trait]
impl DebugProbe for TwinProbe {
    async fn info(&mut self) -> Result<ProbeInfo, ProbeError> {
        let p = self.board.profile();
        Ok(ProbeInfo {
            probe: "twin SWD probe".into(),
            chip: format!("{} (PID {:#05x})", p.probe_chip, p.identity.pid),
            target_voltage: Some(if self.board.state().powered { 3.3 } else { 0.0 }),
        })
    }

    async fn flash(
        &mut self,
        image: &FirmwareImage,
        progress: &mut (dyn FnMut(FlashProgress) + Send),
    ) -> Result<(), ProbeError> {
        let p = self.board.profile().clone();
        image
            .check_within(p.flash.base, p.flash.end(), "user flash")
            .map_err(|e| ProbeError::Flash { image: image.name.clone(), message: e.to_string() })?;
        if image.format == bootproof_rig::image::ImageFormat::Elf
            && let Ok(symbols) = bootproof_rig::symbols::Symbols::from_elf(&image.name, &image.raw)
        {
            self.board.add_symbols(symbols);
        }
        // The probe's flash loader runs on the halted core; a reset or power cut tears it.
        let era = self.halt_for_flash()?;
        let word = p.flash.word as usize;
        let sectors: Vec<_> = p
            .flash
            .sector_list()
            .into_iter()
            .filter(|s| {
                image.segments.iter().any(|seg| (seg.address as u64) < s.end() as u64 && seg.end() > s.start as u64)
            })
            .collect();
        let erase_total: u64 = sectors.iter().map(|s| s.size as u64).sum();
        let mut done = 0;
        progress(FlashProgress { phase: FlashPhase::Erase, done, total: Some(erase_total) });
        for s in &sectors {
            self.board.timed_erase(era, s.index).await.map_err(|e| Self::map(e, "erase"))?;
            done += s.size as u64;
            progress(FlashProgress { phase: FlashPhase::Erase, done, total: Some(erase_total) });
        }
        let total = image.len() as u64;
        let mut done = 0;
        // Merge the segments into whole flash words, padded with the erased value, as flash
        // loaders do (two segments may share a word: it is programmed once), then program
        // each run of consecutive words.
        let words = image.flash_words(word, p.flash.erased);
        let mut runs: Vec<(u32, Vec<u8>)> = Vec::new();
        for (base, data) in words {
            match runs.last_mut() {
                Some((start, buf)) if *start + buf.len() as u32 == base && buf.len() < 4096 => buf.extend(data),
                _ => runs.push((base, data)),
            }
        }
        for (start, buf) in runs {
            self.board.timed_program(era, start, &buf).await.map_err(|e| Self::map(e, "program"))?;
            done = (done + buf.len() as u64).min(total);
            progress(FlashProgress { phase: FlashPhase::Program, done, total: Some(total) });
        }
        let mut done = 0;
        for seg in &image.segments {
            let mut back = vec![0u8; seg.data.len()];
            {
                let st = self.board.state();
                self.board.mem_read(&st, seg.address, &mut back, Access::Debug).map_err(|e| Self::map(e, "verify"))?;
            }
            if back != seg.data {
                let off = back.iter().zip(&seg.data).position(|(a, b)| a != b).unwrap_or(0);
                return Err(ProbeError::Flash {
                    image: image.name.clone(),
                    message: format!("verify failed at {:#010x}", seg.address + off as u32),
                });
            }
            done += seg.data.len() as u64;
            progress(FlashProgress { phase: FlashPhase::Verify, done, total: Some(total) });
        }
        self.board.debug_reset(false);
        self.rtt = None;
        Ok(())
    }

    async fn erase_all(&mut self, permissions: Permissions) -> Result<(), ProbeError> {
        permissions.check_mass_erase()?;
        let era = self.halt_for_flash()?;
        self.board.timed_mass_erase(era).await.map_err(|e| Self::map(e, "mass erase"))?;
        Ok(())
    }

    async fn erase_range(&mut self, start: u32, end: u32) -> Result<(), ProbeError> {
        let era = self.halt_for_flash()?;
        let sectors: Vec<_> =
            self.board.profile().flash.sector_list().into_iter().filter(|s| s.start < end && s.end() > start).collect();
        if sectors.is_empty() {
            return Err(ProbeError::Other(format!("{start:#010x}..{end:#010x} covers no flash sector")));
        }
        for s in sectors {
            self.board.timed_erase(era, s.index).await.map_err(|e| Self::map(e, "erase"))?;
        }
        Ok(())
    }

    async fn read_memory(&mut self, address: u32, len: usize) -> Result<Vec<u8>, ProbeError> {
        self.connected()?;
        let mut buf = vec![0u8; len];
        let st = self.board.state();
        self.board.mem_read(&st, address, &mut buf, Access::Debug).map_err(|e| ProbeError::Memory {
            address,
            len,
            message: match e {
                McuError::BusFault(_) if st.rdp == Rdp::Level1 && self.board.profile().flash.contains(address) => {
                    "flash is readout-protected (RDP level 1)".into()
                }
                e => e.to_string(),
            },
        })?;
        Ok(buf)
    }

    async fn write_memory(&mut self, address: u32, data: &[u8]) -> Result<(), ProbeError> {
        self.connected()?;
        let mut st = self.board.state();
        self.board.debug_write(&mut st, address, data).map_err(|e| ProbeError::Memory {
            address,
            len: data.len(),
            message: format!("{e}; only RAM and registers are writable (flash needs `flash`)"),
        })
    }

    async fn reset(&mut self) -> Result<(), ProbeError> {
        self.connected()?;
        self.board.debug_reset(false);
        self.rtt = None;
        Ok(())
    }

    async fn reset_and_halt(&mut self) -> Result<CoreStatus, ProbeError> {
        self.connected()?;
        self.board.debug_reset(true);
        self.rtt = None;
        self.core_status().await
    }

    async fn halt(&mut self) -> Result<CoreStatus, ProbeError> {
        self.connected()?;
        self.board.debug_halt();
        self.core_status().await
    }

    async fn run(&mut self) -> Result<(), ProbeError> {
        self.connected()?;
        self.board.debug_run();
        Ok(())
    }

    async fn step(&mut self) -> Result<CoreStatus, ProbeError> {
        self.connected()?;
        self.board.debug_step().await.map_err(|e| ProbeError::Other(format!("step: {e}")))?;
        self.core_status().await
    }

    async fn registers(&mut self) -> Result<CoreRegisters, ProbeError> {
        self.connected()?;
        let st = self.board.state();
        if st.core.run != Run::Halted {
            return Err(ProbeError::Other(format!("registers: the core is {}: halt it first", st.core.run.name())));
        }
        match (st.regs, st.emulated) {
            (Some(r), _) => Ok(r),
            (None, true) => {
                Err(ProbeError::Other("registers: the emulated core has not started yet; try again".into()))
            }
            (None, false) => Err(ProbeError::Other(format!(
                "registers: {} runs natively in the twin: only firmware on the emulated core has registers",
                st.core.what
            ))),
        }
    }

    async fn core_status(&mut self) -> Result<CoreStatus, ProbeError> {
        let (core, emulated) = {
            let st = self.board.state();
            (st.core.clone(), st.emulated)
        };
        let (state, pc) = match core.run {
            Run::Off | Run::InReset => (CoreState::Unknown, None),
            Run::Running => (CoreState::Running, Some(core.pc)),
            Run::Halted => (CoreState::Halted, Some(core.pc)),
            Run::LockedUp => (CoreState::LockedUp, Some(core.pc)),
        };
        // Where in the firmware, when the twin has its symbols.
        let place = match (emulated, pc) {
            (true, Some(pc)) => self.board.symbolize(pc).map(|s| format!(", in {s}")).unwrap_or_default(),
            _ => String::new(),
        };
        Ok(CoreStatus { state, pc, detail: Some(format!("{}{place}", core.what)) })
    }

    async fn rtt_attach(&mut self, elf: Option<&[u8]>, timeout: Duration) -> Result<(), ProbeError> {
        self.connected()?;
        self.rtt = None;
        // With the ELF, the control block's address is known; else RAM is scanned for its ID.
        let known = match elf {
            Some(e) => Some(
                Symbols::from_elf("the firmware ELF", e)
                    .map_err(|e| ProbeError::Rtt(e.to_string()))?
                    .address_of(RTT_SYMBOL)
                    .ok_or_else(|| {
                        ProbeError::Rtt(format!(
                            "the ELF has no {RTT_SYMBOL}: is it built with RTT (defmt-rtt, rtt-target)?"
                        ))
                    })?,
            ),
            None => None,
        };
        let deadline = bootproof_rig::time::Instant::now() + timeout;
        loop {
            {
                let st = self.board.state();
                if st.rtt.is_some() {
                    self.rtt = Some(Rtt::Native);
                    return Ok(());
                }
                let found = match known {
                    Some(cb) => rtt_id_at(&st, cb).then_some(cb),
                    None => scan_for_rtt(&self.board, &st),
                };
                if let Some(cb) = found {
                    self.rtt = Some(Rtt::Ram { cb });
                    return Ok(());
                }
            }
            if bootproof_rig::time::Instant::now() >= deadline {
                return Err(ProbeError::Rtt(format!(
                    "no RTT control block{} within {timeout:?}: the running firmware ({}) has no RTT channel, or has not \
                     set it up yet",
                    known.map(|a| format!(" at {a:#010x}")).unwrap_or_else(|| " in RAM".into()),
                    self.board.core().what
                )));
            }
            bootproof_rig::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn rtt_read(&mut self, buf: &mut [u8]) -> Result<usize, ProbeError> {
        let gone = || ProbeError::Rtt("the control block is gone (target reset); re-attach".into());
        match self.rtt {
            None => Err(ProbeError::Rtt("not attached; call rtt_attach after every reset".into())),
            Some(Rtt::Native) => {
                let mut st = self.board.state();
                let Some(q) = st.rtt.as_mut() else {
                    self.rtt = None;
                    return Err(gone());
                };
                let n = q.len().min(buf.len());
                for (i, b) in q.drain(..n).enumerate() {
                    buf[i] = b;
                }
                Ok(n)
            }
            Some(Rtt::Ram { cb }) => {
                let mut st = self.board.state();
                if !rtt_id_at(&st, cb) {
                    self.rtt = None;
                    return Err(gone());
                }
                // Up channel 0's descriptor: name, buffer, size, WrOff, RdOff, flags.
                let desc = cb + 24;
                let word = |st: &crate::board::State, at: u32| {
                    let mut w = [0u8; 4];
                    st.ram.read(at, &mut w);
                    u32::from_le_bytes(w)
                };
                let (base, size, wr, rd) =
                    (word(&st, desc + 4), word(&st, desc + 8), word(&st, desc + 12), word(&st, desc + 16));
                if size == 0 || wr >= size || rd >= size || self.board.profile().ram_region(base, size).is_none() {
                    return Err(ProbeError::Rtt(format!(
                        "RTT up channel 0 at {desc:#010x} is inconsistent (buffer {base:#010x}, size {size}, WrOff {wr}, RdOff {rd})"
                    )));
                }
                let avail = if wr >= rd { wr - rd } else { size - rd + wr } as usize;
                let n = avail.min(buf.len());
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    let mut one = [0u8; 1];
                    st.ram.read(base + (rd + i as u32) % size, &mut one);
                    *b = one[0];
                }
                let new_rd = (rd + n as u32) % size;
                st.ram.write(desc + 16, &new_rd.to_le_bytes());
                Ok(n)
            }
        }
    }
}

/// The symbol of the RTT control block (SEGGER's name, which defmt-rtt and rtt-target keep).
pub const RTT_SYMBOL: &str = "_SEGGER_RTT";
const RTT_ID: &[u8; 16] = b"SEGGER RTT\0\0\0\0\0\0";

/// Where firmware's RTT comes from.
#[derive(Debug, Clone, Copy)]
enum Rtt {
    /// A native twin firmware's queue.
    Native,
    /// An RTT control block in the emulated firmware's RAM, read as a probe does.
    Ram { cb: u32 },
}

fn rtt_id_at(st: &crate::board::State, cb: u32) -> bool {
    let mut id = [0u8; 16];
    st.ram.read(cb, &mut id);
    &id[..11] == b"SEGGER RTT\0"
}

/// Scan the board's RAM for an RTT control block, as probe-rs does without an ELF.
fn scan_for_rtt(board: &Board, st: &crate::board::State) -> Option<u32> {
    const CHUNK: u32 = 4096;
    for r in &board.profile().ram {
        let mut at = r.base;
        while at < r.base + r.size {
            let len = CHUNK.min(r.base + r.size - at) + RTT_ID.len() as u32;
            let len = len.min(r.base + r.size - at);
            let mut buf = vec![0u8; len as usize];
            st.ram.read(at, &mut buf);
            if let Some(i) = buf.windows(11).position(|w| w == &RTT_ID[..11]) {
                return Some(at + i as u32);
            }
            at += CHUNK;
        }
    }
    None
}
