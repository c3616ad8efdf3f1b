//! One connection at a time, and the loop that replaces a lost one.

use crate::backoff::Backoff;
use crate::display::describe;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::time::Duration;
use taskflow_protocol::{close, ServerFrame, Since, Subscribed};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
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
    let connector = Some(tokio_tungstenite::Connector::Rustls(
        crate::tls::client_config(options.ca_cert.as_deref())?,
    ));
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
        let reason = match ended {
            Ended::Stopped => return Ok(()),
            Ended::Lost(reason) => reason,
        };
        let delay = backoff.next_delay();
        if options.json {
            // Scripts read one JSON object per line; the client's own news is one too.
            let news = json!({ "type": "client.reconnecting", "reason": reason, "retry_in_ms": delay.as_millis() as u64 });
            writeln!(out, "{news}")?;
        } else {
            writeln!(
                out,
                "Connection lost ({reason}); reconnecting in {:.1}s...",
                delay.as_secs_f64()
            )?;
        }
        out.flush()?;
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn connect_once(
    options: &ClientOptions,
    connector: Option<tokio_tungstenite::Connector>,
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
    let connecting = tokio::select! {
        _ = &mut *stop => return Ok(Ended::Stopped),
        connecting = tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector) => connecting,
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
