//! Entry points into the parsers that take bytes from the network, for the fuzz targets
//! (`fuzz/`, a crate of its own) and the property tests (`tests/properties.rs`).
//!
//! Why this module exists: the parsers live in private modules (`transport`, `api`) and work on
//! types that are not public (`Reader`, `Cursor`, `Envelope`…). A fuzz target is a separate
//! crate, so it needs public functions to call; each function here is a thin wrapper that calls
//! the real parser and hands back what it produced in plain public types, so that a target can
//! check invariants (round trips, limits, line numbers) and not only "no panic". Nothing here
//! re-implements a rule: a wrapper that did would fuzz itself instead of the server.
//!
//! This is not a stable API: it is `#[doc(hidden)]` and changes with the code it exposes.
//! `docs/fuzzing.md` says what each target checks.

use crate::api::import::parse::{parse_body, Format, Parsed};
use crate::auth::{Caller, Keys};
use crate::broker::envelope::{self, Envelope};
use crate::domain::{ProjectId, UserId};
use crate::hub::dispatch::{Dispatcher, Prepared};
use crate::hub::feed::Ephemeral;
use crate::hub::{EventSource, Hub, HubLimits};
use crate::state::AppState;
use crate::store::{ImportSpec, Store};
use crate::transport::access::Cursor;
use crate::transport::commands::{self, Connection};
use crate::transport::ws::handshake::Upgrade;
use crate::transport::ws::read::{Incoming, ReadError, Reader};
use axum::http::{HeaderName, HeaderValue, Request, Version};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use taskflow_protocol::{LoggedEvent, ServerFrame};
use tokio::io::{AsyncRead, ReadBuf};

// ---------------------------------------------------------------------------------------------
// WebSocket commands

/// A server with a real store (SQLite in a temporary directory) that runs client commands
/// through the same handler as a WebSocket connection (`transport::commands::handle`).
///
/// It holds project `p1` with members `alice` and `bob` (whom she may message); each [`CommandHarness::run`] opens a fresh hub
/// session, so one input cannot change how the next is judged (a subscription does not linger).
pub struct CommandHarness {
    runtime: tokio::runtime::Runtime,
    state: AppState,
    _dir: tempfile::TempDir,
}

impl CommandHarness {
    /// Opens the store and creates `p1` with `alice` and `bob` as its members.
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = crate::config::Config {
            database: format!("sqlite://{}", dir.path().join("fuzz.db").display()),
            admin_token: Some(crate::config::Secret::new("fuzz-admin")),
            jwt_secret: Some(crate::config::Secret::new("fuzz-secret")),
            ..crate::config::Config::default()
        };
        let state = runtime.block_on(async {
            let store = Store::connect(&config.database).await.expect("the store");
            let keys = Keys::load(&config, &store).await.expect("keys").keys;
            let alice = UserId::parse("alice", "user").expect("valid");
            let bob = UserId::parse("bob", "user").expect("valid");
            let p1 = ProjectId::parse("p1").expect("valid");
            store
                .create_project(&p1, "P1", &[alice, bob])
                .await
                .expect("project p1");
            let hub = Hub::new(HubLimits {
                queue: crate::hub::session::QueueLimits {
                    messages: 1024,
                    bytes: 1 << 20,
                },
                max_connections: 1 << 20,
                max_connections_per_user: 1 << 20,
                max_subscriptions: 16,
                connection_threads: 0,
                compression: None,
                memberships: Default::default(),
            });
            let dispatcher = Dispatcher::new(
                hub,
                Arc::new(crate::broker::StoreSource(store.clone())),
                Duration::from_millis(10),
                store.epoch().to_owned(),
                store.room_offsets().await.expect("offsets"),
            );
            AppState::new(store, keys, config, dispatcher)
        });
        Self {
            runtime,
            state,
            _dir: dir,
        }
    }

    /// Handles one text frame as `alice` (a member of `p1`) or as the admin, the way a WebSocket
    /// connection that never subscribed does; returns the frame the client would get back, if
    /// any.
    pub fn run(&self, text: &str, admin: bool) -> Option<ServerFrame> {
        let caller = if admin {
            Caller::admin()
        } else {
            Caller::new(
                UserId::parse("alice", "user").expect("valid"),
                crate::auth::Role::Member,
                u64::MAX,
            )
        };
        let projects: HashSet<ProjectId> = if admin {
            HashSet::new()
        } else {
            HashSet::from([ProjectId::parse("p1").expect("valid")])
        };
        let hub = self.state.hub().clone();
        let (session, _outbox) = hub.connect(
            caller.user().clone(),
            admin,
            projects,
            crate::hub::session::Transport::WebSocket,
        );
        let mut conn = Connection {
            caller,
            session: session.clone(),
            implicit_tasks: false,
        };
        let outcome = self
            .runtime
            .block_on(commands::handle(&self.state, &mut conn, text));
        hub.disconnect(&session);
        outcome.reply
    }
}

impl Default for CommandHarness {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames

/// What the frame reader handed out, in public types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole text message.
    Text(String),
    /// A whole binary message of this many bytes.
    Binary(usize),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame: code and reason, or none.
    Close(Option<(u16, String)>),
}

/// Everything the reader produced from one byte stream: the frames, then how it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRun {
    /// The messages and control frames, in order.
    pub frames: Vec<Frame>,
    /// `Some((close code, reason))` when the client broke the protocol or a limit; `None` when
    /// the stream simply ended.
    pub violation: Option<(u16, &'static str)>,
}

/// A byte stream that arrives in the chunks given (the rest at once once they run out), as a
/// socket delivers a peer's bytes in whatever pieces the network made.
struct Chunked<'a> {
    bytes: &'a [u8],
    chunks: std::slice::Iter<'a, usize>,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let chunk = self.chunks.next().copied().unwrap_or(usize::MAX).max(1);
        let n = chunk.min(buf.remaining()).min(self.bytes.len());
        let (now, later) = self.bytes.split_at(n);
        buf.put_slice(now);
        self.bytes = later;
        Poll::Ready(Ok(()))
    }
}

/// Runs the WebSocket frame reader (`transport::ws::read::Reader`, limit `max_message` bytes,
/// reads of `read_size`) over `bytes` arriving in `chunks`, until the stream ends or the reader
/// fails it.
pub fn ws_frames(bytes: &[u8], chunks: &[usize], max_message: usize, read_size: usize) -> FrameRun {
    let mut reader = Reader::new(max_message, read_size);
    let mut io = Chunked {
        bytes,
        chunks: chunks.iter(),
    };
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut frames = Vec::new();
    loop {
        match reader.poll_next(&mut io, &mut cx) {
            Poll::Ready(Ok(Some(incoming))) => frames.push(match incoming {
                Incoming::Text(text) => Frame::Text(text),
                Incoming::Binary(n) => Frame::Binary(n),
                Incoming::Ping(payload) => Frame::Ping(payload.to_vec()),
                Incoming::Pong => Frame::Pong,
                Incoming::Close(close) => Frame::Close(close),
            }),
            Poll::Ready(Ok(None)) => {
                return FrameRun {
                    frames,
                    violation: None,
                }
            }
            Poll::Ready(Err(ReadError::Violation(v))) => {
                return FrameRun {
                    frames,
                    violation: Some((v.code(), v.reason())),
                }
            }
            Poll::Ready(Err(ReadError::Io(e))) => unreachable!("in-memory reads do not fail: {e}"),
            Poll::Pending => unreachable!("in-memory reads are always ready"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cursors

/// Decodes an SSE `Last-Event-ID` / long-poll cursor: the epoch and the offset per room.
pub fn stream_cursor_decode(raw: &str) -> Option<(String, BTreeMap<String, i64>)> {
    Cursor::decode(raw).map(|c| (c.epoch, c.offsets))
}

/// Encodes an SSE / long-poll cursor as the server sends it.
pub fn stream_cursor_encode(epoch: &str, offsets: &BTreeMap<String, i64>) -> String {
    Cursor {
        epoch: epoch.to_owned(),
        offsets: offsets.clone(),
    }
    .encode()
}

// ---------------------------------------------------------------------------------------------
// Import

/// What the import parser reported for a body: each line (1-based) with its task or the reason
/// it is rejected, and whether the body could not be read to the end.
#[derive(Debug)]
pub struct ImportRun {
    /// Line number and verdict, in the order the parser sent them.
    pub lines: Vec<(u64, Result<ImportSpec, String>)>,
    /// Set when parsing stopped because the body could not be read.
    pub unreadable: Option<String>,
}

impl ImportRun {
    /// Whether the import handler would go on to write this body: every line valid, the body
    /// read to its end. Anything else is rejected whole (`POST /tasks/import` is atomic).
    pub fn acceptable(&self) -> bool {
        self.unreadable.is_none() && self.lines.iter().all(|(_, spec)| spec.is_ok())
    }
}

fn import(format: Format, body: &[u8]) -> ImportRun {
    // The parser sends at most one message per byte (a CSV record may end at any `\r` or `\n`),
    // plus one for a header or an unreadable body; room for all of them means it never waits
    // for this (single) thread to receive. The channel allocates as messages arrive.
    let capacity = body.len() + 2;
    let (tx, mut rx) = tokio::sync::mpsc::channel(capacity);
    parse_body(format, body, &tx);
    drop(tx);
    let mut run = ImportRun {
        lines: Vec::new(),
        unreadable: None,
    };
    while let Ok(parsed) = rx.try_recv() {
        match parsed {
            Parsed::Line { line, spec } => run.lines.push((line, spec)),
            Parsed::Unreadable(err) => run.unreadable = Some(err.to_string()),
        }
    }
    run
}

/// Parses an NDJSON import body (`POST /tasks/import`, `application/x-ndjson`).
pub fn import_ndjson(body: &[u8]) -> ImportRun {
    import(Format::Ndjson, body)
}

/// Parses a CSV import body (`POST /tasks/import`, `text/csv`).
pub fn import_csv(body: &[u8]) -> ImportRun {
    import(Format::Csv, body)
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens and JWTs

/// Keys that accept `admin_token` as the admin and verify user JWTs signed with `jwt_secret`.
pub fn keys(admin_token: &str, jwt_secret: &[u8]) -> Keys {
    Keys::from_secrets(admin_token, jwt_secret, 3600)
}

/// The token of a request whose `Authorization` header is `value` (`None` for a value that is
/// not a valid header value, like a client could not send, or for no bearer token).
pub fn bearer_token(value: &[u8]) -> Option<String> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let request = Request::get("/")
        .header(axum::http::header::AUTHORIZATION, value)
        .body(())
        .ok()?;
    let (parts, ()) = request.into_parts();
    crate::auth::bearer_token(&parts).map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// The upgrade request

/// Checks a WebSocket opening handshake (`transport::ws::handshake::Upgrade::from_parts`) with
/// these headers (pairs that are not a valid name and value are skipped, as hyper would refuse
/// them) and HTTP version (0: 0.9, 1: 1.0, 2: 1.1, 3: 2, other: 3).
///
/// A request built in memory has no connection to upgrade, so even a valid handshake ends in
/// `Err("NotUpgradable")`, after every header check passed; a refusal names its reason the way
/// `Rejection`'s `Debug` does (`"BadKey"`, `"HttpVersion(HTTP/1.0)"`…). The refusal's HTTP
/// answer is built too, as the server would.
pub fn upgrade_check(version: u8, headers: &[(&[u8], &[u8])]) -> Result<(), String> {
    let mut request = Request::get("/ws/tasks").version(match version {
        0 => Version::HTTP_09,
        1 => Version::HTTP_10,
        2 => Version::HTTP_11,
        3 => Version::HTTP_2,
        _ => Version::HTTP_3,
    });
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            request = request.header(name, value);
        }
    }
    let (mut parts, ()) = request.body(()).expect("valid parts").into_parts();
    match Upgrade::from_parts(&mut parts) {
        Ok(_) => Ok(()),
        Err(rejection) => {
            let name = format!("{rejection:?}");
            let _answer = rejection.into_error();
            Err(name)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The broker's envelopes

/// A decoded broker message, in public types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A committed event.
    Event {
        /// Sending node.
        node: String,
        /// Room.
        room: String,
        /// Offset in the room.
        offset: i64,
        /// Commit time.
        at_ms: i64,
        /// The project whose `tasks` subscribers get it too.
        tasks_of: Option<String>,
        /// Membership change: project, user, added.
        membership: Option<(String, String, bool)>,
        /// The task a `task.deleted` event deleted.
        deleted_task: Option<String>,
        /// The frame bytes.
        frame: Vec<u8>,
    },
    /// Presence or typing.
    Ephemeral {
        /// Sending node.
        node: String,
        /// Room.
        room: String,
        /// 1 joined, 2 left, 3 typing, 4 stats.
        kind: u8,
        /// Who.
        user: String,
        /// The frame bytes.
        frame: Vec<u8>,
    },
}

/// Decodes a message as a node receives it from Redis (`broker::envelope::decode`).
pub fn envelope_decode(bytes: &[u8]) -> Result<Decoded, String> {
    match envelope::decode(Bytes::copy_from_slice(bytes)).map_err(|e| e.to_string())? {
        Envelope::Event { node, room, event } => Ok(Decoded::Event {
            node,
            room,
            offset: event.offset,
            at_ms: event.at_ms,
            tasks_of: event.tasks_of.map(|p| p.to_string()),
            membership: event
                .membership
                .map(|(p, user, added)| (p.to_string(), user, added)),
            deleted_task: event.deleted_task.map(|id| id.to_string()),
            frame: event.bytes.to_vec(),
        }),
        Envelope::Ephemeral {
            node,
            room,
            kind,
            user,
            frame,
        } => Ok(Decoded::Ephemeral {
            node,
            room,
            kind: match kind {
                Ephemeral::Joined => 1,
                Ephemeral::Left => 2,
                Ephemeral::Typing => 3,
                Ephemeral::Stats => 4,
            },
            user,
            frame: frame.to_vec(),
        }),
    }
}

/// Encodes a decoded message again, as its sender would have (`broker::envelope::encode_*`).
pub fn envelope_encode(decoded: &Decoded) -> Vec<u8> {
    match decoded {
        Decoded::Event {
            node,
            room,
            offset,
            at_ms,
            tasks_of,
            membership,
            deleted_task,
            frame,
        } => {
            let project = |p: &str| ProjectId::parse(p).expect("decoded from a valid id");
            let event = Prepared {
                offset: *offset,
                tasks_of: tasks_of.as_deref().map(project),
                membership: membership
                    .as_ref()
                    .map(|(p, user, added)| (project(p), user.clone(), *added)),
                bytes: Bytes::copy_from_slice(frame),
                at_ms: *at_ms,
                deleted_task: deleted_task
                    .as_deref()
                    .map(|id| uuid::Uuid::parse_str(id).expect("decoded from a valid id")),
            };
            envelope::encode_event(node, room, &event).to_vec()
        }
        Decoded::Ephemeral {
            node,
            room,
            kind,
            user,
            frame,
        } => {
            let kind = match kind {
                1 => Ephemeral::Joined,
                2 => Ephemeral::Left,
                3 => Ephemeral::Typing,
                _ => Ephemeral::Stats,
            };
            envelope::encode_ephemeral(node, room, kind, user, &Bytes::copy_from_slice(frame))
                .to_vec()
        }
    }
}

/// A log with no events: gap fills find nothing.
struct EmptyLog;

impl EventSource for EmptyLog {
    fn events_after<'a>(
        &'a self,
        _room: &'a str,
        _after: i64,
        _limit: i64,
    ) -> BoxFuture<'a, Result<Vec<LoggedEvent>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn events_oldest<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Result<Option<i64>, String>> {
        Box::pin(async { Ok(None) })
    }

    fn last_offset<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Result<i64, String>> {
        Box::pin(async { Ok(0) })
    }

    fn last_offsets(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// A node's receiving side without Redis: messages go through the decoder into a real
/// dispatcher and hub, as the cluster subscriber hands them over (`broker::redis::subscriber`).
pub struct BrokerHarness {
    runtime: tokio::runtime::Runtime,
    dispatcher: Dispatcher,
}

impl BrokerHarness {
    /// A dispatcher over an empty log, nobody connected.
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dispatcher = runtime.block_on(async {
            let hub = Hub::new(HubLimits {
                queue: crate::hub::session::QueueLimits {
                    messages: 64,
                    bytes: 1 << 16,
                },
                max_connections: 16,
                max_connections_per_user: 16,
                max_subscriptions: 16,
                connection_threads: 0,
                compression: None,
                memberships: Default::default(),
            });
            Dispatcher::new(
                hub,
                Arc::new(EmptyLog),
                Duration::ZERO,
                "fuzz".into(),
                Vec::new(),
            )
        });
        Self {
            runtime,
            dispatcher,
        }
    }

    /// Receives one message from another node: decodes it and hands it on (or drops it, as the
    /// node does with an unreadable one); then lets whatever that started run a step.
    pub fn receive(&self, bytes: &[u8]) -> Result<(), String> {
        let _enter = self.runtime.enter();
        let result = match envelope::decode(Bytes::copy_from_slice(bytes)) {
            Ok(Envelope::Event { room, event, .. }) => {
                self.dispatcher.publish_prepared(&room, event);
                Ok(())
            }
            Ok(Envelope::Ephemeral {
                room,
                kind,
                user,
                frame,
                ..
            }) => {
                self.dispatcher.hub().relay(&room, kind, &user, &frame);
                Ok(())
            }
            Err(err) => Err(err.to_string()),
        };
        self.runtime.block_on(tokio::task::yield_now());
        result
    }

    /// Where the room's stream stands on this node (the last offset delivered), if it keeps the
    /// room's state.
    pub fn position(&self, room: &str) -> Option<i64> {
        self.dispatcher.position(room)
    }
}

impl Default for BrokerHarness {
    fn default() -> Self {
        Self::new()
    }
}

/// A client frame as RFC 6455 §5.2 lays it out, masked with `mask` (§5.3): what a browser sends.
/// For the property tests and the frame tests, which build their inputs from it.
pub fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65_536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}
