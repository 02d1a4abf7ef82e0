//! The soak's faults, drawn from the seed: which member, which fault, when, how long, which
//! stream, with which attributes. A pure function of (seed, plan, member count, duration), so
//! one seed always gives the same schedule, and the report prints a fingerprint to show it.
//!
//! The draws come from a SplitMix64 stream of our own rather than `rand`'s `SmallRng`, whose
//! algorithm may change between releases and platforms: a seed written in a bug report must
//! replay the same faults after an upgrade.
//!
//! Walking forward from 0, each next start is a gap drawn from `fault_every`. A start with
//! `max_faulted` members already faulted is skipped; otherwise a member not already faulted
//! gets one fault (so a member carries one fault at a time, and toxic names and disable/enable
//! pairs never overlap). Every fault is lifted by the end of traffic, so the run ends clean.
//!
//! Attributes, per kind (Toxiproxy units):
//!
//! | kind | attributes |
//! |---|---|
//! | latency | latency 10-300 ms, jitter 0-latency/2 |
//! | bandwidth | rate 16-512 KB/s |
//! | slow_close | delay 50-1000 ms |
//! | timeout | timeout 0 (a black hole until removed) half the time, else 100-2000 ms |
//! | reset_peer | timeout 0-1000 ms |
//! | limit_data | bytes 1-32768 (below 16 it cuts the member's banner) |
//! | slicer | average_size 16-1024, size_variation 0-average/2 bytes, delay 0-2000 µs |
//! | down | the proxy is disabled (connects refused, connections dropped), then enabled |

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::plan::{FaultKind, Plan};
use crate::report::ms;
use crate::scenario::{Action, Step, Toxic};
use crate::schema::Stream;
use crate::wire::{self, Checksum};

/// Keeps the schedule's stream apart from the payloads', which are drawn from the same seed.
const SALT: u64 = 0x50AC_5EED;

/// One fault on one member.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fault {
    /// Order drawn, from 0; part of the toxic's name.
    pub id: usize,
    pub member: usize,
    pub kind: FaultKind,
    /// The toxic's stream; `None` for `down`.
    pub stream: Option<Stream>,
    #[serde(rename = "start_ms", serialize_with = "ms")]
    pub start: Duration,
    #[serde(rename = "end_ms", serialize_with = "ms")]
    pub end: Duration,
    /// The toxic added at `start` and removed at `end`; `None` for `down`.
    #[serde(skip)]
    pub toxic: Option<Toxic>,
}

impl Fault {
    /// Whether `t` falls inside the fault.
    pub fn covers(&self, t: Duration) -> bool {
        self.start <= t && t < self.end
    }
}

/// Draws the faults for `members` members over `duration` of traffic, in start order.
pub fn draw(seed: u64, plan: &Plan, members: usize, duration: Duration) -> Vec<Fault> {
    let mut rng = SplitMix::new(seed ^ SALT);
    let mut busy_until = vec![Duration::ZERO; members];
    let mut faults = Vec::new();
    let mut t = Duration::ZERO;
    if members == 0 || plan.faults.is_empty() {
        return faults;
    }
    loop {
        t += rng.duration(plan.fault_every);
        if t + plan.fault_length.0 > duration {
            return faults;
        }
        let free: Vec<usize> = (0..members).filter(|&m| busy_until[m] <= t).collect();
        if members - free.len() >= plan.max_faulted || free.is_empty() {
            continue;
        }
        let member = free[rng.below(free.len() as u64) as usize];
        let kind = plan.faults[rng.below(plan.faults.len() as u64) as usize];
        let end = (t + rng.duration(plan.fault_length)).min(duration);
        let stream = if rng.below(2) == 0 {
            Stream::Upstream
        } else {
            Stream::Downstream
        };
        let id = faults.len();
        let toxic = toxic(kind, stream, id, &mut rng);
        busy_until[member] = end;
        faults.push(Fault {
            id,
            member,
            kind,
            stream: toxic.as_ref().map(|t| t.stream),
            start: t,
            end,
            toxic,
        });
    }
}

/// The timeline that plays `faults`: a start and an end step each, in time order (at one
/// instant, an end before a start, so a member is free again before its next fault).
pub fn steps(faults: &[Fault]) -> Vec<Step> {
    let mut ends = Vec::new();
    let mut starts = Vec::new();
    for f in faults {
        let member = f.member;
        let (on, off) = match &f.toxic {
            Some(toxic) => (
                Action::AddToxic {
                    member,
                    toxic: toxic.clone(),
                },
                Action::RemoveToxic {
                    member,
                    name: toxic.name.clone(),
                },
            ),
            None => (Action::Disable { member }, Action::Enable { member }),
        };
        starts.push(Step {
            at: f.start,
            action: on,
        });
        ends.push(Step {
            at: f.end,
            action: off,
        });
    }
    let mut steps = ends;
    steps.extend(starts);
    steps.sort_by_key(|s| s.at);
    steps
}

/// FNV-1a over every step's time and text: equal for equal schedules, and short enough to
/// compare two reports by eye.
pub fn fingerprint(steps: &[Step], members: &[crate::scenario::MemberSpec]) -> u64 {
    let mut sum = Checksum::default();
    for s in steps {
        sum.update(&(s.at.as_micros() as u64).to_be_bytes());
        sum.update(s.action.describe(members).as_bytes());
    }
    sum.value()
}

fn toxic(kind: FaultKind, stream: Stream, id: usize, rng: &mut SplitMix) -> Option<Toxic> {
    let mut attributes = Map::new();
    let mut set = |k: &str, v: u64| {
        attributes.insert(k.to_string(), Value::from(v));
    };
    match kind {
        FaultKind::Down => return None,
        FaultKind::Latency => {
            let latency = rng.between(10, 300);
            set("latency", latency);
            set("jitter", rng.between(0, latency / 2));
        }
        FaultKind::Bandwidth => set("rate", rng.between(16, 512)),
        FaultKind::SlowClose => set("delay", rng.between(50, 1000)),
        FaultKind::Timeout => {
            let timeout = if rng.below(2) == 0 {
                0
            } else {
                rng.between(100, 2000)
            };
            set("timeout", timeout);
        }
        FaultKind::ResetPeer => set("timeout", rng.between(0, 1000)),
        FaultKind::LimitData => set("bytes", rng.between(1, 32768)),
        FaultKind::Slicer => {
            let average = rng.between(16, 1024);
            set("average_size", average);
            set("size_variation", rng.between(0, average / 2));
            set("delay", rng.between(0, 2000));
        }
    }
    Some(Toxic {
        name: format!("f{id}_{}_{}", kind.as_str(), stream.as_str()),
        kind: kind.as_str().to_string(),
        stream,
        toxicity: 1.0,
        attributes,
    })
}

/// SplitMix64 (Steele, Lea and Flood), through the drill's own finalizer.
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        wire::mix(self.0)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias for small `n` is below 2^-50).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in the range, to the millisecond.
    fn duration(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        let ms = self.between(lo.as_millis() as u64, hi.as_millis() as u64);
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults;

    fn plan(max_faulted: usize) -> Plan {
        Plan {
            warmup: Duration::ZERO,
            fault_every: (Duration::from_secs(1), Duration::from_secs(4)),
            fault_length: (Duration::from_secs(1), Duration::from_secs(8)),
            faults: FaultKind::ALL.to_vec(),
            max_faulted,
            settle: Duration::from_secs(1),
            sample_every: Duration::from_secs(1),
        }
    }

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    #[test]
    fn one_seed_draws_one_schedule() {
        let a = draw(7, &plan(2), 3, FIVE_MINUTES);
        assert_eq!(a, draw(7, &plan(2), 3, FIVE_MINUTES));
        assert_ne!(a, draw(8, &plan(2), 3, FIVE_MINUTES));
        assert!(a.len() > 50, "a fault every 1-4s: {}", a.len());
        // Every kind and every member comes up over five minutes.
        for kind in FaultKind::ALL {
            assert!(a.iter().any(|f| f.kind == kind), "{kind:?} never drawn");
        }
        for m in 0..3 {
            assert!(a.iter().any(|f| f.member == m), "member {m} never faulted");
        }
        let streams = |s| a.iter().filter(|f| f.stream == Some(s)).count();
        assert!(streams(Stream::Upstream) > 10 && streams(Stream::Downstream) > 10);
    }

    #[test]
    fn the_first_faults_of_seed_42_stay_put() {
        // A change here changes every recorded soak's schedule: bump it only on purpose.
        let a = draw(42, &plan(2), 3, FIVE_MINUTES);
        let head: Vec<(usize, &str, u128, u128)> = a
            .iter()
            .take(3)
            .map(|f| {
                (
                    f.member,
                    f.kind.as_str(),
                    f.start.as_millis(),
                    f.end.as_millis(),
                )
            })
            .collect();
        let want = [
            (1, "latency", 2284, 9472),
            (2, "slow_close", 5578, 8449),
            (2, "timeout", 11038, 14293),
        ];
        assert_eq!(head, want);
    }

    #[test]
    fn faults_never_exceed_max_faulted_and_end_with_the_traffic() {
        for seed in 0..50 {
            for max in 1..=3 {
                let f = draw(seed, &plan(max), 3, Duration::from_secs(60));
                let steps = steps(&f);
                let windows = faults::windows(3, steps.iter().map(|s| (s.at, &s.action)));
                // One window per fault: a member never carries two at once.
                assert_eq!(windows.len(), f.len());
                for w in &windows {
                    let end = w.end.expect("every fault is lifted");
                    assert!(end <= Duration::from_secs(60));
                    let at_once = windows.iter().filter(|o| o.contains(w.start)).count();
                    assert!(at_once <= max, "seed {seed}: {at_once} faulted at once");
                }
            }
        }
    }

    #[test]
    fn the_fingerprint_follows_the_schedule() {
        let members: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| crate::scenario::MemberSpec {
                name: n.to_string(),
                server: wire::ServerKind::Echo,
                source: crate::scenario::MemberSource::Builtin,
                proxy: None,
                tier: 0,
                weight: 1,
            })
            .collect();
        let print = |seed| fingerprint(&steps(&draw(seed, &plan(2), 3, FIVE_MINUTES)), &members);
        assert_eq!(print(1), print(1));
        assert_ne!(print(1), print(2));
    }
}
