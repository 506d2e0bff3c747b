//! Python scripts never outlive procos (issue 8, defect 4): neither a SIGKILL of procos nor the
//! second signal (exit 130) leaves a script running beside the redelivered copy of its task.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::{config, eventually, stage};

/// Writes its pid (and, with `child`, the pid of a `sleep` it started) then sleeps far past the
/// test: only a kill ends it.
const SLEEPER: &str = r#"import json, os, subprocess, sys, time
task = json.load(sys.stdin)
out = task["variables"]["out"]
if task["variables"].get("child"):
    child = subprocess.Popen(["sleep", "300"])
    open(out + ".child.tmp", "w").write(str(child.pid))
    os.rename(out + ".child.tmp", out + ".child")
open(out + ".tmp", "w").write(str(os.getpid()))
os.rename(out + ".tmp", out)
time.sleep(300)
"#;

fn sleeper_config() -> String {
    config(
        "",
        &["py"],
        "  sleepy:\n    pool: gp\n    endpoints: [py]\n",
        "  py: { type: python, script: sleeper.py, max_execution_time: 10m }\n",
    )
}

/// Reads a pid file once the script has written it.
async fn pid_in(file: &Path) -> i32 {
    let written = eventually(Duration::from_secs(30), || async { file.exists() }).await;
    assert!(written, "the script wrote {}", file.display());
    std::fs::read_to_string(file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

/// Running: the process exists and is not a zombie waiting for a reaper.
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the `(comm)` one: `pid (comm) S …`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

async fn gone_within(pid: i32, within: Duration) -> bool {
    eventually(within, || async { !running(pid) }).await
}

/// Kills a pid left over by a failed assertion, so a red test leaves nothing behind.
struct Reap(Vec<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn out_file(stage: &support::Stage) -> PathBuf {
    stage.work.path().join("script.pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_procos_takes_its_running_script_with_it() {
    let mut s = stage(&sleeper_config(), "sleepy_p", "sleepy").await;
    s.work.script("sleeper.py", SLEEPER);
    let out = out_file(&s);
    s.rest
        .start("sleepy_p", json!({"out": out.to_string_lossy()}))
        .await;
    let pid = pid_in(&out).await;
    let _reap = Reap(vec![pid]);
    assert!(running(pid), "the script runs");

    s.procos.child.start_kill().expect("SIGKILL procos");
    let _ = s.procos.child.wait().await;

    assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "script {pid} still runs 2 s after procos was SIGKILLed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_signal_takes_the_script_and_what_it_started_with_it() {
    let mut s = stage(&sleeper_config(), "sleepy_q", "sleepy").await;
    s.work.script("sleeper.py", SLEEPER);
    let out = out_file(&s);
    s.rest
        .start(
            "sleepy_q",
            json!({"out": out.to_string_lossy(), "child": true}),
        )
        .await;
    let pid = pid_in(&out).await;
    let child = pid_in(&out.with_extension("pid.child")).await;
    let _reap = Reap(vec![pid, child]);
    assert!(
        running(pid) && running(child),
        "the script and its child run"
    );

    s.procos.sigterm();
    s.procos
        .wait_log("send the signal again", Duration::from_secs(10))
        .await;
    s.procos.sigterm();
    assert_eq!(s.procos.exit_code(Duration::from_secs(10)).await, 130);

    assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "script {pid} still runs 2 s after procos exited 130"
    );
    assert!(
        gone_within(child, Duration::from_secs(2)).await,
        "the script's child {child} still runs 2 s after procos exited 130"
    );
}
