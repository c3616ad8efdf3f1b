//! One connection at a time, and the loop that replaces a lost one.

use crate::backoff::Backoff;
use crate::display::describe;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::future::Future;
use std::io::Write;
use std::time::Duration;
use taskflow_protocol::{close, ServerFrame};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What `taskflow client` was asked to do.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `ws://host:port/ws/tasks`.
    pub url: String,
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
    /// The URL is not a WebSocket URL.
    #[error("bad URL: {0}")]
    BadUrl(String),
}

/// How one connection ended.
enum Ended {
    /// Ctrl-C (or the caller's shutdown): the client closed with 1000.
    Stopped,
    /// The connection was lost or closed by the server; try again.
    Lost(String),
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
    loop {
        // connect_once watches `stop` itself, so it can close politely with 1000.
        let ended = connect_once(&options, &mut out, &mut backoff, &mut stop).await?;
        let reason = match ended {
            Ended::Stopped => return Ok(()),
            Ended::Lost(reason) => reason,
        };
        let delay = backoff.next_delay();
        writeln!(
            out,
            "Connection lost ({reason}); reconnecting in {:.1}s...",
            delay.as_secs_f64()
        )?;
        out.flush()?;
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn connect_once(
    options: &ClientOptions,
    out: &mut impl Write,
    backoff: &mut Backoff,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Ended, ClientError> {
    let mut request = options
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::BadUrl(e.to_string()))?;
    let auth = HeaderValue::from_str(&format!("Bearer {}", options.token))
        .map_err(|_| ClientError::BadUrl("token".into()))?;
    request.headers_mut().insert("authorization", auth);
    let connecting = tokio::select! {
        _ = &mut *stop => return Ok(Ended::Stopped),
        connecting = tokio_tungstenite::connect_async(request) => connecting,
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
        Err(err) => return Ok(Ended::Lost(err.to_string())),
    };
    let (mut sink, mut stream) = socket.split();
    for (i, room) in options.rooms.iter().enumerate() {
        let command = json!({ "type": "subscribe", "room": room, "id": format!("sub-{i}") });
        if let Err(err) = sink.send(Message::text(command.to_string())).await {
            return Ok(Ended::Lost(err.to_string()));
        }
    }
    if !options.json {
        writeln!(out, "Connected to {}", options.url)?;
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
                if options.json {
                    writeln!(out, "{text}")?;
                } else if let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) {
                    if let Some(lines) = describe(&frame) {
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
