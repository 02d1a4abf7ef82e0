//! TODO(#3): pool.
use thiserror::Error;
#[derive(Debug)]
pub struct Pool;
#[derive(Debug, Error)]
#[error("no eligible member")]
pub struct NoEligibleMember;
