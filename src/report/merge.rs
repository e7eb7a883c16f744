//! `mcpstorm merge`: the segments of one run (`run --segment I/N`, on as many hosts) added
//! back into one report. Part of `report/`, I/O-free (the caller reads and writes files).
//!
//! Exact where the figures are: counters are summed, and every latency figure is recomputed
//! from the segments' HdrHistograms added together (`PhaseReport::histogram` and
//! `histograms`), never averaged from percentiles. Figures that are not additive say what
//! they are: the recovery time is the slowest segment's (an upper bound of the merged one:
//! once every segment has 99 % back, the run has), per-second latencies are the largest
//! segment's (the merged p99 of a second cannot exceed it), memory per connection is the
//! connection-weighted mean (total bytes ÷ total connections), fault effects and replica
//! failover stay in each segment's own report. Merging is associative: a merged report
//! carries its merged histograms and its segments' rows, so merge(merge(a, b), c) =
//! merge(a, b, c). A missing segment is named and makes the report partial.

use super::hist;
use super::sla::{self, SlaSpec};
use super::*;
use hdrhistogram::Histogram;

/// Merges `reports` (segments, or reports merged before) and judges the SLA on the result.
pub fn merge(reports: &[RunReport], sla_spec: &SlaSpec) -> Result<RunReport, String> {
    let first = reports.first().ok_or("merge: no report given")?;
    let mut rows: Vec<SegmentRow> = Vec::new();
    for report in reports {
        rows.extend(rows_of(report)?);
    }
    rows.sort_by_key(|r| r.segment.index);
    let count = rows[0].segment.count;
    let run_connections = rows[0].segment.run_connections;
    for pair in rows.windows(2) {
        if pair[0].segment.index == pair[1].segment.index {
            return Err(format!(
                "merge: segment {}/{count} is given twice",
                pair[0].segment.index
            ));
        }
    }
    if let Some(other) = rows
        .iter()
        .find(|r| r.segment.count != count || r.segment.run_connections != run_connections)
    {
        return Err(format!(
            "merge: segment {}/{} of {} connections is not of the same run as {}/{count} of {run_connections}",
            other.segment.index,
            other.segment.count,
            other.segment.run_connections,
            rows[0].segment.index
        ));
    }
    let names: Vec<&str> = first.phases.iter().map(|p| p.name.as_str()).collect();
    for report in reports {
        let theirs: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
        if theirs != names {
            return Err(format!(
                "merge: the segments ran different phases ({names:?} and {theirs:?}): not one run"
            ));
        }
    }
    let missing = missing_segments(&rows);
    // Start times on one clock: the reference's, when every segment measured its offset.
    let corrected = rows.iter().all(|r| r.segment.clock_offset_ms.is_some());
    let start_ms = |r: &SegmentRow| {
        let offset = if corrected {
            r.segment.clock_offset_ms.unwrap_or(0.0)
        } else {
            0.0
        };
        (r.segment.started_unix_ms as f64 + offset).round() as i64
    };
    let earliest_ms = rows.iter().map(start_ms).min().unwrap_or(0);
    let offsets: Vec<u64> = rows
        .iter()
        .map(|r| (start_ms(r) - earliest_ms) as u64)
        .collect();
    for (row, offset) in rows.iter_mut().zip(offsets) {
        row.start_offset_ms = offset;
    }
    let mut phases = Vec::with_capacity(names.len());
    for at in 0..names.len() {
        let group: Vec<&PhaseReport> = reports.iter().map(|r| &r.phases[at]).collect();
        let owners: Vec<Option<u32>> = reports
            .iter()
            .map(|r| r.segment.as_ref().map(|s| s.index))
            .collect();
        let mut phase = merge_phase(&group, &owners)?;
        if !missing.is_empty() {
            note(
                &mut phase,
                format!(
                    "segments {missing:?} of {count} are missing: their share is not in these figures"
                ),
            );
        }
        phases.push(phase);
    }
    let sla_rows = sla::evaluate(sla_spec, &phases);
    let verdict = sla::overall(&sla_rows);
    let mut merged = first.clone();
    merged.started_unix_s = reports.iter().map(|r| r.started_unix_s).min().unwrap_or(0);
    merged.duration_s = reports.iter().map(|r| r.duration_s).fold(0.0, f64::max);
    merged.partial = !missing.is_empty() || rows.iter().any(|r| r.partial);
    merged.connections = reports.iter().map(|r| r.connections).sum();
    merged.phases = phases;
    merged.sla = sla_rows;
    merged.verdict = verdict;
    merged.series = merge_series(reports);
    merged.sessions = sum_sessions(reports.iter().map(|r| &r.sessions));
    merged.errors_by_cause = sum_maps(reports.iter().map(|r| &r.errors_by_cause));
    merged.counters = sum_maps(reports.iter().map(|r| &r.counters));
    merged.engine = EngineInfo {
        shards: reports.iter().map(|r| r.engine.shards).sum(),
        rings: reports.iter().map(|r| r.engine.rings).sum(),
        conn_slot_bytes: first.engine.conn_slot_bytes,
    };
    merged.endpoints = merge_endpoints(reports);
    merged.streams = merge_streams(reports.iter().map(|r| r.streams.as_ref()), None)?;
    // The run's answer latency: every phase's, added (the phases tile the run).
    let client_reply = add_encoded(
        merged
            .phases
            .iter()
            .map(|p| p.histograms.get("client_reply")),
    )?;
    let client_reply = encode(&client_reply)?;
    merged.server_requests = merge_server_requests(
        reports.iter().map(|r| r.server_requests.as_ref()),
        client_reply.as_ref(),
    )?;
    merged.could_not_run = (reports.iter().all(|r| r.could_not_run.is_some()))
        .then(|| first.could_not_run.clone())
        .flatten();
    merged.segment = None;
    merged.merged_from = Some(rows);
    Ok(merged)
}

/// A report's segment rows: its own (a segment), or those it was merged from.
fn rows_of(report: &RunReport) -> Result<Vec<SegmentRow>, String> {
    if let Some(rows) = &report.merged_from {
        return Ok(rows.clone());
    }
    let segment = report.segment.clone().ok_or(
        "merge: a report of a whole run (no --segment): only segments or merged reports merge",
    )?;
    Ok(vec![SegmentRow {
        segment,
        start_offset_ms: 0,
        sessions_established: report.sessions.established,
        sessions_failed: report.sessions.failed,
        verdict: report.verdict,
        partial: report.partial,
        phases: report
            .phases
            .iter()
            .map(|p| SegmentPhaseRow {
                name: p.name.clone(),
                status: p.status,
                start_s: p.start_s,
                duration_s: p.duration_s,
                throughput_rps: (p.status == PhaseStatus::Completed).then_some(p.throughput_rps),
                latency_us_p99: p.latency_us.p99,
                late_sends_pct: p.generator.late_sends_pct,
                generator_valid: p.generator.valid,
                note: p.note.clone(),
            })
            .collect(),
    }])
}

fn note(phase: &mut PhaseReport, text: String) {
    phase.note = Some(match phase.note.take() {
        Some(before) => format!("{before}; {text}"),
        None => text,
    });
}

/// The histograms of `encoded`, added (None when none of them has one).
fn add_encoded<'a>(
    encoded: impl Iterator<Item = Option<&'a String>>,
) -> Result<Option<Histogram<u64>>, String> {
    let mut sum: Option<Histogram<u64>> = None;
    for text in encoded.flatten() {
        let h = hist::decode(text).map_err(|e| format!("merge: a histogram: {e}"))?;
        match &mut sum {
            Some(total) => total
                .add(&h)
                .map_err(|e| format!("merge: histograms of different bounds: {e}"))?,
            None => sum = Some(h),
        }
    }
    Ok(sum)
}

fn percentiles(h: &Option<Histogram<u64>>) -> Percentiles {
    h.as_ref().map(Percentiles::of).unwrap_or_default()
}

fn encode(h: &Option<Histogram<u64>>) -> Result<Option<String>, String> {
    h.as_ref().map(hist::encode).transpose()
}

fn sum_maps<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for map in maps {
        for (k, v) in map {
            *out.entry(k.clone()).or_insert(0) += v;
        }
    }
    out
}

fn sum_opt(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.fold(None, |acc, v| match (acc, v) {
        (None, v) => v,
        (a, None) => a,
        (Some(a), Some(b)) => Some(a + b),
    })
}

fn max_opt(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.fold(None, |acc, v| match (acc, v) {
        (None, v) => v,
        (a, None) => a,
        (Some(a), Some(b)) => Some(a.max(b)),
    })
}

fn sum_sessions<'a>(all: impl Iterator<Item = &'a Sessions>) -> Sessions {
    let all: Vec<&Sessions> = all.collect();
    Sessions {
        target: all.iter().map(|s| s.target).sum(),
        established: all.iter().map(|s| s.established).sum(),
        failed: all.iter().map(|s| s.failed).sum(),
        held_max: all.iter().map(|s| s.held_max).sum(),
        established_per_s: sum_opt(all.iter().map(|s| s.established_per_s)),
    }
}

fn sum_requests<'a>(all: impl Iterator<Item = &'a Requests>) -> Requests {
    let all: Vec<&Requests> = all.collect();
    Requests {
        offered: all.iter().map(|r| r.offered).sum(),
        sent: all.iter().map(|r| r.sent).sum(),
        probes: all.iter().map(|r| r.probes).sum(),
        dropped: all.iter().map(|r| r.dropped).sum(),
        dropped_by_cause: sum_maps(all.iter().map(|r| &r.dropped_by_cause)),
        ok: all.iter().map(|r| r.ok).sum(),
        errors: all.iter().map(|r| r.errors).sum(),
        in_flight_at_end: all.iter().map(|r| r.in_flight_at_end).sum(),
        in_flight_oldest_ms: max_opt(all.iter().map(|r| r.in_flight_oldest_ms)),
    }
}

/// Worst first: a merged phase is as complete as its least complete segment.
fn status_rank(status: PhaseStatus) -> u8 {
    match status {
        PhaseStatus::Interrupted => 0,
        PhaseStatus::Aborted => 1,
        PhaseStatus::NotRun => 2,
        PhaseStatus::Completed => 3,
        PhaseStatus::Skipped => 4,
    }
}

/// Per-segment texts (`segment N: …` parts joined by `; `) of the inputs, in segment order:
/// a segment's own text gets its prefix, a merged input's is already made of parts.
fn by_segment<'a>(
    texts: impl Iterator<Item = (Option<u32>, Option<&'a String>)>,
) -> Option<String> {
    let mut parts: Vec<(u32, String)> = Vec::new();
    for (owner, text) in texts {
        let Some(text) = text else { continue };
        match owner {
            Some(index) => parts.push((index, format!("segment {index}: {text}"))),
            None => {
                for part in text.split("; segment ") {
                    let part = part.strip_prefix("segment ").unwrap_or(part);
                    let index = part
                        .split(':')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(u32::MAX);
                    parts.push((index, format!("segment {part}")));
                }
            }
        }
    }
    parts.sort_by_key(|(index, _)| *index);
    (!parts.is_empty()).then(|| {
        parts
            .into_iter()
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn merge_phase(group: &[&PhaseReport], owners: &[Option<u32>]) -> Result<PhaseReport, String> {
    let first = group[0];
    let status = group
        .iter()
        .map(|p| p.status)
        .min_by_key(|s| status_rank(*s))
        .unwrap_or(first.status);
    let mut phase = PhaseReport::new(&first.name, status);
    phase.start_s = group.iter().map(|p| p.start_s).fold(f64::MAX, f64::min);
    phase.duration_s = group.iter().map(|p| p.duration_s).fold(0.0, f64::max);
    phase.sessions = sum_sessions(group.iter().map(|p| &p.sessions));
    phase.requests = sum_requests(group.iter().map(|p| &p.requests));
    phase.offered_rps = sum_opt(group.iter().map(|p| p.offered_rps));
    phase.throughput_rps = group.iter().map(|p| p.throughput_rps).sum();
    for p in group {
        if p.latency_us.count > 0 && p.histogram.is_none() {
            return Err(format!(
                "merge: phase {} of a segment has latencies but no histogram: it cannot be merged exactly",
                p.name
            ));
        }
    }
    let corrected = add_encoded(group.iter().map(|p| p.histogram.as_ref()))?;
    phase.latency_us = percentiles(&corrected);
    phase.latency_spectrum_us = corrected.as_ref().map(spectrum).unwrap_or_default();
    phase.histogram = encode(&corrected)?;
    let keys: std::collections::BTreeSet<&String> =
        group.iter().flat_map(|p| p.histograms.keys()).collect();
    for key in keys {
        let sum = add_encoded(group.iter().map(|p| p.histograms.get(key)))?;
        let figure = percentiles(&sum);
        match key.as_str() {
            "latency_uncorrected" => phase.latency_uncorrected_us = figure,
            "connect" => phase.connect_us = figure,
            "initialize" => phase.initialize_us = figure,
            "tls_handshake" => phase.tls_handshake_us = figure,
            other => {
                if let Some(label) = other.strip_prefix("method:") {
                    phase.latency_us_by_method.insert(label.to_string(), figure);
                }
            }
        }
        if let Some(text) = encode(&sum)? {
            phase.histograms.insert(key.clone(), text);
        }
    }
    phase.errors_by_method = sum_maps(group.iter().map(|p| &p.errors_by_method));
    phase.errors_by_cause = sum_maps(group.iter().map(|p| &p.errors_by_cause));
    phase.tls_handshakes_full = group.iter().map(|p| p.tls_handshakes_full).sum();
    phase.tls_handshakes_resumed = group.iter().map(|p| p.tls_handshakes_resumed).sum();
    phase.generator = merge_generator(group, owners);
    phase.memory = merge_memory(group);
    phase.cpu = merge_cpu(group, phase.requests.sent);
    phase.recovery = merge_recovery(group);
    phase.capacity = merge_capacity(group, owners);
    phase.leak = group.iter().find_map(|p| p.leak.clone()).map(|mut leak| {
        leak.sessions_deleted = group
            .iter()
            .filter_map(|p| p.leak.as_ref())
            .map(|l| l.sessions_deleted)
            .sum();
        leak
    });
    phase.saturation = saturation_of(&phase);
    phase.offered_from = first.offered_from.clone();
    phase.in_flight_max = group.iter().map(|p| p.in_flight_max).sum();
    phase.rate_probe = merge_rate_probe(group)?;
    // Each segment's own notes are in its row (`SegmentPhaseRow::note`).
    phase.note = None;
    phase.streams = merge_streams(
        group.iter().map(|p| p.streams.as_ref()),
        phase.histograms.get("notification"),
    )?;
    phase.server_requests = merge_server_requests(
        group.iter().map(|p| p.server_requests.as_ref()),
        phase.histograms.get("client_reply"),
    )?;
    Ok(phase)
}

fn merge_generator(group: &[&PhaseReport], owners: &[Option<u32>]) -> GeneratorCheck {
    let late_sends: u64 = group.iter().map(|p| p.generator.late_sends).sum();
    let sent: u64 = group.iter().map(|p| p.requests.sent).sum();
    let reasons = by_segment(
        owners
            .iter()
            .zip(group)
            .map(|(owner, p)| (*owner, p.generator.invalid_reason.as_ref())),
    );
    GeneratorCheck {
        late_sends,
        late_sends_pct: if sent == 0 {
            0.0
        } else {
            late_sends as f64 * 100.0 / sent as f64
        },
        late_threshold_us: group
            .iter()
            .map(|p| p.generator.late_threshold_us)
            .max()
            .unwrap_or(0),
        loop_lag_us_p99: group
            .iter()
            .map(|p| p.generator.loop_lag_us_p99)
            .max()
            .unwrap_or(0),
        cq_overflows: group.iter().map(|p| p.generator.cq_overflows).sum(),
        sq_backlog_max: group
            .iter()
            .map(|p| p.generator.sq_backlog_max)
            .max()
            .unwrap_or(0),
        valid: group.iter().all(|p| p.generator.valid),
        invalid_reason: reasons,
        host_steal_pct: max_opt(group.iter().map(|p| p.generator.host_steal_pct)),
    }
}

/// Per-connection figures weighted by each segment's held sessions: Σ bytes ÷ Σ connections.
fn merge_memory(group: &[&PhaseReport]) -> Option<MemoryFigures> {
    let with: Vec<(&MemoryFigures, f64)> = group
        .iter()
        .filter_map(|p| p.memory.as_ref().map(|m| (m, p.sessions.held_max as f64)))
        .collect();
    if with.is_empty() {
        return None;
    }
    let weighted = |get: &dyn Fn(&MemoryFigures) -> Option<f64>| {
        let (mut bytes, mut conns) = (0.0, 0.0);
        for (m, held) in &with {
            if let Some(v) = get(m) {
                bytes += v * held;
                conns += held;
            }
        }
        (conns > 0.0).then(|| bytes / conns)
    };
    Some(MemoryFigures {
        client_user_bytes_per_conn: weighted(&|m| m.client_user_bytes_per_conn),
        client_total_bytes_per_conn: weighted(&|m| m.client_total_bytes_per_conn),
        client_peak_bytes_per_conn: weighted(&|m| m.client_peak_bytes_per_conn),
        server_user_bytes_per_conn: weighted(&|m| m.server_user_bytes_per_conn),
        server_total_bytes_per_conn: weighted(&|m| m.server_total_bytes_per_conn),
        server_peak_bytes_per_conn: weighted(&|m| m.server_peak_bytes_per_conn),
        kernel_bytes_per_socket: weighted(&|m| m.kernel_bytes_per_socket),
        client_rss_growth_bytes_per_min: sum_opt(
            with.iter().map(|(m, _)| m.client_rss_growth_bytes_per_min),
        ),
        // One server, seen by every segment that could see it: the largest reading.
        server_rss_growth_bytes_per_min: max_opt(
            with.iter().map(|(m, _)| m.server_rss_growth_bytes_per_min),
        ),
    })
}

fn merge_cpu(group: &[&PhaseReport], sent: u64) -> Option<CpuFigures> {
    let all: Vec<&CpuFigures> = group.iter().filter_map(|p| p.cpu.as_ref()).collect();
    if all.is_empty() {
        return None;
    }
    let generator_cpu_s: f64 = all.iter().map(|c| c.generator_cpu_s).sum();
    Some(CpuFigures {
        generator_cpu_s,
        // The one server, measured by each segment on its host: the largest reading.
        server_cpu_s: max_opt(all.iter().map(|c| c.server_cpu_s)),
        generator_cpu_us_per_request: (sent > 0).then(|| generator_cpu_s * 1e6 / sent as f64),
    })
}

fn merge_recovery(group: &[&PhaseReport]) -> Option<Recovery> {
    let all: Vec<&Recovery> = group.iter().filter_map(|p| p.recovery.as_ref()).collect();
    let first = *all.first()?;
    let never = all.iter().any(|r| r.recovery_s.is_none());
    let curves: Vec<&RecoveryCurve> = all.iter().map(|r| &r.curve).collect();
    let latest = |get: &dyn Fn(&RecoveryCurve) -> Option<f64>| {
        if curves.iter().any(|c| get(c).is_none()) {
            None
        } else {
            max_opt(curves.iter().map(|c| get(c)))
        }
    };
    Some(Recovery {
        fault: first.fault.clone(),
        recovery_s: if never {
            None
        } else {
            max_opt(all.iter().map(|r| r.recovery_s))
        },
        sessions_before: all.iter().map(|r| r.sessions_before).sum(),
        sessions_restored: all.iter().map(|r| r.sessions_restored).sum(),
        requests_lost: all.iter().map(|r| r.requests_lost).sum(),
        stall_after_ms: first.stall_after_ms,
        curve: RecoveryCurve {
            first_success_s: curves
                .iter()
                .filter_map(|c| c.first_success_s)
                .reduce(f64::min),
            // A lower bound: the segments' fewest need not fall in the same second.
            answering_min: curves.iter().map(|c| c.answering_min).sum(),
            to_50pct_s: latest(&|c| c.to_50pct_s),
            to_90pct_s: latest(&|c| c.to_90pct_s),
            to_99pct_s: latest(&|c| c.to_99pct_s),
        },
        kernel_tcp: sum_maps(all.iter().map(|r| &r.kernel_tcp)),
        // Per segment: see each segment's own report.
        effects: None,
        failover: None,
        streams_before: all.iter().map(|r| r.streams_before).sum(),
        streams_back_s: if all
            .iter()
            .any(|r| r.streams_before > 0 && r.streams_back_s.is_none())
        {
            None
        } else {
            max_opt(all.iter().map(|r| r.streams_back_s))
        },
    })
}

/// The steps offered together (same factor, same step time): rates summed, a step passes
/// when it passed in every segment, its p95 the largest segment's (an upper bound).
fn merge_capacity(group: &[&PhaseReport], owners: &[Option<u32>]) -> Option<Capacity> {
    let (owners, all): (Vec<Option<u32>>, Vec<&Capacity>) = owners
        .iter()
        .zip(group)
        .filter_map(|(owner, p)| p.capacity.as_ref().map(|c| (*owner, c)))
        .unzip();
    if all.is_empty() {
        return None;
    }
    let steps_len = all.iter().map(|c| c.steps.len()).min().unwrap_or(0);
    let steps: Vec<CapacityStep> = (0..steps_len)
        .map(|k| {
            let at: Vec<&CapacityStep> = all.iter().map(|c| &c.steps[k]).collect();
            let achieved: f64 = at.iter().map(|s| s.achieved_rps).sum();
            let broke = by_segment(owners.iter().zip(&at).map(|(o, s)| (*o, s.broke.as_ref())));
            CapacityStep {
                offered_rps: at.iter().map(|s| s.offered_rps).sum(),
                achieved_rps: achieved,
                latency_us_p95: at.iter().map(|s| s.latency_us_p95).max().unwrap_or(0),
                error_rate_pct: if achieved > 0.0 {
                    at.iter()
                        .map(|s| s.error_rate_pct * s.achieved_rps)
                        .sum::<f64>()
                        / achieved
                } else {
                    0.0
                },
                pass: at.iter().all(|s| s.pass),
                broke,
            }
        })
        .collect();
    let capacity_rps = steps
        .iter()
        .take_while(|s| s.pass)
        .last()
        .map(|s| s.offered_rps);
    Some(Capacity {
        steps,
        capacity_rps,
    })
}

fn merge_rate_probe(group: &[&PhaseReport]) -> Result<Option<RateProbe>, String> {
    let all: Vec<&RateProbe> = group.iter().filter_map(|p| p.rate_probe.as_ref()).collect();
    if all.is_empty() {
        return Ok(None);
    }
    Ok(Some(RateProbe {
        duration_s: all.iter().map(|r| r.duration_s).fold(0.0, f64::max),
        in_flight_max: all.iter().map(|r| r.in_flight_max).sum(),
        requests: sum_requests(all.iter().map(|r| &r.requests)),
        achieved_rps: all.iter().map(|r| r.achieved_rps).sum(),
        // The probe keeps no histogram of its own: the largest segment's p-values bound it.
        latency_us: Percentiles {
            count: all.iter().map(|r| r.latency_us.count).sum(),
            p50: all.iter().map(|r| r.latency_us.p50).max().unwrap_or(0),
            p95: all.iter().map(|r| r.latency_us.p95).max().unwrap_or(0),
            p99: all.iter().map(|r| r.latency_us.p99).max().unwrap_or(0),
            max: all.iter().map(|r| r.latency_us.max).max().unwrap_or(0),
        },
    }))
}

fn saturation_of(phase: &PhaseReport) -> Option<Saturation> {
    if phase.recovery.is_some() {
        return None;
    }
    let offered_rps = phase.offered_rps?;
    let dropped = phase
        .requests
        .dropped_by_cause
        .get("no_idle_session")
        .copied()
        .unwrap_or(0);
    let offered = phase.requests.offered;
    let dropped_pct = if offered == 0 {
        0.0
    } else {
        dropped as f64 * 100.0 / offered as f64
    };
    (dropped_pct > Saturation::DROPPED_PCT_MAX).then_some(Saturation {
        offered_rps,
        achieved_rps: phase.throughput_rps,
        dropped_no_idle_session: dropped,
        dropped_pct,
    })
}

fn merge_streams<'a>(
    all: impl Iterator<Item = Option<&'a StreamsReport>>,
    histogram: Option<&String>,
) -> Result<Option<StreamsReport>, String> {
    let all: Vec<&StreamsReport> = all.flatten().collect();
    if all.is_empty() {
        return Ok(None);
    }
    let notification = match histogram {
        Some(text) => add_encoded(std::iter::once(Some(text)))?,
        None => add_encoded(all.iter().map(|s| s.notification_histogram.as_ref()))?,
    };
    let planned: Vec<u64> = all.iter().filter_map(|s| s.planned).collect();
    Ok(Some(StreamsReport {
        planned: (!planned.is_empty()).then(|| planned.iter().sum()),
        held: all.iter().map(|s| s.held).sum(),
        opened: all.iter().map(|s| s.opened).sum(),
        reopened: all.iter().map(|s| s.reopened).sum(),
        failed: all.iter().map(|s| s.failed).sum(),
        failed_by_cause: sum_maps(all.iter().map(|s| &s.failed_by_cause)),
        not_offered: all.iter().map(|s| s.not_offered).sum(),
        ended_by_server: all.iter().map(|s| s.ended_by_server).sum(),
        notifications_received: all.iter().map(|s| s.notifications_received).sum(),
        notifications_by_method: sum_maps(all.iter().map(|s| &s.notifications_by_method)),
        notification_latency_us: percentiles(&notification),
        requests_received: all.iter().map(|s| s.requests_received).sum(),
        notification_histogram: encode(&notification)?,
    }))
}

fn merge_server_requests<'a>(
    all: impl Iterator<Item = Option<&'a ServerRequestsReport>>,
    histogram: Option<&String>,
) -> Result<Option<ServerRequestsReport>, String> {
    let all: Vec<&ServerRequestsReport> = all.flatten().collect();
    if all.is_empty() {
        return Ok(None);
    }
    let latency = add_encoded(std::iter::once(histogram))?;
    Ok(Some(ServerRequestsReport {
        received: all.iter().map(|s| s.received).sum(),
        on_streams: all.iter().map(|s| s.on_streams).sum(),
        on_responses: all.iter().map(|s| s.on_responses).sum(),
        by_method: sum_maps(all.iter().map(|s| &s.by_method)),
        replies_sent: all.iter().map(|s| s.replies_sent).sum(),
        replies_accepted: all.iter().map(|s| s.replies_accepted).sum(),
        replies_refused: all.iter().map(|s| s.replies_refused).sum(),
        replies_lost: all.iter().map(|s| s.replies_lost).sum(),
        reply_errors_by_cause: sum_maps(all.iter().map(|s| &s.reply_errors_by_cause)),
        // Exact from the phase's merged histogram; the run's line has none (its phases do).
        reply_latency_us: if latency.is_some() {
            percentiles(&latency)
        } else {
            Percentiles::default()
        },
    }))
}

/// The endpoints with each address's connections summed over the segments.
fn merge_endpoints(reports: &[RunReport]) -> Vec<EndpointReport> {
    let mut endpoints = reports[0].endpoints.clone();
    for report in &reports[1..] {
        for (mine, theirs) in endpoints.iter_mut().zip(&report.endpoints) {
            for (a, b) in mine.addresses.iter_mut().zip(&theirs.addresses) {
                a.connections += b.connections;
            }
        }
    }
    endpoints
}

/// Seconds by index: counts summed; latencies the largest segment's (an upper bound).
fn merge_series(reports: &[RunReport]) -> Vec<SecondSample> {
    let len = reports.iter().map(|r| r.series.len()).max().unwrap_or(0);
    (0..len)
        .map(|i| {
            let at: Vec<&SecondSample> = reports.iter().filter_map(|r| r.series.get(i)).collect();
            SecondSample {
                t_s: at[0].t_s,
                phase: at[0].phase.clone(),
                sessions_held: at.iter().map(|s| s.sessions_held).sum(),
                sessions_answering: at.iter().map(|s| s.sessions_answering).sum(),
                throughput_rps: at.iter().map(|s| s.throughput_rps).sum(),
                errors: at.iter().map(|s| s.errors).sum(),
                latency_us_p50: at.iter().map(|s| s.latency_us_p50).max().unwrap_or(0),
                latency_us_p95: at.iter().map(|s| s.latency_us_p95).max().unwrap_or(0),
                latency_us_p99: at.iter().map(|s| s.latency_us_p99).max().unwrap_or(0),
                streams_held: at.iter().map(|s| s.streams_held).sum(),
                notifications: at.iter().map(|s| s.notifications).sum(),
                notification_latency_us_p99: at
                    .iter()
                    .map(|s| s.notification_latency_us_p99)
                    .max()
                    .unwrap_or(0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::metrics::new_histogram;

    /// A segment of a synthetic run: each phase's latencies drawn from `seed`, recorded in
    /// the histograms a real phase carries, the counters made to match.
    fn segment(index: u32, count: u32, seed: u64) -> (RunReport, Vec<Histogram<u64>>) {
        let mut report = sample_report();
        report.merged_from = None;
        report.segment = Some(SegmentInfo {
            index,
            count,
            run_connections: 3000,
            start_at_unix_ms: Some(1_000_000),
            started_unix_ms: 1_000_000 + u64::from(index) * 7,
            late_ms: Some(0),
            host: format!("load-{index}"),
            clock_reference: Some("127.0.0.1:7907".into()),
            clock_offset_ms: Some(f64::from(index) * 3.0),
            clock_rtt_ms: Some(0.1),
        });
        report.connections = 1000;
        let mut raw = Vec::new();
        let mut x = seed;
        for phase in &mut report.phases {
            let mut corrected = new_histogram();
            let mut method = new_histogram();
            let n = 500 + (seed % 300);
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let us = 50 + x % 200_000;
                corrected.record(us).unwrap();
                method.record(us / 2 + 1).unwrap();
            }
            phase.latency_us = Percentiles::of(&corrected);
            phase.histogram = Some(hist::encode(&corrected).unwrap());
            phase.histograms.clear();
            phase.histograms.insert(
                "method:tools/call echo".into(),
                hist::encode(&method).unwrap(),
            );
            phase.requests.ok = n;
            phase.requests.sent = n;
            phase.requests.offered = n;
            raw.push(corrected);
        }
        (report, raw)
    }

    fn spec() -> SlaSpec {
        SlaSpec::default()
    }

    /// The first JSON path where `a` and `b` differ (for a failure's message).
    fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                keys.into_iter().find_map(|k| {
                    first_difference(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        &format!("{at}/{k}"),
                    )
                })
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}/{i}"))),
            _ => (a != b).then(|| format!("{at}: {a} vs {b}")),
        }
    }

    #[test]
    fn latencies_come_from_the_added_histograms_and_counters_add_up() {
        let segments: Vec<(RunReport, Vec<Histogram<u64>>)> = (0..3)
            .map(|i| segment(i, 3, 0x9e37 + u64::from(i) * 77))
            .collect();
        let reports: Vec<RunReport> = segments.iter().map(|(r, _)| r.clone()).collect();
        let merged = merge(&reports, &spec()).unwrap();
        assert_eq!(merged.connections, 3000);
        assert!(!merged.partial);
        for (at, phase) in merged.phases.iter().enumerate() {
            let mut all = new_histogram();
            for (_, raw) in &segments {
                all.add(&raw[at]).unwrap();
            }
            assert_eq!(phase.latency_us, Percentiles::of(&all), "{}", phase.name);
            let ok: u64 = reports.iter().map(|r| r.phases[at].requests.ok).sum();
            assert_eq!(phase.requests.ok, ok);
            let throughput: f64 = reports.iter().map(|r| r.phases[at].throughput_rps).sum();
            assert_eq!(phase.throughput_rps, throughput);
            assert!(phase.latency_us_by_method.contains_key("tools/call echo"));
            // An average of the segments' p99s is not what the merge reports.
            assert_eq!(phase.latency_us.count, all.len());
        }
        let rows = merged.merged_from.as_ref().unwrap();
        assert_eq!(
            rows.iter().map(|r| r.segment.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        // Started 7 ms apart by their clocks, which run 3 ms apart: 10 ms on the reference's.
        assert_eq!(rows[2].start_offset_ms, 20);
        let text = crate::report::text::render(&merged);
        assert!(text.contains("merged from 3 segments"), "{text}");
        assert!(text.contains("load-2"), "{text}");
        let html = crate::report::html::render(&merged);
        assert!(html.contains("<h2>Segments</h2>"), "{html}");
        assert!(html.contains("load-1"), "{html}");
    }

    #[test]
    fn a_merge_of_merges_is_the_merge_of_all() {
        let reports: Vec<RunReport> = (0..4)
            .map(|i| segment(i, 4, 1 + u64::from(i) * 1_000_003).0)
            .collect();
        let all = merge(&reports, &spec()).unwrap();
        let left = merge(&reports[..2], &spec()).unwrap();
        let right = merge(&reports[2..], &spec()).unwrap();
        let nested = merge(&[left.clone(), right], &spec()).unwrap();
        let skewed = merge(
            &[
                merge(&[left, reports[2].clone()], &spec()).unwrap(),
                reports[3].clone(),
            ],
            &spec(),
        )
        .unwrap();
        let json = |r: &RunReport| serde_json::to_value(r).unwrap();
        assert_eq!(first_difference(&json(&nested), &json(&all), ""), None);
        assert_eq!(first_difference(&json(&skewed), &json(&all), ""), None);
        // The order given does not matter either.
        let mut reversed = reports.clone();
        reversed.reverse();
        assert_eq!(
            json(&merge(&reversed, &spec()).unwrap())["phases"],
            json(&all)["phases"]
        );
    }

    #[test]
    fn a_missing_segment_is_named_and_bad_sets_are_refused() {
        let a = segment(0, 3, 5).0;
        let c = segment(2, 3, 9).0;
        let merged = merge(&[a.clone(), c.clone()], &spec()).unwrap();
        assert!(merged.partial, "a segment's share is missing");
        assert!(
            merged.phases[0]
                .note
                .as_deref()
                .unwrap()
                .contains("segments [1] of 3 are missing"),
            "{:?}",
            merged.phases[0].note
        );
        assert_eq!(merged.exit_code(), 1);
        assert!(crate::report::text::render(&merged).contains("MISSING segments [1] of 3"));
        let twice = merge(&[a.clone(), a.clone()], &spec()).unwrap_err();
        assert!(twice.contains("given twice"), "{twice}");
        let other_run = segment(1, 4, 5).0;
        let e = merge(&[a.clone(), other_run], &spec()).unwrap_err();
        assert!(e.contains("not of the same run"), "{e}");
        let whole = sample_report();
        let e = merge(&[whole], &spec()).unwrap_err();
        assert!(e.contains("whole run"), "{e}");
        let mut fewer = c.clone();
        fewer.phases.pop();
        let e = merge(&[a.clone(), fewer], &spec()).unwrap_err();
        assert!(e.contains("different phases"), "{e}");
        let mut no_histogram = c;
        no_histogram.phases[1].histogram = None;
        let e = merge(&[a, no_histogram], &spec()).unwrap_err();
        assert!(e.contains("cannot be merged exactly"), "{e}");
    }
}
