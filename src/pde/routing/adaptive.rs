//! `adaptive`: a contextual bandit over (topic, endpoint, task class) — Thompson sampling.
//!
//! For each candidate, from the learner's decayed figures for this topic and the task's class:
//!
//! ```text
//!  quality  = success × pass × score     each drawn from its Beta posterior
//!             success: answered vs failed calls; pass: valid vs invalid answers;
//!             score: the judge's mean score (1 when the topic has no validator)
//!  utility  = w.quality × quality − w.latency × latency/slowest − w.cost × cost/dearest
//! ```
//!
//! Candidates are ordered by utility: the first serves, the others are its fallbacks. Drawing
//! from the posteriors instead of using the means explores exactly as much as the figures are
//! uncertain; with probability `explore` a random other candidate goes first anyway (the floor,
//! so that a recovered endpoint is noticed).
//!
//! `min_samples`: figures are trusted once an endpoint has been called that often for the
//! class. Until then the endpoint is *learning*: it goes first (the one with the fewest calls
//! first), so that every candidate, a newly added one too, is measured within a few tasks
//! rather than left to a pessimistic prior. Decay then never makes trusted figures count for
//! less: figures older than their half-life keep the weight of `min_samples` calls at their
//! last rates. So forgetting follows change in the endpoints that are being used, without
//! making the policy re-explore endpoints it already knows to be worse (that is the explore
//! floor's job).

use std::sync::{Arc, Mutex};

use rand::RngExt;
use rand::rngs::SmallRng;
use rand_distr::{Beta, Distribution};

use super::{Ranked, RouteInput, Router, lock};
use crate::config::file::AdaptiveSettings;
use crate::endpoints::Endpoint;
use crate::learner::Stats;

/// Thompson sampling over quality, latency and cost.
#[derive(Debug)]
pub struct Adaptive {
    settings: AdaptiveSettings,
    rng: Mutex<SmallRng>,
}

/// One candidate's draw.
struct Draw {
    utility: f64,
    success: f64,
    pass: f64,
    evidence: f64,
}

impl Adaptive {
    /// A router with these settings.
    pub fn new(settings: AdaptiveSettings, rng: Mutex<SmallRng>) -> Self {
        Self { settings, rng }
    }
}

/// A draw from Beta(hits + 1, misses + 1) (the uniform prior); the mean when the parameters
/// are unusable (never with finite figures).
fn beta(rng: &mut SmallRng, hits: f64, misses: f64) -> f64 {
    let (a, b) = (hits.max(0.0) + 1.0, misses.max(0.0) + 1.0);
    Beta::new(a, b).map_or(a / (a + b), |d| d.sample(rng))
}

/// How much to scale decayed figures of weight `weight` so that an endpoint with at least
/// `floor` lifetime observations keeps the weight of `floor` of them.
fn keep(weight: f64, lifetime: u64, min_samples: u32) -> f64 {
    let floor = lifetime.min(u64::from(min_samples)) as f64;
    if weight > 0.0 && weight < floor {
        floor / weight
    } else {
        1.0
    }
}

impl Router for Adaptive {
    fn name(&self) -> &'static str {
        "adaptive"
    }

    fn rank(&self, task: &RouteInput<'_>, candidates: Vec<Arc<dyn Endpoint>>) -> Ranked {
        if candidates.is_empty() {
            return Ranked {
                endpoints: candidates,
                reason: "no candidate".into(),
            };
        }
        let s = &self.settings;
        let stats: Vec<Stats> = candidates
            .iter()
            .map(|e| task.stats(e.name()).unwrap_or_default())
            .collect();
        let slowest = stats
            .iter()
            .filter(|s| s.calls > 0)
            .map(|s| s.latency_ewma_ms)
            .fold(0.0, f64::max);
        let dearest = stats
            .iter()
            .filter_map(Stats::mean_cost)
            .fold(0.0, f64::max);
        let mut rng = lock(&self.rng);
        let draws: Vec<Draw> = stats
            .iter()
            .map(|st| {
                let k = keep(st.ok + st.failed, st.calls, s.min_samples);
                let success = beta(&mut rng, st.ok * k, st.failed * k);
                let k = keep(st.valid + st.invalid, st.answered, s.min_samples);
                let pass = beta(&mut rng, st.valid * k, st.invalid * k);
                let score = if st.scored > 0.0 {
                    let k = keep(st.scored, st.answered, s.min_samples);
                    beta(&mut rng, st.score_sum * k, (st.scored - st.score_sum) * k)
                } else {
                    1.0
                };
                let latency = if slowest > 0.0 && st.calls > 0 {
                    st.latency_ewma_ms / slowest
                } else {
                    0.0
                };
                let cost = match st.mean_cost() {
                    Some(c) if dearest > 0.0 => c / dearest,
                    _ => 0.0,
                };
                Draw {
                    utility: s.weights.quality * success * pass * score
                        - s.weights.latency * latency
                        - s.weights.cost * cost,
                    success,
                    pass,
                    evidence: st.ok + st.failed,
                }
            })
            .collect();
        let learning = |i: usize| stats[i].calls < u64::from(s.min_samples);
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        // Learning endpoints first (fewest calls first), then the trusted ones by their draw.
        order.sort_by(|&a, &b| match (learning(a), learning(b)) {
            (true, true) => stats[a].calls.cmp(&stats[b].calls),
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            (false, false) => draws[b].utility.total_cmp(&draws[a].utility),
        });
        let warming = learning(order[0]);
        let explored = !warming && order.len() > 1 && rng.random_bool(s.explore);
        if explored {
            let pick = rng.random_range(1..order.len());
            let chosen = order.remove(pick);
            order.insert(0, chosen);
        }
        drop(rng);
        let figures = order
            .iter()
            .map(|&i| {
                let d = &draws[i];
                format!(
                    "{} {:.3} (success {:.2}, pass {:.2}, n {:.0})",
                    candidates[i].name(),
                    d.utility,
                    d.success,
                    d.pass,
                    d.evidence
                )
            })
            .collect::<Vec<_>>()
            .join(" > ");
        let reason = if warming {
            format!(
                "learning `{}` ({} of {} calls): {figures}",
                candidates[order[0]].name(),
                stats[order[0]].calls,
                s.min_samples
            )
        } else if explored {
            format!("explore: {figures}")
        } else {
            format!("sampled: {figures}")
        };
        let mut slots: Vec<Option<Arc<dyn Endpoint>>> = candidates.into_iter().map(Some).collect();
        let endpoints = order.iter().filter_map(|&i| slots[i].take()).collect();
        Ranked { endpoints, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::config::file::RouteWeights;
    use crate::learner::{CallOutcome, Learner};
    use crate::pde::routing::Busy;
    use rand::SeedableRng;

    fn router(explore: f64) -> Adaptive {
        Adaptive::new(
            AdaptiveSettings {
                weights: RouteWeights::default(),
                explore,
                min_samples: 10,
            },
            Mutex::new(SmallRng::seed_from_u64(1)),
        )
    }

    fn share_first(router: &Adaptive, learner: &Learner, who: &str, of: &[&str]) -> usize {
        let busy = Busy::default();
        (0..1000)
            .filter(|_| {
                names(&router.rank(&input(learner, &busy), endpoints(of)).endpoints)[0] == who
            })
            .count()
    }

    #[test]
    fn the_endpoint_that_passes_validation_wins_over_one_that_answers_invalid() {
        let learner = Learner::default();
        seen(&learner, "fails", 25, CallOutcome::Failed, 100.0, None);
        seen(&learner, "fails", 75, CallOutcome::Valid, 100.0, None);
        seen(&learner, "invalid", 25, CallOutcome::Invalid, 100.0, None);
        seen(&learner, "invalid", 75, CallOutcome::Valid, 100.0, None);
        seen(&learner, "good", 99, CallOutcome::Valid, 100.0, None);
        seen(&learner, "good", 1, CallOutcome::Failed, 100.0, None);
        let n = share_first(
            &router(0.0),
            &learner,
            "good",
            &["fails", "invalid", "good"],
        );
        assert!(n >= 990, "good first {n} of 1000");
    }

    #[test]
    fn no_candidate_ranks_to_an_empty_route_without_a_panic() {
        // The Gateway never asks with none; the benchmark and other callers of `rank` may.
        let (learner, busy) = (Learner::default(), Busy::default());
        let ranked = router(0.5).rank(&input(&learner, &busy), Vec::new());
        assert!(ranked.endpoints.is_empty(), "{}", ranked.reason);
    }

    #[test]
    fn the_explore_floor_sends_a_share_elsewhere() {
        let learner = Learner::default();
        seen(&learner, "good", 200, CallOutcome::Valid, 100.0, None);
        seen(&learner, "bad", 200, CallOutcome::Failed, 100.0, None);
        let n = share_first(&router(0.2), &learner, "bad", &["good", "bad"]);
        assert!(
            (150..250).contains(&n),
            "bad first {n} of 1000 at explore 0.2"
        );
    }

    #[test]
    fn cost_breaks_a_quality_tie_and_an_endpoint_under_min_samples_is_tried_first() {
        let learner = Learner::default();
        seen(&learner, "dear", 50, CallOutcome::Valid, 100.0, Some(0.01));
        seen(
            &learner,
            "cheap",
            50,
            CallOutcome::Valid,
            100.0,
            Some(0.001),
        );
        let n = share_first(&router(0.0), &learner, "cheap", &["dear", "cheap"]);
        assert!(n >= 950, "cheap first {n} of 1000");
        let busy = Busy::default();
        let ranked = router(0.0).rank(
            &input(&learner, &busy),
            endpoints(&["dear", "cheap", "new"]),
        );
        assert_eq!(names(&ranked.endpoints)[0], "new", "{}", ranked.reason);
        assert!(
            ranked.reason.starts_with("learning `new` (0 of 10 calls)"),
            "{}",
            ranked.reason
        );
    }

    #[test]
    fn old_figures_keep_the_weight_of_min_samples_calls() {
        // 100 failures a day ago (half-life 1 h): decayed to almost nothing, but the endpoint
        // stays known-bad rather than unknown.
        let learner = Learner::default();
        for (who, outcome) in [("bad", CallOutcome::Failed), ("good", CallOutcome::Valid)] {
            for _ in 0..100 {
                learner.observe_at(
                    &crate::learner::Key::new("t", who, "s"),
                    &crate::learner::Sample {
                        outcome,
                        latency_ms: 10.0,
                        judge_score: None,
                        cost: None,
                        tokens: None,
                    },
                    1000.0 - 86_400.0,
                );
            }
        }
        let n = share_first(&router(0.0), &learner, "bad", &["bad", "good"]);
        assert!(n <= 10, "bad first {n} of 1000");
    }
}
