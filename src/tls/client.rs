//! The client side of TLS (`run` against `https://`): roots (system or `--cacert`),
//! `--insecure`, ALPN `http/1.1`, SNI from the URL's host, and a session-ticket store sized
//! for every connection so a reconnect storm resumes instead of repeating full handshakes.
//! Part of `tls/`.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionStore, Resumption};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// How the server's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust only the certificates in this PEM file (instead of the system roots).
    pub cacert: Option<std::path::PathBuf>,
    /// Accept any certificate (said in the report).
    pub insecure: bool,
    /// Never resume a session: every connection does the full handshake (a cold-start storm,
    /// or a server whose tickets should not be trusted to measure).
    pub no_resumption: bool,
}

/// The client configuration of one shard (its own ticket store: no lock shared with other
/// shards). `tickets_max`: session tickets kept per server name, one per connection.
pub fn client_config(
    options: &TlsOptions,
    tickets_max: usize,
) -> Result<Arc<ClientConfig>, String> {
    let provider = super::provider();
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
    // A TLS 1.3 connection leaves rustls after the handshake (`tls/traffic.rs`): rustls hands
    // its keys over, and the secrets it logs let the record layer follow a KeyUpdate.
    config.enable_secret_extraction = true;
    config.key_log = Arc::new(super::CatchTrafficSecrets);
    config.resumption = if options.no_resumption {
        Resumption::disabled()
    } else {
        Resumption::store(Arc::new(TicketStore::new(tickets_max)))
    };
    Ok(Arc::new(config))
}

/// The server name for SNI and certificate checks, from the URL's host.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?}: not a TLS server name ({e})"))
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
