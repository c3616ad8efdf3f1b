//! The browser client library (`web/taskflow.js`) in a real headless Chromium, driven by
//! playwright-core from `tests/browser/` (Node's test runner); and the board over HTTPS.
//! `scripts/test.sh` installs Debian's `chromium` and runs `npm ci` there; these tests fail, with
//! the reason, when they are missing.

#[path = "../crates/server/tests/common/certs.rs"]
mod certs;
mod chromium;

#[test]
fn the_browser_library_goes_live_degrades_and_resumes_in_chromium() {
    chromium::run("client.test.mjs", &["playwright-core", "ws"], &[], 9);
}

/// The board over HTTPS and WSS (`tests/browser/tls.test.mjs`), with a CA and a server
/// certificate for 127.0.0.1 made here; Chromium trusts the certificate by its SPKI hash, Node's
/// own requests by the CA (`NODE_EXTRA_CA_CERTS`).
#[test]
fn the_board_works_over_https_and_wss_in_chromium() {
    let tls = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new();
    let ca_path = ca.write(tls.path());
    ca.leaf("board server").write(tls.path());
    chromium::run(
        "tls.test.mjs",
        &["playwright-core"],
        &[
            ("TASKFLOW_TLS_DIR", tls.path().as_os_str()),
            ("NODE_EXTRA_CA_CERTS", ca_path.as_os_str()),
        ],
        4,
    );
}

/// Collaborative descriptions with the npm `yjs` and `y-websocket` clients, unchanged
/// (`tests/browser/docs.test.mjs`): two and five concurrent random editors (one offline for a
/// while) converge with each other and with the task's REST description; cursors come and go;
/// strangers are refused and a deleted task closes its document.
#[test]
fn the_npm_yjs_clients_edit_a_description_together() {
    chromium::run_node(
        "docs.test.mjs",
        &["yjs", "y-websocket", "y-protocols", "ws"],
        &[],
        4,
    );
}
