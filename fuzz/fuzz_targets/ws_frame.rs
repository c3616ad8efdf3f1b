//! A client's bytes on an upgraded connection, through the WebSocket frame reader.
//!
//! Input: one byte picks the message limit, one picks how the bytes are cut into reads, the rest
//! is the stream. Checks: no message is larger than the limit, no control payload larger than
//! 125 bytes, a failure closes with 1002, 1007 or 1009; and the reader's output does not depend
//! on how the network cut the bytes (byte by byte, in odd pieces, or all at once).
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskflow_server::fuzzing::{ws_frames, Frame};

const LIMITS: [usize; 6] = [0, 1, 16, 125, 1000, 70_000];

fuzz_target!(|data: &[u8]| {
    let [limit, cut, stream @ ..] = data else {
        return;
    };
    let max = LIMITS[usize::from(*limit) % LIMITS.len()];
    let whole = ws_frames(stream, &[], max, 8192);
    for frame in &whole.frames {
        match frame {
            Frame::Text(text) => assert!(text.len() <= max, "{} > {max}", text.len()),
            Frame::Binary(n) => assert!(*n <= max, "{n} > {max}"),
            Frame::Ping(payload) => assert!(payload.len() <= 125),
            Frame::Close(Some((_, reason))) => assert!(reason.len() <= 123),
            Frame::Pong | Frame::Close(None) => {}
        }
    }
    if let Some((code, _)) = whole.violation {
        assert!([1002, 1007, 1009].contains(&code), "closed with {code}");
    }
    let pieces: Vec<usize> = (0..stream.len())
        .map(|i| 1 + (usize::from(*cut) + i * 7) % (1 + usize::from(*cut) % 13))
        .collect();
    let cut_up = ws_frames(stream, &pieces, max, 16);
    assert_eq!(whole, cut_up, "the reads were cut into {pieces:?}");
});
