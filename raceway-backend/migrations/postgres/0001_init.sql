-- Raceway backend schema (Postgres). Span ids 16 hex, times ns since the epoch.
CREATE TABLE events (
    trace_id UUID NOT NULL,
    span_id TEXT NOT NULL,
    event_id UUID NOT NULL,
    service TEXT NOT NULL,
    ts_ns BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id, event_id)
);

CREATE TABLE traces (
    trace_id UUID PRIMARY KEY,
    first_ns BIGINT NOT NULL,
    last_ns BIGINT NOT NULL,
    event_count BIGINT NOT NULL,
    race_count BIGINT,
    race_events BIGINT
);
CREATE INDEX traces_first ON traces (first_ns, trace_id);
CREATE INDEX traces_last ON traces (last_ns);

CREATE TABLE trace_services (
    trace_id UUID NOT NULL,
    service TEXT NOT NULL,
    event_count BIGINT NOT NULL,
    PRIMARY KEY (trace_id, service)
);
CREATE INDEX trace_services_service ON trace_services (service, trace_id);

CREATE TABLE distributed_spans (
    trace_id UUID NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    service TEXT,
    instance TEXT,
    operation TEXT,
    span_kind TEXT,
    start_ns BIGINT,
    end_ns BIGINT,
    status_code BIGINT,
    error BOOLEAN,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX distributed_spans_trace_service ON distributed_spans (trace_id, service);

CREATE TABLE distributed_edges (
    trace_id UUID NOT NULL,
    call_id TEXT NOT NULL,
    from_span TEXT,
    to_span TEXT,
    caller_service TEXT,
    callee_service TEXT,
    callee_trace_id UUID,
    protocol TEXT,
    start_ns BIGINT,
    end_ns BIGINT,
    status BIGINT,
    error BOOLEAN,
    PRIMARY KEY (trace_id, call_id)
);
CREATE INDEX distributed_edges_from_to ON distributed_edges (from_span, to_span);
CREATE INDEX distributed_edges_caller ON distributed_edges (caller_service);
CREATE INDEX distributed_edges_callee ON distributed_edges (callee_service);
CREATE INDEX distributed_edges_callee_trace ON distributed_edges (callee_trace_id);
