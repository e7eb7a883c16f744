//! The report of a `mcpstorm run`: the structs serialized as `--json FILE` (their field names
//! are the schema) and the human summary printed on stdout. Part of `engine/`; built from the
//! merged shard metrics and the coordinator's memory readings, measures nothing itself.

use super::metrics::{Counter, ShardMetrics};
use super::template::Method;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The same percentile block the phased report uses.
pub use crate::report::Percentiles;

#[derive(Debug, Serialize)]
pub struct Connections {
    pub target: u64,
    pub established: u64,
    pub failed: u64,
    pub held_max: u64,
    /// Sessions established per second over the ramp (initialize handshake included).
    pub sessions_per_s: f64,
    pub ramp_s: f64,
    pub connect_us: Percentiles,
    /// initialize sent → 202 for notifications/initialized.
    pub initialize_us: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct Requests {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
    /// From the actual send instead of the intended send time.
    pub uncorrected: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct MethodLatency {
    pub corrected: Percentiles,
    pub uncorrected: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    /// Process RSS growth from just before the first connect to full hold ÷ sessions held.
    pub client_user_bytes_per_conn: Option<f64>,
    /// /proc/meminfo Slab growth over the same span ÷ sessions held (client and, on one host,
    /// server sockets together).
    pub kernel_bytes_per_socket: Option<f64>,
    /// The server's RSS growth over the same span ÷ sessions held (the embedded child, or
    /// `--server-pid`; null otherwise).
    pub server_user_bytes_per_conn: Option<f64>,
    pub rss_before_bytes: u64,
    pub rss_held_bytes: u64,
    pub held_at_measurement: u64,
    /// Size of one connection slot in the shard slab (part of the RSS figure above).
    pub conn_slot_bytes: usize,
}

#[derive(Debug, Serialize)]
pub struct Generator {
    pub late_sends: u64,
    pub late_sends_pct: f64,
    pub loop_lag_us_p99: u64,
    pub cq_overflows: u64,
    pub sq_backlog_max: u64,
    pub sq_backlog_pushes: u64,
    /// False when the generator itself was the bottleneck (`report::GeneratorCheck` rules:
    /// late sends > 1 %, loop lag p99 > 10 ms, any CQ overflow): the latencies are then not
    /// the server's alone.
    pub valid: bool,
    pub invalid_reason: Option<String>,
    /// Engine CPU time (all threads) over the load phase ÷ requests sent in it.
    pub cpu_us_per_request: Option<f64>,
    /// The server's CPU time over the load phase ÷ requests (embedded child or --server-pid).
    pub server_cpu_us_per_request: Option<f64>,
    pub shards: usize,
    pub rings: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub connections: Connections,
    pub requests: Requests,
    pub throughput_rps: f64,
    pub duration_s: f64,
    pub latency_us: Latency,
    pub latency_us_by_method: BTreeMap<&'static str, MethodLatency>,
    pub memory: Memory,
    pub generator: Generator,
    pub errors_by_cause: BTreeMap<&'static str, u64>,
    /// Connect-chain failures by `operation:errno name` (e.g. `connect:ECONNREFUSED`).
    pub connect_errnos: BTreeMap<String, u64>,
    /// One sample per second of the run (ramp, load, cool-down), merged across shards.
    pub timeline: Vec<crate::report::SecondSample>,
    /// Every engine counter, by name.
    pub counters: BTreeMap<&'static str, u64>,
}

/// What the coordinator measured around the shards.
pub struct Measured {
    pub target: u64,
    pub held_max: u64,
    pub load_s: f64,
    pub load_cpu_us: u64,
    pub server_load_cpu_us: Option<u64>,
    pub rss_before_bytes: u64,
    pub rss_held_bytes: u64,
    pub server_rss_before_bytes: Option<u64>,
    pub server_rss_held_bytes: Option<u64>,
    pub slab_before_bytes: Option<u64>,
    pub slab_held_bytes: Option<u64>,
    pub held_at_measurement: u64,
    pub conn_slot_bytes: usize,
    pub shards: usize,
    pub rings: usize,
}

impl Report {
    pub fn build(
        metrics: &ShardMetrics,
        measured: &Measured,
        timeline: Vec<crate::report::SecondSample>,
    ) -> Report {
        let ok = metrics.get(Counter::requests_ok);
        let failed = metrics.get(Counter::requests_failed);
        let established = metrics.established.min(measured.target);
        let ramp_s = metrics.ramp_ns as f64 / 1e9;
        let per_held = |grown: i64| {
            (measured.held_at_measurement > 0)
                .then(|| grown as f64 / measured.held_at_measurement as f64)
        };
        let corrected = Percentiles::of(&metrics.all.corrected);
        let check = crate::report::GeneratorCheck::judge(
            metrics.get(Counter::late_sends),
            metrics.get(Counter::requests_sent),
            if metrics.loop_lag.is_empty() {
                0
            } else {
                metrics.loop_lag.value_at_quantile(0.99)
            },
            metrics.cq_overflows,
            metrics.sq_backlog_max,
        );
        let sent = metrics.get(Counter::requests_sent);
        let per_request = |cpu_us: Option<u64>| {
            cpu_us
                .filter(|_| sent > 0)
                .map(|us| us as f64 / sent as f64)
        };
        let mut by_method = BTreeMap::new();
        for (index, method) in Method::LOAD.iter().enumerate() {
            let pair = &metrics.methods[index];
            if pair.corrected.is_empty() {
                continue;
            }
            by_method.insert(
                method.name(),
                MethodLatency {
                    corrected: Percentiles::of(&pair.corrected),
                    uncorrected: Percentiles::of(&pair.uncorrected),
                },
            );
        }
        Report {
            connections: Connections {
                target: measured.target,
                established,
                failed: measured.target - established,
                held_max: measured.held_max.max(metrics.held_max.min(measured.target)),
                sessions_per_s: if ramp_s > 0.0 {
                    established as f64 / ramp_s
                } else {
                    0.0
                },
                ramp_s,
                connect_us: Percentiles::of(&metrics.connect),
                initialize_us: Percentiles::of(&metrics.initialize),
            },
            requests: Requests {
                sent: metrics.get(Counter::requests_sent),
                ok,
                errors: failed,
            },
            throughput_rps: if measured.load_s > 0.0 {
                ok as f64 / measured.load_s
            } else {
                0.0
            },
            duration_s: measured.load_s,
            latency_us: Latency {
                p50: corrected.p50,
                p95: corrected.p95,
                p99: corrected.p99,
                max: corrected.max,
                uncorrected: Percentiles::of(&metrics.all.uncorrected),
            },
            latency_us_by_method: by_method,
            memory: Memory {
                client_user_bytes_per_conn: per_held(
                    measured.rss_held_bytes as i64 - measured.rss_before_bytes as i64,
                ),
                kernel_bytes_per_socket: match (
                    measured.slab_before_bytes,
                    measured.slab_held_bytes,
                ) {
                    (Some(before), Some(held)) => per_held(held as i64 - before as i64),
                    _ => None,
                },
                server_user_bytes_per_conn: match (
                    measured.server_rss_before_bytes,
                    measured.server_rss_held_bytes,
                ) {
                    (Some(before), Some(held)) => per_held(held as i64 - before as i64),
                    _ => None,
                },
                rss_before_bytes: measured.rss_before_bytes,
                rss_held_bytes: measured.rss_held_bytes,
                held_at_measurement: measured.held_at_measurement,
                conn_slot_bytes: measured.conn_slot_bytes,
            },
            generator: Generator {
                late_sends: check.late_sends,
                late_sends_pct: check.late_sends_pct,
                cq_overflows: check.cq_overflows,
                sq_backlog_max: check.sq_backlog_max,
                sq_backlog_pushes: metrics.sq_backlog_pushes,
                valid: check.valid,
                invalid_reason: check.invalid_reason,
                cpu_us_per_request: per_request(Some(measured.load_cpu_us)),
                server_cpu_us_per_request: per_request(measured.server_load_cpu_us),
                loop_lag_us_p99: check.loop_lag_us_p99,
                shards: measured.shards,
                rings: measured.rings,
            },
            errors_by_cause: metrics.errors_by_cause().into_iter().collect(),
            connect_errnos: metrics
                .errnos
                .iter()
                .map(|&(op, errno, count)| (format!("{op}:{}", errno_name(errno)), count))
                .collect(),
            timeline,
            counters: Counter::ALL
                .iter()
                .map(|c| (c.name(), metrics.get(*c)))
                .collect(),
        }
    }

    /// The human summary for stdout.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let c = &self.connections;
        let _ = writeln!(
            out,
            "connections  target {}  established {}  failed {}  held_max {}  ({:.0} sessions/s over {:.2} s)",
            c.target, c.established, c.failed, c.held_max, c.sessions_per_s, c.ramp_s
        );
        let _ = writeln!(
            out,
            "handshake    connect p50 {} µs p99 {} µs · initialize p50 {} µs p99 {} µs",
            c.connect_us.p50, c.connect_us.p99, c.initialize_us.p50, c.initialize_us.p99
        );
        let r = &self.requests;
        let _ = writeln!(
            out,
            "requests     sent {}  ok {}  errors {}  · {:.0} req/s over {:.2} s",
            r.sent, r.ok, r.errors, self.throughput_rps, self.duration_s
        );
        let l = &self.latency_us;
        let _ = writeln!(
            out,
            "latency µs   corrected p50 {} p95 {} p99 {} max {} · uncorrected p50 {} p99 {} max {}",
            l.p50, l.p95, l.p99, l.max, l.uncorrected.p50, l.uncorrected.p99, l.uncorrected.max
        );
        for (method, latency) in &self.latency_us_by_method {
            let _ = writeln!(
                out,
                "  {method:<11} n {} p50 {} p99 {} max {}",
                latency.corrected.count,
                latency.corrected.p50,
                latency.corrected.p99,
                latency.corrected.max
            );
        }
        let m = &self.memory;
        let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0} B"));
        let _ = writeln!(
            out,
            "memory       client user {} per connection · server user {} per session · kernel slab {} per socket (slot {} B, {} held)",
            show(m.client_user_bytes_per_conn),
            show(m.server_user_bytes_per_conn),
            show(m.kernel_bytes_per_socket),
            m.conn_slot_bytes,
            m.held_at_measurement
        );
        let g = &self.generator;
        let _ = writeln!(
            out,
            "generator    {} · late sends {} · loop lag p99 {} µs · CQ overflows {} · SQ backlog max {} · CPU {} per request (server {}) · {} shards × {} rings",
            match &g.invalid_reason {
                None => "valid".to_string(),
                Some(why) => format!("INVALID ({why})"),
            },
            g.late_sends,
            g.loop_lag_us_p99,
            g.cq_overflows,
            g.sq_backlog_max,
            g.cpu_us_per_request
                .map_or("n/a".to_string(), |v| format!("{v:.1} µs")),
            g.server_cpu_us_per_request
                .map_or("n/a".to_string(), |v| format!("{v:.1} µs")),
            g.shards,
            g.rings
        );
        if !self.errors_by_cause.is_empty() {
            let causes: Vec<String> = self
                .errors_by_cause
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(out, "errors       {}", causes.join(" · "));
        }
        // One explained line per connect-chain failure cause, with its count.
        for (cause, count) in &self.connect_errnos {
            let (operation, name) = cause.split_once(':').unwrap_or(("connect", cause.as_str()));
            let explanation = crate::sys::errno::from_name(name).map_or_else(
                || format!("{operation} failed with {name}"),
                |errno| crate::sys::errno::explain(operation, errno),
            );
            let _ = writeln!(out, "             {cause} ×{count}: {explanation}");
        }
        out
    }
}

/// The symbolic name of an errno (shared with `doctor`'s explanations).
pub(crate) fn errno_name(errno: i32) -> String {
    crate::sys::errno::name(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Measured {
        Measured {
            target: 10,
            held_max: 9,
            load_s: 2.0,
            load_cpu_us: 50,
            server_load_cpu_us: None,
            rss_before_bytes: 1_000_000,
            rss_held_bytes: 1_009_000,
            server_rss_before_bytes: Some(500),
            server_rss_held_bytes: Some(1_400),
            slab_before_bytes: Some(0),
            slab_held_bytes: Some(45_000),
            held_at_measurement: 9,
            conn_slot_bytes: 104,
            shards: 2,
            rings: 2,
        }
    }

    #[test]
    fn json_has_the_issue_fields() {
        let mut metrics = ShardMetrics::new();
        metrics.established = 9;
        metrics.add_to(Counter::requests_sent, 5);
        metrics.add_to(Counter::requests_ok, 4);
        metrics.add_to(Counter::requests_failed, 1);
        metrics.incr(Counter::error_http_5xx);
        metrics.record_request(Method::Ping, 200, 150);
        metrics.record_errno("bind", libc::EADDRINUSE);
        metrics.record_errno("connect", 999);
        let report = Report::build(&metrics, &measured(), Vec::new());
        let json = serde_json::to_value(&report).unwrap();
        for path in [
            "/connections/target",
            "/connections/established",
            "/connections/failed",
            "/connections/held_max",
            "/requests/sent",
            "/requests/ok",
            "/requests/errors",
            "/throughput_rps",
            "/latency_us/p50",
            "/latency_us/p95",
            "/latency_us/p99",
            "/latency_us/max",
            "/latency_us/uncorrected/p99",
            "/memory/client_user_bytes_per_conn",
            "/memory/kernel_bytes_per_socket",
            "/generator/late_sends",
            "/generator/loop_lag_us_p99",
            "/errors_by_cause/http_5xx",
        ] {
            assert!(json.pointer(path).is_some(), "missing {path} in {json}");
        }
        assert_eq!(json["connections"]["established"], 9);
        assert_eq!(json["connect_errnos"]["bind:EADDRINUSE"], 1);
        assert_eq!(json["connect_errnos"]["connect:E999"], 1);
        let text = report.text();
        assert!(
            text.contains("bind:EADDRINUSE ×1: the (source address, port) is taken"),
            "{text}"
        );
        assert_eq!(json["throughput_rps"], 2.0);
        assert_eq!(json["memory"]["client_user_bytes_per_conn"], 1000.0);
        assert_eq!(json["memory"]["kernel_bytes_per_socket"], 5000.0);
        assert_eq!(json["memory"]["server_user_bytes_per_conn"], 100.0);
        assert_eq!(json["generator"]["cpu_us_per_request"], 10.0);
        assert!(json["generator"]["server_cpu_us_per_request"].is_null());
        assert_eq!(json["generator"]["valid"], true);
        let mut late = ShardMetrics::new();
        late.add_to(Counter::requests_sent, 100);
        late.add_to(Counter::late_sends, 5);
        late.cq_overflows = 2;
        let late_report = Report::build(&late, &measured(), Vec::new());
        assert!(!late_report.generator.valid);
        assert!(
            late_report.text().contains("INVALID (5.00% of sends"),
            "{}",
            late_report.text()
        );
        assert!(report.text().contains("errors       http_5xx 1"));
    }
}
