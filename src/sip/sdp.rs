//! SDP offer/answer for the phone leg (RFC 4566 syntax, RFC 3264 rules), without I/O.
//!
//! [`SdpOffer::parse`] reads what a phone or PBX offers, [`negotiate`] picks the first usable
//! audio stream and a codec from our preference list (plus RFC 4733 telephone-event), and
//! [`answer`] writes the answer: one live audio m-line, every other m-line of the offer refused
//! with port 0, in the offer's order (RFC 3264 §6).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// The G.711 codecs the phone leg speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    Pcmu,
    Pcma,
}

impl G711 {
    /// The static RTP payload type (RFC 3551).
    pub fn static_pt(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }

    /// The encoding name in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }

    fn from_name(name: &str) -> Option<G711> {
        [G711::Pcmu, G711::Pcma]
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }
}

/// Media direction attribute (RFC 4566 §6, RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(attr: &str) -> Option<Direction> {
        match attr {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer takes for an offer with this one (RFC 3264 §6.1).
    pub fn mirrored(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }
}

/// Why an offer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not SDP we can read. `line` counts from 1.
    #[error("malformed SDP at line {line}: {why}")]
    Malformed { line: usize, why: String },
    /// No audio stream we can take: none offered, all refused (port 0), or none on RTP/AVP(F).
    #[error("no usable audio stream in the offer")]
    NoAudio,
    /// An audio stream, but none of our codecs in it.
    #[error("no codec in common with the offer")]
    NoCommonCodec,
}

impl SdpError {
    /// The SIP final response this calls for: 400 for a body we cannot read, 488 (Not
    /// Acceptable Here) for an offer we cannot take.
    pub fn status_code(&self) -> u16 {
        match self {
            SdpError::Malformed { .. } => 400,
            SdpError::NoAudio | SdpError::NoCommonCodec => 488,
        }
    }
}

/// One payload type of a media description, with its `a=rtpmap` / `a=fmtp` when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadType {
    pub pt: u8,
    /// Encoding name, clock rate and channels from `a=rtpmap` (`None` without one).
    pub rtpmap: Option<RtpMap>,
    pub fmtp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
}

impl PayloadType {
    /// The G.711 codec this payload type carries: by `a=rtpmap` when present, else by the
    /// static assignments 0 and 8 (RFC 3551), which need no rtpmap.
    pub fn g711(&self) -> Option<G711> {
        match &self.rtpmap {
            Some(map) => G711::from_name(&map.encoding)
                .filter(|_| map.clock_rate == 8000 && map.channels.unwrap_or(1) == 1),
            None => match self.pt {
                0 => Some(G711::Pcmu),
                8 => Some(G711::Pcma),
                _ => None,
            },
        }
    }

    fn is_telephone_event_8k(&self) -> bool {
        self.rtpmap.as_ref().is_some_and(|m| {
            m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
        })
    }

    /// A short name for logs: `PCMU`, `opus/48000/2`, `PT 97`.
    pub fn name(&self) -> String {
        match (&self.rtpmap, self.g711()) {
            (_, Some(codec)) => codec.encoding_name().to_string(),
            (Some(m), None) => match m.channels {
                Some(ch) => format!("{}/{}/{}", m.encoding, m.clock_rate, ch),
                None => format!("{}/{}", m.encoding, m.clock_rate),
            },
            (None, None) => format!("PT {}", self.pt),
        }
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `application`, …
    pub media: String,
    /// 0 means the offerer refuses this stream.
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, …
    pub proto: String,
    /// The format list as written (payload type numbers for RTP profiles).
    pub formats: Vec<String>,
    /// Media-level `c=` address.
    pub connection: Option<IpAddr>,
    /// For RTP profiles: the formats as payload types, in offer order.
    pub payload_types: Vec<PayloadType>,
    pub ptime: Option<u16>,
    pub maxptime: Option<u16>,
    pub direction: Option<Direction>,
}

impl MediaDescription {
    fn is_rtp(&self) -> bool {
        self.proto.starts_with("RTP/")
    }

    /// Plain RTP, which is what the phone leg sends (no SRTP, no DTLS).
    fn is_plain_rtp(&self) -> bool {
        matches!(self.proto.as_str(), "RTP/AVP" | "RTP/AVPF")
    }
}

/// A parsed remote SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpOffer {
    /// `o=` as written: username, session id, session version (kept as text: phones send
    /// session ids longer than 64 bits).
    pub origin: Option<Origin>,
    /// Session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// Session-level direction attribute, the default for every m-line.
    pub direction: Option<Direction>,
    /// Session-level `a=ptime`, the default for every m-line.
    pub ptime: Option<u16>,
    pub media: Vec<MediaDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: String,
}

impl SdpOffer {
    /// Parses an SDP body (CRLF or LF line ends). Structure errors (`v=`, `c=`, `m=`,
    /// `a=rtpmap`, `a=ptime`) are [`SdpError::Malformed`]; attributes we do not use are skipped.
    pub fn parse(body: &[u8]) -> Result<SdpOffer, SdpError> {
        let mut offer = SdpOffer {
            origin: None,
            connection: None,
            direction: None,
            ptime: None,
            media: Vec::new(),
        };
        let mut saw_version = false;
        for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
            let line_no = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            // SDP text is UTF-8 (s=, i= may hold anything); fields we read are ASCII.
            let line = String::from_utf8_lossy(raw);
            let bad = |why: &str| SdpError::Malformed {
                line: line_no,
                why: why.to_string(),
            };
            let (kind, value) = match line.as_bytes() {
                [k, b'=', ..] if k.is_ascii_lowercase() => (*k, &line[2..]),
                _ => return Err(bad("expected <type>=<value>")),
            };
            if !saw_version {
                if kind != b'v' {
                    return Err(bad("SDP must start with v="));
                }
                if value.trim() != "0" {
                    return Err(bad("unsupported SDP version"));
                }
                saw_version = true;
                continue;
            }
            match kind {
                b'o' => offer.origin = Some(parse_origin(value).ok_or_else(|| bad("bad o="))?),
                b'c' => {
                    let addr = parse_connection(value).map_err(&bad)?;
                    match offer.media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => offer.connection = Some(addr),
                    }
                }
                b'm' => offer
                    .media
                    .push(parse_media(value).map_err(|why| bad(&why))?),
                b'a' => {
                    let attr = Attribute::parse(value).map_err(|why| bad(&why))?;
                    match offer.media.last_mut() {
                        Some(m) => attr.apply_to_media(m),
                        None => match attr {
                            Attribute::Direction(d) => offer.direction = Some(d),
                            Attribute::Ptime(p) => offer.ptime = Some(p),
                            _ => {}
                        },
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(SdpError::Malformed {
                line: 1,
                why: "empty SDP".into(),
            });
        }
        Ok(offer)
    }

    /// The offered codecs of the first audio m-line, for logs (`["PCMU", "opus/48000/2"]`).
    pub fn audio_codec_names(&self) -> Vec<String> {
        self.media
            .iter()
            .find(|m| m.media == "audio")
            .map(|m| m.payload_types.iter().map(PayloadType::name).collect())
            .unwrap_or_default()
    }
}

fn parse_origin(value: &str) -> Option<Origin> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    match fields.as_slice() {
        [user, id, version, _net, _addr_type, _addr] => Some(Origin {
            username: user.to_string(),
            session_id: id.to_string(),
            session_version: version.to_string(),
        }),
        _ => None,
    }
}

fn parse_connection(value: &str) -> Result<IpAddr, &'static str> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net, addr_type, addr] = fields.as_slice() else {
        return Err("c= needs <nettype> <addrtype> <address>");
    };
    if *net != "IN" {
        return Err("c= network type is not IN");
    }
    // Multicast addresses carry /ttl and /count suffixes.
    let host = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = host
        .parse()
        .map_err(|_| "c= address is not an IP address")?;
    match (*addr_type, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err("c= address does not match its address type"),
    }
}

fn parse_media(value: &str) -> Result<MediaDescription, String> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(media), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("m= needs <media> <port> <proto> <fmt>…".into());
    };
    // `<port>/<number of ports>` is allowed; the first port is the RTP port.
    let port: u16 = port
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("m= port is not a number")?;
    let formats: Vec<String> = fields.map(str::to_string).collect();
    if formats.is_empty() {
        return Err("m= has no formats".into());
    }
    let mut m = MediaDescription {
        media: media.to_string(),
        port,
        proto: proto.to_string(),
        formats,
        connection: None,
        payload_types: Vec::new(),
        ptime: None,
        maxptime: None,
        direction: None,
    };
    if m.is_rtp() {
        for f in &m.formats {
            let pt = f
                .parse::<u8>()
                .ok()
                .filter(|pt| *pt <= 127)
                .ok_or_else(|| format!("RTP payload type {f:?} is not 0-127"))?;
            m.payload_types.push(PayloadType {
                pt,
                rtpmap: None,
                fmtp: None,
            });
        }
    }
    Ok(m)
}

enum Attribute {
    RtpMap(u8, RtpMap),
    Fmtp(u8, String),
    Ptime(u16),
    MaxPtime(u16),
    Direction(Direction),
    Other,
}

impl Attribute {
    fn parse(value: &str) -> Result<Attribute, String> {
        let (name, rest) = value.split_once(':').unwrap_or((value, ""));
        let rest = rest.trim();
        Ok(match name.trim() {
            "rtpmap" => {
                let (pt, map) = rest
                    .split_once(' ')
                    .ok_or("a=rtpmap needs <pt> <encoding>")?;
                let pt = parse_pt(pt)?;
                let mut parts = map.trim().split('/');
                let encoding = parts.next().unwrap_or("").trim();
                let clock_rate = parts
                    .next()
                    .and_then(|r| r.trim().parse::<u32>().ok())
                    .ok_or("a=rtpmap clock rate is not a number")?;
                let channels = match parts.next() {
                    Some(ch) => Some(
                        ch.trim()
                            .parse::<u8>()
                            .map_err(|_| "a=rtpmap channel count is not a number")?,
                    ),
                    None => None,
                };
                if encoding.is_empty() {
                    return Err("a=rtpmap has no encoding name".into());
                }
                Attribute::RtpMap(
                    pt,
                    RtpMap {
                        encoding: encoding.to_string(),
                        clock_rate,
                        channels,
                    },
                )
            }
            "fmtp" => {
                let (pt, params) = rest.split_once(' ').unwrap_or((rest, ""));
                Attribute::Fmtp(parse_pt(pt)?, params.trim().to_string())
            }
            "ptime" => Attribute::Ptime(parse_ms(rest, "a=ptime")?),
            "maxptime" => Attribute::MaxPtime(parse_ms(rest, "a=maxptime")?),
            other => match Direction::parse(other) {
                Some(d) => Attribute::Direction(d),
                None => Attribute::Other,
            },
        })
    }

    fn apply_to_media(self, m: &mut MediaDescription) {
        fn entry(m: &mut MediaDescription, pt: u8) -> Option<&mut PayloadType> {
            m.payload_types.iter_mut().find(|p| p.pt == pt)
        }
        match self {
            // Maps for payload types not in the m-line are meaningless: ignored.
            Attribute::RtpMap(pt, map) => {
                if let Some(p) = entry(m, pt) {
                    p.rtpmap = Some(map);
                }
            }
            Attribute::Fmtp(pt, params) => {
                if let Some(p) = entry(m, pt) {
                    p.fmtp = Some(params);
                }
            }
            Attribute::Ptime(v) => m.ptime = Some(v),
            Attribute::MaxPtime(v) => m.maxptime = Some(v),
            Attribute::Direction(d) => m.direction = Some(d),
            Attribute::Other => {}
        }
    }
}

fn parse_pt(text: &str) -> Result<u8, String> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|pt| *pt <= 127)
        .ok_or_else(|| format!("payload type {text:?} is not 0-127"))
}

fn parse_ms(text: &str, what: &str) -> Result<u16, String> {
    // Some phones write fractional ptimes ("20.0"); the integer part is what counts.
    let int = text.split('.').next().unwrap_or("");
    int.trim()
        .parse::<u16>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{what} is not a positive number of milliseconds"))
}

/// What [`negotiate`] settled on; everything [`answer`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: G711,
    /// The payload type the offer uses for the codec (0 / 8 unless it remapped them).
    pub codec_pt: u8,
    /// The offer's telephone-event/8000 payload type, when it offers RFC 4733 events.
    pub telephone_event_pt: Option<u8>,
    /// Where the phone wants RTP: the m-line's `c=` (else the session's) and port.
    pub remote_rtp: SocketAddr,
    /// Packet duration to send: 20 ms unless the offer's `a=maxptime` is lower.
    pub ptime_ms: u16,
    /// Our direction in the answer: the offer's, mirrored.
    pub direction: Direction,
    /// Every m-line of the offer, in order, and whether it is the one we take.
    lines: Vec<AnswerLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AnswerLine {
    Accepted,
    Refused {
        media: String,
        proto: String,
        formats: Vec<String>,
    },
}

/// Picks the first usable audio stream of `offer` and the first codec of `prefs` it carries.
pub fn negotiate(offer: &SdpOffer, prefs: &[G711]) -> Result<Negotiated, SdpError> {
    let chosen = offer
        .media
        .iter()
        .position(|m| m.media == "audio" && m.port != 0 && m.is_plain_rtp())
        .ok_or(SdpError::NoAudio)?;
    let m = &offer.media[chosen];
    let (codec, codec_pt) = prefs
        .iter()
        .find_map(|want| {
            m.payload_types
                .iter()
                .find(|p| p.g711() == Some(*want))
                .map(|p| (*want, p.pt))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let ip = m
        .connection
        .or(offer.connection)
        .ok_or_else(|| SdpError::Malformed {
            line: 0,
            why: "no c= line for the audio stream".into(),
        })?;
    let telephone_event_pt = m
        .payload_types
        .iter()
        .find(|p| p.is_telephone_event_8k())
        .map(|p| p.pt);
    let direction = m
        .direction
        .or(offer.direction)
        .unwrap_or(Direction::SendRecv)
        .mirrored();
    let ptime_ms = match m.maxptime {
        // G.711 frames are 10 ms multiples; never more than the phone can take.
        Some(max) if max < 20 => (max / 10 * 10).max(10),
        _ => 20,
    };
    let lines = offer
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == chosen {
                AnswerLine::Accepted
            } else {
                AnswerLine::Refused {
                    media: m.media.clone(),
                    proto: m.proto.clone(),
                    formats: m.formats.clone(),
                }
            }
        })
        .collect();
    Ok(Negotiated {
        codec,
        codec_pt,
        telephone_event_pt,
        remote_rtp: SocketAddr::new(ip, m.port),
        ptime_ms,
        direction,
        lines,
    })
}

/// Writes the SDP answer: our address `local_ip` (the `sip.public_address` setting behind NAT)
/// and RTP port, the chosen codec, telephone-event with the offer's payload type, the mirrored
/// direction, and every other m-line of the offer refused with port 0.
pub fn answer(neg: &Negotiated, local_ip: IpAddr, local_port: u16, session_id: u64) -> String {
    answer_with_version(neg, local_ip, local_port, session_id, session_id)
}

fn answer_with_version(
    neg: &Negotiated,
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    version: u64,
) -> String {
    let addr_type = if local_ip.is_ipv6() { "IP6" } else { "IP4" };
    let mut s = String::new();
    // `write!` to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- {session_id} {version} IN {addr_type} {local_ip}\r\ns=-\r\n\
         c=IN {addr_type} {local_ip}\r\nt=0 0\r\n"
    );
    for line in &neg.lines {
        match line {
            AnswerLine::Accepted => {
                let _ = write!(s, "m=audio {local_port} RTP/AVP {}", neg.codec_pt);
                if let Some(te) = neg.telephone_event_pt {
                    let _ = write!(s, " {te}");
                }
                let _ = write!(
                    s,
                    "\r\na=rtpmap:{} {}/8000\r\n",
                    neg.codec_pt,
                    neg.codec.encoding_name()
                );
                if let Some(te) = neg.telephone_event_pt {
                    let _ = write!(
                        s,
                        "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
                    );
                }
                let _ = write!(
                    s,
                    "a=ptime:{}\r\na={}\r\n",
                    neg.ptime_ms,
                    neg.direction.as_str()
                );
            }
            AnswerLine::Refused {
                media,
                proto,
                formats,
            } => {
                let _ = write!(s, "m={media} 0 {proto} {}\r\n", formats.join(" "));
            }
        }
    }
    s
}

/// The answer to a new offer inside an established call (re-INVITE), given the answer we sent
/// before: the same address, port and codec, the direction mirrored from the new offer, and the
/// session version raised when anything changed (RFC 3264 §8). Fails when the new offer no
/// longer carries our codec; the caller then answers 488 and the session stays as it was.
pub fn reanswer(previous_answer: &str, offer: &SdpOffer) -> Result<(String, Negotiated), SdpError> {
    let ours = Ours::parse(previous_answer)?;
    let codec = ours
        .media
        .payload_types
        .first()
        .and_then(PayloadType::g711)
        .ok_or(SdpError::NoCommonCodec)?;
    let neg = negotiate(offer, &[codec])?;
    let same = answer_with_version(&neg, ours.ip, ours.media.port, ours.id, ours.version);
    let text = if same == previous_answer {
        same
    } else {
        let next = ours.version.wrapping_add(1);
        answer_with_version(&neg, ours.ip, ours.media.port, ours.id, next)
    };
    Ok((text, neg))
}

/// Our side of a call we offered, in the form [`reanswer`] takes: the address and port of our
/// offer with the codec the answer chose, so that a re-INVITE from the far end keeps that codec.
/// The session version is one above the offer's, since the codec list may have narrowed.
pub fn offered_session(our_offer: &str, answer: &SdpOffer) -> Result<String, SdpError> {
    let ours = Ours::parse(our_offer)?;
    let chosen = answer
        .media
        .iter()
        .find(|m| m.media == "audio" && m.port != 0)
        .and_then(|m| m.payload_types.iter().find_map(PayloadType::g711))
        .ok_or(SdpError::NoCommonCodec)?;
    let neg = negotiate(answer, &[chosen])?;
    let next = ours.version.wrapping_add(1);
    Ok(answer_with_version(
        &neg,
        ours.ip,
        ours.media.port,
        ours.id,
        next,
    ))
}

/// An SDP we sent: its first live m-line, that line's address, and the `o=` numbers.
struct Ours {
    media: MediaDescription,
    ip: IpAddr,
    id: u64,
    version: u64,
}

impl Ours {
    fn parse(text: &str) -> Result<Ours, SdpError> {
        let sdp = SdpOffer::parse(text.as_bytes())?;
        let (media, ip) = sdp
            .media
            .iter()
            .find(|m| m.port != 0)
            .and_then(|m| Some((m.clone(), m.connection.or(sdp.connection)?)))
            .ok_or(SdpError::NoAudio)?;
        let numbers = |o: &Option<Origin>| -> Option<(u64, u64)> {
            let o = o.as_ref()?;
            Some((o.session_id.parse().ok()?, o.session_version.parse().ok()?))
        };
        let (id, version) = numbers(&sdp.origin).ok_or(SdpError::Malformed {
            line: 2,
            why: "our SDP has no numeric o= line".into(),
        })?;
        Ok(Ours {
            media,
            ip,
            id,
            version,
        })
    }
}

mod offer;
pub use offer::{accept_answer, offer, OFFER_TELEPHONE_EVENT_PT};

#[cfg(test)]
mod tests;
