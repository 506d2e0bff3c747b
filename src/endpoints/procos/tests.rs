use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::endpoints::health::BreakerState;
use crate::learner::{CallOutcome, Key, Learner, Sample};

const T0: f64 = 1_000_000.0;

/// A context whose config lists `orders` and `mail` for topic `orders`, with a learner.
fn context(learner: &Arc<Learner>) -> BuildContext {
    BuildContext::default()
        .with_topics(BTreeMap::from([
            ("orders".to_string(), vec!["orders".to_string()]),
            ("procos_health".to_string(), vec!["procos".to_string()]),
        ]))
        .with_learner(learner.clone())
}

fn endpoint(cx: &BuildContext, config: &ProcosConfig) -> ProcosEndpoint {
    ProcosEndpoint::with_context("procos", config, cx)
}

fn open_breaker(cx: &BuildContext, name: &str, error: &str) {
    cx.health().update(name, |h| {
        h.breaker = BreakerState::Open;
        h.since = T0;
        h.last_error = Some(error.to_string());
        h.retry_at = Some(T0 + 30.0);
    });
}

/// `n` calls of `endpoint` on `topic`, every other one failing.
fn half_failing(l: &Learner, topic: &str, endpoint: &str, n: usize) {
    let key = Key::new(topic, endpoint, "s");
    for i in 0..n {
        let outcome = if i % 2 == 0 {
            CallOutcome::Failed
        } else {
            CallOutcome::Valid
        };
        let sample = Sample {
            outcome,
            latency_ms: 40.0,
            judge_score: None,
            cost: None,
            tokens: None,
        };
        l.observe_at(&key, &sample, T0 + i as f64);
        l.routed(&key);
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn all_fine_raises_no_alert() {
    let learner = Arc::new(Learner::default());
    let cx = context(&learner);
    let ep = endpoint(&cx, &ProcosConfig::default());
    let out = ep.answer(T0);
    assert_eq!(out["alert"], json!(false), "{out:#}");
    assert_eq!(out["unhealthy"], json!([]));
    assert_eq!(out["suggestions"], json!([]));
    assert_eq!(out["endpoints"]["orders"]["state"], "closed");
    assert_eq!(out["endpoints"]["orders"]["healthy"], json!(true));
    assert!(
        out["summary"]
            .as_str()
            .unwrap()
            .starts_with("procos is healthy"),
        "{out:#}"
    );
    assert_eq!(
        out["notify_by_email"],
        json!(false),
        "no alert topic configured"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_raises_one_alert_naming_the_endpoint_then_its_recovery() {
    let learner = Arc::new(Learner::default());
    let cx = context(&learner);
    let ep = endpoint(&cx, &ProcosConfig::default());
    open_breaker(&cx, "orders", "connect: connection refused");

    let out = ep.answer(T0 + 1.0);
    assert_eq!(out["alert"], json!(true), "{out:#}");
    assert_eq!(out["unhealthy"], json!(["orders"]));
    assert_eq!(out["endpoints"]["orders"]["state"], "open");
    assert_eq!(out["endpoints"]["orders"]["healthy"], json!(false));
    assert_eq!(
        out["endpoints"]["orders"]["last_error"],
        "connect: connection refused"
    );
    let summary = out["summary"].as_str().unwrap();
    assert!(
        summary.contains("`orders`") && summary.contains("connection refused"),
        "{summary}"
    );
    assert_eq!(strings(&out["new_problems"]).len(), 1);

    // The same problem a minute later: reported, but not raised again.
    tokio::time::advance(Duration::from_secs(60)).await;
    let again = ep.answer(T0 + 61.0);
    assert_eq!(again["alert"], json!(false), "{again:#}");
    assert_eq!(again["unhealthy"], json!(["orders"]));
    assert_eq!(again["new_problems"], json!([]));

    // It recovers: listed once as resolved; when it breaks again, it is raised again.
    cx.health()
        .update("orders", |h| h.breaker = BreakerState::Closed);
    let fine = ep.answer(T0 + 121.0);
    assert_eq!(fine["alert"], json!(false));
    let resolved = strings(&fine["resolved"]);
    assert!(
        resolved.len() == 1 && resolved[0].contains("`orders`"),
        "{resolved:?}"
    );
    open_breaker(&cx, "orders", "timeout");
    assert_eq!(ep.answer(T0 + 181.0)["alert"], json!(true));
}

#[tokio::test(start_paused = true)]
async fn a_failing_probe_is_unhealthy_even_with_a_closed_breaker() {
    let learner = Arc::new(Learner::default());
    let cx = context(&learner);
    let ep = endpoint(&cx, &ProcosConfig::default());
    cx.health()
        .update("orders", |h| h.last_probe = Some((T0, false)));
    let out = ep.answer(T0);
    assert_eq!(out["alert"], json!(true), "{out:#}");
    assert_eq!(out["unhealthy"], json!(["orders"]));
    assert_eq!(
        out["endpoints"]["orders"]["last_probe"]["passed"],
        json!(false)
    );
}

#[tokio::test(start_paused = true)]
async fn a_suggestion_raises_an_alert() {
    let learner = Arc::new(Learner::default());
    half_failing(&learner, "orders", "orders", 40);
    let cx = context(&learner);
    let ep = endpoint(&cx, &ProcosConfig::default());
    let out = ep.answer(T0 + 40.0);
    assert_eq!(out["alert"], json!(true), "{out:#}");
    assert_eq!(out["unhealthy"], json!([]), "its breaker is closed");
    let s = &out["suggestions"][0];
    assert_eq!(s["kind"], "failing");
    assert_eq!(
        (s["topic"].as_str(), s["endpoint"].as_str()),
        (Some("orders"), Some("orders"))
    );
    assert!(s["text"].as_str().unwrap().contains("has failed"), "{s}");
    // The routing figures as `procos stats` computes them.
    let figures = &out["topics"]["orders"]["endpoints"]["orders"];
    assert_eq!(figures["calls"], json!(40));
    assert_eq!(figures["routing_share"], json!(1.0));
    assert!(
        (figures["success_rate"].as_f64().unwrap() - 0.5).abs() < 0.05,
        "{figures}"
    );
}

#[tokio::test(start_paused = true)]
async fn report_health_leaves_suggestions_and_stats_out() {
    let learner = Arc::new(Learner::default());
    half_failing(&learner, "orders", "orders", 40);
    let cx = context(&learner);
    let config = ProcosConfig {
        report: ReportKind::Health,
        ..ProcosConfig::default()
    };
    let out = endpoint(&cx, &config).answer(T0 + 40.0);
    assert_eq!(out["alert"], json!(false), "{out:#}");
    assert!(out.get("suggestions").is_none() && out.get("topics").is_none());
    assert!(out.get("endpoints").is_some());
}

#[tokio::test(start_paused = true)]
async fn remind_after_raises_a_standing_problem_again() {
    let learner = Arc::new(Learner::default());
    let cx = context(&learner);
    let config = ProcosConfig {
        remind_after: Some(Duration::from_secs(3600)),
        ..ProcosConfig::default()
    };
    let ep = endpoint(&cx, &config);
    open_breaker(&cx, "orders", "timeout");
    assert_eq!(ep.answer(T0)["alert"], json!(true));
    tokio::time::advance(Duration::from_secs(3599)).await;
    assert_eq!(ep.answer(T0)["alert"], json!(false), "not yet an hour");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(ep.answer(T0)["alert"], json!(true), "an hour on");
}

#[tokio::test(start_paused = true)]
async fn a_secret_in_a_breaker_error_never_reaches_the_output() {
    crate::config::secret::register("sk-procos-endpoint-secret-42");
    let learner = Arc::new(Learner::default());
    let cx = context(&learner);
    let ep = endpoint(&cx, &ProcosConfig::default());
    open_breaker(&cx, "orders", "401 for key sk-procos-endpoint-secret-42");
    let text = ep.answer(T0).to_string();
    assert!(!text.contains("sk-procos-endpoint-secret-42"), "{text}");
    assert!(text.contains("401 for key ***"), "{text}");
}

#[tokio::test]
async fn an_alert_topic_with_an_endpoint_means_email() {
    let cx = BuildContext::default().with_topics(BTreeMap::from([(
        DEFAULT_EMAIL_TOPIC.to_string(),
        vec!["mail".to_string()],
    )]));
    let ep = endpoint(&cx, &ProcosConfig::default());
    assert_eq!(ep.answer(T0)["notify_by_email"], json!(true));
    let other = ProcosConfig {
        email_topic: "elsewhere".into(),
        ..ProcosConfig::default()
    };
    assert_eq!(
        endpoint(&cx, &other).answer(T0)["notify_by_email"],
        json!(false)
    );
}

#[test]
fn the_config_is_strict_and_validated() {
    let err =
        serde_yaml::from_str::<crate::endpoints::EndpointConfig>("{type: procos, reprot: all}")
            .unwrap_err();
    assert!(err.to_string().contains("reprot"), "{err}");
    let c: ProcosConfig = serde_yaml::from_str("{remind_after: 0s, email_topic: ''}").unwrap();
    let paths: Vec<String> = c.validate().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["email_topic", "remind_after"]);
    let c: ProcosConfig = serde_yaml::from_str("{report: suggestions, remind_after: 1h}").unwrap();
    assert!(c.validate().is_empty());
    assert_eq!(c.report, ReportKind::Suggestions);
}
