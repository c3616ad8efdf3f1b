//! Health, readiness and metrics: unauthenticated, for load balancers and scrapers.

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::render_metrics;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use taskflow_protocol::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The process is up (it answers); says nothing about its dependencies.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")))]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The server can do its work: the store answers.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "ready"), (status = 503, body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.store().ping().await {
        Ok(()) => Ok(Json(json!({ "status": "ready", "store": "ok" }))),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: store unreachable");
            Err(ApiError::Unavailable("the store is unreachable"))
        }
    }
}

/// Prometheus text format.
pub(crate) async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(),
    )
}
