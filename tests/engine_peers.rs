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
