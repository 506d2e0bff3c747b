//! Semantic checks on a parsed config: pure (no network, no files), and exhaustive — every
//! problem is reported at once, each with its YAML path.
//!
//! Messages name settings and entry names, never setting values that may be secret (a URL may
//! carry credentials, so `camunda.url` problems do not echo it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::error::{Problem, index_path, key_path, name_list};
use super::file::{
    CacheConfig, CamundaConfig, CheckConfig, DeployConfig, FileConfig, ManagerConfig, OutputConfig,
    PoolConfig, TopicConfig,
};
use crate::endpoints::EndpointConfig;

/// The engine rejects an `asyncResponseTimeout` above 30 minutes (1 800 000 ms).
pub const MAX_LONG_POLL: Duration = Duration::from_secs(30 * 60);

/// More retries than this is a loop rather than a retry policy; wait longer with `retry_timeout`.
pub const MAX_RETRIES: u32 = 100;

/// Longest lock: a week. Camunda adds the lock to the current time as a `java.util.Date`;
/// far larger values overflow its date arithmetic and lock the task for good. The heartbeat
/// extends a lock while a task runs, so a lock only needs to outlast one heartbeat.
pub const MAX_LOCK_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest `retry_timeout`: a week, for the same date arithmetic as locks.
pub const MAX_RETRY_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most tasks per fetch and in flight per pool: each is a lock, a heartbeat and memory here;
/// far below the engine's `int` and what a semaphore can count.
pub const MAX_TASKS: usize = 10_000;
/// Upper bound of `camunda.max_connections` (Tomcat's whole default request pool is 200).
pub const MAX_CONNECTIONS: usize = 1_000;

/// Longest timeout of one engine call (deployments of large files included).
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// Longest wait for the engine at boot: a week (a supervisor restarts procos anyway).
pub const MAX_BOOT_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest backoff delay (`initial` and `max`): past an hour procos looks dead.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Largest backoff growth factor: 100 reaches the cap in a few failures already.
pub const MAX_BACKOFF_MULTIPLIER: f64 = 100.0;

/// Longest quiet time before a redeployment.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(600);

/// Longest `journal_retention`: a month of acknowledged outcomes is plenty.
pub const MAX_JOURNAL_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Longest drain after SIGTERM: a day (orchestrators kill long before).
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Most calls of one endpoint per task when its result fails validation.
pub const MAX_ATTEMPTS: u32 = 100;

/// Longest `cache.ttl`: a month; a result older than that is not worth trusting.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Most results one topic's cache keeps in memory.
pub const MAX_CACHE_ENTRIES: usize = 1_000_000;

/// Checks a parsed config; empty when it is good to run. [`load`](super::load) calls this; it is
/// public for code that builds a [`FileConfig`] by other means (tests, generated configs).
pub fn validate(config: &FileConfig) -> Vec<Problem> {
    validate_parts(&Parts {
        camunda: Some(&config.camunda),
        deploy: Some(&config.deploy),
        manager: Some(&config.pde_manager),
        pools: &config.pde_manager.pools,
        pool_names: Some(config.pde_manager.pools.keys().cloned().collect()),
        topics: &config.topics,
        topic_names: Some(config.topics.keys().cloned().collect()),
        endpoints: &config.endpoints,
        endpoint_names: Some(config.endpoints.keys().cloned().collect()),
        admin: Some(&config.admin),
    })
}

/// What parsed of a config that may have failed in places: checks run on what is there, and
/// references are resolved against every *name* in the file, so an entry with a typo inside
/// does not also show up as "does not exist". `None` means the section itself is unusable.
pub(crate) struct Parts<'a> {
    pub camunda: Option<&'a CamundaConfig>,
    pub deploy: Option<&'a DeployConfig>,
    /// `pde_manager`'s own settings (its pools are in `pools`).
    pub manager: Option<&'a ManagerConfig>,
    pub pools: &'a BTreeMap<String, PoolConfig>,
    pub pool_names: Option<BTreeSet<String>>,
    pub topics: &'a BTreeMap<String, TopicConfig>,
    /// Every topic name in the file, parsed or not.
    pub topic_names: Option<BTreeSet<String>>,
    pub endpoints: &'a BTreeMap<String, EndpointConfig>,
    pub endpoint_names: Option<BTreeSet<String>>,
    /// `admin:` (issue 12's admin server).
    pub admin: Option<&'a super::admin::AdminConfig>,
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
    if let Some(m) = parts.manager {
        at_most(
            m.shutdown_grace,
            MAX_SHUTDOWN_GRACE,
            "pde_manager.shutdown_grace",
            &mut out,
        );
        at_most(
            m.journal_retention,
            MAX_JOURNAL_RETENTION,
            "pde_manager.journal_retention",
            &mut out,
        );
        // replicas: the shared learner store's URL (parsed only; connecting is the build's job).
        if let Some(url) = &m.state
            && let Err(message) = crate::learner::store::postgres::check_url(url)
        {
            out.push(Problem::new("pde_manager.state", message));
        }
    }
    for (name, pool) in parts.pools {
        self::pool(name, pool, parts.endpoint_names.as_ref(), &mut out);
    }
    if parts.topic_names.as_ref().is_some_and(BTreeSet::is_empty) {
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
    if let Some(a) = parts.admin {
        a.check(&mut out);
    }
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
    between(
        c.lock_duration,
        MAX_LOCK_DURATION,
        "camunda.lock_duration",
        out,
    );
    between(
        c.request_timeout,
        MAX_REQUEST_TIMEOUT,
        "camunda.request_timeout",
        out,
    );
    between(
        c.boot_timeout,
        MAX_BOOT_TIMEOUT,
        "camunda.boot_timeout",
        out,
    );
    if c.long_poll > MAX_LONG_POLL {
        out.push(Problem::new(
            "camunda.long_poll",
            format!(
                "{} is above the engine's limit of 30m (asyncResponseTimeout ≤ 1800000 ms)",
                humantime::format_duration(c.long_poll)
            ),
        ));
    }
    count(c.max_tasks, MAX_TASKS, "camunda.max_tasks", out);
    count(
        c.max_connections,
        MAX_CONNECTIONS,
        "camunda.max_connections",
        out,
    );
    let b = &c.backoff;
    between(b.initial, MAX_BACKOFF, "camunda.backoff.initial", out);
    at_most(b.max, MAX_BACKOFF, "camunda.backoff.max", out);
    if b.initial > b.max && b.max <= MAX_BACKOFF {
        out.push(Problem::new(
            "camunda.backoff.initial",
            format!(
                "{} is longer than `max` ({})",
                humantime::format_duration(b.initial),
                humantime::format_duration(b.max)
            ),
        ));
    }
    if !(b.multiplier.is_finite() && (1.0..=MAX_BACKOFF_MULTIPLIER).contains(&b.multiplier)) {
        out.push(Problem::new(
            "camunda.backoff.multiplier",
            format!(
                "must be a number from 1 to {MAX_BACKOFF_MULTIPLIER} (1 keeps the delay constant)"
            ),
        ));
    }
}

/// Longer than zero and at most `max`.
fn between(d: Duration, max: Duration, path: &str, out: &mut Vec<Problem>) {
    if d.is_zero() {
        out.push(Problem::new(path, "must be longer than zero"));
    }
    at_most(d, max, path, out);
}

/// At most `max`: larger durations overflow what the engine or a timer holds.
fn at_most(d: Duration, max: Duration, path: &str, out: &mut Vec<Problem>) {
    if d > max {
        out.push(Problem::new(
            path,
            format!(
                "{} is longer than {}, the most allowed",
                humantime::format_duration(d),
                humantime::format_duration(max)
            ),
        ));
    }
}

/// A count from 1 to `max`.
fn count(n: usize, max: usize, path: &str, out: &mut Vec<Problem>) {
    if !(1..=max).contains(&n) {
        out.push(Problem::new(
            path,
            format!("must be from 1 to {max} (it is {n})"),
        ));
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
    at_most(d.debounce, MAX_DEBOUNCE, "deploy.debounce", out);
}

fn pool(name: &str, p: &PoolConfig, endpoints: Option<&BTreeSet<String>>, out: &mut Vec<Problem>) {
    let path = key_path("pde_manager.pools", name);
    count(
        p.max_concurrent_tasks,
        MAX_TASKS,
        &key_path(&path, "max_concurrent_tasks"),
        out,
    );
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
    at_most(
        t.retry_timeout,
        MAX_RETRY_TIMEOUT,
        &key_path(&path, "retry_timeout"),
        out,
    );
    if let Some(lock) = t.lock_duration {
        between(
            lock,
            MAX_LOCK_DURATION,
            &key_path(&path, "lock_duration"),
            out,
        );
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
                key_path(&key_path(&path, "bpmn_errors"), &class.to_string()),
                "a BPMN error code must not be empty",
            ));
        }
    }
    output(&t.output, &key_path(&path, "output"), out);
    validator(name, t, parts, &key_path(&path, "output.validator"), out);
    if let Some(c) = &t.cache {
        cache(name, c, t, parts, &path, out);
    }
    let pool_endpoints = parts.pools.get(&t.pool).map(|p| p.endpoints.as_slice());
    if let Err(problems) = routing_plan(name, t, pool_endpoints) {
        out.extend(problems);
    }
}

/// `topics.<name>.cache`: bounded, and only where no endpoint the topic can reach (its list, and
/// its pool's endpoints, which `pde.endpoint` may pick) has side effects — a cached answer would
/// skip the effect.
fn cache(
    name: &str,
    c: &CacheConfig,
    t: &TopicConfig,
    parts: &Parts<'_>,
    path: &str,
    out: &mut Vec<Problem>,
) {
    let path = key_path(path, "cache");
    between(c.ttl, MAX_CACHE_TTL, &key_path(&path, "ttl"), out);
    count(
        c.max_entries,
        MAX_CACHE_ENTRIES,
        &key_path(&path, "max_entries"),
        out,
    );
    let pool = parts.pools.get(&t.pool).map(|p| p.endpoints.as_slice());
    let reachable: BTreeSet<&String> = t.endpoints.iter().chain(pool.unwrap_or_default()).collect();
    for e in reachable {
        if let Some(config) = parts.endpoints.get(e)
            && config.has_side_effects()
        {
            out.push(Problem::new(
                &path,
                format!(
                    "topic `{name}` caches results, but endpoint `{e}` ({}) has side effects \
                     that a cached answer would skip; remove `cache:` or use only endpoints that \
                     only read (http GET/HEAD/OPTIONS, python with `pure: true`, models, noop)",
                    config.kind()
                ),
            ));
        }
    }
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
    checks(&o.checks, &key_path(path, "checks"), out);
    if !(1..=MAX_ATTEMPTS).contains(&o.attempts) {
        out.push(Problem::new(
            key_path(path, "attempts"),
            format!("must be from 1 to {MAX_ATTEMPTS}"),
        ));
    }
}

/// `output.checks[]`: a valid pointer, at least one rule, a regex that compiles, bounds in order.
fn checks(checks: &[CheckConfig], path: &str, out: &mut Vec<Problem>) {
    for (i, c) in checks.iter().enumerate() {
        let at = index_path(path, i);
        if let Err(why) = check_pointer(&c.pointer) {
            out.push(Problem::new(
                key_path(&at, "pointer"),
                format!("`{}` is not a JSON pointer: {why}", c.pointer),
            ));
        }
        if c.regex.is_none()
            && c.min_length.is_none()
            && c.max_length.is_none()
            && c.min.is_none()
            && c.max.is_none()
        {
            out.push(Problem::new(
                &at,
                "a check needs a rule: regex, min_length, max_length, min or max",
            ));
        }
        if let Some(r) = &c.regex
            && let Err(e) = regex::Regex::new(r)
        {
            out.push(Problem::new(
                key_path(&at, "regex"),
                format!("`{r}` is not a regular expression: {}", one_line(&e)),
            ));
        }
        if let (Some(lo), Some(hi)) = (c.min_length, c.max_length)
            && lo > hi
        {
            out.push(Problem::new(
                key_path(&at, "min_length"),
                format!("{lo} is more than max_length {hi}"),
            ));
        }
        for (key, bound) in [("min", c.min), ("max", c.max)] {
            if bound.is_some_and(|b| !b.is_finite()) {
                out.push(Problem::new(key_path(&at, key), "must be a finite number"));
            }
        }
        if let (Some(lo), Some(hi)) = (c.min, c.max)
            && lo > hi
        {
            out.push(Problem::new(
                key_path(&at, "min"),
                format!("{lo} is more than max {hi}"),
            ));
        }
    }
}

/// The regex crate's error without its multi-line drawing: its last line says what is wrong.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_string()
}

/// `output.validator`: an endpoint of the topic's pool (the runtime resolves it there) whose
/// calls have no side effects — it runs once per candidate result, retries included.
fn validator(name: &str, t: &TopicConfig, parts: &Parts<'_>, path: &str, out: &mut Vec<Problem>) {
    let Some(v) = &t.output.validator else {
        return;
    };
    let Some(pool) = parts.pools.get(&t.pool) else {
        return; // the unknown pool is reported at `topics.<name>.pool`
    };
    if !pool.endpoints.contains(v) {
        out.push(Problem::new(
            path,
            format!(
                "validator `{v}` of topic `{name}` is not an endpoint of its pool `{}` (pool \
                 endpoints: {})",
                t.pool,
                name_list(pool.endpoints.iter().map(String::as_str))
            ),
        ));
        return;
    }
    if let Some(config) = parts.endpoints.get(v)
        && config.has_side_effects()
    {
        out.push(Problem::new(
            path,
            format!(
                "validator `{v}` ({}) has side effects, and a judge runs for every candidate \
                 result; use an endpoint that only reads (python with `pure: true`, a model, http \
                 GET)",
                config.kind()
            ),
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

/// Kind-specific checks live with each endpoint kind (`EndpointConfig::validate`): pure, no
/// filesystem (`procos validate` adds what only the files can tell).
fn endpoint(config: &EndpointConfig, path: &str, out: &mut Vec<Problem>) {
    for (suffix, message) in config.validate() {
        out.push(Problem::new(format!("{path}.{suffix}"), message));
    }
}

mod routing;
pub use routing::routing_plan;

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
