//! The concurrency limit: at most `max_concurrency` attempts of one endpoint in flight.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{Layer, Layered};
use crate::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest};

/// Waits for one of `n` permits before an attempt; a cancelled task stops waiting. The permit is
/// held for one attempt only (a retry's backoff, outside this layer, holds none).
#[derive(Debug)]
pub struct Limit {
    permits: Semaphore,
}

impl Limit {
    /// Wraps `inner` with `n` permits (`n` ≥ 1; config validation refuses 0).
    pub fn new(inner: Arc<dyn Endpoint>, n: usize) -> Layered<Self> {
        Layered::new(
            Self {
                permits: Semaphore::new(n.max(1)),
            },
            inner,
        )
    }
}

#[async_trait]
impl Layer for Limit {
    async fn call(
        &self,
        inner: &dyn Endpoint,
        request: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError> {
        let _permit = tokio::select! {
            biased;
            _ = request.cancel.cancelled() => return Err(EndpointError::cancelled()),
            permit = self.permits.acquire() => permit.map_err(|_| {
                // Never closed: the semaphore lives as long as this layer.
                EndpointError::transient(format!("endpoint `{}` is closed", inner.name()))
            })?,
        };
        inner.call(request).await
    }
}
