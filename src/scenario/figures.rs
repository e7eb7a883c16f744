//! A phase's figures from the merged metrics of its segments: requests accounted for
//! (offered = sent − probes + dropped), latency, errors by cause, saturation, and the
//! generator's self-check on its own signals only. Part of `scenario/`; I/O-free.

use super::driver::PhaseRun;
use crate::engine::metrics::{Counter, ShardMetrics};
use crate::report::{self, GeneratorCheck, Percentiles, PhaseReport, PhaseStatus, Saturation};
use std::collections::{BTreeMap, HashMap};

/// Every phase's report, filled from its merged segments, in the order of `PHASE_NAMES`.
pub fn finish_phases(
    mut phases: Vec<PhaseRun>,
    merged: &HashMap<u32, ShardMetrics>,
    end_s: f64,
    shard_epoch_s: f64,
    entry_labels: &[String],
) -> Vec<PhaseReport> {
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
        if matches!(report.status, PhaseStatus::Skipped | PhaseStatus::NotRun) {
            out.push(report);
            continue;
        }
        let metrics = merge_segments(merged, &phase.segments);
        let oldest_age_ms = (phase.oldest_in_flight_sent_ns > 0).then(|| {
            let end_ns = ((report.start_s + report.duration_s + shard_epoch_s) * 1e9) as u64;
            end_ns.saturating_sub(phase.oldest_in_flight_sent_ns) as f64 / 1e6
        });
        fill(
            &mut report,
            &metrics,
            entry_labels,
            phase.in_flight_at_end,
            oldest_age_ms,
            phase.cpu_us,
            phase.load_s,
        );
        if let Some(recovery) = &mut report.recovery
            && let Some(effects) = &mut recovery.effects
        {
            fill_fault_effects(effects, merged, &metrics);
            effects.connections_survived_min = recovery
                .sessions_before
                .saturating_sub(effects.connections_broken);
        }
        if let Some(segments) = &phase.generator_segments {
            report.generator = generator_check(&merge_segments(merged, segments), false);
        }
        report.generator.note_host_steal(phase.host_steal_pct);
        out.push(report);
    }
    out
}

/// What the shards counted of the fault: requests in flight during it by their end, the
/// connections it broke, and the figures before, during and after it (its drain included).
fn fill_fault_effects(
    effects: &mut report::FaultEffects,
    merged: &HashMap<u32, ShardMetrics>,
    phase: &ShardMetrics,
) {
    use super::driver::Segment;
    effects.requests_in_fault = report::FaultRequests {
        answered_during: phase.get(Counter::fault_requests_answered_during),
        answered_after_heal: phase.get(Counter::fault_requests_answered_after_heal),
        timed_out: phase.get(Counter::fault_requests_timed_out),
        connection_lost: phase.get(Counter::fault_requests_connection_lost),
        failed_other: phase.get(Counter::fault_requests_failed_other),
    };
    effects.connections_broken = phase.get(Counter::fault_connections_broken);
    let window = |segments: &[u32]| {
        let m = merge_segments(merged, segments);
        report::WindowFigures {
            requests_ok: m.get(Counter::requests_ok),
            requests_failed: m.get(Counter::requests_failed),
            latency_us: Percentiles::of(&m.all.corrected),
        }
    };
    effects.before = window(&[Segment::Recovery.id()]);
    effects.during = window(&[Segment::FaultOn.id()]);
    effects.after = window(&[Segment::FaultOver.id(), Segment::Drain(3).id()]);
}

/// The segments' metrics added up. Merging adds the shards' maxima (right within one
/// segment); across the segments of a phase the most held is the largest of theirs.
pub fn merge_segments(merged: &HashMap<u32, ShardMetrics>, segments: &[u32]) -> ShardMetrics {
    let mut out = ShardMetrics::new();
    let (mut held_max, mut streams_held_max) = (0, 0);
    for segment in segments {
        if let Some(m) = merged.get(segment) {
            out.merge(m);
            held_max = held_max.max(m.held_max);
            streams_held_max = streams_held_max.max(m.streams_held_max);
        }
    }
    out.held_max = held_max;
    out.streams_held_max = streams_held_max;
    out
}

/// The request accounting of merged metrics (in flight at the end filled by the caller).
pub fn requests_of(m: &ShardMetrics) -> report::Requests {
    let dropped_by_cause: BTreeMap<String, u64> = [
        Counter::dropped_no_idle_session,
        Counter::dropped_generator_behind,
        Counter::dropped_phase_ended,
    ]
    .iter()
    .filter(|c| m.get(**c) > 0)
    .map(|c| (c.name()["dropped_".len()..].to_string(), m.get(*c)))
    .collect();
    report::Requests {
        offered: m.get(Counter::requests_offered),
        sent: m.get(Counter::requests_sent),
        probes: m.get(Counter::probes_sent),
        dropped: m.get(Counter::requests_dropped),
        dropped_by_cause,
        ok: m.get(Counter::requests_ok),
        errors: m.get(Counter::requests_failed),
        in_flight_at_end: 0,
        in_flight_oldest_ms: None,
    }
}

/// Every error cause that occurred: the `error_*` counters, answers that carried a JSON-RPC
/// error or an `isError` result, and connect-chain errnos (`op:ERRNO`, a breakdown).
pub fn errors_by_cause(m: &ShardMetrics) -> BTreeMap<String, u64> {
    let mut causes: BTreeMap<String, u64> = m
        .errors_by_cause()
        .into_iter()
        .map(|(cause, count)| (cause.to_string(), count))
        .collect();
    for (counter, name) in [
        (Counter::requests_rpc_error, "rpc_error"),
        (Counter::requests_is_error, "tool_is_error"),
    ] {
        if m.get(counter) > 0 {
            causes.insert(name.to_string(), m.get(counter));
        }
    }
    // `rpc_error:CODE` entries break `rpc_error` down by its JSON-RPC code.
    for &(code, count) in &m.rpc_error_codes {
        causes.insert(format!("rpc_error:{code}"), count);
    }
    for &(op, errno, count) in &m.errnos {
        causes.insert(format!("{op}:{}", crate::sys::errno::name(errno)), count);
    }
    causes
}

/// The measured figures of a phase from its merged shard metrics.
pub fn fill(
    report: &mut PhaseReport,
    m: &ShardMetrics,
    entry_labels: &[String],
    in_flight_at_end: u64,
    in_flight_oldest_ms: Option<f64>,
    cpu_us: Option<u64>,
    load_s: Option<f64>,
) {
    let ok = m.get(Counter::requests_ok);
    let sent = m.get(Counter::requests_sent);
    report.sessions.established = m.established.max(report.sessions.established);
    report.sessions.failed = m.failed;
    report.sessions.held_max = m.held_max.max(report.sessions.held_max);
    report.requests = report::Requests {
        in_flight_at_end,
        in_flight_oldest_ms,
        ..requests_of(m)
    };
    // Over the time the load ran (the phase's time also holds the drain and the waits).
    let load_s = load_s.unwrap_or(report.duration_s);
    report.throughput_rps = if load_s > 0.0 {
        ok as f64 / load_s
    } else {
        0.0
    };
    report.latency_us = Percentiles::of(&m.all.corrected);
    report.latency_uncorrected_us = Percentiles::of(&m.all.uncorrected);
    // Per load entry, keyed by its label (`tools/call search`).
    report.latency_us_by_method = m
        .methods
        .iter()
        .zip(entry_labels)
        .filter(|(pair, _)| !pair.corrected.is_empty())
        .map(|(pair, label)| (label.clone(), Percentiles::of(&pair.corrected)))
        .collect();
    report.errors_by_method = m
        .methods_failed
        .iter()
        .zip(entry_labels)
        .filter(|(failed, _)| **failed > 0)
        .map(|(failed, label)| (label.clone(), *failed))
        .collect();
    report.connect_us = Percentiles::of(&m.connect);
    report.initialize_us = Percentiles::of(&m.initialize);
    report.tls_handshake_us = Percentiles::of(&m.tls_handshake);
    report.tls_handshakes_full = m.get(Counter::tls_handshakes_full);
    report.tls_handshakes_resumed = m.get(Counter::tls_handshakes_resumed);
    report.latency_spectrum_us = report::spectrum(&m.all.corrected);
    report.errors_by_cause = errors_by_cause(m);
    report.generator = generator_check(m, report.name == "failure_recovery");
    report.saturation = saturation(report, m);
    if let (Some(cpu), Some(cpu_us)) = (&mut report.cpu, cpu_us) {
        cpu.generator_cpu_us_per_request = (sent > 0).then(|| cpu_us as f64 / sent as f64);
    }
    if let Some(recovery) = &mut report.recovery {
        recovery.requests_lost = m.get(Counter::requests_connection_lost);
    }
    report.histogram = (!m.all.corrected.is_empty())
        .then(|| report::hist::encode(&m.all.corrected).ok())
        .flatten();
    report.histograms = histograms_of(m, entry_labels);
    let streams = streams_of(m, None);
    report.streams = (streams != report::StreamsReport::default()).then_some(streams);
    report.server_requests = server_requests_of(m);
}

/// Every non-empty latency histogram of a phase but the corrected one (`histogram`), encoded
/// for an exact merge of segments (see `PhaseReport::histograms`).
fn histograms_of(m: &ShardMetrics, entry_labels: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |key: String, h: &hdrhistogram::Histogram<u64>| {
        if !h.is_empty()
            && let Ok(encoded) = report::hist::encode(h)
        {
            out.insert(key, encoded);
        }
    };
    put("latency_uncorrected".into(), &m.all.uncorrected);
    put("connect".into(), &m.connect);
    put("initialize".into(), &m.initialize);
    put("tls_handshake".into(), &m.tls_handshake);
    put("notification".into(), &m.notification_latency);
    put("client_reply".into(), &m.client_reply_latency);
    for (pair, label) in m.methods.iter().zip(entry_labels) {
        put(format!("method:{label}"), &pair.corrected);
    }
    out
}

/// The server-to-client requests and answers of merged metrics (None when there were none).
pub fn server_requests_of(m: &ShardMetrics) -> Option<report::ServerRequestsReport> {
    let on_streams = m.get(Counter::stream_requests_received);
    let on_responses = m.get(Counter::server_requests_on_responses);
    let lost = m.get(Counter::client_replies_lost);
    if on_streams + on_responses + lost == 0 {
        return None;
    }
    Some(report::ServerRequestsReport {
        received: on_streams + on_responses,
        on_streams,
        on_responses,
        by_method: m
            .server_requests_by_method
            .iter()
            .map(|(method, n)| (method.to_string(), *n))
            .collect(),
        replies_sent: m.get(Counter::client_replies_sent),
        replies_accepted: m.get(Counter::client_replies_accepted),
        replies_refused: m.get(Counter::client_replies_refused),
        replies_lost: lost,
        reply_errors_by_cause: m
            .client_reply_errors_by_cause()
            .into_iter()
            .map(|(cause, n)| (cause.to_string(), n))
            .collect(),
        reply_latency_us: Percentiles::of(&m.client_reply_latency),
    })
}

/// The streams' figures of merged metrics (`planned` for the whole run's).
pub fn streams_of(m: &ShardMetrics, planned: Option<u64>) -> report::StreamsReport {
    let failed_by_cause: BTreeMap<String, u64> = m
        .stream_errors_by_cause()
        .into_iter()
        .map(|(cause, n)| (cause.to_string(), n))
        .collect();
    report::StreamsReport {
        planned,
        held: m.streams_held_max,
        opened: m.get(Counter::streams_opened),
        reopened: m.get(Counter::streams_reopened),
        failed: failed_by_cause.values().sum(),
        failed_by_cause,
        not_offered: m.get(Counter::streams_not_offered),
        ended_by_server: m.get(Counter::streams_ended_by_server),
        notifications_received: m.get(Counter::notifications_received),
        notifications_by_method: m
            .notifications_by_method
            .iter()
            .map(|(method, n)| (method.to_string(), *n))
            .collect(),
        notification_latency_us: Percentiles::of(&m.notification_latency),
        requests_received: m.get(Counter::stream_requests_received),
        notification_histogram: (!m.notification_latency.is_empty())
            .then(|| report::hist::encode(&m.notification_latency).ok())
            .flatten(),
    }
}

/// An open-model phase where more than `Saturation::DROPPED_PCT_MAX` of the offered requests
/// found every session busy: the server did not carry the load.
fn saturation(report: &PhaseReport, m: &ShardMetrics) -> Option<Saturation> {
    if report.recovery.is_some() {
        // During a fault every session may be busy reconnecting: that is the fault's doing,
        // measured by the recovery figures, not a verdict on the server's capacity.
        return None;
    }
    let offered_rps = report.offered_rps?;
    let offered = m.get(Counter::requests_offered);
    let dropped = m.get(Counter::dropped_no_idle_session);
    if offered == 0 {
        return None;
    }
    let dropped_pct = dropped as f64 * 100.0 / offered as f64;
    (dropped_pct > Saturation::DROPPED_PCT_MAX).then_some(Saturation {
        offered_rps,
        achieved_rps: report.throughput_rps,
        dropped_no_idle_session: dropped,
        dropped_pct,
    })
}

/// The generator self-check of merged metrics, on the generator's own signals only: a send
/// is late only when an idle session was there to take it (a request due while every
/// session was busy is dropped, the server's doing), and only by more than
/// `GeneratorCheck::late_threshold_us` of the phase's median latency; plus loop lag and CQ
/// overflows. `fault`: late sends do not count (see below).
pub fn generator_check(m: &ShardMetrics, fault: bool) -> GeneratorCheck {
    let sent = m.get(Counter::requests_sent);
    let loop_lag_us_p99 = if m.loop_lag.is_empty() {
        0
    } else {
        m.loop_lag.value_at_quantile(0.99)
    };
    let latency_us_p50 = if m.all.corrected.is_empty() {
        0
    } else {
        m.all.corrected.value_at_quantile(0.5)
    };
    let threshold_us = GeneratorCheck::late_threshold_us(latency_us_p50);
    let late_sends = if m.send_lag.is_empty() {
        0
    } else {
        // Values above the threshold (the histogram's equivalence range keeps the boundary
        // within its 2 significant digits).
        let above = m.send_lag.highest_equivalent(threshold_us) + 1;
        m.send_lag.count_between(above, m.send_lag.high())
    };
    if fault {
        // While sessions reconnect the requests due to them wait for the connection and go out
        // late by design (their corrected latency counts the wait): that is the fault, not
        // the generator falling behind. Loop lag and CQ overflows still judge it.
        let mut check = GeneratorCheck::judge_with_threshold(
            0,
            sent,
            threshold_us,
            loop_lag_us_p99,
            m.cq_overflows,
            0,
        );
        check.late_sends = late_sends;
        check.late_sends_pct = if sent == 0 {
            0.0
        } else {
            late_sends as f64 * 100.0 / sent as f64
        };
        check.sq_backlog_max = m.sq_backlog_max;
        check
    } else {
        GeneratorCheck::judge_with_threshold(
            late_sends,
            sent,
            threshold_us,
            loop_lag_us_p99,
            m.cq_overflows,
            m.sq_backlog_max,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_sends_are_judged_against_the_phases_own_latency() {
        let mut m = ShardMetrics::new();
        m.add_to(Counter::requests_sent, 1000);
        for _ in 0..970 {
            m.send_lag.record(20).unwrap();
        }
        for _ in 0..30 {
            m.send_lag.record(2_000).unwrap(); // 2 ms late: 3 % of sends
        }
        // Against a 200 µs server, 2 ms late sends distort what is measured: INVALID.
        for _ in 0..1000 {
            m.record_request(0, 200, 200);
        }
        let fast = generator_check(&m, false);
        assert_eq!(fast.late_threshold_us, 1_000);
        assert_eq!(fast.late_sends, 30);
        assert!(!fast.valid);
        // Against a 30 ms server they do not (threshold 3 ms): valid.
        let mut slow = ShardMetrics::new();
        slow.merge(&m);
        slow.all = crate::engine::metrics::ShardMetrics::new().all;
        for _ in 0..1000 {
            slow.record_request(0, 30_000, 30_000);
        }
        let check = generator_check(&slow, false);
        assert!((3_000..=3_010).contains(&check.late_threshold_us));
        assert_eq!(check.late_sends, 0);
        assert!(check.valid, "{:?}", check.invalid_reason);
    }

    #[test]
    fn every_offered_request_is_accounted_for_by_cause() {
        let mut m = ShardMetrics::new();
        m.add_to(Counter::requests_offered, 1000);
        m.add_to(Counter::requests_sent, 610);
        m.add_to(Counter::probes_sent, 10);
        m.add_to(Counter::requests_dropped, 400);
        m.add_to(Counter::dropped_no_idle_session, 390);
        m.add_to(Counter::dropped_phase_ended, 10);
        m.add_to(Counter::requests_ok, 600);
        m.add_to(Counter::requests_failed, 5);
        m.add_to(Counter::requests_rpc_error, 3);
        m.record_rpc_error_code(-32602);
        m.add_to(Counter::error_http_4xx, 2);
        let requests = requests_of(&m);
        assert_eq!(
            requests.offered,
            requests.sent - requests.probes + requests.dropped
        );
        assert_eq!(requests.dropped_by_cause["no_idle_session"], 390);
        assert_eq!(requests.dropped_by_cause["phase_ended"], 10);
        assert!(!requests.dropped_by_cause.contains_key("generator_behind"));
        let causes = errors_by_cause(&m);
        assert_eq!(causes["rpc_error"], 3);
        assert_eq!(causes["rpc_error:-32602"], 1);
        assert_eq!(causes["http_4xx"], 2);

        let mut report = PhaseReport::new("sustained", PhaseStatus::Completed);
        report.duration_s = 10.0;
        report.offered_rps = Some(100.0);
        fill(&mut report, &m, &[], 7, Some(1500.0), None, None);
        let saturation = report.saturation.expect("39 % dropped");
        assert_eq!(saturation.dropped_no_idle_session, 390);
        assert_eq!(saturation.achieved_rps, 60.0);
        assert_eq!(report.requests.in_flight_at_end, 7);
        assert!(report.generator.valid, "drops are not the generator's");
    }
}
