//! Replica failover (`run --replicas N`, `run URL… --failover POLICY`): one replica of three
//! dies in failure_recovery, its sessions move to the other two and initialize there, and the
//! report says which replica failed, how many sessions it held, that they answer elsewhere,
//! and each replica's load before and after — from the shards' counters. Without `--failover`
//! the same death leaves the sessions on the dead server (the control). Loopback only; no
//! time is asserted beyond "reported".

mod common;

use common::{Server, run_mcpstorm};
use serde_json::Value;

const SLA_OFF: &str = "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off";
const SESSIONS: u64 = 300;

fn phased(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend(
        [
            "--connections",
            "300",
            "--rate",
            "600",
            "--baseline",
            "1s",
            "--sustain",
            "2s",
            "--skip",
            "performance",
            "--quiet",
            "--sla",
            SLA_OFF,
        ]
        .map(String::from),
    );
    args
}

fn recovery(report: &Value) -> &Value {
    report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == "failure_recovery")
        .map(|p| &p["recovery"])
        .expect("failure_recovery phase")
}

/// What every failover of replica 2 of three must show.
fn check_failed_over(report: &Value, output: &str, policy: &str) {
    let r = recovery(report);
    let f = &r["failover"];
    assert_eq!(f["policy"], policy, "{output}");
    assert_eq!(f["failed_replicas"], serde_json::json!([2]), "{output}");
    let on_failed = f["sessions_on_failed"]
        .as_u64()
        .expect("sessions_on_failed");
    assert!(
        on_failed > 0,
        "replica 2 held no session at the fault: {output}"
    );
    let moved = f["sessions_failed_over"].as_u64().unwrap();
    assert!(moved >= on_failed, "{moved} moved of {on_failed}: {output}");
    let elsewhere = f["sessions_answering_elsewhere"].as_u64().unwrap();
    assert!(
        elsewhere as f64 >= (on_failed as f64 * 0.99).ceil(),
        "{elsewhere} of {on_failed} answering elsewhere: {output}"
    );
    assert!(f["failover_s"].is_f64(), "no failover time: {output}");
    // Every session answers again, on the other two.
    assert_eq!(r["sessions_before"], SESSIONS, "{output}");
    assert_eq!(r["sessions_restored"], SESSIONS, "{output}");
    let replicas = f["replicas"].as_array().expect("per-replica table");
    assert_eq!(replicas.len(), 3, "{output}");
    let after = |k: usize| replicas[k]["sessions_after"].as_u64().unwrap();
    assert_eq!(
        after(1),
        0,
        "the dead replica still holds sessions: {output}"
    );
    assert_eq!(after(0) + after(2), SESSIONS, "{output}");
    assert_eq!(replicas[1]["answered_per_s_after"], 0.0, "{output}");
    assert_eq!(replicas[1]["sessions_moved_away"], moved, "{output}");
    for k in [0, 2] {
        assert!(
            replicas[k]["answered_per_s_before"].as_f64().unwrap() > 0.0
                && replicas[k]["answered_per_s_after"].as_f64().unwrap() > 0.0,
            "replica {} carried no load: {output}",
            k + 1
        );
        assert!(
            after(k) > replicas[k]["sessions_at_fault"].as_u64().unwrap(),
            "replica {} took none of the moved sessions: {output}",
            k + 1
        );
    }
    // The counter the figures come from.
    assert_eq!(
        report["counters"]["sessions_failed_over"], moved,
        "{output}"
    );
}

#[test]
fn three_embedded_replicas_one_killed() {
    let run = run_mcpstorm(
        &phased(&[
            "--replicas",
            "3",
            "--fault",
            "kill-replica:2",
            "--recovery-timeout",
            "10s",
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    assert_eq!(run.code, Some(0), "{}", run.output);
    check_failed_over(&run.report, &run.output, "round-robin");
    // Each embedded replica's URLs are one replica (a replica may listen on several ports).
    let f = &recovery(&run.report)["failover"];
    assert!(
        f["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["urls"].as_array().unwrap().is_empty())
    );
    assert!(
        run.output.contains("failover (round-robin)"),
        "{}",
        run.output
    );
}

/// Three servers of the test's own named as replicas; the user's command kills one.
#[test]
fn url_replicas_fail_over_when_a_command_kills_one() {
    let servers: Vec<Server> = (0..3).map(|_| Server::start(&[])).collect();
    let urls: Vec<String> = servers.iter().map(Server::url).collect();
    let kill = format!("exec:kill -9 {}", servers[1].child.id());
    let mut args: Vec<String> = urls.clone();
    args.extend(phased(&[
        "--failover",
        "least-loaded",
        "--fault",
        &kill,
        "--recovery-timeout",
        "10s",
    ]));
    let run = run_mcpstorm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.code, Some(0), "{}", run.output);
    check_failed_over(&run.report, &run.output, "least-loaded");
    let replicas = recovery(&run.report)["failover"]["replicas"].clone();
    assert_eq!(replicas[1]["urls"], serde_json::json!([urls[1]]));
}

/// The control: without `--failover` the URLs are loaded on their own, and the dead one's
/// sessions stay with it (retrying) — no failover figures, not every session back.
#[test]
fn without_failover_a_dead_url_keeps_its_sessions() {
    let servers: Vec<Server> = (0..3).map(|_| Server::start(&[])).collect();
    let mut args: Vec<String> = servers.iter().map(Server::url).collect();
    let kill = format!("exec:kill -9 {}", servers[1].child.id());
    args.extend(phased(&["--fault", &kill, "--recovery-timeout", "3s"]));
    let run = run_mcpstorm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let r = recovery(&run.report);
    assert!(r["failover"].is_null(), "{}", run.output);
    assert!(
        r["sessions_restored"].as_u64().unwrap() < SESSIONS,
        "{}",
        run.output
    );
    assert_eq!(run.report["counters"]["sessions_failed_over"], 0);
}

#[test]
fn replica_options_are_checked_before_any_connection() {
    let refused = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
            .arg("run")
            .args(args)
            .output()
            .expect("run mcpstorm");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = refused(&["http://127.0.0.1:9/mcp", "--replicas", "2"]);
    assert!(e.contains("--failover"), "{e}");
    let e = refused(&["http://127.0.0.1:9/mcp", "--failover", "round-robin"]);
    assert!(e.contains("at least two replicas"), "{e}");
    let e = refused(&["--fault", "kill-replica:1", "--connections", "10"]);
    assert!(e.contains("--replicas"), "{e}");
    let e = refused(&[
        "--replicas",
        "2",
        "--fault",
        "kill-replica:3",
        "--connections",
        "10",
    ]);
    assert!(e.contains("there are 2 replicas"), "{e}");
}
