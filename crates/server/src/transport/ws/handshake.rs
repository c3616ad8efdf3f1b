//! The WebSocket opening handshake (RFC 6455 §4.2), server side, over HTTP/1.1.
//!
//! Done here rather than by axum's `WebSocketUpgrade` because the connection task needs the
//! upgraded stream itself: it owns the stream whole, one writer framing everything it sends
//! (`write`) and one reader parsing what the client sends (`read`). axum's `WebSocket` does not
//! give the stream out.
//!
//! What is refused, and how (every refusal carries the REST API's JSON error body):
//! - not an upgrade at all (`Connection: upgrade` or `Upgrade: websocket` missing): 426;
//! - a `Sec-WebSocket-Version` other than 13: 426 with `Sec-WebSocket-Version: 13` (§4.4);
//! - a `Sec-WebSocket-Key` that is not base64 of exactly 16 bytes (§4.1), no `Host` (§4.1, and
//!   RFC 9112 §3.2), or an HTTP version other than 1.1 (§4.1 needs HTTP/1.1 or higher, and
//!   upgrades are an HTTP/1.1 mechanism): 400, with a code naming which.

use crate::error::ApiError;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// An open WebSocket connection: the upgraded HTTP connection's byte stream.
pub(crate) type Socket = TokioIo<hyper::upgrade::Upgraded>;

/// Why a request is not a WebSocket opening handshake we accept.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejection {
    #[error("the `Connection` header does not include `upgrade`")]
    NoConnectionUpgrade,
    #[error("the `Upgrade` header is not `websocket`")]
    NoUpgradeWebsocket,
    #[error("the `Sec-WebSocket-Version` header is not `13`")]
    WrongVersion,
    #[error("the `Sec-WebSocket-Key` header is missing")]
    NoKey,
    #[error("the `Sec-WebSocket-Key` header is not base64 of 16 bytes")]
    BadKey,
    #[error("the request has no `Host` header")]
    NoHost,
    #[error("WebSocket needs HTTP/1.1; this request is {0:?}")]
    HttpVersion(Version),
    #[error("this connection cannot be upgraded (WebSocket is served over HTTP/1.1)")]
    NotUpgradable,
}

impl Rejection {
    /// The answer: 426 for a request that is not (our version of) an upgrade, 400 for an upgrade
    /// that is malformed.
    pub(crate) fn into_error(self) -> ApiError {
        let code = match self {
            Rejection::NoConnectionUpgrade
            | Rejection::NoUpgradeWebsocket
            | Rejection::WrongVersion
            | Rejection::NotUpgradable => {
                return ApiError::UpgradeRequired(format!(
                    "this endpoint speaks WebSocket (RFC 6455): {self}"
                ))
            }
            Rejection::NoKey | Rejection::BadKey => "invalid_websocket_key",
            Rejection::NoHost => "missing_host",
            Rejection::HttpVersion(_) => "http_version_not_supported",
        };
        ApiError::BadHandshake {
            code,
            message: self.to_string(),
        }
    }
}

/// A valid handshake, not answered yet.
pub(crate) struct Upgrade {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl Upgrade {
    /// Checks the request's handshake headers and takes its upgrade (so only one handler can).
    pub(crate) fn from_parts(parts: &mut Parts) -> Result<Self, Rejection> {
        let headers = &parts.headers;
        if parts.version != Version::HTTP_11 {
            // HTTP/1.0 has no upgrade; HTTP/2 and 3 would need RFC 8441's extended CONNECT.
            if parts.version == Version::HTTP_10 {
                return Err(Rejection::HttpVersion(parts.version));
            }
            return Err(Rejection::NotUpgradable);
        }
        if !header_has_token(headers, header::CONNECTION, "upgrade") {
            return Err(Rejection::NoConnectionUpgrade);
        }
        if !header_has_token(headers, header::UPGRADE, "websocket") {
            return Err(Rejection::NoUpgradeWebsocket);
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(Rejection::WrongVersion);
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(Rejection::NoKey)?;
        if !key_is_valid(key.as_bytes()) {
            return Err(Rejection::BadKey);
        }
        if headers
            .get(header::HOST)
            .is_none_or(|host| host.as_bytes().is_empty())
        {
            return Err(Rejection::NoHost);
        }
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .expect("base64 is a valid header value");
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(Rejection::NotUpgradable)?;
        Ok(Self { accept, on_upgrade })
    }

    /// The 101 answer, and the connection once it is sent (`None` if the client went away).
    /// `extensions`: the `Sec-WebSocket-Extensions` answer, if an extension was negotiated.
    pub(crate) fn accept(
        self,
        extensions: Option<HeaderValue>,
    ) -> (
        Response,
        impl std::future::Future<Output = Option<Socket>> + Send,
    ) {
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept);
        if let Some(extensions) = extensions {
            headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, extensions);
        }
        let on_upgrade = self.on_upgrade;
        let socket = async move { on_upgrade.await.ok().map(TokioIo::new) };
        (response, socket)
    }
}

/// Whether `key` is the base64 of 16 bytes (RFC 6455 §4.1 item 7): 24 characters, the last two
/// `==`. Decoding is the only check that also refuses non-canonical trailing bits.
fn key_is_valid(key: &[u8]) -> bool {
    use base64::Engine;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == 16)
}

/// Whether a comma-separated header holds `token`, in any case (`Connection: keep-alive, Upgrade`).
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::get("/ws/tasks");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    const VALID: [(&str, &str); 5] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("host", "example.com"),
    ];

    #[test]
    fn each_missing_header_is_named() {
        let cases = [
            (0, "Connection"),
            (1, "Upgrade"),
            (2, "Sec-WebSocket-Version"),
            (3, "Sec-WebSocket-Key"),
            (4, "Host"),
        ];
        for (skip, name) in cases {
            let headers: Vec<_> = VALID
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, h)| *h)
                .collect();
            let err = Upgrade::from_parts(&mut parts(&headers))
                .err()
                .expect("rejected");
            assert!(err.to_string().contains(name), "{err} should name {name}");
        }
    }

    #[test]
    fn a_request_without_an_upgradable_connection_is_refused_after_the_headers_pass() {
        // A request built in memory has no connection behind it: everything else is valid.
        let err = Upgrade::from_parts(&mut parts(&VALID))
            .err()
            .expect("rejected");
        assert!(matches!(err, Rejection::NotUpgradable));
    }

    #[test]
    fn keys_must_be_base64_of_sixteen_bytes() {
        assert!(key_is_valid(b"dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ",    // unpadded
            b"dGhlIHNhbXBsZSBub25jZQ==x", // too long
            b"dGhlIHNhbXBsZSBub25jZSE=",  // 17 bytes
            b"dGhlIHNhbXBsZSBub25j",      // 15 bytes
            b"dGhlIHNhbXBsZSBub25jZR==",  // non-canonical trailing bits
            b"dGhlIHNhbXBsZSBub25j!Q==",  // not base64
        ] {
            assert!(
                !key_is_valid(bad),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn only_http_1_1_upgrades() {
        let mut p = parts(&VALID);
        p.version = Version::HTTP_10;
        let err = Upgrade::from_parts(&mut p).err().expect("rejected");
        assert!(matches!(err, Rejection::HttpVersion(_)));
        p.version = Version::HTTP_2;
        let err = Upgrade::from_parts(&mut p).err().expect("rejected");
        assert!(matches!(err, Rejection::NotUpgradable));
    }

    #[test]
    fn tokens_match_in_any_case_among_others() {
        let p = parts(&[("connection", "keep-alive"), ("connection", "UPGRADE")]);
        assert!(header_has_token(&p.headers, header::CONNECTION, "upgrade"));
        let p = parts(&[("connection", "upgraded")]);
        assert!(!header_has_token(&p.headers, header::CONNECTION, "upgrade"));
    }

    #[test]
    fn accept_key_is_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
