//! What the server refuses: it reaches neither the store nor other editors, and the client is
//! told with a close code.

use crate::common::{Backend, TestApp};
use crate::editing::{setup, task};
use crate::editor::{close_code, open, Editor};
use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;

crate::on_both_backends!(
    malformed_messages_close_with_1007_and_text_frames_with_1003,
    an_edit_past_the_description_limit_is_refused_with_4413_and_goes_nowhere,
);

async fn malformed_messages_close_with_1007_and_text_frames_with_1003(app: TestApp) {
    let (id, alice, _) = setup(&app, "intact").await;
    let name = format!("task:{id}");
    // Not a y-websocket message; a sync update that is not a Yjs update; a text frame.
    for (frame, code) in [
        (Message::Binary(vec![0, 9, 9].into()), 1007),
        (
            Message::Binary(vec![0, 2, 4, 0xff, 0xff, 0xff, 0xff].into()),
            1007,
        ),
        (Message::Binary(vec![0, 2, 1, 0, 0].into()), 1007),
        (Message::text("{\"type\":\"subscribe\"}"), 1003),
    ] {
        let mut stream = open(&app, &name, &alice).await.unwrap();
        stream.send(frame).await.unwrap();
        assert_eq!(close_code(&mut stream).await, code);
    }
    let editor = Editor::join(&app, &id, &alice).await;
    assert_eq!(editor.text(), "intact");
}

async fn an_edit_past_the_description_limit_is_refused_with_4413_and_goes_nowhere(app: TestApp) {
    let (id, alice, bob) = setup(&app, "").await;
    let mut a = Editor::join(&app, &id, &alice).await;
    let mut b = Editor::join(&app, &id, &bob).await;
    a.insert(0, &"x".repeat(9_990)).await;
    b.until(|e| e.text().len() == 9_990).await;
    // Eleven more characters would make 10,001: refused, closed, not forwarded, not stored.
    a.insert(0, "ééééééééééé").await;
    assert_eq!(a.closed().await, 4413);
    b.insert(0, "ok").await;
    let mut c = Editor::join(&app, &id, &bob).await;
    c.until(|e| e.text().len() == 9_992).await;
    assert!(c.text().starts_with("okx"), "the refused edit is nowhere");
    crate::editing::description_becomes(&app, &id, &c.text()).await;
    assert_eq!(
        task(&app, &id).await["description"].as_str().unwrap().len(),
        9_992
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_closes_with_1009_and_a_flood_with_1008() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.docs_max_message_bytes = 4096;
        c.docs_messages_per_sec = 5;
        c.docs_messages_burst = 10;
    })
    .await;
    let (id, alice, _) = setup(&app, "").await;
    let name = format!("task:{id}");
    let mut stream = open(&app, &name, &alice).await.unwrap();
    stream
        .send(Message::Binary(vec![0u8; 5000].into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut stream).await, 1009);
    let mut stream = open(&app, &name, &alice).await.unwrap();
    for _ in 0..30 {
        if stream.send(Message::Binary(vec![3].into())).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut stream).await, 1008);
}
