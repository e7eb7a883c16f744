//! Test support: start `mcpstorm serve` as a child process on a free loopback port, and a tiny
//! blocking HTTP/1.1 client written independently of `src/proto` (so the server is checked by
//! code that does not share its parser's assumptions).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The count at JSON pointer `pointer` of a report (or any JSON), or a panic naming it.
pub fn count(value: &serde_json::Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing or not a count in {value}"))
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every address it listens on (`addr` is the first).
    pub addrs: Vec<SocketAddr>,
    ready_file: PathBuf,
}

impl Server {
    /// Starts `mcpstorm serve --listen 127.0.0.1:0 <extra…>` and waits until it listens.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(&[], &["--listen", "127.0.0.1:0"], extra)
    }

    /// Starts `[prefix…] mcpstorm serve <listen…> <extra…>` (a prefix such as `nsenter
    /// --net=…` runs it in another network namespace) and waits until it listens.
    pub fn start_with(prefix: &[&str], listen: &[&str], extra: &[&str]) -> Server {
        let ready_file = std::env::temp_dir().join(format!(
            "mcpstorm-ready-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&ready_file);
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_mcpstorm"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_mcpstorm")),
        };
        let child = command
            .arg("serve")
            .args(listen)
            .arg("--ready-file")
            .arg(&ready_file)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mcpstorm serve");
        // Owned by `Server` at once, so its Drop reaps the child on every path.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            addrs: Vec::new(),
            ready_file,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&server.ready_file)
                && text.ends_with('\n')
            {
                server.addrs = text
                    .lines()
                    .map(|line| line.parse().expect("ready file holds addresses"))
                    .collect();
                server.addr = server.addrs[0];
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "mcpstorm serve did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The server's counters from its stats endpoint.
    pub fn stats(&self) -> serde_json::Value {
        let mut client = self.connect();
        let response = client.request("GET", "/mcpstorm/stats", &[], b"");
        assert_eq!(response.status, 200);
        serde_json::from_slice(&response.body).expect("stats JSON")
    }

    /// SIGINT, wait for exit, return stdout (which ends with the summary line).
    pub fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "serve exited with {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop within 15 s of SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.ready_file);
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The JSON-RPC message of an SSE body (`data:` lines of the first event).
    pub fn sse_json(&self) -> serde_json::Value {
        let text = String::from_utf8(self.body.clone()).expect("utf-8 SSE");
        let data: Vec<&str> = text
            .split("\n\n")
            .next()
            .unwrap()
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        serde_json::from_str(&data.join("\n")).expect("SSE data is JSON")
    }
}

pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub host: String,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            reader: BufReader::new(stream),
            host: addr.to_string(),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    pub fn encode(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let bytes = self.encode(method, path, headers, body);
        self.stream().write_all(&bytes).expect("write request");
        self.read_response()
    }

    /// POST a JSON-RPC message to /mcp with the headers a real MCP client sends.
    pub fn rpc(&mut self, session: Option<&str>, body: &str) -> Response {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        if let Some(session) = session {
            headers.push(("Mcp-Session-Id", session));
        }
        self.request("POST", "/mcp", &headers, body.as_bytes())
    }

    /// initialize + notifications/initialized; returns the session id.
    pub fn initialize(&mut self) -> String {
        let response = self.rpc(
            None,
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#,
        );
        assert_eq!(
            response.status,
            200,
            "initialize: {:?}",
            String::from_utf8_lossy(&response.body)
        );
        let session = response
            .header("mcp-session-id")
            .expect("session header")
            .to_string();
        let ack = self.rpc(
            Some(&session),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!(ack.status, 202);
        session
    }

    pub fn read_response(&mut self) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        assert!(line.starts_with("HTTP/1.1 "), "bad status line {line:?}");
        let status: u16 = line[9..12].parse().expect("status code");
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header line");
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header has a colon");
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().expect("content-length");
            response.body.resize(length, 0);
            self.reader.read_exact(&mut response.body).expect("body");
        } else if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size_line = String::new();
                self.reader.read_line(&mut size_line).expect("chunk size");
                let size = usize::from_str_radix(size_line.trim(), 16).expect("hex chunk size");
                let mut chunk = vec![0u8; size + 2];
                self.reader.read_exact(&mut chunk).expect("chunk");
                assert_eq!(&chunk[size..], b"\r\n");
                if size == 0 {
                    break;
                }
                response.body.extend_from_slice(&chunk[..size]);
            }
        }
        response
    }

    /// True when the server has closed the connection (read returns 0).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

/// The pinned MCP Python SDK venv's python: `MCPSTORM_PEER_PYTHON` if set (the test command
/// sets it), else whatever tools/peers/setup-python.sh installs (idempotent).
pub fn peer_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Ok(path) = std::env::var("MCPSTORM_PEER_PYTHON") {
                return PathBuf::from(path);
            }
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/peers/setup-python.sh");
            let output = Command::new("bash")
                .arg(script)
                .output()
                .expect("run setup-python.sh");
            assert!(
                output.status.success(),
                "tools/peers/setup-python.sh failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let stdout = String::from_utf8(output.stdout).expect("utf-8 path");
            PathBuf::from(
                stdout
                    .lines()
                    .last()
                    .expect("setup-python.sh prints the python path")
                    .trim(),
            )
        })
        .clone()
}

/// Waits for `child` and collects its output; a child still running after `guard` is killed
/// and the test fails (a hang guard, generous on purpose: it asserts no run time).
pub fn wait_bounded(mut child: Child, guard: Duration) -> std::process::Output {
    let deadline = Instant::now() + guard;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("collect output"),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("collect output");
                panic!(
                    "still running after {guard:?}: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}

/// The official MCP Python SDK server (tests/peers/py_server.py) on a free loopback port.
pub struct PyServer {
    pub child: Child,
    pub url: String,
}

impl PyServer {
    pub fn start(extra: &[&str]) -> PyServer {
        Self::start_command(Command::new(peer_python()), extra)
    }

    /// Pinned to CPU `cpu` (`taskset`), so it never shares a CPU with a generator shard pinned
    /// to another: the run then judges the server, not the two fighting over one CPU.
    pub fn start_on_cpu(cpu: usize, extra: &[&str]) -> PyServer {
        let mut command = Command::new("taskset");
        command.args(["-c", &cpu.to_string()]).arg(peer_python());
        Self::start_command(command, extra)
    }

    fn start_command(mut command: Command, extra: &[&str]) -> PyServer {
        command.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/py_server.py"
        ));
        let (child, url) = start_peer(command, "py_server", extra);
        PyServer { child, url }
    }
}

/// Starts a peer server script (`command`: its interpreter and script) on a free loopback
/// port with `extra` options, and waits until it prints `NAME: listening`; its child and URL
/// (`/sse` when `extra` asks for the legacy transport, else `/mcp`).
fn start_peer(mut command: Command, name: &str, extra: &[&str]) -> (Child, String) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = command
        .args(["--port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let ready = format!("{name}: listening");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(&ready) {
                let _ = sender.send(());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.recv_timeout(Duration::from_millis(100)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{name} did not start");
    }
    let path = if extra.contains(&"--sse") {
        "/sse"
    } else {
        "/mcp"
    };
    (child, format!("http://127.0.0.1:{port}{path}"))
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `mcpstorm run … --json FILE` left: its report, its output (stdout and stderr) and
/// its exit code.
pub struct RunOutput {
    pub report: serde_json::Value,
    pub output: String,
    pub code: Option<i32>,
    /// The run's pid (the names of what it installs carry it).
    pub pid: u32,
}

/// Runs `mcpstorm run <args…> --json FILE` and reads the report (panics, with the output,
/// when there is none).
pub fn run_mcpstorm(args: &[&str]) -> RunOutput {
    let json = std::env::temp_dir().join(format!(
        "mcpstorm-run-{}-{}.json",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&json);
    let out = Command::new(env!("CARGO_BIN_EXE_mcpstorm"))
        .arg("run")
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcpstorm run");
    let pid = out.id();
    let out = out.wait_with_output().expect("wait for mcpstorm run");
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no JSON report ({e}), exit {}: {output}", out.status));
    let _ = std::fs::remove_file(&json);
    RunOutput {
        report: serde_json::from_str(&text).expect("report is JSON"),
        output,
        code: out.status.code(),
        pid,
    }
}

/// `node_modules` of the pinned TypeScript SDK (tools/peers/setup-ts.sh, run once).
pub fn ts_peer_modules() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(dir) = std::env::var("MCPSTORM_TS_PEER_DIR") {
            return PathBuf::from(dir).join("node_modules");
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/peers/setup-ts.sh");
        let output = Command::new("bash")
            .arg(script)
            .output()
            .expect("run setup-ts.sh");
        assert!(
            output.status.success(),
            "setup-ts.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("setup-ts.sh prints its dir")
                .trim(),
        )
        .join("node_modules")
    })
    .clone()
}

/// The official TypeScript SDK server (tests/peers/ts_server.cjs) on a free loopback port.
pub struct TsServer {
    pub child: Child,
    pub url: String,
}

impl TsServer {
    pub fn start(extra: &[&str]) -> TsServer {
        let mut command = Command::new("node");
        command.env("NODE_PATH", ts_peer_modules()).arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/ts_server.cjs"
        ));
        let (child, url) = start_peer(command, "ts_server", extra);
        TsServer { child, url }
    }
}

impl Drop for TsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace with a veth pair: 10.SUBNET.N.1 here, 10.SUBNET.N.2 inside (N from
/// the test process's pid, so runs of different test binaries do not collide). Deleted on
/// drop (the veth goes with it), also when the test fails.
pub struct Netns {
    pub name: String,
    pub here: String,
    pub there: String,
}

impl Netns {
    /// `tag` names it (and must be unique among the tests of one binary), `subnet` is the
    /// second octet of its addresses (unique per test: tests run in parallel).
    pub fn create(tag: &str, subnet: u8) -> Netns {
        let n = std::process::id() % 250 + 1;
        let name = format!("mcpstorm-{tag}-{}", std::process::id());
        // Interface names are at most 15 bytes.
        let (a, b) = (format!("ms{subnet}x{n}a"), format!("ms{subnet}x{n}b"));
        let netns = Netns {
            name: name.clone(),
            here: format!("10.{subnet}.{n}.1"),
            there: format!("10.{subnet}.{n}.2"),
        };
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &a]).output();
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &b, "netns", &name]);
        ip(&["addr", "add", &format!("{}/24", netns.here), "dev", &a]);
        ip(&["link", "set", &a, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{}/24", netns.there),
            "dev",
            &b,
        ]);
        ip(&["-n", &name, "link", "set", &b, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        netns
    }

    /// The `nsenter` argument that enters it (`ip netns exec` would remount /sys).
    pub fn nsenter(&self) -> String {
        format!("--net=/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
