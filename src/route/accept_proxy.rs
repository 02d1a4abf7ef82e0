//! Accepting the PROXY protocol from a load balancer in front of sluice (`accept_proxy`): the
//! first bytes of every connection are a v1 (text) or v2 (binary) header naming the real
//! client. Parsing is `ppp`'s; this module reads exactly the header's bytes off the socket, so
//! whatever the client sent after it stays in the socket for the relay, and decides what the
//! header says about the connection.
//!
//! v1 is at most 107 bytes ending in `\r\n` and is read a byte at a time (a few dozen reads
//! per connection, only at its start); v2 says its own length after a 16-byte prefix.

use std::net::SocketAddr;

use ppp::{HeaderResult, v1, v2};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::AcceptProxyVersion;

/// The first 8 bytes of a v2 header's 12-byte signature.
const V2_PREFIX: &[u8; 8] = b"\r\n\r\n\0\r\nQ";
/// A v1 header's longest form, `\r\n` included.
const V1_MAX: usize = 107;
/// The longest v2 header accepted: addresses plus TLVs a load balancer may add (AWS, GCP and
/// HAProxy send well under this); longer is treated as garbage rather than buffered.
const V2_MAX: usize = 4096;

/// Why a connection's PROXY header was refused.
#[derive(Debug, Error)]
pub enum HeaderError {
    #[error("client closed before a complete PROXY header")]
    Closed,
    #[error("not a PROXY protocol header (first bytes {0:?})")]
    NotProxy(String),
    #[error("PROXY protocol {found} header where the route accepts {accepted:?}")]
    WrongVersion {
        found: &'static str,
        accepted: AcceptProxyVersion,
    },
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// What a valid header says: the real client and the address it connected to, or `None` for
/// a header that names no addresses (v1 `UNKNOWN`, v2 `LOCAL`: a health check of the load
/// balancer itself), where the socket's own addresses stand.
pub type Announced = Option<(SocketAddr, SocketAddr)>;

/// Reads and parses the header at the start of `stream`, consuming exactly its bytes.
pub async fn read_header(
    stream: &mut TcpStream,
    accepted: AcceptProxyVersion,
) -> Result<Announced, HeaderError> {
    let mut head = [0u8; 8];
    read_exact(stream, &mut head).await?;
    let header = if head.starts_with(b"PROXY ") {
        check_version("v1", accepted, AcceptProxyVersion::V1)?;
        let mut bytes = head.to_vec();
        while !bytes.ends_with(b"\r\n") {
            if bytes.len() >= V1_MAX {
                return Err(HeaderError::Malformed(
                    "v1 header longer than 107 bytes".into(),
                ));
            }
            let mut byte = [0u8; 1];
            read_exact(stream, &mut byte).await?;
            bytes.push(byte[0]);
        }
        bytes
    } else if &head == V2_PREFIX {
        check_version("v2", accepted, AcceptProxyVersion::V2)?;
        let mut rest = [0u8; 8];
        read_exact(stream, &mut rest).await?;
        let length = usize::from(u16::from_be_bytes([rest[6], rest[7]]));
        if 16 + length > V2_MAX {
            return Err(HeaderError::Malformed(format!(
                "v2 header of {} bytes (at most {V2_MAX})",
                16 + length
            )));
        }
        let mut bytes = Vec::with_capacity(16 + length);
        bytes.extend_from_slice(&head);
        bytes.extend_from_slice(&rest);
        bytes.resize(16 + length, 0);
        read_exact(stream, &mut bytes[16..]).await?;
        bytes
    } else {
        return Err(HeaderError::NotProxy(head.escape_ascii().to_string()));
    };
    parse(&header)
}

fn check_version(
    found: &'static str,
    accepted: AcceptProxyVersion,
    this: AcceptProxyVersion,
) -> Result<(), HeaderError> {
    if accepted == this || accepted == AcceptProxyVersion::Any {
        Ok(())
    } else {
        Err(HeaderError::WrongVersion { found, accepted })
    }
}

async fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), HeaderError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(HeaderError::Closed),
        Err(e) => Err(HeaderError::Io(e)),
    }
}

/// What a complete header says.
fn parse(bytes: &[u8]) -> Result<Announced, HeaderError> {
    let malformed = |e: &dyn std::fmt::Display| HeaderError::Malformed(e.to_string());
    match HeaderResult::parse(bytes) {
        HeaderResult::V1(Ok(header)) => Ok(match header.addresses {
            v1::Addresses::Tcp4(a) => Some((
                SocketAddr::from((a.source_address, a.source_port)),
                SocketAddr::from((a.destination_address, a.destination_port)),
            )),
            v1::Addresses::Tcp6(a) => Some((
                SocketAddr::from((a.source_address, a.source_port)),
                SocketAddr::from((a.destination_address, a.destination_port)),
            )),
            v1::Addresses::Unknown => None,
        }),
        // A UDP (DGRAM) header on a TCP connection is not about this connection.
        HeaderResult::V2(Ok(header)) if header.protocol == v2::Protocol::Datagram => Err(
            HeaderError::Malformed("v2 header for a datagram (UDP) connection".into()),
        ),
        HeaderResult::V2(Ok(header)) => Ok(match (header.command, header.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => Some((
                SocketAddr::from((a.source_address, a.source_port)),
                SocketAddr::from((a.destination_address, a.destination_port)),
            )),
            (_, v2::Addresses::IPv6(a)) => Some((
                SocketAddr::from((a.source_address, a.source_port)),
                SocketAddr::from((a.destination_address, a.destination_port)),
            )),
            (_, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
        }),
        HeaderResult::V1(Err(e)) => Err(malformed(&e)),
        HeaderResult::V2(Err(e)) => Err(malformed(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_the_real_client() {
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\n";
        assert_eq!(
            parse(v1).unwrap(),
            Some((
                "192.0.2.7:5555".parse().unwrap(),
                "198.51.100.1:443".parse().unwrap()
            ))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), None);
        let v2 = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "[2001:db8::7]:5555".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:443".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        assert_eq!(
            parse(&v2).unwrap(),
            Some((
                "[2001:db8::7]:5555".parse().unwrap(),
                "[2001:db8::1]:443".parse().unwrap()
            ))
        );
        assert!(parse(b"PROXY TCP4 300.0.2.7 198.51.100.1 5555 443\r\n").is_err());
    }
}
