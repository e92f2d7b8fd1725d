//! # dragnet-gateway — the planes around the engine
//!
//! The gateway is a thin async shell around [`dragnet_rules::Engine`]: sans-IO codecs per
//! protocol (SIP, DNS, TLS/QUIC SNI, HTTP) turn packets into facts, the engine decides, the plane
//! acts (forward, answer, tag, block) and counts.
//!
//! Status: [`sip`] holds the sans-IO SIP codec (parse, splice, stateless branch). The tokio
//! shells of the planes, the control plane (snapshot store, QUIC subscriber, admin HTTP) and
//! telemetry come with the following issues.

#![forbid(unsafe_code)]

pub mod sip;

pub use dragnet_rules::{Engine, Verdict};

/// Load the snapshot a gateway starts with; refuses a bad file with the reason.
pub fn load_snapshot(path: &std::path::Path) -> Result<Engine, dragnet_rules::Error> {
    Engine::load(path)
}
