//! Raceway core: W3C trace context, the `raceway-clock` vector-clock header, the event model, the task-local
//! causal context, the tracking API and the exporter.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), raceway::BuildError> {
//! let raceway = raceway::Raceway::builder().service_name("orders").build()?;
//! let ctx = raceway.new_trace("nightly-job");
//! ctx.scope(async {
//!     raceway::track_write("inventory:7", 3);
//!     let child = raceway::spawn(async { raceway::track_read("inventory:7") });
//!     child.await.unwrap();
//! })
//! .await;
//! raceway.shutdown().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod captured;
pub mod clock_header;
mod clock_json;
mod context;
pub mod event;
mod event_json;
mod exporter;
mod handle;
mod ids;
pub mod propagation;
mod stats;
pub mod sync;
mod task;
mod timestamp;
pub mod trace_context;
mod tracking;
pub mod vector_clock;

pub use clock_header::{ClockError, ClockPayload, ClockStatus};
pub use context::{current, Context, HttpRequestParts, OutboundCall, ServerRequest};
pub use event::{Access, Event, EventBatch, EventKind, HeldLock, HttpInfo, LockMode, SpanKind};
pub use exporter::MAX_BATCH_BYTES;
pub use handle::{BuildError, EventRecorder, Raceway, RacewayBuilder};
pub use ids::{IdParseError, SpanId, TraceId};
pub use stats::StatsSnapshot;
pub use task::{spawn, spawn_blocking, InCurrentRacewayContext, JoinHandle, WithContext};
pub use timestamp::Timestamp;
pub use tracking::{
    track_async_function, track_custom, track_error, track_function, track_lock_acquire,
    track_lock_release, track_read, track_state_change, track_write,
};
pub use vector_clock::{CausalOrder, VectorClock};
