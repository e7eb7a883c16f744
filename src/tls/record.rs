//! The TLS 1.3 record layer past the handshake (RFC 8446 §5, §7), I/O-free: what `TlsConn`
//! (`tls/mod.rs`) runs once rustls has finished a TLS 1.3 handshake and handed over the
//! traffic keys. rustls's own traffic state costs ~2.4 KB per connection (two expanded AEAD
//! keys of ~560 B, its connection core); this layer keeps, per direction, the traffic secret
//! (for a KeyUpdate), the AEAD key and IV derived from it and the record sequence number:
//! ~200 B in all. The key is expanded on the stack for each record instead of being kept
//! expanded: ring's AES-GCM key setup costs well under a microsecond (one AES key schedule
//! and the GHASH table), beside the tens of microseconds a request costs, and 100K idle
//! sessions keep 110 MB less.
//!
//! Records are sealed in place in the caller's send buffer and opened in place in the
//! receive buffer they arrived in.

use ring::{aead, hkdf};

/// Record header: type, legacy version (2 bytes), length (2 bytes).
pub const HEADER_LEN: usize = 5;
pub const TAG_LEN: usize = 16;
/// The most plaintext one record carries (2^14, RFC 8446 §5.1).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// The longest protected record body a peer may send: 2^14 + 256 (RFC 8446 §5.2).
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;

pub const CONTENT_ALERT: u8 = 21;
pub const CONTENT_HANDSHAKE: u8 = 22;
pub const CONTENT_APPLICATION_DATA: u8 = 23;

pub const HANDSHAKE_NEW_SESSION_TICKET: u8 = 4;
pub const HANDSHAKE_KEY_UPDATE: u8 = 24;

/// The TLS 1.3 cipher suites (RFC 8446 §B.4) rustls's ring provider offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    Aes128GcmSha256,
    Aes256GcmSha384,
    Chacha20Poly1305Sha256,
}

impl Suite {
    pub fn from_rustls(suite: rustls::CipherSuite) -> Option<Suite> {
        match suite {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => Some(Suite::Aes128GcmSha256),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => Some(Suite::Aes256GcmSha384),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => {
                Some(Suite::Chacha20Poly1305Sha256)
            }
            _ => None,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes128GcmSha256 => &aead::AES_128_GCM,
            Suite::Aes256GcmSha384 => &aead::AES_256_GCM,
            Suite::Chacha20Poly1305Sha256 => &aead::CHACHA20_POLY1305,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Suite::Aes256GcmSha384 => hkdf::HKDF_SHA384,
            _ => hkdf::HKDF_SHA256,
        }
    }

    fn key_len(self) -> usize {
        self.aead().key_len()
    }

    /// The hash length: the length of a traffic secret.
    fn secret_len(self) -> usize {
        match self {
            Suite::Aes256GcmSha384 => 48,
            _ => 32,
        }
    }

    /// Records one key may protect before it must be replaced (RFC 8446 §5.5: 2^24.5 full
    /// records for AES-GCM; rustls uses 2^24, and so do we).
    pub fn confidentiality_limit(self) -> u64 {
        match self {
            Suite::Chacha20Poly1305Sha256 => u64::MAX,
            _ => 1 << 24,
        }
    }
}

/// Why a record could not be opened or sealed (each becomes a `TlsError::Protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// A record longer than the protocol allows (record_overflow).
    Overflow(usize),
    /// A record type other than application_data past the handshake.
    UnexpectedType(u8),
    /// The record did not authenticate (bad_record_mac).
    Decrypt,
    /// A protected record with no content type in it.
    NoContentType,
    /// The sequence number ran out (2^64 records).
    SequenceExhausted,
    /// A KeyUpdate arrived but the traffic secret is not known.
    NoTrafficSecret,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Overflow(len) => write!(f, "record of {len} bytes is over the limit"),
            RecordError::UnexpectedType(t) => {
                write!(f, "unexpected record type {t} past the handshake")
            }
            RecordError::Decrypt => f.write_str("a record failed to decrypt (bad_record_mac)"),
            RecordError::NoContentType => f.write_str("a protected record has no content type"),
            RecordError::SequenceExhausted => f.write_str("record sequence number exhausted"),
            RecordError::NoTrafficSecret => {
                f.write_str("a KeyUpdate arrived and the traffic secret is unknown")
            }
        }
    }
}

/// One direction's keys: the traffic secret (the next one is derived from it on a KeyUpdate),
/// the AEAD key and IV derived from it, and the sequence number of the next record.
#[derive(Clone)]
pub struct DirectionKeys {
    /// `secret_len` bytes used; all zero when rustls gave the key without the secret.
    secret: [u8; 48],
    key: [u8; 32],
    iv: [u8; 12],
    pub seq: u64,
    has_secret: bool,
}

impl std::fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material never goes into a log.
        write!(f, "DirectionKeys {{ seq: {} }}", self.seq)
    }
}

/// `len` bytes out of an HKDF expansion (ring's way of saying how long the output is).
struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, "", out.len()) (RFC 8446 §7.1).
fn expand_label(suite: Suite, secret: &[u8], label: &[u8], out: &mut [u8]) {
    let prk = hkdf::Prk::new_less_safe(suite.hkdf(), secret);
    let length = (out.len() as u16).to_be_bytes();
    let label_len = [(b"tls13 ".len() + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    // Fails only for an output longer than 255 hash blocks; ours are at most 48 bytes.
    prk.expand(&info, OutputLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF output of at most 48 bytes");
}

impl DirectionKeys {
    /// Keys derived from a traffic secret (RFC 8446 §7.3), starting at record `seq`.
    pub fn from_secret(suite: Suite, secret: &[u8], seq: u64) -> DirectionKeys {
        let mut keys = DirectionKeys {
            secret: [0; 48],
            key: [0; 32],
            iv: [0; 12],
            seq,
            has_secret: true,
        };
        keys.secret[..secret.len()].copy_from_slice(secret);
        keys.derive(suite);
        keys
    }

    /// Keys as rustls hands them over, without the secret (a KeyUpdate then fails).
    pub fn from_key(key: &[u8], iv: &[u8; 12], seq: u64) -> DirectionKeys {
        let mut keys = DirectionKeys {
            secret: [0; 48],
            key: [0; 32],
            iv: *iv,
            seq,
            has_secret: false,
        };
        keys.key[..key.len()].copy_from_slice(key);
        keys
    }

    fn derive(&mut self, suite: Suite) {
        let secret = &self.secret[..suite.secret_len()];
        let mut key = [0; 32];
        expand_label(suite, secret, b"key", &mut key[..suite.key_len()]);
        let mut iv = [0; 12];
        expand_label(suite, secret, b"iv", &mut iv);
        self.key = key;
        self.iv = iv;
    }

    /// Same key and IV (the secret aside): a check that the secret rustls logged is the one
    /// it handed the keys of.
    pub fn same_key(&self, key: &[u8], iv: &[u8]) -> bool {
        self.key[..key.len()] == *key && self.iv[..] == *iv
    }

    pub fn has_secret(&self) -> bool {
        self.has_secret
    }

    /// The next generation of keys (a KeyUpdate, RFC 8446 §7.2); the sequence restarts at 0.
    pub fn update(&mut self, suite: Suite) -> Result<(), RecordError> {
        if !self.has_secret {
            return Err(RecordError::NoTrafficSecret);
        }
        let len = suite.secret_len();
        let mut next = [0; 48];
        expand_label(suite, &self.secret[..len], b"traffic upd", &mut next[..len]);
        self.secret = next;
        self.derive(suite);
        self.seq = 0;
        Ok(())
    }

    fn key(&self, suite: Suite) -> aead::LessSafeKey {
        // The length is the suite's own: constructing the key cannot fail.
        let unbound = aead::UnboundKey::new(suite.aead(), &self.key[..suite.key_len()])
            .expect("key of the suite's length");
        aead::LessSafeKey::new(unbound)
    }

    /// The per-record nonce: the IV XOR the sequence number (RFC 8446 §5.3), and the step.
    fn next_nonce(&mut self) -> Result<aead::Nonce, RecordError> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(RecordError::SequenceExhausted)?;
        let mut nonce = self.iv;
        for (byte, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *byte ^= s;
        }
        Ok(aead::Nonce::assume_unique_for_key(nonce))
    }

    /// Appends `plaintext` to `out` as records of `content_type`, sealed in place.
    pub fn seal(
        &mut self,
        suite: Suite,
        content_type: u8,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let key = self.key(suite);
        // An empty plaintext still makes one record (a zero-length application_data record).
        let mut chunks = plaintext.chunks(MAX_PLAINTEXT);
        let mut chunk = chunks.next().unwrap_or(&[]);
        loop {
            let body_len = chunk.len() + 1 + TAG_LEN;
            let start = out.len();
            let header = [
                CONTENT_APPLICATION_DATA,
                3,
                3,
                (body_len >> 8) as u8,
                body_len as u8,
            ];
            out.reserve(HEADER_LEN + body_len);
            out.extend_from_slice(&header);
            out.extend_from_slice(chunk);
            out.push(content_type);
            let nonce = self.next_nonce()?;
            let tag = key
                .seal_in_place_separate_tag(
                    nonce,
                    aead::Aad::from(header),
                    &mut out[start + HEADER_LEN..],
                )
                // Sealing fails only past ring's per-call length limit (far over 2^14).
                .map_err(|_| RecordError::Overflow(body_len))?;
            out.extend_from_slice(tag.as_ref());
            match chunks.next() {
                Some(next) => chunk = next,
                None => return Ok(()),
            }
        }
    }

    /// Opens one whole record (header included) in place: its inner content type and where
    /// its plaintext lies in `record`.
    pub fn open(
        &mut self,
        suite: Suite,
        record: &mut [u8],
    ) -> Result<(u8, std::ops::Range<usize>), RecordError> {
        let header: [u8; HEADER_LEN] = record[..HEADER_LEN]
            .try_into()
            .expect("a record starts with its header");
        let key = self.key(suite);
        let nonce = self.next_nonce()?;
        let plain = key
            .open_in_place(nonce, aead::Aad::from(header), &mut record[HEADER_LEN..])
            .map_err(|_| RecordError::Decrypt)?;
        // TLSInnerPlaintext: content, the content type, zero padding (RFC 8446 §5.4).
        let end = plain
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(RecordError::NoContentType)?;
        Ok((plain[end], HEADER_LEN..HEADER_LEN + end))
    }
}

/// The length of the whole record at the start of `bytes`, once its header is in; `None`
/// while fewer than 5 bytes are.
pub fn record_len(bytes: &[u8]) -> Option<Result<usize, RecordError>> {
    let header = bytes.get(..HEADER_LEN)?;
    if header[0] != CONTENT_APPLICATION_DATA {
        return Some(Err(RecordError::UnexpectedType(header[0])));
    }
    let body = u16::from_be_bytes([header[3], header[4]]) as usize;
    if body > MAX_CIPHERTEXT {
        return Some(Err(RecordError::Overflow(body)));
    }
    Some(Ok(HEADER_LEN + body))
}

/// The length of the whole record of any type at the start of `bytes` (the handshake's
/// plaintext records too); `None` while its header is not all in, `Err` for bytes that are
/// not a TLS record header (a content type from 20 to 23, version 3.x).
pub fn any_record_len(bytes: &[u8]) -> Option<Result<usize, ()>> {
    let header = bytes.get(..HEADER_LEN)?;
    if !(20..=23).contains(&header[0]) || header[1] != 3 {
        return Some(Err(()));
    }
    Some(Ok(
        HEADER_LEN + u16::from_be_bytes([header[3], header[4]]) as usize
    ))
}

/// A KeyUpdate handshake message (RFC 8446 §4.6.3).
pub fn key_update_message(update_requested: bool) -> [u8; 5] {
    [HANDSHAKE_KEY_UPDATE, 0, 0, 1, update_requested as u8]
}

/// Splits the first whole handshake message off `bytes`: (type, body, rest); `None` while it
/// is not all there.
pub fn split_handshake_message(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&kind, rest) = bytes.split_first()?;
    let len = u32::from_be_bytes([0, *rest.first()?, *rest.get(1)?, *rest.get(2)?]) as usize;
    let rest = &rest[3..];
    (rest.len() >= len).then(|| (kind, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITES: [Suite; 3] = [
        Suite::Aes128GcmSha256,
        Suite::Aes256GcmSha384,
        Suite::Chacha20Poly1305Sha256,
    ];

    fn pair(suite: Suite) -> (DirectionKeys, DirectionKeys) {
        let secret = [7u8; 48];
        let secret = &secret[..suite.secret_len()];
        (
            DirectionKeys::from_secret(suite, secret, 0),
            DirectionKeys::from_secret(suite, secret, 0),
        )
    }

    #[test]
    fn seal_open_round_trip_every_suite_and_length() {
        for suite in SUITES {
            let (mut tx, mut rx) = pair(suite);
            for len in [
                0,
                1,
                100,
                MAX_PLAINTEXT - 1,
                MAX_PLAINTEXT,
                MAX_PLAINTEXT + 1,
            ] {
                let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut wire = Vec::new();
                tx.seal(suite, CONTENT_APPLICATION_DATA, &plaintext, &mut wire)
                    .unwrap();
                let mut got = Vec::new();
                let mut at = 0;
                while at < wire.len() {
                    let n = record_len(&wire[at..]).unwrap().unwrap();
                    let (kind, range) = rx.open(suite, &mut wire[at..at + n]).unwrap();
                    assert_eq!(kind, CONTENT_APPLICATION_DATA);
                    got.extend_from_slice(&wire[at..at + n][range]);
                    at += n;
                }
                assert_eq!(got, plaintext, "{suite:?} {len}");
            }
            assert_eq!(tx.seq, rx.seq);
        }
    }

    #[test]
    fn a_flipped_bit_a_replayed_record_or_a_wrong_key_fails_to_open() {
        let suite = Suite::Aes128GcmSha256;
        let (mut tx, rx) = pair(suite);
        let mut wire = Vec::new();
        tx.seal(suite, CONTENT_APPLICATION_DATA, b"hello", &mut wire)
            .unwrap();
        for bit in 0..wire.len() * 8 {
            let mut copy = wire.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            let mut keys = rx.clone();
            assert_eq!(
                keys.open(suite, &mut copy).map(|_| ()),
                Err(RecordError::Decrypt),
                "bit {bit}"
            );
        }
        // The same record again is out of sequence.
        let mut keys = rx.clone();
        keys.open(suite, &mut wire.clone()).unwrap();
        assert_eq!(
            keys.open(suite, &mut wire.clone()).map(|_| ()),
            Err(RecordError::Decrypt)
        );
        let mut other = DirectionKeys::from_secret(suite, &[8; 32], 0);
        assert!(other.open(suite, &mut wire).is_err());
    }

    #[test]
    fn key_update_moves_both_ends_to_the_next_keys() {
        for suite in SUITES {
            let (mut tx, mut rx) = pair(suite);
            let mut wire = Vec::new();
            tx.seal(suite, CONTENT_APPLICATION_DATA, b"one", &mut wire)
                .unwrap();
            tx.update(suite).unwrap();
            assert_eq!(tx.seq, 0);
            tx.seal(suite, CONTENT_APPLICATION_DATA, b"two", &mut wire)
                .unwrap();
            let n = record_len(&wire).unwrap().unwrap();
            rx.open(suite, &mut wire[..n]).unwrap();
            let mut stale = rx.clone();
            assert!(stale.open(suite, &mut wire[n..].to_vec()).is_err());
            rx.update(suite).unwrap();
            let (_, range) = rx.open(suite, &mut wire[n..]).unwrap();
            assert_eq!(&wire[n..][range], b"two");
        }
        let mut keyless = DirectionKeys::from_key(&[1; 16], &[2; 12], 5);
        assert_eq!(
            keyless.update(Suite::Aes128GcmSha256),
            Err(RecordError::NoTrafficSecret)
        );
    }

    /// RFC 8448 §3 (simple 1-RTT handshake): the server's application traffic secret and the
    /// key and IV derived from it.
    #[test]
    fn derivation_matches_rfc_8448() {
        fn hex(s: &str) -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }
        let secret = hex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
        let keys = DirectionKeys::from_secret(Suite::Aes128GcmSha256, &secret, 0);
        assert!(keys.same_key(
            &hex("9f02283b6c9c07efc26bb9f2ac92e356"),
            &hex("cf782b88dd83549aadf1e984")
        ));
    }

    #[test]
    fn headers_and_handshake_messages_split_anywhere() {
        assert_eq!(record_len(&[23, 3, 3, 0]), None);
        assert_eq!(record_len(&[23, 3, 3, 0, 17]), Some(Ok(22)));
        assert_eq!(
            record_len(&[22, 3, 3, 0, 17]),
            Some(Err(RecordError::UnexpectedType(22)))
        );
        assert_eq!(
            record_len(&[23, 3, 3, 0x41, 1]),
            Some(Err(RecordError::Overflow(0x4101)))
        );
        let mut two = key_update_message(true).to_vec();
        two.extend_from_slice(&[HANDSHAKE_NEW_SESSION_TICKET, 0, 0, 2, 9, 9]);
        for cut in 0..two.len() {
            let got = split_handshake_message(&two[..cut]);
            if cut < 5 {
                assert_eq!(got, None, "cut {cut}");
            } else {
                assert_eq!(got, Some((HANDSHAKE_KEY_UPDATE, &[1][..], &two[5..cut])));
            }
        }
        let (_, _, rest) = split_handshake_message(&two).unwrap();
        assert_eq!(
            split_handshake_message(rest),
            Some((HANDSHAKE_NEW_SESSION_TICKET, &[9, 9][..], &[][..]))
        );
    }
}
