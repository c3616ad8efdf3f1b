//! The binary with TLS configured: SIGHUP reloads the certificate of the running server at once
//! (the file watch is set an hour apart here, so nothing else can), so a renewal by certbot's
//! deploy hook or an ACME client needs no restart; and the links it prints are `https://`. The
//! library tests (crates/server/tests/listener/tls.rs) cover the reload on a file change and an
//! open connection living through it.

mod binary;
#[path = "../crates/server/tests/common/certs.rs"]
mod certs;

use binary::start_with;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ends the server even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The certificate a new TLS connection to `addr` is shown, trusting `ca`.
async fn presented(addr: &str, tls: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("the handshake succeeds against the test CA");
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new();
    let first = ca.leaf("first");
    let (cert, key) = first.write(dir.path());
    let database = format!("sqlite://{}", dir.path().join("tls.db").display());
    let (child, addr) = start_with(
        &database,
        &[
            ("TASKFLOW_TLS_CERT", cert.to_str().unwrap()),
            ("TASKFLOW_TLS_KEY", key.to_str().unwrap()),
            ("TASKFLOW_TLS_WATCH_INTERVAL_MS", "3600000"),
        ],
    );
    let server = KillOnDrop(child);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der())).unwrap();
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    assert_eq!(presented(&addr, &tls).await, first.der);

    // The renewal lands on disk; without the signal the server keeps the first certificate.
    let second = ca.leaf("second");
    second.write(dir.path());
    assert_eq!(presented(&addr, &tls).await, first.der);

    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = presented(&addr, &tls).await;
        if now == second.der {
            break;
        }
        assert_eq!(
            now, first.der,
            "only the two certificates are ever presented"
        );
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not bring the new certificate within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut server = server;
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server is still running after SIGHUP (its default action would end it)"
    );
}

#[test]
fn taskflow_token_prints_an_https_link_when_tls_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("token.db").display());
    let run = |tls: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_taskflow"));
        command.args([
            "token",
            "--user",
            "alice",
            "--database",
            &database,
            "--listen",
            "127.0.0.1:3443",
        ]);
        if tls {
            command
                .env("TASKFLOW_TLS_CERT", dir.path().join("cert.pem"))
                .env("TASKFLOW_TLS_KEY", dir.path().join("key.pem"));
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        assert_eq!(
            token.split('.').count(),
            3,
            "stdout is the JWT alone: {token}"
        );
        (token, String::from_utf8(output.stderr).unwrap())
    };
    let (token, stderr) = run(true);
    assert!(
        stderr.contains(&format!(
            "Board for alice: https://localhost:3443/#token={token}"
        )),
        "{stderr}"
    );
    let (token, stderr) = run(false);
    assert!(
        stderr.contains(&format!(
            "Board for alice: http://localhost:3443/#token={token}"
        )),
        "{stderr}"
    );
}
