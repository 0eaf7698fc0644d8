//! The [`Raceway`] handle and its builder.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::captured::{CapturedEvent, ServiceIdentity};
use crate::exporter::{Exporter, ExporterConfig};
use crate::propagation::{Extracted, Extractor};
use crate::stats::{Stats, StatsSnapshot};
use crate::vector_clock::{DEFAULT_COMPONENT_TTL, DEFAULT_MAX_COMPONENTS};
use crate::Event;

/// The per-service Raceway handle: configuration, counters and the exporter. Cheap to clone; no global state.
///
/// ```
/// # fn main() -> Result<(), raceway::BuildError> {
/// // No endpoint: propagation-only mode, nothing is exported.
/// let raceway = raceway::Raceway::builder().service_name("orders").build()?;
/// assert_eq!(raceway.service_name(), "orders");
/// assert_eq!(raceway.stats().events_sent, 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Raceway {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) identity: ServiceIdentity,
    pub(crate) propagation_enabled: bool,
    pub(crate) headers_debug: bool,
    pub(crate) tracestate_entry: bool,
    pub(crate) max_clock_components: usize,
    pub(crate) clock_ttl: Duration,
    pub(crate) stats: Arc<Stats>,
    pub(crate) sink: Sink,
}

pub(crate) enum Sink {
    None,
    Http(Exporter),
    Recorder(EventRecorder),
}

/// Why a [`RacewayBuilder`] could not build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("invalid Raceway endpoint {0:?}: expected an http:// or https:// URL")]
    InvalidEndpoint(String),
    /// The API key cannot be sent in a header.
    #[error("the Raceway API key contains characters not allowed in an HTTP header")]
    InvalidApiKey,
    /// The exporter thread could not start.
    #[error("could not start the Raceway exporter: {0}")]
    Exporter(#[from] std::io::Error),
}

/// Configures a [`Raceway`] handle. Every setting has a safe default; environment variables
/// (`RACEWAY_INSTANCE_ID`, `RACEWAY_ENDPOINT`, `RACEWAY_API_KEY`) fill what the builder leaves unset.
#[derive(Debug, Clone)]
pub struct RacewayBuilder {
    service_name: Option<String>,
    instance_id: Option<String>,
    endpoint: Option<String>,
    api_key: Option<String>,
    propagation_enabled: bool,
    propagation_headers_debug: bool,
    tracestate_entry: bool,
    batch_size: usize,
    flush_interval: Duration,
    queue_capacity: usize,
    request_timeout: Duration,
    max_retries: u32,
    max_backoff: Duration,
    max_clock_components: usize,
    clock_component_ttl: Duration,
    use_env: bool,
    recorder: Option<EventRecorder>,
}

impl Default for RacewayBuilder {
    fn default() -> Self {
        Self {
            service_name: None,
            instance_id: None,
            endpoint: None,
            api_key: None,
            propagation_enabled: true,
            propagation_headers_debug: false,
            tracestate_entry: true,
            batch_size: 100,
            flush_interval: Duration::from_secs(1),
            queue_capacity: 10_000,
            request_timeout: Duration::from_secs(5),
            max_retries: 5,
            max_backoff: Duration::from_secs(30),
            max_clock_components: DEFAULT_MAX_COMPONENTS,
            clock_component_ttl: DEFAULT_COMPONENT_TTL,
            use_env: true,
            recorder: None,
        }
    }
}

impl RacewayBuilder {
    /// Service name (default `unknown_service`, as in OpenTelemetry).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Instance id (default: `RACEWAY_INSTANCE_ID`, else `<hostname>-<pid>`).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// Backend base URL, e.g. `http://127.0.0.1:8080` (default: `RACEWAY_ENDPOINT`; none = propagation only).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// API key sent as `Authorization: Bearer` (default: `RACEWAY_API_KEY`).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// `false` makes the integrations pass requests through untouched (default `true`).
    pub fn propagation_enabled(mut self, enabled: bool) -> Self {
        self.propagation_enabled = enabled;
        self
    }

    /// Log received and sent propagation headers at `debug` level through `tracing` (default `false`).
    pub fn propagation_headers_debug(mut self, enabled: bool) -> Self {
        self.propagation_headers_debug = enabled;
        self
    }

    /// Write the `raceway=<span>` tracestate entry (default `true`).
    pub fn tracestate_entry(mut self, enabled: bool) -> Self {
        self.tracestate_entry = enabled;
        self
    }

    /// Most events per request to the backend (default 100).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Longest time an event waits in the exporter before being sent (default 1 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Events the export queue holds before new ones are dropped and counted (default 10,000).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// Timeout of one export request (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Retries of a batch after connection errors, 5xx or 429 (default 5); 4xx batches are never retried.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Longest wait between retries (default 30 s).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// Most components in the clock this service sends (default 64).
    pub fn max_clock_components(mut self, n: usize) -> Self {
        self.max_clock_components = n.max(1);
        self
    }

    /// Age after which a component that has not advanced may be dropped first (default 15 minutes).
    pub fn clock_component_ttl(mut self, ttl: Duration) -> Self {
        self.clock_component_ttl = ttl;
        self
    }

    /// Ignore `RACEWAY_*` environment variables (useful in tests).
    pub fn ignore_env(mut self) -> Self {
        self.use_env = false;
        self
    }

    /// Keep captured events in memory instead of exporting them (tests, examples).
    pub fn record_to(mut self, recorder: EventRecorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Builds the handle and, when an endpoint is configured, starts the exporter thread.
    pub fn build(self) -> Result<Raceway, BuildError> {
        let env = |name: &str| {
            self.use_env
                .then(|| std::env::var(name).ok())
                .flatten()
                .filter(|v| !v.trim().is_empty())
        };
        let service = self
            .service_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown_service".into());
        let instance = self
            .instance_id
            .clone()
            .or_else(|| env("RACEWAY_INSTANCE_ID"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "{}-{}",
                    gethostname::gethostname().to_string_lossy(),
                    std::process::id()
                )
            });
        let service = truncate(service);
        let instance = truncate(instance);
        let endpoint = self.endpoint.clone().or_else(|| env("RACEWAY_ENDPOINT"));
        let api_key = self.api_key.clone().or_else(|| env("RACEWAY_API_KEY"));
        if let Some(key) = &api_key {
            if http::HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
                return Err(BuildError::InvalidApiKey);
            }
        }
        let identity = ServiceIdentity {
            own_key: format!("{service}#{instance}").into(),
            service: service.into(),
            instance: instance.into(),
        };
        let stats = Arc::new(Stats::default());
        let sink = if let Some(recorder) = self.recorder.clone() {
            Sink::Recorder(recorder)
        } else if let Some(endpoint) = endpoint {
            let base = endpoint.trim_end_matches('/');
            if !(base.starts_with("http://") || base.starts_with("https://"))
                || reqwest::Url::parse(base).is_err()
            {
                return Err(BuildError::InvalidEndpoint(endpoint));
            }
            let config = ExporterConfig {
                url: format!("{base}/v1/events"),
                api_key,
                batch_size: self.batch_size,
                flush_interval: self.flush_interval,
                request_timeout: self.request_timeout,
                max_retries: self.max_retries,
                max_backoff: self.max_backoff,
            };
            Sink::Http(Exporter::start(
                config,
                identity.clone(),
                self.queue_capacity,
                Arc::clone(&stats),
            )?)
        } else {
            Sink::None
        };
        Ok(Raceway {
            inner: Arc::new(Inner {
                identity,
                propagation_enabled: self.propagation_enabled,
                headers_debug: self.propagation_headers_debug,
                tracestate_entry: self.tracestate_entry,
                max_clock_components: self.max_clock_components,
                clock_ttl: self.clock_component_ttl,
                stats,
                sink,
            }),
        })
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > 256 {
        let mut end = 256;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Raceway {
    /// A builder with defaults.
    pub fn builder() -> RacewayBuilder {
        RacewayBuilder::default()
    }

    /// Service name.
    pub fn service_name(&self) -> &str {
        &self.inner.identity.service
    }

    /// Instance id.
    pub fn instance_id(&self) -> &str {
        &self.inner.identity.instance
    }

    /// This service's clock component key, `service#instance`.
    pub fn clock_key(&self) -> &str {
        &self.inner.identity.own_key
    }

    /// Whether integrations propagate (when `false` they pass requests through untouched).
    pub fn propagation_enabled(&self) -> bool {
        self.inner.propagation_enabled
    }

    /// Whether received and sent headers are logged.
    pub fn propagation_headers_debug(&self) -> bool {
        self.inner.headers_debug
    }

    /// `true` when events are captured (an endpoint or a recorder is configured).
    pub fn is_capturing(&self) -> bool {
        !matches!(self.inner.sink, Sink::None)
    }

    /// Current counters.
    pub fn stats(&self) -> StatsSnapshot {
        let mut snapshot = self.inner.stats.snapshot();
        if let Sink::Http(exporter) = &self.inner.sink {
            snapshot.events_captured = exporter.captured();
        }
        snapshot
    }

    /// Extracts the three headers from `carrier` and counts what was wrong with them.
    pub fn extract<E: Extractor + ?Sized>(&self, carrier: &E) -> Extracted {
        let extracted = crate::propagation::extract(carrier);
        let stats = &self.inner.stats;
        if extracted.traceparent_error.is_some() {
            Stats::add(&stats.traceparent_errors, 1);
        }
        if extracted.tracestate_error.is_some() {
            Stats::add(&stats.tracestate_errors, 1);
        }
        if extracted.clock_status.is_error() {
            Stats::add(&stats.clock_errors, 1);
        }
        if extracted.clock_status == crate::ClockStatus::Conflict {
            Stats::add(&stats.clock_conflicts, 1);
        }
        if extracted.is_partial() {
            Stats::add(&stats.partial_spans, 1);
        }
        if self.inner.headers_debug {
            tracing::debug!(
                service = %self.inner.identity.service,
                traceparent = ?extracted.traceparent,
                traceparent_error = ?extracted.traceparent_error,
                tracestate_error = ?extracted.tracestate_error,
                clock_status = ?extracted.clock_status,
                "raceway: received propagation headers"
            );
        }
        extracted
    }

    /// Sends everything captured so far, waiting at most `deadline`. Returns `false` on timeout.
    pub async fn flush(&self, deadline: Duration) -> bool {
        match &self.inner.sink {
            Sink::Http(exporter) => exporter.flush(deadline).await,
            _ => true,
        }
    }

    /// Flushes with a 5-second deadline; call before the process exits.
    pub async fn shutdown(&self) -> bool {
        self.flush(Duration::from_secs(5)).await
    }

    /// Captures the event `make` builds, calling it only when the sink has room.
    #[inline]
    pub(crate) fn capture_with(&self, make: impl FnOnce() -> CapturedEvent) {
        let stats = &self.inner.stats;
        match &self.inner.sink {
            Sink::None => {}
            Sink::Recorder(recorder) => {
                Stats::add(&stats.events_captured, 1);
                recorder.push(make().into_event(&self.inner.identity));
            }
            Sink::Http(exporter) => {
                // Captured events are counted by the queue, per thread (see `Exporter::captured`).
                if !exporter.try_send_with(make) {
                    Stats::add(&stats.events_dropped, 1);
                }
            }
        }
    }
}

impl std::fmt::Debug for Raceway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raceway")
            .field("service", &self.inner.identity.service)
            .field("instance", &self.inner.identity.instance)
            .field("capturing", &self.is_capturing())
            .finish()
    }
}

/// Keeps captured events in memory; for tests and examples.
///
/// ```
/// use raceway::{EventRecorder, Raceway};
/// let recorder = EventRecorder::new();
/// let raceway = Raceway::builder().service_name("svc").record_to(recorder.clone()).build().unwrap();
/// let ctx = raceway.new_trace("job");
/// ctx.in_scope(|| raceway::track_write("counter", 1));
/// assert_eq!(recorder.events().len(), 2); // span_start + state_change
/// ```
#[derive(Clone, Default)]
pub struct EventRecorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl EventRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&self, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    /// A copy of every event recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Removes and returns every event recorded so far.
    pub fn take(&self) -> Vec<Event> {
        self.events
            .lock()
            // Keep some room so that a recorder drained in a loop does not regrow from zero every time.
            .map(|mut e| {
                let room = e.len().min(4096);
                std::mem::replace(&mut *e, Vec::with_capacity(room))
            })
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder").finish_non_exhaustive()
    }
}
