//! The REST client: one pooled keep-alive `reqwest::Client`, every call procos makes.

use std::time::Duration;

use bytes::Bytes;

use super::error::CamundaError;
use super::models::*;
use super::variables::VariableMap;
use crate::config::file::AuthConfig;

/// What the client needs from the configuration.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Base URL of engine-rest (no trailing slash needed).
    pub url: String,
    pub auth: Option<AuthConfig>,
    pub worker_id: String,
    /// Timeout of every call but the long poll.
    pub request_timeout: Duration,
}

/// A cheap-to-clone handle on the engine's REST API.
#[derive(Debug, Clone)]
pub struct CamundaClient {
    settings: std::sync::Arc<ClientSettings>,
    http: reqwest::Client,
}
