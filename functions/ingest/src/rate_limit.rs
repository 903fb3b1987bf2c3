//! Per-IP and per-user rate limits (GCRA via governor), answered with 429 + Retry-After.
//!
//! Limits are per instance: Cloud Run spreads load over instances, so the effective
//! station-wide limit is this times the instance count. That is the intent: these limits
//! stop one noisy client from monopolising an instance; abuse at scale belongs to Cloud
//! Armor in front of the service.

use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use shared::config::RateLimit;

#[derive(Debug, Clone, Copy)]
pub enum Bucket {
    Ip,
    User,
}

#[derive(Clone)]
pub struct Limits {
    ip: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    user: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

fn limiter(limit: RateLimit) -> Option<Arc<DefaultKeyedRateLimiter<String>>> {
    let (n, per) = limit.quota?;
    // Allow the whole quota as a burst, replenished evenly over the period.
    let quota = Quota::with_period(per / n.get())
        .expect("a positive period")
        .allow_burst(n);
    Some(Arc::new(RateLimiter::keyed(quota)))
}

impl Limits {
    pub fn new(per_ip: RateLimit, per_user: RateLimit) -> Self {
        Limits {
            ip: limiter(per_ip),
            user: limiter(per_user),
        }
    }

    /// `Err(wait)` when `key` is over its limit.
    pub fn check(&self, bucket: Bucket, key: &str) -> Result<(), Duration> {
        let limiter = match bucket {
            Bucket::Ip => &self.ip,
            Bucket::User => &self.user,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys whose buckets are full again, so memory tracks active clients only.
    pub fn prune(&self) {
        for l in [&self.ip, &self.user].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_per_key() {
        let limits = Limits::new("2/min".parse().unwrap(), RateLimit::OFF);
        assert!(limits.check(Bucket::Ip, "a").is_ok());
        assert!(limits.check(Bucket::Ip, "a").is_ok());
        let wait = limits.check(Bucket::Ip, "a").unwrap_err();
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(limits.check(Bucket::Ip, "b").is_ok());
        for _ in 0..100 {
            assert!(limits.check(Bucket::User, "u").is_ok());
        }
    }
}
