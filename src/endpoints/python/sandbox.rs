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

use std::fmt;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};
use nix::libc;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};
use tokio::process::Command;

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

/// `sandbox:` on a python endpoint: `true` for the defaults below, or a map of the details.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// TCP the script may use: `false` (default) none, `true` any, or `["host:port", …]`.
    #[serde(default)]
    pub network: Network,
    /// Address space (`RLIMIT_AS`): an allocation past it fails (`MemoryError`).
    #[serde(default = "default_memory")]
    pub memory: Bytes,
    /// CPU seconds (`RLIMIT_CPU`): past it the kernel kills the script (SIGXCPU/SIGKILL).
    #[serde(default = "default_cpu_time", with = "humantime_serde")]
    pub cpu_time: Duration,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    #[serde(default = "default_open_files")]
    pub open_files: u64,
    /// Processes and threads of procos's user (`RLIMIT_NPROC`): a fork past it fails.
    #[serde(default = "default_processes")]
    pub processes: u64,
    /// Largest file the script may write (`RLIMIT_FSIZE`).
    #[serde(default = "default_file_size")]
    pub file_size: Bytes,
    /// Absolute directories the script may also write beneath (besides its temp dir).
    #[serde(default)]
    pub writable: Vec<PathBuf>,
}

fn default_memory() -> Bytes {
    Bytes(512 * MIB)
}
fn default_cpu_time() -> Duration {
    Duration::from_secs(60)
}
fn default_open_files() -> u64 {
    256
}
fn default_processes() -> u64 {
    64
}
fn default_file_size() -> Bytes {
    Bytes(64 * MIB)
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            network: Network::default(),
            memory: default_memory(),
            cpu_time: default_cpu_time(),
            open_files: default_open_files(),
            processes: default_processes(),
            file_size: default_file_size(),
            writable: Vec::new(),
        }
    }
}

const MIB: u64 = 1024 * 1024;
/// Smallest `memory`: below it python itself cannot start.
pub const MIN_MEMORY: u64 = 32 * MIB;
/// Fewest `open_files`: stdin, stdout, stderr and a few for python's start-up.
pub const MIN_OPEN_FILES: u64 = 16;

impl SandboxConfig {
    /// Every problem as (path suffix below `sandbox`, message). Pure.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.memory.0 < MIN_MEMORY {
            problems.push((
                "memory".into(),
                format!("{} is below the 32 MiB python needs to start", self.memory),
            ));
        }
        if self.cpu_time < Duration::from_secs(1) {
            problems.push(("cpu_time".into(), "must be at least 1s".into()));
        }
        if self.open_files < MIN_OPEN_FILES {
            problems.push((
                "open_files".into(),
                format!(
                    "{} is below the {MIN_OPEN_FILES} python needs",
                    self.open_files
                ),
            ));
        }
        if self.processes == 0 {
            problems.push(("processes".into(), "must be at least 1".into()));
        }
        for (i, path) in self.writable.iter().enumerate() {
            if !path.is_absolute() {
                problems.push((
                    format!("writable[{i}]"),
                    format!("`{}` must be an absolute path", path.display()),
                ));
            }
        }
        problems
    }
}

/// `sandbox:` as a field: `false`/absent → `None`, `true` → the defaults, a map → its values.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SandboxConfig>, D::Error> {
    struct SandboxVisitor;
    impl<'de> Visitor<'de> for SandboxVisitor {
        type Value = Option<SandboxConfig>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("`true`, `false` or a map of sandbox settings")
        }
        fn visit_bool<E: de::Error>(self, on: bool) -> Result<Self::Value, E> {
            Ok(on.then(SandboxConfig::default))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
            SandboxConfig::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(SandboxVisitor)
}

/// `network:` — which TCP the script may use.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Network {
    /// No TCP bind or connect (`false`, the default).
    #[default]
    Denied,
    /// Any TCP (`true`).
    Any,
    /// Connect only to these ports (`["host:port", …]`; Landlock enforces the port only).
    Allow(Vec<HostPort>),
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NetworkVisitor;
        impl<'de> Visitor<'de> for NetworkVisitor {
            type Value = Network;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`true`, `false` or a list of \"host:port\"")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<Network, E> {
                Ok(if on { Network::Any } else { Network::Denied })
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Network, S::Error> {
                let mut allowed = Vec::new();
                while let Some(item) = seq.next_element::<HostPort>()? {
                    allowed.push(item);
                }
                Ok(Network::Allow(allowed))
            }
        }
        d.deserialize_any(NetworkVisitor)
    }
}

/// One `host:port` of the allow-list.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPort {
    /// As written; not enforced by Landlock (its TCP rules are per port).
    pub host: String,
    /// The TCP port the script may connect to.
    pub port: u16,
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = |why: &str| de::Error::custom(format!("`{text}` is not host:port: {why}"));
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no `:port`"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

/// A size in bytes, written as a number or with a unit: `512MiB`, `1GiB`, `64MB`, `4096`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            n if n >= MIB && n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n => write!(f, "{n} bytes"),
        }
    }
}

impl std::str::FromStr for Bytes {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size such as 512MiB"))?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" => 1 << 10,
            "MiB" | "M" => 1 << 20,
            "GiB" | "G" => 1 << 30,
            "TiB" | "T" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
                ));
            }
        };
        number
            .checked_mul(scale)
            .map(Bytes)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 512MiB, or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Bytes, E> {
                Ok(Bytes(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Bytes, E> {
                u64::try_from(n)
                    .map(Bytes)
                    .map_err(|_| E::custom(format!("{n} is negative")))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Bytes, E> {
                text.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(BytesVisitor)
    }
}

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
