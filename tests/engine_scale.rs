//! The client engine at the scale: ≥ 20,000 sessions against `mcpstorm serve`, in both
//! response modes, with the counts of both sides required to agree exactly.

mod common;

use common::Server;
use std::process::Command;

/// `run` arguments for a single load phase (the six-phase scenario is tested in phases.rs).
/// (SLAs off: these tests check the engine, not a server's bounds.)
const SINGLE_PHASE: [&str; 4] = [
    "--phases",
    "sustained",
    "--sla",
    "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
];

fn count(value: &serde_json::Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {value}"))
}

fn twenty_thousand_sessions(response: &str) {
    const SESSIONS: u64 = 20_000;
    let server = Server::start(&["--response", response, "--max-connections", "40000"]);
    let json = std::env::temp_dir().join(format!(
        "mcpstorm-scale-{}-{response}.json",
        std::process::id()
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("run")
        .args(SINGLE_PHASE)
        .arg(server.url())
        .args([
            "--connections",
            "20000",
            "--rate",
            "10000",
            "--duration",
            "2s",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(
        count(&report, "/sessions/established"),
        SESSIONS,
        "{stdout}"
    );
    assert_eq!(count(&report, "/sessions/failed"), 0);
    assert_eq!(count(&report, "/sessions/held_max"), SESSIONS);
    let (sent, ok, errors) = (
        count(&report, "/phases/2/requests/sent"),
        count(&report, "/phases/2/requests/ok"),
        count(&report, "/phases/2/requests/errors"),
    );
    assert_eq!(sent, ok + errors, "every request accounted for");
    assert_eq!(errors, 0, "{stdout}");
    assert!(ok > 10_000, "the load phase ran: {stdout}");
    let stats = server.stats();
    assert_eq!(
        count(&stats, "/sessions_created"),
        SESSIONS + 1,
        "the server saw every session, and discovery's one before the ramp"
    );
    assert_eq!(
        count(&stats, "/method_ping"),
        ok,
        "the server answered exactly what the engine counted"
    );
    assert_eq!(count(&stats, "/method_initialize"), SESSIONS + 1);
}

/// One after the other: two 20K-session runs at once on a 2-CPU machine overload both
/// generators, and the report rightly calls such a run INVALID.
#[test]
fn twenty_thousand_sessions_json_then_sse() {
    twenty_thousand_sessions("json");
    twenty_thousand_sessions("sse");
}
