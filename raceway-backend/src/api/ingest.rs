//! `POST /v1/events`.
//!
//! Order of checks: admission (429 when `ingest_concurrency + ingest_queue` batches are already in the
//! server), body size (413 naming the limit), JSON shape (400), then each event on its own (parsed from its own
//! JSON text into a borrowed view that checks exactly what `Event` deserialisation and
//! [`raceway::Event::validate`] check, see [`crate::storage::view`]): invalid ones are reported by index, the
//! valid ones are
//! stored in one transaction (durable stores may share it with concurrent batches: group commit), and the
//! answer is sent after the commit. A storage failure or a full storage write queue answers 503 with
//! `Retry-After` (nothing of the batch was stored).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{error, overloaded, AppState};
use crate::storage::view::Interner;
use crate::storage::{IngestEvent, StoreError};

/// Largest event JSON (spec/EVENTS.md, limits).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// One rejected event.
#[derive(Debug, Serialize)]
pub struct Rejected {
    /// Index in `events`.
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// The 200 answer.
#[derive(Debug, Serialize)]
pub struct IngestResponse {
    /// Newly stored.
    pub accepted: u64,
    /// Already stored before (or repeated in the batch).
    pub duplicates: u64,
    /// Rejected by index.
    pub rejected: Vec<Rejected>,
}

/// Splits a batch body into valid events and rejections (pure; the benchmark and tests use it too).
///
/// The usual body (`{"events": [...]}` and nothing else, valid UTF-8) is read in one scan: each element is
/// parsed into the ingestion view while its end is found ([`IngestEvent::parse_leading`]). Anything else, and
/// any element the fast path does not accept, goes the general way (each element's text split out first, then
/// parsed on its own), so both give the same answer; a unit test checks that on mutated bodies.
pub fn parse_batch(body: &[u8]) -> Result<(Vec<IngestEvent>, Vec<Rejected>), String> {
    match parse_batch_fast(body) {
        Some(parsed) => Ok(parsed),
        None => parse_batch_general(body),
    }
}

/// The reason for an element that is too large.
fn size_reason(len: usize) -> String {
    format!("event is {len} bytes, the limit is {MAX_EVENT_BYTES}")
}

/// Judges one element's text exactly as [`parse_batch_general`] does; `fast` says whether to try the fast
/// kind path first ([`IngestEvent::parse`]) or go straight to the buffered one. Returns whether the event was
/// valid.
fn parse_element(
    index: usize,
    text: &str,
    fast: bool,
    names: &mut Interner,
    ok: &mut Vec<IngestEvent>,
    rejected: &mut Vec<Rejected>,
) -> bool {
    if text.len() > MAX_EVENT_BYTES {
        rejected.push(Rejected {
            index,
            reason: size_reason(text.len()),
        });
        return false;
    }
    let parsed = if fast {
        IngestEvent::parse(text, names)
    } else {
        IngestEvent::parse_buffered(text, names)
    };
    match parsed {
        Ok(e) => {
            ok.push(e);
            true
        }
        Err(reason) => {
            rejected.push(Rejected { index, reason });
            false
        }
    }
}

/// The general path: `RawBatch` (any JSON object with an `events` array), then each element on its own.
fn parse_batch_general(body: &[u8]) -> Result<(Vec<IngestEvent>, Vec<Rejected>), String> {
    let batch: RawBatch<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            format!("expected {{\"events\": [...]}}: {e}")
        } else {
            format!("malformed JSON: {e}")
        }
    })?;
    let mut ok = Vec::with_capacity(batch.events.len());
    let mut rejected = Vec::new();
    let mut names = Interner::default();
    for (index, raw) in batch.events.into_iter().enumerate() {
        parse_element(index, raw.get(), true, &mut names, &mut ok, &mut rejected);
    }
    Ok((ok, rejected))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The one-scan path for `{"events": [...]}`; `None` (the caller takes the general path) for any other shape,
/// invalid UTF-8 or malformed JSON, so every error message still comes from the general path.
fn parse_batch_fast(body: &[u8]) -> Option<(Vec<IngestEvent>, Vec<Rejected>)> {
    let text = std::str::from_utf8(body).ok()?;
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    for expected in [&b"{"[..], b"\"events\"", b":", b"["] {
        if !b[i..].starts_with(expected) {
            return None;
        }
        i = skip_ws(b, i + expected.len());
    }
    // ~540 bytes per event for SDK events: a good first guess, never a bound.
    let mut ok = Vec::with_capacity((b.len() / 512).min(16 * 1024));
    let mut rejected = Vec::new();
    let mut names = Interner::default();
    // A batch comes from one SDK, which writes every kind the same way: once a valid event needed the
    // buffered kind path (`type` not the first key, as Go's sorted maps write it), the rest of the batch goes
    // the general way at once instead of trying the fast path first each time.
    let mut fast = true;
    if b.get(i) == Some(&b']') {
        i = skip_ws(b, i + 1);
    } else {
        for index in 0.. {
            let rest = &text[i..];
            match fast
                .then(|| IngestEvent::parse_leading(rest, &mut names))
                .flatten()
            {
                Some((e, len)) if len <= MAX_EVENT_BYTES => {
                    ok.push(e);
                    i += len;
                }
                Some((_, len)) => {
                    rejected.push(Rejected {
                        index,
                        reason: size_reason(len),
                    });
                    i += len;
                }
                None => {
                    let mut raw = serde_json::Deserializer::from_str(rest).into_iter::<&RawValue>();
                    raw.next()?.ok()?;
                    let len = raw.byte_offset();
                    // The fast path (if tried) gave up on exactly this text: the buffered path decides.
                    let valid = parse_element(
                        index,
                        &rest[..len],
                        false,
                        &mut names,
                        &mut ok,
                        &mut rejected,
                    );
                    fast &= !valid;
                    i += len;
                }
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b']') => {
                    i = skip_ws(b, i + 1);
                    break;
                }
                _ => return None,
            }
        }
    }
    if b.get(i) != Some(&b'}') || skip_ws(b, i + 1) != b.len() {
        return None;
    }
    Some((ok, rejected))
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds the limit of {limit} bytes; send smaller batches"),
    )
}

/// The handler.
pub async fn ingest(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let m = &st.metrics;
    let Ok(_admitted) = st.admission.try_acquire() else {
        m.overloaded.fetch_add(1, Relaxed);
        return overloaded(
            StatusCode::TOO_MANY_REQUESTS,
            "ingestion queue is full, retry later",
        );
    };
    let limit = st.config.body_limit;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let body = match axum::body::to_bytes(req.into_body(), limit).await {
        Ok(b) => b,
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("length limit") {
                return too_large(limit);
            }
            return error(StatusCode::BAD_REQUEST, format!("reading body: {msg}"));
        }
    };
    m.queue_depth.fetch_add(1, Relaxed);
    let permit = st.workers.acquire().await;
    m.queue_depth.fetch_sub(1, Relaxed);
    let Ok(worker) = permit else {
        return overloaded(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    m.inflight.fetch_add(1, Relaxed);
    let resp = process(&st, &body, worker).await;
    m.inflight.fetch_sub(1, Relaxed);
    m.observe_latency(started.elapsed());
    resp
}

async fn process(st: &AppState, body: &[u8], worker: tokio::sync::SemaphorePermit<'_>) -> Response {
    let m = &st.metrics;
    let parsed = parse_batch(body);
    // The worker slot bounds parsing (CPU); waiting for a durable commit must not hold it, or the number of
    // batches a group commit can gather would be capped by `ingest_concurrency`. Admission still bounds the
    // batches in the server.
    drop(worker);
    let (events, rejected) = match parsed {
        Ok(v) => v,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    m.rejected.fetch_add(rejected.len() as u64, Relaxed);
    let outcome = if events.is_empty() {
        Default::default()
    } else {
        match st.store.ingest(events, st.config.distributed_tracing).await {
            Ok(o) => o,
            Err(StoreError::Overloaded) => {
                m.overloaded.fetch_add(1, Relaxed);
                return overloaded(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the storage write queue is full, nothing of this batch was stored; retry later",
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "storing a batch failed");
                m.storage_errors.fetch_add(1, Relaxed);
                m.overloaded.fetch_add(1, Relaxed);
                return overloaded(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("storage unavailable, nothing of this batch was stored: {e}"),
                );
            }
        }
    };
    m.ingested.fetch_add(outcome.accepted, Relaxed);
    m.duplicates.fetch_add(outcome.duplicates, Relaxed);
    m.batches.fetch_add(1, Relaxed);
    Json(IngestResponse {
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
        rejected,
    })
    .into_response()
}
