//! The phase driver: sequences the rooms in `phases/` over one set of held sessions and owns
//! what they share — the shards' commands (`Command` built from a `Segment`), waiting and
//! sampling, the segment metrics handed over by the shards, and the skeleton of each phase's
//! report. Part of `scenario/`; the I/O-free decisions are in `logic.rs`, the figures of a
//! phase are assembled by `figures.rs`, and the shards do every socket operation.
//!
//! A phase boundary is a new command *segment*: each shard hands over its metrics of the
//! segment that ended (`SegmentMetrics`) before it acknowledges the command — and the figures
//! of requests still in flight then, when their answers come — so a phase's figures are
//! exactly the merge of its segments and cover exactly the requests intended in it.

use super::logic::Fault;
use super::progress::Progress;
use crate::engine::control::{Command, SegmentMetrics, Shared};
use crate::engine::embedded::EmbeddedServer;
use crate::engine::metrics::ShardMetrics;
use crate::engine::plan::EnginePlan;
use crate::report::{PhaseReport, PhaseStatus, sla::SlaSpec};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// How often the driver samples the shards while a phase runs.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
/// Longest a command may take to be applied by every shard.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a command's acknowledgement is checked.
const ACK_POLL: Duration = Duration::from_millis(1);
/// Longest a phase waits, load off, for its requests in flight before the next one starts.
pub const DRAIN_MAX: Duration = Duration::from_secs(5);

/// A measurement segment: what the shards' metrics of one stretch of the run belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Baseline,
    Ramp,
    /// The closed-loop probe of what the server carries (ramp_up's `rate_probe`).
    RateProbe,
    Sustained,
    /// failure_recovery before the fault, while it is under way, and after it is over.
    Recovery,
    FaultOn,
    FaultOver,
    /// Performance step k, and the pause (load off) after it.
    Step(u32),
    Pause(u32),
    /// Load off at the end of a phase while its requests drain (by the phase's index).
    Drain(u32),
    CoolDown,
}

impl Segment {
    pub fn id(self) -> u32 {
        match self {
            Segment::Baseline => 0,
            Segment::Ramp => 1,
            Segment::Sustained => 2,
            Segment::Recovery => 3,
            Segment::FaultOn => 7,
            Segment::FaultOver => 8,
            Segment::CoolDown => 5,
            Segment::RateProbe => 6,
            Segment::Drain(phase) => 10 + phase,
            Segment::Step(k) => 100 + 2 * k,
            Segment::Pause(k) => 101 + 2 * k,
        }
    }
}

/// Why the phases stopped early. `?` carries it up to `run_phases`, which records it.
#[derive(Debug)]
pub enum Halt {
    /// SIGINT/SIGTERM, or a shard ended (failed or panicked): the current phase is
    /// interrupted, the rest not run, the report partial.
    Stopped,
    /// A rule stopped the run (the ramp's failure threshold): the rest is not run.
    Aborted,
    /// Nothing could be measured (no session in the baseline): exit 2 with the reason.
    CouldNotRun(String),
}

pub type Step = Result<(), Halt>;

/// Everything a phased run needs beyond the engine's options.
#[derive(Debug, Clone)]
pub struct PhasedOptions {
    pub run: crate::engine::plan::RunOptions,
    /// The offered rate of the load phases; `None` = derive it from a probe of what the
    /// target carries (a URL given without --rate).
    pub rate_per_s: Option<u64>,
    pub sla: SlaSpec,
    /// Phases turned off (by name).
    pub skip: Vec<String>,
    pub baseline: Duration,
    pub sustain: Duration,
    pub fault: Fault,
    pub recovery_timeout: Duration,
    pub step: Duration,
    pub step_factor: f64,
    pub steps_max: usize,
    pub quiet: bool,
    /// List the server's tools, resources and prompts before the ramp and refuse a mix that
    /// names what it lacks (`--no-discovery` turns it off).
    pub discovery: bool,
    /// `--start-at`: the phases begin at this UNIX time (ms), the segments' common start.
    pub start_at_unix_ms: Option<u64>,
    /// `--clock-serve PORT`: answer the segments' clock probes while the run lasts.
    pub clock_serve: Option<u16>,
    /// `--clock-ref HOST:PORT`: the reference this host's clock offset is measured against.
    pub clock_ref: Option<String>,
}

/// A phase as it runs: its skeleton (status, times, extra figures) and the segments whose
/// metrics make its figures.
pub struct PhaseRun {
    pub report: PhaseReport,
    pub segments: Vec<u32>,
    /// Load requests in flight when it ended, and the send time of the oldest (ns since the
    /// shards' epoch, 0 = none).
    pub in_flight_at_end: u64,
    pub oldest_in_flight_sent_ns: u64,
    /// Generator CPU time over the phase, µs (sustained), for the CPU per request.
    pub cpu_us: Option<u64>,
    /// When the load was turned on, and how long from then until its last answer came in
    /// (load on, then the drain): throughput is over this.
    pub load_started: Option<Instant>,
    pub load_s: Option<f64>,
    /// Segments the generator check covers, when not all of them (performance).
    pub generator_segments: Option<Vec<u32>>,
    /// The host's CPU time when the phase began, and the share stolen by the hypervisor over
    /// the phase (see `GeneratorCheck::host_steal_pct`).
    pub cpu_at_start: Option<crate::sys::cpustat::CpuTimes>,
    pub host_steal_pct: Option<f64>,
}

impl PhaseRun {
    pub fn new(name: &str, status: PhaseStatus, start_s: f64) -> PhaseRun {
        let mut report = PhaseReport::new(name, status);
        report.start_s = start_s;
        PhaseRun {
            report,
            segments: Vec::new(),
            in_flight_at_end: 0,
            oldest_in_flight_sent_ns: 0,
            cpu_us: None,
            load_started: None,
            cpu_at_start: crate::sys::cpustat::read(),
            host_steal_pct: None,
            load_s: None,
            generator_segments: None,
        }
    }
}

/// The shared state of one phased run, handed to each phase's room in turn.
pub struct Driver<'a> {
    pub options: &'a PhasedOptions,
    pub plan: &'a EnginePlan,
    pub shared: &'a Shared,
    pub start: Instant,
    segments: Receiver<SegmentMetrics>,
    pub merged: HashMap<u32, ShardMetrics>,
    pub phases: Vec<PhaseRun>,
    pub server_pid: Option<u32>,
    /// The embedded server (`--replicas N`: each replica); empty against URLs.
    pub embedded: &'a mut [EmbeddedServer],
    progress: Progress,
    pub interrupted: bool,
    pub leak_baseline_bytes: Option<u64>,
    /// The offered rate of sustained, failure_recovery and the performance search's start
    /// (0 = closed loop); decided by `ramp` when it was not given.
    pub rate_per_s: u64,
    /// Requests in flight longer than this count as stalled (failure_recovery).
    pub stall_after: Duration,
    /// The last `Command::mark` published.
    pub mark: u64,
    /// Sessions the last command held (a command keeps them unless it says otherwise).
    pub hold: u64,
    /// The ramp timed out: every later command says so (see `Command::ramp_over`).
    pub ramp_over: bool,
    /// This process's RSS at the run's start, before it sized anything for N (rings, slabs,
    /// pools), and the embedded server's RSS when started with no connection capacity: the
    /// bases of the total and peak bytes per connection.
    pub rss_idle_bytes: u64,
    pub server_rss_idle_bytes: Option<u64>,
    /// Client RSS, server RSS and kernel slab before any session opened.
    pub rss_before_bytes: u64,
    pub server_rss_before_bytes: Option<u64>,
    pub slab_before_bytes: Option<u64>,
    /// Memory per connection taken at full hold (after the ramp), for sustained.
    pub memory: Option<crate::report::MemoryFigures>,
    /// Where the failure_recovery fault stands (every command carries it).
    pub fault_stage: crate::engine::control::FaultStage,
    /// A network fault's guard process (`--fault partition:3s`, …), started with the run so a
    /// missing tool refuses the run before any connection; dropped with the driver, which
    /// removes whatever is still installed.
    pub net_guard: Option<crate::netfault::guard::Guard>,
    /// The guard's answer at the heal: how long the rules were in, what the delay line did.
    pub net_heal: Option<crate::netfault::guard::Heal>,
    /// A segmented run with a common start: each phase's scheduled start.
    pub schedule: Option<super::segmented::Schedule>,
    /// The phase about to begin started this late after its slot (noted when it begins).
    boundary_late_ms: Option<u64>,
}

impl<'a> Driver<'a> {
    pub fn new(
        options: &'a PhasedOptions,
        plan: &'a EnginePlan,
        shared: &'a Shared,
        segments: Receiver<SegmentMetrics>,
        server_pid: Option<u32>,
        embedded: &'a mut [EmbeddedServer],
    ) -> Driver<'a> {
        Driver {
            options,
            plan,
            shared,
            start: Instant::now(),
            segments,
            merged: HashMap::new(),
            phases: Vec::new(),
            server_pid,
            embedded,
            progress: Progress::new(options.quiet),
            interrupted: false,
            leak_baseline_bytes: None,
            rate_per_s: options.rate_per_s.unwrap_or(0),
            stall_after: Duration::ZERO,
            mark: 0,
            hold: 0,
            ramp_over: false,
            rss_idle_bytes: 0,
            server_rss_idle_bytes: None,
            rss_before_bytes: 0,
            server_rss_before_bytes: None,
            slab_before_bytes: None,
            memory: None,
            fault_stage: crate::engine::control::FaultStage::Off,
            net_guard: None,
            net_heal: None,
            schedule: match (options.run.segment.is_whole(), options.start_at_unix_ms) {
                (false, Some(at)) => Some(super::segmented::Schedule::of(options, at)),
                _ => None,
            },
            boundary_late_ms: None,
        }
    }

    /// A segmented run: holds (sessions kept, no load) until `phase`'s scheduled start, so
    /// every segment begins it together; a phase already late is noted when it begins.
    pub fn await_phase(&mut self, feed: &mut crate::engine::TimelineFeed, phase: &str) -> Step {
        let Some(start) = self.schedule.as_ref().and_then(|s| s.start_of(phase)) else {
            return Ok(());
        };
        let now = super::segmented::unix_now_ms();
        if now < start {
            self.pass(feed, Duration::from_millis(start - now))?;
        } else if now - start > super::segmented::LATE_BOUNDARY_MS {
            self.boundary_late_ms = Some(now - start);
        }
        Ok(())
    }

    /// Ends the live progress line (the report follows on stdout).
    pub fn finish_progress(&mut self) {
        self.progress.finish();
    }

    pub fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Nanoseconds on the shards' clock (`Shared::epoch`).
    pub fn shard_now_ns(&self) -> u64 {
        self.shared.epoch.elapsed().as_nanos() as u64
    }

    pub fn connections(&self) -> u64 {
        self.plan.connections as u64
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst) || crate::sys::signal::stop_requested()
    }

    pub fn held(&self) -> u64 {
        Shared::sum(&self.shared.held)
    }

    /// Streams open now (`--streams`).
    pub fn streams_held(&self) -> u64 {
        Shared::sum(&self.shared.streams_held)
    }

    pub fn in_flight(&self) -> u64 {
        Shared::sum(&self.shared.in_flight)
    }

    /// Held sessions that answer: not down after a lost connection, and no request stalled
    /// past `stall_after` on them.
    pub fn answering(&self) -> u64 {
        self.held()
            .saturating_sub(Shared::sum(&self.shared.down) + Shared::sum(&self.shared.stalled))
    }

    pub fn server_rss_bytes(&self) -> Option<u64> {
        self.server_status_bytes("VmRSS:")
    }

    /// A byte field (`VmRSS:`, `VmHWM:`) of the server's /proc status; of embedded replicas,
    /// their sum over those alive.
    pub fn server_status_bytes(&self, key: &str) -> Option<u64> {
        let pids = self.server_pids();
        if pids.is_empty() {
            return None;
        }
        pids.iter()
            .map(|pid| {
                crate::engine::proc_kib(&format!("/proc/{pid}/status"), key).map(|kib| kib * 1024)
            })
            .sum()
    }

    /// CPU time of the server processes (each replica's), µs.
    pub fn server_cpu_us(&self) -> Option<u64> {
        let pids = self.server_pids();
        if pids.is_empty() {
            return None;
        }
        pids.into_iter().map(crate::engine::process_cpu_us).sum()
    }

    /// The server processes measured: the embedded replicas alive, or `--server-pid`.
    pub fn server_pids(&self) -> Vec<u32> {
        if self.embedded.is_empty() {
            return self.server_pid.into_iter().collect();
        }
        self.embedded
            .iter()
            .filter(|s| s.alive())
            .map(|s| s.pid())
            .collect()
    }

    pub fn skipped(&self, name: &str) -> bool {
        self.options.skip.iter().any(|s| s == name)
    }

    pub fn drain_segments(&mut self) {
        for segment in self.segments.try_iter() {
            self.merged
                .entry(segment.segment)
                .or_default()
                .merge(&segment.metrics);
        }
    }

    /// The merged metrics of a segment so far.
    pub fn segment_metrics(&self, segment: Segment) -> Option<&ShardMetrics> {
        self.merged.get(&segment.id())
    }

    /// Samples every `SAMPLE_INTERVAL` until `done` holds (`Ok(true)`) or `limit` passes
    /// (`Ok(false)`); `Err(Stopped)` on SIGINT/SIGTERM or when a shard ended.
    pub fn wait(
        &mut self,
        feed: &mut crate::engine::TimelineFeed,
        limit: Duration,
        done: impl FnMut(&mut Self) -> bool,
    ) -> Result<bool, Halt> {
        self.wait_every(feed, limit, SAMPLE_INTERVAL, done)
    }

    /// `wait`, checking `done` every `interval`.
    pub fn wait_every(
        &mut self,
        feed: &mut crate::engine::TimelineFeed,
        limit: Duration,
        interval: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Result<bool, Halt> {
        let until = Instant::now() + limit;
        loop {
            feed.drain();
            self.drain_segments();
            let label = self.phases.last().map_or("", |p| p.report.name.as_str());
            let label = label.to_string();
            self.progress
                .tick(&label, self.now_s(), self.held(), self.answering(), feed);
            if self.stopped() {
                return Err(Halt::Stopped);
            }
            if done(self) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(false);
            }
            std::thread::sleep(interval.min(until - now));
        }
    }

    /// Lets `duration` pass, sampling.
    pub fn pass(&mut self, feed: &mut crate::engine::TimelineFeed, duration: Duration) -> Step {
        self.wait(feed, duration, |_| false).map(|_| ())
    }

    /// The command for `segment` with the run's defaults: hold what is held, no load.
    pub fn command_for(&self, segment: Segment, label: &'static str) -> Command {
        Command {
            segment: segment.id(),
            label,
            hold: self.hold,
            load: false,
            rate_per_s: 0,
            drop_fraction: 0.0,
            delete_sessions: false,
            stall_after: self.stall_after,
            mark: self.mark,
            in_flight_max: 0,
            ramp_over: self.ramp_over,
            fault_stage: self.fault_stage,
        }
    }

    /// Publishes `command` and waits until every shard applied it (so the segment that ended
    /// has been handed over). A shard that does not acknowledge in time is named in the
    /// current phase's note: its figures may be late or missing.
    pub fn command(&mut self, feed: &mut crate::engine::TimelineFeed, command: Command) -> Step {
        let load = command.load;
        let hold = command.hold;
        let seq = self.shared.publish(command);
        let published = Instant::now();
        if let Some(phase) = self.phases.last_mut() {
            // The load's own time: from the publish that turned it on to the one that turned
            // it off (the phase's time also holds the waits around it).
            match (load, phase.load_started) {
                (true, None) => phase.load_started = Some(published),
                (false, Some(started)) if phase.load_s.is_none() => {
                    phase.load_s = Some((published - started).as_secs_f64());
                }
                _ => {}
            }
        }
        self.hold = hold;
        let shared = self.shared;
        // Shards apply a command within a loop turn (≤ 5 ms): poll finely, so a phase's
        // boundaries are where the driver thinks they are.
        let acked = self.wait_every(feed, ACK_TIMEOUT, ACK_POLL, |_| shared.all_acked(seq))?;
        self.drain_segments();
        if !acked {
            let missing: Vec<String> = (0..shared.acked.len())
                .filter(|&i| shared.acked[i].load(Ordering::SeqCst) < seq)
                .map(|i| i.to_string())
                .collect();
            self.add_note(format!(
                "shard {} did not apply a command within {ACK_TIMEOUT:?}: its figures of this phase may be incomplete",
                missing.join(", ")
            ));
        }
        Ok(())
    }

    /// Load off for the current phase's drain segment, then waits (at most `DRAIN_MAX`, and
    /// never past the request timeout) until its requests in flight are answered and every
    /// shard has handed their figures over. What is left is the phase's `in_flight_at_end`.
    pub fn drain(&mut self, feed: &mut crate::engine::TimelineFeed, segment: Segment) -> Step {
        self.current().segments.push(segment.id());
        let label = self.current_label();
        self.command(feed, self.command_for(segment, label))?;
        let limit = DRAIN_MAX.min(self.options.run.request_timeout);
        let shared = self.shared;
        let drain_start = Instant::now();
        self.wait_every(feed, limit, ACK_POLL * 5, |_| {
            Shared::sum(&shared.in_flight) == 0 && shared.segments_settled()
        })?;
        // The phase's answers came in until now: its throughput is over the load and this.
        if let Some(load_s) = &mut self.current().load_s {
            *load_s += drain_start.elapsed().as_secs_f64();
        }
        self.drain_segments();
        Ok(())
    }

    fn current_label(&self) -> &'static str {
        let name = self.phases.last().map_or("", |p| p.report.name.as_str());
        crate::report::PHASE_NAMES
            .iter()
            .find(|n| **n == name)
            .copied()
            .unwrap_or("ramp_up")
    }

    pub fn begin(&mut self, name: &str, segment: Segment) {
        let mut run = PhaseRun::new(name, PhaseStatus::Completed, self.now_s());
        run.segments.push(segment.id());
        run.report.sessions.target = self.connections();
        self.phases.push(run);
        if let Some(late_ms) = self.boundary_late_ms.take() {
            self.add_note(format!(
                "began {:.1} s after its scheduled start (the phase before ran past its slot): the segments were not in step here",
                late_ms as f64 / 1000.0
            ));
        }
    }

    pub fn current(&mut self) -> &mut PhaseRun {
        match self.phases.last_mut() {
            Some(phase) => phase,
            None => unreachable!("a phase is begun before it is used"),
        }
    }

    pub fn add_note(&mut self, note: String) {
        let report = &mut self.current().report;
        report.note = Some(match report.note.take() {
            Some(earlier) => format!("{earlier}; {note}"),
            None => note,
        });
    }

    /// Ends the current phase with `status` now; what is still in flight is counted with the
    /// age of its oldest request.
    pub fn end(&mut self, status: PhaseStatus) {
        let now_s = self.now_s();
        let in_flight = self.in_flight();
        let oldest = self
            .shared
            .oldest_in_flight_sent_ns
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .filter(|&o| o > 0)
            .min()
            .unwrap_or(0);
        let phase = self.current();
        phase.report.status = status;
        phase.report.duration_s = now_s - phase.report.start_s;
        phase.in_flight_at_end = in_flight;
        phase.oldest_in_flight_sent_ns = if in_flight > 0 { oldest } else { 0 };
        phase.host_steal_pct = phase
            .cpu_at_start
            .zip(crate::sys::cpustat::read())
            .and_then(|(start, now)| crate::sys::cpustat::steal_pct(start, now));
    }

    pub fn push_skipped(&mut self, name: &str) {
        let now_s = self.now_s();
        self.phases
            .push(PhaseRun::new(name, PhaseStatus::Skipped, now_s));
    }

    /// The run stopped: the current phase is interrupted (or aborted), the rest not run.
    pub fn halt(&mut self, halt: &Halt) {
        if self.phases.is_empty() {
            self.begin("baseline", Segment::Baseline);
        }
        let ended = self.phases.last().is_some_and(|p| {
            p.report.duration_s > 0.0 || p.report.status != PhaseStatus::Completed
        });
        match halt {
            Halt::Stopped => {
                if !ended {
                    self.end(PhaseStatus::Interrupted);
                } else if let Some(last) = self.phases.last_mut()
                    && last.report.status == PhaseStatus::Completed
                {
                    // Ended cleanly just before the stop: keep it.
                }
                self.interrupted = true;
            }
            Halt::Aborted => {
                if !ended {
                    self.end(PhaseStatus::Aborted);
                }
            }
            Halt::CouldNotRun(_) => {
                if !ended {
                    self.end(PhaseStatus::Aborted);
                }
            }
        }
        let now_s = self.now_s();
        for name in crate::report::PHASE_NAMES {
            if !self.phases.iter().any(|p| p.report.name == name) {
                self.phases
                    .push(PhaseRun::new(name, PhaseStatus::NotRun, now_s));
            }
        }
    }
}
