//! Benchmark: how many initialized MCP sessions `mcpstorm serve` holds, and the server's
//! user-space bytes per held session (RSS growth ÷ sessions).
//!
//! `cargo bench --bench serve_hold -- --connections 100000 [--serve-bin PATH] [--procs 7]`
//!
//! Until the client engine exists, the load comes from plain blocking `std::net` sockets in
//! several child processes (RLIMIT_NOFILE caps one process at 20,000 ordinary fds), each
//! binding its own source address 127.0.0.N so more than one ephemeral port range is
//! available. Each child writes an `initialize` on every one of its connections, then reads
//! every answer; when all children hold their sessions the parent reads the server's RSS and
//! its stats endpoint, then has every connection send one `ping` to prove the sessions live.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"serve_hold","version":"1"}}}"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(
            &args[pos + 1],
            &args[pos + 2],
            args[pos + 3].parse().unwrap(),
        );
        return;
    }
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let connections: usize =
        get("--connections").map_or(100_000, |v| v.parse().expect("--connections"));
    let procs: usize =
        get("--procs").map_or(connections.div_ceil(15_000).max(1), |v| v.parse().unwrap());
    let serve_bin = get("--serve-bin")
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/mcpstorm").into());
    let ready_file = std::env::temp_dir().join(format!("serve-hold-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready_file);
    let max = (connections + 1000).to_string();
    let mut server = Command::new(&serve_bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            &max,
            "--max-sessions",
            &max,
            "--ready-file",
        ])
        .arg(&ready_file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {serve_bin}: {e} (build it with cargo build --release)"));
    let addr: SocketAddr = loop {
        if let Ok(text) = std::fs::read_to_string(&ready_file)
            && let Some(line) = text.lines().next()
        {
            break line.parse().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let server_pid = server.id();
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = rss_bytes(server_pid);
    let slab_before_kib = meminfo_kib("Slab");
    let started = Instant::now();
    let per_proc = connections.div_ceil(procs);
    let me = std::env::current_exe().unwrap();
    let mut children: Vec<(Child, BufReader<std::process::ChildStdout>)> = Vec::new();
    for p in 0..procs {
        let count = per_proc.min(connections - p * per_proc);
        let source = format!("127.0.0.{}", p + 2);
        let mut child = Command::new(&me)
            .args(["--child", &addr.to_string(), &source, &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        children.push((child, out));
    }
    let mut held = 0usize;
    for (_, out) in children.iter_mut() {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        held += line
            .trim()
            .strip_prefix("held ")
            .expect("child reports held sessions")
            .parse::<usize>()
            .unwrap();
    }
    let establish_s = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_bytes(server_pid);
    let slab_after_kib = meminfo_kib("Slab");
    let stats = stats(addr);
    for (child, _) in children.iter_mut() {
        child.stdin.as_mut().unwrap().write_all(b"ping\n").unwrap();
    }
    let mut pinged = 0usize;
    for (_, out) in children.iter_mut() {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        pinged += line
            .trim()
            .strip_prefix("pinged ")
            .expect("child reports pings")
            .parse::<usize>()
            .unwrap();
    }
    for (mut child, _) in children {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server_pid as i32, libc::SIGINT) };
    let mut summary = String::new();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut summary)
        .unwrap();
    let _ = server.wait();
    let growth = rss_after.saturating_sub(rss_before);
    println!("serve_hold: connections requested  {connections}");
    println!(
        "serve_hold: sessions held           {held} (server stats: sessions_live {})",
        json_field(&stats, "sessions_live")
    );
    println!("serve_hold: sessions answering ping {pinged}");
    println!(
        "serve_hold: establish time          {establish_s:.2} s ({:.0} sessions/s, {procs} blocking client processes)",
        held as f64 / establish_s
    );
    println!(
        "serve_hold: server RSS before/after {} / {} KiB",
        rss_before / 1024,
        rss_after / 1024
    );
    println!(
        "serve_hold: server user bytes/session {:.0}",
        growth as f64 / held.max(1) as f64
    );
    println!(
        "serve_hold: kernel Slab growth     {} KiB = {:.0} B per socket ({} sockets: both ends on loopback)",
        slab_after_kib.saturating_sub(slab_before_kib),
        slab_after_kib.saturating_sub(slab_before_kib) as f64 * 1024.0 / (2 * held).max(1) as f64,
        2 * held
    );
    println!("serve_hold: {}", summary.lines().last().unwrap_or(""));
}

fn child(addr: &str, source: &str, count: usize) {
    let addr: SocketAddr = addr.parse().unwrap();
    let source: std::net::IpAddr = source.parse().unwrap();
    let mut streams = Vec::with_capacity(count);
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{INIT}",
        INIT.len()
    );
    for _ in 0..count {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
        socket.connect(&addr.into()).unwrap();
        socket.set_tcp_nodelay(true).unwrap();
        let mut stream: TcpStream = socket.into();
        stream.write_all(request.as_bytes()).unwrap();
        streams.push(stream);
    }
    let mut sessions = Vec::with_capacity(count);
    let mut buf = vec![0u8; 4096];
    for stream in streams.iter_mut() {
        let (head, _) = read_response(stream, &mut buf);
        let session = head
            .lines()
            .find_map(|l| l.strip_prefix("Mcp-Session-Id: "))
            .expect("initialize answered with a session")
            .trim()
            .to_string();
        sessions.push(session);
    }
    println!("held {}", sessions.len());
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    for (stream, session) in streams.iter_mut().zip(&sessions) {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let ping = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nMcp-Session-Id: {session}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(ping.as_bytes()).unwrap();
    }
    let mut ok = 0;
    for stream in streams.iter_mut() {
        let (head, _) = read_response(stream, &mut buf);
        if head.starts_with("HTTP/1.1 200") {
            ok += 1;
        }
    }
    println!("pinged {ok}");
    let _ = std::io::stdin().read_line(&mut line);
}

/// Reads one Content-Length response (the server's JSON mode).
fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> (String, usize) {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).unwrap();
        assert!(n > 0, "server closed the connection");
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            while filled < end + 4 + length {
                filled += stream.read(&mut buf[filled..]).unwrap();
            }
            return (head, length);
        }
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn stats(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /mcpstorm/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn json_field(json: &str, field: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .map(|v| v[field].to_string())
        .unwrap_or_default()
}

/// One /proc/meminfo field in KiB.
fn meminfo_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
