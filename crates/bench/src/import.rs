//! `taskflow bench import`: what a large import and export cost. Generates a file of N tasks
//! (NDJSON or CSV, one task per line, no dependencies, a realistic title and description),
//! streams it to `POST /tasks/import`, then streams `GET /tasks/export` back, and reports
//! lines/s and MB/s for both, the server's memory (RSS before, peak while, and after each, from
//! `/proc` given `--server-pid`), and the latency of other requests made during the import (a
//! probe: `GET /tasks?limit=1` every 50 ms), which must stay in milliseconds.
//!
//! The peak is `VmHWM`, reset through `/proc/<pid>/clear_refs` before each phase where the
//! kernel allows it (the same user, or root), and otherwise the highest `VmRSS` sampled every
//! 20 ms.

use crate::target::{Target, Usage};
use crate::BenchError;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// A header, then one record per line.
    Csv,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    /// Tasks in the file.
    pub lines: u64,
    /// Its format.
    pub format: Format,
    /// The project the tasks go into (created if missing).
    pub project: String,
}

/// The server's memory around one phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    /// RSS before, MiB.
    pub rss_before_mib: f64,
    /// The highest RSS while the phase ran, MiB.
    pub rss_peak_mib: f64,
    /// RSS once it answered, MiB.
    pub rss_after_mib: f64,
    /// Whether the peak is the kernel's `VmHWM` (reset before the phase) rather than sampled.
    pub peak_from_hwm: bool,
}

/// One direction's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Transfer {
    /// Bytes moved.
    pub bytes: u64,
    /// Tasks moved.
    pub lines: u64,
    /// Seconds from the first byte sent to the answer (import) or the last byte (export).
    pub seconds: f64,
    /// Tasks per second.
    pub lines_per_sec: f64,
    /// MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// The server's memory, when its pid is known.
    pub memory: Option<Memory>,
}

/// The report of `taskflow bench import`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportReport {
    /// `ndjson` or `csv`.
    pub format: String,
    /// The file's size, bytes.
    pub file_bytes: u64,
    /// The import.
    pub import: Transfer,
    /// The export of everything afterwards (`GET /tasks/export`, every task of the server).
    pub export: Transfer,
    /// Probe requests answered during the import.
    pub probe_requests: u64,
    /// Their median latency, ms.
    pub probe_p50_ms: f64,
    /// Their 99th percentile, ms.
    pub probe_p99_ms: f64,
    /// The slowest, ms.
    pub probe_max_ms: f64,
}

/// Writes the file: `lines` tasks, titles and descriptions of a realistic length.
fn generate(plan: &ImportPlan) -> std::io::Result<(tempfile::NamedTempFile, u64)> {
    let file = tempfile::NamedTempFile::new()?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file.reopen()?);
    if plan.format == Format::Csv {
        writeln!(out, "title,description,status,priority,project_id,assignee")?;
    }
    for i in 0..plan.lines {
        let priority = i % 101;
        let status = ["todo", "in_progress", "done"][(i % 3) as usize];
        match plan.format {
            Format::Ndjson => writeln!(
                out,
                "{{\"title\":\"Imported task {i}: review the quarterly plan\",\"description\":\"Line {i} of a bench import; a description of the length people write.\",\"status\":\"{status}\",\"priority\":{priority},\"project_id\":\"{}\",\"assignee\":null}}",
                plan.project
            )?,
            Format::Csv => writeln!(
                out,
                "Imported task {i}: review the quarterly plan,\"Line {i} of a bench import; a description of the length people write.\",{status},{priority},{},",
                plan.project
            )?,
        }
    }
    out.flush()?;
    drop(out);
    let size = file.as_file().metadata()?.len();
    Ok((file, size))
}

/// Samples the server's RSS until `stop`, keeping the highest.
fn watch(pid: Option<u32>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Some(usage) = pid.and_then(Usage::of) {
                peak = peak.max(usage.rss_bytes);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    })
}

/// Resets the process's `VmHWM` to its current RSS; whether the kernel let us.
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The process's `VmHWM`, bytes.
fn hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

const MIB: f64 = 1024.0 * 1024.0;

/// Measures one phase's memory around `phase`.
async fn measured<T>(
    pid: Option<u32>,
    phase: impl std::future::Future<Output = T>,
) -> (T, Option<Memory>) {
    let before = pid.and_then(Usage::of);
    let from_hwm = pid.is_some_and(reset_hwm);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = watch(pid, stop.clone());
    let out = phase.await;
    stop.store(true, Ordering::Relaxed);
    let sampled = sampler.await.unwrap_or_default();
    let memory = match (pid, before) {
        (Some(pid), Some(before)) => {
            let after = Usage::of(pid).map_or(0, |u| u.rss_bytes);
            let peak = if from_hwm {
                hwm(pid).unwrap_or(sampled).max(sampled)
            } else {
                sampled
            };
            Some(Memory {
                rss_before_mib: before.rss_bytes as f64 / MIB,
                rss_peak_mib: peak.max(after) as f64 / MIB,
                rss_after_mib: after as f64 / MIB,
                peak_from_hwm: from_hwm,
            })
        }
        _ => None,
    };
    (out, memory)
}

/// Runs the import, then the export.
pub async fn run(target: &Target, plan: &ImportPlan) -> Result<ImportReport, BenchError> {
    let setup = |e: reqwest::Error| BenchError::Setup(e.to_string());
    let client = target.http_client();
    let res = client
        .post(target.http("/projects"))
        .bearer_auth(&target.token)
        .json(&serde_json::json!({ "id": plan.project, "name": "bench import" }))
        .send()
        .await
        .map_err(setup)?;
    if !(res.status().is_success() || res.status() == reqwest::StatusCode::CONFLICT) {
        return Err(BenchError::Setup(format!(
            "creating project {}: {}",
            plan.project,
            res.status()
        )));
    }
    let (file, size) = generate(plan).map_err(|e| BenchError::Setup(format!("the file: {e}")))?;

    // The probe: other requests, answered while the import runs.
    let probing = Arc::new(AtomicBool::new(true));
    let answered = Arc::new(AtomicU64::new(0));
    let probe = {
        let (client, url, token) = (
            client.clone(),
            target.http("/tasks?limit=1"),
            target.token.clone(),
        );
        let (probing, answered) = (probing.clone(), answered.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while probing.load(Ordering::Relaxed) {
                let start = Instant::now();
                if let Ok(res) = client.get(&url).bearer_auth(&token).send().await {
                    if res.status().is_success() && res.bytes().await.is_ok() {
                        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            latencies
        })
    };

    let body = tokio::fs::File::open(file.path())
        .await
        .map_err(|e| BenchError::Setup(format!("the file: {e}")))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(body, 256 * 1024);
    let started = Instant::now();
    let (answer, import_memory) = measured(target.pid, async {
        let res = client
            .post(target.http("/tasks/import"))
            .bearer_auth(&target.token)
            .header("Content-Type", plan.format.content_type())
            .header("Content-Length", size)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await?;
        let status = res.status();
        let text = res.text().await?;
        Ok::<_, reqwest::Error>((status, text))
    })
    .await;
    let import_secs = started.elapsed().as_secs_f64();
    probing.store(false, Ordering::Relaxed);
    let mut latencies = probe.await.unwrap_or_default();
    let (status, text) = answer.map_err(setup)?;
    if !status.is_success() {
        return Err(BenchError::Setup(format!(
            "the import answered {status}: {text}"
        )));
    }
    drop(file);

    let started = Instant::now();
    let (exported, export_memory) = measured(target.pid, async {
        let res = client
            .get(target.http(&format!("/tasks/export?format={}", plan.format.name())))
            .bearer_auth(&target.token)
            .send()
            .await?
            .error_for_status()?;
        let mut bytes = 0u64;
        let mut lines = 0u64;
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            bytes += chunk.len() as u64;
            lines += memchr::memchr_iter(b'\n', &chunk).count() as u64;
        }
        Ok::<_, reqwest::Error>((bytes, lines))
    })
    .await;
    let export_secs = started.elapsed().as_secs_f64();
    let (export_bytes, mut export_lines) = exported.map_err(setup)?;
    if plan.format == Format::Csv {
        export_lines = export_lines.saturating_sub(1);
    }

    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let transfer = |bytes: u64, lines: u64, seconds: f64, memory| Transfer {
        bytes,
        lines,
        seconds,
        lines_per_sec: lines as f64 / seconds,
        mb_per_sec: bytes as f64 / 1e6 / seconds,
        memory,
    };
    Ok(ImportReport {
        format: plan.format.name().to_owned(),
        file_bytes: size,
        import: transfer(size, plan.lines, import_secs, import_memory),
        export: transfer(export_bytes, export_lines, export_secs, export_memory),
        probe_requests: answered.load(Ordering::Relaxed),
        probe_p50_ms: at(0.5),
        probe_p99_ms: at(0.99),
        probe_max_ms: latencies.last().copied().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_a_task_per_line() {
        for format in [Format::Ndjson, Format::Csv] {
            let plan = ImportPlan {
                lines: 10,
                format,
                project: "p".into(),
            };
            let (file, size) = generate(&plan).unwrap();
            let text = std::fs::read_to_string(file.path()).unwrap();
            assert_eq!(size as usize, text.len());
            let header = usize::from(format == Format::Csv);
            assert_eq!(text.lines().count(), 10 + header);
            if format == Format::Ndjson {
                for line in text.lines() {
                    let task: serde_json::Value = serde_json::from_str(line).unwrap();
                    assert_eq!(task["project_id"], "p");
                }
            }
        }
    }
}
