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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::config::file::TopicConfig;
    use crate::endpoints::{EndpointConfig, ErrorKind};
    use crate::pde::start::TaskContext;

    fn topic() -> TopicRuntime {
        let registry: BTreeMap<String, Arc<dyn Endpoint>> = ["primary", "backup", "special"]
            .into_iter()
            .map(|n| {
                let cfg: EndpointConfig = serde_yaml::from_str("type: noop").expect("noop");
                (
                    n.to_string(),
                    cfg.build(n, &Default::default()).expect("builds"),
                )
            })
            .collect();
        let config: TopicConfig =
            serde_yaml::from_str("{pool: gp, endpoints: [primary, backup]}").expect("topic");
        let pool = [
            "primary".to_string(),
            "backup".to_string(),
            "special".to_string(),
        ];
        TopicRuntime::build("t", &config, &pool, &registry, Duration::from_secs(30)).expect("topic")
    }

    fn ctx(pinned: Option<&str>) -> TaskContext {
        let mut request = crate::endpoints::EndpointRequest::default();
        if let Some(p) = pinned {
            request
                .properties
                .insert(ENDPOINT_PROPERTY.into(), p.into());
        }
        TaskContext { request }
    }

    fn names(route: &Route) -> Vec<&str> {
        route.endpoints.iter().map(|e| e.name()).collect()
    }

    #[test]
    fn primary_then_fallbacks_in_configured_order() {
        let route = route(&ctx(None), &topic(), &TestReport::default()).expect("route");
        assert_eq!(names(&route), vec!["primary", "backup"]);
    }

    #[test]
    fn the_pde_endpoint_property_pins_an_endpoint_of_the_pool_first() {
        let t = topic();
        let route = route(&ctx(Some("special")), &t, &TestReport::default()).expect("route");
        assert_eq!(names(&route), vec!["special", "primary", "backup"]);
        let route = super::route(&ctx(Some("backup")), &t, &TestReport::default()).expect("route");
        assert_eq!(
            names(&route),
            vec!["backup", "primary"],
            "no endpoint twice"
        );
    }

    #[test]
    fn pinning_an_unknown_endpoint_is_an_input_error_naming_it() {
        let Err(Verdict::Failed { error, .. }) =
            route(&ctx(Some("gpt5")), &topic(), &TestReport::default())
        else {
            panic!("expected a failure");
        };
        assert_eq!(error.kind, ErrorKind::Permanent);
        assert_eq!(error.code.as_deref(), Some(class::INPUT_INVALID));
        assert!(
            error.message.contains("`gpt5`") && error.message.contains("pool `gp`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn unhealthy_endpoints_are_routed_around_and_none_left_is_transient() {
        let t = topic();
        let mut report = TestReport::default();
        report
            .unhealthy
            .insert("primary".into(), EndpointError::transient("circuit open"));
        assert_eq!(
            names(&route(&ctx(None), &t, &report).expect("route")),
            vec!["backup"]
        );
        report.unhealthy.insert(
            "backup".into(),
            EndpointError::transient("no API key configured"),
        );
        let Err(Verdict::Failed { error, .. }) = route(&ctx(None), &t, &report) else {
            panic!("expected a failure");
        };
        assert!(matches!(error.kind, ErrorKind::Transient { .. }));
        assert!(
            error.message.contains("circuit open") && error.message.contains("no API key"),
            "{}",
            error.message
        );
    }
}
