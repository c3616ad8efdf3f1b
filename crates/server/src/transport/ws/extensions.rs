//! Negotiating `permessage-deflate` (RFC 7692 §5, §7.1) from a client's
//! `Sec-WebSocket-Extensions` offers.
//!
//! The server always answers `server_no_context_takeover`: each message it sends is compressed
//! on its own, so one compressed payload is valid on every connection that negotiated the
//! extension and the hub compresses each event once, not once per subscriber ([`super::deflate`]).
//! What the client asks for is honoured:
//!
//! - `server_max_window_bits=N`: echoed. The server compresses with a 32 KiB window, but with no
//!   context takeover a back-reference never reaches further back than the message's own start,
//!   so a message of at most 2^N bytes is valid within an N-bit window; longer ones go to that
//!   client uncompressed (RFC 7692 lets any message be sent uncompressed).
//! - `client_no_context_takeover`: echoed; the server then inflates each of the client's
//!   messages with a fresh state and keeps none between them. Without it the client may refer to
//!   its earlier messages, and the server keeps an inflate state for the connection, created
//!   with the client's first compressed message.
//! - `client_max_window_bits[=N]`: the server inflates with the largest window, which reads any
//!   smaller one; nothing to answer (§7.1.2.2 lets the server omit it).
//!
//! An offer with an unknown parameter, a repeated one, or a value out of range is declined, and
//! the next offer is tried (§7.1: "a server MUST decline an extension negotiation offer" it
//! cannot accept); a client whose offers are all declined gets plain frames.

use axum::http::{header, HeaderMap, HeaderValue};

/// What a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deflate {
    /// The client's inflate window for what the server sends, in bits (15 unless it asked for
    /// less): messages longer than 2^bits go to it uncompressed.
    pub(crate) server_window_bits: u8,
    /// The client compresses each message on its own: no inflate state between messages.
    pub(crate) client_no_context_takeover: bool,
}

impl Deflate {
    /// The `Sec-WebSocket-Extensions` answer to the accepted offer.
    pub(crate) fn response(&self, offered_server_bits: bool) -> HeaderValue {
        let mut answer = String::from("permessage-deflate; server_no_context_takeover");
        if self.client_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if offered_server_bits {
            answer.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_window_bits
            ));
        }
        HeaderValue::from_str(&answer).expect("ASCII")
    }
}

/// The accepted offer, if any, and the answer to send.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<(Deflate, HeaderValue)> {
    for value in headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS) {
        let Ok(value) = value.to_str() else { continue };
        for offer in split_outside_quotes(value, ',') {
            if let Some((deflate, offered_server_bits)) = accept(offer) {
                let answer = deflate.response(offered_server_bits);
                return Some((deflate, answer));
            }
        }
    }
    None
}

/// One offer: `permessage-deflate` and its parameters, or `None` if it is declined. Also says
/// whether it named `server_max_window_bits` (which the answer must then carry).
fn accept(offer: &str) -> Option<(Deflate, bool)> {
    let mut parts = split_outside_quotes(offer, ';');
    if !parts
        .next()?
        .trim()
        .eq_ignore_ascii_case("permessage-deflate")
    {
        return None;
    }
    let mut deflate = Deflate {
        server_window_bits: 15,
        client_no_context_takeover: false,
    };
    let mut seen = [false; 4];
    let mut offered_server_bits = false;
    for parameter in parts {
        let (name, value) = match parameter.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (parameter.trim(), None),
        };
        let index = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => {
                deflate.client_no_context_takeover = true;
                1
            }
            "server_max_window_bits" => {
                deflate.server_window_bits = window_bits(value?)?;
                offered_server_bits = true;
                2
            }
            "client_max_window_bits" => {
                if let Some(value) = value {
                    window_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None; // a parameter named twice (§7.1)
        }
    }
    Some((deflate, offered_server_bits))
}

/// A window size: a decimal 8 to 15 without leading zeros (§7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.len() > 2 {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// A token or a quoted-string's content (RFC 7230 §3.2.6; a window size is never escaped).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains('"')),
        None => Some(value),
    }
}

/// Splits at `separator`, except inside a quoted string.
fn split_outside_quotes(value: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut start = 0;
    let mut pieces = Vec::new();
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                pieces.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&value[start..]);
    pieces.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(values: &[&str]) -> Option<(Deflate, String)> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        negotiate(&headers).map(|(d, v)| (d, v.to_str().unwrap().to_owned()))
    }

    #[test]
    fn the_browsers_offer_is_accepted_without_server_context() {
        // What Chromium and Firefox send.
        let (deflate, answer) = offer(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
        assert_eq!(deflate.server_window_bits, 15);
        assert!(!deflate.client_no_context_takeover);
    }

    #[test]
    fn the_clients_parameters_are_honoured_and_echoed() {
        let (deflate, answer) = offer(&[
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=\"10\"",
        ])
        .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
        assert!(deflate.client_no_context_takeover);
        assert_eq!(deflate.server_window_bits, 10);
        let (_, answer) = offer(&["PerMessage-Deflate ; Server_No_Context_Takeover"]).unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
    }

    #[test]
    fn a_bad_offer_is_declined_and_the_next_one_tried() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; x-unknown",
            "permessage-deflate; server_max_window_bits=\"10",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(offer(&[bad]), None, "{bad}");
        }
        let (deflate, _) = offer(&[
            "permessage-deflate; server_max_window_bits=99, permessage-deflate; server_max_window_bits=12",
        ])
        .unwrap();
        assert_eq!(deflate.server_window_bits, 12);
        let (_, answer) = offer(&["foo", "permessage-deflate"]).unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
        assert_eq!(offer(&[]), None);
    }
}
