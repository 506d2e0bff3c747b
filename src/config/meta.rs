//! Checks on Meta-PDEs (`sub_pde` endpoints) that need the whole config: step topics exist, no
//! step leads back to its own Meta-PDE, nesting stays within `max_depth`, and no pool can
//! deadlock waiting for itself.
//!
//! ## Why an acyclic pool wait graph rules out deadlock
//! A task of a topic on pool P that runs a Meta-PDE holds one of P's slots while its steps wait
//! for slots of their topics' pools. Draw an edge P → Q for every such wait (a topic on P uses a
//! `sub_pde` endpoint — in its own `endpoints` or its pool's, which `pde.endpoint` can pin — with
//! a step whose topic runs on Q). If P → P, a full P deadlocks: every slot is held by a parent
//! waiting for a slot of P. Longer cycles (P → Q → P) deadlock the same way when both are full.
//! With no cycle, the pools form layers: a task only waits for pools "below" its own, whose
//! tasks never wait for a pool above; the lowest pools' tasks wait for nobody and finish, so by
//! induction every wait ends. `procos validate` therefore rejects every cycle, self-loops
//! included.
//!
//! ```text
//!   meta ──► ai_specialized        (analyse_claim: step analysis on claim_summary)
//!     └────► general_purpose       (analyse_claim: step figures on claim_figures)
//! ```

use std::collections::{BTreeMap, BTreeSet};

use super::error::{Problem, index_path, key_path, name_list};
use super::file::{PoolConfig, TopicConfig};
use super::validate::Parts;
use crate::endpoints::EndpointConfig;
use crate::endpoints::sub_pde::SubPdeConfig;

/// Every Meta-PDE problem of `parts` (nothing when there is no `sub_pde` endpoint).
pub(crate) fn check(parts: &Parts<'_>, out: &mut Vec<Problem>) {
    let metas: BTreeMap<&str, &SubPdeConfig> = parts
        .endpoints
        .iter()
        .filter_map(|(name, e)| match e {
            EndpointConfig::SubPde(c) => Some((name.as_str(), c)),
            _ => None,
        })
        .collect();
    if metas.is_empty() {
        return;
    }
    for (name, meta) in &metas {
        for (i, step) in meta.steps.iter().enumerate() {
            // A topic that exists but failed to parse has its own problem reported already.
            let exists = match &parts.topic_names {
                Some(names) => names.contains(&step.topic),
                None => parts.topics.contains_key(&step.topic),
            };
            if !exists {
                let known = parts.topics.keys().map(String::as_str);
                out.push(Problem::new(
                    step_path(name, i),
                    format!(
                        "step `{}` runs on topic `{}`, which does not exist (topics: {})",
                        step.name,
                        step.topic,
                        name_list(known)
                    ),
                ));
            }
        }
    }
    let graph = MetaGraph {
        metas: &metas,
        topics: parts.topics,
    };
    for (name, meta) in &metas {
        if let Some((i, cycle)) = graph.cycle_from(name) {
            out.push(Problem::new(
                step_path(name, i),
                format!("a step leads back to this Meta-PDE: {cycle}"),
            ));
        } else {
            let depth = graph.depth(name);
            if depth > meta.max_depth {
                out.push(Problem::new(
                    key_path(&key_path("endpoints", name), "max_depth"),
                    format!(
                        "Meta-PDEs nest {depth} deep under `{name}` (through its step topics), beyond its max_depth {}",
                        meta.max_depth
                    ),
                ));
            }
        }
    }
    pool_cycles(&metas, parts.topics, parts.pools, out);
}

fn step_path(endpoint: &str, i: usize) -> String {
    key_path(
        &index_path(&key_path(&key_path("endpoints", endpoint), "steps"), i),
        "topic",
    )
}

/// Meta-PDEs and the topics their steps run on.
struct MetaGraph<'a> {
    metas: &'a BTreeMap<&'a str, &'a SubPdeConfig>,
    topics: &'a BTreeMap<String, TopicConfig>,
}

impl MetaGraph<'_> {
    /// The Meta-PDEs a topic's sub-tasks run (its `endpoints`; sub-tasks carry no
    /// `pde.endpoint`), in config order.
    fn metas_of(&self, topic: &str) -> Vec<&str> {
        self.topics
            .get(topic)
            .map(|t| {
                t.endpoints
                    .iter()
                    .filter_map(|e| self.metas.get_key_value(e.as_str()).map(|(k, _)| *k))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A path from `start` back to itself, as `a → topic t → endpoint b → topic u → endpoint a`,
    /// with the index of `start`'s step where it begins.
    fn cycle_from(&self, start: &str) -> Option<(usize, String)> {
        let meta = self.metas.get(start)?;
        for (i, step) in meta.steps.iter().enumerate() {
            let mut path = vec![start.to_string()];
            let mut seen = BTreeSet::new();
            if self.reaches(&step.topic, start, &mut path, &mut seen) {
                return Some((i, path.join(" → ")));
            }
        }
        None
    }

    /// Does `topic` lead (through Meta-PDE endpoints) to `target`? Extends `path` on success.
    fn reaches(
        &self,
        topic: &str,
        target: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        if !seen.insert(topic.to_string()) {
            return false;
        }
        path.push(format!("topic {topic}"));
        for meta in self.metas_of(topic) {
            path.push(format!("endpoint {meta}"));
            if meta == target {
                return true;
            }
            let steps = self
                .metas
                .get(meta)
                .map(|m| m.steps.as_slice())
                .unwrap_or_default();
            if steps
                .iter()
                .any(|s| self.reaches(&s.topic, target, path, seen))
            {
                return true;
            }
            path.pop();
        }
        path.pop();
        false
    }

    /// How many Meta-PDE levels `meta` spans (itself = 1). Only called without a cycle through
    /// `meta`; other cycles below are cut by `visiting`.
    fn depth(&self, meta: &str) -> u32 {
        self.depth_inner(meta, &mut BTreeSet::new())
    }

    fn depth_inner<'s>(&'s self, meta: &'s str, visiting: &mut BTreeSet<&'s str>) -> u32 {
        if !visiting.insert(meta) {
            return 0;
        }
        let below = self
            .metas
            .get(meta)
            .map(|m| {
                m.steps
                    .iter()
                    .flat_map(|s| self.metas_of(&s.topic))
                    .map(|inner| self.depth_inner(inner, visiting))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        visiting.remove(meta);
        below + 1
    }
}

/// Why pool P waits for pool Q.
#[derive(Debug, Clone)]
struct Wait {
    topic: String,
    endpoint: String,
    step: usize,
    step_topic: String,
}

/// Rejects cycles in the pool wait graph (see the module docs).
fn pool_cycles(
    metas: &BTreeMap<&str, &SubPdeConfig>,
    topics: &BTreeMap<String, TopicConfig>,
    pools: &BTreeMap<String, PoolConfig>,
    out: &mut Vec<Problem>,
) {
    // pool → (pool it waits for → first reason found)
    let mut edges: BTreeMap<&str, BTreeMap<&str, Wait>> = BTreeMap::new();
    for (topic_name, topic) in topics {
        let pool_endpoints = pools.get(&topic.pool).map(|p| p.endpoints.as_slice());
        let used: BTreeSet<&str> = topic
            .endpoints
            .iter()
            .chain(pool_endpoints.unwrap_or_default())
            .map(String::as_str)
            .filter(|e| metas.contains_key(e))
            .collect();
        for endpoint in used {
            let Some(meta) = metas.get(endpoint) else {
                continue;
            };
            for (i, step) in meta.steps.iter().enumerate() {
                let Some(step_topic) = topics.get(&step.topic) else {
                    continue;
                };
                edges
                    .entry(topic.pool.as_str())
                    .or_default()
                    .entry(step_topic.pool.as_str())
                    .or_insert_with(|| Wait {
                        topic: topic_name.clone(),
                        endpoint: endpoint.to_string(),
                        step: i,
                        step_topic: step.topic.clone(),
                    });
            }
        }
    }
    for (pool, targets) in &edges {
        if let Some(wait) = targets.get(pool) {
            out.push(Problem::new(
                step_path(&wait.endpoint, wait.step),
                format!(
                    "step topic `{}` runs on pool `{pool}`, the same pool as topic `{}` that waits for it: a full pool would deadlock; put sub-task topics on other pools",
                    wait.step_topic, wait.topic
                ),
            ));
        }
    }
    // Longer cycles, each reported once (by its smallest pool name).
    let mut reported: BTreeSet<BTreeSet<&str>> = BTreeSet::new();
    for start in edges.keys() {
        let mut path = vec![*start];
        if let Some(cycle) = find_cycle(&edges, start, &mut path, &mut BTreeSet::new()) {
            let members: BTreeSet<&str> = cycle.iter().copied().collect();
            if cycle.len() > 2 && reported.insert(members) {
                let wait = &edges[cycle[0]][cycle[1]];
                out.push(Problem::new(
                    step_path(&wait.endpoint, wait.step),
                    format!(
                        "pools wait for each other through Meta-PDE steps: {}; when they are full they would deadlock — break the cycle by moving a step topic to another pool",
                        cycle
                            .iter()
                            .map(|p| format!("pool {p}"))
                            .collect::<Vec<_>>()
                            .join(" → ")
                    ),
                ));
            }
        }
    }
}

/// A cycle of two or more distinct pools from `path[0]` back to it, as pool names with the
/// start repeated at the end.
fn find_cycle<'a>(
    edges: &BTreeMap<&'a str, BTreeMap<&'a str, Wait>>,
    at: &'a str,
    path: &mut Vec<&'a str>,
    seen: &mut BTreeSet<&'a str>,
) -> Option<Vec<&'a str>> {
    seen.insert(at);
    for next in edges.get(at).into_iter().flat_map(|t| t.keys().copied()) {
        if next == at {
            continue; // self-loops are reported on their own
        }
        if next == path[0] {
            let mut cycle = path.clone();
            cycle.push(next);
            return Some(cycle);
        }
        if !seen.contains(next) {
            path.push(next);
            if let Some(cycle) = find_cycle(edges, next, path, seen) {
                return Some(cycle);
            }
            path.pop();
        }
    }
    None
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
