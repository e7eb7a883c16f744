//! `mcpstorm kubernetes`: the manifests that run one `mcpstorm run` as N segments on a
//! Kubernetes cluster and merge them (issue 13). I/O-free: options in, manifests out (JSON
//! documents separated by `---`, which is YAML and what `kubectl apply -f` reads).
//!
//! - a `PersistentVolumeClaim` (ReadWriteMany) the segments write their reports to, unless
//!   the user names a claim of their own;
//! - an Indexed `Job` of N completions, all in parallel: each pod runs the user's `run`
//!   options with `--segment-from-env JOB_COMPLETION_INDEX --segments N`, a common
//!   `--start-at`, and `--json /results/segment-I.json`; pod anti-affinity on the host name
//!   puts each segment on its own node; the namespaced sysctl `net.ipv4.ip_local_port_range`
//!   widens each pod's ports; memory and CPU are sized from `doctor`'s arithmetic;
//! - a merge `Job` that waits for the N reports (`merge --dir --segments --wait`), merges
//!   them and leaves the merged JSON and HTML beside them (its exit code is the run's).
//!
//! Segments do not coordinate (each runs the same schedule from the same options), but they
//! measure their clocks against segment 0's: a headless `Service` names segment 0's pod
//! (`NAME-clock`, UDP [`CLOCK_PORT`]), every pod answers clock probes (`--clock-serve`) and
//! probes it (`--clock-ref`). io_uring needs a seccomp profile that allows it: container
//! runtimes' default profiles block `io_uring_setup`, so the pods run `Unconfined`.

use serde_json::{Value, json};

/// UDP port of the segments' clock probes (`run --clock-serve` / `--clock-ref`).
pub const CLOCK_PORT: u16 = 7907;

/// Kernel bytes per idle TCP socket here (the `doctor` figure), and the user bytes per
/// connection budgeted on top, with room for buffers under load.
const KERNEL_BYTES_PER_SOCKET: u64 = 4_800;
const USER_BYTES_PER_CONN: u64 = 1_024;
/// The process's own memory beyond its connections (rings, pools, histograms), MiB.
const BASE_MEMORY_MIB: u64 = 256;

/// What the manifests are made of.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    /// Job name prefix (a DNS label).
    pub name: String,
    pub namespace: Option<String>,
    pub image: String,
    pub segments: u32,
    /// The user's `run` arguments (URL, options), passed as they are.
    pub run_args: Vec<String>,
    /// The run's `--connections` (for the sizing), and its shards per segment.
    pub connections: u64,
    pub shards: u32,
    /// `--start-at` written into every segment, UNIX seconds.
    pub start_at_unix_s: u64,
    /// An existing ReadWriteMany claim for the reports; None = the manifests create one.
    pub results_claim: Option<String>,
    /// How long the merge waits for the segments' reports, seconds.
    pub merge_wait_s: u64,
}

/// Checks a name Kubernetes will accept for the objects (a DNS-1123 label, with room for
/// the `-merge` and `-results` suffixes).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--name {name:?}: lower-case letters, digits and '-', at most 50, not starting or ending with '-'"
        ))
    }
}

/// The manifests, `---`-separated.
pub fn manifests(o: &KubernetesOptions) -> String {
    let claim = o
        .results_claim
        .clone()
        .unwrap_or_else(|| format!("{}-results", o.name));
    let mut docs = Vec::new();
    if o.results_claim.is_none() {
        docs.push(with_namespace(
            json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": { "name": claim, "labels": labels(&o.name) },
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "resources": { "requests": { "storage": "1Gi" } }
                }
            }),
            o,
        ));
    }
    docs.push(with_namespace(clock_service(o), o));
    docs.push(with_namespace(segments_job(o, &claim), o));
    docs.push(with_namespace(merge_job(o, &claim), o));
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_json::to_string_pretty(&doc).expect("a manifest is JSON"));
        out.push('\n');
    }
    out
}

fn labels(name: &str) -> Value {
    json!({ "app.kubernetes.io/name": "mcpstorm", "mcpstorm/run": name })
}

fn with_namespace(mut doc: Value, o: &KubernetesOptions) -> Value {
    if let Some(ns) = &o.namespace {
        doc["metadata"]["namespace"] = json!(ns);
    }
    doc
}

/// Memory one segment's pod needs: its share of the connections (the largest), kernel and
/// user bytes each, plus the process's base.
pub fn segment_memory_mib(connections: u64, segments: u32) -> u64 {
    let share = connections.div_ceil(u64::from(segments.max(1)));
    (share * (KERNEL_BYTES_PER_SOCKET + USER_BYTES_PER_CONN)).div_ceil(1 << 20) + BASE_MEMORY_MIB
}

/// Segment 0's pod by name: the reference the others measure their clocks against.
fn clock_service(o: &KubernetesOptions) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": format!("{}-clock", o.name), "labels": labels(&o.name) },
        "spec": {
            "clusterIP": "None",
            "selector": {
                "mcpstorm/run": o.name,
                "batch.kubernetes.io/job-completion-index": "0"
            },
            "ports": [{ "name": "clock", "protocol": "UDP", "port": CLOCK_PORT }]
        }
    })
}

fn segments_job(o: &KubernetesOptions, claim: &str) -> Value {
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(o.run_args.iter().cloned());
    args.extend([
        "--segment-from-env".into(),
        "JOB_COMPLETION_INDEX".into(),
        "--segments".into(),
        o.segments.to_string(),
        "--start-at".into(),
        o.start_at_unix_s.to_string(),
        "--clock-serve".into(),
        CLOCK_PORT.to_string(),
        "--clock-ref".into(),
        format!("{}-clock:{CLOCK_PORT}", o.name),
        "--json".into(),
        "/results/segment-$(JOB_COMPLETION_INDEX).json".into(),
        "--html".into(),
        "/results/segment-$(JOB_COMPLETION_INDEX).html".into(),
    ]);
    let memory = format!("{}Mi", segment_memory_mib(o.connections, o.segments));
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": o.name,
            "labels": labels(&o.name),
            "annotations": {
                "mcpstorm/start-at": o.start_at_unix_s.to_string(),
                "mcpstorm/segments": o.segments.to_string()
            }
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": o.segments,
            "parallelism": o.segments,
            // A segment restarted by the engine runs again with its index; its report says
            // how late after --start-at it began. One retry each, then the index fails and
            // the merge names it missing.
            "backoffLimitPerIndex": 1,
            "template": {
                "metadata": { "labels": labels(&o.name) },
                "spec": {
                    "restartPolicy": "Never",
                    "affinity": {
                        "podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [{
                                "labelSelector": { "matchLabels": { "mcpstorm/run": o.name } },
                                "topologyKey": "kubernetes.io/hostname"
                            }]
                        }
                    },
                    "securityContext": {
                        "sysctls": [
                            { "name": "net.ipv4.ip_local_port_range", "value": "1024 65535" }
                        ],
                        "seccompProfile": { "type": "Unconfined" }
                    },
                    "containers": [{
                        "name": "segment",
                        "image": o.image,
                        "command": ["/mcpstorm"],
                        "args": args,
                        "env": [{
                            "name": "JOB_COMPLETION_INDEX",
                            "valueFrom": { "fieldRef": {
                                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                            } }
                        }],
                        "resources": {
                            "requests": { "cpu": o.shards.to_string(), "memory": memory },
                            "limits": { "cpu": o.shards.to_string(), "memory": memory }
                        },
                        "volumeMounts": [{ "name": "results", "mountPath": "/results" }]
                    }],
                    "volumes": [{
                        "name": "results",
                        "persistentVolumeClaim": { "claimName": claim }
                    }]
                }
            }
        }
    })
}

fn merge_job(o: &KubernetesOptions, claim: &str) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": format!("{}-merge", o.name), "labels": labels(&o.name) },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": { "app.kubernetes.io/name": "mcpstorm" } },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "merge",
                        "image": o.image,
                        "command": ["/mcpstorm"],
                        "args": [
                            "merge", "--dir", "/results", "--segments", o.segments.to_string(),
                            "--wait", format!("{}s", o.merge_wait_s),
                            "--json", "/results/merged.json", "--html", "/results/merged.html"
                        ],
                        "resources": {
                            "requests": { "cpu": "100m", "memory": "256Mi" },
                            "limits": { "cpu": "1", "memory": "1Gi" }
                        },
                        "volumeMounts": [{ "name": "results", "mountPath": "/results" }]
                    }],
                    "volumes": [{
                        "name": "results",
                        "persistentVolumeClaim": { "claimName": claim }
                    }]
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> KubernetesOptions {
        KubernetesOptions {
            name: "storm".into(),
            namespace: Some("load".into()),
            image: "mcpstorm:dev".into(),
            segments: 3,
            run_args: vec![
                "https://mcp.example.com/mcp".into(),
                "--connections".into(),
                "300k".into(),
            ],
            connections: 300_000,
            shards: 2,
            start_at_unix_s: 1_796_000_000,
            results_claim: None,
            merge_wait_s: 3600,
        }
    }

    fn docs(text: &str) -> Vec<Value> {
        text.split("---\n")
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn an_indexed_job_of_the_segments_and_a_merge() {
        let docs = docs(&manifests(&options()));
        assert_eq!(
            docs.iter()
                .map(|d| d["kind"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["PersistentVolumeClaim", "Service", "Job", "Job"]
        );
        let clock = &docs[1];
        assert_eq!(clock["spec"]["clusterIP"], "None");
        assert_eq!(
            clock["spec"]["selector"]["batch.kubernetes.io/job-completion-index"],
            "0"
        );
        let job = &docs[2];
        assert_eq!(job["metadata"]["namespace"], "load");
        assert_eq!(job["spec"]["completionMode"], "Indexed");
        assert_eq!(job["spec"]["completions"], 3);
        assert_eq!(job["spec"]["parallelism"], 3);
        let pod = &job["spec"]["template"]["spec"];
        let args: Vec<&str> = pod["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.starts_with("run https://mcp.example.com/mcp --connections 300k"));
        assert!(joined.contains("--segment-from-env JOB_COMPLETION_INDEX --segments 3"));
        assert!(joined.contains("--start-at 1796000000"));
        assert!(joined.contains("--clock-serve 7907 --clock-ref storm-clock:7907"));
        assert!(joined.contains("--json /results/segment-$(JOB_COMPLETION_INDEX).json"));
        assert_eq!(
            pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
                ["topologyKey"],
            "kubernetes.io/hostname"
        );
        assert_eq!(
            pod["securityContext"]["sysctls"][0]["name"],
            "net.ipv4.ip_local_port_range"
        );
        // 100K connections per pod: 100,000 × 5,824 B ≈ 556 MiB of sockets and state, plus the base.
        assert_eq!(
            pod["containers"][0]["resources"]["limits"]["memory"],
            format!("{}Mi", segment_memory_mib(300_000, 3))
        );
        assert_eq!(segment_memory_mib(300_000, 3), 556 + BASE_MEMORY_MIB);
        let merge = &docs[3];
        let merge_args = merge["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
        assert!(merge_args.contains("\"--segments\",\"3\""), "{merge_args}");
        // An existing claim: no claim is created, both jobs mount it.
        let mut own = options();
        own.results_claim = Some("shared-rwx".into());
        let docs = super::tests::docs(&manifests(&own));
        assert_eq!(docs.len(), 3);
        assert!(docs[2].to_string().contains("shared-rwx"));
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(check_name("storm-1").is_ok());
        for bad in ["", "Storm", "-a", "a-", "a_b", &"x".repeat(51)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
