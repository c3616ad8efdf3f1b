//! Numbers from the server's `/metrics` (Prometheus text format): its memory for chapter 7, its
//! WebSocket connections for the wait for the second terminal.

use crate::api::Api;
use anyhow::Context;
use reqwest::Method;

/// The server's resident memory, from its `process_resident_memory_bytes` gauge.
pub const RSS: &str = "process_resident_memory_bytes";
/// The server's open real-time sessions, from its `ws_connections` gauge.
pub const CONNECTIONS: &str = "ws_connections";

/// The sum of every series named `name` in the text (`None` when there is none).
pub fn value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = series.split_once('{').map_or(series, |(m, _)| m);
        if metric == name {
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}

/// Reads the metric `name` from the server now.
pub async fn read(api: &Api, name: &str) -> anyhow::Result<f64> {
    let answer = api
        .call_anonymous(Method::GET, "/metrics")
        .stream()
        .await?
        .text()
        .await
        .context("/metrics could not be read")?;
    value(&answer, name).with_context(|| format!("/metrics has no {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_series_of_a_name_and_skips_comments() {
        let text = "# TYPE ws_connections gauge\nws_connections 2\n\
                    http_requests_total{route=\"/a\"} 3\nhttp_requests_total{route=\"/b\"} 4\n";
        assert_eq!(value(text, "ws_connections"), Some(2.0));
        assert_eq!(value(text, "http_requests_total"), Some(7.0));
        assert_eq!(value(text, "ws_subscriptions"), None);
    }
}
