//! Identifiers that come from outside (URLs, bodies, tokens) and end up in room names and SQL.

use super::Invalid;
use std::fmt;

/// A project slug: `[a-z0-9][a-z0-9_-]{0,63}`. Restricting the alphabet keeps room names
/// (`project:<id>`) unambiguous and URLs free of escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(String);

impl ProjectId {
    /// The built-in project that receives tasks created without a project.
    pub const DEFAULT: &'static str = "default";

    /// Validates a slug.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let ok_first = raw
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let ok_rest = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok_first && ok_rest && raw.len() <= 64 {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Invalid::new(
                "project_id",
                "must be 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
            ))
        }
    }

    /// The built-in `default` project.
    pub fn default_project() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The event-log room of this project.
    pub fn room(&self) -> String {
        format!("project:{}", self.0)
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user id as carried by tokens and assignments: 1 to 64 characters of letters, digits and
/// `.`, `_`, `-`, `@`. Anything wider would leak into room names (`user:<id>`) and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// Validates a user id; `field` names where it came from for the error.
    pub fn parse(raw: &str, field: &'static str) -> Result<Self, Invalid> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Invalid::new(
                field,
                "must be 1 to 64 characters of letters, digits, '.', '_', '-' and '@'",
            ))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_are_slugs() {
        assert!(ProjectId::parse("p1").is_ok());
        assert!(ProjectId::parse("web-app_2").is_ok());
        assert!(ProjectId::parse("").is_err());
        assert!(ProjectId::parse("-x").is_err());
        assert!(ProjectId::parse("Upper").is_err());
        assert!(ProjectId::parse("a:b").is_err());
        assert!(ProjectId::parse(&"a".repeat(65)).is_err());
        assert_eq!(ProjectId::parse("p1").unwrap().room(), "project:p1");
    }

    #[test]
    fn user_ids_are_bounded() {
        assert!(UserId::parse("alice@example.com", "user").is_ok());
        assert!(UserId::parse("", "user").is_err());
        assert!(UserId::parse("a b", "user").is_err());
        assert_eq!(
            UserId::parse("a:b", "assignee").unwrap_err().field,
            "assignee"
        );
    }
}
