-- Collaborative documents (Yjs, docs/protocol.md "Collaborative documents"): one row per
-- document, named like `task:<id>`, and the updates appended since its last snapshot.
-- `last_seq` numbers the updates; appending takes the row's lock first, so the writers of one
-- document, on any node, are serialized and numbers have no repeats. A snapshot is a Yjs update
-- (v1) holding everything through `snapshot_seq`; compaction writes a new one and deletes the
-- updates it covers, in one transaction. BYTEA is PostgreSQL's binary type; SQLite stores the
-- same bytes as a BLOB.
CREATE TABLE docs (
    id TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    snapshot BYTEA NOT NULL,
    snapshot_seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE doc_updates (
    doc TEXT NOT NULL,
    seq BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (doc, seq)
);
