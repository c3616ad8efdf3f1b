//! Documents across the nodes of a cluster. Each node publishes the updates it stored and the
//! awareness changes of its own editors on one broker channel (`<prefix>:docs`); every node
//! hears every message and applies those of the documents it has loaded. Pub/sub is at most
//! once: a node that missed an update finds it in the store at its next catch-up
//! (`broker_check_interval_ms`), since every update is stored before it is published.
//!
//! The message format, one per broker message:
//!
//! ```text
//! kind u8 ('U' update, 'A' awareness) | node len u8 | node | task id 16 bytes
//! | (update only) seq i64 big-endian | payload (the Yjs update, or the awareness update)
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

/// Carries this node's document messages to the other nodes (the cluster broker).
pub trait DocFeed: Send + Sync + 'static {
    /// Publishes one encoded message ([`encode`]); dropping it when the broker is down is
    /// allowed (the store has the updates).
    fn publish(&self, message: Bytes);
}

/// What one node tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DocMessage {
    /// An update of a task's document, stored under `seq`.
    Update {
        /// The sending node.
        node: String,
        /// The task.
        task: Uuid,
        /// Its sequence number in the store.
        seq: i64,
        /// The Yjs update.
        update: Bytes,
    },
    /// Awareness states of the sending node's editors (a `null` state when one left).
    Awareness {
        /// The sending node.
        node: String,
        /// The task.
        task: Uuid,
        /// The encoded awareness update.
        update: Bytes,
    },
}

/// Encodes a message.
pub(crate) fn encode(message: &DocMessage) -> Bytes {
    let (kind, node, task, seq, payload) = match message {
        DocMessage::Update {
            node,
            task,
            seq,
            update,
        } => (b'U', node, task, Some(*seq), update),
        DocMessage::Awareness { node, task, update } => (b'A', node, task, None, update),
    };
    let mut out = BytesMut::with_capacity(2 + node.len() + 16 + 8 + payload.len());
    out.put_u8(kind);
    out.put_u8(node.len().min(255) as u8);
    out.put_slice(&node.as_bytes()[..node.len().min(255)]);
    out.put_slice(task.as_bytes());
    if let Some(seq) = seq {
        out.put_i64(seq);
    }
    out.put_slice(payload);
    out.freeze()
}

/// Decodes a message; `None` for anything malformed (dropped: the store covers updates).
pub(crate) fn decode(mut bytes: Bytes) -> Option<DocMessage> {
    if bytes.remaining() < 2 {
        return None;
    }
    let kind = bytes.get_u8();
    let len = bytes.get_u8() as usize;
    if bytes.remaining() < len + 16 {
        return None;
    }
    let node = String::from_utf8(bytes.split_to(len).to_vec()).ok()?;
    let task = Uuid::from_slice(&bytes.split_to(16)).ok()?;
    match kind {
        b'U' => {
            if bytes.remaining() < 8 {
                return None;
            }
            let seq = bytes.get_i64();
            (seq >= 1).then_some(DocMessage::Update {
                node,
                task,
                seq,
                update: bytes,
            })
        }
        b'A' => Some(DocMessage::Awareness {
            node,
            task,
            update: bytes,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_dropped() {
        let task = Uuid::now_v7();
        for message in [
            DocMessage::Update {
                node: "node-a".into(),
                task,
                seq: 42,
                update: Bytes::from_static(&[1, 2, 3]),
            },
            DocMessage::Awareness {
                node: "b".into(),
                task,
                update: Bytes::new(),
            },
        ] {
            let wire = encode(&message);
            assert_eq!(decode(wire.clone()), Some(message));
            for cut in 0..wire.len().min(2 + 6 + 16 + 8) {
                if cut < wire.len() {
                    let short = decode(wire.slice(..cut));
                    assert!(
                        short.is_none() || matches!(short, Some(DocMessage::Awareness { .. })),
                        "cut at {cut}"
                    );
                }
            }
        }
        assert_eq!(decode(Bytes::from_static(b"X\x00")), None);
        let mut bad_seq = encode(&DocMessage::Update {
            node: String::new(),
            task,
            seq: 1,
            update: Bytes::new(),
        })
        .to_vec();
        bad_seq[2 + 16..2 + 16 + 8].copy_from_slice(&0i64.to_be_bytes());
        assert_eq!(decode(bad_seq.into()), None);
    }
}
