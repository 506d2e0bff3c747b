//! A read-only view of the manager's pools, topics and endpoints for the admin server's
//! `/api/status` ([`crate::admin`]): taken once from a [`Manager`] before it runs, it reads the
//! generation in force at each reading, so pools, topics and endpoints a config reload changed
//! show at once.
//!
//! Reading it takes no lock a task holds: slot counts are the semaphore's and the per-instance
//! atomics.

use std::sync::Arc;

use serde::Serialize;

use super::{Manager, Pool};

/// The manager's pools and topics, for status readers.
#[derive(Debug, Clone, Default)]
pub struct ManagerStatus {
    /// The manager's generations; `None` for a fixed view (tests).
    handle: Option<super::ManagerHandle>,
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
    /// The view `/api/status` reads (see the module docs).
    pub fn status(&self) -> ManagerStatus {
        ManagerStatus {
            handle: Some(self.handle()),
            ..ManagerStatus::default()
        }
    }
}

/// The topics of a generation's pipeline, by name.
fn topics_of(generation: &super::Generation) -> Vec<TopicStatus> {
    generation
        .pipeline
        .topics()
        .values()
        .map(|t| TopicStatus {
            name: t.name.clone(),
            pool: t.config.pool.clone(),
            endpoints: t.config.endpoints.clone(),
            strategy: t.config.routing.strategy.as_str(),
        })
        .collect()
}

impl Pool {
    /// This pool now.
    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            name: self.name.clone(),
            slots: self.capacity(),
            in_flight: self.busy(),
            instances: self.running(),
        }
    }
}

impl ManagerStatus {
    /// Every pool of the config in force now, by name.
    pub fn pools(&self) -> Vec<PoolStatus> {
        match &self.handle {
            Some(h) => h.pools().values().map(|p| p.status()).collect(),
            None => self.pools.iter().map(|p| p.status()).collect(),
        }
    }

    /// (name, kind) of every endpoint of the config in force, by name; `None` for a fixed
    /// view (the caller knows its config's).
    pub fn endpoints(&self) -> Option<Vec<(String, &'static str)>> {
        self.handle
            .as_ref()
            .map(|h| h.generation().endpoints.clone())
    }

    /// Every topic of the config in force, by name.
    pub fn topics(&self) -> Vec<TopicStatus> {
        match &self.handle {
            Some(h) => topics_of(&h.generation()),
            None => self.topics.clone(),
        }
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
            ..ManagerStatus::default()
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
