-- Events move from one row each (~600 bytes of JSON text, one heap tuple, its WAL record and an index entry per
-- event) to the layout of the SQLite store:
--  - event_keys: the idempotency key only (trace id, span id as a 64-bit integer, event id);
--  - event_blocks: the JSON texts of the events of one trace that one batch stored, framed and compressed together
--    (src/storage/blocks.rs). Data is already compressed: stored as is (no TOAST compression attempt).
-- Existing events are carried over as uncompressed one-event blocks (codec 0): a 4-byte big-endian length, then
-- the text.
CREATE TABLE event_keys (
    trace_id UUID NOT NULL,
    span_id BIGINT NOT NULL,
    event_id UUID NOT NULL,
    PRIMARY KEY (trace_id, span_id, event_id)
);

CREATE TABLE event_blocks (
    block BIGSERIAL PRIMARY KEY,
    trace_id UUID NOT NULL,
    events INTEGER NOT NULL,
    codec SMALLINT NOT NULL,
    raw_len INTEGER NOT NULL,
    data BYTEA NOT NULL
);
ALTER TABLE event_blocks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX event_blocks_trace ON event_blocks (trace_id, block);

INSERT INTO event_keys (trace_id, span_id, event_id)
SELECT trace_id, ('x' || span_id)::bit(64)::bigint, event_id FROM events;

INSERT INTO event_blocks (trace_id, events, codec, raw_len, data)
SELECT trace_id, 1, 0, 4 + octet_length(convert_to(body, 'UTF8')),
       int4send(octet_length(convert_to(body, 'UTF8'))) || convert_to(body, 'UTF8')
FROM events
ORDER BY trace_id, ts_ns;

DROP TABLE events;
