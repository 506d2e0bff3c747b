//! The open external tasks with the indexes a database would keep: by id, by process instance,
//! and in the orders `fetchAndLock` hands tasks out (creation order; priority, then creation).
//!
//! Without them every `fetchAndLock` scanned and sorted all open tasks, and every ended
//! instance scanned them again to drop its own: draining a backlog of N tasks cost O(N²), so
//! a 100,000-task backlog drained at a few hundred tasks/s while 1,000 drained at thousands.
//! A task's id, instance, priority and sequence number never change once it is inserted, which
//! is what keeps the indexes true; everything else may be changed through [`TaskTable::get_mut`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use super::state::ExternalTask;

#[derive(Debug, Default)]
pub(crate) struct TaskTable {
    by_id: HashMap<String, ExternalTask>,
    /// Task ids per process instance (an instance rarely has more than a few).
    by_instance: HashMap<String, Vec<String>>,
    /// Creation order: sequence number → id.
    by_seq: BTreeMap<u64, String>,
    /// `usePriority` order: highest priority first, then creation order.
    by_priority: BTreeMap<(Reverse<i64>, u64), String>,
}

impl TaskTable {
    pub(crate) fn get(&self, id: &str) -> Option<&ExternalTask> {
        self.by_id.get(id)
    }

    /// The task to change in place. Its id, instance, priority and `seq` must stay as they are
    /// (the indexes are keyed by them); nothing in the engine changes them after creation.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut ExternalTask> {
        self.by_id.get_mut(id)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &ExternalTask> {
        self.by_id.values()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Adds `task` (a task with the same id is replaced).
    pub(crate) fn insert(&mut self, task: ExternalTask) {
        self.remove(&task.id);
        self.by_instance
            .entry(task.process_instance_id.clone())
            .or_default()
            .push(task.id.clone());
        self.by_seq.insert(task.seq, task.id.clone());
        self.by_priority
            .insert((Reverse(task.priority), task.seq), task.id.clone());
        self.by_id.insert(task.id.clone(), task);
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<ExternalTask> {
        let task = self.by_id.remove(id)?;
        self.drop_from_fetch_order(&task);
        if let Some(ids) = self.by_instance.get_mut(&task.process_instance_id) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_instance.remove(&task.process_instance_id);
            }
        }
        Some(task)
    }

    /// Removes every task of process instance `instance_id`.
    pub(crate) fn remove_instance(&mut self, instance_id: &str) {
        for id in self.by_instance.remove(instance_id).unwrap_or_default() {
            if let Some(task) = self.by_id.remove(&id) {
                self.drop_from_fetch_order(&task);
            }
        }
    }

    /// Takes a removed task out of both fetch orders.
    fn drop_from_fetch_order(&mut self, task: &ExternalTask) {
        self.by_seq.remove(&task.seq);
        self.by_priority.remove(&(Reverse(task.priority), task.seq));
    }

    /// The tasks of process instance `instance_id`.
    pub(crate) fn of_instance(&self, instance_id: &str) -> impl Iterator<Item = &ExternalTask> {
        self.by_instance
            .get(instance_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
    }

    /// Every task in the order `fetchAndLock` considers them: by priority (highest first) when
    /// `use_priority`, then by creation time, oldest first unless `newest_first`. Lazy in the
    /// common orders, so a fetch that needs a few tasks reads a few.
    pub(crate) fn in_fetch_order(
        &self,
        use_priority: bool,
        newest_first: bool,
    ) -> Box<dyn Iterator<Item = &ExternalTask> + '_> {
        let by_id = |id: &String| self.by_id.get(id);
        match (use_priority, newest_first) {
            (false, false) => Box::new(self.by_seq.values().filter_map(by_id)),
            (false, true) => Box::new(self.by_seq.values().rev().filter_map(by_id)),
            (true, false) => Box::new(self.by_priority.values().filter_map(by_id)),
            (true, true) => {
                // Highest priority first, newest first within a priority: rare, sorted here.
                let mut all: Vec<&ExternalTask> = self.by_id.values().collect();
                all.sort_by_key(|t| (Reverse(t.priority), Reverse(t.seq)));
                Box::new(all.into_iter())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, LazyLock};

    use super::*;
    use crate::engine::state::Definition;

    static DEFINITION: LazyLock<Arc<Definition>> = LazyLock::new(|| {
        let xml = br#"<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL">
            <process id="p" isExecutable="true" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" camunda:historyTimeToLive="P1D"><startEvent id="s"/></process></definitions>"#;
        let model = crate::engine::bpmn::parse(xml)
            .expect("a one-event process")
            .remove(0);
        Arc::new(Definition {
            id: "p:1".into(),
            key: "p".into(),
            version: 1,
            deployment_id: "d".into(),
            resource: "p.bpmn".into(),
            tenant_id: None,
            model,
        })
    });

    fn task(id: &str, instance: &str, priority: i64, seq: u64) -> ExternalTask {
        ExternalTask {
            id: id.into(),
            topic: "t".into(),
            worker_id: None,
            lock_expiration: None,
            lock_expiration_wall: None,
            create_time: chrono::Utc::now(),
            retries: None,
            error_message: None,
            error_details: None,
            process_instance_id: instance.into(),
            definition: DEFINITION.clone(),
            activity_id: "s".into(),
            activity_instance_id: "s:1".into(),
            execution_id: "e".into(),
            priority,
            business_key: None,
            extension_properties: BTreeMap::new(),
            seq,
        }
    }

    fn ids<'a>(tasks: impl Iterator<Item = &'a ExternalTask>) -> Vec<&'a str> {
        tasks.map(|t| t.id.as_str()).collect()
    }

    fn table() -> TaskTable {
        let mut table = TaskTable::default();
        table.insert(task("a", "i1", 0, 1));
        table.insert(task("b", "i2", 5, 2));
        table.insert(task("c", "i1", 5, 3));
        table.insert(task("d", "i3", 0, 4));
        table
    }

    #[test]
    fn fetch_order_follows_creation_and_priority() {
        let table = table();
        assert_eq!(
            ids(table.in_fetch_order(false, false)),
            ["a", "b", "c", "d"]
        );
        assert_eq!(ids(table.in_fetch_order(false, true)), ["d", "c", "b", "a"]);
        assert_eq!(ids(table.in_fetch_order(true, false)), ["b", "c", "a", "d"]);
        assert_eq!(ids(table.in_fetch_order(true, true)), ["c", "b", "d", "a"]);
    }

    #[test]
    fn removing_an_instance_removes_its_tasks_from_every_index() {
        let mut table = table();
        table.remove_instance("i1");
        assert_eq!(table.len(), 2);
        assert!(table.get("a").is_none() && table.get("c").is_none());
        assert_eq!(ids(table.in_fetch_order(false, false)), ["b", "d"]);
        assert_eq!(ids(table.in_fetch_order(true, false)), ["b", "d"]);
        assert_eq!(table.of_instance("i1").count(), 0);

        assert_eq!(table.remove("b").map(|t| t.id), Some("b".to_owned()));
        assert!(table.remove("b").is_none());
        assert_eq!(ids(table.in_fetch_order(true, false)), ["d"]);
        assert_eq!(ids(table.of_instance("i3")), ["d"]);
    }

    #[test]
    fn inserting_an_id_again_replaces_the_task() {
        let mut table = table();
        table.insert(task("a", "i9", 1, 9));
        assert_eq!(table.len(), 4);
        assert_eq!(
            ids(table.in_fetch_order(false, false)),
            ["b", "c", "d", "a"]
        );
        assert_eq!(ids(table.of_instance("i1")), ["c"]);
        assert_eq!(ids(table.of_instance("i9")), ["a"]);
    }
}
