//! The migration path through the real binary: `procos migrate workers.yaml` then `procos
//! validate` on its output, and the design's own example config (its vocabulary read as aliases,
//! each with a note) validated as it is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

fn procos(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(args)
        .current_dir(dir)
        .env_remove("CAMUNDA_URL")
        .env_remove("OPENAI_API_KEY")
        .env("RUST_LOG", "off")
        .output()
        .expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn migrate_then_validate_passes_on_the_designs_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workers = fixture("migrate/workers.yaml");
    let out = procos(
        &[
            "migrate",
            workers.to_str().expect("utf-8 path"),
            "-o",
            "pde.yaml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    let yaml = std::fs::read_to_string(dir.path().join("pde.yaml")).expect("written");
    assert!(
        yaml.contains("workers.yaml"),
        "the header names the source:\n{yaml}"
    );

    let out = procos(&["validate", "--config", "pde.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}\n{yaml}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("OK (4 topics, 3 pools, 3 endpoints)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn migrate_prints_to_stdout_and_warns_about_unknown_keys_on_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workers.yaml"),
        "workers:\n  mail_sender: { topics: [send_mail], max_tasks: 2, smtp_password: hunter22 }\n",
    )
    .expect("write");
    let out = procos(&["migrate", "workers.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(stdout.starts_with("# pde.yaml for procos"), "{stdout}");
    assert!(stdout.contains("type: email"), "the guess: {stdout}");
    assert!(
        stderr
            .contains("warning: workers.yaml:2: workers.mail_sender.smtp_password: not a key procos migrate knows"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter22") && !stdout.contains("hunter22"));
    // Nothing written to disk: stdout is the output.
    assert!(!dir.path().join("pde.yaml").exists());
}

#[test]
fn bad_input_exits_65_naming_the_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workers.yaml"),
        "workers:\n  w:\n    topics: [a]\n    max_tasks: many\n",
    )
    .expect("write");
    let out = procos(&["migrate", "workers.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("procos migrate: workers.yaml:4:")
            && stderr.contains("workers.w.max_tasks"),
        "{stderr}"
    );
    assert!(text(&out.stdout).is_empty());

    let out = procos(&["migrate", "absent.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(66), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("absent.yaml"));
}

#[test]
fn an_existing_output_is_kept_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pde.yaml"), "# mine\n").expect("write");
    let workers = fixture("migrate/workers.yaml");
    let workers = workers.to_str().expect("utf-8 path");
    let out = procos(&["migrate", workers, "-o", "pde.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(73), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pde.yaml")).expect("read"),
        "# mine\n"
    );
    let out = procos(
        &["migrate", workers, "-o", "pde.yaml", "--force"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn the_designs_example_config_validates_with_a_note_per_alias() {
    let design = fixture("design/pde.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config"])
        .arg(&design)
        .env("OPENAI_API_KEY", "sk-design-example")
        .env("RUST_LOG", "off")
        .output()
        .expect("runs");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        text(&out.stdout).contains("OK (3 topics, 3 pools, 3 endpoints)"),
        "{}",
        text(&out.stdout)
    );
    for note in [
        "note: endpoints.gpt4_endpoint.type: `type: ai_service` is read as `type: openai`",
        "note: endpoints.gpt4_endpoint.config: `config:` is read as settings of `endpoints.gpt4_endpoint` itself",
        "note: endpoints.python_scripts.type: `type: script_executor` is read as `type: python`",
        "note: endpoints.python_scripts.config.sandbox_enabled: `sandbox_enabled: true` is read as `sandbox: true`",
        "note: endpoints.python_scripts.config.max_execution_time: `max_execution_time: 300` is read as `300s` (a bare number is seconds)",
    ] {
        assert_eq!(stderr.matches(note).count(), 1, "{note}\n{stderr}");
    }
    assert!(!stderr.contains("sk-design-example"));

    // Without the key: the problem is where the file has it, under `config:`.
    let out = procos(
        &["validate", "--config", design.to_str().expect("utf-8")],
        Path::new("."),
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("endpoints.gpt4_endpoint.config.api_key: environment variable `OPENAI_API_KEY` is not set"),
        "{}",
        text(&out.stderr)
    );
}
