//! Semantic checks on configs that parse but cannot run.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::config::Secret;
use crate::config::file::AuthConfig;

/// A small, valid config to break one thing at a time.
fn base() -> FileConfig {
    serde_yaml::from_str(
        r#"
camunda: {}
pde_manager:
  pools:
    main: { max_concurrent_tasks: 8, instances: 2, endpoints: [a, b] }
    side: { max_concurrent_tasks: 1, endpoints: [c] }
topics:
  t:
    pool: main
    endpoints: [a, b]
    output:
      mapping: { whole: "", status: /data/status, odd: /a~1b~0c }
      required: [id, /data/status]
      schema: { type: object, required: [id] }
endpoints:
  a: { type: noop }
  b: { type: noop, delay: 1s }
  c: { type: http }
"#,
    )
    .unwrap()
}

fn check(config: &FileConfig) -> Vec<(String, String)> {
    validate(config)
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

fn only_path(config: &FileConfig) -> String {
    let ps = check(config);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    ps[0].0.clone()
}

#[test]
fn the_base_config_is_valid() {
    assert_eq!(check(&base()), []);
}

#[test]
fn a_topic_endpoint_outside_its_pool_names_the_pool() {
    let mut c = base();
    c.topics.get_mut("t").unwrap().endpoints.push("c".into());
    let ps = check(&c);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].0, "topics.t.endpoints[2]");
    assert!(
        ps[0].1.contains("`c`") && ps[0].1.contains("pool `main`"),
        "{}",
        ps[0].1
    );
}

#[test]
fn pool_references_and_sizes_are_checked() {
    let mut c = base();
    c.pde_manager.pools.get_mut("side").unwrap().endpoints = vec!["zz".into()];
    let ps = check(&c);
    assert_eq!(ps[0].0, "pde_manager.pools.side.endpoints[0]");
    assert!(ps[0].1.contains("pool `side`") && ps[0].1.contains("`zz`"));

    let mut c = base();
    c.pde_manager.pools.get_mut("main").unwrap().instances = 9;
    assert_eq!(only_path(&c), "pde_manager.pools.main.instances");
    c.pde_manager.pools.get_mut("main").unwrap().instances = 0;
    assert_eq!(only_path(&c), "pde_manager.pools.main.instances");

    let mut c = base();
    c.pde_manager
        .pools
        .get_mut("side")
        .unwrap()
        .max_concurrent_tasks = 0;
    assert_eq!(only_path(&c), "pde_manager.pools.side.max_concurrent_tasks");
}

#[test]
fn a_config_without_topics_or_with_an_empty_topic_is_rejected() {
    let mut c = base();
    c.topics.get_mut("t").unwrap().endpoints.clear();
    assert_eq!(only_path(&c), "topics.t.endpoints");
    c.topics.clear();
    assert_eq!(only_path(&c), "topics");
}

#[test]
fn camunda_limits_are_checked() {
    let mut c = base();
    c.camunda.long_poll = MAX_LONG_POLL;
    assert_eq!(check(&c), [], "exactly the engine's limit is fine");
    c.camunda.long_poll = MAX_LONG_POLL + Duration::from_millis(1);
    assert_eq!(only_path(&c), "camunda.long_poll");

    let mut c = base();
    c.camunda.lock_duration = Duration::ZERO;
    assert_eq!(only_path(&c), "camunda.lock_duration");

    let mut c = base();
    c.camunda.max_tasks = 0;
    assert_eq!(only_path(&c), "camunda.max_tasks");

    let mut c = base();
    c.camunda.backoff.initial = Duration::from_secs(60);
    assert_eq!(only_path(&c), "camunda.backoff.initial");
    c.camunda.backoff.initial = Duration::from_secs(1);
    c.camunda.backoff.multiplier = f64::NAN;
    assert_eq!(only_path(&c), "camunda.backoff.multiplier");
}

#[test]
fn a_bad_engine_url_is_reported_without_echoing_it() {
    for url in ["localhost:8080/engine-rest", "ftp://host/x", "not a url"] {
        let mut c = base();
        c.camunda.url = url.into();
        assert_eq!(only_path(&c), "camunda.url", "{url}");
    }
    let mut c = base();
    c.camunda.url = "ftp://admin:hunter2@host/x".into();
    assert!(!format!("{:?}", check(&c)).contains("hunter2"));
    c.camunda.url = "https://admin:hunter2@host/engine-rest".into();
    assert_eq!(check(&c), []);
}

#[test]
fn empty_credentials_are_reported() {
    let mut c = base();
    c.camunda.auth = Some(AuthConfig::Bearer {
        token: Secret::new(""),
    });
    assert_eq!(only_path(&c), "camunda.auth.token");
}

#[test]
fn deploy_names_must_not_be_empty() {
    let mut c = base();
    c.deploy.dir = "".into();
    c.deploy.deployment_name = " ".into();
    let paths: Vec<String> = check(&c).into_iter().map(|p| p.0).collect();
    assert_eq!(paths, ["deploy.dir", "deploy.deployment_name"]);
}

#[test]
fn topic_output_rules_are_checked() {
    let mut c = base();
    let t = c.topics.get_mut("t").unwrap();
    t.retries = MAX_RETRIES + 1;
    t.output
        .mapping
        .insert("status".into(), "data/status".into());
    t.output.mapping.insert("tilde".into(), "/a~2".into());
    t.output.required.push("/bad~".into());
    t.output.schema = Some(json!({"type": "objekt"}));
    t.output.attempts = 0;
    t.lock_duration = Some(Duration::ZERO);
    let paths: Vec<String> = check(&c).into_iter().map(|p| p.0).collect();
    assert_eq!(
        paths,
        [
            "topics.t.retries",
            "topics.t.lock_duration",
            "topics.t.output.mapping.status",
            "topics.t.output.mapping.tilde",
            "topics.t.output.required[2]",
            "topics.t.output.schema",
            "topics.t.output.attempts",
        ]
    );
}

#[test]
fn bpmn_error_codes_must_not_be_empty() {
    let mut c = base();
    let t = c.topics.get_mut("t").unwrap();
    t.bpmn_errors.insert("http_404".parse().unwrap(), "".into());
    assert_eq!(only_path(&c), "topics.t.bpmn_errors.http_404");
}

#[test]
fn schemas_of_the_common_drafts_are_accepted_without_network() {
    for draft in [
        "http://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft/2020-12/schema",
    ] {
        let mut c = base();
        c.topics.get_mut("t").unwrap().output.schema = Some(json!({
            "$schema": draft,
            "type": "object",
            "properties": {"id": {"type": "string", "minLength": 1}},
        }));
        assert_eq!(check(&c), [], "{draft}");
    }
    let mut c = base();
    c.topics.get_mut("t").unwrap().output.schema =
        Some(json!({"$ref": "https://example.invalid/schema.json"}));
    assert_eq!(only_path(&c), "topics.t.output.schema");
}

/// `300000y`: what a fuzzed config set, and what the engine's date arithmetic cannot hold.
const AGES: Duration = Duration::from_secs(300_000 * 365 * 24 * 3600);

#[test]
fn durations_the_engine_cannot_hold_are_refused_at_their_path() {
    let mut c = base();
    c.camunda.lock_duration = AGES;
    c.camunda.request_timeout = AGES;
    c.camunda.boot_timeout = AGES;
    c.camunda.backoff.max = AGES;
    c.deploy.debounce = AGES;
    c.pde_manager.shutdown_grace = AGES;
    let t = c.topics.get_mut("t").unwrap();
    t.lock_duration = Some(AGES);
    t.retry_timeout = AGES;
    let ps = check(&c);
    let paths: Vec<&str> = ps.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "camunda.lock_duration",
            "camunda.request_timeout",
            "camunda.boot_timeout",
            "camunda.backoff.max",
            "deploy.debounce",
            "pde_manager.shutdown_grace",
            "topics.t.retry_timeout",
            "topics.t.lock_duration",
        ]
    );
    assert!(
        ps[0].1.contains("7days"),
        "the message names the limit: {}",
        ps[0].1
    );
}

#[test]
fn the_largest_allowed_values_pass() {
    let mut c = base();
    c.camunda.lock_duration = MAX_LOCK_DURATION;
    c.topics.get_mut("t").unwrap().retry_timeout = MAX_RETRY_TIMEOUT;
    c.camunda.max_tasks = MAX_TASKS;
    c.pde_manager
        .pools
        .get_mut("main")
        .unwrap()
        .max_concurrent_tasks = MAX_TASKS;
    assert_eq!(check(&c), []);
}

#[test]
fn counts_past_what_the_engine_or_a_semaphore_holds_are_refused_at_their_path() {
    let mut c = base();
    c.camunda.max_tasks = usize::MAX;
    c.camunda.backoff.multiplier = 1e300;
    let pool = c.pde_manager.pools.get_mut("main").unwrap();
    pool.max_concurrent_tasks = usize::MAX >> 2;
    let t = c.topics.get_mut("t").unwrap();
    t.output.attempts = u32::MAX;
    let paths: Vec<String> = check(&c).into_iter().map(|p| p.0).collect();
    assert_eq!(
        paths,
        [
            "camunda.max_tasks",
            "camunda.backoff.multiplier",
            "pde_manager.pools.main.max_concurrent_tasks",
            "topics.t.output.attempts",
        ]
    );
}

#[test]
fn the_journal_keeps_outcomes_a_month_at_the_most() {
    let mut c = base();
    c.pde_manager.journal_retention = Duration::from_secs(365 * 24 * 3600);
    assert_eq!(only_path(&c), "pde_manager.journal_retention");
}

/// The problems `load_str` reports for `yaml` (no environment), as `path: message` lines.
fn load_problems(yaml: &str) -> Vec<(String, String)> {
    match crate::config::load_str(yaml, std::path::Path::new("pde.yaml"), &|_| None) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect(),
    }
}

/// A topic `t` whose `bpmn_errors` is `map`, in an otherwise valid file.
fn with_bpmn_errors(map: &str) -> String {
    format!(
        r#"
camunda: {{}}
pde_manager:
  pools:
    main: {{ max_concurrent_tasks: 8, endpoints: [a] }}
topics:
  t:
    pool: main
    endpoints: [a]
    bpmn_errors: {map}
endpoints:
  a: {{ type: noop }}
"#
    )
}

#[test]
fn a_misspelt_error_class_is_refused_at_its_path_with_a_suggestion() {
    let ps = load_problems(&with_bpmn_errors("{ ouput_invalid: BAD_OUTPUT }"));
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].0, "topics.t.bpmn_errors.ouput_invalid");
    assert!(
        ps[0]
            .1
            .starts_with("unknown error class; did you mean `output_invalid`?"),
        "{}",
        ps[0].1
    );
    // The message lists what is valid, patterns included.
    for valid in [
        "`input_invalid`",
        "`timeout`",
        "`http_404`",
        "`http_4xx`",
        "`exit_3`",
    ] {
        assert!(ps[0].1.contains(valid), "{valid} missing from: {}", ps[0].1);
    }
}

#[test]
fn every_class_the_code_produces_is_accepted_as_a_bpmn_errors_key() {
    use crate::endpoints::class::NAMED;
    let numbered = [
        "http_404", "http_4xx", "http_5xx", "smtp_451", "smtp_5xx", "exit_3",
    ];
    let keys: Vec<&str> = NAMED.iter().copied().chain(numbered).collect();
    let map: Vec<String> = keys.iter().map(|k| format!("{k}: E_{k}")).collect();
    let yaml = with_bpmn_errors(&format!("{{ {} }}", map.join(", ")));
    let config = crate::config::load_str(&yaml, std::path::Path::new("pde.yaml"), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let parsed = &config.topics["t"].bpmn_errors;
    assert_eq!(parsed.len(), keys.len());
    for (class, code) in parsed {
        assert_eq!(*code, format!("E_{class}"));
    }
}

#[test]
fn a_numbered_class_no_error_can_carry_is_refused_with_the_range() {
    let ps = load_problems(&with_bpmn_errors("{ http_600: GONE }"));
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].0, "topics.t.bpmn_errors.http_600");
    assert!(ps[0].1.contains("status from 100 to 599"), "{}", ps[0].1);
}

/// `base()` with `cache:` on topic `t` and endpoints `a`/`b` replaced by `a_yaml`/`b_yaml`.
fn cached(cache: &str, a_yaml: &str, b_yaml: &str) -> FileConfig {
    let mut c = base();
    c.topics.get_mut("t").unwrap().cache = Some(serde_yaml::from_str(cache).unwrap());
    c.endpoints
        .insert("a".into(), serde_yaml::from_str(a_yaml).unwrap());
    c.endpoints
        .insert("b".into(), serde_yaml::from_str(b_yaml).unwrap());
    c
}

#[test]
fn a_cache_on_read_only_endpoints_is_valid() {
    let c = cached(
        "{ttl: 10m, max_entries: 10000}",
        "{type: http, method: GET, url: 'http://x/{{ id }}'}",
        "{type: python, script: s.py, pure: true}",
    );
    assert_eq!(check(&c), []);
}

#[test]
fn a_cache_ttl_and_size_are_bounded() {
    let c = cached("{ttl: 31d}", "{type: noop}", "{type: noop}");
    assert_eq!(only_path(&c), "topics.t.cache.ttl");
    let c = cached("{ttl: 0s}", "{type: noop}", "{type: noop}");
    assert_eq!(only_path(&c), "topics.t.cache.ttl");
    let c = cached("{max_entries: 0}", "{type: noop}", "{type: noop}");
    assert_eq!(only_path(&c), "topics.t.cache.max_entries");
    let c = cached("{max_entries: 1000001}", "{type: noop}", "{type: noop}");
    assert_eq!(only_path(&c), "topics.t.cache.max_entries");
}

#[test]
fn a_cache_is_refused_on_a_topic_that_can_reach_a_side_effecting_endpoint() {
    let refused = [
        "{type: python, script: s.py}",
        "{type: http, method: POST, url: 'http://x/'}",
        "{type: http, url: 'http://x/'}", // method from a variable: may write
        "{type: email, host: localhost, from: a@x.org}",
    ];
    for b in refused {
        let c = cached("{}", "{type: noop}", b);
        let ps = check(&c);
        assert_eq!(ps.len(), 1, "{b}: {ps:#?}");
        assert_eq!(ps[0].0, "topics.t.cache", "{b}");
        assert!(
            ps[0].1.contains("topic `t`") && ps[0].1.contains("endpoint `b`"),
            "{b}: {}",
            ps[0].1
        );
    }
    // Not listed by the topic but in its pool: `pde.endpoint` can pick it.
    let mut c = cached("{}", "{type: noop}", "{type: noop}");
    c.topics.get_mut("t").unwrap().endpoints = vec!["a".into()];
    c.endpoints.insert(
        "b".into(),
        serde_yaml::from_str("{type: python, script: s.py}").unwrap(),
    );
    let ps = check(&c);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert!(ps[0].1.contains("endpoint `b`"), "{}", ps[0].1);
}

/// `output.checks` and `output.validator` over the base config: the topic `t` in pool `main`.
fn with_output(yaml: &str) -> FileConfig {
    let mut c = base();
    let t = c.topics.get_mut("t").unwrap();
    let extra: OutputConfig = serde_yaml::from_str(yaml).unwrap();
    t.output.checks = extra.checks;
    t.output.validator = extra.validator;
    c
}

#[test]
fn good_checks_and_a_pure_validator_of_the_pool_are_accepted() {
    let c = with_output(
        "{checks: [{pointer: /label, regex: '^[a-z]+$', min_length: 1, max_length: 9}, \
         {pointer: /score, min: 0, max: 1}], validator: b}",
    );
    assert_eq!(check(&c), []);
}

#[test]
fn bad_check_rules_are_refused_at_their_path() {
    let c = with_output(
        "{checks: [{pointer: /a, regex: '(unclosed'}, {pointer: /b, min: 2, max: 1}, \
         {pointer: /c, min_length: 5, max_length: 2}, {pointer: nope, min: 0}, {pointer: /e}]}",
    );
    let ps = check(&c);
    let paths: Vec<&str> = ps.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "topics.t.output.checks[0].regex",
            "topics.t.output.checks[1].min",
            "topics.t.output.checks[2].min_length",
            "topics.t.output.checks[3].pointer",
            "topics.t.output.checks[4]",
        ],
        "{ps:#?}"
    );
    assert!(ps[0].1.contains("(unclosed"), "{ps:#?}");
    assert!(ps[1].1.contains("2") && ps[1].1.contains("1"), "{ps:#?}");
}

#[test]
fn a_validator_outside_the_pool_or_with_side_effects_is_refused() {
    let c = with_output("{validator: ghost}");
    let ps = check(&c);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].0, "topics.t.output.validator");
    assert!(ps[0].1.contains("`ghost`"), "{ps:#?}");

    let mut c = with_output("{validator: c}");
    // `c` (an http POST) is in pool `side`; move the topic there so only the side effect is wrong.
    let t = c.topics.get_mut("t").unwrap();
    t.pool = "side".into();
    t.endpoints = vec!["c".into()];
    let ps = check(&c);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].0, "topics.t.output.validator");
    assert!(ps[0].1.contains("side effects"), "{ps:#?}");
}

/// A topic `t` (endpoints a, b of pool main: a, b; pool side: c) whose `routing` is `routing`.
fn with_routing(routing: &str) -> String {
    format!(
        r#"
camunda: {{}}
pde_manager:
  pools:
    main: {{ max_concurrent_tasks: 8, endpoints: [a, b] }}
    side: {{ max_concurrent_tasks: 8, endpoints: [c] }}
topics:
  t:
    pool: main
    endpoints: [a, b]
    routing: {routing}
endpoints:
  a: {{ type: noop }}
  b: {{ type: noop }}
  c: {{ type: noop }}
"#
    )
}

#[test]
fn every_strategy_with_its_settings_is_accepted() {
    for routing in [
        "{}",
        "{strategy: ordered}",
        r#"{strategy: rules, rules: [{when: "{{ text | length > 8000 }}", endpoints: [b]}, {endpoints: [a, b]}]}"#,
        "{strategy: weighted, endpoint_weights: {a: 3, b: 1}}",
        "{strategy: least_busy}",
        "{strategy: latency, fallbacks: [b]}",
        "{strategy: cost}",
        "{strategy: adaptive, weights: {quality: 1, latency: 0.2, cost: 0.5}, explore: 0.05, min_samples: 20, half_life: 10m, route_variable: pde_route}",
    ] {
        assert_eq!(load_problems(&with_routing(routing)), [], "{routing}");
    }
}

#[test]
fn an_unknown_strategy_is_refused_at_its_path() {
    let ps = load_problems(&with_routing("{strategy: round_robin}"));
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].0, "topics.t.routing.strategy");
    assert!(
        ps[0].1.contains("adaptive"),
        "lists the strategies: {}",
        ps[0].1
    );
}

#[test]
fn rules_need_endpoints_of_the_pool_a_default_and_conditions_that_compile() {
    let outside = load_problems(&with_routing(
        r#"{strategy: rules, rules: [{when: "{{ big }}", endpoints: [c]}, {endpoints: [a]}]}"#,
    ));
    assert_eq!(outside.len(), 1, "{outside:?}");
    assert_eq!(outside[0].0, "topics.t.routing.rules[0].endpoints[0]");
    assert!(outside[0].1.contains("`c`"), "{}", outside[0].1);

    let no_default = load_problems(&with_routing(
        r#"{strategy: rules, rules: [{when: "{{ big }}", endpoints: [a]}]}"#,
    ));
    assert_eq!(no_default.len(), 1, "{no_default:?}");
    assert_eq!(no_default[0].0, "topics.t.routing.rules[0]");
    assert!(no_default[0].1.contains("default"), "{}", no_default[0].1);

    let bad_when = load_problems(&with_routing(
        r#"{strategy: rules, rules: [{when: "{{ text | length > }}", endpoints: [a]}, {endpoints: [b]}]}"#,
    ));
    assert_eq!(bad_when.len(), 1, "{bad_when:?}");
    assert_eq!(bad_when[0].0, "topics.t.routing.rules[0].when");
    assert!(
        bad_when[0].1.starts_with("does not compile"),
        "{}",
        bad_when[0].1
    );

    let default_first = load_problems(&with_routing(
        r#"{strategy: rules, rules: [{endpoints: [a]}, {endpoints: [b]}]}"#,
    ));
    assert_eq!(default_first.len(), 1, "{default_first:?}");
    assert_eq!(default_first[0].0, "topics.t.routing.rules[0]");
    assert!(
        default_first[0].1.contains("never apply"),
        "{}",
        default_first[0].1
    );

    let none = load_problems(&with_routing("{strategy: rules}"));
    assert_eq!(none.len(), 1, "{none:?}");
    assert_eq!(none[0].0, "topics.t.routing.rules");
}

#[test]
fn adaptive_settings_are_bounded_and_only_for_adaptive() {
    let ps = load_problems(&with_routing(
        "{strategy: adaptive, explore: 1.5, weights: {quality: -1}, half_life: 0s}",
    ));
    let paths: Vec<&str> = ps.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "topics.t.routing.weights.quality",
            "topics.t.routing.explore",
            "topics.t.routing.half_life"
        ],
        "{ps:?}"
    );
    let ps = load_problems(&with_routing("{strategy: ordered, explore: 0.1}"));
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].0, "topics.t.routing.explore");
    assert!(ps[0].1.contains("only strategy `adaptive`"), "{}", ps[0].1);
}

#[test]
fn weights_and_fallbacks_name_endpoints_of_the_topic() {
    let ps = load_problems(&with_routing(
        "{strategy: weighted, endpoint_weights: {c: 1, b: -2}, fallbacks: [c]}",
    ));
    let paths: Vec<&str> = ps.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "topics.t.routing.fallbacks[0]",
            "topics.t.routing.endpoint_weights.b",
            "topics.t.routing.endpoint_weights.c"
        ],
        "{ps:?}"
    );
    let ps = load_problems(&with_routing("{fallbacks: [a, b]}"));
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].0, "topics.t.routing.fallbacks");
}
