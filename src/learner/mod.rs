//! The learner: what procos has seen each endpoint do, per (topic, endpoint, task class).
//!
//! ```text
//!  Validation ──observe(Sample)──► Learner (in memory, one per daemon) ──► routers rank with it
//!  Gateway ────routed()─────────►     │ dirty keys
//!                                     ▼ store::Flusher, every few seconds and at exit (off the
//!                                       hot path): a redb table next to the outcome journal,
//!                                       and the learner.json snapshot `procos stats` reads
//!  boot: StatsStore::load ──────────► Learner::load
//! ```
//!
//! Reads and writes take one short lock at a time; nothing here does I/O. Loading is behind
//! [`StatsStore`], so the learner works the same with and without a `state_dir`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod report;
pub mod stats;
pub mod store;

pub use stats::{CallOutcome, Sample, Stats};

/// Default decay half-life of the learner's rates.
pub const DEFAULT_HALF_LIFE: Duration = Duration::from_secs(3600);

/// What the statistics are kept per.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// The topic.
    pub topic: String,
    /// The endpoint's name in `pde.yaml`.
    pub endpoint: String,
    /// The task class (from the Test block's task profile), e.g. `s`, `m`, `l`.
    pub class: String,
}

impl Key {
    /// A key.
    pub fn new(topic: &str, endpoint: &str, class: &str) -> Self {
        Self {
            topic: topic.to_string(),
            endpoint: endpoint.to_string(),
            class: class.to_string(),
        }
    }
}

/// Where the learner's statistics persist (a redb table under `state_dir`), read at boot. The
/// writing side is the [`store::Flusher`]: batches off the hot path, with the health rows and
/// the snapshot file in the same step.
pub trait StatsStore: Send + Sync + std::fmt::Debug {
    /// Every stored (key, stats), read at boot.
    fn load(&self) -> Result<Vec<(Key, Stats)>, String>;
}

/// The statistics of every (topic, endpoint, class), shared by the whole daemon.
#[derive(Debug)]
pub struct Learner {
    stats: Mutex<HashMap<Key, Stats>>,
    dirty: Mutex<HashSet<Key>>,
    /// Per topic; set at build time by each topic's `routing.half_life`.
    half_lives: Mutex<HashMap<String, f64>>,
    default_half_life: f64,
    clock: Clock,
}

/// Where the learner's "now" (unix seconds) comes from: the wall clock, or a clock a benchmark
/// or test drives (so that decay follows simulated time).
#[derive(Clone, Default)]
struct Clock(Option<Arc<dyn Fn() -> f64 + Send + Sync>>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Clock(driven)"
        } else {
            "Clock(wall)"
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Learner {
    fn default() -> Self {
        Self::new(DEFAULT_HALF_LIFE, HashMap::new())
    }
}

impl Learner {
    /// An empty learner; `half_lives` overrides the decay half-life per topic.
    pub fn new(default_half_life: Duration, half_lives: HashMap<String, Duration>) -> Self {
        Self {
            stats: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            half_lives: Mutex::new(
                half_lives
                    .into_iter()
                    .map(|(t, d)| (t, d.as_secs_f64()))
                    .collect(),
            ),
            default_half_life: default_half_life.as_secs_f64(),
            clock: Clock::default(),
        }
    }

    /// The same learner reading "now" from `clock` (unix seconds) instead of the wall clock:
    /// benchmarks and tests drive decay with simulated time.
    pub fn with_clock(mut self, clock: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.clock = Clock(Some(Arc::new(clock)));
        self
    }

    /// The learner's "now", unix seconds (the wall clock unless [`Learner::with_clock`]).
    pub fn now(&self) -> f64 {
        match &self.clock.0 {
            Some(clock) => clock(),
            // The wall clock: the learner's time persists across restarts.
            None => crate::endpoints::health::now_secs(),
        }
    }

    /// Sets `topic`'s decay half-life (its `routing.half_life`), replacing the default for it.
    pub fn set_half_life(&self, topic: &str, half_life: Duration) {
        lock(&self.half_lives).insert(topic.to_string(), half_life.as_secs_f64());
    }

    fn half_life(&self, topic: &str) -> f64 {
        lock(&self.half_lives)
            .get(topic)
            .copied()
            .unwrap_or(self.default_half_life)
    }

    /// Adds what was stored (at boot). Keys already present are replaced.
    pub fn load(&self, entries: Vec<(Key, Stats)>) {
        lock(&self.stats).extend(entries);
    }

    /// Records one call at the learner's time (the wall clock unless driven).
    pub fn observe(&self, key: &Key, sample: &Sample) {
        self.observe_at(key, sample, self.now());
    }

    /// Records one call at `now` (unix seconds; tests and benchmarks drive their own clock).
    pub fn observe_at(&self, key: &Key, sample: &Sample, now: f64) {
        let half_life = self.half_life(&key.topic);
        self.update(key, |stats| stats.observe(sample, now, half_life));
    }

    /// Records that a task's route put `key.endpoint` first.
    pub fn routed(&self, key: &Key) {
        self.update(key, |stats| stats.routed += 1);
    }

    /// Changes `key`'s figures and marks them for the next save. The key is cloned only the first
    /// time it is seen: these run for every task.
    fn update(&self, key: &Key, change: impl FnOnce(&mut Stats)) {
        {
            let mut all = lock(&self.stats);
            if let Some(stats) = all.get_mut(key) {
                change(stats);
            } else {
                change(all.entry(key.clone()).or_default());
            }
        }
        let mut dirty = lock(&self.dirty);
        if !dirty.contains(key) {
            dirty.insert(key.clone());
        }
    }

    /// The figures of `key`, decayed to `now`.
    pub fn get_at(&self, key: &Key, now: f64) -> Option<Stats> {
        let mut s = lock(&self.stats).get(key)?.clone();
        s.decay(now, self.half_life(&key.topic));
        Some(s)
    }

    /// The figures of `key`, decayed to the learner's time (the wall clock unless driven).
    pub fn get(&self, key: &Key) -> Option<Stats> {
        self.get_at(key, self.now())
    }

    /// Every key's figures as stored (not decayed), sorted by key.
    pub fn snapshot(&self) -> Vec<(Key, Stats)> {
        let mut all: Vec<_> = lock(&self.stats)
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The decay half-life of `topic`'s figures: how far back a decayed rate looks.
    pub fn half_life_of(&self, topic: &str) -> Duration {
        Duration::from_secs_f64(self.half_life(topic).max(0.0))
    }

    /// The decay half-life of `topic`'s figures, in seconds (for arithmetic on [`Stats`]).
    pub fn half_life_secs(&self, topic: &str) -> f64 {
        self.half_life(topic)
    }

    /// Changes `key`'s figures in place under the learner's lock (created empty if missing),
    /// without marking them changed: the shared store swaps in what other replicas learned,
    /// atomically with the observations of running tasks (store/postgres.rs).
    pub fn adjust(&self, key: &Key, f: impl FnOnce(&mut Stats)) {
        f(lock(&self.stats).entry(key.clone()).or_default());
    }

    /// How many keys changed since the last flush (status and tests).
    pub fn pending(&self) -> usize {
        lock(&self.dirty).len()
    }

    /// Marks `keys` changed again (a flush that could not be written gives them back).
    pub fn mark_dirty(&self, keys: impl IntoIterator<Item = Key>) {
        lock(&self.dirty).extend(keys);
    }

    /// The keys changed since the last call, with their figures: what a flush writes.
    pub fn take_dirty(&self) -> Vec<(Key, Stats)> {
        let keys: Vec<Key> = lock(&self.dirty).drain().collect();
        let stats = lock(&self.stats);
        keys.into_iter()
            .filter_map(|k| stats.get(&k).map(|s| (k, s.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_are_kept_per_key_and_flushed_once() {
        let learner = Learner::default();
        let key = Key::new("t", "a", "s");
        let ok = Sample {
            outcome: CallOutcome::Valid,
            latency_ms: 5.0,
            judge_score: Some(0.8),
            cost: Some(0.01),
            tokens: Some(100),
        };
        learner.observe_at(&key, &ok, 100.0);
        learner.observe_at(&Key::new("t", "b", "s"), &ok, 100.0);
        assert_eq!(learner.get_at(&key, 100.0).expect("kept").calls, 1);
        assert_eq!(learner.take_dirty().len(), 2);
        assert!(learner.take_dirty().is_empty(), "flushed keys are clean");
        learner.routed(&key);
        assert_eq!(learner.take_dirty()[0].1.routed, 1);
    }

    #[test]
    fn a_driven_clock_and_a_topic_half_life_set_how_fast_figures_fade() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let now = Arc::new(AtomicU64::new(1_000));
        let clock = now.clone();
        let learner = Learner::default().with_clock(move || clock.load(Ordering::Relaxed) as f64);
        learner.set_half_life("fast", Duration::from_secs(10));
        let failed = Sample {
            outcome: CallOutcome::Failed,
            latency_ms: 5.0,
            judge_score: None,
            cost: None,
            tokens: None,
        };
        let (fast, slow) = (Key::new("fast", "a", "s"), Key::new("slow", "a", "s"));
        learner.observe(&fast, &failed);
        learner.observe(&slow, &failed);
        now.store(1_010, Ordering::Relaxed);
        let faded = |k: &Key| learner.get(k).expect("kept").failed;
        assert!(
            (faded(&fast) - 0.5).abs() < 1e-9,
            "one 10 s half-life later"
        );
        assert!(faded(&slow) > 0.99, "the default half-life is an hour");
    }
}
