//! File schema.
