//! A pool of PDEs: a concurrency bound (semaphore) shared by its `instances` executors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One pool. Tasks of its topics take a permit for as long as they run.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name in `pde.yaml`.
    pub name: String,
    /// Bound on tasks in flight.
    pub capacity: usize,
    permits: Arc<Semaphore>,
    /// Tasks running on each PDE instance (index = instance).
    running: Vec<AtomicUsize>,
    /// Tasks each instance has finished.
    finished: Vec<AtomicU64>,
}

/// A slot in a pool, held while a task runs on one of its PDE instances.
#[derive(Debug)]
pub struct Slot {
    pool: Arc<Pool>,
    instance: usize,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// A pool with `instances` executors sharing `capacity` slots.
    pub fn new(name: &str, instances: usize, capacity: usize) -> Arc<Self> {
        let instances = instances.max(1);
        Arc::new(Self {
            name: name.to_string(),
            capacity,
            permits: Arc::new(Semaphore::new(capacity)),
            running: (0..instances).map(|_| AtomicUsize::new(0)).collect(),
            finished: (0..instances).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Free slots right now.
    pub fn free(&self) -> usize {
        self.permits.available_permits()
    }

    /// Takes up to `n` free slots without waiting.
    pub fn reserve(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        if n == 0 {
            return None;
        }
        self.permits.clone().try_acquire_many_owned(n as u32).ok()
    }

    /// Waits for a free slot.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }

    /// The semaphore bounding the pool's tasks in flight, for Meta-PDE sub-tasks of its topics
    /// (they run in process, outside the fetch loop, and hold a slot while they run).
    pub fn slots(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    /// Seats a task on the least busy instance, holding `permit` until the slot is dropped.
    pub fn seat(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let instance = self
            .running
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| n.load(Ordering::Relaxed))
            .map(|(i, _)| i)
            .unwrap_or(0);
        self.running[instance].fetch_add(1, Ordering::Relaxed);
        Slot {
            pool: self.clone(),
            instance,
            _permit: permit,
        }
    }

    /// Tasks running now, per instance.
    pub fn running(&self) -> Vec<usize> {
        self.running
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    /// Tasks finished so far, per instance.
    pub fn finished(&self) -> Vec<u64> {
        self.finished
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

impl Slot {
    /// The PDE's name for logs, e.g. `general_purpose#2`.
    pub fn pde_name(&self) -> String {
        format!("{}#{}", self.pool.name, self.instance)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.running[self.instance].fetch_sub(1, Ordering::Relaxed);
        self.pool.finished[self.instance].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_spread_over_instances_and_bound_the_pool() {
        let pool = Pool::new("gp", 2, 3);
        let permits = pool.reserve(3).expect("3 free");
        assert_eq!(pool.free(), 0);
        assert!(pool.reserve(1).is_none(), "a full pool hands out nothing");
        let mut permits = permits;
        let a = pool.seat(permits.split(1).expect("split"));
        let b = pool.seat(permits.split(1).expect("split"));
        assert_ne!(
            a.pde_name(),
            b.pde_name(),
            "the second task goes to the idle instance"
        );
        assert_eq!(pool.running(), vec![1, 1]);
        drop(a);
        assert_eq!(pool.free(), 1);
        assert_eq!(pool.finished().iter().sum::<u64>(), 1);
        drop((b, permits));
        assert_eq!(pool.free(), 3);
    }
}
