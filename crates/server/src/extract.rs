//! Request extractors whose rejections are [`ApiError`]s, so malformed input gets the same JSON
//! error shape as everything else, naming the field at fault.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use bytes::BytesMut;
use futures::StreamExt;
use serde::de::DeserializeOwned;

/// A JSON body, like `axum::Json`, with errors that name the field (`priority: invalid type`).
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config().max_body_bytes;
        if declared_length(req.headers()).is_some_and(|len| len > limit + DRAIN_CAP) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        if !has_content_type(req.headers(), &["application/json"]) {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json".into(),
            ));
        }
        let bytes = read_limited(req.into_body(), limit).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// How much of an oversized body the server still reads (and discards) before answering 413.
/// Closing the connection with unread data makes the kernel reset it, and a client still writing
/// then never sees the answer; reading on a little lets it. Bodies declared larger than this are
/// refused at once.
pub(crate) const DRAIN_CAP: usize = 16 * 1024 * 1024;

/// Reads a whole body of at most `limit` bytes; a larger one is drained (up to [`DRAIN_CAP`])
/// and refused with 413.
pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::MalformedJson(format!("could not read the request body: {e}"))
        })?;
        seen += chunk.len();
        if seen > limit {
            buf = BytesMut::new();
            if seen > limit + DRAIN_CAP {
                break;
            }
        } else {
            buf.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(buf.freeze())
}

/// Parses JSON, telling a syntax error (`malformed_json`) from a wrong field
/// (`invalid_field`, with the path to the field).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson(
            "the request body is empty; expected a JSON object".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::InvalidField {
                field: if path == "." { "body".into() } else { path },
                message: inner.to_string(),
            },
            _ => ApiError::MalformedJson(format!("malformed JSON: {inner}")),
        }
    })
}

/// True when the request's content type (ignoring parameters) is one of `accepted`.
pub(crate) fn has_content_type(headers: &HeaderMap, accepted: &[&str]) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    accepted.iter().any(|a| essence.eq_ignore_ascii_case(a))
}

/// The `Content-Length` the client declared, if any.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Query parameters, like `axum::extract::Query`, rejected as `invalid_field`.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|err| ApiError::InvalidField {
                field: err.path().to_string(),
                message: err.into_inner().to_string(),
            })
    }
}
