//! Every response an integration test receives through [`super::TestApp`]'s client is checked
//! against `/openapi.json`: the operation the request matched must document the status, and a
//! JSON body must match the schema documented for that status. A test that gets an answer the
//! document does not promise fails there, with the request and the mismatch, so the document
//! cannot drift from what the server does in any scenario the suite drives (schemathesis covers
//! the scenarios it generates: tests/contract.rs).
//!
//! The same for the real-time side: [`check_frame`] holds every WebSocket and SSE frame the
//! real-time tests read to `/asyncapi.json`'s `ServerFrame` schema.
//!
//! Routes the document does not describe (the board's files, `/metrics`, `/openapi.json`
//! itself) pass unchecked; so do bodies of streaming media types (NDJSON, CSV, SSE), which are
//! read as streams by the tests that want them.
#![allow(dead_code)]

use jsonschema::{Draft, Validator};
use reqwest_middleware::{Middleware, Next};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Where the document is registered for `$ref` resolution.
const BASE: &str = "https://taskflow.invalid/openapi.json";

/// The document, fetched once from the first server a test starts (every server serves the same).
static DOCUMENT: OnceLock<Arc<Document>> = OnceLock::new();

/// The document and its compiled response schemas.
struct Document {
    doc: Value,
    /// `(pointer to a schema) -> validator`, compiled on first use.
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

impl Document {
    fn new(doc: Value) -> Self {
        Self {
            doc,
            validators: Mutex::default(),
        }
    }

    /// The operation for `method` and a concrete `path`: the template whose literal segments all
    /// match, preferring literals over parameters (`/tasks/next` over `/tasks/{id}`).
    fn operation(&self, method: &str, path: &str) -> Option<(String, &Value)> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(usize, String, &Value)> = None;
        for (template, item) in self.doc["paths"].as_object()? {
            let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut literals = 0;
            let matches = parts.iter().zip(&segments).all(|(t, s)| {
                if t.starts_with('{') {
                    !s.is_empty()
                } else {
                    literals += 1;
                    t == s
                }
            });
            let Some(operation) = item.get(method.to_ascii_lowercase()) else {
                continue;
            };
            if matches && best.as_ref().is_none_or(|(l, _, _)| literals > *l) {
                best = Some((literals, template.clone(), operation));
            }
        }
        best.map(|(_, template, operation)| (template, operation))
    }

    fn validator(&self, pointer: &str) -> Arc<Validator> {
        let cached = self
            .validators
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pointer)
            .cloned();
        if let Some(validator) = cached {
            return validator;
        }
        // A URI fragment: the template's braces are percent-encoded.
        let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
        let root = json!({ "$ref": format!("{BASE}#{fragment}") });
        let validator = Arc::new(
            jsonschema::options()
                .with_draft(Draft::Draft202012)
                .with_resource(BASE, Draft::Draft202012.create_resource(self.doc.clone()))
                .build(&root)
                .unwrap_or_else(|e| panic!("the schema at {pointer} compiles: {e}")),
        );
        self.validators
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pointer.to_owned(), validator.clone());
        validator
    }

    /// What is wrong with this answer, if anything.
    fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let Some((template, operation)) = self.operation(method, path) else {
            return Ok(());
        };
        let responses = &operation["responses"];
        let key = status.to_string();
        let Some(mut response) = responses.get(&key).or_else(|| responses.get("default")) else {
            let documented: Vec<&String> = responses
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            return Err(format!(
                "{method} {template} answered {status}, which it does not document (it documents {documented:?})"
            ));
        };
        let mut pointer = format!(
            "/paths/{}/{}/responses/{key}",
            escape(&template),
            method.to_ascii_lowercase()
        );
        if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
            pointer = reference.trim_start_matches('#').to_owned();
            response = self
                .doc
                .pointer(&pointer)
                .ok_or_else(|| format!("unresolved {reference}"))?;
        }
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" {
            return Ok(());
        }
        if response
            .pointer("/content/application~1json/schema")
            .is_none()
        {
            return Err(format!(
                "{method} {template} {status} answered JSON where the document has no JSON body"
            ));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{method} {template} {status}: the body is not JSON: {e}"))?;
        let pointer = format!("{pointer}/content/application~1json/schema");
        let validator = self.validator(&pointer);
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {template} {status}: the body does not match the document: {}\nbody: {value}",
                errors.join("; ")
            ))
        }
    }
}

/// A JSON pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The middleware [`super::TestApp`]'s client runs every request through.
pub struct Conformance;

#[async_trait::async_trait]
impl Middleware for Conformance {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let method = req.method().to_string();
        let url = req.url().clone();
        let client = reqwest::Client::new();
        let response = next.run(req, extensions).await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let streaming = matches!(
            essence,
            "text/event-stream" | "application/x-ndjson" | "text/csv"
        );
        let document = match DOCUMENT.get() {
            Some(document) => document.clone(),
            None => {
                let mut at = url.clone();
                at.set_path("/openapi.json");
                at.set_query(None);
                let doc: Value = client
                    .get(at)
                    .send()
                    .await
                    .expect("the server serves /openapi.json")
                    .json()
                    .await
                    .expect("the document is JSON");
                DOCUMENT
                    .get_or_init(|| Arc::new(Document::new(doc)))
                    .clone()
            }
        };
        let status = response.status().as_u16();
        if streaming || status == 101 {
            if let Err(problem) = document.check(&method, url.path(), status, "", &[]) {
                panic!("{problem}");
            }
            return Ok(response);
        }
        // Read the body to check it, then hand the test an identical response.
        let mut builder = http::Response::builder()
            .status(response.status())
            .version(response.version());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let body = response.bytes().await?;
        if let Err(problem) = document.check(&method, url.path(), status, &content_type, &body) {
            panic!("{problem}");
        }
        let rebuilt = builder.body(body).expect("the parts came from a response");
        Ok(reqwest::Response::from(rebuilt))
    }
}

/// Checks a frame a real-time test received against `/asyncapi.json` (`ServerFrame`, the union
/// of every frame): a frame the document does not describe fails the test that read it.
pub fn check_frame(frame: &Value) {
    static FRAMES: OnceLock<Validator> = OnceLock::new();
    let validator = FRAMES.get_or_init(|| {
        let mut root = taskflow_server::asyncapi();
        root["$ref"] = json!("#/components/schemas/ServerFrame");
        jsonschema::options()
            .with_draft(Draft::Draft7)
            .build(&root)
            .expect("the AsyncAPI schemas compile")
    });
    let errors: Vec<String> = validator
        .iter_errors(frame)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "a frame /asyncapi.json does not describe: {frame}\n{}",
        errors.join("\n")
    );
}
