//! One server shard: a thread pinned to a CPU that owns one or more rings, each with its own
//! SO_REUSEPORT listener(s), multishot accept into auto-allocated direct descriptors, multishot
//! recv from the ring's provided buffers, and the connections those descriptors index.
//! Part of `server/`; the HTTP/MCP decisions are in `mcp.rs` and `proto/`.
//!
//! Ownership of completions: a connection's slot index *is* its fixed-file index, so the kernel
//! chooses it at accept time. A slot returns to Free only after its Close completion, and Close
//! is submitted only when no recv, send or shutdown is in flight for it (`flags`), so a late
//! completion can never land on a reused slot; the generation in `user_data` asserts that.

use super::mcp::{Handler, Outcome, write_protocol_error};
use super::notify::{self, Begin, Fanout, STREAMS_PER_TURN};
use super::service::{Job, ServiceQueue, Started};
use super::stats::{Counter, ShardStats};
use super::{STOP, ServerPlan};
use crate::proto::http_request::{Body, Parse, RequestLimits, decode_chunked_body, parse_request};
use crate::ring::pool::Pool;
use crate::ring::{BUF_GROUP, KernelFeatures, Op, Ring, RingConfig, RingRole, UserData};
use crate::tls::{Received, TlsConn, TlsError};
use io_uring::{cqueue, opcode, types};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const NONE: u32 = u32::MAX;
const RECV_ARMED: u8 = 1;
const SEND_IN_FLIGHT: u8 = 2;
const SHUTDOWN_IN_FLIGHT: u8 = 4;
const CLOSE_SUBMITTED: u8 = 8;
/// Close once the queued output has been sent.
const WANT_CLOSE: u8 = 16;
/// A delayed (`sleep`) response is pending: send nothing and parse nothing more until it fires.
const PAUSED: u8 = 32;
const STREAMING: u8 = 64;
const OPEN: u8 = 128;

/// `aux` of a Recv: single-shot into the connection's own pool buffer (see `on_recv`).
const RECV_SINGLE: u8 = 2;
/// Size of that buffer: a typical request, and then some.
const RECV_SINGLE_BYTES: usize = 1024;
/// Single-shot receives a shard keeps in flight at once; further starved connections wait in
/// FIFO order, so the fallback's memory is bounded however many connections burst.
const RECV_SINGLE_MAX: usize = 256;
/// `aux` of a Send: the bytes came from a static keep-alive, not the output pool.
const SEND_STATIC: u8 = 1;
/// A keep-alive comment on a GET stream, as one chunk of the chunked body.
const KEEPALIVE_CHUNK: &[u8] = b"e\r\n: keep-alive\n\n\r\n";
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Completions dispatched between two submits (see the run loop).
const CQE_BATCH: usize = 256;
/// Batches one ring may take per loop turn before the next ring gets its turn.
const CQE_BATCHES_PER_TURN: usize = 4;
const LOOP_TICK: Duration = Duration::from_millis(50);

/// A timer: (deadline ns, ring, slot, generation, what it does).
type Timer = (u64, u8, u32, u16, TimerKind);

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// A delayed response (`sleep`) is due: resume the connection.
    Resume,
    /// A calibrated service ends: free its slot (and resume the connection).
    ServiceDone,
    /// A call waits for its client's answer (`pending.rs`): poll again.
    AwaitClient { ticket: u64, close: bool },
}

/// How often a call that asked its client looks for the answer: the answer comes over the
/// network from the client, so a few milliseconds are noise; nothing on the load path polls.
const AWAIT_POLL_NS: u64 = 2_000_000;

/// Per-connection state: 12 bytes; everything larger lives in per-shard pools and is held only
/// while a request is partial (spill) or a response is unsent (out).
#[derive(Clone, Copy)]
struct Conn {
    generation: u16,
    flags: u8,
    /// A listen stream (2025 GET, 2026-07-28 `subscriptions/listen`): `--notify-every`'s
    /// events go to it. (A request's own event stream is STREAMING but not this.)
    listens: bool,
    spill: u32,
    out_inflight: u32,
    out_pending: u32,
    /// Pool buffer of a single-shot receive in flight (the fallback when the buffer ring ran
    /// dry), or NONE.
    rx: u32,
}

impl Conn {
    const FREE: Conn = Conn {
        generation: 0,
        flags: 0,
        listens: false,
        spill: NONE,
        rx: NONE,
        out_inflight: NONE,
        out_pending: NONE,
    };
}

struct RingSlot {
    ring: Ring,
    conns: Vec<Conn>,
    listeners: Vec<socket2::Socket>,
    accept_armed: Vec<bool>,
    /// Follower only: the leader holds a poll on this ring's fd.
    poll_armed: bool,
    open: u32,
    /// `--tls-cert`: each open slot's TLS layer (empty without TLS).
    tls: Vec<Option<Box<TlsConn>>>,
}

pub struct Shard<'a> {
    id: usize,
    rings: Vec<RingSlot>,
    spills: Pool,
    outs: Pool,
    timers: BinaryHeap<Reverse<Timer>>,
    /// The calibrated service (`--service-time`): this shard's slots and waiting line.
    service: ServiceQueue,
    /// Connections that found the buffer ring empty, waiting for a single-shot receive:
    /// (ring, slot, generation).
    starved: VecDeque<(u8, u32, u16)>,
    recv_singles_in_flight: usize,
    handler: Handler<'a>,
    stats: &'a ShardStats,
    plan: &'a ServerPlan,
    body_scratch: Vec<u8>,
    /// Plaintext of the records being decrypted (reused).
    tls_plain: Vec<u8>,
    limits: RequestLimits,
    epoch: Instant,
    now_ns: u64,
    stopping: bool,
    /// `--notify-every`: the rounds of events to listen streams.
    fanout: Option<Fanout>,
    /// `--legacy-sse`: deliveries taken from the inbox (reused).
    legacy_deliveries: Vec<super::legacy::Delivery>,
}

impl<'a> Shard<'a> {
    pub fn new(
        id: usize,
        plan: &'a ServerPlan,
        features: &KernelFeatures,
        listeners: Vec<Vec<socket2::Socket>>,
        handler: Handler<'a>,
        stats: &'a ShardStats,
    ) -> Result<Shard<'a>, crate::ring::RingError> {
        let mut rings = Vec::with_capacity(listeners.len());
        for (index, ring_listeners) in listeners.into_iter().enumerate() {
            let config = RingConfig {
                sq_entries: 4096,
                cq_entries: 16384,
                fixed_files: plan.slots_per_ring,
                buf_count: plan.buf_count,
                buf_bytes: plan.buf_bytes,
                backlog_max: plan.slots_per_ring as usize * 4 + 1024,
            };
            let role = if index == 0 {
                RingRole::Leader
            } else {
                RingRole::Follower
            };
            let ring = Ring::new(&config, role, features)?;
            let accept_armed = vec![false; ring_listeners.len()];
            rings.push(RingSlot {
                ring,
                conns: vec![Conn::FREE; plan.slots_per_ring as usize],
                listeners: ring_listeners,
                accept_armed,
                poll_armed: false,
                open: 0,
                tls: if plan.tls.is_some() {
                    (0..plan.slots_per_ring).map(|_| None).collect()
                } else {
                    Vec::new()
                },
            });
        }
        Ok(Shard {
            id,
            rings,
            spills: Pool::new(),
            outs: Pool::new(),
            timers: BinaryHeap::new(),
            service: ServiceQueue::new(
                plan.service_time_ns,
                super::service::slots_of_shard(plan.service_concurrency, plan.shards, id),
            ),
            starved: VecDeque::new(),
            recv_singles_in_flight: 0,
            handler,
            stats,
            plan,
            body_scratch: Vec::new(),
            tls_plain: Vec::new(),
            limits: RequestLimits::default(),
            epoch: plan.epoch,
            now_ns: 0,
            stopping: false,
            fanout: (plan.notify_every_ns > 0).then(|| {
                Fanout::new(
                    plan.notify_every_ns,
                    notify::shard_limit(plan.notify_to, plan.shards, id),
                    0,
                )
            }),
            legacy_deliveries: Vec::new(),
        })
    }

    pub fn run(&mut self) -> std::io::Result<()> {
        for r in 0..self.rings.len() {
            for l in 0..self.rings[r].listeners.len() {
                self.arm_accept(r, l);
            }
            if r > 0 {
                self.arm_ring_poll(r);
            }
        }
        self.arm_inbox_poll();
        let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(CQE_BATCH);
        let mut next_keepalive_ns = KEEPALIVE_INTERVAL.as_nanos() as u64;
        let mut next_sweep_ns = 0u64;
        let mut stop_deadline_ns = u64::MAX;
        loop {
            if !self.stopping && STOP.load(Ordering::Relaxed) {
                self.begin_stop();
                stop_deadline_ns = self.now_ns + 2_000_000_000;
            }
            if self.stopping
                && (self.rings.iter().all(|r| r.open == 0) || self.now_ns > stop_deadline_ns)
            {
                return Ok(());
            }
            for slot in self.rings.iter_mut().skip(1) {
                slot.ring.submit()?;
            }
            let mut wait = match self.timers.peek() {
                Some(Reverse((deadline, ..))) => {
                    Duration::from_nanos(deadline.saturating_sub(self.now_ns)).min(LOOP_TICK)
                }
                None => LOOP_TICK,
            };
            if let Some(fanout) = &self.fanout
                && !self.stopping
            {
                wait = wait.min(Duration::from_nanos(fanout.wait_ns(self.now_ns)));
            }
            self.rings[0].ring.submit_and_wait_timeout(wait)?;
            self.now_ns = self.epoch.elapsed().as_nanos() as u64;
            for r in 0..self.rings.len() {
                // A bounded turn per ring: under saturation a ring's CQ refills while it is
                // drained (each submit runs task work that posts more), and an unbounded loop
                // on the leader starved every follower ring's connections for whole runs.
                for _ in 0..CQE_BATCHES_PER_TURN {
                    cqes.clear();
                    if self.rings[r].ring.reap(&mut cqes) == 0 {
                        break;
                    }
                    for cqe in &cqes {
                        self.dispatch(r, cqe);
                    }
                    // Hand buffers back and send what this batch produced before taking the
                    // next one: responses then wait in the output pool for one batch at most,
                    // which bounds the pool (and RSS) however many connections burst at once.
                    self.rings[r].ring.bufs.publish();
                    if cqes.len() < cqes.capacity() {
                        break;
                    }
                    self.rings[r].ring.submit()?;
                }
                if r > 0 && !self.rings[r].poll_armed {
                    self.arm_ring_poll(r);
                }
                self.rings[r].ring.bufs.publish();
            }
            self.fire_timers();
            self.drain_inbox();
            self.fan_out();
            if self.now_ns >= next_keepalive_ns {
                self.send_keepalives();
                next_keepalive_ns = self.now_ns + KEEPALIVE_INTERVAL.as_nanos() as u64;
            }
            if self.id == 0 && self.now_ns >= next_sweep_ns {
                let expired = self
                    .handler
                    .sessions
                    .expire_idle(self.now_s(), self.plan.session_idle_timeout_s);
                self.stats.add(Counter::sessions_expired, expired);
                // A quarter of the idle timeout, within 0.1–10 s: a session outlives its timeout
                // by at most that much.
                let sweep_ns = (self.plan.session_idle_timeout_s as u64 * 250_000_000)
                    .clamp(100_000_000, 10_000_000_000);
                next_sweep_ns = self.now_ns + sweep_ns;
            }
        }
    }

    fn now_s(&self) -> u32 {
        (self.now_ns / 1_000_000_000) as u32
    }

    fn push(&mut self, r: usize, entry: io_uring::squeue::Entry) {
        // SAFETY: every entry built in this file points only at memory that outlives its
        // completion: fixed-file slots (kept open until Close completes), pool buffers (not
        // reused until the Send completion) and 'static keep-alive bytes; see each call site.
        unsafe { self.rings[r].ring.push(entry) };
    }

    fn arm_accept(&mut self, r: usize, l: usize) {
        let fd = self.rings[r].listeners[l].as_raw_fd();
        let entry = opcode::AcceptMulti::new(types::Fd(fd))
            .allocate_file_index(true)
            .build()
            .user_data(UserData::new(0, 0, Op::Accept).with_aux(l as u8).encode());
        // The listener socket is owned by RingSlot and outlives the ring's requests.
        self.push(r, entry);
        self.rings[r].accept_armed[l] = true;
    }

    /// One-shot poll of a follower's ring fd from the leader. It is re-armed only after the
    /// follower's CQ has been drained (see `run`): a multishot poll would post one leader CQE
    /// per follower CQE, doubling completion traffic. Arming is level-triggered (a non-empty
    /// CQ fires at once), so no wake-up is lost in between.
    fn arm_ring_poll(&mut self, r: usize) {
        let fd = self.rings[r].ring.raw_fd();
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(UserData::new(r as u32, 0, Op::PollRing).encode());
        // The follower ring lives as long as the leader (both owned by this shard).
        self.push(0, entry);
        self.rings[r].poll_armed = true;
    }

    fn arm_recv(&mut self, r: usize, slot: u32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.flags |= RECV_ARMED;
        let entry = opcode::RecvMulti::new(types::Fixed(slot), BUF_GROUP)
            .build()
            .user_data(UserData::new(slot, conn.generation, Op::Recv).encode());
        // The fixed slot stays open until Close, which waits for RECV_ARMED to clear.
        self.push(r, entry);
    }

    /// Single-shot receive into a pool buffer owned by the connection until it completes.
    fn arm_recv_single(&mut self, r: usize, slot: u32) {
        self.recv_singles_in_flight += 1;
        let rx = self.spills.take();
        let buf = &mut self.spills.bufs[rx as usize];
        buf.clear();
        buf.reserve(RECV_SINGLE_BYTES);
        let (ptr, capacity) = (buf.as_mut_ptr(), buf.capacity());
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.rx = rx;
        conn.flags |= RECV_ARMED;
        let entry = opcode::Recv::new(types::Fixed(slot), ptr, capacity as u32)
            .build()
            .user_data(
                UserData::new(slot, conn.generation, Op::Recv)
                    .with_aux(RECV_SINGLE)
                    .encode(),
            );
        // The pool buffer `rx` belongs to this connection (`conn.rx`) and is neither touched
        // nor returned to the pool until this Recv completes (on_recv_single).
        self.push(r, entry);
    }

    /// A connection the buffer ring could not serve: a single-shot receive now if the bound
    /// allows, else in line behind the others.
    fn starve(&mut self, r: usize, slot: u32) {
        if self.recv_singles_in_flight < RECV_SINGLE_MAX {
            self.arm_recv_single(r, slot);
        } else {
            let generation = self.rings[r].conns[slot as usize].generation;
            self.starved.push_back((r as u8, slot, generation));
        }
    }

    /// Starts waiting single-shot receives while the bound allows (skipping connections that
    /// closed or started closing while in line).
    fn feed_starved(&mut self) {
        while self.recv_singles_in_flight < RECV_SINGLE_MAX {
            let Some((r, slot, generation)) = self.starved.pop_front() else {
                break;
            };
            let conn = self.rings[r as usize].conns[slot as usize];
            if conn.generation == generation
                && conn.flags & OPEN != 0
                && conn.flags & (WANT_CLOSE | RECV_ARMED) == 0
            {
                self.arm_recv_single(r as usize, slot);
            }
        }
    }

    fn on_recv_single(&mut self, r: usize, slot: u32, res: i32) {
        self.recv_singles_in_flight -= 1;
        self.feed_starved();
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.flags &= !RECV_ARMED;
        let rx = conn.rx;
        conn.rx = NONE;
        if res <= 0 {
            self.spills.give(rx);
            match res {
                0 => {}
                e if e == -libc::ECONNRESET || e == -libc::EPIPE => {
                    self.stats.incr(Counter::peer_resets)
                }
                e if e == -libc::ECANCELED => {}
                _ => self.stats.incr(Counter::error_recv),
            }
            self.rings[r].conns[slot as usize].flags |= WANT_CLOSE;
            self.flush(r, slot);
            return;
        }
        let len = res as usize;
        // SAFETY: the kernel wrote `len` bytes (≤ the capacity we gave it) at the start of
        // this buffer, which nothing else touched while the Recv was in flight.
        unsafe { self.spills.bufs[rx as usize].set_len(len) };
        self.stats.add(Counter::bytes_received, len as u64);
        let conn_flags = self.rings[r].conns[slot as usize].flags;
        if let Some(tls) = self.rings[r]
            .tls
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
        {
            self.tls_plain.clear();
            let result = tls.receive(&mut self.spills.bufs[rx as usize], &mut self.tls_plain);
            self.spills.give(rx);
            self.on_tls_received(r, slot, result);
        } else if conn_flags & (WANT_CLOSE | STREAMING) == 0 {
            let spill = match self.rings[r].conns[slot as usize].spill {
                NONE => {
                    // The received buffer simply becomes the connection's spill.
                    self.rings[r].conns[slot as usize].spill = rx;
                    NONE
                }
                spill => spill,
            };
            if spill != NONE {
                let (received, spill_buf) =
                    two_bufs(&mut self.spills.bufs, rx as usize, spill as usize);
                spill_buf.extend_from_slice(received);
                self.spills.give(rx);
            }
            self.process_spill(r, slot);
        } else {
            self.spills.give(rx);
        }
        self.flush(r, slot);
        if self.rings[r].conns[slot as usize].flags & (WANT_CLOSE | RECV_ARMED) == 0 {
            self.arm_recv(r, slot);
        }
    }

    fn dispatch(&mut self, r: usize, cqe: &cqueue::Entry) {
        let ud = UserData::decode(cqe.user_data())
            .expect("completion with a user_data we never encoded");
        let (res, flags) = (cqe.result(), cqe.flags());
        match ud.op {
            Op::Accept => self.on_accept(r, ud.aux as usize, res, flags),
            Op::PollRing => self.rings[ud.slot as usize].poll_armed = false,
            // The inbox is drained every turn; a woken wait only has to end.
            Op::Inbox if !cqueue::more(flags) => self.arm_inbox_poll(),
            Op::Inbox => {}
            Op::Cancel => {}
            op => {
                let conn = &self.rings[r].conns[ud.slot as usize];
                assert_eq!(
                    conn.generation, ud.generation,
                    "stale {op:?} completion for slot {}: a slot was reused with an op in flight",
                    ud.slot
                );
                match op {
                    Op::Recv => self.on_recv(r, ud.slot, res, flags, ud.aux),
                    Op::Send => self.on_send(r, ud.slot, res, ud.aux),
                    Op::Shutdown => {
                        self.rings[r].conns[ud.slot as usize].flags &= !SHUTDOWN_IN_FLIGHT;
                        self.maybe_close(r, ud.slot);
                    }
                    Op::Close => self.on_close(r, ud.slot),
                    other => panic!("server never submits {other:?}"),
                }
            }
        }
    }

    fn on_accept(&mut self, r: usize, l: usize, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            self.rings[r].accept_armed[l] = false;
        }
        if res < 0 {
            if res == -libc::ENFILE || res == -libc::EMFILE {
                // The ring's direct-descriptor table is full; re-armed when a slot frees.
                self.stats.incr(Counter::accept_table_full);
            } else if res != -libc::ECANCELED {
                self.stats.incr(Counter::error_accept);
                if !more && !self.stopping {
                    self.arm_accept(r, l);
                }
            }
            return;
        }
        let slot = res as u32;
        let slots = &mut self.rings[r];
        let conn = &mut slots.conns[slot as usize];
        assert_eq!(
            conn.flags, 0,
            "kernel allocated direct descriptor {slot} that we still hold"
        );
        conn.generation = conn.generation.wrapping_add(1);
        conn.flags = OPEN;
        slots.open += 1;
        self.stats.incr(Counter::connections_accepted);
        if self.stopping {
            self.begin_teardown(r, slot);
            return;
        }
        if let Some(config) = &self.plan.tls {
            match TlsConn::server(config) {
                Ok(tls) => self.rings[r].tls[slot as usize] = Some(Box::new(tls)),
                Err(_) => {
                    self.stats.incr(Counter::error_tls);
                    self.begin_teardown(r, slot);
                    return;
                }
            }
        }
        self.arm_recv(r, slot);
        if !more && !self.stopping {
            self.arm_accept(r, l);
        }
    }

    fn on_recv(&mut self, r: usize, slot: u32, res: i32, flags: u32, aux: u8) {
        if aux == RECV_SINGLE {
            self.on_recv_single(r, slot, res);
            return;
        }
        let more = cqueue::more(flags);
        if !more {
            self.rings[r].conns[slot as usize].flags &= !RECV_ARMED;
        }
        if res <= 0 {
            match res {
                0 => {}
                e if e == -libc::ENOBUFS => {
                    // The ring's buffers are all in use. Re-arming the multishot receive would
                    // race the connections that still hold one for the next recycled buffer,
                    // and lose to them for as long as they stay busy (seen as requests
                    // unanswered for a whole closed-loop run): read this connection once
                    // into a buffer of its own instead, then go back to multishot.
                    self.stats.incr(Counter::recv_buffers_exhausted);
                    if !more && self.rings[r].conns[slot as usize].flags & WANT_CLOSE == 0 {
                        self.starve(r, slot);
                    }
                    return;
                }
                e if e == -libc::ECONNRESET || e == -libc::EPIPE => {
                    self.stats.incr(Counter::peer_resets)
                }
                e if e == -libc::ECANCELED => {}
                _ => self.stats.incr(Counter::error_recv),
            }
            // EOF or a dead socket: nothing more will be read; finish sending, then close.
            self.rings[r].conns[slot as usize].flags |= WANT_CLOSE;
            self.flush(r, slot);
            return;
        }
        let bid = cqueue::buffer_select(flags).expect("multishot recv completion without a buffer");
        let len = res as usize;
        self.stats.add(Counter::bytes_received, len as u64);
        let conn_flags = self.rings[r].conns[slot as usize].flags;
        if !self.rings[r].tls.is_empty() {
            // TLS: decrypt out of the ring's buffer (recycled at once); the plaintext goes
            // the spill way (a TLS request is parsed after one copy).
            let RingSlot { ring, tls, .. } = &mut self.rings[r];
            let data = ring.bufs.get_mut(bid, len);
            let result = match tls[slot as usize].as_mut() {
                Some(tls) => {
                    self.tls_plain.clear();
                    Some(tls.receive(data, &mut self.tls_plain))
                }
                None => None,
            };
            ring.bufs.recycle(bid);
            if let Some(result) = result {
                self.on_tls_received(r, slot, result);
            }
        } else if conn_flags & (WANT_CLOSE | STREAMING) != 0 {
            // Closing, or a GET stream (clients send nothing on it): the bytes are dropped.
        } else {
            let conn = self.rings[r].conns[slot as usize];
            if conn.spill == NONE && conn_flags & PAUSED == 0 {
                // Fast path: parse straight out of the kernel's buffer.
                let RingSlot { ring, conns, .. } = &mut self.rings[r];
                let data = ring.bufs.get(bid, len);
                let conn = &mut conns[slot as usize];
                let (consumed, _) = process(
                    data,
                    slot,
                    conn,
                    &mut self.outs,
                    &mut self.handler,
                    &mut self.body_scratch,
                    &self.limits,
                    (self.now_ns / 1_000_000_000) as u32,
                    &mut self.timers,
                    &mut self.service,
                    self.now_ns,
                    r as u8,
                    self.stats,
                );
                if consumed < len && conn.flags & WANT_CLOSE == 0 {
                    let spill = self.spills.take();
                    self.spills.bufs[spill as usize].extend_from_slice(&data[consumed..]);
                    conn.spill = spill;
                }
            } else {
                let spill = if conn.spill == NONE {
                    self.spills.take()
                } else {
                    conn.spill
                };
                self.rings[r].conns[slot as usize].spill = spill;
                let data = self.rings[r].ring.bufs.get(bid, len);
                self.spills.bufs[spill as usize].extend_from_slice(data);
                self.process_spill_bounded(r, slot);
            }
            self.rings[r].ring.bufs.recycle(bid);
        }
        self.flush(r, slot);
        let conn = self.rings[r].conns[slot as usize];
        if !more && conn.flags & (WANT_CLOSE | RECV_ARMED) == 0 {
            self.arm_recv(r, slot);
        }
    }

    /// What the TLS layer made of received records (plaintext in `tls_plain`): requests into
    /// the connection's spill and parsed; a TLS error or close_notify ends the connection
    /// (after the alert or our close_notify is sent).
    fn on_tls_received(&mut self, r: usize, slot: u32, result: Result<Received, TlsError>) {
        let received = match result {
            Ok(received) => received,
            Err(_) => {
                self.stats.incr(Counter::error_tls);
                self.rings[r].conns[slot as usize].flags |= WANT_CLOSE;
                return;
            }
        };
        if received.handshake_done {
            self.stats.incr(Counter::tls_handshakes);
            if self.rings[r].tls[slot as usize]
                .as_ref()
                .is_some_and(|t| t.resumed())
            {
                self.stats.incr(Counter::tls_handshakes_resumed);
            }
        }
        let flags = self.rings[r].conns[slot as usize].flags;
        if !self.tls_plain.is_empty() && flags & (WANT_CLOSE | STREAMING) == 0 {
            let spill = match self.rings[r].conns[slot as usize].spill {
                NONE => self.spills.take(),
                spill => spill,
            };
            self.rings[r].conns[slot as usize].spill = spill;
            self.spills.bufs[spill as usize].extend_from_slice(&self.tls_plain);
            self.process_spill_bounded(r, slot);
        }
        if received.peer_closed {
            if let Some(tls) = self.rings[r].tls[slot as usize].as_mut() {
                tls.close();
            }
            self.rings[r].conns[slot as usize].flags |= WANT_CLOSE;
        }
    }

    /// TLS: turns the plaintext queued for a connection (and any records rustls has due:
    /// handshake messages, alerts, close_notify) into one buffer of records to send.
    fn seal(&mut self, r: usize, slot: u32) {
        let RingSlot { conns, tls, .. } = &mut self.rings[r];
        let Some(tls) = tls.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        let conn = &mut conns[slot as usize];
        let plain = conn.out_pending;
        if plain == NONE && !tls.wants_write() {
            return;
        }
        let sealed = self.outs.take();
        if plain == NONE {
            tls.take_output(&mut self.outs.bufs[sealed as usize]);
        } else {
            let (plaintext, records) =
                two_bufs(&mut self.outs.bufs, plain as usize, sealed as usize);
            if tls.encrypt(plaintext, records).is_err() {
                // A closed TLS layer or a key that cannot be replaced at its limit: the
                // response cannot go out; counted, and the connection closes.
                self.stats.incr(Counter::error_tls);
                conn.flags |= WANT_CLOSE;
            }
            self.outs.give(plain);
        }
        if self.outs.bufs[sealed as usize].is_empty() {
            self.outs.give(sealed);
            conn.out_pending = NONE;
        } else {
            conn.out_pending = sealed;
        }
    }

    /// Parses the spill just appended to, unless it grew past twice the largest request: a
    /// client pipelining far ahead of a paused (sleeping) or unread connection gets its
    /// buffering bounded and is let go.
    fn process_spill_bounded(&mut self, r: usize, slot: u32) {
        let spill = self.rings[r].conns[slot as usize].spill;
        if self.spills.bufs[spill as usize].len() > self.limits.request_bytes_max() * 2 {
            self.stats.incr(Counter::error_pipeline_overflow);
            let conn = &mut self.rings[r].conns[slot as usize];
            conn.flags |= WANT_CLOSE;
            conn.flags &= !PAUSED;
        } else {
            self.process_spill(r, slot);
        }
    }

    /// Parses what a connection has spilled; keeps the unparsed tail.
    fn process_spill(&mut self, r: usize, slot: u32) {
        let spill = self.rings[r].conns[slot as usize].spill;
        if spill == NONE {
            return;
        }
        let mut buf = std::mem::take(&mut self.spills.bufs[spill as usize]);
        let (consumed, _) = process(
            &buf,
            slot,
            &mut self.rings[r].conns[slot as usize],
            &mut self.outs,
            &mut self.handler,
            &mut self.body_scratch,
            &self.limits,
            (self.now_ns / 1_000_000_000) as u32,
            &mut self.timers,
            &mut self.service,
            self.now_ns,
            r as u8,
            self.stats,
        );
        buf.drain(..consumed);
        let empty = buf.is_empty();
        self.spills.bufs[spill as usize] = buf;
        if empty || self.rings[r].conns[slot as usize].flags & WANT_CLOSE != 0 {
            self.spills.give(spill);
            self.rings[r].conns[slot as usize].spill = NONE;
        }
    }

    /// Starts sending queued output when nothing is in flight; begins the close when asked and
    /// everything is sent.
    fn flush(&mut self, r: usize, slot: u32) {
        if self.rings[r].conns[slot as usize].flags & (SEND_IN_FLIGHT | PAUSED) != 0 {
            return;
        }
        if !self.rings[r].tls.is_empty() {
            self.seal(r, slot);
        }
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.out_pending != NONE {
            let out = conn.out_pending;
            conn.out_pending = NONE;
            conn.out_inflight = out;
            self.submit_send(r, slot, out);
            return;
        }
        if conn.flags & WANT_CLOSE != 0 {
            self.begin_teardown(r, slot);
        }
    }

    fn submit_send(&mut self, r: usize, slot: u32, out: u32) {
        let sent = self.outs.sent[out as usize];
        let buf = &self.outs.bufs[out as usize];
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.flags |= SEND_IN_FLIGHT;
        let entry = opcode::Send::new(
            types::Fixed(slot),
            buf[sent..].as_ptr(),
            (buf.len() - sent) as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(UserData::new(slot, conn.generation, Op::Send).encode());
        // The pool buffer `out` is the connection's `out_inflight` and is not touched or
        // returned to the pool until this Send completes (on_send).
        self.push(r, entry);
    }

    fn on_send(&mut self, r: usize, slot: u32, res: i32, aux: u8) {
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.flags &= !SEND_IN_FLIGHT;
        if aux >= notify::AUX_BASE {
            let chunk = (aux - notify::AUX_BASE) as usize;
            let fanout = self.fanout.as_mut().expect("a fan-out sent it");
            let len = fanout.chunk(chunk).len();
            fanout.release(chunk);
            let conn = &mut self.rings[r].conns[slot as usize];
            if res < len as i32 {
                // Failed (MSG_WAITALL leaves no partial success): the stream ends.
                self.stats
                    .incr(if res == -libc::ECONNRESET || res == -libc::EPIPE {
                        Counter::peer_resets
                    } else {
                        Counter::error_send
                    });
                conn.flags |= WANT_CLOSE;
            } else {
                self.stats.add(Counter::bytes_sent, res as u64);
            }
            self.flush(r, slot);
            return;
        }
        if aux == SEND_STATIC {
            if res < KEEPALIVE_CHUNK.len() as i32 {
                // A stream whose client stopped reading (or went away): give up on it.
                self.stats.incr(Counter::error_send);
                conn.flags |= WANT_CLOSE;
            } else {
                self.stats.incr(Counter::sse_keepalives_sent);
                self.stats.add(Counter::bytes_sent, res as u64);
            }
            self.flush(r, slot);
            return;
        }
        let out = conn.out_inflight;
        if res < 0 {
            if res == -libc::ECONNRESET || res == -libc::EPIPE {
                self.stats.incr(Counter::peer_resets);
            } else {
                self.stats.incr(Counter::error_send);
            }
            conn.out_inflight = NONE;
            conn.flags |= WANT_CLOSE;
            self.outs.give(out);
            if conn.out_pending != NONE {
                let pending = conn.out_pending;
                conn.out_pending = NONE;
                self.outs.give(pending);
            }
            self.flush(r, slot);
            return;
        }
        self.stats.add(Counter::bytes_sent, res as u64);
        self.outs.sent[out as usize] += res as usize;
        if self.outs.sent[out as usize] < self.outs.bufs[out as usize].len() {
            // Partial send (full socket buffer): send the rest.
            self.submit_send(r, slot, out);
            return;
        }
        conn.out_inflight = NONE;
        self.outs.give(out);
        self.flush(r, slot);
        // A pipelined request may have been waiting for room in the output queue.
        if self.rings[r].conns[slot as usize].spill != NONE {
            self.process_spill(r, slot);
            self.flush(r, slot);
        }
    }

    /// Nothing more will be sent: shut the socket down (ends the multishot recv), then close
    /// once every op for the slot has completed.
    fn begin_teardown(&mut self, r: usize, slot: u32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.flags |= WANT_CLOSE;
        if conn.flags & RECV_ARMED != 0 && conn.flags & SHUTDOWN_IN_FLIGHT == 0 {
            conn.flags |= SHUTDOWN_IN_FLIGHT;
            let entry = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_RDWR)
                .build()
                .user_data(UserData::new(slot, conn.generation, Op::Shutdown).encode());
            // The fixed slot stays open until Close, which waits for this completion.
            self.push(r, entry);
        }
        self.maybe_close(r, slot);
    }

    fn maybe_close(&mut self, r: usize, slot: u32) {
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.flags & (RECV_ARMED | SEND_IN_FLIGHT | SHUTDOWN_IN_FLIGHT | CLOSE_SUBMITTED) != 0
            || conn.flags & WANT_CLOSE == 0
        {
            return;
        }
        conn.flags |= CLOSE_SUBMITTED;
        let entry = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(UserData::new(slot, conn.generation, Op::Close).encode());
        // Nothing else is in flight for the slot (checked above).
        self.push(r, entry);
    }

    fn on_close(&mut self, r: usize, slot: u32) {
        let conn = self.rings[r].conns[slot as usize];
        assert_eq!(
            conn.rx, NONE,
            "closed a slot with a receive buffer in flight"
        );
        for buf in [conn.out_pending, conn.out_inflight] {
            if buf != NONE {
                self.outs.give(buf);
            }
        }
        if conn.spill != NONE {
            self.spills.give(conn.spill);
        }
        self.rings[r].conns[slot as usize] = Conn {
            generation: conn.generation,
            ..Conn::FREE
        };
        if let Some(tls) = self.rings[r].tls.get_mut(slot as usize) {
            *tls = None;
        }
        self.rings[r].open -= 1;
        self.stats.incr(Counter::connections_closed);
        if let Some((hub, shard)) = self.handler.legacy
            && let Some(session) = hub.close(shard as u16, r as u8, slot)
            && let Some(session) = session
        {
            // The legacy transport's session ends with its stream.
            self.handler.sessions.remove(&session);
        }
        if !self.stopping {
            for l in 0..self.rings[r].listeners.len() {
                if !self.rings[r].accept_armed[l] {
                    self.arm_accept(r, l);
                }
            }
        }
    }

    fn fire_timers(&mut self) {
        while let Some(&Reverse((deadline, r, slot, generation, kind))) = self.timers.peek() {
            if deadline > self.now_ns {
                break;
            }
            self.timers.pop();
            if let TimerKind::AwaitClient { ticket, close } = kind {
                self.poll_awaiting(r as usize, slot, generation, ticket, close);
                continue;
            }
            if kind == TimerKind::ServiceDone {
                // The slot is free whether or not the connection is still there.
                let rings = &self.rings;
                let next = self.service.finish(self.now_ns, |job| {
                    let conn = &rings[job.ring as usize].conns[job.slot as usize];
                    conn.generation == job.generation && conn.flags & PAUSED != 0
                });
                if let Some(started) = next {
                    self.timers.push(Reverse(service_timer(started)));
                }
            }
            let r = r as usize;
            let conn = &mut self.rings[r].conns[slot as usize];
            if conn.generation != generation || conn.flags & PAUSED == 0 {
                continue; // the connection closed while its tool slept
            }
            conn.flags &= !PAUSED;
            self.flush(r, slot);
            self.process_spill(r, slot);
            self.flush(r, slot);
        }
    }

    /// A call waiting for its client: its result and the end of its stream once the answer
    /// came (or the wait timed out), then the connection takes requests again.
    fn poll_awaiting(&mut self, r: usize, slot: u32, generation: u16, ticket: u64, close: bool) {
        let conn = self.rings[r].conns[slot as usize];
        if conn.generation != generation || conn.flags & OPEN == 0 || conn.flags & WANT_CLOSE != 0 {
            // The connection went away: nobody reads the answer.
            self.handler.config.pending.abandon(ticket);
            return;
        }
        let now_s = self.now_s();
        let conn = &mut self.rings[r].conns[slot as usize];
        if conn.out_pending == NONE {
            conn.out_pending = self.outs.take();
        }
        let out = &mut self.outs.bufs[conn.out_pending as usize];
        if !self.handler.finish_awaited(ticket, now_s, out) {
            self.timers.push(Reverse((
                self.now_ns + AWAIT_POLL_NS,
                r as u8,
                slot,
                generation,
                TimerKind::AwaitClient { ticket, close },
            )));
            return;
        }
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.flags &= !STREAMING;
        if close {
            conn.flags |= WANT_CLOSE;
        }
        self.flush(r, slot);
        self.process_spill(r, slot);
        self.flush(r, slot);
    }

    fn send_keepalives(&mut self) {
        for r in 0..self.rings.len() {
            let tls = !self.rings[r].tls.is_empty();
            for slot in 0..self.rings[r].conns.len() {
                let conn = &mut self.rings[r].conns[slot];
                if conn.flags & STREAMING == 0 || conn.flags & (SEND_IN_FLIGHT | WANT_CLOSE) != 0 {
                    continue;
                }
                if tls {
                    // TLS: the comment is encrypted like any output (no static send).
                    if conn.out_pending == NONE {
                        conn.out_pending = self.outs.take();
                    }
                    let pending = conn.out_pending as usize;
                    self.outs.bufs[pending].extend_from_slice(KEEPALIVE_CHUNK);
                    self.stats.incr(Counter::sse_keepalives_sent);
                    self.flush(r, slot as u32);
                    continue;
                }
                conn.flags |= SEND_IN_FLIGHT;
                let entry = opcode::Send::new(
                    types::Fixed(slot as u32),
                    KEEPALIVE_CHUNK.as_ptr(),
                    KEEPALIVE_CHUNK.len() as u32,
                )
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(
                    UserData::new(slot as u32, conn.generation, Op::Send)
                        .with_aux(SEND_STATIC)
                        .encode(),
                );
                // KEEPALIVE_CHUNK is 'static.
                self.push(r, entry);
            }
        }
    }

    /// One loop turn of `--notify-every`: starts a round when due, then sends its event to at
    /// most `STREAMS_PER_TURN` more listen streams.
    fn fan_out(&mut self) {
        let Some(fanout) = self.fanout.as_mut() else {
            return;
        };
        if self.stopping || fanout.wait_ns(self.now_ns) > 0 {
            return;
        }
        // Read only when a round is due or being walked: no wall-clock read per loop turn.
        let sent_at_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        match fanout.begin_if_due(self.now_ns, sent_at_us) {
            Begin::Idle | Begin::Started => {}
            Begin::Skipped => self.stats.incr(Counter::notify_rounds_skipped),
        }
        let Some(mut cursor) = fanout.current else {
            return;
        };
        let mut budget = STREAMS_PER_TURN;
        let mut done = false;
        while budget > 0 {
            let Some(ring) = self.rings.get(cursor.ring) else {
                done = true;
                break;
            };
            if cursor.slot >= ring.conns.len() {
                cursor.ring += 1;
                cursor.slot = 0;
                continue;
            }
            let fanout = self.fanout.as_ref().expect("checked above");
            if !fanout.under_limit(cursor.reached) {
                done = true;
                break;
            }
            let (r, slot) = (cursor.ring, cursor.slot as u32);
            cursor.slot += 1;
            let conn = &self.rings[r].conns[slot as usize];
            if !conn.listens || conn.flags & (OPEN | WANT_CLOSE) != OPEN {
                continue;
            }
            budget -= 1;
            cursor.reached += 1;
            self.send_event(r, slot, cursor.chunk);
        }
        let fanout = self.fanout.as_mut().expect("checked above");
        if done {
            fanout.current = None;
            self.stats.incr(Counter::notify_rounds);
        } else {
            fanout.current = Some(cursor);
        }
    }

    /// The round's event to one listen stream: from the shared chunk when nothing else is
    /// being sent on it (plaintext), else queued behind its output (or, when that is already
    /// full, dropped and counted).
    fn send_event(&mut self, r: usize, slot: u32, chunk: usize) {
        let tls = !self.rings[r].tls.is_empty();
        let fanout = self.fanout.as_mut().expect("fan-out running");
        let conn = &mut self.rings[r].conns[slot as usize];
        if tls || conn.flags & SEND_IN_FLIGHT != 0 {
            if conn.out_pending == NONE {
                conn.out_pending = self.outs.take();
            }
            let pending = &mut self.outs.bufs[conn.out_pending as usize];
            if pending.len() > notify::PENDING_BYTES_MAX {
                // A stream this far behind has stopped reading: it is closed (its Shutdown
                // also fails a chunk Send stuck on a zero window, releasing that chunk).
                self.stats.incr(Counter::notifications_dropped);
                self.begin_teardown(r, slot);
                return;
            }
            pending.extend_from_slice(fanout.chunk(chunk));
            self.stats.incr(Counter::notifications_sent);
            self.flush(r, slot);
            return;
        }
        conn.flags |= SEND_IN_FLIGHT;
        let bytes = fanout.chunk(chunk);
        // MSG_WAITALL: io_uring retries a partial send itself, so a stream merely behind gets
        // the whole event (the chunk stays held until then) instead of a short count.
        let entry = opcode::Send::new(types::Fixed(slot), bytes.as_ptr(), bytes.len() as u32)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build()
            .user_data(
                UserData::new(slot, conn.generation, Op::Send)
                    .with_aux(notify::AUX_BASE + chunk as u8)
                    .encode(),
            );
        fanout.hold(chunk);
        self.stats.incr(Counter::notifications_sent);
        // The chunk's bytes stay unchanged (and its Vec unmoved) until this Send completes:
        // `hold` keeps `begin_if_due` from rewriting the slot until on_send releases it.
        self.push(r, entry);
    }

    /// `--legacy-sse`: a multishot poll of this shard's inbox eventfd on the leader ring, so
    /// an event another shard routes here wakes the loop at once.
    fn arm_inbox_poll(&mut self) {
        let Some((hub, shard)) = self.handler.legacy else {
            return;
        };
        let entry = opcode::PollAdd::new(types::Fd(hub.wake_fd(shard)), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(UserData::new(0, 0, Op::Inbox).encode());
        // The eventfd is the hub's, which outlives every shard (server::run owns it).
        self.push(0, entry);
    }

    /// `--legacy-sse`: sends the events routed to this shard's streams (from POSTs on any
    /// shard) on their connections, in order.
    fn drain_inbox(&mut self) {
        let Some((hub, shard)) = self.handler.legacy else {
            return;
        };
        let mut deliveries = std::mem::take(&mut self.legacy_deliveries);
        hub.take(shard, &mut deliveries);
        for delivery in deliveries.drain(..) {
            let (r, slot) = (delivery.ring as usize, delivery.slot);
            let conn = &mut self.rings[r].conns[slot as usize];
            if conn.generation != delivery.generation
                || !conn.listens
                || conn.flags & WANT_CLOSE != 0
            {
                self.stats.incr(Counter::legacy_messages_dropped);
                continue;
            }
            if conn.out_pending == NONE {
                conn.out_pending = self.outs.take();
            }
            self.outs.bufs[conn.out_pending as usize].extend_from_slice(&delivery.chunk);
            self.flush(r, slot);
        }
        self.legacy_deliveries = deliveries;
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        for r in 0..self.rings.len() {
            for l in 0..self.rings[r].listeners.len() {
                if self.rings[r].accept_armed[l] {
                    let entry = opcode::AsyncCancel::new(
                        UserData::new(0, 0, Op::Accept).with_aux(l as u8).encode(),
                    )
                    .build()
                    .user_data(UserData::new(0, 0, Op::Cancel).encode());
                    self.push(r, entry);
                }
            }
            for slot in 0..self.rings[r].conns.len() as u32 {
                if self.rings[r].conns[slot as usize].flags & OPEN != 0 {
                    self.rings[r].conns[slot as usize].flags &= !PAUSED;
                    self.rings[r].conns[slot as usize].flags |= WANT_CLOSE;
                    self.flush(r, slot);
                }
            }
        }
    }
}

/// Parses and answers every complete request at the start of `data` for one connection.
/// Returns the bytes consumed; stops early when a response is delayed, a stream opens, or the
/// connection must close.
#[allow(clippy::too_many_arguments)]
fn process(
    data: &[u8],
    slot: u32,
    conn: &mut Conn,
    outs: &mut Pool,
    handler: &mut Handler<'_>,
    body_scratch: &mut Vec<u8>,
    limits: &RequestLimits,
    now_s: u32,
    timers: &mut BinaryHeap<Reverse<Timer>>,
    service: &mut ServiceQueue,
    now_ns: u64,
    ring_index: u8,
    stats: &ShardStats,
) -> (usize, ()) {
    let mut pos = 0;
    while pos < data.len() && conn.flags & (PAUSED | WANT_CLOSE | STREAMING) == 0 {
        // Responses for pipelined requests queue behind one in flight; bound that queue to one
        // pending buffer so a client that never reads cannot grow our memory.
        if conn.flags & SEND_IN_FLIGHT != 0
            && conn.out_pending != NONE
            && outs.bufs[conn.out_pending as usize].len() > 64 * 1024
        {
            break;
        }
        match parse_request(&data[pos..], limits) {
            Ok(Parse::Incomplete) => break,
            Ok(Parse::Complete(request)) => {
                if conn.out_pending == NONE {
                    conn.out_pending = outs.take();
                }
                let out = &mut outs.bufs[conn.out_pending as usize];
                let body: &[u8] = match request.body {
                    Body::Empty => &[],
                    Body::Plain(bytes) => bytes,
                    Body::Chunked { raw } => {
                        body_scratch.clear();
                        if let Err(e) = decode_chunked_body(raw, body_scratch) {
                            stats.incr(write_protocol_error(e, out));
                            conn.flags |= WANT_CLOSE;
                            pos += request.total_len;
                            break;
                        }
                        body_scratch
                    }
                };
                pos += request.total_len;
                match handler.handle(&request.head, body, now_s, out) {
                    Outcome::Respond { close } => {
                        if close {
                            conn.flags |= WANT_CLOSE;
                        }
                    }
                    Outcome::Delay { ms, close } => {
                        if close {
                            conn.flags |= WANT_CLOSE;
                        }
                        conn.flags |= PAUSED;
                        timers.push(Reverse((
                            now_ns + ms * 1_000_000,
                            ring_index,
                            slot,
                            conn.generation,
                            TimerKind::Resume,
                        )));
                    }
                    Outcome::Serve { extra_ms, close } => {
                        if close {
                            conn.flags |= WANT_CLOSE;
                        }
                        conn.flags |= PAUSED;
                        let job = Job {
                            ring: ring_index,
                            slot,
                            generation: conn.generation,
                            extra_ns: extra_ms * 1_000_000,
                        };
                        match service.admit(job, now_ns) {
                            Some(started) => timers.push(Reverse(service_timer(started))),
                            None => stats.incr(Counter::service_queued),
                        }
                    }
                    Outcome::OpenStream => {
                        conn.flags |= STREAMING;
                        conn.listens = true;
                    }
                    Outcome::LegacyOpen => {
                        if let Some((hub, shard)) = handler.legacy {
                            let token = hub.open(super::legacy::Place {
                                shard: shard as u16,
                                ring: ring_index,
                                slot,
                                generation: conn.generation,
                            });
                            super::legacy::write_stream_open(out, token);
                        }
                        // A stream like a GET one: `--notify-every` reaches it too.
                        conn.flags |= STREAMING;
                        conn.listens = true;
                    }
                    Outcome::AwaitClient { ticket, close } => {
                        // Its stream is open (flushed as output); it parses nothing more.
                        conn.flags |= STREAMING;
                        timers.push(Reverse((
                            now_ns + AWAIT_POLL_NS,
                            ring_index,
                            slot,
                            conn.generation,
                            TimerKind::AwaitClient { ticket, close },
                        )));
                    }
                }
            }
            Err(e) => {
                if conn.out_pending == NONE {
                    conn.out_pending = outs.take();
                }
                stats.incr(write_protocol_error(
                    e,
                    &mut outs.bufs[conn.out_pending as usize],
                ));
                conn.flags |= WANT_CLOSE;
                pos = data.len();
            }
        }
    }
    (pos, ())
}

/// The timer that ends a started service and frees its slot.
fn service_timer(started: Started) -> Timer {
    let job = started.job;
    (
        started.done_ns,
        job.ring,
        job.slot,
        job.generation,
        TimerKind::ServiceDone,
    )
}

/// Two distinct elements of a pool, one shared and one exclusive.
fn two_bufs(bufs: &mut [Vec<u8>], shared: usize, exclusive: usize) -> (&[u8], &mut Vec<u8>) {
    assert_ne!(shared, exclusive);
    if shared < exclusive {
        let (low, high) = bufs.split_at_mut(exclusive);
        (&low[shared], &mut high[0])
    } else {
        let (low, high) = bufs.split_at_mut(shared);
        (&high[0], &mut low[exclusive])
    }
}
