//! The legacy HTTP+SSE transport (`--transport sse`, 2024-11-05) in the shard. Every session
//! holds its stream (a GET of the SSE URL, on the stream slot of `streams.rs`); the stream's
//! `endpoint` event names where the session POSTs; each POST is answered `202 Accepted` and
//! its JSON-RPC answer comes on the stream. Part of `engine/`.
//!
//! The session's machine (`machine.rs`) is the streamable-HTTP one, unchanged: it sees one
//! answer per request, made here of the two halves — the POST's 202 (whether the connection
//! stays open) and the stream's reply (the JSON-RPC outcome) — in whichever order they come.
//! A request due before the endpoint is known waits for it (its timeout runs); a stream that
//! ends takes its session with it, so the session is lost and initialized again on the next.

use super::super::conn::{Conn, ConnFlags as F, Fed, State};
use super::super::machine::Event;
use super::super::metrics::Counter;
use super::super::response::{BodyOutcome, ResponseSummary, SessionId};
use super::super::template::Request;
use super::Shard;
use crate::proto::http_response::ContentKind;

/// What a legacy stream said that concerns its session (collected during a read).
#[derive(Debug, Clone, Copy)]
pub(super) enum LegacyEvent {
    /// The `endpoint` event: the path (and query) to POST to, when it fits.
    Endpoint(Option<SessionId>),
    Reply(BodyOutcome),
}

/// One half of a POSTed request's answer, waiting for the other.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Pending {
    /// The POST was answered 202; whether its connection stays open.
    accepted_keep_alive: Option<bool>,
    /// The reply came on the stream first.
    reply: Option<BodyOutcome>,
}

impl Pending {
    /// The 202 came: the whole answer (reply, keep-alive) when the reply came first.
    fn accepted(&mut self, keep_alive: bool) -> Option<(BodyOutcome, bool)> {
        match self.reply.take() {
            Some(body) => Some((body, keep_alive)),
            None => {
                self.accepted_keep_alive = Some(keep_alive);
                None
            }
        }
    }

    /// The reply came: the whole answer when the 202 came first.
    fn replied(&mut self, body: BodyOutcome) -> Option<(BodyOutcome, bool)> {
        match self.accepted_keep_alive.take() {
            Some(keep_alive) => Some((body, keep_alive)),
            None => {
                self.reply = Some(body);
                None
            }
        }
    }
}

/// The endpoint an `endpoint` event names, as a request target: a path is taken as it is,
/// an absolute URI loses its scheme and authority (the POST goes to the stream's target).
pub(super) fn endpoint_target(uri: &[u8]) -> Option<SessionId> {
    let uri = uri.trim_ascii();
    let target = match uri.iter().position(|&b| b == b':') {
        Some(colon) if uri[colon..].starts_with(b"://") => {
            let rest = &uri[colon + 3..];
            &rest[rest.iter().position(|&b| b == b'/')?..]
        }
        _ => uri,
    };
    let valid = target.first() == Some(&b'/') && target.iter().all(|&b| b.is_ascii_graphic());
    valid.then(|| SessionId::from_bytes(target)).flatten()
}

/// Does the session's machine await an answer to a request with an id?
fn awaits_reply(conn: &Conn) -> bool {
    match conn.state {
        State::Initializing => !conn.session.is_empty(),
        State::Awaiting => Request::from_u8(conn.method) != Request::Delete,
        _ => false,
    }
}

impl<'a> Shard<'a> {
    fn pending_key(&self, r: usize, slot: u32) -> u32 {
        r as u32 * self.plan.sessions_per_ring + slot
    }

    fn stream_of(&self, r: usize, owner: u32) -> u32 {
        // Every session holds a stream under --transport sse (rank = slot).
        self.rings[r].sessions + owner
    }

    /// Called before a session's request is written. `true`: it waits for the endpoint
    /// (the session has none yet), and its stream is (re)opened to get one.
    pub(super) fn legacy_defers(&mut self, r: usize, slot: u32, intended_ns: u64) -> bool {
        let key = self.pending_key(r, slot);
        self.legacy_pending.remove(&key);
        if !self.rings[r].conns[slot as usize].session.is_empty() {
            return false;
        }
        let stream = self.stream_of(r, slot);
        let known = self.rings[r]
            .conns
            .get(stream as usize)
            .filter(|s| s.state == State::Streaming && !s.session.is_empty())
            .map(|s| s.session);
        if let Some(endpoint) = known {
            // The stream already named it: this session takes it (it is used once).
            self.rings[r].conns[slot as usize].session = endpoint;
            self.rings[r].conns[stream as usize].session = SessionId::EMPTY;
            return false;
        }
        let conn = &mut self.rings[r].conns[slot as usize];
        conn.sent_ns = self.now_ns;
        conn.intended_ns = intended_ns;
        let stream_state = self.rings[r]
            .conns
            .get(stream as usize)
            .map_or(State::Free, |s| s.state);
        match stream_state {
            State::Free => self.queue_stream_of(r, slot),
            State::Streaming => {
                // Its endpoint was used by a session the server has since forgotten: a new
                // stream names a new one.
                self.rings[r].conns[stream as usize].flags |= F::RECONNECT;
                self.begin_close(r, stream, false);
            }
            _ => {} // opening: its endpoint event is coming
        }
        true
    }

    /// What a read of the legacy stream `slot` said, in order.
    pub(super) fn on_legacy_events(&mut self, r: usize, slot: u32) {
        let mut events = std::mem::take(&mut self.legacy_events);
        for event in events.drain(..) {
            match event {
                LegacyEvent::Endpoint(endpoint) => self.on_endpoint(r, slot, endpoint),
                LegacyEvent::Reply(body) => self.on_reply(r, slot, body),
            }
        }
        self.legacy_events = events;
    }

    fn on_endpoint(&mut self, r: usize, slot: u32, endpoint: Option<SessionId>) {
        self.metrics.incr(Counter::legacy_endpoints_received);
        let Some(endpoint) = endpoint else {
            self.metrics.incr(Counter::stream_error_endpoint);
            return;
        };
        let owner = self.rings[r].conns[slot as usize].next_idle;
        let conn = &self.rings[r].conns[owner as usize];
        if conn.state == State::Initializing
            && conn.session.is_empty()
            && !conn.flags.intersects(F::SEND_IN_FLIGHT)
        {
            let intended_ns = conn.intended_ns;
            self.rings[r].conns[owner as usize].session = endpoint;
            self.send_request(r, owner, Request::Initialize, intended_ns);
        } else {
            // Kept until the session asks for it (`legacy_defers`).
            self.rings[r].conns[slot as usize].session = endpoint;
        }
    }

    fn on_reply(&mut self, r: usize, slot: u32, body: BodyOutcome) {
        let owner = self.rings[r].conns[slot as usize].next_idle;
        if !awaits_reply(&self.rings[r].conns[owner as usize]) {
            self.metrics.incr(Counter::legacy_replies_unmatched);
            return;
        }
        let key = self.pending_key(r, owner);
        if let Some((body, keep_alive)) = self.legacy_pending.entry(key).or_default().replied(body)
        {
            self.legacy_pending.remove(&key);
            self.answer(r, owner, body, keep_alive);
        }
    }

    /// The POST's own response. `true`: it was the 202 half of an answer (kept, or joined to
    /// the reply that came first); `false`: the machine takes it as it is (an error status,
    /// or the 202 to notifications/initialized).
    pub(super) fn legacy_post_answered(
        &mut self,
        r: usize,
        slot: u32,
        summary: &ResponseSummary,
    ) -> bool {
        if summary.status != 202 || !awaits_reply(&self.rings[r].conns[slot as usize]) {
            return false;
        }
        let key = self.pending_key(r, slot);
        let whole = self
            .legacy_pending
            .entry(key)
            .or_default()
            .accepted(summary.keep_alive);
        if let Some((body, keep_alive)) = whole {
            self.legacy_pending.remove(&key);
            self.answer(r, slot, body, keep_alive);
        }
        true
    }

    /// Both halves are in: the machine gets the answer.
    fn answer(&mut self, r: usize, slot: u32, body: BodyOutcome, keep_alive: bool) {
        let session = self.rings[r].conns[slot as usize].session;
        let summary = ResponseSummary {
            status: 200,
            keep_alive,
            content_type: ContentKind::Json,
            // The endpoint is the session: initialize keeps it.
            session_id: Some(session),
            body,
            priming_events: 0,
            retry_after_s: None,
        };
        self.run_event(r, slot, Event::Fed(Fed::Response(summary)));
    }

    /// The session's connection closed: a half-answer waiting for it is void.
    pub(super) fn legacy_forget(&mut self, r: usize, slot: u32) {
        let key = self.pending_key(r, slot);
        self.legacy_pending.remove(&key);
    }

    /// The legacy stream `slot` closed: its session is gone with it. A session that was
    /// using it is lost (its request in flight too) and initializes again on a new stream.
    pub(super) fn legacy_stream_closed(&mut self, r: usize, slot: u32) {
        self.rings[r].conns[slot as usize].session = SessionId::EMPTY;
        if !matches!(self.phase, super::Phase::Ramp | super::Phase::Load) {
            return;
        }
        let owner = self.rings[r].conns[slot as usize].next_idle;
        let conn = &mut self.rings[r].conns[owner as usize];
        if conn.session.is_empty() {
            return;
        }
        conn.session = SessionId::EMPTY;
        self.metrics.incr(Counter::legacy_sessions_lost_with_stream);
        if !matches!(
            conn.state,
            State::Ready
                | State::Awaiting
                | State::Waiting
                | State::Initializing
                | State::Initialized
        ) {
            // Not connected (or connecting): its next connection initializes anew, as its
            // session is empty now.
            return;
        }
        // The stream reopens on its own schedule (`stream_conn.rs`); the session's
        // initialize waits for its endpoint.
        self.connection_broke(r, owner, Counter::error_session_lost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_whole_with_both_halves_in_either_order() {
        let body = BodyOutcome::Result {
            id: Some(3),
            is_error: false,
        };
        let mut pending = Pending::default();
        assert_eq!(pending.accepted(true), None);
        assert_eq!(pending.replied(body), Some((body, true)));
        let mut pending = Pending::default();
        assert_eq!(pending.replied(body), None);
        assert_eq!(pending.accepted(false), Some((body, false)));
    }

    #[test]
    fn endpoint_targets() {
        let target = |uri: &[u8]| endpoint_target(uri).map(|s| s.as_bytes().to_vec());
        assert_eq!(
            target(b"/messages/?session_id=ab"),
            Some(b"/messages/?session_id=ab".to_vec())
        );
        assert_eq!(
            target(b"http://127.0.0.1:8000/messages/?session_id=ab\n"),
            Some(b"/messages/?session_id=ab".to_vec())
        );
        assert_eq!(target(b"messages"), None, "not a path");
        assert_eq!(target(b"/a b"), None, "no spaces in a request line");
        assert_eq!(target(b"https://host"), None, "no path");
        assert_eq!(target(&[b'/'; 65]), None, "longer than a session id holds");
    }
}
