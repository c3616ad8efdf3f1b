//! Frames printed for people: `Event: task.created` then the task as a compact object literal,
//! the way the tutorial this product grew from shows it.

use serde_json::Value;
use taskflow_protocol::ServerFrame;

/// The lines to print for a frame, or `None` for frames people need not see (pongs, replies
/// that succeeded).
pub fn describe(frame: &ServerFrame) -> Option<String> {
    match frame {
        ServerFrame::Event(event) => {
            let label = match event.event.as_str() {
                kind if kind.starts_with("task.") || kind.starts_with("dependency.") => "Task",
                "message.created" | "message.direct" => "Message",
                _ => "Data",
            };
            let data = if event.event.as_str().starts_with("dependency.")
                || event.event.as_str() == "task.unblocked"
            {
                event.data.get("task").unwrap_or(&event.data)
            } else {
                &event.data
            };
            Some(format!(
                "Event: {}\n{label}: {}",
                event.event.as_str(),
                literal(data)
            ))
        }
        ServerFrame::PresenceJoined(p) => Some(format!("Presence: {} joined {}", p.user, p.room)),
        ServerFrame::PresenceLeft(p) => Some(format!("Presence: {} left {}", p.user, p.room)),
        ServerFrame::Typing(p) => Some(format!("Typing: {} in {}", p.user, p.room)),
        ServerFrame::Reply {
            ok: false,
            error: Some(e),
            ..
        }
        | ServerFrame::Error { error: e } => Some(format!("Error: {} ({})", e.message, e.code)),
        _ => None,
    }
}

/// A JSON value as a JavaScript-style literal: `{ id: '…', title: 'WebSocket test', … }`.
pub fn literal(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) if items.is_empty() => "[]".into(),
        Value::Array(items) => format!(
            "[ {} ]",
            items.iter().map(literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) if map.is_empty() => "{}".into(),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{k}: {}", literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tasks_print_like_the_tutorial() {
        let frame: ServerFrame = serde_json::from_value(json!({
            "type": "event", "room": "project:default", "offset": 1, "event": "task.created",
            "data": { "id": "x1", "title": "WebSocket test", "priority": 5, "assignee": null, "dependencies": [] },
            "at": "2026-11-22T00:00:00Z"
        }))
        .unwrap();
        assert_eq!(
            describe(&frame).unwrap(),
            "Event: task.created\nTask: { id: 'x1', title: 'WebSocket test', priority: 5, assignee: null, dependencies: [] }"
        );
    }

    #[test]
    fn quiet_frames_print_nothing() {
        assert!(describe(&ServerFrame::Pong { id: None }).is_none());
    }
}
