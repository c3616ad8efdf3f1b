//! Every failure a request can end in, and the one place they become HTTP answers.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` sets the status and attaches an
//! [`ErrorReport`] to the response. The [`render_errors`] middleware, outermost on the router,
//! turns that report into the JSON body with the request id, and also converts the plain-text
//! errors produced outside our handlers (unknown route, wrong method, a rejected path parameter,
//! a panic) into the same shape, so a client sees one error format whatever failed.

use crate::domain::Invalid;
use crate::store::{DependencyError, StoreError};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use taskflow_protocol::{ErrorBody, ErrorDetail};

/// A request that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field has a wrong type or value.
    #[error("{field}: {message}")]
    InvalidField {
        /// The field path as the client spelled it (`priority`, `dependencies[2]`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The body is not JSON at all (or is empty).
    #[error("{0}")]
    MalformedJson(String),
    /// An import had bad lines; nothing was imported.
    #[error("the import has {total} invalid line(s); nothing was imported")]
    ImportRejected {
        /// The first bad lines: `{line, reason}`.
        lines: Vec<Value>,
        /// How many bad lines there were in all.
        total: u64,
    },
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Valid credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing named does not exist.
    #[error("{message}")]
    NotFound {
        /// `task_not_found`, `project_not_found`, ...
        code: &'static str,
        /// Which thing.
        message: String,
    },
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// `dependency_cycle`, `has_dependents`, `project_exists`, ...
        code: &'static str,
        /// What conflicts.
        message: String,
        /// The ids involved.
        details: Option<Value>,
    },
    /// `If-Match` named a version that is no longer current.
    #[error("the task is at version {current}, not {expected}")]
    VersionMismatch {
        /// The version the client sent.
        expected: i64,
        /// The current version.
        current: i64,
    },
    /// The body is larger than allowed.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit that applies to this route.
        limit: usize,
    },
    /// The body's content type is not one this route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The caller sent too many requests.
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request would be allowed.
        retry_after_secs: u64,
    },
    /// A plain request reached an endpoint that speaks only WebSocket.
    #[error("{0}")]
    UpgradeRequired(String),
    /// A WebSocket opening handshake that breaks RFC 6455 §4.1 (a bad key, no `Host`, HTTP/1.0).
    #[error("{message}")]
    BadHandshake {
        /// `invalid_websocket_key`, `missing_host`, `http_version_not_supported`.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A dependency (the database) is not available.
    #[error("{0}")]
    Unavailable(&'static str),
    /// This node cannot take a real-time connection now; this node a little later, or another
    /// node, can (`transport::gate`).
    #[error("{}", reason.message())]
    Busy {
        /// Why not now.
        reason: BusyReason,
        /// Seconds the client should wait before it tries again.
        retry_after_secs: u64,
    },
    /// The client's address already holds `max_connections_per_ip` connections (answered by
    /// the listener, before any route or authentication).
    #[error("too many connections from this address; retry in {retry_after_secs} s")]
    TooManyConnections {
        /// Seconds after which a retry may find a place.
        retry_after_secs: u64,
    },
    /// A bug or an unexpected failure; the client gets an opaque message, the log the cause.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Why a real-time connection is refused for now (503 with `Retry-After`; the reason is in the
/// error's `details`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyReason {
    /// Handshakes arrive faster than the node serves them (a reconnect storm).
    Overloaded,
    /// The node holds `ws_max_connections`.
    ServerFull,
    /// The caller holds `ws_max_connections_per_user`.
    UserFull,
    /// The node is draining: another node will take the connection.
    ShuttingDown,
}

impl BusyReason {
    /// The stable name in `details.reason` and in the `handshakes_refused_total` metric.
    pub fn code(self) -> &'static str {
        match self {
            BusyReason::Overloaded => "overloaded",
            BusyReason::ServerFull => "server_full",
            BusyReason::UserFull => "user_full",
            BusyReason::ShuttingDown => "shutting_down",
        }
    }

    fn message(self) -> &'static str {
        match self {
            BusyReason::Overloaded => "the server is busy with other connections; retry later",
            BusyReason::ServerFull => "the server is at its connection limit; retry later",
            BusyReason::UserFull => "too many connections for this user",
            BusyReason::ShuttingDown => "the server is shutting down; reconnect",
        }
    }
}

impl From<crate::hub::AdmitError> for BusyReason {
    fn from(err: crate::hub::AdmitError) -> Self {
        match err {
            crate::hub::AdmitError::ServerFull => BusyReason::ServerFull,
            crate::hub::AdmitError::UserFull => BusyReason::UserFull,
            crate::hub::AdmitError::ShuttingDown => BusyReason::ShuttingDown,
        }
    }
}

/// What [`ApiError::into_response`] leaves for [`render_errors`] to put in the body.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    code: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidField { .. }
            | ApiError::MalformedJson(_)
            | ApiError::ImportRejected { .. }
            | ApiError::BadHandshake { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::VersionMismatch { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_)
            | ApiError::Busy { .. }
            | ApiError::TooManyConnections { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn report(&self) -> ErrorReport {
        let (code, details) = match self {
            ApiError::InvalidField { field, .. } => {
                ("invalid_field", Some(json!({ "field": field })))
            }
            ApiError::MalformedJson(_) => ("malformed_json", None),
            ApiError::ImportRejected { lines, total } => (
                "import_rejected",
                Some(json!({ "lines": lines, "total": total })),
            ),
            ApiError::Unauthorized(_) => ("unauthorized", None),
            ApiError::Forbidden(_) => ("forbidden", None),
            ApiError::NotFound { code, .. } => (*code, None),
            ApiError::Conflict { code, details, .. } => (*code, details.clone()),
            ApiError::VersionMismatch { current, .. } => (
                "version_mismatch",
                Some(json!({ "current_version": current })),
            ),
            ApiError::PayloadTooLarge { limit } => {
                ("payload_too_large", Some(json!({ "limit": limit })))
            }
            ApiError::UnsupportedMediaType(_) => ("unsupported_media_type", None),
            ApiError::RateLimited { retry_after_secs } => (
                "rate_limited",
                Some(json!({ "retry_after_secs": retry_after_secs })),
            ),
            ApiError::Unavailable(_) => ("unavailable", None),
            ApiError::Busy {
                reason,
                retry_after_secs,
            } => (
                "unavailable",
                Some(json!({ "reason": reason.code(), "retry_after_secs": retry_after_secs })),
            ),
            ApiError::TooManyConnections { .. } => ("too_many_connections", None),
            ApiError::UpgradeRequired(_) => ("upgrade_required", None),
            ApiError::BadHandshake { code, .. } => (*code, None),
            ApiError::Internal(_) => ("internal", None),
        };
        let message = match self {
            ApiError::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        };
        ErrorReport {
            code,
            message,
            details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            // Logged once, inside the request's span; the client gets an opaque message.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let mut response = self.status().into_response();
        if let ApiError::RateLimited { retry_after_secs }
        | ApiError::TooManyConnections { retry_after_secs }
        | ApiError::Busy {
            retry_after_secs, ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if let ApiError::Unauthorized(_) = &self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(self.report());
        response
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        ApiError::InvalidField {
            field: invalid.field.to_owned(),
            message: invalid.message,
        }
    }
}

impl From<crate::direct::DirectError> for ApiError {
    fn from(err: crate::direct::DirectError) -> Self {
        use crate::direct::DirectError;
        match err {
            DirectError::Invalid(invalid) => invalid.into(),
            DirectError::NoSharedProject(_) => ApiError::Forbidden(err.to_string()),
            DirectError::Store(store) => store.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        match err {
            StoreError::TaskNotFound(_) => ApiError::NotFound { code: "task_not_found", message },
            StoreError::DocNotFound(_) => ApiError::NotFound { code: "document_not_found", message },
            StoreError::ProjectNotFound(_) => ApiError::NotFound { code: "project_not_found", message },
            StoreError::ProjectExists(_) => ApiError::Conflict { code: "project_exists", message, details: None },
            StoreError::TaskExists(id) => ApiError::Conflict {
                code: "task_exists",
                message,
                details: Some(json!({ "id": id })),
            },
            StoreError::StaleVersion { expected, current } => ApiError::VersionMismatch { expected, current },
            StoreError::HasDependents(ids) => ApiError::Conflict {
                code: "has_dependents",
                message: format!("tasks {} depend on this task; delete with ?cascade=true to remove those dependencies", join(&ids)),
                details: Some(json!({ "dependents": ids })),
            },
            StoreError::Dependency(dep) => dep.into(),
            StoreError::Database(ref db) if is_busy(db) => ApiError::Unavailable("the database is busy; retry"),
            StoreError::NotCommitted(Some(ref db)) if is_busy(db) => ApiError::Unavailable("the database is busy; retry"),
            StoreError::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => ApiError::Conflict {
                code: "conflict",
                message: "a concurrent request created the same thing; retry".into(),
                details: None,
            },
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<DependencyError> for ApiError {
    fn from(err: DependencyError) -> Self {
        let message = err.to_string();
        match err {
            // Both are about the tasks named, not the request's shape: a well-formed request
            // that meets this state is a conflict (409), as a longer cycle is.
            DependencyError::OnItself => ApiError::Conflict {
                code: "dependency_cycle",
                message,
                details: None,
            },
            DependencyError::OtherProject { .. } => ApiError::Conflict {
                code: "dependency_other_project",
                message,
                details: None,
            },
            DependencyError::Missing(_) => ApiError::NotFound {
                code: "dependency_not_found",
                message,
            },
            DependencyError::NoSuchEdge(_) => ApiError::NotFound {
                code: "dependency_not_found",
                message,
            },
            DependencyError::Cycle(cycle) => ApiError::Conflict {
                code: "dependency_cycle",
                message: format!("the dependency would close the cycle {}", join(&cycle)),
                details: Some(json!({ "cycle": cycle })),
            },
        }
    }
}

/// The database was busy (a pool wait timed out, or a lock or serialization conflict): a retry
/// may succeed. Also said of a write whose shared (group) commit failed that way.
fn is_busy(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => is_transient(db.code().as_deref()),
        _ => false,
    }
}

/// PostgreSQL deadlock and serialization failures, SQLite's busy and locked: a retry may succeed.
fn is_transient(code: Option<&str>) -> bool {
    matches!(code, Some("40P01" | "40001" | "5" | "6" | "517"))
}

fn join(ids: &[uuid::Uuid]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" → ")
}

/// The request id of the request being handled, set by the request-id layer.
fn request_id(req: &Request) -> Option<String> {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// An error answered outside the router, by the listener before any route runs: the same JSON
/// body as [`render_errors`] gives, without a request id (no request was accepted).
pub(crate) fn render_outside_router(err: ApiError) -> Response {
    let report = err.report();
    let (mut parts, _) = err.into_response().into_parts();
    parts.extensions.remove::<ErrorReport>();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, error_body(report, None))
}

/// The JSON error body.
fn error_body(report: ErrorReport, request_id: Option<String>) -> Body {
    let body = ErrorBody {
        error: ErrorDetail {
            code: report.code.to_owned(),
            message: report.message,
            request_id,
            details: report.details,
        },
    };
    Body::from(serde_json::to_vec(&body).expect("error bodies serialize"))
}

/// Renders every error response as `{"error": {code, message, request_id, details}}`.
pub async fn render_errors(req: Request, next: Next) -> Response {
    let request_id = request_id(&req);
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let report = match parts.extensions.remove::<ErrorReport>() {
        Some(report) => report,
        None if is_json(&parts.headers) => return Response::from_parts(parts, body),
        None => {
            // An error from outside our handlers (axum's rejections are short plain text).
            let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text).trim().to_owned();
            generic_report(status, text)
        }
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, error_body(report, request_id))
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn generic_report(status: StatusCode, text: String) -> ErrorReport {
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => "timeout",
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    let message = if status.is_server_error() || text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    ErrorReport {
        code,
        message,
        details: None,
    }
}

/// The response for a panicking handler: 500, rendered like every other error.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = what, "a handler panicked");
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response
        .extensions_mut()
        .insert(ApiError::Internal(anyhow::anyhow!("panic")).report());
    response
}
