//! Exponential backoff with jitter: the one implementation every retry loop in procos uses (the
//! engine client, the report re-sender, the endpoints' retry wrapper).

use std::time::Duration;

use crate::config::file::BackoffConfig;

/// Consecutive-failure counter that yields growing, jittered delays.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next attempt:
    /// a random delay in `[ceiling/2, ceiling]`, ceiling = `initial * multiplier^n`, capped at `max`.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.config.multiplier.powi(self.failures.min(63) as i32);
        let ceiling = (self.config.initial.as_secs_f64() * exp).min(self.config.max.as_secs_f64());
        self.failures = self.failures.saturating_add(1);
        let jittered = ceiling * (0.5 + rand::random::<f64>() * 0.5);
        Duration::from_secs_f64(jittered.max(0.0))
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forget past failures (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
        }
    }

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(cfg());
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
        let late = b.next_delay();
        assert!(
            late >= Duration::from_secs(1),
            "capped ceiling keeps delays high: {late:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
