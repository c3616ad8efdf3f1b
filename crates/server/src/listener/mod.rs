//! The listening socket and what happens on it before a request reaches the router.
//!
//! - [`bind`]: the socket. With `reuse_port`, SO_REUSEPORT lets several processes bind one
//!   address: the kernel spreads incoming connections over them, so one machine can hold more
//!   connections than one process's file limit allows (each node then has its own limit).
//! - `accept`: the accept loop, one task per connection running hyper's HTTP/1.1 (with
//!   upgrades), graceful shutdown.
//! - `connection`: each connection's clock (header timeout, keep-alive timeout) and the socket
//!   wrapper that moves it and holds the connection's per-address place.
//! - `service`: per request: peer address, body rate, forwarded clients' places, in-flight
//!   tracking, HSTS.
//! - `body`: the request body's minimum rate.
//! - `limits`: the per-address connection cap. `proxies`: trusted proxies, `X-Forwarded-For`.
//!
//! What it never knows: routes, authentication, the hub. A slow or idle peer is cut here, before
//! it costs a handler anything; what it sends after its headers is the router's business.

mod accept;
mod body;
mod connection;
mod limits;
mod proxies;
mod service;

pub use proxies::InvalidProxy;

use crate::config::Config;
use axum::http::HeaderValue;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves `router` on `listener` with the connection bounds of `config` (and TLS when `tls` is
/// given) until `shutdown` resolves and every HTTP connection has closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    config: &Config,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), InvalidProxy> {
    let hsts = (tls.is_some() && config.hsts_max_age_secs > 0).then(|| {
        HeaderValue::from_str(&format!("max-age={}", config.hsts_max_age_secs))
            .expect("digits are a valid header value")
    });
    let policy = service::Policy {
        router,
        min_rate: (config.body_min_bytes_per_sec > 0).then(|| body::MinRate {
            grace: Duration::from_secs(config.header_timeout_secs),
            bytes_per_sec: config.body_min_bytes_per_sec,
        }),
        per_ip: (config.max_connections_per_ip > 0)
            .then(|| limits::PerIpLimit::new(config.max_connections_per_ip)),
        proxies: proxies::TrustedProxies::parse(&config.trusted_proxies)?,
        hsts,
    };
    let options = accept::Options {
        policy: Arc::new(policy),
        timeouts: accept::Timeouts {
            header: Duration::from_secs(config.header_timeout_secs.max(1)),
            keepalive: Duration::from_secs(config.keepalive_timeout_secs.max(1)),
            send: (config.send_timeout_secs > 0)
                .then(|| Duration::from_secs(config.send_timeout_secs)),
        },
        tls,
    };
    accept::serve(listener, options, shutdown).await;
    Ok(())
}

/// Binds `addr` for a server, with SO_REUSEPORT when `reuse_port` (Unix only).
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std's TcpListener does: a restarted server can bind while old connections linger.
    socket.set_reuse_address(true)?;
    if reuse_port {
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        #[cfg(not(unix))]
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "reuse_port needs SO_REUSEPORT (Unix)",
        ));
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

#[cfg(all(test, unix))]
mod tests {
    #[tokio::test]
    async fn two_listeners_share_a_port_with_reuse_port_and_not_without() {
        let first = super::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = first.local_addr().unwrap();
        let second = super::bind(addr, true).expect("a second node binds the same port");
        assert_eq!(second.local_addr().unwrap(), addr);
        assert!(
            super::bind(addr, false).is_err(),
            "without reuse_port the port is taken"
        );
    }
}
