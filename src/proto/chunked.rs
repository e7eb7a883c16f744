//! Chunked transfer coding (RFC 9112 §7.1), both directions: an incremental decoder for the
//! response bodies the client engine receives, and the writers the embedded server frames its
//! SSE streams with.
//!
//! Layer: `proto/`, between the response head (`http_response`, which says a body is chunked)
//! and the body consumers (`sse`, `json`). The engine feeds [`ChunkedDecoder`] whatever slice
//! the socket produced — a chunk boundary may fall on any byte — and gets chunk data back as
//! slices of that same input.
//!
//! Must not: touch sockets or clocks, allocate, or own a buffer. The decoder lives in every
//! connection slot (100,000 of them within a 256-byte budget each), so it is a 16-byte `Copy`
//! value that remembers only where in the grammar it stopped and one number.

use std::fmt;

use super::http_response::write_u64_hex;

/// Largest chunk size accepted. No MCP message comes near it; the bound keeps the size
/// arithmetic far from overflow (2^40 × 16 + 15 fits a u64 easily) and refuses a peer that
/// announces an absurd size before we wait for it.
pub const CHUNK_SIZE_MAX_BYTES: u64 = 1 << 40;

/// Largest trailer section accepted. Trailers are skipped, never stored, so this bounds the
/// time spent on a peer that keeps sending them rather than memory.
pub const TRAILER_SECTION_MAX_BYTES: u64 = 16 * 1024;

/// Why a chunked body was refused: a peer's bad bytes, counted and closed on, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk-size line that does not start with a hex digit, or has junk after the digits.
    BadSize,
    /// A chunk size over [`CHUNK_SIZE_MAX_BYTES`].
    SizeTooLarge,
    /// A CR not followed by LF, or chunk data not followed by a line end.
    BadLineEnd,
    /// A trailer line without a `name:`, one starting with whitespace (obsolete folding), or
    /// a trailer section over [`TRAILER_SECTION_MAX_BYTES`].
    BadTrailer,
}

impl ChunkedError {
    /// Stable snake_case name, used as a counter name in reports. Prefixed `chunk_` because
    /// `bad_size` alone would not say what was badly sized.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkedError::BadSize => "chunk_bad_size",
            ChunkedError::SizeTooLarge => "chunk_size_too_large",
            ChunkedError::BadLineEnd => "chunk_bad_line_end",
            ChunkedError::BadTrailer => "chunk_bad_trailer",
        }
    }
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ChunkedError {}

/// What one [`ChunkedDecoder::decode`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkedProgress {
    /// Input bytes used. Less than the input only when `done`: the rest belongs to whatever
    /// follows the body on the connection (a pipelined response).
    pub consumed: usize,
    /// The last chunk and the trailer section have been read.
    pub done: bool,
}

/// Where in the chunked grammar the decoder stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Expecting the first hex digit of a chunk size.
    #[default]
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// After the digits: whitespace before an extension or the line end.
    SizeTail,
    /// Inside chunk extensions, which are skipped.
    SizeExtension,
    /// A CR ended the size line; its LF is due.
    SizeLf,
    /// Chunk data; `phase_bytes` of it still to come.
    Data,
    /// Chunk data ended; its CR or LF is due.
    DataCr,
    /// The CR after chunk data arrived; its LF is due.
    DataLf,
    /// Start of a trailer field line, or of the empty line that ends the body.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value, which is skipped.
    TrailerValue,
    /// A CR ended a trailer field line; its LF is due.
    TrailerLf,
    /// A CR started the final empty line; its LF ends the body.
    LastLf,
    /// The body is complete.
    Done,
    /// A peer error; every later call reports it again.
    Failed(ChunkedError),
}

impl Phase {
    fn in_trailer(self) -> bool {
        matches!(
            self,
            Phase::TrailerStart
                | Phase::TrailerName
                | Phase::TrailerValue
                | Phase::TrailerLf
                | Phase::LastLf
        )
    }
}

/// Incremental chunked-body decoder; 16 bytes, `Copy`, fed any split of the body.
///
/// Lenient where real servers differ and harmless: bare LF line ends, whitespace after the
/// size, uppercase hex, leading zeros. Strict where leniency would let a peer desynchronise
/// the connection: a CR must be followed by LF, data must be followed by a line end.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkedDecoder {
    /// In `Size*` phases the size read so far; in `Data` the data bytes still due; in trailer
    /// phases the trailer bytes seen. One field serves all three because they never overlap.
    phase_bytes: u64,
    phase: Phase,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `input`, handing each run of chunk data to `out` as a slice of `input` (never
    /// an empty one). Stops right after the body's final empty line; see
    /// [`ChunkedProgress::consumed`]. After `done`, further calls consume nothing.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> Result<ChunkedProgress, ChunkedError> {
        let mut consumed = 0;
        loop {
            match self.phase {
                Phase::Failed(error) => return Err(error),
                Phase::Done => {
                    return Ok(ChunkedProgress {
                        consumed,
                        done: true,
                    });
                }
                _ => {}
            }
            let rest = &input[consumed..];
            let Some(&byte) = rest.first() else {
                return Ok(ChunkedProgress {
                    consumed,
                    done: false,
                });
            };
            if self.phase == Phase::Data {
                let take =
                    usize::try_from(self.phase_bytes).map_or(rest.len(), |due| due.min(rest.len()));
                out(&rest[..take]);
                consumed += take;
                self.phase_bytes -= take as u64;
                if self.phase_bytes == 0 {
                    self.phase = Phase::DataCr;
                }
                continue;
            }
            consumed += 1;
            match self.step(byte) {
                Ok(next) => self.phase = next,
                Err(error) => {
                    self.phase = Phase::Failed(error);
                    return Err(error);
                }
            }
        }
    }

    /// The whole body has been read.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// One byte of framing (anything but chunk data) → the next phase.
    fn step(&mut self, byte: u8) -> Result<Phase, ChunkedError> {
        use ChunkedError::{BadLineEnd, BadSize, BadTrailer, SizeTooLarge};
        if self.phase.in_trailer() {
            self.phase_bytes += 1;
            if self.phase_bytes > TRAILER_SECTION_MAX_BYTES {
                return Err(BadTrailer);
            }
        }
        let next = match self.phase {
            Phase::SizeStart => {
                self.phase_bytes = hex_value(byte).ok_or(BadSize)?;
                Phase::Size
            }
            Phase::Size => match hex_value(byte) {
                Some(digit) => {
                    // phase_bytes ≤ CHUNK_SIZE_MAX_BYTES before this digit, so no overflow.
                    self.phase_bytes = self.phase_bytes * 16 + digit;
                    if self.phase_bytes > CHUNK_SIZE_MAX_BYTES {
                        return Err(SizeTooLarge);
                    }
                    Phase::Size
                }
                None => self.after_size_digits(byte)?,
            },
            Phase::SizeTail => self.after_size_digits(byte)?,
            Phase::SizeExtension => match byte {
                b'\r' => Phase::SizeLf,
                b'\n' => self.size_line_done(),
                _ => Phase::SizeExtension,
            },
            Phase::SizeLf => match byte {
                b'\n' => self.size_line_done(),
                _ => return Err(BadLineEnd),
            },
            Phase::DataCr => match byte {
                b'\r' => Phase::DataLf,
                b'\n' => Phase::SizeStart,
                _ => return Err(BadLineEnd),
            },
            Phase::DataLf => match byte {
                b'\n' => Phase::SizeStart,
                _ => return Err(BadLineEnd),
            },
            Phase::TrailerStart => match byte {
                b'\r' => Phase::LastLf,
                b'\n' => Phase::Done,
                b' ' | b'\t' | b':' => return Err(BadTrailer),
                _ => Phase::TrailerName,
            },
            Phase::TrailerName => match byte {
                b':' => Phase::TrailerValue,
                b'\r' | b'\n' | b' ' | b'\t' => return Err(BadTrailer),
                _ => Phase::TrailerName,
            },
            Phase::TrailerValue => match byte {
                b'\r' => Phase::TrailerLf,
                b'\n' => Phase::TrailerStart,
                _ => Phase::TrailerValue,
            },
            Phase::TrailerLf => match byte {
                b'\n' => Phase::TrailerStart,
                _ => return Err(BadLineEnd),
            },
            Phase::LastLf => match byte {
                b'\n' => Phase::Done,
                _ => return Err(BadLineEnd),
            },
            // `decode` handles these without calling `step`; listed so the match stays total
            // without a panic path.
            Phase::Data | Phase::Done | Phase::Failed(_) => self.phase,
        };
        Ok(next)
    }

    /// A byte after at least one size digit that is not itself a digit.
    fn after_size_digits(&mut self, byte: u8) -> Result<Phase, ChunkedError> {
        Ok(match byte {
            b' ' | b'\t' => Phase::SizeTail,
            b';' => Phase::SizeExtension,
            b'\r' => Phase::SizeLf,
            b'\n' => self.size_line_done(),
            _ => return Err(ChunkedError::BadSize),
        })
    }

    fn size_line_done(&mut self) -> Phase {
        if self.phase_bytes == 0 {
            // The last chunk: phase_bytes now counts trailer bytes, starting from zero.
            Phase::TrailerStart
        } else {
            Phase::Data
        }
    }
}

fn hex_value(byte: u8) -> Option<u64> {
    let value = match byte {
        b'0'..=b'9' => byte - b'0',
        b'a'..=b'f' => byte - b'a' + 10,
        b'A'..=b'F' => byte - b'A' + 10,
        _ => return None,
    };
    Some(u64::from(value))
}

/// Appends one chunk: `<hex size>\r\n<data>\r\n`. Empty `data` writes nothing, because an
/// empty chunk is the last chunk and would end the body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.reserve(data.len() + 20);
    write_u64_hex(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and an empty trailer section: `0\r\n\r\n`.
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}
