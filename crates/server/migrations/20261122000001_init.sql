-- Portable between SQLite and PostgreSQL: TEXT ids (UUIDv7 strings sort by creation), BIGINT
-- integers and unix-millisecond timestamps, no booleans.

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE project_members (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_by_user ON project_members (user_id, project_id);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    title TEXT NOT NULL,
    description TEXT,
    status TEXT NOT NULL,
    priority BIGINT NOT NULL,
    assignee TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX tasks_by_priority ON tasks (priority DESC, id);
CREATE INDEX tasks_by_project ON tasks (project_id, priority DESC, id);
CREATE INDEX tasks_by_assignee ON tasks (assignee, priority DESC, id);

CREATE TABLE task_dependencies (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    depends_on TEXT NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX task_dependencies_by_dependency ON task_dependencies (depends_on);

-- One row per room: the last offset handed out. Updating it takes the row lock that serializes
-- the writers of a room, which is what keeps offsets gapless under concurrency.
CREATE TABLE rooms (
    room TEXT PRIMARY KEY,
    last_offset BIGINT NOT NULL
);

CREATE TABLE events (
    room TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room, seq)
);

INSERT INTO projects (id, name, created_at) VALUES ('default', 'Default', 0);
INSERT INTO rooms (room, last_offset) VALUES ('project:default', 0);
