//! What the published tasks carry: the bare send time (the smallest event, the worst case for
//! per-message costs) or a task as people write them (a title, a few sentences of description,
//! a priority), which is what compression's saving should be judged on.
//!
//! The realistic tasks are built from a small set of phrases, varied by the event's number, so
//! no two consecutive events are the same bytes (a compressor cannot just repeat the last one:
//! the server compresses each event on its own anyway) while the vocabulary stays that of a task
//! tracker.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The kind of task a publisher creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// A title holding the send time, nothing else.
    #[default]
    Minimal,
    /// A title, a description of two or three sentences and a priority, like a real task.
    Realistic,
}

const SUBJECTS: [&str; 8] = [
    "Fix the login redirect loop on Safari",
    "Add CSV export to the billing report",
    "Migrate the notification worker to the new queue",
    "Review the onboarding copy with the design team",
    "Investigate slow search queries on large projects",
    "Write the release notes for version",
    "Rotate the staging database credentials",
    "Update the mobile app's crash reporting SDK",
];

const CONTEXT: [&str; 6] = [
    "Customers on the enterprise plan reported this twice this week, see the support thread for \
     the exact steps and browser versions.",
    "This blocks the quarterly review: the numbers in the dashboard must match the invoices \
     before finance signs off.",
    "The current implementation retries forever when the upstream service is down, which fills \
     the logs and delays every other job.",
    "Keep the old behaviour behind a feature flag until the migration is done, then remove it in \
     a follow-up.",
    "Measure before and after on the production snapshot; the goal is under 200 ms at the 99th \
     percentile.",
    "Pair with whoever is on call this week so the runbook gets updated at the same time.",
];

const NEXT: [&str; 5] = [
    "Acceptance: a test that fails today and passes after the change, and a short note in the \
     changelog.",
    "Out of scope: the admin pages, which get their own ticket.",
    "Ask in the team channel before touching the shared configuration.",
    "Estimate: two days, including review and deployment.",
    "Link the pull request here when it is ready for review.",
];

impl Payload {
    /// The body of `POST /tasks` for event number `n` of a publisher, its title starting with
    /// `title` (which carries the send time the subscribers read).
    pub fn task(self, title: &str, room: &str, n: u64) -> Value {
        match self {
            Payload::Minimal => json!({ "title": title, "project_id": room }),
            Payload::Realistic => {
                let i = n as usize;
                let subject = SUBJECTS[i % SUBJECTS.len()];
                let description = format!(
                    "{} {} {} (ticket {}.)",
                    CONTEXT[i % CONTEXT.len()],
                    CONTEXT[(i / CONTEXT.len() + 1) % CONTEXT.len()],
                    NEXT[i % NEXT.len()],
                    1000 + n % 9000,
                );
                json!({
                    "title": format!("{title} {subject}"),
                    "description": description,
                    "priority": (n % 5) as i64 + 1,
                    "project_id": room,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_realistic_task_keeps_the_send_time_first_and_varies() {
        let a = Payload::Realistic.task("bench 123", "p", 0);
        let b = Payload::Realistic.task("bench 123", "p", 1);
        assert!(a["title"].as_str().unwrap().starts_with("bench 123 "));
        assert_ne!(a["description"], b["description"]);
        let len = serde_json::to_string(&a).unwrap().len();
        assert!((250..700).contains(&len), "{len} bytes");
        let minimal = Payload::Minimal.task("bench 123", "p", 0);
        assert_eq!(minimal, json!({ "title": "bench 123", "project_id": "p" }));
    }
}
