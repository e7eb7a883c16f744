//! Server side of streamable-HTTP MCP: the HTTP/1.1 request parser of the embedded server.
//!
//! The bytes of one connection accumulate in a buffer owned by the caller; each time more arrive
//! the server calls [`parse_request`], which either says [`Parse::Incomplete`] or returns one
//! whole request (head and body) borrowing from that buffer, with the number of bytes it used so
//! the caller can parse a pipelined request behind it.
//!
//! This module must not touch sockets or clocks, must not allocate (only
//! [`decode_chunked_body`] appends to a caller's `Vec`), and must not panic on any input: every
//! bad byte from a peer becomes a [`RequestError`] that maps to a status code and a counter name.
//! Framing is strict where leniency would let two parsers disagree about where a request ends
//! (request smuggling): obs-fold, whitespace before a colon, Content-Length together with
//! Transfer-Encoding, and differing Content-Lengths are all refused. Line ends are lenient (bare
//! LF is accepted as well as CRLF), like the servers MCP clients are used to.

use std::fmt;

use crate::proto::chunked::ChunkedDecoder;

/// How large one request may be. The caller's connection buffer needs
/// [`RequestLimits::request_bytes_max`] bytes to hold the largest acceptable request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Request line, header lines and the empty line that ends them (and any empty lines a
    /// client sent before the request line).
    pub head_bytes_max: usize,
    /// The body as the application sees it: Content-Length, or decoded size when chunked.
    pub body_bytes_max: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            head_bytes_max: 8192,
            body_bytes_max: 1 << 20,
        }
    }
}

impl RequestLimits {
    /// Largest encoded chunked body accepted. Chunk-size lines, extensions and trailers carry no
    /// payload, so without this bound a peer could make the connection buffer grow forever while
    /// the decoded size stays small. Twice the payload plus a head's worth leaves room for any
    /// sane chunking.
    pub fn chunked_raw_bytes_max(&self) -> usize {
        self.body_bytes_max
            .saturating_mul(2)
            .saturating_add(self.head_bytes_max)
    }

    /// Bytes one request can occupy in the connection buffer at most.
    pub fn request_bytes_max(&self) -> usize {
        let body_raw_bytes_max = self.body_bytes_max.max(self.chunked_raw_bytes_max());
        self.head_bytes_max.saturating_add(body_raw_bytes_max)
    }
}

/// The request method. Methods are case-sensitive (RFC 9110 §9.1), so `get` is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Delete,
    Options,
    Head,
    /// Any other syntactically valid method token (the server answers 405).
    Other,
}

impl Method {
    fn from_token(token: &[u8]) -> Self {
        match token {
            b"GET" => Self::Get,
            b"POST" => Self::Post,
            b"DELETE" => Self::Delete,
            b"OPTIONS" => Self::Options,
            b"HEAD" => Self::Head,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Head => "HEAD",
            Self::Other => "OTHER",
        }
    }
}

/// The request line and the header fields the MCP server acts on, borrowed from the buffer.
/// Header values are trimmed of optional whitespace; other header fields are checked for syntax
/// and then ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: Method,
    /// The request-target as sent, e.g. `/mcp` or `/mcp?x=1`.
    pub target: &'a [u8],
    /// The target without its query. For an absolute-form target (`http://host/mcp`, as sent
    /// to proxies) this is the path part, `/` when the target has none.
    pub path: &'a [u8],
    /// 0 or 1. `HTTP/1.2`..`HTTP/1.9` are read as 1.1 (RFC 9112 §2.3).
    pub http_minor: u8,
    /// `Host`. A missing Host is not an error here (the server decides: RFC 9112 wants 400 for
    /// HTTP/1.1, the Python SDK answers 421 when the port is missing); two Hosts are.
    pub host: Option<&'a [u8]>,
    pub content_type: Option<&'a [u8]>,
    /// The first `Accept` field only: a second one is not merged (that would need a copy).
    pub accept: Option<&'a [u8]>,
    pub origin: Option<&'a [u8]>,
    /// `Mcp-Session-Id`.
    pub session_id: Option<&'a [u8]>,
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<&'a [u8]>,
    /// `Mcp-Method` (2026-07-28 spec).
    pub mcp_method: Option<&'a [u8]>,
    /// `Mcp-Name` (2026-07-28 spec: tools/call, resources/read, prompts/get).
    pub mcp_name: Option<&'a [u8]>,
    /// `Mcp-Param-*` fields (2026-07-28: tool arguments marked `x-mcp-header`), suffixes and
    /// values; repeats kept, for the server to refuse.
    pub mcp_params: crate::proto::mcp_headers::ParamFields<'a>,
    /// `Last-Event-ID`.
    pub last_event_id: Option<&'a [u8]>,
    /// HTTP/1.1: true unless `Connection: close`; HTTP/1.0: only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1: ignored for 1.0).
    pub expect_continue: bool,
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked` (the only coding accepted).
    pub chunked: bool,
}

/// The request body, borrowed from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// Neither Content-Length nor Transfer-Encoding: a request without framing has no body.
    Empty,
    /// The Content-Length bytes (empty for `Content-Length: 0`).
    Plain(&'a [u8]),
    /// The encoded bytes, terminal chunk and trailers included; see [`decode_chunked_body`].
    Chunked { raw: &'a [u8] },
}

/// One whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub head: RequestHead<'a>,
    pub body: Body<'a>,
    /// Bytes of the buffer this request used; a pipelined request starts here.
    pub total_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned by value and matched at once, never stored; boxing would allocate per request"
)]
pub enum Parse<'a> {
    /// More bytes are needed; call again when they arrive (with the same buffer grown).
    Incomplete,
    Complete(Request<'a>),
}

/// A complete head, before the body has necessarily arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHead<'a> {
    pub head: RequestHead<'a>,
    /// Bytes of the buffer the head used; the body starts here.
    pub head_len: usize,
}

/// Everything a peer can get wrong in a request. Each maps to the status to answer with
/// (the connection is closed afterwards: after a framing error the next request's start is
/// unknown) and a stable counter name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestError {
    /// The head did not end within `head_bytes_max` bytes.
    HeadTooLarge,
    /// Content-Length, or the decoded chunked size, passes `body_bytes_max`; or the encoded
    /// chunked body passes [`RequestLimits::chunked_raw_bytes_max`].
    BodyTooLarge,
    BadRequestLine,
    /// Bad field name or value, obs-fold, whitespace before a colon, a duplicated field that must
    /// be unique, or Transfer-Encoding on HTTP/1.0 (RFC 9112 §6.1: framing is faulty).
    BadHeader,
    BadContentLength,
    /// Content-Length and Transfer-Encoding both present, or Content-Lengths that differ.
    ConflictingLength,
    /// A transfer coding other than a single `chunked`.
    UnsupportedTransferEncoding,
    /// An HTTP version other than 1.x.
    UnsupportedVersion,
    /// Malformed chunked encoding.
    BadChunk,
}

impl RequestError {
    pub const ALL: [RequestError; 9] = [
        Self::HeadTooLarge,
        Self::BodyTooLarge,
        Self::BadRequestLine,
        Self::BadHeader,
        Self::BadContentLength,
        Self::ConflictingLength,
        Self::UnsupportedTransferEncoding,
        Self::UnsupportedVersion,
        Self::BadChunk,
    ];

    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            Self::HeadTooLarge => 431,
            Self::BodyTooLarge => 413,
            Self::BadRequestLine
            | Self::BadHeader
            | Self::BadContentLength
            | Self::ConflictingLength
            | Self::BadChunk => 400,
            Self::UnsupportedTransferEncoding => 501,
            Self::UnsupportedVersion => 505,
        }
    }

    /// The reason phrase that goes with [`RequestError::status`].
    pub fn reason_phrase(self) -> &'static str {
        match self.status() {
            431 => "Request Header Fields Too Large",
            413 => "Content Too Large",
            501 => "Not Implemented",
            505 => "HTTP Version Not Supported",
            _ => "Bad Request",
        }
    }

    /// Stable snake_case name, used as a counter name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeadTooLarge => "head_too_large",
            Self::BodyTooLarge => "body_too_large",
            Self::BadRequestLine => "bad_request_line",
            Self::BadHeader => "bad_header",
            Self::BadContentLength => "bad_content_length",
            Self::ConflictingLength => "conflicting_length",
            Self::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Self::UnsupportedVersion => "unsupported_version",
            Self::BadChunk => "bad_chunk",
        }
    }

    /// Position in [`RequestError::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for RequestError {}

/// Parses one request from the start of `buf`. Call again with the same (grown) buffer after
/// `Incomplete`; after `Complete`, drop `total_len` bytes and call again for a pipelined
/// request. Errors are final for the connection.
///
/// Errors come as early as the bytes allow: a bad request line as soon as it is complete, an
/// unterminated head as soon as `head_bytes_max` bytes have arrived, a too large Content-Length
/// as soon as the head is complete. The head is re-parsed on every call: it is at most
/// `head_bytes_max` bytes, and keeping no state makes the parser trivially restartable.
pub fn parse_request<'a>(buf: &'a [u8], limits: &RequestLimits) -> Result<Parse<'a>, RequestError> {
    let Some(ParsedHead { head, head_len }) = parse_head(buf, limits)? else {
        return Ok(Parse::Incomplete);
    };
    let rest = &buf[head_len..];
    let (body, body_len) = if head.chunked {
        match chunked_body_len(rest, limits)? {
            Some(raw_len) => (
                Body::Chunked {
                    raw: &rest[..raw_len],
                },
                raw_len,
            ),
            None => return Ok(Parse::Incomplete),
        }
    } else if let Some(content_length) = head.content_length {
        // parse_head refused lengths above body_bytes_max, which is a usize.
        let body_len = usize::try_from(content_length).map_err(|_| RequestError::BodyTooLarge)?;
        if rest.len() < body_len {
            return Ok(Parse::Incomplete);
        }
        (Body::Plain(&rest[..body_len]), body_len)
    } else {
        (Body::Empty, 0)
    };
    Ok(Parse::Complete(Request {
        head,
        body,
        total_len: head_len + body_len,
    }))
}

/// Parses only the head: `Ok(None)` until it is complete. For a server that wants to act
/// before the body arrives (send `100 Continue`, refuse a wrong path early).
pub fn parse_head<'a>(
    buf: &'a [u8],
    limits: &RequestLimits,
) -> Result<Option<ParsedHead<'a>>, RequestError> {
    // Only the first head_bytes_max bytes can hold the head; bytes after it are body or the
    // next request and must not change the verdict on this head.
    let window = &buf[..buf.len().min(limits.head_bytes_max)];
    let start = skip_leading_empty_lines(window);
    let Some(head_len) = find_head_end(window, start) else {
        // Refuse a peer that does not speak HTTP without waiting for a whole head. This comes
        // first so that the verdict does not depend on how many bytes have arrived: a whole
        // head would report its request line before its size.
        if let Some(line_end) = find_byte(&window[start..], b'\n') {
            parse_request_line(strip_cr(&window[start..start + line_end]))?;
        }
        // With head_bytes_max bytes and no end in them, the head is already too large.
        if buf.len() >= limits.head_bytes_max {
            return Err(RequestError::HeadTooLarge);
        }
        return Ok(None);
    };
    let head = parse_head_lines(&window[start..head_len], limits)?;
    Ok(Some(ParsedHead { head, head_len }))
}

/// Decodes a [`Body::Chunked`] body, appending the payload to `out`. On error `out` may hold
/// part of the payload.
pub fn decode_chunked_body(raw: &[u8], out: &mut Vec<u8>) -> Result<(), RequestError> {
    let mut decoder = ChunkedDecoder::new();
    let mut pos = 0;
    loop {
        let progress = decoder
            .decode(&raw[pos..], &mut |data: &[u8]| out.extend_from_slice(data))
            .map_err(|_| RequestError::BadChunk)?;
        assert!(
            progress.consumed <= raw.len() - pos,
            "chunked decoder consumed more than it was given"
        );
        pos += progress.consumed;
        if progress.done {
            // Bytes after the trailers are not part of this body.
            return if pos == raw.len() {
                Ok(())
            } else {
                Err(RequestError::BadChunk)
            };
        }
        if progress.consumed == 0 {
            return Err(RequestError::BadChunk);
        }
    }
}

/// Length of the encoded chunked body at the start of `rest`, or `None` while it is incomplete.
fn chunked_body_len(rest: &[u8], limits: &RequestLimits) -> Result<Option<usize>, RequestError> {
    let raw_bytes_max = limits.chunked_raw_bytes_max();
    // Never look past the bound: a body that has not ended within it is too large whatever
    // follows, and this keeps the work per call bounded.
    let input = &rest[..rest.len().min(raw_bytes_max)];
    let mut decoder = ChunkedDecoder::new();
    let mut decoded_bytes: usize = 0;
    let mut pos = 0;
    loop {
        let progress = decoder
            .decode(&input[pos..], &mut |data: &[u8]| {
                decoded_bytes = decoded_bytes.saturating_add(data.len());
            })
            .map_err(|_| {
                // The same bytes must give the same verdict however they were split: had the
                // decoder stopped where the limit passed, that would have been the error.
                if decoded_bytes > limits.body_bytes_max {
                    RequestError::BodyTooLarge
                } else {
                    RequestError::BadChunk
                }
            })?;
        assert!(
            progress.consumed <= input.len() - pos,
            "chunked decoder consumed more than it was given"
        );
        pos += progress.consumed;
        if decoded_bytes > limits.body_bytes_max {
            return Err(RequestError::BodyTooLarge);
        }
        if progress.done {
            return Ok(Some(pos));
        }
        if progress.consumed == 0 || pos == input.len() {
            break;
        }
    }
    if rest.len() > raw_bytes_max {
        return Err(RequestError::BodyTooLarge);
    }
    Ok(None)
}

/// RFC 9112 §2.2: a server SHOULD ignore empty lines before the request line (some clients
/// send a CRLF after a POST body).
fn skip_leading_empty_lines(window: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        match window.get(pos..pos + 2) {
            Some(b"\r\n") => pos += 2,
            _ if window.get(pos) == Some(&b'\n') => pos += 1,
            _ => return pos,
        }
    }
}

/// End of the head (just past the empty line) searching from `from`, which is at a non-empty
/// line. An empty line is `\n` or `\r\n` right after a `\n`.
fn find_head_end(window: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    while let Some(offset) = find_byte(&window[pos..], b'\n') {
        let line_feed = pos + offset;
        match window.get(line_feed + 1) {
            Some(b'\n') => return Some(line_feed + 2),
            Some(b'\r') if window.get(line_feed + 2) == Some(&b'\n') => return Some(line_feed + 3),
            _ => {}
        }
        pos = line_feed + 1;
    }
    None
}

/// Transfer-Encoding as seen so far.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TransferCoding {
    Chunked,
    Unsupported,
}

/// Parses a complete head: request line, header lines, empty line.
fn parse_head_lines<'a>(
    head: &'a [u8],
    limits: &RequestLimits,
) -> Result<RequestHead<'a>, RequestError> {
    let mut lines = Lines { rest: head };
    let request_line = lines.next().ok_or(RequestError::BadRequestLine)?;
    let (method, target, http_minor) = parse_request_line(request_line)?;
    let mut parsed = RequestHead {
        method,
        target,
        path: path_of(target),
        http_minor,
        host: None,
        content_type: None,
        accept: None,
        origin: None,
        session_id: None,
        protocol_version: None,
        mcp_method: None,
        mcp_name: None,
        mcp_params: Default::default(),
        last_event_id: None,
        keep_alive: false,
        expect_continue: false,
        content_length: None,
        chunked: false,
    };
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut transfer_coding: Option<TransferCoding> = None;

    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = split_header_line(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = parse_content_length(value)?;
            match parsed.content_length {
                Some(previous) if previous != length => {
                    return Err(RequestError::ConflictingLength);
                }
                _ => parsed.content_length = Some(length),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // A second field extends the coding list, and only a lone `chunked` is accepted.
            transfer_coding = Some(match transfer_coding {
                None if is_lone_chunked(value) => TransferCoding::Chunked,
                _ => TransferCoding::Unsupported,
            });
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(trim_ows) {
                connection_close |= option.eq_ignore_ascii_case(b"close");
                connection_keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            parsed.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"accept") {
            // Lists may legitimately repeat; keep the first rather than refuse.
            parsed.accept.get_or_insert(value);
        } else if name.len() > PARAM_PREFIX.len()
            && name[..PARAM_PREFIX.len()].eq_ignore_ascii_case(PARAM_PREFIX)
        {
            parsed.mcp_params.push(&name[PARAM_PREFIX.len()..], value);
        } else if let Some(slot) = unique_field(&mut parsed, name) {
            // Two values for a field that identifies the host or session would let the server
            // and a proxy in front of it act on different ones.
            if slot.replace(value).is_some() {
                return Err(RequestError::BadHeader);
            }
        }
    }

    if let Some(coding) = transfer_coding {
        if parsed.content_length.is_some() {
            return Err(RequestError::ConflictingLength);
        }
        if http_minor == 0 {
            return Err(RequestError::BadHeader);
        }
        if coding == TransferCoding::Unsupported {
            return Err(RequestError::UnsupportedTransferEncoding);
        }
        parsed.chunked = true;
    }
    if let Some(length) = parsed.content_length
        && length > limits.body_bytes_max as u64
    {
        return Err(RequestError::BodyTooLarge);
    }
    parsed.keep_alive = if http_minor == 0 {
        connection_keep_alive && !connection_close
    } else {
        !connection_close
    };
    parsed.expect_continue &= http_minor == 1;
    Ok(parsed)
}

const PARAM_PREFIX: &[u8] = crate::proto::mcp_headers::PARAM_PREFIX.as_bytes();

/// The slot for a header field that may appear at most once.
fn unique_field<'h, 'a>(
    head: &'h mut RequestHead<'a>,
    name: &[u8],
) -> Option<&'h mut Option<&'a [u8]>> {
    let slot = match name.len() {
        4 if name.eq_ignore_ascii_case(b"host") => &mut head.host,
        6 if name.eq_ignore_ascii_case(b"origin") => &mut head.origin,
        8 if name.eq_ignore_ascii_case(b"mcp-name") => &mut head.mcp_name,
        10 if name.eq_ignore_ascii_case(b"mcp-method") => &mut head.mcp_method,
        12 if name.eq_ignore_ascii_case(b"content-type") => &mut head.content_type,
        13 if name.eq_ignore_ascii_case(b"last-event-id") => &mut head.last_event_id,
        14 if name.eq_ignore_ascii_case(b"mcp-session-id") => &mut head.session_id,
        20 if name.eq_ignore_ascii_case(b"mcp-protocol-version") => &mut head.protocol_version,
        _ => return None,
    };
    Some(slot)
}

/// `method SP request-target SP HTTP-version`, single spaces only: RFC 9112 §3 allows lenient
/// whitespace, but a proxy that splits differently is how smuggling starts.
fn parse_request_line(line: &[u8]) -> Result<(Method, &[u8], u8), RequestError> {
    let method_end = find_byte(line, b' ').ok_or(RequestError::BadRequestLine)?;
    let method = &line[..method_end];
    let rest = &line[method_end + 1..];
    let target_end = find_byte(rest, b' ').ok_or(RequestError::BadRequestLine)?;
    let target = &rest[..target_end];
    let version = &rest[target_end + 1..];
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return Err(RequestError::BadRequestLine);
    }
    // Visible ASCII only: clients percent-encode everything else.
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(RequestError::BadRequestLine);
    }
    let http_minor = parse_version(version)?;
    Ok((Method::from_token(method), target, http_minor))
}

/// `HTTP/` DIGIT `.` DIGIT.
fn parse_version(version: &[u8]) -> Result<u8, RequestError> {
    let &[b'H', b'T', b'T', b'P', b'/', major, b'.', minor] = version else {
        return Err(RequestError::BadRequestLine);
    };
    if !major.is_ascii_digit() || !minor.is_ascii_digit() {
        return Err(RequestError::BadRequestLine);
    }
    match (major, minor) {
        (b'1', b'0') => Ok(0),
        // A higher 1.x minor is processed as the highest we implement (RFC 9112 §2.3).
        (b'1', _) => Ok(1),
        _ => Err(RequestError::UnsupportedVersion),
    }
}

/// The target without its query; for absolute-form, the path part of the URI.
fn path_of(target: &[u8]) -> &[u8] {
    let without_query = match find_byte(target, b'?') {
        Some(query_start) => &target[..query_start],
        None => target,
    };
    let after_scheme = [&b"http://"[..], b"https://"].iter().find_map(|scheme| {
        let prefix = without_query.get(..scheme.len())?;
        prefix
            .eq_ignore_ascii_case(scheme)
            .then(|| &without_query[scheme.len()..])
    });
    match after_scheme {
        Some(authority_and_path) => match find_byte(authority_and_path, b'/') {
            Some(path_start) => &authority_and_path[path_start..],
            None => b"/",
        },
        None => without_query,
    }
}

/// `field-name ":" OWS field-value OWS` → (name, trimmed value).
fn split_header_line(line: &[u8]) -> Result<(&[u8], &[u8]), RequestError> {
    // A line starting with whitespace is obs-fold (or whitespace before the first field):
    // RFC 9112 §5.2 lets a server refuse it, and joining lines is how smuggling payloads hide.
    let colon = find_byte(line, b':').ok_or(RequestError::BadHeader)?;
    let name = &line[..colon];
    // Whitespace before the colon is not a token byte, so this refuses it too (RFC 9112 §5.1).
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        return Err(RequestError::BadHeader);
    }
    let value = trim_ows(&line[colon + 1..]);
    if !value.iter().all(|&b| is_field_value_byte(b)) {
        return Err(RequestError::BadHeader);
    }
    Ok((name, value))
}

/// `1*DIGIT`, or a list of identical ones (RFC 9110 §8.6 lets a recipient accept `5, 5`).
fn parse_content_length(value: &[u8]) -> Result<u64, RequestError> {
    let mut length: Option<u64> = None;
    for element in value.split(|&b| b == b',').map(trim_ows) {
        let parsed = parse_decimal(element).ok_or(RequestError::BadContentLength)?;
        match length {
            Some(previous) if previous != parsed => return Err(RequestError::ConflictingLength),
            _ => length = Some(parsed),
        }
    }
    length.ok_or(RequestError::BadContentLength)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Exactly one non-empty list element, `chunked` (empty elements are ignored, RFC 9110 §5.6.1).
fn is_lone_chunked(value: &[u8]) -> bool {
    let mut codings = value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|coding| !coding.is_empty());
    matches!(
        (codings.next(), codings.next()),
        (Some(coding), None) if coding.eq_ignore_ascii_case(b"chunked")
    )
}

/// Lines of a head, without their `\n` or `\r\n`. A bare `\r` elsewhere stays in the line and
/// is refused by the syntax checks.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let line_feed = find_byte(self.rest, b'\n')?;
        let line = &self.rest[..line_feed];
        self.rest = &self.rest[line_feed + 1..];
        Some(strip_cr(line))
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// tchar (RFC 9110 §5.6.2).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// field-vchar, SP, HTAB, obs-text; no other control bytes (NUL, bare CR, DEL).
fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// Position of the first `needle`, eight bytes at a time (heads are scanned on every call).
fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES.wrapping_mul(u64::from(needle));
    let (words, tail) = haystack.as_chunks::<8>();
    for (index, word) in words.iter().enumerate() {
        let xored = u64::from_le_bytes(*word) ^ pattern;
        // The lowest set high bit marks the first zero byte exactly (false positives can only
        // appear above a true zero).
        let zero_bytes = xored.wrapping_sub(ONES) & !xored & HIGHS;
        if zero_bytes != 0 {
            return Some(index * 8 + (zero_bytes.trailing_zeros() / 8) as usize);
        }
    }
    let tail_start = words.len() * 8;
    tail.iter()
        .position(|&b| b == needle)
        .map(|offset| tail_start + offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SESSION_ID: &str = "5b1c9d0e3f2a4b6c8d7e9f0a1b2c3d4e";
    const TOOLS_CALL: &str = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

    fn parse(buf: &[u8]) -> Result<Parse<'_>, RequestError> {
        parse_request(buf, &RequestLimits::default())
    }

    fn complete(buf: &[u8]) -> Request<'_> {
        match parse(buf) {
            Ok(Parse::Complete(request)) => request,
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    /// A head with every optional field absent, as for `GET /mcp HTTP/1.1`.
    fn bare_head(method: Method, target: &'static [u8]) -> RequestHead<'static> {
        RequestHead {
            method,
            target,
            path: target,
            http_minor: 1,
            host: None,
            content_type: None,
            accept: None,
            origin: None,
            session_id: None,
            protocol_version: None,
            mcp_method: None,
            mcp_name: None,
            mcp_params: Default::default(),
            last_event_id: None,
            keep_alive: true,
            expect_continue: false,
            content_length: None,
            chunked: false,
        }
    }

    fn chunk_encode(payload: &[u8], chunk_bytes: usize, trailers: &str) -> Vec<u8> {
        let mut encoded = Vec::new();
        for chunk in payload.chunks(chunk_bytes) {
            encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            encoded.extend_from_slice(chunk);
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"0\r\n");
        encoded.extend_from_slice(trailers.as_bytes());
        encoded.extend_from_slice(b"\r\n");
        encoded
    }

    /// What the MCP Python SDK (httpx) sends for tools/call.
    fn httpx_post() -> Vec<u8> {
        format!(
            "POST /mcp HTTP/1.1\r\n\
             Host: 127.0.0.1:8000\r\n\
             Accept: application/json, text/event-stream\r\n\
             Accept-Encoding: gzip, deflate\r\n\
             Connection: keep-alive\r\n\
             User-Agent: python-httpx/0.28.1\r\n\
             mcp-session-id: {SESSION_ID}\r\n\
             mcp-protocol-version: 2025-06-18\r\n\
             content-type: application/json\r\n\
             Content-Length: {}\r\n\
             \r\n{TOOLS_CALL}",
            TOOLS_CALL.len()
        )
        .into_bytes()
    }

    fn httpx_post_head() -> RequestHead<'static> {
        RequestHead {
            host: Some(b"127.0.0.1:8000"),
            content_type: Some(b"application/json"),
            accept: Some(b"application/json, text/event-stream"),
            session_id: Some(SESSION_ID.as_bytes()),
            protocol_version: Some(b"2025-06-18"),
            content_length: Some(TOOLS_CALL.len() as u64),
            ..bare_head(Method::Post, b"/mcp")
        }
    }

    /// A streamed body as undici (Node fetch) sends it, 2026-07-28 headers, with a trailer.
    fn chunked_post() -> Vec<u8> {
        let mut request = b"POST /mcp HTTP/1.1\r\n\
            host: localhost:3000\r\n\
            connection: keep-alive\r\n\
            content-type: application/json\r\n\
            accept: application/json, text/event-stream\r\n\
            mcp-protocol-version: 2026-07-28\r\n\
            mcp-method: tools/call\r\n\
            mcp-name: echo\r\n\
            transfer-encoding: chunked\r\n\
            \r\n"
            .to_vec();
        request.extend(chunk_encode(TOOLS_CALL.as_bytes(), 16, "X-Checksum: 1\r\n"));
        request
    }

    fn chunked_post_head() -> RequestHead<'static> {
        RequestHead {
            host: Some(b"localhost:3000"),
            content_type: Some(b"application/json"),
            accept: Some(b"application/json, text/event-stream"),
            protocol_version: Some(b"2026-07-28"),
            mcp_method: Some(b"tools/call"),
            mcp_name: Some(b"echo"),
            chunked: true,
            ..bare_head(Method::Post, b"/mcp")
        }
    }

    fn sse_get() -> Vec<u8> {
        format!(
            "GET /mcp?stream=1 HTTP/1.1\r\n\
             Host: localhost:8080\r\n\
             Accept: text/event-stream\r\n\
             Mcp-Session-Id: {SESSION_ID}\r\n\
             MCP-Protocol-Version: 2025-06-18\r\n\
             Last-Event-ID: 42\r\n\
             Origin: http://localhost:8080\r\n\
             \r\n"
        )
        .into_bytes()
    }

    fn sse_get_head() -> RequestHead<'static> {
        RequestHead {
            path: b"/mcp",
            host: Some(b"localhost:8080"),
            accept: Some(b"text/event-stream"),
            session_id: Some(SESSION_ID.as_bytes()),
            protocol_version: Some(b"2025-06-18"),
            last_event_id: Some(b"42"),
            origin: Some(b"http://localhost:8080"),
            ..bare_head(Method::Get, b"/mcp?stream=1")
        }
    }

    fn delete() -> Vec<u8> {
        format!(
            "DELETE /mcp HTTP/1.1\r\n\
             Host: localhost:8080\r\n\
             Mcp-Session-Id: {SESSION_ID}\r\n\
             Connection: close\r\n\
             \r\n"
        )
        .into_bytes()
    }

    fn delete_head() -> RequestHead<'static> {
        RequestHead {
            host: Some(b"localhost:8080"),
            session_id: Some(SESSION_ID.as_bytes()),
            keep_alive: false,
            ..bare_head(Method::Delete, b"/mcp")
        }
    }

    /// A notification with bare LF line ends, as a hand-written client might send.
    fn lf_post() -> Vec<u8> {
        let body = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        format!(
            "POST /mcp HTTP/1.1\nHost: a:1\nContent-Type: application/json\nContent-Length: {}\n\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn pipelined() -> Vec<u8> {
        let mut both = httpx_post();
        both.extend(chunked_post());
        both.extend(sse_get());
        both
    }

    /// Appends `parts` to a connection buffer one after the other and parses after each, as the
    /// server does; returns every request (Debug-printed, owned) in order.
    fn feed_parts(parts: &[&[u8]]) -> Vec<String> {
        let mut connection = Vec::new();
        let mut requests = Vec::new();
        for part in parts {
            connection.extend_from_slice(part);
            loop {
                let used = match parse(&connection) {
                    Ok(Parse::Complete(request)) => {
                        requests.push(format!("{request:?}"));
                        request.total_len
                    }
                    Ok(Parse::Incomplete) => break,
                    Err(error) => panic!("valid bytes refused: {error:?}"),
                };
                connection.drain(..used);
            }
        }
        assert!(connection.is_empty(), "bytes left over");
        requests
    }

    fn realistic_requests() -> Vec<(&'static str, Vec<u8>, RequestHead<'static>)> {
        vec![
            ("httpx_post", httpx_post(), httpx_post_head()),
            ("chunked_post", chunked_post(), chunked_post_head()),
            ("sse_get", sse_get(), sse_get_head()),
            ("delete", delete(), delete_head()),
        ]
    }

    #[test]
    fn test_realistic_requests_every_prefix() {
        for (name, buf, expected_head) in realistic_requests() {
            for k in 0..buf.len() {
                assert_eq!(
                    parse(&buf[..k]),
                    Ok(Parse::Incomplete),
                    "{name}: prefix of {k} bytes"
                );
            }
            let request = complete(&buf);
            assert_eq!(request.head, expected_head, "{name}");
            assert_eq!(request.total_len, buf.len(), "{name}");
        }
    }

    #[test]
    fn test_httpx_post_body() {
        let buf = httpx_post();
        assert_eq!(complete(&buf).body, Body::Plain(TOOLS_CALL.as_bytes()));
    }

    #[test]
    fn test_chunked_post_body_decodes() {
        let buf = chunked_post();
        let request = complete(&buf);
        let Body::Chunked { raw } = request.body else {
            panic!("expected a chunked body, got {:?}", request.body);
        };
        assert!(raw.ends_with(b"0\r\nX-Checksum: 1\r\n\r\n"));
        let mut decoded = b"kept".to_vec();
        assert_eq!(decode_chunked_body(raw, &mut decoded), Ok(()));
        assert_eq!(decoded, [b"kept", TOOLS_CALL.as_bytes()].concat());
    }

    #[test]
    fn test_sse_get_and_delete_have_no_body() {
        assert_eq!(complete(&sse_get()).body, Body::Empty);
        assert_eq!(complete(&delete()).body, Body::Empty);
    }

    #[test]
    fn test_bare_lf_line_ends() {
        let buf = lf_post();
        for k in 0..buf.len() {
            assert_eq!(parse(&buf[..k]), Ok(Parse::Incomplete), "prefix {k}");
        }
        let request = complete(&buf);
        assert_eq!(request.head.host, Some(&b"a:1"[..]));
        assert_eq!(request.head.content_type, Some(&b"application/json"[..]));
        assert_eq!(
            request.body,
            Body::Plain(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        );
    }

    #[test]
    fn test_pipelined_every_prefix() {
        let buf = pipelined();
        let first_len = httpx_post().len();
        let second_len = chunked_post().len();
        for k in 0..buf.len() {
            match parse(&buf[..k]) {
                Ok(Parse::Incomplete) => assert!(k < first_len, "prefix {k}"),
                Ok(Parse::Complete(request)) => {
                    assert!(k >= first_len, "prefix {k}");
                    assert_eq!(request.head, httpx_post_head());
                    assert_eq!(request.total_len, first_len);
                }
                Err(error) => panic!("prefix {k}: {error:?}"),
            }
        }
        let second = complete(&buf[first_len..]);
        assert_eq!(second.head, chunked_post_head());
        assert_eq!(second.total_len, second_len);
        let third = complete(&buf[first_len + second_len..]);
        assert_eq!(third.head, sse_get_head());
    }

    #[test]
    fn test_every_split_gives_the_same_requests() {
        let mut cases: Vec<Vec<u8>> = realistic_requests()
            .into_iter()
            .map(|(_, buf, _)| buf)
            .collect();
        cases.push(lf_post());
        cases.push(pipelined());
        for buf in cases {
            let whole = feed_parts(&[&buf]);
            assert!(!whole.is_empty());
            for split in 0..=buf.len() {
                assert_eq!(
                    feed_parts(&[&buf[..split], &buf[split..]]),
                    whole,
                    "split at {split}"
                );
            }
            let bytes: Vec<&[u8]> = buf.chunks(1).collect();
            assert_eq!(feed_parts(&bytes), whole, "byte by byte");
        }
    }

    #[test]
    fn test_parse_head_before_body() {
        let buf = b"POST /mcp HTTP/1.1\r\nHost: a:1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
        let limits = RequestLimits::default();
        let parsed = parse_head(buf, &limits)
            .expect("valid head")
            .expect("complete head");
        assert!(parsed.head.expect_continue);
        assert_eq!(parsed.head_len, buf.len());
        assert_eq!(parse(buf), Ok(Parse::Incomplete));
        assert_eq!(parse_head(&buf[..buf.len() - 1], &limits), Ok(None));
    }

    #[test]
    fn test_keep_alive_rules() {
        let cases: [(&[u8], bool); 6] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
        ];
        for (buf, keep_alive) in cases {
            assert_eq!(
                complete(buf).head.keep_alive,
                keep_alive,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn test_expect_continue_ignored_on_http_1_0() {
        let buf = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n";
        let request = complete(buf);
        assert_eq!(request.head.http_minor, 0);
        assert!(!request.head.expect_continue);
        assert_eq!(request.body, Body::Plain(b""));
    }

    #[test]
    fn test_methods_targets_versions() {
        /// Request line → method, target, path, minor version.
        type Case = (&'static [u8], Method, &'static [u8], &'static [u8], u8);
        let cases: [Case; 8] = [
            (b"OPTIONS * HTTP/1.1", Method::Options, b"*", b"*", 1),
            (b"HEAD /mcp HTTP/1.1", Method::Head, b"/mcp", b"/mcp", 1),
            (b"PATCH /mcp HTTP/1.1", Method::Other, b"/mcp", b"/mcp", 1),
            (b"get /mcp HTTP/1.1", Method::Other, b"/mcp", b"/mcp", 1),
            (
                b"GET /mcp?a=1?b HTTP/1.0",
                Method::Get,
                b"/mcp?a=1?b",
                b"/mcp",
                0,
            ),
            (
                b"GET http://h:1/mcp?x HTTP/1.1",
                Method::Get,
                b"http://h:1/mcp?x",
                b"/mcp",
                1,
            ),
            (
                b"GET HTTPS://h HTTP/1.1",
                Method::Get,
                b"HTTPS://h",
                b"/",
                1,
            ),
            (b"GET /mcp HTTP/1.7", Method::Get, b"/mcp", b"/mcp", 1),
        ];
        for (line, method, target, path, http_minor) in cases {
            let buf = [line, b"\r\n\r\n"].concat();
            let head = complete(&buf).head;
            assert_eq!(
                (head.method, head.target, head.path, head.http_minor),
                (method, target, path, http_minor),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn test_leading_empty_lines_skipped() {
        let buf = b"\r\n\nGET /mcp HTTP/1.1\r\nHost: a:1\r\n\r\n";
        let request = complete(buf);
        assert_eq!(request.head.path, b"/mcp");
        assert_eq!(request.total_len, buf.len());
    }

    #[test]
    fn test_header_values_trimmed_and_names_case_insensitive() {
        let buf = b"POST /mcp HTTP/1.1\r\nhOsT: \t a:1 \t\r\nCONTENT-TYPE:application/json\r\n\
            mcp-SESSION-id:  s1\r\nContent-Length: 2\r\n\r\n{}";
        let head = complete(buf).head;
        assert_eq!(head.host, Some(&b"a:1"[..]));
        assert_eq!(head.content_type, Some(&b"application/json"[..]));
        assert_eq!(head.session_id, Some(&b"s1"[..]));
    }

    #[test]
    fn test_mcp_param_fields_kept_with_their_suffix() {
        let buf = b"POST /mcp HTTP/1.1\r\nMcp-Param-Region:  us-west1 \r\nmcp-param-priority: 4\r\n\
            Mcp-Param-: x\r\nMcp-Paramx: y\r\nMCP-PARAM-Region: again\r\nContent-Length: 2\r\n\r\n{}";
        let head = complete(buf).head;
        let fields: Vec<_> = head.mcp_params.iter().collect();
        assert_eq!(
            fields,
            [
                (&b"Region"[..], &b"us-west1"[..]),
                (&b"priority"[..], &b"4"[..]),
                (&b"Region"[..], &b"again"[..]),
            ]
        );
        assert!(!head.mcp_params.overflowed);
    }

    #[test]
    fn test_identical_content_lengths_accepted() {
        let one = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}";
        let list = b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n{}";
        assert_eq!(complete(one).body, Body::Plain(b"{}"));
        assert_eq!(complete(list).body, Body::Plain(b"{}"));
    }

    #[test]
    fn test_duplicate_accept_keeps_first() {
        let buf =
            b"GET / HTTP/1.1\r\nAccept: application/json\r\nAccept: text/event-stream\r\n\r\n";
        assert_eq!(complete(buf).head.accept, Some(&b"application/json"[..]));
    }

    #[test]
    fn test_error_statuses_and_names() {
        let expected = [
            (RequestError::HeadTooLarge, 431, "head_too_large"),
            (RequestError::BodyTooLarge, 413, "body_too_large"),
            (RequestError::BadRequestLine, 400, "bad_request_line"),
            (RequestError::BadHeader, 400, "bad_header"),
            (RequestError::BadContentLength, 400, "bad_content_length"),
            (RequestError::ConflictingLength, 400, "conflicting_length"),
            (
                RequestError::UnsupportedTransferEncoding,
                501,
                "unsupported_transfer_encoding",
            ),
            (RequestError::UnsupportedVersion, 505, "unsupported_version"),
            (RequestError::BadChunk, 400, "bad_chunk"),
        ];
        assert_eq!(RequestError::ALL.len(), expected.len());
        for (index, (error, status, name)) in expected.into_iter().enumerate() {
            assert_eq!(RequestError::ALL[index], error);
            assert_eq!(error.index(), index);
            assert_eq!(error.status(), status);
            assert_eq!(error.as_str(), name);
            assert!(!error.reason_phrase().is_empty());
        }
    }

    /// Each case: bytes → the error they must produce.
    fn error_cases() -> Vec<(&'static str, Vec<u8>, RequestError)> {
        let head_pad = "a".repeat(9000);
        vec![
            (
                "unterminated 9 KiB head",
                format!("GET /mcp HTTP/1.1\r\nX-Pad: {head_pad}").into_bytes(),
                RequestError::HeadTooLarge,
            ),
            (
                "terminated head over the limit",
                format!("GET /mcp HTTP/1.1\r\nX-Pad: {head_pad}\r\n\r\n").into_bytes(),
                RequestError::HeadTooLarge,
            ),
            (
                "2 MiB Content-Length, body not sent",
                b"POST /mcp HTTP/1.1\r\nContent-Length: 2097152\r\n\r\n".to_vec(),
                RequestError::BodyTooLarge,
            ),
            ("HTTP/0.9 request", b"GET /mcp\r\n\r\n".to_vec(), RequestError::BadRequestLine),
            ("two spaces", b"GET  /mcp HTTP/1.1\r\n\r\n".to_vec(), RequestError::BadRequestLine),
            ("trailing space", b"GET /mcp HTTP/1.1 \r\n\r\n".to_vec(), RequestError::BadRequestLine),
            ("space in target", b"GET /m cp HTTP/1.1\r\n\r\n".to_vec(), RequestError::BadRequestLine),
            ("bad method byte", b"G(T / HTTP/1.1\r\n\r\n".to_vec(), RequestError::BadRequestLine),
            ("bad protocol", b"GET / HTTQ/1.1\r\n\r\n".to_vec(), RequestError::BadRequestLine),
            ("non-ASCII target", b"GET /\xff HTTP/1.1\r\n\r\n".to_vec(), RequestError::BadRequestLine),
            ("not HTTP, no head end yet", b"hello there\n".to_vec(), RequestError::BadRequestLine),
            ("bare CR in request line", b"GET /\r HTTP/1.1\r\n\r\n".to_vec(), RequestError::BadRequestLine),
            ("obs-fold", b"GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n".to_vec(), RequestError::BadHeader),
            ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n".to_vec(), RequestError::BadHeader),
            (
                "space before colon on Transfer-Encoding",
                b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n".to_vec(),
                RequestError::BadHeader,
            ),
            ("control byte in name", b"GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n".to_vec(), RequestError::BadHeader),
            ("no colon", b"GET / HTTP/1.1\r\nHost\r\n\r\n".to_vec(), RequestError::BadHeader),
            ("empty name", b"GET / HTTP/1.1\r\n: a\r\n\r\n".to_vec(), RequestError::BadHeader),
            ("NUL in value", b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n".to_vec(), RequestError::BadHeader),
            ("bare CR in value", b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n".to_vec(), RequestError::BadHeader),
            (
                "two Hosts",
                b"GET / HTTP/1.1\r\nHost: a:1\r\nHost: b:1\r\n\r\n".to_vec(),
                RequestError::BadHeader,
            ),
            (
                "two session ids",
                b"GET / HTTP/1.1\r\nMcp-Session-Id: a\r\nmcp-session-id: a\r\n\r\n".to_vec(),
                RequestError::BadHeader,
            ),
            (
                "Transfer-Encoding on HTTP/1.0",
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
                RequestError::BadHeader,
            ),
            ("letters", b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n".to_vec(), RequestError::BadContentLength),
            ("negative", b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(), RequestError::BadContentLength),
            ("plus sign", b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n".to_vec(), RequestError::BadContentLength),
            ("empty", b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n".to_vec(), RequestError::BadContentLength),
            ("inner space", b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n".to_vec(), RequestError::BadContentLength),
            (
                "overflow",
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
                RequestError::BadContentLength,
            ),
            (
                "Content-Length and Transfer-Encoding",
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
                RequestError::ConflictingLength,
            ),
            (
                "Transfer-Encoding and Content-Length",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".to_vec(),
                RequestError::ConflictingLength,
            ),
            (
                "differing Content-Lengths",
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
                RequestError::ConflictingLength,
            ),
            (
                "differing Content-Length list",
                b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!".to_vec(),
                RequestError::ConflictingLength,
            ),
            (
                "gzip",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
                RequestError::UnsupportedTransferEncoding,
            ),
            (
                "gzip, chunked",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(),
                RequestError::UnsupportedTransferEncoding,
            ),
            (
                "chunked twice",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                RequestError::UnsupportedTransferEncoding,
            ),
            ("HTTP/2.0", b"GET / HTTP/2.0\r\n\r\n".to_vec(), RequestError::UnsupportedVersion),
            ("HTTP/0.9", b"GET / HTTP/0.9\r\n\r\n".to_vec(), RequestError::UnsupportedVersion),
            ("HTTP/2.0, no head end yet", b"GET / HTTP/2.0\r\n".to_vec(), RequestError::UnsupportedVersion),
            (
                "chunk size not hex",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
                RequestError::BadChunk,
            ),
            (
                "chunk data without line end",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n".to_vec(),
                RequestError::BadChunk,
            ),
        ]
    }

    #[test]
    fn test_each_error_case() {
        let mut seen = Vec::new();
        for (name, buf, expected) in error_cases() {
            assert_eq!(parse(&buf), Err(expected), "{name}");
            // Once an error is visible, more bytes must not change it.
            let mut longer = buf.clone();
            longer.extend_from_slice(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
            assert_eq!(parse(&longer), Err(expected), "{name}, with more bytes");
            seen.push(expected);
        }
        for error in RequestError::ALL {
            assert!(seen.contains(&error), "no case for {error:?}");
        }
    }

    #[test]
    fn test_head_limit_boundary() {
        let limits = RequestLimits::default();
        let prefix = b"GET / HTTP/1.1\r\nX-Pad: ";
        let suffix = b"\r\n\r\n";
        let pad = limits.head_bytes_max - prefix.len() - suffix.len();
        let exact = [&prefix[..], &b"a".repeat(pad), suffix].concat();
        assert_eq!(exact.len(), limits.head_bytes_max);
        assert_eq!(complete(&exact).total_len, exact.len());
        let over = [&prefix[..], &b"a".repeat(pad + 1), suffix].concat();
        assert_eq!(parse(&over), Err(RequestError::HeadTooLarge));
        // 8193 bytes, no terminator: refused without waiting for more.
        let unterminated = [&prefix[..], &b"a".repeat(limits.head_bytes_max)].concat();
        assert_eq!(
            parse(&unterminated[..8193]),
            Err(RequestError::HeadTooLarge)
        );
        assert_eq!(parse(&unterminated[..8191]), Ok(Parse::Incomplete));
    }

    #[test]
    fn test_content_length_at_body_limit() {
        let limits = RequestLimits {
            head_bytes_max: 8192,
            body_bytes_max: 4,
        };
        let at_limit = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd";
        let over = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        assert!(matches!(
            parse_request(at_limit, &limits),
            Ok(Parse::Complete(_))
        ));
        assert_eq!(
            parse_request(over, &limits),
            Err(RequestError::BodyTooLarge)
        );
    }

    #[test]
    fn test_chunked_body_too_large_before_it_ends() {
        let limits = RequestLimits {
            head_bytes_max: 8192,
            body_bytes_max: 100,
        };
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let at_limit = [&head[..], &chunk_encode(&[b'x'; 100], 30, "")].concat();
        assert!(matches!(
            parse_request(&at_limit, &limits),
            Ok(Parse::Complete(_))
        ));
        // A 200-byte chunk announced, 101 bytes of it sent so far.
        let partial = [&head[..], b"c8\r\n", &[b'x'; 101]].concat();
        assert_eq!(
            parse_request(&partial[..partial.len() - 1], &limits),
            Ok(Parse::Incomplete)
        );
        assert_eq!(
            parse_request(&partial, &limits),
            Err(RequestError::BodyTooLarge)
        );
    }

    #[test]
    fn test_chunked_overhead_bounded() {
        let limits = RequestLimits {
            head_bytes_max: 1024,
            body_bytes_max: 100,
        };
        // Chunk extensions carry no payload; a peer streaming them must still hit a limit.
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut buf = head.clone();
        while buf.len() - head.len() <= limits.chunked_raw_bytes_max() {
            buf.extend_from_slice(b"1;name=value\r\nx\r\n");
        }
        assert_eq!(
            parse_request(&buf, &limits),
            Err(RequestError::BodyTooLarge)
        );
    }

    #[test]
    fn test_decode_chunked_body_refuses_truncated_or_extra() {
        let encoded = chunk_encode(b"hello", 2, "");
        let mut out = Vec::new();
        assert_eq!(decode_chunked_body(&encoded, &mut out), Ok(()));
        assert_eq!(out, b"hello");
        for k in 0..encoded.len() {
            let mut out = Vec::new();
            assert_eq!(
                decode_chunked_body(&encoded[..k], &mut out),
                Err(RequestError::BadChunk),
                "truncated at {k}"
            );
        }
        let extra = [&encoded[..], b"x"].concat();
        assert_eq!(
            decode_chunked_body(&extra, &mut out),
            Err(RequestError::BadChunk)
        );
    }

    #[test]
    fn test_limits_derived_sizes() {
        let limits = RequestLimits::default();
        assert_eq!(limits.head_bytes_max, 8192);
        assert_eq!(limits.body_bytes_max, 1 << 20);
        assert_eq!(limits.chunked_raw_bytes_max(), (2 << 20) + 8192);
        assert_eq!(limits.request_bytes_max(), (2 << 20) + 2 * 8192);
    }

    #[test]
    fn test_find_byte_matches_position() {
        let haystack: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        for needle in 0..=255u8 {
            for start in 0..20 {
                assert_eq!(
                    find_byte(&haystack[start..], needle),
                    haystack[start..].iter().position(|&b| b == needle)
                );
            }
        }
        assert_eq!(find_byte(b"", b'\n'), None);
    }

    /// Valid requests for the mutation properties.
    fn seeds() -> Vec<Vec<u8>> {
        vec![
            httpx_post(),
            chunked_post(),
            sse_get(),
            delete(),
            lf_post(),
            pipelined(),
        ]
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip { at: usize, byte: u8 },
        Insert { at: usize, byte: u8 },
        Delete { at: usize },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let interesting = prop_oneof![
            any::<u8>(),
            Just(b'\r'),
            Just(b'\n'),
            Just(b' '),
            Just(b':'),
            Just(b'0'),
            Just(b'\t'),
        ];
        prop_oneof![
            (any::<usize>(), interesting.clone())
                .prop_map(|(at, byte)| Mutation::Flip { at, byte }),
            (any::<usize>(), interesting).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
            any::<usize>().prop_map(|at| Mutation::Delete { at }),
        ]
    }

    fn mutate(mut buf: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
        for mutation in mutations {
            if buf.is_empty() {
                break;
            }
            match *mutation {
                Mutation::Flip { at, byte } => {
                    let at = at % buf.len();
                    buf[at] = byte;
                }
                Mutation::Insert { at, byte } => buf.insert(at % (buf.len() + 1), byte),
                Mutation::Delete { at } => {
                    buf.remove(at % buf.len());
                }
            }
        }
        buf
    }

    /// Every prefix of `buf` agrees with `buf` itself: before a request completes only
    /// Incomplete, from then on the same request; an error stays the same error.
    fn check_prefixes(buf: &[u8], limits: &RequestLimits) -> Result<(), TestCaseError> {
        let full = parse_request(buf, limits);
        for k in 0..buf.len() {
            let prefix = parse_request(&buf[..k], limits);
            match (&prefix, &full) {
                (Ok(Parse::Incomplete), _) => {
                    if let Ok(Parse::Complete(request)) = &full {
                        prop_assert!(
                            k < request.total_len,
                            "complete at {} but not at {k}",
                            request.total_len
                        );
                    }
                }
                (Ok(Parse::Complete(early)), Ok(Parse::Complete(request))) => {
                    prop_assert_eq!(early, request, "prefix {}", k);
                }
                (Err(early), Err(error)) => prop_assert_eq!(early, error, "prefix {}", k),
                _ => prop_assert!(false, "prefix {k} gave {prefix:?}, whole gave {full:?}"),
            }
        }
        if let Ok(Parse::Complete(request)) = &full {
            prop_assert!(request.total_len <= buf.len());
            if let Body::Chunked { raw } = request.body {
                let mut decoded = Vec::new();
                prop_assert_eq!(decode_chunked_body(raw, &mut decoded), Ok(()));
                prop_assert!(decoded.len() <= limits.body_bytes_max);
            }
        }
        Ok(())
    }

    proptest! {
        // Failures are reported with their minimal input; no regression files in the tree.
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn prop_random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_request(&buf, &RequestLimits::default());
            let mut out = Vec::new();
            let _ = decode_chunked_body(&buf, &mut out);
        }

        #[test]
        fn prop_random_head_like_bytes_never_panic(
            lines in proptest::collection::vec("[A-Za-z:\\- \t\r\n0-9/.]{0,30}", 0..12)
        ) {
            let buf = format!("POST /mcp HTTP/1.1\r\n{}", lines.join("\r\n")).into_bytes();
            check_prefixes(&buf, &RequestLimits::default())?;
        }

        #[test]
        fn prop_mutated_requests_prefixes_agree(
            seed in 0..6usize,
            mutations in proptest::collection::vec(mutation(), 0..4),
        ) {
            let buf = mutate(seeds()[seed].clone(), &mutations);
            check_prefixes(&buf, &RequestLimits::default())?;
        }

        #[test]
        fn prop_mutated_requests_small_limits(
            seed in 0..6usize,
            mutations in proptest::collection::vec(mutation(), 0..3),
            head_bytes_max in 1..400usize,
            body_bytes_max in 0..120usize,
        ) {
            let buf = mutate(seeds()[seed].clone(), &mutations);
            check_prefixes(&buf, &RequestLimits { head_bytes_max, body_bytes_max })?;
        }
    }
}
