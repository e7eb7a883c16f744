//! Request templates: every POST the engine sends, encoded once at plan time and completed per
//! request by appending the pieces that vary (session id, JSON-RPC id, generated values,
//! Content-Length) into a send-arena buffer. Part of `engine/`, I/O-free; no serde and no
//! `format!` on the send path: generated values (`workload.rs`) are drawn into a reused buffer.
//!
//! Headers are the ones the official Python SDK sends (tests/peers/WIRE-NOTES.md): `Host` with
//! the port, `accept: application/json, text/event-stream`, `content-type: application/json`,
//! and after initialize `mcp-session-id` and `mcp-protocol-version`.
//!
//! Protocol 2026-07-28 is sessionless: no initialize; every POST carries
//! `MCP-Protocol-Version`, `Mcp-Method` (and `Mcp-Name` for tools/call, resources/read and
//! prompts/get, Base64-encoded as `=?base64?…?=` when the name is not plain visible ASCII) and
//! `params._meta` with the protocol version, client info and client capabilities.

use super::workload::{GenState, LoadEntry, Piece, Text};
use crate::proto::http_response::write_u64_decimal;
use crate::proto::json::write_escaped_str;

/// The methods the engine can send. `Initialize` and `Initialized` open a session, `Delete`
/// ends it; the others are load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Method {
    Initialize = 0,
    Initialized = 1,
    Ping = 2,
    ToolsList = 3,
    ToolsCall = 4,
    /// `DELETE` of the session (cool_down): not JSON-RPC, no body.
    Delete = 5,
    ResourcesList = 6,
    ResourcesRead = 7,
    ResourcesTemplatesList = 8,
    PromptsList = 9,
    PromptsGet = 10,
    CompletionComplete = 11,
    LoggingSetLevel = 12,
}

impl Method {
    pub const LOAD: [Method; 10] = [
        Method::Ping,
        Method::ToolsList,
        Method::ToolsCall,
        Method::ResourcesList,
        Method::ResourcesRead,
        Method::ResourcesTemplatesList,
        Method::PromptsList,
        Method::PromptsGet,
        Method::CompletionComplete,
        Method::LoggingSetLevel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Initialize => "initialize",
            Method::Initialized => "notifications/initialized",
            Method::Ping => "ping",
            Method::ToolsList => "tools/list",
            Method::ToolsCall => "tools/call",
            Method::Delete => "DELETE",
            Method::ResourcesList => "resources/list",
            Method::ResourcesRead => "resources/read",
            Method::ResourcesTemplatesList => "resources/templates/list",
            Method::PromptsList => "prompts/list",
            Method::PromptsGet => "prompts/get",
            Method::CompletionComplete => "completion/complete",
            Method::LoggingSetLevel => "logging/setLevel",
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::LOAD.into_iter().find(|m| m.name() == name)
    }
}

/// What `Conn::method` holds: a request of the session's handshake or end, or the index of
/// a load entry of the mix (`EnginePlan::entries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Initialize,
    Initialized,
    Delete,
    Load(u8),
}

/// Load entries a mix may have (`Conn::method` keeps the index in a byte).
pub const ENTRIES_MAX: usize = 250;

impl Request {
    pub fn to_u8(self) -> u8 {
        match self {
            Request::Initialize => 0,
            Request::Initialized => 1,
            Request::Delete => 2,
            Request::Load(entry) => 3 + entry,
        }
    }

    pub fn from_u8(value: u8) -> Request {
        match value {
            0 => Request::Initialize,
            1 => Request::Initialized,
            2 => Request::Delete,
            entry => Request::Load(entry - 3),
        }
    }
}

/// One POST, split where the per-request values go:
/// `head_start` [`mcp-session-id: S\r\n`] `Content-Length: N\r\n\r\n` `body_start` [id]
/// `body_end`. Notifications have no id (`body_start` is the whole body).
#[derive(Debug, Clone)]
pub struct Template {
    head_start: Vec<u8>,
    /// Legacy HTTP+SSE: the request line's target is the session's endpoint (`write`'s
    /// session id), and no `mcp-session-id` header is sent.
    path_from_session: bool,
    body_start: Vec<u8>,
    /// After the id: literal bytes and, for generated arguments, values drawn per request.
    body_end: Vec<Piece>,
    /// Bytes of `body_end` when nothing in it is generated (the common, fastest case).
    body_end_static: Option<usize>,
    has_id: bool,
    /// tools/call: where the arguments object starts in `body_end`'s bytes (the name before
    /// it is never generated when this is known).
    arguments_at: Option<usize>,
    /// 2026-07-28: the tool's `x-mcp-header` declarations, mirrored into `Mcp-Param-*` per
    /// request when the arguments are generated (static arguments: written into
    /// `head_start` once).
    param_headers: Vec<crate::proto::mcp_headers::ParamHeader>,
}

/// The sessionless protocol revision (no initialize, per-request headers and `_meta`).
pub const MODERN_PROTOCOL_VERSION: &str = "2026-07-28";

/// Static parts of every request to one target.
#[derive(Debug, Clone)]
pub struct TemplateConfig<'a> {
    /// `-H`/`--header-env` headers, written after Host on every request.
    pub headers: &'a [crate::engine::headers::RequestHeader],
    /// `host:port` exactly as the Host header carries it.
    pub host: &'a str,
    pub path: &'a str,
    pub protocol_version: &'a str,
    /// The legacy HTTP+SSE transport (2024-11-05): requests go to the endpoint the session's
    /// stream named (its path and query, kept as the session id) instead of `path`.
    pub legacy_sse: bool,
    /// The initialize's `capabilities` object (JSON): what `--client-reply` answers.
    pub client_capabilities: &'a str,
}

/// A JSON-RPC POST's head after its request target: the version, Host, the user's headers
/// and the media types every MCP POST carries.
fn write_post_head_rest(head: &mut Vec<u8>, config: &TemplateConfig<'_>) {
    head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    head.extend_from_slice(config.host.as_bytes());
    head.extend_from_slice(b"\r\n");
    write_user_headers(head, config);
    head.extend_from_slice(
        b"accept: application/json, text/event-stream\r\ncontent-type: application/json\r\n",
    );
}

fn write_user_headers(head: &mut Vec<u8>, config: &TemplateConfig<'_>) {
    for header in config.headers {
        head.extend_from_slice(header.name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(header.value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
}

/// The request that opens a session's server-to-client stream (`--streams`): `GET` with
/// `Accept: text/event-stream` in the 2025 eras, a `subscriptions/listen` POST under
/// 2026-07-28. Encoded once per target; only the session id and `Last-Event-ID` (2025 eras:
/// 2026-07-28 streams do not resume) are written per request.
#[derive(Debug, Clone)]
pub struct StreamOpenTemplate {
    head: Vec<u8>,
    /// The listen request's body (2026-07-28); empty for GET.
    body: Vec<u8>,
}

impl StreamOpenTemplate {
    pub fn new(config: &TemplateConfig<'_>) -> StreamOpenTemplate {
        let modern = config.protocol_version == MODERN_PROTOCOL_VERSION;
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(if modern { b"POST " } else { b"GET " });
        head.extend_from_slice(config.path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        head.extend_from_slice(config.host.as_bytes());
        head.extend_from_slice(b"\r\n");
        write_user_headers(&mut head, config);
        let mut body = Vec::new();
        if modern {
            head.extend_from_slice(
                b"accept: application/json, text/event-stream\r\ncontent-type: application/json\r\nMCP-Protocol-Version: ",
            );
            head.extend_from_slice(config.protocol_version.as_bytes());
            head.extend_from_slice(b"\r\nMcp-Method: subscriptions/listen\r\n");
            // Every list-change type: the server sends what it has of them (and the
            // embedded server's `--notify-every` messages).
            body.extend_from_slice(
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscriptions/listen\",\"params\":{\"notifications\":{\"toolsListChanged\":true,\"promptsListChanged\":true,\"resourcesListChanged\":true},\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":",
            );
            write_escaped_str(&mut body, config.protocol_version);
            body.extend_from_slice(
                b",\"io.modelcontextprotocol/clientInfo\":{\"name\":\"mcpstorm\",\"version\":\"",
            );
            body.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
            body.extend_from_slice(b"\"},\"io.modelcontextprotocol/clientCapabilities\":{}}}}");
            head.extend_from_slice(b"Content-Length: ");
            head.extend_from_slice(body.len().to_string().as_bytes());
            head.extend_from_slice(b"\r\n");
        } else {
            head.extend_from_slice(b"accept: text/event-stream\r\nmcp-protocol-version: ");
            head.extend_from_slice(config.protocol_version.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        StreamOpenTemplate { head, body }
    }

    /// Appends the request: `session_id` when the session has one, `last_event_id` when a
    /// stream of the session said one before (2025 eras only).
    pub fn write(&self, out: &mut Vec<u8>, session_id: &[u8], last_event_id: &[u8]) {
        out.extend_from_slice(&self.head);
        if !session_id.is_empty() {
            out.extend_from_slice(b"mcp-session-id: ");
            out.extend_from_slice(session_id);
            out.extend_from_slice(b"\r\n");
        }
        if !last_event_id.is_empty() && self.body.is_empty() {
            out.extend_from_slice(b"last-event-id: ");
            out.extend_from_slice(last_event_id);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

/// The POST that carries a client's answer to a server-to-client request (`reply_conn.rs`):
/// a JSON-RPC response, answered 202 by the server. Encoded once per target; the session
/// (its id, or under `--transport sse` its endpoint) and the body are written per reply.
#[derive(Debug, Clone)]
pub struct ReplyTemplate {
    /// From ` HTTP/1.1` (the request target is written first) to the user headers' end.
    head: Vec<u8>,
    path: Vec<u8>,
    legacy_sse: bool,
}

impl ReplyTemplate {
    pub fn new(config: &TemplateConfig<'_>) -> ReplyTemplate {
        let mut head = Vec::with_capacity(256);
        write_post_head_rest(&mut head, config);
        head.extend_from_slice(b"mcp-protocol-version: ");
        head.extend_from_slice(config.protocol_version.as_bytes());
        head.extend_from_slice(b"\r\n");
        ReplyTemplate {
            head,
            path: config.path.as_bytes().to_vec(),
            legacy_sse: config.legacy_sse,
        }
    }

    /// Appends the POST of `body` for `session` (its `Mcp-Session-Id`, or the legacy
    /// endpoint it POSTs to).
    pub fn write(&self, out: &mut Vec<u8>, session: &[u8], body: &[u8]) {
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(if self.legacy_sse { session } else { &self.path });
        out.extend_from_slice(&self.head);
        if !self.legacy_sse && !session.is_empty() {
            out.extend_from_slice(b"mcp-session-id: ");
            out.extend_from_slice(session);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        write_u64_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    }
}

/// `body_end` under construction: literal bytes merged, generated pieces kept apart.
#[derive(Default)]
struct Pieces(Vec<Piece>);

impl Pieces {
    fn bytes(&mut self, bytes: &[u8]) {
        match self.0.last_mut() {
            Some(Piece::Literal(last)) => last.extend_from_slice(bytes),
            _ => self.0.push(Piece::Literal(bytes.to_vec())),
        }
    }

    /// Raw JSON (an arguments object) with its generators.
    fn json(&mut self, text: &Text) {
        for piece in &text.pieces {
            match piece {
                Piece::Literal(bytes) => self.bytes(bytes),
                generated => self.0.push(generated.clone()),
            }
        }
    }

    /// A JSON string holding `text` (its literal parts escaped here, its generated ones as
    /// they are drawn).
    fn string(&mut self, text: &Text) {
        self.bytes(b"\"");
        for piece in &text.pieces {
            match piece {
                Piece::Literal(bytes) => {
                    let mut escaped = Vec::new();
                    write_escaped_str(&mut escaped, &String::from_utf8_lossy(bytes));
                    self.bytes(&escaped[1..escaped.len() - 1]);
                }
                generated => self.0.push(generated.clone()),
            }
        }
        self.bytes(b"\"");
    }
}

impl Template {
    /// The template of a method that takes no name or arguments (the handshake, DELETE,
    /// ping and the lists).
    pub fn new(method: Method, config: &TemplateConfig<'_>) -> Template {
        Template::build(method, None, config)
    }

    /// The template of one load entry of the mix.
    pub fn for_entry(entry: &LoadEntry, config: &TemplateConfig<'_>) -> Template {
        Template::build(entry.method, Some(entry), config)
    }

    fn build(method: Method, entry: Option<&LoadEntry>, config: &TemplateConfig<'_>) -> Template {
        if method == Method::Delete {
            // The session id is the only per-request value; `Content-Length: 0` ends it.
            let mut head_start = Vec::with_capacity(128);
            head_start.extend_from_slice(b"DELETE ");
            head_start.extend_from_slice(config.path.as_bytes());
            head_start.extend_from_slice(b" HTTP/1.1\r\nHost: ");
            head_start.extend_from_slice(config.host.as_bytes());
            head_start.extend_from_slice(b"\r\n");
            write_user_headers(&mut head_start, config);
            head_start.extend_from_slice(b"mcp-protocol-version: ");
            head_start.extend_from_slice(config.protocol_version.as_bytes());
            head_start.extend_from_slice(b"\r\n");
            return Template {
                head_start,
                body_start: Vec::new(),
                body_end: Vec::new(),
                body_end_static: Some(0),
                has_id: false,
                arguments_at: None,
                param_headers: Vec::new(),
                path_from_session: false,
            };
        }
        let name = entry.and_then(|e| e.name.as_ref());
        let args = entry.and_then(|e| e.args.as_ref());
        let mut head_start = Vec::with_capacity(256);
        if !config.legacy_sse {
            head_start.extend_from_slice(b"POST ");
            head_start.extend_from_slice(config.path.as_bytes());
        }
        write_post_head_rest(&mut head_start, config);
        let modern = config.protocol_version == MODERN_PROTOCOL_VERSION;
        if modern {
            head_start.extend_from_slice(b"MCP-Protocol-Version: ");
            head_start.extend_from_slice(config.protocol_version.as_bytes());
            head_start.extend_from_slice(b"\r\nMcp-Method: ");
            head_start.extend_from_slice(method.name().as_bytes());
            head_start.extend_from_slice(b"\r\n");
            if let Some(name) = name
                && matches!(
                    method,
                    Method::ToolsCall | Method::ResourcesRead | Method::PromptsGet
                )
            {
                // The plan refuses generated names under 2026-07-28: the header is fixed.
                head_start.extend_from_slice(b"Mcp-Name: ");
                crate::proto::mcp_headers::write_value(&mut head_start, name.source.as_bytes());
                head_start.extend_from_slice(b"\r\n");
            }
        } else if method != Method::Initialize {
            head_start.extend_from_slice(b"mcp-protocol-version: ");
            head_start.extend_from_slice(config.protocol_version.as_bytes());
            head_start.extend_from_slice(b"\r\n");
        }
        let mut meta = Vec::new();
        if modern {
            meta.extend_from_slice(b"\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":");
            write_escaped_str(&mut meta, config.protocol_version);
            meta.extend_from_slice(
                b",\"io.modelcontextprotocol/clientInfo\":{\"name\":\"mcpstorm\",\"version\":\"",
            );
            meta.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
            meta.extend_from_slice(b"\"},\"io.modelcontextprotocol/clientCapabilities\":{}}");
        }
        let mut body_start = Vec::with_capacity(64);
        let mut end = Pieces::default();
        let has_id = method != Method::Initialized;
        if has_id {
            body_start.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
            end.bytes(b",\"method\":\"");
            end.bytes(method.name().as_bytes());
            end.bytes(b"\"");
        } else {
            body_start.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":\"");
            body_start.extend_from_slice(method.name().as_bytes());
            body_start.extend_from_slice(b"\"}");
        }
        // The params' members before `_meta` (2026-07-28), each method its own.
        let mut params = Pieces::default();
        let no_name = Text::literal("");
        let name = name.unwrap_or(&no_name);
        let mut arguments_in_params = None;
        match method {
            Method::Initialize => {
                params.bytes(b"\"protocolVersion\":");
                let mut version = Vec::new();
                write_escaped_str(&mut version, config.protocol_version);
                params.bytes(&version);
                params.bytes(b",\"capabilities\":");
                params.bytes(config.client_capabilities.as_bytes());
                params.bytes(b",\"clientInfo\":{\"name\":\"mcpstorm\",\"version\":\"");
                params.bytes(env!("CARGO_PKG_VERSION").as_bytes());
                params.bytes(b"\"}");
            }
            Method::ToolsCall => {
                params.bytes(b"\"name\":");
                params.string(name);
                params.bytes(b",\"arguments\":");
                if let [Piece::Literal(before)] = params.0.as_slice() {
                    arguments_in_params = Some(before.len());
                }
                match args {
                    Some(args) => params.json(args),
                    None => params.bytes(b"{}"),
                }
            }
            Method::ResourcesRead => {
                params.bytes(b"\"uri\":");
                params.string(name);
            }
            Method::PromptsGet => {
                params.bytes(b"\"name\":");
                params.string(name);
                if let Some(args) = args {
                    params.bytes(b",\"arguments\":");
                    params.json(args);
                }
            }
            Method::CompletionComplete => {
                params.bytes(b"\"ref\":{\"type\":\"ref/prompt\",\"name\":");
                params.string(name);
                params.bytes(b"},\"argument\":");
                // The plan checked: one `"NAME":"VALUE"` member, no generator.
                let sample = args
                    .map(|a| a.sample(&Default::default()))
                    .unwrap_or_default();
                match super::workload::completion_argument(&sample) {
                    Some((key, value)) => {
                        params.bytes(b"{\"name\":");
                        params.bytes(key);
                        params.bytes(b",\"value\":");
                        params.bytes(value);
                        params.bytes(b"}");
                    }
                    None => params.bytes(b"{\"name\":\"\",\"value\":\"\"}"),
                }
            }
            Method::LoggingSetLevel => {
                params.bytes(b"\"level\":");
                params.string(name);
            }
            Method::Ping
            | Method::ToolsList
            | Method::ResourcesList
            | Method::ResourcesTemplatesList
            | Method::PromptsList
            | Method::Initialized
            | Method::Delete => {}
        }
        let has_params = !params.0.is_empty();
        let arguments_at = match (arguments_in_params, end.0.as_slice()) {
            (Some(at), [Piece::Literal(before)]) => {
                Some(before.len() + b",\"params\":{".len() + at)
            }
            _ => None,
        };
        match (has_params, modern) {
            _ if method == Method::Initialized => {}
            (false, false) => end.bytes(b"}"),
            (has_params, modern) => {
                end.bytes(b",\"params\":{");
                for piece in params.0 {
                    match piece {
                        Piece::Literal(bytes) => end.bytes(&bytes),
                        generated => end.0.push(generated),
                    }
                }
                if modern {
                    if has_params {
                        end.bytes(b",");
                    }
                    end.bytes(&meta);
                }
                end.bytes(b"}}");
            }
        }
        let body_end_static = match end.0.as_slice() {
            [] => Some(0),
            [Piece::Literal(bytes)] => Some(bytes.len()),
            _ => None,
        };
        Template {
            head_start,
            body_start,
            body_end: end.0,
            body_end_static,
            has_id,
            arguments_at,
            param_headers: Vec::new(),
            path_from_session: config.legacy_sse,
        }
    }

    /// Mirrors the tool's `x-mcp-header` arguments into `Mcp-Param-*` headers (2026-07-28,
    /// a tools/call template). Static arguments are mirrored here, once; generated ones per
    /// request from the very bytes drawn for the body.
    pub fn mirror_params(&mut self, declared: Vec<crate::proto::mcp_headers::ParamHeader>) {
        let Some(at) = self.arguments_at else { return };
        if declared.is_empty() {
            return;
        }
        match (&self.body_end_static, self.body_end.first()) {
            (Some(_), Some(Piece::Literal(bytes))) => {
                if let Some(arguments) = arguments_slice(bytes, at) {
                    crate::proto::mcp_headers::write_param_headers(
                        &mut self.head_start,
                        &declared,
                        arguments,
                    );
                }
            }
            (Some(_), _) => {}
            (None, _) => self.param_headers = declared,
        }
    }

    /// Whether a request of this template draws generated values (`write` then needs them).
    pub fn is_generated(&self) -> bool {
        self.body_end_static.is_none()
    }

    /// Appends the complete request to `out`. `generated` receives the body's generated
    /// part first (a buffer the caller reuses: the length goes before the body).
    pub fn write(
        &self,
        out: &mut Vec<u8>,
        session_id: &[u8],
        id: u64,
        gen_state: &mut GenState<'_>,
        generated: &mut Vec<u8>,
    ) {
        let body_end_len = match self.body_end_static {
            Some(len) => len,
            None => {
                generated.clear();
                for piece in &self.body_end {
                    match piece {
                        Piece::Literal(bytes) => generated.extend_from_slice(bytes),
                        Piece::Gen(generator) => {
                            super::workload::generate(generator, generated, gen_state)
                        }
                    }
                }
                generated.len()
            }
        };
        if self.path_from_session {
            out.extend_from_slice(b"POST ");
            out.extend_from_slice(session_id);
        }
        out.extend_from_slice(&self.head_start);
        if !self.param_headers.is_empty()
            && let Some(arguments) = self
                .arguments_at
                .and_then(|at| arguments_slice(generated, at))
        {
            crate::proto::mcp_headers::write_param_headers(out, &self.param_headers, arguments);
        }
        if !session_id.is_empty() && !self.path_from_session {
            out.extend_from_slice(b"mcp-session-id: ");
            out.extend_from_slice(session_id);
            out.extend_from_slice(b"\r\n");
        }
        let id_digits = if self.has_id { decimal_digits(id) } else { 0 };
        let body_len = self.body_start.len() + id_digits + body_end_len;
        out.extend_from_slice(b"Content-Length: ");
        write_u64_decimal(out, body_len as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body_start);
        if self.has_id {
            write_u64_decimal(out, id);
        }
        match (&self.body_end_static, self.body_end.first()) {
            (Some(_), Some(Piece::Literal(bytes))) => out.extend_from_slice(bytes),
            (Some(_), _) => {}
            (None, _) => out.extend_from_slice(generated),
        }
    }
}

/// The arguments object starting at `at` in a body's bytes.
fn arguments_slice(body_end: &[u8], at: usize) -> Option<&[u8]> {
    let end = crate::proto::json::skip_value(body_end, at).ok()?;
    body_end.get(at..end)
}

fn decimal_digits(mut value: u64) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_sse_requests_go_to_the_sessions_endpoint() {
        let config = TemplateConfig {
            headers: &[],
            host: "h:1",
            path: "/sse",
            protocol_version: "2024-11-05",
            legacy_sse: true,
            client_capabilities: "{}",
        };
        let mut out = Vec::new();
        let (mut rng, mut seq, lines) =
            (super::super::schedule::Rng::new(1), 0, Default::default());
        let mut gen_state = GenState {
            rng: &mut rng,
            lines: &lines,
            seq: &mut seq,
            seq_step: 1,
        };
        Template::new(Method::Ping, &config).write(
            &mut out,
            b"/messages/?session_id=ab",
            7,
            &mut gen_state,
            &mut Vec::new(),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("POST /messages/?session_id=ab HTTP/1.1\r\nHost: h:1\r\n"),
            "{text}"
        );
        assert!(
            !text.to_ascii_lowercase().contains("mcp-session-id"),
            "{text}"
        );
        assert!(
            text.ends_with(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
            "{text}"
        );
    }

    #[test]
    fn client_replies_are_posts_of_their_body_to_the_session() {
        let modern = ReplyTemplate::new(&config());
        let mut out = Vec::new();
        modern.write(&mut out, b"abc", br#"{"jsonrpc":"2.0","id":7,"result":{}}"#);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nmcp-session-id: abc\r\n"), "{text}");
        assert!(
            text.ends_with(
                "Content-Length: 36\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}"
            ),
            "{text}"
        );
        let legacy = ReplyTemplate::new(&TemplateConfig {
            legacy_sse: true,
            ..config()
        });
        let mut out = Vec::new();
        legacy.write(&mut out, b"/messages?session_id=9", b"{}");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("POST /messages?session_id=9 HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(!text.contains("mcp-session-id"), "{text}");
    }

    #[test]
    fn stream_open_requests_by_era() {
        let config = |version| TemplateConfig {
            headers: &[],
            host: "h:1",
            path: "/mcp",
            protocol_version: version,
            legacy_sse: false,
            client_capabilities: "{}",
        };
        let mut out = Vec::new();
        StreamOpenTemplate::new(&config("2025-11-25")).write(&mut out, b"S1", b"7");
        assert_eq!(
            out,
            b"GET /mcp HTTP/1.1\r\nHost: h:1\r\naccept: text/event-stream\r\nmcp-protocol-version: 2025-11-25\r\nmcp-session-id: S1\r\nlast-event-id: 7\r\n\r\n"
        );
        out.clear();
        StreamOpenTemplate::new(&config(MODERN_PROTOCOL_VERSION)).write(&mut out, b"", b"7");
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /mcp HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Mcp-Method: subscriptions/listen"), "{head}");
        assert!(
            !head.contains("last-event-id"),
            "2026-07-28 does not resume: {head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["method"], "subscriptions/listen");
        assert_eq!(body["params"]["notifications"]["toolsListChanged"], true);
    }

    use crate::engine::schedule::Rng;
    use crate::engine::workload::{Lines, attach_args, parse_mix};

    fn config() -> TemplateConfig<'static> {
        TemplateConfig {
            headers: &[],
            host: "127.0.0.1:8080",
            path: "/mcp",
            protocol_version: "2025-11-25",
            legacy_sse: false,
            client_capabilities: "{}",
        }
    }

    /// The template of `method` as the plan builds it: `tools/call` of `echo {"text":"hi"}`.
    fn template(method: Method, config: &TemplateConfig<'_>) -> Template {
        if method != Method::ToolsCall {
            return Template::new(method, config);
        }
        Template::for_entry(&entries("tools/call=echo", &[])[0], config)
    }

    fn entries(mix: &str, args: &[(&str, &str)]) -> Vec<LoadEntry> {
        let mut lines = Lines::default();
        let mut no_files = |p: &str| Err(format!("{p}: no files here"));
        let mut entries = parse_mix(mix, "echo", &mut lines, &mut no_files).unwrap();
        let args: Vec<(String, Text)> = args
            .iter()
            .map(|(n, a)| {
                (
                    n.to_string(),
                    Text::parse(a, &mut lines, &mut no_files).unwrap(),
                )
            })
            .collect();
        let default_args = Text::literal(r#"{"text":"hi"}"#);
        attach_args(&mut entries, &args, "echo", &default_args, &lines).unwrap();
        entries
    }

    fn write(template: &Template, out: &mut Vec<u8>, session: &[u8], id: u64) {
        let (mut rng, mut seq, lines) = (Rng::new(9), 0, Lines::default());
        let mut state = GenState {
            rng: &mut rng,
            lines: &lines,
            seq: &mut seq,
            seq_step: 1,
        };
        template.write(out, session, id, &mut state, &mut Vec::new());
    }

    fn encode(method: Method, session: &[u8], id: u64) -> String {
        let mut out = Vec::new();
        write(&template(method, &config()), &mut out, session, id);
        String::from_utf8(out).unwrap()
    }

    fn body_of(request: &str) -> (&str, &str) {
        request.split_once("\r\n\r\n").unwrap()
    }

    #[test]
    fn test_param_headers_mirror_the_arguments_sent() {
        use crate::proto::mcp_headers::{ParamHeader, ParamKind, check_param_headers};
        let modern = TemplateConfig {
            protocol_version: MODERN_PROTOCOL_VERSION,
            legacy_sse: false,
            ..config()
        };
        let declared = vec![
            ParamHeader::fixed("priority", "Priority", ParamKind::Integer),
            ParamHeader::fixed("region", "Region", ParamKind::String),
        ];
        let (mut rng, mut seq, lines) = (Rng::new(3), 0, Lines::default());
        for args in [
            r#"{"region":"us-west1","priority":2}"#,
            r#"{"region":"{{choice eu|us west|é}}","priority":{{int 1 9}},"text":"{{str 4}}"}"#,
        ] {
            let entry = &entries("tools/call=route", &[("route", args)])[0];
            let mut template = Template::for_entry(entry, &modern);
            template.mirror_params(declared.clone());
            let mut seen = std::collections::BTreeSet::new();
            for id in 0..40 {
                let mut state = GenState {
                    rng: &mut rng,
                    lines: &lines,
                    seq: &mut seq,
                    seq_step: 1,
                };
                let mut out = Vec::new();
                template.write(&mut out, b"", id, &mut state, &mut Vec::new());
                let text = String::from_utf8(out).unwrap();
                let (head, body) = body_of(&text);
                let parsed = crate::proto::http_request::parse_request(
                    text.as_bytes(),
                    &crate::proto::http_request::RequestLimits::default(),
                );
                let crate::proto::http_request::Parse::Complete(request) = parsed.unwrap() else {
                    panic!("incomplete: {text}");
                };
                let arguments = crate::proto::json::object_member(body.as_bytes(), "params")
                    .unwrap()
                    .and_then(|p| crate::proto::json::object_member(p, "arguments").unwrap());
                assert_eq!(request.head.mcp_params.iter().count(), 2, "{head}");
                check_param_headers(
                    &declared,
                    arguments,
                    &request.head.mcp_params,
                    &mut Vec::new(),
                )
                .unwrap_or_else(|e| panic!("{e}: {text}"));
                seen.insert(
                    head.lines()
                        .find(|l| l.starts_with("Mcp-Param-Region"))
                        .unwrap()
                        .to_string(),
                );
            }
            assert_eq!(
                seen.len(),
                if template.is_generated() { 3 } else { 1 },
                "{seen:?}"
            );
        }
    }

    #[test]
    fn test_delete_bytes_exact() {
        assert_eq!(
            encode(Method::Delete, b"0123abcd", 42),
            "DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nmcp-protocol-version: 2025-11-25\r\nmcp-session-id: 0123abcd\r\nContent-Length: 0\r\n\r\n"
        );
        for request in [
            Request::Initialize,
            Request::Initialized,
            Request::Delete,
            Request::Load(0),
            Request::Load(ENTRIES_MAX as u8 - 1),
        ] {
            assert_eq!(Request::from_u8(request.to_u8()), request);
        }
    }

    #[test]
    fn test_initialize_bytes_exact() {
        let request = encode(Method::Initialize, b"", 1);
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcpstorm","version":"0.1.0"}}}"#;
        assert_eq!(
            request,
            format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\naccept: application/json, text/event-stream\r\ncontent-type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        );
    }

    #[test]
    fn test_content_length_matches_body_for_every_id_width() {
        for id in [0, 9, 10, 99, 12345, u64::MAX] {
            for method in [
                Method::Ping,
                Method::ToolsList,
                Method::ToolsCall,
                Method::Initialized,
            ] {
                let request = encode(method, b"abc-123", id);
                let (head, body) = body_of(&request);
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(length, body.len(), "{request}");
                let value: serde_json::Value = serde_json::from_str(body).unwrap();
                assert_eq!(value["method"], method.name());
                if method == Method::Initialized {
                    assert!(value.get("id").is_none());
                } else {
                    assert_eq!(value["id"].as_u64(), Some(id));
                }
                assert!(head.contains("\r\nmcp-session-id: abc-123"));
                assert!(head.contains("\r\nmcp-protocol-version: 2025-11-25"));
            }
        }
    }

    #[test]
    fn test_user_headers_on_every_request() {
        let headers = [
            crate::engine::headers::parse_header("Authorization: Bearer t0k").unwrap(),
            crate::engine::headers::parse_header("X-Tenant: blue").unwrap(),
        ];
        let config = TemplateConfig {
            headers: &headers,
            ..config()
        };
        let mut out = Vec::new();
        write(&Template::new(Method::Delete, &config), &mut out, b"s1", 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer t0k\r\nX-Tenant: blue\r\nmcp-protocol-version: 2025-11-25\r\nmcp-session-id: s1\r\nContent-Length: 0\r\n\r\n"
        );
        for method in [
            Method::Initialize,
            Method::Initialized,
            Method::Ping,
            Method::ToolsCall,
        ] {
            let mut out = Vec::new();
            write(&template(method, &config), &mut out, b"s1", 7);
            let request = String::from_utf8(out).unwrap();
            assert!(
                request.starts_with("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer t0k\r\nX-Tenant: blue\r\naccept: "),
                "{request}"
            );
        }
    }

    #[test]
    fn test_tools_call_carries_name_and_arguments() {
        let request = encode(Method::ToolsCall, b"s", 5);
        let value: serde_json::Value = serde_json::from_str(body_of(&request).1).unwrap();
        assert_eq!(value["params"]["name"], "echo");
        assert_eq!(value["params"]["arguments"]["text"], "hi");
    }

    #[test]
    fn test_modern_2026_headers_and_meta() {
        let config = TemplateConfig {
            protocol_version: MODERN_PROTOCOL_VERSION,
            legacy_sse: false,
            ..config()
        };
        for method in [Method::ToolsCall, Method::ToolsList] {
            let mut out = Vec::new();
            write(&template(method, &config), &mut out, b"", 3);
            let request = String::from_utf8(out).unwrap();
            let (head, body) = body_of(&request);
            assert!(
                head.contains("\r\nMCP-Protocol-Version: 2026-07-28\r\n"),
                "{head}"
            );
            assert!(head.contains(&format!("\r\nMcp-Method: {}\r\n", method.name())));
            assert_eq!(
                head.contains("\r\nMcp-Name: echo\r\n"),
                method == Method::ToolsCall
            );
            assert!(!head.contains("session"));
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            let meta = &value["params"]["_meta"];
            assert_eq!(
                meta["io.modelcontextprotocol/protocolVersion"],
                "2026-07-28"
            );
            assert_eq!(
                meta["io.modelcontextprotocol/clientInfo"]["name"],
                "mcpstorm"
            );
            assert!(meta["io.modelcontextprotocol/clientCapabilities"].is_object());
            assert_eq!(value["id"], 3);
        }
    }

    #[test]
    fn test_method_names_round_trip() {
        for method in Method::LOAD {
            assert_eq!(Method::from_name(method.name()), Some(method));
        }
        assert_eq!(Method::from_name("initialize"), None);
    }

    /// Every load method's request: valid JSON-RPC with the params the spec names, the
    /// Content-Length right, generated values drawn per request.
    #[test]
    fn every_method_with_its_params() {
        let entries = entries(
            "ping,tools/list,tools/call=search,resources/list,resources/read=mcpstorm://items/{{int 1 9}},resources/templates/list,prompts/list,prompts/get=greet,completion/complete=greet,logging/setLevel=info",
            &[
                ("search", r#"{"q":"{{str 6}}","n":{{int 1 3}}}"#),
                ("greet", r#"{"name":"Al"}"#),
            ],
        );
        let (mut rng, mut seq, lines) = (Rng::new(3), 0, Lines::default());
        let mut generated = Vec::new();
        let mut queries = std::collections::BTreeSet::new();
        for round in 0..20 {
            for entry in &entries {
                let template = Template::for_entry(entry, &config());
                let mut out = Vec::new();
                let mut state = GenState {
                    rng: &mut rng,
                    lines: &lines,
                    seq: &mut seq,
                    seq_step: 1,
                };
                template.write(&mut out, b"s", round, &mut state, &mut generated);
                let request = String::from_utf8(out).unwrap();
                let (head, body) = body_of(&request);
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(length, body.len(), "{request}");
                let value: serde_json::Value = serde_json::from_str(body).unwrap();
                assert_eq!(value["method"], entry.method.name());
                assert_eq!(value["id"].as_u64(), Some(round));
                let params = &value["params"];
                match entry.method {
                    Method::ToolsCall => {
                        assert_eq!(params["name"], "search");
                        queries.insert(params["arguments"]["q"].as_str().unwrap().to_string());
                        assert!((1..=3).contains(&params["arguments"]["n"].as_i64().unwrap()));
                    }
                    Method::ResourcesRead => {
                        let uri = params["uri"].as_str().unwrap();
                        let n: u32 = uri
                            .strip_prefix("mcpstorm://items/")
                            .unwrap()
                            .parse()
                            .unwrap();
                        assert!((1..=9).contains(&n));
                    }
                    Method::PromptsGet => {
                        assert_eq!(params["name"], "greet");
                        assert_eq!(params["arguments"]["name"], "Al");
                    }
                    Method::CompletionComplete => {
                        assert_eq!(params["ref"]["type"], "ref/prompt");
                        assert_eq!(params["ref"]["name"], "greet");
                        assert_eq!(params["argument"]["name"], "name");
                        assert_eq!(params["argument"]["value"], "Al");
                    }
                    Method::LoggingSetLevel => assert_eq!(params["level"], "info"),
                    _ => assert!(value.get("params").is_none(), "{body}"),
                }
            }
        }
        assert!(
            queries.len() > 15,
            "generated arguments differ: {queries:?}"
        );
    }
}
