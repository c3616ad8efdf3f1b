//! `/openapi.json`: the contract clients are generated from and schema-based testers check.
//!
//! utoipa derives the skeleton from the handlers (`#[utoipa::path]`) and the body types
//! (`ToSchema`). This module then states what those derives cannot know, once, from the same
//! values the server runs on:
//! - the constraints of every validated string and number, from [`crate::domain::rules`] (the
//!   validators' own rules), on body properties and on path and query parameters;
//! - the error answers every operation can give: 401 and 429 (with `Retry-After`) wherever a
//!   token is checked, 400 wherever there is input, 413/415 wherever a body is read, 503
//!   everywhere (the request timeout, the store), each with the one error body;
//! - the media types of the streaming routes (NDJSON and CSV, `text/event-stream`) and the
//!   real-time transports, which are plain axum routes;
//! - links between operations, so a stateful tester (and a reader) chains real ids.
//!
//! The post-processing works on the JSON value rather than utoipa's builders: each patch names
//! the schema or operation it changes and panics at start-up if that is gone, and the test
//! `every_patch_lands` keeps them honest.

use crate::domain::rules::{self, IntRule, TextRule};
use serde_json::{json, Map, Value};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Taskflow", description = "Tasks, projects, dependencies and the event log. \
        The real-time transports (`/ws/tasks`, `/events`, `/poll`) are listed here as HTTP \
        operations; their messages are described by the AsyncAPI document at `/asyncapi.json`."),
    modifiers(&Security),
    components(schemas(super::import::ImportLine)),
    tags(
        (name = "tasks", description = "Tasks, the priority queue and dependencies"),
        (name = "projects", description = "Projects, their members, chat and presence"),
        (name = "users", description = "Direct messages between users"),
        (name = "auth", description = "Tokens"),
        (name = "io", description = "Streaming export and import"),
        (name = "realtime", description = "WebSocket, Server-Sent Events and long polling"),
        (name = "ops", description = "Health and readiness"),
    )
)]
pub(crate) struct ApiDoc;

/// The two ways a token travels: the `Authorization` header everywhere, and `?access_token=` on
/// the real-time routes (browsers' WebSocket and EventSource cannot set headers).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "access_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("access_token"))),
        );
    }
}

/// The finished document.
pub(crate) fn document(openapi: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(openapi).expect("the OpenAPI document serializes");
    add_realtime(&mut doc);
    constrain_bodies(&mut doc);
    constrain_parameters(&mut doc);
    streaming_media(&mut doc);
    health_bodies(&mut doc);
    error_answers(&mut doc);
    add_links(&mut doc);
    doc
}

/// A schema property the validators constrain: `(schema, property, rule, nullable)`. `nullable`
/// where `null` is accepted (it means "absent" or "clear").
const TEXT_FIELDS: &[(&str, &str, &TextRule, bool)] = &[
    ("CreateTask", "title", &rules::TITLE, false),
    ("CreateTask", "description", &rules::DESCRIPTION, true),
    ("CreateTask", "project_id", &rules::PROJECT_ID, true),
    ("CreateTask", "assignee", &rules::USER_ID, true),
    ("UpdateTask", "title", &rules::TITLE, false),
    ("UpdateTask", "description", &rules::DESCRIPTION, true),
    ("UpdateTask", "assignee", &rules::USER_ID, true),
    ("ImportLine", "id", &rules::TASK_ID, true),
    ("ImportLine", "title", &rules::TITLE, false),
    ("ImportLine", "description", &rules::DESCRIPTION, true),
    ("ImportLine", "project_id", &rules::PROJECT_ID, true),
    ("ImportLine", "assignee", &rules::USER_ID, true),
    ("CreateProject", "id", &rules::PROJECT_ID, true),
    ("CreateProject", "name", &rules::PROJECT_NAME, false),
    ("PostMessage", "text", &rules::CHAT_TEXT, false),
    ("PostMessage", "id", &rules::MESSAGE_ID, true),
    ("PostDirect", "text", &rules::CHAT_TEXT, false),
    ("PostDirect", "id", &rules::MESSAGE_ID, true),
    ("TokenRequest", "user", &rules::USER_ID, false),
];

/// Numbers the validators bound: `(schema, property, rule, nullable)`.
const INT_FIELDS: &[(&str, &str, &IntRule, bool)] = &[
    ("CreateTask", "priority", &rules::PRIORITY, true),
    ("UpdateTask", "priority", &rules::PRIORITY, false),
    ("ImportLine", "priority", &rules::PRIORITY, true),
    ("TokenRequest", "ttl_secs", &rules::TOKEN_TTL, true),
];

/// Array items the validators constrain: `(schema, property, rule)`.
const ITEM_FIELDS: &[(&str, &str, &TextRule)] = &[
    ("CreateProject", "members", &rules::USER_ID),
    ("ImportLine", "dependencies", &rules::TASK_ID),
];

/// Fields that must be present: `(schema, properties)`.
const REQUIRED: &[(&str, &[&str])] = &[
    ("CreateTask", &["title"]),
    ("ImportLine", &["title"]),
    ("CreateProject", &["name"]),
];

/// Enum-valued fields that refuse `null` (a change that cannot clear them).
const NON_NULL_REFS: &[(&str, &str)] = &[("UpdateTask", "status")];

fn schema_mut<'a>(doc: &'a mut Value, name: &str) -> &'a mut Value {
    doc.pointer_mut(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("the document has no schema {name}"))
}

fn property_mut<'a>(doc: &'a mut Value, schema: &str, property: &str) -> &'a mut Value {
    schema_mut(doc, schema)
        .pointer_mut(&format!("/properties/{property}"))
        .unwrap_or_else(|| panic!("schema {schema} has no property {property}"))
}

/// Replaces a property's type and constraints, keeping its description.
fn replace(slot: &mut Value, mut schema: Value, nullable: bool) {
    if nullable {
        let ty = schema["type"].take();
        schema["type"] = json!([ty, "null"]);
    }
    if let Some(description) = slot.get("description").cloned() {
        schema["description"] = description;
    }
    *slot = schema;
}

fn constrain_bodies(doc: &mut Value) {
    for (schema, property, rule, nullable) in TEXT_FIELDS {
        replace(
            property_mut(doc, schema, property),
            rule.schema(),
            *nullable,
        );
    }
    for (schema, property, rule, nullable) in INT_FIELDS {
        replace(
            property_mut(doc, schema, property),
            rule.schema(),
            *nullable,
        );
    }
    for (schema, property, rule) in ITEM_FIELDS {
        property_mut(doc, schema, property)["items"] = rule.schema();
    }
    for (schema, required) in REQUIRED {
        schema_mut(doc, schema)["required"] = json!(required);
    }
    for (schema, property) in NON_NULL_REFS {
        let slot = property_mut(doc, schema, property);
        let reference = slot["oneOf"]
            .as_array()
            .and_then(|one| one.iter().find(|s| s.get("$ref").is_some()))
            .cloned()
            .unwrap_or_else(|| panic!("{schema}.{property} is not a nullable reference"));
        *slot = reference;
    }
    // An empty change is refused: every property a PATCH may carry changes something.
    schema_mut(doc, "UpdateTask")["minProperties"] = json!(1);
}

/// The schema of a path or query parameter, by its name (and, for `id`, its resource).
fn parameter_schema(path: &str, name: &str) -> Option<Value> {
    Some(match name {
        "id" if path.starts_with("/projects") => rules::PROJECT_ID.schema(),
        "id" if path.starts_with("/users") => rules::USER_ID.schema(),
        "id" | "dep_id" => rules::TASK_ID.schema(),
        "project" => rules::PROJECT_ID.schema(),
        "user_id" | "assignee" => rules::USER_ID.schema(),
        "cursor" if path == "/tasks" => rules::TASK_CURSOR.schema(),
        "limit" => rules::PAGE_LIMIT.schema(),
        "status" => json!({ "$ref": "#/components/schemas/TaskStatus" }),
        "format" => json!({ "type": "string", "enum": ["ndjson", "csv"] }),
        "cascade" => json!({ "type": "boolean" }),
        "before" => json!({ "type": "integer", "format": "int64" }),
        "If-Match" => rules::IF_MATCH.schema(),
        _ => return None,
    })
}

/// Query parameters are optional and never `null` (a query string has no null); path parameters
/// carry their pattern.
fn constrain_parameters(doc: &mut Value) {
    for (path, item) in object_mut(&mut doc["paths"]) {
        for (_, operation) in object_mut(item) {
            let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for parameter in parameters {
                let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                if let Some(schema) = parameter_schema(path, &name) {
                    parameter["schema"] = schema;
                }
            }
        }
    }
}

fn object_mut(value: &mut Value) -> impl Iterator<Item = (&String, &mut Value)> {
    value.as_object_mut().into_iter().flat_map(Map::iter_mut)
}

/// The bodies that are not JSON: import takes NDJSON (one [`ImportLine`]-shaped object per line,
/// described as the array of its lines) or CSV; export answers either.
fn streaming_media(doc: &mut Value) {
    let line = json!({ "$ref": "#/components/schemas/ImportLine" });
    doc["paths"]["/tasks/import"]["post"]["requestBody"]["content"] = json!({
        "application/x-ndjson": {
            "schema": { "type": "array", "items": line,
                "description": "Each item is one line of the body; an empty body imports nothing." },
        },
        "text/csv": {
            "schema": { "type": "string",
                "description": "A header naming columns of the export (id, title, description, status, priority, project_id, assignee, dependencies; the read-only columns are ignored), then one task per record." },
        },
    });
    doc["paths"]["/tasks/export"]["get"]["responses"]["200"]["content"] = json!({
        "application/x-ndjson": { "schema": { "type": "string",
            "description": "One task per line, as `Task`." } },
        "text/csv": { "schema": { "type": "string",
            "description": "A header, then one task per record." } },
    });
}

/// The JSON the health routes answer (built with `json!` in `health.rs`, so no type to derive).
fn health_bodies(doc: &mut Value) {
    let json = |schema: Value| json!({ "application/json": { "schema": schema } });
    doc["paths"]["/healthz"]["get"]["responses"]["200"]["content"] = json(json!({
        "type": "object", "required": ["status"],
        "properties": { "status": { "const": "ok" } },
    }));
    doc["paths"]["/readyz"]["get"]["responses"]["200"]["content"] = json(json!({
        "type": "object", "required": ["status", "store", "broker", "pools", "acquire_ms"],
        "properties": {
            "status": { "enum": ["ready", "degraded"], "description": "`degraded`: the broker is unreachable; this node still serves." },
            "store": { "const": "ok" },
            "broker": { "enum": ["local", "ok", "unreachable"] },
            "node": { "type": "string", "description": "This node's id, in a cluster." },
            "pools": { "type": "array", "description": "The database pools: open, idle, the most they may open.",
                "items": { "type": "object", "required": ["pool", "max", "open", "idle"],
                    "properties": { "pool": { "type": "string" }, "max": { "type": "integer" },
                        "open": { "type": "integer" }, "idle": { "type": "integer" } } } },
            "acquire_ms": { "type": "number", "minimum": 0, "description": "How long this check waited for a connection." },
        },
    }));
}

/// The error answers shared by every operation, as named responses.
fn shared_responses() -> Value {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
        })
    };
    let retry_after = json!({
        "description": "Seconds to wait before trying again.",
        "schema": { "type": "integer", "minimum": 1 },
    });
    let mut limited = error("Too many requests from this caller (`rate_limited`).");
    limited["headers"] = json!({ "Retry-After": retry_after.clone() });
    let mut unavailable = error(
        "The store or the request timed out, or this transport is disabled (`unavailable`); may carry `Retry-After`.",
    );
    unavailable["headers"] = json!({ "Retry-After": retry_after });
    json!({
        "BadRequest": error("Invalid input: `invalid_field` names the field in `details.field`; `malformed_json`; `import_rejected` lists the bad lines."),
        "Unauthorized": error("No token, or an invalid or expired one (`unauthorized`)."),
        "Forbidden": error("The token does not allow this (`forbidden`)."),
        "NotFound": error("The task, project or route does not exist (`*_not_found`)."),
        "PayloadTooLarge": error("The body is larger than the route allows (`payload_too_large`)."),
        "UnsupportedMediaType": error("The body's `Content-Type` is not one this route reads (`unsupported_media_type`)."),
        "TooManyRequests": limited,
        "Unavailable": unavailable,
    })
}

/// Adds to every operation the errors it can answer that its annotation leaves out.
fn error_answers(doc: &mut Value) {
    doc["components"]["responses"] = shared_responses();
    for (_, item) in object_mut(&mut doc["paths"]) {
        for (_, operation) in object_mut(item) {
            let authenticated = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            let has_input =
                operation.get("parameters").is_some() || operation.get("requestBody").is_some();
            let has_body = operation.get("requestBody").is_some();
            let responses = operation["responses"]
                .as_object_mut()
                .expect("every operation has responses");
            let mut add = |status: &str, name: &str| {
                responses
                    .entry(status)
                    .or_insert_with(|| json!({ "$ref": format!("#/components/responses/{name}") }));
            };
            if has_input {
                add("400", "BadRequest");
            }
            if authenticated {
                add("401", "Unauthorized");
                add("429", "TooManyRequests");
            }
            if has_body {
                add("413", "PayloadTooLarge");
                add("415", "UnsupportedMediaType");
            }
            add("503", "Unavailable");
            // Error answers without a body description get the shared one's.
            for (status, response) in responses.iter_mut() {
                if status.starts_with(['4', '5'])
                    && response
                        .get("description")
                        .is_some_and(|d| d.as_str() == Some(""))
                {
                    response["description"] = json!(describe(status));
                }
            }
        }
    }
}

fn describe(status: &str) -> &'static str {
    match status {
        "400" => "Invalid input; `details.field` names the field.",
        "401" => "No valid token.",
        "403" => "The token does not allow this.",
        "404" => "Not found.",
        "409" => "Conflicts with the current state (a cycle, dependents, an existing id).",
        "412" => "`If-Match` names a version that is no longer current (`version_mismatch`).",
        "413" => "The body is too large.",
        "415" => "Unsupported `Content-Type`.",
        _ => "Error.",
    }
}

/// `(from operation, status, link name, to operation, parameters)`.
type LinkSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const LINKS: &[LinkSpec] = &[
    (
        "create_task",
        "201",
        "GetTask",
        "get_task",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_task",
        "201",
        "UpdateTask",
        "update_task",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_task",
        "201",
        "DeleteTask",
        "delete_task",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_task",
        "201",
        "AddDependency",
        "add_dependency",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_task",
        "201",
        "RemoveDependency",
        "remove_dependency",
        &[("id", "$response.body#/id")],
    ),
    (
        "get_task",
        "200",
        "UpdateTask",
        "update_task",
        &[("id", "$response.body#/id")],
    ),
    (
        "update_task",
        "200",
        "GetTask",
        "get_task",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_project",
        "201",
        "GetProject",
        "get_project",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_project",
        "201",
        "AddMember",
        "add_member",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_project",
        "201",
        "RemoveMember",
        "remove_member",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_project",
        "201",
        "Plan",
        "project_plan",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_project",
        "201",
        "Messages",
        "list_messages",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_project",
        "201",
        "PostMessage",
        "post_message",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_project",
        "201",
        "Presence",
        "presence",
        &[("id", "$response.body#/id")],
    ),
    (
        "create_project",
        "201",
        "ListTasks",
        "list_tasks",
        &[("project", "$response.body#/id")],
    ),
    (
        "list_tasks",
        "200",
        "NextPage",
        "list_tasks",
        &[("cursor", "$response.body#/next_cursor")],
    ),
    (
        "mint_token",
        "201",
        "AssignTo",
        "add_member",
        &[("user_id", "$response.body#/user")],
    ),
];

fn add_links(doc: &mut Value) {
    for (from, status, name, to, parameters) in LINKS {
        let operation = operation_mut(doc, from);
        let parameters: Map<String, Value> = parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let response = operation["responses"]
            .get_mut(*status)
            .unwrap_or_else(|| panic!("{from} has no {status} answer"));
        response["links"][*name] = json!({ "operationId": to, "parameters": parameters });
    }
    for (_, _, _, to, _) in LINKS {
        operation_mut(doc, to);
    }
}

fn operation_mut<'a>(doc: &'a mut Value, id: &str) -> &'a mut Value {
    let mut found = None;
    for (_, item) in object_mut(&mut doc["paths"]) {
        for (_, operation) in object_mut(item) {
            if operation["operationId"] == id {
                found = Some(operation);
            }
        }
    }
    found.unwrap_or_else(|| panic!("the document has no operation {id}"))
}

/// The real-time routes, which axum serves outside utoipa's router.
fn add_realtime(doc: &mut Value) {
    let rooms = json!({
        "name": "rooms", "in": "query", "required": true,
        "description": "Comma-separated rooms: `project:<id>`, `user:<id>` (your own; any for the admin), or `system` (the admin only: the `stats` frames of the server's dashboard).",
        "schema": rules::ROOM_LIST.schema(),
    });
    let token = json!({
        "name": "access_token", "in": "query", "required": false,
        "description": "The token, for clients that cannot set `Authorization` (browsers).",
        "schema": { "type": "string" },
    });
    let security = json!([{ "bearer": [] }, { "access_token": [] }]);
    let error = |description: &str| {
        json!({ "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } } })
    };
    let paths = doc["paths"].as_object_mut().expect("paths");
    paths.insert("/events".into(), json!({ "get": {
        "tags": ["realtime"], "operationId": "events",
        "summary": "Server-Sent Events: the rooms' events as they are committed, resumable with `Last-Event-ID`.",
        "parameters": [rooms.clone(), token.clone(),
            { "name": "last_event_id", "in": "query", "required": false, "schema": { "type": "string" },
              "description": "The `id:` of the last event received, for clients that cannot send `Last-Event-ID`; a cursor that cannot be honoured starts afresh with `recovered: false`." },
            { "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "string" },
              "description": "Sent by the browser on reconnect." }],
        "security": security.clone(),
        "responses": {
            "200": { "description": "An endless event stream; frames as in `/asyncapi.json`.",
                "content": { "text/event-stream": { "schema": {
                    "description": "One event (OpenAPI 3.1: the schema of each event of the stream).",
                    "type": "object", "required": ["data"],
                    "properties": {
                        "id": { "type": "string", "description": "A cursor of every room of the stream: send it back as `Last-Event-ID`." },
                        "event": { "type": "string" },
                        "retry": { "type": "integer" },
                        "data": { "type": "string", "contentMediaType": "application/json",
                            "contentSchema": { "$ref": "#/components/schemas/Frame" } },
                    },
                } } } },
            "403": error("A room the caller may not follow."),
            "404": error("A project that does not exist."),
        },
    }}));
    paths.insert("/poll".into(), json!({ "get": {
        "tags": ["realtime"], "operationId": "poll",
        "summary": "Long polling: the events after `cursor`, or waits up to `timeout` seconds for one.",
        "parameters": [rooms, token.clone(),
            { "name": "cursor", "in": "query", "required": false, "schema": { "type": "string" },
              "description": "The `cursor` of the previous answer; one that cannot be honoured answers `recovered: false` and the current cursor." },
            { "name": "timeout", "in": "query", "required": false,
              "schema": { "type": "integer", "minimum": 0, "maximum": 4294967295_u64 },
              "description": "Seconds to wait for an event, at most the server's `poll_timeout_secs`." }],
        "security": security.clone(),
        "responses": {
            "200": { "description": "Events and the cursor to pass next.",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/PollAnswer" } } } },
            "403": error("A room the caller may not follow."),
            "404": error("A project that does not exist."),
        },
    }}));
    paths.insert("/ws/tasks".into(), json!({ "get": {
        "tags": ["realtime"], "operationId": "ws_tasks",
        "summary": "The WebSocket endpoint (RFC 6455). A plain GET is told 426, or 503 with `Retry-After` when this node would refuse a connection now; the protocol is in `/asyncapi.json`.",
        "parameters": [token.clone(),
            { "name": "auto", "in": "query", "required": false,
              "schema": { "type": "string", "enum": ["true", "false", "1", "0"] },
              "description": "`false` to skip the automatic subscription to the caller's rooms." }],
        "security": security.clone(),
        "responses": {
            "101": { "description": "Switching Protocols: the WebSocket session." },
            "403": error("An Origin that may not open WebSocket connections."),
            "426": error("Upgrade Required: this route speaks only WebSocket (`upgrade_required`)."),
        },
    }}));
    paths.insert("/ws/docs/{doc}".into(), json!({ "get": {
        "tags": ["realtime"], "operationId": "ws_docs",
        "summary": "A task description as a collaborative Yjs document, over the y-websocket wire protocol (binary frames: sync steps 1 and 2, updates, awareness; docs/protocol.md, \"Collaborative documents\"). The npm `y-websocket` provider connects to `ws://HOST/ws/docs` with room `task:<id>` and `params: { access_token }`. A plain GET is told 426.",
        "parameters": [token.clone(),
            { "name": "doc", "in": "path", "required": true,
              "description": "`task:<id>`: the task whose description this is.",
              "schema": { "type": "string", "pattern": "^task:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$" } }],
        "security": security,
        "responses": {
            "101": { "description": "Switching Protocols: the document's editing session." },
            "401": error("No valid token."),
            "403": error("An Origin that may not open WebSocket connections, or a caller who is not a member of the task's project."),
            "404": error("Not a document name (`document_not_found`), or no such task (`task_not_found`)."),
            "426": error("Upgrade Required: this route speaks only WebSocket (`upgrade_required`)."),
        },
    }}));
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("schemas");
    schemas.insert(
        "Frame".into(),
        json!({
            "description": "A frame the server pushes, as on WebSocket; `/asyncapi.json` has each kind.",
            "type": "object", "required": ["type"],
            "properties": { "type": { "type": "string" } },
        }),
    );
    schemas.insert(
        "PollAnswer".into(),
        json!({
            "type": "object",
            "required": ["events", "cursor", "recovered"],
            "properties": {
                "events": { "type": "array", "items": { "$ref": "#/components/schemas/Frame" },
                    "description": "Event frames in offset order within each room, as on WebSocket; for `system`, the `stats` frames pushed while the poll waited (not logged: a poll sees those that come while it waits)." },
                "cursor": { "type": "string", "description": "Pass to the next poll." },
                "recovered": { "type": "boolean",
                    "description": "`false` when the cursor could not be honoured: reload through REST, go on from `cursor`." },
            },
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built() -> Value {
        super::super::openapi()
    }

    #[test]
    fn every_patch_lands_and_every_ref_resolves() {
        let doc = built();
        let text = doc.to_string();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\"$ref\":\"") {
            rest = &rest[at + 8..];
            let end = rest.find('"').unwrap();
            let target = &rest[..end];
            let pointer = target.strip_prefix('#').expect("local refs only");
            assert!(doc.pointer(pointer).is_some(), "unresolved {target}");
        }
    }

    #[test]
    fn every_authenticated_operation_documents_401_and_429() {
        let doc = built();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = &operation["responses"];
                assert!(responses.get("503").is_some(), "{method} {path}");
                if operation.get("security").is_some() {
                    for status in ["401", "429"] {
                        assert!(responses.get(status).is_some(), "{method} {path} {status}");
                    }
                }
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    assert!(
                        !parameter["schema"]["type"]
                            .as_array()
                            .is_some_and(|t| t.contains(&json!("null"))),
                        "{method} {path}: parameter {} is nullable",
                        parameter["name"]
                    );
                }
            }
        }
    }
}
