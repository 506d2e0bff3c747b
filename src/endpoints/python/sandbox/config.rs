//! `sandbox:` as written in the config: `true`, or a map parsed straight into the values the
//! sandbox applies (sizes, durations, the network allow-list), errors at their YAML path.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};

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

pub(super) const MIB: u64 = 1024 * 1024;
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
