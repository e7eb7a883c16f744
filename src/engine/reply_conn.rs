//! The machine of a ring's reply connection, I/O-free like `machine.rs`: the connection that
//! carries the client's answers to server-to-client requests (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`, `ping`) to the server, one POST at a time, kept alive
//! between them. Part of `engine/`; `shard/replies.rs` keeps the ring's queue of answers and
//! carries the actions out, `client_reply.rs` writes the answers.
//!
//! Why a connection of its own: a request that comes on a POST's response stream is asked
//! while that POST awaits its answer — the session's connection is busy until the server has
//! the client's reply (HTTP/1.1 carries one request at a time), so the reply must go on
//! another connection; one on a GET stream has no connection of its own to go on at all.
//!
//! Slot fields: `sent_ns` when the reply in flight went out (its request timeout), the state
//! `Replying` while it is in flight, `Ready` while the connection idles, `connect_failures`
//! the failed connects in a row (the queue is given up after [`CONNECT_FAILURES_MAX`]).

use super::conn::{Conn, ConnFlags as F, FailureKind, State};
use super::machine::Event;
use super::metrics::Counter;
use super::response::ResponseSummary;
use crate::ring::Op;

/// Connects failing in a row before the ring's waiting answers are given up (counted lost):
/// a server that is gone cannot take them, and the queue must not grow for the rest of the run.
pub(crate) const CONNECT_FAILURES_MAX: u8 = 4;

/// The shard's facts an event's outcome depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyCtx {
    pub(crate) now_ns: u64,
    pub(crate) tls: bool,
    pub(crate) multishot_recv: bool,
    /// Answers wait in the ring's queue (the one in flight not counted once answered).
    pub(crate) queued: bool,
    /// The run still carries requests (ramp, load, drain): a closed connection with answers
    /// waiting is opened again.
    pub(crate) open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyAction {
    Count(Counter),
    Errno {
        op: &'static str,
        errno: i32,
    },
    ArmRecv,
    StartTls,
    /// The slot's handshake is over (`HANDSHAKING` and the shard's count).
    EndHandshake,
    /// POST the answer at the head of the ring's queue.
    SendNext,
    /// The server answered the answer in flight with `status`: it leaves the queue.
    Answered {
        status: u16,
    },
    /// The answer in flight was lost with its connection: tried again on the next one, or
    /// given up if it was its second try (the shard keeps the tries).
    Lost,
    Close,
    /// The connection is closed and answers wait: connect again (after a backoff of this
    /// attempt when `backoff` is set).
    Reconnect {
        backoff: Option<u8>,
    },
    /// Connects kept failing: the waiting answers are given up.
    GiveUp,
}

/// Runs one plumbing event of the reply connection.
pub(crate) fn on_event(conn: &mut Conn, event: Event, ctx: &ReplyCtx, out: &mut Vec<ReplyAction>) {
    match event {
        Event::Chain { op, res } => on_chain(conn, op, res, ctx, out),
        Event::TransportReady => ready(conn, ctx, out),
        // Answers are read by the shard and come back through `on_answer`.
        Event::Fed(_) => {}
        Event::RecvEnd { res } => {
            if conn.state == State::Ready && res == 0 {
                // The server closed the idle connection (its keep-alive timeout): nothing
                // was lost; the next answer opens a new one.
                out.push(ReplyAction::Close);
            } else {
                fail(conn, Counter::client_reply_error_reset, out);
            }
        }
        Event::SendFailed { .. } => fail(conn, Counter::client_reply_error_reset, out),
        Event::Broke(cause) => fail(conn, reply_cause(cause), out),
        Event::Closed => on_closed(conn, ctx, out),
        Event::ReplicaSought { .. } => {}
    }
}

/// What the server said to the answer in flight. `more`: answers wait after this one.
pub(crate) fn on_answer(
    conn: &mut Conn,
    summary: &ResponseSummary,
    more: bool,
    ctx: &ReplyCtx,
    out: &mut Vec<ReplyAction>,
) {
    if conn.state != State::Replying {
        return;
    }
    out.push(ReplyAction::Answered {
        status: summary.status,
    });
    conn.state = State::Ready;
    if !summary.keep_alive {
        out.push(ReplyAction::Close);
    } else if more {
        send(conn, ctx, out);
    }
}

/// The answer could not be read (a malformed response, or bytes nobody asked for).
pub(crate) fn on_bad_answer(conn: &mut Conn, out: &mut Vec<ReplyAction>) {
    fail(conn, Counter::client_reply_error_response, out);
}

/// An answer was queued: send it if the connection idles (the shard connects a closed one).
pub(crate) fn on_queued(conn: &mut Conn, ctx: &ReplyCtx, out: &mut Vec<ReplyAction>) {
    if conn.state == State::Ready && !conn.flags.intersects(F::SEND_IN_FLIGHT) {
        send(conn, ctx, out);
    }
}

fn reply_cause(cause: Counter) -> Counter {
    match super::conn::failure_kind(cause) {
        FailureKind::Tls => Counter::client_reply_error_tls,
        FailureKind::Timeout => Counter::client_reply_error_timeout,
        FailureKind::Connect => Counter::client_reply_error_connect,
        FailureKind::Reset => Counter::client_reply_error_reset,
    }
}

fn on_chain(conn: &mut Conn, op: Op, res: i32, ctx: &ReplyCtx, out: &mut Vec<ReplyAction>) {
    let step = super::conn::chain_step(conn, op, res);
    if let Some((op, errno)) = step.failure {
        out.push(ReplyAction::Errno { op, errno });
    }
    match step.connected {
        None => {}
        Some(false) => {
            out.push(ReplyAction::EndHandshake);
            fail(conn, Counter::client_reply_error_connect, out);
        }
        Some(true) => {
            if ctx.multishot_recv {
                out.push(ReplyAction::ArmRecv);
            }
            if ctx.tls {
                conn.state = State::TlsHandshaking;
                conn.sent_ns = ctx.now_ns;
                out.push(ReplyAction::StartTls);
            } else {
                ready(conn, ctx, out);
            }
        }
    }
}

fn ready(conn: &mut Conn, ctx: &ReplyCtx, out: &mut Vec<ReplyAction>) {
    out.push(ReplyAction::EndHandshake);
    conn.connect_failures = 0;
    conn.state = State::Ready;
    if ctx.queued {
        send(conn, ctx, out);
    }
}

fn send(conn: &mut Conn, ctx: &ReplyCtx, out: &mut Vec<ReplyAction>) {
    conn.state = State::Replying;
    conn.sent_ns = ctx.now_ns;
    out.push(ReplyAction::SendNext);
    if !ctx.multishot_recv {
        out.push(ReplyAction::ArmRecv);
    }
}

/// The connection failed with `cause`: the answer in flight (if any) is lost, the connection
/// closed and opened again after a backoff.
fn fail(conn: &mut Conn, cause: Counter, out: &mut Vec<ReplyAction>) {
    if matches!(conn.state, State::Closing | State::Free | State::Done) {
        return;
    }
    out.push(ReplyAction::Count(cause));
    if conn.state == State::Replying {
        out.push(ReplyAction::Lost);
    } else if conn.state == State::Connecting || conn.state == State::TlsHandshaking {
        conn.connect_failures = conn.connect_failures.saturating_add(1);
    }
    conn.flags |= F::BACKOFF;
    out.push(ReplyAction::Close);
}

fn on_closed(conn: &mut Conn, ctx: &ReplyCtx, out: &mut Vec<ReplyAction>) {
    let backoff = conn.flags.intersects(F::BACKOFF);
    conn.flags = F::empty();
    conn.state = if ctx.open { State::Free } else { State::Done };
    if !ctx.open || !ctx.queued {
        return;
    }
    if conn.connect_failures >= CONNECT_FAILURES_MAX {
        conn.connect_failures = 0;
        out.push(ReplyAction::GiveUp);
        return;
    }
    out.push(ReplyAction::Reconnect {
        backoff: backoff.then_some(conn.connect_failures.max(1)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http_response::ContentKind;

    fn ctx(queued: bool) -> ReplyCtx {
        ReplyCtx {
            now_ns: 5_000,
            tls: false,
            multishot_recv: true,
            queued,
            open: true,
        }
    }

    fn run(conn: &mut Conn, event: Event, ctx: &ReplyCtx) -> Vec<ReplyAction> {
        let mut out = Vec::new();
        on_event(conn, event, ctx, &mut out);
        out
    }

    fn summary(status: u16, keep_alive: bool) -> ResponseSummary {
        ResponseSummary {
            status,
            keep_alive,
            content_type: ContentKind::None,
            session_id: None,
            body: super::super::response::BodyOutcome::Empty,
            priming_events: 0,
            retry_after_s: None,
        }
    }

    fn connect(conn: &mut Conn, res: i32, ctx: &ReplyCtx) -> Vec<ReplyAction> {
        conn.state = State::Connecting;
        let mut out = run(
            conn,
            Event::Chain {
                op: Op::Socket,
                res: 0,
            },
            ctx,
        );
        out.extend(run(
            conn,
            Event::Chain {
                op: Op::Connect,
                res,
            },
            ctx,
        ));
        out
    }

    #[test]
    fn a_connect_sends_the_waiting_answer_and_the_next_follows_its_202() {
        let mut conn = Conn::FREE;
        assert_eq!(
            connect(&mut conn, 0, &ctx(true)),
            vec![
                ReplyAction::ArmRecv,
                ReplyAction::EndHandshake,
                ReplyAction::SendNext
            ]
        );
        assert_eq!(conn.state, State::Replying);
        assert_eq!(conn.sent_ns, 5_000);
        let mut out = Vec::new();
        on_answer(&mut conn, &summary(202, true), true, &ctx(true), &mut out);
        assert_eq!(
            out,
            vec![ReplyAction::Answered { status: 202 }, ReplyAction::SendNext]
        );
        out.clear();
        on_answer(&mut conn, &summary(400, true), false, &ctx(false), &mut out);
        assert_eq!(out, vec![ReplyAction::Answered { status: 400 }]);
        assert_eq!(conn.state, State::Ready, "kept alive, idle");
        // An answer queued later goes out at once on the idle connection.
        out.clear();
        on_queued(&mut conn, &ctx(true), &mut out);
        assert_eq!(out, vec![ReplyAction::SendNext]);
    }

    #[test]
    fn an_answer_lost_with_its_connection_is_tried_again_on_a_new_one() {
        let mut conn = Conn::FREE;
        connect(&mut conn, 0, &ctx(true));
        assert_eq!(
            run(
                &mut conn,
                Event::RecvEnd {
                    res: -libc::ECONNRESET
                },
                &ctx(true)
            ),
            vec![
                ReplyAction::Count(Counter::client_reply_error_reset),
                ReplyAction::Lost,
                ReplyAction::Close
            ]
        );
        conn.state = State::Closing;
        assert_eq!(
            run(&mut conn, Event::Closed, &ctx(true)),
            vec![ReplyAction::Reconnect { backoff: Some(1) }]
        );
        assert_eq!(conn.state, State::Free);
    }

    #[test]
    fn an_idle_close_loses_nothing_and_reconnects_only_for_a_waiting_answer() {
        let mut conn = Conn::FREE;
        connect(&mut conn, 0, &ctx(false));
        assert_eq!(conn.state, State::Ready);
        assert_eq!(
            run(&mut conn, Event::RecvEnd { res: 0 }, &ctx(false)),
            vec![ReplyAction::Close]
        );
        conn.state = State::Closing;
        assert!(run(&mut conn, Event::Closed, &ctx(false)).is_empty());
        assert_eq!(conn.state, State::Free);
        // Connection: close on an answer: closed, then reopened for the next one.
        connect(&mut conn, 0, &ctx(true));
        let mut out = Vec::new();
        on_answer(&mut conn, &summary(202, false), true, &ctx(true), &mut out);
        assert_eq!(
            out,
            vec![ReplyAction::Answered { status: 202 }, ReplyAction::Close]
        );
        conn.state = State::Closing;
        assert_eq!(
            run(&mut conn, Event::Closed, &ctx(true)),
            vec![ReplyAction::Reconnect { backoff: None }]
        );
    }

    #[test]
    fn connects_failing_in_a_row_give_the_queue_up() {
        let mut conn = Conn::FREE;
        for attempt in 1..=CONNECT_FAILURES_MAX {
            let out = connect(&mut conn, -libc::ECONNREFUSED, &ctx(true));
            assert_eq!(
                out,
                vec![
                    ReplyAction::Errno {
                        op: "connect",
                        errno: libc::ECONNREFUSED
                    },
                    ReplyAction::EndHandshake,
                    ReplyAction::Count(Counter::client_reply_error_connect),
                    ReplyAction::Close
                ]
            );
            conn.state = State::Closing;
            let closed = run(&mut conn, Event::Closed, &ctx(true));
            if attempt < CONNECT_FAILURES_MAX {
                assert_eq!(
                    closed,
                    vec![ReplyAction::Reconnect {
                        backoff: Some(attempt)
                    }]
                );
            } else {
                assert_eq!(closed, vec![ReplyAction::GiveUp]);
            }
        }
        // A good connect starts the count again.
        connect(&mut conn, 0, &ctx(true));
        assert_eq!(conn.connect_failures, 0);
    }

    #[test]
    fn tls_waits_for_its_handshake_and_the_end_of_the_run_reopens_nothing() {
        let tls = ReplyCtx {
            tls: true,
            ..ctx(true)
        };
        let mut conn = Conn::FREE;
        assert_eq!(
            connect(&mut conn, 0, &tls),
            vec![ReplyAction::ArmRecv, ReplyAction::StartTls]
        );
        assert_eq!(conn.state, State::TlsHandshaking);
        assert_eq!(
            run(&mut conn, Event::TransportReady, &tls),
            vec![ReplyAction::EndHandshake, ReplyAction::SendNext]
        );
        conn.state = State::Closing;
        let ended = ReplyCtx {
            open: false,
            ..ctx(true)
        };
        assert!(run(&mut conn, Event::Closed, &ended).is_empty());
        assert_eq!(conn.state, State::Done);
    }

    #[test]
    fn answers_out_of_turn_and_timeouts_are_typed() {
        let mut conn = Conn::FREE;
        connect(&mut conn, 0, &ctx(false));
        let mut out = Vec::new();
        on_answer(&mut conn, &summary(202, true), false, &ctx(false), &mut out);
        assert!(out.is_empty(), "nothing was in flight");
        on_queued(&mut conn, &ctx(true), &mut out);
        out.clear();
        on_event(
            &mut conn,
            Event::Broke(Counter::error_request_timeout),
            &ctx(true),
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                ReplyAction::Count(Counter::client_reply_error_timeout),
                ReplyAction::Lost,
                ReplyAction::Close
            ]
        );
        let mut conn = Conn {
            state: State::Replying,
            ..Conn::FREE
        };
        let mut out = Vec::new();
        on_bad_answer(&mut conn, &mut out);
        assert_eq!(
            out,
            vec![
                ReplyAction::Count(Counter::client_reply_error_response),
                ReplyAction::Lost,
                ReplyAction::Close
            ]
        );
    }
}
