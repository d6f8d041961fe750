//! UDP sockets from the configured media port range.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use super::MediaError;
use crate::config::PortRange;

/// Binds a UDP socket on `ip` to a free port of `range`, starting the search at a random port so
/// that concurrent calls rarely race for the same one. With `even_first`, even ports are tried
/// before odd ones (RTP's convention, RFC 3550 §11, which some phones still expect).
pub(super) fn bind_udp(
    ip: IpAddr,
    range: PortRange,
    even_first: bool,
) -> Result<UdpSocket, MediaError> {
    let len = range.len();
    let start = rand::random::<u32>() % len;
    let ports = (0..len).map(|i| range.min() + ((start + i) % len) as u16);
    let ordered: Vec<u16> = if even_first {
        ports
            .clone()
            .filter(|p| p % 2 == 0)
            .chain(ports.filter(|p| p % 2 == 1))
            .collect()
    } else {
        ports.collect()
    };
    for port in ordered {
        match UdpSocket::bind(SocketAddr::new(ip, port)) {
            Ok(socket) => return Ok(socket),
            Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
            // Anything else (an address not on this host, no permission) fails for every port.
            Err(e) => return Err(MediaError::Socket(e)),
        }
    }
    Err(MediaError::NoFreePort {
        ip,
        range: range.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn sockets_come_from_the_range_and_even_ports_are_preferred() {
        let range = PortRange::new(41000, 41099).unwrap();
        let a = bind_udp(LOOPBACK, range, true).unwrap();
        let port = a.local_addr().unwrap().port();
        assert!(range.contains(port));
        assert_eq!(port % 2, 0);
        let b = bind_udp(LOOPBACK, range, false).unwrap();
        assert!(range.contains(b.local_addr().unwrap().port()));
    }

    #[test]
    fn a_full_range_is_a_typed_error_and_a_freed_port_is_usable_again() {
        let range = PortRange::new(41200, 41201).unwrap();
        let held: Vec<UdpSocket> = (0..2)
            .map(|_| bind_udp(LOOPBACK, range, false).unwrap())
            .collect();
        assert!(matches!(
            bind_udp(LOOPBACK, range, false),
            Err(MediaError::NoFreePort { .. })
        ));
        drop(held);
        assert!(bind_udp(LOOPBACK, range, true).is_ok());
    }
}
