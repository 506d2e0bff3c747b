//! Gateway block: chooses which endpoints serve the task, in which order.
//!
//! ```text
//!  candidates: the topic's endpoints (or those of the first matching `routing.rules` entry)
//!     − unusable (the Test block's report: open circuits, no key, …)
//!     − `routing.fallbacks` (kept for the end)
//!  ──► the topic's Router ranks them for this task (strategy, task class, learner)
//!  route = [pinned `pde.endpoint`] + ranked + fallbacks
//! ```
//!
//! The BPMN author can pin an endpoint per task with the extension property `pde.endpoint`; it
//! goes first, the ranking stays behind it as fallbacks. Every choice is logged once per task
//! with its strategy and reason ([`RouteNote`]), which Completion can also write into the
//! topic's `routing.route_variable`.

use std::sync::Arc;

use super::profile::TaskProfile;
use super::routing::{RouteInput, rules};
use super::start::TaskContext;
use super::test::TestReport;
use super::topic::TopicRuntime;
use super::verdict::{Verdict, class};
use crate::endpoints::template::TemplateContext;
use crate::endpoints::{Endpoint, EndpointError};
use crate::learner::Key;

/// Extension property that pins the endpoint for one BPMN task.
pub const ENDPOINT_PROPERTY: &str = "pde.endpoint";

/// Endpoints to try, in order.
#[derive(Debug, Clone)]
pub struct Route {
    /// First is tried first; each later one is a fallback.
    pub endpoints: Vec<Arc<dyn Endpoint>>,
}

/// Why a route is what it is: logged once per task, and written to `routing.route_variable`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteNote {
    /// The endpoint the route put first.
    pub endpoint: String,
    /// The topic's strategy (`ordered`, `adaptive`, …).
    pub strategy: &'static str,
    /// Why, in one line (a pin, the rule that matched, the strategy's figures).
    pub reason: String,
    /// The task's class (the learner's key).
    pub class: String,
}

impl RouteNote {
    /// `{endpoint, strategy, reason, class}` as JSON, for `route_variable`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "endpoint": self.endpoint,
            "strategy": self.strategy,
            "reason": self.reason,
            "class": self.class,
        })
    }
}

/// Builds the route for a task of this profile.
pub fn route(
    ctx: &TaskContext,
    topic: &TopicRuntime,
    report: &TestReport,
    profile: &TaskProfile,
) -> Result<(Route, RouteNote), Verdict> {
    let pinned = match ctx.request.properties.get(ENDPOINT_PROPERTY) {
        None => None,
        Some(pinned) => {
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
            Some(endpoint.clone())
        }
    };
    let plan = &topic.routing;
    let mut why = Vec::new();
    if let Some(p) = &pinned {
        why.push(format!("pinned `{}` by {ENDPOINT_PROPERTY}", p.name()));
    }
    // The template context clones the variables: only built when there are rules to check.
    let rule = if plan.rules.is_empty() {
        None
    } else {
        rules::matching(&plan.rules, &TemplateContext::new(&ctx.request))
    };
    let listed: Vec<Arc<dyn Endpoint>> = match rule {
        Some(rule) => {
            why.push(match rule.when {
                Some(_) => format!("rule {} matched", rule.index),
                None => format!("default rule {}", rule.index),
            });
            rule.endpoints
                .iter()
                .filter_map(|n| topic.pool_endpoints.get(n).cloned())
                .collect()
        }
        None => topic.endpoints.clone(),
    };
    let usable = |e: &Arc<dyn Endpoint>| {
        !report.unhealthy.contains_key(e.name())
            && pinned.as_ref().is_none_or(|p| p.name() != e.name())
    };
    let ranked: Vec<Arc<dyn Endpoint>> = listed
        .into_iter()
        .filter(|e| usable(e) && !plan.fallbacks.iter().any(|f| f == e.name()))
        .collect();
    let tail: Vec<Arc<dyn Endpoint>> = plan
        .fallbacks
        .iter()
        .filter_map(|n| {
            topic
                .pool_endpoints
                .get(n)
                .or_else(|| find(&topic.endpoints, n))
        })
        .filter(|e| usable(e) && !ranked.iter().any(|r| r.name() == e.name()))
        .cloned()
        .collect();
    let pinned = pinned.filter(|p| !report.unhealthy.contains_key(p.name()));
    let mut endpoints: Vec<Arc<dyn Endpoint>> = pinned.into_iter().collect();
    if !ranked.is_empty() {
        let input = RouteInput {
            topic: &topic.name,
            class: &profile.class,
            learner: &topic.learner,
            busy: &topic.busy,
            now: topic.learner.now(),
        };
        let ranking = topic.router.rank(&input, ranked);
        why.push(ranking.reason);
        endpoints.extend(ranking.endpoints);
    } else if !tail.is_empty() {
        why.push("no ranked endpoint is usable: fallbacks only".into());
    }
    endpoints.extend(tail);
    let Some(first) = endpoints.first() else {
        let why: Vec<String> = report
            .unhealthy
            .iter()
            .map(|(n, e)| format!("{n}: {e}"))
            .collect();
        return Err(Verdict::failed(
            EndpointError::transient(format!("no usable endpoint ({})", why.join("; ")))
                .code(class::NO_ENDPOINT),
        ));
    };
    let note = RouteNote {
        endpoint: first.name().to_string(),
        strategy: topic.router.name(),
        reason: why.join("; "),
        class: profile.class.clone(),
    };
    topic
        .learner
        .routed(&Key::new(&topic.name, first.name(), &profile.class));
    // DEBUG: the task's line, `Task finished.`, carries the strategy, class and reason.
    tracing::debug!(
        route = %endpoints.iter().map(|e| e.name()).collect::<Vec<_>>().join(" > "),
        strategy = note.strategy,
        class = %note.class,
        reason = %note.reason,
        "Route chosen."
    );
    Ok((Route { endpoints }, note))
}

fn find<'a>(endpoints: &'a [Arc<dyn Endpoint>], name: &str) -> Option<&'a Arc<dyn Endpoint>> {
    endpoints.iter().find(|e| e.name() == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::config::file::TopicConfig;
    use crate::endpoints::{EndpointConfig, ErrorKind};
    use crate::pde::start::TaskContext;

    fn topic_with(yaml: &str) -> TopicRuntime {
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
        let config: TopicConfig = serde_yaml::from_str(yaml).expect("topic");
        let pool = [
            "primary".to_string(),
            "backup".to_string(),
            "special".to_string(),
        ];
        TopicRuntime::build("t", &config, &pool, &registry, Duration::from_secs(30)).expect("topic")
    }

    fn topic() -> TopicRuntime {
        topic_with("{pool: gp, endpoints: [primary, backup]}")
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

    fn route(
        ctx: &TaskContext,
        topic: &TopicRuntime,
        report: &TestReport,
    ) -> Result<(Route, RouteNote), Verdict> {
        super::route(ctx, topic, report, &TaskProfile::of(&ctx.request))
    }

    fn names(route: &(Route, RouteNote)) -> Vec<&str> {
        route.0.endpoints.iter().map(|e| e.name()).collect()
    }

    #[test]
    fn primary_then_fallbacks_in_configured_order() {
        let route = route(&ctx(None), &topic(), &TestReport::default()).expect("route");
        assert_eq!(names(&route), vec!["primary", "backup"]);
        assert_eq!(
            (
                route.1.endpoint.as_str(),
                route.1.strategy,
                route.1.class.as_str()
            ),
            ("primary", "ordered", "s")
        );
    }

    #[test]
    fn the_pde_endpoint_property_pins_an_endpoint_of_the_pool_first() {
        let t = topic();
        let route = route(&ctx(Some("special")), &t, &TestReport::default()).expect("route");
        assert_eq!(names(&route), vec!["special", "primary", "backup"]);
        assert!(
            route.1.reason.contains("pinned `special`"),
            "{}",
            route.1.reason
        );
        let route = self::route(&ctx(Some("backup")), &t, &TestReport::default()).expect("route");
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

    #[test]
    fn the_first_matching_rule_names_the_route_and_the_default_serves_the_rest() {
        let t = topic_with(
            r#"{pool: gp, endpoints: [primary, backup], routing: {strategy: rules, rules: [
                {when: "{{ text | length > 10 }}", endpoints: [special, backup]},
                {endpoints: [primary]}]}}"#,
        );
        let mut long = ctx(None);
        long.request
            .variables
            .insert("text".into(), "a long ticket text".into());
        let routed = route(&long, &t, &TestReport::default()).expect("route");
        assert_eq!(names(&routed), ["special", "backup"]);
        assert_eq!(routed.1.strategy, "rules");
        assert!(
            routed.1.reason.starts_with("rule 0 matched"),
            "{}",
            routed.1.reason
        );
        let routed = route(&ctx(None), &t, &TestReport::default()).expect("route");
        assert_eq!(
            names(&routed),
            ["primary"],
            "`text` undefined: the default rule"
        );
        assert!(
            routed.1.reason.starts_with("default rule 1"),
            "{}",
            routed.1.reason
        );
    }

    #[test]
    fn fallbacks_stay_last_whatever_the_strategy_ranks() {
        let t = topic_with(
            "{pool: gp, endpoints: [special, primary, backup], routing: {strategy: least_busy, fallbacks: [special]}}",
        );
        let _busy = t.busy.start("primary");
        let routed = route(&ctx(None), &t, &TestReport::default()).expect("route");
        assert_eq!(names(&routed), ["backup", "primary", "special"]);
        let mut report = TestReport::default();
        for down in ["primary", "backup"] {
            report
                .unhealthy
                .insert(down.into(), EndpointError::transient("circuit open"));
        }
        let only = route(&ctx(None), &t, &report).expect("route");
        assert_eq!(names(&only), ["special"]);
        assert_eq!(
            only.1.reason,
            "no ranked endpoint is usable: fallbacks only"
        );
        assert_eq!(
            t.learner
                .get(&Key::new("t", "backup", "s"))
                .map(|s| s.routed),
            Some(1),
            "the learner counts what the route put first"
        );
    }
}
