//! `serve --legacy-sse`: the legacy HTTP+SSE transport of 2024-11-05, so `run --transport sse`
//! can be tested at scale. `GET /sse` opens a session's stream, whose first event names its
//! endpoint (`/messages?session_id=TOKEN`); each POST there is answered `202 Accepted` and its
//! JSON-RPC answer (and any notification the request produced) goes out on that stream. Part
//! of `server/`: the handler (`mcp.rs`) answers the POST as it would a streamable-HTTP one,
//! and this module turns that response into stream events.
//!
//! The POST and its stream are usually on different shards (each accepts its own
//! connections): the events go into the stream shard's inbox, a mutex-guarded queue, and an
//! eventfd that shard's leader ring polls wakes it — no shard polls another.

use crate::proto::chunked::{self, ChunkedDecoder};
use crate::proto::http_response::{BodyFraming, ContentKind, parse_response_head};
use crate::proto::sse::{SseItem, SseParser};
use crate::server::sessions::SESSION_ID_LEN;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// The stream endpoint and the message endpoint.
pub const SSE_PATH: &[u8] = b"/sse";
pub const MESSAGES_PATH: &[u8] = b"/messages";
const SESSION_QUERY: &[u8] = b"session_id=";

/// Where a stream connection is: shard, ring, slot, generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    pub shard: u16,
    pub ring: u8,
    pub slot: u32,
    pub generation: u16,
}

#[derive(Debug, Clone, Copy)]
struct Route {
    place: Place,
    /// The MCP session the client's initialize made (its POSTs then carry it).
    session: Option<[u8; SESSION_ID_LEN]>,
}

#[derive(Default)]
struct Routes {
    by_token: HashMap<u64, Route>,
    by_place: HashMap<(u16, u8, u32), u64>,
}

/// Events for one stream connection, from any shard.
pub struct Delivery {
    pub ring: u8,
    pub slot: u32,
    pub generation: u16,
    /// The chunk to send (an SSE event, chunk-framed).
    pub chunk: Vec<u8>,
}

struct Inbox {
    queue: Mutex<Vec<Delivery>>,
    wake: OwnedFd,
}

/// The routes of every open legacy stream and each shard's inbox.
pub struct LegacyHub {
    routes: Mutex<Routes>,
    inboxes: Vec<Inbox>,
    seed: u64,
}

impl LegacyHub {
    pub fn new(shards: usize, seed: u64) -> std::io::Result<LegacyHub> {
        let inboxes = (0..shards)
            .map(|_| {
                // SAFETY: eventfd(2) with no pointers; the descriptor is owned at once.
                let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: a fresh descriptor nobody else owns.
                let wake = unsafe { OwnedFd::from_raw_fd(fd) };
                Ok(Inbox {
                    queue: Mutex::new(Vec::new()),
                    wake,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(LegacyHub {
            routes: Mutex::new(Routes::default()),
            inboxes,
            seed,
        })
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stream opened at `place`: its token (the endpoint's `session_id`), unguessable.
    pub fn open(&self, place: Place) -> u64 {
        let mut routes = self.routes();
        let mut token = mix(self.seed
            ^ mix(u64::from(place.slot) << 24
                ^ u64::from(place.generation) << 8
                ^ u64::from(place.shard) << 56
                ^ u64::from(place.ring)));
        while token == 0 || routes.by_token.contains_key(&token) {
            token = mix(token.wrapping_add(1));
        }
        routes.by_token.insert(
            token,
            Route {
                place,
                session: None,
            },
        );
        routes
            .by_place
            .insert((place.shard, place.ring, place.slot), token);
        token
    }

    /// The connection at `place` closed: the MCP session of its stream, if it was one (the
    /// session ends with its stream).
    pub fn close(&self, shard: u16, ring: u8, slot: u32) -> Option<Option<[u8; SESSION_ID_LEN]>> {
        let mut routes = self.routes();
        let token = routes.by_place.remove(&(shard, ring, slot))?;
        routes.by_token.remove(&token).map(|route| route.session)
    }

    /// The stream and session of an endpoint's token.
    pub fn route(&self, token: u64) -> Option<(Place, Option<[u8; SESSION_ID_LEN]>)> {
        self.routes()
            .by_token
            .get(&token)
            .map(|route| (route.place, route.session))
    }

    pub fn set_session(&self, token: u64, session: [u8; SESSION_ID_LEN]) {
        if let Some(route) = self.routes().by_token.get_mut(&token) {
            route.session = Some(session);
        }
    }

    /// Queues events for the stream at `to`; wakes its shard when that is not `from`.
    pub fn deliver(&self, from_shard: usize, to: Place, chunk: Vec<u8>) {
        let inbox = &self.inboxes[to.shard as usize];
        let was_empty = {
            let mut queue = inbox.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push(Delivery {
                ring: to.ring,
                slot: to.slot,
                generation: to.generation,
                chunk,
            });
            queue.len() == 1
        };
        if was_empty && usize::from(to.shard) != from_shard {
            let one: u64 = 1;
            // SAFETY: write(2) of 8 bytes from a live local into our own eventfd. It fails
            // only when the counter would overflow, and then a wake is pending anyway.
            unsafe {
                libc::write(
                    inbox.wake.as_raw_fd(),
                    (&raw const one).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
    }

    /// Moves the shard's queued deliveries into `out` and clears its wake counter.
    pub fn take(&self, shard: usize, out: &mut Vec<Delivery>) {
        let inbox = &self.inboxes[shard];
        let mut counter = 0u64;
        // SAFETY: read(2) of 8 bytes into a live local from our own non-blocking eventfd
        // (EAGAIN when nothing woke it: fine).
        unsafe {
            libc::read(
                inbox.wake.as_raw_fd(),
                (&raw mut counter).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        let mut queue = inbox.queue.lock().unwrap_or_else(|p| p.into_inner());
        out.append(&mut queue);
    }

    /// The shard's wake descriptor, for its leader ring to poll.
    pub fn wake_fd(&self, shard: usize) -> i32 {
        self.inboxes[shard].wake.as_raw_fd()
    }
}

/// splitmix64's finalizer.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The token in a message endpoint's query (`session_id=` 16 hex digits).
pub fn token_of(query: &[u8]) -> Option<u64> {
    let at = query
        .windows(SESSION_QUERY.len())
        .position(|w| w == SESSION_QUERY)?;
    let hex = &query[at + SESSION_QUERY.len()..];
    let hex = &hex[..hex.iter().position(|&b| b == b'&').unwrap_or(hex.len())];
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// The stream's head and its first event, naming the session's endpoint.
pub fn write_stream_open(out: &mut Vec<u8>, token: u64) {
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let event = format!("event: endpoint\ndata: /messages?session_id={token:016x}\n\n");
    chunked::write_chunk(out, event.as_bytes());
}

/// One JSON-RPC message as a `message` event in a chunk.
pub fn message_chunk(message: &[u8]) -> Vec<u8> {
    let mut event = Vec::with_capacity(message.len() + 32);
    event.extend_from_slice(b"event: message\ndata: ");
    event.extend_from_slice(message);
    event.extend_from_slice(b"\n\n");
    let mut chunk = Vec::with_capacity(event.len() + 16);
    chunked::write_chunk(&mut chunk, &event);
    chunk
}

/// What the handler's response to a POST comes to on the legacy transport.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `Mcp-Session-Id` (an initialize's answer).
    pub session: Option<[u8; SESSION_ID_LEN]>,
    /// Its JSON-RPC messages in order (an event stream may carry notifications first).
    pub messages: Vec<Vec<u8>>,
}

/// Reads a complete response the handler wrote (JSON, or a chunked event stream); `None` when
/// it is not one (it then goes to the POST as it is).
pub fn answer_of(response: &[u8]) -> Option<Answer> {
    let head = parse_response_head(response).ok()??;
    let session = head
        .session_id
        .and_then(|id| <[u8; SESSION_ID_LEN]>::try_from(id).ok());
    let body = &response[head.head_len..];
    let mut messages = Vec::new();
    match (head.framing(), head.content_type) {
        (BodyFraming::Length(n), ContentKind::Json) => {
            messages.push(body.get(..n as usize)?.to_vec());
        }
        (BodyFraming::Chunked, ContentKind::EventStream) => {
            let mut decoder = ChunkedDecoder::default();
            let mut sse = SseParser::default();
            let mut data = Vec::new();
            decoder
                .decode(body, &mut |bytes| {
                    sse.feed(bytes, &mut |item| match item {
                        SseItem::DataFragment(fragment) => data.extend_from_slice(fragment),
                        SseItem::Dispatch { has_data: true, .. } => {
                            messages.push(std::mem::take(&mut data));
                        }
                        _ => {}
                    });
                })
                .ok()?;
        }
        (BodyFraming::None | BodyFraming::Length(0), _) => {}
        _ => return None,
    }
    Some(Answer {
        status: head.status,
        session,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_routes_end_with_their_stream() {
        let hub = LegacyHub::new(2, 7).unwrap();
        let place = Place {
            shard: 1,
            ring: 0,
            slot: 42,
            generation: 3,
        };
        let token = hub.open(place);
        let query = format!("session_id={token:016x}");
        assert_eq!(token_of(query.as_bytes()), Some(token));
        assert_eq!(token_of(b"session_id=12"), None);
        assert_eq!(hub.route(token), Some((place, None)));
        hub.set_session(token, [b'a'; SESSION_ID_LEN]);
        assert_eq!(hub.close(1, 0, 42), Some(Some([b'a'; SESSION_ID_LEN])));
        assert_eq!(hub.route(token), None);
        assert_eq!(hub.close(1, 0, 42), None, "a connection that was no stream");
        // Deliveries queue in the target's inbox.
        hub.deliver(0, place, b"x".to_vec());
        let mut out = Vec::new();
        hub.take(1, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].slot, &out[0].chunk[..]), (42, &b"x"[..]));
    }

    #[test]
    fn answers_of_json_and_event_stream_responses() {
        let json = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: 0123456789abcdef0123456789abcdef\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        let answer = answer_of(json).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.session, Some(*b"0123456789abcdef0123456789abcdef"));
        assert_eq!(answer.messages, vec![b"{\"a\":1}".to_vec()]);
        let mut sse = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        chunked::write_chunk(&mut sse, b"event: message\ndata: {\"n\":1}\n\n");
        chunked::write_chunk(&mut sse, b"event: message\ndata: {\"r\":2}\n\n");
        chunked::write_last_chunk(&mut sse);
        assert_eq!(
            answer_of(&sse).unwrap().messages,
            vec![b"{\"n\":1}".to_vec(), b"{\"r\":2}".to_vec()]
        );
        let accepted = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
        let answer = answer_of(accepted).unwrap();
        assert_eq!((answer.status, answer.messages.len()), (202, 0));
        let event = message_chunk(b"{}");
        assert!(event.ends_with(b"event: message\ndata: {}\n\n\r\n"));
    }
}
