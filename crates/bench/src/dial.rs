//! Opening WebSocket connections from many source addresses: one source address has about
//! 28,000 ephemeral ports, so large runs spread their connections over 127.0.0.x.

use crate::target::Target;
use futures::StreamExt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// A connected client.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Hands out source addresses round-robin.
#[derive(Debug)]
pub struct Dialer {
    /// Source addresses to bind (empty: let the kernel choose).
    sources: Vec<Ipv4Addr>,
    /// The next one.
    next: AtomicUsize,
}

impl Dialer {
    /// Spreads over `127.0.0.1 ..= 127.0.0.<count>` (IPv4 targets only).
    pub fn new(target: &Target, count: u8) -> Self {
        let sources = if target.is_v4() {
            (1..=count.max(1))
                .map(|i| Ipv4Addr::new(127, 0, 0, i))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            sources,
            next: AtomicUsize::new(0),
        }
    }

    /// Opens one TCP connection to the target from the next source address.
    pub async fn dial(&self, target: &Target) -> Result<TcpStream, String> {
        let tcp = match self.sources.len() {
            0 => TcpStream::connect(target.addr)
                .await
                .map_err(|e| e.to_string())?,
            n => {
                let source = self.sources[self.next.fetch_add(1, Ordering::Relaxed) % n];
                let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
                socket
                    .bind(SocketAddr::new(IpAddr::V4(source), 0))
                    .map_err(|e| e.to_string())?;
                socket
                    .connect(target.addr)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// Opens one connection as the holder of `token` and waits for the server's hello.
    pub async fn connect(&self, target: &Target, token: &str) -> Result<Socket, String> {
        let tcp = self.dial(target).await?;
        let mut request = target
            .ws()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let auth = format!("Bearer {token}")
            .parse()
            .map_err(|_| "bad token".to_owned())?;
        request.headers_mut().insert("authorization", auth);
        let connector = match target.tls_config() {
            Some(config) => Connector::Rustls(config),
            None => Connector::Plain,
        };
        let (mut socket, _) = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::client_async_tls_with_config(
                request,
                tcp,
                Some(client_config()),
                Some(connector),
            ),
        )
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => Ok(socket),
            _ => Err("no hello".into()),
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit, since each connection is a
/// file and the soft limit is often far below what the hard one allows; returns the limit now in
/// force (`None`: unlimited).
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    open_files_limit()
}

/// This process's soft limit on open files (`None`: unlimited).
pub fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The bench's own connections: a read buffer large enough to take many batched frames per
/// read, small enough that 19,000 connections fit in one bench process.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}
