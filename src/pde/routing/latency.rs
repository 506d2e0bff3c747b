//! `latency`: the endpoint with the lowest learned latency (the learner's EWMA for this topic
//! and task class) first. An endpoint never measured goes first, so that it is measured.

use std::sync::Arc;

use super::{Ranked, RouteInput, Router, sort_by_figure};
use crate::endpoints::Endpoint;

/// Lowest learned latency first.
#[derive(Debug)]
pub struct Latency;

impl Router for Latency {
    fn name(&self) -> &'static str {
        "latency"
    }

    fn rank(&self, task: &RouteInput<'_>, candidates: Vec<Arc<dyn Endpoint>>) -> Ranked {
        let (endpoints, reason) = sort_by_figure(
            candidates,
            |e| {
                task.stats(e.name())
                    .filter(|s| s.calls > 0)
                    .map(|s| s.latency_ewma_ms)
            },
            " ms",
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
    fn the_fastest_learned_endpoint_goes_first_and_an_unmeasured_one_before_it() {
        let (learner, busy) = (Learner::default(), Busy::default());
        seen(&learner, "a", 5, CallOutcome::Valid, 300.0, None);
        seen(&learner, "b", 5, CallOutcome::Failed, 100.0, None);
        let ranked = Latency.rank(&input(&learner, &busy), endpoints(&["a", "b"]));
        assert_eq!(names(&ranked.endpoints), ["b", "a"]);
        assert!(ranked.reason.starts_with("b 100"), "{}", ranked.reason);
        let ranked = Latency.rank(&input(&learner, &busy), endpoints(&["a", "b", "new"]));
        assert_eq!(names(&ranked.endpoints), ["new", "b", "a"]);
    }
}
