//! The toxic types and their attributes, as Toxiproxy's `toxics/*.go` define them.
//!
//! Only the data lives here: what each attribute means and how it reads from and writes to JSON.
//! The effect on bytes is in `link::effects`. Attributes are signed 64-bit integers like Go's
//! `int64`; a missing attribute is 0, unknown ones are ignored, and a fractional or string value
//! is a decoding error, all as Go's `encoding/json` does. Negative values are accepted and act as 0.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// Every toxic type name this server implements, in Toxiproxy's spelling.
pub const TYPES: &[&str] = &[
    "noop",
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "limit_data",
    "slicer",
    // Extensions (not in Toxiproxy): they act on the listener, not on data. See `proxy`.
    "connect_timeout",
    "slow_accept",
];

/// One toxic's type with its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToxicKind {
    /// Passes data unchanged.
    Noop,
    /// Delays every chunk by `latency` ms, plus or minus up to `jitter` ms.
    Latency(Latency),
    /// Paces data to `rate` KB/s (1 KB = 1000 bytes); 0 or less means unlimited.
    Bandwidth(Bandwidth),
    /// Holds the close back for `delay` ms after the stream ends.
    SlowClose(SlowClose),
    /// Drops all data; closes the connection after `timeout` ms, or never when 0.
    Timeout(Timeout),
    /// On the first data, waits `timeout` ms, then resets both sides (RST, via `SO_LINGER` 0).
    ResetPeer(Timeout),
    /// Lets `bytes` bytes through on this stream of the connection, then closes it.
    LimitData(LimitData),
    /// Cuts chunks into slices of about `average_size` ± `size_variation` bytes, `delay` µs apart.
    Slicer(Slicer),
    /// Extension: the proxy's listener stops completing TCP handshakes while this toxic exists,
    /// so a client's connect times out (its SYNs are dropped) rather than being refused.
    ConnectTimeout,
    /// Extension: each new connection is accepted (and its upstream dialled) only `delay` ms
    /// after the kernel completed its handshake.
    SlowAccept(SlowClose),
}

/// Attributes of `latency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// Added delay, in milliseconds.
    pub latency: i64,
    /// Uniform spread around `latency`, in milliseconds.
    pub jitter: i64,
}

/// Attributes of `bandwidth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Bandwidth {
    /// Rate in KB/s (1000 bytes per second per unit).
    pub rate: i64,
}

/// Attributes of `slow_close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SlowClose {
    /// Delay before the close, in milliseconds.
    pub delay: i64,
}

/// Attributes of `timeout` and `reset_peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeout {
    /// In milliseconds. For `timeout`, 0 means never close.
    pub timeout: i64,
}

/// Attributes of `limit_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitData {
    /// Bytes to let through before closing.
    pub bytes: i64,
}

/// Attributes of `slicer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Slicer {
    /// Average slice size in bytes.
    pub average_size: i64,
    /// Allowed deviation from `average_size`, in bytes.
    pub size_variation: i64,
    /// Pause after each slice, in microseconds.
    pub delay: i64,
}

impl ToxicKind {
    /// Builds a toxic of type `type_name` from its `attributes` object (`null` or absent: all 0).
    pub fn parse(type_name: &str, attributes: Value) -> Result<Self, Error> {
        // Checked first so an unknown type is reported as such even with odd attributes.
        if !TYPES.contains(&type_name) {
            return Err(Error::InvalidToxicType);
        }
        let attributes = match attributes {
            Value::Null => Value::Object(Default::default()),
            other => other,
        };
        fn attrs<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Error> {
            serde_json::from_value(v).map_err(Error::bad_body)
        }
        Ok(match type_name {
            "noop" => ToxicKind::Noop,
            "latency" => ToxicKind::Latency(attrs(attributes)?),
            "bandwidth" => ToxicKind::Bandwidth(attrs(attributes)?),
            "slow_close" => ToxicKind::SlowClose(attrs(attributes)?),
            "timeout" => ToxicKind::Timeout(attrs(attributes)?),
            "reset_peer" => ToxicKind::ResetPeer(attrs(attributes)?),
            "limit_data" => ToxicKind::LimitData(attrs(attributes)?),
            "slicer" => ToxicKind::Slicer(attrs(attributes)?),
            "connect_timeout" => ToxicKind::ConnectTimeout,
            "slow_accept" => ToxicKind::SlowAccept(attrs(attributes)?),
            _ => return Err(Error::InvalidToxicType),
        })
    }

    /// The type name, as in the `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Noop => "noop",
            ToxicKind::Latency(_) => "latency",
            ToxicKind::Bandwidth(_) => "bandwidth",
            ToxicKind::SlowClose(_) => "slow_close",
            ToxicKind::Timeout(_) => "timeout",
            ToxicKind::ResetPeer(_) => "reset_peer",
            ToxicKind::LimitData(_) => "limit_data",
            ToxicKind::Slicer(_) => "slicer",
            ToxicKind::ConnectTimeout => "connect_timeout",
            ToxicKind::SlowAccept(_) => "slow_accept",
        }
    }

    /// The `attributes` object, with every field present as Go marshals a struct.
    pub fn attributes(&self) -> Value {
        let value = match self {
            ToxicKind::Noop | ToxicKind::ConnectTimeout => Ok(Value::Object(Default::default())),
            ToxicKind::Latency(a) => serde_json::to_value(a),
            ToxicKind::Bandwidth(a) => serde_json::to_value(a),
            ToxicKind::SlowClose(a) | ToxicKind::SlowAccept(a) => serde_json::to_value(a),
            ToxicKind::Timeout(a) | ToxicKind::ResetPeer(a) => serde_json::to_value(a),
            ToxicKind::LimitData(a) => serde_json::to_value(a),
            ToxicKind::Slicer(a) => serde_json::to_value(a),
        };
        // Plain structs of integers always serialize.
        value.unwrap_or(Value::Null)
    }

    /// This kind with `patch`'s keys laid over its attributes, as Go decodes an update into the
    /// existing struct: keys the patch leaves out keep their value.
    pub fn patched(&self, patch: Value) -> Result<Self, Error> {
        let mut merged = self.attributes();
        match (patch, &mut merged) {
            (Value::Null, _) => {}
            (Value::Object(patch), Value::Object(current)) => current.extend(patch),
            (other, _) => {
                return Err(Error::BadRequestBody(format!(
                    "attributes must be an object, got {other}"
                )));
            }
        }
        ToxicKind::parse(self.type_name(), merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_with_defaults_and_round_trips() {
        let kind = ToxicKind::parse("latency", json!({"latency": 200})).unwrap();
        assert_eq!(
            kind,
            ToxicKind::Latency(Latency {
                latency: 200,
                jitter: 0
            })
        );
        assert_eq!(kind.attributes(), json!({"latency": 200, "jitter": 0}));
        assert_eq!(
            ToxicKind::parse("noop", Value::Null).unwrap().attributes(),
            json!({})
        );
    }

    #[test]
    fn rejects_unknown_types_and_bad_attributes() {
        assert!(matches!(
            ToxicKind::parse("nope", json!({})),
            Err(Error::InvalidToxicType)
        ));
        assert!(matches!(
            ToxicKind::parse("bandwidth", json!({"rate": "fast"})),
            Err(Error::BadRequestBody(_))
        ));
        assert!(matches!(
            ToxicKind::parse("bandwidth", json!({"rate": 1.5})),
            Err(Error::BadRequestBody(_))
        ));
    }

    #[test]
    fn patch_keeps_unmentioned_attributes() {
        let kind = ToxicKind::parse("slicer", json!({"average_size": 10, "delay": 5})).unwrap();
        let patched = kind.patched(json!({"delay": 7})).unwrap();
        assert_eq!(
            patched.attributes(),
            json!({"average_size": 10, "size_variation": 0, "delay": 7})
        );
    }
}
