//! CAN and CAN FD through Linux SocketCAN (socketcan + tokio).
//!
//! The interface must be up with the bit rates of the rig config, error reporting on, and
//! automatic restart after bus-off:
//!
//! ```text
//! ip link set can0 up type can bitrate 250000 dbitrate 1000000 fd on berr-reporting on restart-ms 100
//! ```

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
    let up = match cfg.data_bitrate {
        Some(d) => format!(
            "ip link set {interface} up type can bitrate {} dbitrate {d} fd on berr-reporting on restart-ms 100",
            cfg.nominal_bitrate
        ),
        None => format!(
            "ip link set {interface} up type can bitrate {} berr-reporting on restart-ms 100",
            cfg.nominal_bitrate
        ),
    };
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
    let rates = Bitrates { nominal: cfg.nominal_bitrate, data: cfg.data_bitrate };
    Ok(Box::new(SocketCanBus { socket, interface: iface, rates }))
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
        from_socketcan(frame)
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

    #[tokio::test]
    async fn opening_without_socketcan_says_how_to_fix_it() {
        let cfg = CanConfig { interface: "can0".into(), nominal_bitrate: 250_000, data_bitrate: Some(1_000_000) };
        match open(&cfg).await {
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("can0")
                        && e.contains("ip link set can0 up type can bitrate 250000 dbitrate 1000000 fd on"),
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
