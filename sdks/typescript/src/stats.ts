/** Counters (names aligned with the Rust core's `StatsSnapshot`). */
export interface Stats {
  /** Events put into the export queue. */
  events_captured: number;
  /** Events the backend acknowledged (2xx). */
  events_sent: number;
  /** Events dropped before sending: queue full (or an event that could never fit a batch). */
  events_dropped: number;
  /** Events lost after the backend rejected their batch (4xx), retries ran out, or the shutdown deadline passed. */
  events_failed: number;
  /** Events currently waiting in the queue. */
  events_queued: number;
  /** Batches the backend acknowledged. */
  batches_sent: number;
  /** Batches given up on (rejected or retries exhausted). */
  batches_failed: number;
  /** Batches the backend rejected with a non-retryable 4xx. */
  batches_rejected: number;
  /** Retried send attempts. */
  retries: number;
  /** All header parse errors (traceparent + tracestate + raceway-clock, requests and responses). */
  header_parse_errors: number;
  traceparent_errors: number;
  tracestate_errors: number;
  /** Unusable raceway-clock headers (malformed, too long, too large, unsupported version, too many components). */
  clock_errors: number;
  /** raceway-clock headers of another trace than the traceparent (status `conflict`). */
  clock_conflicts: number;
  /** Requests that continued a trace without a clock (header loss). */
  partial_spans: number;
  /** Clock components dropped by the max-components bound. */
  clock_components_dropped: number;
  /** Requests handled by the middleware. */
  requests: number;
  /** Outgoing calls instrumented by the fetch wrapper / axios interceptor. */
  outbound_calls: number;
}

export function newStats(): Stats {
  return {
    events_captured: 0,
    events_sent: 0,
    events_dropped: 0,
    events_failed: 0,
    events_queued: 0,
    batches_sent: 0,
    batches_failed: 0,
    batches_rejected: 0,
    retries: 0,
    header_parse_errors: 0,
    traceparent_errors: 0,
    tracestate_errors: 0,
    clock_errors: 0,
    clock_conflicts: 0,
    partial_spans: 0,
    clock_components_dropped: 0,
    requests: 0,
    outbound_calls: 0,
  };
}
