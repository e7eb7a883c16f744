//! The decisions of the phased run that need no I/O: how big each phase is, when a ramp must
//! abort, when a performance step broke, what the capacity is, when sessions count as
//! recovered, and how fast memory grows. Part of `scenario/`; the coordinator feeds it
//! measured numbers and acts on its answers.

use crate::report::{CapacityStep, sla::SlaSpec};

/// Sessions the baseline phase opens: few, so its latencies are unloaded.
pub fn baseline_sessions(connections: u64) -> u64 {
    (connections / 100).clamp(1, 100).min(connections)
}

/// The ramp aborts the run once this share of attempted sessions has failed (and at least
/// `RAMP_FAILURES_MIN` have), so a broken target does not take the whole ramp to say so.
pub const RAMP_FAILURE_PCT_MAX: f64 = 5.0;
pub const RAMP_FAILURES_MIN: u64 = 50;

pub fn ramp_must_abort(attempted: u64, failed: u64) -> bool {
    failed >= RAMP_FAILURES_MIN
        && failed as f64 * 100.0 > attempted.max(1) as f64 * RAMP_FAILURE_PCT_MAX
}

/// The offered rates of the performance phase: from `start` up by `factor` per step, at most
/// `steps_max` steps, never past `rate_max`.
pub fn performance_rates(
    start_rps: f64,
    factor: f64,
    steps_max: usize,
    rate_max_rps: f64,
) -> Vec<f64> {
    let mut rates = Vec::new();
    let mut rate = start_rps.max(1.0);
    while rates.len() < steps_max && rate <= rate_max_rps {
        rates.push(rate.round());
        rate *= factor.max(1.01);
    }
    rates
}

/// A step passes while p95 and the error rate hold their SLA bounds (when set) and the target
/// keeps up with at least 90 % of the offered rate.
pub fn judge_step(
    offered_rps: f64,
    achieved_rps: f64,
    latency_us_p95: u64,
    error_rate_pct: f64,
    sla: &SlaSpec,
) -> CapacityStep {
    let mut broke = Vec::new();
    if let Some(bound) = sla.p95_latency_us
        && latency_us_p95 >= bound
    {
        broke.push(format!(
            "p95 {} ≥ {}",
            crate::report::format_us(latency_us_p95),
            crate::report::format_us(bound)
        ));
    }
    if let Some(bound) = sla.error_rate_pct
        && error_rate_pct >= bound
    {
        broke.push(format!("errors {error_rate_pct:.3}% ≥ {bound}%"));
    }
    if achieved_rps < offered_rps * 0.9 {
        broke.push(format!(
            "achieved {achieved_rps:.0} < 90% of offered {offered_rps:.0} req/s"
        ));
    }
    CapacityStep {
        offered_rps,
        achieved_rps,
        latency_us_p95,
        error_rate_pct,
        pass: broke.is_empty(),
        broke: (!broke.is_empty()).then(|| broke.join("; ")),
    }
}

/// The capacity: the highest offered rate of a passing step that comes before the first
/// failing one (a pass after a failure is noise, not capacity).
pub fn capacity(steps: &[CapacityStep]) -> Option<f64> {
    steps
        .iter()
        .take_while(|s| s.pass)
        .map(|s| s.offered_rps)
        .reduce(f64::max)
}

/// Seconds from the fault until sessions answering reached `fraction` of those held before,
/// from `(t_s, answering)` samples taken after the fault; `None` if they never did.
pub fn recovery_time_s(
    fault_t_s: f64,
    before: u64,
    samples: &[(f64, u64)],
    fraction: f64,
) -> Option<f64> {
    let needed = (before as f64 * fraction).ceil() as u64;
    samples
        .iter()
        .find(|(t, answering)| *t >= fault_t_s && *answering >= needed)
        .map(|(t, _)| t - fault_t_s)
}

/// Least-squares slope of `(t_s, bytes)` samples, in bytes per minute; `None` for fewer than
/// three samples or no time spread.
pub fn growth_bytes_per_min(samples: &[(f64, u64)]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_b = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let var_t: f64 = samples.iter().map(|s| (s.0 - mean_t).powi(2)).sum();
    if var_t <= f64::EPSILON {
        return None;
    }
    let cov: f64 = samples
        .iter()
        .map(|s| (s.0 - mean_t) * (s.1 as f64 - mean_b))
        .sum();
    Some(cov / var_t * 60.0)
}

/// The fault the failure_recovery phase injects.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// SIGKILL the embedded server child; start it again after `down_s`.
    Restart { down_s: f64 },
    /// Abortively close this share of client connections (0–1); they reconnect.
    Drop { fraction: f64 },
    /// Run the user's command (e.g. a service restart) through `sh -c`.
    Exec { command: String },
}

impl Fault {
    pub fn parse(text: &str, down_s: f64) -> Result<Fault, String> {
        let text = text.trim();
        if text == "restart" {
            return Ok(Fault::Restart { down_s });
        }
        if let Some(share) = text.strip_prefix("drop:") {
            let pct: f64 = share
                .trim()
                .strip_suffix('%')
                .ok_or_else(|| format!("--fault {text}: give a share like drop:10%"))?
                .parse()
                .map_err(|_| format!("--fault {text}: not a percentage"))?;
            if !(0.0..=100.0).contains(&pct) || pct == 0.0 {
                return Err(format!(
                    "--fault {text}: the share must be above 0% and at most 100%"
                ));
            }
            return Ok(Fault::Drop {
                fraction: pct / 100.0,
            });
        }
        if let Some(command) = text.strip_prefix("exec:") {
            let command = command.trim().trim_matches('\'').trim_matches('"');
            if command.is_empty() {
                return Err(
                    "--fault exec: needs a command, e.g. exec:'systemctl restart mcp'".into(),
                );
            }
            return Ok(Fault::Exec {
                command: command.to_string(),
            });
        }
        Err(format!(
            "--fault {text}: use restart, drop:10% or exec:'CMD'"
        ))
    }

    pub fn describe(&self) -> String {
        match self {
            Fault::Restart { down_s } => {
                format!("restart (server SIGKILLed, back after {down_s} s)")
            }
            Fault::Drop { fraction } => format!("drop {:.0}% of connections", fraction * 100.0),
            Fault::Exec { command } => format!("exec {command:?}"),
        }
    }
}

/// One line of live progress.
pub fn progress_line(
    phase: &str,
    t_s: f64,
    held: u64,
    rps: f64,
    p99_us: Option<u64>,
    errors: u64,
) -> String {
    format!(
        "[{t_s:6.1}s] {phase:<16} sessions {held:>7}  {rps:>9.0} req/s  p99 {:>9}  errors {errors}",
        p99_us.map_or("—".to_string(), crate::report::format_us)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_is_small() {
        assert_eq!(baseline_sessions(100_000), 100);
        assert_eq!(baseline_sessions(2_000), 20);
        assert_eq!(baseline_sessions(50), 1);
        assert_eq!(baseline_sessions(1), 1);
    }

    #[test]
    fn ramp_abort_threshold() {
        assert!(!ramp_must_abort(1000, 49));
        assert!(!ramp_must_abort(10_000, 400));
        assert!(ramp_must_abort(1000, 60));
        assert!(ramp_must_abort(100, 100));
    }

    #[test]
    fn rates_step_up() {
        assert_eq!(
            performance_rates(1000.0, 1.5, 5, 1e9),
            vec![1000.0, 1500.0, 2250.0, 3375.0, 5063.0]
        );
        assert_eq!(
            performance_rates(1000.0, 2.0, 10, 5000.0),
            vec![1000.0, 2000.0, 4000.0]
        );
    }

    #[test]
    fn steps_and_capacity() {
        let sla = SlaSpec::default();
        let ok = judge_step(1000.0, 995.0, 5_000, 0.0, &sla);
        assert!(ok.pass);
        let slow = judge_step(1500.0, 1490.0, 150_000, 0.0, &sla);
        assert!(!slow.pass && slow.broke.as_deref().unwrap().contains("p95"));
        let behind = judge_step(2250.0, 1800.0, 5_000, 0.0, &sla);
        assert!(
            behind
                .broke
                .as_deref()
                .unwrap()
                .contains("achieved 1800 < 90%")
        );
        let errors = judge_step(2250.0, 2250.0, 5_000, 0.5, &sla);
        assert!(errors.broke.as_deref().unwrap().contains("errors"));
        assert_eq!(
            capacity(&[
                ok.clone(),
                slow.clone(),
                judge_step(3375.0, 3375.0, 1, 0.0, &sla)
            ]),
            Some(1000.0)
        );
        assert_eq!(capacity(&[slow]), None);
        assert_eq!(capacity(&[]), None);
    }

    #[test]
    fn recovery() {
        let samples = [
            (10.0, 0),
            (10.5, 500),
            (11.2, 985),
            (11.4, 990),
            (12.0, 1000),
        ];
        assert_eq!(
            recovery_time_s(10.0, 1000, &samples, 0.99),
            Some(1.4000000000000004)
        );
        assert_eq!(recovery_time_s(10.0, 1000, &samples[..3], 0.99), None);
    }

    #[test]
    fn growth_slope() {
        let flat: Vec<(f64, u64)> = (0..10).map(|i| (i as f64, 1000)).collect();
        assert_eq!(growth_bytes_per_min(&flat), Some(0.0));
        let growing: Vec<(f64, u64)> = (0..10).map(|i| (i as f64, 1000 + 100 * i)).collect();
        assert!((growth_bytes_per_min(&growing).unwrap() - 6000.0).abs() < 1e-6);
        assert_eq!(growth_bytes_per_min(&growing[..2]), None);
    }

    #[test]
    fn faults() {
        assert_eq!(
            Fault::parse("restart", 1.0).unwrap(),
            Fault::Restart { down_s: 1.0 }
        );
        assert_eq!(
            Fault::parse("drop:10%", 1.0).unwrap(),
            Fault::Drop { fraction: 0.1 }
        );
        assert_eq!(
            Fault::parse("exec:'systemctl restart x'", 1.0).unwrap(),
            Fault::Exec {
                command: "systemctl restart x".into()
            }
        );
        for bad in ["drop:10", "drop:0%", "drop:150%", "exec:", "reboot"] {
            assert!(Fault::parse(bad, 1.0).is_err(), "{bad}");
        }
    }

    #[test]
    fn progress() {
        let line = progress_line("sustained", 12.5, 100_000, 20_000.0, Some(1500), 3);
        assert!(line.contains("sustained") && line.contains("100000") && line.contains("1.5 ms"));
    }
}
