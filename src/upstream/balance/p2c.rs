//! TODO(#4): stub; replaced by the real balancer.
use std::net::IpAddr;

use super::{Balancer, Candidate};

#[derive(Debug, Default)]
pub struct PowerOfTwoChoices;

impl PowerOfTwoChoices {
    pub fn new(_seed: u64) -> Self {
        Self
    }
}

impl Balancer for PowerOfTwoChoices {
    fn pick(&self, candidates: &[Candidate], _client: IpAddr) -> Option<usize> {
        candidates.first().map(|c| c.index)
    }
}
