//! The TLS 1.3 application traffic secrets of the handshake a shard is driving, caught from
//! rustls's `KeyLog` hook. `record.rs` needs them to follow a KeyUpdate once rustls has handed
//! the connection over (rustls hands over the derived key and IV, not the secret). Part of
//! `tls/`.
//!
//! rustls calls the hook from inside `process_tls_records`, on the thread driving that one
//! connection; `TlsConn` clears the slot before it drives a handshake and takes what landed
//! right after, so a secret can only belong to the connection just driven. Nothing is written
//! anywhere.

use std::cell::RefCell;

const CLIENT_LABEL: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER_LABEL: &str = "SERVER_TRAFFIC_SECRET_0";

/// The two first-generation application traffic secrets of one handshake.
#[derive(Clone, Default)]
pub struct TrafficSecrets {
    pub client: Option<Secret>,
    pub server: Option<Secret>,
}

impl std::fmt::Debug for TrafficSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never go into a log.
        write!(
            f,
            "TrafficSecrets {{ client: {}, server: {} }}",
            self.client.is_some(),
            self.server.is_some()
        )
    }
}

/// A secret of at most 48 bytes (SHA-384), `len` used.
#[derive(Clone, Copy)]
pub struct Secret {
    bytes: [u8; 48],
    len: u8,
}

impl Secret {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

thread_local! {
    static CAUGHT: RefCell<TrafficSecrets> = RefCell::default();
}

/// Forgets whatever an earlier handshake left (before driving a handshake).
pub fn clear() {
    CAUGHT.with(|c| *c.borrow_mut() = TrafficSecrets::default());
}

/// Moves what the last drive logged into `into` (keeping what `into` had otherwise).
pub fn take_into(into: &mut TrafficSecrets) {
    CAUGHT.with(|c| {
        let caught = std::mem::take(&mut *c.borrow_mut());
        if caught.client.is_some() {
            into.client = caught.client;
        }
        if caught.server.is_some() {
            into.server = caught.server;
        }
    });
}

/// The hook both configurations carry (`client_config`, `server_config`).
#[derive(Debug)]
pub struct CatchTrafficSecrets;

impl rustls::KeyLog for CatchTrafficSecrets {
    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_LABEL || label == SERVER_LABEL
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if secret.len() > 48 {
            return;
        }
        let mut bytes = [0; 48];
        bytes[..secret.len()].copy_from_slice(secret);
        let secret = Secret {
            bytes,
            len: secret.len() as u8,
        };
        CAUGHT.with(|c| {
            let mut caught = c.borrow_mut();
            match label {
                CLIENT_LABEL => caught.client = Some(secret),
                SERVER_LABEL => caught.server = Some(secret),
                _ => {}
            }
        });
    }
}
