//! Active probes (PBIT): each endpoint kind's own cheap health check ([`Endpoint::probe`]),
//! run on a schedule in the background.
//!
//! ```text
//!  every `probe.every` (the first at once):  kind.probe() within `probe.timeout`
//!     fails  ─► Breaker::probe_failed  (opens it)      ─┐
//!     passes ─► Breaker::probe_passed  (open → half-open)├─► HealthRegistry.last_probe
//! ```
//!
//! Probes run as tasks on the build context's `TaskTracker` and stop on its shutdown token; they
//! never block a task (tasks only read the breaker's state). Only changes are logged: the first
//! failure, and the first pass after failures.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Breaker, Layered, ProbeSchedule, timeout};
use crate::config::secret::redact;
use crate::endpoints::health::HealthRegistry;
use crate::endpoints::{BuildContext, Endpoint, EndpointError};
use crate::telemetry::metrics;

/// Starts probing `endpoint` (the bare kind, below the stack) on the context's tracker. Outside
/// a tokio runtime (a plain unit test building endpoints) there is nowhere to run it: no probe.
pub fn spawn(
    endpoint: Arc<dyn Endpoint>,
    breaker: Arc<Layered<Breaker>>,
    schedule: ProbeSchedule,
    cx: &BuildContext,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::debug!(
            endpoint = endpoint.name(),
            "No runtime to run the endpoint's probe in; not probing."
        );
        return;
    };
    let work = run(
        endpoint,
        breaker,
        schedule,
        cx.health().clone(),
        cx.shutdown().clone(),
    );
    cx.tracker().spawn_on(work, &runtime);
}

/// One probe, bounded by `schedule.timeout`.
pub async fn once(endpoint: &dyn Endpoint, schedule: ProbeSchedule) -> Result<(), EndpointError> {
    timeout::bounded(schedule.timeout, endpoint.probe(), || {
        format!("endpoint `{}`: the probe gave no answer", endpoint.name())
    })
    .await
}

/// Probes until `stop` fires.
pub async fn run(
    endpoint: Arc<dyn Endpoint>,
    breaker: Arc<Layered<Breaker>>,
    schedule: ProbeSchedule,
    registry: Arc<HealthRegistry>,
    stop: CancellationToken,
) {
    let name = endpoint.name().to_string();
    let mut last_passed: Option<bool> = None;
    loop {
        let result = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            result = once(endpoint.as_ref(), schedule) => result,
        };
        let passed = result.is_ok();
        let at = crate::endpoints::health::now_secs();
        registry.update(&name, |h| {
            h.last_probe = Some((at, passed));
            if let Err(e) = &result {
                h.last_error = Some(redact(&e.message));
            }
        });
        metrics::probed(&name, passed);
        match &result {
            Ok(()) => {
                if last_passed == Some(false) {
                    tracing::info!(endpoint = %name, "Probe passes again.");
                }
                breaker.probe_passed();
            }
            Err(e) => {
                if last_passed != Some(false) {
                    tracing::warn!(endpoint = %name, error = %redact(&e.message), "Probe failed.");
                }
                breaker.probe_failed(e);
            }
        }
        last_passed = Some(passed);
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(schedule.every) => {}
        }
    }
}
