//! Reads the limits `doctor` judges from /proc, /sys, rlimits and an io_uring probe. Part of
//! `sys/`; changes nothing. A value the kernel does not expose reads as the kernel default
//! named beside it, never as a guess presented as a reading.

use super::doctor::{Facts, IoUringFacts};
use crate::ring::probe_features;

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_u64(path: &str) -> Option<u64> {
    read_trimmed(path)?.split_whitespace().next()?.parse().ok()
}

fn read_fields(path: &str) -> Vec<u64> {
    read_trimmed(path)
        .map(|s| {
            s.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// This host's name (/proc/sys/kernel/hostname), or `unknown`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn mem_available_bytes() -> u64 {
    meminfo_kib("MemAvailable").unwrap_or(0) * 1024
}

/// One /proc/meminfo field in KiB (e.g. "Slab").
pub fn meminfo_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

pub fn nofile_limits() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (1024, 1024);
    }
    (lim.rlim_cur, lim.rlim_max)
}

pub fn read_facts() -> Facts {
    let (nofile_soft, nofile_hard) = nofile_limits();
    let port_range = match read_fields("/proc/sys/net/ipv4/ip_local_port_range")[..] {
        [low, high] => (low as u32, high as u32),
        _ => (32_768, 60_999), // the kernel default
    };
    let tcp_mem = read_fields("/proc/sys/net/ipv4/tcp_mem");
    let conntrack = match (
        read_u64("/proc/sys/net/netfilter/nf_conntrack_count"),
        read_u64("/proc/sys/net/netfilter/nf_conntrack_max"),
    ) {
        (Some(count), Some(max)) => Some((count, max)),
        _ => None,
    };
    let io_uring = probe_features()
        .map(|f| IoUringFacts {
            socket_op: f.socket_op,
            bind_op: f.bind_op,
            multishot_accept: f.multishot_accept,
            multishot_recv: f.multishot_recv,
            buf_ring: f.buf_ring,
            ext_arg: f.ext_arg,
        })
        .map_err(|e| e.to_string());
    // SAFETY: sysconf and geteuid take no pointers.
    let (cpus_online, is_root) = unsafe {
        (
            libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize,
            libc::geteuid() == 0,
        )
    };
    Facts {
        nofile_soft,
        nofile_hard,
        nr_open: read_u64("/proc/sys/fs/nr_open").unwrap_or(1_048_576),
        file_max: read_u64("/proc/sys/fs/file-max").unwrap_or(u64::MAX),
        file_nr: read_u64("/proc/sys/fs/file-nr").unwrap_or(0),
        port_range,
        somaxconn: read_u64("/proc/sys/net/core/somaxconn").unwrap_or(4096),
        tcp_max_syn_backlog: read_u64("/proc/sys/net/ipv4/tcp_max_syn_backlog").unwrap_or(1024),
        tcp_mem_pages: match tcp_mem[..] {
            [low, pressure, high] => (low, pressure, high),
            _ => (0, 0, u64::MAX / 8192),
        },
        tcp_rmem_min: read_u64("/proc/sys/net/ipv4/tcp_rmem").unwrap_or(4096),
        tcp_wmem_min: read_u64("/proc/sys/net/ipv4/tcp_wmem").unwrap_or(4096),
        mem_available_bytes: mem_available_bytes(),
        conntrack,
        tcp_tw_reuse: read_u64("/proc/sys/net/ipv4/tcp_tw_reuse").unwrap_or(2),
        tcp_max_tw_buckets: read_u64("/proc/sys/net/ipv4/tcp_max_tw_buckets").unwrap_or(262_144),
        kernel_release: read_trimmed("/proc/sys/kernel/osrelease")
            .unwrap_or_else(|| "unknown".into()),
        io_uring_disabled: read_u64("/proc/sys/kernel/io_uring_disabled").unwrap_or(0),
        io_uring,
        cpus_online,
        cpus_allowed: core_affinity::get_core_ids().map_or(cpus_online, |ids| ids.len()),
        is_root,
        fault_rules: crate::netfault::leftovers::find()
            .into_iter()
            .map(|l| crate::sys::doctor::FaultRule {
                owner_alive: l.owner_alive(),
                what: l.what,
                owner_pid: l.owner_pid,
                fix: l.fix,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let facts = read_facts();
        assert!(facts.nofile_hard >= facts.nofile_soft);
        assert!(facts.port_range.0 < facts.port_range.1);
        assert!(facts.mem_available_bytes > 0);
        assert!(facts.cpus_allowed >= 1);
        assert!(meminfo_kib("Slab").is_some());
        assert!(
            facts.io_uring.is_ok(),
            "tests need io_uring: {:?}",
            facts.io_uring
        );
    }
}
