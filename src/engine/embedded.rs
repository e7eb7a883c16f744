//! The embedded default target of `mcpstorm run` without a URL: `mcpstorm serve` started as a
//! child process of this same binary on loopback, so its memory and CPU are measured apart
//! from the engine's and a later "node failure" can be a real process death. Part of
//! `engine/`; owns only the child process, never a socket.
//!
//! The child listens on one loopback port per [`CONNECTIONS_PER_PORT`] connections: without
//! source addresses the kernel picks each client port from the ephemeral range of one
//! (source address, target) pair, and its search slows as that range fills.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Connections aimed at one listen port: under half the default ephemeral range (28,232).
pub const CONNECTIONS_PER_PORT: u32 = 12_000;

pub struct EmbeddedServer {
    child: Child,
    ready_file: PathBuf,
    pub urls: Vec<String>,
    connections: u32,
    /// The bound addresses (a restart listens on the same ones).
    addrs: Vec<String>,
    /// `run --tls`: the certificate and key it speaks TLS with.
    tls: Option<crate::tls::server::ThrowawayPki>,
    /// Further `serve` options (`run --notify-every`), given again on a restart.
    extra_args: Vec<String>,
    /// Killed and reaped, not started again: its pid may belong to another process now.
    reaped: bool,
}

impl EmbeddedServer {
    /// Starts `mcpstorm serve` sized for `connections` (every socket: sessions and their
    /// streams), speaking TLS with `tls`, with `extra_args` (e.g. `--notify-every 1s`), and
    /// waits until it listens.
    pub fn start(
        connections: u32,
        tls: Option<&crate::tls::server::ThrowawayPki>,
        extra_args: &[String],
    ) -> Result<EmbeddedServer, String> {
        Self::start_on(connections, None, tls, extra_args)
    }

    /// The RSS of this same server started with no connection capacity (16 connections and
    /// sessions), once it listens: what a server costs before it sizes anything for N. A run
    /// reports the embedded server's memory per session against it (`total`), beside the
    /// growth over the ramp (`marginal`), which misses what was allocated for N at start.
    pub fn idle_rss_bytes(tls: Option<&crate::tls::server::ThrowawayPki>) -> Option<u64> {
        let server = Self::start_sized(1, None, 16, 16, tls, &[]).ok()?;
        // Let the shards finish setting their rings up.
        std::thread::sleep(Duration::from_millis(200));
        super::proc_kib(&format!("/proc/{}/status", server.pid()), "VmRSS:").map(|kib| kib * 1024)
    }

    /// The node-failure fault, first half: SIGKILL the server (no chance to close anything)
    /// and reap it. `start_again` is the second half.
    pub fn kill(&mut self) {
        if !self.reaped {
            // SAFETY: kill(2) on our own child's pid, which we have not yet waited for (`reaped`
            // is set once we have), so it cannot have been reused.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    /// Not killed (or started again since).
    pub fn alive(&self) -> bool {
        !self.reaped
    }

    /// Starts the server again on the same addresses (after `kill`); returns when it listens.
    pub fn start_again(&mut self) -> Result<(), String> {
        let again = Self::start_on(
            self.connections,
            Some(&self.addrs),
            self.tls.as_ref(),
            &self.extra_args,
        )?;
        let old = std::mem::replace(self, again);
        // The old child is already reaped; forget it instead of signalling its (reusable) pid.
        let _ = std::fs::remove_file(&old.ready_file);
        std::mem::forget(old);
        Ok(())
    }

    fn start_on(
        connections: u32,
        listen: Option<&[String]>,
        tls: Option<&crate::tls::server::ThrowawayPki>,
        extra_args: &[String],
    ) -> Result<EmbeddedServer, String> {
        let sized = connections.saturating_add(connections / 5 + 1000);
        Self::start_sized(
            connections,
            listen,
            sized,
            sized.max(131_072),
            tls,
            extra_args,
        )
    }

    fn start_sized(
        connections: u32,
        listen: Option<&[String]>,
        max_connections: u32,
        max_sessions: u32,
        tls: Option<&crate::tls::server::ThrowawayPki>,
        extra_args: &[String],
    ) -> Result<EmbeddedServer, String> {
        // /proc/self/exe runs this very binary even when its file has been replaced since
        // (a rebuild during a run), so a restarted server is the same code.
        let exe = if std::path::Path::new("/proc/self/exe").exists() {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe()
                .map_err(|e| format!("cannot find this executable to start the server: {e}"))?
        };
        let ready_file = std::env::temp_dir().join(format!(
            "mcpstorm-embedded-ready-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let _ = std::fs::remove_file(&ready_file);
        let ports = match listen {
            Some(addrs) => addrs.len() as u32,
            None => connections.div_ceil(CONNECTIONS_PER_PORT).max(1),
        };
        let mut command = Command::new(&exe);
        command.arg("serve");
        match listen {
            Some(addrs) => {
                for addr in addrs {
                    command.args(["--listen", addr]);
                }
            }
            None => {
                for _ in 0..ports {
                    command.args(["--listen", "127.0.0.1:0"]);
                }
            }
        }
        if let Some(pki) = tls {
            command
                .arg("--tls-cert")
                .arg(&pki.cert_file)
                .arg("--tls-key")
                .arg(&pki.key_file);
        }
        command
            .arg("--ready-file")
            .arg(&ready_file)
            .args([
                "--max-connections",
                &max_connections.to_string(),
                "--max-sessions",
                &max_sessions.to_string(),
            ])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // Its own process group: a Ctrl-C at the terminal reaches only `mcpstorm run`, which
        // then ends the phase, writes its reports and stops the server itself (Drop), instead
        // of the server dying under the run mid-phase.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {} serve: {e}", exe.display()))?;
        let mut server = EmbeddedServer {
            child,
            ready_file,
            urls: Vec::new(),
            connections,
            addrs: Vec::new(),
            tls: tls.cloned(),
            extra_args: extra_args.to_vec(),
            reaped: false,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&server.ready_file) {
                let urls: Vec<String> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|addr| format!("{scheme}://{}/mcp", addr.trim()))
                    .collect();
                if urls.len() == ports as usize {
                    server.urls = urls;
                    server.addrs = text
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| l.trim().to_string())
                        .collect();
                    return Ok(server);
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("the embedded server exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err("the embedded server did not start listening within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EmbeddedServer {
    /// SIGINT (the server closes its connections and exits), then SIGKILL after 5 s.
    fn drop(&mut self) {
        if self.reaped {
            let _ = std::fs::remove_file(&self.ready_file);
            return;
        }
        // SAFETY: kill(2) on our own child's pid, which we have not yet waited for (so it
        // cannot have been reused).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.ready_file);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.ready_file);
    }
}
