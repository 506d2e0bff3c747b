//! The side-effect sink: a python script endpoint whose side effect is one line appended to a
//! file, so that a test counts how many times each task id really ran.
//!
//! ```text
//! <workdir>/scripts/sink.py   records its pid in <workdir>/pids/<pid>, sleeps the task's
//!                             `sleep` variable (seconds, default 0) — and with a `wave`
//!                             variable, on until the next multiple of `wave` seconds of the
//!                             clock — then appends the task id to <workdir>/effects.log (one
//!                             O_APPEND write: atomic) and prints {"effect": <task id>}
//! ```
//!
//! Waves put every side effect at a known instant (a whole multiple of `wave` seconds), so a test
//! can kill procos half a wave later, when no script is between its effect and procos recording
//! the outcome — the one window no worker can close.
//!
//! The effect is written at the end, as a real side effect commits at its end: a script killed
//! while it sleeps has had no effect, and a redelivered copy of its task may then run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Workdir;

/// The script (see the module docs). Python scripts get a cleared environment and run in
/// `scripts_dir`, so it finds the work dir as its parent.
pub const SINK_PY: &str = r#"import json, os, sys, time
req = json.load(sys.stdin)
tid = req["task"]["id"]
root = os.path.dirname(os.getcwd())
with open(os.path.join(root, "pids", str(os.getpid())), "w") as f:
    f.write(tid)
time.sleep(float(req["variables"].get("sleep") or 0))
wave = float(req["variables"].get("wave") or 0)
if wave > 0:
    time.sleep(wave - time.time() % wave)
fd = os.open(os.path.join(root, "effects.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, (tid + "\n").encode())
os.close(fd)
print(json.dumps({"effect": tid}))
"#;

/// A handle on one work dir's sink.
pub struct Sink {
    root: PathBuf,
}

impl Sink {
    /// Writes `scripts/sink.py` into `work` and creates its `pids/` dir.
    pub fn install(work: &Workdir) -> Sink {
        work.script("sink.py", SINK_PY);
        std::fs::create_dir_all(work.path().join("pids")).expect("pids dir");
        Sink {
            root: work.path().to_path_buf(),
        }
    }

    /// Task id → how many times its side effect happened.
    pub fn runs(&self) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(self.root.join("effects.log")).unwrap_or_default();
        let mut runs = BTreeMap::new();
        for id in text.lines().filter(|l| !l.is_empty()) {
            *runs.entry(id.to_string()).or_insert(0) += 1;
        }
        runs
    }

    /// Side effects so far (every run, duplicates included).
    pub fn total(&self) -> usize {
        self.runs().values().sum()
    }

    /// Task ids whose side effect happened more than once, with their counts.
    pub fn duplicates(&self) -> Vec<(String, usize)> {
        self.runs().into_iter().filter(|(_, n)| *n > 1).collect()
    }

    /// Sleeps until `phase` seconds after the next multiple of `wave` seconds of the clock (the
    /// instant in a wave when no sink script is finishing).
    pub async fn wait_phase(wave: f64, phase: f64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        let wait = (phase - now % wave).rem_euclid(wave);
        tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
    }

    /// Pids of every script started so far.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_dir(self.root.join("pids"))
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Those of `pids` that are still a running (not zombie) sink script.
    pub fn alive(pids: &[i32]) -> Vec<i32> {
        pids.iter()
            .copied()
            .filter(|pid| is_running_sink(Path::new(&format!("/proc/{pid}"))))
            .collect()
    }
}

fn is_running_sink(proc_dir: &Path) -> bool {
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
    let zombie = status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'));
    String::from_utf8_lossy(&cmdline).contains("sink.py") && !zombie
}
