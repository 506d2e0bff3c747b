//! `sandbox:` — what a script may touch, enforced by the kernel before the script runs.
//!
//! ```text
//! config (parse)      SandboxConfig  ── validate(): ranges, absolute paths, at their YAML path
//! build (start-up)    Sandbox::prepare ── resolve the interpreter and its prefixes,
//!                                         check the kernel enforces every rule (else refuse)
//! per task            Sandbox::confine(&mut Command) ── temp dir (TMPDIR, HOME), Landlock
//!                                         ruleset and rlimits prepared in the parent …
//! fork → pre_exec     setrlimit ×5, drop capabilities, no_new_privs + landlock_restrict_self
//! exec                python3 script.py   (confined for life, with everything it starts)
//! run ends            TaskDir dropped: the temp dir is deleted
//! ```
//!
//! Filesystem (Landlock): read + execute beneath the interpreter's directories (`/usr`, `/lib*`,
//! `/bin`, `/sbin`, the resolved interpreter's prefix and python's `sys.prefix`es), the dynamic
//! loader's `/etc/ld.so.*`, and `scripts_dir`; read + write beneath the task's temp dir and
//! `writable`; `/dev/null` and `/dev/urandom`. Nothing else, for root too.
//!
//! Network (Landlock TCP rules, ABI ≥ 4): no TCP bind or connect, unless `network: true`, or
//! connect to the ports of the `network` allow-list. Landlock rules are per port: the host part
//! of `host:port` documents intent but is not enforced. UDP and unix sockets are not covered by
//! Landlock ABI 4.
//!
//! Processes (Landlock scopes, ABI ≥ 6, Linux 6.12): no signal to a process outside the
//! sandbox (procos, other scripts), no connect to an abstract unix socket made outside it; on
//! older kernels with ABI 4–5 these two are not confined and procos says so (WARN).
//!
//! Resources: rlimits `RLIMIT_AS` (`memory`), `RLIMIT_CPU`, `RLIMIT_NOFILE`, `RLIMIT_NPROC`,
//! `RLIMIT_FSIZE`; `no_new_privs`; every capability dropped (bounding, inheritable, ambient), so
//! a script started by root cannot lift its limits (root ignores `RLIMIT_NPROC` otherwise).
//! `RLIMIT_NPROC` counts every process and thread of the script's real user, procos's own
//! included: run procos as a user of its own for `processes` to mean "processes of its
//! scripts". The kernel exempts uid 0 from `RLIMIT_NPROC` whatever its capabilities: as root,
//! `processes` is not enforced (procos says so at start-up with a WARN).
//!
//! If the kernel cannot enforce all of it, [`Sandbox::prepare`] fails: procos refuses to start
//! and never runs a script unconfined.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};
use nix::libc;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::process::Command;

mod config;

pub use config::{
    Bytes, HostPort, MIN_MEMORY, MIN_OPEN_FILES, Network, SandboxConfig, deserialize,
};

/// The Landlock ABI a sandbox needs: 4 (Linux 6.7) is the first with TCP bind/connect rules.
pub const REQUIRED_ABI: ABI = ABI::V4;

/// The Landlock ABI that scopes signals and abstract unix sockets to the sandbox (Linux 6.12).
const SCOPE_ABI: ABI = ABI::V6;

/// Directories the interpreter and its libraries live in on common Linux layouts.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
];
/// Read only with `network` granted: name resolution and TLS roots.
const NETWORK_READ: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
];
/// Devices every program expects to read and write.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];

/// Why a sandbox cannot be set up; every message names the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel cannot enforce what `sandbox:` asks: procos must not start.
    #[error(
        "python endpoint `{endpoint}`: `sandbox` needs Landlock ABI {required} or newer \
         (ABI 4 is Linux 6.7), enabled (e.g. `lsm=…,landlock` on the kernel command line), to \
         confine scripts, but {found}. Run procos on such a kernel, or set `sandbox: false` to \
         run this endpoint's scripts unconfined knowingly"
    )]
    Kernel {
        /// The endpoint's name.
        endpoint: String,
        /// The ABI asked for.
        required: i32,
        /// What the kernel offers or what failed.
        found: String,
    },
    /// The interpreter could not be found or asked for its prefixes.
    #[error("python endpoint `{endpoint}`: sandbox: interpreter `{python}`: {reason}")]
    Interpreter {
        /// The endpoint's name.
        endpoint: String,
        /// The interpreter as configured.
        python: String,
        /// What went wrong.
        reason: String,
    },
    /// A path or the per-task temp dir could not be prepared.
    #[error("python endpoint `{endpoint}`: sandbox: `{path}`: {source}")]
    Path {
        /// The endpoint's name.
        endpoint: String,
        /// The path involved.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Landlock refused a rule while building the ruleset.
    #[error("python endpoint `{endpoint}`: sandbox: cannot build the Landlock ruleset: {reason}")]
    Ruleset {
        /// The endpoint's name.
        endpoint: String,
        /// Landlock's error.
        reason: String,
    },
}

/// One endpoint's sandbox, resolved at build: what [`Sandbox::confine`] applies to each child.
#[derive(Debug, Clone)]
pub struct Sandbox {
    endpoint: String,
    abi: ABI,
    /// Read + execute beneath these.
    read: Vec<PathBuf>,
    /// Read + write beneath these (besides each task's temp dir).
    write: Vec<PathBuf>,
    network: Network,
    /// Signals and abstract unix sockets stay inside the sandbox (kernel ABI ≥ 6).
    scoped: bool,
    limits: [(Resource, u64); 5],
    /// Where per-task temp dirs are created.
    temp_root: PathBuf,
}

impl Sandbox {
    /// Resolves the interpreter and checks the kernel enforces every rule (Landlock
    /// [`REQUIRED_ABI`]); an error means the endpoint must not run. Start-up I/O: runs the
    /// interpreter once to learn its `sys.prefix`es.
    pub fn prepare(
        endpoint: &str,
        config: &SandboxConfig,
        python: &Path,
        scripts_dir: &Path,
    ) -> Result<Self, SandboxError> {
        Self::prepare_for(endpoint, config, python, scripts_dir, REQUIRED_ABI)
    }

    /// [`Sandbox::prepare`] asking the kernel for `required` (a test asks for more than the
    /// kernel has and sees the refusal).
    pub fn prepare_for(
        endpoint: &str,
        config: &SandboxConfig,
        python: &Path,
        scripts_dir: &Path,
        required: ABI,
    ) -> Result<Self, SandboxError> {
        let mut read: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
        read.extend(interpreter_dirs(endpoint, python)?);
        read.push(scripts_dir.to_path_buf());
        if config.network != Network::Denied {
            read.extend(NETWORK_READ.iter().map(PathBuf::from));
        }
        let mut write: Vec<PathBuf> = DEVICES.iter().map(PathBuf::from).collect();
        write.extend(config.writable.iter().cloned());
        let sandbox = Self {
            endpoint: endpoint.to_string(),
            abi: required,
            read,
            write,
            network: config.network.clone(),
            scoped: kernel_abi().is_some_and(|abi| abi >= SCOPE_ABI as i64),
            limits: [
                (Resource::RLIMIT_AS, config.memory.0),
                (Resource::RLIMIT_CPU, config.cpu_time.as_secs().max(1)),
                (Resource::RLIMIT_NOFILE, config.open_files),
                (Resource::RLIMIT_NPROC, config.processes),
                (Resource::RLIMIT_FSIZE, config.file_size.0),
            ],
            temp_root: std::env::temp_dir(),
        };
        sandbox.check_kernel()?;
        if !sandbox.scoped {
            tracing::warn!(
                endpoint,
                "Sandboxed scripts may signal procos and connect to abstract unix sockets: \
                 scoping them needs Landlock ABI 6 (Linux 6.12)."
            );
        }
        // SAFETY: getuid cannot fail and touches no memory.
        if unsafe { libc::getuid() } == 0 {
            tracing::warn!(
                endpoint,
                processes = config.processes,
                "Sandbox `processes` is not enforced: procos runs as root, which the kernel \
                 exempts from RLIMIT_NPROC. Run procos as an unprivileged user (the Docker \
                 image does) for the limit to hold."
            );
        }
        Ok(sandbox)
    }

    /// Confines the child `command` will start: creates its temp dir (TMPDIR, HOME, cwd
    /// unchanged), prepares the Landlock ruleset, and installs a `pre_exec` hook that applies
    /// rlimits, drops capabilities and restricts the child before exec. The returned
    /// [`TaskDir`] deletes the temp dir when dropped: keep it as long as the child runs. For
    /// one-shot scripts and long-lived (warm) interpreters alike.
    pub fn confine(&self, command: &mut Command) -> Result<TaskDir, SandboxError> {
        let dir = self
            .temp_root
            .join(format!("procos-sandbox-{}", uuid::Uuid::new_v4()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| self.path_error(&dir, source))?;
        let task_dir = TaskDir(dir);
        let ruleset = self.ruleset(Some(&task_dir.0))?;
        command.env("TMPDIR", &task_dir.0).env("HOME", &task_dir.0);
        let limits = self.limits;
        let mut ruleset = Some(ruleset);
        // SAFETY: the hook runs in the forked child before exec and only makes system calls
        // (setrlimit, prctl, capget/capset, landlock_restrict_self) on values prepared above;
        // it allocates nothing (the ruleset is moved in, its status is plain data).
        unsafe {
            command.pre_exec(move || confine_self(&limits, ruleset.take()));
        }
        Ok(task_dir)
    }

    /// Builds the ruleset with every rule; `HardRequirement`, so a kernel lacking any access
    /// right is an error rather than a weaker ruleset.
    fn ruleset(&self, task_dir: Option<&Path>) -> Result<RulesetCreated, SandboxError> {
        let error = |e: landlock::RulesetError| self.kernel_error(e.to_string());
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(self.abi))
            .map_err(error)?;
        if self.network != Network::Any {
            ruleset = ruleset
                .handle_access(AccessNet::from_all(self.abi))
                .map_err(error)?;
        }
        if self.scoped {
            ruleset = ruleset.scope(Scope::from_all(SCOPE_ABI)).map_err(error)?;
        }
        let read = AccessFs::from_read(self.abi);
        let write = AccessFs::from_all(self.abi);
        let mut created = ruleset
            .create()
            .map_err(error)?
            .add_rules(path_beneath_rules(&self.read, read))
            .map_err(|e| self.ruleset_error(e))?
            .add_rules(path_beneath_rules(&self.write, write))
            .map_err(|e| self.ruleset_error(e))?;
        if let Some(dir) = task_dir {
            created = created
                .add_rules(path_beneath_rules([dir], write))
                .map_err(|e| self.ruleset_error(e))?;
        }
        if let Network::Allow(allowed) = &self.network {
            created = created
                .add_rules(allowed.iter().map(|a| {
                    Ok::<_, landlock::RulesetError>(NetPort::new(a.port, AccessNet::ConnectTcp))
                }))
                .map_err(|e| self.ruleset_error(e))?;
        }
        Ok(created)
    }

    /// Restricts a throwaway thread with the endpoint's ruleset (Landlock confines the calling
    /// thread only) and demands full enforcement.
    fn check_kernel(&self) -> Result<(), SandboxError> {
        let ruleset = self.ruleset(None)?;
        let status = std::thread::scope(|scope| {
            scope
                .spawn(move || ruleset.restrict_self().map(|s| s.ruleset))
                .join()
        });
        match status {
            Ok(Ok(RulesetStatus::FullyEnforced)) => Ok(()),
            Ok(Ok(other)) => Err(self.kernel_error(format!("the ruleset was {other:?}"))),
            Ok(Err(e)) => Err(self.kernel_error(e.to_string())),
            Err(_) => Err(self.kernel_error("the check panicked".into())),
        }
    }

    fn kernel_error(&self, reason: String) -> SandboxError {
        let found = match kernel_abi() {
            Some(abi) => format!("this kernel offers ABI {abi} ({reason})"),
            None => format!("this kernel has Landlock disabled or not built in ({reason})"),
        };
        SandboxError::Kernel {
            endpoint: self.endpoint.clone(),
            required: self.abi as i32,
            found,
        }
    }

    fn ruleset_error(&self, e: landlock::RulesetError) -> SandboxError {
        SandboxError::Ruleset {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        }
    }

    fn path_error(&self, path: &Path, source: io::Error) -> SandboxError {
        SandboxError::Path {
            endpoint: self.endpoint.clone(),
            path: path.display().to_string(),
            source,
        }
    }
}

/// A task's (or warm interpreter's) temp dir; deleted with everything in it when dropped.
#[derive(Debug)]
pub struct TaskDir(PathBuf);

impl TaskDir {
    /// The directory (the child's TMPDIR and HOME).
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TaskDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "Cannot delete a sandbox temp dir.");
        }
    }
}

/// The kernel's Landlock ABI, `None` without Landlock.
fn kernel_abi() -> Option<i64> {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION (1) with a null attr and size 0 only queries.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    (v > 0).then_some(v)
}

/// Where the interpreter lives: its resolved file's `<prefix>` (two levels up from
/// `<prefix>/bin/python3`) and python's own `sys.prefix`, `sys.base_prefix`, exec prefixes.
fn interpreter_dirs(endpoint: &str, python: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let error = |reason: String| SandboxError::Interpreter {
        endpoint: endpoint.to_string(),
        python: python.display().to_string(),
        reason,
    };
    let found = if python.components().count() > 1 {
        Some(python.to_path_buf())
    } else {
        super::SAFE_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(python))
            .find(|p| p.is_file())
    };
    let found = found.ok_or_else(|| error(format!("not found in {}", super::SAFE_PATH)))?;
    let resolved = std::fs::canonicalize(&found)
        .map_err(|e| error(format!("cannot resolve `{}`: {e}", found.display())))?;
    let mut dirs: Vec<PathBuf> = resolved
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    let out = std::process::Command::new(&resolved)
        .args([
            "-I",
            "-c",
            "import sys\nfor p in {sys.prefix, sys.base_prefix, sys.exec_prefix, \
             sys.base_exec_prefix}: print(p)",
        ])
        .env_clear()
        .env("PATH", super::SAFE_PATH)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| error(format!("cannot run it: {e}")))?;
    if !out.status.success() {
        return Err(error(format!(
            "asking for sys.prefix exited {}",
            out.status
        )));
    }
    dirs.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(PathBuf::from),
    );
    // `/` as a prefix would open the whole filesystem: never.
    dirs.retain(|d| d.parent().is_some());
    Ok(dirs)
}

/// In the child, between fork and exec: rlimits (lowered, never raised), capabilities gone,
/// Landlock on. System calls only (async-signal-safe).
fn confine_self(limits: &[(Resource, u64); 5], ruleset: Option<RulesetCreated>) -> io::Result<()> {
    for (resource, limit) in limits {
        // Never above the current hard limit: raising it needs a capability, and is no limit.
        let (_, hard) = getrlimit(*resource)?;
        let limit = (*limit).min(hard);
        setrlimit(*resource, limit, limit)?;
    }
    drop_capabilities()?;
    let ruleset = ruleset.ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    match ruleset.restrict_self() {
        Ok(status) if status.ruleset == RulesetStatus::FullyEnforced && status.no_new_privs => {
            Ok(())
        }
        _ => Err(io::Error::from_raw_os_error(libc::EPERM)),
    }
}

/// Empties the bounding, ambient and inheritable capability sets, so the program exec'd (even
/// as root) holds none: it cannot raise its rlimits or escape `RLIMIT_NPROC`.
fn drop_capabilities() -> io::Result<()> {
    // SAFETY: prctl and capget/capset with pointers to local, correctly laid-out structs.
    unsafe {
        for cap in 0..=63 {
            // EINVAL past the last capability; EPERM without CAP_SETPCAP (then we have no
            // capabilities to pass on anyway, unless inheritable, cleared below).
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if data.iter().any(|d| d.inheritable != 0) {
            for d in &mut data {
                d.inheritable = 0;
            }
            if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
