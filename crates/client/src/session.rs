//! One connection at a time, and the loop that replaces a lost one.

use crate::backoff::Backoff;
use crate::display::describe;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::time::Duration;
use taskflow_protocol::{close, ServerFrame, Since, Subscribed};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::RETRY_AFTER;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What `taskflow client` was asked to do.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `ws://host:port/ws/tasks`, or `wss://` for a server with TLS.
    pub url: String,
    /// A PEM file of CA certificates to trust for `wss://` instead of the built-in roots.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Bearer token.
    pub token: String,
    /// Rooms to subscribe to; none means the server's default (`tasks`).
    pub rooms: Vec<String>,
    /// Print each frame as one raw JSON line instead of for people.
    pub json: bool,
    /// First backoff ceiling.
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_cap: Duration,
    /// Offer `permessage-deflate` (a server with `ws_compression = on` then sends events
    /// compressed; [`crate::inflate`]).
    pub compression: bool,
}

/// Why the client stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the token: retrying cannot help.
    #[error("the server refused the token ({0}); get a new one")]
    Unauthorized(String),
    /// Writing to the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// The `--ca-cert` file cannot be used.
    #[error(transparent)]
    Ca(#[from] crate::tls::CaError),
    /// The URL is not a WebSocket URL.
    #[error("bad URL: {0}")]
    BadUrl(String),
}

/// Where the client stands in each room it has received events from, so a reconnect resumes
/// instead of starting over.
#[derive(Debug, Default, Clone)]
pub struct Positions {
    /// The server's epoch (from `hello`); positions of another epoch are worthless.
    epoch: Option<String>,
    /// Last offset received per room.
    offsets: BTreeMap<String, i64>,
}

impl Positions {
    /// Notes a frame: the epoch from `hello`, offsets from events and subscription answers.
    pub fn observe(&mut self, frame: &ServerFrame) {
        match frame {
            ServerFrame::Hello(hello) => {
                if self.epoch.as_deref() != Some(hello.epoch.as_str()) {
                    self.offsets.clear();
                }
                self.epoch = Some(hello.epoch.clone());
            }
            ServerFrame::Event(event) => {
                self.offsets.insert(event.room.clone(), event.offset);
            }
            ServerFrame::Reply {
                ok: true,
                result: Some(result),
                ..
            } => {
                if let Ok(answer) = serde_json::from_value::<Subscribed>(result.clone()) {
                    self.note_subscribed(&answer);
                }
            }
            ServerFrame::Subscribed(answer) => self.note_subscribed(answer),
            _ => {}
        }
    }

    fn note_subscribed(&mut self, answer: &Subscribed) {
        // The stream starts after these offsets. After a resume the replay brings a known room
        // up to them; a room seen for the first time, or one that could not be recovered,
        // starts here.
        let mut note = |room: &String, offset: i64| {
            if !answer.recovered {
                self.offsets.insert(room.clone(), offset);
            } else {
                self.offsets.entry(room.clone()).or_insert(offset);
            }
        };
        if let Some(offset) = answer.offset {
            note(&answer.room, offset);
        }
        for (room, offset) in &answer.offsets {
            note(room, *offset);
        }
    }

    /// The `since` to resume `room` with, if the client has been there.
    pub fn since(&self, room: &str) -> Option<Since> {
        let epoch = self.epoch.clone()?;
        if room == "tasks" {
            let offsets: BTreeMap<String, i64> = self
                .offsets
                .iter()
                .filter(|(r, _)| r.starts_with("project:"))
                .map(|(r, o)| (r.clone(), *o))
                .collect();
            return (!offsets.is_empty()).then_some(Since {
                epoch,
                offset: None,
                offsets,
            });
        }
        let offset = *self.offsets.get(room)?;
        Some(Since {
            epoch,
            offset: Some(offset),
            offsets: BTreeMap::new(),
        })
    }

    /// The last offset received in `room`.
    pub fn offset(&self, room: &str) -> Option<i64> {
        self.offsets.get(room).copied()
    }
}

/// How one connection ended.
enum Ended {
    /// Ctrl-C (or the caller's shutdown): the client closed with 1000.
    Stopped,
    /// The connection was lost or closed by the server; try again.
    Lost(String),
    /// The server turned the handshake away for now; try again when it says.
    Refused(Refusal),
}

/// A handshake the server answered 503 (or 429): not now. A node that is draining, at its
/// connection limit or in a reconnect storm says so, and how long to stay away, with
/// `Retry-After` (docs/protocol.md, "Handshake").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// `Retry-After` in seconds (the header; else the body's `details.retry_after_secs`), when
    /// the server sent one in seconds. Without it the normal backoff applies.
    pub retry_after_secs: Option<u64>,
    /// The body's `details.reason`: `overloaded`, `server_full`, `user_full`, `shutting_down`.
    pub reason: Option<String>,
    /// The body's `error.message`, else the status line.
    pub message: String,
}

impl Refusal {
    /// The refusal a failed handshake's response is, if it is one (503 or 429). The body is what
    /// arrived with the headers, so it may be missing; the header alone is enough.
    pub fn from_response(response: &Response<Option<Vec<u8>>>) -> Option<Self> {
        let status = response.status();
        if status != StatusCode::SERVICE_UNAVAILABLE && status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let body: Value = response
            .body()
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let error = &body["error"];
        let retry_after_secs = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .or_else(|| error["details"]["retry_after_secs"].as_u64());
        Some(Self {
            status: status.as_u16(),
            retry_after_secs,
            reason: error["details"]["reason"].as_str().map(str::to_owned),
            message: error["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| status.to_string()),
        })
    }

    /// How it is told in the client's news: `503 server_full: the server is at its…`.
    fn describe(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{} {reason}: {}", self.status, self.message),
            None => format!("{}: {}", self.status, self.message),
        }
    }
}

/// The client's own line saying it will try again in `delay`: for people, or (`json`) one JSON
/// object, `client.reconnecting`, with `retry_after_secs` and `refusal` (the server's reason)
/// when the server refused the handshake.
fn reconnecting_news(json: bool, lost: &str, refusal: Option<&Refusal>, delay: Duration) -> String {
    let reason = refusal.map_or_else(|| lost.to_owned(), Refusal::describe);
    if json {
        let mut news = json!({ "type": "client.reconnecting", "reason": reason, "retry_in_ms": delay.as_millis() as u64 });
        if let Some(refusal) = refusal {
            news["status"] = refusal.status.into();
            news["retry_after_secs"] = refusal.retry_after_secs.into();
            news["refusal"] = refusal.reason.clone().into();
        }
        return news.to_string();
    }
    let wait = format!("reconnecting in {:.1}s...", delay.as_secs_f64());
    match refusal {
        None => format!("Connection lost ({reason}); {wait}"),
        Some(Refusal {
            retry_after_secs: Some(secs),
            ..
        }) => format!("Refused by the server ({reason}); it asks for {secs} s; {wait}"),
        Some(_) => format!("Refused by the server ({reason}); {wait}"),
    }
}

/// Connects, prints, and reconnects until `stop` resolves. Returns only on `stop` or on an
/// error no retry can fix (a refused token).
pub async fn run(
    options: ClientOptions,
    mut out: impl Write,
    stop: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    tokio::pin!(stop);
    let mut backoff = Backoff::new(options.backoff_base, options.backoff_cap);
    let mut positions = Positions::default();
    // Read once: a CA file that cannot be used is an error no retry fixes.
    let connector = crate::tls::client_config(options.ca_cert.as_deref())?;
    loop {
        // connect_once watches `stop` itself, so it can close politely with 1000.
        let ended = connect_once(
            &options,
            connector.clone(),
            &mut out,
            &mut backoff,
            &mut positions,
            &mut stop,
        )
        .await?;
        let (reason, refusal) = match ended {
            Ended::Stopped => return Ok(()),
            Ended::Lost(reason) => (reason, None),
            Ended::Refused(refusal) => (String::new(), Some(refusal)),
        };
        // A refusal's `Retry-After` is honoured (with jitter); one without falls back on the
        // schedule. Neither resets it: only a connection that works does.
        let delay = match refusal.as_ref().and_then(|r| r.retry_after_secs) {
            Some(secs) => backoff.after_retry_after(Duration::from_secs(secs)),
            None => backoff.next_delay(),
        };
        // Scripts read one JSON object per line; the client's own news is one too.
        let news = reconnecting_news(options.json, &reason, refusal.as_ref(), delay);
        writeln!(out, "{news}")?;
        out.flush()?;
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// TCP, then TLS for `wss://`, then the inflating layer ([`crate::inflate`], above TLS: it reads
/// the WebSocket's own bytes), then the WebSocket handshake.
async fn open(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<
            crate::inflate::Inflating<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        >,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::error::{Error, UrlError};
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(Error::Url(UrlError::UnsupportedUrlScheme)),
    };
    let host = uri.host().ok_or(Error::Url(UrlError::NoHostName))?;
    // An IPv6 literal comes bracketed in a URI.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let _ = tcp.set_nodelay(true);
    let stream = if secure {
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| Error::Url(UrlError::NoHostName))?;
        let tls = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        tokio_tungstenite::MaybeTlsStream::Rustls(tls)
    } else {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp)
    };
    tokio_tungstenite::client_async_with_config(
        request,
        crate::inflate::Inflating::new(stream),
        None,
    )
    .await
}

async fn connect_once(
    options: &ClientOptions,
    connector: std::sync::Arc<rustls::ClientConfig>,
    out: &mut impl Write,
    backoff: &mut Backoff,
    positions: &mut Positions,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Ended, ClientError> {
    // No automatic subscriptions: the client subscribes to each room itself, from its own
    // position, so a live event can never overtake a replay.
    let separator = if options.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}auto=false", options.url);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::BadUrl(e.to_string()))?;
    let auth = HeaderValue::from_str(&format!("Bearer {}", options.token))
        .map_err(|_| ClientError::BadUrl("token".into()))?;
    request.headers_mut().insert("authorization", auth);
    if options.compression {
        request.headers_mut().insert(
            "sec-websocket-extensions",
            HeaderValue::from_static(crate::inflate::OFFER),
        );
    }
    let connecting = tokio::select! {
        _ = &mut *stop => return Ok(Ended::Stopped),
        connecting = open(request, connector) => connecting,
    };
    let (socket, _) = match connecting {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 401 => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return Err(ClientError::Unauthorized(body));
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            return Ok(match Refusal::from_response(&response) {
                Some(refusal) => Ended::Refused(refusal),
                None => {
                    Ended::Lost(tokio_tungstenite::tungstenite::Error::Http(response).to_string())
                }
            });
        }
        Err(err) => return Ok(Ended::Lost(err.to_string())),
    };
    let compressed = socket.get_ref().compressed();
    let (mut sink, mut stream) = socket.split();
    // The hello names the user, whose own room the client follows besides the rooms asked for
    // (or `tasks`, subscribed explicitly so the answer gives every project room's position).
    let hello = match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(Some(Err(err))) => return Ok(Ended::Lost(err.to_string())),
        _ => return Ok(Ended::Lost("no hello from the server".into())),
    };
    let hello_frame = serde_json::from_str::<ServerFrame>(&hello).ok();
    let user = match &hello_frame {
        Some(ServerFrame::Hello(h)) => h.user.clone(),
        _ => return Ok(Ended::Lost("the first frame was not a hello".into())),
    };
    if let Some(frame) = &hello_frame {
        positions.observe(frame);
    }
    if options.json {
        writeln!(out, "{hello}")?;
    }
    let mut rooms = options.rooms.clone();
    if rooms.is_empty() {
        rooms.push("tasks".into());
    }
    let own = format!("user:{user}");
    if !rooms.contains(&own) {
        rooms.push(own);
    }
    for (i, room) in rooms.iter().enumerate() {
        let mut command = json!({ "type": "subscribe", "room": room, "id": format!("sub-{i}") });
        if let Some(since) = positions.since(room) {
            command["since"] = serde_json::to_value(since).expect("positions serialize");
        }
        if let Err(err) = sink.send(Message::text(command.to_string())).await {
            return Ok(Ended::Lost(err.to_string()));
        }
    }
    if !options.json {
        if compressed {
            writeln!(out, "Connected to {} (events compressed)", options.url)?;
        } else {
            writeln!(out, "Connected to {}", options.url)?;
        }
        writeln!(out, "Waiting for events...")?;
        out.flush()?;
    }
    backoff.reset();
    loop {
        let message = tokio::select! {
            _ = &mut *stop => {
                let frame = CloseFrame { code: CloseCode::Normal, reason: "client exiting".into() };
                let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(frame)))).await;
                return Ok(Ended::Stopped);
            }
            message = stream.next() => message,
        };
        match message {
            None => return Ok(Ended::Lost("connection closed".into())),
            Some(Err(err)) => return Ok(Ended::Lost(err.to_string())),
            Some(Ok(Message::Text(text))) => {
                let frame = serde_json::from_str::<ServerFrame>(&text).ok();
                if let Some(frame) = &frame {
                    positions.observe(frame);
                }
                if options.json {
                    writeln!(out, "{text}")?;
                } else if let Some(frame) = &frame {
                    if let Some(lines) = describe(frame) {
                        writeln!(out, "{lines}")?;
                    }
                }
                out.flush()?;
            }
            Some(Ok(Message::Close(frame))) => {
                let reason = match frame {
                    Some(f) => format!("server closed with {}: {}", u16::from(f.code), f.reason),
                    None => "server closed".into(),
                };
                if let Some(code) = reason_code(&reason) {
                    if code == close::TOKEN_EXPIRED {
                        return Err(ClientError::Unauthorized("token expired".into()));
                    }
                }
                return Ok(Ended::Lost(reason));
            }
            Some(Ok(_)) => {}
        }
    }
}

fn reason_code(reason: &str) -> Option<u16> {
    reason
        .strip_prefix("server closed with ")?
        .split(':')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, retry_after: Option<&str>, body: &str) -> Response<Option<Vec<u8>>> {
        let mut builder = Response::builder().status(status);
        if let Some(value) = retry_after {
            builder = builder.header(RETRY_AFTER, value);
        }
        builder.body(Some(body.as_bytes().to_vec())).unwrap()
    }

    const BUSY: &str = r#"{"error":{"code":"unavailable","message":"the server is at its connection limit; retry later","details":{"reason":"server_full","retry_after_secs":3}}}"#;

    #[test]
    fn a_503_is_a_refusal_with_its_retry_after_and_reason() {
        let refusal = Refusal::from_response(&response(503, Some("2"), BUSY)).unwrap();
        assert_eq!(
            refusal,
            Refusal {
                status: 503,
                retry_after_secs: Some(2),
                reason: Some("server_full".into()),
                message: "the server is at its connection limit; retry later".into(),
            },
            "the header wins over the body"
        );
        // Without the header, the body's value; without either, none (the normal backoff).
        let body_only = Refusal::from_response(&response(503, None, BUSY)).unwrap();
        assert_eq!(body_only.retry_after_secs, Some(3));
        let bare = Refusal::from_response(&response(503, None, "")).unwrap();
        assert_eq!(bare.retry_after_secs, None);
        assert_eq!(bare.reason, None);
        assert_eq!(bare.message, "503 Service Unavailable");
        // An HTTP date is not read: the normal backoff.
        let dated = response(503, Some("Wed, 21 Oct 2026 07:28:00 GMT"), "");
        assert_eq!(
            Refusal::from_response(&dated).unwrap().retry_after_secs,
            None
        );
        assert!(Refusal::from_response(&response(429, Some("1"), "")).is_some());
        assert!(Refusal::from_response(&response(500, Some("1"), "")).is_none());
        assert!(Refusal::from_response(&response(404, None, "")).is_none());
    }

    #[test]
    fn the_news_of_a_refusal_names_the_retry_after_and_the_reason() {
        let refusal = Refusal::from_response(&response(503, Some("2"), BUSY)).unwrap();
        let delay = Duration::from_millis(2700);
        let news: Value =
            serde_json::from_str(&reconnecting_news(true, "", Some(&refusal), delay)).unwrap();
        assert_eq!(
            news,
            json!({
                "type": "client.reconnecting",
                "reason": "503 server_full: the server is at its connection limit; retry later",
                "retry_in_ms": 2700,
                "status": 503,
                "retry_after_secs": 2,
                "refusal": "server_full",
            })
        );
        assert_eq!(
            reconnecting_news(false, "", Some(&refusal), delay),
            "Refused by the server (503 server_full: the server is at its connection limit; \
             retry later); it asks for 2 s; reconnecting in 2.7s..."
        );
        // A lost connection reads as before.
        assert_eq!(
            reconnecting_news(false, "connection closed", None, Duration::from_millis(400)),
            "Connection lost (connection closed); reconnecting in 0.4s..."
        );
        let lost: Value = serde_json::from_str(&reconnecting_news(
            true,
            "connection closed",
            None,
            Duration::from_millis(400),
        ))
        .unwrap();
        assert_eq!(
            lost,
            json!({ "type": "client.reconnecting", "reason": "connection closed", "retry_in_ms": 400 })
        );
    }
}
