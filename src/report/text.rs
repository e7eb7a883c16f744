//! The text report printed on stdout at the end of a phased run: one table row per phase, the
//! phase details that matter (recovery, capacity steps, leak check), the SLA table and the
//! generator self-check. Part of `report/`; formats figures, measures nothing.

use super::sla::Verdict;
use super::{GeneratorCheck, PhaseReport, PhaseStatus, RunReport, format_count, format_us};
use std::fmt::Write as _;

fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Invalid => "INVALID",
        Verdict::Skipped => "SKIPPED",
        Verdict::NotMeasured => "NOT MEASURED",
        Verdict::Info => "info",
    }
}

fn status_word(status: PhaseStatus) -> &'static str {
    match status {
        PhaseStatus::Completed => "done",
        PhaseStatus::Skipped => "skipped",
        PhaseStatus::Aborted => "ABORTED",
        PhaseStatus::Interrupted => "INTERRUPTED",
        PhaseStatus::NotRun => "not run",
    }
}

pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mcpstorm {} — {} connections against {}{}",
        report.mcpstorm_version,
        format_count(report.connections),
        if report.embedded_server {
            "the embedded server".to_string()
        } else {
            report.targets.join(", ")
        },
        if report.partial {
            "  [PARTIAL: interrupted]"
        } else {
            ""
        }
    );
    if !report.embedded_server {
        for endpoint in &report.endpoints {
            let addresses: Vec<String> = endpoint
                .addresses
                .iter()
                .map(|a| {
                    format!(
                        "{} ({} connections)",
                        a.address,
                        format_count(a.connections)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "endpoint {} → {}",
                endpoint.endpoint,
                addresses.join(", ")
            );
        }
        for header in &report.headers {
            let _ = writeln!(out, "header {header}");
        }
        if let Some(tls) = &report.tls {
            let _ = writeln!(out, "TLS: {tls}");
        }
    }
    let _ = writeln!(
        out,
        "machine: {} CPUs, Linux {}, RLIMIT_NOFILE {}; run took {:.1} s\n",
        report.machine.cpus, report.machine.kernel, report.machine.nofile_hard, report.duration_s
    );
    if let Some(segment) = &report.segment {
        let _ = writeln!(out, "{}\n", segment_line(segment, report.connections));
    }
    if let Some(rows) = &report.merged_from {
        out.push_str(&segments_table(rows));
    }
    if let Some(streams) = &report.streams {
        let _ = writeln!(out, "{} (whole run)\n", streams_line(streams));
    }
    if let Some(asked) = &report.server_requests {
        let _ = writeln!(out, "{} (whole run)\n", server_requests_line(asked));
    }
    if let Some(discovery) = &report.discovery {
        let mirrored = if discovery.mirrored_tools.is_empty() {
            String::new()
        } else {
            format!(
                "; Mcp-Param-* mirrored for {}",
                discovery.mirrored_tools.join(", ")
            )
        };
        let _ = writeln!(
            out,
            "discovery (before the phases, in none of their figures): {} session, {} requests: {}{mirrored}\n",
            discovery.sessions, discovery.requests, discovery.outcome
        );
    }
    let _ = writeln!(
        out,
        "{:<17} {:>8} {:>9} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "phase", "status", "time", "sessions", "requests", "req/s", "p50", "p95", "p99", "errors"
    );
    for phase in &report.phases {
        let _ = writeln!(
            out,
            "{:<17} {:>8} {:>8.1}s {:>10} {:>11} {:>9.0} {:>9} {:>9} {:>9} {:>8}",
            phase.name,
            if phase.saturation.is_some() && phase.status == PhaseStatus::Completed {
                "SATURATED"
            } else {
                status_word(phase.status)
            },
            phase.duration_s,
            format_count(phase.sessions.held_max),
            format_count(phase.requests.ok + phase.requests.errors),
            phase.throughput_rps,
            if phase.latency_us.count > 0 {
                format_us(phase.latency_us.p50)
            } else {
                "—".into()
            },
            if phase.latency_us.count > 0 {
                format_us(phase.latency_us.p95)
            } else {
                "—".into()
            },
            if phase.latency_us.count > 0 {
                format_us(phase.latency_us.p99)
            } else {
                "—".into()
            },
            format_count(phase.requests.errors),
        );
    }
    out.push('\n');
    for phase in &report.phases {
        let lines = phase_details(phase);
        if !lines.is_empty() {
            let _ = writeln!(out, "{}:", phase.name);
            for line in lines {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out.push_str("\nSLA\n");
    // Columns as wide as their longest cell (a per-entry row names its entry).
    let width = |cell: fn(&super::sla::SlaRow) -> &str, header: &str, least: usize| {
        report
            .sla
            .iter()
            .map(|r| cell(r).chars().count())
            .chain([header.len(), least])
            .max()
            .unwrap_or(least)
    };
    let (w_name, w_target, w_actual) = (
        width(|r| &r.name, "check", 22),
        width(|r| &r.target, "target", 24),
        width(|r| &r.actual, "actual", 28),
    );
    let _ = writeln!(
        out,
        "  {:<w_name$} {:<17} {:<w_target$} {:<w_actual$} verdict",
        "check", "phase", "target", "actual"
    );
    for row in &report.sla {
        let _ = writeln!(
            out,
            "  {:<w_name$} {:<17} {:<w_target$} {:<w_actual$} {}{}",
            row.name,
            row.phase,
            row.target,
            row.actual,
            verdict_word(row.verdict),
            row.note
                .as_ref()
                .map_or(String::new(), |n| format!("  ({n})"))
        );
    }
    out.push_str("\ngenerator self-check\n");
    for phase in &report.phases {
        if matches!(phase.status, PhaseStatus::Skipped | PhaseStatus::NotRun) {
            continue;
        }
        let g = &phase.generator;
        let _ = writeln!(
            out,
            "  {:<17} late sends (> {}) {} ({:.2}%), loop lag p99 {}, CQ overflows {}, SQ backlog max {}{}: {}",
            phase.name,
            format_us(g.late_threshold_us.max(GeneratorCheck::LATE_US_MIN)),
            format_count(g.late_sends),
            g.late_sends_pct,
            format_us(g.loop_lag_us_p99),
            g.cq_overflows,
            g.sq_backlog_max,
            match g.host_steal_pct {
                Some(pct) if pct >= 0.5 => format!(", host CPU steal {pct:.1}%"),
                _ => String::new(),
            },
            match (
                g.valid,
                phase.recovery.is_some() && g.late_sends_pct > GeneratorCheck::LATE_SENDS_PCT_MAX
            ) {
                (true, true) => {
                    "ok (late sends while sessions were down are the fault, not the generator)"
                        .to_string()
                }
                (true, false) => "ok".to_string(),
                (false, _) => format!("INVALID ({})", g.invalid_reason.as_deref().unwrap_or("")),
            }
        );
    }
    if let Some(reason) = &report.could_not_run {
        let _ = writeln!(out, "\nCOULD NOT RUN: {reason}");
    }
    let _ = writeln!(
        out,
        "\nverdict: {}{}",
        verdict_word(report.verdict),
        if report.partial {
            " (partial run: interrupted)"
        } else {
            ""
        }
    );
    out
}

/// What the fault did: what was injected where, how the requests caught in it ended, the
/// connections it broke, the way back from its end, and the figures before/during/after.
fn fault_effects_lines(e: &crate::report::FaultEffects) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(n) = &e.network {
        lines.push(format!(
            "injected: {} on {} for {:.2} s ({})",
            n.injected,
            n.addresses.join(", "),
            n.installed_s,
            n.mechanism
        ));
        if let (Some(delayed), Some(held)) = (n.packets_delayed, n.packets_held_max) {
            lines.push(format!(
                "the line to the targets: {} packets dropped, {} delayed (at most {} held at once), {} let through",
                format_count(n.packets_dropped.unwrap_or(0)),
                format_count(delayed),
                format_count(held),
                format_count(n.packets_passed.unwrap_or(0))
            ));
        }
    }
    let r = &e.requests_in_fault;
    lines.push(format!(
        "requests in flight during the fault: {} answered during it, {} answered late (after its end), {} timed out, {} lost with their connection, {} failed otherwise",
        format_count(r.answered_during),
        format_count(r.answered_after_heal),
        format_count(r.timed_out),
        format_count(r.connection_lost),
        format_count(r.failed_other)
    ));
    lines.push(format!(
        "connections: {} broke during the fault and reconnected, at least {} survived it",
        format_count(e.connections_broken),
        format_count(e.connections_survived_min)
    ));
    let at = |t: Option<f64>| t.map_or("never".to_string(), |s| format!("{s:.2} s"));
    let c = &e.from_heal;
    lines.push(format!(
        "from the fault's end (healed, back, or failed over: {:.2} s after it began): first success {}, 50% {}, 90% {}, 99% {}",
        e.heal_s,
        at(c.first_success_s),
        at(c.to_50pct_s),
        at(c.to_90pct_s),
        at(c.to_99pct_s)
    ));
    for (name, w) in [
        ("before", &e.before),
        ("during", &e.during),
        ("after", &e.after),
    ] {
        lines.push(format!(
            "{name:>6} the fault: {} ok, {} failed, p50 {}, p99 {}",
            format_count(w.requests_ok),
            format_count(w.requests_failed),
            format_us(w.latency_us.p50),
            format_us(w.latency_us.p99)
        ));
    }
    lines
}

/// Replica failover: where the failed replica's sessions went and each replica's load.
fn failover_lines(f: &crate::report::FailoverReport) -> Vec<String> {
    let at = |t: Option<f64>| t.map_or("never".to_string(), |s| format!("{s:.2} s"));
    let failed: Vec<String> = f.failed_replicas.iter().map(|k| k.to_string()).collect();
    let mut lines = vec![format!(
        "failover ({}): replica {} held {} sessions at the fault; {} moved to another replica, {} answering there; 99% answering elsewhere after {} (50% {}, 90% {})",
        f.policy,
        if failed.is_empty() {
            "none".to_string()
        } else {
            failed.join(", ")
        },
        format_count(f.sessions_on_failed),
        format_count(f.sessions_failed_over),
        format_count(f.sessions_answering_elsewhere),
        at(f.failover_s),
        at(f.curve.to_50pct_s),
        at(f.curve.to_90pct_s),
    )];
    for r in &f.replicas {
        let urls = match r.urls.as_slice() {
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} (+{} ports)", rest.len()),
            [] => String::new(),
        };
        lines.push(format!(
            "replica {} {urls}: sessions {} at the fault → {} after, {} moved away; answered {:.0} req/s before → {:.0} after",
            r.replica,
            format_count(r.sessions_at_fault),
            format_count(r.sessions_after),
            format_count(r.sessions_moved_away),
            r.answered_per_s_before,
            r.answered_per_s_after
        ));
    }
    lines
}

/// The detail lines of one phase (ramp rate, memory, CPU, recovery, capacity steps, leak
/// check, errors by cause, notes), shared by the text and HTML reports.
pub fn phase_details(phase: &PhaseReport) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(from) = &phase.offered_from {
        lines.push(match phase.offered_rps {
            Some(rps) => format!("offered {rps:.0} req/s: {from}"),
            None => format!("load: {from}"),
        });
    }
    if let Some(line) = requests_line(&phase.requests) {
        lines.push(line);
    }
    if phase.latency_us_by_method.len() > 1 || !phase.errors_by_method.is_empty() {
        // Each entry of a mix on its own line: method and target, latency, failures.
        for (entry, p) in &phase.latency_us_by_method {
            let errors = phase.errors_by_method.get(entry).copied().unwrap_or(0);
            lines.push(format!(
                "  {entry}: {} answered, p50 {} / p95 {} / p99 {}, errors {}",
                format_count(p.count),
                format_us(p.p50),
                format_us(p.p95),
                format_us(p.p99),
                format_count(errors)
            ));
        }
        for (entry, errors) in &phase.errors_by_method {
            if !phase.latency_us_by_method.contains_key(entry) {
                lines.push(format!(
                    "  {entry}: none answered, errors {}",
                    format_count(*errors)
                ));
            }
        }
    }
    if let Some(s) = &phase.saturation {
        lines.push(format!(
            "SATURATED: the server carried {:.0} of {:.0} req/s offered; {} requests ({:.1}%) found every session busy and were not sent",
            s.achieved_rps,
            s.offered_rps,
            format_count(s.dropped_no_idle_session),
            s.dropped_pct
        ));
    }
    if let Some(rate) = phase.sessions.established_per_s {
        lines.push(format!(
            "established {} of {} sessions ({} failed) at {rate:.0}/s; connect p99 {}, initialize p99 {}",
            format_count(phase.sessions.established),
            format_count(phase.sessions.target),
            format_count(phase.sessions.failed),
            measured_us(phase.connect_us.count, phase.connect_us.p99),
            measured_us(phase.initialize_us.count, phase.initialize_us.p99)
        ));
    }
    if phase.tls_handshake_us.count > 0 {
        lines.push(format!(
            "TLS handshakes {} full, {} resumed; handshake p50 {}, p99 {}",
            format_count(phase.tls_handshakes_full),
            format_count(phase.tls_handshakes_resumed),
            measured_us(phase.tls_handshake_us.count, phase.tls_handshake_us.p50),
            measured_us(phase.tls_handshake_us.count, phase.tls_handshake_us.p99)
        ));
    }
    if let Some(streams) = &phase.streams {
        lines.push(streams_line(streams));
    }
    if let Some(asked) = &phase.server_requests {
        lines.push(server_requests_line(asked));
    }
    if let Some(memory) = &phase.memory {
        let mut parts = Vec::new();
        let who = |name: &str, grown: Option<f64>, total: Option<f64>, peak: Option<f64>| {
            let figures: Vec<String> = [("growth", grown), ("total", total), ("peak", peak)]
                .iter()
                .filter_map(|(label, v)| v.map(|v| format!("{label} {v:.0}")))
                .collect();
            (!figures.is_empty()).then(|| format!("{name} {} B/conn", figures.join(" / ")))
        };
        parts.extend(who(
            "client",
            memory.client_user_bytes_per_conn,
            memory.client_total_bytes_per_conn,
            memory.client_peak_bytes_per_conn,
        ));
        parts.extend(who(
            "server",
            memory.server_user_bytes_per_conn,
            memory.server_total_bytes_per_conn,
            memory.server_peak_bytes_per_conn,
        ));
        if let Some(v) = memory.kernel_bytes_per_socket {
            parts.push(format!("kernel {v:.0} B/socket"));
        }
        if let Some(v) = memory.server_rss_growth_bytes_per_min {
            parts.push(format!("server RSS growth {v:.0} B/min"));
        }
        if !parts.is_empty() {
            lines.push(format!("memory: {}", parts.join(", ")));
        }
    }
    if let Some(cpu) = &phase.cpu {
        let mut text = format!("cpu: generator {:.2} s", cpu.generator_cpu_s);
        if let Some(v) = cpu.generator_cpu_us_per_request {
            let _ = write!(text, " ({v:.2} µs/request)");
        }
        if let Some(v) = cpu.server_cpu_s {
            let _ = write!(text, ", server {v:.2} s");
        }
        lines.push(text);
    }
    if let Some(probe) = &phase.rate_probe {
        lines.push(format!(
            "rate probe: closed loop, ≤ {} in flight, {:.1} s: {:.0} req/s carried ({} ok, {} errors), p50 {}",
            format_count(probe.in_flight_max),
            probe.duration_s,
            probe.achieved_rps,
            format_count(probe.requests.ok),
            format_count(probe.requests.errors),
            format_us(probe.latency_us.p50)
        ));
    }
    if let Some(recovery) = &phase.recovery {
        lines.push(format!(
            "fault {}: {} of {} sessions back; recovery {}; {} requests in flight lost",
            recovery.fault,
            format_count(recovery.sessions_restored),
            format_count(recovery.sessions_before),
            recovery
                .recovery_s
                .map_or("never".to_string(), |s| format!("{s:.2} s")),
            format_count(recovery.requests_lost)
        ));
        let at = |t: Option<f64>| t.map_or("never".to_string(), |s| format!("{s:.2} s"));
        let c = &recovery.curve;
        lines.push(format!(
            "way back: first success {}, fewest answering {}, 50% {}, 90% {}, 99% {} (a request unanswered > {:.0} ms = not answering)",
            at(c.first_success_s),
            format_count(c.answering_min),
            at(c.to_50pct_s),
            at(c.to_90pct_s),
            at(c.to_99pct_s),
            recovery.stall_after_ms
        ));
        if let Some(effects) = &recovery.effects {
            lines.extend(fault_effects_lines(effects));
        }
        if let Some(failover) = &recovery.failover {
            lines.extend(failover_lines(failover));
        }
        if recovery.streams_before > 0 {
            lines.push(format!(
                "streams: {} held at the fault, all held again {}",
                format_count(recovery.streams_before),
                match recovery.streams_back_s {
                    Some(s) => format!("after {s:.2} s"),
                    None => "never (within --recovery-timeout)".to_string(),
                }
            ));
        }
        let counters: Vec<String> = recovery
            .kernel_tcp
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !counters.is_empty() {
            lines.push(format!(
                "kernel TCP over the phase (whole namespace): {}",
                counters.join(" ")
            ));
        }
    }
    if let Some(capacity) = &phase.capacity {
        for step in &capacity.steps {
            lines.push(format!(
                "step offered {:>9.0} req/s → achieved {:>9.0}, p95 {:>9}, errors {:.3}% {}",
                step.offered_rps,
                step.achieved_rps,
                format_us(step.latency_us_p95),
                step.error_rate_pct,
                if step.pass {
                    "pass".to_string()
                } else {
                    format!("BROKE: {}", step.broke.as_deref().unwrap_or(""))
                }
            ));
        }
        lines.push(match capacity.capacity_rps {
            Some(rps) => format!("capacity: {rps:.0} req/s (highest passing step)"),
            None => "capacity: no step passed".to_string(),
        });
    }
    if let Some(leak) = &phase.leak {
        lines.push(format!(
            "server RSS {} KiB at baseline → {} KiB after {} sessions deleted",
            leak.server_rss_baseline_bytes / 1024,
            leak.server_rss_after_bytes / 1024,
            format_count(leak.sessions_deleted)
        ));
    }
    if !phase.errors_by_cause.is_empty() {
        let causes: Vec<String> = phase
            .errors_by_cause
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        lines.push(format!("errors by cause: {}", causes.join(" ")));
        // `operation:ERRNO` entries break a cause down by errno: explain each once.
        for (cause, count) in &phase.errors_by_cause {
            if let Some((operation, name)) = cause.split_once(':')
                && let Some(errno) = crate::sys::errno::from_name(name)
            {
                lines.push(format!(
                    "{cause} ×{count}: {}",
                    crate::sys::errno::explain(operation, errno)
                ));
            }
        }
    }
    if let Some(note) = &phase.note {
        lines.push(note.clone());
    }
    lines
}

/// `--streams`: held, opened, failures by cause, notifications by method and fan-out latency.
pub fn streams_line(s: &super::StreamsReport) -> String {
    let planned = s
        .planned
        .map_or(String::new(), |n| format!(" of {}", format_count(n)));
    let mut line = format!(
        "streams: {}{planned} held at most, {} opened ({} reopens), {} failed",
        format_count(s.held),
        format_count(s.opened),
        format_count(s.reopened),
        format_count(s.failed)
    );
    if !s.failed_by_cause.is_empty() {
        let causes: Vec<String> = s
            .failed_by_cause
            .iter()
            .map(|(cause, n)| format!("{cause} {}", format_count(*n)))
            .collect();
        let _ = write!(line, " ({})", causes.join(", "));
    }
    if s.not_offered > 0 {
        let _ = write!(
            line,
            "; the server offers none (405 × {})",
            format_count(s.not_offered)
        );
    }
    if s.ended_by_server > 0 {
        let _ = write!(
            line,
            "; {} ended by the server",
            format_count(s.ended_by_server)
        );
    }
    let _ = write!(
        line,
        "; notifications {}",
        format_count(s.notifications_received)
    );
    if !s.notifications_by_method.is_empty() {
        let methods: Vec<String> = s
            .notifications_by_method
            .iter()
            .map(|(method, n)| format!("{method} {}", format_count(*n)))
            .collect();
        let _ = write!(line, " ({})", methods.join(", "));
    }
    let l = &s.notification_latency_us;
    if l.count > 0 {
        let _ = write!(
            line,
            "; fan-out latency p50 {} / p95 {} / p99 {} / max {}",
            format_us(l.p50),
            format_us(l.p95),
            format_us(l.p99),
            format_us(l.max)
        );
    }
    if s.requests_received > 0 {
        let _ = write!(
            line,
            "; {} server-to-client requests",
            format_count(s.requests_received)
        );
    }
    line
}

/// `segment I/N: C of R connections on HOST; started …`.
fn segment_line(s: &super::SegmentInfo, connections: u64) -> String {
    let mut line = format!(
        "segment {}/{}: {} of the run's {} connections, on {}",
        s.index,
        s.count,
        format_count(connections),
        format_count(s.run_connections),
        s.host
    );
    match (s.start_at_unix_ms, s.late_ms) {
        (Some(_), Some(0)) => line.push_str("; began at --start-at"),
        (Some(_), Some(late)) => {
            let _ = write!(
                line,
                "; began {:.1} s after --start-at (late)",
                late as f64 / 1000.0
            );
        }
        _ => {}
    }
    match (&s.clock_reference, s.clock_offset_ms, s.clock_rtt_ms) {
        (Some(reference), Some(offset), Some(rtt)) => {
            let _ = write!(
                line,
                "; clock {offset:+.2} ms from {reference} (round trip {rtt:.2} ms)"
            );
        }
        (Some(reference), _, _) => {
            let _ = write!(line, "; clock reference {reference} did not answer");
        }
        _ => {}
    }
    line.push_str(" (SLA judged on the merged run: mcpstorm merge)");
    line
}

/// The merged report's segments: one row each, then each one's phases.
fn segments_table(rows: &[super::SegmentRow]) -> String {
    let mut out = format!("merged from {} segments\n", rows.len());
    out.push_str(
        "  segment  host                   sessions   failed  start ms  clock ms  sustained/s     late %  verdict\n",
    );
    for row in rows {
        let sustained = row.phases.iter().find(|p| p.name == "sustained");
        let late = row
            .phases
            .iter()
            .map(|p| p.late_sends_pct)
            .fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "  {:<8} {:<20} {:>10} {:>8} {:>9} {:>9} {:>12} {:>10.2}  {:?}{}",
            format!("{}/{}", row.segment.index, row.segment.count),
            row.segment.host,
            format_count(row.sessions_established),
            format_count(row.sessions_failed),
            row.start_offset_ms,
            row.segment
                .clock_offset_ms
                .map_or("—".to_string(), |o| format!("{o:+.2}")),
            sustained
                .and_then(|p| p.throughput_rps)
                .map_or("—".to_string(), |t| format!("{t:.0}")),
            late,
            row.verdict,
            if row.partial { " (partial)" } else { "" }
        );
    }
    let count = rows.first().map_or(0, |r| r.segment.count);
    let missing = super::missing_segments(rows);
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "  MISSING segments {missing:?} of {count}: their share is not in the figures"
        );
    }
    out.push('\n');
    out
}

/// `server requests: N received (…) by method; answers: taken, refused, lost; latency`.
pub fn server_requests_line(s: &super::ServerRequestsReport) -> String {
    let mut line = format!(
        "server-to-client requests: {} received ({} on response streams, {} on streams",
        format_count(s.received),
        format_count(s.on_responses),
        format_count(s.on_streams)
    );
    if !s.by_method.is_empty() {
        let mut methods: Vec<(&String, &u64)> = s.by_method.iter().collect();
        methods.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let methods: Vec<String> = methods
            .iter()
            .map(|(m, n)| format!("{m} {}", format_count(**n)))
            .collect();
        let _ = write!(line, ": {}", methods.join(", "));
    }
    let _ = write!(
        line,
        "); answers: {} taken, {} refused, {} lost of {} sent",
        format_count(s.replies_accepted),
        format_count(s.replies_refused),
        format_count(s.replies_lost),
        format_count(s.replies_sent)
    );
    if !s.reply_errors_by_cause.is_empty() {
        let causes: Vec<String> = s
            .reply_errors_by_cause
            .iter()
            .map(|(c, n)| format!("{c} {}", format_count(*n)))
            .collect();
        let _ = write!(line, " (connection failures: {})", causes.join(", "));
    }
    let l = &s.reply_latency_us;
    if l.count > 0 {
        let _ = write!(
            line,
            "; request → answer taken p50 {} / p99 {} / max {}",
            format_us(l.p50),
            format_us(l.p99),
            format_us(l.max)
        );
    }
    line
}

/// A latency figure, or `—` when nothing was measured (never a made-up 0 µs).
fn measured_us(count: u64, us: u64) -> String {
    if count == 0 {
        "—".into()
    } else {
        format_us(us)
    }
}

/// `offered = sent − probes + dropped`, with the drop causes and what was left in flight.
fn requests_line(r: &super::Requests) -> Option<String> {
    if r.offered == 0 && r.sent == 0 {
        return None;
    }
    let mut line = format!(
        "requests: offered {} → sent {}",
        format_count(r.offered),
        format_count(r.sent - r.probes)
    );
    if r.probes > 0 {
        let _ = write!(line, " (+{} recovery probes)", format_count(r.probes));
    }
    if r.dropped > 0 {
        let causes: Vec<String> = r
            .dropped_by_cause
            .iter()
            .map(|(k, v)| format!("{k}={}", format_count(*v)))
            .collect();
        let _ = write!(
            line,
            ", dropped {} ({})",
            format_count(r.dropped),
            causes.join(" ")
        );
    }
    let _ = write!(
        line,
        "; ok {}, errors {}",
        format_count(r.ok),
        format_count(r.errors)
    );
    if r.in_flight_at_end > 0 {
        let _ = write!(
            line,
            "; {} still in flight at the end{}",
            format_count(r.in_flight_at_end),
            r.in_flight_oldest_ms
                .map_or(String::new(), |ms| format!(" (oldest {ms:.0} ms)"))
        );
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_causes_are_explained_once() {
        let mut phase = PhaseReport::new("failure_recovery", PhaseStatus::Completed);
        phase.errors_by_cause.insert("connect_refused".into(), 7);
        phase
            .errors_by_cause
            .insert("connect:ECONNREFUSED".into(), 7);
        let lines = phase_details(&phase);
        let explained: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("connect:ECONNREFUSED ×7: "))
            .collect();
        assert_eq!(explained.len(), 1, "{lines:?}");
        assert!(explained[0].contains("nothing listens at the target"));
        assert!(
            !lines.iter().any(|l| l.starts_with("connect_refused ×")),
            "plain causes are not errnos"
        );
    }
}
