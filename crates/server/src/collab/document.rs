//! One open document: its Yjs state and awareness, and the channel its editors' connections
//! follow. It knows neither sockets nor SQL: the registry (`super`) stores an update before it
//! calls [`Document::apply`], and connections turn [`Outgoing`] into frames.
//!
//! Every lock here is a short synchronous section (never held across an await). Writes of one
//! document are serialized by [`Document::writing`], an async lock held across the store's
//! append, so checks (size limits) see every update before the next one and a document's
//! updates are applied in the order they were stored.

use super::wire;
use super::Refusal;
use crate::domain::{DocName, ProjectId, UserId};
use crate::store::StoredDoc;
use bytes::Bytes;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::broadcast;
use yrs::sync::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, GetString, ReadTxn, StateVector, Text, TextRef, Transact, Update};

/// The root type every client binds the description to: a `Y.Text` named `description`.
pub const TEXT: &str = "description";

/// Identifies one editor connection within this node.
pub(crate) type PeerId = u64;

/// What the connections of a document are told.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// A frame for every editor except `from` (`None`: for every editor).
    Frame {
        /// The connection it came from, which has it already.
        from: Option<PeerId>,
        /// The encoded message.
        bytes: Bytes,
    },
    /// Close the connections of `user` (every connection, if `None`) with this code.
    Close {
        /// Whose connections; `None` for all.
        user: Option<UserId>,
        /// The close code (`taskflow_protocol::close`).
        code: u16,
        /// The close reason.
        reason: &'static str,
    },
}

/// The Yjs side of a document.
struct State {
    /// The awareness states; it owns the document.
    awareness: Awareness,
    /// The `description` text, for reading it and its length.
    text: TextRef,
    /// How many bytes the document takes in the store (snapshot and updates since).
    stored_bytes: usize,
    /// Updates stored since the last compaction.
    since_compaction: u32,
    /// Which connection introduced each awareness client id: only it may change that state.
    owners: HashMap<u64, PeerId>,
}

/// When the description was last edited and not yet written to its task.
#[derive(Debug, Default)]
pub(super) struct Mirror {
    /// The first edit not yet written, if any.
    pub(super) dirty_since: Option<Instant>,
    /// The latest edit.
    pub(super) last_edit: Option<Instant>,
    /// Whether a task is waiting to write it.
    pub(super) running: bool,
}

/// An open document.
pub struct Document {
    name: DocName,
    project: ProjectId,
    state: Mutex<State>,
    /// Held from an update's checks to its application (across the store's append).
    pub(super) writing: tokio::sync::Mutex<()>,
    out: broadcast::Sender<Outgoing>,
    /// Connections and REST edits using the document; at 0 it may be unloaded.
    pub(super) leases: AtomicUsize,
    /// When the last lease was given back.
    pub(super) released: Mutex<Instant>,
    pub(super) mirror: Mutex<Mirror>,
    /// Which stored updates the document holds: every one through `through`, and those in
    /// `above`. A cluster node catches up from the store past `through`.
    seqs: Mutex<Seqs>,
}

/// See [`Document::seqs`].
#[derive(Debug, Default)]
struct Seqs {
    through: i64,
    above: std::collections::BTreeSet<i64>,
}

/// How many frames a connection may fall behind before it is closed as a slow consumer.
const CHANNEL: usize = 512;

impl Document {
    /// Builds the document from what the store holds. An update that yrs cannot apply (which
    /// the checks before storing should make impossible) is logged and skipped rather than
    /// making the document unloadable.
    pub(super) fn load(name: DocName, project: ProjectId, stored: StoredDoc) -> Self {
        let doc = new_doc();
        let text = doc.get_or_insert_text(TEXT);
        for update in std::iter::once(&stored.snapshot).chain(&stored.updates) {
            if let Err(why) = apply_bytes(&doc, update) {
                tracing::error!(doc = %name, %why, "a stored document update does not apply; skipped");
            }
        }
        let (out, _) = broadcast::channel(CHANNEL);
        Self {
            name,
            project,
            state: Mutex::new(State {
                awareness: Awareness::new(doc),
                text,
                stored_bytes: stored.bytes,
                since_compaction: stored.updates.len() as u32,
                owners: HashMap::new(),
            }),
            writing: tokio::sync::Mutex::new(()),
            out,
            leases: AtomicUsize::new(0),
            released: Mutex::new(Instant::now()),
            mirror: Mutex::new(Mirror::default()),
            seqs: Mutex::new(Seqs {
                through: stored.through,
                above: Default::default(),
            }),
        }
    }

    /// Notes that the document holds the stored update `seq` (or, with `all`, every update
    /// through it).
    pub(super) fn holds(&self, seq: i64, all: bool) {
        let mut seqs = self.seqs.lock().unwrap_or_else(|e| e.into_inner());
        if all {
            seqs.through = seqs.through.max(seq);
        } else if seq > seqs.through {
            seqs.above.insert(seq);
        }
        loop {
            let next = seqs.through + 1;
            if !seqs.above.remove(&next) {
                break;
            }
            seqs.through = next;
        }
        let through = seqs.through;
        seqs.above.retain(|&s| s > through);
    }

    /// Every stored update through this one is in the document.
    pub(super) fn held_through(&self) -> i64 {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner()).through
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The document's name.
    pub(crate) fn name(&self) -> DocName {
        self.name
    }

    /// The project whose members may edit it.
    pub(crate) fn project(&self) -> &ProjectId {
        &self.project
    }

    /// Follows what the document's connections are told.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Outgoing> {
        self.out.subscribe()
    }

    /// Tells every connection (the ones that are not following yet miss nothing: they sync
    /// after subscribing).
    pub(super) fn tell(&self, message: Outgoing) {
        let _ = self.out.send(message);
    }

    /// The description's text now.
    pub(crate) fn text(&self) -> String {
        let state = self.state();
        let txn = state.awareness.doc().transact();
        state.text.get_string(&txn)
    }

    /// Our sync step 1.
    pub(crate) fn step1(&self) -> Bytes {
        let state = self.state();
        let sv = state.awareness.doc().transact().state_vector();
        wire::sync_step1(&sv)
    }

    /// The answer to a client's step 1: everything it lacks.
    pub(crate) fn step2(&self, state_vector: &[u8]) -> Result<Bytes, Refusal> {
        let sv = StateVector::decode_v1(state_vector)
            .map_err(|_| Refusal::Malformed("a state vector that does not decode"))?;
        let state = self.state();
        let update = state
            .awareness
            .doc()
            .transact()
            .encode_state_as_update_v1(&sv);
        Ok(wire::sync_step2(update))
    }

    /// The whole state as one update (for compaction and for REST edits).
    pub(super) fn full_state(&self) -> Vec<u8> {
        let state = self.state();
        let txn = state.awareness.doc().transact();
        txn.encode_state_as_update_v1(&StateVector::default())
    }

    /// Checks an update from a client before it is stored: it decodes, and with it the document
    /// stays within its limits. `Ok(false)`: it is empty (nothing to store or forward).
    pub(super) fn check(&self, update: &[u8], limits: &super::DocLimits) -> Result<bool, Refusal> {
        let decoded = Update::decode_v1(update)
            .map_err(|_| Refusal::Malformed("an update that does not decode"))?;
        if decoded.is_empty() {
            return Ok(false);
        }
        let state = self.state();
        if state.stored_bytes + update.len() > limits.max_doc_bytes {
            return Err(Refusal::TooLarge(
                "the document would exceed docs_max_bytes",
            ));
        }
        // The text grows by at most the update's size, and its length in UTF-16 units bounds
        // its length in characters: only an update near the limit needs the exact count.
        let txn = state.awareness.doc().transact();
        let units = state.text.len(&txn) as usize;
        if units + update.len() > limits.max_text_chars {
            let mut whole = txn.encode_state_as_update_v1(&StateVector::default());
            drop(txn);
            drop(state);
            let scratch = new_doc();
            let text = scratch.get_or_insert_text(TEXT);
            apply_bytes(&scratch, &std::mem::take(&mut whole))
                .map_err(|_| Refusal::Malformed("an update that does not apply"))?;
            apply_bytes(&scratch, update)
                .map_err(|_| Refusal::Malformed("an update that does not apply"))?;
            let chars = text.get_string(&scratch.transact()).chars().count();
            if chars > limits.max_text_chars {
                return Err(Refusal::TooLarge(
                    "the description would be longer than a task description may be",
                ));
            }
        }
        Ok(true)
    }

    /// Applies a stored update and forwards it to every editor but `from`. Returns whether the
    /// description's text changed, and whether a compaction is due.
    pub(super) fn apply(
        &self,
        update: Vec<u8>,
        from: Option<PeerId>,
        compact_every: u32,
    ) -> Result<(bool, bool), Refusal> {
        let mut state = self.state();
        let before = {
            let txn = state.awareness.doc().transact();
            state.text.get_string(&txn)
        };
        apply_bytes(state.awareness.doc(), &update)
            .map_err(|_| Refusal::Malformed("an update that does not apply"))?;
        let changed = {
            let txn = state.awareness.doc().transact();
            state.text.get_string(&txn) != before
        };
        state.stored_bytes += update.len();
        state.since_compaction += 1;
        let compact = state.since_compaction >= compact_every;
        drop(state);
        self.tell(Outgoing::Frame {
            from,
            bytes: wire::update(update),
        });
        Ok((changed, compact))
    }

    /// After a compaction: the stored size it left.
    pub(super) fn compacted(&self, stored_bytes: usize) {
        let mut state = self.state();
        state.stored_bytes = stored_bytes;
        state.since_compaction = 0;
    }

    /// Every awareness state, as one message (`None` when there is none).
    pub(crate) fn awareness_all(&self) -> Option<Bytes> {
        let state = self.state();
        let update = state.awareness.update().ok()?;
        (!update.clients.is_empty()).then(|| wire::awareness(&update.encode_v1()))
    }

    /// Applies a connection's awareness update and tells every editor (the sender too: the
    /// y-websocket client counts any message as a sign of life). Entries for client ids another
    /// connection introduced are dropped, and a connection introduces at most
    /// `max_clients` ids; `owned` is where this connection's ids are kept.
    /// Returns what was applied, for the other nodes.
    pub(crate) fn awareness(
        &self,
        peer: PeerId,
        payload: &[u8],
        owned: &mut Vec<u64>,
        limits: &super::DocLimits,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let mut update = AwarenessUpdate::decode_v1(payload)
            .map_err(|_| Refusal::Malformed("an awareness update that does not decode"))?;
        let mut state = self.state();
        update.clients.retain(|client, entry| {
            let id = client.get();
            if entry.json.len() > limits.max_awareness_bytes {
                return false;
            }
            match state.owners.get(&id) {
                Some(owner) => *owner == peer,
                None if owned.len() < limits.max_awareness_clients => {
                    state.owners.insert(id, peer);
                    owned.push(id);
                    true
                }
                None => false,
            }
        });
        if update.clients.is_empty() {
            return Ok(None);
        }
        let forwarded = update.encode_v1();
        state
            .awareness
            .apply_update(update)
            .map_err(|_| Refusal::Malformed("an awareness update that does not apply"))?;
        drop(state);
        self.tell(Outgoing::Frame {
            from: None,
            bytes: wire::awareness(&forwarded),
        });
        Ok(Some(forwarded))
    }

    /// Awareness states from another node's editors: applied (except for client ids an editor
    /// here owns) and told to this node's editors.
    pub(super) fn remote_awareness(&self, payload: &[u8]) {
        let Ok(mut update) = AwarenessUpdate::decode_v1(payload) else {
            return;
        };
        let mut state = self.state();
        update
            .clients
            .retain(|client, _| !state.owners.contains_key(&client.get()));
        if update.clients.is_empty() {
            return;
        }
        let forwarded = update.encode_v1();
        if state.awareness.apply_update(update).is_err() {
            return;
        }
        drop(state);
        self.tell(Outgoing::Frame {
            from: None,
            bytes: wire::awareness(&forwarded),
        });
    }

    /// Removes the states of other nodes' editors not renewed for `timeout_ms` (their node
    /// died: editors renew theirs every 15 s) and tells this node's editors.
    pub(super) fn expire_remote_awareness(&self, timeout_ms: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut state = self.state();
        let stale: Vec<ClientID> = state
            .awareness
            .iter()
            .filter(|(client, s)| {
                s.data.is_some()
                    && !state.owners.contains_key(&client.get())
                    && now.saturating_sub(s.last_updated) > timeout_ms
            })
            .map(|(client, _)| client)
            .collect();
        if stale.is_empty() {
            return;
        }
        for &client in &stale {
            state.awareness.remove_state(client);
        }
        let update = state.awareness.update_with_clients(stale);
        drop(state);
        if let Ok(update) = update {
            self.tell(Outgoing::Frame {
                from: None,
                bytes: wire::awareness(&update.encode_v1()),
            });
        }
    }

    /// A connection ended: its awareness states are removed, and every editor is told.
    /// Returns the removal, for the other nodes.
    pub(crate) fn forget(&self, owned: &[u64]) -> Option<Vec<u8>> {
        if owned.is_empty() {
            return None;
        }
        let mut state = self.state();
        let mut removed = Vec::with_capacity(owned.len());
        for &id in owned {
            state.owners.remove(&id);
            let client = ClientID::new(id);
            if state.awareness.meta(client).is_some() {
                state.awareness.remove_state(client);
                removed.push(client);
            }
        }
        let update = state.awareness.update_with_clients(removed);
        drop(state);
        let update = update.ok().filter(|u| !u.clients.is_empty())?.encode_v1();
        self.tell(Outgoing::Frame {
            from: None,
            bytes: wire::awareness(&update),
        });
        Some(update)
    }

    /// How many awareness states there are (for the board's "who is editing").
    pub(crate) fn editors(&self) -> Vec<serde_json::Value> {
        let state = self.state();
        state
            .awareness
            .iter()
            .filter_map(|(_, s)| s.data.as_deref().and_then(|j| serde_json::from_str(j).ok()))
            .collect()
    }

    /// Gives a lease back; returns how many remain.
    pub(super) fn release(&self) -> usize {
        *self.released.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.leases.fetch_sub(1, Ordering::AcqRel) - 1
    }
}

/// A document as the server keeps them: positions counted in UTF-16 code units, as Yjs counts
/// them. With yrs's default (UTF-8 bytes), an item a JavaScript client split inside a surrogate
/// pair (which Yjs allows, storing U+FFFD halves) has a different length in bytes than the
/// whole it came from, and yrs's length bookkeeping underflows on a later delete.
pub(super) fn new_doc() -> Doc {
    Doc::with_options(yrs::Options {
        offset_kind: yrs::OffsetKind::Utf16,
        ..yrs::Options::default()
    })
}

/// Applies an encoded update to a document, turning a yrs panic (a bug, which should never
/// reach a server) into an error so that it cannot take the document down.
pub(super) fn apply_bytes(doc: &Doc, update: &[u8]) -> Result<(), String> {
    let update = Update::decode_v1(update).map_err(|e| e.to_string())?;
    let mut txn = doc
        .try_transact_mut()
        .map_err(|e| format!("no transaction: {e}"))?;
    match std::panic::catch_unwind(AssertUnwindSafe(|| txn.apply_update(update))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("yrs panicked applying the update".to_owned()),
    }
}

/// The edit that turns `old` into `new`, made on a copy of the document with a fresh client id
/// (so the live document is changed only once the edit is stored): the common prefix and
/// suffix are kept, the middle replaced. `None` when there is nothing to change.
pub(super) fn edit_to(full_state: &[u8], old: &str, new: &str) -> Option<Vec<u8>> {
    if old == new {
        return None;
    }
    let prefix = old
        .char_indices()
        .zip(new.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, a), _)| i + a.len_utf8());
    let (old_rest, new_rest) = (&old[prefix..], &new[prefix..]);
    let suffix = old_rest
        .chars()
        .rev()
        .zip(new_rest.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum::<usize>()
        .min(old_rest.len().min(new_rest.len()));
    let removed = &old_rest[..old_rest.len() - suffix];
    let inserted = &new_rest[..new_rest.len() - suffix];
    // Positions in UTF-16 code units, as the document counts them (`new_doc`).
    let at = old[..prefix].encode_utf16().count() as u32;
    let removed = removed.encode_utf16().count() as u32;
    let scratch = new_doc();
    let text = scratch.get_or_insert_text(TEXT);
    apply_bytes(&scratch, full_state).ok()?;
    let mut txn = scratch.try_transact_mut().ok()?;
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        if removed > 0 {
            text.remove_range(&mut txn, at, removed);
        }
        if !inserted.is_empty() {
            text.insert(&mut txn, at, inserted);
        }
        txn.encode_update_v1()
    }))
    .ok()
}

/// The first snapshot of a document whose task has this description.
pub(super) fn seed(description: Option<&str>) -> Vec<u8> {
    let doc = new_doc();
    let text = doc.get_or_insert_text(TEXT);
    if let Some(description) = description.filter(|d| !d.is_empty()) {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, description);
    }
    let txn = doc.transact();
    txn.encode_state_as_update_v1(&StateVector::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(updates: &[&[u8]]) -> String {
        let doc = new_doc();
        let text = doc.get_or_insert_text(TEXT);
        for update in updates {
            apply_bytes(&doc, update).unwrap();
        }
        let txn = doc.transact();
        text.get_string(&txn)
    }

    #[test]
    fn an_edit_turns_one_text_into_the_other() {
        let cases = [
            ("", "hello"),
            ("hello", ""),
            ("hello world", "hello brave world"),
            ("naïve café", "naïf café"),
            ("ab🎉cd", "ab🎈cd"),
            ("same", "same!"),
            ("aaaa", "aa"),
        ];
        for (old, new) in cases {
            let base = seed(Some(old));
            assert_eq!(text_of(&[&base]), old);
            match edit_to(&base, old, new) {
                Some(edit) => assert_eq!(text_of(&[&base, &edit]), new, "{old:?} -> {new:?}"),
                None => assert_eq!(old, new),
            }
        }
        assert!(edit_to(&seed(Some("x")), "x", "x").is_none());
    }

    #[test]
    fn a_text_split_inside_a_surrogate_pair_stays_editable() {
        // What a JavaScript client may do: insert between the two halves of an emoji, then
        // delete across them. Found by the npm y-websocket test (a panic with byte offsets).
        let client = new_doc();
        let text = client.get_or_insert_text(TEXT);
        {
            let mut txn = client.transact_mut();
            text.insert(&mut txn, 0, "ab🎉cd🎈ef");
            text.insert(&mut txn, 3, "X");
            text.remove_range(&mut txn, 2, 3);
        }
        let state = client
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let now = text_of(&[&state]);
        let edit = edit_to(&state, &now, "fresh text").expect("an edit");
        assert_eq!(text_of(&[&state, &edit]), "fresh text");
    }

    #[test]
    fn garbage_does_not_apply_and_does_not_panic() {
        let doc = new_doc();
        for garbage in [
            &[1u8, 2, 3][..],
            &[255; 40],
            &[0, 0, 1],
            &[1, 1, 200, 200, 200, 200, 1],
        ] {
            let _ = apply_bytes(&doc, garbage);
        }
    }
}
