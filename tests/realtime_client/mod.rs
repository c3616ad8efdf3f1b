//! A WebSocket client for tests that drive real `taskflow` processes: it subscribes, records
//! every event it receives, resumes elsewhere from where it stopped, and checks that it got every
//! event once, in order. With the REST calls such tests share.
#![allow(dead_code, unreachable_pub)]

use crate::binary::TOKEN;
use crate::common::TestDb;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use taskflow_server::store::Store;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long anything may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

pub async fn open_socket(addr: &str, token: &str) -> Socket {
    let mut request = format!("ws://{addr}/ws/tasks?auto=false")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("connects in time")
        .expect("connects");
    socket
}

/// The next text frame, or `None` when the connection ends (closed or killed).
pub async fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame or the end in time")
        {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// A WebSocket client that subscribes to rooms, records every event it receives, and resumes
/// on another node from where it stopped.
pub struct Client {
    pub socket: Option<Socket>,
    pub token: String,
    pub epoch: Value,
    /// Room → where its stream started (the first subscription's answer).
    pub start: BTreeMap<String, i64>,
    /// Room → offsets received, in arrival order.
    pub got: BTreeMap<String, Vec<i64>>,
    /// Close codes seen.
    pub closes: Vec<u16>,
}

impl Client {
    pub async fn connect(addr: &str, token: &str, rooms: &[&str]) -> Client {
        let mut client = Client {
            socket: None,
            token: token.to_owned(),
            epoch: Value::Null,
            start: BTreeMap::new(),
            got: BTreeMap::new(),
            closes: Vec::new(),
        };
        client.socket = Some(open_socket(addr, token).await);
        for room in rooms {
            let answer = client
                .command(json!({ "type": "subscribe", "room": room }))
                .await;
            client.epoch = answer["epoch"].clone();
            client
                .start
                .insert(room.to_string(), answer["offset"].as_i64().unwrap());
            client.got.entry(room.to_string()).or_default();
        }
        client
    }

    /// Sends a command and returns its result; events that arrive meanwhile are recorded.
    pub async fn command(&mut self, mut command: Value) -> Value {
        let id = uuid::Uuid::now_v7().to_string();
        command["id"] = json!(id);
        let socket = self.socket.as_mut().expect("connected");
        socket
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        loop {
            let frame = self.frame().await.expect("the answer");
            if frame["id"] == json!(id) {
                assert_eq!(frame["ok"], true, "{command} -> {frame}");
                return frame["result"].clone();
            }
        }
    }

    /// The next frame, recording it if it is an event.
    pub async fn frame(&mut self) -> Option<Value> {
        let frame = next(self.socket.as_mut()?).await;
        match &frame {
            Some(f) if f["type"] == "event" => {
                let room = f["room"].as_str().unwrap().to_owned();
                self.got
                    .entry(room)
                    .or_default()
                    .push(f["offset"].as_i64().unwrap());
            }
            Some(_) => {}
            None => {
                if let Some(mut socket) = self.socket.take() {
                    // The close frame, if the server sent one, was the last thing read.
                    let _ = socket.close(None).await;
                }
            }
        }
        frame
    }

    /// The last offset seen in `room` (or where its stream started).
    pub fn position(&self, room: &str) -> i64 {
        self.got
            .get(room)
            .and_then(|o| o.last().copied())
            .unwrap_or(self.start[room])
    }

    /// Reads until every room has reached `targets`; false if the connection ended first.
    pub async fn read_until(&mut self, targets: &BTreeMap<String, i64>) -> bool {
        let deadline = Instant::now() + WAIT;
        while targets.iter().any(|(room, &t)| self.position(room) < t) {
            assert!(
                Instant::now() < deadline,
                "events in time: {targets:?} vs {:?}",
                self.got
                    .iter()
                    .map(|(r, o)| (r, o.last()))
                    .collect::<Vec<_>>()
            );
            if self.socket.is_none() || self.frame().await.is_none() {
                return false;
            }
        }
        true
    }

    /// Reads until the connection ends (the node died or closed it); records the close code.
    pub async fn read_until_closed(&mut self) {
        while let Some(socket) = self.socket.as_mut() {
            match tokio::time::timeout(WAIT, socket.next())
                .await
                .expect("the connection ends in time")
            {
                Some(Ok(Message::Text(text))) => {
                    let f: Value = serde_json::from_str(&text).unwrap();
                    if f["type"] == "event" {
                        self.got
                            .entry(f["room"].as_str().unwrap().to_owned())
                            .or_default()
                            .push(f["offset"].as_i64().unwrap());
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if let Some(frame) = frame {
                        self.closes.push(frame.code.into());
                    }
                    self.socket = None;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => self.socket = None,
            }
        }
    }

    /// Connects to `addr` and resumes every room from where it stopped; the node must recover
    /// them all (its log is the cluster's log).
    pub async fn resume(&mut self, addr: &str) {
        self.socket = Some(open_socket(addr, &self.token).await);
        let rooms: Vec<String> = self.start.keys().cloned().collect();
        for room in rooms {
            let since = json!({ "epoch": self.epoch, "offset": self.position(&room) });
            let answer = self
                .command(json!({ "type": "subscribe", "room": room, "since": since }))
                .await;
            assert_eq!(answer["recovered"], true, "resume on {addr}: {answer}");
        }
    }

    /// Every event of every room from the start up to `targets`, once each, in order.
    pub fn assert_complete(&self, targets: &BTreeMap<String, i64>) {
        for (room, &target) in targets {
            let expected: Vec<i64> = (self.start[room] + 1..=target).collect();
            assert_eq!(
                self.got[room], expected,
                "{room}: every event once, in offset order"
            );
        }
    }
}

pub async fn create_project(addr: &str, id: &str, members: &[&str]) {
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/projects"))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": id, "name": id, "members": members }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}

pub async fn token_for(addr: &str, user: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/auth/tokens"))
        .bearer_auth(TOKEN)
        .json(&json!({ "user": user }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// Writes up to `count` tasks into `project` through `addr`, stopping at the first failure (the
/// node died); returns how many were acknowledged.
pub fn writer(addr: String, project: &'static str, count: usize) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        for i in 0..count {
            let res = client
                .post(format!("http://{addr}/tasks"))
                .bearer_auth(TOKEN)
                .json(&json!({ "title": format!("t{i}"), "project_id": project }))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match res {
                Ok(res) if res.status() == 201 => {}
                _ => return i,
            }
        }
        count
    })
}

/// The store's last offset of each room: what every subscriber must end up with.
pub async fn last_offsets(db: &TestDb, rooms: &[&str]) -> BTreeMap<String, i64> {
    let store = Store::connect(&db.url).await.unwrap();
    let mut targets = BTreeMap::new();
    for room in rooms {
        targets.insert(room.to_string(), store.last_offset(room).await.unwrap());
    }
    store.close().await;
    targets
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let res = reqwest::get(url).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A node's `/metrics` text.
async fn metrics(addr: &str) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A counter of a node's `/metrics`.
pub async fn counter(addr: &str, name: &str) -> f64 {
    metrics(addr)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A counter of a node's `/metrics`, summed over its labels (0 if it is not there yet).
pub async fn counter_sum(addr: &str, name: &str) -> f64 {
    metrics(addr)
        .await
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// One labelled series of a node's counter (0 if it is not there yet).
pub async fn counter_of(addr: &str, name: &str, labels: &str) -> f64 {
    counter(addr, &format!("{name}{{{labels}}}")).await
}
