//! The server side of TLS (`serve --tls-cert FILE --tls-key FILE`): the certificate chain and
//! key from PEM files, ALPN `http/1.1`, stateless session tickets (a client reconnecting after
//! a fault resumes without a server-side cache). And the throwaway CA + `localhost`
//! certificate `run --tls` gives its embedded server (rcgen). Part of `tls/`.

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("--tls-cert {}: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in the file",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("--tls-key {}: {e}", key_file.display()))?;
    let provider = super::provider();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // As on the client: past a TLS 1.3 handshake the record layer is `tls/traffic.rs`.
    config.enable_secret_extraction = true;
    config.key_log = Arc::new(super::CatchTrafficSecrets);
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS tickets: {e}"))?;
    // Stateless tickets carry the session: the cache would cost memory per client.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// Files of a throwaway PKI: a CA, and a `localhost` / 127.0.0.1 / ::1 certificate it signed.
#[derive(Debug, Clone)]
pub struct ThrowawayPki {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Writes a fresh CA and server certificate into `dir` (for `run --tls` and tests).
pub fn throwaway_pki(dir: &Path) -> Result<ThrowawayPki, String> {
    let fail = |e: &dyn std::fmt::Display| format!("throwaway certificate: {e}");
    let ca_key = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
    let mut ca_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| fail(&e))?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mcpstorm throwaway CA");
    let ca = ca_params.self_signed(&ca_key).map_err(|e| fail(&e))?;
    let key = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let cert = rcgen::CertificateParams::new(names)
        .map_err(|e| fail(&e))?
        .signed_by(&key, &ca, &ca_key)
        .map_err(|e| fail(&e))?;
    std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    let pki = ThrowawayPki {
        ca_file: dir.join("ca.pem"),
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server.key"),
    };
    std::fs::write(&pki.ca_file, ca.pem()).map_err(|e| fail(&e))?;
    std::fs::write(&pki.cert_file, cert.pem()).map_err(|e| fail(&e))?;
    std::fs::write(&pki.key_file, key.serialize_pem()).map_err(|e| fail(&e))?;
    Ok(pki)
}
