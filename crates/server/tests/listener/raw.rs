//! Raw HTTP/1.1 over a TCP socket: just enough to send requests byte by byte and read answers.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The longest any wait in these tests may take: reached only when a feature is broken.
pub const BOUND: Duration = Duration::from_secs(20);

/// Connects to `addr` from the loopback address `from` (the server tells clients apart by it).
pub async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the peer closes (EOF or reset), at most [`BOUND`]: what was read, and how long
/// it took. Panics if the connection is still open after the bound.
pub async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + BOUND).into(), stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open for {BOUND:?} (read {:?})",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return (received, start.elapsed()),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// An HTTP response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Reads one response with a `Content-Length` body, leaving the connection open.
pub async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> RawResponse {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + BOUND;
    let head_end = loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            break end + 4;
        }
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("a response within the bound")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = received[head_end..].to_vec();
    while body.len() < length {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("the body within the bound")
            .expect("read");
        assert!(n > 0, "closed inside the body");
        body.extend_from_slice(&buf[..n]);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Sends a whole request at once.
pub async fn send(stream: &mut TcpStream, request: &str) {
    stream.write_all(request.as_bytes()).await.unwrap();
}

/// `GET path` on a new connection from `from`, answered in full.
pub async fn get_from(from: [u8; 4], addr: SocketAddr, path: &str) -> RawResponse {
    let mut stream = connect_from(from, addr).await;
    send(
        &mut stream,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
    .await;
    read_response(&mut stream).await
}

/// Writes `bytes` one at a time, `every` apart, until they are all sent or the peer closes.
/// Returns how many were sent.
pub async fn dribble(
    stream: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
    every: Duration,
) -> usize {
    for (sent, byte) in bytes.iter().enumerate() {
        if stream.write_all(&[*byte]).await.is_err() {
            return sent;
        }
        tokio::time::sleep(every).await;
    }
    bytes.len()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
