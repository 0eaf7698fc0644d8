//! The tracking API: record what the code does to shared state, inside the current context.
//!
//! Every function is a no-op outside a context, costs a clock tick in propagation-only mode, and records the
//! **caller's** source location.

use std::fmt::Display;
use std::future::Future;
use std::panic::Location;
use std::time::Instant;

use serde::Serialize;

use crate::context::{current, with_current};
use crate::{Access, EventKind, LockMode};

fn to_value<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// Records an access to the shared variable `variable` (name it globally, e.g. `account:42`).
///
/// ```
/// use raceway::{track_state_change, Access, EventRecorder, Raceway};
/// let recorder = EventRecorder::new();
/// let raceway = Raceway::builder().service_name("bank").record_to(recorder.clone()).build().unwrap();
/// raceway.new_trace("transfer").in_scope(|| {
///     track_state_change("account:42", Access::Write, Some(100.into()), Some(90.into()));
/// });
/// let event = &recorder.events()[1];
/// assert_eq!(event.kind.type_name(), "state_change");
/// assert!(event.location.is_some()); // the caller's file:line:column
/// ```
#[track_caller]
pub fn track_state_change(
    variable: &str,
    access: Access,
    old_value: Option<serde_json::Value>,
    new_value: Option<serde_json::Value>,
) {
    let location = Location::caller();
    with_current(|ctx| {
        ctx.record_at(
            EventKind::StateChange {
                variable: crate::context::shared_name(variable),
                access,
                old_value,
                new_value,
            },
            Some(location),
            None,
        )
    });
}

/// Records a plain read of `variable`.
#[track_caller]
pub fn track_read(variable: &str) {
    track_state_change(variable, Access::Read, None, None);
}

/// Records a plain write of `value` to `variable`.
#[track_caller]
pub fn track_write<T: Serialize>(variable: &str, value: T) {
    let location = Location::caller();
    with_current(|ctx| {
        let new_value = ctx
            .raceway()
            .is_capturing()
            .then(|| to_value(&value))
            .flatten();
        ctx.record_at(
            EventKind::StateChange {
                variable: crate::context::shared_name(variable),
                access: Access::Write,
                old_value: None,
                new_value,
            },
            Some(location),
            None,
        )
    });
}

/// Runs `f` and records a `function_call` with its duration.
#[track_caller]
pub fn track_function<R>(name: &str, f: impl FnOnce() -> R) -> R {
    let location = Location::caller();
    let started = Instant::now();
    let result = f();
    with_current(|ctx| {
        ctx.record_at(
            EventKind::FunctionCall {
                function: name.to_owned(),
                module: None,
            },
            Some(location),
            Some(started.elapsed()),
        )
    });
    result
}

/// Awaits `future` and records a `function_call` with its duration.
#[track_caller]
pub fn track_async_function<F: Future>(name: &str, future: F) -> impl Future<Output = F::Output> {
    let location = Location::caller();
    let name = name.to_owned();
    async move {
        let started = Instant::now();
        let result = future.await;
        with_current(|ctx| {
            ctx.record_at(
                EventKind::FunctionCall {
                    function: name,
                    module: None,
                },
                Some(location),
                Some(started.elapsed()),
            )
        });
        result
    }
}

/// Records an error.
#[track_caller]
pub fn track_error(error_type: &str, message: impl Display) {
    let location = Location::caller();
    with_current(|ctx| {
        ctx.record_at(
            EventKind::Error {
                error_type: error_type.to_owned(),
                message: message.to_string(),
            },
            Some(location),
            None,
        )
    });
}

/// Records a custom event.
#[track_caller]
pub fn track_custom<T: Serialize>(name: &str, data: T) {
    let location = Location::caller();
    with_current(|ctx| {
        let data = ctx
            .raceway()
            .is_capturing()
            .then(|| to_value(&data))
            .flatten();
        ctx.record_at(
            EventKind::Custom {
                name: name.to_owned(),
                data,
            },
            Some(location),
            None,
        )
    });
}

/// Records that `lock` was acquired (call right after acquiring). Prefer [`crate::sync`]'s tracked locks.
#[track_caller]
pub fn track_lock_acquire(lock: &str, mode: LockMode) {
    // Not `with_current`: the location comes from `#[track_caller]` methods, which a closure would hide.
    if let Some(ctx) = current() {
        ctx.lock_acquired(lock, mode);
    }
}

/// Records that `lock` is being released (call right before releasing).
#[track_caller]
pub fn track_lock_release(lock: &str, mode: LockMode) {
    if let Some(ctx) = current() {
        ctx.lock_releasing(lock, mode);
    }
}
