//! Telemetry: metric names, logging setup.

pub mod metrics;
