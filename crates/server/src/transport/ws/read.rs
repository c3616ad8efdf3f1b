//! The read side of a WebSocket connection: the client's bytes parsed into frames, checked
//! against RFC 6455 §5, unmasked and joined into messages.
//!
//! Why not tungstenite's `WebSocket` for this, as before: it owns the whole stream and writes to
//! it on its own (it answers pings and close frames from inside `read`), which made it a second
//! writer on a socket whose broadcast frames we write ourselves. Its closing handshake then
//! depended on which writer flushed last, and a client's close went unanswered. Here the reader
//! only reads: pings and closes come out as [`Incoming`] values, and the connection's one writer
//! (`write`) frames every answer. Tungstenite still parses each frame header
//! ([`FrameHeader::parse`]); what is ours is what follows from it: the rules below, tested
//! against the RFC's cases in this module and on the wire in `tests/realtime/conformance.rs`.
//!
//! - Every client frame must be masked (§5.1), no reserved bit may be set (§5.2) but RSV1 on
//!   the first frame of a data message when `permessage-deflate` was negotiated (RFC 7692 §6:
//!   never on a control frame or a continuation), no reserved opcode used. A compressed message
//!   is inflated fragment by fragment (`inflate`), its limit counted on the inflated size, and
//!   invalid DEFLATE data fails it with 1007.
//! - Control frames carry at most 125 bytes and are never fragmented (§5.5); they may arrive
//!   between the fragments of a message.
//! - A continuation needs a message to continue; a new message may not start before the last one
//!   ended (§5.4).
//! - Text must be UTF-8 (§8.1); a fragment that cannot be the start of valid UTF-8 fails at once,
//!   not at the end of the message.
//! - A message longer than the limit fails before it is buffered past the limit.
//! - A close frame carries nothing, or a code that may appear on the wire (§7.4) and a UTF-8
//!   reason.
//!
//! An idle connection holds no buffer: between frames the socket is read onto the stack, only
//! the bytes that arrived are kept, and the input buffer is freed once they are parsed.

use super::inflate::Inflater;
use super::Deflate;
use bytes::{Buf, Bytes, BytesMut};
use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use taskflow_protocol::close;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// The longest control frame payload (§5.5).
const MAX_CONTROL: u64 = 125;

/// The most one read between frames takes, onto the stack (`ws_read_buffer_bytes` is capped
/// at this).
const STACK_READ: usize = 8 * 1024;

/// A message, or a control frame, from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A whole text message, valid UTF-8.
    Text(String),
    /// A whole binary message, of this many bytes (the protocol has no use for its content).
    Binary(usize),
    /// A ping, with the payload the pong must carry back.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The client's close frame: its code and reason, or nothing (an empty close).
    Close(Option<(u16, String)>),
}

/// A frame or message that breaks the protocol or a limit: the connection fails with
/// [`Violation::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    /// Broken framing (§5): the reason names which rule.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message that is not UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A message over the configured limit.
    #[error("message larger than {0} bytes")]
    TooBig(usize),
    /// A compressed message that does not inflate.
    #[error("compressed message is not valid DEFLATE data")]
    BadDeflate,
}

impl Violation {
    /// The close code to fail the connection with (§7.4.1).
    pub(crate) fn code(&self) -> u16 {
        match self {
            Violation::Protocol(_) => close::PROTOCOL_ERROR,
            Violation::InvalidUtf8 | Violation::BadDeflate => close::INVALID_PAYLOAD,
            Violation::TooBig(_) => close::MESSAGE_TOO_BIG,
        }
    }

    /// The close frame's reason: short, fixed text.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Violation::Protocol(why) => why,
            Violation::InvalidUtf8 => "text message is not valid UTF-8",
            Violation::TooBig(_) => "message too big",
            Violation::BadDeflate => "invalid compressed data",
        }
    }
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The socket failed (reset, closed mid-frame counts as end of input instead).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The client broke the protocol.
    #[error(transparent)]
    Violation(#[from] Violation),
}

/// A message whose first fragments have arrived.
#[derive(Debug)]
struct Fragmented {
    /// Text (checked as UTF-8) or binary.
    text: bool,
    /// Compressed (RSV1 on its first frame): each fragment is inflated onto `payload`.
    compressed: bool,
    /// The payload so far, unmasked.
    payload: Vec<u8>,
    /// How much of `payload` is known to be valid UTF-8; the rest is an incomplete sequence.
    checked: usize,
}

/// The read side of one connection.
#[derive(Debug)]
pub(crate) struct Reader {
    /// Bytes read and not parsed yet: at most the frame being received.
    input: BytesMut,
    /// The fragmented message in progress, if any.
    fragmented: Option<Box<Fragmented>>,
    /// How many bytes the frame being received needs in all, once its header is known.
    wanted: usize,
    /// The largest message, in bytes.
    max_message: usize,
    /// How much one read asks the socket for, at least.
    read_size: usize,
    /// `permessage-deflate`, when the handshake negotiated it.
    inflater: Option<Inflater>,
}

impl Reader {
    /// A reader that fails messages over `max_message` bytes and reads `read_size` bytes at a
    /// time (more when a frame needs more).
    pub(crate) fn new(max_message: usize, read_size: usize) -> Self {
        Self {
            input: BytesMut::new(),
            fragmented: None,
            wanted: 0,
            max_message,
            read_size: read_size.max(16),
            inflater: None,
        }
    }

    /// With `permessage-deflate` negotiated: the longest frame the client takes compressed.
    pub(crate) fn deflated_up_to(&self) -> Option<usize> {
        self.inflater.as_ref().map(Inflater::sends_up_to)
    }

    /// Accepts compressed messages, as the handshake negotiated.
    pub(crate) fn with_deflate(mut self, deflate: Deflate) -> Self {
        self.inflater = Some(Inflater::new(deflate));
        self
    }

    /// The next message or control frame; `Ok(None)` when the client closed its side of the
    /// stream. Reads only when what is buffered holds nothing whole.
    pub(crate) fn poll_next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Incoming>, ReadError>> {
        loop {
            if let Some(incoming) = self.parse()? {
                return Poll::Ready(Ok(Some(incoming)));
            }
            let read = if self.input.is_empty() {
                // Between frames (almost always: an idle connection waits here), read onto the
                // stack and keep only what arrived, so that waiting holds no buffer.
                let mut stack = [0u8; STACK_READ];
                let mut buf = ReadBuf::new(&mut stack[..self.read_size.min(STACK_READ)]);
                ready!(Pin::new(&mut *io).poll_read(cx, &mut buf)).map(|()| {
                    self.input.extend_from_slice(buf.filled());
                    buf.filled().len()
                })
            } else {
                // Within a frame: read into its buffer, as much as it still needs.
                let want = self.wanted.saturating_sub(self.input.len());
                self.input.reserve(want.max(self.read_size));
                ready!(tokio_util::io::poll_read_buf(
                    Pin::new(&mut *io),
                    cx,
                    &mut self.input
                ))
            };
            match read {
                Ok(0) => return Poll::Ready(Ok(None)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    /// Parses what is buffered: the next whole message or control frame, or `None` if more bytes
    /// are needed. Frames that only continue a message are consumed on the way.
    fn parse(&mut self) -> Result<Option<Incoming>, Violation> {
        loop {
            let mut cursor = Cursor::new(&self.input[..]);
            let parsed = FrameHeader::parse(&mut cursor)
                .map_err(|_| Violation::Protocol("reserved opcode"))?;
            let Some((header, length)) = parsed else {
                self.release();
                return Ok(None);
            };
            let head = usize::try_from(cursor.position()).expect("a header is a few bytes");
            let mask = self.check(&header, length)?;
            let length = usize::try_from(length).expect("checked against the limit");
            self.wanted = head + length;
            if self.input.len() < self.wanted {
                return Ok(None);
            }
            self.input.advance(head);
            let mut payload = self.input.split_to(length);
            self.wanted = 0;
            unmask(&mut payload, mask);
            if let Some(incoming) = self.frame(&header, payload)? {
                self.release();
                return Ok(Some(incoming));
            }
        }
    }

    /// The checks a frame's header allows before its payload arrives; returns its mask.
    fn check(&self, header: &FrameHeader, length: u64) -> Result<[u8; 4], Violation> {
        if header.rsv2 || header.rsv3 || (header.rsv1 && self.inflater.is_none()) {
            return Err(Violation::Protocol(
                "reserved bit set; no extension negotiated",
            ));
        }
        if header.rsv1 {
            match header.opcode {
                OpCode::Control(_) => {
                    return Err(Violation::Protocol("RSV1 set on a control frame"))
                }
                OpCode::Data(Data::Continue) => {
                    return Err(Violation::Protocol("RSV1 set on a continuation frame"))
                }
                OpCode::Data(_) => {}
            }
        }
        let Some(mask) = header.mask else {
            return Err(Violation::Protocol("client frames must be masked"));
        };
        match header.opcode {
            OpCode::Control(_) => {
                if !header.is_final {
                    return Err(Violation::Protocol("fragmented control frame"));
                }
                if length > MAX_CONTROL {
                    return Err(Violation::Protocol("control frame longer than 125 bytes"));
                }
            }
            OpCode::Data(Data::Continue) if self.fragmented.is_none() => {
                return Err(Violation::Protocol(
                    "continuation without a message to continue",
                ));
            }
            OpCode::Data(Data::Continue) => {}
            OpCode::Data(_) if self.fragmented.is_some() => {
                return Err(Violation::Protocol(
                    "new message before the fragmented one ended",
                ));
            }
            OpCode::Data(_) => {}
        }
        if let OpCode::Data(_) = header.opcode {
            let so_far = self.fragmented.as_ref().map_or(0, |f| f.payload.len());
            let room = self.max_message.saturating_sub(so_far) as u64;
            if length > room {
                return Err(Violation::TooBig(self.max_message));
            }
        }
        Ok(mask)
    }

    /// One whole, unmasked frame: a message or control frame to hand out, or `None` for a
    /// fragment that only extends a message.
    fn frame(
        &mut self,
        header: &FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<Incoming>, Violation> {
        let text = match header.opcode {
            OpCode::Control(Control::Ping) => return Ok(Some(Incoming::Ping(payload.freeze()))),
            OpCode::Control(Control::Pong) => return Ok(Some(Incoming::Pong)),
            OpCode::Control(Control::Close) => return close_payload(&payload).map(Some),
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                return Err(Violation::Protocol("reserved opcode"))
            }
            OpCode::Data(Data::Text) => true,
            OpCode::Data(Data::Binary) => false,
            OpCode::Data(Data::Continue) => {
                let fragmented = self.fragmented.as_mut().expect("checked");
                if fragmented.compressed {
                    let inflater = self
                        .inflater
                        .as_mut()
                        .expect("compressed only if negotiated");
                    inflater.fragment(
                        &payload,
                        header.is_final,
                        &mut fragmented.payload,
                        self.max_message,
                    )?;
                } else {
                    fragmented.payload.extend_from_slice(&payload);
                }
                fragmented.check_utf8(header.is_final)?;
                if !header.is_final {
                    return Ok(None);
                }
                let whole = *self.fragmented.take().expect("checked");
                return Ok(Some(whole.into_message()));
            }
        };
        let mut fragmented = if header.rsv1 {
            let inflater = self.inflater.as_mut().expect("checked");
            let mut inflated = Vec::new();
            inflater.fragment(&payload, header.is_final, &mut inflated, self.max_message)?;
            Fragmented {
                text,
                compressed: true,
                payload: inflated,
                checked: 0,
            }
        } else {
            Fragmented {
                text,
                compressed: false,
                payload: Vec::from(payload),
                checked: 0,
            }
        };
        fragmented.check_utf8(header.is_final)?;
        if header.is_final {
            return Ok(Some(fragmented.into_message()));
        }
        self.fragmented = Some(Box::new(fragmented));
        Ok(None)
    }

    /// Frees the input buffer once nothing is left in it: idle connections hold none.
    fn release(&mut self) {
        if self.input.is_empty() && self.input.capacity() > 0 {
            self.input = BytesMut::new();
        }
    }
}

impl Fragmented {
    /// Checks the UTF-8 of text received so far: a sequence may stay incomplete only while more
    /// fragments follow.
    fn check_utf8(&mut self, last: bool) -> Result<(), Violation> {
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.payload[self.checked..]) {
            Ok(_) => self.checked = self.payload.len(),
            Err(e) if e.error_len().is_none() && !last => self.checked += e.valid_up_to(),
            Err(_) => return Err(Violation::InvalidUtf8),
        }
        Ok(())
    }

    fn into_message(self) -> Incoming {
        if self.compressed {
            crate::hub::metrics::inflated();
        }
        if self.text {
            Incoming::Text(String::from_utf8(self.payload).expect("checked as UTF-8"))
        } else {
            Incoming::Binary(self.payload.len())
        }
    }
}

/// XORs a client frame's payload with its mask (§5.3).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// A close frame's payload: empty, or a code that may be sent and a UTF-8 reason (§5.5.1, §7.4).
fn close_payload(payload: &[u8]) -> Result<Incoming, Violation> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(Violation::Protocol("close frame with a one-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !code_may_be_sent(code) {
                return Err(Violation::Protocol("close code that may not be sent"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| Violation::Protocol("close reason is not UTF-8"))?;
            Ok(Incoming::Close(Some((code, reason.to_owned()))))
        }
    }
}

/// Whether a close code may appear in a close frame (RFC 6455 §7.4, and the IANA registry it
/// set up): 1000–1003 and 1007–1014 are defined for the wire, 3000–4999 are for libraries and
/// applications; 1004 is reserved, 1005, 1006 and 1015 stand for "no frame" and must never be
/// sent, and the rest of 0–2999 is unassigned.
pub(super) fn code_may_be_sent(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        crate::fuzzing::client_frame(first, payload, [0x37, 0xfa, 0x21, 0x3d])
    }

    const TEXT: u8 = 0x81;
    const TEXT_START: u8 = 0x01;
    const CONTINUE: u8 = 0x00;
    const CONTINUE_END: u8 = 0x80;
    const BINARY: u8 = 0x82;
    const CLOSE: u8 = 0x88;
    const PING: u8 = 0x89;
    const PONG: u8 = 0x8a;

    /// Everything `bytes` parses into, fed in chunks of `chunk` bytes.
    fn parse_all(bytes: &[u8], chunk: usize) -> Result<Vec<Incoming>, Violation> {
        let mut reader = Reader::new(1000, 64);
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            reader.input.extend_from_slice(piece);
            while let Some(incoming) = reader.parse()? {
                out.push(incoming);
            }
        }
        Ok(out)
    }

    fn parse(bytes: &[u8]) -> Result<Vec<Incoming>, Violation> {
        let whole = parse_all(bytes, bytes.len().max(1));
        for chunk in [1, 2, 3, 7] {
            assert_eq!(
                parse_all(bytes, chunk),
                whole,
                "fed {chunk} bytes at a time"
            );
        }
        whole
    }

    /// Raw DEFLATE of `text` with a sync flush, the tail removed (as a client sends it), from
    /// `compressor` (which keeps its context unless reset).
    fn deflate_with(compressor: &mut flate2::Compress, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 64);
        compressor
            .compress_vec(text, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&crate::hub::deflated::TAIL));
        out.truncate(out.len() - 4);
        out
    }

    fn deflate(text: &[u8]) -> Vec<u8> {
        deflate_with(
            &mut flate2::Compress::new(flate2::Compression::default(), false),
            text,
        )
    }

    fn deflating(no_context_takeover: bool) -> Reader {
        Reader::new(1000, 64).with_deflate(Deflate {
            server_window_bits: 15,
            client_no_context_takeover: no_context_takeover,
        })
    }

    /// Everything `bytes` parses into on a connection that negotiated permessage-deflate, fed
    /// in chunks of `chunk` bytes.
    fn parse_deflating(
        bytes: &[u8],
        chunk: usize,
        takeover: bool,
    ) -> Result<Vec<Incoming>, Violation> {
        let mut reader = deflating(!takeover);
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            reader.input.extend_from_slice(piece);
            while let Some(incoming) = reader.parse()? {
                out.push(incoming);
            }
        }
        Ok(out)
    }

    const RSV1: u8 = 0x40;

    #[test]
    fn compressed_messages_inflate_whole_or_fragmented() {
        let text = br#"{"type":"message","room":"project:p1","text":"hello hello hello hello"}"#;
        let compressed = deflate(text);
        let mut bytes = frame(TEXT | RSV1, &compressed);
        // The same message in three fragments: RSV1 on the first only (RFC 7692 §6.1).
        let (a, rest) = compressed.split_at(5);
        let (b, c) = rest.split_at(rest.len() / 2);
        bytes.extend(frame(TEXT_START | RSV1, a));
        bytes.extend(frame(PING, b"between"));
        bytes.extend(frame(CONTINUE, b));
        bytes.extend(frame(CONTINUE_END, c));
        // An uncompressed message on the same connection.
        bytes.extend(frame(TEXT, b"plain"));
        let expected = vec![
            Incoming::Text(String::from_utf8(text.to_vec()).unwrap()),
            Incoming::Ping(Bytes::from_static(b"between")),
            Incoming::Text(String::from_utf8(text.to_vec()).unwrap()),
            Incoming::Text("plain".into()),
        ];
        for chunk in [1, 3, 7, bytes.len()] {
            assert_eq!(
                parse_deflating(&bytes, chunk, false).unwrap(),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_client_with_context_takeover_refers_to_its_earlier_messages() {
        let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
        let first = br#"{"type":"typing","room":"project:a-long-room-name"}"#;
        let one = deflate_with(&mut compressor, first);
        let two = deflate_with(&mut compressor, first); // mostly a back-reference into `one`
        assert!(two.len() < one.len());
        let mut bytes = frame(TEXT | RSV1, &one);
        bytes.extend(frame(TEXT | RSV1, &two));
        let text = || Incoming::Text(String::from_utf8(first.to_vec()).unwrap());
        assert_eq!(
            parse_deflating(&bytes, bytes.len(), true).unwrap(),
            [text(), text()]
        );
        // Without context takeover the state is dropped after each message, so the second
        // message's back-reference finds nothing (miniz_oxide reads an empty window as zeros
        // rather than failing): never the first message's bytes.
        let fresh = parse_deflating(&bytes, bytes.len(), false);
        assert!(
            !matches!(&fresh, Ok(messages) if messages.len() == 2 && messages[1] == text()),
            "{fresh:?}"
        );
    }

    #[test]
    fn the_inflate_state_exists_only_while_it_is_needed() {
        let compressed = deflate(b"hello hello hello");
        let mut per_message = deflating(true);
        per_message.input.extend(frame(TEXT | RSV1, &compressed));
        assert!(per_message.parse().unwrap().is_some());
        assert!(!per_message.inflater.as_ref().unwrap().holds_state());
        let mut takeover = deflating(false);
        assert!(!takeover.inflater.as_ref().unwrap().holds_state());
        takeover.input.extend(frame(TEXT, b"plain"));
        assert!(takeover.parse().unwrap().is_some());
        assert!(
            !takeover.inflater.as_ref().unwrap().holds_state(),
            "plain messages need none"
        );
        takeover.input.extend(frame(TEXT | RSV1, &compressed));
        assert!(takeover.parse().unwrap().is_some());
        assert!(takeover.inflater.as_ref().unwrap().holds_state());
    }

    #[test]
    fn compressed_frames_break_the_rules_they_can_break() {
        let compressed = deflate(b"hi there");
        let cases: [(Vec<u8>, Violation); 6] = [
            // RSV1 without the extension negotiated is checked by `parse` below.
            (
                frame(PING | RSV1, b"x"),
                Violation::Protocol("RSV1 set on a control frame"),
            ),
            (
                [
                    frame(TEXT_START | RSV1, &compressed[..2]),
                    frame(CONTINUE_END | RSV1, &compressed[2..]),
                ]
                .concat(),
                Violation::Protocol("RSV1 set on a continuation frame"),
            ),
            (
                frame(TEXT | 0x20, b"x"),
                Violation::Protocol("reserved bit set; no extension negotiated"),
            ),
            // Not DEFLATE at all (a reserved block type).
            (
                frame(TEXT | RSV1, &[0xff, 0xff, 0xff]),
                Violation::BadDeflate,
            ),
            // Inflates to bytes that are not UTF-8.
            (
                frame(TEXT | RSV1, &deflate(&[0xc3, 0x28, b'a', b'b'])),
                Violation::InvalidUtf8,
            ),
            // A bomb: 1,200 bytes of zeros in a few bytes, over the 1,000-byte limit.
            (
                frame(TEXT | RSV1, &deflate(&[b'0'; 1200])),
                Violation::TooBig(1000),
            ),
        ];
        for (bytes, violation) in cases {
            assert_eq!(
                parse_deflating(&bytes, bytes.len(), false),
                Err(violation.clone()),
                "{violation}"
            );
        }
        assert_eq!(
            parse(&frame(TEXT | RSV1, &compressed)),
            Err(Violation::Protocol(
                "reserved bit set; no extension negotiated"
            ))
        );
        assert_eq!(Violation::BadDeflate.code(), 1007);
    }

    #[test]
    fn a_bomb_fails_before_it_is_inflated_past_the_limit() {
        // 10 MB of one byte deflates to about 10 KB; the reader stops at the limit.
        let huge = vec![b'a'; 10 << 20];
        let compressed = deflate(&huge);
        let mut reader = Reader::new(64 * 1024, 64).with_deflate(Deflate {
            server_window_bits: 15,
            client_no_context_takeover: true,
        });
        let mut out = Vec::new();
        let inflater = reader.inflater.as_mut().unwrap();
        assert_eq!(
            inflater.fragment(&compressed, true, &mut out, 64 * 1024),
            Err(Violation::TooBig(64 * 1024))
        );
        assert!(out.len() <= 64 * 1024 + 1, "{}", out.len());
        assert!(out.capacity() < 256 * 1024, "{}", out.capacity());
    }

    #[test]
    fn messages_and_control_frames() {
        let mut bytes = frame(TEXT, b"hello");
        bytes.extend(frame(PING, b"are you there"));
        bytes.extend(frame(PONG, b""));
        bytes.extend(frame(BINARY, &[0, 1, 2]));
        bytes.extend(frame(TEXT, &[b'x'; 300]));
        bytes.extend(frame(CLOSE, b"\x03\xe8bye"));
        assert_eq!(
            parse(&bytes).unwrap(),
            [
                Incoming::Text("hello".into()),
                Incoming::Ping(Bytes::from_static(b"are you there")),
                Incoming::Pong,
                Incoming::Binary(3),
                Incoming::Text("x".repeat(300)),
                Incoming::Close(Some((1000, "bye".into()))),
            ]
        );
    }

    #[test]
    fn fragments_join_with_control_frames_between_them() {
        let mut bytes = frame(TEXT_START, b"hel");
        bytes.extend(frame(PING, b"p"));
        bytes.extend(frame(CONTINUE, b"l"));
        bytes.extend(frame(CLOSE, b"\x0f\xa0"));
        bytes.extend(frame(CONTINUE_END, b"o"));
        assert_eq!(
            parse(&bytes).unwrap(),
            [
                Incoming::Ping(Bytes::from_static(b"p")),
                Incoming::Close(Some((4000, String::new()))),
                Incoming::Text("hello".into()),
            ]
        );
    }

    #[test]
    fn framing_rules_fail_with_1002() {
        let unmasked = vec![TEXT, 2, b'h', b'i'];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (unmasked, "masked"),
            (frame(TEXT | 0x40, b"x"), "reserved bit"),
            (frame(TEXT | 0x10, b"x"), "reserved bit"),
            (frame(0x83, b"x"), "reserved opcode"),
            (frame(0x8b, b"x"), "reserved opcode"),
            (frame(PING & 0x7f, b"x"), "fragmented control"),
            (frame(PING, &[0; 126]), "125"),
            (frame(CONTINUE_END, b"x"), "continuation"),
            (
                [frame(TEXT_START, b"a"), frame(TEXT, b"b")].concat(),
                "new message",
            ),
            (frame(CLOSE, b"\x03"), "one-byte"),
            (frame(CLOSE, b"\x03\xe8\xff"), "not UTF-8"),
        ];
        for (bytes, why) in cases {
            let err = parse(&bytes).unwrap_err();
            assert_eq!(err.code(), 1002, "{why}: {err}");
            assert!(err.to_string().contains(why), "{err} should say {why}");
        }
    }

    #[test]
    fn close_codes_that_may_not_be_sent_fail_with_1002() {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65_535,
        ] {
            let err = parse(&frame(CLOSE, &code.to_be_bytes())).unwrap_err();
            assert_eq!(err.code(), 1002, "code {code}");
        }
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 3999, 4000, 4999,
        ] {
            assert_eq!(
                parse(&frame(CLOSE, &code.to_be_bytes())).unwrap(),
                [Incoming::Close(Some((code, String::new())))],
                "code {code}"
            );
        }
        assert_eq!(parse(&frame(CLOSE, b"")).unwrap(), [Incoming::Close(None)]);
    }

    #[test]
    fn invalid_utf8_fails_with_1007_at_the_first_bad_fragment() {
        let err = parse(&frame(
            TEXT,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
        ))
        .unwrap_err();
        assert_eq!(err.code(), 1007);
        // A fragment ending inside a sequence is fine while more follow...
        let split = [frame(TEXT_START, b"\xce"), frame(CONTINUE_END, b"\xba")].concat();
        assert_eq!(parse(&split).unwrap(), [Incoming::Text("κ".into())]);
        // ...but not at the end of the message.
        let cut = [frame(TEXT_START, b"a"), frame(CONTINUE_END, b"\xce")].concat();
        assert_eq!(parse(&cut).unwrap_err().code(), 1007);
        // A bad byte fails before the message's last fragment arrives.
        let mut reader = Reader::new(1000, 64);
        reader.input.extend(frame(TEXT_START, b"ok\xff"));
        assert_eq!(reader.parse().unwrap_err(), Violation::InvalidUtf8);
        // Binary messages are not checked.
        assert_eq!(
            parse(&frame(BINARY, b"\xff")).unwrap(),
            [Incoming::Binary(1)]
        );
    }

    #[test]
    fn a_message_over_the_limit_fails_with_1009_before_it_is_buffered() {
        let mut reader = Reader::new(1000, 64);
        // Only the header of a 1,001-byte frame: refused without waiting for its payload.
        reader.input.extend(&frame(TEXT, &[b'a'; 1001])[..8]);
        assert_eq!(reader.parse().unwrap_err().code(), 1009);
        // The limit holds for the sum of fragments.
        let parts = [
            frame(TEXT_START, &[b'a'; 600]),
            frame(CONTINUE_END, &[b'a'; 401]),
        ];
        assert_eq!(parse(&parts.concat()).unwrap_err().code(), 1009);
        let fits = [
            frame(TEXT_START, &[b'a'; 600]),
            frame(CONTINUE_END, &[b'a'; 400]),
        ];
        assert_eq!(
            parse(&fits.concat()).unwrap(),
            [Incoming::Text("a".repeat(1000))]
        );
    }

    #[test]
    fn the_input_buffer_is_freed_once_parsed() {
        let mut reader = Reader::new(1000, 64);
        reader.input.extend(frame(TEXT, b"hi"));
        assert!(reader.parse().unwrap().is_some());
        assert_eq!(reader.input.capacity(), 0);
        assert!(reader.parse().unwrap().is_none());
        assert_eq!(reader.input.capacity(), 0);
    }

    #[tokio::test]
    async fn waiting_for_input_holds_no_buffer() {
        let (_client, mut server) = tokio::io::duplex(64);
        let mut reader = Reader::new(1000, 256);
        let waker = futures::task::noop_waker();
        let polled = reader.poll_next(&mut server, &mut Context::from_waker(&waker));
        assert!(polled.is_pending());
        assert_eq!(reader.input.capacity(), 0);
    }

    #[tokio::test]
    async fn reads_from_a_stream_until_it_ends() {
        let (mut client, mut server) = tokio::io::duplex(8);
        let bytes = [frame(TEXT, b"first"), frame(PING, b"p")].concat();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            client.write_all(&bytes).await.unwrap();
        });
        let mut reader = Reader::new(1000, 4);
        async fn next(reader: &mut Reader, io: &mut tokio::io::DuplexStream) -> Option<Incoming> {
            std::future::poll_fn(|cx| reader.poll_next(io, cx))
                .await
                .unwrap()
        }
        assert_eq!(
            next(&mut reader, &mut server).await,
            Some(Incoming::Text("first".into()))
        );
        assert_eq!(
            next(&mut reader, &mut server).await,
            Some(Incoming::Ping(Bytes::from_static(b"p")))
        );
        assert_eq!(next(&mut reader, &mut server).await, None);
    }
}
