//! Chapter 10, WebSockets: the demo's subscriber has followed every room of the run since before
//! chapter 1. It is cut off (with its SSE twin), events happen while both are away, and both
//! resume from where they stopped: the WebSocket with `subscribe` + `since`, the SSE stream
//! with `Last-Event-ID`. Then every room's log must be whole: offsets 1 to the room's last one,
//! each once and in order, over the whole run; and SSE must have carried the very same events
//! (room, offset, kind) as the WebSocket from the point it opened.

use super::Ctx;
use crate::journal::Log;
use crate::show;
use anyhow::{ensure, Context};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long the streams may take to catch up with the rooms' last offsets.
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<String> {
    let api = &ctx.api;
    let project = ctx.cast.project(10);
    let room = format!("project:{project}");
    let so_far = ctx.subscriber.journal().snapshot();
    show::note(format!(
        "the subscriber has received {} events in {} rooms since before chapter 1",
        so_far.total(),
        so_far.rooms.len()
    ));
    show::note(format!("by kind: {}", kinds(&so_far)));

    ctx.subscriber.cut();
    ctx.sse.cut();
    let stopped_at = ctx.subscriber.journal().positions();
    show::note("cut off the WebSocket subscriber and the SSE stream (no closing handshake)");
    let missed = ctx.sizes.missed_events.max(1);
    let mut first = None;
    for i in 0..missed {
        let answer = api
            .call(Method::POST, "/tasks")
            .json(&json!({ "title": format!("Made while away {}", i + 1), "project_id": project }))
            .send()
            .await?;
        answer.expect(201)?;
        first.get_or_insert(answer.body["id"].as_str().unwrap_or_default().to_owned());
    }
    let first = first.context("no task made")?;
    api.call(Method::PATCH, &format!("/tasks/{first}"))
        .json(&json!({ "status": "in_progress" }))
        .send()
        .await?
        .expect(200)?;
    show::note(format!(
        "meanwhile: {missed} tasks created and one moved in {room}"
    ));

    let start = Instant::now();
    let answers = ctx.subscriber.resume().await?;
    let recovered = answers.iter().filter(|a| a.recovered).count();
    show::note(format!(
        "WebSocket resumed {} rooms with subscribe + since in {}: {recovered} recovered",
        answers.len(),
        show::millis(start.elapsed())
    ));
    ensure!(recovered == answers.len(), "a resume was refused");
    let heads: BTreeMap<String, i64> = answers
        .iter()
        .map(|a| (a.room.clone(), a.offset.unwrap_or(0)))
        .collect();
    let start = Instant::now();
    let sse_answers = ctx.sse.resume().await?;
    let sse_recovered = sse_answers.iter().filter(|a| a.recovered).count();
    show::note(format!(
        "SSE resumed {} rooms with Last-Event-ID in {}: {sse_recovered} recovered",
        sse_answers.len(),
        show::millis(start.elapsed())
    ));
    ensure!(
        sse_recovered == sse_answers.len(),
        "an SSE resume was refused"
    );

    let caught_up = |log: &Log| {
        heads
            .iter()
            .all(|(room, head)| log.rooms.get(room).is_some_and(|r| r.last() >= *head))
    };
    let ws_done = ctx
        .subscriber
        .journal()
        .wait_for(CATCH_UP_WAIT, caught_up)
        .await;
    let sse_done = ctx.sse.journal().wait_for(CATCH_UP_WAIT, caught_up).await;
    let ws = ctx.subscriber.journal().snapshot();
    let sse = ctx.sse.journal().snapshot();
    let replayed =
        heads.get(&room).copied().unwrap_or(0) - stopped_at.get(&room).copied().unwrap_or(0);
    show::note(format!(
        "{room}: {replayed} events replayed after the resume ({} expected: {missed} created, 1 moved)",
        missed + 1
    ));
    ensure!(
        ws_done,
        "the WebSocket subscriber did not catch up with every room"
    );
    ensure!(sse_done, "the SSE stream did not catch up with every room");
    ensure!(
        ws.problems.is_empty(),
        "WebSocket: {}",
        ws.problems.join("; ")
    );
    ensure!(sse.problems.is_empty(), "SSE: {}", sse.problems.join("; "));
    ensure!(
        replayed == missed as i64 + 1,
        "{replayed} events in {room} while away, {} expected",
        missed + 1
    );
    for (room, head) in &heads {
        let got = ws.rooms.get(room).map_or(0, |r| r.events.len());
        ensure!(
            got as i64 == *head,
            "{room}: the subscriber has {got} events, the room {head}"
        );
    }
    show::note(format!(
        "WebSocket: {} events in {} rooms, offsets 1 to the last in every room, none twice or out of order",
        ws.total(),
        heads.len()
    ));

    let mut compared = 0;
    for (room, sse_room) in &sse.rooms {
        let ws_room = ws.rooms.get(room).context("a room only SSE follows")?;
        let same_span: Vec<(i64, &str)> = ws_room
            .events
            .iter()
            .filter(|e| e.offset > sse_room.start)
            .map(|e| (e.offset, e.event.as_str()))
            .collect();
        let over_sse: Vec<(i64, &str)> = sse_room
            .events
            .iter()
            .map(|e| (e.offset, e.event.as_str()))
            .collect();
        ensure!(
            same_span == over_sse,
            "{room}: SSE carried {} events, the WebSocket {} after offset {}",
            over_sse.len(),
            same_span.len(),
            sse_room.start
        );
        compared += over_sse.len();
    }
    show::note(format!(
        "SSE: the same {compared} events (room, offset, kind) since it opened before chapter 1"
    ));
    show::note(format!("all events of the run by kind: {}", kinds(&ws)));
    Ok(format!(
        "{} events in {} rooms, in order, none missed or twice; resumed after a cut; SSE saw the same {compared}",
        ws.total(),
        heads.len()
    ))
}

/// `task.created 120, task.updated 40, ...`
fn kinds(log: &Log) -> String {
    let kinds: Vec<String> = log
        .kinds()
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    if kinds.is_empty() {
        "none".into()
    } else {
        kinds.join(", ")
    }
}
