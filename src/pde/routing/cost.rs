//! `cost`: the endpoint with the lowest learned cost per valid answer (the learner's decayed mean
//! cost per call for this topic and task class, divided by the share of calls that gave a valid
//! answer) first, so that a cheap endpoint that mostly fails or answers garbage does not look
//! cheap. An endpoint that reports no cost (a script, a local model) counts as free — unless it
//! gives no valid answer at all, which costs a task's failure: it goes last. One never called
//! goes first, so that its cost is learned.

use std::sync::Arc;

use super::{Ranked, RouteInput, Router, per_valid_answer, sort_by_figure};
use crate::endpoints::Endpoint;

/// Lowest learned cost first.
#[derive(Debug)]
pub struct Cost;

impl Router for Cost {
    fn name(&self) -> &'static str {
        "cost"
    }

    fn rank(&self, task: &RouteInput<'_>, candidates: Vec<Arc<dyn Endpoint>>) -> Ranked {
        let (endpoints, reason) = sort_by_figure(
            candidates,
            |e| {
                task.stats(e.name()).filter(|s| s.calls > 0).map(|s| {
                    // Free but useless is not free: rank it after every priced endpoint.
                    match s.mean_cost() {
                        _ if s.valid_share() <= 0.0 => f64::MAX,
                        Some(cost) => per_valid_answer(&s, cost),
                        None => 0.0,
                    }
                })
            },
            " per valid answer",
        );
        Ranked { endpoints, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::learner::{CallOutcome, Learner};
    use crate::pde::routing::Busy;

    #[test]
    fn the_cheapest_learned_endpoint_goes_first_and_no_cost_is_free() {
        let (learner, busy) = (Learner::default(), Busy::default());
        seen(&learner, "dear", 3, CallOutcome::Valid, 10.0, Some(0.01));
        seen(&learner, "cheap", 3, CallOutcome::Valid, 10.0, Some(0.001));
        seen(&learner, "script", 3, CallOutcome::Valid, 10.0, None);
        let ranked = Cost.rank(
            &input(&learner, &busy),
            endpoints(&["dear", "cheap", "script"]),
        );
        assert_eq!(names(&ranked.endpoints), ["script", "cheap", "dear"]);
    }

    /// A cheap endpoint whose calls mostly fail costs more per valid answer than a dearer one
    /// that answers; a free one that never answers goes last.
    #[test]
    fn cheap_but_failing_is_not_cheap() {
        let (learner, busy) = (Learner::default(), Busy::default());
        seen(&learner, "dear", 5, CallOutcome::Valid, 10.0, Some(0.004));
        seen(&learner, "cheap", 1, CallOutcome::Valid, 10.0, Some(0.001));
        seen(&learner, "cheap", 9, CallOutcome::Failed, 10.0, Some(0.001));
        seen(&learner, "broken", 5, CallOutcome::Failed, 10.0, None);
        let ranked = Cost.rank(
            &input(&learner, &busy),
            endpoints(&["broken", "cheap", "dear"]),
        );
        assert_eq!(names(&ranked.endpoints), ["dear", "cheap", "broken"]);
    }
}
