//! Chapter 7, memory: the server streams an export of many tasks a page at a time, so its
//! resident memory (`process_resident_memory_bytes` in `/metrics`) stays flat while it does:
//! the peak sampled during the export may exceed the level before it by at most
//! `--rss-bound-mib` (64 MiB by default; the export of 100,000 tasks is 32 MB of NDJSON, which
//! the server would hold several times over, as tasks and as text, if it did not stream).

use super::{export, import, plain_tasks, Ctx};
use crate::metrics::{self, RSS};
use crate::show;
use anyhow::{ensure, Context};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the server's memory is sampled during the export.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<String> {
    let api = &ctx.api;
    let project = ctx.cast.project(7);
    let count = ctx.sizes.export_tasks.max(1);
    let imported = import(api, plain_tasks(project, "Exported task", count)).await?;
    imported.show().expect(201)?;
    show::note(format!("{count} tasks to export"));

    let before = metrics::read(api, RSS)
        .await
        .context("the server does not report its memory")?;
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (api, done) = (api.clone(), done.clone());
        async move {
            let mut peak = 0f64;
            while !done.load(Ordering::Relaxed) {
                if let Ok(rss) = metrics::read(&api, RSS).await {
                    peak = peak.max(rss);
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            peak
        }
    });
    let exported = export(api, project, "ndjson").await;
    done.store(true, Ordering::Relaxed);
    let peak = sampler.await.context("the sampler panicked")?;
    let exported = exported?;
    let after = metrics::read(api, RSS).await?;
    let peak = peak.max(after);
    show::note(format!(
        "GET /tasks/export?format=ndjson&project=… streamed {} lines, {}",
        exported.lines,
        exported.rates()
    ));
    let growth = peak - before;
    let bound = ctx.sizes.rss_bound_mib as f64 * 1024.0 * 1024.0;
    show::note(format!(
        "server RSS: before {}, peak during {}, after {} (peak - before = {}, bound {})",
        show::mib(before),
        show::mib(peak),
        show::mib(after),
        show::mib(growth),
        show::mib(bound)
    ));
    ensure!(
        exported.lines == count,
        "exported {} of {count} tasks",
        exported.lines
    );
    ensure!(
        growth < bound,
        "the server's memory grew by {} during the export",
        show::mib(growth)
    );
    Ok(format!(
        "{count} tasks ({:.0} MB) streamed; RSS peak {} above before (bound {})",
        exported.bytes as f64 / 1e6,
        show::mib(growth),
        show::mib(bound)
    ))
}
