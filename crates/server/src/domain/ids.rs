//! Identifiers that come from outside (URLs, bodies, tokens) and end up in room names and SQL.

use super::{rules, Invalid};
use std::fmt;

/// A project slug: `[a-z0-9][a-z0-9_-]{0,63}`, see [`rules::PROJECT_ID`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(String);

impl ProjectId {
    /// The built-in project that receives tasks created without a project.
    pub const DEFAULT: &'static str = "default";

    /// Validates a slug ([`rules::PROJECT_ID`]).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        rules::PROJECT_ID.check(raw, "project_id")?;
        Ok(Self(raw.to_owned()))
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
/// `.`, `_`, `-`, `@`, see [`rules::USER_ID`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// Validates a user id ([`rules::USER_ID`]); `field` names where it came from for the error.
    pub fn parse(raw: &str, field: &'static str) -> Result<Self, Invalid> {
        rules::USER_ID.check(raw, field)?;
        Ok(Self(raw.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user's room, `user:<id>`: where everything addressed to the user is logged.
    pub fn room(&self) -> String {
        format!("user:{self}")
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
