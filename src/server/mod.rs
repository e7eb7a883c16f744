//! `mcpstorm serve`: the embedded MCP server over streamable HTTP. Thread-per-core shards pinned
//! to CPUs, each with as many rings as its share of `--max-connections` needs (a ring's
//! direct-descriptor table is capped at RLIMIT_NOFILE), each ring with its own SO_REUSEPORT
//! listener per listen address. Sessions live in one table shared by all shards.
//!
//! Module map: `shard.rs` (the io_uring loop), `mcp.rs` (I/O-free MCP answers),
//! `sessions.rs` (session table), `stats.rs` (counters), `notify.rs` (`--notify-every` fan-out).

pub mod catalog;
pub mod fixtures;
pub mod legacy;
pub mod mcp;
pub mod mrtr;
pub mod notify;
pub mod pending;
pub mod service;
pub mod sessions;
pub mod shard;
pub mod stats;

use crate::ring::{KernelFeatures, probe_kernel, raise_nofile_limit};
use mcp::{Handler, McpConfig};
use sessions::SessionTable;
use socket2::{Domain, Socket, Type};
use stats::{Counter, ShardStats};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use crate::sys::signal::{STOP, install_stop_handler};

/// Everything `serve` needs, validated and sized before any socket opens.
#[derive(Debug, Clone)]
pub struct ServerPlan {
    pub listen: Vec<SocketAddr>,
    pub shards: usize,
    pub rings_per_shard: usize,
    pub slots_per_ring: u32,
    pub buf_count: u16,
    pub buf_bytes: u32,
    pub mcp: McpConfig,
    pub max_sessions: u32,
    pub session_idle_timeout_s: u32,
    /// Calibrated service (`--service-time`, 0 = off): what `ping` and `tools/call` take.
    pub service_time_ns: u64,
    /// Service slots over all shards (`--concurrency`, 0 = unlimited).
    pub service_concurrency: u32,
    pub cpus: Vec<usize>,
    pub epoch: Instant,
    /// `--tls-cert/--tls-key`: every connection speaks TLS.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// `--notify-every` (0 = off): a notification to every held listen stream this often.
    pub notify_every_ns: u64,
    /// `--notify-to N` over all shards; `None` = every stream.
    pub notify_to: Option<u32>,
    /// `--legacy-sse`: the legacy HTTP+SSE transport beside streamable HTTP.
    pub legacy_sse: bool,
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: Vec<SocketAddr>,
    pub path: String,
    pub shards: Option<usize>,
    pub response_mode: mcp::ResponseMode,
    pub max_sessions: u32,
    pub max_connections: u32,
    pub session_idle_timeout_s: u32,
    /// Direct descriptors per ring; default (and maximum) RLIMIT_NOFILE.
    pub ring_slots: Option<u32>,
    /// Provided receive buffers per ring (power of two).
    pub recv_buffers: u16,
    /// Calibrated service time of `ping` and `tools/call` (zero: answered at once).
    pub service_time: Duration,
    /// At most this many served at once with a service time (0 = unlimited).
    pub concurrency: u32,
    /// Certificate chain and key (PEM) to speak TLS on every listener.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    pub notify_every: Option<Duration>,
    pub notify_to: Option<u32>,
    pub legacy_sse: bool,
}

impl ServerPlan {
    pub fn from_options(options: &ServeOptions) -> Result<ServerPlan, String> {
        if options.listen.is_empty() {
            return Err("serve needs at least one --listen address".into());
        }
        if !options.path.starts_with('/') {
            return Err(format!("--path must start with '/': {:?}", options.path));
        }
        let nofile = raise_nofile_limit();
        let cpus: Vec<usize> = core_affinity::get_core_ids()
            .map(|ids| ids.into_iter().map(|c| c.id).collect())
            .unwrap_or_default();
        let cpu_count = cpus.len().max(1);
        let mut shards = options.shards.unwrap_or(cpu_count).max(1);
        if options.service_time.is_zero() && options.concurrency > 0 {
            return Err(
                "--concurrency limits the calibrated service: give --service-time too".into(),
            );
        }
        if options.concurrency > 0 && (options.concurrency as usize) < shards {
            // Each shard serves its own share of the slots; fewer slots than shards would
            // leave a shard with none.
            shards = options.concurrency as usize;
        }
        // The kernel refuses a fixed-file table larger than RLIMIT_NOFILE.
        let slots_cap = nofile.min(u32::MAX as u64) as u32;
        let slots_per_ring = options
            .ring_slots
            .unwrap_or(slots_cap)
            .min(slots_cap)
            .max(16);
        if options.ring_slots.is_some_and(|s| s > slots_cap) {
            eprintln!(
                "mcpstorm serve: --ring-slots lowered to RLIMIT_NOFILE = {slots_cap} (the kernel's cap on a ring's direct-descriptor table)"
            );
        }
        let per_shard = options.max_connections.div_ceil(shards as u32);
        let rings_per_shard = per_shard.div_ceil(slots_per_ring).max(1) as usize;
        if rings_per_shard * options.listen.len() > 255 {
            return Err(format!(
                "{rings_per_shard} rings per shard × {} listen addresses is too many listeners; use fewer addresses or more shards",
                options.listen.len()
            ));
        }
        Ok(ServerPlan {
            listen: options.listen.clone(),
            shards,
            rings_per_shard,
            slots_per_ring,
            // 4 MiB per ring: MCP requests are a few hundred bytes, so many small buffers
            // ride out a burst of every connection sending at once better than few large ones.
            buf_count: options.recv_buffers,
            buf_bytes: 2048,
            mcp: McpConfig {
                path: options.path.as_bytes().to_vec(),
                response_mode: options.response_mode,
                calibrated: !options.service_time.is_zero(),
                state_key: std::sync::Arc::new(mrtr::StateKey::generate()),
                pending: Default::default(),
            },
            max_sessions: options.max_sessions,
            session_idle_timeout_s: options.session_idle_timeout_s,
            service_time_ns: options.service_time.as_nanos().min(u64::MAX as u128) as u64,
            service_concurrency: options.concurrency,
            notify_every_ns: options
                .notify_every
                .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64),
            notify_to: options.notify_to.filter(|&n| n != u32::MAX),
            legacy_sse: options.legacy_sse,
            cpus,
            epoch: Instant::now(),
            tls: match (&options.tls_cert, &options.tls_key) {
                (Some(cert), Some(key)) => Some(crate::tls::server::server_config(cert, key)?),
                (None, None) => None,
                _ => return Err("--tls-cert and --tls-key go together".into()),
            },
        })
    }
}

/// Final counters of a `serve` run.
pub struct ServerSummary {
    pub counters: Vec<(&'static str, u64)>,
    pub sessions_live: u64,
}

impl ServerSummary {
    /// The one-line shutdown summary: connections, sessions, requests by method, errors by cause.
    pub fn line(&self) -> String {
        let get = |name: &str| {
            self.counters
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, v)| *v)
        };
        let errors: Vec<String> = self
            .counters
            .iter()
            .filter(|(name, value)| {
                *value > 0
                    && (name.starts_with("error_")
                        || name.starts_with("accept_table")
                        || name.starts_with("recv_buffers"))
            })
            .map(|(name, value)| format!("{}={value}", name.trim_start_matches("error_")))
            .collect();
        let error_total: u64 = self
            .counters
            .iter()
            .filter(|(n, _)| n.starts_with("error_"))
            .map(|(_, v)| v)
            .sum();
        let tls = if get("tls_handshakes") > 0 {
            format!(
                " tls_handshakes={} (resumed {})",
                get("tls_handshakes"),
                get("tls_handshakes_resumed")
            )
        } else {
            String::new()
        };
        format!(
            "mcpstorm serve: connections={}{tls} sessions={} (live {}) requests={} (initialize={} notifications={} ping={} tools/list={} tools/call={} other={}) errors={}{}{}",
            get("connections_accepted"),
            get("sessions_created"),
            self.sessions_live,
            get("requests_total"),
            get("method_initialize"),
            get("method_notification"),
            get("method_ping"),
            get("method_tools_list"),
            get("method_tools_call"),
            get("method_other"),
            error_total,
            if errors.is_empty() { "" } else { " " },
            errors.join(" "),
        )
    }
}

impl ServerSummary {
    /// One line per limit the server ran into, with its count and the fix (doctor's words).
    pub fn explanations(&self) -> Vec<String> {
        let get = |name: &str| {
            self.counters
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, v)| *v)
        };
        let mut lines = Vec::new();
        let table_full = get("accept_table_full");
        if table_full > 0 {
            lines.push(format!(
                "accept_table_full ×{table_full}: {}",
                crate::sys::errno::explain("accept", libc::ENFILE)
            ));
        }
        let sessions_full = get("error_sessions_full");
        if sessions_full > 0 {
            lines.push(format!(
                "sessions_full ×{sessions_full}: initialize found --max-sessions sessions live (answered 503); raise --max-sessions or lower --session-idle-timeout"
            ));
        }
        let exhausted = get("recv_buffers_exhausted");
        if exhausted > 0 {
            lines.push(format!(
                "recv_buffers_exhausted ×{exhausted}: every provided receive buffer was in use at once; those connections were read through their own buffer (no request lost), --recv-buffers raises the pool"
            ));
        }
        lines
    }
}

/// Binds every listener: per shard, per ring, per listen address one SO_REUSEPORT socket.
/// A port of 0 is resolved by the first bind and reused by the rest, so all listeners of an
/// address share one port. Returns the listeners and the addresses actually bound.
#[allow(clippy::type_complexity)]
fn bind_listeners(plan: &ServerPlan) -> Result<(Vec<Vec<Vec<Socket>>>, Vec<SocketAddr>), String> {
    let mut bound = plan.listen.clone();
    let mut all = Vec::with_capacity(plan.shards);
    for _ in 0..plan.shards {
        let mut shard = Vec::with_capacity(plan.rings_per_shard);
        for _ in 0..plan.rings_per_shard {
            let mut ring = Vec::with_capacity(bound.len());
            for addr in bound.iter_mut() {
                let socket = Socket::new(Domain::for_address(*addr), Type::STREAM, None)
                    .map_err(|e| format!("socket for {addr}: {e}"))?;
                socket
                    .set_reuse_address(true)
                    .map_err(|e| format!("SO_REUSEADDR: {e}"))?;
                socket
                    .set_reuse_port(true)
                    .map_err(|e| format!("SO_REUSEPORT: {e}"))?;
                // Accepted sockets inherit TCP_NODELAY: replies must not wait for Nagle.
                socket
                    .set_tcp_nodelay(true)
                    .map_err(|e| format!("TCP_NODELAY: {e}"))?;
                socket.bind(&(*addr).into()).map_err(|e| match e.raw_os_error() {
                    Some(libc::EADDRINUSE) => format!("cannot listen on {addr}: the address is in use (another server, or a previous run still closing)"),
                    Some(libc::EADDRNOTAVAIL) => format!("cannot listen on {addr}: no interface has that address"),
                    Some(libc::EACCES) => format!("cannot listen on {addr}: ports below 1024 need root or CAP_NET_BIND_SERVICE"),
                    _ => format!("bind {addr}: {e}"),
                })?;
                socket
                    .listen(65535)
                    .map_err(|e| format!("listen {addr}: {e}"))?;
                if addr.port() == 0 {
                    let local = socket.local_addr().map_err(|e| e.to_string())?;
                    if let Some(local) = local.as_socket() {
                        addr.set_port(local.port());
                    }
                }
                ring.push(socket);
            }
            shard.push(ring);
        }
        all.push(shard);
    }
    Ok((all, bound))
}

/// Runs the server until SIGINT/SIGTERM (or [`STOP`]). `on_ready` gets the bound addresses.
pub fn run(
    plan: ServerPlan,
    on_ready: impl FnOnce(&[SocketAddr]),
) -> Result<ServerSummary, String> {
    let features: KernelFeatures = probe_kernel().map_err(|e| e.to_string())?;
    let (listeners, bound) = bind_listeners(&plan)?;
    let sessions = SessionTable::new(plan.max_sessions, sessions::os_seed());
    let legacy = if plan.legacy_sse {
        Some(
            legacy::LegacyHub::new(plan.shards, sessions::os_seed())
                .map_err(|e| format!("--legacy-sse inboxes: {e}"))?,
        )
    } else {
        None
    };
    let legacy = legacy.as_ref();
    let all_stats: Vec<ShardStats> = (0..plan.shards).map(|_| ShardStats::new()).collect();
    let plan = &plan;
    let sessions = &sessions;
    let all_stats = &all_stats[..];
    let features = &features;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (id, shard_listeners) in listeners.into_iter().enumerate() {
            let ready_tx = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("serve-shard-{id}"))
                .spawn_scoped(scope, move || -> Result<(), String> {
                    if !plan.cpus.is_empty() {
                        let cpu = plan.cpus[id % plan.cpus.len()];
                        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                    }
                    let mut handler = Handler::new(&plan.mcp, sessions, &all_stats[id], all_stats);
                    handler.legacy = legacy.map(|hub| (hub, id));
                    let mut shard = match shard::Shard::new(
                        id,
                        plan,
                        features,
                        shard_listeners,
                        handler,
                        &all_stats[id],
                    ) {
                        Ok(shard) => shard,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            STOP.store(true, Ordering::Relaxed);
                            return Err(e.to_string());
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    shard
                        .run()
                        .map_err(|e| format!("shard {id}: io_uring wait failed: {e}"))
                })
                .map_err(|e| format!("spawning shard thread: {e}"));
            handles.push(handle);
        }
        drop(ready_tx);
        let mut ready_err = None;
        for _ in 0..plan.shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    ready_err.get_or_insert(e);
                }
                Err(_) => break,
            }
        }
        if ready_err.is_none() {
            on_ready(&bound);
        }
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err("a shard thread panicked".into())),
                Err(e) => Err(e),
            })
            .collect()
    });
    for result in results {
        result?;
    }
    Ok(ServerSummary {
        counters: stats::snapshot(all_stats),
        sessions_live: sessions.live(),
    })
}

/// Total of one counter (for tests and the engine's cross-checks).
pub fn counter_total(summary: &ServerSummary, counter: Counter) -> u64 {
    summary
        .counters
        .iter()
        .find(|(n, _)| *n == counter.name())
        .map_or(0, |(_, v)| *v)
}
