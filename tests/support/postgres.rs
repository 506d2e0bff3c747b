//! A throwaway PostgreSQL server for the tests that share the learner through it: Debian's
//! `initdb` and `postgres` on a temp dir and a free loopback port, run as the `postgres` user
//! (they refuse root) through `setpriv`. One server per test binary, started on first use; each
//! test takes its own database. It stops with the test process: it is started from a thread
//! that lives as long as the process, with that thread's death as its kill signal
//! (`setpriv --pdeathsig`).
//!
//! Missing binaries FAIL the test with the install command (`apt-get install postgresql`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The running server.
pub struct PgServer {
    /// Its loopback port.
    pub port: u16,
    /// Its data and socket directory.
    pub dir: PathBuf,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`.
pub fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists() && p.join("postgres").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: apt-get install postgresql"
        )
    })
}

fn as_postgres(program: &Path) -> std::process::Command {
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
}

/// Removes the data dirs of test servers whose test process is gone (a killed process leaves
/// its server's dir behind: the server dies with it, the files do not).
fn remove_stale_servers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("procos-test-pg-")
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The binary's server, started on first call.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let bin = bin_dir();
            remove_stale_servers();
            let dir = std::env::temp_dir().join(format!("procos-test-pg-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("pg dir");
            let chown = std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .expect("chown runs");
            assert!(chown.success(), "chown postgres {}", dir.display());
            let data = dir.join("data");
            let out = as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync"])
                .output()
                .expect("initdb runs");
            assert!(out.status.success(), "initdb failed: {out:?}");
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
            tx.send(PgServer {
                port,
                dir: dir.clone(),
            })
            .expect("send");
            // Lives as long as the process: its end kills the server.
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
        });
        rx.recv().expect("server started")
    })
}

/// A fresh, empty database on the server; its URL (with a password, which trust auth ignores
/// but which the logs must never show).
pub async fn database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let port = server().port;
    let name = format!(
        "e2e_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut last = String::new();
    for _ in 0..600 {
        match sqlx::PgPool::connect(&admin).await {
            Ok(pool) => {
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&pool)
                    .await
                    .expect("create database");
                pool.close().await;
                return format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/{name}");
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the test PostgreSQL did not accept connections: {last}");
}

/// The password in [`database`] URLs: a test greps the logs for it.
pub const PASSWORD: &str = "pg-e2e-NEVER-PRINT-41c9";

/// Every replica's learner rows in the database at `url`: (worker id, calls).
pub async fn rows(url: &str) -> Vec<(String, u64)> {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let raw: Vec<(String, String)> =
        sqlx::query_as("SELECT worker_id, stats FROM procos_learner_v1 ORDER BY worker_id")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    pool.close().await;
    raw.into_iter()
        .map(|(w, s)| {
            let v: serde_json::Value = serde_json::from_str(&s).expect("stats json");
            (w, v["calls"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// A TCP forwarder to the test server that can be "down" — new connections closed at once and
/// live ones cut — the way a database restart or a network split looks to procos.
pub struct TcpSwitch {
    /// The port procos connects to.
    pub port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: std::sync::Arc<std::sync::Mutex<tokio_util::sync::CancellationToken>>,
}

impl TcpSwitch {
    /// A switch in front of the server, `down` or up from the start.
    pub async fn start(down: bool) -> Self {
        use std::sync::atomic::AtomicBool;
        let target = server().port;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let down = std::sync::Arc::new(AtomicBool::new(down));
        let cut = std::sync::Arc::new(std::sync::Mutex::new(
            tokio_util::sync::CancellationToken::new(),
        ));
        let (d, c) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                // The token before the state: `set_down` sets the state, then cuts the token, so
                // a connection let through here is either cut with its token or was never
                // let through. Read the other way round, one accepted as the switch went down
                // took the fresh token and lived on through the outage.
                let token = c.lock().expect("lock").clone();
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        Self { port, down, cut }
    }

    /// Down (refuse new, cut live connections) or up.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            let mut cut = self.cut.lock().expect("lock");
            cut.cancel();
            *cut = tokio_util::sync::CancellationToken::new();
        }
    }

    /// `url` (from [`database`]) through this switch.
    pub fn url(&self, url: &str) -> String {
        url.replace(
            &format!("127.0.0.1:{}/", server().port),
            &format!("127.0.0.1:{}/", self.port),
        )
    }
}
