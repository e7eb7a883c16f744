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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::chunked::ChunkedDecoder;
    use crate::proto::sse::{SseItem, SseParser};
    use proptest::prelude::*;

    fn head(text: &[u8]) -> ResponseHead<'_> {
        parse_response_head(text)
            .expect("head should parse")
            .expect("head should be complete")
    }

    fn error_of(text: &[u8]) -> ResponseError {
        parse_response_head(text).expect_err("head should be refused")
    }

    const RMCP_404: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 17\r\ndate: Thu, 27 Nov 2026 05:15:00 GMT\r\n\r\nSession not found";

    #[test]
    fn test_python_sdk_sse_head() {
        let text = b"HTTP/1.1 200 OK\r\ndate: Thu, 27 Nov 2026 05:15:00 GMT\r\nserver: uvicorn\r\ncache-control: no-cache, no-transform\r\nconnection: keep-alive\r\ncontent-type: text/event-stream\r\nmcp-session-id: 7f3c1a0e2b9d4c5f8a6e1d2c3b4a5f60\r\nx-accel-buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n7d\r\n";
        let parsed = head(text);
        assert_eq!(parsed.status, 200);
        assert_eq!(parsed.http_minor, 1);
        assert_eq!(&text[parsed.head_len..], b"7d\r\n");
        assert!(parsed.chunked);
        assert!(parsed.keep_alive);
        assert_eq!(parsed.content_type, ContentKind::EventStream);
        assert_eq!(
            parsed.session_id,
            Some(&b"7f3c1a0e2b9d4c5f8a6e1d2c3b4a5f60"[..])
        );
        assert_eq!(parsed.framing(), BodyFraming::Chunked);
    }

    #[test]
    fn test_content_type_kinds() {
        let kind = |value: &str| {
            let text =
                format!("HTTP/1.1 200 OK\r\nContent-Type:{value}\r\nContent-Length: 0\r\n\r\n");
            head(text.as_bytes()).content_type
        };
        assert_eq!(
            kind(" text/event-stream; charset=utf-8"),
            ContentKind::EventStream
        );
        assert_eq!(kind("Text/Event-Stream"), ContentKind::EventStream);
        assert_eq!(kind(" application/json"), ContentKind::Json);
        assert_eq!(
            kind(" application/json ; charset=utf-8 "),
            ContentKind::Json
        );
        assert_eq!(kind(" text/plain; charset=utf-8"), ContentKind::Other);
        assert_eq!(kind(" application/json-seq"), ContentKind::Other);
        assert_eq!(kind(""), ContentKind::Other);
        assert_eq!(
            head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").content_type,
            ContentKind::None
        );
    }

    #[test]
    fn test_rmcp_404_plain_text() {
        let parsed = head(RMCP_404);
        assert_eq!(parsed.status, 404);
        assert_eq!(parsed.content_type, ContentKind::Other);
        assert_eq!(parsed.framing(), BodyFraming::Length(17));
        assert_eq!(&RMCP_404[parsed.head_len..], b"Session not found");
        assert!(parsed.keep_alive);
    }

    #[test]
    fn test_framing_without_body() {
        for status in [100, 101, 103, 204, 304] {
            let text = format!("HTTP/1.1 {status} X\r\nContent-Length: 10\r\n\r\n");
            assert_eq!(
                head(text.as_bytes()).framing(),
                BodyFraming::None,
                "{status}"
            );
        }
        let accepted = head(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(accepted.framing(), BodyFraming::Length(0));
        assert!(accepted.keep_alive);
        let until_close = head(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n");
        assert_eq!(until_close.framing(), BodyFraming::UntilClose);
        assert!(
            !until_close.keep_alive,
            "a body ended by close cannot keep the connection"
        );
    }

    #[test]
    fn test_keep_alive_rules() {
        let keep_alive = |text: &[u8]| head(text).keep_alive;
        assert!(keep_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!keep_alive(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep_alive(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(keep_alive(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(!keep_alive(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(head(b"HTTP/1.0 200 OK\r\n\r\n").http_minor, 0);
    }

    #[test]
    fn test_lf_line_ends_and_odd_spacing() {
        let text = b"HTTP/1.1 200\nCONTENT-LENGTH:5\nMcp-Session-Id:\tabc \n\nhello";
        let parsed = head(text);
        assert_eq!(&text[parsed.head_len..], b"hello");
        assert_eq!(parsed.status, 200);
        assert_eq!(parsed.content_length, Some(5));
        assert_eq!(parsed.session_id, Some(&b"abc"[..]));
        let text = b"HTTP/1.1 200 \r\nContent-Length: 0\n\r\nnext";
        assert_eq!(&text[head(text).head_len..], b"next");
    }

    #[test]
    fn test_incomplete_head() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let head_len = head(full).head_len;
        for len in 0..head_len {
            assert_eq!(parse_response_head(&full[..len]), Ok(None), "prefix {len}");
        }
    }

    #[test]
    fn test_bad_status_line() {
        for text in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTX",
            b"http/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.x 200 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/1.1 200 O\rK\r\n\r\n",
            b"HTTP/1.1 200 O\x01K\r\n\r\n",
            b"\r\nHTTP/1.1 200 OK\r\n\r\n",
            b"SSH-2.0-OpenSSH",
        ] {
            assert_eq!(error_of(text), ResponseError::BadStatusLine, "{text:?}");
        }
    }

    #[test]
    fn test_bad_header() {
        for text in [
            &b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: bare\rcr\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: nul\0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX(A): 1\r\n\r\n",
        ] {
            assert_eq!(error_of(text), ResponseError::BadHeader, "{text:?}");
        }
    }

    #[test]
    fn test_bad_content_length() {
        for value in [
            "abc",
            "-1",
            "+1",
            "1 2",
            "",
            "1,",
            "99999999999999999999999",
            "0x10",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(
                error_of(text.as_bytes()),
                ResponseError::BadContentLength,
                "{value:?}"
            );
        }
        let listed =
            head(b"HTTP/1.1 200 OK\r\nContent-Length: 42, 42\r\nContent-Length: 42\r\n\r\n");
        assert_eq!(listed.content_length, Some(42));
        let max = head(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(max.framing(), BodyFraming::Length(u64::MAX));
    }

    #[test]
    fn test_conflicting_length() {
        for text in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        ] {
            assert_eq!(error_of(text), ResponseError::ConflictingLength, "{text:?}");
        }
    }

    #[test]
    fn test_transfer_encoding() {
        for value in [
            "gzip",
            "gzip, chunked",
            "chunked, gzip",
            "chunked, chunked",
            "identity",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(
                error_of(text.as_bytes()),
                ResponseError::UnsupportedTransferEncoding,
                "{value:?}"
            );
        }
        let twice =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(error_of(twice), ResponseError::UnsupportedTransferEncoding);
        let old = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(error_of(old), ResponseError::UnsupportedTransferEncoding);
        assert!(head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n").chunked);
        assert!(head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: , chunked ,\r\n\r\n").chunked);
    }

    #[test]
    fn test_head_too_large() {
        let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
        while text.len() < HEAD_BYTES_MAX {
            text.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(error_of(&text), ResponseError::HeadTooLarge);
        text.extend_from_slice(b"\r\n");
        assert_eq!(error_of(&text), ResponseError::HeadTooLarge);
        assert_eq!(
            HeadScanner::new().scan(&text),
            Err(ResponseError::HeadTooLarge)
        );
    }

    #[test]
    fn test_bad_session_id() {
        for text in [
            &b"HTTP/1.1 200 OK\r\nMcp-Session-Id:\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nMcp-Session-Id: a b\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nMcp-Session-Id: caf\xC3\xA9\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nMcp-Session-Id: a\r\nmcp-session-id: b\r\n\r\n",
        ] {
            assert_eq!(error_of(text), ResponseError::BadSessionId, "{text:?}");
        }
        let same_twice = b"HTTP/1.1 200 OK\r\nMcp-Session-Id: a\r\nmcp-session-id: a\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(head(same_twice).session_id, Some(&b"a"[..]));
    }

    #[test]
    fn test_retry_after() {
        let retry = |value: &str| {
            let text = format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {value}\r\nContent-Length: 0\r\n\r\n"
            );
            head(text.as_bytes()).retry_after_s
        };
        assert_eq!(retry("120"), Some(120));
        assert_eq!(retry("Fri, 31 Dec 1999 23:59:59 GMT"), None);
        assert_eq!(retry("999999999999999999999999"), Some(u64::MAX));
    }

    #[test]
    fn test_error_names_are_stable() {
        let all = [
            (ResponseError::BadStatusLine, "bad_status_line"),
            (ResponseError::BadHeader, "bad_header"),
            (ResponseError::BadContentLength, "bad_content_length"),
            (ResponseError::HeadTooLarge, "head_too_large"),
            (
                ResponseError::UnsupportedTransferEncoding,
                "unsupported_transfer_encoding",
            ),
            (ResponseError::ConflictingLength, "conflicting_length"),
            (ResponseError::BadSessionId, "bad_session_id"),
        ];
        for (error, name) in all {
            assert_eq!(error.as_str(), name);
            assert_eq!(error.to_string(), name);
        }
    }

    #[test]
    fn test_head_scanner_resumes() {
        let text = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        for step in 1..=text.len() {
            let mut scanner = HeadScanner::new();
            let mut found = None;
            let mut len = 0;
            while found.is_none() && len < text.len() {
                len = (len + step).min(text.len());
                found = scanner.scan(&text[..len]).unwrap();
            }
            assert_eq!(found, Some(text.len()), "step {step}");
        }
        assert_eq!(
            HeadScanner::new().scan(b"HTTX"),
            Err(ResponseError::BadStatusLine)
        );
        assert!(std::mem::size_of::<HeadScanner>() <= 4);
    }

    #[test]
    fn test_write_head() {
        let mut out = Vec::new();
        write_head(&mut out, 202, None, Some(0), &[], true);
        assert_eq!(out, b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");

        out.clear();
        write_head(
            &mut out,
            200,
            Some("text/event-stream"),
            None,
            &[("Mcp-Session-Id", b"s-1"), ("Cache-Control", b"no-cache")],
            true,
        );
        assert_eq!(
            out,
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nMcp-Session-Id: s-1\r\nCache-Control: no-cache\r\n\r\n"[..]
        );
        let parsed = head(&out);
        assert_eq!(parsed.framing(), BodyFraming::Chunked);
        assert_eq!(parsed.session_id, Some(&b"s-1"[..]));

        out.clear();
        write_head(&mut out, 404, Some("application/json"), Some(0), &[], false);
        assert_eq!(
            out,
            &b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..]
        );
        assert!(!head(&out).keep_alive);

        for status in [100, 204, 304] {
            out.clear();
            write_head(&mut out, status, None, Some(0), &[], true);
            let parsed = head(&out);
            assert_eq!(parsed.content_length, None);
            assert!(!parsed.chunked);
            assert_eq!(parsed.framing(), BodyFraming::None);
        }

        out.clear();
        write_head(&mut out, 299, None, Some(12345), &[], true);
        assert_eq!(out, b"HTTP/1.1 299 \r\nContent-Length: 12345\r\n\r\n");
        assert_eq!(head(&out).status, 299);
    }

    #[test]
    #[should_panic(expected = "would split the response head")]
    fn test_write_head_refuses_header_injection() {
        write_head(
            &mut Vec::new(),
            200,
            None,
            Some(0),
            &[("X", b"a\r\nB: c")],
            true,
        );
    }

    #[test]
    fn test_status_reasons() {
        assert_eq!(status_reason(200), "OK");
        assert_eq!(status_reason(421), "Misdirected Request");
        assert_eq!(status_reason(503), "Service Unavailable");
        assert_eq!(status_reason(799), "");
    }

    #[test]
    fn test_number_writers() {
        for v in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_u64_decimal(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
            out.clear();
            write_u64_hex(&mut out, v);
            assert_eq!(out, format!("{v:x}").as_bytes());
        }
    }

    // ---- A whole connection, as the client engine would read it ----------------------------

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Body {
        Raw(Vec<u8>),
        /// (event type, data) of each dispatched event with data, plus priming events seen.
        Events(Vec<(Vec<u8>, Vec<u8>)>, usize),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Reply {
        status: u16,
        session_id: Option<Vec<u8>>,
        body: Body,
    }

    #[derive(Clone, Copy)]
    enum Receiving {
        Length(u64),
        Chunked(ChunkedDecoder),
        UntilClose,
    }

    /// The engine's receive path in miniature: a spill buffer only for split heads, then the
    /// framing decoder, then SSE for event streams, with pipelined responses back to back.
    #[derive(Default)]
    struct Connection {
        spill: Vec<u8>,
        scanner: HeadScanner,
        receiving: Option<Receiving>,
        sse: Option<SseParser>,
        current: Option<Reply>,
        /// The caller's buffers for the event being assembled.
        data: Vec<u8>,
        event_type: Vec<u8>,
        replies: Vec<Reply>,
        error: Option<&'static str>,
    }

    impl Connection {
        fn feed(&mut self, mut input: &[u8]) {
            while !input.is_empty() && self.error.is_none() {
                if self.receiving.is_some() {
                    let used = self.feed_body(input);
                    input = &input[used..];
                    continue;
                }
                // Zero-copy when the head arrives whole; spill only a split head.
                if self.spill.is_empty() {
                    match parse_response_head(input) {
                        Ok(Some(parsed)) => {
                            let head_len = parsed.head_len;
                            self.start_reply(&parsed);
                            input = &input[head_len..];
                            continue;
                        }
                        Ok(None) => {}
                        Err(error) => {
                            self.error = Some(error.as_str());
                            return;
                        }
                    }
                }
                self.spill.extend_from_slice(input);
                input = &[];
                match self.scanner.scan(&self.spill) {
                    Ok(None) => return,
                    Ok(Some(_)) => {}
                    Err(error) => {
                        self.error = Some(error.as_str());
                        return;
                    }
                }
                let spill = std::mem::take(&mut self.spill);
                self.scanner = HeadScanner::new();
                let parsed = match parse_response_head(&spill) {
                    Ok(Some(parsed)) => parsed,
                    Ok(None) => unreachable!("the scanner found the end of the head"),
                    Err(error) => {
                        self.error = Some(error.as_str());
                        return;
                    }
                };
                self.start_reply(&parsed);
                self.feed(&spill[parsed.head_len..]);
            }
        }

        fn start_reply(&mut self, head: &ResponseHead<'_>) {
            let body = if head.content_type == ContentKind::EventStream {
                Body::Events(Vec::new(), 0)
            } else {
                Body::Raw(Vec::new())
            };
            self.sse = (head.content_type == ContentKind::EventStream).then(SseParser::new);
            self.current = Some(Reply {
                status: head.status,
                session_id: head.session_id.map(<[u8]>::to_vec),
                body,
            });
            self.receiving = match head.framing() {
                BodyFraming::None | BodyFraming::Length(0) => None,
                BodyFraming::Length(length) => Some(Receiving::Length(length)),
                BodyFraming::Chunked => Some(Receiving::Chunked(ChunkedDecoder::new())),
                BodyFraming::UntilClose => Some(Receiving::UntilClose),
            };
            if self.receiving.is_none() {
                self.finish_reply();
            }
        }

        fn feed_body(&mut self, input: &[u8]) -> usize {
            let Some(receiving) = self.receiving else {
                return 0;
            };
            let (used, done) = match receiving {
                Receiving::Length(remaining) => {
                    let take =
                        usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
                    self.body_bytes(&input[..take]);
                    let left = remaining - take as u64;
                    self.receiving = Some(Receiving::Length(left));
                    (take, left == 0)
                }
                Receiving::Chunked(mut decoder) => {
                    let mut pieces: Vec<(usize, usize)> = Vec::new();
                    let base = input.as_ptr() as usize;
                    let result = decoder.decode(input, &mut |data: &[u8]| {
                        // Chunk data are slices of `input`: record where, then feed SSE.
                        let start = data.as_ptr() as usize - base;
                        pieces.push((start, start + data.len()));
                    });
                    for (start, end) in pieces {
                        self.body_bytes(&input[start..end]);
                    }
                    self.receiving = Some(Receiving::Chunked(decoder));
                    match result {
                        Ok(progress) => (progress.consumed, progress.done),
                        Err(error) => {
                            self.error = Some(error.as_str());
                            (input.len(), false)
                        }
                    }
                }
                Receiving::UntilClose => {
                    self.body_bytes(input);
                    (input.len(), false)
                }
            };
            if done {
                self.finish_reply();
            }
            used
        }

        fn body_bytes(&mut self, bytes: &[u8]) {
            let Some(reply) = self.current.as_mut() else {
                return;
            };
            match (&mut reply.body, self.sse.as_mut()) {
                (Body::Raw(raw), _) => raw.extend_from_slice(bytes),
                (Body::Events(events, priming), Some(parser)) => {
                    let (data, event_type) = (&mut self.data, &mut self.event_type);
                    parser.feed(bytes, &mut |item| match item {
                        SseItem::DataFragment(fragment) => data.extend_from_slice(fragment),
                        SseItem::EventType { fragment, first } => {
                            if first {
                                event_type.clear();
                            }
                            event_type.extend_from_slice(fragment);
                        }
                        SseItem::Dispatch {
                            has_data,
                            data_empty,
                        } => {
                            if has_data && data_empty {
                                *priming += 1;
                            } else if has_data {
                                events.push((std::mem::take(event_type), std::mem::take(data)));
                            }
                            data.clear();
                            event_type.clear();
                        }
                        SseItem::Id { .. }
                        | SseItem::IdEnd { .. }
                        | SseItem::Retry { .. }
                        | SseItem::Comment => {}
                    });
                }
                (Body::Events(..), None) => unreachable!("event streams have a parser"),
            }
        }

        fn finish_reply(&mut self) {
            self.receiving = None;
            if let Some(sse) = self.sse.take() {
                assert!(sse.is_between_events(), "body ended inside an event");
            }
            self.replies.extend(self.current.take());
        }

        /// The peer closed the connection.
        fn close(mut self) -> (Vec<Reply>, Option<&'static str>) {
            if let Some(Receiving::UntilClose) = self.receiving {
                self.finish_reply();
            }
            (self.replies, self.error)
        }
    }

    fn run_connection<'a>(
        parts: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<Reply>, Option<&'static str>) {
        let mut connection = Connection::default();
        for part in parts {
            connection.feed(part);
        }
        connection.close()
    }

    const INIT_JSON: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":false}},"serverInfo":{"name":"bench","version":"1.0.0"}}}"#;
    const CALL_JSON: &[u8] = br#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#;

    fn chunk(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::proto::chunked::write_chunk(&mut out, data);
        out
    }

    /// One keep-alive connection carrying what the three SDKs answer, back to back.
    fn pipelined_stream() -> Vec<u8> {
        let mut stream = Vec::new();
        // Python SDK: SSE over chunked, CRLF.
        stream.extend_from_slice(b"HTTP/1.1 200 OK\r\ndate: Thu, 27 Nov 2026 05:15:00 GMT\r\nserver: uvicorn\r\ncache-control: no-cache, no-transform\r\nconnection: keep-alive\r\ncontent-type: text/event-stream\r\nmcp-session-id: 7f3c1a0e2b9d4c5f8a6e1d2c3b4a5f60\r\nx-accel-buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n");
        stream.extend(chunk(
            &[&b"event: message\r\ndata: "[..], INIT_JSON, b"\r\n\r\n"].concat(),
        ));
        stream.extend_from_slice(b"0\r\n\r\n");
        // Python SDK: a notification's 202.
        stream.extend_from_slice(b"HTTP/1.1 202 Accepted\r\ndate: Thu, 27 Nov 2026 05:15:00 GMT\r\nserver: uvicorn\r\ncontent-length: 0\r\n\r\n");
        // An interim response before the real one.
        stream.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        // rmcp: no event line, priming event first, LF, one chunk per event.
        stream.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nmcp-session-id: 0d6fe1c2-95a7-4f2e-b1a4-7b8f2a61c3d9\r\ntransfer-encoding: chunked\r\ndate: Thu, 27 Nov 2026 05:15:00 GMT\r\n\r\n");
        stream.extend(chunk(b"id: 0\nretry: 3000\ndata:\n\n"));
        stream.extend(chunk(&[&b"data: "[..], CALL_JSON, b"\n\n"].concat()));
        stream.extend_from_slice(b"0\r\n\r\n");
        // rmcp: unknown session.
        stream.extend_from_slice(RMCP_404);
        // TypeScript SDK: SSE with Content-Length, LF, a keep-alive comment.
        let body = [&b": ping\n\nevent: message\ndata: "[..], CALL_JSON, b"\n\n"].concat();
        stream.extend_from_slice(format!("HTTP/1.1 200 OK\r\nX-Powered-By: Express\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\nmcp-session-id: 5b1f\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
        stream.extend_from_slice(&body);
        // A JSON reply (json_response mode), LF-only head.
        stream.extend_from_slice(
            format!(
                "HTTP/1.1 200 OK\ncontent-type: application/json\ncontent-length: {}\n\n",
                CALL_JSON.len()
            )
            .as_bytes(),
        );
        stream.extend_from_slice(CALL_JSON);
        // Finally a body delimited by close, HTTP/1.0 style.
        stream.extend_from_slice(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbye");
        stream
    }

    fn expected_replies() -> Vec<Reply> {
        let event = |kind: &[u8], data: &[u8]| (kind.to_vec(), data.to_vec());
        vec![
            Reply {
                status: 200,
                session_id: Some(b"7f3c1a0e2b9d4c5f8a6e1d2c3b4a5f60".to_vec()),
                body: Body::Events(vec![event(b"message", INIT_JSON)], 0),
            },
            Reply {
                status: 202,
                session_id: None,
                body: Body::Raw(Vec::new()),
            },
            Reply {
                status: 100,
                session_id: None,
                body: Body::Raw(Vec::new()),
            },
            Reply {
                status: 200,
                session_id: Some(b"0d6fe1c2-95a7-4f2e-b1a4-7b8f2a61c3d9".to_vec()),
                body: Body::Events(vec![event(b"", CALL_JSON)], 1),
            },
            Reply {
                status: 404,
                session_id: None,
                body: Body::Raw(b"Session not found".to_vec()),
            },
            Reply {
                status: 200,
                session_id: Some(b"5b1f".to_vec()),
                body: Body::Events(vec![event(b"message", CALL_JSON)], 0),
            },
            Reply {
                status: 200,
                session_id: None,
                body: Body::Raw(CALL_JSON.to_vec()),
            },
            Reply {
                status: 200,
                session_id: None,
                body: Body::Raw(b"bye".to_vec()),
            },
        ]
    }

    #[test]
    fn test_pipelined_connection_at_every_split() {
        let stream = pipelined_stream();
        let whole = run_connection([&stream[..]]);
        assert_eq!(whole, (expected_replies(), None));
        for split in 0..=stream.len() {
            let (head, tail) = stream.split_at(split);
            assert_eq!(run_connection([head, tail]), whole, "split at {split}");
        }
        assert_eq!(run_connection(stream.chunks(1)), whole, "byte by byte");
    }

    #[test]
    fn test_connection_reports_peer_errors() {
        let (replies, error) = run_connection([
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX"[..],
        ]);
        assert_eq!(error, Some("chunk_bad_line_end"));
        assert!(replies.is_empty());
        let (_, error) = run_connection([&b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..]]);
        assert_eq!(error, Some("bad_content_length"));
    }

    /// Cuts `stream` at the given positions (taken modulo its length, in any order).
    fn split_at_points(stream: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            parts.push(stream[start..cut].to_vec());
            start = cut;
        }
        parts
    }

    proptest! {
        #[test]
        fn prop_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_response_head(&bytes);
            let _ = HeadScanner::new().scan(&bytes);
            let mut prefixed = b"HTTP/1.1 200 OK\r\n".to_vec();
            prefixed.extend_from_slice(&bytes);
            let _ = parse_response_head(&prefixed);
        }

        #[test]
        fn prop_header_like_bytes_never_panic(
            lines in proptest::collection::vec(
                (
                    prop::sample::select(vec![
                        "Content-Length", "Transfer-Encoding", "Connection", "Content-Type",
                        "Mcp-Session-Id", "Retry-After", "X", " ", "",
                    ]),
                    proptest::collection::vec(
                        prop::sample::select(b"0129 ,;:\t\r\nchunkedgzipclose\xff\0".to_vec()), 0..24),
                ),
                0..8,
            ),
            status in "[0-9]{3}",
        ) {
            let mut text = format!("HTTP/1.1 {status} X\r\n").into_bytes();
            for (name, value) in &lines {
                text.extend_from_slice(name.as_bytes());
                text.extend_from_slice(b": ");
                text.extend_from_slice(value);
                text.extend_from_slice(b"\r\n");
            }
            text.extend_from_slice(b"\r\n");
            if let Ok(Some(parsed)) = parse_response_head(&text) {
                prop_assert!(parsed.head_len <= text.len());
                let _ = parsed.framing();
            }
        }

        #[test]
        fn prop_scanner_agrees_with_parser(
            bytes in proptest::collection::vec(
                prop::sample::select(b"HTTP/1. 200OK\r\n:ab".to_vec()), 0..200),
            points in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
            text.extend_from_slice(&bytes);
            let mut scanner = HeadScanner::new();
            let mut spill = Vec::new();
            for part in split_at_points(&text, &points) {
                spill.extend_from_slice(&part);
                match scanner.scan(&spill) {
                    Ok(Some(head_len)) => {
                        match parse_response_head(&spill) {
                            Ok(Some(parsed)) => prop_assert_eq!(parsed.head_len, head_len),
                            Ok(None) => prop_assert!(false, "scanner complete, parser not"),
                            Err(_) => {}
                        }
                        break;
                    }
                    Ok(None) => prop_assert_eq!(parse_response_head(&spill), Ok(None)),
                    Err(error) => {
                        prop_assert_eq!(parse_response_head(&spill), Err(error));
                        break;
                    }
                }
            }
        }

        #[test]
        fn prop_number_writers_match_fmt(v in any::<u64>()) {
            let mut out = Vec::new();
            write_u64_decimal(&mut out, v);
            prop_assert_eq!(&out, &v.to_string().into_bytes());
            out.clear();
            write_u64_hex(&mut out, v);
            prop_assert_eq!(&out, &format!("{v:x}").into_bytes());
        }

        #[test]
        fn prop_pipelined_connection_at_random_splits(
            points in proptest::collection::vec(any::<usize>(), 0..24),
        ) {
            let stream = pipelined_stream();
            let parts = split_at_points(&stream, &points);
            prop_assert_eq!(
                run_connection(parts.iter().map(Vec::as_slice)),
                (expected_replies(), None)
            );
        }
    }
}
