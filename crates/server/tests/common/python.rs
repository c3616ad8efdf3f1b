//! A WebSocket client not written in Rust: Python's `websockets` (installed by
//! scripts/test.sh) running `python_client.py`, which subscribes to `project:default`, prints the
//! first task event and closes normally.

use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// How long each step of the script may take.
const WAIT: Duration = Duration::from_secs(30);

/// The running script, subscribed.
pub struct PythonClient {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// The `Sec-WebSocket-Extensions` the server answered, if any.
    pub extensions: Option<String>,
}

impl PythonClient {
    /// Starts the script against `url` (`ws://` or `wss://`, trusting `ca` when given) and
    /// waits until it says it is subscribed.
    pub async fn subscribed(url: &str, token: &str, ca: Option<&Path>) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/python_client.py");
        let mut command = tokio::process::Command::new("python3");
        command.arg(script).arg(url).arg(token);
        if let Some(ca) = ca {
            command.arg(ca);
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let mut client = Self {
            child,
            lines: BufReader::new(stdout).lines(),
            extensions: None,
        };
        let extensions = client.line().await.unwrap_or_default();
        client.extensions = match extensions.strip_prefix("extensions ") {
            Some("none") => None,
            Some(value) => Some(value.to_owned()),
            None => panic!("the Python client reports its extensions first: {extensions:?}"),
        };
        assert_eq!(
            client.line().await.as_deref(),
            Some("subscribed"),
            "the Python client connected and subscribed"
        );
        client
    }

    /// The next line the script prints, `None` once it exits.
    async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("the Python client prints its next line in time")
            .expect("its output is readable")
    }

    /// The event it printed (the first task event after subscribing).
    pub async fn event(&mut self) -> serde_json::Value {
        let line = self
            .line()
            .await
            .expect("the Python client prints the event");
        serde_json::from_str(&line).unwrap()
    }

    /// Waits for its normal close: the server answered its close frame with code 1000 (the
    /// library reports 1006 when no close frame came back), and the script succeeded.
    pub async fn closed_normally(mut self) {
        assert_eq!(
            self.line().await.as_deref(),
            Some("closed 1000"),
            "the server answered the client's close with its code"
        );
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the Python client exits")
            .unwrap();
        assert!(status.success());
    }
}
