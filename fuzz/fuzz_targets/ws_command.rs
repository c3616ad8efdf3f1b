//! A WebSocket client's text frame, run through the real command handler against a real store,
//! as the member `alice` (of project `p1`) and as the admin.
//!
//! Checks: the reply is the one the protocol promises (a reply with the same id for a command
//! with an id, nothing for an accepted command without one, `pong` for `ping`, `bad_json` for
//! what is not JSON); error codes are documented ones and never `internal`; an accepted command
//! is one that validates again (it round-trips through the protocol type, its room parses, a
//! message's text is 1 to 4,000 characters once trimmed) and that the caller may send (a member
//! only reaches `p1` and their own user room; a fresh session cannot unsubscribe or type).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::LazyLock;
use taskflow_protocol::{Command, ServerFrame};
use taskflow_server::domain::Room;
use taskflow_server::fuzzing::CommandHarness;

static HARNESS: LazyLock<CommandHarness> = LazyLock::new(CommandHarness::new);

/// Every code a command's refusal may carry (docs/protocol.md).
const CODES: &[&str] = &[
    "bad_json",
    "invalid_field",
    "unknown_type",
    "invalid_room",
    "forbidden",
    "room_not_found",
    "not_subscribed",
    "already_subscribed",
    "too_many_subscriptions",
    "unavailable",
];

fuzz_target!(|data: &[u8]| {
    // The frame reader hands the handler only valid UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for admin in [false, true] {
        check(text, admin, HARNESS.run(text, admin));
    }
});

fn check(text: &str, admin: bool, reply: Option<ServerFrame>) {
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        assert!(
            matches!(&reply, Some(ServerFrame::Error { error }) if error.code == "bad_json"),
            "not JSON, answered {reply:?}"
        );
        return;
    };
    let id = value.as_object_mut().and_then(|o| o.remove("id"));
    if id
        .as_ref()
        .is_some_and(|id| !(id.is_string() || id.is_number()))
    {
        assert!(
            matches!(&reply, Some(ServerFrame::Error { error }) if error.code == "invalid_field"),
            "a bad id, answered {reply:?}"
        );
        return;
    }
    let command = serde_json::from_value::<Command>(value).ok();
    if command == Some(Command::Ping) {
        assert_eq!(reply, Some(ServerFrame::Pong { id }));
        return;
    }
    let accepted = match (&id, reply) {
        (
            Some(id),
            Some(ServerFrame::Reply {
                id: replied,
                ok,
                result,
                error,
            }),
        ) => {
            assert_eq!(&replied, id, "a reply carries the command's id");
            assert_eq!(ok, result.is_some());
            assert_eq!(ok, error.is_none());
            if let Some(error) = error {
                assert_code(&error.code);
            }
            ok
        }
        (None, None) => true,
        (None, Some(ServerFrame::Error { error })) => {
            assert_code(&error.code);
            false
        }
        (id, reply) => panic!("command with id {id:?} answered {reply:?}"),
    };
    if !accepted {
        return;
    }
    let command = command.expect("an accepted command is a command");
    let again: Command =
        serde_json::from_value(serde_json::to_value(&command).expect("serializes"))
            .expect("an accepted command parses again");
    assert_eq!(again, command);
    let room = match &command {
        Command::Subscribe { room, .. } | Command::Presence { room } => room,
        Command::Message { room, text } => {
            let chars = text.trim().chars().count();
            assert!(
                (1..=4000).contains(&chars),
                "accepted a {chars}-character message"
            );
            room
        }
        Command::Direct { to, text } => {
            let chars = text.trim().chars().count();
            assert!(
                (1..=4000).contains(&chars),
                "accepted a {chars}-character direct message"
            );
            // Alice shares p1 with bob only; the admin may write to anyone; nobody to oneself.
            let me = if admin { "admin" } else { "alice" };
            assert_ne!(to, me, "a direct message to oneself");
            assert!(
                admin || to == "bob" || to == "admin",
                "alice wrote to {to}"
            );
            return;
        }
        Command::Unsubscribe { .. } | Command::Typing { .. } => {
            panic!("a fresh session accepted {command:?}")
        }
        Command::Ping => unreachable!("answered above"),
    };
    let parsed = Room::parse(room).expect("an accepted room parses");
    if let Command::Message { .. } = command {
        assert!(
            matches!(parsed, Room::Project(_)),
            "chat outside a project room"
        );
    }
    if !admin {
        let allowed = ["tasks", "project:p1", "user:alice"];
        assert!(
            allowed.contains(&parsed.to_string().as_str()),
            "alice was let into {parsed}"
        );
    }
}

fn assert_code(code: &str) {
    assert!(CODES.contains(&code), "undocumented error code {code:?}");
}
