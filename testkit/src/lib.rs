//! Test helpers every sluice test binary shares, so each exists once (STYLE.md §9):
//!
//! - [`wait`]: deadline-bound waiting. [`eventually`] and [`eventually_async`] poll a condition
//!   and fail with what they waited for and for how long; [`settle`] returns the last value seen
//!   for the caller to assert on; [`within`] bounds a single future.
//! - [`bytes`]: seeded pseudo-random payloads ([`payload`], or [`PayloadStream`] a word at a
//!   time for large transfers) and checksums to compare them ([`checksum`], [`StreamChecksum`]).
//! - [`process`]: a fresh scratch directory per test process ([`scratch_dir`]) and a finished
//!   command's output for an assertion message ([`output_text`]).
//!
//! Nothing here knows sluice: the forwarder-specific rigs (upstreams, a running sluice) stay in
//! the test crates and build on these.

pub mod bytes;
pub mod process;
pub mod wait;

pub use bytes::{PayloadStream, StreamChecksum, Xorshift, checksum, payload};
pub use process::{output_text, scratch_dir};
pub use wait::{POLL, eventually, eventually_async, settle, within};
