//! The cursors clients hand back: the SSE `Last-Event-ID` / long-poll cursor (base64 of JSON)
//! and the task listing cursor (`<priority>.<uuid simple>`).
//!
//! Checks: decoding any string never panics; what decodes encodes back to a cursor that decodes
//! to the same thing; a listing cursor that decodes is exactly the one the server would write
//! (its pattern is published as exact); and any epoch and offsets encode and decode unchanged.
#![no_main]

use libfuzzer_sys::arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use taskflow_server::fuzzing::{stream_cursor_decode, stream_cursor_encode};
use taskflow_server::store::TaskCursor;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        if let Some((epoch, offsets)) = stream_cursor_decode(raw) {
            let again = stream_cursor_encode(&epoch, &offsets);
            assert_eq!(stream_cursor_decode(&again), Some((epoch, offsets)));
        }
        if let Some(cursor) = TaskCursor::decode(raw) {
            assert_eq!(cursor.encode(), raw, "a listing cursor has one spelling");
            assert_eq!(TaskCursor::decode(&cursor.encode()), Some(cursor));
        }
    }
    let mut u = Unstructured::new(data);
    if let Ok((epoch, offsets)) = <(String, BTreeMap<String, i64>)>::arbitrary(&mut u) {
        let encoded = stream_cursor_encode(&epoch, &offsets);
        assert_eq!(stream_cursor_decode(&encoded), Some((epoch, offsets)));
    }
});
