//! A run as one segment of many (`--segment I/N`, issue 13): the options scaled to the
//! segment's share before anything starts, the common start (`--start-at`), and what the
//! segment's report says about itself for `mcpstorm merge`. Part of `scenario/`; the shares
//! are `engine/segment.rs`'s.
//!
//! Every segment runs the same phases from the same options, so their schedules agree
//! wherever the run does not adapt to what it measures; the ramp's end, the recovery wait
//! and the capacity search's stop are decided by each segment on its own share, and the
//! merged report shows each segment's phase times beside the merged figures.

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
