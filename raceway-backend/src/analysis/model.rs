//! Output types of the analysis, serialised as the `GET /api/traces/{id}/analysis` JSON.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Everything the analysis says about one (merged) trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceAnalysis {
    /// The trace analysed (the first trace id when several were stitched after header loss).
    pub trace_id: Uuid,
    /// Critical path across services.
    pub critical_path: CriticalPath,
    /// Races within the trace.
    pub race_conditions: Vec<Race>,
    /// Slow outliers against learned baselines.
    pub anomalies: Vec<Anomaly>,
    /// Per-service summary.
    pub service_breakdown: ServiceBreakdown,
    /// Orders the wire clocks claim that the explicit edges do not support, or the reverse.
    pub clock_conflicts: Vec<ClockConflict>,
    /// Header loss, clamped spans, missing parents, ...
    pub warnings: Vec<Warning>,
}

/// The critical path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CriticalPath {
    /// Path segments in time order.
    pub path: Vec<CriticalPathSegment>,
    /// Wall-clock duration of the trace, ms.
    pub total_duration_ms: f64,
}

/// One span's contribution to the critical path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CriticalPathSegment {
    /// Span id (16 hex).
    pub span_id: String,
    /// Service.
    pub service: String,
    /// Operation.
    pub operation: String,
    /// Span start (RFC 3339).
    pub start: String,
    /// Span duration, ms.
    pub duration_ms: f64,
    /// Time of this span on the critical path, ms (self time on the path).
    pub self_time_ms: f64,
    /// `self_time_ms` as a percentage of the trace's wall-clock duration.
    #[serde(default)]
    pub percent_of_total: f64,
}

/// Per-service summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceBreakdown {
    /// One entry per service.
    pub services: Vec<ServiceSummary>,
    /// Number of cross-service calls.
    pub cross_service_calls: usize,
    /// Number of services.
    pub total_services: usize,
}

/// One service in a trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    /// Service name.
    pub service_name: String,
    /// Events recorded by it.
    pub event_count: usize,
    /// Wall-clock time covered by its spans (union of intervals), ms.
    pub total_duration_ms: f64,
    /// Its time on the critical path, ms.
    pub critical_path_time_ms: f64,
    /// `critical_path_time_ms` as a percentage of the trace's wall-clock duration.
    #[serde(default)]
    pub critical_path_percent: f64,
}

/// A race between two accesses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Race {
    /// Variable name.
    pub variable: String,
    /// `critical` (write/write) or `warning` (read/write).
    pub severity: String,
    /// `write_write`, `read_write`, or `lost_update` (cross-trace).
    pub kind: String,
    /// First access.
    pub first: RaceAccess,
    /// Second access.
    pub second: RaceAccess,
    /// Human-readable summary.
    pub description: String,
}

/// One side of a race.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaceAccess {
    /// Event id.
    pub event_id: Uuid,
    /// Trace id.
    pub trace_id: Uuid,
    /// Span id (16 hex).
    pub span_id: String,
    /// Service.
    pub service: String,
    /// Instance.
    pub instance: String,
    /// Logical thread.
    pub thread_id: String,
    /// `read`, `write`, `atomic_*`.
    pub access: String,
    /// Source location, when known.
    pub location: Option<String>,
    /// RFC 3339 timestamp.
    pub timestamp: String,
}

/// A slow outlier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Span id.
    pub span_id: String,
    /// Service.
    pub service: String,
    /// Operation.
    pub operation: String,
    /// Observed duration, ms.
    pub duration_ms: f64,
    /// Baseline mean, ms.
    pub baseline_mean_ms: f64,
    /// Baseline standard deviation, ms.
    pub baseline_stddev_ms: f64,
    /// Number of samples behind the baseline.
    pub baseline_samples: u64,
    /// How many standard deviations above the mean.
    pub z_score: f64,
}

/// A disagreement between wire clocks and explicit edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockConflict {
    /// First event.
    pub first_event: Uuid,
    /// Second event.
    pub second_event: Uuid,
    /// What the edges say.
    pub edges_say: String,
    /// What the wire clocks say.
    pub clocks_say: String,
    /// Which clock component contradicts the edges, and how.
    #[serde(default)]
    pub detail: String,
}

/// Something the user should know about the trace's data quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    /// Machine-readable kind, e.g. `header_loss`.
    pub kind: String,
    /// Human-readable text.
    pub message: String,
    /// Span concerned, if any.
    pub span_id: Option<String>,
}
