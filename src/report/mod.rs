//! The report of a phased `mcpstorm run`: the structs below *are* the JSON schema
//! (schema/report.schema.json is checked against real output by a test), the SLA evaluation
//! (`sla.rs`), and the renderers (`text.rs`, `html.rs`). Part of `report/`: it formats and
//! judges figures the scenario measured; it never measures anything itself.

pub mod hist;
pub mod html;
pub mod sla;
pub mod text;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version tag of the JSON layout; bump on incompatible changes.
pub const SCHEMA_ID: &str = "mcpstorm.run/1";

/// The six phases, in order. Their names in JSON are exactly these.
pub const PHASE_NAMES: [&str; 6] = [
    "baseline",
    "ramp_up",
    "sustained",
    "failure_recovery",
    "performance",
    "cool_down",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Completed,
    /// Turned off by an option.
    Skipped,
    /// Stopped early by a rule (ramp failure threshold, target not speaking MCP).
    Aborted,
    /// Stopped by SIGINT/SIGTERM; its figures cover the time it ran.
    Interrupted,
    /// Not reached because an earlier phase aborted or the run was interrupted.
    NotRun,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(histogram: &hdrhistogram::Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p95: histogram.value_at_quantile(0.95),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        }
    }
}

/// Quantiles drawn in the HTML percentile spectrum.
pub const SPECTRUM_QUANTILES: [f64; 10] =
    [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 0.99999, 1.0];

/// `(quantile, latency µs)` points of a histogram, for the spectrum chart.
pub fn spectrum(histogram: &hdrhistogram::Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    SPECTRUM_QUANTILES
        .iter()
        .map(|&q| (q, histogram.value_at_quantile(q)))
        .collect()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sessions {
    pub target: u64,
    pub established: u64,
    pub failed: u64,
    pub held_max: u64,
    /// Sessions established per second (initialize handshake included); ramp_up only.
    pub established_per_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Requests {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// In flight when the phase ended (or at a fault): counted, never dropped silently.
    pub in_flight_at_end: u64,
}

impl Requests {
    /// Errors ÷ completed requests, in percent; `None` when nothing completed.
    pub fn error_rate_pct(&self) -> Option<f64> {
        let done = self.ok + self.errors;
        (done > 0).then(|| self.errors as f64 * 100.0 / done as f64)
    }
}

/// The generator's own health: a phase where it fell behind is INVALID, never PASS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GeneratorCheck {
    pub late_sends: u64,
    /// Late sends ÷ sends, percent.
    pub late_sends_pct: f64,
    pub loop_lag_us_p99: u64,
    pub cq_overflows: u64,
    pub sq_backlog_max: u64,
    pub valid: bool,
    /// Why the phase is INVALID, when it is.
    pub invalid_reason: Option<String>,
}

impl GeneratorCheck {
    /// Late sends above 1 % or a loop lag p99 above 10 ms make a phase INVALID.
    pub const LATE_SENDS_PCT_MAX: f64 = 1.0;
    pub const LOOP_LAG_US_P99_MAX: u64 = 10_000;

    pub fn judge(
        late_sends: u64,
        sends: u64,
        loop_lag_us_p99: u64,
        cq_overflows: u64,
        sq_backlog_max: u64,
    ) -> GeneratorCheck {
        let late_sends_pct = if sends == 0 {
            0.0
        } else {
            late_sends as f64 * 100.0 / sends as f64
        };
        let mut reasons = Vec::new();
        if late_sends_pct > Self::LATE_SENDS_PCT_MAX {
            reasons.push(format!(
                "{late_sends_pct:.2}% of sends were > 1 ms late (bound {} %)",
                Self::LATE_SENDS_PCT_MAX
            ));
        }
        if loop_lag_us_p99 > Self::LOOP_LAG_US_P99_MAX {
            reasons.push(format!(
                "loop lag p99 {loop_lag_us_p99} µs (bound {} µs)",
                Self::LOOP_LAG_US_P99_MAX
            ));
        }
        if cq_overflows > 0 {
            reasons.push(format!("{cq_overflows} completion-queue overflows"));
        }
        GeneratorCheck {
            late_sends,
            late_sends_pct,
            loop_lag_us_p99,
            cq_overflows,
            sq_backlog_max,
            valid: reasons.is_empty(),
            invalid_reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryFigures {
    pub client_user_bytes_per_conn: Option<f64>,
    /// Embedded server child or `--server-pid`; `None` when not measurable.
    pub server_user_bytes_per_conn: Option<f64>,
    pub kernel_bytes_per_socket: Option<f64>,
    /// Least-squares slope of RSS over the phase, bytes per minute.
    pub client_rss_growth_bytes_per_min: Option<f64>,
    pub server_rss_growth_bytes_per_min: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuFigures {
    pub generator_cpu_s: f64,
    pub server_cpu_s: Option<f64>,
    pub generator_cpu_us_per_request: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recovery {
    pub fault: String,
    /// Fault → ≥ 99 % of sessions re-established and answering; `None` = never recovered.
    pub recovery_s: Option<f64>,
    pub sessions_before: u64,
    pub sessions_restored: u64,
    /// Requests in flight at the fault, counted as lost.
    pub requests_lost: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacityStep {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub latency_us_p95: u64,
    pub error_rate_pct: f64,
    pub pass: bool,
    /// Why the step failed (the bound it broke).
    pub broke: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capacity {
    pub steps: Vec<CapacityStep>,
    /// The highest offered rate whose step passed.
    pub capacity_rps: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leak {
    pub server_rss_baseline_bytes: u64,
    pub server_rss_after_bytes: u64,
    pub sessions_deleted: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseReport {
    pub name: String,
    pub status: PhaseStatus,
    /// Seconds from the run's start.
    pub start_s: f64,
    pub duration_s: f64,
    pub sessions: Sessions,
    pub requests: Requests,
    pub offered_rps: Option<f64>,
    pub throughput_rps: f64,
    /// From the intended send time (coordinated-omission-free).
    pub latency_us: Percentiles,
    /// From the actual send time.
    pub latency_uncorrected_us: Percentiles,
    pub latency_us_by_method: BTreeMap<String, Percentiles>,
    pub connect_us: Percentiles,
    pub initialize_us: Percentiles,
    pub latency_spectrum_us: Vec<(f64, u64)>,
    pub errors_by_cause: BTreeMap<String, u64>,
    pub generator: GeneratorCheck,
    pub memory: Option<MemoryFigures>,
    pub cpu: Option<CpuFigures>,
    pub recovery: Option<Recovery>,
    pub capacity: Option<Capacity>,
    pub leak: Option<Leak>,
    /// The phase's merged corrected-latency histogram: HdrHistogram V2 + deflate, base64.
    pub histogram: Option<String>,
    /// A human note (why aborted, what the fault was, …).
    pub note: Option<String>,
}

impl PhaseReport {
    pub fn new(name: &str, status: PhaseStatus) -> PhaseReport {
        PhaseReport {
            name: name.to_string(),
            status,
            start_s: 0.0,
            duration_s: 0.0,
            sessions: Sessions::default(),
            requests: Requests::default(),
            offered_rps: None,
            throughput_rps: 0.0,
            latency_us: Percentiles::default(),
            latency_uncorrected_us: Percentiles::default(),
            latency_us_by_method: BTreeMap::new(),
            connect_us: Percentiles::default(),
            initialize_us: Percentiles::default(),
            latency_spectrum_us: Vec::new(),
            errors_by_cause: BTreeMap::new(),
            generator: GeneratorCheck {
                valid: true,
                ..GeneratorCheck::default()
            },
            memory: None,
            cpu: None,
            recovery: None,
            capacity: None,
            leak: None,
            histogram: None,
            note: None,
        }
    }
}

/// One point per second of the run, merged across shards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondSample {
    pub t_s: f64,
    pub phase: String,
    pub sessions_held: u64,
    pub throughput_rps: f64,
    pub errors: u64,
    pub latency_us_p50: u64,
    pub latency_us_p95: u64,
    pub latency_us_p99: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineInfo {
    pub cpus: usize,
    pub kernel: String,
    pub nofile_hard: u64,
    pub hostname: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub schema: String,
    pub mcpstorm_version: String,
    pub started_unix_s: u64,
    pub duration_s: f64,
    /// True when the run was interrupted: every figure covers only the time it ran.
    pub partial: bool,
    pub targets: Vec<String>,
    pub embedded_server: bool,
    pub connections: u64,
    pub machine: MachineInfo,
    pub phases: Vec<PhaseReport>,
    pub sla: Vec<sla::SlaRow>,
    pub verdict: sla::Verdict,
    pub series: Vec<SecondSample>,
}

impl RunReport {
    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// Exit code of the run: 0 every SLA passed, 1 one failed or a phase was INVALID (or the
    /// run was interrupted).
    pub fn exit_code(&self) -> u8 {
        if self.partial || self.verdict != sla::Verdict::Pass {
            1
        } else {
            0
        }
    }
}

/// Human formatting of microseconds: `850 µs`, `12.3 ms`, `1.20 s`.
pub fn format_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// `12,345` style counts.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_us(850), "850 µs");
        assert_eq!(format_us(12_345), "12.3 ms");
        assert_eq!(format_us(1_200_000), "1.20 s");
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(1234567), "1,234,567");
        assert_eq!(format_count(100), "100");
    }

    #[test]
    fn generator_judgement() {
        assert!(GeneratorCheck::judge(5, 1000, 200, 0, 0).valid);
        let late = GeneratorCheck::judge(20, 1000, 200, 0, 0);
        assert!(!late.valid);
        assert!(late.invalid_reason.unwrap().contains("2.00% of sends"));
        let lag = GeneratorCheck::judge(0, 1000, 20_000, 0, 0);
        assert!(lag.invalid_reason.unwrap().contains("loop lag p99 20000"));
        assert!(!GeneratorCheck::judge(0, 0, 0, 3, 0).valid);
    }

    #[test]
    fn error_rate() {
        assert_eq!(
            Requests {
                sent: 10,
                ok: 0,
                errors: 0,
                in_flight_at_end: 10
            }
            .error_rate_pct(),
            None
        );
        assert_eq!(
            Requests {
                sent: 1000,
                ok: 999,
                errors: 1,
                in_flight_at_end: 0
            }
            .error_rate_pct(),
            Some(0.1)
        );
    }
}
