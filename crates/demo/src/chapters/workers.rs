//! Chapter 8, worker threads: the server parses and validates an import on a blocking thread
//! (`spawn_blocking`), off the async executor that answers every other request. While a large
//! import runs, a probe (a user of its own) lists a task every few milliseconds; its latencies
//! show the executor kept answering: at least one probe is answered during the import, none
//! fails, and the p99 stays under `--probe-p99-ms`.

use super::{import, plain_tasks, quantile, Ctx};
use crate::show;
use anyhow::{ensure, Context};
use reqwest::Method;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pause between two probes.
const PROBE_EVERY: Duration = Duration::from_millis(10);

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<String> {
    let api = &ctx.api;
    let project = ctx.cast.project(8);
    let count = ctx.sizes.import_lines.max(1);
    let body = plain_tasks(project, "Imported task", count);
    let size = body.len();

    let done = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn({
        let (api, done) = (api.clone(), done.clone());
        let token = ctx.cast.prober.token.clone();
        let path = format!("/tasks?project={project}&limit=1");
        async move {
            let (mut latencies, mut failures) = (Vec::new(), Vec::new());
            while !done.load(Ordering::Relaxed) {
                match api.call_as(&token, Method::GET, &path).send().await {
                    Ok(answer) if answer.status == 200 => latencies.push(answer.elapsed),
                    Ok(answer) => failures.push(format!("{}", answer.status)),
                    Err(err) => failures.push(format!("{err:#}")),
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
            (latencies, failures)
        }
    });
    let start = Instant::now();
    let imported = import(api, body).await;
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let (mut latencies, failures) = probe.await.context("the probe panicked")?;
    let imported = imported?;
    imported.show().expect(201)?;
    show::note(format!(
        "{count} lines ({:.1} MB) imported in {}: {:.0} lines/s",
        size as f64 / 1e6,
        show::millis(elapsed),
        count as f64 / elapsed.as_secs_f64().max(1e-6)
    ));
    ensure!(
        imported.body["imported"] == count,
        "imported {}",
        imported.body
    );
    latencies.sort();
    let (p50, p99) = (quantile(&latencies, 0.5), quantile(&latencies, 0.99));
    let max = latencies.last().copied().unwrap_or_default();
    show::note(format!(
        "meanwhile {} probes GET /tasks?project=…&limit=1 by {}: p50 {}, p99 {}, max {}",
        latencies.len(),
        ctx.cast.prober.id,
        show::millis(p50),
        show::millis(p99),
        show::millis(max)
    ));
    ensure!(
        failures.is_empty(),
        "{} probes failed: {}",
        failures.len(),
        failures.join(", ")
    );
    ensure!(
        !latencies.is_empty(),
        "no probe was answered during the import"
    );
    let bound = Duration::from_millis(ctx.sizes.probe_p99_ms);
    ensure!(
        p99 < bound,
        "probe p99 {} is over {}",
        show::millis(p99),
        show::millis(bound)
    );
    Ok(format!(
        "{count} lines imported in {}; {} probes meanwhile, p99 {} (bound {})",
        show::millis(elapsed),
        latencies.len(),
        show::millis(p99),
        show::millis(bound)
    ))
}
