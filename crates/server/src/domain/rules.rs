//! The constraints on text that comes from outside, written once. Each [`TextRule`] is both the
//! check the validators run and the JSON Schema the OpenAPI document publishes
//! ([`TextRule::schema`]), so a client generated from `/openapi.json`, a schema-based tester and
//! the server agree on exactly which strings are valid.
//!
//! Patterns are spelled in the subset that ECMA-262 (JSON Schema's dialect), Python's `re`
//! (schemathesis) and Rust's `regex` read the same way: anchored with `^…$`, `\uXXXX` escapes, and
//! character classes listed explicitly rather than `\s`/`\S`, whose meaning differs between
//! them. Where a value is trimmed, the class of "not whitespace" is exactly Rust's
//! [`char::is_whitespace`] (the Unicode `White_Space` property), which `str::trim` removes; a test
//! checks that over every code point.
//!
//! Lengths count characters (Unicode scalar values), as JSON Schema's `minLength`/`maxLength`
//! do, and apply to the value as sent, before any trimming.

use super::Invalid;
use regex::Regex;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The characters `str::trim` removes: Unicode `White_Space`.
macro_rules! whitespace {
    () => {
        r"\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

/// A project slug, unanchored (for composing).
macro_rules! slug {
    () => {
        r"[a-z0-9][a-z0-9_-]{0,63}"
    };
}

/// A user id, unanchored (for composing).
macro_rules! user {
    () => {
        r"[A-Za-z0-9._@-]{1,64}"
    };
}

/// A room an SSE or long-poll client follows, unanchored.
macro_rules! room {
    () => {
        concat!("(project:", slug!(), "|user:", user!(), ")")
    };
}

/// A constraint on a string field: length bounds and a pattern.
#[derive(Debug)]
pub struct TextRule {
    /// The fewest characters.
    pub min_chars: usize,
    /// The most characters.
    pub max_chars: usize,
    /// A pattern the whole value matches (anchored).
    pub pattern: &'static str,
    /// What the client is told when the value breaks the rule.
    pub message: &'static str,
    /// `pattern`, compiled on first use.
    compiled: OnceLock<Regex>,
}

impl TextRule {
    const fn new(
        min_chars: usize,
        max_chars: usize,
        pattern: &'static str,
        message: &'static str,
    ) -> Self {
        Self {
            min_chars,
            max_chars,
            pattern,
            message,
            compiled: OnceLock::new(),
        }
    }

    /// Whether `raw` satisfies the rule.
    pub fn admits(&self, raw: &str) -> bool {
        let chars = raw.chars().count();
        (self.min_chars..=self.max_chars).contains(&chars)
            && self
                .compiled
                .get_or_init(|| Regex::new(self.pattern).expect("rule patterns compile"))
                .is_match(raw)
    }

    /// `Ok` if `raw` satisfies the rule, else the error naming `field`.
    pub fn check(&self, raw: &str, field: &'static str) -> Result<(), Invalid> {
        if self.admits(raw) {
            Ok(())
        } else {
            Err(Invalid::new(field, self.message))
        }
    }

    /// The rule as a JSON Schema for a string.
    pub fn schema(&self) -> Value {
        let mut schema = json!({ "type": "string", "pattern": self.pattern });
        if self.min_chars > 0 {
            schema["minLength"] = json!(self.min_chars);
        }
        schema["maxLength"] = json!(self.max_chars);
        schema
    }
}

/// One line of text: no control characters, at least one that is not whitespace.
macro_rules! line_pattern {
    () => {
        concat!(
            r"^[^\u0000-\u001f\u007f]*[^\u0000-\u001f\u007f",
            whitespace!(),
            r"][^\u0000-\u001f\u007f]*$"
        )
    };
}

/// A task title (stored trimmed).
pub static TITLE: TextRule = TextRule::new(
    1,
    200,
    line_pattern!(),
    "must be 1 to 200 characters on one line (no control characters), not only whitespace",
);

/// A project's display name (stored trimmed).
pub static PROJECT_NAME: TextRule = TextRule::new(
    1,
    200,
    line_pattern!(),
    "must be 1 to 200 characters on one line (no control characters), not only whitespace",
);

/// A task description: any text but NUL, which PostgreSQL cannot store.
pub static DESCRIPTION: TextRule = TextRule::new(
    0,
    10_000,
    r"^[^\u0000]*$",
    "must be at most 10000 characters, without NUL",
);

/// A chat message (stored trimmed): several lines allowed, not only whitespace, no NUL.
pub static CHAT_TEXT: TextRule = TextRule::new(
    1,
    4000,
    concat!(r"^[^\u0000]*[^\u0000", whitespace!(), r"][^\u0000]*$"),
    "must be 1 to 4000 characters, not only whitespace, without NUL",
);

/// A client's idempotency key for a chat message.
pub static MESSAGE_ID: TextRule = TextRule::new(
    1,
    128,
    r"^[^\u0000]*$",
    "must be 1 to 128 characters, without NUL",
);

/// A project slug. Restricting the alphabet keeps room names (`project:<id>`) unambiguous and
/// URLs free of escaping.
pub static PROJECT_ID: TextRule = TextRule::new(
    1,
    64,
    concat!("^", slug!(), "$"),
    "must be 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
);

/// A user id as carried by tokens and assignments. Anything wider would leak into room names
/// (`user:<id>`) and logs.
pub static USER_ID: TextRule = TextRule::new(
    1,
    64,
    concat!("^", user!(), "$"),
    "must be 1 to 64 characters of letters, digits, '.', '_', '-' and '@'",
);

/// A task listing cursor: `<priority>.<task id as 32 hex digits>`.
pub static TASK_CURSOR: TextRule = TextRule::new(
    34,
    36,
    r"^(100|[1-9]?[0-9])\.[0-9a-f]{32}$",
    "is not a cursor this server issued",
);

/// A task id: a UUID in its hyphenated form, either case.
pub static TASK_ID: TextRule = TextRule::new(
    36,
    36,
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "must be a task id (a UUID)",
);

/// `If-Match`: a task's version, as the `ETag` gives it (`"3"`), bare (`3`) or weak (`W/"3"`).
pub static IF_MATCH: TextRule = TextRule::new(
    1,
    21,
    r#"^(W/)?("[0-9]{1,18}"|[0-9]{1,18})$"#,
    "must be the task's version, e.g. \"3\"",
);

/// The `rooms` of an SSE stream or a long poll: comma-separated, no spaces.
pub static ROOM_LIST: TextRule = TextRule::new(
    1,
    1000,
    concat!("^(system|", room!(), ")(,(system|", room!(), "))*$"),
    "must be rooms separated by commas, each project:<id>, user:<id> or system (at most 1000 characters)",
);

/// A room a WebSocket command names: `tasks`, `system`, `project:<id>` or `user:<id>`.
pub static ROOM: TextRule = TextRule::new(
    5,
    72,
    concat!("^(tasks|system|", room!(), ")$"),
    "must be tasks, system, project:<id> or user:<id>",
);

/// A project room, where chat and typing happen.
pub static PROJECT_ROOM: TextRule = TextRule::new(
    9,
    72,
    concat!("^project:", slug!(), "$"),
    "must be project:<id>",
);

/// A bound on an integer field.
#[derive(Debug)]
pub struct IntRule {
    /// The smallest value.
    pub min: i64,
    /// The largest value.
    pub max: i64,
    /// What the client is told when the value is out of bounds.
    pub message: &'static str,
}

impl IntRule {
    /// `Ok` if `value` is within bounds, else the error naming `field`.
    pub fn check(&self, value: i64, field: &'static str) -> Result<(), Invalid> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(Invalid::new(field, self.message))
        }
    }

    /// The rule as a JSON Schema for an integer.
    pub fn schema(&self) -> Value {
        json!({ "type": "integer", "minimum": self.min, "maximum": self.max })
    }
}

/// A task's priority; higher is served first.
pub static PRIORITY: IntRule = IntRule {
    min: 0,
    max: 100,
    message: "must be an integer from 0 to 100",
};

/// A page of a listing or of a chat history.
pub static PAGE_LIMIT: IntRule = IntRule {
    min: 1,
    max: 500,
    message: "must be from 1 to 500",
};

/// A minted token's lifetime, in seconds: 1 s to 366 days.
pub static TOKEN_TTL: IntRule = IntRule {
    min: 1,
    max: 366 * 24 * 3600,
    message: "must be from 1 s to 366 days",
};

/// Every rule, by the name the tests and the document use.
pub fn all() -> [(&'static str, &'static TextRule); 13] {
    [
        ("title", &TITLE),
        ("project_name", &PROJECT_NAME),
        ("description", &DESCRIPTION),
        ("chat_text", &CHAT_TEXT),
        ("message_id", &MESSAGE_ID),
        ("project_id", &PROJECT_ID),
        ("user_id", &USER_ID),
        ("task_cursor", &TASK_CURSOR),
        ("task_id", &TASK_ID),
        ("if_match", &IF_MATCH),
        ("room_list", &ROOM_LIST),
        ("room", &ROOM),
        ("project_room", &PROJECT_ROOM),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One whitespace character, as the rules spell the class.
    static TRIMMED_PROBE: TextRule =
        TextRule::new(1, 1, concat!(r"^[", whitespace!(), r"]$"), "is whitespace");

    #[test]
    fn every_pattern_compiles_and_is_anchored() {
        for (name, rule) in all() {
            assert!(Regex::new(rule.pattern).is_ok(), "{name}");
            assert!(
                rule.pattern.starts_with('^') && rule.pattern.ends_with('$'),
                "{name}"
            );
            assert!(!rule.pattern.contains(r"\s") && !rule.pattern.contains(r"\S"));
        }
    }

    #[test]
    fn the_whitespace_class_is_what_trim_removes() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(
                TRIMMED_PROBE.admits(c.encode_utf8(&mut [0; 4])),
                c.is_whitespace(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn titles_are_one_line_and_not_blank() {
        assert!(TITLE.admits("Ship it"));
        assert!(TITLE.admits("  padded  "));
        assert!(TITLE.admits(&"é".repeat(200)), "counts characters");
        assert!(!TITLE.admits(&"x".repeat(201)));
        assert!(!TITLE.admits(""));
        assert!(!TITLE.admits(" \u{3000}\u{a0}"));
        assert!(!TITLE.admits("a\nb"));
        assert!(!TITLE.admits("a\u{0}"));
        assert!(
            !TITLE.admits("ab\n"),
            "`$` is the end of the text, not of a line"
        );
        assert!(TITLE.admits("\u{feff}"), "U+FEFF is not White_Space");
    }

    #[test]
    fn chat_text_may_span_lines_but_not_be_blank() {
        assert!(CHAT_TEXT.admits("hello\nworld"));
        assert!(!CHAT_TEXT.admits("\n\t "));
        assert!(!CHAT_TEXT.admits("hi\u{0}"));
    }

    #[test]
    fn slugs_and_user_ids() {
        assert!(PROJECT_ID.admits("web-app_2"));
        assert!(!PROJECT_ID.admits("-x"));
        assert!(!PROJECT_ID.admits("Upper"));
        assert!(!PROJECT_ID.admits("p1\n"));
        assert!(USER_ID.admits("alice@example.com"));
        assert!(!USER_ID.admits("a b"));
        assert!(!USER_ID.admits(&"a".repeat(65)));
    }

    #[test]
    fn room_lists_and_versions() {
        assert!(ROOM_LIST.admits("project:p1,user:alice@x.io"));
        assert!(!ROOM_LIST.admits("project:p1, user:a"));
        assert!(!ROOM_LIST.admits("tasks"));
        assert!(ROOM_LIST.admits("system,project:p1"));
        assert!(!ROOM_LIST.admits("systems"));
        assert!(!ROOM_LIST.admits("project:p1,"));
        assert!(IF_MATCH.admits("3") && IF_MATCH.admits("\"3\"") && IF_MATCH.admits("W/\"3\""));
        assert!(!IF_MATCH.admits("-3") && !IF_MATCH.admits("+3") && !IF_MATCH.admits("\"3"));
    }

    #[test]
    fn the_schema_carries_the_bounds() {
        let schema = TITLE.schema();
        assert_eq!(schema["minLength"], 1);
        assert_eq!(schema["maxLength"], 200);
        assert_eq!(schema["pattern"], TITLE.pattern);
        assert!(DESCRIPTION.schema().get("minLength").is_none());
    }
}
