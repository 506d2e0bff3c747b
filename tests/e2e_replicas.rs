//! End to end: three procos replicas (the real binary, distinct worker ids) against one engine,
//! sharing the learner through a real PostgreSQL — thousands of tasks, each run exactly once,
//! spread over all three, one replica SIGTERMed midway without loss.
//!
//! Each task calls a counting HTTP server in this test with its instance number and the
//! replica's worker id, so "run twice" and "who did what" are counted at the side effect, not
//! inferred from procos's logs.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use serde_json::json;
use support::{Procos, Rest, Workdir, engine, one_task_bpmn};

const TASKS: usize = 3000;

type Hits = Arc<Mutex<HashMap<u64, Vec<String>>>>;

/// The side effect every task has: `GET /hit?n=<instance number>&w=<worker id>`, a little slow
/// so that tasks are in flight when a replica is stopped.
async fn counting_server() -> (String, Hits) {
    let hits: Hits = Arc::default();
    async fn hit(
        State(hits): State<Hits>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::Json<serde_json::Value> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let n: u64 = q.get("n").and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
        let w = q.get("w").cloned().unwrap_or_default();
        hits.lock().expect("hits").entry(n).or_default().push(w);
        axum::Json(json!({"ok": true}))
    }
    let app = axum::Router::new()
        .route("/hit", axum::routing::get(hit))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

fn config(hit_url: &str) -> String {
    format!(
        "camunda:\n  url: ${{CAMUNDA_URL}}\n  worker_id: ${{WORKER}}\n  long_poll: 2s\n  lock_duration: 10s\n  max_tasks: 50\n  backoff: {{ initial: 100ms, max: 1s }}\n\
deploy:\n  dir: bpmn\n  watch: false\n\
pde_manager:\n  shutdown_grace: 20s\n  state: ${{PG_URL}}\n  pools:\n    gp: {{ instances: 2, endpoints: [hit], max_concurrent_tasks: 40 }}\n\
topics:\n  work: {{ pool: gp, endpoints: [hit], retries: 3, retry_timeout: 100ms }}\n\
endpoints:\n  hit:\n    type: http\n    method: GET\n    url: \"{hit_url}/hit?n={{{{ n }}}}&w=${{WORKER}}\"\n    allowed_hosts: [127.0.0.1]\n    timeout: 10s\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_run_every_task_once_share_the_work_and_survive_a_sigterm() {
    let pg = support::postgres::database().await;
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let (hit_url, hits) = counting_server().await;
    let work = Workdir::new(
        &config(&hit_url),
        &[("work.bpmn", &one_task_bpmn("work_process", "work", "NEVER"))],
    );
    let workers = ["replica-a", "replica-b", "replica-c"];
    let mut replicas: Vec<Procos> = workers
        .iter()
        .map(|w| {
            Procos::spawn(
                work.path(),
                &["--config", "pde.yaml"],
                &[
                    ("CAMUNDA_URL", &engine.url),
                    ("WORKER", w),
                    ("PG_URL", &pg),
                    ("RUST_LOG", "info"),
                ],
            )
        })
        .collect();
    rest.wait_deployed("work_process", Duration::from_secs(60))
        .await;
    for r in &replicas {
        r.wait_log(
            "Learner loaded from the shared store.",
            Duration::from_secs(60),
        )
        .await;
    }

    // Midway — once replica a has run a fifth of the tasks — SIGTERM it: it stops fetching and
    // drains what it holds. Watched while the instances are still being started.
    let pid_a = nix::unistd::Pid::from_raw(replicas[0].child.id().expect("running") as i32);
    let watcher = {
        let hits = hits.clone();
        tokio::spawn(async move {
            loop {
                let (total, by_a) = {
                    let hits = hits.lock().expect("hits");
                    let by_a = hits
                        .values()
                        .flatten()
                        .filter(|w| *w == "replica-a")
                        .count();
                    (hits.len(), by_a)
                };
                if by_a >= TASKS / 5 {
                    nix::sys::signal::kill(pid_a, nix::sys::signal::Signal::SIGTERM)
                        .expect("SIGTERM");
                    return total;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // Start every instance (concurrently, in batches).
    let started = std::time::Instant::now();
    for chunk in (0..TASKS).collect::<Vec<_>>().chunks(100) {
        let starts = chunk
            .iter()
            .map(|n| rest.start("work_process", json!({ "n": n })));
        futures::future::join_all(starts).await;
    }
    let at_sigterm = tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("replica a ran a fifth of the tasks within 60 s")
        .expect("watcher");
    assert!(
        at_sigterm < TASKS * 4 / 5,
        "SIGTERM came midway: {at_sigterm} of {TASKS} tasks had run"
    );
    let code = replicas[0].exit_code(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "a drained replica exits 0");

    let done = support::eventually(Duration::from_secs(90), || async {
        let count = rest.get("/process-instance/count").await["count"]
            .as_u64()
            .unwrap_or(u64::MAX);
        count == 0
    })
    .await;
    let elapsed = started.elapsed();
    let hits = hits.lock().expect("hits").clone();
    assert!(
        done,
        "instances still running after 90 s; {} tasks hit",
        hits.len()
    );

    // Exactly once: every instance number hit, and by one replica only.
    let twice: Vec<_> = hits.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(twice.is_empty(), "tasks run twice: {twice:?}");
    let missing: Vec<u64> = (0..TASKS as u64)
        .filter(|n| !hits.contains_key(n))
        .collect();
    assert!(missing.is_empty(), "tasks never run: {missing:?}");
    let stats = rest.stats().await;
    assert_eq!(stats["complete_ok"], json!(TASKS), "{stats}");

    // Spread: every replica did a fair share (a, stopped at a third, too).
    let mut by_worker: HashMap<&str, usize> = HashMap::new();
    for w in hits.values().flatten() {
        *by_worker.entry(w.as_str()).or_default() += 1;
    }
    for w in workers {
        let share = by_worker.get(w).copied().unwrap_or(0) as f64 / TASKS as f64;
        assert!(
            share >= 0.15,
            "{w} ran {share:.2} of the tasks: {by_worker:?}"
        );
    }
    // The stopped replica drained what it held: a task it had started but not reported would
    // have run again elsewhere once its lock expired (counted twice above), or never ended.
    eprintln!("{at_sigterm} tasks had run at replica a's SIGTERM");
    eprintln!("{TASKS} tasks in {elapsed:?}; by replica: {by_worker:?}");

    // The learner's shared store: one row per replica, the calls add up to every task.
    for r in replicas.iter().skip(1) {
        r.sigterm();
    }
    for r in replicas.iter_mut().skip(1) {
        assert_eq!(r.exit_code(Duration::from_secs(30)).await, 0);
    }
    let rows = support::postgres::rows(&pg).await;
    let total: u64 = rows.iter().map(|(_, c)| c).sum();
    assert_eq!(
        rows.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(),
        workers.to_vec(),
        "one row per replica"
    );
    assert_eq!(
        total, TASKS as u64,
        "every call observed once, by the replica that made it"
    );
    for r in &replicas {
        let logs = r.log_lines().join("\n");
        assert!(
            !logs.contains(support::postgres::PASSWORD),
            "the store's password is never logged"
        );
    }
}
