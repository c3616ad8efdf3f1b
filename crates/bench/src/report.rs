//! Reports: one type per scenario, tagged, so a file of `--json` output says what it holds and
//! the reports of several bench processes of one run merge into one (`taskflow bench merge`).

use crate::churn::ChurnReport;
use crate::connections::ConnectionsReport;
use crate::fanout::FanoutReport;
use crate::stats::{histogram, Percentiles};
use crate::storm::StormReport;
use crate::target::Usage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A scenario's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "scenario", rename_all = "snake_case")]
pub enum Report {
    /// `taskflow bench connections`.
    Connections(ConnectionsReport),
    /// `taskflow bench fanout` (boxed: it is by far the largest report).
    Fanout(Box<FanoutReport>),
    /// `taskflow bench churn`.
    Churn(ChurnReport),
    /// `taskflow bench storm` (boxed, like the fan-out's).
    Storm(Box<StormReport>),
    /// `taskflow bench import`.
    Import(Box<crate::import::ImportReport>),
}

/// Why reports could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no reports to merge")]
    Empty,
    /// Reports of different scenarios.
    #[error("cannot merge a {0} report with a {1} report")]
    Mixed(&'static str, &'static str),
    /// A report carries no histogram to merge.
    #[error("a report's latency histogram is missing or unreadable")]
    Histogram,
    /// Reports of a scenario that runs in one process.
    #[error("{0} reports do not merge: {0} runs in one process")]
    OneProcess(&'static str),
}

impl Report {
    fn name(&self) -> &'static str {
        match self {
            Report::Connections(_) => "connections",
            Report::Fanout(_) => "fanout",
            Report::Churn(_) => "churn",
            Report::Storm(_) => "storm",
            Report::Import(_) => "import",
        }
    }

    /// Merges the reports of the processes of one run.
    pub fn merge(reports: Vec<Report>) -> Result<Report, MergeError> {
        let first = reports.first().ok_or(MergeError::Empty)?.name();
        if let Some(other) = reports.iter().find(|r| r.name() != first) {
            return Err(MergeError::Mixed(first, other.name()));
        }
        Ok(match first {
            "connections" => Report::Connections(merge_connections(
                reports
                    .into_iter()
                    .filter_map(|r| match r {
                        Report::Connections(c) => Some(c),
                        _ => None,
                    })
                    .collect(),
            )?),
            "fanout" => Report::Fanout(Box::new(merge_fanout(
                reports
                    .into_iter()
                    .filter_map(|r| match r {
                        Report::Fanout(f) => Some(*f),
                        _ => None,
                    })
                    .collect(),
            )?)),
            "storm" => return Err(MergeError::OneProcess("storm")),
            "import" => return Err(MergeError::OneProcess("import")),
            _ => Report::Churn(merge_churn(
                reports
                    .into_iter()
                    .filter_map(|r| match r {
                        Report::Churn(c) => Some(c),
                        _ => None,
                    })
                    .collect(),
            )?),
        })
    }
}

fn merge_latency<'a>(
    all: impl Iterator<Item = &'a Percentiles>,
) -> Result<Percentiles, MergeError> {
    let mut h = histogram();
    for p in all {
        h.add(p.decode().ok_or(MergeError::Histogram)?)
            .map_err(|_| MergeError::Histogram)?;
    }
    Ok(Percentiles::of(&h))
}

/// Server usage over several processes: per server pid, the earliest `before` and the latest
/// `after` any report saw; the changes of different servers (nodes) add up.
struct ServerSpan {
    by_pid: BTreeMap<u32, (Usage, Usage)>,
}

impl ServerSpan {
    fn of<'a>(pairs: impl Iterator<Item = (Option<&'a Usage>, Option<&'a Usage>)>) -> Self {
        let mut by_pid: BTreeMap<u32, (Usage, Usage)> = BTreeMap::new();
        for (before, after) in pairs {
            let (Some(b), Some(a)) = (before, after) else {
                continue;
            };
            let entry = by_pid.entry(b.pid).or_insert((*b, *a));
            if b.cpu_secs < entry.0.cpu_secs {
                entry.0 = *b;
            }
            if a.cpu_secs > entry.1.cpu_secs {
                entry.1 = *a;
            }
        }
        Self { by_pid }
    }

    fn cpu_secs(&self) -> Option<f64> {
        (!self.by_pid.is_empty()).then(|| {
            self.by_pid
                .values()
                .map(|(b, a)| a.cpu_secs - b.cpu_secs)
                .sum()
        })
    }

    fn rss_change(&self) -> Option<f64> {
        (!self.by_pid.is_empty()).then(|| {
            self.by_pid
                .values()
                .map(|(b, a)| a.rss_bytes as f64 - b.rss_bytes as f64)
                .sum()
        })
    }

    /// The first server's usage, to keep in the merged report.
    fn first(&self) -> (Option<Usage>, Option<Usage>) {
        self.by_pid
            .values()
            .next()
            .map_or((None, None), |(b, a)| (Some(*b), Some(*a)))
    }
}

fn merge_connections(all: Vec<ConnectionsReport>) -> Result<ConnectionsReport, MergeError> {
    let span = ServerSpan::of(
        all.iter()
            .map(|r| (r.server_before.as_ref(), r.server_after.as_ref())),
    );
    let mut merged = ConnectionsReport {
        connect: merge_latency(all.iter().map(|r| &r.connect))?,
        ..ConnectionsReport::default()
    };
    for r in &all {
        merged.opened += r.opened;
        merged.failed += r.failed;
        merged.held += r.held;
        if merged.first_error.is_none() {
            merged.first_error = r.first_error.clone();
        }
    }
    merged.rss_per_connection = span
        .rss_change()
        .filter(|_| merged.opened > 0)
        .map(|d| d / merged.opened as f64);
    (merged.server_before, merged.server_after) = span.first();
    Ok(merged)
}

fn merge_fanout(all: Vec<FanoutReport>) -> Result<FanoutReport, MergeError> {
    let span = ServerSpan::of(
        all.iter()
            .map(|r| (r.server_before.as_ref(), r.server_after.as_ref())),
    );
    let mut merged = FanoutReport {
        latency: merge_latency(all.iter().map(|r| &r.latency))?,
        first_copy: merge_latency(all.iter().map(|r| &r.first_copy))?,
        spread: merge_latency(all.iter().map(|r| &r.spread))?,
        ..FanoutReport::default()
    };
    for r in &all {
        if merged.run.is_empty() {
            merged.run = r.run.clone();
        }
        merged.subscribers += r.subscribers;
        merged.failed_connections += r.failed_connections;
        for (reason, n) in &r.failures {
            *merged.failures.entry(reason.clone()).or_default() += n;
        }
        merged.delayed += r.delayed;
        for (reason, n) in &r.delays {
            *merged.delays.entry(reason.clone()).or_default() += n;
        }
        merged.published += r.published;
        merged.publish_errors += r.publish_errors;
        merged.totals.add(&r.totals);
        merged.disconnected += r.disconnected;
        merged.delivered_per_sec += r.delivered_per_sec;
        merged.rates.add(&r.rates);
        merged.compressed_subscribers += r.compressed_subscribers;
        merged.wire_bytes += r.wire_bytes;
    }
    merged.events_per_sec_per_subscriber =
        merged.delivered_per_sec / merged.subscribers.max(1) as f64;
    merged.server_cpu_secs = span.cpu_secs();
    merged.server_cpu_us_per_delivery = merged
        .server_cpu_secs
        .filter(|_| merged.totals.delivered > 0)
        .map(|c| c * 1e6 / merged.totals.delivered as f64);
    merged.wire_bytes_per_delivery =
        crate::fanout::per_delivery(merged.wire_bytes, merged.totals.delivered);
    (merged.server_before, merged.server_after) = span.first();
    Ok(merged)
}

fn merge_churn(all: Vec<ChurnReport>) -> Result<ChurnReport, MergeError> {
    let span = ServerSpan::of(all.iter().map(|r| (r.baseline.as_ref(), r.after.as_ref())));
    let mut merged = ChurnReport {
        connect: merge_latency(all.iter().map(|r| &r.connect))?,
        ..ChurnReport::default()
    };
    for r in &all {
        merged.cycles += r.cycles;
        merged.errors += r.errors;
        merged.cycles_per_sec += r.cycles_per_sec;
        if merged.first_error.is_none() {
            merged.first_error = r.first_error.clone();
        }
    }
    (merged.baseline, merged.after) = span.first();
    merged.rss_change_pct = merged
        .baseline
        .zip(merged.after)
        .map(|(b, a)| (a.rss_bytes as f64 - b.rss_bytes as f64) * 100.0 / b.rss_bytes as f64);
    Ok(merged)
}

/// The report as aligned `key  value` lines, nested keys joined with dots (histograms and
/// per-bucket rates left to the JSON and the plot).
pub fn table(report: &Report) -> String {
    let value = serde_json::to_value(report).expect("reports serialize");
    let mut out = String::new();
    lines(&value, "", &mut out);
    out
}

fn lines(value: &serde_json::Value, prefix: &str, out: &mut String) {
    use std::fmt::Write;
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                if key == "histogram" || key == "rates" {
                    continue;
                }
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                lines(value, &key, out);
            }
        }
        serde_json::Value::Number(n) if n.is_f64() => {
            let _ = writeln!(out, "{prefix:<40} {:.3}", n.as_f64().unwrap_or_default());
        }
        other => {
            let _ = writeln!(out, "{prefix:<40} {other}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::Completeness;
    use std::time::Duration;

    fn fanout(delivered: u64, ms: u64, cpu: (f64, f64)) -> Report {
        Report::Fanout(Box::new(FanoutReport {
            subscribers: 10,
            totals: Completeness {
                delivered,
                expected: delivered,
                ..Completeness::default()
            },
            delivered_per_sec: delivered as f64,
            latency: Percentiles::of_samples(&vec![Duration::from_millis(ms); delivered as usize]),
            server_before: Some(Usage {
                pid: 7,
                rss_bytes: 100,
                cpu_secs: cpu.0,
            }),
            server_after: Some(Usage {
                pid: 7,
                rss_bytes: 200,
                cpu_secs: cpu.1,
            }),
            ..FanoutReport::default()
        }))
    }

    #[test]
    fn fanout_reports_merge_counts_histograms_and_one_servers_cpu() {
        let merged =
            Report::merge(vec![fanout(90, 1, (1.0, 2.0)), fanout(10, 100, (1.1, 2.5))]).unwrap();
        let Report::Fanout(f) = merged else { panic!() };
        assert_eq!(f.totals.delivered, 100);
        assert_eq!(f.subscribers, 20);
        assert_eq!(f.latency.count, 100);
        assert!((f.latency.p99_ms - 100.0).abs() < 0.1, "{:?}", f.latency);
        // The same server seen by both: from the earliest before to the latest after.
        assert!((f.server_cpu_secs.unwrap() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn mixed_scenarios_do_not_merge() {
        let err = Report::merge(vec![
            fanout(1, 1, (0.0, 1.0)),
            Report::Churn(ChurnReport::default()),
        ])
        .unwrap_err();
        assert!(matches!(err, MergeError::Mixed("fanout", "churn")));
    }

    #[test]
    fn json_round_trip_keeps_the_scenario() {
        let json = serde_json::to_string(&fanout(5, 2, (0.0, 1.0))).unwrap();
        assert!(json.starts_with(r#"{"scenario":"fanout""#), "{json}");
        let back: Report = serde_json::from_str(&json).unwrap();
        assert!(matches!(back, Report::Fanout(f) if f.totals.delivered == 5));
    }

    #[test]
    fn failed_connections_and_delays_add_up_by_reason() {
        let with = |reason: &str, n: u64, delay: &str| {
            let Report::Fanout(mut f) = fanout(5, 1, (1.0, 2.0)) else {
                unreachable!()
            };
            f.failed_connections = n;
            f.failures.insert(reason.to_owned(), n);
            f.delayed = 2;
            f.delays.insert(delay.to_owned(), 2);
            Report::Fanout(f)
        };
        let merged = Report::merge(vec![
            with("refused_503", 3, "server_full"),
            with("refused_503", 2, "server_full"),
            with("handshake_timeout", 1, "overloaded"),
        ])
        .unwrap();
        let Report::Fanout(f) = merged else { panic!() };
        assert_eq!(f.failed_connections, 6);
        assert_eq!(f.failures["refused_503"], 5);
        assert_eq!(f.failures["handshake_timeout"], 1);
        assert_eq!(f.delayed, 6);
        assert_eq!(f.delays["server_full"], 4);
        assert_eq!(f.delays["overloaded"], 2);
    }

    #[test]
    fn a_fanout_report_from_before_delays_still_reads() {
        let mut json = serde_json::to_value(fanout(5, 2, (0.0, 1.0))).unwrap();
        let map = json.as_object_mut().unwrap();
        map.remove("delayed");
        map.remove("delays");
        let back: Report = serde_json::from_value(json).unwrap();
        assert!(matches!(back, Report::Fanout(f) if f.delayed == 0 && f.delays.is_empty()));
    }
}
