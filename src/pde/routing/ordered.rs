//! `ordered`: the candidates as the topic lists them — primary first, then fallbacks. The
//! default, and procos's behaviour before routing existed. `strategy: rules` is the same router
//! over the candidates the matching rule left (the Gateway narrows them; see [`super::rules`]).

use std::sync::Arc;

use super::{Ranked, RouteInput, Router};
use crate::endpoints::Endpoint;

/// Keeps the order it is given: the topic's list, or the matching rule's.
#[derive(Debug)]
pub struct Ordered {
    name: &'static str,
    reason: &'static str,
}

impl Ordered {
    /// `strategy: ordered`: as the topic lists them.
    pub const LISTED: Ordered = Ordered {
        name: "ordered",
        reason: "as configured",
    };
    /// `strategy: rules`: as the matching rule lists them.
    pub const BY_RULE: Ordered = Ordered {
        name: "rules",
        reason: "as the rule lists them",
    };
}

impl Router for Ordered {
    fn name(&self) -> &'static str {
        self.name
    }

    fn rank(&self, _task: &RouteInput<'_>, candidates: Vec<Arc<dyn Endpoint>>) -> Ranked {
        Ranked {
            endpoints: candidates,
            reason: self.reason.into(),
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
        let ranked = Ordered::LISTED.rank(&input(&learner, &busy), endpoints(&["b", "a", "c"]));
        assert_eq!(names(&ranked.endpoints), ["b", "a", "c"]);
    }
}
