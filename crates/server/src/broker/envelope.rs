//! What one node sends the others for a room: a small binary header, then the frame bytes exactly
//! as the sending node serialized them for its own clients. A receiving node orders by the
//! header's offset and queues the bytes as they are: an event is serialized once in the cluster,
//! not once per node.
//!
//! ```text
//! event:     'E' node_len:u8 node  offset:i64 at_ms:i64 flags:u8  room_len:u16 room  user_len:u16 user  frame…
//! ephemeral: 'P' node_len:u8 node  kind:u8                        room_len:u16 room  user_len:u16 user  frame…
//! ```
//! Integers are big-endian. `flags`: 1 = a task event (also for `tasks` subscribers of the
//! room's project), 2 = a member was added, 4 = a member was removed (`user` is that member).
//! Ephemeral `kind`: 1 = `presence.joined`, 2 = `presence.left`, 3 = `typing`, 4 = `stats` (room
//! `system`, no user; it travels on the cluster's system channel, see `redis::names`).

use crate::domain::ProjectId;
use crate::hub::dispatch::Prepared;
use crate::hub::feed::Ephemeral;
use bytes::{Buf, BufMut, Bytes, BytesMut};

const EVENT: u8 = b'E';
const EPHEMERAL: u8 = b'P';
const TASK_EVENT: u8 = 1;
const MEMBER_ADDED: u8 = 2;
const MEMBER_REMOVED: u8 = 4;
/// A `task.deleted` event; the name after the room is then the task's id (an event is never
/// both a membership change and a deletion).
const TASK_DELETED: u8 = 8;

/// A decoded message from another node.
pub(crate) enum Envelope {
    /// A committed event of `room`.
    Event {
        /// The node that published it.
        node: String,
        /// Its room.
        room: String,
        /// Ready to hand to the dispatcher.
        event: Prepared,
    },
    /// Presence or typing in `room`.
    Ephemeral {
        /// The node that published it.
        node: String,
        /// Its room.
        room: String,
        /// What happened.
        kind: Ephemeral,
        /// Who did it.
        user: String,
        /// The frame for local members.
        frame: Bytes,
    },
}

/// Why a message could not be read; it is dropped (the log covers lost events).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Shorter than its header says.
    #[error("truncated envelope")]
    Truncated,
    /// Not a kind this version knows.
    #[error("unknown envelope kind {0}")]
    UnknownKind(u8),
    /// A name that is not UTF-8.
    #[error("envelope names are not UTF-8")]
    NotUtf8,
    /// An event offset the log cannot have (offsets start at 1): the dispatcher orders rooms by
    /// offset, and one below 1 would move a room's position before every real event (or, at
    /// `i64::MIN`, overflow). Found by the `broker_envelope` fuzz target.
    #[error("event offset {0} is not a log offset")]
    BadOffset(i64),
}

/// Encodes a committed event of `room` sent by `node`.
pub(crate) fn encode_event(node: &str, room: &str, event: &Prepared) -> Bytes {
    let deleted = event.deleted_task.map(|id| id.to_string());
    let (flags, user) = match (&event.membership, &deleted) {
        (Some((_, user, true)), _) => (MEMBER_ADDED, user.as_str()),
        (Some((_, user, false)), _) => (MEMBER_REMOVED, user.as_str()),
        (None, Some(task)) => (TASK_DELETED, task.as_str()),
        (None, None) => (0, ""),
    };
    let flags = flags
        | if event.tasks_of.is_some() {
            TASK_EVENT
        } else {
            0
        };
    let mut out = BytesMut::with_capacity(32 + node.len() + room.len() + event.bytes.len());
    out.put_u8(EVENT);
    put_name8(&mut out, node);
    out.put_i64(event.offset);
    out.put_i64(event.at_ms);
    out.put_u8(flags);
    put_name16(&mut out, room);
    put_name16(&mut out, user);
    out.put_slice(&event.bytes);
    out.freeze()
}

/// Encodes an ephemeral frame of `room` sent by `node`.
pub(crate) fn encode_ephemeral(
    node: &str,
    room: &str,
    kind: Ephemeral,
    user: &str,
    frame: &Bytes,
) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + node.len() + room.len() + frame.len());
    out.put_u8(EPHEMERAL);
    put_name8(&mut out, node);
    out.put_u8(match kind {
        Ephemeral::Joined => 1,
        Ephemeral::Left => 2,
        Ephemeral::Typing => 3,
        Ephemeral::Stats => 4,
    });
    put_name16(&mut out, room);
    put_name16(&mut out, user);
    out.put_slice(frame);
    out.freeze()
}

/// Decodes a message; `bytes` is taken as it came from the connection (the frame is a slice of
/// it, not a copy).
pub(crate) fn decode(mut bytes: Bytes) -> Result<Envelope, DecodeError> {
    let kind = take_u8(&mut bytes)?;
    let node = take_name(&mut bytes, 1)?;
    match kind {
        EVENT => {
            if bytes.remaining() < 17 {
                return Err(DecodeError::Truncated);
            }
            let offset = bytes.get_i64();
            if offset < 1 {
                return Err(DecodeError::BadOffset(offset));
            }
            let at_ms = bytes.get_i64();
            let flags = bytes.get_u8();
            let room = take_name(&mut bytes, 2)?;
            let user = take_name(&mut bytes, 2)?;
            let project = room
                .strip_prefix("project:")
                .and_then(|p| ProjectId::parse(p).ok());
            let deleted_task = (flags & TASK_DELETED != 0)
                .then(|| uuid::Uuid::parse_str(&user).ok())
                .flatten();
            let membership = match flags & (MEMBER_ADDED | MEMBER_REMOVED) {
                0 => None,
                f => project.clone().map(|p| (p, user, f == MEMBER_ADDED)),
            };
            let membership = membership.filter(|_| flags & TASK_DELETED == 0);
            let tasks_of = project.filter(|_| flags & TASK_EVENT != 0);
            Ok(Envelope::Event {
                node,
                room,
                event: Prepared {
                    offset,
                    tasks_of,
                    membership,
                    bytes,
                    at_ms,
                    deleted_task,
                },
            })
        }
        EPHEMERAL => {
            let kind = match take_u8(&mut bytes)? {
                1 => Ephemeral::Joined,
                2 => Ephemeral::Left,
                3 => Ephemeral::Typing,
                4 => Ephemeral::Stats,
                other => return Err(DecodeError::UnknownKind(other)),
            };
            let room = take_name(&mut bytes, 2)?;
            let user = take_name(&mut bytes, 2)?;
            Ok(Envelope::Ephemeral {
                node,
                room,
                kind,
                user,
                frame: bytes,
            })
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn put_name8(out: &mut BytesMut, name: &str) {
    let name = &name.as_bytes()[..name.len().min(u8::MAX as usize)];
    out.put_u8(name.len() as u8);
    out.put_slice(name);
}

fn put_name16(out: &mut BytesMut, name: &str) {
    let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
    out.put_u16(name.len() as u16);
    out.put_slice(name);
}

fn take_u8(bytes: &mut Bytes) -> Result<u8, DecodeError> {
    if bytes.remaining() < 1 {
        return Err(DecodeError::Truncated);
    }
    Ok(bytes.get_u8())
}

/// A name with a length prefix of `width` bytes (1 or 2).
fn take_name(bytes: &mut Bytes, width: usize) -> Result<String, DecodeError> {
    if bytes.remaining() < width {
        return Err(DecodeError::Truncated);
    }
    let len = if width == 1 {
        usize::from(bytes.get_u8())
    } else {
        usize::from(bytes.get_u16())
    };
    if bytes.remaining() < len {
        return Err(DecodeError::Truncated);
    }
    let name = bytes.split_to(len);
    String::from_utf8(name.to_vec()).map_err(|_| DecodeError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_with_its_bytes_untouched() {
        let project = ProjectId::parse("p1").unwrap();
        let event = Prepared {
            offset: 42,
            tasks_of: Some(project.clone()),
            membership: Some((project, "bob".into(), false)),
            bytes: Bytes::from_static(br#"{"type":"event"}"#),
            at_ms: 7,
            deleted_task: None,
        };
        let wire = encode_event("node-a", "project:p1", &event);
        let Ok(Envelope::Event { node, room, event }) = decode(wire) else {
            panic!("an event");
        };
        assert_eq!((node.as_str(), room.as_str()), ("node-a", "project:p1"));
        assert_eq!((event.offset, event.at_ms), (42, 7));
        assert_eq!(&event.bytes[..], br#"{"type":"event"}"#);
        assert!(event.tasks_of.is_some());
        assert!(matches!(event.membership, Some((_, ref u, false)) if u == "bob"));
    }

    #[test]
    fn an_ephemeral_frame_round_trips_and_garbage_is_refused() {
        let frame = Bytes::from_static(b"{}");
        let wire = encode_ephemeral("n", "project:p1", Ephemeral::Typing, "amy", &frame);
        let Ok(Envelope::Ephemeral {
            kind, user, frame, ..
        }) = decode(wire.clone())
        else {
            panic!("an ephemeral frame");
        };
        assert_eq!(
            (kind, user.as_str(), &frame[..]),
            (Ephemeral::Typing, "amy", &b"{}"[..])
        );
        assert!(decode(wire.slice(..5)).is_err());
        assert!(decode(Bytes::from_static(b"Xz")).is_err());
    }
}
