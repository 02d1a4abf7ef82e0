//! Validation.
use std::path::Path;
use super::{Config, ConfigErrors};
pub fn from_file(_path: &Path) -> Result<Config, ConfigErrors> { unimplemented!() }
pub fn from_str(_text: &str, _source: Option<&Path>) -> Result<Config, ConfigErrors> { unimplemented!() }
