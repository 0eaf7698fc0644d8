-- Events move from one row per event (UUID text keys, ~600 B of JSON) to:
--  - event_keys: the idempotency key only, as one 40-byte blob (trace id 16 || span id 8 || event id 16),
--    in a WITHOUT ROWID b-tree (the key is the whole row);
--  - event_blocks: the JSON texts of the events of one trace that one write group stored, framed and
--    compressed together (see src/storage/sqlite.rs, "Event blocks"). A trace's events are its blocks in rowid
--    order, each block's events in ingestion order.
-- Existing events are carried over as uncompressed one-event blocks (codec 0). Hex text is joined before
-- `unhex`, because `||` always yields TEXT, and a TEXT key never equals the BLOB keys the writer inserts.
CREATE TABLE event_keys (
    key BLOB PRIMARY KEY NOT NULL
) WITHOUT ROWID;

CREATE TABLE event_blocks (
    block INTEGER PRIMARY KEY,
    trace_id BLOB NOT NULL,
    events INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX event_blocks_trace ON event_blocks (trace_id);

INSERT INTO event_keys (key)
SELECT unhex(replace(trace_id, '-', '') || span_id || replace(event_id, '-', ''))
FROM events;

INSERT INTO event_blocks (trace_id, events, codec, raw_len, data)
SELECT unhex(replace(trace_id, '-', '')), 1, 0, 4 + length(CAST(body AS BLOB)),
       unhex(printf('%08x', length(CAST(body AS BLOB))) || hex(body))
FROM events
ORDER BY rowid;

DROP TABLE events;
