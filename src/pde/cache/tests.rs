//! Hit, miss, expiry, eviction, keying, the side-effect rule, and the pipeline's use of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{Map, json};

use super::*;
use crate::config::file::TopicConfig;
use crate::endpoints::{EndpointError, EndpointReply};
use crate::pde::gateway::Route;
use crate::pde::start::TaskContext;
use crate::pde::topic::TopicRuntime;
use crate::pde::validation;
use crate::pde::verdict::Verdict;

/// Answers `{"label": "a", "call": n}` and counts its calls.
#[derive(Debug)]
struct Counting {
    name: &'static str,
    side_effects: bool,
    calls: AtomicUsize,
}

impl Counting {
    fn new(name: &'static str, side_effects: bool) -> Arc<Self> {
        Arc::new(Self {
            name,
            side_effects,
            calls: AtomicUsize::new(0),
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Endpoint for Counting {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> &'static str {
        "counting"
    }
    fn side_effects(&self) -> bool {
        self.side_effects
    }
    async fn call(&self, _: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(EndpointReply::new(json!({"label": "a", "call": n})))
    }
}

/// A lookup through the cache's slot for this endpoint and input (none with side effects).
fn lookup(c: &ResultCache, e: &dyn Endpoint, r: &EndpointRequest) -> Option<Value> {
    c.slot(e, r)?.lookup()
}

/// A store through the cache's slot for this endpoint and input (none with side effects).
fn store(c: &ResultCache, e: &dyn Endpoint, r: &EndpointRequest, output: &Value) {
    if let Some(slot) = c.slot(e, r) {
        slot.store(output);
    }
}

fn cache(ttl_secs: u64, max_entries: usize) -> ResultCache {
    ResultCache::new(
        "t",
        &CacheConfig {
            ttl: Duration::from_secs(ttl_secs),
            max_entries,
        },
    )
}

fn request(variables: Value) -> EndpointRequest {
    let Value::Object(variables) = variables else {
        panic!("variables are an object")
    };
    EndpointRequest {
        task_id: "task-1".into(),
        variables,
        ..EndpointRequest::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_stored_result_is_a_hit_and_an_unknown_input_a_miss() {
    let c = cache(600, 10);
    let e = Counting::new("e", false);
    let r = request(json!({"text": "hello"}));
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let (miss, hit) = metrics::with_local_recorder(&recorder, || {
        let miss = lookup(&c, e.as_ref(), &r);
        store(&c, e.as_ref(), &r, &json!({"label": "a"}));
        (miss, lookup(&c, e.as_ref(), &r))
    });
    assert_eq!(miss, None);
    assert_eq!(hit, Some(json!({"label": "a"})));
    let text = handle.render();
    for line in [
        r#"procos_cache_lookups_total{topic="t",result="hit"} 1"#,
        r#"procos_cache_lookups_total{topic="t",result="miss"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn different_inputs_properties_or_endpoints_miss_but_key_order_does_not_matter() {
    let c = cache(600, 10);
    let e = Counting::new("e", false);
    let other = Counting::new("other", false);
    let r = request(json!({"a": 1, "nested": {"x": 1, "y": [1, {"p": 1, "q": 2}]}}));
    store(&c, e.as_ref(), &r, &json!({"label": "a"}));

    let mut reordered = Map::new();
    reordered.insert("nested".into(), json!({"y": [1, {"q": 2, "p": 1}], "x": 1}));
    reordered.insert("a".into(), json!(1));
    let same = EndpointRequest {
        variables: reordered,
        task_id: "another-task".into(),
        ..EndpointRequest::default()
    };
    assert!(
        lookup(&c, e.as_ref(), &same).is_some(),
        "same input, other task"
    );

    let changed = request(json!({"a": 2, "nested": {"x": 1, "y": [1, {"p": 1, "q": 2}]}}));
    assert_eq!(lookup(&c, e.as_ref(), &changed), None, "another value");
    assert_eq!(lookup(&c, other.as_ref(), &r), None, "another endpoint");
    let mut prompted = r.clone();
    prompted.properties = BTreeMap::from([("pde.prompt".into(), "Summarise {{ a }}".into())]);
    assert_eq!(lookup(&c, e.as_ref(), &prompted), None, "another prompt");
}

#[tokio::test(start_paused = true)]
async fn an_expired_result_is_never_served() {
    let c = cache(60, 10);
    let e = Counting::new("e", false);
    let r = request(json!({"text": "hello"}));
    store(&c, e.as_ref(), &r, &json!({"label": "a"}));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(lookup(&c, e.as_ref(), &r).is_some(), "younger than ttl");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(lookup(&c, e.as_ref(), &r), None, "ttl reached");
    assert!(c.is_empty(), "the expired entry is dropped");
}

#[tokio::test(start_paused = true)]
async fn the_oldest_entry_is_evicted_at_max_entries() {
    let c = cache(600, 2);
    let e = Counting::new("e", false);
    let (one, two, three) = (
        request(json!({"n": 1})),
        request(json!({"n": 2})),
        request(json!({"n": 3})),
    );
    store(&c, e.as_ref(), &one, &json!(1));
    tokio::time::advance(Duration::from_secs(1)).await;
    store(&c, e.as_ref(), &two, &json!(2));
    tokio::time::advance(Duration::from_secs(1)).await;
    store(&c, e.as_ref(), &three, &json!(3));
    assert_eq!(c.len(), 2);
    assert_eq!(lookup(&c, e.as_ref(), &one), None, "the oldest went");
    assert_eq!(lookup(&c, e.as_ref(), &two), Some(json!(2)));
    assert_eq!(lookup(&c, e.as_ref(), &three), Some(json!(3)));
    // Storing an input again replaces it rather than taking a second place.
    store(&c, e.as_ref(), &three, &json!(33));
    assert_eq!(c.len(), 2);
    assert_eq!(lookup(&c, e.as_ref(), &two), Some(json!(2)));
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_with_side_effects_is_never_stored_nor_served() {
    let c = cache(600, 10);
    let e = Counting::new("writes", true);
    let r = request(json!({"text": "hello"}));
    store(&c, e.as_ref(), &r, &json!({"label": "a"}));
    assert!(c.is_empty());
    assert_eq!(lookup(&c, e.as_ref(), &r), None);
}

fn topic(cache: &str, registry: &BTreeMap<String, Arc<dyn Endpoint>>) -> TopicRuntime {
    let config: TopicConfig = serde_yaml::from_str(&format!(
        "{{pool: p, endpoints: [e], {cache} output: {{required: [label]}}}}"
    ))
    .expect("yaml");
    TopicRuntime::build("t", &config, &[], registry, Duration::from_secs(30)).expect("builds")
}

async fn run(topic: &TopicRuntime, variables: Value) -> Verdict {
    let ctx = TaskContext {
        request: request(variables),
    };
    let route = Route {
        endpoints: topic.endpoints.clone(),
    };
    validation::execute(&ctx, topic, &route).await
}

#[tokio::test]
async fn a_second_identical_task_does_not_call_the_endpoint() {
    let e = Counting::new("e", false);
    let registry = BTreeMap::from([("e".to_string(), e.clone() as Arc<dyn Endpoint>)]);
    let t = topic("cache: {ttl: 10m, max_entries: 100},", &registry);

    let first = run(&t, json!({"text": "hello"})).await;
    let second = run(&t, json!({"text": "hello"})).await;
    assert_eq!(e.calls(), 1, "the second task is served from the cache");
    let expected = Verdict::Done {
        output: json!({"label": "a", "call": 1}),
        endpoint: "e".into(),
        usage: None,
        judge: None,
    };
    assert_eq!(first, expected);
    assert_eq!(second, expected, "the same result, the same endpoint named");

    run(&t, json!({"text": "other"})).await;
    assert_eq!(e.calls(), 2, "another input calls the endpoint");
}

#[tokio::test]
async fn without_cache_or_with_side_effects_every_task_calls_the_endpoint() {
    let e = Counting::new("e", false);
    let registry = BTreeMap::from([("e".to_string(), e.clone() as Arc<dyn Endpoint>)]);
    let t = topic("", &registry);
    run(&t, json!({"text": "hello"})).await;
    run(&t, json!({"text": "hello"})).await;
    assert_eq!(e.calls(), 2, "no cache configured");

    let w = Counting::new("e", true);
    let registry = BTreeMap::from([("e".to_string(), w.clone() as Arc<dyn Endpoint>)]);
    let t = topic("cache: {},", &registry);
    run(&t, json!({"text": "hello"})).await;
    run(&t, json!({"text": "hello"})).await;
    assert_eq!(w.calls(), 2, "a side-effecting endpoint runs every time");
}

#[tokio::test]
async fn a_cached_result_that_no_longer_validates_is_not_served() {
    let e = Counting::new("e", false);
    let registry = BTreeMap::from([("e".to_string(), e.clone() as Arc<dyn Endpoint>)]);
    let t = topic("cache: {},", &registry);
    let cache = t.cache.as_ref().expect("cache built");
    let r = request(json!({"text": "hello"}));
    store(cache, e.as_ref(), &r, &json!({"no_label": true}));
    let verdict = run(&t, json!({"text": "hello"})).await;
    assert_eq!(
        e.calls(),
        1,
        "an invalid stored result is replaced by a call"
    );
    assert!(matches!(verdict, Verdict::Done { .. }), "{verdict:?}");
}
