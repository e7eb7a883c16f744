//! TLS for both sides — `run`'s `https://` targets and `serve --tls-cert` — as one layer
//! between the ring's bytes and the HTTP code: ciphertext in, plaintext out, and back. I/O-free
//! (the shards move the bytes); `client.rs` and `server.rs` build the rustls configurations.
//!
//! rustls's unbuffered API: records are decrypted in place in the ring's provided buffer (or,
//! for a record that arrived in part, in the connection's `partial` bytes until it is whole),
//! and handshake records are encoded into a buffer that lives only until it is sent. An idle
//! connection holds rustls's state alone: ~2.4 KB live heap per side (two AEAD keys of ~560 B,
//! the connection core ~640 B, the traffic state), measured by `examples/tls_live_bytes.rs`.

pub mod client;
pub mod server;

pub use client::{TlsOptions, client_config, server_name};
use std::sync::Arc;

/// A TLS failure, by cause (each is its own error counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// The peer's certificate failed verification (unknown issuer, wrong name, expired…).
    Certificate(String),
    /// The peer sent a fatal alert.
    Alert(String),
    /// Anything else: a malformed record, a decryption failure, an unexpected message.
    Protocol(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Certificate(e) => write!(f, "certificate: {e}"),
            TlsError::Alert(e) => write!(f, "alert from the peer: {e}"),
            TlsError::Protocol(e) => write!(f, "TLS protocol: {e}"),
        }
    }
}

pub(crate) fn classify(error: rustls::Error) -> TlsError {
    match error {
        rustls::Error::InvalidCertificate(e) => TlsError::Certificate(format!("{e:?}")),
        rustls::Error::AlertReceived(alert) => TlsError::Alert(format!("{alert:?}")),
        other => TlsError::Protocol(other.to_string()),
    }
}

/// One connection's TLS layer (client or server side), on rustls's unbuffered API: records
/// are decrypted in place in the buffer they arrived in, and the only bytes kept between
/// receives are a record that arrived in part (`partial`, freed once whole).
pub struct TlsConn {
    side: Side,
    /// A record (or handshake message) received in part, presented again with what follows.
    partial: Vec<u8>,
    /// Records due to be sent (handshake messages, alerts): taken by `take_output`.
    outgoing: Vec<u8>,
    handshake_done: bool,
    close_requested: bool,
}

enum Side {
    Client(rustls::client::UnbufferedClientConnection),
    Server(rustls::server::UnbufferedServerConnection),
}

/// What a receive found besides plaintext.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// The handshake completed with these bytes.
    pub handshake_done: bool,
    /// The peer sent close_notify.
    pub peer_closed: bool,
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
    state: Result<rustls::unbuffered::ConnectionState<'_, '_, Data>, rustls::Error>,
    discard: &mut usize,
    conn: &mut TlsFlags<'_>,
    plaintext: &mut Vec<u8>,
    work: &mut Work<'_>,
) -> Result<Step, TlsError> {
    use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
    match state.map_err(classify)? {
        ConnectionState::ReadTraffic(mut traffic) => {
            *conn.handshake_done = true;
            while let Some(record) = traffic.next_record() {
                let record = record.map_err(classify)?;
                *discard += record.discard;
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
                conn.outgoing,
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
            conn.received.peer_closed = true;
            Ok(Step::Again)
        }
        ConnectionState::Closed => Ok(Step::Closed),
        ConnectionState::WriteTraffic(mut traffic) => {
            *conn.handshake_done = true;
            let required = |e: &EncryptError| match e {
                EncryptError::InsufficientSize(s) => Some(s.required_size),
                _ => None,
            };
            if let Some((data, out)) = work.encrypt.take() {
                // Records pending (a KeyUpdate reply) go out first; nothing stays allocated.
                out.extend_from_slice(conn.outgoing);
                *conn.outgoing = Vec::new();
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
                    conn.outgoing,
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

/// The parts of a `TlsConn` a state may change (borrowed apart from its rustls connection).
struct TlsFlags<'a> {
    outgoing: &'a mut Vec<u8>,
    handshake_done: &'a mut bool,
    received: &'a mut Received,
}

impl TlsConn {
    fn new(side: Side) -> TlsConn {
        TlsConn {
            side,
            partial: Vec::new(),
            outgoing: Vec::new(),
            handshake_done: false,
            close_requested: false,
        }
    }

    /// The client side of a connection to `name`.
    pub fn client(
        config: &Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<TlsConn, TlsError> {
        rustls::client::UnbufferedClientConnection::new(config.clone(), name)
            .map(|conn| TlsConn::new(Side::Client(conn)))
            .map_err(classify)
    }

    /// The server side of an accepted connection.
    pub fn server(config: &Arc<rustls::ServerConfig>) -> Result<TlsConn, TlsError> {
        rustls::server::UnbufferedServerConnection::new(config.clone())
            .map(|conn| TlsConn::new(Side::Server(conn)))
            .map_err(classify)
    }

    /// Queues close_notify (sent with the next output).
    pub fn close(&mut self) {
        self.close_requested = true;
        self.drive();
    }

    pub fn is_handshaking(&self) -> bool {
        !self.handshake_done
    }

    /// Part of a record has arrived and the rest has not: an EOF now cuts a record off.
    pub fn holds_partial_record(&self) -> bool {
        !self.partial.is_empty()
    }

    /// The handshake resumed a session (a ticket from an earlier connection).
    pub fn resumed(&self) -> bool {
        let kind = match &self.side {
            Side::Client(c) => c.handshake_kind(),
            Side::Server(s) => s.handshake_kind(),
        };
        kind == Some(rustls::HandshakeKind::Resumed)
    }

    /// TLS records waiting to be sent (handshake messages, alerts).
    pub fn wants_write(&mut self) -> bool {
        self.drive();
        !self.outgoing.is_empty()
    }

    /// Appends every record waiting to be sent to `out`.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        self.drive();
        out.append(&mut self.outgoing);
        // Nothing is kept for an idle connection.
        self.outgoing = Vec::new();
    }

    /// Runs the machine without input: what it has due lands in `outgoing`. An error here is
    /// reported again by the next receive.
    fn drive(&mut self) {
        // Past the handshake, records fall due only while receiving (a KeyUpdate reply, the
        // server's tickets: `receive` encodes them) or on `close`: nothing to drive for, so the
        // per-send and per-flush checks cost nothing.
        if self.handshake_done && !self.close_requested {
            return;
        }
        let _ = self.drive_into(&mut [], &mut None, &mut Vec::new());
    }

    /// Runs the machine over `input` (decrypting in place) until it needs more bytes or has
    /// nothing due; returns how many bytes of `input` it consumed.
    fn drive_into(
        &mut self,
        input: &mut [u8],
        encrypt: &mut Option<(&[u8], &mut Vec<u8>)>,
        plaintext: &mut Vec<u8>,
    ) -> Result<(usize, Received), TlsError> {
        let mut received = Received::default();
        let mut start = 0;
        let mut work = Work {
            encrypt: encrypt.take(),
            close: self.close_requested,
        };
        // Bounded: each turn consumes input, produces output or stops; a machine that did
        // neither 64 times in a row would be a rustls bug, not a reason to spin.
        for _ in 0..64 {
            let mut flags = TlsFlags {
                outgoing: &mut self.outgoing,
                handshake_done: &mut self.handshake_done,
                received: &mut received,
            };
            let rest = &mut input[start..];
            let (mut discard, step) = match &mut self.side {
                Side::Client(c) => {
                    let status = c.process_tls_records(rest);
                    let mut discard = status.discard;
                    let step = step(status.state, &mut discard, &mut flags, plaintext, &mut work)?;
                    (discard, step)
                }
                Side::Server(s) => {
                    let status = s.process_tls_records(rest);
                    let mut discard = status.discard;
                    let step = step(status.state, &mut discard, &mut flags, plaintext, &mut work)?;
                    (discard, step)
                }
            };
            discard = discard.min(input.len() - start);
            start += discard;
            match step {
                Step::Again => continue,
                Step::Idle if discard > 0 && start < input.len() => continue,
                Step::Blocked | Step::Idle | Step::Closed => break,
            }
        }
        self.close_requested = work.close;
        Ok((start, received))
    }

    /// Takes received ciphertext (decrypted in place); appends the plaintext it carried to
    /// `plaintext`. A record that arrived in part is kept until the rest comes.
    pub fn receive(
        &mut self,
        ciphertext: &mut [u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<Received, TlsError> {
        let was_handshaking = !self.handshake_done;
        let mut received = if self.partial.is_empty() {
            let (used, received) = self.drive_into(ciphertext, &mut None, plaintext)?;
            if used < ciphertext.len() {
                self.partial.extend_from_slice(&ciphertext[used..]);
            }
            received
        } else {
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(ciphertext);
            let (used, received) = self.drive_into(&mut joined, &mut None, plaintext)?;
            if used < joined.len() {
                joined.drain(..used);
                self.partial = joined;
            }
            received
        };
        received.handshake_done = was_handshaking && self.handshake_done;
        Ok(received)
    }

    /// Encrypts `plaintext` and appends the records (after any pending ones) to `out`.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if !self.handshake_done {
            return Err(TlsError::Protocol(
                "encrypt before the handshake ended".into(),
            ));
        }
        let mut work = Some((plaintext, &mut *out));
        self.drive_into(&mut [], &mut work, &mut Vec::new())?;
        if work.is_some() {
            return Err(TlsError::Protocol(
                "the connection cannot send any more".into(),
            ));
        }
        Ok(())
    }
}

/// The crypto provider of both sides: rustls's ring provider (builds with a C compiler alone,
/// no cmake). Its AEAD keys are ~560 B each whatever the cipher (ring keeps every cipher's key
/// in one enum), so the suite order is left as rustls has it.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::ServerConnection;
    use std::io::Write;

    struct Pki {
        ca_file: std::path::PathBuf,
        server: Arc<rustls::ServerConfig>,
    }

    /// A CA and a `localhost` certificate it signs, and a rustls server holding them.
    fn pki(name: &str, alpn: &[&[u8]]) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let ca_file = std::env::temp_dir().join(format!(
            "mcpstorm-tls-unit-{}-{name}.pem",
            std::process::id()
        ));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
        server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Pki {
            ca_file,
            server: Arc::new(server),
        }
    }

    fn client(pki: &Pki) -> TlsConn {
        let options = TlsOptions {
            cacert: Some(pki.ca_file.clone()),
            insecure: false,
            no_resumption: false,
        };
        let config = client_config(&options, 4).unwrap();
        TlsConn::client(&config, server_name("localhost").unwrap()).unwrap()
    }

    fn server_output(server: &mut ServerConnection) -> Vec<u8> {
        let mut out = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut out).unwrap();
        }
        out
    }

    fn server_input(server: &mut ServerConnection, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            server.read_tls(&mut bytes).unwrap();
            server.process_new_packets().unwrap();
        }
    }

    /// Runs the handshake, the server's first flight split at `split` into two receives.
    fn handshake(client: &mut TlsConn, server: &mut ServerConnection, split: Option<usize>) {
        let mut hello = Vec::new();
        client.take_output(&mut hello);
        server_input(server, &hello);
        let mut flight = server_output(server);
        let mut plain = Vec::new();
        let at = split.unwrap_or(flight.len()).min(flight.len());
        let first = client.receive(&mut flight[..at], &mut plain).unwrap();
        let second = client.receive(&mut flight[at..], &mut plain).unwrap();
        assert!(first.handshake_done || second.handshake_done, "split {at}");
        assert!(!first.handshake_done || !second.handshake_done);
        assert!(plain.is_empty());
        let mut finished = Vec::new();
        client.take_output(&mut finished);
        server_input(server, &finished);
        assert!(!server.is_handshaking());
    }

    #[test]
    fn handshake_split_at_every_byte() {
        let pki = pki("split", &[b"http/1.1"]);
        let flight_len = {
            let mut c = client(&pki);
            let mut s = ServerConnection::new(pki.server.clone()).unwrap();
            let mut hello = Vec::new();
            c.take_output(&mut hello);
            server_input(&mut s, &hello);
            server_output(&mut s).len()
        };
        for split in 0..=flight_len {
            let mut c = client(&pki);
            let mut s = ServerConnection::new(pki.server.clone()).unwrap();
            handshake(&mut c, &mut s, Some(split));
            assert!(!c.is_handshaking());
        }
        let _ = std::fs::remove_file(&pki.ca_file);
    }

    #[test]
    fn request_and_response_split_at_every_byte() {
        let pki = pki("records", &[b"http/1.1"]);
        let mut c = client(&pki);
        let mut s = ServerConnection::new(pki.server.clone()).unwrap();
        handshake(&mut c, &mut s, None);
        assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
        // Tickets the server sent after the handshake carry no plaintext.
        let mut tickets = server_output(&mut s);
        let mut plain = Vec::new();
        c.receive(&mut tickets, &mut plain).unwrap();
        assert!(plain.is_empty());

        let request = b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}";
        let mut wire = Vec::new();
        c.encrypt(request, &mut wire).unwrap();
        server_input(&mut s, &wire);
        let mut got = vec![0; request.len()];
        std::io::Read::read_exact(&mut s.reader(), &mut got).unwrap();
        assert_eq!(&got[..], &request[..]);

        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for split in 0..=response.len() + 40 {
            s.writer().write_all(response).unwrap();
            let mut records = server_output(&mut s);
            let at = split.min(records.len());
            let mut plain = Vec::new();
            let first = c.receive(&mut records[..at], &mut plain).unwrap();
            // A partial record is held by rustls: nothing comes out until it is whole.
            if at < records.len() {
                assert!(plain.is_empty(), "split {at}");
            }
            c.receive(&mut records[at..], &mut plain).unwrap();
            assert_eq!(&plain[..], &response[..], "split {at}");
            assert!(!first.peer_closed);
        }
        let _ = std::fs::remove_file(&pki.ca_file);
    }

    /// A record cut short: nothing comes out of it, the layer says it holds part of a record
    /// (the shard counts an EOF then as `tls_truncated`), and the rest completes it.
    #[test]
    fn truncated_record_is_held_and_reported() {
        let pki = pki("truncated", &[b"http/1.1"]);
        let mut c = client(&pki);
        let mut s = ServerConnection::new(pki.server.clone()).unwrap();
        handshake(&mut c, &mut s, None);
        c.receive(&mut server_output(&mut s), &mut Vec::new())
            .unwrap();
        assert!(!c.holds_partial_record());
        s.writer().write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        let mut record = server_output(&mut s);
        let mut plain = Vec::new();
        let half = record.len() / 2;
        c.receive(&mut record[..half], &mut plain).unwrap();
        assert!(plain.is_empty() && c.holds_partial_record());
        c.receive(&mut record[half..], &mut plain).unwrap();
        assert_eq!(&plain[..], b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(!c.holds_partial_record());
        let _ = std::fs::remove_file(&pki.ca_file);
    }

    #[test]
    fn close_notify_is_reported() {
        let pki = pki("close", &[b"http/1.1"]);
        let mut c = client(&pki);
        let mut s = ServerConnection::new(pki.server.clone()).unwrap();
        handshake(&mut c, &mut s, None);
        s.send_close_notify();
        let mut plain = Vec::new();
        let received = c.receive(&mut server_output(&mut s), &mut plain).unwrap();
        assert!(received.peer_closed);
        let _ = std::fs::remove_file(&pki.ca_file);
    }

    #[test]
    fn errors_by_cause() {
        // A CA that did not sign the server's certificate: a certificate error.
        let trusted = pki("trusted", &[b"http/1.1"]);
        let other = pki("other", &[b"http/1.1"]);
        let mut c = client(&trusted);
        let mut s = ServerConnection::new(other.server.clone()).unwrap();
        let mut hello = Vec::new();
        c.take_output(&mut hello);
        server_input(&mut s, &hello);
        let error = c
            .receive(&mut server_output(&mut s), &mut Vec::new())
            .unwrap_err();
        assert!(matches!(error, TlsError::Certificate(_)), "{error}");

        // A server that speaks only h2: its fatal alert is the cause.
        let h2 = pki("h2", &[b"h2"]);
        let mut c = client(&h2);
        let mut s = ServerConnection::new(h2.server.clone()).unwrap();
        let mut hello = Vec::new();
        c.take_output(&mut hello);
        let mut bytes = &hello[..];
        s.read_tls(&mut bytes).unwrap();
        assert!(s.process_new_packets().is_err());
        let error = c
            .receive(&mut server_output(&mut s), &mut Vec::new())
            .unwrap_err();
        assert!(matches!(error, TlsError::Alert(_)), "{error}");

        // Bytes that are not TLS at all.
        let mut c = client(&trusted);
        let error = c
            .receive(
                &mut b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(matches!(error, TlsError::Protocol(_)), "{error}");

        // --insecure accepts the certificate nobody signed for us.
        let config = client_config(
            &TlsOptions {
                cacert: None,
                insecure: true,
                no_resumption: false,
            },
            4,
        )
        .unwrap();
        let mut c = TlsConn::client(&config, server_name("localhost").unwrap()).unwrap();
        let mut s = ServerConnection::new(other.server.clone()).unwrap();
        handshake(&mut c, &mut s, None);
        for pki in [trusted, other, h2] {
            let _ = std::fs::remove_file(&pki.ca_file);
        }
    }

    #[test]
    fn a_second_connection_resumes() {
        let pki = pki("resume", &[b"http/1.1"]);
        let options = TlsOptions {
            cacert: Some(pki.ca_file.clone()),
            insecure: false,
            no_resumption: false,
        };
        let config = client_config(&options, 16).unwrap();
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let mut c = TlsConn::client(&config, server_name("localhost").unwrap()).unwrap();
            let mut s = ServerConnection::new(pki.server.clone()).unwrap();
            handshake(&mut c, &mut s, None);
            c.receive(&mut server_output(&mut s), &mut Vec::new())
                .unwrap();
            kinds.push(c.resumed());
        }
        assert_eq!(kinds, [false, true, true]);
        // --tls-no-resumption: every handshake is full.
        let config = client_config(
            &TlsOptions {
                no_resumption: true,
                ..options
            },
            16,
        )
        .unwrap();
        for _ in 0..2 {
            let mut c = TlsConn::client(&config, server_name("localhost").unwrap()).unwrap();
            let mut s = ServerConnection::new(pki.server.clone()).unwrap();
            handshake(&mut c, &mut s, None);
            c.receive(&mut server_output(&mut s), &mut Vec::new())
                .unwrap();
            assert!(!c.resumed());
        }
        let _ = std::fs::remove_file(&pki.ca_file);
    }

    /// Both sides of mcpstorm's own layer (unbuffered client and server): the whole exchange
    /// split at every byte in both directions, and an idle connection keeps no buffer.
    #[test]
    fn own_server_and_client_split_at_every_byte_and_idle_holds_no_buffer() {
        let pki_dir = std::env::temp_dir().join(format!("mcpstorm-tls-own-{}", std::process::id()));
        let pki = server::throwaway_pki(&pki_dir).unwrap();
        let server_config = server::server_config(&pki.cert_file, &pki.key_file).unwrap();
        let client_config = client_config(
            &TlsOptions {
                cacert: Some(pki.ca_file.clone()),
                insecure: false,
                no_resumption: false,
            },
            4,
        )
        .unwrap();
        // Moves everything `from` has due to `to`, split at `split` into two receives.
        fn pump(from: &mut TlsConn, to: &mut TlsConn, split: usize, plain: &mut Vec<u8>) -> usize {
            let mut wire = Vec::new();
            from.take_output(&mut wire);
            let at = split.min(wire.len());
            to.receive(&mut wire[..at], plain).unwrap();
            to.receive(&mut wire[at..], plain).unwrap();
            wire.len()
        }
        let request = b"POST /mcp HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let mut longest = 1;
        let mut split = 0;
        while split <= longest {
            let mut c = TlsConn::client(&client_config, server_name("localhost").unwrap()).unwrap();
            let mut s = TlsConn::server(&server_config).unwrap();
            let mut plain = Vec::new();
            for _ in 0..4 {
                longest = longest.max(pump(&mut c, &mut s, split, &mut plain));
                longest = longest.max(pump(&mut s, &mut c, split, &mut plain));
            }
            assert!(!c.is_handshaking() && !s.is_handshaking(), "split {split}");
            assert!(plain.is_empty());
            let mut wire = Vec::new();
            c.encrypt(request, &mut wire).unwrap();
            let at = split.min(wire.len());
            s.receive(&mut wire[..at], &mut plain).unwrap();
            s.receive(&mut wire[at..], &mut plain).unwrap();
            assert_eq!(&plain[..], &request[..], "split {split}");
            plain.clear();
            let mut wire = Vec::new();
            s.encrypt(response, &mut wire).unwrap();
            let at = split.min(wire.len());
            c.receive(&mut wire[..at], &mut plain).unwrap();
            c.receive(&mut wire[at..], &mut plain).unwrap();
            assert_eq!(&plain[..], &response[..], "split {split}");
            for side in [&c, &s] {
                assert_eq!(
                    (side.partial.capacity(), side.outgoing.capacity()),
                    (0, 0),
                    "an idle connection keeps no buffer (split {split})"
                );
            }
            split += 1;
        }
        let _ = std::fs::remove_dir_all(&pki_dir);
    }
}
