//! Soak: many tasks through the real `procos` binary while the engine misbehaves at random, to
//! find what the fault suite's few hundred tasks cannot: a task lost or run twice once in
//! 100,000, memory that grows with the tasks seen, a fault sequence nobody thought of.
//!
//! ```text
//! this process: engine (in memory) ◄── FaultProxy ◄── procos (child) ──► sink (POST /effect)
//!               seeder: starts the instances     fault loop: one random fault every 1–4 s
//! ```
//!
//!     cargo bench --bench soak                          # 100,000 tasks
//!     SOAK_TASKS=10000 SOAK_SEED=7 cargo bench --bench soak
//!
//! Environment: `SOAK_TASKS` (100000), `SOAK_SEED` (random; printed, so a run can be repeated),
//! `SOAK_MAX_FAULTS` (300), `SOAK_FAULT_WINDOW` (seconds during which faults are injected, 600),
//! `SOAK_TIMEOUT` (seconds to wait for the last task, 3600), `SOAK_NO_JOURNAL=1` (leave
//! `pde_manager.state_dir` out, for a procos that does not know the key).
//!
//! Every task's endpoint is a non-GET `http` call to a sink in this process, which counts calls
//! per task id: a side-effecting endpoint that must never run twice for one task. Faults stay on
//! loopback and are bounded in count and time. Prints lost (instances that never ended),
//! duplicated (task ids whose side effect ran more than once) and procos's RSS before and after;
//! exits 1 if anything was lost or duplicated.

// The suite's fault proxy, shared rather than copied: one proxy to trust. Not every control is
// used here.
#[allow(dead_code)]
#[path = "../tests/support/fault_proxy.rs"]
mod fault_proxy;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use fault_proxy::FaultProxy;
use futures::StreamExt;
use procos::engine::{Engine, EngineOptions};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::process::Command;

const BPMN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="soak">
  <bpmn:process id="soak" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="s" />
    <bpmn:serviceTask id="work" camunda:type="external" camunda:topic="effect" />
    <bpmn:endEvent id="e" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="work" />
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"#;

/// Side effects per task id, counted by the sink.
type Effects = Arc<Mutex<HashMap<String, u32>>>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let clean = runtime.block_on(run());
    std::process::exit(if clean { 0 } else { 1 });
}

/// procos's resident set size in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn record(State(effects): State<Effects>, Json(body): Json<Value>) -> Json<Value> {
    let task = body["task"].as_str().unwrap_or("").to_string();
    *effects.lock().expect("sink lock").entry(task).or_insert(0) += 1;
    Json(json!({ "ok": true }))
}

fn config(sink_port: u16, journal: bool) -> String {
    let state = if journal { "  state_dir: state\n" } else { "" };
    format!(
        r#"camunda:
  url: ${{CAMUNDA_URL}}
  worker_id: soak
  lock_duration: 5s
  long_poll: 5s
  max_tasks: 200
  backoff: {{ initial: 100ms, max: 2s }}
admin:
  listen: 127.0.0.1:0
deploy:
  dir: bpmn
  watch: false
pde_manager:
{state}  shutdown_grace: 10s
  pools:
    gp: {{ instances: 4, endpoints: [effect], max_concurrent_tasks: 200 }}
topics:
  effect: {{ pool: gp, endpoints: [effect], retries: 3, retry_timeout: 1s }}
endpoints:
  effect:
    type: http
    method: POST
    url: "http://127.0.0.1:{sink_port}/effect"
    body: {{ task: "{{{{ task.id }}}}" }}
    timeout: 10s
    allowed_hosts: ["127.0.0.1"]
"#
    )
}

/// Injects one random fault and returns a line describing it.
async fn one_fault(proxy: &FaultProxy, rng: &mut StdRng) -> String {
    let secs = |rng: &mut StdRng, lo: f64, hi: f64| {
        Duration::from_secs_f64(lo + (hi - lo) * rng.random::<f64>())
    };
    match rng.random_range(0..7u32) {
        0 => {
            let d = secs(rng, 1.0, 7.0);
            proxy.freeze();
            tokio::time::sleep(d).await;
            proxy.resume();
            format!("freeze {d:.1?} (locks are 5s)")
        }
        1 => {
            let d = secs(rng, 1.0, 4.0);
            let burst = rng.random_range(0..10usize);
            proxy.down().await;
            tokio::time::sleep(d).await;
            proxy.fail_next("", burst, 503);
            proxy.up().await;
            format!("engine down {d:.1?}, then {burst} × 503")
        }
        2 => {
            let n = rng.random_range(1..20usize);
            let status = if rng.random::<bool>() { 500 } else { 503 };
            proxy.fail_next("", n, status);
            format!("{n} × {status}")
        }
        3 => {
            let n = rng.random_range(1..10usize);
            proxy.drop_next("/complete", n);
            format!("{n} complete connections dropped")
        }
        4 => {
            let n = rng.random_range(1..10usize);
            proxy.lose_reply_next("/complete", n);
            format!("{n} complete replies lost after the engine acted")
        }
        5 => {
            let n = rng.random_range(1..3usize);
            proxy.truncate_next("/fetchAndLock", n);
            format!("{n} fetchAndLock replies truncated")
        }
        _ => {
            let complete = secs(rng, 2.0, 5.0);
            let fetch = secs(rng, 1.0, 3.0);
            let d = secs(rng, 5.0, 10.0);
            proxy.delay("/complete", complete);
            proxy.delay_reply("/fetchAndLock", fetch);
            tokio::time::sleep(d).await;
            proxy.clear_delays();
            format!("slow engine for {d:.1?}: complete +{complete:.1?}, fetch replies +{fetch:.1?}")
        }
    }
}

async fn run() -> bool {
    let tasks: u64 = env_or("SOAK_TASKS", 100_000);
    let seed: u64 = env_or("SOAK_SEED", rand::random::<u64>());
    let max_faults: usize = env_or("SOAK_MAX_FAULTS", 300);
    let window = Duration::from_secs(env_or("SOAK_FAULT_WINDOW", 600));
    let timeout = Duration::from_secs(env_or("SOAK_TIMEOUT", 3600));
    let journal = std::env::var_os("SOAK_NO_JOURNAL").is_none();
    println!(
        "soak: {tasks} tasks, seed {seed}, ≤ {max_faults} faults in the first {window:?}, journal {journal}"
    );

    let engine = Engine::start_local(EngineOptions {
        quiet: true,
        ..Default::default()
    })
    .await
    .expect("engine");
    let proxy = Arc::new(FaultProxy::start(&engine.url).await);

    let effects: Effects = Arc::default();
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("sink binds");
    let sink_port = sink.local_addr().expect("sink addr").port();
    let app = axum::Router::new()
        .route("/effect", post(record))
        .with_state(effects.clone());
    tokio::spawn(async move { axum::serve(sink, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("bpmn")).expect("bpmn dir");
    std::fs::write(dir.path().join("bpmn/soak.bpmn"), BPMN).expect("bpmn");
    std::fs::write(dir.path().join("pde.yaml"), config(sink_port, journal)).expect("config");
    let log = std::fs::File::create(dir.path().join("procos.log")).expect("log file");
    let mut procos = Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["--config", "pde.yaml", "--log-format", "json"])
        .args(["--log-filter", "warn"])
        .current_dir(dir.path())
        .env("CAMUNDA_URL", &proxy.url)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("procos starts");
    let pid = procos.id().expect("procos pid");

    let http = reqwest::Client::new();
    let deployed = format!("{}/process-definition/key/soak", engine.url);
    while !http
        .get(&deployed)
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
    {
        if let Ok(Some(status)) = procos.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("procos.log")).unwrap_or_default();
            println!("procos exited before deploying ({status}):\n{log}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_before = rss_kib(pid);
    let started = Instant::now();

    let seeder = {
        let (http, url) = (
            http.clone(),
            format!("{}/process-definition/key/soak/start", engine.url),
        );
        tokio::spawn(async move {
            futures::stream::iter(0..tasks)
                .map(|i| {
                    let (http, url) = (http.clone(), url.clone());
                    async move {
                        let body = json!({"variables": {"i": {"value": i, "type": "Long"}}});
                        while !http
                            .post(&url)
                            .json(&body)
                            .send()
                            .await
                            .map(|r| r.status().is_success())
                            .unwrap_or(false)
                        {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                })
                .buffer_unordered(8)
                .collect::<()>()
                .await;
        })
    };

    let faults = {
        let (proxy, engine) = (proxy.clone(), engine.engine.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut injected = 0;
            while injected < max_faults
                && started.elapsed() < window
                && engine.stats().instances_completed < tasks
            {
                let pause = Duration::from_secs_f64(1.0 + 3.0 * rng.random::<f64>());
                tokio::time::sleep(pause).await;
                let what = one_fault(&proxy, &mut rng).await;
                injected += 1;
                println!("  {:>7.1?}  fault {injected}: {what}", started.elapsed());
            }
            injected
        })
    };

    let mut last_report = Instant::now();
    while engine.engine.stats().instances_completed < tasks && started.elapsed() < timeout {
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let stats = engine.engine.stats();
            println!(
                "  {:>7.1?}  started {}, completed {}, side effects {}, procos RSS {} KiB",
                started.elapsed(),
                stats.instances_started,
                stats.instances_completed,
                effects.lock().expect("sink lock").len(),
                rss_kib(pid)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    let injected = faults.await.unwrap_or(0);
    seeder.abort();
    // Late duplicates (a copy still running somewhere) would land within a lock or two.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_after = rss_kib(pid);

    let stats = engine.engine.stats();
    let (ran, duplicated, extra_runs) = {
        let effects = effects.lock().expect("sink lock");
        let dups: Vec<u32> = effects.values().copied().filter(|n| *n > 1).collect();
        let extra: u32 = dups.iter().map(|n| n - 1).sum();
        (effects.len() as u64, dups.len() as u64, extra)
    };
    let lost = tasks.saturating_sub(stats.instances_completed);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let exit = tokio::time::timeout(Duration::from_secs(30), procos.wait())
        .await
        .ok()
        .and_then(|s| s.ok())
        .and_then(|s| s.code());

    println!("soak finished in {elapsed:.1?} (seed {seed}, journal {journal})");
    println!("  tasks:               {tasks}");
    println!("  faults injected:     {injected}");
    println!("  proxy requests:      {:?}", proxy.counts());
    println!("  lost:                {lost} (instances not completed)");
    println!(
        "  duplicated:          {duplicated} task ids ran their side effect more than once ({extra_runs} extra runs)"
    );
    println!("  never ran:           {}", tasks.saturating_sub(ran));
    println!(
        "  engine:              {} complete ok, {} rejected, {} fetched, {} incidents",
        stats.complete_ok, stats.complete_rejected, stats.fetched_tasks, stats.incidents_created
    );
    println!("  procos RSS before:   {rss_before} KiB (booted, idle)");
    println!("  procos RSS after:    {rss_after} KiB (all done, idle)");
    println!("  procos exit code after SIGTERM: {exit:?}");
    lost == 0 && duplicated == 0
}
