//! The client engine against the official MCP TypeScript SDK server (tests/peers/ts_server.cjs,
//! `@modelcontextprotocol/sdk` pinned in tools/peers/ts-sdk, installed by
//! tools/peers/setup-ts.sh): every session's GET stream held and its resource updates
//! received; and the SDK's deprecated `SSEServerTransport` (legacy HTTP+SSE) loaded with
//! `--transport sse`.

mod common;

use common::{TsServer, run_mcpstorm};

const SLA_OFF: &str = "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off";

fn count(value: &serde_json::Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing or not a count in {value}"))
}

/// Every call answered; each `touch` call's update received on the session's stream, none
/// invented (the last few may still be on their way when cool_down closes the streams).
fn assert_loaded(run: &common::RunOutput, sessions: u64) {
    assert_eq!(run.code, Some(0), "{}", run.output);
    let report = &run.report;
    assert_eq!(
        count(report, "/sessions/established"),
        sessions,
        "{}",
        run.output
    );
    assert_eq!(count(report, "/sessions/failed"), 0, "{}", run.output);
    let sent = count(report, "/phases/2/requests/sent");
    assert!(sent >= 100, "{}", run.output);
    assert_eq!(
        count(report, "/phases/2/requests/ok"),
        sent,
        "{}",
        run.output
    );
    assert_eq!(
        report["errors_by_cause"],
        serde_json::json!({}),
        "{}",
        run.output
    );
    let streams = &report["streams"];
    assert_eq!(count(streams, "/held"), sessions, "{streams}");
    assert_eq!(count(streams, "/failed"), 0, "{streams}");
    let touched = count(
        report,
        "/phases/2/latency_us_by_method/tools~1call touch/count",
    );
    let updates = count(
        streams,
        "/notifications_by_method/notifications~1resources~1updated",
    );
    assert!(
        updates <= touched && updates + sessions >= touched,
        "{updates} updates for {touched} calls: {streams}"
    );
}

#[test]
fn every_session_holds_a_get_stream_of_the_typescript_sdk_and_receives_its_updates() {
    let server = TsServer::start(&[]);
    let run = run_mcpstorm(&[
        &server.url,
        "--phases",
        "sustained",
        "--quiet",
        "--sla",
        SLA_OFF,
        "--connections",
        "50",
        "--shards",
        "1",
        "--duration",
        "2s",
        "--rate",
        "100",
        "--streams",
        "all",
        "--mix",
        "tools/call=touch:50,tools/call=echo:50",
        "--args",
        r#"touch={"uri":"docs://readme"}"#,
    ]);
    assert_loaded(&run, 50);
    // Discovery listed the SDK's surface (and checked the mix against it).
    assert!(
        run.report["discovery"]["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("2 tools")),
        "{}",
        run.report["discovery"]
    );
}

#[test]
fn engine_against_the_typescript_sdk_legacy_sse_transport() {
    let server = TsServer::start(&["--sse"]);
    let run = run_mcpstorm(&[
        &server.url,
        "--transport",
        "sse",
        "--phases",
        "sustained",
        "--quiet",
        "--sla",
        SLA_OFF,
        "--connections",
        "50",
        "--shards",
        "1",
        "--duration",
        "2s",
        "--rate",
        "100",
        "--mix",
        "tools/call=touch:50,tools/call=echo:50",
        "--args",
        r#"touch={"uri":"docs://readme"}"#,
    ]);
    assert_loaded(&run, 50);
    assert_eq!(
        count(&run.report, "/counters/legacy_endpoints_received"),
        50
    );
    assert_eq!(count(&run.report, "/counters/legacy_replies_unmatched"), 0);
}
