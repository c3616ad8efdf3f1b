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

/// The server can do its work: the store answers. In a cluster the answer also says whether the
/// broker (Redis) is connected; a node whose broker is down still serves its clients (its own
/// writes at once, the other nodes' through the log), so that is `degraded`, still 200: taking
/// every node out of the load balancer because Redis is down would serve nobody. `pools` shows
/// the database pools (open, idle, the most they may open) and `acquire_ms` how long this check
/// waited for a connection: a saturated pool shows here before queries fail.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "ready, or degraded (broker down)"), (status = 503, body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.store().ping().await {
        Ok(acquired) => {
            let mut answer = match state.cluster() {
                None => json!({ "status": "ready", "store": "ok", "broker": "local" }),
                Some(cluster) if cluster.is_connected() => {
                    json!({ "status": "ready", "store": "ok", "broker": "ok", "node": cluster.node() })
                }
                Some(cluster) => {
                    json!({ "status": "degraded", "store": "ok", "broker": "unreachable", "node": cluster.node() })
                }
            };
            answer["pools"] = json!(state.store().pool_stats());
            answer["acquire_ms"] = json!(acquired.as_secs_f64() * 1000.0);
            Ok(Json(answer))
        }
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
