//! The write side of a WebSocket connection: the one writer of its socket. Everything the
//! server sends goes through it: broadcasts, replies, pings, pongs and the close frame.
//!
//! One writer, so the framing rule lives in one place: a frame, once started, is finished before
//! any other byte goes out. Before, tungstenite wrote replies and control frames while this module
//! wrote broadcasts, and which of the two could write when was a convention the connection loop
//! had to keep; the closing handshake fell between them. Now the reader (`read`) never writes,
//! and this module orders what it writes:
//!
//! 1. the rest of a broadcast frame a previous write left half written;
//! 2. the *urgent* frames (replies, pongs, pings, close), in the order they were queued;
//! 3. broadcasts, many per write, until a close frame is queued: after it nothing new starts
//!    (RFC 6455 §5.5.1: no data frames after a close).
//!
//! Broadcast frames are written straight from the [`Outbox`], bypassing any WebSocket library.
//! The hub hands every subscriber the same serialized bytes; going through tungstenite would
//! validate them as UTF-8 again and go through its sink machinery (a waker registration, a
//! message conversion), once per frame and subscriber. Here a frame is a header and a copy into
//! a buffer the thread reuses, and one `write` carries up to [`FRAMES_PER_WRITE`] frames. (Two
//! `IoSlice`s per frame, header and shared payload, avoid that copy but measured slower: the
//! kernel's copy from 128 small slices cost more than the copy saved.) The frames stay in the
//! [`Outbox`] until fully written, with how much of the oldest one went out, so an interrupted
//! write is completed before anything else.
//!
//! A frame the hub compressed for the connections that negotiated `permessage-deflate`
//! (`hub/deflated.rs`) is written with RSV1 set and the compressed bytes as its payload, shared
//! like the plain ones.
//!
//! Urgent frames are framed into a small buffer of the connection's own, allocated only while
//! one waits: an idle connection holds none.

use crate::hub::Outbox;
use bytes::{Buf, BytesMut};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;

/// Frames one write carries at most.
pub(super) const FRAMES_PER_WRITE: usize = 64;

/// What a write moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Written {
    /// Frames written in full.
    pub frames: usize,
    /// Their payload bytes.
    pub bytes: usize,
}

/// Opcodes the server sends (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Opcode {
    Text = 0x1,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xa,
}

/// The header of an unmasked, final frame with `len` payload bytes (RFC 6455 §5.2).
#[derive(Clone, Copy)]
struct Header {
    bytes: [u8; 10],
    len: u8,
}

impl Header {
    fn text(len: usize) -> Self {
        Self::new(Opcode::Text, len)
    }

    /// A text frame whose payload is a `permessage-deflate` message: RSV1 set (RFC 7692 §6).
    fn deflated(len: usize) -> Self {
        let mut header = Self::new(Opcode::Text, len);
        header.bytes[0] |= 0x40;
        header
    }

    fn new(opcode: Opcode, len: usize) -> Self {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | opcode as u8; // FIN
        let n = if len < 126 {
            bytes[1] = len as u8;
            2
        } else if let Ok(len) = u16::try_from(len) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&len.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        Self { bytes, len: n }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The connection's writer: the urgent frames waiting, and whether the close frame is among
/// them. The broadcasts wait in the session's [`Outbox`], which each call is given.
#[derive(Debug, Default)]
pub(super) struct Writer {
    /// Urgent frames, framed, in order; what is left of them after a partial write.
    urgent: BytesMut,
    /// The close frame has been queued: no frame is queued or started after it.
    closed: bool,
}

/// The longest control frame payload (§5.5).
const MAX_CONTROL: usize = 125;

impl Writer {
    /// Queues a text frame (a reply) ahead of the broadcasts not yet started.
    pub(super) fn text(&mut self, payload: &[u8]) {
        self.queue(Opcode::Text, payload);
    }

    /// Queues a ping (heartbeat).
    pub(super) fn ping(&mut self, payload: &[u8]) {
        self.queue(Opcode::Ping, &payload[..payload.len().min(MAX_CONTROL)]);
    }

    /// Queues the pong that answers a ping, with the ping's payload (§5.5.3).
    pub(super) fn pong(&mut self, payload: &[u8]) {
        self.queue(Opcode::Pong, &payload[..payload.len().min(MAX_CONTROL)]);
    }

    /// Queues the close frame: with a code and reason, or empty (the echo of an empty close).
    /// Anything queued after it is dropped, and no broadcast starts once it is queued.
    pub(super) fn close(&mut self, status: Option<(u16, &str)>) {
        let mut payload = [0u8; MAX_CONTROL];
        let len = match status {
            None => 0,
            Some((code, reason)) => {
                payload[..2].copy_from_slice(&code.to_be_bytes());
                // A reason cut at a character boundary so that the frame stays a control frame.
                let mut end = reason.len().min(MAX_CONTROL - 2);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
                2 + end
            }
        };
        self.queue(Opcode::Close, &payload[..len]);
        self.closed = true;
    }

    fn queue(&mut self, opcode: Opcode, payload: &[u8]) {
        if self.closed {
            return;
        }
        let header = Header::new(opcode, payload.len());
        self.urgent.reserve(header.as_slice().len() + payload.len());
        self.urgent.extend_from_slice(header.as_slice());
        self.urgent.extend_from_slice(payload);
    }

    /// Writes, in the order the module describes, until the urgent frames are out and either
    /// `max` broadcasts are written or none is left (none is started after the close); returns
    /// the broadcasts written. Waits while the socket is full; on error, what was written stays
    /// recorded.
    pub(super) async fn write<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        outbox: &mut Outbox,
        max: usize,
    ) -> io::Result<Written> {
        let mut total = Written::default();
        poll_fn(|cx| self.poll_write(Pin::new(&mut *io), outbox, max, &mut total, cx)).await?;
        Ok(total)
    }

    /// Writes what must precede everything else: a half-written broadcast frame and the urgent
    /// frames; no new broadcast.
    pub(super) async fn write_urgent<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        outbox: &mut Outbox,
    ) -> io::Result<Written> {
        self.write(io, outbox, 0).await
    }

    fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        mut io: Pin<&mut W>,
        outbox: &mut Outbox,
        max: usize,
        total: &mut Written,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if outbox.sent_of_front() > 0 {
                // Only the front: its frame count is the caller's even when `max` is reached.
                let mut front = Written::default();
                ready!(poll_broadcasts(io.as_mut(), outbox, 1, &mut front, cx))?;
                total.frames += front.frames;
                total.bytes += front.bytes;
                continue;
            }
            if !self.urgent.is_empty() {
                let n = match ready!(io.as_mut().poll_write(cx, &self.urgent)) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => n,
                };
                self.urgent.advance(n);
                if self.urgent.is_empty() {
                    self.urgent = BytesMut::new();
                }
                continue;
            }
            if !self.closed && total.frames < max {
                ready!(poll_broadcasts(io.as_mut(), outbox, max, total, cx))?;
            }
            // A stream that buffers (TLS) sends what it holds; for TCP this does nothing.
            return io.as_mut().poll_flush(cx);
        }
    }
}

/// Writes the outbox's frames, at most `max`, as text frames; returns what went out. Waits while
/// the socket is full; on error, what was written stays recorded in the outbox. Only for tests:
/// the connection writes through its [`Writer`].
#[cfg(test)]
async fn write<W: AsyncWrite + Unpin>(
    io: &mut W,
    outbox: &mut Outbox,
    max: usize,
) -> io::Result<Written> {
    let mut total = Written::default();
    poll_fn(|cx| poll_broadcasts(Pin::new(&mut *io), outbox, max, &mut total, cx)).await?;
    Ok(total)
}

/// Writes broadcast frames until `total` counts `max` of them or the outbox is empty.
fn poll_broadcasts<W: AsyncWrite + Unpin>(
    mut io: Pin<&mut W>,
    outbox: &mut Outbox,
    max: usize,
    total: &mut Written,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    loop {
        let skip = outbox.sent_of_front();
        let frames = outbox.peek();
        let count = frames.len().min(max - total.frames).min(FRAMES_PER_WRITE);
        if count == 0 {
            return Poll::Ready(Ok(()));
        }
        // Framed into one contiguous buffer, reused by every connection of this thread: the
        // kernel copies one large slice much faster than two small ones per frame.
        let result = SCRATCH.with_borrow_mut(|buffer| {
            buffer.clear();
            let mut lengths = [0usize; FRAMES_PER_WRITE];
            let mut framed = 0;
            for (length, frame) in lengths.iter_mut().zip(frames).take(count) {
                if framed > 0 && buffer.len() + frame.len() > WRITE_BYTES {
                    break;
                }
                // A frame the hub compressed carries its mark (hub/deflated.rs): RSV1 instead.
                let (compressed, body) = crate::hub::deflated::payload(frame);
                let header = if compressed {
                    Header::deflated(body.len())
                } else {
                    Header::text(body.len())
                };
                buffer.extend_from_slice(header.as_slice());
                buffer.extend_from_slice(body);
                *length = usize::from(header.len) + body.len();
                framed += 1;
            }
            let written = io.as_mut().poll_write(cx, &buffer[skip..]);
            if buffer.capacity() > 4 * WRITE_BYTES {
                *buffer = Vec::new();
            }
            written.map(|r| r.map(|n| (n, lengths, framed)))
        });
        let (written, lengths, framed) = match result {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok((0, ..))) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(done)) => done,
        };
        // Which frames the written bytes completed, and how far into the next one they reach.
        let mut left = written + skip;
        let mut done = 0;
        while done < framed && left >= lengths[done] {
            left -= lengths[done];
            done += 1;
        }
        let partial = if done == 0 { written } else { left };
        let bytes = outbox.sent(done, partial);
        total.frames += done;
        total.bytes += bytes;
    }
}

/// Bytes framed for one write at most (more only for a single larger frame).
const WRITE_BYTES: usize = 64 * 1024;

thread_local! {
    /// Where frames are laid out for a write; see [`poll_write`].
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;
    use crate::hub::session::{QueueLimits, Session};
    use bytes::Bytes;
    use std::collections::HashSet;
    use tokio::io::AsyncReadExt;

    fn user() -> UserId {
        UserId::parse("u", "user").expect("valid")
    }
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    fn header_of(len: usize) -> Vec<u8> {
        Header::text(len).as_slice().to_vec()
    }

    #[test]
    fn header_lengths_take_one_three_or_nine_bytes() {
        assert_eq!(header_of(0), [0x81, 0]);
        assert_eq!(header_of(125), [0x81, 125]);
        assert_eq!(header_of(126), [0x81, 126, 0, 126]);
        assert_eq!(header_of(65_535), [0x81, 126, 0xff, 0xff]);
        assert_eq!(header_of(65_536), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn headers_parse_as_tungstenite_reads_them() {
        for len in [0, 1, 125, 126, 300, 65_535, 65_536, 1 << 20] {
            let bytes = header_of(len);
            let (header, parsed_len) = FrameHeader::parse(&mut io::Cursor::new(&bytes[..]))
                .unwrap()
                .expect("a whole header");
            assert!(header.is_final);
            assert_eq!(parsed_len, len as u64);
            assert!(header.mask.is_none());
        }
    }

    fn session_with(frames: &[&'static str]) -> (std::sync::Arc<Session>, Outbox) {
        let limits = QueueLimits {
            messages: 1_000,
            bytes: 1 << 20,
        };
        let (session, outbox) = Session::new(
            1,
            user(),
            false,
            HashSet::new(),
            limits,
            Default::default(),
            crate::hub::session::Transport::WebSocket,
        );
        for frame in frames {
            session
                .offer(&Bytes::from_static(frame.as_bytes()))
                .expect("room");
        }
        (session, outbox)
    }

    /// Reads text frames back with tungstenite's own parser.
    async fn read_frames(reader: &mut tokio::io::DuplexStream, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut buffer = Vec::new();
        while out.len() < n {
            let mut chunk = [0u8; 512];
            let got = reader.read(&mut chunk).await.unwrap();
            assert!(got > 0, "stream ended after {} frames", out.len());
            buffer.extend_from_slice(&chunk[..got]);
            loop {
                let mut cursor = io::Cursor::new(&buffer[..]);
                let Some((_, len)) = FrameHeader::parse(&mut cursor).unwrap() else {
                    break;
                };
                let start = cursor.position() as usize;
                let end = start + len as usize;
                if buffer.len() < end {
                    break;
                }
                out.push(String::from_utf8(buffer[start..end].to_vec()).unwrap());
                buffer.drain(..end);
            }
        }
        out
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_through_a_small_pipe() {
        let long: &'static str = Box::leak("x".repeat(70_000).into_boxed_str());
        let frames = ["a", "bb", long, "ccc", "d"];
        let (_session, mut outbox) = session_with(&frames);
        // A pipe of 100 bytes: every write is partial, most frames straddle two writes.
        let (mut writer, mut reader) = tokio::io::duplex(100);
        let reading = tokio::spawn(async move { read_frames(&mut reader, 5).await });
        let written = write(&mut writer, &mut outbox, usize::MAX).await.unwrap();
        assert_eq!(written.frames, 5);
        assert_eq!(written.bytes, frames.iter().map(|f| f.len()).sum::<usize>());
        assert_eq!(reading.await.unwrap(), frames);
        assert!(outbox.peek().is_empty());
    }

    #[tokio::test]
    async fn an_interrupted_write_is_finished_before_anything_else() {
        let (_session, mut outbox) = session_with(&["first frame, long enough", "second"]);
        let (mut writer, mut reader) = tokio::io::duplex(10);
        // Cancelled with the pipe full: the first frame is half written.
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            write(&mut writer, &mut outbox, usize::MAX),
        )
        .await;
        assert!(
            cut.is_err(),
            "the pipe holds 10 bytes: the write must block"
        );
        assert_eq!(outbox.sent_of_front(), 10);
        let reading = tokio::spawn(async move {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).await.unwrap();
            all
        });
        Writer::default()
            .write_urgent(&mut writer, &mut outbox)
            .await
            .unwrap();
        drop(writer);
        let all = reading.await.unwrap();
        let mut expected = header_of(24);
        expected.extend_from_slice(b"first frame, long enough");
        assert_eq!(
            all, expected,
            "exactly the first frame, whole, and nothing of the second"
        );
        assert_eq!(outbox.peek().len(), 1);
        assert_eq!(outbox.sent_of_front(), 0);
    }

    /// Reads everything until the writer's end is dropped.
    fn read_all(mut reader: tokio::io::DuplexStream) -> tokio::task::JoinHandle<Vec<u8>> {
        tokio::spawn(async move {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).await.unwrap();
            all
        })
    }

    fn framed(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[tokio::test]
    async fn urgent_frames_wait_for_a_half_written_frame_and_overtake_the_rest() {
        let (_session, mut outbox) = session_with(&["first frame, long enough", "second"]);
        let (mut writer, reader) = tokio::io::duplex(10);
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            write(&mut writer, &mut outbox, usize::MAX),
        )
        .await;
        assert!(
            cut.is_err(),
            "the pipe holds 10 bytes: the write must block"
        );
        let reading = read_all(reader);
        let mut urgent = Writer::default();
        urgent.text(b"reply");
        urgent.pong(b"p");
        let written = urgent
            .write(&mut writer, &mut outbox, usize::MAX)
            .await
            .unwrap();
        assert_eq!(written.frames, 2, "the rest of the first, then the second");
        drop(writer);
        let expected = [
            framed(0x81, b"first frame, long enough"),
            framed(0x81, b"reply"),
            framed(0x8a, b"p"),
            framed(0x81, b"second"),
        ]
        .concat();
        assert_eq!(reading.await.unwrap(), expected);
    }

    #[tokio::test]
    async fn nothing_starts_after_the_close_frame() {
        let (_session, mut outbox) = session_with(&["queued"]);
        let (mut writer, reader) = tokio::io::duplex(1 << 16);
        let reading = read_all(reader);
        let mut urgent = Writer::default();
        urgent.ping(b"hb");
        urgent.close(Some((1000, "bye")));
        urgent.text(b"too late");
        urgent.pong(b"too late");
        assert!(urgent.closed);
        let written = urgent
            .write(&mut writer, &mut outbox, usize::MAX)
            .await
            .unwrap();
        assert_eq!(written.frames, 0);
        drop(writer);
        let expected = [framed(0x89, b"hb"), framed(0x88, b"\x03\xe8bye")].concat();
        assert_eq!(reading.await.unwrap(), expected);
        assert_eq!(outbox.peek().len(), 1, "the broadcast was never started");
    }

    #[test]
    fn close_frames_stay_control_frames() {
        let mut writer = Writer::default();
        writer.close(None);
        assert_eq!(&writer.urgent[..], [0x88, 0]);
        let mut writer = Writer::default();
        // 62 two-byte characters: cut at 123 bytes would split one.
        writer.close(Some((4000, &"é".repeat(62))));
        assert_eq!(
            writer.urgent[1], 124,
            "2 bytes of code and 61 whole characters"
        );
        assert!(std::str::from_utf8(&writer.urgent[4..]).is_ok());
    }

    #[tokio::test]
    async fn at_most_max_frames_per_call() {
        let (_session, mut outbox) = session_with(&["1", "2", "3"]);
        let (mut writer, _reader) = tokio::io::duplex(1 << 16);
        let written = write(&mut writer, &mut outbox, 2).await.unwrap();
        assert_eq!(written.frames, 2);
        assert_eq!(outbox.peek().len(), 1);
    }
}
