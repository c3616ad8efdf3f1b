//! Chapter 4, dependency chains: a chain of steps, each waiting for the one before, is resolved
//! into a plan in chain order although the later steps have the higher priorities; closing the
//! chain into a loop is refused with the cycle's path; and when step 1 is done, the assignee of
//! step 2 (the step that was waiting only for it) hears `task.unblocked` in its `user:` room,
//! through the demo's subscriber.

use super::Ctx;
use crate::show;
use anyhow::{ensure, Context};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use taskflow_protocol::Task;
use uuid::Uuid;

/// How long the `task.unblocked` notification may take to arrive.
const NOTIFICATION_WAIT: Duration = Duration::from_secs(10);

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<String> {
    let api = &ctx.api;
    let project = ctx.cast.project(4);
    let assignee = &ctx.cast.assignee.id;
    let length = ctx.sizes.chain_length.max(2);
    let mut steps: Vec<Task> = Vec::new();
    for i in 1..=length {
        let mut body = json!({
            "title": format!("Step {i}"),
            "priority": i * 10,
            "project_id": project,
        });
        if i == 2 {
            body["assignee"] = assignee.as_str().into();
        }
        let answer = api.call(Method::POST, "/tasks").json(&body).send().await?;
        answer.expect(201)?;
        steps.push(answer.parse()?);
    }
    show::note(format!(
        "created steps 1 to {length} with priorities 10 to {} (step 2 assigned to {assignee})",
        length * 10
    ));
    for pair in steps.windows(2) {
        let path = format!("/tasks/{}/dependencies/{}", pair[1].id, pair[0].id);
        let answer = api.call(Method::PUT, &path).send().await?;
        if pair[0].id == steps[0].id {
            answer.show();
            show::note(format!(
                "{} now waits for {}: blocked = {}",
                pair[1].title, pair[0].title, answer.body["blocked"]
            ));
        }
        answer.expect(200)?;
    }
    let name = |id: &Uuid| -> String {
        steps
            .iter()
            .find(|s| &s.id == id)
            .map_or_else(|| show::short_id(id), |s| s.title.clone())
    };

    let plan = api
        .call(Method::GET, &format!("/projects/{project}/plan"))
        .send()
        .await?;
    plan.show().expect(200)?;
    let order: Vec<Uuid> = plan.body["tasks"]
        .as_array()
        .context("a plan without tasks")?
        .iter()
        .map(|t| serde_json::from_value::<Task>(t.clone()).map(|t| t.id))
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = order.iter().map(name).collect();
    show::note(format!("plan: {}", names.join(" -> ")));
    ensure!(
        order == steps.iter().map(|s| s.id).collect::<Vec<_>>(),
        "the plan is not in chain order: {}",
        names.join(", ")
    );

    let (first, last) = (&steps[0], &steps[length - 1]);
    let path = format!("/tasks/{}/dependencies/{}", first.id, last.id);
    let refused = api.call(Method::PUT, &path).send().await?;
    refused.show().expect(409)?;
    ensure!(
        refused.error_code() == Some("dependency_cycle"),
        "not a dependency_cycle: {}",
        refused.body
    );
    let cycle: Vec<Uuid> =
        serde_json::from_value(refused.body["error"]["details"]["cycle"].clone())
            .context("a cycle refusal without details.cycle")?;
    let path_names: Vec<String> = cycle.iter().map(name).collect();
    show::note(format!(
        "{} waiting for {} is refused; the cycle (each waits for the next): {}",
        first.title,
        last.title,
        path_names.join(" -> ")
    ));
    ensure!(
        cycle.len() == length + 1 && cycle.first() == cycle.last(),
        "the cycle's path should visit all {length} steps and end where it starts"
    );

    let unblocked = &steps[1];
    let room = format!("user:{assignee}");
    let sent = Instant::now();
    let done = api
        .call(Method::PATCH, &format!("/tasks/{}", first.id))
        .json(&json!({ "status": "done" }))
        .send()
        .await?;
    done.show().expect(200)?;
    show::note(format!(
        "{} is done: {} waits for nothing now; the subscriber of {room} listens",
        first.title, unblocked.title
    ));
    let is_it = |data: &Value| {
        let task = &data["task"];
        let task_id = task["id"].as_str().or(task.as_str());
        task_id == Some(unblocked.id.to_string().as_str())
            && data["dependency_id"].as_str() == Some(first.id.to_string().as_str())
    };
    let journal = ctx.subscriber.journal();
    let arrived = journal
        .wait_for(NOTIFICATION_WAIT, |log| {
            log.find(&room, "task.unblocked", is_it).is_some()
        })
        .await;
    ensure!(
        arrived,
        "no task.unblocked for {} in {room} within {} s (does the server notify unblocked tasks?)",
        unblocked.title,
        NOTIFICATION_WAIT.as_secs()
    );
    let log = journal.snapshot();
    let event = log
        .find(&room, "task.unblocked", is_it)
        .expect("found above");
    show::note(format!(
        "{room} offset {}: task.unblocked {{task: {}, dependency_id: {}}} after {}",
        event.offset,
        unblocked.title,
        first.title,
        show::millis(sent.elapsed())
    ));
    Ok(format!(
        "a {length}-step chain planned in order, its cycle refused with the path, task.unblocked delivered"
    ))
}
