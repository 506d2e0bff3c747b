//! Routing through the real Gateway and Validation: what the learner records decides later
//! routes, per task class.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::config::file::TopicConfig;
use crate::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest, Usage};
use crate::pde::start::TaskContext;
use crate::pde::{StageTimings, TopicRuntime, Verdict, checked_work_routed};

/// A model with a context window: inputs longer than `window` characters fail the way a
/// server says "context length exceeded" (fallback); shorter ones are answered validly.
#[derive(Debug)]
struct Model {
    name: &'static str,
    window: usize,
    price: f64,
}

#[async_trait]
impl Endpoint for Model {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> &'static str {
        "model"
    }
    fn side_effects(&self) -> bool {
        false
    }
    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let text = request.variables["text"].as_str().unwrap_or_default();
        if text.len() > self.window {
            return Err(EndpointError::fallback("context length exceeded").code("context_length"));
        }
        Ok(EndpointReply {
            output: json!({"label": "ok"}),
            usage: Some(Usage {
                cost: Some(self.price),
                ..Usage::default()
            }),
        })
    }
}

fn topic(routing: &str) -> TopicRuntime {
    let small: Arc<dyn Endpoint> = Arc::new(Model {
        name: "small",
        window: 20_000,
        price: 0.001,
    });
    let big: Arc<dyn Endpoint> = Arc::new(Model {
        name: "big",
        window: 1_000_000,
        price: 0.01,
    });
    let registry = BTreeMap::from([("small".to_string(), small), ("big".to_string(), big)]);
    let config: TopicConfig = serde_yaml::from_str(&format!(
        "{{pool: p, endpoints: [big, small], output: {{required: [label]}}, routing: {routing}}}"
    ))
    .expect("yaml");
    let pool = ["big".to_string(), "small".to_string()];
    TopicRuntime::build("t", &config, &pool, &registry, Duration::from_secs(30)).expect("builds")
}

async fn run(topic: &TopicRuntime, chars: usize) -> (Verdict, String) {
    let mut request = EndpointRequest::default();
    request
        .variables
        .insert("text".into(), json!("x".repeat(chars)));
    let ctx = TaskContext { request };
    let (verdict, note) =
        checked_work_routed(&ctx, topic, &mut StageTimings::default(), None).await;
    (verdict, note.expect("routed").endpoint)
}

#[tokio::test]
async fn long_inputs_are_learned_onto_another_endpoint_than_short_ones() {
    let t = topic("{strategy: adaptive, explore: 0.0}");
    // Warm-up: both classes, interleaved.
    for i in 0..120 {
        let chars = if i % 2 == 0 { 100 } else { 40_000 };
        let (verdict, _) = run(&t, chars).await;
        assert!(matches!(verdict, Verdict::Done { .. }), "{verdict:?}");
    }
    let (mut short_small, mut long_big) = (0, 0);
    for _ in 0..100 {
        short_small += usize::from(run(&t, 100).await.1 == "small");
        long_big += usize::from(run(&t, 40_000).await.1 == "big");
    }
    // Short: equal quality, small is a tenth of the price. Long: small cannot take it.
    assert!(
        short_small >= 95,
        "short tasks first to `small`: {short_small} of 100"
    );
    assert!(
        long_big >= 95,
        "long tasks first to `big`: {long_big} of 100"
    );
    let learned = |endpoint, class| {
        t.learner
            .get(&crate::learner::Key::new("t", endpoint, class))
            .expect("recorded")
    };
    assert!(learned("small", "l").failed > 0.0 && learned("small", "s").failed == 0.0);
}

#[tokio::test]
async fn without_learning_the_configured_order_holds() {
    let t = topic("{}");
    for _ in 0..20 {
        assert_eq!(run(&t, 100).await.1, "big");
    }
}
