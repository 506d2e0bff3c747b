//! The concurrency limit: at most `max_concurrency` attempts of one endpoint in flight.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest};

/// Waits for one of `n` permits before an attempt; a cancelled task stops waiting. The permit is
/// held for one attempt only (a retry's backoff, outside this layer, holds none).
#[derive(Debug)]
pub struct Limit {
    inner: Arc<dyn Endpoint>,
    permits: Arc<Semaphore>,
}

impl Limit {
    /// Wraps `inner` with `n` permits (`n` ≥ 1; config validation refuses 0).
    pub fn new(inner: Arc<dyn Endpoint>, n: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(n.max(1))),
        }
    }
}

#[async_trait]
impl Endpoint for Limit {
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
        let _permit = tokio::select! {
            biased;
            _ = request.cancel.cancelled() => return Err(EndpointError::cancelled()),
            permit = self.permits.acquire() => permit.map_err(|_| {
                // Never closed: the semaphore lives as long as this layer.
                EndpointError::transient(format!("endpoint `{}` is closed", self.inner.name()))
            })?,
        };
        self.inner.call(request).await
    }
}
