//! What a run needs on the server before it starts: projects to publish into, and users to
//! connect as. Each user holds at most [`CONNECTIONS_PER_USER`] connections, under the server's
//! default per-user limit, so the bench runs against a server with its default configuration.

use crate::target::Target;
use crate::BenchError;
use serde_json::{json, Value};

/// Connections one bench user opens at most (the server's default limit is 100).
pub const CONNECTIONS_PER_USER: usize = 50;

/// A user the bench connects as.
#[derive(Debug, Clone)]
pub struct BenchUser {
    /// The user id.
    pub id: String,
    /// Its bearer token.
    pub token: String,
}

/// REST calls against the target with the admin token.
#[derive(Clone)]
pub struct Setup {
    http: reqwest::Client,
    target: Target,
}

impl Setup {
    /// Setup calls against `target`.
    pub fn new(target: &Target) -> Self {
        Self {
            http: target.http_client(),
            target: target.clone(),
        }
    }

    /// Mints a member token for `user` (admin only).
    pub async fn user(&self, user: &str) -> Result<BenchUser, BenchError> {
        let body = self
            .call(
                reqwest::Method::POST,
                "/auth/tokens",
                json!({ "user": user, "role": "member", "ttl_secs": 24 * 3600 }),
            )
            .await?;
        let token = body["token"]
            .as_str()
            .ok_or_else(|| BenchError::Setup(format!("no token in {body}")))?;
        Ok(BenchUser {
            id: user.to_owned(),
            token: token.to_owned(),
        })
    }

    /// Creates project `id` unless it exists (several bench processes share their projects).
    pub async fn project(&self, id: &str) -> Result<(), BenchError> {
        match self
            .call(
                reqwest::Method::POST,
                "/projects",
                json!({ "id": id, "name": id }),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(BenchError::Setup(msg)) if msg.contains("project_exists") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Makes `user` a member of project `id`.
    pub async fn member(&self, id: &str, user: &str) -> Result<(), BenchError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/projects/{id}/members/{user}"),
            Value::Null,
        )
        .await
        .map(drop)
    }

    /// One REST call. A 429 is waited out for as long as the server asks (`Retry-After`), up to
    /// [`RATE_LIMITED_ATTEMPTS`] times: setting up thousands of users goes through the same
    /// per-caller rate limit as any client, and the bench must work against default limits.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, BenchError> {
        let mut attempt = 1;
        loop {
            let mut request = self
                .http
                .request(method.clone(), self.target.http(path))
                .bearer_auth(&self.target.token);
            if !body.is_null() {
                request = request.json(&body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| BenchError::Setup(format!("{path}: {e}")))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            let body_text: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(body_text);
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS && attempt < RATE_LIMITED_ATTEMPTS {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(retry_after.clamp(1, 10))).await;
                continue;
            }
            return Err(BenchError::Setup(format!("{path}: {status} {body_text}")));
        }
    }
}

/// How many times a rate-limited setup call is tried before the run gives up.
const RATE_LIMITED_ATTEMPTS: u32 = 30;

/// Mints users named `<prefix>-<k>` for `connections` connections, [`CONNECTIONS_PER_USER`]
/// each, optionally making them members of `project`.
pub async fn users_for(
    setup: &Setup,
    prefix: &str,
    connections: usize,
    project: Option<&str>,
) -> Result<Vec<BenchUser>, BenchError> {
    let count = connections.div_ceil(CONNECTIONS_PER_USER);
    let mut users = Vec::with_capacity(count);
    for k in 0..count {
        let user = setup.user(&format!("{prefix}-{k}")).await?;
        if let Some(project) = project {
            setup.member(project, &user.id).await?;
        }
        users.push(user);
    }
    Ok(users)
}

/// The user that connection `i` of a group connects as.
pub fn user_of(users: &[BenchUser], i: usize) -> &BenchUser {
    &users[(i / CONNECTIONS_PER_USER).min(users.len() - 1)]
}
