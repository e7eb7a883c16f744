//! The report of a phased `mcpstorm run`: the structs below *are* the JSON schema
//! (schema/report.schema.json is checked against real output by a test), the SLA evaluation
//! (`sla.rs`), and the renderers (`text.rs`, `html.rs`). Part of `report/`: it formats and
//! judges figures the scenario measured; it never measures anything itself.

pub mod hist;
pub mod html;
pub mod merge;
pub mod sla;
pub mod text;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version tag of the JSON layout; bump on incompatible changes.
pub const SCHEMA_ID: &str = "mcpstorm.run/2";

/// The six phases, in order. Their names in JSON are exactly these.
pub const PHASE_NAMES: [&str; 6] = [
    "baseline",
    "ramp_up",
    "sustained",
    "failure_recovery",
    "performance",
    "cool_down",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Sessions {
    pub target: u64,
    pub established: u64,
    pub failed: u64,
    pub held_max: u64,
    /// Sessions established per second (initialize handshake included); ramp_up only.
    pub established_per_s: Option<f64>,
}

/// Every request a phase intended, accounted for: `offered = sent − probes + dropped`, and
/// each sent request is ok, an error, or in flight at the end.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Requests {
    /// Intended by the schedule (open model), or sent (closed loop).
    pub offered: u64,
    pub sent: u64,
    /// Sent outside the schedule: one request at once on each session back from a lost
    /// connection (recovery measures the server, not the session's turn).
    pub probes: u64,
    /// Offered but never sent, by cause (`no_idle_session`: the server had every session
    /// busy; `generator_behind`; `phase_ended`).
    pub dropped: u64,
    pub dropped_by_cause: BTreeMap<String, u64>,
    pub ok: u64,
    pub errors: u64,
    /// In flight when the phase ended (or at a fault): counted, never dropped silently. Their
    /// answers, if they come, are still this phase's.
    pub in_flight_at_end: u64,
    /// Age of the oldest of them, ms.
    pub in_flight_oldest_ms: Option<f64>,
}

impl Requests {
    /// Errors ÷ completed requests, in percent; `None` when nothing completed.
    pub fn error_rate_pct(&self) -> Option<f64> {
        let done = self.ok + self.errors;
        (done > 0).then(|| self.errors as f64 * 100.0 / done as f64)
    }
}

/// The server could not carry the offered load: requests fell due while every session had
/// one in flight. Judged on the server's figures (the SLA rows FAIL), never INVALID.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Saturation {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub dropped_no_idle_session: u64,
    /// Dropped (no idle session) ÷ offered, percent.
    pub dropped_pct: f64,
}

impl Saturation {
    /// A phase is saturated when more than this share of its offered requests found no idle
    /// session.
    pub const DROPPED_PCT_MAX: f64 = 1.0;
}

/// The generator's own health: a phase where it fell behind is INVALID, never PASS.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct GeneratorCheck {
    /// Scheduled sends later than `late_threshold_us` while a session was idle to take them.
    pub late_sends: u64,
    /// Late sends ÷ sends, percent.
    pub late_sends_pct: f64,
    /// How late counts as late: 1 ms, or a tenth of the phase's median latency when that is
    /// more (a 2 ms hiccup does not distort a 30 ms measurement; it does a 200 µs one).
    pub late_threshold_us: u64,
    pub loop_lag_us_p99: u64,
    pub cq_overflows: u64,
    pub sq_backlog_max: u64,
    pub valid: bool,
    /// Why the phase is INVALID, when it is.
    pub invalid_reason: Option<String>,
    /// CPU time the host's hypervisor gave to other guests over the phase (/proc/stat
    /// `steal`), percent of all CPU time: a generator late for want of CPU it never got.
    #[serde(default)]
    pub host_steal_pct: Option<f64>,
}

impl GeneratorCheck {
    /// Late sends above 2.5 % or a loop lag p99 above 10 ms make a phase INVALID. 2.5 % is half
    /// the tail the judged p95 leaves: fewer late sends cannot move it (each adds at most its
    /// lateness to its own request's corrected latency), though they may reach the p99. A
    /// generator sharing its CPUs with the server under test (this machine's 2 CPUs) sends
    /// 1–2 % of its requests 1–2 ms late from scheduling alone.
    pub const LATE_SENDS_PCT_MAX: f64 = 2.5;
    pub const LOOP_LAG_US_P99_MAX: u64 = 10_000;
    /// Steal from which an INVALID phase names the host as the likely cause.
    pub const HOST_STEAL_PCT_NOTED: f64 = 5.0;

    /// Records the host's steal over the phase; an INVALID phase with much of it says so.
    pub fn note_host_steal(&mut self, host_steal_pct: Option<f64>) {
        self.host_steal_pct = host_steal_pct;
        if let (Some(pct), Some(reason)) = (host_steal_pct, &mut self.invalid_reason)
            && pct >= Self::HOST_STEAL_PCT_NOTED
        {
            reason.push_str(&format!(
                "; the host's hypervisor took {pct:.1}% of the CPU time (steal): the generator was short of CPU, not slowed by the server"
            ));
        }
    }

    pub fn judge(
        late_sends: u64,
        sends: u64,
        loop_lag_us_p99: u64,
        cq_overflows: u64,
        sq_backlog_max: u64,
    ) -> GeneratorCheck {
        Self::judge_with_threshold(
            late_sends,
            sends,
            Self::LATE_US_MIN,
            loop_lag_us_p99,
            cq_overflows,
            sq_backlog_max,
        )
    }

    /// The least lateness that counts as late, µs.
    pub const LATE_US_MIN: u64 = 1_000;

    /// The late-send threshold of a phase whose median latency is `latency_us_p50`.
    pub fn late_threshold_us(latency_us_p50: u64) -> u64 {
        Self::LATE_US_MIN.max(latency_us_p50 / 10)
    }

    /// `judge` with late sends counted against `late_threshold_us`.
    pub fn judge_with_threshold(
        late_sends: u64,
        sends: u64,
        late_threshold_us: u64,
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
                "{late_sends_pct:.2}% of sends were > {} late (bound {} %)",
                format_us(late_threshold_us),
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
            late_threshold_us,
            loop_lag_us_p99,
            cq_overflows,
            sq_backlog_max,
            valid: reasons.is_empty(),
            invalid_reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
            host_steal_pct: None,
        }
    }
}

/// Memory per connection. `*_user_bytes_per_conn` is the marginal figure: RSS growth over
/// the ramp ÷ sessions held (it misses what was sized for N before the ramp: rings, slabs,
/// tables). `*_total_bytes_per_conn` counts everything holding N costs: RSS at full hold minus
/// the RSS of the same program before it sized anything for N (this process at start; for the
/// embedded server, the same server started with no connection capacity). `*_peak_*` is the
/// high-water mark (VmHWM) on the same base: what a host must have, transient buffers of the
/// ramp included.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct MemoryFigures {
    pub client_user_bytes_per_conn: Option<f64>,
    pub client_total_bytes_per_conn: Option<f64>,
    pub client_peak_bytes_per_conn: Option<f64>,
    /// Embedded server child or `--server-pid`; `None` when not measurable.
    pub server_user_bytes_per_conn: Option<f64>,
    /// Embedded server only (an external server's unsized RSS is not known).
    pub server_total_bytes_per_conn: Option<f64>,
    pub server_peak_bytes_per_conn: Option<f64>,
    pub kernel_bytes_per_socket: Option<f64>,
    /// Least-squares slope of RSS over the phase, bytes per minute.
    pub client_rss_growth_bytes_per_min: Option<f64>,
    pub server_rss_growth_bytes_per_min: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct CpuFigures {
    pub generator_cpu_s: f64,
    pub server_cpu_s: Option<f64>,
    pub generator_cpu_us_per_request: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Recovery {
    pub fault: String,
    /// Fault → ≥ 99 % of sessions answering again, after the last moment fewer did; `None` =
    /// never recovered.
    pub recovery_s: Option<f64>,
    pub sessions_before: u64,
    pub sessions_restored: u64,
    /// Requests in flight on connections that broke, counted as lost.
    pub requests_lost: u64,
    /// A session answers when its last request succeeded after the fault and none is stalled
    /// longer than this on it, ms.
    pub stall_after_ms: f64,
    pub curve: RecoveryCurve,
    /// Host TCP counters over the phase (deltas of /proc/net/netstat and /proc/net/snmp; the
    /// whole network namespace, not only this run): what limited a slow recovery.
    pub kernel_tcp: BTreeMap<String, u64>,
    /// The fault's span and what it did to the requests and connections in it.
    #[serde(default)]
    pub effects: Option<FaultEffects>,
    /// Replicas (`--failover`, `--replicas N`): where the failed replica's sessions went, how
    /// fast, and each replica's load before and after.
    #[serde(default)]
    pub failover: Option<FailoverReport>,
    /// `--streams`: streams held when the fault struck, and fault → all of them held again,
    /// seconds (`None`: not within --recovery-timeout, or no stream).
    #[serde(default)]
    pub streams_before: u64,
    #[serde(default)]
    pub streams_back_s: Option<f64>,
}

/// Replica failover over failure_recovery: sessions of a replica that failed move to the
/// others (a new session each) and answer there.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct FailoverReport {
    /// `round-robin` or `least-loaded`.
    pub policy: String,
    /// Replicas (numbered from 1) whose sessions moved away during the phase: the killed one,
    /// or those refusing or timing out connects.
    pub failed_replicas: Vec<usize>,
    /// Sessions held on those replicas when the fault struck.
    pub sessions_on_failed: u64,
    /// Held sessions that moved to another replica during the phase.
    pub sessions_failed_over: u64,
    /// Of those, sessions that answered a request on their new replica.
    pub sessions_answering_elsewhere: u64,
    /// Fault → 99 % of `sessions_on_failed` answering on another replica, seconds; `None` =
    /// not reached within --recovery-timeout.
    pub failover_s: Option<f64>,
    /// The failed-over sessions answering elsewhere, counted up from the fault (50/90/99 %
    /// of `sessions_on_failed`).
    pub curve: RecoveryCurve,
    pub replicas: Vec<ReplicaLoad>,
}

/// One replica's share of the service before the fault and after the failover.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ReplicaLoad {
    /// Numbered from 1, in the order the URLs were given (or the embedded replicas started).
    pub replica: usize,
    pub urls: Vec<String>,
    /// Sessions held there when the fault struck, and at the end of the phase.
    pub sessions_at_fault: u64,
    pub sessions_after: u64,
    /// Load requests it answered per second over the second before the fault, and over the
    /// last second of the phase (after recovery).
    pub answered_per_s_before: f64,
    pub answered_per_s_after: f64,
    /// Sessions that moved away from it during the phase.
    pub sessions_moved_away: u64,
}

/// What happened while the fault was on and after it was over.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct FaultEffects {
    /// Fault → its end (a partition healed, a latency or loss removed, the server started
    /// again, the command done, a killed replica's sessions answering elsewhere), seconds.
    pub heal_s: f64,
    /// The way back counted from the heal (seconds from the heal).
    pub from_heal: RecoveryCurve,
    /// Requests in flight while the fault was on (sent before it healed), by how they ended.
    pub requests_in_fault: FaultRequests,
    /// Held sessions' connections that broke while the fault was on (each reconnected).
    pub connections_broken: u64,
    /// Sessions answering before the fault whose connection survived it: at least this many
    /// (a session whose connection broke twice is counted twice among the broken).
    pub connections_survived_min: u64,
    /// The phase's figures before the fault, while it was on, and after it (drain included).
    pub before: WindowFigures,
    pub during: WindowFigures,
    pub after: WindowFigures,
    /// A partition, latency or loss: what the guard installed.
    pub network: Option<NetworkFaultReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FaultRequests {
    pub answered_during: u64,
    /// Answered after the heal: stalled through the fault and came back late.
    pub answered_after_heal: u64,
    pub timed_out: u64,
    /// Lost with their connection (reset, closed).
    pub connection_lost: u64,
    pub failed_other: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WindowFigures {
    /// Requests answered successfully / failed whose answer or failure fell in the window.
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub latency_us: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct NetworkFaultReport {
    pub injected: String,
    /// Every target address:port whose traffic the fault touched (nothing else was).
    pub addresses: Vec<String>,
    pub mechanism: String,
    /// How long the rules were in the kernel, seconds (from installed to removed).
    pub installed_s: f64,
    /// What the guard's line did with the packets to the targets: delayed (latency), the
    /// most held at once, dropped (partition, loss), let through at once (a loss's rest).
    pub packets_delayed: Option<u64>,
    pub packets_held_max: Option<u64>,
    #[serde(default)]
    pub packets_dropped: Option<u64>,
    #[serde(default)]
    pub packets_passed: Option<u64>,
}

/// How the sessions came back after the fault, seconds from the fault.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct RecoveryCurve {
    /// The first success of a request sent after the fault.
    pub first_success_s: Option<f64>,
    /// Fewest sessions answering at any sample after the fault.
    pub answering_min: u64,
    pub to_50pct_s: Option<f64>,
    pub to_90pct_s: Option<f64>,
    pub to_99pct_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CapacityStep {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub latency_us_p95: u64,
    pub error_rate_pct: f64,
    pub pass: bool,
    /// Why the step failed (the bound it broke).
    pub broke: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Capacity {
    pub steps: Vec<CapacityStep>,
    /// The highest offered rate whose step passed.
    pub capacity_rps: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Leak {
    pub server_rss_baseline_bytes: u64,
    pub server_rss_after_bytes: u64,
    pub sessions_deleted: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
    /// Failed requests per load entry of the mix (same keys; entries without failures left
    /// out): answers by error cause and requests lost with their connection.
    pub errors_by_method: BTreeMap<String, u64>,
    pub connect_us: Percentiles,
    /// TCP connected → TLS handshake done (`https://` only).
    pub tls_handshake_us: Percentiles,
    /// TLS handshakes in this phase: full, and resumed from a session ticket.
    pub tls_handshakes_full: u64,
    pub tls_handshakes_resumed: u64,
    pub initialize_us: Percentiles,
    pub latency_spectrum_us: Vec<(f64, u64)>,
    pub errors_by_cause: BTreeMap<String, u64>,
    pub generator: GeneratorCheck,
    pub memory: Option<MemoryFigures>,
    pub cpu: Option<CpuFigures>,
    pub recovery: Option<Recovery>,
    pub capacity: Option<Capacity>,
    pub leak: Option<Leak>,
    /// Set when the server could not carry the offered load (see `Saturation`).
    pub saturation: Option<Saturation>,
    /// How the offered load was chosen (e.g. derived from a probe of what the server carries).
    pub offered_from: Option<String>,
    /// Closed loop with at most this many requests in flight (the baseline runs with 1).
    pub in_flight_max: Option<u64>,
    /// ramp_up: the closed-loop probe of what the server carries, run after the ramp when no
    /// --rate was given (its requests are in no other phase).
    pub rate_probe: Option<RateProbe>,
    /// The phase's merged corrected-latency histogram: HdrHistogram V2 + deflate, base64.
    pub histogram: Option<String>,
    /// A human note (why aborted, what the fault was, …).
    pub note: Option<String>,
    /// `--streams`: the sessions' server-to-client streams in this phase.
    #[serde(default)]
    pub streams: Option<StreamsReport>,
    /// Server-to-client requests in this phase and the client's answers (absent when the
    /// server sent none).
    #[serde(default)]
    pub server_requests: Option<ServerRequestsReport>,
    /// Every other latency histogram of the phase (HdrHistogram V2 + deflate, base64), by
    /// figure: `latency_uncorrected`, `connect`, `initialize`, `tls_handshake`,
    /// `notification`, `client_reply`, `method:LABEL` — so `mcpstorm merge` adds segments
    /// exactly instead of averaging percentiles.
    #[serde(default)]
    pub histograms: BTreeMap<String, String>,
}

/// Server-to-client requests (`ping`, `roots/list`, `sampling/createMessage`,
/// `elicitation/create`, …) — on a session's stream or on a POST's response stream — and the
/// client's answers (`--client-reply`), each POSTed on its ring's reply connection.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ServerRequestsReport {
    /// Requests received (`on_streams + on_responses`).
    pub received: u64,
    /// Of those, on a `--streams` stream.
    pub on_streams: u64,
    /// Of those, on the event stream of a POST's response (the call waits for the answer).
    pub on_responses: u64,
    pub by_method: BTreeMap<String, u64>,
    /// Answers POSTed, second tries included.
    pub replies_sent: u64,
    /// Answers the server took (2xx).
    pub replies_accepted: u64,
    /// Answers the server answered with another status.
    pub replies_refused: u64,
    /// Answers never taken (lost twice with their connection, past the queue's bound, or
    /// still waiting at the end of the run).
    pub replies_lost: u64,
    /// Reply-connection failures by cause (connect, tls, timeout, reset, response).
    pub reply_errors_by_cause: BTreeMap<String, u64>,
    /// Request received → the server took the answer (2xx): the client's share of the
    /// round trip the server waits on.
    pub reply_latency_us: Percentiles,
}

/// `--streams`: each chosen session's server-to-client stream (GET, or
/// `subscriptions/listen`), held on a connection of its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct StreamsReport {
    /// Streams the plan opens (the sessions' share); absent per phase.
    pub planned: Option<u64>,
    /// Most streams open at once.
    pub held: u64,
    /// Streams the server accepted (200 `text/event-stream`), reopens included.
    pub opened: u64,
    /// Of those, opened again after an earlier stream of the session ended.
    pub reopened: u64,
    /// Failed opens and broken streams, each reopened after a backoff while the run loads.
    pub failed: u64,
    pub failed_by_cause: BTreeMap<String, u64>,
    /// The server offers no stream (405): none is retried.
    pub not_offered: u64,
    /// Streams the server ended in order (reopened after its `retry:`).
    pub ended_by_server: u64,
    pub notifications_received: u64,
    pub notifications_by_method: BTreeMap<String, u64>,
    /// Server send time (`_meta["mcpstorm/sentAtUs"]`, UNIX µs) → received, of the
    /// notifications stamped with it: the fan-out latency (both clocks must agree: same
    /// host, or synchronized).
    pub notification_latency_us: Percentiles,
    /// Server-to-client requests that came on the streams (ping, roots/list, sampling,
    /// elicitation); their answers are in `server_requests`.
    pub requests_received: u64,
    /// The fan-out latency histogram: HdrHistogram V2 + deflate, base64.
    pub notification_histogram: Option<String>,
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
            errors_by_method: BTreeMap::new(),
            connect_us: Percentiles::default(),
            tls_handshake_us: Percentiles::default(),
            tls_handshakes_full: 0,
            tls_handshakes_resumed: 0,
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
            saturation: None,
            offered_from: None,
            in_flight_max: None,
            rate_probe: None,
            histogram: None,
            note: None,
            streams: None,
            server_requests: None,
            histograms: BTreeMap::new(),
        }
    }
}

/// A short closed-loop load over the held sessions: what the server carries.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RateProbe {
    pub duration_s: f64,
    pub in_flight_max: u64,
    pub requests: Requests,
    pub achieved_rps: f64,
    pub latency_us: Percentiles,
}

/// One point per second of the run, merged across shards.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SecondSample {
    pub t_s: f64,
    pub phase: String,
    pub sessions_held: u64,
    /// Held sessions that are answering: not down after a lost connection, no request
    /// stalled (see `Recovery::stall_after_ms`).
    pub sessions_answering: u64,
    pub throughput_rps: f64,
    pub errors: u64,
    pub latency_us_p50: u64,
    pub latency_us_p95: u64,
    pub latency_us_p99: u64,
    /// `--streams`: streams open at the second's end, notifications received in it, and the
    /// p99 fan-out latency of those stamped with their send time (0: none).
    #[serde(default)]
    pub streams_held: u64,
    #[serde(default)]
    pub notifications: u64,
    #[serde(default)]
    pub notification_latency_us_p99: u64,
}

/// One segment of a run split over several processes (`--segment I/N`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SegmentInfo {
    /// 0-based.
    pub index: u32,
    pub count: u32,
    /// The whole run's `--connections` (this segment holds its share: `connections`).
    pub run_connections: u64,
    /// `--start-at`, UNIX ms.
    pub start_at_unix_ms: Option<u64>,
    /// When this segment's phases began, UNIX ms (its host's clock).
    pub started_unix_ms: u64,
    /// How late after `--start-at` it began (it was started after the common start:
    /// rescheduled, restarted by its engine, or slow to come up), ms.
    pub late_ms: Option<u64>,
    pub host: String,
    /// `--clock-ref`: the reference clock, and this host's offset from it (reference − this
    /// host, ms) over the shortest round trip of its probes (the offset's error is at most
    /// half of it). `None` offset: the reference did not answer before the start.
    #[serde(default)]
    pub clock_reference: Option<String>,
    #[serde(default)]
    pub clock_offset_ms: Option<f64>,
    #[serde(default)]
    pub clock_rtt_ms: Option<f64>,
}

/// A segment in a merged report: who it was and what it did, beside the merged figures.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SegmentRow {
    #[serde(flatten)]
    pub segment: SegmentInfo,
    /// Its start after the earliest segment's, ms: on the reference clock when every segment
    /// measured its offset (`--clock-ref`), else on the hosts' clocks as they are.
    pub start_offset_ms: u64,
    pub sessions_established: u64,
    pub sessions_failed: u64,
    pub verdict: sla::Verdict,
    pub partial: bool,
    pub phases: Vec<SegmentPhaseRow>,
}

/// The segments of `rows`' run that have no row (their share is not in the figures).
pub fn missing_segments(rows: &[SegmentRow]) -> Vec<u32> {
    let count = rows.first().map_or(0, |r| r.segment.count);
    (0..count)
        .filter(|i| !rows.iter().any(|r| r.segment.index == *i))
        .collect()
}

/// One phase of one segment, in a merged report.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SegmentPhaseRow {
    pub name: String,
    pub status: PhaseStatus,
    pub start_s: f64,
    pub duration_s: f64,
    pub throughput_rps: Option<f64>,
    pub latency_us_p99: u64,
    pub late_sends_pct: f64,
    pub generator_valid: bool,
    /// The segment's own note on the phase (why aborted, what the fault did, …).
    pub note: Option<String>,
}

/// How the engine was laid out for the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct EngineInfo {
    pub shards: usize,
    pub rings: usize,
    /// Bytes of one connection slot in the shards' slab.
    pub conn_slot_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MachineInfo {
    pub cpus: usize,
    pub kernel: String,
    pub nofile_hard: u64,
    pub hostname: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EndpointReport {
    /// The URL as given.
    pub url: String,
    /// Scheme, Host header and request target as sent.
    pub endpoint: String,
    pub addresses: Vec<AddressReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AddressReport {
    pub address: String,
    /// Connections planned to this address (they are spread round-robin over all addresses).
    pub connections: u64,
}

/// One entry of the load mix.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MixEntryReport {
    /// `METHOD` or `METHOD TARGET` as written, e.g. `tools/call search` (the key of the
    /// entry's latency in `latency_us_by_method`).
    pub entry: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunReport {
    pub schema: String,
    pub mcpstorm_version: String,
    pub started_unix_s: u64,
    pub duration_s: f64,
    /// True when the run was interrupted: every figure covers only the time it ran.
    pub partial: bool,
    pub targets: Vec<String>,
    /// Each target URL: the endpoint requested, every address it resolved to (`--resolve`
    /// applied) and the connections planned to each.
    pub endpoints: Vec<EndpointReport>,
    /// Extra request headers (`-H`, `--header-env`), secret values redacted.
    pub headers: Vec<String>,
    /// `https://`: how the server's certificate was checked (`system roots`, `--cacert FILE`,
    /// or `--insecure: NOT verified`); absent for http://.
    pub tls: Option<String>,
    /// The load mix: each entry's label (method and target as written) and weight.
    pub mix: Vec<MixEntryReport>,
    /// Seed of the generated values and random choices (`--seed` repeats the run's requests).
    pub seed: u64,
    pub embedded_server: bool,
    pub connections: u64,
    pub machine: MachineInfo,
    pub phases: Vec<PhaseReport>,
    pub sla: Vec<sla::SlaRow>,
    pub verdict: sla::Verdict,
    pub series: Vec<SecondSample>,
    /// Sessions over the whole run, counted by the shards (established = connections that got
    /// their first session; failed = those that ended without one).
    pub sessions: Sessions,
    /// Every error cause over the whole run (each phase has its own too).
    pub errors_by_cause: BTreeMap<String, u64>,
    /// Every engine counter over the whole run: the figures behind the phases'.
    pub counters: BTreeMap<String, u64>,
    pub engine: EngineInfo,
    /// `--streams`: the streams over the whole run (absent when off).
    #[serde(default)]
    pub streams: Option<StreamsReport>,
    /// Server-to-client requests over the whole run (absent when the server sent none).
    #[serde(default)]
    pub server_requests: Option<ServerRequestsReport>,
    /// `--segment I/N` (or `--start-at`): this report is one segment of a run split over
    /// several processes, for `mcpstorm merge`.
    #[serde(default)]
    pub segment: Option<SegmentInfo>,
    /// A merged report (`mcpstorm merge`): the segments it adds up, one row each, by index.
    #[serde(default)]
    pub merged_from: Option<Vec<SegmentRow>>,
    /// What discovery at baseline did before the first phase (absent with `--no-discovery`):
    /// its session and requests reach the server but are in no phase's figures.
    pub discovery: Option<DiscoveryReport>,
    /// Set when nothing could be measured (no session in the baseline: the target is not
    /// there or not MCP): the reason. The run exits 2; the report shows what was tried.
    pub could_not_run: Option<String>,
}

/// Discovery at baseline: one session that lists the server's surface before any load.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct DiscoveryReport {
    /// Sessions it opened (0 on the sessionless 2026-07-28 wire).
    pub sessions: u64,
    /// HTTP requests it sent (initialize, lists and their pages, DELETE).
    pub requests: u64,
    /// What the server lists, or why discovery was skipped (the run then went on without it).
    pub outcome: String,
    /// Tools whose `x-mcp-header` arguments the run mirrors into `Mcp-Param-*` headers.
    pub mirrored_tools: Vec<String>,
}

impl RunReport {
    /// The JSON Schema of the report, generated from these structs (committed as
    /// schema/report.schema.json; a test keeps the two equal).
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(RunReport);
        serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
    }

    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// Exit code of the run: 0 every SLA passed, 1 one failed or a phase was INVALID (or the
    /// run was interrupted), 2 nothing could be measured.
    pub fn exit_code(&self) -> u8 {
        // A segment's SLA is judged on the merged run (`mcpstorm merge`), not on its share:
        // an engine that restarts failed segments must not rerun one for the run's verdict.
        let judged = self.segment.as_ref().is_none_or(|s| s.count <= 1);
        if self.could_not_run.is_some() {
            2
        } else if self.partial || (judged && self.verdict != sla::Verdict::Pass) {
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
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
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
        assert!(GeneratorCheck::judge(25, 1000, 200, 0, 0).valid);
        let late = GeneratorCheck::judge(30, 1000, 200, 0, 0);
        assert!(!late.valid);
        assert!(
            late.invalid_reason
                .unwrap()
                .contains("3.00% of sends were > 1.0 ms late")
        );
        assert_eq!(GeneratorCheck::late_threshold_us(300), 1_000);
        assert_eq!(GeneratorCheck::late_threshold_us(30_000), 3_000);
        let relative = GeneratorCheck::judge_with_threshold(30, 1000, 3_000, 200, 0, 0);
        assert!(relative.invalid_reason.unwrap().contains("> 3.0 ms late"));
        let lag = GeneratorCheck::judge(0, 1000, 20_000, 0, 0);
        assert!(lag.invalid_reason.unwrap().contains("loop lag p99 20000"));
        assert!(!GeneratorCheck::judge(0, 0, 0, 3, 0).valid);
    }

    #[test]
    fn error_rate() {
        assert_eq!(
            Requests {
                sent: 10,
                in_flight_at_end: 10,
                ..Requests::default()
            }
            .error_rate_pct(),
            None
        );
        assert_eq!(
            Requests {
                sent: 1000,
                ok: 999,
                errors: 1,
                ..Requests::default()
            }
            .error_rate_pct(),
            Some(0.1)
        );
    }
}

/// A complete synthetic report for renderer and schema tests (every optional block filled).
#[doc(hidden)]
pub fn sample_report() -> RunReport {
    let mut phases = Vec::new();
    let mut t = 0.0;
    for (i, name) in PHASE_NAMES.iter().enumerate() {
        let mut p = PhaseReport::new(name, PhaseStatus::Completed);
        p.start_s = t;
        p.duration_s = 10.0;
        t += 10.0;
        p.sessions = Sessions {
            target: 1000,
            established: 1000,
            failed: 0,
            held_max: 1000,
            established_per_s: (i == 1).then_some(20_000.0),
        };
        p.requests = Requests {
            offered: 100_000,
            sent: 100_000,
            ok: 99_990,
            errors: 10,
            ..Requests::default()
        };
        p.offered_rps = Some(10_000.0);
        p.throughput_rps = 10_500.0;
        p.latency_us = Percentiles {
            count: 100_000,
            p50: 300,
            p95: 900,
            p99: 2_000,
            max: 9_000,
        };
        p.latency_uncorrected_us = p.latency_us;
        p.latency_us_by_method
            .insert("tools/call".into(), p.latency_us);
        p.latency_spectrum_us = SPECTRUM_QUANTILES
            .iter()
            .enumerate()
            .map(|(k, q)| (*q, 100 * (k as u64 + 1)))
            .collect();
        p.errors_by_cause.insert("http_503".into(), 10);
        p.generator = GeneratorCheck::judge(10, 100_000, 300, 0, 0);
        p.memory = Some(MemoryFigures {
            client_user_bytes_per_conn: Some(120.0),
            client_total_bytes_per_conn: Some(300.0),
            client_peak_bytes_per_conn: Some(700.0),
            server_user_bytes_per_conn: Some(70.0),
            server_total_bytes_per_conn: Some(200.0),
            server_peak_bytes_per_conn: Some(250.0),
            kernel_bytes_per_socket: Some(4800.0),
            client_rss_growth_bytes_per_min: Some(0.0),
            server_rss_growth_bytes_per_min: Some(10.0),
        });
        p.cpu = Some(CpuFigures {
            generator_cpu_s: 3.0,
            server_cpu_s: Some(4.0),
            generator_cpu_us_per_request: Some(30.0),
        });
        if *name == "failure_recovery" {
            p.recovery = Some(Recovery {
                fault: "restart".into(),
                recovery_s: Some(1.2),
                sessions_before: 1000,
                sessions_restored: 1000,
                requests_lost: 4,
                stall_after_ms: 100.0,
                curve: RecoveryCurve {
                    first_success_s: Some(1.0),
                    answering_min: 0,
                    to_50pct_s: Some(1.1),
                    to_90pct_s: Some(1.15),
                    to_99pct_s: Some(1.2),
                },
                kernel_tcp: BTreeMap::from([("TcpExt.ListenOverflows".to_string(), 3)]),
                effects: Some(FaultEffects {
                    heal_s: 3.0,
                    from_heal: RecoveryCurve {
                        first_success_s: Some(0.2),
                        answering_min: 0,
                        to_50pct_s: Some(0.2),
                        to_90pct_s: Some(0.4),
                        to_99pct_s: Some(1.2),
                    },
                    requests_in_fault: FaultRequests {
                        answered_during: 10,
                        answered_after_heal: 900,
                        timed_out: 5,
                        connection_lost: 0,
                        failed_other: 1,
                    },
                    connections_broken: 5,
                    connections_survived_min: 995,
                    before: WindowFigures {
                        requests_ok: 1000,
                        requests_failed: 0,
                        latency_us: Percentiles {
                            count: 1000,
                            p50: 900,
                            p95: 1500,
                            p99: 2000,
                            max: 3000,
                        },
                    },
                    during: WindowFigures::default(),
                    after: WindowFigures::default(),
                    network: Some(NetworkFaultReport {
                        injected: "partition".into(),
                        addresses: vec!["10.0.0.2:8080".into()],
                        mechanism: "nftables".into(),
                        installed_s: 3.0,
                        packets_delayed: Some(0),
                        packets_held_max: Some(0),
                        packets_dropped: Some(120),
                        packets_passed: Some(0),
                    }),
                }),
                failover: Some(FailoverReport {
                    policy: "round-robin".into(),
                    failed_replicas: vec![2],
                    sessions_on_failed: 333,
                    sessions_failed_over: 333,
                    sessions_answering_elsewhere: 333,
                    failover_s: Some(0.42),
                    curve: RecoveryCurve {
                        first_success_s: None,
                        answering_min: 0,
                        to_50pct_s: Some(0.1),
                        to_90pct_s: Some(0.3),
                        to_99pct_s: Some(0.42),
                    },
                    replicas: (1..=3)
                        .map(|k| ReplicaLoad {
                            replica: k,
                            urls: vec![format!("http://127.0.0.1:900{k}/mcp")],
                            sessions_at_fault: 333,
                            sessions_after: if k == 2 { 0 } else { 500 },
                            answered_per_s_before: 3333.0,
                            answered_per_s_after: if k == 2 { 0.0 } else { 5000.0 },
                            sessions_moved_away: if k == 2 { 333 } else { 0 },
                        })
                        .collect(),
                }),
                streams_before: 1000,
                streams_back_s: Some(1.4),
            });
        }
        if *name == "performance" {
            p.capacity = Some(Capacity {
                steps: vec![
                    CapacityStep {
                        offered_rps: 10_000.0,
                        achieved_rps: 9_990.0,
                        latency_us_p95: 900,
                        error_rate_pct: 0.0,
                        pass: true,
                        broke: None,
                    },
                    CapacityStep {
                        offered_rps: 15_000.0,
                        achieved_rps: 11_000.0,
                        latency_us_p95: 250_000,
                        error_rate_pct: 0.0,
                        pass: false,
                        broke: Some("p95 250.0 ms ≥ 100.0 ms".into()),
                    },
                ],
                capacity_rps: Some(10_000.0),
            });
        }
        if *name == "cool_down" {
            p.leak = Some(Leak {
                server_rss_baseline_bytes: 50 << 20,
                server_rss_after_bytes: 51 << 20,
                sessions_deleted: 1000,
            });
        }
        let mut h =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        h.record(300).expect("in range");
        p.histogram = hist::encode(&h).ok();
        p.note = Some(format!("<{name}> & notes are escaped"));
        phases.push(p);
    }
    let series = (0..60)
        .map(|s| SecondSample {
            t_s: s as f64,
            phase: PHASE_NAMES[(s / 10) as usize].into(),
            sessions_held: 1000,
            sessions_answering: 1000 - (s % 10 == 3) as u64 * 500,
            throughput_rps: 10_000.0,
            errors: (s % 7 == 0) as u64,
            latency_us_p50: 300,
            latency_us_p95: 900,
            latency_us_p99: 2000 + s * 10,
            streams_held: 1000,
            notifications: 1000,
            notification_latency_us_p99: 800 + s,
        })
        .collect();
    let sla = sla::evaluate(&sla::SlaSpec::default(), &phases);
    let verdict = sla::overall(&sla);
    RunReport {
        schema: SCHEMA_ID.into(),
        mcpstorm_version: env!("CARGO_PKG_VERSION").into(),
        started_unix_s: 1_790_000_000,
        duration_s: 60.0,
        partial: false,
        targets: vec!["http://127.0.0.1:8080/mcp".into()],
        endpoints: vec![EndpointReport {
            url: "http://127.0.0.1:8080/mcp".into(),
            endpoint: "http://127.0.0.1:8080/mcp".into(),
            addresses: vec![AddressReport {
                address: "127.0.0.1:8080".into(),
                connections: 1000,
            }],
        }],
        headers: Vec::new(),
        tls: None,
        mix: vec![MixEntryReport {
            entry: "ping".into(),
            weight: 1,
        }],
        seed: 1,
        embedded_server: true,
        connections: 1000,
        machine: MachineInfo {
            cpus: 2,
            kernel: "6.18".into(),
            nofile_hard: 20_000,
            hostname: "test".into(),
        },
        phases,
        sla,
        verdict,
        series,
        sessions: Sessions {
            target: 1000,
            established: 1000,
            failed: 0,
            held_max: 1000,
            established_per_s: Some(20_000.0),
        },
        errors_by_cause: BTreeMap::from([("http_503".to_string(), 60)]),
        counters: BTreeMap::from([("requests_ok".to_string(), 599_940)]),
        engine: EngineInfo {
            shards: 2,
            rings: 2,
            conn_slot_bytes: 104,
        },
        segment: None,
        merged_from: None,
        server_requests: Some(ServerRequestsReport {
            received: 12,
            on_streams: 2,
            on_responses: 10,
            by_method: [
                ("sampling/createMessage".to_string(), 10),
                ("ping".to_string(), 2),
            ]
            .into_iter()
            .collect(),
            replies_sent: 13,
            replies_accepted: 11,
            replies_refused: 0,
            replies_lost: 1,
            reply_errors_by_cause: [("reset".to_string(), 2)].into_iter().collect(),
            reply_latency_us: Percentiles {
                count: 11,
                p50: 90,
                p95: 300,
                p99: 400,
                max: 410,
            },
        }),
        streams: Some(StreamsReport {
            planned: Some(1000),
            held: 1000,
            opened: 1010,
            reopened: 10,
            failed: 10,
            failed_by_cause: BTreeMap::from([("reset".to_string(), 10)]),
            not_offered: 0,
            ended_by_server: 0,
            notifications_received: 60_000,
            notifications_by_method: BTreeMap::from([(
                "notifications/message".to_string(),
                60_000,
            )]),
            notification_latency_us: Percentiles {
                count: 60_000,
                p50: 400,
                p95: 700,
                p99: 800,
                max: 1200,
            },
            requests_received: 0,
            notification_histogram: None,
        }),
        discovery: Some(DiscoveryReport {
            sessions: 1,
            requests: 6,
            outcome: "the server lists 3 tools, 2 resources, 1 resource template, 2 prompts".into(),
            mirrored_tools: vec![],
        }),
        could_not_run: None,
    }
}

#[cfg(test)]
mod render_tests {
    use super::*;

    /// Tag balance of the HTML we emit (void and self-closed elements aside).
    fn assert_well_formed(html: &str) {
        const VOID: [&str; 2] = ["meta", "br"];
        let mut stack: Vec<String> = Vec::new();
        let mut rest = html;
        while let Some(open) = rest.find('<') {
            rest = &rest[open + 1..];
            let close = rest.find('>').expect("unterminated tag");
            let tag = &rest[..close];
            rest = &rest[close + 1..];
            if tag.starts_with('!') {
                continue;
            }
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if tag.starts_with('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.as_str()),
                    "mismatched </{name}>"
                );
            } else if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    #[test]
    fn html_is_self_contained_and_well_formed() {
        let report = sample_report();
        let html = html::render(&report);
        if let Some(path) = std::env::var_os("MCPSTORM_WRITE_SAMPLE_HTML") {
            std::fs::write(path, &html).unwrap();
        }
        assert_well_formed(&html);
        assert!(!html.contains("<script"), "no JavaScript");
        assert!(!html.contains("http://") || html.matches("http://").all(|_| true));
        assert!(
            !html.contains("src=\"http") && !html.contains("href=\"http"),
            "no network resources"
        );
        assert_eq!(
            html.matches("<svg").count(),
            6,
            "sessions, throughput, latency, spectrum, streams held, fan-out latency"
        );
        assert!(html.contains("&lt;performance&gt; &amp; notes are escaped"));
        assert!(html.contains("capacity: 10000 req/s"));
    }

    #[test]
    fn text_has_phase_rows_sla_and_generator() {
        let text = text::render(&sample_report());
        for name in PHASE_NAMES {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name} row");
        }
        assert!(text.contains("p95_latency"));
        assert!(text.contains("generator self-check"));
        assert!(text.contains("fault restart: 1,000 of 1,000 sessions back; recovery 1.20 s; 4 requests in flight lost"));
        // 10 errors of 100,000 = 0.01 % < 0.05 %: every SLA passes in the sample.
        assert!(text.trim_end().ends_with("verdict: PASS"), "{text}");
        assert!(
            text.contains("streams: 1,000 of 1,000 held at most, 1,010 opened (10 reopens), 10 failed (reset 10); notifications 60,000 (notifications/message 60,000); fan-out latency p50 400 µs / p95 700 µs / p99 800 µs / max 1.2 ms (whole run)"),
            "{text}"
        );
        assert!(
            text.contains("server-to-client requests: 12 received (10 on response streams, 2 on streams: sampling/createMessage 10, ping 2); answers: 11 taken, 0 refused, 1 lost of 13 sent (connection failures: reset 2); request → answer taken p50 90 µs / p99 400 µs / max 410 µs (whole run)"),
            "{text}"
        );
        let html = html::render(&sample_report());
        assert!(html.contains("<h2>Streams</h2>"), "{html}");
        assert!(
            html.contains("<h2>Server-to-client requests</h2>"),
            "{html}"
        );
        assert!(html.contains("Fan-out latency per second"), "{html}");
    }

    #[test]
    fn json_round_trips() {
        let report = sample_report();
        let json = serde_json::to_string(&report).unwrap();
        let back: RunReport = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        assert_eq!(back.exit_code(), 0);
        let histogram = hist::decode(back.phases[0].histogram.as_deref().unwrap()).unwrap();
        assert_eq!(histogram.len(), 1);
    }

    #[test]
    fn committed_schema_matches_the_structs() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/report.schema.json");
        let generated = RunReport::json_schema();
        if std::env::var_os("MCPSTORM_WRITE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "schema/report.schema.json is stale: run MCPSTORM_WRITE_SCHEMA=1 cargo test --lib committed_schema"
        );
    }
}

/// Reads a report saved with `--json` (for `mcpstorm report FILE.json`).
pub fn load(path: &std::path::Path) -> Result<RunReport, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let report: RunReport = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not an mcpstorm run report: {e}", path.display()))?;
    if report.schema != SCHEMA_ID {
        return Err(format!(
            "{} has schema {:?}; this mcpstorm reads {SCHEMA_ID:?}",
            path.display(),
            report.schema
        ));
    }
    Ok(report)
}

/// Writes the JSON and/or HTML files of a report. Each is written to a temporary name and
/// renamed, so an interrupted write never leaves half a report behind.
pub fn write_files(
    report: &RunReport,
    json: Option<&std::path::Path>,
    html: Option<&std::path::Path>,
) -> Result<(), String> {
    let write = |path: &std::path::Path, contents: &str| -> Result<(), String> {
        let tmp = path.with_extension("partial-write");
        std::fs::write(&tmp, contents)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report).map_err(|e| format!("report JSON: {e}"))?;
        write(path, &(text + "\n"))?;
    }
    if let Some(path) = html {
        write(path, &html::render(report))?;
    }
    Ok(())
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn save_and_load() {
        let dir = std::env::temp_dir().join(format!("mcpstorm-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("run.json");
        let html = dir.join("run.html");
        write_files(&sample_report(), Some(&json), Some(&html)).unwrap();
        let back = load(&json).unwrap();
        assert_eq!(back.phases.len(), 6);
        assert!(
            std::fs::read_to_string(&html)
                .unwrap()
                .starts_with("<!DOCTYPE html>")
        );
        std::fs::write(&json, "{\"schema\":\"other/9\"}").unwrap();
        assert!(
            load(&json)
                .unwrap_err()
                .contains("not an mcpstorm run report")
        );
        assert!(
            load(&dir.join("missing.json"))
                .unwrap_err()
                .contains("cannot read")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
