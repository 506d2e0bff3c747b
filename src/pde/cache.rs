//! The result cache of one topic (`topics.<name>.cache`): valid results kept in memory for `ttl`,
//! at most `max_entries`, keyed by endpoint name and canonical input.
//!
//! ```text
//! Validation ── lookup(endpoint, request) ──► hit: the stored output (validated again) ─► Done
//!            │                              └► miss: call the endpoint
//!            └─ store(endpoint, request, output)   only a valid result, only on a first attempt
//! ```
//!
//! The key is the endpoint's name, the task's variables as canonical JSON (object keys sorted at
//! every depth) and the activity's extension properties (`pde.prompt` and the like change the
//! call). Expiry and eviction are oldest-first: with one `ttl` per cache, the oldest entry is also
//! the first to expire. Time is tokio's clock, so tests move it with paused time. Endpoints with
//! side effects are never served nor stored, whatever the config says (validation refuses such a
//! config already).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::config::file::CacheConfig;
use crate::endpoints::{Endpoint, EndpointRequest};

/// Valid results of one topic, bounded in count and age.
#[derive(Debug)]
pub struct ResultCache {
    topic: String,
    ttl: Duration,
    max_entries: usize,
    inner: Mutex<Entries>,
}

/// The entries and their age order (sequence number → key; the smallest is the oldest).
#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<Arc<str>, Entry>,
    order: BTreeMap<u64, Arc<str>>,
    next: u64,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    stored: Instant,
    output: Value,
}

impl Entries {
    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.by_key.remove(key) {
            self.order.remove(&entry.seq);
        }
    }

    /// Drops the oldest entry; false when empty. `order` and `by_key` always change together.
    fn pop_oldest(&mut self) -> bool {
        match self.order.pop_first() {
            Some((_, key)) => {
                self.by_key.remove(&key);
                true
            }
            None => false,
        }
    }

    /// Drops the entries older than `ttl` (oldest first; stops at the first younger one).
    fn drop_expired(&mut self, ttl: Duration, now: Instant) {
        while let Some((_, key)) = self.order.first_key_value() {
            let expired = self
                .by_key
                .get(key)
                .is_some_and(|e| now.duration_since(e.stored) >= ttl);
            if !expired || !self.pop_oldest() {
                break;
            }
        }
    }
}

impl ResultCache {
    /// An empty cache for `topic` with the config's bounds (`max_entries` is at least 1).
    pub fn new(topic: &str, config: &CacheConfig) -> Self {
        Self {
            topic: topic.to_string(),
            ttl: config.ttl,
            max_entries: config.max_entries.max(1),
            inner: Mutex::new(Entries::default()),
        }
    }

    /// The stored output for this endpoint and input, if one is younger than `ttl`. Counts the
    /// lookup as a hit or a miss. Never serves an endpoint with side effects (and does not count
    /// those lookups: there was nothing to find).
    pub fn lookup(&self, endpoint: &dyn Endpoint, request: &EndpointRequest) -> Option<Value> {
        if endpoint.side_effects() {
            return None;
        }
        let key = key(endpoint.name(), request);
        let now = Instant::now();
        let found = {
            let mut entries = self.lock();
            entries.drop_expired(self.ttl, now);
            entries.by_key.get(key.as_str()).map(|e| e.output.clone())
        };
        let result = if found.is_some() { "hit" } else { "miss" };
        crate::telemetry::metrics::cache_lookup(&self.topic, result);
        tracing::debug!(
            topic = %self.topic,
            endpoint = endpoint.name(),
            result,
            "Result cache lookup."
        );
        found
    }

    /// Stores a valid output for this endpoint and input, evicting the oldest entry when full.
    /// Does nothing for an endpoint with side effects.
    pub fn store(&self, endpoint: &dyn Endpoint, request: &EndpointRequest, output: &Value) {
        if endpoint.side_effects() {
            return;
        }
        let key: Arc<str> = key(endpoint.name(), request).into();
        let now = Instant::now();
        let mut entries = self.lock();
        entries.drop_expired(self.ttl, now);
        entries.remove(&key);
        while entries.by_key.len() >= self.max_entries && entries.pop_oldest() {}
        let seq = entries.next;
        entries.next += 1;
        entries.order.insert(seq, key.clone());
        entries.by_key.insert(
            key,
            Entry {
                seq,
                stored: now,
                output: output.clone(),
            },
        );
    }

    /// Forgets the stored output for this endpoint and input (e.g. it no longer validates).
    pub fn forget(&self, endpoint: &dyn Endpoint, request: &EndpointRequest) {
        self.lock().remove(&key(endpoint.name(), request));
    }

    /// How many entries are held (expired ones included until the next lookup or store).
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves consistent data (every change is one step).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The cache key: endpoint name, variables, properties — as one JSON text, so no two different
/// inputs can meet. It is canonical as it stands: serde_json's maps are sorted by key (the crate
/// runs without `preserve_order`) and the properties are a `BTreeMap`.
fn key(endpoint: &str, request: &EndpointRequest) -> String {
    // Invariant: JSON values with string keys always serialise.
    serde_json::to_string(&(endpoint, &request.variables, &request.properties))
        .expect("JSON values serialise")
}

#[cfg(test)]
mod tests;
