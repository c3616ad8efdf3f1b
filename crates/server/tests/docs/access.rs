//! Who may open a document, and what ends their access: the handshake refuses strangers, a
//! deleted task closes its document, a removed member is disconnected.

use crate::common::{TestApp, ADMIN_TOKEN};
use crate::editing::setup;
use crate::editor::{refused_with, Editor};
use reqwest::Method;

crate::on_both_backends!(
    only_members_and_the_admin_open_a_document,
    deleting_the_task_closes_its_document_for_everyone,
    a_removed_member_is_disconnected_from_the_projects_documents,
);

async fn only_members_and_the_admin_open_a_document(app: TestApp) {
    let (id, alice, _) = setup(&app, "secret plans").await;
    let mallory = app.token_for("mallory").await;
    assert_eq!(
        refused_with(&app, &format!("task:{id}"), &mallory).await,
        403
    );
    assert_eq!(
        refused_with(&app, &format!("task:{id}"), "not-a-token").await,
        401
    );
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        refused_with(&app, &format!("task:{unknown}"), &alice).await,
        404
    );
    assert_eq!(refused_with(&app, "project:p", &alice).await, 404);
    assert_eq!(
        refused_with(&app, &format!("task:{}", id.to_uppercase()), &alice).await,
        404
    );
    // An Origin that is not the server's is refused like on /ws/tasks.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/ws/docs/task:{id}?access_token={alice}",
            app.addr
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let member = Editor::join(&app, &id, &alice).await;
    assert_eq!(member.text(), "secret plans");
    let admin = Editor::join(&app, &id, ADMIN_TOKEN).await;
    assert_eq!(admin.text(), "secret plans");
}

async fn deleting_the_task_closes_its_document_for_everyone(app: TestApp) {
    let (id, alice, bob) = setup(&app, "short-lived").await;
    let a = Editor::join(&app, &id, &alice).await;
    let b = Editor::join(&app, &id, &bob).await;
    let res = app
        .admin(Method::DELETE, &format!("/tasks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(a.closed().await, 4404);
    assert_eq!(b.closed().await, 4404);
    assert_eq!(refused_with(&app, &format!("task:{id}"), &alice).await, 404);
}

async fn a_removed_member_is_disconnected_from_the_projects_documents(app: TestApp) {
    let (id, alice, bob) = setup(&app, "team notes").await;
    let mut a = Editor::join(&app, &id, &alice).await;
    let b = Editor::join(&app, &id, &bob).await;
    let res = app
        .admin(Method::DELETE, "/projects/p/members/bob")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(b.closed().await, 4403);
    assert_eq!(refused_with(&app, &format!("task:{id}"), &bob).await, 403);
    // Alice is still editing.
    a.insert(0, "still ").await;
    let mut again = Editor::join(&app, &id, &alice).await;
    again.until(|e| e.text() == "still team notes").await;
}
