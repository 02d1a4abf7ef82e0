//! Why a drill could not run to a verdict. A missed bound is not an error: it is a report
//! whose `passed` is false.

use std::io;

use thiserror::Error;

use super::injector::InjectorError;
use super::toxiproxy::ToxiproxyError;
use sluice::ServerError;
use sluice::config::ConfigErrors;

/// A drill that could not run.
#[derive(Debug, Error)]
pub enum DrillError {
    /// The scenario, or the sluice config it embeds, is invalid (exit 64).
    #[error("{0}")]
    Scenario(ConfigErrors),
    #[error("fault injector: {0}")]
    Injector(#[from] InjectorError),
    #[error("fault injector: {0}")]
    Api(#[from] ToxiproxyError),
    #[error("member {member}: cannot start its server: {source}")]
    Member { member: String, source: io::Error },
    #[error("timeline step {step:?} failed: {reason}")]
    Fault { step: String, reason: String },
    #[error("sluice: {0}")]
    Server(#[from] ServerError),
    #[error("setup: {0}")]
    Setup(String),
}

impl DrillError {
    /// A usage problem (bad scenario) rather than a runtime failure.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Scenario(_))
    }
}
