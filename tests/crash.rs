//! Crash safety: the real `taskflow` binary is killed with SIGKILL in the middle of a write load
//! and started again on the same database. Every task whose creation was answered 201 must still
//! be there, each with its `task.created` event, and the room's offsets must have no hole.
//! Collaborative documents the same way: every update another editor had received before the
//! kill is in the document after the restart, and the task's description catches up with it.

mod binary;
#[path = "../crates/server/tests/common/mod.rs"]
mod common;
#[path = "../crates/server/tests/docs/editor.rs"]
mod editor;

use common::{Backend, TestDb};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use taskflow_server::store::Store;

use binary::{start, TOKEN};

async fn crash_mid_write_keeps_every_acknowledged_task(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (mut child, addr) = start(&db.url);
    let client = reqwest::Client::new();
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (client, addr, acknowledged) = (client.clone(), addr.clone(), acknowledged.clone());
            let count_tx = count_tx.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let res = client
                        .post(format!("http://{addr}/tasks"))
                        .bearer_auth(TOKEN)
                        .json(&serde_json::json!({ "title": format!("w{w} #{i}") }))
                        .send()
                        .await;
                    let Ok(res) = res else { break };
                    if res.status() != 201 {
                        break;
                    }
                    let Ok(body) = res.json::<serde_json::Value>().await else {
                        break;
                    };
                    let n = {
                        let mut acknowledged = acknowledged.lock().unwrap();
                        acknowledged.push(body["id"].as_str().unwrap().to_owned());
                        acknowledged.len()
                    };
                    count_tx.send_replace(n);
                }
            })
        })
        .collect();
    // Kill once a good number of writes were acknowledged, while the writers keep going.
    count_rx
        .wait_for(|&n| n >= 300)
        .await
        .expect("writers are running");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged: Vec<String> = acknowledged.lock().unwrap().clone();

    let (mut child, addr) = start(&db.url);
    for id in &acknowledged {
        let res = client
            .get(format!("http://{addr}/tasks/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "acknowledged task {id} survived the crash"
        );
    }
    let store = Store::connect(&db.url).await.unwrap();
    let events = store
        .events_after("project:default", 0, 1_000_000)
        .await
        .unwrap();
    let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
    assert_eq!(
        offsets,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "no hole in the log"
    );
    let logged: HashSet<&str> = events
        .iter()
        .map(|e| e.data["id"].as_str().unwrap())
        .collect();
    for id in &acknowledged {
        assert!(logged.contains(id.as_str()), "task {id} has its event");
    }
    let export = client
        .get(format!("http://{addr}/tasks/export"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        export.lines().count(),
        events.len(),
        "every stored task has exactly one event"
    );
    store.close().await;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crash_mid_write_keeps_every_acknowledged_task() {
    crash_mid_write_keeps_every_acknowledged_task(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_mid_write_keeps_every_acknowledged_task() {
    crash_mid_write_keeps_every_acknowledged_task(Backend::Postgres).await;
}

async fn crash_mid_edit_keeps_every_update_another_editor_saw(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (mut child, addr) = start(&db.url);
    let client = reqwest::Client::new();
    let task: serde_json::Value = client
        .post(format!("http://{addr}/tasks"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "title": "typed through a crash", "description": "start:" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    let mut writer = editor::Editor::join_at(&addr, &id, TOKEN, yrs::Doc::new()).await;
    let mut watcher = editor::Editor::join_at(&addr, &id, TOKEN, yrs::Doc::new()).await;
    // The writer types one character per update, as fast as it can, until the server is gone.
    let typing = tokio::spawn(async move {
        let mut n = 0u32;
        while writer
            .try_insert_at_end(&((b'a' + (n % 26) as u8) as char).to_string())
            .await
        {
            n += 1;
            if n % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    watcher.until(|e| e.text().len() >= 300).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    // Whatever reached the watcher before the connection died: forwarded, so stored.
    watcher.follow_to_the_end().await;
    typing.await.unwrap();
    let seen = watcher.text();
    assert!(
        seen.len() >= 300,
        "the watcher saw {} characters",
        seen.len()
    );

    let (mut child, addr) = start(&db.url);
    let after = editor::Editor::join_at(&addr, &id, TOKEN, yrs::Doc::new()).await;
    assert!(
        after.text().starts_with(&seen),
        "after the restart the document has everything the watcher saw ({} of {} characters)",
        after.text().len(),
        seen.len()
    );
    // The description is written from the document once loaded, whatever the crash interrupted.
    let deadline = tokio::time::Instant::now() + editor::WAIT;
    loop {
        let task: serde_json::Value = client
            .get(format!("http://{addr}/tasks/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if task["description"].as_str() == Some(after.text().as_str()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the description never caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crash_mid_edit_keeps_every_update_another_editor_saw() {
    crash_mid_edit_keeps_every_update_another_editor_saw(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_mid_edit_keeps_every_update_another_editor_saw() {
    crash_mid_edit_keeps_every_update_another_editor_saw(Backend::Postgres).await;
}
