//! Telemetry: structured logs ([`logs`]) and Prometheus metrics ([`metrics`]).

pub mod logs;
pub mod metrics;

pub use logs::{LogFormat, init};
