//! Group commit for the durable stores.
//!
//! Each durable store has one writer (a thread for SQLite, a task for Postgres) fed by a bounded queue. The
//! writer takes every batch queued while its previous commit was running and stores them in **one**
//! transaction, so one fsync is shared by all concurrent requests; each request is answered (through its own
//! oneshot) only after the transaction holding its batch committed. Semantics stay per batch:
//! - outcomes are per batch: when two batches of a group carry the same event, the first batch in queue order
//!   owns it (accepted, or duplicate when it was stored before) and the later one counts it as a duplicate,
//!   exactly as if the batches had been committed one after the other;
//! - when the group's transaction fails, the writer retries each batch alone, so one bad batch fails only
//!   itself;
//! - a full queue is refused at once ([`StoreError::Overloaded`], answered 503 with `Retry-After`).

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use super::{key, IngestEvent, IngestOutcome, StoreError, StoreResult};

/// Batches a writer may have queued before new ones are refused. The HTTP layer's admission limit
/// (`ingest_concurrency + ingest_queue`) normally refuses earlier, with 429.
pub const DEFAULT_QUEUE_BATCHES: usize = 1024;

/// Upper bound of events in one group transaction (bounds the writer's memory and a group's latency).
pub const MAX_GROUP_EVENTS: usize = 64 * 1024;

/// One batch waiting for the writer, with what the store prepared for it on the submitting task (`P`), so
/// that a single writer thread does less per batch.
pub(crate) struct Pending<P = ()> {
    pub events: Vec<IngestEvent>,
    pub derive_spans: bool,
    pub prepared: P,
    pub reply: oneshot::Sender<StoreResult<IngestOutcome>>,
}

/// The sending side of a writer queue.
pub(crate) struct Queue<P = ()> {
    tx: mpsc::Sender<Pending<P>>,
}

impl<P> Queue<P> {
    /// A queue of at most `capacity` batches and its receiving side (for the writer).
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Pending<P>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }

    /// Queues a batch and waits until the transaction holding it committed (or failed).
    pub async fn submit(
        &self,
        events: Vec<IngestEvent>,
        derive_spans: bool,
        prepared: P,
    ) -> StoreResult<IngestOutcome> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            events,
            derive_spans,
            prepared,
            reply,
        };
        self.tx.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::Other("the store's writer has stopped".into())
            }
        })?;
        answer
            .await
            .map_err(|_| StoreError::Other("the store's writer stopped before answering".into()))?
    }
}

/// Takes, after `first`, every batch already queued, up to [`MAX_GROUP_EVENTS`] events.
pub(crate) fn drain<P>(first: Pending<P>, rx: &mut mpsc::Receiver<Pending<P>>) -> Vec<Pending<P>> {
    let mut n = first.events.len();
    let mut group = vec![first];
    while n < MAX_GROUP_EVENTS {
        match rx.try_recv() {
            Ok(p) => {
                n += p.events.len();
                group.push(p);
            }
            Err(_) => break,
        }
    }
    group
}

/// The rows a group writes: every distinct event once, owned by the first batch (in queue order) that carries
/// it; the other occurrences are duplicates of their own batch.
pub(crate) struct Plan<'a> {
    /// Distinct events in queue order, with the index of the owning batch.
    pub rows: Vec<(&'a IngestEvent, usize)>,
    /// Per row: the event's position in its batch.
    pub positions: Vec<u32>,
    /// Per batch: outcomes so far (repeats inside the group counted as duplicates).
    pub outcomes: Vec<IngestOutcome>,
}

impl<'a> Plan<'a> {
    /// Plans `batches` (one slice per queued batch).
    pub fn new(batches: impl IntoIterator<Item = &'a [IngestEvent]>) -> Self {
        let mut rows = Vec::new();
        let mut positions = Vec::new();
        let mut outcomes = Vec::new();
        let mut seen = HashMap::new();
        for (b, events) in batches.into_iter().enumerate() {
            let mut out = IngestOutcome::default();
            for (at, e) in events.iter().enumerate() {
                if seen.insert(key(e), ()).is_some() {
                    out.duplicates += 1;
                } else {
                    rows.push((e, b));
                    positions.push(at as u32);
                }
            }
            outcomes.push(out);
        }
        Self {
            rows,
            positions,
            outcomes,
        }
    }

    /// Records whether the row at `i` was stored now (else it was stored before: a duplicate).
    pub fn record(&mut self, i: usize, inserted: bool) {
        let out = &mut self.outcomes[self.rows[i].1];
        if inserted {
            out.accepted += 1;
        } else {
            out.duplicates += 1;
        }
    }
}

/// Answers every batch of a group with `result` (its own outcome, or the group's error).
pub(crate) fn answer<P>(group: Vec<Pending<P>>, result: StoreResult<Vec<IngestOutcome>>) {
    match result {
        Ok(outcomes) => {
            for (p, o) in group.into_iter().zip(outcomes) {
                // The requester may have gone away (client disconnected): nothing to answer then.
                let _ = p.reply.send(Ok(o));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for p in group {
                let _ = p.reply.send(Err(StoreError::Other(msg.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(trace: uuid::Uuid, id: u128) -> IngestEvent {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../spec/vectors/events/valid_batch.json"
        ))
        .unwrap();
        let mut e = serde_json::from_str::<raceway::EventBatch>(&text)
            .unwrap()
            .events
            .remove(0);
        e.trace_id = trace;
        e.id = uuid::Uuid::from_u128(id);
        IngestEvent::from_event(&e).unwrap()
    }

    #[test]
    fn first_batch_owns_shared_events() {
        let t = uuid::Uuid::new_v4();
        let a = [ev(t, 1), ev(t, 2), ev(t, 2)];
        let b = [ev(t, 2), ev(t, 3)];
        let mut plan = Plan::new([&a[..], &b[..]]);
        assert_eq!(plan.rows.len(), 3);
        assert_eq!(
            plan.rows.iter().map(|(_, b)| *b).collect::<Vec<_>>(),
            [0, 0, 1]
        );
        assert_eq!(plan.positions, [0, 1, 1]);
        for i in 0..3 {
            plan.record(i, i != 1);
        }
        assert_eq!(
            plan.outcomes,
            [
                IngestOutcome {
                    accepted: 1,
                    duplicates: 2
                },
                IngestOutcome {
                    accepted: 1,
                    duplicates: 1
                }
            ]
        );
    }
}
