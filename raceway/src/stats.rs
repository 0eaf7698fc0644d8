//! Counters every Raceway handle keeps (no globals: one set per [`Raceway`](crate::Raceway)).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

#[derive(Default, Debug)]
pub(crate) struct Stats {
    pub(crate) events_captured: AtomicU64,
    pub(crate) events_sent: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) events_failed: AtomicU64,
    pub(crate) batches_sent: AtomicU64,
    pub(crate) batches_failed: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) traceparent_errors: AtomicU64,
    pub(crate) tracestate_errors: AtomicU64,
    pub(crate) clock_errors: AtomicU64,
    pub(crate) clock_conflicts: AtomicU64,
    pub(crate) partial_spans: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let header_parse_errors = self.traceparent_errors.load(Relaxed)
            + self.tracestate_errors.load(Relaxed)
            + self.clock_errors.load(Relaxed);
        StatsSnapshot {
            events_captured: self.events_captured.load(Relaxed),
            events_sent: self.events_sent.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            events_failed: self.events_failed.load(Relaxed),
            batches_sent: self.batches_sent.load(Relaxed),
            batches_failed: self.batches_failed.load(Relaxed),
            retries: self.retries.load(Relaxed),
            header_parse_errors,
            traceparent_errors: self.traceparent_errors.load(Relaxed),
            tracestate_errors: self.tracestate_errors.load(Relaxed),
            clock_errors: self.clock_errors.load(Relaxed),
            clock_conflicts: self.clock_conflicts.load(Relaxed),
            partial_spans: self.partial_spans.load(Relaxed),
        }
    }
}

/// A point-in-time copy of a handle's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Events put into the export queue.
    pub events_captured: u64,
    /// Events the backend acknowledged.
    pub events_sent: u64,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Events lost after the backend rejected their batch or retries ran out.
    pub events_failed: u64,
    /// Batches the backend acknowledged.
    pub batches_sent: u64,
    /// Batches given up on.
    pub batches_failed: u64,
    /// Retried send attempts.
    pub retries: u64,
    /// All header parse errors (traceparent + tracestate + raceway-clock).
    pub header_parse_errors: u64,
    /// Invalid `traceparent` headers.
    pub traceparent_errors: u64,
    /// Invalid `tracestate` headers.
    pub tracestate_errors: u64,
    /// Unusable `raceway-clock` headers (malformed, too long, too large, unsupported version, ...).
    pub clock_errors: u64,
    /// `raceway-clock` headers of another trace than their `traceparent`.
    pub clock_conflicts: u64,
    /// Requests that continued a trace without an intact clock (header loss).
    pub partial_spans: u64,
}
