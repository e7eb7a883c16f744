//! Per-second samples of a run (the time series of the HTML report): each shard closes one
//! [`SecondSlice`] per second of its clock and sends it to the coordinator, which merges the
//! slices of the same second from every shard (histograms with `Histogram::add`, so the
//! percentiles are exact for the whole engine, not a max of shard percentiles) into one
//! `report::SecondSample`. Part of `engine/`; I/O-free (the channel is the caller's).
//!
//! Memory: a slice carries a small histogram (µs, 2 significant digits, ≈ 26 KB); the merger
//! holds only the seconds some shard has not reported yet, so a long run does not grow it.

use crate::report::SecondSample;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Largest latency a per-second histogram holds (µs); larger values are clamped to it.
const SECOND_LATENCY_US_MAX: u64 = 3_600_000_000;

pub fn new_second_histogram() -> Histogram<u64> {
    // Constant bounds within hdrhistogram's limits: cannot fail.
    Histogram::new_with_bounds(1, SECOND_LATENCY_US_MAX, 2).expect("valid histogram bounds")
}

/// One shard's second.
pub struct SecondSlice {
    pub second: u64,
    pub phase: &'static str,
    pub held: u64,
    /// Held sessions answering (held − down − stalled at the shard's last sweep).
    pub answering: u64,
    pub ok: u64,
    pub errors: u64,
    /// Corrected latencies of the requests completed in this second.
    pub latency: Histogram<u64>,
    /// Streams open at the second's end (`--streams`), notifications received in it and the
    /// fan-out latency of those stamped with their send time.
    pub streams_held: u64,
    pub notifications: u64,
    pub notification_latency: Histogram<u64>,
}

/// Merges slices into samples once every shard has reported a second.
pub struct TimelineMerger {
    shards: usize,
    pending: BTreeMap<u64, (usize, SecondSlice)>,
    pub samples: Vec<SecondSample>,
}

impl TimelineMerger {
    pub fn new(shards: usize) -> TimelineMerger {
        TimelineMerger {
            shards,
            pending: BTreeMap::new(),
            samples: Vec::new(),
        }
    }

    pub fn add(&mut self, slice: SecondSlice) {
        let second = slice.second;
        let complete = match self.pending.get_mut(&second) {
            Some((reported, merged)) => {
                *reported += 1;
                merged.held += slice.held;
                merged.answering += slice.answering;
                merged.ok += slice.ok;
                merged.errors += slice.errors;
                merged.streams_held += slice.streams_held;
                merged.notifications += slice.notifications;
                merged
                    .notification_latency
                    .add(&slice.notification_latency)
                    .expect("second histograms share bounds");
                // Same bounds on both sides: `add` only fails on a range mismatch.
                merged
                    .latency
                    .add(&slice.latency)
                    .expect("second histograms share bounds");
                // The later phase wins when shards straddle a phase change within a second.
                if phase_rank(slice.phase) > phase_rank(merged.phase) {
                    merged.phase = slice.phase;
                }
                *reported == self.shards
            }
            None => {
                self.pending.insert(second, (1, slice));
                self.shards == 1
            }
        };
        if complete {
            self.finish(second);
        }
    }

    /// Turns every second still pending (some shard ended before reporting it) into a sample.
    pub fn finish_all(&mut self) {
        while let Some(&second) = self.pending.keys().next() {
            self.finish(second);
        }
        self.samples.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    }

    fn finish(&mut self, second: u64) {
        let Some((_, slice)) = self.pending.remove(&second) else {
            return;
        };
        let at = |histogram: &Histogram<u64>, q: f64| {
            if histogram.is_empty() {
                0
            } else {
                histogram.value_at_quantile(q)
            }
        };
        let quantile = |q: f64| at(&slice.latency, q);
        self.samples.push(SecondSample {
            t_s: second as f64,
            phase: slice.phase.to_string(),
            sessions_held: slice.held,
            sessions_answering: slice.answering,
            throughput_rps: slice.ok as f64,
            errors: slice.errors,
            latency_us_p50: quantile(0.50),
            latency_us_p95: quantile(0.95),
            latency_us_p99: quantile(0.99),
            streams_held: slice.streams_held,
            notifications: slice.notifications,
            notification_latency_us_p99: at(&slice.notification_latency, 0.99),
        });
    }
}

fn phase_rank(phase: &str) -> usize {
    crate::report::PHASE_NAMES
        .iter()
        .position(|p| *p == phase)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(second: u64, phase: &'static str, ok: u64, latencies: &[u64]) -> SecondSlice {
        let mut latency = new_second_histogram();
        for &us in latencies {
            latency.saturating_record(us);
        }
        SecondSlice {
            second,
            phase,
            held: 10,
            answering: 9,
            ok,
            errors: 1,
            latency,
            streams_held: 0,
            notifications: 0,
            notification_latency: new_second_histogram(),
        }
    }

    #[test]
    fn merges_a_second_once_every_shard_reported_it() {
        let mut merger = TimelineMerger::new(2);
        merger.add(slice(0, "ramp_up", 0, &[]));
        merger.add(slice(1, "sustained", 100, &[100; 99]));
        assert!(merger.samples.is_empty());
        merger.add(slice(0, "ramp_up", 0, &[]));
        assert_eq!(merger.samples.len(), 1);
        // One slow request on the other shard: the merged p99 sees it (a max of per-shard
        // p99s would too here, but the merged p50 stays at the bulk).
        merger.add(slice(1, "sustained", 100, &[100; 98]));
        merger.add(slice(2, "sustained", 5, &[7]));
        merger.finish_all();
        assert_eq!(merger.samples.len(), 3);
        let one = &merger.samples[1];
        assert_eq!(one.t_s, 1.0);
        assert_eq!(one.throughput_rps, 200.0);
        assert_eq!(one.errors, 2);
        assert_eq!(one.sessions_held, 20);
        assert_eq!(one.sessions_answering, 18);
        assert_eq!(one.latency_us_p50, 100);
        assert_eq!(
            merger.samples[2].sessions_held, 10,
            "reported by one shard only"
        );
        assert_eq!(merger.samples[2].latency_us_p99, 7);
    }

    #[test]
    fn later_phase_wins_within_a_second() {
        let mut merger = TimelineMerger::new(2);
        merger.add(slice(4, "sustained", 1, &[]));
        merger.add(slice(4, "ramp_up", 1, &[]));
        assert_eq!(merger.samples[0].phase, "sustained");
        assert_eq!(merger.samples[0].latency_us_p99, 0);
    }
}
