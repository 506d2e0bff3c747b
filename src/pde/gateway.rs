//! Gateway block: chooses which endpoints serve the task, in which order.
//!
//! The route is the topic's `endpoints` list (primary first, then fallbacks), minus endpoints the
//! Test block found unusable. The BPMN author can pin an endpoint per task with the extension
//! property `pde.endpoint`; it goes first, the topic's list stays behind it as fallbacks.
//! Ranking is one function ([`rank`]) so that adaptive routing can replace the static order.

use std::sync::Arc;

use super::start::TaskContext;
use super::test::TestReport;
use super::topic::TopicRuntime;
use super::verdict::{Verdict, class};
use crate::endpoints::{Endpoint, EndpointError};

/// Extension property that pins the endpoint for one BPMN task.
pub const ENDPOINT_PROPERTY: &str = "pde.endpoint";

/// Endpoints to try, in order.
#[derive(Debug, Clone)]
pub struct Route {
    /// First is tried first; each later one is a fallback.
    pub endpoints: Vec<Arc<dyn Endpoint>>,
}

/// Builds the route for a task.
pub fn route(
    ctx: &TaskContext,
    topic: &TopicRuntime,
    report: &TestReport,
) -> Result<Route, Verdict> {
    let mut candidates: Vec<Arc<dyn Endpoint>> = Vec::with_capacity(topic.endpoints.len() + 1);
    if let Some(pinned) = ctx.request.properties.get(ENDPOINT_PROPERTY) {
        let Some(endpoint) = topic.pool_endpoints.get(pinned) else {
            let known: Vec<&str> = topic.pool_endpoints.keys().map(String::as_str).collect();
            return Err(Verdict::failed(
                EndpointError::permanent(format!(
                    "extension property `{ENDPOINT_PROPERTY}` names endpoint `{pinned}`, which is not an endpoint of pool `{}` ({})",
                    topic.config.pool,
                    known.join(", ")
                ))
                .code(class::INPUT_INVALID),
            ));
        };
        candidates.push(endpoint.clone());
    }
    for e in &topic.endpoints {
        if !candidates.iter().any(|c| c.name() == e.name()) {
            candidates.push(e.clone());
        }
    }
    let usable: Vec<_> = candidates
        .into_iter()
        .filter(|e| !report.unhealthy.contains_key(e.name()))
        .collect();
    if usable.is_empty() {
        let why: Vec<String> = report
            .unhealthy
            .iter()
            .map(|(n, e)| format!("{n}: {e}"))
            .collect();
        return Err(Verdict::failed(
            EndpointError::transient(format!("no usable endpoint ({})", why.join("; ")))
                .code(class::NO_ENDPOINT),
        ));
    }
    let endpoints = rank(usable);
    tracing::debug!(
        route = %endpoints.iter().map(|e| e.name()).collect::<Vec<_>>().join(" > "),
        "Route chosen."
    );
    Ok(Route { endpoints })
}

/// Orders usable endpoints. Today: as configured. This is where learned routing plugs in.
fn rank(usable: Vec<Arc<dyn Endpoint>>) -> Vec<Arc<dyn Endpoint>> {
    usable
}
