//! sustained: hold every session at the offered rate for `--sustain`: latency, throughput,
//! errors, saturation, memory per connection (taken at full hold by `ramp`), memory growth per
//! minute, CPU per request of the generator and the server. Its requests drain (load off)
//! before failure_recovery starts, so no backlog is inherited.

use crate::engine::TimelineFeed;
use crate::report::{CpuFigures, PhaseStatus};
use crate::scenario::driver::{Driver, Segment, Step};
use crate::scenario::logic;
use std::time::{Duration, Instant};

pub fn run(d: &mut Driver<'_>, feed: &mut TimelineFeed) -> Step {
    if d.skipped("sustained") {
        d.push_skipped("sustained");
        return Ok(());
    }
    d.begin("sustained", Segment::Sustained);
    let rate = d.rate_per_s;
    d.current().report.offered_rps = (rate > 0).then_some(rate as f64);
    d.current().report.offered_from = Some(offered_from(d));
    let cpu_start = crate::engine::self_cpu_us();
    let server_cpu_start = d.server_cpu_us();
    d.command(
        feed,
        crate::engine::control::Command {
            load: true,
            rate_per_s: rate,
            ..d.command_for(Segment::Sustained, "sustained")
        },
    )?;
    let phase_start = Instant::now();
    let mut client_rss = Vec::new();
    let mut server_rss = Vec::new();
    let mut next_sample = Instant::now();
    d.wait(feed, d.options.sustain, |d| {
        if Instant::now() >= next_sample {
            let t = phase_start.elapsed().as_secs_f64();
            client_rss.push((t, crate::engine::rss_bytes()));
            if let Some(bytes) = d.server_rss_bytes() {
                server_rss.push((t, bytes));
            }
            next_sample += Duration::from_secs(1);
        }
        false
    })?;
    let cpu_us = crate::engine::self_cpu_us().saturating_sub(cpu_start);
    let server_cpu_us = match (server_cpu_start, d.server_cpu_us()) {
        (Some(start), Some(end)) => Some(end.saturating_sub(start)),
        _ => None,
    };
    d.drain(feed, Segment::Drain(2))?;
    let mut memory = d.memory.clone().unwrap_or_default();
    // High-water marks over everything so far (the ramp's transient buffers included).
    let held = d.held().max(1) as f64;
    let client_hwm = crate::engine::proc_kib("/proc/self/status", "VmHWM:").map(|kib| kib * 1024);
    memory.client_peak_bytes_per_conn =
        client_hwm.map(|hwm| hwm.saturating_sub(d.rss_idle_bytes) as f64 / held);
    memory.server_peak_bytes_per_conn =
        match (d.server_rss_idle_bytes, d.server_status_bytes("VmHWM:")) {
            (Some(idle), Some(hwm)) => Some(hwm.saturating_sub(idle) as f64 / held),
            _ => None,
        };
    let phase = d.current();
    phase.cpu_us = Some(cpu_us);
    phase.report.memory = Some(crate::report::MemoryFigures {
        client_rss_growth_bytes_per_min: logic::growth_bytes_per_min(&client_rss),
        server_rss_growth_bytes_per_min: logic::growth_bytes_per_min(&server_rss),
        ..memory
    });
    phase.report.cpu = Some(CpuFigures {
        generator_cpu_s: cpu_us as f64 / 1e6,
        server_cpu_s: server_cpu_us.map(|us| us as f64 / 1e6),
        // Filled from the request count when the figures are merged.
        generator_cpu_us_per_request: None,
    });
    d.end(PhaseStatus::Completed);
    Ok(())
}

/// How the offered rate was chosen, in the report's words.
fn offered_from(d: &Driver<'_>) -> String {
    if d.rate_per_s == 0 {
        return "closed loop (--rate 0): every held session sends its next request when the last is answered".into();
    }
    match d.options.rate_per_s {
        Some(_) => "--rate".into(),
        None => {
            let probe = d
                .phases
                .iter()
                .find_map(|p| p.report.rate_probe.as_ref().map(|r| r.achieved_rps));
            match probe {
                Some(achieved) => format!(
                    "{:.0}% of the {achieved:.0} req/s the server carried in ramp_up's closed-loop probe (no --rate given)",
                    logic::SUSTAINED_SHARE_OF_PROBE * 100.0
                ),
                None => "the least rate (no --rate, no probe result)".into(),
            }
        }
    }
}
