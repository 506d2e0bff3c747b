//! `procos validate` refuses bad values of the endpoint layer stack (`circuit`, `probe`,
//! `max_concurrency`, `retry_budget`, unknown keys) at their YAML path, for any kind.

use std::process::Command;

fn validate(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pde.yaml");
    std::fs::write(&path, config).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config"])
        .arg(&path)
        .env_remove("CAMUNDA_URL")
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn config(endpoints: &str) -> String {
    let names: Vec<&str> = endpoints
        .lines()
        .filter_map(|l| l.trim().split_once(':').map(|(n, _)| n))
        .collect();
    format!(
        "camunda:\n  url: http://localhost:8080/engine-rest\n\
         pde_manager:\n  pools:\n    p: {{ instances: 1, endpoints: [{all}], max_concurrent_tasks: 2 }}\n\
         endpoints:\n{endpoints}\
         topics:\n  t:\n    pool: p\n    endpoints: [a]\n",
        all = names.join(", ")
    )
}

#[test]
fn bad_stack_values_exit_78_naming_each_path() {
    let (code, text) = validate(&config(
        "  a: {type: noop, circuit: {failure_rate: 1.5, min_calls: 0}}\n\
         \x20 b: {type: http, url: 'http://x/', probe: {every: 0s}, max_concurrency: 0}\n\
         \x20 c: {type: openai, model: m, retry_budget: {ttl: 5m}}\n\
         \x20 d: {type: python, probe: {enabled: true, timeout: 0s}}\n",
    ));
    assert_eq!(code, 78, "{text}");
    for path in [
        "endpoints.a.circuit.failure_rate",
        "endpoints.a.circuit.min_calls",
        "endpoints.b.probe.every",
        "endpoints.b.max_concurrency",
        "endpoints.c.retry_budget.ttl",
        "endpoints.d.probe.timeout",
    ] {
        assert!(text.contains(path), "{path} in:\n{text}");
    }
}

#[test]
fn an_unknown_stack_key_is_refused_for_every_kind() {
    for kind in [
        "{type: noop, circuit: {failure_rat: 0.5}}",
        "{type: email, host: h, from: a@x.org, probe: {evry: 30s}}",
        "{type: ollama, model: m, circuit: {enabled: false, open_fr: 1s}}",
    ] {
        let (code, text) = validate(&config(&format!("  a: {kind}\n")));
        assert_eq!(code, 78, "{kind}: {text}");
        assert!(text.contains("endpoints.a"), "{kind}: {text}");
        let key = ["failure_rat", "evry", "open_fr"]
            .into_iter()
            .find(|k| kind.contains(k))
            .unwrap_or_default();
        assert!(text.contains(key), "{kind} names `{key}`: {text}");
    }
}

#[test]
fn good_stack_values_pass() {
    let (code, text) = validate(&config(
        "  a: {type: noop, timeout: 5s, max_concurrency: 4, circuit: {enabled: false}}\n\
         \x20 b: {type: http, url: 'http://x/', health_url: 'http://x/health', max_retries: 2, \
         retry_budget: {ratio: 0.1}, circuit: {failure_rate: 0.3, window: 2m, min_calls: 20}, \
         probe: {every: 1m}}\n",
    ));
    assert_eq!(code, 0, "{text}");
}
