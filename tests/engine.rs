//! The client engine (`mcpstorm run`) against the embedded server (`mcpstorm serve`), both as
//! child processes: the engine's JSON report and the server's own counters must agree on every
//! session and every request.

mod common;

use common::Server;
use std::process::Command;

struct Run {
    report: serde_json::Value,
    stdout: String,
}

fn run_engine(url: &str, extra: &[&str]) -> Run {
    let json = std::env::temp_dir().join(format!(
        "mcpstorm-engine-{}-{}.json",
        std::process::id(),
        extra.join("_").replace(['/', ':', ','], "-")
    ));
    let _ = std::fs::remove_file(&json);
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("run")
        .arg(url)
        .arg("--json")
        .arg(&json)
        .args(extra)
        .output()
        .expect("spawn mcpstorm run");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "mcpstorm run failed ({}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("JSON report written");
    let _ = std::fs::remove_file(&json);
    Run {
        report: serde_json::from_str(&text).expect("report is JSON"),
        stdout,
    }
}

fn count(value: &serde_json::Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing or not a count in {value}"))
}

/// Both sides agree: every connection holds a session the server created, every request the
/// engine sent was answered OK, and the server handled exactly those.
fn assert_sides_agree(server: &Server, run: &Run, connections: u64) {
    let report = &run.report;
    let stats = server.stats();
    assert_eq!(count(report, "/connections/target"), connections);
    assert_eq!(
        count(report, "/connections/established"),
        connections,
        "{}",
        run.stdout
    );
    assert_eq!(count(report, "/connections/failed"), 0, "{}", run.stdout);
    assert_eq!(count(report, "/connections/held_max"), connections);
    let sent = count(report, "/requests/sent");
    let ok = count(report, "/requests/ok");
    let errors = count(report, "/requests/errors");
    assert_eq!(sent, ok + errors);
    assert_eq!(errors, 0, "{}", run.stdout);
    assert!(ok > 0, "no request completed: {}", run.stdout);
    assert_eq!(
        report["errors_by_cause"],
        serde_json::json!({}),
        "{}",
        run.stdout
    );
    assert_eq!(
        count(&stats, "/sessions_created"),
        count(report, "/counters/sessions_established")
    );
    assert_eq!(count(&stats, "/sessions_created"), connections);
    let server_requests = count(&stats, "/method_ping")
        + count(&stats, "/method_tools_list")
        + count(&stats, "/method_tools_call");
    assert_eq!(server_requests, ok, "server {stats}");
    for (method, counter) in [
        ("ping", "/method_ping"),
        ("tools/list", "/method_tools_list"),
        ("tools/call", "/method_tools_call"),
    ] {
        let engine = report["latency_us_by_method"][method]["corrected"]["count"]
            .as_u64()
            .unwrap_or(0);
        assert_eq!(engine, count(&stats, counter), "{method}");
    }
    assert!(count(report, "/latency_us/p99") >= count(report, "/latency_us/p50"));
    assert!(
        report["memory"]["client_user_bytes_per_conn"].is_number(),
        "{report}"
    );
}

#[test]
fn engine_json_mode_closed_loop_2000_sessions() {
    let server = Server::start(&["--response", "json"]);
    let run = run_engine(
        &server.url(),
        &[
            "--connections",
            "2000",
            "--shards",
            "2",
            "--duration",
            "2s",
            "--mix",
            "tools/call:80,tools/list:10,ping:10",
        ],
    );
    assert_sides_agree(&server, &run, 2000);
}

#[test]
fn engine_sse_mode_open_model_multi_ring_with_source_ips() {
    // 2 shards × 2 rings of 600 slots, sockets bound to assigned source addresses (BIND
    // linked between SOCKET and CONNECT), SSE over chunked replies, 2,000 req/s open model.
    let server = Server::start(&["--response", "sse"]);
    let run = run_engine(
        &server.url(),
        &[
            "--connections",
            "2000",
            "--shards",
            "2",
            "--ring-slots",
            "600",
            "--source-ips",
            "127.0.0.2-127.0.0.3",
            "--duration",
            "2s",
            "--rate",
            "2000",
            "--tool",
            "echo",
        ],
    );
    assert_sides_agree(&server, &run, 2000);
    assert_eq!(count(&run.report, "/generator/rings"), 4);
    let sent = count(&run.report, "/requests/sent");
    // An open model at 2,000/s for 2 s: the schedule, not the server, sets the count.
    assert!((3_000..=4_400).contains(&sent), "sent {sent}");
}

#[test]
fn engine_unreachable_target_counts_failures_and_exits_zero() {
    // Nothing listens on this port: every connect is refused, counted, and the run ends.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", probe.local_addr().unwrap());
    drop(probe);
    let run = run_engine(&url, &["--connections", "50", "--duration", "200ms"]);
    assert_eq!(count(&run.report, "/connections/established"), 0);
    assert_eq!(count(&run.report, "/connections/failed"), 50);
    assert_eq!(count(&run.report, "/errors_by_cause/connect_refused"), 50);
    assert_eq!(count(&run.report, "/requests/sent"), 0);
}

#[test]
fn engine_refuses_non_loopback_and_impossible_plans_with_exit_2() {
    for args in [
        vec!["run", "http://10.1.2.3:80/mcp"],
        vec!["run", "http://127.0.0.1:9/mcp", "--mix", "initialize:1"],
        vec!["run", "http://127.0.0.1:9/mcp", "--connections", "200000"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty());
    }
}
