//! Any bytes as a CSV import body (`POST /tasks/import`, `text/csv`).
//!
//! Checks: the parser never panics; every verdict names a line from 1 to the body's last line,
//! in order; a body with a rejected line (or one that cannot be read) is not acceptable, so it is
//! rejected whole; an accepted record's title validates again as stored.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskflow_server::domain::TaskTitle;
use taskflow_server::fuzzing::import_csv;

fuzz_target!(|data: &[u8]| {
    let run = import_csv(data);
    let last_line = data.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let mut previous = 0;
    for (line, spec) in &run.lines {
        assert!((1..=last_line).contains(line), "line {line} of {last_line}");
        assert!(*line >= previous, "line {line} after line {previous}");
        previous = *line;
        match spec {
            Ok(spec) => {
                let title = spec.task.title.as_str();
                assert_eq!(
                    TaskTitle::parse(title).ok().as_ref(),
                    Some(&spec.task.title)
                );
            }
            Err(reason) => assert!(!reason.is_empty(), "line {line}: a reason"),
        }
    }
    let rejected = run.lines.iter().any(|(_, spec)| spec.is_err()) || run.unreadable.is_some();
    assert_eq!(run.acceptable(), !rejected);
});
