//! The query API (`/api/...`).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use raceway::{Event, EventKind};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{error, AppState};
use crate::analysis::{self, TraceAnalysis};
use crate::storage::{StoreError, TraceQuery, TraceSummary};

fn store_err(e: StoreError) -> Response {
    tracing::error!(error = %e, "storage read failed");
    super::overloaded(StatusCode::SERVICE_UNAVAILABLE, &format!("storage: {e}"))
}

fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    s.parse::<raceway::Timestamp>()
        .map(|t| t.0)
        .map_err(|_| format!("invalid time {s:?}: use RFC 3339 or nanoseconds since the epoch"))
}

fn parse_trace_id(s: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s)
        .or_else(|_| s.parse::<raceway::TraceId>().map(|t| t.to_uuid()))
        .map_err(|_| format!("invalid trace id {s:?}: use UUID text or 32 hex digits"))
}

/// A trace and the traces stitched to it, with their events in a canonical order.
pub struct Gathered {
    /// Requested trace first, then the stitched ones in BFS order.
    pub trace_ids: Vec<Uuid>,
    /// Events sorted by (timestamp, trace, thread, seq, id), so every instance analyses the same sequence.
    pub events: Vec<Event>,
}

/// Loads a trace and, when distributed tracing is on, every trace linked to it by header loss (BFS over
/// `analysis::linked_trace_ids` and the reverse links in `distributed_edges`), at most `max_linked_traces`.
pub async fn gather(st: &AppState, trace_id: Uuid) -> Result<Gathered, StoreError> {
    let mut seen: HashSet<Uuid> = HashSet::from([trace_id]);
    let mut order = vec![trace_id];
    let mut queue = VecDeque::from([trace_id]);
    let mut events = Vec::new();
    while let Some(t) = queue.pop_front() {
        let evs = st.store.events(&[t]).await?;
        if st.config.distributed_tracing {
            let mut next = analysis::linked_trace_ids(&evs);
            next.extend(st.store.traces_linking_to(t).await?);
            for n in next {
                if seen.len() >= st.config.max_linked_traces {
                    break;
                }
                if seen.insert(n) {
                    order.push(n);
                    queue.push_back(n);
                }
            }
        }
        events.extend(evs);
    }
    events.sort_by(|a, b| {
        (a.timestamp, a.trace_id, &a.thread_id, a.seq, a.id).cmp(&(
            b.timestamp,
            b.trace_id,
            &b.thread_id,
            b.seq,
            b.id,
        ))
    });
    Ok(Gathered {
        trace_ids: order,
        events,
    })
}

/// Runs the analysis. With distributed tracing off, each service's events are analysed on their own (no
/// cross-service edges, no stitching) and the results are concatenated; the critical path is the longest
/// service's one.
pub fn analyze(st: &AppState, trace_id: Uuid, events: &[Event]) -> TraceAnalysis {
    if st.config.distributed_tracing {
        return analysis::analyze_trace(events, &st.baselines);
    }
    let mut by_service: std::collections::BTreeMap<&str, Vec<Event>> = Default::default();
    for e in events {
        by_service.entry(&e.service).or_default().push(e.clone());
    }
    let mut out = TraceAnalysis {
        trace_id,
        ..Default::default()
    };
    for evs in by_service.values() {
        let a = analysis::analyze_trace(evs, &st.baselines);
        if a.critical_path.total_duration_ms > out.critical_path.total_duration_ms {
            out.critical_path = a.critical_path;
        }
        out.race_conditions.extend(a.race_conditions);
        out.anomalies.extend(a.anomalies);
        out.clock_conflicts.extend(a.clock_conflicts);
        out.warnings.extend(a.warnings);
        out.service_breakdown
            .services
            .extend(a.service_breakdown.services);
    }
    out.service_breakdown.total_services = out.service_breakdown.services.len();
    out.warnings.push(analysis::Warning {
        kind: "distributed_tracing_disabled".into(),
        message: "distributed tracing is disabled: each service was analysed on its own".into(),
        span_id: None,
    });
    out
}

/// Gathers, analyses (on the blocking pool), remembers the race count and feeds finished traces to the
/// baselines. `None` when the trace does not exist.
async fn analyze_stored(
    st: &Arc<AppState>,
    trace_id: Uuid,
) -> Result<Option<(Gathered, TraceAnalysis)>, StoreError> {
    let Some(summary) = st.store.trace_summary(trace_id).await? else {
        return Ok(None);
    };
    let g = gather(st, trace_id).await?;
    let st2 = st.clone();
    let (g, a) = tokio::task::spawn_blocking(move || {
        let a = analyze(&st2, trace_id, &g.events);
        st2.maybe_observe(trace_id, summary.last_ns, &g.events);
        (g, a)
    })
    .await
    .map_err(|e| StoreError::Other(format!("analysis task failed: {e}")))?;
    st.store
        .set_race_count(
            trace_id,
            summary.event_count,
            a.race_conditions.len() as u64,
        )
        .await?;
    Ok(Some((g, a)))
}

/// Query of `GET /api/traces`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    service: Option<String>,
    since: Option<String>,
    min_events: Option<u64>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct TraceListItem {
    trace_id: Uuid,
    services: Vec<String>,
    service_count: usize,
    event_count: u64,
    start: String,
    duration_ms: f64,
    race_count: Option<u64>,
}

/// Traces at most this large get their race count computed while listing.
const LIST_ANALYSIS_MAX_EVENTS: u64 = 50_000;

/// `GET /api/traces`.
pub async fn list_traces(State(st): State<Arc<AppState>>, Query(q): Query<ListQuery>) -> Response {
    let since_ns = match q.since.as_deref().map(parse_time).transpose() {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => match c
            .split_once('_')
            .and_then(|(f, id)| Some((f.parse::<i64>().ok()?, Uuid::parse_str(id).ok()?)))
        {
            Some(v) => Some(v),
            None => return error(StatusCode::BAD_REQUEST, format!("invalid cursor {c:?}")),
        },
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let tq = TraceQuery {
        service: q.service,
        since_ns,
        min_events: q.min_events,
        after,
        limit,
    };
    let traces: Vec<TraceSummary> = match st.store.list_traces(&tq).await {
        Ok(v) => v,
        Err(e) => return store_err(e),
    };
    let mut items = Vec::with_capacity(traces.len());
    for t in &traces {
        let mut race_count = t.race_count;
        if race_count.is_none() && t.event_count <= LIST_ANALYSIS_MAX_EVENTS {
            match analyze_stored(&st, t.trace_id).await {
                Ok(Some((_, a))) => race_count = Some(a.race_conditions.len() as u64),
                Ok(None) => {}
                Err(e) => return store_err(e),
            }
        }
        items.push(TraceListItem {
            trace_id: t.trace_id,
            service_count: t.services.len(),
            services: t.services.clone(),
            event_count: t.event_count,
            start: raceway::Timestamp(t.first_ns).to_string(),
            duration_ms: (t.last_ns - t.first_ns) as f64 / 1e6,
            race_count,
        });
    }
    let next_cursor = (traces.len() == limit as usize)
        .then(|| {
            traces
                .last()
                .map(|t| format!("{}_{}", t.first_ns, t.trace_id))
        })
        .flatten();
    Json(json!({"traces": items, "next_cursor": next_cursor})).into_response()
}

/// `GET /api/traces/{id}`: merged events (with their vector clocks), spans, edges, per-trace dependencies.
pub async fn get_trace(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let id = match parse_trace_id(&id) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match st.store.trace_summary(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("trace {id} not found")),
        Err(e) => return store_err(e),
    }
    let g = match gather(&st, id).await {
        Ok(g) => g,
        Err(e) => return store_err(e),
    };
    let (spans, edges) = match (
        st.store.spans(&g.trace_ids).await,
        st.store.edges(&g.trace_ids).await,
    ) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return store_err(e),
    };
    let dependencies = analysis::dependencies(&g.events);
    Json(json!({
        "trace_id": id,
        "trace_ids": g.trace_ids,
        "event_count": g.events.len(),
        "events": g.events,
        "spans": spans,
        "edges": edges,
        "dependencies": dependencies,
    }))
    .into_response()
}

/// `GET /api/traces/{id}/analysis`.
pub async fn get_analysis(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let id = match parse_trace_id(&id) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match analyze_stored(&st, id).await {
        Ok(Some((_, a))) => Json(a).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("trace {id} not found")),
        Err(e) => store_err(e),
    }
}

/// `GET /api/services`.
pub async fn list_services(State(st): State<Arc<AppState>>) -> Response {
    match st.store.services().await {
        Ok(s) => Json(json!({"services": s})).into_response(),
        Err(e) => store_err(e),
    }
}

/// Most recent edges considered for global dependencies.
const DEPENDENCY_EDGES: u32 = 100_000;

/// `GET /api/services/{name}/dependencies`: upstream (callers of `name`) and downstream (its callees).
pub async fn dependencies(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let edges = match st.store.service_edges(&name, DEPENDENCY_EDGES).await {
        Ok(e) => e,
        Err(e) => return store_err(e),
    };
    let mut service_edges = Vec::with_capacity(edges.len());
    for e in &edges {
        let (Some(caller), Some(callee)) = (&e.caller_service, &e.callee_service) else {
            continue;
        };
        let latencies: Vec<f64> = e.latency_ms().into_iter().collect();
        let v = json!({
            "caller": caller,
            "callee": callee,
            "call_count": 1,
            "error_count": u64::from(e.failed()),
            "latencies_ms": latencies,
        });
        match serde_json::from_value::<analysis::ServiceEdge>(v) {
            Ok(se) => service_edges.push(se),
            Err(err) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("building dependency edges: {err}"),
                )
            }
        }
    }
    let summary = analysis::aggregate_dependencies(service_edges);
    let summary = serde_json::to_value(summary).unwrap_or_default();
    let mut upstream = Vec::new();
    let mut downstream = Vec::new();
    for d in summary.as_array().into_iter().flatten() {
        if d.get("callee").and_then(|v| v.as_str()) == Some(name.as_str()) {
            upstream.push(d.clone());
        }
        if d.get("caller").and_then(|v| v.as_str()) == Some(name.as_str()) {
            downstream.push(d.clone());
        }
    }
    Json(json!({"service": name, "upstream": upstream, "downstream": downstream})).into_response()
}

/// Query of `GET /api/races`.
#[derive(Debug, Deserialize)]
pub struct RacesQuery {
    since: Option<String>,
    until: Option<String>,
    variable: Option<String>,
    limit: Option<u32>,
}

/// Traces scanned at most by one `GET /api/races`.
const RACE_TRACES: u32 = 1_000;

/// `GET /api/races`: cross-trace races among the traces active in `[since, until]` (default: the last 15
/// minutes), optionally for one variable.
pub async fn races(State(st): State<Arc<AppState>>, Query(q): Query<RacesQuery>) -> Response {
    let now = raceway::Timestamp::now().0;
    let until = match q.until.as_deref().map(parse_time).transpose() {
        Ok(v) => v.unwrap_or(now),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let since = match q.since.as_deref().map(parse_time).transpose() {
        Ok(v) => v.unwrap_or(until - 15 * 60 * 1_000_000_000),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if since > until {
        return error(StatusCode::BAD_REQUEST, "since is after until");
    }
    let limit = q.limit.unwrap_or(RACE_TRACES).clamp(1, RACE_TRACES);
    let ids = match st.store.traces_in_window(since, until, limit).await {
        Ok(v) => v,
        Err(e) => return store_err(e),
    };
    let mut events = match st.store.events(&ids).await {
        Ok(v) => v,
        Err(e) => return store_err(e),
    };
    let variable = q.variable.clone();
    events.retain(|e| match &e.kind {
        EventKind::StateChange { variable: v, .. } => {
            variable.as_deref().is_none_or(|want| &**v == want)
        }
        EventKind::LockAcquire { .. }
        | EventKind::LockRelease { .. }
        | EventKind::SpanStart { .. }
        | EventKind::SpanEnd { .. } => true,
        _ => false,
    });
    events.sort_by(|a, b| {
        (a.timestamp, a.trace_id, &a.thread_id, a.seq, a.id).cmp(&(
            b.timestamp,
            b.trace_id,
            &b.thread_id,
            b.seq,
            b.id,
        ))
    });
    let tolerance = st.config.skew_tolerance;
    let races = tokio::task::spawn_blocking(move || {
        let refs: Vec<&Event> = events.iter().collect();
        analysis::cross_trace_races(&refs, tolerance)
    })
    .await
    .unwrap_or_default();
    Json(json!({
        "since": raceway::Timestamp(since).to_string(),
        "until": raceway::Timestamp(until).to_string(),
        "variable": q.variable,
        "traces_scanned": ids.len(),
        "skew_tolerance_ms": tolerance.as_secs_f64() * 1e3,
        "races": races,
    }))
    .into_response()
}
