//! The nfnetlink_queue wire format, I/O-free: the few messages the latency fault's delayer
//! (`delay.rs`) sends (bind, parameters, verdicts) and the one it reads (a queued packet's
//! id). Part of `netfault/`, run inside the guard process.
//!
//! Hand-written rather than the `nfq` crate: that crate hands out each packet as a `Message`
//! that keeps its whole receive buffer (a page) alive until its verdict, and a 100 ms delay
//! at 40K packets/s holds 4,000 of them; here a held packet is its 4-byte id and release
//! time, and the verdict is 32 bytes built on the stack.
//!
//! Layout (linux/netlink.h, linux/netfilter/nfnetlink.h, nfnetlink_queue.h): a 16-byte
//! `nlmsghdr` in host order, a 4-byte `nfgenmsg` whose `res_id` is the queue number in network
//! order, then attributes (`nlattr`: length and type in host order, payload padded to 4) whose
//! integer payloads are in network order.

/// `NETLINK_NETFILTER`: the netlink family of nfnetlink.
pub const NETLINK_NETFILTER: i32 = 12;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
/// Message types below this are netlink's own (noop, error, done, overrun).
const NLMSG_MIN_TYPE: u16 = 0x10;

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;

const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;

const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
/// Copy the packet's metadata only: the delayer needs its id, never its bytes.
const NFQNL_COPY_META: u8 = 1;

/// The kernel accepts (`NF_ACCEPT`) the packet instead of dropping it when the queue is full:
/// a fault that overflows weakens (counted by the kernel) rather than turning into loss.
pub const CFG_F_FAIL_OPEN: u32 = 0x1;
/// Hand GSO packets over whole instead of segmenting them first (cheaper; ids still one per
/// packet).
pub const CFG_F_GSO: u32 = 0x4;

/// `NF_ACCEPT`: let the packet go on.
pub const NF_ACCEPT: u32 = 1;
/// `NF_DROP`: free it; to the sender it was sent (lost on the way).
pub const NF_DROP: u32 = 0;

/// The longest message `verdict` builds.
pub const VERDICT_LEN: usize = NLMSG_HDRLEN + NFGENMSG_LEN + NLA_HDRLEN + 8;

/// Builds one message into `out` (cleared first): header, `nfgenmsg`, then the attributes.
fn message(out: &mut Vec<u8>, msg: u16, flags: u16, seq: u32, queue: u16, attrs: &[(u16, &[u8])]) {
    out.clear();
    out.extend_from_slice(&[0; NLMSG_HDRLEN]);
    // nfgenmsg: family AF_UNSPEC, version NFNETLINK_V0, res_id = queue (network order).
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&queue.to_be_bytes());
    for (kind, payload) in attrs {
        let len = (NLA_HDRLEN + payload.len()) as u16;
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let total = out.len() as u32;
    out[0..4].copy_from_slice(&total.to_ne_bytes());
    out[4..6].copy_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
    out[6..8].copy_from_slice(&flags.to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: addressed to the kernel.
}

fn config_command(out: &mut Vec<u8>, seq: u32, queue: u16, command: u8) {
    // nfqnl_msg_config_cmd: command, pad, pf (unused since Linux 3.8).
    let cmd = [command, 0, 0, 0];
    message(
        out,
        NFQNL_MSG_CONFIG,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        queue,
        &[(NFQA_CFG_CMD, &cmd)],
    );
}

/// Binds this socket to `queue` (the kernel answers `EBUSY` when another socket holds it).
pub fn bind(out: &mut Vec<u8>, seq: u32, queue: u16) {
    config_command(out, seq, queue, NFQNL_CFG_CMD_BIND);
}

pub fn unbind(out: &mut Vec<u8>, seq: u32, queue: u16) {
    config_command(out, seq, queue, NFQNL_CFG_CMD_UNBIND);
}

/// Metadata only, at most `max_len` packets held by the kernel, and `flags` (`CFG_F_*`).
pub fn configure(out: &mut Vec<u8>, seq: u32, queue: u16, max_len: u32, flags: u32) {
    // nfqnl_msg_config_params: copy_range (network order) then copy_mode, packed (5 bytes).
    let mut params = [0u8; 5];
    params[4] = NFQNL_COPY_META;
    let max_len = max_len.to_be_bytes();
    let mask = flags.to_be_bytes();
    message(
        out,
        NFQNL_MSG_CONFIG,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        queue,
        &[
            (NFQA_CFG_PARAMS, &params),
            (NFQA_CFG_QUEUE_MAXLEN, &max_len),
            (NFQA_CFG_MASK, &mask),
            (NFQA_CFG_FLAGS, &mask),
        ],
    );
}

/// `verdict` for the packet `id` of `queue` (no acknowledgement asked: one send per packet).
pub fn verdict(out: &mut Vec<u8>, queue: u16, id: u32, verdict: u32) {
    let mut hdr = [0u8; 8];
    hdr[..4].copy_from_slice(&verdict.to_be_bytes());
    hdr[4..].copy_from_slice(&id.to_be_bytes());
    message(
        out,
        NFQNL_MSG_VERDICT,
        NLM_F_REQUEST,
        0,
        queue,
        &[(NFQA_VERDICT_HDR, &hdr)],
    );
}

/// One message read from the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A queued packet, waiting for its verdict.
    Packet { id: u32 },
    /// The answer to a request sent with `NLM_F_ACK`: 0 = done, else a negative errno.
    Ack { seq: u32, errno: i32 },
    /// Anything else (netlink's own messages, other nfqueue types): skipped.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// A length field that points past the datagram or below its own header.
    BadLength,
    /// A packet message without its `NFQA_PACKET_HDR`.
    NoPacketHeader,
}

/// The messages of one received datagram, in order. A datagram holds whole messages only
/// (netlink never splits one); a bad length ends the walk with an error.
pub fn parse(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

pub struct Messages<'a> {
    rest: &'a [u8],
}

impl Iterator for Messages<'_> {
    type Item = Result<Incoming, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(self.rest[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(ParseError::BadLength));
        }
        let kind = u16::from_ne_bytes([self.rest[4], self.rest[5]]);
        let seq = u32::from_ne_bytes(self.rest[8..12].try_into().ok()?);
        let body = &self.rest[NLMSG_HDRLEN..len];
        self.rest = &self.rest[align4(len).min(self.rest.len())..];
        Some(match kind {
            NLMSG_ERROR if body.len() >= 4 => Ok(Incoming::Ack {
                seq,
                errno: i32::from_ne_bytes([body[0], body[1], body[2], body[3]]),
            }),
            NLMSG_ERROR => Err(ParseError::BadLength),
            NLMSG_DONE => Ok(Incoming::Other),
            k if k < NLMSG_MIN_TYPE => Ok(Incoming::Other),
            k if k == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET => packet(body),
            _ => Ok(Incoming::Other),
        })
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A packet message's body (after the netlink header): its id from `NFQA_PACKET_HDR`.
fn packet(body: &[u8]) -> Result<Incoming, ParseError> {
    let mut attrs = body.get(NFGENMSG_LEN..).ok_or(ParseError::BadLength)?;
    while attrs.len() >= NLA_HDRLEN {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        // The top bits of the type are flags (nested, network order).
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < NLA_HDRLEN || len > attrs.len() {
            return Err(ParseError::BadLength);
        }
        if kind == NFQA_PACKET_HDR && len >= NLA_HDRLEN + 4 {
            let id = u32::from_be_bytes([attrs[4], attrs[5], attrs[6], attrs[7]]);
            return Ok(Incoming::Packet { id });
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    Err(ParseError::NoPacketHeader)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet message as the kernel sends it: header, nfgenmsg, a mark attribute first,
    /// then the packet header (id, hw protocol, hook).
    fn packet_message(id: u32, seq: u32) -> Vec<u8> {
        let mut m = Vec::new();
        let mark = 7u32.to_be_bytes();
        let mut hdr = [0u8; 7];
        hdr[..4].copy_from_slice(&id.to_be_bytes());
        hdr[4..6].copy_from_slice(&0x0800u16.to_be_bytes());
        hdr[6] = 3;
        message(
            &mut m,
            NFQNL_MSG_PACKET,
            0,
            seq,
            5,
            &[(3, &mark), (NFQA_PACKET_HDR, &hdr)],
        );
        m
    }

    fn ack(seq: u32, errno: i32) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDRLEN];
        m.extend_from_slice(&errno.to_ne_bytes());
        // The error message echoes the request's header.
        m.extend_from_slice(&[0u8; NLMSG_HDRLEN]);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m
    }

    #[test]
    fn a_verdict_is_the_kernel_layout_byte_by_byte() {
        let mut out = Vec::new();
        verdict(&mut out, 0x4d01, 0x0102_0304, NF_ACCEPT);
        assert_eq!(out.len(), VERDICT_LEN);
        let mut want = Vec::new();
        want.extend_from_slice(&(VERDICT_LEN as u32).to_ne_bytes());
        want.extend_from_slice(&0x0301u16.to_ne_bytes());
        want.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        want.extend_from_slice(&[0; 8]); // seq, pid
        want.extend_from_slice(&[0, 0, 0x4d, 0x01]); // nfgenmsg, queue in network order
        want.extend_from_slice(&12u16.to_ne_bytes());
        want.extend_from_slice(&NFQA_VERDICT_HDR.to_ne_bytes());
        want.extend_from_slice(&[0, 0, 0, 1, 1, 2, 3, 4]);
        assert_eq!(out, want);
    }

    #[test]
    fn configuration_pads_the_five_byte_params_and_asks_for_an_ack() {
        let mut out = Vec::new();
        configure(&mut out, 42, 3, 65536, CFG_F_FAIL_OPEN | CFG_F_GSO);
        assert_eq!(out.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(out[0..4].try_into().unwrap()) as usize,
            out.len()
        );
        assert_eq!(
            u16::from_ne_bytes([out[6], out[7]]),
            NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(u32::from_ne_bytes(out[8..12].try_into().unwrap()), 42);
        // params: len 9 (4 + 5), type 2, range 0, mode META, 3 pad bytes.
        let params = &out[20..32];
        assert_eq!(&params[..4], &[9, 0, 2, 0][..]);
        assert_eq!(&params[4..9], &[0, 0, 0, 0, NFQNL_COPY_META][..]);
        assert_eq!(&params[9..], &[0, 0, 0][..]);
        // maxlen follows, in network order.
        assert_eq!(&out[32..40], &[8, 0, 3, 0, 0, 1, 0, 0][..]);
        bind(&mut out, 1, 3);
        assert_eq!(&out[20..28], &[8, 0, 1, 0, NFQNL_CFG_CMD_BIND, 0, 0, 0][..]);
    }

    #[test]
    fn packets_and_acks_are_read_from_one_datagram() {
        let mut datagram = packet_message(11, 0);
        datagram.extend(ack(5, -16));
        datagram.extend(packet_message(12, 0));
        let got: Vec<_> = parse(&datagram).collect();
        assert_eq!(
            got,
            vec![
                Ok(Incoming::Packet { id: 11 }),
                Ok(Incoming::Ack { seq: 5, errno: -16 }),
                Ok(Incoming::Packet { id: 12 }),
            ]
        );
    }

    #[test]
    fn every_truncation_is_an_error_or_a_shorter_walk_never_a_panic() {
        let mut datagram = packet_message(11, 0);
        datagram.extend(ack(5, 0));
        for cut in 0..datagram.len() {
            let got: Vec<_> = parse(&datagram[..cut]).collect();
            // Whole messages before the cut are read; the cut one is an error or absent.
            for item in &got[..got.len().saturating_sub(1)] {
                assert!(item.is_ok(), "cut {cut}: {got:?}");
            }
        }
    }

    #[test]
    fn a_packet_without_its_header_or_with_a_lying_length_is_refused() {
        let mut m = Vec::new();
        message(&mut m, NFQNL_MSG_PACKET, 0, 0, 1, &[(3, &[0, 0, 0, 1])]);
        assert_eq!(parse(&m).next(), Some(Err(ParseError::NoPacketHeader)));
        let mut m = packet_message(1, 0);
        m[20] = 0xff; // first attribute's length past the message
        assert_eq!(parse(&m).next(), Some(Err(ParseError::BadLength)));
        let mut m = packet_message(1, 0);
        m[0] = 3; // message length below its header
        assert_eq!(parse(&m).next(), Some(Err(ParseError::BadLength)));
    }
}
