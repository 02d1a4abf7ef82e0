//! Why a drill could not run to a verdict. A missed bound is not an error: it is a report
//! whose `passed` is false.

use std::io;

use thiserror::Error;

use super::injector::InjectorError;
use super::toxiproxy::ToxiproxyError;
use sluice::ServerError;
use sluice::config::ConfigErrors;

/// A drill that could not run. Each message already carries its cause's text, so no variant
/// names a `source`: `{:#}` (anyhow's chain) would print that text a second time.
#[derive(Debug, Error)]
pub enum DrillError {
    /// The scenario, or the sluice config it embeds, is invalid (exit 64).
    #[error("{0}")]
    Scenario(ConfigErrors),
    #[error("fault injector: {0}")]
    Injector(InjectorError),
    #[error("fault injector: {0}")]
    Api(ToxiproxyError),
    #[error("member {member}: cannot start its server: {error}")]
    Member { member: String, error: io::Error },
    #[error("timeline step {step:?} failed: {reason}")]
    Fault { step: String, reason: String },
    #[error("sluice: {0}")]
    Server(ServerError),
    #[error("setup: {0}")]
    Setup(String),
}

impl DrillError {
    /// A usage problem (bad scenario) rather than a runtime failure.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Scenario(_))
    }
}

impl From<InjectorError> for DrillError {
    fn from(e: InjectorError) -> Self {
        Self::Injector(e)
    }
}

impl From<ToxiproxyError> for DrillError {
    fn from(e: ToxiproxyError) -> Self {
        Self::Api(e)
    }
}

impl From<ServerError> for DrillError {
    fn from(e: ServerError) -> Self {
        Self::Server(e)
    }
}
