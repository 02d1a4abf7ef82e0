//! Chaos drills: run a scenario of faults against a sluice in this process and judge it.
//!
//! A scenario (`chaos/scenarios/*.toml`, format in `docs/CHAOS.md`) declares the sluice config
//! under test, its members, the client traffic, a timeline of faults and the bounds to meet.
//! [`run`] starts everything on 127.0.0.1, plays it, and returns a [`Report`] whose `passed`
//! says whether every bound was met. Faults go only through the Toxiproxy HTTP API, so the
//! same drill runs against `sluice-toxiproxy` (embedded, injector.rs) or a real Toxiproxy
//! (`TOXIPROXY_URL`).
//!
//! ```text
//! schema, parse, validate/   the scenario file: serde types, errors in sluice's style, rules
//!                            (validate/: members and traffic, timeline, sluice, bounds)
//! scenario                   validated types; the sluice config with the members filled in
//! faults                     which member is faulted when (pure, over timeline steps)
//! wire                       the banner / echo / sink protocol and payload checksums
//! members                    the built-in member servers (in-process; kill, restart)
//! upstream                   what stands behind a proxy: built-in, the user's addr, a started command
//! workload                   the user's traffic command, one run per client
//! toxiproxy, injector        the API client; finding, starting and stopping the injector
//! traffic                    the client load, every byte checked
//! observe, access            member state sampled every 10ms; the access-log tap (redials)
//! timeline                   plays the steps on schedule
//! measure/, verdict          numbers from what happened (accounting.rs: against the access
//!                            log); bounds against them
//! report, text               the report as JSON and as text
//! junit                      the report (a drill's or a soak's) as JUnit XML for CI
//! rig, runner                members, proxies and sluice up and down; the order of it all
//! soak/                      long runs with faults drawn from the seed: bytes, waits, fds, RSS
//! ```

pub mod access;
pub mod admin;
mod control;
mod error;
pub mod faults;
mod http;
pub mod injector;
pub mod junit;
pub mod measure;
pub mod members;
pub mod observe;
mod parse;
pub mod ports;
pub mod report;
mod rig;
mod runner;
pub mod scenario;
pub mod schema;
pub mod soak;
mod text;
pub mod timeline;
pub mod toxiproxy;
pub mod traffic;
pub mod upstream;
mod validate;
pub mod verdict;
pub mod wire;
pub mod workload;

pub use error::DrillError;
pub use injector::InjectorChoice;
pub use report::Report;
pub use runner::{RunOptions, run};
pub use scenario::Scenario;
