-- Raceway backend schema (SQLite). Trace ids are UUID text, span ids 16 hex, times ns since the epoch.
CREATE TABLE events (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    service TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    body TEXT NOT NULL
);
-- A rowid table with a unique index: event rows are large, which WITHOUT ROWID b-trees handle badly.
CREATE UNIQUE INDEX events_key ON events (trace_id, span_id, event_id);

CREATE TABLE traces (
    trace_id TEXT PRIMARY KEY NOT NULL,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    event_count INTEGER NOT NULL,
    race_count INTEGER,
    race_events INTEGER
) WITHOUT ROWID;
CREATE INDEX traces_first ON traces (first_ns, trace_id);
CREATE INDEX traces_last ON traces (last_ns);

CREATE TABLE trace_services (
    trace_id TEXT NOT NULL,
    service TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    PRIMARY KEY (trace_id, service)
) WITHOUT ROWID;
CREATE INDEX trace_services_service ON trace_services (service, trace_id);

CREATE TABLE distributed_spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    service TEXT,
    instance TEXT,
    operation TEXT,
    span_kind TEXT,
    start_ns INTEGER,
    end_ns INTEGER,
    status_code INTEGER,
    error INTEGER,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX distributed_spans_trace_service ON distributed_spans (trace_id, service);

CREATE TABLE distributed_edges (
    trace_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    from_span TEXT,
    to_span TEXT,
    caller_service TEXT,
    callee_service TEXT,
    callee_trace_id TEXT,
    protocol TEXT,
    start_ns INTEGER,
    end_ns INTEGER,
    status INTEGER,
    error INTEGER,
    PRIMARY KEY (trace_id, call_id)
) WITHOUT ROWID;
CREATE INDEX distributed_edges_from_to ON distributed_edges (from_span, to_span);
CREATE INDEX distributed_edges_caller ON distributed_edges (caller_service);
CREATE INDEX distributed_edges_callee ON distributed_edges (callee_service);
CREATE INDEX distributed_edges_callee_trace ON distributed_edges (callee_trace_id);
