//! CAN and CAN FD through Linux SocketCAN (socketcan + tokio).
//!
//! The interface must be up with the bit rates and sample points of the rig config, error
//! reporting on, and automatic restart after bus-off:
//!
//! ```text
//! ip link set can0 up type can bitrate 250000 sample-point 0.8 dbitrate 1000000 dsample-point 0.8 fd on berr-reporting on restart-ms 100
//! ```
//!
//! (`ci/network/80-can0.network` does the same through systemd-networkd.) [`open`] reads what
//! the kernel has configured over netlink ([`LinkFacts`]) and refuses an interface that is down,
//! not in FD mode, or at other rates or sample points ([`judge_link`]). A bus-off is reported as
//! [`BusError::BusOff`] and recovered ([`recover_bus_off`]): the kernel restarts the controller
//! after restart-ms, and with restart-ms 0 bootproof restarts it over netlink.

use std::time::Duration;

use async_trait::async_trait;
use bootproof_fixtures::CanConfig;
use socketcan::{EmbeddedFrame, SocketOptions};

use crate::can::{Bitrates, BusError, CanBus, CanEvent, CanFilter, CanFrame, CanId};
use crate::error::CanError;

/// Our frame → a socketcan frame (classic or FD).
pub enum Outgoing {
    /// Classic data or remote frame.
    Classic(socketcan::CanFrame),
    /// FD frame.
    Fd(socketcan::CanFdFrame),
}

fn id(i: CanId) -> Result<socketcan::Id, CanError> {
    let bad = || CanError::InvalidFrame(format!("identifier {i} out of range"));
    Ok(match i {
        CanId::Standard(s) => socketcan::Id::Standard(socketcan::StandardId::new(s).ok_or_else(bad)?),
        CanId::Extended(e) => socketcan::Id::Extended(socketcan::ExtendedId::new(e).ok_or_else(bad)?),
    })
}

fn from_id(i: socketcan::Id) -> CanId {
    match i {
        socketcan::Id::Standard(s) => CanId::Standard(s.as_raw()),
        socketcan::Id::Extended(e) => CanId::Extended(e.as_raw()),
    }
}

/// Convert for sending.
pub fn to_socketcan(f: &CanFrame) -> Result<Outgoing, CanError> {
    let i = id(f.id())?;
    if f.is_fd() {
        let flags = if f.is_brs() { socketcan::id::FdFlags::BRS } else { socketcan::id::FdFlags::empty() };
        let fd = socketcan::CanFdFrame::with_flags(i, f.data(), flags)
            .ok_or_else(|| CanError::InvalidFrame(format!("{} bytes do not fit a CAN FD frame", f.data().len())))?;
        Ok(Outgoing::Fd(fd))
    } else if f.is_remote() {
        let r = socketcan::CanFrame::new_remote(i, f.dlc() as usize)
            .ok_or_else(|| CanError::InvalidFrame("bad remote frame".into()))?;
        Ok(Outgoing::Classic(r))
    } else {
        let c = socketcan::CanFrame::new(i, f.data())
            .ok_or_else(|| CanError::InvalidFrame(format!("{} bytes do not fit a classic frame", f.data().len())))?;
        Ok(Outgoing::Classic(c))
    }
}

/// What a controller error frame means for a user.
pub fn bus_error(e: socketcan::CanErrorFrame) -> BusError {
    use socketcan::errors::ErrorCause;
    let err = e.into_error();
    let text = err.to_string();
    let causes: Vec<&ErrorCause> = err.causes().collect();
    if causes.iter().any(|c| matches!(c, ErrorCause::BusOff)) {
        BusError::BusOff
    } else if causes.iter().any(|c| matches!(c, ErrorCause::NoAck)) {
        BusError::NoAck
    } else if causes.iter().any(|c| matches!(c, ErrorCause::Protocol { .. } | ErrorCause::BusError)) {
        BusError::Protocol(text)
    } else if text.to_ascii_lowercase().contains("passive") {
        BusError::ErrorPassive
    } else if text.to_ascii_lowercase().contains("overflow") {
        BusError::Overflow
    } else {
        BusError::Other(text)
    }
}

/// Convert a received frame.
pub fn from_socketcan(f: socketcan::CanAnyFrame) -> Result<CanEvent, CanError> {
    Ok(match f {
        socketcan::CanAnyFrame::Normal(d) => CanEvent::Frame(CanFrame::classic(from_id(d.id()), d.data())?),
        socketcan::CanAnyFrame::Remote(r) => CanEvent::Frame(CanFrame::remote(from_id(r.id()), r.dlc() as u8)?),
        socketcan::CanAnyFrame::Fd(fd) => CanEvent::Frame(CanFrame::fd(from_id(fd.id()), fd.data(), fd.is_brs())?),
        socketcan::CanAnyFrame::Error(e) => CanEvent::Error(bus_error(e)),
    })
}

/// Our acceptance filter as a kernel filter.
pub fn kernel_filter(f: &CanFilter) -> socketcan::CanFilter {
    const EFF: u32 = 0x8000_0000;
    if f.extended {
        socketcan::CanFilter::new(f.id | EFF, f.mask | EFF)
    } else {
        // Match only standard frames: the EFF bit must be clear.
        socketcan::CanFilter::new(f.id & 0x7FF, (f.mask & 0x7FF) | EFF)
    }
}

/// Why an interface could not be opened, and how to fix it.
pub fn explain_open(interface: &str, e: &std::io::Error, cfg: &CanConfig) -> String {
    let up = CanConfig { interface: interface.to_string(), ..cfg.clone() }.ip_link_up();
    match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT) | Some(libc::EPROTONOSUPPORT) => format!(
            "this kernel has no SocketCAN support (AF_CAN): on the Pi, `modprobe can_raw` and bring the interface up: `{up}`"
        ),
        Some(libc::ENODEV) => {
            format!("no interface named {interface}: check the CAN HAT overlay or USB adapter (`ip link`), then `{up}`")
        }
        _ => format!("{e}; bring the interface up with `{up}`"),
    }
}

/// What the kernel reports about a CAN interface (netlink `RTM_GETLINK`, as `ip -details link
/// show` prints it). Sample points are in tenths of a percent, as the kernel gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFacts {
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Control mode FD on.
    pub fd: bool,
    /// Nominal bit rate and sample point.
    pub bitrate: Option<(u32, u32)>,
    /// Data bit rate and sample point (FD).
    pub data_bitrate: Option<(u32, u32)>,
    /// Automatic restart delay after bus-off (0: never).
    pub restart_ms: Option<u32>,
}

/// How far the kernel's sample point may sit from the configured one, in tenths of a percent:
/// the kernel rounds the requested sample point to the controller's time quanta.
pub const SAMPLE_POINT_TOLERANCE: u32 = 10;

/// Judge the kernel's view of the interface against the rig config: every problem, each with
/// the command that fixes it. Empty: the interface is usable as configured.
pub fn judge_link(facts: &LinkFacts, cfg: &CanConfig) -> Vec<String> {
    let i = &cfg.interface;
    let redo = format!("`ip link set {i} down && {}`", cfg.ip_link_up());
    let pct = |permille: u32| format!("{}", permille as f64 / 10.0);
    let mut problems = Vec::new();
    if !facts.up {
        problems.push(format!("{i} is down; bring it up with {redo} (or enable ci/network/80-can0.network)"));
    }
    let mut rate = |what: &str, got: Option<(u32, u32)>, want: u32, want_sp: u16| match got {
        None => problems.push(format!("the kernel reports no {what} bit timing for {i}; set it with {redo}")),
        Some((bitrate, _)) if bitrate != want => problems.push(format!(
            "{i} runs at {bitrate} bit/s {what}, the rig config says {want} bit/s; reconfigure it with {redo}"
        )),
        Some((_, sp)) if sp.abs_diff(want_sp as u32) > SAMPLE_POINT_TOLERANCE => problems.push(format!(
            "{i} samples the {what} bit at {} %, the rig config says {} %; reconfigure it with {redo}",
            pct(sp),
            pct(want_sp as u32)
        )),
        Some(_) => {}
    };
    rate("nominal", facts.bitrate, cfg.nominal_bitrate, cfg.sample_point);
    if let Some(d) = cfg.data_bitrate {
        if !facts.fd {
            problems.push(format!("{i} is not in CAN FD mode (fd off); the rig config wants FD: {redo}"));
        } else {
            rate("data", facts.data_bitrate, d, cfg.data_sample_point);
        }
    }
    problems
}

/// The kernel's facts over netlink.
fn link_facts(interface: &str) -> Result<LinkFacts, String> {
    use socketcan::nl::CanInterface;
    let details = CanInterface::open(interface).and_then(|c| c.details()).map_err(|e| {
        format!("cannot read {interface}'s settings over netlink ({e}); check `ip -details link show {interface}`")
    })?;
    let can = details.can;
    Ok(LinkFacts {
        up: details.is_up,
        fd: can.ctrl_mode.is_some_and(|m| m.has_mode(socketcan::CanCtrlMode::Fd)),
        bitrate: can.bit_timing.map(|t| (t.bitrate, t.sample_point)),
        data_bitrate: can.data_bit_timing.map(|t| (t.bitrate, t.sample_point)),
        restart_ms: can.restart_ms,
    })
}

/// The kernel's control of an interface that bus-off recovery needs (netlink, or a fake).
pub trait LinkControl {
    /// The automatic restart delay (0: the kernel never restarts on its own).
    fn restart_ms(&self) -> Result<Option<u32>, String>;
    /// Restart the controller now (needs CAP_NET_ADMIN).
    fn restart(&self) -> Result<(), String>;
}

struct Netlink(String);

impl LinkControl for Netlink {
    fn restart_ms(&self) -> Result<Option<u32>, String> {
        socketcan::nl::CanInterface::open(&self.0).and_then(|c| c.restart_ms()).map_err(|e| e.to_string())
    }
    fn restart(&self) -> Result<(), String> {
        socketcan::nl::CanInterface::open(&self.0).and_then(|c| c.restart()).map_err(|e| e.to_string())
    }
}

/// What was done about a bus-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The kernel restarts the controller after this many ms on its own.
    Kernel(u32),
    /// restart-ms is 0: bootproof restarted the controller.
    Restarted,
    /// The controller stays bus-off: why, and how to fix it.
    Failed(String),
}

/// Recover from a bus-off: leave it to the kernel when restart-ms is set, otherwise restart the
/// interface now.
pub fn recover_bus_off(interface: &str, link: &dyn LinkControl) -> Recovery {
    match link.restart_ms() {
        Ok(Some(ms)) if ms > 0 => Recovery::Kernel(ms),
        Ok(_) => match link.restart() {
            Ok(()) => Recovery::Restarted,
            Err(e) => Recovery::Failed(format!(
                "{interface} is bus-off with restart-ms 0 and restarting it failed ({e}); give bootproof CAP_NET_ADMIN or set `restart-ms 100` (ci/network/80-can0.network: RestartSec=100ms)"
            )),
        },
        Err(e) => Recovery::Failed(format!(
            "{interface} is bus-off and its restart setting cannot be read ({e}); check `ip -details link show {interface}`"
        )),
    }
}

/// A SocketCAN interface.
pub struct SocketCanBus {
    socket: Sock,
    interface: String,
    rates: Bitrates,
}

enum Sock {
    Classic(socketcan::tokio::CanSocket),
    Fd(socketcan::tokio::CanFdSocket),
}

/// Open the interface named in `cfg` (FD if it has a data bit rate).
pub async fn open(cfg: &CanConfig) -> Result<Box<dyn CanBus>, CanError> {
    let iface = cfg.interface.clone();
    let err =
        |e: std::io::Error| CanError::Interface { interface: iface.clone(), message: explain_open(&iface, &e, cfg) };
    let socket = if cfg.fd() {
        let s = socketcan::tokio::CanFdSocket::open(&iface).map_err(err)?;
        s.set_error_filter_accept_all().map_err(err)?;
        Sock::Fd(s)
    } else {
        let s = socketcan::tokio::CanSocket::open(&iface).map_err(err)?;
        s.set_error_filter_accept_all().map_err(err)?;
        Sock::Classic(s)
    };
    let problems = match link_facts(&iface) {
        Ok(facts) => judge_link(&facts, cfg),
        Err(e) => vec![e],
    };
    if !problems.is_empty() {
        return Err(CanError::Interface { interface: iface.clone(), message: problems.join("; ") });
    }
    let rates = Bitrates { nominal: cfg.nominal_bitrate, data: cfg.data_bitrate };
    Ok(Box::new(SocketCanBus { socket, interface: iface, rates }))
}

impl SocketCanBus {
    /// A bus-off arrived: recover, and say so as the event.
    fn bus_off(&self) -> BusError {
        match recover_bus_off(&self.interface, &Netlink(self.interface.clone())) {
            Recovery::Kernel(ms) => {
                tracing::warn!("{}: bus-off; the kernel restarts the controller after {ms} ms", self.interface);
                BusError::BusOff
            }
            Recovery::Restarted => {
                tracing::warn!("{}: bus-off; restart-ms is 0, so bootproof restarted the controller", self.interface);
                BusError::BusOff
            }
            Recovery::Failed(why) => {
                tracing::error!("{why}");
                BusError::Other(format!("bus-off, not recovered: {why}"))
            }
        }
    }
}

#[async_trait]
impl CanBus for SocketCanBus {
    fn bitrates(&self) -> Bitrates {
        self.rates
    }

    async fn send(&mut self, frame: &CanFrame) -> Result<(), CanError> {
        let io = |e: std::io::Error| CanError::Interface {
            interface: self.interface.clone(),
            message: format!("send failed: {e}"),
        };
        match (&self.socket, to_socketcan(frame)?) {
            (Sock::Classic(s), Outgoing::Classic(f)) => s.write_frame(f).await.map_err(io),
            (Sock::Fd(s), Outgoing::Classic(f)) => s.write_frame(&f).await.map_err(io),
            (Sock::Fd(s), Outgoing::Fd(f)) => s.write_frame(&f).await.map_err(io),
            (Sock::Classic(_), Outgoing::Fd(_)) => Err(CanError::FdNotEnabled { interface: self.interface.clone() }),
        }
    }

    async fn recv(&mut self, timeout: Duration) -> Result<CanEvent, CanError> {
        let iface = self.interface.clone();
        let io = |e: std::io::Error| CanError::Interface {
            interface: iface.clone(),
            message: format!("receive failed: {e}"),
        };
        let frame = match &self.socket {
            Sock::Classic(s) => {
                let f = crate::time::timeout(timeout, s.read_frame())
                    .await
                    .map_err(|_| CanError::Timeout(timeout))?
                    .map_err(io)?;
                match f {
                    socketcan::CanFrame::Data(d) => socketcan::CanAnyFrame::Normal(d),
                    socketcan::CanFrame::Remote(r) => socketcan::CanAnyFrame::Remote(r),
                    socketcan::CanFrame::Error(e) => socketcan::CanAnyFrame::Error(e),
                }
            }
            Sock::Fd(s) => crate::time::timeout(timeout, s.read_frame())
                .await
                .map_err(|_| CanError::Timeout(timeout))?
                .map_err(io)?,
        };
        match from_socketcan(frame)? {
            CanEvent::Error(BusError::BusOff) => Ok(CanEvent::Error(self.bus_off())),
            ev => Ok(ev),
        }
    }

    fn set_filters(&mut self, filters: &[CanFilter]) -> Result<(), CanError> {
        let k: Vec<socketcan::CanFilter> = filters.iter().map(kernel_filter).collect();
        let r = match &self.socket {
            Sock::Classic(s) if k.is_empty() => s.set_filter_accept_all(),
            Sock::Fd(s) if k.is_empty() => s.set_filter_accept_all(),
            Sock::Classic(s) => s.set_filters(&k),
            Sock::Fd(s) => s.set_filters(&k),
        };
        r.map_err(|e| CanError::Interface {
            interface: self.interface.clone(),
            message: format!("setting filters failed: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn back(f: &CanFrame) -> CanFrame {
        let any = match to_socketcan(f).unwrap() {
            Outgoing::Classic(socketcan::CanFrame::Data(d)) => socketcan::CanAnyFrame::Normal(d),
            Outgoing::Classic(socketcan::CanFrame::Remote(r)) => socketcan::CanAnyFrame::Remote(r),
            Outgoing::Classic(socketcan::CanFrame::Error(e)) => socketcan::CanAnyFrame::Error(e),
            Outgoing::Fd(fd) => socketcan::CanAnyFrame::Fd(fd),
        };
        match from_socketcan(any).unwrap() {
            CanEvent::Frame(f) => f,
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn frames_survive_the_round_trip() {
        let cases = [
            CanFrame::classic(CanId::Standard(0x123), &[1, 2, 3]).unwrap(),
            CanFrame::classic(CanId::Extended(0x1AAA_AAAA), &[0xF1]).unwrap(),
            CanFrame::fd(CanId::Standard(0x031), &[7; 64], true).unwrap(),
            CanFrame::fd(CanId::Standard(0x031), &[7; 12], false).unwrap(),
            CanFrame::remote(CanId::Standard(0x7A0), 4).unwrap(),
        ];
        for f in cases {
            assert_eq!(back(&f), f, "{f}");
        }
    }

    #[test]
    fn error_frames_map_to_bus_errors() {
        // linux/can/error.h: CAN_ERR_ACK = 0x20, CAN_ERR_BUSOFF = 0x40, CAN_ERR_PROT = 0x08.
        let mk = |bits: u32, data: &[u8]| socketcan::CanErrorFrame::new_error(bits, data).unwrap();
        assert_eq!(bus_error(mk(0x20, &[0; 8])), BusError::NoAck);
        assert_eq!(bus_error(mk(0x40, &[0; 8])), BusError::BusOff);
        assert!(matches!(bus_error(mk(0x08, &[0, 0, 0x04, 0x08, 0, 0, 0, 0])), BusError::Protocol(_)));
    }

    #[test]
    fn filters_distinguish_standard_and_extended_ids() {
        let repr = |f: socketcan::CanFilter| {
            let raw: &libc::can_filter = f.as_ref();
            (raw.can_id, raw.can_mask)
        };
        // Standard: the EFF flag is in the mask and clear in the id, so extended frames never match.
        assert_eq!(repr(kernel_filter(&CanFilter::standard(0x79))), (0x79, 0x8000_07FF));
        let ext = CanFilter { id: 0x18DA_F110, mask: 0x1FFF_FFFF, extended: true };
        assert_eq!(repr(kernel_filter(&ext)), (0x98DA_F110, 0x9FFF_FFFF));
    }

    fn fd_config() -> CanConfig {
        CanConfig {
            interface: "can0".into(),
            nominal_bitrate: 250_000,
            data_bitrate: Some(1_000_000),
            sample_point: 800,
            data_sample_point: 800,
        }
    }

    /// What a correctly configured can0 looks like to the kernel.
    fn good() -> LinkFacts {
        LinkFacts {
            up: true,
            fd: true,
            bitrate: Some((250_000, 800)),
            data_bitrate: Some((1_000_000, 800)),
            restart_ms: Some(100),
        }
    }

    #[test]
    fn a_link_as_configured_passes() {
        assert_eq!(judge_link(&good(), &fd_config()), Vec::<String>::new());
        // The kernel rounds to time quanta: 87.5 % against 87.5 % configured, 79.5 % against 80 %.
        let near = LinkFacts { bitrate: Some((250_000, 795)), ..good() };
        assert!(judge_link(&near, &fd_config()).is_empty());
        // A classic rig config accepts an FD interface at its nominal rate.
        let classic = CanConfig { data_bitrate: None, ..fd_config() };
        assert!(judge_link(&LinkFacts { fd: false, data_bitrate: None, ..good() }, &classic).is_empty());
    }

    #[test]
    fn a_link_that_is_down_not_fd_or_at_other_rates_fails_with_the_fix() {
        let fix = "ip link set can0 down && ip link set can0 up type can bitrate 250000 sample-point 0.8 dbitrate 1000000 dsample-point 0.8 fd on";
        let cases: [(LinkFacts, &str); 6] = [
            (LinkFacts { up: false, ..good() }, "can0 is down"),
            (LinkFacts { fd: false, data_bitrate: None, ..good() }, "not in CAN FD mode"),
            (LinkFacts { bitrate: Some((500_000, 800)), ..good() }, "500000 bit/s nominal"),
            (LinkFacts { data_bitrate: Some((2_000_000, 800)), ..good() }, "2000000 bit/s data"),
            (LinkFacts { bitrate: Some((250_000, 875)), ..good() }, "nominal bit at 87.5 %"),
            (LinkFacts { data_bitrate: Some((1_000_000, 750)), ..good() }, "data bit at 75 %"),
        ];
        for (facts, want) in cases {
            let problems = judge_link(&facts, &fd_config());
            assert_eq!(problems.len(), 1, "{facts:?}: {problems:?}");
            assert!(problems[0].contains(want) && problems[0].contains(fix), "{problems:?}");
        }
        let none = LinkFacts { bitrate: None, ..good() };
        assert!(judge_link(&none, &fd_config())[0].contains("no nominal bit timing"));
    }

    struct FakeLink {
        restart_ms: Result<Option<u32>, String>,
        restart: Result<(), String>,
        restarted: std::cell::Cell<u32>,
    }

    impl LinkControl for FakeLink {
        fn restart_ms(&self) -> Result<Option<u32>, String> {
            self.restart_ms.clone()
        }
        fn restart(&self) -> Result<(), String> {
            self.restarted.set(self.restarted.get() + 1);
            self.restart.clone()
        }
    }

    fn link(restart_ms: Result<Option<u32>, String>, restart: Result<(), String>) -> FakeLink {
        FakeLink { restart_ms, restart, restarted: Default::default() }
    }

    #[test]
    fn bus_off_is_left_to_the_kernel_or_restarted() {
        let l = link(Ok(Some(100)), Ok(()));
        assert_eq!(recover_bus_off("can0", &l), Recovery::Kernel(100));
        assert_eq!(l.restarted.get(), 0, "the kernel restarts it: no second restart");
        for ms in [Some(0), None] {
            let l = link(Ok(ms), Ok(()));
            assert_eq!(recover_bus_off("can0", &l), Recovery::Restarted);
            assert_eq!(l.restarted.get(), 1);
        }
        let l = link(Ok(Some(0)), Err("Operation not permitted".into()));
        match recover_bus_off("can0", &l) {
            Recovery::Failed(why) => assert!(why.contains("CAP_NET_ADMIN") && why.contains("restart-ms 100"), "{why}"),
            r => panic!("{r:?}"),
        }
        let l = link(Err("netlink down".into()), Ok(()));
        assert!(matches!(recover_bus_off("can0", &l), Recovery::Failed(w) if w.contains("ip -details link show can0")));
        assert_eq!(l.restarted.get(), 0);
    }

    #[tokio::test]
    async fn opening_without_socketcan_says_how_to_fix_it() {
        let cfg = fd_config();
        match open(&cfg).await {
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("can0")
                        && e.contains("ip link set can0 up type can bitrate 250000 sample-point 0.8 dbitrate 1000000 dsample-point 0.8 fd on"),
                    "{e}"
                );
            }
            Ok(_) => eprintln!("this machine has a working can0"),
        }
        let e = explain_open("can0", &std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT), &cfg);
        assert!(e.contains("no SocketCAN support") && e.contains("modprobe can_raw"), "{e}");
        let e = explain_open("can7", &std::io::Error::from_raw_os_error(libc::ENODEV), &cfg);
        assert!(e.contains("no interface named can7"), "{e}");
    }
}
