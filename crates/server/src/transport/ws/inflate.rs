//! Reading compressed client messages (RFC 7692 §7.2.2): a message whose first frame has RSV1
//! set is the DEFLATE of its payload; its fragments are inflated as they arrive, and the
//! output is counted against `ws_max_message_bytes` as it is produced, so a small frame that
//! would inflate to gigabytes (a decompression bomb) fails with 1009 once the inflated message
//! passes the limit, never later.
//!
//! The inflate state (about 40 KiB with its window) exists only while it is needed: a client
//! that negotiated `client_no_context_takeover` gets one per message, dropped at its end; a
//! client with context takeover (its messages may refer to its earlier ones) gets one with its
//! first compressed message, kept for the connection. A connection that never sends a
//! compressed message holds none.

use super::read::Violation;
use super::Deflate;
use flate2::{Decompress, FlushDecompress, Status};

/// What a connection that negotiated `permessage-deflate` keeps for reading.
#[derive(Debug)]
pub(crate) struct Inflater {
    /// Whether the client resets its compressor for each message.
    no_context_takeover: bool,
    /// The window the client inflates what the server sends with (kept here, where the
    /// connection already holds what it negotiated).
    server_window_bits: u8,
    /// The state, while a message is being inflated or kept between messages.
    state: Option<Box<Decompress>>,
}

/// The output of one inflate step, on the stack.
const CHUNK: usize = 4096;

impl Inflater {
    pub(crate) fn new(deflate: Deflate) -> Self {
        Self {
            no_context_takeover: deflate.client_no_context_takeover,
            server_window_bits: deflate.server_window_bits,
            state: None,
        }
    }

    /// The longest frame the client can take compressed without context: one its window holds.
    pub(crate) fn sends_up_to(&self) -> usize {
        1usize << self.server_window_bits
    }

    /// Inflates one fragment of a compressed message onto `out`, failing once `out` would pass
    /// `limit` bytes. `last`: the message ends with this fragment (the sync-flush tail the
    /// sender removed is put back, and a per-message state is dropped).
    pub(crate) fn fragment(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), Violation> {
        let state = self
            .state
            .get_or_insert_with(|| Box::new(Decompress::new(false)));
        let result = inflate(state, input, out, limit).and_then(|()| {
            if last {
                inflate(state, &crate::hub::deflated::TAIL, out, limit)
            } else {
                Ok(())
            }
        });
        if result.is_err() || (last && self.no_context_takeover) {
            self.state = None;
        }
        result
    }

    /// Whether a state is held now (for the memory tests).
    #[cfg(test)]
    pub(crate) fn holds_state(&self) -> bool {
        self.state.is_some()
    }
}

fn inflate(
    state: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), Violation> {
    let mut chunk = [0u8; CHUNK];
    loop {
        // One byte more than the limit allows: producing it proves the message too big.
        let room = (limit + 1).saturating_sub(out.len()).min(CHUNK);
        let (before_in, before_out) = (state.total_in(), state.total_out());
        let status = state
            .decompress(input, &mut chunk[..room], FlushDecompress::Sync)
            .map_err(|_| Violation::BadDeflate)?;
        let consumed = (state.total_in() - before_in) as usize;
        let produced = (state.total_out() - before_out) as usize;
        out.extend_from_slice(&chunk[..produced]);
        if out.len() > limit {
            return Err(Violation::TooBig(limit));
        }
        input = &input[consumed..];
        match status {
            // A final block (BFINAL) ends the DEFLATE stream: nothing but the appended tail may
            // follow it, and the next message starts a new stream.
            Status::StreamEnd => {
                if !crate::hub::deflated::TAIL.ends_with(input) {
                    return Err(Violation::BadDeflate);
                }
                state.reset(false);
                return Ok(());
            }
            // All input taken and the output not filled: nothing more to come from it.
            _ if input.is_empty() && produced < room => return Ok(()),
            _ if consumed == 0 && produced == 0 => return Err(Violation::BadDeflate),
            _ => {}
        }
    }
}
