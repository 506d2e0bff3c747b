//! `procos validate`: offline config checks with YAML paths and exit code 78.

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
