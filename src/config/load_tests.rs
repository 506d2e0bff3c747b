//! Tests of the whole load path: text → interpolation → strict parse → validation.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::file::AuthConfig;

/// A realistic file using every section.
const FULL: &str = r#"
camunda:
  url: ${CAMUNDA_URL:-http://localhost:8080/engine-rest}
  auth:
    type: bearer
    token: ${CAMUNDA_TOKEN}
  worker_id: procos-test
  lock_duration: 30s
  long_poll: 20s
  max_tasks: ${MAX_TASKS:-50}
  request_timeout: 500ms
  backoff:
    initial: 250ms
    max: 1m
    multiplier: 1.5

deploy:
  dir: bpmn
  watch: false
  deployment_name: procos-${ENVIRONMENT:-dev}

pde_manager:
  shutdown_grace: 45s
  pools:
    default:
      instances: 2
      max_concurrent_tasks: 20
      endpoints: [echo, crm, score]
    slow:
      max_concurrent_tasks: 4
      endpoints: [crm]

topics:
  http_request:
    pool: default
    endpoints: [crm, echo]
    retries: 5
    retry_timeout: 1m
    variables: [customerId]
    input:
      required: [customerId]
      types: { customerId: string }
    output:
      variable: crmResult
      mapping: { status: /status, whole: "" }
      required: [status, /data/id]
      schema:
        type: object
        required: [status]
        properties: { status: { type: string } }
      attempts: 2
    bpmn_errors: { http_404: CUSTOMER_NOT_FOUND }
  risk_score:
    pool: default
    endpoints: [score]
    lock_duration: 2m
  slow_crm:
    pool: slow
    endpoints: [crm]

endpoints:
  echo:
    type: noop
    delay: 500ms
  crm:
    type: http
  score:
    type: python
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "CAMUNDA_TOKEN" => Some("tok-SECRET-abc123".to_string()),
        "ENVIRONMENT" => Some("prod".to_string()),
        "SECRET_KEY" => Some("sk-live-SUPERSECRET".to_string()),
        _ => None,
    }
}

fn load(yaml: &str) -> Result<FileConfig, ConfigError> {
    load_str(yaml, Path::new("pde.yaml"), &env)
}

fn problems(yaml: &str) -> Vec<Problem> {
    match load(yaml) {
        Ok(_) => panic!("expected problems"),
        Err(e) => {
            assert_eq!(e.file, Path::new("pde.yaml"));
            assert!(!e.problems.is_empty());
            e.problems
        }
    }
}

/// `FULL` with `from` replaced by `to` (which must occur exactly once).
fn full_with(from: &str, to: &str) -> String {
    assert_eq!(FULL.matches(from).count(), 1, "{from}");
    FULL.replace(from, to)
}

fn paths(ps: &[Problem]) -> Vec<&str> {
    ps.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn a_full_realistic_config_loads_with_its_values() {
    let c = load(FULL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.camunda.url, "http://localhost:8080/engine-rest");
    assert_eq!(
        c.camunda.max_tasks, 50,
        "a number default coerces to a number"
    );
    assert_eq!(c.camunda.request_timeout, Duration::from_millis(500));
    assert_eq!(c.camunda.lock_duration, Duration::from_secs(30));
    assert!(
        matches!(&c.camunda.auth, Some(AuthConfig::Bearer { token }) if token.expose() == "tok-SECRET-abc123")
    );
    assert_eq!(c.deploy.deployment_name, "procos-prod");
    assert!(!c.deploy.watch);
    assert_eq!(c.pde_manager.shutdown_grace, Duration::from_secs(45));
    assert_eq!(c.pde_manager.pools["default"].instances, 2);
    assert_eq!(
        c.pde_manager.pools["slow"].instances, 1,
        "default instances"
    );
    let t = &c.topics["http_request"];
    assert_eq!(t.endpoints, ["crm", "echo"]);
    assert_eq!(t.retries, 5);
    assert_eq!(t.output.attempts, 2);
    assert_eq!(t.output.mapping["whole"], "");
    assert_eq!(
        c.topics["risk_score"].lock_duration,
        Some(Duration::from_secs(120))
    );
    assert_eq!(c.topics["risk_score"].retries, 3, "default retries");
    assert!(matches!(
        &c.endpoints["echo"],
        crate::endpoints::EndpointConfig::Noop(n) if n.delay == Some(Duration::from_millis(500))
    ));
    assert_eq!(c.endpoints["crm"].kind(), "http");
    assert_eq!(c.endpoints["score"].kind(), "python");
}

#[test]
fn a_secret_from_the_environment_is_not_in_debug_output() {
    let c = load(FULL).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("tok-SECRET-abc123"), "{debug}");
    assert!(debug.contains("***"));
}

#[test]
fn a_typo_deep_in_the_file_names_its_full_path() {
    let ps = problems(&full_with("    retries: 5\n", "    retires: 5\n"));
    assert_eq!(paths(&ps), ["topics.http_request.retires"]);
    assert!(
        ps[0]
            .message
            .starts_with("unknown field `retires`, expected one of"),
        "{}",
        ps[0].message
    );
    assert!(ps[0].message.contains("`retries`"));

    let ps = problems(&full_with("      attempts: 2\n", "      atempts: 2\n"));
    assert_eq!(paths(&ps), ["topics.http_request.output.atempts"]);

    let ps = problems(&full_with("customerId: string }", "customerId: strin }"));
    assert_eq!(paths(&ps), ["topics.http_request.input.types.customerId"]);
    assert!(
        ps[0].message.contains("unknown variant `strin`"),
        "{}",
        ps[0].message
    );
}

#[test]
fn typos_in_different_sections_are_all_reported() {
    let yaml = full_with("  long_poll: 20s\n", "  long_pol: 20s\n")
        .replace("    delay: 500ms\n", "    dealy: 500ms\n")
        .replace(
            "      max_concurrent_tasks: 4\n",
            "      max_concurent_tasks: 4\n",
        )
        .replace("deploy:\n", "deploy:\n  wacth: true\n")
        + "extra: 1\n";
    let ps = problems(&yaml);
    let mut got = paths(&ps);
    got.sort();
    assert_eq!(
        got,
        [
            "camunda.long_pol",
            "deploy.wacth",
            "endpoints.echo.dealy",
            "extra",
            "pde_manager.pools.slow.max_concurent_tasks",
        ],
        "{ps:#?}"
    );
}

#[test]
fn a_typo_inside_an_entry_does_not_also_make_it_missing() {
    // `echo` fails to parse, but topics and pools still refer to an existing name.
    let ps = problems(&full_with(
        "    delay: 500ms\n",
        "    delay: 500ms\n    colour: red\n",
    ));
    assert_eq!(paths(&ps), ["endpoints.echo.colour"], "{ps:#?}");
}

#[test]
fn a_wrong_value_is_reported_at_its_path_with_a_duration_hint() {
    let ps = problems(&full_with(
        "  lock_duration: 30s\n",
        "  lock_duration: 30 parsecs\n",
    ));
    assert_eq!(paths(&ps), ["camunda.lock_duration"]);
    assert!(
        ps[0].message.contains("expected a duration such as `30s`"),
        "{}",
        ps[0].message
    );
    assert!(
        !ps[0].message.contains("line"),
        "no line of the re-written text: {}",
        ps[0].message
    );

    let ps = problems(&full_with("    retries: 5\n", "    retries: many\n"));
    assert_eq!(paths(&ps), ["topics.http_request.retries"]);
    assert!(ps[0].message.contains("invalid type"), "{}", ps[0].message);

    let ps = problems(&full_with("[crm, echo]", "[crm, [echo]]"));
    assert_eq!(paths(&ps), ["topics.http_request.endpoints[1]"], "{ps:#?}");
}

#[test]
fn a_missing_endpoint_reference_names_the_topic_and_the_endpoint() {
    let ps = problems(&full_with(
        "endpoints: [crm, echo]",
        "endpoints: [crm, ehco]",
    ));
    assert_eq!(paths(&ps), ["topics.http_request.endpoints[1]"]);
    let m = &ps[0].message;
    assert!(m.contains("`http_request`") && m.contains("`ehco`"), "{m}");
    assert!(
        m.contains("`crm`, `echo`, `score`"),
        "lists the endpoints: {m}"
    );
}

#[test]
fn an_unknown_endpoint_type_lists_the_valid_types() {
    let ps = problems(&full_with("    type: python\n", "    type: pyhton\n"));
    assert_eq!(paths(&ps), ["endpoints.score.type"]);
    assert!(ps[0].message.contains("`pyhton`"));
    assert!(
        ps[0].message.contains("`http`, `python`, `noop`"),
        "{}",
        ps[0].message
    );

    let ps = problems(&full_with("    type: python\n", "    kind: python\n"));
    assert_eq!(paths(&ps), ["endpoints.score"]);
    assert!(ps[0].message.contains("missing field `type`"));
}

#[test]
fn endpoint_kinds_match_the_enum() {
    // serde lists the variants it knows when given an unknown one.
    let err = serde_yaml::from_str::<crate::endpoints::EndpointConfig>("type: '?'").unwrap_err();
    let expected = format!(
        "expected one of {}",
        name_list(ENDPOINT_KINDS.iter().copied())
    );
    assert!(err.to_string().contains(&expected), "{err} vs {expected}");
}

#[test]
fn missing_variables_are_reported_at_their_path_and_not_repeated_by_serde() {
    let yaml = full_with(
        "  max_tasks: ${MAX_TASKS:-50}\n",
        "  max_tasks: ${MAX_TASKS}\n",
    )
    .replace(
        "  worker_id: procos-test\n",
        "  worker_id: ${WORKER:?set WORKER to this host's name}\n",
    );
    let ps = problems(&yaml);
    assert_eq!(
        paths(&ps),
        ["camunda.worker_id", "camunda.max_tasks"],
        "{ps:#?}"
    );
    assert!(ps[0].message.starts_with("set WORKER to this host's name"));
    assert_eq!(ps[1].message, "environment variable `MAX_TASKS` is not set");
}

#[test]
fn secrets_never_appear_in_problem_messages() {
    // A secret put where a number belongs, next to a secret used properly.
    let yaml = full_with(
        "  max_tasks: ${MAX_TASKS:-50}\n",
        "  max_tasks: ${SECRET_KEY}\n",
    )
    .replace("    retries: 5\n", "    retries: prefix-${SECRET_KEY}\n")
    .replace("    type: noop\n", "    type: ${SECRET_KEY}\n");
    let err = load(&yaml).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("SUPERSECRET"), "{text}");
    assert!(!text.contains("tok-SECRET"), "{text}");
    assert_eq!(
        paths(&err.problems),
        [
            "camunda.max_tasks",
            "topics.http_request.retries",
            "endpoints.echo.type"
        ]
    );
    assert!(err.problems[0].message.contains("expected usize"), "{text}");

    // A secret of the wrong shape.
    let yaml = full_with(
        "    token: ${CAMUNDA_TOKEN}\n",
        "    token: ['${CAMUNDA_TOKEN}']\n",
    );
    let err = load(&yaml).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("tok-SECRET"), "{text}");
    assert_eq!(paths(&err.problems), ["camunda.auth"]);
}

#[test]
fn a_numeric_secret_is_read_as_text() {
    let yaml = full_with(
        "    type: bearer\n    token: ${CAMUNDA_TOKEN}\n",
        "    type: basic\n    username: demo\n    password: ${PIN:-0042}\n",
    );
    let c = load(&yaml).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&c.camunda.auth, Some(AuthConfig::Basic { password, .. }) if password.expose() == "0042")
    );
}

#[test]
fn a_plain_number_is_accepted_where_text_is_expected() {
    let c = load(&full_with(
        "  worker_id: procos-test\n",
        "  worker_id: 2024\n",
    ))
    .unwrap();
    assert_eq!(c.camunda.worker_id.as_deref(), Some("2024"));
}

#[test]
fn missing_and_unknown_sections_are_reported() {
    let ps = problems("deploy: {}\ntopcs: {}\n");
    let got = paths(&ps);
    for want in ["topcs", "camunda", "pde_manager", "topics", "endpoints"] {
        assert!(got.contains(&want), "{want} in {got:?}");
    }
}

#[test]
fn semantic_problems_are_reported_even_when_another_entry_has_a_typo() {
    let yaml = full_with("    delay: 500ms\n", "    delai: 500ms\n")
        .replace("    pool: slow\n", "    pool: fast\n");
    let ps = problems(&yaml);
    assert_eq!(
        paths(&ps),
        ["endpoints.echo.delai", "topics.slow_crm.pool"],
        "{ps:#?}"
    );
    assert!(
        ps[1]
            .message
            .contains("`fast` does not exist (pools: `default`, `slow`)")
    );
}

#[test]
fn a_failed_interpolation_is_not_reported_again_by_validation() {
    let ps = problems(&full_with("    pool: slow\n", "    pool: ${SLOW_POOL}\n"));
    assert_eq!(paths(&ps), ["topics.slow_crm.pool"], "{ps:#?}");
    assert_eq!(ps[0].message, "environment variable `SLOW_POOL` is not set");
}

#[test]
fn an_empty_required_section_says_so() {
    let ps = problems("camunda:\npde_manager:\ntopics: {}\nendpoints: {}\n");
    assert!(
        ps.iter()
            .any(|p| p.path == "pde_manager" && p.message.starts_with("is empty")),
        "{ps:#?}"
    );
    assert!(
        !ps.iter().any(|p| p.path == "camunda"),
        "all camunda settings have defaults: {ps:#?}"
    );
}

#[test]
fn yaml_merge_keys_are_applied() {
    let yaml = full_with(
        "    slow:\n      max_concurrent_tasks: 4\n      endpoints: [crm]\n",
        "    slow:\n      <<: { max_concurrent_tasks: 4 }\n      endpoints: [crm]\n",
    );
    let c = load(&yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pde_manager.pools["slow"].max_concurrent_tasks, 4);
}

#[test]
fn syntax_errors_and_non_mappings_are_one_problem_at_the_file() {
    let ps = problems("camunda: [unclosed\n");
    assert_eq!(paths(&ps), [""]);
    assert!(ps[0].message.starts_with("not valid YAML"));
    assert_eq!(paths(&problems("- a\n- b\n")), [""]);
    assert_eq!(paths(&problems("")), [""]);
}

#[test]
fn an_unreadable_file_is_one_problem_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let err = super::load(&path).unwrap_err();
    assert_eq!(paths(&err.problems), [""]);
    assert!(err.problems[0].message.contains("absent.yaml"), "{err}");
}

#[test]
fn load_reads_a_file_and_the_process_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pde.yaml");
    // No variable from the environment is required by this text.
    let yaml = full_with("    token: ${CAMUNDA_TOKEN}\n", "    token: literal\n");
    std::fs::write(&path, yaml).unwrap();
    let c = super::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.topics.len(), 3);
}

/// How long a hostile file may take to be refused: the checks run before any tree is built,
/// so they take milliseconds; the bound is loose for slow CI machines.
const REFUSED_WITHIN: Duration = Duration::from_secs(2);

fn refused_quickly(yaml: &str) -> Vec<Problem> {
    let started = std::time::Instant::now();
    let ps = problems(yaml);
    assert!(
        started.elapsed() < REFUSED_WITHIN,
        "took {:?}",
        started.elapsed()
    );
    ps
}

/// The billion laughs: nine levels of anchors, each level aliasing the one below many times.
pub(crate) fn alias_bomb(per_level: usize) -> String {
    let mut yaml = format!("l0: &l0 [{}]\n", "lol,".repeat(per_level));
    for i in 1..9 {
        yaml += &format!(
            "l{i}: &l{i} [{}]\n",
            format!("*l{},", i - 1).repeat(per_level)
        );
    }
    yaml
}

#[test]
fn an_alias_bomb_is_refused_before_it_expands() {
    let bomb = alias_bomb(1800);
    assert!(bomb.len() > 60_000, "{}", bomb.len());
    let ps = refused_quickly(&bomb);
    assert_eq!(paths(&ps), [""], "{ps:?}");
    assert!(ps[0].message.contains("alias"), "{}", ps[0].message);
    // Small: a few levels are still over the bound once expanded.
    let ps = refused_quickly(&alias_bomb(10));
    assert!(ps[0].message.contains("alias"), "{}", ps[0].message);
}

#[test]
fn deep_nesting_is_refused_before_it_is_parsed() {
    for deep in [
        "[".repeat(100_000),
        format!("a: {}", "[".repeat(100_000)),
        format!("a: {}", "{x: ".repeat(100_000)),
    ] {
        let ps = refused_quickly(&deep);
        assert_eq!(paths(&ps), [""], "{ps:?}");
        assert!(ps[0].message.contains("nest"), "{}", ps[0].message);
    }
}

#[test]
fn a_file_over_the_size_bound_is_refused_naming_the_bound() {
    let huge = format!("{FULL}\n# {}\n", "x".repeat(MAX_CONFIG_BYTES));
    let ps = refused_quickly(&huge);
    assert_eq!(paths(&ps), [""], "{ps:?}");
    assert!(ps[0].message.contains("1 MiB"), "{}", ps[0].message);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pde.yaml");
    std::fs::write(&file, &huge).unwrap();
    let err = super::load(&file).unwrap_err();
    assert!(err.to_string().contains("1 MiB"), "{err}");
}

#[test]
fn ordinary_anchors_and_nesting_still_load() {
    let yaml = full_with(
        "    variables: [customerId]",
        "    variables: &vars [customerId]",
    )
    .replace("      required: [customerId]", "      required: *vars");
    assert!(yaml.contains("*vars"));
    let config = load(&yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.topics["http_request"].input.required,
        ["customerId"],
        "the alias expanded"
    );
}

/// Property tests: `procos validate`'s path never panics, whatever the file holds.
mod props {
    use proptest::prelude::*;

    use super::*;

    /// The shipped example, as a second realistic starting point.
    const SHIPPED: &str = include_str!("../../config/pde.yaml");

    /// Fragments that matter to YAML, to serde and to interpolation.
    const TOKENS: &[&str] = &[
        "[",
        "]",
        "{",
        "}",
        ":",
        ": ",
        "- ",
        "&a ",
        "*a",
        "<<: *a",
        "!!binary ",
        "!tag ",
        "? ",
        "|",
        ">-",
        "'",
        "\"",
        "#",
        "\n",
        "  ",
        "\t",
        "---\n",
        "...\n",
        "${X}",
        "${X:-1}",
        "${NOPE:?gone}",
        "${",
        "300000y",
        "-1",
        "1e400",
        "99999999999999999999",
        "~",
        "null",
        "0x10",
        ".inf",
        "\u{feff}",
        "é",
        "\0",
        "%YAML 1.2\n",
    ];

    #[derive(Debug, Clone)]
    enum Edit {
        Insert(prop::sample::Index, &'static str),
        Delete(prop::sample::Index, usize),
        DuplicateLine(prop::sample::Index),
        Garbage(prop::sample::Index, String),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let at = any::<prop::sample::Index>();
        prop_oneof![
            (at.clone(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Edit::Insert(i, t)),
            (at.clone(), 1usize..40).prop_map(|(i, n)| Edit::Delete(i, n)),
            at.clone().prop_map(Edit::DuplicateLine),
            (at, ".{0,8}").prop_map(|(i, g)| Edit::Garbage(i, g)),
        ]
    }

    /// `at` moved back to a character boundary.
    fn boundary(text: &str, at: usize) -> usize {
        let mut at = at.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    fn apply(mut text: String, edits: &[Edit]) -> String {
        for e in edits {
            let len = text.len().max(1);
            match e {
                Edit::Insert(i, token) => {
                    let at = boundary(&text, i.index(len));
                    text.insert_str(at, token);
                }
                Edit::Delete(i, n) => {
                    let from = boundary(&text, i.index(len));
                    let to = boundary(&text, from + n);
                    text.replace_range(from..to, "");
                }
                Edit::DuplicateLine(i) => {
                    let lines: Vec<&str> = text.lines().collect();
                    if !lines.is_empty() {
                        let n = i.index(lines.len());
                        let mut out = lines[..=n].join("\n");
                        out.push('\n');
                        out.push_str(&lines[n..].join("\n"));
                        text = out;
                    }
                }
                Edit::Garbage(i, garbage) => {
                    let at = boundary(&text, i.index(len));
                    text.insert_str(at, garbage);
                }
            }
        }
        text
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "X" => Some("{[: &*".into()),
            "CAMUNDA_TOKEN" => Some("s3cr3t".into()),
            _ => None,
        }
    }

    /// Runs the whole load path; a problem list, never a panic, and never an empty error.
    fn check(yaml: &str) -> Result<(), TestCaseError> {
        if let Err(e) = load_str(yaml, Path::new("pde.yaml"), &env) {
            prop_assert!(!e.problems.is_empty());
            prop_assert!(!e.to_string().contains("s3cr3t"), "{}", e);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn a_mutated_realistic_config_never_panics(
            shipped in any::<bool>(),
            edits in prop::collection::vec(edit(), 1..6),
        ) {
            let base = if shipped { SHIPPED } else { FULL };
            check(&apply(base.to_string(), &edits))?;
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}") {
            check(&text)?;
        }

        #[test]
        fn arbitrary_yaml_shapes_never_panic(
            parts in prop::collection::vec(prop::sample::select(TOKENS), 0..40),
        ) {
            check(&parts.concat())?;
        }
    }
}
