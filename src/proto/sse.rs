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
