//! One connected client, as the hub sees it: who it is, what it may see, and a bounded queue of
//! frames waiting to be written. Transport-independent: the WebSocket, SSE and long-poll
//! adapters each drain the same queue.

use crate::domain::{ProjectId, UserId};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Live frames held back per subscription while that subscription's missed events are
    /// replayed from the log; flushed behind the replay. Never held across an await.
    diverted: Mutex<HashMap<String, Diversion>>,
    /// How many subscriptions are diverted: lets the hot path skip the lock when none is.
    diverting: AtomicUsize,
    /// The most frames one diverted subscription may hold.
    max_diverted: usize,
    /// Source of diversion ids, so a replay that was cancelled (unsubscribe) cannot act on a
    /// later diversion of the same room.
    next_diversion: AtomicU64,
    /// The capacity of the queue, for the replay's high-water mark.
    capacity: usize,
    /// Woken whenever the writer has taken frames off the queue: replays wait on it for room.
    drained: Notify,
    /// A listener that does not count as present (a long poll, which comes and goes with every
    /// request): its joins and leaves announce nothing.
    silent: std::sync::atomic::AtomicBool,
}

/// Live frames held back while a subscription's missed events are replayed.
#[derive(Debug)]
struct Diversion {
    /// Which diversion this is (see `Session::next_diversion`).
    id: u64,
    /// The held frames, oldest first.
    held: std::collections::VecDeque<Bytes>,
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
            diverted: Mutex::new(HashMap::new()),
            diverting: AtomicUsize::new(0),
            max_diverted: limits.messages.max(1),
            next_diversion: AtomicU64::new(1),
            capacity: limits.messages.max(1),
            drained: Notify::new(),
            silent: std::sync::atomic::AtomicBool::new(false),
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

    /// Queues a frame of the subscription `via`: held back if that subscription is being
    /// replayed, queued at once otherwise.
    pub fn offer_via(&self, via: &str, frame: &Bytes) -> Result<(), OfferError> {
        if self.diverting.load(Ordering::Acquire) > 0 {
            let mut diverted = self.diverted.lock().expect("never poisoned");
            if let Some(diversion) = diverted.get_mut(via) {
                if diversion.held.len() >= self.max_diverted {
                    drop(diverted);
                    super::metrics::slow_consumer();
                    self.close(
                        taskflow_protocol::close::SLOW_CONSUMER,
                        "slow consumer: too much arrived during the replay",
                    );
                    return Err(OfferError::Slow);
                }
                diversion.held.push_back(frame.clone());
                return Ok(());
            }
        }
        self.offer(frame)
    }

    /// Queues a replayed frame of diversion `id`, waiting while the queue is more than half
    /// full: a replay never takes the room live frames of other subscriptions need. Fails if the
    /// session closed or the diversion was cancelled (unsubscribed meanwhile).
    pub(crate) async fn push_replayed(
        &self,
        via: &str,
        id: u64,
        frame: Bytes,
    ) -> Result<(), OfferError> {
        loop {
            let drained = self.drained.notified();
            if self.closing.get().is_some() || !self.is_diverted(via, id) {
                return Err(OfferError::Closed);
            }
            if self.queue.capacity() > self.capacity / 2 {
                self.queued_bytes.fetch_add(frame.len(), Ordering::Relaxed);
                return self.queue.try_send(frame).map_err(|_| OfferError::Closed);
            }
            drained.await;
        }
    }

    fn is_diverted(&self, via: &str, id: u64) -> bool {
        self.diverted
            .lock()
            .expect("never poisoned")
            .get(via)
            .is_some_and(|d| d.id == id)
    }

    /// Starts holding back the live frames of subscription `via` (before it joins its room);
    /// returns the diversion's id.
    pub(crate) fn begin_divert(&self, via: &str) -> u64 {
        let id = self.next_diversion.fetch_add(1, Ordering::Relaxed);
        let mut diverted = self.diverted.lock().expect("never poisoned");
        let diversion = Diversion {
            id,
            held: Default::default(),
        };
        if diverted.insert(via.to_owned(), diversion).is_none() {
            self.diverting.fetch_add(1, Ordering::AcqRel);
        }
        id
    }

    /// Queues the held-back frames of diversion `id` behind the replay, as fast as the queue
    /// takes them, then stops holding back. Frames that arrive meanwhile join the held ones, so
    /// no live frame overtakes them.
    pub(crate) async fn end_divert(&self, via: &str, id: u64) {
        loop {
            let drained = self.drained.notified();
            {
                let mut diverted = self.diverted.lock().expect("never poisoned");
                let Some(diversion) = diverted.get_mut(via).filter(|d| d.id == id) else {
                    return;
                };
                while self.queue.capacity() > 0 {
                    let Some(frame) = diversion.held.pop_front() else {
                        break;
                    };
                    if self.offer(&frame).is_err() {
                        return;
                    }
                }
                if diversion.held.is_empty() {
                    diverted.remove(via);
                    self.diverting.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
            }
            if self.closing.get().is_some() {
                return;
            }
            drained.await;
        }
    }

    /// Drops the diversion of `via`, if any (the subscription ended).
    pub(crate) fn cancel_divert(&self, via: &str) {
        let mut diverted = self.diverted.lock().expect("never poisoned");
        if diverted.remove(via).is_some() {
            self.diverting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Makes the session invisible to presence (before it joins any room).
    pub fn set_silent(&self) {
        self.silent.store(true, Ordering::Relaxed);
    }

    /// Whether the session is invisible to presence.
    pub fn is_silent(&self) -> bool {
        self.silent.load(Ordering::Relaxed)
    }

    /// Whether the session has been asked to close.
    pub fn is_closing(&self) -> bool {
        self.closing.get().is_some()
    }

    /// Records that the transport wrote `bytes` taken from the queue.
    pub fn written(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.drained.notify_waiters();
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
