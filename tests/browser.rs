//! The browser client library (`web/taskflow.js`) in a real headless Chromium, driven by
//! playwright-core from `tests/browser/` (Node's test runner). `scripts/test.sh` installs Debian's
//! `chromium` and runs `npm ci` there; this test fails, with the reason, when they are missing.

#[path = "../crates/server/tests/common/certs.rs"]
mod certs;

use std::path::Path;
use std::process::Command;

#[test]
fn the_browser_library_goes_live_degrades_and_resumes_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in tests/browser (scripts/test.sh does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is missing: `apt-get install chromium` (scripts/test.sh does)"
    );
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "client.test.mjs"])
        .current_dir(&dir)
        .env("TASKFLOW_BIN", env!("CARGO_BIN_EXE_taskflow"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "browser tests failed:\n{report}");
    assert!(
        report.contains("# pass 6"),
        "all six browser scenarios ran:\n{report}"
    );
}

/// The board over HTTPS and WSS (`tests/browser/tls.test.mjs`), with a CA and a server
/// certificate for 127.0.0.1 made here; Chromium trusts the certificate by its SPKI hash, Node's
/// own requests by the CA (`NODE_EXTRA_CA_CERTS`).
#[test]
fn the_board_works_over_https_and_wss_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in tests/browser (scripts/test.sh does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let tls = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new();
    let ca_path = ca.write(tls.path());
    ca.leaf("board server").write(tls.path());
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "tls.test.mjs"])
        .current_dir(&dir)
        .env("TASKFLOW_BIN", env!("CARGO_BIN_EXE_taskflow"))
        .env("CHROMIUM", &chromium)
        .env("TASKFLOW_TLS_DIR", tls.path())
        .env("NODE_EXTRA_CA_CERTS", &ca_path)
        .output()
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "TLS browser tests failed:\n{report}"
    );
    assert!(
        report.contains("# pass 4") && report.contains("# fail 0"),
        "every TLS scenario ran:\n{report}"
    );
}
