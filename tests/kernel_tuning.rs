//! `kernel-tuning/apply.sh` and `revert.sh`, driven for real.
//!
//! 1. `apply.sh --dry-run --connections 100000` on this host: every key is named with the value
//!    the formulas give (recomputed here independently), and nothing is written.
//! 2. A real apply/revert inside a throwaway network namespace (net.* sysctls are per
//!    namespace, so the host's network settings are never touched): values change, a second
//!    apply changes nothing, revert restores the namespace, the lo alias, the persisted file and
//!    every global key (fs.*, kernel.*, vm.*) to their values from before the test.
//! 3. The same with N large enough that the global fs.* limits are raised (host-wide, for the
//!    second the test takes) and revert must lower them back.
//!
//! Needs root and `ip netns` (CI runs as root): without them the tests FAIL, saying so.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

/// Tests that read or change host-wide sysctls run one at a time.
static HOST_SYSCTLS: Mutex<()> = Mutex::new(());

fn host_lock() -> MutexGuard<'static, ()> {
    HOST_SYSCTLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The formulas' inputs, as apply.sh states them.
const CONNECT_RATE: u64 = 60_000;
const KERNEL_BYTES_PER_SOCKET: u64 = 3_900;
const PAGE_BYTES: u64 = 4_096;
const WIDEST_PORT_RANGE: u64 = 65_535 - 1_024 + 1;

/// Every key apply.sh plans for.
const KEYS: [&str; 15] = [
    "fs.file-max",
    "fs.nr_open",
    "net.ipv4.ip_local_port_range",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.core.netdev_max_backlog",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_fin_timeout",
    "net.netfilter.nf_conntrack_max",
    "kernel.io_uring_disabled",
];

/// Keys that are the same for every network namespace (global net.* keys are absent or
/// read-only inside a child namespace; fs.*, kernel.*, vm.* are visible and writable there).
const GLOBAL_KEYS: [&str; 8] = [
    "fs.file-max",
    "fs.nr_open",
    "kernel.io_uring_disabled",
    "vm.max_map_count",
    "net.core.netdev_max_backlog",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_max_orphans",
    "net.netfilter.nf_conntrack_max",
];

/// Keys a child network namespace has its own copy of.
const NETNS_KEYS: [&str; 8] = [
    "net.ipv4.ip_local_port_range",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_fin_timeout",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    AtLeast,
    AtMost,
    Exactly,
    /// The first of three at most the need; the other two untouched.
    MinAtMost,
    /// A port range holding at least `ports` ports, widened towards the need.
    Range {
        ports: u64,
    },
}

/// What N needs, recomputed from the formulas (S = 2N: client and server on one host; one
/// source address).
fn expected_needs(n: u64) -> HashMap<&'static str, (Rule, Vec<u64>)> {
    let s = 2 * n;
    let ports = n; // ceil(N / K) with K = 1
    let port_low = if ports > WIDEST_PORT_RANGE {
        1_024
    } else {
        let low = 65_536 - ports;
        low - low % 2
    };
    let backlog = n.min(CONNECT_RATE).next_power_of_two();
    let pressure = s * KERNEL_BYTES_PER_SOCKET.div_ceil(PAGE_BYTES);
    HashMap::from([
        ("fs.file-max", (Rule::AtLeast, vec![s + s / 4])),
        (
            "fs.nr_open",
            (Rule::AtLeast, vec![(s + 1_024).next_power_of_two()]),
        ),
        (
            "net.ipv4.ip_local_port_range",
            (Rule::Range { ports }, vec![port_low, 65_535]),
        ),
        ("net.core.somaxconn", (Rule::AtLeast, vec![backlog])),
        (
            "net.ipv4.tcp_max_syn_backlog",
            (Rule::AtLeast, vec![backlog]),
        ),
        (
            "net.core.netdev_max_backlog",
            (
                Rule::AtLeast,
                vec![(3 * n).min(3 * CONNECT_RATE / 10).next_power_of_two()],
            ),
        ),
        (
            "net.ipv4.tcp_mem",
            (
                Rule::AtLeast,
                vec![pressure * 3 / 4, pressure, pressure * 3 / 2],
            ),
        ),
        ("net.ipv4.tcp_rmem", (Rule::MinAtMost, vec![4_096])),
        ("net.ipv4.tcp_wmem", (Rule::MinAtMost, vec![4_096])),
        ("net.ipv4.tcp_tw_reuse", (Rule::Exactly, vec![1])),
        ("net.ipv4.tcp_max_tw_buckets", (Rule::AtLeast, vec![s])),
        ("net.ipv4.tcp_max_orphans", (Rule::AtLeast, vec![s])),
        ("net.ipv4.tcp_fin_timeout", (Rule::AtMost, vec![15])),
        (
            "net.netfilter.nf_conntrack_max",
            (Rule::AtLeast, vec![2 * n]),
        ),
        ("kernel.io_uring_disabled", (Rule::Exactly, vec![0])),
    ])
}

/// What apply.sh must leave: never lower a limit already higher than the need.
fn target(rule: Rule, cur: &[u64], need: &[u64]) -> Vec<u64> {
    match rule {
        Rule::AtLeast => cur.iter().zip(need).map(|(c, n)| *c.max(n)).collect(),
        Rule::AtMost => vec![cur[0].min(need[0])],
        Rule::Exactly => need.to_vec(),
        Rule::MinAtMost => vec![cur[0].min(need[0]), cur[1], cur[2]],
        Rule::Range { ports } => {
            if cur[1] + 1 - cur[0] >= ports || (cur[0] <= need[0] && cur[1] >= need[1]) {
                cur.to_vec()
            } else {
                vec![cur[0].min(need[0]), cur[1].max(need[1])]
            }
        }
    }
}

fn numbers(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .map(|t| {
            t.parse()
                .unwrap_or_else(|_| panic!("{t:?} in {text:?} is not a number"))
        })
        .collect()
}

/// One `change|ok|skip KEY: …` line of apply.sh's plan.
#[derive(Debug)]
struct PlanLine {
    action: String,
    current: String,
    new: Option<String>,
    /// The needed values (for a range, the range after "N ports:").
    need: Vec<u64>,
    rest: String,
}

fn parse_plan(stdout: &str) -> HashMap<String, PlanLine> {
    let mut plan = HashMap::new();
    for line in stdout.lines() {
        let Some((action, rest)) = line.split_once(' ') else {
            continue;
        };
        if !matches!(action, "change" | "ok" | "skip") {
            continue;
        }
        let Some((key, rest)) = rest.trim_start().split_once(": ") else {
            continue;
        };
        if key.contains(' ') {
            continue; // "change alias 10.0.0.1/32 on lo: …"
        }
        let parsed = if action == "skip" {
            PlanLine {
                action: action.into(),
                current: String::new(),
                new: None,
                need: Vec::new(),
                rest: rest.into(),
            }
        } else {
            let (values, need) = rest
                .rsplit_once(" (need ")
                .unwrap_or_else(|| panic!("no \"(need …)\" in plan line {line:?}"));
            let need = need.strip_suffix(')').expect("need ends with )");
            let need = need.rsplit(':').next().unwrap();
            let need = need.trim_start_matches(|c: char| !c.is_ascii_digit());
            let (current, new) = match values.split_once(" → ") {
                Some((current, new)) => (current.to_string(), Some(new.to_string())),
                None => (values.to_string(), None),
            };
            PlanLine {
                action: action.into(),
                current,
                new,
                need: numbers(need),
                rest: rest.into(),
            }
        };
        assert!(
            plan.insert(key.to_string(), parsed).is_none(),
            "{key} planned twice:\n{stdout}"
        );
    }
    plan
}

/// Where sysctls are read: the host, or a network namespace.
#[derive(Clone, Copy)]
enum Place<'a> {
    Host,
    Netns(&'a str),
}

fn proc_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn in_place(place: Place, program: &str) -> Command {
    match place {
        Place::Host => Command::new(program),
        Place::Netns(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, program]);
            cmd
        }
    }
}

/// The key's value, `None` when the key is absent there.
fn read_key(place: Place, key: &str) -> Option<String> {
    match place {
        Place::Host => fs::read_to_string(proc_path(key))
            .ok()
            .map(|v| normalize(&v)),
        Place::Netns(_) => {
            let out = in_place(place, "sysctl")
                .args(["-n", key])
                .output()
                .unwrap();
            out.status
                .success()
                .then(|| normalize(&String::from_utf8_lossy(&out.stdout)))
        }
    }
}

fn writable(place: Place, key: &str) -> bool {
    in_place(place, "test")
        .args(["-w", &proc_path(key)])
        .status()
        .unwrap()
        .success()
}

fn snapshot(place: Place, keys: &[&str]) -> HashMap<String, Option<String>> {
    keys.iter()
        .map(|k| (k.to_string(), read_key(place, k)))
        .collect()
}

/// Checks each key's plan line against the formulas and the values `before` the run.
fn check_plan(
    plan: &HashMap<String, PlanLine>,
    n: u64,
    place: Place,
    before: &HashMap<String, Option<String>>,
) {
    let needs = expected_needs(n);
    for key in KEYS {
        let line = plan
            .get(key)
            .unwrap_or_else(|| panic!("the plan does not name {key}: {plan:#?}"));
        let Some(current) = &before[key] else {
            assert_eq!(line.action, "skip", "{key} is absent here: {line:?}");
            continue;
        };
        if !writable(place, key) {
            assert_eq!(line.action, "skip", "{key} is read-only here: {line:?}");
            assert!(line.rest.contains("read-only"), "{line:?}");
            continue;
        }
        let (rule, need) = &needs[key];
        assert_eq!(&line.need, need, "{key}: need for N = {n}: {line:?}");
        assert_eq!(&line.current, current, "{key}: current value: {line:?}");
        let want = target(*rule, &numbers(current), need)
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        if &want == current {
            assert_eq!(line.action, "ok", "{key} already fits: {line:?}");
            assert_eq!(line.new, None);
        } else {
            assert_eq!(line.action, "change", "{key} must change: {line:?}");
            assert_eq!(line.new.as_deref(), Some(want.as_str()), "{key}: {line:?}");
        }
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("kernel-tuning")
        .join(name)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "mcpstorm-kernel-tuning-{tag}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A network namespace, deleted on drop (also when the test fails).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("mcpstorm-tune-test-{}-{tag}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        match out {
            Ok(out) if out.status.success() => Netns(name),
            Ok(out) => panic!(
                "`ip netns add {name}` failed ({}): the kernel-tuning tests need network namespaces (root, CONFIG_NET_NS); stderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!(
                "cannot run `ip` ({e}): the kernel-tuning tests need iproute2 (apt-get install iproute2)"
            ),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the kernel-tuning tests must run as root (euid is {euid}): they apply sysctls inside a network namespace and restore them; CI runs as root"
    );
}

fn run(cmd: &mut Command) -> (Output, String) {
    let out = cmd.output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn script_cmd(place: Place, name: &str, sysctl_d: &Path) -> Command {
    let mut cmd = in_place(place, "bash");
    cmd.arg(script(name)).env("MCPSTORM_SYSCTL_D", sysctl_d);
    cmd
}

fn lo_addresses(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "-4", "addr", "show", "dev", "lo"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dry_run_plan_follows_the_formulas_and_writes_nothing() {
    require_root();
    let _host = host_lock();
    let dir = TempDir::new("dry");
    let state = dir.0.join("state");
    let sysctl_d = dir.0.join("sysctl.d");
    let mut keys = KEYS.to_vec();
    keys.extend(GLOBAL_KEYS);
    let before = snapshot(Place::Host, &keys);

    let args = [
        "--dry-run",
        "--connections",
        "100000",
        "--state-file",
        state.to_str().unwrap(),
        "--persist",
        "--alias",
        "10.255.77.2",
    ];
    let (out, stdout) = run(script_cmd(Place::Host, "apply.sh", &sysctl_d).args(args));
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout.contains("dry run"), "{stdout}");
    assert!(
        stdout.contains(state.to_str().unwrap()),
        "the plan names the state file: {stdout}"
    );
    let plan = parse_plan(&stdout);
    check_plan(&plan, 100_000, Place::Host, &before);
    // 100,000 connections through one source address exceed the widest port range.
    assert_eq!(
        plan["net.ipv4.ip_local_port_range"].need,
        vec![1_024, 65_535]
    );
    assert!(stdout.contains("need 2 source addresses"), "{stdout}");
    assert!(
        stdout.contains("change alias 10.255.77.2/32 on lo"),
        "{stdout}"
    );

    assert!(!state.exists(), "a dry run created the state file");
    assert!(!sysctl_d.exists(), "a dry run wrote the persist directory");
    assert_eq!(
        snapshot(Place::Host, &keys),
        before,
        "a dry run changed sysctls"
    );
    let lo = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "lo"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&lo.stdout).contains("10.255.77.2"),
        "a dry run added an alias"
    );

    // Without root: the dry run reads and plans the same; a real run refuses, saying why.
    // (The script goes in on stdin: an unprivileged user may not be able to read the tree.)
    let as_nobody = |args: &[&str]| {
        let mut child = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "bash",
                "-s",
                "--",
            ])
            .args(args)
            .env("TMPDIR", &dir.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("setpriv (util-linux) runs the script as nobody");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&fs::read(script("apply.sh")).unwrap())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = as_nobody(&["--dry-run", "--connections", "100000"]);
    assert!(out.status.success(), "{}", show(&out));
    let nobody_plan = parse_plan(&String::from_utf8_lossy(&out.stdout));
    for key in KEYS {
        if plan[key].action != "skip" {
            assert_eq!(nobody_plan[key].need, plan[key].need, "{key}");
        }
    }
    let out = as_nobody(&["--connections", "100000"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must run as root"),
        "{}",
        show(&out)
    );
    assert_eq!(snapshot(Place::Host, &keys), before);

    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "bash",
            "-s",
            "--",
        ])
        .arg("/nonexistent")
        .stdin(fs::File::open(script("revert.sh")).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must run as root"),
        "revert.sh refuses without root too: {}",
        show(&out)
    );
}

#[test]
fn apply_then_revert_inside_a_network_namespace() {
    require_root();
    let _host = host_lock();
    let globals_before = snapshot(Place::Host, &GLOBAL_KEYS);
    let netns = Netns::new("a");
    let ns = Place::Netns(&netns.0);
    let dir = TempDir::new("netns");
    let state = dir.0.join("state");
    let sysctl_d = dir.0.join("sysctl.d");
    fs::create_dir_all(&sysctl_d).unwrap();
    let persist = sysctl_d.join("90-mcpstorm.conf");
    fs::write(&persist, "# a file that was there before\n").unwrap();
    let mut keys = KEYS.to_vec();
    keys.extend(GLOBAL_KEYS);
    let before = snapshot(ns, &keys);
    let netns_before = snapshot(ns, &NETNS_KEYS);

    let apply_args = [
        "--connections",
        "200000",
        "--state-file",
        state.to_str().unwrap(),
        "--alias",
        "10.255.77.1",
        "--persist",
    ];
    let (out, stdout) = run(script_cmd(ns, "apply.sh", &sysctl_d).args(apply_args));
    assert!(out.status.success(), "{}", show(&out));
    let plan = parse_plan(&stdout);
    check_plan(&plan, 200_000, ns, &before);
    assert!(
        stdout.contains(&format!("state file: {}", state.display())),
        "{stdout}"
    );

    // Per-namespace keys changed inside the namespace, to what the plan said.
    let value = |key: &str| read_key(ns, key).unwrap();
    assert_eq!(value("net.ipv4.ip_local_port_range"), "1024 65535");
    assert_eq!(value("net.core.somaxconn"), "65536");
    assert_eq!(value("net.ipv4.tcp_max_syn_backlog"), "65536");
    assert_eq!(value("net.ipv4.tcp_tw_reuse"), "1");
    assert!(numbers(&value("net.ipv4.tcp_max_tw_buckets"))[0] >= 400_000);
    assert!(numbers(&value("net.ipv4.tcp_fin_timeout"))[0] <= 15);
    for (key, line) in &plan {
        if let Some(new) = &line.new {
            assert_eq!(&read_key(ns, key).unwrap(), new, "{key} after apply");
        }
    }
    // Global net.* keys are not visible in a child namespace: named and skipped.
    for key in [
        "net.core.netdev_max_backlog",
        "net.ipv4.tcp_mem",
        "net.ipv4.tcp_max_orphans",
    ] {
        assert_eq!(plan[key].action, "skip", "{key}");
        assert!(
            plan[key].rest.contains("network namespace"),
            "{key}: {:?}",
            plan[key]
        );
    }
    if before["net.netfilter.nf_conntrack_max"].is_some() {
        // nf_conntrack loaded: its limit is global and read-only in a child namespace.
        let ct = &plan["net.netfilter.nf_conntrack_max"];
        assert_eq!(ct.action, "skip", "{ct:?}");
        assert!(
            ct.rest.contains("read-only in this network namespace"),
            "{ct:?}"
        );
    }
    assert!(
        lo_addresses(&netns.0).contains("inet 10.255.77.1/32"),
        "alias on the namespace's lo"
    );
    let persisted = fs::read_to_string(&persist).unwrap();
    assert!(
        persisted.contains("net.core.somaxconn = 65536"),
        "{persisted}"
    );
    let saved = fs::read_to_string(&state).unwrap();
    assert!(
        saved.contains(&format!(
            "sysctl\tnet.core.somaxconn\t{}\n",
            netns_before["net.core.somaxconn"].as_ref().unwrap()
        )),
        "{saved}"
    );
    assert!(saved.contains("alias\t10.255.77.1/32\tlo\n"), "{saved}");

    // A second run is idempotent: nothing to change, the saved values are kept as they were.
    let after_first = snapshot(ns, &keys);
    let (out, stdout) = run(script_cmd(ns, "apply.sh", &sysctl_d).args(apply_args));
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !stdout.lines().any(|l| l.starts_with("change ")),
        "second apply changed something:\n{stdout}"
    );
    assert_eq!(snapshot(ns, &keys), after_first);
    assert_eq!(fs::read_to_string(&state).unwrap(), saved);

    // Revert restores the namespace, the lo alias, the earlier persist file and every global.
    let (out, stdout) = run(script_cmd(ns, "revert.sh", &sysctl_d).arg(&state));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(snapshot(ns, &NETNS_KEYS), netns_before, "{stdout}");
    assert!(!lo_addresses(&netns.0).contains("10.255.77.1"));
    assert_eq!(
        fs::read_to_string(&persist).unwrap(),
        "# a file that was there before\n"
    );
    assert_eq!(snapshot(Place::Host, &GLOBAL_KEYS), globals_before);
    assert!(fs::read_to_string(&state).unwrap().contains("\nreverted\t"));

    // Revert is idempotent too.
    let (out, stdout) = run(script_cmd(ns, "revert.sh", &sysctl_d).arg(&state));
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout.contains("already reverted"), "{stdout}");
    assert_eq!(snapshot(ns, &NETNS_KEYS), netns_before);
}

#[test]
fn revert_lowers_raised_global_limits_back() {
    require_root();
    let _host = host_lock();
    let globals_before = snapshot(Place::Host, &GLOBAL_KEYS);
    let nr_open = numbers(globals_before["fs.nr_open"].as_ref().unwrap())[0];
    // Large enough that fs.nr_open (next_pow2(2N + 1024) > nr_open) must rise.
    let n = nr_open.max(1_000_000);
    let netns = Netns::new("g");
    let ns = Place::Netns(&netns.0);
    let dir = TempDir::new("global");
    let state = dir.0.join("state");
    let sysctl_d = dir.0.join("sysctl.d");
    let mut keys = KEYS.to_vec();
    keys.extend(GLOBAL_KEYS);
    let before = snapshot(ns, &keys);

    let (out, stdout) = run(script_cmd(ns, "apply.sh", &sysctl_d).args([
        "--connections",
        &n.to_string(),
        "--state-file",
        state.to_str().unwrap(),
    ]));
    let raised = read_key(Place::Host, "fs.nr_open");
    // Revert before asserting, so a failed assertion still leaves the host as it was.
    let (revert, revert_stdout) = run(script_cmd(ns, "revert.sh", &sysctl_d).arg(&state));
    assert!(out.status.success(), "{}", show(&out));
    assert!(revert.status.success(), "{}", show(&revert));
    let plan = parse_plan(&stdout);
    check_plan(&plan, n, ns, &before);
    let need = (2 * n + 1_024).next_power_of_two();
    assert_eq!(plan["fs.nr_open"].action, "change", "{stdout}");
    assert_eq!(
        raised.as_deref(),
        Some(need.to_string().as_str()),
        "fs.nr_open is global: apply in a namespace raised it on the host"
    );
    assert!(
        revert_stdout.contains(&format!("restore fs.nr_open: {need} → {nr_open}")),
        "{revert_stdout}"
    );
    assert_eq!(snapshot(Place::Host, &GLOBAL_KEYS), globals_before);
}

#[test]
fn sysctl_conf_matches_the_formulas_at_one_million() {
    let text = fs::read_to_string(script("mcpstorm.sysctl.conf")).unwrap();
    let mut conf = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').expect("key = value");
        let key = key.trim().trim_start_matches('-');
        assert!(
            conf.insert(key.to_string(), numbers(value)).is_none(),
            "{key} twice"
        );
    }
    for (key, (rule, need)) in expected_needs(1_000_000) {
        let value = conf
            .get(key)
            .unwrap_or_else(|| panic!("mcpstorm.sysctl.conf has no {key}"));
        match rule {
            Rule::MinAtMost => assert_eq!(value[0], need[0], "{key}"),
            _ => assert_eq!(value, &need, "{key}: the conf is apply.sh's plan at N = 1M"),
        }
    }
    assert_eq!(conf.len(), KEYS.len(), "only the planned keys: {conf:?}");
}

/// The README's line runs the scripts directly (`sudo kernel-tuning/apply.sh …`): they must be
/// executable as committed, not only through `bash script`.
#[test]
fn readme_line_runs_the_scripts_directly() {
    for name in ["apply.sh", "revert.sh"] {
        let path = script(name);
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions());
        assert_ne!(mode & 0o111, 0, "{name} is not executable");
    }
    let out = Command::new(script("apply.sh"))
        .args(["--connections", "1000000", "--dry-run"])
        .output()
        .expect("kernel-tuning/apply.sh runs as the README says");
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("dry run: nothing will be written"));
}
