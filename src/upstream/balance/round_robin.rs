//! TODO(#4): stub; replaced by the real balancer.
use std::net::IpAddr;

use super::{Balancer, Candidate};

#[derive(Debug, Default)]
pub struct SmoothWeightedRoundRobin;

impl SmoothWeightedRoundRobin {
    pub fn new(_members: usize) -> Self {
        Self
    }
}

impl Balancer for SmoothWeightedRoundRobin {
    fn pick(&self, candidates: &[Candidate], _client: IpAddr) -> Option<usize> {
        candidates.first().map(|c| c.index)
    }
}
