//! HTTP/1.1 responses (RFC 9112), both directions: the response-head parser the client engine
//! runs on every reply, and the head writer the embedded server (`mcpstorm serve`) uses.
//!
//! Layer: `proto/`, below the engine and the server, above the body decoders (`chunked`, `sse`,
//! `json`). [`ResponseHead::framing`] tells the caller which body decoder to run next.
//!
//! Must not: touch sockets or clocks (so no `Date` header), allocate while parsing, or keep
//! per-connection state beyond a few bytes. A head is parsed from one contiguous slice; when a
//! head arrives split across reads, the caller copies it into a pooled spill buffer and uses
//! [`HeadScanner`] (4 bytes of state) to learn when the head is whole without rescanning.
//! The writer must not use `format!` either: it runs once per reply on the server's hot path.

use std::fmt;

/// A response head longer than this is refused. Real MCP servers send a few hundred bytes;
/// the bound caps both the spill buffer a connection may hold and the work spent on a peer
/// that never ends its head.
pub const HEAD_BYTES_MAX: usize = 16 * 1024;

/// What the `Content-Type` header says about the body, reduced to what MCP cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// `application/json`, with or without parameters.
    Json,
    /// `text/event-stream`, with or without parameters.
    EventStream,
    /// Any other media type (rmcp answers an unknown session with `text/plain`).
    Other,
    /// No `Content-Type` header.
    None,
}

/// A parsed response head. Slices borrow from the buffer handed to [`parse_response_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    pub status: u16,
    /// The `x` of `HTTP/1.x`.
    pub http_minor: u8,
    /// Bytes of the head including the empty line that ends it: the body starts here.
    pub head_len: usize,
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked` (the only coding accepted).
    pub chunked: bool,
    /// The connection may carry another request after this response. False whenever the body
    /// is delimited by the connection closing, whatever the `Connection` header says.
    pub keep_alive: bool,
    pub content_type: ContentKind,
    /// `Mcp-Session-Id`, checked to be 1+ visible ASCII bytes as the MCP spec requires (so the
    /// request writer can echo it without re-checking).
    pub session_id: Option<&'a [u8]>,
    /// `Retry-After` in delay-seconds form; an HTTP-date needs a clock and yields `None`.
    pub retry_after_s: Option<u64>,
}

/// How the body after a head is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: 1xx, 204, 304 (and any response to HEAD, which mcpstorm never sends).
    None,
    /// Exactly this many bytes (`Content-Length`), possibly zero.
    Length(u64),
    /// Chunked transfer coding: run [`super::chunked::ChunkedDecoder`].
    Chunked,
    /// The body ends when the peer closes the connection.
    UntilClose,
}

/// Why a response head was refused. Each is an operating error (a peer's bad bytes): counted,
/// and the connection is closed, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    BadStatusLine,
    BadHeader,
    BadContentLength,
    HeadTooLarge,
    UnsupportedTransferEncoding,
    /// Both `Content-Length` and `Transfer-Encoding`, or `Content-Length` values that differ:
    /// the classic request-smuggling shapes, so refused rather than guessed.
    ConflictingLength,
    /// `Mcp-Session-Id` empty, not visible ASCII, or given twice with different values.
    BadSessionId,
}

impl ResponseError {
    /// Stable snake_case name, used as a counter name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseError::BadStatusLine => "bad_status_line",
            ResponseError::BadHeader => "bad_header",
            ResponseError::BadContentLength => "bad_content_length",
            ResponseError::HeadTooLarge => "head_too_large",
            ResponseError::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            ResponseError::ConflictingLength => "conflicting_length",
            ResponseError::BadSessionId => "bad_session_id",
        }
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ResponseError {}

impl ResponseHead<'_> {
    /// Body framing for a response to a request other than HEAD.
    pub fn framing(&self) -> BodyFraming {
        if (100..200).contains(&self.status) || self.status == 204 || self.status == 304 {
            BodyFraming::None
        } else if self.chunked {
            BodyFraming::Chunked
        } else if let Some(length) = self.content_length {
            BodyFraming::Length(length)
        } else {
            BodyFraming::UntilClose
        }
    }
}

/// Remembers how far a growing spill buffer has been searched for the end of a head, so a
/// head that trickles in a byte at a time costs O(n) in total rather than O(n²).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadScanner {
    scanned_len: u32,
}

impl HeadScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// `buf` is the spill buffer: the same bytes as last call with more appended. Returns the
    /// head length once the empty line has arrived; then call [`parse_response_head`] on `buf`.
    /// Fails early on bytes that cannot start a response, and on a head over [`HEAD_BYTES_MAX`].
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ResponseError> {
        check_version_prefix(buf)?;
        // A terminator is LF LF or LF CR LF, so one that the new bytes complete starts at
        // most two bytes before where the previous scan stopped.
        let resume_from = (self.scanned_len as usize).saturating_sub(2);
        match find_head_end(buf, resume_from) {
            Some(head_len) if head_len <= HEAD_BYTES_MAX => Ok(Some(head_len)),
            Some(_) => Err(ResponseError::HeadTooLarge),
            None if buf.len() >= HEAD_BYTES_MAX => Err(ResponseError::HeadTooLarge),
            None => {
                // Fits in u32: buf.len() < HEAD_BYTES_MAX here.
                self.scanned_len = buf.len() as u32;
                Ok(None)
            }
        }
    }
}

/// Parses a response head from the start of `buf`. `Ok(None)`: the head is not complete yet
/// (feed more bytes). Bytes after `head_len` are body (or the next response) and untouched.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead<'_>>, ResponseError> {
    check_version_prefix(buf)?;
    let head_len = match find_head_end(buf, 0) {
        Some(head_len) if head_len <= HEAD_BYTES_MAX => head_len,
        Some(_) => return Err(ResponseError::HeadTooLarge),
        None if buf.len() >= HEAD_BYTES_MAX => return Err(ResponseError::HeadTooLarge),
        None => return Ok(None),
    };
    let mut lines = Lines {
        rest: &buf[..head_len],
    };
    let status_line = lines
        .next_line()
        .map_err(|_| ResponseError::BadStatusLine)?;
    let (http_minor, status) = parse_status_line(status_line)?;
    let mut head = ResponseHead {
        status,
        http_minor,
        head_len,
        content_length: None,
        chunked: false,
        keep_alive: false,
        content_type: ContentKind::None,
        session_id: None,
        retry_after_s: None,
    };
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut transfer_encoding_seen = false;
    loop {
        let line = lines.next_line().map_err(|_| ResponseError::BadHeader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = split_header(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = parse_content_length(value)?;
            match head.content_length {
                Some(previous) if previous != length => {
                    return Err(ResponseError::ConflictingLength);
                }
                _ => head.content_length = Some(length),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in list_elements(value) {
                transfer_encoding_seen = true;
                // Chunked must be the last coding and applied once (RFC 9112 §6.1); any other
                // coding (gzip, ...) would need a decoder we do not carry.
                let coding_name = trim_ows(coding.split(|&b| b == b';').next().unwrap_or(b""));
                if head.chunked || !coding_name.eq_ignore_ascii_case(b"chunked") {
                    return Err(ResponseError::UnsupportedTransferEncoding);
                }
                head.chunked = true;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in list_elements(value) {
                if option.eq_ignore_ascii_case(b"close") {
                    connection_close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    connection_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-type") {
            head.content_type = content_kind(value);
        } else if name.eq_ignore_ascii_case(b"mcp-session-id") {
            let valid = !value.is_empty() && value.iter().all(|b| (0x21..=0x7e).contains(b));
            if !valid || head.session_id.is_some_and(|previous| previous != value) {
                return Err(ResponseError::BadSessionId);
            }
            head.session_id = Some(value);
        } else if name.eq_ignore_ascii_case(b"retry-after") {
            head.retry_after_s = parse_decimal(value);
        }
    }
    if transfer_encoding_seen {
        if head.content_length.is_some() {
            return Err(ResponseError::ConflictingLength);
        }
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        if http_minor == 0 {
            return Err(ResponseError::UnsupportedTransferEncoding);
        }
    }
    head.keep_alive = if http_minor >= 1 {
        !connection_close
    } else {
        connection_keep_alive && !connection_close
    };
    if head.framing() == BodyFraming::UntilClose {
        head.keep_alive = false;
    }
    Ok(Some(head))
}

/// Rejects a buffer that cannot be the start of an HTTP/1.x response as soon as its first
/// bytes arrive, so garbage from a non-HTTP peer fails at once instead of at 16 KiB.
fn check_version_prefix(buf: &[u8]) -> Result<(), ResponseError> {
    const PREFIX: &[u8] = b"HTTP/1.";
    let compared_len = buf.len().min(PREFIX.len());
    if buf[..compared_len] == PREFIX[..compared_len] {
        Ok(())
    } else {
        Err(ResponseError::BadStatusLine)
    }
}

/// Length of the head (through the empty line) if its end lies in `buf`. Only looks at the
/// first `HEAD_BYTES_MAX + 3` bytes: a spill buffer may hold body bytes too.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let searched = &buf[..buf.len().min(HEAD_BYTES_MAX + 3)];
    let mut position = from;
    while let Some(offset) = searched.get(position..)?.iter().position(|&b| b == b'\n') {
        let line_feed = position + offset;
        match (searched.get(line_feed + 1), searched.get(line_feed + 2)) {
            (Some(b'\n'), _) => return Some(line_feed + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(line_feed + 3),
            _ => position = line_feed + 1,
        }
    }
    None
}

/// Splits a head into lines ending in LF or CRLF. A CR anywhere else is an error: RFC 9112
/// §2.2 lets a recipient reject a bare CR, and accepting one invites smuggling.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Result<&'a [u8], ()> {
        let end = self.rest.iter().position(|&b| b == b'\n').ok_or(())?;
        let (line, rest) = self.rest.split_at(end);
        self.rest = &rest[1..];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.contains(&b'\r') {
            return Err(());
        }
        Ok(line)
    }
}

/// `HTTP/1.x SSS reason` → (x, SSS). The reason phrase may be empty or missing.
fn parse_status_line(line: &[u8]) -> Result<(u8, u16), ResponseError> {
    let bad = ResponseError::BadStatusLine;
    let rest = line.strip_prefix(b"HTTP/1.").ok_or(bad)?;
    let [minor_digit, b' ', d0, d1, d2, tail @ ..] = rest else {
        return Err(bad);
    };
    if !minor_digit.is_ascii_digit() || ![d0, d1, d2].iter().all(|d| d.is_ascii_digit()) {
        return Err(bad);
    }
    let status = u16::from(d0 - b'0') * 100 + u16::from(d1 - b'0') * 10 + u16::from(d2 - b'0');
    if status < 100 {
        return Err(bad);
    }
    match tail {
        [] => {}
        [b' ', reason @ ..] if reason.iter().all(|&b| is_field_byte(b)) => {}
        _ => return Err(bad),
    }
    Ok((minor_digit - b'0', status))
}

/// `name: value` → (name, value with surrounding whitespace removed).
fn split_header(line: &[u8]) -> Result<(&[u8], &[u8]), ResponseError> {
    let bad = ResponseError::BadHeader;
    let colon = line.iter().position(|&b| b == b':').ok_or(bad)?;
    let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
    // An empty name, whitespace before the colon (RFC 9112 §5.1 says reject) or a line that
    // starts with whitespace (obsolete line folding, which no MCP server sends) all fail here.
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        return Err(bad);
    }
    if !value.iter().all(|&b| is_field_byte(b)) {
        return Err(bad);
    }
    Ok((name, value))
}

fn parse_content_length(value: &[u8]) -> Result<u64, ResponseError> {
    // RFC 9110 §8.6 allows a list of identical values (`42, 42`), left by proxies.
    let mut length = None;
    for element in value.split(|&b| b == b',') {
        let element = trim_ows(element);
        let parsed = if element.is_empty() || !element.iter().all(u8::is_ascii_digit) {
            None
        } else {
            element.iter().try_fold(0u64, |acc, &digit| {
                acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
            })
        };
        let parsed = parsed.ok_or(ResponseError::BadContentLength)?;
        match length {
            Some(previous) if previous != parsed => return Err(ResponseError::ConflictingLength),
            _ => length = Some(parsed),
        }
    }
    length.ok_or(ResponseError::BadContentLength)
}

/// Digits only; saturates rather than failing, since a huge `Retry-After` means "not soon".
fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |acc, &digit| {
        acc.saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    }))
}

fn content_kind(value: &[u8]) -> ContentKind {
    let media_type = trim_ows(value.split(|&b| b == b';').next().unwrap_or(b""));
    if media_type.eq_ignore_ascii_case(b"application/json") {
        ContentKind::Json
    } else if media_type.eq_ignore_ascii_case(b"text/event-stream") {
        ContentKind::EventStream
    } else {
        ContentKind::Other
    }
}

/// Non-empty, trimmed elements of a comma-separated header list.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// RFC 9110 §5.6.2 tchar.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Visible ASCII, space, tab or obs-text: what a field value or reason phrase may hold.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// The reason phrase mcpstorm's server sends; empty for codes it has no use for (an empty
/// reason phrase is valid HTTP/1.1).
pub fn status_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Writes a complete HTTP/1.1 response head, empty line included.
///
/// `content_length: None` means the body follows in chunked coding (SSE streams). 1xx, 204
/// and 304 responses get neither framing header: they have no body (RFC 9110 §8.6 forbids
/// `Content-Length` on 1xx and 204). `Connection: close` is written only when `keep_alive` is
/// false, persistence being the HTTP/1.1 default.
///
/// # Panics
/// On a status outside 100..=999, or a CR or LF in any header name or value: these come from
/// mcpstorm's own code, never from a peer, and writing them would split the response.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    content_length: Option<usize>,
    extra_headers: &[(&str, &[u8])],
    keep_alive: bool,
) {
    assert!(
        (100..=999).contains(&status),
        "status {status} is not three digits"
    );
    let reason = status_reason(status);
    out.extend_from_slice(b"HTTP/1.1 ");
    write_u64_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(content_type) = content_type {
        write_header(out, "Content-Type", content_type.as_bytes());
    }
    let has_body = !((100..200).contains(&status) || status == 204 || status == 304);
    if has_body {
        match content_length {
            Some(length) => {
                out.extend_from_slice(b"Content-Length: ");
                write_u64_decimal(out, length as u64);
                out.extend_from_slice(b"\r\n");
            }
            None => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        }
    }
    for &(name, value) in extra_headers {
        write_header(out, name, value);
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    let splits_line = |bytes: &[u8]| bytes.iter().any(|&b| b == b'\r' || b == b'\n');
    assert!(
        !splits_line(name.as_bytes()) && !splits_line(value),
        "header {name:?} would split the response head"
    );
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `v` in decimal without going through `fmt`.
pub fn write_u64_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20]; // u64::MAX has 20 decimal digits
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `v` in lowercase hexadecimal without going through `fmt` (chunk sizes).
pub fn write_u64_hex(out: &mut Vec<u8>, mut v: u64) {
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16]; // u64::MAX has 16 hex digits
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = HEX_DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}
