//! The published contract against the real binary: `/openapi.json` is a valid OpenAPI 3.1
//! document, and schemathesis (PyPI), run with every check and every phase (examples,
//! coverage, fuzzing, stateful) from a fixed seed, finds no request the server answers
//! differently from what the document says: no undocumented status, no response outside its
//! schema, no schema-valid request refused, no schema-invalid one accepted, no 500. On SQLite and
//! on PostgreSQL, since what a store accepts (NUL in text, say) differs.
//!
//! Its settings, and why each departs from schemathesis' defaults, are in
//! `tests/contract/schemathesis.toml`. `scripts/test.sh` installs the pinned schemathesis.

mod binary;
#[path = "../crates/server/tests/common/mod.rs"]
mod common;

use common::{Backend, TestDb};
use std::path::Path;
use std::process::Command;

/// Runs a command to completion; panics with its output unless it succeeds.
fn succeeds(command: &mut Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what} cannot run ({e}): run scripts/test.sh --deps-only"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

async fn schemathesis_finds_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (child, addr) = binary::start_with(
        &db.url,
        &[
            // The contract run is one client doing many requests, not a test of the limiter.
            ("TASKFLOW_RATE_LIMIT_PER_SEC", "100000"),
            ("TASKFLOW_RATE_LIMIT_BURST", "100000"),
            // Long polls answer within a second rather than the default 25 s.
            ("TASKFLOW_POLL_TIMEOUT_SECS", "1"),
            // More rooms than the longest list the `rooms` pattern lets a tester write, so a
            // schema-valid list is never refused for its length.
            ("TASKFLOW_WS_MAX_SUBSCRIPTIONS", "1000"),
        ],
    );
    let _server = binary::Running(child);
    let document = format!("http://{addr}/openapi.json");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract");

    let body = reqwest::get(&document).await.unwrap().text().await.unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    succeeds(
        Command::new("python3")
            .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
            .arg(file.path()),
        "openapi-spec-validator",
    );

    let report = succeeds(
        Command::new("schemathesis")
            .current_dir(&dir)
            .args(["--config-file", "schemathesis.toml", "--no-color", "run"])
            .arg(&document)
            .args(["--checks", "all"])
            .args([
                "--header",
                &format!("Authorization: Bearer {}", binary::TOKEN),
            ]),
        "schemathesis",
    );
    // Exit status 0 already means no failure and no error; also make sure it tested something.
    let summary = report
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_else(|| panic!("no summary in:\n{report}"));
    assert!(
        summary.contains(" passed") && !summary.contains("found"),
        "{summary}"
    );
    for phase in ["Coverage", "Fuzzing", "Stateful"] {
        assert!(
            report.contains(&format!("✅ {phase}")),
            "phase {phase} did not pass:\n{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_on_sqlite() {
    schemathesis_finds_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_on_postgres() {
    schemathesis_finds_nothing(Backend::Postgres).await;
}

/// The worked example of docs/api.md, run as written: generate TypeScript types from the served
/// document with openapi-typescript, type-check `tests/contract/client/tasks.ts` (which calls the
/// API through openapi-fetch, and holds a call that must not compile) with `tsc`, then run it
/// against the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_document_compiles_and_works() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (child, addr) = binary::start(&db.url);
    let _server = binary::Running(child);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
    assert!(
        dir.join("node_modules/openapi-typescript").exists(),
        "tests/contract/node_modules is missing: run scripts/test.sh --deps-only"
    );
    let body = reqwest::get(format!("http://{addr}/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let document = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(document.path(), body).unwrap();

    succeeds(
        Command::new("node")
            .current_dir(&dir)
            .arg("node_modules/openapi-typescript/bin/cli.js")
            .arg(document.path())
            .args(["-o", "client/generated/taskflow.d.ts"]),
        "openapi-typescript",
    );
    succeeds(
        Command::new("node").current_dir(&dir).args([
            "node_modules/typescript/bin/tsc",
            "-p",
            "client",
        ]),
        "tsc",
    );
    let out = succeeds(
        Command::new("node")
            .current_dir(&dir)
            .arg("client/out/tasks.js")
            .arg(format!("http://{addr}"))
            .arg(binary::TOKEN),
        "the generated client",
    );
    let result: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(result["status"], "done", "{result}");
    assert_eq!(result["version"], 2, "{result}");
    assert_eq!(result["listed"], true, "{result}");
    assert_eq!(result["refused_status"], 400, "{result}");
    assert_eq!(result["refused_code"], "invalid_field", "{result}");
}

/// The WebSocket protocol's contract, as a user's tools read it: the served `/asyncapi.json`
/// passes the AsyncAPI Initiative's own parser (`@asyncapi/parser`: the 3.0 schema and its
/// rules) with no error and no warning, and holds every command and frame; the served
/// `/taskflow.d.ts` is `web/taskflow.d.ts`, and `tsc` type-checks `tests/contract/types/usage.ts`
/// (typed use of the library, and mistakes the declarations must catch) against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_contract_is_valid_asyncapi_and_typescript() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (child, addr) = binary::start(&db.url);
    let _server = binary::Running(child);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
    assert!(
        dir.join("node_modules/@asyncapi/parser").exists(),
        "tests/contract/node_modules is missing: run scripts/test.sh --deps-only"
    );

    let answer = reqwest::get(format!("http://{addr}/asyncapi.json"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/json");
    let body = answer.text().await.unwrap();
    let document = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(document.path(), &body).unwrap();
    let out = succeeds(
        Command::new("node")
            .current_dir(&dir)
            .arg("asyncapi.mjs")
            .arg(document.path()),
        "@asyncapi/parser",
    );
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or_default();
    let summary: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("a summary line ({e}):\n{out}"));
    assert_eq!(summary["version"], "3.0.0", "{summary}");
    assert_eq!(
        summary["channels"],
        serde_json::json!(["/ws/tasks"]),
        "{summary}"
    );
    let operations = summary["operations"].as_array().unwrap();
    for command in [
        "subscribe",
        "unsubscribe",
        "message",
        "typing",
        "presence",
        "ping",
    ] {
        assert!(operations.contains(&command.into()), "{command}: {summary}");
    }
    for frame in [
        "hello",
        "event",
        "error",
        "pong",
        "presence.joined",
        "presence.left",
        "typing",
    ] {
        assert!(
            operations.contains(&format!("send.{frame}").into()),
            "{frame}: {summary}"
        );
    }

    let served = reqwest::get(format!("http://{addr}/taskflow.d.ts"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let file =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("web/taskflow.d.ts"))
            .unwrap();
    assert_eq!(served, file, "/taskflow.d.ts serves web/taskflow.d.ts");
    succeeds(
        Command::new("node").current_dir(&dir).args([
            "node_modules/typescript/bin/tsc",
            "-p",
            "types",
        ]),
        "tsc -p types",
    );
}
