//! Scripts never outlive procos.
//!
//! procos can end in three ways, and each has its guard:
//!
//! | how procos ends | what kills the script |
//! |---|---|
//! | a run ends (timeout, cancel, overflow, the future dropped) | [`Group`]: `killpg` of the script's process group |
//! | the second signal (exit 130) | [`kill_running_scripts`], called by the supervisor before `exit`: every live group |
//! | SIGKILL, a crash, the OOM killer | the kernel: `PR_SET_PDEATHSIG(SIGKILL)`, set in the script between fork and exec |
//!
//! Only the last is out of procos's hands, and it reaches the script itself, not what the
//! script started: those are reparented and keep running unless they watch their parent. The
//! first two kill the whole group.
//!
//! The parent-death signal fires when the *thread* that forked the child ends, not the process.
//! Tokio's workers live as long as the runtime, but its blocking-pool threads retire after 10 s
//! idle and `block_in_place` moves a worker's core to another thread, so a fork from "whatever
//! thread runs the task" could kill a healthy script later. Every script is therefore forked on
//! one dedicated thread, started on first use, that lives as long as the process.

use std::collections::BTreeSet;
use std::io;
use std::sync::{Mutex, OnceLock, mpsc};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// A fork request for the spawner thread.
struct Job {
    command: Command,
    /// The runtime whose reactor the child's pipes and exit are registered with.
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The spawner thread's queue; `None` if the thread could not be started.
static SPAWNER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();

/// Process groups of scripts running now (their leaders' pids).
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Starts `command` on the spawner thread, with the parent-death signal armed in the child.
/// Must be called inside a tokio runtime.
pub(super) async fn spawn(mut command: Command) -> io::Result<Child> {
    let parent = i32::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the hook runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid), without allocating.
    unsafe {
        command.pre_exec(move || die_with_parent(parent));
    }
    let gone = || io::Error::other("the thread that starts scripts is gone");
    let sender = SPAWNER
        .get_or_init(start_spawner)
        .as_ref()
        .ok_or_else(gone)?;
    let (reply, answer) = oneshot::channel();
    sender
        .send(Job {
            command,
            runtime: tokio::runtime::Handle::current(),
            reply,
        })
        .map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}

/// The dedicated fork thread: it never ends, so a script's parent thread is alive as long as
/// procos is.
fn start_spawner() -> Option<mpsc::Sender<Job>> {
    let (sender, jobs) = mpsc::channel::<Job>();
    let started = std::thread::Builder::new()
        .name("procos-script-spawner".into())
        .spawn(move || {
            for mut job in jobs {
                let _runtime = job.runtime.enter();
                let _ = job.reply.send(job.command.spawn());
            }
        });
    match started {
        Ok(_) => Some(sender),
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the thread that starts python scripts.");
            None
        }
    }
}

/// In the child, before exec: SIGKILL when procos's spawner thread (so procos) ends; refuse to
/// run if procos already ended between fork and here.
fn die_with_parent(parent: i32) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid().as_raw() != parent {
        return Err(Errno::ESRCH.into());
    }
    Ok(())
}

/// The process group of a running script (its pid: the script leads its own group). Dropping
/// it kills the group unless [`Group::exited`] said the script ended by itself.
pub(super) struct Group(Option<i32>);

impl Group {
    /// Registers the group of the script with this pid (`None`: it already exited).
    pub(super) fn new(pid: Option<u32>) -> Self {
        let pid = pid.and_then(|p| i32::try_from(p).ok());
        if let (Some(pid), Ok(mut live)) = (pid, LIVE.lock()) {
            live.insert(pid);
        }
        Self(pid)
    }

    /// The script exited by itself: nothing to kill.
    pub(super) fn exited(&mut self) {
        if let (Some(pid), Ok(mut live)) = (self.0.take(), LIVE.lock()) {
            live.remove(&pid);
        }
    }

    /// Kills the whole group (before the leader is reaped, so the id cannot have been reused).
    pub(super) fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // ESRCH (already gone) is fine.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            if let Ok(mut live) = LIVE.lock() {
                live.remove(&pid);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills every running script's process group, with what the scripts started; returns how many
/// groups there were. For a stop that cannot wait for runs to end (the second signal).
pub fn kill_running_scripts() -> usize {
    let groups = match LIVE.lock() {
        Ok(mut live) => std::mem::take(&mut *live),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    for pid in &groups {
        let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    groups.len()
}
