//! Request templates: every POST the engine sends, encoded once at plan time and completed per
//! request by appending the pieces that vary (session id, JSON-RPC id, Content-Length) into a
//! send-arena buffer. Part of `engine/`, I/O-free; no serde and no `format!` on the send path.
//!
//! Headers are the ones the official Python SDK sends (tests/peers/WIRE-NOTES.md): `Host` with
//! the port, `accept: application/json, text/event-stream`, `content-type: application/json`,
//! and after initialize `mcp-session-id` and `mcp-protocol-version`.
//!
//! Protocol 2026-07-28 is sessionless: no initialize; every POST carries
//! `MCP-Protocol-Version`, `Mcp-Method` (and `Mcp-Name` for tools/call, Base64-encoded as
//! `=?base64?…?=` when the name is not plain visible ASCII) and `params._meta` with the protocol
//! version, client info and client capabilities.

use crate::proto::http_response::write_u64_decimal;
use crate::proto::json::write_escaped_str;

/// The methods the engine can send. `Initialize` and `Initialized` open a session; the others
/// are load.
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
}

impl Method {
    pub const LOAD: [Method; 3] = [Method::Ping, Method::ToolsList, Method::ToolsCall];

    pub fn name(self) -> &'static str {
        match self {
            Method::Initialize => "initialize",
            Method::Initialized => "notifications/initialized",
            Method::Ping => "ping",
            Method::ToolsList => "tools/list",
            Method::ToolsCall => "tools/call",
            Method::Delete => "DELETE",
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::LOAD.into_iter().find(|m| m.name() == name)
    }

    pub fn from_u8(value: u8) -> Option<Method> {
        [
            Method::Initialize,
            Method::Initialized,
            Method::Ping,
            Method::ToolsList,
            Method::ToolsCall,
            Method::Delete,
        ]
        .into_iter()
        .find(|m| *m as u8 == value)
    }

    /// Index among the load methods (for per-method histograms); `None` for the handshake.
    pub fn load_index(self) -> Option<usize> {
        Method::LOAD.iter().position(|m| *m == self)
    }
}

/// One POST, split where the per-request values go:
/// `head_start` [`mcp-session-id: S\r\n`] `Content-Length: N\r\n\r\n` `body_start` [id]
/// `body_end`. Notifications have no id (`body_start` is the whole body).
#[derive(Debug, Clone)]
pub struct Template {
    head_start: Vec<u8>,
    body_start: Vec<u8>,
    body_end: Vec<u8>,
    has_id: bool,
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
    /// Tool name and raw JSON arguments object for `tools/call`.
    pub tool: &'a str,
    pub tool_args_json: &'a str,
}

fn write_user_headers(head: &mut Vec<u8>, config: &TemplateConfig<'_>) {
    for header in config.headers {
        head.extend_from_slice(header.name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(header.value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
}

impl Template {
    pub fn new(method: Method, config: &TemplateConfig<'_>) -> Template {
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
                has_id: false,
            };
        }
        let mut head_start = Vec::with_capacity(256);
        head_start.extend_from_slice(b"POST ");
        head_start.extend_from_slice(config.path.as_bytes());
        head_start.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        head_start.extend_from_slice(config.host.as_bytes());
        head_start.extend_from_slice(b"\r\n");
        write_user_headers(&mut head_start, config);
        head_start.extend_from_slice(
            b"accept: application/json, text/event-stream\r\ncontent-type: application/json\r\n",
        );
        let modern = config.protocol_version == MODERN_PROTOCOL_VERSION;
        if modern {
            head_start.extend_from_slice(b"MCP-Protocol-Version: ");
            head_start.extend_from_slice(config.protocol_version.as_bytes());
            head_start.extend_from_slice(b"\r\nMcp-Method: ");
            head_start.extend_from_slice(method.name().as_bytes());
            head_start.extend_from_slice(b"\r\n");
            if method == Method::ToolsCall {
                head_start.extend_from_slice(b"Mcp-Name: ");
                write_header_value(&mut head_start, config.tool);
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
        let mut body_end = Vec::with_capacity(128);
        let has_id = method != Method::Initialized;
        if has_id {
            body_start.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
            body_end.extend_from_slice(b",\"method\":\"");
            body_end.extend_from_slice(method.name().as_bytes());
            body_end.push(b'"');
        } else {
            body_start.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":\"");
            body_start.extend_from_slice(method.name().as_bytes());
            body_start.extend_from_slice(b"\"}");
        }
        match method {
            Method::Initialize => {
                body_end.extend_from_slice(b",\"params\":{\"protocolVersion\":");
                write_escaped_str(&mut body_end, config.protocol_version);
                body_end.extend_from_slice(
                    b",\"capabilities\":{},\"clientInfo\":{\"name\":\"mcpstorm\",\"version\":\"",
                );
                body_end.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
                body_end.extend_from_slice(b"\"}}}");
            }
            Method::ToolsCall => {
                body_end.extend_from_slice(b",\"params\":{\"name\":");
                write_escaped_str(&mut body_end, config.tool);
                body_end.extend_from_slice(b",\"arguments\":");
                body_end.extend_from_slice(config.tool_args_json.as_bytes());
                if modern {
                    body_end.push(b',');
                    body_end.extend_from_slice(&meta);
                }
                body_end.extend_from_slice(b"}}");
            }
            Method::Ping | Method::ToolsList if modern => {
                body_end.extend_from_slice(b",\"params\":{");
                body_end.extend_from_slice(&meta);
                body_end.extend_from_slice(b"}}");
            }
            Method::Ping | Method::ToolsList => body_end.push(b'}'),
            Method::Initialized | Method::Delete => {}
        }
        Template {
            head_start,
            body_start,
            body_end,
            has_id,
        }
    }

    /// Appends the complete request to `out`.
    pub fn write(&self, out: &mut Vec<u8>, session_id: &[u8], id: u64) {
        out.extend_from_slice(&self.head_start);
        if !session_id.is_empty() {
            out.extend_from_slice(b"mcp-session-id: ");
            out.extend_from_slice(session_id);
            out.extend_from_slice(b"\r\n");
        }
        let id_digits = if self.has_id { decimal_digits(id) } else { 0 };
        let body_len = self.body_start.len() + id_digits + self.body_end.len();
        out.extend_from_slice(b"Content-Length: ");
        write_u64_decimal(out, body_len as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body_start);
        if self.has_id {
            write_u64_decimal(out, id);
        }
        out.extend_from_slice(&self.body_end);
    }
}

/// A header value as 2026-07-28 carries names: as-is when visible ASCII without leading or
/// trailing space, else `=?base64?<standard padded Base64 of the UTF-8>?=`.
fn write_header_value(out: &mut Vec<u8>, value: &str) {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) || b == b' ')
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && (!value.starts_with("=?") || !value.ends_with("?="));
    if plain {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.extend_from_slice(b"=?base64?");
    for chunk in value.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
    out.extend_from_slice(b"?=");
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

    fn config() -> TemplateConfig<'static> {
        TemplateConfig {
            headers: &[],
            host: "127.0.0.1:8080",
            path: "/mcp",
            protocol_version: "2025-11-25",
            tool: "echo",
            tool_args_json: r#"{"text":"hi"}"#,
        }
    }

    fn encode(method: Method, session: &[u8], id: u64) -> String {
        let mut out = Vec::new();
        Template::new(method, &config()).write(&mut out, session, id);
        String::from_utf8(out).unwrap()
    }

    fn body_of(request: &str) -> (&str, &str) {
        request.split_once("\r\n\r\n").unwrap()
    }

    #[test]
    fn test_delete_bytes_exact() {
        assert_eq!(
            encode(Method::Delete, b"0123abcd", 42),
            "DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nmcp-protocol-version: 2025-11-25\r\nmcp-session-id: 0123abcd\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(Method::from_u8(Method::Delete as u8), Some(Method::Delete));
        assert_eq!(Method::Delete.load_index(), None);
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
        Template::new(Method::Delete, &config).write(&mut out, b"s1", 1);
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
            Template::new(method, &config).write(&mut out, b"s1", 7);
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
            ..config()
        };
        for method in [Method::ToolsCall, Method::ToolsList] {
            let mut out = Vec::new();
            Template::new(method, &config).write(&mut out, b"", 3);
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
    fn test_header_value_base64_when_not_plain_ascii() {
        let encode = |s: &str| {
            let mut out = Vec::new();
            write_header_value(&mut out, s);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(encode("echo"), "echo");
        assert_eq!(encode("get weather"), "get weather");
        // RFC 4648 test vectors, wrapped.
        assert_eq!(encode(" f"), "=?base64?IGY=?=");
        assert_eq!(encode("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(encode("=?x?="), "=?base64?PT94Pz0=?=");
        assert_eq!(encode("a\tb"), "=?base64?YQli?=");
    }

    #[test]
    fn test_method_names_round_trip() {
        for method in Method::LOAD {
            assert_eq!(Method::from_name(method.name()), Some(method));
            assert_eq!(Method::from_u8(method as u8), Some(method));
        }
        assert_eq!(Method::from_name("initialize"), None);
    }
}
