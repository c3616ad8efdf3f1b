//! Test support shared by the test binaries: fresh databases on both backends, and a server on
//! an ephemeral port.
#![allow(dead_code, unreachable_pub)]

pub mod certs;
pub mod contract;
pub mod python;

use std::time::Duration;
use taskflow_server::config::{Config, Secret};
use taskflow_server::store::Store;
use taskflow_server::Server;
use tokio::net::TcpListener;

/// The admin token every test server is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test: an SQLite file in a temporary directory, or a new
/// PostgreSQL database, dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("TASKFLOW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("taskflow.db").display());
                Self {
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!("taskflow_test_{}", uuid::Uuid::now_v7().simple());
                let admin = postgres_admin_url();
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL at {admin} is needed for the postgres tests: {e}")
                    });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let base = admin
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_owned())
                    .expect("url has a path");
                Self {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
            let admin = postgres_admin_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut conn) =
                        <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                    {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running server on `127.0.0.1:0`, a client for it, and a handle on its store.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// Checks every answer against `/openapi.json` ([`contract`]).
    pub client: reqwest_middleware::ClientWithMiddleware,
    pub store: Store,
    /// The server's hub, to look at (or stage) its state.
    pub hub: taskflow_server::hub::Hub,
    /// The server's shared state (dispatcher, rate limiter), to look at.
    pub state: taskflow_server::state::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with a configuration adjusted by `tweak`.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new(backend).await;
        let mut config = Config {
            database: db.url.clone(),
            admin_token: Some(Secret::new(ADMIN_TOKEN)),
            jwt_secret: Some(Secret::new("test-jwt-secret")),
            rate_limit_per_sec: 100_000,
            rate_limit_burst: 100_000,
            ws_max_connections_per_user: 10_000,
            ..Config::default()
        };
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = Server::open(config).await.expect("server opens");
        let store = server.state().store().clone();
        let hub = server.state().hub().clone();
        let state = server.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(server.serve(listener, async {
            let _ = rx.await;
        }));
        let client = reqwest_middleware::ClientBuilder::new(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        )
        .with(contract::Conformance)
        .build();
        Self {
            addr,
            client,
            store,
            hub,
            state,
            shutdown: Some(tx),
            server: Some(handle),
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The Prometheus text of `/metrics` (process-wide: every test in this binary adds to it).
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A request as the admin.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest_middleware::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// A request with `token`.
    pub fn with(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest_middleware::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// Creates a task as the admin and returns it; panics unless 201.
    pub async fn create_task(&self, body: serde_json::Value) -> serde_json::Value {
        let res = self
            .admin(reqwest::Method::POST, "/tasks")
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = res.status();
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(status, 201, "create failed: {body}");
        body
    }

    /// Creates a project as the admin.
    pub async fn create_project(&self, id: &str, members: &[&str]) -> serde_json::Value {
        let res = self
            .admin(reqwest::Method::POST, "/projects")
            .json(&serde_json::json!({ "id": id, "name": id, "members": members }))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 201);
        res.json().await.expect("json")
    }

    /// Mints a member token for `user`.
    pub async fn token_for(&self, user: &str) -> String {
        let res = self
            .admin(reqwest::Method::POST, "/auth/tokens")
            .json(&serde_json::json!({ "user": user }))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 201);
        let body: serde_json::Value = res.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown_now().await;
    }

    async fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.server.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.server.take() {
            handle.abort();
        }
    }
}

/// Defines each listed `async fn name(app: TestApp)` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestApp::spawn($crate::common::Backend::Sqlite).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestApp::spawn($crate::common::Backend::Postgres).await).await;
                }
            )*
        }
    };
}
