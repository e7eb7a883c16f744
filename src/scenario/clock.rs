//! Clock offsets between a run's segments (issue 13): before its phases, each segment asks a
//! reference clock (`--clock-ref HOST:PORT`: segment 0's `--clock-serve PORT`, or `mcpstorm
//! clock --listen`) for its time over UDP, NTP-style, and reports its offset and the round trip
//! it was measured over; `mcpstorm merge` lines the segments' start times up with them. Part
//! of `scenario/`: the codec and the arithmetic are I/O-free (`Probe`, `Answer`, `Sample`);
//! `serve` and `measure` are the sockets.
//!
//! Four timestamps, UNIX ns: t0 the probe left, t1 the reference got it, t2 it answered, t3 the
//! answer arrived. offset = ((t1 − t0) + (t2 − t3)) / 2 (reference − this host), round trip =
//! (t3 − t0) − (t2 − t1); of several probes the one with the shortest round trip is kept (its
//! error is at most half of it).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 4] = b"MCLK";
const PROBE_LEN: usize = 16;
const ANSWER_LEN: usize = 32;
/// Probes answered before the best is kept.
const PROBES_WANTED: usize = 8;
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// A segment's clock against the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Reference − this host, ms: add it to this host's times to get the reference's.
    pub offset_ms: f64,
    /// The round trip the offset was measured over, ms (its error is at most half of it).
    pub rtt_ms: f64,
}

pub fn encode_probe(seq: u32, t0_ns: u64) -> [u8; PROBE_LEN] {
    let mut out = [0u8; PROBE_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4..8].copy_from_slice(&seq.to_be_bytes());
    out[8..16].copy_from_slice(&t0_ns.to_be_bytes());
    out
}

/// The reference's answer to `probe`, received at `t1_ns` and sent at `t2_ns`; None for
/// anything that is not a probe (a stray datagram is ignored, never answered).
pub fn answer(probe: &[u8], t1_ns: u64, t2_ns: u64) -> Option<[u8; ANSWER_LEN]> {
    if probe.len() != PROBE_LEN || &probe[..4] != MAGIC {
        return None;
    }
    let mut out = [0u8; ANSWER_LEN];
    out[..PROBE_LEN].copy_from_slice(probe);
    out[16..24].copy_from_slice(&t1_ns.to_be_bytes());
    out[24..32].copy_from_slice(&t2_ns.to_be_bytes());
    Some(out)
}

/// The sample an answer to probe `seq` gives, arriving at `t3_ns`; None for a malformed
/// answer, another probe's, or times that cannot be (a reference answering before it got the
/// probe).
pub fn sample_of(answer: &[u8], seq: u32, t3_ns: u64) -> Option<Sample> {
    if answer.len() != ANSWER_LEN || &answer[..4] != MAGIC {
        return None;
    }
    let word = |at: usize| u64::from_be_bytes(answer[at..at + 8].try_into().unwrap_or([0; 8]));
    if u32::from_be_bytes(answer[4..8].try_into().unwrap_or([0; 4])) != seq {
        return None;
    }
    let (t0, t1, t2) = (word(8) as i128, word(16) as i128, word(24) as i128);
    let t3 = t3_ns as i128;
    if t2 < t1 || t3 < t0 {
        return None;
    }
    let rtt = (t3 - t0) - (t2 - t1);
    if rtt < 0 {
        return None;
    }
    let offset = ((t1 - t0) + (t2 - t3)) / 2;
    Some(Sample {
        offset_ms: offset as f64 / 1e6,
        rtt_ms: rtt as f64 / 1e6,
    })
}

pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Answers probes on `socket` until the process ends (a thread of its own).
pub fn serve(socket: UdpSocket) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let t1 = unix_now_ns();
            if let Some(out) = answer(&buf[..n], t1, unix_now_ns()) {
                let _ = socket.send_to(&out, from);
            }
        }
    })
}

/// Binds the reference's socket (`--clock-serve PORT`, `clock --listen ADDR`).
pub fn bind(addr: SocketAddr) -> Result<UdpSocket, String> {
    UdpSocket::bind(addr).map_err(|e| format!("clock reference on {addr}: {e}"))
}

/// Probes `reference` until `PROBES_WANTED` answers came or `until` passed (the reference may
/// come up after this segment: it is asked again every probe timeout). The best sample.
pub fn measure(reference: SocketAddr, until: Instant) -> Option<Sample> {
    let local: SocketAddr = if reference.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = UdpSocket::bind(local).ok()?;
    socket.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let mut best: Option<Sample> = None;
    let mut answered = 0;
    let mut seq = 0u32;
    let mut buf = [0u8; 64];
    while answered < PROBES_WANTED && Instant::now() < until {
        seq = seq.wrapping_add(1);
        if socket
            .send_to(&encode_probe(seq, unix_now_ns()), reference)
            .is_err()
        {
            std::thread::sleep(PROBE_TIMEOUT);
            continue;
        }
        let deadline = Instant::now() + PROBE_TIMEOUT;
        while Instant::now() < deadline {
            let Ok(n) = socket.recv(&mut buf) else { break };
            if let Some(sample) = sample_of(&buf[..n], seq, unix_now_ns()) {
                answered += 1;
                if best.is_none_or(|b| sample.rtt_ms < b.rtt_ms) {
                    best = Some(sample);
                }
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_timestamps_give_the_offset_and_round_trip() {
        // This host 5 ms behind the reference, 2 ms each way, 1 ms at the reference.
        let t0 = 1_000_000_000u64;
        let probe = encode_probe(7, t0);
        let (t1, t2) = (t0 + 2_000_000 + 5_000_000, t0 + 3_000_000 + 5_000_000);
        let reply = answer(&probe, t1, t2).unwrap();
        let t3 = t0 + 5_000_000;
        let sample = sample_of(&reply, 7, t3).unwrap();
        assert_eq!(sample.offset_ms, 5.0);
        assert_eq!(sample.rtt_ms, 4.0);
        assert_eq!(sample_of(&reply, 8, t3), None, "another probe's answer");
        assert_eq!(sample_of(&reply[..31], 7, t3), None);
        assert_eq!(sample_of(&reply, 7, t0 - 1), None, "arrived before it left");
        assert_eq!(answer(b"MCLK", 1, 2), None);
        assert_eq!(answer(&[0u8; 16], 1, 2), None);
        let backwards = answer(&probe, t2, t1).unwrap();
        assert_eq!(sample_of(&backwards, 7, t3), None);
    }

    #[test]
    fn a_reference_on_loopback_is_measured_near_zero() {
        let socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        serve(socket);
        let sample = measure(addr, Instant::now() + Duration::from_secs(10)).unwrap();
        // One clock: the offset is within the round trip it was measured over.
        assert!(
            sample.offset_ms.abs() <= sample.rtt_ms.max(1.0),
            "{sample:?}"
        );
    }

    #[test]
    fn no_reference_is_none_once_the_time_is_up() {
        // A bound port nobody answers on.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        assert_eq!(
            measure(addr, Instant::now() + Duration::from_millis(300)),
            None
        );
    }
}
