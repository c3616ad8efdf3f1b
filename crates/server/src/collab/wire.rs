//! The y-websocket wire protocol: one message per binary frame, as lib0 encodes it (the format
//! of `y-protocols`' `sync` and `awareness` modules, which the npm `y-websocket` provider and
//! yrs's `sync` module speak).
//!
//! ```text
//! message     = varUint(type) body
//! type 0 sync = varUint(0 step1) varUint8Array(state vector)
//!             | varUint(1 step2) varUint8Array(update)
//!             | varUint(2 update) varUint8Array(update)
//! type 1      = varUint8Array(awareness update)
//! type 2 auth = varUint(0 denied) varString(reason) | varUint(1 granted)
//! type 3      = (query awareness: nothing)
//! ```
//!
//! Only the envelope is read here, and strictly: bytes after the message are an error rather
//! than a second message read silently. yrs's `MessageReader` would stop at a truncated message
//! as if the frame had ended. The payloads are decoded by yrs where they are used.

use bytes::Bytes;
use yrs::encoding::read::{Cursor, Read};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::StateVector;

/// One message from a client, borrowing the frame it came in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// "Here is what I have": answer with what it lacks.
    SyncStep1(&'a [u8]),
    /// The answer to our step 1: what we lacked. Stored and forwarded like an update.
    SyncStep2(&'a [u8]),
    /// An edit.
    Update(&'a [u8]),
    /// Cursor, selection, user: the client's awareness states.
    Awareness(&'a [u8]),
    /// "Send me every awareness state."
    QueryAwareness,
    /// y-websocket's auth message, which clients never send; ignored.
    Auth,
    /// A message type this server does not know; ignored, as the reference server does.
    Unknown(u64),
}

/// A frame that is not one well-formed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed y-websocket message: {0}")]
pub(crate) struct Malformed(&'static str);

/// Reads one message; the frame must hold exactly that.
pub(crate) fn parse(frame: &[u8]) -> Result<Incoming<'_>, Malformed> {
    let mut cursor = Cursor::new(frame);
    let kind: u64 = cursor
        .read_var()
        .map_err(|_| Malformed("no message type"))?;
    let message = match kind {
        0 => {
            let step: u64 = cursor.read_var().map_err(|_| Malformed("no sync step"))?;
            let payload = take_buf(&mut cursor, frame, "truncated sync payload")?;
            match step {
                0 => Incoming::SyncStep1(payload),
                1 => Incoming::SyncStep2(payload),
                2 => Incoming::Update(payload),
                _ => return Err(Malformed("unknown sync step")),
            }
        }
        1 => Incoming::Awareness(take_buf(&mut cursor, frame, "truncated awareness payload")?),
        2 => {
            // Read whole so trailing bytes are still detected.
            let granted: u64 = cursor.read_var().map_err(|_| Malformed("truncated auth"))?;
            if granted == 0 {
                cursor
                    .read_string()
                    .map_err(|_| Malformed("truncated auth reason"))?;
            }
            Incoming::Auth
        }
        3 => Incoming::QueryAwareness,
        // An unknown type's body cannot be delimited; the frame holds only it.
        other => return Ok(Incoming::Unknown(other)),
    };
    if cursor.next != frame.len() {
        return Err(Malformed("bytes after the message"));
    }
    Ok(message)
}

/// Reads a `varUint8Array` as a slice of the frame itself (the cursor's own `read_buf` borrows
/// the cursor, which the message would then outlive).
fn take_buf<'a>(
    cursor: &mut Cursor<'_>,
    frame: &'a [u8],
    what: &'static str,
) -> Result<&'a [u8], Malformed> {
    let len: usize = cursor.read_var().map_err(|_| Malformed(what))?;
    let start = cursor.next;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= frame.len())
        .ok_or(Malformed(what))?;
    cursor.next = end;
    Ok(&frame[start..end])
}

/// Our sync step 1: the state vector the client answers with what we lack.
pub(crate) fn sync_step1(sv: &StateVector) -> Bytes {
    Message::Sync(SyncMessage::SyncStep1(sv.clone()))
        .encode_v1()
        .into()
}

/// Our sync step 2: what the client lacks.
pub(crate) fn sync_step2(update: Vec<u8>) -> Bytes {
    Message::Sync(SyncMessage::SyncStep2(update))
        .encode_v1()
        .into()
}

/// An edit, forwarded to other editors.
pub(crate) fn update(update: Vec<u8>) -> Bytes {
    Message::Sync(SyncMessage::Update(update))
        .encode_v1()
        .into()
}

/// Awareness states (an encoded `AwarenessUpdate`), forwarded as they are.
pub(crate) fn awareness(update: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(update.len() + 6);
    yrs::encoding::write::Write::write_var(&mut out, 1u8);
    yrs::encoding::write::Write::write_buf(&mut out, update);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_type_round_trips() {
        let sv = StateVector::default();
        let step1 = sync_step1(&sv);
        assert!(matches!(parse(&step1), Ok(Incoming::SyncStep1(_))));
        assert_eq!(
            parse(&sync_step2(vec![0, 0])),
            Ok(Incoming::SyncStep2(&[0, 0]))
        );
        assert_eq!(parse(&update(vec![0, 0])), Ok(Incoming::Update(&[0, 0])));
        assert_eq!(parse(&awareness(&[0])), Ok(Incoming::Awareness(&[0])));
        assert_eq!(parse(&[3]), Ok(Incoming::QueryAwareness));
        assert_eq!(parse(&[2, 1]), Ok(Incoming::Auth));
        assert_eq!(parse(&[9, 1, 2, 3]), Ok(Incoming::Unknown(9)));
    }

    #[test]
    fn malformed_frames_are_refused_not_half_read() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0]).is_err());
        assert!(parse(&[0, 7, 0]).is_err(), "unknown sync step");
        assert!(
            parse(&[0, 2, 5, 1]).is_err(),
            "payload shorter than its length"
        );
        assert!(parse(&[0, 2, 1, 0, 0]).is_err(), "a byte after the message");
        assert!(parse(&[3, 0]).is_err());
        assert!(
            parse(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err()
        );
    }
}
