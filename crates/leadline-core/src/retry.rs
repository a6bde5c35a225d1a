//! The retry policy of deliveries: a pure function of the attempt number, a random
//! factor and the receiver's `Retry-After`, so it is tested without waiting.

use std::time::Duration;

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first included).
    pub max_attempts: u32,
    /// Delay before the first retry, before jitter.
    pub base: Duration,
    /// Growth per attempt.
    pub factor: u32,
    /// Longest delay.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_secs(30),
            factor: 4,
            cap: Duration::from_secs(6 * 3600),
        }
    }
}

impl RetryPolicy {
    /// After failed attempt number `attempt` (1 for the first), how long to wait
    /// before the next one, or `None` when none is left (the message goes to the
    /// dead letters). `random` in `[0, 1)` spreads retries (full jitter); a
    /// receiver's `Retry-After` is honoured up to the cap.
    pub fn next_delay(&self, attempt: u32, random: f64, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exp = attempt.saturating_sub(1).min(30);
        let growth = u64::from(self.factor).checked_pow(exp).unwrap_or(u64::MAX);
        let ceiling_ms = (self.base.as_millis() as u64)
            .saturating_mul(growth)
            .min(self.cap.as_millis() as u64);
        let jittered = (ceiling_ms as f64 * random.clamp(0.0, 1.0)) as u64;
        let mut delay = Duration::from_millis(jittered);
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(self.cap));
        }
        Some(delay.min(self.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults_give_up_after_five_attempts() {
        let p = RetryPolicy::default();
        for a in 1..5 {
            assert!(p.next_delay(a, 0.5, None).is_some());
        }
        assert_eq!(p.next_delay(5, 0.5, None), None);
        // Without jitter the ceiling grows x4 from 30 s.
        assert_eq!(p.next_delay(1, 0.999_999_9, None).map(|d| d.as_secs()), Some(29));
        assert_eq!(p.next_delay(3, 0.999_999_9, None).map(|d| d.as_secs()), Some(479));
    }

    #[test]
    fn retry_after_is_honoured_within_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_delay(1, 0.0, Some(Duration::from_secs(120))),
            Some(Duration::from_secs(120))
        );
        assert_eq!(p.next_delay(1, 0.0, Some(Duration::from_secs(86_400))), Some(p.cap));
    }

    proptest! {
        #[test]
        fn delays_stay_under_the_ceiling(attempt in 1u32..10, r in 0.0f64..1.0, ra in proptest::option::of(0u64..100_000)) {
            let p = RetryPolicy::default();
            match p.next_delay(attempt, r, ra.map(Duration::from_secs)) {
                None => prop_assert!(attempt >= p.max_attempts),
                Some(d) => {
                    prop_assert!(d <= p.cap);
                    let ceiling = p.base.saturating_mul(4u32.saturating_pow(attempt - 1)).min(p.cap);
                    if ra.is_none() { prop_assert!(d <= ceiling); }
                }
            }
        }
    }
}
