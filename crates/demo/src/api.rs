//! One HTTP call against the server, timed, with what the answer says: the status, the headers
//! and the body as JSON. Chapters print the calls they want the reader to see ([`Answer::show`])
//! and keep the others quiet (setup, a thousand-request burst).

use anyhow::Context;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The server's REST API, as the admin unless a call says otherwise. Cheap to clone (the
/// connection pool is shared), so concurrent workers each hold one.
#[derive(Clone)]
pub struct Api {
    /// The pooled HTTP client.
    http: reqwest::Client,
    /// `http://host:port`, without a trailing slash.
    base: String,
    /// The admin token (it creates projects and mints the cast's tokens).
    admin: String,
}

impl Api {
    /// The API of the server at `base` (`http://host:port`). Proxies from the environment are
    /// ignored: the demo talks to the server directly.
    pub fn new(base: &str, admin: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            admin: admin.to_owned(),
        })
    }

    /// `http://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The admin token.
    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    /// The `ws://host:port/ws/tasks` endpoint of the same server.
    pub fn ws_url(&self) -> String {
        let rest = self.base.strip_prefix("http://").unwrap_or(&self.base);
        format!("ws://{rest}/ws/tasks")
    }

    /// A call as the admin.
    pub fn call(&self, method: Method, path: &str) -> Call {
        self.call_as(&self.admin, method, path)
    }

    /// A call with `token` (a user's).
    pub fn call_as(&self, token: &str, method: Method, path: &str) -> Call {
        Call {
            label: format!("{method} {path}"),
            request: self
                .http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(token),
        }
    }

    /// A call without any token (the auth layer's 401, the public routes).
    pub fn call_anonymous(&self, method: Method, path: &str) -> Call {
        Call {
            label: format!("{method} {path}"),
            request: self.http.request(method, format!("{}{path}", self.base)),
        }
    }

    /// The underlying client, for streaming bodies.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// A request being built; [`Call::send`] sends it.
pub struct Call {
    /// `METHOD /path`, as printed.
    label: String,
    /// The request.
    request: RequestBuilder,
}

impl Call {
    /// With a JSON body.
    pub fn json(mut self, body: &Value) -> Self {
        self.request = self.request.json(body);
        self
    }

    /// With a raw body and its content type.
    pub fn body(mut self, content_type: &str, body: impl Into<reqwest::Body>) -> Self {
        self.request = self
            .request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self
    }

    /// With a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    /// Sends it and reads the whole answer.
    pub async fn send(self) -> anyhow::Result<Answer> {
        let start = Instant::now();
        let response = self
            .request
            .send()
            .await
            .with_context(|| format!("{} failed", self.label))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("{}: the answer could not be read", self.label))?;
        let elapsed = start.elapsed();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            label: self.label,
            status,
            headers,
            body,
            elapsed,
        })
    }

    /// Sends it and hands back the response unread, for streams.
    pub async fn stream(self) -> anyhow::Result<reqwest::Response> {
        self.request
            .send()
            .await
            .with_context(|| format!("{} failed", self.label))
    }
}

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    /// `METHOD /path` of the request.
    pub label: String,
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// The body as JSON (`null` when empty or not JSON).
    pub body: Value,
    /// From sending the request to the end of the body.
    pub elapsed: Duration,
}

impl Answer {
    /// Prints `METHOD /path -> status (time)`.
    pub fn show(&self) -> &Self {
        crate::show::request(&self.label, self.status, self.elapsed);
        self
    }

    /// Fails unless the status is `expected`, naming the error code the server gave.
    pub fn expect(&self, expected: u16) -> anyhow::Result<&Self> {
        anyhow::ensure!(
            self.status.as_u16() == expected,
            "{} answered {} (expected {expected}): {}",
            self.label,
            self.status.as_u16(),
            crate::show::brief(&self.body)
        );
        Ok(self)
    }

    /// The error code of an error body (`error.code`), if any.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_value(self.body.clone())
            .with_context(|| format!("{}: unexpected answer {}", self.label, self.body))
    }
}
