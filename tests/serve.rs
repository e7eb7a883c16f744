//! Integration tests of `mcpstorm serve` over real loopback TCP, with plain `std::net` clients.

mod common;

use common::{Client, Server};
use std::io::Write;
use std::time::Duration;

const TOOLS_CALL_ADD: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}"#;

#[test]
fn whole_session_flow_json() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    let init = client.rpc(
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    assert_eq!(init.status, 200);
    assert_eq!(init.header("content-type"), Some("application/json"));
    let session = init.header("mcp-session-id").unwrap().to_string();
    assert_eq!(session.len(), 32);
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
    let result = &init.json()["result"];
    assert_eq!(
        result["protocolVersion"], "2025-03-26",
        "the client's supported version is echoed"
    );
    assert_eq!(result["serverInfo"]["name"], "mcpstorm");
    assert!(result["capabilities"]["tools"].is_object());

    assert_eq!(
        client
            .rpc(
                Some(&session),
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
            )
            .status,
        202
    );
    let ping = client
        .rpc(
            Some(&session),
            r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#,
        )
        .json();
    assert_eq!(ping["id"], "p");
    assert_eq!(ping["result"], serde_json::json!({}));

    let tools = client
        .rpc(
            Some(&session),
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        )
        .json();
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // serve's own tools first, then the conformance suite's fixtures.
    assert_eq!(names[..3], ["echo", "add", "sleep"]);
    assert!(names.contains(&"test_simple_text"), "{names:?}");
    for tool in tools["result"]["tools"].as_array().unwrap() {
        assert_eq!(tool["inputSchema"]["type"], "object");
    }

    let add = client.rpc(Some(&session), TOOLS_CALL_ADD).json();
    assert_eq!(add["id"], 7);
    assert_eq!(add["result"]["content"][0]["text"], "5");
    assert_eq!(add["result"]["isError"], false);
    let add_float = client
        .rpc(Some(&session), r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"add","arguments":{"a":1.5,"b":2}}}"#)
        .json();
    assert_eq!(add_float["result"]["content"][0]["text"], "3.5");

    let echo = client
        .rpc(Some(&session), r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"snow \u2603 \"q\""}}}"#)
        .json();
    assert_eq!(echo["result"]["content"][0]["text"], "snow ☃ \"q\"");

    let sleep = client
        .rpc(Some(&session), r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":50}}}"#)
        .json();
    assert_eq!(sleep["result"]["content"][0]["text"], "slept 50 ms");

    let bad_args = client
        .rpc(Some(&session), r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"add","arguments":{"a":"x"}}}"#)
        .json();
    assert_eq!(bad_args["result"]["isError"], true);

    let unknown_tool = client
        .rpc(Some(&session), r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"nope","arguments":{}}}"#)
        .json();
    assert_eq!(unknown_tool["error"]["code"], -32602);
    let resources = client
        .rpc(
            Some(&session),
            r#"{"jsonrpc":"2.0","id":8,"method":"resources/list"}"#,
        )
        .json();
    assert_eq!(
        resources["result"]["resources"][0]["uri"],
        "mcpstorm://docs/readme"
    );
    let unknown_method = client
        .rpc(
            Some(&session),
            r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage"}"#,
        )
        .json();
    assert_eq!(unknown_method["error"]["code"], -32601);

    let delete = client.request("DELETE", "/mcp", &[("Mcp-Session-Id", &session)], b"");
    assert_eq!(delete.status, 200);
    let after = client.rpc(
        Some(&session),
        r#"{"jsonrpc":"2.0","id":10,"method":"ping"}"#,
    );
    assert_eq!(after.status, 404, "a deleted session is unknown");

    let stats = server.stats();
    assert_eq!(stats["sessions_created"], 1);
    assert_eq!(stats["sessions_deleted"], 1);
    assert_eq!(stats["method_tools_call"], 6);
    assert_eq!(stats["error_unknown_tool"], 1);
    assert_eq!(stats["error_method_not_found"], 1);
    assert_eq!(stats["error_unknown_session"], 1);
    let summary = server.stop();
    let line = summary.lines().last().unwrap();
    assert!(
        line.contains("sessions=1") && line.contains("tools/call=6"),
        "summary: {line}"
    );
}

#[test]
fn sse_mode_answers_event_stream_over_chunked() {
    let server = Server::start(&["--response", "sse"]);
    let mut client = server.connect();
    let session = client.initialize();
    let response = client.rpc(Some(&session), TOOLS_CALL_ADD);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    let text = String::from_utf8(response.body.clone()).unwrap();
    assert!(text.starts_with("event: message"), "SSE event: {text:?}");
    assert_eq!(response.sse_json()["result"]["content"][0]["text"], "5");
    // Notifications are still 202 without a body in SSE mode.
    assert_eq!(
        client
            .rpc(
                Some(&session),
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#
            )
            .status,
        202
    );
}

#[test]
fn http_error_statuses() {
    let server = Server::start(&["--max-sessions", "2"]);
    let mut client = server.connect();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    // Missing session header.
    let missing = client.rpc(None, ping);
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"]["code"], -32000);
    // Unknown session.
    assert_eq!(
        client
            .rpc(Some("0123456789abcdef0123456789abcdef"), ping)
            .status,
        404
    );
    assert_eq!(client.rpc(Some("garbage"), ping).status, 404);
    // Unparsable JSON → 400 with -32700; not a JSON-RPC request → -32600.
    let bad_json = client.rpc(None, "{\"jsonrpc\":");
    assert_eq!(bad_json.status, 400);
    assert_eq!(bad_json.json()["error"]["code"], -32700);
    assert_eq!(
        client.rpc(None, r#"{"jsonrpc":"2.0","id":1}"#).json()["error"]["code"],
        -32600
    );
    assert_eq!(
        client
            .rpc(None, r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
            .status,
        400
    );
    // Wrong path, wrong method, wrong media types.
    assert_eq!(
        client
            .request(
                "POST",
                "/other",
                &[("Content-Type", "application/json")],
                ping.as_bytes()
            )
            .status,
        404
    );
    let put = client.request("PUT", "/mcp", &[], b"x");
    assert_eq!(put.status, 405);
    assert!(put.header("allow").unwrap().contains("POST"));
    assert_eq!(
        client
            .request(
                "POST",
                "/mcp",
                &[("Content-Type", "text/plain")],
                ping.as_bytes()
            )
            .status,
        415
    );
    assert_eq!(
        client
            .request(
                "POST",
                "/mcp",
                &[
                    ("Content-Type", "application/json"),
                    ("Accept", "text/html")
                ],
                ping.as_bytes()
            )
            .status,
        406
    );
    // Origin that is not this host (DNS rebinding guard) → 403; a local one passes.
    let evil = client.request(
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example"),
        ],
        ping.as_bytes(),
    );
    assert_eq!(evil.status, 403);
    let local = client.request(
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://localhost:3000"),
        ],
        ping.as_bytes(),
    );
    assert_eq!(
        local.status, 400,
        "local origin passes the guard and fails on the missing session"
    );
    // GET needs a session and Accept: text/event-stream.
    assert_eq!(
        client
            .request("GET", "/mcp", &[("Accept", "text/event-stream")], b"")
            .status,
        400
    );
    assert_eq!(
        client
            .request("GET", "/mcp", &[("Accept", "application/json")], b"")
            .status,
        406
    );
    assert_eq!(
        client
            .request(
                "DELETE",
                "/mcp",
                &[("Mcp-Session-Id", "0123456789abcdef0123456789abcdef")],
                b""
            )
            .status,
        404
    );
    // Session limit → 503 with Retry-After.
    let mut sessions = Vec::new();
    for _ in 0..2 {
        sessions.push(client.initialize());
    }
    let full = client.rpc(None, r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#);
    assert_eq!(full.status, 503);
    assert_eq!(full.header("retry-after"), Some("1"));
    // An unsupported MCP-Protocol-Version header on a session request → 400.
    let bad_version = client.request(
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Mcp-Session-Id", &sessions[0]),
            ("MCP-Protocol-Version", "1999-01-01"),
        ],
        ping.as_bytes(),
    );
    assert_eq!(bad_version.status, 400);
    // The connection survived every 4xx above (keep-alive).
    assert_eq!(client.rpc(Some(&sessions[0]), ping).status, 200);

    let stats = server.stats();
    for (counter, expected) in [
        ("error_missing_session", 3),
        ("error_unknown_session", 3),
        ("error_json_parse", 1),
        ("error_invalid_request", 1),
        ("error_batch_refused", 1),
        ("error_not_found_path", 1),
        ("error_method_not_allowed", 1),
        ("error_unsupported_media_type", 1),
        ("error_not_acceptable", 2),
        ("error_forbidden_origin", 1),
        ("error_sessions_full", 1),
        ("error_bad_protocol_version", 1),
    ] {
        assert_eq!(stats[counter], expected, "{counter}");
    }
}

#[test]
fn malformed_and_oversized_requests_are_rejected_and_closed() {
    let server = Server::start(&[]);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            b"POST /mcp HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST /mcp HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            b"POST /mcp HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n".to_vec(),
            413,
        ),
        (
            [b"GET /mcp HTTP/1.1\r\nX-Big: ".to_vec(), vec![b'a'; 9000]].concat(),
            431,
        ),
        (b"POST /mcp HTTP/2.0\r\n\r\n".to_vec(), 505),
    ];
    for (bytes, status) in cases {
        let mut client = server.connect();
        client.stream().write_all(&bytes).unwrap();
        let response = client.read_response();
        assert_eq!(
            response.status,
            status,
            "for {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
        );
        assert!(client.is_closed(), "connection must close after a {status}");
    }
    let stats = server.stats();
    assert_eq!(stats["error_bad_request_line"], 1);
    assert_eq!(stats["error_head_too_large"], 1);
    assert_eq!(stats["error_body_too_large"], 1);
    assert_eq!(stats["error_conflicting_length"], 1);
    assert_eq!(stats["error_unsupported_version"], 1);
}

#[test]
fn pipelined_requests_answer_in_order() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    let session = client.initialize();
    let headers = [
        ("Content-Type", "application/json"),
        ("Mcp-Session-Id", session.as_str()),
    ];
    let mut batch = Vec::new();
    // A sleep first: the later answers must still come after it.
    batch.extend(client.encode(
        "POST",
        "/mcp",
        &headers,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":30}}}"#,
    ));
    for id in 2..=20 {
        batch.extend(client.encode(
            "POST",
            "/mcp",
            &headers,
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#).as_bytes(),
        ));
    }
    client.stream().write_all(&batch).unwrap();
    for id in 1..=20 {
        let response = client.read_response();
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["id"], id);
    }
}

#[test]
fn request_split_across_many_writes() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    let session = client.initialize();
    let bytes = client.encode(
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Mcp-Session-Id", &session),
        ],
        TOOLS_CALL_ADD.as_bytes(),
    );
    for byte in &bytes {
        client
            .stream()
            .write_all(std::slice::from_ref(byte))
            .unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let response = client.read_response();
    assert_eq!(response.json()["result"]["content"][0]["text"], "5");
    // Chunked request bodies too.
    let mut chunked = format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nMcp-Session-Id: {session}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for piece in TOOLS_CALL_ADD.as_bytes().chunks(10) {
        chunked.extend(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend(piece);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    client.stream().write_all(&chunked).unwrap();
    assert_eq!(
        client.read_response().json()["result"]["content"][0]["text"],
        "5"
    );
}

#[test]
fn get_opens_a_held_event_stream() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    let session = client.initialize();
    let (_stream_client, head) = open_listen_stream(&server, &session);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream")
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    );
    assert_eq!(server.stats()["sse_streams_opened"], 1);
    // The POST connection is unaffected.
    assert_eq!(
        client
            .rpc(
                Some(&session),
                r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#
            )
            .status,
        200
    );
}

/// 10,000 concurrent keep-alive connections, each holding an initialized session, spread over
/// several rings per shard (`--ring-slots 4000` forces 3+ rings), then each one used again.
#[test]
fn ten_thousand_held_sessions_across_rings() {
    const CONNECTIONS: usize = 10_000;
    let server = Server::start(&[
        "--ring-slots",
        "4000",
        "--max-connections",
        "12000",
        "--shards",
        "2",
    ]);
    let mut clients: Vec<(Client, String)> = Vec::with_capacity(CONNECTIONS);
    let init_body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    // Write every initialize first, then read every answer: all 10K are in flight at once.
    for _ in 0..CONNECTIONS {
        let mut client = server.connect();
        let bytes = client.encode(
            "POST",
            "/mcp",
            &[("Content-Type", "application/json")],
            init_body.as_bytes(),
        );
        client.stream().write_all(&bytes).unwrap();
        clients.push((client, String::new()));
    }
    for (client, session) in clients.iter_mut() {
        let response = client.read_response();
        assert_eq!(response.status, 200);
        *session = response.header("mcp-session-id").unwrap().to_string();
    }
    let stats = server.stats();
    assert_eq!(stats["sessions_live"], CONNECTIONS as u64);
    assert_eq!(
        stats["connections_accepted"].as_u64().unwrap()
            - stats["connections_closed"].as_u64().unwrap(),
        CONNECTIONS as u64 + 1
    );
    for (client, session) in clients.iter_mut() {
        let bytes = client.encode(
            "POST",
            "/mcp",
            &[
                ("Content-Type", "application/json"),
                ("Mcp-Session-Id", session),
            ],
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        );
        client.stream().write_all(&bytes).unwrap();
    }
    for (client, _) in clients.iter_mut() {
        assert_eq!(client.read_response().status, 200);
    }
    let stats = server.stats();
    assert_eq!(stats["method_ping"], CONNECTIONS as u64);
    assert_eq!(stats["accept_table_full"], 0);
    drop(clients);
    let summary = server.stop();
    assert!(
        summary.contains(&format!("sessions={CONNECTIONS}")),
        "{summary}"
    );
}

#[test]
fn sigint_with_open_connections_exits_cleanly() {
    let server = Server::start(&[]);
    let mut idle: Vec<Client> = (0..50).map(|_| server.connect()).collect();
    let session = idle[0].initialize();
    let _ = session;
    let summary = server.stop();
    assert!(
        summary
            .lines()
            .last()
            .unwrap()
            .starts_with("mcpstorm serve: connections="),
        "{summary}"
    );
    for client in idle.iter_mut() {
        assert!(client.is_closed(), "server closes connections on shutdown");
    }
}

/// A POST as a 2026-07-28 client sends it: the version, method and (for tools/call) name
/// headers mirroring the body, and the `_meta` envelope in `params`.
fn modern_rpc(
    client: &mut Client,
    id: u64,
    method: &str,
    name: Option<&str>,
    params: serde_json::Value,
) -> common::Response {
    let mut params = params;
    params["_meta"] = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "serve-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string();
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", method),
    ];
    if let Some(name) = name {
        headers.push(("Mcp-Name", name));
    }
    client.request("POST", "/mcp", &headers, body.as_bytes())
}

#[test]
fn sessionless_2026_exchange_json() {
    let server = Server::start(&["--response", "json"]);
    let mut client = server.connect();
    let discover = modern_rpc(
        &mut client,
        1,
        "server/discover",
        None,
        serde_json::json!({}),
    );
    assert_eq!(discover.status, 200);
    assert_eq!(discover.header("content-type"), Some("application/json"));
    assert_eq!(
        discover.header("mcp-session-id"),
        None,
        "no session is minted"
    );
    let result = &discover.json()["result"];
    assert_eq!(result["supportedVersions"][0], "2026-07-28");
    assert_eq!(result["resultType"], "complete");
    assert!(result["capabilities"]["tools"].is_object());
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcpstorm"
    );

    // Every later request stands alone on the same keep-alive connection.
    let tools = modern_rpc(&mut client, 2, "tools/list", None, serde_json::json!({})).json();
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // serve's own tools first, then the conformance suite's fixtures.
    assert_eq!(names[..3], ["echo", "add", "sleep"]);
    assert!(names.contains(&"test_simple_text"), "{names:?}");
    assert_eq!(tools["result"]["cacheScope"], "public");
    let add = modern_rpc(
        &mut client,
        3,
        "tools/call",
        Some("add"),
        serde_json::json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
    )
    .json();
    assert_eq!(add["result"]["content"][0]["text"], "5");
    assert_eq!(add["result"]["resultType"], "complete");
    let echo = modern_rpc(
        &mut client,
        4,
        "tools/call",
        Some("echo"),
        serde_json::json!({"name": "echo", "arguments": {"text": "hi"}}),
    )
    .json();
    assert_eq!(echo["result"]["content"][0]["text"], "hi");
    let started = std::time::Instant::now();
    let slept = modern_rpc(
        &mut client,
        5,
        "tools/call",
        Some("sleep"),
        serde_json::json!({"name": "sleep", "arguments": {"ms": 100}}),
    );
    assert_eq!(slept.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));

    // 2026-07-28 removed ping: 404 with -32601 (a JSON-RPC body, unlike a bare 404).
    let ping = modern_rpc(&mut client, 6, "ping", None, serde_json::json!({}));
    assert_eq!(ping.status, 404);
    assert_eq!(ping.json()["error"]["code"], -32601);
    assert_eq!(ping.json()["id"], 6);
    // The headers must mirror the body: a wrong Mcp-Name is -32020 with 400.
    let mismatch = modern_rpc(
        &mut client,
        7,
        "tools/call",
        Some("echo"),
        serde_json::json!({"name": "add", "arguments": {"a": 1, "b": 1}}),
    );
    assert_eq!(mismatch.status, 400);
    assert_eq!(mismatch.json()["error"]["code"], -32020);
    // No standalone stream at 2026-07-28.
    let get = client.request(
        "GET",
        "/mcp",
        &[
            ("Accept", "text/event-stream"),
            ("MCP-Protocol-Version", "2026-07-28"),
        ],
        b"",
    );
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));

    // subscriptions/listen: acknowledged on its own held stream.
    let mut listener = server.connect();
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 8, "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": true}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let request = listener.encode(
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "subscriptions/listen"),
        ],
        body.as_bytes(),
    );
    listener.stream().write_all(&request).unwrap();
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&received).contains("\n\n\r\n") {
        std::io::Read::read_exact(&mut listener.reader, &mut byte).unwrap();
        received.push(byte[0]);
    }
    let text = String::from_utf8(received).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("notifications/subscriptions/acknowledged"),
        "{text}"
    );
    assert!(
        text.contains(r#""io.modelcontextprotocol/subscriptionId":8"#),
        "{text}"
    );

    // The same server still speaks the session era to a 2025 client.
    let session = client.initialize();
    assert_eq!(session.len(), 32);

    let stats = server.stats();
    for (counter, expected) in [
        ("sessions_created", 1),
        ("sessions_live", 1),
        ("requests_modern", 8),
        ("method_server_discover", 1),
        ("method_subscriptions_listen", 1),
        ("method_tools_list", 1),
        ("method_tools_call", 3),
        ("error_method_not_found", 1),
        ("error_header_mismatch", 1),
        ("error_modern_method_not_allowed", 1),
        ("error_missing_session", 0),
    ] {
        assert_eq!(stats[counter], expected, "{counter}: {stats}");
    }
}

#[test]
fn sessionless_2026_exchange_sse() {
    let server = Server::start(&["--response", "sse"]);
    let mut client = server.connect();
    let discover = modern_rpc(
        &mut client,
        1,
        "server/discover",
        None,
        serde_json::json!({}),
    );
    assert_eq!(discover.status, 200);
    assert_eq!(discover.header("content-type"), Some("text/event-stream"));
    assert_eq!(discover.header("x-accel-buffering"), Some("no"));
    assert_eq!(
        discover.sse_json()["result"]["supportedVersions"][0],
        "2026-07-28"
    );
    let add = modern_rpc(
        &mut client,
        2,
        "tools/call",
        Some("add"),
        serde_json::json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
    );
    assert_eq!(add.sse_json()["result"]["content"][0]["text"], "5");
    // Errors keep their status and stay JSON in SSE mode.
    let unsupported = {
        let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        client.request(
            "POST",
            "/mcp",
            &[
                ("Content-Type", "application/json"),
                ("MCP-Protocol-Version", "2099-01-01"),
                ("Mcp-Method", "tools/list"),
            ],
            body.as_bytes(),
        )
    };
    assert_eq!(unsupported.status, 400);
    assert_eq!(unsupported.json()["error"]["code"], -32022);
    assert_eq!(
        unsupported.json()["error"]["data"]["requested"],
        "2099-01-01"
    );
    let stats = server.stats();
    assert_eq!(stats["sessions_created"], 0, "{stats}");
    assert_eq!(stats["requests_modern"], 3, "{stats}");
    assert_eq!(stats["error_unsupported_protocol_version"], 1, "{stats}");
}

/// With only two receive buffers per ring, most connections find the buffer ring empty: each
/// must still be read (the single-shot fallback) and answered, in order, with nothing lost.
#[test]
fn every_connection_is_served_when_receive_buffers_run_out() {
    const CONNECTIONS: usize = 300;
    let server = Server::start(&["--recv-buffers", "2", "--shards", "1"]);
    let mut clients: Vec<(Client, String)> = (0..CONNECTIONS)
        .map(|_| (server.connect(), String::new()))
        .collect();
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    for round in 0..3 {
        for (client, session) in clients.iter_mut() {
            let bytes = if round == 0 {
                client.encode(
                    "POST",
                    "/mcp",
                    &[("Content-Type", "application/json")],
                    init.as_bytes(),
                )
            } else {
                // Two pipelined requests per connection per round.
                let headers = [
                    ("Content-Type", "application/json"),
                    ("Mcp-Session-Id", session.as_str()),
                ];
                let mut both = client.encode(
                    "POST",
                    "/mcp",
                    &headers,
                    br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
                );
                both.extend(client.encode("POST", "/mcp", &headers, TOOLS_CALL_ADD.as_bytes()));
                both
            };
            client.stream().write_all(&bytes).unwrap();
        }
        for (client, session) in clients.iter_mut() {
            let response = client.read_response();
            assert_eq!(response.status, 200);
            if round == 0 {
                *session = response.header("mcp-session-id").unwrap().to_string();
            } else {
                assert_eq!(response.json()["id"], 1);
                assert_eq!(
                    client.read_response().json()["result"]["content"][0]["text"],
                    "5"
                );
            }
        }
    }
    let stats = server.stats();
    assert!(
        stats["recv_buffers_exhausted"].as_u64().unwrap() > 0,
        "the test must run the buffers dry: {stats}"
    );
    assert_eq!(stats["method_ping"], 2 * CONNECTIONS as u64);
    assert_eq!(stats["method_tools_call"], 2 * CONNECTIONS as u64);
    assert_eq!(stats["error_recv"], 0);
}

#[test]
fn limits_hit_are_explained_once_with_a_count() {
    // Started by hand (not `Server::start`) to capture its stderr.
    let ready = std::env::temp_dir().join(format!("mcpstorm-explain-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-sessions",
            "1",
            "--ready-file",
        ])
        .arg(&ready)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Some(line) = text.lines().next()
        {
            break line.parse().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut client = Client::connect(addr);
    client.initialize();
    for id in 1..=2 {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"2025-06-18"}}}}"#
        );
        assert_eq!(client.rpc(None, &body).status, 503);
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&ready);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("sessions_full ×2: "))
        .collect();
    assert_eq!(lines.len(), 1, "one explained line per cause: {stderr}");
    assert!(lines[0].contains("raise --max-sessions"), "{stderr}");
}

#[test]
fn idle_sessions_expire_soon_after_their_timeout() {
    let server = Server::start(&["--session-idle-timeout", "1s"]);
    let mut client = server.connect();
    let session = client.initialize();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(client.rpc(Some(&session), ping).status, 200);
    // Watch the counters (which do not touch the session) until the sweep ends it.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while server.stats()["sessions_expired"] == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "an idle session was never expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        client.rpc(Some(&session), ping).status,
        404,
        "the idle session was ended"
    );
    assert_eq!(server.stats()["sessions_live"], 0);
}

/// Reads from `stream` until `needle` has arrived (the hang guard is the client's 20 s read
/// timeout); returns everything read.
fn read_until(stream: &mut std::net::TcpStream, seen: &mut Vec<u8>, needle: &str) -> String {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        let n = stream.read(&mut buf).expect("read the call's stream");
        assert!(
            n > 0,
            "the server closed the stream: {}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(seen).into_owned()
}

#[test]
fn a_tool_that_asks_its_client_gets_the_answer_posted_on_another_connection() {
    use std::io::Write;
    let server = common::Server::start(&["--shards", "2"]);
    let mut caller = server.connect();
    let session = caller.initialize();
    let call = caller.encode(
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Mcp-Session-Id", &session),
        ],
        br#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"Capital of France?"}}}"#,
    );
    caller.stream().write_all(&call).unwrap();
    let mut seen = Vec::new();
    let text = read_until(caller.stream(), &mut seen, "\"maxTokens\"");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(
        text.contains("\"method\":\"sampling/createMessage\""),
        "{text}"
    );
    assert!(text.contains("Capital of France?"), "{text}");
    // The request's id as the JSON token it is, quotes included.
    let start = text.find("\"id\":\"mcpstorm-").expect("the request's id") + 5;
    let end = start + 1 + text[start + 1..].find('"').unwrap() + 1;
    let id = &text[start..end];
    // The answer comes on another connection, as a browser's or an SDK's second request.
    let mut answerer = server.connect();
    let answer = answerer.rpc(
        Some(&session),
        &format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"role":"assistant","content":{{"type":"text","text":"Paris"}},"model":"m","stopReason":"endTurn"}}}}"#
        ),
    );
    assert_eq!(answer.status, 202);
    let text = read_until(caller.stream(), &mut seen, "0\r\n\r\n");
    assert!(text.contains("\"id\":41"), "{text}");
    assert!(text.contains("LLM response: Paris"), "{text}");
    // The connection takes requests again.
    let ping = caller.rpc(
        Some(&session),
        r#"{"jsonrpc":"2.0","id":42,"method":"ping"}"#,
    );
    assert_eq!(ping.status, 200);
    let stats = server.stats();
    assert_eq!(stats["client_requests_sent"], 1, "{stats}");
    assert_eq!(stats["client_answers_routed"], 1, "{stats}");
}

/// Opens a GET listen stream for `session` on a new connection; returns the client, read up
/// to the end of the response head, and that head (the body stays open).
fn open_listen_stream(server: &Server, session: &str) -> (common::Client, String) {
    let mut client = server.connect();
    let request = client.encode(
        "GET",
        "/mcp",
        &[("Accept", "text/event-stream"), ("Mcp-Session-Id", session)],
        b"",
    );
    client.stream().write_all(&request).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut client.reader, &mut byte).unwrap();
        head.push(byte[0]);
    }
    (client, String::from_utf8(head).unwrap())
}

/// `count` sessions, each holding a listen stream (the POST connection closed).
fn hold_listen_streams(server: &Server, count: usize) -> Vec<common::Client> {
    (0..count)
        .map(|_| {
            let session = server.connect().initialize();
            let (stream, head) = open_listen_stream(server, &session);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            stream
        })
        .collect()
}

/// The next `notifications/message` event on a listen stream (keep-alive comments and chunk
/// framing skipped): its `seq` and `_meta["mcpstorm/sentAtUs"]`.
fn next_notification(client: &mut common::Client) -> (u64, u64) {
    use std::io::BufRead;
    // Keep-alive comments keep a read from timing out: a guard against a hang, not a
    // timing check.
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        assert!(
            std::time::Instant::now() < guard,
            "only keep-alives for 120 s"
        );
        let mut line = String::new();
        let n = client.reader.read_line(&mut line).expect("read the stream");
        assert!(n > 0, "the server closed the stream");
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let json: serde_json::Value = serde_json::from_str(data).unwrap();
            assert_eq!(json["method"], "notifications/message", "{json}");
            return (
                json["params"]["data"]["seq"].as_u64().unwrap(),
                json["params"]["_meta"]["mcpstorm/sentAtUs"]
                    .as_u64()
                    .unwrap(),
            );
        }
    }
}

/// `serve --notify-every`: every held listen stream gets every round's event, in order, with
/// a send time no later than its arrival; `--notify-to N` reaches N streams a round.
#[test]
fn notify_every_reaches_every_held_stream_in_order() {
    let server = Server::start(&["--shards", "2", "--notify-every", "100ms"]);
    let mut streams: Vec<common::Client> = hold_listen_streams(&server, 40);
    // A read that waits forever would hang the suite: a generous bound, not a timing check.
    for stream in &mut streams {
        stream
            .stream()
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
    }
    for stream in &mut streams {
        let (first, _) = next_notification(stream);
        for expected in first + 1..first + 4 {
            let (seq, sent_at_us) = next_notification(stream);
            assert_eq!(seq, expected, "no round skipped or reordered");
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64;
            assert!(
                sent_at_us <= now_us,
                "sent {sent_at_us} after arrival {now_us}"
            );
        }
    }
    let stats = server.stats();
    assert_eq!(stats["notifications_dropped"], 0, "{stats}");
    assert_eq!(stats["notify_rounds_skipped"], 0, "{stats}");
    assert!(
        stats["notifications_sent"].as_u64() >= Some(40 * 4),
        "{stats}"
    );
    drop(server);

    let server = Server::start(&[
        "--shards",
        "1",
        "--notify-every",
        "50ms",
        "--notify-to",
        "5",
    ]);
    let _streams: Vec<common::Client> = hold_listen_streams(&server, 20);
    // Which 5 a round reaches depends on slot reuse, so the server's counts tell: wait for
    // three rounds after all 20 streams are held (bounded, so a stuck server fails).
    let before = server.stats();
    let count = |stats: &serde_json::Value, name: &str| stats[name].as_u64().unwrap();
    let rounds_before = count(&before, "notify_rounds");
    let mut stats = server.stats();
    for _ in 0..600 {
        if count(&stats, "notify_rounds") >= rounds_before + 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        stats = server.stats();
    }
    let rounds = count(&stats, "notify_rounds") - rounds_before;
    let sent = count(&stats, "notifications_sent") - count(&before, "notifications_sent");
    assert!(rounds >= 3, "{stats}");
    // Counted from another thread while rounds go on: each snapshot may be a round's share
    // off. Every round reaching all 20 streams would be 20 a round, far outside.
    assert!(
        sent + 5 >= 5 * rounds && sent <= 5 * (rounds + 1),
        "5 streams a round: {sent} in {rounds} rounds: {stats}"
    );
}

/// `--notify-every` over TLS: the event goes through the connection's encrypted output (not
/// the shared plaintext buffers) and arrives whole, read by the engine's stream reader.
#[test]
fn notify_every_reaches_a_tls_listen_stream() {
    use mcpstorm::engine::stream::{Opened, StreamItem, open};
    use std::io::{Read, Write};
    let dir =
        std::env::temp_dir().join(format!("mcpstorm-serve-notify-tls-{}", std::process::id()));
    let pki = mcpstorm::tls::server::throwaway_pki(&dir).expect("throwaway certificate");
    let server = Server::start(&[
        "--shards",
        "1",
        "--notify-every",
        "100ms",
        "--tls-cert",
        pki.cert_file.to_str().unwrap(),
        "--tls-key",
        pki.key_file.to_str().unwrap(),
    ]);
    let config = mcpstorm::tls::client_config(
        &mcpstorm::tls::TlsOptions {
            cacert: Some(pki.ca_file.clone()),
            insecure: false,
            no_resumption: true,
        },
        1,
    )
    .unwrap();
    let connect = || {
        let tcp = std::net::TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = rustls::ClientConnection::new(config.clone(), name).unwrap();
        rustls::StreamOwned::new(tls, tcp)
    };
    let read_until =
        |stream: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
         seen: &mut Vec<u8>,
         done: &dyn Fn(&[u8]) -> bool| {
            let mut chunk = [0u8; 4096];
            while !done(seen) {
                let n = stream.read(&mut chunk).expect("read over TLS");
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(seen));
                seen.extend_from_slice(&chunk[..n]);
            }
        };
    let host = format!("localhost:{}", server.addr.port());
    let mut post = connect();
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    write!(
        post,
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    read_until(&mut post, &mut answer, &|seen| {
        String::from_utf8_lossy(seen).contains("\"result\"")
    });
    let text = String::from_utf8_lossy(&answer).into_owned();
    let session = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("mcp-session-id: ")
                .or(l.strip_prefix("Mcp-Session-Id: "))
        })
        .expect("a session id")
        .trim()
        .to_string();
    let mut listen = connect();
    write!(
        listen,
        "GET /mcp HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nMcp-Session-Id: {session}\r\n\r\n"
    )
    .unwrap();
    let mut received = Vec::new();
    read_until(&mut listen, &mut received, &|seen| {
        open(seen).ok().flatten().is_some()
    });
    let (opened, mut reader) = open(&received).unwrap().unwrap();
    let Opened::Stream { body_at } = opened else {
        panic!("{opened:?}");
    };
    let mut sent_times_us = Vec::new();
    let mut data = Vec::new();
    let mut pending = received[body_at..].to_vec();
    let mut chunk = [0u8; 4096];
    while sent_times_us.len() < 3 {
        reader
            .feed(&pending, &mut data, &mut |item| {
                if let StreamItem::Notification { method, sent_at_us } = item {
                    assert_eq!(method, "notifications/message");
                    sent_times_us.push(sent_at_us.expect("a send time"));
                }
            })
            .unwrap();
        if sent_times_us.len() >= 3 {
            break;
        }
        let n = listen.read(&mut chunk).expect("read the stream");
        assert!(n > 0, "the server closed the stream");
        pending = chunk[..n].to_vec();
    }
    assert!(
        sent_times_us.windows(2).all(|w| w[0] < w[1]),
        "one event a round, in order: {sent_times_us:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
