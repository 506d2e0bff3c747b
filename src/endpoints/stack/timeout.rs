//! The timeout layer: no attempt lasts longer than its bound, whatever the kind does.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Layer, Layered};
use crate::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest, class};

/// Ends an attempt that takes longer than `bound` with a transient `timeout` error (the attempt's
/// future is dropped, which ends its work: an HTTP request is aborted, a script is killed).
#[derive(Debug)]
pub struct Timeout {
    bound: Duration,
}

impl Timeout {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Endpoint>, bound: Duration) -> Layered<Self> {
        Layered::new(Self { bound }, inner)
    }
}

/// Runs `work` for at most `bound`; past it, a transient `timeout` error "`{what} within
/// {bound}`". The one time bound of the stack: an attempt (this layer) and a probe (`probe.rs`).
pub(super) async fn bounded<T>(
    bound: Duration,
    work: impl Future<Output = Result<T, EndpointError>>,
    what: impl FnOnce() -> String,
) -> Result<T, EndpointError> {
    match tokio::time::timeout(bound, work).await {
        Ok(result) => result,
        Err(_) => Err(EndpointError::transient(format!(
            "{} within {}",
            what(),
            humantime::format_duration(bound)
        ))
        .code(class::TIMEOUT)),
    }
}

#[async_trait]
impl Layer for Timeout {
    async fn call(
        &self,
        inner: &dyn Endpoint,
        request: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError> {
        bounded(self.bound, inner.call(request), || {
            format!("endpoint `{}` gave no answer", inner.name())
        })
        .await
    }
}
