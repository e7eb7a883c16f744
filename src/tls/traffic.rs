//! A TLS 1.3 connection past the handshake, rustls dropped: records opened and sealed by
//! `record.rs`, and the post-handshake messages handled here (RFC 8446 §4.6): KeyUpdate in
//! both directions, a late NewSessionTicket, alerts and close_notify. I/O-free; `TlsConn` in
//! `mod.rs` keeps the bytes of a record that arrived in part.

use super::record::{self, DirectionKeys, RecordError, Suite};
use super::{Received, TlsError};

pub(super) struct Traffic {
    suite: Suite,
    tx: DirectionKeys,
    rx: DirectionKeys,
    is_client: bool,
    /// A post-handshake handshake message that arrived in part (allocated only then).
    handshake_partial: Vec<u8>,
    /// close_notify came: whatever follows is ignored (RFC 8446 §6.1).
    peer_closed: bool,
    close_sent: bool,
}

fn protocol(e: RecordError) -> TlsError {
    TlsError::Protocol(e.to_string())
}

impl Traffic {
    pub fn new(suite: Suite, tx: DirectionKeys, rx: DirectionKeys, is_client: bool) -> Traffic {
        Traffic {
            suite,
            tx,
            rx,
            is_client,
            handshake_partial: Vec::new(),
            peer_closed: false,
            close_sent: false,
        }
    }

    /// A post-handshake message cut across records is held here: part of a record for the
    /// truncation check.
    pub fn holds_partial_message(&self) -> bool {
        !self.handshake_partial.is_empty()
    }

    /// Opens every whole record at the start of `input` in place, appending application data
    /// to `plaintext` and records due in reply (a KeyUpdate) to `outgoing`; returns how many
    /// bytes it consumed (the rest is a record still arriving).
    pub fn receive(
        &mut self,
        input: &mut [u8],
        plaintext: &mut Vec<u8>,
        outgoing: &mut Vec<u8>,
    ) -> Result<(usize, Received), TlsError> {
        let mut received = Received::default();
        let mut at = 0;
        while !self.peer_closed {
            let len = match record::record_len(&input[at..]) {
                None => break,
                Some(len) => len.map_err(protocol)?,
            };
            if input.len() - at < len {
                break;
            }
            let record = &mut input[at..at + len];
            at += len;
            let (kind, range) = self.rx.open(self.suite, record).map_err(protocol)?;
            let body = &record[range];
            match kind {
                record::CONTENT_APPLICATION_DATA => plaintext.extend_from_slice(body),
                record::CONTENT_ALERT => self.alert(body, &mut received)?,
                record::CONTENT_HANDSHAKE => self.handshake(body, outgoing)?,
                other => {
                    return Err(TlsError::Protocol(format!(
                        "unexpected content type {other} past the handshake"
                    )));
                }
            }
        }
        if self.peer_closed {
            // Nothing after close_notify counts: all of it is consumed.
            at = input.len();
        }
        Ok((at, received))
    }

    fn alert(&mut self, body: &[u8], received: &mut Received) -> Result<(), TlsError> {
        const CLOSE_NOTIFY: u8 = 0;
        const USER_CANCELED: u8 = 90;
        match body {
            [_, CLOSE_NOTIFY] => {
                self.peer_closed = true;
                received.peer_closed = true;
                Ok(())
            }
            // A warning that a close follows; the close_notify is what counts.
            [_, USER_CANCELED] => Ok(()),
            [_, description] => Err(TlsError::Alert(format!(
                "{:?}",
                rustls::AlertDescription::from(*description)
            ))),
            _ => Err(TlsError::Protocol(format!(
                "an alert of {} bytes",
                body.len()
            ))),
        }
    }

    fn handshake(&mut self, body: &[u8], outgoing: &mut Vec<u8>) -> Result<(), TlsError> {
        let joined;
        let mut rest = if self.handshake_partial.is_empty() {
            body
        } else {
            let mut bytes = std::mem::take(&mut self.handshake_partial);
            bytes.extend_from_slice(body);
            joined = bytes;
            &joined[..]
        };
        while let Some((kind, message, after)) = record::split_handshake_message(rest) {
            rest = after;
            match (kind, message) {
                (record::HANDSHAKE_KEY_UPDATE, [requested @ (0 | 1)]) => {
                    // A key change ends the record it came in (RFC 8446 §5.1).
                    if !rest.is_empty() {
                        return Err(TlsError::Protocol(
                            "data after a KeyUpdate in the same record".into(),
                        ));
                    }
                    self.rx.update(self.suite).map_err(protocol)?;
                    if *requested == 1 {
                        // Our own KeyUpdate, under the old key, before any more data.
                        self.send_key_update(outgoing)?;
                    }
                }
                // A ticket that came after the hand-over: the resumption store keeps the ones
                // the server sent with the handshake, which is when servers send them.
                (record::HANDSHAKE_NEW_SESSION_TICKET, _) if self.is_client => {}
                (kind, _) => {
                    return Err(TlsError::Protocol(format!(
                        "unexpected handshake message {kind} past the handshake"
                    )));
                }
            }
        }
        if rest.len() > record::MAX_CIPHERTEXT {
            return Err(TlsError::Protocol(
                "a post-handshake message over 16 KB".into(),
            ));
        }
        self.handshake_partial = rest.to_vec();
        Ok(())
    }

    fn send_key_update(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        // Checked first: a KeyUpdate sent without our side following it garbles the rest.
        if !self.tx.has_secret() {
            return Err(protocol(RecordError::NoTrafficSecret));
        }
        let message = record::key_update_message(false);
        self.tx
            .seal(self.suite, record::CONTENT_HANDSHAKE, &message, out)
            .map_err(protocol)?;
        self.tx.update(self.suite).map_err(protocol)
    }

    /// Appends `plaintext` to `out` as application_data records; a key near its
    /// confidentiality limit is replaced first (KeyUpdate).
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.close_sent {
            return Err(TlsError::Protocol(
                "the connection cannot send any more".into(),
            ));
        }
        let start = out.len();
        let records = plaintext.len().div_ceil(record::MAX_PLAINTEXT).max(1) as u64;
        let sealed = if self.tx.seq.saturating_add(records) >= self.suite.confidentiality_limit() {
            self.send_key_update(out)
        } else {
            Ok(())
        }
        .and_then(|()| {
            self.tx
                .seal(self.suite, record::CONTENT_APPLICATION_DATA, plaintext, out)
                .map_err(protocol)
        });
        if sealed.is_err() {
            // Nothing half-sealed goes out.
            out.truncate(start);
        }
        sealed
    }

    /// Appends close_notify to `out` (once).
    pub fn close(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        if std::mem::replace(&mut self.close_sent, true) {
            return Ok(());
        }
        // A warning-level close_notify (RFC 8446 §6.1).
        self.tx
            .seal(self.suite, record::CONTENT_ALERT, &[1, 0], out)
            .map_err(protocol)
    }

    #[cfg(test)]
    pub fn seqs(&self) -> (u64, u64) {
        (self.tx.seq, self.rx.seq)
    }

    /// Seals any content as this side would (a test playing a misbehaving peer).
    #[cfg(test)]
    pub fn seal_raw(&mut self, content_type: u8, body: &[u8], out: &mut Vec<u8>) {
        self.tx.seal(self.suite, content_type, body, out).unwrap();
    }

    /// Moves both sequence numbers (a test reaching the confidentiality limit).
    #[cfg(test)]
    pub fn force_seqs(&mut self, tx: u64, rx: u64) {
        self.tx.seq = tx;
        self.rx.seq = rx;
    }
}
