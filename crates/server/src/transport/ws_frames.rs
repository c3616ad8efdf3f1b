//! Broadcast frames written straight to the socket, bypassing the WebSocket library.
//!
//! The hub hands every subscriber the same serialized bytes. Going through tungstenite would
//! validate them as UTF-8 again and go through its sink machinery (a waker registration, a
//! message conversion), once per frame and subscriber. Here a frame is a header and a copy into
//! a buffer the thread reuses, and one `write` carries up to [`FRAMES_PER_WRITE`] frames. (Two
//! `IoSlice`s per frame, header and shared payload, avoid that copy but measured slower: the
//! kernel's copy from 128 small slices cost more than the copy saved.)
//!
//! The frames stay in the [`Outbox`] until fully written, with how much of the oldest one went
//! out, so an interrupted write can be completed (see [`finish_front`]) before tungstenite writes
//! anything else: the two writers share one byte stream, and a frame cut in half would corrupt
//! it. Tungstenite's own buffer must likewise be flushed before these writes start.

use crate::hub::Outbox;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
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

/// The header of an unmasked, final text frame with `len` payload bytes (RFC 6455 §5.2).
#[derive(Clone, Copy)]
struct Header {
    bytes: [u8; 10],
    len: u8,
}

impl Header {
    fn text(len: usize) -> Self {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | 0x1; // FIN, opcode text
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

/// Writes the outbox's frames, at most `max`, as text frames; returns what went out. Waits while
/// the socket is full; on error, what was written stays recorded in the outbox.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    io: &mut W,
    outbox: &mut Outbox,
    max: usize,
) -> io::Result<Written> {
    let mut total = Written::default();
    poll_fn(|cx| poll_write(Pin::new(&mut *io), outbox, max, &mut total, cx)).await?;
    Ok(total)
}

/// Completes a frame a cancelled [`write`] left half written, so that the byte stream is whole
/// again; the frames behind it are left alone.
pub(super) async fn finish_front<W: AsyncWrite + Unpin>(
    io: &mut W,
    outbox: &mut Outbox,
) -> io::Result<()> {
    if outbox.sent_of_front() > 0 {
        write(io, outbox, 1).await?;
    }
    Ok(())
}

fn poll_write<W: AsyncWrite + Unpin>(
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
                let header = Header::text(frame.len());
                buffer.extend_from_slice(header.as_slice());
                buffer.extend_from_slice(frame);
                *length = usize::from(header.len) + frame.len();
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
        let (session, outbox) =
            Session::new(1, user(), false, HashSet::new(), limits, Default::default());
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
        finish_front(&mut writer, &mut outbox).await.unwrap();
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

    #[tokio::test]
    async fn at_most_max_frames_per_call() {
        let (_session, mut outbox) = session_with(&["1", "2", "3"]);
        let (mut writer, _reader) = tokio::io::duplex(1 << 16);
        let written = write(&mut writer, &mut outbox, 2).await.unwrap();
        assert_eq!(written.frames, 2);
        assert_eq!(outbox.peek().len(), 1);
    }
}
