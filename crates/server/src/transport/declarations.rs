//! `GET /taskflow.d.ts`: TypeScript declarations for `taskflow.js`, so editors and TypeScript
//! projects get the protocol's types with the library.
//!
//! The file is `web/taskflow.d.ts`, embedded like the library. Its first part, every command and
//! frame, is generated from the AsyncAPI document's schemas ([`super::asyncapi::schemas`], which
//! schemars derives from the protocol crate's types); the rest, the library's own API, is
//! written by hand. The test `the_declarations_are_generated_from_the_protocol` fails when the
//! generated part is not what the protocol's types give today, and rewrites it when run with
//! `TASKFLOW_BLESS=1`; `tsc` type-checks a usage file against the whole (tests/contract.rs).
//!
//! The rendering is ours rather than a crate's (`ts-rs` derives declarations from Rust types)
//! because it must come from the one set of schemas the AsyncAPI document publishes: a second
//! derive would be a second source, and `ts-rs` renders the protocol's `i64` offsets as `bigint`,
//! which is not what `JSON.parse` gives.

use axum::http::header;
use axum::response::IntoResponse;

/// The declarations, as written in `web/taskflow.d.ts`.
const SOURCE: &str = include_str!("../../../../web/taskflow.d.ts");

pub(super) async fn declarations() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/typescript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SOURCE,
    )
}

#[cfg(test)]
mod render {
    use serde_json::{Map, Value};
    use std::fmt::Write;

    /// Every schema as an exported type, in name order.
    pub(super) fn declarations(schemas: &Map<String, Value>) -> String {
        let mut names: Vec<&String> = schemas.keys().collect();
        names.sort();
        let mut out = String::new();
        for name in names {
            let schema = &schemas[name];
            doc(&mut out, schema, "");
            writeln!(out, "export type {name} = {};", ty(schema, "")).unwrap();
            out.push('\n');
        }
        out.trim_end().to_owned()
    }

    fn doc(out: &mut String, schema: &Value, indent: &str) {
        let Some(text) = schema["description"].as_str() else {
            return;
        };
        writeln!(out, "{indent}/**").unwrap();
        for line in text.lines() {
            writeln!(out, "{indent} * {}", line.replace("*/", "*\\/")).unwrap();
        }
        writeln!(out, "{indent} */").unwrap();
    }

    /// The TypeScript type of a schema. Panics on a construct it does not know, so a protocol
    /// change it cannot render fails the test instead of producing a wrong type.
    fn ty(schema: &Value, indent: &str) -> String {
        let object = schema.as_object().expect("a schema is an object");
        if let Some(Value::String(target)) = object.get("$ref") {
            return target
                .strip_prefix("#/components/schemas/")
                .expect("references point into the components")
                .to_owned();
        }
        if let Some(value) = object.get("const") {
            return value.to_string();
        }
        if let Some(Value::Array(values)) = object.get("enum") {
            return values
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(" | ");
        }
        for (keyword, joiner) in [("oneOf", " | "), ("anyOf", " | "), ("allOf", " & ")] {
            if let Some(Value::Array(parts)) = object.get(keyword) {
                let rendered: Vec<String> = parts
                    .iter()
                    .map(|part| {
                        let t = ty(part, indent);
                        if joiner == " & " && t.contains(" | ") {
                            format!("({t})")
                        } else {
                            t
                        }
                    })
                    .collect();
                return rendered.join(joiner);
            }
        }
        match object.get("type") {
            None => "unknown".to_owned(),
            Some(Value::Array(types)) => types
                .iter()
                .map(|t| primitive(t.as_str().expect("type names"), schema, indent))
                .collect::<Vec<_>>()
                .join(" | "),
            Some(Value::String(t)) => primitive(t, schema, indent),
            Some(other) => panic!("unknown type {other}"),
        }
    }

    fn primitive(name: &str, schema: &Value, indent: &str) -> String {
        match name {
            "string" => "string".to_owned(),
            "integer" | "number" => "number".to_owned(),
            "boolean" => "boolean".to_owned(),
            "null" => "null".to_owned(),
            "array" => {
                let item = ty(&schema["items"], indent);
                if item.contains(' ') {
                    format!("Array<{item}>")
                } else {
                    format!("{item}[]")
                }
            }
            "object" => object(schema, indent),
            other => panic!("unknown type {other}"),
        }
    }

    fn object(schema: &Value, indent: &str) -> String {
        let inner = format!("{indent}  ");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut out = String::from("{\n");
        if let Some(properties) = schema["properties"].as_object() {
            // The tag first, then the rest as the schema lists them.
            let mut keys: Vec<&String> = properties.keys().collect();
            keys.sort_by_key(|k| k.as_str() != "type");
            for key in keys {
                let property = &properties[key];
                doc(&mut out, property, &inner);
                let optional = if required.contains(&key.as_str()) {
                    ""
                } else {
                    "?"
                };
                writeln!(out, "{inner}{key}{optional}: {};", ty(property, &inner)).unwrap();
            }
        }
        match schema.get("additionalProperties") {
            Some(Value::Bool(false)) | None => {}
            Some(Value::Bool(true)) => writeln!(out, "{inner}[key: string]: unknown;").unwrap(),
            Some(values) => writeln!(out, "{inner}[key: string]: {};", ty(values, &inner)).unwrap(),
        }
        if out == "{\n" {
            return if matches!(schema.get("additionalProperties"), Some(Value::Bool(false))) {
                "Record<string, never>".to_owned()
            } else {
                "Record<string, unknown>".to_owned()
            };
        }
        out.push_str(indent);
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated part of the file lies between these lines.
    const BEGIN: &str = "// --- protocol: generated from the protocol crate's types; do not edit (see transport/declarations.rs) ---";
    const END: &str = "// --- end of protocol ---";

    /// The generated part of `web/taskflow.d.ts` is what the protocol's types give now.
    #[test]
    fn the_declarations_are_generated_from_the_protocol() {
        let generated = render::declarations(&super::super::asyncapi::schemas());
        let start = SOURCE
            .find(BEGIN)
            .expect("the file marks its generated part")
            + BEGIN.len();
        let end = SOURCE
            .find(END)
            .expect("the file marks the end of its generated part");
        let current = SOURCE[start..end].trim();
        if current != generated {
            if std::env::var_os("TASKFLOW_BLESS").is_some() {
                let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/taskflow.d.ts");
                let updated = format!("{}\n{generated}\n{}", &SOURCE[..start], &SOURCE[end..]);
                std::fs::write(path, updated).expect("web/taskflow.d.ts is writable");
                return;
            }
            panic!(
                "web/taskflow.d.ts does not declare the protocol's types as they are; rerun with \
                 TASKFLOW_BLESS=1 to regenerate its protocol part:\n{generated}"
            );
        }
    }

    /// The declarations name every command and frame the document publishes.
    #[test]
    fn every_message_is_declared() {
        let doc = super::super::asyncapi::document();
        for message in doc["components"]["messages"].as_object().unwrap().values() {
            let Some(Value::String(target)) = message["payload"].get("$ref") else {
                continue;
            };
            let name = target.rsplit('/').next().unwrap();
            assert!(
                SOURCE.contains(&format!("export type {name} = ")),
                "{name} is declared"
            );
        }
    }

    use serde_json::Value;
}
