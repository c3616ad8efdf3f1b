//! Running one of `tests/browser/`'s Node test files against the real `taskflow` binary in
//! Debian's Chromium, for the test binaries that do (`tests/browser.rs`, `tests/board.rs`).
//! `scripts/test.sh` installs Chromium and runs `npm ci` there; a missing piece fails with how to
//! get it.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// Runs `node --test FILE` in `tests/browser/` with `modules` installed, the binary's path in
/// `TASKFLOW_BIN`, Chromium's in `CHROMIUM`, and `env`; asserts it succeeded and ran `passes`
/// tests with none failing. Returns the runner's report.
pub fn run(file: &str, modules: &[&str], env: &[(&str, &OsStr)], passes: usize) -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is missing: `apt-get install chromium` (scripts/test.sh does)"
    );
    let mut env = env.to_vec();
    env.push(("CHROMIUM", OsStr::new(&chromium)));
    run_node(file, modules, &env, passes)
}

/// Like [`run`], for a test file that needs Node and its modules but no browser.
pub fn run_node(file: &str, modules: &[&str], env: &[(&str, &OsStr)], passes: usize) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    for module in modules {
        assert!(
            dir.join("node_modules").join(module).exists(),
            "{module} is missing: run `npm ci` in tests/browser (scripts/test.sh does)"
        );
    }
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", file])
        .current_dir(&dir)
        .env("TASKFLOW_BIN", env!("CARGO_BIN_EXE_taskflow"))
        .envs(env.iter().copied())
        .output()
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{file} failed:\n{report}");
    assert!(
        report.contains(&format!("# pass {passes}\n")) && report.contains("# fail 0"),
        "every scenario of {file} ran ({passes}):\n{report}"
    );
    report
}
