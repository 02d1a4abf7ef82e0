//! Extension: which connections a toxic acts on (not in Toxiproxy, whose toxics act on every
//! connection of a proxy; see Toxiproxy #244 and #404).
//!
//! Two optional keys in any toxic's `attributes`, so the v2 wire shape is unchanged and a toxic
//! without them behaves exactly as before:
//! - `clients`: a list of CIDRs (`"127.0.0.2/32"`); only connections whose source address is in
//!   one of them are affected.
//! - `first`: only the first N connections the proxy accepts after the toxic is added.
//!
//! Both are decided once per connection at accept time, from its source address and its
//! sequence number on the proxy, so they are deterministic: no randomness is involved
//! (`toxicity` is still rolled on the connections they select).

use std::net::{IpAddr, SocketAddr};

use serde_json::{Map, Value};

use crate::error::Error;

/// One accepted connection, as targeting sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// The client's address.
    pub peer: SocketAddr,
    /// 0 for the proxy's first accepted connection, counted across restarts.
    pub seq: u64,
}

/// An address block, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `::1/128`, or a bare address (a single host).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in this block. An IPv4-mapped IPv6 address counts as its IPv4 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let shift = |bits: u32, width: u32| width - bits;
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let s = shift(u32::from(self.prefix), 32);
                s >= 32 || u32::from(net) >> s == u32::from(ip) >> s
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let s = shift(u32::from(self.prefix), 128);
                s >= 128 || u128::from(net) >> s == u128::from(ip) >> s
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A toxic's targeting: everything when both keys are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Source blocks; empty means every client.
    pub clients: Vec<Cidr>,
    /// How many connections, counted from the first accepted after the toxic was added.
    pub first: Option<u64>,
}

impl Target {
    /// Reads `clients` and `first` from an `attributes` object; other keys are the kind's.
    pub fn parse(attributes: &Value) -> Result<Target, Error> {
        let bad = |m: String| Error::BadRequestBody(m);
        let mut target = Target::default();
        let Value::Object(map) = attributes else {
            return Ok(target);
        };
        match map.get("clients") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for item in list {
                    let cidr = item.as_str().and_then(Cidr::parse).ok_or_else(|| {
                        bad(format!(
                            "attributes.clients: {item} is not an address block like \"127.0.0.2/32\""
                        ))
                    })?;
                    target.clients.push(cidr);
                }
            }
            Some(other) => {
                return Err(bad(format!(
                    "attributes.clients: expected a list of address blocks, got {other}"
                )));
            }
        }
        match map.get("first") {
            None | Some(Value::Null) => {}
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| {
                    bad(format!(
                        "attributes.first: expected a non-negative integer, got {v}"
                    ))
                })?;
                target.first = Some(n);
            }
        }
        Ok(target)
    }

    /// Whether any targeting is set.
    pub fn is_set(&self) -> bool {
        !self.clients.is_empty() || self.first.is_some()
    }

    /// Adds the keys that are set to an `attributes` object, as the client sent them.
    pub fn write(&self, attributes: &mut Value) {
        let Value::Object(map) = attributes else {
            return;
        };
        if !self.clients.is_empty() {
            let list = self.clients.iter().map(|c| Value::from(c.to_string()));
            map.insert("clients".into(), Value::Array(list.collect()));
        }
        if let Some(n) = self.first {
            map.insert("first".into(), Value::from(n));
        }
    }

    /// Whether connection `conn` is targeted, for a toxic added when the proxy's next connection
    /// sequence number was `first_seq`.
    pub fn selects(&self, conn: Conn, first_seq: u64) -> bool {
        let source =
            self.clients.is_empty() || self.clients.iter().any(|c| c.contains(conn.peer.ip()));
        let window = self
            .first
            .is_none_or(|n| conn.seq >= first_seq && conn.seq - first_seq < n);
        source && window
    }
}

/// `attributes` without the targeting keys, for the kind's own parser.
pub fn strip(attributes: &Value) -> Value {
    match attributes {
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "clients" && k.as_str() != "first")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(kept)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn(ip: &str, seq: u64) -> Conn {
        Conn {
            peer: SocketAddr::new(ip.parse().unwrap(), 5000),
            seq,
        }
    }

    #[test]
    fn cidrs_match_sources() {
        let t = Target::parse(&json!({"clients": ["127.0.0.2/32", "10.0.0.0/8"]})).unwrap();
        assert!(t.selects(conn("127.0.0.2", 0), 0));
        assert!(t.selects(conn("10.1.2.3", 0), 0));
        assert!(t.selects(conn("::ffff:127.0.0.2", 0), 0));
        assert!(!t.selects(conn("127.0.0.1", 0), 0));
        assert!(Target::parse(&json!({"clients": ["nope"]})).is_err());
        assert!(Target::parse(&json!({"clients": ["1.2.3.4/33"]})).is_err());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("9.9.9.9".parse().unwrap())
        );
    }

    #[test]
    fn first_counts_from_when_the_toxic_was_added() {
        let t = Target::parse(&json!({"first": 2})).unwrap();
        let hits: Vec<u64> = (0..8)
            .filter(|s| t.selects(conn("127.0.0.1", *s), 3))
            .collect();
        assert_eq!(hits, [3, 4]);
        let mut attrs = json!({"latency": 5});
        t.write(&mut attrs);
        assert_eq!(attrs, json!({"latency": 5, "first": 2}));
        assert!(Target::parse(&json!({"first": -1})).is_err());
    }
}
