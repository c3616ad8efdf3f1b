//! One connected client, as the hub sees it: who it is, what it may see, and a bounded queue of
//! frames waiting to be written. Transport-independent: the WebSocket, SSE and long-poll
//! adapters each drain the same queue.

use crate::domain::{ProjectId, UserId};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::{mpsc, Notify};

/// A connection id, unique within this process.
pub type ConnId = u64;

/// Why a session is being closed: a close code from `taskflow_protocol::close` and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The WebSocket close code (other transports report it in their own way).
    pub code: u16,
    /// A short human reason.
    pub reason: &'static str,
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferError {
    /// The queue is full: the client is not reading fast enough. The session is being closed.
    Slow,
    /// The session is closed.
    Closed,
}

/// What the hub keeps of a session. Shared (`Arc`) between the hub's room index and the
/// transport task that owns the other end of the queue.
#[derive(Debug)]
pub struct Session {
    /// Unique id.
    id: ConnId,
    /// The authenticated user.
    user: UserId,
    /// Admins see every project.
    admin: bool,
    /// Frames waiting to be written. Bounded in count here and in bytes by `queued_bytes`.
    queue: mpsc::Sender<Bytes>,
    /// Bytes currently queued; the writer subtracts what it has written.
    queued_bytes: AtomicUsize,
    /// The most bytes that may wait in the queue.
    max_queued_bytes: usize,
    /// Set once when the session must end; the transport closes with it.
    closing: OnceLock<CloseReason>,
    /// Wakes the transport when `closing` is set.
    close_signal: Notify,
    /// The projects whose task events reach this session through the `tasks` room (members
    /// only; unused for admins). Read per delivery, written only on membership changes: a
    /// reader-writer lock, never held across an await.
    projects: RwLock<HashSet<ProjectId>>,
    /// The rooms this session is subscribed to, so leaving costs O(its rooms). Never held
    /// across an await.
    rooms: Mutex<HashSet<String>>,
}

/// The receiving end of a session's queue, owned by its transport.
pub type Outbox = mpsc::Receiver<Bytes>;

/// Limits of one session's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Frames.
    pub messages: usize,
    /// Bytes.
    pub bytes: usize,
}

impl Session {
    /// A new session and the receiving end of its queue.
    pub fn new(
        id: ConnId,
        user: UserId,
        admin: bool,
        projects: HashSet<ProjectId>,
        limits: QueueLimits,
    ) -> (Arc<Self>, Outbox) {
        let (queue, outbox) = mpsc::channel(limits.messages.max(1));
        let session = Arc::new(Self {
            id,
            user,
            admin,
            queue,
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes: limits.bytes,
            closing: OnceLock::new(),
            close_signal: Notify::new(),
            projects: RwLock::new(projects),
            rooms: Mutex::new(HashSet::new()),
        });
        (session, outbox)
    }

    /// The session's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The session's user.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// Whether the session belongs to the admin.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Queues a frame without waiting. A full queue (by count or bytes) means the client cannot
    /// keep up: the session is closed as a slow consumer rather than slowing anyone else down.
    pub fn offer(&self, frame: &Bytes) -> Result<(), OfferError> {
        if self.closing.get().is_some() {
            return Err(OfferError::Closed);
        }
        let size = frame.len();
        let queued = self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size;
        let result = if queued > self.max_queued_bytes {
            Err(OfferError::Slow)
        } else {
            match self.queue.try_send(frame.clone()) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => Err(OfferError::Slow),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(OfferError::Closed),
            }
        };
        self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        if result == Err(OfferError::Slow) {
            super::metrics::slow_consumer();
            self.close(
                taskflow_protocol::close::SLOW_CONSUMER,
                "slow consumer: the send queue is full",
            );
        }
        result
    }

    /// Records that the transport wrote `bytes` taken from the queue.
    pub fn written(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Asks the transport to close the session. The first reason wins.
    pub fn close(&self, code: u16, reason: &'static str) {
        if self.closing.set(CloseReason { code, reason }).is_ok() {
            self.close_signal.notify_one();
        }
    }

    /// Resolves once the session has been asked to close, with the reason.
    pub async fn closed(&self) -> CloseReason {
        loop {
            let notified = self.close_signal.notified();
            if let Some(reason) = self.closing.get() {
                return reason.clone();
            }
            notified.await;
        }
    }

    /// Whether the session may see task events of `project` through the `tasks` room.
    pub fn sees(&self, project: &ProjectId) -> bool {
        self.admin
            || self
                .projects
                .read()
                .expect("never poisoned: no panics under lock")
                .contains(project)
    }

    /// Updates what the session may see after a membership change.
    pub(crate) fn set_member(&self, project: &ProjectId, member: bool) {
        let mut projects = self
            .projects
            .write()
            .expect("never poisoned: no panics under lock");
        if member {
            projects.insert(project.clone());
        } else {
            projects.remove(project);
        }
    }

    /// Notes a subscription; false if it was already there.
    pub(crate) fn add_room(&self, room: &str) -> bool {
        self.rooms
            .lock()
            .expect("never poisoned")
            .insert(room.to_owned())
    }

    /// Forgets a subscription; false if it was not there.
    pub(crate) fn remove_room(&self, room: &str) -> bool {
        self.rooms.lock().expect("never poisoned").remove(room)
    }

    /// The rooms the session is subscribed to.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms
            .lock()
            .expect("never poisoned")
            .iter()
            .cloned()
            .collect()
    }

    /// How many rooms the session is subscribed to.
    pub fn room_count(&self) -> usize {
        self.rooms.lock().expect("never poisoned").len()
    }
}
