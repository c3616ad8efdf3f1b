//! The command line of `taskflow demo`, and the run: a server (the one given with `--target`,
//! or one of its own), the cast, the subscribers that follow the whole run, the command for a
//! second terminal and the wait for it, the ten chapters, the summary. The server the demo
//! started is stopped at the end, whatever happened (a failure, Ctrl-C).

use crate::api::Api;
use crate::cast::Cast;
use crate::chapters::{self, Ctx};
use crate::metrics::{self, CONNECTIONS};
use crate::report::Summary;
use crate::server::{Logs, OwnServer};
use crate::sse::SseStream;
use crate::subscriber::Subscriber;
use anyhow::{bail, Context};
use clap::Args;
use reqwest::Method;
use std::time::{Duration, Instant};

/// `taskflow demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// A running server, http://host:port. Without it the demo starts a server of its own (on
    /// a temporary SQLite file and a free port) and stops it at the end.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// The admin token of --target (the demo creates projects and mints users with it).
    #[arg(long, env = "TASKFLOW_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Do not wait for `taskflow client` in a second terminal.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for it, in seconds.
    #[arg(long, default_value_t = 10)]
    wait_secs: u64,
    /// How much work each chapter does.
    #[command(flatten)]
    sizes: Sizes,
}

/// How much work each chapter does: the defaults show the concepts at a size where they
/// matter; a test runs them small.
#[derive(Debug, Clone, Args)]
pub struct Sizes {
    /// Chapter 2: tasks created one by one, then paged through.
    #[arg(long, default_value_t = 25)]
    pub storage_tasks: usize,
    /// Chapter 2: tasks per page.
    #[arg(long, default_value_t = 10)]
    pub page_size: usize,
    /// Chapter 3: tasks in the queue.
    #[arg(long, default_value_t = 200)]
    pub queue_tasks: usize,
    /// Chapter 3: concurrent workers, each a user of its own.
    #[arg(long, default_value_t = 20)]
    pub workers: usize,
    /// Chapter 4: steps in the dependency chain (at least 2).
    #[arg(long, default_value_t = 5)]
    pub chain_length: usize,
    /// Chapter 5: most requests the burst sends looking for the rate limiter's 429.
    #[arg(long, default_value_t = 5000)]
    pub burst_max: usize,
    /// Chapter 7: tasks in the export whose memory is watched.
    #[arg(long, default_value_t = 100_000)]
    pub export_tasks: usize,
    /// Chapter 7: how far the server's RSS may rise above its level before the export, in MiB.
    #[arg(long, default_value_t = 64)]
    pub rss_bound_mib: u64,
    /// Chapter 8: lines of the large import.
    #[arg(long, default_value_t = 100_000)]
    pub import_lines: usize,
    /// Chapter 8: the probe's p99 latency during the import must stay under this, in ms.
    #[arg(long, default_value_t = 100)]
    pub probe_p99_ms: u64,
    /// Chapter 9: tasks exported as NDJSON and as CSV.
    #[arg(long, default_value_t = 50_000)]
    pub stream_tasks: usize,
    /// Chapter 9: lines of the import with one bad line in the middle.
    #[arg(long, default_value_t = 1000)]
    pub bad_import_lines: usize,
    /// Chapter 10: tasks created while the subscriber is cut off.
    #[arg(long, default_value_t = 20)]
    pub missed_events: usize,
}

/// Runs the demo; the summary says whether every chapter behaved (the caller turns a failure
/// into the exit status). An error is a run that could not take place at all: no server, a
/// refused token.
pub async fn run(args: DemoArgs) -> anyhow::Result<Summary> {
    let (server, base, token) = match &args.target {
        Some(url) => {
            if !url.starts_with("http://") {
                bail!("--target takes http://host:port, not {url}");
            }
            let token = args
                .token
                .clone()
                .context("--target needs the server's admin token in TASKFLOW_ADMIN_TOKEN")?;
            (None, url.clone(), token)
        }
        None => {
            println!("Starting a server of its own (taskflow serve on a temporary SQLite file)...");
            let server = OwnServer::start().await?;
            if let Some(pid) = server.pid() {
                println!("Started it: pid {pid}, {}", server.base());
            }
            let (base, token) = (server.base().to_owned(), server.token().to_owned());
            (Some(server), base, token)
        }
    };
    let logs = server.as_ref().map(OwnServer::logs);
    let outcome = tokio::select! {
        outcome = demo(&args, &base, &token, logs) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(server) = server {
        server.stop().await?;
        println!(
            "Stopped the demo's server (a `taskflow client` following it can be stopped too)."
        );
    }
    outcome
}

/// Everything between having a server and stopping it.
async fn demo(
    args: &DemoArgs,
    base: &str,
    token: &str,
    logs: Option<Logs>,
) -> anyhow::Result<Summary> {
    let api = Api::new(base, token)?;
    api.call_anonymous(Method::GET, "/healthz")
        .send()
        .await
        .with_context(|| format!("is a Taskflow server running at {base}?"))?
        .expect(200)?;
    let who = api.call(Method::GET, "/auth/me").send().await?;
    who.expect(200).context("the admin token was refused")?;
    anyhow::ensure!(
        who.body["role"] == "admin",
        "the token is not the admin's: {}",
        who.body
    );
    println!("Taskflow demo against {base}");

    let cast = Cast::create(&api, args.sizes.workers.max(1)).await?;
    let rooms = cast.rooms();
    let subscriber = Subscriber::connect(&api, rooms.clone()).await?;
    let sse = SseStream::open(&api, rooms.clone()).await?;
    println!(
        "Run {}: a project per chapter (demo-{}-01 to -10); the demo's own WebSocket subscriber \
         and SSE stream follow its {} rooms.",
        cast.run,
        cast.run,
        rooms.len()
    );
    second_terminal(args, &api, logs.is_none()).await?;

    let mut ctx = Ctx {
        api,
        cast,
        sizes: args.sizes.clone(),
        subscriber,
        sse,
        logs,
    };
    let summary = Summary {
        chapters: chapters::run_all(&mut ctx).await,
    };
    println!("\nSummary\n{}", summary.table());
    if summary.all_ok() {
        println!(
            "All {} chapters behaved as they say.",
            summary.chapters.len()
        );
    } else {
        println!(
            "{} of {} chapters did not behave as they say.",
            summary.failed(),
            summary.chapters.len()
        );
    }
    Ok(summary)
}

/// Prints the command that shows every event in a second terminal, then waits (at most
/// `--wait-secs`) until one more real-time connection than the demo's own appears in the
/// server's `ws_connections`.
async fn second_terminal(args: &DemoArgs, api: &Api, targeted: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "taskflow".into());
    let token = if targeted {
        "\"$TASKFLOW_ADMIN_TOKEN\"".to_owned()
    } else {
        api.admin_token().to_owned()
    };
    println!("\nIn a second terminal, watch every event of the run:\n");
    println!("  {exe} client --url {} --token {token}\n", api.ws_url());
    if args.no_wait {
        return Ok(());
    }
    let ours = metrics::read(api, CONNECTIONS).await?;
    let limit = Duration::from_secs(args.wait_secs);
    println!(
        "Waiting up to {} s for it to connect (--no-wait skips this)...",
        limit.as_secs()
    );
    let start = Instant::now();
    while start.elapsed() < limit {
        if metrics::read(api, CONNECTIONS).await? > ours {
            println!("It is connected.");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("No second connection; going on without it.");
    Ok(())
}
