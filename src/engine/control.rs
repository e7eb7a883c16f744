//! The coordinator ↔ shard channel of one run: the `Command` the phase driver publishes, the
//! per-shard atomics the shards report through (`Shared`), and the metrics a shard hands over
//! at each segment boundary. Part of `engine/`; written by `scenario/driver.rs`, read by
//! every `shard.rs` loop turn.

use super::metrics::ShardMetrics;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the coordinator of a phased run asks of every shard (`Shared::publish`). A shard
/// applies a new command at the top of its loop and acknowledges its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Measurement segment: when it changes, the shard hands its metrics for the previous
    /// segment to the coordinator (a phase, or a step of the performance phase).
    pub segment: u32,
    /// Phase name stamped on the per-second slices.
    pub label: &'static str,
    /// Sessions to hold over all shards (each shard opens its share; never lowered).
    pub hold: u64,
    /// Send load requests.
    pub load: bool,
    /// Offered requests/s over all shards; 0 = closed loop.
    pub rate_per_s: u64,
    /// Abortively close this share (0–1) of the held connections once, when the command is
    /// applied; they reconnect and keep their session.
    pub drop_fraction: f64,
    /// End every idle held session with `DELETE` and close its connection (cool_down).
    pub delete_sessions: bool,
    /// A request in flight longer than this counts as stalled (its session is not answering);
    /// zero = not judged.
    pub stall_after: Duration,
    /// A new value marks the fault instant: each shard notes the first success of a request
    /// sent after it (`Shared::first_ok_after_mark_ns`).
    pub mark: u64,
    /// Closed loop: at most this many load requests in flight over all shards (0 = one per
    /// session). The baseline runs with 1: the server's unloaded service time.
    pub in_flight_max: u64,
    /// The ramp ran out of time (`--ramp-timeout`): every connection still without its first
    /// session is given up (`error_ramp_timeout`, failed), and no more are opened.
    pub ramp_over: bool,
    /// Where the failure_recovery fault stands: while it is not `Off`, a server's orderly
    /// close counts as a fault's (the session is down) and requests in flight are sorted by
    /// how they end (`fault_requests_*`); the shard notes the instant it first sees `Healed`.
    pub fault_stage: FaultStage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultStage {
    #[default]
    Off,
    /// Injected and under way.
    On,
    /// Over (rules removed, server back, command done); recovery still measured.
    Healed,
}

/// One shard's metrics for one segment, handed over when the segment ends.
pub struct SegmentMetrics {
    pub segment: u32,
    pub shard: usize,
    pub metrics: ShardMetrics,
}

/// Coordinator ↔ shard signals. Shards write only their own slots of the per-shard vectors.
pub struct Shared {
    pub epoch: Instant,
    pub shards_ready: AtomicUsize,
    pub go_connect: AtomicBool,
    pub stop: AtomicBool,
    /// Sessions each shard holds right now.
    pub held: Vec<AtomicU64>,
    /// Connections whose first session attempt ended (established or failed for good).
    pub settled: Vec<AtomicU64>,
    /// Connections that failed for good without a session.
    pub failed: Vec<AtomicU64>,
    /// Load requests awaiting their response.
    pub in_flight: Vec<AtomicU64>,
    /// Held sessions not answering since they lost their connection (see `F::DOWN`).
    pub down: Vec<AtomicU64>,
    /// Streams each shard holds open right now (`--streams`).
    pub streams_held: Vec<AtomicU64>,
    /// Phased runs: the sequence number of `command` (0 = none yet: single-phase run).
    pub command_seq: AtomicU64,
    pub command: Mutex<Command>,
    /// The last command sequence number each shard applied.
    pub acked: Vec<AtomicU64>,
    /// 1 once a shard has sent DELETE for every idle held session and every answer is in.
    pub deletes_done: Vec<AtomicU64>,
    /// Load requests in flight longer than the command's `stall_after` on sessions not `F::DOWN`
    /// (refreshed every sweep).
    pub stalled: Vec<AtomicU64>,
    /// Send time (ns since `epoch`) of the oldest load request in flight; 0 = none (refreshed
    /// every sweep).
    pub oldest_in_flight_sent_ns: Vec<AtomicU64>,
    /// When the first request sent after the command's `mark` succeeded (ns since `epoch`);
    /// 0 = none yet.
    pub first_ok_after_mark_ns: Vec<AtomicU64>,
    /// 1 while a shard keeps an earlier segment open (requests of it still in flight). Stored
    /// with Release after the segment is handed over, so a reader that sees 0 with Acquire
    /// finds the figures in the segment channel.
    pub earlier_open: Vec<AtomicU64>,
    /// Replicas (`--failover`): per shard × replica (`shard * replicas + replica`), sessions
    /// held there now, load requests answered there and sessions that moved away from it
    /// (run totals); empty without replicas.
    pub replica_held: Vec<AtomicU64>,
    pub replica_answered: Vec<AtomicU64>,
    pub replica_moved_away: Vec<AtomicU64>,
    /// Per shard: sessions moved to another replica since the fault mark that answered there.
    pub moved_answering: Vec<AtomicU64>,
    pub replicas: usize,
}

impl Shared {
    /// `replicas`: 0 without `--failover`.
    pub fn new(shards: usize, replicas: usize) -> Shared {
        let per_shard = || (0..shards).map(|_| AtomicU64::new(0)).collect();
        let per_replica = || (0..shards * replicas).map(|_| AtomicU64::new(0)).collect();
        Shared {
            epoch: Instant::now(),
            shards_ready: AtomicUsize::new(0),
            go_connect: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            held: per_shard(),
            settled: per_shard(),
            failed: per_shard(),
            in_flight: per_shard(),
            down: per_shard(),
            streams_held: per_shard(),
            command_seq: AtomicU64::new(0),
            command: Mutex::new(Command {
                segment: 0,
                label: "baseline",
                hold: 0,
                load: false,
                rate_per_s: 0,
                drop_fraction: 0.0,
                delete_sessions: false,
                stall_after: Duration::ZERO,
                mark: 0,
                in_flight_max: 0,
                ramp_over: false,
                fault_stage: FaultStage::Off,
            }),
            acked: per_shard(),
            deletes_done: per_shard(),
            stalled: per_shard(),
            oldest_in_flight_sent_ns: per_shard(),
            first_ok_after_mark_ns: per_shard(),
            earlier_open: per_shard(),
            replica_held: per_replica(),
            replica_answered: per_replica(),
            replica_moved_away: per_replica(),
            moved_answering: per_shard(),
            replicas,
        }
    }

    /// Per replica, summed over the shards: one of the `replica_*` counters.
    pub fn per_replica(&self, values: &[AtomicU64]) -> Vec<u64> {
        let mut sums = vec![0u64; self.replicas];
        for (i, v) in values.iter().enumerate() {
            sums[i % self.replicas.max(1)] += v.load(Ordering::Relaxed);
        }
        sums
    }

    /// Publishes a command for every shard; returns its sequence number.
    pub fn publish(&self, command: Command) -> u64 {
        let mut guard = self
            .command
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = command;
        self.command_seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// No shard keeps an earlier segment open: every segment's figures are in the channel.
    pub fn segments_settled(&self) -> bool {
        self.earlier_open
            .iter()
            .all(|e| e.load(Ordering::Acquire) == 0)
    }

    /// Every shard has applied command `seq` (or ended).
    pub fn all_acked(&self, seq: u64) -> bool {
        self.acked.iter().all(|a| a.load(Ordering::SeqCst) >= seq)
    }

    pub fn sum(values: &[AtomicU64]) -> u64 {
        values.iter().map(|v| v.load(Ordering::Relaxed)).sum()
    }
}
