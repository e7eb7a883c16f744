//! rustls's side of a connection: the handshake on rustls's unbuffered API, TLS 1.2 for the
//! connection's whole life, and the hand-over of a TLS 1.3 connection's traffic keys to
//! `traffic.rs` once nothing more is expected from rustls. Part of `tls/`; `TlsConn` in
//! `mod.rs` dispatches to it.

use super::record::{DirectionKeys, Suite};
use super::secrets::{self, TrafficSecrets};
use super::traffic::Traffic;
use super::{Received, TlsError, classify};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};

pub(super) enum Side {
    Client(rustls::client::UnbufferedClientConnection),
    Server(rustls::server::UnbufferedServerConnection),
}

/// One connection while rustls runs it.
pub(super) struct Handshake {
    side: Side,
    /// The application traffic secrets rustls logged during this handshake.
    secrets: TrafficSecrets,
    /// Application data came through rustls (the client hands over then, ticket or not).
    read_data: bool,
}

/// What the driving loop of one call changes besides the rustls connection.
pub(super) struct Flags<'a> {
    /// Records due to be sent (handshake messages, alerts).
    pub outgoing: &'a mut Vec<u8>,
    pub handshake_done: &'a mut bool,
    pub close_requested: &'a mut bool,
}

/// Where one state of the machine leaves the driving loop.
enum Step {
    /// Call again: more may follow (records read, handshake data encoded).
    Again,
    /// More bytes from the peer are needed.
    Blocked,
    /// Traffic state, nothing due.
    Idle,
    Closed,
}

/// Work handed to the traffic state: application data to encrypt into `out`.
struct Work<'a> {
    encrypt: Option<(&'a [u8], &'a mut Vec<u8>)>,
    close: bool,
}

/// Appends what `write` produces to `out`, growing it to the size rustls asks for.
fn append_sized<E>(
    out: &mut Vec<u8>,
    first_guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    let start = out.len();
    let mut size = first_guess;
    loop {
        out.resize(start + size, 0);
        match write(&mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(());
            }
            Err(e) => {
                out.truncate(start);
                match required(&e) {
                    Some(needed) if needed > size => size = needed,
                    _ => return Err(e),
                }
            }
        }
    }
}

/// One state of either side: read records out, encode handshake records, encrypt `work`.
fn step<Data>(
    status: rustls::unbuffered::UnbufferedStatus<'_, '_, Data>,
    flags: &mut Flags<'_>,
    received: &mut Received,
    read_data: &mut bool,
    plaintext: &mut Vec<u8>,
    work: &mut Work<'_>,
) -> Result<(usize, Step), TlsError> {
    let mut discard = status.discard;
    let step = step_state(
        status.state,
        &mut discard,
        flags,
        received,
        read_data,
        plaintext,
        work,
    )?;
    Ok((discard, step))
}

/// The state of one `process_tls_records` call, acted on.
fn step_state<Data>(
    state: Result<ConnectionState<'_, '_, Data>, rustls::Error>,
    discard: &mut usize,
    flags: &mut Flags<'_>,
    received: &mut Received,
    read_data: &mut bool,
    plaintext: &mut Vec<u8>,
    work: &mut Work<'_>,
) -> Result<Step, TlsError> {
    match state.map_err(classify)? {
        ConnectionState::ReadTraffic(mut traffic) => {
            *flags.handshake_done = true;
            while let Some(record) = traffic.next_record() {
                let record = record.map_err(classify)?;
                *discard += record.discard;
                *read_data = true;
                plaintext.extend_from_slice(record.payload);
            }
            Ok(Step::Again)
        }
        ConnectionState::ReadEarlyData(_) => {
            // The server config never enables 0-RTT (max_early_data_size stays 0).
            Err(TlsError::Protocol("unexpected early data".into()))
        }
        ConnectionState::EncodeTlsData(mut encode) => {
            append_sized(
                flags.outgoing,
                1024,
                |buf| encode.encode(buf),
                |e| match e {
                    EncodeError::InsufficientSize(s) => Some(s.required_size),
                    EncodeError::AlreadyEncoded => None,
                },
            )
            .map_err(|e| TlsError::Protocol(format!("{e:?}")))?;
            Ok(Step::Again)
        }
        ConnectionState::TransmitTlsData(transmit) => {
            // The records are in `outgoing`, which the shard sends before anything else.
            transmit.done();
            Ok(Step::Again)
        }
        ConnectionState::BlockedHandshake => Ok(Step::Blocked),
        ConnectionState::PeerClosed => {
            received.peer_closed = true;
            Ok(Step::Again)
        }
        ConnectionState::Closed => Ok(Step::Closed),
        ConnectionState::WriteTraffic(mut traffic) => {
            *flags.handshake_done = true;
            let required = |e: &EncryptError| match e {
                EncryptError::InsufficientSize(s) => Some(s.required_size),
                _ => None,
            };
            if let Some((data, out)) = work.encrypt.take() {
                // Records pending (a KeyUpdate reply) go out first; nothing stays allocated.
                out.extend_from_slice(flags.outgoing);
                *flags.outgoing = Vec::new();
                append_sized(
                    out,
                    data.len() + 64,
                    |buf| traffic.encrypt(data, buf),
                    required,
                )
                .map_err(|e| TlsError::Protocol(e.to_string()))?;
            }
            if std::mem::take(&mut work.close) {
                append_sized(
                    flags.outgoing,
                    64,
                    |buf| traffic.queue_close_notify(buf),
                    required,
                )
                .map_err(|e| TlsError::Protocol(e.to_string()))?;
            }
            Ok(Step::Idle)
        }
        _ => Ok(Step::Idle),
    }
}

impl Handshake {
    pub fn new(side: Side) -> Handshake {
        Handshake {
            side,
            secrets: TrafficSecrets::default(),
            read_data: false,
        }
    }

    /// The handshake resumed a session (a ticket from an earlier connection).
    pub fn resumed(&self) -> bool {
        let kind = match &self.side {
            Side::Client(c) => c.handshake_kind(),
            Side::Server(s) => s.handshake_kind(),
        };
        kind == Some(rustls::HandshakeKind::Resumed)
    }

    /// Runs the machine over `input` (decrypting in place) until it needs more bytes or has
    /// nothing due; returns how many bytes of `input` it consumed.
    pub fn drive<'a>(
        &mut self,
        input: &mut [u8],
        encrypt: &mut Option<(&'a [u8], &'a mut Vec<u8>)>,
        plaintext: &mut Vec<u8>,
        flags: &mut Flags<'_>,
    ) -> Result<(usize, Received), TlsError> {
        let handshaking = !*flags.handshake_done;
        if handshaking {
            secrets::clear();
        }
        let result = self.drive_loop(input, encrypt, plaintext, flags);
        if handshaking {
            secrets::take_into(&mut self.secrets);
        }
        result
    }

    fn drive_loop<'a>(
        &mut self,
        input: &mut [u8],
        encrypt: &mut Option<(&'a [u8], &'a mut Vec<u8>)>,
        plaintext: &mut Vec<u8>,
        flags: &mut Flags<'_>,
    ) -> Result<(usize, Received), TlsError> {
        let mut received = Received::default();
        let mut start = 0;
        let mut work = Work {
            encrypt: encrypt.take(),
            close: *flags.close_requested,
        };
        // Bounded: each turn consumes input, produces output or stops; a machine that did
        // neither 64 times in a row would be a rustls bug, not a reason to spin.
        for _ in 0..64 {
            let rest = &mut input[start..];
            let read_data = &mut self.read_data;
            let (mut discard, step) = match &mut self.side {
                Side::Client(c) => step(
                    c.process_tls_records(rest),
                    flags,
                    &mut received,
                    read_data,
                    plaintext,
                    &mut work,
                )?,
                Side::Server(s) => step(
                    s.process_tls_records(rest),
                    flags,
                    &mut received,
                    read_data,
                    plaintext,
                    &mut work,
                )?,
            };
            discard = discard.min(input.len() - start);
            start += discard;
            match step {
                Step::Again => continue,
                Step::Idle if discard > 0 && start < input.len() => continue,
                Step::Blocked | Step::Idle | Step::Closed => break,
            }
        }
        *flags.close_requested = work.close;
        *encrypt = work.encrypt;
        Ok((start, received))
    }

    /// The suite to hand a finished TLS 1.3 connection over with, once rustls has nothing
    /// more to do for it: the server as soon as its session tickets are encoded (the same
    /// call that finished the handshake), the client once the server's tickets are in (they
    /// come right after the handshake) or, for a server that sends none, at its first
    /// application data. TLS 1.2 stays with rustls.
    pub fn ready_to_hand_over(&self) -> Option<Suite> {
        let (version, suite, waiting) = match &self.side {
            Side::Client(c) => (
                c.protocol_version(),
                c.negotiated_cipher_suite(),
                c.tls13_tickets_received() == 0 && !self.read_data,
            ),
            Side::Server(s) => (s.protocol_version(), s.negotiated_cipher_suite(), false),
        };
        if version != Some(rustls::ProtocolVersion::TLSv1_3) || waiting {
            return None;
        }
        Suite::from_rustls(suite?.suite())
    }

    /// Takes the traffic keys out of rustls (which is dropped) into the record layer.
    pub fn hand_over(self, suite: Suite) -> Result<Traffic, TlsError> {
        let (is_client, extracted) = match self.side {
            Side::Client(c) => (true, c.dangerous_into_kernel_connection().map(|(s, _)| s)),
            Side::Server(s) => (false, s.dangerous_into_kernel_connection().map(|(s, _)| s)),
        };
        let extracted = extracted.map_err(classify)?;
        let (tx_secret, rx_secret) = if is_client {
            (self.secrets.client, self.secrets.server)
        } else {
            (self.secrets.server, self.secrets.client)
        };
        let tx = direction_keys(suite, extracted.tx, tx_secret)?;
        let rx = direction_keys(suite, extracted.rx, rx_secret)?;
        Ok(Traffic::new(suite, tx, rx, is_client))
    }
}

/// One direction's keys from what rustls handed over, with the logged secret they derive
/// from. rustls may have followed a peer's KeyUpdate before the hand-over (the receive
/// direction): the logged secret's next generations are tried. Keys that match no generation
/// of a logged secret are an error (they would garble every record); keys handed over with no
/// logged secret at all are used as they are (a KeyUpdate on them then fails by cause).
fn direction_keys(
    suite: Suite,
    (seq, secrets): (u64, rustls::ConnectionTrafficSecrets),
    secret: Option<secrets::Secret>,
) -> Result<DirectionKeys, TlsError> {
    use rustls::ConnectionTrafficSecrets as S;
    let (key, iv) = match &secrets {
        S::Aes128Gcm { key, iv } | S::Aes256Gcm { key, iv } | S::Chacha20Poly1305 { key, iv } => {
            (key.as_ref(), iv.as_ref())
        }
        _ => return Err(TlsError::Protocol("unsupported traffic cipher".into())),
    };
    let iv: &[u8; 12] = iv
        .try_into()
        .map_err(|_| TlsError::Protocol("traffic IV of an unexpected length".into()))?;
    let Some(secret) = secret else {
        return Ok(DirectionKeys::from_key(key, iv, seq));
    };
    let mut keys = DirectionKeys::from_secret(suite, secret.as_bytes(), seq);
    for _ in 0..KEY_GENERATIONS_MAX {
        if keys.same_key(key, iv) {
            keys.seq = seq;
            return Ok(keys);
        }
        keys.update(suite)
            .map_err(|e| TlsError::Protocol(e.to_string()))?;
    }
    Err(TlsError::Protocol(
        "the traffic keys rustls handed over derive from no logged secret".into(),
    ))
}

/// KeyUpdates rustls may have followed before the hand-over (one is already unusual).
const KEY_GENERATIONS_MAX: usize = 4;
