//! The validated, immutable plan of a `mcpstorm run`: targets, source addresses, shards × rings,
//! each shard's slice of the connections, rates, the request mix and the pre-encoded request
//! templates. Part of `engine/`; built before any socket opens, so every limit that would stop
//! the run (ring slots, ports per source→target pair) fails here with the fix in the message.
//! No I/O beyond reading limits.

use super::template::{MODERN_PROTOCOL_VERSION, Method, Template, TemplateConfig};

/// Protocol revisions with initialize and `Mcp-Session-Id`.
pub const SESSION_PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

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
    pub mix: Option<String>,
    pub tool: Option<String>,
    pub tool_args_json: Option<String>,
    pub protocol_version: String,
    /// Direct descriptors per ring [default and max: RLIMIT_NOFILE]; lower forces more rings.
    pub ring_slots: Option<u32>,
    /// Keep a multishot receive armed on every connection (true), or arm a single-shot one
    /// only while a response is awaited (false).
    pub recv_multishot: bool,
    /// A server process whose RSS growth per session to report (the embedded child's pid
    /// when no URL is given).
    pub server_pid: Option<u32>,
}

/// One target: where to connect and what to put in Host and the request line.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

/// Pre-encoded requests for one target, indexed by `Method as usize`.
#[derive(Debug, Clone)]
pub struct TargetTemplates {
    pub by_method: Vec<Template>,
}

/// One shard's part of the run.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    pub connections: u32,
    pub rings: usize,
    pub cpu: Option<usize>,
    /// Global index of this shard's first connection (spreads targets and source ports).
    pub first_connection: u32,
}

#[derive(Debug, Clone)]
pub struct EnginePlan {
    pub targets: Vec<Target>,
    pub templates: Vec<TargetTemplates>,
    /// Source addresses to bind; empty = let the kernel choose.
    pub source_ips: Vec<Ipv4Addr>,
    pub connections: u32,
    pub shards: Vec<ShardPlan>,
    pub slots_per_ring: u32,
    pub connect_rate_per_s: u64,
    /// Reconnects per second over all shards (0 = unpaced).
    pub reconnect_rate_per_s: u64,
    pub connect_timeout: Duration,
    pub connect_retries: u8,
    pub request_timeout: Duration,
    pub ramp_timeout: Duration,
    /// (method, weight) with weights > 0.
    pub mix: Vec<(Method, u32)>,
    pub protocol_version: String,
    pub recv_multishot: bool,
    pub buf_count: u16,
    pub buf_bytes: u32,
}

/// Smallest source port the plan assigns when binding (above the usual ephemeral range start
/// of the well-known services, below nothing the kernel cares about on loopback).
pub const SOURCE_PORT_FIRST: u16 = 10_000;
pub const SOURCE_PORT_LAST: u16 = 65_000;

/// Parses `http://127.0.0.1:8080/mcp`. Only loopback addresses are accepted: this tool is run
/// on a load host against servers it owns, and tests must never leave the machine.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/mcp"),
    };
    let addr: SocketAddr = if authority.contains(':') {
        authority.parse().map_err(|_| {
            format!("{url:?}: the host must be an IP address with a port (e.g. 127.0.0.1:8080)")
        })?
    } else {
        let ip: IpAddr = authority
            .parse()
            .map_err(|_| format!("{url:?}: the host must be an IP address"))?;
        SocketAddr::new(ip, 80)
    };
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{url:?}: only loopback targets (127.0.0.0/8, ::1) are allowed"
        ));
    }
    if !addr.is_ipv4() {
        return Err(format!("{url:?}: IPv6 targets are not supported yet"));
    }
    Ok(Target {
        addr,
        host: addr.to_string(),
        path: path.to_string(),
    })
}

/// Parses `127.0.0.2-127.0.0.9` or `127.0.0.2,127.0.0.5` (loopback only).
pub fn parse_source_ips(text: &str) -> Result<Vec<Ipv4Addr>, String> {
    let mut ips = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |s: &str| -> Result<Ipv4Addr, String> {
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("--source-ips: {s:?} is not an IPv4 address"))
        };
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
                if last < first || last - first > 65_535 {
                    return Err(format!("--source-ips: bad range {part:?}"));
                }
                ips.extend((first..=last).map(Ipv4Addr::from));
            }
            None => ips.push(parse(part)?),
        }
    }
    if ips.is_empty() {
        return Err("--source-ips: no address given".into());
    }
    if let Some(ip) = ips.iter().find(|ip| !ip.is_loopback()) {
        return Err(format!(
            "--source-ips: {ip} is not a loopback address (only 127.0.0.0/8 is allowed)"
        ));
    }
    Ok(ips)
}

/// Parses `tools/call:80,tools/list:10,ping:10` (a bare method has weight 1).
pub fn parse_mix(text: &str) -> Result<Vec<(Method, u32)>, String> {
    let mut mix = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = match part.rsplit_once(':') {
            Some((name, weight)) => {
                let weight: u32 = weight
                    .trim()
                    .parse()
                    .map_err(|_| format!("--mix: bad weight in {part:?}"))?;
                (name.trim(), weight)
            }
            None => (part, 1),
        };
        let method = Method::from_name(name).ok_or_else(|| {
            format!("--mix: unknown method {name:?} (use ping, tools/list, tools/call)")
        })?;
        if weight > 0 {
            mix.push((method, weight));
        }
    }
    if mix.is_empty() {
        return Err("--mix: no method with a weight above 0".into());
    }
    Ok(mix)
}

impl EnginePlan {
    pub fn from_options(options: &RunOptions, nofile: u64, cpus: &[usize]) -> Result<Self, String> {
        if options.urls.is_empty() {
            return Err(
                "run needs a target URL (e.g. http://127.0.0.1:8080/mcp), or none for the embedded server"
                    .into(),
            );
        }
        let targets = options
            .urls
            .iter()
            .map(|u| parse_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        if options.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        let source_ips = match &options.source_ips {
            Some(text) => parse_source_ips(text)?,
            None => Vec::new(),
        };
        let modern = options.protocol_version == MODERN_PROTOCOL_VERSION;
        let mix = match (&options.mix, &options.tool) {
            (Some(text), _) => parse_mix(text)?,
            (None, Some(_)) => vec![(Method::ToolsCall, 1)],
            // 2026-07-28 removed ping.
            (None, None) if modern => vec![(Method::ToolsList, 1)],
            (None, None) => vec![(Method::Ping, 1)],
        };
        if modern && mix.iter().any(|&(m, _)| m == Method::Ping) {
            return Err(format!(
                "--mix: protocol {MODERN_PROTOCOL_VERSION} has no ping; use tools/call or tools/list"
            ));
        }
        if !modern && !SESSION_PROTOCOL_VERSIONS.contains(&options.protocol_version.as_str()) {
            return Err(format!(
                "--protocol-version {:?} is not one mcpstorm speaks ({}, {MODERN_PROTOCOL_VERSION})",
                options.protocol_version,
                SESSION_PROTOCOL_VERSIONS.join(", ")
            ));
        }
        let tool = options.tool.clone().unwrap_or_else(|| "echo".into());
        let tool_args_json = options
            .tool_args_json
            .clone()
            .unwrap_or_else(|| r#"{"text":"mcpstorm"}"#.into());
        if !tool_args_json.trim_start().starts_with('{')
            || crate::proto::json::validate(tool_args_json.as_bytes()).is_err()
        {
            return Err(format!(
                "--tool-args must be a JSON object, got {tool_args_json:?}"
            ));
        }
        // Ports: with source addresses we assign (address, port) ourselves; without, the
        // kernel picks from the ephemeral range, one port per connection per target.
        let per_target = (options.connections as u64).div_ceil(targets.len() as u64);
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
            if options.connections as u64 > capacity {
                return Err(format!(
                    "{} connections exceed {} source addresses × {ports} ports; fix: widen --source-ips",
                    options.connections,
                    source_ips.len()
                ));
            }
        }
        if let Some(available) = mem_available_bytes() {
            check_kernel_memory(options.connections as u64, available)?;
        }
        let shard_count = options
            .shards
            .unwrap_or(cpus.len().max(1))
            .clamp(1, options.connections as usize);
        let slots_cap = nofile.min(u32::MAX as u64) as u32;
        let slots_per_ring = options
            .ring_slots
            .unwrap_or(slots_cap)
            .min(slots_cap)
            .max(16);
        let mut shards = Vec::with_capacity(shard_count);
        let mut first = 0u32;
        for index in 0..shard_count {
            let connections = options.connections / shard_count as u32
                + u32::from((index as u32) < options.connections % shard_count as u32);
            shards.push(ShardPlan {
                connections,
                rings: connections.div_ceil(slots_per_ring).max(1) as usize,
                cpu: cpus.get(index % cpus.len().max(1)).copied(),
                first_connection: first,
            });
            first += connections;
        }
        let templates = targets
            .iter()
            .map(|target| {
                let config = TemplateConfig {
                    host: &target.host,
                    path: &target.path,
                    protocol_version: &options.protocol_version,
                    tool: &tool,
                    tool_args_json: &tool_args_json,
                };
                TargetTemplates {
                    by_method: [
                        Method::Initialize,
                        Method::Initialized,
                        Method::Ping,
                        Method::ToolsList,
                        Method::ToolsCall,
                        Method::Delete,
                    ]
                    .into_iter()
                    .map(|m| Template::new(m, &config))
                    .collect(),
                }
            })
            .collect();
        Ok(EnginePlan {
            targets,
            templates,
            source_ips,
            connections: options.connections,
            shards,
            slots_per_ring,
            connect_rate_per_s: options.connect_rate_per_s,
            reconnect_rate_per_s: options.reconnect_rate_per_s,
            connect_timeout: options.connect_timeout,
            connect_retries: options.connect_retries,
            request_timeout: options.request_timeout,
            ramp_timeout: options.ramp_timeout,
            mix,
            protocol_version: options.protocol_version.clone(),
            recv_multishot: options.recv_multishot,
            buf_count: 512,
            buf_bytes: 4096,
        })
    }

    /// Source (address, port) of global connection `index` when binding; `None` = kernel picks.
    pub fn source_addr(&self, index: u32) -> Option<SocketAddr> {
        if self.source_ips.is_empty() {
            return None;
        }
        let ips = self.source_ips.len() as u32;
        let ip = self.source_ips[(index % ips) as usize];
        let ports = u32::from(SOURCE_PORT_LAST - SOURCE_PORT_FIRST + 1);
        let port = SOURCE_PORT_FIRST as u32 + (index / ips) % ports;
        Some(SocketAddr::new(IpAddr::V4(ip), port as u16))
    }
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
mod tests {
    use super::*;

    fn options() -> RunOptions {
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
            mix: None,
            tool: None,
            tool_args_json: None,
            protocol_version: "2025-11-25".into(),
            ring_slots: Some(4),
            server_pid: None,
            recv_multishot: true,
        }
    }

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/mcp").unwrap();
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/mcp");
        assert_eq!(parse_url("http://127.0.0.5").unwrap().addr.port(), 80);
        assert!(parse_url("http://10.0.0.1:80/mcp").is_err());
        assert!(parse_url("https://127.0.0.1:80/mcp").is_err());
        assert!(parse_url("http://localhost:80/mcp").is_err());
    }

    #[test]
    fn source_ips() {
        assert_eq!(parse_source_ips("127.0.0.2-127.0.0.4").unwrap().len(), 3);
        assert_eq!(
            parse_source_ips("127.0.0.2, 127.0.0.9").unwrap()[1],
            Ipv4Addr::new(127, 0, 0, 9)
        );
        assert!(parse_source_ips("192.168.0.1").is_err());
        assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_source_ips("").is_err());
    }

    #[test]
    fn mix() {
        let mix = parse_mix("tools/call:80,tools/list:10,ping:10").unwrap();
        assert_eq!(mix[0], (Method::ToolsCall, 80));
        assert_eq!(mix.len(), 3);
        assert_eq!(parse_mix("ping").unwrap(), vec![(Method::Ping, 1)]);
        assert!(parse_mix("initialize:5").is_err());
        assert!(parse_mix("ping:0").is_err());
        assert!(parse_mix("ping:x").is_err());
    }

    #[test]
    fn slices_cover_every_connection_and_rings_fit_slots() {
        let plan = EnginePlan::from_options(&options(), 20_000, &[0, 1]).unwrap();
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
        let plan = EnginePlan::from_options(&big, 20_000, &[0, 1]).unwrap();
        assert_eq!(plan.shards[0].rings, 4);
        assert_eq!(plan.slots_per_ring, 16);
    }

    #[test]
    fn limits_fail_before_connecting_with_the_fix() {
        let mut o = options();
        o.connections = 200_000;
        let error = EnginePlan::from_options(&o, 20_000, &[0]).unwrap_err();
        assert!(error.contains("--source-ips"), "{error}");
        o.source_ips = Some("127.0.0.2-127.0.0.5".into());
        assert!(EnginePlan::from_options(&o, 20_000, &[0]).is_ok());
        o.tool_args_json = Some("[1]".into());
        assert!(EnginePlan::from_options(&o, 20_000, &[0]).is_err());
        let mut o = options();
        o.protocol_version = "2026-07-28".into();
        let plan = EnginePlan::from_options(&o, 20_000, &[0]).unwrap();
        assert_eq!(plan.mix, vec![(Method::ToolsList, 1)]);
        o.mix = Some("ping:1,tools/list:1".into());
        assert!(EnginePlan::from_options(&o, 20_000, &[0]).is_err());
        o.protocol_version = "1999-01-01".into();
        o.mix = None;
        assert!(EnginePlan::from_options(&o, 20_000, &[0]).is_err());
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
        let plan = EnginePlan::from_options(&o, 20_000, &[0]).unwrap();
        let set: std::collections::HashSet<_> =
            (0..1000).map(|i| plan.source_addr(i).unwrap()).collect();
        assert_eq!(set.len(), 1000);
    }
}
