//! The per-connection service between hyper and the router.
//!
//! What it adds to each request, before the router sees it: the peer address
//! (`ConnectInfo<SocketAddr>`), the body's minimum rate ([`super::body`]), and for requests
//! relayed by a trusted proxy, the forwarded client's place under `max_connections_per_ip`
//! (a 503 when it has none). What it tracks: the request's life, for the connection's clock
//! ([`super::connection`]), from parsed headers until its response body is done. It never
//! looks at routes, authentication or bodies' contents.

use super::body::{MinRate, RateLimited};
use super::connection::ConnState;
use super::limits::{PerIpLimit, Slot};
use super::proxies::TrustedProxies;
use crate::error::{render_outside_router, ApiError};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::ServiceExt;

/// How long a client refused for its connection count is told to wait.
pub(crate) const RETRY_AFTER_SECS: u64 = 5;

/// What every connection's service shares.
pub(crate) struct Policy {
    /// The application.
    pub(crate) router: Router,
    /// The request bodies' minimum rate; `None` when `body_min_bytes_per_sec` is 0.
    pub(crate) min_rate: Option<MinRate>,
    /// The per-address cap; `None` when `max_connections_per_ip` is 0.
    pub(crate) per_ip: Option<PerIpLimit>,
    /// The proxies whose `X-Forwarded-For` is believed.
    pub(crate) proxies: TrustedProxies,
    /// `Strict-Transport-Security` for responses over TLS; `None` on plain connections'
    /// policy or when HSTS is off.
    pub(crate) hsts: Option<HeaderValue>,
}

/// One connection's service: hyper calls it once per request.
#[derive(Clone)]
pub(crate) struct ConnService {
    /// Shared by all connections (of one kind: plain or TLS).
    policy: Arc<Policy>,
    /// This connection's clock.
    state: Arc<ConnState>,
    /// The peer's address.
    peer: SocketAddr,
}

impl ConnService {
    /// The service for a connection from `peer`.
    pub(crate) fn new(policy: Arc<Policy>, state: Arc<ConnState>, peer: SocketAddr) -> Self {
        Self {
            policy,
            state,
            peer,
        }
    }

    /// The forwarded client's slot for a request relayed by a trusted proxy: `Ok(None)` when
    /// nothing is counted (no cap, a direct peer, no usable `X-Forwarded-For`).
    fn forwarded_slot(&self, req: &Request<Incoming>) -> Result<Option<Slot>, ApiError> {
        let Some(limit) = &self.policy.per_ip else {
            return Ok(None);
        };
        if !self.policy.proxies.contains(self.peer.ip()) {
            return Ok(None);
        }
        let Some(client) = self.policy.proxies.forwarded_client(req.headers()) else {
            return Ok(None);
        };
        match limit.acquire(client) {
            Some(slot) => Ok(Some(slot)),
            None => {
                crate::telemetry::connection_refused("per_ip");
                Err(ApiError::TooManyConnections {
                    retry_after_secs: RETRY_AFTER_SECS,
                })
            }
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.state.request_started();
        let mut guard = RequestGuard {
            state: self.state.clone(),
            forwarded: None,
        };
        let hsts = self.policy.hsts.clone();
        match self.forwarded_slot(&req) {
            Ok(slot) => guard.forwarded = slot,
            Err(refusal) => {
                let response = with_hsts(render_outside_router(refusal), hsts);
                return Box::pin(std::future::ready(Ok(guard.track(response))));
            }
        }
        let mut req = match self.policy.min_rate {
            Some(rate) => req.map(|body| Body::new(RateLimited::new(body, rate))),
            None => req.map(Body::new),
        };
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.policy.router.clone();
        Box::pin(async move {
            let response = router.oneshot(req).await.unwrap_or_else(|e| match e {});
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                // From now on the connection is this client's WebSocket.
                if let Some(slot) = guard.forwarded.take() {
                    guard.state.adopt(slot);
                }
            }
            Ok(guard.track(with_hsts(response, hsts)))
        })
    }
}

fn with_hsts(mut response: Response<Body>, hsts: Option<HeaderValue>) -> Response<Body> {
    if let Some(hsts) = hsts {
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
    }
    response
}

/// One request in flight: tells the clock when it is done, and holds the forwarded client's
/// slot until then.
struct RequestGuard {
    /// The connection's clock.
    state: Arc<ConnState>,
    /// The forwarded client's place, if counted.
    forwarded: Option<Slot>,
}

impl RequestGuard {
    fn track(self, response: Response<Body>) -> Response<Tracked> {
        response.map(|body| Tracked { body, _guard: self })
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.state.request_done();
    }
}

/// A response body that keeps its request in flight until hyper has taken its last frame (or
/// dropped it: the client went away).
pub(crate) struct Tracked {
    /// The router's body.
    body: Body,
    /// Released with the body.
    _guard: RequestGuard,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
