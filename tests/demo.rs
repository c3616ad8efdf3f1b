//! `taskflow demo` end to end, at small sizes: against a server of its own, and with `--target`
//! against a server this test started. Both runs must exit 0 with every chapter `ok` in the
//! summary. The demo checks its own claims (its exit status says whether they held); this test
//! checks that it ran all ten and said so.

mod binary;

use binary::{start_capturing, Running, TOKEN};
use std::process::{Command, Output};

/// Sizes small enough for a debug build, large enough that each chapter still does its work
/// (20 workers, thousands of exported and imported tasks). The probe bound is loose: a debug
/// server on a shared machine is slow, and the point here is the run, not the figure.
const SMALL: &[&str] = &[
    "--no-wait",
    "--storage-tasks",
    "12",
    "--page-size",
    "5",
    "--queue-tasks",
    "60",
    "--export-tasks",
    "3000",
    "--import-lines",
    "3000",
    "--probe-p99-ms",
    "5000",
    "--stream-tasks",
    "1000",
    "--bad-import-lines",
    "200",
    "--missed-events",
    "5",
];

fn demo(extra: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskflow"))
        .arg("demo")
        .args(SMALL)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .expect("taskflow demo runs")
}

/// Asserts the run succeeded and its summary lists the ten chapters, each `ok`; returns its
/// output.
fn assert_every_chapter_ok(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed\n{stdout}\n{stderr}"
    );
    let (_, table) = stdout
        .rsplit_once("\nSummary\n")
        .unwrap_or_else(|| panic!("no summary\n{stdout}"));
    for n in 1..=10 {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{n:>3}  ")))
            .unwrap_or_else(|| panic!("no row for chapter {n}\n{stdout}"));
        assert!(row.contains("  ok  "), "chapter {n}: {row}\n{stdout}");
    }
    assert!(
        stdout.contains("All 10 chapters behaved as they say."),
        "{stdout}"
    );
    stdout
}

#[test]
fn the_demo_runs_every_chapter_against_a_server_of_its_own() {
    let output = demo(&[], &[]);
    let stdout = assert_every_chapter_ok(&output);
    assert!(
        stdout.contains("the server's log: "),
        "chapter 6 found its request's log line\n{stdout}"
    );
    assert!(stdout.contains("Stopped the demo's server"), "{stdout}");
}

#[test]
fn the_demo_runs_against_a_running_server_with_target() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("target.db").display());
    let (child, addr, _output) = start_capturing(&database, &[]);
    let server = Running(child);
    let target = format!("http://{addr}");
    let output = demo(&["--target", &target], &[("TASKFLOW_ADMIN_TOKEN", TOKEN)]);
    let stdout = assert_every_chapter_ok(&output);
    assert!(
        stdout.contains("the server's log is not visible to the demo"),
        "chapter 6 says the log is not visible with --target\n{stdout}"
    );
    drop(server);
}
