//! HTTPS, WSS and SSE over TLS with a certificate authority made here (rcgen), and the
//! certificate's reload without a restart.

use crate::common::certs::{Ca, Leaf};
use crate::common::python::PythonClient;
use crate::common::{Backend, TestApp, ADMIN_TOKEN};
use crate::raw::BOUND;
use futures::StreamExt;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A TLS server with `leaf`, files in `dir`, and clients that trust `ca`.
struct TlsApp {
    app: TestApp,
    cert_path: PathBuf,
    key_path: PathBuf,
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl TlsApp {
    async fn spawn(ca: &Ca, leaf: &Leaf) -> TlsApp {
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, &leaf.cert_pem).unwrap();
        std::fs::write(&key_path, &leaf.key_pem).unwrap();
        let app = TestApp::spawn_with(Backend::Sqlite, |config| {
            config.tls_cert = Some(cert_path.clone());
            config.tls_key = Some(key_path.clone());
            config.tls_watch_interval_ms = 50;
        })
        .await;
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
            .https_only(true)
            .build()
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.der())).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsApp {
            app,
            cert_path,
            key_path,
            http,
            tls: Arc::new(tls),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.app.addr)
    }

    /// Creates a task over HTTPS.
    async fn create_task(&self, title: &str, project: Option<&str>) -> Value {
        let mut body = json!({ "title": title });
        if let Some(project) = project {
            body["project_id"] = json!(project);
        }
        let res = self
            .http
            .post(self.url("/tasks"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        res.json().await.unwrap()
    }

    /// The certificate a new TLS handshake presents.
    async fn presented_certificate(&self) -> Vec<u8> {
        let tcp = tokio::net::TcpStream::connect(self.app.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .expect("the handshake succeeds against the test CA");
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    /// A WebSocket over TLS, past its hello frame.
    async fn wss(
        &self,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let mut request = format!("wss://{}/ws/tasks", self.app.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            true,
            Some(tokio_tungstenite::Connector::Rustls(self.tls.clone())),
        )
        .await
        .expect("the WSS handshake succeeds");
        let hello = next_json(&mut ws).await;
        assert_eq!(hello["type"], "hello", "{hello}");
        ws
    }

    async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let message = tokio::time::timeout(BOUND, ws.next())
            .await
            .expect("a frame within the bound")
            .expect("the connection is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The next `task.created` (or any task event) naming `title`.
async fn event_for(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    title: &str,
) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame.to_string().contains(title) {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_over_https_with_hsts_and_no_plain_http_on_the_tls_port() {
    let ca = Ca::new();
    let app = TlsApp::spawn(&ca, &ca.leaf("server")).await;
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let task = app.create_task("over https", None).await;
    let res = app
        .http
        .get(app.url(&format!("/tasks/{}", task["id"].as_str().unwrap())))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A plain HTTP request on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", app.app.addr))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP must not be served on the TLS port: {plain:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_wss_receives_events() {
    let ca = Ca::new();
    let app = TlsApp::spawn(&ca, &ca.leaf("server")).await;
    let mut ws = app.wss().await;
    app.create_task("wss event", None).await;
    let event = event_for(&mut ws, "wss event").await;
    assert_eq!(event["type"], "event", "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_over_https_receives_events() {
    let ca = Ca::new();
    let app = TlsApp::spawn(&ca, &ca.leaf("server")).await;
    let res = app
        .http
        .post(app.url("/projects"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "id": "p", "name": "p", "members": ["alice"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = app
        .http
        .get(app.url("/events?rooms=project:p"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    app.create_task("sse over tls", Some("p")).await;
    let mut seen = String::new();
    let deadline = Instant::now() + BOUND;
    while !seen.contains("sse over tls") {
        let chunk = tokio::time::timeout_at(deadline.into(), body.next())
            .await
            .expect("the event within the bound")
            .expect("the stream is open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("data:"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_serves_new_connections_while_an_open_websocket_keeps_receiving() {
    let ca = Ca::new();
    let first = ca.leaf("first");
    let app = TlsApp::spawn(&ca, &first).await;
    assert_eq!(app.presented_certificate().await, first.der);
    let mut ws = app.wss().await;

    // A renewal: new files put in place by rename, as certbot's symlink swap does.
    let second = ca.leaf("second");
    let tmp_cert = app.cert_path.with_extension("new");
    let tmp_key = app.key_path.with_extension("new");
    std::fs::write(&tmp_key, &second.key_pem).unwrap();
    std::fs::write(&tmp_cert, &second.cert_pem).unwrap();
    std::fs::rename(&tmp_key, &app.key_path).unwrap();
    std::fs::rename(&tmp_cert, &app.cert_path).unwrap();
    let start = Instant::now();
    while app.presented_certificate().await != second.der {
        assert!(
            start.elapsed() < BOUND,
            "the new certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The WebSocket opened under the first certificate still gets events.
    app.create_task("after the reload", None).await;
    let event = event_for(&mut ws, "after the reload").await;
    assert_eq!(event["type"], "event");

    // A broken renewal is refused: the second certificate stays.
    let errors_before = reload_errors(&app.metrics().await);
    std::fs::write(&app.cert_path, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let start = Instant::now();
    while reload_errors(&app.metrics().await) <= errors_before {
        assert!(start.elapsed() < BOUND, "the bad PEM was never tried");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.presented_certificate().await, second.der);
    app.create_task("after the failed reload", None).await;
    event_for(&mut ws, "after the failed reload").await;
}

/// `tls_certificate_reloads_total{result="error"}` (process-wide).
fn reload_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("tls_certificate_reloads_total{result=\"error\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `taskflow client`'s output, as it is written.
struct Output(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_follows_a_wss_server_trusting_a_private_ca() {
    let ca = Ca::new();
    let app = TlsApp::spawn(&ca, &ca.leaf("server")).await;
    let ca_path = ca.write(app.cert_path.parent().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = taskflow_client::ClientOptions {
        url: format!("wss://{}/ws/tasks", app.app.addr),
        ca_cert: Some(ca_path),
        token: ADMIN_TOKEN.into(),
        rooms: Vec::new(),
        json: true,
        backoff_base: std::time::Duration::from_millis(50),
        backoff_cap: std::time::Duration::from_millis(200),
        compression: true,
    };
    let client = tokio::spawn(taskflow_client::run(options, Output(tx), async {
        let _ = stop_rx.await;
    }));
    let mut seen = String::new();
    let deadline = Instant::now() + BOUND;
    // The answer to its first subscribe first (printed, as every frame in JSON mode), then the
    // event.
    while !seen.contains(r#""id":"sub-0","ok":true"#) {
        let chunk = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .expect("the client connects")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    app.create_task("for the terminal client", None).await;
    while !seen.contains("for the terminal client") {
        let chunk = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .expect("the event arrives")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let _ = stop_tx.send(());
    client.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_websockets_client_follows_over_wss_trusting_the_ca() {
    let ca = Ca::new();
    let app = TlsApp::spawn(&ca, &ca.leaf("server")).await;
    let ca_path = ca.write(app.cert_path.parent().unwrap());
    let url = format!("wss://{}/ws/tasks", app.app.addr);
    let mut python = PythonClient::subscribed(&url, ADMIN_TOKEN, Some(&ca_path)).await;
    let task = app.create_task("from rust to python over TLS", None).await;
    let got = python.event().await;
    assert_eq!(got["event"], "task.created");
    assert_eq!(got["data"]["id"], task["id"]);
    python.closed_normally().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_http_port_redirects_to_https() {
    let ca = Ca::new();
    let leaf = ca.leaf("server");
    // A free port for the redirect listener.
    let redirect_from = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, &leaf.cert_pem).unwrap();
    std::fs::write(&key_path, &leaf.key_pem).unwrap();
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.tls_cert = Some(cert_path);
        config.tls_key = Some(key_path);
        config.redirect_http_from = Some(redirect_from);
    })
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = Instant::now();
    let res = loop {
        // The redirect listener is bound inside `serve`, which the test does not wait for.
        match client
            .get(format!("http://{redirect_from}/tasks?limit=1"))
            .send()
            .await
        {
            Ok(res) => break res,
            Err(err) => {
                assert!(
                    start.elapsed() < BOUND,
                    "the redirect listener never answered: {err}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(res.status(), 308);
    assert_eq!(
        res.headers()["location"],
        format!("https://127.0.0.1:{}/tasks?limit=1", app.addr.port()).as_str()
    );
}
