//! JSON scanner for JSON-RPC frames, used on the hot paths of both sides of streamable-HTTP
//! MCP: the embedded server reading requests (`tools/call` …) and the client engine reading
//! responses out of JSON bodies or SSE `data:` lines.
//!
//! It must not build a DOM (no `serde_json::Value`) and must not allocate, except to unescape a
//! string that contains escapes. Values are returned as raw byte slices of the input so they can
//! be echoed verbatim into output (ids, results). It must not panic on any input.
//!
//! Syntax is RFC 8259, strictly: one value with surrounding whitespace, nesting at most
//! [`NESTING_DEPTH_MAX`] containers, strings valid UTF-8 with valid escapes. Unpaired UTF-16
//! surrogate escapes (`"\ud800"`) are refused: RFC 8259 §8.2 leaves their meaning undefined,
//! serde_json refuses them too, and refusing them means every valid string unescapes to a `str`.

use std::borrow::Cow;
use std::fmt;

/// Most containers (objects and arrays) open at once. Deeper text is refused rather than walked,
/// so a hostile frame cannot cost more than this many levels of bookkeeping.
pub const NESTING_DEPTH_MAX: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// A byte that cannot appear where it does; `offset` is its index in the input.
    Syntax { offset: usize },
    /// The input ended inside a value.
    Truncated,
    /// More than [`NESTING_DEPTH_MAX`] containers open at once.
    TooDeep,
    /// An object was expected.
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { offset } => write!(f, "JSON syntax error at byte {offset}"),
            Self::Truncated => f.write_str("JSON text ends inside a value"),
            Self::TooDeep => write!(f, "JSON nested deeper than {NESTING_DEPTH_MAX}"),
            Self::NotAnObject => f.write_str("JSON value is not an object"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Checks that `text` is exactly one JSON value, with optional whitespace around it.
pub fn validate(text: &[u8]) -> Result<(), JsonError> {
    let end = scan_value(text, 0, NESTING_DEPTH_MAX)?;
    let end = skip_whitespace(text, end);
    if end != text.len() {
        return Err(JsonError::Syntax { offset: end });
    }
    Ok(())
}

/// Validates the value that starts at `pos` (after optional whitespace) and returns the offset
/// just past it (trailing whitespace not included).
pub fn skip_value(text: &[u8], pos: usize) -> Result<usize, JsonError> {
    scan_value(text, pos, NESTING_DEPTH_MAX)
}

/// The raw text of the value of the first member named `key`, trimmed. `obj` is the raw text of
/// an object (whitespace around it allowed). Keys are compared after unescaping when they
/// contain escapes, so `"\u0069d"` matches `id`.
///
/// Members before the match are validated; text after it is not looked at, so run
/// [`validate`] first when the whole object must be well formed.
pub fn object_member<'a>(obj: &'a [u8], key: &str) -> Result<Option<&'a [u8]>, JsonError> {
    for member in members(obj)? {
        let member = member?;
        if member.key_is(key) {
            return Ok(Some(member.value));
        }
    }
    Ok(None)
}

/// The members of the object `obj` (raw text, whitespace around it allowed), in order.
pub fn members(obj: &[u8]) -> Result<Members<'_>, JsonError> {
    let open = skip_whitespace(obj, 0);
    match obj.get(open) {
        Some(b'{') => Ok(Members {
            text: obj,
            pos: open + 1,
            state: MembersState::First,
        }),
        Some(_) => Err(JsonError::NotAnObject),
        None => Err(JsonError::Truncated),
    }
}

/// One `"key": value` of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// The key's raw string token, quotes included.
    pub key_raw: &'a [u8],
    /// The value's raw text, without surrounding whitespace.
    pub value: &'a [u8],
    key_has_escapes: bool,
}

impl Member<'_> {
    /// Does the key, unescaped, equal `key`?
    pub fn key_is(&self, key: &str) -> bool {
        let content = string_content(self.key_raw);
        if self.key_has_escapes {
            unescaped_eq(content, key.as_bytes())
        } else {
            content == key.as_bytes()
        }
    }
}

/// Iterator over an object's members; each value is validated as it is passed. Stops after the
/// first error.
#[derive(Debug, Clone)]
pub struct Members<'a> {
    text: &'a [u8],
    pos: usize,
    state: MembersState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MembersState {
    /// Just past `{`.
    First,
    /// Just past a member's value.
    Next,
    /// Just past `}`.
    Done,
    Failed,
}

impl<'a> Members<'a> {
    /// Offset just past the closing `}`, once the iterator has returned `None` without error.
    pub fn end_offset(&self) -> Option<usize> {
        (self.state == MembersState::Done).then_some(self.pos)
    }

    fn next_member(&mut self) -> Result<Option<Member<'a>>, JsonError> {
        let text = self.text;
        let mut pos = skip_whitespace(text, self.pos);
        match self.state {
            MembersState::Done | MembersState::Failed => return Ok(None),
            MembersState::First => {
                if text.get(pos) == Some(&b'}') {
                    return Ok(self.finish(pos));
                }
            }
            MembersState::Next => match text.get(pos) {
                Some(b',') => pos = skip_whitespace(text, pos + 1),
                Some(b'}') => return Ok(self.finish(pos)),
                _ => return Err(unexpected(text, pos)),
            },
        }
        // A `}` right after a comma is refused here: it is not a key.
        let key = scan_string_at(text, pos)?;
        let colon = skip_whitespace(text, key.end);
        if text.get(colon) != Some(&b':') {
            return Err(unexpected(text, colon));
        }
        let value_start = skip_whitespace(text, colon + 1);
        // The object itself is one level of nesting.
        let value_end = scan_value(text, value_start, NESTING_DEPTH_MAX - 1)?;
        self.pos = value_end;
        self.state = MembersState::Next;
        Ok(Some(Member {
            key_raw: &text[pos..key.end],
            value: &text[value_start..value_end],
            key_has_escapes: key.has_escapes,
        }))
    }

    /// Records the closing `}` at `close`.
    fn finish(&mut self, close: usize) -> Option<Member<'a>> {
        self.pos = close + 1;
        self.state = MembersState::Done;
        None
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = Result<Member<'a>, JsonError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_member() {
            Ok(member) => member.map(Ok),
            Err(error) => {
                self.state = MembersState::Failed;
                Some(Err(error))
            }
        }
    }
}

/// `v` (whitespace around it allowed) if it is one JSON string token: the raw token, quotes
/// included, ready to be echoed into JSON output.
pub fn str_raw(v: &[u8]) -> Option<&[u8]> {
    let token = trim_whitespace(v);
    let string = scan_string_at(token, 0).ok()?;
    (string.end == token.len()).then_some(token)
}

/// The unescaped content of the string token `v`; borrowed when it has no escapes.
pub fn str_unescaped(v: &[u8]) -> Option<Cow<'_, str>> {
    let token = trim_whitespace(v);
    let string = scan_string_at(token, 0).ok()?;
    if string.end != token.len() {
        return None;
    }
    let content = string_content(token);
    if !string.has_escapes {
        return std::str::from_utf8(content).ok().map(Cow::Borrowed);
    }
    let mut unescaped = Vec::with_capacity(content.len());
    unescape_into(content, &mut unescaped)?;
    String::from_utf8(unescaped).ok().map(Cow::Owned)
}

/// The number token `v` as a finite f64 (`1e400` gives `None`).
pub fn as_f64(v: &[u8]) -> Option<f64> {
    let token = trim_whitespace(v);
    if scan_number(token, 0).ok()? != token.len() {
        return None;
    }
    let value: f64 = std::str::from_utf8(token).ok()?.parse().ok()?;
    value.is_finite().then_some(value)
}

/// An integer token (no fraction, no exponent) that fits a u64.
pub fn as_u64(v: &[u8]) -> Option<u64> {
    let token = trim_whitespace(v);
    let (false, magnitude) = integer_token(token)? else {
        return None;
    };
    Some(magnitude)
}

/// An integer token (no fraction, no exponent) that fits an i64.
pub fn as_i64(v: &[u8]) -> Option<i64> {
    let token = trim_whitespace(v);
    match integer_token(token)? {
        (true, magnitude) => 0i64.checked_sub_unsigned(magnitude),
        (false, magnitude) => i64::try_from(magnitude).ok(),
    }
}

/// `true` or `false`.
pub fn as_bool(v: &[u8]) -> Option<bool> {
    match trim_whitespace(v) {
        b"true" => Some(true),
        b"false" => Some(false),
        _ => None,
    }
}

/// Appends `s` as a quoted JSON string: `"` and `\` and control characters escaped, everything
/// else copied as is (runs without escapes in one copy).
pub fn write_escaped_str(out: &mut Vec<u8>, s: &str) {
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let short_escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..index]);
        if short_escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX_DIGITS[usize::from(byte >> 4)]);
            out.push(HEX_DIGITS[usize::from(byte & 0x0f)]);
        } else {
            out.extend_from_slice(short_escape);
        }
        run_start = index + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// JSON-RPC 2.0 request or notification (server side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcRequest<'a> {
    /// The raw id token: a number, a string (quotes included) or `null`. `None`: notification.
    pub id: Option<&'a [u8]>,
    pub method: Cow<'a, str>,
    /// Raw object or array.
    pub params: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcScanError {
    /// Not JSON (-32700).
    Parse,
    /// JSON, but not a valid request or response (-32600): not an object, `jsonrpc` not
    /// `"2.0"`, `method` missing or not a string, `id` not a string, number or null, `params`
    /// not structured; for responses, not exactly one of `result` and `error`, or a malformed
    /// `error`.
    InvalidRequest,
    /// A top-level array (JSON-RPC batch): MCP since 2025-06-18 has no batches, so the server
    /// refuses them.
    Batch,
}

impl RpcScanError {
    /// The JSON-RPC error code to answer with.
    pub fn code(self) -> i64 {
        match self {
            Self::Parse => -32700,
            Self::InvalidRequest | Self::Batch => -32600,
        }
    }

    /// Stable snake_case name, used as a counter name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parse => "parse_error",
            Self::InvalidRequest => "invalid_request",
            Self::Batch => "batch",
        }
    }
}

impl fmt::Display for RpcScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for RpcScanError {}

/// JSON-RPC response (client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcResponse<'a> {
    /// The raw id token; `None` when absent or `null` (an error about an unreadable request).
    pub id: Option<&'a [u8]>,
    pub outcome: RpcOutcome<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcOutcome<'a> {
    /// The raw `result` value.
    Result(&'a [u8]),
    /// `message` is the raw string token, quotes included (see [`str_unescaped`]).
    Error {
        code: i64,
        message: Option<&'a [u8]>,
    },
}

/// Any JSON-RPC message, for a reader that can receive either kind (an SSE stream carries the
/// server's notifications and requests as well as the response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcMessage<'a> {
    Request(RpcRequest<'a>),
    Response(RpcResponse<'a>),
}

/// Reads a request or notification in one pass: the body is validated while its members are
/// collected. The first of duplicated members wins, as in [`object_member`].
pub fn scan_rpc_request(body: &[u8]) -> Result<RpcRequest<'_>, RpcScanError> {
    let frame = scan_frame(body)?;
    frame.into_request()
}

/// Reads a response in one pass, like [`scan_rpc_request`].
pub fn scan_rpc_response(body: &[u8]) -> Result<RpcResponse<'_>, RpcScanError> {
    let frame = scan_frame(body)?;
    frame.into_response()
}

/// Reads any message: one with a `method` member is a request, otherwise a response.
pub fn scan_rpc_message(body: &[u8]) -> Result<RpcMessage<'_>, RpcScanError> {
    let frame = scan_frame(body)?;
    if frame.method.is_some() {
        frame.into_request().map(RpcMessage::Request)
    } else {
        frame.into_response().map(RpcMessage::Response)
    }
}

/// Is this `result` one whose `isError` member is `true` (a tool call that failed)?
pub fn result_is_error(result: &[u8]) -> bool {
    matches!(object_member(result, "isError"), Ok(Some(value)) if as_bool(value) == Some(true))
}

/// The members of a JSON-RPC message that matter, raw.
#[derive(Default)]
struct Frame<'a> {
    jsonrpc: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    method: Option<&'a [u8]>,
    params: Option<&'a [u8]>,
    result: Option<&'a [u8]>,
    error: Option<&'a [u8]>,
}

fn scan_frame(body: &[u8]) -> Result<Frame<'_>, RpcScanError> {
    let start = skip_whitespace(body, 0);
    match body.get(start) {
        Some(b'{') => {}
        // Valid JSON that is not an object is an invalid request; invalid JSON is a parse error.
        Some(b'[') if validate(body).is_ok() => return Err(RpcScanError::Batch),
        Some(_) if validate(body).is_ok() => return Err(RpcScanError::InvalidRequest),
        _ => return Err(RpcScanError::Parse),
    }
    let mut frame = Frame::default();
    let mut members = members(body).map_err(|_| RpcScanError::Parse)?;
    for member in &mut members {
        let member = member.map_err(|_| RpcScanError::Parse)?;
        let slot = if member.key_is("jsonrpc") {
            &mut frame.jsonrpc
        } else if member.key_is("id") {
            &mut frame.id
        } else if member.key_is("method") {
            &mut frame.method
        } else if member.key_is("params") {
            &mut frame.params
        } else if member.key_is("result") {
            &mut frame.result
        } else if member.key_is("error") {
            &mut frame.error
        } else {
            continue;
        };
        slot.get_or_insert(member.value);
    }
    let end = members.end_offset().ok_or(RpcScanError::Parse)?;
    if skip_whitespace(body, end) != body.len() {
        return Err(RpcScanError::Parse);
    }
    Ok(frame)
}

impl<'a> Frame<'a> {
    fn check_version(&self) -> Result<(), RpcScanError> {
        match self.jsonrpc {
            Some(b"\"2.0\"") => Ok(()),
            Some(other) if str_unescaped(other).as_deref() == Some("2.0") => Ok(()),
            _ => Err(RpcScanError::InvalidRequest),
        }
    }

    fn into_request(self) -> Result<RpcRequest<'a>, RpcScanError> {
        self.check_version()?;
        let method = self
            .method
            .and_then(str_unescaped)
            .ok_or(RpcScanError::InvalidRequest)?;
        if let Some(id) = self.id
            && !matches!(id.first(), Some(b'"' | b'-' | b'0'..=b'9' | b'n'))
        {
            return Err(RpcScanError::InvalidRequest);
        }
        if let Some(params) = self.params
            && !matches!(params.first(), Some(b'{' | b'['))
        {
            return Err(RpcScanError::InvalidRequest);
        }
        Ok(RpcRequest {
            id: self.id,
            method,
            params: self.params,
        })
    }

    fn into_response(self) -> Result<RpcResponse<'a>, RpcScanError> {
        self.check_version()?;
        let id = match self.id {
            None | Some(b"null") => None,
            Some(id) if matches!(id.first(), Some(b'"' | b'-' | b'0'..=b'9')) => Some(id),
            Some(_) => return Err(RpcScanError::InvalidRequest),
        };
        let outcome = match (self.result, self.error) {
            (Some(result), None) => RpcOutcome::Result(result),
            (None, Some(error)) => {
                let invalid = |_| RpcScanError::InvalidRequest;
                let code = object_member(error, "code")
                    .map_err(invalid)?
                    .and_then(as_i64)
                    .ok_or(RpcScanError::InvalidRequest)?;
                let message = match object_member(error, "message").map_err(invalid)? {
                    None => None,
                    Some(message) => Some(str_raw(message).ok_or(RpcScanError::InvalidRequest)?),
                };
                RpcOutcome::Error { code, message }
            }
            _ => return Err(RpcScanError::InvalidRequest),
        };
        Ok(RpcResponse { id, outcome })
    }
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_whitespace(text: &[u8], mut pos: usize) -> usize {
    while text.get(pos).is_some_and(|&byte| is_whitespace(byte)) {
        pos += 1;
    }
    pos
}

fn trim_whitespace(mut text: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = text
        && is_whitespace(*first)
    {
        text = rest;
    }
    while let [rest @ .., last] = text
        && is_whitespace(*last)
    {
        text = rest;
    }
    text
}

/// The error for an unexpected byte at `pos`, or for running out of input there.
fn unexpected(text: &[u8], pos: usize) -> JsonError {
    if pos < text.len() {
        JsonError::Syntax { offset: pos }
    } else {
        JsonError::Truncated
    }
}

/// Validates the value starting at `start` (after whitespace), with at most `depth_max`
/// containers open, and returns the offset just past it.
///
/// Iterative, so the stack does not grow with the input: which open containers are objects is
/// kept in one bit each.
fn scan_value(text: &[u8], start: usize, depth_max: usize) -> Result<usize, JsonError> {
    assert!(depth_max <= 128, "open containers are tracked in a u128");
    let mut pos = skip_whitespace(text, start);
    let mut depth = 0usize;
    let mut object_bits: u128 = 0;
    'value: loop {
        // `pos` is at the first byte of a value.
        let Some(&byte) = text.get(pos) else {
            return Err(JsonError::Truncated);
        };
        match byte {
            b'{' | b'[' => {
                if depth == depth_max {
                    return Err(JsonError::TooDeep);
                }
                let is_object = byte == b'{';
                if is_object {
                    object_bits |= 1 << depth;
                } else {
                    object_bits &= !(1 << depth);
                }
                depth += 1;
                pos = skip_whitespace(text, pos + 1);
                let close = if is_object { b'}' } else { b']' };
                if text.get(pos) == Some(&close) {
                    pos += 1;
                    depth -= 1;
                } else if is_object {
                    pos = scan_key_and_colon(text, pos)?;
                    continue 'value;
                } else {
                    continue 'value;
                }
            }
            b'"' => pos = scan_string_at(text, pos)?.end,
            b'-' | b'0'..=b'9' => pos = scan_number(text, pos)?,
            b't' => pos = scan_literal(text, pos, b"true")?,
            b'f' => pos = scan_literal(text, pos, b"false")?,
            b'n' => pos = scan_literal(text, pos, b"null")?,
            _ => return Err(JsonError::Syntax { offset: pos }),
        }
        // A value is complete: close containers until one continues with a comma.
        loop {
            if depth == 0 {
                return Ok(pos);
            }
            pos = skip_whitespace(text, pos);
            let in_object = object_bits & (1 << (depth - 1)) != 0;
            let close = if in_object { b'}' } else { b']' };
            match text.get(pos) {
                Some(b',') => {
                    pos = skip_whitespace(text, pos + 1);
                    if in_object {
                        pos = scan_key_and_colon(text, pos)?;
                    }
                    continue 'value;
                }
                Some(&byte) if byte == close => {
                    pos += 1;
                    depth -= 1;
                }
                Some(_) => return Err(JsonError::Syntax { offset: pos }),
                None => return Err(JsonError::Truncated),
            }
        }
    }
}

/// `"key" ws : ws` from `pos`; returns the offset of the member's value.
fn scan_key_and_colon(text: &[u8], pos: usize) -> Result<usize, JsonError> {
    let key = scan_string_at(text, pos)?;
    let colon = skip_whitespace(text, key.end);
    match text.get(colon) {
        Some(b':') => Ok(skip_whitespace(text, colon + 1)),
        _ => Err(unexpected(text, colon)),
    }
}

struct StringToken {
    /// Offset just past the closing quote.
    end: usize,
    has_escapes: bool,
}

/// Validates the string token starting at `pos`.
fn scan_string_at(text: &[u8], pos: usize) -> Result<StringToken, JsonError> {
    if text.get(pos) != Some(&b'"') {
        return Err(unexpected(text, pos));
    }
    let content_start = pos + 1;
    let mut cursor = content_start;
    let mut has_escapes = false;
    let mut has_non_ascii = false;
    loop {
        let Some(&byte) = text.get(cursor) else {
            return Err(JsonError::Truncated);
        };
        match byte {
            b'"' => break,
            b'\\' => {
                has_escapes = true;
                cursor = scan_escape(text, cursor)?;
            }
            0x00..=0x1f => return Err(JsonError::Syntax { offset: cursor }),
            0x80..=0xff => {
                has_non_ascii = true;
                cursor += 1;
            }
            _ => cursor += 1,
        }
    }
    // `"` and `\` never occur inside a multi-byte UTF-8 sequence, so finding the end bytewise
    // is sound and one check of the whole content catches every bad sequence.
    if has_non_ascii && let Err(error) = std::str::from_utf8(&text[content_start..cursor]) {
        return Err(JsonError::Syntax {
            offset: content_start + error.valid_up_to(),
        });
    }
    Ok(StringToken {
        end: cursor + 1,
        has_escapes,
    })
}

/// Validates the escape at `pos` (a backslash); returns the offset just past it. A high
/// surrogate must be followed by an escaped low surrogate; a lone low surrogate is refused.
fn scan_escape(text: &[u8], pos: usize) -> Result<usize, JsonError> {
    match text.get(pos + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(pos + 2),
        Some(b'u') => {
            let unit = scan_hex4(text, pos + 2)?;
            match unit {
                0xd800..=0xdbff => {
                    let low_pos = pos + 6;
                    for (offset, expected) in [(0, b'\\'), (1, b'u')] {
                        match text.get(low_pos + offset) {
                            Some(&byte) if byte == expected => {}
                            Some(_) => return Err(JsonError::Syntax { offset: low_pos }),
                            None => return Err(JsonError::Truncated),
                        }
                    }
                    let low = scan_hex4(text, low_pos + 2)?;
                    if !(0xdc00..=0xdfff).contains(&low) {
                        return Err(JsonError::Syntax { offset: low_pos });
                    }
                    Ok(low_pos + 6)
                }
                0xdc00..=0xdfff => Err(JsonError::Syntax { offset: pos }),
                _ => Ok(pos + 6),
            }
        }
        _ => Err(unexpected(text, pos + 1)),
    }
}

fn scan_hex4(text: &[u8], pos: usize) -> Result<u16, JsonError> {
    let mut unit = 0u16;
    for index in pos..pos + 4 {
        let Some(&byte) = text.get(index) else {
            return Err(JsonError::Truncated);
        };
        let digit = hex_value(byte).ok_or(JsonError::Syntax { offset: index })?;
        unit = unit << 4 | u16::from(digit);
    }
    Ok(unit)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` from `pos`; returns its end.
fn scan_number(text: &[u8], pos: usize) -> Result<usize, JsonError> {
    let is_digit = |at: usize| text.get(at).is_some_and(u8::is_ascii_digit);
    let skip_digits = |mut at: usize| {
        while is_digit(at) {
            at += 1;
        }
        at
    };
    let mut cursor = pos;
    if text.get(cursor) == Some(&b'-') {
        cursor += 1;
    }
    match text.get(cursor) {
        Some(b'0') => cursor += 1,
        Some(b'1'..=b'9') => cursor = skip_digits(cursor + 1),
        _ => return Err(unexpected(text, cursor)),
    }
    if text.get(cursor) == Some(&b'.') {
        cursor += 1;
        if !is_digit(cursor) {
            return Err(unexpected(text, cursor));
        }
        cursor = skip_digits(cursor);
    }
    if matches!(text.get(cursor), Some(b'e' | b'E')) {
        cursor += 1;
        if matches!(text.get(cursor), Some(b'+' | b'-')) {
            cursor += 1;
        }
        if !is_digit(cursor) {
            return Err(unexpected(text, cursor));
        }
        cursor = skip_digits(cursor);
    }
    Ok(cursor)
}

fn scan_literal(text: &[u8], pos: usize, literal: &[u8]) -> Result<usize, JsonError> {
    for (offset, &expected) in literal.iter().enumerate() {
        match text.get(pos + offset) {
            Some(&byte) if byte == expected => {}
            _ => return Err(unexpected(text, pos + offset)),
        }
    }
    Ok(pos + literal.len())
}

/// `-?digits` with JSON's no-leading-zero rule → (negative, magnitude).
fn integer_token(token: &[u8]) -> Option<(bool, u64)> {
    let (negative, digits) = match token {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |value, &byte| {
        if !byte.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))
    })?;
    Some((negative, magnitude))
}

/// The bytes between the quotes of a string token (which the scanner has checked).
fn string_content(token: &[u8]) -> &[u8] {
    match token {
        [b'"', content @ .., b'"'] => content,
        _ => &[],
    }
}

/// Decodes the escape at `pos` of validated string content → (character, offset past it).
fn decode_escape(content: &[u8], pos: usize) -> Option<(char, usize)> {
    let simple = match content.get(pos + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = scan_hex4(content, pos + 2).ok()?;
            if (0xd800..=0xdbff).contains(&unit) {
                let low = scan_hex4(content, pos + 8).ok()?;
                let code = 0x10000 + ((u32::from(unit) - 0xd800) << 10) + (u32::from(low) - 0xdc00);
                return Some((char::from_u32(code)?, pos + 12));
            }
            return Some((char::from_u32(u32::from(unit))?, pos + 6));
        }
        _ => return None,
    };
    Some((simple, pos + 2))
}

/// Unescaped `content` equals `expected`, compared without building the unescaped string.
fn unescaped_eq(content: &[u8], expected: &[u8]) -> bool {
    let mut pos = 0;
    let mut matched = 0;
    while pos < content.len() {
        if content[pos] == b'\\' {
            let Some((character, next)) = decode_escape(content, pos) else {
                return false;
            };
            let mut utf8 = [0u8; 4];
            let encoded = character.encode_utf8(&mut utf8).as_bytes();
            if expected.get(matched..matched + encoded.len()) != Some(encoded) {
                return false;
            }
            matched += encoded.len();
            pos = next;
        } else {
            if expected.get(matched) != Some(&content[pos]) {
                return false;
            }
            matched += 1;
            pos += 1;
        }
    }
    matched == expected.len()
}

/// Appends unescaped `content` to `out`, copying runs without escapes in one go.
fn unescape_into(content: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut pos = 0;
    while pos < content.len() {
        let run_end = content[pos..]
            .iter()
            .position(|&byte| byte == b'\\')
            .map_or(content.len(), |offset| pos + offset);
        out.extend_from_slice(&content[pos..run_end]);
        if run_end == content.len() {
            break;
        }
        let (character, next) = decode_escape(content, run_end)?;
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(character.encode_utf8(&mut utf8).as_bytes());
        pos = next;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcpstorm","version":"0.1.0"}}}"#;
    const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#;
    const TOOLS_CALL: &str = r#"{"method":"tools/call","params":{"name":"echo","arguments":{"text":"{\"id\": 9}"}},"jsonrpc":"2.0","id":"req-3"}"#;
    const PING: &str = "{ \"jsonrpc\" : \"2.0\" ,\n \"id\" : 4 , \"method\" : \"ping\" }\r\n";
    const CALL_RESULT: &str = r#"{"jsonrpc":"2.0","id":"req-3","result":{"content":[{"type":"text","text":"{\"id\": 9}"}],"isError":false}}"#;
    const CALL_ERROR: &str =
        r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"Method not found: \"x\""}}"#;

    fn frames() -> [&'static str; 7] {
        [
            INITIALIZE,
            INITIALIZED,
            TOOLS_LIST,
            TOOLS_CALL,
            PING,
            CALL_RESULT,
            CALL_ERROR,
        ]
    }

    fn nested(open: &str, close: &str, depth: usize) -> Vec<u8> {
        [open.repeat(depth), "1".to_string(), close.repeat(depth)]
            .concat()
            .into_bytes()
    }

    #[test]
    fn test_validate_accepts() {
        let cases: &[&[u8]] = &[
            b"{}",
            b"[]",
            b" 1 ",
            b"-0",
            b"0.5e+10",
            b"-12.25E-3",
            b"1e400",
            b"true",
            b"false",
            b"null",
            b"\"\"",
            b"\" \\\" \\\\ \\/ \\b \\f \\n \\r \\t \"",
            b"\"\\u00e9\\uD83D\\uDE00\"",
            "\"é ✓ 😀\"".as_bytes(),
            b"\"\x7f\"",
            b"\t\n\r {\"a\" : [ 1 , { \"b\" : null } ] } \t\n\r ",
            b"[[[[]]],{},[{}]]",
        ];
        for &case in cases {
            assert_eq!(validate(case), Ok(()), "{}", String::from_utf8_lossy(case));
        }
        for frame in frames() {
            assert_eq!(validate(frame.as_bytes()), Ok(()), "{frame}");
        }
    }

    #[test]
    fn test_validate_rejects() {
        use JsonError::{Syntax, Truncated};
        let cases: &[(&[u8], JsonError)] = &[
            (b"", Truncated),
            (b"  ", Truncated),
            (b"{} x", Syntax { offset: 3 }),
            (b"{}{}", Syntax { offset: 2 }),
            (b"1 2", Syntax { offset: 2 }),
            (b"01", Syntax { offset: 1 }),
            (b"1.", Truncated),
            (b"1.e5", Syntax { offset: 2 }),
            (b".5", Syntax { offset: 0 }),
            (b"+1", Syntax { offset: 0 }),
            (b"-", Truncated),
            (b"-a", Syntax { offset: 1 }),
            (b"1e", Truncated),
            (b"1e+", Truncated),
            (b"[1,]", Syntax { offset: 3 }),
            (b"[,1]", Syntax { offset: 1 }),
            (b"{\"a\":1,}", Syntax { offset: 7 }),
            (b"{,}", Syntax { offset: 1 }),
            (b"{\"a\" 1}", Syntax { offset: 5 }),
            (b"{\"a\":}", Syntax { offset: 5 }),
            (b"{a:1}", Syntax { offset: 1 }),
            (b"{1:1}", Syntax { offset: 1 }),
            (b"[1 2]", Syntax { offset: 3 }),
            (b"[1}", Syntax { offset: 2 }),
            (b"{\"a\":1]", Syntax { offset: 6 }),
            (b"[", Truncated),
            (b"{\"a\":1", Truncated),
            (b"\"abc", Truncated),
            (b"\"\\x\"", Syntax { offset: 2 }),
            (b"\"\\u12G4\"", Syntax { offset: 5 }),
            (b"\"\\u12\"", Syntax { offset: 5 }),
            (b"\"\\", Truncated),
            // Unpaired surrogates are refused (see the module header).
            (b"\"\\ud800\"", Syntax { offset: 7 }),
            (b"\"\\udc00\"", Syntax { offset: 1 }),
            (b"\"\\ud800\\u0041\"", Syntax { offset: 7 }),
            (b"\"\\ud800\\n\"", Syntax { offset: 7 }),
            (b"\"\\ud800\\", Truncated),
            // Invalid UTF-8: stray continuation, overlong, encoded surrogate, truncated sequence.
            (b"\"a\xff\"", Syntax { offset: 2 }),
            (b"\"\xc0\xaf\"", Syntax { offset: 1 }),
            (b"\"\xed\xa0\x80\"", Syntax { offset: 1 }),
            (b"\"ab\xe2\x9c\"", Syntax { offset: 3 }),
            (b"\"a\x01\"", Syntax { offset: 2 }),
            (b"\"a\nb\"", Syntax { offset: 2 }),
            (b"tru", Truncated),
            (b"trUe", Syntax { offset: 2 }),
            (b"True", Syntax { offset: 0 }),
            (b"nul", Truncated),
            (b"NaN", Syntax { offset: 0 }),
            (b"Infinity", Syntax { offset: 0 }),
            (b"'a'", Syntax { offset: 0 }),
            (b"\xef\xbb\xbf{}", Syntax { offset: 0 }),
            (b"[\x0c]", Syntax { offset: 1 }),
        ];
        for &(case, expected) in cases {
            assert_eq!(
                validate(case),
                Err(expected),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn test_depth_limit() {
        assert_eq!(validate(&nested("[", "]", 128)), Ok(()));
        assert_eq!(validate(&nested("[", "]", 129)), Err(JsonError::TooDeep));
        assert_eq!(validate(&nested("{\"a\":", "}", 128)), Ok(()));
        assert_eq!(
            validate(&nested("{\"a\":", "}", 129)),
            Err(JsonError::TooDeep)
        );
        assert_eq!(
            validate(&nested("[", "]", 100_000)),
            Err(JsonError::TooDeep)
        );
        // Inside an object the object counts as one level.
        let deep_member = [&b"{\"a\":"[..], &nested("[", "]", 127), b"}"].concat();
        assert_eq!(
            object_member(&deep_member, "a").map(|v| v.is_some()),
            Ok(true)
        );
        let too_deep_member = [&b"{\"a\":"[..], &nested("[", "]", 128), b"}"].concat();
        assert_eq!(
            object_member(&too_deep_member, "a"),
            Err(JsonError::TooDeep)
        );
        // A closed container frees its level.
        let siblings = [nested("[", "]", 128), nested("[", "]", 128)].join(&b","[..]);
        assert_eq!(
            validate(&[b"[", &siblings[..], b"]"].concat()),
            Err(JsonError::TooDeep)
        );
        let wide = format!(
            "[{}]",
            vec![String::from_utf8(nested("[", "]", 127)).unwrap_or_default(); 3].join(",")
        );
        assert_eq!(validate(wide.as_bytes()), Ok(()));
    }

    #[test]
    fn test_skip_value() {
        let text = br#"  [1, {"a": "}]"}] , {"b": 2} tail"#;
        let end = skip_value(text, 0).expect("valid array");
        assert_eq!(&text[..end], br#"  [1, {"a": "}]"}]"#);
        let comma = skip_whitespace(text, end);
        assert_eq!(text[comma], b',');
        let second_end = skip_value(text, comma + 1).expect("valid object");
        assert_eq!(&text[second_end..], b" tail");
        assert_eq!(skip_value(b"  12  ", 0), Ok(4));
        assert_eq!(skip_value(b"12", 5), Err(JsonError::Truncated));
        assert_eq!(skip_value(b"[1,", 0), Err(JsonError::Truncated));
    }

    #[test]
    fn test_object_member() {
        let obj = br#" { "a" : { "id" : 1 , "x": [ "}" ] } , "s": "{\"id\":7}", "i\"d": "quote", "\u0069d" :  2 , "id": 3 } "#;
        assert_eq!(object_member(obj, "id"), Ok(Some(&b"2"[..])));
        assert_eq!(
            object_member(obj, "a"),
            Ok(Some(&br#"{ "id" : 1 , "x": [ "}" ] }"#[..]))
        );
        assert_eq!(object_member(obj, "s"), Ok(Some(&br#""{\"id\":7}""#[..])));
        assert_eq!(object_member(obj, "i\"d"), Ok(Some(&br#""quote""#[..])));
        assert_eq!(object_member(obj, "missing"), Ok(None));
        assert_eq!(object_member(obj, "i"), Ok(None));
        assert_eq!(object_member(obj, "idd"), Ok(None));
        let emoji = "{\"\\ud83d\\ude00\":1,\"\u{e9}\":2,\"\\u00e9\\/\":3}";
        assert_eq!(object_member(emoji.as_bytes(), "😀"), Ok(Some(&b"1"[..])));
        assert_eq!(object_member(emoji.as_bytes(), "é"), Ok(Some(&b"2"[..])));
        assert_eq!(object_member(emoji.as_bytes(), "é/"), Ok(Some(&b"3"[..])));
        assert_eq!(object_member(b"{}", "a"), Ok(None));
        assert_eq!(object_member(b" { } ", "a"), Ok(None));
        assert_eq!(object_member(b"[1]", "a"), Err(JsonError::NotAnObject));
        assert_eq!(object_member(b"\"{}\"", "a"), Err(JsonError::NotAnObject));
        assert_eq!(object_member(b"", "a"), Err(JsonError::Truncated));
        assert_eq!(
            object_member(b"{\"a\":1,}", "b"),
            Err(JsonError::Syntax { offset: 7 })
        );
        assert_eq!(
            object_member(b"{\"a\" 1}", "a"),
            Err(JsonError::Syntax { offset: 5 })
        );
        assert_eq!(object_member(b"{\"a\":1", "b"), Err(JsonError::Truncated));
        assert_eq!(
            object_member(b"{\"a\":1 \"b\":2}", "b"),
            Err(JsonError::Syntax { offset: 7 })
        );
    }

    #[test]
    fn test_members_iteration() {
        let obj = br#"{"a":1,"b":[2],"a":3}  "#;
        let mut iter = members(obj).expect("object");
        let keys: Vec<(&[u8], &[u8])> = iter
            .by_ref()
            .map(|member| member.map(|m| (m.key_raw, m.value)))
            .collect::<Result<_, _>>()
            .expect("valid members");
        assert_eq!(
            keys,
            [
                (&b"\"a\""[..], &b"1"[..]),
                (&b"\"b\""[..], &b"[2]"[..]),
                (&b"\"a\""[..], &b"3"[..])
            ]
        );
        assert_eq!(iter.end_offset(), Some(obj.len() - 2));
        let mut failing = members(b"{\"a\":x}").expect("object");
        assert!(matches!(
            failing.next(),
            Some(Err(JsonError::Syntax { offset: 5 }))
        ));
        assert!(failing.next().is_none());
        assert_eq!(failing.end_offset(), None);
    }

    #[test]
    fn test_strings() {
        assert_eq!(str_raw(b" \"a\\\"b\" "), Some(&b"\"a\\\"b\""[..]));
        assert_eq!(str_raw(b"\"a\" x"), None);
        assert_eq!(str_raw(b"1"), None);
        assert_eq!(str_raw(b"\"\\ud800\""), None);
        assert_eq!(str_unescaped(b"\"plain\""), Some(Cow::Borrowed("plain")));
        assert!(matches!(
            str_unescaped(b"\"plain\""),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(
            str_unescaped(b"\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0041\\u00e9\\ud83d\\ude00\"")
                .as_deref(),
            Some("a\"b\\c/d\u{8}\u{c}\n\r\tAé😀")
        );
        assert_eq!(str_unescaped("\"é\"".as_bytes()).as_deref(), Some("é"));
        assert_eq!(str_unescaped(b"\"\\u0000\"").as_deref(), Some("\0"));
        assert_eq!(str_unescaped(b"\"a"), None);
        assert_eq!(str_unescaped(b"\"\xff\""), None);
        assert_eq!(str_unescaped(b"null"), None);
    }

    #[test]
    fn test_numbers_and_bools() {
        assert_eq!(as_u64(b"0"), Some(0));
        assert_eq!(as_u64(b" 42 "), Some(42));
        assert_eq!(as_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(as_u64(b"18446744073709551616"), None);
        assert_eq!(as_u64(b"-1"), None);
        assert_eq!(as_u64(b"1.0"), None);
        assert_eq!(as_u64(b"1e3"), None);
        assert_eq!(as_u64(b"01"), None);
        assert_eq!(as_u64(b"\"1\""), None);
        assert_eq!(as_u64(b""), None);
        assert_eq!(as_i64(b"-32601"), Some(-32601));
        assert_eq!(as_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(as_i64(b"-9223372036854775809"), None);
        assert_eq!(as_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(as_i64(b"9223372036854775808"), None);
        assert_eq!(as_i64(b"-0"), Some(0));
        assert_eq!(as_i64(b"-"), None);
        assert_eq!(as_i64(b"--1"), None);
        assert_eq!(as_f64(b"1.5e3"), Some(1500.0));
        assert_eq!(as_f64(b"-0.25"), Some(-0.25));
        assert_eq!(as_f64(b"1E+2"), Some(100.0));
        assert_eq!(as_f64(b"7"), Some(7.0));
        assert_eq!(as_f64(b"1e400"), None);
        assert_eq!(as_f64(b"inf"), None);
        assert_eq!(as_f64(b"NaN"), None);
        assert_eq!(as_f64(b".5"), None);
        assert_eq!(as_f64(b"1."), None);
        assert_eq!(as_bool(b"true"), Some(true));
        assert_eq!(as_bool(b" false\n"), Some(false));
        assert_eq!(as_bool(b"True"), None);
        assert_eq!(as_bool(b"1"), None);
    }

    #[test]
    fn test_write_escaped_str() {
        let cases = [
            ("", "\"\""),
            ("plain", "\"plain\""),
            ("a\"b\\c", "\"a\\\"b\\\\c\""),
            ("\n\r\t\u{8}\u{c}", "\"\\n\\r\\t\\b\\f\""),
            ("\0\u{1}\u{1f}", "\"\\u0000\\u0001\\u001f\""),
            ("é😀/\u{7f}", "\"é😀/\u{7f}\""),
        ];
        for (input, expected) in cases {
            let mut out = b"prefix ".to_vec();
            write_escaped_str(&mut out, input);
            assert_eq!(&out[7..], expected.as_bytes(), "{input:?}");
            assert_eq!(str_unescaped(&out[7..]).as_deref(), Some(input));
        }
    }

    #[test]
    fn test_scan_rpc_request_mcp_frames() {
        let request = scan_rpc_request(INITIALIZE.as_bytes()).expect("initialize");
        assert_eq!(request.id, Some(&b"1"[..]));
        assert_eq!(request.method, "initialize");
        let params = request.params.expect("params");
        assert_eq!(
            object_member(params, "protocolVersion"),
            Ok(Some(&b"\"2025-06-18\""[..]))
        );

        let request = scan_rpc_request(INITIALIZED.as_bytes()).expect("initialized");
        assert_eq!(request.id, None);
        assert_eq!(request.method, "notifications/initialized");
        assert_eq!(request.params, None);

        let request = scan_rpc_request(TOOLS_LIST.as_bytes()).expect("tools/list");
        assert_eq!(
            (request.id, request.params),
            (Some(&b"2"[..]), Some(&b"{}"[..]))
        );

        let request = scan_rpc_request(TOOLS_CALL.as_bytes()).expect("tools/call");
        assert_eq!(request.id, Some(&b"\"req-3\""[..]));
        assert_eq!(request.method, "tools/call");
        assert!(matches!(request.method, Cow::Borrowed(_)));
        let params = request.params.expect("params");
        assert_eq!(
            object_member(params, "name")
                .ok()
                .flatten()
                .and_then(str_unescaped)
                .as_deref(),
            Some("echo")
        );
        let arguments = object_member(params, "arguments")
            .ok()
            .flatten()
            .expect("arguments");
        assert_eq!(
            object_member(arguments, "text")
                .ok()
                .flatten()
                .and_then(str_unescaped)
                .as_deref(),
            Some("{\"id\": 9}")
        );

        let request = scan_rpc_request(PING.as_bytes()).expect("ping");
        assert_eq!(
            (request.id, request.method.as_ref()),
            (Some(&b"4"[..]), "ping")
        );

        let escaped =
            br#"{"jsonrpc":"\u0032.0","\u0069d":null,"method":"tools\/list","params":[]}"#;
        let request = scan_rpc_request(escaped).expect("escaped");
        assert_eq!(request.id, Some(&b"null"[..]));
        assert_eq!(request.method, "tools/list");
        assert_eq!(request.params, Some(&b"[]"[..]));

        let duplicated = br#"{"jsonrpc":"2.0","id":1,"method":"ping","id":2}"#;
        assert_eq!(
            scan_rpc_request(duplicated).map(|r| r.id),
            Ok(Some(&b"1"[..]))
        );
        let negative_id = br#"{"jsonrpc":"2.0","id":-7,"method":"ping","extra":{"x":[1]}}"#;
        assert_eq!(
            scan_rpc_request(negative_id).map(|r| r.id),
            Ok(Some(&b"-7"[..]))
        );
    }

    #[test]
    fn test_scan_rpc_request_errors() {
        use RpcScanError::{Batch, InvalidRequest, Parse};
        let cases: &[(&[u8], RpcScanError)] = &[
            (b"", Parse),
            (b"   ", Parse),
            (b"{", Parse),
            (b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\"", Parse),
            (b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\"} x", Parse),
            (b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",}", Parse),
            (b"{\"jsonrpc\":\"2.0\",\"method\":\"p\xffing\"}", Parse),
            (b"[{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}", Parse),
            (b"nul", Parse),
            (b"1", InvalidRequest),
            (b"\"ping\"", InvalidRequest),
            (b"null", InvalidRequest),
            (b"{}", InvalidRequest),
            (b"{\"method\":\"ping\"}", InvalidRequest),
            (b"{\"jsonrpc\":\"1.0\",\"method\":\"ping\"}", InvalidRequest),
            (b"{\"jsonrpc\":2.0,\"method\":\"ping\"}", InvalidRequest),
            (b"{\"jsonrpc\":\"2.0\"}", InvalidRequest),
            (b"{\"jsonrpc\":\"2.0\",\"method\":7}", InvalidRequest),
            (b"{\"jsonrpc\":\"2.0\",\"method\":null}", InvalidRequest),
            (
                b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":{}}",
                InvalidRequest,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":[1]}",
                InvalidRequest,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":true}",
                InvalidRequest,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"params\":\"x\"}",
                InvalidRequest,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"params\":3}",
                InvalidRequest,
            ),
            (b"[{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}]", Batch),
            (b" [] ", Batch),
        ];
        for &(body, expected) in cases {
            assert_eq!(
                scan_rpc_request(body),
                Err(expected),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(Parse.code(), -32700);
        assert_eq!(InvalidRequest.code(), -32600);
        assert_eq!(Batch.code(), -32600);
        // 128 levels in all: the frame object plus 127 in params.
        let deep = |levels: usize| {
            [
                &br#"{"jsonrpc":"2.0","method":"x","params":"#[..],
                &nested("[", "]", levels),
                b"}",
            ]
            .concat()
        };
        assert!(scan_rpc_request(&deep(127)).is_ok());
        assert_eq!(scan_rpc_request(&deep(128)), Err(Parse));
    }

    #[test]
    fn test_scan_rpc_response() {
        let response = scan_rpc_response(CALL_RESULT.as_bytes()).expect("result");
        assert_eq!(response.id, Some(&b"\"req-3\""[..]));
        let RpcOutcome::Result(result) = response.outcome else {
            panic!("expected a result, got {:?}", response.outcome);
        };
        assert!(result.starts_with(b"{\"content\""));
        assert!(!result_is_error(result));

        let response = scan_rpc_response(CALL_ERROR.as_bytes()).expect("error");
        assert_eq!(response.id, Some(&b"5"[..]));
        assert_eq!(
            response.outcome,
            RpcOutcome::Error {
                code: -32601,
                message: Some(&br#""Method not found: \"x\"""#[..])
            }
        );

        let parse_error = br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700}}"#;
        assert_eq!(
            scan_rpc_response(parse_error),
            Ok(RpcResponse {
                id: None,
                outcome: RpcOutcome::Error {
                    code: -32700,
                    message: None
                }
            })
        );

        use RpcScanError::{Batch, InvalidRequest, Parse};
        let cases: &[(&[u8], RpcScanError)] = &[
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":", Parse),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1}", InvalidRequest),
            (b"{\"id\":1,\"result\":{}}", InvalidRequest),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{\"code\":1}}",
                InvalidRequest,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"message\":\"x\"}}",
                InvalidRequest,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1.5}}",
                InvalidRequest,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":2}}",
                InvalidRequest,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":\"x\"}",
                InvalidRequest,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":1}",
                InvalidRequest,
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}",
                InvalidRequest,
            ),
            (b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]", Batch),
        ];
        for &(body, expected) in cases {
            assert_eq!(
                scan_rpc_response(body),
                Err(expected),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn test_scan_rpc_message() {
        assert!(matches!(
            scan_rpc_message(PING.as_bytes()),
            Ok(RpcMessage::Request(_))
        ));
        assert!(matches!(
            scan_rpc_message(CALL_RESULT.as_bytes()),
            Ok(RpcMessage::Response(_))
        ));
        let progress =
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#;
        assert!(matches!(
            scan_rpc_message(progress),
            Ok(RpcMessage::Request(RpcRequest { id: None, .. }))
        ));
    }

    #[test]
    fn test_result_is_error() {
        assert!(result_is_error(br#"{"content":[],"isError":true}"#));
        assert!(result_is_error(
            br#"{"content":[{"type":"text","text":"\"isError\":false"}],"isError" : true }"#
        ));
        assert!(!result_is_error(br#"{"content":[],"isError":false}"#));
        assert!(!result_is_error(br#"{"content":[{"isError":true}]}"#));
        assert!(!result_is_error(br#"{"isError":"true"}"#));
        assert!(!result_is_error(b"[]"));
        assert!(!result_is_error(b"{"));
    }

    #[test]
    fn test_every_split_and_truncation() {
        for frame in frames() {
            let bytes = frame.as_bytes();
            // Where the value ends: any shorter prefix must be refused.
            let content_end = bytes.trim_ascii_end().len();
            for k in 0..=bytes.len() {
                for part in [&bytes[..k], &bytes[k..]] {
                    let _ = validate(part);
                    let _ = skip_value(part, 0);
                    let _ = scan_rpc_request(part);
                    let _ = scan_rpc_response(part);
                    let _ = scan_rpc_message(part);
                    let _ = object_member(part, "id");
                    let _ = result_is_error(part);
                    let _ = str_unescaped(part);
                    let _ = as_f64(part);
                }
                if k < content_end {
                    assert!(validate(&bytes[..k]).is_err(), "{frame} cut at {k}");
                    assert_eq!(
                        scan_rpc_message(&bytes[..k]).ok(),
                        None,
                        "{frame} cut at {k}"
                    );
                }
            }
        }
    }

    /// Any JSON value (serde_json is the reference implementation in these tests only).
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Exactly representable, so serde_json's own float parsing round-trips them.
            any::<i32>().prop_map(|n| Value::from(f64::from(n) / 8.0)),
            any::<String>().prop_map(Value::String),
            "[a-z\"\\\\{}\\[\\]:, ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(("[a-z\"\\\\é]{0,4}", inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
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
            proptest::sample::select(b"{}[]\",:\\ 0-.eEtfnu".to_vec()),
        ];
        prop_oneof![
            (any::<usize>(), interesting.clone())
                .prop_map(|(at, byte)| Mutation::Flip { at, byte }),
            (any::<usize>(), interesting).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
            any::<usize>().prop_map(|at| Mutation::Delete { at }),
        ]
    }

    fn mutate(mut text: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
        for mutation in mutations {
            if text.is_empty() {
                break;
            }
            match *mutation {
                Mutation::Flip { at, byte } => {
                    let at = at % text.len();
                    text[at] = byte;
                }
                Mutation::Insert { at, byte } => text.insert(at % (text.len() + 1), byte),
                Mutation::Delete { at } => {
                    text.remove(at % text.len());
                }
            }
        }
        text
    }

    /// Our verdict agrees with serde_json's, except that serde_json refuses numbers it cannot
    /// represent (RFC 8259 allows them) and allows one level less nesting.
    fn agrees_with_serde(text: &[u8]) -> Result<(), TestCaseError> {
        let ours = validate(text);
        let reference = serde_json::from_slice::<serde_json::Value>(text);
        match (&ours, &reference) {
            (Ok(()), Ok(_)) | (Err(_), Err(_)) => {}
            (Ok(()), Err(error)) => {
                prop_assert!(error.to_string().contains("out of range"), "serde: {error}");
            }
            (Err(error), Ok(_)) => {
                prop_assert!(false, "we refuse ({error:?}) what serde_json accepts")
            }
        }
        Ok(())
    }

    fn exercise_everything(text: &[u8]) {
        let _ = validate(text);
        let _ = skip_value(text, 0);
        let _ = skip_value(text, text.len() / 2);
        let _ = scan_rpc_request(text);
        let _ = scan_rpc_response(text);
        let _ = scan_rpc_message(text);
        let _ = object_member(text, "id");
        let _ = object_member(text, "é");
        let _ = result_is_error(text);
        let _ = str_raw(text);
        let _ = str_unescaped(text);
        let _ = (as_f64(text), as_u64(text), as_i64(text), as_bool(text));
        if let Ok(members) = members(text) {
            for member in members.flatten() {
                let _ = member.key_is("id");
            }
        }
    }

    proptest! {
        // Failures are reported with their minimal input; no regression files in the tree.
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn prop_random_bytes_never_panic(text in proptest::collection::vec(any::<u8>(), 0..300)) {
            exercise_everything(&text);
            agrees_with_serde(&text)?;
        }

        #[test]
        fn prop_mutated_frames_never_panic(
            frame in 0..7usize,
            mutations in proptest::collection::vec(mutation(), 0..4),
        ) {
            let text = mutate(frames()[frame].as_bytes().to_vec(), &mutations);
            exercise_everything(&text);
            agrees_with_serde(&text)?;
            // Whatever scans as a request is valid JSON with a string method.
            if let Ok(request) = scan_rpc_request(&text) {
                prop_assert_eq!(validate(&text), Ok(()));
                let reference: serde_json::Value = serde_json::from_slice(&text)
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                prop_assert_eq!(reference.get("method").and_then(|m| m.as_str()), Some(request.method.as_ref()));
            }
        }

        #[test]
        fn prop_values_agree_with_serde(value in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_vec_pretty(&value)
            } else {
                serde_json::to_vec(&value)
            }
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
            prop_assert_eq!(validate(&text), Ok(()));
            prop_assert_eq!(skip_value(&text, 0), Ok(text.len()));
            if let serde_json::Value::String(expected) = &value {
                let unescaped = str_unescaped(&text);
                prop_assert_eq!(unescaped.as_deref(), Some(expected.as_str()));
                let mut written = Vec::new();
                write_escaped_str(&mut written, expected);
                let reread = serde_json::from_slice::<String>(&written).ok();
                prop_assert_eq!(reread.as_ref(), Some(expected));
            }
            if let serde_json::Value::Object(map) = &value {
                for (key, member_value) in map {
                    let raw = object_member(&text, key)
                        .map_err(|error| TestCaseError::fail(format!("{error:?}")))?;
                    let raw = raw.ok_or_else(|| TestCaseError::fail(format!("no member {key:?}")))?;
                    let parsed: serde_json::Value = serde_json::from_slice(raw)
                        .map_err(|error| TestCaseError::fail(error.to_string()))?;
                    prop_assert_eq!(&parsed, member_value);
                }
            }
            for k in 0..text.len() {
                let _ = validate(&text[..k]);
            }
        }

        #[test]
        fn prop_integers_round_trip(n in any::<i64>(), u in any::<u64>()) {
            prop_assert_eq!(as_i64(n.to_string().as_bytes()), Some(n));
            prop_assert_eq!(as_u64(u.to_string().as_bytes()), Some(u));
        }
    }
}
