//! The command line of `taskflow bench`, and what each subcommand runs.

use crate::payload::Payload;
use crate::report::Report;
use crate::target::Target;
use crate::{churn, connections, fanout, import, plot, report, storm, BenchError};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// `taskflow bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    scenario: Scenario,
    /// The server, host:port on a loopback address.
    #[arg(long, global = true, default_value = "127.0.0.1:3000")]
    target: std::net::SocketAddr,
    /// Speak https:// and wss:// to the target (a server started with --tls-cert and --tls-key).
    #[arg(long, global = true)]
    tls: bool,
    /// Trust this CA (PEM) for the target's certificate instead of the Mozilla roots; implies
    /// --tls.
    #[arg(long, global = true, value_name = "PATH")]
    ca_cert: Option<PathBuf>,
    /// The name the target's certificate carries, when it is not the target's IP address (a
    /// certificate for a DNS name, served on loopback); implies --tls.
    #[arg(long, global = true, value_name = "NAME")]
    tls_name: Option<String>,
    /// Do not offer permessage-deflate (RFC 7692): plain frames even from a server that
    /// compresses (`ws_compression = on`).
    #[arg(long, global = true)]
    no_compression: bool,
    /// Admin token (it mints the bench's users) [default: $TASKFLOW_ADMIN_TOKEN].
    #[arg(long, global = true)]
    token: Option<String>,
    /// The server's pid, to report its memory and CPU.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Spread connections over source addresses 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, global = true, default_value_t = 8)]
    sources: u8,
    /// This process's index when several bench processes share a run (keeps their users apart).
    #[arg(long, global = true, default_value_t = 0)]
    part: u32,
    /// Print the report as JSON (the input of `taskflow bench merge`).
    #[arg(long, global = true)]
    json: bool,
    /// Draw the latency distribution and the delivered rate into this SVG file.
    #[arg(long, global = true)]
    plot: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Open connections at a rate, hold them, report connect times and memory per connection.
    Connections {
        /// Connections to open.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Connections per second.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// Handshakes in flight at most.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds to hold them.
        #[arg(long, default_value_t = 5)]
        hold: u64,
    },
    /// Subscribers over rooms, publishers at a rate; end-to-end latency and completeness.
    Fanout {
        /// Subscribers (0: this process only publishes).
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Rooms they are spread over.
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Events per second in all; 0 publishes as fast as the server accepts.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Concurrent publishers (0: this process only subscribes and waits for the end).
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// The run's name, to share rooms with other bench processes; generated if absent.
        #[arg(long)]
        run: Option<String>,
        /// Seconds to wait for the last deliveries once nothing arrives.
        #[arg(long, default_value_t = 5)]
        grace: u64,
        /// Handshakes in flight at most.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// End with an error if more than this many subscribers fail to connect or subscribe
        /// (unset: failures are counted in the report, by reason, and the run goes on).
        #[arg(long)]
        max_failed: Option<usize>,
        /// Seconds a subscriber refused with 503 and Retry-After keeps waiting and trying again
        /// (counted as delayed once it gets in); 0: the first refusal is a failure.
        #[arg(long, default_value_t = 30)]
        retry_for: u64,
        /// What the published tasks carry: `minimal` (the send time in the title) or
        /// `realistic` (a title, a few sentences of description and a priority).
        #[arg(long, value_enum, default_value_t = Payload::Minimal)]
        payload: Payload,
    },
    /// Every client back at once: connect and subscribe N clients, publish through the run, then
    /// drop and resume them all (or drain a node with SIGTERM); time until every client is
    /// subscribed and caught up, failures, delays, database queries per connection.
    Storm {
        /// Clients.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Rooms they are spread over.
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        /// Events per second in all, through the whole run; 0 publishes as fast as the server
        /// accepts.
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// Concurrent publishers.
        #[arg(long, default_value_t = 2)]
        publishers: usize,
        /// reconnect: every client drops its connection and resumes at once; drain: SIGTERM to
        /// --drain-pid, whose clients resume on the nodes left.
        #[arg(long, value_enum, default_value_t = storm::Mode::Reconnect)]
        mode: storm::Mode,
        /// The server process(es) to drain in --mode drain (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        drain_pid: Vec<u32>,
        /// Seconds over which the connect phase starts its clients (0: all at once, a storm of
        /// its own).
        #[arg(long, default_value_t = 0.0)]
        ramp: f64,
        /// Seconds of publishing before the storm.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Seconds of publishing once every client is caught up, before the end markers.
        #[arg(long, default_value_t = 2.0)]
        after: f64,
        /// Seconds the storm may take; clients not caught up by then are counted as such.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Seconds to wait for the last end markers once nothing arrives.
        #[arg(long, default_value_t = 5)]
        grace: u64,
        /// Seconds a client keeps trying to get in (following 503s with Retry-After, retrying
        /// other errors) before it counts as failed.
        #[arg(long, default_value_t = 60)]
        retry_for: u64,
        /// Read the server's /metrics here (repeat for several addresses; every node behind a
        /// shared port is found); default: the target.
        #[arg(long)]
        metrics: Vec<std::net::SocketAddr>,
        /// The run's name; generated if absent.
        #[arg(long)]
        run: Option<String>,
        /// End with an error if more than this many clients fail to get in, in either phase.
        #[arg(long)]
        max_failed: Option<usize>,
    },
    /// Connect, subscribe and disconnect at a rate; errors and server memory before and after.
    Churn {
        /// Connect+disconnect cycles per second.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// Seconds of churn after the warm-up.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Seconds of churn before the baseline is taken.
        #[arg(long, default_value_t = 5)]
        warmup: u64,
        /// Cycles in flight at most.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
    },
    /// Generate a file of N tasks, import it, export everything back: lines/s, MB/s, the
    /// server's memory before, during and after each (with --server-pid), and the latency of
    /// other requests during the import.
    Import {
        /// Tasks in the file.
        #[arg(long, default_value_t = 100_000)]
        lines: u64,
        /// The file's format.
        #[arg(long, value_enum, default_value_t = import::Format::Ndjson)]
        format: import::Format,
        /// The project the tasks go into (created if missing).
        #[arg(long, default_value = "bench-import")]
        project: String,
    },
    /// Merge the `--json` reports of several processes of one run into one.
    Merge {
        /// Report files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Why `taskflow bench` failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No admin token.
    #[error("no token: pass --token or set TASKFLOW_ADMIN_TOKEN")]
    NoToken,
    /// The run failed.
    #[error(transparent)]
    Bench(#[from] BenchError),
    /// Reading or merging reports failed.
    #[error("{0}")]
    Reports(String),
    /// The plot failed.
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

/// Runs `taskflow bench` and prints its report.
pub async fn run(args: BenchArgs) -> Result<(), CliError> {
    let report = match args.scenario {
        Scenario::Merge { ref files } => {
            let mut reports = Vec::new();
            for file in files {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| CliError::Reports(format!("{}: {e}", file.display())))?;
                reports.push(
                    serde_json::from_str::<Report>(&text)
                        .map_err(|e| CliError::Reports(format!("{}: {e}", file.display())))?,
                );
            }
            Report::merge(reports).map_err(|e| CliError::Reports(e.to_string()))?
        }
        ref scenario => {
            // Each connection is a file: the bench takes what the hard limit allows.
            crate::dial::raise_open_files_limit();
            let token = args
                .token
                .clone()
                .or_else(|| std::env::var("TASKFLOW_ADMIN_TOKEN").ok())
                .ok_or(CliError::NoToken)?;
            let mut target = Target::new(args.target, token, args.server_pid)?;
            target.compression = !args.no_compression;
            if args.tls || args.ca_cert.is_some() || args.tls_name.is_some() {
                target = target.with_tls(args.ca_cert.as_deref(), args.tls_name.as_deref())?;
            }
            run_scenario(&target, scenario, &args).await?
        }
    };
    if let Some(path) = &args.plot {
        let (latency, rates) = match &report {
            Report::Fanout(f) => (&f.latency, f.rates.clone()),
            Report::Connections(c) => (&c.connect, Default::default()),
            Report::Churn(c) => (&c.connect, Default::default()),
            Report::Storm(s) => (&s.storm.caught_up, Default::default()),
            Report::Import(_) => {
                return Err(CliError::Reports(
                    "--plot draws latency histograms; import has none".into(),
                ))
            }
        };
        let histogram = latency.decode().unwrap_or_else(crate::stats::histogram);
        let title = match &report {
            Report::Fanout(_) => "fanout",
            Report::Connections(_) => "connections (connect time)",
            Report::Churn(_) => "churn (connect time)",
            Report::Storm(_) => "storm (time until caught up)",
            Report::Import(_) => unreachable!("refused above"),
        };
        plot::draw(path, title, &histogram, &rates)?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("reports serialize")
        );
    } else {
        print!("{}", report::table(&report));
    }
    Ok(())
}

async fn run_scenario(
    target: &Target,
    scenario: &Scenario,
    args: &BenchArgs,
) -> Result<Report, BenchError> {
    Ok(match *scenario {
        Scenario::Connections {
            count,
            rate,
            concurrency,
            hold,
        } => Report::Connections(
            connections::run(
                target,
                &connections::ConnectionsPlan {
                    count,
                    rate,
                    concurrency,
                    hold: Duration::from_secs(hold),
                    sources: args.sources,
                    part: args.part,
                },
            )
            .await?,
        ),
        Scenario::Fanout {
            subscribers,
            rooms,
            rate,
            duration,
            publishers,
            ref run,
            grace,
            concurrency,
            max_failed,
            retry_for,
            payload,
        } => Report::Fanout(Box::new(
            fanout::run(
                target,
                &fanout::FanoutPlan {
                    subscribers,
                    rooms,
                    rate,
                    duration: Duration::from_secs(duration),
                    publishers,
                    sources: args.sources,
                    run: run.clone(),
                    part: args.part,
                    grace: Duration::from_secs(grace),
                    concurrency,
                    max_failed,
                    retry_for: Duration::from_secs(retry_for),
                    payload,
                },
            )
            .await?,
        )),
        Scenario::Storm {
            clients,
            rooms,
            rate,
            publishers,
            mode,
            ref drain_pid,
            ramp,
            warmup,
            after,
            timeout,
            grace,
            retry_for,
            ref metrics,
            ref run,
            max_failed,
        } => Report::Storm(Box::new(
            storm::run(
                target,
                &storm::StormPlan {
                    clients,
                    rooms,
                    rate,
                    publishers,
                    mode,
                    drain_pids: drain_pid.clone(),
                    ramp: seconds(ramp),
                    warmup: seconds(warmup),
                    after: seconds(after),
                    timeout: Duration::from_secs(timeout),
                    grace: Duration::from_secs(grace),
                    retry_for: Duration::from_secs(retry_for),
                    metrics: metrics.clone(),
                    sources: args.sources,
                    run: run.clone(),
                    part: args.part,
                    max_failed,
                },
            )
            .await?,
        )),
        Scenario::Churn {
            rate,
            duration,
            warmup,
            concurrency,
        } => Report::Churn(
            churn::run(
                target,
                &churn::ChurnPlan {
                    rate,
                    duration: Duration::from_secs(duration),
                    warmup: Duration::from_secs(warmup),
                    concurrency,
                    sources: args.sources,
                },
            )
            .await?,
        ),
        Scenario::Import {
            lines,
            format,
            ref project,
        } => Report::Import(Box::new(
            import::run(
                target,
                &import::ImportPlan {
                    lines,
                    format,
                    project: project.clone(),
                },
            )
            .await?,
        )),
        Scenario::Merge { .. } => unreachable!("merge runs nothing"),
    })
}

/// A command line's seconds (negative or not a number: none).
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or_default()
}
