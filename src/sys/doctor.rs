//! `mcpstorm doctor` logic: given the machine's limits ([`Facts`]) and what a run needs
//! ([`Need`]), decide for each limit whether it blocks, might bite, or is fine, and name the
//! exact fix. Part of `sys/`; I/O-free (the facts are read by `facts.rs`), so every verdict and
//! every piece of arithmetic is unit-tested on synthetic values.

use serde::Serialize;

/// Kernel memory one idle, established TCP socket costs on Linux 6.18: the growth of
/// /proc/meminfo `Slab` while `benches/serve_hold.rs` held 100,000 idle loopback connections
/// (200,000 sockets, both ends): 943,632 KiB ÷ 200,000 = 4,831 B, measured 2026-11-27 on the
/// 2-core VM (the bench prints it every run). Rounded down to 4.8 KB; the commonly quoted
/// ~3.9 KB counts the TCP socket slab alone, not its file, dentry and inode.
pub const KERNEL_BYTES_PER_SOCKET: u64 = 4_800;
/// What mcpstorm itself spends in user space per connection (client engine target ≤ 256 B);
/// the budget doctor reserves, so the memory check is not blind to our own share.
pub const USER_BYTES_PER_CONNECTION: u64 = 256;
/// Direct descriptors a ring keeps back for its own sockets beyond the connections.
const PAGE_BYTES: u64 = 4096;

/// Limits read from the running kernel and process.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub nofile_soft: u64,
    pub nofile_hard: u64,
    pub nr_open: u64,
    pub file_max: u64,
    pub file_nr: u64,
    pub port_range: (u32, u32),
    pub somaxconn: u64,
    pub tcp_max_syn_backlog: u64,
    /// net.ipv4.tcp_mem in pages: (low, pressure, high).
    pub tcp_mem_pages: (u64, u64, u64),
    pub tcp_rmem_min: u64,
    pub tcp_wmem_min: u64,
    pub mem_available_bytes: u64,
    /// (count, max) when nf_conntrack is loaded.
    pub conntrack: Option<(u64, u64)>,
    pub tcp_tw_reuse: u64,
    pub tcp_max_tw_buckets: u64,
    pub kernel_release: String,
    pub io_uring_disabled: u64,
    /// `None` when io_uring could not be probed at all (the message says why).
    pub io_uring: Result<IoUringFacts, String>,
    pub cpus_online: usize,
    pub cpus_allowed: usize,
    pub is_root: bool,
    /// Rules of `run --fault partition|latency|loss` still installed (`netfault::leftovers`).
    pub fault_rules: Vec<FaultRule>,
}

/// One installed rule of a network fault, and whether the run that owns it still runs.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRule {
    pub what: String,
    pub owner_pid: Option<u32>,
    pub owner_alive: bool,
    pub fix: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct IoUringFacts {
    pub socket_op: bool,
    pub bind_op: bool,
    pub multishot_accept: bool,
    pub multishot_recv: bool,
    pub buf_ring: bool,
    pub ext_arg: bool,
}

/// What the run asks for.
#[derive(Debug, Clone, Serialize)]
pub struct Need {
    /// Every connection the run opens: its sessions' and their streams'.
    pub connections: u64,
    /// Of those, streams (`--streams`): a second connection for that many sessions.
    pub streams: u64,
    /// Distinct target address:port pairs (URLs); 0 = the embedded server, which mcpstorm
    /// spreads over as many listen ports as the count needs and which lives on this host.
    pub targets: u64,
    /// Source addresses the client binds (`--source-ips`); 1 when none are given.
    pub source_ips: u64,
    pub connect_rate_per_s: u64,
    /// The target runs on this host (embedded server, or a loopback URL): every connection
    /// then costs two sockets here.
    pub target_on_this_host: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Ok,
    Warn,
    Block,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub value: String,
    pub needs: String,
    pub verdict: Verdict,
    /// The exact fix (a command, a config line, an option), empty when nothing is needed.
    pub fix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub need: Need,
    pub checks: Vec<Check>,
    /// The largest connection count no check blocks (the hard limits only).
    pub connections_max_fitting: u64,
    pub verdict: Verdict,
}

/// Ring arithmetic shared with the engine's plan: slots per ring, rings in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RingPlan {
    pub slots_per_ring: u64,
    pub rings: u64,
    pub rings_per_shard: u64,
}

/// A ring's direct-descriptor table may not exceed RLIMIT_NOFILE, and the soft limit is raised
/// to the hard one at start, so the hard limit sizes the rings.
pub fn ring_plan(connections: u64, nofile_hard: u64, shards: u64) -> RingPlan {
    let slots_per_ring = nofile_hard.max(1);
    let rings = connections.div_ceil(slots_per_ring).max(1);
    RingPlan {
        slots_per_ring,
        rings,
        rings_per_shard: rings.div_ceil(shards.max(1)),
    }
}

/// Connections the ephemeral port range allows: each (source address, target address:port)
/// pair has its own range.
pub fn port_capacity(port_range: (u32, u32), source_ips: u64, targets: u64) -> u64 {
    let ports = (port_range.1 as u64 + 1).saturating_sub(port_range.0 as u64);
    ports * source_ips.max(1) * targets.max(1)
}

/// Sockets on this host for `connections`.
pub fn sockets_here(need: &Need) -> u64 {
    if need.target_on_this_host {
        need.connections * 2
    } else {
        need.connections
    }
}

pub fn diagnose(facts: &Facts, need: &Need) -> Diagnosis {
    let mut checks = Vec::new();
    let mut fitting = u64::MAX;
    let shards = facts.cpus_allowed.max(1) as u64;
    let n = need.connections;
    let sockets = sockets_here(need);

    // io_uring itself.
    match &facts.io_uring {
        Err(why) => checks.push(Check {
            name: "io_uring",
            value: "unavailable".into(),
            needs: "io_uring with direct descriptors, multishot accept/recv, buffer rings".into(),
            verdict: Verdict::Block,
            fix: why.clone(),
        }),
        Ok(uring) => {
            let missing: Vec<&str> = [
                (uring.socket_op, "IORING_OP_SOCKET (5.19)"),
                (uring.multishot_accept, "multishot accept (5.19)"),
                (uring.multishot_recv, "multishot recv (6.0)"),
                (uring.buf_ring, "provided buffer rings (5.19)"),
                (uring.ext_arg, "EXT_ARG waits (5.11)"),
            ]
            .iter()
            .filter(|(present, _)| !present)
            .map(|(_, name)| *name)
            .collect();
            checks.push(Check {
                name: "io_uring",
                value: format!("kernel {}", facts.kernel_release),
                needs: "Linux ≥ 6.0 io_uring features".into(),
                verdict: if missing.is_empty() {
                    Verdict::Ok
                } else {
                    Verdict::Block
                },
                fix: if missing.is_empty() {
                    String::new()
                } else {
                    format!(
                        "missing {}: boot a Linux 6.0+ kernel (6.11+ for IORING_OP_BIND)",
                        missing.join(", ")
                    )
                },
            });
            checks.push(Check {
                name: "io_uring bind",
                value: if uring.bind_op { "IORING_OP_BIND present".into() } else { "absent".into() },
                needs: "assigning source ports in the ring (Linux 6.11)".into(),
                verdict: if uring.bind_op { Verdict::Ok } else { Verdict::Warn },
                fix: if uring.bind_op {
                    String::new()
                } else {
                    "without it `run` refuses --source-ips, so each target gets at most one source address's ephemeral ports: use Linux 6.11+".into()
                },
            });
        }
    }
    checks.push(Check {
        name: "kernel.io_uring_disabled",
        value: facts.io_uring_disabled.to_string(),
        needs: "0 (or 1 with this user in kernel.io_uring_group)".into(),
        verdict: match facts.io_uring_disabled {
            0 => Verdict::Ok,
            1 if facts.is_root => Verdict::Ok,
            1 => Verdict::Warn,
            _ => Verdict::Block,
        },
        fix: if facts.io_uring_disabled == 0 {
            String::new()
        } else {
            "sysctl -w kernel.io_uring_disabled=0".into()
        },
    });

    // Descriptors: direct descriptors take no process fd, but each ring's table ≤ RLIMIT_NOFILE.
    let rings = ring_plan(n, facts.nofile_hard, shards);
    let ring_verdict = if rings.rings_per_shard > 64 {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    checks.push(Check {
        name: "RLIMIT_NOFILE",
        value: format!("soft {} hard {} (fs.nr_open {})", facts.nofile_soft, facts.nofile_hard, facts.nr_open),
        needs: format!(
            "{} rings of ≤ {} direct descriptors ({} per shard × {} shards)",
            rings.rings, rings.slots_per_ring, rings.rings_per_shard, shards
        ),
        verdict: ring_verdict,
        fix: if ring_verdict == Verdict::Ok {
            String::new()
        } else {
            format!(
                "fewer, larger rings: raise the hard limit, e.g. `ulimit -Hn {0}` or in /etc/security/limits.conf `* hard nofile {0}` (needs fs.nr_open ≥ {0}: sysctl -w fs.nr_open={0})",
                n.div_ceil(shards * 8).max(facts.nofile_hard)
            )
        },
    });
    let file_headroom = facts.file_max.saturating_sub(facts.file_nr);
    let file_verdict = if sockets <= file_headroom {
        Verdict::Ok
    } else if facts.is_root {
        Verdict::Warn
    } else {
        Verdict::Block
    };
    if !facts.is_root {
        fitting = fitting.min(files_fit(file_headroom, need));
    }
    checks.push(Check {
        name: "fs.file-max",
        value: format!("{} ({} in use)", facts.file_max, facts.file_nr),
        needs: format!("{sockets} more open files (every socket is a file, direct or not)"),
        verdict: file_verdict,
        fix: if file_verdict == Verdict::Ok {
            String::new()
        } else {
            format!(
                "sysctl -w fs.file-max={} (root is exempt from this limit, other users are not)",
                (facts.file_nr + sockets) * 5 / 4
            )
        },
    });

    // Ports.
    let targets_for_ports = if need.targets == 0 { 0 } else { need.targets };
    if targets_for_ports > 0 {
        let capacity = port_capacity(facts.port_range, need.source_ips, need.targets);
        fitting = fitting.min(capacity);
        let ports = (facts.port_range.1 as u64 + 1).saturating_sub(facts.port_range.0 as u64);
        let sources_needed = n.div_ceil(ports.max(1) * need.targets.max(1));
        checks.push(Check {
            name: "net.ipv4.ip_local_port_range",
            value: format!("{}-{} ({ports} ports)", facts.port_range.0, facts.port_range.1),
            needs: format!(
                "{n} connections over {} source × {} target pairs = {} ports each",
                need.source_ips.max(1),
                need.targets,
                n.div_ceil(need.source_ips.max(1) * need.targets)
            ),
            verdict: if n <= capacity { Verdict::Ok } else { Verdict::Block },
            fix: if n <= capacity {
                String::new()
            } else {
                format!(
                    "--source-ips 127.0.0.2-127.0.0.{} ({sources_needed} source addresses), or sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"",
                    1 + sources_needed.min(254)
                )
            },
        });
    } else {
        checks.push(Check {
            name: "net.ipv4.ip_local_port_range",
            value: format!("{}-{}", facts.port_range.0, facts.port_range.1),
            needs: "embedded server: mcpstorm spreads it over as many listen ports as N needs"
                .into(),
            verdict: Verdict::Ok,
            fix: String::new(),
        });
    }

    // Memory.
    let kernel_bytes = sockets * KERNEL_BYTES_PER_SOCKET;
    let memory_bytes = kernel_bytes + n * USER_BYTES_PER_CONNECTION;
    let memory_verdict = if memory_bytes * 10 > facts.mem_available_bytes * 9 {
        Verdict::Block
    } else if memory_bytes * 2 > facts.mem_available_bytes {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    fitting = fitting.min(fitting_memory(facts, need));
    checks.push(Check {
        name: "MemAvailable",
        value: format!("{} MiB", facts.mem_available_bytes >> 20),
        needs: format!(
            "{} MiB: {sockets} sockets × {KERNEL_BYTES_PER_SOCKET} B kernel + {n} × {USER_BYTES_PER_CONNECTION} B user",
            memory_bytes >> 20
        ),
        verdict: memory_verdict,
        fix: if memory_verdict == Verdict::Ok {
            String::new()
        } else {
            format!(
                "use a host with more memory, run the target elsewhere, or --connections {}",
                fitting_memory(facts, need)
            )
        },
    });
    let tcp_mem_high_bytes = facts.tcp_mem_pages.2 * PAGE_BYTES;
    let tcp_floor_bytes = sockets * (facts.tcp_rmem_min + facts.tcp_wmem_min) / 4;
    let tcp_mem_verdict = if tcp_floor_bytes > tcp_mem_high_bytes {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    checks.push(Check {
        name: "net.ipv4.tcp_mem",
        value: format!(
            "{} {} {} pages (high = {} MiB)",
            facts.tcp_mem_pages.0,
            facts.tcp_mem_pages.1,
            facts.tcp_mem_pages.2,
            tcp_mem_high_bytes >> 20
        ),
        needs: format!(
            "{} MiB if a quarter of {sockets} sockets hold their minimum buffers (rmem {} + wmem {} B)",
            tcp_floor_bytes >> 20,
            facts.tcp_rmem_min,
            facts.tcp_wmem_min
        ),
        verdict: tcp_mem_verdict,
        fix: if tcp_mem_verdict == Verdict::Ok {
            String::new()
        } else {
            let pages = tcp_floor_bytes.div_ceil(PAGE_BYTES) * 2;
            format!("sysctl -w net.ipv4.tcp_mem=\"{} {} {}\" (or kernel-tuning/apply.sh --connections {n})", pages / 2, pages * 3 / 4, pages)
        },
    });

    // Accept queues against the connect rate (only our own server's host is ours to judge).
    if need.target_on_this_host {
        // A burst of one tick (10 ms) of connects must fit the accept queue.
        let backlog_needed = (need.connect_rate_per_s / 100).max(128);
        let verdict = if facts.somaxconn >= backlog_needed {
            Verdict::Ok
        } else {
            Verdict::Warn
        };
        checks.push(Check {
            name: "net.core.somaxconn",
            value: facts.somaxconn.to_string(),
            needs: format!(
                "≥ {backlog_needed} (10 ms of connects at {}/s)",
                need.connect_rate_per_s
            ),
            verdict,
            fix: if verdict == Verdict::Ok {
                String::new()
            } else {
                format!(
                    "sysctl -w net.core.somaxconn={}",
                    backlog_needed.next_power_of_two()
                )
            },
        });
        let verdict = if facts.tcp_max_syn_backlog >= backlog_needed {
            Verdict::Ok
        } else {
            Verdict::Warn
        };
        checks.push(Check {
            name: "net.ipv4.tcp_max_syn_backlog",
            value: facts.tcp_max_syn_backlog.to_string(),
            needs: format!("≥ {backlog_needed}"),
            verdict,
            fix: if verdict == Verdict::Ok {
                String::new()
            } else {
                format!(
                    "sysctl -w net.ipv4.tcp_max_syn_backlog={}",
                    backlog_needed.next_power_of_two()
                )
            },
        });
    }

    if let Some((count, max)) = facts.conntrack {
        let room = max.saturating_sub(count);
        // A loaded module with no tracked flows usually means no rule hooks it (loopback
        // traffic then bypasses it): the table can still fill if a rule appears, so warn.
        let tracking = count > 0;
        if tracking {
            fitting = fitting.min(room);
        }
        let verdict = match (n <= room, tracking) {
            (true, _) => Verdict::Ok,
            (false, true) => Verdict::Block,
            (false, false) => Verdict::Warn,
        };
        checks.push(Check {
            name: "net.netfilter.nf_conntrack_max",
            value: format!("{max} ({count} tracked)"),
            needs: if tracking {
                format!("{n} more tracked flows")
            } else {
                format!("{n} more tracked flows if a rule starts tracking (none is tracked now)")
            },
            verdict,
            fix: if verdict == Verdict::Ok {
                String::new()
            } else {
                format!(
                    "sysctl -w net.netfilter.nf_conntrack_max={}",
                    (count + n) * 5 / 4
                )
            },
        });
    }

    // Churn: reconnects and the fault phase leave sockets in TIME_WAIT.
    let tw_verdict = if facts.tcp_max_tw_buckets < n {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    checks.push(Check {
        name: "net.ipv4.tcp_max_tw_buckets",
        value: format!(
            "{} (tcp_tw_reuse {})",
            facts.tcp_max_tw_buckets, facts.tcp_tw_reuse
        ),
        needs: format!("≥ {n} so a full reconnect (fault recovery) keeps TIME_WAIT accounting"),
        verdict: tw_verdict,
        fix: if tw_verdict == Verdict::Ok {
            String::new()
        } else {
            format!("sysctl -w net.ipv4.tcp_max_tw_buckets={}", n * 2)
        },
    });

    let pin_verdict = if facts.cpus_allowed >= 1 {
        Verdict::Ok
    } else {
        Verdict::Warn
    };
    checks.push(Check {
        name: "CPUs",
        value: format!(
            "{} online, {} allowed",
            facts.cpus_online, facts.cpus_allowed
        ),
        needs: format!("{shards} shards pinned one per allowed CPU"),
        verdict: pin_verdict,
        fix: String::new(),
    });

    checks.push(fault_rules_check(&facts.fault_rules));

    let verdict = checks
        .iter()
        .map(|c| c.verdict)
        .max()
        .unwrap_or(Verdict::Ok);
    Diagnosis {
        need: need.clone(),
        checks,
        connections_max_fitting: fitting,
        verdict,
    }
}

/// Network-fault rules left installed by a run that is gone (its guard was killed too): they
/// still drop or delay traffic to those targets. A live owner's are a fault under way.
fn fault_rules_check(rules: &[FaultRule]) -> Check {
    let (left, under_way): (Vec<&FaultRule>, Vec<&FaultRule>) =
        rules.iter().partition(|r| !r.owner_alive);
    let mut value = match left.len() {
        0 => "none left".to_string(),
        _ => left
            .iter()
            .map(|r| r.what.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    if !under_way.is_empty() {
        value.push_str(&format!(
            " ({} of a run under way)",
            under_way
                .iter()
                .map(|r| r.what.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Check {
        name: "fault rules",
        value,
        needs: "no rule of a finished run's --fault partition/latency/loss".into(),
        verdict: if left.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Warn
        },
        fix: left
            .iter()
            .map(|r| r.fix.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Connections whose sockets fit `files` more open files.
fn files_fit(files: u64, need: &Need) -> u64 {
    files / if need.target_on_this_host { 2 } else { 1 }
}

fn fitting_memory(facts: &Facts, need: &Need) -> u64 {
    let per_connection = if need.target_on_this_host { 2 } else { 1 } * KERNEL_BYTES_PER_SOCKET
        + USER_BYTES_PER_CONNECTION;
    facts.mem_available_bytes * 9 / 10 / per_connection
}

impl Diagnosis {
    /// The human table.
    pub fn render_text(&self) -> String {
        let streams = if self.need.streams > 0 {
            format!(
                " = {} sessions + {} streams",
                self.need.connections - self.need.streams,
                self.need.streams
            )
        } else {
            String::new()
        };
        let mut out = format!(
            "mcpstorm doctor: {} connections{streams} ({}), {} source address(es), connect rate {}/s\n\n",
            self.need.connections,
            if self.need.targets == 0 && self.need.target_on_this_host {
                "embedded server on this host".to_string()
            } else if self.need.targets == 0 {
                "the server on another host".to_string()
            } else {
                format!("{} target(s)", self.need.targets)
            },
            self.need.source_ips.max(1),
            self.need.connect_rate_per_s,
        );
        let name_width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(10);
        for check in &self.checks {
            let verdict = match check.verdict {
                Verdict::Ok => "OK   ",
                Verdict::Warn => "WARN ",
                Verdict::Block => "BLOCK",
            };
            out.push_str(&format!(
                "{verdict} {:name_width$}  {}\n",
                check.name, check.value
            ));
            out.push_str(&format!(
                "      {:name_width$}  needs: {}\n",
                "", check.needs
            ));
            if !check.fix.is_empty() {
                out.push_str(&format!("      {:name_width$}  fix:   {}\n", "", check.fix));
            }
        }
        out.push('\n');
        match self.verdict {
            Verdict::Block => out.push_str(&format!(
                "verdict: BLOCKED — {} connections cannot be held here; the hard limits fit about {} (fix the BLOCK rows above, or kernel-tuning/apply.sh --connections {})\n",
                self.need.connections,
                self.connections_max_fitting,
                self.need.connections
            )),
            Verdict::Warn => out.push_str("verdict: possible — nothing blocks, but the WARN rows may bite under load\n"),
            Verdict::Ok => out.push_str("verdict: OK — nothing on this host stops the run\n"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            nofile_soft: 20_000,
            nofile_hard: 20_000,
            nr_open: 1_048_576,
            file_max: 9_223_372_036_854_775_807,
            file_nr: 1_000,
            port_range: (32_768, 60_999),
            somaxconn: 4096,
            tcp_max_syn_backlog: 4096,
            tcp_mem_pages: (283_000, 377_000, 566_000),
            tcp_rmem_min: 4096,
            tcp_wmem_min: 4096,
            mem_available_bytes: 23 << 30,
            conntrack: None,
            tcp_tw_reuse: 2,
            tcp_max_tw_buckets: 262_144,
            kernel_release: "6.18.44".into(),
            io_uring_disabled: 0,
            io_uring: Ok(IoUringFacts {
                socket_op: true,
                bind_op: true,
                multishot_accept: true,
                multishot_recv: true,
                buf_ring: true,
                ext_arg: true,
            }),
            cpus_online: 2,
            cpus_allowed: 2,
            is_root: true,
            fault_rules: Vec::new(),
        }
    }

    #[test]
    fn a_fault_rule_of_a_gone_run_warns_with_its_fix_and_a_live_ones_does_not() {
        let mut f = facts();
        assert_eq!(
            check(&diagnose(&f, &need(1000)), "fault rules").verdict,
            Verdict::Ok
        );
        f.fault_rules = vec![
            FaultRule {
                what: "nftables table inet mcpstorm_fault_77".into(),
                owner_pid: Some(77),
                owner_alive: false,
                fix: "nft delete table inet mcpstorm_fault_77".into(),
            },
            FaultRule {
                what: "iptables mangle chain MCPSTORM-FAULT-88".into(),
                owner_pid: Some(88),
                owner_alive: true,
                fix: "iptables -t mangle -X MCPSTORM-FAULT-88".into(),
            },
        ];
        let d = diagnose(&f, &need(1000));
        let c = check(&d, "fault rules");
        assert_eq!(c.verdict, Verdict::Warn);
        assert_eq!(c.fix, "nft delete table inet mcpstorm_fault_77");
        assert!(
            c.value.contains("MCPSTORM-FAULT-88") && c.value.contains("under way"),
            "{}",
            c.value
        );
    }

    fn need(connections: u64) -> Need {
        Need {
            connections,
            streams: 0,
            targets: 0,
            source_ips: 1,
            connect_rate_per_s: 20_000,
            target_on_this_host: true,
        }
    }

    fn check<'a>(d: &'a Diagnosis, name: &str) -> &'a Check {
        d.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
    }

    #[test]
    fn ring_arithmetic() {
        assert_eq!(
            ring_plan(100_000, 20_000, 2),
            RingPlan {
                slots_per_ring: 20_000,
                rings: 5,
                rings_per_shard: 3
            }
        );
        assert_eq!(
            ring_plan(1, 20_000, 2),
            RingPlan {
                slots_per_ring: 20_000,
                rings: 1,
                rings_per_shard: 1
            }
        );
        assert_eq!(ring_plan(20_001, 20_000, 1).rings, 2);
    }

    #[test]
    fn port_arithmetic() {
        assert_eq!(port_capacity((32_768, 60_999), 1, 1), 28_232);
        assert_eq!(port_capacity((32_768, 60_999), 4, 1), 112_928);
        assert_eq!(port_capacity((1024, 65_535), 1, 2), 129_024);
    }

    #[test]
    fn hundred_thousand_embedded_is_ok_here() {
        let d = diagnose(&facts(), &need(100_000));
        assert_eq!(d.verdict, Verdict::Ok, "{}", d.render_text());
        assert!(check(&d, "RLIMIT_NOFILE").needs.contains("5 rings"));
    }

    #[test]
    fn one_url_without_source_ips_blocks_on_ports() {
        let mut n = need(100_000);
        n.targets = 1;
        n.target_on_this_host = false;
        let d = diagnose(&facts(), &n);
        let ports = check(&d, "net.ipv4.ip_local_port_range");
        assert_eq!(ports.verdict, Verdict::Block);
        assert!(
            ports.fix.contains("--source-ips 127.0.0.2-127.0.0.5"),
            "{}",
            ports.fix
        );
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.connections_max_fitting, 28_232);
        n.source_ips = 4;
        assert_eq!(
            check(&diagnose(&facts(), &n), "net.ipv4.ip_local_port_range").verdict,
            Verdict::Ok
        );
    }

    #[test]
    fn five_million_blocks_on_memory_with_fix() {
        let d = diagnose(&facts(), &need(5_000_000));
        let memory = check(&d, "MemAvailable");
        assert_eq!(memory.verdict, Verdict::Block);
        // 23 GiB × 0.9 ÷ (2 × 4800 + 256) B ≈ 2.25M connections.
        let fits =
            (23u64 << 30) * 9 / 10 / (2 * KERNEL_BYTES_PER_SOCKET + USER_BYTES_PER_CONNECTION);
        assert!(
            memory.fix.contains(&format!("--connections {fits}")),
            "{}",
            memory.fix
        );
        assert_eq!(d.verdict, Verdict::Block);
        assert!(d.connections_max_fitting <= fits);
        assert!(d.render_text().contains("BLOCKED"));
    }

    #[test]
    fn memory_warns_past_half() {
        let mut f = facts();
        f.mem_available_bytes = 5 << 28;
        const {
            assert!(
                100_000 * (2 * KERNEL_BYTES_PER_SOCKET + USER_BYTES_PER_CONNECTION) * 10
                    < (5u64 << 28) * 9
            )
        };
        // 100K × (9600 + 256) B ≈ 940 MiB: over half of 1.25 GiB, under 90 %.
        assert_eq!(
            check(&diagnose(&f, &need(100_000)), "MemAvailable").verdict,
            Verdict::Warn
        );
    }

    #[test]
    fn missing_io_uring_features_block() {
        let mut f = facts();
        f.io_uring = Ok(IoUringFacts {
            multishot_recv: false,
            buf_ring: false,
            ..f.io_uring.clone().unwrap()
        });
        let d = diagnose(&f, &need(10));
        let uring = check(&d, "io_uring");
        assert_eq!(uring.verdict, Verdict::Block);
        assert!(uring.fix.contains("multishot recv (6.0)"));
        f.io_uring = Err("io_uring_setup returned EPERM".into());
        assert_eq!(diagnose(&f, &need(10)).verdict, Verdict::Block);
        let mut f = facts();
        f.io_uring_disabled = 2;
        assert_eq!(
            check(&diagnose(&f, &need(10)), "kernel.io_uring_disabled").verdict,
            Verdict::Block
        );
    }

    #[test]
    fn bind_opcode_absent_warns() {
        let mut f = facts();
        f.io_uring = Ok(IoUringFacts {
            bind_op: false,
            ..f.io_uring.clone().unwrap()
        });
        let d = diagnose(&f, &need(10));
        assert_eq!(check(&d, "io_uring bind").verdict, Verdict::Warn);
        assert_eq!(d.verdict, Verdict::Warn);
    }

    #[test]
    fn conntrack_blocks_when_full() {
        let mut f = facts();
        f.conntrack = Some((10_000, 65_536));
        let d = diagnose(&f, &need(100_000));
        let ct = check(&d, "net.netfilter.nf_conntrack_max");
        assert_eq!(ct.verdict, Verdict::Block);
        assert_eq!(ct.fix, "sysctl -w net.netfilter.nf_conntrack_max=137500");
        assert_eq!(d.connections_max_fitting, 55_536);
        // Loaded but tracking nothing (no rules hook it): a warning, not a block.
        f.conntrack = Some((0, 65_536));
        let d = diagnose(&f, &need(100_000));
        assert_eq!(
            check(&d, "net.netfilter.nf_conntrack_max").verdict,
            Verdict::Warn
        );
        assert_ne!(d.verdict, Verdict::Block);
    }

    #[test]
    fn file_max_blocks_only_without_root() {
        let mut f = facts();
        f.file_max = 100_000;
        f.file_nr = 2_000;
        assert_eq!(
            check(&diagnose(&f, &need(100_000)), "fs.file-max").verdict,
            Verdict::Warn
        );
        f.is_root = false;
        let d = diagnose(&f, &need(100_000));
        assert_eq!(check(&d, "fs.file-max").verdict, Verdict::Block);
        assert_eq!(d.connections_max_fitting, 49_000);
    }

    #[test]
    fn small_accept_queue_warns_for_fast_connects() {
        let mut f = facts();
        f.somaxconn = 128;
        let d = diagnose(&f, &need(100_000));
        let check = check(&d, "net.core.somaxconn");
        assert_eq!(check.verdict, Verdict::Warn);
        assert_eq!(check.fix, "sysctl -w net.core.somaxconn=256");
    }

    #[test]
    fn tcp_mem_warns_when_minimum_buffers_cannot_fit() {
        let mut f = facts();
        f.tcp_mem_pages = (1000, 2000, 4000);
        let d = diagnose(&f, &need(100_000));
        assert_eq!(check(&d, "net.ipv4.tcp_mem").verdict, Verdict::Warn);
    }

    #[test]
    fn many_rings_warn_with_limits_fix() {
        let mut f = facts();
        f.nofile_hard = 1024;
        let d = diagnose(&f, &need(1_000_000));
        let nofile = check(&d, "RLIMIT_NOFILE");
        assert_eq!(nofile.verdict, Verdict::Warn);
        assert!(nofile.fix.contains("* hard nofile"), "{}", nofile.fix);
    }
}
