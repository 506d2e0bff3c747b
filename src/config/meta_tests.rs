//! Meta-PDE checks over whole configs.

use std::path::Path;

use crate::config::load_str;

/// Problems of a config that differs from a good one by `edit`, as `path: message` lines.
fn problems(edit: impl Fn(String) -> String) -> Vec<String> {
    let yaml = edit(
        r#"
camunda: {}
pde_manager:
  pools:
    meta: { endpoints: [claim], max_concurrent_tasks: 2 }
    ai: { endpoints: [echo], max_concurrent_tasks: 1 }
    gp: { endpoints: [echo], max_concurrent_tasks: 4 }
topics:
  analyse: { pool: meta, endpoints: [claim] }
  summarise: { pool: ai, endpoints: [echo] }
  extract: { pool: gp, endpoints: [echo] }
endpoints:
  echo: { type: noop }
  claim:
    type: sub_pde
    steps:
      - { name: analysis, topic: summarise }
      - { name: figures, topic: extract }
"#
        .to_string(),
    );
    match load_str(&yaml, Path::new("t.yaml"), &|_| None) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn a_meta_pde_over_other_pools_is_valid() {
    assert_eq!(problems(|y| y), Vec::<String>::new());
}

#[test]
fn an_unknown_step_topic_is_named() {
    let ps = problems(|y| y.replace("topic: extract", "topic: extrakt"));
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert!(
        ps[0].starts_with("endpoints.claim.steps[1].topic: step `figures` runs on topic `extrakt`, which does not exist"),
        "{ps:#?}"
    );
}

#[test]
fn duplicate_step_names_are_rejected() {
    let ps = problems(|y| y.replace("name: figures", "name: analysis"));
    assert_eq!(
        ps,
        vec!["endpoints.claim.steps[1].name: step name `analysis` is used twice"]
    );
}

#[test]
fn a_step_leading_back_to_its_meta_pde_is_a_cycle() {
    // summarise → claim: claim's step runs summarise, whose endpoint is claim again.
    let ps = problems(|y| {
        y.replace(
            "summarise: { pool: ai, endpoints: [echo] }",
            "summarise: { pool: ai, endpoints: [claim] }",
        )
        .replace("ai: { endpoints: [echo]", "ai: { endpoints: [claim]")
    });
    assert!(
        ps.contains(
            &"endpoints.claim.steps[0].topic: a step leads back to this Meta-PDE: claim → topic summarise → endpoint claim"
                .to_string()
        ),
        "{ps:#?}"
    );
}

#[test]
fn nesting_beyond_max_depth_is_rejected() {
    // claim → step on topic outer (endpoint inner, a Meta-PDE) → its step on extract: depth 2.
    let nested = |max_depth: u32| {
        move |y: String| {
            y.replace("claim:\n    type: sub_pde\n", &format!("claim:\n    type: sub_pde\n    max_depth: {max_depth}\n"))
                .replace("topic: summarise }", "topic: outer }")
                .replace(
                    "topics:\n",
                    "topics:\n  outer: { pool: ai, endpoints: [inner] }\n",
                )
                .replace("ai: { endpoints: [echo]", "ai: { endpoints: [echo, inner]")
                .replace(
                    "endpoints:\n  echo: { type: noop }\n",
                    "endpoints:\n  echo: { type: noop }\n  inner: { type: sub_pde, steps: [{ name: x, topic: extract }] }\n",
                )
        }
    };
    assert_eq!(problems(nested(2)), Vec::<String>::new());
    let ps = problems(nested(1));
    assert_eq!(
        ps,
        vec![
            "endpoints.claim.max_depth: Meta-PDEs nest 2 deep under `claim` (through its step topics), beyond its max_depth 1"
        ]
    );
}

#[test]
fn a_step_topic_on_the_waiting_pool_would_deadlock() {
    let ps = problems(|y| {
        y.replace("extract: { pool: gp", "extract: { pool: meta")
            .replace(
                "meta: { endpoints: [claim]",
                "meta: { endpoints: [claim, echo]",
            )
    });
    assert_eq!(
        ps,
        vec![
            "endpoints.claim.steps[1].topic: step topic `extract` runs on pool `meta`, the same pool as topic `analyse` that waits for it: a full pool would deadlock; put sub-task topics on other pools"
        ]
    );
}

#[test]
fn pools_waiting_for_each_other_would_deadlock() {
    // analyse (meta) waits for ai; a topic on ai uses a Meta-PDE with a step on meta.
    let ps = problems(|y| {
        y.replace(
            "topics:\n",
            "topics:\n  back: { pool: ai, endpoints: [loop] }\n  home: { pool: meta, endpoints: [claim] }\n",
        )
        .replace("ai: { endpoints: [echo]", "ai: { endpoints: [echo, loop]")
        .replace(
            "endpoints:\n  echo: { type: noop }\n",
            "endpoints:\n  echo: { type: noop }\n  loop: { type: sub_pde, steps: [{ name: x, topic: home }] }\n",
        )
    });
    assert!(
        ps.iter()
            .any(|p| p.contains("pool ai → pool meta → pool ai")),
        "{ps:#?}"
    );
}

#[test]
fn a_step_topic_with_a_typo_inside_is_reported_once_at_the_topic() {
    let ps = problems(|y| {
        y.replace(
            "summarise: { pool: ai, endpoints: [echo] }",
            "summarise: { pool: ai, endpoints: [echo], retires: 3 }",
        )
    });
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert!(ps[0].starts_with("topics.summarise.retires"), "{ps:#?}");
}
