//! io_uring plumbing shared by the embedded server (`server/`) and the client engine
//! (`engine/`): ring setup with the fast-path flags, the kernel feature probe, a sparse
//! fixed-file (direct descriptor) table, a provided buffer ring, the `user_data` encoding and a
//! bounded SQ backlog. Knows nothing about HTTP or MCP; owns no connection state.
//!
//! A shard may own several rings because a ring's fixed-file table is capped at RLIMIT_NOFILE
//! (20,000 on the machines we run on) while a shard may hold far more sockets. The first ring of
//! a shard (the *leader*) is the one the shard thread blocks on; every other ring (a *follower*)
//! is watched by a multishot `POLL_ADD` on its ring fd submitted to the leader, so a completion
//! on any ring wakes the thread. Followers are set up without DEFER_TASKRUN: with it, their task
//! work would only run when *their* ring is entered, and a thread asleep on the leader would
//! never see them complete.

mod buf_ring;
pub mod pool;
mod user_data;

pub use buf_ring::BufRing;
pub use user_data::{Op, UserData};

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Sizes of one ring, decided by the plan before any socket opens.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    pub sq_entries: u32,
    pub cq_entries: u32,
    /// Size of the sparse fixed-file table; must be ≤ RLIMIT_NOFILE (the kernel refuses more).
    pub fixed_files: u32,
    pub buf_count: u16,
    pub buf_bytes: u32,
    /// Bound of the SQ backlog. Reaching it is a programmer error: the plan sized it from the
    /// number of operations a ring can have queued at once.
    pub backlog_max: usize,
}

/// Why a ring could not be set up; every variant names the fix.
#[derive(Debug)]
pub enum RingError {
    Disabled(String),
    MissingFeature {
        feature: &'static str,
        kernel_min: &'static str,
    },
    Setup {
        what: &'static str,
        source: io::Error,
    },
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::Disabled(why) => write!(f, "io_uring is not usable here: {why}"),
            RingError::MissingFeature {
                feature,
                kernel_min,
            } => write!(
                f,
                "this kernel lacks io_uring {feature} (needs Linux {kernel_min} or newer); \
                 run `mcpstorm doctor` for the full list"
            ),
            RingError::Setup { what, source } => write!(f, "io_uring {what} failed: {source}"),
        }
    }
}

impl std::error::Error for RingError {}

/// What the kernel offers, probed once at start.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelFeatures {
    pub ext_arg: bool,
    pub defer_taskrun: bool,
    pub socket_op: bool,
    pub bind_op: bool,
    pub multishot_accept: bool,
    pub multishot_recv: bool,
    pub buf_ring: bool,
}

/// Probes io_uring and fails with the missing feature and minimum kernel when the engine cannot
/// run. Features the engine can do without are reported, not required.
pub fn probe_kernel() -> Result<KernelFeatures, RingError> {
    let features = probe_features()?;
    let required: [(bool, &'static str, &'static str); 4] = [
        (features.ext_arg, "EXT_ARG (wait with timeout)", "5.11"),
        (
            features.socket_op,
            "IORING_OP_SOCKET with direct descriptors",
            "5.19",
        ),
        (
            features.multishot_accept,
            "multishot accept into auto slots",
            "5.19",
        ),
        (
            features.multishot_recv && features.buf_ring,
            "multishot recv with buffer rings",
            "6.0",
        ),
    ];
    for (present, feature, kernel_min) in required {
        if !present {
            return Err(RingError::MissingFeature {
                feature,
                kernel_min,
            });
        }
    }
    Ok(features)
}

/// What io_uring offers here, without judging it (`mcpstorm doctor` reports each feature).
/// Fails only when no ring can be created at all.
pub fn probe_features() -> Result<KernelFeatures, RingError> {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        match text.trim() {
            "2" => {
                return Err(RingError::Disabled(
                    "kernel.io_uring_disabled = 2; fix: sysctl -w kernel.io_uring_disabled=0"
                        .into(),
                ));
            }
            "1" => {
                // 1 = only members of kernel.io_uring_group (or CAP_SYS_ADMIN) may create rings:
                // find out by trying below.
            }
            _ => {}
        }
    }
    let ring: IoUring =
        IoUring::builder()
            .build(8)
            .map_err(|e| {
                match e.raw_os_error() {
        Some(libc::EPERM) => RingError::Disabled(
            "io_uring_setup returned EPERM (kernel.io_uring_disabled or a seccomp policy); \
             fix: sysctl -w kernel.io_uring_disabled=0, or run outside the container sandbox"
                .into(),
        ),
        Some(libc::ENOSYS) => RingError::MissingFeature { feature: "support", kernel_min: "6.0" },
        _ => RingError::Setup { what: "setup", source: e },
    }
            })?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|source| RingError::Setup {
            what: "probe",
            source,
        })?;
    let params = ring.params();
    let features = KernelFeatures {
        ext_arg: params.is_feature_ext_arg(),
        defer_taskrun: IoUring::<squeue::Entry, cqueue::Entry>::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(8)
            .is_ok(),
        socket_op: probe.is_supported(opcode::Socket::CODE),
        bind_op: probe.is_supported(opcode::Bind::CODE),
        // Multishot accept and recv and buffer rings have no probe bit of their own; they came
        // with kernels 5.19 and 6.0, which also brought IORING_OP_SOCKET (5.19) and
        // IORING_OP_SEND_ZC (6.0), so those opcodes stand in for them.
        multishot_accept: probe.is_supported(opcode::Socket::CODE),
        multishot_recv: probe.is_supported(opcode::SendZc::CODE),
        buf_ring: probe.is_supported(opcode::SendZc::CODE),
    };
    Ok(features)
}

/// The role a ring plays in its shard (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingRole {
    Leader,
    Follower,
}

/// One io_uring instance with its direct-descriptor table, buffer ring and SQ backlog.
pub struct Ring {
    pub uring: IoUring,
    pub bufs: BufRing,
    backlog: VecDeque<squeue::Entry>,
    backlog_max: usize,
    /// Times an SQE went to the backlog because the SQ was full (reported, not an error).
    pub backlog_pushes: u64,
    pub backlog_len_max: usize,
    pub fixed_files: u32,
}

/// Buffer group id used by every ring (each ring has its own group namespace).
pub const BUF_GROUP: u16 = 0;

impl Ring {
    pub fn new(
        config: &RingConfig,
        role: RingRole,
        features: &KernelFeatures,
    ) -> Result<Ring, RingError> {
        let mut builder = IoUring::builder();
        builder
            .setup_cqsize(config.cq_entries)
            .setup_single_issuer()
            .setup_coop_taskrun();
        if role == RingRole::Leader && features.defer_taskrun {
            builder.setup_defer_taskrun();
        } else {
            builder.setup_taskrun_flag();
        }
        let uring =
            builder
                .build(config.sq_entries)
                .map_err(|source| match source.raw_os_error() {
                    Some(libc::ENOMEM) => RingError::Setup {
                        what: "setup (ENOMEM: locked-memory limit? check `ulimit -l`)",
                        source,
                    },
                    _ => RingError::Setup {
                        what: "setup",
                        source,
                    },
                })?;
        if config.fixed_files > 0 {
            uring
                .submitter()
                .register_files_sparse(config.fixed_files)
                .map_err(|source| RingError::Setup {
                    what: "fixed-file table registration (the table may not exceed RLIMIT_NOFILE)",
                    source,
                })?;
        }
        let bufs = BufRing::new(&uring, BUF_GROUP, config.buf_count, config.buf_bytes).map_err(
            |source| RingError::Setup {
                what: "buffer ring registration",
                source,
            },
        )?;
        Ok(Ring {
            uring,
            bufs,
            backlog: VecDeque::with_capacity(config.backlog_max.min(4096)),
            backlog_max: config.backlog_max,
            backlog_pushes: 0,
            backlog_len_max: 0,
            fixed_files: config.fixed_files,
        })
    }

    /// Queues an SQE. A full SQ sends it to the backlog, drained after the next submit.
    ///
    /// # Safety
    /// Every buffer, descriptor and timespec the entry points at must stay valid until its
    /// completion is reaped (for ops the kernel copies at submission, until submission).
    pub unsafe fn push(&mut self, entry: squeue::Entry) {
        if !self.backlog.is_empty() {
            self.push_backlog(entry);
            return;
        }
        // SAFETY: the caller keeps what the entry points at alive (this fn's contract).
        let pushed = unsafe { self.uring.submission().push(&entry) };
        if pushed.is_err() {
            self.push_backlog(entry);
        }
    }

    fn push_backlog(&mut self, entry: squeue::Entry) {
        assert!(
            self.backlog.len() < self.backlog_max,
            "SQ backlog exceeded its bound of {}: the plan under-sized it",
            self.backlog_max
        );
        self.backlog.push_back(entry);
        self.backlog_pushes += 1;
        self.backlog_len_max = self.backlog_len_max.max(self.backlog.len());
    }

    /// Moves backlogged SQEs into the SQ while there is room.
    pub fn drain_backlog(&mut self) {
        if self.backlog.is_empty() {
            return;
        }
        let mut sq = self.uring.submission();
        while let Some(entry) = self.backlog.front() {
            // SAFETY: entries were accepted by `push`, whose caller guarantees their buffers.
            if unsafe { sq.push(entry) }.is_err() {
                break;
            }
            self.backlog.pop_front();
        }
    }

    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Submits queued SQEs without waiting. EBUSY/EAGAIN (CQ pressure) are not errors: the
    /// caller reaps and tries again.
    pub fn submit(&mut self) -> io::Result<()> {
        // io-uring's submit() enters the kernel even with nothing queued; a shard calls this
        // for every follower ring on every loop turn, so skip the empty syscall. Pending task
        // work needs no entry of its own: it runs whenever this thread enters any ring.
        if self.uring.submission().is_empty() && self.backlog.is_empty() {
            return Ok(());
        }
        loop {
            match self.uring.submit() {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.drain_backlog();
        Ok(())
    }

    /// Submits and waits for at least one completion or the timeout. ETIME and EINTR are the
    /// normal ways this returns without completions.
    pub fn submit_and_wait_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.uring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => return Err(e),
            },
        }
        self.drain_backlog();
        Ok(())
    }

    /// Copies up to `into.capacity()` completions out of the CQ (dispatch happens after, so a
    /// handler pushing SQEs never re-enters the CQ). Returns how many were copied.
    pub fn reap(&mut self, into: &mut Vec<cqueue::Entry>) -> usize {
        let before = into.len();
        let room = into.capacity() - before;
        let mut cq = self.uring.completion();
        cq.sync();
        into.extend(cq.take(room));
        into.len() - before
    }

    /// Completions the kernel could not post because the CQ was full (kept by NODROP, but a
    /// sign the CQ is undersized).
    pub fn cq_overflow(&mut self) -> u32 {
        self.uring.completion().overflow()
    }

    pub fn raw_fd(&self) -> i32 {
        self.uring.as_raw_fd()
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the new soft value.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_features() {
        let features = probe_kernel().expect("tests need io_uring on this kernel");
        assert!(features.socket_op && features.multishot_recv && features.ext_arg);
    }

    #[test]
    fn follower_completion_wakes_leader() {
        // The shard loop's central assumption: a thread blocked on the leader wakes when a
        // follower ring completes something, via a multishot poll on the follower's fd.
        let features = probe_kernel().unwrap();
        let config = RingConfig {
            sq_entries: 8,
            cq_entries: 16,
            fixed_files: 0,
            buf_count: 8,
            buf_bytes: 64,
            backlog_max: 8,
        };
        let mut leader = Ring::new(&config, RingRole::Leader, &features).unwrap();
        let mut follower = Ring::new(&config, RingRole::Follower, &features).unwrap();
        let poll = opcode::PollAdd::new(types::Fd(follower.raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(7);
        // SAFETY: the follower ring fd lives until the end of this test, after the last reap.
        unsafe { leader.push(poll) };
        leader.submit().unwrap();
        let ts = types::Timespec::new().nsec(20_000_000);
        let timeout = opcode::Timeout::new(&ts).build().user_data(9);
        // SAFETY: `ts` is copied by the kernel at submission, which happens right below.
        unsafe { follower.push(timeout) };
        follower.submit().unwrap();
        let mut cqes = Vec::with_capacity(8);
        for _ in 0..50 {
            leader
                .submit_and_wait_timeout(Duration::from_millis(100))
                .unwrap();
            if leader.reap(&mut cqes) > 0 {
                break;
            }
        }
        assert!(
            cqes.iter().any(|c| c.user_data() == 7),
            "leader never woke for the follower"
        );
        cqes.clear();
        follower.reap(&mut cqes);
        assert_eq!(cqes.len(), 1);
        assert_eq!(cqes[0].result(), -libc::ETIME);
    }
}
