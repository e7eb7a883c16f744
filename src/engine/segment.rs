//! Execution segments (issue 13): one run's load split over N processes on N hosts. ExecutionSegment
//! `I/N` takes a deterministic share of the connections, of every rate the run offers
//! (connect, request, the performance steps), of the source ports and of the `{{seq}}`
//! values, so the N segments of one set of options together offer exactly what one run of
//! them would; `mcpstorm merge` adds their reports back into one. Part of `engine/`,
//! I/O-free: the plan and the coordinator ask it for shares.
//!
//! Shares are integer and exact: `total / N` each, and one more for the first `total % N`
//! segments, so they sum to `total` for any N and remainder (a rate of 5 req/s over 3
//! segments is 2 + 2 + 1). Connection `k` of segment `I` is connection `first(I) + k` of the
//! whole run: its source port is the one a single run would give it.

/// Which share of the run this process carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionSegment {
    /// 0-based.
    pub index: u32,
    pub count: u32,
}

/// Most segments of one run (a bound for the options, not for the arithmetic).
pub const SEGMENTS_MAX: u32 = 10_000;

impl Default for ExecutionSegment {
    fn default() -> Self {
        ExecutionSegment::WHOLE
    }
}

impl ExecutionSegment {
    /// The whole run in one process.
    pub const WHOLE: ExecutionSegment = ExecutionSegment { index: 0, count: 1 };

    pub fn new(index: u32, count: u32) -> Result<ExecutionSegment, String> {
        if count == 0 || count > SEGMENTS_MAX {
            return Err(format!(
                "a run has 1 to {SEGMENTS_MAX} segments, not {count}"
            ));
        }
        if index >= count {
            return Err(format!(
                "segment {index} of {count}: segments are numbered 0 to {}",
                count - 1
            ));
        }
        Ok(ExecutionSegment { index, count })
    }

    /// `--segment I/N` (0-based `I`).
    pub fn parse(text: &str) -> Result<ExecutionSegment, String> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("--segment {text:?}: give I/N, e.g. 0/3 (0-based)"))?;
        let number = |part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| format!("--segment {text:?}: {part:?} is not a number"))
        };
        ExecutionSegment::new(number(index)?, number(count)?)
            .map_err(|e| format!("--segment {text:?}: {e}"))
    }

    /// `--segment-from-env VAR --segments N`: the index from the variable an engine sets
    /// (Kubernetes `JOB_COMPLETION_INDEX`, Slurm `SLURM_ARRAY_TASK_ID`), minus `base` (the
    /// first index the engine hands out: 0 for both, unless the array starts elsewhere).
    pub fn from_env_value(
        var: &str,
        value: Option<&str>,
        count: u32,
        base: u32,
    ) -> Result<ExecutionSegment, String> {
        let value = value.ok_or_else(|| {
            format!("--segment-from-env {var}: the variable is not set in this environment")
        })?;
        let index = value.trim().parse::<u32>().map_err(|_| {
            format!("--segment-from-env {var}: its value {value:?} is not a segment index")
        })?;
        let index = index.checked_sub(base).ok_or_else(|| {
            format!("--segment-from-env {var}={index}: below the first index {base}")
        })?;
        ExecutionSegment::new(index, count).map_err(|e| format!("--segment-from-env {var}: {e}"))
    }

    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// This segment's share of `total` (connections, req/s, sessions/s).
    pub fn share(self, total: u64) -> u64 {
        split(total, self.index, self.count)
    }

    /// The shares of the segments before this one: where its connections start in the
    /// whole run's numbering.
    pub fn first(self, total: u64) -> u64 {
        let (each, rest) = (total / u64::from(self.count), total % u64::from(self.count));
        u64::from(self.index) * each + u64::from(self.index).min(rest)
    }

    /// `I/N` as the report and the flags write it.
    pub fn label(self) -> String {
        format!("{}/{}", self.index, self.count)
    }
}

/// Part `index` of `total` split into `count` exact integer shares.
pub fn split(total: u64, index: u32, count: u32) -> u64 {
    let count = u64::from(count.max(1));
    total / count + u64::from(u64::from(index) < total % count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_exactly_and_tile_the_numbering() {
        for count in 1..=13u32 {
            for total in [0u64, 1, 2, 5, 7, 99, 100, 1_000_003, u64::from(u32::MAX)] {
                let mut next_first = 0;
                let mut sum = 0;
                for index in 0..count {
                    let segment = ExecutionSegment::new(index, count).unwrap();
                    assert_eq!(segment.first(total), next_first, "{total} over {count}");
                    let share = segment.share(total);
                    // Shares differ by at most one, larger first.
                    assert!(
                        share == total / u64::from(count) || share == total / u64::from(count) + 1
                    );
                    next_first += share;
                    sum += share;
                }
                assert_eq!(sum, total, "{total} over {count}");
            }
        }
        assert_eq!(
            (0..3).map(|i| split(5, i, 3)).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
    }

    proptest::proptest! {
        #[test]
        fn any_split_sums_to_its_total(total in 0u64..u64::MAX / 2, count in 1u32..500) {
            let sum: u64 = (0..count).map(|i| split(total, i, count)).sum();
            proptest::prop_assert_eq!(sum, total);
            let last = ExecutionSegment::new(count - 1, count).unwrap();
            proptest::prop_assert_eq!(last.first(total) + last.share(total), total);
        }
    }

    #[test]
    fn flags_and_environment() {
        assert_eq!(
            ExecutionSegment::parse("1/3"),
            Ok(ExecutionSegment { index: 1, count: 3 })
        );
        assert_eq!(
            ExecutionSegment::parse(" 0 / 1 "),
            Ok(ExecutionSegment::WHOLE)
        );
        for bad in ["3/3", "1", "a/3", "1/0", "-1/3", "1/10001"] {
            let e = ExecutionSegment::parse(bad).unwrap_err();
            assert!(e.starts_with("--segment"), "{bad}: {e}");
        }
        assert_eq!(
            ExecutionSegment::from_env_value("JOB_COMPLETION_INDEX", Some("2"), 3, 0),
            Ok(ExecutionSegment { index: 2, count: 3 })
        );
        assert_eq!(
            ExecutionSegment::from_env_value("SLURM_ARRAY_TASK_ID", Some("3"), 3, 1),
            Ok(ExecutionSegment { index: 2, count: 3 })
        );
        for (value, base) in [(None, 0), (Some("x"), 0), (Some("3"), 0), (Some("0"), 1)] {
            let e = ExecutionSegment::from_env_value("V", value, 3, base).unwrap_err();
            assert!(e.starts_with("--segment-from-env V"), "{value:?}: {e}");
        }
        assert_eq!(
            ExecutionSegment {
                index: 4,
                count: 10
            }
            .label(),
            "4/10"
        );
    }
}
