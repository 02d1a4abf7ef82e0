//! sluice: a resilient, upstream-aware TCP port forwarder.
//!
//! The path of one connection, and the module that owns each step:
//!
//! - [`config`]: the TOML file, validated in one pass into runtime types.
//! - [`route`]: one listener per route address; accepts and hands each client on.
//! - [`dns`]: `host:port` and SRV member entries resolved in the background, by TTL, into
//!   one member per address.
//! - [`upstream`]: pools of members, their eligibility (health, drain), tier choice and the
//!   balancers that pick one member.
//! - [`health`]: one heartbeat task per member flipping its health after rise/fall probes.
//! - [`relay`]: copies both directions with half-close and idle timeout.
//! - [`server`]: builds everything from a [`config::Config`] and runs it until shutdown.
//! - [`telemetry`]: metric names, the Prometheus recorder, the access log.
//! - [`budget`]: worst-case failover times per pool from a validated config, with their
//!   arithmetic (`sluice check --explain`; drill bounds).
//! - [`resources`]: the process's own descriptor limit, the connection capacity it carries,
//!   and telling a local shortage (EMFILE, ...) from a member's failure.
//! - [`time`]: deadlines that saturate instead of overflowing the clock.
//! - [`admin`]: the admin HTTP API (status, drain/enable, reload, `/metrics`) when `[admin]`
//!   is set.
//!
//! `main.rs` is a thin CLI over [`server::Server`]; integration tests drive the same type.
//! Chaos drills live in their own crate (`chaos/runner`, `sluice-chaos`), which depends on
//! this one; `sluice drill` and `sluice soak` hand off to its executable.

pub mod admin;
pub mod budget;
pub mod config;
pub mod connect;
pub mod dns;
pub mod health;
pub mod relay;
pub mod resources;
pub mod route;
pub mod server;
pub mod time;

pub use server::{RunSummary, Server, ServerError, Shutdown};
pub mod telemetry;
pub mod upstream;
