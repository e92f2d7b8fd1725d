//! The control plane's distribution side (issue 6): a rules server that holds the published
//! snapshots and pushes them to a fleet of gateways over QUIC with mutual TLS, and the gateway's
//! subscriber.
//!
//! - [`server`]: `dragnet rules serve` — the content-addressed store (`DIR/objects/<sha256>` and
//!   its `.sig`, `DIR/published.json`), the subscribers, the fleet table, the maintainers' requests;
//! - [`client`]: the gateway's subscriber ([`client::spawn`]) and the maintainer's side
//!   ([`client::Maintainer`]: publish, fleet);
//! - [`proto`]: the frames and messages on the wire (sans IO apart from one async reader);
//! - [`certs`]: certificates, keys, fingerprints, the TLS configurations, and the lab CA that
//!   `dragnet rules certs` makes;
//! - [`config`]: the gateway's `[control]` section;
//! - [`delta`]: snapshot deltas (made by the server, applied by the gateway).
//!
//! # Design
//!
//! The server is a relay, not an authority. It stores what maintainers publish and offers the
//! latest entry of its history to every subscribed gateway: on connect (unless the gateway says it
//! already runs that SHA-256) and whenever a new one is published. Each subscriber has its own
//! task that watches the "current" cell (`tokio::sync::watch`): a slow gateway delays only itself,
//! and if several versions are published while it is busy it is offered only the latest (the
//! watch cell coalesces). An offer is a *delta* against the SHA-256 the gateway reported when the
//! server still holds that base and the delta is smaller than the snapshot, else the full
//! snapshot. Deltas are computed once per (base, target) pair and cached, so a fleet running the
//! same version costs one delta computation. A gateway that cannot apply a delta answers with a
//! nack asking for the full snapshot, and gets it on the same stream.
//!
//! # Wire protocol (ALPN `dragnet-rules/1`)
//!
//! One client-initiated bidirectional stream per purpose: a gateway's subscription (opened with
//! `hello`, then `offer` → `ack`/`nack` for as long as the connection lives), or one maintainer
//! request (`publish` → `published`, `fleet_request` → `fleet`; any failure → `error`). Every
//! message is one frame (see [`proto`]):
//!
//! ```text
//! header length: u32 big-endian (≤ 64 KiB)
//! payload length: u64 big-endian (≤ 256 MiB, and 0 for messages that carry none)
//! header: JSON, {"type": "...", ...}
//! payload: raw bytes (a snapshot, a delta, the fleet table as JSON)
//! ```
//!
//! Lengths are checked against the limits before anything is allocated, every read has a
//! deadline (a peer that stops in the middle of a frame loses the stream), and an unknown message
//! type is an error that names it and is counted, never a panic.
//!
//! # Trust model
//!
//! - **Transport**: TLS 1.3 inside QUIC (RFC 9001), both sides authenticated (mutual TLS). The
//!   server presents its certificate; gateways and maintainers present client certificates that
//!   must chain to the server's `--client-ca` (rustls `WebPkiClientVerifier`, RFC 5280 path
//!   validation); a client without one is refused in the handshake.
//! - **Roles**: a maintainer is a client whose certificate (SHA-256 of its DER) is pinned with
//!   `--maintainer`; only maintainers may publish, roll back or read the fleet. Any other valid
//!   client certificate is a gateway and may only subscribe. Pinning the exact certificate (not a
//!   name in it) means a CA that issues gateway certificates freely cannot mint a maintainer.
//! - **Content**: the server does not verify snapshot signatures and holds no signing key. The
//!   gateways are the trust anchor: each verifies signature, checksum and version order
//!   ([`Target::apply`]) before it swaps, so a compromised server (or a compromised maintainer
//!   certificate without the signing key) cannot make a gateway run an unsigned or older rule set.
//!   The server only checks that a published snapshot's header parses and a `.sig` is present, so
//!   that an obvious mistake is refused at the door instead of by every gateway.
//! - **Rollback**: an operator's rollback order (`dragnet rules rollback`) is carried opaquely
//!   with the offer; the gateway verifies it. The server cannot forge one.

pub mod certs;
pub mod client;
pub mod config;
pub mod delta;
pub mod proto;
pub mod server;

use std::fmt;

/// What a gateway runs and how it installs a new snapshot; the run loop implements it, tests
/// implement it with a small struct.
pub trait Target: Send + Sync + 'static {
    /// (version, SHA-256 of the snapshot bytes) now running; sha None when the running set was
    /// not loaded from bytes the server could know (embedded example set).
    fn running(&self) -> (u64, Option<[u8; 32]>);
    /// The running snapshot's bytes (base for a delta), if kept: exactly the bytes whose
    /// SHA-256 [`Target::running`] reports (a mismatch only costs a refused delta and a full
    /// download: the rebuilt snapshot's hash is checked).
    fn running_bytes(&self) -> Option<std::sync::Arc<Vec<u8>>>;
    /// Verify signature + checksum + anti-rollback (a valid rollback order lifts it), build,
    /// swap, persist as last-good. `sha256` is the SHA-256 of `snapshot`, computed by the
    /// subscriber over exactly these bytes (so it need not be computed again). Ok(version now
    /// running) or Err(the refusal: its class labels the metric, its reason goes in the nack).
    fn apply(
        &self,
        snapshot: Vec<u8>,
        sha256: [u8; 32],
        sig: String,
        rollback: Option<Vec<u8>>,
    ) -> Result<u64, Refusal>;
}

pub use crate::snapshots::{Refusal, RefusalClass};

/// Why a control-plane operation failed: which file, which peer, what the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    /// A certificate, key or CA file is missing, unreadable or unusable.
    Tls { path: String, reason: String },
    /// A file or directory of the server's store could not be read or written.
    Store { path: String, reason: String },
    /// The QUIC connection could not be made or was lost.
    Connect { server: String, reason: String },
    /// The peer broke the wire protocol.
    Proto(proto::ProtoError),
    /// The server refused the request and said why.
    Refused(String),
    /// An address, name or argument is not usable.
    Invalid(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Tls { path, reason } => write!(f, "{path}: {reason}"),
            ControlError::Store { path, reason } => write!(f, "rules store {path}: {reason}"),
            ControlError::Connect { server, reason } => {
                write!(f, "rules server {server}: {reason}")
            }
            ControlError::Proto(e) => write!(f, "protocol error: {e}"),
            ControlError::Refused(r) => write!(f, "the rules server refused: {r}"),
            ControlError::Invalid(r) => f.write_str(r),
        }
    }
}

impl std::error::Error for ControlError {}

impl From<proto::ProtoError> for ControlError {
    fn from(e: proto::ProtoError) -> Self {
        ControlError::Proto(e)
    }
}

/// Lower-case hex of a SHA-256.
pub fn sha_hex(sha: &[u8; 32]) -> String {
    dragnet_rules::snapshot::hex(sha)
}

/// Parses 64 hex digits into a SHA-256; None for anything else.
pub fn parse_sha(s: &str) -> Option<[u8; 32]> {
    parse_hex_bytes(s)?.try_into().ok()
}

/// Parses an even number of hex digits (either case).
pub fn parse_hex_bytes(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| {
            let hi = char::from(p[0]).to_digit(16)?;
            let lo = char::from(p[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let s = sha256(b"x");
        assert_eq!(parse_sha(&sha_hex(&s)), Some(s));
        assert_eq!(parse_sha(&sha_hex(&s).to_uppercase()), Some(s));
        assert_eq!(parse_sha("abc"), None);
        assert_eq!(parse_sha(&"zz".repeat(32)), None);
        assert_eq!(parse_hex_bytes(""), Some(vec![]));
        assert_eq!(parse_hex_bytes("0aFf"), Some(vec![10, 255]));
        assert_eq!(parse_hex_bytes("é0"), None);
    }
}
