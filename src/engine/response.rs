//! One HTTP response to one MCP POST, read from the bytes a connection has received so far.
//! Part of `engine/`, I/O-free: it sits between the shard loop (which owns the bytes, in a
//! provided buffer or a spill buffer) and `proto/` (head parser, chunked decoder, SSE parser,
//! JSON-RPC scanner), and reduces a response to the few facts the engine acts on.
//!
//! A response is read from one contiguous slice: the receive buffer itself when the whole
//! response arrived in one read (the common case, parsed in place), else the connection's spill
//! buffer holding everything received since the response began. A spilled response is parsed
//! again from its start on each read; responses are bounded ([`RESPONSE_BYTES_MAX`]), so this
//! costs at most a few passes over a few KiB, and it keeps the per-connection state at zero
//! bytes between reads.
//!
//! Must not: touch sockets or clocks, allocate beyond the two per-shard scratch buffers it is
//! handed, or panic on any byte sequence (every bad input is a typed [`ReadError`]).

use crate::proto::chunked::{ChunkedDecoder, ChunkedError};
use crate::proto::http_response::{
    BodyFraming, ContentKind, ResponseError, ResponseHead, parse_response_head,
};
use crate::proto::json::{self, RpcMessage, RpcOutcome, RpcScanError};
use crate::proto::sse::{SseItem, SseParser};

/// Longest session id kept (inline in the connection slot). Real servers send 32–36 bytes.
pub const SESSION_ID_BYTES_MAX: usize = 64;

/// Largest response (head + framed body) accepted; MCP replies to our requests are a few
/// hundred bytes (tools/list about 1 KiB). A bigger one is refused rather than buffered.
pub const RESPONSE_BYTES_MAX: usize = 256 * 1024;

/// A session id copied out of a response head, inline (no heap).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionId {
    pub bytes: [u8; SESSION_ID_BYTES_MAX],
    pub len: u8,
}

impl SessionId {
    pub const EMPTY: SessionId = SessionId {
        bytes: [0; SESSION_ID_BYTES_MAX],
        len: 0,
    };

    /// `None` when the id does not fit the inline array.
    pub fn from_bytes(value: &[u8]) -> Option<SessionId> {
        if value.len() > SESSION_ID_BYTES_MAX {
            return None;
        }
        let mut id = SessionId::EMPTY;
        id.bytes[..value.len()].copy_from_slice(value);
        id.len = value.len() as u8;
        Some(id)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SessionId({:?})",
            String::from_utf8_lossy(self.as_bytes())
        )
    }
}

/// What the body of a complete response said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOutcome {
    /// No body, or an empty one (202 to a notification).
    Empty,
    /// A JSON-RPC result. `id` is the numeric id (`None` when absent, null or not a number).
    Result { id: Option<u64>, is_error: bool },
    /// A JSON-RPC error object.
    RpcError { id: Option<u64>, code: i64 },
    /// A body that is not a JSON-RPC response: another media type (rmcp's plain-text 404), or
    /// JSON that does not scan as a response.
    NotRpc,
    /// An event stream that ended without an event carrying a response.
    StreamWithoutResponse,
}

/// A complete response, reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseSummary {
    pub status: u16,
    /// The connection may carry the next request.
    pub keep_alive: bool,
    pub content_type: ContentKind,
    pub session_id: Option<SessionId>,
    pub body: BodyOutcome,
    /// SSE events with an empty `data` (rmcp's priming event) that preceded the response.
    pub priming_events: u32,
    /// `Retry-After` in seconds (503 and 429 answers).
    pub retry_after_s: Option<u64>,
}

/// Result of reading the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The response is not complete: keep the bytes and read more.
    Incomplete,
    /// A whole response occupying the first `consumed` bytes.
    Complete {
        summary: ResponseSummary,
        consumed: usize,
    },
}

/// Why a response could not be read: a peer's bad bytes, counted by cause; the connection is
/// closed (it cannot be resynchronised), never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    Head(ResponseError),
    Chunked(ChunkedError),
    TooLarge,
    SessionIdTooLong,
    /// The peer closed the connection in the middle of a response.
    Truncated,
}

impl ReadError {
    /// Stable snake_case name, used in `errors_by_cause`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadError::Head(error) => error.as_str(),
            ReadError::Chunked(error) => error.as_str(),
            ReadError::TooLarge => "response_too_large",
            ReadError::SessionIdTooLong => "session_id_too_long",
            ReadError::Truncated => "response_truncated",
        }
    }
}

/// Per-shard scratch: the de-chunked body and one SSE event's data. Reused, never shrunk
/// below what a typical response needs.
#[derive(Default)]
pub struct Scratch {
    body: Vec<u8>,
    event: Vec<u8>,
    /// The server-to-client requests the last read found on an event-stream response, in
    /// order, from its start (a response is read again from its start on each read).
    asked: Vec<AskedRequest>,
}

impl Scratch {
    /// The requests the server sent on the response read last (see [`AskedRequest`]).
    pub fn asked(&self) -> &[AskedRequest] {
        &self.asked
    }

    /// Forgets the last read's requests (a read that never reached the reader found none).
    pub fn clear_asked(&mut self) {
        self.asked.clear();
    }
}

/// A server-to-client request (sampling, elicitation, roots/list, ping) on a POST's
/// response stream: the server may hold its answer to the POST until the client has
/// answered this, so it is reported while the response is still incomplete. Owned: found
/// rarely, and only on event streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskedRequest {
    /// The raw id token (quotes included for a string id).
    pub id: Vec<u8>,
    pub method: String,
}

/// Most requests kept from one response; a server asking more at once is not answered past
/// them (each is counted as it is answered).
pub const ASKED_PER_RESPONSE_MAX: usize = 64;

/// Reads one response from the start of `buf`. `at_eof`: the peer has closed, so nothing more
/// will arrive (a body delimited by the close is complete; anything partial is truncated).
pub fn read_response(buf: &[u8], at_eof: bool, scratch: &mut Scratch) -> Result<Read, ReadError> {
    scratch.asked.clear();
    let head = match parse_response_head(buf).map_err(ReadError::Head)? {
        Some(head) => head,
        None if at_eof => return Err(ReadError::Truncated),
        None => return Ok(Read::Incomplete),
    };
    let rest = &buf[head.head_len..];
    let stream = head.content_type == ContentKind::EventStream;
    let (body, body_len, chunked) = match head.framing() {
        BodyFraming::None => (&rest[..0], 0, false),
        BodyFraming::Length(length) => {
            let length = usize::try_from(length).map_err(|_| ReadError::TooLarge)?;
            if length > RESPONSE_BYTES_MAX - head.head_len {
                return Err(ReadError::TooLarge);
            }
            if rest.len() < length {
                if stream {
                    find_asked(rest, &mut scratch.event, &mut scratch.asked);
                }
                return if at_eof {
                    Err(ReadError::Truncated)
                } else {
                    Ok(Read::Incomplete)
                };
            }
            (&rest[..length], length, false)
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            scratch.body.clear();
            let body_out = &mut scratch.body;
            let progress = decoder
                .decode(rest, &mut |data| body_out.extend_from_slice(data))
                .map_err(ReadError::Chunked)?;
            if !progress.done {
                if head.head_len + progress.consumed >= RESPONSE_BYTES_MAX {
                    return Err(ReadError::TooLarge);
                }
                if stream {
                    find_asked(&scratch.body, &mut scratch.event, &mut scratch.asked);
                }
                return if at_eof {
                    Err(ReadError::Truncated)
                } else {
                    Ok(Read::Incomplete)
                };
            }
            (&rest[..0], progress.consumed, true)
        }
        BodyFraming::UntilClose => {
            if rest.len() > RESPONSE_BYTES_MAX - head.head_len {
                return Err(ReadError::TooLarge);
            }
            if !at_eof {
                if stream {
                    find_asked(rest, &mut scratch.event, &mut scratch.asked);
                }
                return Ok(Read::Incomplete);
            }
            (rest, rest.len(), false)
        }
    };
    let summary = summarize(&head, body, chunked, scratch)?;
    Ok(Read::Complete {
        summary,
        consumed: head.head_len + body_len,
    })
}

fn summarize(
    head: &ResponseHead<'_>,
    body: &[u8],
    chunked: bool,
    scratch: &mut Scratch,
) -> Result<ResponseSummary, ReadError> {
    let session_id = match head.session_id {
        Some(value) => Some(SessionId::from_bytes(value).ok_or(ReadError::SessionIdTooLong)?),
        None => None,
    };
    let Scratch {
        body: dechunked,
        event,
        asked,
    } = scratch;
    let body: &[u8] = if chunked { dechunked } else { body };
    if head.content_type == ContentKind::EventStream {
        // A request answered by the server without waiting for the client (or one this
        // read brought together with the response) is answered all the same.
        find_asked(body, event, asked);
    }
    let mut priming_events = 0;
    let outcome = if body.is_empty() {
        BodyOutcome::Empty
    } else {
        match head.content_type {
            ContentKind::Json => rpc_outcome(json::scan_rpc_response(body)),
            ContentKind::EventStream => {
                let (outcome, priming) = first_response_event(body, event);
                priming_events = priming;
                outcome
            }
            ContentKind::Other | ContentKind::None => BodyOutcome::NotRpc,
        }
    };
    Ok(ResponseSummary {
        status: head.status,
        keep_alive: head.keep_alive,
        content_type: head.content_type,
        session_id,
        body: outcome,
        priming_events,
        retry_after_s: head.retry_after_s,
    })
}

/// What a scanned JSON-RPC response says (also for a reply that came on a legacy stream).
pub(crate) fn rpc_outcome(scan: Result<json::RpcResponse<'_>, RpcScanError>) -> BodyOutcome {
    match scan {
        Ok(response) => {
            let id = response.id.and_then(json::as_u64);
            match response.outcome {
                RpcOutcome::Result(result) => BodyOutcome::Result {
                    id,
                    is_error: json::result_is_error(result),
                },
                RpcOutcome::Error { code, .. } => BodyOutcome::RpcError { id, code },
            }
        }
        Err(_) => BodyOutcome::NotRpc,
    }
}

/// Appends the server-to-client requests among the complete events of `body` (an event
/// stream, maybe cut off) to `asked`, up to [`ASKED_PER_RESPONSE_MAX`].
fn find_asked(body: &[u8], event: &mut Vec<u8>, asked: &mut Vec<AskedRequest>) {
    // Most streams carry no request: one pass for the key spares the SSE parse.
    if !body.windows(8).any(|w| w == b"\"method\"") {
        return;
    }
    let mut parser = SseParser::new();
    event.clear();
    parser.feed(body, &mut |item| match item {
        SseItem::DataFragment(fragment) if event.len() + fragment.len() <= RESPONSE_BYTES_MAX => {
            event.extend_from_slice(fragment);
        }
        SseItem::Dispatch { has_data, .. } => {
            if has_data
                && asked.len() < ASKED_PER_RESPONSE_MAX
                && let Ok(RpcMessage::Request(request)) = json::scan_rpc_message(event)
                && let Some(id) = request.id
            {
                asked.push(AskedRequest {
                    id: id.to_vec(),
                    method: request.method.into_owned(),
                });
            }
            event.clear();
        }
        _ => {}
    });
    event.clear();
}

/// Longest event type remembered; only `message` (or none) matters.
const EVENT_TYPE_BYTES_MAX: usize = 16;

/// Finds the first SSE event of type `message` (or none) whose data is a JSON-RPC response.
/// Server requests and notifications on the stream are skipped; events with empty data
/// (priming) are counted.
fn first_response_event(body: &[u8], event: &mut Vec<u8>) -> (BodyOutcome, u32) {
    let mut parser = SseParser::new();
    let mut event_type = [0u8; EVENT_TYPE_BYTES_MAX];
    let mut event_type_len = 0usize;
    let mut found: Option<BodyOutcome> = None;
    let mut priming = 0u32;
    event.clear();
    // Events are handled inside the callback; `event` holds the current event's data.
    parser.feed(body, &mut |item| {
        if found.is_some() {
            return;
        }
        match item {
            SseItem::DataFragment(fragment) => {
                if event.len() + fragment.len() <= RESPONSE_BYTES_MAX {
                    event.extend_from_slice(fragment);
                }
            }
            SseItem::EventType { fragment, first } => {
                if first {
                    event_type_len = 0;
                }
                let take = fragment
                    .len()
                    .min(EVENT_TYPE_BYTES_MAX.saturating_sub(event_type_len));
                event_type[event_type_len..event_type_len + take]
                    .copy_from_slice(&fragment[..take]);
                // A longer type than we keep is certainly not "message": mark it so.
                event_type_len += take;
                if take < fragment.len() {
                    event_type_len = EVENT_TYPE_BYTES_MAX;
                    event_type[0] = b'!';
                }
            }
            SseItem::Dispatch {
                has_data,
                data_empty,
            } => {
                let type_is_message = event_type_len == 0
                    || &event_type[..event_type_len.min(EVENT_TYPE_BYTES_MAX)] == b"message";
                if has_data && data_empty {
                    priming += 1;
                } else if has_data
                    && type_is_message
                    && let Ok(RpcMessage::Response(response)) = json::scan_rpc_message(event)
                {
                    found = Some(rpc_outcome(Ok(response)));
                }
                event.clear();
                event_type_len = 0;
            }
            SseItem::Id { .. }
            | SseItem::IdEnd { .. }
            | SseItem::Retry { .. }
            | SseItem::Comment => {}
        }
    });
    (found.unwrap_or(BodyOutcome::StreamWithoutResponse), priming)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Result<Read, ReadError> {
        read_response(bytes, false, &mut Scratch::default())
    }

    fn complete(bytes: &[u8]) -> (ResponseSummary, usize) {
        match read_all(bytes) {
            Ok(Read::Complete { summary, consumed }) => (summary, consumed),
            other => panic!("expected a complete response, got {other:?}"),
        }
    }

    /// Every proper prefix is Incomplete, and the whole is Complete with the same summary.
    fn check_every_split(bytes: &[u8]) -> ResponseSummary {
        for cut in 0..bytes.len() {
            assert_eq!(
                read_all(&bytes[..cut]),
                Ok(Read::Incomplete),
                "prefix of {cut} bytes of {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let (summary, consumed) = complete(bytes);
        assert_eq!(consumed, bytes.len());
        summary
    }

    /// A tools/call answered on an event stream that first asks the client (sampling, then a
    /// ping), chunked or delimited by the close: each request is reported from the read
    /// that completes its event on, at every cut, and the result still summarizes.
    #[test]
    fn requests_on_a_response_stream_are_reported_before_it_ends() {
        let events = [
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"sampling/createMessage\",\"params\":{}}\n\n",
            ": keep-alive\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[]}}\n\n",
        ];
        let body: String = events.concat();
        let ends: Vec<usize> = events
            .iter()
            .scan(0, |at, e| {
                *at += e.len();
                Some(*at)
            })
            .collect();
        let mut chunked = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let chunked_head = chunked.len();
        for event in events {
            chunked.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let mut until_close =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                .to_vec();
        let close_head = until_close.len();
        until_close.extend_from_slice(body.as_bytes());
        let sampling = AskedRequest {
            id: b"\"s1\"".to_vec(),
            method: "sampling/createMessage".into(),
        };
        let ping = AskedRequest {
            id: b"4".to_vec(),
            method: "ping".into(),
        };
        let mut scratch = Scratch::default();
        for cut in 0..until_close.len() {
            let read = read_response(&until_close[..cut], false, &mut scratch);
            assert_eq!(read, Ok(Read::Incomplete), "cut {cut}");
            let body_bytes = cut.saturating_sub(close_head);
            let expected: Vec<AskedRequest> = [&sampling, &ping]
                .into_iter()
                .zip(&ends)
                .filter(|(_, end)| body_bytes >= **end)
                .map(|(asked, _)| asked.clone())
                .collect();
            assert_eq!(scratch.asked(), &expected[..], "cut {cut}");
        }
        for cut in 0..chunked.len() {
            let read = read_response(&chunked[..cut], false, &mut scratch);
            assert_eq!(read, Ok(Read::Incomplete), "cut {cut}");
            if cut < chunked_head {
                assert!(scratch.asked().is_empty(), "cut {cut}");
            }
        }
        let (summary, _) = match read_response(&chunked, false, &mut scratch) {
            Ok(Read::Complete { summary, consumed }) => (summary, consumed),
            other => panic!("{other:?}"),
        };
        assert_eq!(scratch.asked(), &[sampling.clone(), ping.clone()][..]);
        assert_eq!(
            summary.body,
            BodyOutcome::Result {
                id: Some(9),
                is_error: false
            }
        );
        // A JSON answer asks nothing, and the next read forgets the last one's requests.
        read_response(INIT_JSON, false, &mut scratch).unwrap();
        assert!(scratch.asked().is_empty());
    }

    const INIT_JSON: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: 7f3c1a0e2b9d4c5f8a6e1d2c3b4a5f60\r\nContent-Length: 61\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"x\"}}\n\n\n\n";

    #[test]
    fn test_json_initialize_keeps_session_id() {
        let summary = check_every_split(INIT_JSON);
        assert_eq!(summary.status, 200);
        assert!(summary.keep_alive);
        assert_eq!(
            summary.session_id.map(|s| s.as_bytes().to_vec()),
            Some(b"7f3c1a0e2b9d4c5f8a6e1d2c3b4a5f60".to_vec())
        );
        assert_eq!(
            summary.body,
            BodyOutcome::Result {
                id: Some(1),
                is_error: false
            }
        );
    }

    #[test]
    fn test_sse_chunked_crlf_python_sdk_shape() {
        let event = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":42,\"result\":{\"content\":[],\"isError\":true}}\r\n\r\n";
        let bytes = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n0\r\n\r\n",
            event.len()
        );
        let summary = check_every_split(bytes.as_bytes());
        assert_eq!(summary.content_type, ContentKind::EventStream);
        assert_eq!(
            summary.body,
            BodyOutcome::Result {
                id: Some(42),
                is_error: true
            }
        );
    }

    #[test]
    fn test_sse_rmcp_priming_lf_no_event_line_content_length() {
        // rmcp: priming event with empty data and retry first, no `event:` lines, LF, a
        // comment, a notification before the response, multi-line data.
        let body = "id: 0\nretry: 3000\ndata:\n\n: keep-alive\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"id\":7,\"error\":{\"code\":-32601,\"message\":\"no\"}}\n\n";
        let bytes = format!(
            "HTTP/1.1 200 OK\nContent-Type: text/event-stream\nContent-Length: {}\n\n{body}",
            body.len()
        );
        let summary = check_every_split(bytes.as_bytes());
        assert_eq!(summary.priming_events, 1);
        assert_eq!(
            summary.body,
            BodyOutcome::RpcError {
                id: Some(7),
                code: -32601
            }
        );
    }

    #[test]
    fn test_sse_other_event_type_is_skipped() {
        let body = "event: ping\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n";
        let bytes = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(
            complete(bytes.as_bytes()).0.body,
            BodyOutcome::StreamWithoutResponse
        );
    }

    #[test]
    fn test_accepted_notification_202() {
        let summary = check_every_split(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(summary.status, 202);
        assert_eq!(summary.body, BodyOutcome::Empty);
    }

    #[test]
    fn test_plain_text_404_is_not_rpc() {
        let (summary, _) = complete(
            b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 17\r\n\r\nSession not found",
        );
        assert_eq!(summary.status, 404);
        assert_eq!(summary.body, BodyOutcome::NotRpc);
    }

    #[test]
    fn test_until_close_needs_eof() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
        assert_eq!(read_all(bytes), Ok(Read::Incomplete));
        let read = read_response(bytes, true, &mut Scratch::default()).unwrap();
        match read {
            Read::Complete { summary, consumed } => {
                assert!(!summary.keep_alive);
                assert_eq!(consumed, bytes.len());
                assert_eq!(
                    summary.body,
                    BodyOutcome::Result {
                        id: Some(1),
                        is_error: false
                    }
                );
            }
            Read::Incomplete => panic!("EOF completes a close-delimited body"),
        }
    }

    #[test]
    fn test_eof_mid_response_is_truncated() {
        let cut = &INIT_JSON[..INIT_JSON.len() - 10];
        assert_eq!(
            read_response(cut, true, &mut Scratch::default()),
            Err(ReadError::Truncated)
        );
        assert_eq!(
            read_response(b"HTTP/1.1 200", true, &mut Scratch::default()),
            Err(ReadError::Truncated)
        );
    }

    #[test]
    fn test_bad_bytes_are_typed_errors() {
        assert!(matches!(
            read_all(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(ReadError::Head(_))
        ));
        assert!(matches!(
            read_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(ReadError::Chunked(_))
        ));
        assert_eq!(
            read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"),
            Err(ReadError::TooLarge)
        );
        let long_id = format!(
            "HTTP/1.1 200 OK\r\nMcp-Session-Id: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(65)
        );
        assert_eq!(
            read_all(long_id.as_bytes()),
            Err(ReadError::SessionIdTooLong)
        );
    }

    #[test]
    fn test_bytes_after_response_are_not_consumed() {
        let mut bytes = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec();
        let first = bytes.len();
        bytes.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(complete(&bytes).1, first);
    }

    #[test]
    fn test_json_body_not_a_response() {
        let body = "{\"jsonrpc\":\"2.0\",\"method\":\"x\"}";
        let bytes = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(complete(bytes.as_bytes()).0.body, BodyOutcome::NotRpc);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), eof in proptest::prelude::any::<bool>()) {
            let _ = read_response(&bytes, eof, &mut Scratch::default());
        }
    }
}
