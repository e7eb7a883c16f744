//! A run split into segments (issue 13) on one host: two `run --segment I/2` processes with
//! one set of options and a common `--start-at` load one `serve`, and `mcpstorm merge` adds
//! their reports — the merged figures are the segments' sums, its latency histograms their
//! sum, and the server's own counters agree with what the merged report says was sent.

mod common;

use common::{Server, count, run_mcpstorm};
use std::process::Command;

const SLA_OFF: &str = "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off";

fn merge(files: &[&std::path::Path], out: &std::path::Path) -> (Option<i32>, String) {
    merge_with(files, out, SLA_OFF)
}

fn merge_with(
    files: &[&std::path::Path],
    out: &std::path::Path,
    sla: &str,
) -> (Option<i32>, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("merge")
        .args(files)
        .arg("--json")
        .arg(out)
        .args(["--sla", sla])
        .output()
        .expect("run mcpstorm merge");
    (
        run.status.code(),
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr),
    )
}

#[test]
fn two_segments_of_one_run_merge_into_its_sums() {
    let server = Server::start(&["--shards", "1"]);
    let url = server.url();
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 3.0;
    let start_at = format!("{start_at:.3}");
    // Segment 0 answers the clock probes; both measure against it (segment 1 may ask before
    // segment 0 listens: it asks again until the start).
    let clock_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let segment = |index: u32| {
        let url = url.clone();
        let start_at = start_at.clone();
        std::thread::spawn(move || {
            let segment = format!("{index}/2");
            let clock_ref = format!("127.0.0.1:{clock_port}");
            let clock_serve = clock_port.to_string();
            let mut clock = vec!["--clock-ref", clock_ref.as_str()];
            if index == 0 {
                clock.extend(["--clock-serve", clock_serve.as_str()]);
            }
            let mut args = vec![
                url.as_str(),
                "--segment",
                &segment,
                "--start-at",
                &start_at,
                "--connections",
                "301",
                "--rate",
                "201",
                "--shards",
                "1",
                "--phases",
                "sustained",
                "--duration",
                "2s",
                "--mix",
                "ping:1,tools/call=echo:1",
                "--no-discovery",
                "--quiet",
                "--sla",
                "p95=1us",
            ];
            args.extend(clock);
            run_mcpstorm(&args)
        })
    };
    let (first, second) = (segment(0), segment(1));
    let runs = [first.join().unwrap(), second.join().unwrap()];
    let dir = std::env::temp_dir().join(format!("mcpstorm-segments-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (index, run) in runs.iter().enumerate() {
        // A segment's SLA is the merged run's to judge: p95=1us fails, the segment exits 0.
        assert_eq!(run.code, Some(0), "segment {index}: {}", run.output);
        let segment = &run.report["segment"];
        assert_eq!(count(segment, "/index"), index as u64);
        assert_eq!(count(segment, "/count"), 2);
        assert_eq!(count(segment, "/run_connections"), 301);
        let offset = segment["clock_offset_ms"]
            .as_f64()
            .expect("clock offset measured");
        let rtt = segment["clock_rtt_ms"].as_f64().unwrap();
        assert!(
            offset.abs() <= rtt / 2.0 + 0.001,
            "one host, one clock: {offset} over {rtt}"
        );
        assert_eq!(count(&run.report, "/connections"), [151, 150][index]);
        assert_eq!(
            count(&run.report, "/phases/1/sessions/established"),
            [151, 150][index],
            "{}",
            run.output
        );
        let path = dir.join(format!("segment-{index}.json"));
        std::fs::write(&path, run.report.to_string()).unwrap();
        files.push(path);
    }
    let sustained = |r: &serde_json::Value| r["phases"][2].clone();
    let (s0, s1) = (sustained(&runs[0].report), sustained(&runs[1].report));
    // Each its share of the rate: 101 + 100.
    assert_eq!(s0["offered_rps"].as_f64(), Some(101.0));
    assert_eq!(s1["offered_rps"].as_f64(), Some(100.0));

    let merged_path = dir.join("merged.json");
    let paths: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    let (code, output) = merge(&paths, &merged_path);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("merged from 2 segments"), "{output}");
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_path).unwrap()).unwrap();
    assert_eq!(count(&merged, "/connections"), 301);
    assert_eq!(count(&merged, "/sessions/established"), 301);
    let m = sustained(&merged);
    assert_eq!(m["offered_rps"].as_f64(), Some(201.0));
    for key in ["offered", "sent", "ok", "errors", "dropped"] {
        assert_eq!(
            count(&m, &format!("/requests/{key}")),
            count(&s0, &format!("/requests/{key}")) + count(&s1, &format!("/requests/{key}")),
            "{key}"
        );
    }
    assert_eq!(
        count(&m, "/latency_us/count"),
        count(&s0, "/latency_us/count") + count(&s1, "/latency_us/count")
    );
    let p99 = count(&m, "/latency_us/p99");
    let (a, b) = (count(&s0, "/latency_us/p99"), count(&s1, "/latency_us/p99"));
    assert!(
        p99 >= a.min(b) && p99 <= a.max(b),
        "{p99} outside [{a}, {b}]"
    );
    for method in ["ping", "tools/call echo"] {
        let pointer = format!("/latency_us_by_method/{}/count", method.replace('/', "~1"));
        assert_eq!(
            count(&m, &pointer),
            count(&s0, &pointer) + count(&s1, &pointer),
            "{method}"
        );
    }
    // Merged with the segments' own SLA it fails, as one run of those options would.
    let judged = dir.join("judged.json");
    let (code, output) = merge_with(&paths, &judged, "p95=1us");
    assert_eq!(code, Some(1), "{output}");
    let rows = merged["merged_from"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["host"], runs[1].report["segment"]["host"]);
    // The server saw exactly the sessions and requests the merged report says were sent.
    let stats = server.stats();
    assert_eq!(count(&stats, "/sessions_created"), 301, "{stats}");
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
    // `merge --dir` (the segments' shared volume, as the Kubernetes merge Job runs it): the
    // same report; asked for a third segment that never comes, it names it missing.
    let from_dir = dir.join("from-dir.out");
    let run = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args(["merge", "--dir"])
        .arg(&dir)
        .args(["--segments", "2", "--sla", SLA_OFF, "--json"])
        .arg(&from_dir)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let from_dir: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&from_dir).unwrap()).unwrap();
    assert_eq!(from_dir["phases"], merged["phases"]);
    let three = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args(["merge", "--dir"])
        .arg(&dir)
        .args(["--segments", "3", "--sla", SLA_OFF])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&three.stderr);
    assert_eq!(three.status.code(), Some(2), "{err}");
    assert!(err.contains("of 2 segments, not 3"), "{err}");
    // One segment's report never came: waited for, then named missing (exit 1, partial).
    let lonely = dir.join("lonely");
    std::fs::create_dir_all(&lonely).unwrap();
    std::fs::copy(&files[0], lonely.join("segment-0.json")).unwrap();
    let one = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args(["merge", "--dir"])
        .arg(&lonely)
        .args(["--segments", "2", "--wait", "1s", "--sla", SLA_OFF])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&one.stdout);
    assert_eq!(one.status.code(), Some(1), "{text}");
    assert!(text.contains("MISSING segments [1] of 2"), "{text}");
    // Merging the merged report with nothing new refuses nothing and changes nothing.
    let again = dir.join("again.json");
    let (code, output) = merge(&[merged_path.as_path()], &again);
    assert_eq!(code, Some(0), "{output}");
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(again["phases"], merged["phases"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn segment_options_are_checked() {
    let out = |args: &[&str]| {
        let run = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
            .arg("run")
            .args(args)
            .output()
            .unwrap();
        (
            run.status.code(),
            String::from_utf8_lossy(&run.stderr).into_owned(),
        )
    };
    let (code, err) = out(&["--segment", "2/2", "http://127.0.0.1:9/mcp"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("numbered 0 to 1"), "{err}");
    let (code, err) = out(&["--segment", "0/2", "--connections", "10"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("give its URL"), "{err}");
    let (code, err) = out(&[
        "--segment-from-env",
        "MCPSTORM_TEST_NO_SUCH_VAR",
        "--segments",
        "3",
        "http://127.0.0.1:9/mcp",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not set"), "{err}");
    let (code, err) = out(&[
        "--segment",
        "2/3",
        "--rate",
        "2",
        "--connections",
        "30",
        "http://127.0.0.1:9/mcp",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("leaves segment 2/3 none"), "{err}");
}
