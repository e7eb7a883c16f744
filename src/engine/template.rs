//! Request templates: every POST the engine sends, encoded once at plan time and completed per
//! request by appending the pieces that vary (session id, JSON-RPC id, Content-Length) into a
//! send-arena buffer. Part of `engine/`, I/O-free; no serde and no `format!` on the send path.
//!
//! Headers are the ones the official Python SDK sends (tests/peers/WIRE-NOTES.md): `Host` with
//! the port, `accept: application/json, text/event-stream`, `content-type: application/json`,
//! and after initialize `mcp-session-id` and `mcp-protocol-version`.

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

/// Static parts of every request to one target.
#[derive(Debug, Clone)]
pub struct TemplateConfig<'a> {
    /// `host:port` exactly as the Host header carries it.
    pub host: &'a str,
    pub path: &'a str,
    pub protocol_version: &'a str,
    /// Tool name and raw JSON arguments object for `tools/call`.
    pub tool: &'a str,
    pub tool_args_json: &'a str,
}

impl Template {
    pub fn new(method: Method, config: &TemplateConfig<'_>) -> Template {
        let mut head_start = Vec::with_capacity(256);
        head_start.extend_from_slice(b"POST ");
        head_start.extend_from_slice(config.path.as_bytes());
        head_start.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        head_start.extend_from_slice(config.host.as_bytes());
        head_start.extend_from_slice(
            b"\r\naccept: application/json, text/event-stream\r\ncontent-type: application/json\r\n",
        );
        if method != Method::Initialize {
            head_start.extend_from_slice(b"mcp-protocol-version: ");
            head_start.extend_from_slice(config.protocol_version.as_bytes());
            head_start.extend_from_slice(b"\r\n");
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
                body_end.extend_from_slice(b"}}");
            }
            Method::Ping | Method::ToolsList => body_end.push(b'}'),
            Method::Initialized => {}
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
    fn test_tools_call_carries_name_and_arguments() {
        let request = encode(Method::ToolsCall, b"s", 5);
        let value: serde_json::Value = serde_json::from_str(body_of(&request).1).unwrap();
        assert_eq!(value["params"]["name"], "echo");
        assert_eq!(value["params"]["arguments"]["text"], "hi");
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
