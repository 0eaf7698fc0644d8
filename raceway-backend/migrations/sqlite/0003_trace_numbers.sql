-- Every per-trace table is keyed by a trace number given in arrival order, instead of the random trace id, and
-- event keys are kept in the event blocks instead of a b-tree of their own.
--
-- Why: a write group touches a few hundred traces. Keyed by random ids, each of those rows lands on its own
-- page of every b-tree (about a dozen of them), and SQLite writes each dirtied page whole to the WAL and again
-- at the checkpoint: ~6 KB written per 600-byte event, growing with the database. Keyed by arrival order, the
-- traces being written are the newest ones, so a group's rows share the few pages at the right edge of each
-- b-tree. Random keys remain only where a lookup needs them: `traces.trace_id` (one entry per trace) and the
-- two indexes the span and edge tables are queried by, `(trace_id, service)` and `(from_span, to_span)`.
--
-- Trace ids become 16-byte blobs (their byte order is the order of their text), span ids stay 16-hex text.
-- Existing traces are numbered by first event time.

CREATE TABLE traces_v3 (
    trace_no INTEGER PRIMARY KEY,
    trace_id BLOB NOT NULL UNIQUE,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    event_count INTEGER NOT NULL,
    race_count INTEGER,
    race_events INTEGER
);
INSERT INTO traces_v3 (trace_id, first_ns, last_ns, event_count, race_count, race_events)
SELECT unhex(replace(trace_id, '-', '')), first_ns, last_ns, event_count, race_count, race_events
FROM traces
ORDER BY first_ns, trace_id;

-- The idempotency keys move into the blocks: `keys` holds each event's span id (8 bytes) and event id (16 bytes),
-- in the block's order, so no b-tree entry is written per event. NULL for blocks carried over from before (their
-- keys are read from the events themselves when needed).
CREATE TABLE event_blocks_v3 (
    block INTEGER PRIMARY KEY,
    trace_no INTEGER NOT NULL,
    events INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    keys BLOB,
    data BLOB NOT NULL
);
INSERT INTO event_blocks_v3 (block, trace_no, events, codec, raw_len, data)
SELECT b.block, t.trace_no, b.events, b.codec, b.raw_len, b.data
FROM event_blocks b JOIN traces_v3 t ON t.trace_id = b.trace_id
ORDER BY b.block;

CREATE TABLE trace_services_v3 (
    trace_no INTEGER NOT NULL,
    service TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    PRIMARY KEY (trace_no, service)
) WITHOUT ROWID;
INSERT INTO trace_services_v3 (trace_no, service, event_count)
SELECT t.trace_no, s.service, s.event_count
FROM trace_services s JOIN traces_v3 t ON t.trace_id = unhex(replace(s.trace_id, '-', ''))
ORDER BY 1, 2;

CREATE TABLE distributed_spans_v3 (
    trace_no INTEGER NOT NULL,
    span_id TEXT NOT NULL,
    trace_id BLOB NOT NULL,
    parent_span_id TEXT,
    service TEXT,
    instance TEXT,
    operation TEXT,
    span_kind TEXT,
    start_ns INTEGER,
    end_ns INTEGER,
    status_code INTEGER,
    error INTEGER,
    PRIMARY KEY (trace_no, span_id)
) WITHOUT ROWID;
INSERT INTO distributed_spans_v3
SELECT t.trace_no, s.span_id, t.trace_id, s.parent_span_id, s.service, s.instance, s.operation, s.span_kind,
       s.start_ns, s.end_ns, s.status_code, s.error
FROM distributed_spans s JOIN traces_v3 t ON t.trace_id = unhex(replace(s.trace_id, '-', ''))
ORDER BY 1, 2;

CREATE TABLE distributed_edges_v3 (
    trace_no INTEGER NOT NULL,
    call_id TEXT NOT NULL,
    trace_id BLOB NOT NULL,
    from_span TEXT,
    to_span TEXT,
    caller_service TEXT,
    callee_service TEXT,
    callee_trace_id BLOB,
    protocol TEXT,
    start_ns INTEGER,
    end_ns INTEGER,
    status INTEGER,
    error INTEGER,
    PRIMARY KEY (trace_no, call_id)
) WITHOUT ROWID;
INSERT INTO distributed_edges_v3
SELECT t.trace_no, e.call_id, t.trace_id, e.from_span, e.to_span, e.caller_service, e.callee_service,
       unhex(replace(e.callee_trace_id, '-', '')), e.protocol, e.start_ns, e.end_ns, e.status, e.error
FROM distributed_edges e JOIN traces_v3 t ON t.trace_id = unhex(replace(e.trace_id, '-', ''))
ORDER BY 1, 2;

DROP TABLE event_keys;
DROP TABLE event_blocks;
DROP TABLE trace_services;
DROP TABLE distributed_spans;
DROP TABLE distributed_edges;
DROP TABLE traces;

ALTER TABLE traces_v3 RENAME TO traces;
ALTER TABLE event_blocks_v3 RENAME TO event_blocks;
ALTER TABLE trace_services_v3 RENAME TO trace_services;
ALTER TABLE distributed_spans_v3 RENAME TO distributed_spans;
ALTER TABLE distributed_edges_v3 RENAME TO distributed_edges;

-- Trace listing pages by (first_ns, trace_id); retention and time windows scan by last_ns.
CREATE INDEX traces_first ON traces (first_ns, trace_id);
CREATE INDEX traces_last ON traces (last_ns);
CREATE INDEX event_blocks_trace ON event_blocks (trace_no);
-- Entries are (service, trace_no): each service's range grows at its end.
CREATE INDEX trace_services_service ON trace_services (service);
CREATE INDEX distributed_spans_trace_service ON distributed_spans (trace_id, service);
CREATE INDEX distributed_edges_from_to ON distributed_edges (from_span, to_span);
CREATE INDEX distributed_edges_caller ON distributed_edges (caller_service);
CREATE INDEX distributed_edges_callee ON distributed_edges (callee_service);
-- Set only when a hop restarted the trace (header loss): the other rows need no entry.
CREATE INDEX distributed_edges_callee_trace ON distributed_edges (callee_trace_id)
WHERE callee_trace_id IS NOT NULL;
