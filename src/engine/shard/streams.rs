//! The shard's side of `--streams`: each session chosen by `plan::stream_rank` holds its
//! server-to-client stream on a second connection of the same ring (slot `sessions + rank`,
//! so it shares the ring's direct-descriptor table and the connect chain, TLS and close
//! plumbing of `shard.rs`). Part of `engine/`: `stream_conn.rs` decides, `stream.rs` reads the
//! events, this file carries out the actions and measures what arrives.
//!
//! An idle stream costs its 112-byte slot and its reader's state (`StreamReader`, kept per
//! stream for `Last-Event-ID`); a buffer from the spill pool only while an event or the head
//! straddles reads.

use super::super::conn::{Conn, NONE, State};
use super::super::machine::Event;
use super::super::metrics::{Counter, ShardMetrics};
use super::super::plan::{stream_rank, streams_among};
use super::super::stream::{self, Opened, StreamError, StreamItem, StreamReader};
use super::super::stream_conn::{self, RETRY_MAX_MS, StreamAction, StreamCtx};
use super::{Phase, RingSlot, Shard};
use crate::ring::pool::Pool;
use std::cmp::Reverse;

/// What one read of a stream connection's bytes came to.
enum Read {
    /// Nothing to decide (a partial head, or events counted).
    Nothing,
    /// The response head arrived; when the stream opened, the body bytes after it were fed
    /// and may already have ended it.
    Head(Result<Opened, StreamError>, Option<Result<(), StreamError>>),
    /// The open stream ended (in order, or by broken framing).
    End(Result<(), StreamError>),
}

/// The parts of the shard a read needs (borrowed apart from the ring's buffers).
struct ReadCtx<'a> {
    spills: &'a mut Pool,
    /// Event data of a read that ends mid-event moves to a spill buffer; until then here.
    data: &'a mut Vec<u8>,
    metrics: &'a mut ShardMetrics,
    now_unix_us: u64,
    second_notifications: &'a mut u64,
    /// `--transport sse`: the endpoint and the replies go to the session (else a response
    /// on a stream is one nobody asked for there).
    legacy: Option<&'a mut Vec<super::legacy::LegacyEvent>>,
    /// Server-to-client requests on the stream, answered once the read is done.
    asked: &'a mut Vec<crate::engine::response::AskedRequest>,
}

impl<'a> Shard<'a> {
    /// Whether the slot is a stream connection (after the ring's sessions).
    pub(super) fn is_stream(&self, r: usize, slot: u32) -> bool {
        slot >= self.rings[r].sessions && slot < self.rings[r].reply_slot
    }

    /// The owner's session is established (or, sessionless, ready): open its stream if it
    /// holds one and none is open or on its way.
    pub(super) fn queue_stream_of(&mut self, r: usize, owner: u32) {
        let percent = self.plan.stream_percent;
        if percent == 0 || self.streams_unavailable || self.is_stream(r, owner) {
            return;
        }
        let Some(rank) = stream_rank(owner, percent) else {
            return;
        };
        let slot = self.rings[r].sessions + rank;
        let ring = &mut self.rings[r];
        while ring.conns.len() as u32 <= slot {
            ring.conns.push(Conn::FREE);
        }
        if ring.readers.len() as u32 <= rank {
            // Sized once for every stream of the ring: growing by doubling would leave up to
            // half of it unused (and copy it each time).
            let streams = streams_among(ring.sessions, percent) as usize;
            ring.readers
                .reserve_exact(streams.saturating_sub(ring.readers.len()));
            ring.readers
                .resize_with(rank as usize + 1, StreamReader::default);
        }
        let owner_session = ring.conns[owner as usize].session;
        let conn = &mut ring.conns[slot as usize];
        match conn.state {
            State::Free => {}
            // A legacy stream is its session: it has its own rules (`legacy.rs`).
            _ if self.plan.legacy_sse => return,
            State::Done => return,
            State::Streaming if conn.session == owner_session => return,
            State::Streaming => {
                // Held for a session the owner no longer has: reopen with the new one.
                conn.flags |= super::F::RECONNECT;
                self.begin_close(r, slot, false);
                return;
            }
            _ => {
                // Opening (or closing) with the owner's last session: once that ends, reopen
                // with this one. A 404 to it would otherwise park it, and nothing would come
                // to wake it.
                conn.flags |= super::F::RECONNECT;
                return;
            }
        }
        conn.next_idle = owner;
        let generation = conn.generation;
        self.stream_opens
            .push(Reverse((self.now_ns, r as u16, slot, generation)));
    }

    /// Starts the streams due, within the handshake bound (called with the connects).
    pub(super) fn start_streams(&mut self) -> std::io::Result<()> {
        while self.handshakes < super::HANDSHAKES_WITH_STREAMS_MAX
            && let Some(&Reverse((due_ns, r, slot, generation))) = self.stream_opens.peek()
        {
            if due_ns > self.now_ns {
                break;
            }
            let r = r as usize;
            if !self.chain_room(r)? {
                break;
            }
            self.stream_opens.pop();
            let loading = matches!(self.phase, Phase::Ramp | Phase::Load) && !self.deleting;
            let conn = &self.rings[r].conns[slot as usize];
            if !loading
                || self.streams_unavailable
                || conn.generation != generation
                || conn.state != State::Free
            {
                continue;
            }
            let owner = &self.rings[r].conns[conn.next_idle as usize];
            // A legacy session's stream comes first: it names where the session POSTs.
            if !self.plan.legacy_sse && !owner.flags.intersects(super::F::HELD) {
                // Parked: the owner's next session opens it.
                continue;
            }
            let session = owner.session;
            self.rings[r].conns[slot as usize].session = session;
            self.start_connect(r, slot);
        }
        Ok(())
    }

    /// Global index of a stream slot's stream (its source port comes after the sessions').
    pub(super) fn stream_index(&self, r: usize, slot: u32) -> u32 {
        let per_ring = streams_among(self.plan.sessions_per_ring, self.plan.stream_percent);
        self.slice.first_stream + r as u32 * per_ring + (slot - self.rings[r].sessions)
    }

    fn stream_ctx(&self) -> StreamCtx {
        StreamCtx {
            now_ns: self.now_ns,
            // cool_down's DELETEs end the sessions, and the server their streams: those stay
            // closed.
            loading: matches!(self.phase, Phase::Ramp | Phase::Load) && !self.deleting,
            tls: self.tls_config.is_some(),
            multishot_recv: self.plan.recv_multishot,
        }
    }

    /// A plumbing event of a stream connection, through the stream's machine.
    pub(super) fn run_stream_event(&mut self, r: usize, slot: u32, event: Event) {
        let ctx = self.stream_ctx();
        let mut actions = std::mem::take(&mut self.stream_actions);
        stream_conn::on_event(
            &mut self.rings[r].conns[slot as usize],
            event,
            &ctx,
            &mut actions,
        );
        self.execute_stream(r, slot, &mut actions);
        self.stream_actions = actions;
        if self.plan.legacy_sse && event == Event::Closed {
            self.legacy_stream_closed(r, slot);
        }
    }

    fn execute_stream(&mut self, r: usize, slot: u32, actions: &mut Vec<StreamAction>) {
        for action in actions.drain(..) {
            match action {
                StreamAction::Count(counter) => self.metrics.incr(counter),
                StreamAction::Errno { op, errno } => self.metrics.record_errno(op, errno),
                StreamAction::ArmRecv => self.arm_recv(r, slot),
                StreamAction::StartTls => self.start_tls(r, slot),
                StreamAction::SendOpen => self.send_stream_open(r, slot),
                StreamAction::EndHandshake => self.end_handshake(r, slot),
                StreamAction::Held { reopen } => {
                    self.streams_held += 1;
                    self.metrics.streams_held_max =
                        self.metrics.streams_held_max.max(self.streams_held);
                    self.metrics.incr(Counter::streams_opened);
                    if reopen {
                        self.metrics.incr(Counter::streams_reopened);
                    }
                }
                StreamAction::Unheld => self.streams_held -= 1,
                StreamAction::NotOffered => self.streams_unavailable = true,
                StreamAction::Close => self.begin_close(r, slot, false),
                StreamAction::Reopen { delay_ms, backoff } => {
                    let mut due_ns = self.now_ns + u64::from(delay_ms) * 1_000_000;
                    if let Some(attempt) = backoff {
                        due_ns += super::backoff_ns(attempt, &mut self.rng);
                    }
                    let generation = self.rings[r].conns[slot as usize].generation;
                    self.stream_opens
                        .push(Reverse((due_ns, r as u16, slot, generation)));
                }
            }
        }
    }

    /// Sends the stream's open request: GET (with `Last-Event-ID` when an earlier stream of
    /// the session said one), or `subscriptions/listen`.
    fn send_stream_open(&mut self, r: usize, slot: u32) {
        let owner = self.rings[r].conns[slot as usize].next_idle;
        let target = self.session_target(r, owner);
        let rank = (slot - self.rings[r].sessions) as usize;
        let buf = self.sends.take();
        let RingSlot {
            conns,
            tls,
            readers,
            ..
        } = &mut self.rings[r];
        let conn = &mut conns[slot as usize];
        conn.send_buf = buf;
        conn.flags |= super::F::SEND_IN_FLIGHT;
        let template = &self.plan.templates[target].stream_open;
        let last_event_id = readers[rank].last_event_id();
        let out = &mut self.sends.bufs[buf as usize];
        match tls.get_mut(slot as usize).and_then(Option::as_mut) {
            None => template.write(out, conn.session.as_bytes(), last_event_id),
            Some(tls) => {
                self.tls_request.clear();
                template.write(
                    &mut self.tls_request,
                    conn.session.as_bytes(),
                    last_event_id,
                );
                if tls.encrypt(&self.tls_request, out).is_err() {
                    conn.flags &= !super::F::SEND_IN_FLIGHT;
                    conn.send_buf = NONE;
                    self.sends.give(buf);
                    self.connection_broke(r, slot, Counter::error_tls_protocol);
                    return;
                }
            }
        }
        self.metrics.add_to(Counter::bytes_sent, out.len() as u64);
        self.submit_send(r, slot, buf);
    }

    /// A 404 to the stream's open: its session is gone. If the owner already holds its next
    /// one (it re-initialized while the stream was opening), reopen at once with it;
    /// otherwise the stream stays parked until the owner's next session opens it.
    fn reopen_if_owner_moved_on(&mut self, r: usize, slot: u32) {
        let conn = &self.rings[r].conns[slot as usize];
        let owner = &self.rings[r].conns[conn.next_idle as usize];
        if owner.flags.intersects(super::F::HELD) && owner.session != conn.session {
            self.rings[r].conns[slot as usize].flags |= super::F::RECONNECT;
        }
    }

    /// Plaintext bytes received on a stream connection (from a ring buffer, or decrypted).
    pub(super) fn on_stream_bytes(&mut self, r: usize, slot: u32, bytes: &[u8]) {
        let rank = (slot - self.rings[r].sessions) as usize;
        let RingSlot { conns, readers, .. } = &mut self.rings[r];
        let mut ctx = ReadCtx {
            spills: &mut self.spills,
            data: &mut self.stream_data,
            metrics: &mut self.metrics,
            now_unix_us: self.unix_epoch_us + self.now_ns / 1000,
            second_notifications: &mut self.second_notifications,
            legacy: self.plan.legacy_sse.then_some(&mut self.legacy_events),
            asked: &mut self.stream_asked,
        };
        let read = read(
            &mut conns[slot as usize],
            &mut readers[rank],
            bytes,
            &mut ctx,
        );
        let mut actions = std::mem::take(&mut self.stream_actions);
        match read {
            Read::Nothing => {}
            Read::Head(head, end) => {
                let session_lost = matches!(head, Ok(Opened::Refused { status: 404 }));
                stream_conn::on_head(&mut self.rings[r].conns[slot as usize], head, &mut actions);
                if session_lost {
                    self.reopen_if_owner_moved_on(r, slot);
                }
                if let Some(end) = end {
                    stream_conn::on_stream_end(
                        &mut self.rings[r].conns[slot as usize],
                        end,
                        &mut actions,
                    );
                }
            }
            Read::End(end) => stream_conn::on_stream_end(
                &mut self.rings[r].conns[slot as usize],
                end,
                &mut actions,
            ),
        }
        if self.plan.legacy_sse {
            self.on_legacy_events(r, slot);
        }
        if !self.stream_asked.is_empty() {
            let asked = std::mem::take(&mut self.stream_asked);
            for request in &asked {
                self.answer_server_request(r, slot, &request.id, &request.method);
            }
            self.stream_asked = asked;
            self.stream_asked.clear();
        }
        self.execute_stream(r, slot, &mut actions);
        self.stream_actions = actions;
    }
}

/// Reads one receive's bytes: the head while opening, events once open.
fn read(conn: &mut Conn, reader: &mut StreamReader, bytes: &[u8], ctx: &mut ReadCtx<'_>) -> Read {
    match conn.state {
        State::Opening => read_head(conn, reader, bytes, ctx),
        State::Streaming => match read_events(conn, reader, bytes, ctx) {
            Ok(false) => Read::Nothing,
            Ok(true) => Read::End(Ok(())),
            Err(error) => Read::End(Err(error)),
        },
        // Bytes after the close began, or before the request went out: nobody reads them.
        _ => Read::Nothing,
    }
}

fn read_head(
    conn: &mut Conn,
    reader: &mut StreamReader,
    bytes: &[u8],
    ctx: &mut ReadCtx<'_>,
) -> Read {
    // The head is parsed in place unless an earlier read left part of it in a spill buffer.
    let mut spilled = if conn.spill == NONE {
        Vec::new()
    } else {
        let mut buf = std::mem::take(&mut ctx.spills.bufs[conn.spill as usize]);
        buf.extend_from_slice(bytes);
        buf
    };
    let buf: &[u8] = if conn.spill == NONE { bytes } else { &spilled };
    let opened = stream::open(buf);
    let result = match opened {
        Ok(None) => {
            if conn.spill == NONE {
                conn.spill = ctx.spills.take();
                ctx.spills.bufs[conn.spill as usize].extend_from_slice(bytes);
            } else {
                ctx.spills.bufs[conn.spill as usize] = std::mem::take(&mut spilled);
            }
            return Read::Nothing;
        }
        Ok(Some((Opened::Stream { body_at }, mut fresh))) => {
            fresh.resume_from(reader);
            *reader = fresh;
            let body = buf[body_at..].to_vec();
            give_back(conn, ctx.spills, spilled);
            let end = match read_events(conn, reader, &body, ctx) {
                Ok(false) => None,
                Ok(true) => Some(Ok(())),
                Err(error) => Some(Err(error)),
            };
            return Read::Head(Ok(Opened::Stream { body_at }), end);
        }
        Ok(Some((opened, _))) => Ok(opened),
        Err(error) => Err(error),
    };
    give_back(conn, ctx.spills, spilled);
    Read::Head(result, None)
}

/// Returns the head's spill buffer (emptied) to the pool.
fn give_back(conn: &mut Conn, spills: &mut Pool, mut spilled: Vec<u8>) {
    if conn.spill != NONE {
        spilled.clear();
        spills.bufs[conn.spill as usize] = spilled;
        spills.give(conn.spill);
        conn.spill = NONE;
    }
}

/// Feeds event bytes; counts and times what they carry. `Ok(true)`: the server ended the
/// stream.
fn read_events(
    conn: &mut Conn,
    reader: &mut StreamReader,
    bytes: &[u8],
    ctx: &mut ReadCtx<'_>,
) -> Result<bool, StreamError> {
    let data: &mut Vec<u8> = if conn.spill == NONE {
        ctx.data.clear();
        ctx.data
    } else {
        &mut ctx.spills.bufs[conn.spill as usize]
    };
    let metrics = &mut *ctx.metrics;
    let now_unix_us = ctx.now_unix_us;
    let second_notifications = &mut *ctx.second_notifications;
    let mut legacy = ctx.legacy.as_deref_mut();
    let asked = &mut *ctx.asked;
    let mut retry_ms = None;
    let fed = reader.feed(bytes, data, &mut |item| match item {
        StreamItem::Notification { method, sent_at_us } => {
            metrics.record_notification(method);
            *second_notifications += 1;
            if let Some(sent_at_us) = sent_at_us {
                metrics.incr(Counter::notifications_timed);
                let latency_us = now_unix_us.saturating_sub(sent_at_us).max(1);
                metrics.notification_latency.saturating_record(latency_us);
                metrics.second_notification.saturating_record(latency_us);
            }
        }
        StreamItem::Request { id, method } => {
            metrics.incr(Counter::stream_requests_received);
            if asked.len() < crate::engine::response::ASKED_PER_RESPONSE_MAX {
                asked.push(crate::engine::response::AskedRequest {
                    id: id.to_vec(),
                    method: method.to_string(),
                });
            } else {
                metrics.incr(Counter::client_replies_lost);
            }
        }
        StreamItem::Response(body) => match legacy.as_mut() {
            Some(events) => events.push(super::legacy::LegacyEvent::Reply(body)),
            None => metrics.incr(Counter::stream_error_malformed_event),
        },
        StreamItem::Endpoint(uri) => match legacy.as_mut() {
            Some(events) => events.push(super::legacy::LegacyEvent::Endpoint(
                super::legacy::endpoint_target(uri),
            )),
            None => metrics.incr(Counter::stream_error_malformed_event),
        },
        StreamItem::Malformed(_) => metrics.incr(Counter::stream_error_malformed_event),
        StreamItem::Priming => metrics.incr(Counter::sse_priming_events),
        StreamItem::Retry { delay_ms } => {
            metrics.incr(Counter::stream_retry_hints);
            retry_ms = Some(delay_ms.min(u64::from(RETRY_MAX_MS)) as u32);
        }
    });
    if let Some(ms) = retry_ms {
        conn.id = ms;
    }
    // The event data buffer is held only while an event straddles reads.
    let mid_event = fed.is_ok() && reader.mid_event();
    match (conn.spill == NONE, mid_event) {
        (true, true) => {
            conn.spill = ctx.spills.take();
            let spill = &mut ctx.spills.bufs[conn.spill as usize];
            spill.clear();
            spill.extend_from_slice(ctx.data);
            ctx.metrics.incr(Counter::spill_uses);
        }
        (false, false) => {
            ctx.spills.bufs[conn.spill as usize].clear();
            ctx.spills.give(conn.spill);
            conn.spill = NONE;
        }
        _ => {}
    }
    fed.map(|progress| progress.ended)
}
