//! The design's vocabulary through the whole load path: each alias, its note, the conflicts, and
//! problems reported where the file has the key.

use std::path::Path;
use std::time::Duration;

use crate::config::{FileConfig, Loaded, Problem, load_str_noted};
use crate::endpoints::EndpointConfig;

/// One pool, one topic, and the endpoint `ep` written as `endpoint` (indented under it).
fn config(endpoint: &str) -> String {
    format!(
        "camunda: {{ url: http://localhost:8080/engine-rest }}\n\
         pde_manager:\n  pools:\n    p: {{ endpoints: [ep], max_concurrent_tasks: 1 }}\n\
         topics:\n  t: {{ pool: p, endpoints: [ep] }}\n\
         endpoints:\n  ep:\n{endpoint}"
    )
}

fn read(endpoint: &str) -> Loaded {
    let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-from-the-env".to_string());
    load_str_noted(&config(endpoint), Path::new("pde.yaml"), &env)
}

fn ok(endpoint: &str) -> (FileConfig, Vec<Problem>) {
    let loaded = read(endpoint);
    match loaded.config {
        Ok(config) => (config, loaded.notes),
        Err(e) => panic!("{e}\n{endpoint}"),
    }
}

fn problems(endpoint: &str) -> Vec<Problem> {
    match read(endpoint).config {
        Ok(_) => panic!("accepted:\n{endpoint}"),
        Err(e) => e.problems,
    }
}

fn note_at<'a>(notes: &'a [Problem], path: &str) -> &'a str {
    notes
        .iter()
        .find(|n| n.path == path)
        .map(|n| n.message.as_str())
        .unwrap_or_else(|| panic!("no note at {path}: {notes:?}"))
}

#[test]
fn ai_service_is_read_as_openai_with_a_note() {
    let (config, notes) = ok("    type: ai_service\n    model: gpt-4\n");
    let EndpointConfig::Openai(c) = &config.endpoints["ep"] else {
        panic!("{:?}", config.endpoints["ep"]);
    };
    assert_eq!(c.model, "gpt-4");
    assert_eq!(
        note_at(&notes, "endpoints.ep.type"),
        "`type: ai_service` is read as `type: openai`"
    );
    assert_eq!(notes.len(), 1, "{notes:?}");
}

#[test]
fn script_executor_is_read_as_python() {
    let (config, notes) = ok("    type: script_executor\n    script: calc.py\n");
    let EndpointConfig::Python(c) = &config.endpoints["ep"] else {
        panic!("{:?}", config.endpoints["ep"]);
    };
    assert_eq!(c.script.as_deref(), Some("calc.py"));
    assert_eq!(
        note_at(&notes, "endpoints.ep.type"),
        "`type: script_executor` is read as `type: python`"
    );
}

#[test]
fn procos_own_vocabulary_leaves_no_note() {
    let (_, notes) = ok("    type: python\n    sandbox: true\n    max_execution_time: 30s\n");
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn config_keys_are_read_as_the_endpoints_own() {
    let (config, notes) = ok(
        "    type: ai_service\n    config:\n      api_key: ${OPENAI_API_KEY}\n      model: gpt-4\n",
    );
    let EndpointConfig::Openai(c) = &config.endpoints["ep"] else {
        panic!("{:?}", config.endpoints["ep"]);
    };
    assert_eq!(c.model, "gpt-4");
    assert_eq!(
        c.api_key.as_ref().map(|k| k.expose()),
        Some("sk-from-the-env")
    );
    assert_eq!(
        note_at(&notes, "endpoints.ep.config"),
        "`config:` is read as settings of `endpoints.ep` itself"
    );
}

#[test]
fn a_key_in_config_and_on_the_endpoint_is_an_error_naming_both_paths() {
    let ps = problems("    type: openai\n    model: gpt-4o\n    config: { model: gpt-4 }\n");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].path, "endpoints.ep.config.model");
    assert!(
        ps[0].message.contains("`endpoints.ep.model`"),
        "{}",
        ps[0].message
    );
    // The type inside `config:` counts too.
    let ps = problems("    type: openai\n    config: { type: ai_service, model: gpt-4 }\n");
    assert_eq!(ps[0].path, "endpoints.ep.config.type", "{ps:?}");
}

#[test]
fn config_must_be_a_mapping() {
    let ps = problems("    type: openai\n    model: gpt-4\n    config: [model]\n");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].path, "endpoints.ep.config");
    assert!(ps[0].message.contains("mapping"), "{}", ps[0].message);
}

#[test]
fn problems_at_keys_from_config_are_reported_where_the_file_has_them() {
    // serde's unknown field …
    let ps = problems("    type: ai_service\n    config: { modle: gpt-4, model: gpt-4 }\n");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].path, "endpoints.ep.config.modle");
    // … and validation's bounds.
    let ps = problems("    type: script_executor\n    config: { worker_pool_size: 0 }\n");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].path, "endpoints.ep.config.worker_pool_size");
}

#[test]
fn a_missing_variable_in_config_is_reported_once_at_its_path() {
    let ps = problems("    type: ai_service\n    config: { model: '${MODEL_NAME}' }\n");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].path, "endpoints.ep.config.model");
    assert!(ps[0].message.contains("MODEL_NAME"), "{}", ps[0].message);
}

#[test]
fn sandbox_enabled_is_read_as_sandbox() {
    let (config, notes) = ok("    type: python\n    sandbox_enabled: true\n");
    let EndpointConfig::Python(c) = &config.endpoints["ep"] else {
        panic!("{:?}", config.endpoints["ep"]);
    };
    assert!(c.sandbox.is_some());
    assert_eq!(
        note_at(&notes, "endpoints.ep.sandbox_enabled"),
        "`sandbox_enabled: true` is read as `sandbox: true`"
    );

    let (config, _) = ok("    type: script_executor\n    config: { sandbox_enabled: false }\n");
    let EndpointConfig::Python(c) = &config.endpoints["ep"] else {
        panic!("{:?}", config.endpoints["ep"]);
    };
    assert!(c.sandbox.is_none());
}

#[test]
fn sandbox_enabled_must_be_a_boolean_and_not_beside_sandbox() {
    let ps = problems("    type: python\n    sandbox_enabled: yes please\n");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].path, "endpoints.ep.sandbox_enabled");
    assert!(ps[0].message.contains("`true` or `false`"), "{ps:?}");

    let ps =
        problems("    type: python\n    sandbox: true\n    config: { sandbox_enabled: true }\n");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].path, "endpoints.ep.config.sandbox_enabled");
    assert!(ps[0].message.contains("`endpoints.ep.sandbox`"), "{ps:?}");
}

#[test]
fn sandbox_enabled_is_not_an_alias_on_other_kinds() {
    // Only python has a sandbox: elsewhere the key stays unknown.
    let ps = problems("    type: openai\n    model: gpt-4\n    sandbox_enabled: true\n");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].path, "endpoints.ep.sandbox_enabled");
    assert!(ps[0].message.starts_with("unknown field"), "{ps:?}");
}

#[test]
fn a_bare_max_execution_time_is_seconds() {
    let python = |config: &FileConfig| match &config.endpoints["ep"] {
        EndpointConfig::Python(c) => c.max_execution_time,
        other => panic!("{other:?}"),
    };
    let (config, notes) = ok("    type: python\n    max_execution_time: 300\n");
    assert_eq!(python(&config), Duration::from_secs(300));
    assert_eq!(
        note_at(&notes, "endpoints.ep.max_execution_time"),
        "`max_execution_time: 300` is read as `300s` (a bare number is seconds)"
    );
    let (config, _) = ok("    type: python\n    max_execution_time: 1.5\n");
    assert_eq!(python(&config), Duration::from_millis(1500));
    // A duration is still a duration.
    let (config, _) = ok("    type: python\n    max_execution_time: 2m\n");
    assert_eq!(python(&config), Duration::from_secs(120));
}

#[test]
fn a_bare_max_execution_time_is_still_bounded_at_its_path() {
    let ps = problems("    type: script_executor\n    config: { max_execution_time: 0 }\n");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].path, "endpoints.ep.config.max_execution_time");
    assert!(ps[0].message.contains("greater than zero"), "{ps:?}");
    let ps = problems("    type: python\n    max_execution_time: -5\n");
    assert_eq!(ps[0].path, "endpoints.ep.max_execution_time", "{ps:?}");
}

#[test]
fn notes_are_given_with_problems_too() {
    // The note explains why openai's rules apply to an `ai_service` entry.
    let loaded = read("    type: ai_service\n");
    let err = loaded.config.expect_err("openai needs a model");
    assert!(
        err.problems.iter().any(|p| p.message.contains("model")),
        "{err}"
    );
    note_at(&loaded.notes, "endpoints.ep.type");
}
