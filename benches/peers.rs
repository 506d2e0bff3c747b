//! The peer benchmark (issue 12): procos against the Camunda clients people use instead of it,
//! and against the limit, each draining the same tasks from the same in-repo engine, in one run.
//!
//!     bench/run                                   # installs the clients, then runs this
//!     bench/run --tasks 5000 --scale 1000,10000   # more tasks per worker, a shorter scaling row
//!     cargo bench --bench peers -- --only procos,raw   # without the clients (no install)
//!
//! ```text
//!  this process                                         one worker process at a time
//!  engine (in memory) ◄─ probe layer ◄─ loopback HTTP ── procos (release binary, noop endpoint)
//!    ▲ instances started in process                     JS client, default settings / tuned
//!    │ (the router called directly, no socket)          Python client (community, PyPI)
//!  this harness reads /proc/<pid> of the worker         raw loop (this binary, `raw-loop`)
//! ```
//!
//! Per worker, on a fresh engine:
//! 1. **drain**: the worker starts and polls; the probe layer holds its `fetchAndLock` calls
//!    while N instances (one external task each, topic `work`) are started, then lets them
//!    through. tasks/s = N ÷ (gate opened → the N-th instance completed); CPU = the worker's
//!    utime + stime over the same span (`/proc/<pid>/stat`), per 1,000 tasks. Start-up is
//!    outside both.
//! 2. **pick-up**: with the worker idle, `--trickle` more instances are started one every
//!    40 ms (25 tasks/s, below every worker's capacity); pick-up latency = the instance's start
//!    call → the `fetchAndLock` reply that hands its task out (the probe layer reads the
//!    reply's `processInstanceId`s), p50 and p99.
//! 3. **peak RSS**: `VmHWM` of the worker process (`/proc/<pid>/status`), then it is killed.
//!
//! Then the scaling row: procos alone draining 1k → 10k → 100k tasks (`--scale`), with its CPU
//! per 1,000 tasks at each size (flat = the cost per task does not grow with the backlog).
//! The clients come from `BENCH_NODE_WORKER` (bench/clients/worker.mjs next to the pinned
//! `node_modules`) and `BENCH_PYTHON` (the venv with the pinned Python client), which
//! bench/run sets; a row whose client is missing is skipped with a note. Not a test: nothing is
//! asserted.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use clap::{Parser, Subcommand, ValueEnum};
use procos::engine::{Engine, EngineOptions};
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt as _;

const BPMN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="bench">
  <bpmn:process id="bench" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="s" />
    <bpmn:serviceTask id="a" camunda:type="external" camunda:topic="work" />
    <bpmn:endEvent id="e" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="a" />
    <bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"#;

/// The topic every worker drains.
const TOPIC: &str = "work";

/// Gap between the start calls of the pick-up phase (25 tasks/s offered).
const TRICKLE_GAP: Duration = Duration::from_millis(40);

/// Longest wait for anything (a worker's first poll, a drain): a stuck row ends the run loudly.
const PATIENCE: Duration = Duration::from_secs(900);

/// The peer benchmark's command line (after `cargo bench --bench peers --`).
#[derive(Debug, Parser)]
#[command(
    name = "peers",
    about = "procos against its peers: tasks/s, pick-up, RSS, CPU"
)]
struct Args {
    /// Tasks each worker drains (one external task per instance).
    #[arg(long, default_value_t = 2000)]
    tasks: usize,
    /// Tasks of the pick-up phase (one every 40 ms); 0 leaves the phase out.
    #[arg(long, default_value_t = 100)]
    trickle: usize,
    /// Sizes of procos's scaling row, comma-separated; empty (`--scale ''`) leaves it out.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    scale: Vec<usize>,
    /// The workers to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "procos,js-default,js-tuned,python,raw"
    )]
    only: Vec<Peer>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run as one of the workers.
    #[command(subcommand)]
    role: Option<Role>,
}

/// What this binary runs as when it is a worker rather than the harness.
#[derive(Debug, Subcommand)]
enum Role {
    /// The raw fetch + complete loop against the engine at `url`.
    RawLoop {
        /// The engine's REST root (`…/engine-rest`).
        url: String,
    },
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// The release `procos` binary with one `noop` endpoint.
    Procos,
    /// camunda-external-task-client-js with only baseUrl and workerId set.
    JsDefault,
    /// camunda-external-task-client-js tuned as its docs allow (bench/clients/worker.mjs).
    JsTuned,
    /// camunda-external-task-client-python3 (bench/clients/worker.py).
    Python,
    /// fetchAndLock + complete in a loop, reqwest on tokio: the limit.
    Raw,
}

impl Peer {
    fn label(self) -> &'static str {
        match self {
            Peer::Procos => "procos",
            Peer::JsDefault => "JS client, default",
            Peer::JsTuned => "JS client, tuned",
            Peer::Python => "Python client",
            Peer::Raw => "raw loop (limit)",
        }
    }
}

fn main() {
    let args = Args::parse();
    if let Some(Role::RawLoop { url }) = args.role {
        raw_loop(&url);
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(harness(args));
}

/// What one worker did.
struct Figures {
    tasks: usize,
    rate: f64,
    pickup: Option<(Duration, Duration)>,
    rss_kib: u64,
    cpu_per_1k: Duration,
}

async fn harness(args: Args) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "peer benchmark: {} tasks per worker (noop work, one external task per instance), \
         in-repo engine in this process over loopback; {cores} cores, load {}",
        args.tasks,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "pick-up latency: {} tasks offered at 25/s to the idle worker (start call → fetchAndLock reply)\n",
        args.trickle
    );
    println!(
        "{:<20} {:>9} {:>12} {:>12} {:>10} {:>13} {:>8} {:>11}",
        "worker",
        "tasks/s",
        "pick-up p50",
        "pick-up p99",
        "peak RSS",
        "CPU/1k tasks",
        "vs raw",
        "vs JS tuned"
    );
    let mut rows = Vec::new();
    for &peer in &args.only {
        let Some(figures) = run(peer, args.tasks, args.trickle).await else {
            continue;
        };
        rows.push((peer, figures));
    }
    let rate_of = |p: Peer| rows.iter().find(|(q, _)| *q == p).map(|(_, f)| f.rate);
    for (peer, f) in &rows {
        let ratio =
            |base: Option<f64>| base.map_or("—".into(), |b| format!("{:.2}×", f.rate / b));
        let (p50, p99) = f
            .pickup
            .map_or(("—".into(), "—".into()), |(a, b)| (ms(a), ms(b)));
        println!(
            "{:<20} {:>9.0} {:>12} {:>12} {:>10} {:>13} {:>8} {:>11}",
            peer.label(),
            f.rate,
            p50,
            p99,
            mib(f.rss_kib),
            ms(f.cpu_per_1k),
            ratio(rate_of(Peer::Raw)),
            ratio(rate_of(Peer::JsTuned))
        );
    }
    if args.scale.is_empty() {
        return;
    }
    println!("\nprocos scaling (drain only, fresh engine and process per size)");
    println!(
        "{:>9} {:>9} {:>13} {:>10}",
        "tasks", "tasks/s", "CPU/1k tasks", "peak RSS"
    );
    let mut costs = Vec::new();
    for &n in &args.scale {
        let Some(f) = run(Peer::Procos, n, 0).await else {
            return;
        };
        println!(
            "{:>9} {:>9.0} {:>13} {:>10}",
            f.tasks,
            f.rate,
            ms(f.cpu_per_1k),
            mib(f.rss_kib)
        );
        costs.push(f.cpu_per_1k);
    }
    if let (Some(first), Some(last)) = (costs.first(), costs.last()) {
        println!(
            "CPU per task, largest vs smallest size: {:.2}×",
            last.as_secs_f64() / first.as_secs_f64().max(f64::EPSILON)
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The engine with the probe in front, served on a free loopback port.
struct Bench {
    engine: Engine,
    /// The engine's routes without the probe, for starting instances in process.
    direct: axum::Router,
    url: String,
    probe: Arc<Probe>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Sits in front of the engine: holds `fetchAndLock` calls until the gate opens, counts them,
/// and while recording notes which process instances each reply handed out, and when.
struct Probe {
    open: tokio::sync::watch::Sender<bool>,
    polls: AtomicU64,
    recording: AtomicBool,
    fetched: Mutex<Vec<(String, Instant)>>,
}

/// The one field the probe reads from a locked task.
#[derive(Deserialize)]
struct Locked {
    #[serde(rename = "processInstanceId")]
    process_instance_id: String,
}

async fn probe(State(probe): State<Arc<Probe>>, request: Request, next: Next) -> Response {
    if !request
        .uri()
        .path()
        .ends_with("/external-task/fetchAndLock")
    {
        return next.run(request).await;
    }
    probe.polls.fetch_add(1, Ordering::SeqCst);
    let mut open = probe.open.subscribe();
    let _ = open.wait_for(|open| *open).await;
    let response = next.run(request).await;
    if !probe.recording.load(Ordering::SeqCst) {
        return response;
    }
    let at = Instant::now();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    if let Ok(tasks) = serde_json::from_slice::<Vec<Locked>>(&bytes) {
        let mut fetched = probe.fetched.lock().expect("probe lock");
        fetched.extend(tasks.into_iter().map(|t| (t.process_instance_id, at)));
    }
    Response::from_parts(parts, Body::from(bytes))
}

impl Bench {
    async fn start() -> Bench {
        let engine = Engine::new(EngineOptions {
            quiet: true,
            ..Default::default()
        });
        let probe = Arc::new(Probe {
            open: tokio::sync::watch::Sender::new(false),
            polls: AtomicU64::new(0),
            recording: AtomicBool::new(false),
            fetched: Mutex::new(Vec::new()),
        });
        let app = engine.router().layer(axum::middleware::from_fn_with_state(
            probe.clone(),
            self::probe,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the engine");
        let url = format!(
            "http://{}/engine-rest",
            listener.local_addr().expect("address")
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let http = reqwest::Client::new();
        let form = reqwest::multipart::Form::new()
            .text("deployment-name", "bench")
            .part(
                "bench.bpmn",
                reqwest::multipart::Part::text(BPMN).file_name("bench.bpmn"),
            );
        let deployed = http
            .post(format!("{url}/deployment/create"))
            .multipart(form)
            .send()
            .await
            .expect("deploy");
        assert!(
            deployed.status().is_success(),
            "deploy: {}",
            deployed.status()
        );
        Bench {
            direct: engine.router(),
            engine,
            url,
            probe,
            server,
        }
    }

    /// Starts one instance through the router (no socket); its id.
    async fn start_instance(&self) -> String {
        let request = axum::http::Request::post("/engine-rest/process-definition/key/bench/start")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"variables":{}}"#))
            .expect("request");
        let response = self.direct.clone().oneshot(request).await.expect("start");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("start reply");
        assert!(status.is_success(), "start: {status}");
        let reply: serde_json::Value = serde_json::from_slice(&bytes).expect("start reply");
        reply["id"].as_str().expect("instance id").to_owned()
    }

    async fn wait_completed(&self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.engine.stats().instances_completed < n as u64 {
            assert!(Instant::now() < deadline, "not drained in {PATIENCE:?}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Runs one worker through the three phases; `None` when its client is not installed.
async fn run(peer: Peer, tasks: usize, trickle: usize) -> Option<Figures> {
    let bench = Bench::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut command) = worker(peer, &bench.url, dir.path()) else {
        println!(
            "{:<20} skipped: client not installed (run bench/run)",
            peer.label()
        );
        return None;
    };
    let log = dir.path().join("worker.log");
    let mut child = command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("worker log"))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: cannot start: {e}", peer.label()));
    let pid = child.id().expect("worker pid");
    let deadline = Instant::now() + PATIENCE;
    while bench.probe.polls.load(Ordering::SeqCst) == 0 {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            panic!(
                "{} never polled; its log:\n{}",
                peer.label(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 1. Drain: N instances behind the gate, then let the worker at them.
    for _ in 0..tasks {
        bench.start_instance().await;
    }
    let cpu_before = cpu(pid);
    let opened = Instant::now();
    bench.probe.open.send_replace(true);
    bench.wait_completed(tasks).await;
    let elapsed = opened.elapsed();
    let cpu_used = cpu(pid).saturating_sub(cpu_before);

    // 2. Pick-up: instances one at a time to the idle worker.
    let pickup = if trickle > 0 {
        pickup(&bench, tasks, trickle).await
    } else {
        None
    };

    // 3. Peak RSS, then the worker goes.
    let rss_kib = vm_hwm(pid);
    let _ = child.kill().await;
    Some(Figures {
        tasks,
        rate: tasks as f64 / elapsed.as_secs_f64(),
        pickup,
        rss_kib,
        cpu_per_1k: cpu_used.mul_f64(1000.0 / tasks as f64),
    })
}

/// Starts `trickle` instances one every [`TRICKLE_GAP`] after `done` have completed; p50 and
/// p99 of start call → the fetchAndLock reply that handed the task out.
async fn pickup(bench: &Bench, done: usize, trickle: usize) -> Option<(Duration, Duration)> {
    bench.probe.recording.store(true, Ordering::SeqCst);
    let mut started = HashMap::new();
    let mut tick = tokio::time::interval(TRICKLE_GAP);
    for _ in 0..trickle {
        tick.tick().await;
        let at = Instant::now();
        started.insert(bench.start_instance().await, at);
    }
    bench.wait_completed(done + trickle).await;
    let fetched = bench.probe.fetched.lock().expect("probe lock");
    let mut waits: Vec<Duration> = fetched
        .iter()
        .filter_map(|(id, at)| started.get(id).map(|s| at.saturating_duration_since(*s)))
        .collect();
    waits.sort();
    let last = waits.len().checked_sub(1)?;
    let at = |q: f64| waits[(last as f64 * q).round() as usize];
    Some((at(0.50), at(0.99)))
}

/// The command that runs `peer` against the engine at `url`; `None` when its client is missing.
fn worker(peer: Peer, url: &str, dir: &Path) -> Option<tokio::process::Command> {
    let env = |name: &str| std::env::var_os(name).filter(|p| Path::new(p).exists());
    let command = match peer {
        Peer::Procos => {
            std::fs::create_dir_all(dir.join("bpmn")).expect("bpmn dir");
            let yaml = format!(
                r#"
camunda: {{ url: "{url}", max_tasks: 200, long_poll: 10s }}
deploy: {{ dir: "{}", watch: false }}
admin: {{ listen: "127.0.0.1:0" }}
pde_manager:
  pools:
    bench: {{ instances: 2, endpoints: [noop], max_concurrent_tasks: 200 }}
topics:
  {TOPIC}: {{ pool: bench, endpoints: [noop] }}
endpoints:
  noop: {{ type: noop }}
"#,
                dir.join("bpmn").display()
            );
            let config = dir.join("pde.yaml");
            std::fs::write(&config, yaml).expect("write the config");
            let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_procos"));
            command.arg("--config").arg(config).current_dir(dir);
            command
        }
        Peer::JsDefault | Peer::JsTuned => {
            let script = env("BENCH_NODE_WORKER")?;
            let mode = if peer == Peer::JsTuned {
                "tuned"
            } else {
                "default"
            };
            let mut command = tokio::process::Command::new("node");
            command.arg(script).args([url, TOPIC, mode]);
            command
        }
        Peer::Python => {
            let python = env("BENCH_PYTHON")?;
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/clients/worker.py");
            let mut command = tokio::process::Command::new(python);
            command.args([script, url, TOPIC]);
            command
        }
        Peer::Raw => {
            let me = std::env::current_exe().expect("this benchmark's path");
            let mut command = tokio::process::Command::new(me);
            command.args(["raw-loop", url]);
            command
        }
    };
    Some(command)
}

/// utime + stime of process `pid` so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the command name (which may hold spaces) start at field 3, `state`;
    // utime and stime are fields 14 and 15, in clock ticks.
    let after = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// `getconf CLK_TCK` (100 on Linux unless configured otherwise).
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Peak resident set size of process `pid`, KiB (`VmHWM`).
fn vm_hwm(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Concurrent fetch loops of the raw worker.
const RAW_LOOPS: usize = 4;
/// Tasks the raw worker holds at once (fetched, completion not yet answered).
const RAW_IN_FLIGHT: usize = 400;

/// The limit: `RAW_LOOPS` loops of fetchAndLock (long poll) whose tasks are completed
/// concurrently while the loop fetches again at once, at most `RAW_IN_FLIGHT` tasks held;
/// nothing else (no journal, no logs, no metrics). Runs until killed.
///
/// A loop takes its slots before it asks (at least one, then every free one, at most 200) and
/// asks for that many tasks, so the loops together never lock more than `RAW_IN_FLIGHT` —
/// the rule procos's fetch loop keeps. Taking the slots after the reply let four loops lock
/// 800 tasks for 400 slots, each waiting for slots the others held: the drain stopped.
fn raw_loop(url: &str) {
    #[derive(Deserialize)]
    struct Task {
        id: String,
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(RAW_IN_FLIGHT));
        let complete = Arc::new(json!({"workerId": "bench-raw"}));
        let one_loop = |http: reqwest::Client, slots: Arc<tokio::sync::Semaphore>| {
            let (url, complete) = (url.to_string(), complete.clone());
            async move {
                loop {
                    // Wait for one free slot, then take every other free one (at most 200).
                    let mut held = slots.clone().acquire_owned().await.expect("open");
                    let more = slots.available_permits().min(199);
                    if let Ok(extra) = slots.clone().try_acquire_many_owned(more as u32) {
                        held.merge(extra);
                    }
                    let fetch = json!({
                        "workerId": "bench-raw",
                        "maxTasks": held.num_permits(),
                        "usePriority": false,
                        "asyncResponseTimeout": 10000,
                        "topics": [{"topicName": TOPIC, "lockDuration": 30000}],
                    });
                    let reply = http
                        .post(format!("{url}/external-task/fetchAndLock"))
                        .json(&fetch)
                        .send()
                        .await;
                    let tasks: Vec<Task> = match reply {
                        Ok(r) => r.json().await.unwrap_or_default(),
                        Err(_) => Vec::new(),
                    };
                    if tasks.is_empty() {
                        drop(held);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    for task in tasks {
                        let permit = held.split(1).expect("a slot per task asked for");
                        let (http, url, complete) = (http.clone(), url.clone(), complete.clone());
                        tokio::spawn(async move {
                            let _ = http
                                .post(format!("{url}/external-task/{}/complete", task.id))
                                .json(&*complete)
                                .send()
                                .await;
                            drop(permit);
                        });
                    }
                    // The slots of tasks asked for and not handed out are free again.
                    drop(held);
                }
            }
        };
        futures::future::join_all((0..RAW_LOOPS).map(|_| one_loop(http.clone(), slots.clone())))
            .await;
    });
}
