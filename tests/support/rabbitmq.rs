//! A throwaway RabbitMQ node for the amqp tests: Debian's `rabbitmq-server` run as the current
//! user (root in CI works: HOME is set) with everything of its own in a temp dir — node name,
//! mnesia and log dirs, config, an empty plugin list (no management plugin), the Erlang cookie
//! (in its own HOME), a free AMQP port and a free distribution port.
//!
//! ```text
//! test ──stdin: "stop" / "start" / EOF──► sh keeper ──► rabbitmq-server (sh) ──► beam.smp
//!      ◄─stdout: "stopped" / "started"──┘   EOF (the test process ended, however it ended):
//!                                           stop the node, remove the temp dir
//! ```
//!
//! The node is slow to start (tens of seconds), so a test binary shares one ([`shared`]); a test
//! that stops and restarts its broker takes its own ([`Rabbit::start`]). Missing binaries FAIL
//! the test with the install command (`apt-get install rabbitmq-server`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The password of the nodes' user: a test greps procos's logs for it.
pub const PASSWORD: &str = "amqp-e2e-NEVER-PRINT-5b3e";
/// The nodes' user.
pub const USER: &str = "procos";

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// Keeps the node running while the test process lives; see the module docs.
const KEEPER: &str = r#"
start() { "$RMQ_SERVER" >>"$RMQ_DIR/server.log" 2>&1 </dev/null & node=$!; echo started; }
stop() { if [ -n "$node" ]; then kill -TERM "$node"; wait "$node"; node=; fi; echo stopped; }
start
while read -r cmd; do
  case "$cmd" in
    stop) stop ;;
    start) start ;;
  esac
done
stop >/dev/null
rm -rf "$RMQ_DIR"
"#;

/// One RabbitMQ node.
pub struct Rabbit {
    /// Its AMQP port on 127.0.0.1.
    pub port: u16,
    /// Its temp dir (config, data, logs).
    pub dir: PathBuf,
    /// The keeper's stdin and stdout.
    control: Arc<Mutex<(ChildStdin, BufReader<ChildStdout>)>>,
    _keeper: Child,
}

/// Removes the dirs of nodes whose test process is gone and whose keeper did not get to it.
fn remove_stale_nodes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("procos-test-rmq-")
            .and_then(|rest| rest.split('-').next())
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Rabbit {
    /// Starts a node of its own and waits until it accepts AMQP connections.
    pub async fn start() -> Rabbit {
        let rabbit = tokio::task::spawn_blocking(Rabbit::spawn)
            .await
            .expect("spawn the node");
        rabbit.wait_ready().await;
        rabbit
    }

    fn spawn() -> Rabbit {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} not found: apt-get install rabbitmq-server"
        );
        static N: AtomicU32 = AtomicU32::new(0);
        remove_stale_nodes();
        let id = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("procos-test-rmq-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("node dir");
        let port = super::free_port();
        let dist_port = super::free_port();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "default_user = {USER}\ndefault_pass = {PASSWORD}\nloopback_users = none\n\
                 disk_free_limit.absolute = 1MB\nlog.console = false\n"
            ),
        )
        .expect("rabbitmq.conf");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("enabled_plugins");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("env conf");
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let mut keeper = Command::new("sh")
            .args(["-c", KEEPER])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("LANG", "C.UTF-8")
            .env("RMQ_SERVER", SERVER)
            .env("RMQ_DIR", &dir)
            .env("RABBITMQ_NODENAME", format!("procos-test-{id}@localhost"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", path("plugins"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh starts");
        let stdin = keeper.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(keeper.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("keeper answers");
        assert_eq!(line.trim(), "started", "keeper: {line:?}");
        Rabbit {
            port,
            dir,
            control: Arc::new(Mutex::new((stdin, stdout))),
            _keeper: keeper,
        }
    }

    /// The URL procos connects with (user and password included).
    pub fn url(&self) -> String {
        format!("amqp://{USER}:{PASSWORD}@127.0.0.1:{}/%2f", self.port)
    }

    /// A connection of the test's own (to declare queues, consume, answer requests), retried
    /// until the node accepts it. Each attempt is bounded: a node still booting accepts the TCP
    /// connection but may never answer the handshake.
    pub async fn connect(&self) -> lapin::Connection {
        let (url, mut last) = (self.url(), String::new());
        for _ in 0..1200 {
            let attempt = lapin::Connection::connect(&url, Default::default());
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(conn)) => return conn,
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "no handshake within 5 s".to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "RabbitMQ on port {} did not accept connections: {last}; its log: {}",
            self.port,
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    async fn wait_ready(&self) {
        let conn = self.connect().await;
        let _ = conn.close(200, "ready".into()).await;
    }

    /// Sends a command to the keeper and waits for its answer (on a blocking thread: a stop
    /// takes a second or two).
    async fn command(&self, command: &'static str, answer: &'static str) {
        let control = self.control.clone();
        tokio::task::spawn_blocking(move || {
            let mut control = control.lock().expect("control");
            writeln!(control.0, "{command}").expect("keeper stdin");
            let mut line = String::new();
            control.1.read_line(&mut line).expect("keeper stdout");
            assert_eq!(line.trim(), answer, "keeper after {command}");
        })
        .await
        .expect("keeper command");
    }

    /// Stops the node (gracefully: connections are closed, then the VM exits) and waits until
    /// it is gone.
    pub async fn stop(&self) {
        self.command("stop", "stopped").await;
    }

    /// Starts the stopped node again (same data, same port) and waits until it accepts AMQP.
    pub async fn restart(&self) {
        self.command("start", "started").await;
        self.wait_ready().await;
    }
}

/// The test binary's shared node, started on first use; it stops when the test process exits.
pub async fn shared() -> &'static Rabbit {
    static NODE: tokio::sync::OnceCell<&'static Rabbit> = tokio::sync::OnceCell::const_new();
    // Each test has a runtime of its own; the node is plain OS processes, so it outlives them.
    NODE.get_or_init(|| async { &*Box::leak(Box::new(Rabbit::start().await)) })
        .await
}
