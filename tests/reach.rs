//! `run` reaches the servers users run (the reach issue): host names, `--resolve`, IPv6, a
//! server on another host (a network namespace this test creates, on its own veth addresses),
//! the allowlist that guards it, source addresses of any local interface, and headers with a
//! bearer token checked by a real reverse proxy (nginx) in front of the official Python SDK.
//! Traffic goes only to loopback and the test's own namespace. No assertion on time.

mod common;

use common::{PyServer, Server};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mcpstorm-reach-{}-{name}", std::process::id()))
}

struct Run {
    code: Option<i32>,
    text: String,
    report: Option<Value>,
}

/// `mcpstorm run --phases sustained` (a short load over held sessions) with `args`, every SLA
/// bound off: these tests check reach, so the exit code says whether the run could run (2) or
/// was invalid or interrupted (1).
fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let json = temp_path(&format!("{name}.json"));
    let _ = std::fs::remove_file(&json);
    let child = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .args([
            "run",
            "--phases",
            "sustained",
            "--duration",
            "1s",
            "--quiet",
            "--sla",
            "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off",
        ])
        .args(args)
        .arg("--json")
        .arg(&json)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcpstorm run");
    let output = common::wait_bounded(child, Duration::from_secs(300));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("report is JSON"));
    let _ = std::fs::remove_file(&json);
    Run {
        code: output.status.code(),
        text,
        report,
    }
}

impl Run {
    fn report(&self) -> &Value {
        self.report
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON report: {}", self.text))
    }

    fn established(&self) -> u64 {
        self.report()["sessions"]["established"].as_u64().unwrap()
    }

    fn requests_ok(&self) -> u64 {
        self.report()["counters"]["requests_ok"].as_u64().unwrap()
    }

    /// (address, connections) of every endpoint's addresses.
    fn addresses(&self) -> Vec<(String, u64)> {
        self.report()["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["addresses"].as_array().unwrap().clone())
            .map(|a| {
                (
                    a["address"].as_str().unwrap().to_string(),
                    a["connections"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn clean(&self) -> bool {
        self.report()["errors_by_cause"]
            .as_object()
            .is_some_and(|m| m.is_empty())
    }
}

/// A port free on both 127.0.0.1 and ::1 (so one port serves `localhost` either way).
fn dual_stack_port() -> u16 {
    for _ in 0..50 {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("::1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

#[test]
fn host_names_ipv6_and_resolve_overrides() {
    let port = dual_stack_port();
    let v4 = format!("127.0.0.1:{port}");
    let v6 = format!("[::1]:{port}");
    let server = Server::start_with(&[], &["--listen", &v4, "--listen", &v6], &[]);
    assert_eq!(server.addrs.len(), 2);

    let r = run(
        "v6",
        &[&format!("http://[::1]:{port}/mcp"), "--connections", "40"],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.text);
    assert_eq!(r.established(), 40, "{}", r.text);
    assert!(r.requests_ok() > 0 && r.clean(), "{}", r.text);
    assert_eq!(r.addresses(), [(v6.clone(), 40)]);
    assert!(
        r.text.contains(&format!(
            "endpoint http://[::1]:{port}/mcp → [::1]:{port} (40 connections)"
        )),
        "{}",
        r.text
    );

    // localhost: every address the system resolver gives (127.0.0.1, and ::1 where
    // /etc/hosts has it); the server listens on both.
    let r = run(
        "localhost",
        &[
            &format!("http://localhost:{port}/mcp"),
            "--connections",
            "40",
        ],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.text);
    assert_eq!(r.established(), 40, "{}", r.text);
    let addresses = r.addresses();
    assert!(
        addresses.contains(&(v4.clone(), 40)) || addresses.len() == 2,
        "{addresses:?}"
    );
    assert_eq!(addresses.iter().map(|a| a.1).sum::<u64>(), 40);

    // A name no resolver knows, pinned with --resolve to both families: connections split.
    let name = "mcp.reach-test.invalid";
    let r = run(
        "resolve",
        &[
            &format!("http://{name}:{port}/mcp"),
            "--resolve",
            &format!("{name}:{port}:127.0.0.1,[::1]"),
            "--connections",
            "40",
        ],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.text);
    assert_eq!(r.established(), 40, "{}", r.text);
    assert_eq!(r.addresses(), [(v4, 20), (v6, 20)]);
    assert_eq!(
        r.report()["endpoints"][0]["endpoint"],
        format!("http://{name}:{port}/mcp")
    );
    // Without the override the name does not resolve: exit 2 with the resolver's reason.
    let r = run("unresolved", &[&format!("http://{name}:{port}/mcp")], &[]);
    assert_eq!(r.code, Some(2), "{}", r.text);
    assert!(r.text.contains("cannot resolve"), "{}", r.text);
}

#[test]
fn refusals_before_any_connection() {
    // TEST-NET-3 (RFC 5737): refused at plan time, so nothing is ever sent there.
    let r = run("refused", &["http://203.0.113.7:8080/mcp"], &[]);
    assert_eq!(r.code, Some(2), "{}", r.text);
    assert!(
        r.text.contains("--allow-host 203.0.113.7") && r.text.contains("neither loopback"),
        "{}",
        r.text
    );
    let server = Server::start(&[]);
    let r = run(
        "source",
        &[&server.url(), "--source-ips", "203.0.113.8"],
        &[],
    );
    assert_eq!(r.code, Some(2), "{}", r.text);
    assert!(
        r.text
            .contains("203.0.113.8 is not an address this host can bind"),
        "{}",
        r.text
    );
    for (args, reason) in [
        (vec!["http://127.0.0.1:1/mcp#x"], "fragment"),
        (vec!["ftp://127.0.0.1/"], "scheme"),
        (vec![&server.url(), "-H", "Host: x"], "cannot be overridden"),
        (
            vec![
                &server.url(),
                "--header-env",
                "Authorization=MCPSTORM_UNSET_VAR",
            ],
            "is not set",
        ),
    ] {
        let r = run("bad", &args, &[]);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.text);
        assert!(r.text.contains(reason), "{args:?}: {}", r.text);
    }
}

#[test]
fn a_server_on_another_host_needs_allow_host() {
    let netns = common::Netns::create("reach", 201);
    let listen = format!("{}:18777", netns.there);
    let nsenter = netns.nsenter();
    let server = Server::start_with(&["nsenter", &nsenter], &["--listen", &listen], &[]);
    let url = format!("http://{listen}/mcp");

    let r = run("remote-refused", &[&url, "--connections", "100"], &[]);
    assert_eq!(r.code, Some(2), "{}", r.text);
    assert!(
        r.text
            .contains(&format!("say so with --allow-host {}", netns.there)),
        "{}",
        r.text
    );

    let cidr = format!("{}/24", netns.there);
    let r = run(
        "remote",
        &[&url, "--connections", "100", "--allow-host", &cidr],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.text);
    assert_eq!(r.established(), 100, "{}", r.text);
    assert!(r.requests_ok() > 0 && r.clean(), "{}", r.text);

    // A source address of a real interface (the veth here), not 127/8: bound by the ring.
    let r = run(
        "remote-source",
        &[
            &url,
            "--connections",
            "100",
            "--allow-host",
            &cidr,
            "--source-ips",
            &netns.here,
        ],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.text);
    assert_eq!(r.established(), 100, "{}", r.text);
    assert_eq!(r.report()["counters"]["error_bind"], 0, "{}", r.text);
    drop(server);
}

/// nginx (Debian), run unprivileged in a temp dir, terminating TLS with a certificate signed
/// by the test's own CA, demanding `Authorization: Bearer TOKEN` and proxying to the official
/// Python SDK server.
struct Nginx {
    child: std::process::Child,
    dir: std::path::PathBuf,
    url: String,
    /// The CA that signed nginx's certificate, and one that did not.
    ca_file: std::path::PathBuf,
    other_ca_file: std::path::PathBuf,
}

/// A CA (PEM) and, when `leaf`, a `localhost` certificate and key it signs.
fn make_ca(dir: &std::path::Path, name: &str, leaf: bool) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join(format!("{name}-ca.pem")), ca.pem()).unwrap();
    if leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    }
}

const TOKEN: &str = "Bearer reach-test-secret-7f3a";

impl Nginx {
    fn start(upstream_port: u16) -> Nginx {
        let setup = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/peers/setup-nginx.sh");
        let out = Command::new("bash")
            .arg(setup)
            .output()
            .expect("setup-nginx.sh");
        assert!(
            out.status.success(),
            "setup-nginx.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nginx = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = temp_path(&format!("nginx-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        make_ca(&dir, "nginx", true);
        make_ca(&dir, "other", false);
        let conf = format!(
            r#"daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream sdk {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        location /mcp {{
            if ($http_authorization != "{TOKEN}") {{ return 401; }}
            proxy_pass http://sdk;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1:{upstream_port};
            proxy_buffering off;
        }}
    }}
}}
"#,
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        let nginx = Nginx {
            child,
            url: format!("https://localhost:{port}/mcp"),
            ca_file: dir.join("nginx-ca.pem"),
            other_ca_file: dir.join("other-ca.pem"),
            dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn tls_and_a_bearer_token_through_nginx_to_the_python_sdk() {
    let sdk = PyServer::start(&["--json-response"]);
    let upstream_port: u16 = sdk
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches("/mcp").parse().ok())
        .unwrap();
    let nginx = Nginx::start(upstream_port);
    let ca = nginx.ca_file.to_str().unwrap();
    let load = [
        nginx.url.as_str(),
        "--cacert",
        ca,
        "--connections",
        "20",
        "--rate",
        "50",
        "--shards",
        "1",
    ];

    // With the token from the environment: clean, and the secret is nowhere in the output.
    let mut args = load.to_vec();
    args.extend([
        "--header-env",
        "Authorization=MCPSTORM_REACH_TOKEN",
        "-H",
        "X-Load: mcpstorm",
    ]);
    let r = run("bearer", &args, &[("MCPSTORM_REACH_TOKEN", TOKEN)]);
    assert_eq!(r.code, Some(0), "{}", r.text);
    assert_eq!(r.established(), 20, "{}", r.text);
    assert!(r.requests_ok() > 0 && r.clean(), "{}", r.text);
    let json = serde_json::to_string(r.report()).unwrap();
    for shown in [&r.text, &json] {
        assert!(
            !shown.contains("reach-test-secret"),
            "secret leaked: {shown}"
        );
    }
    assert!(
        r.text
            .contains("header Authorization: <redacted: $MCPSTORM_REACH_TOKEN>")
            && r.text.contains("header X-Load: mcpstorm")
            && r.text.contains("TLS: verified against --cacert"),
        "{}",
        r.text
    );
    // One handshake per connection (20) at least; in each phase, every handshake counted is
    // in its histogram, and every handshake of the run is in a phase (the skipped baseline's
    // first sessions count with the ramp).
    let counters = &r.report()["counters"];
    let handshakes = counters["tls_handshakes_full"].as_u64().unwrap()
        + counters["tls_handshakes_resumed"].as_u64().unwrap();
    assert!(handshakes >= 20, "{}", r.text);
    let mut in_phases = 0;
    for p in r.report()["phases"].as_array().unwrap() {
        let counted = p["tls_handshakes_full"].as_u64().unwrap()
            + p["tls_handshakes_resumed"].as_u64().unwrap();
        assert_eq!(
            p["tls_handshake_us"]["count"].as_u64().unwrap(),
            counted,
            "{}",
            r.text
        );
        in_phases += counted;
    }
    assert_eq!(in_phases, handshakes, "{}", r.text);

    // No header: 401 is its own cause, and the message names the flag that sends one.
    let r = run("no-bearer", &load, &[]);
    assert_eq!(r.code, Some(2), "{}", r.text);
    assert!(
        r.report()["errors_by_cause"]["http_401"].as_u64().unwrap() > 0,
        "{}",
        r.text
    );
    assert!(
        r.text.contains("--header-env 'Authorization=VAR'"),
        "{}",
        r.text
    );

    // The wrong token: 401 again, the message names the header sent, never its value.
    let mut args = load.to_vec();
    args.extend(["--header-env", "Authorization=MCPSTORM_REACH_TOKEN"]);
    let r = run(
        "wrong-bearer",
        &args,
        &[("MCPSTORM_REACH_TOKEN", "Bearer wrong-value-x")],
    );
    assert_eq!(r.code, Some(2), "{}", r.text);
    assert!(
        r.text.contains("to the headers sent (Authorization)") && !r.text.contains("wrong-value-x"),
        "{}",
        r.text
    );

    // A CA that did not sign nginx's certificate: a certificate cause, and the fix named.
    let mut args = load.to_vec();
    args[2] = nginx.other_ca_file.to_str().unwrap();
    let r = run("wrong-ca", &args, &[]);
    assert_eq!(r.code, Some(2), "{}", r.text);
    assert!(
        r.report()["errors_by_cause"]["tls_certificate"]
            .as_u64()
            .unwrap()
            > 0,
        "{}",
        r.text
    );
    assert!(
        r.text.contains("give its CA with --cacert FILE"),
        "{}",
        r.text
    );

    // --insecure: clean, and the report says the certificate was not verified.
    let args = [
        nginx.url.as_str(),
        "--insecure",
        "--connections",
        "5",
        "--rate",
        "20",
        "--shards",
        "1",
        "--header-env",
        "Authorization=MCPSTORM_REACH_TOKEN",
    ];
    let r = run("insecure", &args, &[("MCPSTORM_REACH_TOKEN", TOKEN)]);
    assert_eq!(r.code, Some(0), "{}", r.text);
    assert!(r.requests_ok() > 0 && r.clean(), "{}", r.text);
    assert!(
        r.report()["tls"].as_str().unwrap().contains("NOT verified"),
        "{}",
        r.text
    );
    drop(nginx);
    drop(sdk);
}

/// `run --tls` with no URL: the embedded server speaks TLS with a throwaway certificate the
/// run trusts; every session goes through a TLS handshake, full or resumed.
#[test]
fn embedded_server_over_tls() {
    let r = run(
        "embedded-tls",
        &["--tls", "--connections", "300", "--rate", "2000"],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.text);
    assert_eq!(r.established(), 300, "{}", r.text);
    assert!(r.requests_ok() > 0 && r.clean(), "{}", r.text);
    let counters = &r.report()["counters"];
    let handshakes = counters["tls_handshakes_full"].as_u64().unwrap()
        + counters["tls_handshakes_resumed"].as_u64().unwrap();
    assert!(handshakes >= 300, "{}", r.text);
    assert!(
        r.report()["tls"]
            .as_str()
            .unwrap()
            .contains("throwaway CA (--tls)"),
        "{}",
        r.text
    );
    // A URL with --tls is refused: --tls is for the embedded server.
    let r = run("tls-url", &["--tls", "https://127.0.0.1:1/mcp"], &[]);
    assert_eq!(r.code, Some(2), "{}", r.text);
    assert!(r.text.contains("write it https://"), "{}", r.text);
}

/// After a fault that drops connections, their reconnects resume TLS sessions from tickets:
/// a reconnect storm is not a full-handshake storm (the ticket store keeps one per connection).
#[test]
fn reconnects_after_a_fault_resume_tls_sessions() {
    let r = run(
        "tls-fault",
        &[
            "--tls",
            "--connections",
            "300",
            "--phases",
            "all",
            "--fault",
            "drop:50%",
            "--skip",
            "performance",
            "--baseline",
            "1s",
            "--sustain",
            "2s",
            "--rate",
            "1000",
            "--recovery-timeout",
            "20s",
        ],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.text);
    let recovery = r.report()["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "failure_recovery")
        .unwrap();
    let resumed = recovery["tls_handshakes_resumed"].as_u64().unwrap();
    let full = recovery["tls_handshakes_full"].as_u64().unwrap();
    // 150 connections dropped; each reconnect is one handshake, resumed from its ticket.
    assert!(
        resumed >= 150 && full == 0,
        "resumed {resumed}, full {full}: {}",
        r.text
    );
}

/// https:// against a server that speaks plain HTTP: the answer to the ClientHello is not TLS,
/// counted as `tls_protocol`, and the run says what to check (exit 2).
#[test]
fn https_against_a_plaintext_server_is_a_tls_protocol_error() {
    let server = Server::start(&[]);
    let url = format!("https://{}/mcp", server.addr);
    let r = run(
        "tls-vs-plain",
        &[&url, "--insecure", "--connections", "5"],
        &[],
    );
    assert_eq!(r.code, Some(2), "{}", r.text);
    assert!(
        r.report()["errors_by_cause"]["tls_protocol"]
            .as_u64()
            .unwrap()
            > 0,
        "{}",
        r.text
    );
    assert!(r.text.contains("does the server speak TLS"), "{}", r.text);
}
