//! The fault's line on the path to the targets: every packet to them arrives on an NFQUEUE
//! (the iptables rules of `rules::queue_rules`) and is dropped (a partition: all; a loss: at
//! random), or waits here as an id and a release time and is accepted when its time comes
//! (latency). Runs on a thread of the guard process while the fault is on; when it stops,
//! everything held is released at once (the path heals with the fault). Part of
//! `netfault/`; the wire format is `nfqueue.rs`'s.
//!
//! Why drops go through the queue and not an nftables `drop` on output: a packet dropped by
//! a local hook is an error the sending TCP sees at once (it neither counts a retransmit nor
//! runs its loss recovery, and probes on a timer of its own), while a queued packet is, for
//! TCP, sent — dropping it later is a loss on the wire, recovered as one (RTO, tail loss
//! probes, retransmits counted by the kernel).
//!
//! One verdict per packet, never a batch: ids are assigned at enqueue on whichever CPU sent
//! the packet, so they can reach the socket slightly out of order, and a batch verdict ("all
//! ids up to N") would release a late-delivered packet early.

use super::nfqueue::{self, Incoming};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Packets the kernel may hold for us (100 ms at 40K packets/s is 4,000); past it the
/// queue fails open (the packet passes undelayed) rather than dropping.
const QUEUE_MAX_LEN: u32 = 262_144;
/// Receive buffer asked for (SO_RCVBUFFORCE, root): bursts of packet messages fit in it.
const RCVBUF_BYTES: i32 = 32 << 20;
/// How long the loop sleeps at most between checks of its stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);
/// Queue numbers tried from the first one, when others are taken by another program.
const QUEUE_TRIES: u16 = 64;

/// What the delay line did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DelayStats {
    pub packets_delayed: u64,
    /// Dropped by the line (every one in a partition, a share in a loss).
    #[serde(default)]
    pub packets_dropped: u64,
    /// Let through at once (a loss's survivors).
    #[serde(default)]
    pub packets_passed: u64,
    /// Most packets held at once.
    pub held_max: u64,
    /// Messages that could not be read (a length that lied): skipped.
    pub bad_messages: u64,
}

pub struct Delayer {
    fd: OwnedFd,
    queue: u16,
    delay_ns: u64,
    jitter_ns: u64,
    /// Share of the packets dropped, per million (1,000,000: a partition).
    drop_per_million: u32,
    /// (release time since `epoch`, packet id), soonest first.
    held: BinaryHeap<Reverse<(u64, u32)>>,
    epoch: Instant,
    rng: u64,
    out: Vec<u8>,
    recv_buf: Vec<u8>,
    seq: u32,
    stats: DelayStats,
}

fn errno_result(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Delayer {
    /// Opens a netlink socket and binds the first free queue from `first_queue` on; each
    /// packet is dropped with `drop_per_million` odds, else delayed `delay` ± `jitter`.
    pub fn open(
        first_queue: u16,
        delay: Duration,
        jitter: Duration,
        drop_per_million: u32,
    ) -> io::Result<Delayer> {
        // SAFETY: a plain socket(2) call; the descriptor it returns is owned by `fd` at once.
        let raw = errno_result(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                nfqueue::NETLINK_NETFILTER,
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a zeroed sockaddr_nl is valid (pid 0 = let the kernel assign, no groups);
        // it lives on the stack across the call, which copies it.
        unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            errno_result(libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            ))?;
        }
        set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF_BYTES)
            .or_else(|_| set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF_BYTES))?;
        // An overrun (ENOBUFS) would only say that packets failed open; keep reading.
        set_int_option(&fd, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1)?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (std::process::id() as u64) << 32;
        let mut delayer = Delayer {
            fd,
            queue: first_queue,
            delay_ns: delay.as_nanos() as u64,
            jitter_ns: jitter.as_nanos() as u64,
            drop_per_million,
            held: BinaryHeap::new(),
            epoch: Instant::now(),
            rng: seed | 1,
            out: Vec::with_capacity(64),
            recv_buf: vec![0; 256 << 10],
            seq: 0,
            stats: DelayStats::default(),
        };
        let mut last = io::Error::from_raw_os_error(libc::EBUSY);
        for queue in first_queue..first_queue.saturating_add(QUEUE_TRIES) {
            match delayer.request(|out, seq| nfqueue::bind(out, seq, queue)) {
                Ok(()) => {
                    delayer.queue = queue;
                    let flags = nfqueue::CFG_F_FAIL_OPEN | nfqueue::CFG_F_GSO;
                    delayer.request(|out, seq| {
                        nfqueue::configure(out, seq, queue, QUEUE_MAX_LEN, flags)
                    })?;
                    return Ok(delayer);
                }
                // Taken by another socket (another run's line, an IPS): the kernel answers
                // EPERM (EBUSY on older kernels); try the next. Past the last try, EPERM may
                // also mean no CAP_NET_ADMIN: the error says both.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EPERM)) => {
                    last = e
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// The queue the iptables rules must send packets to.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Sends one configuration message and waits for its acknowledgement.
    fn request(&mut self, build: impl FnOnce(&mut Vec<u8>, u32)) -> io::Result<()> {
        self.seq += 1;
        let seq = self.seq;
        build(&mut self.out, seq);
        self.send_out()?;
        loop {
            // SAFETY: `recv_buf` outlives the call and its length is what the kernel may fill.
            let n = errno_result(unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.recv_buf.as_mut_ptr().cast(),
                    self.recv_buf.len(),
                    0,
                ) as libc::c_int
            })? as usize;
            for message in nfqueue::parse(&self.recv_buf[..n]) {
                if let Ok(Incoming::Ack { seq: s, errno }) = message
                    && s == seq
                {
                    return if errno == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-errno))
                    };
                }
            }
        }
    }

    fn send_out(&mut self) -> io::Result<()> {
        // SAFETY: `out` is alive and unchanged for the duration of the call.
        errno_result(unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                self.out.as_ptr().cast(),
                self.out.len(),
                0,
            ) as libc::c_int
        })
        .map(|_| ())
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// xorshift64*: cheap, and the draws need no quality beyond uniformity.
    fn draw(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// This packet's delay: the base, ± a uniform draw within the jitter.
    fn delay_for_next(&mut self) -> u64 {
        if self.jitter_ns == 0 {
            return self.delay_ns;
        }
        let draw = self.draw() % (2 * self.jitter_ns + 1);
        (self.delay_ns + draw).saturating_sub(self.jitter_ns)
    }

    /// Whether this packet is lost.
    fn drop_next(&mut self) -> bool {
        match self.drop_per_million {
            0 => false,
            1_000_000.. => true,
            odds => (self.draw() >> 11) % 1_000_000 < odds as u64,
        }
    }

    /// A verdict now, for a packet the line does not hold.
    fn verdict_now(&mut self, id: u32, verdict: u32) -> io::Result<()> {
        nfqueue::verdict(&mut self.out, self.queue, id, verdict);
        self.send_out()
    }

    /// Delays packets until `stop` is set, then releases everything held. Unbinds at the end.
    pub fn run(mut self, stop: &AtomicBool) -> io::Result<DelayStats> {
        while !stop.load(Ordering::Relaxed) {
            let now = self.now_ns();
            let wait_ns = match self.held.peek() {
                Some(Reverse((release, _))) => release.saturating_sub(now),
                None => u64::MAX,
            }
            .min(STOP_POLL.as_nanos() as u64);
            self.wait_readable(wait_ns)?;
            self.receive()?;
            self.release_due(self.now_ns())?;
        }
        self.release_due(u64::MAX)?;
        let queue = self.queue;
        // The rules are gone by now (the guard removes them first): nothing new arrives.
        let _ = self.request(|out, seq| nfqueue::unbind(out, seq, queue));
        Ok(self.stats)
    }

    fn wait_readable(&self, wait_ns: u64) -> io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = libc::timespec {
            tv_sec: (wait_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (wait_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: `pfd` and `timeout` live on the stack across the call.
        let rc = unsafe { libc::ppoll(&mut pfd, 1, &timeout, std::ptr::null()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Reads every datagram waiting, holding each packet with its release time.
    fn receive(&mut self) -> io::Result<()> {
        loop {
            // SAFETY: `recv_buf` outlives the call and its length is what the kernel may fill.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.recv_buf.as_mut_ptr().cast(),
                    self.recv_buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ENOBUFS) => Ok(()),
                    _ => Err(e),
                };
            }
            let arrived_ns = self.now_ns();
            // Taken out while its messages are read, so the draws can borrow `self`.
            let buf = std::mem::take(&mut self.recv_buf);
            for message in nfqueue::parse(&buf[..n as usize]) {
                match message {
                    Ok(Incoming::Packet { id }) if self.drop_next() => {
                        self.verdict_now(id, nfqueue::NF_DROP)?;
                        self.stats.packets_dropped += 1;
                    }
                    Ok(Incoming::Packet { id }) if self.delay_ns == 0 => {
                        self.verdict_now(id, nfqueue::NF_ACCEPT)?;
                        self.stats.packets_passed += 1;
                    }
                    Ok(Incoming::Packet { id }) => {
                        let release = arrived_ns + self.delay_for_next();
                        self.held.push(Reverse((release, id)));
                        self.stats.packets_delayed += 1;
                    }
                    Ok(_) => {}
                    Err(_) => self.stats.bad_messages += 1,
                }
            }
            self.recv_buf = buf;
            self.stats.held_max = self.stats.held_max.max(self.held.len() as u64);
        }
    }

    fn release_due(&mut self, now_ns: u64) -> io::Result<()> {
        while let Some(&Reverse((release, id))) = self.held.peek() {
            if release > now_ns {
                break;
            }
            self.held.pop();
            nfqueue::verdict(&mut self.out, self.queue, id, nfqueue::NF_ACCEPT);
            self.send_out()?;
        }
        Ok(())
    }
}

fn set_int_option(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` lives on the stack across the call, which copies it.
    errno_result(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delayer_without_socket(delay_ms: u64, jitter_ms: u64) -> Delayer {
        // A socket of any kind: only the draw is exercised.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        Delayer {
            fd: a.into(),
            queue: 0,
            delay_ns: delay_ms * 1_000_000,
            jitter_ns: jitter_ms * 1_000_000,
            drop_per_million: 0,
            held: BinaryHeap::new(),
            epoch: Instant::now(),
            rng: 0x9e37_79b9_7f4a_7c15,
            out: Vec::new(),
            recv_buf: Vec::new(),
            seq: 0,
            stats: DelayStats::default(),
        }
    }

    #[test]
    fn jitter_draws_stay_within_the_band_and_cover_it() {
        let mut d = delayer_without_socket(100, 20);
        let draws: Vec<u64> = (0..10_000).map(|_| d.delay_for_next()).collect();
        let (lo, hi) = (80_000_000, 120_000_000);
        assert!(draws.iter().all(|&x| (lo..=hi).contains(&x)));
        assert!(draws.iter().any(|&x| x < 82_000_000));
        assert!(draws.iter().any(|&x| x > 118_000_000));
        let mean = draws.iter().sum::<u64>() as f64 / draws.len() as f64;
        assert!((mean - 100e6).abs() < 1e6, "mean {mean}");
        let mut d = delayer_without_socket(100, 0);
        assert_eq!(d.delay_for_next(), 100_000_000);
        // Jitter wider than the delay never goes below zero.
        let mut d = delayer_without_socket(5, 20);
        assert!((0..1000).all(|_| d.delay_for_next() <= 25_000_000));
    }

    #[test]
    fn drops_follow_their_odds() {
        let mut d = delayer_without_socket(0, 0);
        assert!((0..1000).all(|_| !d.drop_next()));
        d.drop_per_million = 1_000_000;
        assert!((0..1000).all(|_| d.drop_next()));
        d.drop_per_million = 50_000;
        let dropped = (0..100_000).filter(|_| d.drop_next()).count();
        assert!(
            (4_000..6_000).contains(&dropped),
            "{dropped} of 100000 at 5%"
        );
    }
}
