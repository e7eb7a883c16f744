//! A run as one segment of many (`--segment I/N`, issue 13): the options scaled to the
//! segment's share before anything starts, the common start (`--start-at`), and what the
//! segment's report says about itself for `mcpstorm merge`. Part of `scenario/`; the shares
//! are `engine/segment.rs`'s.
//!
//! Phase boundaries: a fixed schedule computed from the options (`Schedule`), not a control
//! channel. With `--start-at`, every segment starts each phase at the same scheduled time —
//! one slot per phase, sized from the options (the ramp from the connections and the connect
//! rate, the recovery from its timeout and the fault, the capacity search from its steps) —
//! and idles holding its sessions when a phase ends early; the capacity search climbs a fixed
//! ladder (`CapacitySearch::ladder`). Chosen because it needs nothing between the segments
//! (no address to know in advance, nothing to fail mid-run: a segment that dies cannot stall
//! the others) and keeps every segment's steps at the same rates and times, so the merge adds
//! like with like. The cost: idle time where a phase ends before its slot, and a phase that
//! overruns its slot starts the next one late (said in that phase's note).

use super::driver::PhasedOptions;
use super::run::RunError;
use crate::engine::segment::ExecutionSegment;
use crate::report::SegmentInfo;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest `--start-at` may lie ahead (a typo of a year must not park a pod for ever).
const START_AHEAD_MAX: Duration = Duration::from_secs(24 * 3600);

/// The options of this segment: its share of every rate (the connections are shared by the
/// plan). A whole run's options come back as they are.
pub fn scaled(options: &PhasedOptions) -> Result<PhasedOptions, RunError> {
    let segment = options.run.segment;
    let mut scaled = options.clone();
    if segment.is_whole() {
        return Ok(scaled);
    }
    if options.run.urls.is_empty() {
        return Err(RunError::Options(format!(
            "--segment {}: the segments of a run load one server; give its URL (an embedded server per segment would measure N servers)",
            segment.label()
        )));
    }
    let share = |name: &str, rate: u64| -> Result<u64, RunError> {
        let mine = segment.share(rate);
        if rate > 0 && mine == 0 {
            return Err(RunError::Options(format!(
                "{name} {rate} over {} segments leaves segment {} none: raise it or use fewer segments",
                segment.count,
                segment.label()
            )));
        }
        Ok(mine)
    };
    scaled.run.connect_rate_per_s = share("--connect-rate", options.run.connect_rate_per_s)?;
    scaled.run.reconnect_rate_per_s = share("--reconnect-rate", options.run.reconnect_rate_per_s)?;
    scaled.rate_per_s = match options.rate_per_s {
        Some(rate) => Some(share("--rate", rate)?),
        None => None,
    };
    // The performance search starts from the segment's share of the rate and multiplies it
    // by the same factor each step: the segments' steps add up to the whole run's (each
    // rounded to whole requests per second).
    Ok(scaled)
}

/// Waits until `start_at_unix_ms` (`--start-at`), or returns at once when it has passed:
/// how late this process was (ms, 0 when on time).
pub fn wait_for_start(start_at_unix_ms: u64) -> Result<u64, RunError> {
    let now_ms = unix_now_ms();
    if start_at_unix_ms > now_ms {
        let ahead = Duration::from_millis(start_at_unix_ms - now_ms);
        if ahead > START_AHEAD_MAX {
            return Err(RunError::Options(format!(
                "--start-at is {:.0} s ahead (more than {} h): is it UNIX seconds?",
                ahead.as_secs_f64(),
                START_AHEAD_MAX.as_secs() / 3600
            )));
        }
        // Sleep in short steps: a Ctrl-C while waiting ends the run at once.
        let until = std::time::Instant::now() + ahead;
        while std::time::Instant::now() < until {
            if crate::sys::signal::stop_requested() {
                return Err(RunError::Options(
                    "interrupted while waiting for --start-at".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20).min(until - std::time::Instant::now()));
        }
        return Ok(0);
    }
    Ok(now_ms - start_at_unix_ms)
}

pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the segment's report says about the segment (None for a whole run).
pub fn info(
    options: &PhasedOptions,
    late_ms: Option<u64>,
    started_unix_ms: u64,
    clock: Option<super::clock::Sample>,
) -> Option<SegmentInfo> {
    let segment: ExecutionSegment = options.run.segment;
    let start_at_unix_ms = options.start_at_unix_ms;
    if segment.is_whole() && start_at_unix_ms.is_none() && options.clock_ref.is_none() {
        return None;
    }
    Some(SegmentInfo {
        index: segment.index,
        count: segment.count,
        run_connections: u64::from(options.run.connections),
        start_at_unix_ms,
        started_unix_ms,
        late_ms,
        host: crate::sys::facts::hostname(),
        clock_reference: options.clock_ref.clone(),
        clock_offset_ms: clock.map(|c| c.offset_ms),
        clock_rtt_ms: clock.map(|c| c.rtt_ms),
    })
}

/// `--clock-serve PORT`: answers clock probes (both IP families) while the run lasts.
pub fn serve_clock(port: u16) -> Result<(), RunError> {
    let socket = super::clock::bind(std::net::SocketAddr::from(([0u8; 16], port)))
        .or_else(|_| super::clock::bind(std::net::SocketAddr::from(([0u8; 4], port))))
        .map_err(RunError::Options)?;
    super::clock::serve(socket);
    Ok(())
}

/// `--clock-ref HOST:PORT`: this host's clock against the reference, probed until the common
/// start (or for two seconds without one). None when it did not answer (said in the report).
pub fn measure_clock(
    reference: &str,
    start_at_unix_ms: Option<u64>,
) -> Result<Option<super::clock::Sample>, RunError> {
    use std::net::ToSocketAddrs;
    let addr = reference
        .to_socket_addrs()
        .map_err(|e| RunError::Options(format!("--clock-ref {reference}: {e}")))?
        .next()
        .ok_or_else(|| RunError::Options(format!("--clock-ref {reference}: no address")))?;
    let until = match start_at_unix_ms {
        Some(at) if at > unix_now_ms() => {
            std::time::Instant::now() + Duration::from_millis(at - unix_now_ms())
        }
        _ => std::time::Instant::now() + Duration::from_secs(2),
    };
    Ok(super::clock::measure(addr, until))
}

/// The phases' scheduled starts of a segmented run (see the module's header), UNIX ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    starts: Vec<(&'static str, u64)>,
}

/// Sessions per second one process opens unpaced, at the least (measured here: 13.6K–19K/s
/// at 100K): the ramp slot of a run without `--connect-rate`.
const UNPACED_SESSIONS_PER_S: u64 = 10_000;

/// A started phase later than this after its slot's start is noted as late.
pub const LATE_BOUNDARY_MS: u64 = 1_000;

impl Schedule {
    /// The slots of `options`' phases from `start_at_unix_ms`; `run_connections` is the whole
    /// run's (each segment's ramp opens its share at its share of the rate: the same time).
    pub fn of(options: &PhasedOptions, start_at_unix_ms: u64) -> Schedule {
        let skipped = |name: &str| options.skip.iter().any(|s| s == name);
        let ms = |d: Duration| d.as_millis() as u64;
        // This segment's share at its share of the connect rate (the same time for every
        // segment); unpaced, at the 10K sessions/s a process opens at the least here.
        let connections = options
            .run
            .segment
            .share(u64::from(options.run.connections));
        let rate = match options.run.connect_rate_per_s {
            0 => UNPACED_SESSIONS_PER_S,
            rate => rate,
        };
        // Twice the ramp's planned time and 5 s, within the ramp's own timeout.
        let ramp_ms =
            (connections * 2_000 / rate + 5_000).min(ms(options.run.ramp_timeout) + 1_000);
        let fault_ms = match &options.fault {
            super::logic::Fault::Restart { down_s } => (down_s * 1000.0) as u64,
            super::logic::Fault::Network { duration_s, .. } => (duration_s * 1000.0) as u64,
            _ => 0,
        };
        let slots: [(&'static str, u64); 6] = [
            ("baseline", ms(options.baseline) + 2_000),
            ("ramp_up", ramp_ms),
            ("sustained", ms(options.sustain) + 5_000),
            (
                "failure_recovery",
                fault_ms + ms(options.recovery_timeout) + 8_000,
            ),
            (
                "performance",
                options.steps_max as u64 * (ms(options.step) + 4_000) + 2_000,
            ),
            ("cool_down", 0),
        ];
        let mut at = start_at_unix_ms;
        let mut starts = Vec::with_capacity(slots.len());
        for (name, slot_ms) in slots {
            starts.push((name, at));
            if !skipped(name) {
                at += slot_ms;
            }
        }
        Schedule { starts }
    }

    pub fn start_of(&self, phase: &str) -> Option<u64> {
        self.starts
            .iter()
            .find(|(name, _)| *name == phase)
            .map(|(_, at)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(skip: &[&str]) -> PhasedOptions {
        PhasedOptions {
            run: crate::engine::plan::RunOptions {
                connections: 100_000,
                connect_rate_per_s: 20_000,
                ..crate::engine::plan::tests::options()
            },
            rate_per_s: Some(1000),
            sla: Default::default(),
            skip: skip.iter().map(|s| s.to_string()).collect(),
            baseline: Duration::from_secs(5),
            sustain: Duration::from_secs(30),
            fault: super::super::logic::Fault::Restart { down_s: 2.0 },
            recovery_timeout: Duration::from_secs(30),
            step: Duration::from_secs(10),
            step_factor: 1.5,
            steps_max: 4,
            quiet: true,
            discovery: false,
            start_at_unix_ms: Some(1_000_000),
            clock_serve: None,
            clock_ref: None,
        }
    }

    #[test]
    fn every_phase_has_its_slot_from_the_options() {
        let s = Schedule::of(&options(&[]), 1_000_000);
        assert_eq!(s.start_of("baseline"), Some(1_000_000));
        // baseline 5 s + 2 s; ramp 100K at 20K/s: 2 × 5 s + 5 s.
        assert_eq!(s.start_of("ramp_up"), Some(1_007_000));
        assert_eq!(s.start_of("sustained"), Some(1_022_000));
        assert_eq!(s.start_of("failure_recovery"), Some(1_057_000));
        // restart down 2 s + recovery timeout 30 s + 8 s.
        assert_eq!(s.start_of("performance"), Some(1_097_000));
        // 4 steps × (10 s + 4 s) + 2 s.
        assert_eq!(s.start_of("cool_down"), Some(1_155_000));
        let skipping = Schedule::of(&options(&["failure_recovery", "performance"]), 1_000_000);
        assert_eq!(skipping.start_of("cool_down"), Some(1_057_000));
        assert_eq!(skipping.start_of("nothing"), None);
    }
}
