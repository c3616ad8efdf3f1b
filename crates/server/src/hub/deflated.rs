//! Compressed broadcast: an event's frame deflated once (RFC 7692 §7.2.1, without context
//! takeover), the compressed bytes shared by every subscriber that negotiated
//! `permessage-deflate`, exactly as the plain bytes are shared by the others.
//!
//! The hub compresses lazily, in [`super::Hub::deliver`]: only when a session of the room
//! negotiated the extension, at most once per event and node. A compressed frame travels through
//! the session's queue like any other, tagged by a first byte of [`MARK`] (a JSON frame starts
//! with `{`), which the WebSocket writer turns into the RSV1 bit of the frame header. Only
//! WebSocket sessions that negotiated the extension are ever offered a tagged frame.
//!
//! Why by hand rather than a WebSocket library's extension: the library Taskflow frames with
//! (tungstenite) has none, and a per-connection compressor, as libraries that have one use,
//! would compress each event once per subscriber and hold a compression state per connection.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use std::cell::RefCell;

/// The first byte of a queued frame that holds a compressed message.
pub const MARK: u8 = 0;

/// The four bytes a sync flush ends with, which a sender removes and a receiver appends
/// (§7.2.1, §7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// When compressing is worth it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionLimits {
    /// Frames shorter than this go uncompressed (the header and the deflate block cost more
    /// than they save on a short message).
    pub min_bytes: usize,
    /// zlib level, 0 to 9.
    pub level: u32,
}

impl Default for CompressionLimits {
    fn default() -> Self {
        Self {
            min_bytes: 128,
            level: 6,
        }
    }
}

thread_local! {
    /// One compressor per thread, reset for each message (no context takeover): no allocation
    /// per event beyond the output.
    static COMPRESSOR: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
}

/// `frame` compressed and tagged with [`MARK`], or `None` when compressing does not make it
/// shorter (or it is shorter than `limits.min_bytes`).
pub fn compress(frame: &[u8], limits: CompressionLimits) -> Option<Bytes> {
    if frame.len() < limits.min_bytes {
        return None;
    }
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some((level, compressor)) if *level == limits.level => compressor,
            _ => {
                let fresh = Compress::new(Compression::new(limits.level.min(9)), false);
                &mut slot.insert((limits.level, fresh)).1
            }
        };
        compressor.reset();
        let mut out = Vec::with_capacity(frame.len() / 2 + 64);
        out.push(MARK);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(frame.len() / 4 + 64);
            }
            let before = compressor.total_in();
            compressor
                .compress_vec(&frame[consumed..], &mut out, FlushCompress::Sync)
                .expect("deflate on a valid state");
            consumed += (compressor.total_in() - before) as usize;
            // The flush is complete once all input is in and the output did not fill up.
            if consumed == frame.len() && out.len() < out.capacity() {
                break;
            }
        }
        if !out.ends_with(&TAIL) {
            return None; // cannot happen after a sync flush; plain is always valid
        }
        out.truncate(out.len() - TAIL.len());
        (out.len() < frame.len()).then(|| Bytes::from(out))
    })
}

/// A queued frame's payload and whether it is compressed.
pub fn payload(frame: &[u8]) -> (bool, &[u8]) {
    match frame.split_first() {
        Some((&MARK, rest)) => (true, rest),
        _ => (false, frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(payload: &[u8]) -> Vec<u8> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        Decompress::new(false)
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn a_frame_compresses_once_and_inflates_back_on_its_own() {
        let frame = serde_json::to_vec(&serde_json::json!({
            "type": "event", "room": "project:web", "offset": 42, "event": "task.updated",
            "data": { "id": "0190f2a4-2f6e-7b61-8d1e-6f1c2b3a4d5e", "title": "Write the release notes",
                "description": "Collect the changes since the last release and write them up",
                "status": "in_progress", "priority": 3, "project_id": "web", "assignee": "alice",
                "version": 7, "blocked": false },
            "at": "2026-12-07T08:00:00.000Z",
        }))
        .unwrap();
        let compressed = compress(&frame, CompressionLimits::default()).unwrap();
        let (deflated, body) = payload(&compressed);
        assert!(deflated);
        assert!(
            body.len() < frame.len() * 3 / 4,
            "{} of {}",
            body.len(),
            frame.len()
        );
        assert_eq!(inflate(body), frame);
        // No context is carried: the same frame compresses to the same bytes again.
        assert_eq!(
            compress(&frame, CompressionLimits::default()).unwrap(),
            compressed
        );
        assert_eq!(payload(&frame), (false, &frame[..]));
    }

    #[test]
    fn short_or_incompressible_frames_stay_plain() {
        let limits = CompressionLimits::default();
        assert_eq!(compress(br#"{"type":"pong"}"#, limits), None);
        // xorshift64: bytes DEFLATE cannot shorten.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert_eq!(compress(&noise, limits), None);
        let long = vec![b'a'; 100_000];
        let compressed = compress(&long, limits).unwrap();
        assert!(
            inflate(payload(&compressed).1) == long,
            "the long frame inflates back"
        );
    }
}
