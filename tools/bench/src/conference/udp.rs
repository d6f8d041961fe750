//! The media threads' UDP socket: non-blocking, a large receive buffer, and the kernel's receive
//! timestamp on every datagram. The media thread drains its socket once per tick instead of
//! waking for every datagram, so arrival times come from the kernel, not from when it looked.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::procstat::realtime;

/// `SO_TIMESTAMPNS` (= `SCM_TIMESTAMPNS`) on Linux with a 64-bit `time_t`; the libc crate does
/// not export it for every target.
const SO_TIMESTAMPNS: libc::c_int = 35;
/// Receive buffer asked for (as root, beyond rmem_max): a tick's worth of hundreds of calls,
/// with room for a stall.
const RCVBUF: libc::c_int = 8 << 20;

pub struct Socket {
    socket: UdpSocket,
    /// The realtime clock and the monotonic one read together, to turn kernel timestamps
    /// (realtime) into `Instant`s.
    clocks: (Duration, Instant),
}

impl Socket {
    pub fn bind(ip: IpAddr) -> io::Result<Socket> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        socket.set_nonblocking(true)?;
        let fd = socket.as_raw_fd();
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            if setsockopt(fd, opt, RCVBUF).is_ok() {
                break;
            }
        }
        setsockopt(fd, SO_TIMESTAMPNS, 1)?;
        Ok(Socket {
            socket,
            clocks: (realtime(), Instant::now()),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(data, to)
    }

    /// Before a round of [`Socket::recv`]: the clocks to convert timestamps with.
    pub fn sync_clocks(&mut self) {
        self.clocks = (realtime(), Instant::now());
    }

    /// One queued datagram into `buf`: its length, source and arrival time; `None` when the
    /// queue is empty.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr, Instant)>> {
        // SAFETY: every pointer handed to recvmsg points into live locals of the right size;
        // the control buffer is 8-aligned as cmsghdr requires.
        unsafe {
            let mut addr: libc::sockaddr_storage = zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut control = [0u64; 16];
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 16]>() as _;
            let n = libc::recvmsg(self.socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    _ => Err(e),
                };
            }
            let Some(from) = sockaddr(&addr) else {
                return Ok(None);
            };
            let mut at = self.clocks.1;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let c = &*cmsg;
                if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == SO_TIMESTAMPNS {
                    let ts =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                    let stamp = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                    // Arrived this long before the clocks were read (never after).
                    at = self.clocks.1 - self.clocks.0.saturating_sub(stamp);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            Ok(Some((n as usize, from, at)))
        }
    }
}

fn setsockopt(fd: libc::c_int, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid socket and a pointer to a c_int of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sockaddr(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_come_with_their_source_and_a_kernel_arrival_time() {
        let mut s = Socket::bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        assert!(s.recv(&mut buf).unwrap().is_none());
        // The kernel turns receive timestamps on for everyone in deferred work after the first
        // socket asks; until then a datagram is stamped when read. There is no event for it, so
        // probe a few times.
        let mut lags = Vec::new();
        for _ in 0..20 {
            let sent = Instant::now();
            peer.send_to(b"one", s.local_addr().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            s.sync_clocks();
            let (n, from, at) = s.recv(&mut buf).unwrap().expect("a datagram");
            assert_eq!((&buf[..n], from), (&b"one"[..], peer.local_addr().unwrap()));
            assert!(s.recv(&mut buf).unwrap().is_none());
            // It arrived about when it was sent, not when it was read 30 ms later.
            let lag = at.saturating_duration_since(sent);
            if lag < Duration::from_millis(10) {
                return;
            }
            lags.push(lag);
        }
        panic!("arrival times are read times: {lags:?}");
    }
}
