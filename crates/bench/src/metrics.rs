//! The server's own count of what a storm cost it: `realtime_db_queries_total` (database queries
//! made to admit or subscribe real-time connections, by reason) against
//! `hub_connections_opened_total` (sessions opened), read from `/metrics` before and after. A
//! counter the server has not incremented yet is absent from its output, and counts as 0.
//!
//! Several nodes sharing one port (`--reuse-port`) answer each new connection from a node the
//! kernel picks, so one scrape of the port shows one node's counters, which node not said. Each
//! scrape here asks `/readyz` (whose `node` names the node in a cluster) and `/metrics` over one
//! keep-alive connection, so both answers are the same node's; new connections are opened until
//! no new node has answered for [`QUIET_TRIES`] in a row, and the nodes' counters add up.

use crate::stream::Stream;
use crate::target::Target;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// New connections in a row that found no new node before an address is taken as fully seen:
/// with three nodes picked at random, one stays unseen that long with a chance of 2 in 10,000.
const QUIET_TRIES: usize = 24;

/// Connections opened to one address at most.
const MAX_TRIES: usize = 96;

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// One node's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeCounters {
    /// `hub_connections_opened_total`.
    pub opened: f64,
    /// `realtime_db_queries_total` by its `reason` label.
    pub queries: BTreeMap<String, f64>,
}

/// Every node's counters at one moment, by node (its cluster id, else the address scraped).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The counters.
    pub nodes: BTreeMap<String, NodeCounters>,
}

/// What the nodes did between two scrapes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DbQueries {
    /// The nodes scraped both times (a drained node answers only the first).
    pub nodes: Vec<String>,
    /// Sessions they opened.
    pub connections_opened: f64,
    /// Database queries they made to admit or subscribe real-time connections.
    pub queries: f64,
    /// Those by reason.
    pub by_reason: BTreeMap<String, f64>,
    /// `queries / connections_opened`; `None` if no connection was opened.
    pub per_connection: Option<f64>,
}

/// Scrapes every node behind each of `addrs`. A node that answers no scrape is left out (and
/// said so on stderr), so a run still yields its report.
pub async fn scrape(target: &Target, addrs: &[SocketAddr]) -> Scrape {
    let mut all = Scrape::default();
    for &addr in addrs {
        let mut quiet = 0;
        for _ in 0..MAX_TRIES {
            match tokio::time::timeout(SCRAPE_TIMEOUT, scrape_one(target, addr)).await {
                Ok(Ok((node, counters))) => {
                    let single = node.is_none();
                    let name = node.unwrap_or_else(|| addr.to_string());
                    if all.nodes.insert(name, counters).is_some() {
                        quiet += 1;
                    } else {
                        quiet = 0;
                    }
                    // A node outside a cluster is alone behind its address.
                    if single || quiet >= QUIET_TRIES {
                        break;
                    }
                }
                Ok(Err(err)) => {
                    eprintln!("metrics of {addr}: {err}");
                    break;
                }
                Err(_) => {
                    eprintln!("metrics of {addr}: no answer within {SCRAPE_TIMEOUT:?}");
                    break;
                }
            }
        }
    }
    all
}

/// One node's name (`/readyz`'s `node`, absent outside a cluster) and counters, both asked over
/// one connection.
async fn scrape_one(
    target: &Target,
    addr: SocketAddr,
) -> Result<(Option<String>, NodeCounters), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let stream: Stream = target.secure(tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let host = target.host();
    let ready = get(&mut sender, &host, "/readyz").await?;
    let metrics = get(&mut sender, &host, "/metrics").await?;
    conn.abort();
    let node = serde_json::from_slice::<serde_json::Value>(&ready)
        .ok()
        .and_then(|v| v["node"].as_str().map(str::to_owned));
    Ok((node, parse(&String::from_utf8_lossy(&metrics))))
}

/// One GET over the connection `sender` drives.
async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> Result<Bytes, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let request = Request::get(path)
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    match status.is_success() {
        true => Ok(body),
        false => Err(format!("{path}: {status}")),
    }
}

/// The counters in a Prometheus text exposition.
pub fn parse(text: &str) -> NodeCounters {
    let mut counters = NodeCounters::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.trim().rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            "hub_connections_opened_total" => counters.opened += value,
            "realtime_db_queries_total" => {
                let reason = label(labels, "reason").unwrap_or("").to_owned();
                *counters.queries.entry(reason).or_default() += value;
            }
            _ => {}
        }
    }
    counters
}

/// The value of label `name` in `a="x",b="y"}`.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_end_matches('}').trim_matches('"'))
    })
}

/// What the nodes scraped both times did in between.
pub fn delta(before: &Scrape, after: &Scrape) -> DbQueries {
    let mut delta = DbQueries::default();
    for (node, a) in &after.nodes {
        let Some(b) = before.nodes.get(node) else {
            eprintln!("metrics: node {node} answered only after the storm; left out");
            continue;
        };
        delta.nodes.push(node.clone());
        delta.connections_opened += a.opened - b.opened;
        for (reason, n) in &a.queries {
            let d = n - b.queries.get(reason).copied().unwrap_or(0.0);
            *delta.by_reason.entry(reason.clone()).or_default() += d;
            delta.queries += d;
        }
    }
    for node in before.nodes.keys() {
        if !after.nodes.contains_key(node) {
            eprintln!("metrics: node {node} answered only before the storm (drained?); left out");
        }
    }
    delta.per_connection =
        (delta.connections_opened > 0.0).then(|| delta.queries / delta.connections_opened);
    delta
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE hub_connections_opened_total counter\n\
        hub_connections_opened_total 100\n\
        realtime_db_queries_total{reason=\"memberships\"} 40\n\
        ws_connections 100\n";

    #[test]
    fn reads_the_counters_and_takes_absent_ones_as_zero() {
        let c = parse(BEFORE);
        assert_eq!(c.opened, 100.0);
        assert_eq!(c.queries["memberships"], 40.0);
        let empty = parse("ws_connections 3\n");
        assert_eq!(empty, NodeCounters::default());
    }

    #[test]
    fn the_delta_adds_up_the_nodes_seen_both_times() {
        let node = |text: &str| parse(text);
        let before = Scrape {
            nodes: [
                ("n1".to_owned(), node(BEFORE)),
                ("n2".to_owned(), node("hub_connections_opened_total 50\n")),
                (
                    "drained".to_owned(),
                    node("hub_connections_opened_total 7\n"),
                ),
            ]
            .into(),
        };
        let after = Scrape {
            nodes: [
                (
                    "n1".to_owned(),
                    node(
                        "hub_connections_opened_total 300\n\
                         realtime_db_queries_total{reason=\"memberships\"} 45\n\
                         realtime_db_queries_total{reason=\"replay\"} 5\n",
                    ),
                ),
                (
                    "n2".to_owned(),
                    node(
                        "hub_connections_opened_total 250\n\
                         realtime_db_queries_total{reason=\"replay\"} 10\n",
                    ),
                ),
            ]
            .into(),
        };
        let d = delta(&before, &after);
        assert_eq!(d.nodes, ["n1", "n2"]);
        assert_eq!(d.connections_opened, 400.0);
        assert_eq!(d.queries, 20.0);
        assert_eq!(d.by_reason["replay"], 15.0);
        assert_eq!(d.per_connection, Some(0.05));
    }
}
