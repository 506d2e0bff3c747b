//! Telemetry: structured logs ([`logs`]), Prometheus metrics ([`metrics`]) and the feed of
//! finished tasks ([`events`]).

pub mod events;
pub mod logs;
pub mod metrics;

pub use logs::{LogFormat, init};
