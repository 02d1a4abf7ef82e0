//! Scenario text to [`ScenarioFile`], with serde's errors turned into sluice's config errors.
//!
//! A TOML syntax error is reported with its line and column; a structural error (an unknown
//! key, a wrong type) with its key path and the value found there, through
//! `serde_path_to_error`. Unlike sluice's config parser this stops at the first structural
//! error: scenario files are small, and `validate` still reports every rule broken after it.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::{Table, Value};

use super::schema::ScenarioFile;
use crate::config::{ConfigError, ConfigErrors, Location};

/// The name a path goes by in messages: its file name.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub fn parse(text: &str, file: &str) -> Result<ScenarioFile, ConfigErrors> {
    typed(table(text, file)?, file)
}

/// Deserializes a parsed table as `T`, naming the first structural error by its key path.
pub fn typed<T: DeserializeOwned>(table: Table, file: &str) -> Result<T, ConfigErrors> {
    serde_path_to_error::deserialize(Value::Table(table.clone())).map_err(|err| {
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let value = lookup(&table, &segments).map(render);
        let path = err.path().to_string();
        ConfigError::at_key(file, path, value, explain(err.inner().message())).into()
    })
}

/// Reads a TOML file into a table (a sluice config referenced by `sluice_config`).
pub fn table_file(path: &Path) -> Result<Table, ConfigError> {
    let file = file_name(path);
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::at_file(&path.display().to_string(), format!("cannot read: {e}"))
    })?;
    table(&text, &file).map_err(|mut e| e.0.remove(0))
}

/// Parses TOML text; a syntax error names its line and column.
pub fn table(text: &str, file: &str) -> Result<Table, ConfigErrors> {
    text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = e
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        ConfigError {
            file: file.to_string(),
            location: Location::Position { line, column },
            reason: format!("TOML syntax error: {}", e.message().trim_end()),
        }
        .into()
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn render(value: &Value) -> String {
    match value {
        Value::Table(_) => "{...}".to_string(),
        Value::Array(a) if a.iter().any(|v| matches!(v, Value::Table(_))) => "[...]".to_string(),
        other => other.to_string(),
    }
}

fn lookup<'a>(table: &'a Table, path: &[Segment]) -> Option<&'a Value> {
    let (Segment::Map { key }, rest) = path.split_first()? else {
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

/// serde's wording in ours: the nearest valid key for a typo, no Rust type names.
fn explain(message: &str) -> String {
    let message = message.trim_end();
    for (prefix, what) in [
        ("unknown field `", "unknown key"),
        ("unknown variant `", "unknown value"),
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return nearest(what, rest);
        }
    }
    if let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        let expected = match expected {
            "i64" | "u64" | "u32" | "usize" => "an integer",
            "f64" => "a number",
            "a boolean" => "true or false",
            other => other,
        };
        return format!("expected {expected}, found {found}");
    }
    message.to_string()
}

/// `rest` is serde's text after the opening backtick: ``name`, expected one of `a`, `b` ``.
fn nearest(what: &str, rest: &str) -> String {
    let mut parts = rest.split('`');
    let name = parts.next().unwrap_or_default();
    let valid: Vec<&str> = parts.skip(1).step_by(2).collect();
    let best = valid
        .iter()
        .map(|v| (strsim::jaro_winkler(name, v), v))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, best)) if score >= 0.8 => format!("{what}; did you mean {best}?"),
        Some(_) => format!("{what} (valid: {})", valid.join(", ")),
        None => format!("{what}; this table takes no keys"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_names_the_key_and_the_nearest_valid_one() {
        let text = "[traffic]\nclinets = 4\n";
        let err = parse(text, "x.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.toml: traffic.clinets = 4: unknown key; did you mean clients?"
        );
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let err = parse("[traffic\n", "x.toml").unwrap_err();
        assert!(
            err.to_string().starts_with("x.toml: line 1, column "),
            "{err}"
        );
    }
}
