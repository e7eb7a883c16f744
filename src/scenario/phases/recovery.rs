//! failure_recovery: load on at the sustained rate, inject the fault, and measure the way
//! back. A session answers when it has a connection and a session, a load request on it
//! succeeded after it lost them, and no request has stalled on it past a bound derived from
//! the server's own latency (`logic::stall_after_us`) — so a frozen server, whose connections
//! never close, is seen not answering. Reported: recovery time (99 %), the curve to 50/90/99 %,
//! the first success after the fault, requests lost, and the kernel's TCP counters over the
//! phase (what limited a slow recovery).

use crate::engine::TimelineFeed;
use crate::engine::control::{Command, FaultStage};
use crate::report::{PhaseStatus, Recovery};
use crate::scenario::driver::{Driver, SAMPLE_INTERVAL, Segment, Step};
use crate::scenario::figures;
use crate::scenario::logic::{self, Fault};
use crate::sys::netstat;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Load kept on before the fault, so requests are in flight when it strikes.
const PRE_FAULT: Duration = Duration::from_secs(1);
/// Load kept on after recovery, so the phase shows the recovered service.
const POST_RECOVERY: Duration = Duration::from_secs(1);
/// Share of the sessions answering before the fault that must answer again.
const RECOVERED_FRACTION: f64 = 0.99;

/// A fault still under way while the driver samples.
enum Ongoing {
    Over,
    /// The embedded server was killed; it starts again at this instant.
    Restart {
        at: Instant,
    },
    /// The user's command runs.
    Exec(std::process::Child),
    /// The guard's rules are installed until this instant.
    Network {
        heal_at: Instant,
    },
    /// A replica was killed: the fault lasts until its sessions answer on the others.
    Failover,
}

/// Removes a network fault's rules (the guard answers once they are gone).
fn heal_network(d: &mut Driver<'_>) {
    let healed = d.net_guard.as_mut().map(|g| g.heal());
    match healed {
        Some(Ok(heal)) => d.net_heal = Some(heal),
        Some(Err(e)) => d.add_note(format!("the network fault could not be removed: {e}")),
        None => {}
    }
}

/// What the guard installed, for the report (a network fault only).
fn network_report(d: &Driver<'_>) -> Option<crate::report::NetworkFaultReport> {
    let Fault::Network { impairment, .. } = &d.options.fault else {
        return None;
    };
    let guard = d.net_guard.as_ref()?;
    let heal = d.net_heal.unwrap_or_default();
    Some(crate::report::NetworkFaultReport {
        injected: impairment.describe(),
        addresses: guard
            .fault()
            .targets
            .iter()
            .map(|t| t.to_string())
            .collect(),
        mechanism: impairment.mechanism(guard.fault().owner_pid),
        installed_s: heal.installed_s,
        packets_delayed: heal.delay.map(|s| s.packets_delayed),
        packets_held_max: heal.delay.map(|s| s.held_max),
        packets_dropped: heal.delay.map(|s| s.packets_dropped),
        packets_passed: heal.delay.map(|s| s.packets_passed),
    })
}

pub fn run(d: &mut Driver<'_>, feed: &mut TimelineFeed) -> Step {
    if d.skipped("failure_recovery") {
        d.push_skipped("failure_recovery");
        return Ok(());
    }
    d.stall_after = stall_bound(d);
    d.begin("failure_recovery", Segment::Recovery);
    let rate = d.rate_per_s;
    d.current().report.offered_rps = (rate > 0).then_some(rate as f64);
    let kernel_before = netstat::read();
    let load = Command {
        load: true,
        rate_per_s: rate,
        ..d.command_for(Segment::Recovery, "failure_recovery")
    };
    d.command(feed, load.clone())?;
    let mut failover = super::failover::FailoverWatch::start(d);
    d.pass(feed, PRE_FAULT)?;
    let before = d.answering();
    // `--streams`: the streams held before the fault must be held again too.
    let streams_before = d.streams_held();
    let mut streams_back_s = (streams_before == 0).then_some(0.0);
    if let Some(watch) = &mut failover {
        let killed = match d.options.fault {
            Fault::KillReplica { replica } => Some(replica - 1),
            _ => None,
        };
        watch.at_fault(d, killed);
    }
    let fault_t = Instant::now();
    let fault_ns = d.shard_now_ns();
    d.mark += 1;
    d.fault_stage = FaultStage::On;
    d.current().segments.push(Segment::FaultOn.id());
    let mut ongoing = inject(d, feed, load.clone())?;
    let needed = (before as f64 * RECOVERED_FRACTION).ceil() as u64;
    // A stall is seen only after `stall_after` (and the next sweep): watch at least that long.
    let watch_min = d.stall_after * 2 + Duration::from_millis(200);
    let mut samples = vec![(0.0, before)];
    let limit = d.options.recovery_timeout;
    // While the fault is under way (a restart's down time, a partition's length, the
    // command's run): its own segment, so the report has figures during and after it.
    let over = d.wait_every(feed, limit, RECOVERY_SAMPLE, |d| {
        ongoing = advance(d, std::mem::replace(&mut ongoing, Ongoing::Over));
        let t_s = fault_t.elapsed().as_secs_f64();
        samples.push((t_s, d.answering()));
        let failed_over = failover.as_mut().is_none_or(|w| w.sample(d, t_s));
        if matches!(ongoing, Ongoing::Failover) && failed_over {
            ongoing = Ongoing::Over;
        }
        matches!(ongoing, Ongoing::Over)
    })?;
    match ongoing {
        Ongoing::Exec(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
            d.add_note("the fault command was still running at --recovery-timeout: killed".into());
        }
        Ongoing::Network { .. } => {
            heal_network(d);
            d.add_note("the network fault was still on at --recovery-timeout: removed".into());
        }
        Ongoing::Failover => d.add_note(
            "the killed replica's sessions were not all answering elsewhere at --recovery-timeout"
                .into(),
        ),
        Ongoing::Over | Ongoing::Restart { .. } => {}
    }
    let heal_s = fault_t.elapsed().as_secs_f64();
    d.fault_stage = FaultStage::Healed;
    d.current().segments.push(Segment::FaultOver.id());
    d.command(
        feed,
        Command {
            segment: Segment::FaultOver.id(),
            mark: d.mark,
            fault_stage: FaultStage::Healed,
            ..load.clone()
        },
    )?;
    let recovered = over
        && d.wait_every(
            feed,
            limit.saturating_sub(fault_t.elapsed()),
            RECOVERY_SAMPLE,
            |d| {
                let answering = d.answering();
                let t_s = fault_t.elapsed().as_secs_f64();
                samples.push((t_s, answering));
                // With replicas, also until the failed one's sessions answer elsewhere.
                let failed_over = failover.as_mut().is_none_or(|w| w.sample(d, t_s));
                if streams_back_s.is_none() && d.streams_held() >= streams_before {
                    streams_back_s = Some(t_s);
                }
                fault_t.elapsed() >= watch_min
                    && answering >= needed
                    && failed_over
                    && streams_back_s.is_some()
            },
        )?;
    let recovery_s =
        logic::recovery_time_s(before, &samples, RECOVERED_FRACTION).filter(|_| recovered);
    let first_success_s = d
        .shared
        .first_ok_after_mark_ns
        .iter()
        .map(|f| f.load(Ordering::Relaxed))
        .filter(|&ns| ns > fault_ns)
        .min()
        .map(|ns| (ns - fault_ns) as f64 / 1e9);
    if let Some(watch) = &mut failover {
        watch.at_recovered(d);
    }
    d.pass(feed, POST_RECOVERY)?;
    let restored = d.answering();
    let failover = failover.and_then(|watch| watch.report(d));
    d.fault_stage = FaultStage::Off;
    d.drain(feed, Segment::Drain(3))?;
    if recovered && streams_back_s.is_none() {
        d.add_note(format!(
            "{} of {streams_before} streams held again after --recovery-timeout",
            d.streams_held()
        ));
    }
    if !recovered {
        d.add_note(format!(
            "{restored} of {before} sessions answering after --recovery-timeout {:?}",
            d.options.recovery_timeout
        ));
    }
    let kernel_tcp = netstat::deltas(
        &kernel_before,
        &netstat::read(),
        &netstat::RECOVERY_COUNTERS,
    );
    let stall_after_ms = d.stall_after.as_secs_f64() * 1e3;
    let fault = d.options.fault.describe();
    let after_heal: Vec<(f64, u64)> = samples
        .iter()
        .filter(|(t, _)| *t >= heal_s)
        .map(|&(t, answering)| (t - heal_s, answering))
        .collect();
    let effects = crate::report::FaultEffects {
        heal_s,
        from_heal: logic::recovery_curve(
            before,
            &after_heal,
            first_success_s.map(|f| (f - heal_s).max(0.0)),
        ),
        network: network_report(d),
        // The rest is counted by the shards: filled with the phase's figures.
        ..Default::default()
    };
    d.current().report.recovery = Some(Recovery {
        fault,
        recovery_s,
        sessions_before: before,
        sessions_restored: restored.min(before),
        // Filled from the shards' count of requests lost with their connection.
        requests_lost: 0,
        stall_after_ms,
        curve: logic::recovery_curve(before, &samples, first_success_s),
        kernel_tcp,
        effects: Some(effects),
        failover,
        streams_before,
        streams_back_s: streams_back_s.filter(|_| streams_before > 0),
    });
    d.end(PhaseStatus::Completed);
    // Stalls are judged while recovery is measured; later phases do without the shards'
    // faster sweep (a slab pass every quarter of the bound costs CPU at 100K sessions).
    d.stall_after = Duration::ZERO;
    Ok(())
}

/// The stall bound from the server's latency so far (sustained p99, baseline p99) and the SLA.
fn stall_bound(d: &Driver<'_>) -> Duration {
    let p99 = |segment: Segment| {
        let m = figures::merge_segments(&d.merged, &[segment.id()]);
        crate::report::Percentiles::of(&m.all.corrected).p99
    };
    Duration::from_micros(logic::stall_after_us(
        d.options.sla.p95_latency_us,
        p99(Segment::Sustained),
        p99(Segment::Baseline),
    ))
}

/// Starts the fault; returns what is still under way.
fn inject(
    d: &mut Driver<'_>,
    feed: &mut TimelineFeed,
    load: Command,
) -> Result<Ongoing, crate::scenario::driver::Halt> {
    // The mark goes out once the fault is under way: the shards note the first success of a
    // request sent after it, and count every connection lost from then on as down.
    let mark = Command {
        mark: d.mark,
        segment: Segment::FaultOn.id(),
        fault_stage: FaultStage::On,
        ..load
    };
    let ongoing = match d.options.fault.clone() {
        Fault::Restart { down_s } => {
            if d.embedded.is_empty() {
                d.add_note("no embedded server to restart".into());
                Ongoing::Over
            } else {
                // Every replica: the whole service restarts.
                for server in d.embedded.iter_mut() {
                    server.kill();
                }
                Ongoing::Restart {
                    at: Instant::now() + Duration::from_secs_f64(down_s),
                }
            }
        }
        Fault::KillReplica { replica } => match d.embedded.get_mut(replica - 1) {
            Some(server) => {
                server.kill();
                Ongoing::Failover
            }
            None => {
                d.add_note(format!("no embedded replica {replica} to kill"));
                Ongoing::Over
            }
        },
        Fault::Drop { fraction } => {
            // One command: the mark and the resets land together.
            d.command(
                feed,
                Command {
                    drop_fraction: fraction,
                    ..mark
                },
            )?;
            return Ok(Ongoing::Over);
        }
        Fault::Network { duration_s, .. } => match d.net_guard.as_mut().map(|g| g.inject()) {
            Some(Ok(())) => Ongoing::Network {
                heal_at: Instant::now() + Duration::from_secs_f64(duration_s),
            },
            Some(Err(e)) => {
                d.add_note(format!("the network fault could not be injected: {e}"));
                Ongoing::Over
            }
            None => {
                d.add_note("no fault guard to inject the network fault".into());
                Ongoing::Over
            }
        },
        Fault::Exec { command } => {
            match std::process::Command::new("sh")
                .args(["-c", &command])
                .spawn()
            {
                Ok(child) => Ongoing::Exec(child),
                Err(e) => {
                    d.add_note(format!("cannot run the fault command: {e}"));
                    Ongoing::Over
                }
            }
        }
    };
    d.command(feed, mark)?;
    Ok(ongoing)
}

/// Moves a fault under way on (called every `SAMPLE_INTERVAL`).
fn advance(d: &mut Driver<'_>, ongoing: Ongoing) -> Ongoing {
    match ongoing {
        Ongoing::Over => Ongoing::Over,
        // Over once the failed-over sessions answer (the sampler decides).
        Ongoing::Failover => Ongoing::Failover,
        Ongoing::Restart { at } if Instant::now() < at => Ongoing::Restart { at },
        Ongoing::Restart { .. } => {
            let replicas = d.embedded.len();
            let failed: Vec<String> = d
                .embedded
                .iter_mut()
                .enumerate()
                .filter_map(|(i, server)| {
                    let which = if replicas > 1 {
                        format!(" (replica {})", i + 1)
                    } else {
                        String::new()
                    };
                    server
                        .start_again()
                        .err()
                        .map(|e| format!("the server did not come back{which}: {e}"))
                })
                .collect();
            let back = failed.is_empty();
            for note in failed {
                d.add_note(note);
            }
            if back {
                d.server_pid = d.embedded.first().map(|s| s.pid());
                d.leak_baseline_bytes = d.server_rss_bytes();
            }
            Ongoing::Over
        }
        Ongoing::Network { heal_at } if Instant::now() < heal_at => Ongoing::Network { heal_at },
        Ongoing::Network { .. } => {
            heal_network(d);
            Ongoing::Over
        }
        Ongoing::Exec(mut child) => match child.try_wait() {
            Ok(None) => Ongoing::Exec(child),
            Ok(Some(status)) => {
                if !status.success() {
                    d.add_note(format!("the fault command exited {status}"));
                }
                Ongoing::Over
            }
            Err(e) => {
                d.add_note(format!("cannot wait for the fault command: {e}"));
                Ongoing::Over
            }
        },
    }
}

/// How often the way back is sampled: the recovery time's resolution.
const RECOVERY_SAMPLE: Duration = Duration::from_millis(10);
const _: () = assert!(RECOVERY_SAMPLE.as_millis() < SAMPLE_INTERVAL.as_millis());
