//! The host's CPU time as /proc/stat counts it, for the generator's self-check: how much of
//! the CPUs the hypervisor gave to other guests (`steal`) while a phase ran. On a shared cloud
//! host a generator can be late for want of CPU it was never given; the report then says so
//! beside its INVALID instead of leaving the reader to suspect the server or the engine.
//! Part of `sys/`; the parser is I/O-free and tested on captured text.

/// The all-CPU line of /proc/stat, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + idle + iowait + irq + softirq + steal (guest time is already
    /// inside user and nice).
    pub total: u64,
    pub steal: u64,
}

/// The `cpu ` line of /proc/stat; `None` when it is missing or malformed.
pub fn parse(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    if fields.len() < 8 {
        return None;
    }
    Some(CpuTimes {
        total: fields.iter().sum(),
        steal: fields[7],
    })
}

pub fn read() -> Option<CpuTimes> {
    parse(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Steal between two readings, percent of all CPU time; `None` when no time passed.
pub fn steal_pct(before: CpuTimes, after: CpuTimes) -> Option<f64> {
    let total = after.total.checked_sub(before.total)?;
    let steal = after.steal.checked_sub(before.steal)?;
    (total > 0).then(|| steal as f64 * 100.0 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  1850740 0 354965 6727169 1959047 0 74629 31626 0 0\n\
        cpu0 846352 0 174162 3370311 1053093 0 37101 17591 0 0\n\
        intr 1 2 3\n";

    #[test]
    fn the_all_cpu_line_and_the_share_stolen() {
        let before = parse(STAT).unwrap();
        assert_eq!(before.steal, 31626);
        assert_eq!(
            before.total,
            1850740 + 354965 + 6727169 + 1959047 + 74629 + 31626
        );
        let after = CpuTimes {
            total: before.total + 1000,
            steal: before.steal + 180,
        };
        assert_eq!(steal_pct(before, after), Some(18.0));
        assert_eq!(steal_pct(before, before), None);
        assert_eq!(steal_pct(after, before), None);
    }

    #[test]
    fn malformed_text_is_none() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("cpu  1 2 3\n"), None);
        assert_eq!(parse("cpu  1 2 x 4 5 6 7 8\n"), None);
        assert_eq!(parse("cpu0 1 2 3 4 5 6 7 8\n"), None);
    }
}
