//! The embedded server's MCP logic over streamable HTTP: one parsed HTTP request in, one
//! response's bytes out. Part of `server/`, I/O-free (no sockets, no clock: `now_s` is an
//! argument), so every status and frame is unit-tested without a ring.
//!
//! Versions 2025-03-26, 2025-06-18 and 2025-11-25 (sessions via `Mcp-Session-Id`), plus
//! 2024-11-05 for old clients. Tools: `echo(text)`, `add(a, b)`, `sleep(ms)`.

use super::sessions::{Lookup, SESSION_ID_LEN, SessionTable};
use super::stats::{Counter, ShardStats};
use crate::proto::http_request::{Method, RequestError, RequestHead};
use crate::proto::http_response::write_head;
use crate::proto::{chunked, json, sse};
use std::io::Write as _;

/// Protocol versions we speak, newest first; a session stores its index.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
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
}

/// What the connection must do with the bytes `handle` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send now; close after when `close`.
    Respond { close: bool },
    /// Send after `ms` milliseconds (the `sleep` tool); the connection parses nothing more
    /// until then, so pipelined responses keep their order.
    Delay { ms: u64, close: bool },
    /// A GET stream's head was written; the connection now carries server-sent events.
    OpenStream,
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
}

const JSONRPC_PREFIX: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":";
const TOOLS_LIST_RESULT: &[u8] = br#"{"tools":[{"name":"echo","description":"Returns its text argument unchanged.","inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}},{"name":"add","description":"Adds two numbers and returns the sum as text.","inputSchema":{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}},{"name":"sleep","description":"Waits ms milliseconds on a timer (never blocks the server), then answers.","inputSchema":{"type":"object","properties":{"ms":{"type":"integer","minimum":0,"maximum":60000}},"required":["ms"]}}]}"#;

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
                if is_rpc_response(body) {
                    self.stats.incr(Counter::client_responses);
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
        let protocol = match self.sessions.touch(session_id, now_s) {
            Lookup::Found { protocol, .. } => protocol,
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
        let _ = protocol;
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
                delay_ms = self.tools_call(id, request.params);
            }
            _ => {
                self.stats.incr(Counter::method_other);
                self.stats.incr(Counter::error_method_not_found);
                self.error_frame(id, -32601, "Method not found");
            }
        }
        self.write_rpc_response(out, 200, &[], keep_alive);
        match delay_ms {
            Some(ms) => Outcome::Delay {
                ms,
                close: !keep_alive,
            },
            None => Outcome::Respond { close: !keep_alive },
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
            b"\",\"capabilities\":{\"tools\":{\"listChanged\":false}},\"serverInfo\":{\"name\":\"",
        );
        self.body.extend_from_slice(SERVER_NAME.as_bytes());
        self.body.extend_from_slice(b"\",\"version\":\"");
        self.body.extend_from_slice(SERVER_VERSION.as_bytes());
        self.body.extend_from_slice(b"\"}}}");
        self.write_rpc_response(out, 200, &[("Mcp-Session-Id", &session_id)], keep_alive);
        Outcome::Respond { close: !keep_alive }
    }

    /// Writes the tools/call answer frame into `self.body`; returns a delay for `sleep`.
    fn tools_call(&mut self, id: &[u8], params: Option<&[u8]>) -> Option<u64> {
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
            _ => {
                self.stats.incr(Counter::error_unknown_tool);
                self.error_frame(id, -32602, "Unknown tool");
            }
        }
        None
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
            b"}],\"isError\":true}}"
        } else {
            b"}],\"isError\":false}}"
        });
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
            ResponseMode::Json => {
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
            ResponseMode::Sse => {
                write_head(
                    out,
                    status,
                    Some("text/event-stream"),
                    None,
                    extra,
                    keep_alive,
                );
                self.event.clear();
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
        self.stats.incr(counter);
        self.body.clear();
        self.error_frame(b"null", code, message);
        write_head(
            out,
            status,
            Some("application/json"),
            Some(self.body.len()),
            &[],
            keep_alive,
        );
        out.extend_from_slice(&self.body);
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
        write_head(
            out,
            200,
            Some("application/json"),
            Some(self.body.len()),
            &[],
            keep_alive,
        );
        out.extend_from_slice(&self.body);
        Outcome::Respond { close: !keep_alive }
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
