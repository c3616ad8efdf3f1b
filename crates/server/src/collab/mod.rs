//! Collaborative documents: a task's description as a Yjs document that several people edit at
//! once (docs/protocol.md, "Collaborative documents"). Concurrent edits merge without conflict
//! by construction (yrs, the Rust port of Yjs); this module makes them durable, shared and
//! bounded:
//!
//! - **Durable before shared.** An update is checked, stored (one append, through the group
//!   commit on SQLite), and only then applied to the open document and forwarded to its other
//!   editors. Whatever anyone has seen survives a crash; loading is snapshot + later updates.
//! - **One document per name on a node.** The registry loads each document once
//!   ([`Collab::open`] hands out leases); with no lease left for `docs_idle_unload_secs` it is
//!   written back (description, compaction) and unloaded.
//! - **One truth for the description.** The text of the `description` `Y.Text` is written to
//!   the task's row once edits settle (`docs_settle_ms`, at most twice that behind), as an
//!   ordinary task update (one logged `task.updated` per burst). A REST `PATCH` of the
//!   description is made an edit of the document, stored in the same transaction as the row.
//! - **Bounded.** Updates and awareness states have size limits, the stored document a total
//!   size, the text the length of a description; a refused update reaches neither the store
//!   nor other editors, and its connection is closed with the code [`Refusal::code`] names.
//!
//! It knows neither HTTP nor SQL: sockets are `transport::docs`, storage is `store::docs`.

mod document;
mod feed;
pub(crate) mod wire;

pub use feed::DocFeed;

pub use document::{Document, TEXT};
pub(crate) use document::{Outgoing, PeerId};

use crate::domain::{DocName, ProjectId, TaskChange};
use crate::store::{Store, StoreError};
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskflow_protocol::{close, Task};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// What bounds a document and its editors.
#[derive(Debug, Clone)]
pub struct DocLimits {
    /// Largest message a client may send (close 1009 beyond).
    pub max_message_bytes: usize,
    /// Most bytes a document may take in the store, snapshot and updates (close 4413 beyond).
    pub max_doc_bytes: usize,
    /// Longest description text, in characters: a task's description limit.
    pub max_text_chars: usize,
    /// Largest awareness state of one client, in bytes (larger entries are dropped).
    pub max_awareness_bytes: usize,
    /// Awareness client ids one connection may introduce (more are dropped).
    pub max_awareness_clients: usize,
    /// How long the description waits without an edit before it is written to the task.
    pub settle: Duration,
    /// How long a document with no editor stays loaded.
    pub idle_unload: Duration,
    /// Stored updates after which the document is compacted into a snapshot.
    pub compact_every: u32,
}

impl Default for DocLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            max_doc_bytes: 4 * 1024 * 1024,
            max_text_chars: crate::domain::rules::DESCRIPTION.max_chars,
            max_awareness_bytes: 4 * 1024,
            max_awareness_clients: 4,
            settle: Duration::from_millis(500),
            idle_unload: Duration::from_secs(30),
            compact_every: 200,
        }
    }
}

/// Why the server refused what a client sent; the connection closes with [`Refusal::code`].
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Bytes that do not decode or apply (close 1007).
    #[error("{0}")]
    Malformed(&'static str),
    /// The document would grow past a limit (close 4413).
    #[error("{0}")]
    TooLarge(&'static str),
    /// The document is gone: its task was deleted (close 4404).
    #[error("the task was deleted")]
    Gone,
    /// The store failed; nothing was stored or forwarded (close 1011).
    #[error("the store failed: {0}")]
    Store(StoreError),
}

impl Refusal {
    /// The close code that tells the client.
    pub fn code(&self) -> u16 {
        match self {
            Self::Malformed(_) => close::INVALID_PAYLOAD,
            Self::TooLarge(_) => close::DOC_TOO_LARGE,
            Self::Gone => close::DOC_DELETED,
            Self::Store(_) => close::INTERNAL_ERROR,
        }
    }

    /// The close reason that tells the client why.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(why) | Self::TooLarge(why) => why,
            Self::Gone => "the task was deleted",
            Self::Store(_) => "the update could not be stored; reconnect",
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DocNotFound(_) | StoreError::TaskNotFound(_) => Self::Gone,
            other => Self::Store(other),
        }
    }
}

impl crate::hub::DocSignals for Collab {
    fn task_deleted(&self, task: Uuid) {
        Collab::task_deleted(self, task);
    }

    fn member_removed(&self, project: &ProjectId, user: &str) {
        Collab::member_removed(self, project, user);
    }
}

/// The registry of open documents on this node; cheap to clone.
#[derive(Clone)]
pub struct Collab {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    limits: DocLimits,
    docs: DashMap<DocName, Arc<Slot>>,
    next_peer: AtomicU64,
    /// The other nodes of a cluster, and this node's id; unset on a single node.
    feed: std::sync::OnceLock<(Arc<dyn DocFeed>, String)>,
}

/// How long another node's awareness state lives without renewal (y-protocols' timeout).
const AWARENESS_TIMEOUT_MS: u64 = 30_000;

/// A document being loaded or loaded.
#[derive(Default)]
struct Slot {
    doc: OnceCell<Arc<Document>>,
}

/// A document in use: while any lease is held it stays loaded. Dropping the last one starts
/// the idle countdown.
pub struct Lease {
    doc: Arc<Document>,
    collab: Collab,
}

impl std::ops::Deref for Lease {
    type Target = Document;
    fn deref(&self) -> &Document {
        &self.doc
    }
}

impl Lease {
    /// The document itself, for work that outlives a borrow of the lease.
    pub(crate) fn shared(&self) -> Arc<Document> {
        self.doc.clone()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.doc.release() == 0 {
            self.collab.unload_when_idle(self.doc.clone());
        }
    }
}

impl Collab {
    /// An empty registry over this store.
    pub fn new(store: Store, limits: DocLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                limits,
                docs: DashMap::new(),
                next_peer: AtomicU64::new(1),
                feed: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &DocLimits {
        &self.inner.limits
    }

    /// A fresh id for an editor connection.
    pub(crate) fn peer_id(&self) -> PeerId {
        self.inner.next_peer.fetch_add(1, Ordering::Relaxed)
    }

    /// How many documents are loaded.
    pub fn loaded(&self) -> usize {
        self.inner.docs.len()
    }

    /// The document, loaded once however many ask at once. `project` is the task's project,
    /// which the caller has already checked the editor may see.
    pub async fn open(&self, name: DocName, project: ProjectId) -> Result<Lease, StoreError> {
        loop {
            let slot = self.inner.docs.entry(name).or_default().clone();
            let loaded = slot
                .doc
                .get_or_try_init(|| self.load(name, project.clone()))
                .await;
            let doc = match loaded {
                Ok(doc) => doc.clone(),
                Err(e) => {
                    self.inner
                        .docs
                        .remove_if(&name, |_, s| Arc::ptr_eq(s, &slot) && s.doc.get().is_none());
                    return Err(e);
                }
            };
            // The lease is taken under the map's lock, so an unload (which removes the slot
            // under the same lock, only if no lease is held) cannot slip in between.
            if let Some(current) = self.inner.docs.get(&name) {
                if Arc::ptr_eq(&current, &slot) {
                    doc.leases.fetch_add(1, Ordering::AcqRel);
                    return Ok(Lease {
                        doc,
                        collab: self.clone(),
                    });
                }
            }
            // Unloaded between the load and the lease: the next turn loads it again.
        }
    }

    async fn load(&self, name: DocName, project: ProjectId) -> Result<Arc<Document>, StoreError> {
        let store = &self.inner.store;
        let task = store.get_task(name.task()).await?;
        let description = task.description.clone();
        let stored = store
            .load_doc(&name.to_string(), move || {
                document::seed(description.as_deref())
            })
            .await?;
        let doc = Arc::new(Document::load(name, project, stored));
        // A crash between a document's append and the description's write leaves the row
        // behind; the document is the truth, so the row catches up now.
        if task.description.unwrap_or_default() != doc.text() {
            self.text_changed(&doc);
        }
        Ok(doc)
    }

    /// Stores a client's update, then applies and forwards it. `Ok` also for an empty update
    /// (nothing stored). Any error means nothing was stored or forwarded.
    pub(crate) async fn submit(
        &self,
        doc: &Arc<Document>,
        from: PeerId,
        update: &[u8],
    ) -> Result<(), Refusal> {
        let limits = &self.inner.limits;
        let _writing = doc.writing.lock().await;
        if !doc.check(update, limits)? {
            return Ok(());
        }
        let seq = self
            .inner
            .store
            .append_doc_update(&doc.name().to_string(), update.to_vec())
            .await?;
        metrics::counter!("doc_updates_total").increment(1);
        self.applied(doc, update.to_vec(), Some(from), seq)
    }

    /// A stored update, applied here and told to the other nodes.
    fn applied(
        &self,
        doc: &Arc<Document>,
        update: Vec<u8>,
        from: Option<PeerId>,
        seq: i64,
    ) -> Result<(), Refusal> {
        if let Some((feed, node)) = self.inner.feed.get() {
            feed.publish(feed::encode(&feed::DocMessage::Update {
                node: node.clone(),
                task: doc.name().task(),
                seq,
                update: update.clone().into(),
            }));
        }
        let (changed, compact) = doc.apply(update, from, self.inner.limits.compact_every)?;
        doc.holds(seq, false);
        if changed {
            self.text_changed(doc);
        }
        if compact {
            let collab = self.clone();
            let doc = doc.clone();
            tokio::spawn(async move { collab.compact(&doc).await });
        }
        Ok(())
    }

    /// A REST change of a task. A new description becomes an edit of the document, stored in
    /// the same transaction as the row (with `If-Match`), then forwarded to the editors; the
    /// other fields change as in any update.
    pub async fn update_task(
        &self,
        id: Uuid,
        change: TaskChange,
        if_match: Option<i64>,
    ) -> Result<Task, StoreError> {
        let store = &self.inner.store;
        let Some(description) = change.description.clone() else {
            return store.update_task(id, change, if_match).await;
        };
        let new = description
            .map(|d| d.as_str().to_owned())
            .unwrap_or_default();
        let project = store.task_project(id).await?;
        let name = DocName::Task(id);
        let doc = self.open(name, project).await?;
        let _writing = doc.writing.lock().await;
        let Some(edit) = document::edit_to(&doc.full_state(), &doc.text(), &new) else {
            return store.update_task(id, change, if_match).await;
        };
        let (task, seq) = store
            .update_task_and_doc(id, change, if_match, name.to_string(), edit.clone())
            .await?;
        let doc = doc.doc.clone();
        if let Err(why) = self.applied(&doc, edit, None, seq) {
            tracing::error!(doc = %name, %why, "a stored REST edit does not apply");
        }
        Ok(task)
    }

    /// The description changed: write it to the task once edits settle.
    fn text_changed(&self, doc: &Arc<Document>) {
        let now = Instant::now();
        let mut mirror = doc.mirror.lock().unwrap_or_else(|e| e.into_inner());
        mirror.last_edit = Some(now);
        mirror.dirty_since.get_or_insert(now);
        if mirror.running {
            return;
        }
        mirror.running = true;
        let collab = self.clone();
        let doc = doc.clone();
        tokio::spawn(async move { collab.mirror(doc).await });
    }

    /// Waits until the edits settle (`settle` without one, or twice that since the first),
    /// then writes the text; again while edits keep coming.
    async fn mirror(&self, doc: Arc<Document>) {
        let settle = self.inner.limits.settle;
        loop {
            let due = {
                let mirror = doc.mirror.lock().unwrap_or_else(|e| e.into_inner());
                match (mirror.dirty_since, mirror.last_edit) {
                    (Some(first), Some(last)) => (last + settle).min(first + 2 * settle),
                    _ => Instant::now(),
                }
            };
            if Instant::now() < due {
                tokio::time::sleep_until(due.into()).await;
                continue;
            }
            doc.mirror
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .dirty_since = None;
            match self.write_text(&doc).await {
                Ok(()) => {}
                Err(StoreError::TaskNotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(doc = %doc.name(), error = %e, "the description was not written; retrying");
                    let mut mirror = doc.mirror.lock().unwrap_or_else(|e| e.into_inner());
                    mirror.dirty_since.get_or_insert_with(Instant::now);
                    mirror.last_edit = Some(Instant::now());
                    continue;
                }
            }
            let mut mirror = doc.mirror.lock().unwrap_or_else(|e| e.into_inner());
            if mirror.dirty_since.is_none() {
                mirror.running = false;
                return;
            }
        }
    }

    async fn write_text(&self, doc: &Document) -> Result<(), StoreError> {
        let written = self
            .inner
            .store
            .mirror_description(doc.name().task(), doc.text())
            .await?;
        if written.is_some() {
            metrics::counter!("doc_description_writes_total").increment(1);
        }
        Ok(())
    }

    /// Folds the stored updates into a new snapshot.
    async fn compact(&self, doc: &Document) {
        let result = self
            .inner
            .store
            .compact_doc(&doc.name().to_string(), |snapshot, updates| {
                let scratch = document::new_doc();
                for update in std::iter::once(&snapshot).chain(&updates) {
                    document::apply_bytes(&scratch, update).ok()?;
                }
                use yrs::ReadTxn;
                let txn = yrs::Transact::transact(&scratch);
                Some(txn.encode_state_as_update_v1(&yrs::StateVector::default()))
            })
            .await;
        match result {
            Ok(Some(size)) => doc.compacted(size),
            Ok(None) => {}
            Err(e) => tracing::warn!(doc = %doc.name(), error = %e, "compaction failed"),
        }
    }

    /// Unloads the document if nobody uses it for `idle_unload`: its text is written to the
    /// task and its updates compacted first, so the next load is one snapshot.
    fn unload_when_idle(&self, doc: Arc<Document>) {
        let collab = self.clone();
        let idle = self.inner.limits.idle_unload;
        tokio::spawn(async move {
            tokio::time::sleep(idle).await;
            let quiet = |doc: &Document| {
                doc.leases.load(Ordering::Acquire) == 0
                    && doc
                        .released
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .elapsed()
                        >= idle
            };
            if !quiet(&doc) {
                return;
            }
            if let Err(e) = collab.write_text(&doc).await {
                if !matches!(e, StoreError::TaskNotFound(_)) {
                    tracing::warn!(doc = %doc.name(), error = %e, "not unloaded: the description was not written");
                    return;
                }
            }
            collab.compact(&doc).await;
            collab.inner.docs.remove_if(&doc.name(), |_, slot| {
                slot.doc.get().is_some_and(|d| Arc::ptr_eq(d, &doc)) && quiet(&doc)
            });
        });
    }

    /// A connection's awareness update: applied, told to this node's editors and the others.
    pub(crate) fn awareness(
        &self,
        doc: &Document,
        peer: PeerId,
        payload: &[u8],
        owned: &mut Vec<u64>,
    ) -> Result<(), Refusal> {
        if let Some(applied) = doc.awareness(peer, payload, owned, &self.inner.limits)? {
            self.publish_awareness(doc, applied);
        }
        Ok(())
    }

    /// A connection ended: its awareness states go, here and on the other nodes.
    pub(crate) fn forget(&self, doc: &Document, owned: &[u64]) {
        if let Some(removed) = doc.forget(owned) {
            self.publish_awareness(doc, removed);
        }
    }

    fn publish_awareness(&self, doc: &Document, update: Vec<u8>) {
        if let Some((feed, node)) = self.inner.feed.get() {
            feed.publish(feed::encode(&feed::DocMessage::Awareness {
                node: node.clone(),
                task: doc.name().task(),
                update: update.into(),
            }));
        }
    }

    /// Joins a cluster: this node's updates and awareness go to `feed`, what the other nodes
    /// publish comes in through [`Collab::receive`], and every `check` the loaded documents
    /// catch up from the store (what the broker lost) and other nodes' stale awareness states
    /// expire (a node that died).
    pub fn join_cluster(&self, feed: Arc<dyn DocFeed>, node: String, check: Duration) {
        if self.inner.feed.set((feed, node)).is_err() {
            return;
        }
        let collab = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(check.max(Duration::from_millis(50)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = collab.upgrade() else {
                    return;
                };
                Collab { inner }.catch_up().await;
            }
        });
    }

    /// A message another node published ([`feed`]).
    pub fn receive(&self, message: bytes::Bytes) {
        let Some(message) = feed::decode(message) else {
            tracing::debug!("unreadable document message dropped");
            return;
        };
        let (node, task) = match &message {
            feed::DocMessage::Update { node, task, .. }
            | feed::DocMessage::Awareness { node, task, .. } => (node, *task),
        };
        if self.inner.feed.get().is_some_and(|(_, me)| me == node) {
            return;
        }
        let Some(doc) = self.loaded_doc(DocName::Task(task)) else {
            return;
        };
        match message {
            feed::DocMessage::Update { seq, update, .. } => {
                // Stored by its node before it was published. Its node writes the description.
                match doc.apply(update.to_vec(), None, u32::MAX) {
                    Ok(_) => doc.holds(seq, false),
                    Err(why) => {
                        tracing::warn!(doc = %doc.name(), %why, "a broker update does not apply; the store will be read")
                    }
                }
            }
            feed::DocMessage::Awareness { update, .. } => doc.remote_awareness(&update),
        }
    }

    fn loaded_doc(&self, name: DocName) -> Option<Arc<Document>> {
        self.inner.docs.get(&name)?.doc.get().cloned()
    }

    /// Reads what the loaded documents lack from the store, and expires other nodes' stale
    /// awareness states.
    async fn catch_up(&self) {
        let loaded: Vec<Arc<Document>> = self
            .inner
            .docs
            .iter()
            .filter_map(|slot| slot.doc.get().cloned())
            .collect();
        if loaded.is_empty() {
            return;
        }
        for doc in &loaded {
            doc.expire_remote_awareness(AWARENESS_TIMEOUT_MS);
        }
        let names: Vec<String> = loaded.iter().map(|d| d.name().to_string()).collect();
        let last = match self.inner.store.doc_last_seqs(&names).await {
            Ok(last) => last,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the documents' last updates");
                return;
            }
        };
        let last: std::collections::HashMap<String, i64> = last.into_iter().collect();
        for doc in loaded {
            let name = doc.name().to_string();
            let after = doc.held_through();
            if last.get(&name).is_none_or(|&seq| seq <= after) {
                continue;
            }
            match self.inner.store.doc_updates_after(&name, after).await {
                Ok((updates, through)) => {
                    metrics::counter!("doc_catch_ups_total").increment(1);
                    for update in updates {
                        if let Err(why) = doc.apply(update, None, u32::MAX) {
                            tracing::warn!(doc = %name, %why, "a stored update does not apply");
                        }
                    }
                    doc.holds(through, true);
                }
                Err(e) => tracing::warn!(doc = %name, error = %e, "could not catch up"),
            }
        }
    }

    /// The task was deleted: its document closes for everyone (4404) and is forgotten.
    pub fn task_deleted(&self, task: Uuid) {
        let name = DocName::Task(task);
        if let Some((_, slot)) = self.inner.docs.remove(&name) {
            if let Some(doc) = slot.doc.get() {
                doc.tell(Outgoing::Close {
                    user: None,
                    code: close::DOC_DELETED,
                    reason: "the task was deleted",
                });
            }
        }
    }

    /// A member left a project: their connections to its documents close (4403).
    pub fn member_removed(&self, project: &ProjectId, user: &str) {
        let Ok(user) = crate::domain::UserId::parse(user, "user") else {
            return;
        };
        for slot in self.inner.docs.iter() {
            if let Some(doc) = slot.doc.get().filter(|d| d.project() == project) {
                doc.tell(Outgoing::Close {
                    user: Some(user.clone()),
                    code: close::DOC_FORBIDDEN,
                    reason: "no longer a member of the task's project",
                });
            }
        }
    }

    /// Who is editing each loaded document of a project now: their awareness `user` states.
    pub fn editors(&self, project: &ProjectId) -> Vec<(Uuid, Vec<serde_json::Value>)> {
        self.inner
            .docs
            .iter()
            .filter_map(|slot| {
                let doc = slot.doc.get()?;
                (doc.project() == project).then(|| (doc.name().task(), doc.editors()))
            })
            .filter(|(_, editors)| !editors.is_empty())
            .collect()
    }
}
