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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What decoding a stream fed in some split produced.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Outcome {
        data: Vec<u8>,
        /// Input bytes used before `done`; not compared on error, where it depends on the split.
        consumed: usize,
        done: bool,
        error: Option<ChunkedError>,
    }

    fn decode_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
        let mut decoder = ChunkedDecoder::new();
        let mut outcome = Outcome::default();
        for part in parts {
            let mut sink = |data: &[u8]| {
                assert!(!data.is_empty(), "empty data slice emitted");
                outcome.data.extend_from_slice(data);
            };
            match decoder.decode(part, &mut sink) {
                Ok(progress) => {
                    outcome.consumed += progress.consumed;
                    outcome.done = progress.done;
                    assert_eq!(progress.done, decoder.is_done());
                    if progress.done {
                        break;
                    }
                    assert_eq!(progress.consumed, part.len(), "stopped early without done");
                }
                Err(error) => {
                    outcome.error = Some(error);
                    outcome.consumed = 0;
                    break;
                }
            }
        }
        outcome
    }

    /// Decodes `stream` whole, split in two at every position, and a byte at a time; all must
    /// agree. Returns the whole-feed outcome.
    fn decode_every_split(stream: &[u8]) -> Outcome {
        let whole = decode_parts([stream]);
        for split in 0..=stream.len() {
            let (head, tail) = stream.split_at(split);
            assert_eq!(decode_parts([head, tail]), whole, "split at {split}");
        }
        assert_eq!(decode_parts(stream.chunks(1)), whole, "byte by byte");
        whole
    }

    fn decoded(stream: &[u8]) -> Vec<u8> {
        let outcome = decode_every_split(stream);
        assert_eq!(outcome.error, None);
        assert!(outcome.done);
        assert_eq!(outcome.consumed, stream.len());
        outcome.data
    }

    fn error_of(stream: &[u8]) -> ChunkedError {
        let outcome = decode_every_split(stream);
        outcome.error.expect("stream should be refused")
    }

    const PYTHON_EVENT: &[u8] =
        b"event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\r\n\r\n";

    #[test]
    fn test_decoder_state_is_small() {
        assert!(std::mem::size_of::<ChunkedDecoder>() <= 16);
    }

    #[test]
    fn test_python_sdk_sse_body() {
        let mut stream = format!("{:x}\r\n", PYTHON_EVENT.len()).into_bytes();
        stream.extend_from_slice(PYTHON_EVENT);
        stream.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(decoded(&stream), PYTHON_EVENT);
    }

    #[test]
    fn test_several_chunks_uppercase_and_leading_zeros() {
        let stream = b"A\r\n0123456789\r\n1F\r\nabcdefghijklmnopqrstuvwxyz01234\r\n0005\r\nhello\r\n000\r\n\r\n";
        assert_eq!(
            decoded(stream),
            b"0123456789abcdefghijklmnopqrstuvwxyz01234hello"
        );
    }

    #[test]
    fn test_extensions_are_skipped() {
        let stream =
            b"5;name=value\r\nhello\r\n6 ; a=\"q;x\"\r\n world\r\n5\t;x\r\n!!!!!\r\n0;last\r\n\r\n";
        assert_eq!(decoded(stream), b"hello world!!!!!");
    }

    #[test]
    fn test_trailers_are_skipped() {
        let stream = b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Checksum:abc\r\nEmpty:\r\n\r\n";
        assert_eq!(decoded(stream), b"hello");
    }

    #[test]
    fn test_bare_lf_line_ends() {
        assert_eq!(decoded(b"5\nhello\n0\nX: y\n\n"), b"hello");
        assert_eq!(decoded(b"5\r\nhello\n0\n\r\n"), b"hello");
        assert_eq!(decoded(b"5 \nhello\n0\n\n"), b"hello");
    }

    #[test]
    fn test_bad_size() {
        for stream in [
            &b"\r\n"[..],
            b"g\r\n",
            b";ext\r\n",
            b" 5\r\n",
            b"5x\r\nhello\r\n",
            b"5 x\r\nhello\r\n",
            b"-1\r\n",
            b"5\r\nhello\r\nz\r\n",
        ] {
            assert_eq!(error_of(stream), ChunkedError::BadSize, "{stream:?}");
        }
    }

    #[test]
    fn test_bad_line_end() {
        for stream in [
            &b"5\rX"[..],
            b"5;ext\rX",
            b"5\r\nhelloX",
            b"5\r\nhello\rX",
            b"0\r\n\rX",
            b"0\r\nA: b\rX",
        ] {
            assert_eq!(error_of(stream), ChunkedError::BadLineEnd, "{stream:?}");
        }
    }

    #[test]
    fn test_bad_trailer() {
        for stream in [
            &b"0\r\nno-colon\r\n\r\n"[..],
            b"0\r\n folded\r\n\r\n",
            b"0\r\n: value\r\n\r\n",
            b"0\r\nName : value\r\n\r\n",
        ] {
            assert_eq!(error_of(stream), ChunkedError::BadTrailer, "{stream:?}");
        }
        let mut endless = b"0\r\n".to_vec();
        while endless.len() < 20_000 {
            endless.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let outcome = decode_parts([&endless[..]]);
        assert_eq!(outcome.error, Some(ChunkedError::BadTrailer));
    }

    #[test]
    fn test_size_too_large_without_overflow() {
        // 2^40 itself is accepted (and then waits for data); 2^40 + 1 is not.
        let outcome = decode_every_split(b"10000000000\r\nabc");
        assert_eq!(outcome.error, None);
        assert!(!outcome.done);
        assert_eq!(outcome.data, b"abc");
        assert_eq!(error_of(b"10000000001\r\n"), ChunkedError::SizeTooLarge);
        assert_eq!(
            error_of(b"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF\r\n"),
            ChunkedError::SizeTooLarge
        );
        assert_eq!(
            decoded(b"000000000000000000000000000000001\r\nx\r\n0\r\n\r\n"),
            b"x"
        );
    }

    #[test]
    fn test_error_is_sticky() {
        let mut decoder = ChunkedDecoder::new();
        let mut sink = |_: &[u8]| {};
        assert_eq!(decoder.decode(b"zz", &mut sink), Err(ChunkedError::BadSize));
        assert_eq!(decoder.decode(b"", &mut sink), Err(ChunkedError::BadSize));
        assert_eq!(
            decoder.decode(b"5\r\n", &mut sink),
            Err(ChunkedError::BadSize)
        );
        assert!(!decoder.is_done());
    }

    #[test]
    fn test_done_leaves_pipelined_bytes() {
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        let next = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
        let stream = [&body[..], next].concat();
        let outcome = decode_every_split(&stream);
        assert_eq!(outcome.data, b"hello");
        assert!(outcome.done);
        assert_eq!(outcome.consumed, body.len());

        let mut decoder = ChunkedDecoder::new();
        let progress = decoder.decode(&stream, &mut |_| {}).unwrap();
        assert_eq!(&stream[progress.consumed..], next);
        // Once done, the decoder takes nothing more.
        let again = decoder
            .decode(next, &mut |_| panic!("data after done"))
            .unwrap();
        assert_eq!(
            again,
            ChunkedProgress {
                consumed: 0,
                done: true
            }
        );
    }

    #[test]
    fn test_empty_input_before_start() {
        let mut decoder = ChunkedDecoder::new();
        let progress = decoder.decode(b"", &mut |_| {}).unwrap();
        assert_eq!(progress, ChunkedProgress::default());
    }

    #[test]
    fn test_write_chunk() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"hello");
        write_chunk(&mut out, b"");
        write_chunk(&mut out, &[b'x'; 26]);
        write_last_chunk(&mut out);
        let mut expected = b"5\r\nhello\r\n1a\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 26]);
        expected.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, expected);
        let mut body = b"hello".to_vec();
        body.extend_from_slice(&[b'x'; 26]);
        assert_eq!(decoded(&out), body);
    }

    #[test]
    fn test_error_names_are_stable() {
        assert_eq!(ChunkedError::BadSize.as_str(), "chunk_bad_size");
        assert_eq!(ChunkedError::SizeTooLarge.as_str(), "chunk_size_too_large");
        assert_eq!(ChunkedError::BadLineEnd.as_str(), "chunk_bad_line_end");
        assert_eq!(ChunkedError::BadTrailer.as_str(), "chunk_bad_trailer");
        assert_eq!(ChunkedError::BadTrailer.to_string(), "chunk_bad_trailer");
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
        fn prop_random_bytes_never_panic(
            stream in proptest::collection::vec(any::<u8>(), 0..512),
            points in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let parts = split_at_points(&stream, &points);
            let outcome = decode_parts(parts.iter().map(Vec::as_slice));
            prop_assert!(outcome.consumed <= stream.len());
        }

        #[test]
        fn prop_random_hex_like_bytes_never_panic(
            stream in proptest::collection::vec(
                prop::sample::select(b"0123456789abcdefABCDEF;= \t\r\n:xX".to_vec()), 0..512),
        ) {
            let whole = decode_parts([&stream[..]]);
            prop_assert_eq!(decode_parts(stream.chunks(1)), whole);
        }

        #[test]
        fn prop_encoded_body_decodes_at_any_split(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            crlf in any::<bool>(),
            extension in any::<bool>(),
            trailer in any::<bool>(),
            leftover in proptest::collection::vec(any::<u8>(), 0..16),
            points in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let line_end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut stream = Vec::new();
            for piece in pieces.iter().filter(|p| !p.is_empty()) {
                stream.extend_from_slice(format!("{:X}", piece.len()).as_bytes());
                if extension {
                    stream.extend_from_slice(b";ext=\"v\"");
                }
                stream.extend_from_slice(line_end);
                stream.extend_from_slice(piece);
                stream.extend_from_slice(line_end);
            }
            stream.extend_from_slice(b"0");
            stream.extend_from_slice(line_end);
            if trailer {
                stream.extend_from_slice(b"X-Trailer: 1");
                stream.extend_from_slice(line_end);
            }
            stream.extend_from_slice(line_end);
            let body_len = stream.len();
            stream.extend_from_slice(&leftover);

            let parts = split_at_points(&stream, &points);
            let outcome = decode_parts(parts.iter().map(Vec::as_slice));
            prop_assert_eq!(outcome.error, None);
            prop_assert!(outcome.done);
            prop_assert_eq!(outcome.consumed, body_len);
            prop_assert_eq!(outcome.data, pieces.concat());

            let mut written = Vec::new();
            for piece in &pieces {
                write_chunk(&mut written, piece);
            }
            write_last_chunk(&mut written);
            prop_assert_eq!(decode_parts([&written[..]]).data, pieces.concat());
        }
    }
}
