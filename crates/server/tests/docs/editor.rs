//! A collaborative editor for the tests: a yrs document synced with `/ws/docs/{doc}` over the
//! y-websocket protocol, as any Yjs client would be (yrs's own `sync` messages).
#![allow(dead_code, unreachable_pub)]

use crate::common::TestApp;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::sync::{AwarenessUpdate, Message as YMessage, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, TextRef, Transact, Update};

/// How long a test waits for something before failing.
pub const WAIT: Duration = Duration::from_secs(15);

pub type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Editor {
    pub stream: Stream,
    pub doc: Doc,
    pub text: TextRef,
    /// The awareness states other editors announced: client id to JSON (`null` once removed).
    pub peers: HashMap<u64, String>,
    /// Whether the server answered our step 1.
    pub synced: bool,
    /// Our own awareness clock.
    clock: u32,
}

/// Opens `/ws/docs/{name}` with `token` in the query, as the browser provider does.
pub async fn open(
    app: &TestApp,
    name: &str,
    token: &str,
) -> Result<Stream, tokio_tungstenite::tungstenite::Error> {
    open_at(&app.addr.to_string(), name, token).await
}

/// Opens `/ws/docs/{name}` on the server at `addr` (`host:port`).
pub async fn open_at(
    addr: &str,
    name: &str,
    token: &str,
) -> Result<Stream, tokio_tungstenite::tungstenite::Error> {
    let request = format!("ws://{addr}/ws/docs/{name}?access_token={token}")
        .into_client_request()
        .unwrap();
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
}

/// The HTTP status a refused handshake got.
pub async fn refused_with(app: &TestApp, name: &str, token: &str) -> u16 {
    match open(app, name, token).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("not an HTTP refusal: {other}"),
        Ok(_) => panic!("the handshake for {name} was accepted"),
    }
}

impl Editor {
    /// Connects and syncs: afterwards the editor holds the server's state.
    pub async fn join(app: &TestApp, task: &str, token: &str) -> Editor {
        Self::join_with(app, task, token, Doc::new()).await
    }

    /// Connects with an existing document (one edited offline), and syncs both ways.
    pub async fn join_with(app: &TestApp, task: &str, token: &str, doc: Doc) -> Editor {
        Self::join_at(&app.addr.to_string(), task, token, doc).await
    }

    /// Connects to the server at `addr` with `doc`, and syncs both ways.
    pub async fn join_at(addr: &str, task: &str, token: &str, doc: Doc) -> Editor {
        let stream = open_at(addr, &format!("task:{task}"), token)
            .await
            .expect("the handshake succeeds");
        let text = doc.get_or_insert_text("description");
        let mut editor = Editor {
            stream,
            doc,
            text,
            peers: HashMap::new(),
            synced: false,
            clock: 0,
        };
        let sv = editor.doc.transact().state_vector();
        editor
            .send(YMessage::Sync(SyncMessage::SyncStep1(sv)))
            .await;
        editor.until(|e| e.synced).await;
        editor
    }

    pub async fn send(&mut self, message: YMessage) {
        self.stream
            .send(Message::Binary(message.encode_v1().into()))
            .await
            .expect("send");
    }

    /// The description as this editor sees it.
    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Inserts at `index` (bytes) and sends the update, as a local edit would.
    pub async fn insert(&mut self, index: u32, chunk: &str) {
        let update = {
            let mut txn = self.doc.transact_mut();
            self.text.insert(&mut txn, index, chunk);
            txn.encode_update_v1()
        };
        self.send(YMessage::Sync(SyncMessage::Update(update))).await;
    }

    /// Deletes `len` bytes at `index` and sends the update.
    pub async fn delete(&mut self, index: u32, len: u32) {
        let update = {
            let mut txn = self.doc.transact_mut();
            self.text.remove_range(&mut txn, index, len);
            txn.encode_update_v1()
        };
        self.send(YMessage::Sync(SyncMessage::Update(update))).await;
    }

    /// Announces this editor's awareness state.
    pub async fn announce(&mut self, state: serde_json::Value) {
        self.clock += 1;
        let mut update = AwarenessUpdate {
            clients: HashMap::new(),
        };
        update.clients.insert(
            self.doc.client_id(),
            yrs::sync::awareness::AwarenessUpdateEntry {
                clock: self.clock,
                json: state.to_string().into(),
            },
        );
        self.send(YMessage::Awareness(update)).await;
    }

    /// Reads and handles messages until `done` holds; panics after [`WAIT`].
    pub async fn until(&mut self, done: impl Fn(&Editor) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("timed out; text now {:?}", self.text()))
                .expect("the connection stays open")
                .expect("a frame");
            self.handle(message).await;
        }
    }

    /// Reads and applies until the connection ends, however it ends (a killed server).
    pub async fn follow_to_the_end(&mut self) {
        while let Ok(Some(Ok(message))) = tokio::time::timeout(WAIT, self.stream.next()).await {
            self.handle(message).await;
        }
    }

    /// Sends an update; `false` once the connection is gone.
    pub async fn try_insert_at_end(&mut self, chunk: &str) -> bool {
        let update = {
            let mut txn = self.doc.transact_mut();
            let end = self.text.len(&txn);
            self.text.insert(&mut txn, end, chunk);
            txn.encode_update_v1()
        };
        let message = YMessage::Sync(SyncMessage::Update(update));
        self.stream
            .send(Message::Binary(message.encode_v1().into()))
            .await
            .is_ok()
    }

    async fn handle(&mut self, message: Message) {
        let Message::Binary(bytes) = message else {
            return;
        };
        match YMessage::decode_v1(&bytes).expect("a y-websocket message") {
            YMessage::Sync(SyncMessage::SyncStep1(sv)) => {
                let update = self.doc.transact().encode_state_as_update_v1(&sv);
                self.send(YMessage::Sync(SyncMessage::SyncStep2(update)))
                    .await;
            }
            YMessage::Sync(SyncMessage::SyncStep2(update)) => {
                self.apply(&update);
                self.synced = true;
            }
            YMessage::Sync(SyncMessage::Update(update)) => self.apply(&update),
            YMessage::Awareness(update) => {
                for (client, entry) in update.clients {
                    if client != self.doc.client_id() {
                        self.peers.insert(client.get(), entry.json.to_string());
                    }
                }
            }
            _ => {}
        }
    }

    fn apply(&mut self, update: &[u8]) {
        let update = Update::decode_v1(update).expect("the server's update decodes");
        self.doc
            .transact_mut()
            .apply_update(update)
            .expect("the server's update applies");
    }

    /// Reads until the server closes; returns its close code.
    pub async fn closed(mut self) -> u16 {
        close_code(&mut self.stream).await
    }
}

/// Reads until the server's close frame; its code.
pub async fn close_code(stream: &mut Stream) -> u16 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the server closes in time")
        {
            Some(Ok(Message::Close(frame))) => {
                return frame.map_or(1005, |f| u16::from(f.code));
            }
            Some(Ok(_)) => continue,
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}
