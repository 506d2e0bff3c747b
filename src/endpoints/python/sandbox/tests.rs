//! The sandbox with a real `python3` on this kernel: each permission denied by default and the
//! same script passing once it is granted; config parsing; the refusal of a kernel lacking
//! what the sandbox needs.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::config::MIB;
use super::*;
use crate::endpoints::python::{PythonConfig, PythonEndpoint};
use crate::endpoints::{Endpoint, EndpointRequest};

/// A scripts dir holding `probe.py` with `source`.
fn scripts(source: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.py"), source).unwrap();
    dir
}

fn endpoint(dir: &tempfile::TempDir, sandbox: SandboxConfig) -> PythonEndpoint {
    let config = PythonConfig {
        scripts_dir: dir.path().to_path_buf(),
        sandbox: Some(sandbox),
        ..PythonConfig::default()
    };
    PythonEndpoint::new("py", &config).unwrap()
}

/// Runs `probe.py` with `variables`; the script's JSON result.
async fn run(endpoint: &PythonEndpoint, variables: Value) -> Value {
    let Value::Object(variables) = variables else {
        panic!("variables must be an object")
    };
    let request = EndpointRequest {
        task_id: "t-1".into(),
        topic: "probe".into(),
        variables,
        ..Default::default()
    };
    match endpoint.call(&request).await {
        Ok(reply) => reply.output,
        Err(e) => panic!("the script failed: {e:?}"),
    }
}

/// Wraps a python snippet: `{"ok": true}` if it ran, else the exception's class name.
fn attempt(snippet: &str) -> String {
    format!(
        "import json, os, sys\nv = json.load(sys.stdin)['variables']\ntry:\n{}\n    \
         print(json.dumps({{'ok': True}}))\nexcept Exception as e:\n    \
         print(json.dumps({{'ok': False, 'error': type(e).__name__}}))\n",
        snippet
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn parse(yaml: &str) -> Result<Option<SandboxConfig>, String> {
    #[derive(Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "deserialize")]
        sandbox: Option<SandboxConfig>,
    }
    let de = serde_yaml::Deserializer::from_str(yaml);
    serde_path_to_error::deserialize::<_, Holder>(de)
        .map(|h| h.sandbox)
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

#[test]
fn true_means_the_defaults_false_or_absent_means_none() {
    assert_eq!(parse("sandbox: true"), Ok(Some(SandboxConfig::default())));
    assert_eq!(parse("sandbox: false"), Ok(None));
    assert_eq!(parse("{}"), Ok(None));
    let d = SandboxConfig::default();
    assert_eq!(
        (
            d.network,
            d.memory,
            d.cpu_time,
            d.open_files,
            d.processes,
            d.file_size
        ),
        (
            Network::Denied,
            Bytes(512 * MIB),
            Duration::from_secs(60),
            256,
            64,
            Bytes(64 * MIB)
        )
    );
}

#[test]
fn a_map_sets_each_limit_and_the_allow_list() {
    let parsed = parse(
        "sandbox:\n  network: [\"api.example.com:443\", \"[::1]:8080\"]\n  memory: 1GiB\n  \
         cpu_time: 90s\n  open_files: 64\n  processes: 8\n  file_size: 1000000\n  \
         writable: [/var/spool/out]\n",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        parsed.network,
        Network::Allow(vec![
            HostPort {
                host: "api.example.com".into(),
                port: 443
            },
            HostPort {
                host: "::1".into(),
                port: 8080
            },
        ])
    );
    assert_eq!(parsed.memory, Bytes(1 << 30));
    assert_eq!(parsed.cpu_time, Duration::from_secs(90));
    assert_eq!((parsed.open_files, parsed.processes), (64, 8));
    assert_eq!(parsed.file_size, Bytes(1_000_000));
    assert_eq!(parsed.writable, vec![PathBuf::from("/var/spool/out")]);
    assert_eq!(
        parse("sandbox: {network: true}").unwrap().unwrap().network,
        Network::Any
    );
}

#[test]
fn bad_values_are_refused_at_their_path() {
    let err = parse("sandbox: {memory: 12 parsecs}").unwrap_err();
    assert!(
        err.starts_with("sandbox.memory:") && err.contains("unknown unit `parsecs`"),
        "{err}"
    );
    let err = parse("sandbox: {network: [\"localhost\"]}").unwrap_err();
    assert!(
        err.starts_with("sandbox.network[0]:") && err.contains("`localhost` is not host:port"),
        "{err}"
    );
    let err = parse("sandbox: {network: [\"h:70000\"]}").unwrap_err();
    assert!(err.contains("from 1 to 65535"), "{err}");
    let err = parse("sandbox: {memroy: 1GiB}").unwrap_err();
    assert!(err.contains("unknown field `memroy`"), "{err}");
    let err = parse("sandbox: yes please").unwrap_err();
    assert!(err.contains("`true`, `false` or a map"), "{err}");
}

#[test]
fn validate_names_each_out_of_range_value() {
    let config = PythonConfig {
        sandbox: Some(SandboxConfig {
            memory: Bytes(MIB),
            processes: 0,
            open_files: 3,
            writable: vec!["relative/dir".into()],
            ..SandboxConfig::default()
        }),
        ..PythonConfig::default()
    };
    let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "sandbox.memory",
            "sandbox.open_files",
            "sandbox.processes",
            "sandbox.writable[0]"
        ]
    );
}

#[test]
fn a_kernel_without_the_needed_landlock_abi_is_refused_naming_what_is_missing() {
    let dir = scripts("");
    let err = Sandbox::prepare_for(
        "scorer",
        &SandboxConfig::default(),
        Path::new("python3"),
        dir.path(),
        ABI::V10,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SandboxError::Kernel { .. }), "{text}");
    assert!(text.contains("python endpoint `scorer`"), "{text}");
    assert!(text.contains("Landlock ABI 10"), "{text}");
    assert!(text.contains("this kernel offers ABI"), "{text}");
    assert!(text.contains("sandbox: false"), "{text}");
    // The same endpoint on what procos asks for by default: this kernel has it.
    Sandbox::prepare(
        "scorer",
        &SandboxConfig::default(),
        Path::new("python3"),
        dir.path(),
    )
    .unwrap();
}

#[tokio::test]
async fn the_endpoint_refuses_to_build_when_the_interpreter_is_missing() {
    let dir = scripts("");
    let config = PythonConfig {
        scripts_dir: dir.path().to_path_buf(),
        python: "no-such-python".into(),
        sandbox: Some(SandboxConfig::default()),
        ..PythonConfig::default()
    };
    let err = PythonEndpoint::new("py", &config).unwrap_err();
    assert!(
        err.message.contains("python endpoint `py`") && err.message.contains("no-such-python"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_sandboxed_script_runs_with_a_private_temp_dir_deleted_afterwards() {
    let dir = scripts(
        "import json, os, sys\njson.load(sys.stdin)\nt = os.environ['TMPDIR']\n\
         open(os.path.join(t, 'scratch'), 'w').write('x')\n\
         print(json.dumps({'tmp': t, 'home': os.environ['HOME']}))\n",
    );
    let out = run(&endpoint(&dir, SandboxConfig::default()), json!({})).await;
    let tmp = out["tmp"].as_str().unwrap();
    assert_eq!(out["home"], out["tmp"]);
    assert!(tmp.contains("procos-sandbox-"), "{tmp}");
    assert!(!Path::new(tmp).exists(), "{tmp} was left behind");
}

#[tokio::test]
async fn tcp_connect_is_denied_unless_network_grants_the_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = scripts(&attempt(
        "import socket\nsocket.create_connection(('127.0.0.1', v['port']), timeout=5).close()",
    ));
    let vars = json!({"port": port});
    let denied = run(&endpoint(&dir, SandboxConfig::default()), vars.clone()).await;
    assert_eq!(denied, json!({"ok": false, "error": "PermissionError"}));
    let other_port = SandboxConfig {
        network: Network::Allow(vec![HostPort {
            host: "127.0.0.1".into(),
            port: port.wrapping_add(1).max(1),
        }]),
        ..SandboxConfig::default()
    };
    let denied = run(&endpoint(&dir, other_port), vars.clone()).await;
    assert_eq!(denied, json!({"ok": false, "error": "PermissionError"}));
    let this_port = SandboxConfig {
        network: Network::Allow(vec![HostPort {
            host: "127.0.0.1".into(),
            port,
        }]),
        ..SandboxConfig::default()
    };
    assert_eq!(
        run(&endpoint(&dir, this_port), vars.clone()).await,
        json!({"ok": true})
    );
    let any = SandboxConfig {
        network: Network::Any,
        ..SandboxConfig::default()
    };
    assert_eq!(run(&endpoint(&dir, any), vars).await, json!({"ok": true}));
}

#[tokio::test]
async fn reading_a_file_outside_scripts_dir_is_denied_unless_granted() {
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("pde.yaml");
    std::fs::write(&secret, "password: hunter2\n").unwrap();
    let dir = scripts(&attempt("open(v['path']).read()"));
    let vars = json!({"path": secret});
    let denied = run(&endpoint(&dir, SandboxConfig::default()), vars.clone()).await;
    assert_eq!(denied, json!({"ok": false, "error": "PermissionError"}));
    let granted = SandboxConfig {
        writable: vec![elsewhere.path().to_path_buf()],
        ..SandboxConfig::default()
    };
    assert_eq!(
        run(&endpoint(&dir, granted), vars).await,
        json!({"ok": true})
    );
}

#[tokio::test]
async fn writing_outside_the_temp_dir_is_denied_unless_writable() {
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("out.txt");
    let dir = scripts(&attempt("open(v['path'], 'w').write('x')"));
    let vars = json!({"path": target});
    let denied = run(&endpoint(&dir, SandboxConfig::default()), vars.clone()).await;
    assert_eq!(denied, json!({"ok": false, "error": "PermissionError"}));
    assert!(!target.exists());
    // scripts_dir is read-only too.
    let in_scripts = json!({"path": dir.path().join("new.py")});
    let denied = run(&endpoint(&dir, SandboxConfig::default()), in_scripts).await;
    assert_eq!(denied, json!({"ok": false, "error": "PermissionError"}));
    let granted = SandboxConfig {
        writable: vec![elsewhere.path().to_path_buf()],
        ..SandboxConfig::default()
    };
    assert_eq!(
        run(&endpoint(&dir, granted), vars).await,
        json!({"ok": true})
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
}

#[tokio::test]
async fn allocating_past_memory_fails_and_passes_with_more() {
    let dir = scripts(&attempt("b = bytearray(400 * 1024 * 1024)"));
    let small = SandboxConfig {
        memory: Bytes(256 * MIB),
        ..SandboxConfig::default()
    };
    let denied = run(&endpoint(&dir, small), json!({})).await;
    assert_eq!(denied, json!({"ok": false, "error": "MemoryError"}));
    let large = SandboxConfig {
        memory: Bytes(1024 * MIB),
        ..SandboxConfig::default()
    };
    assert_eq!(
        run(&endpoint(&dir, large), json!({})).await,
        json!({"ok": true})
    );
}

#[tokio::test]
async fn signalling_procos_is_denied_inside_the_sandbox_only() {
    // Signal 0 only checks the permission: nothing is sent to the test process.
    let dir = scripts(&attempt("os.kill(os.getppid(), 0)"));
    let confined = run(&endpoint(&dir, SandboxConfig::default()), json!({})).await;
    assert_eq!(confined, json!({"ok": false, "error": "PermissionError"}));
    let free = PythonEndpoint::new(
        "py",
        &PythonConfig {
            scripts_dir: dir.path().to_path_buf(),
            ..PythonConfig::default()
        },
    )
    .unwrap();
    assert_eq!(run(&free, json!({})).await, json!({"ok": true}));
}

/// Runs `python3 -c code` confined by `sandbox`, as the unprivileged uid 65534 (the kernel
/// exempts uid 0 from `RLIMIT_NPROC`, and these tests run as root): its stdout.
async fn run_as_nobody(sandbox: &Sandbox, code: &str) -> String {
    let mut command = Command::new("python3");
    command
        .args(["-c", code])
        .current_dir("/")
        .env_clear()
        .env("PATH", crate::endpoints::python::SAFE_PATH)
        .stdout(std::process::Stdio::piped());
    // SAFETY: getuid cannot fail and touches no memory.
    if unsafe { libc::getuid() } == 0 {
        command.uid(65534).gid(65534);
    }
    let _task_dir = sandbox.confine(&mut command).unwrap();
    let out = command.output().await.unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn forking_past_processes_fails_and_passes_with_more() {
    // RLIMIT_NPROC counts every process of the user, so 1 is reached by the script itself.
    // Through `confine` directly: the hook the warm interpreters get.
    let code = "import os\ntry:\n    pid = os.fork()\n    if pid == 0:\n        os._exit(0)\n    \
                os.waitpid(pid, 0)\n    print('forked')\nexcept BlockingIOError:\n    print('refused')";
    let dir = scripts("");
    let prepare = |processes| {
        let config = SandboxConfig {
            processes,
            ..SandboxConfig::default()
        };
        Sandbox::prepare("py", &config, Path::new("python3"), dir.path()).unwrap()
    };
    assert_eq!(run_as_nobody(&prepare(1), code).await, "refused");
    assert_eq!(run_as_nobody(&prepare(1 << 20), code).await, "forked");
}

/// `mode: warm` interpreters are confined like process-mode scripts: a `handle(task)` cannot read
/// outside `scripts_dir`, and its TMPDIR (the sandbox's directory) stays writable across the
/// tasks one interpreter serves.
#[tokio::test]
async fn a_warm_interpreter_is_confined_and_keeps_its_temp_dir() {
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("pde.yaml");
    std::fs::write(&secret, "password: hunter2\n").unwrap();
    let dir = scripts(
        "import os\n\
         def handle(task):\n    \
             v = task['variables']\n    \
             path = os.path.join(os.environ['TMPDIR'], 'n')\n    \
             n = int(open(path).read()) + 1 if os.path.exists(path) else 1\n    \
             open(path, 'w').write(str(n))\n    \
             try:\n        \
                 open(v['path']).read()\n        \
                 read = 'read'\n    \
             except PermissionError:\n        \
                 read = 'denied'\n    \
             return {'served': n, 'secret': read, 'pid': os.getpid()}\n",
    );
    let config = PythonConfig {
        scripts_dir: dir.path().to_path_buf(),
        mode: crate::endpoints::python::Mode::Warm,
        sandbox: Some(SandboxConfig::default()),
        ..PythonConfig::default()
    };
    let endpoint = PythonEndpoint::new("py", &config).unwrap();
    let first = run(&endpoint, json!({"path": secret})).await;
    let second = run(&endpoint, json!({"path": secret})).await;
    assert_eq!(first["secret"], json!("denied"), "{first}");
    assert_eq!(
        (first["pid"] == second["pid"], second["served"].clone()),
        (true, json!(2)),
        "one interpreter, its temp dir kept between tasks: {first} {second}"
    );
}

/// A warm `handle` that allocates past the sandbox's `memory` costs only its task: the
/// interpreter is replaced and the next task runs in a fresh one.
#[tokio::test]
async fn a_memory_hungry_warm_task_costs_only_its_task_and_interpreter() {
    let dir = scripts(
        "import os\n\
         def handle(task):\n    \
             if task['variables'].get('hungry'):\n        \
                 data = bytearray(400 * 1024 * 1024)\n    \
             return {'pid': os.getpid()}\n",
    );
    let config = PythonConfig {
        scripts_dir: dir.path().to_path_buf(),
        mode: crate::endpoints::python::Mode::Warm,
        sandbox: Some(SandboxConfig {
            memory: Bytes(256 * MIB),
            ..SandboxConfig::default()
        }),
        ..PythonConfig::default()
    };
    let endpoint = PythonEndpoint::new("py", &config).unwrap();
    let before = run(&endpoint, json!({})).await;
    let request = EndpointRequest {
        task_id: "t-2".into(),
        topic: "probe".into(),
        variables: json!({"hungry": true}).as_object().cloned().unwrap(),
        ..Default::default()
    };
    let error = endpoint
        .call(&request)
        .await
        .expect_err("past the memory limit");
    assert!(
        error.message.contains("MemoryError"),
        "{}: {:?}",
        error.message,
        error.details
    );
    let after = run(&endpoint, json!({})).await;
    assert_ne!(before["pid"], after["pid"], "the interpreter was replaced");
}
