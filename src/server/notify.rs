//! `serve --notify-every D [--notify-to all|N]`: every D the server pushes one
//! `notifications/message` to every held listen stream (a 2025 GET stream or a 2026-07-28
//! `subscriptions/listen`), its send time in `_meta`, so a client can measure fan-out latency
//! (receive time − `_meta["mcpstorm/sentAtUs"]`, both UNIX µs: meaningful when both clocks
//! are this host's or synchronised). Part of `server/`: this file holds the I/O-free half —
//! the event bytes and the round bookkeeping; `shard.rs` walks its connections with it.
//!
//! Under 2026-07-28 the event goes to `subscriptions/listen` streams too, which this server
//! acknowledges with an empty subscription set: the event is the same bytes on every stream,
//! so it carries no per-stream `subscriptionId`. It is a load fixture for measuring fan-out,
//! not a subscription a client asked for.
//!
//! A round's event is the same bytes for every plaintext stream, so it is encoded once into
//! one of [`CHUNK_SLOTS`] shared buffers and sent from there (no per-stream copy or pool
//! buffer, which at 100K streams would be 100K buffers in flight); the buffer is not touched
//! again until the last of its sends completes. A round walks at most a batch of streams per
//! loop turn, so fan-out to 100K streams never stalls the shard's request traffic.

use std::io::Write as _;

/// Shared event buffers: rounds whose sends are still in flight each hold one. With all held
/// (streams that stopped reading for this many rounds), a round is skipped and counted.
pub const CHUNK_SLOTS: usize = 32;
/// `aux` of a Send from chunk slot `i` is `AUX_BASE + i` (below it: other sends).
pub const AUX_BASE: u8 = 16;
/// Streams one loop turn sends a round's event to.
pub const STREAMS_PER_TURN: usize = 1024;
/// A stream whose queued output already exceeds this has stopped reading: the event is
/// dropped and counted and the stream closed (a slow consumer must not grow the server's
/// memory, nor hold a shared chunk with a send stuck on a zero window).
pub const PENDING_BYTES_MAX: usize = 64 * 1024;

/// Where a round is in the shard's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub chunk: usize,
    pub ring: usize,
    pub slot: usize,
    /// Streams this round reached so far (for `--notify-to N`).
    pub reached: u32,
}

/// What starting a round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Not due, or the previous round is still being walked.
    Idle,
    Started,
    /// Due, but every chunk slot is held by rounds still in flight.
    Skipped,
}

#[derive(Debug)]
pub struct Fanout {
    every_ns: u64,
    /// Streams of this shard a round reaches at most; `None` = all.
    pub limit: Option<u32>,
    next_due_ns: u64,
    seq: u64,
    chunks: Vec<Vec<u8>>,
    holds: Vec<u32>,
    pub current: Option<Cursor>,
}

impl Fanout {
    pub fn new(every_ns: u64, limit: Option<u32>, now_ns: u64) -> Fanout {
        Fanout {
            every_ns: every_ns.max(1),
            limit,
            next_due_ns: now_ns + every_ns,
            seq: 0,
            chunks: vec![Vec::new(); CHUNK_SLOTS],
            holds: vec![0; CHUNK_SLOTS],
            current: None,
        }
    }

    /// Starts the next round when it is due and none is being walked; `sent_at_us` is its
    /// time on the wall clock (the event's time, whatever the walk adds after it).
    pub fn begin_if_due(&mut self, now_ns: u64, sent_at_us: u64) -> Begin {
        if self.current.is_some() || now_ns < self.next_due_ns {
            return Begin::Idle;
        }
        // The schedule stays on its grid; a shard that fell a whole period behind skips
        // ahead rather than firing a burst of catch-up rounds.
        self.next_due_ns += self.every_ns;
        if self.next_due_ns <= now_ns {
            self.next_due_ns = now_ns + self.every_ns;
        }
        let Some(chunk) = self.holds.iter().position(|&h| h == 0) else {
            return Begin::Skipped;
        };
        self.seq += 1;
        self.chunks[chunk].clear();
        write_event_chunk(&mut self.chunks[chunk], self.seq, sent_at_us);
        self.current = Some(Cursor {
            chunk,
            ring: 0,
            slot: 0,
            reached: 0,
        });
        Begin::Started
    }

    /// The encoded event (one HTTP chunk) of chunk slot `index`.
    pub fn chunk(&self, index: usize) -> &[u8] {
        &self.chunks[index]
    }

    /// A send from chunk slot `index` was submitted: its bytes stay as they are until
    /// [`release`](Self::release).
    pub fn hold(&mut self, index: usize) {
        self.holds[index] += 1;
    }

    pub fn release(&mut self, index: usize) {
        self.holds[index] = self.holds[index].saturating_sub(1);
    }

    /// How long the loop may sleep before this needs it: 0 while a round is being walked.
    pub fn wait_ns(&self, now_ns: u64) -> u64 {
        if self.current.is_some() {
            return 0;
        }
        self.next_due_ns.saturating_sub(now_ns)
    }

    /// Whether a round may reach one more stream.
    pub fn under_limit(&self, reached: u32) -> bool {
        self.limit.is_none_or(|limit| reached < limit)
    }
}

/// One SSE event holding the notification, as one chunk of a chunked body:
/// `{len:x}\r\nevent: message\ndata: {…}\n\n\r\n`.
pub fn write_event_chunk(out: &mut Vec<u8>, seq: u64, sent_at_us: u64) {
    let mut event = Vec::with_capacity(192);
    let _ = write!(
        event,
        "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"level\":\"info\",\"logger\":\"mcpstorm/notify\",\"data\":{{\"seq\":{seq}}},\"_meta\":{{\"mcpstorm/sentAtUs\":{sent_at_us}}}}}}}\n\n"
    );
    let _ = write!(out, "{:x}\r\n", event.len());
    out.extend_from_slice(&event);
    out.extend_from_slice(b"\r\n");
}

/// Splits `--notify-to N` over the shards: shard `index` of `shards` gets its share.
pub fn shard_limit(total: Option<u32>, shards: usize, index: usize) -> Option<u32> {
    let total = total?;
    let shards = shards.max(1) as u32;
    Some(total / shards + u32::from((index as u32) < total % shards))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sse;

    #[test]
    fn the_event_is_one_chunk_of_one_sse_event_with_its_send_time() {
        let mut out = Vec::new();
        write_event_chunk(&mut out, 7, 1_700_000_000_123_456);
        let text = String::from_utf8(out.clone()).unwrap();
        let (len, rest) = text.split_once("\r\n").unwrap();
        let len = usize::from_str_radix(len, 16).unwrap();
        assert_eq!(rest.len(), len + 2);
        assert!(rest.ends_with("\n\n\r\n"));
        let data = rest[..len]
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(json["method"], "notifications/message");
        assert_eq!(json["params"]["data"]["seq"], 7);
        assert_eq!(
            json["params"]["_meta"]["mcpstorm/sentAtUs"],
            1_700_000_000_123_456u64
        );
        // The engine's SSE reader takes it as one message event.
        let mut parser = sse::SseParser::default();
        let (mut data_seen, mut events) = (Vec::new(), 0);
        parser.feed(&rest.as_bytes()[..len], &mut |item| match item {
            sse::SseItem::DataFragment(bytes) => data_seen.extend_from_slice(bytes),
            sse::SseItem::Dispatch { has_data: true, .. } => events += 1,
            _ => {}
        });
        assert_eq!((events, data_seen.as_slice()), (1, data.as_bytes()));
    }

    #[test]
    fn rounds_keep_their_grid_and_skip_when_every_chunk_is_held() {
        let mut fanout = Fanout::new(1_000, None, 0);
        assert_eq!(fanout.begin_if_due(999, 0), Begin::Idle);
        assert_eq!(fanout.begin_if_due(1_000, 1), Begin::Started);
        // Being walked: no second round.
        assert_eq!(fanout.begin_if_due(2_500, 2), Begin::Idle);
        let first = fanout.current.take().unwrap().chunk;
        fanout.hold(first);
        // 2_000 was due; the next one is 3_000, not a burst.
        assert_eq!(fanout.begin_if_due(2_500, 3), Begin::Started);
        let second = fanout.current.take().unwrap().chunk;
        assert_ne!(first, second, "a held chunk is never rewritten");
        assert_eq!(fanout.begin_if_due(2_999, 4), Begin::Idle);
        for index in 0..CHUNK_SLOTS {
            fanout.hold(index);
        }
        assert_eq!(fanout.begin_if_due(3_000, 5), Begin::Skipped);
        fanout.release(second);
        fanout.release(second);
        assert_eq!(fanout.begin_if_due(10_000, 6), Begin::Started);
        assert_eq!(fanout.current.unwrap().chunk, second);
        // Fell far behind: the next round is a period from now.
        fanout.current = None;
        assert_eq!(fanout.begin_if_due(10_999, 7), Begin::Idle);
    }

    #[test]
    fn notify_to_is_split_over_shards_exactly() {
        assert_eq!(shard_limit(None, 2, 0), None);
        let shares: Vec<u32> = (0..3)
            .map(|i| shard_limit(Some(10), 3, i).unwrap())
            .collect();
        assert_eq!(shares, vec![4, 3, 3]);
        let mut fanout = Fanout::new(1, Some(2), 0);
        assert!(fanout.under_limit(1));
        assert!(!fanout.under_limit(2));
        fanout.limit = None;
        assert!(fanout.under_limit(u32::MAX));
    }
}
