//! A progress bar on stderr while a run goes (hidden when stderr is not a terminal, so reports
//! on stdout and logs stay clean).

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// A bar counting `len` steps of `what`.
pub fn counter(what: &str, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {per_sec} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// A bar over a span of time, with a message for live figures.
pub fn clock(what: &str, span: Duration) -> ProgressBar {
    let bar = ProgressBar::new(span.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len}s {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}
