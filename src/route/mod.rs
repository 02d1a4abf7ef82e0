//! Routes: listeners and the accept loop.
