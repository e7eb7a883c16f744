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

/// The performance phase's search for the capacity, I/O-free: from the sustained rate, grow
/// by `factor` while steps pass; once a step fails, bisect between the highest pass and the
/// lowest failure until they are within `precision`. A first step that fails goes down —
/// straight to just under what that step achieved (the server's own figure), or by `factor`
/// when it achieved nothing — so a server of 800 req/s and one of 80,000 are both found in
/// about ten steps, whatever the start.
#[derive(Debug, Clone)]
pub struct CapacitySearch {
    factor: f64,
    precision: f64,
    steps_max: usize,
    steps: usize,
    next: Option<f64>,
    highest_pass: Option<f64>,
    lowest_fail: Option<f64>,
    /// A rate whose step the generator could not drive, once (it is tried again).
    unjudged: Option<f64>,
    /// The rate the generator could not drive twice: the search stopped there.
    pub generator_limit_rps: Option<f64>,
    /// A run's segments (`--segment I/N`) climb the same ladder whatever each step showed
    /// (start × factor^k for every k < steps_max): every segment offers its share of the
    /// same rates at the same times, and the merge judges the summed steps.
    ladder: Option<f64>,
}

/// Bisection stops when the highest pass is within this share of the lowest failure.
pub const CAPACITY_PRECISION: f64 = 0.05;
/// Rates below this are not searched (the pacer's resolution is 1 req/s per shard).
pub const CAPACITY_RATE_MIN: f64 = 2.0;

impl CapacitySearch {
    pub fn new(start_rps: f64, factor: f64, steps_max: usize) -> CapacitySearch {
        CapacitySearch {
            factor: factor.max(1.01),
            precision: CAPACITY_PRECISION,
            steps_max,
            steps: 0,
            next: Some(start_rps.max(CAPACITY_RATE_MIN).round()),
            highest_pass: None,
            lowest_fail: None,
            unjudged: None,
            generator_limit_rps: None,
            ladder: None,
        }
    }

    /// The fixed ladder of a segmented run: `steps_max` steps from `start_rps`, ×`factor` each.
    pub fn ladder(start_rps: f64, factor: f64, steps_max: usize) -> CapacitySearch {
        let mut search = CapacitySearch::new(start_rps, factor, steps_max);
        search.ladder = search.next;
        search
    }

    /// On the ladder, the next step is the one after, whatever this one showed.
    fn climb(&mut self) -> bool {
        let Some(start) = self.ladder else {
            return false;
        };
        self.next = Some((start * self.factor.powi(self.steps as i32)).round());
        true
    }

    /// The offered rate of the next step; `None` when the search is over.
    pub fn next_rate(&self) -> Option<f64> {
        if self.steps >= self.steps_max {
            return None;
        }
        self.next
    }

    /// A step the generator could not drive says nothing about the server: the same rate is
    /// tried once more; a second time, the search stops (the generator's limit, not the
    /// server's, was found) and the capacity is a lower bound.
    pub fn record_unjudged(&mut self, offered_rps: f64) {
        self.steps += 1;
        if self.climb() {
            return;
        }
        if self.unjudged == Some(offered_rps) {
            self.generator_limit_rps = Some(offered_rps);
            self.next = None;
        } else {
            self.unjudged = Some(offered_rps);
            self.next = Some(offered_rps);
        }
    }

    /// Takes a step's verdict and decides the next rate.
    pub fn record(&mut self, step: &CapacityStep) {
        self.steps += 1;
        self.unjudged = None;
        if step.pass {
            self.highest_pass = Some(
                self.highest_pass
                    .map_or(step.offered_rps, |h| h.max(step.offered_rps)),
            );
        } else {
            self.lowest_fail = Some(
                self.lowest_fail
                    .map_or(step.offered_rps, |l| l.min(step.offered_rps)),
            );
        }
        if self.climb() {
            return;
        }
        self.next = match (self.highest_pass, self.lowest_fail) {
            (Some(pass), None) => Some((pass * self.factor).round()),
            (None, Some(fail)) => {
                let down = if step.achieved_rps > 0.0 && step.achieved_rps < fail {
                    step.achieved_rps * 0.95
                } else {
                    fail / self.factor
                };
                (down >= CAPACITY_RATE_MIN).then(|| down.round())
            }
            (Some(pass), Some(fail)) if fail <= pass => None,
            (Some(pass), Some(fail)) => {
                let mid = ((pass + fail) / 2.0).round();
                ((fail - pass) / pass > self.precision && mid > pass && mid < fail).then_some(mid)
            }
            (None, None) => None,
        };
    }

    /// The highest passing rate below every failure: the capacity.
    pub fn capacity(&self) -> Option<f64> {
        match (self.highest_pass, self.lowest_fail) {
            (Some(pass), Some(fail)) if pass >= fail => None,
            (pass, _) => pass,
        }
    }
}

/// A step passes while p95 and the error rate hold their SLA bounds (when set), the server
/// had an idle session for all but 1 % of the offered requests, and at least 90 % of the
/// offered rate was answered.
pub fn judge_step(
    offered_rps: f64,
    achieved_rps: f64,
    latency_us_p95: u64,
    error_rate_pct: f64,
    dropped_pct: f64,
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
    if dropped_pct > crate::report::Saturation::DROPPED_PCT_MAX {
        broke.push(format!(
            "saturated: {dropped_pct:.1}% of offered found no idle session"
        ));
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

/// Seconds from the fault until sessions answering reached `fraction` of those held before
/// and stayed there: the first sample at or above after the last one below (0 when none was
/// below), from `(t_s since the fault, answering)` samples; `None` if the last sample is below.
pub fn recovery_time_s(before: u64, samples: &[(f64, u64)], fraction: f64) -> Option<f64> {
    let needed = (before as f64 * fraction).ceil() as u64;
    let last_below = samples
        .iter()
        .rposition(|&(_, answering)| answering < needed);
    match last_below {
        None => Some(0.0),
        Some(i) => samples.get(i + 1).map(|&(t, _)| t),
    }
}

/// The way back after a fault from `(t_s since the fault, answering)` samples: the fewest
/// answering, and when 50/90/99 % of `before` answered again (after the bottom of the dip).
pub fn recovery_curve(
    before: u64,
    samples: &[(f64, u64)],
    first_success_s: Option<f64>,
) -> crate::report::RecoveryCurve {
    let bottom = samples
        .iter()
        .enumerate()
        .min_by_key(|(_, (_, answering))| *answering)
        .map_or(0, |(i, _)| i);
    let answering_min = samples.get(bottom).map_or(before, |s| s.1);
    let to = |fraction: f64| {
        let needed = (before as f64 * fraction).ceil() as u64;
        if answering_min >= needed {
            return Some(0.0);
        }
        samples[bottom..]
            .iter()
            .find(|(_, answering)| *answering >= needed)
            .map(|(t, _)| *t)
    };
    crate::report::RecoveryCurve {
        first_success_s,
        answering_min,
        to_50pct_s: to(0.5),
        to_90pct_s: to(0.9),
        to_99pct_s: to(0.99),
    }
}

/// How long a request may stay unanswered before its session counts as not answering during
/// failure_recovery: twice the latency the server showed while loaded (sustained p99) or ten
/// times its unloaded p99, and never less than the SLA's p95 bound (or 100 ms without one).
pub fn stall_after_us(sla_p95_us: Option<u64>, sustained_p99_us: u64, baseline_p99_us: u64) -> u64 {
    sla_p95_us
        .unwrap_or(100_000)
        .max(sustained_p99_us.saturating_mul(2))
        .max(baseline_p99_us.saturating_mul(10))
}

/// Share of what the rate probe carried that the sustained phase offers when no --rate is
/// given: a load the server holds with room, so the phase measures it below saturation.
pub const SUSTAINED_SHARE_OF_PROBE: f64 = 0.5;

/// Requests in flight at most during the rate probe: enough to saturate a server that serves
/// thousands at once, few enough that a slow one drains them in seconds.
pub const RATE_PROBE_IN_FLIGHT_MAX: u64 = 1000;

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
    /// A partition, latency or loss on the path to the targets for `duration_s`, installed by
    /// the guard process (`netfault/`).
    Network {
        impairment: crate::netfault::Impairment,
        duration_s: f64,
    },
    /// SIGKILL embedded replica `replica` (1-based, as the report numbers them) for the rest
    /// of the run: its sessions fail over to the others (`run --replicas N`).
    KillReplica { replica: usize },
}

/// A fault's `key:value` options after its first part.
type FaultOptions<'a> = Vec<(&'a str, &'a str)>;

/// `latency:100ms,jitter:20ms,for:5s` → the value of the first part and the `key:value` rest.
fn fault_options<'a>(
    text: &'a str,
    allowed: &[&str],
) -> Result<(&'a str, FaultOptions<'a>), String> {
    let mut parts = text.split(',').map(str::trim);
    let first = parts.next().unwrap_or("");
    let mut options = Vec::new();
    for part in parts {
        let (key, value) = part
            .split_once(':')
            .ok_or_else(|| format!("--fault {text}: {part:?} is no key:value"))?;
        if !allowed.contains(&key) {
            return Err(format!(
                "--fault {text}: unknown {key:?} (allowed: {})",
                allowed.join(", ")
            ));
        }
        options.push((key, value));
    }
    Ok((first, options))
}

fn fault_duration(text: &str, value: &str) -> Result<f64, String> {
    let d = crate::cli::parse_duration(value).map_err(|e| format!("--fault {text}: {e}"))?;
    if d.is_zero() {
        return Err(format!("--fault {text}: the duration must be above zero"));
    }
    Ok(d.as_secs_f64())
}

fn fault_percent(text: &str, value: &str) -> Result<f64, String> {
    let pct: f64 = value
        .trim()
        .strip_suffix('%')
        .ok_or_else(|| format!("--fault {text}: give a share like 10%"))?
        .parse()
        .map_err(|_| format!("--fault {text}: not a percentage"))?;
    if !(0.0..=100.0).contains(&pct) || pct == 0.0 {
        return Err(format!(
            "--fault {text}: the share must be above 0% and at most 100%"
        ));
    }
    Ok(pct)
}

/// The network faults: `partition:3s`, `latency:100ms[,jitter:20ms][,for:D]`,
/// `loss:5%[,for:D]` (D defaults to `--down`).
fn network_fault(text: &str, down_s: f64) -> Option<Result<Fault, String>> {
    use crate::netfault::Impairment;
    let parse = |rest: &str, kind: &str| -> Result<Fault, String> {
        let allowed: &[&str] = match kind {
            "latency" => &["jitter", "for"],
            "loss" => &["for"],
            _ => &[],
        };
        let (first, options) = fault_options(rest, allowed)?;
        let option = |key: &str| options.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let duration_s = match option("for") {
            Some(d) => fault_duration(text, d)?,
            None => down_s,
        };
        let impairment = match kind {
            "partition" => {
                return Ok(Fault::Network {
                    impairment: Impairment::Partition,
                    duration_s: fault_duration(text, first)?,
                });
            }
            "latency" => {
                let delay = crate::cli::parse_duration(first)
                    .map_err(|e| format!("--fault {text}: {e}"))?;
                let jitter = option("jitter")
                    .map(crate::cli::parse_duration)
                    .transpose()
                    .map_err(|e| format!("--fault {text}: {e}"))?
                    .unwrap_or_default();
                if delay.is_zero() {
                    return Err(format!("--fault {text}: the delay must be above zero"));
                }
                Impairment::Latency {
                    delay_us: delay.as_micros() as u64,
                    jitter_us: jitter.as_micros() as u64,
                }
            }
            _ => Impairment::Loss {
                percent: fault_percent(text, first)?,
            },
        };
        Ok(Fault::Network {
            impairment,
            duration_s,
        })
    };
    ["partition", "latency", "loss"].iter().find_map(|kind| {
        text.strip_prefix(kind)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|rest| parse(rest, kind))
    })
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
        if let Some(network) = network_fault(text, down_s) {
            return network;
        }
        if let Some(number) = text.strip_prefix("kill-replica:") {
            let replica: usize = number.trim().parse().map_err(|_| {
                format!("--fault {text}: give the replica's number, e.g. kill-replica:1")
            })?;
            if replica == 0 {
                return Err(format!(
                    "--fault {text}: replicas are numbered from 1, as the report lists them"
                ));
            }
            return Ok(Fault::KillReplica { replica });
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
            "--fault {text}: use restart, drop:10%, exec:'CMD', kill-replica:1, partition:3s, latency:100ms[,jitter:20ms][,for:5s] or loss:5%[,for:5s]"
        ))
    }

    pub fn describe(&self) -> String {
        match self {
            Fault::Restart { down_s } => {
                format!("restart (server SIGKILLed, back after {down_s} s)")
            }
            Fault::Drop { fraction } => format!("drop {:.0}% of connections", fraction * 100.0),
            Fault::Exec { command } => format!("exec {command:?}"),
            Fault::Network {
                impairment,
                duration_s,
            } => format!("{} for {duration_s} s", impairment.describe()),
            Fault::KillReplica { replica } => {
                format!("kill replica {replica} (SIGKILL, not restarted)")
            }
        }
    }
}

/// One line of live progress.
pub fn progress_line(
    phase: &str,
    t_s: f64,
    held: u64,
    answering: u64,
    rps: f64,
    p99_us: Option<u64>,
    errors: u64,
) -> String {
    let answering = if answering < held {
        format!(" ({answering} answering)")
    } else {
        String::new()
    };
    format!(
        "[{t_s:6.1}s] {phase:<16} sessions {held:>7}{answering}  {rps:>9.0} req/s  p99 {:>9}  errors {errors}",
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

    fn step(offered: f64, achieved: f64, pass: bool) -> CapacityStep {
        CapacityStep {
            offered_rps: offered,
            achieved_rps: achieved,
            latency_us_p95: 0,
            error_rate_pct: 0.0,
            pass,
            broke: None,
        }
    }

    /// Runs the search against a server that carries `capacity` req/s exactly.
    fn search(start: f64, capacity: f64) -> (Option<f64>, usize) {
        let mut search = CapacitySearch::new(start, 1.5, 12);
        let mut steps = 0;
        while let Some(rate) = search.next_rate() {
            steps += 1;
            search.record(&step(rate, rate.min(capacity), rate <= capacity));
        }
        (search.capacity(), steps)
    }

    /// Segments climb the same ladder whatever their steps show: the rates do not depend on
    /// the verdicts (so every segment offers its share of the same step at the same time),
    /// and the capacity is still the highest passing step below every failure.
    #[test]
    fn a_segmented_search_climbs_a_fixed_ladder() {
        let rates = |capacity: f64| {
            let mut search = CapacitySearch::ladder(100.0, 2.0, 5);
            let mut rates = Vec::new();
            while let Some(rate) = search.next_rate() {
                rates.push(rate);
                if rates.len() == 2 {
                    search.record_unjudged(rate);
                } else {
                    search.record(&step(rate, rate.min(capacity), rate <= capacity));
                }
            }
            (rates, search.capacity())
        };
        let (low, low_capacity) = rates(250.0);
        let (high, high_capacity) = rates(10_000.0);
        assert_eq!(low, [100.0, 200.0, 400.0, 800.0, 1600.0]);
        assert_eq!(high, low, "the same ladder for any server");
        assert_eq!(low_capacity, Some(100.0), "200 was not judged, 400 failed");
        assert_eq!(high_capacity, Some(1600.0));
    }

    #[test]
    fn capacity_search_finds_slow_and_fast_servers_within_ten_percent() {
        for (start, capacity) in [
            (20_000.0, 800.0),
            (400.0, 800.0),
            (40_000.0, 80_000.0),
            (10_000.0, 80_000.0),
            (100.0, 800.0),
            (5.0, 3.0),
        ] {
            let (found, steps) = search(start, capacity);
            let found = found.unwrap_or_else(|| panic!("{start} → {capacity}: none"));
            assert!(
                found <= capacity && found >= capacity * 0.9,
                "{start} → {capacity}: found {found}"
            );
            assert!(steps <= 12, "{start} → {capacity}: {steps} steps");
        }
    }

    #[test]
    fn capacity_search_ends_without_a_pass_and_ignores_noise() {
        let mut search = CapacitySearch::new(100.0, 1.5, 12);
        while let Some(rate) = search.next_rate() {
            search.record(&step(rate, 0.0, false));
        }
        assert_eq!(search.capacity(), None);
        let mut search = CapacitySearch::new(1000.0, 1.5, 3);
        search.record(&step(1000.0, 1000.0, true));
        search.record(&step(1500.0, 1200.0, false));
        assert_eq!(search.next_rate(), Some(1250.0));
        search.record(&step(1250.0, 1250.0, true));
        assert_eq!(search.next_rate(), None, "steps_max");
        assert_eq!(search.capacity(), Some(1250.0));
    }

    #[test]
    fn a_step_the_generator_could_not_drive_is_tried_again_then_ends_the_search() {
        let mut search = CapacitySearch::new(1000.0, 1.5, 12);
        search.record(&step(1000.0, 1000.0, true));
        assert_eq!(search.next_rate(), Some(1500.0));
        search.record_unjudged(1500.0);
        assert_eq!(search.next_rate(), Some(1500.0), "tried again");
        search.record(&step(1500.0, 1500.0, true));
        assert_eq!(search.next_rate(), Some(2250.0));
        search.record_unjudged(2250.0);
        search.record_unjudged(2250.0);
        assert_eq!(search.next_rate(), None);
        assert_eq!(search.generator_limit_rps, Some(2250.0));
        assert_eq!(search.capacity(), Some(1500.0), "a lower bound");
    }

    #[test]
    fn steps_are_judged_on_the_servers_figures() {
        let sla = SlaSpec::default();
        assert!(judge_step(1000.0, 995.0, 5_000, 0.0, 0.0, &sla).pass);
        let slow = judge_step(1500.0, 1490.0, 150_000, 0.0, 0.0, &sla);
        assert!(!slow.pass && slow.broke.as_deref().unwrap().contains("p95"));
        let behind = judge_step(2250.0, 1800.0, 5_000, 0.0, 0.0, &sla);
        assert!(
            behind
                .broke
                .as_deref()
                .unwrap()
                .contains("achieved 1800 < 90%")
        );
        let errors = judge_step(2250.0, 2250.0, 5_000, 0.5, 0.0, &sla);
        assert!(errors.broke.as_deref().unwrap().contains("errors"));
        let saturated = judge_step(2250.0, 2200.0, 5_000, 0.0, 2.0, &sla);
        assert!(saturated.broke.as_deref().unwrap().contains("saturated"));
    }

    #[test]
    fn recovery() {
        let samples = [(0.0, 1000), (0.5, 500), (1.2, 985), (1.4, 990), (2.0, 1000)];
        assert_eq!(recovery_time_s(1000, &samples, 0.99), Some(1.4));
        assert_eq!(recovery_time_s(1000, &samples[..3], 0.99), None);
        // A frozen server: every session answers until requests stall, then none does.
        let frozen = [
            (0.0, 200),
            (0.2, 200),
            (0.4, 0),
            (3.0, 0),
            (3.3, 199),
            (3.5, 200),
        ];
        assert_eq!(recovery_time_s(200, &frozen, 0.99), Some(3.3));
        assert_eq!(
            recovery_time_s(200, &[(0.0, 200), (1.0, 200)], 0.99),
            Some(0.0)
        );
        let curve = recovery_curve(200, &frozen, Some(3.1));
        assert_eq!(curve.answering_min, 0);
        assert_eq!(curve.to_50pct_s, Some(3.3));
        assert_eq!(curve.to_99pct_s, Some(3.3));
        assert_eq!(curve.first_success_s, Some(3.1));
        let mild = recovery_curve(1000, &samples, None);
        assert_eq!(mild.answering_min, 500);
        assert_eq!(mild.to_50pct_s, Some(0.0));
        assert_eq!(mild.to_90pct_s, Some(1.2));
    }

    #[test]
    fn stall_bound() {
        assert_eq!(stall_after_us(Some(100_000), 30_000, 2_000), 100_000);
        assert_eq!(stall_after_us(Some(100_000), 400_000, 2_000), 800_000);
        assert_eq!(stall_after_us(None, 0, 50_000), 500_000);
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
        assert_eq!(
            Fault::parse("kill-replica:2", 1.0).unwrap(),
            Fault::KillReplica { replica: 2 }
        );
        assert!(Fault::parse("kill-replica:0", 1.0).is_err());
        assert!(Fault::parse("kill-replica:x", 1.0).is_err());
        use crate::netfault::Impairment;
        assert_eq!(
            Fault::parse("partition:3s", 1.0).unwrap(),
            Fault::Network {
                impairment: Impairment::Partition,
                duration_s: 3.0
            }
        );
        assert_eq!(
            Fault::parse("latency:100ms,jitter:20ms,for:5s", 1.0).unwrap(),
            Fault::Network {
                impairment: Impairment::Latency {
                    delay_us: 100_000,
                    jitter_us: 20_000
                },
                duration_s: 5.0
            }
        );
        assert_eq!(
            Fault::parse("loss:5%", 2.0).unwrap(),
            Fault::Network {
                impairment: Impairment::Loss { percent: 5.0 },
                duration_s: 2.0
            }
        );
        for bad in [
            "partition:0s",
            "partition:3s,for:1s",
            "latency:0ms",
            "latency:100ms,loss:5%",
            "loss:5",
            "loss:0%",
            "latency:100ms,jitter",
            "drop:10",
            "drop:0%",
            "drop:150%",
            "exec:",
            "reboot",
        ] {
            assert!(Fault::parse(bad, 1.0).is_err(), "{bad}");
        }
    }

    #[test]
    fn progress() {
        let line = progress_line("sustained", 12.5, 100_000, 100_000, 20_000.0, Some(1500), 3);
        assert!(line.contains("sustained") && line.contains("100000") && line.contains("1.5 ms"));
        assert!(!line.contains("answering"));
        let line = progress_line("failure_recovery", 30.0, 200, 12, 0.0, None, 0);
        assert!(line.contains("(12 answering)"), "{line}");
    }
}
