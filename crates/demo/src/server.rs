//! The server of its own the demo runs without `--target`: this same binary as `taskflow serve`
//! on a free loopback port (`127.0.0.1:0`, the address read from the line it prints once it
//! listens), on a SQLite file in a temporary directory, with a random admin token and JSON logs,
//! which chapter 6 searches for a request id.
//!
//! The child is started with the server's defaults: every `TASKFLOW_*` variable and `RUST_LOG`
//! of the demo's environment is removed, so a setting meant for another server (a higher rate
//! limit, a quieter log level) cannot change what the chapters show. It is killed when
//! [`OwnServer::stop`] is called, and also when the handle is dropped (a failed or interrupted
//! run), so it never outlives the demo.

use anyhow::{bail, Context};
use rand::Rng;
use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;

/// How long the server may take to listen (a debug build runs its migrations first).
const START_WAIT: Duration = Duration::from_secs(60);
/// Log lines kept: enough for a whole run at the default sizes (about one per request).
const KEPT_LINES: usize = 50_000;

/// The server the demo started.
pub struct OwnServer {
    /// The process (killed on drop).
    child: Child,
    /// `http://127.0.0.1:port`.
    base: String,
    /// Its admin token, made up for this run.
    token: String,
    /// Its standard output, logs included.
    logs: Logs,
    /// The directory of its database, removed when the demo ends.
    _dir: tempfile::TempDir,
}

impl OwnServer {
    /// Starts `taskflow serve` and waits until it listens.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("taskflow-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let database = format!("sqlite://{}", dir.path().join("demo.db").display());
        let token = random_token();
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let mut command = Command::new(exe);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
            .args(["--log-format", "json"]);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TASKFLOW_") {
                command.env_remove(&name);
            }
        }
        command
            .env_remove("RUST_LOG")
            .env("TASKFLOW_ADMIN_TOKEN", &token)
            .env("TASKFLOW_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().context("cannot start the server")?;
        let stdout = child.stdout.take().context("the server's output")?;
        let logs = Logs::default();
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(START_WAIT, listening(&mut lines, &logs))
            .await
            .context("the server did not start listening in time")??;
        tokio::spawn(keep(lines, logs.clone()));
        Ok(Self {
            child,
            base: format!("http://{address}"),
            token,
            logs,
            _dir: dir,
        })
    }

    /// Its process id (`None` once it has exited), to watch it with other tools.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Its admin token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Its output so far, and more as it comes.
    pub fn logs(&self) -> Logs {
        self.logs.clone()
    }

    /// Stops it (SIGKILL: its database is thrown away with the directory) and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.start_kill().context("cannot stop the server")?;
        }
        self.child.wait().await.context("the server did not stop")?;
        Ok(())
    }
}

/// Reads the output up to the line `Taskflow listening on http://ADDR ...`; returns ADDR.
async fn listening(
    lines: &mut tokio::io::Lines<BufReader<ChildStdout>>,
    logs: &Logs,
) -> anyhow::Result<String> {
    loop {
        let Some(line) = lines.next_line().await? else {
            bail!("the server exited before listening (its errors are above)");
        };
        logs.push(line.clone());
        if let Some(rest) = line.strip_prefix("Taskflow listening on http://") {
            return rest
                .split_whitespace()
                .next()
                .map(str::to_owned)
                .context("no address on the listening line");
        }
    }
}

/// Keeps reading the output (a full pipe would block the server) into `logs`.
async fn keep(mut lines: tokio::io::Lines<BufReader<ChildStdout>>, logs: Logs) {
    while let Ok(Some(line)) = lines.next_line().await {
        logs.push(line);
    }
}

/// 32 random letters and digits.
fn random_token() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The server's output lines, the latest [`KEPT_LINES`]; waiting on them wakes with each line.
#[derive(Clone)]
pub struct Logs {
    /// The lines.
    lines: Arc<watch::Sender<VecDeque<String>>>,
}

impl Default for Logs {
    fn default() -> Self {
        Self {
            lines: Arc::new(watch::Sender::new(VecDeque::new())),
        }
    }
}

impl Logs {
    fn push(&self, line: String) {
        self.lines.send_modify(|lines| {
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        });
    }

    /// The first line containing `needle`, waiting for it at most `limit`.
    pub async fn wait_for(&self, needle: &str, limit: Duration) -> Option<String> {
        let mut changes = self.lines.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let found = changes
                .borrow_and_update()
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            if found.is_some() {
                return found;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, changes.changed()).await,
                Ok(Ok(()))
            ) {
                return None;
            }
        }
    }
}
