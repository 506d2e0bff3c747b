//! Validation block: retries, fallbacks, checks and the judge.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::config::file::TopicConfig;
use crate::endpoints::{Endpoint, EndpointReply, EndpointRequest};
use crate::pde::start::TaskContext;
use crate::pde::verdict::Judgement;

/// Answers from a script, one reply per call, and records the feedback it was given.
#[derive(Debug)]
struct Scripted {
    name: &'static str,
    replies: Mutex<Vec<Result<Value, EndpointError>>>,
    feedback: Mutex<Vec<Option<String>>>,
    /// The variables of every call (a judge sees the candidate as `result`).
    seen: Mutex<Vec<serde_json::Map<String, Value>>>,
    /// The extension properties of every call.
    properties: Mutex<Vec<BTreeMap<String, String>>>,
}

impl Scripted {
    fn new(name: &'static str, mut replies: Vec<Result<Value, EndpointError>>) -> Arc<Self> {
        replies.reverse();
        Arc::new(Self {
            name,
            replies: Mutex::new(replies),
            feedback: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            properties: Mutex::new(Vec::new()),
        })
    }
    fn calls(&self) -> usize {
        self.feedback.lock().unwrap().len()
    }
}

#[async_trait]
impl Endpoint for Scripted {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> &'static str {
        "scripted"
    }
    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        self.feedback.lock().unwrap().push(request.feedback.clone());
        self.seen.lock().unwrap().push(request.variables.clone());
        self.properties
            .lock()
            .unwrap()
            .push(request.properties.clone());
        let next = self.replies.lock().unwrap().pop().expect("scripted reply");
        next.map(EndpointReply::new)
    }
}

fn topic(yaml: &str) -> TopicRuntime {
    let config: TopicConfig = serde_yaml::from_str(yaml).expect("yaml");
    TopicRuntime::build("t", &config, &[], &BTreeMap::new(), Duration::from_secs(30))
        .expect("builds")
}

fn ctx() -> TaskContext {
    TaskContext {
        request: EndpointRequest::default(),
    }
}

fn route(endpoints: Vec<Arc<Scripted>>) -> Route {
    Route {
        endpoints: endpoints
            .into_iter()
            .map(|e| e as Arc<dyn Endpoint>)
            .collect(),
    }
}

const SCHEMA_TOPIC: &str = "{pool: p, endpoints: [], output: {attempts: 2, required: [label], schema: {type: object, properties: {label: {enum: [a, b]}}}}}";

#[tokio::test]
async fn invalid_result_is_retried_with_feedback_then_falls_back() {
    let t = topic(SCHEMA_TOPIC);
    let first = Scripted::new(
        "first",
        vec![Ok(json!({"label": "zzz"})), Ok(json!({"nope": 1}))],
    );
    let second = Scripted::new("second", vec![Ok(json!({"label": "b"}))]);
    let verdict = execute(&ctx(), &t, &route(vec![first.clone(), second.clone()])).await;
    assert_eq!(
        verdict,
        Verdict::Done {
            output: json!({"label": "b"}),
            endpoint: "second".into(),
            usage: None,
            judge: None,
        }
    );
    assert_eq!(first.calls(), 2, "attempts: 2 on the first endpoint");
    let feedback = first.feedback.lock().unwrap().clone();
    assert_eq!(feedback[0], None);
    assert!(
        feedback[1].as_deref().unwrap_or("").contains("/label"),
        "the schema error is fed back: {feedback:?}"
    );
    assert_eq!(second.calls(), 1);
}

#[tokio::test]
async fn all_results_invalid_is_an_output_invalid_failure_with_every_attempt() {
    let t = topic(SCHEMA_TOPIC);
    let only = Scripted::new("only", vec![Ok(json!({})), Ok(json!({"label": 3}))]);
    let Verdict::Failed { error, chain } = execute(&ctx(), &t, &route(vec![only])).await else {
        panic!("expected failure");
    };
    assert_eq!(error.code.as_deref(), Some(class::OUTPUT_INVALID));
    assert_eq!(chain.len(), 2);
    assert!(
        chain[0].contains("required key `label` is missing"),
        "{chain:?}"
    );
}

#[tokio::test]
async fn transient_error_falls_back_but_permanent_error_stops() {
    let t = topic("{pool: p, endpoints: []}");
    let flaky = Scripted::new("flaky", vec![Err(EndpointError::transient("503"))]);
    let good = Scripted::new("good", vec![Ok(json!({"ok": true}))]);
    let verdict = execute(&ctx(), &t, &route(vec![flaky, good])).await;
    assert!(
        matches!(verdict, Verdict::Done { ref endpoint, .. } if endpoint == "good"),
        "{verdict:?}"
    );

    let denied = Scripted::new(
        "denied",
        vec![Err(EndpointError::permanent("401: check the API key"))],
    );
    let never = Scripted::new("never", vec![]);
    let verdict = execute(&ctx(), &t, &route(vec![denied, never.clone()])).await;
    assert!(
        matches!(verdict, Verdict::Failed { ref error, .. } if error.kind == ErrorKind::Permanent)
    );
    assert_eq!(
        never.calls(),
        0,
        "a permanent error is not retried elsewhere"
    );
}

/// A topic whose pool holds `judge` as its `output.validator`.
fn judged_topic(yaml: &str, judge: &Arc<Scripted>) -> TopicRuntime {
    let config: TopicConfig = serde_yaml::from_str(yaml).expect("yaml");
    let registry = BTreeMap::from([(judge.name.to_string(), judge.clone() as Arc<dyn Endpoint>)]);
    TopicRuntime::build(
        "t",
        &config,
        &[judge.name.to_string()],
        &registry,
        Duration::from_secs(30),
    )
    .expect("builds")
}

const JUDGED: &str = "{pool: p, endpoints: [], output: {attempts: 2, validator: judge}}";

fn judged(pass: bool, score: f64, reason: &str) -> Result<Value, EndpointError> {
    Ok(json!({"pass": pass, "score": score, "reason": reason}))
}

#[test]
fn each_check_rule_passes_and_fails_naming_pointer_and_rule() {
    let t = topic(
        "{pool: p, endpoints: [], output: {checks: [
            {pointer: /code, regex: '^[A-Z]{3}$'},
            {pointer: /text, min_length: 2, max_length: 5},
            {pointer: /tags, min_length: 1, max_length: 2},
            {pointer: /score, min: 0, max: 1}]}}",
    );
    let good = json!({"code": "ABC", "text": "hey", "tags": ["x"], "score": 0.5});
    assert_eq!(check_output(&t, &good), Ok(()));

    let cases = [
        (json!({"code": "abcd"}), "/code", "regex"),
        (json!({"text": "h"}), "/text", "min_length"),
        (json!({"text": "far too long"}), "/text", "max_length"),
        (json!({"tags": []}), "/tags", "min_length"),
        (json!({"tags": [1, 2, 3]}), "/tags", "max_length"),
        (json!({"score": -0.1}), "/score", "min"),
        (json!({"score": 1.5}), "/score", "max"),
        (json!({"score": "high"}), "/score", "min"),
        (json!({"code": null}), "/code", "regex"),
    ];
    for (patch, pointer, rule) in cases {
        let mut bad = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let Err(invalid) = check_output(&t, &bad) else {
            panic!("{bad} should break `{rule}` at {pointer}");
        };
        assert_eq!(invalid.places, [pointer], "{invalid:?}");
        assert!(
            invalid.problems.contains(&format!("`{pointer}`"))
                && invalid.problems.contains(&format!("`{rule}`")),
            "{invalid:?}"
        );
    }
    // A missing value breaks the rule too, and a long value is quoted capped.
    let Err(invalid) = check_output(&t, &json!({"code": "x".repeat(10_000)})) else {
        panic!("invalid");
    };
    assert!(invalid.problems.contains("`/text`: missing"), "{invalid:?}");
    assert!(invalid.problems.len() < 2_000, "{}", invalid.problems.len());
}

#[tokio::test]
async fn a_failed_judgement_is_retried_with_the_reason_as_feedback() {
    let judge = Scripted::new(
        "judge",
        vec![
            judged(false, 0.2, "the summary invents a date"),
            judged(true, 0.9, "faithful"),
        ],
    );
    let t = judged_topic(JUDGED, &judge);
    let writer = Scripted::new(
        "writer",
        vec![Ok(json!({"summary": "v1"})), Ok(json!({"summary": "v2"}))],
    );
    let mut ctx = ctx();
    ctx.request.variables.insert("text".into(), json!("source"));
    // The writer's prompt is the task's; the judge keeps its own rubric.
    ctx.request
        .properties
        .insert("pde.prompt".into(), "Summarize {{ text }}".into());
    let verdict = execute(&ctx, &t, &route(vec![writer.clone()])).await;
    assert_eq!(
        verdict,
        Verdict::Done {
            output: json!({"summary": "v2"}),
            endpoint: "writer".into(),
            usage: None,
            judge: Some(Box::new(Judgement {
                score: 0.9,
                reason: "faithful".into()
            })),
        }
    );
    let feedback = writer.feedback.lock().unwrap().clone();
    assert_eq!(feedback[0], None);
    assert!(
        feedback[1]
            .as_deref()
            .is_some_and(|f| f.contains("the summary invents a date")),
        "the judge's reason reaches the endpoint: {feedback:?}"
    );
    let seen = judge.seen.lock().unwrap().clone();
    assert_eq!(seen[0]["result"], json!({"summary": "v1"}));
    assert_eq!(seen[0]["text"], json!("source"), "the task's variables too");
    assert_eq!(seen[1]["result"], json!({"summary": "v2"}));
    assert_eq!(
        writer.properties.lock().unwrap()[0]
            .get("pde.prompt")
            .map(String::as_str),
        Some("Summarize {{ text }}")
    );
    assert!(
        judge
            .properties
            .lock()
            .unwrap()
            .iter()
            .all(BTreeMap::is_empty),
        "the task's `pde.*` properties (its prompt) do not reach the judge"
    );
}

#[tokio::test]
async fn a_judge_that_keeps_failing_falls_back_and_the_history_names_every_attempt() {
    let judge = Scripted::new(
        "judge",
        vec![
            judged(false, 0.1, "off topic"),
            judged(false, 0.3, "still off topic"),
            judged(true, 0.8, "good"),
        ],
    );
    let t = judged_topic(JUDGED, &judge);
    let first = Scripted::new("first", vec![Ok(json!({"a": 1})), Ok(json!({"a": 2}))]);
    let second = Scripted::new("second", vec![Ok(json!({"a": 3}))]);
    let verdict = execute(&ctx(), &t, &route(vec![first.clone(), second.clone()])).await;
    assert!(
        matches!(&verdict, Verdict::Done { endpoint, judge: Some(j), .. } if endpoint == "second" && j.score == 0.8),
        "{verdict:?}"
    );
    assert_eq!((first.calls(), second.calls()), (2, 1));

    // Everything judged bad: an output_invalid failure whose history holds each reason.
    let judge = Scripted::new(
        "judge",
        vec![
            judged(false, 0.1, "off topic"),
            judged(false, 0.2, "too short"),
        ],
    );
    let t = judged_topic(JUDGED, &judge);
    let only = Scripted::new("only", vec![Ok(json!({"a": 1})), Ok(json!({"a": 2}))]);
    let Verdict::Failed { error, chain } = execute(&ctx(), &t, &route(vec![only])).await else {
        panic!("expected failure");
    };
    assert_eq!(error.code.as_deref(), Some(class::OUTPUT_INVALID));
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert!(
        chain[0].contains("only (attempt 1)") && chain[0].contains("off topic"),
        "{chain:?}"
    );
    assert!(
        chain[1].contains("only (attempt 2)") && chain[1].contains("too short"),
        "{chain:?}"
    );
}

#[tokio::test]
async fn a_judge_that_errors_or_answers_malformed_json_is_a_transient_failure_naming_it() {
    for answer in [
        Err(EndpointError::permanent("exit 1: Traceback")),
        Ok(json!({"pass": "yes"})),
        Ok(json!({"pass": true, "score": 7, "reason": "x"})),
        Ok(json!("not an object")),
    ] {
        let judge = Scripted::new("judge", vec![answer.clone()]);
        let t = judged_topic(JUDGED, &judge);
        let only = Scripted::new("only", vec![Ok(json!({"a": 1}))]);
        let Verdict::Failed { error, chain } =
            execute(&ctx(), &t, &route(vec![only.clone()])).await
        else {
            panic!("expected failure for {answer:?}");
        };
        assert!(
            matches!(error.kind, ErrorKind::Transient { .. }),
            "{answer:?}: {error:?}"
        );
        assert_ne!(
            error.code.as_deref(),
            Some(class::OUTPUT_INVALID),
            "{error:?}"
        );
        assert!(error.message.contains("validator `judge`"), "{error:?}");
        assert_eq!(
            only.calls(),
            1,
            "a broken judge is not an invalid result to retry"
        );
        assert_eq!(chain.len(), 1, "{chain:?}");
    }
}

#[tokio::test]
async fn every_call_teaches_the_learner_valid_invalid_failed_and_the_judge_score() {
    let judge = Scripted::new(
        "judge",
        vec![judged(false, 0.2, "vague"), judged(true, 0.9, "good")],
    );
    let t = judged_topic(
        "{pool: p, endpoints: [], output: {attempts: 2, required: [label], validator: judge}}",
        &judge,
    );
    let failing = Scripted::new("failing", vec![Err(EndpointError::transient("503"))]);
    let model = Scripted::new(
        "model",
        vec![Ok(json!({"nope": 1})), Ok(json!({"label": "a"}))],
    );
    let second = Scripted::new("second", vec![Ok(json!({"label": "b"}))]);
    let verdict = execute_as(
        &ctx(),
        &t,
        &route(vec![failing.clone(), model.clone(), second.clone()]),
        "m",
    )
    .await;
    assert!(
        matches!(&verdict, Verdict::Done { endpoint, .. } if endpoint == "second"),
        "{verdict:?}"
    );
    let learned = |e: &str| {
        t.learner
            .get(&crate::learner::Key::new("t", e, "m"))
            .unwrap_or_default()
    };
    let failing = learned("failing");
    assert_eq!((failing.calls, failing.answered), (1, 0));
    // `model`: one answer failed the required keys, one was judged invalid (score 0.2).
    let model = learned("model");
    assert_eq!((model.calls, model.answered, model.passed), (2, 2, 0));
    assert!((model.mean_score().unwrap() - 0.2).abs() < 1e-9);
    let second = learned("second");
    assert_eq!((second.calls, second.passed), (1, 1));
    assert!((second.mean_score().unwrap() - 0.9).abs() < 1e-9);
    assert!(
        learned("judge").calls == 0,
        "the judge's own calls are not the topic's routes"
    );
}

#[tokio::test]
async fn a_cancelled_call_teaches_the_learner_nothing() {
    let t = topic(SCHEMA_TOPIC);
    let gone = Scripted::new("gone", vec![Err(EndpointError::cancelled())]);
    let verdict = execute_as(&ctx(), &t, &route(vec![gone]), "s").await;
    assert_eq!(verdict, Verdict::Cancelled);
    assert!(t.learner.snapshot().is_empty());
}

#[tokio::test]
async fn a_call_the_breaker_refused_teaches_the_learner_nothing() {
    // Refused at once without reaching the endpoint: neither a failure of the endpoint nor a
    // latency (a 0 ms "failure" would make a paused endpoint look fast to `latency`).
    let t = topic(SCHEMA_TOPIC);
    let paused = Scripted::new(
        "paused",
        vec![Err(EndpointError::fallback(
            "endpoint `paused` is paused (circuit open)",
        )
        .code(crate::endpoints::class::CIRCUIT_OPEN))],
    );
    let next = Scripted::new("next", vec![Ok(json!({"label": "a"}))]);
    let verdict = execute_as(&ctx(), &t, &route(vec![paused, next]), "s").await;
    assert!(
        matches!(&verdict, Verdict::Done { endpoint, .. } if endpoint == "next"),
        "{verdict:?}"
    );
    let learned: Vec<String> = t
        .learner
        .snapshot()
        .into_iter()
        .map(|(k, _)| k.endpoint)
        .collect();
    assert_eq!(learned, vec!["next".to_string()]);
}
