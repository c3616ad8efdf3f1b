//! `/asyncapi.json`: the WebSocket protocol as an AsyncAPI 3.0 document, for the tools users of
//! real-time hubs point at one (code generators, docs renderers, validators).
//!
//! Nothing here is written twice. The message payloads are the JSON Schemas `schemars` derives
//! from the protocol crate's own types ([`Command`], [`ServerFrame`] and what they carry), the
//! types the server parses commands into and serializes frames from; the constraints on command
//! fields come from [`crate::domain::rules`], the validators' own rules. This module only
//! arranges them: one message per command and per frame, one operation per command with the
//! reply it gets, and a few rewrites so the schemas read the same under the AsyncAPI schema
//! dialect (a superset of JSON Schema draft-07) as under 2020-12, in which schemars writes them:
//! - `$ref` next to other keywords (which draft-07 ignores) becomes `allOf`;
//! - `$defs` move to `components.schemas`, and references follow them;
//! - every command gains the optional `id` the server reads before the command itself
//!   (`transport::commands`), which is why the types do not carry it.
//!
//! The same component schemas are what `web/taskflow.d.ts` is generated from (see
//! `transport::declarations`), so the TypeScript declarations and this document cannot drift.

use crate::domain::rules::{self, TextRule};
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};
use std::sync::LazyLock;
use taskflow_protocol::frames::{DirectPosted, MessagePosted, PresenceList, Unsubscribed};
use taskflow_protocol::{close, Command, ServerFrame, Subscribed};

/// The document, built once (it depends on nothing but the code).
static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_string());

/// `GET /asyncapi.json`.
pub(super) async fn serve() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// One command: its wire name, the component name of its payload, what it does, and the
/// component its successful reply carries as `result`.
struct CommandDoc {
    name: &'static str,
    schema: &'static str,
    summary: &'static str,
    result: &'static str,
}

const COMMANDS: &[CommandDoc] = &[
    CommandDoc {
        name: "subscribe",
        schema: "SubscribeCommand",
        summary: "Follow a room from now on or, with `since`, from where the client stopped: the missed events are replayed after the reply, then the live stream follows with no gap and no duplicate.",
        result: "Subscribed",
    },
    CommandDoc {
        name: "unsubscribe",
        schema: "UnsubscribeCommand",
        summary: "Stop following a room.",
        result: "Unsubscribed",
    },
    CommandDoc {
        name: "message",
        schema: "MessageCommand",
        summary: "Post a chat message in a project room; replied to once it is in the room's log. The command's `id` makes a resend after a reconnect idempotent.",
        result: "MessagePosted",
    },
    CommandDoc {
        name: "direct",
        schema: "DirectCommand",
        summary: "Send a direct message to another user (one who shares a project with you; anyone, for the admin): logged as `message.direct` in both users' `user:` rooms, replied to once it is there. The command's `id` makes a resend after a reconnect idempotent.",
        result: "DirectPosted",
    },
    CommandDoc {
        name: "typing",
        schema: "TypingCommand",
        summary: "Tell a project room you are typing (ephemeral; the room gets a `typing` frame).",
        result: "Empty",
    },
    CommandDoc {
        name: "presence",
        schema: "PresenceCommand",
        summary: "Who is in the room, with their connection counts.",
        result: "PresenceList",
    },
    CommandDoc {
        name: "ping",
        schema: "PingCommand",
        summary: "An application-level ping for clients that cannot send WebSocket pings; answered by `pong`.",
        result: "Empty",
    },
];

/// The frames the server sends on a WebSocket, by wire name and component name.
/// (`subscribed` is what the stream transports send instead of a reply; it is a component but
/// not a WebSocket message.)
const FRAMES: &[(&str, &str)] = &[
    ("hello", "HelloFrame"),
    ("event", "EventFrameMessage"),
    ("reply", "ReplyFrame"),
    ("error", "ErrorFrame"),
    ("pong", "PongFrame"),
    ("presence.joined", "PresenceJoinedFrame"),
    ("presence.left", "PresenceLeftFrame"),
    ("typing", "TypingFrame"),
    ("stats", "StatsFrame"),
];

/// The component name of one variant of [`Command`] or [`ServerFrame`], by wire name.
fn variant_name(family: &str, wire: &str) -> String {
    if family == "Command" {
        return COMMANDS
            .iter()
            .find(|c| c.name == wire)
            .map(|c| c.schema.to_owned())
            .unwrap_or_else(|| panic!("command {wire} is not documented in COMMANDS"));
    }
    match wire {
        "subscribed" => "SubscribedFrame".to_owned(),
        _ => FRAMES
            .iter()
            .find(|(name, _)| *name == wire)
            .map(|(_, schema)| (*schema).to_owned())
            .unwrap_or_else(|| panic!("frame {wire} is not documented in FRAMES")),
    }
}

/// Every payload schema, by component name: the variants of [`Command`] and [`ServerFrame`],
/// the two unions over them, and the types they refer to.
pub(crate) fn schemas() -> Map<String, Value> {
    let mut generator = SchemaGenerator::default();
    let mut schemas = Map::new();
    for (family, root) in [
        ("Command", generator.root_schema_for::<Command>()),
        ("ServerFrame", generator.root_schema_for::<ServerFrame>()),
    ] {
        let mut root = root.to_value();
        let variants = root["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{family} is a tagged union"))
            .clone();
        let mut refs = Vec::new();
        for variant in variants {
            let wire = variant["properties"]["type"]["const"]
                .as_str()
                .unwrap_or_else(|| panic!("every {family} variant has a constant type"))
                .to_owned();
            let name = variant_name(family, &wire);
            refs.push(json!({ "$ref": format!("#/components/schemas/{name}") }));
            schemas.insert(name, variant);
        }
        let description = root["description"].clone();
        schemas.insert(
            family.to_owned(),
            json!({ "description": description, "oneOf": refs }),
        );
        if let Some(Value::Object(defs)) = root.as_object_mut().and_then(|r| r.remove("$defs")) {
            schemas.extend(defs);
        }
    }
    for (name, schema) in [
        ("Subscribed", generator.root_schema_for::<Subscribed>()),
        ("Unsubscribed", generator.root_schema_for::<Unsubscribed>()),
        (
            "MessagePosted",
            generator.root_schema_for::<MessagePosted>(),
        ),
        ("DirectPosted", generator.root_schema_for::<DirectPosted>()),
        ("PresenceList", generator.root_schema_for::<PresenceList>()),
    ] {
        let mut schema = schema.to_value();
        if let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|s| s.remove("$defs")) {
            schemas.extend(defs);
        }
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
            object.remove("title");
        }
        schemas.insert(name.to_owned(), schema);
    }
    schemas.insert(
        "Empty".to_owned(),
        json!({ "description": "Nothing to report.", "type": "object", "additionalProperties": false }),
    );
    schemas.insert(
        "CommandId".to_owned(),
        json!({
            "description": "Any command may carry an id, a string or a number; a command with an id gets exactly one `reply` carrying it back.",
            "type": ["string", "number"]
        }),
    );
    for command in COMMANDS {
        let schema = schemas
            .get_mut(command.schema)
            .unwrap_or_else(|| panic!("{} has a schema", command.schema));
        schema["properties"]["id"] = json!({ "$ref": "#/components/schemas/CommandId" });
    }
    // The id a reply or a pong carries back is the command's (the type holds any JSON value
    // because the server echoes it untouched; `commands` only lets strings and numbers in).
    for frame in ["ReplyFrame", "PongFrame"] {
        let id = &mut schemas[frame]["properties"]["id"];
        let description = id["description"].clone();
        *id = json!({ "$ref": "#/components/schemas/CommandId", "description": description });
    }
    constrain(&mut schemas);
    for schema in schemas.values_mut() {
        draft07(schema);
    }
    schemas
}

/// A room a command names: `tasks`, `project:<id>` or `user:<id>`.
fn room() -> Value {
    rules::ROOM.schema()
}

/// The validators' rules on command fields.
fn constrain(schemas: &mut Map<String, Value>) {
    let text: &TextRule = &rules::CHAT_TEXT;
    for (schema, property, rule) in [
        ("SubscribeCommand", "room", room()),
        ("UnsubscribeCommand", "room", room()),
        ("MessageCommand", "room", rules::PROJECT_ROOM.schema()),
        ("MessageCommand", "text", text.schema()),
        ("DirectCommand", "to", rules::USER_ID.schema()),
        ("DirectCommand", "text", text.schema()),
        ("TypingCommand", "room", rules::PROJECT_ROOM.schema()),
        ("PresenceCommand", "room", room()),
    ] {
        let target = schemas
            .get_mut(schema)
            .and_then(|s| s.pointer_mut(&format!("/properties/{property}")))
            .unwrap_or_else(|| panic!("{schema}.{property} exists"));
        let description = target["description"].clone();
        *target = rule;
        target["description"] = description;
    }
}

/// Rewrites a schemars schema into one that means the same under draft-07: references point
/// into `components.schemas`, and a `$ref` with sibling constraints becomes `allOf` (a sibling
/// description may stay: ignoring it changes nothing).
fn draft07(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get_mut("$ref") {
                if let Some(name) = target.strip_prefix("#/$defs/") {
                    *target = format!("#/components/schemas/{name}");
                }
            }
            object.remove("$schema");
            let annotations_only = object
                .keys()
                .all(|k| matches!(k.as_str(), "$ref" | "description" | "title"));
            if object.contains_key("$ref") && !annotations_only {
                let reference = object.remove("$ref").expect("checked");
                let description = object.remove("description");
                let rest = Value::Object(std::mem::take(object));
                object.insert("allOf".to_owned(), json!([{ "$ref": reference }, rest]));
                if let Some(description) = description {
                    object.insert("description".to_owned(), description);
                }
            }
            for value in object.values_mut() {
                draft07(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(draft07),
        _ => {}
    }
}

/// The reply to a command that succeeded, with its `result` typed.
fn reply_to(command: &CommandDoc) -> Value {
    json!({
        "allOf": [
            { "$ref": "#/components/schemas/ReplyFrame" },
            {
                "type": "object",
                "properties": {
                    "ok": { "const": true },
                    "result": { "$ref": format!("#/components/schemas/{}", command.result) }
                },
                "required": ["result"]
            }
        ]
    })
}

/// The whole document.
pub(crate) fn document() -> Value {
    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let mut operations = Map::new();
    let schemas = schemas();
    let reference = |name: &str| json!({ "$ref": format!("#/channels/tasks/messages/{name}") });
    for command in COMMANDS {
        let summary = command.summary;
        messages.insert(
            command.name.to_owned(),
            json!({
                "name": command.name,
                "title": format!("`{}` command", command.name),
                "summary": summary,
                "payload": { "$ref": format!("#/components/schemas/{}", command.schema) },
            }),
        );
        let reply = format!("{}.reply", command.name);
        messages.insert(
            reply.clone(),
            json!({
                "name": "reply",
                "title": format!("reply to `{}`", command.name),
                "summary": "Sent once for a command that carried an `id`: `ok: true` with the result.",
                "payload": reply_to(command),
            }),
        );
        let mut reply_messages = vec![reference(&reply), reference("refused")];
        if command.name == "ping" {
            reply_messages = vec![reference("pong")];
        }
        operations.insert(
            command.name.to_owned(),
            json!({
                "action": "receive",
                "channel": { "$ref": "#/channels/tasks" },
                "summary": summary,
                "messages": [reference(command.name)],
                "reply": { "channel": { "$ref": "#/channels/tasks" }, "messages": reply_messages },
            }),
        );
    }
    messages.insert(
        "refused".to_owned(),
        json!({
            "name": "reply",
            "title": "a refused command",
            "summary": "Sent once for a command that carried an `id` and failed: `ok: false` with the error (`invalid_field`, `invalid_room`, `forbidden`, `room_not_found`, `not_subscribed`, `already_subscribed`, `too_many_subscriptions`, `rate_limited`, `unavailable`, `internal`). A command without an id that fails gets an `error` frame instead.",
            "payload": {
                "allOf": [
                    { "$ref": "#/components/schemas/ReplyFrame" },
                    {
                        "type": "object",
                        "properties": { "ok": { "const": false } },
                        "required": ["error"]
                    }
                ]
            },
        }),
    );
    for (wire, schema) in FRAMES {
        let description = schemas[*schema]["description"].clone();
        messages.insert(
            (*wire).to_owned(),
            json!({
                "name": wire,
                "title": format!("`{wire}` frame"),
                "summary": description,
                "payload": { "$ref": format!("#/components/schemas/{schema}") },
            }),
        );
        if *wire != "reply" {
            operations.insert(
                format!("send.{wire}"),
                json!({
                    "action": "send",
                    "channel": { "$ref": "#/channels/tasks" },
                    "summary": description,
                    "messages": [reference(wire)],
                }),
            );
        }
    }
    for name in messages.keys() {
        channel_messages.insert(
            name.clone(),
            json!({ "$ref": format!("#/components/messages/{name}") }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "id": "urn:taskflow:realtime",
        "info": {
            "title": "Taskflow real-time protocol",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The WebSocket protocol of `/ws/tasks`: JSON text frames with a `type`. The client sends commands; the server sends a `hello` first, then the events of the rooms the connection follows (in offset order per room, each once), replies, presence and typing. Server-Sent Events (`/events`) and long polling (`/poll`) carry the same `event` frames. The REST API is in `/openapi.json`; docs/protocol.md is the prose specification and docs/delivery.md the guarantees.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "taskflow": {
                "host": "localhost:3000",
                "protocol": "ws",
                "description": "A Taskflow node; `wss` when it is configured with a certificate (`tls_cert`).",
                "security": [
                    { "$ref": "#/components/securitySchemes/bearer" },
                    { "$ref": "#/components/securitySchemes/access_token" }
                ],
            }
        },
        "channels": {
            "tasks": {
                "address": "/ws/tasks",
                "title": "The hub",
                "description": format!("One connection follows any number of rooms: `tasks` (every project the caller may see), `project:<id>` and `user:<id>`. Without a `subscribe` the connection follows `tasks`. Close codes: {} normal, {} going away (reconnect elsewhere and resume), {} protocol error, {} invalid UTF-8, {} policy (command rate), {} message too big, {} internal error, {} token expired (get a new token, then reconnect), {} slow consumer (reconnect and resume), {} heartbeat timeout.", close::NORMAL, close::GOING_AWAY, close::PROTOCOL_ERROR, close::INVALID_PAYLOAD, close::POLICY_VIOLATION, close::MESSAGE_TOO_BIG, close::INTERNAL_ERROR, close::TOKEN_EXPIRED, close::SLOW_CONSUMER, close::HEARTBEAT_TIMEOUT),
                "messages": channel_messages,
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "access_token": {
                                    "type": "string",
                                    "description": "The token, for clients that cannot set `Authorization` (browsers)."
                                }
                            }
                        },
                        "bindingVersion": "0.1.0"
                    }
                }
            }
        },
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "`Authorization: Bearer <token>` at the handshake: a user's JWT or the admin token."
                },
                "access_token": {
                    "type": "httpApiKey",
                    "name": "access_token",
                    "in": "query",
                    "description": "The same token as `?access_token=` (browsers' WebSocket cannot set headers)."
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reference in the document resolves.
    #[test]
    fn every_reference_resolves() {
        let doc = document();
        fn walk(doc: &Value, value: &Value) {
            match value {
                Value::Object(object) => {
                    if let Some(Value::String(target)) = object.get("$ref") {
                        let pointer = target.strip_prefix('#').expect("local references");
                        assert!(doc.pointer(pointer).is_some(), "{target} resolves");
                    }
                    object.values().for_each(|v| walk(doc, v));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
                _ => {}
            }
        }
        walk(&doc, &doc);
        assert!(!doc.to_string().contains("$defs"));
    }

    /// Every variant of the protocol's unions is a message of the channel.
    #[test]
    fn every_command_and_frame_is_a_message() {
        let doc = document();
        let messages = doc["channels"]["tasks"]["messages"].as_object().unwrap();
        for command in COMMANDS {
            assert!(messages.contains_key(command.name));
        }
        for (frame, _) in FRAMES {
            assert!(messages.contains_key(*frame));
        }
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Command"]["oneOf"].as_array().unwrap().len(),
            COMMANDS.len()
        );
        assert_eq!(
            schemas["ServerFrame"]["oneOf"].as_array().unwrap().len(),
            FRAMES.len() + 1,
            "every frame but `subscribed` (SSE only) is a WebSocket message"
        );
    }

    fn validator(doc: &Value, component: &str) -> jsonschema::Validator {
        let mut root = doc.clone();
        root["$ref"] = json!(format!("#/components/schemas/{component}"));
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .build(&root)
            .expect("the schemas compile")
    }

    /// What the server serializes is what the document describes, and what the server parses
    /// (with an id) is too; and the rules on fields reach the document.
    #[test]
    fn the_types_agree_with_their_schemas() {
        let doc = document();
        let frames = validator(&doc, "ServerFrame");
        let hello = ServerFrame::Hello(taskflow_protocol::Hello {
            connection_id: "c1".into(),
            user: "alice".into(),
            heartbeat_interval_ms: 25_000,
            server_time: chrono::Utc::now(),
            epoch: "e".into(),
        });
        let pong = ServerFrame::Pong { id: Some(json!(7)) };
        let stats = ServerFrame::Stats(taskflow_protocol::NodeStats {
            room: "system".into(),
            node: "local".into(),
            at: chrono::Utc::now(),
            interval_ms: 1000,
            connections: taskflow_protocol::TransportCounts {
                websocket: 2,
                sse: 1,
                long_polling: 0,
            },
            subscriptions: 3,
            events_per_sec: 1.5,
            deliveries_per_sec: 3.0,
            latency_ms: Some(taskflow_protocol::Latency {
                p50: 0.0,
                p99: 1.0,
                max: 2.0,
            }),
            rss_bytes: None,
            slow_consumer_closes: 0,
            broker: taskflow_protocol::BrokerState::None,
        });
        for frame in [hello, pong, stats] {
            let value = serde_json::to_value(&frame).unwrap();
            assert!(frames.is_valid(&value), "{value}");
        }
        for wrong in [
            json!({"type": "event", "room": "project:p1", "offset": "3", "event": "task.created", "data": {}, "at": "2026-01-01T00:00:00Z"}),
            json!({"type": "event", "room": "project:p1", "offset": 3, "event": "task.renamed", "data": {}, "at": "2026-01-01T00:00:00Z"}),
            json!({"type": "hello", "user": "alice"}),
            json!({"type": "gossip"}),
        ] {
            assert!(!frames.is_valid(&wrong), "{wrong} is not a frame");
        }
        let commands = validator(&doc, "Command");
        for text in [
            r#"{"type":"subscribe","room":"project:p1","id":1}"#,
            r#"{"type":"subscribe","room":"tasks","since":{"epoch":"e","offsets":{"project:p1":3}}}"#,
            r#"{"type":"message","room":"project:p1","text":"hi","id":"c1"}"#,
            r#"{"type":"direct","to":"bob","text":"hi","id":"c2"}"#,
            r#"{"type":"ping"}"#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert!(commands.is_valid(&value), "{text}");
            let mut without_id = value.clone();
            without_id.as_object_mut().unwrap().remove("id");
            serde_json::from_value::<Command>(without_id).expect("the server parses it");
        }
        for text in [
            r#"{"type":"subscribe","room":"project:P 1"}"#,
            r#"{"type":"message","room":"project:p1","text":""}"#,
            r#"{"type":"message","room":"user:bob","text":"hi"}"#,
            r#"{"type":"direct","to":"bob bob","text":"hi"}"#,
            r#"{"type":"direct","to":"bob","text":""}"#,
            r#"{"type":"ping","extra":1}"#,
            r#"{"type":"ping","id":{}}"#,
            r#"{"type":"shout"}"#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert!(
                !commands.is_valid(&value),
                "{text} is refused by the document"
            );
        }
    }
}
