//! A [`tracing_subscriber::Layer`] that puts `tracing` spans and events into Raceway's causal graph, under the
//! Raceway context (request, task) that ran them.
//!
//! ```
//! use tracing_subscriber::prelude::*;
//!
//! #[tracing::instrument]
//! fn debit(account: u64, amount: i64) {
//!     tracing::info!(raceway.variable = "account:42", raceway.access = "write", raceway.value = 90, "debited");
//! }
//!
//! let recorder = raceway::EventRecorder::new();
//! let raceway = raceway::Raceway::builder().service_name("bank").record_to(recorder.clone()).build().unwrap();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer().with_test_writer())
//!     .with(raceway_tracing::RacewayTracingLayer::new(raceway.clone()));
//! tracing::subscriber::with_default(subscriber, || {
//!     raceway.new_trace("transfer").in_scope(|| debit(42, 10));
//! });
//! let kinds: Vec<_> = recorder.events().iter().map(|e| e.kind.type_name()).collect();
//! assert_eq!(kinds, ["span_start", "span_start", "state_change", "span_end"]);
//! ```
//!
//! # Spans
//!
//! A `tracing` span created while a Raceway context is current (or whose `tracing` parent carries one) opens a
//! Raceway child span (`span_start` of kind `internal`, operation = the span's name, tags = its fields, location
//! = its source file and line). Closing the span records `span_end` with the span's duration (from creation to
//! close) and the fields recorded later with `Span::record` as tags; `error` is `true` when an `ERROR` event was
//! attributed to the span. Spans created outside any Raceway context are ignored, so the layer is free for
//! unrelated spans.
//!
//! # Events
//!
//! A `tracing` event is attributed to the innermost enclosing span that has a Raceway span, else to the current
//! Raceway context. If that span's context runs on another logical thread than the current context (the span was
//! created in another task), the event goes to the current context instead, so program order stays exact.
//!
//! - level `ERROR` → an `error` event (`error_type` = the `error.type` field if present, else the target;
//!   `message` = the message);
//! - any other level → a `custom` event named after the message (or the event's name), with the level, target
//!   and fields as data.
//!
//! # State changes: the field convention
//!
//! An event (any level) with the fields
//!
//! | field | value |
//! |---|---|
//! | `raceway.variable` | the shared variable's global name, e.g. `"account:42"` |
//! | `raceway.access` | `"read"`, `"write"`, `"atomic_read"`, `"atomic_write"` or `"atomic_rmw"` |
//! | `raceway.value` (optional) | the value after the access (numbers and booleans stay JSON numbers/booleans) |
//! | `raceway.old_value` (optional) | the value before |
//!
//! records a `state_change`, exactly like [`raceway::track_state_change`], so races on that variable are
//! detected without another API. An unknown `raceway.access` makes it an ordinary event.
//!
//! # Composition
//!
//! No global state: the layer composes with `fmt`, `tracing-opentelemetry` and filters
//! (`RacewayTracingLayer::new(..).with_filter(..)`). Events emitted by the Raceway crates themselves (target
//! `raceway…`) are ignored. When the handle captures nothing (no endpoint and no recorder) the layer does
//! nothing at all.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use raceway::{Access, Context, EventKind, Raceway, SpanKind};
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer;
use tracing_subscriber::registry::LookupSpan;

/// Exports `tracing` spans and events to Raceway. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct RacewayTracingLayer {
    raceway: Raceway,
}

impl RacewayTracingLayer {
    /// A layer following `raceway`'s settings: it records only when `raceway` captures events. Spans and events
    /// are recorded into the Raceway context they run under.
    pub fn new(raceway: Raceway) -> Self {
        Self { raceway }
    }
}

/// Stored in the extensions of a `tracing` span that opened a Raceway span.
struct RacewaySpan {
    ctx: Context,
    operation: &'static str,
    started: Instant,
    error: Arc<AtomicBool>,
    recorded: Mutex<BTreeMap<String, String>>,
}

/// Collects an event's or span's fields.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    values: Vec<(&'static str, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.values.push((field.name(), value));
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let i = self.values.iter().position(|(n, _)| *n == name)?;
        Some(self.values.swap_remove(i).1)
    }

    fn into_tags(self, tags: &mut BTreeMap<String, String>) {
        for (name, value) in self.values {
            tags.insert(name.to_owned(), value_text(value));
        }
    }
}

fn value_text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::String(value.to_string()));
    }
}

fn location(meta: &Metadata<'_>) -> Option<String> {
    match (meta.file(), meta.line()) {
        (Some(file), Some(line)) => Some(format!("{file}:{line}")),
        (Some(file), None) => Some(file.to_owned()),
        _ => None,
    }
}

fn is_own(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    target == "raceway" || target.starts_with("raceway::")
}

fn parse_access(value: &Value) -> Option<Access> {
    match value.as_str()? {
        "read" => Some(Access::Read),
        "write" => Some(Access::Write),
        "atomic_read" => Some(Access::AtomicRead),
        "atomic_write" => Some(Access::AtomicWrite),
        "atomic_rmw" => Some(Access::AtomicRmw),
        _ => None,
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Chooses where to record: the span's context when it runs on the current logical thread (or there is no
/// current context), else the current context.
fn choose(span_ctx: Option<Context>) -> Option<Context> {
    match (raceway::current(), span_ctx) {
        (Some(current), Some(span)) if span.thread_id() == current.thread_id() => Some(span),
        (Some(current), _) => Some(current),
        (None, span) => span,
    }
}

impl<S> tracing_subscriber::Layer<S> for RacewayTracingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: layer::Context<'_, S>) {
        if !self.raceway.is_capturing() || is_own(attrs.metadata()) {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let enclosing = span
            .scope()
            .skip(1)
            .find_map(|s| s.extensions().get::<RacewaySpan>().map(|d| d.ctx.clone()));
        let Some(parent) = choose(enclosing) else {
            return;
        };
        let meta = attrs.metadata();
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let mut tags = BTreeMap::new();
        if let Some(message) = fields.message.take() {
            tags.insert("message".to_owned(), message);
        }
        fields.into_tags(&mut tags);
        tags.insert("tracing.target".to_owned(), meta.target().to_owned());
        tags.insert("tracing.level".to_owned(), meta.level().to_string());
        let child =
            parent.child_span_detailed(meta.name(), SpanKind::Internal, location(meta), tags);
        span.extensions_mut().insert(RacewaySpan {
            ctx: child,
            operation: meta.name(),
            started: Instant::now(),
            error: Arc::new(AtomicBool::new(false)),
            recorded: Mutex::new(BTreeMap::new()),
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: layer::Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let extensions = span.extensions();
        let Some(data) = extensions.get::<RacewaySpan>() else {
            return;
        };
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut recorded = data
            .recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(message) = fields.message.take() {
            recorded.insert("message".to_owned(), message);
        }
        fields.into_tags(&mut recorded);
    }

    fn on_event(&self, event: &Event<'_>, ctx: layer::Context<'_, S>) {
        let meta = event.metadata();
        if !self.raceway.is_capturing() || is_own(meta) {
            return;
        }
        let enclosing = ctx.event_scope(event).and_then(|scope| {
            scope.into_iter().find_map(|s| {
                let extensions = s.extensions();
                let data = extensions.get::<RacewaySpan>()?;
                Some((data.ctx.clone(), Arc::clone(&data.error)))
            })
        });
        let (span_ctx, span_error) = enclosing.unzip();
        let Some(target) = choose(span_ctx.clone()) else {
            return;
        };
        let on_enclosing = span_ctx.is_some_and(|e| e.span_id() == target.span_id());

        let mut fields = Fields::default();
        event.record(&mut fields);
        let variable = fields.take("raceway.variable");
        let access = fields.take("raceway.access");
        let state_change = match (&variable, access.as_ref().and_then(parse_access)) {
            (Some(variable), Some(access)) => Some((value_text(variable.clone()), access)),
            _ => None,
        };
        let kind = if let Some((variable, access)) = state_change {
            EventKind::StateChange {
                variable: truncate(variable, 256).into(),
                access,
                old_value: fields.take("raceway.old_value"),
                new_value: fields.take("raceway.value"),
            }
        } else {
            // Not a state change: keep the convention's fields as ordinary data.
            if let Some(v) = variable {
                fields.values.push(("raceway.variable", v));
            }
            if let Some(a) = access {
                fields.values.push(("raceway.access", a));
            }
            if *meta.level() == Level::ERROR {
                if let (true, Some(flag)) = (on_enclosing, &span_error) {
                    flag.store(true, Ordering::Relaxed);
                }
                let error_type = fields
                    .take("error.type")
                    .map(value_text)
                    .unwrap_or_else(|| meta.target().to_owned());
                let message = fields
                    .message
                    .take()
                    .unwrap_or_else(|| meta.name().to_owned());
                EventKind::Error {
                    error_type: truncate(error_type, 256),
                    message,
                }
            } else {
                let name = fields
                    .message
                    .take()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| meta.name().to_owned());
                let mut data = serde_json::Map::new();
                data.insert("level".to_owned(), meta.level().as_str().into());
                data.insert("target".to_owned(), meta.target().into());
                for (name, value) in fields.values {
                    data.insert(name.to_owned(), value);
                }
                EventKind::Custom {
                    name: truncate(name, 256),
                    data: Some(Value::Object(data)),
                }
            }
        };
        target.record_detailed(kind, location(meta), None, BTreeMap::new());
    }

    fn on_close(&self, id: Id, ctx: layer::Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(data) = span.extensions_mut().remove::<RacewaySpan>() else {
            return;
        };
        let tags = data.recorded.into_inner().unwrap_or_default();
        data.ctx.record_detailed(
            EventKind::SpanEnd {
                operation: data.operation.to_owned(),
                status_code: None,
                error: data.error.load(Ordering::Relaxed),
            },
            None,
            Some(data.started.elapsed()),
            tags,
        );
    }
}
