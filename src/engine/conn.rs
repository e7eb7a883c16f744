//! One client connection's state and what its bytes and answers mean, I/O-free: the 112-byte
//! slot (`Conn`), its lifecycle (`State`) and flags, feeding received bytes to the response
//! reader (`feed`), and the classifications `machine.rs` decides with — how an answer to a
//! load request counts, what a broken connection means in each state, which deadline is due.
//! Part of `engine/`; the machine turns events into actions, `shard.rs` keeps the ring
//! plumbing and carries the actions out.

use super::metrics::{Counter, ShardMetrics};
use super::response::{
    BodyOutcome, Read, ReadError, ResponseSummary, Scratch, SessionId, read_response,
};
use crate::ring::pool::Pool;
use ConnFlags as F;

pub(crate) const NONE: u32 = u32::MAX;

bitflags::bitflags! {
    /// `Conn::flags`: which operations are in flight, and what the connection is for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct ConnFlags: u16 {
        const RECV_ARMED = 1;
        const SEND_IN_FLIGHT = 2;
        const SHUTDOWN_IN_FLIGHT = 4;
        const CLOSE_SUBMITTED = 8;
        /// After the close, open a new connection and keep the session.
        const RECONNECT = 16;
        /// The connect chain was cancelled by the connect timeout.
        const CONNECT_TIMED_OUT = 32;
        const CANCEL_SUBMITTED = 64;
        /// Counted once towards the ramp (first session established, or failed for good).
        const SETTLED = 128;
        /// A session is held (counted in `held`).
        const HELD = 256;
        /// The peer closed its side: the current response ends at EOF or was cut off.
        const PEER_EOF = 512;
        /// An op of the connect chain failed; the chain ends with the Connect completion.
        const CHAIN_FAILED = 1024;
        /// Linked into the shard's idle FIFO (it stays linked across a close and reconnect; the pop
        /// skips it unless it is Ready).
        const IDLE_QUEUED = 2048;
        /// The close is for a connect retry: reconnect after a backoff.
        const BACKOFF = 4096;
        /// Counted in `Shard::handshakes` (connecting or initializing).
        const HANDSHAKING = 8192;
        /// A held session lost its connection (fault, reset, server gone) and has not answered since:
        /// counted in `Shard::down` until a request or a re-initialize on it succeeds.
        const DOWN = 16384;
        /// The server closed the connection in order (idle keep-alive close, `Connection: close`): its
        /// session reconnects without counting as down — unless the reconnect itself fails.
        const ORDERLY_CLOSE = 32768;
    }
}

impl ConnFlags {
    /// Flags that outlive a connection (they describe the slot's session and list
    /// membership).
    pub(crate) const KEPT_ACROSS_RECONNECT: ConnFlags = ConnFlags::SETTLED
        .union(ConnFlags::HELD)
        .union(ConnFlags::IDLE_QUEUED)
        .union(ConnFlags::BACKOFF)
        .union(ConnFlags::DOWN);
}

/// Connection lifecycle (ARCHITECTURE.md "The shard loop").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    Free,
    Connecting,
    /// initialize sent, its response awaited.
    Initializing,
    /// notifications/initialized sent, the 202 awaited.
    Initialized,
    Ready,
    /// `https://`: TCP connected, the TLS handshake in progress (initialize follows).
    TlsHandshaking,
    /// A load request is in flight.
    Awaiting,
    /// Connected, nothing in flight: waiting out a 503 backoff before resending initialize
    /// (session not held yet) or before the next request (held).
    Waiting,
    Closing,
    Failed,
    Done,
    /// A stream connection (`--streams`): its open request sent, the response head awaited.
    Opening,
    /// A stream connection whose stream is open: events arrive for the life of the run.
    Streaming,
    /// The reply connection (`reply_conn.rs`): an answer to a server-to-client request sent,
    /// the server's answer to it awaited.
    Replying,
}

/// Per-connection state: 112 bytes including the inline session id. Buffers (spill, send) are
/// per-shard pools, held only while a response is partial or a request unsent.
///
/// A stream connection (`--streams`, slots after the ring's sessions) uses the same slot:
/// `session` is a copy of its owner's session id, `next_idle` the owner's slot, `id` the
/// server's `retry:` in ms, `method` 1 once it has been opened (a later open is a reopen),
/// `spill` the head or the event data that straddles reads (see `stream_conn.rs`).
#[derive(Clone, Copy)]
pub(crate) struct Conn {
    /// Intended send time of the request in flight (open model), ns since the epoch.
    pub(crate) intended_ns: u64,
    /// When the request in flight was handed to the kernel.
    pub(crate) sent_ns: u64,
    pub(crate) spill: u32,
    pub(crate) send_buf: u32,
    /// JSON-RPC id of the request in flight (ids count up per connection, so an id is unique
    /// among the session's in-flight requests).
    pub(crate) id: u32,
    /// Next connection (global index in the shard) in the idle FIFO, when `F::IDLE_QUEUED`.
    pub(crate) next_idle: u32,
    pub(crate) generation: u16,
    pub(crate) flags: ConnFlags,
    pub(crate) state: State,
    /// The method in flight (`Method as u8`).
    pub(crate) method: u8,
    /// Connect attempts of this slot that failed in a row (reset when one succeeds).
    pub(crate) connect_failures: u8,
    pub(crate) chain_pending: u8,
    /// The shard's segment epoch when the request in flight was sent (see `Earlier`).
    pub(crate) epoch: u8,
    pub(crate) session: SessionId,
}

/// Bytes of one connection slot (reported beside the RSS figure).
pub const CONN_BYTES: usize = std::mem::size_of::<Conn>();
/// The slot size is part of the memory figure: a change is deliberate (update the doc above).
const _: () = assert!(CONN_BYTES == 112, "Conn changed size: update its doc");

impl Conn {
    pub(crate) const FREE: Conn = Conn {
        intended_ns: 0,
        sent_ns: 0,
        spill: NONE,
        send_buf: NONE,
        id: 0,
        next_idle: NONE,
        generation: 0,
        flags: ConnFlags::empty(),
        state: State::Free,
        method: 0,
        connect_failures: 0,
        chain_pending: 0,
        epoch: 0,
        session: SessionId::EMPTY,
    };
}

/// What `feed` found in received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fed {
    Incomplete,
    Response(ResponseSummary),
    Error(ReadError),
    Unexpected,
}

pub(crate) fn conn_set_state(conn: &mut Conn, state: State) {
    conn.state = state;
}

/// Feeds received bytes to the connection's response reader: parsed in place when no earlier
/// part of the response is spilled, else appended to the spill buffer and parsed there. A
/// partial response goes to (or stays in) a spill buffer from the shard's pool.
pub(crate) fn feed(
    conn: &mut Conn,
    data: &[u8],
    at_eof: bool,
    spills: &mut Pool,
    scratch: &mut Scratch,
    metrics: &mut ShardMetrics,
) -> Fed {
    scratch.clear_asked();
    if !matches!(
        conn.state,
        State::Initializing | State::Initialized | State::Awaiting | State::Replying
    ) {
        return Fed::Unexpected;
    }
    let (read, total) = if conn.spill == NONE {
        (read_response(data, at_eof, scratch), data.len())
    } else {
        let spill = &mut spills.bufs[conn.spill as usize];
        spill.extend_from_slice(data);
        (read_response(spill, at_eof, scratch), spill.len())
    };
    match read {
        Ok(Read::Incomplete) => {
            if conn.spill == NONE {
                conn.spill = spills.take();
                spills.bufs[conn.spill as usize].extend_from_slice(data);
                metrics.incr(Counter::spill_uses);
            }
            Fed::Incomplete
        }
        Ok(Read::Complete { summary, consumed }) => {
            if conn.spill != NONE {
                spills.give(conn.spill);
                conn.spill = NONE;
            }
            if consumed < total {
                // We send one request at a time: bytes after its response answer nothing.
                Fed::Unexpected
            } else {
                Fed::Response(summary)
            }
        }
        Err(error) => {
            if conn.spill != NONE {
                spills.give(conn.spill);
                conn.spill = NONE;
            }
            Fed::Error(error)
        }
    }
}

/// How the answer to a load request counts: a success, or the cause it is counted under
/// (with the JSON-RPC error code, when the server sent one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) outcome: Result<(), Counter>,
    pub(crate) rpc_error_code: Option<i64>,
}

/// Classifies the answer to the load request with JSON-RPC id `expected_id`. `sessionless`
/// (2026-07-28): a 404 is an unknown method or path, not a lost session.
pub(crate) fn load_answer(
    status: u16,
    body: BodyOutcome,
    expected_id: Option<u64>,
    sessionless: bool,
) -> Answer {
    let mut rpc_error_code = None;
    let outcome = match (status, body) {
        (200, BodyOutcome::Result { id, is_error }) if id == expected_id => {
            if is_error {
                Err(Counter::requests_is_error)
            } else {
                Ok(())
            }
        }
        (200, BodyOutcome::RpcError { id, code }) if id == expected_id => {
            rpc_error_code = Some(code);
            Err(Counter::requests_rpc_error)
        }
        (200, BodyOutcome::Result { .. } | BodyOutcome::RpcError { .. }) => {
            Err(Counter::error_id_mismatch)
        }
        (200, BodyOutcome::StreamWithoutResponse) => Err(Counter::error_stream_without_response),
        (200, _) => Err(Counter::error_not_rpc),
        (404, _) if !sessionless => Err(Counter::error_session_lost),
        (status, _) => Err(http_error_cause(status)),
    };
    Answer {
        outcome,
        rpc_error_code,
    }
}

/// The cause of an HTTP status that is not the answer asked for.
pub(crate) fn http_error_cause(status: u16) -> Counter {
    match status {
        503 => Counter::error_http_503,
        401 => Counter::error_http_401,
        403 => Counter::error_http_403,
        404 => Counter::error_http_404,
        400..=499 => Counter::error_http_4xx,
        500..=599 => Counter::error_http_5xx,
        200..=299 => Counter::error_not_rpc,
        _ => Counter::error_http_other,
    }
}

/// The answer to initialize opens the session: 200 with a result for its id.
pub(crate) fn initialize_accepted(summary: &ResponseSummary, expected_id: Option<u64>) -> bool {
    summary.status == 200
        && matches!(summary.body, BodyOutcome::Result { id, .. } if id == expected_id)
}

/// What a connection that cannot go on (reset, bad bytes, timeout, TLS error) means, by the
/// state it broke in. The shard counts the cause and carries the action out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Broken {
    /// Already closing or closed: nothing more to do.
    Nothing,
    /// The connect chain was in flight: its own completions settle the handshake and the ramp.
    CloseChain,
    /// A load request was in flight: it failed (lost with its connection); reconnect.
    RequestLost,
    /// Between requests (idle, or waiting out a 503): reconnect if a session is held.
    Reconnect,
    /// A held session's re-initialize (or its TLS handshake) broke: reconnect and try again.
    RetryHandshake,
    /// The first handshake broke: the connection never got a session.
    FailedForGood {
        /// initialize was sent (counted also as `initialize_failed`); false for TLS.
        initialize_sent: bool,
    },
}

pub(crate) fn broken(state: State, flags: ConnFlags) -> Broken {
    let held = flags.intersects(F::HELD);
    match state {
        // Stream connections have their own machine (`stream_conn.rs`).
        State::Closing
        | State::Free
        | State::Failed
        | State::Done
        | State::Opening
        | State::Streaming
        | State::Replying => Broken::Nothing,
        State::Awaiting => Broken::RequestLost,
        State::Connecting => Broken::CloseChain,
        State::Waiting if !flags.intersects(F::HANDSHAKING) => Broken::Reconnect,
        State::Ready => Broken::Reconnect,
        State::TlsHandshaking | State::Initializing | State::Initialized | State::Waiting
            if held =>
        {
            Broken::RetryHandshake
        }
        State::TlsHandshaking => Broken::FailedForGood {
            initialize_sent: false,
        },
        State::Initializing | State::Initialized | State::Waiting => Broken::FailedForGood {
            initialize_sent: true,
        },
    }
}

/// One completion of a connect chain, as every connection machine reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainStep {
    /// The op failed first in its chain (not cancelled by an earlier failure): its name and
    /// errno, to count.
    pub(crate) failure: Option<(&'static str, i32)>,
    /// The CONNECT's completion, which ends the chain: whether it connected. `None` for the
    /// chain's earlier ops (the CONNECT's completion decides).
    pub(crate) connected: Option<bool>,
}

/// Reads a chain completion: a failing op marks the chain failed (`CHAIN_FAILED`, so the
/// CONNECT's completion, cancelled by the link, fails it too), and the CONNECT's says how the
/// chain ended.
pub(crate) fn chain_step(conn: &mut Conn, op: crate::ring::Op, res: i32) -> ChainStep {
    use crate::ring::Op;
    let first_failure = res < 0 && res != -libc::ECANCELED;
    let failure = first_failure.then(|| {
        let name = match op {
            Op::Socket => "socket",
            Op::SetSockOpt => "setsockopt",
            Op::Bind => "bind",
            _ => "connect",
        };
        (name, -res)
    });
    if op != Op::Connect {
        if first_failure {
            conn.flags |= F::CHAIN_FAILED;
        }
        return ChainStep {
            failure,
            connected: None,
        };
    }
    let failed = res < 0 || conn.flags.intersects(F::CHAIN_FAILED);
    conn.flags &= !F::CHAIN_FAILED;
    ChainStep {
        failure,
        connected: Some(!failed),
    }
}

/// What kind of failure a load connection's cause is, for the machines of the connections
/// beside it (streams, replies) that count failures by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Tls,
    Timeout,
    Connect,
    Reset,
}

pub(crate) fn failure_kind(cause: Counter) -> FailureKind {
    match cause {
        Counter::error_tls_certificate
        | Counter::error_tls_alert
        | Counter::error_tls_protocol
        | Counter::error_tls_handshake_timeout
        | Counter::error_tls_truncated => FailureKind::Tls,
        Counter::error_request_timeout => FailureKind::Timeout,
        Counter::error_connect_refused
        | Counter::error_connect_timeout
        | Counter::error_connect_other => FailureKind::Connect,
        _ => FailureKind::Reset,
    }
}

/// The timeouts a sweep checks a connection against, ns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect_ns: u64,
    pub(crate) request_ns: u64,
}

/// What a sweep of the slab finds for one connection, `waited_ns` after its last send (or
/// connect start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Nothing due.
    None,
    /// The connect chain ran past the connect timeout: cancel it (once).
    CancelConnect,
    /// The TLS handshake or a request ran out of time: the connection breaks with this cause.
    Expired(Counter),
    /// A load request is in flight and still within its time (the sweep notes its age).
    LoadInFlight,
}

pub(crate) fn deadline(conn: &Conn, waited_ns: u64, limits: Timeouts) -> Deadline {
    match conn.state {
        State::Connecting
            if waited_ns > limits.connect_ns
                && conn.chain_pending > 0
                && !conn.flags.intersects(F::CANCEL_SUBMITTED) =>
        {
            Deadline::CancelConnect
        }
        State::TlsHandshaking if waited_ns > limits.connect_ns => {
            Deadline::Expired(Counter::error_tls_handshake_timeout)
        }
        State::Awaiting
        | State::Initializing
        | State::Initialized
        | State::Opening
        | State::Replying
            if waited_ns > limits.request_ns =>
        {
            Deadline::Expired(Counter::error_request_timeout)
        }
        State::Awaiting if conn.method != super::template::Method::Delete as u8 => {
            Deadline::LoadInFlight
        }
        _ => Deadline::None,
    }
}

/// After a failed connect chain: try again (after a backoff) or give the connection up. A held
/// session keeps trying while the run loads (a restarted server comes back; the coordinator's
/// deadlines end the run); a new one gets `retries_max` more attempts.
pub(crate) fn retry_connect(conn: &Conn, retries_max: u8, loading: bool) -> bool {
    loading && (conn.connect_failures < retries_max || conn.flags.intersects(F::HELD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_fits_its_budget() {
        assert!(
            std::mem::size_of::<Conn>() <= 128,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }

    fn conn_awaiting() -> Conn {
        Conn {
            state: State::Awaiting,
            ..Conn::FREE
        }
    }

    #[test]
    fn test_awaiting_split_response_spills_then_completes() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 36\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
        for cut in 1..response.len() {
            let mut conn = conn_awaiting();
            let mut spills = Pool::new();
            let mut scratch = Scratch::default();
            let mut metrics = ShardMetrics::new();
            let first = feed(
                &mut conn,
                &response[..cut],
                false,
                &mut spills,
                &mut scratch,
                &mut metrics,
            );
            assert!(matches!(first, Fed::Incomplete));
            assert!(conn.spill != NONE);
            let second = feed(
                &mut conn,
                &response[cut..],
                false,
                &mut spills,
                &mut scratch,
                &mut metrics,
            );
            let Fed::Response(summary) = second else {
                panic!("cut {cut}: response not complete")
            };
            assert_eq!(summary.status, 200);
            assert_eq!(conn.spill, NONE, "spill returned to the pool");
            assert_eq!(spills.in_use(), 0);
        }
    }

    #[test]
    fn test_ready_unsolicited_bytes_are_unexpected() {
        let mut conn = Conn {
            state: State::Ready,
            ..Conn::FREE
        };
        let fed = feed(
            &mut conn,
            b"HTTP/1.1 200 OK\r\n",
            false,
            &mut Pool::new(),
            &mut Scratch::default(),
            &mut ShardMetrics::new(),
        );
        assert!(matches!(fed, Fed::Unexpected));
    }

    #[test]
    fn test_awaiting_extra_bytes_after_response_are_unexpected() {
        let mut conn = conn_awaiting();
        let fed = feed(
            &mut conn,
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\nHTTP/1.1",
            false,
            &mut Pool::new(),
            &mut Scratch::default(),
            &mut ShardMetrics::new(),
        );
        assert!(matches!(fed, Fed::Unexpected));
    }

    #[test]
    fn test_awaiting_garbage_is_a_typed_error_and_frees_spill() {
        let mut conn = conn_awaiting();
        let mut spills = Pool::new();
        let mut scratch = Scratch::default();
        let mut metrics = ShardMetrics::new();
        let _ = feed(
            &mut conn,
            b"HTTP/1.1 2",
            false,
            &mut spills,
            &mut scratch,
            &mut metrics,
        );
        let fed = feed(
            &mut conn,
            b"xx OK\r\n\r\n",
            false,
            &mut spills,
            &mut scratch,
            &mut metrics,
        );
        assert!(matches!(fed, Fed::Error(ReadError::Head(_))));
        assert_eq!(conn.spill, NONE);
    }

    #[test]
    fn load_answers_by_cause() {
        let ok = BodyOutcome::Result {
            id: Some(7),
            is_error: false,
        };
        assert_eq!(load_answer(200, ok, Some(7), false).outcome, Ok(()));
        assert_eq!(
            load_answer(200, ok, Some(8), false).outcome,
            Err(Counter::error_id_mismatch)
        );
        let tool_failed = BodyOutcome::Result {
            id: Some(7),
            is_error: true,
        };
        assert_eq!(
            load_answer(200, tool_failed, Some(7), false).outcome,
            Err(Counter::requests_is_error)
        );
        let rpc = BodyOutcome::RpcError {
            id: Some(7),
            code: -32602,
        };
        assert_eq!(
            load_answer(200, rpc, Some(7), false),
            Answer {
                outcome: Err(Counter::requests_rpc_error),
                rpc_error_code: Some(-32602)
            }
        );
        assert_eq!(
            load_answer(200, BodyOutcome::StreamWithoutResponse, Some(7), false).outcome,
            Err(Counter::error_stream_without_response)
        );
        assert_eq!(
            load_answer(200, BodyOutcome::NotRpc, Some(7), false).outcome,
            Err(Counter::error_not_rpc)
        );
        // A session-era 404 is a lost session; sessionless, a 404 is just a 404.
        assert_eq!(
            load_answer(404, BodyOutcome::Empty, Some(7), false).outcome,
            Err(Counter::error_session_lost)
        );
        assert_eq!(
            load_answer(404, BodyOutcome::Empty, Some(7), true).outcome,
            Err(Counter::error_http_404)
        );
        for (status, cause) in [
            (401, Counter::error_http_401),
            (403, Counter::error_http_403),
            (429, Counter::error_http_4xx),
            (503, Counter::error_http_503),
            (502, Counter::error_http_5xx),
            (302, Counter::error_http_other),
        ] {
            assert_eq!(
                load_answer(status, BodyOutcome::Empty, Some(7), false).outcome,
                Err(cause),
                "{status}"
            );
        }
    }

    #[test]
    fn what_a_broken_connection_means_in_each_state() {
        use Broken::*;
        assert_eq!(broken(State::Closing, F::HELD), Nothing);
        assert_eq!(broken(State::Done, ConnFlags::empty()), Nothing);
        assert_eq!(broken(State::Connecting, ConnFlags::empty()), CloseChain);
        assert_eq!(broken(State::Awaiting, F::HELD), RequestLost);
        assert_eq!(broken(State::Ready, F::HELD), Reconnect);
        assert_eq!(broken(State::Waiting, F::HELD), Reconnect);
        assert_eq!(
            broken(State::Waiting, F::HELD | F::HANDSHAKING),
            RetryHandshake
        );
        assert_eq!(
            broken(State::Initializing, F::HELD | F::HANDSHAKING),
            RetryHandshake
        );
        assert_eq!(
            broken(State::TlsHandshaking, F::HELD | F::HANDSHAKING),
            RetryHandshake
        );
        assert_eq!(
            broken(State::TlsHandshaking, F::HANDSHAKING),
            FailedForGood {
                initialize_sent: false
            }
        );
        assert_eq!(
            broken(State::Initialized, F::HANDSHAKING),
            FailedForGood {
                initialize_sent: true
            }
        );
    }

    /// A JSON answer and an SSE answer, split at every byte into two receives: one response,
    /// the same summary, and no spill left behind.
    #[test]
    fn feed_split_at_every_byte() {
        let json = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 36\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
        let sse = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n3b\r\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n\r\n0\r\n\r\n";
        for response in [&json[..], &sse[..]] {
            for split in 0..=response.len() {
                let mut conn = Conn {
                    state: State::Awaiting,
                    id: 1,
                    ..Conn::FREE
                };
                let (mut spills, mut scratch, mut metrics) =
                    (Pool::new(), Scratch::default(), ShardMetrics::new());
                let mut fed = Vec::new();
                for part in [&response[..split], &response[split..]] {
                    if part.is_empty() {
                        continue; // a receive never completes with no bytes (that is EOF)
                    }
                    fed.push(feed(
                        &mut conn,
                        part,
                        false,
                        &mut spills,
                        &mut scratch,
                        &mut metrics,
                    ));
                }
                let Some(Fed::Response(summary)) = fed.pop() else {
                    panic!("split {split}: no response");
                };
                assert!(
                    fed.iter().all(|f| matches!(f, Fed::Incomplete)),
                    "split {split}"
                );
                assert_eq!(summary.status, 200);
                assert_eq!(
                    summary.body,
                    BodyOutcome::Result {
                        id: Some(1),
                        is_error: false
                    },
                    "split {split}"
                );
                assert_eq!(conn.spill, NONE, "split {split}");
            }
        }
    }

    #[test]
    fn deadlines_by_state() {
        let limits = Timeouts {
            connect_ns: 10,
            request_ns: 100,
        };
        let at = |state, waited| {
            deadline(
                &Conn {
                    state,
                    chain_pending: 3,
                    method: super::super::template::Method::Ping as u8,
                    ..Conn::FREE
                },
                waited,
                limits,
            )
        };
        assert_eq!(at(State::Connecting, 5), Deadline::None);
        assert_eq!(at(State::Connecting, 11), Deadline::CancelConnect);
        let cancelled = Conn {
            state: State::Connecting,
            chain_pending: 3,
            flags: F::CANCEL_SUBMITTED,
            ..Conn::FREE
        };
        assert_eq!(
            deadline(&cancelled, 11, limits),
            Deadline::None,
            "cancelled once"
        );
        assert_eq!(
            at(State::TlsHandshaking, 11),
            Deadline::Expired(Counter::error_tls_handshake_timeout)
        );
        assert_eq!(at(State::Initializing, 50), Deadline::None);
        assert_eq!(
            at(State::Initialized, 101),
            Deadline::Expired(Counter::error_request_timeout)
        );
        assert_eq!(at(State::Awaiting, 50), Deadline::LoadInFlight);
        assert_eq!(
            at(State::Awaiting, 101),
            Deadline::Expired(Counter::error_request_timeout)
        );
        assert_eq!(at(State::Ready, 1_000), Deadline::None);
    }

    #[test]
    fn connect_retries() {
        let fresh = Conn::FREE;
        assert!(retry_connect(&fresh, 3, true));
        assert!(
            !retry_connect(&fresh, 3, false),
            "not while the run winds down"
        );
        let spent = Conn {
            connect_failures: 3,
            ..Conn::FREE
        };
        assert!(!retry_connect(&spent, 3, true));
        let held = Conn {
            connect_failures: 200,
            flags: F::HELD,
            ..Conn::FREE
        };
        assert!(retry_connect(&held, 3, true), "a held session keeps trying");
    }
}
