//! `mode: warm` with a real `python3`: the same outcomes as process mode, interpreters reused,
//! replaced after a crash, a timeout or `max_tasks_per_worker`, and re-imported on change.

use super::*;

fn warm(config: PythonConfig) -> PythonConfig {
    PythonConfig {
        mode: Mode::Warm,
        ..config
    }
}

/// Runs as a warm `handle(task)` and as a process-mode program alike.
const BOTH: &str = r#"
import json, os, sys

calls = 0

def handle(task):
    global calls
    calls += 1
    v = task["variables"]
    if v.get("noisy"):
        print("the script's own stdout")
        print("and its stderr", file=sys.stderr)
    if v.get("fail"):
        print("step 1 done", file=sys.stderr)
        raise ValueError("no customer")
    if v.get("exit") is not None:
        sys.exit(v["exit"])
    if v.get("crash") is not None:
        os._exit(v["crash"])
    if v.get("hang"):
        import time
        time.sleep(30)
    if v.get("reject"):
        return {"bpmn_error": {"code": "REJECTED", "message": "too risky"}}
    return {"task": task, "pid": os.getpid(), "calls": calls}

if __name__ == "__main__":
    json.dump(handle(json.load(sys.stdin)), sys.stdout)
"#;

fn output_without_pid(reply: EndpointReply) -> Value {
    let mut output = reply.output;
    output.as_object_mut().unwrap().remove("pid");
    output
}

fn pid(reply: &EndpointReply) -> u64 {
    reply.output["pid"].as_u64().unwrap()
}

#[tokio::test]
async fn handle_gets_the_same_task_and_its_prints_stay_out_of_the_result() {
    let dir = scripts(&[("both.py", BOTH)]);
    let mut req = request("both", json!({"amount": 12.5, "items": [1, "ü"]}));
    req.properties.insert("pde.x".into(), "y".into());
    req.feedback = Some("try harder".into());
    let warm_ep = endpoint(&dir, warm(PythonConfig::default()));
    let process_ep = endpoint(&dir, PythonConfig::default());
    let warm_out = output_without_pid(warm_ep.call(&req).await.unwrap());
    let process_out = output_without_pid(process_ep.call(&req).await.unwrap());
    assert_eq!(warm_out, process_out);
    assert_eq!(warm_out["task"]["feedback"], json!("try harder"));
    assert_eq!(warm_out["task"]["variables"]["items"], json!([1, "ü"]));
    let noisy = warm_ep
        .call(&request("both", json!({"noisy": true})))
        .await
        .unwrap();
    assert_eq!(noisy.output["calls"], json!(2));
}

#[tokio::test]
async fn bpmn_errors_exceptions_and_exit_codes_map_as_in_process_mode() {
    let dir = scripts(&[("both.py", BOTH)]);
    let warm_ep = endpoint(&dir, warm(PythonConfig::default()));
    let process_ep = endpoint(&dir, PythonConfig::default());
    for variables in [
        json!({"reject": true}),
        json!({"fail": true}),
        json!({"exit": 2}),
        json!({"exit": 3}),
    ] {
        let req = request("both", variables.clone());
        let w = warm_ep.call(&req).await.unwrap_err();
        let p = process_ep.call(&req).await.unwrap_err();
        assert_eq!((&w.kind, &w.code), (&p.kind, &p.code), "{variables}");
        assert_eq!(w.message, p.message, "{variables}");
    }
    let fail = warm_ep
        .call(&request("both", json!({"fail": true})))
        .await
        .unwrap_err();
    assert_eq!(fail.kind, ErrorKind::Transient { retry_after: None });
    assert!(
        fail.message.ends_with("ValueError: no customer"),
        "{}",
        fail.message
    );
    let details = fail.details.unwrap();
    assert!(
        details.starts_with("step 1 done") && details.contains("Traceback"),
        "{details}"
    );
    // None of them cost the interpreter: the script was imported once.
    let ok = warm_ep.call(&request("both", json!({}))).await.unwrap();
    assert_eq!(ok.output["calls"], json!(6));
}

#[tokio::test]
async fn an_interpreter_serves_many_tasks_until_max_tasks_per_worker() {
    let dir = scripts(&[("both.py", BOTH)]);
    let ep = endpoint(
        &dir,
        warm(PythonConfig {
            max_tasks_per_worker: Some(2),
            ..PythonConfig::default()
        }),
    );
    let req = request("both", json!({}));
    let mut pids = Vec::new();
    for _ in 0..5 {
        pids.push(pid(&ep.call(&req).await.unwrap()));
    }
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2]);
    assert_eq!(pids[2], pids[3]);
    assert_ne!(pids[3], pids[4]);
    assert!(!running(pids[0] as u32), "a recycled interpreter is gone");
}

#[tokio::test]
async fn a_crash_costs_its_task_and_the_interpreter_is_replaced() {
    let dir = scripts(&[("both.py", BOTH)]);
    let ep = endpoint(&dir, warm(PythonConfig::default()));
    let first = pid(&ep.call(&request("both", json!({}))).await.unwrap());
    let err = ep
        .call(&request("both", json!({"crash": 3})))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient { retry_after: None });
    assert_eq!(err.code.as_deref(), Some("exit_3"));
    let next = ep.call(&request("both", json!({}))).await.unwrap();
    assert_ne!(pid(&next), first);
    assert_eq!(next.output["calls"], json!(1));
}

#[tokio::test]
async fn a_hanging_task_is_killed_with_its_interpreter_and_the_next_one_runs() {
    let dir = scripts(&[("both.py", BOTH)]);
    let ep = endpoint(
        &dir,
        warm(PythonConfig {
            max_execution_time: Duration::from_millis(1500),
            ..PythonConfig::default()
        }),
    );
    let first = pid(&ep.call(&request("both", json!({}))).await.unwrap());
    let err = ep
        .call(&request("both", json!({"hang": true})))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient { retry_after: None });
    assert_eq!(err.code.as_deref(), Some("timeout"));
    assert!(!running(first as u32), "the hanging interpreter was killed");
    let next = ep.call(&request("both", json!({}))).await.unwrap();
    assert_ne!(pid(&next), first);
}

#[tokio::test]
async fn a_changed_script_is_imported_again() {
    let dir = scripts(&[("v.py", "def handle(task):\n    return 'v1'\n")]);
    let ep = endpoint(&dir, warm(PythonConfig::default()));
    let req = request("v", json!({}));
    assert_eq!(ep.call(&req).await.unwrap().output, json!("v1"));
    let path = dir.path().join("v.py");
    std::fs::write(&path, "def handle(task):\n    return 'v2'\n").unwrap();
    // A later modification time, whatever the file system's granularity.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(ep.call(&req).await.unwrap().output, json!("v2"));
}

#[tokio::test]
async fn a_script_without_handle_fails_clearly_in_warm_mode() {
    let dir = scripts(&[("old.py", ECHO)]);
    let ep = endpoint(&dir, warm(PythonConfig::default()));
    let err = ep.call(&request("old", json!({}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some(class::INVALID_SCRIPT));
    assert!(
        err.message.contains("`old.py`")
            && err.message.contains("handle(task)")
            && err.message.contains("mode: process"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_script_failing_at_import_is_transient_like_a_process_exiting_1() {
    let dir = scripts(&[(
        "bad.py",
        "raise RuntimeError('no database')\ndef handle(task):\n    return 1\n",
    )]);
    let ep = endpoint(&dir, warm(PythonConfig::default()));
    let err = ep.call(&request("bad", json!({}))).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("exit_1"));
    assert!(
        err.message.ends_with("RuntimeError: no database"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_result_larger_than_max_output_bytes_is_refused() {
    let dir = scripts(&[("big.py", "def handle(task):\n    return 'x' * 10000\n")]);
    let ep = endpoint(
        &dir,
        warm(PythonConfig {
            max_output_bytes: 1000,
            ..PythonConfig::default()
        }),
    );
    let err = ep.call(&request("big", json!({}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some(class::OUTPUT_TOO_LARGE));
}

#[test]
fn mode_reload_and_recycling_parse_from_yaml() {
    let yaml = "type: python\nmode: warm\nmax_tasks_per_worker: 100\nreload: never\n";
    let config: crate::endpoints::EndpointConfig = serde_yaml::from_str(yaml).unwrap();
    let crate::endpoints::EndpointConfig::Python(py) = &config else {
        panic!("not python: {config:?}")
    };
    assert_eq!(
        (py.mode, py.max_tasks_per_worker, py.reload),
        (Mode::Warm, Some(100), Reload::Never)
    );
    assert!(config.validate().is_empty());
    let zero = PythonConfig {
        max_tasks_per_worker: Some(0),
        ..PythonConfig::default()
    };
    assert_eq!(zero.validate()[0].0, "max_tasks_per_worker");
    assert!(
        serde_yaml::from_str::<crate::endpoints::EndpointConfig>("type: python\nmode: hot\n")
            .is_err()
    );
}

#[tokio::test]
async fn a_fixed_script_is_warmed_up_at_build() {
    let dir = scripts(&[("both.py", BOTH)]);
    let config = warm(PythonConfig {
        scripts_dir: dir.path().to_path_buf(),
        script: Some("both.py".into()),
        worker_pool_size: 2,
        ..PythonConfig::default()
    });
    let tracker = tokio_util::task::TaskTracker::new();
    let cx = BuildContext::new(tokio_util::sync::CancellationToken::new(), tracker.clone());
    let ep = PythonEndpoint::with_context("py", &config, &cx).unwrap();
    tracker.close();
    tracker.wait().await;
    assert_eq!(ep.pools.idle_count("both.py"), 2);
    let reply = ep.call(&request("any", json!({}))).await.unwrap();
    assert_eq!(reply.output["calls"], json!(1));
    assert_eq!(ep.pools.idle_count("both.py"), 2, "served by a warm one");
}

#[test]
fn validate_can_tell_a_fixed_script_without_handle() {
    let dir = scripts(&[("old.py", ECHO), ("both.py", BOTH)]);
    let config = |script: &str, mode| PythonConfig {
        scripts_dir: dir.path().to_path_buf(),
        script: Some(script.into()),
        mode,
        ..PythonConfig::default()
    };
    let (path, message) = config("old.py", Mode::Warm).warm_script_problem().unwrap();
    assert_eq!(path, "script");
    assert!(
        message.contains("`old.py`") && message.contains("mode: process"),
        "{message}"
    );
    assert_eq!(config("both.py", Mode::Warm).warm_script_problem(), None);
    assert_eq!(config("old.py", Mode::Process).warm_script_problem(), None);
}

#[tokio::test]
async fn a_memory_error_costs_its_task_and_the_interpreter_is_replaced() {
    let dir = scripts(&[(
        "hungry.py",
        "import os\ndef handle(task):\n    if task['variables'].get('eat'):\n        raise MemoryError()\n    return os.getpid()\n",
    )]);
    let ep = endpoint(&dir, warm(PythonConfig::default()));
    let first = ep.call(&request("hungry", json!({}))).await.unwrap().output;
    let err = ep
        .call(&request("hungry", json!({"eat": true})))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("exit_1"));
    assert!(err.message.ends_with("MemoryError"), "{}", err.message);
    let next = ep.call(&request("hungry", json!({}))).await.unwrap().output;
    assert_ne!(next, first);
}
