//! Logs and metrics: tracing setup, the Prometheus recorder and the HTTP metrics middleware.

use crate::config::LogFormat;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Instant;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber. `RUST_LOG`, when set, wins over `level`.
///
/// Logs go to standard output. Colours (ANSI escape codes) only when that is a terminal: in a
/// file, a pipe or a log collector they are noise that every reader has to strip.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::stdout().is_terminal();
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_ansi(false),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(ansi))
            .try_init(),
    };
    // A second call (tests starting several servers) keeps the first subscriber.
    drop(result);
}

/// The process-wide Prometheus recorder. The `metrics` facade has one global recorder, so every
/// server in the process (tests run several) shares it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ],
            )
            .expect("bucket list is not empty");
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding application's): render ours unattached.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// Renders all metrics in Prometheus text format, refreshing process gauges first.
pub fn render_metrics() -> String {
    if let Some(rss) = resident_memory_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    prometheus().render()
}

/// Resident set size of this process, from `/proc/self/statm` (Linux).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Counts requests by method, route and status, and times them by method and route. The route
/// is the matched pattern (`/tasks/{id}`), never the raw path, and the method one of HTTP's own
/// or `other`, so label cardinality is bounded.
pub async fn track_http(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// A request's method as a metric label. HTTP lets a client send any token as a method
/// (`FOO1`, `FOO2`, ...); each would otherwise be a new series kept for the life of the process,
/// memory a client could grow without bound. Those all count as `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Counts connections the server cut because the peer was too slow or idle too long
/// (`header_timeout`, `slow_body`, `idle`).
pub(crate) fn connection_cut(reason: &'static str) {
    metrics::counter!("http_connections_cut_total", "reason" => reason).increment(1);
}

/// Counts connections refused before any request was read (`per_ip`: over
/// `max_connections_per_ip`, directly or as a forwarded client).
pub(crate) fn connection_refused(reason: &'static str) {
    metrics::counter!("http_connections_refused_total", "reason" => reason).increment(1);
}

/// Every second: each database pool's connections (open, busy, the most it may open) as gauges,
/// and how long taking a connection from it takes (a probe) into `db_pool_acquire_seconds`, so
/// a saturated pool shows before its queries time out.
pub(crate) async fn sample_pools(store: crate::store::Store) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for stats in store.pool_stats() {
            metrics::gauge!("db_pool_max_connections", "pool" => stats.pool)
                .set(f64::from(stats.max));
            metrics::gauge!("db_pool_connections", "pool" => stats.pool, "state" => "busy")
                .set(f64::from(stats.busy()));
            metrics::gauge!("db_pool_connections", "pool" => stats.pool, "state" => "idle")
                .set(f64::from(stats.idle));
        }
        match store.acquire_times().await {
            Ok(times) => {
                for (pool, took) in times {
                    metrics::histogram!("db_pool_acquire_seconds", "pool" => pool)
                        .record(took.as_secs_f64());
                }
            }
            Err(err) => tracing::debug!(%err, "pool probe failed"),
        }
    }
}
