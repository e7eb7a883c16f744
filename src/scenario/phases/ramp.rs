//! ramp_up: open the rest of the sessions at `--connect-rate`; aborts past the failure
//! threshold. Then, when the load phases' rate was not given (a URL target without --rate),
//! a short closed-loop probe over the held sessions measures what the server carries, and
//! the sustained phase offers a share of it (`logic::SUSTAINED_SHARE_OF_PROBE`).

use crate::engine::TimelineFeed;
use crate::engine::control::Shared;
use crate::engine::metrics::Counter;
use crate::report::{PhaseStatus, RateProbe};
use crate::scenario::driver::{Driver, Halt, Segment, Step};
use crate::scenario::{figures, logic};
use std::time::{Duration, Instant};

/// Length of the rate probe.
const RATE_PROBE: Duration = Duration::from_secs(3);

pub fn run(d: &mut Driver<'_>, feed: &mut TimelineFeed) -> Step {
    let n = d.connections();
    let baseline_held = d.held();
    d.begin("ramp_up", Segment::Ramp);
    if d.skipped("baseline") {
        // The baseline opened its few sessions but is not reported: their connects and TLS
        // handshakes count with the ramp's, so every session's are in a phase.
        d.current().segments.push(Segment::Baseline.id());
    }
    let ramp_start = Instant::now();
    d.command(
        feed,
        crate::engine::control::Command {
            hold: n,
            ..d.command_for(Segment::Ramp, "ramp_up")
        },
    )?;
    let mut aborted = false;
    let complete = d.wait(feed, d.options.run.ramp_timeout, |d| {
        let settled = Shared::sum(&d.shared.settled);
        let failed = Shared::sum(&d.shared.failed);
        if logic::ramp_must_abort(settled, failed) {
            aborted = true;
            return true;
        }
        settled >= n
    })?;
    let ramp_s = ramp_start.elapsed().as_secs_f64();
    let established = d.held();
    let report = &mut d.current().report;
    report.sessions.established = established;
    report.sessions.established_per_s =
        (ramp_s > 0.0).then(|| established.saturating_sub(baseline_held) as f64 / ramp_s);
    if aborted {
        let failed = Shared::sum(&d.shared.failed);
        d.add_note(format!(
            "aborted: {failed} sessions failed (more than {}% of those attempted)",
            logic::RAMP_FAILURE_PCT_MAX
        ));
        d.end(PhaseStatus::Aborted);
        return Err(Halt::Aborted);
    }
    if !complete {
        d.add_note(format!(
            "--ramp-timeout {:?} reached with {established} of {n} sessions: the rest are given up (ramp_timeout) and the load runs on those held",
            d.options.run.ramp_timeout
        ));
        d.ramp_over = true;
        d.command(feed, d.command_for(Segment::Ramp, "ramp_up"))?;
    }
    if !aborted {
        wait_for_streams(d, feed, ramp_start)?;
    }
    d.end(PhaseStatus::Completed);
    take_memory_at_full_hold(d);
    if d.options.rate_per_s.is_none() {
        probe_rate(d, feed)?;
    }
    Ok(())
}

/// Longest the ramp waits for streams that stopped coming (none opened meanwhile).
const STREAMS_STALLED: Duration = Duration::from_secs(5);

/// `--streams`: the held sessions' streams open after them; the ramp ends when they are
/// open too (so the memory at full hold counts both connections of each session), or when
/// none has opened for `STREAMS_STALLED` (a server that refuses them; the report counts why),
/// within what is left of `--ramp-timeout`.
fn wait_for_streams(d: &mut Driver<'_>, feed: &mut TimelineFeed, ramp_start: Instant) -> Step {
    let planned: u64 = d.plan.shards.iter().map(|s| u64::from(s.streams)).sum();
    if planned == 0 {
        return Ok(());
    }
    let n = d.connections().max(1);
    // The streams of the sessions held (all of them unless some failed).
    let expected = planned * d.held().min(n) / n;
    let left = d
        .options
        .run
        .ramp_timeout
        .saturating_sub(ramp_start.elapsed());
    let mut last = (d.streams_held(), Instant::now());
    let all = d.wait(feed, left, |d| {
        let held = d.streams_held();
        if held > last.0 {
            last = (held, Instant::now());
        }
        held >= expected || last.1.elapsed() > STREAMS_STALLED
    })?;
    let held = d.streams_held();
    if !all || held < expected {
        d.add_note(format!(
            "{held} of {expected} streams open when the ramp ended (see streams.failed_by_cause)"
        ));
    }
    Ok(())
}

/// Memory per held connection now, against what was there before any session opened.
fn take_memory_at_full_hold(d: &mut Driver<'_>) {
    std::thread::sleep(Duration::from_millis(20));
    let held = d.held();
    let per_held = |grown: i64| (held > 0).then(|| grown as f64 / held as f64);
    let rss = crate::engine::rss_bytes();
    let server_rss = d.server_rss_bytes();
    let slab = crate::engine::slab_bytes();
    let grown = |base: Option<u64>, now: Option<u64>| match (base, now) {
        (Some(base), Some(now)) => per_held(now as i64 - base as i64),
        _ => None,
    };
    d.memory = Some(crate::report::MemoryFigures {
        client_user_bytes_per_conn: per_held(rss as i64 - d.rss_before_bytes as i64),
        client_total_bytes_per_conn: per_held(rss as i64 - d.rss_idle_bytes as i64),
        // Taken after the sustained phase (sustained.rs).
        client_peak_bytes_per_conn: None,
        server_user_bytes_per_conn: grown(d.server_rss_before_bytes, server_rss),
        server_total_bytes_per_conn: grown(d.server_rss_idle_bytes, server_rss),
        server_peak_bytes_per_conn: None,
        // Two sockets for a session that holds a stream.
        kernel_bytes_per_socket: match (d.slab_before_bytes, slab) {
            (Some(before), Some(full)) if held > 0 => {
                Some((full as i64 - before as i64) as f64 / (held + d.streams_held()) as f64)
            }
            _ => None,
        },
        client_rss_growth_bytes_per_min: None,
        server_rss_growth_bytes_per_min: None,
    });
}

/// Closed loop over the held sessions (at most `RATE_PROBE_IN_FLIGHT_MAX` in flight) for
/// `RATE_PROBE`, drained after; its requests are reported in ramp_up's `rate_probe` only.
fn probe_rate(d: &mut Driver<'_>, feed: &mut TimelineFeed) -> Step {
    let in_flight_max = d.held().clamp(1, logic::RATE_PROBE_IN_FLIGHT_MAX);
    let probe_start = Instant::now();
    d.command(
        feed,
        crate::engine::control::Command {
            load: true,
            in_flight_max,
            ..d.command_for(Segment::RateProbe, "ramp_up")
        },
    )?;
    d.pass(feed, RATE_PROBE)?;
    // Load off, into the ramp's drain segment: the probe's answers still land in its own.
    d.drain(feed, Segment::Drain(1))?;
    // Its answers came in until the drain ended: what the server carried is over all of it (a
    // closed loop's last window of answers would otherwise count as carried in no time).
    let duration_s = probe_start.elapsed().as_secs_f64();
    let metrics = figures::merge_segments(&d.merged, &[Segment::RateProbe.id()]);
    let ok = metrics.get(Counter::requests_ok);
    let achieved_rps = ok as f64 / duration_s.max(1e-3);
    let mut requests = figures::requests_of(&metrics);
    requests.in_flight_at_end = d.in_flight();
    let shards = d.plan.shards.len() as u64;
    let derived = ((achieved_rps * logic::SUSTAINED_SHARE_OF_PROBE).round() as u64).max(shards);
    d.rate_per_s = derived;
    {
        let report = &mut d.current().report;
        report.rate_probe = Some(RateProbe {
            duration_s,
            in_flight_max,
            requests,
            achieved_rps,
            latency_us: crate::report::Percentiles::of(&metrics.all.corrected),
        });
    }
    if ok == 0 {
        d.add_note(format!(
            "the rate probe got no answer in {duration_s:.1} s ({} errors, {} still in flight): the load phases offer the least rate, {derived} req/s",
            metrics.get(Counter::requests_failed),
            d.in_flight()
        ));
    }
    Ok(())
}
