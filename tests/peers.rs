//! Real peers that no one here wrote: the official MCP Python SDK client (pinned in
//! tools/peers/requirements.txt, installed into target/peers/venv by
//! tools/peers/setup-python.sh) against `mcpstorm serve`, in both response modes.

mod common;

use common::{Server, peer_python};
use std::process::Command;

fn run_python_client(extra_serve_args: &[&str]) {
    let server = Server::start(extra_serve_args);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/py_client.py");
    let output = Command::new(peer_python())
        .arg(script)
        .arg(server.url())
        .args([
            "--expect-tools",
            "echo,add,sleep",
            "--sessions",
            "3",
            "--timeout",
            "60",
        ])
        .output()
        .expect("run py_client.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Python SDK client failed against serve {extra_serve_args:?}:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("py_client: ok sessions=3")),
        "{stdout}"
    );
    let stats = server.stats();
    assert_eq!(stats["sessions_created"], 3, "{stats}");
    assert_eq!(
        stats["sessions_deleted"], 3,
        "the SDK ends each session with DELETE: {stats}"
    );
    assert!(stats["method_tools_call"].as_u64().unwrap() >= 9, "{stats}");
    let summary = server.stop();
    assert!(summary.contains("sessions=3"), "{summary}");
}

/// The SDK client negotiating as `mcp.Client(url)` does by default (`--auto`): it probes
/// `server/discover` at 2026-07-28 and, answered, runs every request sessionless.
fn run_python_client_auto(extra_serve_args: &[&str]) {
    let server = Server::start(extra_serve_args);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/py_client.py");
    let output = Command::new(peer_python())
        .arg(script)
        .arg(server.url())
        .args([
            "--auto",
            "--expect-tools",
            "echo,add,sleep",
            "--sessions",
            "3",
            "--timeout",
            "60",
        ])
        .output()
        .expect("run py_client.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Python SDK client (--auto) failed against serve {extra_serve_args:?}:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("py_client: ok sessions=3")),
        "{stdout}"
    );
    let negotiated = stdout
        .lines()
        .filter(|l| l.contains("negotiated protocolVersion=2026-07-28 via server/discover"))
        .count();
    assert_eq!(
        negotiated, 3,
        "every connect takes the 2026-07-28 path: {stdout}"
    );
    let stats = server.stats();
    assert_eq!(stats["method_server_discover"], 3, "{stats}");
    assert_eq!(
        stats["method_initialize"], 0,
        "no fallback to initialize: {stats}"
    );
    assert_eq!(stats["sessions_created"], 0, "sessionless: {stats}");
    assert_eq!(stats["sessions_live"], 0, "{stats}");
    assert_eq!(stats["sessions_deleted"], 0, "nothing to DELETE: {stats}");
    assert_eq!(stats["sse_streams_opened"], 0, "no GET stream: {stats}");
    // Per connect: discover, tools/list, three tools/call (add, echo, unknown tool).
    assert_eq!(stats["requests_modern"], 15, "{stats}");
    assert_eq!(stats["method_tools_call"], 9, "{stats}");
    for counter in [
        "error_header_mismatch",
        "error_unsupported_protocol_version",
        "error_invalid_meta",
        "error_missing_session",
        "error_method_not_found",
    ] {
        assert_eq!(stats[counter], 0, "{counter}: {stats}");
    }
    let summary = server.stop();
    assert!(summary.contains("sessions=0"), "{summary}");
}

#[test]
fn python_sdk_client_against_serve_json() {
    run_python_client(&["--response", "json"]);
}

#[test]
fn python_sdk_client_against_serve_sse() {
    run_python_client(&["--response", "sse"]);
}

#[test]
fn python_sdk_client_auto_2026_against_serve_json() {
    run_python_client_auto(&["--response", "json"]);
}

#[test]
fn python_sdk_client_auto_2026_against_serve_sse() {
    run_python_client_auto(&["--response", "sse"]);
}

/// The SDK client over TLS (httpx trusting the test's CA) against `serve --tls-cert`: every
/// request of three sessions answered, and plaintext HTTP on the same port gets no answer.
#[test]
fn python_sdk_client_over_tls_against_serve_tls_cert() {
    let dir = std::env::temp_dir().join(format!("mcpstorm-peers-tls-{}", std::process::id()));
    let pki = mcpstorm::tls::server::throwaway_pki(&dir).expect("throwaway certificate");
    let server = Server::start(&[
        "--tls-cert",
        pki.cert_file.to_str().unwrap(),
        "--tls-key",
        pki.key_file.to_str().unwrap(),
    ]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/py_client.py");
    let output = Command::new(peer_python())
        .arg(script)
        .arg(format!("https://localhost:{}/mcp", server.addr.port()))
        .args(["--sessions", "3", "--timeout", "60", "--cacert"])
        .arg(&pki.ca_file)
        .output()
        .expect("run py_client.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success()
            && stdout
                .lines()
                .any(|l| l.starts_with("py_client: ok sessions=3")),
        "Python SDK client over TLS failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Plaintext HTTP to the TLS port: the server ends the connection without an HTTP answer.
    let mut plain = std::net::TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    std::io::Write::write_all(
        &mut plain,
        b"GET /mcpstorm/stats HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let summary = server.stop();
    // httpx may open more than one connection per session: at least one handshake each.
    let handshakes: u64 = summary
        .split("tls_handshakes=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        summary.contains("sessions=3") && handshakes >= 3 && summary.contains(" tls=1"),
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
