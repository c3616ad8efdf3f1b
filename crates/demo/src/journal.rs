//! What one real-time stream (the WebSocket subscriber, the SSE stream) has received, room by
//! room, checked as it arrives: each room's offsets must follow each other with no gap and no
//! repeat from where its subscription started. Anything else is written down as a problem, for
//! chapter 10 to report.
//!
//! The journal lives in a `tokio::sync::watch` channel: the stream's reader records through
//! [`Journal::record`] (which wakes every waiter), and a chapter that expects an event waits for
//! it with [`Journal::wait_for`] instead of sleeping. The channel's lock is held only to update
//! or inspect the maps, never across an `.await`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One event as the stream delivered it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its offset in its room.
    pub offset: i64,
    /// Its kind (`task.created`, ...), as a string: kinds newer than this build still count.
    pub event: String,
    /// Its payload.
    pub data: Value,
}

/// One room's events.
#[derive(Debug, Clone, Default)]
pub struct RoomLog {
    /// The offset the subscription started after: the first event expected is `start + 1`.
    pub start: i64,
    /// Every event after `start`, in the order received (repeats are not kept).
    pub events: Vec<Received>,
}

impl RoomLog {
    /// The last offset received (`start` if none).
    pub fn last(&self) -> i64 {
        self.events.last().map_or(self.start, |e| e.offset)
    }
}

/// Everything the stream received, and what was wrong with it.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// Events by room.
    pub rooms: BTreeMap<String, RoomLog>,
    /// Gaps, repeats, refused resumes, unexpected closes: empty when all is well.
    pub problems: Vec<String>,
}

impl Log {
    /// How many events in all.
    pub fn total(&self) -> usize {
        self.rooms.values().map(|r| r.events.len()).sum()
    }

    /// How many events of each kind.
    pub fn kinds(&self) -> BTreeMap<String, usize> {
        let mut kinds = BTreeMap::new();
        for event in self.rooms.values().flat_map(|r| &r.events) {
            *kinds.entry(event.event.clone()).or_default() += 1;
        }
        kinds
    }

    /// The first event of `room` of kind `event` whose data satisfies `matches`.
    pub fn find(
        &self,
        room: &str,
        event: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<&Received> {
        self.rooms
            .get(room)?
            .events
            .iter()
            .find(|e| e.event == event && matches(&e.data))
    }
}

/// A shared handle on a stream's [`Log`].
#[derive(Clone)]
pub struct Journal {
    /// The log, and the wake-up of everyone waiting on it.
    log: Arc<watch::Sender<Log>>,
}

impl Default for Journal {
    fn default() -> Self {
        Self {
            log: Arc::new(watch::Sender::new(Log::default())),
        }
    }
}

impl Journal {
    /// A subscription to `room` took effect after offset `after`: the next event expected is
    /// `after + 1`. A room already followed (a resume) keeps its expectation: its first event
    /// must be the one after the last received, however the new subscription answers.
    pub fn started(&self, room: &str, after: i64) {
        self.log.send_modify(|log| {
            log.rooms.entry(room.to_owned()).or_insert_with(|| RoomLog {
                start: after,
                events: Vec::new(),
            });
        });
    }

    /// Records an event, noting a gap or a repeat.
    pub fn record(&self, room: &str, event: Received) {
        self.log.send_modify(|log| {
            let Log { rooms, problems } = log;
            let Some(entry) = rooms.get_mut(room) else {
                problems.push(format!(
                    "{room}: event {} before its subscription",
                    event.offset
                ));
                return;
            };
            let expected = entry.last() + 1;
            if event.offset < expected {
                problems.push(format!(
                    "{room}: offset {} again (or out of order) after {}",
                    event.offset,
                    expected - 1
                ));
                return;
            }
            if event.offset > expected {
                problems.push(format!(
                    "{room}: offsets {expected}..{} missing",
                    event.offset - 1
                ));
            }
            entry.events.push(event);
        });
    }

    /// Notes something wrong with the stream itself.
    pub fn problem(&self, what: String) {
        self.log.send_modify(|log| log.problems.push(what));
    }

    /// A copy of the log now.
    pub fn snapshot(&self) -> Log {
        self.log.borrow().clone()
    }

    /// The last offset received in each room.
    pub fn positions(&self) -> BTreeMap<String, i64> {
        let log = self.log.borrow();
        log.rooms
            .iter()
            .map(|(room, r)| (room.clone(), r.last()))
            .collect()
    }

    /// Waits until `done` holds for the log, at most `limit`; returns whether it did.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&Log) -> bool) -> bool {
        let mut changes = self.log.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if done(&changes.borrow_and_update()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return done(&self.log.borrow()),
            }
        }
    }
}

/// A frame of the WebSocket protocol as the demo reads it (SSE carries the same frames). Read
/// leniently, unlike [`taskflow_protocol::ServerFrame`]: an event kind or a frame type newer
/// than this build is still counted or skipped, never an error that would stop the stream.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "type")]
pub enum Frame {
    /// The first frame of a WebSocket connection.
    #[serde(rename = "hello")]
    Hello {
        /// The epoch of the store's event log, for resumes.
        epoch: String,
    },
    /// A logged event.
    #[serde(rename = "event")]
    Event {
        /// Its room.
        room: String,
        /// Its offset there.
        offset: i64,
        /// Its kind.
        event: String,
        /// Its payload.
        #[serde(default)]
        data: Value,
    },
    /// The answer to a command with an id.
    #[serde(rename = "reply")]
    Reply {
        /// The command's id.
        id: Value,
        /// Whether it succeeded.
        ok: bool,
        /// What it produced.
        #[serde(default)]
        result: Option<Value>,
        /// Why it failed.
        #[serde(default)]
        error: Option<taskflow_protocol::ErrorDetail>,
    },
    /// An SSE stream's subscription to one room took effect.
    #[serde(rename = "subscribed")]
    Subscribed(taskflow_protocol::Subscribed),
    /// Anything else (presence, typing, pong, ...).
    #[serde(other)]
    Other,
}

impl Frame {
    /// Reads a frame; text that is not one is [`Frame::Other`].
    pub fn parse(text: &str) -> Frame {
        serde_json::from_str(text).unwrap_or(Frame::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(offset: i64) -> Received {
        Received {
            offset,
            event: "task.created".into(),
            data: Value::Null,
        }
    }

    #[test]
    fn frames_of_unknown_kinds_and_types_are_read() {
        let frame = Frame::parse(
            r#"{"type":"event","room":"user:a","offset":3,"event":"task.unblocked","data":{},"at":"x"}"#,
        );
        assert!(
            matches!(frame, Frame::Event { offset: 3, ref event, .. } if event == "task.unblocked")
        );
        assert!(matches!(
            Frame::parse(r#"{"type":"stats","x":1}"#),
            Frame::Other
        ));
        assert!(matches!(Frame::parse("not json"), Frame::Other));
    }

    #[test]
    fn gaps_and_repeats_are_problems_and_repeats_are_not_kept() {
        let journal = Journal::default();
        journal.started("r", 0);
        for offset in [1, 2, 2, 4] {
            journal.record("r", event(offset));
        }
        let log = journal.snapshot();
        let offsets: Vec<i64> = log.rooms["r"].events.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [1, 2, 4]);
        assert_eq!(log.problems.len(), 2, "{:?}", log.problems);
        assert_eq!(journal.positions()["r"], 4);
    }

    #[test]
    fn a_resume_keeps_the_expectation_of_the_room() {
        let journal = Journal::default();
        journal.started("r", 5);
        journal.record("r", event(6));
        journal.started("r", 9);
        journal.record("r", event(7));
        assert!(journal.snapshot().problems.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_event_arrives() {
        let journal = Journal::default();
        journal.started("r", 0);
        let recorder = journal.clone();
        tokio::spawn(async move { recorder.record("r", event(1)) });
        let arrived = journal
            .wait_for(Duration::from_secs(5), |log| log.total() == 1)
            .await;
        assert!(arrived);
        assert!(
            !journal
                .wait_for(Duration::from_millis(10), |log| log.total() == 2)
                .await
        );
    }
}
