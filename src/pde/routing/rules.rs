//! `rules:` — the first rule whose `when` renders `true` for the task names the endpoints that
//! serve it; the last rule (no `when`) is the default. Rules narrow the candidates for every
//! strategy; `strategy: rules` then keeps the rule's order ([`super::ordered::Ordered::BY_RULE`];
//! the other strategies rank within it).
//!
//! ```yaml
//! routing:
//!   strategy: rules
//!   rules:
//!     - when: "{{ text | length > 8000 }}"   # a template over the task, compiled at load
//!       endpoints: [openai]
//!     - endpoints: [ollama, openai]          # the default
//! ```
//!
//! A rule matches when its `when` renders `true` (any case, surrounding space ignored).
//! A `when` that fails to render for a task (an undefined variable) does not match it; the
//! failure is logged once per task at debug level, naming the rule.

use crate::config::file::CompiledRule;
use crate::endpoints::template::TemplateContext;

/// The first rule matching the task (the default when no other does). `rules` is never empty
/// when called (validation requires the default).
pub fn matching<'r>(rules: &'r [CompiledRule], ctx: &TemplateContext) -> Option<&'r CompiledRule> {
    rules.iter().find(|rule| match &rule.when {
        None => true,
        Some(when) => match when.render(ctx) {
            // minijinja prints a boolean as `True` / `False`.
            Ok(text) => text.trim().eq_ignore_ascii_case("true"),
            Err(e) => {
                tracing::debug!(rule = rule.index, error = %e, "Routing rule does not apply.");
                false
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::TopicConfig;
    use crate::endpoints::EndpointRequest;
    use serde_json::json;

    fn rules() -> Vec<CompiledRule> {
        let t: TopicConfig = serde_yaml::from_str(
            r#"{pool: p, endpoints: [small, big], routing: {strategy: rules, rules: [
                {when: "{{ text | length > 20 }}", endpoints: [big]},
                {when: "{{ urgent }}", endpoints: [small]},
                {endpoints: [small, big]}]}}"#,
        )
        .expect("yaml");
        let pool = ["small".to_string(), "big".to_string()];
        t.routing_plan("t", Some(&pool)).expect("valid").rules
    }

    fn ctx(vars: serde_json::Value) -> TemplateContext {
        TemplateContext::new(&EndpointRequest {
            variables: vars.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        })
    }

    #[test]
    fn the_first_matching_rule_wins_and_the_default_catches_the_rest() {
        let rules = rules();
        let pick = |v| matching(&rules, &ctx(v)).map(|r| r.endpoints.clone());
        let long = "x".repeat(30);
        assert_eq!(
            pick(json!({"text": long, "urgent": true})),
            Some(vec!["big".into()])
        );
        assert_eq!(
            pick(json!({"text": "short", "urgent": true})),
            Some(vec!["small".into()])
        );
        assert_eq!(
            pick(json!({"text": "short", "urgent": false})),
            Some(vec!["small".into(), "big".into()])
        );
        // `text` undefined: the first rule cannot render, so it does not match.
        assert_eq!(pick(json!({"urgent": true})), Some(vec!["small".into()]));
    }
}
