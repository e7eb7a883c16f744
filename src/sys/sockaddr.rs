//! Socket addresses laid out for the kernel (`sockaddr_in` / `sockaddr_in6`), kept in arrays
//! the rings point into for CONNECT and BIND. Part of `sys/`; the engine's shard owns the
//! arrays, so the memory outlives every SQE that points at it (see `engine/shard.rs`).
//! A union instead of `sockaddr_storage` (128 B) because a shard keeps thousands of them.

use std::net::SocketAddr;

#[repr(C)]
#[derive(Clone, Copy)]
union Raw {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

/// One IPv4 or IPv6 address in its C layout, with the length the kernel expects.
#[derive(Clone, Copy)]
pub struct KernelSockAddr {
    raw: Raw,
    len: libc::socklen_t,
    family: libc::c_int,
}

impl KernelSockAddr {
    pub fn new(addr: SocketAddr) -> KernelSockAddr {
        match addr {
            SocketAddr::V4(v4) => KernelSockAddr {
                raw: Raw {
                    v4: libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: v4.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from(*v4.ip()).to_be(),
                        },
                        sin_zero: [0; 8],
                    },
                },
                len: std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                family: libc::AF_INET,
            },
            SocketAddr::V6(v6) => KernelSockAddr {
                raw: Raw {
                    v6: libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: v6.port().to_be(),
                        sin6_flowinfo: v6.flowinfo().to_be(),
                        sin6_addr: libc::in6_addr {
                            s6_addr: v6.ip().octets(),
                        },
                        sin6_scope_id: v6.scope_id(),
                    },
                },
                len: std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                family: libc::AF_INET6,
            },
        }
    }

    /// The address for CONNECT/BIND; valid while `self` is (the caller keeps it in place until
    /// the kernel has copied it, at submission).
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        (&raw const self.raw).cast()
    }

    pub fn byte_len(&self) -> libc::socklen_t {
        self.len
    }

    /// `AF_INET` or `AF_INET6`, for IORING_OP_SOCKET.
    pub fn family(&self) -> libc::c_int {
        self.family
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(addr: &KernelSockAddr) -> Vec<u8> {
        // SAFETY: `as_ptr` points at `len` initialized bytes inside `addr`, alive for this call.
        unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), addr.byte_len() as usize) }
            .to_vec()
    }

    #[test]
    fn ipv4_layout() {
        let a = KernelSockAddr::new("127.0.0.2:4000".parse().unwrap());
        assert_eq!(a.byte_len(), 16);
        assert_eq!(a.family(), libc::AF_INET);
        let b = bytes(&a);
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), libc::AF_INET as u16);
        assert_eq!(&b[2..8], &[0x0f, 0xa0, 127, 0, 0, 2]);
    }

    #[test]
    fn ipv6_layout() {
        let a = KernelSockAddr::new("[::1]:443".parse().unwrap());
        assert_eq!(a.byte_len(), 28);
        assert_eq!(a.family(), libc::AF_INET6);
        let b = bytes(&a);
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), libc::AF_INET6 as u16);
        assert_eq!(&b[2..4], &[0x01, 0xbb]);
        assert_eq!(&b[8..24], &std::net::Ipv6Addr::LOCALHOST.octets());
    }
}
