//! What happened on the rig's wires, time-stamped: the evidence behind a report.
//!
//! A [`Recorder`] belongs to a [`crate::Rig`]. It sees every change of BOOT0, NRST and power
//! at the moment the line is driven (it sits between each relay wrapper and its [`Line`], so
//! the safe state, the NRST auto-release and every hold are recorded too), every CAN frame
//! sent and received, bus errors, console bytes, and the marks a scenario adds (stages and
//! timeline events). Reports turn this into waveforms (VCD) and attach it to test cases.
//!
//! Times are [`crate::time::Instant`]s: virtual time on the twin, the wall clock on a rig.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::can::CanFrame;
use crate::error::LineError;
use crate::lines::{Line, SharedLine, lock};
use crate::time::Instant;

/// The most records one recorder keeps; later ones are counted in [`Recorder::dropped`]. An
/// update over UDS is some 20,000 CAN frames.
pub const MAX_RECORDS: usize = 200_000;

/// One of the three control lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// BOOT0 (asserted = driven high).
    Boot0,
    /// NRST (asserted = held in reset, the pin low).
    Nrst,
    /// The board's supply (asserted = on).
    Power,
}

impl Signal {
    /// All three, in the order reports list them.
    pub const ALL: [Signal; 3] = [Signal::Boot0, Signal::Nrst, Signal::Power];

    /// Position in [`Signal::ALL`].
    pub fn index(self) -> usize {
        match self {
            Signal::Boot0 => 0,
            Signal::Nrst => 1,
            Signal::Power => 2,
        }
    }

    /// Wire name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Boot0 => "BOOT0",
            Signal::Nrst => "NRST",
            Signal::Power => "power",
        }
    }

    /// The electrical level for `asserted`: BOOT0 high when asserted, NRST low when asserted
    /// (held), power 1 when on.
    pub fn pin_high(self, asserted: bool) -> bool {
        match self {
            Signal::Nrst => !asserted,
            _ => asserted,
        }
    }

    /// How the state reads in a timeline.
    pub fn state(self, asserted: bool) -> &'static str {
        match (self, asserted) {
            (Signal::Boot0, true) => "high",
            (Signal::Boot0, false) => "low",
            (Signal::Nrst, true) => "held",
            (Signal::Nrst, false) => "released",
            (Signal::Power, true) => "on",
            (Signal::Power, false) => "off",
        }
    }
}

/// What was recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A control line was driven (only changes are recorded).
    Line {
        /// Which line.
        signal: Signal,
        /// Its new state.
        asserted: bool,
    },
    /// A frame the rig sent.
    CanTx(CanFrame),
    /// A frame the rig received.
    CanRx(CanFrame),
    /// A bus error or state change the CAN interface reported.
    CanError(String),
    /// Bytes the console delivered.
    ConsoleRx(Vec<u8>),
    /// A mark from the scenario: `stream` is e.g. "stage" or "event".
    Mark {
        /// Which stream of marks.
        stream: &'static str,
        /// The text.
        text: String,
    },
}

/// One record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When.
    pub at: Instant,
    /// What.
    pub event: Event,
}

#[derive(Debug)]
struct Inner {
    records: Vec<Record>,
    dropped: u64,
    lines: [Option<bool>; 3],
}

/// The rig's record of what happened; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Recorder { inner: Arc::new(Mutex::new(Inner { records: Vec::new(), dropped: 0, lines: [None; 3] })) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Record `event` now.
    pub fn push(&self, event: Event) {
        self.push_at(Instant::now(), event);
    }

    /// Record `event` as of `at` (a mark for something that started earlier). Records stay in
    /// the order they were pushed; readers sort by time where it matters.
    pub fn push_at(&self, at: Instant, event: Event) {
        self.with(|i| {
            if let Event::Line { signal, asserted } = event {
                if i.lines[signal.index()] == Some(asserted) {
                    return; // not a change
                }
                i.lines[signal.index()] = Some(asserted);
            }
            if i.records.len() >= MAX_RECORDS {
                i.dropped += 1;
            } else {
                i.records.push(Record { at, event });
            }
        });
    }

    /// Record a scenario mark.
    pub fn mark(&self, stream: &'static str, text: impl Into<String>) {
        self.push(Event::Mark { stream, text: text.into() });
    }

    /// Record a scenario mark for something that started at `at`.
    pub fn mark_at(&self, at: Instant, stream: &'static str, text: impl Into<String>) {
        self.push_at(at, Event::Mark { stream, text: text.into() });
    }

    /// The state of each control line as last driven (`None`: never driven by this process).
    pub fn lines(&self) -> [(Signal, Option<bool>); 3] {
        self.with(|i| Signal::ALL.map(|s| (s, i.lines[s.index()])))
    }

    /// How many records so far (a position for [`Recorder::since`]).
    pub fn len(&self) -> usize {
        self.with(|i| i.records.len())
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records from position `from` on.
    pub fn since(&self, from: usize) -> Vec<Record> {
        self.with(|i| i.records.get(from..).map(<[Record]>::to_vec).unwrap_or_default())
    }

    /// The control-line changes from position `from` on (without copying frames and bytes).
    pub fn line_changes(&self, from: usize) -> Vec<(Instant, Signal, bool)> {
        self.with(|i| {
            i.records
                .get(from..)
                .unwrap_or_default()
                .iter()
                .filter_map(|r| match r.event {
                    Event::Line { signal, asserted } => Some((r.at, signal, asserted)),
                    _ => None,
                })
                .collect()
        })
    }

    /// Remove and return the records from position `from` on, with how many were left out
    /// because [`MAX_RECORDS`] was reached (the count starts again): a rig that runs scenario
    /// after scenario keeps only the current one's records.
    pub fn take_since(&self, from: usize) -> (Vec<Record>, u64) {
        self.with(|i| {
            let from = from.min(i.records.len());
            (i.records.split_off(from), std::mem::take(&mut i.dropped))
        })
    }

    /// Put a recording line between each of `lines` and the code that drives it; the
    /// current state (if known) becomes the initial state.
    pub fn tap(&self, signal: Signal, line: &SharedLine) {
        let mut guard = lock(line);
        let state = guard.asserted();
        let inner = std::mem::replace(&mut *guard, Box::new(Placeholder));
        *guard = Box::new(RecordingLine { inner, signal, recorder: self.clone() });
        drop(guard);
        if let Some(a) = state {
            self.with(|i| i.lines[signal.index()] = Some(a));
        }
    }
}

struct Placeholder;

impl Line for Placeholder {
    fn set(&mut self, _: bool) -> Result<(), LineError> {
        Ok(())
    }
    fn asserted(&self) -> Option<bool> {
        None
    }
    fn describe(&self) -> String {
        String::new()
    }
}

/// A line that records every successful drive.
struct RecordingLine {
    inner: Box<dyn Line>,
    signal: Signal,
    recorder: Recorder,
}

impl Line for RecordingLine {
    fn set(&mut self, asserted: bool) -> Result<(), LineError> {
        self.inner.set(asserted)?;
        self.recorder.push(Event::Line { signal: self.signal, asserted });
        Ok(())
    }
    fn asserted(&self) -> Option<bool> {
        self.inner.asserted()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// A CAN interface that records its traffic.
pub(crate) struct RecordingCan {
    pub(crate) inner: Box<dyn crate::CanBus>,
    pub(crate) recorder: Recorder,
}

#[async_trait::async_trait]
impl crate::CanBus for RecordingCan {
    fn bitrates(&self) -> crate::can::Bitrates {
        self.inner.bitrates()
    }
    async fn send(&mut self, frame: &CanFrame) -> Result<(), crate::CanError> {
        self.inner.send(frame).await?;
        self.recorder.push(Event::CanTx(*frame));
        Ok(())
    }
    async fn recv(&mut self, timeout: Duration) -> Result<crate::CanEvent, crate::CanError> {
        let ev = self.inner.recv(timeout).await?;
        match &ev {
            crate::CanEvent::Frame(f) => self.recorder.push(Event::CanRx(*f)),
            other => self.recorder.push(Event::CanError(format!("{other:?}"))),
        }
        Ok(ev)
    }
    fn set_filters(&mut self, filters: &[crate::CanFilter]) -> Result<(), crate::CanError> {
        self.inner.set_filters(filters)
    }
}

/// A console that records what it delivers.
pub(crate) struct RecordingConsole {
    pub(crate) inner: Box<dyn crate::Console>,
    pub(crate) recorder: Recorder,
}

#[async_trait::async_trait]
impl crate::Console for RecordingConsole {
    async fn configure(&mut self, config: crate::SerialConfig) -> Result<(), crate::ConsoleError> {
        self.inner.configure(config).await
    }
    fn config(&self) -> crate::SerialConfig {
        self.inner.config()
    }
    async fn write(&mut self, data: &[u8]) -> Result<(), crate::ConsoleError> {
        self.inner.write(data).await
    }
    async fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, crate::ConsoleError> {
        let n = self.inner.read(buf, timeout).await?;
        // The application's console is 8N1; the ROM bootloader's USART protocol (8E1) is binary.
        if n > 0 && self.inner.config().parity == crate::console::Parity::None {
            self.recorder.push(Event::ConsoleRx(buf[..n].to_vec()));
        }
        Ok(n)
    }
    async fn discard_input(&mut self) -> Result<(), crate::ConsoleError> {
        self.inner.discard_input().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::shared;

    struct Pin(Option<bool>);
    impl Line for Pin {
        fn set(&mut self, a: bool) -> Result<(), LineError> {
            self.0 = Some(a);
            Ok(())
        }
        fn asserted(&self) -> Option<bool> {
            self.0
        }
        fn describe(&self) -> String {
            "pin".into()
        }
    }

    fn got_at(rec: &Recorder, i: usize) -> Instant {
        rec.since(i)[0].at
    }

    #[test]
    fn a_tapped_line_records_each_change_once_and_keeps_its_initial_state() {
        let rec = Recorder::new();
        let line = shared(Pin(Some(false)));
        rec.tap(Signal::Nrst, &line);
        assert_eq!(rec.lines()[1], (Signal::Nrst, Some(false)));
        lock(&line).set(false).unwrap(); // no change: not recorded
        lock(&line).set(true).unwrap();
        lock(&line).set(false).unwrap();
        let got: Vec<_> = rec.since(0).into_iter().map(|r| r.event).collect();
        assert_eq!(
            got,
            vec![
                Event::Line { signal: Signal::Nrst, asserted: true },
                Event::Line { signal: Signal::Nrst, asserted: false }
            ]
        );
        assert_eq!(lock(&line).asserted(), Some(false), "the tap passes the state through");
        assert_eq!(rec.line_changes(1), vec![(got_at(&rec, 1), Signal::Nrst, false)]);
        // A scenario takes its records: they leave the recorder, the line state stays.
        let (taken, dropped) = rec.take_since(1);
        assert_eq!((taken.len(), dropped, rec.len()), (1, 0, 1));
        assert_eq!(rec.lines()[1], (Signal::Nrst, Some(false)));
        assert!(!Signal::Nrst.pin_high(true), "NRST held is the pin low");
    }
}
