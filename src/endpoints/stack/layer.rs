//! One concern around an endpoint, written once: a [`Layer`] holds only its own state and says
//! what it does around a call; [`Layered`] puts it around an inner endpoint and is the one
//! [`Endpoint`] impl of the stack (tower's `Layer`/`Service` split, with the identity — name,
//! kind, side effects — delegated in one place instead of once per layer).
//!
//! ```text
//!  Layered { layer: Retry, inner } ─► Layered { layer: Breaker, inner } ─► … ─► the kind
//!    name/kind/side_effects: inner's          usable/probe/call: the layer's, given `inner`
//! ```

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest};

/// What one stack layer does around its inner endpoint. Only `call` is the layer's own; `usable`
/// and `probe` pass through unless the layer has something to add (the breaker's `usable`).
#[async_trait]
pub trait Layer: Send + Sync + Debug {
    /// One call through this layer; `inner` is the endpoint below it.
    async fn call(
        &self,
        inner: &dyn Endpoint,
        request: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError>;

    /// [`Endpoint::usable`] through this layer: the inner endpoint's answer by default.
    fn usable(&self, inner: &dyn Endpoint) -> Result<(), EndpointError> {
        inner.usable()
    }

    /// [`Endpoint::probe`] through this layer: the inner endpoint's probe by default.
    async fn probe(&self, inner: &dyn Endpoint) -> Result<(), EndpointError> {
        inner.probe().await
    }
}

/// A layer around an inner endpoint: itself an endpoint with the inner one's identity.
#[derive(Debug)]
pub struct Layered<L> {
    layer: L,
    inner: Arc<dyn Endpoint>,
}

impl<L> Layered<L> {
    /// Puts `layer` around `inner`.
    pub fn new(layer: L, inner: Arc<dyn Endpoint>) -> Self {
        Self { layer, inner }
    }

    /// The layer's own state.
    pub fn layer(&self) -> &L {
        &self.layer
    }

    /// The endpoint below this layer.
    pub fn inner(&self) -> &Arc<dyn Endpoint> {
        &self.inner
    }
}

#[async_trait]
impl<L: Layer> Endpoint for Layered<L> {
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
        self.layer.usable(self.inner.as_ref())
    }

    async fn probe(&self) -> Result<(), EndpointError> {
        self.layer.probe(self.inner.as_ref()).await
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        // Traces: the outermost layer opens the call's attempt count (inert when off).
        crate::telemetry::traces::endpoint_call(self.layer.call(self.inner.as_ref(), request)).await
    }
}
