//! The soak's client measurements, taken as each client finishes and as sluice's access lines
//! arrive, so that what the soak holds in memory is bounded by the connections in flight, not
//! by the 100,000 it ran: its RSS bound is about sluice, not about the soak's own records.
//!
//! Each finished client is counted (outcome, wait, the fault on the member it reached) and,
//! when it has a local address, paired with sluice's access line for the same connection to
//! compare bytes. A line belongs to a client when it names the client's address and sluice
//! accepted the connection (the line's time less its duration) inside the client's life: a
//! client port is reused over a long run, but never by two live connections. Whichever of the
//! two comes first waits for the other; what still waits after [`Ledger::horizon`] is dropped
//! (a verified client without a line counts as `access_missing`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::plan::FaultKind;
use super::schedule::Fault;
use crate::access::AccessEvent;
use crate::measure::{BytesCheck, ClientTotals, Disagreement};
use crate::report::ms;
use crate::traffic::{ClientRecord, Outcome};

/// Disagreements kept in the report.
const MAX_SHOWN: usize = 10;
/// How far after a client's end its line may be stamped (the access line is written a moment
/// after sluice measured the connection's duration; a busy runtime can stretch that moment).
const LINE_SLACK: Duration = Duration::from_millis(50);

/// Clients by the fault on the member they reached.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct OkFailed {
    pub ok: u64,
    pub failed: u64,
}

/// The slowest client.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Slowest {
    pub client: u64,
    #[serde(rename = "wait_ms", serialize_with = "ms")]
    pub wait: Duration,
    pub outcome: Outcome,
}

/// Everything measured about the clients.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    pub clients: ClientTotals,
    pub slowest: Option<Slowest>,
    /// Keyed by the fault kind on the member a client reached when it arrived (planned
    /// times), `none` for a clean member, `no_banner` for clients that never learnt theirs.
    pub by_fault: BTreeMap<&'static str, OkFailed>,
    pub bytes: BytesCheck,
    /// Successful connections sluice needed more than one member for (access log).
    pub redials: u64,
    /// sluice's own outcome per access line.
    pub sluice_outcomes: BTreeMap<String, u64>,
    /// Access lines no client claimed (connections sluice accepted after the client gave up).
    pub unmatched_lines: u64,
}

/// A client waiting for its access line.
struct Waiting {
    id: u64,
    start: Instant,
    end: Instant,
    /// Only verified clients are compared; the others just claim their line.
    verified: bool,
    sent: u64,
    received: u64,
}

/// An access line waiting for its client.
struct Line {
    accepted: Instant,
    seen: Instant,
    up: u64,
    down: u64,
    outcome: String,
}

/// The running tally; see the module doc.
pub struct Ledger {
    t0: Instant,
    horizon: Duration,
    /// Per member, its faults in start order.
    faults: Vec<Vec<(Duration, Duration, FaultKind)>>,
    tally: Tally,
    waiting: HashMap<SocketAddr, Vec<Waiting>>,
    lines: HashMap<SocketAddr, Vec<Line>>,
}

impl Ledger {
    /// A ledger for traffic started at `t0` against `members` members carrying `faults`.
    /// `horizon` is how long a client or a line waits for the other.
    pub fn new(t0: Instant, members: usize, faults: &[Fault], horizon: Duration) -> Self {
        let mut by_member = vec![Vec::new(); members];
        for f in faults {
            if let Some(list) = by_member.get_mut(f.member) {
                list.push((f.start, f.end, f.kind));
            }
        }
        Self {
            t0,
            horizon,
            faults: by_member,
            tally: Tally::default(),
            waiting: HashMap::new(),
            lines: HashMap::new(),
        }
    }

    /// Clients finished so far: (all, ok, failed).
    pub fn counts(&self) -> (u64, u64, u64) {
        let c = &self.tally.clients;
        (c.total, c.ok, c.failed)
    }

    /// Counts a finished client and pairs it with its access line if that came first.
    pub fn client(&mut self, c: &ClientRecord) {
        let t = &mut self.tally;
        t.clients.total += 1;
        if c.outcome.is_ok() {
            t.clients.ok += 1;
        } else {
            t.clients.failed += 1;
        }
        *t.clients.by_outcome.entry(c.outcome.as_str()).or_default() += 1;
        let wait = c.end.saturating_sub(c.start);
        if t.slowest.is_none_or(|s| wait > s.wait) {
            t.slowest = Some(Slowest {
                client: c.id,
                wait,
                outcome: c.outcome,
            });
        }
        let fault = self.fault_on(c);
        let t = &mut self.tally;
        let row = t.by_fault.entry(fault).or_default();
        if c.outcome.is_ok() {
            row.ok += 1;
        } else {
            row.failed += 1;
        }
        if c.outcome == Outcome::Corrupt {
            t.bytes.corrupt += 1;
        }
        let verified = c.outcome.is_ok();
        if verified {
            t.bytes.verified += 1;
            t.bytes.payload_bytes += c.payload;
        }
        let Some(local) = c.local else { return };
        let w = Waiting {
            id: c.id,
            start: self.t0 + c.start,
            end: self.t0 + c.end,
            verified,
            sent: c.sent,
            received: c.received,
        };
        let found = self.lines.get_mut(&local).and_then(|lines| {
            // The earliest accept inside the client's life: a later one is the port's next
            // connection.
            let i = (0..lines.len())
                .filter(|&i| belongs(&w, &lines[i]))
                .min_by_key(|&i| lines[i].accepted)?;
            Some(lines.swap_remove(i))
        });
        match found {
            Some(line) => self.judge(&w, &line),
            None => self.waiting.entry(local).or_default().push(w),
        }
    }

    /// Takes one access line about the drilled members.
    pub fn access(&mut self, a: &AccessEvent) {
        let accepted = a
            .seen
            .checked_sub(Duration::from_secs_f64(a.duration_ms.max(0.0) / 1000.0))
            .unwrap_or(a.seen);
        // A warm-up connection, counted before the soak began.
        if accepted < self.t0 {
            return;
        }
        *self
            .tally
            .sluice_outcomes
            .entry(a.outcome.clone())
            .or_default() += 1;
        if a.attempts > 1 && a.outcome == "ok" {
            self.tally.redials += 1;
        }
        let Some(client) = a.client else { return };
        let line = Line {
            accepted,
            seen: a.seen,
            up: a.bytes_up,
            down: a.bytes_down,
            outcome: a.outcome.clone(),
        };
        let found = self.waiting.get_mut(&client).and_then(|clients| {
            // The latest client started before the accept: earlier ones had the port before.
            let i = (0..clients.len())
                .filter(|&i| belongs(&clients[i], &line))
                .max_by_key(|&i| clients[i].start)?;
            Some(clients.swap_remove(i))
        });
        match found {
            Some(w) => self.judge(&w, &line),
            None => self.lines.entry(client).or_default().push(line),
        }
    }

    /// Drops what waited longer than the horizon: verified clients without a line count as
    /// missing, lines without a client as unmatched.
    pub fn prune(&mut self, now: Instant) {
        if let Some(cutoff) = now.checked_sub(self.horizon) {
            self.drop_before(Some(cutoff));
        }
    }

    /// The tally, once traffic and sluice are done: whatever still waits is dropped.
    pub fn finish(&mut self) -> Tally {
        self.drop_before(None);
        std::mem::take(&mut self.tally)
    }

    /// Drops what ended (clients) or was written (lines) before `cutoff`; `None`: everything.
    fn drop_before(&mut self, cutoff: Option<Instant>) {
        let old = |t: Instant| cutoff.is_none_or(|c| t < c);
        let mut missing = 0;
        self.waiting.retain(|_, clients| {
            clients.retain(|w| {
                let keep = !old(w.end);
                missing += u64::from(!keep && w.verified);
                keep
            });
            !clients.is_empty()
        });
        let mut unmatched = 0;
        self.lines.retain(|_, lines| {
            lines.retain(|l| {
                let keep = !old(l.seen);
                unmatched += u64::from(!keep);
                keep
            });
            !lines.is_empty()
        });
        self.tally.bytes.access_missing += missing;
        self.tally.unmatched_lines += unmatched;
    }

    fn judge(&mut self, w: &Waiting, line: &Line) {
        if !w.verified {
            return;
        }
        let b = &mut self.tally.bytes;
        if line.up == w.sent && line.down == w.received {
            b.access_agrees += 1;
            return;
        }
        b.access_disagrees += 1;
        if b.disagreements.len() < MAX_SHOWN {
            b.disagreements.push(Disagreement {
                client: w.id,
                local: None,
                sent: w.sent,
                received: w.received,
                access_up: line.up,
                access_down: line.down,
                access_outcome: line.outcome.clone(),
            });
        }
    }

    fn fault_on(&self, c: &ClientRecord) -> &'static str {
        let Some(member) = c.member else {
            return "no_banner";
        };
        let Some(faults) = self.faults.get(member as usize) else {
            return "none";
        };
        let i = faults.partition_point(|(start, _, _)| *start <= c.start);
        match i.checked_sub(1).map(|i| faults[i]) {
            Some((_, end, kind)) if c.start < end => kind.as_str(),
            _ => "none",
        }
    }
}

/// Whether sluice accepted `line`'s connection while client `w` was alive.
fn belongs(w: &Waiting, line: &Line) -> bool {
    line.accepted >= w.start && line.accepted <= w.end + LINE_SLACK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn client(id: u64, port: u16, start: u64, end: u64, outcome: Outcome) -> ClientRecord {
        ClientRecord {
            id,
            start: ms(start),
            end: ms(end),
            local: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            member: Some(0),
            payload: 100,
            sent: 100,
            received: 116,
            outcome,
            detail: None,
        }
    }

    fn line(t0: Instant, port: u16, accepted: u64, ended: u64, up: u64) -> AccessEvent {
        AccessEvent {
            client: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            member: Some("m".into()),
            attempts: 1,
            outcome: "ok".into(),
            bytes_up: up,
            bytes_down: 116,
            duration_ms: (ended - accepted) as f64,
            seen: t0 + ms(ended),
        }
    }

    #[test]
    fn a_reused_port_pairs_each_client_with_its_own_line() {
        let t0 = Instant::now();
        let mut l = Ledger::new(t0, 1, &[], ms(60_000));
        // Port 5000 twice: the second line (bytes_up 99: wrong) arrives before the first
        // client is reported, and must not be taken for the first client's.
        l.access(&line(t0, 5000, 1_010, 1_100, 99));
        l.access(&line(t0, 5000, 12, 90, 100));
        l.client(&client(0, 5000, 10, 95, Outcome::Ok));
        l.client(&client(1, 5000, 1_000, 1_090, Outcome::Ok));
        let t = l.finish();
        assert_eq!(t.bytes.verified, 2);
        assert_eq!(t.bytes.access_agrees, 1);
        assert_eq!(t.bytes.access_disagrees, 1);
        assert_eq!(t.bytes.disagreements[0].client, 1);
        assert_eq!(t.bytes.access_missing, 0);
        assert_eq!(t.unmatched_lines, 0);
    }

    #[test]
    fn failures_claim_their_lines_and_waits_are_tracked() {
        let t0 = Instant::now();
        let faults = [Fault {
            id: 0,
            member: 0,
            kind: FaultKind::Timeout,
            stream: None,
            start: ms(500),
            end: ms(2_000),
            toxic: None,
        }];
        let mut l = Ledger::new(t0, 1, &faults, ms(60_000));
        l.client(&client(0, 6000, 600, 3_600, Outcome::Timeout));
        l.access(&line(t0, 6000, 601, 3_601, 100));
        l.client(&client(1, 6001, 100, 200, Outcome::Ok));
        let mut orphan = client(2, 6002, 2_100, 2_300, Outcome::Ok);
        orphan.member = None;
        l.client(&orphan);
        let t = l.finish();
        assert_eq!(t.clients.total, 3);
        assert_eq!(t.slowest.unwrap().wait, ms(3_000));
        assert_eq!(t.by_fault["timeout"].failed, 1);
        assert_eq!(t.by_fault["none"].ok, 1);
        assert_eq!(t.by_fault["no_banner"].ok, 1);
        // Two verified clients never got a line: missing, not disagreeing.
        assert_eq!(t.bytes.access_missing, 2);
        assert_eq!(t.bytes.access_disagrees, 0);
        assert_eq!(t.unmatched_lines, 0);
    }
}
