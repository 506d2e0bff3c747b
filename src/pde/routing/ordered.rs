//! `ordered`: the candidates as the topic lists them — primary first, then fallbacks. The
//! default, and procos's behaviour before routing existed.

use std::sync::Arc;

use super::{Ranked, RouteInput, Router};
use crate::endpoints::Endpoint;

/// Keeps the configured order.
#[derive(Debug)]
pub struct Ordered;

impl Router for Ordered {
    fn name(&self) -> &'static str {
        "ordered"
    }

    fn rank(&self, _task: &RouteInput<'_>, candidates: Vec<Arc<dyn Endpoint>>) -> Ranked {
        Ranked {
            endpoints: candidates,
            reason: "as configured".into(),
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
    fn keeps_the_configured_order() {
        let (learner, busy) = (Learner::default(), Busy::default());
        let ranked = Ordered.rank(&input(&learner, &busy), endpoints(&["b", "a", "c"]));
        assert_eq!(names(&ranked.endpoints), ["b", "a", "c"]);
    }
}
