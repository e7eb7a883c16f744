//! TLS for `https://` targets: the client configuration (system roots, `--cacert`,
//! `--insecure`, ALPN `http/1.1`, SNI from the URL's host, a session-ticket store sized for
//! every connection so a reconnect storm resumes instead of repeating full handshakes) and
//! one connection's TLS layer between the ring's bytes and the HTTP reader. Part of
//! `engine/`; I/O-free: ciphertext in, plaintext out, and back — the shard moves the bytes.
//!
//! rustls's buffered `ClientConnection` over byte slices: received ciphertext is handed over
//! from the ring's provided buffer (the buffer is recycled at once) and the plaintext drained
//! into the shard's scratch, so an idle connection holds only rustls's own state. The
//! unbuffered API would also spare that copy; it is the next step (see the closing note of
//! the reach work).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionStore, Resumption};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// How the server's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust only the certificates in this PEM file (instead of the system roots).
    pub cacert: Option<std::path::PathBuf>,
    /// Accept any certificate (said in the report).
    pub insecure: bool,
}

/// A TLS failure, by cause (each is its own error counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// The server's certificate failed verification (unknown issuer, wrong name, expired…).
    Certificate(String),
    /// The server sent a fatal alert.
    Alert(String),
    /// Anything else: a malformed record, a decryption failure, an unexpected message.
    Protocol(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Certificate(e) => write!(f, "certificate: {e}"),
            TlsError::Alert(e) => write!(f, "alert from the server: {e}"),
            TlsError::Protocol(e) => write!(f, "TLS protocol: {e}"),
        }
    }
}

fn classify(error: rustls::Error) -> TlsError {
    match error {
        rustls::Error::InvalidCertificate(e) => TlsError::Certificate(format!("{e:?}")),
        rustls::Error::AlertReceived(alert) => TlsError::Alert(format!("{alert:?}")),
        other => TlsError::Protocol(other.to_string()),
    }
}

/// The client configuration of one shard (its own ticket store: no lock shared with other
/// shards). `tickets_max`: session tickets kept per server name, one per connection.
pub fn client_config(
    options: &TlsOptions,
    tickets_max: usize,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut config = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &options.cacert {
            Some(path) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|iter| iter.collect())
                    .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!(
                        "--cacert {}: no certificate in the file",
                        path.display()
                    ));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(
                        "no system CA certificates found (install ca-certificates, or give --cacert FILE)"
                            .into(),
                    );
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::store(Arc::new(TicketStore::new(tickets_max)));
    Ok(Arc::new(config))
}

/// The server name for SNI and certificate checks, from the URL's host.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?}: not a TLS server name ({e})"))
}

/// One connection's TLS layer.
pub struct TlsConn {
    conn: ClientConnection,
}

/// What a receive found besides plaintext.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// The handshake completed with these bytes.
    pub handshake_done: bool,
    /// The server sent close_notify.
    pub peer_closed: bool,
}

impl TlsConn {
    pub fn new(config: &Arc<ClientConfig>, name: ServerName<'static>) -> Result<TlsConn, TlsError> {
        ClientConnection::new(config.clone(), name)
            .map(|conn| TlsConn { conn })
            .map_err(classify)
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The handshake resumed a session (a ticket from an earlier connection).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// TLS records waiting to be sent (handshake messages, alerts, encrypted data).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Appends every record waiting to be sent to `out`.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Takes received ciphertext; appends the plaintext it carried to `plaintext`.
    pub fn receive(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<Received, TlsError> {
        let was_handshaking = self.conn.is_handshaking();
        let mut received = Received::default();
        while !ciphertext.is_empty() {
            let taken = self
                .conn
                .read_tls(&mut ciphertext)
                .map_err(|e| TlsError::Protocol(e.to_string()))?;
            let state = self.conn.process_new_packets().map_err(classify)?;
            let mut available = state.plaintext_bytes_to_read();
            while available > 0 {
                let start = plaintext.len();
                plaintext.resize(start + available, 0);
                let read = self
                    .conn
                    .reader()
                    .read(&mut plaintext[start..])
                    .unwrap_or(0);
                plaintext.truncate(start + read);
                if read == 0 {
                    break;
                }
                available -= read;
            }
            if state.peer_has_closed() {
                received.peer_closed = true;
                break;
            }
            if taken == 0 {
                break;
            }
        }
        received.handshake_done = was_handshaking && !self.conn.is_handshaking();
        Ok(received)
    }

    /// Encrypts `plaintext` and appends the records (after any pending ones) to `out`.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        self.conn
            .writer()
            .write_all(plaintext)
            .map_err(|e| TlsError::Protocol(e.to_string()))?;
        self.take_output(out);
        Ok(())
    }
}

/// Session tickets kept per server name, oldest first, up to one per connection of the
/// shard: rustls's own cache keeps 8 per server, so after a fault 8 reconnects would resume
/// and the rest repeat the full handshake.
#[derive(Debug)]
struct TicketStore {
    tickets_max: usize,
    servers: Mutex<HashMap<ServerName<'static>, ServerTickets>>,
}

#[derive(Debug, Default)]
struct ServerTickets {
    kx_hint: Option<rustls::NamedGroup>,
    tls12: Option<rustls::client::Tls12ClientSessionValue>,
    tls13: VecDeque<rustls::client::Tls13ClientSessionValue>,
}

impl TicketStore {
    fn new(tickets_max: usize) -> TicketStore {
        TicketStore {
            tickets_max: tickets_max.max(1),
            servers: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, name: &ServerName<'_>, f: impl FnOnce(&mut ServerTickets) -> T) -> T {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        let key = name.to_owned();
        f(servers.entry(key).or_default())
    }
}

impl ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.with(&name, |s| s.kx_hint = Some(group));
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.with(name, |s| s.kx_hint)
    }

    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.with(&name, |s| s.tls12 = Some(value));
    }

    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.with(name, |s| s.tls12.clone())
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.with(name, |s| s.tls12 = None);
    }

    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        let max = self.tickets_max;
        self.with(&name, |s| {
            if s.tls13.len() >= max {
                s.tls13.pop_front();
            }
            s.tls13.push_back(value);
        });
    }

    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        // Newest first: the most likely to be still valid.
        self.with(name, |s| s.tls13.pop_back())
    }
}

/// `--insecure`: every certificate is accepted; handshake signatures are still checked (a
/// server must hold the key of the certificate it shows, whatever that certificate is).
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::ServerConnection;

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
        };
        let config = client_config(&options, 4).unwrap();
        TlsConn::new(&config, server_name("localhost").unwrap()).unwrap()
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
        let flight = server_output(server);
        let mut plain = Vec::new();
        let at = split.unwrap_or(flight.len()).min(flight.len());
        let first = client.receive(&flight[..at], &mut plain).unwrap();
        let second = client.receive(&flight[at..], &mut plain).unwrap();
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
        let tickets = server_output(&mut s);
        let mut plain = Vec::new();
        c.receive(&tickets, &mut plain).unwrap();
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
            let records = server_output(&mut s);
            let at = split.min(records.len());
            let mut plain = Vec::new();
            let first = c.receive(&records[..at], &mut plain).unwrap();
            // A partial record is held by rustls: nothing comes out until it is whole.
            if at < records.len() {
                assert!(plain.is_empty(), "split {at}");
            }
            c.receive(&records[at..], &mut plain).unwrap();
            assert_eq!(&plain[..], &response[..], "split {at}");
            assert!(!first.peer_closed);
        }
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
        let received = c.receive(&server_output(&mut s), &mut plain).unwrap();
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
            .receive(&server_output(&mut s), &mut Vec::new())
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
            .receive(&server_output(&mut s), &mut Vec::new())
            .unwrap_err();
        assert!(matches!(error, TlsError::Alert(_)), "{error}");

        // Bytes that are not TLS at all.
        let mut c = client(&trusted);
        let error = c
            .receive(b"HTTP/1.1 400 Bad Request\r\n\r\n", &mut Vec::new())
            .unwrap_err();
        assert!(matches!(error, TlsError::Protocol(_)), "{error}");

        // --insecure accepts the certificate nobody signed for us.
        let config = client_config(
            &TlsOptions {
                cacert: None,
                insecure: true,
            },
            4,
        )
        .unwrap();
        let mut c = TlsConn::new(&config, server_name("localhost").unwrap()).unwrap();
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
        };
        let config = client_config(&options, 16).unwrap();
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let mut c = TlsConn::new(&config, server_name("localhost").unwrap()).unwrap();
            let mut s = ServerConnection::new(pki.server.clone()).unwrap();
            handshake(&mut c, &mut s, None);
            c.receive(&server_output(&mut s), &mut Vec::new()).unwrap();
            kinds.push(c.resumed());
        }
        assert_eq!(kinds, [false, true, true]);
        let _ = std::fs::remove_file(&pki.ca_file);
    }
}
