//! `topics.<name>.routing`: checked and compiled into the [`RoutingPlan`] the Gateway runs.
//! One function serves `procos validate` (its problems) and the runtime (its plan), so that
//! builders never re-check what validation already decided.

use std::time::Duration;

use super::super::error::{Problem, index_path, key_path, name_list};
use super::super::file::{
    AdaptiveSettings, CompiledRule, DEFAULT_EXPLORE, DEFAULT_MIN_SAMPLES, PlanKind, RouteStrategy,
    RoutingConfig, RoutingPlan, TopicConfig,
};
use super::between;

/// Most `routing.min_samples`: more calls than this before trusting figures never happens.
pub const MAX_MIN_SAMPLES: u32 = 1_000_000;

/// Longest `routing.half_life`: a year (the figures persist across restarts).
pub const MAX_HALF_LIFE: Duration = Duration::from_secs(365 * 24 * 3600);

/// `topics.<name>.routing`, checked and compiled into the plan the Gateway runs (parse, don't
/// validate: the topic's runtime is built from this same function's `Ok`). `pool_endpoints`:
/// the endpoints of the topic's pool, `None` when the pool is unknown (reported elsewhere).
pub fn routing_plan(
    name: &str,
    t: &TopicConfig,
    pool_endpoints: Option<&[String]>,
) -> Result<RoutingPlan, Vec<Problem>> {
    let r = &t.routing;
    let path = key_path(&key_path("topics", name), "routing");
    let at = |key: &str| key_path(&path, key);
    let mut out = Vec::new();
    let strategy = r.strategy.as_str();
    let adaptive = r.strategy == RouteStrategy::Adaptive;
    for (key, set) in [
        ("weights", r.weights.is_some()),
        ("explore", r.explore.is_some()),
        ("min_samples", r.min_samples.is_some()),
    ] {
        if set && !adaptive {
            out.push(Problem::new(
                at(key),
                format!("only strategy `adaptive` uses `{key}` (this topic's is `{strategy}`)"),
            ));
        }
    }
    let weights = r.weights.unwrap_or_default();
    let mut weights_valid = true;
    for (key, w) in [
        ("quality", weights.quality),
        ("latency", weights.latency),
        ("cost", weights.cost),
    ] {
        if !(w.is_finite() && (0.0..=100.0).contains(&w)) {
            weights_valid = false;
            out.push(Problem::new(
                key_path(&at("weights"), key),
                format!("{w} is not a weight from 0 to 100"),
            ));
        }
    }
    if weights_valid && weights.quality + weights.latency + weights.cost <= 0.0 {
        out.push(Problem::new(
            at("weights"),
            "every weight is 0: nothing would tell the endpoints apart",
        ));
    }
    let explore = r.explore.unwrap_or(DEFAULT_EXPLORE);
    if !(explore.is_finite() && (0.0..=1.0).contains(&explore)) {
        out.push(Problem::new(
            at("explore"),
            format!("{explore} is not a share from 0 to 1"),
        ));
    }
    let min_samples = r.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES);
    if min_samples > MAX_MIN_SAMPLES {
        out.push(Problem::new(
            at("min_samples"),
            format!("{min_samples} is more than {MAX_MIN_SAMPLES}"),
        ));
    }
    if let Some(h) = r.half_life {
        between(h, MAX_HALF_LIFE, &at("half_life"), &mut out);
    }
    if r.route_variable
        .as_deref()
        .is_some_and(|v| v.trim().is_empty())
    {
        out.push(Problem::new(at("route_variable"), "must not be empty"));
    }
    let in_topic = |e: &String| t.endpoints.contains(e);
    for (i, f) in r.fallbacks.iter().enumerate() {
        if !in_topic(f) {
            out.push(Problem::new(
                index_path(&at("fallbacks"), i),
                format!(
                    "`{f}` is not an endpoint of topic `{name}` ({})",
                    name_list(t.endpoints.iter().map(String::as_str))
                ),
            ));
        }
    }
    if !t.endpoints.is_empty() && t.endpoints.iter().all(|e| r.fallbacks.contains(e)) {
        out.push(Problem::new(
            at("fallbacks"),
            "every endpoint is a fallback: leave at least one for the strategy to rank",
        ));
    }
    if !r.endpoint_weights.is_empty() && r.strategy != RouteStrategy::Weighted {
        out.push(Problem::new(
            at("endpoint_weights"),
            format!(
                "only strategy `weighted` uses `endpoint_weights` (this topic's is `{strategy}`)"
            ),
        ));
    }
    for (e, w) in &r.endpoint_weights {
        let here = key_path(&at("endpoint_weights"), e);
        if !in_topic(e) {
            out.push(Problem::new(
                &here,
                format!(
                    "`{e}` is not an endpoint of topic `{name}` ({})",
                    name_list(t.endpoints.iter().map(String::as_str))
                ),
            ));
        }
        if !(w.is_finite() && *w >= 0.0) {
            out.push(Problem::new(
                here,
                format!("{w} is not a weight of 0 or more"),
            ));
        }
    }
    if r.strategy == RouteStrategy::Weighted
        && !t.endpoints.is_empty()
        && t.endpoints
            .iter()
            .all(|e| r.endpoint_weights.get(e).is_some_and(|w| *w == 0.0))
    {
        out.push(Problem::new(
            at("endpoint_weights"),
            "every endpoint weighs 0: give one a weight above 0",
        ));
    }
    let rules = rules(name, r, pool_endpoints, &at("rules"), &mut out);
    if !out.is_empty() {
        return Err(out);
    }
    let kind = match r.strategy {
        RouteStrategy::Ordered => PlanKind::Ordered,
        RouteStrategy::Rules => PlanKind::Rules,
        RouteStrategy::Weighted => PlanKind::Weighted(r.endpoint_weights.clone()),
        RouteStrategy::LeastBusy => PlanKind::LeastBusy,
        RouteStrategy::Latency => PlanKind::Latency,
        RouteStrategy::Cost => PlanKind::Cost,
        RouteStrategy::Adaptive => PlanKind::Adaptive(AdaptiveSettings {
            weights,
            explore,
            min_samples,
        }),
    };
    Ok(RoutingPlan {
        kind,
        rules,
        fallbacks: r.fallbacks.clone(),
        route_variable: r.route_variable.clone(),
        half_life: r.half_life,
    })
}

/// `routing.rules`: each names endpoints of the pool, each `when` compiles, and the last one —
/// only the last — has no `when` (the default). `strategy: rules` needs them.
fn rules(
    name: &str,
    r: &RoutingConfig,
    pool_endpoints: Option<&[String]>,
    path: &str,
    out: &mut Vec<Problem>,
) -> Vec<CompiledRule> {
    if r.rules.is_empty() {
        if r.strategy == RouteStrategy::Rules {
            out.push(Problem::new(
                path,
                "strategy `rules` needs rules: `- { when: \"{{ … }}\", endpoints: [...] }`, \
                 ending with a default rule without `when`",
            ));
        }
        return Vec::new();
    }
    let mut compiled = Vec::new();
    let last = r.rules.len() - 1;
    for (i, rule) in r.rules.iter().enumerate() {
        let here = index_path(path, i);
        if rule.endpoints.is_empty() {
            out.push(Problem::new(
                key_path(&here, "endpoints"),
                "a rule needs at least one endpoint",
            ));
        }
        if let Some(pool) = pool_endpoints {
            for (j, e) in rule.endpoints.iter().enumerate() {
                if !pool.contains(e) {
                    out.push(Problem::new(
                        index_path(&key_path(&here, "endpoints"), j),
                        format!(
                            "`{e}` is not an endpoint of the pool of topic `{name}` ({})",
                            name_list(pool.iter().map(String::as_str))
                        ),
                    ));
                }
            }
        }
        let when = match &rule.when {
            None if i < last => {
                out.push(Problem::new(
                    &here,
                    format!(
                        "rule {i} has no `when`, so it matches every task and the rules after \
                         it never apply; only the last rule may be the default"
                    ),
                ));
                None
            }
            None => None,
            Some(source) => {
                let when_path = key_path(&here, "when");
                match crate::endpoints::template::Template::compile(&when_path, source) {
                    Ok(template) => Some(template),
                    Err(e) => {
                        let reason = match e {
                            crate::endpoints::template::TemplateError::Compile {
                                reason, ..
                            }
                            | crate::endpoints::template::TemplateError::Render {
                                reason, ..
                            } => reason,
                        };
                        out.push(Problem::new(
                            when_path,
                            format!("does not compile: {reason}"),
                        ));
                        None
                    }
                }
            }
        };
        if i == last && rule.when.is_some() {
            out.push(Problem::new(
                &here,
                "the last rule must be the default (no `when`), so that every task has a route",
            ));
        }
        compiled.push(CompiledRule {
            index: i,
            when,
            endpoints: rule.endpoints.clone(),
        });
    }
    compiled
}
