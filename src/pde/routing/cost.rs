//! `cost`: the endpoint with the lowest learned cost per call (the learner's decayed mean for
//! this topic and task class) first. An endpoint that reports no cost (a script, a local model)
//! counts as free; one never called goes first, so that its cost is learned.

use std::sync::Arc;

use super::{Ranked, RouteInput, Router, sort_by_figure};
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
                task.stats(e.name())
                    .filter(|s| s.calls > 0)
                    .map(|s| s.mean_cost().unwrap_or(0.0))
            },
            "",
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
}
