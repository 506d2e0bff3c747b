//! The result cache of one topic (`topics.<name>.cache`): valid results kept in memory for `ttl`,
//! at most `max_entries`, keyed by endpoint name and canonical input.
//!
//! ```text
//! Validation ── slot(endpoint, request): the key, serialised once per call
//!            ├─ slot.lookup() ──► hit: the stored output (validated again) ─► Done
//!            │                └► miss: call the endpoint
//!            └─ slot.store(output)   only a valid result, only on a first attempt
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

    /// The place of this endpoint and input in the cache, its key serialised once for the
    /// lookup and the store that may follow. `None` for an endpoint with side effects: never
    /// served nor stored, whatever the config says.
    pub fn slot<'a>(
        &'a self,
        endpoint: &'a dyn Endpoint,
        request: &EndpointRequest,
    ) -> Option<Slot<'a>> {
        (!endpoint.side_effects()).then(|| Slot {
            cache: self,
            endpoint: endpoint.name(),
            key: key(endpoint.name(), request).into(),
        })
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

/// One endpoint and input's place in a [`ResultCache`] (see [`ResultCache::slot`]).
#[derive(Debug)]
pub struct Slot<'a> {
    cache: &'a ResultCache,
    endpoint: &'a str,
    key: Arc<str>,
}

impl Slot<'_> {
    /// The stored output, if one is younger than `ttl`. Counts the lookup as a hit or a miss.
    pub fn lookup(&self) -> Option<Value> {
        let cache = self.cache;
        let now = Instant::now();
        let found = {
            let mut entries = cache.lock();
            entries.drop_expired(cache.ttl, now);
            entries.by_key.get(&*self.key).map(|e| e.output.clone())
        };
        let result = if found.is_some() { "hit" } else { "miss" };
        crate::telemetry::metrics::cache_lookup(&cache.topic, result);
        tracing::debug!(
            topic = %cache.topic,
            endpoint = self.endpoint,
            result,
            "Result cache lookup."
        );
        found
    }

    /// Stores a valid output, evicting the oldest entry when full.
    pub fn store(&self, output: &Value) {
        let cache = self.cache;
        let now = Instant::now();
        let mut entries = cache.lock();
        entries.drop_expired(cache.ttl, now);
        entries.remove(&self.key);
        while entries.by_key.len() >= cache.max_entries && entries.pop_oldest() {}
        let seq = entries.next;
        entries.next += 1;
        entries.order.insert(seq, self.key.clone());
        entries.by_key.insert(
            self.key.clone(),
            Entry {
                seq,
                stored: now,
                output: output.clone(),
            },
        );
    }

    /// Forgets the stored output (e.g. it no longer validates).
    pub fn forget(&self) {
        self.cache.lock().remove(&self.key);
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
