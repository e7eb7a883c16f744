//! The client engine (`mcpstorm run`) against the embedded server (`mcpstorm serve`), both as
//! child processes: the engine's JSON report and the server's own counters must agree on every
//! session and every request.

mod common;

use common::Server;
use std::process::Command;

struct Run {
    report: serde_json::Value,
    stdout: String,
    code: Option<i32>,
}

/// These tests check the engine's behaviour, not a server's SLAs: every bound off, so the
/// exit code says only whether the run could run (2) or was invalid or interrupted (1).
const SLA_OFF: [&str; 2] = [
    "--sla",
    "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
];

fn run_engine(url: &str, extra: &[&str]) -> Run {
    run_engine_args(&[url], extra)
}

fn run_engine_args(urls: &[&str], extra: &[&str]) -> Run {
    // One file per distinct run (tests run in parallel); the options hashed, as a long mix
    // would make too long a name.
    let key = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (urls, extra).hash(&mut hasher);
        hasher.finish()
    };
    let json = std::env::temp_dir().join(format!(
        "mcpstorm-engine-{}-{key:016x}.json",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&json);
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args(["run", "--phases", "sustained", "--quiet"])
        // These tests count the server's side of the load exactly (sessions, requests, and
        // scripted servers that refuse or stall): no discovery session beside it (discovery
        // is tested in tests/probe.rs).
        .arg("--no-discovery")
        .args(SLA_OFF)
        .args(urls)
        .arg("--json")
        .arg(&json)
        .args(extra)
        .output()
        .expect("spawn mcpstorm run");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no JSON report ({e}), exit {}: {stdout}", output.status));
    let _ = std::fs::remove_file(&json);
    Run {
        report: serde_json::from_str(&text).expect("report is JSON"),
        stdout,
        code: output.status.code(),
    }
}

/// `run_engine` for a run that must measure: exit 0.
fn run_engine_ok(url: &str, extra: &[&str]) -> Run {
    let run = run_engine(url, extra);
    assert_eq!(run.code, Some(0), "mcpstorm run failed: {}", run.stdout);
    run
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
    assert_eq!(count(report, "/sessions/target"), connections);
    assert_eq!(
        count(report, "/sessions/established"),
        connections,
        "{}",
        run.stdout
    );
    assert_eq!(count(report, "/sessions/failed"), 0, "{}", run.stdout);
    assert_eq!(count(report, "/sessions/held_max"), connections);
    let sent = count(report, "/phases/2/requests/sent");
    let ok = count(report, "/phases/2/requests/ok");
    let errors = count(report, "/phases/2/requests/errors");
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
        let engine = report["phases"][2]["latency_us_by_method"][method]["count"]
            .as_u64()
            .unwrap_or(0);
        assert_eq!(engine, count(&stats, counter), "{method}");
    }
    assert!(count(report, "/phases/2/latency_us/p99") >= count(report, "/phases/2/latency_us/p50"));
    assert!(
        report["phases"][2]["memory"]["client_user_bytes_per_conn"].is_number(),
        "{report}"
    );
    // The per-second timeline accounts for every request, second by second.
    let timeline = report["series"].as_array().expect("timeline");
    let sum = |key: &str| -> u64 {
        timeline
            .iter()
            .map(|s| s[key].as_f64().unwrap() as u64)
            .sum()
    };
    assert_eq!(sum("throughput_rps"), ok, "{}", report["series"]);
    assert_eq!(sum("errors"), errors);
    assert!(
        timeline
            .iter()
            .any(|s| s["phase"] == "sustained" && s["latency_us_p99"].as_u64() > Some(0))
    );
    assert!(
        report["phases"][2]["cpu"]["generator_cpu_us_per_request"]
            .as_f64()
            .is_some_and(|us| us > 0.0),
        "{report}"
    );
}

#[test]
fn engine_json_mode_closed_loop_2000_sessions() {
    let server = Server::start(&["--response", "json"]);
    let server_pid = server.child.id().to_string();
    let run = run_engine_ok(
        &server.url(),
        &[
            "--server-pid",
            &server_pid,
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
    // Multishot: one receive per connection, re-armed only if the buffer ring ran dry.
    assert_eq!(
        count(&run.report, "/counters/recv_arms"),
        2000 + count(&run.report, "/counters/recv_buffers_exhausted")
    );
    assert!(
        run.report["phases"][2]["memory"]["server_user_bytes_per_conn"].is_number(),
        "{}",
        run.report
    );
}

#[test]
fn engine_sse_mode_open_model_multi_ring_with_source_ips() {
    // 2 shards × 2 rings of 600 slots, sockets bound to assigned source addresses (BIND
    // linked between SOCKET and CONNECT), SSE over chunked replies, 2,000 req/s open model.
    let server = Server::start(&["--response", "sse"]);
    let run = run_engine_ok(
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
    assert_eq!(count(&run.report, "/engine/rings"), 4);
    let sent = count(&run.report, "/phases/2/requests/sent");
    // An open model at 2,000/s for 2 s: the schedule, not the server, sets the count.
    assert!((3_000..=4_400).contains(&sent), "sent {sent}");
}

#[test]
fn engine_unreachable_target_counts_failures_and_exits_2_with_the_cause() {
    // Nothing listens on this port: every connect is refused, counted, and the run ends with
    // the reason (exit 2) and a report of what it tried.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", probe.local_addr().unwrap());
    drop(probe);
    let run = run_engine(
        &url,
        &[
            "--connections",
            "50",
            "--duration",
            "200ms",
            "--connect-retries",
            "2",
        ],
    );
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(
        run.stdout.contains("connection refused by"),
        "{}",
        run.stdout
    );
    assert!(
        run.report["could_not_run"]
            .as_str()
            .unwrap()
            .contains("is the server running?")
    );
    assert_eq!(run.report["phases"][0]["status"], "aborted");
    // The baseline's sessions (1 % of 50: one per shard) each try three times (two retries
    // after jittered backoffs); the run stops once one has failed for good, so the other may
    // be between its attempts then. Every attempt is refused and counted, and nothing more
    // than those sessions' attempts was made.
    let sessions = count(&run.report, "/phases/0/sessions/target");
    let failed = count(&run.report, "/sessions/failed");
    assert!(
        failed >= sessions && failed <= 2,
        "{}",
        run.report["sessions"]
    );
    assert_eq!(count(&run.report, "/sessions/established"), 0);
    let attempts = count(&run.report, "/counters/connect_attempts");
    assert!(
        attempts >= 3 * failed && attempts <= 3 * 2,
        "{attempts} attempts, {failed} failed"
    );
    assert!(count(&run.report, "/counters/connect_retries") >= 2 * failed);
    assert!(count(&run.report, "/counters/connect_retries") < attempts);
    assert_eq!(
        count(&run.report, "/errors_by_cause/connect_refused"),
        attempts
    );
    assert_eq!(
        count(&run.report, "/errors_by_cause/connect:ECONNREFUSED"),
        attempts
    );
    assert_eq!(count(&run.report, "/counters/requests_sent"), 0);
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

/// A scripted MCP server on std sockets (thread per connection) that misbehaves on purpose:
/// it closes some connections after answering (with `Connection: close`, or silently once the
/// connection is idle) and forgets sessions (404). Counts what it saw.
mod scripted {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    #[derive(Default)]
    pub struct Seen {
        pub connections: AtomicU64,
        pub sessions_created: AtomicU64,
        pub pings_ok: AtomicU64,
        pub pings_404: AtomicU64,
        pub closes_with_header: AtomicU64,
        pub closes_idle: AtomicU64,
        /// Pings answered with a TCP reset instead of a response.
        pub resets: AtomicU64,
        /// Reset the third request on every fourth connection (off unless a test sets it).
        pub reset_some: AtomicBool,
        /// Requests naming a session this server never issued (a client bug).
        pub unknown_session: AtomicU64,
        /// Sessions ended with DELETE.
        pub deletes: AtomicU64,
        pub initialize_requests: AtomicU64,
        /// Every this-many-th initialize is never answered (0 = answer all).
        pub silent_initialize_every: AtomicU64,
        /// The first this-many initialize requests get 503 (a full server).
        pub busy_initialize_first: AtomicU64,
        pub initialize_503: AtomicU64,
        pub stop: AtomicBool,
    }

    pub fn start(silent_initialize_every: u64) -> (SocketAddr, Arc<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        seen.silent_initialize_every
            .store(silent_initialize_every, Ordering::Relaxed);
        let accept_seen = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if accept_seen.stop.load(Ordering::Relaxed) {
                    return;
                }
                let index = accept_seen.connections.fetch_add(1, Ordering::Relaxed);
                let seen = accept_seen.clone();
                std::thread::spawn(move || serve(stream, &seen, index));
            }
        });
        (addr, seen)
    }

    fn serve(stream: TcpStream, seen: &Seen, index: u64) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut served_on_connection = 0u64;
        loop {
            let mut head = String::new();
            let mut content_length = 0usize;
            let mut session: Option<String> = None;
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    content_length = v.trim().parse().unwrap();
                }
                if let Some(v) = lower.strip_prefix("mcp-session-id:") {
                    session = Some(v.trim().to_string());
                }
                head.push_str(&line);
            }
            assert!(head.contains("Host: 127.0.0.1:"), "{head}");
            let mut body = vec![0u8; content_length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            if head.starts_with("DELETE ") {
                // cool_down ends each session: accepted, the session is over.
                seen.deletes.fetch_add(1, Ordering::Relaxed);
                if writer
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                continue;
            }
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let id = body["id"].clone();
            let method = body["method"].as_str().unwrap_or("");
            served_on_connection += 1;
            let json = |extra: &str, payload: String| {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{payload}",
                    payload.len()
                )
            };
            let (response, close) = match method {
                "initialize" => {
                    let k = seen.initialize_requests.fetch_add(1, Ordering::Relaxed) + 1;
                    if k <= seen.busy_initialize_first.load(Ordering::Relaxed) {
                        seen.initialize_503.fetch_add(1, Ordering::Relaxed);
                        let body = format!(
                            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32000,"message":"too many sessions"}}}}"#
                        );
                        let busy = format!(
                            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if writer.write_all(busy.as_bytes()).is_err() {
                            return;
                        }
                        continue;
                    }
                    let every = seen.silent_initialize_every.load(Ordering::Relaxed);
                    if every > 0 && k.is_multiple_of(every) {
                        // Never answer: hold the connection until the client gives up.
                        let mut sink = Vec::new();
                        let _ = reader.read_to_end(&mut sink);
                        return;
                    }
                    let n = seen.sessions_created.fetch_add(1, Ordering::Relaxed);
                    let payload = format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"2025-11-25","capabilities":{{}},"serverInfo":{{"name":"scripted","version":"1"}}}}}}"#
                    );
                    (json(&format!("Mcp-Session-Id: s-{n}\r\n"), payload), false)
                }
                "notifications/initialized" => (
                    "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_string(),
                    false,
                ),
                "ping"
                    if seen.reset_some.load(Ordering::Relaxed)
                        && index % 4 == 3
                        && served_on_connection == 3 =>
                {
                    // Reset instead of answering: linger 0, then close sends RST.
                    seen.resets.fetch_add(1, Ordering::Relaxed);
                    let _ =
                        socket2::SockRef::from(&writer).set_linger(Some(std::time::Duration::ZERO));
                    return;
                }
                "ping" => {
                    let known = session.as_deref().is_some_and(|s| {
                        s.strip_prefix("s-")
                            .and_then(|n| n.parse::<u64>().ok())
                            .is_some_and(|n| n < seen.sessions_created.load(Ordering::Relaxed))
                    });
                    if !known {
                        seen.unknown_session.fetch_add(1, Ordering::Relaxed);
                    }
                    let count = seen.pings_ok.load(Ordering::Relaxed)
                        + seen.pings_404.load(Ordering::Relaxed);
                    if count % 37 == 36 {
                        seen.pings_404.fetch_add(1, Ordering::Relaxed);
                        (
                            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 17\r\n\r\nSession not found"
                                .to_string(),
                            false,
                        )
                    } else {
                        seen.pings_ok.fetch_add(1, Ordering::Relaxed);
                        let payload = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#);
                        if served_on_connection.is_multiple_of(5) {
                            seen.closes_with_header.fetch_add(1, Ordering::Relaxed);
                            (json("Connection: close\r\n", payload), true)
                        } else {
                            (json("", payload), false)
                        }
                    }
                }
                other => panic!("unexpected method {other:?}"),
            };
            let ok_ping = response.starts_with("HTTP/1.1 200");
            if writer.write_all(response.as_bytes()).is_err() {
                return;
            }
            if close {
                return;
            }
            if method == "ping" && ok_ping && served_on_connection.is_multiple_of(7) {
                // Close as an idle keep-alive connection would be closed: after the response
                // has gone out and the client has read it, with no header announcing it.
                std::thread::sleep(std::time::Duration::from_millis(5));
                seen.closes_idle.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

#[test]
fn engine_reconnects_keeps_sessions_and_reinitializes_after_404() {
    let (addr, seen) = scripted::start(0);
    seen.reset_some
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let url = format!("http://{addr}/mcp");
    let run = run_engine_ok(
        &url,
        &[
            "--connections",
            "20",
            "--shards",
            "1",
            "--duration",
            "1500ms",
            "--rate",
            "400",
        ],
    );
    seen.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let report = &run.report;
    let sent = count(report, "/phases/2/requests/sent");
    let ok = count(report, "/phases/2/requests/ok");
    let errors = count(report, "/phases/2/requests/errors");
    assert_eq!(sent, ok + errors, "{}", run.stdout);
    assert_eq!(count(report, "/sessions/established"), 20);
    assert_eq!(
        load(&seen.unknown_session),
        0,
        "the engine sent a session it did not get"
    );
    // Every 404 is one failed request counted as a lost session, and one new session.
    let lost = load(&seen.pings_404);
    assert!(lost > 0, "the script never answered 404: {}", run.stdout);
    assert_eq!(count(report, "/errors_by_cause/session_lost"), lost);
    // A silent close can race a request the engine sent just before it (the script cannot
    // know one is coming): such a request fails as closed mid-request (or reset), and is the
    // only other error allowed.
    let cause = |name: &str| report["errors_by_cause"][name].as_u64().unwrap_or(0);
    let mid_request = cause("closed_mid_request") + cause("reset");
    assert_eq!(errors, lost + mid_request, "{}", run.stdout);
    // Every deliberate reset failed its ping as `reset` (a racing silent close may add more).
    assert!(load(&seen.resets) > 0);
    assert!(cause("reset") >= load(&seen.resets), "{}", run.stdout);
    assert!(mid_request <= load(&seen.closes_idle) + load(&seen.resets));
    assert_eq!(ok, load(&seen.pings_ok));
    assert_eq!(load(&seen.sessions_created), 20 + lost);
    assert_eq!(count(report, "/counters/sessions_established"), 20 + lost);
    // Closes announced by the header, and silent idle closes, each led to a reconnect that
    // kept the session (no initialize beyond the 404 ones above).
    assert!(load(&seen.closes_with_header) > 0 && load(&seen.closes_idle) > 0);
    assert_eq!(
        count(report, "/counters/reconnects_connection_close"),
        load(&seen.closes_with_header)
    );
    assert!(
        count(report, "/counters/reconnects_idle_close") + mid_request
            <= load(&seen.closes_idle) + load(&seen.resets),
        "{}",
        run.stdout
    );
    assert_eq!(
        load(&seen.connections),
        count(report, "/counters/connect_attempts")
    );
}

#[test]
fn engine_unanswered_initialize_times_out_and_the_run_ends_on_time() {
    let (addr, seen) = scripted::start(4);
    let url = format!("http://{addr}/mcp");
    let run = run_engine_ok(
        &url,
        &[
            "--connections",
            "40",
            "--shards",
            "1",
            "--duration",
            "500ms",
            "--request-timeout",
            "400ms",
            "--rate",
            "200",
        ],
    );
    seen.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = &run.report;
    // 10 of 40 initialize requests are never answered: each times out (swept every 40 ms) and
    // the connection counts as failed; the others load normally.
    assert_eq!(count(report, "/sessions/established"), 30, "{}", run.stdout);
    assert_eq!(count(report, "/sessions/failed"), 10);
    assert_eq!(count(report, "/errors_by_cause/request_timeout"), 10);
    assert_eq!(count(report, "/errors_by_cause/initialize_failed"), 10);
    // The script also answers every 37th ping with 404: those are the only request errors.
    assert_eq!(
        count(report, "/phases/2/requests/errors"),
        seen.pings_404.load(std::sync::atomic::Ordering::Relaxed),
        "{}",
        run.stdout
    );
    assert!(count(report, "/phases/2/requests/ok") > 0);
}

#[test]
fn engine_ramp_timeout_starts_the_load_with_the_sessions_held() {
    // Every 2nd initialize hangs and the request timeout is long: the ramp cannot finish,
    // so --ramp-timeout ends it and the load runs on the sessions held.
    let (addr, seen) = scripted::start(2);
    let url = format!("http://{addr}/mcp");
    let run = run_engine_ok(
        &url,
        &[
            "--connections",
            "20",
            "--shards",
            "1",
            "--duration",
            "300ms",
            "--ramp-timeout",
            "500ms",
            "--request-timeout",
            "60s",
        ],
    );
    seen.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = &run.report;
    assert_eq!(count(report, "/sessions/established"), 10, "{}", run.stdout);
    assert_eq!(count(report, "/sessions/failed"), 10);
    assert_eq!(count(report, "/errors_by_cause/ramp_timeout"), 10);
    let sent = count(report, "/phases/2/requests/sent");
    assert_eq!(
        sent,
        count(report, "/phases/2/requests/ok") + count(report, "/phases/2/requests/errors")
    );
    assert!(count(report, "/phases/2/requests/ok") > 0);
}

#[test]
fn engine_without_url_loads_the_embedded_server_child() {
    // No URL: `mcpstorm serve` is started as a child, loaded with tools/call echo, measured
    // (its RSS growth per session is reported) and stopped.
    let run = run_engine_args(
        &[],
        &[
            "--connections",
            "1000",
            "--duration",
            "1s",
            "--rate",
            "1000",
        ],
    );
    let report = &run.report;
    assert_eq!(
        count(report, "/sessions/established"),
        1000,
        "{}",
        run.stdout
    );
    assert_eq!(count(report, "/sessions/failed"), 0);
    let sent = count(report, "/phases/2/requests/sent");
    assert!(sent > 500, "{}", run.stdout);
    assert_eq!(
        count(report, "/phases/2/requests/ok"),
        sent,
        "{}",
        run.stdout
    );
    assert_eq!(
        count(report, "/phases/2/latency_us_by_method/tools~1call/count"),
        sent
    );
    assert!(report["phases"][2]["memory"]["server_user_bytes_per_conn"].is_number());
}

#[test]
fn engine_protocol_2026_07_28_sessionless_against_serve() {
    for mode in ["json", "sse"] {
        let server = Server::start(&["--response", mode]);
        let run = run_engine_ok(
            &server.url(),
            &[
                "--connections",
                "1000",
                "--shards",
                "2",
                "--duration",
                "1s",
                "--protocol-version",
                "2026-07-28",
                "--mix",
                "tools/call:80,tools/list:20",
            ],
        );
        let report = &run.report;
        let stats = server.stats();
        assert_eq!(
            count(report, "/sessions/established"),
            1000,
            "{}",
            run.stdout
        );
        assert_eq!(count(report, "/sessions/failed"), 0);
        let ok = count(report, "/phases/2/requests/ok");
        assert!(ok > 0);
        assert_eq!(
            count(report, "/phases/2/requests/sent"),
            ok,
            "{}",
            run.stdout
        );
        assert_eq!(
            report["errors_by_cause"],
            serde_json::json!({}),
            "{}",
            run.stdout
        );
        // No handshake and no session on the wire; every request took the 2026 path with
        // headers and _meta the server accepted.
        assert_eq!(count(&stats, "/sessions_created"), 0, "{stats}");
        assert_eq!(count(&stats, "/method_initialize"), 0, "{stats}");
        assert_eq!(count(&stats, "/requests_modern"), ok, "{stats}");
        assert_eq!(
            count(&stats, "/method_tools_call") + count(&stats, "/method_tools_list"),
            ok
        );
        assert_eq!(count(&stats, "/error_header_mismatch"), 0);
        assert_eq!(count(&stats, "/error_invalid_meta"), 0);
    }
}

#[test]
fn engine_backs_off_on_503_and_then_establishes() {
    // The first 15 initialize requests find the server full (503, no Retry-After): each is
    // counted, waited out on its connection with a jittered backoff, and resent.
    let (addr, seen) = scripted::start(0);
    seen.busy_initialize_first
        .store(15, std::sync::atomic::Ordering::Relaxed);
    let url = format!("http://{addr}/mcp");
    let run = run_engine_ok(
        &url,
        &[
            "--connections",
            "10",
            "--shards",
            "1",
            "--duration",
            "300ms",
            "--rate",
            "100",
        ],
    );
    seen.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = &run.report;
    let busy = seen
        .initialize_503
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(busy, 15);
    assert_eq!(count(report, "/sessions/established"), 10, "{}", run.stdout);
    assert_eq!(count(report, "/errors_by_cause/http_503"), 15);
    assert_eq!(count(report, "/counters/busy_backoffs"), 15);
    assert_eq!(
        report["errors_by_cause"]["initialize_failed"],
        serde_json::Value::Null
    );
    assert_eq!(count(report, "/sessions/failed"), 0);
    // One session each, plus one per session the script forgot (its every-37th-ping 404).
    let lost = report["errors_by_cause"]["session_lost"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        seen.sessions_created
            .load(std::sync::atomic::Ordering::Relaxed),
        10 + lost,
        "{}",
        run.stdout
    );
}

#[test]
fn engine_recv_armed_only_while_awaiting_against_serve_sse() {
    // `--recv armed`: single-shot receives, armed with each request and re-armed only while
    // its response is incomplete (SSE over chunked arrives in pieces).
    let server = Server::start(&["--response", "sse"]);
    let run = run_engine_ok(
        &server.url(),
        &[
            "--connections",
            "1000",
            "--shards",
            "2",
            "--duration",
            "1s",
            "--recv",
            "armed",
            "--mix",
            "tools/call:80,tools/list:10,ping:10",
        ],
    );
    assert_sides_agree(&server, &run, 1000);
    // One receive per response at least (initialize, initialized, every request).
    assert!(
        count(&run.report, "/counters/recv_arms")
            >= 2000 + count(&run.report, "/phases/2/requests/sent")
    );
}

#[test]
fn engine_connect_rate_paces_the_ramp() {
    // 900 sessions at 600/s over two shards: paced by the shards' loop deadlines (no timer
    // per connection), not as fast as possible. Checked on counts, not on how long it took:
    // by the end of second k of the run no more than the pacer allows can be held.
    let server = Server::start(&["--response", "json"]);
    let run = run_engine_ok(
        &server.url(),
        &[
            "--connections",
            "900",
            "--shards",
            "2",
            "--connect-rate",
            "600",
            "--duration",
            "100ms",
        ],
    );
    let report = &run.report;
    assert_eq!(count(report, "/sessions/established"), 900);
    let rate = report["phases"][1]["sessions"]["established_per_s"]
        .as_f64()
        .unwrap();
    assert!(rate <= 670.0, "{rate} sessions/s: {}", run.stdout);
    // The baseline's 9 sessions open at once (a burst is allowed: +1 per shard), the rest at
    // 300/s per shard.
    let series = report["series"].as_array().unwrap();
    assert!(
        series.len() >= 2,
        "the ramp spans more than a second: {series:?}"
    );
    for sample in series {
        let k = sample["t_s"].as_f64().unwrap() as u64;
        let held = sample["sessions_held"].as_u64().unwrap();
        assert!(held <= 9 + 2 + 600 * (k + 1), "second {k}: {sample}");
    }
}

#[test]
fn engine_connect_timeout_cancels_hanging_connects() {
    // A listener that never accepts, its accept queue already full: the kernel drops further
    // SYNs, so connects hang until the engine's --connect-timeout cancels them.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(stream) =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
        {
            fillers.push(stream);
        }
    }
    let run = run_engine(
        &format!("http://{addr}/mcp"),
        &[
            "--connections",
            "5",
            "--shards",
            "1",
            "--connect-timeout",
            "300ms",
            "--connect-retries",
            "0",
            "--duration",
            "100ms",
        ],
    );
    // The baseline's session cannot connect: the run says why (exit 2) and counts it.
    let report = &run.report;
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(run.stdout.contains("timed out"), "{}", run.stdout);
    let failed = count(report, "/sessions/failed");
    assert!(failed >= 1, "{}", run.stdout);
    assert_eq!(
        count(report, "/errors_by_cause/connect_timeout"),
        failed,
        "{}",
        run.stdout
    );
    drop(fillers);
}

/// Every method a client sends, one mix entry each, with generated arguments.
const EVERY_METHOD_MIX: &str = "tools/call:3,resources/read=mcpstorm://items/{{seq}}:3,resources/list,resources/templates/list,prompts/list,prompts/get=greet,completion/complete=greet,logging/setLevel=info,ping,tools/list";
const EVERY_METHOD_LABELS: [&str; 10] = [
    "tools/call",
    "resources/read mcpstorm://items/{{seq}}",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "prompts/get greet",
    "completion/complete greet",
    "logging/setLevel info",
    "ping",
    "tools/list",
];

/// Every method of the mix against `serve`: each entry answered on its own figures, none
/// failed, and serve's own counters agree entry by entry.
#[test]
fn every_method_of_the_mix_against_serve() {
    let server = Server::start(&[]);
    let run = run_engine_ok(
        &server.url(),
        &[
            "--connections",
            "40",
            "--shards",
            "2",
            "--rate",
            "600",
            "--duration",
            "2s",
            "--seed",
            "11",
            "--mix",
            EVERY_METHOD_MIX,
            "--args",
            r#"greet={"name":"A"}"#,
            "--tool-args",
            r#"{"text":"{{str 12}}"}"#,
        ],
    );
    let report = &run.report;
    let phase = &report["phases"][2];
    assert_eq!(count(phase, "/requests/errors"), 0, "{}", run.stdout);
    assert_eq!(
        phase["errors_by_method"],
        serde_json::json!({}),
        "{}",
        run.stdout
    );
    let answered = |label: &str| {
        count(
            phase,
            &format!("/latency_us_by_method/{}/count", label.replace('/', "~1")),
        )
    };
    for label in EVERY_METHOD_LABELS {
        assert!(answered(label) > 0, "{label}: {}", run.stdout);
    }
    let total: u64 = EVERY_METHOD_LABELS.iter().map(|l| answered(l)).sum();
    assert_eq!(total, count(phase, "/requests/ok"), "{}", run.stdout);
    assert_eq!(report["seed"], 11);
    assert_eq!(report["mix"][1]["entry"], EVERY_METHOD_LABELS[1]);
    let stats = server.stats();
    for (counter, labels) in [
        ("/method_tools_call", &["tools/call"][..]),
        (
            "/method_resources",
            &[
                "resources/read mcpstorm://items/{{seq}}",
                "resources/list",
                "resources/templates/list",
            ],
        ),
        ("/method_prompts", &["prompts/list", "prompts/get greet"]),
        ("/method_completion", &["completion/complete greet"]),
        ("/method_logging", &["logging/setLevel info"]),
        ("/method_ping", &["ping"]),
        ("/method_tools_list", &["tools/list"]),
    ] {
        let engine: u64 = labels.iter().map(|l| answered(l)).sum();
        assert_eq!(count(&stats, counter), engine, "{counter}: {stats}");
    }
    assert_eq!(count(&stats, "/error_invalid_params"), 0, "{stats}");
}

/// A mix entry the server fails is counted on that entry and by its cause; the others go on.
#[test]
fn a_failing_entry_is_counted_on_its_own() {
    let server = Server::start(&[]);
    let run = run_engine(
        &server.url(),
        &[
            "--connections",
            "10",
            "--shards",
            "1",
            "--rate",
            "200",
            "--duration",
            "2s",
            "--mix",
            "ping,resources/read=mcpstorm://nothing-here",
        ],
    );
    let phase = &run.report["phases"][2];
    let failed = count(
        phase,
        "/errors_by_method/resources~1read mcpstorm:~1~1nothing-here",
    );
    assert!(failed > 0, "{}", run.stdout);
    assert_eq!(failed, count(phase, "/requests/errors"), "{}", run.stdout);
    assert!(phase["errors_by_method"].get("ping").is_none());
    assert_eq!(
        count(&run.report, "/errors_by_cause/rpc_error"),
        failed,
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("resources/read mcpstorm://nothing-here: "),
        "{}",
        run.stdout
    );
}
