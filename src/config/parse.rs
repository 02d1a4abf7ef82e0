//! Text to [`FileConfig`], collecting every structural problem instead of stopping at the first.
//!
//! serde stops at the first error, so we deserialize, record the error at its exact key path
//! (`serde_path_to_error`), remove that key from the parsed TOML and try again, until the file
//! deserializes. The removed paths are handed to `validate`, which then does not also report
//! them as missing.

use std::collections::HashSet;

use serde_path_to_error::Segment;
use toml::{Table, Value};

use super::ConfigError;
use super::error::Location;
use super::schema::FileConfig;

/// A file that deserialized, plus what had to be removed from it to get there.
pub(super) struct Parsed {
    pub file: FileConfig,
    pub errors: Vec<ConfigError>,
    /// Key paths removed because their value was rejected.
    pub removed: HashSet<String>,
}

/// Bounds the remove-and-retry loop; a file with more problems than this is reported partially.
const MAX_STRUCTURAL_ERRORS: usize = 64;

pub(super) fn parse(text: &str, file: &str) -> Result<Parsed, Vec<ConfigError>> {
    let mut table = table(text, file).map_err(|e| vec![e])?;

    let mut errors = Vec::new();
    let mut removed = HashSet::new();
    loop {
        let result: Result<FileConfig, _> =
            serde_path_to_error::deserialize(Value::Table(table.clone()));
        let err = match result {
            Ok(config) => {
                return Ok(Parsed {
                    file: config,
                    errors,
                    removed,
                });
            }
            Err(err) => err,
        };
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let path = err.path().to_string();
        errors.push(key_error(&table, file, &err));
        // A problem we cannot remove (the error is not about one key) would repeat forever.
        if !remove(&mut table, &segments) || errors.len() >= MAX_STRUCTURAL_ERRORS {
            return Err(errors);
        }
        removed.insert(path);
    }
}

/// Parses TOML text into a table; a syntax error names its line and column. Shared with the
/// drill's scenario files, so both speak the same way.
pub fn table(text: &str, file: &str) -> Result<Table, ConfigError> {
    text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = e
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        ConfigError {
            file: file.to_string(),
            location: Location::Position { line, column },
            reason: format!("TOML syntax error: {}", e.message().trim_end()),
            position: None,
        }
    })
}

/// A serde error as a config error: at its key path, with the value found there in `table`,
/// in our wording.
pub fn key_error(
    table: &Table,
    file: &str,
    err: &serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let segments: Vec<Segment> = err.path().iter().cloned().collect();
    let value = lookup(table, &segments).map(render_value);
    ConfigError::at_key(
        file,
        err.path().to_string(),
        value,
        explain(err.inner().message()),
    )
}

/// Where each error's key is in `text` (1-based line and column of its value), for errors
/// about keys that the file has. Missing keys point at their table when it is there.
pub fn locate(text: &str, errors: &mut [ConfigError]) {
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return;
    };
    for e in errors.iter_mut() {
        let Some(path) = e.key() else { continue };
        let mut segments = path_segments(path);
        // The deepest part of the path the file has: the key, or for a missing key its table.
        while !segments.is_empty() {
            if let Some(span) = span_of(doc.get_ref(), &segments) {
                e.position = Some(line_column(text, span.start));
                break;
            }
            segments.pop();
        }
    }
}

/// `pools.web.members[1].weight` as `[Key("pools"), Key("web"), Key("members"), Index(1),
/// Key("weight")]`.
fn path_segments(path: &str) -> Vec<PathPart<'_>> {
    let mut parts = Vec::new();
    for piece in path.split('.') {
        let (key, mut rest) = piece.split_once('[').map_or((piece, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            parts.push(PathPart::Key(key));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                parts.push(PathPart::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    parts
}

enum PathPart<'a> {
    Key(&'a str),
    Index(usize),
}

fn span_of(table: &toml::de::DeTable<'_>, path: &[PathPart<'_>]) -> Option<std::ops::Range<usize>> {
    use toml::de::DeValue;
    let (PathPart::Key(first), rest) = path.split_first()? else {
        return None;
    };
    let mut value = table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == *first)
        .map(|(_, v)| v)?;
    for part in rest {
        value = match (part, value.get_ref()) {
            (PathPart::Key(key), DeValue::Table(t)) => t
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == *key)
                .map(|(_, v)| v)?,
            (PathPart::Index(i), DeValue::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(value.span())
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Renders a value as it would be written in TOML (`"wbe"`, `0`, `[...]`).
pub(super) fn render_value(value: &Value) -> String {
    match value {
        Value::Table(_) => "{...}".to_string(),
        Value::Array(a) if a.iter().any(|v| matches!(v, Value::Table(_))) => "[...]".to_string(),
        other => other.to_string(),
    }
}

fn lookup<'a>(table: &'a Table, path: &[Segment]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let Segment::Map { key } = first else {
        return None;
    };
    let mut value = table.get(key)?;
    for segment in rest {
        value = match (segment, value) {
            (Segment::Map { key }, Value::Table(t)) => t.get(key)?,
            (Segment::Seq { index }, Value::Array(a)) => a.get(*index)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Removes the key at `path`; false when there is no key there to remove. An array element is
/// never removed: that would shift the indices that later messages name.
fn remove(table: &mut Table, path: &[Segment]) -> bool {
    let Some((Segment::Map { key: last }, parents)) = path.split_last() else {
        return false;
    };
    let Some((Segment::Map { key: first }, rest)) = parents.split_first() else {
        return table.remove(last).is_some();
    };
    let Some(mut current) = table.get_mut(first) else {
        return false;
    };
    for segment in rest {
        let next = match (segment, current) {
            (Segment::Map { key }, Value::Table(t)) => t.get_mut(key),
            (Segment::Seq { index }, Value::Array(a)) => a.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else {
            return false;
        };
        current = next;
    }
    match current {
        Value::Table(t) => t.remove(last).is_some(),
        _ => false,
    }
}

/// Turns serde's wording into ours: name the nearest valid key or value, drop Rust type names.
fn explain(message: &str) -> String {
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return nearest("unknown key", rest);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        return nearest("unknown value", rest);
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!("expected {}, found {}", plain_type(expected), found);
    }
    message.to_string()
}

/// `rest` is serde's tail after the unknown name's opening backtick:
/// ``name`, expected one of `a`, `b` `` (or ``name`, there are no fields``).
fn nearest(what: &str, rest: &str) -> String {
    let mut parts = rest.split('`');
    let name = parts.next().unwrap_or_default();
    // After the name, backticked valid names alternate with the text between them.
    let valid: Vec<&str> = parts.skip(1).step_by(2).collect();
    // A typo is a few edits away (a transposition counts one): `conect_timeout`, `clinets`.
    // Further than a third of the name is another word, and naming it misleads (`log_level`
    // once got "did you mean shutdown_delay?", `backend` "did you mean backlog?").
    let best = valid
        .iter()
        .map(|v| (strsim::damerau_levenshtein(name, v), v))
        .min_by_key(|(distance, _)| *distance);
    let close = (name.chars().count() / 3).max(1);
    match best {
        Some((distance, best)) if distance <= close => format!("{what}; did you mean {best}?"),
        Some(_) => format!("{what} (valid: {})", valid.join(", ")),
        None => format!("{what}; this table takes no keys"),
    }
}

fn plain_type(expected: &str) -> String {
    match expected {
        "i64" | "u64" | "u32" | "i32" | "usize" => "an integer".to_string(),
        "f64" => "a number".to_string(),
        "a boolean" | "bool" => "true or false".to_string(),
        "a string" => "a string".to_string(),
        other => other.to_string(),
    }
}
