//! Telemetry: structured logs ([`logs`]), Prometheus metrics ([`metrics`]), OpenTelemetry
//! traces ([`traces`]) and the feed of finished tasks ([`events`]).

pub mod events;
pub mod logs;
pub mod metrics;
pub mod traces;

pub use logs::{LogFormat, init};
