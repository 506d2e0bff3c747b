//! Tests of the retry and circuit-breaker wrappers, on paused time.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::*;

/// Answers from a script (the last answer repeats) and counts calls.
#[derive(Debug)]
struct Scripted {
    replies: Mutex<Vec<Result<(), EndpointError>>>,
    calls: AtomicUsize,
}

impl Scripted {
    fn new(replies: Vec<Result<(), EndpointError>>) -> Arc<Self> {
        Arc::new(Self {
            replies: Mutex::new(replies),
            calls: AtomicUsize::new(0),
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Endpoint for Scripted {
    fn name(&self) -> &str {
        "model"
    }
    fn kind(&self) -> &'static str {
        "scripted"
    }
    async fn call(&self, _: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let replies = lock(&self.replies);
        let reply = replies[n.min(replies.len() - 1)].clone();
        reply.map(|()| EndpointReply::new(json!("ok")))
    }
}

fn unavailable() -> Result<(), EndpointError> {
    Err(EndpointError::transient("503").code("http_503"))
}

fn policy(max_retries: u32) -> Policy {
    Policy {
        max_retries,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(4),
        max_wait: Duration::from_secs(30),
        circuit: CircuitConfig {
            failure_threshold: 100,
            open_for: Duration::from_secs(30),
        },
    }
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_growing_backoff() {
    let inner = Scripted::new(vec![unavailable(), unavailable(), Ok(())]);
    let retry = Retry::new(inner.clone(), policy(2));
    let started = Instant::now();
    let reply = retry.call(&EndpointRequest::default()).await.unwrap();
    assert_eq!(reply.output, json!("ok"));
    assert_eq!(inner.calls(), 3);
    // Backoffs of [0.5, 1] s then [1, 2] s.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_are_bounded_and_the_last_error_is_returned() {
    let inner = Scripted::new(vec![unavailable()]);
    let err = Retry::new(inner.clone(), policy(2))
        .call(&EndpointRequest::default())
        .await
        .unwrap_err();
    assert_eq!(inner.calls(), 3, "one call and two retries");
    assert_eq!(err.code.as_deref(), Some("http_503"));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_a_long_one_is_left_to_the_engine() {
    let limited = || {
        Err(EndpointError::transient("429")
            .code("rate_limited")
            .retry_after(Some(Duration::from_secs(7))))
    };
    let inner = Scripted::new(vec![limited(), Ok(())]);
    let started = Instant::now();
    Retry::new(inner.clone(), policy(2))
        .call(&EndpointRequest::default())
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(7));

    let inner = Scripted::new(vec![limited()]);
    let mut short_wait = policy(2);
    short_wait.max_wait = Duration::from_secs(5);
    let started = Instant::now();
    let err = Retry::new(inner.clone(), short_wait)
        .call(&EndpointRequest::default())
        .await
        .unwrap_err();
    assert_eq!(inner.calls(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(err.code.as_deref(), Some("rate_limited"));
}

#[tokio::test(start_paused = true)]
async fn only_transient_errors_are_retried() {
    for error in [
        EndpointError::permanent("401"),
        EndpointError::fallback("context"),
        EndpointError::invalid_output("not json"),
        EndpointError::business("CONTENT_REFUSED", "no"),
    ] {
        let inner = Scripted::new(vec![Err(error.clone())]);
        let got = Retry::new(inner.clone(), policy(3))
            .call(&EndpointRequest::default())
            .await
            .unwrap_err();
        assert_eq!(got, error);
        assert_eq!(inner.calls(), 1, "{error}");
    }
}

#[tokio::test(start_paused = true)]
async fn cancellation_ends_the_backoff() {
    let inner = Scripted::new(vec![unavailable()]);
    let retry = Retry::new(inner.clone(), policy(5));
    let request = EndpointRequest::default();
    let cancel = request.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let err = retry.call(&request).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert_eq!(inner.calls(), 1);
}

fn breaker(inner: Arc<Scripted>) -> CircuitBreaker {
    CircuitBreaker::new(
        inner,
        CircuitConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(30),
        },
    )
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_after_consecutive_failures_and_refuses_without_calling() {
    let inner = Scripted::new(vec![unavailable()]);
    let cb = breaker(inner.clone());
    let req = EndpointRequest::default();
    for _ in 0..3 {
        assert_eq!(
            cb.call(&req).await.unwrap_err().code.as_deref(),
            Some("http_503")
        );
    }
    let refused = cb.call(&req).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Fallback);
    assert_eq!(refused.code.as_deref(), Some("circuit_open"));
    assert!(refused.message.contains("503"), "{refused}");
    assert_eq!(
        inner.calls(),
        3,
        "an open circuit does not call the endpoint"
    );
    let health = cb.health().await.unwrap_err();
    assert_eq!(health.code.as_deref(), Some("circuit_open"));
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_count() {
    let inner = Scripted::new(vec![
        unavailable(),
        unavailable(),
        Ok(()),
        unavailable(),
        unavailable(),
        Ok(()),
    ]);
    let cb = breaker(inner.clone());
    let req = EndpointRequest::default();
    for _ in 0..6 {
        let _ = cb.call(&req).await;
    }
    assert!(cb.health().await.is_ok(), "never three failures in a row");
    assert_eq!(inner.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn after_the_cool_down_one_trial_call_closes_or_reopens_it() {
    let inner = Scripted::new(vec![
        unavailable(),
        unavailable(),
        unavailable(),
        unavailable(), // the first trial fails: open again
        Ok(()),        // the second trial succeeds: closed
    ]);
    let cb = breaker(inner.clone());
    let req = EndpointRequest::default();
    for _ in 0..3 {
        let _ = cb.call(&req).await;
    }
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(cb.health().await.is_ok(), "half-open: usable for a trial");
    assert!(cb.call(&req).await.is_err());
    assert_eq!(inner.calls(), 4);
    assert!(cb.health().await.is_err(), "the failed trial reopens it");
    assert_eq!(
        cb.call(&req).await.unwrap_err().code.as_deref(),
        Some("circuit_open")
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(cb.call(&req).await.is_ok());
    assert_eq!(inner.calls(), 5);
    assert!(cb.health().await.is_ok());
    assert!(cb.call(&req).await.is_ok(), "closed again");
}

#[tokio::test(start_paused = true)]
async fn answers_that_are_not_transient_do_not_open_it() {
    let inner = Scripted::new(vec![Err(EndpointError::permanent("400"))]);
    let cb = breaker(inner.clone());
    let req = EndpointRequest::default();
    for _ in 0..5 {
        let _ = cb.call(&req).await;
    }
    assert_eq!(inner.calls(), 5);
    assert!(cb.health().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn wrap_stacks_retry_over_the_breaker_so_an_open_circuit_stops_retrying() {
    let inner = Scripted::new(vec![unavailable()]);
    let mut p = policy(10);
    p.circuit.failure_threshold = 2;
    let wrapped = wrap(inner.clone(), &p);
    let err = wrapped.call(&EndpointRequest::default()).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("circuit_open"));
    assert_eq!(inner.calls(), 2, "retries stop once the circuit opens");
    assert_eq!(wrapped.name(), "model");
    assert_eq!(wrapped.kind(), "scripted");
}
