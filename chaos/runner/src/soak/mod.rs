//! Soak runs: a long drill whose faults are drawn from the seed, judged on what a long run
//! shows, not on how fast one fault is handled.
//!
//! A soak file (`chaos/soak/*.toml`, format in `docs/CHAOS.md`) is a drill scenario without
//! `[[timeline]]` or `[bounds]`, plus `[soak]`: how faults are drawn (kinds, gap, length, how
//! many members at once), the warm-up, and the bounds. [`run`] uses the drill's machinery
//! (injector, member servers, proxies, sluice in process, checked traffic, the access tap, the
//! timeline player) and adds what a long run needs: a timeline drawn from the seed, client
//! records tallied as they finish (memory stays flat), and the process's fds and RSS read
//! after a warm-up and again after the run has settled.
//!
//! ```text
//! plan       the soak file: [soak] and its bounds; the rest is a drill scenario
//! schedule   the faults drawn from the seed (pure; a fingerprint shows two runs agree)
//! ledger     clients and access lines tallied as they come, paired by address and time
//! gauge      open fds (less pooled splice pipes) and RSS, from /proc/self
//! runner     warm-up, soak, settle; teardown through the drill's rig
//! report     measures, verdicts, JSON; text.rs renders it
//! ```

mod gauge;
mod ledger;
mod plan;
mod report;
mod runner;
mod schedule;
pub(crate) mod text;

pub use gauge::Gauge;
pub use ledger::{OkFailed, Slowest, Tally};
pub use plan::{FaultKind, Plan, RssGrowth, Soak, SoakBounds};
pub use report::{KindCount, Resources, Sample, Schedule, SoakReport, Transitions, Warmup};
pub use runner::run;
pub use schedule::{Fault, draw, fingerprint, steps};
