//! The timeout layer: no attempt lasts longer than its bound, whatever the kind does.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest, class};

/// Ends an attempt that takes longer than `bound` with a transient `timeout` error (the attempt's
/// future is dropped, which ends its work: an HTTP request is aborted, a script is killed).
#[derive(Debug)]
pub struct Timeout {
    inner: Arc<dyn Endpoint>,
    bound: Duration,
}

impl Timeout {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Endpoint>, bound: Duration) -> Self {
        Self { inner, bound }
    }
}

#[async_trait]
impl Endpoint for Timeout {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn side_effects(&self) -> bool {
        self.inner.side_effects()
    }

    fn usable(&self) -> Result<(), EndpointError> {
        self.inner.usable()
    }

    async fn probe(&self) -> Result<(), EndpointError> {
        self.inner.probe().await
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        match tokio::time::timeout(self.bound, self.inner.call(request)).await {
            Ok(result) => result,
            Err(_) => Err(EndpointError::transient(format!(
                "endpoint `{}` gave no answer within {}",
                self.inner.name(),
                humantime::format_duration(self.bound)
            ))
            .code(class::TIMEOUT)),
        }
    }
}
