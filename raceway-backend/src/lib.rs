//! Raceway backend: ingestion, storage (memory, SQLite, Postgres), cross-service causal analysis and the query API.
#![deny(missing_docs)]

pub mod analysis;
pub mod api;
pub mod config;
pub mod metrics;
pub mod storage;
