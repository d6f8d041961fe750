//! Shared by the SIP integration tests: settings, a running server, and raw SIP over UDP/TCP.
#![allow(dead_code)] // each test file uses its own part

use jitsi_sip_gateway::config::{self, ConfigInput, FlagValue, SipSettings};
use jitsi_sip_gateway::sip::{IncomingCall, RegistrationState, SipServer, Transport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

/// SIP settings as the gateway loads them, with `sets` (`key=value`) on top of the defaults.
pub fn settings(sets: &[&str]) -> SipSettings {
    let env = BTreeMap::new();
    // The loader insists on the XMPP account; the SIP side does not use it.
    let flags = ["xmpp.password=unused"]
        .iter()
        .chain(sets)
        .map(|s| FlagValue::from_set_arg(s).unwrap())
        .collect();
    let loaded = config::load(&ConfigInput {
        file: None,
        env: &env,
        flags,
    })
    .unwrap_or_else(|e| panic!("settings {sets:?}: {e:?}"));
    loaded.settings.sip
}

/// A server on 127.0.0.1 with a free port for UDP and TCP.
pub async fn start(extra: &[&str]) -> (SipServer, mpsc::Receiver<IncomingCall>) {
    logs_from_env();
    let mut sets = vec!["sip.listen=127.0.0.1:0", "sip.transports=udp,tcp"];
    sets.extend_from_slice(extra);
    SipServer::start(&settings(&sets)).await.unwrap()
}

pub fn addr_of(server: &SipServer, transport: Transport) -> SocketAddr {
    server
        .local_addrs()
        .into_iter()
        .find(|(t, _)| *t == transport)
        .map(|(_, a)| a)
        .unwrap()
}

/// The RFC 4475 torture messages shared by all checkouts (`../shared/reference/rfc4475` from
/// the main repository, one level further up from a worktree).
pub fn rfc4475_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        "../shared/reference/rfc4475",
        "../../shared/reference/rfc4475",
    ]
    .iter()
    .map(|rel| root.join(rel))
    .find(|p| p.join("verdicts.tsv").exists())
    .expect("RFC 4475 messages not found in ../shared/reference/rfc4475")
}

/// A UDP peer that sends raw SIP and reads what comes back.
pub struct RawUdp {
    pub socket: UdpSocket,
    pub server: SocketAddr,
}

impl RawUdp {
    pub async fn new(server: SocketAddr) -> Self {
        RawUdp {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub async fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).await.unwrap();
    }

    /// The next datagram, or `None` after `timeout`.
    pub async fn recv(&self, timeout: Duration) -> Option<String> {
        let mut buf = vec![0; 65536];
        match tokio::time::timeout(timeout, self.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    /// Reads until a response with `status` for `call_id` arrives; returns it.
    pub async fn expect(&self, call_id: &str, status: u16, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self
                .recv(left)
                .await
                .unwrap_or_else(|| panic!("no {status} for {call_id} within {timeout:?}"));
            if status_of(&msg) == Some(status) && header(&msg, "Call-ID") == Some(call_id.into()) {
                return msg;
            }
        }
    }
}

/// The status code of a response.
pub fn status_of(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The first value of `name` in a raw message (exact name, any case).
pub fn header(msg: &str, name: &str) -> Option<String> {
    msg.split("\r\n\r\n")
        .next()?
        .split("\r\n")
        .skip(1)
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
}

/// An OPTIONS request from `from` with `call_id`.
pub fn options(from: SocketAddr, call_id: &str) -> String {
    format!(
        "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{from}>;tag=p1\r\nTo: <sip:gw@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A scripted caller over UDP: builds requests of one dialog and reads the answers.
pub struct Uac {
    pub udp: RawUdp,
    pub call_id: String,
    pub from_tag: String,
    /// Our tag as the gateway set it (from its first tagged response).
    pub to_tag: Option<String>,
    /// The Via sent-by to write (normally our socket; something else to play a NATed phone).
    pub via_host: String,
    branches: u32,
}

impl Uac {
    pub async fn new(server: SocketAddr, call_id: &str) -> Self {
        let udp = RawUdp::new(server).await;
        let via_host = udp.local().to_string();
        Uac {
            udp,
            call_id: call_id.into(),
            from_tag: format!("{call_id}-ft"),
            to_tag: None,
            via_host,
            branches: 0,
        }
    }

    /// A request of this dialog; `branch` reuses a Via branch (ACK of a non-2xx, CANCEL).
    pub fn request(
        &mut self,
        method: &str,
        cseq: u32,
        extra: &[&str],
        body: &str,
        branch: Option<&str>,
    ) -> (String, String) {
        self.branches += 1;
        let branch = branch
            .map(String::from)
            .unwrap_or_else(|| format!("z9hG4bK-{}-{}", self.call_id, self.branches));
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let mut msg = format!(
            "{method} sip:room@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {via};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: \"Caller\" <sip:+4930123@{via}>;tag={from_tag}\r\n\
             To: <sip:room@{server}>{to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:caller@{via}>\r\n",
            server = self.udp.server,
            via = self.via_host,
            from_tag = self.from_tag,
            call_id = self.call_id,
        );
        for h in extra {
            msg.push_str(h);
            msg.push_str("\r\n");
        }
        msg.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        (msg, branch)
    }

    /// Sends a request and returns its Via branch.
    pub async fn send(&mut self, method: &str, cseq: u32, extra: &[&str], body: &str) -> String {
        let (msg, branch) = self.request(method, cseq, extra, body, None);
        self.udp.send(msg.as_bytes()).await;
        branch
    }

    /// Reads until the final response to `cseq method` arrives; records the To tag.
    pub async fn final_response(&mut self, cseq: u32, method: &str) -> String {
        let want = format!("{cseq} {method}");
        loop {
            let msg = self
                .udp
                .recv(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("no final response to {want}"));
            let code = status_of(&msg).unwrap_or(0);
            if code >= 200 && header(&msg, "CSeq").as_deref() == Some(want.as_str()) {
                if self.to_tag.is_none() {
                    self.to_tag = header(&msg, "To")
                        .and_then(|to| to.split(";tag=").nth(1).map(|t| t.to_string()));
                }
                return msg;
            }
        }
    }
}

/// The body of a raw message.
pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// An SDP offer from 127.0.0.1 with `media` lines after the session part.
pub fn sdp_offer(version: u32, media: &str) -> String {
    format!(
        "v=0\r\no=- 42 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}"
    )
}

pub const PCMU_OFFER: &str =
    "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

/// Logs of the gateway on stderr when `RUST_LOG` is set (e.g. `jitsi_sip_gateway=debug,
/// rsipstack=debug`), for reading a failing test.
pub fn logs_from_env() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Waits (up to `timeout`) for a registration state satisfying `pred`; panics naming `what`.
pub async fn wait_for(
    states: &mut watch::Receiver<RegistrationState>,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&RegistrationState) -> bool,
) -> RegistrationState {
    let result = tokio::time::timeout(timeout, states.wait_for(|s| pred(s)))
        .await
        .map(|r| r.map(|state| state.clone()));
    match result {
        Ok(Ok(state)) => state,
        Ok(Err(_)) => panic!("registration ended while waiting for {what}"),
        Err(_) => panic!("no {what} within {timeout:?}: {:?}", *states.borrow()),
    }
}

pub fn registered(s: &RegistrationState) -> bool {
    matches!(s, RegistrationState::Registered { .. })
}
