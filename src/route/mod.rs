//! Routes: listen addresses, the accept loop, and the life of one accepted connection.

mod accept_proxy;
mod connection;
mod listener;
mod outcome;

pub use connection::{RouteContext, RouteStats};
pub use listener::{accept_loop, bind, bind_reuse_port};
pub use outcome::Outcome;
