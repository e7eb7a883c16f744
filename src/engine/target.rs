//! Where a run sends its connections: target URLs parsed (with the `url` crate), host names
//! resolved once at plan time (`--resolve HOST:PORT:ADDR` overrides, as in curl), and the
//! safety allowlist that keeps a tool opening 100K connections from hitting a host by a typo.
//! Part of `engine/`, called by `plan.rs` before any socket opens; the resolver and the test
//! "is this address of this host" are passed in, so everything here is unit-tested without a
//! network.

use std::net::{IpAddr, SocketAddr};

/// `http://` or `https://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// One target URL, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as the user wrote it.
    pub url: String,
    pub scheme: Scheme,
    /// Host to resolve (no brackets around an IPv6 literal), lowercased as DNS compares.
    pub host: String,
    /// The literal address when the URL names one instead of a host name.
    pub literal: Option<IpAddr>,
    pub port: u16,
    /// The URL's authority exactly as written: the `Host` header.
    pub authority: String,
    /// Path and query exactly as written (`/mcp` when the URL has neither).
    pub path_and_query: String,
}

impl Endpoint {
    /// The endpoint as it is printed in the summary: scheme, authority, path and query.
    pub fn display(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{}", self.authority, self.path_and_query)
    }
}

/// Parses a target URL. The `url` crate validates it (scheme, host syntax, IPv6 literal, port
/// range); the `Host` header and the request target are then taken from the text as written,
/// because `url` normalizes (drops a default port, percent-encodes) and a server may route on
/// the exact bytes.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let parsed = url::Url::parse(text).map_err(|e| format!("{text:?}: not a URL ({e})"))?;
    let scheme = match parsed.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(format!(
                "{text:?}: scheme {other}:// is not one mcpstorm speaks (http://, https://)"
            ));
        }
    };
    if parsed.fragment().is_some() {
        return Err(format!(
            "{text:?}: a #fragment is never sent to a server; remove it"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "{text:?}: credentials in the URL are not sent; pass them as a header (--header-env 'Authorization=VAR')"
        ));
    }
    let (host, literal) = match parsed.host() {
        Some(url::Host::Domain(name)) => (name.to_ascii_lowercase(), None),
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
        None => return Err(format!("{text:?}: the URL names no host")),
    };
    let Some(port) = parsed.port_or_known_default() else {
        return Err(format!("{text:?}: no port"));
    };
    // The authority as written: between "//" and the first '/', '?' or '#'.
    let after_scheme = text
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{text:?}: expected scheme://host"))?;
    let end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let authority = after_scheme[..end].to_string();
    let rest = &after_scheme[end..];
    let path_and_query = if rest.is_empty() {
        "/mcp".to_string()
    } else if rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_string()
    };
    if path_and_query
        .bytes()
        .any(|b| b <= b' ' || b == 0x7f || b >= 0x80)
    {
        return Err(format!(
            "{text:?}: the path has spaces, control or non-ASCII bytes; percent-encode them"
        ));
    }
    Ok(Endpoint {
        url: text.to_string(),
        scheme,
        host,
        literal,
        port,
        authority,
        path_and_query,
    })
}

/// `--resolve HOST:PORT:ADDR[,ADDR…]`: connect to these addresses for HOST:PORT instead of
/// asking the resolver (curl's syntax; an IPv6 address may be in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOverride {
    pub host: String,
    pub port: u16,
    pub addrs: Vec<IpAddr>,
}

pub fn parse_resolve(text: &str) -> Result<ResolveOverride, String> {
    let bad =
        || format!("--resolve {text:?}: expected HOST:PORT:ADDR (e.g. example.com:443:10.0.0.7)");
    let (host, rest) = text.split_once(':').ok_or_else(bad)?;
    let (port, addrs) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let mut parsed = Vec::new();
    for addr in addrs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let bare = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        parsed.push(
            bare.parse::<IpAddr>()
                .map_err(|_| format!("--resolve {text:?}: {addr:?} is not an IP address"))?,
        );
    }
    if host.is_empty() || parsed.is_empty() {
        return Err(bad());
    }
    Ok(ResolveOverride {
        host: host.to_ascii_lowercase(),
        port,
        addrs: parsed,
    })
}

/// One `--allow-host` entry: a host name as the URL writes it, or an address / CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    Host(String),
    Net { addr: IpAddr, prefix_len: u8 },
}

pub fn parse_allow_host(text: &str) -> Result<AllowEntry, String> {
    let text = text.trim();
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let (addr_text, prefix) = match bare.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (bare, None),
    };
    if let Ok(addr) = addr_text.parse::<IpAddr>() {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= bits)
                .ok_or_else(|| format!("--allow-host {text:?}: bad prefix length"))?,
        };
        return Ok(AllowEntry::Net { addr, prefix_len });
    }
    if prefix.is_some()
        || text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!(
            "--allow-host {text:?}: expected a host name, an address or a CIDR block (10.0.0.0/8)"
        ));
    }
    Ok(AllowEntry::Host(text.to_ascii_lowercase()))
}

impl AllowEntry {
    fn allows(&self, host: &str, addr: IpAddr) -> bool {
        match self {
            AllowEntry::Host(name) => name == host,
            AllowEntry::Net {
                addr: net,
                prefix_len,
            } => in_net(addr, *net, *prefix_len),
        }
    }
}

/// `addr` is inside `net/prefix_len` (an IPv4-mapped IPv6 address counts as its IPv4 one).
pub fn in_net(addr: IpAddr, net: IpAddr, prefix_len: u8) -> bool {
    let canonical = |a: IpAddr| match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    };
    match (canonical(addr), canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let shift = 32 - u32::from(prefix_len.min(32));
            shift == 32 || u32::from(a) >> shift == u32::from(n) >> shift
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let shift = 128 - u32::from(prefix_len.min(128));
            shift == 128 || u128::from(a) >> shift == u128::from(n) >> shift
        }
        _ => false,
    }
}

/// One address the run connects to, with the endpoint it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    pub endpoint: usize,
    pub addr: SocketAddr,
}

/// Resolves every endpoint once: a literal is itself, a `--resolve` override wins, else every
/// A/AAAA record `resolve` returns (deduplicated, in the resolver's order). Then every address
/// must be loopback, this host's own (`is_local`), or allowed by `--allow-host`; the first one
/// that is not stops the run with the flag that would allow it.
pub fn resolve_targets(
    endpoints: &[Endpoint],
    overrides: &[ResolveOverride],
    allow: &[AllowEntry],
    resolve: &mut dyn FnMut(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
    is_local: &dyn Fn(IpAddr) -> bool,
) -> Result<Vec<ResolvedTarget>, String> {
    let mut targets = Vec::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let mut addrs: Vec<IpAddr> = if let Some(ip) = endpoint.literal {
            vec![ip]
        } else if let Some(o) = overrides
            .iter()
            .find(|o| o.host == endpoint.host && o.port == endpoint.port)
        {
            o.addrs.clone()
        } else {
            resolve(&endpoint.host, endpoint.port)
                .map_err(|e| format!("{}: cannot resolve {:?}: {e}", endpoint.url, endpoint.host))?
                .into_iter()
                .map(|a| a.ip())
                .collect()
        };
        let mut seen = Vec::with_capacity(addrs.len());
        addrs.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        if addrs.is_empty() {
            return Err(format!(
                "{}: {:?} resolved to no address",
                endpoint.url, endpoint.host
            ));
        }
        for ip in addrs {
            let allowed = ip.is_loopback()
                || is_local(ip)
                || allow.iter().any(|entry| entry.allows(&endpoint.host, ip));
            if !allowed {
                let named = if endpoint.literal.is_some() {
                    format!("{ip}")
                } else {
                    format!("{} ({ip})", endpoint.host)
                };
                return Err(format!(
                    "refusing to open connections to {named}: it is neither loopback nor an address of this host. If this is the server you mean to load, say so with --allow-host {} (a host name, an address or a CIDR block; repeatable)",
                    if endpoint.literal.is_some() {
                        ip.to_string()
                    } else {
                        endpoint.host.clone()
                    }
                ));
            }
            targets.push(ResolvedTarget {
                endpoint: index,
                addr: SocketAddr::new(ip, endpoint.port),
            });
        }
    }
    Ok(targets)
}

/// The system resolver (getaddrinfo through std): every A and AAAA record.
pub fn system_resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    Ok((host, port).to_socket_addrs()?.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn endpoints_keep_what_was_written() {
        let e = parse_endpoint("http://127.0.0.1:8080/mcp").unwrap();
        assert_eq!(e.authority, "127.0.0.1:8080");
        assert_eq!(e.path_and_query, "/mcp");
        assert_eq!(e.literal, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let e = parse_endpoint("http://LocalHost/a/b?x=1&y").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("localhost", 80));
        assert_eq!(e.authority, "LocalHost");
        assert_eq!(e.path_and_query, "/a/b?x=1&y");
        let e = parse_endpoint("https://[::1]:8443").unwrap();
        assert_eq!(e.scheme, Scheme::Https);
        assert_eq!(e.literal, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(e.authority, "[::1]:8443");
        assert_eq!(e.path_and_query, "/mcp");
        assert_eq!(e.display(), "https://[::1]:8443/mcp");
        assert_eq!(parse_endpoint("https://mcp.example.com").unwrap().port, 443);
        assert_eq!(
            parse_endpoint("http://h:1?q").unwrap().path_and_query,
            "/?q"
        );
    }

    #[test]
    fn endpoints_refused_with_the_reason() {
        for (url, reason) in [
            ("ftp://127.0.0.1/", "scheme"),
            ("http://127.0.0.1/mcp#top", "fragment"),
            ("http://user:pw@127.0.0.1/", "credentials"),
            ("http://127.0.0.1:99999/", "not a URL"),
            ("127.0.0.1:80", "not a URL"),
            ("localhost:80", "scheme"),
            ("http://[::1/", "not a URL"),
        ] {
            let error = parse_endpoint(url).unwrap_err();
            assert!(error.contains(reason), "{url}: {error}");
        }
    }

    #[test]
    fn resolve_overrides_parse_as_curl_writes_them() {
        let o = parse_resolve("Example.com:443:10.0.0.7,[::1]").unwrap();
        assert_eq!(o.host, "example.com");
        assert_eq!(o.port, 443);
        assert_eq!(
            o.addrs,
            vec![
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
        assert!(parse_resolve("example.com:443").is_err());
        assert!(parse_resolve("example.com:x:1.2.3.4").is_err());
        assert!(parse_resolve("example.com:1:nope").is_err());
    }

    #[test]
    fn allow_entries_and_networks() {
        assert_eq!(
            parse_allow_host("MCP.example.com").unwrap(),
            AllowEntry::Host("mcp.example.com".into())
        );
        let net = parse_allow_host("10.0.0.0/8").unwrap();
        assert!(net.allows("x", "10.200.1.2".parse().unwrap()));
        assert!(!net.allows("x", "11.0.0.1".parse().unwrap()));
        assert!(net.allows("x", "::ffff:10.1.1.1".parse().unwrap()));
        let one = parse_allow_host("[fd00::5]").unwrap();
        assert!(one.allows("x", "fd00::5".parse().unwrap()));
        assert!(!one.allows("x", "fd00::6".parse().unwrap()));
        assert!(parse_allow_host("fd00::/129").is_err());
        assert!(parse_allow_host("bad host").is_err());
        assert!(
            parse_allow_host("0.0.0.0/0")
                .unwrap()
                .allows("x", "8.8.8.8".parse().unwrap())
        );
    }

    fn resolver(
        answers: &'static [(&'static str, &'static [&'static str])],
    ) -> impl FnMut(&str, u16) -> std::io::Result<Vec<SocketAddr>> {
        move |host, port| {
            answers
                .iter()
                .find(|(h, _)| *h == host)
                .map(|(_, addrs)| {
                    addrs
                        .iter()
                        .map(|a| SocketAddr::new(a.parse().unwrap(), port))
                        .collect()
                })
                .ok_or_else(|| std::io::Error::other("no such host"))
        }
    }

    #[test]
    fn every_record_is_a_target_and_others_need_the_allowlist() {
        let endpoints = [parse_endpoint("http://svc.test:8080/mcp").unwrap()];
        let mut resolve = resolver(&[("svc.test", &["10.0.0.1", "10.0.0.2", "10.0.0.1"])]);
        let local = |ip: IpAddr| ip == IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let error = resolve_targets(&endpoints, &[], &[], &mut resolve, &local).unwrap_err();
        assert!(
            error.contains("svc.test (10.0.0.2)") && error.contains("--allow-host svc.test"),
            "{error}"
        );
        let allow = [parse_allow_host("svc.test").unwrap()];
        let targets = resolve_targets(&endpoints, &[], &allow, &mut resolve, &local).unwrap();
        assert_eq!(
            targets
                .iter()
                .map(|t| t.addr.to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.1:8080", "10.0.0.2:8080"]
        );
        let error = resolve_targets(
            &[parse_endpoint("http://gone.test/").unwrap()],
            &[],
            &[],
            &mut resolve,
            &local,
        )
        .unwrap_err();
        assert!(error.contains("cannot resolve \"gone.test\""), "{error}");
    }

    #[test]
    fn overrides_and_literals_skip_the_resolver() {
        let endpoints = [
            parse_endpoint("http://svc.test:8080/mcp").unwrap(),
            parse_endpoint("http://[::1]:9/mcp").unwrap(),
            parse_endpoint("http://203.0.113.9/mcp").unwrap(),
        ];
        let mut never = |_: &str, _: u16| -> std::io::Result<Vec<SocketAddr>> {
            panic!("the resolver must not be asked")
        };
        let overrides = [parse_resolve("svc.test:8080:127.0.0.7").unwrap()];
        let error =
            resolve_targets(&endpoints, &overrides, &[], &mut never, &|_| false).unwrap_err();
        assert!(error.contains("--allow-host 203.0.113.9"), "{error}");
        let allow = [parse_allow_host("203.0.113.0/24").unwrap()];
        let targets =
            resolve_targets(&endpoints, &overrides, &allow, &mut never, &|_| false).unwrap();
        assert_eq!(
            targets,
            vec![
                ResolvedTarget {
                    endpoint: 0,
                    addr: "127.0.0.7:8080".parse().unwrap()
                },
                ResolvedTarget {
                    endpoint: 1,
                    addr: "[::1]:9".parse().unwrap()
                },
                ResolvedTarget {
                    endpoint: 2,
                    addr: "203.0.113.9:80".parse().unwrap()
                },
            ]
        );
    }
}
