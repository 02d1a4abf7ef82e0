//! PROXY protocol headers (HAProxy's spec, v1 text and v2 binary) announcing the real client
//! to the upstream. Encoding is `ppp`'s; this module only decides what to announce.
//!
//! The source is the client, the destination the sluice address it connected to. A dual-stack
//! listener sees IPv4 clients as `::ffff:a.b.c.d`; both ends are brought to one family first,
//! because the protocol has no mixed form and `ppp` would otherwise send `UNKNOWN`, losing the
//! client address the upstream asked for.

use std::net::{IpAddr, SocketAddr};

use ppp::v2;

use crate::config::ProxyProtocol;

/// The header to write before any client byte, or `None` when the route sends none.
pub fn header(version: ProxyProtocol, client: SocketAddr, local: SocketAddr) -> Option<Vec<u8>> {
    let (source, destination) = same_family(client, local);
    match version {
        ProxyProtocol::Off => None,
        ProxyProtocol::V1 => {
            let addresses = ppp::v1::Addresses::from((source, destination));
            Some(addresses.to_string().into_bytes())
        }
        ProxyProtocol::V2 => {
            let header = v2::Builder::with_addresses(
                v2::Version::Two | v2::Command::Proxy,
                v2::Protocol::Stream,
                (source, destination),
            )
            .build()
            // Building into a Vec fails only on allocation, which aborts first; a fixed
            // address pair always fits the 16-bit length.
            .expect("a v2 header with two addresses always encodes");
            Some(header)
        }
    }
}

/// Both addresses in one family: v4-mapped IPv6 becomes IPv4 when the other end is IPv4 (or
/// mapped too); otherwise an IPv4 end is mapped into IPv6.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let a = unmap(a);
    let b = unmap(b);
    match (a.ip(), b.ip()) {
        (IpAddr::V4(_), IpAddr::V6(_)) => (to_v6(a), b),
        (IpAddr::V6(_), IpAddr::V4(_)) => (a, to_v6(b)),
        _ => (a, b),
    }
}

fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

fn to_v6(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(v4) => SocketAddr::new(v4.to_ipv6_mapped().into(), addr.port()),
        IpAddr::V6(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_names_client_and_destination() {
        let h = header(
            ProxyProtocol::V1,
            addr("192.0.2.7:51000"),
            addr("127.0.0.1:8080"),
        )
        .unwrap();
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 127.0.0.1 51000 8080\r\n");
        let h = header(
            ProxyProtocol::V1,
            addr("[2001:db8::7]:51000"),
            addr("[::1]:8080"),
        )
        .unwrap();
        assert_eq!(h, b"PROXY TCP6 2001:db8::7 ::1 51000 8080\r\n");
    }

    #[test]
    fn v2_parses_back_to_the_same_addresses() {
        let (client, local) = (addr("192.0.2.7:51000"), addr("127.0.0.1:8080"));
        let h = header(ProxyProtocol::V2, client, local).unwrap();
        let parsed = v2::Header::try_from(h.as_slice()).unwrap();
        assert_eq!(parsed.command, v2::Command::Proxy);
        match parsed.addresses {
            v2::Addresses::IPv4(a) => {
                let source = SocketAddr::new(a.source_address.into(), a.source_port);
                let destination = SocketAddr::new(a.destination_address.into(), a.destination_port);
                assert_eq!((source, destination), (client, local));
            }
            other => panic!("expected IPv4 addresses, got {other:?}"),
        }
    }

    #[test]
    fn mixed_families_are_unified_not_unknown() {
        // An IPv4 client seen through a dual-stack listener.
        let h = header(
            ProxyProtocol::V1,
            addr("[::ffff:192.0.2.7]:51000"),
            addr("127.0.0.1:8080"),
        )
        .unwrap();
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 127.0.0.1 51000 8080\r\n");
        let h = header(
            ProxyProtocol::V1,
            addr("192.0.2.7:51000"),
            addr("[::1]:8080"),
        )
        .unwrap();
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.7 ::1 51000 8080\r\n");
        assert_eq!(
            header(ProxyProtocol::Off, addr("192.0.2.7:1"), addr("[::1]:2")),
            None
        );
    }
}
