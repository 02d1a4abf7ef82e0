//! Upstream pools: members, their state, tier choice and balancing.

pub mod balance;
mod member;
mod pool;

pub use member::{ActiveGuard, Member};
pub use pool::{NoEligibleMember, Pool};
