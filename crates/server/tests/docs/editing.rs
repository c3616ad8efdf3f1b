//! Editing together: concurrent edits converge, the task's description follows, REST edits
//! reach editors, awareness comes and goes, and what was stored is what a new editor loads.

use crate::common::TestApp;
use crate::editor::{Editor, WAIT};
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    concurrent_edits_converge_and_the_description_follows,
    a_rest_patch_is_an_edit_that_editors_see,
    an_offline_editor_merges_when_it_comes_back,
    awareness_states_come_and_go_with_their_connection,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_what_editors_saw_is_what_a_new_editor_loads_after_unload() {
    let app = TestApp::spawn_with(crate::common::Backend::Sqlite, |c| {
        c.docs_idle_unload_secs = 0
    })
    .await;
    what_editors_saw_is_what_a_new_editor_loads_after_unload(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_what_editors_saw_is_what_a_new_editor_loads_after_unload() {
    let app = TestApp::spawn_with(crate::common::Backend::Postgres, |c| {
        c.docs_idle_unload_secs = 0;
        // Compaction on every few updates, so loading reads a snapshot plus updates.
        c.docs_compact_every = 2;
    })
    .await;
    what_editors_saw_is_what_a_new_editor_loads_after_unload(app).await;
}

/// A project `p` with members alice and bob, a task in it, and their tokens.
pub(crate) async fn setup(app: &TestApp, description: &str) -> (String, String, String) {
    app.create_project("p", &["alice", "bob"]).await;
    let task = app
        .create_task(
            json!({ "title": "write it up", "project_id": "p", "description": description }),
        )
        .await;
    (
        task["id"].as_str().unwrap().to_owned(),
        app.token_for("alice").await,
        app.token_for("bob").await,
    )
}

/// The task as REST shows it.
pub(crate) async fn task(app: &TestApp, id: &str) -> Value {
    let res = app
        .admin(Method::GET, &format!("/tasks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Waits until the task's REST description is `text`; panics after the wait.
pub(crate) async fn description_becomes(app: &TestApp, id: &str, text: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let task = task(app, id).await;
        let now = task["description"].as_str().unwrap_or_default();
        if now == text {
            return task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the description stayed {now:?}, not {text:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn concurrent_edits_converge_and_the_description_follows(app: TestApp) {
    let (id, alice, bob) = setup(&app, "hello").await;
    let version = task(&app, &id).await["version"].as_i64().unwrap();
    let mut a = Editor::join(&app, &id, &alice).await;
    let mut b = Editor::join(&app, &id, &bob).await;
    assert_eq!(
        a.text(),
        "hello",
        "the document starts from the description"
    );
    assert_eq!(b.text(), "hello");
    // Both type at once, neither having seen the other's edit.
    a.insert(5, " world").await;
    b.insert(0, "Say: ").await;
    a.until(|e| e.text().len() == "Say: hello world".len())
        .await;
    b.until(|e| e.text().len() == "Say: hello world".len())
        .await;
    assert_eq!(a.text(), "Say: hello world");
    assert_eq!(b.text(), a.text());
    // A burst of edits from both sides.
    for i in 0..50u32 {
        a.insert(0, "a").await;
        b.insert(i % 3, "b").await;
    }
    a.until(|e| e.text().len() == 116).await;
    b.until(|e| e.text().len() == 116).await;
    assert_eq!(a.text(), b.text());
    let task = description_becomes(&app, &id, &a.text()).await;
    // Settled bursts, not keystrokes: far fewer versions than the 102 edits.
    let written = task["version"].as_i64().unwrap() - version;
    assert!((1..=20).contains(&written), "{written} description writes");
}

async fn a_rest_patch_is_an_edit_that_editors_see(app: TestApp) {
    let (id, alice, _) = setup(&app, "draft").await;
    let mut a = Editor::join(&app, &id, &alice).await;
    let res = app
        .admin(Method::PATCH, &format!("/tasks/{id}"))
        .json(&json!({ "description": "final draft, reviewed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["description"], "final draft, reviewed");
    a.until(|e| e.text() == "final draft, reviewed").await;
    // The editor keeps typing on top of the REST edit: both paths converge.
    a.insert(0, "THE ").await;
    description_becomes(&app, &id, "THE final draft, reviewed").await;
    // A stale If-Match is refused, and the document is not touched.
    let res = app
        .admin(Method::PATCH, &format!("/tasks/{id}"))
        .header("if-match", "1")
        .json(&json!({ "description": "overwritten" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    let mut b = Editor::join(&app, &id, &alice).await;
    assert_eq!(b.text(), "THE final draft, reviewed");
    // Clearing the description clears the text.
    let res = app
        .admin(Method::PATCH, &format!("/tasks/{id}"))
        .json(&json!({ "description": null }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    b.until(|e| e.text().is_empty()).await;
    a.until(|e| e.text().is_empty()).await;
}

async fn an_offline_editor_merges_when_it_comes_back(app: TestApp) {
    let (id, alice, bob) = setup(&app, "one two three").await;
    let a = Editor::join(&app, &id, &alice).await;
    let mut b = Editor::join(&app, &id, &bob).await;
    // Alice goes offline (her connection drops) and keeps her document.
    let offline = a.doc;
    drop(a.stream);
    {
        let text = a.text;
        let mut txn = yrs::Transact::transact_mut(&offline);
        yrs::Text::insert(&text, &mut txn, 3, " and a half");
    }
    b.insert(0, "count: ").await;
    // Back online: her edit is sent in the sync, Bob's arrives in the answer.
    let mut a = Editor::join_with(&app, &id, &alice, offline).await;
    let merged = "count: one and a half two three";
    a.until(|e| e.text() == merged).await;
    b.until(|e| e.text() == merged).await;
    description_becomes(&app, &id, merged).await;
}

async fn awareness_states_come_and_go_with_their_connection(app: TestApp) {
    let (id, alice, bob) = setup(&app, "").await;
    let mut a = Editor::join(&app, &id, &alice).await;
    let mut b = Editor::join(&app, &id, &bob).await;
    a.announce(json!({ "user": { "name": "Alice", "color": "#f00" }, "cursor": { "anchor": 0, "head": 0 } }))
        .await;
    let alice_client = a.doc.client_id().get();
    b.until(|e| {
        e.peers
            .get(&alice_client)
            .is_some_and(|s| s.contains("Alice"))
    })
    .await;
    // A third editor gets the states at once.
    let mut c = Editor::join(&app, &id, &bob).await;
    c.until(|e| e.peers.contains_key(&alice_client)).await;
    // Alice leaves: the others see her state removed (a null state).
    drop(a);
    b.until(|e| e.peers.get(&alice_client).is_some_and(|s| s == "null"))
        .await;
    c.until(|e| e.peers.get(&alice_client).is_some_and(|s| s == "null"))
        .await;
}

async fn what_editors_saw_is_what_a_new_editor_loads_after_unload(app: TestApp) {
    let (id, alice, _) = setup(&app, "").await;
    let mut a = Editor::join(&app, &id, &alice).await;
    for word in ["stored ", "before ", "shared"] {
        let end = a.text().len() as u32;
        a.insert(end, word).await;
    }
    description_becomes(&app, &id, "stored before shared").await;
    drop(a);
    // Unload (what an idle document does), then load from the store alone.
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.state.collab().loaded() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never unloaded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let b = Editor::join(&app, &id, &alice).await;
    assert_eq!(b.text(), "stored before shared");
}
