//! Chapter 2, storage: tasks created one by one are all stored and read back, a page at a time
//! with the cursor the previous page gave, each exactly once, highest priority first and oldest
//! first among equals.

use super::Ctx;
use crate::show;
use anyhow::ensure;
use reqwest::Method;
use serde_json::json;
use std::collections::HashSet;
use std::time::Instant;
use taskflow_protocol::{Task, TaskPage};

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<String> {
    let api = &ctx.api;
    let project = ctx.cast.project(2);
    let count = ctx.sizes.storage_tasks.max(1);
    let page_size = ctx.sizes.page_size.clamp(1, 500);
    let start = Instant::now();
    let mut created = Vec::new();
    for i in 0..count {
        let body = json!({
            "title": format!("Stored task {}", i + 1),
            "description": (i % 2 == 0).then_some("kept in the store"),
            "priority": (i * 7) % 10 * 10,
            "project_id": project,
        });
        let answer = api.call(Method::POST, "/tasks").json(&body).send().await?;
        if i == 0 {
            answer.show();
        }
        answer.expect(201)?;
        if i == 0 {
            show::note(format!(
                "version {}, ETag {}, created_at {}",
                answer.body["version"],
                answer.header("etag").unwrap_or("(none)"),
                answer.body["created_at"].as_str().unwrap_or("?")
            ));
        }
        created.push(answer.parse::<Task>()?);
    }
    show::note(format!(
        "... {count} tasks created in {}",
        show::millis(start.elapsed())
    ));

    let mut listed: Vec<Task> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/tasks?project={project}&limit={page_size}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let answer = api.call(Method::GET, &path).send().await?;
        answer.show().expect(200)?;
        let page: TaskPage = answer.parse()?;
        pages += 1;
        let priorities: Vec<String> = page.items.iter().map(|t| t.priority.to_string()).collect();
        show::note(format!(
            "page {pages}: {} tasks, priorities [{}], next_cursor {}",
            page.items.len(),
            priorities.join(" "),
            page.next_cursor
                .as_deref()
                .map_or("null".to_owned(), |c| format!("\"{}\"", show::cut(c, 24)))
        ));
        listed.extend(page.items);
        cursor = page.next_cursor;
        ensure!(pages <= count + 1, "the cursor never ends");
        if cursor.is_none() {
            break;
        }
    }

    let ids: HashSet<_> = listed.iter().map(|t| t.id).collect();
    ensure!(
        ids.len() == listed.len(),
        "{} tasks listed twice",
        listed.len() - ids.len()
    );
    ensure!(
        listed.len() == count && created.iter().all(|t| ids.contains(&t.id)),
        "{count} tasks created, {} listed",
        listed.len()
    );
    let ordered = listed.windows(2).all(|w| {
        (w[0].priority, std::cmp::Reverse(w[0].created_at))
            >= (w[1].priority, std::cmp::Reverse(w[1].created_at))
    });
    ensure!(
        ordered,
        "the listing is not highest priority first, then oldest"
    );
    Ok(format!(
        "{count} tasks stored and read back in {pages} pages of at most {page_size}, each once, in priority order"
    ))
}
