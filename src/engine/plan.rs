//! The validated, immutable plan of a `mcpstorm run`: targets, source addresses, shards × rings,
//! each shard's slice of the connections, rates, the request mix and the pre-encoded request
//! templates. Part of `engine/`; built before any socket opens, so every limit that would stop
//! the run (ring slots, ports per source→target pair) fails here with the fix in the message.
//! No I/O beyond reading limits.

use super::headers::RequestHeader;
use super::target::{
    AllowEntry, Endpoint, ResolveOverride, Scheme, parse_allow_host, parse_endpoint, parse_resolve,
    resolve_targets,
};
use super::template::{
    ENTRIES_MAX, MODERN_PROTOCOL_VERSION, Method, ReplyTemplate, Request, StreamOpenTemplate,
    Template, TemplateConfig,
};
use super::workload::{Lines, LoadEntry, Text, attach_args, parse_mix};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The protocol revision of the legacy HTTP+SSE transport (`--transport sse`).
pub const LEGACY_SSE_PROTOCOL_VERSION: &str = "2024-11-05";

/// Protocol revisions with initialize and `Mcp-Session-Id`.
pub const SESSION_PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// Options as the user gave them (from `cli.rs`), before validation.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub urls: Vec<String>,
    pub connections: u32,
    pub shards: Option<usize>,
    pub connect_rate_per_s: u64,
    /// Reconnects per second over all shards (0 = unpaced).
    pub reconnect_rate_per_s: u64,
    pub connect_timeout: Duration,
    /// Connect attempts repeated after a failure, each after a jittered backoff.
    pub connect_retries: u8,
    pub request_timeout: Duration,
    /// Longest the ramp may take; the load starts with the sessions held by then.
    pub ramp_timeout: Duration,
    pub source_ips: Option<String>,
    /// `--resolve HOST:PORT:ADDR` entries (curl's syntax).
    pub resolve: Vec<String>,
    /// `--allow-host HOST|CIDR` entries: targets beyond loopback and this host's addresses.
    pub allow_hosts: Vec<String>,
    /// `-H`/`--header-env` headers, sent on every request.
    pub headers: Vec<RequestHeader>,
    /// How `https://` targets' certificates are checked.
    pub tls: crate::tls::TlsOptions,
    /// `run --tls` with no URL: the embedded server speaks TLS with a throwaway certificate.
    pub embedded_tls: bool,
    pub mix: Option<String>,
    pub tool: Option<String>,
    pub tool_args_json: Option<String>,
    /// `--args NAME=JSON`: arguments of the tool, prompt or completion of that name.
    pub args: Vec<String>,
    /// Seed of every generated value and random choice (the same seed, the same requests).
    pub seed: u64,
    pub protocol_version: String,
    /// Direct descriptors per ring [default and max: RLIMIT_NOFILE]; lower forces more rings.
    pub ring_slots: Option<u32>,
    /// Keep a multishot receive armed on every connection (true), or arm a single-shot one
    /// only while a response is awaited (false).
    pub recv_multishot: bool,
    /// A server process whose RSS growth per session to report (the embedded child's pid
    /// when no URL is given).
    pub server_pid: Option<u32>,
    /// `--streams`: the share of sessions (percent, 0 = off) that also hold their
    /// server-to-client stream on a second connection.
    pub streams_percent: u8,
    /// `run --notify-every D` with no URL: the embedded server's `--notify-every`.
    pub embedded_notify_every: Option<Duration>,
    /// `--transport sse`: the legacy HTTP+SSE transport (2024-11-05).
    pub legacy_sse: bool,
    /// `--failover` (or `--replicas N`): the URLs are replicas of one service; a session whose
    /// replica refuses its connect moves to another. None: each URL is loaded on its own.
    pub failover: Option<super::replicas::FailoverPolicy>,
    /// The replica of each URL (index into `urls`); empty = each URL is a replica of its own.
    /// An embedded replica listens on several ports: its URLs share one replica.
    pub replica_of_url: Vec<u16>,
    /// `run --replicas N` with no URL: embedded servers to start (1 without replicas).
    pub embedded_replicas: u16,
    /// `--client-reply METHOD=JSON`: the answers to server-to-client requests.
    pub client_replies: super::client_reply::ClientReplies,
    /// `--segment I/N`: this process's share of the run (`connections` is the whole run's).
    pub segment: super::segment::ExecutionSegment,
}

/// One target address: where to connect and what to put in Host and the request line. A URL
/// whose host name resolves to several addresses is several targets of one endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header: the URL's authority as written.
    pub host: String,
    /// The request target: path and query as written.
    pub path: String,
    /// Index into `EnginePlan::endpoints`.
    pub endpoint: usize,
    /// The replica the target belongs to (`EnginePlan::replicas`; the endpoint's index when
    /// the URLs are no replicas).
    pub replica: u16,
    /// `https://`: the name for SNI and the certificate check (the URL's host).
    pub tls_name: Option<rustls::pki_types::ServerName<'static>>,
}

/// What the plan asks of the host's network stack, passed in so plans are tested without one.
pub struct HostNet<'a> {
    /// Every address of a host name (A and AAAA).
    pub resolve: &'a mut dyn FnMut(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
    /// An address of this host (targets there need no `--allow-host`).
    pub is_local: &'a dyn Fn(IpAddr) -> bool,
    /// Whether a socket can bind this source address here.
    pub can_bind: &'a dyn Fn(IpAddr) -> std::io::Result<()>,
}

/// Pre-encoded requests for one target: the session's handshake and end, and one per load
/// entry of the mix.
#[derive(Debug, Clone)]
pub struct TargetTemplates {
    pub initialize: Template,
    pub initialized: Template,
    pub delete: Template,
    /// Indexed like `EnginePlan::entries`.
    pub load: Vec<Template>,
    /// The request that opens a session's server-to-client stream (`--streams`).
    pub stream_open: StreamOpenTemplate,
    /// The POST of an answer to a server-to-client request.
    pub reply: ReplyTemplate,
}

impl TargetTemplates {
    pub fn get(&self, request: Request) -> &Template {
        match request {
            Request::Initialize => &self.initialize,
            Request::Initialized => &self.initialized,
            Request::Delete => &self.delete,
            Request::Load(entry) => &self.load[entry as usize],
        }
    }
}

/// One shard's part of the run.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    pub connections: u32,
    pub rings: usize,
    pub cpu: Option<usize>,
    /// Global index of this shard's first connection (spreads targets and source ports).
    pub first_connection: u32,
    /// Streams of this shard's sessions (`--streams`), and the global index of its first
    /// (streams take the source ports after every session's).
    pub streams: u32,
    pub first_stream: u32,
}

#[derive(Debug, Clone)]
pub struct EnginePlan {
    /// The URLs as parsed, in the order given.
    pub endpoints: Vec<Endpoint>,
    /// Every address connections go to; connection `i` goes to `targets[i % len]`.
    pub targets: Vec<Target>,
    /// Extra headers on every request (secrets redacted in `Debug`).
    pub headers: Vec<RequestHeader>,
    /// `https://` targets (all or none): how certificates are checked.
    pub tls: Option<crate::tls::TlsOptions>,
    pub templates: Vec<TargetTemplates>,
    /// Source addresses to bind; empty = let the kernel choose.
    pub source_ips: Vec<IpAddr>,
    pub connections: u32,
    pub shards: Vec<ShardPlan>,
    /// Direct descriptors of a ring: its sessions' connections and their streams'.
    pub slots_per_ring: u32,
    /// Sessions of a full ring (`slots_per_ring` less the descriptors their streams take).
    pub sessions_per_ring: u32,
    /// `--streams`: percent of the sessions holding a stream (see `stream_rank`).
    pub stream_percent: u8,
    /// `--transport sse`: every session's stream is its legacy HTTP+SSE stream; requests go
    /// to the endpoint it names, answers come on it.
    pub legacy_sse: bool,
    pub connect_rate_per_s: u64,
    /// Reconnects per second over all shards (0 = unpaced).
    pub reconnect_rate_per_s: u64,
    pub connect_timeout: Duration,
    pub connect_retries: u8,
    pub request_timeout: Duration,
    pub ramp_timeout: Duration,
    /// The load entries of the mix (weights > 0), in the order given.
    pub entries: Vec<LoadEntry>,
    /// The files `{{line FILE}}` draws from.
    pub lines: Lines,
    pub seed: u64,
    pub protocol_version: String,
    pub recv_multishot: bool,
    /// `--failover`: how a session whose replica failed picks another (None: no replicas).
    pub failover: Option<super::replicas::FailoverPolicy>,
    /// With `failover`: each replica's URLs, as given (index = `Target::replica`).
    pub replicas: Vec<Vec<String>>,
    pub buf_count: u16,
    pub buf_bytes: u32,
    /// What the client answers to server-to-client requests (`--client-reply`).
    pub client_replies: super::client_reply::ClientReplies,
    /// `--segment I/N`: `connections` is this segment's share of `run_connections`; its
    /// connection `k` is the whole run's `first_run_connection + k` (its source port too).
    pub segment: super::segment::ExecutionSegment,
    pub run_connections: u32,
    pub first_run_connection: u32,
}

/// Direct descriptors of each ring kept for its reply connection (`reply_conn.rs`): the
/// answers to server-to-client requests go out on a connection of their own, never on the
/// session's, which may be awaiting the very call that asked.
pub const REPLY_SLOTS_PER_RING: u32 = 1;

/// Smallest source port the plan assigns when binding (above the usual ephemeral range start
/// of the well-known services, below nothing the kernel cares about on loopback).
pub const SOURCE_PORT_FIRST: u16 = 10_000;
pub const SOURCE_PORT_LAST: u16 = 65_000;

/// Parses the URLs, resolves their host names (`--resolve` first) and applies the allowlist:
/// the endpoints and every target address, in the order given.
pub fn resolve_urls(
    urls: &[String],
    resolve_overrides: &[String],
    allow_hosts: &[String],
    net: &mut HostNet<'_>,
) -> Result<(Vec<Endpoint>, Vec<Target>), String> {
    let endpoints = urls
        .iter()
        .map(|u| parse_endpoint(u))
        .collect::<Result<Vec<_>, _>>()?;
    let overrides = resolve_overrides
        .iter()
        .map(|r| parse_resolve(r))
        .collect::<Result<Vec<ResolveOverride>, _>>()?;
    let allow = allow_hosts
        .iter()
        .map(|a| parse_allow_host(a))
        .collect::<Result<Vec<AllowEntry>, _>>()?;
    let resolved = resolve_targets(&endpoints, &overrides, &allow, net.resolve, net.is_local)?;
    let mut targets = Vec::with_capacity(resolved.len());
    for r in resolved {
        let endpoint = &endpoints[r.endpoint];
        targets.push(Target {
            addr: r.addr,
            host: endpoint.authority.clone(),
            path: endpoint.path_and_query.clone(),
            endpoint: r.endpoint,
            replica: u16::try_from(r.endpoint).unwrap_or(u16::MAX),
            tls_name: match endpoint.scheme {
                Scheme::Https => Some(crate::tls::server_name(&endpoint.host)?),
                Scheme::Http => None,
            },
        });
    }
    Ok((endpoints, targets))
}

/// With `--failover`: every target's replica (from `replica_of_url`) and each replica's URLs;
/// none without it. One replica is no failover, and a connection's home must fit its u16.
fn plan_replicas(options: &RunOptions, targets: &mut [Target]) -> Result<Vec<Vec<String>>, String> {
    let Some(_) = options.failover else {
        return Ok(Vec::new());
    };
    let replica_of = |url: usize| -> u16 {
        options
            .replica_of_url
            .get(url)
            .copied()
            .unwrap_or(u16::try_from(url).unwrap_or(u16::MAX))
    };
    let count = (0..options.urls.len())
        .map(|u| replica_of(u) as usize + 1)
        .max()
        .unwrap_or(0);
    if count < 2 {
        return Err(
            "--failover needs at least two replicas: give two or more URLs (or --replicas N with no URL)"
                .into(),
        );
    }
    if targets.len() > super::replicas::TARGETS_MAX {
        return Err(format!(
            "{} target addresses: failover handles at most {}",
            targets.len(),
            super::replicas::TARGETS_MAX
        ));
    }
    for target in targets.iter_mut() {
        target.replica = replica_of(target.endpoint);
    }
    let mut replicas = vec![Vec::new(); count];
    for (url, text) in options.urls.iter().enumerate() {
        replicas[replica_of(url) as usize].push(text.clone());
    }
    if let Some(empty) = replicas.iter().position(Vec::is_empty) {
        return Err(format!("replica {} has no URL", empty + 1));
    }
    Ok(replicas)
}

/// Parses `127.0.0.2-127.0.0.9`, `10.0.0.5,10.0.0.6` or `fd00::2-fd00::9` (syntax only; the
/// plan checks each address can be bound here).
pub fn parse_source_ips(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut ips = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |s: &str| -> Result<IpAddr, String> {
            let s = s.trim();
            s.strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(s)
                .parse::<IpAddr>()
                .map_err(|_| format!("--source-ips: {s:?} is not an IP address"))
        };
        match part.split_once('-') {
            Some((first, last)) => {
                let bad = || format!("--source-ips: bad range {part:?}");
                match (parse(first)?, parse(last)?) {
                    (IpAddr::V4(a), IpAddr::V4(b)) => {
                        let (a, b) = (u32::from(a), u32::from(b));
                        if b < a || b - a > 65_535 {
                            return Err(bad());
                        }
                        ips.extend((a..=b).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))));
                    }
                    (IpAddr::V6(a), IpAddr::V6(b)) => {
                        let (a, b) = (u128::from(a), u128::from(b));
                        if b < a || b - a > 65_535 {
                            return Err(bad());
                        }
                        ips.extend((a..=b).map(|ip| IpAddr::V6(Ipv6Addr::from(ip))));
                    }
                    _ => return Err(bad()),
                }
            }
            None => ips.push(parse(part)?),
        }
    }
    if ips.is_empty() {
        return Err("--source-ips: no address given".into());
    }
    if ips.iter().any(|ip| ip.is_ipv4()) && ips.iter().any(|ip| ip.is_ipv6()) {
        return Err("--source-ips: mix of IPv4 and IPv6 addresses; give one family".into());
    }
    Ok(ips)
}

/// What a protocol revision cannot carry: 2026-07-28 has no ping and no logging/setLevel, and
/// its `Mcp-Name` header must name the target of every request alike (no generated names);
/// completion arguments are fixed in every revision.
fn check_entries_for_protocol(entries: &[LoadEntry], modern: bool) -> Result<(), String> {
    for entry in entries {
        if modern && matches!(entry.method, Method::Ping | Method::LoggingSetLevel) {
            return Err(format!(
                "--mix: protocol {MODERN_PROTOCOL_VERSION} has no {}; use tools/call or tools/list",
                entry.method.name()
            ));
        }
        if modern && entry.name.as_ref().is_some_and(|n| !n.is_static()) {
            return Err(format!(
                "--mix: {}: under {MODERN_PROTOCOL_VERSION} the name goes into the Mcp-Name header and cannot be generated",
                entry.label()
            ));
        }
        if entry.method == Method::CompletionComplete
            && entry.args.as_ref().is_some_and(|a| !a.is_static())
        {
            return Err(format!(
                "--args of {}: a completion's argument is fixed (no generators)",
                entry.label()
            ));
        }
    }
    Ok(())
}

/// `--args NAME=JSON` entries, parsed (generators included).
fn parse_args(
    given: &[String],
    lines: &mut Lines,
    read_lines: &mut dyn FnMut(&str) -> Result<Vec<String>, String>,
) -> Result<Vec<(String, Text)>, String> {
    given
        .iter()
        .map(|arg| {
            let (name, json) = arg
                .split_once('=')
                .ok_or_else(|| format!("--args {arg:?}: give NAME=JSON"))?;
            Ok((name.to_string(), Text::parse(json, lines, read_lines)?))
        })
        .collect()
}

/// Reads a `{{line FILE}}` file.
fn read_lines_file(path: &str) -> Result<Vec<String>, String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .map_err(|e| format!("{{{{line {path}}}}}: {e}"))
}

impl EnginePlan {
    /// 2026-07-28: mirrors the `x-mcp-header` arguments of every tools/call entry into
    /// `Mcp-Param-*` headers, by the tools' `inputSchema` as discovery listed them. A tool
    /// the mix calls whose declarations are invalid stops the run: a conforming client
    /// excludes it (SEP-2243), so a run that called it would not be what clients do.
    /// Returns the tools whose arguments are mirrored.
    pub fn mirror_params(&mut self, tools: &[serde_json::Value]) -> Result<Vec<String>, String> {
        let mut mirrored = Vec::new();
        if self.protocol_version != MODERN_PROTOCOL_VERSION {
            return Ok(mirrored);
        }
        for (index, entry) in self.entries.iter().enumerate() {
            let Some(name) = entry.name.as_ref().filter(|n| n.is_static()) else {
                continue;
            };
            if entry.method != Method::ToolsCall {
                continue;
            }
            let Some(tool) = tools.iter().find(|t| t["name"] == name.source.as_str()) else {
                continue;
            };
            let declared = crate::proto::mcp_headers::declarations(&tool["inputSchema"])
                .map_err(|e| {
                    format!(
                        "tool {:?}: {e}; a conforming client excludes such a tool (SEP-2243), so the run will not call it",
                        name.source
                    )
                })?;
            if !declared.is_empty() && !mirrored.contains(&name.source) {
                mirrored.push(name.source.clone());
            }
            for templates in &mut self.templates {
                templates.load[index].mirror_params(declared.clone());
            }
        }
        Ok(mirrored)
    }

    /// The plan against this host's resolver and interfaces.
    pub fn from_options(options: &RunOptions, nofile: u64, cpus: &[usize]) -> Result<Self, String> {
        let local = crate::sys::interfaces::local_addresses();
        let is_local = |ip: IpAddr| local.contains(&ip);
        let mut net = HostNet {
            resolve: &mut super::target::system_resolve,
            is_local: &is_local,
            can_bind: &crate::sys::interfaces::can_bind,
        };
        Self::from_options_with(options, nofile, cpus, &mut net)
    }

    pub fn from_options_with(
        options: &RunOptions,
        nofile: u64,
        cpus: &[usize],
        net: &mut HostNet<'_>,
    ) -> Result<Self, String> {
        if options.urls.is_empty() {
            return Err(
                "run needs a target URL (e.g. http://127.0.0.1:8080/mcp), or none for the embedded server"
                    .into(),
            );
        }
        let (endpoints, mut targets) =
            resolve_urls(&options.urls, &options.resolve, &options.allow_hosts, net)?;
        let replicas = plan_replicas(options, &mut targets)?;
        let https = endpoints
            .iter()
            .filter(|e| e.scheme == Scheme::Https)
            .count();
        if https != 0 && https != endpoints.len() {
            return Err(
                "give all targets as https:// or all as http:// (one run, one transport)".into(),
            );
        }
        if https == 0
            && (options.tls.insecure || options.tls.cacert.is_some() || options.tls.no_resumption)
        {
            return Err(
                "--insecure, --cacert and --tls-no-resumption are for https:// targets".into(),
            );
        }
        let tls = (https != 0).then(|| options.tls.clone());
        if let Some(tls) = &tls {
            // Fails here, before any connection, on an unreadable --cacert or no system roots.
            crate::tls::client_config(tls, 1)?;
        }
        if options.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        let segment = options.segment;
        // This process's share; every count below is of its own connections.
        let connections = segment.share(u64::from(options.connections)) as u32;
        if connections == 0 {
            return Err(format!(
                "segment {} of --connections {} has no connection: use fewer segments",
                segment.label(),
                options.connections
            ));
        }
        let first_run_connection = segment.first(u64::from(options.connections)) as u32;
        let source_ips = match &options.source_ips {
            Some(text) => parse_source_ips(text)?,
            None => Vec::new(),
        };
        check_source_ips(&source_ips, &targets, net.can_bind)?;
        let modern = options.protocol_version == MODERN_PROTOCOL_VERSION;
        let tool = options.tool.clone().unwrap_or_else(|| "echo".into());
        let mut lines = Lines::default();
        let mut read_lines = read_lines_file;
        let mix_text = match (&options.mix, &options.tool) {
            (Some(text), _) => text.clone(),
            (None, Some(_)) => "tools/call".into(),
            // 2026-07-28 removed ping.
            (None, None) if modern => "tools/list".into(),
            (None, None) => "ping".into(),
        };
        let mut entries = parse_mix(&mix_text, &tool, &mut lines, &mut read_lines)?;
        if entries.len() > ENTRIES_MAX {
            return Err(format!("--mix: at most {ENTRIES_MAX} entries"));
        }
        let tool_args = Text::parse(
            options
                .tool_args_json
                .as_deref()
                .unwrap_or(r#"{"text":"mcpstorm"}"#),
            &mut lines,
            &mut read_lines,
        )
        .map_err(|e| format!("--tool-args: {e}"))?;
        let sample = tool_args.sample(&lines);
        if !sample.trim_ascii_start().starts_with(b"{")
            || crate::proto::json::validate(&sample).is_err()
        {
            return Err(format!(
                "--tool-args must be a JSON object, got {:?}",
                tool_args.source
            ));
        }
        let args = parse_args(&options.args, &mut lines, &mut read_lines)?;
        attach_args(&mut entries, &args, &tool, &tool_args, &lines).map_err(|e| {
            if e.contains(&format!("tools/call {tool} must")) && options.args.is_empty() {
                format!(
                    "--tool-args must be a JSON object, got {:?}",
                    tool_args.source
                )
            } else {
                e
            }
        })?;
        check_entries_for_protocol(&entries, modern)?;
        if options.legacy_sse
            && (options.protocol_version != LEGACY_SSE_PROTOCOL_VERSION
                || options.streams_percent != 100)
        {
            return Err(format!(
                "--transport sse is the {LEGACY_SSE_PROTOCOL_VERSION} transport: every session holds its stream"
            ));
        }
        if !modern
            && !options.legacy_sse
            && !SESSION_PROTOCOL_VERSIONS.contains(&options.protocol_version.as_str())
        {
            return Err(format!(
                "--protocol-version {:?} is not one mcpstorm speaks ({}, {MODERN_PROTOCOL_VERSION})",
                options.protocol_version,
                SESSION_PROTOCOL_VERSIONS.join(", ")
            ));
        }
        if options.streams_percent > 100 {
            return Err("--streams: at most 100%".into());
        }
        // Every socket the run opens: the sessions' connections and their streams'.
        let sockets =
            connections as u64 + streams_among(connections, options.streams_percent) as u64;
        // Ports: with source addresses we assign (address, port) ourselves; without, the
        // kernel picks from the ephemeral range, one port per connection per target.
        let per_target = sockets.div_ceil(targets.len() as u64);
        if source_ips.is_empty() {
            let (low, high) = ephemeral_port_range();
            let ports = (high - low + 1) as u64;
            if per_target > ports {
                return Err(format!(
                    "{per_target} connections per target exceed the {ports} ephemeral ports of one source address (net.ipv4.ip_local_port_range {low}-{high}); fix: add --source-ips 127.0.0.2-127.0.0.{}",
                    1 + per_target.div_ceil(ports).min(254)
                ));
            }
        } else {
            let ports = (SOURCE_PORT_LAST - SOURCE_PORT_FIRST + 1) as u64;
            let capacity = ports * source_ips.len() as u64;
            // Ports are numbered over the whole run (segments on one host share none): the
            // whole run's sockets must fit, the streams' block after every session's.
            let run_sockets = u64::from(options.connections)
                + if segment.is_whole() || options.streams_percent == 0 {
                    u64::from(streams_among(options.connections, options.streams_percent))
                } else {
                    u64::from(options.connections)
                };
            let sockets = sockets.max(run_sockets);
            if sockets > capacity {
                return Err(format!(
                    "{sockets} connections exceed {} source addresses × {ports} ports; fix: widen --source-ips",
                    source_ips.len()
                ));
            }
        }
        if let Some(available) = mem_available_bytes() {
            check_kernel_memory(sockets, available)?;
        }
        let shard_count = options
            .shards
            .unwrap_or(cpus.len().max(1))
            .clamp(1, connections as usize);
        let slots_cap = nofile.min(u32::MAX as u64) as u32;
        let slots_per_ring = options
            .ring_slots
            .unwrap_or(slots_cap)
            .min(slots_cap)
            .max(16);
        let stream_percent = options.streams_percent;
        let sessions_per_ring =
            sessions_per_ring(slots_per_ring - REPLY_SLOTS_PER_RING, stream_percent);
        let mut shards = Vec::with_capacity(shard_count);
        let (mut first, mut first_stream) = (0u32, 0u32);
        for index in 0..shard_count {
            let connections = connections / shard_count as u32
                + u32::from((index as u32) < connections % shard_count as u32);
            let rings = connections.div_ceil(sessions_per_ring).max(1);
            let last_ring = connections - (rings - 1) * sessions_per_ring;
            let streams = (rings - 1) * streams_among(sessions_per_ring, stream_percent)
                + streams_among(last_ring, stream_percent);
            shards.push(ShardPlan {
                connections,
                rings: rings as usize,
                cpu: cpus.get(index % cpus.len().max(1)).copied(),
                first_connection: first,
                streams,
                first_stream,
            });
            first += connections;
            first_stream += streams;
        }
        let client_capabilities = options.client_replies.capabilities_json();
        let templates = targets
            .iter()
            .map(|target| {
                let config = TemplateConfig {
                    headers: &options.headers,
                    host: &target.host,
                    path: &target.path,
                    protocol_version: &options.protocol_version,
                    legacy_sse: options.legacy_sse,
                    client_capabilities: &client_capabilities,
                };
                TargetTemplates {
                    initialize: Template::new(Method::Initialize, &config),
                    initialized: Template::new(Method::Initialized, &config),
                    delete: Template::new(Method::Delete, &config),
                    load: entries
                        .iter()
                        .map(|entry| Template::for_entry(entry, &config))
                        .collect(),
                    stream_open: StreamOpenTemplate::new(&config),
                    reply: ReplyTemplate::new(&config),
                }
            })
            .collect();
        Ok(EnginePlan {
            endpoints,
            targets,
            headers: options.headers.clone(),
            tls,
            templates,
            source_ips,
            connections,
            shards,
            slots_per_ring,
            sessions_per_ring,
            stream_percent,
            legacy_sse: options.legacy_sse,
            connect_rate_per_s: options.connect_rate_per_s,
            reconnect_rate_per_s: options.reconnect_rate_per_s,
            connect_timeout: options.connect_timeout,
            connect_retries: options.connect_retries,
            request_timeout: options.request_timeout,
            ramp_timeout: options.ramp_timeout,
            entries,
            lines,
            seed: options.seed,
            protocol_version: options.protocol_version.clone(),
            recv_multishot: options.recv_multishot,
            failover: options.failover,
            replicas,
            buf_count: 512,
            buf_bytes: 4096,
            client_replies: options.client_replies.clone(),
            segment,
            run_connections: options.connections,
            first_run_connection,
        })
    }

    /// Source (address, port) of global connection `index` when binding; `None` = kernel picks.
    pub fn source_addr(&self, index: u32) -> Option<SocketAddr> {
        if self.source_ips.is_empty() {
            return None;
        }
        let ips = self.source_ips.len() as u32;
        // Numbered as in the whole run, so segments on one host never share a port.
        let index = self.first_run_connection.wrapping_add(index);
        let ip = self.source_ips[(index % ips) as usize];
        let ports = u32::from(SOURCE_PORT_LAST - SOURCE_PORT_FIRST + 1);
        let port = SOURCE_PORT_FIRST as u32 + (index / ips) % ports;
        Some(SocketAddr::new(ip, port as u16))
    }

    /// Source (address, port) of the stream of the session whose stream has global index
    /// `stream`: after every session's, so no two sockets share one.
    pub fn stream_source_addr(&self, stream: u32) -> Option<SocketAddr> {
        // After every session of the whole run; a segment's streams (at most one per
        // session) in the block of its own connections.
        self.source_addr(self.run_connections + stream)
    }

    /// Connections planned to each target (connection `i` goes to `targets[i % len]`).
    pub fn connections_per_target(&self) -> Vec<u64> {
        let n = self.targets.len() as u64;
        let total = u64::from(self.connections);
        (0..n)
            .map(|t| total / n + u64::from(t < total % n))
            .collect()
    }
}

/// Every source address must be bindable here and of the targets' family (a socket has one).
/// `--streams all|N%|off` as a percent of the sessions (0 = off).
pub fn parse_streams(text: &str) -> Result<u8, String> {
    match text {
        "all" => return Ok(100),
        "off" | "0" | "0%" => return Ok(0),
        _ => {}
    }
    text.strip_suffix('%')
        .and_then(|n| n.parse::<u8>().ok())
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| format!("--streams {text:?}: give all, off or a share such as 25%"))
}

/// Streams among sessions `0..sessions` of a ring, `percent` of them (rounded down).
pub fn streams_among(sessions: u32, percent: u8) -> u32 {
    (u64::from(sessions) * u64::from(percent) / 100) as u32
}

/// Whether session slot `slot` of a ring holds a stream: its rank among the ring's streams.
/// The slots that do are spread evenly (every fourth at 25 %), so every phase of a ramp
/// opens its share.
pub fn stream_rank(slot: u32, percent: u8) -> Option<u32> {
    let before = streams_among(slot, percent);
    (streams_among(slot + 1, percent) > before).then_some(before)
}

/// The most sessions a ring of `slots` direct descriptors holds when `percent` of them hold
/// a stream too (one more descriptor each).
pub fn sessions_per_ring(slots: u32, percent: u8) -> u32 {
    let mut n = (u64::from(slots) * 100 / (100 + u64::from(percent))) as u32;
    while n + 1 + streams_among(n + 1, percent) <= slots {
        n += 1;
    }
    while n > 1 && n + streams_among(n, percent) > slots {
        n -= 1;
    }
    n.max(1)
}

fn check_source_ips(
    source_ips: &[IpAddr],
    targets: &[Target],
    can_bind: &dyn Fn(IpAddr) -> std::io::Result<()>,
) -> Result<(), String> {
    let Some(first) = source_ips.first() else {
        return Ok(());
    };
    if let Some(t) = targets.iter().find(|t| t.addr.is_ipv4() != first.is_ipv4()) {
        return Err(format!(
            "--source-ips are IPv{} but target {} is IPv{}: give source addresses of the targets' family",
            if first.is_ipv4() { 4 } else { 6 },
            t.addr,
            if t.addr.is_ipv4() { 4 } else { 6 }
        ));
    }
    for &ip in source_ips {
        can_bind(ip).map_err(|e| {
            format!("--source-ips: {ip} is not an address this host can bind ({e}); use an address of one of its interfaces")
        })?;
    }
    Ok(())
}

/// Kernel memory a loopback connection costs, client and server socket together: /proc/meminfo
/// Slab growth measured here was 9.5–9.9 KB per connection at 20K–100K (rounded up).
pub const KERNEL_BYTES_PER_CONNECTION: u64 = 10 * 1024;

/// Refuses a run whose sockets would not fit in the memory the kernel reports available
/// (with a 20 % margin for everything else), naming the fix.
pub fn check_kernel_memory(connections: u64, available_bytes: u64) -> Result<(), String> {
    let needed = connections * KERNEL_BYTES_PER_CONNECTION;
    if needed > available_bytes / 5 * 4 {
        return Err(format!(
            "{connections} connections need about {} MiB of kernel memory (≈{} KiB per loopback connection) but only {} MiB is available; fix: fewer --connections, or free memory",
            needed >> 20,
            KERNEL_BYTES_PER_CONNECTION >> 10,
            available_bytes >> 20
        ));
    }
    Ok(())
}

fn mem_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

fn ephemeral_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .filter(|(low, high)| low <= high)
        .unwrap_or((32768, 60999))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn options() -> RunOptions {
        RunOptions {
            urls: vec!["http://127.0.0.1:9000/mcp".into()],
            connections: 10,
            shards: Some(3),
            connect_rate_per_s: 0,
            reconnect_rate_per_s: 0,
            connect_timeout: Duration::from_secs(5),
            connect_retries: 0,
            request_timeout: Duration::from_secs(5),
            ramp_timeout: Duration::from_secs(60),
            source_ips: None,
            resolve: Vec::new(),
            allow_hosts: Vec::new(),
            headers: Vec::new(),
            tls: Default::default(),
            embedded_tls: false,
            mix: None,
            tool: None,
            tool_args_json: None,
            args: Vec::new(),
            seed: 1,
            protocol_version: "2025-11-25".into(),
            ring_slots: Some(4),
            server_pid: None,
            streams_percent: 0,
            embedded_notify_every: None,
            legacy_sse: false,
            recv_multishot: true,
            failover: None,
            replica_of_url: Vec::new(),
            embedded_replicas: 1,
            client_replies: Default::default(),
            segment: Default::default(),
        }
    }

    /// A host with `localhost` (::1 and 127.0.0.1) in its resolver and 192.0.2.10 on an
    /// interface.
    fn fake_resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        match host {
            "localhost" => Ok(vec![
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            ]),
            _ => Err(std::io::Error::other("unknown host")),
        }
    }

    const OWN_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

    fn fake_can_bind(ip: IpAddr) -> std::io::Result<()> {
        if ip.is_loopback() || ip == OWN_ADDRESS {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL))
        }
    }

    fn plan_of(o: &RunOptions) -> Result<EnginePlan, String> {
        let mut net = HostNet {
            resolve: &mut fake_resolve,
            is_local: &|ip| ip == OWN_ADDRESS,
            can_bind: &fake_can_bind,
        };
        EnginePlan::from_options_with(o, 20_000, &[0, 1], &mut net)
    }

    #[test]
    fn targets_are_every_address_of_every_url() {
        let mut o = options();
        o.urls = vec![
            "http://localhost:9000/a?b=1".into(),
            "http://192.0.2.10/mcp".into(),
        ];
        o.connections = 7;
        let plan = plan_of(&o).unwrap();
        let addrs: Vec<String> = plan.targets.iter().map(|t| t.addr.to_string()).collect();
        assert_eq!(addrs, ["[::1]:9000", "127.0.0.1:9000", "192.0.2.10:80"]);
        assert_eq!(plan.targets[1].host, "localhost:9000");
        assert_eq!(plan.targets[1].path, "/a?b=1");
        assert_eq!(plan.targets[2].endpoint, 1);
        assert_eq!(plan.connections_per_target(), [3, 2, 2]);
        o.urls = vec!["http://198.51.100.1:80/mcp".into()];
        let error = plan_of(&o).unwrap_err();
        assert!(error.contains("--allow-host 198.51.100.1"), "{error}");
        o.allow_hosts = vec!["198.51.100.0/24".into()];
        assert!(plan_of(&o).is_ok());
        o.urls = vec![
            "https://127.0.0.1/mcp".into(),
            "http://127.0.0.1/mcp".into(),
        ];
        assert!(plan_of(&o).unwrap_err().contains("all as http://"));
        o.urls = vec!["http://127.0.0.1/mcp".into()];
        o.tls.insecure = true;
        assert!(plan_of(&o).unwrap_err().contains("for https://"));
        o.urls = vec!["https://localhost:8443/mcp".into()];
        let plan = plan_of(&o).unwrap();
        assert_eq!(plan.tls.as_ref().map(|t| t.insecure), Some(true));
        assert!(plan.targets.iter().all(|t| t.tls_name.is_some()));
    }

    #[test]
    fn source_ips() {
        assert_eq!(parse_source_ips("127.0.0.2-127.0.0.4").unwrap().len(), 3);
        assert_eq!(
            parse_source_ips("127.0.0.2, 127.0.0.9").unwrap()[1],
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))
        );
        assert_eq!(parse_source_ips("fd00::1-fd00::3").unwrap().len(), 3);
        assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_source_ips("127.0.0.1-::1").is_err());
        assert!(parse_source_ips("127.0.0.1,::1").is_err());
        assert!(parse_source_ips("").is_err());
        let mut o = options();
        o.source_ips = Some("192.0.2.10".into());
        assert!(plan_of(&o).is_ok());
        o.source_ips = Some("192.0.2.11".into());
        let error = plan_of(&o).unwrap_err();
        assert!(
            error.contains("192.0.2.11 is not an address this host can bind"),
            "{error}"
        );
        o.source_ips = Some("::1".into());
        assert!(plan_of(&o).unwrap_err().contains("family"));
    }

    #[test]
    fn replicas_group_targets_and_need_two() {
        let mut o = options();
        o.urls = vec![
            "http://127.0.0.1:9000/mcp".into(),
            "http://127.0.0.1:9001/mcp".into(),
            "http://localhost:9002/mcp".into(),
        ];
        // Without --failover each URL is its own, and no replica list is planned.
        assert!(plan_of(&o).unwrap().replicas.is_empty());
        o.failover = Some(super::super::replicas::FailoverPolicy::RoundRobin);
        let plan = plan_of(&o).unwrap();
        assert_eq!(plan.replicas.len(), 3);
        // localhost is two addresses, both of the third replica.
        let replicas: Vec<u16> = plan.targets.iter().map(|t| t.replica).collect();
        assert_eq!(replicas, [0, 1, 2, 2]);
        // An embedded replica's ports: the first two URLs are one replica.
        o.replica_of_url = vec![0, 0, 1];
        let plan = plan_of(&o).unwrap();
        assert_eq!(plan.replicas[0].len(), 2);
        let replicas: Vec<u16> = plan.targets.iter().map(|t| t.replica).collect();
        assert_eq!(replicas, [0, 0, 1, 1]);
        o.replica_of_url = vec![0, 0, 0];
        assert!(plan_of(&o).unwrap_err().contains("at least two replicas"));
        o.replica_of_url = vec![0, 2, 2];
        assert!(plan_of(&o).unwrap_err().contains("replica 2 has no URL"));
    }

    #[test]
    fn mix_entries_and_their_arguments() {
        let mut o = options();
        o.mix = Some("tools/call=search:80,tools/list:10,ping:10,resources/read=mcpstorm://items/{{int 1 5}}:5".into());
        o.args = vec![r#"search={"q":"{{str 3}}"}"#.into()];
        let plan = plan_of(&o).unwrap();
        let labels: Vec<String> = plan.entries.iter().map(|e| e.label()).collect();
        assert_eq!(
            labels,
            [
                "tools/call search",
                "tools/list",
                "ping",
                "resources/read mcpstorm://items/{{int 1 5}}"
            ]
        );
        assert_eq!(plan.templates[0].load.len(), 4);
        assert!(plan.templates[0].load[0].is_generated());
        assert!(!plan.templates[0].load[1].is_generated());
        o.args = vec!["search=[1]".into()];
        assert!(plan_of(&o).unwrap_err().contains("JSON object"));
        o.args = vec!["nobody={}".into()];
        assert!(plan_of(&o).unwrap_err().contains("no tools/call"));
        o.args = vec!["search".into()];
        assert!(plan_of(&o).unwrap_err().contains("NAME=JSON"));
        o.args.clear();
        o.mix = Some("initialize:5".into());
        assert!(plan_of(&o).is_err());
        o.mix = Some("ping:0".into());
        assert!(plan_of(&o).is_err());
    }

    #[test]
    fn what_2026_07_28_cannot_carry_is_refused() {
        let mut o = options();
        o.protocol_version = "2026-07-28".into();
        for (mix, why) in [
            ("ping", "has no ping"),
            ("logging/setLevel=info", "has no logging/setLevel"),
            ("resources/read=x://{{int 1 2}}", "cannot be generated"),
        ] {
            o.mix = Some(mix.into());
            let error = plan_of(&o).unwrap_err();
            assert!(error.contains(why), "{mix}: {error}");
        }
        o.mix = Some("resources/read=x://fixed,tools/call=echo".into());
        assert!(plan_of(&o).is_ok());
    }

    #[test]
    fn slices_cover_every_connection_and_rings_fit_slots() {
        let plan = plan_of(&options()).unwrap();
        let total: u32 = plan.shards.iter().map(|s| s.connections).sum();
        assert_eq!(total, 10);
        assert_eq!(plan.shards[0].connections, 4);
        assert_eq!(plan.shards[0].rings, 1);
        assert_eq!(plan.shards[1].first_connection, 4);
        assert_eq!(plan.shards[2].cpu, Some(0));
        let mut big = options();
        big.connections = 100;
        big.ring_slots = Some(16);
        big.shards = Some(2);
        let plan = plan_of(&big).unwrap();
        assert_eq!(plan.shards[0].rings, 4);
        assert_eq!(plan.slots_per_ring, 16);
    }

    #[test]
    fn limits_fail_before_connecting_with_the_fix() {
        let mut o = options();
        o.connections = 200_000;
        let error = plan_of(&o).unwrap_err();
        assert!(error.contains("--source-ips"), "{error}");
        o.source_ips = Some("127.0.0.2-127.0.0.5".into());
        assert!(plan_of(&o).is_ok());
        o.tool_args_json = Some("[1]".into());
        assert!(plan_of(&o).is_err());
        let mut o = options();
        o.protocol_version = "2026-07-28".into();
        let plan = plan_of(&o).unwrap();
        assert_eq!(plan.entries[0].method, Method::ToolsList);
        o.mix = Some("ping:1,tools/list:1".into());
        assert!(plan_of(&o).is_err());
        o.protocol_version = "1999-01-01".into();
        o.mix = None;
        assert!(plan_of(&o).is_err());
    }

    #[test]
    fn kernel_memory_check_names_the_fix() {
        assert!(check_kernel_memory(100_000, 24 << 30).is_ok());
        let error = check_kernel_memory(1_000_000, 4 << 30).unwrap_err();
        assert!(
            error.contains("9765 MiB") && error.contains("fewer --connections"),
            "{error}"
        );
    }

    #[test]
    fn source_addresses_are_distinct() {
        let mut o = options();
        o.source_ips = Some("127.0.0.2-127.0.0.3".into());
        o.connections = 1000;
        let plan = plan_of(&o).unwrap();
        let set: std::collections::HashSet<_> =
            (0..1000).map(|i| plan.source_addr(i).unwrap()).collect();
        assert_eq!(set.len(), 1000);
    }

    /// Three segments of one run: their connections tile the run's, each with the source
    /// address one run would have given it (so segments on one host share no port), and
    /// their streams' addresses after every session's.
    #[test]
    fn segments_share_the_connections_and_ports_of_one_run() {
        let mut o = options();
        o.source_ips = Some("127.0.0.2-127.0.0.3".into());
        o.connections = 1001;
        o.streams_percent = 100;
        let whole = plan_of(&o).unwrap();
        let mut sessions = std::collections::HashSet::new();
        let mut total = 0;
        for index in 0..3 {
            o.segment = crate::engine::segment::ExecutionSegment::new(index, 3).unwrap();
            let plan = plan_of(&o).unwrap();
            assert_eq!(plan.run_connections, 1001);
            let shards: u32 = plan.shards.iter().map(|s| s.connections).sum();
            assert_eq!(shards, plan.connections);
            for k in 0..plan.connections {
                let run_index = plan.first_run_connection + k;
                assert_eq!(plan.source_addr(k), whole.source_addr(run_index));
                assert!(sessions.insert(plan.source_addr(k).unwrap()));
                assert!(
                    sessions.insert(plan.stream_source_addr(k).unwrap()),
                    "stream {k}"
                );
            }
            total += plan.connections;
        }
        assert_eq!(total, 1001);
        assert_eq!(
            sessions.len(),
            2002,
            "every socket of the run its own address"
        );
        o.connections = 2;
        o.segment = crate::engine::segment::ExecutionSegment::new(2, 3).unwrap();
        let refused = plan_of(&o).unwrap_err();
        assert!(refused.contains("has no connection"), "{refused}");
    }
}
