//! The running forwarder.
