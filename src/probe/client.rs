//! A blocking one-session MCP client over one connection at a time (plain TCP or rustls's
//! `StreamOwned`): what `mcpstorm probe` and the run's discovery at baseline speak. It is not
//! the load engine — one request in flight, a thread that waits — so it uses `std::net` and
//! `serde_json` freely; the wire is read by the same I/O-free parsers the engine uses
//! (`proto::http_response`, `proto::chunked`, `proto::sse`). Part of `probe/`.
//!
//! Both eras: 2025 versions `initialize` and keep `Mcp-Session-Id`; 2026-07-28 sends the
//! `_meta` envelope and the `Mcp-Method`/`Mcp-Name` headers on every request. A request the
//! server sends on a response stream (sampling, elicitation) is refused with a JSON-RPC error
//! POSTed back at once, so a tool that asks its client does not hang the probe. A response
//! stream the server ends before the answer, after an `id:`, is resumed by GET with
//! `Last-Event-ID` once its `retry:` has passed (SEP-1699).

use crate::engine::headers::RequestHeader;
use crate::engine::plan::Target;
use crate::proto::chunked::ChunkedDecoder;
use crate::proto::http_response::{BodyFraming, ContentKind, parse_response_head};
use crate::proto::sse::{SseItem, SseParser};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MODERN: &str = "2026-07-28";
/// 2026-07-28's "unsupported protocol version".
const UNSUPPORTED_VERSION: i64 = -32022;

/// Why a request got no JSON-RPC answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeError {
    /// No connection (refused, timed out, TLS handshake failed).
    Connect(String),
    /// The connection broke or the answer did not come within the timeout.
    Io(String),
    /// An HTTP status without a JSON-RPC answer.
    Http(u16),
    /// Bytes that are not HTTP, SSE or JSON-RPC as they should be.
    Protocol(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Connect(e) => write!(f, "connect: {e}"),
            ProbeError::Io(e) => write!(f, "{e}"),
            ProbeError::Http(status) => write!(f, "HTTP {status}"),
            ProbeError::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

/// A JSON-RPC answer: its `result` or its `error`, and how long it took.
#[derive(Debug, Clone)]
pub struct Answer {
    pub outcome: Result<Value, (i64, String)>,
    /// The error's `data`, when it has one (-32022 lists the versions the server speaks).
    pub error_data: Option<Value>,
    pub latency_us: u64,
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub struct ProbeClient {
    target: Target,
    headers: Vec<RequestHeader>,
    tls: Option<Arc<rustls::ClientConfig>>,
    pub protocol_version: String,
    timeout: Duration,
    pub session: Option<String>,
    stream: Option<Box<dyn Stream>>,
    next_id: u64,
    /// The `x-mcp-header` declarations of the tool the next tools/call calls (2026-07-28:
    /// mirrored into `Mcp-Param-*`); the walk sets them from the tool's `inputSchema`.
    pub param_headers: Vec<crate::proto::mcp_headers::ParamHeader>,
    /// HTTP requests sent (POSTs, notifications and the DELETE included): what the server saw.
    pub requests_sent: u64,
}

impl ProbeClient {
    pub fn new(
        target: Target,
        headers: Vec<RequestHeader>,
        tls: Option<Arc<rustls::ClientConfig>>,
        protocol_version: &str,
        timeout: Duration,
    ) -> ProbeClient {
        ProbeClient {
            target,
            headers,
            tls,
            protocol_version: protocol_version.to_string(),
            timeout,
            session: None,
            stream: None,
            next_id: 1,
            param_headers: Vec::new(),
            requests_sent: 0,
        }
    }

    pub fn modern(&self) -> bool {
        self.protocol_version == MODERN
    }

    fn connect(&self) -> Result<Box<dyn Stream>, ProbeError> {
        let tcp = TcpStream::connect_timeout(&self.target.addr, self.timeout)
            .map_err(|e| ProbeError::Connect(format!("{}: {e}", self.target.addr)))?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(self.timeout))
            .and_then(|()| tcp.set_write_timeout(Some(self.timeout)))
            .map_err(|e| ProbeError::Connect(e.to_string()))?;
        match (&self.tls, &self.target.tls_name) {
            (Some(config), Some(name)) => {
                let conn = rustls::ClientConnection::new(config.clone(), name.clone())
                    .map_err(|e| ProbeError::Connect(format!("TLS: {e}")))?;
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                while stream.conn.is_handshaking() {
                    stream
                        .conn
                        .complete_io(&mut stream.sock)
                        .map_err(|e| ProbeError::Connect(format!("TLS handshake: {e}")))?;
                }
                Ok(Box::new(stream))
            }
            _ => Ok(Box::new(tcp)),
        }
    }

    /// `initialize` + `notifications/initialized` (2025 versions) or `server/discover`
    /// (2026-07-28): the server's result.
    pub fn open_session(&mut self) -> Result<Answer, ProbeError> {
        let answer = self.open_session_once()?;
        // -32022: the server names the versions it speaks; once more with the first we do.
        if let Err((UNSUPPORTED_VERSION, _)) = answer.outcome
            && let Some(version) = answer
                .error_data
                .as_ref()
                .and_then(|d| d.get("supported"))
                .and_then(Value::as_array)
                .and_then(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .find(|v| *v == MODERN || crate::server::mcp::PROTOCOL_VERSIONS.contains(v))
                })
        {
            // Once, also for the version just sent: the server may refuse a first request.
            self.protocol_version = version.to_string();
            return self.open_session_once();
        }
        Ok(answer)
    }

    fn open_session_once(&mut self) -> Result<Answer, ProbeError> {
        if self.modern() {
            return self.request("server/discover", json!({}));
        }
        let answer = self.request(
            "initialize",
            json!({
                "protocolVersion": self.protocol_version,
                "capabilities": {},
                "clientInfo": { "name": "mcpstorm-probe", "version": env!("CARGO_PKG_VERSION") }
            }),
        )?;
        if let Ok(result) = &answer.outcome
            && let Some(version) = result.get("protocolVersion").and_then(Value::as_str)
        {
            self.protocol_version = version.to_string();
        }
        if answer.outcome.is_ok() {
            self.post(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))?;
        }
        Ok(answer)
    }

    /// Ends the session (`DELETE`, 2025 versions); errors are of no interest here.
    pub fn close(&mut self) {
        if let Some(session) = self.session.take()
            && let Ok(mut stream) = self.connect()
        {
            let head = self.head("DELETE", &[("Mcp-Session-Id", &session)], 0);
            self.requests_sent += 1;
            let _ = stream.write_all(head.as_bytes());
            let mut scratch = [0u8; 1024];
            let _ = stream.read(&mut scratch);
        }
        self.stream = None;
    }

    /// One request and its answer.
    pub fn request(&mut self, method: &str, mut params: Value) -> Result<Answer, ProbeError> {
        let id = self.next_id;
        self.next_id += 1;
        if self.modern() {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": { "name": "mcpstorm-probe", "version": env!("CARGO_PKG_VERSION") }
            });
        }
        let message = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let started = Instant::now();
        let outcome = self.exchange(&message, Some(id))?;
        let outcome = outcome.ok_or(ProbeError::Protocol("no JSON-RPC response".into()))?;
        let error_data = outcome.get("error").and_then(|e| e.get("data")).cloned();
        let outcome = match (outcome.get("result"), outcome.get("error")) {
            (_, Some(error)) => Err((
                error.get("code").and_then(Value::as_i64).unwrap_or(0),
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )),
            (Some(result), None) => Ok(result.clone()),
            (None, None) => {
                return Err(ProbeError::Protocol(
                    "a response without result or error".into(),
                ));
            }
        };
        Ok(Answer {
            outcome,
            error_data,
            latency_us: started.elapsed().as_micros() as u64,
        })
    }

    /// A notification or response: no answer is read beyond the HTTP status.
    fn post(&mut self, message: &Value) -> Result<(), ProbeError> {
        self.exchange(message, None).map(|_| ())
    }

    fn head(&self, method: &str, extra: &[(&str, &str)], body_len: usize) -> String {
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {body_len}\r\n",
            self.target.path, self.target.host
        );
        head.push_str(&format!(
            "MCP-Protocol-Version: {}\r\n",
            self.protocol_version
        ));
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        for h in &self.headers {
            head.push_str(&format!("{}: {}\r\n", h.name, h.value));
        }
        head.push_str("\r\n");
        head
    }

    /// POSTs `message`; returns the JSON-RPC response whose id is `want` (or `None` when none
    /// is wanted).
    fn exchange(
        &mut self,
        message: &Value,
        want: Option<u64>,
    ) -> Result<Option<Value>, ProbeError> {
        let body = message.to_string();
        let mut extra: Vec<(&str, String)> = Vec::new();
        let mut params_extra: Vec<(String, String)> = Vec::new();
        if let Some(session) = &self.session {
            extra.push(("Mcp-Session-Id", session.clone()));
        }
        if self.modern()
            && let Some(method) = message.get("method").and_then(Value::as_str)
        {
            extra.push(("Mcp-Method", method.to_string()));
            let name = match method {
                "tools/call" | "prompts/get" => message["params"]["name"].as_str(),
                "resources/read" => message["params"]["uri"].as_str(),
                _ => None,
            };
            if let Some(name) = name {
                let mut value = Vec::new();
                crate::proto::mcp_headers::write_value(&mut value, name.as_bytes());
                extra.push(("Mcp-Name", String::from_utf8_lossy(&value).into_owned()));
            }
            if method == "tools/call" && !self.param_headers.is_empty() {
                let arguments = message["params"]["arguments"].to_string();
                let mut lines = Vec::new();
                crate::proto::mcp_headers::write_param_headers(
                    &mut lines,
                    &self.param_headers,
                    arguments.as_bytes(),
                );
                // Each line is `Name: value\r\n`, values visible ASCII (the sentinel did that).
                for line in String::from_utf8_lossy(&lines).split("\r\n") {
                    if let Some((name, value)) = line.split_once(": ") {
                        params_extra.push((name.to_string(), value.to_string()));
                    }
                }
            }
        }
        let extra_ref: Vec<(&str, &str)> = extra
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain(params_extra.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .collect();
        let mut bytes = self.head("POST", &extra_ref, body.len()).into_bytes();
        self.requests_sent += 1;
        bytes.extend_from_slice(body.as_bytes());
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => self.connect()?,
        };
        if stream.write_all(&bytes).is_err() {
            // A kept-alive connection the server closed meanwhile: once more on a new one.
            stream = self.connect()?;
            stream
                .write_all(&bytes)
                .map_err(|e| ProbeError::Io(format!("send: {e}")))?;
        }
        let (answer, reusable, mut resume) = self.read_answer(&mut stream, want)?;
        if reusable {
            self.stream = Some(stream);
        }
        let mut resumes = 0;
        // SEP-1699: a response stream the server ended before the answer, after an event id,
        // is resumed by GET with Last-Event-ID once its `retry:` has passed.
        while answer.is_none()
            && want.is_some()
            && let Some(point) = resume.take()
        {
            resumes += 1;
            if resumes > RESUMES_MAX {
                return Err(ProbeError::Protocol(format!(
                    "the response stream ended {RESUMES_MAX} times without the answer"
                )));
            }
            std::thread::sleep(Duration::from_millis(
                point.retry_ms.min(RESUME_RETRY_MAX_MS),
            ));
            let mut stream = self.connect()?;
            let mut extra: Vec<(&str, &str)> = vec![("Last-Event-ID", &point.last_event_id)];
            let session = self.session.clone();
            if let Some(session) = &session {
                extra.push(("Mcp-Session-Id", session));
            }
            let head = self.head("GET", &extra, 0);
            self.requests_sent += 1;
            stream
                .write_all(head.as_bytes())
                .map_err(|e| ProbeError::Io(format!("send: {e}")))?;
            let (resumed, _, next) = self.read_answer(&mut stream, want)?;
            // The GET stream stays open after the answer: its connection is not reused.
            if resumed.is_some() {
                return Ok(resumed);
            }
            resume = next;
        }
        Ok(answer)
    }

    /// Reads one response; `true` beside the answer when the connection may carry another,
    /// and where to resume an event stream that ended without the answer.
    fn read_answer(
        &mut self,
        stream: &mut Box<dyn Stream>,
        want: Option<u64>,
    ) -> Result<(Option<Value>, bool, Option<ResumePoint>), ProbeError> {
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 16 * 1024];
        // The whole answer within the timeout: a server trickling bytes cannot hold the probe.
        let deadline = Instant::now() + self.timeout;
        let in_time = || {
            if Instant::now() > deadline {
                Err(ProbeError::Io("no whole answer within the timeout".into()))
            } else {
                Ok(())
            }
        };
        let (status, framing, kind, keep_alive, head_len) = loop {
            if let Some(head) =
                parse_response_head(&buf).map_err(|e| ProbeError::Protocol(e.as_str().into()))?
            {
                if let Some(session) = head.session_id {
                    self.session = Some(String::from_utf8_lossy(session).into_owned());
                }
                break (
                    head.status,
                    head.framing(),
                    head.content_type,
                    head.keep_alive,
                    head.head_len,
                );
            }
            in_time()?;
            let n = read_some(stream, &mut chunk)?;
            if n == 0 {
                return Err(ProbeError::Io("the server closed without answering".into()));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..head_len);
        let mut body = BodyReader::new(framing);
        let mut sse = SseParser::new();
        let mut event = Vec::new();
        let mut found: Option<Value> = None;
        let mut whole = Vec::new();
        let mut event_id = Vec::new();
        let mut last_event_id: Option<String> = None;
        let mut retry_ms = RESUME_RETRY_DEFAULT_MS;
        loop {
            let mut plain = Vec::new();
            let done = body.feed(&buf, &mut plain)?;
            buf.clear();
            if kind == ContentKind::EventStream {
                let mut events = Vec::new();
                sse.feed(&plain, &mut |item| match item {
                    SseItem::DataFragment(data) => event.extend_from_slice(data),
                    SseItem::Dispatch { .. } => events.push(std::mem::take(&mut event)),
                    SseItem::Id { fragment, first } => {
                        if first {
                            event_id.clear();
                        }
                        event_id.extend_from_slice(fragment);
                    }
                    SseItem::IdEnd { valid: true } => {
                        last_event_id = Some(String::from_utf8_lossy(&event_id).into_owned());
                    }
                    SseItem::Retry { delay_ms } => retry_ms = delay_ms,
                    _ => {}
                });
                for data in events {
                    let Ok(message) = serde_json::from_slice::<Value>(&data) else {
                        continue;
                    };
                    if message.get("method").is_some() && message.get("id").is_some() {
                        self.refuse_server_request(&message);
                    } else if want.is_some() && message.get("id").and_then(Value::as_u64) == want {
                        found = Some(message);
                    }
                }
                if found.is_some() {
                    // The stream may stay open after the answer: this connection is done.
                    return Ok((found, done && keep_alive, None));
                }
            } else {
                whole.extend_from_slice(&plain);
            }
            if done {
                break;
            }
            in_time()?;
            let n = read_some(stream, &mut chunk)?;
            if n == 0 {
                if body.until_close() {
                    break;
                }
                if kind == ContentKind::EventStream && last_event_id.is_some() {
                    // Cut off mid-stream after an event id: resumable as an ended one is.
                    break;
                }
                return Err(ProbeError::Io("the server closed mid-response".into()));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        if kind == ContentKind::Json && !whole.is_empty() {
            let message: Value = serde_json::from_slice(&whole)
                .map_err(|e| ProbeError::Protocol(format!("body is not JSON: {e}")))?;
            return Ok((Some(message), keep_alive, None));
        }
        if want.is_some() && !(200..300).contains(&status) {
            return Err(ProbeError::Http(status));
        }
        let resume = (kind == ContentKind::EventStream)
            .then_some(last_event_id)
            .flatten()
            .map(|last_event_id| ResumePoint {
                last_event_id,
                retry_ms,
            });
        Ok((None, keep_alive && !body.until_close(), resume))
    }

    /// A request the server sent on a response stream: refused at once (the probe lends no
    /// model and asks no user), on a connection of its own.
    fn refuse_server_request(&mut self, request: &Value) {
        let refusal = json!({
            "jsonrpc": "2.0",
            "id": request["id"],
            "error": { "code": -32601, "message": "mcpstorm probe answers no server request" }
        });
        let saved = self.stream.take();
        let _ = self.exchange(&refusal, None);
        self.stream = saved;
    }
}

/// Where an event stream that ended without the answer resumes (SEP-1699).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResumePoint {
    /// The last `id:` the stream carried: sent back as `Last-Event-ID`.
    last_event_id: String,
    /// The stream's last `retry:`, or [`RESUME_RETRY_DEFAULT_MS`].
    retry_ms: u64,
}

/// Resumes of one answer's stream before the probe gives up on it.
const RESUMES_MAX: u32 = 3;
/// Wait before a resume when the stream named none (the spec leaves it to the client).
const RESUME_RETRY_DEFAULT_MS: u64 = 1000;
/// Longest `retry:` honoured (a server cannot park the probe for longer).
const RESUME_RETRY_MAX_MS: u64 = 10_000;

fn read_some(stream: &mut Box<dyn Stream>, chunk: &mut [u8]) -> Result<usize, ProbeError> {
    loop {
        match stream.read(chunk) {
            // A blocking read returns EINTR when the thread has task work pending (an io_uring
            // of this thread completing, e.g. the kernel-feature probe's), with no signal at
            // all: read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return read_result(other),
        }
    }
}

fn read_result(result: std::io::Result<usize>) -> Result<usize, ProbeError> {
    match result {
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(ProbeError::Io("no answer within the timeout".into()))
        }
        Err(e) => Err(ProbeError::Io(e.to_string())),
    }
}

/// A response body being read, whatever its framing.
struct BodyReader {
    framing: BodyFraming,
    left: u64,
    chunked: ChunkedDecoder,
}

impl BodyReader {
    fn new(framing: BodyFraming) -> BodyReader {
        BodyReader {
            framing,
            left: match framing {
                BodyFraming::Length(n) => n,
                _ => 0,
            },
            chunked: ChunkedDecoder::new(),
        }
    }

    fn until_close(&self) -> bool {
        self.framing == BodyFraming::UntilClose
    }

    /// Appends the body bytes of `input` to `out`; true once the body is complete.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<bool, ProbeError> {
        match self.framing {
            BodyFraming::None => Ok(true),
            BodyFraming::Length(_) => {
                let take = (self.left as usize).min(input.len());
                out.extend_from_slice(&input[..take]);
                self.left -= take as u64;
                Ok(self.left == 0)
            }
            BodyFraming::UntilClose => {
                out.extend_from_slice(input);
                Ok(false)
            }
            BodyFraming::Chunked => {
                let progress = self
                    .chunked
                    .decode(input, &mut |data| out.extend_from_slice(data))
                    .map_err(|e| ProbeError::Protocol(e.as_str().into()))?;
                Ok(progress.done)
            }
        }
    }
}
