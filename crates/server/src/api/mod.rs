//! The REST API: one module per resource, each exposing `router()`, merged here with the layers
//! every request goes through.

mod auth;
mod contract;
mod direct;
mod export;
mod fields;
mod health;
mod history;
pub(crate) mod import;
mod pages;
mod people;
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
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application: routes plus the layers every request passes.
pub(crate) fn router(state: AppState) -> Router {
    let config = state.config();
    let timeout = Duration::from_secs(config.request_timeout_secs);
    let [tasks, projects, people, direct, auth, export, import, health] = documented();
    let rest = OpenApiRouter::new()
        .merge(tasks)
        .merge(projects)
        .merge(people)
        .merge(direct)
        .merge(auth)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            fanout_admission,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ));
    let (routes, openapi) = OpenApiRouter::with_openapi(contract::ApiDoc::openapi())
        .merge(rest)
        .merge(export)
        // Imports write too, but stream for longer than the request timeout allows.
        .merge(import.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            fanout_admission,
        )))
        .merge(health)
        .split_for_parts();
    let openapi_json = contract::document(openapi).to_string();
    let routes = routes
        .route(
            "/openapi.json",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi_json,
                )
            }),
        )
        .route("/metrics", axum::routing::get(health::metrics))
        .merge(crate::transport::router())
        .merge(pages::router());
    with_layers(routes, &state).with_state(state)
}

/// Every route group the OpenAPI document describes, unlayered: [`router`] layers them, and
/// [`openapi`] documents them, so the document cannot miss a group the server serves.
fn documented() -> [OpenApiRouter<AppState>; 8] {
    [
        tasks::router(),
        projects::router(),
        people::router(),
        direct::router(),
        auth::router(),
        export::router(),
        import::router(),
        health::router(),
    ]
}

/// The OpenAPI document as `/openapi.json` serves it.
#[cfg(test)]
pub(crate) fn openapi() -> serde_json::Value {
    let mut all = OpenApiRouter::with_openapi(contract::ApiDoc::openapi());
    for group in documented() {
        all = all.merge(group);
    }
    contract::document(all.split_for_parts().1)
}

/// How long a write may wait for the fan-out to catch up.
const FANOUT_WAIT: Duration = Duration::from_secs(1);

/// Back-pressure from the fan-out to the publishers: a REST write (any method but GET, HEAD,
/// OPTIONS, TRACE) waits, at most [`FANOUT_WAIT`], while connections whose clients read are
/// behind on the events already committed (`hub::lag`), instead of adding to their queues until
/// healthy clients are cut off as slow consumers. Inside the request timeout.
async fn fanout_admission(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !request.method().is_safe() && state.hub().fanout_lag().caught_up(FANOUT_WAIT).await {
        crate::hub::metrics::write_held();
    }
    next.run(request).await
}

/// The layers every request passes, outermost first: request id, tracing span, error rendering,
/// CORS, panic catching, and (innermost, per route) metrics.
fn with_layers(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes.layer(axum::middleware::from_fn(track_http)).layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request<_>| {
                        // The path only: query strings may carry tokens and must not be logged.
                        let request_id =
                            req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
                    })
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn(render_errors))
            .layer(cors(&state.config().cors_origins))
            .layer(CatchPanicLayer::custom(panic_response)),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Keys;
    use crate::config::Config;
    use crate::store::Store;
    use axum::body::Body;
    use axum::routing::get;
    use std::sync::Arc;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_json_and_the_server_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            database: format!("sqlite://{}", dir.path().join("t.db").display()),
            ..Config::default()
        };
        let store = Store::connect(&config.database).await.unwrap();
        let keys = Keys::load(&config, &store).await.unwrap().keys;
        let hub = crate::hub::Hub::new(crate::hub::HubLimits {
            queue: crate::hub::session::QueueLimits {
                messages: 8,
                bytes: 1024,
            },
            max_connections: 1,
            max_connections_per_user: 1,
            max_subscriptions: 1,
            connection_threads: 0,
            compression: None,
            memberships: Default::default(),
        });
        let source = Arc::new(crate::broker::StoreSource(store.clone()));
        let dispatcher = crate::hub::dispatch::Dispatcher::new(
            hub,
            source,
            Duration::from_millis(10),
            String::new(),
            Vec::new(),
        );
        let state = AppState::new(store, keys, config, dispatcher);
        let routes = Router::new()
            .route("/boom", get(|| async { panic!("boom") as &str }))
            .route("/ok", get(|| async { "ok" }));
        let app = with_layers(routes, &state).with_state(state);

        let res = app
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(res.into_body(), 10_000).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert_eq!(
            body["error"]["message"], "internal server error",
            "opaque: no panic text"
        );
        assert_eq!(body["error"]["request_id"], request_id.as_str());

        let res = app
            .oneshot(Request::get("/ok").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
