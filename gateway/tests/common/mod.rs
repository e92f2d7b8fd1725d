//! Helpers shared by the gateway's integration tests.
pub mod counting_alloc;
