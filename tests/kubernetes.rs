//! `mcpstorm kubernetes` (issue 13): the manifests of a segmented run pass the Kubernetes
//! schemas offline (`kubernetes-validate --strict`, from the pinned Python venv), a broken one
//! does not (so the check can fail), and the options that cannot go in are refused.

mod common;

use std::process::Command;

fn validator() -> std::path::PathBuf {
    let python = common::peer_python();
    python.with_file_name("kubernetes-validate")
}

fn kubernetes(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("kubernetes")
        .args(args)
        .output()
        .expect("run mcpstorm kubernetes");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn validate(manifest: &str) -> (bool, String) {
    let file = std::env::temp_dir().join(format!(
        "mcpstorm-k8s-{}-{}.yaml",
        std::process::id(),
        manifest.len()
    ));
    std::fs::write(&file, manifest).unwrap();
    let out = Command::new(validator())
        .args(["--strict", "--kubernetes-version", "1.37.0"])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate (tools/peers/setup-python.sh installs it)");
    let _ = std::fs::remove_file(&file);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_manifests_of_a_segmented_run_pass_the_schemas() {
    let (code, manifest, err) = kubernetes(&[
        "--segments",
        "10",
        "--image",
        "registry.example/mcpstorm:0.1",
        "--namespace",
        "load",
        "--",
        "https://mcp.example.com/mcp",
        "--allow-host",
        "mcp.example.com",
        "--connections",
        "1m",
        "--rate",
        "20k",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (ok, report) = validate(&manifest);
    assert!(ok, "{report}\n{manifest}");
    assert_eq!(report.matches("passed").count(), 4, "{report}");
    assert!(manifest.contains("\"completionMode\": \"Indexed\""));
    assert!(manifest.contains("JOB_COMPLETION_INDEX"));
    // The validator refuses what Kubernetes would: a misspelt field.
    let broken = manifest.replacen("\"completionMode\"", "\"completionMood\"", 1);
    let (ok, report) = validate(&broken);
    assert!(!ok, "a broken manifest passed: {report}");
}

#[test]
fn options_the_manifests_set_or_cannot_take_are_refused() {
    let base = ["--segments", "3", "--image", "i"];
    for (extra, says) in [
        (vec!["--", "--connections", "10"], "give its URL"),
        (
            vec!["--", "http://h:1/mcp", "--json", "x.json"],
            "--json is set by the manifests",
        ),
        (
            vec!["--", "http://h:1/mcp", "--segment=0/3"],
            "--segment is set",
        ),
        (
            vec!["--", "http://h:1/mcp", "--no-such-option"],
            "the run arguments",
        ),
        (vec!["--name", "Bad_Name", "--", "http://h:1/mcp"], "--name"),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra);
        let (code, _, err) = kubernetes(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
