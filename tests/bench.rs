//! A smoke test of `taskflow bench` with a few connections: the tool runs end to end against the
//! real server and its accounting is right. Timing targets are measured by hand
//! (docs/performance.md), never asserted in the test suite.

mod binary;
#[path = "../crates/server/tests/common/mod.rs"]
mod common;

use binary::{start_serving, start_with, Prefix, TOKEN};
use common::certs::Ca;
use common::{Backend, TestDb};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn bench_command(addr: &str, pid: u32, scenario: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskflow"));
    command
        .args([
            "bench",
            "--target",
            addr,
            "--server-pid",
            &pid.to_string(),
            "--sources",
            "4",
            "--json",
        ])
        .args(scenario)
        .env("TASKFLOW_ADMIN_TOKEN", TOKEN);
    command
}

fn report(output: std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints JSON")
}

fn bench(addr: &str, pid: u32, scenario: &[&str]) -> Value {
    report(
        bench_command(addr, pid, scenario)
            .output()
            .expect("taskflow bench runs"),
    )
}

/// Ends the server even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sum of the server's series named `name` whose labels contain `labels` (absent: 0).
async fn metric(addr: &str, name: &str, labels: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

/// The server's `ws_subscriptions` gauge.
async fn subscriptions(addr: &str) -> f64 {
    metric(addr, "ws_subscriptions", "").await
}

/// Against a server with its default configuration (the bench mints its own users, so the
/// per-user connection limit holds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_end_to_end_with_a_few_connections() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (child, addr) = start_with(&db.url, &[]);
    let server = KillOnDrop(child);
    let pid = server.0.id();
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("fanout.svg");
    let plot_arg = plot.to_str().unwrap().to_owned();
    let addr2 = addr.clone();
    let fanout = tokio::task::spawn_blocking(move || {
        bench(
            &addr2,
            pid,
            &[
                "--plot",
                &plot_arg,
                "fanout",
                "--subscribers",
                "120",
                "--rooms",
                "2",
                "--rate",
                "40",
                "--duration",
                "2",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(fanout["scenario"], "fanout");
    let published = fanout["published"].as_u64().unwrap();
    assert!(published > 2, "{fanout}");
    assert_eq!(
        fanout["expected"],
        published * 60,
        "each event (end markers included) reaches its room's 60 subscribers"
    );
    assert_eq!(fanout["delivered"], fanout["expected"], "{fanout}");
    assert_eq!(fanout["lost"], 0);
    assert_eq!(fanout["duplicates"], 0);
    assert_eq!(fanout["out_of_order"], 0);
    assert_eq!(fanout["incomplete"], 0);
    assert_eq!(
        fanout["latency"]["count"],
        (published - 2) * 60,
        "every timed event measured"
    );
    assert!(fanout["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        fanout["first_copy"]["count"],
        published - 2,
        "one first copy and one spread per timed event (the same offset in two rooms is two events)"
    );
    assert_eq!(fanout["spread"]["count"], fanout["first_copy"]["count"]);
    assert!(
        fanout["first_copy"]["p50_ms"].as_f64().unwrap()
            <= fanout["latency"]["p50_ms"].as_f64().unwrap(),
        "a first copy is never later than the median copy: {fanout}"
    );
    assert!(
        fanout["server_after"]["rss_bytes"].as_u64().unwrap() > 0,
        "the server's RSS is read from /proc"
    );
    let svg = std::fs::read_to_string(&plot).expect("--plot wrote the SVG");
    assert!(svg.contains("latency by percentile") && svg.contains("<polyline"));

    let addr2 = addr.clone();
    let connections = tokio::task::spawn_blocking(move || {
        bench(
            &addr2,
            pid,
            &["connections", "--count", "150", "--hold", "1"],
        )
    })
    .await
    .unwrap();
    assert_eq!(connections["opened"], 150, "{connections}");
    assert_eq!(connections["held"], 150);
    assert_eq!(connections["failed"], 0);
    assert!(connections["rss_per_connection"].is_number());

    let addr2 = addr.clone();
    let churn = tokio::task::spawn_blocking(move || {
        bench(
            &addr2,
            pid,
            &[
                "churn",
                "--rate",
                "50",
                "--duration",
                "1",
                "--warmup",
                "1",
                "--concurrency",
                "20",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(churn["cycles"], 50, "{churn}");
    assert_eq!(churn["errors"], 0);
    assert!(churn["rss_change_pct"].is_number());
}

/// Two bench processes share one run: one only subscribes, the other subscribes and publishes;
/// the end markers tell the first when it is complete, and their reports merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_processes_share_a_run_and_their_reports_merge() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (child, addr) = start_with(&db.url, &[]);
    let server = KillOnDrop(child);
    let pid = server.0.id();
    let listener = bench_command(
        &addr,
        pid,
        &[
            "--part",
            "1",
            "fanout",
            "--run",
            "shared",
            "--subscribers",
            "30",
            "--publishers",
            "0",
            "--duration",
            "60",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // Publish only once the listening process is subscribed.
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while subscriptions(&addr).await < 30.0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the listening process subscribes");
    let addr2 = addr.clone();
    let publisher = tokio::task::spawn_blocking(move || {
        bench(
            &addr2,
            pid,
            &[
                "fanout",
                "--run",
                "shared",
                "--subscribers",
                "10",
                "--rate",
                "30",
                "--duration",
                "1",
            ],
        )
    })
    .await
    .unwrap();
    let listener =
        tokio::task::spawn_blocking(move || report(listener.wait_with_output().unwrap()))
            .await
            .unwrap();
    let published = publisher["published"].as_u64().unwrap();
    assert_eq!(listener["published"], 0);
    assert_eq!(listener["incomplete"], 0, "{listener}");
    // Its expected deliveries are every offset between its subscription and the end marker:
    // the publishing process's own setup (members added) is logged in the room too.
    assert_eq!(listener["delivered"], listener["expected"], "{listener}");
    assert!(listener["delivered"].as_u64().unwrap() >= published * 30);
    assert_eq!(listener["lost"], 0);
    assert_eq!(listener["latency"]["count"], (published - 1) * 30);

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&a, publisher.to_string()).unwrap();
    std::fs::write(&b, listener.to_string()).unwrap();
    let merged = report(
        Command::new(env!("CARGO_BIN_EXE_taskflow"))
            .args(["bench", "--json", "merge"])
            .args([&a, &b])
            .output()
            .unwrap(),
    );
    assert_eq!(merged["subscribers"], 40);
    assert_eq!(
        merged["delivered"].as_u64().unwrap(),
        publisher["delivered"].as_u64().unwrap() + listener["delivered"].as_u64().unwrap()
    );
    assert_eq!(merged["expected"], merged["delivered"], "{merged}");
    assert_eq!(
        merged["latency"]["count"],
        (published - 1) * 40,
        "the histograms merged"
    );
}

/// Against a server that speaks only TLS, trusting its private CA: every scenario runs over
/// https:// and wss:// (a plain connection to this server fails its TLS handshake), with the
/// same accounting as in plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_over_tls_trusting_a_private_ca() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let ca_path = ca.write(dir.path());
    let (cert, key) = ca.leaf("bench server").write(dir.path());
    let (child, addr) = start_with(
        &db.url,
        &[
            ("TASKFLOW_TLS_CERT", cert.to_str().unwrap()),
            ("TASKFLOW_TLS_KEY", key.to_str().unwrap()),
        ],
    );
    let server = KillOnDrop(child);
    let pid = server.0.id();
    let ca_arg = ca_path.to_str().unwrap().to_owned();
    let run = move |scenario: &'static [&'static str]| {
        let (addr, ca_arg) = (addr.clone(), ca_arg.clone());
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["--ca-cert", ca_arg.as_str()];
            args.extend_from_slice(scenario);
            bench(&addr, pid, &args)
        })
    };
    let fanout = run(&[
        "fanout",
        "--subscribers",
        "40",
        "--rooms",
        "2",
        "--rate",
        "20",
        "--duration",
        "1",
    ])
    .await
    .unwrap();
    let published = fanout["published"].as_u64().unwrap();
    assert!(published > 2, "{fanout}");
    assert_eq!(fanout["expected"], published * 20, "{fanout}");
    assert_eq!(fanout["delivered"], fanout["expected"], "{fanout}");
    assert_eq!(fanout["lost"], 0);
    assert_eq!(fanout["duplicates"], 0);

    let connections = run(&["connections", "--count", "30", "--hold", "1"])
        .await
        .unwrap();
    assert_eq!(connections["held"], 30, "{connections}");
    assert_eq!(connections["failed"], 0);

    let churn = run(&[
        "churn",
        "--rate",
        "20",
        "--duration",
        "1",
        "--warmup",
        "1",
        "--concurrency",
        "5",
    ])
    .await
    .unwrap();
    assert_eq!(churn["cycles"], 20, "{churn}");
    assert_eq!(churn["errors"], 0);
}

/// A server with room for 30 WebSockets, whose 503s say `Retry-After` 1 to 2 s.
async fn room_for_30() -> (TestDb, KillOnDrop, String) {
    let db = TestDb::new(Backend::Sqlite).await;
    let (child, addr) = start_with(
        &db.url,
        &[
            ("TASKFLOW_WS_MAX_CONNECTIONS", "30"),
            ("TASKFLOW_WS_RETRY_AFTER_SECS", "1"),
        ],
    );
    (db, KillOnDrop(child), addr)
}

/// A run where some subscribers cannot get in still yields its report: the failures are counted
/// by reason, the subscribers that got in are accounted as usual; `--max-failed` makes them fatal.
/// A refused subscriber follows the 503's `Retry-After` for `--retry-for` seconds before it is a
/// failure: here the server never has room for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_connections_are_figures_and_max_failed_makes_them_fatal() {
    // Room for 30 WebSockets: of 40 subscribers, 10 are refused with 503, again and again.
    let (_db, server, addr) = room_for_30().await;
    let pid = server.0.id();
    let scenario = [
        "fanout",
        "--subscribers",
        "40",
        "--rate",
        "20",
        "--duration",
        "1",
        "--concurrency",
        "40",
    ];
    let mut following = scenario.to_vec();
    following.extend(["--retry-for", "4"]);
    let addr2 = addr.clone();
    let fanout = tokio::task::spawn_blocking(move || bench(&addr2, pid, &following))
        .await
        .unwrap();
    assert_eq!(fanout["subscribers"], 30, "{fanout}");
    assert_eq!(fanout["failed_connections"], 10, "{fanout}");
    assert_eq!(fanout["failures"]["refused_503"], 10, "{fanout}");
    assert_eq!(fanout["delayed"], 0, "never got in: failures, not delays");
    assert!(
        metric(&addr, "handshakes_refused_total", r#"reason="server_full""#).await >= 20.0,
        "each of the 10 followed its Retry-After (1 to 2 s) at least once"
    );
    let published = fanout["published"].as_u64().unwrap();
    assert_eq!(fanout["expected"], published * 30, "{fanout}");
    assert_eq!(fanout["delivered"], fanout["expected"], "{fanout}");

    // The same with --max-failed 5 (and no following): the run ends with the error instead.
    let mut fatal = scenario.to_vec();
    fatal.extend(["--max-failed", "5", "--retry-for", "0"]);
    let output =
        tokio::task::spawn_blocking(move || bench_command(&addr, pid, &fatal).output().unwrap())
            .await
            .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("10 of 40 connections failed") && stderr.contains("upgrade refused: 503"),
        "{stderr}"
    );
}

/// Waits (bounded) until `check` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// A subscriber refused with 503 and `Retry-After` waits and tries again; once the server has
/// room it gets in, and the report counts it as delayed (by the refusal's reason), not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_subscribers_follow_retry_after_and_are_delays_not_failures() {
    let (_db, server, addr) = room_for_30().await;
    let pid = server.0.id();
    // The test's own 10 connections take 10 of the 30 places: of the bench's 30 subscribers, 20
    // get in and the others are refused (server_full) until these close.
    let mut holders = Vec::new();
    for _ in 0..10 {
        let mut request = format!("ws://{addr}/ws/tasks")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        holders.push(tokio_tungstenite::connect_async(request).await.unwrap().0);
    }
    let fanout = bench_command(
        &addr,
        pid,
        &[
            "fanout",
            "--subscribers",
            "30",
            "--rate",
            "20",
            "--duration",
            "1",
            "--concurrency",
            "30",
            "--retry-for",
            "30",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    until(
        "the server refuses a subscriber for want of room",
        || async {
            metric(&addr, "handshakes_refused_total", r#"reason="server_full""#).await >= 1.0
        },
    )
    .await;
    for mut holder in holders {
        holder.close(None).await.unwrap();
    }
    let fanout = tokio::task::spawn_blocking(move || report(fanout.wait_with_output().unwrap()))
        .await
        .unwrap();
    assert_eq!(fanout["subscribers"], 30, "{fanout}");
    assert_eq!(fanout["failed_connections"], 0, "{fanout}");
    let delayed = fanout["delayed"].as_u64().unwrap();
    assert!((1..=10).contains(&delayed), "{fanout}");
    assert_eq!(fanout["delays"]["server_full"], delayed, "{fanout}");
    let published = fanout["published"].as_u64().unwrap();
    assert_eq!(fanout["expected"], published * 30, "{fanout}");
    assert_eq!(fanout["delivered"], fanout["expected"], "{fanout}");
    assert_eq!(fanout["lost"], 0);
}

/// The figures every storm must show: each client affected by the storm resubscribed with
/// everything recovered and caught up, nothing lost, duplicated or out of order over the whole
/// run, no client failed, and the server's database queries per connection reported.
fn assert_storm_is_clean(storm: &Value) {
    assert_eq!(storm["scenario"], "storm");
    let phase = &storm["storm"];
    let affected = phase["clients"].as_u64().unwrap();
    assert!(affected > 0, "{storm}");
    assert_eq!(phase["subscribed"]["count"], affected, "{storm}");
    assert_eq!(phase["caught_up"]["count"], affected, "every one caught up");
    assert_eq!(phase["not_caught_up"], 0, "{storm}");
    assert_eq!(phase["recovered_false"], 0, "{storm}");
    assert_eq!(phase["failed"], 0, "{storm}");
    assert!(
        phase["caught_up_s"].as_f64().unwrap()
            >= phase["subscribed"]["p50_ms"].as_f64().unwrap() / 1000.0
    );
    assert_eq!(storm["failed_connections"], 0, "{storm}");
    assert!(storm["published"].as_u64().unwrap() > 0, "{storm}");
    assert!(storm["expected"].as_u64().unwrap() > 0, "{storm}");
    assert_eq!(storm["delivered"], storm["expected"], "{storm}");
    assert_eq!(storm["lost"], 0, "{storm}");
    assert_eq!(storm["duplicates"], 0, "{storm}");
    assert_eq!(storm["out_of_order"], 0, "{storm}");
    assert_eq!(storm["incomplete"], 0, "{storm}");
    assert!(
        storm["db_queries_per_connection"].is_number(),
        "the server's counters were read: {storm}"
    );
}

/// A storm on one node: 300 clients connect at once, then all drop their connections at the
/// same moment and resume from their last offsets while the publisher goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_clients_all_resume_at_once_and_catch_up_with_nothing_lost() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (child, addr) = start_with(&db.url, &[]);
    let server = KillOnDrop(child);
    let pid = server.0.id();
    let storm = tokio::task::spawn_blocking(move || {
        bench(
            &addr,
            pid,
            &[
                "storm",
                "--clients",
                "300",
                "--rooms",
                "3",
                "--rate",
                "50",
                "--warmup",
                "1",
                "--after",
                "1",
            ],
        )
    })
    .await
    .unwrap();
    assert_storm_is_clean(&storm);
    assert_eq!(storm["mode"], "reconnect");
    assert_eq!(storm["connect"]["clients"], 300, "{storm}");
    assert_eq!(storm["connect"]["subscribed"]["count"], 300, "{storm}");
    assert_eq!(
        storm["storm"]["clients"], 300,
        "all of them dropped and resumed"
    );
    assert_eq!(
        storm["storm"]["db"]["connections_opened"], 300.0,
        "the server opened one session per resume: {storm}"
    );
    assert!(
        storm["storm"]["replayed"].as_u64().unwrap() > 0,
        "events published while they were away reached them as the replay: {storm}"
    );
}

/// Two nodes share one port (SO_REUSEPORT) on PostgreSQL and Redis. Under load the bench drains
/// one with SIGTERM: its clients, closed with 1001, reconnect to the same address, land on the
/// other node and resume there with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_drains_a_node_and_its_clients_resume_on_the_other() {
    let db = TestDb::new(Backend::Postgres).await;
    let prefix = Prefix::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("TASKFLOW_BROKER", "redis://127.0.0.1:6379/"),
        ("TASKFLOW_BROKER_PREFIX", &*prefix),
        ("TASKFLOW_SHUTDOWN_TIMEOUT_SECS", "3"),
        ("TASKFLOW_WS_RETRY_AFTER_SECS", "1"),
    ];
    let node = |id: &str| {
        let args = [
            "--listen",
            &listen,
            "--reuse-port",
            "--node-id",
            id,
            "--database",
            &db.url,
        ];
        let (child, addr, _output) = start_serving(&args, &env);
        (KillOnDrop(child), addr)
    };
    let (mut drained, addr) = node("n1");
    let (_kept, _) = node("n2");
    let drained_pid = drained.0.id().to_string();
    let storm = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_taskflow"));
        command
            .args(["bench", "--target", &addr, "--sources", "4", "--json"])
            .args(["storm", "--clients", "200", "--rooms", "2", "--rate", "20"])
            .args(["--warmup", "1", "--after", "1", "--mode", "drain"])
            .args(["--drain-pid", &drained_pid])
            .env("TASKFLOW_ADMIN_TOKEN", TOKEN);
        report(command.output().unwrap())
    })
    .await
    .unwrap();
    assert_storm_is_clean(&storm);
    assert_eq!(storm["mode"], "drain");
    assert_eq!(
        storm["connect"]["db"]["nodes"],
        serde_json::json!(["n1", "n2"]),
        "both nodes found behind the one port: {storm}"
    );
    assert_eq!(
        storm["storm"]["db"]["nodes"],
        serde_json::json!(["n2"]),
        "only the node left answers after the storm: {storm}"
    );
    assert!(
        storm["storm"]["clients"].as_u64().unwrap() < 200,
        "only the drained node's clients were affected: {storm}"
    );
    assert!(
        drained.0.try_wait().unwrap().is_some(),
        "the drained node has exited"
    );
}

/// `taskflow bench import` against the real binary, on both stores: every generated task is
/// imported and exported back, other requests are answered while the import runs, and the
/// server's memory stays bounded whatever the size. 60,000 lines is enough to tell: the import
/// before batching held about 2 KB per line until it answered (120 MB here), and kept most of
/// it; now it holds a batch, and SQLite's writer cache (32 MB) for the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_import_moves_every_task_in_bounded_memory() {
    for (backend, format) in [(Backend::Sqlite, "ndjson"), (Backend::Postgres, "csv")] {
        let db = TestDb::new(backend).await;
        let (child, addr) = start_with(&db.url, &[]);
        let server = KillOnDrop(child);
        let pid = server.0.id();
        let report = tokio::task::spawn_blocking(move || {
            bench(
                &addr,
                pid,
                &["import", "--lines", "60000", "--format", format],
            )
        })
        .await
        .unwrap();
        let what = format!("{backend:?} {format}: {report}");
        assert_eq!(report["scenario"], "import", "{what}");
        assert_eq!(report["import"]["lines"], 60_000, "{what}");
        assert_eq!(report["export"]["lines"], 60_000, "{what}");
        assert!(
            report["export"]["bytes"].as_u64().unwrap() > report["file_bytes"].as_u64().unwrap(),
            "{what}"
        );
        assert!(
            report["probe_requests"].as_u64().unwrap() >= 1,
            "other requests are answered during the import: {what}"
        );
        let import = &report["import"]["memory"];
        let export = &report["export"]["memory"];
        let mib = |v: &Value| v.as_f64().unwrap();
        assert!(
            mib(&import["rss_peak_mib"]) - mib(&import["rss_before_mib"]) < 96.0,
            "peak during the import: {what}"
        );
        assert!(
            mib(&import["rss_after_mib"]) - mib(&import["rss_before_mib"]) < 64.0,
            "after the import: {what}"
        );
        assert!(
            mib(&export["rss_peak_mib"]) - mib(&export["rss_before_mib"]) < 32.0,
            "the export streams: {what}"
        );
        drop(server);
    }
}

/// Against a server that compresses: the bench negotiates permessage-deflate unless told not
/// to, reads every event either way, and reports what a delivery costs on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_fanout_compressed_and_not_reports_bytes_on_the_wire() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (child, addr) = start_with(&db.url, &[("TASKFLOW_WS_COMPRESSION", "on")]);
    let server = KillOnDrop(child);
    let pid = server.0.id();
    let run = |extra: &'static [&'static str], payload: &'static str| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            let mut scenario = extra.to_vec();
            scenario.extend([
                "fanout",
                "--payload",
                payload,
                "--subscribers",
                "40",
                "--rooms",
                "2",
                "--rate",
                "40",
                "--duration",
                "1",
            ]);
            bench(&addr, pid, &scenario)
        })
    };
    let compressed = run(&[], "minimal").await.unwrap();
    let plain = run(&["--no-compression"], "minimal").await.unwrap();
    let realistic = run(&[], "realistic").await.unwrap();
    let realistic_plain = run(&["--no-compression"], "realistic").await.unwrap();
    for report in [&compressed, &plain, &realistic, &realistic_plain] {
        assert_eq!(report["delivered"], report["expected"], "{report}");
        assert_eq!(report["lost"], 0, "{report}");
    }
    assert_eq!(compressed["compressed_subscribers"], 40, "{compressed}");
    assert_eq!(plain["compressed_subscribers"], 0, "{plain}");
    let per = |r: &Value| r["wire_bytes_per_delivery"].as_f64().unwrap();
    assert!(
        per(&compressed) < per(&plain),
        "compressed {} vs plain {} bytes per delivery",
        per(&compressed),
        per(&plain)
    );
    // Realistic tasks are bigger events, and compress too.
    assert!(
        per(&realistic_plain) > per(&plain) + 200.0,
        "{realistic_plain}"
    );
    assert!(
        per(&realistic) < per(&realistic_plain),
        "realistic: compressed {} vs plain {} bytes per delivery",
        per(&realistic),
        per(&realistic_plain)
    );
}
