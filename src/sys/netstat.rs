//! The kernel's TCP counters (/proc/net/netstat `TcpExt`, /proc/net/snmp `Tcp`): read before
//! and after a phase, their deltas say what limited a reconnect storm — a full accept queue
//! (`ListenOverflows`, `ListenDrops`), SYNs retransmitted on their 1 s timer (`TCPSynRetrans`),
//! resets. Part of `sys/`; the parser is I/O-free and tested on captured text. The counters
//! cover the whole network namespace, not only this run: the report says so.

use std::collections::BTreeMap;

/// The counters a recovery report lists (group.name), in this order of interest.
pub const RECOVERY_COUNTERS: [&str; 12] = [
    "TcpExt.ListenOverflows",
    "TcpExt.ListenDrops",
    "TcpExt.TCPSynRetrans",
    "TcpExt.TCPTimeouts",
    "TcpExt.TCPAbortOnData",
    "TcpExt.TCPAbortOnClose",
    "TcpExt.TCPAbortOnTimeout",
    "Tcp.ActiveOpens",
    "Tcp.PassiveOpens",
    "Tcp.AttemptFails",
    "Tcp.EstabResets",
    "Tcp.RetransSegs",
];

/// Parses the "Group: Name Name …" / "Group: value value …" line pairs of /proc/net/netstat
/// and /proc/net/snmp into `Group.Name → value` (negative or non-numeric values skipped).
pub fn parse(text: &str, into: &mut BTreeMap<String, u64>) {
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((group, names)), Some((group_again, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if group != group_again {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(value) = value.parse::<u64>() {
                into.insert(format!("{group}.{name}"), value);
            }
        }
    }
}

/// Every counter of /proc/net/netstat and /proc/net/snmp now (empty where unreadable).
pub fn read() -> BTreeMap<String, u64> {
    let mut counters = BTreeMap::new();
    for path in ["/proc/net/netstat", "/proc/net/snmp"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            parse(&text, &mut counters);
        }
    }
    counters
}

/// `after − before` for the counters in `names` that both readings have.
pub fn deltas(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    names: &[&str],
) -> BTreeMap<String, u64> {
    names
        .iter()
        .filter_map(|&name| {
            let (b, a) = (before.get(name)?, after.get(name)?);
            Some((name.to_string(), a.saturating_sub(*b)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETSTAT: &str = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
TcpExt: 0 7 9 31\n\
IpExt: InNoRoutes InOctets\n\
IpExt: 0 880408766\n";
    const SNMP: &str = "Tcp: RtoAlgorithm RtoMin MaxConn ActiveOpens EstabResets\n\
Tcp: 1 200 -1 12087 74\n";

    #[test]
    fn parses_both_files_and_skips_negative_values() {
        let mut counters = BTreeMap::new();
        parse(NETSTAT, &mut counters);
        parse(SNMP, &mut counters);
        assert_eq!(counters["TcpExt.ListenOverflows"], 7);
        assert_eq!(counters["TcpExt.TCPSynRetrans"], 31);
        assert_eq!(counters["IpExt.InOctets"], 880_408_766);
        assert_eq!(counters["Tcp.ActiveOpens"], 12_087);
        assert!(!counters.contains_key("Tcp.MaxConn"));
    }

    #[test]
    fn deltas_of_the_named_counters() {
        let mut before = BTreeMap::new();
        parse(NETSTAT, &mut before);
        let mut after = before.clone();
        after.insert("TcpExt.ListenOverflows".into(), 10);
        let d = deltas(&before, &after, &RECOVERY_COUNTERS);
        assert_eq!(d["TcpExt.ListenOverflows"], 3);
        assert_eq!(d["TcpExt.ListenDrops"], 0);
        assert!(!d.contains_key("Tcp.ActiveOpens"), "absent from both");
    }

    #[test]
    fn garbage_is_ignored() {
        let mut counters = BTreeMap::new();
        parse("no colon here\nnor here\nA: x y\nB: 1 2\n", &mut counters);
        assert!(counters.is_empty());
        assert!(!read().is_empty(), "this kernel has /proc/net/netstat");
    }
}
