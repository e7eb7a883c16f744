//! Counters of the embedded server, one block per shard. Part of `server/`.
//!
//! Each shard increments only its own block (relaxed atomics on memory no other core writes, so
//! they cost what plain increments cost); any thread may read all blocks at any time, which is
//! how the stats endpoint, the shutdown summary and tests see the server's side of a run.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Every outcome the server counts. Names are stable: they appear in JSON.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(non_camel_case_types)]
        pub enum Counter { $( $(#[$doc])* $name ),* }

        const COUNTERS_LEN: usize = [$(stringify!($name)),*].len();

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$name),*];
            pub fn name(self) -> &'static str {
                match self { $(Counter::$name => stringify!($name)),* }
            }
        }
    };
}

counters! {
    connections_accepted,
    connections_closed,
    requests_total,
    method_initialize,
    method_notification,
    method_ping,
    method_tools_list,
    method_tools_call,
    /// resources/list, resources/read, resources/templates/list.
    method_resources,
    /// prompts/list, prompts/get.
    method_prompts,
    method_completion,
    method_logging,
    method_other,
    /// POSTs served on the sessionless 2026-07-28 path (no session, no initialize).
    requests_modern,
    method_server_discover,
    method_subscriptions_listen,
    /// JSON-RPC responses a client POSTed.
    client_responses,
    /// Server-to-client requests sent on a tool call's stream (sampling, elicitation fixtures),
    /// the answers that reached their waiting call, and the calls that waited in vain.
    client_requests_sent,
    client_answers_routed,
    client_answers_timed_out,
    sessions_created,
    sessions_deleted,
    sessions_expired,
    sse_streams_opened,
    /// `--legacy-sse`: streams opened (`GET /sse`), and JSON-RPC messages routed from a POST
    /// to its session's stream (on another shard: through its inbox).
    legacy_streams_opened,
    legacy_messages_routed,
    /// Messages for a stream that had closed meanwhile.
    legacy_messages_dropped,
    sse_keepalives_sent,
    /// `--notify-every`: rounds walked, events queued or sent to listen streams, events a
    /// slow stream did not get (its output already full), rounds skipped because every
    /// shared event buffer was still held by sends in flight.
    notify_rounds,
    notifications_sent,
    notifications_dropped,
    notify_rounds_skipped,
    /// TLS handshakes completed (`--tls-cert`), and those that resumed a session ticket.
    tls_handshakes,
    tls_handshakes_resumed,
    /// A TLS error from a client (bad record, alert, no common protocol): the connection ends.
    error_tls,
    /// Calibrated server: requests that found every service slot busy and waited in line.
    service_queued,
    bytes_received,
    bytes_sent,
    // Errors by cause: each rejection is counted under exactly one of these.
    error_head_too_large,
    error_body_too_large,
    error_bad_request_line,
    error_bad_header,
    error_bad_content_length,
    error_conflicting_length,
    error_unsupported_transfer_encoding,
    error_unsupported_version,
    error_bad_chunk,
    error_forbidden_origin,
    error_not_found_path,
    error_method_not_allowed,
    error_not_acceptable,
    error_unsupported_media_type,
    error_missing_session,
    error_unknown_session,
    error_bad_protocol_version,
    /// 2026-07-28: `MCP-Protocol-Version`, `Mcp-Method` or `Mcp-Name` missing, malformed or not
    /// matching the body (400, -32020 HeaderMismatch).
    error_header_mismatch,
    /// 2026-07-28 path: a protocol version we do not serve that way (400, -32022).
    error_unsupported_protocol_version,
    /// 2026-07-28: `params._meta` without `io.modelcontextprotocol/clientCapabilities` (400, -32602).
    error_invalid_meta,
    /// 2026-07-28: GET or DELETE (no standalone stream, no sessions to end): 405.
    error_modern_method_not_allowed,
    error_sessions_full,
    error_json_parse,
    error_invalid_request,
    error_batch_refused,
    error_method_not_found,
    error_unknown_tool,
    error_tool_arguments,
    /// resources/read, prompts/get, completion/complete or logging/setLevel with params the
    /// catalog cannot answer (unknown URI or prompt, missing argument, bad level).
    error_invalid_params,
    /// A client sent more than 2 × the request limit ahead of answers it was not reading.
    error_pipeline_overflow,
    /// recv completed with an error other than a reset (counted with the peer's reset apart).
    error_recv,
    peer_resets,
    error_send,
    error_accept,
    /// Multishot recv ran out of provided buffers and was re-armed.
    recv_buffers_exhausted,
    /// The ring's fixed-file table was full when a connection arrived (accept re-armed later).
    accept_table_full,
}

#[repr(align(128))]
pub struct ShardStats {
    values: [AtomicU64; COUNTERS_LEN],
}

impl Default for ShardStats {
    fn default() -> Self {
        ShardStats::new()
    }
}

impl ShardStats {
    pub fn new() -> ShardStats {
        ShardStats {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    #[inline]
    pub fn add(&self, counter: Counter, n: u64) {
        self.values[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize].load(Ordering::Relaxed)
    }
}

/// Sum of a counter over all shards.
pub fn total(shards: &[ShardStats], counter: Counter) -> u64 {
    shards.iter().map(|s| s.get(counter)).sum()
}

/// All counters summed over shards, as `(name, value)` in declaration order.
pub fn snapshot(shards: &[ShardStats]) -> Vec<(&'static str, u64)> {
    Counter::ALL
        .iter()
        .map(|&c| (c.name(), total(shards, c)))
        .collect()
}
