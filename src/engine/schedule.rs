//! Pacing, I/O-free: the per-shard open-model request schedule, the connect pacer, and the
//! weighted method mix. Part of `engine/`. Time is an argument (ns since the shard's epoch),
//! so the shard loop computes its next wake-up from these instead of arming a timer SQE per
//! connection.

/// Evenly spaced events at `rate_per_s` starting at `start_ns`: event k is due at
/// `start_ns + k × 1e9 / rate`. Computed from k (not by adding an interval) so rounding never
/// accumulates.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start_ns: u64,
    rate_per_s: u64,
    issued: u64,
    limit: u64,
}

impl Pacer {
    /// `rate_per_s == 0`: every event is due at once (bounded only by `limit`).
    pub fn new(start_ns: u64, rate_per_s: u64, limit: u64) -> Pacer {
        Pacer {
            start_ns,
            rate_per_s,
            issued: 0,
            limit,
        }
    }

    /// When the next event is due; `None` when all `limit` events have been issued.
    pub fn next_due_ns(&self) -> Option<u64> {
        if self.issued >= self.limit {
            return None;
        }
        if self.rate_per_s == 0 {
            return Some(self.start_ns);
        }
        let offset = (self.issued as u128 * 1_000_000_000 / self.rate_per_s as u128) as u64;
        Some(self.start_ns.saturating_add(offset))
    }

    /// Takes the next event if it is due at `now_ns`; returns its intended time.
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        let due = self.next_due_ns()?;
        if due > now_ns {
            return None;
        }
        self.issued += 1;
        Some(due)
    }

    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Takes every event due at `now_ns` at once (they will not be sent: see the drop causes
    /// in `engine/shard.rs`); returns how many. O(1): the count follows from the time.
    pub fn skip_due(&mut self, now_ns: u64) -> u64 {
        let Some(due) = self.next_due_ns() else {
            return 0;
        };
        if due > now_ns {
            return 0;
        }
        let due_total = if self.rate_per_s == 0 {
            self.limit
        } else {
            // Event k is due when floor(k × 1e9 / rate) ≤ now − start, i.e. for
            // k < (now − start + 1) × rate / 1e9.
            let elapsed = (now_ns - self.start_ns) as u128 + 1;
            (elapsed * self.rate_per_s as u128).div_ceil(1_000_000_000) as u64
        };
        let due_total = due_total.min(self.limit);
        let skipped = due_total.saturating_sub(self.issued);
        self.issued = self.issued.max(due_total);
        skipped
    }
}

/// xorshift64*: a few ns per draw, deterministic per seed, no allocation.
#[derive(Debug, Clone, Copy)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// First connect retry waits about this long; each further one twice as long.
pub const BACKOFF_BASE_NS: u64 = 100_000_000;
/// Longest backoff between connect attempts.
pub const BACKOFF_MAX_NS: u64 = 5_000_000_000;

/// Backoff before connect retry number `attempt` (0 = first retry): exponential, capped, with
/// jitter of ±50 % so connections refused together do not come back together.
pub fn backoff_ns(attempt: u8, rng: &mut Rng) -> u64 {
    let nominal = BACKOFF_BASE_NS
        .saturating_mul(1u64 << attempt.min(16))
        .min(BACKOFF_MAX_NS);
    nominal / 2 + rng.next_u64() % nominal.max(1)
}

/// Weighted choice among the load entries of the mix (their indices).
#[derive(Debug, Clone)]
pub struct Mix {
    /// Cumulative weights, one per entry.
    cumulative: Vec<u64>,
    total: u64,
}

impl Mix {
    pub fn new(weights: &[u32]) -> Mix {
        let mut total = 0u64;
        let cumulative = weights
            .iter()
            .map(|&weight| {
                total += weight as u64;
                total
            })
            .collect();
        assert!(total > 0, "the plan refuses an empty mix");
        Mix { cumulative, total }
    }

    /// An entry's index, drawn by weight.
    pub fn pick(&self, rng: &mut Rng) -> u8 {
        let draw = rng.next_u64() % self.total;
        let index = self.cumulative.partition_point(|&upto| upto <= draw);
        index.min(self.cumulative.len() - 1) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_due_takes_exactly_what_take_due_would() {
        for rate in [1u64, 3, 7, 800, 1000, 33_333, 1_000_000_007] {
            for now in [
                0u64,
                1,
                999,
                1_000_000,
                2_999_999_999,
                3_000_000_000,
                12_345_678_901,
            ] {
                let mut by_steps = Pacer::new(5, rate, u64::MAX);
                let mut stepped = 0;
                while by_steps.take_due(now).is_some() && stepped < 100_000 {
                    stepped += 1;
                }
                if stepped == 100_000 {
                    continue;
                }
                let mut at_once = Pacer::new(5, rate, u64::MAX);
                assert_eq!(at_once.skip_due(now), stepped, "rate {rate} now {now}");
                assert_eq!(at_once.next_due_ns(), by_steps.next_due_ns());
                assert_eq!(at_once.skip_due(now), 0);
            }
        }
        let mut limited = Pacer::new(0, 1000, 3);
        assert_eq!(limited.skip_due(10_000_000_000), 3);
        assert_eq!(limited.next_due_ns(), None);
        assert_eq!(Pacer::new(100, 1000, 9).skip_due(99), 0);
    }

    #[test]
    fn pacer_spaces_events_and_stops_at_limit() {
        let mut pacer = Pacer::new(1_000, 1_000, 3);
        assert_eq!(pacer.take_due(999), None);
        assert_eq!(pacer.take_due(1_000), Some(1_000));
        assert_eq!(pacer.next_due_ns(), Some(1_001_000));
        // A late loop gets every overdue event, each with its own intended time.
        assert_eq!(pacer.take_due(5_000_000), Some(1_001_000));
        assert_eq!(pacer.take_due(5_000_000), Some(2_001_000));
        assert_eq!(pacer.take_due(5_000_000), None);
        assert_eq!(pacer.next_due_ns(), None);
        assert_eq!(pacer.issued(), 3);
    }

    #[test]
    fn pacer_without_rate_releases_everything() {
        let mut pacer = Pacer::new(7, 0, 2);
        assert_eq!(pacer.take_due(7), Some(7));
        assert_eq!(pacer.take_due(7), Some(7));
        assert_eq!(pacer.take_due(7), None);
    }

    #[test]
    fn pacer_rounding_does_not_drift() {
        let mut pacer = Pacer::new(0, 3, u64::MAX);
        let mut last = 0;
        for _ in 0..3_000_001 {
            last = pacer.take_due(u64::MAX).unwrap();
        }
        // Event 3,000,000 at 3/s is due at exactly 1,000,000 s.
        assert_eq!(last, 1_000_000_000_000_000);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let mut rng = Rng::new(7);
        for attempt in 0..40u8 {
            let nominal = (BACKOFF_BASE_NS << attempt.min(16)).min(BACKOFF_MAX_NS);
            let draws: Vec<u64> = (0..200).map(|_| backoff_ns(attempt, &mut rng)).collect();
            assert!(
                draws
                    .iter()
                    .all(|&d| d >= nominal / 2 && d < nominal / 2 + nominal)
            );
            let distinct: std::collections::HashSet<_> = draws.iter().collect();
            assert!(distinct.len() > 150, "jitter spreads the retries");
        }
    }

    #[test]
    fn mix_follows_weights() {
        let mix = Mix::new(&[80, 10, 10]);
        let mut rng = Rng::new(42);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            counts[mix.pick(&mut rng) as usize] += 1;
        }
        assert!((79_000..81_000).contains(&counts[0]), "{counts:?}");
        assert!((9_000..11_000).contains(&counts[1]), "{counts:?}");
        assert!((9_000..11_000).contains(&counts[2]), "{counts:?}");
    }
}
