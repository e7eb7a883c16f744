//! `mcpstorm probe` and the run's discovery at baseline (issue 10): the probe walks the whole
//! surface of `serve` on both wires and of the official Python SDK server, and a run whose mix
//! names a tool, prompt or resource the server lacks stops with exit 2 and what it has.

mod common;

use std::process::{Command, Output};

fn mcpstorm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args(args)
        .output()
        .expect("spawn mcpstorm")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn walk(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut all = vec!["probe", "--json", "--timeout", "10s"];
    all.extend_from_slice(args);
    let out = mcpstorm(&all);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, text(&out))
}

fn outcome<'a>(walk: &'a serde_json::Value, method: &str, name: &str) -> &'a serde_json::Value {
    walk["requests"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["method"] == method && r["name"] == name)
        })
        .unwrap_or_else(|| panic!("{method} {name} was not probed: {walk}"))
}

#[test]
fn probe_walks_every_tool_resource_and_prompt_of_serve_on_both_wires() {
    let server = common::Server::start(&["--shards", "1"]);
    let url = server.url();
    let (code, walked, out) = walk(&[&url]);
    // serve's error fixtures fail on purpose: exit 1, each failure named.
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(outcome(&walked, "initialize", "")["ok"], true, "{out}");
    for (method, name) in [
        ("tools/call", "echo"),
        ("tools/call", "test_image_content"),
        ("resources/read", "mcpstorm://docs/readme"),
        ("resources/read", "test://static-binary"),
        ("prompts/get", "greet"),
    ] {
        assert_eq!(
            outcome(&walked, method, name)["ok"],
            true,
            "{method} {name}: {out}"
        );
    }
    let error = outcome(&walked, "tools/call", "test_error_handling");
    assert_eq!(error["ok"], false);
    assert!(
        error["outcome"].as_str().unwrap().starts_with("tool error"),
        "{error}"
    );
    // A tool that asks its client is refused by the probe at once, not waited on.
    let sampling = outcome(&walked, "tools/call", "test_sampling");
    assert!(
        sampling["outcome"].as_str().unwrap().contains("refused"),
        "{sampling}"
    );

    let (_, walked, out) = walk(&["--protocol-version", "2026-07-28", &url]);
    assert_eq!(outcome(&walked, "server/discover", "")["ok"], true, "{out}");
    let mrtr = outcome(&walked, "prompts/get", "test_input_required_result_prompt");
    assert_eq!(mrtr["outcome"], "ok (input required)", "{out}");
    assert_eq!(outcome(&walked, "tools/call", "echo")["ok"], true, "{out}");
    // Every request the probe made reached the server and was counted there.
    let stats = server.stats();
    assert!(stats["method_tools_call"].as_u64() >= Some(40), "{stats}");
}

#[test]
fn probe_walks_the_python_sdk_server_and_refuses_what_is_not_there() {
    let server = common::PyServer::start(&[]);
    let (code, walked, out) = walk(&[&server.url]);
    assert_eq!(code, Some(0), "every request answered: {out}");
    assert_eq!(
        outcome(&walked, "tools/call", "search")["ok"],
        true,
        "{out}"
    );
    assert_eq!(
        outcome(&walked, "prompts/get", "greet")["ok"],
        true,
        "{out}"
    );
    let (code, _, out) = walk(&["http://127.0.0.1:1/mcp"]);
    assert_eq!(code, Some(2), "no server, no session: {out}");
    assert!(out.contains("no session"), "{out}");
}

#[test]
fn a_mix_naming_what_the_server_lacks_stops_the_run_with_what_it_has() {
    let server = common::Server::start(&["--shards", "1"]);
    for (mix, lacking, has) in [
        ("tools/call=serach", "\"serach\"", "echo, add, sleep"),
        ("prompts/get=gret", "\"gret\"", "greet"),
        (
            "resources/read=file:///{{int 1 9}}",
            "file:///",
            "mcpstorm://items/{id}",
        ),
    ] {
        let out = mcpstorm(&[
            "run",
            &server.url(),
            "--phases",
            "sustained",
            "--connections",
            "4",
            "--duration",
            "1s",
            "--mix",
            mix,
        ]);
        let out_text = text(&out);
        assert_eq!(out.status.code(), Some(2), "{out_text}");
        assert!(
            out_text.contains(lacking) && out_text.contains(has),
            "{out_text}"
        );
    }
    // What the server has passes discovery and runs.
    let out = mcpstorm(&[
        "run",
        &server.url(),
        "--phases",
        "sustained",
        "--connections",
        "4",
        "--duration",
        "1s",
        "--mix",
        "tools/call=echo,resources/read=mcpstorm://items/{{int 1 9}},prompts/get=simple",
        "--sla",
        "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("the server lists"), "{}", text(&out));
}

#[test]
fn a_server_that_closes_or_stalls_ends_the_probe_with_exit_2() {
    use std::io::Read;
    // One closes every connection at once, the other reads and never answers.
    for stall in [false, true] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stall {
                    std::thread::spawn(move || {
                        let mut stream = stream;
                        let mut sink = [0u8; 4096];
                        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                    });
                }
            }
        });
        let url = format!("http://{addr}/mcp");
        let (code, _, out) = walk(&["--timeout", "1s", &url]);
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains("no session"), "{out}");
        // Discovery before a run meets the same server and lets the run say why.
        let out = mcpstorm(&[
            "run",
            &url,
            "--phases",
            "sustained",
            "--connections",
            "2",
            "--duration",
            "1s",
            "--request-timeout",
            "1s",
            "--ramp-timeout",
            "2s",
        ]);
        assert!(text(&out).contains("discovery skipped"), "{}", text(&out));
    }
}

/// 2026-07-28: the arguments a tool marks `x-mcp-header` travel as `Mcp-Param-*` headers too,
/// learnt at discovery and drawn with the generated body; `serve`'s `route` refuses a
/// request whose headers are missing or differ (-32020), so without discovery every call
/// fails: the check that the mirroring is what makes the run pass.
#[test]
fn a_run_mirrors_generated_x_mcp_header_arguments_into_mcp_param_headers() {
    let server = common::Server::start(&["--shards", "1"]);
    let url = server.url();
    let json =
        std::env::temp_dir().join(format!("mcpstorm-probe-route-{}.json", std::process::id()));
    let run = |extra: &[&str]| {
        let json = json.to_str().unwrap();
        let mut args = vec![
            "run",
            "--phases",
            "sustained",
            "--connections",
            "8",
            "--duration",
            "1s",
            "--rate",
            "400",
            "--protocol-version",
            "2026-07-28",
            "--mix",
            "tools/call=route",
            "--args",
            r#"route={"region":"{{choice eu-1|us west|Zürich}}","priority":{{int 1 9}}}"#,
            "--sla",
            "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
            "--json",
            json,
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = mcpstorm(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        let phase = &report["phases"][2]["requests"];
        let counts = (
            phase["sent"].as_u64().unwrap(),
            phase["ok"].as_u64().unwrap(),
        );
        (counts, report["discovery"].clone())
    };
    let ((sent, ok), discovery) = run(&[]);
    // Sessionless discovery: server/discover and the four lists, in no phase's figures.
    assert_eq!(discovery["sessions"], 0, "{discovery}");
    assert!(discovery["requests"].as_u64() >= Some(5), "{discovery}");
    assert_eq!(discovery["mirrored_tools"], serde_json::json!(["route"]));
    assert!(sent > 100, "{sent}");
    assert_eq!(ok, sent);
    let stats = server.stats();
    assert_eq!(stats["error_header_mismatch"], 0, "{stats}");
    assert!(stats["method_tools_call"].as_u64() >= Some(sent), "{stats}");

    let ((sent, ok), discovery) = run(&["--no-discovery"]);
    assert!(discovery.is_null());
    assert!(sent > 100);
    assert_eq!(ok, 0, "no declarations known, no Mcp-Param headers");
    assert!(server.stats()["error_header_mismatch"].as_u64() >= Some(sent));
    let _ = std::fs::remove_file(&json);
}

/// `probe https://…` against `serve --tls-cert`: trusting the test's CA it walks the surface;
/// without that CA the certificate is refused (exit 2, the reason named); `--insecure` walks.
#[test]
fn probe_walks_a_tls_server_and_refuses_an_untrusted_certificate() {
    let dir = std::env::temp_dir().join(format!("mcpstorm-probe-tls-{}", std::process::id()));
    let pki = mcpstorm::tls::server::throwaway_pki(&dir).expect("throwaway certificate");
    let server = common::Server::start(&[
        "--shards",
        "1",
        "--tls-cert",
        pki.cert_file.to_str().unwrap(),
        "--tls-key",
        pki.key_file.to_str().unwrap(),
    ]);
    let url = format!("https://localhost:{}/mcp", server.addr.port());
    let ca = pki.ca_file.to_str().unwrap();
    let (_, walked, out) = walk(&["--cacert", ca, &url]);
    assert_eq!(outcome(&walked, "initialize", "")["ok"], true, "{out}");
    assert_eq!(outcome(&walked, "tools/call", "echo")["ok"], true, "{out}");
    let (code, _, out) = walk(&[&url]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    let (_, walked, out) = walk(&["--insecure", &url]);
    assert_eq!(outcome(&walked, "tools/call", "echo")["ok"], true, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
