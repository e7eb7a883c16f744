//! SEP-2243 (MCP 2026-07-28) header values, for both sides of the wire: the `=?base64?…?=`
//! sentinel that `Mcp-Name` and `Mcp-Param-*` use for values a header cannot carry plainly,
//! the `x-mcp-header` declarations of a tool's `inputSchema`, and the `Mcp-Param-{Name}`
//! headers a `tools/call` mirrors from its arguments. The client engine (`engine/template.rs`)
//! and `probe` write them, `serve` (`server/mcp.rs`) checks them. I/O-free.
//!
//! Reading a declaration happens once per tool at plan time (serde `Value`); mirroring and
//! checking run per request over the raw arguments bytes with the JSON scanner, allocating
//! only for a string argument that holds escapes.

use super::json;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::borrow::Cow;

const SENTINEL_PREFIX: &[u8] = b"=?base64?";
const SENTINEL_SUFFIX: &[u8] = b"?=";
/// `Mcp-Param-` + the declared name is the header.
pub const PARAM_PREFIX: &str = "Mcp-Param-";

/// Appends `value` as a header carries it: as is when it is visible ASCII with inner spaces
/// only (and does not itself look like the sentinel), else `=?base64?<padded Base64>?=`.
pub fn write_value(out: &mut Vec<u8>, value: &[u8]) {
    let plain = value.iter().all(|&b| (0x20..0x7f).contains(&b))
        && value.first() != Some(&b' ')
        && value.last() != Some(&b' ')
        && !(value.starts_with(b"=?") && value.ends_with(b"?="));
    if plain {
        out.extend_from_slice(value);
        return;
    }
    out.extend_from_slice(SENTINEL_PREFIX);
    let start = out.len();
    out.resize(
        start + base64::encoded_len(value.len(), true).unwrap_or(0),
        0,
    );
    let written = STANDARD.encode_slice(value, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
    out.extend_from_slice(SENTINEL_SUFFIX);
}

/// A header value as the sender meant it: the sentinel decoded (canonical padded Base64 only:
/// `None` for anything else inside it), any other value as is. `scratch` is reused.
pub fn decode_value<'a>(value: &'a [u8], scratch: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    if value.len() >= SENTINEL_PREFIX.len() + SENTINEL_SUFFIX.len()
        && value.starts_with(SENTINEL_PREFIX)
        && value.ends_with(SENTINEL_SUFFIX)
    {
        let payload = &value[SENTINEL_PREFIX.len()..value.len() - SENTINEL_SUFFIX.len()];
        scratch.clear();
        STANDARD.decode_vec(payload, scratch).ok()?;
        return Some(scratch.as_slice());
    }
    Some(value)
}

/// Whether every byte may stand in a field value (visible ASCII, space, tab).
pub fn value_is_valid(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b))
}

/// The JSON type a declared parameter has: the only ones `x-mcp-header` may sit on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Integer,
    Boolean,
}

/// One `x-mcp-header` declaration: argument `property` goes into `Mcp-Param-{header}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    pub property: Cow<'static, str>,
    pub header: Cow<'static, str>,
    pub kind: ParamKind,
}

impl ParamHeader {
    pub const fn fixed(property: &'static str, header: &'static str, kind: ParamKind) -> Self {
        ParamHeader {
            property: Cow::Borrowed(property),
            header: Cow::Borrowed(header),
            kind,
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The declarations of a tool's `inputSchema` (top-level properties). `Err` says why the tool
/// is invalid: a conforming client excludes such a tool (SEP-2243), so it is never called.
pub fn declarations(input_schema: &serde_json::Value) -> Result<Vec<ParamHeader>, String> {
    let mut found: Vec<ParamHeader> = Vec::new();
    let Some(properties) = input_schema.get("properties").and_then(|p| p.as_object()) else {
        return Ok(found);
    };
    for (property, schema) in properties {
        let Some(declared) = schema.get("x-mcp-header") else {
            continue;
        };
        let Some(header) = declared.as_str() else {
            return Err(format!("x-mcp-header of {property:?} is not a string"));
        };
        if header.is_empty() || !header.bytes().all(is_tchar) {
            return Err(format!(
                "x-mcp-header {header:?} of {property:?} is not an HTTP field-name token"
            ));
        }
        let kind = match schema.get("type").and_then(|t| t.as_str()) {
            Some("string") => ParamKind::String,
            Some("integer") => ParamKind::Integer,
            Some("boolean") => ParamKind::Boolean,
            other => {
                return Err(format!(
                    "x-mcp-header {header:?} sits on {property:?} of type {}, not string, integer or boolean",
                    other.unwrap_or("(none)")
                ));
            }
        };
        if found.iter().any(|f| f.header.eq_ignore_ascii_case(header)) {
            return Err(format!(
                "x-mcp-header {header:?} is declared twice (names are case-insensitive)"
            ));
        }
        found.push(ParamHeader {
            property: Cow::Owned(property.clone()),
            header: Cow::Owned(header.to_string()),
            kind,
        });
    }
    Ok(found)
}

/// What a header carries for one argument value (raw JSON): a string unescaped, a number or
/// a boolean as written; `None` for null, an object or an array (no header is sent).
fn header_text(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    match value.first()? {
        b'"' => json::str_unescaped(value).map(|s| match s {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        }),
        b'-' | b'0'..=b'9' | b't' | b'f' => Some(Cow::Borrowed(value)),
        _ => None,
    }
}

/// Appends `Mcp-Param-{Name}: value\r\n` for every declared argument present (and not null)
/// in `arguments`, a raw JSON object.
pub fn write_param_headers(out: &mut Vec<u8>, declared: &[ParamHeader], arguments: &[u8]) {
    for param in declared {
        let Some(value) = json::object_member(arguments, &param.property)
            .ok()
            .flatten()
            .and_then(header_text)
        else {
            continue;
        };
        out.extend_from_slice(PARAM_PREFIX.as_bytes());
        out.extend_from_slice(param.header.as_bytes());
        out.extend_from_slice(b": ");
        write_value(out, &value);
        out.extend_from_slice(b"\r\n");
    }
}

/// The `Mcp-Param-*` fields of one request, as the head parser keeps them: `(suffix, value)`
/// with the suffix after `Mcp-Param-`, values trimmed of whitespace.
pub const PARAM_FIELDS_MAX: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamFields<'a> {
    fields: [(&'a [u8], &'a [u8]); PARAM_FIELDS_MAX],
    len: usize,
    /// More fields came than are kept: a declared one not found may be among the dropped.
    pub overflowed: bool,
}

impl<'a> ParamFields<'a> {
    pub fn push(&mut self, suffix: &'a [u8], value: &'a [u8]) {
        if self.len == PARAM_FIELDS_MAX {
            self.overflowed = true;
            return;
        }
        self.fields[self.len] = (suffix, value);
        self.len += 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.fields[..self.len].iter().copied()
    }
}

/// Why a request's `Mcp-Param-*` fields do not match its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamMismatch {
    pub header: String,
    pub property: String,
}

impl std::fmt::Display for ParamMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Header mismatch: {PARAM_PREFIX}{} is missing, malformed or does not match arguments.{}",
            self.header, self.property
        )
    }
}

/// The server's check (SEP-2243): each declared argument present in the body has exactly one
/// matching header (decoded, then compared as its declared type: integers by value); an
/// argument absent or null has none.
pub fn check_param_headers(
    declared: &[ParamHeader],
    arguments: Option<&[u8]>,
    fields: &ParamFields<'_>,
    scratch: &mut Vec<u8>,
) -> Result<(), ParamMismatch> {
    for param in declared {
        let mismatch = || ParamMismatch {
            header: param.header.to_string(),
            property: param.property.to_string(),
        };
        let body = arguments
            .and_then(|a| json::object_member(a, &param.property).ok().flatten())
            .filter(|v| *v != b"null");
        let mut named = fields
            .iter()
            .filter(|(suffix, _)| suffix.eq_ignore_ascii_case(param.header.as_bytes()));
        let header = named.next();
        if named.next().is_some() {
            return Err(mismatch());
        }
        match (body, header) {
            (None, None) if !fields.overflowed => {}
            (None, _) | (_, None) => return Err(mismatch()),
            (Some(body), Some((_, raw))) => {
                if !value_is_valid(raw) {
                    return Err(mismatch());
                }
                let decoded = decode_value(raw, scratch).ok_or_else(mismatch)?;
                let matches = match param.kind {
                    ParamKind::String => {
                        json::str_unescaped(body).is_some_and(|s| s.as_bytes() == decoded)
                    }
                    ParamKind::Integer => {
                        let header = std::str::from_utf8(decoded)
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok());
                        header.is_some() && header == json::as_i64(body)
                    }
                    ParamKind::Boolean => json::as_bool(body)
                        .is_some_and(|b| decoded == if b { b"true".as_slice() } else { b"false" }),
                };
                if !matches {
                    return Err(mismatch());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoded(value: &str) -> String {
        let mut out = Vec::new();
        write_value(&mut out, value.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_values_stay_plain_others_get_the_sentinel() {
        assert_eq!(encoded("us-west1"), "us-west1");
        assert_eq!(encoded("us west 1"), "us west 1");
        assert_eq!(encoded(""), "");
        assert_eq!(encoded(" f"), "=?base64?IGY=?=");
        assert_eq!(encoded("us-west1 "), "=?base64?dXMtd2VzdDEg?=");
        assert_eq!(encoded("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(encoded("=?x?="), "=?base64?PT94Pz0=?=");
        assert_eq!(encoded("a\tb"), "=?base64?YQli?=");
        assert_eq!(encoded("line1\r\nline2"), "=?base64?bGluZTENCmxpbmUy?=");
    }

    #[test]
    fn every_value_round_trips() {
        for value in [
            "",
            "a",
            " a ",
            "Hello, 世界",
            "=?base64?SGVsbG8=?=",
            "\u{1}",
            "x?=",
        ] {
            let mut header = Vec::new();
            write_value(&mut header, value.as_bytes());
            assert!(value_is_valid(&header), "{value:?}");
            let mut scratch = Vec::new();
            assert_eq!(
                decode_value(&header, &mut scratch),
                Some(value.as_bytes()),
                "{value:?}"
            );
        }
    }

    #[test]
    fn decoding_is_strict_inside_the_sentinel_and_literal_outside() {
        let mut scratch = Vec::new();
        for bad in [
            "=?base64?SGVsbG8?=",
            "=?base64?SGVs!!!bG8=?=",
            "=?base64?ZWNobx==?=",
        ] {
            assert_eq!(decode_value(bad.as_bytes(), &mut scratch), None, "{bad}");
        }
        for literal in ["SGVsbG8=", "=?base64?SGVsbG8=", "=?base64SGVsbG8=?="] {
            assert_eq!(
                decode_value(literal.as_bytes(), &mut scratch),
                Some(literal.as_bytes())
            );
        }
        assert_eq!(
            decode_value(b"=?base64?SGVsbG8=?=", &mut scratch),
            Some(b"Hello".as_slice())
        );
    }

    #[test]
    fn base64_inside_the_sentinel_is_canonical_or_refused() {
        let mut out = Vec::new();
        for (text, bytes) in [
            ("", &b""[..]),
            ("ZQ==", b"e"),
            ("ZWM=", b"ec"),
            ("ZWNo", b"ech"),
            ("ZWNobw==", b"echo"),
            ("w6k=", "é".as_bytes()),
        ] {
            let header = format!("=?base64?{text}?=");
            assert_eq!(
                decode_value(header.as_bytes(), &mut out),
                Some(bytes),
                "{text}"
            );
        }
        for bad in [
            "Z", "ZQ=", "ZR==", "ZWN=", "Z===", "ZQ==ZQ==", "ZW-o", "ZW o", "=ZWN",
        ] {
            let header = format!("=?base64?{bad}?=");
            assert_eq!(decode_value(header.as_bytes(), &mut out), None, "{bad}");
        }
    }

    #[test]
    fn declarations_are_read_and_invalid_ones_refused() {
        let schema = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "priority":{"type":"integer","x-mcp-header":"Priority"},
            "query":{"type":"string"}}});
        let found = declarations(&schema).unwrap();
        assert_eq!(
            found,
            vec![
                ParamHeader::fixed("priority", "Priority", ParamKind::Integer),
                ParamHeader::fixed("region", "Region", ParamKind::String),
            ]
        );
        for (name, property) in [
            ("empty", json!({"type":"string","x-mcp-header":""})),
            ("object", json!({"type":"object","x-mcp-header":"Data"})),
            ("array", json!({"type":"array","x-mcp-header":"Items"})),
            ("null", json!({"type":"null","x-mcp-header":"Nil"})),
            ("number", json!({"type":"number","x-mcp-header":"Score"})),
            ("space", json!({"type":"string","x-mcp-header":"My Region"})),
            (
                "colon",
                json!({"type":"string","x-mcp-header":"Region:Primary"}),
            ),
            (
                "non-ascii",
                json!({"type":"string","x-mcp-header":"Région"}),
            ),
            (
                "control",
                json!({"type":"string","x-mcp-header":"Region\t1"}),
            ),
        ] {
            let schema = json!({"properties":{"v": property}});
            assert!(declarations(&schema).is_err(), "{name}");
        }
        let twice = json!({"properties":{
            "a":{"type":"string","x-mcp-header":"MyField"},
            "b":{"type":"string","x-mcp-header":"myfield"}}});
        assert!(declarations(&twice).is_err());
        assert_eq!(declarations(&json!({"type":"object"})).unwrap(), vec![]);
    }

    const DECLARED: [ParamHeader; 3] = [
        ParamHeader::fixed("region", "Region", ParamKind::String),
        ParamHeader::fixed("priority", "Priority", ParamKind::Integer),
        ParamHeader::fixed("verbose", "Verbose", ParamKind::Boolean),
    ];

    fn mirrored(arguments: &str) -> String {
        let mut out = Vec::new();
        write_param_headers(&mut out, &DECLARED, arguments.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn arguments_are_mirrored_null_and_absent_ones_omitted() {
        assert_eq!(
            mirrored(r#"{"region":"us-west1","priority":42,"verbose":false,"query":"x"}"#),
            "Mcp-Param-Region: us-west1\r\nMcp-Param-Priority: 42\r\nMcp-Param-Verbose: false\r\n"
        );
        assert_eq!(
            mirrored(r#"{"region":"Hello, \u4e16\u754c","verbose":null}"#),
            "Mcp-Param-Region: =?base64?SGVsbG8sIOS4lueVjA==?=\r\n"
        );
        assert_eq!(mirrored(r#"{"region":{"a":1}}"#), "");
        assert_eq!(mirrored("{}"), "");
    }

    fn fields<'a>(list: &[(&'a str, &'a str)]) -> ParamFields<'a> {
        let mut fields = ParamFields::default();
        for (name, value) in list {
            fields.push(name.as_bytes(), value.as_bytes());
        }
        fields
    }

    fn check(arguments: &str, list: &[(&str, &str)]) -> Result<(), ParamMismatch> {
        check_param_headers(
            &DECLARED,
            Some(arguments.as_bytes()),
            &fields(list),
            &mut Vec::new(),
        )
    }

    #[test]
    fn the_server_accepts_what_matches_and_names_what_does_not() {
        let args = r#"{"region":"Hello","priority":7}"#;
        assert!(check(args, &[("Region", "Hello"), ("Priority", "7")]).is_ok());
        assert!(
            check(
                args,
                &[("region", "=?base64?SGVsbG8=?="), ("PRIORITY", "07")]
            )
            .is_ok()
        );
        let err = check(args, &[("Priority", "7")]).unwrap_err();
        assert_eq!(err.header, "Region");
        assert!(err.to_string().contains("Mcp-Param-Region"));
        for bad in [
            vec![("Region", "=?base64?SGVsbG8?="), ("Priority", "7")],
            vec![("Region", "=?base64?SGVs!!!bG8=?="), ("Priority", "7")],
            vec![("Region", "hello"), ("Priority", "7")],
            vec![("Region", "Hello"), ("Priority", "8")],
            vec![("Region", "Hello"), ("Priority", "seven")],
            vec![("Region", "Hello"), ("Region", "Hello"), ("Priority", "7")],
            vec![("Region", "Hello"), ("Priority", "7"), ("Verbose", "true")],
        ] {
            assert!(check(args, &bad).is_err(), "{bad:?}");
        }
        assert!(check(r#"{"verbose":true}"#, &[("Verbose", "true")]).is_ok());
        assert!(check(r#"{"verbose":true}"#, &[("Verbose", "True")]).is_err());
        assert!(check(r#"{"verbose":null}"#, &[]).is_ok());
        // What the client writes, the server accepts, for every kind of value.
        for args in [
            r#"{"region":" padded ","priority":-3,"verbose":true}"#,
            r#"{"region":"line1\r\nline2"}"#,
            r#"{"region":"=?base64?eA==?="}"#,
        ] {
            let mut head = Vec::new();
            write_param_headers(&mut head, &DECLARED, args.as_bytes());
            let text = String::from_utf8(head).unwrap();
            let list: Vec<(&str, &str)> = text
                .split("\r\n")
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (name, value) = l.split_once(": ").unwrap();
                    (name.strip_prefix(PARAM_PREFIX).unwrap(), value)
                })
                .collect();
            assert!(check(args, &list).is_ok(), "{args}");
        }
    }

    #[test]
    fn more_fields_than_kept_are_noted() {
        let mut many = ParamFields::default();
        for _ in 0..PARAM_FIELDS_MAX + 1 {
            many.push(b"X", b"1");
        }
        assert!(many.overflowed);
        assert_eq!(many.iter().count(), PARAM_FIELDS_MAX);
        assert!(check_param_headers(&DECLARED, Some(b"{}"), &many, &mut Vec::new()).is_err());
    }
}
