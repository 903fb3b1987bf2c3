//! Retry policy: exponential backoff with jitter (backon), one place to tune it.

use std::time::Duration;

use backon::ExponentialBuilder;
use rand::Rng;

/// In-process retries for a call that may fail transiently (a JWKS fetch, a provider
/// call): 3 retries, 100 ms doubling to at most 2 s, with jitter so that many instances
/// recovering at once do not retry in lockstep.
pub fn exponential() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(3)
        .with_jitter()
}

/// The delay before attempt `attempt` (1-based) of durable, out-of-process work such as
/// an outbox row: `base * 2^(attempt-1)` capped at `max`, with "full jitter" over the
/// upper half so retries spread out but never come back immediately.
pub fn delay_for_attempt(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let half = capped / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 1..40 {
            let d = delay_for_attempt(attempt, base, max);
            assert!(d <= max, "{attempt}: {d:?}");
            let full = base.saturating_mul(1 << (attempt - 1).min(20)).min(max);
            assert!(d >= full / 2, "{attempt}: {d:?}");
        }
    }
}
