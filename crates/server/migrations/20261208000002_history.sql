-- A task's history (`GET /tasks/{id}/history`): each event about one task names it in `task_id`,
-- so one task's events page through an index instead of a scan of its project's whole room (the
-- payload is JSON text, and reading a field out of it is neither portable nor indexable). Filled
-- when the event is appended (store/history.rs `subject`); NULL for events about no task (chat,
-- members, imports' summaries).
ALTER TABLE events ADD COLUMN task_id TEXT;

-- Events already logged: their payload starts with the task's id (a task serializes `id` first,
-- and a dependency change `{"task": {"id": ...}, ...}`), 36 characters of hyphenated UUID closed
-- by a quote. Matched by prefix and read by position, which both databases spell the same way;
-- a payload of any other shape is left NULL rather than guessed at.
UPDATE events SET task_id = substr(payload, 8, 36)
WHERE kind IN ('task.created', 'task.updated', 'task.moved', 'task.deleted', 'task.assigned')
  AND payload LIKE '{"id":"%' AND substr(payload, 44, 1) = '"';
UPDATE events SET task_id = substr(payload, 16, 36)
WHERE kind IN ('dependency.added', 'dependency.removed', 'task.unblocked')
  AND payload LIKE '{"task":{"id":"%' AND substr(payload, 52, 1) = '"';

-- Partial: only events about a task are indexed (both databases use it for `task_id = $n`).
CREATE INDEX events_by_task ON events (room, task_id, seq) WHERE task_id IS NOT NULL;
