//! Any bytes as an NDJSON import body (`POST /tasks/import`).
//!
//! Checks: the parser never panics; every verdict names a line from 1 to the body's last line,
//! in increasing order; every line that is not blank gets exactly one verdict unless parsing
//! stopped at a rejection (a valid-looking body that silently skipped a line would be a partial
//! import); an accepted line is one whole JSON value whose title validates again as stored.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskflow_server::domain::TaskTitle;
use taskflow_server::fuzzing::import_ndjson;

fuzz_target!(|data: &[u8]| {
    let run = import_ndjson(data);
    let lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
    let mut last = 0;
    for (line, spec) in &run.lines {
        assert!(*line > last, "line {line} after line {last}");
        assert!(
            *line as usize <= lines.len(),
            "line {line} of {}",
            lines.len()
        );
        last = *line;
        let text = lines[*line as usize - 1];
        match spec {
            Ok(spec) => {
                assert!(
                    serde_json::from_slice::<serde_json::Value>(text).is_ok(),
                    "accepted line {line} is not one JSON value: {:?}",
                    String::from_utf8_lossy(text)
                );
                let title = spec.task.title.as_str();
                assert_eq!(
                    TaskTitle::parse(title).ok().as_ref(),
                    Some(&spec.task.title)
                );
            }
            Err(reason) => assert!(!reason.is_empty(), "line {line}: a reason"),
        }
    }
    let stopped = run.lines.iter().any(|(_, spec)| spec.is_err()) || run.unreadable.is_some();
    if !stopped {
        let blank = |l: &&[u8]| l.iter().all(u8::is_ascii_whitespace);
        let expected = lines.iter().filter(|l| !blank(l)).count();
        assert_eq!(run.lines.len(), expected, "a line was skipped");
        assert!(run.acceptable());
    } else {
        assert!(!run.acceptable());
    }
});
