//! SLA bounds and their verdicts. Part of `report/`; I/O-free. Every row puts the measured
//! `actual` beside the `target` and a verdict computed from the two; nothing is typed in.
//!
//! Defaults are the user's reference profile: P95 < 100 ms, errors < 0.05 %, sustained
//! throughput > 10,000 req/s, memory per connection < 2 KB, recovery < 5 s.

use super::{PhaseReport, PhaseStatus, format_us};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    /// The phase that measures this row was skipped by an option: nothing to judge.
    Skipped,
    /// The generator fell behind in the measuring phase: its figures cannot be trusted.
    Invalid,
    /// The figure should exist but does not (phase aborted, not run, or not measurable).
    NotMeasured,
    Fail,
    /// A figure shown beside the SLAs, not judged (the load host's own memory).
    Info,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SlaRow {
    pub name: String,
    pub phase: String,
    pub target: String,
    pub actual: String,
    /// The numbers behind `actual`/`target`, for scripts.
    pub actual_value: Option<f64>,
    pub target_value: f64,
    pub verdict: Verdict,
    pub note: Option<String>,
}

/// The bounds; `None` = that SLA is off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SlaSpec {
    pub p95_latency_us: Option<u64>,
    pub error_rate_pct: Option<f64>,
    pub throughput_rps: Option<f64>,
    pub mem_bytes_per_conn: Option<f64>,
    pub recovery_s: Option<f64>,
    /// Offered requests dropped because every session was busy, percent of offered.
    pub dropped_pct: Option<f64>,
    /// Bounds of single mix entries, by label (`tools/call search`), judged in sustained
    /// from that entry's own histogram and error count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub entries: BTreeMap<String, EntrySla>,
}

/// The bounds of one mix entry; `None` = not judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EntrySla {
    pub p95_latency_us: Option<u64>,
    pub error_rate_pct: Option<f64>,
}

impl Default for SlaSpec {
    fn default() -> SlaSpec {
        SlaSpec {
            p95_latency_us: Some(100_000),
            error_rate_pct: Some(0.05),
            throughput_rps: Some(10_000.0),
            mem_bytes_per_conn: Some(2048.0),
            recovery_s: Some(5.0),
            dropped_pct: Some(super::Saturation::DROPPED_PCT_MAX),
            entries: BTreeMap::new(),
        }
    }
}

impl SlaSpec {
    /// Applies `p95=100ms,errors=0.05%,throughput=10k,mem=2KB,recovery=5s` over the defaults;
    /// a value of `off` disables that SLA.
    pub fn parse_over_defaults(text: &str) -> Result<SlaSpec, String> {
        let mut spec = SlaSpec::default();
        spec.apply(text)?;
        Ok(spec)
    }

    /// Applies one `--sla` text over these bounds (a later `--sla` overrides an earlier one key
    /// by key). `p95[LABEL]=…` and `errors[LABEL]=…` bound the mix entry of that label.
    pub fn apply(&mut self, text: &str) -> Result<(), String> {
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once("]=")
                .map(|(k, v)| (format!("{k}]"), v))
                .or_else(|| item.split_once('=').map(|(k, v)| (k.to_string(), v)))
                .ok_or_else(|| format!("--sla item {item:?} is not key=value (e.g. p95=100ms)"))?;
            let value = value.trim();
            let off = value.eq_ignore_ascii_case("off");
            let key = key.trim();
            if let Some((metric, label)) = key.strip_suffix(']').and_then(|k| k.split_once('[')) {
                let label = label.trim();
                if label.is_empty() {
                    return Err(format!(
                        "--sla {item:?}: name the mix entry, e.g. p95[tools/call search]=50ms"
                    ));
                }
                let entry = self.entries.entry(label.to_string()).or_default();
                match metric.trim() {
                    "p95" => {
                        entry.p95_latency_us = if off {
                            None
                        } else {
                            Some(parse_latency_us(value)?)
                        }
                    }
                    "errors" => {
                        entry.error_rate_pct = if off {
                            None
                        } else {
                            Some(parse_pct("errors", value)?)
                        }
                    }
                    other => {
                        return Err(format!(
                            "--sla: {other:?} cannot bound one mix entry (p95[LABEL], errors[LABEL])"
                        ));
                    }
                }
                if *entry == EntrySla::default() {
                    self.entries.remove(label);
                }
                continue;
            }
            match key {
                "p95" => {
                    self.p95_latency_us = if off {
                        None
                    } else {
                        Some(parse_latency_us(value)?)
                    }
                }
                "errors" => {
                    self.error_rate_pct = if off {
                        None
                    } else {
                        Some(parse_pct("errors", value)?)
                    }
                }
                "dropped" => {
                    self.dropped_pct = if off {
                        None
                    } else {
                        Some(parse_pct("dropped", value)?)
                    }
                }
                "throughput" => {
                    self.throughput_rps = if off {
                        None
                    } else {
                        let number = value.trim_end_matches("rps").trim_end_matches("/s");
                        Some(crate::cli::parse_count(number)? as f64)
                    }
                }
                "mem" => {
                    self.mem_bytes_per_conn = if off { None } else { Some(parse_bytes(value)?) }
                }
                "recovery" => {
                    self.recovery_s = if off {
                        None
                    } else {
                        Some(crate::cli::parse_duration(value)?.as_secs_f64())
                    }
                }
                other => {
                    return Err(format!(
                        "--sla: unknown key {other:?} (p95, errors, throughput, mem, recovery, dropped, p95[ENTRY], errors[ENTRY])"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn parse_latency_us(value: &str) -> Result<u64, String> {
    Ok(crate::cli::parse_duration(value)?
        .as_micros()
        .min(u64::MAX as u128) as u64)
}

/// `0.05%` → 0.05.
fn parse_pct(key: &str, value: &str) -> Result<f64, String> {
    let number = value
        .strip_suffix('%')
        .ok_or_else(|| format!("--sla {key}={value}: give a percentage like 0.05%"))?;
    number
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("--sla {key}={value}: not a number"))
}

/// `2KB`, `2KiB`, `512B`, `1.5MB` → bytes (KB = 1000, KiB = 1024; the reference profile's
/// "2 KB" is read as 2048 by the default, the stricter reading).
pub fn parse_bytes(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a size: {text:?} (try 2KB)"))?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "kib" => 1024.0,
        "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    Ok(value * multiplier)
}

/// The verdict for a measuring phase before looking at the number.
fn phase_gate(phase: Option<&PhaseReport>) -> Result<&PhaseReport, (Verdict, String)> {
    match phase {
        None => Err((Verdict::NotMeasured, "phase missing from the run".into())),
        Some(p) if p.status == PhaseStatus::Skipped => {
            Err((Verdict::Skipped, format!("{} was skipped", p.name)))
        }
        Some(p) if matches!(p.status, PhaseStatus::NotRun) => {
            Err((Verdict::NotMeasured, format!("{} did not run", p.name)))
        }
        Some(p) => Ok(p),
    }
}

fn row(name: &str, phase: &str, target: String, target_value: f64) -> SlaRow {
    SlaRow {
        name: name.into(),
        phase: phase.into(),
        target,
        actual: "—".into(),
        actual_value: None,
        target_value,
        verdict: Verdict::NotMeasured,
        note: None,
    }
}

/// Judges one measured value: INVALID beats PASS when the generator fell behind.
fn judge(
    mut r: SlaRow,
    phase: &PhaseReport,
    actual: Option<f64>,
    actual_text: String,
    pass: impl Fn(f64) -> bool,
) -> SlaRow {
    let Some(actual) = actual else {
        r.note = Some(format!("{} produced no figure for this SLA", phase.name));
        return r;
    };
    r.actual = actual_text;
    r.actual_value = Some(actual);
    let passes = pass(actual);
    r.verdict = if !passes {
        Verdict::Fail
    } else if !phase.generator.valid {
        r.note = phase.generator.invalid_reason.clone();
        Verdict::Invalid
    } else {
        Verdict::Pass
    };
    if let Some(saturation) = &phase.saturation
        && r.note.is_none()
    {
        r.note = Some(saturation_note(saturation));
    }
    if phase.status != PhaseStatus::Completed && r.verdict == Verdict::Pass {
        r.note = Some(
            format!(
                "{} ended {:?}: figure covers the time it ran",
                phase.name, phase.status
            )
            .to_lowercase(),
        );
    }
    r
}

pub fn evaluate(spec: &SlaSpec, phases: &[PhaseReport]) -> Vec<SlaRow> {
    let find = |name: &str| phases.iter().find(|p| p.name == name);
    let mut rows = Vec::new();
    if let Some(bound) = spec.p95_latency_us {
        let r = row(
            "p95_latency",
            "sustained",
            format!("< {}", format_us(bound)),
            bound as f64,
        );
        rows.push(match phase_gate(find("sustained")) {
            Err((verdict, note)) => SlaRow {
                verdict,
                note: Some(note),
                ..r
            },
            Ok(p) => {
                let actual = (p.latency_us.count > 0).then_some(p.latency_us.p95 as f64);
                judge(r, p, actual, format_us(p.latency_us.p95), |a| {
                    a < bound as f64
                })
            }
        });
    }
    if let Some(bound) = spec.error_rate_pct {
        let r = row("error_rate", "sustained", format!("< {bound}%"), bound);
        rows.push(match phase_gate(find("sustained")) {
            Err((verdict, note)) => SlaRow {
                verdict,
                note: Some(note),
                ..r
            },
            Ok(p) => {
                let actual = p.requests.error_rate_pct();
                let text = actual.map_or("—".into(), |a| {
                    format!(
                        "{a:.3}% ({} of {})",
                        p.requests.errors,
                        p.requests.ok + p.requests.errors
                    )
                });
                judge(r, p, actual, text, |a| a < bound)
            }
        });
    }
    if let Some(bound) = spec.throughput_rps {
        let r = row(
            "throughput",
            "sustained",
            format!("> {bound:.0} req/s"),
            bound,
        );
        rows.push(match phase_gate(find("sustained")) {
            Err((verdict, note)) => SlaRow {
                verdict,
                note: Some(note),
                ..r
            },
            Ok(p) => {
                let actual = (p.duration_s > 0.0).then_some(p.throughput_rps);
                let mut r = judge(
                    r,
                    p,
                    actual,
                    format!("{:.0} req/s", p.throughput_rps),
                    |a| a > bound,
                );
                if r.verdict == Verdict::Fail
                    && let Some(offered) = p.offered_rps
                    && offered < bound
                {
                    r.note = Some(format!(
                        "offered only {offered:.0} req/s: raise --rate to test this SLA"
                    ));
                }
                r
            }
        });
    }
    if let Some(bound) = spec.mem_bytes_per_conn {
        let r = row(
            "memory_per_connection",
            "sustained",
            format!("< {bound:.0} B"),
            bound,
        );
        rows.push(match phase_gate(find("sustained")) {
            Err((verdict, note)) => SlaRow {
                verdict,
                note: Some(note),
                ..r
            },
            Ok(p) => {
                // The SLA is about the server under test; the load host's own figure is
                // never a stand-in for it.
                let memory = p.memory.clone().unwrap_or_default();
                // Everything holding N costs when it is known (the embedded server), else the
                // growth over the ramp (an external server's unsized RSS is not known).
                let figure = memory
                    .server_total_bytes_per_conn
                    .map(|total| (total, "server, total"))
                    .or(memory.server_user_bytes_per_conn.map(|grown| (grown, "server, growth")));
                match figure {
                    Some((server, how)) => judge(r, p, Some(server), format!("{server:.0} B ({how})"), |a| {
                        a < bound
                    }),
                    None => SlaRow {
                        note: Some(
                            "the server's memory is not measurable: give --server-pid (the embedded server is measured on its own)"
                                .into(),
                        ),
                        ..r
                    },
                }
            }
        });
    }
    rows.extend(entry_rows(&spec.entries, find("sustained")));
    rows.extend(client_memory_row(find("sustained")));
    if let Some(bound) = spec.dropped_pct
        && find("sustained").is_some()
    {
        rows.push(offered_load_row(find("sustained"), bound));
    }
    if let Some(bound) = spec.recovery_s {
        let r = row(
            "recovery_time",
            "failure_recovery",
            format!("< {bound} s"),
            bound,
        );
        rows.push(match phase_gate(find("failure_recovery")) {
            Err((verdict, note)) => SlaRow {
                verdict,
                note: Some(note),
                ..r
            },
            Ok(p) => match &p.recovery {
                None => SlaRow {
                    note: Some("no fault was measured".into()),
                    ..r
                },
                Some(recovery) => match recovery.recovery_s {
                    None => SlaRow {
                        actual: format!(
                            "never ({} of {} sessions back)",
                            recovery.sessions_restored, recovery.sessions_before
                        ),
                        verdict: Verdict::Fail,
                        ..r
                    },
                    Some(seconds) => judge(r, p, Some(seconds), format!("{seconds:.2} s"), |a| {
                        a < bound
                    }),
                },
            },
        });
    }
    rows
}

/// The bounds of single mix entries, each judged on that entry's own figures in sustained.
fn entry_rows(entries: &BTreeMap<String, EntrySla>, phase: Option<&PhaseReport>) -> Vec<SlaRow> {
    let mut rows = Vec::new();
    for (label, bounds) in entries {
        if let Some(bound) = bounds.p95_latency_us {
            let r = row(
                &format!("p95_latency[{label}]"),
                "sustained",
                format!("< {}", format_us(bound)),
                bound as f64,
            );
            rows.push(match phase_gate(phase) {
                Err((verdict, note)) => SlaRow {
                    verdict,
                    note: Some(note),
                    ..r
                },
                Ok(p) => {
                    let latency = p.latency_us_by_method.get(label);
                    let actual = latency.filter(|l| l.count > 0).map(|l| l.p95 as f64);
                    let text = latency.map_or("—".into(), |l| format_us(l.p95));
                    judge(r, p, actual, text, |a| a < bound as f64)
                }
            });
        }
        if let Some(bound) = bounds.error_rate_pct {
            let r = row(
                &format!("error_rate[{label}]"),
                "sustained",
                format!("< {bound}%"),
                bound,
            );
            rows.push(match phase_gate(phase) {
                Err((verdict, note)) => SlaRow {
                    verdict,
                    note: Some(note),
                    ..r
                },
                Ok(p) => {
                    let ok = p.latency_us_by_method.get(label).map_or(0, |l| l.count);
                    let errors = p.errors_by_method.get(label).copied().unwrap_or(0);
                    let total = ok + errors;
                    let actual = (total > 0).then(|| errors as f64 * 100.0 / total as f64);
                    let text =
                        actual.map_or("—".into(), |a| format!("{a:.3}% ({errors} of {total})"));
                    judge(r, p, actual, text, |a| a < bound)
                }
            });
        }
    }
    rows
}

/// The load host's own bytes per connection: shown beside the SLAs, never judged (the SLA is
/// the server's).
fn client_memory_row(phase: Option<&PhaseReport>) -> Option<SlaRow> {
    let memory = phase?.memory.as_ref()?;
    let grown = memory.client_user_bytes_per_conn?;
    let client = memory.client_total_bytes_per_conn.unwrap_or(grown);
    let mut actual = format!("{client:.0} B");
    if let Some(peak) = memory.client_peak_bytes_per_conn {
        actual.push_str(&format!(" (peak {peak:.0})"));
    }
    Some(SlaRow {
        actual,
        actual_value: Some(client),
        verdict: Verdict::Info,
        note: Some(
            "mcpstorm's own memory per held connection, everything sized for N included (the load host's cost)"
                .into(),
        ),
        ..row(
            "client_memory_per_connection",
            "sustained",
            "(load host, not judged)".into(),
            0.0,
        )
    })
}

/// Did the server carry the offered load? FAIL when more than `bound` percent of the offered
/// requests found every session busy (`--sla dropped=1%`).
fn offered_load_row(phase: Option<&PhaseReport>, bound: f64) -> SlaRow {
    let r = row(
        "offered_load_carried",
        "sustained",
        format!("< {bound}% dropped (no idle session)"),
        bound,
    );
    let p = match phase_gate(phase) {
        Err((verdict, note)) => {
            return SlaRow {
                verdict,
                note: Some(note),
                ..r
            };
        }
        Ok(p) => p,
    };
    if p.offered_rps.is_none() {
        return SlaRow {
            verdict: Verdict::Skipped,
            note: Some("closed loop: nothing is offered beyond what the server answers".into()),
            ..r
        };
    }
    let dropped = p
        .requests
        .dropped_by_cause
        .get("no_idle_session")
        .copied()
        .unwrap_or(0);
    let offered = p.requests.offered;
    let actual = (offered > 0).then(|| dropped as f64 * 100.0 / offered as f64);
    let text = actual.map_or("—".into(), |a| {
        format!("{a:.2}% ({dropped} of {offered})")
    });
    let mut r = judge(r, p, actual, text, |a| a <= bound);
    if let Some(saturation) = &p.saturation {
        r.note = Some(saturation_note(saturation));
    }
    r
}

fn saturation_note(s: &super::Saturation) -> String {
    format!(
        "SATURATED: the server carried {:.0} of {:.0} req/s offered",
        s.achieved_rps, s.offered_rps
    )
}

/// Overall verdict: FAIL if any row failed or was not measured, else INVALID if any row was
/// invalid, else PASS (skipped rows do not count).
pub fn overall(rows: &[SlaRow]) -> Verdict {
    if rows
        .iter()
        .any(|r| matches!(r.verdict, Verdict::Fail | Verdict::NotMeasured))
    {
        Verdict::Fail
    } else if rows.iter().any(|r| r.verdict == Verdict::Invalid) {
        Verdict::Invalid
    } else {
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::super::{GeneratorCheck, MemoryFigures, Percentiles, Recovery, Requests};
    use super::*;

    fn sustained(p95_us: u64, ok: u64, errors: u64, rps: f64) -> PhaseReport {
        let mut p = PhaseReport::new("sustained", PhaseStatus::Completed);
        p.duration_s = 10.0;
        p.latency_us = Percentiles {
            count: ok + errors,
            p50: p95_us / 2,
            p95: p95_us,
            p99: p95_us * 2,
            max: p95_us * 3,
        };
        p.requests = Requests {
            offered: ok + errors,
            sent: ok + errors,
            ok,
            errors,
            ..Requests::default()
        };
        p.throughput_rps = rps;
        p.offered_rps = Some(rps);
        p.memory = Some(MemoryFigures {
            client_user_bytes_per_conn: Some(120.0),
            server_user_bytes_per_conn: Some(70.0),
            ..MemoryFigures::default()
        });
        p
    }

    fn recovery_phase(seconds: Option<f64>) -> PhaseReport {
        let mut p = PhaseReport::new("failure_recovery", PhaseStatus::Completed);
        p.recovery = Some(Recovery {
            fault: "restart".into(),
            recovery_s: seconds,
            sessions_before: 1000,
            sessions_restored: if seconds.is_some() { 1000 } else { 10 },
            requests_lost: 3,
            stall_after_ms: 100.0,
            curve: Default::default(),
            kernel_tcp: Default::default(),
            effects: None,
            failover: None,
            streams_before: 0,
            streams_back_s: None,
        });
        p
    }

    fn verdict_of<'a>(rows: &'a [SlaRow], name: &str) -> &'a SlaRow {
        rows.iter().find(|r| r.name == name).unwrap()
    }

    #[test]
    fn everything_within_bounds_passes() {
        let rows = evaluate(
            &SlaSpec::default(),
            &[
                sustained(20_000, 1_000_000, 10, 20_000.0),
                recovery_phase(Some(1.5)),
            ],
        );
        assert!(
            rows.iter()
                .all(|r| matches!(r.verdict, Verdict::Pass | Verdict::Info)),
            "{rows:#?}"
        );
        assert_eq!(
            verdict_of(&rows, "client_memory_per_connection").actual,
            "120 B"
        );
        assert_eq!(
            verdict_of(&rows, "offered_load_carried").verdict,
            Verdict::Pass
        );
        assert_eq!(overall(&rows), Verdict::Pass);
        assert_eq!(verdict_of(&rows, "p95_latency").actual, "20.0 ms");
        assert_eq!(verdict_of(&rows, "p95_latency").target, "< 100.0 ms");
    }

    #[test]
    fn each_sla_can_fail() {
        // P95 over 100 ms (the `sleep` tool run).
        let rows = evaluate(
            &SlaSpec::default(),
            &[
                sustained(150_000, 1000, 0, 20_000.0),
                recovery_phase(Some(1.0)),
            ],
        );
        assert_eq!(verdict_of(&rows, "p95_latency").verdict, Verdict::Fail);
        // Errors (a tiny --max-sessions): 1 % > 0.05 %.
        let rows = evaluate(
            &SlaSpec::default(),
            &[
                sustained(1000, 990, 10, 20_000.0),
                recovery_phase(Some(1.0)),
            ],
        );
        assert_eq!(verdict_of(&rows, "error_rate").verdict, Verdict::Fail);
        assert_eq!(
            verdict_of(&rows, "error_rate").actual,
            "1.000% (10 of 1000)"
        );
        // The reference suite's "450 req/s vs target > 10K req/s" must FAIL, not PASS.
        let rows = evaluate(
            &SlaSpec::default(),
            &[sustained(1000, 4500, 0, 450.0), recovery_phase(Some(1.0))],
        );
        let throughput = verdict_of(&rows, "throughput");
        assert_eq!(throughput.verdict, Verdict::Fail);
        assert!(throughput.note.as_deref().unwrap().contains("raise --rate"));
        // Memory: a Python-SDK-like 43 KiB per session.
        let mut heavy = sustained(1000, 1000, 0, 20_000.0);
        heavy.memory = Some(MemoryFigures {
            server_user_bytes_per_conn: Some(44_000.0),
            client_user_bytes_per_conn: Some(100.0),
            ..Default::default()
        });
        let rows = evaluate(&SlaSpec::default(), &[heavy, recovery_phase(Some(1.0))]);
        let memory = verdict_of(&rows, "memory_per_connection");
        assert_eq!(memory.verdict, Verdict::Fail);
        assert!(
            memory.actual.contains("(server, growth)"),
            "{}",
            memory.actual
        );
        // The total (everything holding N costs) is judged when it is known.
        let mut sized = sustained(1000, 1000, 0, 20_000.0);
        sized.memory = Some(MemoryFigures {
            server_user_bytes_per_conn: Some(44.0),
            server_total_bytes_per_conn: Some(2_300.0),
            ..Default::default()
        });
        let rows = evaluate(&SlaSpec::default(), &[sized, recovery_phase(Some(1.0))]);
        let memory = verdict_of(&rows, "memory_per_connection");
        assert_eq!(memory.verdict, Verdict::Fail);
        assert_eq!(memory.actual, "2300 B (server, total)");
        // Without a server figure the load host's memory is never a stand-in for it.
        let mut unmeasured = sustained(1000, 1000, 0, 20_000.0);
        unmeasured.memory = Some(MemoryFigures {
            client_user_bytes_per_conn: Some(52_613.0),
            ..Default::default()
        });
        let rows = evaluate(
            &SlaSpec::default(),
            &[unmeasured, recovery_phase(Some(1.0))],
        );
        let memory = verdict_of(&rows, "memory_per_connection");
        assert_eq!(memory.verdict, Verdict::NotMeasured);
        assert!(memory.note.as_deref().unwrap().contains("--server-pid"));
        assert_eq!(
            verdict_of(&rows, "client_memory_per_connection").verdict,
            Verdict::Info
        );
        // A server that did not carry the offered load: FAIL on its figures, never INVALID.
        let mut saturated = sustained(1000, 800, 0, 800.0);
        saturated.offered_rps = Some(1000.0);
        saturated.requests.offered = 1000;
        saturated.requests.dropped = 200;
        saturated
            .requests
            .dropped_by_cause
            .insert("no_idle_session".into(), 200);
        saturated.saturation = Some(crate::report::Saturation {
            offered_rps: 1000.0,
            achieved_rps: 800.0,
            dropped_no_idle_session: 200,
            dropped_pct: 20.0,
        });
        let rows = evaluate(&SlaSpec::default(), &[saturated, recovery_phase(Some(1.0))]);
        let carried = verdict_of(&rows, "offered_load_carried");
        assert_eq!(carried.verdict, Verdict::Fail);
        assert_eq!(carried.actual, "20.00% (200 of 1000)");
        assert!(carried.note.as_deref().unwrap().contains("SATURATED"));
        assert!(rows.iter().all(|r| r.verdict != Verdict::Invalid));
        // Recovery: too slow, and never.
        let rows = evaluate(
            &SlaSpec::default(),
            &[
                sustained(1000, 1000, 0, 20_000.0),
                recovery_phase(Some(7.5)),
            ],
        );
        assert_eq!(verdict_of(&rows, "recovery_time").verdict, Verdict::Fail);
        let rows = evaluate(
            &SlaSpec::default(),
            &[sustained(1000, 1000, 0, 20_000.0), recovery_phase(None)],
        );
        let never = verdict_of(&rows, "recovery_time");
        assert_eq!(never.verdict, Verdict::Fail);
        assert!(never.actual.starts_with("never"));
        assert_eq!(overall(&rows), Verdict::Fail);
    }

    #[test]
    fn a_late_generator_makes_passing_rows_invalid() {
        let mut p = sustained(20_000, 1_000_000, 0, 20_000.0);
        p.generator = GeneratorCheck::judge(50_000, 1_000_000, 100, 0, 0);
        let rows = evaluate(&SlaSpec::default(), &[p, recovery_phase(Some(1.0))]);
        assert_eq!(verdict_of(&rows, "p95_latency").verdict, Verdict::Invalid);
        assert!(
            verdict_of(&rows, "p95_latency")
                .note
                .as_deref()
                .unwrap()
                .contains("late")
        );
        assert_eq!(overall(&rows), Verdict::Invalid);
        // A failing row stays FAIL: the bound broke even with a slow generator.
        let mut p = sustained(200_000, 1000, 0, 20_000.0);
        p.generator = GeneratorCheck::judge(500, 1000, 100, 0, 0);
        let rows = evaluate(&SlaSpec::default(), &[p, recovery_phase(Some(1.0))]);
        assert_eq!(verdict_of(&rows, "p95_latency").verdict, Verdict::Fail);
    }

    #[test]
    fn skipped_and_missing_phases() {
        let skipped = PhaseReport::new("failure_recovery", PhaseStatus::Skipped);
        let rows = evaluate(
            &SlaSpec::default(),
            &[sustained(1000, 1000, 0, 20_000.0), skipped],
        );
        assert_eq!(verdict_of(&rows, "recovery_time").verdict, Verdict::Skipped);
        assert_eq!(overall(&rows), Verdict::Pass);
        let rows = evaluate(&SlaSpec::default(), &[recovery_phase(Some(1.0))]);
        assert_eq!(
            verdict_of(&rows, "p95_latency").verdict,
            Verdict::NotMeasured
        );
        assert_eq!(overall(&rows), Verdict::Fail);
    }

    #[test]
    fn spec_parsing() {
        let spec = SlaSpec::parse_over_defaults(
            "p95=250ms, errors=1%,throughput=50k,mem=4KiB,recovery=off",
        )
        .unwrap();
        assert_eq!(spec.p95_latency_us, Some(250_000));
        assert_eq!(spec.error_rate_pct, Some(1.0));
        assert_eq!(spec.throughput_rps, Some(50_000.0));
        assert_eq!(spec.mem_bytes_per_conn, Some(4096.0));
        assert_eq!(spec.recovery_s, None);
        assert_eq!(
            SlaSpec::parse_over_defaults("").unwrap(),
            SlaSpec::default()
        );
        assert!(SlaSpec::parse_over_defaults("p99=1s").is_err());
        assert!(SlaSpec::parse_over_defaults("errors=5").is_err());
        assert!(SlaSpec::parse_over_defaults("mem=2 parsecs").is_err());
        let off = SlaSpec::parse_over_defaults(
            "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
        )
        .unwrap();
        assert!(evaluate(&off, &[]).is_empty());
    }

    #[test]
    fn a_mix_entry_has_its_own_bounds() {
        let mut spec = SlaSpec::parse_over_defaults(
            "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
        )
        .unwrap();
        spec.apply("p95[tools/call search]=50ms,errors[tools/call search]=1%,p95[ping]=1ms")
            .unwrap();
        assert_eq!(spec.entries.len(), 2);
        // A later --sla overrides one key of an entry, `off` drops it.
        spec.apply("p95[ping]=off").unwrap();
        assert_eq!(spec.entries.len(), 1);
        let mut phase = sustained(1000, 1000, 0, 1000.0);
        phase.latency_us_by_method.insert(
            "tools/call search".into(),
            Percentiles {
                count: 98,
                p50: 10_000,
                p95: 60_000,
                p99: 70_000,
                max: 80_000,
            },
        );
        phase.errors_by_method.insert("tools/call search".into(), 2);
        let rows = evaluate(&spec, &[phase.clone()]);
        let p95 = verdict_of(&rows, "p95_latency[tools/call search]");
        assert_eq!(p95.verdict, Verdict::Fail);
        assert_eq!(p95.actual_value, Some(60_000.0));
        let errors = verdict_of(&rows, "error_rate[tools/call search]");
        assert_eq!(errors.verdict, Verdict::Fail, "2 of 100 is 2%");
        assert_eq!(errors.actual_value, Some(2.0));
        spec.apply("p95[tools/call search]=100ms,errors[tools/call search]=5%")
            .unwrap();
        let rows = evaluate(&spec, &[phase]);
        assert_eq!(overall(&rows), Verdict::Pass, "{rows:?}");
        assert!(SlaSpec::parse_over_defaults("p99[ping]=1s").is_err());
        assert!(SlaSpec::parse_over_defaults("p95[]=1s").is_err());
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("2KB").unwrap(), 2000.0);
        assert_eq!(parse_bytes("2KiB").unwrap(), 2048.0);
        assert_eq!(parse_bytes("512").unwrap(), 512.0);
        assert_eq!(parse_bytes("1.5MB").unwrap(), 1_500_000.0);
    }
}
