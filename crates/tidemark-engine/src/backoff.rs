//! Exponential back-off with jitter for retrying failed polls.

use std::time::Duration;

/// Retry delays: `initial * 2^failures`, capped at `max`, with up to ±`jitter` of randomness so
/// that many subscriptions failing together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Fraction of the delay randomized (0.0..=1.0).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(15 * 60),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay before retrying after `failures` earlier consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(failures.min(30)))
            .min(self.max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * (rand::random::<f64>() * 2.0 - 1.0);
        base.mul_f64(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_delay_doubles_and_is_capped() {
        let backoff = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        assert_eq!(backoff.delay(0), Duration::from_secs(1));
        assert_eq!(backoff.delay(3), Duration::from_secs(8));
        assert_eq!(backoff.delay(40), Duration::from_secs(900));
    }

    #[test]
    fn test_jitter_stays_within_bounds() {
        let backoff = Backoff::default();
        for _ in 0..1000 {
            let delay = backoff.delay(2);
            assert!(delay >= Duration::from_millis(3200) && delay <= Duration::from_millis(4800));
        }
    }
}
