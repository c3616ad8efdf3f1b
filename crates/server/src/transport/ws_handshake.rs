//! The WebSocket opening handshake (RFC 6455 §4.2), server side, over HTTP/1.1.
//!
//! Done here rather than by axum's `WebSocketUpgrade` because the connection task needs the
//! upgraded stream itself: broadcasts are framed once and written to it directly, many per
//! vectored write (`ws_frames`), while tungstenite keeps the read side, control frames and
//! replies. axum's `WebSocket` does not give the stream out.

use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// An open WebSocket connection: tungstenite over the upgraded HTTP connection.
pub(super) type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Why a request is not a WebSocket opening handshake we accept; answered with 426.
#[derive(Debug, thiserror::Error)]
pub(super) enum Rejection {
    #[error("the `Connection` header does not include `upgrade`")]
    NoConnectionUpgrade,
    #[error("the `Upgrade` header is not `websocket`")]
    NoUpgradeWebsocket,
    #[error("the `Sec-WebSocket-Version` header is not `13`")]
    WrongVersion,
    #[error("the `Sec-WebSocket-Key` header is missing")]
    NoKey,
    #[error("this connection cannot be upgraded (WebSocket is served over HTTP/1.1)")]
    NotUpgradable,
}

/// A valid handshake, not answered yet.
pub(super) struct Upgrade {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl Upgrade {
    /// Checks the request's handshake headers and takes its upgrade (so only one handler can).
    pub(super) fn from_parts(parts: &mut Parts) -> Result<Self, Rejection> {
        let headers = &parts.headers;
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
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .expect("base64 is a valid header value");
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(Rejection::NotUpgradable)?;
        Ok(Self { accept, on_upgrade })
    }

    /// The 101 answer, and the connection once it is sent (`None` if the client went away).
    pub(super) fn accept(
        self,
        config: WebSocketConfig,
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
        let on_upgrade = self.on_upgrade;
        let socket = async move {
            let upgraded = on_upgrade.await.ok()?;
            Some(
                WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await,
            )
        };
        (response, socket)
    }
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

    const VALID: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn each_missing_header_is_named() {
        let cases = [
            (0, "Connection"),
            (1, "Upgrade"),
            (2, "Sec-WebSocket-Version"),
            (3, "Sec-WebSocket-Key"),
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
