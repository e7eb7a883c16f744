//! Network faults on the load host: a partition, added latency or packet loss on the path to
//! the run's targets, for the failure_recovery phase (`scenario/phases/recovery.rs`).
//!
//! Nothing here runs in the run's own process but the handle: a **guard** child process
//! (`mcpstorm fault-guard`, `guard.rs`) installs the rules and removes them when told, and
//! also when its stdin closes — so a run that ends, crashes, is interrupted or SIGKILLed
//! leaves nothing behind (the kernel closes the pipe). What is installed is plain text built
//! I/O-free (`rules.rs`); latency is a userspace delay behind NFQUEUE (`delay.rs` over the
//! `nfqueue.rs` codec); `leftovers.rs` finds what a guard that was itself killed left, for
//! `doctor` and for the next guard's sweep.

pub mod delay;
pub mod guard;
pub mod leftovers;
pub mod nfqueue;
pub mod rules;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// What happens to packets on the path to the targets while the fault is on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Impairment {
    /// Every packet to and from the targets is dropped: nothing closes, no RST arrives.
    Partition,
    /// Every packet to the targets waits `delay_us` (± up to `jitter_us`, uniform).
    Latency { delay_us: u64, jitter_us: u64 },
    /// This share (0–100) of the packets to the targets is dropped.
    Loss { percent: f64 },
}

impl Impairment {
    pub fn describe(&self) -> String {
        match *self {
            Impairment::Partition => {
                "partition (every packet to and from the targets dropped)".into()
            }
            Impairment::Latency {
                delay_us,
                jitter_us: 0,
            } => format!(
                "latency +{} ms on the way to the targets",
                delay_us as f64 / 1e3
            ),
            Impairment::Latency {
                delay_us,
                jitter_us,
            } => format!(
                "latency +{} ms ± {} ms on the way to the targets",
                delay_us as f64 / 1e3,
                jitter_us as f64 / 1e3
            ),
            Impairment::Loss { percent } => {
                format!("loss {percent}% of the packets to the targets")
            }
        }
    }

    /// The mechanism, for the report.
    pub fn mechanism(&self, owner_pid: u32) -> String {
        let queue = format!(
            "iptables mangle chain {} → NFQUEUE → the guard's line",
            rules::chain_name(owner_pid)
        );
        match self {
            Impairment::Partition => format!(
                "{queue} drops every packet to the targets; nftables table inet {} drops every packet from them",
                rules::table_name(owner_pid)
            ),
            Impairment::Loss { .. } => format!("{queue} drops packets to the targets at random"),
            Impairment::Latency { .. } => format!("{queue} delays packets to the targets"),
        }
    }

    /// The line's odds of dropping a packet, per million.
    pub fn drop_per_million(&self) -> u32 {
        match *self {
            Impairment::Partition => 1_000_000,
            Impairment::Loss { percent } => (percent * 10_000.0).round().clamp(0.0, 1e6) as u32,
            Impairment::Latency { .. } => 0,
        }
    }

    /// The line's delay and jitter.
    pub fn delay_us(&self) -> (u64, u64) {
        match *self {
            Impairment::Latency {
                delay_us,
                jitter_us,
            } => (delay_us, jitter_us),
            _ => (0, 0),
        }
    }
}

/// A fault as the guard receives it (JSON on its command line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetFault {
    pub impairment: Impairment,
    /// Every address (and port) the run connects to; only their traffic is touched.
    pub targets: Vec<SocketAddr>,
    /// The run's pid: in every name the fault installs, so leftovers name their owner.
    pub owner_pid: u32,
}

/// Whether `pid` is a live process (signal 0 probes without sending anything).
pub fn process_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists and may be signalled;
    // it touches no memory of ours.
    let rc = unsafe { libc::kill(pid as i32, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_impairment_is_a_line_of_odds_and_delay() {
        assert_eq!(Impairment::Partition.drop_per_million(), 1_000_000);
        assert_eq!(Impairment::Loss { percent: 5.0 }.drop_per_million(), 50_000);
        assert_eq!(Impairment::Loss { percent: 0.01 }.drop_per_million(), 100);
        let latency = Impairment::Latency {
            delay_us: 100_000,
            jitter_us: 20_000,
        };
        assert_eq!(latency.drop_per_million(), 0);
        assert_eq!(latency.delay_us(), (100_000, 20_000));
        assert_eq!(Impairment::Partition.delay_us(), (0, 0));
    }

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(0));
    }
}
