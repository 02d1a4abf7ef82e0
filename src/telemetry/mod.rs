//! Telemetry: metric names, the access log.

pub mod access_log;
pub mod metrics;
