use std::time::Duration;

use super::suggest::fraction;
use super::*;
use crate::learner::{CallOutcome, Sample};

const T0: f64 = 1_000_000.0;

fn sample(outcome: CallOutcome, latency_ms: f64, cost: Option<f64>) -> Sample {
    Sample {
        outcome,
        latency_ms,
        judge_score: None,
        cost,
        tokens: None,
    }
}

/// `n` calls of `endpoint` on `topic`, every `fail_every`-th failing (0: none), all routed.
fn calls(
    l: &Learner,
    topic: &str,
    endpoint: &str,
    n: usize,
    fail_every: usize,
    ms: f64,
    cost: f64,
) {
    let key = Key::new(topic, endpoint, "s");
    for i in 0..n {
        let outcome = if fail_every > 0 && i % fail_every == 0 {
            CallOutcome::Failed
        } else {
            CallOutcome::Valid
        };
        l.observe_at(&key, &sample(outcome, ms, Some(cost)), T0 + i as f64);
        l.routed(&key);
    }
}

fn listed(topic: &str, endpoints: &[&str]) -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([(
        topic.to_string(),
        endpoints.iter().map(|e| e.to_string()).collect(),
    )])
}

fn kinds(r: &Report) -> Vec<(SuggestionKind, &str)> {
    r.suggestions
        .iter()
        .map(|s| (s.kind, s.endpoint.as_str()))
        .collect()
}

#[test]
fn an_equally_good_endpoint_at_a_twentieth_of_the_cost_is_suggested() {
    let l = Learner::default();
    calls(&l, "classify_ticket", "openai", 300, 0, 1400.0, 0.002);
    calls(&l, "classify_ticket", "ollama", 100, 0, 1300.0, 0.0001);
    let r = build(
        &l,
        &[],
        &listed("classify_ticket", &["openai", "ollama"]),
        T0 + 300.0,
    );
    let s = r
        .suggestions
        .iter()
        .find(|s| s.kind == SuggestionKind::Cheaper)
        .unwrap_or_else(|| panic!("no cheaper suggestion in {:?}", r.suggestions));
    assert_eq!(s.endpoint, "ollama");
    assert!(
        s.message
            .contains("`ollama` serves `classify_ticket` at equal pass rate for 1/20th of the cost of `openai` (0.0001 vs 0.002 per call): 100.0% vs 100.0% of calls valid; `openai` gets 75.0% of its tasks"),
        "{}",
        s.message
    );
    assert!(
        (s.figures["incumbent_mean_cost"] - 0.002).abs() < 1e-12,
        "{:?}",
        s.figures
    );
}

#[test]
fn a_worse_cheaper_endpoint_is_not_suggested() {
    let l = Learner::default();
    calls(&l, "t", "good", 300, 0, 100.0, 0.002);
    calls(&l, "t", "cheap", 100, 10, 100.0, 0.0001);
    let r = build(&l, &[], &listed("t", &["good", "cheap"]), T0 + 300.0);
    assert!(
        !kinds(&r).iter().any(|(k, _)| *k == SuggestionKind::Cheaper),
        "{:?}",
        r.suggestions
    );
}

#[test]
fn a_failing_endpoint_is_reported_with_its_rate_and_span() {
    let l = Learner::new(Duration::from_secs(3 * 3600), Default::default());
    let key = Key::new("t", "http_b", "s");
    // 100 calls over two hours, 38 failing.
    for i in 0..100 {
        let outcome = if i % 50 < 19 {
            CallOutcome::Failed
        } else {
            CallOutcome::Valid
        };
        l.observe_at(&key, &sample(outcome, 50.0, None), T0 + i as f64 * 72.0);
    }
    let r = build(&l, &[], &listed("t", &["http_b"]), T0 + 99.0 * 72.0);
    let s = r
        .suggestions
        .iter()
        .find(|s| s.kind == SuggestionKind::Failing)
        .unwrap_or_else(|| panic!("no failing suggestion in {:?}", r.suggestions));
    assert!(
        s.message.starts_with("`http_b` has failed 3"),
        "{}",
        s.message
    );
    assert!(s.message.contains("for 2 h (100 calls"), "{}", s.message);
    assert!(
        (0.35..0.41).contains(&s.figures["failure_rate"]),
        "{:?}",
        s.figures
    );
}

#[test]
fn three_calls_suggest_nothing() {
    let l = Learner::default();
    calls(&l, "t", "a", 3, 1, 5000.0, 0.01);
    calls(&l, "t", "b", 3, 0, 10.0, 0.0001);
    let r = build(&l, &[], &listed("t", &["a", "b"]), T0 + 3.0);
    assert!(r.suggestions.is_empty(), "{:?}", r.suggestions);
    assert_eq!(r.topics[0].endpoints[0].figures.calls, 3);
}

#[test]
fn a_much_slower_endpoint_at_equal_quality_is_reported() {
    let l = Learner::default();
    calls(&l, "t", "slow", 50, 0, 3000.0, 0.001);
    calls(&l, "t", "fast", 50, 0, 200.0, 0.001);
    let r = build(&l, &[], &listed("t", &["slow", "fast"]), T0 + 50.0);
    let s = r
        .suggestions
        .iter()
        .find(|s| s.kind == SuggestionKind::Slower)
        .unwrap_or_else(|| panic!("no slower suggestion in {:?}", r.suggestions));
    assert_eq!(s.endpoint, "slow");
    assert!(
        s.message.contains("slower at p95 than `fast`"),
        "{}",
        s.message
    );
    assert!(s.figures["latency_p95_ms"] >= 3000.0, "{:?}", s.figures);
}

#[test]
fn a_listed_endpoint_never_chosen_is_reported_and_shares_add_up() {
    let l = Learner::default();
    calls(&l, "t", "a", 30, 0, 100.0, 0.001);
    calls(&l, "t", "b", 10, 0, 100.0, 0.001);
    let r = build(&l, &[], &listed("t", &["a", "b", "spare"]), T0 + 30.0);
    assert!(
        kinds(&r).contains(&(SuggestionKind::NeverChosen, "spare")),
        "{:?}",
        r.suggestions
    );
    let rows = &r.topics[0].endpoints;
    let names: Vec<&str> = rows.iter().map(|r| r.endpoint.as_str()).collect();
    assert_eq!(names, ["a", "b", "spare"], "config order");
    assert_eq!(rows[0].routing_share, Some(0.75));
    assert_eq!(rows[1].routing_share, Some(0.25));
    assert_eq!(rows[2].routing_share, Some(0.0));
}

#[test]
fn classes_are_summed_per_endpoint_and_kept_apart_in_the_breakdown() {
    let l = Learner::default();
    for (class, n, ms) in [("s", 30, 10.0), ("l", 10, 1000.0)] {
        let key = Key::new("t", "a", class);
        for i in 0..n {
            l.observe_at(&key, &sample(CallOutcome::Valid, ms, None), T0 + i as f64);
        }
    }
    let health = vec![(
        "a".to_string(),
        EndpointHealth {
            breaker: BreakerState::HalfOpen,
            since: T0,
            ..Default::default()
        },
    )];
    let r = build(&l, &health, &listed("t", &["a"]), T0 + 30.0);
    let row = &r.topics[0].endpoints[0];
    assert_eq!(row.figures.calls, 40);
    assert_eq!(row.classes["s"].calls, 30);
    assert_eq!(row.classes["l"].calls, 10);
    let p50 = row.figures.latency_p50_ms.expect("p50");
    let p95 = row.figures.latency_p95_ms.expect("p95");
    assert!(p50 < 20.0 && p95 >= 1000.0, "p50 {p50} p95 {p95}");
    assert_eq!(row.breaker, Some(BreakerState::HalfOpen));
}

#[test]
fn the_table_shows_each_endpoint_figures_and_the_suggestions() {
    let l = Learner::default();
    calls(&l, "classify_ticket", "openai", 300, 0, 1400.0, 0.002);
    calls(&l, "classify_ticket", "ollama", 100, 0, 180.0, 0.0001);
    let r = build(
        &l,
        &[],
        &listed("classify_ticket", &["openai", "ollama"]),
        T0 + 300.0,
    );
    let text = render_table(&r, "state/journal.redb", T0 + 360.0);
    assert!(
        text.contains("classify_ticket  (400 tasks routed)"),
        "{text}"
    );
    let openai = text
        .lines()
        .find(|l| l.trim_start().starts_with("openai"))
        .unwrap_or_else(|| panic!("no openai row in {text}"));
    for cell in ["300", "100.0%", "0.002", "75.0%", "1.4 s"] {
        assert!(openai.contains(cell), "{cell} missing in {openai}");
    }
    assert!(text.contains("(60 s ago)"), "{text}");
    assert!(text.contains("Suggestions\n  - `ollama` serves"), "{text}");
}

#[test]
fn figures_read_like_people_write_them() {
    assert_eq!(cost(0.0001), "0.0001");
    assert_eq!(cost(0.00123456), "0.001235");
    assert_eq!(cost(0.25), "0.25");
    assert_eq!(fraction(0.0001, 0.002), "1/20th");
    assert_eq!(fraction(0.001, 0.0021), "half");
    assert_eq!(fraction(0.01, 0.22), "1/22nd");
    assert_eq!(millis(181.0), "181 ms");
    assert_eq!(millis(1414.2), "1.4 s");
    assert_eq!(duration(7200.0), "2 h");
}

#[test]
fn the_same_figures_are_exported_as_gauges() {
    let l = Learner::default();
    calls(&l, "t", "a", 30, 10, 100.0, 0.5);
    calls(&l, "t", "b", 10, 0, 100.0, 0.25);
    let r = build(&l, &[], &listed("t", &["a", "b"]), T0 + 30.0);
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        crate::telemetry::metrics::learner_figures(&r);
    });
    let text = handle.render();
    let success = r.topics[0].endpoints[0].figures.success_rate.expect("rate");
    assert!((success - 0.9).abs() < 0.01, "{success}");
    for line in [
        format!(r#"procos_learner_success_rate{{topic="t",endpoint="a"}} {success}"#),
        r#"procos_learner_routing_share{topic="t",endpoint="a"} 0.75"#.to_string(),
        r#"procos_learner_mean_cost{topic="t",endpoint="b"} 0.25"#.to_string(),
    ] {
        assert!(text.contains(&line), "missing {line} in:\n{text}");
    }
    assert!(text.contains("procos_learner_latency_p95_seconds{topic=\"t\",endpoint=\"a\"}"));
}

#[test]
fn a_free_equal_endpoint_is_suggested_at_no_cost() {
    let l = Learner::default();
    calls(&l, "t", "paid", 60, 0, 100.0, 0.01);
    calls(&l, "t", "local", 30, 0, 100.0, 0.0);
    let r = build(&l, &[], &listed("t", &["paid", "local"]), T0 + 60.0);
    let s = r
        .suggestions
        .iter()
        .find(|s| s.kind == SuggestionKind::Cheaper)
        .unwrap_or_else(|| panic!("no cheaper suggestion in {:?}", r.suggestions));
    assert!(
        s.message.contains(
            "`local` serves `t` at equal pass rate at no cost, where `paid` costs 0.01 per call"
        ),
        "{}",
        s.message
    );
}

#[test]
fn an_endpoint_whose_answers_often_fail_validation_is_reported() {
    let l = Learner::default();
    let key = Key::new("t", "sloppy", "s");
    for i in 0..40 {
        let outcome = if i % 4 == 0 {
            CallOutcome::Invalid
        } else {
            CallOutcome::Valid
        };
        l.observe_at(&key, &sample(outcome, 10.0, None), T0 + i as f64);
    }
    let r = build(&l, &[], &listed("t", &["sloppy"]), T0 + 40.0);
    assert_eq!(kinds(&r), [(SuggestionKind::Invalid, "sloppy")]);
    assert!(
        r.suggestions[0]
            .message
            .starts_with("25.0% of `sloppy`'s answers on `t` fail validation (40 answers)"),
        "{}",
        r.suggestions[0].message
    );
}

#[test]
fn an_even_split_still_suggests_the_cheaper_endpoint() {
    let l = Learner::default();
    calls(&l, "t", "openai", 100, 0, 1400.0, 0.002);
    calls(&l, "t", "ollama", 100, 0, 180.0, 0.0001);
    let r = build(&l, &[], &listed("t", &["openai", "ollama"]), T0 + 100.0);
    assert!(
        kinds(&r).contains(&(SuggestionKind::Cheaper, "ollama")),
        "{:?}",
        r.suggestions
    );
}

#[test]
fn last_seen_is_the_endpoint_s_last_call_and_a_failure_span_ends_there() {
    // `old` failed 35% of 200 calls in its first 100 s, then was not called for an hour while
    // `new` served: its row must say when it was last called, and "for 1 min 39 s", not 1 h.
    let l = Learner::default();
    calls(&l, "t", "old", 100, 5, 100.0, 0.0);
    calls(&l, "t", "old", 100, 2, 100.0, 0.0);
    let key = Key::new("t", "new", "s");
    l.observe_at(&key, &sample(CallOutcome::Valid, 100.0, None), T0 + 3600.0);
    let r = build(&l, &[], &listed("t", &["old", "new"]), T0 + 3600.0);
    let old = r.topics[0]
        .endpoints
        .iter()
        .find(|e| e.endpoint == "old")
        .expect("old's row");
    assert_eq!(old.figures.last_seen, T0 + 99.0);
    let failing = r
        .suggestions
        .iter()
        .find(|s| s.kind == SuggestionKind::Failing && s.endpoint == "old")
        .unwrap_or_else(|| panic!("no failing suggestion in {:?}", r.suggestions));
    assert_eq!(failing.figures["for_seconds"], 99.0, "{}", failing.message);
}
