//! `mcpstorm doctor` on this machine: verdicts, exit codes and the fixes it names.

mod common;

use std::process::Command;

fn doctor(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("doctor")
        .args(args)
        .output()
        .expect("run mcpstorm doctor");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().expect("doctor exits with a code"),
        text,
    )
}

#[test]
fn hundred_thousand_against_the_embedded_server_fits_here() {
    let (code, text) = doctor(&["--connections", "100000"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("5 rings of ≤ 20000 direct descriptors") || !text.contains("hard 20000"),
        "{text}"
    );
    assert!(!text.contains("BLOCK "), "{text}");
}

/// `--streams`: a second connection for each streaming session, in every row's arithmetic.
#[test]
fn streams_count_a_second_connection_per_session() {
    let (_, text) = doctor(&["--connections", "100000", "--streams", "all"]);
    assert!(
        text.contains("200000 connections = 100000 sessions + 100000 streams"),
        "{text}"
    );
    assert!(
        text.contains("10 rings of ≤ 20000") || !text.contains("hard 20000"),
        "{text}"
    );
    let (_, text) = doctor(&["--connections", "1000", "--streams", "25%"]);
    assert!(
        text.contains("1250 connections = 1000 sessions + 250 streams"),
        "{text}"
    );
}

#[test]
fn five_million_blocks_with_named_fixes() {
    let (code, text) = doctor(&["--connections", "5000000"]);
    assert_eq!(code, 1, "{text}");
    let memory = text
        .lines()
        .find(|l| l.contains("MemAvailable"))
        .expect("memory row");
    assert!(memory.starts_with("BLOCK"), "{memory}");
    assert!(
        text.contains(
            "fix:   use a host with more memory, run the target elsewhere, or --connections "
        ),
        "{text}"
    );
    assert!(text.contains("verdict: BLOCKED"), "{text}");
}

#[test]
fn one_url_needs_source_addresses_past_the_port_range() {
    let (code, text) = doctor(&["http://127.0.0.1:9/mcp", "--connections", "100000"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--source-ips 127.0.0.2-127.0.0."), "{text}");
    let (code, text) = doctor(&[
        "http://127.0.0.1:9/mcp",
        "--connections",
        "100000",
        "--source-ips",
        "127.0.0.2-127.0.0.9",
    ]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn json_output_is_machine_readable() {
    let (code, text) = doctor(&["--connections", "1000", "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&text).expect("doctor --json prints JSON");
    assert_eq!(json["need"]["connections"], 1000);
    assert!(
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "RLIMIT_NOFILE")
    );
    assert!(matches!(
        json["verdict"].as_str(),
        Some("OK") | Some("WARN")
    ));
}

#[test]
fn bad_options_exit_2() {
    let (code, text) = doctor(&["ftp://127.0.0.1:80/mcp"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("scheme"), "{text}");
    let (code, text) = doctor(&["http://no-such-host.invalid/mcp"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot resolve"), "{text}");
}

/// `run` arguments for a single load phase (the six-phase scenario is tested in phases.rs).
/// (SLAs off: these tests check the engine, not a server's bounds.)
const SINGLE_PHASE: [&str; 4] = [
    "--phases",
    "sustained",
    "--sla",
    "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
];

/// What doctor says about a count is what `run` then does with it: refused before connecting
/// with the same fix when doctor blocks, held in full when doctor passes.
#[test]
fn doctor_and_run_agree() {
    let server = common::Server::start(&[]);
    let url = server.url();
    let (code, text) = doctor(&[&url, "--connections", "30000"]);
    assert_eq!(code, 1, "{text}");
    let fix = "--source-ips 127.0.0.2-127.0.0.3";
    assert!(text.contains(fix), "{text}");
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("run")
        .args(SINGLE_PHASE)
        .args([url.as_str(), "--connections", "30000", "--duration", "1s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "run must refuse what doctor blocks: {stderr}"
    );
    assert!(stderr.contains(fix), "run names the same fix: {stderr}");
    assert_eq!(
        server.stats()["connections_accepted"],
        1,
        "refused before connecting (1 = the stats call)"
    );

    let (code, text) = doctor(&[&url, "--connections", "2000"]);
    assert_eq!(code, 0, "{text}");
    let json =
        std::env::temp_dir().join(format!("mcpstorm-doctor-run-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("run")
        .args(SINGLE_PHASE)
        .args([
            url.as_str(),
            "--connections",
            "2000",
            "--duration",
            "1s",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["sessions"]["established"], 2000);
}

/// A network fault's rule whose run is gone (its guard killed with it) is listed with the
/// command that removes it. In a namespace of the test's own, so no other run's rules show.
#[test]
fn a_fault_rule_left_by_a_gone_run_is_named_with_its_fix() {
    let netns = common::Netns::create("doctor", 206);
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let pid = gone.id();
    gone.wait().unwrap();
    let table = format!("mcpstorm_fault_{pid}");
    let nsenter = netns.nsenter();
    let nft = Command::new("nsenter")
        .args([nsenter.as_str(), "nft", "add", "table", "inet", &table])
        .output()
        .expect("nft");
    assert!(
        nft.status.success(),
        "{}",
        String::from_utf8_lossy(&nft.stderr)
    );
    let out = Command::new("nsenter")
        .args([
            nsenter.as_str(),
            env!("CARGO_BIN_EXE_mcpstorm"),
            "doctor",
            "--connections",
            "100",
        ])
        .output()
        .expect("run doctor in the namespace");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.contains("fault rules"))
        .unwrap_or_else(|| panic!("no fault rules row:\n{text}"));
    assert!(
        line.starts_with("WARN") && line.contains(&table),
        "{line}\n{text}"
    );
    assert!(
        text.contains(&format!("nft delete table inet {table}")),
        "{text}"
    );
}
