//! `procos validate`: offline config checks with YAML paths and exit code 78 — including bad
//! values of the endpoint layer stack (`circuit`, `probe`, `max_concurrency`, `retry_budget`,
//! unknown keys) at their YAML path, for any kind.

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

fn shipped() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/pde.yaml"))
        .expect("shipped config")
}

#[test]
fn the_shipped_config_is_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config", "config/pde.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn a_typo_exits_78_naming_the_key_path() {
    let cfg = shipped().replace("    retry_timeout: 10s", "    retry_timeot: 10s");
    let (code, text) = validate(&cfg);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("topics.http_request.retry_timeot"), "{text}");
}

#[test]
fn a_missing_endpoint_names_topic_and_endpoint() {
    let cfg = shipped().replace("    endpoints: [python]\n", "    endpoints: [pyhton]\n");
    let (code, text) = validate(&cfg);
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains("topics.score_order") && text.contains("pyhton"),
        "{text}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let cfg = shipped()
        .replace("    retry_timeout: 10s", "    retry_timeot: 10s")
        .replace("  lock_duration: 30s", "  lock_duraton: 30s");
    let (code, text) = validate(&cfg);
    assert_eq!(code, 78);
    assert!(
        text.contains("retry_timeot") && text.contains("camunda.lock_duraton"),
        "{text}"
    );
}

#[test]
fn the_readme_config_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = &readme[readme.find("## Configuration by example").expect("section")..];
    let start = section.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let yaml = &section[start..start + section[start..].find("```").expect("block end")];
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pde.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config"])
        .arg(&path)
        .env("CAMUNDA_PASSWORD", "secret")
        .env("API_TOKEN", "token")
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `procos validate` on `config` and returns (exit code, output, how long it took); a run
/// past `limit` is killed and fails the test, so a regression cannot eat the machine.
fn validate_within(config: &str, limit: std::time::Duration) -> (i32, String, std::time::Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pde.yaml");
    std::fs::write(&path, config).expect("write");
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("procos validate still ran after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text, took)
}

/// Hostile files are refused in well under this (they take milliseconds); loose for slow CI.
const HOSTILE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

#[test]
fn an_80_kb_alias_bomb_is_refused_at_once() {
    let mut bomb = format!("l0: &l0 [{}]\n", "lol,".repeat(2300));
    for i in 1..9 {
        bomb += &format!("l{i}: &l{i} [{}]\n", format!("*l{},", i - 1).repeat(2300));
    }
    assert!(bomb.len() >= 80_000, "{}", bomb.len());
    let (code, text, took) = validate_within(&bomb, std::time::Duration::from_secs(20));
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("aliases"), "{text}");
    assert!(took < HOSTILE_LIMIT, "took {took:?}");
}

#[test]
fn a_hundred_thousand_nested_brackets_are_refused_at_once() {
    // Under a key: the shape libyaml is slowest on (over a minute before the bound).
    let deep = format!("a: {}", "[".repeat(100_000));
    let (code, text, took) = validate_within(&deep, std::time::Duration::from_secs(20));
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("nest deeper than"), "{text}");
    assert!(took < HOSTILE_LIMIT, "took {took:?}");
}

#[test]
fn a_lock_of_300000_years_is_refused_naming_its_path() {
    let cfg = shipped().replace("  lock_duration: 30s", "  lock_duration: 300000y");
    assert!(cfg.contains("300000y"));
    let (code, text) = validate(&cfg);
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains("camunda.lock_duration: 300000years is longer than 7days"),
        "{text}"
    );
}

// ── the endpoint layer stack ─────────────────────────────────────────────────────────────

/// A config with one pool, one topic `t` on endpoint `a`, and `endpoints` (YAML lines).
fn stack_config(endpoints: &str) -> String {
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
    let (code, text) = validate(&stack_config(
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
        let (code, text) = validate(&stack_config(&format!("  a: {kind}\n")));
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
    let (code, text) = validate(&stack_config(
        "  a: {type: noop, timeout: 5s, max_concurrency: 4, circuit: {enabled: false}}\n\
         \x20 b: {type: http, url: 'http://x/', health_url: 'http://x/health', max_retries: 2, \
         retry_budget: {ratio: 0.1}, circuit: {failure_rate: 0.3, window: 2m, min_calls: 20}, \
         probe: {every: 1m}}\n",
    ));
    assert_eq!(code, 0, "{text}");
}

/// `mode: warm` calls `handle(task)`: a fixed script without one is refused by `procos validate`
/// (which reads the script; the config's own checks are pure), naming the endpoint's `script`.
#[test]
fn a_warm_script_without_handle_is_refused_naming_it() {
    let scripts = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        scripts.path().join("old.py"),
        "import json, sys\nprint(json.dumps(json.load(sys.stdin)))\n",
    )
    .expect("write");
    std::fs::write(
        scripts.path().join("new.py"),
        "def handle(task):\n    return {'ok': True}\n",
    )
    .expect("write");
    let config = |script: &str| {
        stack_config(&format!(
            "  a: {{type: python, mode: warm, scripts_dir: '{}', script: {script}}}\n",
            scripts.path().display()
        ))
    };
    let (code, text) = validate(&config("old.py"));
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains("endpoints.a.script") && text.contains("handle(task)"),
        "{text}"
    );
    let (code, text) = validate(&config("new.py"));
    assert_eq!(code, 0, "{text}");
}
