//! A pool of PDEs: a concurrency bound (semaphore) shared by its `instances` executors.
//!
//! While a long poll is pending, the fetch loop *parks* the slots it reserved for it here.
//! A Meta-PDE sub-task that finds no free slot borrows a parked one instead of waiting for the
//! poll to end; a task the poll then brings back without a slot waits for one, its lock kept
//! alive by the heartbeat.
//!
//! A config reload that changes a pool's size resizes it in place ([`Pool::resize`]): the
//! semaphore is kept, so tasks already running still count. Growing adds permits; a cut
//! forgets the free permits at once and each further one as it comes back, so from the cut on
//! no new task starts until fewer than the new capacity run (cutting 8 → 2 with 8 running lets
//! the next task start when only one is left).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// One pool. Tasks of its topics take a permit for as long as they run.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name in `pde.yaml`.
    pub name: String,
    /// The slots, shared with the pool a reload builds when only the instances change.
    gate: Arc<Gate>,
    /// Tasks running on each PDE instance (index = instance).
    running: Vec<AtomicUsize>,
    /// Slots reserved for the pending long poll (see the module docs).
    parked: Mutex<Option<OwnedSemaphorePermit>>,
    /// Fires when slots are parked.
    parked_more: Notify,
    /// Woken when a slot lent to a sub-task comes back (the fetch loop may be waiting for one).
    freed: Arc<Notify>,
    /// `procos_pool_busy_slots` of this pool.
    metrics: crate::telemetry::metrics::PoolMetrics,
}

/// A pool's slots: a semaphore whose size a reload may change while tasks hold permits.
#[derive(Debug)]
struct Gate {
    /// Bound on tasks in flight (`max_concurrent_tasks`).
    capacity: AtomicUsize,
    /// Permits the semaphore still holds beyond `capacity` after a cut: each is forgotten as
    /// soon as it is free, never handed out. A short lock, never held across an await.
    excess: Mutex<usize>,
    permits: Arc<Semaphore>,
}

impl Gate {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: AtomicUsize::new(capacity),
            excess: Mutex::new(0),
            permits: Arc::new(Semaphore::new(capacity)),
        }
    }

    fn excess(&self) -> std::sync::MutexGuard<'_, usize> {
        // A poisoned lock holds a plain count: still right.
        self.excess.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the bound to `capacity` (see the module docs).
    fn resize(&self, capacity: usize) {
        let mut excess = self.excess();
        let old = self.capacity.swap(capacity, Ordering::Relaxed);
        if capacity >= old {
            // Growing first cancels what a cut still owed, then adds permits.
            let grow = capacity - old;
            let cancelled = grow.min(*excess);
            *excess -= cancelled;
            self.permits.add_permits(grow - cancelled);
        } else {
            *excess += old - capacity;
        }
        let forgotten = self.permits.forget_permits(*excess);
        *excess -= forgotten;
    }

    /// Forgets free permits the last cut still owes, before any is handed out.
    fn settle(&self) {
        let mut excess = self.excess();
        if *excess > 0 {
            let forgotten = self.permits.forget_permits(*excess);
            *excess -= forgotten;
        }
    }

    /// What is left of `permit` once the cut's debt is paid from it (`None`: all of it went).
    fn pay(&self, mut permit: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        let mut excess = self.excess();
        let n = (*excess).min(permit.num_permits());
        if n == 0 {
            return Some(permit);
        }
        *excess -= n;
        if n == permit.num_permits() {
            permit.forget();
            return None;
        }
        if let Some(owed) = permit.split(n) {
            owed.forget();
        }
        Some(permit)
    }

    /// Free slots right now.
    fn free(&self) -> usize {
        let excess = *self.excess();
        self.permits.available_permits().saturating_sub(excess)
    }

    /// Slots held now (running, lent or parked).
    fn held(&self) -> usize {
        let excess = *self.excess();
        (self.capacity.load(Ordering::Relaxed) + excess)
            .saturating_sub(self.permits.available_permits())
    }

    /// Waits for a free slot.
    async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            self.settle();
            let permit = self.permits.clone().acquire_owned().await.ok()?;
            if let Some(permit) = self.pay(permit) {
                return Some(permit);
            }
        }
    }

    /// A free slot now, if any.
    fn try_acquire(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        self.settle();
        let permit = self.permits.clone().try_acquire_many_owned(n as u32).ok()?;
        self.pay(permit)
    }
}

/// A slot in a pool, held while a task runs on one of its PDE instances.
#[derive(Debug)]
pub struct Slot {
    pool: Arc<Pool>,
    instance: usize,
    /// The pool's permit; `None` only while dropping (released before the gauge is read).
    permit: Option<OwnedSemaphorePermit>,
}

impl Pool {
    /// A pool with `instances` executors sharing `capacity` slots.
    pub fn new(name: &str, instances: usize, capacity: usize) -> Arc<Self> {
        Self::notifying(name, instances, capacity, Arc::new(Notify::new()))
    }

    /// Like [`Pool::new`]; `freed` is woken when a slot lent to a sub-task is given back.
    pub fn notifying(
        name: &str,
        instances: usize,
        capacity: usize,
        freed: Arc<Notify>,
    ) -> Arc<Self> {
        Self::on_gate(name, instances, Arc::new(Gate::new(capacity)), freed)
    }

    fn on_gate(name: &str, instances: usize, gate: Arc<Gate>, freed: Arc<Notify>) -> Arc<Self> {
        let instances = instances.max(1);
        Arc::new(Self {
            name: name.to_string(),
            gate,
            running: (0..instances).map(|_| AtomicUsize::new(0)).collect(),
            parked: Mutex::new(None),
            parked_more: Notify::new(),
            freed,
            metrics: crate::telemetry::metrics::PoolMetrics::new(name),
        })
    }

    /// Bound on tasks in flight (`max_concurrent_tasks`; a reload may change it).
    pub fn capacity(&self) -> usize {
        self.gate.capacity.load(Ordering::Relaxed)
    }

    /// Changes the pool's size in place (a config reload): the tasks running now keep their
    /// slots and count against the new size (see the module docs).
    pub fn resize(&self, capacity: usize) {
        self.gate.resize(capacity);
        // Slots parked for the pending poll pay what the cut still owes: the tasks that poll
        // brings back wait for a slot, their locks kept alive, like any task without one.
        if let Ok(mut parked) = self.parked.lock()
            && let Some(permit) = parked.take()
        {
            *parked = self.gate.pay(permit);
        }
        // More room may let the fetch loop poll again.
        self.freed.notify_one();
        self.report_busy();
    }

    /// The same slots (semaphore, size, running tasks) under `instances` executors: a reload
    /// that changes a pool's instances. Tasks running now stay seated on this pool's.
    pub fn with_instances(&self, instances: usize) -> Arc<Self> {
        Self::on_gate(&self.name, instances, self.gate.clone(), self.freed.clone())
    }

    /// Free slots right now.
    pub fn free(&self) -> usize {
        self.gate.free()
    }

    /// Takes up to `n` free slots without waiting.
    pub fn reserve(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        if n == 0 {
            return None;
        }
        self.gate.try_acquire(n)
    }

    /// Waits for a free slot.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.gate.acquire().await
    }

    /// Parks slots reserved for a pending poll, where sub-tasks may borrow them.
    pub fn park(&self, permit: OwnedSemaphorePermit) {
        if let Ok(mut parked) = self.parked.lock() {
            match parked.as_mut() {
                Some(held) => held.merge(permit),
                None => *parked = Some(permit),
            }
        }
        self.parked_more.notify_waiters();
        self.report_busy();
    }

    /// Takes one parked slot, if any is left.
    pub fn take_parked(&self) -> Option<OwnedSemaphorePermit> {
        let mut parked = self.parked.lock().ok()?;
        match parked.as_mut() {
            Some(held) if held.num_permits() > 1 => held.split(1),
            _ => parked.take(),
        }
    }

    /// Releases every parked slot (the poll is over).
    pub fn unpark(&self) {
        if let Ok(mut parked) = self.parked.lock() {
            parked.take();
        }
        self.report_busy();
    }

    /// Slots parked for the pending poll now.
    fn parked(&self) -> usize {
        self.parked
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(OwnedSemaphorePermit::num_permits))
            .unwrap_or(0)
    }

    /// Sets `procos_pool_busy_slots` to what [`Pool::busy`] says now.
    fn report_busy(&self) {
        self.metrics.busy(self.busy());
    }

    /// A slot for a sub-task: a free one, else one parked for the pending poll, else the first
    /// one freed.
    pub async fn lend(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            let parked_more = self.parked_more.notified();
            tokio::pin!(parked_more);
            parked_more.as_mut().enable();
            if let Some(permit) = self.gate.try_acquire(1) {
                return Some(permit);
            }
            if let Some(permit) = self.take_parked() {
                return Some(permit);
            }
            tokio::select! {
                permit = self.gate.acquire() => return permit,
                _ = parked_more => {}
            }
        }
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
        self.report_busy();
        Slot {
            pool: self.clone(),
            instance,
            permit: Some(permit),
        }
    }

    /// Slots in use now: engine tasks seated here and sub-tasks. Slots parked for the pending
    /// poll are not in use (an idle pool reads 0); the fetch loop's reservation between taking
    /// slots and parking them is not awaited across, so no reading sees it for long.
    pub fn busy(&self) -> usize {
        self.gate.held().saturating_sub(self.parked())
    }

    /// How many PDE instances share the pool (a reload keeps a pool whose size is unchanged).
    pub fn instances(&self) -> usize {
        self.running.len()
    }

    /// Tasks running now, per instance.
    pub fn running(&self) -> Vec<usize> {
        self.running
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

#[async_trait]
impl crate::pde::sub_task::Slots for Pool {
    async fn lend(&self) -> Option<crate::pde::sub_task::Borrowed> {
        let permit = Pool::lend(self).await?;
        Some(Box::new(Lent {
            permit: Some(permit),
            freed: self.freed.clone(),
        }))
    }
}

/// A slot lent to a sub-task: giving it back wakes the fetch loop, which may be waiting for a
/// free slot to poll again.
struct Lent {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        // Slot first, then the wake-up: the woken loop must find the slot free.
        drop(self.permit.take());
        self.freed.notify_one();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.running[self.instance].fetch_sub(1, Ordering::Relaxed);
        // The slot first, then the reading: the gauge must not count the slot just freed.
        drop(self.permit.take());
        self.pool.report_busy();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sub_task_borrows_a_slot_parked_for_a_pending_poll() {
        let pool = Pool::new("ai", 1, 2);
        let reserved = pool.reserve(2).expect("both slots");
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.lend().await.map(|p| p.num_permits()) })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "no free slot and nothing parked yet"
        );
        pool.park(reserved);
        assert_eq!(
            waiting.await.expect("joined"),
            Some(1),
            "borrowed a parked slot"
        );
        assert_eq!(
            pool.take_parked().map(|p| p.num_permits()),
            Some(1),
            "one left for the poll"
        );
        assert!(pool.take_parked().is_none());
    }

    #[tokio::test]
    async fn a_slot_given_back_by_a_sub_task_wakes_the_fetch_loop_with_the_slot_free() {
        use crate::pde::sub_task::Slots;
        let freed = Arc::new(Notify::new());
        let pool = Pool::notifying("ai", 1, 1, freed.clone());
        let lent = Slots::lend(pool.as_ref()).await.expect("lent");
        assert_eq!(pool.free(), 0);
        drop(lent);
        tokio::time::timeout(std::time::Duration::from_secs(1), freed.notified())
            .await
            .expect("the fetch loop is woken");
        assert_eq!(pool.free(), 1, "and finds the slot free");
    }

    /// `procos_pool_busy_slots` for `pool` in a Prometheus rendering.
    fn busy_gauge(text: &str, pool: &str) -> Option<f64> {
        let prefix = format!("procos_pool_busy_slots{{pool=\"{pool}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    #[test]
    fn slots_parked_for_the_pending_poll_are_not_busy() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let pool = Pool::new("idle", 2, 4);
        metrics::with_local_recorder(&recorder, || {
            // The fetch loop reserves every free slot and parks them for its long poll.
            let reserved = pool.reserve(4).expect("4 free");
            pool.park(reserved);
            assert_eq!(pool.busy(), 0, "an idle pool waiting for work");
            // One task comes back, runs and finishes while the next poll is pending.
            let slot = pool.seat(pool.take_parked().expect("parked"));
            assert_eq!(pool.busy(), 1);
            assert_eq!(busy_gauge(&handle.render(), "idle"), Some(1.0));
            drop(slot);
        });
        assert_eq!(pool.busy(), 0);
        assert_eq!(busy_gauge(&handle.render(), "idle"), Some(0.0));
    }

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
            a.instance, b.instance,
            "the second task goes to the idle instance"
        );
        assert_eq!(pool.running(), vec![1, 1]);
        drop(a);
        assert_eq!(pool.free(), 1);
        drop((b, permits));
        assert_eq!(pool.free(), 3);
    }
}
