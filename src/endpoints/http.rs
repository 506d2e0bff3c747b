//! `http` endpoint (being built).

use async_trait::async_trait;
use serde::Deserialize;

use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest};

/// `type: http`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {}

/// The http endpoint.
#[derive(Debug)]
pub struct HttpEndpoint {
    name: String,
}

impl HttpEndpoint {
    /// Builds it from its config.
    pub fn new(name: &str, _config: &HttpConfig) -> Result<Self, EndpointError> {
        Ok(Self {
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl Endpoint for HttpEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    async fn call(&self, _request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        Err(EndpointError::permanent("not built yet"))
    }
}
