//! Header values of a received request, as the rest of the gateway sees them: no stack types.

use std::fmt;

/// Every header of a request in the order received, one entry per header line (a line with
/// comma-separated values stays one entry). Known headers carry their full name, so the compact
/// form `f:` arrives as `From`; [`Headers::get`] matches names without regard to case and also
/// knows the compact forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

/// Compact header forms (RFC 3261 §7.3.3 and the extensions that define one).
const COMPACT: &[(&str, &str)] = &[
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("d", "Request-Disposition"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("j", "Reject-Contact"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("n", "Identity-Info"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
    ("x", "Session-Expires"),
    ("y", "Identity"),
];

fn full_name(name: &str) -> &str {
    COMPACT
        .iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(name))
        .map_or(name, |(_, long)| long)
}

fn same_name(a: &str, b: &str) -> bool {
    full_name(a).eq_ignore_ascii_case(full_name(b))
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// The first value of header `name` (any case, full or compact form).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether any value of the comma-separated header `name` equals `token` (any case), as
    /// for `Require: 100rel` or `Accept: application/sdp;level=1`: parameters are ignored.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|t| t.eq_ignore_ascii_case(token))
    }

    /// The comma-separated items of header `name` over all its lines, without parameters.
    pub fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(|item| item.split(';').next().unwrap_or("").trim())
            .filter(|t| !t.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for Headers {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Headers(iter.into_iter().collect())
    }
}

/// A `From`/`To`/`Contact`-style address: `"Alice" <sip:alice@example.com>;tag=x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped; `None` when absent or empty.
    pub display_name: Option<String>,
    /// The URI as written between `<` and `>` (or the bare addr-spec).
    pub uri: String,
    /// The user part of the URI (`alice` in `sip:alice@host`, the number in `tel:+4930123`),
    /// percent-escapes kept as written.
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SIP name-addr: {0}")]
pub struct InvalidNameAddr(pub String);

impl NameAddr {
    /// Parses a header value; header parameters (`;tag=…`) after the address are skipped.
    pub fn parse(value: &str) -> Result<NameAddr, InvalidNameAddr> {
        let bad = |why: &str| InvalidNameAddr(why.to_string());
        let v = value.trim();
        let (display_name, rest) = if let Some(quoted) = v.strip_prefix('"') {
            let (name, after) = unquote(quoted).ok_or_else(|| bad("unterminated quoted string"))?;
            (Some(name), after.trim_start())
        } else if let Some(lt) = v.find('<') {
            (Some(v[..lt].trim().to_string()), &v[lt..])
        } else {
            (None, v)
        };
        let uri = if let Some(inner) = rest.strip_prefix('<') {
            let end = inner.find('>').ok_or_else(|| bad("missing '>'"))?;
            inner[..end].trim()
        } else if display_name.is_some() {
            return Err(bad("display name without <uri>"));
        } else {
            // addr-spec form: parameters after ';' belong to the header, not the URI.
            rest.split(';').next().unwrap_or("").trim()
        };
        let (scheme, after_scheme) = uri
            .split_once(':')
            .ok_or_else(|| bad("URI without scheme"))?;
        if scheme.is_empty() || after_scheme.is_empty() || uri.contains(char::is_whitespace) {
            return Err(bad("malformed URI"));
        }
        Ok(NameAddr {
            display_name: display_name.filter(|n| !n.is_empty()),
            uri: uri.to_string(),
            user: user_of(scheme, after_scheme),
        })
    }
}

/// The user part: before '@' (and before a `:password`) for sip/sips; the number before any
/// parameter for tel.
fn user_of(scheme: &str, rest: &str) -> Option<String> {
    let user = if scheme.eq_ignore_ascii_case("tel") {
        rest.split(';').next()?
    } else {
        let (userinfo, _host) = rest.rsplit_once('@')?;
        userinfo.split(':').next()?
    };
    (!user.is_empty()).then(|| user.to_string())
}

/// Reads a quoted string body (after the opening quote): the unescaped text and what follows
/// the closing quote.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.display_name {
            Some(name) => write!(f, "{} <{}>", quote(name), self.uri),
            None => write!(f, "<{}>", self.uri),
        }
    }
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // A header value cannot hold line breaks or other controls.
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An RFC 3326 `Reason` with the SIP protocol: why a call ends or is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub cause: u16,
    pub text: String,
}

impl Reason {
    pub fn new(cause: u16, text: impl Into<String>) -> Self {
        Reason {
            cause,
            text: text.into(),
        }
    }

    /// The header value: `SIP;cause=408;text="No invite from conference focus"`.
    pub fn header_value(&self) -> String {
        format!("SIP;cause={};text={}", self.cause, quote(&self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn get_ignores_case_and_returns_the_first_value() {
        let h = headers(&[
            ("X-Room-Name", "standup"),
            ("x-room-name", "other"),
            ("Via", "SIP/2.0/UDP a"),
        ]);
        assert_eq!(h.get("x-ROOM-name"), Some("standup"));
        assert_eq!(
            h.get_all("X-Room-Name").collect::<Vec<_>>(),
            ["standup", "other"]
        );
        assert_eq!(h.get("Jitsi-Conference-Room"), None);
    }

    #[test]
    fn compact_and_full_names_match_each_other() {
        let h = headers(&[("f", "<sip:a@b>;tag=1"), ("Supported", "timer")]);
        assert_eq!(h.get("From"), Some("<sip:a@b>;tag=1"));
        assert_eq!(h.get("k"), Some("timer"));
        assert_eq!(h.get("t"), None);
    }

    #[test]
    fn tokens_split_lines_and_drop_parameters() {
        let h = headers(&[
            ("Accept", "application/sdp;level=1, text/plain"),
            ("Require", "100rel"),
            ("Require", " timer , "),
        ]);
        assert!(h.has_token("accept", "APPLICATION/SDP"));
        assert_eq!(h.tokens("Require").collect::<Vec<_>>(), ["100rel", "timer"]);
    }

    #[test]
    fn quoted_display_name_is_unquoted_and_unescaped() {
        let a = NameAddr::parse(
            r#""Doe, \"JD\" John" <sip:+4930123@pbx.example.com;user=phone>;tag=9"#,
        )
        .unwrap();
        assert_eq!(a.display_name.as_deref(), Some(r#"Doe, "JD" John"#));
        assert_eq!(a.uri, "sip:+4930123@pbx.example.com;user=phone");
        assert_eq!(a.user.as_deref(), Some("+4930123"));
    }

    #[test]
    fn token_display_name_and_no_display_name() {
        let a = NameAddr::parse("Alice Smith <sip:alice@example.com>").unwrap();
        assert_eq!(a.display_name.as_deref(), Some("Alice Smith"));
        let b = NameAddr::parse("<sip:bob@example.com:5070>;tag=x").unwrap();
        assert_eq!((b.display_name, b.user.as_deref()), (None, Some("bob")));
        // RFC 4475 lwsdisp: no space before '<'.
        let c = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(c.display_name.as_deref(), Some("caller"));
    }

    #[test]
    fn addr_spec_keeps_header_params_out_of_the_uri() {
        let a = NameAddr::parse("sip:carol@chicago.com;tag=887s").unwrap();
        assert_eq!(a.uri, "sip:carol@chicago.com");
        assert_eq!(a.user.as_deref(), Some("carol"));
    }

    #[test]
    fn user_of_tel_uri_password_and_hostonly_uris() {
        assert_eq!(
            NameAddr::parse("<tel:+15551234567;phone-context=example.com>")
                .unwrap()
                .user
                .as_deref(),
            Some("+15551234567")
        );
        assert_eq!(
            NameAddr::parse("<sip:alice:secret@example.com>")
                .unwrap()
                .user
                .as_deref(),
            Some("alice")
        );
        assert_eq!(NameAddr::parse("<sip:example.com>").unwrap().user, None);
        // RFC 4475 semiuri: ';' inside the user part.
        assert_eq!(
            NameAddr::parse("<sip:user;par=u%40example.net@example.com>")
                .unwrap()
                .user
                .as_deref(),
            Some("user;par=u%40example.net")
        );
    }

    #[test]
    fn broken_name_addrs_are_errors() {
        for bad in [
            "",
            r#""unterminated <sip:a@b>"#,
            "Alice <sip:alice@example.com",
            "Alice",
            "<nocolon>",
            "<sip:>",
            "< sip:a@b c >",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn display_round_trips_through_parse() {
        let a = NameAddr {
            display_name: Some("Ann \"Q\" \\ B".into()),
            uri: "sip:ann@example.com".into(),
            user: Some("ann".into()),
        };
        assert_eq!(NameAddr::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn reason_header_quotes_and_escapes_its_text() {
        assert_eq!(
            Reason::new(408, "No invite from conference focus").header_value(),
            r#"SIP;cause=408;text="No invite from conference focus""#
        );
        assert_eq!(
            Reason::new(500, "a \"b\"\r\nInjected: x").header_value(),
            r#"SIP;cause=500;text="a \"b\"  Injected: x""#
        );
    }
}
