//! The client engine against a real peer no one here wrote: the official MCP Python SDK server
//! (tests/peers/py_server.py, `mcp` pinned in tools/peers/requirements.txt, venv from
//! tools/peers/setup-python.sh), stateful with SSE replies, stateful with JSON replies, and
//! stateless. A few hundred sessions each, every request answered, zero protocol errors.

mod common;

use common::PyServer;
use std::process::Command;

fn count(value: &serde_json::Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing or not a count in {value}"))
}

fn run_against_python(server_args: &[&str]) {
    let server = PyServer::start(server_args);
    let json = std::env::temp_dir().join(format!(
        "mcpstorm-engine-py-{}-{}.json",
        std::process::id(),
        server_args.join("_")
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args(["run", "--phases", "sustained", &server.url])
        .args([
            "--sla",
            "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
        ])
        .arg("--json")
        .arg(&json)
        .args([
            "--connections",
            "200",
            "--shards",
            "1",
            "--duration",
            "2s",
            "--rate",
            "200",
            "--mix",
            "tools/call:80,tools/list:10,ping:10",
            "--tool",
            "echo",
        ])
        .output()
        .expect("spawn mcpstorm run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(count(&report, "/sessions/established"), 200, "{stdout}");
    assert_eq!(count(&report, "/sessions/failed"), 0, "{stdout}");
    let sent = count(&report, "/phases/2/requests/sent");
    assert!(sent >= 300, "{stdout}");
    assert_eq!(count(&report, "/phases/2/requests/ok"), sent, "{stdout}");
    assert_eq!(count(&report, "/phases/2/requests/errors"), 0, "{stdout}");
    assert_eq!(report["errors_by_cause"], serde_json::json!({}), "{stdout}");
    for method in ["ping", "tools/list", "tools/call"] {
        assert!(
            report["phases"][2]["latency_us_by_method"][method]["count"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "{method}: {stdout}"
        );
    }
}

#[test]
fn engine_against_python_sdk_sse() {
    run_against_python(&[]);
}

#[test]
fn engine_against_python_sdk_json_response() {
    run_against_python(&["--json-response"]);
}

#[test]
fn engine_against_python_sdk_stateless() {
    run_against_python(&["--stateless"]);
}

/// Every method the official SDK server answers, against it, with generated arguments: each
/// entry answered without error, and the server saw as many distinct queries and item ids as
/// it answered (`{{str 12}}` and `{{seq}}` never repeat).
#[test]
fn every_method_against_python_sdk_with_generated_arguments() {
    let server = PyServer::start(&["--json-response"]);
    let json = std::env::temp_dir().join(format!(
        "mcpstorm-engine-py-mix-{}.json",
        std::process::id()
    ));
    let labels = [
        "tools/call search",
        "resources/read items://{{seq}}",
        "resources/list",
        "resources/templates/list",
        "prompts/list",
        "prompts/get greet",
        "completion/complete greet",
        "tools/list",
        "ping",
    ];
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args(["run", "--phases", "sustained", "--quiet", &server.url])
        .args([
            "--sla",
            "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
        ])
        .arg("--json")
        .arg(&json)
        .args([
            "--connections",
            "40",
            "--shards",
            "1",
            "--duration",
            "2s",
            "--rate",
            "150",
            "--mix",
            "tools/call=search:3,resources/read=items://{{seq}}:3,resources/list,resources/templates/list,prompts/list,prompts/get=greet,completion/complete=greet,tools/list,ping",
            "--args",
            r#"search={"q":"{{str 12}}","n":{{int 1 9}}}"#,
            "--args",
            r#"greet={"name":"A"}"#,
        ])
        .output()
        .expect("spawn mcpstorm run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).unwrap();
    let _ = std::fs::remove_file(&json);
    let phase = &report["phases"][2];
    assert_eq!(count(phase, "/requests/errors"), 0, "{stdout}");
    let answered = |label: &str| {
        count(
            phase,
            &format!("/latency_us_by_method/{}/count", label.replace('/', "~1")),
        )
    };
    for label in labels {
        assert!(answered(label) > 0, "{label}: {stdout}");
    }
    // The server's own record of the generated values.
    let port: u16 = server
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/mcp")
        .parse()
        .unwrap();
    let mut client = common::Client::connect(([127, 0, 0, 1], port).into());
    let session = client.initialize();
    let response = client.rpc(
        Some(&session),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"seen","arguments":{}}}"#,
    );
    let text = response.json()["result"]["content"][0]["text"]
        .as_str()
        .expect("seen's text")
        .to_string();
    let seen: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        seen["queries"],
        answered("tools/call search"),
        "{seen} / {stdout}"
    );
    assert_eq!(
        seen["items"],
        answered("resources/read items://{{seq}}"),
        "{seen} / {stdout}"
    );
}

/// What a session's GET stream from the official Python SDK server says, read by the
/// engine's own stream reader (`engine/stream.rs`) from the very bytes the SDK sent: a
/// resource update sent by a tool (`ctx.session.send_resource_updated`, no related request)
/// arrives on the GET stream, not on the call's response.
#[test]
fn python_sdk_get_stream_carries_its_notifications_to_the_stream_reader() {
    use mcpstorm::engine::stream::{Opened, StreamItem, open};
    use std::io::{Read, Write};
    let server = PyServer::start(&["--json-response"]);
    let addr: std::net::SocketAddr = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .parse()
        .unwrap();
    let mut client = common::Client::connect(addr);
    let session = client.initialize();
    let mut listener = std::net::TcpStream::connect(addr).unwrap();
    // A generous bound so a broken peer cannot hang the suite (not a timing check).
    listener
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        listener,
        "GET /mcp HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nMcp-Session-Id: {session}\r\nMcp-Protocol-Version: 2025-06-18\r\n\r\n"
    )
    .unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let (opened, mut reader) = loop {
        let n = listener.read(&mut chunk).unwrap();
        assert!(n > 0, "the SDK closed the GET stream");
        received.extend_from_slice(&chunk[..n]);
        if let Some(found) = open(&received).unwrap() {
            break found;
        }
    };
    let Opened::Stream { body_at } = opened else {
        panic!(
            "no stream: {opened:?}: {}",
            String::from_utf8_lossy(&received)
        );
    };
    // The stream is held before the tool runs (the SDK drops a notification with no stream).
    let mut notifications = Vec::new();
    let mut data = Vec::new();
    let mut feed = |bytes: &[u8], notifications: &mut Vec<String>| {
        reader
            .feed(bytes, &mut data, &mut |item| {
                if let StreamItem::Notification { method, .. } = item {
                    notifications.push(method.to_string());
                }
            })
            .unwrap()
    };
    feed(&received[body_at..], &mut notifications);
    let call = client.rpc(
        Some(&session),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"touch","arguments":{"uri":"docs://readme"}}}"#,
    );
    assert_eq!(
        call.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&call.body)
    );
    while notifications.is_empty() {
        let n = listener.read(&mut chunk).unwrap();
        assert!(n > 0, "the SDK closed the GET stream");
        let progress = feed(&chunk[..n], &mut notifications);
        assert!(!progress.ended);
    }
    assert_eq!(notifications, ["notifications/resources/updated"]);
}

/// `run --streams all` against the official SDK: every session holds its GET stream, and
/// each `touch` call's resource update (sent on the session's GET stream, not on the call's
/// response) is received there, none invented.
#[test]
fn every_session_holds_a_get_stream_of_the_python_sdk_and_receives_its_updates() {
    let server = PyServer::start(&[]);
    let run = common::run_mcpstorm(&[
        &server.url,
        "--phases",
        "sustained",
        "--quiet",
        "--no-discovery",
        "--sla",
        "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
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
        "tools/call=touch",
        "--args",
        r#"touch={"uri":"docs://readme"}"#,
    ]);
    assert_eq!(run.code, Some(0), "{}", run.output);
    let streams = &run.report["streams"];
    assert_eq!(count(streams, "/held"), 50, "{streams}");
    assert_eq!(count(streams, "/failed"), 0, "{streams}");
    let ok = count(&run.report, "/phases/2/requests/ok");
    assert!(ok >= 100, "{}", run.output);
    let updates = count(
        streams,
        "/notifications_by_method/notifications~1resources~1updated",
    );
    // Each answered call sent one update before its answer; the last few may still be on
    // their way when cool_down closes the streams.
    assert!(
        updates <= ok && updates + 50 >= ok,
        "{updates} updates for {ok} calls: {streams}"
    );
}

/// Server-to-client requests against the official SDK, both kinds: `ping` and `roots/list`
/// sent on the session's GET stream (no related request) and `sampling/createMessage` on
/// the call's own response stream, which the SDK holds open until the client has answered.
/// Each tool answers only once its question was answered (the configured roots checked by
/// the server), so every call ok means every answer reached it — on the reply connection,
/// since the session's own is awaiting the call.
#[test]
fn python_sdk_requests_on_streams_and_on_calls_are_answered() {
    let server = PyServer::start(&["--asks-client"]);
    let run = common::run_mcpstorm(&[
        &server.url,
        "--phases",
        "sustained",
        "--quiet",
        "--no-discovery",
        "--sla",
        "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
        "--connections",
        "30",
        "--shards",
        "1",
        "--duration",
        "2s",
        "--rate",
        "60",
        "--streams",
        "all",
        "--mix",
        "tools/call=ping_client:1,tools/call=ask_roots:1,tools/call=ask_model:1",
        "--args",
        r#"ask_roots={"expect":"file:///mcpstorm-test"}"#,
        "--args",
        r#"ask_model={"prompt":"hi"}"#,
        "--client-reply",
        r#"roots/list={"roots":[{"uri":"file:///mcpstorm-test","name":"test"}]}"#,
    ]);
    assert_eq!(run.code, Some(0), "{}", run.output);
    let phase = &run.report["phases"][2];
    assert_eq!(phase["name"], "sustained");
    let sent = count(phase, "/requests/sent");
    assert!(sent >= 60, "{}", run.output);
    assert_eq!(count(phase, "/requests/ok"), sent, "{}", run.output);
    let calls = |tool: &str| {
        count(
            phase,
            &format!("/latency_us_by_method/tools~1call {tool}/count"),
        )
    };
    let asked = &run.report["server_requests"];
    assert!(asked.is_object(), "{}", run.output);
    assert_eq!(
        count(asked, "/received"),
        sent,
        "one question per call: {asked}"
    );
    assert_eq!(count(asked, "/on_responses"), calls("ask_model"), "{asked}");
    assert_eq!(
        count(asked, "/on_streams"),
        calls("ping_client") + calls("ask_roots"),
        "{asked}"
    );
    assert_eq!(
        count(asked, "/by_method/ping"),
        calls("ping_client"),
        "{asked}"
    );
    assert_eq!(
        count(asked, "/by_method/roots~1list"),
        calls("ask_roots"),
        "{asked}"
    );
    assert_eq!(
        count(asked, "/by_method/sampling~1createMessage"),
        calls("ask_model"),
        "{asked}"
    );
    assert_eq!(count(asked, "/replies_accepted"), sent, "{asked}");
    assert_eq!(count(asked, "/replies_lost"), 0, "{asked}");
    assert_eq!(count(asked, "/reply_latency_us/count"), sent, "{asked}");
    assert_eq!(
        count(&run.report["streams"], "/requests_received"),
        count(asked, "/on_streams")
    );
}

/// The official SDK's legacy HTTP+SSE transport (`run(transport="sse")`, 2024-11-05) loaded
/// with `--transport sse`: each session's GET /sse names its endpoint, every POST is
/// answered 202 and its answer comes on the stream — all matched, none lost.
#[test]
fn engine_against_python_sdk_legacy_sse_transport() {
    let server = PyServer::start(&["--sse"]);
    let run = common::run_mcpstorm(&[
        &server.url,
        "--transport",
        "sse",
        "--phases",
        "sustained",
        "--quiet",
        "--sla",
        "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
        "--connections",
        "50",
        "--shards",
        "1",
        "--duration",
        "2s",
        "--rate",
        "100",
        "--mix",
        "tools/call:80,tools/list:10,ping:10",
        "--tool",
        "echo",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.output);
    let report = &run.report;
    assert_eq!(count(report, "/sessions/established"), 50, "{}", run.output);
    assert_eq!(count(report, "/sessions/failed"), 0, "{}", run.output);
    assert_eq!(count(report, "/counters/legacy_endpoints_received"), 50);
    assert_eq!(count(report, "/counters/legacy_replies_unmatched"), 0);
    let sent = count(report, "/phases/2/requests/sent");
    assert!(sent >= 150, "{}", run.output);
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
    assert_eq!(count(report, "/streams/held"), 50);
    assert!(
        report["discovery"]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("skipped: --transport sse")),
        "{}",
        report["discovery"]
    );
}
