//! [`with_retries`]: one engine call wrapped in the shared [`Backoff`] (so a completion is not
//! lost to a blip).

use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::error::CamundaError;
use crate::backoff::Backoff;

/// Runs `f` until it succeeds, fails with an error that is not
/// [retryable](CamundaError::is_retryable), or `max_attempts` attempts (at least one) have failed,
/// sleeping `backoff.next_delay()` between attempts. Resets `backoff` on success.
///
/// The first attempt always runs, even when `cancel` is already cancelled (a drain still reports
/// results); once `cancel` fires no further attempt is made and the last error is returned.
pub async fn with_retries<T, F, Fut>(
    backoff: &mut Backoff,
    max_attempts: u32,
    cancel: &CancellationToken,
    mut f: F,
) -> Result<T, CamundaError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CamundaError>>,
{
    let max_attempts = max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let err = match f().await {
            Ok(value) => {
                backoff.reset();
                return Ok(value);
            }
            Err(err) => err,
        };
        if !err.is_retryable() || attempt >= max_attempts || cancel.is_cancelled() {
            return Err(err);
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            attempt,
            max_attempts,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %err,
            "Engine call failed; retrying."
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return Err(err),
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod retry_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::config::file::BackoffConfig;

    use super::*;

    fn engine(status: u16) -> CamundaError {
        CamundaError::Engine {
            method: "POST",
            path: "/external-task/t1/complete".to_owned(),
            status,
            kind: String::new(),
            message: "boom".to_owned(),
            code: None,
            details: None,
        }
    }

    fn backoff(initial_ms: u64) -> Backoff {
        Backoff::new(BackoffConfig {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_secs(60),
            multiplier: 2.0,
        })
    }

    /// A call that fails with `statuses` in turn, then succeeds with the attempt number.
    fn scripted(
        statuses: Vec<u16>,
    ) -> (
        Arc<AtomicU32>,
        impl FnMut() -> std::future::Ready<Result<u32, CamundaError>>,
    ) {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let f = move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            std::future::ready(match statuses.get(n as usize) {
                Some(status) => Err(engine(*status)),
                None => Ok(n + 1),
            })
        };
        (calls, f)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_server_errors_then_succeeds_and_resets() {
        let mut b = backoff(100);
        let (calls, f) = scripted(vec![500, 503]);
        let start = Instant::now();
        let got = with_retries(&mut b, 5, &CancellationToken::new(), f).await;
        assert_eq!(got.expect("third attempt succeeds"), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(b.failures(), 0, "success resets the backoff");
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "backed off between attempts"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let mut b = backoff(100);
        let (calls, f) = scripted(vec![500; 10]);
        let err = with_retries(&mut b, 3, &CancellationToken::new(), f)
            .await
            .expect_err("always 500");
        assert_eq!(err.status(), Some(500));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_client_errors() {
        let mut b = backoff(100);
        let (calls, f) = scripted(vec![400, 500]);
        let err = with_retries(&mut b, 5, &CancellationToken::new(), f)
            .await
            .expect_err("400 is final");
        assert_eq!(err.status(), Some(400));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_waiting_when_cancelled() {
        let mut b = backoff(1_000);
        let (calls, f) = scripted(vec![500; 100]);
        let cancel = CancellationToken::new();
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            canceller.cancel();
        });
        let start = Instant::now();
        let err = with_retries(&mut b, 100, &cancel, f)
            .await
            .expect_err("cancelled while backing off");
        assert_eq!(err.status(), Some(500));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no attempt after cancel");
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(300),
            "did not sleep out the delay"
        );
    }
}
