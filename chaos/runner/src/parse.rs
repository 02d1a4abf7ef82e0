//! Scenario text to [`ScenarioFile`], with serde's errors turned into sluice's config errors.
//!
//! A TOML syntax error is reported with its line and column; a structural error (an unknown
//! key, a wrong type) with its key path and the value found there, through
//! `serde_path_to_error`. Unlike sluice's config parser this stops at the first structural
//! error: scenario files are small, and `validate` still reports every rule broken after it.

use std::path::Path;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::schema::ScenarioFile;
use sluice::config::{self, ConfigError, ConfigErrors};

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
    serde_path_to_error::deserialize(Value::Table(table.clone()))
        .map_err(|err| config::parse::key_error(&table, file, &err).into())
}

/// Reads a TOML file into a table (a sluice config referenced by `sluice_config`).
pub fn table_file(path: &Path) -> Result<Table, ConfigError> {
    let file = file_name(path);
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::at_file(&path.display().to_string(), format!("cannot read: {e}"))
    })?;
    config::parse::table(&text, &file)
}

/// Parses TOML text; a syntax error names its line and column.
pub fn table(text: &str, file: &str) -> Result<Table, ConfigErrors> {
    config::parse::table(text, file).map_err(ConfigErrors::from)
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
