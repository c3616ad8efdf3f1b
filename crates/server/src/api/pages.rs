//! The live task board: plain HTML, CSS and ES modules from `web/board/`, embedded in the binary
//! (no build step, nothing loaded from elsewhere, so it works offline on a LAN). `/` serves the
//! page, `/board/<file>` its assets. Every answer carries a strict Content-Security-Policy: no
//! inline script or style, nothing from another origin, no framing.

use crate::error::ApiError;
use axum::extract::Path;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// What the page may load and connect to: its own origin only (WebSockets included; `'self'`
/// does not cover `ws:` in every browser), scripts and styles from files, never inline.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page's files: name, content type, contents.
const FILES: &[(&str, &str, &str)] = &[
    (
        "board.css",
        CSS,
        include_str!("../../../../web/board/board.css"),
    ),
    ("app.js", JS, include_str!("../../../../web/board/app.js")),
    ("api.js", JS, include_str!("../../../../web/board/api.js")),
    (
        "board.js",
        JS,
        include_str!("../../../../web/board/board.js"),
    ),
    (
        "people.js",
        JS,
        include_str!("../../../../web/board/people.js"),
    ),
    (
        "direct.js",
        JS,
        include_str!("../../../../web/board/direct.js"),
    ),
    (
        "status.js",
        JS,
        include_str!("../../../../web/board/status.js"),
    ),
    (
        "admin.js",
        JS,
        include_str!("../../../../web/board/admin.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../../../../web/board/icon.svg"),
    ),
];
const INDEX: &str = include_str!("../../../../web/board/index.html");
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/board/{file}", get(asset))
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, body)| page(content_type, body))
        .ok_or_else(|| ApiError::NotFound {
            code: "not_found",
            message: format!("no board file {file}"),
        })
}

/// An answer with the page's security headers. `no-cache`: a new binary's page is never mixed
/// with an old one's modules (the browser revalidates; the files are small).
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `web/board/` is served: a module added there and not here would be a 404
    /// that breaks the page's imports.
    #[test]
    fn every_board_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/board");
        for entry in std::fs::read_dir(dir).expect("web/board") {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name == "index.html" {
                continue;
            }
            assert!(
                FILES.iter().any(|(file, _, _)| *file == name),
                "web/board/{name} is not in pages::FILES"
            );
        }
    }
}
