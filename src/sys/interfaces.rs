//! This host's own addresses, for the target allowlist and the `--source-ips` check. Part of
//! `sys/`; read once at plan time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Every address configured on this host's interfaces (getifaddrs), in this network namespace.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list it allocates into `list`; freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut addrs = Vec::new();
    let mut node = list;
    while !node.is_null() {
        // SAFETY: `node` is an element of the list getifaddrs returned, alive until
        // freeifaddrs; `ifa_addr` is null or points at a sockaddr of the family it names.
        unsafe {
            let sa = (*node).ifa_addr;
            if !sa.is_null() {
                match i32::from((*sa).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*sa.cast::<libc::sockaddr_in>();
                        addrs.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*sa.cast::<libc::sockaddr_in6>();
                        addrs.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            node = (*node).ifa_next;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    addrs
}

/// Whether a socket can bind `ip` here (the kernel's own answer: an interface address, the
/// whole 127/8, or anything with `ip_nonlocal_bind`). Port 0 with IP_BIND_ADDRESS_NO_PORT, so
/// the check reserves no port.
pub fn can_bind(ip: IpAddr) -> std::io::Result<()> {
    let domain = if ip.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    let one: libc::c_int = 1;
    // SAFETY: `socket` owns the descriptor for this call; `one` outlives it.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    socket.bind(&SocketAddr::new(ip, 0).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local_and_bindable() {
        assert!(local_addresses().contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(can_bind(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))).is_ok());
        // TEST-NET-3 (RFC 5737) is never configured on a test host.
        assert!(can_bind(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77))).is_err());
    }
}
