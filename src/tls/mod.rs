//! TLS for both sides — `run`'s `https://` targets and `serve --tls-cert` — as one layer
//! between the ring's bytes and the HTTP code: ciphertext in, plaintext out, and back. I/O-free
//! (the shards move the bytes); `client.rs` and `server.rs` build the rustls configurations.
//!
//! rustls's buffered connection over byte slices: received ciphertext is handed over straight
//! from the ring's provided buffer (recycled at once) and the plaintext drained into the
//! shard's scratch. rustls keeps a partial record and its own state per connection (about
//! 9 KB measured); its unbuffered API would decrypt in the provided buffer instead, the next
//! step for the memory figure.

pub mod client;
pub mod server;

pub use client::{TlsOptions, client_config, server_name};
use std::io::{Read, Write};
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

/// One connection's TLS layer (client or server side).
pub struct TlsConn {
    conn: rustls::Connection,
}

/// What a receive found besides plaintext.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// The handshake completed with these bytes.
    pub handshake_done: bool,
    /// The peer sent close_notify.
    pub peer_closed: bool,
}

impl TlsConn {
    /// The client side of a connection to `name`.
    pub fn client(
        config: &Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<TlsConn, TlsError> {
        rustls::ClientConnection::new(config.clone(), name)
            .map(|conn| TlsConn { conn: conn.into() })
            .map_err(classify)
    }

    /// The server side of an accepted connection.
    pub fn server(config: &Arc<rustls::ServerConfig>) -> Result<TlsConn, TlsError> {
        rustls::ServerConnection::new(config.clone())
            .map(|conn| TlsConn { conn: conn.into() })
            .map_err(classify)
    }

    /// Queues close_notify (sent with the next output).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
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
        };
        let config = client_config(&options, 16).unwrap();
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let mut c = TlsConn::client(&config, server_name("localhost").unwrap()).unwrap();
            let mut s = ServerConnection::new(pki.server.clone()).unwrap();
            handshake(&mut c, &mut s, None);
            c.receive(&server_output(&mut s), &mut Vec::new()).unwrap();
            kinds.push(c.resumed());
        }
        assert_eq!(kinds, [false, true, true]);
        let _ = std::fs::remove_file(&pki.ca_file);
    }
}
