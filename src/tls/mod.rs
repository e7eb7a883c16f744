//! TLS for both sides — `run`'s `https://` targets and `serve --tls-cert` — as one layer
//! between the ring's bytes and the HTTP code: ciphertext in, plaintext out, and back. I/O-free
//! (the shards move the bytes); `client.rs` and `server.rs` build the rustls configurations.
//!
//! rustls runs the handshake on its unbuffered API (`handshake.rs`): records are decrypted in
//! place in the ring's provided buffer, handshake records are encoded into a buffer that lives
//! only until it is sent. A TLS 1.3 connection is then handed over to mcpstorm's own record
//! layer (`traffic.rs`, `record.rs`) and rustls's state is dropped: an idle connection holds
//! its traffic keys alone (~300 B with this struct), not rustls's ~2.4 KB (two expanded AEAD
//! keys, the connection core) — measured by `examples/tls_live_bytes.rs`. TLS 1.2 stays with
//! rustls for the connection's life.

pub mod client;
mod handshake;
pub mod record;
mod secrets;
pub mod server;
mod traffic;

pub use client::{TlsOptions, client_config, server_name};
pub use secrets::CatchTrafficSecrets;
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

/// What a receive found besides plaintext.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// The handshake completed with these bytes.
    pub handshake_done: bool,
    /// The peer sent close_notify.
    pub peer_closed: bool,
}

/// Who runs the connection now.
// The traffic state is inline on purpose: it is what an established connection holds for its
// life (`TlsConn` itself is boxed once by the shard), while rustls's state is boxed and lives
// only through the handshake.
#[allow(clippy::large_enum_variant)]
enum State {
    /// rustls: the handshake, TLS 1.2, and a TLS 1.3 client until the server's tickets came.
    Rustls(Box<handshake::Handshake>),
    /// TLS 1.3 past the handshake, on mcpstorm's record layer.
    Traffic(traffic::Traffic),
    /// The hand-over failed (reported once); nothing more goes through.
    Failed,
}

/// One connection's TLS layer (client or server side). The only bytes kept between receives
/// are a record that arrived in part (`partial`, freed once whole) and records not yet taken
/// for sending (`outgoing`).
pub struct TlsConn {
    state: State,
    /// A record (or handshake message) received in part, presented again with what follows.
    partial: Vec<u8>,
    /// Records due to be sent (handshake messages, alerts, a KeyUpdate): `take_output`.
    outgoing: Vec<u8>,
    handshake_done: bool,
    close_requested: bool,
    resumed: bool,
}

impl TlsConn {
    fn new(side: handshake::Side) -> TlsConn {
        TlsConn {
            state: State::Rustls(Box::new(handshake::Handshake::new(side))),
            partial: Vec::new(),
            outgoing: Vec::new(),
            handshake_done: false,
            close_requested: false,
            resumed: false,
        }
    }

    /// The client side of a connection to `name`.
    pub fn client(
        config: &Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<TlsConn, TlsError> {
        rustls::client::UnbufferedClientConnection::new(config.clone(), name)
            .map(|conn| TlsConn::new(handshake::Side::Client(conn)))
            .map_err(classify)
    }

    /// The server side of an accepted connection.
    pub fn server(config: &Arc<rustls::ServerConfig>) -> Result<TlsConn, TlsError> {
        rustls::server::UnbufferedServerConnection::new(config.clone())
            .map(|conn| TlsConn::new(handshake::Side::Server(conn)))
            .map_err(classify)
    }

    /// Queues close_notify (sent with the next output).
    pub fn close(&mut self) {
        match &mut self.state {
            State::Traffic(traffic) => {
                // Fails only on an exhausted sequence: the close is then the socket's.
                let _ = traffic.close(&mut self.outgoing);
            }
            _ => {
                self.close_requested = true;
                self.drive();
            }
        }
    }

    pub fn is_handshaking(&self) -> bool {
        !self.handshake_done
    }

    /// Part of a record has arrived and the rest has not: an EOF now cuts a record off.
    pub fn holds_partial_record(&self) -> bool {
        !self.partial.is_empty()
            || matches!(&self.state, State::Traffic(t) if t.holds_partial_message())
    }

    /// The handshake resumed a session (a ticket from an earlier connection).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// rustls has been dropped: the connection runs on mcpstorm's record layer.
    pub fn handed_over(&self) -> bool {
        matches!(self.state, State::Traffic(_))
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

    /// Runs rustls without input: what it has due lands in `outgoing`. An error here is
    /// reported again by the next receive.
    fn drive(&mut self) {
        // Past the handshake, records fall due only while receiving (a KeyUpdate reply, the
        // server's tickets: `receive` encodes them) or on `close`: nothing to drive for, so the
        // per-send and per-flush checks cost nothing.
        if self.handshake_done && !self.close_requested {
            return;
        }
        let _ = self.drive_rustls(&mut [], &mut None, &mut Vec::new());
    }

    fn drive_rustls<'a>(
        &mut self,
        input: &mut [u8],
        encrypt: &mut Option<(&'a [u8], &'a mut Vec<u8>)>,
        plaintext: &mut Vec<u8>,
    ) -> Result<(usize, Received), TlsError> {
        let State::Rustls(rustls) = &mut self.state else {
            return Ok((0, Received::default()));
        };
        let was_handshaking = !self.handshake_done;
        let mut flags = handshake::Flags {
            outgoing: &mut self.outgoing,
            handshake_done: &mut self.handshake_done,
            close_requested: &mut self.close_requested,
        };
        let result = rustls.drive(input, encrypt, plaintext, &mut flags);
        if was_handshaking && self.handshake_done {
            self.resumed = rustls.resumed();
        }
        result
    }

    /// Runs `input` through whoever holds the connection; returns the bytes consumed.
    fn receive_some(
        &mut self,
        input: &mut [u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<(usize, Received), TlsError> {
        match &mut self.state {
            State::Rustls(_) => self.receive_rustls(input, plaintext),
            State::Traffic(traffic) => traffic.receive(input, plaintext, &mut self.outgoing),
            State::Failed => Err(TlsError::Protocol("the TLS layer failed earlier".into())),
        }
    }

    /// Gives rustls the input one whole record at a time and stops as soon as the connection
    /// can be handed over: a record after that point (a KeyUpdate, application data) must be
    /// the record layer's, never rustls's, or its effect would be lost with rustls. A record
    /// rustls keeps (part of a handshake message) is presented again with the next.
    fn receive_rustls(
        &mut self,
        input: &mut [u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<(usize, Received), TlsError> {
        let mut received = Received::default();
        // `start`: the first byte rustls has not discarded; `end`: the bytes presented.
        let (mut start, mut end) = (0, 0);
        loop {
            let len = match record::any_record_len(&input[end..]) {
                // Not a TLS record header: rustls says why (an error by cause).
                Some(Err(())) => input.len() - end,
                Some(Ok(len)) if len <= input.len() - end => len,
                // Part of a record: kept for the next receive.
                _ => break,
            };
            end += len;
            let (used, got) = self.drive_rustls(&mut input[start..end], &mut None, plaintext)?;
            start += used;
            received.peer_closed |= got.peer_closed;
            if start == end && self.ready_to_hand_over().is_some() {
                break;
            }
        }
        Ok((start, received))
    }

    /// The suite to hand over with, when everything rustls was given is consumed.
    fn ready_to_hand_over(&self) -> Option<record::Suite> {
        match &self.state {
            // A close still due is rustls's to encode: the hand-over waits for it.
            State::Rustls(rustls) if self.handshake_done && !self.close_requested => {
                rustls.ready_to_hand_over()
            }
            _ => None,
        }
    }

    /// Takes received ciphertext (decrypted in place); appends the plaintext it carried to
    /// `plaintext`. A record that arrived in part is kept until the rest comes.
    pub fn receive(
        &mut self,
        ciphertext: &mut [u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<Received, TlsError> {
        let was_handshaking = !self.handshake_done;
        let mut received = self.receive_and_keep_rest(ciphertext, plaintext)?;
        if self.hand_over_if_ready()? && !self.partial.is_empty() {
            // What rustls left unread is the record layer's now.
            let more = self.receive_and_keep_rest(&mut [], plaintext)?;
            received.peer_closed |= more.peer_closed;
        }
        received.handshake_done = was_handshaking && self.handshake_done;
        Ok(received)
    }

    fn receive_and_keep_rest(
        &mut self,
        ciphertext: &mut [u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<Received, TlsError> {
        if self.partial.is_empty() {
            let (used, received) = self.receive_some(ciphertext, plaintext)?;
            if used < ciphertext.len() {
                self.partial.extend_from_slice(&ciphertext[used..]);
            }
            Ok(received)
        } else {
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(ciphertext);
            let (used, received) = self.receive_some(&mut joined, plaintext)?;
            if used < joined.len() {
                joined.drain(..used);
                self.partial = joined;
            }
            Ok(received)
        }
    }

    /// Hands a TLS 1.3 connection over from rustls to the record layer once rustls has nothing
    /// more to do for it (`Handshake::ready_to_hand_over`); says whether it did.
    fn hand_over_if_ready(&mut self) -> Result<bool, TlsError> {
        let Some(suite) = self.ready_to_hand_over() else {
            return Ok(false);
        };
        let State::Rustls(rustls) = std::mem::replace(&mut self.state, State::Failed) else {
            return Ok(false);
        };
        self.state = State::Traffic(rustls.hand_over(suite)?);
        Ok(true)
    }

    /// Encrypts `plaintext` and appends the records (after any pending ones) to `out`.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if !self.handshake_done {
            return Err(TlsError::Protocol(
                "encrypt before the handshake ended".into(),
            ));
        }
        if let State::Traffic(traffic) = &mut self.state {
            out.append(&mut self.outgoing);
            self.outgoing = Vec::new();
            return traffic.encrypt(plaintext, out);
        }
        let mut work = Some((plaintext, &mut *out));
        self.drive_rustls(&mut [], &mut work, &mut Vec::new())?;
        if work.is_some() {
            return Err(TlsError::Protocol(
                "the connection cannot send any more".into(),
            ));
        }
        Ok(())
    }
}

/// The crypto provider of both sides: rustls's ring provider (builds with a C compiler alone,
/// no cmake). The suite order is left as rustls has it: past the handshake every suite costs
/// the same per connection (`record.rs` keeps keys unexpanded).
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

    /// `serve`'s configuration with a throwaway PKI in a directory of its own, and a client
    /// configuration trusting its CA (the directory, for the test to remove).
    fn own_configs(
        name: &str,
    ) -> (
        Arc<rustls::ServerConfig>,
        Arc<rustls::ClientConfig>,
        std::path::PathBuf,
    ) {
        let dir = std::env::temp_dir().join(format!("mcpstorm-tls-{name}-{}", std::process::id()));
        let pki = server::throwaway_pki(&dir).unwrap();
        let server_config = server::server_config(&pki.cert_file, &pki.key_file).unwrap();
        let options = TlsOptions {
            cacert: Some(pki.ca_file.clone()),
            insecure: false,
            no_resumption: false,
        };
        (server_config, client_config(&options, 4).unwrap(), dir)
    }

    /// Both sides of mcpstorm's own layer (unbuffered client and server): the whole exchange
    /// split at every byte in both directions, and an idle connection keeps no buffer.
    #[test]
    fn own_server_and_client_split_at_every_byte_and_idle_holds_no_buffer() {
        let (server_config, client_config, pki_dir) = own_configs("own");
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
            assert!(c.handed_over() && s.handed_over(), "split {split}");
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

    fn traffic(conn: &mut TlsConn) -> &mut traffic::Traffic {
        match &mut conn.state {
            State::Traffic(t) => t,
            _ => panic!("not handed over"),
        }
    }

    /// The client leaves rustls once the server's tickets are in; a KeyUpdate the server
    /// asks for is followed and answered (our KeyUpdate goes out before the next request).
    #[test]
    fn client_hands_over_and_follows_a_servers_key_update() {
        let pki = pki("keyupdate", &[b"http/1.1"]);
        let mut c = client(&pki);
        let mut s = ServerConnection::new(pki.server.clone()).unwrap();
        handshake(&mut c, &mut s, None);
        assert!(
            !c.handed_over(),
            "the client waits for the server's tickets"
        );
        c.receive(&mut server_output(&mut s), &mut Vec::new())
            .unwrap();
        assert!(c.handed_over());
        for round in 0..3 {
            s.refresh_traffic_keys().unwrap();
            s.writer().write_all(b"pong").unwrap();
            let mut plain = Vec::new();
            c.receive(&mut server_output(&mut s), &mut plain).unwrap();
            assert_eq!(plain, b"pong", "round {round}");
            assert!(c.wants_write(), "the reply KeyUpdate is due");
            let mut wire = Vec::new();
            c.encrypt(b"ping", &mut wire).unwrap();
            server_input(&mut s, &wire);
            let mut got = [0; 4];
            std::io::Read::read_exact(&mut s.reader(), &mut got).unwrap();
            assert_eq!(&got, b"ping", "round {round}");
        }
        let _ = std::fs::remove_file(&pki.ca_file);
    }

    /// `serve`'s side against rustls's client: handed over with the handshake, and the
    /// client's KeyUpdate followed.
    #[test]
    fn server_hands_over_and_follows_a_clients_key_update() {
        let (server_config, config, dir) = own_configs("ku");
        let mut c =
            rustls::ClientConnection::new(config, server_name("localhost").unwrap()).unwrap();
        let mut s = TlsConn::server(&server_config).unwrap();
        let mut plain = Vec::new();
        let to_client = |s: &mut TlsConn, c: &mut rustls::ClientConnection| {
            let mut wire = Vec::new();
            s.take_output(&mut wire);
            let mut bytes = &wire[..];
            while !bytes.is_empty() {
                c.read_tls(&mut bytes).unwrap();
                c.process_new_packets().unwrap();
            }
        };
        for _ in 0..3 {
            let mut wire = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut wire).unwrap();
            }
            s.receive(&mut wire, &mut plain).unwrap();
            to_client(&mut s, &mut c);
        }
        assert!(s.handed_over() && !c.is_handshaking());
        for round in 0..3 {
            c.refresh_traffic_keys().unwrap();
            c.writer().write_all(b"ping").unwrap();
            let mut wire = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut wire).unwrap();
            }
            plain.clear();
            s.receive(&mut wire, &mut plain).unwrap();
            assert_eq!(plain, b"ping", "round {round}");
            let mut out = Vec::new();
            s.encrypt(b"pong", &mut out).unwrap();
            let mut bytes = &out[..];
            while !bytes.is_empty() {
                c.read_tls(&mut bytes).unwrap();
                c.process_new_packets().unwrap();
            }
            let mut got = [0; 4];
            std::io::Read::read_exact(&mut c.reader(), &mut got).unwrap();
            assert_eq!(&got, b"pong", "round {round}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Both sides ours, handed over.
    fn own_pair(name: &str) -> (TlsConn, TlsConn, std::path::PathBuf) {
        let (server_config, config, dir) = own_configs(name);
        let mut c = TlsConn::client(&config, server_name("localhost").unwrap()).unwrap();
        let mut s = TlsConn::server(&server_config).unwrap();
        let mut plain = Vec::new();
        for _ in 0..4 {
            let mut wire = Vec::new();
            c.take_output(&mut wire);
            s.receive(&mut wire, &mut plain).unwrap();
            let mut wire = Vec::new();
            s.take_output(&mut wire);
            c.receive(&mut wire, &mut plain).unwrap();
        }
        assert!(c.handed_over() && s.handed_over() && plain.is_empty());
        (c, s, dir)
    }

    /// A key at its confidentiality limit is replaced before the record that would pass it.
    #[test]
    fn a_key_at_its_limit_is_updated_before_sending() {
        let (mut c, mut s, dir) = own_pair("limit");
        let limit = 1 << 24;
        traffic(&mut c).force_seqs(limit - 1, 0);
        traffic(&mut s).force_seqs(0, limit - 1);
        let mut wire = Vec::new();
        c.encrypt(b"x", &mut wire).unwrap();
        let mut plain = Vec::new();
        s.receive(&mut wire, &mut plain).unwrap();
        assert_eq!(plain, b"x");
        assert_eq!(traffic(&mut c).seqs().0, 1);
        assert_eq!(traffic(&mut s).seqs().1, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What a peer may send past the handshake, and what it must not: each by cause.
    #[test]
    fn post_handshake_messages_and_alerts() {
        use record::{CONTENT_ALERT, CONTENT_APPLICATION_DATA, CONTENT_HANDSHAKE};
        // A KeyUpdate cut across two records: held (part of a record) until whole.
        let (mut c, mut s, dir) = own_pair("post");
        let mut wire = Vec::new();
        traffic(&mut s).seal_raw(CONTENT_HANDSHAKE, &[24, 0, 0], &mut wire);
        c.receive(&mut wire, &mut Vec::new()).unwrap();
        assert!(c.holds_partial_record());
        let mut wire = Vec::new();
        traffic(&mut s).seal_raw(CONTENT_HANDSHAKE, &[1, 0], &mut wire);
        c.receive(&mut wire, &mut Vec::new()).unwrap();
        assert!(!c.holds_partial_record());
        // The server side moves to its next key by hand, as a peer sending KeyUpdate does.
        let next = {
            let t = traffic(&mut s);
            let mut wire = Vec::new();
            t.seal_raw(CONTENT_APPLICATION_DATA, b"after", &mut wire);
            wire
        };
        // Sealed under the old key: the client, already on the next one, cannot open it.
        assert!(c.receive(&mut next.clone(), &mut Vec::new()).is_err());

        // A late ticket is ignored; a ClientHello is not something a server sends now.
        let (mut c, mut s, dir2) = own_pair("post2");
        let mut wire = Vec::new();
        traffic(&mut s).seal_raw(CONTENT_HANDSHAKE, &[4, 0, 0, 1, 0], &mut wire);
        traffic(&mut s).seal_raw(CONTENT_APPLICATION_DATA, b"ok", &mut wire);
        let mut plain = Vec::new();
        c.receive(&mut wire, &mut plain).unwrap();
        assert_eq!(plain, b"ok");
        let mut wire = Vec::new();
        traffic(&mut s).seal_raw(CONTENT_HANDSHAKE, &[1, 0, 0, 0], &mut wire);
        let error = c.receive(&mut wire, &mut Vec::new()).unwrap_err();
        assert!(matches!(error, TlsError::Protocol(_)), "{error}");

        // Data after a KeyUpdate in the same record; a fatal alert; close_notify then data.
        let (mut c, mut s, dir3) = own_pair("post3");
        let mut wire = Vec::new();
        traffic(&mut s).seal_raw(CONTENT_HANDSHAKE, &[24, 0, 0, 1, 0, 4, 0, 0, 0], &mut wire);
        let error = c.receive(&mut wire, &mut Vec::new()).unwrap_err();
        assert!(matches!(error, TlsError::Protocol(_)), "{error}");
        let (mut c, mut s, dir4) = own_pair("post4");
        let mut wire = Vec::new();
        traffic(&mut s).seal_raw(CONTENT_ALERT, &[2, 40], &mut wire);
        let error = c.receive(&mut wire, &mut Vec::new()).unwrap_err();
        assert_eq!(error, TlsError::Alert("HandshakeFailure".into()));
        let mut wire = Vec::new();
        traffic(&mut c).seal_raw(CONTENT_ALERT, &[1, 0], &mut wire);
        traffic(&mut c).seal_raw(CONTENT_APPLICATION_DATA, b"ignored", &mut wire);
        let mut plain = Vec::new();
        let received = s.receive(&mut wire, &mut plain).unwrap();
        assert!(received.peer_closed && plain.is_empty());
        // Our own close_notify, sent once, and nothing encrypts after it.
        s.close();
        s.close();
        let mut wire = Vec::new();
        s.take_output(&mut wire);
        let received = c.receive(&mut wire, &mut Vec::new());
        assert!(received.is_err() || received.unwrap().peer_closed);
        assert!(s.encrypt(b"late", &mut Vec::new()).is_err());
        for dir in [dir, dir2, dir3, dir4] {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// The server's tickets and its first response in one stream, split at every byte: the
    /// hand-over happens wherever the tickets end, and what rustls left unread of the
    /// response is completed by the record layer.
    #[test]
    fn hand_over_mid_stream_split_at_every_byte() {
        let pki = pki("midstream", &[b"http/1.1"]);
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let mut longest = usize::MAX;
        let mut split = 0;
        while split <= longest {
            let mut c = client(&pki);
            let mut s = ServerConnection::new(pki.server.clone()).unwrap();
            handshake(&mut c, &mut s, None);
            let mut stream = server_output(&mut s);
            s.writer().write_all(response).unwrap();
            stream.extend(server_output(&mut s));
            longest = stream.len();
            let at = split.min(stream.len());
            let mut plain = Vec::new();
            c.receive(&mut stream[..at], &mut plain).unwrap();
            c.receive(&mut stream[at..], &mut plain).unwrap();
            assert_eq!(&plain[..], &response[..], "split {at}");
            assert!(c.handed_over() && !c.holds_partial_record(), "split {at}");
            // And the next exchange goes through the record layer.
            s.writer().write_all(b"more").unwrap();
            let mut plain = Vec::new();
            c.receive(&mut server_output(&mut s), &mut plain).unwrap();
            assert_eq!(plain, b"more");
            split += 1;
        }
        let _ = std::fs::remove_file(&pki.ca_file);
    }

    proptest::proptest! {
        /// Whatever arrives past the hand-over, in any pieces: an error by cause or bytes out,
        /// never a panic; records sealed by the peer in between still decide the outcome.
        #[test]
        fn arbitrary_bytes_past_the_hand_over_never_panic(
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cut in 0usize..300,
            valid_first in proptest::bool::ANY,
        ) {
            let (mut c, mut s, dir) = own_pair("prop");
            let mut wire = Vec::new();
            if valid_first {
                s.encrypt(b"hello", &mut wire).unwrap();
            }
            wire.extend_from_slice(&garbage);
            let at = cut.min(wire.len());
            let mut plain = Vec::new();
            let first = c.receive(&mut wire[..at], &mut plain);
            let _ = first.and_then(|_| c.receive(&mut wire[at..], &mut plain));
            proptest::prop_assert!(plain.is_empty() || plain.starts_with(b"hello"));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// The server's tickets, a KeyUpdate it asks an answer to, and data, all in one read:
    /// rustls takes the tickets, the record layer the KeyUpdate (rustls would have dropped
    /// its answer with itself), split at every byte.
    #[test]
    fn a_key_update_right_behind_the_tickets_is_the_record_layers() {
        let pki = pki("ku-behind", &[b"http/1.1"]);
        let mut split = 0;
        let mut longest = usize::MAX;
        while split <= longest {
            let mut c = client(&pki);
            let mut s = ServerConnection::new(pki.server.clone()).unwrap();
            handshake(&mut c, &mut s, None);
            let mut stream = server_output(&mut s);
            s.refresh_traffic_keys().unwrap();
            s.writer().write_all(b"pong").unwrap();
            stream.extend(server_output(&mut s));
            longest = stream.len();
            let at = split.min(stream.len());
            let mut plain = Vec::new();
            c.receive(&mut stream[..at], &mut plain).unwrap();
            c.receive(&mut stream[at..], &mut plain).unwrap();
            assert_eq!(plain, b"pong", "split {at}");
            assert!(c.handed_over() && c.wants_write(), "split {at}");
            let mut wire = Vec::new();
            c.encrypt(b"ping", &mut wire).unwrap();
            server_input(&mut s, &wire);
            let mut got = [0; 4];
            std::io::Read::read_exact(&mut s.reader(), &mut got).unwrap();
            assert_eq!(&got, b"ping", "split {at}");
            split += 1;
        }
        let _ = std::fs::remove_file(&pki.ca_file);
    }
}
