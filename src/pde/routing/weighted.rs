//! `weighted`: the first endpoint is drawn at random by `endpoint_weights` (unlisted endpoints
//! weigh 1); the others follow as fallbacks, each drawn from what is left by the same weights.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rand::RngExt;
use rand::rngs::SmallRng;

use super::{Ranked, RouteInput, Router, lock};
use crate::endpoints::Endpoint;

/// Random by weight.
#[derive(Debug)]
pub struct Weighted {
    /// Each listed endpoint's weight, scaled so that the largest weight (an unlisted endpoint's
    /// 1 included) is 1.
    weights: BTreeMap<String, f64>,
    /// An unlisted endpoint's weight, on the same scale.
    unlisted: f64,
    rng: Mutex<SmallRng>,
}

impl Weighted {
    /// A router drawing by `weights` (endpoint → finite weight ≥ 0, as validation checks).
    pub fn new(weights: BTreeMap<String, f64>, rng: Mutex<SmallRng>) -> Self {
        // Only the ratios matter; scaled to at most 1, a draw's sum stays finite (two weights of
        // 1e308 would add up to infinity, and the draw would always land on the last endpoint).
        let scale = weights.values().copied().fold(1.0, f64::max);
        Self {
            weights: weights.into_iter().map(|(e, w)| (e, w / scale)).collect(),
            unlisted: 1.0 / scale,
            rng,
        }
    }

    fn weight(&self, endpoint: &str) -> f64 {
        self.weights.get(endpoint).copied().unwrap_or(self.unlisted)
    }
}

impl Router for Weighted {
    fn name(&self) -> &'static str {
        "weighted"
    }

    fn rank(&self, _task: &RouteInput<'_>, mut left: Vec<Arc<dyn Endpoint>>) -> Ranked {
        let mut rng = lock(&self.rng);
        let mut order = Vec::with_capacity(left.len());
        let mut first_share = None;
        while !left.is_empty() {
            let total: f64 = left.iter().map(|e| self.weight(e.name())).sum();
            let i = if total > 0.0 {
                let mut x = rng.random::<f64>() * total;
                left.iter()
                    .position(|e| {
                        x -= self.weight(e.name());
                        x < 0.0
                    })
                    .unwrap_or(left.len() - 1)
            } else {
                0 // only zero weights left: keep their configured order
            };
            if first_share.is_none() && total > 0.0 {
                first_share = Some(self.weight(left[i].name()) / total);
            }
            order.push(left.remove(i));
        }
        let reason = match first_share {
            Some(share) => format!("drawn by weight ({:.0}% share)", share * 100.0),
            None => "every weight is 0: as configured".into(),
        };
        Ranked {
            endpoints: order,
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
    use rand::SeedableRng;

    #[test]
    fn draws_the_first_endpoint_by_weight_and_keeps_the_rest_as_fallbacks() {
        let weights = BTreeMap::from([("a".to_string(), 3.0), ("c".to_string(), 0.0)]);
        let router = Weighted::new(weights, Mutex::new(SmallRng::seed_from_u64(7)));
        let (learner, busy) = (Learner::default(), Busy::default());
        let mut first_a = 0;
        for _ in 0..4000 {
            let ranked = router.rank(&input(&learner, &busy), endpoints(&["a", "b", "c"]));
            let order = names(&ranked.endpoints);
            assert_eq!(order.len(), 3, "every endpoint stays, as a fallback");
            assert_eq!(order[2], "c", "weight 0 is never drawn before the others");
            first_a += usize::from(order[0] == "a");
        }
        // a weighs 3, b 1: a is first about 75% of the time.
        assert!((2850..3150).contains(&first_a), "a first {first_a} of 4000");
    }

    #[test]
    fn huge_weights_still_draw_by_their_shares() {
        // 1e308 + 1e308 is infinite: a draw over the raw sum never lands and took the last one.
        let weights = BTreeMap::from([("a".to_string(), 1e308), ("b".to_string(), 1e308)]);
        let router = Weighted::new(weights, Mutex::new(SmallRng::seed_from_u64(7)));
        let (learner, busy) = (Learner::default(), Busy::default());
        let mut first = BTreeMap::<String, usize>::new();
        for _ in 0..1000 {
            let ranked = router.rank(&input(&learner, &busy), endpoints(&["a", "b", "c"]));
            *first
                .entry(ranked.endpoints[0].name().to_string())
                .or_default() += 1;
        }
        assert_eq!(first.get("c"), None, "c weighs 1 against 1e308: {first:?}");
        assert!((400..600).contains(&first["a"]), "{first:?}");
    }
}
