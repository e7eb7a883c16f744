//! A session's server-to-client stream, read incrementally (issue 11): the GET stream of the
//! 2025 eras or the `subscriptions/listen` stream of 2026-07-28 — a response that never ends,
//! whose events arrive one read at a time for the life of the run. Part of `engine/`,
//! I/O-free like `response.rs`: the shard hands it each read's bytes; it hands back what the
//! stream said (a notification with its method and, from `serve --notify-every`, its send
//! time; a server-to-client request to answer; a `retry:`; the last event id; the end).
//!
//! Unlike a POST's response, a stream is never re-parsed from its start: the chunked decoder
//! and the SSE parser are 16-byte `Copy` states kept between reads, so an idle stream costs
//! those bytes and no buffer. Only an event's data that straddles reads is kept, in the
//! `data` buffer the caller lends (and may take back whenever [`StreamReader::mid_event`] is
//! false).

use super::response::BodyOutcome;
use crate::proto::chunked::{ChunkedDecoder, ChunkedError};
use crate::proto::http_response::{BodyFraming, ContentKind, ResponseError, parse_response_head};
use crate::proto::json::{self, RpcMessage, RpcScanError};
use crate::proto::sse::{SseItem, SseParser};

/// The event type of the legacy transport's first event.
const ENDPOINT_EVENT: &[u8] = b"endpoint";
/// `StreamReader::endpoint_matched` once the event type is known not to be `endpoint`.
const NOT_ENDPOINT: u8 = u8::MAX;

/// Longest event data kept (a notification is a few hundred bytes); past it the stream is
/// ended as malformed rather than buffered without bound.
pub const EVENT_BYTES_MAX: usize = 64 * 1024;
/// Longest `id:` kept for `Last-Event-ID`; a longer one is not remembered.
pub const EVENT_ID_BYTES_MAX: usize = 32;

/// What the head of the stream's response said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// 200 `text/event-stream`: events follow, from byte `body_at` of the buffer.
    Stream { body_at: usize },
    /// The server offers no such stream (405, as the spec lets it): not an error of the run.
    NotOffered,
    /// Any other answer: counted by status.
    Refused { status: u16 },
}

/// Why a stream broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    Head(ResponseError),
    Chunked(ChunkedError),
    /// A 200 that is not an event stream, or a body framed by length (a stream cannot be).
    NotAStream,
    /// One event's data passed [`EVENT_BYTES_MAX`].
    EventTooLarge,
}

impl StreamError {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamError::Head(e) => e.as_str(),
            StreamError::Chunked(e) => e.as_str(),
            StreamError::NotAStream => "stream_not_event_stream",
            StreamError::EventTooLarge => "stream_event_too_large",
        }
    }
}

/// One thing a stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem<'a> {
    /// A JSON-RPC notification: its method and `_meta["mcpstorm/sentAtUs"]` when present.
    Notification {
        method: &'a str,
        sent_at_us: Option<u64>,
    },
    /// A server-to-client request (sampling, elicitation, roots/list, ping): answered on the
    /// ring's reply connection (`reply_conn.rs`).
    Request { id: &'a [u8], method: &'a str },
    /// A JSON-RPC response: on a legacy HTTP+SSE stream, the answer to a request POSTed to
    /// the endpoint; on any other stream, one nobody asked for there.
    Response(BodyOutcome),
    /// The legacy transport's `endpoint` event: where the session POSTs (its data, a URI).
    Endpoint(&'a [u8]),
    /// An event whose data is not JSON-RPC.
    Malformed(Option<RpcScanError>),
    /// An event with an empty `data:` (rmcp's priming event).
    Priming,
    /// `retry:`: the delay the server asks before a reconnect.
    Retry { delay_ms: u64 },
}

#[derive(Debug, Clone, Copy, Default)]
enum Framing {
    #[default]
    Chunked,
    UntilClose,
}

/// The stream's state between reads: 16 + 16 bytes of decoders, the last event id, flags.
#[derive(Debug, Clone, Default)]
pub struct StreamReader {
    chunked: ChunkedDecoder,
    sse: SseParser,
    framing: Framing,
    /// The event being read has data in the caller's buffer.
    mid_event: bool,
    /// The last dispatched event's id (for `Last-Event-ID` on reconnect); the id buffer the
    /// `id:` lines set, which becomes it at the next dispatch (as the SSE spec has it: an
    /// event cut off before its blank line does not count); and one being read.
    last_id: [u8; EVENT_ID_BYTES_MAX],
    last_id_len: u8,
    id_buffer: [u8; EVENT_ID_BYTES_MAX],
    id_buffer_len: u8,
    candidate_id: [u8; EVENT_ID_BYTES_MAX],
    candidate_len: u8,
    candidate_too_long: bool,
    /// Bytes of the current event's type that matched `endpoint` so far ([`NOT_ENDPOINT`]
    /// once one did not; 0 with no type).
    endpoint_matched: u8,
    ended: bool,
}

/// What one body read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The server ended the stream (last chunk read): reopen it.
    pub ended: bool,
}

/// Reads the stream's response head from `buf`; `None` until it is complete.
pub fn open(buf: &[u8]) -> Result<Option<(Opened, StreamReader)>, StreamError> {
    let Some(head) = parse_response_head(buf).map_err(StreamError::Head)? else {
        return Ok(None);
    };
    let opened = match head.status {
        200 => {
            let framing = match head.framing() {
                BodyFraming::Chunked => Framing::Chunked,
                BodyFraming::UntilClose => Framing::UntilClose,
                BodyFraming::None | BodyFraming::Length(_) => {
                    return Err(StreamError::NotAStream);
                }
            };
            if head.content_type != ContentKind::EventStream {
                return Err(StreamError::NotAStream);
            }
            let reader = StreamReader {
                framing,
                ..StreamReader::default()
            };
            return Ok(Some((
                Opened::Stream {
                    body_at: head.head_len,
                },
                reader,
            )));
        }
        405 => Opened::NotOffered,
        status => Opened::Refused { status },
    };
    Ok(Some((opened, StreamReader::default())))
}

impl StreamReader {
    /// Whether the caller's data buffer holds part of an event (else it may be taken back).
    pub fn mid_event(&self) -> bool {
        self.mid_event
    }

    /// A reopened stream remembers the last event id of the one before it, until it sends
    /// one of its own.
    pub fn resume_from(&mut self, earlier: &StreamReader) {
        if self.last_id_len == 0 {
            self.last_id = earlier.last_id;
            self.last_id_len = earlier.last_id_len;
            self.id_buffer = earlier.last_id;
            self.id_buffer_len = earlier.last_id_len;
        }
    }

    /// The last event id the stream sent, for `Last-Event-ID` on a reconnect.
    pub fn last_event_id(&self) -> &[u8] {
        &self.last_id[..self.last_id_len as usize]
    }

    /// Feeds body bytes (after the head); `data` is the event data buffer (kept between calls
    /// while [`mid_event`](Self::mid_event)); each item goes to `out`.
    pub fn feed(
        &mut self,
        input: &[u8],
        data: &mut Vec<u8>,
        out: &mut impl FnMut(StreamItem<'_>),
    ) -> Result<Progress, StreamError> {
        if self.ended {
            return Ok(Progress { ended: true });
        }
        let mut failure = None;
        match self.framing {
            Framing::UntilClose => self.feed_sse(input, data, out, &mut failure),
            Framing::Chunked => {
                let mut chunked = self.chunked;
                let progress = chunked
                    .decode(input, &mut |bytes| {
                        if failure.is_none() {
                            self.feed_sse(bytes, data, out, &mut failure);
                        }
                    })
                    .map_err(StreamError::Chunked);
                self.chunked = chunked;
                if progress?.done {
                    self.ended = true;
                }
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(Progress { ended: self.ended })
    }

    fn feed_sse(
        &mut self,
        bytes: &[u8],
        data: &mut Vec<u8>,
        out: &mut impl FnMut(StreamItem<'_>),
        failure: &mut Option<StreamError>,
    ) {
        let mut sse = self.sse;
        sse.feed(bytes, &mut |item| {
            if failure.is_some() {
                return;
            }
            match item {
                SseItem::DataFragment(fragment) => {
                    if data.len() + fragment.len() > EVENT_BYTES_MAX {
                        *failure = Some(StreamError::EventTooLarge);
                        return;
                    }
                    data.extend_from_slice(fragment);
                    self.mid_event = true;
                }
                SseItem::Id { fragment, first } => {
                    if first {
                        self.candidate_len = 0;
                        self.candidate_too_long = false;
                    }
                    let at = self.candidate_len as usize;
                    if at + fragment.len() > EVENT_ID_BYTES_MAX {
                        self.candidate_too_long = true;
                    } else {
                        self.candidate_id[at..at + fragment.len()].copy_from_slice(fragment);
                        self.candidate_len += fragment.len() as u8;
                    }
                }
                SseItem::IdEnd { valid } => {
                    if valid && !self.candidate_too_long {
                        self.id_buffer = self.candidate_id;
                        self.id_buffer_len = self.candidate_len;
                    }
                }
                SseItem::Retry { delay_ms } => out(StreamItem::Retry { delay_ms }),
                SseItem::EventType { fragment, first } => {
                    if first {
                        self.endpoint_matched = 0;
                    }
                    let at = self.endpoint_matched as usize;
                    self.endpoint_matched = match ENDPOINT_EVENT.get(at..at + fragment.len()) {
                        _ if self.endpoint_matched == NOT_ENDPOINT => NOT_ENDPOINT,
                        Some(expected) if expected == fragment => (at + fragment.len()) as u8,
                        _ => NOT_ENDPOINT,
                    };
                }
                SseItem::Dispatch {
                    has_data,
                    data_empty,
                } => {
                    let endpoint = self.endpoint_matched as usize == ENDPOINT_EVENT.len();
                    self.endpoint_matched = 0;
                    if has_data && endpoint {
                        out(StreamItem::Endpoint(data));
                    } else if has_data && data_empty {
                        out(StreamItem::Priming);
                    } else if has_data {
                        out(classify(data));
                    }
                    data.clear();
                    self.mid_event = false;
                    self.last_id = self.id_buffer;
                    self.last_id_len = self.id_buffer_len;
                }
                SseItem::Comment => {}
            }
        });
        self.sse = sse;
    }
}

/// What one event's data was.
fn classify(data: &[u8]) -> StreamItem<'_> {
    match json::scan_rpc_message(data) {
        Ok(RpcMessage::Request(request)) => {
            let method = match request.method {
                std::borrow::Cow::Borrowed(method) => method,
                // An escaped method name is not one the engine acts on.
                std::borrow::Cow::Owned(_) => "(escaped)",
            };
            match request.id {
                Some(id) => StreamItem::Request { id, method },
                None => StreamItem::Notification {
                    method,
                    sent_at_us: request
                        .params
                        .and_then(|p| json::object_member(p, "_meta").ok().flatten())
                        .and_then(|m| json::object_member(m, "mcpstorm/sentAtUs").ok().flatten())
                        .and_then(json::as_u64),
                },
            }
        }
        Ok(RpcMessage::Response(response)) => {
            StreamItem::Response(super::response::rpc_outcome(Ok(response)))
        }
        Err(e) => StreamItem::Malformed(Some(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a whole stream said, fed in pieces cut at `cuts`.
    #[derive(Debug, Default, PartialEq)]
    struct Seen {
        items: Vec<String>,
        ended: bool,
        error: Option<StreamError>,
        last_id: Vec<u8>,
    }

    fn read(stream: &[u8], cuts: &[usize]) -> (Opened, Seen) {
        let mut seen = Seen::default();
        let mut opened = None;
        for end in (1..=stream.len()).filter(|e| cuts.contains(e) || *e == stream.len()) {
            if let Some(found) = open(&stream[..end]).unwrap() {
                opened = Some(found);
                break;
            }
        }
        let (opened, mut reader) = opened.expect("a complete head");
        let Opened::Stream { body_at } = opened else {
            return (opened, seen);
        };
        let mut data = Vec::new();
        let mut at = body_at;
        let mut bounds: Vec<usize> = cuts
            .iter()
            .copied()
            .filter(|&c| c > body_at && c < stream.len())
            .collect();
        bounds.push(stream.len());
        for end in bounds {
            let result = reader.feed(&stream[at..end], &mut data, &mut |item| {
                seen.items.push(format!("{item:?}"))
            });
            at = end;
            match result {
                Ok(progress) => seen.ended |= progress.ended,
                Err(e) => {
                    seen.error = Some(e);
                    break;
                }
            }
            if !reader.mid_event() {
                assert!(data.is_empty(), "no data kept between events");
            }
        }
        seen.last_id = reader.last_event_id().to_vec();
        (opened, seen)
    }

    fn chunked(events: &[&str], last: bool) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for event in events {
            crate::proto::chunked::write_chunk(&mut out, event.as_bytes());
        }
        if last {
            crate::proto::chunked::write_last_chunk(&mut out);
        }
        out
    }

    const NOTE: &str = "id: 7\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":{\"seq\":1},\"_meta\":{\"mcpstorm/sentAtUs\":1700000000000001}}}\n\n";

    fn whole() -> Vec<u8> {
        chunked(
            &[
                ": keep-alive\n\n",
                "event: endpoint\ndata: /messages/?session_id=ab\n\n",
                "event: end\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}\n\n",
                "retry: 3000\nid: 0\ndata:\n\n",
                NOTE,
                "data: {\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"sampling/createMessage\",\"params\":{}}\r\n\r\n",
                "data: {\"jsonrpc\":\"2.0\",\n",
                "data: \"method\":\"notifications/tools/list_changed\"}\n\n",
                "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
                "data: not json\n\n",
            ],
            true,
        )
    }

    #[test]
    fn a_stream_says_the_same_split_anywhere() {
        let stream = whole();
        let (opened, expected) = read(&stream, &[]);
        assert!(matches!(opened, Opened::Stream { .. }));
        assert_eq!(
            expected.items,
            vec![
                format!("{:?}", StreamItem::Endpoint(b"/messages/?session_id=ab")),
                "Notification { method: \"notifications/x\", sent_at_us: None }".into(),
                "Retry { delay_ms: 3000 }".to_string(),
                "Priming".into(),
                "Notification { method: \"notifications/message\", sent_at_us: Some(1700000000000001) }".into(),
                "Request { id: [34, 115, 49, 34], method: \"sampling/createMessage\" }".into(),
                "Notification { method: \"notifications/tools/list_changed\", sent_at_us: None }".into(),
                "Response(Result { id: Some(1), is_error: false })".into(),
                format!("{:?}", StreamItem::Malformed(json::scan_rpc_message(b"not json").err())),
            ]
        );
        assert!(expected.ended);
        assert_eq!(expected.last_id, b"7");
        for cut in 1..stream.len() {
            assert_eq!(read(&stream, &[cut]).1, expected, "cut at {cut}");
        }
        for a in (1..stream.len()).step_by(7) {
            for b in (a + 1..stream.len()).step_by(11) {
                assert_eq!(read(&stream, &[a, b]).1, expected, "cuts at {a}, {b}");
            }
        }
    }

    #[test]
    fn a_held_stream_is_not_ended_and_keeps_no_data_between_events() {
        let stream = chunked(&[NOTE, ": keep-alive\n\n"], false);
        let (_, seen) = read(&stream, &[]);
        assert!(!seen.ended);
        assert_eq!(seen.items.len(), 1);
        // Close-delimited (HTTP/1.0 style) works the same.
        let mut plain =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                .to_vec();
        plain.extend_from_slice(NOTE.as_bytes());
        let (_, seen) = read(&plain, &[]);
        assert_eq!(seen.items.len(), 1);
    }

    #[test]
    fn heads_that_are_not_streams() {
        let opened = |head: &str| open(head.as_bytes()).map(|o| o.map(|(o, _)| o));
        assert_eq!(
            opened("HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"),
            Ok(Some(Opened::NotOffered))
        );
        assert_eq!(
            opened("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            Ok(Some(Opened::Refused { status: 404 }))
        );
        assert_eq!(
            opened(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Err(StreamError::NotAStream)
        );
        assert_eq!(
            opened(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 5\r\n\r\n"
            ),
            Err(StreamError::NotAStream)
        );
        assert_eq!(opened("HTTP/1.1 200 OK\r\nContent-Type: text/ev"), Ok(None));
    }

    #[test]
    fn oversized_events_and_bad_framing_end_the_stream_typed() {
        let big = format!("data: {}\n\n", "x".repeat(EVENT_BYTES_MAX + 1));
        let (_, seen) = read(&chunked(&[&big], false), &[]);
        assert_eq!(seen.error, Some(StreamError::EventTooLarge));
        let mut bad = chunked(&[NOTE], false);
        bad.extend_from_slice(b"zz\r\n");
        let (_, seen) = read(&bad, &[]);
        assert!(
            matches!(seen.error, Some(StreamError::Chunked(_))),
            "{seen:?}"
        );
        assert_eq!(seen.items.len(), 1, "what came before the bad bytes counts");
        // An id too long to keep is not remembered; the one before stays.
        let long_id = format!("id: {}\ndata: {{}}\n\n", "9".repeat(EVENT_ID_BYTES_MAX + 1));
        let (_, seen) = read(&chunked(&[NOTE, &long_id], false), &[]);
        assert_eq!(seen.last_id, b"7");
        // An event cut off before its blank line does not move the id a reconnect sends.
        let (_, seen) = read(&chunked(&[NOTE, "id: 8\ndata: {"], false), &[]);
        assert_eq!(seen.last_id, b"7");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_body(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut stream = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            stream.extend_from_slice(&body);
            let _ = read(&stream, &[stream.len() / 2]);
        }
    }
}
