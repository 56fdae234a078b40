//! A requests-per-second limit, a token bucket that holds one second of tokens; and
//! [`deadline`], the one way the runtime turns a duration from a spec into a deadline.
//!
//! Hand-written (about 40 lines) rather than taken from `governor` because it must read
//! `tokio::time`, so tests step it with `tokio::time::pause()` and `advance()`.

use std::sync::Mutex;

use std::time::Duration;

use tokio::time::Instant;

/// The instant `after` from now; a duration too long to add to the clock (a spec's
/// `Duration::MAX`) gives a deadline thirty years away instead of panicking.
#[must_use]
pub fn deadline(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

/// Admits at most `rate` requests per second on average, with bursts of up to `rate`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimiter {
    /// A limiter of `rate` requests per second, starting full.
    #[must_use]
    pub fn per_second(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            state: Mutex::new(Bucket {
                tokens: rate,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// The configured requests per second.
    #[must_use]
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes a token if one is left; `false` means the request is over the limit.
    pub fn try_acquire(&self) -> bool {
        let now = Instant::now();
        let mut bucket = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.duration_since(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_past_the_clocks_range_should_be_far_away_not_a_panic() {
        let far = deadline(Duration::MAX);
        assert!(far > Instant::now() + Duration::from_secs(86_400 * 365 * 29));
        assert_eq!(
            deadline(Duration::from_secs(1)),
            Instant::now() + Duration::from_secs(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_should_admit_a_second_of_burst_then_refill_at_the_rate() {
        let limiter = RateLimiter::per_second(10);
        let admitted = (0..25).filter(|_| limiter.try_acquire()).count();
        assert_eq!(admitted, 10);
        tokio::time::advance(Duration::from_millis(500)).await;
        let admitted = (0..25).filter(|_| limiter.try_acquire()).count();
        assert_eq!(admitted, 5);
        tokio::time::advance(Duration::from_secs(10)).await;
        let admitted = (0..25).filter(|_| limiter.try_acquire()).count();
        assert_eq!(admitted, 10, "never more than one second of burst");
    }
}
