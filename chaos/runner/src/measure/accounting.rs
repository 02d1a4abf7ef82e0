//! Checks against sluice's own access log: bytes each way for every verified client, and
//! redials (successful connections that took more than one member).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::Inputs;
use crate::access::AccessEvent;
use crate::report::ms;
use crate::traffic::Outcome;

/// Disagreements kept in the report.
const MAX_SHOWN: usize = 10;

#[derive(Clone, Debug, Default, Serialize)]
pub struct BytesCheck {
    /// Connections whose every byte was checked and matched.
    pub verified: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Complete but wrong.
    pub corrupt: u64,
    /// Verified connections whose access line agrees with the client on bytes both ways.
    pub access_agrees: u64,
    pub access_disagrees: u64,
    /// Verified connections without an access line (no tap, or not found).
    pub access_missing: u64,
    /// The first few disagreements, to investigate.
    pub disagreements: Vec<Disagreement>,
}

/// A verified client whose access line counts other bytes.
#[derive(Clone, Debug, Serialize)]
pub struct Disagreement {
    pub client: u64,
    pub local: Option<SocketAddr>,
    pub sent: u64,
    pub received: u64,
    pub access_up: u64,
    pub access_down: u64,
    pub access_outcome: String,
}

impl BytesCheck {
    pub fn intact(&self) -> bool {
        self.corrupt == 0 && self.access_disagrees == 0
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Redials {
    pub observed: bool,
    /// Successful connections that took more than one member.
    pub count: u64,
    pub first: Option<FirstRedial>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FirstRedial {
    #[serde(rename = "at_ms", serialize_with = "ms")]
    pub at: Duration,
    pub client: Option<SocketAddr>,
    pub member: Option<String>,
    pub attempts: u64,
}

/// Checks every completed client, and compares it with sluice's access line for the same
/// connection: same client address, and the first line written after the client started (a
/// port can be reused once the earlier connection is gone, never while it lives).
pub(super) fn bytes(i: &Inputs<'_>) -> BytesCheck {
    let mut by_client: HashMap<SocketAddr, Vec<&AccessEvent>> = HashMap::new();
    for a in i.access {
        if let Some(client) = a.client {
            by_client.entry(client).or_default().push(a);
        }
    }
    for lines in by_client.values_mut() {
        lines.sort_by_key(|a| a.seen);
    }
    let mut b = BytesCheck::default();
    for c in i.clients {
        if c.outcome == Outcome::Corrupt {
            b.corrupt += 1;
        }
        if !c.outcome.is_ok() {
            continue;
        }
        b.verified += 1;
        b.payload_bytes += c.payload;
        let started = i.t0 + c.start;
        let line = c
            .local
            .and_then(|l| by_client.get(&l))
            .and_then(|lines| lines.iter().find(|a| a.seen >= started));
        match line {
            Some(a) if a.bytes_up == c.sent && a.bytes_down == c.received => b.access_agrees += 1,
            Some(a) => {
                b.access_disagrees += 1;
                if b.disagreements.len() < MAX_SHOWN {
                    b.disagreements.push(Disagreement {
                        client: c.id,
                        local: c.local,
                        sent: c.sent,
                        received: c.received,
                        access_up: a.bytes_up,
                        access_down: a.bytes_down,
                        access_outcome: a.outcome.clone(),
                    });
                }
            }
            None => b.access_missing += 1,
        }
    }
    b
}

pub(super) fn redials(i: &Inputs<'_>) -> Redials {
    let mut r = Redials {
        observed: i.tapped,
        ..Default::default()
    };
    for a in i
        .access
        .iter()
        .filter(|a| a.attempts > 1 && a.outcome == "ok")
    {
        r.count += 1;
        let at = a
            .seen
            .saturating_duration_since(i.t0)
            .saturating_sub(Duration::from_secs_f64(a.duration_ms.max(0.0) / 1000.0));
        if r.first.as_ref().is_none_or(|f| at < f.at) {
            r.first = Some(FirstRedial {
                at,
                client: a.client,
                member: a.member.clone(),
                attempts: a.attempts,
            });
        }
    }
    r
}
