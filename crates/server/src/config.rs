//! Typed configuration, layered: built-in defaults, then an optional TOML file, then `TASKFLOW_*`
//! environment variables, then command-line flags (each layer overrides the one before).

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

/// A feature turned `on` or `off` (so the TOML and the environment say what they mean, rather
/// than `true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// Off.
    #[default]
    Off,
    /// On.
    On,
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
    /// Database connections this node may open, readers and writers together. PostgreSQL's
    /// default `max_connections` (100, 3 reserved) fits ten nodes at the default 9; SQLite has
    /// one writer and the rest read.
    pub database_max_connections: u32,
    /// Of those, the writers' (PostgreSQL; SQLite always has one writer connection).
    pub database_write_connections: u32,
    /// How long a query may wait for a PostgreSQL connection before it fails, in seconds.
    pub database_acquire_timeout_secs: u64,
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
    /// The largest import that logs a `task.created` per task (`?events=auto`); a larger one logs
    /// one `tasks.imported` per room, after which subscribers reload. Also the most lines
    /// `?events=tasks` accepts.
    pub import_task_events_max: u64,
    /// Deadline for a REST request (exports and imports excepted), in seconds.
    pub request_timeout_secs: u64,
    /// How long a connection may take to deliver a request's headers, in seconds: from accept
    /// (the TLS handshake included) for the first request, from its first byte for a later one.
    /// Past it the connection is dropped (a slowloris peer).
    pub header_timeout_secs: u64,
    /// How long an idle keep-alive connection is kept open between requests, in seconds.
    pub keepalive_timeout_secs: u64,
    /// How long a response (an SSE stream or a long poll included) may wait for its client to
    /// take a single byte, in seconds: past it the connection is dropped, so a client that stops
    /// reading cannot hold a response, its buffers and its task forever (nginx's
    /// `send_timeout`). Not for WebSockets, whose slow consumers have their own bounds. 0: none.
    pub send_timeout_secs: u64,
    /// The slowest average rate a request body may arrive at, in bytes per second, after a
    /// grace of `header_timeout_secs` (a body of n bytes has `header_timeout_secs + n / rate`
    /// seconds); a slower one is cut off. Applies to imports too. 0: no minimum.
    pub body_min_bytes_per_sec: u64,
    /// Connections one client address may hold at once (IPv6: one /64), counted at accept,
    /// before authentication; the next is answered 503. 0 (the default): no cap, as behind a
    /// load balancer every client has the balancer's address.
    pub max_connections_per_ip: usize,
    /// Proxies (IP addresses or CIDR blocks) whose `X-Forwarded-For` names the client: their own
    /// connections are not capped, the clients they name are, per request. Comma-separated in
    /// the environment.
    #[serde(deserialize_with = "comma_list")]
    pub trusted_proxies: Vec<String>,
    /// A PEM certificate chain (leaf first): with `tls_key`, the port speaks HTTPS and WSS
    /// instead of HTTP and WS.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for a change (a renewal), in milliseconds;
    /// SIGHUP reloads at once.
    pub tls_watch_interval_ms: u64,
    /// With TLS: a plain-HTTP address (e.g. `0.0.0.0:80`) that answers every request with a
    /// redirect to HTTPS. Unset: none.
    pub redirect_http_from: Option<SocketAddr>,
    /// `Strict-Transport-Security: max-age=` on every response over TLS, in seconds; 0: none.
    pub hsts_max_age_secs: u64,
    /// Requests per second each caller may make on average.
    pub rate_limit_per_sec: u32,
    /// How many requests a caller may make in a burst above the average.
    pub rate_limit_burst: u32,
    /// How long graceful shutdown waits for in-flight requests and for WebSocket clients to
    /// take their 1001 close, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Origins allowed to open WebSocket connections (besides the server's own origin and
    /// clients that send no `Origin`, i.e. non-browsers). Comma-separated in the environment.
    #[serde(deserialize_with = "comma_list")]
    pub ws_allowed_origins: Vec<String>,
    /// How often the server pings each WebSocket client, in milliseconds.
    pub ws_heartbeat_interval_ms: u64,
    /// How long a pong may take before the ping counts as missed, in milliseconds.
    pub ws_pong_timeout_ms: u64,
    /// Consecutive missed pongs after which the peer is considered dead.
    pub ws_max_missed_pongs: u32,
    /// Largest incoming WebSocket message, in bytes (close 1009 beyond).
    pub ws_max_message_bytes: usize,
    /// How much one read asks the socket for, in bytes (at most 8 KiB); nothing is held between
    /// reads, so idle connections hold no read buffer.
    pub ws_read_buffer_bytes: usize,
    /// `permessage-deflate` (RFC 7692) on `/ws/tasks`: `on` accepts it from clients that offer
    /// it (browsers always do) and sends them each event compressed once for all of them;
    /// `off` (the default) answers every client with plain frames. See docs/protocol.md.
    pub ws_compression: Switch,
    /// Event frames shorter than this go uncompressed even to clients that negotiated it.
    pub ws_compression_min_bytes: usize,
    /// The zlib compression level, 0 (store) to 9 (smallest); each event is compressed once.
    pub ws_compression_level: u32,
    /// Frames that may wait in one connection's send queue before it is a slow consumer.
    pub ws_queue_messages: usize,
    /// Bytes that may wait in one connection's send queue before it is a slow consumer.
    pub ws_queue_bytes: usize,
    /// Subscriptions per connection.
    pub ws_max_subscriptions: usize,
    /// Worker threads for connection tasks on a runtime of their own, so that a large
    /// broadcast's writes do not hold up the requests that publish (by default one per core the
    /// process may use); 0: connection tasks share the request runtime. Either way, writes wait
    /// while deliveries lag (`hub::lag`).
    pub ws_threads: usize,
    /// Commands per second per connection (error replies beyond, close 1008 if sustained).
    pub ws_commands_per_sec: u32,
    /// Burst of commands above that rate.
    pub ws_commands_burst: u32,
    /// WebSocket connections in all (503 at the handshake beyond).
    pub ws_max_connections: usize,
    /// WebSocket connections per user (503 at the handshake beyond).
    pub ws_max_connections_per_user: usize,
    /// Handshakes (WebSocket, SSE, long poll) served at once, from the token check until the
    /// session exists. Under a reconnect storm the rest wait in a queue (`transport::gate`).
    pub ws_handshake_concurrency: usize,
    /// Handshakes that may wait for a place; beyond, the answer is 503 with `Retry-After` at
    /// once.
    pub ws_handshake_queue: usize,
    /// How long a handshake may wait for a place before it is answered 503, in milliseconds.
    pub ws_handshake_wait_ms: u64,
    /// Users whose project memberships a node keeps in memory, so that handshakes and
    /// subscriptions make no query (`hub::memberships`).
    pub membership_cache_users: usize,
    /// How long a cached user's memberships are trusted before they are read again, in seconds
    /// (changes through the API apply at once; this bounds changes made behind its back).
    pub membership_cache_ttl_secs: u64,
    /// Recent events each active room keeps in memory, so a resume whose gap is recent reads
    /// no log (`hub::dispatch::tail`).
    pub replay_tail_events: usize,
    /// Bytes each room's tail keeps at most.
    pub replay_tail_bytes: usize,
    /// Bytes all the rooms' tails of a node keep at most.
    pub replay_tail_total_bytes: usize,
    /// On a single node, how long a room nobody receives keeps its tail, in seconds: the clients
    /// a network blip disconnected resume from memory when they come back.
    pub replay_tail_retain_secs: u64,
    /// Replays that read the log at once (resumes from older than the tail); the others wait
    /// their turn instead of exhausting the database pool.
    pub replay_concurrency: usize,
    /// The `Retry-After` of a 503 that says "not now" (storm, connection limit, shutdown): the
    /// server sends a random value between this and twice this, in seconds, so refused clients
    /// come back spread out.
    pub ws_retry_after_secs: u64,
    /// How long an event that arrived ahead of a gap waits before the gap is read from the log,
    /// in milliseconds.
    pub gap_fill_hold_ms: u64,
    /// Events kept per room: older ones are compacted away (a resume from before them answers
    /// `recovered: false`).
    pub retention_max_events: i64,
    /// How long events are kept, in seconds.
    pub retention_max_age_secs: i64,
    /// How often compaction runs, in seconds.
    pub retention_interval_secs: u64,
    /// How long a command id is remembered, so a resent chat message is not posted twice, in
    /// seconds: the session resume window.
    pub resume_window_secs: i64,
    /// Transports the server refuses (`websocket`, `sse`, `poll`): for deployments behind
    /// proxies known to break one, and to test client fallbacks. Comma-separated in the
    /// environment.
    #[serde(deserialize_with = "comma_list")]
    pub disabled_transports: Vec<String>,
    /// How long a long-poll request waits for events before answering empty, in seconds.
    pub poll_timeout_secs: u64,
    /// How often an SSE stream sends a keep-alive comment, in seconds.
    pub sse_keepalive_secs: u64,
    /// Collaborative documents (`/ws/docs`): largest incoming message, in bytes (close 1009).
    pub docs_max_message_bytes: usize,
    /// Most bytes one document may take in the store, its snapshot and the updates since
    /// (close 4413 for the update that would pass it).
    pub docs_max_bytes: usize,
    /// Messages per second one document connection may send on average (close 1008 beyond).
    pub docs_messages_per_sec: u32,
    /// Messages a document connection may send in a burst.
    pub docs_messages_burst: u32,
    /// How long a description waits without an edit before it is written to its task (one
    /// `task.updated`), in milliseconds; never more than twice this behind while edits go on.
    pub docs_settle_ms: u64,
    /// How long a document nobody edits stays in memory, in seconds.
    pub docs_idle_unload_secs: u64,
    /// Stored updates after which a document is compacted into one snapshot.
    pub docs_compact_every: u32,
    /// How often the server pushes a `stats` frame to the admin's `system` room, in
    /// milliseconds (at least 100). Nothing is computed while nobody follows the room.
    pub dashboard_interval_ms: u64,
    /// `local` (the default: one node, events go straight to this process's hub) or
    /// `redis://host:port/` to join a cluster: nodes sharing one PostgreSQL store fan events out
    /// to each other through Redis pub/sub. See docs/operations.md.
    pub broker: String,
    /// This node's id in the cluster. Unset: generated at start (a UUID), so a restarted node
    /// is a new node and its predecessor's presence entries simply expire.
    pub node_id: Option<String>,
    /// Prefix of every Redis key and channel this cluster uses, so several clusters (or test
    /// runs) can share one Redis.
    pub broker_prefix: String,
    /// How often each node compares the rooms it serves with the store's last offsets, in
    /// milliseconds: bounds the delay of an event whose broker message was lost and that no later
    /// event of its room reveals ("tail loss").
    pub broker_check_interval_ms: u64,
    /// How long a node's presence entries outlive its last heartbeat, in seconds: a node that
    /// dies leaves no members behind for longer than this.
    pub presence_ttl_secs: u64,
    /// Bind the listening socket with SO_REUSEPORT, so several nodes on one machine share one
    /// port and the kernel spreads connections over them.
    pub reuse_port: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            database: "sqlite://taskflow.db".to_owned(),
            database_max_connections: 9,
            database_write_connections: 3,
            database_acquire_timeout_secs: 30,
            admin_token: None,
            jwt_secret: None,
            token_ttl_secs: 24 * 3600,
            cors_origins: Vec::new(),
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
            max_body_bytes: 1024 * 1024,
            max_import_bytes: 1024 * 1024 * 1024,
            import_task_events_max: 1000,
            request_timeout_secs: 30,
            header_timeout_secs: 10,
            keepalive_timeout_secs: 75,
            send_timeout_secs: 60,
            body_min_bytes_per_sec: 1024,
            max_connections_per_ip: 0,
            trusted_proxies: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_watch_interval_ms: 10_000,
            redirect_http_from: None,
            hsts_max_age_secs: 365 * 24 * 3600,
            rate_limit_per_sec: 200,
            rate_limit_burst: 400,
            shutdown_timeout_secs: 10,
            ws_allowed_origins: Vec::new(),
            ws_heartbeat_interval_ms: 30_000,
            ws_pong_timeout_ms: 5_000,
            ws_max_missed_pongs: 3,
            ws_max_message_bytes: 64 * 1024,
            ws_read_buffer_bytes: 256,
            ws_compression: Switch::Off,
            ws_compression_min_bytes: 128,
            ws_compression_level: 6,
            ws_queue_messages: 1024,
            ws_queue_bytes: 4 * 1024 * 1024,
            ws_max_subscriptions: 100,
            ws_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ws_commands_per_sec: 20,
            ws_commands_burst: 50,
            ws_max_connections: 100_000,
            ws_max_connections_per_user: 100,
            ws_handshake_concurrency: 64,
            ws_handshake_queue: 4096,
            ws_handshake_wait_ms: 2_000,
            ws_retry_after_secs: 2,
            replay_tail_events: 1024,
            replay_tail_bytes: 1 << 20,
            replay_tail_total_bytes: 256 << 20,
            replay_tail_retain_secs: 60,
            replay_concurrency: 4,
            membership_cache_users: 100_000,
            membership_cache_ttl_secs: 600,
            gap_fill_hold_ms: 50,
            retention_max_events: 100_000,
            retention_max_age_secs: 30 * 24 * 3600,
            retention_interval_secs: 60,
            resume_window_secs: 600,
            disabled_transports: Vec::new(),
            poll_timeout_secs: 25,
            sse_keepalive_secs: 15,
            docs_max_message_bytes: 256 * 1024,
            docs_max_bytes: 4 * 1024 * 1024,
            docs_messages_per_sec: 100,
            docs_messages_burst: 300,
            docs_settle_ms: 500,
            docs_idle_unload_secs: 30,
            docs_compact_every: 200,
            dashboard_interval_ms: 1_000,
            broker: "local".to_owned(),
            node_id: None,
            broker_prefix: "taskflow".to_owned(),
            broker_check_interval_ms: 1_000,
            presence_ttl_secs: 15,
            reuse_port: false,
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
    /// `--broker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// `--node-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// `--reuse-port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse_port: Option<bool>,
    /// `--tls-cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Config {
    /// The rooms' tails and the replays this configuration allows.
    pub fn replay_limits(&self) -> crate::hub::dispatch::ReplayLimits {
        crate::hub::dispatch::ReplayLimits {
            // Never more than the log keeps: a resume is recovered or not wherever it lands.
            tail_events: self
                .replay_tail_events
                .min(usize::try_from(self.retention_max_events).unwrap_or(0)),
            max_age: std::time::Duration::from_secs(
                u64::try_from(self.retention_max_age_secs).unwrap_or(0),
            ),
            tail_bytes: self.replay_tail_bytes,
            tail_total_bytes: self.replay_tail_total_bytes,
            concurrency: self.replay_concurrency.max(1),
            retain: std::time::Duration::from_secs(self.replay_tail_retain_secs),
        }
    }

    /// Compressed broadcast, if `ws_compression` is on.
    pub fn compression(&self) -> Option<crate::hub::deflated::CompressionLimits> {
        (self.ws_compression == Switch::On).then(|| crate::hub::deflated::CompressionLimits {
            min_bytes: self.ws_compression_min_bytes,
            level: self.ws_compression_level.min(9),
        })
    }

    /// What bounds the collaborative documents (`crate::collab`).
    pub fn doc_limits(&self) -> crate::collab::DocLimits {
        crate::collab::DocLimits {
            max_message_bytes: self.docs_max_message_bytes,
            max_doc_bytes: self.docs_max_bytes,
            settle: std::time::Duration::from_millis(self.docs_settle_ms.max(1)),
            idle_unload: std::time::Duration::from_secs(self.docs_idle_unload_secs),
            compact_every: self.docs_compact_every.max(1),
            ..Default::default()
        }
    }

    /// The database pools' sizes this configuration asks for.
    pub fn pool_sizes(&self) -> crate::store::PoolSizes {
        crate::store::PoolSizes {
            max: self.database_max_connections.max(1),
            writers: self.database_write_connections.max(1),
            acquire_timeout: std::time::Duration::from_secs(
                self.database_acquire_timeout_secs.max(1),
            ),
        }
    }
}

impl Config {
    /// Loads defaults, then `file` if given, then the environment, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only the variables that name a setting: others share the prefix (TASKFLOW_TOKEN for
        // the client, TASKFLOW_CONFIG for the file, tools' own) and are not typos to refuse.
        let known: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        figment
            .merge(
                Env::prefixed("TASKFLOW_")
                    .filter(move |key| known.iter().any(|k| k.eq_ignore_ascii_case(key.as_str()))),
            )
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
