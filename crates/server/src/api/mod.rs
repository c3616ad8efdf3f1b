//! The REST API: one module per resource, each exposing `router()`, merged here with the layers
//! every request goes through.

mod auth;
mod export;
mod health;
mod import;
mod projects;
mod tasks;

use crate::error::{panic_response, render_errors};
use crate::state::AppState;
use crate::telemetry::track_http;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(title = "Taskflow", description = "Tasks, projects, dependencies and the event log."),
    modifiers(&BearerAuth),
    tags(
        (name = "tasks", description = "Tasks, the priority queue and dependencies"),
        (name = "projects", description = "Projects and their members"),
        (name = "auth", description = "Tokens"),
        (name = "io", description = "Streaming export and import"),
        (name = "ops", description = "Health and readiness"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
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
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application: routes plus the layers every request passes.
pub(crate) fn router(state: AppState) -> Router {
    let config = state.config();
    let timeout = Duration::from_secs(config.request_timeout_secs);
    let rest = OpenApiRouter::new()
        .merge(tasks::router())
        .merge(projects::router())
        .merge(auth::router())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ));
    let (routes, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(rest)
        .merge(export::router())
        .merge(import::router())
        .merge(health::router())
        .split_for_parts();
    let openapi_json = openapi.to_json().expect("the OpenAPI document serializes");
    routes
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json) }),
        )
        .route("/metrics", axum::routing::get(health::metrics))
        .layer(axum::middleware::from_fn(track_http))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    // The path only: query strings may carry tokens and must not reach the logs.
                    let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(axum::middleware::from_fn(render_errors))
                .layer(cors(&config.cors_origins))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            axum::http::header::IF_MATCH,
            REQUEST_ID,
        ])
        .expose_headers([axum::http::header::ETAG, REQUEST_ID])
        .max_age(Duration::from_secs(600))
}
