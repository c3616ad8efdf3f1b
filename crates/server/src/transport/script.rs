//! `GET /taskflow.js`: the browser client library, embedded in the binary (no build step, no
//! Node toolchain needed to run Taskflow).

use axum::http::header;
use axum::response::IntoResponse;

/// The library's source, as written in `web/taskflow.js`.
const SOURCE: &str = include_str!("../../../../web/taskflow.js");

pub(super) async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SOURCE,
    )
}
