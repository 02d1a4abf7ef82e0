//! TODO(#4): stub; replaced by the real balancer.
use std::net::IpAddr;

use super::{Balancer, Candidate};

#[derive(Debug, Default)]
pub struct ConsistentHash;

impl ConsistentHash {
    pub fn new(_members: &[super::MemberKey<'_>]) -> Self {
        Self
    }
}

impl Balancer for ConsistentHash {
    fn pick(&self, candidates: &[Candidate], _client: IpAddr) -> Option<usize> {
        candidates.first().map(|c| c.index)
    }
}
