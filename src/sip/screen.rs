//! A first look at every UDP datagram, before the stack parses it.
//!
//! rsipstack drops a request it cannot parse without a word, accepts some invalid ones (two
//! Call-IDs, a Content-Length larger than the body, CSeq naming another method), and cannot
//! read a few valid ones (LWS around `=` in `;tag = x`, LF-only line ends, a datagram without the
//! blank line). [`screen`] answers the invalid ones itself with 400 (505 for another SIP
//! version, 501 for a method nobody here knows, 513 when too large), tidies the valid ones into
//! the form the stack reads, and passes the rest through untouched. Requests it passes always
//! parse in the stack, with the headers a transaction needs.
//!
//! Responses are built from the raw header lines, so a request the stack cannot parse still gets
//! its Via, From, To, Call-ID and CSeq back (RFC 3261 §8.2.6).

use std::borrow::Cow;

use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Method, SipMessage};

use super::headers::NameAddr;
use super::policy::ALLOW;

/// What to do with one datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Screened<'a> {
    /// Hand these bytes to the stack (the datagram as received, or tidied).
    Forward(Cow<'a, [u8]>),
    /// Send this response back to the sender; the stack never sees the request.
    Answer(Vec<u8>),
    /// Nothing can be answered (no Via to answer to, not SIP at all): drop it.
    Ignore,
}

/// Screens `datagram`; `limit` is the largest message the stack takes.
pub(crate) fn screen(datagram: &[u8], limit: usize) -> Screened<'_> {
    // Keep-alives (RFC 5626 CRLF pings) are the stack's business.
    if datagram.iter().all(u8::is_ascii_whitespace) {
        return Screened::Forward(Cow::Borrowed(datagram));
    }
    let Some(raw) = Raw::split(datagram) else {
        return Screened::Ignore;
    };
    if raw.start.starts_with("SIP/") {
        // A response: the stack matches it to a client transaction or drops it.
        return Screened::Forward(Cow::Borrowed(datagram));
    }
    let method = match check_request(&raw) {
        Ok(method) => method,
        Err(p) => return raw.answer(p),
    };
    let bytes = if raw.tidy {
        Cow::Owned(raw.rebuild())
    } else {
        Cow::Borrowed(datagram)
    };
    if let Err(p) = check_stack_accepts(&bytes, &method) {
        return raw.answer(p);
    }
    if bytes.len() > limit {
        return raw.answer(Problem::new(513, "Message Too Large"));
    }
    Screened::Forward(bytes)
}

/// Why a request is answered here, and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub code: u16,
    pub phrase: String,
    /// 501 carries `Allow`.
    pub allow: bool,
}

impl Problem {
    fn new(code: u16, phrase: impl Into<String>) -> Self {
        Problem {
            code,
            phrase: phrase.into(),
            allow: false,
        }
    }

    fn bad(why: impl Into<String>) -> Self {
        Problem::new(400, why)
    }
}

/// A request split into its start line and unfolded header lines, tolerant of what the stack
/// is not (LF line ends, no blank line, bytes that are not UTF-8).
struct Raw<'a> {
    start: String,
    headers: Vec<(String, String)>,
    body: &'a [u8],
    /// The header section needs rewriting before the stack can read it.
    tidy: bool,
}

impl<'a> Raw<'a> {
    fn split(datagram: &'a [u8]) -> Option<Raw<'a>> {
        let leading = datagram
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        let data = &datagram[leading..];
        let crlf = find(data, b"\r\n\r\n").map(|i| (i, 4));
        let lf = find(data, b"\n\n").map(|i| (i, 2));
        let end = match (crlf, lf) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        let (head, body, terminated) = match end {
            Some((i, n)) => (&data[..i], &data[i + n..], true),
            None => {
                let head_len = data.len()
                    - data
                        .iter()
                        .rev()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                (&data[..head_len], &data[data.len()..], false)
            }
        };
        let mut tidy = leading > 0 || !terminated || end.is_some_and(|(_, n)| n == 2);
        let mut lines = head.split(|b| *b == b'\n').map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            match std::str::from_utf8(l) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(String::from_utf8_lossy(l).into_owned()),
            }
        });
        let start = lines.next()?.into_owned();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if let Cow::Owned(_) = line {
                tidy = true;
            }
            if line.starts_with([' ', '\t']) {
                // A folded continuation (RFC 3261 §7.3.1): one header line for the stack.
                tidy = true;
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            match line.split_once(':') {
                Some((name, value)) => {
                    headers.push((name.trim().to_string(), value.trim().to_string()))
                }
                // Kept as a header without value so the checks reject it.
                None => headers.push((line.trim().to_string(), String::new())),
            }
        }
        for (_, value) in &mut headers {
            if value.starts_with(char::is_whitespace) {
                *value = value.trim_start().to_string();
            }
        }
        // Over UDP a body without Content-Length runs to the end of the datagram (RFC 3261
        // §18.3); the stack would read it as empty.
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(n, _)| canonical(n).eq_ignore_ascii_case("Content-Length"))
        {
            headers.push(("Content-Length".into(), body.len().to_string()));
            tidy = true;
        }
        let mut raw = Raw {
            start,
            headers,
            body,
            tidy,
        };
        raw.tighten_address_params();
        Some(raw)
    }

    /// RFC 3261 allows LWS around `;` and `=` in header parameters (`;tag = 98asjd8`) and
    /// around the `/` of a Via protocol; the stack does not see such a tag. Rewritten without
    /// the LWS, which means the same.
    fn tighten_address_params(&mut self) {
        for (name, value) in &mut self.headers {
            let name = canonical(name);
            let via = name.eq_ignore_ascii_case("via");
            if via
                || ["from", "to", "contact"]
                    .iter()
                    .any(|h| name.eq_ignore_ascii_case(h))
            {
                let tight = tighten(value, via);
                if tight != *value {
                    *value = tight;
                    self.tidy = true;
                }
            }
        }
    }

    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| canonical(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn one<'s>(&'s self, name: &'s str) -> Result<&'s str, Problem> {
        let mut values = self.values(name);
        match (values.next(), values.next()) {
            (Some(v), None) => Ok(v),
            (None, _) => Err(Problem::bad(format!("Missing {name}"))),
            (Some(_), Some(_)) => Err(Problem::bad(format!("Duplicate {name}"))),
        }
    }

    fn rebuild(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        out.extend(self.start.as_bytes());
        out.extend(b"\r\n");
        for (name, value) in &self.headers {
            out.extend(name.as_bytes());
            out.extend(b": ");
            out.extend(value.as_bytes());
            out.extend(b"\r\n");
        }
        out.extend(b"\r\n");
        out.extend(self.body);
        out
    }

    /// The response to this request, or nothing when it has no Via to answer along.
    fn answer(&self, p: Problem) -> Screened<'static> {
        if self.values("Via").next().is_none() {
            return Screened::Ignore;
        }
        let mut out = format!("SIP/2.0 {} {}\r\n", p.code, p.phrase);
        for via in self.values("Via") {
            out.push_str(&format!("Via: {via}\r\n"));
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(value) = self.values(name).next() {
                let value = if name == "To" && !has_tag(value) {
                    format!("{value};tag={:016x}", rand::random::<u64>())
                } else {
                    value.to_string()
                };
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        if p.allow {
            out.push_str(&format!("Allow: {ALLOW}\r\n"));
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        Screened::Answer(out.into_bytes())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The full name of a compact header form (only the ones checked here).
fn canonical(name: &str) -> &str {
    match name {
        n if n.eq_ignore_ascii_case("v") => "Via",
        n if n.eq_ignore_ascii_case("f") => "From",
        n if n.eq_ignore_ascii_case("t") => "To",
        n if n.eq_ignore_ascii_case("i") => "Call-ID",
        n if n.eq_ignore_ascii_case("m") => "Contact",
        n if n.eq_ignore_ascii_case("l") => "Content-Length",
        n => n,
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Splits at `sep` outside quoted strings and `<…>`.
fn split_top_level(value: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut angle, mut from) = (false, false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            c if c == sep && !quoted && !angle => {
                parts.push(&value[from..i]);
                from = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&value[from..]);
    parts
}

/// Removes LWS around `;` and `=` (and `/` when `slash`) outside quoted strings and `<…>`.
fn tighten(value: &str, slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if escaped {
            escaped = false;
            out.push(c);
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            _ => {}
        }
        let free = !quoted && !angle;
        if free && (c == ';' || c == '=' || (slash && c == '/')) {
            while out.ends_with([' ', '\t']) {
                out.pop();
            }
            out.push(c);
            while chars.peek().is_some_and(|n| *n == ' ' || *n == '\t') {
                chars.next();
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The header parameters of a name-addr or addr-spec value, without the leading `;`: what
/// follows the closing `>`, else what follows the first `;`.
fn header_params(value: &str) -> &str {
    let (mut quoted, mut escaped, mut close) = (false, false, None);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => close = Some(i),
            _ => {}
        }
    }
    let rest = match close {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map_or("", |(_, p)| p),
    };
    let rest = rest.trim_start();
    rest.strip_prefix(';').unwrap_or(rest)
}

fn has_tag(value: &str) -> bool {
    header_params(value).split(';').any(|p| {
        p.split('=')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("tag"))
    })
}

/// The checks of [`screen`] on a request the stack has already parsed: over TCP the stack
/// reads the stream itself, so this is the only look the gateway gets at such a request.
/// `request_line` is rebuilt from the parsed request; the header values are as received.
pub(crate) fn check_parsed(
    request_line: String,
    headers: Vec<(String, String)>,
    body: &[u8],
) -> Result<(), Problem> {
    let raw = Raw {
        start: request_line,
        headers,
        body,
        tidy: false,
    };
    check_request(&raw).map(|_| ())
}

/// Checks the request line and the headers every request needs; returns the method.
fn check_request(raw: &Raw) -> Result<String, Problem> {
    let parts: Vec<&str> = raw.start.split(' ').collect();
    let [method, uri, version] = parts.as_slice() else {
        return Err(Problem::bad("Malformed Request-Line"));
    };
    if method.is_empty() || !method.chars().all(is_token_char) {
        return Err(Problem::bad("Malformed method"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(if version.to_ascii_uppercase().starts_with("SIP/") {
            Problem::new(505, "Version Not Supported")
        } else {
            Problem::bad("Malformed Request-Line")
        });
    }
    let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or("");
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(Problem::bad("Malformed Request-URI"));
    }
    for (name, _) in &raw.headers {
        if name.is_empty() || !name.chars().all(is_token_char) {
            return Err(Problem::bad("Malformed header line"));
        }
    }
    if raw.values("Via").next().is_none() {
        return Err(Problem::bad("Missing Via"));
    }
    let from = raw.one("From")?;
    let to = raw.one("To")?;
    raw.one("Call-ID")?;
    let cseq = raw.one("CSeq")?;
    if raw.values("Max-Forwards").nth(1).is_some() {
        return Err(Problem::bad("Duplicate Max-Forwards"));
    }
    if method.parse::<Method>().is_err() {
        return Err(Problem {
            allow: true,
            ..Problem::new(501, "Not Implemented")
        });
    }
    let (seq, cseq_method) = cseq
        .split_once(char::is_whitespace)
        .ok_or_else(|| Problem::bad("Malformed CSeq"))?;
    if seq.parse::<u32>().is_err() {
        return Err(Problem::bad("Malformed CSeq"));
    }
    if cseq_method.trim() != *method {
        return Err(Problem::bad("CSeq method does not match"));
    }
    for value in raw.values("Max-Forwards") {
        if value.parse::<u8>().is_err() {
            return Err(Problem::bad("Malformed Max-Forwards"));
        }
    }
    let mut lengths = raw.values("Content-Length").map(|v| v.parse::<usize>());
    if let Some(first) = lengths.next() {
        let first = first.map_err(|_| Problem::bad("Malformed Content-Length"))?;
        if lengths.any(|other| other != Ok(first)) {
            return Err(Problem::bad("Conflicting Content-Length"));
        }
        if first > raw.body.len() {
            return Err(Problem::bad("Content-Length larger than the body"));
        }
    }
    for (name, value) in [("From", from), ("To", to)] {
        if split_top_level(value, ',').len() > 1 || NameAddr::parse(value).is_err() {
            return Err(Problem::bad(format!("Malformed {name}")));
        }
    }
    for via in raw.values("Via") {
        if !split_top_level(via, ',').into_iter().all(valid_via) {
            return Err(Problem::bad("Malformed Via"));
        }
    }
    for contact in raw.values("Contact") {
        if !split_top_level(contact, ',').into_iter().all(valid_contact) {
            return Err(Problem::bad("Malformed Contact"));
        }
    }
    Ok(method.to_string())
}

/// `SIP/2.0/<transport> <sent-by>[;param[=value]]…`, after [`tighten`].
fn valid_via(element: &str) -> bool {
    let element = element.trim();
    let Some((protocol, rest)) = element.split_once(char::is_whitespace) else {
        return false;
    };
    let proto: Vec<&str> = protocol.split('/').collect();
    let [name, version, transport] = proto.as_slice() else {
        return false;
    };
    let (sent_by, params) = match rest.trim_start().split_once(';') {
        Some((s, p)) => (s, Some(p)),
        None => (rest.trim_start(), None),
    };
    name.eq_ignore_ascii_case("SIP")
        && !version.is_empty()
        && !transport.is_empty()
        && transport.chars().all(is_token_char)
        && !sent_by.trim().is_empty()
        && !sent_by.trim().contains(char::is_whitespace)
        && params.is_none_or(valid_params)
}

fn valid_contact(element: &str) -> bool {
    let element = element.trim();
    if element == "*" {
        return true;
    }
    if NameAddr::parse(element).is_err() {
        return false;
    }
    let params = header_params(element);
    params.trim().is_empty() || valid_params(params)
}

/// `name[=value]` items separated by `;`, none empty.
fn valid_params(params: &str) -> bool {
    params.split(';').all(|p| {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        !name.is_empty() && name.chars().all(is_token_char) && value.is_none_or(|v| !v.is_empty())
    })
}

/// The stack must read what is forwarded, including what its transaction layer needs (top
/// Via, From with tag, To, Call-ID, CSeq): otherwise it drops the request unanswered.
fn check_stack_accepts(bytes: &[u8], method: &str) -> Result<(), Problem> {
    let msg = SipMessage::try_from(bytes).map_err(|_| Problem::bad("Unparseable request"))?;
    let SipMessage::Request(req) = msg else {
        return Err(Problem::bad("Unparseable request"));
    };
    let via_ok = req.top_via_header().and_then(|v| v.typed()).is_ok();
    if !via_ok {
        return Err(Problem::bad("Malformed Via"));
    }
    let from = req
        .from_header()
        .and_then(|f| f.typed())
        .map_err(|_| Problem::bad("Malformed From"))?;
    if from.tag().is_none() {
        // RFC 2543 clients send no From tag; transactions here are keyed on it.
        return Err(Problem::bad("Missing From tag"));
    }
    req.to_header()
        .and_then(|t| t.typed())
        .map_err(|_| Problem::bad("Malformed To"))?;
    let cseq = req
        .cseq_header()
        .map_err(|_| Problem::bad("Malformed CSeq"))?;
    match (cseq.seq(), cseq.method()) {
        (Ok(_), Ok(m)) if m.to_string() == method => {}
        _ => return Err(Problem::bad("Malformed CSeq")),
    }
    req.call_id_header()
        .map_err(|_| Problem::bad("Malformed Call-ID"))?;
    Ok(())
}

#[cfg(test)]
mod tests;
