//! Waits for the engine to answer before anything else starts.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::camunda::CamundaClient;
use crate::config::file::BackoffConfig;

/// The engine never answered.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Gave up after the configured boot timeout.
    #[error(
        "the engine at {url} did not answer within {} ({attempts} attempts); last error: {last}",
        humantime::format_duration(Duration::from_secs(waited.as_secs()))
    )]
    EngineUnavailable {
        url: String,
        waited: Duration,
        attempts: u32,
        last: String,
    },
    /// Shutdown was requested while waiting.
    #[error("stopped while waiting for the engine")]
    Stopped,
}

/// Polls `GET /version` with backoff, one log line per attempt, until it answers or `timeout`.
pub async fn wait_for_engine(
    camunda: &CamundaClient,
    timeout: Duration,
    backoff: BackoffConfig,
    shutdown: &CancellationToken,
) -> Result<String, BootError> {
    let started = Instant::now();
    let mut backoff = Backoff::new(backoff);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = tokio::select! {
            r = camunda.version() => r,
            _ = shutdown.cancelled() => return Err(BootError::Stopped),
        };
        let last = match result {
            Ok(version) => {
                tracing::info!(url = %camunda.base_url(), version = %version, attempts, "Engine is up.");
                return Ok(version);
            }
            Err(e) => e.to_string(),
        };
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(BootError::EngineUnavailable {
                url: camunda.base_url(),
                waited,
                attempts,
                last,
            });
        }
        let delay = backoff
            .next_delay()
            .min(timeout.saturating_sub(waited))
            .max(Duration::from_millis(50));
        tracing::info!(url = %camunda.base_url(), attempt = attempts, error = %last, retry_in_ms = delay.as_millis() as u64, "Waiting for the engine.");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return Err(BootError::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_give_up_message_says_how_long_in_plain_units() {
        let err = BootError::EngineUnavailable {
            url: "http://camunda:8080/engine-rest".into(),
            waited: Duration::from_millis(300_123),
            attempts: 12,
            last: "GET /version: connection refused".into(),
        };
        assert_eq!(
            err.to_string(),
            "the engine at http://camunda:8080/engine-rest did not answer within 5m (12 attempts); \
             last error: GET /version: connection refused"
        );
    }
}
