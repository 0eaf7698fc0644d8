//! The exporter's JSON writer for events.
//!
//! It writes the same bytes as `serde_json` (the tests hold it to that: arbitrary events and every golden
//! vector), but the envelope, which is most of an event, directly: field names as literals, ids and timestamps
//! from fixed-size text, strings through the escaping writer the clock header uses. Serialising is most of the
//! exporter's work per event, and the exporter shares the machine with the application it observes. The event's
//! kind, locks and tags go through `serde_json`.

use uuid::Uuid;

use crate::clock_json::{write_clock, write_str};
use crate::Event;

/// Writes `{"events":[...]}`, as `serde_json` writes an [`EventBatch`](crate::EventBatch).
pub(crate) fn write_batch(out: &mut Vec<u8>, events: &[Event]) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_event(out, event)?;
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

fn write_uuid(out: &mut Vec<u8>, id: &Uuid) {
    out.push(b'"');
    out.extend_from_slice(
        id.hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    out.push(b'"');
}

/// Writes one event, as `serde_json` writes an [`Event`].
pub(crate) fn write_event(out: &mut Vec<u8>, event: &Event) -> serde_json::Result<()> {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"{\"id\":");
    write_uuid(out, &event.id);
    out.extend_from_slice(b",\"trace_id\":");
    write_uuid(out, &event.trace_id);
    out.extend_from_slice(b",\"span_id\":\"");
    out.extend_from_slice(&event.span_id.to_hex());
    out.extend_from_slice(b"\",\"parent_span_id\":");
    match &event.parent_span_id {
        Some(parent) => {
            out.push(b'"');
            out.extend_from_slice(&parent.to_hex());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"thread_id\":");
    write_str(out, &event.thread_id);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(digits.format(event.seq).as_bytes());
    out.extend_from_slice(b",\"service\":");
    write_str(out, &event.service);
    out.extend_from_slice(b",\"instance\":");
    write_str(out, &event.instance);
    out.extend_from_slice(b",\"timestamp\":\"");
    out.extend_from_slice(&event.timestamp.to_rfc3339());
    out.push(b'"');
    if let Some(duration) = event.duration_ns {
        out.extend_from_slice(b",\"duration_ns\":");
        out.extend_from_slice(digits.format(duration).as_bytes());
    }
    out.extend_from_slice(b",\"vector_clock\":");
    write_clock(out, event.vector_clock.iter());
    out.extend_from_slice(b",\"locks_held\":");
    if event.locks_held.is_empty() {
        out.extend_from_slice(b"[]");
    } else {
        serde_json::to_writer(&mut *out, &event.locks_held)?;
    }
    if let Some(location) = &event.location {
        out.extend_from_slice(b",\"location\":");
        write_str(out, location);
    }
    out.extend_from_slice(b",\"tags\":");
    if event.tags.is_empty() {
        out.extend_from_slice(b"{}");
    } else {
        serde_json::to_writer(&mut *out, &event.tags)?;
    }
    out.extend_from_slice(b",\"kind\":");
    serde_json::to_writer(&mut *out, &event.kind)?;
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::{
        EventBatch, EventKind, HeldLock, HttpInfo, LockMode, SpanId, SpanKind, Timestamp,
        VectorClock,
    };

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9#_.-]{1,12}",
            "(\\PC|\"|\\\\|[\u{0}-\u{1f}]|\u{7f}){0,12}",
        ]
    }

    fn kind() -> impl Strategy<Value = EventKind> {
        prop_oneof![
            (
                text(),
                proptest::option::of((text(), proptest::option::of(text()), text()))
            )
                .prop_map(|(operation, http)| EventKind::SpanStart {
                    operation,
                    span_kind: SpanKind::Server,
                    http: http.map(|(method, route, target)| HttpInfo {
                        method,
                        route,
                        target
                    }),
                    upstream: None,
                }),
            (text(), proptest::option::of(any::<i64>()), any::<bool>()).prop_map(
                |(operation, status_code, error)| EventKind::SpanEnd {
                    operation,
                    status_code,
                    error
                }
            ),
            text().prop_map(|name| EventKind::Custom { name, data: None }),
        ]
    }

    prop_compose! {
        fn event()(
            ids in any::<(u128, u128, u64, Option<u64>)>(),
            names in (text(), text(), text()),
            seq in any::<u64>(),
            timestamp in any::<i64>(),
            duration_ns in proptest::option::of(any::<u64>()),
            clock in proptest::collection::vec((text(), any::<u64>()), 0..4),
            locks in proptest::collection::vec((text(), any::<bool>()), 0..2),
            location in proptest::option::of(text()),
            tags in proptest::collection::btree_map(text(), text(), 0..3),
            kind in kind(),
        ) -> Event {
            let (id, trace, span, parent) = ids;
            Event {
                id: Uuid::from_u128(id),
                trace_id: Uuid::from_u128(trace),
                span_id: SpanId(span.to_be_bytes()),
                parent_span_id: parent.map(|p| SpanId(p.to_be_bytes())),
                thread_id: names.0.into(),
                seq,
                service: names.1.into(),
                instance: names.2.into(),
                timestamp: Timestamp(timestamp),
                duration_ns,
                vector_clock: VectorClock::from_pairs(clock.into_iter().filter(|(k, _)| !k.is_empty())),
                locks_held: locks
                    .into_iter()
                    .map(|(lock, shared)| HeldLock {
                        lock: Arc::from(lock),
                        mode: if shared { LockMode::Shared } else { LockMode::Exclusive },
                    })
                    .collect(),
                location: location.map(Arc::from),
                tags: tags.into_iter().collect::<BTreeMap<_, _>>(),
                kind,
            }
        }
    }

    proptest! {
        #[test]
        fn writes_what_serde_writes(events in proptest::collection::vec(event(), 0..4)) {
            let mut ours = Vec::new();
            write_batch(&mut ours, &events).unwrap();
            let serde = serde_json::to_vec(&EventBatch { events }).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde));
        }
    }

    #[test]
    fn writes_every_golden_event_as_serde_does() {
        let json = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../spec/vectors/events/valid_batch.json"
        ))
        .unwrap();
        let batch: EventBatch = serde_json::from_str(&json).unwrap();
        assert!(batch.events.len() > 5);
        let mut ours = Vec::new();
        write_batch(&mut ours, &batch.events).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&batch).unwrap()
        );
    }
}
