//! A minimal Server-Sent Events reader over reqwest, for tests.
#![allow(dead_code, unreachable_pub)]

use futures::StreamExt;
use serde_json::Value;

pub struct SseEvent {
    pub id: Option<String>,
    pub data: Value,
}

pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseReader {
    pub async fn open(url: &str, token: &str, last_event_id: Option<&str>) -> SseReader {
        let mut request = reqwest::Client::new().get(url).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let res = request.send().await.unwrap();
        assert_eq!(
            res.status(),
            200,
            "{}",
            res.text().await.unwrap_or_default()
        );
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        SseReader {
            body: res.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event with data (comments and retry hints are skipped).
    pub async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    let data = serde_json::from_str(&data).expect("SSE data is JSON");
                    // SSE carries the WebSocket's frames: the same contract.
                    crate::common::contract::check_frame(&data);
                    return SseEvent { id, data };
                }
                continue;
            }
            let chunk = tokio::time::timeout(crate::ws::WAIT, self.body.next())
                .await
                .expect("an SSE event arrives in time")
                .expect("the stream goes on")
                .expect("the stream is readable");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
