//! The machine of a session's stream connection (`--streams`), I/O-free like `machine.rs`:
//! what each event of the connection that holds a session's server-to-client stream means —
//! the connect chain, the open request, the response head, the stream's end — and what
//! becomes of the slot when it closes (reopened after the server's `retry:` or a backoff,
//! parked until the owner's next session, or done). Part of `engine/`; `shard/streams.rs`
//! carries the actions out, `stream.rs` reads the events.
//!
//! A stream never touches the session's figures: its owner's `HELD`, `DOWN` and the
//! requests' counters are the load connection's. Its own flags: `HELD` while its stream is
//! open (the shard's `streams_held`), `RECONNECT` to reopen after the close, `BACKOFF` when
//! that reopen follows a failure.

use super::conn::{Conn, ConnFlags as F, FailureKind, State};
use super::machine::Event;
use super::metrics::Counter;
use super::stream::{Opened, StreamError};
use crate::ring::Op;

/// Longest `retry:` honoured before a reopen.
pub(crate) const RETRY_MAX_MS: u32 = 60_000;
/// Backoff attempt a failing stream's reopen stays at (`backoff_ns`: 3.2–9.6 s at most), so
/// a server back from a fault gets its streams back within seconds, not minutes.
const REOPEN_ATTEMPT_MAX: u8 = 6;

/// The shard's facts a stream event's outcome depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamCtx {
    pub(crate) now_ns: u64,
    /// Sessions are being opened or loaded: a closed stream is reopened.
    pub(crate) loading: bool,
    pub(crate) tls: bool,
    pub(crate) multishot_recv: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamAction {
    Count(Counter),
    Errno {
        op: &'static str,
        errno: i32,
    },
    ArmRecv,
    StartTls,
    /// Send the open request (GET, or `subscriptions/listen`).
    SendOpen,
    /// The slot's handshake is over (`HANDSHAKING` and the shard's count).
    EndHandshake,
    /// The stream is open: count it held (`streams_opened`, and `streams_reopened` when
    /// `reopen`).
    Held {
        reopen: bool,
    },
    /// The stream closed: no longer held.
    Unheld,
    /// The server offers no stream (405): the shard opens no more.
    NotOffered,
    Close,
    /// Open the stream again after `delay_ms` (the server's `retry:`), or after a jittered
    /// backoff of this attempt when `backoff` is set.
    Reopen {
        delay_ms: u32,
        backoff: Option<u8>,
    },
}

/// Runs one plumbing event (the ones `machine.rs` gets for a load connection).
pub(crate) fn on_event(
    conn: &mut Conn,
    event: Event,
    ctx: &StreamCtx,
    out: &mut Vec<StreamAction>,
) {
    match event {
        Event::Chain { op, res } => on_chain(conn, op, res, ctx, out),
        Event::TransportReady => send_open(conn, ctx, out),
        // Stream bytes go to `on_head` and `stream.rs`, never through `Fed`.
        Event::Fed(_) => {}
        Event::RecvEnd { res } => on_recv_end(conn, res, out),
        Event::SendFailed { .. } => fail(conn, Counter::stream_error_reset, out),
        Event::Broke(cause) => fail(conn, stream_cause(cause), out),
        Event::Closed => on_closed(conn, ctx, out),
        // A stream follows its owner's replica; it never seeks one of its own.
        Event::ReplicaSought { .. } => {}
    }
}

/// What the response head to the open request said.
pub(crate) fn on_head(
    conn: &mut Conn,
    head: Result<Opened, StreamError>,
    out: &mut Vec<StreamAction>,
) {
    if conn.state != State::Opening {
        return;
    }
    out.push(StreamAction::EndHandshake);
    match head {
        Ok(Opened::Stream { .. }) => {
            conn.state = State::Streaming;
            conn.connect_failures = 0;
            let reopen = conn.method != 0;
            conn.method = 1;
            conn.flags |= F::HELD;
            out.push(StreamAction::Held { reopen });
        }
        Ok(Opened::NotOffered) => {
            out.push(StreamAction::Count(Counter::streams_not_offered));
            out.push(StreamAction::NotOffered);
            out.push(StreamAction::Close);
        }
        Ok(Opened::Refused { status: 404 }) => {
            // The session is gone: its stream waits for the owner's next session.
            out.push(StreamAction::Count(Counter::stream_error_session_lost));
            out.push(StreamAction::Close);
        }
        Ok(Opened::Refused { .. }) => fail(conn, Counter::stream_error_refused, out),
        Err(_) => fail(conn, Counter::stream_error_head, out),
    }
}

/// The open stream ended or broke (`Ok`: the server ended it in order; `Err`: its framing).
pub(crate) fn on_stream_end(
    conn: &mut Conn,
    end: Result<(), StreamError>,
    out: &mut Vec<StreamAction>,
) {
    match end {
        Ok(()) => ended_by_server(conn, out),
        Err(_) => fail(conn, Counter::stream_error_framing, out),
    }
}

/// A load connection's failure cause, as the stream counts it.
fn stream_cause(cause: Counter) -> Counter {
    match super::conn::failure_kind(cause) {
        FailureKind::Tls => Counter::stream_error_tls,
        FailureKind::Timeout => Counter::stream_error_timeout,
        FailureKind::Connect => Counter::stream_error_connect,
        FailureKind::Reset => Counter::stream_error_reset,
    }
}

fn on_chain(conn: &mut Conn, op: Op, res: i32, ctx: &StreamCtx, out: &mut Vec<StreamAction>) {
    let step = super::conn::chain_step(conn, op, res);
    if let Some((op, errno)) = step.failure {
        out.push(StreamAction::Errno { op, errno });
    }
    match step.connected {
        None => {}
        Some(false) => {
            out.push(StreamAction::EndHandshake);
            fail(conn, Counter::stream_error_connect, out);
        }
        Some(true) => {
            if ctx.multishot_recv {
                out.push(StreamAction::ArmRecv);
            }
            if ctx.tls {
                conn.state = State::TlsHandshaking;
                conn.sent_ns = ctx.now_ns;
                out.push(StreamAction::StartTls);
            } else {
                send_open(conn, ctx, out);
            }
        }
    }
}

fn send_open(conn: &mut Conn, ctx: &StreamCtx, out: &mut Vec<StreamAction>) {
    conn.state = State::Opening;
    conn.sent_ns = ctx.now_ns;
    out.push(StreamAction::SendOpen);
    if !ctx.multishot_recv {
        out.push(StreamAction::ArmRecv);
    }
}

fn on_recv_end(conn: &mut Conn, res: i32, out: &mut Vec<StreamAction>) {
    match (conn.state, res) {
        (State::Closing | State::Free | State::Done, _) => {}
        (State::Streaming, 0) => ended_by_server(conn, out),
        (State::Opening, 0) => fail(conn, Counter::stream_error_head, out),
        _ => fail(conn, Counter::stream_error_reset, out),
    }
}

fn ended_by_server(conn: &mut Conn, out: &mut Vec<StreamAction>) {
    if matches!(conn.state, State::Closing | State::Free | State::Done) {
        return;
    }
    out.push(StreamAction::Count(Counter::streams_ended_by_server));
    conn.flags |= F::RECONNECT;
    out.push(StreamAction::Close);
}

/// The stream failed with `cause`: closed, and reopened after a backoff.
fn fail(conn: &mut Conn, cause: Counter, out: &mut Vec<StreamAction>) {
    if matches!(conn.state, State::Closing | State::Free | State::Done) {
        return;
    }
    out.push(StreamAction::Count(cause));
    conn.connect_failures = conn.connect_failures.saturating_add(1);
    conn.flags |= F::RECONNECT | F::BACKOFF;
    out.push(StreamAction::Close);
}

fn on_closed(conn: &mut Conn, ctx: &StreamCtx, out: &mut Vec<StreamAction>) {
    if conn.flags.intersects(F::HELD) {
        out.push(StreamAction::Unheld);
    }
    let reopen = conn.flags.intersects(F::RECONNECT) && ctx.loading;
    let backoff = conn.flags.intersects(F::BACKOFF);
    conn.flags = F::empty();
    if reopen {
        conn.state = State::Free;
        out.push(StreamAction::Reopen {
            delay_ms: conn.id.min(RETRY_MAX_MS),
            backoff: backoff.then(|| conn.connect_failures.min(REOPEN_ATTEMPT_MAX)),
        });
    } else if ctx.loading {
        // Parked: the owner's next session opens it again.
        conn.state = State::Free;
    } else {
        conn.state = State::Done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(loading: bool) -> StreamCtx {
        StreamCtx {
            now_ns: 1_000,
            loading,
            tls: false,
            multishot_recv: true,
        }
    }

    fn run(conn: &mut Conn, event: Event, ctx: &StreamCtx) -> Vec<StreamAction> {
        let mut out = Vec::new();
        on_event(conn, event, ctx, &mut out);
        out
    }

    fn connected() -> Conn {
        let mut conn = Conn {
            state: State::Connecting,
            ..Conn::FREE
        };
        for op in [Op::Socket, Op::SetSockOpt] {
            assert!(run(&mut conn, Event::Chain { op, res: 0 }, &ctx(true)).is_empty());
        }
        let actions = run(
            &mut conn,
            Event::Chain {
                op: Op::Connect,
                res: 0,
            },
            &ctx(true),
        );
        assert_eq!(actions, vec![StreamAction::ArmRecv, StreamAction::SendOpen]);
        assert_eq!(conn.state, State::Opening);
        conn
    }

    fn opened(conn: &mut Conn) -> Vec<StreamAction> {
        let mut out = Vec::new();
        on_head(conn, Ok(Opened::Stream { body_at: 10 }), &mut out);
        out
    }

    #[test]
    fn a_stream_opens_and_a_second_open_is_a_reopen() {
        let mut conn = connected();
        assert_eq!(
            opened(&mut conn),
            vec![
                StreamAction::EndHandshake,
                StreamAction::Held { reopen: false }
            ]
        );
        assert_eq!(conn.state, State::Streaming);
        // The server ends it in order: reopened without a backoff, after its `retry:`.
        conn.id = 2_500;
        let actions = run(&mut conn, Event::RecvEnd { res: 0 }, &ctx(true));
        assert_eq!(
            actions,
            vec![
                StreamAction::Count(Counter::streams_ended_by_server),
                StreamAction::Close
            ]
        );
        conn.state = State::Closing; // what the shard's close does
        let actions = run(&mut conn, Event::Closed, &ctx(true));
        assert_eq!(
            actions,
            vec![
                StreamAction::Unheld,
                StreamAction::Reopen {
                    delay_ms: 2_500,
                    backoff: None
                }
            ]
        );
        assert_eq!(conn.state, State::Free);
        conn.state = State::Connecting;
        let actions = run(
            &mut conn,
            Event::Chain {
                op: Op::Connect,
                res: 0,
            },
            &ctx(true),
        );
        assert_eq!(actions, vec![StreamAction::ArmRecv, StreamAction::SendOpen]);
        assert_eq!(
            opened(&mut conn),
            vec![
                StreamAction::EndHandshake,
                StreamAction::Held { reopen: true }
            ]
        );
    }

    #[test]
    fn failures_back_off_by_attempt_and_are_counted_by_cause() {
        let mut conn = Conn {
            state: State::Connecting,
            ..Conn::FREE
        };
        let actions = run(
            &mut conn,
            Event::Chain {
                op: Op::Socket,
                res: -libc::EMFILE,
            },
            &ctx(true),
        );
        assert_eq!(
            actions,
            vec![StreamAction::Errno {
                op: "socket",
                errno: libc::EMFILE
            }]
        );
        let actions = run(
            &mut conn,
            Event::Chain {
                op: Op::Connect,
                res: -libc::ECANCELED,
            },
            &ctx(true),
        );
        assert_eq!(
            actions,
            vec![
                StreamAction::EndHandshake,
                StreamAction::Count(Counter::stream_error_connect),
                StreamAction::Close
            ]
        );
        conn.state = State::Closing;
        let actions = run(&mut conn, Event::Closed, &ctx(true));
        assert_eq!(
            actions,
            vec![StreamAction::Reopen {
                delay_ms: 0,
                backoff: Some(1)
            }]
        );
        // By cause: a refusal, a bad head, a timeout, a reset, a TLS failure, broken framing.
        type Case<'a> = (&'a dyn Fn(&mut Conn, &mut Vec<StreamAction>), Counter);
        let cases: [Case<'_>; 6] = [
            (
                &|c, out| on_head(c, Ok(Opened::Refused { status: 500 }), out),
                Counter::stream_error_refused,
            ),
            (
                &|c, out| on_head(c, Err(StreamError::NotAStream), out),
                Counter::stream_error_head,
            ),
            (
                &|c, out| {
                    on_event(
                        c,
                        Event::Broke(Counter::error_request_timeout),
                        &ctx(true),
                        out,
                    )
                },
                Counter::stream_error_timeout,
            ),
            (
                &|c, out| {
                    on_event(
                        c,
                        Event::RecvEnd {
                            res: -libc::ECONNRESET,
                        },
                        &ctx(true),
                        out,
                    )
                },
                Counter::stream_error_reset,
            ),
            (
                &|c, out| on_event(c, Event::Broke(Counter::error_tls_alert), &ctx(true), out),
                Counter::stream_error_tls,
            ),
            (
                &|c, out| {
                    on_head(c, Ok(Opened::Stream { body_at: 0 }), out);
                    out.clear();
                    on_stream_end(c, Err(StreamError::EventTooLarge), out)
                },
                Counter::stream_error_framing,
            ),
        ];
        for (event, cause) in cases {
            let mut conn = connected();
            let mut out = Vec::new();
            event(&mut conn, &mut out);
            assert!(
                out.contains(&StreamAction::Count(cause)),
                "{cause:?}: {out:?}"
            );
            assert_eq!(out.last(), Some(&StreamAction::Close), "{cause:?}");
            assert!(conn.flags.contains(F::RECONNECT | F::BACKOFF), "{cause:?}");
        }
    }

    #[test]
    fn no_stream_offered_lost_session_and_the_run_end() {
        let mut conn = connected();
        let mut out = Vec::new();
        on_head(&mut conn, Ok(Opened::NotOffered), &mut out);
        assert_eq!(
            out,
            vec![
                StreamAction::EndHandshake,
                StreamAction::Count(Counter::streams_not_offered),
                StreamAction::NotOffered,
                StreamAction::Close
            ]
        );
        conn.state = State::Closing;
        assert!(run(&mut conn, Event::Closed, &ctx(true)).is_empty());
        assert_eq!(conn.state, State::Free, "parked, never reopened on its own");

        let mut conn = connected();
        out.clear();
        on_head(&mut conn, Ok(Opened::Refused { status: 404 }), &mut out);
        assert!(out.contains(&StreamAction::Count(Counter::stream_error_session_lost)));
        conn.state = State::Closing;
        assert!(run(&mut conn, Event::Closed, &ctx(true)).is_empty());
        assert_eq!(conn.state, State::Free);

        // cool_down: a held stream closes for good.
        let mut conn = connected();
        opened(&mut conn);
        conn.state = State::Closing;
        assert_eq!(
            run(&mut conn, Event::Closed, &ctx(false)),
            vec![StreamAction::Unheld]
        );
        assert_eq!(conn.state, State::Done);
        // Events after the close began change nothing.
        let mut conn = connected();
        conn.state = State::Closing;
        assert!(run(&mut conn, Event::RecvEnd { res: 0 }, &ctx(true)).is_empty());
        assert!(run(&mut conn, Event::Broke(Counter::error_reset), &ctx(true)).is_empty());
    }

    #[test]
    fn a_lost_session_whose_owner_moved_on_reopens_at_once() {
        // The owner re-initialized while this stream was still opening with its old session
        // (the shard marks it RECONNECT): the 404 closes it and the close reopens it.
        let mut conn = connected();
        conn.flags |= F::RECONNECT;
        let mut out = Vec::new();
        on_head(&mut conn, Ok(Opened::Refused { status: 404 }), &mut out);
        assert!(out.contains(&StreamAction::Count(Counter::stream_error_session_lost)));
        conn.state = State::Closing;
        assert_eq!(
            run(&mut conn, Event::Closed, &ctx(true)),
            vec![StreamAction::Reopen {
                delay_ms: 0,
                backoff: None
            }]
        );
        assert_eq!(conn.state, State::Free);
    }

    #[test]
    fn tls_and_armed_receives() {
        let mut conn = Conn {
            state: State::Connecting,
            ..Conn::FREE
        };
        let tls = StreamCtx {
            tls: true,
            multishot_recv: false,
            ..ctx(true)
        };
        let actions = run(
            &mut conn,
            Event::Chain {
                op: Op::Connect,
                res: 0,
            },
            &tls,
        );
        assert_eq!(actions, vec![StreamAction::StartTls]);
        assert_eq!(conn.state, State::TlsHandshaking);
        let actions = run(&mut conn, Event::TransportReady, &tls);
        assert_eq!(actions, vec![StreamAction::SendOpen, StreamAction::ArmRecv]);
        assert_eq!(conn.state, State::Opening);
    }
}
