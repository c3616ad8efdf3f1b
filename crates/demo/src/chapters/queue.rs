//! Chapter 3, the priority queue: `GET /tasks/next` names the highest-priority ready task; then
//! workers, each a user of its own, claim tasks concurrently (`POST /tasks/next/claim`) until
//! none is left. No task may be claimed twice or missed, each claim is assigned to its worker,
//! and each worker's claims come in priority order (a later claim never outranks an earlier
//! one: the queue always hands out the best task left).

use super::{import, plain_tasks, Ctx};
use crate::cast::User;
use crate::show;
use anyhow::{bail, ensure, Context};
use reqwest::Method;
use std::collections::HashSet;
use std::time::Instant;
use taskflow_protocol::{Task, TaskStatus};

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<String> {
    let api = &ctx.api;
    let project = ctx.cast.project(3).to_owned();
    let count = ctx.sizes.queue_tasks.max(1);
    let imported = import(api, plain_tasks(&project, "Job", count)).await?;
    imported.show().expect(201)?;
    ensure!(
        imported.body["imported"] == count,
        "imported {}",
        imported.body
    );
    let best = (0..count).map(|i| (i * 37) % 101).max().unwrap_or(0);

    let path = format!("/tasks/next?project={project}");
    let next = api.call(Method::GET, &path).send().await?;
    next.show().expect(200)?;
    let next: Task = next.parse()?;
    show::note(format!(
        "next: \"{}\" at priority {} (the highest of the {count} is {best})",
        next.title, next.priority
    ));
    ensure!(
        usize::from(next.priority) == best,
        "next has priority {}, not the highest ({best})",
        next.priority
    );

    let workers = &ctx.cast.workers;
    show::note(format!(
        "{} workers claim concurrently: POST /tasks/next/claim?project=… until 404 no_ready_task",
        workers.len()
    ));
    let start = Instant::now();
    let mut handles = Vec::new();
    for worker in workers {
        let (api, worker, project) = (api.clone(), worker.clone(), project.clone());
        handles.push(tokio::spawn(async move {
            claim_all(&api, &worker, &project).await
        }));
    }
    let mut claims: Vec<(String, Vec<Task>)> = Vec::new();
    for (handle, worker) in handles.into_iter().zip(workers) {
        let claimed = handle.await.context("a worker panicked")??;
        claims.push((worker.id.clone(), claimed));
    }
    let elapsed = start.elapsed();

    let total: usize = claims.iter().map(|(_, c)| c.len()).sum();
    let ids: HashSet<_> = claims
        .iter()
        .flat_map(|(_, c)| c.iter().map(|t| t.id))
        .collect();
    let (fewest, most) = claims.iter().fold((usize::MAX, 0), |(lo, hi), (_, c)| {
        (lo.min(c.len()), hi.max(c.len()))
    });
    show::note(format!(
        "{total} claims in {} ({fewest} to {most} per worker), {} distinct tasks",
        show::millis(elapsed),
        ids.len()
    ));
    ensure!(
        ids.len() == total,
        "{} tasks were claimed twice",
        total - ids.len()
    );
    ensure!(total == count, "{total} of {count} tasks claimed");
    for (worker, claimed) in &claims {
        ensure!(
            claimed
                .iter()
                .all(|t| t.assignee.as_deref() == Some(worker.as_str())
                    && t.status == TaskStatus::InProgress),
            "a claim of {worker} is not in progress and assigned to it"
        );
        ensure!(
            claimed.windows(2).all(|w| w[0].priority >= w[1].priority),
            "{worker} claimed a higher priority after a lower one"
        );
    }
    let empty = api.call(Method::GET, &path).send().await?;
    empty.show().expect(404)?;
    show::note(show::brief(&empty.body));
    Ok(format!(
        "{count} tasks claimed by {} workers, none twice, each worker's in priority order",
        workers.len()
    ))
}

/// Claims tasks as `worker` until the queue is empty.
async fn claim_all(
    api: &crate::api::Api,
    worker: &User,
    project: &str,
) -> anyhow::Result<Vec<Task>> {
    let path = format!("/tasks/next/claim?project={project}");
    let mut claimed = Vec::new();
    loop {
        let answer = api
            .call_as(&worker.token, Method::POST, &path)
            .send()
            .await?;
        match answer.status.as_u16() {
            200 => claimed.push(answer.parse::<Task>()?),
            404 if answer.error_code() == Some("no_ready_task") => return Ok(claimed),
            _ => bail!(
                "{} claiming: {} {}",
                worker.id,
                answer.status,
                show::brief(&answer.body)
            ),
        }
    }
}
