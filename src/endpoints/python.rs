//! `python` endpoint (being built).

use async_trait::async_trait;
use serde::Deserialize;

use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest};

/// `type: python`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonConfig {}

/// The python endpoint.
#[derive(Debug)]
pub struct PythonEndpoint {
    name: String,
}

impl PythonEndpoint {
    /// Builds it from its config.
    pub fn new(name: &str, _config: &PythonConfig) -> Result<Self, EndpointError> {
        Ok(Self {
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl Endpoint for PythonEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "python"
    }

    async fn call(&self, _request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        Err(EndpointError::permanent("not built yet"))
    }
}
