//! `mcpstorm report`: a saved JSON report rendered again (text, HTML, exit code), and the JSON
//! validated against schema/report.schema.json by an independent validator (Python
//! `jsonschema`, pinned in the peers venv).

mod common;

use mcpstorm::report::{self, sla::Verdict};
use std::process::Command;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcpstorm-report-test-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn report_renders_a_saved_run_and_keeps_its_exit_code() {
    let dir = temp_dir("render");
    let json = dir.join("run.json");
    let html = dir.join("run.html");
    report::write_files(&report::sample_report(), Some(&json), None).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args(["report"])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("SLA") && text.contains("verdict: PASS"),
        "{text}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.ends_with("</html>\n"));

    // The same run with one SLA broken exits 1 and names the failing row.
    let mut failing = report::sample_report();
    let sustained = failing
        .phases
        .iter_mut()
        .find(|p| p.name == "sustained")
        .unwrap();
    sustained.latency_us.p95 = 250_000;
    failing.sla = report::sla::evaluate(&report::sla::SlaSpec::default(), &failing.phases);
    failing.verdict = report::sla::overall(&failing.sla);
    assert_eq!(failing.verdict, Verdict::Fail);
    report::write_files(&failing, Some(&json), None).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("report")
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("p95_latency"))
        .unwrap();
    assert!(row.contains("FAIL") && row.contains("250.0 ms"), "{row}");

    std::fs::write(&json, "not json").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("report")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn report_json_validates_against_the_committed_schema() {
    let dir = temp_dir("schema");
    let json = dir.join("run.json");
    report::write_files(&report::sample_report(), Some(&json), None).unwrap();
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/report.schema.json");
    let check = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.load(open(sys.argv[2]))))
for e in errors[:10]:
    print("schema error:", "/".join(map(str, e.absolute_path)), e.message)
bad = json.load(open(sys.argv[2])); bad["phases"][0]["status"] = "exploded"
print("mutant rejected" if list(jsonschema.Draft202012Validator(schema).iter_errors(bad)) else "mutant accepted")
sys.exit(1 if errors else 0)
"#;
    let output = Command::new(common::peer_python())
        .args(["-c", check, schema])
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("mutant rejected"),
        "the schema must reject a bad status: {text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
