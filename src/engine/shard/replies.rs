//! The shard's side of server-to-client requests: each ring keeps a queue of the client's
//! answers and one reply connection (slot `RingSlot::reply_slot`, after the sessions and
//! their streams, so it shares the ring's direct-descriptor table and the connect chain, TLS
//! and close plumbing of `shard.rs`) that POSTs them one at a time. Part of `engine/`:
//! `reply_conn.rs` decides, `client_reply.rs` writes the answers, this file carries the
//! actions out and measures them.
//!
//! Requests come from two places: events on a session's stream (`shard/streams.rs`), and
//! events on a POST's response stream, which `response.rs` reports while the response is
//! still incomplete (the server holds the call's answer until it has the client's). A
//! response is read again from its start on each read, so `asked_seen` remembers how many of
//! a connection's requests were already answered; it holds an entry only while a response
//! that asked is incomplete.

use super::super::conn::{Conn, ConnFlags as F, Fed, NONE, State};
use super::super::metrics::Counter;
use super::super::reply_conn::{self, ReplyAction, ReplyCtx};
use super::super::response::SessionId;
use super::super::schedule::backoff_ns;
use super::{Phase, RingSlot, Shard};

/// Answers a ring keeps waiting at most; past it a request is counted and not answered
/// (`client_replies_lost`): a server asking faster than it takes the answers cannot grow
/// the client without bound.
pub(super) const QUEUED_PER_RING_MAX: usize = 4096;

/// An answer waiting for the ring's reply connection.
pub(super) struct QueuedReply {
    /// The session it answers for: its `Mcp-Session-Id` (or legacy endpoint), copied when
    /// the request came (the session may move on before it is sent).
    session: SessionId,
    target: u16,
    /// The JSON-RPC response.
    body: Vec<u8>,
    /// When the request was received (the answer's latency runs from it).
    asked_ns: u64,
    /// Sends lost with their connection so far (a second loss gives it up).
    tries: u8,
}

/// Sends of one answer before it is given up (a connection the server closed while the
/// answer was on its way loses it once, as any keep-alive client may).
const TRIES_MAX: u8 = 2;

impl<'a> Shard<'a> {
    /// Whether the slot is its ring's reply connection.
    pub(super) fn is_reply(&self, r: usize, slot: u32) -> bool {
        slot == self.rings[r].reply_slot
    }

    /// The server sent request `id` of `method` on slot `slot`'s connection (a stream's, or
    /// a load connection's response): queue the client's answer.
    pub(super) fn answer_server_request(&mut self, r: usize, slot: u32, id: &[u8], method: &str) {
        self.metrics.record_server_request(method);
        let stream = self.is_stream(r, slot);
        let owner = if stream {
            self.rings[r].conns[slot as usize].next_idle
        } else {
            slot
        };
        // A stream carries a copy of the session it was opened for; under `--transport sse`
        // the owner's session field holds the endpoint the answers are POSTed to.
        let session = if stream && !self.plan.legacy_sse {
            self.rings[r].conns[slot as usize].session
        } else {
            self.rings[r].conns[owner as usize].session
        };
        let target = self.session_target(r, owner) as u16;
        if self.rings[r].replies.len() >= QUEUED_PER_RING_MAX {
            self.metrics.incr(Counter::client_replies_lost);
            return;
        }
        let mut body = Vec::with_capacity(64 + id.len());
        self.plan.client_replies.write(&mut body, id, method);
        self.rings[r].replies.push_back(QueuedReply {
            session,
            target,
            body,
            asked_ns: self.now_ns,
            tries: 0,
        });
        let slot = self.rings[r].reply_slot;
        if (self.rings[r].conns.len() as u32) > slot {
            let ctx = self.reply_ctx(r);
            let mut actions = std::mem::take(&mut self.reply_actions);
            reply_conn::on_queued(&mut self.rings[r].conns[slot as usize], &ctx, &mut actions);
            self.execute_reply(r, slot, &mut actions);
            self.reply_actions = actions;
        }
    }

    /// The requests a load connection's read found on its response stream: those not
    /// answered by an earlier read of the same response are queued.
    pub(super) fn answer_asked(&mut self, r: usize, slot: u32, fed: &Fed) {
        let key = self.global_index(r, slot);
        let asked = self.scratch.asked().len();
        let seen = self.asked_seen.get(&key).copied().unwrap_or(0) as usize;
        if asked > seen {
            let new = self.scratch.asked()[seen..].to_vec();
            for request in new {
                self.metrics.incr(Counter::server_requests_on_responses);
                self.answer_server_request(r, slot, &request.id, &request.method);
            }
        }
        if matches!(fed, Fed::Incomplete) && asked > 0 {
            self.asked_seen.insert(key, asked.max(seen) as u16);
        } else {
            self.asked_seen.remove(&key);
        }
    }

    /// A load connection closed: a response it was reading is over.
    pub(super) fn forget_asked(&mut self, r: usize, slot: u32) {
        if !self.asked_seen.is_empty() {
            let key = self.global_index(r, slot);
            self.asked_seen.remove(&key);
        }
    }

    fn reply_ctx(&self, r: usize) -> ReplyCtx {
        ReplyCtx {
            now_ns: self.now_ns,
            tls: self.tls_config.is_some(),
            multishot_recv: self.plan.recv_multishot,
            queued: !self.rings[r].replies.is_empty(),
            open: self.phase != Phase::Closing,
        }
    }

    /// Opens the reply connection of every ring whose answers wait (each loop turn).
    pub(super) fn start_replies(&mut self) -> std::io::Result<()> {
        if self.phase == Phase::Closing {
            return Ok(());
        }
        for r in 0..self.rings.len() {
            let ring = &mut self.rings[r];
            if ring.replies.is_empty() || self.now_ns < ring.reply_due_ns {
                continue;
            }
            let slot = ring.reply_slot;
            while ring.conns.len() as u32 <= slot {
                ring.conns.push(Conn::FREE);
            }
            if ring.conns[slot as usize].state != State::Free
                && ring.conns[slot as usize].state != State::Done
            {
                continue;
            }
            if !self.chain_room(r)? {
                continue;
            }
            let ring = &mut self.rings[r];
            ring.reply_target = ring.replies.front().map_or(0, |q| q.target);
            self.start_connect(r, slot);
        }
        Ok(())
    }

    /// A plumbing event of the reply connection, through its machine.
    pub(super) fn run_reply_event(&mut self, r: usize, slot: u32, event: super::Event) {
        let ctx = self.reply_ctx(r);
        let mut actions = std::mem::take(&mut self.reply_actions);
        reply_conn::on_event(
            &mut self.rings[r].conns[slot as usize],
            event,
            &ctx,
            &mut actions,
        );
        self.execute_reply(r, slot, &mut actions);
        self.reply_actions = actions;
    }

    /// What the response reader made of the reply connection's bytes.
    pub(super) fn on_reply_fed(&mut self, r: usize, slot: u32, fed: Fed) {
        let mut actions = std::mem::take(&mut self.reply_actions);
        match fed {
            Fed::Incomplete => {}
            Fed::Response(summary) => {
                let more = self.rings[r].replies.len() > 1;
                let ctx = self.reply_ctx(r);
                reply_conn::on_answer(
                    &mut self.rings[r].conns[slot as usize],
                    &summary,
                    more,
                    &ctx,
                    &mut actions,
                );
            }
            _ => reply_conn::on_bad_answer(&mut self.rings[r].conns[slot as usize], &mut actions),
        }
        self.execute_reply(r, slot, &mut actions);
        self.reply_actions = actions;
    }

    fn execute_reply(&mut self, r: usize, slot: u32, actions: &mut Vec<ReplyAction>) {
        for action in actions.drain(..) {
            match action {
                ReplyAction::Count(counter) => self.metrics.incr(counter),
                ReplyAction::Errno { op, errno } => self.metrics.record_errno(op, errno),
                ReplyAction::ArmRecv => self.arm_recv(r, slot),
                ReplyAction::StartTls => self.start_tls(r, slot),
                ReplyAction::EndHandshake => self.end_handshake(r, slot),
                ReplyAction::SendNext => self.send_reply(r, slot),
                ReplyAction::Answered { status } => {
                    if let Some(answered) = self.rings[r].replies.pop_front() {
                        let latency_us =
                            (self.now_ns.saturating_sub(answered.asked_ns) / 1000).max(1);
                        self.metrics
                            .client_reply_latency
                            .saturating_record(latency_us);
                    }
                    self.metrics.incr(if (200..300).contains(&status) {
                        Counter::client_replies_accepted
                    } else {
                        Counter::client_replies_refused
                    });
                }
                ReplyAction::Lost => {
                    let ring = &mut self.rings[r];
                    if let Some(front) = ring.replies.front_mut() {
                        front.tries += 1;
                        if front.tries >= TRIES_MAX {
                            ring.replies.pop_front();
                            self.metrics.incr(Counter::client_replies_lost);
                        }
                    }
                }
                ReplyAction::Close => self.begin_close(r, slot, false),
                ReplyAction::Reconnect { backoff } => {
                    let delay_ns = backoff.map_or(0, |attempt| backoff_ns(attempt, &mut self.rng));
                    self.rings[r].reply_due_ns = self.now_ns + delay_ns;
                }
                ReplyAction::GiveUp => self.give_up_replies(r),
            }
        }
    }

    /// Counts every answer of the ring still waiting as lost and forgets them.
    pub(super) fn give_up_replies(&mut self, r: usize) {
        let waiting = self.rings[r].replies.len() as u64;
        self.metrics.add_to(Counter::client_replies_lost, waiting);
        self.rings[r].replies.clear();
    }

    /// POSTs the answer at the head of the ring's queue (the machine set `Replying`).
    fn send_reply(&mut self, r: usize, slot: u32) {
        let RingSlot {
            conns,
            tls,
            replies,
            reply_target,
            ..
        } = &mut self.rings[r];
        let conn = &mut conns[slot as usize];
        let Some(front) = replies.front() else {
            conn.state = State::Ready;
            return;
        };
        if front.target != *reply_target {
            // The answer is for another target than this connection's (several URLs, or a
            // session that failed over): close, and the next connection goes there.
            conn.state = State::Ready;
            self.begin_close(r, slot, false);
            return;
        }
        let buf = self.sends.take();
        conn.send_buf = buf;
        conn.flags |= F::SEND_IN_FLIGHT;
        let template = &self.plan.templates[front.target as usize].reply;
        let out = &mut self.sends.bufs[buf as usize];
        match tls.get_mut(slot as usize).and_then(Option::as_mut) {
            None => template.write(out, front.session.as_bytes(), &front.body),
            Some(tls) => {
                self.tls_request.clear();
                template.write(&mut self.tls_request, front.session.as_bytes(), &front.body);
                if tls.encrypt(&self.tls_request, out).is_err() {
                    conn.flags &= !F::SEND_IN_FLIGHT;
                    conn.send_buf = NONE;
                    self.sends.give(buf);
                    self.connection_broke(r, slot, Counter::error_tls_protocol);
                    return;
                }
            }
        }
        self.metrics.incr(Counter::client_replies_sent);
        self.metrics.add_to(Counter::bytes_sent, out.len() as u64);
        self.submit_send(r, slot, buf);
    }
}
