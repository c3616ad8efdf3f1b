//! The fan-out subscribers' WebSocket, lean enough that one bench core takes what the server
//! sends to 10,000 subscribers without a backlog of its own: whatever the bench leaves waiting
//! is counted as the server's latency.
//!
//! tokio-tungstenite cost the bench about as much CPU per frame as the server spends sending it:
//! it zeroes its read buffer before every read (the one that finds nothing too), checks the
//! UTF-8 of every text, and registers wakers for both directions on every poll. Here the opening
//! handshake is hyper's (its upgrade hands back the raw socket and the bytes read past the
//! response), frames are parsed by tungstenite's own `FrameHeader`, and reads go into the
//! buffer's spare capacity without zeroing it.
//!
//! The server never fragments (docs/protocol.md), so a data frame is a whole message; a
//! fragment is refused as a protocol error. It compresses when both sides agree
//! (`permessage-deflate`, RFC 7692, offered unless `--no-compression`): always without context
//! takeover, so a compressed frame inflates on its own, with one inflate state per bench thread
//! rather than one per subscriber. What the bench sends goes uncompressed (allowed by RFC 7692).
//! Every byte read is counted ([`Wire::bytes_read`]): bytes on the wire per delivered message.

use crate::stream::Stream;
use crate::target::Target;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::io::Cursor;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

/// Spare room ensured before each read: a batch of a few dozen events per read at saturation.
const READ_CHUNK: usize = 16 * 1024;

/// How long the opening handshake and the server's hello may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a subscribe may wait for its reply (a resume's reply comes before its replay).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an opening handshake gave no connection.
#[derive(Debug, Clone)]
pub enum OpenError {
    /// The server said "not now" (see [`NotNow`]): a client that waits and tries again may get
    /// in.
    NotNow(NotNow),
    /// Anything else, in words (`crate::join::failure_reason` names it).
    Failed(String),
}

/// A handshake refused with 503 (or 429) and `Retry-After`: the node is in a storm, at a
/// connection limit or draining, and says when to come back (docs/protocol.md).
#[derive(Debug, Clone)]
pub struct NotNow {
    /// The answer's `details.reason` (`overloaded`, `server_full`, `user_full`,
    /// `shutting_down`), else its error code (`too_many_connections`, `rate_limited`).
    pub reason: String,
    /// How long the server asks the client to wait.
    pub retry_after: Duration,
    /// The refusal in words, starting like any other refused upgrade (`upgrade refused: 503 …`).
    pub message: String,
}

impl From<String> for OpenError {
    fn from(message: String) -> Self {
        OpenError::Failed(message)
    }
}

impl OpenError {
    /// The error in words.
    pub fn message(&self) -> &str {
        match self {
            OpenError::NotNow(not_now) => &not_now.message,
            OpenError::Failed(message) => message,
        }
    }
}

/// The answer to a `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// The live stream starts after this offset; a resume's missed events up to it come first.
    pub offset: i64,
    /// The store's epoch, to resume with.
    pub epoch: String,
    /// `false` when a resume could not be honoured (nothing was replayed).
    pub recovered: bool,
}

/// One subscriber's connection.
pub struct Wire {
    tcp: Stream,
    /// Bytes read and not yet taken as frames.
    buf: BytesMut,
    /// How the server ended the connection, once it has: its close frame's code and reason
    /// (`None` for an empty close), for error messages.
    closed: Option<Option<(u16, String)>>,
    /// The server agreed to permessage-deflate.
    deflate: bool,
    /// Bytes read from the socket (frames, headers included), after the handshake.
    bytes_read: u64,
}

/// What the bench offers: the server takes no context (it always does) and neither does the
/// client (it sends nothing compressed).
const OFFER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Distinct compressed payloads whose inflated form a thread keeps, in each of two generations:
/// at saturation the last subscriber reads an event a couple of seconds after the first, several
/// hundred events later, and all of those must still be found.
const INFLATED_KEPT: usize = 8192;

/// Compressed payload → inflated, in two generations: when the young one is full it becomes the
/// old one (the previous old one is dropped), so an event seen recently is always found, and
/// memory stays at most two generations.
#[derive(Default)]
struct Inflated {
    young: rapidhash::RapidHashMap<Bytes, Bytes>,
    old: rapidhash::RapidHashMap<Bytes, Bytes>,
}

impl Inflated {
    fn get(&self, payload: &[u8]) -> Option<Bytes> {
        self.young
            .get(payload)
            .or_else(|| self.old.get(payload))
            .cloned()
    }

    fn insert(&mut self, payload: &[u8], inflated: Bytes) {
        if self.young.len() >= INFLATED_KEPT {
            self.old = std::mem::take(&mut self.young);
        }
        // A copy: the payload is a slice of the socket's read buffer, which it would keep.
        self.young.insert(Bytes::copy_from_slice(payload), inflated);
    }
}

thread_local! {
    /// One inflate state per thread, reset for every message (the server takes no context).
    static INFLATE: std::cell::RefCell<flate2::Decompress> =
        std::cell::RefCell::new(flate2::Decompress::new(false));
    /// The server compresses each event once and sends the same bytes to every subscriber that
    /// negotiated compression, so a bench thread reading 10,000 subscribers inflates each event
    /// once, not 10,000 times: inflating every copy would make the bench, not the server, the
    /// bottleneck at saturation. The lookup hashes with rapidhash: SipHash over every copy's
    /// bytes cost the single bench core more than the rest of reading it.
    static INFLATED: std::cell::RefCell<Inflated> = std::cell::RefCell::new(Inflated::default());
}

/// Inflates a message the server compressed, or finds it inflated already.
fn inflate(payload: Bytes) -> Result<Bytes, String> {
    if let Some(done) = INFLATED.with_borrow(|kept| kept.get(&payload)) {
        return Ok(done);
    }
    let inflated = inflate_once(&payload)?;
    INFLATED.with_borrow_mut(|kept| kept.insert(&payload, inflated.clone()));
    Ok(inflated)
}

/// Inflates one message (RFC 7692 §7.2.2: the sync-flush tail put back).
fn inflate_once(payload: &[u8]) -> Result<Bytes, String> {
    INFLATE.with_borrow_mut(|state| {
        state.reset(false);
        let mut out = Vec::with_capacity(payload.len() * 4 + 64);
        for input in [payload, &[0, 0, 0xff, 0xff][..]] {
            let mut input = input;
            loop {
                if out.len() == out.capacity() {
                    out.reserve(out.capacity());
                }
                let before = state.total_in();
                state
                    .decompress_vec(input, &mut out, flate2::FlushDecompress::Sync)
                    .map_err(|e| format!("bad compressed frame: {e}"))?;
                input = &input[(state.total_in() - before) as usize..];
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
            }
        }
        Ok(Bytes::from(out))
    })
}

impl Wire {
    /// Upgrades `tcp` (over TLS if the target speaks it) to a WebSocket as the holder of
    /// `token` and waits for the server's hello.
    pub async fn open(tcp: TcpStream, target: &Target, token: &str) -> Result<Self, OpenError> {
        tokio::time::timeout(OPEN_TIMEOUT, async {
            let stream = target.secure(tcp).await?;
            Self::handshake(stream, target, token).await
        })
        .await
        .map_err(|_| OpenError::Failed("handshake timed out".to_owned()))?
    }

    async fn handshake(tcp: Stream, target: &Target, token: &str) -> Result<Self, OpenError> {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        // The connection future drives the request; it ends once the response hands the socket
        // over to the upgrade.
        let conn = tokio::spawn(conn.with_upgrades());
        let key = generate_key();
        let request = Request::get(target.ws_path())
            .header(header::HOST, target.host())
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, &key)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let request = if target.compression {
            request.header(header::SEC_WEBSOCKET_EXTENSIONS, OFFER)
        } else {
            request
        };
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(refusal(response).await);
        }
        let accept = derive_accept_key(key.as_bytes());
        if response.headers().get(header::SEC_WEBSOCKET_ACCEPT)
            != Some(&HeaderValue::from_str(&accept).map_err(|e| e.to_string())?)
        {
            return Err(OpenError::Failed("wrong Sec-WebSocket-Accept".into()));
        }
        let deflate = response
            .headers()
            .get(header::SEC_WEBSOCKET_EXTENSIONS)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("permessage-deflate"));
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.await;
        let parts = upgraded
            .downcast::<TokioIo<Stream>>()
            .map_err(|_| "the upgrade did not give back the socket".to_owned())?;
        let mut wire = Self {
            tcp: parts.io.into_inner(),
            buf: BytesMut::from(&parts.read_buf[..]),
            closed: None,
            deflate,
            bytes_read: parts.read_buf.len() as u64,
        };
        match wire.next_text().await? {
            Some(_) => Ok(wire),
            None => Err(OpenError::Failed("no hello".into())),
        }
    }

    /// Subscribes to `room`, resuming after `since` (epoch, offset) when given, and waits for
    /// the reply; frames before it are skipped (none of them is of `room`: the server answers
    /// before it replays or forwards anything of the room).
    pub async fn subscribe(
        &mut self,
        room: &str,
        since: Option<(&str, i64)>,
    ) -> Result<Subscribed, String> {
        let mut command = json!({ "type": "subscribe", "room": room, "id": "s" });
        if let Some((epoch, offset)) = since {
            command["since"] = json!({ "epoch": epoch, "offset": offset });
        }
        self.send_text(&command.to_string()).await?;
        loop {
            let text = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, self.next_text()).await {
                Ok(Ok(Some(text))) => text,
                Ok(Err(err)) => return Err(format!("subscribe: {err}")),
                Ok(Ok(None)) => return Err(format!("no answer to subscribe: {}", self.ending())),
                Err(_) => {
                    return Err(format!(
                        "no answer to subscribe within {} s",
                        SUBSCRIBE_TIMEOUT.as_secs()
                    ))
                }
            };
            let value: serde_json::Value =
                serde_json::from_slice(&text).map_err(|e| e.to_string())?;
            if value["type"] != "reply" || value["id"] != "s" {
                continue;
            }
            let result = &value["result"];
            return match result["offset"].as_i64() {
                Some(offset) if value["ok"] == true => Ok(Subscribed {
                    offset,
                    epoch: result["epoch"].as_str().unwrap_or_default().to_owned(),
                    recovered: result["recovered"].as_bool().unwrap_or(true),
                }),
                _ => Err(format!(
                    "subscribe refused: {}",
                    String::from_utf8_lossy(&text)
                )),
            };
        }
    }

    /// Sends one text message (masked, as a client must).
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.send(Frame::message(
            Bytes::copy_from_slice(text.as_bytes()),
            OpCode::Data(Data::Text),
            true,
        ))
        .await
    }

    /// The next text message; answers pings on the way. `None` once the server closed.
    /// Not cancel-safe while it answers a ping (a pong cut short would corrupt the stream), so
    /// drop the wire after cancelling it.
    pub async fn next_text(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            let Some((opcode, compressed, payload)) = self.frame()? else {
                self.buf.reserve(READ_CHUNK);
                match self.tcp.read_buf(&mut self.buf).await {
                    Ok(0) => return Ok(None),
                    Ok(n) => {
                        self.bytes_read += n as u64;
                        continue;
                    }
                    Err(err) => return Err(err.to_string()),
                }
            };
            match opcode {
                OpCode::Data(Data::Text) if compressed => return inflate(payload).map(Some),
                OpCode::Data(Data::Text) => return Ok(Some(payload)),
                OpCode::Control(Control::Ping) => self.send(Frame::pong(payload)).await?,
                OpCode::Control(Control::Close) => {
                    self.closed = Some((payload.len() >= 2).then(|| {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        (code, String::from_utf8_lossy(&payload[2..]).into_owned())
                    }));
                    let _ = self.send(Frame::close(None)).await;
                    return Ok(None);
                }
                OpCode::Data(Data::Binary) | OpCode::Control(Control::Pong) => {}
                other => return Err(format!("unexpected frame {other:?}")),
            }
        }
    }

    /// How the server ended the connection, in words: its close frame, or the end of the stream.
    pub fn ending(&self) -> String {
        match &self.closed {
            Some(Some((code, reason))) => format!("closed by the server with {code} {reason:?}"),
            Some(None) => "closed by the server (empty close frame)".into(),
            None => "the connection ended without a close frame".into(),
        }
    }

    /// Whether the server agreed to compress.
    pub fn compressed(&self) -> bool {
        self.deflate
    }

    /// Bytes read from the socket since the handshake: frames as they travelled, compressed or
    /// not, headers included.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Takes one whole frame off the buffer, if it holds one: its opcode, whether it is
    /// compressed (RSV1), and its payload.
    fn frame(&mut self) -> Result<Option<(OpCode, bool, Bytes)>, String> {
        let mut cursor = Cursor::new(&self.buf[..]);
        let Some((header, len)) = FrameHeader::parse(&mut cursor).map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let start = cursor.position() as usize;
        let len = usize::try_from(len).map_err(|_| "frame too long".to_owned())?;
        if header.mask.is_some() || !header.is_final {
            return Err("masked or fragmented frame from the server".into());
        }
        if header.rsv2 || header.rsv3 || (header.rsv1 && !self.deflate) {
            return Err("reserved bit set by the server".into());
        }
        if self.buf.len() < start + len {
            return Ok(None);
        }
        self.buf.advance(start);
        Ok(Some((
            header.opcode,
            header.rsv1,
            self.buf.split_to(len).freeze(),
        )))
    }

    async fn send(&mut self, mut frame: Frame) -> Result<(), String> {
        frame.header_mut().mask = Some(rand::random());
        let mut out = Vec::with_capacity(frame.len());
        frame.format(&mut out).map_err(|e| e.to_string())?;
        self.tcp.write_all(&out).await.map_err(|e| e.to_string())?;
        // TLS may keep what it took in its own buffer; TCP flushes nothing.
        self.tcp.flush().await.map_err(|e| e.to_string())
    }
}

/// A refused upgrade as an error: a "not now" when the answer is 503 or 429 with a
/// `Retry-After` in seconds, its reason read from the JSON body; otherwise a plain failure.
async fn refusal(response: hyper::Response<hyper::body::Incoming>) -> OpenError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let message = format!("upgrade refused: {status}");
    let (Some(secs), StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) =
        (retry_after, status)
    else {
        return OpenError::Failed(message);
    };
    // An error body is a few hundred bytes; a larger or slow one is not worth waiting for.
    let body = tokio::time::timeout(
        Duration::from_secs(5),
        Limited::new(response.into_body(), 64 * 1024).collect(),
    )
    .await;
    let body = match body {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    };
    let reason = busy_reason(&body).unwrap_or_else(|| format!("status_{}", status.as_u16()));
    OpenError::NotNow(NotNow {
        message: format!("{message} ({reason}, Retry-After {secs} s)"),
        reason,
        retry_after: Duration::from_secs(secs),
    })
}

/// `error.details.reason` of an error body, else `error.code`.
fn busy_reason(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = &value["error"];
    error["details"]["reason"]
        .as_str()
        .or_else(|| error["code"].as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::busy_reason;

    #[test]
    fn a_busy_answer_names_its_reason_else_its_code() {
        let busy = br#"{"error":{"code":"unavailable","message":"m","details":{"reason":"server_full","retry_after_secs":3}}}"#;
        assert_eq!(busy_reason(busy).as_deref(), Some("server_full"));
        let per_ip = br#"{"error":{"code":"too_many_connections","message":"m"}}"#;
        assert_eq!(busy_reason(per_ip).as_deref(), Some("too_many_connections"));
        assert_eq!(busy_reason(b"not json"), None);
    }
}
