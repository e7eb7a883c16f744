//! The embedded server's MCP logic over streamable HTTP: one parsed HTTP request in, one
//! response's bytes out. Part of `server/`, I/O-free (no sockets, no clock: `now_s` is an
//! argument), so every status and frame is unit-tested without a ring.
//!
//! Versions 2025-03-26, 2025-06-18 and 2025-11-25 (sessions via `Mcp-Session-Id`), plus
//! 2024-11-05 for old clients. Tools: `echo(text)`, `add(a, b)`, `sleep(ms)`.
//!
//! And 2026-07-28, sessionless (a dual-era server): a request whose `MCP-Protocol-Version`
//! header is 2026-07-28 (or names no handshake version and comes without a session) is served
//! on its own: no `initialize`, no `Mcp-Session-Id` minted or read. It must carry the
//! `_meta` envelope (`io.modelcontextprotocol/protocolVersion`, `…/clientCapabilities`) and the
//! `Mcp-Method` (and for tools/call `Mcp-Name`) headers matching the body, else 400 with
//! -32020 HeaderMismatch; an unserved version is 400 with -32022 listing ours; an unknown
//! method (ping included: 2026-07-28 removed it) is 404 with -32601. `server/discover`,
//! tools/list and tools/call answer with `resultType` and the `serverInfo` `_meta` stamp;
//! `subscriptions/listen` gets its acknowledgement (we honour no notification types) and a
//! held event stream; GET and DELETE get 405.

use super::catalog;
use super::fixtures;
use super::mrtr;
use super::sessions::{LOG_LEVEL_UNSET, Lookup, SESSION_ID_LEN, SessionTable};
use super::stats::{Counter, ShardStats};
use crate::proto::http_request::{Method, RequestError, RequestHead};
use crate::proto::http_response::write_head;
use crate::proto::{chunked, json, mcp_headers, sse};
use std::io::Write as _;

/// Protocol versions `initialize` can negotiate (sessions), newest first; a session stores its
/// index. 2026-07-28 has no `initialize`, so it is not here: a 2025 client that asks for it
/// gets 2025-11-25.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The sessionless protocol version (per-request `_meta`, no `initialize`).
pub const MODERN_PROTOCOL_VERSION: &str = "2026-07-28";
/// `supportedVersions` of `server/discover` and `supported` of -32022: every version we speak,
/// both eras, newest first (as the spec's dual-era example lists them).
const SUPPORTED_VERSIONS_JSON: &[u8] =
    br#"["2026-07-28","2025-11-25","2025-06-18","2025-03-26","2024-11-05"]"#;
/// `ttlMs` of the cacheable 2026-07-28 results (discover, tools/list): the tools never change
/// while the server runs.
const CACHE_TTL_MS: u64 = 3_600_000;
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// JSON-RPC error codes the 2026-07-28 specification defines.
const HEADER_MISMATCH: i32 = -32020;
const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;
pub const SERVER_NAME: &str = "mcpstorm";
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Upper bound of the `sleep` tool, so a client cannot park a connection forever.
pub const SLEEP_MS_MAX: u64 = 60_000;
/// Path of the counters endpoint (JSON); not part of MCP.
pub const STATS_PATH: &[u8] = b"/mcpstorm/stats";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResponseMode {
    /// `application/json` with Content-Length.
    Json,
    /// `text/event-stream` over chunked encoding with CRLF, as the Python SDK answers.
    Sse,
}

#[derive(Debug, Clone)]
pub struct McpConfig {
    pub path: Vec<u8>,
    pub response_mode: ResponseMode,
    /// `--service-time` is set: `ping` and `tools/call` go through the calibrated service
    /// queue (`Outcome::Serve`) instead of being answered at once.
    pub calibrated: bool,
    /// Signs the `requestState` of multi round-trip results (`mrtr.rs`), one key for every
    /// shard of this process.
    pub state_key: std::sync::Arc<super::mrtr::StateKey>,
    /// Calls waiting for their client's answer to a server-to-client request (`pending.rs`),
    /// shared by every shard (the answer may come on another one's connection).
    pub pending: std::sync::Arc<super::pending::PendingRequests>,
}

/// What the connection must do with the bytes `handle` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send now; close after when `close`.
    Respond { close: bool },
    /// Send after `ms` milliseconds (the `sleep` tool); the connection parses nothing more
    /// until then, so pipelined responses keep their order.
    Delay { ms: u64, close: bool },
    /// Calibrated server (`--service-time`): hold a service slot for the service time plus
    /// `extra_ms` (a `sleep` tool's delay) before sending; parse nothing more until then.
    Serve { extra_ms: u64, close: bool },
    /// A GET stream's head was written; the connection now carries server-sent events.
    OpenStream,
    /// A tool call's event stream is open and carries a request to the client: parse nothing
    /// more on this connection, and poll [`Handler::finish_awaited`] until the client's answer
    /// (a POST on any connection) ends the call; close after when `close`.
    AwaitClient { ticket: u64, close: bool },
    /// `--legacy-sse`: a `GET /sse` — the shard opens the session's stream (it knows where
    /// the connection is: the route of its endpoint).
    LegacyOpen,
}

/// Per-shard handler: borrows the shared session table and owns two scratch buffers reused
/// for every response (no allocation per request once they have grown).
pub struct Handler<'a> {
    pub config: &'a McpConfig,
    pub sessions: &'a SessionTable,
    pub stats: &'a ShardStats,
    pub all_stats: &'a [ShardStats],
    body: Vec<u8>,
    event: Vec<u8>,
    /// The request being answered is on the 2026-07-28 path: results get `resultType` and the
    /// `serverInfo` stamp.
    modern: bool,
    /// Server-sent events (notifications) written before the result: the response is then an
    /// event stream whatever `--response` says, as the spec lets a server choose per request.
    events: Vec<u8>,
    /// HTTP status of the response being built (a tool that needs a capability the request
    /// lacks answers 400).
    status: u16,
    /// The tool call being answered asks its client first: its ticket and request.
    ask: Option<(u64, &'static str, String)>,
    /// The server's clock at the request being answered, seconds.
    now_s: u32,
    /// `--legacy-sse`: the routes of the open streams, and this handler's shard.
    pub legacy: Option<(&'a super::legacy::LegacyHub, usize)>,
    /// `--legacy-sse`: the streamable-HTTP response to a POST, before it becomes events.
    legacy_response: Vec<u8>,
}

const JSONRPC_PREFIX: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":";
/// `serve`'s own tools, then the conformance suite's fixtures (`fixtures.rs`): `echo` stays
/// first, the tool a client that calls "the first listed tool" with `{}` gets a tool error from.
const TOOLS_LIST_RESULT: &[u8] = concat!(
    r#"{"tools":[{"name":"echo","description":"Returns its text argument unchanged.","inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}},{"name":"add","description":"Adds two numbers and returns the sum as text.","inputSchema":{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}},{"name":"sleep","description":"Waits ms milliseconds on a timer (never blocks the server), then answers.","inputSchema":{"type":"object","properties":{"ms":{"type":"integer","minimum":0,"maximum":60000}},"required":["ms"]}},{"name":"route","description":"Answers with the region it was called with. Under 2026-07-28 its region and priority also travel as Mcp-Param-Region and Mcp-Param-Priority headers, which must match the arguments.","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"priority":{"type":"integer","x-mcp-header":"Priority"}},"required":["region"]}},"#,
    super::fixtures::tools_list_entries!(),
    ",",
    super::mrtr::tools_list_entries!(),
    "]}"
)
.as_bytes();

/// The `x-mcp-header` declarations of `route`, as its listing has them, in property order
/// (a test checks).
const ROUTE_PARAMS: [mcp_headers::ParamHeader; 2] = [
    mcp_headers::ParamHeader::fixed("priority", "Priority", mcp_headers::ParamKind::Integer),
    mcp_headers::ParamHeader::fixed("region", "Region", mcp_headers::ParamKind::String),
];

impl<'a> Handler<'a> {
    pub fn new(
        config: &'a McpConfig,
        sessions: &'a SessionTable,
        stats: &'a ShardStats,
        all_stats: &'a [ShardStats],
    ) -> Handler<'a> {
        Handler {
            config,
            sessions,
            stats,
            all_stats,
            body: Vec::with_capacity(4096),
            event: Vec::with_capacity(4096),
            modern: false,
            events: Vec::new(),
            status: 200,
            ask: None,
            now_s: 0,
            legacy: None,
            legacy_response: Vec::new(),
        }
    }

    /// Answers one complete request, appending the response bytes to `out`.
    pub fn handle(
        &mut self,
        head: &RequestHead<'_>,
        body: &[u8],
        now_s: u32,
        out: &mut Vec<u8>,
    ) -> Outcome {
        self.stats.incr(Counter::requests_total);
        self.modern = false;
        self.events.clear();
        self.status = 200;
        self.ask = None;
        self.now_s = now_s;
        let keep_alive = head.keep_alive;
        let close = !keep_alive;
        if let Some(origin) = head.origin
            && !origin_is_local(origin)
        {
            return self.error(
                out,
                Counter::error_forbidden_origin,
                403,
                -32000,
                "Forbidden: Origin is not local",
                keep_alive,
            );
        }
        if head.path == STATS_PATH && head.method == Method::Get {
            return self.stats_response(out, keep_alive);
        }
        if let Some((hub, shard)) = self.legacy {
            if head.path == super::legacy::SSE_PATH && head.method == Method::Get {
                self.stats.incr(Counter::sse_streams_opened);
                self.stats.incr(Counter::legacy_streams_opened);
                return Outcome::LegacyOpen;
            }
            if head.path == super::legacy::MESSAGES_PATH && head.method == Method::Post {
                return self.legacy_post(hub, shard, head, body, now_s, out);
            }
        }
        if head.path != self.config.path.as_slice() {
            self.stats.incr(Counter::error_not_found_path);
            write_head(
                out,
                404,
                Some("text/plain"),
                Some(NOT_FOUND_BODY.len()),
                &[],
                keep_alive,
            );
            out.extend_from_slice(NOT_FOUND_BODY);
            return Outcome::Respond { close };
        }
        if head.method != Method::Post && is_modern(head) {
            // 2026-07-28 has no standalone GET stream and no sessions to DELETE.
            self.stats.incr(Counter::error_modern_method_not_allowed);
            write_head(out, 405, None, Some(0), &[("Allow", b"POST")], keep_alive);
            return Outcome::Respond { close };
        }
        match head.method {
            Method::Post => self.post(head, body, now_s, out),
            Method::Get => self.get(head, now_s, out),
            Method::Delete => self.delete(head, out),
            _ => {
                self.stats.incr(Counter::error_method_not_allowed);
                write_head(
                    out,
                    405,
                    None,
                    Some(0),
                    &[("Allow", b"GET, POST, DELETE")],
                    keep_alive,
                );
                Outcome::Respond { close }
            }
        }
    }

    /// `--legacy-sse`: a POST to a session's endpoint, answered as the streamable-HTTP POST
    /// of that session; its JSON-RPC messages go out on the session's stream and the POST
    /// gets `202 Accepted` (an error status goes to the POST as it is). The `sleep` tool's
    /// delay and `--service-time` are not honoured here: the answer goes out at once.
    fn legacy_post(
        &mut self,
        hub: &super::legacy::LegacyHub,
        shard: usize,
        head: &RequestHead<'_>,
        body: &[u8],
        now_s: u32,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let keep_alive = head.keep_alive;
        let query = head.target.splitn(2, |&b| b == b'?').nth(1).unwrap_or(b"");
        let route = super::legacy::token_of(query).and_then(|t| Some((t, hub.route(t)?)));
        let Some((token, (place, session))) = route else {
            self.stats.incr(Counter::error_unknown_session);
            write_head(out, 404, Some("text/plain"), Some(15), &[], keep_alive);
            out.extend_from_slice(b"unknown session");
            return Outcome::Respond { close: !keep_alive };
        };
        let mut inner = head.clone();
        inner.path = self.config.path.as_slice();
        inner.session_id = session.as_ref().map(|s| s.as_slice());
        inner.accept = Some(b"application/json, text/event-stream");
        let mut response = std::mem::take(&mut self.legacy_response);
        response.clear();
        let outcome = self.post(&inner, body, now_s, &mut response);
        match super::legacy::answer_of(&response) {
            Some(answer) if matches!(answer.status, 200 | 202) => {
                if let Some(session) = answer.session {
                    hub.set_session(token, session);
                }
                for message in &answer.messages {
                    hub.deliver(shard, place, super::legacy::message_chunk(message));
                    self.stats.incr(Counter::legacy_messages_routed);
                }
                write_head(out, 202, Some("text/plain"), Some(8), &[], keep_alive);
                out.extend_from_slice(b"Accepted");
            }
            _ => out.extend_from_slice(&response),
        }
        self.legacy_response = response;
        let close = match outcome {
            Outcome::Respond { close }
            | Outcome::Delay { close, .. }
            | Outcome::Serve { close, .. }
            | Outcome::AwaitClient { close, .. } => close,
            Outcome::OpenStream | Outcome::LegacyOpen => !keep_alive,
        };
        Outcome::Respond { close }
    }

    fn post(
        &mut self,
        head: &RequestHead<'_>,
        body: &[u8],
        now_s: u32,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let keep_alive = head.keep_alive;
        if let Some(accept) = head.accept
            && !accepts(accept, b"application/json")
            && !accepts(accept, b"text/event-stream")
        {
            return self.error(
                out,
                Counter::error_not_acceptable,
                406,
                -32000,
                "Not Acceptable: Accept must list application/json and text/event-stream",
                keep_alive,
            );
        }
        if let Some(content_type) = head.content_type
            && !media_type_is(content_type, b"application/json")
        {
            return self.error(
                out,
                Counter::error_unsupported_media_type,
                415,
                -32000,
                "Unsupported Media Type: Content-Type must be application/json",
                keep_alive,
            );
        }
        let request = match json::scan_rpc_request(body) {
            Ok(request) => request,
            Err(json::RpcScanError::Parse) => {
                return self.error(
                    out,
                    Counter::error_json_parse,
                    400,
                    -32700,
                    "Parse error",
                    keep_alive,
                );
            }
            Err(json::RpcScanError::Batch) => {
                return self.error(
                    out,
                    Counter::error_batch_refused,
                    400,
                    -32600,
                    "Invalid Request: batches are not supported",
                    keep_alive,
                );
            }
            Err(json::RpcScanError::InvalidRequest) => {
                // 2026-07-28 servers send no requests, so a client has nothing to answer.
                if is_rpc_response(body) && !is_modern(head) {
                    self.stats.incr(Counter::client_responses);
                    // The answer to one of our server-to-client requests reaches its call.
                    let id = serde_json::from_slice::<serde_json::Value>(body)
                        .ok()
                        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
                    if let Some(id) = id
                        && self.config.pending.answer(&id, body)
                    {
                        self.stats.incr(Counter::client_answers_routed);
                    }
                    write_head(out, 202, None, Some(0), &[], keep_alive);
                    return Outcome::Respond { close: !keep_alive };
                }
                return self.error(
                    out,
                    Counter::error_invalid_request,
                    400,
                    -32600,
                    "Invalid Request",
                    keep_alive,
                );
            }
        };
        if is_modern(head) {
            return self.modern_post(head, &request, out);
        }
        let method = request.method.as_ref();
        if method == "initialize" {
            return self.initialize(request.id, request.params, now_s, out, keep_alive);
        }
        // Every other request belongs to a session.
        let Some(session_id) = head.session_id else {
            return self.error(
                out,
                Counter::error_missing_session,
                400,
                -32000,
                "Bad Request: Mcp-Session-Id header is required",
                keep_alive,
            );
        };
        let (session_index, log_level) = match self.sessions.touch(session_id, now_s) {
            Lookup::Found {
                index, log_level, ..
            } => (
                index,
                (log_level != LOG_LEVEL_UNSET).then_some(log_level as usize),
            ),
            Lookup::Unknown => {
                return self.error(
                    out,
                    Counter::error_unknown_session,
                    404,
                    -32001,
                    "Session not found",
                    keep_alive,
                );
            }
        };
        if let Some(version) = head.protocol_version
            && PROTOCOL_VERSIONS.iter().all(|v| v.as_bytes() != version)
        {
            return self.error(
                out,
                Counter::error_bad_protocol_version,
                400,
                -32000,
                "Bad Request: unsupported MCP-Protocol-Version",
                keep_alive,
            );
        }
        let Some(id) = request.id else {
            // Notifications (notifications/initialized, cancelled, …): accepted, no body.
            self.stats.incr(Counter::method_notification);
            write_head(out, 202, None, Some(0), &[], keep_alive);
            return Outcome::Respond { close: !keep_alive };
        };
        self.body.clear();
        let mut delay_ms = None;
        match method {
            "ping" => {
                self.stats.incr(Counter::method_ping);
                self.result_frame(id, b"{}");
            }
            "tools/list" => {
                self.stats.incr(Counter::method_tools_list);
                self.result_frame(id, TOOLS_LIST_RESULT);
            }
            "tools/call" => {
                self.stats.incr(Counter::method_tools_call);
                delay_ms = self.tools_call(id, request.params, log_level, None);
            }
            "logging/setLevel" => {
                self.stats.incr(Counter::method_logging);
                let sessions = self.sessions;
                let _ = self.catalog_result(id, false, |out| {
                    catalog::set_level(request.params).map(|level| {
                        sessions.set_log_level(session_index, level as u8);
                        out.extend_from_slice(b"{}")
                    })
                });
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                // Nothing here changes, so a subscription never fires; it is acknowledged.
                self.stats.incr(Counter::method_resources);
                let _ = self.catalog_result(id, false, |out| {
                    Self::subscription(request.params).map(|()| out.extend_from_slice(b"{}"))
                });
            }
            other if self.catalog(other, id, request.params) => {}
            _ => {
                self.stats.incr(Counter::method_other);
                self.stats.incr(Counter::error_method_not_found);
                self.error_frame(id, -32601, "Method not found");
            }
        }
        if let Some((ticket, method, request)) = self.ask.take() {
            return self.ask_client(out, ticket, method, &request, keep_alive);
        }
        self.write_rpc_response(out, self.status, &[], keep_alive);
        self.work_outcome(method, delay_ms, keep_alive)
    }

    /// Opens the call's event stream with the server-to-client request `method` on it; the
    /// call ends when [`Self::finish_awaited`] finds the client's answer.
    fn ask_client(
        &mut self,
        out: &mut Vec<u8>,
        ticket: u64,
        method: &str,
        params: &str,
        keep_alive: bool,
    ) -> Outcome {
        self.stats.incr(Counter::client_requests_sent);
        write_head(
            out,
            200,
            Some("text/event-stream"),
            None,
            &[("Cache-Control", b"no-cache"), ("X-Accel-Buffering", b"no")],
            keep_alive,
        );
        self.body.clear();
        self.body.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        json::write_escaped_str(&mut self.body, &super::pending::request_id(ticket));
        self.body.extend_from_slice(b",\"method\":");
        json::write_escaped_str(&mut self.body, method);
        self.body.extend_from_slice(b",\"params\":");
        self.body.extend_from_slice(params.as_bytes());
        self.body.push(b'}');
        self.event.clear();
        sse::write_event(&mut self.event, Some("message"), None, &self.body);
        chunked::write_chunk(out, &self.event);
        Outcome::AwaitClient {
            ticket,
            close: !keep_alive,
        }
    }

    /// Polls a call that asked its client: `false` while no answer came (poll again), `true`
    /// when the call's result (from the answer, or a tool error after the timeout) and the end
    /// of its stream were written to `out`.
    pub fn finish_awaited(&mut self, ticket: u64, now_s: u32, out: &mut Vec<u8>) -> bool {
        let waiting = match self.config.pending.poll(ticket, now_s) {
            super::pending::Poll::Waiting => return false,
            super::pending::Poll::Gone => {
                chunked::write_last_chunk(out);
                return true;
            }
            super::pending::Poll::Answered(w) => w,
            super::pending::Poll::TimedOut(w) => {
                self.stats.incr(Counter::client_answers_timed_out);
                w
            }
        };
        self.body.clear();
        self.body.extend_from_slice(JSONRPC_PREFIX);
        self.body.extend_from_slice(&waiting.call_id);
        self.body.extend_from_slice(b",\"result\":");
        self.body.extend_from_slice(&fixtures::client_answered(
            &waiting.tool,
            waiting.answer.as_deref(),
        ));
        self.body.push(b'}');
        self.event.clear();
        sse::write_event(&mut self.event, Some("message"), None, &self.body);
        chunked::write_chunk(out, &self.event);
        chunked::write_last_chunk(out);
        true
    }

    /// How a request that did its work is sent: at once, after a `sleep` tool's delay, or
    /// (calibrated server) after a service slot held it for the service time.
    fn work_outcome(&self, method: &str, delay_ms: Option<u64>, keep_alive: bool) -> Outcome {
        let close = !keep_alive;
        if self.config.calibrated && matches!(method, "ping" | "tools/call") {
            return Outcome::Serve {
                extra_ms: delay_ms.unwrap_or(0),
                close,
            };
        }
        match delay_ms {
            Some(ms) => Outcome::Delay { ms, close },
            None => Outcome::Respond { close },
        }
    }

    fn initialize(
        &mut self,
        id: Option<&[u8]>,
        params: Option<&[u8]>,
        now_s: u32,
        out: &mut Vec<u8>,
        keep_alive: bool,
    ) -> Outcome {
        self.stats.incr(Counter::method_initialize);
        let Some(id) = id else {
            return self.error(
                out,
                Counter::error_invalid_request,
                400,
                -32600,
                "Invalid Request: initialize needs an id",
                keep_alive,
            );
        };
        let requested = params
            .and_then(|p| json::object_member(p, "protocolVersion").ok().flatten())
            .and_then(json::str_unescaped);
        let protocol = requested
            .as_deref()
            .and_then(|v| PROTOCOL_VERSIONS.iter().position(|s| *s == v))
            .unwrap_or(0);
        let mut session_id = [0u8; SESSION_ID_LEN];
        if self
            .sessions
            .create(protocol as u8, now_s, &mut session_id)
            .is_none()
        {
            self.body.clear();
            self.error_frame(id, -32000, "Server busy: session limit reached");
            self.stats.incr(Counter::error_sessions_full);
            self.write_rpc_response(out, 503, &[("Retry-After", b"1")], keep_alive);
            return Outcome::Respond { close: !keep_alive };
        }
        self.stats.incr(Counter::sessions_created);
        self.body.clear();
        self.body.extend_from_slice(JSONRPC_PREFIX);
        self.body.extend_from_slice(id);
        self.body
            .extend_from_slice(b",\"result\":{\"protocolVersion\":\"");
        self.body
            .extend_from_slice(PROTOCOL_VERSIONS[protocol].as_bytes());
        self.body.extend_from_slice(
            b"\",\"capabilities\":{\"tools\":{\"listChanged\":false},\"resources\":{\"subscribe\":true},\"prompts\":{},\"completions\":{},\"logging\":{}},\"serverInfo\":{\"name\":\"",
        );
        self.body.extend_from_slice(SERVER_NAME.as_bytes());
        self.body.extend_from_slice(b"\",\"version\":\"");
        self.body.extend_from_slice(SERVER_VERSION.as_bytes());
        self.body.extend_from_slice(b"\"}}}");
        self.write_rpc_response(out, 200, &[("Mcp-Session-Id", &session_id)], keep_alive);
        Outcome::Respond { close: !keep_alive }
    }

    /// A POST on the 2026-07-28 path. Each request stands alone: no session is read or made,
    /// and everything the server needs (version, client capabilities) is in the request.
    fn modern_post(
        &mut self,
        head: &RequestHead<'_>,
        request: &json::RpcRequest<'_>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let keep_alive = head.keep_alive;
        self.stats.incr(Counter::requests_modern);
        // `is_modern` routes here only requests that carry the header.
        let version = head.protocol_version.unwrap_or(b"");
        let Some(id) = request.id else {
            // 2026-07-28 defines no client notification over HTTP; one is accepted (202) and
            // dropped, unless the one header that brought it here names a version we do not
            // serve this way.
            if version != MODERN_PROTOCOL_VERSION.as_bytes() {
                return self.unsupported_version(out, b"null", version, keep_alive);
            }
            self.stats.incr(Counter::method_notification);
            write_head(out, 202, None, Some(0), &[], keep_alive);
            return Outcome::Respond { close: !keep_alive };
        };
        if id == b"null" {
            return self.error_with_id(
                out,
                Counter::error_invalid_request,
                400,
                b"null",
                -32600,
                "Invalid Request: the id must not be null",
                keep_alive,
            );
        }
        let method = request.method.as_ref();
        let params = request.params;
        let meta = params.and_then(|p| member(p, "_meta"));
        let body_version = meta
            .and_then(|m| member(m, META_PROTOCOL_VERSION))
            .and_then(json::str_unescaped);
        let client_capabilities = meta
            .and_then(|m| member(m, META_CLIENT_CAPABILITIES))
            .filter(|c| c.first() == Some(&b'{'));
        // The envelope first, as the reference server checks: without it there is nothing to
        // compare the header with.
        if body_version.is_none() || client_capabilities.is_none() {
            return self.error_with_id(
                out,
                Counter::error_invalid_meta,
                400,
                id,
                -32602,
                "Invalid params: params._meta must carry io.modelcontextprotocol/protocolVersion (a string) and io.modelcontextprotocol/clientCapabilities (an object)",
                keep_alive,
            );
        }
        if !mcp_headers::value_is_valid(version)
            || body_version.as_deref().map(str::as_bytes) != Some(version)
        {
            return self.error_with_id(
                out,
                Counter::error_header_mismatch,
                400,
                id,
                HEADER_MISMATCH,
                "Header mismatch: MCP-Protocol-Version does not match params._meta[\"io.modelcontextprotocol/protocolVersion\"]",
                keep_alive,
            );
        }
        if version != MODERN_PROTOCOL_VERSION.as_bytes() {
            return self.unsupported_version(out, id, version, keep_alive);
        }
        if !head
            .mcp_method
            .is_some_and(|m| mcp_headers::value_is_valid(m) && m == method.as_bytes())
        {
            return self.error_with_id(
                out,
                Counter::error_header_mismatch,
                400,
                id,
                HEADER_MISMATCH,
                "Header mismatch: Mcp-Method is missing or does not match the body's method",
                keep_alive,
            );
        }
        let name_key = match method {
            "tools/call" | "prompts/get" => Some("name"),
            "resources/read" => Some("uri"),
            _ => None,
        };
        let body_name = name_key.and_then(|key| {
            params
                .and_then(|p| member(p, key))
                .and_then(json::str_unescaped)
        });
        if let Some(key) = name_key {
            let matches = match (head.mcp_name, body_name.as_deref()) {
                (Some(header), Some(name)) if mcp_headers::value_is_valid(header) => {
                    mcp_headers::decode_value(header, &mut self.event)
                        .is_some_and(|decoded| decoded == name.as_bytes())
                }
                _ => false,
            };
            if !matches {
                return self.error_with_id(
                    out,
                    Counter::error_header_mismatch,
                    400,
                    id,
                    HEADER_MISMATCH,
                    if key == "uri" {
                        "Header mismatch: Mcp-Name is missing, malformed or does not match params.uri"
                    } else {
                        "Header mismatch: Mcp-Name is missing, malformed or does not match params.name"
                    },
                    keep_alive,
                );
            }
        }
        if method == "tools/call" && body_name.as_deref() == Some("route") {
            let arguments = params.and_then(|p| member(p, "arguments"));
            if let Err(mismatch) = mcp_headers::check_param_headers(
                &ROUTE_PARAMS,
                arguments,
                &head.mcp_params,
                &mut self.event,
            ) {
                return self.error_with_id(
                    out,
                    Counter::error_header_mismatch,
                    400,
                    id,
                    HEADER_MISMATCH,
                    &mismatch.to_string(),
                    keep_alive,
                );
            }
        }
        // A request asks for logs by naming a level; without one it gets none.
        let log_level = meta
            .and_then(|m| member(m, META_LOG_LEVEL))
            .and_then(json::str_unescaped)
            .and_then(|level| catalog::LOG_LEVELS.iter().position(|l| *l == level));
        self.modern = true;
        self.body.clear();
        let mut delay_ms = None;
        match method {
            "server/discover" => {
                self.stats.incr(Counter::method_server_discover);
                self.body.extend_from_slice(JSONRPC_PREFIX);
                self.body.extend_from_slice(id);
                self.body
                    .extend_from_slice(b",\"result\":{\"supportedVersions\":");
                self.body.extend_from_slice(SUPPORTED_VERSIONS_JSON);
                self.body.extend_from_slice(
                    b",\"capabilities\":{\"tools\":{\"listChanged\":false},\"resources\":{},\"prompts\":{},\"completions\":{}},",
                );
                self.body.pop();
                self.cache_hints();
                self.close_result();
            }
            "tools/list" => {
                self.stats.incr(Counter::method_tools_list);
                self.body.extend_from_slice(JSONRPC_PREFIX);
                self.body.extend_from_slice(id);
                self.body.extend_from_slice(b",\"result\":");
                // The legacy result without its closing brace, then the cache hints.
                self.body
                    .extend_from_slice(&TOOLS_LIST_RESULT[..TOOLS_LIST_RESULT.len() - 1]);
                self.cache_hints();
                self.close_result();
            }
            "tools/call" => {
                self.stats.incr(Counter::method_tools_call);
                delay_ms = self.tools_call(id, params, log_level, client_capabilities);
            }
            "subscriptions/listen" => return self.listen(head, id, out),
            other if self.catalog(other, id, params) => {}
            _ => {
                // Includes ping, initialize and logging/setLevel, which 2026-07-28 removed.
                self.stats.incr(Counter::method_other);
                return self.error_with_id(
                    out,
                    Counter::error_method_not_found,
                    404,
                    id,
                    -32601,
                    "Method not found",
                    keep_alive,
                );
            }
        }
        let extra: &[(&str, &[u8])] = match self.config.response_mode {
            ResponseMode::Json if self.events.is_empty() => &[],
            _ => &[("X-Accel-Buffering", b"no")],
        };
        self.write_rpc_response(out, self.status, extra, keep_alive);
        self.work_outcome(method, delay_ms, keep_alive)
    }

    /// `subscriptions/listen`: the acknowledgement (we send no list-change or resource
    /// notifications, so we agree to none of the requested types), then a held event stream
    /// that carries only keep-alive comments until either side closes it.
    fn listen(&mut self, head: &RequestHead<'_>, id: &[u8], out: &mut Vec<u8>) -> Outcome {
        if let Some(accept) = head.accept
            && !accepts(accept, b"text/event-stream")
        {
            return self.error_with_id(
                out,
                Counter::error_not_acceptable,
                406,
                id,
                -32000,
                "Not Acceptable: subscriptions/listen answers with text/event-stream",
                head.keep_alive,
            );
        }
        self.stats.incr(Counter::method_subscriptions_listen);
        self.stats.incr(Counter::sse_streams_opened);
        write_head(
            out,
            200,
            Some("text/event-stream"),
            None,
            &[("Cache-Control", b"no-cache"), ("X-Accel-Buffering", b"no")],
            true,
        );
        self.body.clear();
        self.body.extend_from_slice(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\",\"params\":{\"notifications\":{},\"_meta\":{\"io.modelcontextprotocol/subscriptionId\":",
        );
        self.body.extend_from_slice(id);
        self.body.extend_from_slice(b"}}}");
        self.event.clear();
        sse::write_event(&mut self.event, Some("message"), None, &self.body);
        chunked::write_chunk(out, &self.event);
        Outcome::OpenStream
    }

    /// 400 with -32022 naming the versions we serve and the one asked for.
    fn unsupported_version(
        &mut self,
        out: &mut Vec<u8>,
        id: &[u8],
        requested: &[u8],
        keep_alive: bool,
    ) -> Outcome {
        self.stats.incr(Counter::error_unsupported_protocol_version);
        self.body.clear();
        self.body.extend_from_slice(JSONRPC_PREFIX);
        self.body.extend_from_slice(id);
        let _ = write!(
            self.body,
            ",\"error\":{{\"code\":{UNSUPPORTED_PROTOCOL_VERSION},\"message\":\"Unsupported protocol version\",\"data\":{{\"supported\":"
        );
        self.body.extend_from_slice(SUPPORTED_VERSIONS_JSON);
        self.body.extend_from_slice(b",\"requested\":");
        json::write_escaped_str(&mut self.body, &String::from_utf8_lossy(requested));
        self.body.extend_from_slice(b"}}}");
        self.json_body_response(out, 400, keep_alive)
    }

    /// Writes the tools/call answer frame into `self.body` (notifications into `self.events`);
    /// returns a delay for `sleep`. `log_level`: the level in force (the session's or the
    /// request's); `client_capabilities`: the 2026-07-28 request's.
    fn tools_call(
        &mut self,
        id: &[u8],
        params: Option<&[u8]>,
        log_level: Option<usize>,
        client_capabilities: Option<&[u8]>,
    ) -> Option<u64> {
        let name = params
            .and_then(|p| json::object_member(p, "name").ok().flatten())
            .and_then(json::str_unescaped);
        let arguments = params.and_then(|p| json::object_member(p, "arguments").ok().flatten());
        let arg = |key: &str| arguments.and_then(|a| json::object_member(a, key).ok().flatten());
        match name.as_deref() {
            Some("echo") => match arg("text").and_then(json::str_raw) {
                Some(text_token) => {
                    self.text_result(id, |b| b.extend_from_slice(text_token), false)
                }
                None => self.tool_error(id, "echo needs a string argument `text`"),
            },
            Some("add") => {
                let (a, b) = (arg("a"), arg("b"));
                if let (Some(a), Some(b)) = (a.and_then(json::as_i64), b.and_then(json::as_i64))
                    && let Some(sum) = a.checked_add(b)
                {
                    self.text_result(
                        id,
                        |out| {
                            let _ = write!(out, "\"{sum}\"");
                        },
                        false,
                    );
                } else if let (Some(a), Some(b)) =
                    (a.and_then(json::as_f64), b.and_then(json::as_f64))
                    && (a + b).is_finite()
                {
                    let sum = a + b;
                    self.text_result(
                        id,
                        |out| {
                            let _ = write!(out, "\"{sum}\"");
                        },
                        false,
                    );
                } else {
                    self.tool_error(id, "add needs finite numbers `a` and `b`");
                }
            }
            Some("sleep") => match arg("ms").and_then(json::as_u64) {
                Some(ms) if ms <= SLEEP_MS_MAX => {
                    self.text_result(
                        id,
                        |out| {
                            let _ = write!(out, "\"slept {ms} ms\"");
                        },
                        false,
                    );
                    return Some(ms);
                }
                _ => self.tool_error(id, "sleep needs an integer `ms` from 0 to 60000"),
            },
            Some("route") => match arg("region").and_then(json::str_raw) {
                Some(region) => self.text_result(id, |b| b.extend_from_slice(region), false),
                None => self.tool_error(id, "route needs a string argument `region`"),
            },
            Some(other) if other.starts_with("test_input_required_result_") => {
                self.mrtr_tool(id, other, params, client_capabilities)
            }
            Some(other)
                if let Some((method, request)) = fixtures::client_request(other, arguments) =>
            {
                if self.modern {
                    self.tool_error(
                        id,
                        "this tool asks its client with a server-to-client request, which 2026-07-28 forbids on a response stream: call a test_input_required_result_ tool instead",
                    );
                } else {
                    match self.config.pending.open(id, other, self.now_s) {
                        Some(ticket) => self.ask = Some((ticket, method, request)),
                        None => self.tool_error(id, "too many calls wait for their clients"),
                    }
                }
            }
            Some(other) => {
                let context = fixtures::CallContext {
                    progress_token: params
                        .and_then(|p| member(p, "_meta"))
                        .and_then(|m| member(m, "progressToken")),
                    log_level,
                    client_capabilities,
                };
                self.fixture_tool(id, other, &context);
            }
            None => {
                self.stats.incr(Counter::error_unknown_tool);
                self.error_frame(id, -32602, "tools/call needs a string `name`");
            }
        }
        None
    }

    /// A multi round-trip fixture tool (`mrtr.rs`): 2026-07-28 only (earlier versions ask the
    /// client with server-to-client requests instead).
    fn mrtr_tool(
        &mut self,
        id: &[u8],
        name: &str,
        params: Option<&[u8]>,
        client_capabilities: Option<&[u8]>,
    ) {
        if !self.modern {
            return self.tool_error(
                id,
                "input_required results need MCP-Protocol-Version 2026-07-28",
            );
        }
        let params: serde_json::Value = params
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or_default();
        let capabilities: serde_json::Value = client_capabilities
            .and_then(|c| serde_json::from_slice(c).ok())
            .unwrap_or_default();
        match mrtr::call_tool(name, &params, &capabilities, &self.config.state_key) {
            Some(answer) => self.mrtr_answer(id, answer),
            None => {
                self.stats.incr(Counter::error_unknown_tool);
                self.error_frame(id, -32602, "Unknown tool");
            }
        }
    }

    /// A multi round-trip answer: a complete result, an `input_required` one (its own
    /// `resultType`), or the error of a refused round.
    fn mrtr_answer(&mut self, id: &[u8], answer: Result<mrtr::Answer, catalog::RpcError>) {
        match answer {
            Ok(answer) => {
                self.body.extend_from_slice(JSONRPC_PREFIX);
                self.body.extend_from_slice(id);
                self.body.extend_from_slice(b",\"result\":");
                let _ = serde_json::to_writer(&mut self.body, &answer.result);
                self.body.pop();
                if answer.complete {
                    self.close_result();
                } else {
                    self.body.push(b',');
                    self.server_info_meta();
                    self.body.extend_from_slice(b"}}");
                }
            }
            Err((code, message)) => {
                self.stats.incr(Counter::error_invalid_params);
                self.error_frame(id, code, message);
            }
        }
    }

    /// A conformance fixture tool (`fixtures.rs`), or -32602 "Unknown tool".
    fn fixture_tool(&mut self, id: &[u8], name: &str, context: &fixtures::CallContext<'_>) {
        let start = self.body.len();
        self.body.extend_from_slice(JSONRPC_PREFIX);
        self.body.extend_from_slice(id);
        self.body.extend_from_slice(b",\"result\":");
        let mut notes = std::mem::take(&mut self.events);
        let mut event = std::mem::take(&mut self.event);
        let answer = fixtures::call_tool(name, context, &mut self.body, &mut |note| {
            event.clear();
            sse::write_event(&mut event, Some("message"), None, note);
            notes.extend_from_slice(&event);
        });
        self.events = notes;
        self.event = event;
        match answer {
            fixtures::ToolAnswer::Result => {
                self.body.pop();
                self.close_result();
            }
            fixtures::ToolAnswer::MissingCapability(required) => {
                self.body.truncate(start);
                self.events.clear();
                self.stats.incr(Counter::error_invalid_params);
                self.status = 400;
                self.body.extend_from_slice(JSONRPC_PREFIX);
                self.body.extend_from_slice(id);
                let _ = write!(
                    self.body,
                    ",\"error\":{{\"code\":{},\"message\":\"Missing required client capability\",\"data\":{{\"requiredCapabilities\":{required}}}}}}}",
                    fixtures::MISSING_CAPABILITY
                );
            }
            fixtures::ToolAnswer::Unknown => {
                self.body.truncate(start);
                self.stats.incr(Counter::error_unknown_tool);
                self.error_frame(id, -32602, "Unknown tool");
            }
        }
    }

    /// `,"ttlMs":…,"cacheScope":"public"`: 2026-07-28's cache hints of a listing or read (what
    /// `serve` offers never changes while it runs).
    fn cache_hints(&mut self) {
        let _ = write!(
            self.body,
            ",\"ttlMs\":{CACHE_TTL_MS},\"cacheScope\":\"public\""
        );
    }

    fn tool_error(&mut self, id: &[u8], message: &str) {
        self.stats.incr(Counter::error_tool_arguments);
        self.text_result(id, |out| json::write_escaped_str(out, message), true);
    }

    /// `{"content":[{"type":"text","text":<token>}],"isError":…}` with the token written by `text`.
    fn text_result(&mut self, id: &[u8], text: impl FnOnce(&mut Vec<u8>), is_error: bool) {
        self.body.extend_from_slice(JSONRPC_PREFIX);
        self.body.extend_from_slice(id);
        self.body
            .extend_from_slice(b",\"result\":{\"content\":[{\"type\":\"text\",\"text\":");
        text(&mut self.body);
        self.body.extend_from_slice(if is_error {
            b"}],\"isError\":true"
        } else {
            b"}],\"isError\":false"
        });
        self.close_result();
    }

    /// Ends a result object and its response: on the 2026-07-28 path with the `resultType`
    /// every result must carry and the `serverInfo` stamp servers should add.
    fn close_result(&mut self) {
        if self.modern {
            self.body
                .extend_from_slice(b",\"resultType\":\"complete\",");
            self.server_info_meta();
        }
        self.body.extend_from_slice(b"}}");
    }

    /// `"_meta":{"io.modelcontextprotocol/serverInfo":{"name":…,"version":…}}`
    fn server_info_meta(&mut self) {
        self.body
            .extend_from_slice(b"\"_meta\":{\"io.modelcontextprotocol/serverInfo\":{\"name\":\"");
        self.body.extend_from_slice(SERVER_NAME.as_bytes());
        self.body.extend_from_slice(b"\",\"version\":\"");
        self.body.extend_from_slice(SERVER_VERSION.as_bytes());
        self.body.extend_from_slice(b"\"}}");
    }

    /// Resources, prompts and completions (`catalog.rs`); false for any other method.
    fn catalog(&mut self, method: &str, id: &[u8], params: Option<&[u8]>) -> bool {
        let (counter, listed): (Counter, Option<&[u8]>) = match method {
            "resources/list" => (
                Counter::method_resources,
                Some(catalog::RESOURCES_LIST_RESULT),
            ),
            "resources/templates/list" => (
                Counter::method_resources,
                Some(catalog::RESOURCE_TEMPLATES_LIST_RESULT),
            ),
            "resources/read" => (Counter::method_resources, None),
            "prompts/list" => (Counter::method_prompts, Some(catalog::PROMPTS_LIST_RESULT)),
            "prompts/get" => (Counter::method_prompts, None),
            "completion/complete" => (Counter::method_completion, None),
            _ => return false,
        };
        self.stats.incr(counter);
        // 2026-07-28: listings and reads carry cache hints.
        let cacheable = self.modern && (listed.is_some() || method == "resources/read");
        let start = self.body.len();
        let answered = match (method, listed) {
            (_, Some(list)) => self.catalog_result(id, cacheable, |out| {
                out.extend_from_slice(list);
                Ok(())
            }),
            ("resources/read", _) => {
                self.catalog_result(id, cacheable, |out| catalog::read_resource(params, out))
            }
            ("prompts/get", _) if self.modern && Self::is_mrtr_prompt(params) => {
                let params: serde_json::Value = params
                    .and_then(|p| serde_json::from_slice(p).ok())
                    .unwrap_or_default();
                let name = params["name"].as_str().unwrap_or_default().to_string();
                match mrtr::get_prompt(&name, &params, &self.config.state_key) {
                    Some(answer) => self.mrtr_answer(id, answer),
                    None => {
                        self.stats.incr(Counter::error_invalid_params);
                        self.error_frame(id, -32602, "Unknown prompt");
                    }
                }
                Ok(())
            }
            ("prompts/get", _) => {
                self.catalog_result(id, false, |out| catalog::get_prompt(params, out))
            }
            _ => self.catalog_result(id, false, |out| catalog::complete(params, out)),
        };
        if answered == Err(catalog::RESOURCE_NOT_FOUND) && self.modern {
            // SEP-2164 (2026-07-28): an unknown resource is -32602 naming its URI.
            self.body.truncate(start);
            self.body.extend_from_slice(JSONRPC_PREFIX);
            self.body.extend_from_slice(id);
            self.body.extend_from_slice(
                b",\"error\":{\"code\":-32602,\"message\":\"Resource not found\",\"data\":{\"uri\":",
            );
            let uri = params.and_then(|p| member(p, "uri")).unwrap_or(b"null");
            self.body.extend_from_slice(uri);
            self.body.extend_from_slice(b"}}}");
        }
        true
    }

    fn is_mrtr_prompt(params: Option<&[u8]>) -> bool {
        params
            .and_then(|p| member(p, "name"))
            .and_then(json::str_unescaped)
            .is_some_and(|n| n.starts_with("test_input_required_result_"))
    }

    /// `resources/subscribe` and `resources/unsubscribe`: a URI this server reads.
    fn subscription(params: Option<&[u8]>) -> Result<(), catalog::RpcError> {
        let mut probe = Vec::new();
        catalog::read_resource(params, &mut probe)
    }

    /// A response whose result `write` produces (a whole JSON object), or the error it gives;
    /// on the 2026-07-28 path the result carries `resultType` and the server's `_meta`.
    /// `cacheable`: the result carries 2026-07-28's cache hints. `Err(code)` = an error was
    /// answered with that code.
    fn catalog_result(
        &mut self,
        id: &[u8],
        cacheable: bool,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), catalog::RpcError>,
    ) -> Result<(), i32> {
        let start = self.body.len();
        self.body.extend_from_slice(JSONRPC_PREFIX);
        self.body.extend_from_slice(id);
        self.body.extend_from_slice(b",\"result\":");
        match write(&mut self.body) {
            Ok(()) => {
                // The result's closing brace: `close_result` writes it after its members.
                self.body.pop();
                if cacheable {
                    self.cache_hints();
                }
                self.close_result();
                Ok(())
            }
            Err((code, message)) => {
                self.stats.incr(Counter::error_invalid_params);
                self.body.truncate(start);
                self.error_frame(id, code, message);
                Err(code)
            }
        }
    }

    fn result_frame(&mut self, id: &[u8], result: &[u8]) {
        self.body.extend_from_slice(JSONRPC_PREFIX);
        self.body.extend_from_slice(id);
        self.body.extend_from_slice(b",\"result\":");
        self.body.extend_from_slice(result);
        self.body.push(b'}');
    }

    fn error_frame(&mut self, id: &[u8], code: i32, message: &str) {
        self.body.extend_from_slice(JSONRPC_PREFIX);
        self.body.extend_from_slice(id);
        let _ = write!(self.body, ",\"error\":{{\"code\":{code},\"message\":");
        json::write_escaped_str(&mut self.body, message);
        self.body.extend_from_slice(b"}}");
    }

    /// Sends `self.body` (one JSON-RPC message) in the configured response mode.
    fn write_rpc_response(
        &mut self,
        out: &mut Vec<u8>,
        status: u16,
        extra: &[(&str, &[u8])],
        keep_alive: bool,
    ) {
        match self.config.response_mode {
            ResponseMode::Json if self.events.is_empty() => {
                self.write_json_body(out, status, extra, keep_alive)
            }
            _ => {
                write_head(
                    out,
                    status,
                    Some("text/event-stream"),
                    None,
                    extra,
                    keep_alive,
                );
                self.event.clear();
                // Notifications first: a client reads them before the result ends the stream.
                self.event.extend_from_slice(&self.events);
                sse::write_event(&mut self.event, Some("message"), None, &self.body);
                chunked::write_chunk(out, &self.event);
                chunked::write_last_chunk(out);
            }
        }
    }

    /// An HTTP-level rejection with a JSON-RPC error body (`id: null`), counted under `counter`.
    fn error(
        &mut self,
        out: &mut Vec<u8>,
        counter: Counter,
        status: u16,
        code: i32,
        message: &str,
        keep_alive: bool,
    ) -> Outcome {
        self.error_with_id(out, counter, status, b"null", code, message, keep_alive)
    }

    /// [`Self::error`] answering the request `id` (a raw JSON token).
    #[allow(clippy::too_many_arguments)]
    fn error_with_id(
        &mut self,
        out: &mut Vec<u8>,
        counter: Counter,
        status: u16,
        id: &[u8],
        code: i32,
        message: &str,
        keep_alive: bool,
    ) -> Outcome {
        self.stats.incr(counter);
        self.body.clear();
        self.error_frame(id, code, message);
        self.json_body_response(out, status, keep_alive)
    }

    /// `self.body` as an `application/json` response with Content-Length.
    fn write_json_body(
        &self,
        out: &mut Vec<u8>,
        status: u16,
        extra: &[(&str, &[u8])],
        keep_alive: bool,
    ) {
        write_head(
            out,
            status,
            Some("application/json"),
            Some(self.body.len()),
            extra,
            keep_alive,
        );
        out.extend_from_slice(&self.body);
    }

    fn json_body_response(&self, out: &mut Vec<u8>, status: u16, keep_alive: bool) -> Outcome {
        self.write_json_body(out, status, &[], keep_alive);
        Outcome::Respond { close: !keep_alive }
    }

    fn get(&mut self, head: &RequestHead<'_>, now_s: u32, out: &mut Vec<u8>) -> Outcome {
        let keep_alive = head.keep_alive;
        if !head
            .accept
            .is_some_and(|a| accepts(a, b"text/event-stream"))
        {
            return self.error(
                out,
                Counter::error_not_acceptable,
                406,
                -32000,
                "Not Acceptable: GET needs Accept: text/event-stream",
                keep_alive,
            );
        }
        let Some(session_id) = head.session_id else {
            return self.error(
                out,
                Counter::error_missing_session,
                400,
                -32000,
                "Bad Request: Mcp-Session-Id header is required",
                keep_alive,
            );
        };
        if self.sessions.touch(session_id, now_s) == Lookup::Unknown {
            return self.error(
                out,
                Counter::error_unknown_session,
                404,
                -32001,
                "Session not found",
                keep_alive,
            );
        }
        self.stats.incr(Counter::sse_streams_opened);
        write_head(
            out,
            200,
            Some("text/event-stream"),
            None,
            &[("Cache-Control", b"no-cache")],
            true,
        );
        Outcome::OpenStream
    }

    fn delete(&mut self, head: &RequestHead<'_>, out: &mut Vec<u8>) -> Outcome {
        let keep_alive = head.keep_alive;
        let Some(session_id) = head.session_id else {
            return self.error(
                out,
                Counter::error_missing_session,
                400,
                -32000,
                "Bad Request: Mcp-Session-Id header is required",
                keep_alive,
            );
        };
        if !self.sessions.remove(session_id) {
            return self.error(
                out,
                Counter::error_unknown_session,
                404,
                -32001,
                "Session not found",
                keep_alive,
            );
        }
        self.stats.incr(Counter::sessions_deleted);
        write_head(out, 200, None, Some(0), &[], keep_alive);
        Outcome::Respond { close: !keep_alive }
    }

    fn stats_response(&mut self, out: &mut Vec<u8>, keep_alive: bool) -> Outcome {
        self.body.clear();
        self.body.extend_from_slice(b"{\"sessions_live\":");
        let _ = write!(self.body, "{}", self.sessions.live());
        for (name, value) in super::stats::snapshot(self.all_stats) {
            let _ = write!(self.body, ",\"{name}\":{value}");
        }
        self.body.push(b'}');
        self.json_body_response(out, 200, keep_alive)
    }
}

const NOT_FOUND_BODY: &[u8] = b"not found: this server answers MCP on its --path\n";

/// The response to a request that could not be parsed; the connection closes after it because
/// the next request's start can no longer be found.
pub fn write_protocol_error(error: RequestError, out: &mut Vec<u8>) -> Counter {
    let counter = match error {
        RequestError::HeadTooLarge => Counter::error_head_too_large,
        RequestError::BodyTooLarge => Counter::error_body_too_large,
        RequestError::BadRequestLine => Counter::error_bad_request_line,
        RequestError::BadHeader => Counter::error_bad_header,
        RequestError::BadContentLength => Counter::error_bad_content_length,
        RequestError::ConflictingLength => Counter::error_conflicting_length,
        RequestError::UnsupportedTransferEncoding => Counter::error_unsupported_transfer_encoding,
        RequestError::UnsupportedVersion => Counter::error_unsupported_version,
        RequestError::BadChunk => Counter::error_bad_chunk,
    };
    let message = error.as_str().as_bytes();
    write_head(
        out,
        error.status(),
        Some("text/plain"),
        Some(message.len() + 1),
        &[],
        false,
    );
    out.extend_from_slice(message);
    out.push(b'\n');
    counter
}

/// True when an `Accept` value lists `media` (or a wildcard covering it).
fn accepts(accept: &[u8], media: &[u8]) -> bool {
    let (kind, _) = split_media(media);
    accept.split(|&b| b == b',').any(|item| {
        let item = trim(item.split(|&b| b == b';').next().unwrap_or(b""));
        item.eq_ignore_ascii_case(media)
            || item == b"*/*"
            || (item.len() == kind.len() + 2
                && item[..kind.len()].eq_ignore_ascii_case(kind)
                && item.ends_with(b"/*"))
    })
}

fn media_type_is(content_type: &[u8], media: &[u8]) -> bool {
    trim(content_type.split(|&b| b == b';').next().unwrap_or(b"")).eq_ignore_ascii_case(media)
}

fn split_media(media: &[u8]) -> (&[u8], &[u8]) {
    match media.iter().position(|&b| b == b'/') {
        Some(i) => (&media[..i], &media[i + 1..]),
        None => (media, b""),
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// DNS-rebinding guard from the MCP transport spec: only browser origins on this host pass.
fn origin_is_local(origin: &[u8]) -> bool {
    let rest = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"))
        .unwrap_or(origin);
    let host = if let Some(v6) = rest.strip_prefix(b"[") {
        match v6.iter().position(|&b| b == b']') {
            Some(end) => &v6[..end],
            None => return false,
        }
    } else {
        rest.split(|&b| b == b':' || b == b'/')
            .next()
            .unwrap_or(b"")
    };
    host.eq_ignore_ascii_case(b"localhost") || host == b"::1" || host.starts_with(b"127.")
}

/// Does this request take the 2026-07-28 (sessionless) path? When its `MCP-Protocol-Version`
/// says 2026-07-28 (a stray `Mcp-Session-Id` is ignored, as the spec asks), or names a version
/// no `initialize` negotiates and comes without a session (so the client learns, with -32022,
/// which versions we serve). No header, or a handshake version, is the session era.
fn is_modern(head: &RequestHead<'_>) -> bool {
    match head.protocol_version {
        Some(version) if version == MODERN_PROTOCOL_VERSION.as_bytes() => true,
        Some(version) => {
            head.session_id.is_none() && PROTOCOL_VERSIONS.iter().all(|v| v.as_bytes() != version)
        }
        None => false,
    }
}

fn member<'a>(object: &'a [u8], key: &str) -> Option<&'a [u8]> {
    json::object_member(object, key).ok().flatten()
}

fn is_rpc_response(body: &[u8]) -> bool {
    json::validate(body).is_ok()
        && matches!(json::object_member(body, "method"), Ok(None))
        && (matches!(json::object_member(body, "result"), Ok(Some(_)))
            || matches!(json::object_member(body, "error"), Ok(Some(_))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http_request::{Body, Parse, RequestLimits, parse_request};

    struct Fixture {
        config: McpConfig,
        sessions: SessionTable,
        stats: Vec<ShardStats>,
    }

    impl Fixture {
        fn new(mode: ResponseMode) -> Fixture {
            Fixture {
                config: McpConfig {
                    path: b"/mcp".to_vec(),
                    response_mode: mode,
                    calibrated: false,
                    state_key: std::sync::Arc::new(super::super::mrtr::StateKey::generate()),
                    pending: Default::default(),
                },
                sessions: SessionTable::new(4, 42),
                stats: vec![ShardStats::new()],
            }
        }

        /// Feeds raw request bytes through the real parser and the handler.
        fn answer(&self, raw: &str) -> (Outcome, String) {
            let mut handler =
                Handler::new(&self.config, &self.sessions, &self.stats[0], &self.stats);
            let Ok(Parse::Complete(request)) =
                parse_request(raw.as_bytes(), &RequestLimits::default())
            else {
                panic!("fixture request must parse: {raw:?}");
            };
            let body = match request.body {
                Body::Plain(b) => b,
                Body::Empty => &[],
                Body::Chunked { .. } => panic!("fixtures use Content-Length"),
            };
            let mut out = Vec::new();
            let outcome = handler.handle(&request.head, body, 100, &mut out);
            (outcome, String::from_utf8(out).unwrap())
        }

        fn post(&self, session: Option<&str>, body: &str) -> (Outcome, String) {
            let session = session
                .map(|s| format!("Mcp-Session-Id: {s}\r\n"))
                .unwrap_or_default();
            self.answer(&format!(
                "POST /mcp HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\n{session}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ))
        }

        fn session(&self) -> String {
            let (_, out) = self.post(None, r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#);
            let line = out
                .lines()
                .find(|l| l.starts_with("Mcp-Session-Id: "))
                .unwrap();
            line["Mcp-Session-Id: ".len()..].to_string()
        }

        /// A POST with `extra` header lines (each ending in CRLF) as a 2026-07-28 client sends it.
        fn modern(&self, extra: &str, body: &str) -> (Outcome, String) {
            self.answer(&format!(
                "POST /mcp HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ))
        }

        /// The headers and body of a well-formed 2026-07-28 request.
        fn modern_call(&self, id: &str, method: &str, params: &str) -> (Outcome, String) {
            let name = json::object_member(format!("{{{params}\"x\":0}}").as_bytes(), "name")
                .ok()
                .flatten()
                .and_then(json::str_unescaped)
                .map(|n| format!("Mcp-Name: {n}\r\n"))
                .unwrap_or_default();
            self.modern(
                &format!("{V2026}Mcp-Method: {method}\r\n{name}"),
                &modern_body(id, method, params, V2026_META),
            )
        }
    }

    const V2026: &str = "MCP-Protocol-Version: 2026-07-28\r\n";
    const V2026_META: &str = r#""io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}"#;

    /// `params` members (each followed by a comma) then `_meta` holding `meta`.
    fn modern_body(id: &str, method: &str, params: &str, meta: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{params}"_meta":{{{meta}}}}}}}"#
        )
    }

    /// Status code, head and JSON body of a Content-Length response.
    fn split(out: &str) -> (u16, &str, serde_json::Value) {
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        let json = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
        };
        (status, head, json)
    }

    #[test]
    fn test_initialize_unsupported_version_gets_latest() {
        let f = Fixture::new(ResponseMode::Json);
        let (outcome, out) = f.post(None, r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}"#);
        assert_eq!(outcome, Outcome::Respond { close: false });
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(out.contains(r#""protocolVersion":"2025-11-25""#), "{out}");
        assert_eq!(f.sessions.live(), 1);
    }

    #[test]
    fn test_ready_ping_json_bytes_exact() {
        let f = Fixture::new(ResponseMode::Json);
        let session = f.session();
        let (_, out) = f.post(
            Some(&session),
            r#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#,
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 38\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":{}}"
        );
    }

    #[test]
    fn test_ready_ping_sse_bytes_exact() {
        let f = Fixture::new(ResponseMode::Sse);
        let session = f.session();
        let (_, out) = f.post(
            Some(&session),
            r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        );
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked"
        );
        // One chunk holding one event, then the last chunk.
        let event = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\r\n\r\n";
        let event_lf = event.replace("\r\n", "\n");
        let expected_crlf = format!("{:x}\r\n{event}\r\n0\r\n\r\n", event.len());
        let expected_lf = format!("{:x}\r\n{event_lf}\r\n0\r\n\r\n", event_lf.len());
        assert!(body == expected_crlf || body == expected_lf, "{body:?}");
    }

    #[test]
    fn test_ready_sleep_is_delayed_not_blocking() {
        let f = Fixture::new(ResponseMode::Json);
        let session = f.session();
        let (outcome, out) = f.post(
            Some(&session),
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":250}}}"#,
        );
        assert_eq!(
            outcome,
            Outcome::Delay {
                ms: 250,
                close: false
            }
        );
        assert!(out.contains("slept 250 ms"));
        let (outcome, out) = f.post(
            Some(&session),
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":60001}}}"#,
        );
        assert_eq!(outcome, Outcome::Respond { close: false });
        assert!(out.contains(r#""isError":true"#));
    }

    #[test]
    fn test_ready_notification_and_client_response_are_accepted() {
        let f = Fixture::new(ResponseMode::Json);
        let session = f.session();
        let (_, out) = f.post(
            Some(&session),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!(out, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
        let (_, out) = f.post(Some(&session), r#"{"jsonrpc":"2.0","id":9,"result":{}}"#);
        assert!(out.starts_with("HTTP/1.1 202"));
        assert_eq!(f.stats[0].get(Counter::client_responses), 1);
    }

    #[test]
    fn test_http10_closes_after_response() {
        let f = Fixture::new(ResponseMode::Json);
        let (outcome, _) = f.answer("GET /elsewhere HTTP/1.0\r\n\r\n");
        assert_eq!(outcome, Outcome::Respond { close: true });
    }

    #[test]
    fn test_ready_tools_list_and_call_bytes_unchanged() {
        let f = Fixture::new(ResponseMode::Json);
        let session = f.session();
        let (_, out) = f.post(
            Some(&session),
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
        );
        let expected = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}}",
            std::str::from_utf8(TOOLS_LIST_RESULT).unwrap()
        );
        assert!(out.ends_with(&format!("\r\n\r\n{expected}")), "{out}");
        let (_, out) = f.post(
            Some(&session),
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
        );
        assert!(
            out.ends_with("\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}],\"isError\":false}}"),
            "{out}"
        );
    }

    #[test]
    fn test_initialize_asking_2026_gets_2025_11_25() {
        let f = Fixture::new(ResponseMode::Json);
        let (_, out) = f.post(None, r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2026-07-28"}}"#);
        let (status, _, json) = split(&out);
        assert_eq!(status, 200);
        assert_eq!(json["result"]["protocolVersion"], "2025-11-25");
        assert_eq!(f.sessions.live(), 1);
    }

    #[test]
    fn test_session_unknown_version_header_keeps_legacy_answer() {
        let f = Fixture::new(ResponseMode::Json);
        let session = f.session();
        let (_, out) = f.answer(&format!(
            "POST /mcp HTTP/1.1\r\nHost: h:1\r\nMcp-Session-Id: {session}\r\nMCP-Protocol-Version: 1999-01-01\r\nContent-Length: 40\r\n\r\n{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}"
        ));
        let (status, _, json) = split(&out);
        assert_eq!(status, 400);
        assert_eq!(json["error"]["code"], -32000);
        assert_eq!(f.stats[0].get(Counter::error_bad_protocol_version), 1);
        assert_eq!(f.stats[0].get(Counter::requests_modern), 0);
    }

    #[test]
    fn test_sessionless_discover_bytes_and_no_session() {
        let f = Fixture::new(ResponseMode::Json);
        let (outcome, out) = f.modern_call("1", "server/discover", "");
        assert_eq!(outcome, Outcome::Respond { close: false });
        let expected_body = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"supportedVersions\":[\"2026-07-28\",\"2025-11-25\",\"2025-06-18\",\"2025-03-26\",\"2024-11-05\"],\"capabilities\":{{\"tools\":{{\"listChanged\":false}},\"resources\":{{}},\"prompts\":{{}},\"completions\":{{}}}},\"ttlMs\":3600000,\"cacheScope\":\"public\",\"resultType\":\"complete\",\"_meta\":{{\"io.modelcontextprotocol/serverInfo\":{{\"name\":\"mcpstorm\",\"version\":\"{SERVER_VERSION}\"}}}}}}}}"
        );
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{expected_body}",
                expected_body.len()
            )
        );
        assert_eq!(f.sessions.live(), 0);
        assert_eq!(f.stats[0].get(Counter::sessions_created), 0);
        assert_eq!(f.stats[0].get(Counter::requests_modern), 1);
        assert_eq!(f.stats[0].get(Counter::method_server_discover), 1);
    }

    #[test]
    fn test_sessionless_tools_list_and_calls() {
        let f = Fixture::new(ResponseMode::Json);
        let (_, out) = f.modern_call("\"l\"", "tools/list", "");
        let (status, _, json) = split(&out);
        assert_eq!(status, 200);
        let result = &json["result"];
        assert_eq!(json["id"], "l");
        assert_eq!(result["resultType"], "complete");
        assert_eq!(result["ttlMs"], 3_600_000);
        assert_eq!(result["cacheScope"], "public");
        assert_eq!(result["tools"][0]["name"], "echo");
        assert_eq!(
            result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "mcpstorm"
        );
        let (_, out) = f.modern_call(
            "2",
            "tools/call",
            r#""name":"add","arguments":{"a":2,"b":3},"#,
        );
        let (status, head, json) = split(&out);
        assert_eq!(status, 200);
        assert!(!head.contains("Mcp-Session-Id"), "{head}");
        assert_eq!(json["result"]["content"][0]["text"], "5");
        assert_eq!(json["result"]["isError"], false);
        assert_eq!(json["result"]["resultType"], "complete");
        let (_, out) = f.modern_call(
            "3",
            "tools/call",
            r#""name":"echo","arguments":{"text":"a\"b"},"#,
        );
        assert_eq!(split(&out).2["result"]["content"][0]["text"], "a\"b");
        let (outcome, out) = f.modern_call(
            "4",
            "tools/call",
            r#""name":"sleep","arguments":{"ms":30},"#,
        );
        assert_eq!(
            outcome,
            Outcome::Delay {
                ms: 30,
                close: false
            }
        );
        assert!(out.contains("slept 30 ms"));
        assert_eq!(f.sessions.live(), 0);
        assert_eq!(f.stats[0].get(Counter::method_tools_call), 3);
        assert_eq!(f.stats[0].get(Counter::requests_modern), 4);
    }

    #[test]
    fn test_sessionless_ping_and_initialize_are_method_not_found_404() {
        let f = Fixture::new(ResponseMode::Sse);
        for (id, method) in [
            ("7", "ping"),
            ("8", "initialize"),
            ("9", "logging/setLevel"),
        ] {
            let (_, out) = f.modern_call(id, method, "");
            let (status, head, json) = split(&out);
            assert_eq!(status, 404, "{method}");
            assert!(head.contains("Content-Type: application/json"), "{head}");
            assert_eq!(json["error"]["code"], -32601);
            assert_eq!(json["id"].to_string(), id);
        }
        assert_eq!(f.stats[0].get(Counter::error_method_not_found), 3);
        assert_eq!(f.sessions.live(), 0);
    }

    #[test]
    fn test_sessionless_sse_mode_answers_an_event_stream() {
        let f = Fixture::new(ResponseMode::Sse);
        let (_, out) = f.modern_call("1", "tools/list", "");
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/event-stream"), "{head}");
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        assert!(head.contains("X-Accel-Buffering: no"), "{head}");
        assert!(body.contains("\"resultType\":\"complete\""), "{body}");
        assert!(body.ends_with("0\r\n\r\n"), "{body:?}");
    }

    #[test]
    fn test_sessionless_method_header_missing_or_different_is_header_mismatch() {
        let f = Fixture::new(ResponseMode::Json);
        let body = modern_body("11", "tools/list", "", V2026_META);
        for extra in [
            V2026.to_string(),
            format!("{V2026}Mcp-Method: tools/call\r\n"),
            format!("{V2026}Mcp-Method: Tools/List\r\n"),
        ] {
            let (_, out) = f.modern(&extra, &body);
            let (status, _, json) = split(&out);
            assert_eq!(status, 400, "{extra}");
            assert_eq!(json["error"]["code"], -32020, "{extra}");
            assert_eq!(json["id"], 11, "the error answers the request id");
        }
        assert_eq!(f.stats[0].get(Counter::error_header_mismatch), 3);
        assert_eq!(f.stats[0].get(Counter::method_tools_list), 0);
    }

    #[test]
    fn test_sessionless_version_header_disagrees_with_meta_is_header_mismatch() {
        let f = Fixture::new(ResponseMode::Json);
        let headers = format!("{V2026}Mcp-Method: tools/list\r\n");
        let (_, out) = f.modern(
            &headers,
            &modern_body(
                "1",
                "tools/list",
                "",
                r#""io.modelcontextprotocol/protocolVersion":"2025-11-25","io.modelcontextprotocol/clientCapabilities":{}"#,
            ),
        );
        let (status, _, json) = split(&out);
        assert_eq!(status, 400);
        assert_eq!(json["error"]["code"], -32020);
        // An envelope without a (string) version has nothing to compare the header with: the
        // reference server's order answers -32602 first.
        for meta in [
            r#""io.modelcontextprotocol/clientCapabilities":{}"#,
            r#""io.modelcontextprotocol/protocolVersion":20260728,"io.modelcontextprotocol/clientCapabilities":{}"#,
        ] {
            let (_, out) = f.modern(&headers, &modern_body("1", "tools/list", "", meta));
            let (status, _, json) = split(&out);
            assert_eq!(status, 400, "{meta}");
            assert_eq!(json["error"]["code"], -32602, "{meta}");
        }
        // No _meta (or no params) at all.
        let (_, out) = f.modern(
            &headers,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        );
        assert_eq!(split(&out).2["error"]["code"], -32602);
        assert_eq!(f.stats[0].get(Counter::error_header_mismatch), 1);
        assert_eq!(f.stats[0].get(Counter::error_invalid_meta), 3);
    }

    #[test]
    fn test_sessionless_unknown_version_gets_unsupported_with_our_list() {
        let f = Fixture::new(ResponseMode::Json);
        let meta = r#""io.modelcontextprotocol/protocolVersion":"2030-01-01","io.modelcontextprotocol/clientCapabilities":{}"#;
        let (_, out) = f.modern(
            "MCP-Protocol-Version: 2030-01-01\r\nMcp-Method: server/discover\r\n",
            &modern_body("\"d\"", "server/discover", "", meta),
        );
        let (status, head, json) = split(&out);
        assert_eq!(status, 400);
        assert!(head.contains("Content-Type: application/json"));
        assert_eq!(json["id"], "d");
        assert_eq!(json["error"]["code"], -32022);
        assert_eq!(json["error"]["data"]["requested"], "2030-01-01");
        let supported = json["error"]["data"]["supported"].as_array().unwrap();
        assert_eq!(supported[0], "2026-07-28");
        assert!(supported.iter().any(|v| v == "2025-11-25"));
        assert_eq!(
            f.stats[0].get(Counter::error_unsupported_protocol_version),
            1
        );
        assert_eq!(f.sessions.live(), 0);
    }

    #[test]
    fn test_sessionless_tools_call_mcp_name_rules() {
        let f = Fixture::new(ResponseMode::Json);
        let body = modern_body(
            "1",
            "tools/call",
            r#""name":"echo","arguments":{"text":"x"},"#,
            V2026_META,
        );
        let base = format!("{V2026}Mcp-Method: tools/call\r\n");
        let rejected = [
            base.clone(),
            format!("{base}Mcp-Name: add\r\n"),
            format!("{base}Mcp-Name: =?base64?ZWNobw?=\r\n"),
            format!("{base}Mcp-Name: =?base64?ZWNobx==?=\r\n"),
            format!("{base}Mcp-Name: =?base64?YWRk?=\r\n"),
        ];
        for extra in &rejected {
            let (_, out) = f.modern(extra, &body);
            let (status, _, json) = split(&out);
            assert_eq!(status, 400, "{extra}");
            assert_eq!(json["error"]["code"], -32020, "{extra}");
        }
        assert_eq!(
            f.stats[0].get(Counter::error_header_mismatch),
            rejected.len() as u64
        );
        for extra in [
            format!("{base}Mcp-Name: echo\r\n"),
            format!("{base}Mcp-Name: =?base64?ZWNobw==?=\r\n"),
        ] {
            let (_, out) = f.modern(&extra, &body);
            assert_eq!(split(&out).0, 200, "{extra}");
        }
        // A name outside visible ASCII travels Base64-encoded ("é" = C3 A9).
        let (_, out) = f.modern(
            &format!("{base}Mcp-Name: =?base64?w6k=?=\r\n"),
            &modern_body("2", "tools/call", r#""name":"é","#, V2026_META),
        );
        let (status, _, json) = split(&out);
        assert_eq!(status, 200, "the header matched; the tool is unknown");
        assert_eq!(json["error"]["code"], -32602);
        assert_eq!(f.stats[0].get(Counter::error_unknown_tool), 1);
        // Sent raw, the same name is an invalid header value even though the bytes match.
        let (_, out) = f.modern(
            &format!("{base}Mcp-Name: é\r\n"),
            &modern_body("3", "tools/call", r#""name":"é","#, V2026_META),
        );
        let (status, _, json) = split(&out);
        assert_eq!(status, 400);
        assert_eq!(json["error"]["code"], -32020);
    }

    #[test]
    fn test_route_declarations_are_the_listed_ones() {
        let listing: serde_json::Value = serde_json::from_slice(TOOLS_LIST_RESULT).unwrap();
        let route = listing["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "route")
            .unwrap();
        assert_eq!(
            mcp_headers::declarations(&route["inputSchema"]).unwrap(),
            ROUTE_PARAMS.to_vec()
        );
        // The suite's validation scenario tests the first tool with a declaration.
        let first = listing["tools"].as_array().unwrap().iter().find(|t| {
            !mcp_headers::declarations(&t["inputSchema"])
                .unwrap()
                .is_empty()
        });
        assert_eq!(first.unwrap()["name"], "route");
    }

    #[test]
    fn test_route_checks_its_param_headers() {
        let f = Fixture::new(ResponseMode::Json);
        let base = format!("{V2026}Mcp-Method: tools/call\r\nMcp-Name: route\r\n");
        let params = r#""name":"route","arguments":{"region":"Hello","priority":3},"#;
        let call = |extra: &str| {
            let (_, out) = f.modern(
                &format!("{base}{extra}"),
                &modern_body("1", "tools/call", params, V2026_META),
            );
            let (status, _, json) = split(&out);
            (status, json)
        };
        let (status, json) = call("Mcp-Param-Region: Hello\r\nMcp-Param-Priority: 3\r\n");
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["result"]["content"][0]["text"], "Hello");
        let (status, _) =
            call("mcp-param-region: =?base64?SGVsbG8=?=\r\nMCP-PARAM-PRIORITY: 3\r\n");
        assert_eq!(status, 200);
        for bad in [
            "Mcp-Param-Priority: 3\r\n",
            "Mcp-Param-Region: =?base64?SGVsbG8?=\r\nMcp-Param-Priority: 3\r\n",
            "Mcp-Param-Region: Hello\r\nMcp-Param-Priority: 4\r\n",
            "Mcp-Param-Region: Hello\r\n",
        ] {
            let (status, json) = call(bad);
            assert_eq!(status, 400, "{bad}");
            assert_eq!(json["error"]["code"], -32020, "{bad}");
            assert!(
                json["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Mcp-Param-"),
                "{json}"
            );
        }
        // The 2025 eras have no such headers: the arguments alone count.
        assert_eq!(f.stats[0].get(Counter::error_header_mismatch), 4);
    }

    #[test]
    fn test_sessionless_without_client_capabilities_is_invalid_params() {
        let f = Fixture::new(ResponseMode::Json);
        let (_, out) = f.modern(
            &format!("{V2026}Mcp-Method: tools/list\r\n"),
            &modern_body(
                "1",
                "tools/list",
                "",
                r#""io.modelcontextprotocol/protocolVersion":"2026-07-28""#,
            ),
        );
        let (status, _, json) = split(&out);
        assert_eq!(status, 400);
        assert_eq!(json["error"]["code"], -32602);
        assert_eq!(f.stats[0].get(Counter::error_invalid_meta), 1);
    }

    #[test]
    fn test_sessionless_null_id_and_client_response_are_invalid_requests() {
        let f = Fixture::new(ResponseMode::Json);
        let (_, out) = f.modern_call("null", "tools/list", "");
        let (status, _, json) = split(&out);
        assert_eq!(status, 400);
        assert_eq!(json["error"]["code"], -32600);
        // The server sends no requests on this path, so there is nothing to answer.
        let (_, out) = f.modern(V2026, r#"{"jsonrpc":"2.0","id":9,"result":{}}"#);
        let (status, _, json) = split(&out);
        assert_eq!(status, 400);
        assert_eq!(json["error"]["code"], -32600);
        assert_eq!(f.stats[0].get(Counter::error_invalid_request), 2);
        assert_eq!(f.stats[0].get(Counter::client_responses), 0);
    }

    #[test]
    fn test_sessionless_notification_accepted_unless_version_unserved() {
        let f = Fixture::new(ResponseMode::Json);
        let note =
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
        let (_, out) = f.modern(V2026, note);
        assert_eq!(out, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
        let (_, out) = f.modern("MCP-Protocol-Version: 2030-01-01\r\n", note);
        let (status, _, json) = split(&out);
        assert_eq!(status, 400);
        assert_eq!(json["error"]["code"], -32022);
        assert_eq!(json["id"], serde_json::Value::Null);
        assert_eq!(f.stats[0].get(Counter::method_notification), 1);
    }

    #[test]
    fn test_sessionless_stray_session_header_is_ignored() {
        let f = Fixture::new(ResponseMode::Json);
        let (_, out) = f.modern(
            &format!("{V2026}Mcp-Method: tools/list\r\nMcp-Session-Id: 0123456789abcdef0123456789abcdef\r\n"),
            &modern_body("1", "tools/list", "", V2026_META),
        );
        assert_eq!(split(&out).0, 200);
        assert_eq!(f.stats[0].get(Counter::error_unknown_session), 0);
    }

    #[test]
    fn test_sessionless_get_and_delete_are_405() {
        let f = Fixture::new(ResponseMode::Json);
        for method in ["GET", "DELETE"] {
            let (_, out) = f.answer(&format!(
                "{method} /mcp HTTP/1.1\r\nHost: h:1\r\nAccept: text/event-stream\r\n{V2026}\r\n"
            ));
            assert_eq!(
                out,
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nAllow: POST\r\n\r\n"
            );
        }
        assert_eq!(f.stats[0].get(Counter::error_modern_method_not_allowed), 2);
        assert_eq!(f.stats[0].get(Counter::sse_streams_opened), 0);
    }

    #[test]
    fn test_sessionless_listen_acknowledges_then_holds_the_stream() {
        let f = Fixture::new(ResponseMode::Json);
        let (outcome, out) = f.modern_call(
            "\"sub\"",
            "subscriptions/listen",
            r#""notifications":{"toolsListChanged":true},"#,
        );
        assert_eq!(outcome, Outcome::OpenStream);
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/event-stream"), "{head}");
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        assert!(head.contains("X-Accel-Buffering: no"), "{head}");
        assert!(
            !body.ends_with("0\r\n\r\n"),
            "the stream stays open: {body:?}"
        );
        let data = body.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let ack: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
        assert_eq!(ack["params"]["notifications"], serde_json::json!({}));
        assert_eq!(
            ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            "sub"
        );
        assert_eq!(f.stats[0].get(Counter::method_subscriptions_listen), 1);
    }

    fn errors_counted(f: &Fixture) -> u64 {
        Counter::ALL
            .iter()
            .filter(|c| c.name().starts_with("error_"))
            .map(|&c| f.stats[0].get(c))
            .sum()
    }

    proptest::proptest! {
        /// Whatever a 2026-07-28 client sends (well-formed requests with each part present,
        /// absent or wrong, then perhaps cut short or trailed by noise): no panic, no session,
        /// a status the spec allows, and every rejection counted exactly once.
        #[test]
        fn prop_sessionless_never_panics_and_counts_every_rejection(
            id in proptest::sample::select(vec!["", r#","id":1"#, r#","id":null"#, r#","id":"s""#]),
            body_method in proptest::sample::select(vec![
                "tools/call", "tools/list", "server/discover", "subscriptions/listen", "ping",
                "notifications/cancelled",
            ]),
            tool in proptest::option::of(proptest::sample::select(vec!["echo", "add", r"\u00e9"])),
            body_version in proptest::option::of(proptest::sample::select(vec![
                r#""2026-07-28""#, r#""2030-01-01""#, "7",
            ])),
            capabilities in proptest::option::of(proptest::sample::select(vec!["{}", "[]"])),
            cut in proptest::option::of(0usize..220),
            noise in "[ -~]{0,4}",
            header_method in proptest::option::of(proptest::sample::select(vec![
                "tools/call", "tools/list", "server/discover", "subscriptions/listen", "ping",
                "x\u{e9}",
            ])),
            name in proptest::option::of("(=\\?base64\\?)?[A-Za-z0-9+/=?é]{0,10}(\\?=)?"),
            version in proptest::sample::select(vec!["2026-07-28", "2030-01-01"]),
        ) {
            let f = Fixture::new(ResponseMode::Sse);
            let mut meta = Vec::new();
            if let Some(v) = body_version {
                meta.push(format!(r#""io.modelcontextprotocol/protocolVersion":{v}"#));
            }
            if let Some(c) = capabilities {
                meta.push(format!(r#""io.modelcontextprotocol/clientCapabilities":{c}"#));
            }
            let tool = tool
                .map(|t| format!(r#""name":"{t}","arguments":{{"text":"x","a":1,"b":2,"ms":0}},"#))
                .unwrap_or_default();
            let mut body = format!(
                r#"{{"jsonrpc":"2.0"{id},"method":"{body_method}","params":{{{tool}"_meta":{{{}}}}}}}"#,
                meta.join(",")
            );
            if let Some(cut) = cut
                && let Some(prefix) = body.get(..cut)
            {
                body = prefix.to_string();
            }
            body.push_str(&noise);
            let mut extra = format!("MCP-Protocol-Version: {version}\r\n");
            if let Some(method) = header_method {
                extra.push_str(&format!("Mcp-Method: {method}\r\n"));
            }
            if let Some(name) = name {
                extra.push_str(&format!("Mcp-Name: {name}\r\n"));
            }
            let (_, out) = f.modern(&extra, &body);
            let status: u16 = out[9..12].parse().unwrap();
            proptest::prop_assert!([200, 202, 400, 404].contains(&status), "{out}");
            let expected_errors = u64::from(status >= 400);
            proptest::prop_assert_eq!(errors_counted(&f), expected_errors, "{}", out);
            proptest::prop_assert_eq!(f.sessions.live(), 0);
            proptest::prop_assert!(!out.contains("Mcp-Session-Id"));
        }
    }

    #[test]
    fn origin_guard() {
        for ok in [
            "http://localhost",
            "http://localhost:8080",
            "https://127.0.0.1:3000",
            "http://[::1]:9",
        ] {
            assert!(origin_is_local(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost.evil.example",
            "null",
            "http://[::1",
            "http://10.0.0.1",
        ] {
            assert!(!origin_is_local(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn accept_matching() {
        assert!(accepts(
            b"application/json, text/event-stream",
            b"text/event-stream"
        ));
        assert!(accepts(b"*/*", b"application/json"));
        assert!(accepts(b"text/*;q=0.5", b"text/event-stream"));
        assert!(accepts(
            b"Application/JSON; charset=utf-8",
            b"application/json"
        ));
        assert!(!accepts(b"text/html", b"application/json"));
        assert!(!accepts(b"text/event-streamx", b"text/event-stream"));
    }
}
