//! A small WebSocket test client.
#![allow(dead_code, unreachable_pub)]

use crate::common::TestApp;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame before failing: generous, so a loaded CI machine does not
/// flake, and only ever reached when the feature is broken.
pub const WAIT: Duration = Duration::from_secs(15);

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
    next_id: u64,
}

impl Ws {
    pub async fn connect(app: &TestApp, token: &str) -> Ws {
        let stream = Self::open(app, token)
            .await
            .expect("the handshake succeeds");
        Self::greeted(stream).await
    }

    pub async fn open(
        app: &TestApp,
        token: &str,
    ) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, tokio_tungstenite::tungstenite::Error>
    {
        let mut request = format!("ws://{}/ws/tasks", app.addr)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(s, _)| s)
    }

    pub async fn greeted(mut stream: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Ws {
        let hello = next_json(&mut stream).await;
        assert_eq!(hello["type"], "hello", "{hello}");
        Ws {
            stream,
            hello,
            next_id: 0,
        }
    }

    pub async fn send(&mut self, value: Value) {
        self.stream
            .send(Message::text(value.to_string()))
            .await
            .expect("send");
    }

    /// The next frame, whatever it is.
    pub async fn next(&mut self) -> Value {
        next_json(&mut self.stream).await
    }

    /// The next frame of `kind`, skipping others (presence and typing come and go).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Sends a command with a fresh id and returns its reply.
    pub async fn request(&mut self, mut command: Value) -> Value {
        self.next_id += 1;
        let id = format!("c{}", self.next_id);
        command["id"] = json!(id);
        self.send(command).await;
        loop {
            let frame = self.next().await;
            if frame["id"] == json!(id) {
                return frame;
            }
        }
    }

    pub async fn subscribe(&mut self, room: &str) -> Value {
        let reply = self
            .request(json!({ "type": "subscribe", "room": room }))
            .await;
        assert_eq!(reply["ok"], true, "subscribe {room}: {reply}");
        reply
    }

    /// The next text frame, or `None` once the connection is closed or broken (a cut).
    pub async fn try_next(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a frame or the end arrives in time")
            {
                Some(Ok(Message::Text(text))) => {
                    let frame = serde_json::from_str(&text).expect("frames are JSON");
                    crate::common::contract::check_frame(&frame);
                    return Some(frame);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Connects to `/ws/tasks` at another address (a proxy in front of the server) without the
    /// automatic subscriptions, as a client that resumes does.
    pub async fn connect_at(addr: std::net::SocketAddr, token: &str) -> Ws {
        let mut request = format!("ws://{addr}/ws/tasks?auto=false")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the handshake succeeds");
        Self::greeted(stream).await
    }

    /// A client (without automatic subscriptions) whose socket has a 4 KiB receive buffer, so
    /// that once it stops reading, the server's queue for it fills quickly.
    pub async fn connect_small_buffer(addr: std::net::SocketAddr, token: &str) -> Ws {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let mut request = format!("ws://{addr}/ws/tasks?auto=false")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (stream, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
        Self::greeted(stream).await
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("the server closes in time")
            {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code.into(), frame.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("connection failed instead of closing: {err}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }
}

async fn next_json(stream: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a frame arrives in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                let frame = serde_json::from_str(&text).expect("frames are JSON");
                crate::common::contract::check_frame(&frame);
                return frame;
            }
            Some(Ok(Message::Close(frame))) => {
                panic!("closed while waiting for a frame: {frame:?}")
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("connection failed: {err}"),
            None => panic!("connection ended"),
        }
    }
}
