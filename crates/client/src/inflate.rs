//! `permessage-deflate` (RFC 7692) for the terminal client, under tungstenite, which has no
//! extension support: a byte stream between the socket (TLS included) and tungstenite that
//! reads the opening handshake's answer as it passes, and, if the server accepted the offer,
//! turns each compressed frame the server sends (RSV1) into the plain frame tungstenite expects.
//!
//! The client offers `permessage-deflate; client_no_context_takeover` and sends uncompressed
//! (RFC 7692 lets a sender compress any message or none): its commands are a few bytes. The
//! server always answers `server_no_context_takeover` (docs/protocol.md), so each compressed
//! message inflates on its own. Taskflow's server never fragments, but RFC 7692 lets a server
//! split a compressed message over frames (RSV1 on the first only, control frames in between):
//! its fragments are gathered and handed to tungstenite as one plain frame once the last one
//! came. A frame or a gathered message over 16 MiB, or a frame that breaks the extension's
//! rules, is an I/O error, which the client reports and reconnects from.

use flate2::{Decompress, FlushDecompress};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// The offer the client sends in `Sec-WebSocket-Extensions`.
pub const OFFER: &str = "permessage-deflate; client_no_context_takeover";

/// The longest frame the client takes, and the longest message it inflates: far beyond any
/// frame Taskflow sends.
const MAX_MESSAGE: usize = 16 << 20;

/// Where the stream is.
enum Phase {
    /// Passing the HTTP answer through, until its blank line; `head` is what came so far.
    Handshake { head: Vec<u8> },
    /// After the answer: frames, to be inflated when the server accepted the offer.
    Frames { deflate: bool },
}

/// The socket, with the server's compressed frames inflated.
pub struct Inflating<S> {
    inner: S,
    phase: Phase,
    /// Bytes read from the socket and not yet processed (a frame not whole yet).
    input: Vec<u8>,
    /// Bytes ready for tungstenite.
    output: Vec<u8>,
    /// How much of `output` was handed out.
    served: usize,
    /// The inflate state, reset for each message (the server takes no context).
    state: Option<Box<Decompress>>,
    /// What went wrong in the stream, reported once the bytes before it are read.
    failed: Option<io::Error>,
    /// A compressed message whose first fragments came, its last not yet: its header (opcode)
    /// and the compressed bytes so far.
    gathering: Option<(FrameHeader, Vec<u8>)>,
}

impl<S> Inflating<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            phase: Phase::Handshake { head: Vec::new() },
            input: Vec::new(),
            output: Vec::new(),
            served: 0,
            state: None,
            failed: None,
            gathering: None,
        }
    }

    /// Whether the server accepted `permessage-deflate` (known once the handshake is read).
    pub fn compressed(&self) -> bool {
        matches!(self.phase, Phase::Frames { deflate: true })
    }

    /// Moves what `input` holds on: through the handshake's end, then frame by frame.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match &mut self.phase {
                Phase::Handshake { head } => {
                    let Some(end) = find_blank_line(head, &self.input) else {
                        head.extend_from_slice(&self.input);
                        self.output.append(&mut self.input);
                        return Ok(());
                    };
                    head.extend_from_slice(&self.input[..end]);
                    self.output.extend(self.input.drain(..end));
                    let deflate = accepted(head);
                    self.phase = Phase::Frames { deflate };
                }
                Phase::Frames { deflate: false } => {
                    self.output.append(&mut self.input);
                    return Ok(());
                }
                Phase::Frames { deflate: true } => {
                    if !self.frame()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Takes one whole frame off `input` into `output`, inflated if it was compressed; false if
    /// `input` holds no whole frame yet.
    fn frame(&mut self) -> io::Result<bool> {
        let mut cursor = io::Cursor::new(&self.input[..]);
        let Some((header, len)) = FrameHeader::parse(&mut cursor).map_err(invalid)? else {
            return Ok(false);
        };
        let start = cursor.position() as usize;
        // A frame is held whole before tungstenite sees it, so its length is bounded here, before
        // any of it is buffered: a header claiming petabytes must not make the client wait and
        // grow.
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= MAX_MESSAGE)
            .ok_or_else(|| invalid("frame too long"))?;
        if self.input.len() < start + len {
            return Ok(false);
        }
        let payload = start..start + len;
        let is_control = matches!(header.opcode, OpCode::Control(_));
        let continues = matches!(header.opcode, OpCode::Data(Data::Continue));
        if header.rsv1 && (is_control || continues) {
            return Err(invalid("RSV1 on a control or continuation frame"));
        }
        let is_final = header.is_final;
        let (first, compressed) = match self.gathering.take() {
            // A frame of a plain message, or a control frame: passed on as it is.
            None if !header.rsv1 => {
                self.output.extend(self.input.drain(..start + len));
                return Ok(true);
            }
            None => (header, self.input[payload].to_vec()),
            Some(gathering) if is_control => {
                // A control frame between fragments goes on at once (a ping is answered).
                self.gathering = Some(gathering);
                self.output.extend(self.input.drain(..start + len));
                return Ok(true);
            }
            Some(_) if !continues => {
                return Err(invalid("a new message before the last one ended"));
            }
            Some((first, mut compressed)) => {
                if compressed.len() + len > MAX_MESSAGE {
                    return Err(invalid("compressed message too large"));
                }
                compressed.extend_from_slice(&self.input[payload]);
                (first, compressed)
            }
        };
        self.input.drain(..start + len);
        if !is_final {
            self.gathering = Some((first, compressed));
            return Ok(true);
        }
        let message = inflate(&mut self.state, &compressed)?;
        let plain = FrameHeader {
            is_final: true,
            rsv1: false,
            mask: None,
            ..first
        };
        let mut framed = Vec::with_capacity(message.len() + 10);
        plain
            .format(message.len() as u64, &mut framed)
            .map_err(invalid)?;
        self.output.extend_from_slice(&framed);
        self.output.extend_from_slice(&message);
        Ok(true)
    }
}

/// One whole compressed message, inflated (RFC 7692 §7.2.2: the sender dropped the final
/// empty block's `00 00 ff ff`, put back here), at most `MAX_MESSAGE` bytes.
fn inflate(state: &mut Option<Box<Decompress>>, payload: &[u8]) -> io::Result<Vec<u8>> {
    let state = state.get_or_insert_with(|| Box::new(Decompress::new(false)));
    state.reset(false);
    let mut out = Vec::with_capacity(payload.len() * 4 + 64);
    for mut input in [payload, &[0, 0, 0xff, 0xff][..]] {
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_MESSAGE {
                    return Err(invalid("compressed message too large"));
                }
                out.reserve(out.capacity());
            }
            let (before, produced) = (state.total_in(), out.len());
            state
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(invalid)?;
            input = &input[(state.total_in() - before) as usize..];
            if !input.is_empty() && state.total_in() == before && out.len() == produced {
                // Bytes after a final block: no progress would ever be made.
                return Err(invalid("bytes after the end of a compressed message"));
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
    }
    Ok(out)
}

/// Where the HTTP head's blank line ends in `input`, given the `head` read before it.
fn find_blank_line(head: &[u8], input: &[u8]) -> Option<usize> {
    // The blank line may straddle two reads: look at the last three bytes of the head too.
    let keep = head.len().min(3);
    let joined: Vec<u8> = head[head.len() - keep..]
        .iter()
        .chain(input)
        .copied()
        .collect();
    joined
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4 - keep)
}

/// Whether the answer's head accepts `permessage-deflate`.
fn accepted(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-extensions")
                && value.trim().starts_with("permessage-deflate")
        })
    })
}

fn invalid(err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}

impl<S: AsyncRead + Unpin> AsyncRead for Inflating<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.served < this.output.len() {
                let n = (this.output.len() - this.served).min(buf.remaining());
                buf.put_slice(&this.output[this.served..this.served + n]);
                this.served += n;
                if this.served == this.output.len() {
                    this.output.clear();
                    this.served = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(err) = this.failed.take() {
                return Poll::Ready(Err(err));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(())); // end of stream
            }
            this.input.extend_from_slice(read.filled());
            // Frames before a bad one are still delivered (a close frame among them, say).
            this.failed = this.process().err();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inflating<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn deflate(text: &[u8]) -> Vec<u8> {
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(text.len() + 64);
        c.compress_vec(text, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        out.truncate(out.len() - 4);
        out
    }

    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        [&[first, payload.len() as u8][..], payload].concat()
    }

    async fn through(bytes: &[u8], chunk: usize) -> (Vec<u8>, bool) {
        let (mut client, server) = tokio::io::duplex(64);
        let wrote = bytes.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut server = server;
            for piece in wrote.chunks(chunk) {
                server.write_all(piece).await.unwrap();
            }
        });
        let mut inflating = Inflating::new(&mut client);
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        while out.len() < 1000 {
            let n = inflating.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if writer.is_finished() && inflating.output.is_empty() && inflating.input.is_empty() {
                break;
            }
        }
        (out, inflating.compressed())
    }

    #[tokio::test]
    async fn compressed_frames_come_out_plain_after_an_accepting_handshake() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
        let text = br#"{"type":"event","room":"project:p","offset":1}"#;
        let bytes = [
            &head[..],
            &frame(0xc1, &deflate(text)),
            &frame(0x89, b"ping"),
            &frame(0x81, b"plain"),
        ]
        .concat();
        let expected = [
            &head[..],
            &frame(0x81, text),
            &frame(0x89, b"ping"),
            &frame(0x81, b"plain"),
        ]
        .concat();
        for chunk in [1, 5, bytes.len()] {
            let (out, compressed) = through(&bytes, chunk).await;
            assert!(compressed);
            assert_eq!(out, expected, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn a_compressed_message_split_over_frames_comes_out_whole_after_a_ping_between() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        let text = br#"{"type":"event","room":"project:p","offset":7,"data":{"title":"split"}}"#;
        let compressed = deflate(text);
        let (a, rest) = compressed.split_at(5);
        let (b, c) = rest.split_at(rest.len() / 2);
        let bytes = [
            &head[..],
            &frame(0x41, a), // text, RSV1, not final
            &frame(0x89, b"ping"),
            &frame(0x00, b), // continuation
            &frame(0x80, c), // final continuation
            &frame(0x81, b"after"),
        ]
        .concat();
        let expected = [
            &head[..],
            &frame(0x89, b"ping"),
            &frame(0x81, text),
            &frame(0x81, b"after"),
        ]
        .concat();
        for chunk in [1, 4, bytes.len()] {
            let (out, _) = through(&bytes, chunk).await;
            assert_eq!(out, expected, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn rsv1_on_a_continuation_or_a_new_message_mid_way_is_an_error() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        let part = deflate(b"hello");
        for (name, frames) in [
            (
                "rsv1 on a continuation",
                [frame(0x41, &part), frame(0xc0, b"x")],
            ),
            (
                "a text frame mid-way",
                [frame(0x41, &part), frame(0x81, b"x")],
            ),
            ("rsv1 on a ping", [frame(0x81, b"ok"), frame(0xc9, b"")]),
        ] {
            let bytes = [&head[..], &frames.concat()].concat();
            let (mut client, mut server) = tokio::io::duplex(4096);
            use tokio::io::AsyncWriteExt;
            server.write_all(&bytes).await.unwrap();
            drop(server);
            let mut inflating = Inflating::new(&mut client);
            let mut out = Vec::new();
            let err = loop {
                let mut buf = [0u8; 64];
                match inflating.read(&mut buf).await {
                    Ok(0) => panic!("{name}: no error"),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(err) => break err,
                }
            };
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{name}");
            assert!(
                out.starts_with(head),
                "{name}: the bytes before it are delivered"
            );
        }
    }

    #[tokio::test]
    async fn a_frame_longer_than_the_limit_is_refused_before_it_is_buffered() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        // A compressed text frame claiming 2^62 bytes (64-bit length), then nothing.
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(&[0xc1, 127]);
        bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let (mut client, mut server) = tokio::io::duplex(4096);
        use tokio::io::AsyncWriteExt;
        server.write_all(&bytes).await.unwrap();
        let mut inflating = Inflating::new(&mut client);
        let mut buf = vec![0u8; head.len()];
        inflating.read_exact(&mut buf).await.unwrap();
        let err = inflating.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("too long"), "{err}");
    }

    #[test]
    fn bytes_after_a_final_block_are_an_error_not_a_hang() {
        // A final (BFINAL) stored block of "hi", then more bytes the stream has no room for.
        let payload = [0x01, 0x02, 0x00, 0xfd, 0xff, b'h', b'i', 0x01, 0x02];
        let err = inflate(&mut None, &payload).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let message = inflate(&mut None, &deflate(b"fine")).unwrap();
        assert_eq!(message, b"fine");
    }

    #[tokio::test]
    async fn without_the_extension_bytes_pass_untouched() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let bytes = [&head[..], &frame(0x81, b"hello")].concat();
        let (out, compressed) = through(&bytes, 3).await;
        assert!(!compressed);
        assert_eq!(out, bytes);
    }
}
