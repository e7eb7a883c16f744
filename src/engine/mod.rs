//! `mcpstorm run`'s client engine: `drive` spawns one pinned shard thread per planned shard and
//! runs the phase driver (`scenario/`) on the calling thread while they run; the driver steers
//! them with commands and the shards hand back their metrics per segment. Shards do all I/O
//! (`shard.rs`); this file does none beyond /proc (RSS, CPU, slab).
//!
//! Module map: `plan.rs` (options → validated plan), `template.rs` (pre-encoded requests),
//! `response.rs` (I/O-free response reader), `schedule.rs` (pacing, mix), `metrics.rs`
//! (histograms, counters), `timeline.rs` (per-second samples), `shard.rs` (the io_uring loop),
//! `embedded.rs` (the embedded server child).

pub mod client_reply;
pub mod conn;
pub mod control;
pub mod embedded;
pub mod headers;
mod machine;
pub mod metrics;
pub mod plan;
pub mod replicas;
mod reply_conn;
pub mod response;
pub mod schedule;
pub mod segment;
pub mod shard;
mod slab;
pub mod stream;
mod stream_conn;
pub mod target;
pub mod template;
pub mod timeline;
pub mod workload;

use control::Shared;
use metrics::ShardMetrics;
use plan::EnginePlan;
use shard::Shard;
use std::sync::atomic::Ordering;
use timeline::TimelineMerger;

/// The per-second slices as they arrive, merged into samples.
pub struct TimelineFeed {
    receiver: std::sync::mpsc::Receiver<timeline::SecondSlice>,
    merger: TimelineMerger,
}

impl TimelineFeed {
    /// Merges every slice received so far (call it often: slices must not pile up).
    pub fn drain(&mut self) {
        for slice in self.receiver.try_iter() {
            self.merger.add(slice);
        }
    }

    /// The seconds every shard has reported, in order of completion.
    pub fn samples(&self) -> &[crate::report::SecondSample] {
        &self.merger.samples
    }
}

/// What `drive` returns: each shard's metrics at its end (with the segment they belong to),
/// the merged per-second samples, and the coordinator's own result.
pub struct Driven<T> {
    pub final_metrics: Vec<(u32, ShardMetrics)>,
    pub samples: Vec<crate::report::SecondSample>,
    pub outcome: T,
    /// Shards that failed (io_uring error) or panicked: their figures are missing.
    pub shard_errors: Vec<String>,
}

/// Ends a shard's part in the run however its thread leaves (a panic included): it
/// acknowledges every command and holds no segment open, so the coordinator never waits on
/// it, and the run stops — the coordinator then writes a partial report instead of stalling.
struct ShardExit<'a> {
    shared: &'a Shared,
    id: usize,
}

impl Drop for ShardExit<'_> {
    fn drop(&mut self) {
        self.shared.acked[self.id].store(u64::MAX, Ordering::SeqCst);
        self.shared.earlier_open[self.id].store(0, Ordering::Release);
        if std::thread::panicking() {
            self.shared.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// Spawns one pinned shard thread per planned shard, runs `coordinate` on this thread while
/// they run, and joins them. A shard that failed (set-up, io_uring, panic) stops the run and
/// is named in `shard_errors`; `Err` is not used for it, so a phased run still reports.
pub fn drive<T>(
    plan: &EnginePlan,
    features: &crate::ring::KernelFeatures,
    shared: &Shared,
    segments: Option<std::sync::mpsc::Sender<control::SegmentMetrics>>,
    coordinate: impl FnOnce(&mut TimelineFeed) -> T,
) -> Result<Driven<T>, String> {
    let (timeline_sender, timeline_receiver) = std::sync::mpsc::channel();
    let mut feed = TimelineFeed {
        receiver: timeline_receiver,
        merger: TimelineMerger::new(plan.shards.len()),
    };
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(plan.shards.len());
        for id in 0..plan.shards.len() {
            let timeline_sender = timeline_sender.clone();
            let segments = segments.clone();
            handles.push(scope.spawn(move || -> Result<(u32, ShardMetrics), String> {
                let _exit = ShardExit { shared, id };
                if let Some(cpu) = plan.shards[id].cpu {
                    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                }
                let mut shard = match Shard::new(id, plan, shared, features, timeline_sender) {
                    Ok(shard) => shard,
                    Err(e) => {
                        shared.stop.store(true, Ordering::SeqCst);
                        return Err(format!("shard {id}: {e}"));
                    }
                };
                if let Some(segments) = segments {
                    shard.set_segment_sender(segments);
                }
                let result = shard.run();
                let metrics = shard.take_metrics();
                match result {
                    Ok(()) => Ok((shard.segment(), metrics)),
                    Err(e) => {
                        shared.stop.store(true, Ordering::SeqCst);
                        Err(format!("shard {id}: io_uring: {e}"))
                    }
                }
            }));
        }
        drop(timeline_sender);
        drop(segments);
        let outcome = coordinate(&mut feed);
        // Whatever the coordinator decided, the shards end now.
        shared.stop.store(true, Ordering::SeqCst);
        let mut final_metrics = Vec::with_capacity(handles.len());
        let mut errors = Vec::new();
        for handle in handles {
            match handle.join() {
                Ok(Ok(metrics)) => final_metrics.push(metrics),
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push("a shard thread panicked".to_string()),
            }
        }
        feed.drain();
        feed.merger.finish_all();
        Ok(Driven {
            final_metrics,
            samples: std::mem::take(&mut feed.merger.samples),
            outcome,
            shard_errors: errors,
        })
    })
}

/// CPU time (user + system) this process has used, µs.
pub(crate) fn self_cpu_us() -> u64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// CPU time (user + system) of another process, µs, from /proc/PID/stat.
pub(crate) fn process_cpu_us(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: sysconf reads a constant of the running system.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    parse_stat_cpu_ticks(&text).map(|ticks| ticks * 1_000_000 / ticks_per_s)
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line; the command name may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu_ticks(text: &str) -> Option<u64> {
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of this process (VmRSS).
pub(crate) fn rss_bytes() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:").unwrap_or(0) * 1024
}

/// Kernel slab memory of the whole machine (/proc/meminfo `Slab:`).
pub(crate) fn slab_bytes() -> Option<u64> {
    proc_kib("/proc/meminfo", "Slab:").map(|kib| kib * 1024)
}

pub(crate) fn proc_kib(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_kib(&text, key)
}

fn parse_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let text = "MemTotal:       24684372 kB\nSlab:             312044 kB\n";
        assert_eq!(parse_kib(text, "Slab:"), Some(312_044));
        assert_eq!(parse_kib(text, "VmRSS:"), None);
        assert!(rss_bytes() > 0);
        let stat = "4242 (a b) c) S 1 2 3 4 5 6 7 8 9 10 123 45 0 0 20 0 1";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(168));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert!(process_cpu_us(std::process::id()).is_some());
        let before = self_cpu_us();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(self_cpu_us() > before, "{x}");
        assert!(slab_bytes().is_some());
    }
}
