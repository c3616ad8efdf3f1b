//! The summary at the end: one row per chapter (its result, why in one line, how long it took),
//! and whether all of them behaved as they claim, which decides the exit status.

use crate::show;
use std::time::Duration;

/// How much of a chapter's "why" the table shows (the whole line is printed with the chapter).
const WHY_CHARS: usize = 100;

/// One chapter's outcome.
#[derive(Debug, Clone)]
pub struct ChapterResult {
    /// 1 to 10.
    pub number: usize,
    /// Its title.
    pub title: &'static str,
    /// Whether it behaved as it claims.
    pub ok: bool,
    /// Why, in one line.
    pub why: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// Every chapter's outcome.
#[derive(Debug, Clone)]
pub struct Summary {
    /// In order.
    pub chapters: Vec<ChapterResult>,
}

impl Summary {
    /// Whether every chapter behaved as it claims.
    pub fn all_ok(&self) -> bool {
        self.chapters.iter().all(|c| c.ok)
    }

    /// How many did not.
    pub fn failed(&self) -> usize {
        self.chapters.iter().filter(|c| !c.ok).count()
    }

    /// The table: `  #  chapter  result  time  why`, one row per chapter.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:>3}  {:<18}  {:<6}  {:>9}  {}\n",
            "#", "chapter", "result", "time", "why"
        );
        for c in &self.chapters {
            out.push_str(&format!(
                "{:>3}  {:<18}  {:<6}  {:>9}  {}\n",
                c.number,
                c.title,
                if c.ok { "ok" } else { "FAILED" },
                show::millis(c.elapsed),
                show::cut(&c.why.replace('\n', " "), WHY_CHARS)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_chapter_and_failures_count() {
        let row = |number, ok| ChapterResult {
            number,
            title: "Storage",
            ok,
            why: "because".into(),
            elapsed: Duration::from_millis(12),
        };
        let summary = Summary {
            chapters: vec![row(1, true), row(2, false)],
        };
        let table = summary.table();
        assert_eq!(table.lines().count(), 3);
        assert!(table.lines().nth(1).unwrap().starts_with("  1  Storage"));
        assert!(table.contains("  ok  ") && table.contains("FAILED"));
        assert!(!summary.all_ok());
        assert_eq!(summary.failed(), 1);
    }
}
