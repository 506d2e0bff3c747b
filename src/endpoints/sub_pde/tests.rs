//! The pure parts of a Meta-PDE: its config checks, dependencies and combining.

use serde_json::json;

use super::*;

fn config(yaml: &str) -> SubPdeConfig {
    serde_yaml::from_str(yaml).expect("parses")
}

#[test]
fn dependencies_come_from_needs_input_mentions_and_serial_order() {
    let c = config(
        r#"
steps:
  - { name: a, topic: t }
  - { name: b, topic: t, input: { x: "{{ steps.a.result }}", y: "{{ steps['c'].v }}" } }
  - { name: c, topic: t, needs: [a] }
  - { name: d, topic: t, input: { z: "{{ mysteps.a }}" } }
"#,
    );
    assert_eq!(
        c.dependencies(),
        vec![
            BTreeSet::new(),
            BTreeSet::from([0, 2]),
            BTreeSet::from([0]),
            BTreeSet::new(),
        ],
        "`mysteps.a` is not a mention of step a"
    );
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    let serial = config("{parallel: false, steps: [{name: a, topic: t}, {name: b, topic: t}]}");
    assert_eq!(serial.dependencies()[1], BTreeSet::from([0]));
}

#[test]
fn validation_names_duplicates_unknown_steps_cycles_and_depth() {
    let c = config(
        r#"
max_depth: 0
steps:
  - { name: a, topic: t, needs: [b] }
  - { name: b, topic: t, input: { x: "{{ steps.a.result }}" } }
  - { name: a, topic: t, needs: [ghost], input: { y: "{{ steps.phantom }}" } }
"#,
    );
    let problems = c.validate();
    let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "max_depth",
            "steps[2].name",
            "steps[2].needs[0]",
            "steps[2].input",
            "steps"
        ],
        "{problems:#?}"
    );
    assert!(problems[1].1.contains("`a` is used twice"));
    assert!(problems[4].1.contains("a → b → a"), "{problems:#?}");
    assert!(
        SubPdeEndpoint::new("m", &c).is_err(),
        "a broken config is not built"
    );
}

#[test]
fn unknown_keys_and_combine_modes_are_strict() {
    assert!(serde_yaml::from_str::<SubPdeConfig>("{steps: [], combine: zip}").is_err());
    assert!(serde_yaml::from_str::<SubPdeConfig>("{steps: [], paralel: true}").is_err());
    assert!(
        serde_yaml::from_str::<SubPdeConfig>("{steps: [{name: a, topic: t, inputs: {}}]}").is_err()
    );
    let c = config("{steps: [{name: a, topic: t}]}");
    assert!(c.parallel);
    assert_eq!(c.combine, Combine::ByName);
    assert_eq!(c.max_depth, 3);
}

fn endpoint(combine: &str) -> SubPdeEndpoint {
    let c = config(&format!(
        "{{combine: {combine}, steps: [{{name: a, topic: t}}, {{name: b, topic: t}}, {{name: c, topic: t}}]}}"
    ));
    SubPdeEndpoint::new("m", &c).expect("builds")
}

#[test]
fn combine_modes_shape_the_result() {
    let results = || vec![json!({"x": 1, "y": 1}), json!("text"), json!({"y": 2})];
    assert_eq!(
        endpoint("by_name").combine(results()),
        json!({"a": {"x": 1, "y": 1}, "b": "text", "c": {"y": 2}})
    );
    assert_eq!(
        endpoint("list").combine(results()),
        json!([{"x": 1, "y": 1}, "text", {"y": 2}])
    );
    assert_eq!(
        endpoint("merge").combine(results()),
        json!({"x": 1, "y": 2, "b": "text"}),
        "later steps win; a non-object result goes under its step's name"
    );
}

#[test]
fn text_results_are_exposed_under_result_for_later_steps() {
    let c = config(
        r#"{steps: [{name: a, topic: t}, {name: b, topic: t, input: {s: "{{ steps.a.result }}!", o: "{{ steps.c.k }}"}}, {name: c, topic: t}]}"#,
    );
    let ep = SubPdeEndpoint::new("m", &c).expect("builds");
    let vars = ep
        .input(
            1,
            &EndpointRequest::default(),
            &[Some(json!("hi")), None, Some(json!({"k": 5}))],
        )
        .expect("renders");
    assert_eq!(Value::Object(vars), json!({"s": "hi!", "o": 5}));
}

#[test]
fn step_errors_name_the_step_and_keep_kind_class_and_details() {
    let ep = endpoint("by_name");
    let e = ep.step_error(
        1,
        EndpointError::business("REJECTED", "no")
            .code("x")
            .details("d"),
    );
    assert_eq!(e.message, "step `b` (topic t) failed: no");
    assert_eq!(
        e.kind,
        ErrorKind::Business {
            error_code: "REJECTED".into()
        }
    );
    assert_eq!(
        (e.code.as_deref(), e.details.as_deref()),
        (Some("x"), Some("d"))
    );
    assert_eq!(
        ep.step_error(0, EndpointError::cancelled()),
        EndpointError::cancelled()
    );
}

#[test]
fn usage_is_summed() {
    let mut total = None;
    let u = |model: &str, cost| Usage {
        model: Some(model.into()),
        input_tokens: 10,
        output_tokens: 1,
        cost,
    };
    add_usage(&mut total, Some(u("m", Some(0.5))));
    add_usage(&mut total, None);
    add_usage(&mut total, Some(u("m", None)));
    let t = total.clone().expect("some");
    assert_eq!(
        (t.input_tokens, t.output_tokens, t.cost),
        (20, 2, Some(0.5))
    );
    assert_eq!(t.model.as_deref(), Some("m"));
    add_usage(&mut total, Some(u("other", None)));
    assert_eq!(total.expect("some").model, None);
}

#[test]
fn a_step_input_that_hides_its_dependency_is_rejected() {
    let config: SubPdeConfig = serde_yaml::from_str(
        r#"
steps:
  - { name: a, topic: t }
  - { name: b, topic: t, input: { x: "{{ steps.a.result }}", y: "{{ steps['a'] }}" } }
  - { name: c, topic: t, input: { x: "{% set s = steps %}{{ s.a }}" } }
"#,
    )
    .expect("parses");
    let problems = config.validate();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "steps[2].input");
    assert!(problems[0].1.contains("steps.<name>"), "{problems:?}");
}

#[tokio::test]
async fn the_probe_fails_when_a_step_has_no_endpoint_with_a_usable_circuit() {
    use crate::endpoints::health::BreakerState;
    use crate::endpoints::{BuildContext, Endpoint};
    let topics = [
        (
            "classify".to_string(),
            vec!["gpt".to_string(), "llama".to_string()],
        ),
        ("store".to_string(), vec!["crm".to_string()]),
    ];
    let cx = BuildContext::default().with_topics(topics.into_iter().collect());
    let c = config("{steps: [{name: a, topic: classify}, {name: b, topic: store}]}");
    let ep = SubPdeEndpoint::with_context("meta", &c, &cx).unwrap();
    ep.probe().await.unwrap();

    let open = |name: &str, retry_at: f64| {
        cx.health().update(name, |h| {
            h.breaker = BreakerState::Open;
            h.retry_at = Some(retry_at);
        })
    };
    let later = crate::endpoints::health::now_secs() + 600.0;
    open("gpt", later);
    ep.probe().await.unwrap();
    open("llama", later);
    let err = ep.probe().await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("circuit_open"));
    assert!(err.message.contains("step `a` (topic `classify`)"), "{err}");
    assert!(err.message.contains("gpt, llama"), "{err}");
    // An open circuit whose cooldown is over takes a trial call: usable.
    open("llama", 1.0);
    ep.probe().await.unwrap();
}
