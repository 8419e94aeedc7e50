//! [`RateLimiter`]: a token bucket shared by every snapshot send of a store.
//!
//! Tokens (bytes) refill at the rate up to a burst; taking more than there are
//! leaves a debt that the taker waits out, so the average stays at the rate.
//! [`RateLimiter::has_room`] tells a sender whether the wire is what holds it
//! back: only then is spending CPU on compression worth it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    /// Bytes per second; 0 = unlimited.
    rate: u64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter of `rate` bytes per second (0 = unlimited) that lets `burst`
    /// bytes through at once after a pause.
    pub fn new(rate: u64, burst: u64) -> RateLimiter {
        RateLimiter { rate, burst: burst as f64, state: Mutex::new((burst as f64, Instant::now())) }
    }

    /// Takes `n` bytes at `now`; returns how long the taker must wait.
    pub fn reserve(&self, n: u64, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = self.tokens_at(*st, now) - n as f64;
        *st = (tokens, now.max(st.1));
        if tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-tokens / self.rate as f64) }
    }

    /// What the bucket `(tokens, last)` holds at `now`: refilled at the rate
    /// since `last`, up to the burst.
    fn tokens_at(&self, (tokens, last): (f64, Instant), now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        (tokens + elapsed * self.rate as f64).min(self.burst)
    }

    /// Whether `n` bytes could be taken at `now` without waiting (always, when
    /// unlimited). Takes nothing.
    pub fn has_room(&self, n: u64, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.tokens_at(*st, now) >= n as f64
    }

    /// Takes `n` bytes, waiting as long as the rate requires.
    pub async fn acquire(&self, n: u64) {
        let wait = self.reserve(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_out_the_debt_and_refills_up_to_the_burst() {
        let t0 = Instant::now();
        let l = RateLimiter { rate: 1000, burst: 100.0, state: Mutex::new((100.0, t0)) };
        assert_eq!(l.reserve(100, t0), Duration::ZERO);
        assert_eq!(l.reserve(100, t0), Duration::from_millis(100));
        // 100 ms later the debt is paid; 50 more bytes cost 50 ms.
        assert_eq!(l.reserve(50, t0 + Duration::from_millis(100)), Duration::from_millis(50));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(l.reserve(100, later), Duration::ZERO);
        assert_eq!(l.reserve(1000, later), Duration::from_secs(1));
        let unlimited = RateLimiter::new(0, 0);
        assert_eq!(unlimited.reserve(u64::MAX, t0), Duration::ZERO);
        assert!(unlimited.has_room(u64::MAX, t0));
    }

    #[test]
    fn has_room_while_the_bucket_holds_the_bytes_and_takes_nothing() {
        let t0 = Instant::now();
        let l = RateLimiter { rate: 1000, burst: 100.0, state: Mutex::new((100.0, t0)) };
        assert!(l.has_room(100, t0));
        assert!(l.has_room(100, t0), "asking took nothing");
        assert!(!l.has_room(101, t0 + Duration::from_secs(5)), "never more than the burst");
        assert_eq!(l.reserve(100, t0), Duration::ZERO);
        assert!(!l.has_room(1, t0));
        assert!(l.has_room(50, t0 + Duration::from_millis(50)), "refilled at the rate");
        assert!(!l.has_room(51, t0 + Duration::from_millis(50)));
    }
}
