//! Upstream pools: members, their state, tier choice and balancing.

pub mod balance;
mod member;
mod pool;
mod tier;

pub use member::{ActiveGuard, Member};
pub use pool::{NoEligibleMember, Pool};
