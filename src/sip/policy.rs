//! What the gateway does with a request the stack has parsed and no transaction or dialog has
//! claimed yet: start a call, hand it to its dialog, answer OPTIONS, or refuse it with the code
//! RFC 3261 names. Pure: it sees the method, the Request-URI and the headers.

use std::net::IpAddr;

use super::headers::Headers;
use crate::config::IpNet;

/// The methods a call here takes part in, as the `Allow` header lists them.
pub(crate) const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO";
/// The only body we take (RFC 3261 §20.1: the `Accept` of our answers).
pub(crate) const ACCEPT: &str = "application/sdp";

/// The parts of a request the decision needs.
pub(crate) struct RequestView<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub headers: &'a Headers,
    pub has_body: bool,
    /// The To header carries a tag: the request claims to belong to a dialog.
    pub to_tag: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A new INVITE: an incoming call.
    NewCall,
    /// A request inside a dialog: to the dialog it names, 481 if there is none.
    InDialog,
    /// OPTIONS outside a dialog: 200 with what we support.
    Options,
    /// A final response and the headers it must carry.
    Refuse(Refusal),
    /// No response at all (a stray ACK).
    Ignore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: u16,
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    fn new(code: u16) -> Self {
        Refusal {
            code,
            headers: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Whether the Request-URI scheme is one a call can arrive on.
pub(crate) fn supported_scheme(uri: &str) -> bool {
    let scheme = uri.split_once(':').map_or("", |(s, _)| s);
    ["sip", "sips", "tel"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
}

pub(crate) fn route(req: &RequestView<'_>) -> Route {
    match req.method {
        "ACK" => return Route::Ignore,
        // A CANCEL that reaches us matched no INVITE transaction (RFC 3261 §9.2).
        "CANCEL" => return Route::Refuse(Refusal::new(481)),
        _ => {}
    }
    if !supported_scheme(req.uri) {
        return Route::Refuse(Refusal::new(416));
    }
    // We implement no extension: any option tag a request requires is unsupported (§8.2.2.3).
    let required: Vec<&str> = req.headers.tokens("Require").collect();
    if !required.is_empty() {
        return Route::Refuse(Refusal::new(420).with("Unsupported", required.join(", ")));
    }
    match req.method {
        "INVITE" if req.to_tag => Route::InDialog,
        "INVITE" => {
            if req.has_body && !is_sdp(req.headers.get("Content-Type")) {
                return Route::Refuse(Refusal::new(415).with("Accept", ACCEPT));
            }
            if req
                .headers
                .tokens("Content-Encoding")
                .any(|e| !e.eq_ignore_ascii_case("identity"))
            {
                return Route::Refuse(Refusal::new(415).with("Accept-Encoding", "identity"));
            }
            // An Accept without SDP means the answer could not carry ours (§8.2.3).
            if req.headers.get("Accept").is_some() && !accepts_sdp(req.headers) {
                return Route::Refuse(Refusal::new(406).with("Accept", ACCEPT));
            }
            Route::NewCall
        }
        "OPTIONS" if req.to_tag => Route::InDialog,
        "OPTIONS" => Route::Options,
        "BYE" | "INFO" | "PRACK" | "UPDATE" | "NOTIFY" | "REFER" | "MESSAGE" if req.to_tag => {
            Route::InDialog
        }
        "BYE" | "INFO" | "PRACK" | "UPDATE" => Route::Refuse(Refusal::new(481)),
        _ => Route::Refuse(Refusal::new(405).with("Allow", ALLOW)),
    }
}

/// Whether a call from `source` may start: anyone when `allowed` is empty, else only an
/// address in one of its ranges (an unknown source never). IPv4 peers reaching an IPv6 socket
/// (`::ffff:a.b.c.d`) count as the IPv4 address.
pub(crate) fn peer_allowed(allowed: &[IpNet], source: Option<IpAddr>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    source.is_some_and(|ip| {
        let ip = ip.to_canonical();
        allowed.iter().any(|net| net.contains(ip))
    })
}

fn is_sdp(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case(ACCEPT))
}

fn accepts_sdp(headers: &Headers) -> bool {
    headers.tokens("Accept").any(|t| {
        let t = t.to_ascii_lowercase();
        t == ACCEPT || t == "application/*" || t == "*/*"
    })
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

    fn route_of(
        method: &str,
        uri: &str,
        pairs: &[(&str, &str)],
        body: bool,
        to_tag: bool,
    ) -> Route {
        route(&RequestView {
            method,
            uri,
            headers: &headers(pairs),
            has_body: body,
            to_tag,
        })
    }

    const SDP: &[(&str, &str)] = &[("Content-Type", "application/sdp")];

    fn refused(r: Route) -> (u16, Vec<(&'static str, String)>) {
        match r {
            Route::Refuse(Refusal { code, headers }) => (code, headers),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn initial_invite_with_sdp_is_a_new_call() {
        assert_eq!(
            route_of("INVITE", "sip:room@gw", SDP, true, false),
            Route::NewCall
        );
        // An offerless INVITE is a call too (the offer then goes in our 200).
        assert_eq!(
            route_of("INVITE", "tel:+4930123", &[], false, false),
            Route::NewCall
        );
        let with_accept = [
            ("Content-Type", "application/sdp"),
            ("Accept", "application/sdp, text/plain"),
        ];
        assert_eq!(
            route_of("INVITE", "sip:a@b", &with_accept, true, false),
            Route::NewCall
        );
    }

    #[test]
    fn requests_with_a_to_tag_go_to_their_dialog() {
        for m in [
            "INVITE", "BYE", "INFO", "OPTIONS", "UPDATE", "REFER", "NOTIFY", "MESSAGE", "PRACK",
        ] {
            assert_eq!(
                route_of(m, "sip:a@b", SDP, false, true),
                Route::InDialog,
                "{m}"
            );
        }
    }

    #[test]
    fn dialog_requests_without_a_dialog_are_481() {
        for m in ["BYE", "INFO", "PRACK", "UPDATE", "CANCEL"] {
            assert_eq!(
                refused(route_of(m, "sip:a@b", &[], false, false)).0,
                481,
                "{m}"
            );
        }
    }

    #[test]
    fn options_outside_a_dialog_is_answered_by_the_server() {
        assert_eq!(
            route_of("OPTIONS", "sip:gw", &[], false, false),
            Route::Options
        );
    }

    #[test]
    fn methods_we_do_not_serve_are_405_with_allow() {
        for m in [
            "REGISTER",
            "SUBSCRIBE",
            "PUBLISH",
            "MESSAGE",
            "REFER",
            "NOTIFY",
        ] {
            let (code, headers) = refused(route_of(m, "sip:gw", &[], false, false));
            assert_eq!(code, 405, "{m}");
            assert_eq!(headers, [("Allow", ALLOW.to_string())]);
        }
    }

    #[test]
    fn unknown_uri_scheme_is_416() {
        assert_eq!(
            refused(route_of(
                "OPTIONS",
                "nobodyKnowsThisScheme:totallyopaquecontent",
                &[],
                false,
                false
            ))
            .0,
            416
        );
        assert_eq!(
            refused(route_of(
                "INVITE",
                "soap.beep://192.0.2.103:3002",
                SDP,
                true,
                false
            ))
            .0,
            416
        );
    }

    #[test]
    fn required_extensions_are_420_listing_them() {
        let h = [
            ("Require", "nothingSupportsThis, nothingSupportsThisEither"),
            ("Require", "100rel"),
        ];
        let (code, headers) = refused(route_of("INVITE", "sip:a@b", &h, false, false));
        assert_eq!(code, 420);
        assert_eq!(
            headers,
            [(
                "Unsupported",
                "nothingSupportsThis, nothingSupportsThisEither, 100rel".to_string()
            )]
        );
    }

    #[test]
    fn invite_body_that_is_not_sdp_is_415_with_accept() {
        let h = [("Content-Type", "application/unknownformat")];
        let (code, headers) = refused(route_of("INVITE", "sip:a@b", &h, true, false));
        assert_eq!((code, headers), (415, vec![("Accept", ACCEPT.to_string())]));
        // A body without a type at all is not SDP either.
        assert_eq!(
            refused(route_of("INVITE", "sip:a@b", &[], true, false)).0,
            415
        );
        let gz = [
            ("Content-Type", "application/sdp"),
            ("Content-Encoding", "gzip"),
        ];
        assert_eq!(
            refused(route_of("INVITE", "sip:a@b", &gz, true, false)).0,
            415
        );
        let params = [("Content-Type", "Application/SDP; charset=utf-8")];
        assert_eq!(
            route_of("INVITE", "sip:a@b", &params, true, false),
            Route::NewCall
        );
    }

    #[test]
    fn invite_whose_accept_excludes_sdp_is_406() {
        let h = [
            ("Content-Type", "application/sdp"),
            ("Accept", "text/nobodyknowsthis"),
        ];
        assert_eq!(
            refused(route_of("INVITE", "sip:a@b", &h, true, false)).0,
            406
        );
        let star = [("Content-Type", "application/sdp"), ("Accept", "*/*")];
        assert_eq!(
            route_of("INVITE", "sip:a@b", &star, true, false),
            Route::NewCall
        );
    }

    #[test]
    fn stray_ack_gets_no_response() {
        assert_eq!(route_of("ACK", "sip:a@b", &[], false, true), Route::Ignore);
    }

    #[test]
    fn only_allowed_peers_may_call_when_a_list_is_set() {
        let nets: Vec<IpNet> = ["192.0.2.0/24", "2001:db8::1"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(peer_allowed(&[], ip("198.51.100.1")));
        assert!(peer_allowed(&[], None));
        assert!(peer_allowed(&nets, ip("192.0.2.77")));
        assert!(peer_allowed(&nets, ip("::ffff:192.0.2.77")));
        assert!(peer_allowed(&nets, ip("2001:db8::1")));
        assert!(!peer_allowed(&nets, ip("198.51.100.1")));
        assert!(!peer_allowed(&nets, ip("2001:db8::2")));
        assert!(!peer_allowed(&nets, None));
    }
}
