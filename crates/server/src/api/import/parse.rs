//! Parsing import bodies line by line on a blocking thread.

use crate::api::tasks::{parse_id, CreateTask};
use crate::domain::Invalid;
use crate::store::ImportSpec;
use serde::Deserialize;
use std::io::{BufRead, BufReader, Read};
use taskflow_protocol::TaskStatus;
use tokio::sync::mpsc::Sender;

/// The longest NDJSON line accepted: bounds the memory one line can take.
const MAX_LINE: usize = 1024 * 1024;

/// Import body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON object per line.
    Ndjson,
    /// CSV with a header.
    Csv,
}

/// What the parser hands to the importing task.
pub(crate) enum Parsed {
    /// One line (1-based, as an editor counts), valid or with the reason it is not.
    Line {
        line: u64,
        spec: Result<ImportSpec, String>,
    },
    /// The body could not be read (cut, too large); parsing stopped.
    Unreadable(std::io::Error),
}

/// One import line: the fields of `POST /tasks` plus `id` and `dependencies`; the read-only
/// fields an export writes are accepted (with the types an export gives them) and ignored, so an
/// export imports back as is.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportLine {
    id: Option<String>,
    title: Option<String>,
    description: Option<String>,
    status: Option<TaskStatus>,
    #[serde(default, deserialize_with = "crate::api::fields::integer")]
    priority: Option<i64>,
    project_id: Option<String>,
    assignee: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
    /// Read-only in an export; checked for the type an export writes, then ignored.
    #[serde(default, rename = "blocked")]
    _blocked: Option<bool>,
    /// Read-only in an export (RFC 3339); checked to be a string, then ignored.
    #[serde(default, rename = "created_at")]
    _created_at: Option<String>,
    /// Read-only in an export (RFC 3339); checked to be a string, then ignored.
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<String>,
    /// Read-only in an export; checked to be an integer, then ignored.
    #[serde(
        default,
        rename = "version",
        deserialize_with = "crate::api::fields::integer"
    )]
    _version: Option<i64>,
}

impl ImportLine {
    fn into_spec(self) -> Result<ImportSpec, Invalid> {
        let id = self
            .id
            .as_deref()
            .map(|id| parse_id(id, "id"))
            .transpose()?;
        let dependencies = self
            .dependencies
            .iter()
            .map(|d| parse_id(d, "dependencies"))
            .collect::<Result<Vec<_>, _>>()?;
        let task = CreateTask::new(
            self.title,
            self.description,
            self.status,
            self.priority,
            self.project_id,
            self.assignee,
        )
        .validate()?;
        Ok(ImportSpec {
            id,
            task,
            dependencies,
        })
    }
}

/// Parses the whole body, sending each line to `out`. Returns early if the receiver is gone.
pub(crate) fn parse_body(format: Format, reader: impl Read, out: &Sender<Parsed>) {
    let result = match format {
        Format::Ndjson => parse_ndjson(BufReader::new(reader), out),
        Format::Csv => parse_csv(
            LineCapped {
                inner: reader,
                run: 0,
            },
            out,
        ),
    };
    if let Err(err) = result {
        let _ = out.blocking_send(Parsed::Unreadable(err));
    }
}

fn send(out: &Sender<Parsed>, line: u64, spec: Result<ImportSpec, String>) -> bool {
    out.blocking_send(Parsed::Line { line, spec }).is_ok()
}

fn parse_ndjson(mut reader: impl BufRead, out: &Sender<Parsed>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        if buf.len() > MAX_LINE {
            send(
                out,
                line,
                Err(format!(
                    "line is longer than {MAX_LINE} bytes; parsing stopped here"
                )),
            );
            return Ok(());
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let spec = parse_ndjson_line(&buf);
        if !send(out, line, spec) {
            return Ok(());
        }
    }
}

/// One non-blank NDJSON line: the task it holds, or why it holds none.
fn parse_ndjson_line(buf: &[u8]) -> Result<ImportSpec, String> {
    // JSON text is UTF-8 (RFC 8259 §8.1), and serde_json does not check the bytes of what it
    // skips (the export's read-only fields): a line with broken UTF-8 there was accepted.
    let Ok(text) = std::str::from_utf8(buf) else {
        return Err("the line is not valid UTF-8".to_owned());
    };
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, ImportLine>(&mut de) {
        // One object per line: bytes after it (another object) would be dropped unseen.
        Ok(parsed) => match de.end() {
            Ok(()) => parsed.into_spec().map_err(|e| e.to_string()),
            Err(err) => Err(format!("one JSON object per line: {err}")),
        },
        Err(err) if err.path().to_string() == "." => Err(err.into_inner().to_string()),
        Err(err) => Err(format!("{}: {}", err.path(), err.inner())),
    }
}

fn parse_csv(reader: impl Read, out: &Sender<Parsed>) -> std::io::Result<()> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(reader);
    let headers = match csv.headers() {
        Ok(h) => h.clone(),
        Err(err) => return csv_failure(err, 1, out),
    };
    for name in headers.iter() {
        if !crate::api::export::CSV_COLUMNS.contains(&name) {
            send(
                out,
                1,
                Err(format!("unknown column {name:?}; parsing stopped here")),
            );
            return Ok(());
        }
    }
    let column = |name: &str| headers.iter().position(|h| h == name);
    let columns = Columns {
        id: column("id"),
        title: column("title"),
        description: column("description"),
        status: column("status"),
        priority: column("priority"),
        project_id: column("project_id"),
        assignee: column("assignee"),
        dependencies: column("dependencies"),
    };
    let mut record = csv::StringRecord::new();
    loop {
        // Where the next record starts (the reader's position is on its first line).
        let line = csv.position().line();
        match csv.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line());
                let spec = columns
                    .line(&record)
                    .and_then(ImportLine::into_spec)
                    .map_err(|e| e.to_string());
                if !send(out, line, spec) {
                    return Ok(());
                }
            }
            Err(err) => {
                let line = err.position().map_or(line, |p| p.line());
                if matches!(err.kind(), csv::ErrorKind::Io(_)) {
                    return csv_failure(err, line, out);
                }
                // A malformed record (wrong number of fields, bad UTF-8): report, go on.
                if !send(out, line, Err(err.to_string())) {
                    return Ok(());
                }
            }
        }
    }
}

fn csv_failure(err: csv::Error, line: u64, out: &Sender<Parsed>) -> std::io::Result<()> {
    match err.into_kind() {
        csv::ErrorKind::Io(io) => Err(io),
        other => {
            send(out, line, Err(format!("{other:?}")));
            Ok(())
        }
    }
}

/// Where each known column sits in the CSV header.
struct Columns {
    id: Option<usize>,
    title: Option<usize>,
    description: Option<usize>,
    status: Option<usize>,
    priority: Option<usize>,
    project_id: Option<usize>,
    assignee: Option<usize>,
    dependencies: Option<usize>,
}

impl Columns {
    fn line(&self, record: &csv::StringRecord) -> Result<ImportLine, Invalid> {
        // An empty cell means "not given".
        let get = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let status = get(self.status)
            .map(|s| {
                TaskStatus::parse(&s)
                    .ok_or_else(|| Invalid::new("status", "must be todo, in_progress or done"))
            })
            .transpose()?;
        let priority = get(self.priority)
            .map(|p| {
                p.trim()
                    .parse::<i64>()
                    .map_err(|_| Invalid::new("priority", "must be an integer from 0 to 100"))
            })
            .transpose()?;
        Ok(ImportLine {
            id: get(self.id),
            title: get(self.title),
            description: get(self.description),
            status,
            priority,
            project_id: get(self.project_id),
            assignee: get(self.assignee),
            dependencies: get(self.dependencies)
                .map(|d| {
                    d.split([' ', ';', ','])
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            ..ImportLine::default()
        })
    }
}

/// Fails a read once a line runs past [`MAX_LINE`] bytes: the CSV reader buffers a whole record,
/// so this bounds the memory one record can take (a record may span lines inside quotes; the
/// body limit bounds those).
struct LineCapped<R> {
    inner: R,
    /// Bytes since the last newline.
    run: usize,
}

impl<R: Read> Read for LineCapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            self.run = if b == b'\n' { 0 } else { self.run + 1 };
            if self.run > MAX_LINE {
                return Err(std::io::Error::other(format!(
                    "a line is longer than {MAX_LINE} bytes"
                )));
            }
        }
        Ok(n)
    }
}
