//! `least_busy`: the endpoint with the fewest calls in flight (across every topic) first; ties
//! keep the configured order.

use std::sync::Arc;

use super::{Ranked, RouteInput, Router};
use crate::endpoints::Endpoint;

/// Fewest in flight first.
#[derive(Debug)]
pub struct LeastBusy;

impl Router for LeastBusy {
    fn name(&self) -> &'static str {
        "least_busy"
    }

    fn rank(&self, task: &RouteInput<'_>, mut candidates: Vec<Arc<dyn Endpoint>>) -> Ranked {
        // Stable: equally busy endpoints keep their configured order.
        candidates.sort_by_key(|e| task.busy.in_flight(e.name()));
        let reason = candidates
            .iter()
            .map(|e| format!("{} {} in flight", e.name(), task.busy.in_flight(e.name())))
            .collect::<Vec<_>>()
            .join(" ≤ ");
        Ranked {
            endpoints: candidates,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::learner::Learner;
    use crate::pde::routing::Busy;

    #[test]
    fn the_endpoint_with_fewest_calls_in_flight_goes_first() {
        let (learner, busy) = (Learner::default(), Arc::new(Busy::default()));
        let _a1 = busy.start("a");
        let _a2 = busy.start("a");
        let b = busy.start("b");
        let rank = || {
            names(
                &LeastBusy
                    .rank(&input(&learner, &busy), endpoints(&["a", "b", "c"]))
                    .endpoints,
            )
        };
        assert_eq!(rank(), ["c", "b", "a"]);
        let _c = busy.start("c");
        drop(b);
        assert_eq!(rank(), ["b", "c", "a"], "a finished call no longer counts");
    }
}
