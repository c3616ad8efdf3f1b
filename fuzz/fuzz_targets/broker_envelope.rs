//! Any bytes as a message from another node on Redis, through the envelope decoder into a real
//! dispatcher.
//!
//! Checks: decoding never panics; what decodes encodes back to a message that decodes the same;
//! an event's offset is one the log can have (offsets start at 1), so the room's position on
//! this node never goes below 0 or past the highest offset it was given; and receiving the
//! message (however malformed) does not take the node down.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use taskflow_server::fuzzing::{envelope_decode, envelope_encode, BrokerHarness, Decoded};

static NODE: LazyLock<BrokerHarness> = LazyLock::new(BrokerHarness::new);
/// The highest offset handed to the node for each room, over the whole run.
static HIGHEST: LazyLock<Mutex<HashMap<String, i64>>> = LazyLock::new(Default::default);

fuzz_target!(|data: &[u8]| {
    let decoded = envelope_decode(data);
    if let Ok(decoded) = &decoded {
        let again = envelope_encode(decoded);
        assert_eq!(envelope_decode(&again).as_ref(), Ok(decoded));
    }
    let received = NODE.receive(data);
    assert_eq!(received.is_ok(), decoded.is_ok());
    if let Ok(Decoded::Event { room, offset, .. }) = decoded {
        assert!(offset >= 1, "accepted offset {offset}");
        let mut highest = HIGHEST.lock().expect("not poisoned");
        let top = highest.entry(room.clone()).or_insert(offset);
        *top = (*top).max(offset);
        if let Some(position) = NODE.position(&room) {
            assert!(
                (0..=*top).contains(&position),
                "{room} at {position}, top {top}"
            );
        }
    }
});
