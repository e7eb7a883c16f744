//! Server-to-client requests on the 2025 wire (`sampling/createMessage`, `elicitation/create`
//! sent on a tool call's event stream): the table that carries the client's answer from the
//! POST that brings it — on any connection, so on any shard — to the call that waits for it.
//! Part of `server/`; shared by every shard behind one mutex (only these fixture tools use it:
//! nothing on the load path takes the lock). No I/O: the waiting shard polls it on a timer.

use std::collections::HashMap;
use std::sync::Mutex;

/// Longest a call waits for its client's answer before it fails with a tool error.
pub const ANSWER_TIMEOUT_S: u32 = 60;
/// Most calls waiting at once: a client that never answers cannot grow the table.
const WAITING_MAX: usize = 4096;

/// What a waiting call asked and where its answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The tools/call's JSON-RPC id (a raw token), answered when the client's answer arrives.
    pub call_id: Vec<u8>,
    /// Which fixture asked (its result is made from the answer).
    pub tool: String,
    /// When it was asked, seconds on the server's clock.
    pub asked_s: u32,
    /// The client's JSON-RPC response (its `result` or `error` member, raw), once it came.
    pub answer: Option<Vec<u8>>,
}

/// What a poll of a waiting call found.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    Answered(Waiting),
    Waiting,
    /// No answer within [`ANSWER_TIMEOUT_S`]: the entry is gone.
    TimedOut(Waiting),
    /// No such ticket (already finished).
    Gone,
}

#[derive(Debug, Default)]
pub struct PendingRequests {
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    waiting: HashMap<u64, Waiting>,
}

/// The JSON-RPC id of the server's request for `ticket`: a string no client request id of
/// ours collides with.
pub fn request_id(ticket: u64) -> String {
    format!("mcpstorm-{ticket}")
}

impl PendingRequests {
    /// Registers a call that is about to ask its client; `None` when too many already wait.
    pub fn open(&self, call_id: &[u8], tool: &str, now_s: u32) -> Option<u64> {
        let mut table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if table.waiting.len() >= WAITING_MAX {
            return None;
        }
        table.next += 1;
        let ticket = table.next;
        table.waiting.insert(
            ticket,
            Waiting {
                call_id: call_id.to_vec(),
                tool: tool.to_string(),
                asked_s: now_s,
                answer: None,
            },
        );
        Some(ticket)
    }

    /// A client's response to request `id` (its raw JSON token): kept for the waiting call.
    /// False when no call waits for that id (a late or foreign response).
    pub fn answer(&self, id: &str, response: &[u8]) -> bool {
        let Some(ticket) = id
            .strip_prefix("mcpstorm-")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return false;
        };
        let mut table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match table.waiting.get_mut(&ticket) {
            Some(waiting) if waiting.answer.is_none() => {
                waiting.answer = Some(response.to_vec());
                true
            }
            _ => false,
        }
    }

    /// The waiting call's state; an answered or timed-out call leaves the table.
    pub fn poll(&self, ticket: u64, now_s: u32) -> Poll {
        let mut table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(waiting) = table.waiting.get(&ticket) else {
            return Poll::Gone;
        };
        if waiting.answer.is_some() {
            return table
                .waiting
                .remove(&ticket)
                .map_or(Poll::Gone, Poll::Answered);
        }
        if now_s.saturating_sub(waiting.asked_s) >= ANSWER_TIMEOUT_S {
            return table
                .waiting
                .remove(&ticket)
                .map_or(Poll::Gone, Poll::TimedOut);
        }
        Poll::Waiting
    }

    /// The call's connection closed: forget it.
    pub fn abandon(&self, ticket: u64) {
        let mut table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        table.waiting.remove(&ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reaches_its_call_once() {
        let pending = PendingRequests::default();
        let ticket = pending.open(b"7", "test_sampling", 100).unwrap();
        assert_eq!(pending.poll(ticket, 101), Poll::Waiting);
        assert!(!pending.answer("mcpstorm-999", b"{}"), "no such call");
        assert!(!pending.answer("7", b"{}"), "not one of our ids");
        assert!(pending.answer(&request_id(ticket), br#"{"result":{}}"#));
        assert!(
            !pending.answer(&request_id(ticket), b"{}"),
            "answered already"
        );
        match pending.poll(ticket, 102) {
            Poll::Answered(w) => {
                assert_eq!(w.call_id, b"7");
                assert_eq!(w.answer.as_deref(), Some(&br#"{"result":{}}"#[..]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(pending.poll(ticket, 103), Poll::Gone);
    }

    #[test]
    fn an_unanswered_call_times_out_and_the_table_is_bounded() {
        let pending = PendingRequests::default();
        let ticket = pending.open(b"1", "test_elicitation", 0).unwrap();
        assert!(matches!(
            pending.poll(ticket, ANSWER_TIMEOUT_S),
            Poll::TimedOut(_)
        ));
        for _ in 0..WAITING_MAX {
            assert!(pending.open(b"1", "t", 0).is_some());
        }
        assert!(pending.open(b"1", "t", 0).is_none());
        pending.abandon(1 + 1);
        assert!(pending.open(b"1", "t", 0).is_some());
    }
}
