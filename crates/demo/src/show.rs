//! The readable lines a chapter prints: a heading, each request with its status and time, and
//! notes on what the answer shows. One place, so every chapter reads alike.

use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// How much of a JSON body a line shows before it is cut.
const BRIEF_CHARS: usize = 160;

/// `── 3. Priority queue ─────`
pub fn heading(number: usize, title: &str) {
    let text = format!("── {number}. {title} ");
    let width = 78usize.saturating_sub(text.chars().count());
    println!("\n{text}{}", "─".repeat(width));
}

/// `  GET /tasks/next?project=p -> 200 OK  (1.2 ms)`
pub fn request(label: &str, status: StatusCode, elapsed: Duration) {
    println!("  {label} -> {status}  ({})", millis(elapsed));
}

/// An indented line under the requests: what the answer shows.
pub fn note(text: impl AsRef<str>) {
    println!("     {}", text.as_ref());
}

/// A JSON value on one line, cut at [`BRIEF_CHARS`] characters.
pub fn brief(value: &Value) -> String {
    cut(&value.to_string(), BRIEF_CHARS)
}

/// `text`, cut at `max` characters with an ellipsis.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max).collect();
        short.push('…');
        short
    }
}

/// A duration as milliseconds with one decimal (`3.1 ms`), or seconds past ten seconds.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// A task id shortened to its last 8 characters, enough to tell the tasks of a run apart.
pub fn short_id(id: &impl ToString) -> String {
    let id = id.to_string();
    id[id.len().saturating_sub(8)..].to_owned()
}
