//! A smoke test of `taskflow bench` with a few connections: the tool runs end to end against the
//! real server and its accounting is right. Timing targets are measured by hand
//! (docs/performance.md), never asserted in the test suite.

mod binary;
#[path = "../crates/server/tests/common/mod.rs"]
mod common;

use binary::{start_with, TOKEN};
use common::{Backend, TestDb};
use serde_json::Value;
use std::process::Command;

fn bench(addr: &str, pid: u32, scenario: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_taskflow"))
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
        .env("TASKFLOW_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("taskflow bench runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_end_to_end_with_a_few_connections() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (mut child, addr) = start_with(
        &db.url,
        &[("TASKFLOW_WS_MAX_CONNECTIONS_PER_USER", "10000")],
    );
    let pid = child.id();
    let addr2 = addr.clone();
    let fanout = tokio::task::spawn_blocking(move || {
        bench(
            &addr2,
            pid,
            &[
                "fanout",
                "--subscribers",
                "20",
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
    let published = fanout["published"].as_u64().unwrap();
    assert!(published > 0, "{fanout}");
    assert_eq!(
        fanout["expected"],
        published * 10,
        "each event reaches its room's 10 subscribers"
    );
    assert_eq!(fanout["delivered"], fanout["expected"], "{fanout}");
    assert_eq!(fanout["lost"], 0);
    assert_eq!(fanout["duplicates"], 0);
    assert_eq!(fanout["out_of_order"], 0);
    assert!(fanout["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(
        fanout["server_after"]["rss_bytes"].as_u64().unwrap() > 0,
        "the server's RSS is read from /proc"
    );

    let addr2 = addr.clone();
    let connections = tokio::task::spawn_blocking(move || {
        bench(
            &addr2,
            pid,
            &["connections", "--count", "50", "--hold", "1"],
        )
    })
    .await
    .unwrap();
    assert_eq!(connections["opened"], 50, "{connections}");
    assert_eq!(connections["failed"], 0);
    assert!(connections["rss_per_connection"].is_number());
    child.kill().unwrap();
    child.wait().unwrap();
}
