//! Typed configuration, layered: built-in defaults, then an optional TOML file, then `TASKFLOW_*`
//! environment variables, then command-line flags (each layer overrides the one before).

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// A secret value: usable, but never printed by `Debug` (configs get logged).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Everything the server can be told. Field names are the TOML keys; the environment variable
/// is the upper-cased name with a `TASKFLOW_` prefix (`listen` → `TASKFLOW_LISTEN`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `sqlite://PATH` (the default, a file created on first start) or `postgres://...`.
    pub database: String,
    /// The admin token. Unset: one is generated on first start, printed once, and only its hash
    /// is stored in the database.
    pub admin_token: Option<Secret>,
    /// The HS256 key that signs user tokens. Unset: generated on first start and stored in the
    /// database, so restarts and every node of a cluster agree.
    pub jwt_secret: Option<Secret>,
    /// Lifetime of tokens minted without an explicit one, in seconds.
    pub token_ttl_secs: u64,
    /// Origins allowed by CORS (`*` for any); empty allows none. Comma-separated in the
    /// environment.
    #[serde(deserialize_with = "comma_list")]
    pub cors_origins: Vec<String>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter, as for `RUST_LOG` (e.g. `info,taskflow_server=debug`).
    pub log_level: String,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest import body, in bytes.
    pub max_import_bytes: usize,
    /// Deadline for a REST request (exports and imports excepted), in seconds.
    pub request_timeout_secs: u64,
    /// Requests per second each caller may make on average.
    pub rate_limit_per_sec: u32,
    /// How many requests a caller may make in a burst above the average.
    pub rate_limit_burst: u32,
    /// How long graceful shutdown waits for in-flight requests, in seconds.
    pub shutdown_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            database: "sqlite://taskflow.db".to_owned(),
            admin_token: None,
            jwt_secret: None,
            token_ttl_secs: 24 * 3600,
            cors_origins: Vec::new(),
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
            max_body_bytes: 1024 * 1024,
            max_import_bytes: 1024 * 1024 * 1024,
            request_timeout_secs: 30,
            rate_limit_per_sec: 200,
            rate_limit_burst: 400,
            shutdown_timeout_secs: 10,
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers in force.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--database`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `--log-format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Loads defaults, then `file` if given, then the environment, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(Env::prefixed("TASKFLOW_").ignore(&["test_database", "test_postgres_url"]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)
    }
}

/// Accepts a TOML list, or a comma-separated string as environment variables give.
fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature is not ours
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let config = Config {
            admin_token: Some(Secret::new("hunter2")),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "t.toml",
                "database = \"sqlite://file.db\"\nrate_limit_per_sec = 5\n",
            )?;
            jail.set_env("TASKFLOW_RATE_LIMIT_PER_SEC", "7");
            jail.set_env(
                "TASKFLOW_CORS_ORIGINS",
                "http://a.example, http://b.example",
            );
            let overrides = Overrides {
                listen: Some("127.0.0.1:4000".parse().unwrap()),
                ..Overrides::default()
            };
            let config = Config::load(Some(Path::new("t.toml")), &overrides).unwrap();
            assert_eq!(config.database, "sqlite://file.db", "file beats default");
            assert_eq!(config.rate_limit_per_sec, 7, "environment beats file");
            assert_eq!(config.listen.port(), 4000, "flag beats everything");
            assert_eq!(
                config.cors_origins,
                ["http://a.example", "http://b.example"]
            );
            Ok(())
        });
    }
}
