-- Direct messages by conversation. Each `message.direct` event is logged in both users' rooms;
-- this names, for each copy, the room it is in and the other party, so that one conversation
-- pages through an index instead of a scan of the user's whole room. Rows whose event was
-- compacted away are deleted by compaction.
CREATE TABLE direct_messages (
    room TEXT NOT NULL,
    peer TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (room, peer, seq)
);
