//! The demo's Server-Sent Events stream (`GET /events`): the same rooms as the WebSocket
//! subscriber, opened before chapter 1, recorded in a [`Journal`] of its own so chapter 10 can
//! compare the two transports event by event. It is cut and resumed with `Last-Event-ID`, the
//! cursor of every room the last event's `id:` carries, as a browser's `EventSource` does.
//!
//! The stream's format is read here (blocks of `id:` and `data:` lines ended by a blank line):
//! no crate of the workspace parses `text/event-stream`, and the server's frames need no more
//! than those two fields (docs/protocol.md, "Server-Sent Events").

use crate::api::Api;
use crate::journal::{Frame, Journal, Received};
use anyhow::{bail, Context};
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::Method;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskflow_protocol::Subscribed;
use tokio::task::JoinHandle;

/// How long the stream's opening (its `subscribed` frames) may take.
const OPEN_WAIT: Duration = Duration::from_secs(15);

/// Where the stream stopped: the last `id:` it carried. Behind a std mutex, held only to copy
/// the id in or out, never across an `.await`.
#[derive(Default)]
struct Position {
    /// The cursor to resume from.
    last_id: Option<String>,
}

/// The SSE stream.
pub struct SseStream {
    /// The API (its client, address and admin token).
    api: Api,
    /// The rooms, as the `rooms` query parameter.
    rooms: Vec<String>,
    /// What it received.
    journal: Journal,
    /// Where to resume from.
    position: Arc<Mutex<Position>>,
    /// The task reading the body; `None` while cut.
    reader: Option<JoinHandle<()>>,
}

impl SseStream {
    /// Opens the stream on `rooms` and waits for each room's `subscribed` frame.
    pub async fn open(api: &Api, rooms: Vec<String>) -> anyhow::Result<Self> {
        let mut stream = Self {
            api: api.clone(),
            rooms,
            journal: Journal::default(),
            position: Arc::default(),
            reader: None,
        };
        stream.connect(None).await?;
        Ok(stream)
    }

    /// What it received.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Drops the stream, as a browser tab losing its network does.
    pub fn cut(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }

    /// Opens the stream again with the last event's id as `Last-Event-ID`; returns each room's
    /// `subscribed` frame.
    pub async fn resume(&mut self) -> anyhow::Result<Vec<Subscribed>> {
        self.cut();
        let last_id = self.position.lock().expect("not poisoned").last_id.clone();
        let Some(last_id) = last_id else {
            bail!("the SSE stream carried no id to resume from");
        };
        self.connect(Some(&last_id)).await
    }

    /// Opens the stream, reads its `subscribed` frames, then hands the body to a reader task.
    async fn connect(&mut self, last_id: Option<&str>) -> anyhow::Result<Vec<Subscribed>> {
        let path = format!("/events?rooms={}", self.rooms.join(","));
        let mut call = self.api.call(Method::GET, &path);
        if let Some(id) = last_id {
            call = call.header("last-event-id", id);
        }
        let response = call.stream().await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            bail!("GET /events answered {status}: {body}");
        }
        let mut body = Blocks::new(response);
        let mut subscribed = Vec::new();
        while subscribed.len() < self.rooms.len() {
            let block = tokio::time::timeout(OPEN_WAIT, body.next())
                .await
                .context("the SSE stream did not open in time")??
                .context("the SSE stream ended while opening")?;
            if let Some(answer) = note(&self.journal, &self.position, block) {
                subscribed.push(answer);
            }
        }
        let (journal, position) = (self.journal.clone(), self.position.clone());
        self.reader = Some(tokio::spawn(async move {
            loop {
                match body.next().await {
                    Ok(Some(block)) => {
                        note(&journal, &position, block);
                    }
                    Ok(None) => {
                        journal.problem("the SSE stream ended".to_owned());
                        return;
                    }
                    Err(err) => {
                        journal.problem(format!("the SSE stream failed: {err:#}"));
                        return;
                    }
                }
            }
        }));
        Ok(subscribed)
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Records one block of the stream: an event, or a room's subscription (returned).
fn note(journal: &Journal, position: &Mutex<Position>, block: Block) -> Option<Subscribed> {
    let answer = match Frame::parse(&block.data) {
        Frame::Subscribed(answer) => {
            journal.started(&answer.room, answer.offset.unwrap_or(0));
            if !answer.recovered {
                journal.problem(format!("{}: the SSE resume was refused", answer.room));
            }
            Some(answer)
        }
        Frame::Event {
            room,
            offset,
            event,
            data,
        } => {
            journal.record(
                &room,
                Received {
                    offset,
                    event,
                    data,
                },
            );
            None
        }
        _ => None,
    };
    if let Some(id) = block.id {
        position.lock().expect("not poisoned").last_id = Some(id);
    }
    answer
}

/// One event of the stream: its `id:` and its `data:` lines joined.
#[derive(Debug, PartialEq)]
struct Block {
    /// The cursor after it, if it carries one.
    id: Option<String>,
    /// Its data.
    data: String,
}

/// The blocks of a `text/event-stream` body, as they arrive.
struct Blocks {
    /// The body.
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    /// What arrived and is not a whole block yet.
    buffer: String,
}

impl Blocks {
    fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next block with data (comments, `retry:` and keep-alives are skipped); `None` at
    /// the end of the stream.
    async fn next(&mut self) -> anyhow::Result<Option<Block>> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..end + 2).collect();
                if let Some(block) = parse_block(&raw) {
                    return Ok(Some(block));
                }
            }
            match self.body.next().await {
                Some(chunk) => {
                    let chunk = chunk.context("the SSE stream could not be read")?;
                    self.buffer.push_str(&String::from_utf8_lossy(&chunk));
                }
                None => return Ok(None),
            }
        }
    }
}

/// A block's `id:` and `data:` (several `data:` lines are joined with newlines, as the format
/// says); `None` for a block without data.
fn parse_block(raw: &str) -> Option<Block> {
    let mut id = None;
    let mut data: Option<String> = None;
    for line in raw.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "data" => match &mut data {
                Some(joined) => {
                    joined.push('\n');
                    joined.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    data.map(|data| Block { id, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_id_and_data_and_comments_are_skipped() {
        assert_eq!(parse_block(": keep-alive\n\n"), None);
        assert_eq!(parse_block("retry: 2000\n\n"), None);
        assert_eq!(
            parse_block("id: abc\ndata: {\"a\":1}\n\n"),
            Some(Block {
                id: Some("abc".into()),
                data: "{\"a\":1}".into()
            })
        );
        assert_eq!(
            parse_block("data:x\ndata: y\n\n").unwrap().data,
            "x\ny",
            "lines join with a newline"
        );
    }
}
