//! `run --streams` (issue 11): sessions that also hold their server-to-client stream, against
//! `serve --notify-every` whose own counters say what it sent — every notification sent to a
//! held stream is received and timed, none invented; streams broken by a server restart are
//! reopened; the 2026-07-28 `subscriptions/listen` stream; a share of the sessions.

mod common;

use common::{RunOutput, Server, run_mcpstorm};

const SLA_OFF: &str = "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off";

fn streams(run: &RunOutput) -> &serde_json::Value {
    let streams = &run.report["streams"];
    assert!(streams.is_object(), "no streams report: {}", run.output);
    streams
}

fn count(value: &serde_json::Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {value}"))
}

/// Every stream held, every notification the server sent them received and timed: the
/// engine's count sits between what the server sent and that less one round per stream (the
/// round in flight when cool_down closes them).
fn assert_every_notification_received(server: &Server, run: &RunOutput, planned: u64) {
    assert_eq!(run.code, Some(0), "{}", run.output);
    let streams = streams(run);
    assert_eq!(count(streams, "planned"), planned, "{streams}");
    assert_eq!(count(streams, "held"), planned, "{streams}");
    assert!(count(streams, "opened") >= planned, "{streams}");
    assert_eq!(count(streams, "failed"), 0, "{streams}");
    let stats = server.stats();
    let sent = count(&stats, "notifications_sent");
    assert_eq!(count(&stats, "notifications_dropped"), 0, "{stats}");
    let by_method = &streams["notifications_by_method"];
    let received = count(by_method, "notifications/message");
    assert!(
        received <= sent && received + planned >= sent,
        "received {received} of {sent} sent to {planned} streams: {streams}"
    );
    assert!(received >= planned * 3, "a few rounds at least: {streams}");
    // Each stamped with its send time, each timed once.
    assert_eq!(
        count(&streams["notification_latency_us"], "count"),
        received,
        "{streams}"
    );
    assert_eq!(count(streams, "requests_received"), 0, "{streams}");
}

#[test]
fn every_held_get_stream_receives_every_notification() {
    let server = Server::start(&["--shards", "2", "--notify-every", "200ms"]);
    let run = run_mcpstorm(&[
        &server.url(),
        "--phases",
        "sustained",
        "--duration",
        "2s",
        "--connections",
        "200",
        "--streams",
        "all",
        "--no-discovery",
        "--quiet",
        "--sla",
        SLA_OFF,
    ]);
    assert_every_notification_received(&server, &run, 200);
    let streams = streams(&run);
    assert_eq!(count(streams, "reopened"), 0, "{streams}");
    // The streams are in the series too: held over time, notifications per second.
    let series = run.report["series"].as_array().unwrap();
    assert!(
        series.iter().any(|s| s["streams_held"] == 200),
        "{series:?}"
    );
    let per_second: u64 = series.iter().map(|s| count(s, "notifications")).sum();
    assert_eq!(per_second, count(streams, "notifications_received"));
    assert!(
        run.output.contains("streams: 200 of 200 held"),
        "{}",
        run.output
    );
}

#[test]
fn every_held_listen_stream_receives_every_notification_under_2026_07_28() {
    let server = Server::start(&["--shards", "1", "--notify-every", "200ms"]);
    let run = run_mcpstorm(&[
        &server.url(),
        "--phases",
        "sustained",
        "--duration",
        "2s",
        "--connections",
        "100",
        "--protocol-version",
        "2026-07-28",
        "--mix",
        "tools/list",
        "--streams",
        "all",
        "--no-discovery",
        "--quiet",
        "--sla",
        SLA_OFF,
    ]);
    assert_every_notification_received(&server, &run, 100);
    let streams = streams(&run);
    // Each listen stream opens with the server's acknowledgement.
    assert_eq!(
        count(
            &streams["notifications_by_method"],
            "notifications/subscriptions/acknowledged"
        ),
        count(streams, "opened"),
        "{streams}"
    );
}

#[test]
fn a_share_of_the_sessions_holds_streams() {
    let server = Server::start(&["--shards", "2", "--notify-every", "200ms"]);
    let run = run_mcpstorm(&[
        &server.url(),
        "--phases",
        "sustained",
        "--duration",
        "2s",
        "--connections",
        "400",
        "--streams",
        "25%",
        "--no-discovery",
        "--quiet",
        "--sla",
        SLA_OFF,
    ]);
    assert_every_notification_received(&server, &run, 100);
    // The server held 400 session connections and 100 stream connections.
    let stats = server.stats();
    assert_eq!(count(&stats, "sse_streams_opened"), 100, "{stats}");
}

/// The embedded server killed and restarted (failure_recovery): every stream breaks, and is
/// reopened on its session's next session once the server is back.
#[test]
fn streams_broken_by_a_server_restart_are_reopened() {
    let run = run_mcpstorm(&[
        "--connections",
        "200",
        "--streams",
        "all",
        "--notify-every",
        "200ms",
        "--baseline",
        "1s",
        "--sustain",
        "2s",
        "--skip",
        "performance",
        "--fault",
        "restart",
        "--quiet",
        "--sla",
        SLA_OFF,
    ]);
    assert_eq!(run.code, Some(0), "{}", run.output);
    let streams = streams(&run);
    assert_eq!(count(streams, "planned"), 200, "{streams}");
    let phases = run.report["phases"].as_array().unwrap();
    let recovery = phases
        .iter()
        .find(|p| p["name"] == "failure_recovery")
        .unwrap();
    // The phase waits for the streams held at the fault to be held again (a stream backing
    // off its reopen may take seconds): each of them was reopened.
    let r = &recovery["recovery"];
    assert!(r["streams_back_s"].is_f64(), "{r}\n{}", run.output);
    let before = count(r, "streams_before");
    assert!(before > 0, "{r}");
    assert!(count(streams, "reopened") >= before, "{streams}\n{r}");
    // Held over time: all, a dip when the server dies, all again.
    let held: Vec<u64> = run.report["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| count(s, "streams_held"))
        .collect();
    let dip = held
        .iter()
        .position(|&n| n < 200)
        .unwrap_or_else(|| panic!("no dip: {held:?}"));
    assert!(held[dip..].contains(&200), "not all reopened: {held:?}");
    assert!(
        count(
            &recovery["streams"]["notifications_by_method"],
            "notifications/message"
        ) > 0,
        "the restarted server's notifications arrive: {recovery}"
    );
}

#[test]
fn bad_streams_options_are_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args(["run", "http://127.0.0.1:1/mcp", "--streams", "150%"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--streams"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args(["run", "http://127.0.0.1:1/mcp", "--notify-every", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--notify-every"),
        "{out:?}"
    );
}

/// `run --transport sse` against `serve --legacy-sse` over two shards (a POST's answer often
/// crosses to the shard holding its stream): every answer routed to its stream and matched,
/// the server's counts agreeing, and each session gone with its stream at the end.
#[test]
fn the_legacy_transport_against_serve_legacy_sse_agrees_with_the_server() {
    let server = Server::start(&["--shards", "2", "--legacy-sse"]);
    let url = format!("http://{}/sse", server.addr);
    let run = run_mcpstorm(&[
        &url,
        "--transport",
        "sse",
        "--phases",
        "sustained",
        "--duration",
        "2s",
        "--rate",
        "1000",
        // More sessions on one shard than it runs handshakes at once (1024): their
        // initializes wait for their streams' endpoints, which must still get to open.
        "--connections",
        "3000",
        "--shards",
        "1",
        "--quiet",
        "--sla",
        SLA_OFF,
    ]);
    assert_eq!(run.code, Some(0), "{}", run.output);
    let report = &run.report;
    assert_eq!(report["sessions"]["established"], 3000, "{}", run.output);
    let ok = count(&report["phases"][2]["requests"], "ok");
    assert_eq!(ok, count(&report["phases"][2]["requests"], "sent"));
    assert!(ok >= 1000, "{}", run.output);
    assert_eq!(
        report["errors_by_cause"],
        serde_json::json!({}),
        "{}",
        run.output
    );
    assert_eq!(count(&report["counters"], "legacy_replies_unmatched"), 0);
    let stats = server.stats();
    assert_eq!(count(&stats, "legacy_streams_opened"), 3000, "{stats}");
    // Every initialize and every load request answered on its stream.
    assert_eq!(
        count(&stats, "legacy_messages_routed"),
        3000 + ok,
        "{stats}"
    );
    assert_eq!(count(&stats, "legacy_messages_dropped"), 0, "{stats}");
    // The run's closes reach the server after it exits: wait for them (bounded, so a session
    // that never ends fails the test; not a timing check).
    let mut stats = stats;
    for _ in 0..300 {
        if count(&stats, "sessions_live") == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        stats = server.stats();
    }
    assert_eq!(
        count(&stats, "sessions_live"),
        0,
        "sessions end with their streams: {stats}"
    );
}

/// The embedded server speaking the legacy transport, killed and restarted: every stream
/// ends, its session is lost with it, and each session initializes again on a new stream.
#[test]
fn legacy_sessions_lost_with_their_streams_come_back_after_a_restart() {
    let run = run_mcpstorm(&[
        "--transport",
        "sse",
        "--connections",
        "200",
        "--baseline",
        "1s",
        "--sustain",
        "2s",
        "--skip",
        "performance",
        "--fault",
        "restart",
        "--quiet",
        "--sla",
        SLA_OFF,
    ]);
    assert_eq!(run.code, Some(0), "{}", run.output);
    let report = &run.report;
    let recovery = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "failure_recovery")
        .unwrap();
    assert_eq!(
        count(&recovery["recovery"], "sessions_restored"),
        200,
        "{recovery}"
    );
    assert!(recovery["recovery"]["recovery_s"].is_number(), "{recovery}");
    assert!(count(&report["counters"], "legacy_sessions_lost_with_stream") > 0);
    assert!(
        count(&report["streams"], "reopened") >= 200,
        "{}",
        report["streams"]
    );
    assert!(count(&report["counters"], "legacy_endpoints_received") >= 400);
}

/// Every call of a `test_sampling` run answered, each after its one question on its response
/// stream was answered on the reply connection, none lost: the calls sent (at least `min`).
fn assert_every_question_answered(run: &RunOutput, min: u64, what: &str) -> u64 {
    assert_eq!(run.code, Some(0), "{what}: {}", run.output);
    let requests = &run.report["phases"][2]["requests"];
    let sent = count(requests, "sent");
    assert!(sent >= min, "{what}: {}", run.output);
    assert_eq!(count(requests, "ok"), sent, "{what}: {}", run.output);
    let asked = &run.report["server_requests"];
    assert_eq!(count(asked, "received"), sent, "{what}: {asked}");
    assert_eq!(count(asked, "on_responses"), sent, "{what}: {asked}");
    assert_eq!(count(asked, "on_streams"), 0, "{what}: {asked}");
    assert_eq!(count(asked, "replies_accepted"), sent, "{what}: {asked}");
    assert_eq!(count(asked, "replies_lost"), 0, "{what}: {asked}");
    sent
}

/// A tool that asks the client (`test_sampling`: sampling/createMessage on the call's own
/// response stream, the answer awaited before the call is) loaded at a rate: every call
/// completes because every question is answered on the ring's reply connection, and the
/// server's own counters agree — what it asked, what it routed back to a waiting call.
#[test]
fn calls_that_ask_the_client_complete_at_load() {
    let server = Server::start(&["--shards", "2"]);
    let run = run_mcpstorm(&[
        &server.url(),
        "--phases",
        "sustained",
        "--duration",
        "2s",
        "--connections",
        "100",
        "--rate",
        "200",
        "--mix",
        "tools/call=test_sampling",
        "--args",
        r#"test_sampling={"prompt":"hi"}"#,
        "--no-discovery",
        "--quiet",
        "--sla",
        SLA_OFF,
    ]);
    let sent = assert_every_question_answered(&run, 200, "plain");
    let stats = server.stats();
    // The server's side: discovery is off, so every question it asked was one of the run's.
    assert_eq!(count(&stats, "client_requests_sent"), sent, "{stats}");
    assert_eq!(count(&stats, "client_answers_routed"), sent, "{stats}");
    assert_eq!(count(&stats, "client_answers_timed_out"), 0, "{stats}");
}

/// The same over TLS and with single-shot receives (`--recv armed`), against the embedded
/// server: the reply connection has its own TLS handshake and arms its own receives.
#[test]
fn calls_that_ask_the_client_complete_over_tls_and_armed_receives() {
    for extra in ["--tls", "--recv=armed"] {
        let run = run_mcpstorm(&[
            extra,
            "--phases",
            "sustained",
            "--duration",
            "1s",
            "--connections",
            "40",
            "--shards",
            "1",
            "--rate",
            "100",
            "--mix",
            "tools/call=test_sampling",
            "--args",
            r#"test_sampling={"prompt":"hi"}"#,
            "--no-discovery",
            "--quiet",
            "--sla",
            SLA_OFF,
        ]);
        assert_every_question_answered(&run, 50, extra);
    }
}
