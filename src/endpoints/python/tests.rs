//! Tests of the `python` endpoint with a real `python3` and scripts in a temp dir.

use super::*;
use crate::endpoints::ErrorKind;

/// A scripts dir with the given (name, source) scripts.
fn scripts(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, source) in files {
        std::fs::write(dir.path().join(name), source).unwrap();
    }
    dir
}

fn endpoint(dir: &tempfile::TempDir, config: PythonConfig) -> PythonEndpoint {
    let config = PythonConfig {
        scripts_dir: dir.path().to_path_buf(),
        ..config
    };
    PythonEndpoint::new("py", &config).unwrap()
}

fn request(topic: &str, variables: Value) -> EndpointRequest {
    let Value::Object(variables) = variables else {
        panic!("variables must be an object")
    };
    EndpointRequest {
        task_id: "t-1".into(),
        topic: topic.into(),
        activity_id: "Act_1".into(),
        process_instance_id: "pi-1".into(),
        business_key: Some("bk-1".into()),
        variables,
        ..Default::default()
    }
}

const ECHO: &str = "import json, sys\njson.dump(json.load(sys.stdin), sys.stdout)\n";

#[tokio::test]
async fn echo_round_trip_receives_the_whole_task() {
    let dir = scripts(&[("echo.py", ECHO)]);
    let ep = endpoint(&dir, PythonConfig::default());
    let mut req = request("echo", json!({"amount": 12.5, "items": [1, "ü"]}));
    req.properties.insert("pde.x".into(), "y".into());
    req.feedback = Some("try harder".into());
    let reply = ep.call(&req).await.unwrap();
    assert_eq!(
        reply.output,
        json!({
            "variables": {"amount": 12.5, "items": [1, "ü"]},
            "properties": {"pde.x": "y"},
            "business_key": "bk-1",
            "task": {"id": "t-1", "topic": "echo", "activity_id": "Act_1",
                     "process_instance_id": "pi-1"},
            "feedback": "try harder",
        })
    );
}

#[tokio::test]
async fn the_script_comes_from_config_then_property_then_topic() {
    let dir = scripts(&[
        ("a.py", "print('\"a\"')"),
        ("b.py", "print('\"b\"')"),
        ("topic.py", "print('\"topic\"')"),
    ]);
    let by_topic = endpoint(&dir, PythonConfig::default());
    let mut req = request("topic", json!({}));
    assert_eq!(by_topic.call(&req).await.unwrap().output, json!("topic"));
    req.properties.insert("pde.script".into(), "b.py".into());
    assert_eq!(by_topic.call(&req).await.unwrap().output, json!("b"));
    let fixed = endpoint(
        &dir,
        PythonConfig {
            script: Some("a.py".into()),
            ..PythonConfig::default()
        },
    );
    assert_eq!(fixed.call(&req).await.unwrap().output, json!("a"));
}

#[tokio::test]
async fn a_failing_script_is_transient_with_stderr_in_details() {
    let dir = scripts(&[(
        "fail.py",
        "import sys\nprint('step 1 done', file=sys.stderr)\nraise ValueError('no customer')\n",
    )]);
    let ep = endpoint(&dir, PythonConfig::default());
    let err = ep.call(&request("fail", json!({}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient { retry_after: None });
    assert_eq!(err.code.as_deref(), Some("exit_1"));
    assert!(
        err.message.ends_with("ValueError: no customer"),
        "{}",
        err.message
    );
    let details = err.details.unwrap();
    assert!(
        details.starts_with("step 1 done") && details.contains("Traceback"),
        "{details}"
    );
}

#[tokio::test]
async fn exit_code_two_is_permanent() {
    let dir = scripts(&[("usage.py", "import sys\nsys.exit(2)\n")]);
    let ep = endpoint(&dir, PythonConfig::default());
    let err = ep.call(&request("usage", json!({}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("exit_2"));
}

#[tokio::test]
async fn a_script_over_time_is_killed() {
    let dir = scripts(&[("slow.py", "import time\ntime.sleep(10)\n")]);
    let ep = endpoint(
        &dir,
        PythonConfig {
            max_execution_time: Duration::from_millis(300),
            ..PythonConfig::default()
        },
    );
    let started = Instant::now();
    let err = ep.call(&request("slow", json!({}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient { retry_after: None });
    assert_eq!(err.code.as_deref(), Some("timeout"));
    // Killed, not waited for: well under the script's 10 s.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_killed_script_takes_the_processes_it_started_with_it() {
    // The script starts a long-lived child, records its pid, and hangs.
    let dir = scripts(&[(
        "spawner.py",
        "import subprocess, time\n\
         p = subprocess.Popen(['sleep', '30'])\n\
         open('child.pid', 'w').write(str(p.pid))\n\
         time.sleep(30)\n",
    )]);
    let ep = endpoint(
        &dir,
        PythonConfig {
            max_execution_time: Duration::from_millis(800),
            ..PythonConfig::default()
        },
    );
    let err = ep.call(&request("spawner", json!({}))).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("timeout"));
    let pid: i32 = std::fs::read_to_string(dir.path().join("child.pid"))
        .expect("the script recorded its child")
        .trim()
        .parse()
        .expect("pid");
    let child = nix::unistd::Pid::from_raw(pid);
    let mut gone = false;
    for _ in 0..50 {
        // The killed child is reaped by init; until then it is a zombie, which /proc shows.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.is_empty() || state.split_whitespace().nth(2) == Some("Z") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL); // tidy up if not
    assert!(gone, "the script's child ({pid}) was killed with it");
}

#[tokio::test]
async fn cancellation_kills_the_script() {
    let dir = scripts(&[("slow.py", "import time\ntime.sleep(10)\n")]);
    let ep = endpoint(&dir, PythonConfig::default());
    let req = request("slow", json!({}));
    let cancel = req.cancel.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    assert_eq!(ep.call(&req).await.unwrap_err().kind, ErrorKind::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(5));
    canceller.await.unwrap();
}

#[tokio::test]
async fn bpmn_error_on_stdout_is_a_business_outcome() {
    let dir = scripts(&[(
        "check.py",
        "import json\nprint(json.dumps({'bpmn_error': {'code': 'CREDIT_DENIED', \
         'message': 'score too low'}}))\n",
    )]);
    let ep = endpoint(&dir, PythonConfig::default());
    let err = ep.call(&request("check", json!({}))).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Business {
            error_code: "CREDIT_DENIED".into()
        }
    );
    assert_eq!(err.message, "score too low");
}

#[tokio::test]
async fn invalid_or_oversized_output_is_permanent() {
    let dir = scripts(&[
        ("chatty.py", "print('hello, not json')\n"),
        ("big.py", "import sys\nsys.stdout.write('x' * 100000)\n"),
    ]);
    let ep = endpoint(
        &dir,
        PythonConfig {
            max_output_bytes: 1000,
            ..PythonConfig::default()
        },
    );
    let err = ep.call(&request("chatty", json!({}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("invalid_output"));
    assert_eq!(err.details.as_deref(), Some("hello, not json\n"));
    let err = ep.call(&request("big", json!({}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("output_too_large"));
}

#[tokio::test]
async fn the_environment_is_cleared_except_for_the_configured_variables() {
    assert!(std::env::var_os("HOME").is_some() || std::env::var_os("CARGO").is_some());
    let dir = scripts(&[(
        "env.py",
        "import json, os\nprint(json.dumps(dict(os.environ)))\n",
    )]);
    let ep = endpoint(
        &dir,
        PythonConfig {
            env: BTreeMap::from([("API_KEY".into(), Secret::new("k-1"))]),
            ..PythonConfig::default()
        },
    );
    let reply = ep.call(&request("env", json!({}))).await.unwrap();
    let env = reply.output.as_object().unwrap();
    assert_eq!(env.get("API_KEY"), Some(&json!("k-1")));
    assert_eq!(env.get("PATH"), Some(&json!(SAFE_PATH)));
    assert!(
        !env.contains_key("HOME") && !env.contains_key("CARGO"),
        "{env:?}"
    );
    // Besides ours, only what the interpreter itself may add (e.g. LC_CTYPE).
    let ours = [
        "API_KEY",
        "PATH",
        "LANG",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
    ];
    let extra: Vec<&String> = env
        .keys()
        .filter(|k| !ours.contains(&k.as_str()) && k.as_str() != "LC_CTYPE")
        .collect();
    assert!(extra.is_empty(), "unexpected variables: {extra:?}");
}

#[tokio::test]
async fn a_script_name_cannot_escape_scripts_dir() {
    let dir = scripts(&[]);
    let ep = endpoint(&dir, PythonConfig::default());
    for name in ["../evil.py", "/tmp/evil.py", "sub/x.py", "..", ".hidden.py"] {
        let mut req = request("x", json!({}));
        req.properties.insert("pde.script".into(), name.into());
        let err = ep.call(&req).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Permanent, "{name}");
        assert_eq!(err.code.as_deref(), Some("invalid_script"), "{name}");
    }
    let err = ep.call(&request("missing", json!({}))).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("script_not_found"));
    assert!(err.message.contains("missing.py"), "{}", err.message);
}

#[tokio::test]
async fn worker_pool_size_bounds_concurrent_scripts() {
    let script = "import json, time\nstart = time.time()\ntime.sleep(0.3)\n\
                  print(json.dumps({'start': start, 'end': time.time()}))\n";
    let dir = scripts(&[("work.py", script)]);
    // The limit is the layer stack's (worker_pool_size is the python kind's max_concurrency).
    let ep = crate::endpoints::EndpointConfig::Python(PythonConfig {
        scripts_dir: dir.path().to_path_buf(),
        worker_pool_size: 1,
        ..PythonConfig::default()
    })
    .build("py", &crate::endpoints::BuildContext::default())
    .unwrap();
    let (a, b) = (request("work", json!({})), request("work", json!({})));
    let (a, b) = tokio::join!(ep.call(&a), ep.call(&b));
    let (a, b) = (a.unwrap().output, b.unwrap().output);
    let (first, second) = if a["start"].as_f64() < b["start"].as_f64() {
        (a, b)
    } else {
        (b, a)
    };
    assert!(
        second["start"].as_f64().unwrap() >= first["end"].as_f64().unwrap(),
        "overlapping runs: {first} {second}"
    );
}

#[test]
fn validate_reports_bad_limits_and_names_without_touching_the_disk() {
    let config = PythonConfig {
        scripts_dir: PathBuf::from("/does/not/exist"),
        script: Some("../x.py".into()),
        worker_pool_size: 0,
        max_execution_time: Duration::ZERO,
        ..PythonConfig::default()
    };
    let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["worker_pool_size", "max_execution_time", "script"]);
    assert!(PythonConfig::default().validate().is_empty());
    assert!(PythonEndpoint::new("py", &config).is_err());
}

#[test]
fn parses_from_yaml_with_defaults() {
    let yaml = "type: python\nmax_execution_time: 2m\nenv: {TOKEN: abc}\n";
    let config: crate::endpoints::EndpointConfig = serde_yaml::from_str(yaml).unwrap();
    let crate::endpoints::EndpointConfig::Python(py) = &config else {
        panic!("not python: {config:?}")
    };
    assert_eq!(py.max_execution_time, Duration::from_secs(120));
    assert_eq!((py.worker_pool_size, py.python.as_str()), (5, "python3"));
    assert_eq!(py.scripts_dir, PathBuf::from("scripts"));
    assert!(config.validate().is_empty());
    assert!(
        serde_yaml::from_str::<crate::endpoints::EndpointConfig>("type: python\npool: 3\n")
            .is_err()
    );
}

#[test]
fn debug_output_hides_env_values() {
    let config = PythonConfig {
        env: BTreeMap::from([("API_KEY".into(), Secret::new("s3cret"))]),
        ..PythonConfig::default()
    };
    assert!(!format!("{config:?}").contains("s3cret"));
    let ep = PythonEndpoint::new("py", &config).unwrap();
    assert!(!format!("{ep:?}").contains("s3cret"));
}

#[test]
fn limits_past_what_a_host_can_hold_are_refused_by_name() {
    let config = PythonConfig {
        worker_pool_size: usize::MAX >> 2,
        max_execution_time: Duration::from_secs(300_000 * 365 * 24 * 3600),
        max_output_bytes: usize::MAX,
        ..PythonConfig::default()
    };
    let problems = config.validate();
    let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["worker_pool_size", "max_execution_time", "max_output_bytes"]
    );
    assert!(problems[1].1.contains("24h"), "{problems:?}");
}

#[test]
fn a_script_has_side_effects_unless_declared_pure() {
    let yaml = "type: python\npure: true\n";
    let crate::endpoints::EndpointConfig::Python(pure) = serde_yaml::from_str(yaml).unwrap() else {
        panic!("not python")
    };
    assert!(pure.pure);
    assert!(!PythonEndpoint::new("py", &pure).unwrap().side_effects());
    let default = PythonEndpoint::new("py", &PythonConfig::default()).unwrap();
    assert!(default.side_effects(), "impure unless said otherwise");
}

/// Running: the process exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[test]
fn a_script_outlives_the_thread_that_asked_for_it() {
    // The parent-death signal fires when the forking *thread* ends: a script started from a
    // thread that then ends (a retired blocking-pool thread, say) must keep running.
    let pid = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut command = Command::new("sleep");
            command.arg("30").kill_on_drop(false);
            let child = lifetime::spawn(command).await.unwrap();
            child.id().unwrap()
        })
    })
    .join()
    .unwrap();
    let _cleanup = lifetime::Group::new(Some(pid));
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        assert!(
            running(pid),
            "the script died with the thread that asked for it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_probe_checks_the_interpreter_and_the_script_file() {
    let dir = scripts(&[("work.py", "print('{}')\n")]);
    let fixed = |script: &str, python: &str| {
        endpoint(
            &dir,
            PythonConfig {
                script: Some(script.into()),
                python: python.into(),
                ..PythonConfig::default()
            },
        )
    };
    fixed("work.py", "python3").probe().await.unwrap();
    let err = fixed("gone.py", "python3").probe().await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("script_not_found"), "{err}");
    assert!(err.message.contains("gone.py"), "{err}");
    let err = fixed("work.py", "no-such-python-3")
        .probe()
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("interpreter"), "{err}");
    // A script chosen per task: the scripts directory must be readable.
    endpoint(&dir, PythonConfig::default())
        .probe()
        .await
        .unwrap();
}

mod warm;
