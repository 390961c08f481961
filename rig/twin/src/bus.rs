//! The simulated CAN bus.
//!
//! Every frame occupies the bus for its exact wire time ([`bootproof_rig::can::frame_bits`]:
//! arbitration and data phases, dynamic and fixed stuff bits) at the sender's bit rates, so
//! throughput measured in virtual time is physical. Frames are serialised (one at a time on the
//! wire). A node only receives frames sent at its own bit rates; a node at other rates sees
//! protocol errors instead, and a frame nobody can receive gets no ACK, as on a real bus.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bootproof_rig::CanError;
use bootproof_rig::can::{Bitrates, BusError, CanBus, CanEvent, CanFilter, CanFrame, wire_time};
use bootproof_rig::time::Instant;
use tokio::sync::mpsc;

struct Node {
    id: u64,
    name: String,
    rates: Bitrates,
    filters: Vec<CanFilter>,
    tx: mpsc::UnboundedSender<CanEvent>,
    /// Bus-off until then (see [`CanBusModel::bus_off`]).
    off_until: Option<Instant>,
}

/// Decides which frames the receivers lose (see [`CanBusModel::lose_frames`]).
type LossRule = Box<dyn FnMut(&CanFrame) -> bool + Send>;

#[derive(Default)]
struct BusState {
    nodes: Vec<Node>,
    next_id: u64,
    busy_until: Option<Instant>,
    frames: u64,
    bits_time: Duration,
    lose: Option<LossRule>,
    lost: u64,
    bus_off: Option<(LossRule, Duration)>,
    bus_offs: u64,
}

/// A shared CAN bus.
#[derive(Clone, Default)]
pub struct CanBusModel {
    inner: Arc<Mutex<BusState>>,
}

/// Bus statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusStats {
    /// Frames put on the wire.
    pub frames: u64,
    /// Total wire time of those frames.
    pub wire_time: Duration,
}

impl CanBusModel {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BusState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attach a node (a controller) at `rates`.
    pub fn attach(&self, name: &str, rates: Bitrates) -> CanPort {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.nodes.push(Node { id, name: name.to_string(), rates, filters: Vec::new(), tx, off_until: None });
        CanPort { bus: self.clone(), id, rates, rx, interface: name.to_string() }
    }

    /// Detach a node (its controller was reset).
    pub fn detach(&self, id: u64) {
        self.lock().nodes.retain(|n| n.id != id);
    }

    /// Frames and wire time so far.
    pub fn stats(&self) -> BusStats {
        let s = self.lock();
        BusStats { frames: s.frames, wire_time: s.bits_time }
    }

    /// Fault injection: every frame for which `rule` returns true is sent and acknowledged (the
    /// controllers see it), but no node's software receives it, as when a receiver's FIFO
    /// overflows. CAN itself retransmits corrupted frames, so this is how frames get lost on
    /// a real bus. Replaces an earlier rule.
    pub fn lose_frames(&self, rule: impl FnMut(&CanFrame) -> bool + Send + 'static) {
        self.lock().lose = Some(Box::new(rule));
    }

    /// Frames lost to [`CanBusModel::lose_frames`] so far.
    pub fn lost(&self) -> u64 {
        self.lock().lost
    }

    /// Fault injection: the sender of the first frame for which `rule` returns true goes
    /// bus-off instead of sending it (its transmit error counter passed 255, e.g. a wiring
    /// fault or a babbling node): it gets a bus-off event, its sends fail and it receives
    /// nothing, until it recovers after `recover` (as a SocketCAN interface with `restart-ms`
    /// does). The other nodes see nothing of it. One shot; replaces an earlier rule.
    pub fn bus_off(&self, rule: impl FnMut(&CanFrame) -> bool + Send + 'static, recover: Duration) {
        self.lock().bus_off = Some((Box::new(rule), recover));
    }

    /// Bus-offs injected by [`CanBusModel::bus_off`] so far.
    pub fn bus_offs(&self) -> u64 {
        self.lock().bus_offs
    }

    /// Names of the attached nodes.
    pub fn nodes(&self) -> Vec<String> {
        self.lock().nodes.iter().map(|n| format!("{} ({})", n.name, n.rates)).collect()
    }
}

fn rates_match(a: Bitrates, b: Bitrates, frame: &CanFrame) -> bool {
    if a.nominal != b.nominal {
        return false;
    }
    if frame.is_fd() {
        // Classic-only controllers flag FD frames as form errors.
        match (a.data, b.data) {
            (Some(x), Some(y)) => !frame.is_brs() || x == y,
            _ => false,
        }
    } else {
        true
    }
}

/// One node's port on the bus. Implements [`CanBus`]; dropping it detaches the node.
pub struct CanPort {
    bus: CanBusModel,
    id: u64,
    rates: Bitrates,
    rx: mpsc::UnboundedReceiver<CanEvent>,
    interface: String,
}

impl CanPort {
    /// This port's node id on the bus.
    pub fn node_id(&self) -> u64 {
        self.id
    }

    /// Whether this node is still attached (its board was not reset).
    pub fn attached(&self) -> bool {
        self.bus.lock().nodes.iter().any(|n| n.id == self.id)
    }

    /// Send and report whether any node acknowledged the frame.
    pub async fn transmit(&mut self, frame: &CanFrame) -> Result<bool, CanError> {
        if frame.is_fd() && self.rates.data.is_none() {
            return Err(CanError::FdNotEnabled { interface: self.interface.clone() });
        }
        let duration = wire_time(frame, self.rates);
        let end = {
            let mut s = self.bus.lock();
            let now = Instant::now();
            let me = s.nodes.iter().position(|n| n.id == self.id);
            if let Some(until) = me.and_then(|i| s.nodes[i].off_until).filter(|u| *u > now) {
                return Err(CanError::Interface {
                    interface: self.interface.clone(),
                    message: format!(
                        "bus-off: the controller is recovering ({:?} left); check the wiring and termination",
                        until - now
                    ),
                });
            }
            let hit = s.bus_off.as_mut().is_some_and(|(rule, _)| rule(frame));
            if let (true, Some(i)) = (hit, me) {
                let (_, recover) = s.bus_off.take().expect("a rule");
                s.bus_offs += 1;
                s.nodes[i].off_until = Some(now + recover);
                let _ = s.nodes[i].tx.send(CanEvent::Error(BusError::BusOff));
                return Err(CanError::Interface {
                    interface: self.interface.clone(),
                    message: "bus-off: too many transmit errors; check the wiring and termination".into(),
                });
            }
            let start = s.busy_until.filter(|b| *b > now).unwrap_or(now);
            let end = start + duration;
            s.busy_until = Some(end);
            s.frames += 1;
            s.bits_time += duration;
            end
        };
        bootproof_rig::time::sleep_until(end).await;
        let mut s = self.bus.lock();
        let lost = s.lose.as_mut().is_some_and(|rule| rule(frame));
        if lost {
            s.lost += 1;
        }
        let mut acked = false;
        let now = Instant::now();
        for n in s.nodes.iter().filter(|n| n.id != self.id && n.off_until.is_none_or(|u| u <= now)) {
            if rates_match(self.rates, n.rates, frame) {
                acked = true;
                if !lost && (n.filters.is_empty() || n.filters.iter().any(|f| f.matches(frame.id()))) {
                    let _ = n.tx.send(CanEvent::Frame(*frame));
                }
            } else {
                let _ = n.tx.send(CanEvent::Error(BusError::Protocol(format!(
                    "bit/form errors: a frame at {} was seen by a node at {}",
                    self.rates, n.rates
                ))));
            }
        }
        Ok(acked)
    }

    /// Frames waiting to be read, without waiting.
    pub fn try_recv(&mut self) -> Option<CanEvent> {
        self.rx.try_recv().ok()
    }

    /// The next frame or bus event (`None`: the bus is gone).
    pub async fn next_event(&mut self) -> Option<CanEvent> {
        self.rx.recv().await
    }
}

impl Drop for CanPort {
    fn drop(&mut self) {
        self.bus.lock().nodes.retain(|n| n.id != self.id);
    }
}

#[async_trait]
impl CanBus for CanPort {
    fn bitrates(&self) -> Bitrates {
        self.rates
    }

    async fn send(&mut self, frame: &CanFrame) -> Result<(), CanError> {
        if !self.attached() {
            return Err(CanError::Interface {
                interface: self.interface.clone(),
                message: "controller was reset".into(),
            });
        }
        if !self.transmit(frame).await? {
            // The controller retransmits without ACK until error-passive; report it once.
            let s = self.bus.lock();
            if let Some(me) = s.nodes.iter().find(|n| n.id == self.id) {
                let _ = me.tx.send(CanEvent::Error(BusError::NoAck));
            }
        }
        Ok(())
    }

    async fn recv(&mut self, timeout: Duration) -> Result<CanEvent, CanError> {
        match bootproof_rig::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(ev)) => Ok(ev),
            Ok(None) => Err(CanError::Interface { interface: self.interface.clone(), message: "bus closed".into() }),
            Err(_) => Err(CanError::Timeout(timeout)),
        }
    }

    fn set_filters(&mut self, filters: &[CanFilter]) -> Result<(), CanError> {
        let mut s = self.bus.lock();
        if let Some(me) = s.nodes.iter_mut().find(|n| n.id == self.id) {
            me.filters = filters.to_vec();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootproof_rig::CanId;

    fn fd(id: u16, data: &[u8]) -> CanFrame {
        CanFrame::fd(CanId::standard(id).unwrap(), data, true).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn frames_take_their_wire_time_and_are_serialised() {
        bootproof_rig::time::set_thread_scale(Some(bootproof_rig::time::VIRTUAL_SCALE));
        let bus = CanBusModel::new();
        let rates = Bitrates::fd(250_000, 1_000_000);
        let mut a = bus.attach("host", rates);
        let mut b = bus.attach("board", rates);
        let mut c = bus.attach("other", rates);
        let f = fd(0x31, &[0x55; 64]);
        let one = wire_time(&f, rates);
        let t0 = Instant::now();
        let (ra, rc) = tokio::join!(a.transmit(&f), c.transmit(&f));
        assert!(ra.unwrap() && rc.unwrap());
        // Two frames cannot share the wire: the second ends after both wire times.
        assert_eq!(t0.elapsed(), one * 2);
        for _ in 0..2 {
            assert_eq!(b.recv(Duration::ZERO).await.unwrap(), CanEvent::Frame(f));
        }
        assert_eq!(bus.stats().frames, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn bit_rate_mismatch_means_no_communication() {
        let bus = CanBusModel::new();
        let mut host = bus.attach("host", Bitrates::fd(500_000, 2_000_000));
        let mut board = bus.attach("board", Bitrates::fd(250_000, 1_000_000));
        host.send(&fd(0x02, &[])).await.unwrap();
        assert_eq!(host.recv(Duration::from_millis(1)).await.unwrap(), CanEvent::Error(BusError::NoAck));
        assert!(matches!(board.recv(Duration::from_millis(1)).await.unwrap(), CanEvent::Error(BusError::Protocol(_))));
        assert!(matches!(board.recv(Duration::from_millis(1)).await, Err(CanError::Timeout(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn fd_frames_need_fd_on_both_ends() {
        let bus = CanBusModel::new();
        let mut classic = bus.attach("classic", Bitrates::classic(125_000));
        assert!(matches!(classic.send(&fd(1, &[1])).await, Err(CanError::FdNotEnabled { .. })));
        let mut fdnode = bus.attach("fd", Bitrates::fd(125_000, 1_000_000));
        assert!(!fdnode.transmit(&fd(1, &[1])).await.unwrap(), "a classic controller cannot ACK an FD frame");
        let classic_frame = CanFrame::classic(CanId::standard(5).unwrap(), &[1, 2]).unwrap();
        assert!(fdnode.transmit(&classic_frame).await.unwrap(), "FD controllers receive classic frames");
        assert!(matches!(classic.recv(Duration::ZERO).await.unwrap(), CanEvent::Error(BusError::Protocol(_))));
        assert_eq!(classic.recv(Duration::ZERO).await.unwrap(), CanEvent::Frame(classic_frame));
    }

    #[tokio::test(start_paused = true)]
    async fn filters_and_detach() {
        let bus = CanBusModel::new();
        let rates = Bitrates::classic(125_000);
        let mut a = bus.attach("a", rates);
        let mut b = bus.attach("b", rates);
        b.set_filters(&[CanFilter::standard(0x79)]).unwrap();
        a.send(&CanFrame::classic(CanId::standard(0x10).unwrap(), &[1]).unwrap()).await.unwrap();
        a.send(&CanFrame::classic(CanId::standard(0x79).unwrap(), &[2]).unwrap()).await.unwrap();
        match b.recv(Duration::ZERO).await.unwrap() {
            CanEvent::Frame(f) => assert_eq!(f.data(), &[2]),
            e => panic!("{e:?}"),
        }
        drop(b);
        assert!(!a.transmit(&CanFrame::classic(CanId::standard(1).unwrap(), &[]).unwrap()).await.unwrap());
    }
}
