//! RFC 6455 at the byte level: the opening handshake's refusals and the closing handshake, read
//! as the bytes the server puts on the wire, from a client that writes its frames by hand
//! (no WebSocket library between the test and the socket).

use crate::common::{Backend, TestApp, ADMIN_TOKEN};
use crate::ws::WAIT;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A client frame, masked as RFC 6455 §5.3 requires.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    taskflow_server::fuzzing::client_frame(first, payload, [0x0b, 0xad, 0xf0, 0x0d])
}

const TEXT: u8 = 0x81;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;
const PONG: u8 = 0x8a;

/// A close frame's payload: the code, then the reason.
fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    [&code.to_be_bytes()[..], reason].concat()
}

/// An HTTP answer read off the socket.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\n{}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A hand-driven WebSocket client on a raw TCP stream.
struct Raw {
    stream: TcpStream,
    /// Bytes read and not consumed yet.
    input: Vec<u8>,
}

impl Raw {
    async fn connect(app: &TestApp) -> Raw {
        Raw {
            stream: TcpStream::connect(app.addr).await.expect("connects"),
            input: Vec::new(),
        }
    }

    /// Sends `request` and reads the answer's head and (by Content-Length) body.
    async fn request(&mut self, request: &str) -> Answer {
        self.stream.write_all(request.as_bytes()).await.unwrap();
        let end = loop {
            if let Some(at) = self.input.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(self.fill().await > 0, "the server closed before answering");
        };
        let head = String::from_utf8(self.input[..end].to_vec()).expect("an ASCII head");
        self.input.drain(..end + 4);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        let length: usize = answer
            .header("content-length")
            .map_or(0, |v| v.parse().expect("a number"));
        while self.input.len() < length {
            assert!(self.fill().await > 0, "the body was cut short");
        }
        answer.body = self.input.drain(..length).collect();
        answer
    }

    /// A WebSocket connection as the admin, past the 101 and the hello frame.
    async fn open(app: &TestApp) -> Raw {
        let mut raw = Raw::connect(app).await;
        let answer = raw.request(&upgrade_request(app, &[])).await;
        assert_eq!(answer.status, 101, "{}", answer.head);
        let (first, hello) = raw.frame().await;
        assert_eq!(first, TEXT);
        let hello: Value = serde_json::from_slice(&hello).unwrap();
        assert_eq!(hello["type"], "hello");
        raw
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("the server answers in time")
            .unwrap_or(0);
        self.input.extend_from_slice(&chunk[..n]);
        n
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next server frame: its first byte (FIN, RSV, opcode) and its payload. Server frames
    /// are never masked.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.input.len() >= 2 {
                assert_eq!(self.input[1] & 0x80, 0, "a server frame must not be masked");
                let (len, head) = match self.input[1] & 0x7f {
                    126 if self.input.len() >= 4 => (
                        u16::from_be_bytes([self.input[2], self.input[3]]) as usize,
                        4,
                    ),
                    127 if self.input.len() >= 10 => (
                        u64::from_be_bytes(self.input[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.input.len() >= head + len {
                    let first = self.input[0];
                    let payload = self.input[head..head + len].to_vec();
                    self.input.drain(..head + len);
                    return (first, payload);
                }
            }
            assert!(
                self.fill().await > 0,
                "the stream ended mid-frame or before a frame: {:?}",
                self.input
            );
        }
    }

    /// Frames up to and including the server's close frame, which is returned as its raw bytes.
    async fn close_frame(&mut self) -> (Vec<(u8, Vec<u8>)>, Vec<u8>) {
        let mut before = Vec::new();
        loop {
            let (first, payload) = self.frame().await;
            if first & 0x0f == 0x8 {
                let mut raw = vec![first, payload.len() as u8];
                raw.extend_from_slice(&payload);
                return (before, raw);
            }
            before.push((first, payload));
        }
    }

    /// Reads until the server closes the TCP connection; what arrived before that.
    async fn until_eof(&mut self) -> Vec<u8> {
        while self.fill().await > 0 {}
        std::mem::take(&mut self.input)
    }
}

/// A valid opening handshake for `/ws/tasks` as the admin, with `replace` overriding (or, with
/// an empty value, removing) headers.
fn upgrade_request(app: &TestApp, replace: &[(&str, &str)]) -> String {
    upgrade_request_version(app, "HTTP/1.1", replace)
}

fn upgrade_request_version(app: &TestApp, version: &str, replace: &[(&str, &str)]) -> String {
    let host = app.addr.to_string();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let mut headers = vec![
        ("Host", host.as_str()),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Authorization", auth.as_str()),
    ];
    for (name, value) in replace {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if !value.is_empty() {
            headers.push((name, value));
        }
    }
    let mut request = format!("GET /ws/tasks {version}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

#[tokio::test]
async fn a_valid_handshake_gets_101_with_the_rfc_accept_key() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut raw = Raw::connect(&app).await;
    let answer = raw.request(&upgrade_request(&app, &[])).await;
    assert_eq!(answer.status, 101);
    // RFC 6455 §1.3's example key and answer.
    assert_eq!(
        answer.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(answer.header("upgrade"), Some("websocket"));
}

#[tokio::test]
async fn malformed_handshakes_are_refused_with_a_json_error() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers, u16, &str); 7] = [
        (&[("Sec-WebSocket-Key", "")], 400, "invalid_websocket_key"),
        (
            &[("Sec-WebSocket-Key", "c2hvcnQ=")],
            400,
            "invalid_websocket_key",
        ),
        (
            &[("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZSE=")],
            400,
            "invalid_websocket_key",
        ),
        (
            &[("Sec-WebSocket-Key", "not base64 at all!!!!!!!")],
            400,
            "invalid_websocket_key",
        ),
        (&[("Host", "")], 400, "missing_host"),
        (&[("Sec-WebSocket-Version", "8")], 426, "upgrade_required"),
        (&[("Upgrade", "")], 426, "upgrade_required"),
    ];
    for (replace, status, code) in cases {
        let mut raw = Raw::connect(&app).await;
        let answer = raw.request(&upgrade_request(&app, replace)).await;
        assert_eq!(answer.status, status, "{replace:?}: {}", answer.head);
        let body = answer.json();
        assert_eq!(body["error"]["code"], code, "{replace:?}: {body}");
        assert!(body["error"]["message"].is_string());
        if status == 426 {
            assert_eq!(answer.header("upgrade"), Some("websocket"));
        }
        if replace[0].0 == "Sec-WebSocket-Version" {
            assert_eq!(answer.header("sec-websocket-version"), Some("13"));
        }
    }
}

#[tokio::test]
async fn an_http_1_0_upgrade_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut raw = Raw::connect(&app).await;
    let answer = raw
        .request(&upgrade_request_version(&app, "HTTP/1.0", &[]))
        .await;
    assert_eq!(answer.status, 400, "{}", answer.head);
    assert_eq!(answer.json()["error"]["code"], "http_version_not_supported");
}

#[tokio::test]
async fn a_close_is_echoed_with_the_clients_code_then_the_server_closes_tcp() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (sent, echoed) in [
        (close_payload(1000, b""), vec![0x88, 2, 0x03, 0xe8]),
        (close_payload(4000, b"bye"), vec![0x88, 2, 0x0f, 0xa0]),
        (
            close_payload(1001, "déjà".as_bytes()),
            vec![0x88, 2, 0x03, 0xe9],
        ),
        (Vec::new(), vec![0x88, 0]),
    ] {
        let mut raw = Raw::open(&app).await;
        raw.send(&masked(CLOSE, &sent)).await;
        let (before, close) = raw.close_frame().await;
        assert!(before.is_empty(), "nothing but the close: {before:?}");
        assert_eq!(close, echoed, "the echo of {sent:?}");
        assert_eq!(raw.until_eof().await, b"", "nothing after the close frame");
    }
}

#[tokio::test]
async fn nothing_the_client_sends_after_its_close_is_processed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut raw = Raw::open(&app).await;
    // In one write: the close, then a ping and a command that would each get an answer.
    let command = br#"{"type":"subscribe","room":"project:default","id":1}"#;
    let bytes = [
        masked(CLOSE, &close_payload(1000, b"")),
        masked(PING, b"after"),
        masked(TEXT, command),
    ]
    .concat();
    raw.send(&bytes).await;
    let (before, close) = raw.close_frame().await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(close, [0x88, 2, 0x03, 0xe8]);
    assert_eq!(raw.until_eof().await, b"", "no pong, no reply");
    // Before the close, the same ping and command are answered: the test can tell.
    let mut raw = Raw::open(&app).await;
    raw.send(&[masked(PING, b"before"), masked(TEXT, command)].concat())
        .await;
    assert_eq!(raw.frame().await, (PONG, b"before".to_vec()));
    let (first, reply) = raw.frame().await;
    assert_eq!(first, TEXT);
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["type"], "reply");
    assert_eq!(reply["ok"], true);
}

#[tokio::test]
async fn close_frames_that_break_the_rfc_get_1002() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut payloads: Vec<Vec<u8>> = [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
        .iter()
        .map(|code| close_payload(*code, b""))
        .collect();
    payloads.push(vec![0x03]); // a one-byte payload
    payloads.push(close_payload(1000, b"\xff\xfe")); // a reason that is not UTF-8
    for payload in payloads {
        let mut raw = Raw::open(&app).await;
        raw.send(&masked(CLOSE, &payload)).await;
        let (_, close) = raw.close_frame().await;
        assert_eq!(
            &close[2..4],
            [0x03, 0xea],
            "1002 for {payload:?}: {close:?}"
        );
        raw.until_eof().await;
    }
}

#[tokio::test]
async fn a_close_in_the_middle_of_a_fragmented_message_is_echoed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut raw = Raw::open(&app).await;
    // A text message's first fragment (FIN clear), then the close.
    let bytes = [
        masked(0x01, br#"{"type":"#),
        masked(CLOSE, &close_payload(1000, b"")),
    ]
    .concat();
    raw.send(&bytes).await;
    let (before, close) = raw.close_frame().await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(close, [0x88, 2, 0x03, 0xe8]);
    raw.until_eof().await;
}

#[tokio::test]
async fn fragments_and_pings_interleave_and_are_answered() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut raw = Raw::open(&app).await;
    let bytes = [
        masked(0x01, br#"{"type":"subscribe","#),
        masked(PING, b"mid-message"),
        masked(0x00, br#""room":"project:default","#),
        masked(0x80, br#""id":7}"#),
    ]
    .concat();
    raw.send(&bytes).await;
    assert_eq!(raw.frame().await, (PONG, b"mid-message".to_vec()));
    let (first, reply) = raw.frame().await;
    assert_eq!(first, TEXT);
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(
        (reply["id"].clone(), reply["ok"].clone()),
        (7.into(), true.into())
    );
}

#[tokio::test]
async fn protocol_violations_close_with_their_code() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.ws_max_message_bytes = 1024).await;
    let cases: [(Vec<u8>, u16, &str); 6] = [
        (vec![TEXT, 2, b'h', b'i'], 1002, "an unmasked frame"),
        (
            masked(TEXT | 0x40, b"{}"),
            1002,
            "RSV1 without an extension",
        ),
        (masked(0x83, b"x"), 1002, "a reserved opcode"),
        (masked(PING, &[0; 126]), 1002, "a ping over 125 bytes"),
        (
            masked(TEXT, b"\xce\xba\xff"),
            1007,
            "text that is not UTF-8",
        ),
        (
            masked(TEXT, &[b' '; 1025]),
            1009,
            "a message over the limit",
        ),
    ];
    for (bytes, code, what) in cases {
        let mut raw = Raw::open(&app).await;
        raw.send(&bytes).await;
        let (_, close) = raw.close_frame().await;
        assert_eq!(
            u16::from_be_bytes([close[2], close[3]]),
            code,
            "{what}: {close:?}"
        );
        raw.until_eof().await;
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("ws_protocol_violations_total"),
        "violations are counted"
    );
}

#[tokio::test]
async fn a_server_close_waits_for_the_clients_answer_then_closes_tcp() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut raw = Raw::open(&app).await;
    // Shutdown closes every WebSocket with 1001.
    let stopping = tokio::spawn(app.stop());
    let (_, close) = raw.close_frame().await;
    assert_eq!(&close[..4], [0x88, close[1], 0x03, 0xe9], "{close:?}");
    assert!(close.len() <= 2 + 125);
    raw.send(&masked(CLOSE, &close_payload(1001, b""))).await;
    assert_eq!(
        raw.until_eof().await,
        b"",
        "the server closes after the answer"
    );
    timeout(WAIT, stopping).await.unwrap().unwrap();
}

/// Waits until the hub holds `n` connections; fails after [`WAIT`].
async fn connections_become(app: &TestApp, n: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.hub.connection_count() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} connections, not {n}",
            app.hub.connection_count()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sse_and_long_poll_clients_that_go_away_are_cleaned_up_at_once() {
    // Keep-alives and poll timeouts an hour away: only noticing the closed socket itself can
    // end these sessions within the test's wait.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.sse_keepalive_secs = 3600;
        c.poll_timeout_secs = 3600;
    })
    .await;
    // A first poll answers at once with the cursor; a poll from that cursor waits for events.
    let first: Value = app
        .admin(reqwest::Method::GET, "/poll?rooms=project:default")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = first["cursor"].as_str().expect("a cursor").to_owned();
    let poll = format!("/poll?rooms=project:default&timeout=3600&cursor={cursor}");
    for (path, what) in [
        ("/events?rooms=project:default", "an SSE stream"),
        (poll.as_str(), "a long poll"),
    ] {
        let mut raw = Raw::connect(&app).await;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n",
            app.addr
        );
        raw.send(request.as_bytes()).await;
        connections_become(&app, 1, what).await;
        drop(raw);
        connections_become(&app, 0, what).await;
    }
}

// --- permessage-deflate (RFC 7692) ---------------------------------------------------------------

/// A server that compresses (`ws_compression = on`).
async fn compressing() -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |c| {
        c.ws_compression = taskflow_server::config::Switch::On;
    })
    .await
}

/// Raw DEFLATE with a sync flush, its tail removed, as a client sends a compressed message.
fn deflate_with(compressor: &mut flate2::Compress, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64);
    compressor
        .compress_vec(text, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn deflate(text: &[u8]) -> Vec<u8> {
    deflate_with(
        &mut flate2::Compress::new(flate2::Compression::default(), false),
        text,
    )
}

/// A message the server compressed, inflated on its own (the server takes no context).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(1 << 20);
    flate2::Decompress::new(false)
        .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .unwrap();
    out
}

impl Raw {
    /// A WebSocket connection as the admin offering `extensions`, past the hello frame; and
    /// the `Sec-WebSocket-Extensions` answer.
    async fn open_offering(app: &TestApp, extensions: &str) -> (Raw, Option<String>) {
        let mut raw = Raw::connect(app).await;
        let request = upgrade_request(app, &[("Sec-WebSocket-Extensions", extensions)]);
        let answer = raw.request(&request).await;
        assert_eq!(answer.status, 101, "{}", answer.head);
        let (first, hello) = raw.frame().await;
        assert_eq!(first, TEXT, "the hello frame is a reply: never compressed");
        assert_eq!(
            serde_json::from_slice::<Value>(&hello).unwrap()["type"],
            "hello"
        );
        let negotiated = answer.header("sec-websocket-extensions").map(str::to_owned);
        (raw, negotiated)
    }

    /// The next event frame: its first byte and its JSON, inflated if it came compressed.
    async fn event(&mut self) -> (u8, Vec<u8>) {
        loop {
            let (first, payload) = self.frame().await;
            let json = if first & 0x40 != 0 {
                inflate(&payload)
            } else {
                payload
            };
            let frame: Value = serde_json::from_slice(&json).expect("a JSON frame");
            if frame["type"] == "event" {
                return (first, json);
            }
        }
    }

    /// The reply with `id`, skipping anything else.
    async fn reply(&mut self, id: u64) -> Value {
        loop {
            let (first, payload) = self.frame().await;
            assert_eq!(first & 0x40, 0, "replies go uncompressed");
            let frame: Value = serde_json::from_slice(&payload).unwrap();
            if frame["id"] == id {
                return frame;
            }
        }
    }
}

#[tokio::test]
async fn permessage_deflate_is_negotiated_as_the_client_asks() {
    let app = compressing().await;
    let cases = [
        // What browsers send.
        (
            "permessage-deflate; client_max_window_bits",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"),
        ),
        // A first offer the server cannot accept, then one it can.
        (
            "permessage-deflate; server_max_window_bits=20, permessage-deflate",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        ("permessage-deflate; mystery", None),
        ("x-webkit-deflate-frame", None),
    ];
    for (offer, answer) in cases {
        let (_, negotiated) = Raw::open_offering(&app, offer).await;
        assert_eq!(negotiated.as_deref(), answer, "{offer}");
    }
    // A server that does not compress answers every offer with plain frames.
    let plain = TestApp::spawn(Backend::Sqlite).await;
    let (_, negotiated) = Raw::open_offering(&plain, "permessage-deflate").await;
    assert_eq!(negotiated, None);
}

#[tokio::test]
async fn an_event_is_compressed_once_for_every_connection_that_negotiated_it() {
    let app = compressing().await;
    let (mut a, _) = Raw::open_offering(&app, "permessage-deflate; client_max_window_bits").await;
    let (mut b, _) =
        Raw::open_offering(&app, "permessage-deflate; client_no_context_takeover").await;
    // A client whose window holds 256 bytes: the event is longer, so it gets it plain.
    let (mut small, negotiated) =
        Raw::open_offering(&app, "permessage-deflate; server_max_window_bits=8").await;
    assert!(negotiated.unwrap().ends_with("server_max_window_bits=8"));
    let mut plain = Raw::open(&app).await;
    for raw in [&mut a, &mut b, &mut small, &mut plain] {
        raw.send(&masked(
            TEXT,
            br#"{"type":"subscribe","room":"project:default","id":1}"#,
        ))
        .await;
        assert_eq!(raw.reply(1).await["ok"], true);
    }
    let description = "Compressible text, said twice. ".repeat(20);
    app.create_task(serde_json::json!({ "title": "Deflate me", "description": description }))
        .await;
    let (first_a, json_a) = a.event().await;
    let (first_b, json_b) = b.event().await;
    let (first_small, json_small) = small.event().await;
    let (first_plain, json_plain) = plain.event().await;
    assert_eq!(first_a, 0xc1, "FIN, RSV1, text");
    assert_eq!(first_b, 0xc1);
    assert_eq!((first_small, first_plain), (TEXT, TEXT));
    for json in [&json_a, &json_b, &json_small] {
        assert!(json == &json_plain, "the same frame, however it travelled");
    }
    // (That both got the same shared bytes, compressed once, is hub::tests' to show.)
}

#[tokio::test]
async fn compressed_commands_are_read_with_and_without_context_takeover() {
    let app = compressing().await;
    // With context takeover (the default): the second command refers to the first.
    let (mut raw, _) = Raw::open_offering(&app, "permessage-deflate").await;
    let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
    let one = deflate_with(&mut compressor, br#"{"type":"ping","id":1}"#);
    let two = deflate_with(&mut compressor, br#"{"type":"ping","id":2}"#);
    raw.send(&masked(TEXT | 0x40, &one)).await;
    raw.send(&masked(TEXT | 0x40, &two)).await;
    assert_eq!(raw.reply(1).await["type"], "pong");
    assert_eq!(raw.reply(2).await["type"], "pong");
    // Without: every message stands alone; one split over fragments, a ping between them.
    let (mut raw, _) =
        Raw::open_offering(&app, "permessage-deflate; client_no_context_takeover").await;
    let compressed = deflate(br#"{"type":"subscribe","room":"project:default","id":3}"#);
    let (head, rest) = compressed.split_at(4);
    raw.send(
        &[
            masked(0x01 | 0x40, head),
            masked(PING, b"p"),
            masked(0x80, rest),
        ]
        .concat(),
    )
    .await;
    assert_eq!(raw.frame().await, (PONG, b"p".to_vec()));
    assert_eq!(raw.reply(3).await["ok"], true);
    // An uncompressed message on a connection that negotiated compression is fine too.
    raw.send(&masked(TEXT, br#"{"type":"ping","id":4}"#)).await;
    assert_eq!(raw.reply(4).await["type"], "pong");
}

#[tokio::test]
async fn compressed_frames_that_break_the_rules_close_with_their_code() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.ws_compression = taskflow_server::config::Switch::On;
        c.ws_max_message_bytes = 1024;
    })
    .await;
    let compressed = deflate(br#"{"type":"ping"}"#);
    let cases: [(Vec<u8>, u16, &str); 5] = [
        (masked(PING | 0x40, b"x"), 1002, "RSV1 on a control frame"),
        (
            [
                masked(0x01 | 0x40, &compressed[..3]),
                masked(0x80 | 0x40, &compressed[3..]),
            ]
            .concat(),
            1002,
            "RSV1 on a continuation",
        ),
        (
            masked(TEXT | 0x20, b"{}"),
            1002,
            "RSV2: no extension defines it",
        ),
        (
            masked(TEXT | 0x40, &[0xff, 0xfe, 0xfd]),
            1007,
            "data that is not DEFLATE",
        ),
        (
            masked(TEXT | 0x40, &deflate(&[b' '; 1_000_000])),
            1009,
            "a bomb: a few kilobytes that inflate past the limit",
        ),
    ];
    for (bytes, code, what) in cases {
        let (mut raw, negotiated) = Raw::open_offering(&app, "permessage-deflate").await;
        assert!(negotiated.is_some());
        raw.send(&bytes).await;
        let (_, close) = raw.close_frame().await;
        assert_eq!(
            u16::from_be_bytes([close[2], close[3]]),
            code,
            "{what}: {close:?}"
        );
        raw.until_eof().await;
    }
    // RSV1 on a connection that did not negotiate the extension is still a protocol error.
    let mut raw = Raw::open(&app).await;
    raw.send(&masked(TEXT | 0x40, &compressed)).await;
    let (_, close) = raw.close_frame().await;
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1002);
}
