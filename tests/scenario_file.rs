//! The scenario file end to end (issue 10): `mcpstorm init` writes an example that runs as is
//! against the embedded server, command-line flags override the file (URLs replace its
//! targets, a later header of the same name replaces the file's), and a key the file may not
//! hold stops the run with exit 2 and its path.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpstorm-scenario-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn mcpstorm(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("spawn mcpstorm")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn row<'a>(report: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    report["sla"].as_array()?.iter().find(|r| r["name"] == name)
}

#[test]
fn init_writes_an_example_that_runs_as_is_against_the_embedded_server() {
    let dir = temp_dir("init");
    let init = mcpstorm(&dir, &["init"]);
    assert!(init.status.success(), "{}", text(&init));
    // A second init does not clobber the file.
    let again = mcpstorm(&dir, &["init"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));

    let run = mcpstorm(&dir, &["run", "--config", "mcpstorm.toml", "--quiet"]);
    let out = text(&run);
    // 0 or 1: the run ran and judged its SLAs (a loaded CI host may fail a bound); 2 would be
    // a file that does not run.
    assert!(matches!(run.status.code(), Some(0 | 1)), "{out}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("mcpstorm-report.json"))
            .unwrap_or_else(|e| panic!("the example's json output is missing ({e}): {out}")),
    )
    .expect("report is JSON");
    // The file's values, not the flags' defaults.
    assert_eq!(report["connections"], 1000, "{out}");
    assert_eq!(report["seed"], 1);
    assert_eq!(report["embedded_server"], true);
    let mix: Vec<&str> = report["mix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].as_str().unwrap())
        .collect();
    assert_eq!(
        mix,
        [
            "tools/call echo",
            "resources/read mcpstorm://items/{{int 1 1000}}",
            "prompts/get greet",
            "ping"
        ]
    );
    let sustained = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sustained")
        .expect("sustained phase");
    // Every entry of the example is one the embedded server answers.
    assert_eq!(
        sustained["errors_by_method"],
        serde_json::json!({}),
        "{out}"
    );
    for entry in &mix {
        assert!(
            sustained["latency_us_by_method"][entry]["count"].as_u64() > Some(0),
            "{entry} was not answered: {out}"
        );
    }
    // The per-entry bound of the file is judged on its entry's own figures.
    let echo_p95 = row(&report, "p95_latency[tools/call echo]").expect("per-entry row");
    assert_eq!(
        echo_p95["actual_value"].as_f64(),
        sustained["latency_us_by_method"]["tools/call echo"]["p95"].as_f64()
    );
    assert!(
        row(&report, "memory_per_connection").is_none(),
        "mem is off in the example"
    );
}

#[test]
fn flags_override_the_file_and_urls_replace_its_targets() {
    let server = common::Server::start(&["--shards", "1"]);
    let dir = temp_dir("override");
    // Nothing listens on port 1: the run would fail if the file's URL were used.
    std::fs::write(
        dir.join("s.toml"),
        r#"
[target]
urls = ["http://127.0.0.1:1/mcp"]
header = ["X-Origin: file", "X-Kept: file"]
[sessions]
connections = 40
[phases]
mode = "sustained"
duration = "1s"
[load]
rate = 0
seed = 3
[[load.mix]]
method = "tools/call"
target = "echo"
# echo needs `text`: every call with these arguments is a tool error.
args = { wrong = "from the file" }
[sla]
p95 = "100ms"
throughput = "off"
[sla.entries."tools/call echo"]
errors = "1%"
[output]
json = "file.json"
quiet = true
"#,
    )
    .unwrap();
    let url = server.url();
    let run = mcpstorm(
        &dir,
        &[
            "run",
            "--config",
            "s.toml",
            "--connections",
            "12",
            "--seed",
            "9",
            "-H",
            "X-Origin: command-line",
            "--args",
            "echo={\"text\":\"from the command line\"}",
            "--sla",
            "p95=off,mem=off,errors[tools/call echo]=off",
            "--json",
            "flags.json",
            &url,
        ],
    );
    let out = text(&run);
    assert_eq!(run.status.code(), Some(0), "{out}");
    assert!(
        !dir.join("file.json").exists(),
        "--json overrides output.json"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("flags.json")).unwrap()).unwrap();
    assert_eq!(report["connections"], 12);
    assert_eq!(report["seed"], 9);
    assert_eq!(report["targets"], serde_json::json!([url]));
    assert_eq!(
        report["headers"],
        serde_json::json!(["X-Kept: file", "X-Origin: command-line"])
    );
    // The command line's --sla overrode the file's key by key.
    assert!(row(&report, "p95_latency").is_none(), "{out}");
    assert!(
        row(&report, "error_rate[tools/call echo]").is_none(),
        "{out}"
    );
    assert!(
        row(&report, "error_rate").is_some(),
        "the default stays: {out}"
    );
    // The command line's --args replaced the file's, which echo answers with a tool error.
    let sustained = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sustained")
        .expect("sustained phase");
    assert!(
        sustained["latency_us_by_method"]["tools/call echo"]["count"].as_u64() > Some(0),
        "{out}"
    );
    assert_eq!(
        sustained["errors_by_method"],
        serde_json::json!({}),
        "{out}"
    );
    drop(server);
}

#[test]
fn a_key_the_file_may_not_hold_exits_2_with_its_path() {
    let dir = temp_dir("unknown");
    std::fs::write(
        dir.join("typo.toml"),
        "[sessions]\nconnections = 10\n[[load.mix]]\nmethod = \"ping\"\nwieght = 2\n",
    )
    .unwrap();
    let run = mcpstorm(&dir, &["run", "--config", "typo.toml"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(2), "{out}");
    assert!(out.contains("load.mix[0].wieght"), "{out}");
    std::fs::write(
        dir.join("entry.toml"),
        "[sla.entries.\"tools/call nothing\"]\np95 = \"1s\"\n",
    )
    .unwrap();
    let run = mcpstorm(
        &dir,
        &[
            "run",
            "--config",
            "entry.toml",
            "--phases",
            "sustained",
            "--connections",
            "4",
        ],
    );
    let out = text(&run);
    assert_eq!(run.status.code(), Some(2), "{out}");
    assert!(out.contains("tools/call nothing"), "{out}");
    assert!(out.contains("its entries are"), "{out}");
}
