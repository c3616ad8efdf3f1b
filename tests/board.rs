//! The live task board (`web/board/`, served at `/`) in a real headless Chromium, driven by
//! playwright-core from `tests/browser/board.test.mjs` (Node's test runner): two people on one
//! project, live changes, presence, chat, an offline spell, a server restart, axe-core, and
//! screenshots saved to `tests/browser/artifacts/`; then the board degraded to SSE, and its
//! reload after a resume the server cannot honour. `scripts/test.sh` installs Debian's
//! `chromium` and runs `npm ci` there; this test fails, with the reason, when they are missing.

use std::path::Path;
use std::process::Command;

#[test]
fn the_board_is_live_for_two_people_through_offline_spells_and_restarts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    for module in ["playwright-core", "axe-core"] {
        assert!(
            dir.join("node_modules").join(module).exists(),
            "{module} is missing: run `npm ci` in tests/browser (scripts/test.sh does)"
        );
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is missing: `apt-get install chromium` (scripts/test.sh does)"
    );
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "board.test.mjs"])
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
    assert!(output.status.success(), "board tests failed:\n{report}");
    assert!(
        report.contains("# pass 19") && report.contains("# fail 0"),
        "every board scenario ran:\n{report}"
    );
}
