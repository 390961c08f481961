//! The server side of Telnet (RFC 854) with the COM-PORT-OPTION (RFC 2217): the subset serial
//! tools' clients use (pyserial's `rfc2217://`, ser2net's and Moxa's clients), without I/O.
//!
//! [`ComPortServer`] takes the bytes a client sends and returns what they mean, in order
//! ([`Event`]: data for the UART, a new baud rate, data size, parity or stop size, DTR, RTS,
//! BREAK, a purge); the replies the protocol requires collect in an output buffer the caller
//! sends ([`ComPortServer::take_output`]). Data for the client goes through [`escape`].
//!
//! Options: the server offers and accepts BINARY (RFC 856), SUPPRESS-GO-AHEAD (RFC 858) and
//! COM-PORT-OPTION both ways, refuses every other (ECHO included: it never echoes), and answers
//! only requests that change an option's state, so negotiations cannot loop (RFC 854's rule).
//! Every COM-PORT-OPTION set command is answered with the value in effect afterwards, its code
//! plus 100 (RFC 2217 p. 5): a value the twin cannot take (a data size of 9, parity 6) is
//! answered with the old one, which a client reports as refused. Value 0 asks for the current
//! value without changing it. The data path is transparent both ways (IAC doubled), whatever
//! BINARY's state: the twin's UART carries bytes, not text lines.

/// Interpret As Command.
pub const IAC: u8 = 255;
/// Refuse / stop: the other side must not use the option.
pub const DONT: u8 = 254;
/// Ask the other side to use the option.
pub const DO: u8 = 253;
/// Refuse / stop using the option on this side.
pub const WONT: u8 = 252;
/// Offer to use the option on this side.
pub const WILL: u8 = 251;
/// Subnegotiation begin.
pub const SB: u8 = 250;
/// Subnegotiation end.
pub const SE: u8 = 240;
/// Option: 8-bit data path (RFC 856).
pub const BINARY: u8 = 0;
/// Option: echo (RFC 857); refused.
pub const ECHO: u8 = 1;
/// Option: suppress go-ahead (RFC 858).
pub const SGA: u8 = 3;
/// Option: COM-PORT-OPTION (RFC 2217).
pub const COM_PORT_OPTION: u8 = 44;

/// COM-PORT-OPTION commands, client to server; the server answers with the code + 100.
pub mod cmd {
    /// Signature: the client's text, or empty to ask for the server's.
    pub const SIGNATURE: u8 = 0;
    /// Baud rate, 4 bytes in network order (0: ask).
    pub const SET_BAUDRATE: u8 = 1;
    /// Data size in bits, 5 to 8 (0: ask).
    pub const SET_DATASIZE: u8 = 2;
    /// Parity: 1 none, 2 odd, 3 even, 4 mark, 5 space (0: ask).
    pub const SET_PARITY: u8 = 3;
    /// Stop size: 1 one, 2 two, 3 one and a half (0: ask).
    pub const SET_STOPSIZE: u8 = 4;
    /// Flow control, BREAK, DTR, RTS (see [`super::control`]).
    pub const SET_CONTROL: u8 = 5;
    /// Ask for the line state.
    pub const NOTIFY_LINESTATE: u8 = 6;
    /// Ask for the modem state.
    pub const NOTIFY_MODEMSTATE: u8 = 7;
    /// The client cannot take more data: stop sending.
    pub const FLOWCONTROL_SUSPEND: u8 = 8;
    /// The client can take data again.
    pub const FLOWCONTROL_RESUME: u8 = 9;
    /// Which line-state changes to notify.
    pub const SET_LINESTATE_MASK: u8 = 10;
    /// Which modem-state changes to notify.
    pub const SET_MODEMSTATE_MASK: u8 = 11;
    /// Purge: 1 the server's receive buffer (from the device), 2 its transmit buffer, 3 both.
    pub const PURGE_DATA: u8 = 12;
    /// Server codes are the client's + 100.
    pub const SERVER_OFFSET: u8 = 100;
}

/// SET-CONTROL values (RFC 2217 p. 7).
pub mod control {
    /// Ask for the outbound flow control setting.
    pub const REQ_FLOW: u8 = 0;
    /// No flow control (outbound or both).
    pub const FLOW_NONE: u8 = 1;
    /// XON/XOFF (outbound or both).
    pub const FLOW_XONXOFF: u8 = 2;
    /// Hardware (outbound or both).
    pub const FLOW_HARDWARE: u8 = 3;
    /// Ask for the BREAK state.
    pub const REQ_BREAK: u8 = 4;
    /// BREAK on.
    pub const BREAK_ON: u8 = 5;
    /// BREAK off.
    pub const BREAK_OFF: u8 = 6;
    /// Ask for DTR.
    pub const REQ_DTR: u8 = 7;
    /// DTR on (asserted).
    pub const DTR_ON: u8 = 8;
    /// DTR off.
    pub const DTR_OFF: u8 = 9;
    /// Ask for RTS.
    pub const REQ_RTS: u8 = 10;
    /// RTS on (asserted).
    pub const RTS_ON: u8 = 11;
    /// RTS off.
    pub const RTS_OFF: u8 = 12;
    /// Ask for the inbound flow control setting.
    pub const REQ_FLOW_IN: u8 = 13;
    /// Inbound: none (14), XON/XOFF (15), hardware (16), DCD (17), DTR (18), DSR (19).
    pub const FLOW_IN_NONE: u8 = 14;
    /// The last SET-CONTROL value RFC 2217 defines.
    pub const LAST: u8 = 19;
}

/// Parity as RFC 2217 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireParity {
    /// 1
    None,
    /// 2
    Odd,
    /// 3
    Even,
    /// 4: the parity bit always 1.
    Mark,
    /// 5: the parity bit always 0.
    Space,
}

impl WireParity {
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::None,
            2 => Self::Odd,
            3 => Self::Even,
            4 => Self::Mark,
            5 => Self::Space,
            _ => return None,
        })
    }
    fn code(self) -> u8 {
        match self {
            Self::None => 1,
            Self::Odd => 2,
            Self::Even => 3,
            Self::Mark => 4,
            Self::Space => 5,
        }
    }
}

/// Stop bits as RFC 2217 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSize {
    /// 1
    One,
    /// 2
    Two,
    /// 3
    OneAndHalf,
}

impl StopSize {
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::One,
            2 => Self::Two,
            3 => Self::OneAndHalf,
            _ => return None,
        })
    }
    fn code(self) -> u8 {
        match self {
            Self::One => 1,
            Self::Two => 2,
            Self::OneAndHalf => 3,
        }
    }
}

/// The serial line as the client set it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings {
    /// Baud rate.
    pub baud: u32,
    /// Data bits, 5 to 8.
    pub data_size: u8,
    /// Parity.
    pub parity: WireParity,
    /// Stop bits.
    pub stop_size: StopSize,
    /// DTR asserted.
    pub dtr: bool,
    /// RTS asserted.
    pub rts: bool,
    /// BREAK on.
    pub brk: bool,
}

impl Default for LineSettings {
    /// 115200 8N1, DTR and RTS deasserted (a closed port's lines).
    fn default() -> Self {
        LineSettings {
            baud: 115_200,
            data_size: 8,
            parity: WireParity::None,
            stop_size: StopSize::One,
            dtr: false,
            rts: false,
            brk: false,
        }
    }
}

/// What a client's bytes mean, in the order it sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes for the UART (IAC IAC already undoubled).
    Data(Vec<u8>),
    /// New baud rate.
    Baud(u32),
    /// New data size (5 to 8).
    DataSize(u8),
    /// New parity.
    Parity(WireParity),
    /// New stop size.
    StopSize(StopSize),
    /// DTR asserted (`true`) or deasserted.
    Dtr(bool),
    /// RTS asserted (`true`) or deasserted.
    Rts(bool),
    /// BREAK on or off.
    Break(bool),
    /// Discard what the device sent and the client has not read yet.
    PurgeFromDevice,
    /// Discard what the client sent and the device has not received yet.
    PurgeToDevice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parse {
    Data,
    Iac,
    Option(u8),
    Sub,
    SubIac,
}

/// One option's state on each side, with the request in flight (RFC 1143's idea, reduced to
/// what a server that never changes its mind needs).
#[derive(Debug, Clone, Copy, Default)]
struct Opt {
    us: bool,
    us_asked: bool,
    him: bool,
    him_asked: bool,
}

const SUPPORTED: [u8; 3] = [BINARY, SGA, COM_PORT_OPTION];
/// A subnegotiation longer than this is not RFC 2217 (the signature is the longest): dropped.
const MAX_SUB: usize = 256;

/// The Telnet / RFC 2217 state of one client connection.
pub struct ComPortServer {
    parse: Parse,
    sub: Vec<u8>,
    data: Vec<u8>,
    opts: [Opt; 3],
    line: LineSettings,
    flow_out: u8,
    flow_in: u8,
    suspended: bool,
    linestate_mask: u8,
    modemstate_mask: u8,
    signature: String,
    client_signature: Option<String>,
    out: Vec<u8>,
    events: Vec<Event>,
}

/// Double every IAC in data for the client.
pub fn escape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 4);
    for &b in data {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
    out
}

impl ComPortServer {
    /// A connection whose line starts as `line`; `signature` answers a SIGNATURE request. The
    /// server's opening requests (WILL/DO BINARY, WILL/DO SGA, DO COM-PORT-OPTION) are in the
    /// output already.
    pub fn new(line: LineSettings, signature: impl Into<String>) -> Self {
        let mut s = ComPortServer {
            parse: Parse::Data,
            sub: Vec::new(),
            data: Vec::new(),
            opts: [Opt::default(); 3],
            line,
            flow_out: control::FLOW_NONE,
            flow_in: control::FLOW_IN_NONE,
            suspended: false,
            linestate_mask: 0,
            modemstate_mask: 0,
            signature: signature.into(),
            client_signature: None,
            out: Vec::new(),
            events: Vec::new(),
        };
        for opt in [BINARY, SGA] {
            s.ask_us(opt);
            s.ask_him(opt);
        }
        s.ask_him(COM_PORT_OPTION);
        s
    }

    /// The line as the client has set it.
    pub fn line(&self) -> LineSettings {
        self.line
    }

    /// Whether the client has asked the server to stop sending (FLOWCONTROL-SUSPEND).
    pub fn suspended(&self) -> bool {
        self.suspended
    }

    /// Whether the client agreed to COM-PORT-OPTION (it sent WILL, or answered our DO).
    pub fn com_port_active(&self) -> bool {
        self.opts[2].him || self.opts[2].us
    }

    /// The signature the client sent, if any.
    pub fn client_signature(&self) -> Option<&str> {
        self.client_signature.as_deref()
    }

    /// Bytes to send to the client (negotiation answers), clearing the buffer.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Take bytes from the client; what they mean, in order.
    pub fn feed(&mut self, input: &[u8]) -> Vec<Event> {
        for &b in input {
            self.parse = match (self.parse, b) {
                (Parse::Data, IAC) => Parse::Iac,
                (Parse::Data, b) => {
                    self.data.push(b);
                    Parse::Data
                }
                (Parse::Iac, IAC) => {
                    self.data.push(IAC);
                    Parse::Data
                }
                (Parse::Iac, WILL | WONT | DO | DONT) => Parse::Option(b),
                (Parse::Iac, SB) => {
                    self.sub.clear();
                    Parse::Sub
                }
                // NOP, DM, BRK, IP, AO, AYT, EC, EL, GA, a stray SE: nothing for a serial port.
                (Parse::Iac, _) => Parse::Data,
                (Parse::Option(verb), opt) => {
                    self.negotiate(verb, opt);
                    Parse::Data
                }
                (Parse::Sub, IAC) => Parse::SubIac,
                (Parse::Sub, b) => {
                    if self.sub.len() < MAX_SUB {
                        self.sub.push(b);
                    }
                    Parse::Sub
                }
                (Parse::SubIac, IAC) => {
                    if self.sub.len() < MAX_SUB {
                        self.sub.push(IAC);
                    }
                    Parse::Sub
                }
                (Parse::SubIac, SE) => {
                    let sub = std::mem::take(&mut self.sub);
                    self.subnegotiation(&sub);
                    Parse::Data
                }
                // IAC followed by anything else inside SB: RFC 854 leaves it undefined; end
                // the subnegotiation and read the byte as a command.
                (Parse::SubIac, WILL | WONT | DO | DONT) => Parse::Option(b),
                (Parse::SubIac, _) => Parse::Data,
            };
        }
        self.flush_data();
        std::mem::take(&mut self.events)
    }

    fn flush_data(&mut self) {
        if !self.data.is_empty() {
            self.events.push(Event::Data(std::mem::take(&mut self.data)));
        }
    }

    fn push(&mut self, e: Event) {
        self.flush_data();
        self.events.push(e);
    }

    fn slot(opt: u8) -> Option<usize> {
        SUPPORTED.iter().position(|&o| o == opt)
    }

    fn send(&mut self, verb: u8, opt: u8) {
        self.out.extend_from_slice(&[IAC, verb, opt]);
    }

    fn ask_us(&mut self, opt: u8) {
        if let Some(i) = Self::slot(opt) {
            self.opts[i].us_asked = true;
            self.send(WILL, opt);
        }
    }

    fn ask_him(&mut self, opt: u8) {
        if let Some(i) = Self::slot(opt) {
            self.opts[i].him_asked = true;
            self.send(DO, opt);
        }
    }

    fn negotiate(&mut self, verb: u8, opt: u8) {
        let Some(i) = Self::slot(opt) else {
            // Refuse what we do not support; a refusal of it needs no answer.
            match verb {
                WILL => self.send(DONT, opt),
                DO => self.send(WONT, opt),
                _ => {}
            }
            return;
        };
        let o = &mut self.opts[i];
        let reply = match verb {
            WILL => {
                let answer = (!o.him && !o.him_asked).then_some(DO);
                o.him = true;
                o.him_asked = false;
                answer
            }
            WONT => {
                let answer = (o.him && !o.him_asked).then_some(DONT);
                o.him = false;
                o.him_asked = false;
                answer
            }
            DO => {
                let answer = (!o.us && !o.us_asked).then_some(WILL);
                o.us = true;
                o.us_asked = false;
                answer
            }
            _ => {
                let answer = (o.us && !o.us_asked).then_some(WONT);
                o.us = false;
                o.us_asked = false;
                answer
            }
        };
        if let Some(r) = reply {
            self.send(r, opt);
        }
    }

    fn reply(&mut self, code: u8, value: &[u8]) {
        self.out.extend_from_slice(&[IAC, SB, COM_PORT_OPTION, code + cmd::SERVER_OFFSET]);
        self.out.extend(escape(value));
        self.out.extend_from_slice(&[IAC, SE]);
    }

    fn subnegotiation(&mut self, sub: &[u8]) {
        let [COM_PORT_OPTION, code, value @ ..] = sub else {
            return; // another option's subnegotiation: not ours to answer
        };
        let first = value.first().copied();
        match *code {
            cmd::SIGNATURE => {
                if value.is_empty() {
                    let sig = self.signature.clone().into_bytes();
                    self.reply(cmd::SIGNATURE, &sig);
                } else {
                    self.client_signature = Some(String::from_utf8_lossy(value).into_owned());
                }
            }
            cmd::SET_BAUDRATE => {
                if let Ok(v) = <[u8; 4]>::try_from(value) {
                    let baud = u32::from_be_bytes(v);
                    if baud != 0 && baud != self.line.baud {
                        self.line.baud = baud;
                        self.push(Event::Baud(baud));
                    }
                }
                let v = self.line.baud.to_be_bytes();
                self.reply(cmd::SET_BAUDRATE, &v);
            }
            cmd::SET_DATASIZE => {
                if let Some(d @ 5..=8) = first
                    && d != self.line.data_size
                {
                    self.line.data_size = d;
                    self.push(Event::DataSize(d));
                }
                self.reply(cmd::SET_DATASIZE, &[self.line.data_size]);
            }
            cmd::SET_PARITY => {
                if let Some(p) = first.and_then(WireParity::from_code)
                    && p != self.line.parity
                {
                    self.line.parity = p;
                    self.push(Event::Parity(p));
                }
                self.reply(cmd::SET_PARITY, &[self.line.parity.code()]);
            }
            cmd::SET_STOPSIZE => {
                if let Some(s) = first.and_then(StopSize::from_code)
                    && s != self.line.stop_size
                {
                    self.line.stop_size = s;
                    self.push(Event::StopSize(s));
                }
                self.reply(cmd::SET_STOPSIZE, &[self.line.stop_size.code()]);
            }
            cmd::SET_CONTROL => self.set_control(first),
            cmd::NOTIFY_LINESTATE => {
                // Transmit holding and shift registers empty: the twin sends at once.
                self.reply(cmd::NOTIFY_LINESTATE, &[0x60]);
            }
            cmd::NOTIFY_MODEMSTATE => {
                // Nothing drives CD, RI, DSR or CTS on the twin.
                self.reply(cmd::NOTIFY_MODEMSTATE, &[0]);
            }
            cmd::FLOWCONTROL_SUSPEND => self.suspended = true,
            cmd::FLOWCONTROL_RESUME => self.suspended = false,
            cmd::SET_LINESTATE_MASK => {
                self.linestate_mask = first.unwrap_or(0);
                self.reply(cmd::SET_LINESTATE_MASK, &[self.linestate_mask]);
            }
            cmd::SET_MODEMSTATE_MASK => {
                self.modemstate_mask = first.unwrap_or(0);
                self.reply(cmd::SET_MODEMSTATE_MASK, &[self.modemstate_mask]);
            }
            // Purge: 1 the data from the device, 2 the data for it, 3 both; others unanswered.
            cmd::PURGE_DATA => {
                if let Some(v @ 1..=3) = first {
                    if v & 1 != 0 {
                        self.push(Event::PurgeFromDevice);
                    }
                    if v & 2 != 0 {
                        self.push(Event::PurgeToDevice);
                    }
                    self.reply(cmd::PURGE_DATA, &[v]);
                }
            }
            _ => {} // not an RFC 2217 command: ignored
        }
    }

    fn set_control(&mut self, value: Option<u8>) {
        use control::*;
        let Some(v) = value else { return };
        let answer = match v {
            REQ_FLOW => self.flow_out,
            FLOW_NONE | FLOW_XONXOFF | FLOW_HARDWARE => {
                // Accepted and kept: nothing on the twin ever stalls a sender.
                self.flow_out = v;
                v
            }
            REQ_BREAK | BREAK_ON | BREAK_OFF => {
                if v != REQ_BREAK && (v == BREAK_ON) != self.line.brk {
                    self.line.brk = v == BREAK_ON;
                    self.push(Event::Break(self.line.brk));
                }
                if self.line.brk { BREAK_ON } else { BREAK_OFF }
            }
            REQ_DTR | DTR_ON | DTR_OFF => {
                if v != REQ_DTR && (v == DTR_ON) != self.line.dtr {
                    self.line.dtr = v == DTR_ON;
                    self.push(Event::Dtr(self.line.dtr));
                }
                if self.line.dtr { DTR_ON } else { DTR_OFF }
            }
            REQ_RTS | RTS_ON | RTS_OFF => {
                if v != REQ_RTS && (v == RTS_ON) != self.line.rts {
                    self.line.rts = v == RTS_ON;
                    self.push(Event::Rts(self.line.rts));
                }
                if self.line.rts { RTS_ON } else { RTS_OFF }
            }
            REQ_FLOW_IN => self.flow_in,
            FLOW_IN_NONE..=LAST => {
                self.flow_in = v;
                v
            }
            _ => return,
        };
        self.reply(cmd::SET_CONTROL, &[answer]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ComPortServer {
        let mut s = ComPortServer::new(LineSettings::default(), "bootproof twin");
        s.take_output();
        s
    }

    /// `IAC SB COM-PORT-OPTION code value… IAC SE`
    fn sb(code: u8, value: &[u8]) -> Vec<u8> {
        let mut v = vec![IAC, SB, COM_PORT_OPTION, code];
        v.extend(escape(value));
        v.extend([IAC, SE]);
        v
    }

    #[test]
    fn opens_by_offering_binary_and_sga_and_asking_for_com_port_option() {
        let mut s = ComPortServer::new(LineSettings::default(), "x");
        assert_eq!(
            s.take_output(),
            [IAC, WILL, BINARY, IAC, DO, BINARY, IAC, WILL, SGA, IAC, DO, SGA, IAC, DO, COM_PORT_OPTION]
        );
    }

    #[test]
    fn answers_only_requests_that_change_state_so_negotiation_cannot_loop() {
        let mut s = server();
        // pyserial's opening: DO ECHO, WILL SGA, DO SGA, DO COM-PORT, WILL COM-PORT.
        let ev = s.feed(&[
            IAC,
            DO,
            ECHO,
            IAC,
            WILL,
            SGA,
            IAC,
            DO,
            SGA,
            IAC,
            DO,
            COM_PORT_OPTION,
            IAC,
            WILL,
            COM_PORT_OPTION,
        ]);
        assert!(ev.is_empty());
        // ECHO refused; SGA both ways and WILL COM-PORT answered our own requests: no reply;
        // DO COM-PORT is new: WILL.
        assert_eq!(s.take_output(), [IAC, WONT, ECHO, IAC, WILL, COM_PORT_OPTION]);
        assert!(s.com_port_active());
        // The answers to our BINARY requests: acknowledgements, not new requests.
        s.feed(&[IAC, DO, BINARY, IAC, WILL, BINARY]);
        assert!(s.take_output().is_empty());
        // Repeating an agreed option changes nothing and gets no answer.
        s.feed(&[IAC, WILL, BINARY, IAC, DO, SGA]);
        assert!(s.take_output().is_empty());
        // Turning one off is acknowledged once.
        s.feed(&[IAC, WONT, BINARY, IAC, WONT, BINARY]);
        assert_eq!(s.take_output(), [IAC, DONT, BINARY]);
        // Unknown options are refused; a refusal of one is not answered.
        s.feed(&[IAC, WILL, 24, IAC, DO, 31, IAC, WONT, 24, IAC, DONT, 31]);
        assert_eq!(s.take_output(), [IAC, DONT, 24, IAC, WONT, 31]);
    }

    #[test]
    fn data_passes_with_iac_undoubled_and_commands_in_between_kept_in_order() {
        let mut s = server();
        let mut input = vec![0x7F, IAC, IAC, 0x00];
        input.extend(sb(cmd::SET_PARITY, &[3]));
        input.extend([0x11, 0xEE, IAC, 241 /* NOP */, 0x22]);
        assert_eq!(
            s.feed(&input),
            vec![
                Event::Data(vec![0x7F, 0xFF, 0x00]),
                Event::Parity(WireParity::Even),
                Event::Data(vec![0x11, 0xEE, 0x22])
            ]
        );
        assert_eq!(escape(&[1, IAC, 2]), [1, IAC, IAC, 2]);
    }

    #[test]
    fn a_command_split_across_reads_is_understood() {
        let mut s = server();
        let bytes = sb(cmd::SET_BAUDRATE, &57_600u32.to_be_bytes());
        let mut events = Vec::new();
        for b in &bytes {
            events.extend(s.feed(std::slice::from_ref(b)));
        }
        assert_eq!(events, vec![Event::Baud(57_600)]);
        assert_eq!(s.take_output(), sb(101, &57_600u32.to_be_bytes()));
    }

    #[test]
    fn set_commands_are_answered_with_the_value_in_effect() {
        let mut s = server();
        // SET-BAUDRATE 9600: four bytes in network order, IAC SB 44 1 0 0 37 128 IAC SE.
        assert_eq!(s.feed(&[IAC, SB, 44, 1, 0, 0, 37, 128, IAC, SE]), vec![Event::Baud(9600)]);
        assert_eq!(s.take_output(), [IAC, SB, 44, 101, 0, 0, 37, 128, IAC, SE]);
        // A value with an IAC byte travels doubled both ways: 0x0001_C2FF = 115_455 baud.
        let odd = 0x0001_C2FFu32;
        assert_eq!(s.feed(&sb(cmd::SET_BAUDRATE, &odd.to_be_bytes())), vec![Event::Baud(odd)]);
        assert_eq!(s.take_output(), [IAC, SB, 44, 101, 0, 1, 0xC2, IAC, IAC, IAC, SE]);
        // 0 asks: no change, the current value back.
        assert!(s.feed(&sb(cmd::SET_BAUDRATE, &[0, 0, 0, 0])).is_empty());
        assert_eq!(s.take_output(), sb(101, &odd.to_be_bytes()));
        // Data size 7, parity odd, stop 2; then invalid values answered with the old ones.
        assert_eq!(s.feed(&sb(cmd::SET_DATASIZE, &[7])), vec![Event::DataSize(7)]);
        assert_eq!(s.feed(&sb(cmd::SET_PARITY, &[2])), vec![Event::Parity(WireParity::Odd)]);
        assert_eq!(s.feed(&sb(cmd::SET_STOPSIZE, &[2])), vec![Event::StopSize(StopSize::Two)]);
        assert_eq!(s.take_output(), [sb(102, &[7]), sb(103, &[2]), sb(104, &[2])].concat());
        assert!(s.feed(&[sb(2, &[9]), sb(3, &[6]), sb(4, &[0])].concat()).is_empty());
        assert_eq!(s.take_output(), [sb(102, &[7]), sb(103, &[2]), sb(104, &[2])].concat());
        // Setting the value in effect again is acknowledged without an event.
        assert!(s.feed(&sb(cmd::SET_PARITY, &[2])).is_empty());
        assert_eq!(s.take_output(), sb(103, &[2]));
        let l = s.line();
        assert_eq!((l.baud, l.data_size, l.parity, l.stop_size), (odd, 7, WireParity::Odd, StopSize::Two));
    }

    #[test]
    fn set_control_drives_dtr_rts_and_break_and_reports_them() {
        use control::*;
        let mut s = server();
        let ev = s.feed(&[sb(5, &[DTR_ON]), sb(5, &[RTS_ON]), sb(5, &[DTR_ON]), sb(5, &[BREAK_ON])].concat());
        assert_eq!(ev, vec![Event::Dtr(true), Event::Rts(true), Event::Break(true)]);
        assert_eq!(
            s.take_output(),
            [sb(105, &[DTR_ON]), sb(105, &[RTS_ON]), sb(105, &[DTR_ON]), sb(105, &[BREAK_ON])].concat()
        );
        let ev = s.feed(&[sb(5, &[RTS_OFF]), sb(5, &[REQ_DTR]), sb(5, &[REQ_RTS]), sb(5, &[REQ_BREAK])].concat());
        assert_eq!(ev, vec![Event::Rts(false)]);
        assert_eq!(
            s.take_output(),
            [sb(105, &[RTS_OFF]), sb(105, &[DTR_ON]), sb(105, &[RTS_OFF]), sb(105, &[BREAK_ON])].concat()
        );
        // Flow control: accepted and reported; an undefined value is not answered.
        assert!(
            s.feed(&[sb(5, &[FLOW_NONE]), sb(5, &[REQ_FLOW]), sb(5, &[16]), sb(5, &[REQ_FLOW_IN])].concat()).is_empty()
        );
        assert_eq!(s.take_output(), [sb(105, &[1]), sb(105, &[1]), sb(105, &[16]), sb(105, &[16])].concat());
        s.feed(&sb(5, &[20]));
        assert!(s.take_output().is_empty());
        assert!(s.line().dtr && !s.line().rts && s.line().brk);
    }

    #[test]
    fn purge_signature_states_masks_and_flow_suspension() {
        let mut s = server();
        assert_eq!(s.feed(&sb(cmd::PURGE_DATA, &[1])), vec![Event::PurgeFromDevice]);
        assert_eq!(s.feed(&sb(cmd::PURGE_DATA, &[2])), vec![Event::PurgeToDevice]);
        assert_eq!(s.feed(&sb(cmd::PURGE_DATA, &[3])), vec![Event::PurgeFromDevice, Event::PurgeToDevice]);
        assert_eq!(s.take_output(), [sb(112, &[1]), sb(112, &[2]), sb(112, &[3])].concat());
        s.feed(&sb(cmd::SIGNATURE, &[]));
        assert_eq!(s.take_output(), sb(100, b"bootproof twin"));
        s.feed(&sb(cmd::SIGNATURE, b"pyserial"));
        assert!(s.take_output().is_empty());
        assert_eq!(s.client_signature(), Some("pyserial"));
        s.feed(&[sb(6, &[]), sb(7, &[]), sb(10, &[0x0C]), sb(11, &[0xFF])].concat());
        assert_eq!(s.take_output(), [sb(106, &[0x60]), sb(107, &[0]), sb(110, &[0x0C]), sb(111, &[0xFF])].concat());
        assert!(!s.suspended());
        s.feed(&sb(cmd::FLOWCONTROL_SUSPEND, &[]));
        assert!(s.suspended());
        s.feed(&sb(cmd::FLOWCONTROL_RESUME, &[]));
        assert!(!s.suspended());
        // Another option's subnegotiation, and an over-long one, are ignored.
        s.feed(&[IAC, SB, 24, 1, IAC, SE]);
        let mut long = vec![IAC, SB, COM_PORT_OPTION, 0];
        long.extend([b'a'; 400]);
        long.extend([IAC, SE, 0x42]);
        assert_eq!(s.feed(&long), vec![Event::Data(vec![0x42])]);
        assert!(s.take_output().is_empty());
    }
}
