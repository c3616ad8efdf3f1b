use crate::common::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use taskflow_server::auth::{Claims, Role};

crate::on_both_backends!(
    requests_without_a_valid_token_get_401,
    only_the_admin_mints_tokens
);

async fn requests_without_a_valid_token_get_401(app: TestApp) {
    let res = app.client.get(app.url("/tasks")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["request_id"].is_string());
    for bad in ["nope", "Bearer", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
        let res = app
            .client
            .get(app.url("/tasks"))
            .header("Authorization", format!("Bearer {bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{bad}");
    }
    // Health checks need no token.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn only_the_admin_mints_tokens(app: TestApp) {
    let alice = app.token_for("alice").await;
    let res = app
        .with(&alice, Method::POST, "/auth/tokens")
        .json(&json!({ "user": "mallory" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .admin(Method::POST, "/auth/tokens")
        .json(&json!({ "user": "boss", "ttl_secs": 60, "role": "admin" }))
        .send()
        .await
        .unwrap();
    let minted: Value = res.json().await.unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();
    let res = app
        .with(&token, Method::POST, "/auth/tokens")
        .json(&json!({ "user": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "an admin-role token may mint");
    // A token signed with the right key but expired is refused; the same one unexpired works.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |exp: u64| {
        let claims = Claims {
            sub: "alice".into(),
            role: Role::Member,
            exp,
            iat: now - 60,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"test-jwt-secret"),
        )
        .unwrap()
    };
    assert_eq!(
        app.with(&sign(now - 1), Method::GET, "/tasks")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.with(&sign(now + 60), Method::GET, "/tasks")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_generated_admin_token_is_stored_hashed_and_survives_restart() {
    let db = crate::common::TestDb::new(Backend::Sqlite).await;
    let config = taskflow_server::config::Config {
        database: db.url.clone(),
        ..Default::default()
    };
    let first = taskflow_server::Server::open(config.clone()).await.unwrap();
    let token = first
        .generated_admin_token()
        .expect("first start generates")
        .expose()
        .to_owned();
    let stored = first
        .state()
        .store()
        .meta("admin_token_sha256")
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.contains(&token), "only a hash is stored");
    assert!(first.state().keys().verify(&token).unwrap().is_admin());
    first.state().store().close().await;
    let second = taskflow_server::Server::open(config).await.unwrap();
    assert!(
        second.generated_admin_token().is_none(),
        "printed once only"
    );
    assert!(
        second.state().keys().verify(&token).unwrap().is_admin(),
        "the same token still works"
    );
}

#[tokio::test]
async fn callers_over_their_rate_get_429() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.rate_limit_per_sec = 1;
        c.rate_limit_burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.admin(Method::GET, "/tasks").send().await.unwrap());
    }
    let limited = statuses
        .into_iter()
        .find(|r| r.status() == 429)
        .expect("a request over the burst is refused");
    assert!(limited.headers().contains_key("retry-after"));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}
