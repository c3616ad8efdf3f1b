//! The plain-HTTP listener of a TLS server (`redirect_http_from`): every request is answered
//! with a permanent redirect to the same path over HTTPS, so `http://` links and typed
//! addresses still arrive. It serves nothing else, and sits behind the same accept loop (and
//! timeouts) as the main port.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// A router that redirects everything to `https://<host>:<https_port>` (the port left out when
/// it is 443).
pub fn router(https_port: u16) -> Router {
    Router::new().fallback(move |req: Request| async move { redirect(&req, https_port) })
}

fn redirect(req: &Request, https_port: u16) -> Response {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(hostname)
    else {
        return (StatusCode::BAD_REQUEST, "a Host header is needed").into_response();
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    match HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "a malformed Host header").into_response(),
    }
}

/// The host of a `Host` header, without its port (`[::1]:80` → `[::1]`).
fn hostname(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn location(host: &str, path: &str, port: u16) -> String {
        let res = router(port)
            .oneshot(
                Request::get(path)
                    .header("host", host)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
        res.headers()["location"].to_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn everything_goes_to_the_same_path_over_https() {
        assert_eq!(
            location("example.com", "/tasks?limit=5", 443).await,
            "https://example.com/tasks?limit=5"
        );
        assert_eq!(
            location("example.com:8080", "/", 8443).await,
            "https://example.com:8443/"
        );
        assert_eq!(
            location("[::1]:80", "/x", 3000).await,
            "https://[::1]:3000/x"
        );
    }
}
