//! The per-connection machine of `run` (ARCHITECTURE.md "The shard loop"): an event — a
//! connect-chain completion, the transport coming up, what the response reader made of the
//! bytes, the end of the receive side, a failed send, a broken connection — goes in with the
//! few facts of the shard it depends on (`Ctx`); the connection's own state changes, and the
//! actions the shard must carry out come out, in order. I/O-free: `shard.rs` turns
//! completions into events and actions into ring operations and shard-wide bookkeeping; the
//! tests here drive it with bytes split at every position, without a socket. TLS is a layer
//! below (`tls/`): its plaintext is fed to the reader like any other bytes.
//!
//! Who writes what: the machine writes `Conn::state`, `session`, `connect_failures` and the
//! flags no shard-wide count mirrors (`ORDERLY_CLOSE`, `BACKOFF`, `CHAIN_FAILED`). A flag a
//! shard count mirrors (`HELD`, `DOWN`, `HANDSHAKING`, `SETTLED`) changes only together with
//! its count, in the action that names it (`Establish`, `MarkDown`, `EndHandshake`…). A request
//! lost with its connection ends in `FailRequest`: the shard's `fail_request`, which faults
//! and the run's end use too, moves it out of `Awaiting` with its segment's figures.

use super::conn::{
    Answer, Broken, Conn, ConnFlags as F, Fed, State, broken, http_error_cause,
    initialize_accepted, load_answer, retry_connect,
};
use super::metrics::Counter;
use super::response::{ReadError, ResponseSummary, SessionId};
use super::template::Request;
use crate::proto::http_response::ResponseError;
use crate::ring::Op;

/// Backoff attempt a held session's reconnect stays at (`backoff_ns`: 200–600 ms).
const HELD_RETRY_ATTEMPT_MAX: u8 = 2;

/// Where the shard's run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Sessions are being opened (baseline and ramp_up).
    Ramp,
    /// The load phases (sustained, failure_recovery, performance).
    Load,
    /// Between the load and cool_down: what is in flight is let finish.
    Drain,
    /// cool_down: sessions end, nothing reconnects.
    Closing,
}

impl Phase {
    fn loading(self) -> bool {
        matches!(self, Phase::Ramp | Phase::Load)
    }
}

/// The shard's facts an event's outcome depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub(crate) now_ns: u64,
    pub(crate) phase: Phase,
    /// 2026-07-28: sessionless, no initialize; a 404 is not a lost session.
    pub(crate) sessionless: bool,
    /// `https://`: a TLS handshake follows the connect.
    pub(crate) tls: bool,
    /// Multishot receives: one is armed as soon as the connection is up.
    pub(crate) multishot_recv: bool,
    /// Connect attempts a new connection gets after its first fails.
    pub(crate) connect_retries: u8,
    /// A fault is being injected: an orderly close now still counts its session as down.
    pub(crate) fault_window: bool,
    /// The targets are replicas of one service (`--failover`, `--replicas`): a connection
    /// whose connect fails asks the shard for another replica before retrying its own.
    pub(crate) failover: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// An op of the connect chain (socket, setsockopt, bind, connect) completed with `res`.
    Chain { op: Op, res: i32 },
    /// TCP is up and, for `https://`, the TLS handshake done.
    TransportReady,
    /// What the response reader made of received bytes.
    Fed(Fed),
    /// The receive side ended: EOF (0) or an error (-errno), after any response the EOF
    /// completed has been fed.
    RecvEnd { res: i32 },
    /// A send completed with an error (-errno).
    SendFailed { res: i32 },
    /// Something besides the bytes broke the connection (a deadline, a TLS error, the ramp's
    /// end) with this cause.
    Broke(Counter),
    /// The close completed (the shard has taken the connection's buffers back).
    Closed,
    /// The answer to `Action::SeekReplica`: `found` = the slot now points at a target of
    /// another replica (its old session means nothing there).
    ReplicaSought { found: bool },
}

/// What the shard carries out, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Count(Counter),
    CountBy(Counter, u64),
    /// A connect-chain op failed with this errno (the per-op errno table).
    Errno {
        op: &'static str,
        errno: i32,
    },
    /// The TCP connect completed after `latency_us` (connect histogram, `connects_ok`).
    Connected {
        latency_us: u64,
    },
    /// Arm the connection's receive.
    ArmRecv,
    /// Start the TLS handshake (the ClientHello goes out).
    StartTls,
    /// Send this request now (its state is set).
    Send {
        request: Request,
        intended_ns: u64,
    },
    /// A new session is open: initialize latency, `sessions_established`.
    SessionOpened {
        initialize_latency_us: u64,
    },
    /// The slot's handshake is over (`HANDSHAKING` and its count).
    EndHandshake,
    /// A re-initialize on the connection begins (`HANDSHAKING` and its count).
    StartHandshake,
    /// The connection holds a session (`HELD`, `SETTLED` and their counts).
    Establish,
    /// The connection gave up for good (`HELD` cleared, `SETTLED` as failed).
    SettleFailed,
    /// A held session stopped answering (`DOWN` and its count).
    MarkDown,
    /// A load request succeeded on the session: it is no longer down; `sent_ns` for the
    /// first success after a fault mark.
    Answered {
        sent_ns: u64,
    },
    /// The answer to a load request, in the figures of the segment it was sent in.
    RecordAnswer {
        /// The load entry of the mix.
        entry: u8,
        latency_corrected_us: u64,
        latency_uncorrected_us: u64,
        answer: Answer,
    },
    /// The request in flight (if any) failed with `cause`; `lost`: with its connection.
    FailRequest {
        cause: Counter,
        lost: bool,
    },
    /// The answer to DELETE: the request ends, the session is no longer held.
    DeleteAnswered {
        ok: bool,
    },
    /// Wait (503) before going on: `Retry-After` seconds, or a jittered backoff.
    BackOff {
        retry_after_s: Option<u64>,
    },
    /// The connection is idle: queue it for a request (or probe a session coming back).
    BecomeReady,
    /// Close the connection; `reconnect`: open a new one afterwards.
    Close {
        reconnect: bool,
    },
    /// The session is no longer counted down (it ends without coming back).
    ClearDown,
    /// The slot no longer holds a session (`HELD` and its count).
    Unhold,
    /// Open a new connection for the slot now.
    Reconnect,
    /// Open a new connection after the backoff of this failed attempt.
    RetryConnect {
        attempt: u8,
    },
    /// The connect failed and the targets are replicas: point the slot at a live target of
    /// another replica if there is one, and answer with `Event::ReplicaSought`. `unreachable`:
    /// the failure says the target is gone (refused, timed out, no route), so other sessions
    /// pass it over for a while; a reset or a local error does not.
    SeekReplica {
        unreachable: bool,
    },
}

/// Runs one event; appends the actions to `out`.
pub(crate) fn on_event(conn: &mut Conn, event: Event, ctx: &Ctx, out: &mut Vec<Action>) {
    match event {
        Event::Chain { op, res } => on_chain(conn, op, res, ctx, out),
        Event::TransportReady => transport_ready(conn, ctx, out),
        Event::Fed(fed) => on_fed(conn, fed, ctx, out),
        Event::RecvEnd { res } => on_recv_end(conn, res, ctx, out),
        Event::SendFailed { res } => {
            let cause = if res == -libc::ECONNRESET || res == -libc::EPIPE {
                Counter::error_reset
            } else {
                Counter::error_send
            };
            broke(conn, cause, ctx, out);
        }
        Event::Broke(cause) => broke(conn, cause, ctx, out),
        Event::Closed => on_closed(conn, ctx, out),
        Event::ReplicaSought { found } => replica_sought(conn, found, ctx, out),
    }
}

/// What becomes of the slot once its connection is closed.
fn on_closed(conn: &mut Conn, ctx: &Ctx, out: &mut Vec<Action>) {
    let reconnect = conn.flags.intersects(F::RECONNECT) && ctx.phase != Phase::Closing;
    let orderly = conn.flags.intersects(F::ORDERLY_CLOSE) && !ctx.fault_window;
    // What described the closed connection goes; what describes the session stays.
    conn.flags &= F::KEPT_ACROSS_RECONNECT;
    if reconnect && !orderly && conn.flags & (F::HELD | F::DOWN) == F::HELD {
        out.push(Action::MarkDown);
    } else if !reconnect && conn.flags.intersects(F::DOWN) {
        out.push(Action::ClearDown);
    }
    if reconnect && conn.flags.intersects(F::BACKOFF) {
        conn.flags &= !F::BACKOFF;
        conn.state = State::Free;
        let mut attempt = conn.connect_failures.saturating_sub(1);
        if conn.flags.intersects(F::HELD) {
            // A held session retries without limit (phased run): keep its backoff short, so
            // a server back from a fault is found within ~0.6 s, not after 5 s.
            attempt = attempt.min(HELD_RETRY_ATTEMPT_MAX);
        }
        out.push(Action::RetryConnect { attempt });
    } else if reconnect {
        conn.connect_failures = 0; // a fresh connect: no failed attempts yet
        conn.state = State::Free;
        out.push(Action::Reconnect);
    } else if conn.flags.intersects(F::HELD) && ctx.phase == Phase::Closing {
        conn.state = State::Done;
    } else {
        conn.state = State::Failed;
        // A connection that held a session and cannot reconnect no longer holds it.
        if conn.flags.intersects(F::HELD) {
            out.push(Action::Unhold);
        }
    }
}

fn on_chain(conn: &mut Conn, op: Op, res: i32, ctx: &Ctx, out: &mut Vec<Action>) {
    let step = super::conn::chain_step(conn, op, res);
    if let Some((name, errno)) = step.failure {
        out.push(Action::Errno { op: name, errno });
        let cause = match (op, errno) {
            (Op::Socket, _) => Counter::error_socket,
            (Op::SetSockOpt, _) => Counter::error_setsockopt,
            (Op::Bind, _) => Counter::error_bind,
            (_, libc::ECONNREFUSED) => Counter::error_connect_refused,
            (_, libc::ETIMEDOUT) => Counter::error_connect_timeout,
            _ => Counter::error_connect_other,
        };
        out.push(Action::Count(cause));
    }
    // The chain's later ops complete as cancelled; the connect's completion decides.
    let Some(connected) = step.connected else {
        return;
    };
    if !connected {
        if res == -libc::ECANCELED && conn.flags.intersects(F::CONNECT_TIMED_OUT) {
            out.push(Action::Count(Counter::error_connect_timeout));
        }
        out.push(Action::EndHandshake);
        if ctx.failover && ctx.phase.loading() {
            let timed_out = res == -libc::ECANCELED && conn.flags.intersects(F::CONNECT_TIMED_OUT);
            let unreachable = timed_out
                || [
                    libc::ECONNREFUSED,
                    libc::ETIMEDOUT,
                    libc::EHOSTUNREACH,
                    libc::ENETUNREACH,
                ]
                .contains(&-res);
            out.push(Action::SeekReplica { unreachable });
        } else {
            retry_or_give_up(conn, ctx, out);
        }
        return;
    }
    conn.connect_failures = 0;
    out.push(Action::Connected {
        latency_us: (ctx.now_ns.saturating_sub(conn.sent_ns) / 1000).max(1),
    });
    if ctx.multishot_recv {
        out.push(Action::ArmRecv);
    }
    if ctx.tls {
        out.push(Action::StartTls);
    } else {
        transport_ready(conn, ctx, out);
    }
}

/// A failed connect retries its own target after a backoff, or gives up (its retries spent).
fn retry_or_give_up(conn: &mut Conn, ctx: &Ctx, out: &mut Vec<Action>) {
    if retry_connect(conn, ctx.connect_retries, ctx.phase.loading()) {
        conn.connect_failures = conn.connect_failures.saturating_add(1);
        conn.flags |= F::BACKOFF;
        out.push(Action::Count(Counter::connect_retries));
        out.push(Action::Close { reconnect: true });
    } else {
        out.push(Action::Close { reconnect: false });
        out.push(Action::SettleFailed);
    }
}

/// After a failed connect with replicas: another replica takes the session at once — a new
/// session there (its `Mcp-Session-Id` is the old replica's, unknown elsewhere), so the
/// connection initializes again; with none left, the connect is retried as without replicas.
fn replica_sought(conn: &mut Conn, found: bool, ctx: &Ctx, out: &mut Vec<Action>) {
    if !found {
        retry_or_give_up(conn, ctx, out);
        return;
    }
    if conn.flags.intersects(F::HELD) {
        out.push(Action::Count(Counter::sessions_failed_over));
    }
    conn.session = SessionId::EMPTY;
    conn.connect_failures = 0;
    out.push(Action::Close { reconnect: true });
}

fn transport_ready(conn: &mut Conn, ctx: &Ctx, out: &mut Vec<Action>) {
    if ctx.sessionless {
        // 2026-07-28: no session and no initialize; the connection is ready at once.
        out.extend([Action::EndHandshake, Action::Establish, Action::BecomeReady]);
    } else if conn.session.is_empty() {
        conn.state = State::Initializing;
        out.push(Action::Send {
            request: Request::Initialize,
            intended_ns: ctx.now_ns,
        });
    } else {
        // A reconnect after the server closed an idle connection: the session lives on.
        out.extend([Action::EndHandshake, Action::BecomeReady]);
    }
}

/// The cause a reader error is counted under.
pub(crate) fn read_error_cause(error: ReadError) -> Counter {
    match error {
        ReadError::Head(ResponseError::HeadTooLarge) | ReadError::TooLarge => {
            Counter::error_response_too_large
        }
        ReadError::Head(_) => Counter::error_response_head,
        ReadError::Chunked(_) => Counter::error_response_chunked,
        ReadError::SessionIdTooLong => Counter::error_session_id_too_long,
        ReadError::Truncated => Counter::error_response_truncated,
    }
}

fn on_fed(conn: &mut Conn, fed: Fed, ctx: &Ctx, out: &mut Vec<Action>) {
    match fed {
        Fed::Incomplete => {}
        Fed::Unexpected => broke(conn, Counter::error_unexpected_bytes, ctx, out),
        Fed::Error(error) => broke(conn, read_error_cause(error), ctx, out),
        Fed::Response(summary) => on_answer(conn, &summary, ctx, out),
    }
}

fn on_answer(conn: &mut Conn, summary: &ResponseSummary, ctx: &Ctx, out: &mut Vec<Action>) {
    if summary.priming_events > 0 {
        out.push(Action::CountBy(
            Counter::sse_priming_events,
            summary.priming_events as u64,
        ));
    }
    if conn.flags.intersects(F::SEND_IN_FLIGHT) {
        // A response before our request was even sent: the peer is not answering us.
        broke(conn, Counter::error_unexpected_bytes, ctx, out);
        return;
    }
    let expected_id = Some(conn.id as u64);
    match conn.state {
        State::Initializing => {
            if !initialize_accepted(summary, expected_id) {
                handshake_failed(conn, summary, ctx, out);
                return;
            }
            // No Mcp-Session-Id: a stateless server; requests then go without one.
            conn.session = summary.session_id.unwrap_or(SessionId::EMPTY);
            conn.state = State::Initialized;
            out.push(Action::Send {
                request: Request::Initialized,
                intended_ns: conn.intended_ns,
            });
        }
        State::Initialized => {
            if !matches!(summary.status, 200 | 202 | 204) {
                handshake_failed(conn, summary, ctx, out);
                return;
            }
            out.extend([
                Action::SessionOpened {
                    initialize_latency_us: (ctx.now_ns.saturating_sub(conn.intended_ns) / 1000)
                        .max(1),
                },
                Action::EndHandshake,
                // Not yet answering if it was down: that takes a load request that succeeds.
                Action::Establish,
            ]);
            after_response(conn, summary, ctx, out);
        }
        State::Awaiting if Request::from_u8(conn.method) == Request::Delete => {
            conn.session = SessionId::EMPTY;
            conn.state = State::Ready;
            out.extend([
                Action::DeleteAnswered {
                    ok: matches!(summary.status, 200 | 202 | 204),
                },
                Action::Close { reconnect: false },
            ]);
        }
        State::Awaiting => on_load_answer(conn, summary, ctx, out),
        _ => broke(conn, Counter::error_unexpected_bytes, ctx, out),
    }
}

fn on_load_answer(conn: &mut Conn, summary: &ResponseSummary, ctx: &Ctx, out: &mut Vec<Action>) {
    let Request::Load(entry) = Request::from_u8(conn.method) else {
        // Awaiting is a load request or DELETE (answered above).
        unreachable!("an awaited request that is not load")
    };
    let answer = load_answer(
        summary.status,
        summary.body,
        Some(conn.id as u64),
        ctx.sessionless,
    );
    conn.state = State::Ready;
    out.push(Action::RecordAnswer {
        entry,
        latency_corrected_us: ctx.now_ns.saturating_sub(conn.intended_ns) / 1000,
        latency_uncorrected_us: ctx.now_ns.saturating_sub(conn.sent_ns) / 1000,
        answer,
    });
    match answer.outcome {
        Ok(()) => out.push(Action::Answered {
            sent_ns: conn.sent_ns,
        }),
        Err(Counter::error_http_503) if summary.keep_alive => {
            back_off(conn, summary, out);
            return;
        }
        Err(Counter::error_session_lost) => {
            // The server forgot the session: initialize a new one on this connection. Until
            // a request on the new one succeeds, it is not answering.
            out.push(Action::MarkDown);
            conn.session = SessionId::EMPTY;
            if summary.keep_alive {
                conn.state = State::Initializing;
                out.extend([
                    Action::StartHandshake,
                    Action::Send {
                        request: Request::Initialize,
                        intended_ns: ctx.now_ns,
                    },
                ]);
            } else {
                out.push(Action::Close { reconnect: true });
            }
            return;
        }
        Err(_) => {}
    }
    after_response(conn, summary, ctx, out);
}

/// initialize (or its notifications/initialized) was not accepted.
fn handshake_failed(conn: &mut Conn, summary: &ResponseSummary, ctx: &Ctx, out: &mut Vec<Action>) {
    if summary.status == 503 && summary.keep_alive && ctx.phase.loading() {
        out.push(Action::Count(Counter::error_http_503));
        back_off(conn, summary, out);
        return;
    }
    out.extend([
        Action::Count(http_error_cause(summary.status)),
        Action::Count(Counter::error_initialize_failed),
        Action::EndHandshake,
        Action::Close { reconnect: false },
        Action::SettleFailed,
    ]);
}

/// A 503 (server full or busy): wait on this connection, then resend initialize or resume.
fn back_off(conn: &mut Conn, summary: &ResponseSummary, out: &mut Vec<Action>) {
    conn.state = State::Waiting;
    out.extend([
        Action::Count(Counter::busy_backoffs),
        Action::BackOff {
            retry_after_s: summary.retry_after_s,
        },
    ]);
}

/// The connection is idle again: queue it for a request, or reconnect when the server said
/// it will close.
fn after_response(conn: &mut Conn, summary: &ResponseSummary, ctx: &Ctx, out: &mut Vec<Action>) {
    if !summary.keep_alive || conn.flags.intersects(F::PEER_EOF) {
        conn.flags |= F::ORDERLY_CLOSE;
        conn.state = State::Ready;
        out.extend([
            Action::Count(Counter::reconnects_connection_close),
            Action::Close {
                reconnect: ctx.phase != Phase::Closing,
            },
        ]);
        return;
    }
    out.push(Action::BecomeReady);
}

fn on_recv_end(conn: &mut Conn, res: i32, ctx: &Ctx, out: &mut Vec<Action>) {
    if conn.state == State::Closing {
        return;
    }
    let cause = match res {
        0 => None,
        e if e == -libc::ECONNRESET || e == -libc::EPIPE => Some(Counter::error_reset),
        e if e == -libc::ECANCELED => None,
        _ => Some(Counter::error_recv),
    };
    match (conn.state, cause) {
        (State::Ready | State::Waiting, None) if conn.flags.intersects(F::HELD) => {
            // The server closed an idle keep-alive connection: reconnect, keep the session.
            conn.flags |= F::ORDERLY_CLOSE;
            out.extend([
                Action::Count(Counter::reconnects_idle_close),
                Action::Close {
                    reconnect: ctx.phase != Phase::Closing,
                },
            ]);
        }
        (_, Some(cause)) => broke(conn, cause, ctx, out),
        (_, None) => broke(conn, Counter::error_closed_mid_request, ctx, out),
    }
}

/// The connection cannot go on (peer reset, bad bytes, timeout, send error): fail what is in
/// flight, close it, and reconnect if it held a session.
fn broke(conn: &mut Conn, cause: Counter, ctx: &Ctx, out: &mut Vec<Action>) {
    match broken(conn.state, conn.flags) {
        Broken::Nothing => return,
        Broken::RequestLost => out.push(Action::FailRequest { cause, lost: true }),
        Broken::CloseChain => {
            // The chain's own completions settle the handshake and the ramp.
            out.extend([Action::Count(cause), Action::Close { reconnect: false }]);
            return;
        }
        Broken::Reconnect => out.push(Action::Count(cause)),
        Broken::RetryHandshake => out.extend([Action::Count(cause), Action::EndHandshake]),
        Broken::FailedForGood { initialize_sent } => {
            out.push(Action::Count(cause));
            if initialize_sent {
                out.push(Action::Count(Counter::error_initialize_failed));
            }
            out.extend([
                Action::EndHandshake,
                Action::Close { reconnect: false },
                Action::SettleFailed,
            ]);
            return;
        }
    }
    // Reconnect what was established (the session, if any, is kept; a stateless 2025
    // server gets a new initialize).
    out.push(Action::Close {
        reconnect: ctx.phase != Phase::Closing && conn.flags.intersects(F::HELD),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::conn::feed;
    use crate::engine::metrics::ShardMetrics;
    use crate::engine::response::Scratch;
    use crate::ring::pool::Pool;

    const NOW_NS: u64 = 5_000_000;

    fn ctx(phase: Phase) -> Ctx {
        Ctx {
            now_ns: NOW_NS,
            phase,
            sessionless: false,
            tls: false,
            multishot_recv: true,
            connect_retries: 2,
            fault_window: false,
            failover: false,
        }
    }

    fn conn(state: State) -> Conn {
        Conn {
            state,
            id: 7,
            intended_ns: 1_000_000,
            sent_ns: 2_000_000,
            ..Conn::FREE
        }
    }

    fn run(conn: &mut Conn, event: Event, ctx: &Ctx) -> Vec<Action> {
        let mut out = Vec::new();
        on_event(conn, event, ctx, &mut out);
        out
    }

    /// Feeds `bytes` in two receives split at `at`; the actions of both.
    fn feed_split(conn: &mut Conn, bytes: &[u8], at: usize, ctx: &Ctx) -> Vec<Action> {
        let (mut spills, mut scratch, mut metrics) =
            (Pool::new(), Scratch::default(), ShardMetrics::new());
        let mut out = Vec::new();
        for part in [&bytes[..at], &bytes[at..]] {
            if part.is_empty() {
                continue;
            }
            let fed = feed(conn, part, false, &mut spills, &mut scratch, &mut metrics);
            on_event(conn, Event::Fed(fed), ctx, &mut out);
        }
        assert_eq!(spills.in_use(), 0, "split {at}: a spill buffer left taken");
        out
    }

    fn json_response(status: &str, extra_headers: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn ok_response(id: u32) -> Vec<u8> {
        json_response(
            "200 OK",
            "",
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#),
        )
    }

    /// initialize → notifications/initialized → ready, every response split at every byte.
    #[test]
    fn session_opens_with_every_response_split_at_every_byte() {
        let ctx = ctx(Phase::Ramp);
        let initialize = json_response(
            "200 OK",
            "Mcp-Session-Id: s-1\r\n",
            r#"{"jsonrpc":"2.0","id":7,"result":{"protocolVersion":"2025-11-25"}}"#,
        );
        let accepted = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec();
        for at in 0..=initialize.len() {
            let mut c = conn(State::Initializing);
            let actions = feed_split(&mut c, &initialize, at, &ctx);
            assert_eq!(
                actions,
                [Action::Send {
                    request: Request::Initialized,
                    intended_ns: 1_000_000
                }],
                "split {at}"
            );
            assert_eq!(
                (c.state, c.session.as_bytes()),
                (State::Initialized, &b"s-1"[..])
            );
            for at in 0..=accepted.len() {
                let mut c = c;
                let actions = feed_split(&mut c, &accepted, at, &ctx);
                assert_eq!(
                    actions,
                    [
                        Action::SessionOpened {
                            initialize_latency_us: 4_000
                        },
                        Action::EndHandshake,
                        Action::Establish,
                        Action::BecomeReady
                    ],
                    "split {at}"
                );
            }
        }
    }

    #[test]
    fn a_load_answer_split_at_every_byte_counts_once() {
        let ctx = ctx(Phase::Load);
        let response = ok_response(7);
        for at in 0..=response.len() {
            let mut c = Conn {
                method: Request::Load(2).to_u8(),
                ..conn(State::Awaiting)
            };
            let actions = feed_split(&mut c, &response, at, &ctx);
            assert_eq!(
                actions,
                [
                    Action::RecordAnswer {
                        entry: 2,
                        latency_corrected_us: 4_000,
                        latency_uncorrected_us: 3_000,
                        answer: Answer {
                            outcome: Ok(()),
                            rpc_error_code: None
                        },
                    },
                    Action::Answered { sent_ns: 2_000_000 },
                    Action::BecomeReady,
                ],
                "split {at}"
            );
            assert_eq!(c.state, State::Ready);
        }
    }

    fn awaiting_tool_call() -> Conn {
        Conn {
            method: Request::Load(2).to_u8(),
            flags: F::HELD,
            ..conn(State::Awaiting)
        }
    }

    fn answer_of(actions: &[Action]) -> Result<(), Counter> {
        match actions.first() {
            Some(Action::RecordAnswer { answer, .. }) => answer.outcome,
            other => panic!("no answer recorded: {other:?}"),
        }
    }

    #[test]
    fn busy_lost_session_and_close_answers() {
        let load = ctx(Phase::Load);
        // 503 on a kept-alive connection: counted, then a wait of Retry-After on it.
        let mut c = awaiting_tool_call();
        let busy = json_response("503 Service Unavailable", "Retry-After: 2\r\n", "{}");
        let actions = feed_split(&mut c, &busy, 0, &load);
        assert_eq!(answer_of(&actions), Err(Counter::error_http_503));
        assert_eq!(
            actions[1..],
            [
                Action::Count(Counter::busy_backoffs),
                Action::BackOff {
                    retry_after_s: Some(2)
                }
            ]
        );
        assert_eq!(c.state, State::Waiting);

        // 404: the server forgot the session; a new initialize on the same connection.
        let mut c = Conn {
            session: SessionId::from_bytes(b"old").unwrap(),
            ..awaiting_tool_call()
        };
        let lost = json_response("404 Not Found", "", "{}");
        let actions = feed_split(&mut c, &lost, 0, &load);
        assert_eq!(answer_of(&actions), Err(Counter::error_session_lost));
        assert_eq!(
            actions[1..],
            [
                Action::MarkDown,
                Action::StartHandshake,
                Action::Send {
                    request: Request::Initialize,
                    intended_ns: NOW_NS
                }
            ]
        );
        assert_eq!((c.state, c.session.is_empty()), (State::Initializing, true));
        // … and with `Connection: close`, on a new connection.
        let mut c = awaiting_tool_call();
        let lost_closing = json_response("404 Not Found", "Connection: close\r\n", "{}");
        let actions = feed_split(&mut c, &lost_closing, 0, &load);
        assert_eq!(
            actions[1..],
            [Action::MarkDown, Action::Close { reconnect: true }]
        );
        // A 404 is not a lost session without sessions (2026-07-28).
        let mut c = awaiting_tool_call();
        let sessionless = Ctx {
            sessionless: true,
            ..load
        };
        let actions = feed_split(&mut c, &lost, 0, &sessionless);
        assert_eq!(answer_of(&actions), Err(Counter::error_http_404));
        assert_eq!(actions[1..], [Action::BecomeReady]);

        // `Connection: close` on a success: an orderly reconnect, none in cool_down.
        for (phase, reconnect) in [(Phase::Load, true), (Phase::Closing, false)] {
            let mut c = awaiting_tool_call();
            let closing = json_response(
                "200 OK",
                "Connection: close\r\n",
                r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
            );
            let actions = feed_split(&mut c, &closing, 0, &ctx(phase));
            assert_eq!(
                actions[1..],
                [
                    Action::Answered { sent_ns: 2_000_000 },
                    Action::Count(Counter::reconnects_connection_close),
                    Action::Close { reconnect }
                ]
            );
            assert!(c.flags.intersects(F::ORDERLY_CLOSE));
        }
    }

    #[test]
    fn a_refused_initialize_by_cause_and_a_busy_one_waits() {
        let mut c = conn(State::Initializing);
        let refused = json_response("401 Unauthorized", "", "{}");
        assert_eq!(
            feed_split(&mut c, &refused, 0, &ctx(Phase::Ramp)),
            [
                Action::Count(Counter::error_http_401),
                Action::Count(Counter::error_initialize_failed),
                Action::EndHandshake,
                Action::Close { reconnect: false },
                Action::SettleFailed
            ]
        );
        let mut c = conn(State::Initializing);
        let busy = json_response("503 Service Unavailable", "", "{}");
        assert_eq!(
            feed_split(&mut c, &busy, 0, &ctx(Phase::Ramp)),
            [
                Action::Count(Counter::error_http_503),
                Action::Count(Counter::busy_backoffs),
                Action::BackOff {
                    retry_after_s: None
                }
            ]
        );
        assert_eq!(c.state, State::Waiting);
        // An answer to another id is not the session's.
        let mut c = conn(State::Initializing);
        let actions = feed_split(&mut c, &ok_response(8), 0, &ctx(Phase::Ramp));
        assert_eq!(actions[0], Action::Count(Counter::error_not_rpc));
    }

    #[test]
    fn bytes_nobody_asked_for_break_the_connection() {
        let load = ctx(Phase::Load);
        // Idle and held: counted, reconnected with the session.
        let mut c = Conn {
            flags: F::HELD,
            ..conn(State::Ready)
        };
        let actions = feed_split(&mut c, &ok_response(7), 0, &load);
        assert_eq!(
            actions,
            [
                Action::Count(Counter::error_unexpected_bytes),
                Action::Close { reconnect: true }
            ]
        );
        // An answer while our request is still being sent.
        let mut c = Conn {
            flags: F::HELD | F::SEND_IN_FLIGHT,
            ..awaiting_tool_call()
        };
        let actions = feed_split(&mut c, &ok_response(7), 0, &load);
        assert_eq!(
            actions,
            [
                Action::FailRequest {
                    cause: Counter::error_unexpected_bytes,
                    lost: true
                },
                Action::Close { reconnect: true }
            ]
        );
        // Garbage: a typed reader error.
        let mut c = awaiting_tool_call();
        let actions = feed_split(&mut c, b"HTTP/1.1 2xx OK\r\n\r\n", 0, &load);
        assert_eq!(
            actions[0],
            Action::FailRequest {
                cause: Counter::error_response_head,
                lost: true
            }
        );
    }

    #[test]
    fn the_end_of_the_receive_side_by_state() {
        let load = ctx(Phase::Load);
        let mut idle = Conn {
            flags: F::HELD,
            ..conn(State::Ready)
        };
        assert_eq!(
            run(&mut idle, Event::RecvEnd { res: 0 }, &load),
            [
                Action::Count(Counter::reconnects_idle_close),
                Action::Close { reconnect: true }
            ]
        );
        let mut busy = awaiting_tool_call();
        assert_eq!(
            run(&mut busy, Event::RecvEnd { res: 0 }, &load),
            [
                Action::FailRequest {
                    cause: Counter::error_closed_mid_request,
                    lost: true
                },
                Action::Close { reconnect: true }
            ]
        );
        let mut reset = awaiting_tool_call();
        assert_eq!(
            run(
                &mut reset,
                Event::RecvEnd {
                    res: -libc::ECONNRESET
                },
                &load
            )[0],
            Action::FailRequest {
                cause: Counter::error_reset,
                lost: true
            }
        );
        let mut closing = conn(State::Closing);
        assert!(run(&mut closing, Event::RecvEnd { res: 0 }, &load).is_empty());
        let mut send = awaiting_tool_call();
        assert_eq!(
            run(&mut send, Event::SendFailed { res: -libc::EPIPE }, &load)[0],
            Action::FailRequest {
                cause: Counter::error_reset,
                lost: true
            }
        );
    }

    #[test]
    fn the_connect_chain_by_outcome() {
        let ramp = ctx(Phase::Ramp);
        // socket fails, the rest of the chain is cancelled: one retry, then given up.
        let mut c = Conn {
            state: State::Connecting,
            ..Conn::FREE
        };
        assert_eq!(
            run(
                &mut c,
                Event::Chain {
                    op: Op::Socket,
                    res: -libc::EMFILE
                },
                &ramp
            ),
            [
                Action::Errno {
                    op: "socket",
                    errno: libc::EMFILE
                },
                Action::Count(Counter::error_socket)
            ]
        );
        let cancelled = Event::Chain {
            op: Op::Connect,
            res: -libc::ECANCELED,
        };
        assert_eq!(
            run(&mut c, cancelled, &ramp),
            [
                Action::EndHandshake,
                Action::Count(Counter::connect_retries),
                Action::Close { reconnect: true }
            ]
        );
        assert_eq!(c.connect_failures, 1);
        c.connect_failures = 2;
        let refused = Event::Chain {
            op: Op::Connect,
            res: -libc::ECONNREFUSED,
        };
        assert_eq!(
            run(&mut c, refused, &ramp)[2..],
            [
                Action::EndHandshake,
                Action::Close { reconnect: false },
                Action::SettleFailed
            ]
        );
        // A connect the timeout cancelled counts as a timeout.
        let mut c = Conn {
            state: State::Connecting,
            flags: F::CONNECT_TIMED_OUT,
            ..Conn::FREE
        };
        assert_eq!(
            run(&mut c, cancelled, &ramp)[0],
            Action::Count(Counter::error_connect_timeout)
        );
        // Connected: TLS first for https, else initialize; sessionless: ready at once.
        let connected = Event::Chain {
            op: Op::Connect,
            res: 0,
        };
        let mut c = conn(State::Connecting);
        let tls = Ctx { tls: true, ..ramp };
        assert_eq!(
            run(&mut c, connected, &tls),
            [
                Action::Connected { latency_us: 3_000 },
                Action::ArmRecv,
                Action::StartTls
            ]
        );
        let mut c = conn(State::Connecting);
        assert_eq!(
            run(&mut c, connected, &ramp)[2],
            Action::Send {
                request: Request::Initialize,
                intended_ns: NOW_NS
            }
        );
        assert_eq!(c.state, State::Initializing);
        let mut c = conn(State::Connecting);
        let sessionless = Ctx {
            sessionless: true,
            ..ramp
        };
        assert_eq!(
            run(&mut c, Event::TransportReady, &sessionless),
            [Action::EndHandshake, Action::Establish, Action::BecomeReady]
        );
        // A reconnect of a held session: no new initialize.
        let mut c = Conn {
            session: SessionId::from_bytes(b"kept").unwrap(),
            ..conn(State::Connecting)
        };
        assert_eq!(
            run(&mut c, Event::TransportReady, &ramp),
            [Action::EndHandshake, Action::BecomeReady]
        );
    }

    #[test]
    fn a_refused_connect_moves_a_held_session_to_another_replica() {
        let replicas = Ctx {
            failover: true,
            ..ctx(Phase::Load)
        };
        let refused = Event::Chain {
            op: Op::Connect,
            res: -libc::ECONNREFUSED,
        };
        let mut c = Conn {
            state: State::Connecting,
            flags: F::HELD | F::DOWN,
            session: SessionId::from_bytes(b"abc").expect("fits"),
            ..Conn::FREE
        };
        // The shard is asked first; nothing is retried or closed yet.
        assert_eq!(
            run(&mut c, refused, &replicas)[2..],
            [
                Action::EndHandshake,
                Action::SeekReplica { unreachable: true }
            ]
        );
        // Found: the old replica's session goes, the connection reconnects at once (no
        // backoff) and initializes there.
        let mut moved = c;
        assert_eq!(
            run(&mut moved, Event::ReplicaSought { found: true }, &replicas),
            [
                Action::Count(Counter::sessions_failed_over),
                Action::Close { reconnect: true }
            ]
        );
        assert!(moved.session.is_empty());
        assert!(!moved.flags.intersects(F::BACKOFF));
        // None left: the session is kept and its own target retried after a backoff.
        let mut stays = c;
        assert_eq!(
            run(&mut stays, Event::ReplicaSought { found: false }, &replicas),
            [
                Action::Count(Counter::connect_retries),
                Action::Close { reconnect: true }
            ]
        );
        assert_eq!(stays.session.as_bytes(), b"abc");
        assert!(stays.flags.intersects(F::BACKOFF));
        // A connection that never held a session moves without counting a failover.
        let mut fresh = Conn {
            state: State::Connecting,
            ..Conn::FREE
        };
        assert_eq!(
            run(&mut fresh, Event::ReplicaSought { found: true }, &replicas),
            [Action::Close { reconnect: true }]
        );
        // Without replicas the connect is retried as before.
        let mut single = Conn {
            state: State::Connecting,
            flags: F::HELD,
            ..Conn::FREE
        };
        assert_eq!(
            run(&mut single, refused, &ctx(Phase::Load))[2..],
            [
                Action::EndHandshake,
                Action::Count(Counter::connect_retries),
                Action::Close { reconnect: true }
            ]
        );
    }

    #[test]
    fn a_delete_answer_ends_the_session() {
        let mut c = Conn {
            method: Request::Delete.to_u8(),
            session: SessionId::from_bytes(b"s").unwrap(),
            ..conn(State::Awaiting)
        };
        let accepted = b"HTTP/1.1 204 No Content\r\n\r\n".to_vec();
        assert_eq!(
            feed_split(&mut c, &accepted, 3, &ctx(Phase::Closing)),
            [
                Action::DeleteAnswered { ok: true },
                Action::Close { reconnect: false }
            ]
        );
        assert!(c.session.is_empty());
    }

    #[test]
    fn what_becomes_of_a_closed_slot() {
        let load = ctx(Phase::Load);
        let closed = |flags: F, connect_failures: u8, ctx: &Ctx| {
            let mut c = Conn {
                flags,
                connect_failures,
                ..conn(State::Closing)
            };
            let actions = run(&mut c, Event::Closed, ctx);
            (c, actions)
        };
        // A reset held session: down until it answers again, reconnected at once.
        let (c, actions) = closed(F::HELD | F::RECONNECT | F::RECV_ARMED, 0, &load);
        assert_eq!(actions, [Action::MarkDown, Action::Reconnect]);
        assert_eq!((c.state, c.flags), (State::Free, F::HELD));
        // The server closed it in order: not down — unless a fault is being injected.
        let orderly = F::HELD | F::RECONNECT | F::ORDERLY_CLOSE;
        assert_eq!(closed(orderly, 0, &load).1, [Action::Reconnect]);
        let faulting = Ctx {
            fault_window: true,
            failover: false,
            ..load
        };
        assert_eq!(
            closed(orderly, 0, &faulting).1,
            [Action::MarkDown, Action::Reconnect]
        );
        // A failed connect retries after the backoff of its attempt, a held one capped.
        let (c, actions) = closed(F::RECONNECT | F::BACKOFF, 2, &load);
        assert_eq!(actions, [Action::RetryConnect { attempt: 1 }]);
        assert!(!c.flags.intersects(F::BACKOFF));
        let (_, actions) = closed(F::HELD | F::DOWN | F::RECONNECT | F::BACKOFF, 9, &load);
        assert_eq!(
            actions,
            [Action::RetryConnect {
                attempt: HELD_RETRY_ATTEMPT_MAX
            }]
        );
        // cool_down: a held session is done, a down one stops counting as down.
        let closing = ctx(Phase::Closing);
        let (c, actions) = closed(F::HELD | F::RECONNECT, 0, &closing);
        assert_eq!((c.state, actions), (State::Done, vec![]));
        let (_, actions) = closed(F::HELD | F::DOWN, 0, &closing);
        assert_eq!(actions, [Action::ClearDown]);
        // Given up during the load: failed, the session no longer held.
        let (c, actions) = closed(F::HELD | F::DOWN, 0, &load);
        assert_eq!(
            (c.state, actions),
            (State::Failed, vec![Action::ClearDown, Action::Unhold])
        );
        let (c, actions) = closed(F::empty(), 0, &load);
        assert_eq!((c.state, actions), (State::Failed, vec![]));
    }
}
