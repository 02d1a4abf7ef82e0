//! The drill's little wire protocol, shared by the member servers and the traffic generator.
//!
//! Every member speaks first: a 16-byte banner `SLDRHELO` + kind + index. Server-first is on
//! purpose. sluice's early-close watch can only redial a client that has not spoken yet, so a
//! member that resets or hangs up before its banner is exactly the failure a redial hides, and
//! health probes can `expect = "SLDRHELO"` to see through a proxy whose member is gone. The
//! banner also names the member, which is how the drill observes where each client landed.
//!
//! After the banner:
//! - `echo`: every byte is echoed until the client closes; the client closes first, once it has
//!   read back its whole payload.
//! - `sink`: the client sends an 8-byte big-endian length and that many bytes; the member
//!   answers 16 bytes (length, FNV-1a checksum) and closes first, so the client sees the reply
//!   and then EOF, the half-close path through sluice.
//!
//! Payloads are pseudo-random bytes drawn from the drill seed and the client's id, so no two
//! clients send the same bytes and a misrouted byte cannot go unnoticed.

use serde::{Deserialize, Serialize};

/// First bytes of every banner; what health probes `expect`.
pub const MAGIC: &[u8; 8] = b"SLDRHELO";
/// Banner length: magic, kind, three zero bytes, member index (u32, big-endian).
pub const BANNER_LEN: usize = 16;
/// A sink's reply: the byte count it read and their checksum, both u64 big-endian.
pub const SINK_REPLY_LEN: usize = 16;

/// What a member server does after its banner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// Echoes every byte until the client closes.
    #[default]
    Echo,
    /// Reads one length-prefixed payload, answers its checksum and closes.
    Sink,
}

impl ServerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Sink => "sink",
        }
    }
}

/// The banner of member `index`.
pub fn banner(kind: ServerKind, index: u32) -> [u8; BANNER_LEN] {
    let mut b = [0u8; BANNER_LEN];
    b[..8].copy_from_slice(MAGIC);
    b[8] = match kind {
        ServerKind::Echo => 0,
        ServerKind::Sink => 1,
    };
    b[12..].copy_from_slice(&index.to_be_bytes());
    b
}

/// The kind and index a banner announces; `None` when it is not a drill banner.
pub fn parse_banner(b: &[u8; BANNER_LEN]) -> Option<(ServerKind, u32)> {
    if &b[..8] != MAGIC || b[9..12] != [0, 0, 0] {
        return None;
    }
    let kind = match b[8] {
        0 => ServerKind::Echo,
        1 => ServerKind::Sink,
        _ => return None,
    };
    let index = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
    Some((kind, index))
}

/// `len` pseudo-random bytes (xorshift64*), fully determined by `seed`.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = mix(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// SplitMix64's finalizer: spreads nearby seeds (client 1, client 2) over the whole range.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a 64, fed in pieces as bytes arrive.
#[derive(Clone, Copy, Debug)]
pub struct Checksum(u64);

impl Default for Checksum {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Checksum {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn value(self) -> u64 {
        self.0
    }

    /// The checksum of `bytes` in one go.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut c = Self::default();
        c.update(bytes);
        c.value()
    }
}

/// A sink's reply for `len` bytes with checksum `sum`.
pub fn sink_reply(len: u64, sum: u64) -> [u8; SINK_REPLY_LEN] {
    let mut r = [0u8; SINK_REPLY_LEN];
    r[..8].copy_from_slice(&len.to_be_bytes());
    r[8..].copy_from_slice(&sum.to_be_bytes());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_round_trips_and_rejects_strangers() {
        let b = banner(ServerKind::Sink, 7);
        assert_eq!(parse_banner(&b), Some((ServerKind::Sink, 7)));
        assert!(b.starts_with(MAGIC));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(parse_banner(&bad), None);
        let mut bad = b;
        bad[8] = 9;
        assert_eq!(parse_banner(&bad), None);
    }

    #[test]
    fn payloads_differ_per_seed_and_repeat_per_seed() {
        assert_eq!(payload(64, 1), payload(64, 1));
        assert_ne!(payload(64, 1), payload(64, 2));
        let mut c = Checksum::default();
        let p = payload(1000, 3);
        c.update(&p[..10]);
        c.update(&p[10..]);
        assert_eq!(c.value(), Checksum::of(&p));
    }
}
