//! rtpengine's NG control protocol: one UDP datagram `<cookie> <bencoded dict>` per request, the
//! reply `<cookie> <bencoded dict>` with `result` = `ok` (or `pong`), else `error-reason`.
//!
//! The decoder takes what comes off the network: every malformed input is a [`DecodeError`],
//! never a panic, a huge allocation or unbounded recursion.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::net::UdpSocket;

/// Nesting allowed in a decoded value (rtpengine's replies nest 5 or 6 deep at most).
const MAX_DEPTH: usize = 32;

/// A bencoded value. Dictionary keys are byte strings, kept sorted as the format wants when we
/// encode (rtpengine does not need it, but does not mind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the input ends inside a value (at byte {0})")]
    Truncated(usize),
    #[error("unexpected byte {byte:#04x} at {at}")]
    Unexpected { byte: u8, at: usize },
    #[error("malformed integer or length at byte {0}")]
    BadNumber(usize),
    #[error("a string of {len} bytes at byte {at} runs past the end of the input")]
    TooLong { len: usize, at: usize },
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("a dictionary key at byte {0} is not a string")]
    KeyNotString(usize),
    #[error("{0} bytes left after the value")]
    Trailing(usize),
}

impl Value {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    out.extend_from_slice(format!("{}:", k.len()).as_bytes());
                    out.extend_from_slice(k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes exactly one value spanning the whole input.
    pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
        let mut d = Decoder { input, at: 0 };
        let v = d.value(0)?;
        match input.len() - d.at {
            0 => Ok(v),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    /// A dictionary's entry.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// A string as UTF-8 (what every NG string we read is).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Bytes(s.into_bytes())
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl<V: Into<Value>> From<Vec<V>> for Value {
    fn from(l: Vec<V>) -> Value {
        Value::List(l.into_iter().map(Into::into).collect())
    }
}

/// A dictionary from `(key, value)` pairs.
pub fn dict<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

struct Decoder<'a> {
    input: &'a [u8],
    at: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.at)
            .copied()
            .ok_or(DecodeError::Truncated(self.at))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        match self.peek()? {
            b'i' => {
                self.at += 1;
                let i = self.number(b'e')?;
                Ok(Value::Int(i))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                self.at += 1;
                let mut l = Vec::new();
                while self.peek()? != b'e' {
                    l.push(self.value(depth + 1)?);
                }
                self.at += 1;
                Ok(Value::List(l))
            }
            b'd' => {
                self.at += 1;
                let mut d = BTreeMap::new();
                while self.peek()? != b'e' {
                    // rtpengine writes keys in insertion order, not sorted: accept any order.
                    if !self.peek()?.is_ascii_digit() {
                        return Err(DecodeError::KeyNotString(self.at));
                    }
                    let k = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    d.insert(k, v);
                }
                self.at += 1;
                Ok(Value::Dict(d))
            }
            byte => Err(DecodeError::Unexpected { byte, at: self.at }),
        }
    }

    /// A decimal integer up to `end` (consumed): optional minus, no leading zeros.
    fn number(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.at;
        let rest = &self.input[start..];
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(DecodeError::Truncated(self.input.len()))?;
        let text = std::str::from_utf8(&rest[..len]).map_err(|_| DecodeError::BadNumber(start))?;
        let digits = text.strip_prefix('-').unwrap_or(text);
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && text != "-0";
        if !canonical {
            return Err(DecodeError::BadNumber(start));
        }
        let n = text.parse().map_err(|_| DecodeError::BadNumber(start))?;
        self.at = start + len + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let start = self.at;
        let len = self.number(b':')?;
        let len = usize::try_from(len).map_err(|_| DecodeError::BadNumber(start))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(DecodeError::TooLong { len, at: start })?;
        let b = self.input[self.at..end].to_vec();
        self.at = end;
        Ok(b)
    }
}

/// The reply to the request sent with `cookie`: `None` if the datagram carries another cookie
/// (a late reply to an earlier request), an error if it is malformed or rtpengine refused.
pub fn parse_reply(cookie: &str, datagram: &[u8]) -> Result<Option<Value>> {
    let space = datagram
        .iter()
        .position(|&b| b == b' ')
        .context("an NG reply without a cookie")?;
    if &datagram[..space] != cookie.as_bytes() {
        return Ok(None);
    }
    let reply = Value::decode(&datagram[space + 1..]).context("an NG reply is not bencode")?;
    let Value::Dict(_) = reply else {
        bail!("an NG reply is not a dictionary");
    };
    match reply.get("result").and_then(Value::as_str) {
        Some("ok" | "pong") => Ok(Some(reply)),
        Some(result) => bail!(
            "rtpengine answered {result}: {}",
            reply
                .get("error-reason")
                .and_then(Value::as_str)
                .unwrap_or("(no error-reason)")
        ),
        None => bail!("an NG reply without a result"),
    }
}

/// Requests to one rtpengine. Each request has a socket of its own, so requests for many calls
/// may be in flight at once without matching replies across them.
#[derive(Debug, Clone)]
pub struct Client {
    pub server: SocketAddr,
    pub timeout: Duration,
}

/// rtpengine answers a repeated cookie from its cache, so a lost datagram is simply sent again.
const RESEND: Duration = Duration::from_millis(250);

impl Client {
    pub fn new(server: SocketAddr, timeout: Duration) -> Client {
        Client { server, timeout }
    }

    /// Sends `request` (a dictionary with a `command`) and returns rtpengine's successful reply.
    pub async fn request(&self, request: &Value) -> Result<Value> {
        let command = request
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let cookie = format!("{:012x}", rand::random::<u64>() & 0xFFFF_FFFF_FFFF);
        let mut datagram = format!("{cookie} ").into_bytes();
        datagram.extend_from_slice(&request.encode());
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; 65_536];
        loop {
            socket
                .send_to(&datagram, self.server)
                .await
                .with_context(|| format!("sending NG {command} to {}", self.server))?;
            let resend = (Instant::now() + RESEND).min(deadline);
            loop {
                let left = resend.saturating_duration_since(Instant::now());
                let Ok(received) = tokio::time::timeout(left, socket.recv_from(&mut buf)).await
                else {
                    break;
                };
                let (n, from) =
                    received.with_context(|| format!("receiving the NG {command} reply"))?;
                if from != self.server {
                    continue;
                }
                if let Some(reply) =
                    parse_reply(&cookie, &buf[..n]).with_context(|| format!("NG {command}"))?
                {
                    return Ok(reply);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "no NG {command} reply from {} within {:?}",
                    self.server,
                    self.timeout
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = dict([
            ("command", "offer".into()),
            ("sdp", "v=0\r\nm=audio 1 RTP/AVP 0\r\n".into()),
            ("rtcp-mux", vec!["offer", "require"].into()),
            (
                "codec",
                dict([
                    ("transcode", vec!["opus/48000/2"].into()),
                    ("mask", vec!["PCMU"].into()),
                ]),
            ),
            ("n", Value::Int(-42)),
            ("zero", Value::Int(0)),
            ("empty", Value::Bytes(Vec::new())),
            ("binary", Value::Bytes(vec![0, 0xFF, b':', b'e'])),
        ]);
        let bytes = v.encode();
        assert_eq!(Value::decode(&bytes), Ok(v.clone()));
        // Keys come out sorted.
        assert!(bytes.starts_with(b"d6:binary4:"));
        assert_eq!(
            dict([("result", "pong".into())]).encode(),
            b"d6:result4:ponge".to_vec()
        );
    }

    #[test]
    fn unsorted_keys_as_rtpengine_writes_them_are_read() {
        let v = Value::decode(b"d6:result2:ok3:sdp3:v=0e").unwrap();
        assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"));
        assert_eq!(v.get("sdp").and_then(Value::as_str), Some("v=0"));
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let bad: &[&[u8]] = &[
            b"",
            b"i",
            b"i12",
            b"ie",
            b"i-e",
            b"i-0e",
            b"i03e",
            b"i1x2e",
            b"i99999999999999999999e",
            b"5:abc",
            b"99999999999999999999:x",
            b"-1:x",
            b"3x:abc",
            b"l",
            b"li1e",
            b"d",
            b"d3:key",
            b"di1ei2ee",
            b"dlee",
            b"x",
            b"i1ei2e",
            b"4:spam ",
            &[0xFF],
        ];
        for input in bad {
            assert!(
                Value::decode(input).is_err(),
                "{:?} decoded",
                String::from_utf8_lossy(input)
            );
        }
        let deep = vec![b'l'; 10_000];
        assert_eq!(Value::decode(&deep), Err(DecodeError::TooDeep));
    }

    #[test]
    fn replies_are_matched_by_cookie_and_refusals_are_errors() {
        let ok = b"abc d6:result2:ok3:sdp3:v=0e";
        let reply = parse_reply("abc", ok).unwrap().unwrap();
        assert_eq!(reply.get("sdp").and_then(Value::as_str), Some("v=0"));
        assert!(parse_reply("other", ok).unwrap().is_none());

        let refused = b"abc d6:result5:error12:error-reason15:Unknown call-ide";
        let e = parse_reply("abc", refused).unwrap_err().to_string();
        assert!(e.contains("Unknown call-id"), "{e}");

        for bad in [
            &b"abc"[..],
            b"abc ",
            b"abc i1e",
            b"abc d3:sdp3:v=0e",
            b"abc d6:result2:ok",
            b"abc d6:resulti1ee",
        ] {
            assert!(parse_reply("abc", bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_request_is_answered_and_a_silent_server_times_out() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let answer = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            let (cookie, body) =
                buf[..n].split_at(buf[..n].iter().position(|&b| b == b' ').unwrap());
            assert_eq!(
                Value::decode(&body[1..]).unwrap(),
                dict([("command", "ping".into())])
            );
            // A stale reply first: ignored.
            server.send_to(b"old d6:result4:ponge", from).await.unwrap();
            let mut reply = cookie.to_vec();
            reply.extend_from_slice(b" d6:result4:ponge");
            server.send_to(&reply, from).await.unwrap();
        });
        let client = Client::new(addr, Duration::from_secs(2));
        let reply = client
            .request(&dict([("command", "ping".into())]))
            .await
            .unwrap();
        assert_eq!(reply.get("result").and_then(Value::as_str), Some("pong"));
        answer.await.unwrap();

        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = Client::new(silent.local_addr().unwrap(), Duration::from_millis(300));
        let e = client
            .request(&dict([("command", "ping".into())]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no NG ping reply"), "{e}");
    }
}
