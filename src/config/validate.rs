//! Semantic checks on a parsed config: pure (no network, no files), and exhaustive — every
//! problem is reported at once, each with its YAML path.
//!
//! Messages name settings and entry names, never setting values that may be secret (a URL may
//! carry credentials, so `camunda.url` problems do not echo it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::error::{Problem, index_path, key_path, name_list};
use super::file::{CamundaConfig, DeployConfig, FileConfig, OutputConfig, PoolConfig, TopicConfig};
use crate::endpoints::EndpointConfig;

/// The engine rejects an `asyncResponseTimeout` above 30 minutes (1 800 000 ms).
pub const MAX_LONG_POLL: Duration = Duration::from_secs(30 * 60);

/// More retries than this is a loop rather than a retry policy; wait longer with `retry_timeout`.
pub const MAX_RETRIES: u32 = 100;

/// Checks a parsed config; empty when it is good to run. [`load`](super::load) calls this; it is
/// public for code that builds a [`FileConfig`] by other means (tests, generated configs).
pub fn validate(config: &FileConfig) -> Vec<Problem> {
    validate_parts(&Parts {
        camunda: Some(&config.camunda),
        deploy: Some(&config.deploy),
        pools: &config.pde_manager.pools,
        pool_names: Some(config.pde_manager.pools.keys().cloned().collect()),
        topics: &config.topics,
        topic_count: Some(config.topics.len()),
        endpoints: &config.endpoints,
        endpoint_names: Some(config.endpoints.keys().cloned().collect()),
    })
}

/// What parsed of a config that may have failed in places: checks run on what is there, and
/// references are resolved against every *name* in the file, so an entry with a typo inside
/// does not also show up as "does not exist". `None` means the section itself is unusable.
pub(crate) struct Parts<'a> {
    pub camunda: Option<&'a CamundaConfig>,
    pub deploy: Option<&'a DeployConfig>,
    pub pools: &'a BTreeMap<String, PoolConfig>,
    pub pool_names: Option<BTreeSet<String>>,
    pub topics: &'a BTreeMap<String, TopicConfig>,
    pub topic_count: Option<usize>,
    pub endpoints: &'a BTreeMap<String, EndpointConfig>,
    pub endpoint_names: Option<BTreeSet<String>>,
}

/// Every semantic problem in `parts`.
pub(crate) fn validate_parts(parts: &Parts<'_>) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(c) = parts.camunda {
        camunda(c, &mut out);
    }
    if let Some(d) = parts.deploy {
        deploy(d, &mut out);
    }
    for (name, pool) in parts.pools {
        self::pool(name, pool, parts.endpoint_names.as_ref(), &mut out);
    }
    if parts.topic_count == Some(0) {
        out.push(Problem::new(
            "topics",
            "no topics: procos would fetch nothing (add at least one)",
        ));
    }
    for (name, t) in parts.topics {
        topic(name, t, parts, &mut out);
    }
    for (name, e) in parts.endpoints {
        endpoint(e, &key_path("endpoints", name), &mut out);
    }
    super::meta::check(parts, &mut out);
    out
}

fn camunda(c: &CamundaConfig, out: &mut Vec<Problem>) {
    let url_ok = reqwest::Url::parse(&c.url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if !url_ok {
        out.push(Problem::new(
            "camunda.url",
            "must be an http(s) URL such as `http://localhost:8080/engine-rest`",
        ));
    }
    if c.worker_id.as_deref().is_some_and(|w| w.trim().is_empty()) {
        out.push(Problem::new(
            "camunda.worker_id",
            "must not be empty (omit it for the default)",
        ));
    }
    if let Some(auth) = &c.auth {
        use super::file::AuthConfig;
        match auth {
            AuthConfig::Basic { username, password } => {
                if username.is_empty() {
                    out.push(Problem::new("camunda.auth.username", "is empty"));
                }
                if password.is_empty() {
                    out.push(Problem::new("camunda.auth.password", "is empty"));
                }
            }
            AuthConfig::Bearer { token } => {
                if token.is_empty() {
                    out.push(Problem::new("camunda.auth.token", "is empty"));
                }
            }
        }
    }
    positive(c.lock_duration, "camunda.lock_duration", out);
    positive(c.request_timeout, "camunda.request_timeout", out);
    positive(c.boot_timeout, "camunda.boot_timeout", out);
    if c.long_poll > MAX_LONG_POLL {
        out.push(Problem::new(
            "camunda.long_poll",
            format!(
                "{} is above the engine's limit of 30m (asyncResponseTimeout ≤ 1800000 ms)",
                humantime::format_duration(c.long_poll)
            ),
        ));
    }
    if c.max_tasks < 1 {
        out.push(Problem::new("camunda.max_tasks", "must be at least 1"));
    }
    let b = &c.backoff;
    positive(b.initial, "camunda.backoff.initial", out);
    if b.initial > b.max {
        out.push(Problem::new(
            "camunda.backoff.initial",
            format!(
                "{} is longer than `max` ({})",
                humantime::format_duration(b.initial),
                humantime::format_duration(b.max)
            ),
        ));
    }
    if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
        out.push(Problem::new(
            "camunda.backoff.multiplier",
            "must be a number ≥ 1 (1 keeps the delay constant)",
        ));
    }
}

fn positive(d: Duration, path: &str, out: &mut Vec<Problem>) {
    if d.is_zero() {
        out.push(Problem::new(path, "must be longer than zero"));
    }
}

fn deploy(d: &DeployConfig, out: &mut Vec<Problem>) {
    if d.dir.as_os_str().is_empty() {
        out.push(Problem::new("deploy.dir", "must not be empty"));
    }
    if d.deployment_name.trim().is_empty() {
        out.push(Problem::new("deploy.deployment_name", "must not be empty"));
    }
    if d.source.trim().is_empty() {
        out.push(Problem::new("deploy.source", "must not be empty"));
    }
}

fn pool(name: &str, p: &PoolConfig, endpoints: Option<&BTreeSet<String>>, out: &mut Vec<Problem>) {
    let path = key_path("pde_manager.pools", name);
    if p.max_concurrent_tasks < 1 {
        out.push(Problem::new(
            key_path(&path, "max_concurrent_tasks"),
            "must be at least 1",
        ));
    }
    if p.instances < 1 {
        out.push(Problem::new(
            key_path(&path, "instances"),
            "must be at least 1",
        ));
    } else if p.max_concurrent_tasks >= 1 && p.instances > p.max_concurrent_tasks {
        out.push(Problem::new(
            key_path(&path, "instances"),
            format!(
                "{} instances cannot share {} concurrent tasks (each needs at least one)",
                p.instances, p.max_concurrent_tasks
            ),
        ));
    }
    if p.endpoints.is_empty() {
        out.push(Problem::new(
            key_path(&path, "endpoints"),
            "a pool needs at least one endpoint",
        ));
    }
    let Some(known) = endpoints else { return };
    for (i, e) in p.endpoints.iter().enumerate() {
        if !known.contains(e) {
            out.push(Problem::new(
                index_path(&key_path(&path, "endpoints"), i),
                format!(
                    "pool `{name}` lists endpoint `{e}`, which does not exist (endpoints: {})",
                    name_list(known.iter().map(String::as_str))
                ),
            ));
        }
    }
}

fn topic(name: &str, t: &TopicConfig, parts: &Parts<'_>, out: &mut Vec<Problem>) {
    let path = key_path("topics", name);
    if let Some(pools) = &parts.pool_names
        && !pools.contains(&t.pool)
    {
        out.push(Problem::new(
            key_path(&path, "pool"),
            format!(
                "pool `{}` does not exist (pools: {})",
                t.pool,
                name_list(pools.iter().map(String::as_str))
            ),
        ));
    }
    let endpoints_path = key_path(&path, "endpoints");
    if t.endpoints.is_empty() {
        out.push(Problem::new(
            &endpoints_path,
            "a topic needs at least one endpoint",
        ));
    }
    let pool = parts.pools.get(&t.pool);
    for (i, e) in t.endpoints.iter().enumerate() {
        let here = index_path(&endpoints_path, i);
        if let Some(known) = &parts.endpoint_names
            && !known.contains(e)
        {
            out.push(Problem::new(
                here,
                format!(
                    "topic `{name}` uses endpoint `{e}`, which does not exist (endpoints: {})",
                    name_list(known.iter().map(String::as_str))
                ),
            ));
        } else if let Some(pool) = pool
            && !pool.endpoints.contains(e)
        {
            out.push(Problem::new(
                here,
                format!(
                    "endpoint `{e}` is not in the endpoints of pool `{}` ({}); add it there or \
                     move the topic to another pool",
                    t.pool,
                    name_list(pool.endpoints.iter().map(String::as_str))
                ),
            ));
        }
    }
    if t.retries > MAX_RETRIES {
        out.push(Problem::new(
            key_path(&path, "retries"),
            format!(
                "{} is more than {MAX_RETRIES}; wait longer between tries with `retry_timeout`",
                t.retries
            ),
        ));
    }
    if let Some(lock) = t.lock_duration {
        positive(lock, &key_path(&path, "lock_duration"), out);
    }
    for (i, v) in t.input.required.iter().enumerate() {
        if v.trim().is_empty() {
            out.push(Problem::new(
                index_path(&key_path(&path, "input.required"), i),
                "an empty variable name",
            ));
        }
    }
    for (class, code) in &t.bpmn_errors {
        if code.trim().is_empty() {
            out.push(Problem::new(
                key_path(&key_path(&path, "bpmn_errors"), class),
                "a BPMN error code must not be empty",
            ));
        }
    }
    output(&t.output, &key_path(&path, "output"), out);
}

fn output(o: &OutputConfig, path: &str, out: &mut Vec<Problem>) {
    if o.variable.as_deref().is_some_and(|v| v.trim().is_empty()) {
        out.push(Problem::new(
            key_path(path, "variable"),
            "must not be empty",
        ));
    }
    for (variable, pointer) in &o.mapping {
        if let Err(why) = check_pointer(pointer) {
            out.push(Problem::new(
                key_path(&key_path(path, "mapping"), variable),
                format!("`{pointer}` is not a JSON pointer: {why}"),
            ));
        }
    }
    for (i, r) in o.required.iter().enumerate() {
        let bad = if r.starts_with('/') {
            check_pointer(r).err()
        } else if r.is_empty() {
            Some("empty")
        } else {
            None
        };
        if let Some(why) = bad {
            out.push(Problem::new(
                index_path(&key_path(path, "required"), i),
                format!("`{r}` is neither a key nor a JSON pointer: {why}"),
            ));
        }
    }
    if let Some(schema) = &o.schema
        && let Err(e) = jsonschema::validator_for(schema)
    {
        let at = e.instance_path().to_string();
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" at `{at}`")
        };
        out.push(Problem::new(
            key_path(path, "schema"),
            format!("not a valid JSON Schema{at}: {e}"),
        ));
    }
    if o.attempts < 1 {
        out.push(Problem::new(
            key_path(path, "attempts"),
            "must be at least 1",
        ));
    }
}

/// RFC 6901: empty (the whole document) or `/`-separated tokens where `~` is `~0` or `~1`.
fn check_pointer(p: &str) -> Result<(), &'static str> {
    if !(p.is_empty() || p.starts_with('/')) {
        return Err("must be empty or start with `/` (e.g. `/status`)");
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("`~` must be followed by `0` or `1`");
        }
    }
    Ok(())
}

/// Kind-specific checks, one arm per endpoint kind. The hook where each endpoint file's own
/// pure `validate` will be called (URL templates, script paths, …); none exist yet.
/// Kind-specific checks live with each endpoint kind (`EndpointConfig::validate`).
fn endpoint(config: &EndpointConfig, path: &str, out: &mut Vec<Problem>) {
    for (suffix, message) in config.validate() {
        out.push(Problem::new(format!("{path}.{suffix}"), message));
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
