//! Property tests (proptest) of the invariants of everything that reads bytes from the network,
//! through the same entry points as the fuzz targets (`taskflow_server::fuzzing`, docs/fuzzing.md).
//! The fuzzers search for a counterexample for minutes; these check the same laws on a few
//! hundred generated inputs in every `cargo test`, including inputs shaped like valid ones,
//! which random bytes rarely are.

mod common;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use taskflow_protocol::{Command, ServerFrame};
use taskflow_server::auth::{Claims, Role};
use taskflow_server::domain::Room;
use taskflow_server::fuzzing::{self, CommandHarness, Decoded, Frame};
use taskflow_server::store::TaskCursor;

// ---------------------------------------------------------------------------------------------
// Cursors

proptest! {
    #[test]
    fn stream_cursors_decode_any_string_without_panicking(raw in any::<String>()) {
        if let Some((epoch, offsets)) = fuzzing::stream_cursor_decode(&raw) {
            let again = fuzzing::stream_cursor_encode(&epoch, &offsets);
            prop_assert_eq!(fuzzing::stream_cursor_decode(&again), Some((epoch, offsets)));
        }
    }

    #[test]
    fn stream_cursors_round_trip(
        epoch in any::<String>(),
        offsets in proptest::collection::btree_map(any::<String>(), any::<i64>(), 0..8),
    ) {
        let encoded = fuzzing::stream_cursor_encode(&epoch, &offsets);
        // An SSE id and a query parameter: URL-safe base64, nothing to escape.
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(fuzzing::stream_cursor_decode(&encoded), Some((epoch, offsets)));
    }

    #[test]
    fn task_cursors_have_one_spelling(raw in "[0-9]{1,3}\\.[0-9a-fA-F]{30,34}|\\PC*") {
        if let Some(cursor) = TaskCursor::decode(&raw) {
            prop_assert_eq!(cursor.encode(), raw);
        }
    }

    #[test]
    fn task_cursors_round_trip(priority in 0u8..=100, id in any::<u128>()) {
        let raw = format!("{priority}.{id:032x}");
        let cursor = TaskCursor::decode(&raw).expect("a cursor the server writes");
        prop_assert_eq!(cursor.encode(), raw);
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket commands

static COMMANDS: LazyLock<std::sync::Mutex<CommandHarness>> =
    LazyLock::new(|| std::sync::Mutex::new(CommandHarness::new()));

fn run_command(text: &str, admin: bool) -> Option<ServerFrame> {
    COMMANDS.lock().unwrap().run(text, admin)
}

/// Rooms a client might name: valid, someone else's, and broken.
fn room() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tasks".to_owned()),
        Just("project:p1".to_owned()),
        Just("project:p2".to_owned()),
        Just("user:alice".to_owned()),
        Just("user:bob".to_owned()),
        "[a-z]{0,8}:?[a-z0-9]{0,8}",
        any::<String>(),
    ]
}

/// Command-shaped JSON: every type (and a few that are not), the fields it takes, sometimes one
/// too many.
fn command_json() -> impl Strategy<Value = serde_json::Value> {
    (
        prop_oneof![
            Just("subscribe"),
            Just("unsubscribe"),
            Just("message"),
            Just("direct"),
            Just("typing"),
            Just("presence"),
            Just("ping"),
            Just("dance"),
        ],
        room(),
        prop_oneof![
            Just(String::new()),
            "\\PC{0,20}",
            "[ ]{0,3}",
            "x{3990,4010}"
        ],
        prop::option::of(prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z0-9]{0,6}".prop_map(serde_json::Value::from),
            Just(serde_json::json!([1])),
        ]),
        any::<bool>(),
    )
        .prop_map(|(kind, room, text, id, extra)| {
            let mut value = serde_json::json!({ "type": kind });
            let object = value.as_object_mut().expect("an object");
            if kind == "direct" {
                // Someone to write to, taken from the room strategy: `user:bob` names bob.
                let to = room.strip_prefix("user:").unwrap_or(&room).to_owned();
                object.insert("to".into(), to.into());
            } else if kind != "ping" {
                object.insert("room".into(), room.into());
            }
            if kind == "message" || kind == "direct" {
                object.insert("text".into(), text.into());
            }
            if let Some(id) = id {
                object.insert("id".into(), id);
            }
            if extra {
                object.insert("extra".into(), 1.into());
            }
            value
        })
}

/// Whether the handler accepted the command (a reply with `ok`, or silence for no id).
fn accepted(reply: &Option<ServerFrame>) -> bool {
    matches!(
        reply,
        None | Some(ServerFrame::Reply { ok: true, .. }) | Some(ServerFrame::Pong { .. })
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_text_gets_at_most_one_answer_with_the_commands_id(text in "\\PC*|\\{\"type\":\"\\PC*") {
        for admin in [false, true] {
            let reply = run_command(&text, admin);
            let id = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .filter(|id| id.is_string() || id.is_number());
            match (&id, &reply) {
                (Some(id), Some(ServerFrame::Reply { id: replied, .. } | ServerFrame::Pong { id: Some(replied) })) => {
                    prop_assert_eq!(id, replied)
                }
                (None, None | Some(ServerFrame::Error { .. } | ServerFrame::Pong { id: None })) => {}
                _ => prop_assert!(false, "{text:?} with id {id:?} answered {reply:?}"),
            }
        }
    }

    #[test]
    fn an_accepted_command_validates_again(value in command_json(), admin in any::<bool>()) {
        let text = value.to_string();
        let reply = run_command(&text, admin);
        if !accepted(&reply) {
            return Ok(());
        }
        let mut bare = value.clone();
        let id = bare.as_object_mut().and_then(|o| o.remove("id"));
        let command: Command = serde_json::from_value(bare).expect("an accepted command parses");
        // Through the protocol type and back: the same command, accepted again.
        let mut again = serde_json::to_value(&command).unwrap();
        if let Some(id) = id {
            again.as_object_mut().unwrap().insert("id".into(), id);
        }
        prop_assert!(accepted(&run_command(&again.to_string(), admin)), "{again} refused after {text} was accepted");
        match &command {
            Command::Subscribe { room, .. } | Command::Presence { room } => {
                let room = Room::parse(room).expect("an accepted room parses");
                if !admin {
                    prop_assert!(["tasks", "project:p1", "user:alice"].contains(&room.to_string().as_str()));
                }
            }
            Command::Message { room, text } => {
                prop_assert!(matches!(Room::parse(room), Ok(Room::Project(_))));
                prop_assert!((1..=4000).contains(&text.trim().chars().count()));
            }
            Command::Direct { to, text } => {
                // To someone alice shares a project with (bob) or the admin; anyone for the admin;
                // never to oneself.
                let me = if admin { "admin" } else { "alice" };
                prop_assert!(to != me);
                prop_assert!(admin || to == "bob" || to == "admin", "alice wrote to {to}");
                prop_assert!((1..=4000).contains(&text.trim().chars().count()));
            }
            Command::Unsubscribe { .. } | Command::Typing { .. } => {
                prop_assert!(false, "a session that subscribed to nothing: {command:?} accepted")
            }
            Command::Ping => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Import

/// Import lines: valid ones, and ones broken in the ways a file is.
fn ndjson_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z ]{1,20}".prop_map(|t| format!("{{\"title\":\"{t}\"}}")),
        (0i64..200).prop_map(|p| format!("{{\"title\":\"p\",\"priority\":{p}}}")),
        Just("{\"title\":\"a\"} {\"title\":\"b\"}".to_owned()),
        Just("{\"title\":\"\"}".to_owned()),
        Just(String::new()),
        Just("   ".to_owned()),
        "\\PC{0,30}",
    ]
}

fn check_import(body: &[u8], run: &fuzzing::ImportRun) -> Result<(), TestCaseError> {
    let last = body.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    for (line, verdict) in &run.lines {
        prop_assert!((1..=last).contains(line), "line {} of {}", line, last);
        if let Err(reason) = verdict {
            prop_assert!(!reason.is_empty());
        }
    }
    let rejected = run.lines.iter().any(|(_, v)| v.is_err()) || run.unreadable.is_some();
    prop_assert_eq!(run.acceptable(), !rejected);
    Ok(())
}

proptest! {
    #[test]
    fn any_bytes_as_ndjson_are_imported_or_rejected_by_line(body in any::<Vec<u8>>()) {
        check_import(&body, &fuzzing::import_ndjson(&body))?;
    }

    #[test]
    fn any_bytes_as_csv_are_imported_or_rejected_by_line(body in any::<Vec<u8>>()) {
        check_import(&body, &fuzzing::import_csv(&body))?;
    }

    #[test]
    fn every_non_blank_ndjson_line_gets_exactly_one_verdict(lines in proptest::collection::vec(ndjson_line(), 0..12)) {
        let body = lines.join("\n");
        let run = fuzzing::import_ndjson(body.as_bytes());
        check_import(body.as_bytes(), &run)?;
        let expected: Vec<u64> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty())
            .map(|(i, _)| i as u64 + 1)
            .collect();
        let got: Vec<u64> = run.lines.iter().map(|(l, _)| *l).collect();
        prop_assert_eq!(got, expected, "{:?}", body);
        // A line is imported only when it is one JSON value: nothing after it is dropped unseen.
        for (line, verdict) in &run.lines {
            let text = &lines[*line as usize - 1];
            if verdict.is_ok() {
                prop_assert!(serde_json::from_str::<serde_json::Value>(text).is_ok(), "{:?} imported", text);
            }
        }
    }

    #[test]
    fn csv_records_are_judged_on_their_own_lines(rows in proptest::collection::vec(
        prop_oneof![Just("ok,1"), Just("bad,high"), Just("short"), Just("a,1,extra"), Just(",3"), Just("\"multi\nline\",2")],
        0..10,
    )) {
        let body = format!("title,priority\n{}\n", rows.join("\n"));
        let run = fuzzing::import_csv(body.as_bytes());
        check_import(body.as_bytes(), &run)?;
        // Each row's first line, counting the lines the quoted rows span.
        let mut line = 2;
        let mut starts = Vec::new();
        for row in &rows {
            starts.push(line);
            line += row.matches('\n').count() as u64 + 1;
        }
        let got: Vec<u64> = run.lines.iter().map(|(l, _)| *l).collect();
        prop_assert_eq!(got, starts);
    }
}

/// The HTTP side of "never a partial import": whatever the body, `POST /tasks/import` either
/// creates every line's task (201, `imported` = the lines) or none (400 naming lines, 413, 415),
/// on the real server and store.
#[test]
fn an_import_is_all_or_nothing_on_the_server() {
    use common::{Backend, TestApp};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(TestApp::spawn(Backend::Sqlite));
    let count = |app: &TestApp| {
        runtime.block_on(async {
            let res = app
                .admin(reqwest::Method::GET, "/tasks/export")
                .send()
                .await
                .unwrap();
            res.text().await.unwrap().lines().count()
        })
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    let bodies = (
        proptest::collection::vec(ndjson_line(), 1..8),
        any::<bool>(),
    );
    runner
        .run(&bodies, |(lines, csv)| {
            let (content_type, body) = if csv {
                let rows: Vec<String> = lines
                    .iter()
                    .map(|l| l.replace(['{', '}', '"'], ""))
                    .collect();
                ("text/csv", format!("title\n{}\n", rows.join("\n")))
            } else {
                ("application/x-ndjson", lines.join("\n"))
            };
            let before = count(&app);
            let (status, answer) = runtime.block_on(async {
                let res = app
                    .admin(reqwest::Method::POST, "/tasks/import")
                    .header("Content-Type", content_type)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                (status, res.json::<serde_json::Value>().await.unwrap())
            });
            let after = count(&app);
            let parsed = if csv {
                fuzzing::import_csv(body.as_bytes())
            } else {
                fuzzing::import_ndjson(body.as_bytes())
            };
            match status {
                201 => {
                    let imported = answer["imported"].as_u64().unwrap() as usize;
                    prop_assert_eq!(after - before, imported);
                    prop_assert!(parsed.acceptable());
                    prop_assert_eq!(imported, parsed.lines.len());
                }
                400 => {
                    prop_assert_eq!(after, before, "a rejected import wrote tasks: {}", answer);
                    prop_assert!(!parsed.acceptable());
                    let lines = answer["error"]["details"]["lines"].as_array().unwrap();
                    prop_assert!(!lines.is_empty());
                    for line in lines {
                        prop_assert!(line["line"].as_u64().unwrap() >= 1, "{}", answer);
                    }
                }
                other => prop_assert!(false, "{other}: {answer}"),
            }
            Ok(())
        })
        .unwrap();
    runtime.block_on(async move { drop(app) });
}

// ---------------------------------------------------------------------------------------------
// Broker envelopes

fn decoded() -> impl Strategy<Value = Decoded> {
    let name8 = "\\PC{0,20}";
    let room = prop_oneof![
        Just("project:p1".to_owned()),
        Just("user:amy".to_owned()),
        "\\PC{0,30}"
    ];
    let event = (
        name8,
        room.clone(),
        1i64..=i64::MAX,
        any::<i64>(),
        any::<bool>(),
        prop::option::of((any::<bool>(), "[a-z]{0,8}")),
        any::<Vec<u8>>(),
        prop::option::of(any::<u128>()),
    )
        .prop_map(
            |(node, room, offset, at_ms, task, member, frame, deleted)| {
                // What a project room's event can carry; other rooms carry neither.
                let project = room
                    .strip_prefix("project:")
                    .filter(|p| *p == "p1")
                    .map(str::to_owned);
                let membership = project
                    .clone()
                    .zip(member)
                    .map(|(p, (added, user))| (p, user, added));
                // A deletion is never a membership change too.
                let deleted_task = deleted
                    .filter(|_| membership.is_none())
                    .map(|n| uuid::Uuid::from_u128(n).to_string());
                Decoded::Event {
                    tasks_of: project.clone().filter(|_| task),
                    membership,
                    deleted_task,
                    node,
                    room,
                    offset,
                    at_ms,
                    frame,
                }
            },
        );
    let ephemeral = (name8, room, 1u8..=3, "\\PC{0,10}", any::<Vec<u8>>()).prop_map(
        |(node, room, kind, user, frame)| Decoded::Ephemeral {
            node,
            room,
            kind,
            user,
            frame,
        },
    );
    prop_oneof![event, ephemeral]
}

proptest! {
    #[test]
    fn envelopes_decode_any_bytes_without_panicking(bytes in any::<Vec<u8>>()) {
        if let Ok(decoded) = fuzzing::envelope_decode(&bytes) {
            let again = fuzzing::envelope_encode(&decoded);
            prop_assert_eq!(fuzzing::envelope_decode(&again), Ok(decoded.clone()));
            if let Decoded::Event { offset, .. } = decoded {
                prop_assert!(offset >= 1);
            }
        }
    }

    #[test]
    fn envelopes_round_trip(message in decoded()) {
        let wire = fuzzing::envelope_encode(&message);
        prop_assert_eq!(fuzzing::envelope_decode(&wire), Ok(message.clone()));
        // A message cut inside its header is refused, never misread.
        let (Decoded::Event { frame, .. } | Decoded::Ephemeral { frame, .. }) = &message;
        for cut in 0..wire.len() - frame.len() {
            let short = fuzzing::envelope_decode(&wire[..cut]);
            prop_assert!(short.is_err(), "cut at {}: {:?}", cut, short);
        }
    }

    #[test]
    fn a_node_survives_any_message_and_keeps_its_rooms_in_order(
        messages in proptest::collection::vec(
            prop_oneof![any::<Vec<u8>>(), decoded().prop_map(|d| fuzzing::envelope_encode(&d))],
            1..20,
        ),
    ) {
        let node = fuzzing::BrokerHarness::new();
        let mut highest: BTreeMap<String, i64> = BTreeMap::new();
        for message in &messages {
            let decoded = fuzzing::envelope_decode(message);
            prop_assert_eq!(node.receive(message).is_ok(), decoded.is_ok());
            if let Ok(Decoded::Event { room, offset, .. }) = decoded {
                let top = highest.entry(room.clone()).or_insert(offset);
                *top = (*top).max(offset);
                if let Some(position) = node.position(&room) {
                    prop_assert!((0..=*top).contains(&position), "{} at {}", room, position);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens and JWTs

const ADMIN: &str = "property-admin";
const SECRET: &[u8] = b"property-secret";

fn sign(claims: &Claims, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn alice(exp: u64) -> Claims {
    Claims {
        sub: "alice".into(),
        role: Role::Member,
        exp,
        iat: 0,
    }
}

proptest! {
    #[test]
    fn no_string_is_a_token_but_the_admins(token in any::<String>()) {
        let keys = fuzzing::keys(ADMIN, SECRET);
        prop_assert!(keys.verify(&token).is_none() || token == ADMIN);
    }

    #[test]
    fn bearer_tokens_come_only_from_a_bearer_header(value in any::<Vec<u8>>(), scheme in "(?i:bearer)|[A-Za-z]{0,8}") {
        let mut header = format!("{scheme} ").into_bytes();
        header.extend_from_slice(&value);
        for header in [&header[..], &value[..]] {
            if let Some(token) = fuzzing::bearer_token(header) {
                let text = std::str::from_utf8(header).unwrap();
                let (scheme, rest) = text.split_once(' ').unwrap();
                prop_assert!(scheme.eq_ignore_ascii_case("bearer"));
                prop_assert_eq!(token.as_str(), rest.trim());
            }
        }
    }

    #[test]
    fn an_altered_token_is_refused(at in any::<prop::sample::Index>(), with in any::<u8>()) {
        let keys = fuzzing::keys(ADMIN, SECRET);
        let token = sign(&alice(4_102_444_800), SECRET);
        prop_assert!(keys.verify(&token).is_some());
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = with;
        if let Ok(altered) = String::from_utf8(bytes) {
            if altered != token {
                prop_assert!(keys.verify(&altered).is_none(), "{altered} accepted");
            }
        }
    }

    #[test]
    fn forged_claims_are_refused(sub in "[a-z]{1,8}", admin in any::<bool>(), secret in any::<Vec<u8>>()) {
        let keys = fuzzing::keys(ADMIN, SECRET);
        let claims = Claims {
            sub,
            role: if admin { Role::Admin } else { Role::Member },
            exp: 4_102_444_800,
            iat: 0,
        };
        // Signed with another key, or not signed at all.
        if secret != SECRET {
            prop_assert!(keys.verify(&sign(&claims, &secret)).is_none());
        }
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let unsigned = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(&serde_json::to_vec(&claims).unwrap())
        );
        prop_assert!(keys.verify(&unsigned).is_none());
        // And a genuine one with an expiry in the past.
        prop_assert!(keys.verify(&sign(&alice(1), SECRET)).is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames

/// A masked client frame.
fn frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    taskflow_server::fuzzing::client_frame(first, payload, mask)
}

proptest! {
    #[test]
    fn the_frame_reader_never_exceeds_its_limit_however_the_bytes_arrive(
        bytes in any::<Vec<u8>>(),
        chunks in proptest::collection::vec(1usize..40, 0..40),
        max in prop_oneof![Just(0usize), Just(1), Just(125), Just(1000)],
    ) {
        let whole = fuzzing::ws_frames(&bytes, &[], max, 8192);
        for frame in &whole.frames {
            match frame {
                Frame::Text(t) => prop_assert!(t.len() <= max),
                Frame::Binary(n) => prop_assert!(*n <= max),
                Frame::Ping(p) => prop_assert!(p.len() <= 125),
                _ => {}
            }
        }
        prop_assert_eq!(&fuzzing::ws_frames(&bytes, &chunks, max, 16), &whole);
    }

    #[test]
    fn messages_split_into_fragments_arrive_whole(
        texts in proptest::collection::vec(("\\PC{0,40}", 1usize..4), 1..6),
        mask in any::<[u8; 4]>(),
        chunks in proptest::collection::vec(1usize..20, 0..30),
    ) {
        let mut stream = Vec::new();
        for (text, parts) in &texts {
            let bytes = text.as_bytes();
            let step = bytes.len().div_ceil(*parts).max(1);
            let pieces: Vec<&[u8]> = if bytes.is_empty() { vec![&[][..]] } else { bytes.chunks(step).collect() };
            for (i, piece) in pieces.iter().enumerate() {
                let opcode = if i == 0 { 0x1 } else { 0x0 };
                let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
                stream.extend(frame(fin | opcode, piece, mask));
                if i == 0 {
                    // A ping may come between the fragments of a message.
                    stream.extend(frame(0x89, b"p", mask));
                }
            }
        }
        let run = fuzzing::ws_frames(&stream, &chunks, 1 << 16, 16);
        prop_assert_eq!(run.violation, None);
        let got: Vec<&Frame> = run.frames.iter().filter(|f| !matches!(f, Frame::Ping(_))).collect();
        let want: Vec<Frame> = texts.iter().map(|(t, _)| Frame::Text(t.clone())).collect();
        prop_assert_eq!(got, want.iter().collect::<Vec<_>>());
    }
}
