//! Server-Sent Events (WHATWG HTML §9.2 "Parsing an event stream"), both directions: an
//! incremental parser for the `text/event-stream` bodies MCP servers reply with, and the
//! writers the embedded server produces them with.
//!
//! Layer: `proto/`, above the body framing (`chunked`, or a `Content-Length` body) and below
//! the JSON-RPC scanner (`json`), which reads the data of each dispatched event.
//!
//! Must not: touch sockets or clocks, allocate, or buffer a line. The parser lives in every
//! connection slot (100,000 of them within a 256-byte budget each), so it is a 16-byte `Copy`
//! value: it hands out the pieces of each field value as slices of the caller's input as they
//! arrive, and the caller appends what it keeps (usually only the data) to a pooled spill
//! buffer. A line, a line end (CR LF), a field name or the byte order mark may be split across
//! feeds at any byte; the items come out the same whatever the split, except that a value may
//! arrive in more fragments.

/// U+FEFF encoded as UTF-8; one may open the stream and is ignored.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// The fields the spec gives meaning to, with the bit each has in `name_candidates`.
const FIELD_NAMES: [(&[u8], Field); 4] = [
    (b"data", Field::Data),
    (b"event", Field::Event),
    (b"id", Field::Id),
    (b"retry", Field::Retry),
];
const ALL_CANDIDATES: u8 = 0b1111;

/// One thing the parser found. Fragments borrow from the slice passed to [`SseParser::feed`];
/// the separator fragment `b"\n"` borrows from a constant.
///
/// The caller mirrors the spec's buffers: append `DataFragment`s to the data buffer; on an
/// `EventType` with `first`, clear the event type buffer, then append; on an `Id` with
/// `first`, clear a candidate id, append, and make it the last event id on `IdEnd { valid:
/// true }`; on `Dispatch`, deliver the event if `has_data`, then clear data and event type
/// (the last event id persists). An empty event type means `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseItem<'a> {
    /// Bytes of the current event's data, never empty. The parser emits the `b"\n"` that
    /// joins two `data:` lines itself and no trailing one, so the concatenation is exactly
    /// the event's data as the spec defines it.
    DataFragment(&'a [u8]),
    /// Part of an `event:` line's value. `first` marks the start of a value, which replaces
    /// any earlier type in this event; an empty value is reported as one empty `first`
    /// fragment.
    EventType { fragment: &'a [u8], first: bool },
    /// Part of an `id:` line's value, reported like `EventType`.
    Id { fragment: &'a [u8], first: bool },
    /// End of an `id:` line. `valid` is false when the value held a NUL, which the spec says
    /// makes the whole field ignored: keep the previous last event id.
    IdEnd { valid: bool },
    /// A `retry:` line whose value was all ASCII digits (saturating at `u64::MAX`).
    Retry { delay_ms: u64 },
    /// A comment line (`: keep-alive`). Its text is skipped.
    Comment,
    /// A blank line: the end of an event. `has_data` is true when the event had at least one
    /// `data` field, which is exactly when a browser fires it. `data_empty` is true when no
    /// data bytes were emitted for it: rmcp's priming event `id: 0\nretry: 3000\ndata:\n\n`
    /// dispatches with `has_data && data_empty`, which the caller counts rather than handing
    /// to the JSON scanner. Every blank line yields one `Dispatch`, even with no fields
    /// before it (`has_data` false, nothing to deliver).
    Dispatch { has_data: bool, data_empty: bool },
}

/// Where in a line the parser stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Stream start: no byte of a byte order mark seen yet.
    #[default]
    Bom0,
    /// The first byte of a byte order mark seen.
    Bom1,
    /// The first two bytes of a byte order mark seen.
    Bom2,
    /// Start of a line.
    LineStart,
    /// Inside a field name.
    Name,
    /// Just after the colon: one space here is dropped.
    ValueStart,
    /// Inside a field value.
    Value,
    /// Inside a comment line.
    Comment,
}

/// The field a line sets, known once its name has ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Field {
    /// A name the spec ignores (or none yet).
    #[default]
    Unknown,
    Data,
    Event,
    Id,
    Retry,
}

/// Bits of `SseParser::flags`.
mod flag {
    /// The last line ended in CR: an LF arriving next (in this feed or the next) belongs to
    /// that line end and must not be read as a blank line.
    pub const AFTER_CR: u8 = 1 << 0;
    /// The current event has had a `data` field.
    pub const HAS_DATA: u8 = 1 << 1;
    /// Some data byte (a separator included) has been emitted for the current event.
    pub const DATA_NONEMPTY: u8 = 1 << 2;
    /// The current line's value has had at least one byte.
    pub const VALUE_NONEMPTY: u8 = 1 << 3;
    /// The current line's value disqualifies the field: a NUL in an id, a non-digit in retry.
    pub const VALUE_INVALID: u8 = 1 << 4;
}

/// Incremental SSE parser; 16 bytes, `Copy`, fed the decoded body in any split.
///
/// Bytes are not checked to be UTF-8: data goes to the JSON scanner, which rejects what it
/// must, and field names only match when they are the ASCII names.
#[derive(Clone, Copy, Debug, Default)]
pub struct SseParser {
    /// Value of the `retry:` line being read.
    retry_ms: u64,
    phase: Phase,
    /// The field of the line being read, set when its name ends.
    field: Field,
    /// Bytes of the field name read so far (saturating: no known name is that long).
    name_len: u8,
    /// Bit i set while the name read so far is a prefix of `FIELD_NAMES[i]`.
    name_candidates: u8,
    flags: u8,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `input`, the next bytes of the stream, reporting each item to `out` in stream
    /// order. Never fails: the spec gives every byte sequence a meaning.
    pub fn feed(&mut self, input: &[u8], out: &mut impl FnMut(SseItem<'_>)) {
        let mut pos = 0;
        while let Some(&byte) = input.get(pos) {
            if self.flags & flag::AFTER_CR != 0 {
                self.flags &= !flag::AFTER_CR;
                if byte == b'\n' {
                    pos += 1;
                    continue;
                }
            }
            match self.phase {
                Phase::Bom0 | Phase::Bom1 | Phase::Bom2 => {
                    let matched = match self.phase {
                        Phase::Bom0 => 0,
                        Phase::Bom1 => 1,
                        _ => 2,
                    };
                    if byte == BOM[matched] {
                        pos += 1;
                        self.phase = match matched {
                            0 => Phase::Bom1,
                            1 => Phase::Bom2,
                            _ => Phase::LineStart,
                        };
                    } else {
                        self.phase = Phase::LineStart;
                        // Not a byte order mark after all: the bytes taken for one start the
                        // first line. Replay them from the constant, since the input that
                        // carried them may be gone. Depth one: the phase is now LineStart.
                        self.feed(&BOM[..matched], out);
                    }
                }
                Phase::LineStart => match byte {
                    b'\r' | b'\n' => {
                        pos += 1;
                        self.end_line(byte, out);
                    }
                    b':' => {
                        pos += 1;
                        self.phase = Phase::Comment;
                        out(SseItem::Comment);
                    }
                    _ => {
                        self.phase = Phase::Name;
                        self.name_len = 0;
                        self.name_candidates = ALL_CANDIDATES;
                    }
                },
                Phase::Name => {
                    pos += 1;
                    match byte {
                        b':' => {
                            self.begin_value(out);
                            self.phase = Phase::ValueStart;
                        }
                        b'\r' | b'\n' => {
                            // A name without a colon: the whole line is the name, the value
                            // is empty.
                            self.begin_value(out);
                            self.end_line(byte, out);
                        }
                        _ => self.match_name_byte(byte),
                    }
                }
                Phase::ValueStart => {
                    if byte == b' ' {
                        pos += 1;
                    }
                    self.phase = Phase::Value;
                }
                Phase::Value | Phase::Comment => {
                    let rest = &input[pos..];
                    let line_end = rest.iter().position(|&b| b == b'\r' || b == b'\n');
                    let text = &rest[..line_end.unwrap_or(rest.len())];
                    if self.phase == Phase::Value {
                        self.value_fragment(text, out);
                    }
                    pos += text.len();
                    if let Some(&end_byte) = input.get(pos) {
                        pos += 1;
                        self.end_line(end_byte, out);
                    }
                }
            }
        }
    }

    /// True between events: no partial line and no data field since the last blank line.
    /// A stream that ends when this is false ended inside an event, which the spec discards;
    /// the caller counts it as truncated.
    pub fn is_between_events(&self) -> bool {
        matches!(self.phase, Phase::Bom0 | Phase::LineStart) && self.flags & flag::HAS_DATA == 0
    }

    fn match_name_byte(&mut self, byte: u8) {
        let position = usize::from(self.name_len);
        for (bit, (name, _)) in FIELD_NAMES.iter().enumerate() {
            if name.get(position) != Some(&byte) {
                self.name_candidates &= !(1 << bit);
            }
        }
        self.name_len = self.name_len.saturating_add(1);
    }

    /// The field name has ended: settle which field this line sets and start its value.
    fn begin_value(&mut self, out: &mut impl FnMut(SseItem<'_>)) {
        self.field = FIELD_NAMES
            .iter()
            .enumerate()
            .find(|(bit, (name, _))| {
                self.name_candidates & (1 << bit) != 0 && name.len() == usize::from(self.name_len)
            })
            .map_or(Field::Unknown, |(_, &(_, field))| field);
        self.flags &= !(flag::VALUE_NONEMPTY | flag::VALUE_INVALID);
        self.retry_ms = 0;
        if self.field == Field::Data {
            // The spec appends LF after every data line and strips the last one at dispatch;
            // emitting it before every data line but the first gives the same bytes without
            // having to take anything back.
            if self.flags & flag::HAS_DATA != 0 {
                out(SseItem::DataFragment(b"\n"));
                self.flags |= flag::DATA_NONEMPTY;
            }
            self.flags |= flag::HAS_DATA;
        }
    }

    fn value_fragment(&mut self, fragment: &[u8], out: &mut impl FnMut(SseItem<'_>)) {
        if fragment.is_empty() {
            return;
        }
        let first = self.flags & flag::VALUE_NONEMPTY == 0;
        self.flags |= flag::VALUE_NONEMPTY;
        match self.field {
            Field::Data => {
                self.flags |= flag::DATA_NONEMPTY;
                out(SseItem::DataFragment(fragment));
            }
            Field::Event => out(SseItem::EventType { fragment, first }),
            Field::Id => {
                if fragment.contains(&0) {
                    self.flags |= flag::VALUE_INVALID;
                }
                out(SseItem::Id { fragment, first });
            }
            Field::Retry => {
                if self.flags & flag::VALUE_INVALID != 0 {
                    return;
                }
                for &byte in fragment {
                    if !byte.is_ascii_digit() {
                        self.flags |= flag::VALUE_INVALID;
                        return;
                    }
                    self.retry_ms = self
                        .retry_ms
                        .saturating_mul(10)
                        .saturating_add(u64::from(byte - b'0'));
                }
            }
            Field::Unknown => {}
        }
    }

    /// A CR or LF ended the current line.
    fn end_line(&mut self, end_byte: u8, out: &mut impl FnMut(SseItem<'_>)) {
        if end_byte == b'\r' {
            self.flags |= flag::AFTER_CR;
        }
        match self.phase {
            Phase::LineStart => {
                out(SseItem::Dispatch {
                    has_data: self.flags & flag::HAS_DATA != 0,
                    data_empty: self.flags & flag::DATA_NONEMPTY == 0,
                });
                self.flags &= !(flag::HAS_DATA | flag::DATA_NONEMPTY);
            }
            Phase::Name | Phase::ValueStart | Phase::Value => self.end_field(out),
            Phase::Bom0 | Phase::Bom1 | Phase::Bom2 | Phase::Comment => {}
        }
        self.phase = Phase::LineStart;
    }

    fn end_field(&mut self, out: &mut impl FnMut(SseItem<'_>)) {
        let value_empty = self.flags & flag::VALUE_NONEMPTY == 0;
        let value_valid = self.flags & flag::VALUE_INVALID == 0;
        match self.field {
            Field::Event if value_empty => out(SseItem::EventType {
                fragment: b"",
                first: true,
            }),
            Field::Id => {
                if value_empty {
                    out(SseItem::Id {
                        fragment: b"",
                        first: true,
                    });
                }
                out(SseItem::IdEnd { valid: value_valid });
            }
            // The spec ignores an empty retry value too: it is not "only ASCII digits" in any
            // browser.
            Field::Retry if !value_empty && value_valid => out(SseItem::Retry {
                delay_ms: self.retry_ms,
            }),
            _ => {}
        }
    }
}

/// Appends one event: `event:` and `id:` lines when given, one `data:` line per line of
/// `data`, and the blank line that dispatches it. SSE cannot carry a CR in data (every CR is
/// a line end), so CR LF and a lone CR in `data` become line breaks too: the receiver sees LF
/// there. Empty `data` still writes `data:` so the event is dispatched.
///
/// # Panics
/// If `event` or `id` holds a CR or LF (or `id` a NUL): they come from the server's own code,
/// never from a peer, and would inject fields.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, id: Option<&str>, data: &[u8]) {
    let breaks_line = |text: &str| text.bytes().any(|b| b == b'\r' || b == b'\n');
    out.reserve(data.len() + 32);
    if let Some(event) = event {
        assert!(
            !breaks_line(event),
            "SSE event type {event:?} holds a line end"
        );
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    if let Some(id) = id {
        assert!(
            !breaks_line(id) && !id.contains('\0'),
            "SSE id {id:?} holds a line end or NUL"
        );
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    write_prefixed_lines(out, b"data:", data);
    out.push(b'\n');
}

/// Appends a comment (`: text`), one comment line per line of `text`. Comments dispatch
/// nothing; servers send them to keep idle streams alive.
pub fn write_comment(out: &mut Vec<u8>, text: &str) {
    write_prefixed_lines(out, b":", text.as_bytes());
}

/// `prefix text\n` for each line of `text` (split at CR LF, LF or CR); the space after the
/// prefix is written only before non-empty text, and it keeps a leading space of the text
/// intact, since a parser strips exactly one.
fn write_prefixed_lines(out: &mut Vec<u8>, prefix: &[u8], text: &[u8]) {
    let mut rest = text;
    loop {
        let line_end = rest.iter().position(|&b| b == b'\r' || b == b'\n');
        let line = &rest[..line_end.unwrap_or(rest.len())];
        out.extend_from_slice(prefix);
        if !line.is_empty() {
            out.push(b' ');
            out.extend_from_slice(line);
        }
        out.push(b'\n');
        let Some(end) = line_end else { break };
        let break_len = if rest[end..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + break_len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An item with its bytes copied, fragments of one value merged: what must not depend on
    /// how the stream was split.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Data(Vec<u8>),
        EventType(Vec<u8>),
        Id(Vec<u8>),
        IdEnd(bool),
        Retry(u64),
        Comment,
        Dispatch { has_data: bool, data_empty: bool },
    }

    fn parse_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<Owned> {
        let mut parser = SseParser::new();
        let mut items: Vec<Owned> = Vec::new();
        for part in parts {
            parser.feed(part, &mut |item| {
                let last = items.last_mut();
                match (item, last) {
                    (SseItem::DataFragment(bytes), Some(Owned::Data(merged))) => {
                        assert!(!bytes.is_empty(), "empty data fragment");
                        merged.extend_from_slice(bytes);
                    }
                    (SseItem::DataFragment(bytes), _) => {
                        assert!(!bytes.is_empty(), "empty data fragment");
                        items.push(Owned::Data(bytes.to_vec()));
                    }
                    (
                        SseItem::EventType {
                            fragment,
                            first: false,
                        },
                        Some(Owned::EventType(merged)),
                    )
                    | (
                        SseItem::Id {
                            fragment,
                            first: false,
                        },
                        Some(Owned::Id(merged)),
                    ) => {
                        assert!(!fragment.is_empty(), "empty continuation fragment");
                        merged.extend_from_slice(fragment);
                    }
                    (SseItem::EventType { fragment, first }, _) => {
                        assert!(first, "continuation without a start");
                        items.push(Owned::EventType(fragment.to_vec()));
                    }
                    (SseItem::Id { fragment, first }, _) => {
                        assert!(first, "continuation without a start");
                        items.push(Owned::Id(fragment.to_vec()));
                    }
                    (SseItem::IdEnd { valid }, _) => items.push(Owned::IdEnd(valid)),
                    (SseItem::Retry { delay_ms }, _) => items.push(Owned::Retry(delay_ms)),
                    (SseItem::Comment, _) => items.push(Owned::Comment),
                    (
                        SseItem::Dispatch {
                            has_data,
                            data_empty,
                        },
                        _,
                    ) => items.push(Owned::Dispatch {
                        has_data,
                        data_empty,
                    }),
                }
            });
        }
        items
    }

    /// Parses `stream` whole, split in two at every position, and a byte at a time; all must
    /// yield the same items. Returns them.
    fn parse_every_split(stream: &[u8]) -> Vec<Owned> {
        let whole = parse_parts([stream]);
        for split in 0..=stream.len() {
            let (head, tail) = stream.split_at(split);
            assert_eq!(parse_parts([head, tail]), whole, "split at {split}");
        }
        assert_eq!(parse_parts(stream.chunks(1)), whole, "byte by byte");
        whole
    }

    /// What a browser's EventSource would see.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Seen {
        /// (type, data, last event id) of each fired event.
        events: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
        /// Fired events with empty data (rmcp priming).
        empty_data_events: usize,
        /// Blank lines that fired nothing.
        no_data_dispatches: usize,
        comments: usize,
        retry_ms: Option<u64>,
    }

    fn browser_view(items: &[Owned]) -> Seen {
        let mut seen = Seen::default();
        let (mut data, mut event_type, mut last_id) = (Vec::new(), Vec::new(), Vec::new());
        let mut id_candidate = Vec::new();
        for item in items {
            match item {
                Owned::Data(bytes) => data.extend_from_slice(bytes),
                Owned::EventType(bytes) => event_type = bytes.clone(),
                Owned::Id(bytes) => id_candidate = bytes.clone(),
                Owned::IdEnd(true) => last_id = id_candidate.clone(),
                Owned::IdEnd(false) => {}
                Owned::Retry(delay_ms) => seen.retry_ms = Some(*delay_ms),
                Owned::Comment => seen.comments += 1,
                Owned::Dispatch {
                    has_data,
                    data_empty,
                } => {
                    assert_eq!(*data_empty, data.is_empty());
                    if *has_data {
                        if data.is_empty() {
                            seen.empty_data_events += 1;
                        }
                        let kind = if event_type.is_empty() {
                            b"message".to_vec()
                        } else {
                            event_type.clone()
                        };
                        seen.events.push((kind, data.clone(), last_id.clone()));
                    } else {
                        assert!(data.is_empty());
                        seen.no_data_dispatches += 1;
                    }
                    data.clear();
                    event_type.clear();
                }
            }
        }
        seen
    }

    fn seen(stream: &[u8]) -> Seen {
        browser_view(&parse_every_split(stream))
    }

    fn message(data: &[u8], id: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (b"message".to_vec(), data.to_vec(), id.to_vec())
    }

    const JSON: &[u8] = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"a: b"}],"isError":false}}"#;

    #[test]
    fn test_parser_state_is_small() {
        assert!(std::mem::size_of::<SseParser>() <= 16);
    }

    #[test]
    fn test_python_sdk_crlf_event() {
        let stream = [&b"event: message\r\ndata: "[..], JSON, b"\r\n\r\n"].concat();
        let seen = seen(&stream);
        assert_eq!(seen.events, vec![message(JSON, b"")]);
        assert_eq!(seen.no_data_dispatches, 0);
    }

    #[test]
    fn test_rmcp_priming_then_message() {
        let stream = [&b"id: 0\nretry: 3000\ndata:\n\ndata: "[..], JSON, b"\n\n"].concat();
        let items = parse_every_split(&stream);
        assert_eq!(
            items[..5],
            [
                Owned::Id(b"0".to_vec()),
                Owned::IdEnd(true),
                Owned::Retry(3000),
                Owned::Dispatch {
                    has_data: true,
                    data_empty: true
                },
                Owned::Data(JSON.to_vec()),
            ]
        );
        let seen = browser_view(&items);
        // The spec fires the priming event (its data buffer held one LF), with empty data.
        assert_eq!(seen.events, vec![message(b"", b"0"), message(JSON, b"0")]);
        assert_eq!(seen.empty_data_events, 1);
        assert_eq!(seen.retry_ms, Some(3000));
    }

    #[test]
    fn test_typescript_sdk_lf_events() {
        let stream = [
            &b"event: message\nid: a1\ndata: "[..],
            JSON,
            b"\n\nevent: message\ndata: {}\n\n",
        ]
        .concat();
        let seen = seen(&stream);
        assert_eq!(
            seen.events,
            vec![message(JSON, b"a1"), message(b"{}", b"a1")]
        );
    }

    #[test]
    fn test_comments_multiline_data_and_cr_only_line_ends() {
        let stream = b": ping\r\rdata: a\rdata:  b\r\r: ping\r:\revent: x\rdata\r\r";
        let seen = seen(stream);
        assert_eq!(seen.comments, 3);
        assert_eq!(
            seen.events,
            vec![
                message(b"a\n b", b""),
                (b"x".to_vec(), b"".to_vec(), b"".to_vec())
            ]
        );
        // The first blank line follows only a comment: it dispatches nothing.
        assert_eq!(seen.no_data_dispatches, 1);
    }

    #[test]
    fn test_mixed_line_ends() {
        let seen = seen(b"data: 1\r\ndata: 2\rdata: 3\n\r\n\ndata:4\r\r\n");
        assert_eq!(
            seen.events,
            vec![message(b"1\n2\n3", b""), message(b"4", b"")]
        );
        assert_eq!(seen.no_data_dispatches, 1);
    }

    #[test]
    fn test_crlf_split_across_feeds_is_one_line_end() {
        let items = parse_parts([&b"data: a\r"[..], b"\n", b"\r", b"\n"]);
        assert_eq!(
            items,
            vec![
                Owned::Data(b"a".to_vec()),
                Owned::Dispatch {
                    has_data: true,
                    data_empty: false
                }
            ]
        );
    }

    #[test]
    fn test_data_line_separators_are_emitted_by_the_parser() {
        let mut raw = Vec::new();
        SseParser::new().feed(b"data: a\ndata:\ndata: b\n\n", &mut |item| {
            if let SseItem::DataFragment(bytes) = item {
                raw.push(bytes.to_vec());
            }
        });
        assert_eq!(raw, [&b"a"[..], b"\n", b"\n", b"b"]);
    }

    #[test]
    fn test_empty_data_lines_make_nonempty_data() {
        // Two empty data lines: the data is one LF, so not a priming event.
        let seen = seen(b"data\ndata:\n\n");
        assert_eq!(seen.events, vec![message(b"\n", b"")]);
        assert_eq!(seen.empty_data_events, 0);
    }

    #[test]
    fn test_field_without_colon_and_space_stripping() {
        let seen = seen(b"event\ndata:x\n\ndata:  two spaces\n\ndata: \n\n");
        assert_eq!(
            seen.events,
            vec![
                message(b"x", b""),
                message(b" two spaces", b""),
                message(b"", b"")
            ]
        );
    }

    #[test]
    fn test_last_event_type_wins_and_resets_after_dispatch() {
        let seen = seen(b"event: a\nevent: b\ndata: 1\n\ndata: 2\n\nevent: c\n\ndata: 3\n\n");
        assert_eq!(
            seen.events,
            vec![
                (b"b".to_vec(), b"1".to_vec(), vec![]),
                message(b"2", b""),
                message(b"3", b"")
            ]
        );
    }

    #[test]
    fn test_id_with_nul_is_ignored() {
        let seen = seen(b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\nid\ndata: c\n\n");
        assert_eq!(
            seen.events,
            vec![message(b"a", b"1"), message(b"b", b"1"), message(b"c", b"")]
        );
    }

    #[test]
    fn test_retry_values() {
        assert_eq!(seen(b"retry: 12a\n").retry_ms, None);
        assert_eq!(seen(b"retry:\n").retry_ms, None);
        assert_eq!(seen(b"retry\n").retry_ms, None);
        assert_eq!(seen(b"retry: -5\n").retry_ms, None);
        assert_eq!(seen(b"retry:  5\n").retry_ms, None);
        assert_eq!(seen(b"retry:5\r\n").retry_ms, Some(5));
        assert_eq!(seen(b"retry: 1\nretry: x\n").retry_ms, Some(1));
        assert_eq!(
            seen(b"retry: 99999999999999999999999\n").retry_ms,
            Some(u64::MAX)
        );
    }

    #[test]
    fn test_unknown_fields_are_ignored() {
        let seen = seen(b"foo: bar\ndat: x\ndatax: y\nDATA: z\nevents: e\nid2: 3\n\ndata: ok\n\n");
        assert_eq!(seen.events, vec![message(b"ok", b"")]);
        assert_eq!(seen.no_data_dispatches, 1);
    }

    #[test]
    fn test_byte_order_mark() {
        let with_bom = seen(b"\xEF\xBB\xBFdata: x\n\n");
        assert_eq!(with_bom.events, vec![message(b"x", b"")]);
        // A BOM only counts at the very start: later it makes the field name unknown.
        let second = seen(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n");
        assert_eq!(second.events, vec![]);
        assert_eq!(second.no_data_dispatches, 1);
        // The start of a BOM that does not finish is part of the first line.
        for broken in [
            &b"\xEF\xBBdata: x\n\ndata: y\n\n"[..],
            b"\xEFdata: x\n\ndata: y\n\n",
        ] {
            let seen = seen(broken);
            assert_eq!(seen.events, vec![message(b"y", b"")]);
        }
        let after_partial = seen(b"\xEF\n\ndata: y\n\n");
        assert_eq!(after_partial.events, vec![message(b"y", b"")]);
        assert_eq!(after_partial.no_data_dispatches, 1);
    }

    #[test]
    fn test_long_lines_are_not_buffered() {
        let mut parser = SseParser::new();
        let mut fragments = 0;
        let mut on_item = |item: SseItem<'_>| {
            if let SseItem::DataFragment(bytes) = item {
                assert_eq!(bytes.len(), 1000);
                fragments += 1;
            }
        };
        parser.feed(b"data: ", &mut on_item);
        for _ in 0..10 {
            parser.feed(&[b'x'; 1000], &mut on_item);
        }
        assert_eq!(fragments, 10);
        assert!(!parser.is_between_events());
    }

    #[test]
    fn test_is_between_events() {
        let mut parser = SseParser::new();
        let mut ignore = |_: SseItem<'_>| {};
        assert!(parser.is_between_events());
        parser.feed(b"\xEF", &mut ignore);
        assert!(!parser.is_between_events());
        parser.feed(b"\xBB\xBF: hi\n", &mut ignore);
        assert!(parser.is_between_events());
        parser.feed(b"data: x\n", &mut ignore);
        assert!(!parser.is_between_events());
        parser.feed(b"\r", &mut ignore);
        assert!(parser.is_between_events());
        parser.feed(b"\nevent: y\n", &mut ignore);
        assert!(parser.is_between_events());
        parser.feed(b"id: 1", &mut ignore);
        assert!(!parser.is_between_events());
    }

    #[test]
    fn test_write_event() {
        let mut out = Vec::new();
        write_event(&mut out, Some("message"), Some("42"), JSON);
        assert_eq!(
            out,
            [&b"event: message\nid: 42\ndata: "[..], JSON, b"\n\n"].concat()
        );

        out.clear();
        write_event(&mut out, None, None, b"");
        assert_eq!(out, b"data:\n\n");

        out.clear();
        write_event(&mut out, None, None, b"a\n b\r\nc\rd\n");
        assert_eq!(out, b"data: a\ndata:  b\ndata: c\ndata: d\ndata:\n\n");
        let seen = seen(&out);
        assert_eq!(seen.events, vec![message(b"a\n b\nc\nd\n", b"")]);
    }

    #[test]
    fn test_write_comment() {
        let mut out = Vec::new();
        write_comment(&mut out, "ping");
        write_comment(&mut out, "");
        write_comment(&mut out, "two\nlines");
        assert_eq!(out, b": ping\n:\n: two\n: lines\n");
        let seen = seen(&out);
        assert_eq!(seen.comments, 4);
        assert_eq!(seen.no_data_dispatches, 0);
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

    fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Mostly the bytes that matter to the grammar, so random streams hit every branch.
        let alphabet = b"dataevntiry: \r\n\r\n0123x\0\xEF\xBB\xBF".to_vec();
        proptest::collection::vec(
            prop_oneof![3 => prop::sample::select(alphabet), 1 => any::<u8>()],
            0..300,
        )
    }

    proptest! {
        #[test]
        fn prop_any_bytes_parse_the_same_at_any_split(
            stream in sse_bytes(),
            points in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let whole = parse_parts([&stream[..]]);
            let parts = split_at_points(&stream, &points);
            prop_assert_eq!(parse_parts(parts.iter().map(Vec::as_slice)), whole.clone());
            prop_assert_eq!(parse_parts(stream.chunks(1)), whole.clone());
            // The item stream is self-consistent (data_empty matches what was emitted).
            browser_view(&whole);
        }

        #[test]
        fn prop_random_bytes_never_panic(stream in proptest::collection::vec(any::<u8>(), 0..512)) {
            parse_parts([&stream[..]]);
        }

        #[test]
        fn prop_written_events_round_trip(
            events in proptest::collection::vec(
                (
                    proptest::option::of("[a-z]{1,8}"),
                    proptest::option::of("[ -~]{0,8}"),
                    proptest::collection::vec(
                        prop::sample::select(b"ab {}\":\n".to_vec()), 0..40),
                ),
                0..6,
            ),
            line_end in prop::sample::select(vec![&b"\n"[..], b"\r\n", b"\r"]),
            points in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut written = Vec::new();
            let mut expected = Vec::new();
            let mut last_id = Vec::new();
            for (event, id, data) in &events {
                write_comment(&mut written, "keep-alive");
                write_event(&mut written, event.as_deref(), id.as_deref(), data);
                if let Some(id) = id {
                    last_id = id.as_bytes().to_vec();
                }
                let kind = event.as_deref().unwrap_or("message").as_bytes().to_vec();
                expected.push((kind, data.clone(), last_id.clone()));
            }
            // Re-end every line the way the chosen server would.
            let mut stream = Vec::new();
            for &byte in &written {
                if byte == b'\n' {
                    stream.extend_from_slice(line_end);
                } else {
                    stream.push(byte);
                }
            }
            let parts = split_at_points(&stream, &points);
            let seen = browser_view(&parse_parts(parts.iter().map(Vec::as_slice)));
            prop_assert_eq!(seen.events, expected);
            prop_assert_eq!(seen.comments, events.len());
        }
    }
}
