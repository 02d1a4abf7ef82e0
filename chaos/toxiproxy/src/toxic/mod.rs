//! Toxics as the API sees them: one named, typed toxic on one stream of a proxy, and the set of
//! them a proxy holds.
//!
//! This module owns the wire shape (`{"attributes", "name", "type", "stream", "toxicity"}`) and
//! the validation order of Toxiproxy's `AddToxicJson` (body, stream, type, duplicate name, then
//! attributes), so each bad request fails with the same error as there. It knows nothing of
//! sockets: `link` reads a [`set::Chains`] snapshot and applies the effects.

pub mod kind;
pub mod set;
pub mod target;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

pub use kind::ToxicKind;
pub use set::{Chains, ToxicSet};
pub use target::{Conn, Target};

use crate::error::Error;

/// Which way through the proxy a toxic acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Client to server.
    Upstream,
    /// Server to client (Toxiproxy's default).
    Downstream,
}

impl Stream {
    /// Parses a `stream` field, case-insensitively like Toxiproxy's `ParseDirection`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "upstream" => Ok(Stream::Upstream),
            "downstream" => Ok(Stream::Downstream),
            _ => Err(Error::InvalidStream),
        }
    }
}

/// One toxic installed on a proxy. Immutable: an update installs a new value with the same `uid`.
#[derive(Debug, Clone)]
pub struct Toxic {
    /// Unique within the proxy, across both streams.
    pub name: String,
    /// Type and attributes.
    pub kind: ToxicKind,
    /// The stream it acts on.
    pub stream: Stream,
    /// The `stream` field as the client spelled it; Toxiproxy echoes it back unchanged.
    stream_label: String,
    /// Probability (0.0 to 1.0) that the toxic is active on a given connection.
    pub toxicity: f32,
    /// Identity of this toxic from creation to removal: per-connection state such as
    /// `limit_data`'s byte count survives updates, as in Toxiproxy, but not a remove and re-add.
    pub uid: u64,
    /// Bumped by every update, so each connection re-rolls toxicity and restarts timers.
    pub rev: u64,
    /// Extension: which connections it acts on (`clients`, `first` in `attributes`).
    pub target: Target,
    /// The proxy's next connection sequence number when the toxic was added; `first` counts
    /// from here. Kept by updates, like `uid`.
    pub first_seq: u64,
    /// When this revision took effect; `timeout` counts from here (or from the connection's
    /// start, whichever is later).
    pub since: Instant,
}

/// A toxic as `POST /proxies/{proxy}/toxics` asked for it, checked up to (not including) its
/// attributes, which are parsed only once the name is known to be free.
#[derive(Debug, Clone)]
pub struct NewToxic {
    name: String,
    type_name: String,
    stream: Stream,
    stream_label: String,
    toxicity: f32,
    attributes: Value,
}

#[derive(Deserialize)]
struct CreateBody {
    name: Option<String>,
    #[serde(rename = "type")]
    type_name: Option<String>,
    stream: Option<String>,
    toxicity: Option<f32>,
    #[serde(default)]
    attributes: Value,
}

/// The body of `POST /proxies/{proxy}/toxics/{toxic}`: only attributes and toxicity change.
#[derive(Debug, Default, Deserialize)]
pub struct ToxicPatch {
    /// Keys to lay over the current attributes.
    #[serde(default)]
    pub attributes: Value,
    /// New toxicity; absent keeps the current one.
    pub toxicity: Option<f32>,
}

#[derive(Serialize)]
struct ToxicJson<'a> {
    attributes: Value,
    name: &'a str,
    #[serde(rename = "type")]
    type_name: &'a str,
    stream: &'a str,
    toxicity: f32,
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

impl NewToxic {
    /// Reads a create body. Defaults as Toxiproxy: `downstream`, toxicity 1.0, and the name
    /// `<type>_<stream>`.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        let body: CreateBody = serde_json::from_slice(body).map_err(Error::bad_body)?;
        let stream_label = body.stream.unwrap_or_else(|| "downstream".to_string());
        let stream = Stream::parse(&stream_label)?;
        let type_name = body.type_name.unwrap_or_default();
        let name = match body.name {
            Some(name) if !name.is_empty() => name,
            _ => format!("{type_name}_{stream_label}"),
        };
        if !kind::TYPES.contains(&type_name.as_str()) {
            return Err(Error::InvalidToxicType);
        }
        Ok(NewToxic {
            name,
            type_name,
            stream,
            stream_label,
            toxicity: body.toxicity.unwrap_or(1.0),
            attributes: body.attributes,
        })
    }

    /// The name the toxic will have.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parses the attributes and builds the toxic, with a fresh identity; `first_seq` is the
    /// proxy's next connection sequence number.
    pub fn build(self, first_seq: u64) -> Result<Toxic, Error> {
        let (kind, target) = parse_attributes(&self.type_name, &self.attributes)?;
        Ok(Toxic {
            kind,
            target,
            first_seq,
            name: self.name,
            stream: self.stream,
            stream_label: self.stream_label,
            toxicity: self.toxicity,
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            rev: 0,
            since: Instant::now(),
        })
    }
}

/// The kind and the targeting from one `attributes` object.
fn parse_attributes(type_name: &str, attributes: &Value) -> Result<(ToxicKind, Target), Error> {
    let kind = ToxicKind::parse(type_name, target::strip(attributes))?;
    let target = Target::parse(attributes)?;
    if kind == ToxicKind::ConnectTimeout && target.is_set() {
        // Its SYNs are dropped by the kernel before the proxy can see who sent them.
        return Err(Error::BadRequestBody(
            "connect_timeout acts on the listener before any connection exists: clients and first do not apply".into(),
        ));
    }
    Ok((kind, target))
}

impl ToxicPatch {
    /// Reads an update body.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(Error::bad_body)
    }
}

impl Toxic {
    /// This toxic with `patch` applied: same identity, next revision, effective now.
    pub fn patched(&self, patch: ToxicPatch) -> Result<Toxic, Error> {
        let mut merged = self.attributes();
        match (patch.attributes, &mut merged) {
            (Value::Null, _) => {}
            (Value::Object(patch), Value::Object(current)) => current.extend(patch),
            (other, _) => {
                return Err(Error::BadRequestBody(format!(
                    "attributes must be an object, got {other}"
                )));
            }
        }
        let (kind, target) = parse_attributes(self.kind.type_name(), &merged)?;
        Ok(Toxic {
            kind,
            target,
            toxicity: patch.toxicity.unwrap_or(self.toxicity),
            rev: self.rev + 1,
            since: Instant::now(),
            ..self.clone()
        })
    }

    /// The JSON the API returns for this toxic.
    pub fn to_json(&self) -> Value {
        let json = ToxicJson {
            attributes: self.attributes(),
            name: &self.name,
            type_name: self.kind.type_name(),
            stream: &self.stream_label,
            toxicity: self.toxicity,
        };
        serde_json::to_value(json).unwrap_or(Value::Null)
    }

    /// The kind's attributes plus the targeting keys that are set.
    fn attributes(&self) -> Value {
        let mut attributes = self.kind.attributes();
        self.target.write(&mut attributes);
        attributes
    }

    /// Whether this toxic acts on `conn` (targeting only; `toxicity` is rolled separately).
    pub fn selects(&self, conn: Conn) -> bool {
        self.target.selects(conn, self.first_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_toxiproxy() {
        let toxic = NewToxic::from_json(br#"{"type":"latency","attributes":{"latency":5}}"#)
            .unwrap()
            .build(0)
            .unwrap();
        assert_eq!(
            toxic.to_json(),
            json!({"attributes": {"latency": 5, "jitter": 0}, "name": "latency_downstream",
                   "type": "latency", "stream": "downstream", "toxicity": 1.0})
        );
    }

    #[test]
    fn stream_is_checked_before_type() {
        let err = NewToxic::from_json(br#"{"type":"bogus","stream":"sideways"}"#).unwrap_err();
        assert!(matches!(err, Error::InvalidStream));
        let err = NewToxic::from_json(br#"{"type":"bogus"}"#).unwrap_err();
        assert!(matches!(err, Error::InvalidToxicType));
        let err = NewToxic::from_json(b"not json").unwrap_err();
        assert!(matches!(err, Error::BadRequestBody(_)));
    }
}
