//! Upstream pools: members, their state, tier choice and balancing.

pub mod balance;
pub mod breaker;
mod member;
mod pool;
mod tier;

pub use breaker::{BreakerState, Phase};
pub use member::{ActiveGuard, BreakerPermit, Member};
pub use pool::{NoEligibleMember, Pool};
