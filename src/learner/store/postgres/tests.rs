//! The shared store against a real PostgreSQL (Debian's binaries, one throwaway server per test
//! binary, one database per test), and its arithmetic.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::learner::{CallOutcome, Sample};

/// A throwaway PostgreSQL server: `initdb` + `postgres` as the `postgres` user (they refuse
/// root) on a temp dir and a free loopback port. It dies with the test process (setpriv's
/// parent-death signal, from a thread that lives as long as the process).
struct Server {
    port: u16,
}

fn bin_dir() -> std::path::PathBuf {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: apt-get install postgresql")
    })
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let bin = bin_dir();
            // Data dirs of test processes that are gone (their servers died with them).
            for entry in std::fs::read_dir(std::env::temp_dir())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("procos-unit-pg-")
                    && !std::path::Path::new("/proc").join(pid).exists()
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
            let dir = std::env::temp_dir().join(format!("procos-unit-pg-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("pg dir");
            std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            let as_postgres = |program: &std::path::Path| {
                let mut c = std::process::Command::new("setpriv");
                c.args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--pdeathsig=KILL",
                    "--",
                ])
                .arg(program);
                c
            };
            let data = dir.join("data");
            let out = as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync"])
                .output()
                .expect("initdb runs");
            assert!(out.status.success(), "initdb: {out:?}");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut child = as_postgres(&bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(&dir)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "fsync=off", "-c", "max_connections=200"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("postgres starts");
            for _ in 0..600 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            tx.send(Server { port }).expect("send");
            // This thread lives as long as the process; its exit kills the server.
            let _ = child.wait();
        });
        rx.recv().expect("server started")
    })
}

/// A fresh database on the server, and its URL.
async fn database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let port = server().port;
    let name = format!(
        "unit_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut tries = 0;
    let pool = loop {
        match PgPool::connect(&admin).await {
            Ok(p) => break p,
            // The server may still be starting (accepting TCP before it takes logins).
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot reach the test server: {e}"),
        }
    };
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    format!("postgres://postgres:pw-unit-test-secret@127.0.0.1:{port}/{name}")
}

/// A TCP forwarder to the server that can be "down": refusing and cutting connections.
struct Switch {
    port: u16,
    down: Arc<AtomicBool>,
    cut: Arc<std::sync::Mutex<CancellationToken>>,
}

impl Switch {
    async fn to(target: u16, down: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let down = Arc::new(AtomicBool::new(down));
        let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let (d, c) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let token = c.lock().expect("lock").clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        Self { port, down, cut }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            let mut cut = self.cut.lock().expect("lock");
            cut.cancel();
            *cut = CancellationToken::new();
        }
    }

    fn url(&self, real: &str) -> String {
        real.replace(&format!(":{}/", server().port), &format!(":{}/", self.port))
    }
}

fn sample(outcome: CallOutcome) -> Sample {
    Sample {
        outcome,
        latency_ms: 20.0,
        judge_score: None,
        cost: Some(0.5),
        tokens: Some(10),
    }
}

fn key() -> Key {
    Key::new("topic", "ep", "s")
}

fn observe(learner: &Learner, n: usize, outcome: CallOutcome) {
    for _ in 0..n {
        learner.observe_at(&key(), &sample(outcome), 1_000.0);
    }
}

fn calls(learner: &Learner) -> u64 {
    learner.get_at(&key(), 1_000.0).map_or(0, |s| s.calls)
}

fn secret(url: &str) -> Secret {
    Secret::new(url)
}

#[test]
fn adding_and_subtracting_figures_round_trips() {
    let (a, b) = (Learner::default(), Learner::default());
    observe(&a, 3, CallOutcome::Valid);
    observe(&b, 2, CallOutcome::Failed);
    let (sa, sb) = (a.snapshot()[0].1.clone(), b.snapshot()[0].1.clone());
    let mut sum = sa.clone();
    add(&mut sum, &sb, 3600.0);
    assert_eq!((sum.calls, sum.answered), (5, 3));
    assert!((sum.ok - 3.0).abs() < 1e-9 && (sum.failed - 2.0).abs() < 1e-9);
    assert!((sum.cost_sum - 2.5).abs() < 1e-9);
    let back = subtract(&sum, &sb, 3600.0);
    assert_eq!(back.calls, 3);
    assert!((back.failed).abs() < 1e-9 && (back.ok - 3.0).abs() < 1e-9);
}

#[test]
fn a_url_that_is_not_postgres_is_refused_without_echoing_it() {
    let err = check_url(&secret("mysql://u:hunter2-secret@db/x")).expect_err("refused");
    assert!(err.contains("PostgreSQL URL"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(check_url(&secret("postgres://u:p@db:5432/x?sslmode=require")).is_ok());
}

#[tokio::test]
async fn what_one_replica_wrote_another_reads() {
    let url = database().await;
    let (a, b) = (Learner::default(), Learner::default());
    let store_a = SharedStats::new(&secret(&url), "replica-a").expect("store");
    observe(&a, 4, CallOutcome::Valid);
    store_a.sync(&a, a.take_dirty()).await.expect("a writes");
    let store_b = SharedStats::new(&secret(&url), "replica-b").expect("store");
    store_b.sync(&b, b.take_dirty()).await.expect("b reads");
    assert_eq!(calls(&b), 4, "b sees what a learned");
    // b learns more; a sees it at its next flush; nobody double counts.
    observe(&b, 2, CallOutcome::Failed);
    store_b.sync(&b, b.take_dirty()).await.expect("b writes");
    store_a.sync(&a, a.take_dirty()).await.expect("a refreshes");
    store_b.sync(&b, b.take_dirty()).await.expect("b refreshes");
    assert_eq!((calls(&a), calls(&b)), (6, 6));
    let merged = read_merged(&secret(&url), &Learner::default())
        .await
        .expect("read");
    assert_eq!(merged[0].1.calls, 6);
    assert_eq!(merged[0].1.passed, 4);
}

#[tokio::test]
async fn replicas_writing_concurrently_lose_nothing() {
    let url = database().await;
    let replicas: Vec<_> = (0..3)
        .map(|i| {
            (
                Arc::new(Learner::default()),
                Arc::new(SharedStats::new(&secret(&url), &format!("r{i}")).expect("store")),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for (learner, store) in &replicas {
        let (learner, store) = (learner.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                observe(&learner, 7, CallOutcome::Valid);
                store
                    .sync(&learner, learner.take_dirty())
                    .await
                    .expect("sync");
            }
        }));
    }
    for t in tasks {
        t.await.expect("replica");
    }
    for (learner, store) in &replicas {
        store
            .sync(learner, learner.take_dirty())
            .await
            .expect("sync");
        assert_eq!(calls(learner), 210, "3 replicas × 10 rounds × 7 calls");
    }
    let merged = read_merged(&secret(&url), &Learner::default())
        .await
        .expect("read");
    assert_eq!(merged[0].1.calls, 210);
}

#[tokio::test]
async fn a_database_down_at_start_and_mid_run_is_caught_up_without_loss() {
    let url = database().await;
    let switch = Switch::to(server().port, true).await;
    let learner = Learner::default();
    let store = SharedStats::new(&secret(&switch.url(&url)), "replica-a").expect("store");
    observe(&learner, 3, CallOutcome::Valid);
    let err = store
        .sync(&learner, learner.take_dirty())
        .await
        .expect_err("down at start");
    assert!(!err.to_string().contains("pw-unit-test-secret"), "{err}");
    assert_eq!(calls(&learner), 3, "still counted in memory");
    assert_eq!(learner.pending(), 1, "kept for the next flush");
    switch.set_down(false);
    store
        .sync(&learner, learner.take_dirty())
        .await
        .expect("caught up");
    // Down mid-run: live connections cut, new ones refused.
    switch.set_down(true);
    observe(&learner, 2, CallOutcome::Failed);
    store
        .sync(&learner, learner.take_dirty())
        .await
        .expect_err("down mid-run");
    observe(&learner, 1, CallOutcome::Valid);
    switch.set_down(false);
    store
        .sync(&learner, learner.take_dirty())
        .await
        .expect("caught up again");
    let merged = read_merged(&secret(&url), &Learner::default())
        .await
        .expect("read");
    assert_eq!(merged[0].1.calls, 6, "every observation reached the store");
    assert_eq!(calls(&learner), 6, "and none was counted twice here");
}

#[tokio::test]
async fn a_restarted_replica_with_the_same_worker_id_keeps_its_own_row() {
    let url = database().await;
    let first = Learner::default();
    let store = SharedStats::new(&secret(&url), "fixed-id").expect("store");
    observe(&first, 5, CallOutcome::Valid);
    store.sync(&first, first.take_dirty()).await.expect("write");
    // The next life observes before its first flush.
    let second = Learner::default();
    observe(&second, 1, CallOutcome::Valid);
    let store = SharedStats::new(&secret(&url), "fixed-id").expect("store");
    store
        .sync(&second, second.take_dirty())
        .await
        .expect("load");
    assert_eq!(calls(&second), 6);
    let merged = read_merged(&secret(&url), &Learner::default())
        .await
        .expect("read");
    assert_eq!(merged[0].1.calls, 6, "the row holds both lives");
}

/// A replica that observed calls before its first successful read (the database was down, or
/// the first flush came late) and whose key other replicas already wrote: its own row must hold
/// its calls. Before, it wrote `total − others` over figures taken before the others' part was
/// added — 0 — and its calls were lost from the store until it observed that key again.
#[tokio::test]
async fn calls_observed_before_the_first_read_reach_the_own_row() {
    let url = database().await;
    let a = Learner::default();
    let store_a = SharedStats::new(&secret(&url), "early-a").expect("store");
    observe(&a, 4, CallOutcome::Valid);
    store_a.sync(&a, a.take_dirty()).await.expect("a writes");

    let b = Learner::default();
    observe(&b, 2, CallOutcome::Failed);
    let store_b = SharedStats::new(&secret(&url), "early-b").expect("store");
    store_b
        .sync(&b, b.take_dirty())
        .await
        .expect("b's first read and write");
    assert_eq!(calls(&b), 6, "b: its 2 and a's 4");
    let merged = read_merged(&secret(&url), &Learner::default())
        .await
        .expect("read");
    assert_eq!(merged[0].1.calls, 6, "b's 2 calls are in its row");
    assert_eq!(merged[0].1.passed, 4);
}
