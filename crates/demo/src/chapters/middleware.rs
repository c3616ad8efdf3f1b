//! Chapter 5, middleware: the layers every request passes before its handler. The request-id
//! layer keeps the caller's `X-Request-Id` (or makes one) and answers with it; the auth layer
//! answers 401 without a valid token; the rate limiter answers 429 with `Retry-After` once a
//! caller has spent its burst. The burst is made by a user of its own, so no other caller's
//! budget is touched.

use super::Ctx;
use crate::api::Answer;
use crate::show;
use anyhow::{ensure, Context};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use reqwest::Method;
use std::time::Instant;

/// Requests of the burst in flight at once.
const BURST_CONCURRENCY: usize = 32;

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<String> {
    let api = &ctx.api;
    let ours = format!("demo-{}-middleware", ctx.cast.run);
    let path = format!("/tasks/{}", uuid::Uuid::now_v7());
    let traced = api
        .call(Method::GET, &path)
        .header("x-request-id", &ours)
        .send()
        .await?;
    traced.show().expect(404)?;
    let echoed = traced.header("x-request-id").unwrap_or("(none)");
    let in_body = traced.body["error"]["request_id"]
        .as_str()
        .unwrap_or("(none)");
    show::note(format!(
        "sent X-Request-Id: {ours}; answered X-Request-Id: {echoed}; error.request_id: {in_body}"
    ));
    ensure!(
        echoed == ours && in_body == ours,
        "the request id was not kept"
    );
    let fresh = api.call(Method::GET, "/auth/me").send().await?;
    fresh.show().expect(200)?;
    let made = fresh.header("x-request-id").unwrap_or("");
    show::note(format!("no X-Request-Id sent; the server made one: {made}"));
    ensure!(!made.is_empty(), "no request id was made");

    let anonymous = api.call_anonymous(Method::GET, "/tasks").send().await?;
    anonymous.show().expect(401)?;
    show::note(format!(
        "WWW-Authenticate: {}; {}",
        anonymous.header("www-authenticate").unwrap_or("(none)"),
        show::brief(&anonymous.body)
    ));
    ensure!(
        anonymous.error_code() == Some("unauthorized"),
        "a 401 without the unauthorized error body"
    );
    let forged = api
        .call_as("not-a-real-token", Method::GET, "/tasks")
        .send()
        .await?;
    forged.show().expect(401)?;
    show::note(show::brief(&forged.body));

    let burster = &ctx.cast.burster;
    let limit = ctx.sizes.burst_max.max(1);
    show::note(format!(
        "{} bursts GET /auth/me, {BURST_CONCURRENCY} at a time, until the limiter answers 429 (at most {limit})",
        burster.id
    ));
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let (mut sent, mut answered_ok) = (0, 0);
    let mut limited: Option<Answer> = None;
    let mut refused = 0;
    loop {
        while limited.is_none() && sent < limit && in_flight.len() < BURST_CONCURRENCY {
            in_flight.push(api.call_as(&burster.token, Method::GET, "/auth/me").send());
            sent += 1;
        }
        let Some(answer) = in_flight.next().await else {
            break;
        };
        let answer = answer?;
        match answer.status.as_u16() {
            200 => answered_ok += 1,
            429 => {
                refused += 1;
                limited.get_or_insert(answer);
            }
            _ => anyhow::bail!("the burst got {}: {}", answer.status, answer.body),
        }
    }
    let limited = limited.with_context(|| {
        format!("no 429 after {sent} requests: is the rate limit above {limit} a burst?")
    })?;
    limited.show();
    show::note(format!(
        "{sent} requests in {}: {answered_ok} answered 200, {refused} refused 429",
        show::millis(start.elapsed())
    ));
    let retry_after = limited.header("retry-after").unwrap_or("(none)");
    show::note(format!(
        "Retry-After: {retry_after}; {}",
        show::brief(&limited.body)
    ));
    ensure!(
        limited.error_code() == Some("rate_limited"),
        "a 429 without the rate_limited error body"
    );
    ensure!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After is not a number of seconds: {retry_after}"
    );
    let other = api.call(Method::GET, "/auth/me").send().await?;
    other.show().expect(200)?;
    show::note("the admin, another caller, is still served: the budget is per caller");
    Ok(format!(
        "request id kept and made, 401 without a token, 429 with Retry-After: {retry_after} after {answered_ok} requests"
    ))
}
