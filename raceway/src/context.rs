//! The task-local causal context: which trace, span and logical thread the running code belongs to.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::captured::{
    CapturedEvent, CapturedHttp, CapturedKind, CapturedLocation, ClockSnapshot, PackedHttp,
    ThreadName,
};
use crate::clock_header::{ClockPayload, RACEWAY_CLOCK};
use crate::event::{Callee, HttpInfo, TraceparentStatus, Upstream};
use crate::propagation::{Extracted, Extractor, Injector};
use crate::trace_context::{TraceFlags, TraceParent, TraceState, TRACEPARENT, TRACESTATE};
use crate::{
    EventKind, HeldLock, LockMode, Raceway, SpanId, SpanKind, Timestamp, TraceId, VectorClock,
};

tokio::task_local! {
    static CURRENT: Context;
}

/// The context of the running code, if it runs inside one.
///
/// ```
/// let raceway = raceway::Raceway::builder().service_name("svc").build().unwrap();
/// assert!(raceway::current().is_none());
/// let ctx = raceway.new_trace("job");
/// ctx.in_scope(|| assert_eq!(raceway::current().unwrap().trace_id(), ctx.trace_id()));
/// ```
pub fn current() -> Option<Context> {
    CURRENT.try_with(Context::clone).ok()
}

/// Runs `f` on the current context, if any, without cloning it (the tracking functions' hot path).
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Context) -> R) -> Option<R> {
    CURRENT.try_with(f).ok()
}

/// A span of a trace, running on one logical thread. Cheap to clone (clones share the thread).
#[derive(Clone)]
pub struct Context {
    inner: Arc<SpanContext>,
}

struct SpanContext {
    raceway: Raceway,
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    /// The `traceparent` parent-id this span was opened with (differs from `parent_span_id` when reparented).
    received_parent_id: Option<SpanId>,
    operation: Arc<str>,
    flags: TraceFlags,
    tracestate: TraceState,
    partial: bool,
    thread: ThreadOf,
}

/// Where a span's logical thread lives: in the span that started it (a request's server span, a fork), or, for
/// a child span on the same thread, in that span. Keeping it in the starting span saves an allocation per request.
enum ThreadOf {
    Own(LogicalThread),
    /// A span whose thread is `Own`.
    Span(Arc<SpanContext>),
}

impl SpanContext {
    fn thread(&self) -> &LogicalThread {
        match &self.thread {
            ThreadOf::Own(thread) => thread,
            ThreadOf::Span(span) => span.thread(),
        }
    }

    /// A handle on this span's thread for a child span.
    fn share_thread(self: &Arc<Self>) -> ThreadOf {
        match &self.thread {
            ThreadOf::Own(_) => ThreadOf::Span(Arc::clone(self)),
            ThreadOf::Span(span) => ThreadOf::Span(Arc::clone(span)),
        }
    }
}

struct LogicalThread {
    id: ThreadName,
    state: Mutex<ThreadState>,
}

struct ThreadState {
    seq: u64,
    /// The logical thread's clock as of its last change other than a tick of the local component. Events share it
    /// (it is copied on write while they hold it), so that capturing one allocates no clock.
    base: Arc<VectorClock>,
    /// The local component's counter now; `base` may hold an older value of it, or none.
    own: u64,
    locks: Vec<HeldLock>,
    forks: u32,
}

impl ThreadState {
    fn new(clock: VectorClock, own_key: &str) -> Self {
        ThreadState {
            seq: 0,
            own: clock.get(own_key),
            base: Arc::new(clock),
            locks: Vec::new(),
            forks: 0,
        }
    }

    /// Advances the local component.
    fn tick(&mut self) -> u64 {
        self.own = (self.own + 1).min(crate::vector_clock::MAX_COUNTER);
        self.own
    }

    /// The full clock now.
    fn clock(&self, own_key: &Arc<str>) -> VectorClock {
        if self.own > 0 {
            self.base.with_counter(own_key, self.own)
        } else {
            (*self.base).clone()
        }
    }

    /// Element-wise maximum with `other`, then bounded per the spec's drop rule.
    fn merge(&mut self, other: &VectorClock, own_key: &Arc<str>, max: usize, ttl: Duration) {
        let base = Arc::make_mut(&mut self.base);
        if self.own > 0 {
            base.set_counter(own_key, self.own);
        }
        base.merge(other);
        base.bound(max, own_key, ttl);
        self.own = base.get(own_key);
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("trace_id", &self.inner.trace_id)
            .field("span_id", &self.inner.span_id)
            .field("parent_span_id", &self.inner.parent_span_id)
            .field("thread_id", &self.inner.thread().id.as_str())
            .finish()
    }
}

/// Details of an inbound request for [`Raceway::server_span`].
#[derive(Debug, Clone, Default)]
pub struct ServerRequest {
    /// Operation name, e.g. `POST /checkout`.
    pub operation: String,
    /// HTTP details, if the transport is HTTP.
    pub http: Option<HttpInfo>,
}

/// The HTTP details of an inbound request, borrowed from it, for [`Raceway::http_server_span`].
#[derive(Debug, Clone, Copy)]
pub struct HttpRequestParts<'a> {
    /// Request method.
    pub method: &'a str,
    /// Matched route template, when the framework knows it.
    pub route: Option<&'a str>,
    /// Request target (path and query).
    pub target: &'a str,
}

impl Raceway {
    /// Opens this service's span for an inbound request: continues the extracted trace (or starts one), merges
    /// the upstream clock, and records `span_start` (carrying the request's HTTP details, if any).
    pub fn server_span(&self, extracted: &Extracted, request: ServerRequest) -> Context {
        let http = match request.http {
            Some(http) => CapturedHttp::Owned(http),
            None => CapturedHttp::None,
        };
        self.open_server_span(extracted, request.operation.into(), || http)
    }

    /// [`Raceway::server_span`] for an HTTP request whose details are borrowed: they are copied (into one
    /// allocation) only when events are captured. This is what the server middleware uses.
    ///
    /// ```
    /// use raceway::{propagation::extract, HttpRequestParts};
    /// let recorder = raceway::EventRecorder::new();
    /// let raceway = raceway::Raceway::builder().service_name("svc").record_to(recorder.clone()).build().unwrap();
    /// let extracted = extract(&http::HeaderMap::new());
    /// let parts = HttpRequestParts { method: "GET", route: Some("/users/{id}"), target: "/users/7?full=1" };
    /// let ctx = raceway.http_server_span(&extracted, "GET /users/{id}", parts);
    /// ctx.end_span(Some(200), false, std::time::Duration::from_millis(1));
    /// match &recorder.events()[0].kind {
    ///     raceway::EventKind::SpanStart { http: Some(http), .. } => {
    ///         assert_eq!((http.method.as_str(), http.route.as_deref()), ("GET", Some("/users/{id}")));
    ///         assert_eq!(http.target, "/users/7?full=1");
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn http_server_span(
        &self,
        extracted: &Extracted,
        operation: &str,
        http: HttpRequestParts<'_>,
    ) -> Context {
        self.open_server_span(extracted, operation.into(), || {
            CapturedHttp::Packed(PackedHttp::new(http.method, http.route, http.target))
        })
    }

    fn open_server_span(
        &self,
        extracted: &Extracted,
        operation: Arc<str>,
        http: impl FnOnce() -> CapturedHttp,
    ) -> Context {
        let (trace_id, flags, tracestate, parent, traceparent_status) = match &extracted.traceparent
        {
            Some(tp) => (
                tp.trace_id,
                tp.flags,
                extracted.tracestate.clone(),
                extracted.upstream_call_id(),
                TraceparentStatus::Valid,
            ),
            None => (
                TraceId::random(),
                TraceFlags::new(0x03),
                TraceState::new(),
                None,
                if extracted.traceparent_error.is_some() {
                    TraceparentStatus::Invalid
                } else {
                    TraceparentStatus::Absent
                },
            ),
        };
        let mut clock = VectorClock::new();
        if let Some(upstream) = &extracted.clock {
            clock.merge(&upstream.clock);
            clock.bound(
                self.inner.max_clock_components,
                &self.inner.identity.own_key,
                self.inner.clock_ttl,
            );
        }
        let received_parent = extracted.traceparent.map(|tp| tp.parent_id);
        let ctx = Context::root(
            self,
            trace_id,
            (parent, received_parent),
            flags,
            tracestate,
            operation,
            clock,
            extracted.is_partial(),
        );
        ctx.record_lazy(
            || CapturedKind::SpanStart {
                operation: Arc::clone(&ctx.inner.operation),
                span_kind: SpanKind::Server,
                http: http(),
                upstream: Some(Upstream {
                    traceparent: traceparent_status,
                    clock: extracted.clock_status,
                }),
            },
            None,
            None,
        );
        ctx
    }

    /// Starts a new trace with a root span of kind `internal` (background jobs, or outbound calls made outside
    /// any request).
    pub fn new_trace(&self, operation: impl Into<String>) -> Context {
        let operation = operation.into();
        let ctx = Context::root(
            self,
            TraceId::random(),
            (None, None),
            TraceFlags::new(0x03),
            TraceState::new(),
            operation.as_str().into(),
            VectorClock::new(),
            false,
        );
        ctx.record_at(
            EventKind::SpanStart {
                operation,
                span_kind: SpanKind::Internal,
                http: None,
                upstream: None,
            },
            None,
            None,
        );
        ctx
    }
}

/// `flags` of a clock sent by a span that continued a trace without an intact upstream clock.
static PARTIAL_FLAGS: std::sync::LazyLock<[String; 1]> =
    std::sync::LazyLock::new(|| ["partial".to_owned()]);

fn lock_state(thread: &LogicalThread) -> MutexGuard<'_, ThreadState> {
    thread.state.lock().unwrap_or_else(PoisonError::into_inner)
}

enum EventLocation {
    Caller(Option<&'static Location<'static>>),
    Text(Option<String>),
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Applies the spec/EVENTS.md tag limits: at most 64 entries, keys at most 256 bytes, values at most 4096.
fn bound_tags(tags: BTreeMap<String, String>) -> BTreeMap<String, String> {
    if tags.len() <= 64 && tags.iter().all(|(k, v)| k.len() <= 256 && v.len() <= 4096) {
        return tags;
    }
    tags.into_iter()
        .take(64)
        .map(|(mut k, mut v)| {
            truncate_utf8(&mut k, 256);
            truncate_utf8(&mut v, 4096);
            (k, v)
        })
        .collect()
}

/// Per-thread direct-mapped caches (call-site locations, names): one multiply picks the slot, a collision only costs
/// a miss, and memory stays bounded.
struct SlotCache<T> {
    slots: Vec<Option<T>>,
}

impl<T: Clone> SlotCache<T> {
    const SLOTS: usize = 256;

    const fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// The slot for `key` (a Fibonacci hash: its top bits spread neighbouring addresses over the slots).
    fn slot(&mut self, key: u64) -> &mut Option<T> {
        if self.slots.is_empty() {
            self.slots.resize(Self::SLOTS, None);
        }
        let index = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - Self::SLOTS.trailing_zeros());
        &mut self.slots[index as usize]
    }
}

/// `file:line:column` of a call site, formatted once per call site and thread so that recording an event does not
/// format a string every time.
pub(crate) fn location_text(location: &'static Location<'static>) -> Arc<str> {
    thread_local! {
        static CACHE: std::cell::RefCell<SlotCache<(usize, Arc<str>)>> =
            const { std::cell::RefCell::new(SlotCache::new()) };
    }
    let key = std::ptr::from_ref(location) as usize;
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        // `Location`s are 8-aligned statics.
        let slot = cache.slot(key as u64 >> 3);
        if let Some((cached_key, text)) = slot {
            if *cached_key == key {
                return Arc::clone(text);
            }
        }
        let text: Arc<str> = format!(
            "{}:{}:{}",
            location.file(),
            location.line(),
            location.column()
        )
        .into();
        *slot = Some((key, Arc::clone(&text)));
        text
    })
}

/// A variable or lock name as a shared string. Call sites pass the same names over and over, so a per-thread
/// cache, indexed by the name's address and checked by content (a reused address of a dynamic string is a miss,
/// never a wrong name), saves an allocation per event.
pub(crate) fn shared_name(name: &str) -> Arc<str> {
    const MAX_CACHED_LEN: usize = 256;
    thread_local! {
        static CACHE: std::cell::RefCell<SlotCache<Arc<str>>> =
            const { std::cell::RefCell::new(SlotCache::new()) };
    }
    if name.len() > MAX_CACHED_LEN {
        return Arc::from(name);
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let slot = cache.slot(name.as_ptr() as u64 ^ name.len() as u64);
        if let Some(cached) = slot {
            if **cached == *name {
                return Arc::clone(cached);
            }
        }
        let shared: Arc<str> = Arc::from(name);
        *slot = Some(Arc::clone(&shared));
        shared
    })
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    fn root(
        raceway: &Raceway,
        trace_id: TraceId,
        (parent_span_id, received_parent_id): (Option<SpanId>, Option<SpanId>),
        flags: TraceFlags,
        tracestate: TraceState,
        operation: Arc<str>,
        clock: VectorClock,
        partial: bool,
    ) -> Self {
        let span_id = SpanId::random();
        let thread_id = ThreadName::Root(span_id.to_hex());
        Self {
            inner: Arc::new(SpanContext {
                raceway: raceway.clone(),
                trace_id,
                span_id,
                parent_span_id,
                received_parent_id,
                operation,
                flags,
                tracestate,
                partial,
                thread: ThreadOf::Own(LogicalThread {
                    id: thread_id,
                    state: Mutex::new(ThreadState::new(clock, &raceway.inner.identity.own_key)),
                }),
            }),
        }
    }

    /// Trace id.
    pub fn trace_id(&self) -> TraceId {
        self.inner.trace_id
    }

    /// This span's id.
    pub fn span_id(&self) -> SpanId {
        self.inner.span_id
    }

    /// The parent span: the upstream call id for a server span, the enclosing span for a child span.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.inner.parent_span_id
    }

    /// The logical thread id.
    pub fn thread_id(&self) -> &str {
        self.inner.thread().id.as_str()
    }

    /// Trace flags.
    pub fn flags(&self) -> TraceFlags {
        self.inner.flags
    }

    /// Upstream tracestate.
    pub fn tracestate(&self) -> &TraceState {
        &self.inner.tracestate
    }

    /// `true` when the trace continued without an intact `raceway-clock` (header loss).
    pub fn is_partial(&self) -> bool {
        self.inner.partial
    }

    /// The handle this context records to.
    pub fn raceway(&self) -> &Raceway {
        &self.inner.raceway
    }

    /// A snapshot of the logical thread's vector clock.
    pub fn clock(&self) -> VectorClock {
        lock_state(self.inner.thread()).clock(&self.inner.raceway.inner.identity.own_key)
    }

    /// Locks the logical thread currently holds.
    pub fn locks_held(&self) -> Vec<HeldLock> {
        lock_state(self.inner.thread()).locks.clone()
    }

    /// Runs `future` with this context as the current one.
    pub fn scope<F: Future>(self, future: F) -> tokio::task::futures::TaskLocalFuture<Context, F> {
        CURRENT.scope(self, future)
    }

    /// Runs `f` with this context as the current one.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }

    /// Merges a clock into the logical thread's clock (bounded per the spec's drop rule).
    pub fn merge_clock(&self, other: &VectorClock) {
        let inner = &self.inner.raceway.inner;
        lock_state(self.inner.thread()).merge(
            other,
            &inner.identity.own_key,
            inner.max_clock_components,
            inner.clock_ttl,
        );
    }

    /// Records an event of `kind` at the caller's location.
    #[track_caller]
    pub fn record(&self, kind: EventKind) {
        self.record_at(kind, Some(Location::caller()), None);
    }

    /// Records an event with an explicit location and duration.
    #[inline]
    pub fn record_at(
        &self,
        kind: EventKind,
        location: Option<&'static Location<'static>>,
        duration: Option<Duration>,
    ) {
        self.record_with(|| kind, location, duration, |_| {});
    }

    /// Like [`record_at`](Self::record_at), building the event kind only when events are captured: in
    /// propagation-only mode a hop then allocates nothing for events it will not send.
    pub(crate) fn record_lazy<K: Into<CapturedKind>>(
        &self,
        kind: impl FnOnce() -> K,
        location: Option<&'static Location<'static>>,
        duration: Option<Duration>,
    ) {
        self.record_with(kind, location, duration, |_| {});
    }

    /// Records an event with a location given as text (`file:line[:column]`, e.g. from `tracing` metadata),
    /// an optional duration and free-form tags (spec/EVENTS.md limits: at most 64 tags; longer keys and values
    /// are truncated, extra tags dropped).
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// let recorder = raceway::EventRecorder::new();
    /// let raceway = raceway::Raceway::builder().service_name("svc").record_to(recorder.clone()).build().unwrap();
    /// let ctx = raceway.new_trace("job");
    /// let tags: BTreeMap<String, String> = (0..100).map(|i| (format!("k{i:03}"), "v".repeat(5000))).collect();
    /// let kind = raceway::EventKind::Custom { name: "cache miss".into(), data: None };
    /// ctx.record_detailed(kind, Some("src/cache.rs:12".into()), None, tags);
    /// let event = recorder.events().pop().unwrap();
    /// assert_eq!(event.location.as_deref(), Some("src/cache.rs:12"));
    /// assert_eq!(event.tags.len(), 64);
    /// assert!(event.tags.values().all(|v| v.len() == 4096));
    /// event.validate().unwrap();
    /// ```
    pub fn record_detailed(
        &self,
        kind: EventKind,
        location: Option<String>,
        duration: Option<Duration>,
        tags: BTreeMap<String, String>,
    ) {
        self.record_inner(
            || kind,
            EventLocation::Text(location),
            duration,
            tags,
            |_| {},
        );
    }

    #[inline]
    fn record_with<K: Into<CapturedKind>>(
        &self,
        kind: impl FnOnce() -> K,
        location: Option<&'static Location<'static>>,
        duration: Option<Duration>,
        update_locks: impl FnOnce(&mut Vec<HeldLock>),
    ) {
        self.record_inner(
            kind,
            EventLocation::Caller(location),
            duration,
            BTreeMap::new(),
            update_locks,
        );
    }

    #[inline]
    fn record_inner<K: Into<CapturedKind>>(
        &self,
        kind: impl FnOnce() -> K,
        location: EventLocation,
        duration: Option<Duration>,
        tags: BTreeMap<String, String>,
        update_locks: impl FnOnce(&mut Vec<HeldLock>),
    ) {
        let span = &*self.inner;
        let mut state = lock_state(span.thread());
        let seq = state.seq;
        state.seq += 1;
        let own = state.tick();
        if !span.raceway.is_capturing() {
            update_locks(&mut state.locks);
            return;
        }
        let base = Arc::clone(&state.base);
        // Built in place by the sink, and only when it has room for it.
        span.raceway.capture_with(|| CapturedEvent {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            thread_id: span.thread().id.clone(),
            seq,
            timestamp: Timestamp::now(),
            duration_ns: duration
                .map(|d| d.as_nanos().min(crate::vector_clock::MAX_COUNTER as u128) as u64),
            clock: ClockSnapshot { base, own },
            locks_held: state.locks.clone(),
            location: match location {
                EventLocation::Caller(Some(location)) => CapturedLocation::Caller(location),
                EventLocation::Text(Some(mut text)) => {
                    truncate_utf8(&mut text, 1024);
                    CapturedLocation::Text(text.into())
                }
                EventLocation::Caller(None) | EventLocation::Text(None) => CapturedLocation::None,
            },
            tags: bound_tags(tags),
            kind: kind().into(),
        });
        update_locks(&mut state.locks);
    }

    /// Records `span_end` (with the HTTP status, when given, as its `status_code`) for a span opened with
    /// [`Raceway::server_span`], [`Raceway::new_trace`] or [`Context::child_span`].
    pub fn end_span(&self, status: Option<u16>, error: bool, duration: Duration) {
        self.record_lazy(
            || CapturedKind::SpanEnd {
                operation: Arc::clone(&self.inner.operation),
                status_code: status.map(i64::from),
                error,
            },
            None,
            Some(duration),
        );
    }

    /// Opens a child span on the same logical thread (e.g. for a `tracing` span) and records its `span_start`.
    pub fn child_span(&self, operation: impl Into<String>, kind: SpanKind) -> Context {
        self.child_span_detailed(operation, kind, None, BTreeMap::new())
    }

    /// Like [`Context::child_span`], with a text location and tags on the `span_start` event (see
    /// [`Context::record_detailed`]).
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// let recorder = raceway::EventRecorder::new();
    /// let raceway = raceway::Raceway::builder().service_name("svc").record_to(recorder.clone()).build().unwrap();
    /// let root = raceway.new_trace("job");
    /// let tags = BTreeMap::from([("user".to_owned(), "42".to_owned())]);
    /// let child = root.child_span_detailed("load", raceway::SpanKind::Internal, Some("src/lib.rs:7".into()), tags);
    /// let start = recorder.events().pop().unwrap();
    /// assert_eq!(start.span_id, child.span_id());
    /// assert_eq!(start.tags["user"], "42");
    /// assert_eq!(start.location.as_deref(), Some("src/lib.rs:7"));
    /// ```
    pub fn child_span_detailed(
        &self,
        operation: impl Into<String>,
        kind: SpanKind,
        location: Option<String>,
        tags: BTreeMap<String, String>,
    ) -> Context {
        let operation: String = operation.into();
        let child = Context {
            inner: Arc::new(SpanContext {
                raceway: self.inner.raceway.clone(),
                trace_id: self.inner.trace_id,
                span_id: SpanId::random(),
                parent_span_id: Some(self.inner.span_id),
                received_parent_id: None,
                operation: operation.as_str().into(),
                flags: self.inner.flags,
                tracestate: self.inner.tracestate.clone(),
                partial: self.inner.partial,
                thread: self.inner.share_thread(),
            }),
        };
        child.record_detailed(
            EventKind::SpanStart {
                operation,
                span_kind: kind,
                http: None,
                upstream: None,
            },
            location,
            None,
            tags,
        );
        child
    }

    /// Forks a new logical thread (a spawned task): records `async_spawn` here and returns the child's context,
    /// which starts with this thread's clock. Pair with [`Context::join`].
    #[track_caller]
    pub fn fork(&self) -> Context {
        let parent = self.inner.thread();
        let n = {
            let mut state = lock_state(parent);
            state.forks += 1;
            state.forks
        };
        let mut child_id = format!("{}.{}", parent.id.as_str(), n);
        if child_id.len() > 128 {
            // Deeply nested forks: keep ids within the spec's 128 bytes, unique with overwhelming probability.
            child_id = format!("{}~{:016x}", self.inner.span_id, rand::random::<u64>());
        }
        let child_id: Arc<str> = child_id.into();
        self.record_at(
            EventKind::AsyncSpawn {
                child_thread_id: Arc::clone(&child_id),
            },
            Some(Location::caller()),
            None,
        );
        let clock = self.clock();
        Context {
            inner: Arc::new(SpanContext {
                raceway: self.inner.raceway.clone(),
                trace_id: self.inner.trace_id,
                span_id: self.inner.span_id,
                parent_span_id: self.inner.parent_span_id,
                received_parent_id: self.inner.received_parent_id,
                operation: Arc::clone(&self.inner.operation),
                flags: self.inner.flags,
                tracestate: self.inner.tracestate.clone(),
                partial: self.inner.partial,
                thread: ThreadOf::Own(LogicalThread {
                    id: ThreadName::Forked(child_id),
                    state: Mutex::new(ThreadState::new(
                        clock,
                        &self.inner.raceway.inner.identity.own_key,
                    )),
                }),
            }),
        }
    }

    /// Joins a forked thread: merges its clock here and records `async_await`.
    #[track_caller]
    pub fn join(&self, child: &Context) {
        self.merge_clock(&child.clock());
        self.record_at(
            EventKind::AsyncAwait {
                child_thread_id: child.inner.thread().id.to_shared(),
            },
            Some(Location::caller()),
            None,
        );
    }

    /// Records a lock acquisition (after acquiring) and adds the lock to `locks_held`.
    #[track_caller]
    pub fn lock_acquired(&self, lock: &str, mode: LockMode) {
        self.lock_acquired_at(&shared_name(lock), mode, Location::caller());
    }

    pub(crate) fn lock_acquired_at(
        &self,
        lock: &Arc<str>,
        mode: LockMode,
        location: &'static Location<'static>,
    ) {
        let lock = Arc::clone(lock);
        {
            let mut state = lock_state(self.inner.thread());
            state.locks.push(HeldLock {
                lock: Arc::clone(&lock),
                mode,
            });
        }
        self.record_at(EventKind::LockAcquire { lock, mode }, Some(location), None);
    }

    /// Records a lock release (before releasing) and removes the lock from `locks_held`.
    #[track_caller]
    pub fn lock_releasing(&self, lock: &str, mode: LockMode) {
        let name = shared_name(lock);
        let removed = Arc::clone(&name);
        self.record_with(
            || EventKind::LockRelease { lock: name, mode },
            Some(Location::caller()),
            None,
            move |locks| {
                if let Some(i) = locks
                    .iter()
                    .rposition(|held| held.lock == removed && held.mode == mode)
                {
                    locks.remove(i);
                }
            },
        );
    }

    /// The `raceway-clock` value a server returns: this span's final clock.
    pub fn response_clock_header(&self) -> String {
        let span = &*self.inner;
        let flags: &[String] = if span.partial {
            &PARTIAL_FLAGS[..]
        } else {
            &[]
        };
        let state = lock_state(span.thread());
        let own_key = &span.raceway.inner.identity.own_key;
        crate::clock_header::encode_parts(
            &span.trace_id.to_uuid(),
            &span.span_id,
            // spec/PROPAGATION.md §3.7: the received parent-id, even when an intermediary re-parented the call.
            &span.received_parent_id.or(span.parent_span_id),
            span.raceway.service_name(),
            span.raceway.instance_id(),
            // The clock as it is now, without copying it.
            state
                .base
                .iter_with_counter(own_key, (state.own > 0).then_some(state.own)),
            flags,
        )
    }

    /// Starts an outbound call: a fresh child span id, a tick, and an `outbound_call` event. Inject its headers
    /// with [`OutboundCall::inject`] and close it with [`OutboundCall::finish`].
    #[track_caller]
    pub fn start_outbound(
        &self,
        protocol: &str,
        method: Option<String>,
        url: Option<String>,
    ) -> OutboundCall {
        let child_span_id = SpanId::random();
        self.record_lazy(
            || EventKind::OutboundCall {
                child_span_id,
                protocol: protocol.to_owned(),
                method,
                url,
            },
            Some(Location::caller()),
            None,
        );
        OutboundCall {
            ctx: self.clone(),
            child_span_id,
            clock: self.clock(),
            started: Instant::now(),
        }
    }
}

/// An outbound call in flight (see [`Context::start_outbound`]).
#[derive(Debug)]
pub struct OutboundCall {
    ctx: Context,
    child_span_id: SpanId,
    clock: VectorClock,
    started: Instant,
}

impl OutboundCall {
    /// The span id sent as the `traceparent` parent-id.
    pub fn child_span_id(&self) -> SpanId {
        self.child_span_id
    }

    /// The context the call was made from.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Writes `traceparent`, `tracestate` and `raceway-clock` into `carrier` (nothing when propagation is off).
    pub fn inject<I: Injector + ?Sized>(&self, carrier: &mut I) {
        let span = &*self.ctx.inner;
        let raceway = &span.raceway;
        if !raceway.propagation_enabled() {
            return;
        }
        let traceparent = TraceParent {
            trace_id: span.trace_id,
            parent_id: self.child_span_id,
            flags: span.flags,
        }
        .to_header();
        carrier.set(TRACEPARENT, &traceparent);
        let child_hex = self.child_span_id.to_hex();
        let entry = raceway
            .inner
            .tracestate_entry
            .then(|| std::str::from_utf8(&child_hex).unwrap_or_default());
        match span.tracestate.header_with_entry(entry) {
            Some(tracestate) => carrier.set_owned(TRACESTATE, tracestate),
            None => carrier.remove(TRACESTATE),
        }
        let clock = crate::clock_header::encode_parts(
            &span.trace_id.to_uuid(),
            &self.child_span_id,
            &Some(span.span_id),
            raceway.service_name(),
            raceway.instance_id(),
            self.clock.iter(),
            &[],
        );
        if raceway.propagation_headers_debug() {
            tracing::debug!(
                traceparent = %String::from_utf8_lossy(&traceparent),
                raceway_clock = %clock,
                "raceway: sent propagation headers"
            );
        }
        carrier.set_owned(RACEWAY_CLOCK, clock);
    }

    /// Closes the call: merges the callee's response clock (if any) and records `outbound_response`.
    pub fn finish<E: Extractor + ?Sized>(
        self,
        status: Option<u16>,
        error: Option<String>,
        response_headers: Option<&E>,
    ) {
        let mut callee = None;
        if let Some(headers) = response_headers {
            let mut values = headers.get_all(RACEWAY_CLOCK);
            if let (Some(value), None) = (values.next(), values.next()) {
                if let Ok(payload) = ClockPayload::decode(value) {
                    self.ctx.merge_clock(&payload.clock);
                    callee = Some(Callee {
                        trace_id: payload.trace_id,
                        span_id: payload.span_id,
                        service: Some(payload.service.to_string()),
                        instance: Some(payload.instance.to_string()),
                    });
                }
            }
        }
        self.ctx.record_at(
            EventKind::OutboundResponse {
                child_span_id: self.child_span_id,
                status: status.map(i64::from),
                error,
                callee,
            },
            None,
            Some(self.started.elapsed()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_names_are_reused_and_never_stale() {
        let a = shared_name("account:42");
        let b = shared_name("account:42");
        assert!(Arc::ptr_eq(&a, &b), "a literal name is cached");
        // Dynamic strings that reuse one buffer address with other contents must never get the old name.
        let mut buffer = String::with_capacity(32);
        for i in 0..1000 {
            buffer.clear();
            buffer.push_str(&format!("var-{i}"));
            assert_eq!(&*shared_name(&buffer), buffer.as_str());
        }
        let long = "x".repeat(1000);
        assert_eq!(&*shared_name(&long), long.as_str());
    }
}
