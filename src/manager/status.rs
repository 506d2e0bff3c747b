//! A read-only view of the manager's pools and topics for the admin server's `/api/status`
//! ([`crate::admin`]): taken once from a [`Manager`] before it runs, it keeps the pools (shared,
//! so every reading is live) and each topic's pool, endpoints and strategy.
//!
//! Reading it takes no lock a task holds: slot counts are the semaphore's and the per-instance
//! atomics.

use std::sync::Arc;

use serde::Serialize;

use super::{Manager, Pool};

/// The manager's pools and topics, for status readers.
#[derive(Debug, Clone, Default)]
pub struct ManagerStatus {
    pools: Vec<Arc<Pool>>,
    topics: Vec<TopicStatus>,
}

/// One pool now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStatus {
    /// The pool's name in `pde.yaml`.
    pub name: String,
    /// Its slots (`max_concurrent_tasks`).
    pub slots: usize,
    /// Slots running tasks or sub-tasks now.
    pub in_flight: usize,
    /// Tasks running on each PDE instance now (index = instance): the page's "cores".
    pub instances: Vec<usize>,
}

/// One topic as configured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicStatus {
    /// The topic.
    pub name: String,
    /// The pool its tasks run on.
    pub pool: String,
    /// Its endpoints in routing order.
    pub endpoints: Vec<String>,
    /// Its routing strategy (`ordered`, `adaptive`, …).
    pub strategy: &'static str,
}

impl Manager {
    /// The view `/api/status` reads (see the module docs); take it before [`Manager::run`].
    pub fn status(&self) -> ManagerStatus {
        let topics = self
            .pipeline
            .topics()
            .values()
            .map(|t| TopicStatus {
                name: t.name.clone(),
                pool: t.config.pool.clone(),
                endpoints: t.config.endpoints.clone(),
                strategy: t.config.routing.strategy.as_str(),
            })
            .collect();
        ManagerStatus {
            pools: self.pools.values().cloned().collect(),
            topics,
        }
    }
}

impl Pool {
    /// This pool now.
    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            name: self.name.clone(),
            slots: self.capacity,
            in_flight: self.busy(),
            instances: self.running(),
        }
    }
}

impl ManagerStatus {
    /// Every pool now, by name.
    pub fn pools(&self) -> Vec<PoolStatus> {
        self.pools.iter().map(|p| p.status()).collect()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> &[TopicStatus] {
        &self.topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_shows_its_slots_in_flight_and_each_instance_load() {
        let pool = Pool::new("ai", 3, 4);
        let mut permits = pool.reserve(2).expect("2 free");
        let a = pool.seat(permits.split(1).expect("split"));
        let b = pool.seat(permits);
        let status = ManagerStatus {
            pools: vec![pool.clone()],
            topics: vec![],
        };
        let now = status.pools();
        assert_eq!(now[0].slots, 4);
        assert_eq!(now[0].in_flight, 2);
        assert_eq!(now[0].instances.iter().sum::<usize>(), 2);
        assert_eq!(now[0].instances.len(), 3);
        drop((a, b));
        assert_eq!(status.pools()[0].in_flight, 0, "readings are live");
    }
}
