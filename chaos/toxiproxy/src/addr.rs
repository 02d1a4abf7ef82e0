//! Address handling: resolving `listen`/`upstream` strings and the loopback-only policy.
//!
//! This machine's chaos runs only ever talk to 127.0.0.0/8 (and ::1), so unless the server was
//! started with `--allow-remote`, every address a proxy binds or dials must resolve to loopback.
//! The policy is checked where the address is used (bind, dial), so a hostname that changes its
//! answer cannot slip past a check made earlier. What to do with a refused upstream (close the
//! client, as Toxiproxy does) is left to `link`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpStream, lookup_host};

use crate::error::Error;

/// Which addresses proxies may bind and dial.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrPolicy {
    /// Allow addresses beyond loopback. Off by default.
    pub allow_remote: bool,
}

impl AddrPolicy {
    /// Whether `ip` may be bound or dialled under this policy.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_remote || ip.is_loopback()
    }

    /// The host an empty `listen` (or `":port"`) means. Toxiproxy binds every interface there;
    /// we only do that when remote addresses are allowed, and use 127.0.0.1 otherwise.
    fn default_host(&self) -> IpAddr {
        if self.allow_remote {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
    }

    /// Resolves a `listen` string to the one address to bind: the first the resolver returns,
    /// as Go's `net.Listen` does. An empty string means port 0 on the default host.
    pub async fn resolve_listen(&self, listen: &str) -> Result<SocketAddr, Error> {
        let addr = if listen.is_empty() {
            SocketAddr::new(self.default_host(), 0)
        } else if let Some(port) = listen.strip_prefix(':') {
            let port = port.parse().map_err(|_| Error::Resolve {
                addr: listen.to_string(),
                source: std::io::Error::other("invalid port"),
            })?;
            SocketAddr::new(self.default_host(), port)
        } else if let Ok(addr) = listen.parse() {
            addr
        } else {
            let mut addrs = lookup_host(listen).await.map_err(|source| Error::Resolve {
                addr: listen.to_string(),
                source,
            })?;
            addrs.next().ok_or_else(|| Error::Resolve {
                addr: listen.to_string(),
                source: std::io::Error::other("no addresses"),
            })?
        };
        if self.permits(addr.ip()) {
            Ok(addr)
        } else {
            Err(Error::NotLoopback {
                addr: listen.to_string(),
            })
        }
    }

    /// Rejects an upstream given as a literal non-loopback IP when the proxy is created, so the
    /// mistake shows in the API answer. Hostnames are checked again at every dial.
    pub fn check_upstream_literal(&self, upstream: &str) -> Result<(), Error> {
        match upstream.parse::<SocketAddr>() {
            Ok(addr) if !self.permits(addr.ip()) => Err(Error::NotLoopback {
                addr: upstream.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Dials `upstream`, trying each permitted address the resolver returns in turn.
    pub async fn dial(&self, upstream: &str) -> std::io::Result<TcpStream> {
        let mut last_err = None;
        for addr in lookup_host(upstream).await? {
            if !self.permits(addr.ip()) {
                last_err = Some(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{addr} is not loopback and --allow-remote is off"),
                ));
                continue;
            }
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("upstream resolved to no address")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn empty_listen_is_loopback_port_zero_unless_remote_allowed() {
        let local = AddrPolicy::default();
        assert_eq!(
            local.resolve_listen("").await.unwrap().to_string(),
            "127.0.0.1:0"
        );
        assert_eq!(
            local.resolve_listen(":0").await.unwrap().to_string(),
            "127.0.0.1:0"
        );
        let remote = AddrPolicy { allow_remote: true };
        assert_eq!(
            remote.resolve_listen("").await.unwrap().to_string(),
            "0.0.0.0:0"
        );
    }

    #[tokio::test]
    async fn non_loopback_is_refused_by_default() {
        let local = AddrPolicy::default();
        assert!(matches!(
            local.resolve_listen("0.0.0.0:9000").await,
            Err(Error::NotLoopback { .. })
        ));
        assert!(local.check_upstream_literal("10.1.2.3:80").is_err());
        assert!(local.check_upstream_literal("127.0.0.2:80").is_ok());
        assert!(local.check_upstream_literal("[::1]:80").is_ok());
        assert!(local.check_upstream_literal("db.internal:80").is_ok());
        let err = local.dial("10.1.2.3:80").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    }
}
