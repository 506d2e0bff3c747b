//! The engine's REST API (`/engine-rest`) as procos uses it: a pooled keep-alive client, the wire
//! models, typed variables and the engine's error bodies as typed errors.
//!
//! Works against Camunda 7.2x, Operaton and CIB seven (same API, same base path). Used by the
//! kernel (readiness, deployment), the manager (fetchAndLock, extendLock, unlock) and the
//! pipeline's Completion block (complete, failure, bpmnError); it uses nothing above it.

pub mod backoff;
pub mod client;
pub mod error;
pub mod models;
pub mod report;
pub mod variables;

#[cfg(test)]
mod props;
#[cfg(test)]
mod recorded_tests;

pub use backoff::with_retries;
pub use client::{CamundaClient, ClientSettings, DEFAULT_MAX_CONNECTIONS};
pub use error::CamundaError;
pub use models::*;
pub use report::Report;
pub use variables::{TypedValue, VarType, Variable, VariableError, VariableMap};
