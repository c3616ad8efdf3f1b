-- Commands already carried out, by (user, command id): a client that resends a chat message
-- after a reconnect gets the first answer instead of a duplicate. Pruned after the resume
-- window by compaction.
CREATE TABLE command_results (
    user_id TEXT NOT NULL,
    command_id TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, command_id)
);
CREATE INDEX command_results_by_age ON command_results (created_at);
CREATE INDEX events_by_age ON events (created_at);
