//! Exponential backoff with full jitter, shared by every retrying sender and
//! every reconnecting input: the n-th delay is a uniformly random duration in
//! `[0, min(max, base * 2^n)]`, so that a fleet of watchers that lost the same
//! peer at the same moment does not come back in lock-step. The randomness is a
//! tiny xorshift generator seeded from the clock, the thread and std's
//! per-process random hash keys: good enough for jitter, no crate needed.

use std::time::Duration;

/// The delays before successive retries (see the module doc).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// Delays handed out since the last `reset`.
    attempt: u32,
    rng: XorShift,
}

impl Backoff {
    /// Delays start below `base` and double up to `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
            rng: XorShift::seeded(),
        }
    }

    /// The next delay: random in `[0, min(max, base * 2^n)]` for the n-th call
    /// since the last `reset` (n starting at 0).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        // Inclusive upper bound; the modulo bias is irrelevant for jitter.
        Duration::from_nanos(self.rng.next() % (nanos.saturating_add(1)).max(1))
    }

    /// The upper bound of the next delay: `min(max, base * 2^n)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// Start over from `base` (after a success or a healthy connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// xorshift64* (Vigna): fast, tiny, plenty for jitter. Not for secrets.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn seeded() -> XorShift {
        use std::hash::{BuildHasher, Hash, Hasher};
        // RandomState carries per-process random keys (from the OS) that std
        // varies per instance; hash the clock and the thread id with them.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        std::time::SystemTime::now().hash(&mut h);
        std::time::Instant::now().hash(&mut h);
        std::thread::current().id().hash(&mut h);
        let local = 0u8;
        (&local as *const u8 as usize).hash(&mut h);
        XorShift::from_seed(h.finish())
    }

    fn from_seed(seed: u64) -> XorShift {
        // Zero is the one state xorshift never leaves.
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_max_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(500), Duration::from_secs(30));
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            ceilings.push(b.ceiling());
            let d = b.next_delay();
            assert!(
                d <= *ceilings.last().unwrap(),
                "{d:?} above {:?}",
                ceilings.last()
            );
        }
        assert_eq!(
            ceilings,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(16000),
                ms(30000),
                ms(30000),
                ms(30000)
            ]
        );
        b.reset();
        assert_eq!(b.ceiling(), ms(500));
    }

    #[test]
    fn no_overflow_after_many_attempts() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
        assert_eq!(b.ceiling(), Duration::from_secs(60));
    }

    #[test]
    fn delays_are_spread_over_the_whole_range() {
        // Full jitter: over many draws we see both small and large delays.
        let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_millis(1000));
        let draws: Vec<Duration> = (0..2000).map(|_| b.next_delay()).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(1000)));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(900)));
        let mean = draws.iter().map(|d| d.as_secs_f64()).sum::<f64>() / draws.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }

    #[test]
    fn generators_differ_between_instances() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = XorShift::seeded();
                move |_| r.next()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = XorShift::seeded();
                move |_| r.next()
            })
            .collect();
        assert_ne!(a, b);
        let mut z = XorShift::from_seed(0);
        assert_ne!(z.next(), 0);
    }

    #[test]
    fn zero_base_gives_zero() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.next_delay(), Duration::ZERO);
    }
}
