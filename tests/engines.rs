//! The segments of one run on a real multi-node engine (issue 13): Slurm, one controller and
//! three compute hosts (each slurmd in its own network namespace with its own address and
//! host name), the target `serve` on a fourth; `sbatch --array=0-2` runs the three segments
//! (`--segment-from-env SLURM_ARRAY_TASK_ID`), an `afterok` job merges them. The merged
//! report is checked against the sum of the segments and against the server's own counters.
//! `tests/engines/slurm-segments.sh` does the plumbing (needs root and the Debian packages
//! tools/test.sh installs); every namespace and daemon is gone when it exits.

mod common;

use common::count;
use std::process::Command;

fn json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn three_segments_under_slurm_merge_into_the_run() {
    let out = std::env::temp_dir().join(format!("mcpstorm-slurm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/engines/slurm-segments.sh"
    );
    let run = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg(&out)
        .output()
        .expect("run the Slurm script");
    let text =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{text}");
    let merged = json(&out.join("merged.json"));
    let segments: Vec<serde_json::Value> = (0..3)
        .map(|i| json(&out.join(format!("seg-{i}.json"))))
        .collect();
    let stats = json(&out.join("stats.json"));
    // Each segment on its own compute host, each with its share.
    let mut hosts: Vec<&str> = segments
        .iter()
        .map(|s| s["segment"]["host"].as_str().unwrap())
        .collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["n1", "n2", "n3"], "{text}");
    for (index, segment) in segments.iter().enumerate() {
        assert_eq!(count(segment, "/segment/index"), index as u64);
        assert_eq!(count(segment, "/sessions/established"), 200, "{segment}");
        // Measured against the controller host's reference clock; one machine, one clock:
        // the offset lies within half the round trip it was measured over.
        let offset = segment["segment"]["clock_offset_ms"]
            .as_f64()
            .expect("clock offset");
        let rtt = segment["segment"]["clock_rtt_ms"]
            .as_f64()
            .expect("clock round trip");
        assert!(
            offset.abs() <= rtt / 2.0 + 0.001,
            "offset {offset} ms over {rtt} ms"
        );
    }
    // The merged report is the sum of the segments.
    assert_eq!(count(&merged, "/sessions/established"), 600);
    let sustained = |r: &serde_json::Value| r["phases"][2].clone();
    let m = sustained(&merged);
    assert_eq!(m["name"], "sustained");
    for key in ["offered", "sent", "ok", "errors", "dropped"] {
        let sum: u64 = segments
            .iter()
            .map(|s| count(&sustained(s), &format!("/requests/{key}")))
            .sum();
        assert_eq!(count(&m, &format!("/requests/{key}")), sum, "{key}");
    }
    let latencies: u64 = segments
        .iter()
        .map(|s| count(&sustained(s), "/latency_us/count"))
        .sum();
    assert_eq!(count(&m, "/latency_us/count"), latencies);
    assert_eq!(m["offered_rps"].as_f64(), Some(600.0));
    assert_eq!(merged["merged_from"].as_array().unwrap().len(), 3);
    // And what the server saw: every session and every request the merged report counts.
    assert_eq!(count(&stats, "/sessions_created"), 600, "{stats}");
    let sent: u64 = merged["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| count(p, "/requests/sent"))
        .sum();
    assert_eq!(
        count(&stats, "/method_ping") + count(&stats, "/method_tools_call"),
        sent,
        "{stats}"
    );
    // The figures of the closing note.
    let timing = std::fs::read_to_string(out.join("timing.txt")).unwrap_or_default();
    for row in merged["merged_from"].as_array().unwrap() {
        let phase = &row["phases"][2];
        eprintln!(
            "segment {} on {}: {} sessions, {:.0} req/s, p99 {} µs, start +{} ms, late {} ms, clock {} ms (rtt {} ms)",
            row["index"],
            row["host"],
            row["sessions_established"],
            phase["throughput_rps"].as_f64().unwrap_or(0.0),
            phase["latency_us_p99"],
            row["start_offset_ms"],
            row["late_ms"],
            row["clock_offset_ms"],
            row["clock_rtt_ms"]
        );
    }
    eprintln!(
        "merged: {} sessions, {:.0} req/s, p99 {} µs; {}",
        count(&merged, "/sessions/established"),
        m["throughput_rps"].as_f64().unwrap_or(0.0),
        count(&m, "/latency_us/p99"),
        timing.trim()
    );
    let _ = std::fs::remove_dir_all(&out);
}
