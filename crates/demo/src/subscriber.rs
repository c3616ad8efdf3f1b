//! The demo's own WebSocket subscriber: connected before chapter 1, it follows every room of
//! the run from its first offset (`subscribe` with `since` offset 0, so the members added while
//! the cast was set up count too) and records each event in a [`Journal`]. Chapter 10 cuts its
//! connection, without a closing handshake, and resumes every room from the last offset it
//! has.
//!
//! One task owns the socket after the subscriptions (its reader); a cut aborts that task, which
//! drops the socket. Subscribing happens before that task exists, on the same loop that records
//! events, so an event of a room already followed is never left unread while the next room's
//! reply is awaited.

use crate::api::Api;
use crate::journal::{Frame, Journal, Received};
use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use taskflow_protocol::{Command, Since, Subscribed};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a handshake, the hello or a subscription's reply may take.
const ANSWER_WAIT: Duration = Duration::from_secs(15);

/// The WebSocket connection.
type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The subscriber.
pub struct Subscriber {
    /// `ws://host:port/ws/tasks`.
    url: String,
    /// The admin token: it may follow every room.
    token: String,
    /// Every room it follows.
    rooms: Vec<String>,
    /// The store's epoch, from the first hello: resumes name it.
    epoch: String,
    /// What it received.
    journal: Journal,
    /// The task reading the current connection; `None` while cut off.
    reader: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Connects and subscribes to each of `rooms` from its first event.
    pub async fn connect(api: &Api, rooms: Vec<String>) -> anyhow::Result<Self> {
        let mut subscriber = Self {
            url: api.ws_url(),
            token: api.admin_token().to_owned(),
            rooms,
            epoch: String::new(),
            journal: Journal::default(),
            reader: None,
        };
        let (mut socket, epoch) = subscriber.open().await?;
        subscriber.epoch = epoch;
        for (i, room) in subscriber.rooms.iter().enumerate() {
            subscriber.journal.started(room, 0);
            let since = subscriber.since(0);
            let answer = subscribe(&mut socket, &subscriber.journal, i, room, since).await?;
            if !answer.recovered {
                subscriber.journal.problem(format!(
                    "{room}: its log could not be replayed from the start"
                ));
            }
        }
        subscriber.reader = Some(tokio::spawn(read(socket, subscriber.journal.clone())));
        Ok(subscriber)
    }

    /// What it has received.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The rooms it follows.
    pub fn rooms(&self) -> &[String] {
        &self.rooms
    }

    /// Drops the connection on the floor: no closing handshake, as when a network goes away.
    pub fn cut(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }

    /// Connects again and resumes every room from the last offset received; returns each
    /// room's answer (`recovered`, and the offset the live stream continues after).
    pub async fn resume(&mut self) -> anyhow::Result<Vec<Subscribed>> {
        self.cut();
        let (mut socket, epoch) = self.open().await?;
        if epoch != self.epoch {
            self.journal.problem(format!(
                "the server's epoch changed: {} -> {epoch}",
                self.epoch
            ));
        }
        let positions = self.journal.positions();
        let mut answers = Vec::new();
        for (i, room) in self.rooms.iter().enumerate() {
            let last = positions.get(room).copied().unwrap_or(0);
            let answer = subscribe(&mut socket, &self.journal, i, room, self.since(last)).await?;
            if !answer.recovered {
                self.journal
                    .problem(format!("{room}: the resume from offset {last} was refused"));
            }
            answers.push(answer);
        }
        self.reader = Some(tokio::spawn(read(socket, self.journal.clone())));
        Ok(answers)
    }

    /// A resume point in this store's history.
    fn since(&self, offset: i64) -> Since {
        Since {
            epoch: self.epoch.clone(),
            offset: Some(offset),
            offsets: Default::default(),
        }
    }

    /// Opens a connection without automatic subscriptions (a live event of one must not
    /// overtake a room's replay) and reads its hello.
    async fn open(&self) -> anyhow::Result<(Socket, String)> {
        let mut request = format!("{}?auto=false", self.url)
            .into_client_request()
            .context("the WebSocket URL")?;
        let auth = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .context("the token is not a header value")?;
        request.headers_mut().insert("authorization", auth);
        let (mut socket, _) =
            tokio::time::timeout(ANSWER_WAIT, tokio_tungstenite::connect_async(request))
                .await
                .context("the WebSocket handshake timed out")?
                .with_context(|| format!("cannot open {}", self.url))?;
        let epoch = loop {
            match next_text(&mut socket).await? {
                Some(text) => {
                    if let Frame::Hello { epoch } = Frame::parse(&text) {
                        break epoch;
                    }
                }
                None => bail!("the server closed the connection before its hello"),
            }
        };
        Ok((socket, epoch))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Subscribes to `room` on `socket`, recording the events that arrive meanwhile.
async fn subscribe(
    socket: &mut Socket,
    journal: &Journal,
    id: usize,
    room: &str,
    since: Since,
) -> anyhow::Result<Subscribed> {
    let command = Command::Subscribe {
        room: room.to_owned(),
        since: Some(since),
    };
    let mut frame = serde_json::to_value(&command)?;
    frame["id"] = id.into();
    socket
        .send(Message::text(frame.to_string()))
        .await
        .with_context(|| format!("cannot subscribe to {room}"))?;
    loop {
        let Some(text) = next_text(socket).await? else {
            bail!("the server closed the connection while subscribing to {room}");
        };
        match Frame::parse(&text) {
            Frame::Reply {
                id: answered,
                ok,
                result,
                error,
            } if answered == id => {
                if !ok {
                    let why = error.map_or_else(|| "no reason".to_owned(), |e| e.message);
                    bail!("subscribing to {room} was refused: {why}");
                }
                return serde_json::from_value(result.unwrap_or_default())
                    .with_context(|| format!("the answer to subscribing to {room}"));
            }
            frame => note(journal, frame),
        }
    }
}

/// Records the events of the connection until it ends.
async fn read(mut socket: Socket, journal: Journal) {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => note(&journal, Frame::parse(&text)),
            Some(Ok(Message::Close(frame))) => {
                let code =
                    frame.map_or_else(|| "none".to_owned(), |f| u16::from(f.code).to_string());
                journal.problem(format!("the server closed the subscriber (code {code})"));
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                journal.problem(format!("the subscriber's connection failed: {err}"));
                return;
            }
            None => {
                journal.problem("the subscriber's connection ended".to_owned());
                return;
            }
        }
    }
}

/// Records `frame` if it is an event.
fn note(journal: &Journal, frame: Frame) {
    if let Frame::Event {
        room,
        offset,
        event,
        data,
    } = frame
    {
        journal.record(
            &room,
            Received {
                offset,
                event,
                data,
            },
        );
    }
}

/// The next text frame (`None` once the connection is closed), within [`ANSWER_WAIT`].
async fn next_text(socket: &mut Socket) -> anyhow::Result<Option<String>> {
    loop {
        let message = tokio::time::timeout(ANSWER_WAIT, socket.next())
            .await
            .context("the server did not answer in time")?;
        match message {
            Some(Ok(Message::Text(text))) => return Ok(Some(text.to_string())),
            Some(Ok(Message::Close(_))) | None => return Ok(None),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err).context("the WebSocket connection failed"),
        }
    }
}
