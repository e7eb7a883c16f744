//! What a network fault installs, as text, I/O-free: the nftables ruleset of a partition or a
//! loss, the iptables rules that hand a latency fault's packets to the delayer's queue, and
//! the commands that remove each. The guard (`guard.rs`) runs them; `doctor` and the guard's
//! sweep recognise their names (`leftovers.rs`). Part of `netfault/`.
//!
//! Only the path to the run's targets is touched: every rule matches a target's address and
//! TCP port (packets to it on output, from it on input), never a whole interface, so the rest
//! of the host (ssh, other tests, other runs) is untouched.
//!
//! Packets *to* the targets go through NFQUEUE to the guard's line (`delay.rs`), which drops
//! or delays them after TCP believes them sent — a loss on the wire, not a local error (see
//! `delay.rs`). Packets *from* the targets are dropped on input by nftables during a
//! partition (their sender, the server, cannot tell that from a cut cable).
//!
//! Why not `tc netem`: the kernels this was built on (and CI's) have no `sch_netem`
//! (CONFIG_NET_SCH_NETEM unset) and no `nft queue` (CONFIG_NFT_QUEUE unset), but every
//! distribution kernel has nftables and the xtables NFQUEUE target, here reached through
//! iptables with `--queue-bypass`: if the guard's line is gone, packets pass (the fault fails
//! open, never shut).

use super::{Impairment, NetFault};
use std::net::{IpAddr, SocketAddr};

/// Names of what this run installs: the table, the chain and the queue all carry the pid of
/// the run that owns them, so a leftover is recognised and its owner checked.
pub const TABLE_PREFIX: &str = "mcpstorm_fault_";
pub const CHAIN_PREFIX: &str = "MCPSTORM-FAULT-";

pub fn table_name(owner_pid: u32) -> String {
    format!("{TABLE_PREFIX}{owner_pid}")
}

pub fn chain_name(owner_pid: u32) -> String {
    format!("{CHAIN_PREFIX}{owner_pid}")
}

/// The pid in a table or chain name of ours, if it is one.
pub fn owner_of(name: &str) -> Option<u32> {
    name.strip_prefix(TABLE_PREFIX)
        .or_else(|| name.strip_prefix(CHAIN_PREFIX))
        .and_then(|pid| pid.parse().ok())
}

fn family(addr: &SocketAddr) -> &'static str {
    match addr.ip() {
        IpAddr::V4(_) => "ip",
        IpAddr::V6(_) => "ip6",
    }
}

/// The nftables ruleset (for `nft -f -`) of a partition's return direction: every packet
/// from a target dropped on input. `None` for latency and loss, which touch only the way to
/// the targets (the queue's).
///
/// Priority -300 runs before conntrack (-200) and every usual filter: the packet is gone
/// before anything else of the host sees it, as with a cut cable.
pub fn nft_ruleset(fault: &NetFault) -> Option<String> {
    if fault.impairment != Impairment::Partition {
        return None;
    }
    let table = table_name(fault.owner_pid);
    let mut text = format!("table inet {table} {{\n");
    text.push_str(
        "  chain from_targets {\n    type filter hook input priority -300; policy accept;\n",
    );
    for target in &fault.targets {
        text.push_str(&format!(
            "    {} saddr {} tcp sport {} drop\n",
            family(target),
            target.ip(),
            target.port()
        ));
    }
    text.push_str("  }\n}\n");
    Some(text)
}

/// The `nft` arguments that delete the run's table (and every rule in it).
pub fn nft_delete(owner_pid: u32) -> Vec<String> {
    vec![
        "delete".into(),
        "table".into(),
        "inet".into(),
        table_name(owner_pid),
    ]
}

/// One iptables invocation: the program (`iptables` or `ip6tables`) and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: &'static str,
    pub args: Vec<String>,
}

fn programs(fault: &NetFault) -> Vec<&'static str> {
    let mut programs = Vec::new();
    if fault.targets.iter().any(|t| t.is_ipv4()) {
        programs.push("iptables");
    }
    if fault.targets.iter().any(|t| t.is_ipv6()) {
        programs.push("ip6tables");
    }
    programs
}

fn invocation(program: &'static str, args: &[&str]) -> Invocation {
    // -w: wait for the xtables lock instead of failing when another tool holds it.
    let mut all = vec!["-w".to_string(), "-t".into(), "mangle".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    Invocation { program, args: all }
}

/// The rules of every network fault: a chain of the run's own in `mangle`, jumped to first
/// from OUTPUT, sending packets to the targets to `queue` (bypassed when no line listens).
pub fn queue_rules(fault: &NetFault, queue: u16) -> Vec<Invocation> {
    let chain = chain_name(fault.owner_pid);
    let queue = queue.to_string();
    let mut rules = Vec::new();
    for program in programs(fault) {
        rules.push(invocation(program, &["-N", &chain]));
        for target in fault
            .targets
            .iter()
            .filter(|t| (program == "iptables") == t.is_ipv4())
        {
            let ip = target.ip().to_string();
            let port = target.port().to_string();
            rules.push(invocation(
                program,
                &[
                    "-A",
                    &chain,
                    "-d",
                    &ip,
                    "-p",
                    "tcp",
                    "--dport",
                    &port,
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    &queue,
                    "--queue-bypass",
                ],
            ));
        }
        rules.push(invocation(program, &["-I", "OUTPUT", "1", "-j", &chain]));
    }
    rules
}

/// What removes a chain of `owner_pid` from `program`'s mangle table: the jump, its rules, the
/// chain. Each may fail harmlessly when already gone.
pub fn queue_removal(program: &'static str, owner_pid: u32) -> Vec<Invocation> {
    let chain = chain_name(owner_pid);
    vec![
        invocation(program, &["-D", "OUTPUT", "-j", &chain]),
        invocation(program, &["-F", &chain]),
        invocation(program, &["-X", &chain]),
    ]
}

/// The removals of every program the fault's rules used.
pub fn queue_removals(fault: &NetFault) -> Vec<Invocation> {
    programs(fault)
        .into_iter()
        .flat_map(|p| queue_removal(p, fault.owner_pid))
        .collect()
}

/// nftables table names of ours in `nft list tables` output (`table inet NAME` lines).
pub fn tables_in_listing(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("table")).then_some(())?;
            words.next()?;
            let name = words.next()?;
            name.starts_with(TABLE_PREFIX).then(|| name.to_string())
        })
        .collect()
}

/// Chain names of ours in `iptables -t mangle -S` output (`-N NAME` lines).
pub fn chains_in_listing(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.strip_prefix("-N "))
        .map(str::trim)
        .filter(|name| name.starts_with(CHAIN_PREFIX))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(impairment: Impairment, targets: &[&str]) -> NetFault {
        NetFault {
            impairment,
            targets: targets.iter().map(|t| t.parse().unwrap()).collect(),
            owner_pid: 4242,
        }
    }

    #[test]
    fn a_partition_drops_what_comes_back_from_each_target_only() {
        let f = fault(Impairment::Partition, &["10.9.0.2:8080", "[::1]:9000"]);
        let text = nft_ruleset(&f).unwrap();
        assert_eq!(
            text,
            "table inet mcpstorm_fault_4242 {\n  chain from_targets {\n    type filter hook input priority -300; policy accept;\n    ip saddr 10.9.0.2 tcp sport 8080 drop\n    ip6 saddr ::1 tcp sport 9000 drop\n  }\n}\n"
        );
        assert_eq!(
            nft_delete(4242).join(" "),
            "delete table inet mcpstorm_fault_4242"
        );
        let loss = fault(Impairment::Loss { percent: 5.0 }, &["127.0.0.1:1"]);
        assert!(nft_ruleset(&loss).is_none(), "a loss is the queue's only");
    }

    #[test]
    fn latency_queues_per_family_and_is_removed_in_reverse() {
        let f = fault(
            Impairment::Latency {
                delay_us: 100_000,
                jitter_us: 0,
            },
            &["10.9.0.2:8080", "[fd00::2]:8080"],
        );
        assert!(nft_ruleset(&f).is_none());
        let rules: Vec<String> = queue_rules(&f, 19777)
            .iter()
            .map(|i| format!("{} {}", i.program, i.args.join(" ")))
            .collect();
        assert_eq!(
            rules,
            [
                "iptables -w -t mangle -N MCPSTORM-FAULT-4242",
                "iptables -w -t mangle -A MCPSTORM-FAULT-4242 -d 10.9.0.2 -p tcp --dport 8080 -j NFQUEUE --queue-num 19777 --queue-bypass",
                "iptables -w -t mangle -I OUTPUT 1 -j MCPSTORM-FAULT-4242",
                "ip6tables -w -t mangle -N MCPSTORM-FAULT-4242",
                "ip6tables -w -t mangle -A MCPSTORM-FAULT-4242 -d fd00::2 -p tcp --dport 8080 -j NFQUEUE --queue-num 19777 --queue-bypass",
                "ip6tables -w -t mangle -I OUTPUT 1 -j MCPSTORM-FAULT-4242",
            ]
        );
        let removal: Vec<String> = queue_removals(&f)
            .iter()
            .map(|i| format!("{} {}", i.program, i.args[3..].join(" ")))
            .collect();
        assert_eq!(
            removal,
            [
                "iptables -D OUTPUT -j MCPSTORM-FAULT-4242",
                "iptables -F MCPSTORM-FAULT-4242",
                "iptables -X MCPSTORM-FAULT-4242",
                "ip6tables -D OUTPUT -j MCPSTORM-FAULT-4242",
                "ip6tables -F MCPSTORM-FAULT-4242",
                "ip6tables -X MCPSTORM-FAULT-4242",
            ]
        );
    }

    #[test]
    fn leftovers_are_found_by_name_with_their_owner() {
        let nft = "table inet filter\ntable inet mcpstorm_fault_77\ntable ip nat\ntable inet mcpstorm_fault_x\n";
        assert_eq!(
            tables_in_listing(nft),
            ["mcpstorm_fault_77", "mcpstorm_fault_x"]
        );
        assert_eq!(owner_of("mcpstorm_fault_77"), Some(77));
        assert_eq!(owner_of("mcpstorm_fault_x"), None);
        let ipt = "-P PREROUTING ACCEPT\n-N MCPSTORM-FAULT-12\n-N OTHER\n-A OUTPUT -j MCPSTORM-FAULT-12\n";
        assert_eq!(chains_in_listing(ipt), ["MCPSTORM-FAULT-12"]);
        assert_eq!(owner_of("MCPSTORM-FAULT-12"), Some(12));
    }
}
