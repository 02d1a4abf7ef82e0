//! Telemetry: metric names, the access log, the JSON log line format.

pub mod access_log;
pub mod metrics;
pub mod throttle;

use tracing_subscriber::fmt;

/// The JSON log line `--log-format json` writes: one object per event, its fields flattened
/// beside `message`, the current span's fields under `span`. `sluice` and `sluice-chaos` both
/// log this way, so one parser reads either.
pub fn json_layer<S>()
-> fmt::Layer<S, fmt::format::JsonFields, fmt::format::Format<fmt::format::Json>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
}
