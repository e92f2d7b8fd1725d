//! # dragnet-gateway — the planes around the engine
//!
//! The gateway is a thin async shell around [`dragnet_rules::Engine`]: sans-IO codecs per
//! protocol turn packets into facts, the engine decides, the plane acts (forward, answer, tag,
//! block) and counts.
//!
//! - [`sip`]: the sans-IO SIP codec (parse, splice, stateless branch);
//! - [`sip_plane`]: the SIP plane — screening logic ([`sip_plane::SipCore`], sans IO) and its
//!   tokio shell ([`sip_plane::net`]);
//! - [`store`]: the active snapshot behind `ArcSwap`, recent generations, hit counters;
//! - [`dns`], [`dns_plane`]: the sans-IO DNS codec and the DNS plane (UDP, TCP, DNS-over-QUIC);
//! - [`metrics`]: Prometheus metrics; [`config`]: the TOML configuration; [`run`]: starting a
//!   gateway from its configuration; [`examples`]: the embedded example rule set.
//!
//! - [`mmsg`]: batched UDP I/O (`recvmmsg`/`sendmmsg`), the only module with `unsafe` code;
//! - [`web`]: the web plane — sans-IO readers of the TLS ClientHello and the QUIC Initial, the
//!   transparent TLS port ([`web::sni`]), the QUIC relay ([`web::quic_relay`]) and the HTTP
//!   proxy ([`web::http`]);
//! - [`check`]: the check API (JSON over HTTP) for SBCs and SMS firewalls;
//! - [`signing`]: ed25519-signed snapshots (keys, detached `.sig` files, verification) and
//!   rollback orders;
//! - [`snapshots`]: the snapshot lifecycle (verify, build, swap, persist last-good, shadow);
//! - [`admin`]: the admin HTTP API (`/metrics`, `/healthz`, `/readyz`, `/v1/status`, and the
//!   bearer-token endpoints that push, reload, shadow and promote snapshots);
//! - [`events`]: hit events (bounded queue, keyed hashing, file/webhook/NATS sinks, spool);
//!   [`breaker`]: the block-rate circuit breaker.

// Denied everywhere but in `mmsg`, which allows it for two system calls (see there).
#![deny(unsafe_code)]

pub mod admin;
pub mod breaker;
pub mod check;
pub mod config;
pub mod control;
pub mod dns;
pub mod dns_plane;
pub mod events;
pub mod examples;
pub mod hits;
pub mod metrics;
pub mod mmsg;
pub mod run;
pub mod signing;
pub mod sip;
pub mod sip_plane;
pub mod snapshots;
pub mod store;
pub mod web;

pub use dragnet_rules::{Engine, Verdict};

/// Seconds since the Unix epoch (0 if the clock is before it): the `now` the planes pass to the
/// engine and to their caches.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Load the snapshot a gateway starts with; refuses a bad file with the reason.
pub fn load_snapshot(path: &std::path::Path) -> Result<Engine, dragnet_rules::Error> {
    Engine::load(path)
}
