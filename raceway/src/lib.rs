//! Raceway core: W3C trace context, the `raceway-clock` vector-clock header, the event model, the task-local
//! causal context and the exporter.
#![deny(missing_docs)]

pub mod clock_header;
pub mod event;
mod ids;
mod timestamp;
pub mod vector_clock;

pub use clock_header::{ClockError, ClockPayload, ClockStatus};
pub use event::{Access, Event, EventBatch, EventKind, HeldLock, LockMode, SpanKind};
pub use ids::{IdParseError, SpanId, TraceId};
pub use timestamp::Timestamp;
pub use vector_clock::{CausalOrder, VectorClock};
pub mod propagation;
pub mod trace_context;
