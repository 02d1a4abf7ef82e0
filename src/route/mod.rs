//! Routes: listen addresses, the accept loop, and the life of one accepted connection.

mod connection;
mod listener;

pub use connection::{Outcome, RouteContext};
pub use listener::{accept_loop, bind};
