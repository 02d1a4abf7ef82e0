//! TODO(#4): stub; replaced by the real balancer.
use std::net::IpAddr;

use super::{Balancer, Candidate};

#[derive(Debug, Default)]
pub struct LeastConn;

impl LeastConn {
    pub fn new() -> Self {
        Self
    }
}

impl Balancer for LeastConn {
    fn pick(&self, candidates: &[Candidate], _client: IpAddr) -> Option<usize> {
        candidates.first().map(|c| c.index)
    }
}
