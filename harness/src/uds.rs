//! Host-side UDS (ISO 14229-1) client for bootproof's bootloader, over ISO-TP (ISO 15765-2) on
//! the rig's CAN FD bus: requests on [`REQUEST_ID`] (0x7E0), responses on [`RESPONSE_ID`]
//! (0x7E8), CAN FD frames with bit-rate switching, TX_DL 64.
//!
//! ```text
//! let mut uds = UdsClient::new(rig.can()?);
//! uds.session(session::PROGRAMMING).await?;
//! uds.routine_start(RID_ERASE, &[]).await?;             // waits out response-pending
//! let max = uds.request_download(slot_addr, size).await?;
//! uds.transfer_data(1, &block).await?;
//! uds.transfer_exit().await?;
//! ```
//!
//! The transport honours the server's flow control (block size, STmin, WAIT, N_Bs) and gives
//! its own for responses (BS 0, STmin 0). Frames on other identifiers are ignored, so the
//! client shares the bus with an application's traffic. A response-pending (NRC 0x78) extends
//! the wait to P2* each time it arrives; otherwise a response must start within the client's
//! P2 (150 ms, generous against the server's 50 ms, plus a frame's wire time).

use std::time::Duration;

use bootproof_rig::CanError;
use bootproof_rig::can::{Bitrates, BusError, CanBus, CanEvent, CanFrame, CanId, wire_time};
use bootproof_rig::time::{self, Instant};
use bootproof_uds::isotp::{
    self, FlowStatus, MAX_MESSAGE, N_BS, N_CR, Next, Pdu, PduError, Received, Receiver, RxError, SendError, Sender,
};
use bootproof_uds::uds::{ADDRESS_AND_LENGTH_44, P2_STAR_MS, nrc, sid};
use bootproof_uds::{REQUEST_ID, RESPONSE_ID};

/// The client's P2 before frame time: generous against the server's P2 of 50 ms.
pub const CLIENT_P2: Duration = Duration::from_millis(150);

/// The longest request the client sends (a TransferData of a whole image is one request when
/// the server says so: bootproof's bootloader takes a whole slot).
pub const MAX_REQUEST: usize = 16 * 1024 * 1024;

/// A UDS failure.
#[derive(Debug, thiserror::Error)]
pub enum UdsError {
    /// The server refused the request.
    #[error("{} ({service:#04X}) refused with NRC {nrc:#04X} {name}{}", service_name(*service), nrc_hint(*nrc))]
    Negative {
        /// The request's service identifier.
        service: u8,
        /// The negative response code.
        nrc: u8,
        /// The standard's name of the code.
        name: &'static str,
    },
    /// Nothing (or not the rest of a message) arrived in time.
    #[error(
        "no {stage} for {} ({service:#04X}) on CAN ID 7E8 within {waited:?}; check that the board is powered and runs bootproof's bootloader in update mode (or an application that serves UDS), and that the bus runs CAN FD at the board's bit rates (this interface: {rates})",
        service_name(*service)
    )]
    Timeout {
        /// The request's service identifier.
        service: u8,
        /// What was awaited: flow control, response, consecutive frame…
        stage: &'static str,
        /// How long.
        waited: Duration,
        /// The interface's bit rates.
        rates: String,
    },
    /// Nobody acknowledged our frames.
    #[error(
        "no node acknowledged the {} request on CAN ID 7E0: nothing listens at {rates} (board unpowered, wrong bit rates, or the bus is not terminated)",
        service_name(*service)
    )]
    NoAck {
        /// The request's service identifier.
        service: u8,
        /// The interface's bit rates.
        rates: String,
    },
    /// The server's ISO-TP receiver has no room for the request.
    #[error(
        "the server refused the {len}-byte {} request with ISO-TP overflow (its buffer is smaller); send less per request, e.g. TransferData blocks no longer than RequestDownload's maxNumberOfBlockLength",
        service_name(*service)
    )]
    Overflow {
        /// The request's service identifier.
        service: u8,
        /// The request's length.
        len: usize,
    },
    /// The ISO-TP exchange broke down.
    #[error("ISO-TP error during {} ({service:#04X}): {what}", service_name(*service))]
    Transport {
        /// The request's service identifier.
        service: u8,
        /// What went wrong.
        what: String,
    },
    /// A response that does not answer the request.
    #[error(
        "unexpected response to {} ({service:#04X}): {got:02X?}, expected {expected}; is another tester on the bus, or did a late response to an earlier request arrive?",
        service_name(*service)
    )]
    UnexpectedResponse {
        /// The request's service identifier.
        service: u8,
        /// The response.
        got: Vec<u8>,
        /// What a valid response looks like.
        expected: String,
    },
    /// The request cannot be sent.
    #[error("invalid UDS request: {0}")]
    InvalidRequest(String),
    /// See [`CanError`].
    #[error(transparent)]
    Can(#[from] CanError),
}

/// The name of a service identifier.
pub fn service_name(service: u8) -> &'static str {
    match service {
        sid::DIAGNOSTIC_SESSION_CONTROL => "DiagnosticSessionControl",
        sid::ECU_RESET => "ECUReset",
        sid::READ_DATA_BY_IDENTIFIER => "ReadDataByIdentifier",
        sid::ROUTINE_CONTROL => "RoutineControl",
        sid::REQUEST_DOWNLOAD => "RequestDownload",
        sid::TRANSFER_DATA => "TransferData",
        sid::REQUEST_TRANSFER_EXIT => "RequestTransferExit",
        sid::TESTER_PRESENT => "TesterPresent",
        _ => "service",
    }
}

/// What to do about a negative response code, where it is obvious.
fn nrc_hint(code: u8) -> &'static str {
    match code {
        nrc::SERVICE_NOT_SUPPORTED => {
            "; the server does not implement this service (is an application answering instead of the bootloader?)"
        }
        nrc::SUB_FUNCTION_NOT_SUPPORTED => "; check the sub-function against what the bootloader serves",
        nrc::INCORRECT_LENGTH => "; check the request's length and format",
        nrc::BUSY_REPEAT_REQUEST => "; repeat the request after a short pause",
        nrc::CONDITIONS_NOT_CORRECT => {
            "; a precondition is not met (check the session and the slot states, DID 0xB000)"
        }
        nrc::REQUEST_SEQUENCE_ERROR => {
            "; follow the update sequence: session 02, erase (31 01 FF00), RequestDownload, TransferData, RequestTransferExit, check (31 01 FF01)"
        }
        nrc::REQUEST_OUT_OF_RANGE => "; check the address, size, identifier or routine",
        nrc::UPLOAD_DOWNLOAD_NOT_ACCEPTED => "; the download's address or size does not match the inactive slot",
        nrc::TRANSFER_DATA_SUSPENDED => {
            "; restart the download with RequestDownload at the resume address (DID 0xB002)"
        }
        nrc::GENERAL_PROGRAMMING_FAILURE => {
            "; erasing or programming the flash failed: erase the slot and download again"
        }
        nrc::WRONG_BLOCK_SEQUENCE_COUNTER => "; send the block the server expects next (DID 0xB002 has its counter)",
        nrc::SERVICE_NOT_SUPPORTED_IN_SESSION => "; switch to the programming session first (10 02)",
        _ => "",
    }
}

/// A UDS client on one CAN bus.
pub struct UdsClient<'a> {
    bus: &'a mut dyn CanBus,
    request_id: CanId,
    response_id: CanId,
    p2: Duration,
    p2_star: Duration,
    rates: Bitrates,
    sending: Duration,
}

impl<'a> UdsClient<'a> {
    /// A client on `bus` with bootproof's identifiers and timing. It does not change the bus's
    /// filters: frames on other identifiers are skipped.
    pub fn new(bus: &'a mut dyn CanBus) -> UdsClient<'a> {
        let rates = bus.bitrates();
        let response_id = CanId::Standard(RESPONSE_ID);
        // A full frame of zeros stuffs the most of the 64-byte frames bootproof sends.
        let frame = CanFrame::fd(response_id, &[0; 64], true).map(|f| wire_time(&f, rates)).unwrap_or_default();
        UdsClient {
            bus,
            request_id: CanId::Standard(REQUEST_ID),
            response_id,
            p2: CLIENT_P2 + frame,
            p2_star: Duration::from_millis(P2_STAR_MS as u64) + frame,
            rates,
            sending: Duration::ZERO,
        }
    }

    /// Time spent putting requests on the bus so far (their frames, and waiting for the
    /// server's flow control between them).
    pub fn sending(&self) -> Duration {
        self.sending
    }

    /// How long a response may take to start (client P2).
    pub fn p2(&self) -> Duration {
        self.p2
    }

    /// How long a response may take after each response-pending (client P2*).
    pub fn p2_star(&self) -> Duration {
        self.p2_star
    }

    /// Send `req` and return the positive response (its first byte is the SID + 0x40).
    pub async fn request(&mut self, req: &[u8]) -> Result<Vec<u8>, UdsError> {
        self.request_echoing(req, 0).await
    }

    /// [`UdsClient::request`] for a service whose positive response repeats the request's
    /// `echo` bytes after the SID (a DID, a routine, a block counter): a positive response
    /// that repeats other bytes is a late answer to an earlier request, and is skipped.
    async fn request_echoing(&mut self, req: &[u8], echo: usize) -> Result<Vec<u8>, UdsError> {
        let service = *req.first().ok_or_else(|| UdsError::InvalidRequest("an empty request has no service".into()))?;
        if req.len() > MAX_REQUEST {
            return Err(UdsError::InvalidRequest(format!(
                "{} bytes exceed the {MAX_REQUEST} bytes the client sends in one request",
                req.len()
            )));
        }
        let t0 = bootproof_rig::time::Instant::now();
        self.send(service, req).await?;
        self.sending += t0.elapsed();
        let resp = self.receive(service, req.get(1..1 + echo).unwrap_or_default()).await?;
        if resp.first() == Some(&sid::NEGATIVE_RESPONSE) {
            if resp.len() >= 3 && resp[1] == service {
                return Err(UdsError::Negative { service, nrc: resp[2], name: nrc::name(resp[2]) });
            }
            return Err(UdsError::UnexpectedResponse {
                service,
                got: resp,
                expected: format!("a response to {service:02X}"),
            });
        }
        if resp.first() != Some(&(service + 0x40)) {
            return Err(UdsError::UnexpectedResponse {
                service,
                got: resp,
                expected: format!("{:02X} … (positive response) or 7F {service:02X} NRC", service + 0x40),
            });
        }
        Ok(resp)
    }

    /// DiagnosticSessionControl (`10 SS`); returns the session parameter record (P2, P2*).
    pub async fn session(&mut self, session: u8) -> Result<Vec<u8>, UdsError> {
        let r = self.request(&[sid::DIAGNOSTIC_SESSION_CONTROL, session]).await?;
        echo(sid::DIAGNOSTIC_SESSION_CONTROL, &r, &[session])?;
        Ok(r[2..].to_vec())
    }

    /// ECUReset hardReset (`11 01`).
    pub async fn ecu_reset(&mut self) -> Result<(), UdsError> {
        let r = self.request(&[sid::ECU_RESET, 0x01]).await?;
        echo(sid::ECU_RESET, &r, &[0x01])
    }

    /// TesterPresent (`3E 00`).
    pub async fn tester_present(&mut self) -> Result<(), UdsError> {
        let r = self.request(&[sid::TESTER_PRESENT, 0x00]).await?;
        echo(sid::TESTER_PRESENT, &r, &[0x00])
    }

    /// ReadDataByIdentifier (`22 DDDD`): the data record.
    pub async fn read_did(&mut self, did: u16) -> Result<Vec<u8>, UdsError> {
        let d = did.to_be_bytes();
        let r = self.request_echoing(&[sid::READ_DATA_BY_IDENTIFIER, d[0], d[1]], 2).await?;
        echo(sid::READ_DATA_BY_IDENTIFIER, &r, &d)?;
        Ok(r[3..].to_vec())
    }

    /// RoutineControl startRoutine (`31 01 RRRR option…`): the status record.
    pub async fn routine_start(&mut self, rid: u16, option: &[u8]) -> Result<Vec<u8>, UdsError> {
        let r = rid.to_be_bytes();
        let mut req = vec![sid::ROUTINE_CONTROL, 0x01, r[0], r[1]];
        req.extend_from_slice(option);
        let resp = self.request_echoing(&req, 3).await?;
        echo(sid::ROUTINE_CONTROL, &resp, &[0x01, r[0], r[1]])?;
        Ok(resp[4..].to_vec())
    }

    /// RequestDownload (`34 00 44 AAAAAAAA SSSSSSSS`): the server's maxNumberOfBlockLength
    /// (the longest TransferData request, SID and counter included; saturated at
    /// [`MAX_REQUEST`]).
    pub async fn request_download(&mut self, addr: u32, size: u32) -> Result<u32, UdsError> {
        let mut req = vec![sid::REQUEST_DOWNLOAD, 0x00, ADDRESS_AND_LENGTH_44];
        req.extend_from_slice(&addr.to_be_bytes());
        req.extend_from_slice(&size.to_be_bytes());
        let r = self.request(&req).await?;
        let bad = |r: &[u8]| UdsError::UnexpectedResponse {
            service: sid::REQUEST_DOWNLOAD,
            got: r.to_vec(),
            expected: "74 L0 followed by an L-byte maxNumberOfBlockLength (L 1-8)".into(),
        };
        let n = (*r.get(1).ok_or_else(|| bad(&r))? >> 4) as usize;
        if n == 0 || n > 8 || r.len() != 2 + n {
            return Err(bad(&r));
        }
        let max = r[2..].iter().fold(0u64, |acc, b| (acc << 8) | *b as u64);
        Ok(max.min(MAX_REQUEST as u64) as u32)
    }

    /// TransferData (`36 NN data…`) with block sequence counter `counter`.
    pub async fn transfer_data(&mut self, counter: u8, data: &[u8]) -> Result<(), UdsError> {
        let mut req = Vec::with_capacity(2 + data.len());
        req.extend_from_slice(&[sid::TRANSFER_DATA, counter]);
        req.extend_from_slice(data);
        let r = self.request_echoing(&req, 1).await?;
        echo(sid::TRANSFER_DATA, &r, &[counter])
    }

    /// RequestTransferExit (`37`).
    pub async fn transfer_exit(&mut self) -> Result<(), UdsError> {
        self.request(&[sid::REQUEST_TRANSFER_EXIT]).await.map(|_| ())
    }

    /// Send one message with ISO-TP, under the server's flow control.
    async fn send(&mut self, service: u8, req: &[u8]) -> Result<(), UdsError> {
        let mut tx = Sender::new(req).map_err(|e| UdsError::InvalidRequest(format!("{e:?}")))?;
        // A consecutive frame went out in this block: the next waits STmin.
        let mut gap = false;
        loop {
            match tx.next() {
                Next::Send(f) => {
                    if gap && !tx.st_min().is_zero() {
                        time::sleep(tx.st_min()).await;
                    }
                    self.bus.send(&CanFrame::fd(self.request_id, f.bytes(), true)?).await?;
                    gap = f.bytes()[0] >> 4 == 2;
                }
                Next::AwaitFlow => {
                    self.await_flow(service, req.len(), &mut tx).await?;
                    gap = false;
                }
                Next::Done => return Ok(()),
            }
        }
    }

    /// Wait for a flow control frame that lets `tx` continue (N_Bs, restarted by each WAIT).
    async fn await_flow(&mut self, service: u8, len: usize, tx: &mut Sender<'_>) -> Result<(), UdsError> {
        let mut deadline = Instant::now() + N_BS;
        loop {
            let f = self.next_frame(service, "flow control", deadline, N_BS).await?;
            match isotp::decode(f.data()) {
                Ok(Pdu::Flow { status, .. }) => {
                    tx.on_flow(f.data()).map_err(|e| match e {
                        SendError::Overflow => UdsError::Overflow { service, len },
                        e => UdsError::Transport { service, what: format!("flow control {:02X?}: {e:?}", f.data()) },
                    })?;
                    if status != FlowStatus::Wait {
                        return Ok(());
                    }
                    deadline = Instant::now() + N_BS;
                }
                Err(e @ PduError::BadFlowStatus(_)) => {
                    return Err(UdsError::Transport { service, what: format!("invalid flow control: {e}") });
                }
                _ => tracing::debug!("UDS: ignoring {f} while waiting for flow control"),
            }
        }
    }

    /// Receive the response to `service` (a positive one repeating `echo`), waiting out
    /// response-pending.
    async fn receive(&mut self, service: u8, echo: &[u8]) -> Result<Vec<u8>, UdsError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut rx = Receiver::new(&mut buf, 0, 0);
        let mut deadline = Instant::now() + self.p2;
        let mut stage = ("response", self.p2);
        loop {
            let f = self.next_frame(service, stage.0, deadline, stage.1).await?;
            match rx.on_frame(f.data()) {
                Received::Message(n) => {
                    let msg = rx.message(n);
                    if msg == [sid::NEGATIVE_RESPONSE, service, nrc::RESPONSE_PENDING] {
                        tracing::debug!("UDS: {} response pending", service_name(service));
                        deadline = Instant::now() + self.p2_star;
                        stage = ("response after response-pending (NRC 0x78)", self.p2_star);
                        continue;
                    }
                    let ours = msg.first() == Some(&(service + 0x40))
                        || (msg.first() == Some(&sid::NEGATIVE_RESPONSE) && msg.get(1) == Some(&service));
                    let late = msg.first() == Some(&(service + 0x40))
                        && msg.len() > echo.len()
                        && msg.get(1..1 + echo.len()) != Some(echo);
                    if !ours || late {
                        // Another tester on the bus asked something, or this is the late
                        // answer to an earlier request of ours: not the answer to this one.
                        tracing::debug!(
                            "UDS: ignoring a response to another request: {:02X?}",
                            &msg[..msg.len().min(8)]
                        );
                        continue;
                    }
                    return Ok(msg.to_vec());
                }
                Received::Flow(fc) => {
                    self.bus.send(&CanFrame::fd(self.request_id, fc.bytes(), true)?).await?;
                    deadline = Instant::now() + N_CR;
                    stage = ("consecutive frame", N_CR);
                }
                Received::Partial => deadline = Instant::now() + N_CR,
                Received::Ignored => tracing::debug!("UDS: ignoring {f}"),
                Received::Aborted(RxError::Overflow(len)) => {
                    let fc = Receiver::overflow_frame();
                    self.bus.send(&CanFrame::fd(self.request_id, fc.bytes(), true)?).await?;
                    return Err(UdsError::Transport {
                        service,
                        what: format!(
                            "the response announces {len} bytes, more than the {MAX_MESSAGE} the client takes"
                        ),
                    });
                }
                Received::Aborted(e) => {
                    return Err(UdsError::Transport { service, what: format!("response reception aborted: {e:?}") });
                }
            }
        }
    }

    /// The next frame on the response identifier before `deadline`.
    async fn next_frame(
        &mut self,
        service: u8,
        stage: &'static str,
        deadline: Instant,
        waited: Duration,
    ) -> Result<CanFrame, UdsError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = || UdsError::Timeout { service, stage, waited, rates: self.rates.to_string() };
            if left.is_zero() {
                return Err(timeout());
            }
            match self.bus.recv(left).await {
                Ok(CanEvent::Frame(f)) if f.id() == self.response_id && !f.is_remote() => return Ok(f),
                Ok(CanEvent::Frame(f)) => tracing::trace!("UDS: ignoring {f}"),
                Ok(CanEvent::Error(BusError::NoAck)) => {
                    return Err(UdsError::NoAck { service, rates: self.rates.to_string() });
                }
                Ok(CanEvent::Error(e)) => tracing::debug!("UDS: bus error while waiting for {stage}: {e}"),
                Err(CanError::Timeout(_)) => return Err(timeout()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Check that positive response `r` to `service` echoes `echo` after its SID.
fn echo(service: u8, r: &[u8], echo: &[u8]) -> Result<(), UdsError> {
    if r.get(1..1 + echo.len()) == Some(echo) {
        return Ok(());
    }
    let expected: Vec<String> = echo.iter().map(|b| format!("{b:02X}")).collect();
    Err(UdsError::UnexpectedResponse {
        service,
        got: r.to_vec(),
        expected: format!("{:02X} {} …", service + 0x40, expected.join(" ")),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use bootproof_rig::can::CanFilter;
    use bootproof_uds::isotp::Frame;
    use bootproof_uds::uds::{DID_SLOTS, RID_ERASE};
    use tokio::sync::mpsc;

    use super::*;

    /// What the scripted server does after a request.
    enum Step {
        /// Send this message with ISO-TP on 0x7E8.
        Respond(Vec<u8>),
        /// Wait.
        Delay(Duration),
        /// Put this frame on the bus as it is.
        Raw(CanFrame),
    }

    /// The server's receive-side flow control.
    #[derive(Clone, Copy)]
    struct ServerFlow {
        block_size: u8,
        st_min: u8,
        /// Before each flow control: this many WAITs, `delay` apart.
        waits: usize,
        delay: Duration,
    }

    const PLAIN: ServerFlow = ServerFlow { block_size: 0, st_min: 0, waits: 0, delay: Duration::ZERO };

    type Log = Arc<Mutex<Vec<(Instant, CanFrame)>>>;

    /// An in-memory CAN bus whose other end is a scripted server task.
    struct FakeBus {
        to_server: mpsc::UnboundedSender<CanFrame>,
        from_server: mpsc::UnboundedReceiver<CanFrame>,
        /// Every frame the client sent, with its time.
        log: Log,
    }

    #[async_trait]
    impl CanBus for FakeBus {
        fn bitrates(&self) -> Bitrates {
            Bitrates::fd(250_000, 1_000_000)
        }
        async fn send(&mut self, frame: &CanFrame) -> Result<(), CanError> {
            assert!(frame.is_fd() && frame.is_brs(), "the client sends CAN FD with BRS: {frame}");
            self.log.lock().unwrap().push((Instant::now(), *frame));
            // A finished server no longer listens; the frame is lost like on a real bus.
            let _ = self.to_server.send(*frame);
            Ok(())
        }
        async fn recv(&mut self, timeout: Duration) -> Result<CanEvent, CanError> {
            let next = async {
                match self.from_server.recv().await {
                    Some(f) => f,
                    None => std::future::pending().await,
                }
            };
            match time::timeout(timeout, next).await {
                Ok(f) => Ok(CanEvent::Frame(f)),
                Err(_) => Err(CanError::Timeout(timeout)),
            }
        }
        fn set_filters(&mut self, _: &[CanFilter]) -> Result<(), CanError> {
            Ok(())
        }
    }

    fn fd(id: u16, data: &[u8]) -> CanFrame {
        CanFrame::fd(CanId::Standard(id), data, true).unwrap()
    }

    /// A bus with a server that answers each request with `script(request)`.
    fn server(flow: ServerFlow, script: impl FnMut(&[u8]) -> Vec<Step> + Send + 'static) -> (FakeBus, Log) {
        let (to_server, from_client) = mpsc::unbounded_channel();
        let (to_client, from_server) = mpsc::unbounded_channel();
        let log = Log::default();
        tokio::spawn(serve(from_client, to_client, flow, script));
        (FakeBus { to_server, from_server, log: log.clone() }, log)
    }

    async fn serve(
        mut from_client: mpsc::UnboundedReceiver<CanFrame>,
        to_client: mpsc::UnboundedSender<CanFrame>,
        flow: ServerFlow,
        mut script: impl FnMut(&[u8]) -> Vec<Step>,
    ) {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let send = |data: &[u8]| to_client.send(fd(RESPONSE_ID, data)).unwrap();
        loop {
            let req = {
                let mut rx = Receiver::new(&mut buf, flow.block_size, flow.st_min);
                loop {
                    let Some(f) = from_client.recv().await else { return };
                    if f.id() != CanId::Standard(REQUEST_ID) {
                        continue;
                    }
                    match rx.on_frame(f.data()) {
                        Received::Message(n) => break rx.message(n).to_vec(),
                        Received::Flow(fc) => {
                            for _ in 0..flow.waits {
                                time::sleep(flow.delay).await;
                                send(Frame::flow(FlowStatus::Wait, 0, 0).bytes());
                            }
                            time::sleep(flow.delay).await;
                            send(fc.bytes());
                        }
                        Received::Partial | Received::Ignored => {}
                        Received::Aborted(e) => panic!("server: request aborted: {e:?}"),
                    }
                }
            };
            for step in script(&req) {
                match step {
                    Step::Delay(d) => time::sleep(d).await,
                    Step::Raw(f) => to_client.send(f).unwrap(),
                    Step::Respond(msg) => {
                        let mut tx = Sender::new(&msg).unwrap();
                        loop {
                            match tx.next() {
                                Next::Send(f) => send(f.bytes()),
                                Next::AwaitFlow => {
                                    let f = loop {
                                        let f = from_client.recv().await.expect("client gone during a response");
                                        if f.id() == CanId::Standard(REQUEST_ID) {
                                            break f;
                                        }
                                    };
                                    tx.on_flow(f.data()).expect("the client's flow control");
                                }
                                Next::Done => break,
                            }
                        }
                    }
                }
            }
        }
    }

    fn frames(log: &Log) -> Vec<Vec<u8>> {
        log.lock().unwrap().iter().map(|(_, f)| f.data().to_vec()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn single_frame_request_and_response() {
        let (mut bus, log) = server(PLAIN, |req| {
            assert_eq!(req, [0x10, 0x02]);
            vec![Step::Respond(vec![0x50, 0x02, 0x00, 0x32, 0x01, 0xF4])]
        });
        let mut uds = UdsClient::new(&mut bus);
        assert_eq!(uds.session(0x02).await.unwrap(), [0x00, 0x32, 0x01, 0xF4]);
        // One classic-format single frame, padded to 8 with 0xCC, on 0x7E0.
        assert_eq!(frames(&log), [vec![0x02, 0x10, 0x02, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]]);
        assert_eq!(log.lock().unwrap()[0].1.id(), CanId::Standard(0x7E0));
    }

    #[tokio::test(start_paused = true)]
    async fn multi_frame_request_under_block_size_2_stmin_and_wait() {
        let flow = ServerFlow { block_size: 2, st_min: 5, waits: 1, delay: Duration::from_millis(20) };
        let block: Vec<u8> = (0..600u32).map(|i| (i * 13) as u8).collect();
        let expected = block.clone();
        let (mut bus, log) = server(flow, move |req| {
            assert_eq!(&req[..2], &[0x36, 0x01]);
            assert_eq!(&req[2..], &expected[..], "the server reassembled the request");
            vec![Step::Respond(vec![0x76, 0x01])]
        });
        let mut uds = UdsClient::new(&mut bus);
        uds.transfer_data(1, &block).await.unwrap();
        let log = log.lock().unwrap();
        // 602 bytes: FF (62) + 9 CFs (63 × 8 + 36).
        assert_eq!(log.len(), 10);
        assert_eq!(&log[0].1.data()[..2], &[0x12, 0x5A]);
        for (i, (_, f)) in log[1..].iter().enumerate() {
            assert_eq!(f.data()[0], 0x20 | ((i + 1) & 0xF) as u8);
        }
        // Each block of 2 waits for the flow control (one WAIT and one CTS, 20 ms each);
        // CFs inside a block are STmin (5 ms) apart.
        let t: Vec<Instant> = log.iter().map(|(t, _)| *t).collect();
        for block_start in [1, 3, 5, 7, 9] {
            assert!(t[block_start] - t[block_start - 1] >= Duration::from_millis(40), "CF {block_start} waited for FC");
        }
        for second in [2, 4, 6, 8] {
            let gap = t[second] - t[second - 1];
            assert!(
                gap >= Duration::from_millis(5) && gap < Duration::from_millis(6),
                "STmin before CF {second}: {gap:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn multi_frame_response_gets_flow_control() {
        let record: Vec<u8> = (0..200u32).map(|i| i as u8 ^ 0x5A).collect();
        let mut response = vec![0x62, 0xB0, 0x00];
        response.extend_from_slice(&record);
        let (mut bus, log) = server(PLAIN, move |req| {
            assert_eq!(req, [0x22, 0xB0, 0x00]);
            vec![Step::Respond(response.clone())]
        });
        let mut uds = UdsClient::new(&mut bus);
        assert_eq!(uds.read_did(DID_SLOTS).await.unwrap(), record);
        // The request, then our flow control: continue, BS 0, STmin 0.
        assert_eq!(frames(&log)[1], [0x30, 0x00, 0x00, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC]);
        assert_eq!(frames(&log).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn response_pending_extends_the_wait_to_p2_star() {
        let (mut bus, _log) = server(PLAIN, |req| {
            assert_eq!(req, [0x31, 0x01, 0xFF, 0x00]);
            vec![
                Step::Respond(vec![0x7F, 0x31, 0x78]),
                Step::Delay(Duration::from_millis(4000)),
                Step::Respond(vec![0x7F, 0x31, 0x78]),
                Step::Delay(Duration::from_millis(4500)),
                Step::Respond(vec![0x71, 0x01, 0xFF, 0x00, 0x00]),
            ]
        });
        let mut uds = UdsClient::new(&mut bus);
        let t0 = Instant::now();
        assert_eq!(uds.routine_start(RID_ERASE, &[]).await.unwrap(), [0x00]);
        assert!(t0.elapsed() >= Duration::from_millis(8500));
    }

    #[tokio::test(start_paused = true)]
    async fn response_pending_then_silence_times_out_after_p2_star() {
        let (mut bus, _log) = server(PLAIN, |_| vec![Step::Respond(vec![0x7F, 0x31, 0x78])]);
        let mut uds = UdsClient::new(&mut bus);
        let p2_star = uds.p2_star();
        let t0 = Instant::now();
        let e = uds.routine_start(RID_ERASE, &[]).await.unwrap_err();
        assert!(matches!(e, UdsError::Timeout { stage, .. } if stage.contains("response-pending")), "{e}");
        assert!(t0.elapsed() >= p2_star && t0.elapsed() < p2_star + Duration::from_millis(2), "{:?}", t0.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn negative_response_names_service_code_and_fix() {
        let (mut bus, _log) = server(PLAIN, |_| vec![Step::Respond(vec![0x7F, 0x34, 0x70])]);
        let mut uds = UdsClient::new(&mut bus);
        let e = uds.request_download(0x0808_0000, 0x1_0000).await.unwrap_err();
        assert!(matches!(e, UdsError::Negative { service: 0x34, nrc: 0x70, name: "uploadDownloadNotAccepted" }));
        let text = e.to_string();
        for part in ["RequestDownload", "0x34", "0x70", "uploadDownloadNotAccepted", "inactive slot"] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
        let e = UdsError::Negative { service: 0x36, nrc: 0x7F, name: nrc::name(0x7F) };
        assert!(e.to_string().contains("programming session first (10 02)"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_answer_times_out_after_client_p2() {
        let (mut bus, _log) = server(PLAIN, |_| vec![]);
        let mut uds = UdsClient::new(&mut bus);
        let p2 = uds.p2();
        assert!(p2 > CLIENT_P2 && p2 < CLIENT_P2 + Duration::from_millis(2), "{p2:?}");
        let t0 = Instant::now();
        let e = uds.tester_present().await.unwrap_err();
        assert!(t0.elapsed() >= p2 && t0.elapsed() < p2 + Duration::from_millis(2), "{:?}", t0.elapsed());
        assert!(matches!(e, UdsError::Timeout { service: 0x3E, stage: "response", .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("TesterPresent") && text.contains("bootloader") && text.contains("250 kbit/s"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn frames_on_other_ids_are_ignored() {
        let (mut bus, _log) = server(PLAIN, |_| {
            vec![
                // An application's traffic, one frame even shaped like our answer.
                Step::Raw(fd(0x123, &[0x02, 0x51, 0x01, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC])),
                Step::Raw(fd(0x7E9, &[0x03, 0x7F, 0x11, 0x22, 0xCC, 0xCC, 0xCC, 0xCC])),
                Step::Raw(CanFrame::classic(CanId::Extended(0x7E8), &[0x02, 0x51, 0x02]).unwrap()),
                Step::Delay(Duration::from_millis(10)),
                Step::Respond(vec![0x51, 0x01]),
            ]
        });
        let mut uds = UdsClient::new(&mut bus);
        uds.ecu_reset().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn answers_to_other_requests_are_skipped_and_the_request_times_out() {
        // Another tester's answer (another SID), or a late answer of ours (the right SID,
        // another DID or routine): not the answer to this request.
        let (mut bus, _log) = server(PLAIN, |req| match req[0] {
            0x22 => vec![Step::Respond(vec![0x62, 0xF1, 0x86, 0x02])],
            0x31 => vec![Step::Respond(vec![0x71, 0x01, 0xFF, 0x01])],
            _ => vec![Step::Respond(vec![0x50, 0x01])],
        });
        let mut uds = UdsClient::new(&mut bus);
        let e = uds.read_did(0xF180).await.unwrap_err();
        assert!(matches!(e, UdsError::Timeout { service: 0x22, .. }), "{e}");
        assert!(matches!(uds.routine_start(RID_ERASE, &[]).await, Err(UdsError::Timeout { service: 0x31, .. })));
        assert!(matches!(uds.tester_present().await, Err(UdsError::Timeout { service: 0x3E, .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_positive_answer_without_its_echo_is_an_error() {
        // The right SID and nothing after it: not a late answer to something else, a bad one.
        let (mut bus, _log) = server(PLAIN, |_| vec![Step::Respond(vec![0x62])]);
        let mut uds = UdsClient::new(&mut bus);
        let e = uds.read_did(0xF180).await.unwrap_err();
        assert!(matches!(e, UdsError::UnexpectedResponse { service: 0x22, .. }), "{e}");
        assert!(e.to_string().contains("62 F1 80"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn request_download_parses_max_block_length() {
        let (mut bus, _log) = server(PLAIN, |req| {
            assert_eq!(req, [0x34, 0x00, 0x44, 0x08, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]);
            vec![Step::Respond(vec![0x74, 0x20, 0x10, 0x02])]
        });
        let mut uds = UdsClient::new(&mut bus);
        assert_eq!(uds.request_download(0x0808_0000, 0x1_0000).await.unwrap(), 0x1002);
    }

    #[tokio::test(start_paused = true)]
    async fn overflow_flow_control_ends_the_request() {
        // A server that answers the first frame with overflow.
        let (to_server, _from_client) = mpsc::unbounded_channel();
        let (to_client, from_server) = mpsc::unbounded_channel();
        to_client.send(fd(RESPONSE_ID, Receiver::overflow_frame().bytes())).unwrap();
        let mut bus = FakeBus { to_server, from_server, log: Log::default() };
        let mut uds = UdsClient::new(&mut bus);
        let e = uds.transfer_data(1, &[0; 1000]).await.unwrap_err();
        assert!(matches!(e, UdsError::Overflow { service: 0x36, len: 1002 }), "{e}");
        assert!(e.to_string().contains("maxNumberOfBlockLength"), "{e}");
        assert_eq!(bus.log.lock().unwrap().len(), 1, "nothing after the first frame");
    }
}
