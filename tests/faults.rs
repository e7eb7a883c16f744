//! The network faults of failure_recovery (`--fault partition:3s`, `latency:…`, `loss:…`)
//! against `mcpstorm serve` in a network namespace this test creates: what each does to the
//! requests and connections caught in it, that the report says so from its own counters, and
//! that the rules are gone afterwards — also when the run is SIGKILLed in the middle of the
//! fault. Traffic goes only to the test's own namespaces. The only times asserted are lower
//! bounds the fault itself imposes (a 3 s partition cannot heal in less than 3 s; a 100 ms
//! delay cannot answer in less than 100 ms): a loaded machine cannot break them.

mod common;

use common::{Netns, Server};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SLA_OFF: &str = "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off";

struct Target {
    // Dropped in this order: the server first, then its namespace.
    server: Server,
    netns: Netns,
}

impl Target {
    fn start(tag: &str, subnet: u8) -> Target {
        let netns = Netns::create(tag, subnet);
        let listen = format!("{}:18790", netns.there);
        let server =
            Server::start_with(&["nsenter", &netns.nsenter()], &["--listen", &listen], &[]);
        Target { server, netns }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.server.addr)
    }
}

/// The phased run's options against `target` with `fault` (`run` and `--json` not included).
fn run_args(target: &Target, fault: &str) -> Vec<String> {
    [
        target.url().as_str(),
        "--allow-host",
        &target.netns.there,
        "--connections",
        "100",
        "--rate",
        "500",
        "--baseline",
        "1s",
        "--sustain",
        "2s",
        "--skip",
        "performance",
        "--fault",
        fault,
        "--quiet",
        "--sla",
        SLA_OFF,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A phased run with `fault`; the report, the run's pid (the names of its rules), its text.
fn faulted_run(target: &Target, fault: &str) -> (Value, u32, String) {
    let args = run_args(target, fault);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = common::run_mcpstorm(&args);
    assert_ne!(run.code, Some(2), "the run could not run:\n{}", run.output);
    (run.report, run.pid, run.output)
}

fn recovery(report: &Value) -> &Value {
    let phase = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "failure_recovery")
        .expect("a failure_recovery phase");
    &phase["recovery"]
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Whether rules of the run `pid` are still installed (its nftables table, its iptables chain).
fn rules_of(pid: u32) -> (bool, bool) {
    let nft = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    let ipt = Command::new("iptables")
        .args(["-w", "-t", "mangle", "-S"])
        .output()
        .expect("iptables");
    (
        String::from_utf8_lossy(&nft.stdout).contains(&format!("mcpstorm_fault_{pid}\n")),
        String::from_utf8_lossy(&ipt.stdout).contains(&format!("MCPSTORM-FAULT-{pid}")),
    )
}

#[test]
fn a_partition_stalls_requests_without_a_reset_and_they_answer_after_it_heals() {
    let target = Target::start("part", 202);
    let (report, pid, text) = faulted_run(&target, "partition:3s");
    let r = recovery(&report);
    let effects = &r["effects"];
    let network = &effects["network"];
    assert!(
        network["installed_s"].as_f64().unwrap() >= 3.0,
        "the rules were in for less than the partition: {network}\n{text}"
    );
    assert!(
        network["addresses"][0]
            .as_str()
            .unwrap()
            .starts_with(&target.netns.there),
        "{network}"
    );
    assert!(
        n(&network["packets_dropped"]) > 0,
        "nothing dropped: {network}\n{text}"
    );
    // Nothing closes in a partition: no request is lost with its connection, none resets.
    let caught = &effects["requests_in_fault"];
    assert_eq!(n(&caught["connection_lost"]), 0, "{caught}\n{text}");
    assert!(n(&caught["answered_after_heal"]) > 0, "{caught}\n{text}");
    let phase_errors = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "failure_recovery")
        .unwrap()["errors_by_cause"]
        .clone();
    assert!(
        phase_errors.get("reset").is_none(),
        "{phase_errors}\n{text}"
    );
    // It cannot answer before the path heals.
    let recovery_s = r["recovery_s"].as_f64().expect("recovered");
    assert!(
        recovery_s >= 3.0,
        "recovered in {recovery_s} s from a 3 s partition\n{text}"
    );
    assert!(
        effects["during"]["latency_us"]["p50"].as_u64().unwrap() > 0,
        "requests sent during the partition are answered late: {effects}"
    );
    assert!(text.contains("answered late (after its end)"), "{text}");
    assert_eq!(rules_of(pid), (false, false), "rules left behind\n{text}");
}

#[test]
fn a_sigkilled_run_leaves_no_fault_rules_behind() {
    let target = Target::start("kill", 203);
    let mut args = run_args(&target, "partition:60s");
    args.extend(["--recovery-timeout".into(), "90s".into()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("run")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mcpstorm run");
    let pid = child.id();
    // Bounded: the baseline, ramp and sustained phases come first.
    let deadline = Instant::now() + Duration::from_secs(120);
    while rules_of(pid) != (true, true) {
        assert!(
            Instant::now() < deadline,
            "the partition was never installed"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its fault"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().expect("SIGKILL the run");
    child.wait().unwrap();
    // The guard sees its pipe close and removes everything (bounded wait, no timing claim).
    let deadline = Instant::now() + Duration::from_secs(30);
    while rules_of(pid) != (false, false) {
        assert!(
            Instant::now() < deadline,
            "rules of the killed run {pid} are still installed: {:?}",
            rules_of(pid)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the path works again.
    let mut client = target.server.connect();
    assert!(!client.initialize().is_empty());
}

#[test]
fn a_latency_of_100ms_shows_in_the_fault_window_only() {
    let target = Target::start("lat", 204);
    let (report, pid, text) = faulted_run(&target, "latency:100ms,for:3s");
    let effects = &recovery(&report)["effects"];
    let p50 = |window: &str| {
        effects[window]["latency_us"]["p50"]
            .as_u64()
            .unwrap_or_else(|| panic!("no {window} p50: {effects}"))
    };
    // Every packet to the server waited 100 ms: nothing sent during the fault came back
    // sooner. Before and after it, the server's own ~0.1 ms (a bound, not a measurement).
    assert!(
        p50("during") >= 100_000,
        "during: {}\n{text}",
        p50("during")
    );
    assert!(p50("before") < 100_000, "before: {}\n{text}", p50("before"));
    assert!(p50("after") < 100_000, "after: {}\n{text}", p50("after"));
    assert!(n(&effects["network"]["packets_delayed"]) > 0, "{effects}");
    assert_eq!(n(&effects["network"]["packets_dropped"]), 0, "{effects}");
    assert_eq!(
        n(&effects["requests_in_fault"]["connection_lost"]),
        0,
        "{effects}"
    );
    assert_eq!(rules_of(pid), (false, false), "rules left behind\n{text}");
}

#[test]
fn a_loss_is_recovered_as_a_wire_loss_with_retransmits() {
    let target = Target::start("loss", 205);
    let (report, pid, text) = faulted_run(&target, "loss:10%,for:3s");
    let r = recovery(&report);
    let network = &r["effects"]["network"];
    assert!(n(&network["packets_dropped"]) > 0, "{network}\n{text}");
    assert!(n(&network["packets_passed"]) > 0, "{network}\n{text}");
    // The packets left TCP and were lost after it: the kernel retransmitted them.
    assert!(
        n(&r["kernel_tcp"]["Tcp.RetransSegs"]) > 0,
        "no retransmits: {}\n{text}",
        r["kernel_tcp"]
    );
    assert!(
        n(&r["effects"]["during"]["requests_ok"]) > 0,
        "{}",
        r["effects"]
    );
    assert_eq!(rules_of(pid), (false, false), "rules left behind\n{text}");
}
