//! The figures kept per (topic, endpoint, task class): lifetime counts, and decayed rates so that
//! the policy follows change. Pure arithmetic over an explicit clock (`now`, unix seconds), so it
//! is tested without sleeping and reloads unchanged after a restart.
//!
//! Decay: every decayed figure is multiplied by `0.5^(elapsed / half_life)` before an observation
//! is added, and when it is read. A figure observed one half-life ago weighs half a fresh one.

use serde::{Deserialize, Serialize};

/// Latency histogram buckets: bucket `i` holds latencies below `2^(i/2)` ms (√2 steps), the last
/// one everything above (≈ 46 minutes).
pub const LATENCY_BUCKETS: usize = 48;

/// One (topic, endpoint, class)'s figures. Serialised as JSON into the learner's store; new fields
/// take `#[serde(default)]` so that an older store still loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Calls observed, ever.
    pub calls: u64,
    /// Calls that answered (whatever validation then said), ever.
    pub answered: u64,
    /// Answers that passed validation (and the judge, if any), ever.
    pub passed: u64,
    /// Tasks whose route put this endpoint first, ever.
    pub routed: u64,
    /// Decayed weight of calls that answered.
    pub ok: f64,
    /// Decayed weight of calls that failed (transient, fallback, permanent errors).
    pub failed: f64,
    /// Decayed weight of answers that passed validation.
    pub valid: f64,
    /// Decayed weight of answers that failed validation or judgement.
    pub invalid: f64,
    /// Decayed sum of judge scores (0..1) and their weight.
    pub score_sum: f64,
    /// Decayed weight of judged answers.
    pub scored: f64,
    /// Decayed sum of costs and their weight.
    pub cost_sum: f64,
    /// Decayed weight of calls with a cost.
    pub costed: f64,
    /// Decayed sum of tokens (in + out).
    pub tokens_sum: f64,
    /// Exponentially weighted latency, ms (α = 0.2), of answered and failed calls.
    pub latency_ewma_ms: f64,
    /// Decayed latency histogram (see [`LATENCY_BUCKETS`]).
    pub latency_hist: Vec<f64>,
    /// When the figures were last decayed (unix seconds).
    pub updated_at: f64,
    /// First observation (unix seconds).
    pub first_seen: f64,
    /// Last failed call (unix seconds), if any.
    pub last_failure_at: Option<f64>,
    /// Last answered call (unix seconds), if any.
    pub last_ok_at: Option<f64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            calls: 0,
            answered: 0,
            passed: 0,
            routed: 0,
            ok: 0.0,
            failed: 0.0,
            valid: 0.0,
            invalid: 0.0,
            score_sum: 0.0,
            scored: 0.0,
            cost_sum: 0.0,
            costed: 0.0,
            tokens_sum: 0.0,
            latency_ewma_ms: 0.0,
            latency_hist: vec![0.0; LATENCY_BUCKETS],
            updated_at: 0.0,
            first_seen: 0.0,
            last_failure_at: None,
            last_ok_at: None,
        }
    }
}

/// What one call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The endpoint failed (any error kind but cancellation).
    Failed,
    /// It answered, and the answer failed validation or judgement.
    Invalid,
    /// It answered with a result that passed.
    Valid,
}

/// One call's figures, as the pipeline saw them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// What the call came to.
    pub outcome: CallOutcome,
    /// How long it took.
    pub latency_ms: f64,
    /// The judge's score, when the topic has a validator and it judged.
    pub judge_score: Option<f64>,
    /// The call's cost, when the endpoint prices its calls.
    pub cost: Option<f64>,
    /// Tokens in + out, when known.
    pub tokens: Option<u64>,
}

fn bucket(latency_ms: f64) -> usize {
    if latency_ms <= 1.0 {
        return 0;
    }
    // 2^(i/2) ≥ latency  ⇔  i ≥ 2·log2(latency)
    ((2.0 * latency_ms.log2()).ceil() as usize).min(LATENCY_BUCKETS - 1)
}

fn bucket_upper_ms(i: usize) -> f64 {
    2f64.powf(i as f64 / 2.0)
}

impl Stats {
    /// Multiplies every decayed figure by `0.5^((now - updated_at) / half_life)`.
    pub fn decay(&mut self, now: f64, half_life_secs: f64) {
        if self.updated_at == 0.0 {
            self.updated_at = now;
            return;
        }
        let elapsed = now - self.updated_at;
        if elapsed <= 0.0 || half_life_secs <= 0.0 {
            return;
        }
        let f = 0.5f64.powf(elapsed / half_life_secs);
        for x in [
            &mut self.ok,
            &mut self.failed,
            &mut self.valid,
            &mut self.invalid,
            &mut self.score_sum,
            &mut self.scored,
            &mut self.cost_sum,
            &mut self.costed,
            &mut self.tokens_sum,
        ] {
            *x *= f;
        }
        for x in &mut self.latency_hist {
            *x *= f;
        }
        self.updated_at = now;
    }

    /// Adds one call at `now`, after decaying.
    pub fn observe(&mut self, sample: &Sample, now: f64, half_life_secs: f64) {
        self.decay(now, half_life_secs);
        if self.first_seen == 0.0 {
            self.first_seen = now;
        }
        if self.latency_hist.len() != LATENCY_BUCKETS {
            self.latency_hist.resize(LATENCY_BUCKETS, 0.0);
        }
        self.calls += 1;
        match sample.outcome {
            CallOutcome::Failed => {
                self.failed += 1.0;
                self.last_failure_at = Some(now);
            }
            CallOutcome::Invalid | CallOutcome::Valid => {
                self.answered += 1;
                self.ok += 1.0;
                self.last_ok_at = Some(now);
                if sample.outcome == CallOutcome::Valid {
                    self.passed += 1;
                    self.valid += 1.0;
                } else {
                    self.invalid += 1.0;
                }
            }
        }
        // A non-finite figure (NaN, an overflowed price) is not kept: it would poison the sums
        // for good, and JSON cannot store it (the row would not reload).
        if let Some(score) = sample.judge_score.filter(|s| s.is_finite()) {
            self.score_sum += score.clamp(0.0, 1.0);
            self.scored += 1.0;
        }
        if let Some(cost) = sample.cost.filter(|c| c.is_finite() && *c >= 0.0) {
            self.cost_sum += cost;
            self.costed += 1.0;
        }
        if let Some(tokens) = sample.tokens {
            self.tokens_sum += tokens as f64;
        }
        let latency = sample.latency_ms.max(0.0);
        self.latency_ewma_ms = if self.calls == 1 {
            latency
        } else {
            0.8 * self.latency_ewma_ms + 0.2 * latency
        };
        self.latency_hist[bucket(latency)] += 1.0;
    }

    /// Decayed share of calls that answered, `None` before any call.
    pub fn success_rate(&self) -> Option<f64> {
        let n = self.ok + self.failed;
        (n > 0.0).then(|| self.ok / n)
    }

    /// Decayed share of answers that passed validation, `None` before any answer.
    pub fn pass_rate(&self) -> Option<f64> {
        let n = self.valid + self.invalid;
        (n > 0.0).then(|| self.valid / n)
    }

    /// Decayed share of calls that gave a valid answer (answered × passed); 1 before any call
    /// or answer, so that an unmeasured figure does not penalise.
    pub fn valid_share(&self) -> f64 {
        self.success_rate().unwrap_or(1.0) * self.pass_rate().unwrap_or(1.0)
    }

    /// Decayed mean judge score, `None` when never judged.
    pub fn mean_score(&self) -> Option<f64> {
        (self.scored > 0.0).then(|| self.score_sum / self.scored)
    }

    /// Decayed mean cost per priced call, `None` when no call had a cost.
    pub fn mean_cost(&self) -> Option<f64> {
        (self.costed > 0.0).then(|| self.cost_sum / self.costed)
    }

    /// The decayed latency quantile `q` (0..1) in ms, from the histogram (upper bucket bound),
    /// `None` before any call.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        let total: f64 = self.latency_hist.iter().sum();
        if total <= 0.0 {
            return None;
        }
        let target = total * q.clamp(0.0, 1.0);
        let mut seen = 0.0;
        for (i, w) in self.latency_hist.iter().enumerate() {
            seen += w;
            if seen >= target && *w > 0.0 {
                return Some(bucket_upper_ms(i));
            }
        }
        Some(bucket_upper_ms(self.latency_hist.len().saturating_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(outcome: CallOutcome, latency_ms: f64) -> Sample {
        Sample {
            outcome,
            latency_ms,
            judge_score: None,
            cost: None,
            tokens: None,
        }
    }

    #[test]
    fn rates_count_failures_and_invalid_answers_apart() {
        let mut s = Stats::default();
        for o in [CallOutcome::Valid, CallOutcome::Valid, CallOutcome::Invalid] {
            s.observe(&sample(o, 10.0), 1000.0, 3600.0);
        }
        s.observe(&sample(CallOutcome::Failed, 10.0), 1000.0, 3600.0);
        assert_eq!((s.calls, s.answered, s.passed), (4, 3, 2));
        assert_eq!(s.success_rate(), Some(0.75));
        assert!((s.pass_rate().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn an_observation_one_half_life_old_weighs_half() {
        let mut s = Stats::default();
        s.observe(&sample(CallOutcome::Failed, 10.0), 1000.0, 60.0);
        s.observe(&sample(CallOutcome::Valid, 10.0), 1060.0, 60.0);
        assert!((s.failed - 0.5).abs() < 1e-9 && (s.ok - 1.0).abs() < 1e-9);
        assert!((s.success_rate().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.calls, 2, "lifetime counts do not decay");
    }

    #[test]
    fn latency_quantiles_come_from_the_histogram() {
        let mut s = Stats::default();
        for _ in 0..95 {
            s.observe(&sample(CallOutcome::Valid, 10.0), 1.0, 3600.0);
        }
        for _ in 0..5 {
            s.observe(&sample(CallOutcome::Valid, 1000.0), 1.0, 3600.0);
        }
        let p50 = s.latency_quantile_ms(0.5).unwrap();
        let p99 = s.latency_quantile_ms(0.99).unwrap();
        assert!((10.0..15.0).contains(&p50), "p50 {p50}");
        assert!((1000.0..1500.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn a_non_finite_cost_or_score_is_not_kept_so_the_figures_still_reload() {
        // JSON has no NaN or infinity: serde_json writes null, which an f64 field refuses, and
        // the store would skip the whole row at the next boot.
        let mut s = Stats::default();
        let mut bad = sample(CallOutcome::Valid, 10.0);
        bad.cost = Some(f64::INFINITY);
        bad.judge_score = Some(f64::NAN);
        s.observe(&bad, 1000.0, 3600.0);
        s.observe(&sample(CallOutcome::Valid, 10.0), 1000.0, 3600.0);
        let stored = serde_json::to_string(&s).expect("serialises");
        let back: Stats = serde_json::from_str(&stored).expect("reloads");
        assert_eq!((back.calls, back.passed), (2, 2));
        assert_eq!((back.mean_cost(), back.mean_score()), (None, None));
    }

    #[test]
    fn an_older_store_without_new_fields_still_loads() {
        let s: Stats = serde_json::from_str(r#"{"calls": 3, "ok": 2.5}"#).expect("loads");
        assert_eq!(s.calls, 3);
        assert_eq!(s.latency_hist.len(), LATENCY_BUCKETS);
    }
}
