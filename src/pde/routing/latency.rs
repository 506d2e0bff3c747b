//! `latency`: the endpoint with the lowest learned latency per valid answer (the learner's EWMA
//! for this topic and task class, divided by the share of calls that gave a valid answer) first,
//! so that an endpoint that fails fast does not look fast. An endpoint never measured goes first,
//! so that it is measured.

use std::sync::Arc;

use super::{Ranked, RouteInput, Router, per_valid_answer, sort_by_figure};
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
                    .map(|s| per_valid_answer(&s, s.latency_ewma_ms))
            },
            " ms per valid answer",
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
        seen(&learner, "b", 5, CallOutcome::Valid, 100.0, None);
        let ranked = Latency.rank(&input(&learner, &busy), endpoints(&["a", "b"]));
        assert_eq!(names(&ranked.endpoints), ["b", "a"]);
        assert!(ranked.reason.starts_with("b 100"), "{}", ranked.reason);
        let ranked = Latency.rank(&input(&learner, &busy), endpoints(&["a", "b", "new"]));
        assert_eq!(names(&ranked.endpoints), ["new", "b", "a"]);
    }

    /// An endpoint that fails in 10 ms is not the fastest: what counts is the time per valid
    /// answer.
    #[test]
    fn an_endpoint_that_fails_fast_does_not_look_fast() {
        let (learner, busy) = (Learner::default(), Busy::default());
        seen(&learner, "slow", 5, CallOutcome::Valid, 300.0, None);
        seen(&learner, "failing", 5, CallOutcome::Failed, 10.0, None);
        seen(&learner, "sloppy", 4, CallOutcome::Invalid, 100.0, None);
        seen(&learner, "sloppy", 1, CallOutcome::Valid, 100.0, None);
        let ranked = Latency.rank(
            &input(&learner, &busy),
            endpoints(&["failing", "sloppy", "slow"]),
        );
        assert_eq!(names(&ranked.endpoints), ["slow", "sloppy", "failing"]);
    }
}
