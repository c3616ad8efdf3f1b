//! One connected client, as the hub sees it: who it is, what it may see, and a bounded queue of
//! frames waiting to be written. Transport-independent: the WebSocket, SSE and long-poll
//! adapters each drain the same queue.

use super::lag::FanoutLag;
use crate::domain::{ProjectId, UserId};
use bytes::Bytes;
use futures::task::AtomicWaker;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use tokio::sync::Notify;

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

/// How a session's client is connected. The hub counts sessions by it (the dashboard's
/// connections by transport); nothing else depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/ws/tasks`.
    WebSocket,
    /// `/events`.
    Sse,
    /// `/poll`, while the request waits.
    LongPolling,
}

impl Transport {
    /// A dense index, for per-transport counters.
    pub(crate) fn index(self) -> usize {
        match self {
            Transport::WebSocket => 0,
            Transport::Sse => 1,
            Transport::LongPolling => 2,
        }
    }
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
    /// How the client is connected.
    transport: Transport,
    /// The longest event frame this connection takes compressed ([`super::deflated`]); 0: it
    /// negotiated no compression and gets plain frames only.
    deflate_up_to: AtomicUsize,
    /// Frames waiting to be written, bounded in count by `capacity` and in bytes by
    /// `queued_bytes`. A plain deque behind an uncontended lock rather than a channel: it
    /// allocates nothing while the connection is idle (a channel's first block is 1 KiB), and
    /// the writer takes everything queued in one swap.
    queue: Mutex<VecDeque<Bytes>>,
    /// The transport task waiting for frames or for the close signal. Woken only when the queue
    /// stops being empty, or when the session starts closing: a burst of frames costs one wake.
    writer: AtomicWaker,
    /// Frames the writer has taken off the queue and not written yet: they still count against
    /// the queue's limit, so the limit holds for everything waiting, wherever it waits.
    taken: AtomicUsize,
    /// The transport dropped its outbox: nothing will ever drain the queue again.
    detached: AtomicBool,
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
    /// reader-writer lock, never held across an await. A sorted list, searched by bisection:
    /// smaller than a hash set for the few projects a user belongs to.
    projects: RwLock<Vec<ProjectId>>,
    /// The rooms this session is subscribed to, so leaving costs O(its rooms). A short list
    /// (bounded by `ws_max_subscriptions`) rather than a hash set: most sessions hold two or
    /// three rooms, and a set's table would cost every connection more than the search saves.
    /// Never held across an await.
    rooms: Mutex<Vec<Box<str>>>,
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
    /// Woken, while a subscription is diverted, whenever the writer has written frames: replays
    /// wait on it for room.
    drained: Notify,
    /// A listener that does not count as present (a long poll, which comes and goes with every
    /// request): its joins and leaves announce nothing.
    silent: AtomicBool,
    /// Set by [`Session::input_waker`]: the transport's input (its socket's read side) has
    /// something, or has ended.
    input_ready: AtomicBool,
    /// The hub's count of lagging sessions (see [`FanoutLag`]).
    lag: Arc<FanoutLag>,
    /// Whether this session is counted in `lag`: its queue passed half its limit while its
    /// socket took data. Only for transports that report their socket ([`Session::track_lag`]).
    lagging: AtomicBool,
    /// The transport reports whether its socket is full ([`Session::set_socket_full`]).
    lag_tracked: AtomicBool,
    /// The transport's last write is waiting for room in the socket: the client is not reading.
    socket_full: AtomicBool,
}

/// Live frames held back while a subscription's missed events are replayed.
#[derive(Debug)]
struct Diversion {
    /// Which diversion this is (see `Session::next_diversion`).
    id: u64,
    /// The held frames, oldest first.
    held: std::collections::VecDeque<Bytes>,
}

/// The receiving end of a session's queue, owned by its transport. It takes the queued frames
/// a whole queue at a time, so draining a burst locks once, not once per frame.
#[derive(Debug)]
pub struct Outbox {
    /// The session whose queue this drains.
    session: Arc<Session>,
    /// Frames taken from the queue and not handed out yet, oldest first.
    taken: VecDeque<Bytes>,
    /// How much of the oldest taken frame a writer has already sent, in bytes of its own
    /// encoding (see [`Outbox::peek`]). Kept here, not in the writer, so that a write interrupted
    /// half-way through a frame (by the close signal) can still be completed before the close
    /// frame: the client must never see half a frame followed by another.
    sent_of_front: usize,
}

/// What woke the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// Frames are waiting: take them with [`Outbox::try_recv`].
    Frames,
    /// The session must close, for this reason. Takes precedence over queued frames.
    Closing(CloseReason),
}

/// The queue was empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

impl Outbox {
    /// Frames waiting, or the session closing; registers the task to be woken otherwise.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Ready> {
        let session = &self.session;
        if let Some(reason) = session.closing.get() {
            return Poll::Ready(Ready::Closing(reason.clone()));
        }
        if !self.taken.is_empty() {
            return Poll::Ready(Ready::Frames);
        }
        session.writer.register(cx.waker());
        // Checked again after registering: a frame or a close that came in between has either
        // seen the registration (and woken us) or is visible now.
        if let Some(reason) = session.closing.get() {
            return Poll::Ready(Ready::Closing(reason.clone()));
        }
        if self.take() {
            Poll::Ready(Ready::Frames)
        } else {
            Poll::Pending
        }
    }

    /// Waits for frames or for the close signal.
    pub async fn ready(&mut self) -> Ready {
        poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// The next frame, waiting for one. Closing does not end the wait: transports that care
    /// watch [`Session::closed`] beside it.
    pub async fn recv(&mut self) -> Option<Bytes> {
        poll_fn(|cx| {
            if let Ok(frame) = self.try_recv() {
                return Poll::Ready(Some(frame));
            }
            self.session.writer.register(cx.waker());
            match self.try_recv() {
                Ok(frame) => Poll::Ready(Some(frame)),
                Err(Empty) => Poll::Pending,
            }
        })
        .await
    }

    /// The next frame, if one is queued.
    pub fn try_recv(&mut self) -> Result<Bytes, Empty> {
        debug_assert_eq!(self.sent_of_front, 0, "a frame is half written");
        if self.taken.is_empty() && !self.take() {
            return Err(Empty);
        }
        self.session.taken.fetch_sub(1, Ordering::Relaxed);
        self.session.drained_some();
        Ok(self.taken.pop_front().expect("not empty"))
    }

    /// The frames waiting, oldest first, without handing them out: a writer that encodes them
    /// straight to its socket leaves them here until each is fully written ([`Outbox::sent`]),
    /// so they still count against the queue's limit while a slow socket holds them up.
    pub fn peek(&mut self) -> &VecDeque<Bytes> {
        if self.taken.is_empty() {
            self.take();
        }
        &self.taken
    }

    /// How much of the oldest frame [`Outbox::peek`] showed has been written already.
    pub fn sent_of_front(&self) -> usize {
        self.sent_of_front
    }

    /// Records a write: `frames` of the frames [`Outbox::peek`] showed are written in full, and
    /// `partial` bytes of the next one. Returns the payload bytes of the frames completed, which
    /// no longer count against the queue's byte limit ([`Session::written`]).
    pub fn sent(&mut self, frames: usize, partial: usize) -> usize {
        debug_assert!(frames <= self.taken.len());
        let bytes = self.taken.drain(..frames).map(|f| f.len()).sum();
        self.session.taken.fetch_sub(frames, Ordering::Relaxed);
        if frames > 0 {
            self.session.written(bytes);
        }
        self.session.drained_some();
        self.sent_of_front = if frames > 0 {
            partial
        } else {
            self.sent_of_front + partial
        };
        bytes
    }

    /// Moves everything queued into `taken`; false if nothing was. `taken` is empty here, so the
    /// two deques trade places and keep their capacity, unless a burst grew it past the usual.
    fn take(&mut self) -> bool {
        debug_assert!(self.taken.is_empty());
        let mut queue = self.session.queue.lock().expect("never poisoned");
        if queue.is_empty() {
            return false;
        }
        std::mem::swap(&mut *queue, &mut self.taken);
        self.session
            .taken
            .store(self.taken.len(), Ordering::Relaxed);
        if queue.capacity() > KEPT_CAPACITY {
            *queue = VecDeque::new();
        }
        true
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.session.detached.store(true, Ordering::Release);
        self.session.stop_lagging();
        // Whatever is still queued will never be written: free it now, not with the session.
        let dropped = std::mem::take(&mut *self.session.queue.lock().expect("never poisoned"));
        let bytes: usize = dropped.iter().chain(&self.taken).map(Bytes::len).sum();
        self.session
            .queued_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Slots a queue keeps between bursts: a connection that once received a burst does not hold
/// the burst's worth of memory for the rest of its life.
const KEPT_CAPACITY: usize = 16;

/// Limits of one session's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Frames.
    pub messages: usize,
    /// Bytes.
    pub bytes: usize,
}

/// The waker of [`Session::input_waker`]: notes that input is ready, then wakes the writer task.
impl Wake for Session {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.input_ready.store(true, Ordering::Release);
        self.writer.wake();
    }
}

impl Session {
    /// A waker for the transport to hand to its input (its socket's read side), so that one
    /// task, woken by its queue and by its socket alike, can tell which of the two has
    /// something: see [`Session::take_input_ready`]. It costs no allocation; the session is the
    /// waker. It wakes the task registered by [`Outbox::poll_ready`], which a transport polls
    /// before it sleeps.
    pub fn input_waker(self: &Arc<Self>) -> Waker {
        Waker::from(self.clone())
    }

    /// Whether the input waker fired since the last call. A transport whose last read attempt
    /// returned `Pending` (with the input waker) need not try again until this says so: most
    /// wake-ups of a busy room's connections are for frames, and a read attempt on each of
    /// them costs a trip through every layer of the socket for nothing.
    pub fn take_input_ready(&self) -> bool {
        self.input_ready.swap(false, Ordering::Acquire)
    }

    /// A new session and the receiving end of its queue.
    pub fn new(
        id: ConnId,
        user: UserId,
        admin: bool,
        projects: HashSet<ProjectId>,
        limits: QueueLimits,
        lag: Arc<FanoutLag>,
        transport: Transport,
    ) -> (Arc<Self>, Outbox) {
        let session = Arc::new(Self {
            id,
            user,
            admin,
            transport,
            deflate_up_to: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
            writer: AtomicWaker::new(),
            taken: AtomicUsize::new(0),
            detached: AtomicBool::new(false),
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes: limits.bytes,
            closing: OnceLock::new(),
            close_signal: Notify::new(),
            projects: RwLock::new({
                let mut projects: Vec<_> = projects.into_iter().collect();
                projects.sort_unstable();
                projects
            }),
            rooms: Mutex::new(Vec::new()),
            diverted: Mutex::new(HashMap::new()),
            diverting: AtomicUsize::new(0),
            max_diverted: limits.messages.max(1),
            next_diversion: AtomicU64::new(1),
            capacity: limits.messages.max(1),
            drained: Notify::new(),
            silent: AtomicBool::new(false),
            input_ready: AtomicBool::new(false),
            lag,
            lagging: AtomicBool::new(false),
            lag_tracked: AtomicBool::new(false),
            socket_full: AtomicBool::new(false),
        });
        let outbox = Outbox {
            session: session.clone(),
            taken: VecDeque::new(),
            sent_of_front: 0,
        };
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
            self.push(frame.clone(), self.capacity)
        };
        if result.is_ok() {
            return result;
        }
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

    /// Appends a frame if the queue holds fewer than `limit`; wakes the writer if the queue was
    /// empty (otherwise it is already awake or about to be). Does not count bytes.
    fn push(&self, frame: Bytes, limit: usize) -> Result<(), OfferError> {
        if self.detached.load(Ordering::Acquire) {
            return Err(OfferError::Closed);
        }
        let (was_empty, depth) = {
            let mut queue = self.queue.lock().expect("never poisoned");
            let depth = queue.len() + self.taken.load(Ordering::Relaxed);
            if depth >= limit {
                drop(queue);
                self.stop_lagging();
                return Err(OfferError::Slow);
            }
            let was_empty = queue.is_empty();
            queue.push_back(frame);
            (was_empty, depth + 1)
        };
        if was_empty {
            self.writer.wake();
        }
        if depth >= self.capacity / 2 && !self.lagging.load(Ordering::Relaxed) {
            self.start_lagging();
        }
        Ok(())
    }

    /// Counts the session as lagging, if its transport reports its socket and the socket takes
    /// data (see [`FanoutLag`]).
    fn start_lagging(&self) {
        if self.lag_tracked.load(Ordering::Relaxed)
            && !self.socket_full.load(Ordering::Acquire)
            && !self.lagging.swap(true, Ordering::AcqRel)
        {
            self.lag.enter();
        }
    }

    /// Stops counting the session as lagging, if it was.
    fn stop_lagging(&self) {
        if self.lagging.swap(false, Ordering::AcqRel) {
            self.lag.leave();
        }
    }

    /// Called by a transport that will report its socket's state with
    /// [`Session::set_socket_full`]: from then on, a queue that fills while the socket takes data
    /// holds writes back ([`FanoutLag`]) instead of only growing towards the slow-consumer limit.
    pub fn track_lag(&self) {
        self.lag_tracked.store(true, Ordering::Relaxed);
    }

    /// The transport's report: its last write waits for room in the socket (`true`), or a
    /// write went through (`false`). A session whose client does not read is not lagging: the
    /// queue limit deals with it.
    pub fn set_socket_full(&self, full: bool) {
        if self.socket_full.load(Ordering::Relaxed) != full {
            self.socket_full.store(full, Ordering::Release);
            if full {
                self.stop_lagging();
            }
        }
    }

    /// After frames left the queue: a lagging session that is down to a quarter of its limit
    /// has caught up.
    fn drained_some(&self) {
        if self.lagging.load(Ordering::Relaxed) && self.queued() <= self.capacity / 4 {
            self.stop_lagging();
        }
    }

    /// How many frames wait to be written.
    fn queued(&self) -> usize {
        self.queue.lock().expect("never poisoned").len() + self.taken.load(Ordering::Relaxed)
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
            if self.queued() < self.capacity - self.capacity / 2 {
                let size = frame.len();
                self.queued_bytes.fetch_add(size, Ordering::Relaxed);
                return self.push(frame, self.capacity).map_err(|_| {
                    self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                    OfferError::Closed
                });
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
                while self.queued() < self.capacity {
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

    /// The close code the session is closing with, once it is.
    pub fn close_code(&self) -> Option<u16> {
        self.closing.get().map(|reason| reason.code)
    }

    /// How the client is connected.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The connection negotiated `permessage-deflate`: from now on it takes compressed event
    /// frames of up to `max_len` bytes (uncompressed), the most its window holds. Set by the
    /// WebSocket transport before the session joins any room.
    pub fn accept_deflated(&self, max_len: usize) {
        self.deflate_up_to.store(max_len, Ordering::Relaxed);
    }

    /// Whether a frame of `len` bytes goes to this connection compressed, when it can be.
    pub(crate) fn takes_deflated(&self, len: usize) -> bool {
        len <= self.deflate_up_to.load(Ordering::Relaxed)
    }

    /// Records that the transport wrote `bytes` taken from the queue.
    pub fn written(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        // Only replays wait for room, and only while a subscription is diverted: the common
        // case skips the notifier's lock.
        if self.diverting.load(Ordering::Acquire) > 0 {
            self.drained.notify_waiters();
        }
    }

    /// Asks the transport to close the session. The first reason wins.
    pub fn close(&self, code: u16, reason: &'static str) {
        if self.closing.set(CloseReason { code, reason }).is_ok() {
            self.writer.wake();
            self.close_signal.notify_one();
        }
    }

    /// The close reason once the session has been asked to close; registers the task to be
    /// woken otherwise. For the transport that owns the outbox, while it writes.
    pub fn poll_closing(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        if let Some(reason) = self.closing.get() {
            return Poll::Ready(reason.clone());
        }
        self.writer.register(cx.waker());
        match self.closing.get() {
            Some(reason) => Poll::Ready(reason.clone()),
            None => Poll::Pending,
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
                .binary_search(project)
                .is_ok()
    }

    /// The projects the session sees (empty for the admin, who sees all).
    pub fn projects(&self) -> Vec<ProjectId> {
        self.projects
            .read()
            .expect("never poisoned: no panics under lock")
            .clone()
    }

    /// Replaces the projects the session sees.
    pub(crate) fn set_projects(&self, projects: HashSet<ProjectId>) {
        let mut projects: Vec<_> = projects.into_iter().collect();
        projects.sort_unstable();
        *self
            .projects
            .write()
            .expect("never poisoned: no panics under lock") = projects;
    }

    /// Updates what the session may see after a membership change.
    pub(crate) fn set_member(&self, project: &ProjectId, member: bool) {
        let mut projects = self
            .projects
            .write()
            .expect("never poisoned: no panics under lock");
        match (projects.binary_search(project), member) {
            (Err(at), true) => projects.insert(at, project.clone()),
            (Ok(at), false) => {
                projects.remove(at);
            }
            _ => {}
        }
    }

    /// Notes a subscription; false if it was already there.
    pub(crate) fn add_room(&self, room: &str) -> bool {
        let mut rooms = self.rooms.lock().expect("never poisoned");
        if rooms.iter().any(|r| &**r == room) {
            return false;
        }
        rooms.push(room.into());
        true
    }

    /// Forgets a subscription; false if it was not there.
    pub(crate) fn remove_room(&self, room: &str) -> bool {
        let mut rooms = self.rooms.lock().expect("never poisoned");
        match rooms.iter().position(|r| &**r == room) {
            Some(at) => {
                rooms.swap_remove(at);
                true
            }
            None => false,
        }
    }

    /// The rooms the session is subscribed to.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|r| r.to_string())
            .collect()
    }

    /// How many rooms the session is subscribed to.
    pub fn room_count(&self) -> usize {
        self.rooms.lock().expect("never poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn session(messages: usize) -> (Arc<Session>, Outbox) {
        let limits = QueueLimits {
            messages,
            bytes: 1 << 20,
        };
        let user = UserId::parse("u", "user").expect("valid");
        Session::new(
            1,
            user,
            false,
            HashSet::new(),
            limits,
            Default::default(),
            Transport::WebSocket,
        )
    }

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n; 10])
    }

    #[test]
    fn frames_come_out_in_order_and_the_limit_counts_what_the_writer_took() {
        let (session, mut outbox) = session(4);
        for n in 0..3 {
            session.offer(&frame(n)).expect("room");
        }
        // The writer takes the whole queue but has handed out only one frame: the two it still
        // holds count, so two more fit, not four.
        assert_eq!(outbox.try_recv(), Ok(frame(0)));
        session.offer(&frame(3)).expect("room");
        session.offer(&frame(4)).expect("room");
        assert_eq!(session.offer(&frame(5)), Err(OfferError::Slow));
        assert_eq!(
            session.closing.get().map(|r| r.code),
            Some(taskflow_protocol::close::SLOW_CONSUMER)
        );
        let mut rest = Vec::new();
        while let Ok(frame) = outbox.try_recv() {
            rest.push(frame[0]);
        }
        assert_eq!(rest, [1, 2, 3, 4]);
    }

    #[test]
    fn a_queue_past_half_its_limit_lags_only_while_its_socket_takes_data() {
        let (session, mut outbox) = session(8);
        let lag = session.lag.clone();
        // A transport that does not report its socket (SSE, long polling) never counts.
        for n in 0..6 {
            session.offer(&frame(n)).expect("room");
        }
        assert_eq!(lag.lagging(), 0, "not tracked");
        while outbox.try_recv().is_ok() {}

        session.track_lag();
        for n in 0..3 {
            session.offer(&frame(n)).expect("room");
        }
        assert_eq!(lag.lagging(), 0, "3 of 8: under half");
        session.offer(&frame(3)).expect("room");
        assert_eq!(lag.lagging(), 1, "4 of 8, socket taking data: lagging");
        session.offer(&frame(4)).expect("room");
        assert_eq!(lag.lagging(), 1, "counted once");

        // The client stopped reading: its queue is its own problem, not the fan-out's.
        session.set_socket_full(true);
        assert_eq!(lag.lagging(), 0);
        session.offer(&frame(5)).expect("room");
        assert_eq!(lag.lagging(), 0, "not while the socket is full");
        session.set_socket_full(false);
        session.offer(&frame(6)).expect("room");
        assert_eq!(lag.lagging(), 1, "the socket takes data again");

        // Caught up once down to a quarter of the limit.
        let mut left = 7;
        while left > 2 {
            assert_eq!(lag.lagging(), 1, "{left} queued");
            outbox.try_recv().expect("queued");
            left -= 1;
        }
        assert_eq!(lag.lagging(), 0, "down to a quarter");

        // A lagging session that ends stops counting.
        for n in 0..4 {
            session.offer(&frame(n)).expect("room");
        }
        assert_eq!(lag.lagging(), 1);
        drop(outbox);
        assert_eq!(lag.lagging(), 0, "its outbox is gone");
    }

    #[test]
    fn a_lagging_queue_that_reaches_its_limit_stops_counting_as_it_closes() {
        let (session, _outbox) = session(4);
        let lag = session.lag.clone();
        session.track_lag();
        for n in 0..4 {
            session.offer(&frame(n)).expect("room");
        }
        assert_eq!(lag.lagging(), 1);
        assert_eq!(session.offer(&frame(4)), Err(OfferError::Slow));
        assert_eq!(
            lag.lagging(),
            0,
            "closed as a slow consumer: nobody waits for it"
        );
    }

    #[test]
    fn the_writer_wakes_for_frames_and_for_the_close_signal() {
        let (session, mut outbox) = session(8);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outbox.poll_ready(&mut cx), Poll::Pending);
        session.offer(&frame(1)).expect("room");
        assert_eq!(outbox.poll_ready(&mut cx), Poll::Ready(Ready::Frames));
        assert_eq!(outbox.try_recv(), Ok(frame(1)));
        assert_eq!(outbox.poll_ready(&mut cx), Poll::Pending);
        session.close(4000, "test");
        assert!(matches!(
            outbox.poll_ready(&mut cx),
            Poll::Ready(Ready::Closing(CloseReason { code: 4000, .. }))
        ));
        assert_eq!(session.closed().now_or_never().map(|r| r.code), Some(4000));
    }

    #[test]
    fn a_dropped_outbox_refuses_frames_and_frees_the_queue() {
        let (session, outbox) = session(8);
        session.offer(&frame(1)).expect("room");
        drop(outbox);
        assert_eq!(session.offer(&frame(2)), Err(OfferError::Closed));
        assert_eq!(session.queued(), 0);
        assert_eq!(session.queued_bytes.load(Ordering::Relaxed), 0);
    }
}
