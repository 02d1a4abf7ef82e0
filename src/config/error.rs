//! Config errors: each names the file, where in it, the offending value and why.
//!
//! `sluice check`, startup and reload all print these, one per line, so the format is the
//! user interface: `sluice.toml: routes.web.pool = "wbe": no such pool (defined: db, web) (line 7,
//! column 8)`: file, key path, value as written, reason, and where the key is.

use std::fmt;

/// Where in the file a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The file as a whole (it cannot be read, or has no routes).
    File,
    /// A TOML syntax error, 1-based.
    Position { line: usize, column: usize },
    /// A key path such as `pools.web.members[1].weight`, with the value found there
    /// rendered as TOML (`None` when the key is missing).
    Key { path: String, value: Option<String> },
}

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as the user knows it (`sluice.toml`, or `<command line>`).
    pub file: String,
    pub location: Location,
    pub reason: String,
    /// Where the key's value (or its table) is in the file, 1-based line and column, when
    /// the text was at hand to find it.
    pub position: Option<(usize, usize)>,
}

impl ConfigError {
    pub fn at_key(
        file: &str,
        path: impl Into<String>,
        value: Option<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_string(),
            location: Location::Key {
                path: path.into(),
                value,
            },
            reason: reason.into(),
            position: None,
        }
    }

    pub fn at_file(file: &str, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            location: Location::File,
            reason: reason.into(),
            position: None,
        }
    }

    /// The message without its position: what tests compare when the line numbers of the
    /// text under test are not the point.
    pub fn unlocated(&self) -> String {
        Self {
            position: None,
            ..self.clone()
        }
        .to_string()
    }

    /// The key path this error is about, if it is about a key.
    pub fn key(&self) -> Option<&str> {
        match &self.location {
            Location::Key { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", one_line(&self.file))?;
        match &self.location {
            Location::File => {}
            Location::Position { line, column } => write!(f, "line {line}, column {column}: ")?,
            Location::Key { path, value: None } => write!(f, "{}: ", one_line(path))?,
            Location::Key {
                path,
                value: Some(value),
            } => write!(f, "{} = {}: ", one_line(path), one_line(value))?,
        }
        f.write_str(&one_line(&self.reason))?;
        if let (Location::Key { .. }, Some((line, column))) = (&self.location, self.position) {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

/// `text` with line breaks and other control characters escaped, so one problem is always
/// one line (a multi-line string value once spilled over several).
pub(crate) fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    let breaks = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(breaks) {
        return text.into();
    }
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => "\\t".to_string(),
            c if breaks(c) => format!("\\u{{{:04x}}}", u32::from(c)),
            c => c.to_string(),
        })
        .collect::<String>()
        .into()
}

/// Every problem found in one config, in the order found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Places every error about a key at its line and column in `text`, the file they are
    /// about (see [`parse::locate`](super::parse::locate)).
    pub fn located_in(mut self, text: &str) -> Self {
        super::parse::locate(text, &mut self.0);
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}
