//! The coordinator of the phased run: baseline → ramp_up → sustained → failure_recovery →
//! performance → cool_down over one set of held sessions, driven through
//! `engine::shard::Command` (sessions to hold, load on/off, offered rate, drop a share of the
//! connections). Part of `scenario/`: it decides when phases begin and end, injects the fault,
//! reads /proc for memory and CPU, and turns each phase's merged shard metrics into a
//! `report::PhaseReport`. The decisions that need no I/O are in `logic.rs`; the shards do all
//! socket I/O.
//!
//! A phase boundary is a new command *segment*: each shard hands over its metrics of the
//! segment that ended (`SegmentMetrics`) before it acknowledges the command, so the figures of
//! a phase are exactly the merge of its segments (the performance phase has one per step).

use super::logic::{self, Fault};
use crate::engine::embedded::EmbeddedServer;
use crate::engine::metrics::{Counter, ShardMetrics};
use crate::engine::plan::{EnginePlan, RunOptions};
use crate::engine::shard::{Command, SegmentMetrics, Shared};
use crate::engine::template::Method;
use crate::report::{
    self, Capacity, CpuFigures, GeneratorCheck, Leak, MachineInfo, MemoryFigures, Percentiles,
    PhaseReport, PhaseStatus, Recovery, RunReport, sla::SlaSpec,
};
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// How often the coordinator samples the shards while a phase runs.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
/// Longest a command may take to be applied by every shard.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Load kept on before the fault, so requests are in flight when it strikes.
const PRE_FAULT: Duration = Duration::from_secs(1);
/// Load kept on after recovery, so the phase shows the recovered service.
const POST_RECOVERY: Duration = Duration::from_secs(1);
/// Share of the sessions held before the fault that must answer again.
const RECOVERED_FRACTION: f64 = 0.99;
/// Longest cool_down waits for requests in flight before closing.
const COOL_DOWN_DRAIN: Duration = Duration::from_secs(3);
/// Segment numbers of the performance steps start here (phases use their index).
const STEP_SEGMENT_BASE: u32 = 100;

/// Everything a phased run needs beyond the engine's options.
#[derive(Debug, Clone)]
pub struct PhasedOptions {
    pub run: RunOptions,
    pub sla: SlaSpec,
    /// Phases turned off (by name).
    pub skip: Vec<String>,
    pub baseline: Duration,
    pub baseline_rate_per_s: u64,
    pub sustain: Duration,
    pub fault: Fault,
    pub recovery_timeout: Duration,
    pub step: Duration,
    pub step_factor: f64,
    pub steps_max: usize,
    pub quiet: bool,
}

/// Why a phased run produced no report (exit code 2).
pub type CouldNotRun = String;

/// Runs the six phases. `Err` = the run could not be done (exit 2); a report otherwise, also
/// for a run that aborted or was interrupted (then `partial` or a FAIL verdict says so).
pub fn run(options: &PhasedOptions) -> Result<RunReport, CouldNotRun> {
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let features = crate::ring::probe_kernel().map_err(|e| e.to_string())?;
    let mut run_options = options.run.clone();
    let mut embedded = if run_options.urls.is_empty() {
        let server = EmbeddedServer::start(run_options.connections)?;
        run_options.urls = server.urls.clone();
        run_options.server_pid = Some(server.pid());
        if run_options.mix.is_none() && run_options.tool.is_none() {
            run_options.tool = Some("echo".into());
        }
        Some(server)
    } else {
        None
    };
    if !features.bind_op && run_options.source_ips.is_some() {
        return Err("--source-ips needs IORING_OP_BIND (Linux 6.11 or newer)".into());
    }
    if matches!(options.fault, Fault::Restart { .. })
        && embedded.is_none()
        && !options.skip.iter().any(|s| s == "failure_recovery")
    {
        return Err(
            "--fault restart needs the embedded server (no URL); against a URL use --fault drop:10% or --fault exec:'CMD'"
                .into(),
        );
    }
    let nofile = crate::ring::raise_nofile_limit();
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    let plan = EnginePlan::from_options(&run_options, nofile, &cpus)?;
    crate::server::install_stop_handler();
    let shared = Shared::new(plan.shards.len());
    let (segment_sender, segment_receiver) = std::sync::mpsc::channel();
    let start = Instant::now();
    let mut coordinator = Coordinator {
        options,
        plan: &plan,
        shared: &shared,
        start,
        segments: segment_receiver,
        merged: HashMap::new(),
        phases: Vec::new(),
        server_pid: run_options.server_pid,
        progress: Progress::new(options.quiet),
        interrupted: false,
        could_not_run: None,
        leak_baseline_bytes: None,
    };
    let driven = crate::engine::drive(&plan, &features, &shared, Some(segment_sender), |feed| {
        coordinator.run_phases(feed, embedded.as_mut());
    })?;
    coordinator.progress.finish();
    coordinator.drain_segments();
    for (segment, metrics) in &driven.final_metrics {
        coordinator
            .merged
            .entry(*segment)
            .or_default()
            .merge(metrics);
    }
    if let Some(reason) = coordinator.could_not_run.take() {
        let merged = coordinator.merged.get(&0);
        return Err(explain_no_session(reason, merged, &run_options.urls));
    }
    // The shards have closed every connection: the server's memory now vs its baseline.
    let leak = coordinator.leak_baseline_bytes.and_then(|baseline| {
        std::thread::sleep(Duration::from_millis(300));
        let after = coordinator.server_rss_bytes()?;
        Some(Leak {
            server_rss_baseline_bytes: baseline,
            server_rss_after_bytes: after,
            sessions_deleted: 0,
        })
    });
    let end_s = start.elapsed().as_secs_f64();
    let cool_down_deleted = coordinator
        .merged
        .get(&5)
        .map_or(0, |m| m.get(Counter::sessions_deleted));
    let mut phases = coordinator.finish_phases(end_s);
    if let Some(cool_down) = phases
        .iter_mut()
        .find(|p| p.name == "cool_down" && p.status != PhaseStatus::NotRun)
        && cool_down.status != PhaseStatus::Skipped
    {
        cool_down.leak = leak.map(|leak| Leak {
            sessions_deleted: cool_down_deleted,
            ..leak
        });
    }
    let sla = report::sla::evaluate(&options.sla, &phases);
    let verdict = report::sla::overall(&sla);
    drop(embedded);
    Ok(RunReport {
        schema: report::SCHEMA_ID.into(),
        mcpstorm_version: env!("CARGO_PKG_VERSION").into(),
        started_unix_s,
        duration_s: end_s,
        partial: coordinator.interrupted,
        targets: run_options.urls.clone(),
        embedded_server: options.run.urls.is_empty(),
        connections: plan.connections as u64,
        machine: machine_info(nofile),
        phases,
        sla,
        verdict,
        series: driven.samples,
    })
}

fn machine_info(nofile_hard: u64) -> MachineInfo {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    MachineInfo {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: read("/proc/sys/kernel/osrelease"),
        nofile_hard,
        hostname: read("/proc/sys/kernel/hostname"),
    }
}

/// The message of a run whose baseline got no session: what the target did instead.
fn explain_no_session(reason: String, metrics: Option<&ShardMetrics>, urls: &[String]) -> String {
    let target = urls.first().cloned().unwrap_or_default();
    let path = crate::engine::plan::parse_url(&target)
        .map(|t| t.path)
        .unwrap_or_else(|_| "/".into());
    let Some(m) = metrics else {
        return reason;
    };
    if m.get(Counter::error_http_404) > 0 {
        return format!("POST {path} returned 404: is --path right? (target {target})");
    }
    if m.get(Counter::error_connect_refused) > 0 {
        return format!("connection refused by {target}: is the server running?");
    }
    if m.get(Counter::error_connect_timeout) > 0 {
        return format!("connecting to {target} timed out: is the address right?");
    }
    let causes: Vec<String> = m
        .errors_by_cause()
        .into_iter()
        .map(|(cause, count)| format!("{cause} {count}"))
        .collect();
    if causes.is_empty() {
        reason
    } else {
        format!(
            "{target} does not speak MCP over streamable HTTP: initialize failed ({}) — {reason}",
            causes.join(", ")
        )
    }
}

/// A phase as it ran: its skeleton (status, times, extra figures) and the segments whose
/// metrics make its figures.
struct PhaseRun {
    report: PhaseReport,
    segments: Vec<u32>,
    /// Load requests in flight when it ended.
    in_flight_at_end: u64,
    /// Generator CPU time over the phase, µs (sustained), for the CPU per request.
    cpu_us: Option<u64>,
    /// Segments the generator check covers, when not all of them (performance).
    generator_segments: Option<Vec<u32>>,
}

struct Coordinator<'a> {
    options: &'a PhasedOptions,
    plan: &'a EnginePlan,
    shared: &'a Shared,
    start: Instant,
    segments: Receiver<SegmentMetrics>,
    merged: HashMap<u32, ShardMetrics>,
    phases: Vec<PhaseRun>,
    server_pid: Option<u32>,
    progress: Progress,
    interrupted: bool,
    could_not_run: Option<String>,
    leak_baseline_bytes: Option<u64>,
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
enum Waited {
    /// The condition held.
    Done,
    /// The time ran out first.
    TimedOut,
    /// SIGINT/SIGTERM, or a shard failed.
    Stopped,
}

impl Coordinator<'_> {
    fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst) || crate::server::STOP.load(Ordering::Relaxed)
    }

    fn held(&self) -> u64 {
        Shared::sum(&self.shared.held)
    }

    /// Held sessions that are connected and answering (not lost to a fault yet to recover).
    fn answering(&self) -> u64 {
        self.held().saturating_sub(Shared::sum(&self.shared.down))
    }

    fn server_rss_bytes(&self) -> Option<u64> {
        let pid = self.server_pid?;
        crate::engine::proc_kib(&format!("/proc/{pid}/status"), "VmRSS:").map(|kib| kib * 1024)
    }

    fn drain_segments(&mut self) {
        for segment in self.segments.try_iter() {
            self.merged
                .entry(segment.segment)
                .or_default()
                .merge(&segment.metrics);
        }
    }

    /// Samples every `SAMPLE_INTERVAL` until `done` holds, `limit` passes, or the run stops.
    fn wait(
        &mut self,
        feed: &mut crate::engine::TimelineFeed,
        limit: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Waited {
        let until = Instant::now() + limit;
        loop {
            feed.drain();
            self.drain_segments();
            let label = self.phases.last().map_or("", |p| p.report.name.as_str());
            let label = label.to_string();
            self.progress.tick(&label, self.now_s(), self.held(), feed);
            if self.stopped() {
                return Waited::Stopped;
            }
            if done(self) {
                return Waited::Done;
            }
            let now = Instant::now();
            if now >= until {
                return Waited::TimedOut;
            }
            std::thread::sleep(SAMPLE_INTERVAL.min(until - now));
        }
    }

    /// Publishes `command` and waits until every shard applied it (so the segment that ended
    /// has been handed over).
    fn command(&mut self, feed: &mut crate::engine::TimelineFeed, command: Command) -> Waited {
        let seq = self.shared.publish(command);
        let shared = self.shared;
        let waited = self.wait(feed, ACK_TIMEOUT, |_| shared.all_acked(seq));
        self.drain_segments();
        waited
    }

    fn skipped(&self, name: &str) -> bool {
        self.options.skip.iter().any(|s| s == name)
    }

    fn begin(&mut self, name: &str, segment: u32) {
        let mut report = PhaseReport::new(name, PhaseStatus::Completed);
        report.start_s = self.now_s();
        self.phases.push(PhaseRun {
            report,
            segments: vec![segment],
            in_flight_at_end: 0,
            cpu_us: None,
            generator_segments: None,
        });
    }

    fn current(&mut self) -> &mut PhaseRun {
        match self.phases.last_mut() {
            Some(phase) => phase,
            None => unreachable!("a phase is begun before it is used"),
        }
    }

    /// Ends the current phase with `status` at the current time.
    fn end(&mut self, status: PhaseStatus) {
        let now_s = self.now_s();
        let in_flight = Shared::sum(&self.shared.in_flight);
        let phase = self.current();
        phase.report.status = status;
        phase.report.duration_s = now_s - phase.report.start_s;
        phase.in_flight_at_end = in_flight;
    }

    fn run_phases(
        &mut self,
        feed: &mut crate::engine::TimelineFeed,
        mut embedded: Option<&mut EmbeddedServer>,
    ) {
        let shards = self.plan.shards.len();
        let shared = self.shared;
        match self.wait(feed, Duration::from_secs(60), |_| {
            shared.shards_ready.load(Ordering::SeqCst) >= shards
        }) {
            Waited::Done => {}
            _ => {
                self.could_not_run = Some("the shards did not start".into());
                return;
            }
        }
        let n = self.plan.connections as u64;
        let rate = self.options.run.rate_per_s;
        let rss_before = crate::engine::rss_bytes();
        let server_rss_before = self.server_rss_bytes();
        let slab_before = crate::engine::slab_bytes();
        self.leak_baseline_bytes = server_rss_before;

        // ---- baseline: few sessions, low rate; proves the target speaks MCP.
        let baseline_n = logic::baseline_sessions(n);
        self.begin("baseline", 0);
        self.current().report.sessions.target = baseline_n;
        self.current().report.offered_rps = Some(self.options.baseline_rate_per_s as f64);
        let baseline_seq = self.shared.publish(Command {
            segment: 0,
            label: "baseline",
            hold: baseline_n,
            load: false,
            rate_per_s: self.options.baseline_rate_per_s,
            drop_fraction: 0.0,
            delete_sessions: false,
        });
        self.shared.go_connect.store(true, Ordering::SeqCst);
        let settle_limit = self.options.run.connect_timeout
            + self
                .options
                .run
                .request_timeout
                .min(Duration::from_secs(10))
            + Duration::from_secs(2);
        let waited = self.wait(feed, settle_limit, |c| {
            c.shared.all_acked(baseline_seq) && Shared::sum(&c.shared.settled) >= baseline_n
        });
        if waited == Waited::Stopped {
            return self.interrupt_rest();
        }
        if self.held() == 0 {
            self.could_not_run = Some(format!(
                "no MCP session could be opened in the baseline ({} attempted)",
                baseline_n
            ));
            return;
        }
        if !self.skipped("baseline") {
            let waited = self.command(
                feed,
                Command {
                    segment: 0,
                    label: "baseline",
                    hold: baseline_n,
                    load: true,
                    rate_per_s: self.options.baseline_rate_per_s,
                    drop_fraction: 0.0,
                    delete_sessions: false,
                },
            );
            if waited == Waited::Stopped {
                return self.interrupt_rest();
            }
            if self.wait(feed, self.options.baseline, |_| false) == Waited::Stopped {
                return self.interrupt_rest();
            }
            self.end(PhaseStatus::Completed);
        } else {
            self.end(PhaseStatus::Skipped);
        }

        // ---- ramp_up: open the rest at --connect-rate.
        self.begin("ramp_up", 1);
        self.current().report.sessions.target = n;
        let ramp_start = Instant::now();
        let waited = self.command(
            feed,
            Command {
                segment: 1,
                label: "ramp_up",
                hold: n,
                load: false,
                rate_per_s: 0,
                drop_fraction: 0.0,
                delete_sessions: false,
            },
        );
        if waited == Waited::Stopped {
            return self.interrupt_rest();
        }
        let mut aborted = false;
        let waited = self.wait(feed, self.options.run.ramp_timeout, |c| {
            let settled = Shared::sum(&c.shared.settled);
            let failed = Shared::sum(&c.shared.failed);
            if logic::ramp_must_abort(settled, failed) {
                aborted = true;
                return true;
            }
            settled >= n
        });
        let ramp_s = ramp_start.elapsed().as_secs_f64();
        if waited == Waited::Stopped {
            return self.interrupt_rest();
        }
        let established_now = self.held();
        self.current().report.sessions.established = established_now;
        self.current().report.sessions.established_per_s =
            (ramp_s > 0.0).then(|| established_now.saturating_sub(baseline_n) as f64 / ramp_s);
        if aborted {
            let failed = Shared::sum(&self.shared.failed);
            self.current().report.note = Some(format!(
                "aborted: {failed} sessions failed (more than {}% of those attempted)",
                logic::RAMP_FAILURE_PCT_MAX
            ));
            self.end(PhaseStatus::Aborted);
            return self.not_run_rest();
        }
        if waited == Waited::TimedOut {
            self.current().report.note = Some(format!(
                "--ramp-timeout {:?} reached with {established_now} of {n} sessions",
                self.options.run.ramp_timeout
            ));
        }
        self.end(PhaseStatus::Completed);

        // ---- sustained: hold N at the offered rate; memory, growth, CPU.
        std::thread::sleep(Duration::from_millis(20));
        let held_full = self.held();
        let rss_full = crate::engine::rss_bytes();
        let server_rss_full = self.server_rss_bytes();
        let slab_full = crate::engine::slab_bytes();
        let per_held = |grown: i64| (held_full > 0).then(|| grown as f64 / held_full as f64);
        let memory = MemoryFigures {
            client_user_bytes_per_conn: per_held(rss_full as i64 - rss_before as i64),
            server_user_bytes_per_conn: match (server_rss_before, server_rss_full) {
                (Some(before), Some(full)) => per_held(full as i64 - before as i64),
                _ => None,
            },
            kernel_bytes_per_socket: match (slab_before, slab_full) {
                (Some(before), Some(full)) => per_held(full as i64 - before as i64),
                _ => None,
            },
            client_rss_growth_bytes_per_min: None,
            server_rss_growth_bytes_per_min: None,
        };
        if !self.skipped("sustained") {
            self.begin("sustained", 2);
            self.current().report.sessions.target = n;
            self.current().report.offered_rps = (rate > 0).then_some(rate as f64);
            let cpu_start = crate::engine::self_cpu_us();
            let server_cpu_start = self.server_pid.and_then(crate::engine::process_cpu_us);
            let waited = self.command(
                feed,
                Command {
                    segment: 2,
                    label: "sustained",
                    hold: n,
                    load: true,
                    rate_per_s: rate,
                    drop_fraction: 0.0,
                    delete_sessions: false,
                },
            );
            let phase_start = Instant::now();
            let mut client_rss = Vec::new();
            let mut server_rss = Vec::new();
            let mut next_sample = Instant::now();
            let waited = if waited == Waited::Stopped {
                waited
            } else {
                self.wait(feed, self.options.sustain, |c| {
                    if Instant::now() >= next_sample {
                        let t = phase_start.elapsed().as_secs_f64();
                        client_rss.push((t, crate::engine::rss_bytes()));
                        if let Some(bytes) = c.server_rss_bytes() {
                            server_rss.push((t, bytes));
                        }
                        next_sample += Duration::from_secs(1);
                    }
                    false
                })
            };
            let cpu_us = crate::engine::self_cpu_us().saturating_sub(cpu_start);
            let server_cpu_us = match (
                server_cpu_start,
                self.server_pid.and_then(crate::engine::process_cpu_us),
            ) {
                (Some(start), Some(end)) => Some(end.saturating_sub(start)),
                _ => None,
            };
            self.current().cpu_us = Some(cpu_us);
            let phase = &mut self.current().report;
            phase.memory = Some(MemoryFigures {
                client_rss_growth_bytes_per_min: logic::growth_bytes_per_min(&client_rss),
                server_rss_growth_bytes_per_min: logic::growth_bytes_per_min(&server_rss),
                ..memory.clone()
            });
            phase.cpu = Some(CpuFigures {
                generator_cpu_s: cpu_us as f64 / 1e6,
                server_cpu_s: server_cpu_us.map(|us| us as f64 / 1e6),
                // Filled from the request count when the figures are merged.
                generator_cpu_us_per_request: None,
            });
            if waited == Waited::Stopped {
                return self.interrupt_rest();
            }
            self.end(PhaseStatus::Completed);
        } else {
            self.phases.push(skipped_phase("sustained", self.now_s()));
        }

        // ---- failure_recovery: inject the fault, measure the way back.
        if !self.skipped("failure_recovery") {
            self.begin("failure_recovery", 3);
            self.current().report.sessions.target = n;
            self.current().report.offered_rps = (rate > 0).then_some(rate as f64);
            let load = Command {
                segment: 3,
                label: "failure_recovery",
                hold: n,
                load: true,
                rate_per_s: rate,
                drop_fraction: 0.0,
                delete_sessions: false,
            };
            if self.command(feed, load.clone()) == Waited::Stopped
                || self.wait(feed, PRE_FAULT, |_| false) == Waited::Stopped
            {
                return self.interrupt_rest();
            }
            let before = self.answering();
            let fault_t = Instant::now();
            let mut note = None;
            match &self.options.fault {
                Fault::Restart { down_s } => {
                    if let Some(server) = embedded.as_mut() {
                        let down = Duration::from_secs_f64(*down_s);
                        match server.restart(down) {
                            Ok(()) => {
                                self.server_pid = Some(server.pid());
                                self.leak_baseline_bytes = self.server_rss_bytes();
                            }
                            Err(e) => note = Some(format!("the server did not come back: {e}")),
                        }
                    }
                }
                Fault::Drop { fraction } => {
                    let waited = self.command(
                        feed,
                        Command {
                            drop_fraction: *fraction,
                            ..load.clone()
                        },
                    );
                    if waited == Waited::Stopped {
                        return self.interrupt_rest();
                    }
                }
                Fault::Exec { command } => {
                    match std::process::Command::new("sh")
                        .args(["-c", command])
                        .status()
                    {
                        Ok(status) if status.success() => {}
                        Ok(status) => note = Some(format!("the fault command exited {status}")),
                        Err(e) => note = Some(format!("cannot run the fault command: {e}")),
                    }
                }
            }
            let needed = (before as f64 * RECOVERED_FRACTION).ceil() as u64;
            let mut samples = vec![(0.0, self.answering())];
            let waited = self.wait(feed, self.options.recovery_timeout, |c| {
                let answering = c.answering();
                samples.push((fault_t.elapsed().as_secs_f64(), answering));
                answering >= needed && fault_t.elapsed() > Duration::from_millis(100)
            });
            if waited == Waited::Stopped {
                return self.interrupt_rest();
            }
            let recovery_s = logic::recovery_time_s(0.0, before, &samples, RECOVERED_FRACTION)
                // A probe at t = 0 may still see everything up before the fault landed.
                .filter(|_| waited == Waited::Done);
            if self.wait(feed, POST_RECOVERY, |_| false) == Waited::Stopped {
                return self.interrupt_rest();
            }
            let restored = self.answering();
            let options = self.options;
            let phase = &mut self.current().report;
            phase.recovery = Some(Recovery {
                fault: options.fault.describe(),
                recovery_s,
                sessions_before: before,
                sessions_restored: restored.min(before),
                // Filled from the shards' count of requests lost with their connection.
                requests_lost: 0,
            });
            phase.note = note.or_else(|| {
                (waited == Waited::TimedOut).then(|| {
                    format!(
                        "{restored} of {before} sessions answering after --recovery-timeout {:?}",
                        options.recovery_timeout
                    )
                })
            });
            self.end(PhaseStatus::Completed);
        } else {
            self.phases
                .push(skipped_phase("failure_recovery", self.now_s()));
        }

        // ---- performance: step the offered rate up until a bound breaks.
        if !self.skipped("performance") {
            self.begin("performance", STEP_SEGMENT_BASE);
            self.current().report.sessions.target = n;
            // From the offered rate, or (closed loop) from what the sustained phase achieved.
            let sustained_rps = self.merged.get(&2).map_or(0.0, |m| {
                m.get(Counter::requests_ok) as f64 / self.options.sustain.as_secs_f64().max(1e-3)
            });
            let start_rps = if rate > 0 {
                rate as f64
            } else if sustained_rps > 0.0 {
                sustained_rps
            } else {
                1000.0
            };
            let rates = logic::performance_rates(
                start_rps,
                self.options.step_factor,
                self.options.steps_max,
                f64::MAX,
            );
            let mut steps = Vec::new();
            let mut passed_segments = Vec::new();
            for (k, &offered) in rates.iter().enumerate() {
                // Step k measures in segment BASE + 2k; the pause after it (load off while its
                // requests finish and the step is judged) in BASE + 2k + 1.
                let segment = STEP_SEGMENT_BASE + 2 * k as u32;
                self.current().segments.push(segment);
                let waited = self.command(
                    feed,
                    Command {
                        segment,
                        label: "performance",
                        hold: n,
                        load: true,
                        rate_per_s: offered as u64,
                        drop_fraction: 0.0,
                        delete_sessions: false,
                    },
                );
                let step_start = Instant::now();
                if waited == Waited::Stopped
                    || self.wait(feed, self.options.step, |_| false) == Waited::Stopped
                {
                    return self.interrupt_rest_with_steps(steps);
                }
                let step_s = step_start.elapsed().as_secs_f64();
                // End the step: its metrics are handed over with this command.
                let waited = self.command(
                    feed,
                    Command {
                        segment: segment + 1,
                        label: "performance",
                        hold: n,
                        load: false,
                        rate_per_s: offered as u64,
                        drop_fraction: 0.0,
                        delete_sessions: false,
                    },
                );
                self.current().segments.push(segment + 1);
                let step = match self.merged.get(&segment) {
                    Some(m) => {
                        let ok = m.get(Counter::requests_ok);
                        let errors = m.get(Counter::requests_failed);
                        let done = ok + errors;
                        let mut step = logic::judge_step(
                            offered,
                            ok as f64 / step_s,
                            Percentiles::of(&m.all.corrected).p95,
                            if done > 0 {
                                errors as f64 * 100.0 / done as f64
                            } else {
                                0.0
                            },
                            &self.options.sla,
                        );
                        let generator = generator_check(m, false);
                        if !generator.valid {
                            // A step the generator could not drive proves nothing about the
                            // target: it cannot count towards the capacity.
                            let reason = format!(
                                "generator fell behind ({})",
                                generator.invalid_reason.unwrap_or_default()
                            );
                            step.broke = Some(match step.broke {
                                Some(broke) => format!("{broke}; {reason}"),
                                None => reason,
                            });
                            step.pass = false;
                        }
                        step
                    }
                    None => logic::judge_step(offered, 0.0, 0, 0.0, &self.options.sla),
                };
                if step.pass {
                    passed_segments.push(segment);
                }
                let pass = step.pass;
                steps.push(step);
                if waited == Waited::Stopped {
                    return self.interrupt_rest_with_steps(steps);
                }
                if !pass {
                    break;
                }
            }
            // The last step's requests finish inside this phase, not in cool_down.
            let shared = self.shared;
            if self.wait(feed, COOL_DOWN_DRAIN, |_| {
                Shared::sum(&shared.in_flight) == 0
            }) == Waited::Stopped
            {
                return self.interrupt_rest_with_steps(steps);
            }
            let capacity_rps = logic::capacity(&steps);
            self.current().report.capacity = Some(Capacity {
                steps,
                capacity_rps,
            });
            if !passed_segments.is_empty() {
                // The generator is judged over the steps the capacity rests on; the step that
                // broke is over the limit by design and says so in its own row.
                self.current().generator_segments = Some(passed_segments);
            }
            self.end(PhaseStatus::Completed);
        } else {
            self.phases.push(skipped_phase("performance", self.now_s()));
        }

        // ---- cool_down: stop the load, let requests finish, close everything.
        self.begin("cool_down", 5);
        let waited = self.command(
            feed,
            Command {
                segment: 5,
                label: "cool_down",
                hold: n,
                load: false,
                rate_per_s: 0,
                drop_fraction: 0.0,
                delete_sessions: false,
            },
        );
        if waited == Waited::Stopped {
            return self.interrupt_rest();
        }
        let shared = self.shared;
        if self.wait(feed, COOL_DOWN_DRAIN, |_| {
            Shared::sum(&shared.in_flight) == 0
        }) == Waited::Stopped
        {
            return self.interrupt_rest();
        }
        // End every session the way a client should: DELETE, then close.
        let waited = self.command(
            feed,
            Command {
                segment: 5,
                label: "cool_down",
                hold: n,
                load: false,
                rate_per_s: 0,
                drop_fraction: 0.0,
                delete_sessions: true,
            },
        );
        if waited == Waited::Stopped {
            return self.interrupt_rest();
        }
        let deletes_limit = self
            .options
            .run
            .request_timeout
            .min(Duration::from_secs(30));
        if self.wait(feed, deletes_limit, |_| {
            Shared::sum(&shared.deletes_done) == shards as u64
        }) == Waited::Stopped
        {
            self.interrupt_rest();
        }
        // The shards close what is left when `drive` sets stop; the duration is taken after
        // they have (see `finish_phases`).
    }

    fn interrupt_rest_with_steps(&mut self, steps: Vec<report::CapacityStep>) {
        let capacity_rps = logic::capacity(&steps);
        self.current().report.capacity = Some(Capacity {
            steps,
            capacity_rps,
        });
        self.interrupt_rest();
    }

    /// SIGINT/SIGTERM (or a failed shard): the current phase is interrupted, the rest not run.
    fn interrupt_rest(&mut self) {
        if self.phases.is_empty() {
            self.begin("baseline", 0);
        }
        self.end(PhaseStatus::Interrupted);
        self.interrupted = true;
        self.not_run_rest();
    }

    fn not_run_rest(&mut self) {
        let now_s = self.now_s();
        for name in report::PHASE_NAMES {
            if !self.phases.iter().any(|p| p.report.name == name) {
                let mut report = PhaseReport::new(name, PhaseStatus::NotRun);
                report.start_s = now_s;
                self.phases.push(PhaseRun {
                    report,
                    segments: Vec::new(),
                    in_flight_at_end: 0,
                    cpu_us: None,
                    generator_segments: None,
                });
            }
        }
    }

    /// Fills every phase's figures from its merged segments, in the order of `PHASE_NAMES`.
    fn finish_phases(&mut self, end_s: f64) -> Vec<PhaseReport> {
        let mut phases = std::mem::take(&mut self.phases);
        phases.sort_by_key(|p| {
            report::PHASE_NAMES
                .iter()
                .position(|n| *n == p.report.name)
                .unwrap_or(usize::MAX)
        });
        let mut out = Vec::with_capacity(phases.len());
        for phase in phases {
            let mut report = phase.report;
            if report.name == "cool_down" && report.status == PhaseStatus::Completed {
                report.duration_s = end_s - report.start_s;
            }
            let mut merged = ShardMetrics::new();
            let mut held_max = 0;
            for segment in &phase.segments {
                if let Some(m) = self.merged.get(segment) {
                    merged.merge(m);
                    held_max = held_max.max(m.held_max);
                }
            }
            // Merging adds the shards' maxima (right within one segment); across the segments
            // of a phase the most held is the largest of theirs.
            merged.held_max = held_max;
            if matches!(report.status, PhaseStatus::Skipped | PhaseStatus::NotRun) {
                out.push(report);
                continue;
            }
            fill_from_metrics(&mut report, &merged, phase.in_flight_at_end, phase.cpu_us);
            if let Some(segments) = &phase.generator_segments {
                let mut judged = ShardMetrics::new();
                for segment in segments {
                    if let Some(m) = self.merged.get(segment) {
                        judged.merge(m);
                    }
                }
                report.generator = generator_check(&judged, false);
            }
            out.push(report);
        }
        out
    }
}

fn skipped_phase(name: &str, now_s: f64) -> PhaseRun {
    let mut report = PhaseReport::new(name, PhaseStatus::Skipped);
    report.start_s = now_s;
    PhaseRun {
        report,
        segments: Vec::new(),
        in_flight_at_end: 0,
        cpu_us: None,
        generator_segments: None,
    }
}

/// The measured figures of a phase from its merged shard metrics.
fn fill_from_metrics(
    report: &mut PhaseReport,
    m: &ShardMetrics,
    in_flight_at_end: u64,
    cpu_us: Option<u64>,
) {
    let ok = m.get(Counter::requests_ok);
    let sent = m.get(Counter::requests_sent);
    report.sessions.established = m.established.max(report.sessions.established);
    report.sessions.failed = m.failed;
    report.sessions.held_max = m.held_max.max(report.sessions.held_max);
    report.requests = report::Requests {
        sent,
        ok,
        errors: m.get(Counter::requests_failed),
        in_flight_at_end,
    };
    report.throughput_rps = if report.duration_s > 0.0 {
        ok as f64 / report.duration_s
    } else {
        0.0
    };
    report.latency_us = Percentiles::of(&m.all.corrected);
    report.latency_uncorrected_us = Percentiles::of(&m.all.uncorrected);
    let mut by_method = BTreeMap::new();
    for (index, method) in Method::LOAD.iter().enumerate() {
        let pair = &m.methods[index];
        if !pair.corrected.is_empty() {
            by_method.insert(method.name().to_string(), Percentiles::of(&pair.corrected));
        }
    }
    report.latency_us_by_method = by_method;
    report.connect_us = Percentiles::of(&m.connect);
    report.initialize_us = Percentiles::of(&m.initialize);
    report.latency_spectrum_us = report::spectrum(&m.all.corrected);
    report.errors_by_cause = m
        .errors_by_cause()
        .into_iter()
        .map(|(cause, count)| (cause.to_string(), count))
        .collect();
    for &(op, errno, count) in &m.errnos {
        report.errors_by_cause.insert(
            format!("{op}:{}", crate::engine::report::errno_name(errno)),
            count,
        );
    }
    report.generator = generator_check(m, report.name == "failure_recovery");
    if let (Some(cpu), Some(cpu_us)) = (&mut report.cpu, cpu_us) {
        cpu.generator_cpu_us_per_request = (sent > 0).then(|| cpu_us as f64 / sent as f64);
    }
    if let Some(recovery) = &mut report.recovery {
        recovery.requests_lost = m.get(Counter::requests_connection_lost);
    }
    report.histogram = (!m.all.corrected.is_empty())
        .then(|| report::hist::encode(&m.all.corrected).ok())
        .flatten();
}

/// The generator self-check of merged metrics. `fault`: late sends do not count (see below).
fn generator_check(m: &ShardMetrics, fault: bool) -> GeneratorCheck {
    let sent = m.get(Counter::requests_sent);
    let loop_lag_us_p99 = if m.loop_lag.is_empty() {
        0
    } else {
        m.loop_lag.value_at_quantile(0.99)
    };
    let late_sends = m.get(Counter::late_sends);
    if fault {
        // While sessions are down the schedule's requests wait for a connection and go out
        // late by design (their corrected latency counts the wait): that is the fault, not the
        // generator falling behind. Loop lag and CQ overflows still judge it.
        let mut check = GeneratorCheck::judge(0, sent, loop_lag_us_p99, m.cq_overflows, 0);
        check.late_sends = late_sends;
        check.late_sends_pct = if sent == 0 {
            0.0
        } else {
            late_sends as f64 * 100.0 / sent as f64
        };
        check.sq_backlog_max = m.sq_backlog_max;
        check
    } else {
        GeneratorCheck::judge(
            late_sends,
            sent,
            loop_lag_us_p99,
            m.cq_overflows,
            m.sq_backlog_max,
        )
    }
}

/// Live progress on stderr, once a second: one updating line on a terminal, plain lines
/// otherwise, nothing with `--quiet`.
struct Progress {
    quiet: bool,
    tty: bool,
    next: Instant,
    printed: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
            next: Instant::now() + Duration::from_secs(1),
            printed: false,
        }
    }

    fn tick(&mut self, phase: &str, t_s: f64, held: u64, feed: &crate::engine::TimelineFeed) {
        if self.quiet || Instant::now() < self.next {
            return;
        }
        self.next += Duration::from_secs(1);
        let last = feed.samples().last();
        let line = logic::progress_line(
            phase,
            t_s,
            held,
            last.map_or(0.0, |s| s.throughput_rps),
            last.filter(|s| s.throughput_rps > 0.0)
                .map(|s| s.latency_us_p99),
            last.map_or(0, |s| s.errors),
        );
        let mut stderr = std::io::stderr().lock();
        let _ = if self.tty {
            write!(stderr, "\r{line}\x1b[K")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
        self.printed = true;
    }

    fn finish(&mut self) {
        if self.tty && self.printed {
            eprintln!();
        }
    }
}
