//! What each errno met at socket/bind/connect/accept/io_uring-setup time means for a load run,
//! and the fix. Part of `sys/`; I/O-free. The engine and server count failures by
//! `(operation, errno)` and print one explained line per cause with its count, never one line
//! per connection.

/// Symbolic name of an errno (`ECONNREFUSED`), or `E<number>` for ones we do not name.
pub fn name(errno: i32) -> String {
    let known = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOBUFS => "ENOBUFS",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ECANCELED => "ECANCELED",
        libc::ETIME => "ETIME",
        libc::EBADF => "EBADF",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EISCONN => "EISCONN",
        _ => return format!("E{errno}"),
    };
    known.to_string()
}

/// Parses a name made by [`name`] back to the number (for counters keyed by name).
pub fn from_name(text: &str) -> Option<i32> {
    (1..200)
        .find(|&e| name(e) == text)
        .or_else(|| text.strip_prefix('E')?.parse().ok())
}

/// The limit behind an errno at this point of the connection's life, and the exact fix.
pub fn explain(operation: &str, errno: i32) -> String {
    match errno {
        libc::EMFILE => "the process fd table is full (RLIMIT_NOFILE): direct descriptors avoid it, so something opened \
             ordinary fds; raise it with `ulimit -n` up to the hard limit, or in /etc/security/limits.conf `* hard nofile 1048576`"
            .into(),
        libc::ENFILE if operation == "accept" || operation == "socket" => "the ring's direct-descriptor table is full \
             (its size is capped at RLIMIT_NOFILE): mcpstorm sizes rings from --connections/--max-connections, so \
             raise those, or the hard RLIMIT_NOFILE for fewer, larger rings"
            .into(),
        libc::ENFILE => "the system-wide file table is full (fs.file-max): sysctl -w fs.file-max=<2 × connections>, \
             or kernel-tuning/apply.sh --connections N"
            .into(),
        libc::EADDRNOTAVAIL if operation == "bind" => "the source address is not on this host: use loopback addresses \
             (127.0.0.0/8 needs no setup on Linux) in --source-ips"
            .into(),
        libc::EADDRNOTAVAIL => "out of ephemeral ports for this (source, target) pair: add source addresses with \
             --source-ips 127.0.0.2-127.0.0.9, more target ports, or sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"; \
             `mcpstorm doctor --connections N URL` computes how many"
            .into(),
        libc::EADDRINUSE => "the (source address, port) is taken, often by TIME_WAIT sockets of a previous run: wait \
             for them (ss -s), use other --source-ips, or sysctl -w net.ipv4.tcp_tw_reuse=1"
            .into(),
        libc::ECONNREFUSED => "nothing listens at the target (wrong port, server down, or its accept queue overflowed: \
             check net.core.somaxconn and the server's listen backlog)"
            .into(),
        libc::ETIMEDOUT | libc::ETIME => "the connect or handshake did not finish in time: the server's accept queue \
             is likely full (raise net.core.somaxconn and net.ipv4.tcp_max_syn_backlog, or lower --connect-rate), \
             or --connect-timeout is too short"
            .into(),
        libc::ECONNRESET => "the server reset the connection (it closed with unread data, hit a limit, or restarted)".into(),
        libc::EPIPE => "the server closed the connection before the request was sent".into(),
        libc::ENOBUFS | libc::ENOMEM => "the kernel is out of socket memory: raise net.ipv4.tcp_mem (kernel-tuning/apply.sh \
             --connections N), check MemAvailable, or run fewer connections per host"
            .into(),
        libc::EPERM | libc::EACCES if operation == "io_uring_setup" => "io_uring is disabled or blocked: sysctl -w \
             kernel.io_uring_disabled=0, or lift the container's seccomp policy"
            .into(),
        libc::EPERM | libc::EACCES => "a firewall or security policy refused the operation (check nft/iptables rules \
             and nf_conntrack: `mcpstorm doctor`)"
            .into(),
        libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS => "this kernel does not support the io_uring operation used \
             here: Linux 6.0+ is needed, 6.11+ for IORING_OP_BIND (--source-ips); run `mcpstorm doctor`"
            .into(),
        libc::ENETUNREACH | libc::EHOSTUNREACH => "no route to the target: mcpstorm only targets loopback addresses".into(),
        libc::ECANCELED => "cancelled by mcpstorm itself (timeout or shutdown)".into(),
        _ => format!("{operation} failed with {}", name(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for errno in [libc::ECONNREFUSED, libc::EADDRNOTAVAIL, libc::EMFILE, 9999] {
            assert_eq!(from_name(&name(errno)), Some(errno));
        }
        assert_eq!(name(libc::ECONNREFUSED), "ECONNREFUSED");
    }

    #[test]
    fn every_mapped_errno_names_a_limit_and_fix() {
        let cases = [
            ("connect", libc::EMFILE, "RLIMIT_NOFILE"),
            ("accept", libc::ENFILE, "direct-descriptor table"),
            ("connect", libc::ENFILE, "fs.file-max"),
            ("connect", libc::EADDRNOTAVAIL, "--source-ips"),
            ("bind", libc::EADDRNOTAVAIL, "not on this host"),
            ("bind", libc::EADDRINUSE, "TIME_WAIT"),
            ("connect", libc::ECONNREFUSED, "somaxconn"),
            ("connect", libc::ETIMEDOUT, "tcp_max_syn_backlog"),
            ("connect", libc::ENOBUFS, "tcp_mem"),
            ("connect", libc::ENOMEM, "tcp_mem"),
            ("io_uring_setup", libc::EPERM, "io_uring_disabled"),
            ("bind", libc::EINVAL, "6.11"),
        ];
        for (operation, errno, needle) in cases {
            let text = explain(operation, errno);
            assert!(text.contains(needle), "{operation}/{}: {text}", name(errno));
        }
        assert_eq!(explain("recv", 9999), "recv failed with E9999");
    }
}
