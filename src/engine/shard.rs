//! One client shard: a thread pinned to a CPU that owns a slice of the connections, spread over
//! as many rings as the slice needs (a ring's direct-descriptor table is capped at
//! RLIMIT_NOFILE). Part of `engine/`: this file is the ring plumbing and the dispatch of
//! completions; what a connection's bytes and answers mean is decided in `conn.rs` (I/O-free),
//! the wire in `response.rs`, `template.rs` and `proto/`, TLS in `tls/`, the pacing in
//! `schedule.rs`, the coordinator's commands in `control.rs`.
//!
//! Rings: the first ring (leader) is the one the thread blocks on; every follower is watched by
//! a multishot POLL_ADD on its fd submitted to the leader, exactly as in `server/shard.rs`.
//!
//! A connection's slot index *is* its fixed-file index in its ring: IORING_OP_SOCKET creates
//! the socket straight into that slot, then (linked) TCP_NODELAY by uring_cmd setsockopt,
//! SO_REUSEADDR and IORING_OP_BIND when a source address is planned, and IORING_OP_CONNECT.
//! Completion ownership: `chain_pending` counts the chain's outstanding completions and the
//! RECV_ARMED / SEND_IN_FLIGHT / SHUTDOWN_IN_FLIGHT / CLOSE_SUBMITTED flags the rest; a slot
//! is closed only when all are clear, and reused (new socket, new generation) only after its
//! Close completes, so a late completion never lands on a reused slot (the generation in
//! `user_data` asserts it).

use super::conn::ConnFlags as F;
use super::conn::*;
use super::control::{SegmentMetrics, Shared};
use super::machine::{Action, Ctx, Event, Phase};
use super::metrics::{Counter, ShardMetrics};
use super::plan::{EnginePlan, ShardPlan};
use super::response::Scratch;
use super::schedule::{Mix, Pacer, Rng, backoff_ns};
use super::slab::Slab;
use super::stream::StreamReader;
use super::stream_conn::StreamAction;
use super::template::Request;
use super::timeline::SecondSlice;
use super::workload::GenState;
use crate::ring::pool::Pool;
use crate::ring::{BUF_GROUP, KernelFeatures, Op, Ring, RingConfig, RingError, RingRole, UserData};
use crate::sys::sockaddr::KernelSockAddr;
use crate::tls::{TlsConn, TlsError};
use io_uring::{cqueue, opcode, squeue, types};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Duration;

mod failover;
mod fault;
mod legacy;
mod replies;
mod streams;

/// The figures of the segment before the current one, kept open while requests intended in it
/// are still in flight, so a phase's figures cover exactly the requests intended in it
/// (ARCHITECTURE.md "Time and latency"): their answers land here, and it is handed over when
/// the last one is in (or when the next boundary comes first).
struct Earlier {
    segment: u32,
    epoch: u8,
    in_flight: u64,
    metrics: ShardMetrics,
}

/// Whose figures a finished request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Current,
    /// `Shard::earlier[i]`.
    Earlier(usize),
    /// Older than every `Earlier`: already handed over; counted in
    /// `answers_after_their_segment`.
    Older,
}

/// Ended segments kept open for their requests still in flight. failure_recovery changes
/// segments twice within a phase (fault on, fault over), and a request stalled by a partition
/// from before the fault must still land in its own segment when it is answered after both.
const EARLIER_MAX: usize = 4;

/// A due request this much later than intended is dropped (`dropped_generator_behind`)
/// instead of sent stale.
const GENERATOR_BEHIND_NS: u64 = 1_000_000_000;

/// Handshakes (connect → initialized) a shard runs at once. Bounds the SQ backlog and the
/// source-address ring below.
const HANDSHAKES_MAX: usize = 1024;
/// Handshakes sessions and streams run at once: a stream starts while fewer than this are
/// running, so sessions (at most `HANDSHAKES_MAX`) never take every place from the streams.
/// Under `--transport sse` a session's initialize waits for its stream's endpoint: with
/// one bound for both, 1024 waiting sessions starved their streams until every initialize
/// timed out.
const HANDSHAKES_WITH_STREAMS_MAX: usize = 2 * HANDSHAKES_MAX;
/// Longest `Retry-After` honoured.
const RETRY_AFTER_MAX_S: u64 = 60;
/// Backoff after a 503 without `Retry-After`: `backoff_ns` of this attempt (≈ 0.4–1.2 s).
const BUSY_BACKOFF_ATTEMPT: u8 = 3;
/// SQEs in the longest connect chain (SOCKET, two setsockopt, BIND, CONNECT).
const CHAIN_LEN_MAX: usize = 5;
/// Source sockaddrs for BIND, reused round-robin; > HANDSHAKES_WITH_STREAMS_MAX (see
/// `start_connect`).
const SOURCE_ADDRS_LEN: usize = 4096;
/// How often the slab is swept for expired deadlines (the timeouts' resolution):
/// a tenth of the shorter timeout, within these bounds: timeouts fire within 10 % of their
/// value, and a run of 100K connections with 30 s timeouts sweeps once a second, not ten
/// times (each sweep reads the whole slab).
const SWEEP_INTERVAL_MIN: Duration = Duration::from_millis(10);
const SWEEP_INTERVAL_MAX: Duration = Duration::from_secs(1);
/// Longest the loop sleeps without a deadline.
const LOOP_TICK: Duration = Duration::from_millis(5);
/// A request later than this behind its intended time counts as a late send.
const LATE_SEND_NS: u64 = 1_000_000;
/// Load requests a shard has in its send arena at once (unsent or being sent). A closed loop
/// over N connections would otherwise take N buffers in one burst.
const SEND_BUFS_MAX: usize = 4096;
/// How long the end of a run waits for in-flight requests and closes.
const DRAIN_MAX: Duration = Duration::from_secs(3);

static ONE: libc::c_int = 1;
/// SO_LINGER with a zero timeout: close(2) then resets the connection (RST) instead of FIN.
static LINGER_ZERO: libc::linger = libc::linger {
    l_onoff: 1,
    l_linger: 0,
};

struct RingSlot {
    ring: Ring,
    /// Session slots of this ring; the slots after them hold their streams (`--streams`).
    sessions: u32,
    /// Each stream slot's reader state (index: slot − `sessions`), grown as streams open.
    readers: Vec<StreamReader>,
    conns: Slab,
    /// `https://` runs: each slot's TLS layer while its connection is open (empty otherwise).
    tls: Vec<Option<Box<TlsConn>>>,
    /// The reply connection's slot (after the sessions and their streams).
    reply_slot: u32,
    /// Answers to server-to-client requests waiting for the reply connection, oldest first.
    replies: VecDeque<replies::QueuedReply>,
    /// The target the reply connection is connected to (its answers must be for it).
    reply_target: u16,
    /// After a failed reply connection: not reopened before this.
    reply_due_ns: u64,
}

pub struct Shard<'a> {
    id: usize,
    plan: &'a EnginePlan,
    slice: &'a ShardPlan,
    shared: &'a Shared,
    rings: Vec<RingSlot>,
    targets: Box<[KernelSockAddr]>,
    source_addrs: Box<[KernelSockAddr]>,
    source_addrs_next: usize,
    sends: Pool,
    spills: Pool,
    scratch: Scratch,
    /// The connection machine's action list (`run_event`), reused.
    actions: Vec<Action>,
    /// `https://`: this shard's TLS client configuration (its own ticket store) and each
    /// target's server name.
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    tls_names: Vec<Option<rustls::pki_types::ServerName<'static>>>,
    /// Plaintext of the bytes being decrypted, and of the request being encrypted (reused:
    /// no allocation per turn; two, as a handshake's end decrypts and sends initialize).
    tls_plain: Vec<u8>,
    tls_request: Vec<u8>,
    /// Ready connections waiting for a request (ring, slot, generation).
    /// Intrusive FIFO through `Conn::next_idle` (global indices `ring × slots + slot`).
    idle_head: u32,
    idle_tail: u32,
    /// Connections waiting for a handshake slot to reconnect.
    reconnects: VecDeque<(u16, u32, u16)>,
    /// Connections waiting out a connect backoff: (due, ring, slot, generation).
    retries: BinaryHeap<Reverse<(u64, u16, u32, u16)>>,
    /// Connections in `Waiting` (503 backoff): (due, ring, slot, generation).
    waiting: BinaryHeap<Reverse<(u64, u16, u32, u16)>>,
    /// Next sweep of the slab for connect and request timeouts.
    next_sweep_ns: u64,
    handshakes: usize,
    opened: u32,
    settled: u32,
    held: u64,
    in_flight: u64,
    open_conns: u64,
    connect_pacer: Pacer,
    request_pacer: Pacer,
    mix: Mix,
    rng: Rng,
    /// This shard's next `{{seq}}` (shard id, then + shard count each time).
    seq: u64,
    /// Generated arguments of the request being written (reused).
    generated: Vec<u8>,
    phase: Phase,
    command_seq: u64,
    segment: u32,
    label: &'static str,
    segments: Option<Sender<SegmentMetrics>>,
    /// Counts segment changes (mod 256), stamped on each request sent (`Conn::epoch`).
    epoch: u8,
    /// Load requests in flight that were sent in the current segment.
    in_flight_current: u64,
    /// Ended segments with requests still in flight, oldest first (at most `EARLIER_MAX`).
    earlier: Vec<Earlier>,
    /// See `Command::stall_after`, ns (0 = off).
    stall_after_ns: u64,
    /// `Command::ramp_over` was applied.
    ramp_given_up: bool,
    /// `--reconnect-rate`: when the next reconnect may start.
    reconnect_next_ns: u64,
    /// While `Command::fault_stage` is not `Off`: every lost connection counts as down, an
    /// orderly close included (a killed server's sockets may close with a plain FIN), and
    /// requests in flight are sorted by how they end (`shard/fault.rs`).
    fault_window: bool,
    /// When this shard first saw the fault `Healed` (0 = not yet).
    heal_ns: u64,
    /// This shard's share of `Command::in_flight_max` (u64::MAX = unlimited).
    in_flight_max: u64,
    /// See `Command::mark`: its value, when it was applied, and the first success since.
    mark: u64,
    mark_ns: u64,
    first_ok_after_mark_ns: u64,
    /// Connections this shard opens (its share of the command's `hold`).
    hold_target: u32,
    /// Offered rate of this shard (0 = closed loop).
    rate_per_s: u64,
    /// An open-model rate whose share for this shard is 0 (fewer req/s than shards).
    no_rate_share: bool,
    /// Held sessions not answering since they lost their connection.
    down: u64,
    /// cool_down: DELETE the held sessions; the next (ring, slot) to consider.
    deleting: bool,
    delete_ring: usize,
    delete_slot: u32,
    /// Connections that ended without a session (all segments).
    failed_for_good: u64,
    /// Requests/failures of the current second counted before a segment change reset the
    /// counters.
    second_ok_carry: u64,
    second_failed_carry: u64,
    /// Protocol 2026-07-28: sessionless, no initialize.
    modern: bool,
    now_ns: u64,
    ramp_start_ns: u64,
    phase_deadline_ns: u64,
    pub metrics: ShardMetrics,
    timeline: Sender<SecondSlice>,
    /// The second of the run (since this shard's go signal) being measured, when it ends,
    /// and the counters at its start.
    second_index: u64,
    second_end_ns: u64,
    second_ok_base: u64,
    second_failed_base: u64,
    /// `--streams`: streams due to open or reopen: (due, ring, slot, generation).
    stream_opens: BinaryHeap<Reverse<(u64, u16, u32, u16)>>,
    /// Streams open now.
    streams_held: u64,
    /// The server answered a stream's open with 405 (it offers none): no more are opened.
    streams_unavailable: bool,
    /// The stream machine's action list, reused.
    stream_actions: Vec<StreamAction>,
    /// Event data of the read being fed (moved to a spill buffer if an event straddles).
    stream_data: Vec<u8>,
    /// Notifications received in the current second.
    second_notifications: u64,
    /// UNIX time of `Shared::epoch`, µs: notifications carry their send time in UNIX µs.
    unix_epoch_us: u64,
    /// `--transport sse`: answers of which one half (202 or reply) is in, by session
    /// (`r × sessions_per_ring + slot`); and what the read being handled said.
    legacy_pending: std::collections::HashMap<u32, legacy::Pending>,
    legacy_events: Vec<legacy::LegacyEvent>,
    /// `--failover`: each session's replica and the choice of the next (`shard/failover.rs`).
    replicas: Option<super::replicas::Replicas>,
    /// The reply machine's action list, reused.
    reply_actions: Vec<super::reply_conn::ReplyAction>,
    /// Server-to-client requests already answered of a response still being read, by
    /// connection (`r × sessions_per_ring + slot`; see `shard/replies.rs`).
    asked_seen: std::collections::HashMap<u32, u16>,
    /// Requests a stream read found (answered once the read is done).
    stream_asked: Vec<super::response::AskedRequest>,
}

/// IORING_OP_BIND of fixed file `slot` to `addr` (kernel 6.11). The sockaddr is kept alive by
/// the caller until submission (see `start_connect`).
fn bind_entry(slot: u32, addr: &KernelSockAddr) -> squeue::Entry {
    opcode::Bind::new(types::Fixed(slot), addr.as_ptr(), addr.byte_len()).build()
}

impl<'a> Shard<'a> {
    pub fn new(
        id: usize,
        plan: &'a EnginePlan,
        shared: &'a Shared,
        features: &KernelFeatures,
        timeline: Sender<SecondSlice>,
    ) -> Result<Shard<'a>, RingError> {
        let slice = &plan.shards[id];
        let mut rings = Vec::with_capacity(slice.rings);
        let mut remaining = slice.connections;
        for index in 0..slice.rings {
            let sessions = remaining.min(plan.sessions_per_ring);
            remaining -= sessions;
            let reply_slot = sessions + super::plan::streams_among(sessions, plan.stream_percent);
            let slots = reply_slot + super::plan::REPLY_SLOTS_PER_RING;
            let config = RingConfig {
                sq_entries: 4096,
                cq_entries: 16384,
                fixed_files: plan.slots_per_ring,
                buf_count: plan.buf_count,
                buf_bytes: plan.buf_bytes,
                backlog_max: plan.slots_per_ring as usize * 6 + 4096,
            };
            let role = if index == 0 {
                RingRole::Leader
            } else {
                RingRole::Follower
            };
            rings.push(RingSlot {
                ring: Ring::new(&config, role, features)?,
                sessions,
                readers: Vec::new(),
                conns: Slab::new(slots as usize).map_err(|source| RingError::Setup {
                    what: "connection slab mmap",
                    source,
                })?,
                tls: if plan.tls.is_some() {
                    (0..slots).map(|_| None).collect()
                } else {
                    Vec::new()
                },
                reply_slot,
                replies: VecDeque::new(),
                reply_target: 0,
                reply_due_ns: 0,
            });
        }
        let targets: Box<[KernelSockAddr]> = plan
            .targets
            .iter()
            .map(|t| KernelSockAddr::new(t.addr))
            .collect();
        let zero = KernelSockAddr::new(SocketAddr::from(([0, 0, 0, 0], 0)));
        let tls_config = match &plan.tls {
            Some(options) => Some(
                crate::tls::client_config(options, slice.connections as usize).map_err(|e| {
                    RingError::Setup {
                        what: "TLS client configuration",
                        source: std::io::Error::other(e),
                    }
                })?,
            ),
            None => None,
        };
        let tls_names = plan.targets.iter().map(|t| t.tls_name.clone()).collect();
        let sessions_per_ring: Vec<u32> = rings.iter().map(|ring| ring.sessions).collect();
        let replicas = failover::new_replicas(plan, slice, &sessions_per_ring);
        Ok(Shard {
            reply_actions: Vec::new(),
            no_rate_share: false,
            asked_seen: std::collections::HashMap::new(),
            stream_asked: Vec::new(),
            replicas,
            id,
            plan,
            slice,
            shared,
            rings,
            targets,
            source_addrs: vec![zero; SOURCE_ADDRS_LEN].into_boxed_slice(),
            source_addrs_next: 0,
            sends: Pool::new(),
            spills: Pool::new(),
            scratch: Scratch::default(),
            actions: Vec::with_capacity(8),
            tls_config,
            tls_names,
            tls_plain: Vec::new(),
            tls_request: Vec::new(),
            idle_head: NONE,
            idle_tail: NONE,
            reconnects: VecDeque::new(),
            retries: BinaryHeap::new(),
            waiting: BinaryHeap::new(),
            next_sweep_ns: 0,
            handshakes: 0,
            opened: 0,
            settled: 0,
            held: 0,
            in_flight: 0,
            open_conns: 0,
            connect_pacer: Pacer::new(0, 0, 0),
            request_pacer: Pacer::new(0, 0, u64::MAX),
            mix: Mix::new(&plan.entries.iter().map(|e| e.weight).collect::<Vec<_>>()),
            // Each shard its own stream, all from the run's seed (`--seed`).
            // Segments of one run (`--segment I/N`) draw apart too.
            rng: Rng::new(
                plan.seed
                    ^ 0x6d63_7073_746f_726d
                    ^ (id as u64 | u64::from(plan.segment.index) << 32)
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
            // `{{seq}}` values ≡ the segment's index mod the segment count: no two segments
            // of a run draw the same one, whatever their shard counts.
            seq: u64::from(plan.segment.index) + u64::from(plan.segment.count) * id as u64,
            generated: Vec::new(),
            phase: Phase::Ramp,
            command_seq: 0,
            segment: 0,
            label: "ramp_up",
            segments: None,
            epoch: 0,
            in_flight_current: 0,
            earlier: Vec::with_capacity(EARLIER_MAX),
            stall_after_ns: 0,
            ramp_given_up: false,
            reconnect_next_ns: 0,
            fault_window: false,
            heal_ns: 0,
            in_flight_max: u64::MAX,
            mark: 0,
            mark_ns: 0,
            first_ok_after_mark_ns: 0,
            // No connection opens until a command asks for it (`apply_command`).
            hold_target: 0,
            rate_per_s: 0,
            down: 0,
            deleting: false,
            delete_ring: 0,
            delete_slot: 0,
            failed_for_good: 0,
            second_ok_carry: 0,
            second_failed_carry: 0,
            modern: plan.protocol_version == super::template::MODERN_PROTOCOL_VERSION,
            now_ns: 0,
            ramp_start_ns: 0,
            phase_deadline_ns: u64::MAX,
            metrics: ShardMetrics::new(),
            timeline,
            second_index: 0,
            second_end_ns: u64::MAX,
            second_ok_base: 0,
            second_failed_base: 0,
            stream_opens: BinaryHeap::new(),
            streams_held: 0,
            streams_unavailable: false,
            stream_actions: Vec::with_capacity(8),
            stream_data: Vec::new(),
            second_notifications: 0,
            legacy_pending: std::collections::HashMap::new(),
            legacy_events: Vec::new(),
            unix_epoch_us: {
                let unix_now_us = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64);
                unix_now_us.saturating_sub(shared.epoch.elapsed().as_micros() as u64)
            },
        })
    }

    /// Phased run: segment metrics go to `segments` (see `Command::segment`).
    pub fn set_segment_sender(&mut self, segments: Sender<SegmentMetrics>) {
        self.segments = Some(segments);
    }

    /// The segment the metrics held now belong to (the last one, when the shard has ended).
    pub fn segment(&self) -> u32 {
        self.segment
    }

    /// This shard's share of a connect or reconnect rate (0 = unpaced stays 0; at least 1
    /// per shard otherwise, so no shard is left unpaced by rounding).
    fn rate_share(&self, rate: u64) -> u64 {
        if rate == 0 {
            0
        } else {
            (rate / self.plan.shards.len() as u64).max(1)
        }
    }

    /// Applies a newly published command (phased runs).
    fn apply_command(&mut self) {
        let seq = self.shared.command_seq.load(Ordering::SeqCst);
        if seq == self.command_seq || seq == 0 {
            return;
        }
        let command = self
            .shared
            .command
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let seq = self.shared.command_seq.load(Ordering::SeqCst);
        self.command_seq = seq;
        let new_segment = command.segment != self.segment;
        if new_segment {
            if self.phase == Phase::Load && self.rate_per_s > 0 {
                // Owed to the segment that ends, never inherited by the next one.
                self.drop_due(Counter::dropped_phase_ended);
            }
            self.flush_segment(command.segment);
        }
        self.stall_after_ns = command.stall_after.as_nanos().min(u64::MAX as u128) as u64;
        self.in_flight_max = if command.in_flight_max == 0 {
            u64::MAX
        } else {
            let shards = self.plan.shards.len() as u64;
            command.in_flight_max / shards
                + u64::from((self.id as u64) < command.in_flight_max % shards)
        };
        if command.mark != self.mark {
            self.mark = command.mark;
            self.mark_ns = self.now_ns;
            self.first_ok_after_mark_ns = 0;
        }
        self.apply_fault_stage(command.fault_stage);
        self.label = command.label;
        if command.ramp_over && !self.ramp_given_up {
            self.give_up_ramp();
        }
        let total = self.plan.connections.max(1) as u128;
        let share = (command.hold as u128 * self.slice.connections as u128).div_ceil(total);
        let share = share.min(self.slice.connections as u128) as u32;
        if share > self.hold_target && !self.ramp_given_up {
            self.hold_target = share;
            self.connect_pacer = Pacer::new(
                self.now_ns,
                self.rate_share(self.plan.connect_rate_per_s),
                (share - self.opened) as u64,
            );
        }
        // The request rate is split exactly (5 req/s over 2 shards: 3 + 2); a shard whose
        // share is 0 offers nothing (0 alone would read as the closed loop).
        let rate = super::segment::split(
            command.rate_per_s,
            self.id as u32,
            self.plan.shards.len() as u32,
        );
        self.no_rate_share = command.rate_per_s > 0 && rate == 0;
        if new_segment || rate != self.rate_per_s || (command.load && self.phase == Phase::Ramp) {
            self.rate_per_s = rate;
            self.request_pacer = Pacer::new(self.now_ns, rate, u64::MAX);
        }
        match (command.load, self.phase) {
            (true, Phase::Ramp) => self.phase = Phase::Load,
            (false, Phase::Load) => self.phase = Phase::Ramp,
            _ => {}
        }
        if command.drop_fraction > 0.0 && matches!(self.phase, Phase::Ramp | Phase::Load) {
            self.drop_connections(command.drop_fraction);
        }
        if command.delete_sessions && !self.deleting {
            self.deleting = true;
            self.delete_ring = 0;
            self.delete_slot = 0;
        }
        self.shared.acked[self.id].store(seq, Ordering::SeqCst);
    }

    /// `Command::ramp_over`: what has no session yet never will in this run.
    fn give_up_ramp(&mut self) {
        self.ramp_given_up = true;
        let never_opened = self.slice.connections - self.opened;
        self.hold_target = self.opened;
        self.metrics
            .add_to(Counter::error_ramp_timeout, never_opened as u64);
        self.metrics.failed += never_opened as u64;
        self.failed_for_good += never_opened as u64;
        self.settled += never_opened;
        for r in 0..self.rings.len() {
            for slot in 0..self.rings[r].conns.len() as u32 {
                let conn = &self.rings[r].conns[slot as usize];
                if !conn.flags.intersects(F::SETTLED) && conn.state != State::Free {
                    self.connection_broke(r, slot, Counter::error_ramp_timeout);
                }
            }
        }
        self.check_ramped();
    }

    /// Hands the metrics of the segment that ends to the coordinator and starts `next`.
    fn flush_segment(&mut self, next: u32) {
        let second = std::mem::replace(
            &mut self.metrics.second,
            super::timeline::new_second_histogram(),
        );
        let second_notification = std::mem::replace(
            &mut self.metrics.second_notification,
            super::timeline::new_second_histogram(),
        );
        let mut fresh = ShardMetrics::new();
        fresh.second = second;
        fresh.second_notification = second_notification;
        fresh.held_max = self.held;
        fresh.streams_held_max = self.streams_held;
        let ended = std::mem::replace(&mut self.metrics, fresh);
        self.second_ok_carry += ended.get(Counter::requests_ok) - self.second_ok_base;
        self.second_failed_carry += ended.get(Counter::requests_failed) - self.second_failed_base;
        self.second_ok_base = 0;
        self.second_failed_base = 0;
        let segment = std::mem::replace(&mut self.segment, next);
        // Up to `EARLIER_MAX` ended segments are kept open: past that the oldest goes now,
        // and answers to what it still has in flight are counted as
        // `answers_after_their_segment`.
        if self.in_flight_current > 0 {
            if self.earlier.len() == EARLIER_MAX {
                let oldest = self.earlier.remove(0);
                self.hand_over(oldest.segment, oldest.metrics);
            }
            self.earlier.push(Earlier {
                segment,
                epoch: self.epoch,
                in_flight: self.in_flight_current,
                metrics: ended,
            });
        } else {
            self.hand_over(segment, ended);
        }
        self.epoch = self.epoch.wrapping_add(1);
        self.in_flight_current = 0;
    }

    fn hand_over(&mut self, segment: u32, metrics: ShardMetrics) {
        match &self.segments {
            // The coordinator outlives every shard; a closed channel means it no longer wants
            // the figures.
            Some(sender) => {
                let _ = sender.send(SegmentMetrics {
                    segment,
                    shard: self.id,
                    metrics,
                });
            }
            None => self.metrics.merge(&metrics),
        }
    }

    fn hand_over_earlier(&mut self) {
        for earlier in std::mem::take(&mut self.earlier) {
            self.hand_over(earlier.segment, earlier.metrics);
        }
    }

    /// An earlier segment's last request is in: its figures are complete.
    fn settle_earlier(&mut self) {
        if self.earlier.iter().all(|e| e.in_flight > 0) {
            return;
        }
        let (settled, open): (Vec<Earlier>, Vec<Earlier>) = std::mem::take(&mut self.earlier)
            .into_iter()
            .partition(|e| e.in_flight == 0);
        self.earlier = open;
        for earlier in settled {
            self.hand_over(earlier.segment, earlier.metrics);
        }
    }

    /// Takes every request due now without sending it, counted as dropped by `cause`.
    fn drop_due(&mut self, cause: Counter) {
        let dropped = self.request_pacer.skip_due(self.now_ns);
        if dropped > 0 {
            self.metrics.add_to(cause, dropped);
            self.metrics.add_to(Counter::requests_dropped, dropped);
            self.metrics.add_to(Counter::requests_offered, dropped);
        }
    }

    /// Starts a load request (or a DELETE) on a Ready connection: it is in flight from now,
    /// stamped with the current segment.
    fn start_request(&mut self, r: usize, slot: u32, request: Request, intended_ns: u64) {
        let conn = &mut self.rings[r].conns[slot as usize];
        conn_set_state(conn, State::Awaiting);
        conn.epoch = self.epoch;
        self.in_flight += 1;
        self.in_flight_current += 1;
        if request != Request::Delete {
            self.metrics.incr(Counter::requests_sent);
        }
        self.send_request(r, slot, request, intended_ns);
    }

    /// The request in flight on `slot` ended: out of the in-flight counts; whose figures it
    /// belongs to.
    fn end_request(&mut self, r: usize, slot: u32) -> Bucket {
        self.in_flight -= 1;
        let epoch = self.rings[r].conns[slot as usize].epoch;
        if epoch == self.epoch {
            self.in_flight_current -= 1;
            return Bucket::Current;
        }
        match self.earlier.iter().position(|e| e.epoch == epoch) {
            Some(i) => {
                self.earlier[i].in_flight -= 1;
                Bucket::Earlier(i)
            }
            None => Bucket::Older,
        }
    }

    fn bucket(&mut self, bucket: Bucket) -> &mut ShardMetrics {
        match bucket {
            Bucket::Earlier(i) => &mut self.earlier[i].metrics,
            _ => &mut self.metrics,
        }
    }

    /// Resets every `1 / fraction`-th held, connected session at once (the drop fault). A
    /// request in flight on it is lost: failed and counted in `requests_connection_lost`.
    fn drop_connections(&mut self, fraction: f64) {
        let mut credit = 0.0;
        for r in 0..self.rings.len() {
            for slot in 0..self.rings[r].conns.len() as u32 {
                let conn = &self.rings[r].conns[slot as usize];
                if !conn.flags.intersects(F::HELD)
                    || !matches!(conn.state, State::Ready | State::Awaiting | State::Waiting)
                {
                    continue;
                }
                credit += fraction;
                if credit < 1.0 {
                    continue;
                }
                credit -= 1.0;
                self.abort_connection(r, slot);
            }
        }
    }

    /// Closes a connection abortively (RST, as a crashed peer or a middlebox would) and
    /// reconnects it keeping its session: SO_LINGER 0, the receive cancelled instead of a
    /// shutdown (which would send a FIN first), then Close. The setsockopt is counted in
    /// `chain_pending`, so the Close waits for it.
    fn abort_connection(&mut self, r: usize, slot: u32) {
        let state = self.rings[r].conns[slot as usize].state;
        if state == State::Awaiting {
            self.fail_request(r, slot, Counter::error_fault_dropped, true);
        } else {
            self.metrics.incr(Counter::error_fault_dropped);
        }
        let conn = &mut self.rings[r].conns[slot as usize];
        let generation = conn.generation;
        conn_set_state(conn, State::Closing);
        conn.flags |= F::RECONNECT;
        conn.chain_pending += 1;
        let recv_armed = conn.flags.intersects(F::RECV_ARMED);
        let linger = opcode::SetSockOpt::new(
            types::Fixed(slot),
            libc::SOL_SOCKET as u32,
            libc::SO_LINGER as u32,
            (&raw const LINGER_ZERO).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
        .build()
        .user_data(UserData::new(slot, generation, Op::SetSockOpt).encode());
        // LINGER_ZERO is 'static; the slot stays open until Close, which waits for this
        // completion (chain_pending).
        self.push(r, linger);
        if recv_armed {
            let cancel =
                opcode::AsyncCancel::new(UserData::new(slot, generation, Op::Recv).encode())
                    .build()
                    .user_data(UserData::new(slot, generation, Op::Cancel).encode());
            self.push(r, cancel);
        }
        self.maybe_close(r, slot);
    }

    /// Cycles every SQ and CQ entry of every ring once with NOPs, so the ring memory the
    /// kernel maps into this process is resident before the baseline RSS is read: it is a
    /// fixed cost of the ring, and faulting it in during the ramp would show up as memory per
    /// connection (it did: 140–190 B per connection at 100K depending on how far the rings
    /// had wrapped).
    fn prefault_rings(&mut self) -> std::io::Result<()> {
        let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(4096);
        for r in 0..self.rings.len() {
            let sq_entries = self.rings[r].ring.uring.params().sq_entries() as usize;
            let cq_entries = self.rings[r].ring.uring.params().cq_entries() as usize;
            let mut done = 0;
            while done < cq_entries {
                let batch = sq_entries.min(cq_entries - done).min(cqes.capacity());
                for _ in 0..batch {
                    let nop = opcode::Nop::new()
                        .build()
                        .user_data(UserData::new(0, 0, Op::Cancel).encode());
                    // A NOP points at no memory.
                    self.push(r, nop);
                }
                let ring = &mut self.rings[r].ring;
                ring.uring.submit_and_wait(batch)?;
                let mut reaped = 0;
                while reaped < batch {
                    cqes.clear();
                    reaped += ring.reap(&mut cqes);
                    if reaped < batch {
                        ring.uring.submit_and_wait(batch - reaped)?;
                    }
                }
                done += batch;
            }
        }
        Ok(())
    }

    /// Hands the metrics over, with the rings' own health figures added.
    pub fn take_metrics(&mut self) -> ShardMetrics {
        for slot in &mut self.rings {
            self.metrics.cq_overflows += slot.ring.cq_overflow() as u64;
            self.metrics.sq_backlog_max = self
                .metrics
                .sq_backlog_max
                .max(slot.ring.backlog_len_max as u64);
            self.metrics.sq_backlog_pushes += slot.ring.backlog_pushes;
        }
        std::mem::take(&mut self.metrics)
    }

    fn clock(&mut self) {
        self.now_ns = self.shared.epoch.elapsed().as_nanos() as u64;
    }

    /// Runs the shard until the coordinator says stop and every connection is closed.
    pub fn run(&mut self) -> std::io::Result<()> {
        self.prefault_rings()?;
        for r in 1..self.rings.len() {
            self.arm_ring_poll(r);
        }
        self.shared.shards_ready.fetch_add(1, Ordering::SeqCst);
        while !self.shared.go_connect.load(Ordering::SeqCst) {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.clock();
        self.ramp_start_ns = self.now_ns;
        self.second_end_ns = self.now_ns + 1_000_000_000;
        let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(4096);
        loop {
            self.apply_command();
            self.step_phase();
            if self.phase == Phase::Closing
                && (self.open_conns == 0 || self.now_ns > self.phase_deadline_ns)
            {
                if self.open_conns == 0 {
                    // Every slot closed, so every handshake ended (on_close ends any left).
                    assert_eq!(self.handshakes, 0, "handshake accounting drifted");
                    assert_eq!(
                        self.in_flight, 0,
                        "a request was neither finished nor failed"
                    );
                }
                self.hand_over_earlier();
                self.close_second();
                return Ok(());
            }
            self.start_connects()?;
            self.start_replies()?;
            self.resume_waiting();
            self.issue_requests();
            self.issue_deletes();
            self.expire_deadlines();
            for slot in self.rings.iter_mut().skip(1) {
                slot.ring.submit()?;
            }
            // The turn's work took time: the wait runs from now, not from when the turn began
            // (a wait from the stale clock overslept every deadline by the turn's length).
            self.clock();
            let wait = self.wait_time();
            let before_ns = self.now_ns;
            self.rings[0].ring.submit_and_wait_timeout(wait)?;
            self.clock();
            let planned_wake_ns = before_ns + wait.as_nanos() as u64;
            if self.now_ns > planned_wake_ns {
                self.metrics
                    .loop_lag
                    .saturating_record(((self.now_ns - planned_wake_ns) / 1000).max(1));
            }
            for r in 0..self.rings.len() {
                loop {
                    cqes.clear();
                    if self.rings[r].ring.reap(&mut cqes) == 0 {
                        break;
                    }
                    for cqe in &cqes {
                        self.dispatch(r, cqe);
                    }
                    if cqes.len() < cqes.capacity() {
                        break;
                    }
                }
                self.rings[r].ring.bufs.publish();
            }
            self.shared.held[self.id].store(self.held, Ordering::Relaxed);
            self.shared.settled[self.id].store(self.settled as u64, Ordering::Relaxed);
            self.shared.failed[self.id].store(self.failed_for_good, Ordering::Relaxed);
            self.shared.in_flight[self.id].store(self.in_flight, Ordering::Relaxed);
            self.shared.down[self.id].store(self.down, Ordering::Relaxed);
            self.shared.streams_held[self.id].store(self.streams_held, Ordering::Relaxed);
            self.shared.first_ok_after_mark_ns[self.id]
                .store(self.first_ok_after_mark_ns, Ordering::Relaxed);
            self.publish_replicas();
            self.settle_earlier();
            self.shared.earlier_open[self.id].store(self.earlier.len() as u64, Ordering::Release);
            while self.now_ns >= self.second_end_ns {
                self.close_second();
                self.second_end_ns += 1_000_000_000;
            }
        }
    }

    /// Sends the current second's slice to the coordinator and starts the next.
    fn close_second(&mut self) {
        let ok = self.metrics.get(Counter::requests_ok);
        let failed = self.metrics.get(Counter::requests_failed);
        let latency = std::mem::replace(
            &mut self.metrics.second,
            super::timeline::new_second_histogram(),
        );
        let notification_latency = std::mem::replace(
            &mut self.metrics.second_notification,
            super::timeline::new_second_histogram(),
        );
        let slice = SecondSlice {
            streams_held: self.streams_held,
            notifications: std::mem::take(&mut self.second_notifications),
            notification_latency,
            second: self.second_index,
            phase: self.label,
            held: self.held,
            answering: self
                .held
                .saturating_sub(self.down + self.shared.stalled[self.id].load(Ordering::Relaxed)),
            ok: ok - self.second_ok_base + self.second_ok_carry,
            errors: failed - self.second_failed_base + self.second_failed_carry,
            latency,
        };
        self.second_ok_carry = 0;
        self.second_failed_carry = 0;
        // The coordinator outlives every shard; if it has stopped listening the samples are
        // simply not wanted any more.
        let _ = self.timeline.send(slice);
        self.second_index += 1;
        self.second_ok_base = ok;
        self.second_failed_base = failed;
    }

    fn step_phase(&mut self) {
        match self.phase {
            Phase::Ramp => {
                if self.shared.stop.load(Ordering::Relaxed) {
                    self.begin_drain();
                }
            }
            Phase::Load => {
                if self.shared.stop.load(Ordering::Relaxed) {
                    self.begin_drain();
                }
            }
            Phase::Drain => {
                if self.in_flight == 0 || self.now_ns > self.phase_deadline_ns {
                    self.begin_closing();
                }
            }
            Phase::Closing => {}
        }
    }

    fn begin_drain(&mut self) {
        self.phase = Phase::Drain;
        self.phase_deadline_ns = self.now_ns + DRAIN_MAX.as_nanos() as u64;
    }

    fn begin_closing(&mut self) {
        self.phase = Phase::Closing;
        self.phase_deadline_ns = self.now_ns + DRAIN_MAX.as_nanos() as u64;
        self.reconnects.clear();
        self.retries.clear();
        self.waiting.clear();
        self.stream_opens.clear();
        for r in 0..self.rings.len() {
            // Answers not taken by the end of the drain never will be.
            self.give_up_replies(r);
            for slot in 0..self.rings[r].conns.len() as u32 {
                let state = self.rings[r].conns[slot as usize].state;
                if matches!(state, State::Free | State::Failed | State::Done) {
                    continue;
                }
                if state == State::Awaiting {
                    self.fail_request(r, slot, Counter::error_unfinished_at_end, false);
                }
                let conn = &mut self.rings[r].conns[slot as usize];
                conn.flags &= !F::RECONNECT;
                if conn.state != State::Closing {
                    self.begin_close(r, slot, false);
                }
            }
        }
    }

    fn wait_time(&self) -> Duration {
        let mut deadline = self.now_ns + LOOP_TICK.as_nanos() as u64;
        if (matches!(self.phase, Phase::Ramp | Phase::Load))
            && self.handshakes < HANDSHAKES_MAX
            && let Some(due) = self.connect_pacer.next_due_ns()
        {
            deadline = deadline.min(due);
        }
        if self.phase == Phase::Load
            && self.idle_head != NONE
            && self.rate_per_s > 0
            && let Some(due) = self.request_pacer.next_due_ns()
        {
            deadline = deadline.min(due);
        }
        deadline = deadline.min(self.next_sweep_ns);
        if !self.reconnects.is_empty() && self.plan.reconnect_rate_per_s > 0 {
            deadline = deadline.min(self.reconnect_next_ns.max(self.now_ns));
        }
        if let Some(&Reverse((due_ns, ..))) = self.retries.peek() {
            deadline = deadline.min(due_ns);
        }
        if let Some(&Reverse((due_ns, ..))) = self.waiting.peek() {
            deadline = deadline.min(due_ns);
        }
        if self.handshakes < HANDSHAKES_WITH_STREAMS_MAX
            && let Some(&Reverse((due_ns, ..))) = self.stream_opens.peek()
        {
            deadline = deadline.min(due_ns);
        }
        Duration::from_nanos(deadline.saturating_sub(self.now_ns))
    }

    fn push(&mut self, r: usize, entry: squeue::Entry) {
        // SAFETY: every entry built in this file points only at memory that outlives its
        // completion (or, for addresses the kernel copies at submission, its submission):
        // fixed-file slots (closed only when nothing is in flight for them), send-pool buffers
        // (returned only on the Send completion), `ONE` ('static), the target sockaddrs (owned
        // by the shard, which outlives its rings' requests) and the source-address ring (see
        // `start_connect`).
        unsafe { self.rings[r].ring.push(entry) };
    }

    fn arm_ring_poll(&mut self, r: usize) {
        let fd = self.rings[r].ring.raw_fd();
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(UserData::new(r as u32, 0, Op::PollRing).encode());
        // The follower ring lives as long as the leader (both owned by this shard).
        self.push(0, entry);
    }

    // ---- connecting ----------------------------------------------------------------------

    fn start_connects(&mut self) -> std::io::Result<()> {
        while let Some(&Reverse((due_ns, r, slot, generation))) = self.retries.peek() {
            if due_ns > self.now_ns {
                break;
            }
            self.retries.pop();
            let conn = &self.rings[r as usize].conns[slot as usize];
            if conn.generation == generation && conn.state == State::Free {
                self.reconnects.push_back((r, slot, generation));
            }
        }
        let reconnect_rate = self.rate_share(self.plan.reconnect_rate_per_s);
        while self.handshakes < HANDSHAKES_MAX
            && let Some(&(r, slot, generation)) = self.reconnects.front()
        {
            if reconnect_rate > 0 && self.now_ns < self.reconnect_next_ns {
                break; // `--reconnect-rate`: the next one's turn has not come
            }
            if !self.chain_room(r as usize)? {
                return Ok(());
            }
            self.reconnects.pop_front();
            if let Some(interval_ns) = 1_000_000_000u64.checked_div(reconnect_rate) {
                // One at a time, never a saved-up burst: the next is due an interval after
                // this one (or after now, when the queue was empty for a while).
                self.reconnect_next_ns = self.reconnect_next_ns.max(self.now_ns) + interval_ns;
            }
            let conn = &self.rings[r as usize].conns[slot as usize];
            if conn.generation == generation && conn.state == State::Free {
                self.start_connect(r as usize, slot);
            }
        }
        self.start_streams()?;
        let opening = matches!(self.phase, Phase::Ramp | Phase::Load);
        if !opening {
            return Ok(());
        }
        while self.handshakes < HANDSHAKES_MAX && self.opened < self.hold_target {
            let index = self.opened;
            let r = (index / self.plan.sessions_per_ring) as usize;
            if !self.chain_room(r)? || self.connect_pacer.take_due(self.now_ns).is_none() {
                break;
            }
            self.opened += 1;
            let slot = index % self.plan.sessions_per_ring;
            // A stream slot opened earlier may have grown the slab past this session's slot.
            while self.rings[r].conns.len() as u32 <= slot {
                self.rings[r].conns.push(Conn::FREE);
            }
            self.start_connect(r, slot);
        }
        Ok(())
    }

    /// A linked chain split across two submissions is two chains: the kernel would run the
    /// second part (BIND, CONNECT) without waiting for the first (SOCKET), on an empty slot.
    /// So a chain starts only when all of it fits in the SQ now, never through the backlog.
    fn chain_room(&mut self, r: usize) -> std::io::Result<bool> {
        let ring = &mut self.rings[r].ring;
        if ring.has_backlog() {
            return Ok(false);
        }
        let free = |ring: &mut Ring| {
            let sq = ring.uring.submission();
            sq.capacity() - sq.len()
        };
        if free(ring) < CHAIN_LEN_MAX {
            ring.submit()?;
        }
        Ok(!ring.has_backlog() && free(ring) >= CHAIN_LEN_MAX)
    }

    fn global_index(&self, r: usize, slot: u32) -> u32 {
        self.slice.first_connection + r as u32 * self.plan.sessions_per_ring + slot
    }

    /// The target and source address of the slot's connection: a stream goes where its
    /// owner's session is, from a source port of its own.
    fn connect_addrs(&self, r: usize, slot: u32) -> (usize, Option<SocketAddr>) {
        if self.is_reply(r, slot) {
            // One connection per ring, from a port the kernel picks: it is not in the plan's
            // port arithmetic, which counts the sessions' and streams' sockets.
            (usize::from(self.rings[r].reply_target), None)
        } else if self.is_stream(r, slot) {
            let owner = self.rings[r].conns[slot as usize].next_idle;
            let stream = self.stream_index(r, slot);
            (
                self.session_target(r, owner),
                self.plan.stream_source_addr(stream),
            )
        } else {
            let index = self.global_index(r, slot);
            (self.session_target(r, slot), self.plan.source_addr(index))
        }
    }

    /// Submits SOCKET → setsockopt(TCP_NODELAY) → [setsockopt(SO_REUSEADDR) → BIND] → CONNECT
    /// as one linked chain on fixed slot `slot`.
    fn start_connect(&mut self, r: usize, slot: u32) {
        let (target, source) = self.connect_addrs(r, slot);
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.generation = conn.generation.wrapping_add(1);
        conn.state = State::Connecting;
        conn.flags &= F::KEPT_ACROSS_RECONNECT;
        conn.chain_pending = if source.is_some() { 5 } else { 3 };
        let generation = conn.generation;
        conn.flags |= F::HANDSHAKING;
        self.handshakes += 1;
        self.open_conns += 1;
        self.metrics.incr(Counter::connect_attempts);
        let ud = |op| UserData::new(slot, generation, op).encode();
        let link = squeue::Flags::IO_LINK;
        let Ok(dest) = types::DestinationSlot::try_from_slot_target(slot) else {
            unreachable!("slots are below RLIMIT_NOFILE, far from u32::MAX")
        };
        let socket = opcode::Socket::new(self.targets[target].family(), libc::SOCK_STREAM, 0)
            .file_index(Some(dest))
            .build()
            .flags(link)
            .user_data(ud(Op::Socket));
        self.push(r, socket);
        let nodelay = opcode::SetSockOpt::new(
            types::Fixed(slot),
            libc::IPPROTO_TCP as u32,
            libc::TCP_NODELAY as u32,
            (&raw const ONE).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
        .build()
        .flags(link)
        .user_data(ud(Op::SetSockOpt));
        self.push(r, nodelay);
        if let Some(source) = source {
            let reuse = opcode::SetSockOpt::new(
                types::Fixed(slot),
                libc::SOL_SOCKET as u32,
                libc::SO_REUSEADDR as u32,
                (&raw const ONE).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
            .build()
            .flags(link)
            .user_data(ud(Op::SetSockOpt));
            self.push(r, reuse);
            // The kernel copies the address when it prepares the SQE, at submission. An entry
            // of this array is rewritten only SOURCE_ADDRS_LEN chains later. Chains go
            // straight into an SQ (never the backlog, see `chain_room`) and the kernel takes
            // SQEs in order; an SQ of 4096 entries holds at most 1365 unsubmitted chains and
            // a loop turn starts at most HANDSHAKES_WITH_STREAMS_MAX, both < SOURCE_ADDRS_LEN, so the chain
            // that used the entry before has been submitted, and its copy taken, by then.
            let at = self.source_addrs_next;
            self.source_addrs_next = (at + 1) % SOURCE_ADDRS_LEN;
            self.source_addrs[at] = KernelSockAddr::new(source);
            let bind = bind_entry(slot, &self.source_addrs[at])
                .flags(link)
                .user_data(ud(Op::Bind));
            self.push(r, bind);
        }
        let connect = opcode::Connect::new(
            types::Fixed(slot),
            self.targets[target].as_ptr(),
            self.targets[target].byte_len(),
        )
        .build()
        .user_data(ud(Op::Connect));
        self.push(r, connect);
        self.rings[r].conns[slot as usize].sent_ns = self.now_ns;
    }

    fn on_chain(&mut self, r: usize, slot: u32, op: Op, res: i32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        assert!(
            conn.chain_pending > 0,
            "connect chain completion not counted"
        );
        conn.chain_pending -= 1;
        self.run_event(r, slot, Event::Chain { op, res });
    }

    /// Starts the TLS handshake on a connected socket: the ClientHello goes out at once.
    fn start_tls(&mut self, r: usize, slot: u32) {
        let (Some(config), Some(name)) = (
            &self.tls_config,
            self.tls_names[self.connect_addrs(r, slot).0].clone(),
        ) else {
            unreachable!("every target of an https run has a server name")
        };
        match TlsConn::client(config, name) {
            Ok(tls) => self.rings[r].tls[slot as usize] = Some(Box::new(tls)),
            Err(_) => {
                self.connection_broke(r, slot, Counter::error_tls_protocol);
                return;
            }
        }
        let conn = &mut self.rings[r].conns[slot as usize];
        conn_set_state(conn, State::TlsHandshaking);
        conn.sent_ns = self.now_ns;
        self.send_tls_output(r, slot);
        if !self.plan.recv_multishot
            && !self.rings[r].conns[slot as usize]
                .flags
                .intersects(F::RECV_ARMED)
        {
            self.arm_recv(r, slot);
        }
    }

    /// Sends the handshake's TLS records waiting unless a send is in flight, whose completion
    /// calls this again. Only while handshaking: records due later (a KeyUpdate reply) go out
    /// ahead of the next request, in the same send (`send_request`), so a Ready connection
    /// never has a send in flight.
    fn send_tls_output(&mut self, r: usize, slot: u32) {
        let conn = &self.rings[r].conns[slot as usize];
        if conn.flags.intersects(F::SEND_IN_FLIGHT) || conn.state != State::TlsHandshaking {
            return;
        }
        let Some(tls) = self.rings[r].tls[slot as usize].as_mut() else {
            return;
        };
        if !tls.wants_write() {
            return;
        }
        let buf = self.sends.take();
        tls.take_output(&mut self.sends.bufs[buf as usize]);
        self.metrics.add_to(
            Counter::bytes_sent,
            self.sends.bufs[buf as usize].len() as u64,
        );
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.send_buf = buf;
        conn.flags |= F::SEND_IN_FLIGHT;
        self.submit_send(r, slot, buf);
    }

    /// Decrypts received bytes into `tls_plain`; the handshake's end and a close_notify are
    /// acted on here. `None`: the connection broke (counted by cause).
    fn decrypt(
        &mut self,
        r: usize,
        slot: u32,
        bid: u16,
        len: usize,
    ) -> Option<crate::tls::Received> {
        let RingSlot { ring, tls, .. } = &mut self.rings[r];
        let Some(tls) = tls[slot as usize].as_mut() else {
            ring.bufs.recycle(bid);
            return None;
        };
        self.tls_plain.clear();
        let result = tls.receive(ring.bufs.get_mut(bid, len), &mut self.tls_plain);
        ring.bufs.recycle(bid);
        match result {
            Ok(received) => {
                if received.handshake_done {
                    let resumed = tls.resumed();
                    let conn = &self.rings[r].conns[slot as usize];
                    let latency_us = (self.now_ns.saturating_sub(conn.sent_ns) / 1000).max(1);
                    self.metrics.tls_handshake.saturating_record(latency_us);
                    self.metrics.incr(if resumed {
                        Counter::tls_handshakes_resumed
                    } else {
                        Counter::tls_handshakes_full
                    });
                }
                Some(received)
            }
            Err(error) => {
                let cause = match error {
                    TlsError::Certificate(_) => Counter::error_tls_certificate,
                    TlsError::Alert(_) => Counter::error_tls_alert,
                    TlsError::Protocol(_) => Counter::error_tls_protocol,
                };
                self.connection_broke(r, slot, cause);
                None
            }
        }
    }

    /// The slot's handshake (connect, and initialize unless sessionless) is over, however it
    /// ended. Idempotent: the flag makes the count exact whatever path gets here first.
    fn end_handshake(&mut self, r: usize, slot: u32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.flags.intersects(F::HANDSHAKING) {
            conn.flags &= !F::HANDSHAKING;
            self.handshakes -= 1;
        }
    }

    /// The connection holds a session (or, sessionless, is ready to load): count it once.
    fn establish(&mut self, r: usize, slot: u32) {
        let c = &mut self.rings[r].conns[slot as usize];
        if !c.flags.intersects(F::HELD) {
            c.flags |= F::HELD;
            self.held += 1;
            self.metrics.held_max = self.metrics.held_max.max(self.held);
            self.replica_held_changed(r, slot, true);
        }
        let c = &mut self.rings[r].conns[slot as usize];
        if !c.flags.intersects(F::SETTLED) {
            c.flags |= F::SETTLED;
            self.settled += 1;
            self.metrics.established += 1;
            self.check_ramped();
        }
        self.queue_stream_of(r, slot);
    }

    fn settle_failed(&mut self, r: usize, slot: u32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.flags.intersects(F::HELD) {
            conn.flags &= !F::HELD;
            self.held -= 1;
            self.replica_held_changed(r, slot, false);
        }
        let conn = &mut self.rings[r].conns[slot as usize];
        if !conn.flags.intersects(F::SETTLED) {
            conn.flags |= F::SETTLED;
            self.settled += 1;
            self.metrics.failed += 1;
            self.failed_for_good += 1;
            self.check_ramped();
        }
    }

    fn check_ramped(&mut self) {
        if self.settled == self.slice.connections {
            self.metrics.ramp_ns = self.now_ns - self.ramp_start_ns;
        }
    }

    // ---- requests ------------------------------------------------------------------------

    fn arm_recv(&mut self, r: usize, slot: u32) {
        self.metrics.incr(Counter::recv_arms);
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.flags |= F::RECV_ARMED;
        let user_data = UserData::new(slot, conn.generation, Op::Recv).encode();
        let entry = if self.plan.recv_multishot {
            opcode::RecvMulti::new(types::Fixed(slot), BUF_GROUP)
                .build()
                .user_data(user_data)
        } else {
            // Single-shot, the kernel picks the buffer from the ring (no user buffer: the
            // null address is never used with BUFFER_SELECT).
            opcode::Recv::new(
                types::Fixed(slot),
                std::ptr::null_mut(),
                self.plan.buf_bytes,
            )
            .buf_group(BUF_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data)
        };
        // The fixed slot stays open until Close, which waits for F::RECV_ARMED to clear.
        self.push(r, entry);
    }

    /// Encodes `method` into a send-arena buffer and submits it.
    fn send_request(&mut self, r: usize, slot: u32, request: Request, intended_ns: u64) {
        if self.plan.legacy_sse && self.legacy_defers(r, slot, intended_ns) {
            return;
        }
        let target = self.session_target(r, slot);
        let buf = self.sends.take();
        let conn = &mut self.rings[r].conns[slot as usize];
        assert!(!conn.flags.intersects(F::SEND_IN_FLIGHT) && conn.send_buf == NONE);
        conn.id = conn.id.wrapping_add(1);
        conn.method = request.to_u8();
        conn.intended_ns = intended_ns;
        conn.sent_ns = self.now_ns;
        conn.send_buf = buf;
        conn.flags |= F::SEND_IN_FLIGHT;
        let out = &mut self.sends.bufs[buf as usize];
        let template = self.plan.templates[target].get(request);
        let RingSlot { conns, tls, .. } = &mut self.rings[r];
        let conn = &conns[slot as usize];
        let mut gen_state = GenState {
            rng: &mut self.rng,
            lines: &self.plan.lines,
            seq: &mut self.seq,
            seq_step: self.plan.shards.len() as u64 * u64::from(self.plan.segment.count),
        };
        match tls.get_mut(slot as usize).and_then(Option::as_mut) {
            None => template.write(
                out,
                conn.session.as_bytes(),
                conn.id as u64,
                &mut gen_state,
                &mut self.generated,
            ),
            Some(tls) => {
                self.tls_request.clear();
                template.write(
                    &mut self.tls_request,
                    conn.session.as_bytes(),
                    conn.id as u64,
                    &mut gen_state,
                    &mut self.generated,
                );
                if tls.encrypt(&self.tls_request, out).is_err() {
                    // A closed TLS layer, or a key at its limit that cannot be replaced: the
                    // request cannot go out; the connection breaks by that cause.
                    let conn = &mut conns[slot as usize];
                    conn.flags &= !F::SEND_IN_FLIGHT;
                    conn.send_buf = NONE;
                    self.sends.give(buf);
                    self.connection_broke(r, slot, Counter::error_tls_protocol);
                    return;
                }
            }
        }
        self.metrics.add_to(Counter::bytes_sent, out.len() as u64);
        self.submit_send(r, slot, buf);
        if !self.plan.recv_multishot
            && !self.rings[r].conns[slot as usize]
                .flags
                .intersects(F::RECV_ARMED)
        {
            self.arm_recv(r, slot);
        }
    }

    fn submit_send(&mut self, r: usize, slot: u32, buf: u32) {
        let sent = self.sends.sent[buf as usize];
        let bytes = &self.sends.bufs[buf as usize][sent..];
        let generation = self.rings[r].conns[slot as usize].generation;
        let entry = opcode::Send::new(types::Fixed(slot), bytes.as_ptr(), bytes.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(UserData::new(slot, generation, Op::Send).encode());
        // The pool buffer is the connection's `send_buf` and is not touched or returned to the
        // pool until this Send completes (`on_send`).
        self.push(r, entry);
    }

    fn on_send(&mut self, r: usize, slot: u32, res: i32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.flags &= !F::SEND_IN_FLIGHT;
        let buf = conn.send_buf;
        assert!(buf != NONE, "send completion without a send buffer");
        if res < 0 {
            conn.send_buf = NONE;
            self.sends.give(buf);
            self.run_event(r, slot, Event::SendFailed { res });
            return;
        }
        self.sends.sent[buf as usize] += res as usize;
        if self.sends.sent[buf as usize] < self.sends.bufs[buf as usize].len() {
            self.rings[r].conns[slot as usize].flags |= F::SEND_IN_FLIGHT;
            self.submit_send(r, slot, buf);
            return;
        }
        self.rings[r].conns[slot as usize].send_buf = NONE;
        self.sends.give(buf);
        if !self.rings[r].tls.is_empty() {
            self.send_tls_output(r, slot);
            self.finish_tls_handshake(r, slot);
        }
        self.maybe_close(r, slot);
    }

    /// The handshake is done and its last records are sent: on to initialize (or Ready).
    fn finish_tls_handshake(&mut self, r: usize, slot: u32) {
        let conn = &self.rings[r].conns[slot as usize];
        if conn.state != State::TlsHandshaking || conn.flags.intersects(F::SEND_IN_FLIGHT) {
            return;
        }
        let done = self.rings[r].tls[slot as usize]
            .as_mut()
            .is_some_and(|tls| !tls.is_handshaking() && !tls.wants_write());
        if done {
            self.run_event(r, slot, Event::TransportReady);
        }
    }

    fn issue_requests(&mut self) {
        if self.phase != Phase::Load || self.no_rate_share {
            return;
        }
        let open_model = self.rate_per_s > 0;
        loop {
            if self.sends.in_use() >= SEND_BUFS_MAX {
                // Requests wait (idle, or due in the schedule, so the corrected latency counts
                // the wait) until sends complete: memory stays bounded whatever N is.
                self.metrics.incr(Counter::send_window_full);
                return;
            }
            if !open_model && self.in_flight_current >= self.in_flight_max {
                return;
            }
            if open_model {
                match self.request_pacer.next_due_ns() {
                    Some(due) if due <= self.now_ns => {
                        if self.idle_head == NONE {
                            // Every session has a request in flight: what is due cannot go
                            // out (one request per HTTP/1.1 connection at a time).
                            self.drop_due(Counter::dropped_no_idle_session);
                            return;
                        }
                        if self.now_ns - due > GENERATOR_BEHIND_NS {
                            self.drop_due(Counter::dropped_generator_behind);
                            return;
                        }
                    }
                    _ => return,
                }
            }
            let Some((r, slot)) = self.pop_idle() else {
                return;
            };
            if self.rings[r].conns[slot as usize].state != State::Ready {
                continue; // closed, or reconnecting, since it queued
            }
            let intended_ns = if open_model {
                match self.request_pacer.take_due(self.now_ns) {
                    Some(due) => due,
                    None => unreachable!("checked due above"),
                }
            } else {
                self.now_ns
            };
            // An idle session was there, so a late send is the generator's own delay.
            let lag_ns = self.now_ns.saturating_sub(intended_ns);
            if open_model {
                self.metrics
                    .send_lag
                    .saturating_record((lag_ns / 1000).max(1));
            }
            if lag_ns > LATE_SEND_NS {
                self.metrics.incr(Counter::late_sends);
            }
            let entry = self.mix.pick(&mut self.rng);
            self.metrics.incr(Counter::requests_offered);
            self.start_request(r, slot, Request::Load(entry), intended_ns);
        }
    }

    /// A held session stops answering (its session or connection is lost).
    fn mark_down(&mut self, r: usize, slot: u32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.flags & (F::HELD | F::DOWN) == F::HELD {
            conn.flags |= F::DOWN;
            self.down += 1;
            if self.fault_window {
                self.metrics.incr(Counter::fault_connections_broken);
            }
        }
    }

    /// The session answered: it is no longer down.
    fn answered(&mut self, r: usize, slot: u32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.flags.intersects(F::DOWN) {
            conn.flags &= !F::DOWN;
            self.down -= 1;
        }
    }

    /// cool_down: sends `DELETE` for idle held sessions, as many as the send window allows
    /// per turn (a burst of N requests would take N send buffers). A session busy or
    /// reconnecting at that moment is closed at the end instead.
    fn issue_deletes(&mut self) {
        // Sessionless 2026-07-28 has no session to delete; the legacy transport ends a
        // session by closing its stream.
        if !self.deleting || self.modern || self.plan.legacy_sse {
            if self.deleting {
                self.shared.deletes_done[self.id].store(1, Ordering::Relaxed);
            }
            return;
        }
        while self.delete_ring < self.rings.len() {
            if self.delete_slot as usize >= self.rings[self.delete_ring].conns.len() {
                self.delete_ring += 1;
                self.delete_slot = 0;
                continue;
            }
            if self.sends.in_use() >= SEND_BUFS_MAX {
                return;
            }
            let (r, slot) = (self.delete_ring, self.delete_slot);
            self.delete_slot += 1;
            let conn = &mut self.rings[r].conns[slot as usize];
            if !conn.flags.intersects(F::HELD)
                || conn.state != State::Ready
                || conn.session.is_empty()
            {
                continue;
            }
            self.start_request(r, slot, Request::Delete, self.now_ns);
        }
        if self.in_flight == 0 {
            self.shared.deletes_done[self.id].store(1, Ordering::Relaxed);
        }
    }

    /// The answer to DELETE: the request ends, the session is no longer held (the machine
    /// then closes the connection).
    fn delete_answered(&mut self, r: usize, slot: u32, ok: bool) {
        self.end_request(r, slot);
        self.metrics.incr(if ok {
            Counter::sessions_deleted
        } else {
            Counter::error_delete_failed
        });
        self.unhold(r, slot);
        self.answered(r, slot);
    }

    /// The slot no longer holds a session (`HELD` and its count).
    fn unhold(&mut self, r: usize, slot: u32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.flags.intersects(F::HELD) {
            conn.flags &= !F::HELD;
            self.held -= 1;
            self.replica_held_changed(r, slot, false);
        }
    }

    fn become_ready(&mut self, r: usize, slot: u32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        conn_set_state(conn, State::Ready);
        if self.phase == Phase::Load && conn.flags.intersects(F::DOWN) {
            // A session back after losing its connection: probe it with a request of the
            // mix at once, so the recovery time measures the server, not the wait for its
            // turn in the load. If it is still linked in the idle FIFO, the pop skips it
            // while it is Awaiting.
            let entry = self.mix.pick(&mut self.rng);
            self.metrics.incr(Counter::probes_sent);
            self.start_request(r, slot, Request::Load(entry), self.now_ns);
            return;
        }
        if conn.flags.intersects(F::IDLE_QUEUED) {
            return; // still linked from before a reconnect: the pop will find it Ready
        }
        if self.idle_head == NONE && self.phase == Phase::Load && self.rate_per_s > 0 {
            // No session was idle until now: what fell due meanwhile could not be sent.
            self.drop_due(Counter::dropped_no_idle_session);
        }
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.flags |= F::IDLE_QUEUED;
        conn.next_idle = NONE;
        let index = r as u32 * self.plan.sessions_per_ring + slot;
        if self.idle_tail == NONE {
            self.idle_head = index;
        } else {
            let (tail_r, tail_slot) = self.split_index(self.idle_tail);
            self.rings[tail_r].conns[tail_slot as usize].next_idle = index;
        }
        self.idle_tail = index;
    }

    fn split_index(&self, index: u32) -> (usize, u32) {
        (
            (index / self.plan.sessions_per_ring) as usize,
            index % self.plan.sessions_per_ring,
        )
    }

    /// Unlinks the oldest idle connection.
    fn pop_idle(&mut self) -> Option<(usize, u32)> {
        if self.idle_head == NONE {
            return None;
        }
        let (r, slot) = self.split_index(self.idle_head);
        let conn = &mut self.rings[r].conns[slot as usize];
        assert!(conn.flags.intersects(F::IDLE_QUEUED), "idle list corrupted");
        conn.flags &= !F::IDLE_QUEUED;
        self.idle_head = conn.next_idle;
        if self.idle_head == NONE {
            self.idle_tail = NONE;
        }
        Some((r, slot))
    }

    /// Ends the request in flight on `slot` as failed with `cause` (also counted as lost with
    /// its connection when `lost`), in the figures of the segment it was sent in.
    fn fail_request(&mut self, r: usize, slot: u32, cause: Counter, lost: bool) {
        if self.rings[r].conns[slot as usize].state != State::Awaiting {
            self.metrics.incr(cause);
            return;
        }
        conn_set_state(&mut self.rings[r].conns[slot as usize], State::Ready);
        self.note_fault_outcome(r, slot, fault::Outcome::failed(cause, lost));
        let bucket = self.end_request(r, slot);
        if bucket == Bucket::Older {
            self.metrics.incr(Counter::answers_after_their_segment);
            return;
        }
        if matches!(bucket, Bucket::Earlier(_)) {
            self.second_failed_carry += 1;
        }
        let request = Request::from_u8(self.rings[r].conns[slot as usize].method);
        let metrics = self.bucket(bucket);
        metrics.incr(Counter::requests_failed);
        metrics.incr(cause);
        if let Request::Load(entry) = request {
            metrics.record_entry_failure(entry);
        }
        if lost {
            metrics.incr(Counter::requests_connection_lost);
        }
    }

    // ---- the connection machine -----------------------------------------------------------

    /// What the machine needs to know of the shard.
    fn machine_ctx(&self) -> Ctx {
        Ctx {
            now_ns: self.now_ns,
            phase: self.phase,
            sessionless: self.modern,
            tls: self.tls_config.is_some(),
            multishot_recv: self.plan.recv_multishot,
            connect_retries: self.plan.connect_retries,
            fault_window: self.fault_window,
            failover: self.replicas.is_some(),
        }
    }

    /// Runs one event through the connection's machine and carries its actions out.
    fn run_event(&mut self, r: usize, slot: u32, event: Event) {
        if self.is_reply(r, slot) {
            self.run_reply_event(r, slot, event);
            return;
        }
        if self.is_stream(r, slot) {
            self.run_stream_event(r, slot, event);
            return;
        }
        let ctx = self.machine_ctx();
        // The list is the shard's, reused: no allocation per event. An action that runs
        // another event (a send that breaks) takes a fresh one.
        let mut actions = std::mem::take(&mut self.actions);
        super::machine::on_event(
            &mut self.rings[r].conns[slot as usize],
            event,
            &ctx,
            &mut actions,
        );
        for action in actions.drain(..) {
            self.execute(r, slot, action);
        }
        self.actions = actions;
    }

    fn execute(&mut self, r: usize, slot: u32, action: Action) {
        match action {
            Action::Count(counter) => self.metrics.incr(counter),
            Action::CountBy(counter, n) => self.metrics.add_to(counter, n),
            Action::Errno { op, errno } => self.metrics.record_errno(op, errno),
            Action::Connected { latency_us } => {
                self.metrics.connect.saturating_record(latency_us);
                self.metrics.incr(Counter::connects_ok);
            }
            Action::ArmRecv => self.arm_recv(r, slot),
            Action::StartTls => self.start_tls(r, slot),
            Action::Send {
                request,
                intended_ns,
            } => self.send_request(r, slot, request, intended_ns),
            Action::SessionOpened {
                initialize_latency_us,
            } => {
                self.metrics
                    .initialize
                    .saturating_record(initialize_latency_us);
                self.metrics.incr(Counter::sessions_established);
            }
            Action::EndHandshake => self.end_handshake(r, slot),
            Action::StartHandshake => {
                let conn = &mut self.rings[r].conns[slot as usize];
                if !conn.flags.intersects(F::HANDSHAKING) {
                    conn.flags |= F::HANDSHAKING;
                    self.handshakes += 1;
                }
            }
            Action::Establish => self.establish(r, slot),
            Action::SettleFailed => self.settle_failed(r, slot),
            Action::MarkDown => self.mark_down(r, slot),
            Action::Answered { sent_ns } => {
                self.answered(r, slot);
                self.replica_answered(r, slot);
                if self.mark != 0 && self.first_ok_after_mark_ns == 0 && sent_ns >= self.mark_ns {
                    self.first_ok_after_mark_ns = self.now_ns;
                }
            }
            Action::RecordAnswer {
                entry,
                latency_corrected_us,
                latency_uncorrected_us,
                answer,
            } => self.record_answer(
                r,
                slot,
                entry,
                (latency_corrected_us, latency_uncorrected_us),
                answer.outcome,
                answer.rpc_error_code,
            ),
            Action::FailRequest { cause, lost } => self.fail_request(r, slot, cause, lost),
            Action::DeleteAnswered { ok } => self.delete_answered(r, slot, ok),
            Action::ClearDown => {
                let conn = &mut self.rings[r].conns[slot as usize];
                if conn.flags.intersects(F::DOWN) {
                    conn.flags &= !F::DOWN;
                    self.down -= 1;
                }
            }
            Action::Unhold => self.unhold(r, slot),
            Action::Reconnect => {
                let generation = self.rings[r].conns[slot as usize].generation;
                self.reconnects.push_back((r as u16, slot, generation));
            }
            Action::RetryConnect { attempt } => {
                let due_ns = self.now_ns + backoff_ns(attempt, &mut self.rng);
                let generation = self.rings[r].conns[slot as usize].generation;
                self.retries
                    .push(Reverse((due_ns, r as u16, slot, generation)));
            }
            Action::BackOff { retry_after_s } => self.back_off(r, slot, retry_after_s),
            Action::BecomeReady => self.become_ready(r, slot),
            Action::Close { reconnect } => self.begin_close(r, slot, reconnect),
            Action::SeekReplica { unreachable } => self.seek_replica(r, slot, unreachable),
        }
    }

    /// The connection cannot go on (peer reset, bad bytes, timeout, TLS error): the machine
    /// decides what that means in its state.
    fn connection_broke(&mut self, r: usize, slot: u32, cause: Counter) {
        self.run_event(r, slot, Event::Broke(cause));
    }

    // ---- receiving -----------------------------------------------------------------------

    fn on_recv(&mut self, r: usize, slot: u32, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            self.rings[r].conns[slot as usize].flags &= !F::RECV_ARMED;
        }
        if res <= 0 {
            if res == -libc::ENOBUFS {
                self.metrics.incr(Counter::recv_buffers_exhausted);
                if !more && self.wants_recv(r, slot) {
                    self.arm_recv(r, slot);
                }
                return;
            }
            self.on_recv_end(r, slot, res);
            self.maybe_close(r, slot);
            return;
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            unreachable!("a multishot recv with data always names its buffer")
        };
        let len = res as usize;
        self.metrics.add_to(Counter::bytes_received, len as u64);
        if !self.rings[r].tls.is_empty() {
            self.on_recv_tls(r, slot, bid, len);
            self.rearm_recv(r, slot, more);
            return;
        }
        if self.is_stream(r, slot) {
            // The bytes leave the ring buffer before it is recycled: a stream's reads are
            // small (an event or a few) and rare next to the load's.
            let mut bytes = std::mem::take(&mut self.tls_plain);
            bytes.clear();
            bytes.extend_from_slice(self.rings[r].ring.bufs.get(bid, len));
            self.rings[r].ring.bufs.recycle(bid);
            self.on_stream_bytes(r, slot, &bytes);
            self.tls_plain = bytes;
            self.rearm_recv(r, slot, more);
            return;
        }
        let fed = {
            let RingSlot { ring, conns, .. } = &mut self.rings[r];
            let data = ring.bufs.get(bid, len);
            feed(
                &mut conns[slot as usize],
                data,
                false,
                &mut self.spills,
                &mut self.scratch,
                &mut self.metrics,
            )
        };
        self.rings[r].ring.bufs.recycle(bid);
        self.deliver(r, slot, fed);
        self.rearm_recv(r, slot, more);
    }

    /// What the response reader made of received bytes goes to the machine — under
    /// `--transport sse` a 202 first joins the reply that comes on the session's stream.
    fn deliver(&mut self, r: usize, slot: u32, fed: super::conn::Fed) {
        if self.is_reply(r, slot) {
            self.on_reply_fed(r, slot, fed);
            return;
        }
        if !self.scratch.asked().is_empty() || !self.asked_seen.is_empty() {
            self.answer_asked(r, slot, &fed);
        }
        if self.plan.legacy_sse
            && let super::conn::Fed::Response(summary) = &fed
            && self.legacy_post_answered(r, slot, summary)
        {
            return;
        }
        self.run_event(r, slot, Event::Fed(fed));
    }

    /// After a receive completion: arm the next receive if that one was the last (`!more`),
    /// none is armed, and the connection wants one.
    fn rearm_recv(&mut self, r: usize, slot: u32, more: bool) {
        if !more
            && !self.rings[r].conns[slot as usize]
                .flags
                .intersects(F::RECV_ARMED)
            && self.wants_recv(r, slot)
        {
            self.arm_recv(r, slot);
        }
    }

    /// Received ciphertext: decrypted in one pass out of the ring buffer (recycled at once, so
    /// rustls holds the only copy of a partial record), the handshake
    /// finished, the plaintext fed to the response reader, and any TLS records due sent.
    fn on_recv_tls(&mut self, r: usize, slot: u32, bid: u16, len: usize) {
        let Some(received) = self.decrypt(r, slot, bid, len) else {
            return;
        };
        self.send_tls_output(r, slot);
        self.finish_tls_handshake(r, slot);
        if !self.tls_plain.is_empty() && self.is_stream(r, slot) {
            let plain = std::mem::take(&mut self.tls_plain);
            self.on_stream_bytes(r, slot, &plain);
            self.tls_plain = plain;
        } else if !self.tls_plain.is_empty() {
            let plain = std::mem::take(&mut self.tls_plain);
            let fed = feed(
                &mut self.rings[r].conns[slot as usize],
                &plain,
                false,
                &mut self.spills,
                &mut self.scratch,
                &mut self.metrics,
            );
            self.tls_plain = plain;
            self.deliver(r, slot, fed);
        }
        if received.peer_closed {
            self.metrics.incr(Counter::tls_close_notify_received);
            self.on_recv_end(r, slot, 0);
        }
    }

    /// Should a receive be armed? Multishot: while the connection is open. Armed mode
    /// (`--recv armed`): only while a response is awaited, so an idle connection holds no
    /// receive request in the kernel (but a server closing it goes unnoticed until the next
    /// request, which then fails as closed mid-request or reset).
    fn wants_recv(&self, r: usize, slot: u32) -> bool {
        let state = self.rings[r].conns[slot as usize].state;
        if self.plan.recv_multishot {
            state != State::Closing
        } else {
            matches!(
                state,
                State::TlsHandshaking
                    | State::Initializing
                    | State::Initialized
                    | State::Awaiting
                    | State::Opening
                    | State::Streaming
                    | State::Replying
            )
        }
    }

    /// EOF or a receive error.
    fn on_recv_end(&mut self, r: usize, slot: u32, res: i32) {
        if self.rings[r].conns[slot as usize].state == State::Closing {
            return;
        }
        let cut_record = self.rings[r]
            .tls
            .get(slot as usize)
            .and_then(Option::as_ref)
            .is_some_and(|tls| tls.holds_partial_record());
        if res == 0 && cut_record {
            // The peer closed in the middle of a TLS record: whatever it carried is lost.
            self.connection_broke(r, slot, Counter::error_tls_truncated);
            return;
        }
        let conn = &mut self.rings[r].conns[slot as usize];
        if res == 0 && conn.spill != NONE {
            // A response delimited by the close may now be complete.
            conn.flags |= F::PEER_EOF;
            let fed = feed(
                conn,
                &[],
                true,
                &mut self.spills,
                &mut self.scratch,
                &mut self.metrics,
            );
            self.deliver(r, slot, fed);
        }
        self.run_event(r, slot, Event::RecvEnd { res });
    }

    /// Records an answered load request in the figures of the segment it was sent in.
    fn record_answer(
        &mut self,
        r: usize,
        slot: u32,
        entry: u8,
        (latency_corrected_us, latency_uncorrected_us): (u64, u64),
        outcome: Result<(), Counter>,
        rpc_error_code: Option<i64>,
    ) {
        self.note_fault_outcome(
            r,
            slot,
            match outcome {
                Ok(()) => fault::Outcome::Answered,
                Err(cause) => fault::Outcome::failed(cause, false),
            },
        );
        let bucket = self.end_request(r, slot);
        match bucket {
            Bucket::Older => {
                self.metrics.incr(Counter::answers_after_their_segment);
                return;
            }
            Bucket::Earlier(_) => {
                // The timeline is per second of the run, whatever segment the request was in.
                self.metrics.second.saturating_record(
                    latency_corrected_us.clamp(1, super::metrics::LATENCY_US_MAX),
                );
                match outcome {
                    Ok(()) => self.second_ok_carry += 1,
                    Err(_) => self.second_failed_carry += 1,
                }
                let metrics = self.bucket(bucket);
                metrics.record_latency(entry, latency_corrected_us, latency_uncorrected_us);
            }
            Bucket::Current => {
                self.metrics
                    .record_request(entry, latency_corrected_us, latency_uncorrected_us)
            }
        }
        let metrics = self.bucket(bucket);
        match outcome {
            Ok(()) => metrics.incr(Counter::requests_ok),
            Err(cause) => {
                metrics.incr(Counter::requests_failed);
                metrics.incr(cause);
                metrics.record_entry_failure(entry);
            }
        }
        if let Some(code) = rpc_error_code {
            metrics.record_rpc_error_code(code);
        }
    }

    /// A 503 (server full or busy): the machine set the connection Waiting; it resumes after
    /// `Retry-After` (capped) or a jittered backoff (`resume_waiting`).
    fn back_off(&mut self, r: usize, slot: u32, retry_after_s: Option<u64>) {
        let delay_ns = match retry_after_s {
            Some(seconds) => seconds.min(RETRY_AFTER_MAX_S) * 1_000_000_000,
            None => backoff_ns(BUSY_BACKOFF_ATTEMPT, &mut self.rng),
        };
        let generation = self.rings[r].conns[slot as usize].generation;
        self.waiting.push(Reverse((
            self.now_ns + delay_ns,
            r as u16,
            slot,
            generation,
        )));
    }

    fn resume_waiting(&mut self) {
        while let Some(&Reverse((due_ns, r, slot, generation))) = self.waiting.peek() {
            if due_ns > self.now_ns {
                break;
            }
            self.waiting.pop();
            let (r, conn) = (r as usize, &self.rings[r as usize].conns[slot as usize]);
            if conn.generation != generation || conn.state != State::Waiting {
                continue;
            }
            if !conn.flags.intersects(F::HANDSHAKING) {
                self.become_ready(r, slot);
            } else {
                conn_set_state(&mut self.rings[r].conns[slot as usize], State::Initializing);
                self.send_request(r, slot, Request::Initialize, self.now_ns);
            }
        }
    }

    // ---- closing -------------------------------------------------------------------------

    /// Starts closing the connection; `reconnect`: open a new one afterwards (session kept).
    fn begin_close(&mut self, r: usize, slot: u32, reconnect: bool) {
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.state == State::Closing {
            return;
        }
        conn_set_state(conn, State::Closing);
        if reconnect {
            conn.flags |= F::RECONNECT;
        }
        let generation = conn.generation;
        if conn.chain_pending > 0 && !conn.flags.intersects(F::CANCEL_SUBMITTED) {
            conn.flags |= F::CANCEL_SUBMITTED;
            let entry =
                opcode::AsyncCancel::new(UserData::new(slot, generation, Op::Connect).encode())
                    .build()
                    .user_data(UserData::new(slot, generation, Op::Cancel).encode());
            self.push(r, entry);
        }
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.flags.intersects(F::RECV_ARMED) && !conn.flags.intersects(F::SHUTDOWN_IN_FLIGHT) {
            conn.flags |= F::SHUTDOWN_IN_FLIGHT;
            let entry = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_RDWR)
                .build()
                .user_data(UserData::new(slot, generation, Op::Shutdown).encode());
            // The fixed slot stays open until Close, which waits for this completion.
            self.push(r, entry);
        }
        self.maybe_close(r, slot);
    }

    fn maybe_close(&mut self, r: usize, slot: u32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.state != State::Closing
            || conn.chain_pending > 0
            || conn.flags.intersects(
                F::RECV_ARMED | F::SEND_IN_FLIGHT | F::SHUTDOWN_IN_FLIGHT | F::CLOSE_SUBMITTED,
            )
        {
            return;
        }
        conn.flags |= F::CLOSE_SUBMITTED;
        let entry = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(UserData::new(slot, conn.generation, Op::Close).encode());
        // Nothing else is in flight for the slot (checked above).
        self.push(r, entry);
    }

    /// The close completed: the connection's buffers and TLS state go back; the machine
    /// decides what becomes of the slot (reconnect now or after a backoff, done, failed).
    fn on_close(&mut self, r: usize, slot: u32) {
        self.end_handshake(r, slot);
        if let Some(tls) = self.rings[r].tls.get_mut(slot as usize) {
            *tls = None;
        }
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.spill != NONE {
            self.spills.give(conn.spill);
            conn.spill = NONE;
        }
        if conn.send_buf != NONE {
            self.sends.give(conn.send_buf);
            conn.send_buf = NONE;
        }
        conn.chain_pending = 0;
        self.open_conns -= 1;
        let session_slot = !self.is_stream(r, slot) && !self.is_reply(r, slot);
        if session_slot {
            self.forget_asked(r, slot);
        }
        if self.plan.legacy_sse && session_slot {
            self.legacy_forget(r, slot);
        }
        self.run_event(r, slot, Event::Closed);
    }

    // ---- timeouts ------------------------------------------------------------------------

    /// Checks every connection for an expired connect or request deadline. A sweep over the
    /// slab every sweep interval costs a few µs per thousand connections and no memory, where a
    /// deadline queue entry per request would grow with rate × timeout.
    fn expire_deadlines(&mut self) {
        if self.now_ns < self.next_sweep_ns {
            return;
        }
        let mut interval = self.plan.connect_timeout.min(self.plan.request_timeout) / 10;
        if self.stall_after_ns > 0 {
            interval = interval.min(Duration::from_nanos(self.stall_after_ns / 4));
        }
        let interval = interval.clamp(SWEEP_INTERVAL_MIN, SWEEP_INTERVAL_MAX);
        let mut stalled = 0u64;
        let mut oldest_sent_ns = u64::MAX;
        self.next_sweep_ns = self.now_ns + interval.as_nanos() as u64;
        let connect_timeout_ns = self.plan.connect_timeout.as_nanos() as u64;
        let request_timeout_ns = self.plan.request_timeout.as_nanos() as u64;
        for r in 0..self.rings.len() {
            for slot in 0..self.rings[r].conns.len() as u32 {
                let conn = &mut self.rings[r].conns[slot as usize];
                let waited_ns = self.now_ns.saturating_sub(conn.sent_ns);
                let limits = Timeouts {
                    connect_ns: connect_timeout_ns,
                    request_ns: request_timeout_ns,
                };
                match deadline(conn, waited_ns, limits) {
                    Deadline::CancelConnect => {
                        conn.flags |= F::CONNECT_TIMED_OUT | F::CANCEL_SUBMITTED;
                        let generation = conn.generation;
                        let entry = opcode::AsyncCancel::new(
                            UserData::new(slot, generation, Op::Connect).encode(),
                        )
                        .build()
                        .user_data(UserData::new(slot, generation, Op::Cancel).encode());
                        self.push(r, entry);
                    }
                    Deadline::Expired(cause) => self.connection_broke(r, slot, cause),
                    Deadline::LoadInFlight => {
                        oldest_sent_ns = oldest_sent_ns.min(conn.sent_ns);
                        if self.stall_after_ns > 0
                            && waited_ns > self.stall_after_ns
                            && !conn.flags.intersects(F::DOWN)
                        {
                            stalled += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        self.shared.stalled[self.id].store(stalled, Ordering::Relaxed);
        let oldest = if oldest_sent_ns == u64::MAX {
            0
        } else {
            oldest_sent_ns.max(1)
        };
        self.shared.oldest_in_flight_sent_ns[self.id].store(oldest, Ordering::Relaxed);
    }

    // ---- dispatch ------------------------------------------------------------------------

    fn dispatch(&mut self, r: usize, cqe: &cqueue::Entry) {
        let ud = UserData::decode(cqe.user_data())
            .expect("completion with a user_data we never encoded");
        let (res, flags) = (cqe.result(), cqe.flags());
        match ud.op {
            Op::PollRing => {
                if !cqueue::more(flags) {
                    self.arm_ring_poll(ud.slot as usize);
                }
            }
            Op::Cancel => {}
            op => {
                let conn = &self.rings[r].conns[ud.slot as usize];
                assert_eq!(
                    conn.generation, ud.generation,
                    "stale {op:?} completion for slot {}: a slot was reused with an op in flight",
                    ud.slot
                );
                match op {
                    Op::Socket | Op::SetSockOpt | Op::Bind | Op::Connect => {
                        self.on_chain(r, ud.slot, op, res);
                        self.maybe_close(r, ud.slot);
                    }
                    Op::Recv => self.on_recv(r, ud.slot, res, flags),
                    Op::Send => self.on_send(r, ud.slot, res),
                    Op::Shutdown => {
                        self.rings[r].conns[ud.slot as usize].flags &= !F::SHUTDOWN_IN_FLIGHT;
                        self.maybe_close(r, ud.slot);
                    }
                    Op::Close => self.on_close(r, ud.slot),
                    other => panic!("the engine never submits {other:?}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The connect chain's socket options go through IORING_OP_URING_CMD setsockopt on a
    /// fixed file. The kernel reads options back this way only at SOL_SOCKET, so SO_RCVBUF
    /// (set, then read back) proves a setsockopt on a direct descriptor takes effect; the
    /// chain's TCP_NODELAY takes the same path at IPPROTO_TCP.
    #[test]
    fn setsockopt_by_uring_cmd_applies_to_a_direct_descriptor() {
        use crate::ring::probe_kernel;
        let features = probe_kernel().expect("tests need io_uring");
        let config = RingConfig {
            sq_entries: 8,
            cq_entries: 16,
            fixed_files: 4,
            buf_count: 8,
            buf_bytes: 64,
            backlog_max: 8,
        };
        let mut ring = Ring::new(&config, RingRole::Leader, &features).unwrap();
        let Ok(dest) = types::DestinationSlot::try_from_slot_target(2) else {
            panic!("slot 2 is valid")
        };
        let requested: libc::c_int = 96 * 1024;
        let mut read_back: libc::c_int = 0;
        let link = squeue::Flags::IO_LINK;
        let entries = [
            opcode::Socket::new(libc::AF_INET, libc::SOCK_STREAM, 0)
                .file_index(Some(dest))
                .build()
                .flags(link)
                .user_data(1),
            opcode::SetSockOpt::new(
                types::Fixed(2),
                libc::IPPROTO_TCP as u32,
                libc::TCP_NODELAY as u32,
                (&raw const ONE).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
            .build()
            .flags(link)
            .user_data(2),
            opcode::SetSockOpt::new(
                types::Fixed(2),
                libc::SOL_SOCKET as u32,
                libc::SO_RCVBUF as u32,
                (&raw const requested).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
            .build()
            .flags(link)
            .user_data(3),
            opcode::GetSockOpt::new(
                types::Fixed(2),
                libc::SOL_SOCKET as u32,
                libc::SO_RCVBUF as u32,
                (&raw mut read_back).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
            .build()
            .user_data(4),
        ];
        for entry in entries {
            // SAFETY: `ONE`, `requested` and `read_back` live until the end of this test, after
            // the completions are reaped below; slot 2 is in the ring's table.
            unsafe { ring.push(entry) };
        }
        let mut cqes = Vec::with_capacity(8);
        let deadline = Instant::now() + Duration::from_secs(5);
        while cqes.len() < 4 && Instant::now() < deadline {
            ring.submit_and_wait_timeout(Duration::from_millis(100))
                .unwrap();
            ring.reap(&mut cqes);
        }
        let mut results: Vec<(u64, i32)> =
            cqes.iter().map(|c| (c.user_data(), c.result())).collect();
        results.sort();
        assert_eq!(results.len(), 4, "{results:?}");
        assert!(results.iter().all(|&(_, res)| res >= 0), "{results:?}");
        // Linux doubles SO_RCVBUF for bookkeeping overhead.
        assert_eq!(read_back, requested * 2, "{results:?}");
    }
}
