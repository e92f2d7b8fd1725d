//! The client side: a gateway's subscription ([`spawn`]) and a maintainer's requests
//! ([`Maintainer`]).
//!
//! A subscription is one QUIC connection with one stream: `hello` with what the gateway runs,
//! then for each offer: rebuild the snapshot (a delta is applied to
//! [`Target::running_bytes`]; if that fails, a nack asks for the full snapshot), check its
//! SHA-256 against the offer's, hand it to [`Target::apply`] (signature, checksum, version order,
//! build, swap, persist — the gateway's decision, not the server's), answer ack or nack.
//! Verification and building run on a blocking thread, so a 10⁶-entry build does not stall the
//! gateway's runtime.
//!
//! When the connection fails or ends, the task waits and reconnects, forever: exponential backoff
//! from `backoff_min_ms` to `backoff_max_ms`, each wait drawn uniformly from its upper half
//! (jitter, so a fleet that lost the server at the same moment does not reconnect in lockstep),
//! reset to the minimum after a session that got as far as its hello. Errors are logged and
//! counted, never a panic. Aborting the task's handle closes the connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use quinn::{Connection, Endpoint};
use tokio::task::JoinHandle;

use super::config::ControlConfig;
use super::proto::{read_frame, write_frame, Limits, Message, OfferKind, ProtoError};
use super::server::GatewayStatus;
use super::{
    certs, delta, parse_hex_bytes, parse_sha, sha256, sha_hex, ControlError, Refusal, RefusalClass,
    Target,
};
use crate::unix_now;

/// How long connecting (QUIC + TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sending an answer or a request may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a maintainer waits for the server's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

type Labels = Vec<(&'static str, &'static str)>;

/// The gateway's control-plane metrics (cheap to clone: handles onto shared atomics).
#[derive(Debug, Clone, Default)]
pub struct ControlMetrics {
    /// 1 while subscribed to the rules server.
    pub connected: Gauge,
    /// Offers received, by kind (delta, full).
    pub offers: Family<Labels, Counter>,
    /// Snapshots installed from offers.
    pub applied: Counter,
    /// Offers refused, by reason class ([`RefusalClass`]).
    pub refused: Family<Labels, Counter>,
    /// Connection attempts after the first (after a failure or a lost connection).
    pub reconnects: Counter,
    /// Unix seconds of the last installed snapshot (0: none yet).
    pub last_apply_seconds: Gauge,
}

impl ControlMetrics {
    /// Registers the metrics under `control_` in `reg`.
    pub fn register(reg: &mut Registry) -> ControlMetrics {
        let m = ControlMetrics::default();
        let r = reg.sub_registry_with_prefix("control");
        r.register(
            "connected",
            "1 while subscribed to the rules server",
            m.connected.clone(),
        );
        r.register(
            "offers",
            "Snapshot offers received from the rules server, by kind (delta, full)",
            m.offers.clone(),
        );
        r.register(
            "applied",
            "Snapshots from the rules server installed",
            m.applied.clone(),
        );
        r.register(
            "refused",
            "Snapshot offers refused, by reason (integrity, signature, version, delta, other)",
            m.refused.clone(),
        );
        r.register(
            "reconnects",
            "Reconnections to the rules server",
            m.reconnects.clone(),
        );
        r.register(
            "last_apply_seconds",
            "Unix time of the last snapshot installed from the rules server",
            m.last_apply_seconds.clone(),
        );
        m
    }

    /// Offers refused for `class` so far.
    pub fn refused_count(&self, class: &'static str) -> u64 {
        self.refused.get_or_create(&vec![("reason", class)]).get()
    }

    /// Offers of `kind` received so far.
    pub fn offers_count(&self, kind: OfferKind) -> u64 {
        self.offers
            .get_or_create(&vec![("kind", kind.as_str())])
            .get()
    }

    fn refuse(&self, class: &'static str) {
        self.refused.get_or_create(&vec![("reason", class)]).inc();
    }
}

/// Subscribes this gateway to the rules server and installs what it offers, reconnecting
/// forever; stops when the handle is aborted. Needs a tokio runtime.
pub fn spawn(
    cfg: ControlConfig,
    target: Arc<dyn Target>,
    metrics: ControlMetrics,
) -> JoinHandle<()> {
    tokio::spawn(subscribe(cfg, target, metrics))
}

/// The subscription as a future (what [`spawn`] runs), for a caller that owns its tasks, e.g.
/// in a `JoinSet` that stops them all on drop.
pub async fn subscribe(cfg: ControlConfig, target: Arc<dyn Target>, metrics: ControlMetrics) {
    let name = cfg.display_name();
    let min = Duration::from_millis(cfg.backoff_min_ms.max(1));
    let max = Duration::from_millis(cfg.backoff_max_ms).max(min);
    let mut delay = min;
    loop {
        let mut subscribed = false;
        let r = session(&cfg, &name, &target, &metrics, &mut subscribed).await;
        metrics.connected.set(0);
        if subscribed {
            delay = min;
        }
        match r {
            Ok(()) => {
                tracing::info!(server = %cfg.server, "control: the rules server closed the subscription")
            }
            Err(e) => {
                tracing::warn!(server = %cfg.server, error = %e, retry_in = ?delay, "control: subscription failed")
            }
        }
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(max);
        metrics.reconnects.inc();
    }
}

/// A wait drawn uniformly from [d/2, d].
fn jitter(d: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let r = ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map(|()| u32::from_le_bytes(b))
        .unwrap_or(u32::MAX);
    let half = d / 2;
    half + half.mul_f64(f64::from(r) / f64::from(u32::MAX))
}

fn connect_err(server: &str, reason: impl std::fmt::Display) -> ControlError {
    ControlError::Connect {
        server: server.into(),
        reason: reason.to_string(),
    }
}

/// Opens a QUIC connection with mutual TLS; the endpoint must outlive the connection.
async fn connect(
    server: &str,
    server_name: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<(Endpoint, Connection), ControlError> {
    let addr: SocketAddr = server
        .parse()
        .map_err(|_| ControlError::Invalid(format!("{server:?} is not ip:port")))?;
    let cc = certs::client_config(ca, cert, key)?;
    let bind: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut ep = Endpoint::client(bind).map_err(|e| connect_err(server, e))?;
    ep.set_default_client_config(cc);
    let connecting = ep
        .connect(addr, server_name)
        .map_err(|e| connect_err(server, e))?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| connect_err(server, format!("no handshake within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| connect_err(server, format!("handshake failed: {e}")))?;
    Ok((ep, conn))
}

async fn session(
    cfg: &ControlConfig,
    name: &str,
    target: &Arc<dyn Target>,
    metrics: &ControlMetrics,
    subscribed: &mut bool,
) -> Result<(), ControlError> {
    let (_ep, conn) = connect(&cfg.server, &cfg.server_name, &cfg.ca, &cfg.cert, &cfg.key).await?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| connect_err(&cfg.server, e))?;
    let (version, sha) = target.running();
    let hello = Message::Hello {
        name: name.into(),
        version,
        sha256: sha.map(|s| sha_hex(&s)),
    };
    write_frame(&mut send, &hello, &[], SEND_TIMEOUT).await?;
    *subscribed = true;
    metrics.connected.set(1);
    tracing::info!(server = %cfg.server, version, "control: subscribed to the rules server");
    let limits = Limits::default();
    loop {
        // No deadline for the next offer: QUIC keep-alives and the idle timeout notice a dead
        // server, and the read fails then.
        let (msg, payload) = match read_frame(&mut recv, &limits, None).await {
            Ok(m) => m,
            Err(ProtoError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let answer = match msg {
            Message::Offer {
                version,
                sha256,
                kind,
                base_sha256: _,
                sig,
                rollback,
            } => {
                metrics
                    .offers
                    .get_or_create(&vec![("kind", kind.as_str())])
                    .inc();
                install(
                    target, metrics, version, sha256, kind, sig, rollback, payload,
                )
                .await
            }
            Message::Error { message } => return Err(ControlError::Refused(message)),
            other => {
                return Err(ProtoError::Unexpected {
                    got: other.kind(),
                    expected: "offer",
                }
                .into())
            }
        };
        write_frame(&mut send, &answer, &[], SEND_TIMEOUT).await?;
    }
}

fn nack(sha256: String, error: String, want_full: bool) -> Message {
    Message::Nack {
        sha256,
        error,
        want_full,
    }
}

/// Rebuilds and installs one offer; returns the answer.
#[allow(clippy::too_many_arguments)]
async fn install(
    target: &Arc<dyn Target>,
    metrics: &ControlMetrics,
    version: u64,
    sha: String,
    kind: OfferKind,
    sig: String,
    rollback: Option<String>,
    payload: Vec<u8>,
) -> Message {
    let Some(want) = parse_sha(&sha) else {
        metrics.refuse("other");
        return nack(sha, "the offer's sha256 is not 64 hex digits".into(), false);
    };
    let order = match rollback.as_deref().map(parse_hex_bytes) {
        None => None,
        Some(Some(b)) => Some(b),
        Some(None) => {
            metrics.refuse("other");
            return nack(sha, "the offer's rollback order is not hex".into(), false);
        }
    };
    let snapshot = match kind {
        OfferKind::Full => payload,
        OfferKind::Delta => {
            let (_, base_sha) = target.running();
            let (Some(base), Some(base_sha)) = (target.running_bytes(), base_sha) else {
                metrics.refuse("delta");
                return nack(
                    sha,
                    "a delta was offered but this gateway keeps no bytes of its running snapshot"
                        .into(),
                    true,
                );
            };
            // The delta names its target; one that would build another snapshot than the one
            // offered is refused before any work (and `apply` checks the result's SHA-256).
            if delta::target_sha256(&payload) != Some(want) {
                metrics.refuse("delta");
                return nack(
                    sha,
                    "the delta does not build the offered snapshot (its target SHA-256 differs)"
                        .into(),
                    true,
                );
            }
            let made = tokio::task::spawn_blocking(move || {
                delta::apply_to_known_base(&base, base_sha, &payload).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("applying the delta failed: {e}")));
            match made {
                Ok(s) => s,
                Err(e) => {
                    metrics.refuse("delta");
                    return nack(sha, format!("cannot apply the delta: {e}"), true);
                }
            }
        }
    };
    // A delta's result was checked by `delta::apply`; a full snapshot is hashed here, so that
    // what the ack reports is what was installed (off the runtime's workers: 20 MB of SHA-256
    // would stall every other connection on this worker for ~10 ms).
    let (got, snapshot) = match kind {
        OfferKind::Delta => (want, snapshot),
        OfferKind::Full => {
            match tokio::task::spawn_blocking(move || (sha256(&snapshot), snapshot)).await {
                Ok(r) => r,
                Err(e) => return nack(sha, format!("hashing the snapshot failed: {e}"), false),
            }
        }
    };
    if got != want {
        metrics.refuse("integrity");
        return nack(
            sha,
            format!(
                "the received snapshot's SHA-256 is {} but {} was offered (damaged in transit or by the server)",
                sha_hex(&got),
                sha_hex(&want)
            ),
            false,
        );
    }
    let t = target.clone();
    let applied = tokio::task::spawn_blocking(move || t.apply(snapshot, got, sig, order))
        .await
        .unwrap_or_else(|e| {
            Err(Refusal::new(
                RefusalClass::Other,
                format!("installing failed internally: {e}"),
            ))
        });
    match applied {
        Ok(v) => {
            metrics.applied.inc();
            metrics
                .last_apply_seconds
                .set(i64::try_from(unix_now()).unwrap_or(i64::MAX));
            tracing::info!(version = v, offered = version, sha256 = %sha, kind = kind.as_str(), "control: installed a snapshot from the rules server");
            Message::Ack {
                version: v,
                sha256: sha,
            }
        }
        Err(r) => {
            metrics.refuse(r.class.as_str());
            tracing::warn!(offered = version, sha256 = %sha, reason = %r.reason, "control: refused a snapshot from the rules server");
            nack(sha, r.reason, false)
        }
    }
}

/// What the server answered to a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub version: u64,
    pub sha256: String,
    pub size: u64,
    /// Gateways connected when it was offered.
    pub online: usize,
    pub rollback: bool,
}

/// A maintainer's connection to the rules server (`dragnet rules publish`, `dragnet rules fleet`).
#[derive(Debug)]
pub struct Maintainer {
    endpoint: Endpoint,
    conn: Connection,
    server: String,
}

impl Maintainer {
    /// Connects with the maintainer's certificate. `server` is `ip:port`; `server_name` must be
    /// in the server's certificate.
    pub async fn connect(
        server: &str,
        server_name: &str,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<Maintainer, ControlError> {
        let (endpoint, conn) = connect(server, server_name, ca, cert, key).await?;
        Ok(Maintainer {
            endpoint,
            conn,
            server: server.into(),
        })
    }

    async fn request(
        &self,
        msg: &Message,
        payload: &[u8],
    ) -> Result<(Message, Vec<u8>), ControlError> {
        let (mut send, mut recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| connect_err(&self.server, e))?;
        let limits = Limits {
            frame_timeout: ANSWER_TIMEOUT,
            ..Limits::default()
        };
        if let Err(e) = write_frame(&mut send, msg, payload, SEND_TIMEOUT).await {
            // The server may have refused the request before reading all of it (it stops the
            // stream): its answer says why, which is worth more than "stream stopped".
            return match read_frame(&mut recv, &limits, Some(ANSWER_TIMEOUT)).await {
                Ok((Message::Error { message }, _)) => Err(ControlError::Refused(message)),
                _ => Err(e.into()),
            };
        }
        let _ = send.finish();
        let (m, p) = read_frame(&mut recv, &limits, Some(ANSWER_TIMEOUT))
            .await
            .map_err(|e| match e {
                ProtoError::Io(r) => connect_err(&self.server, r),
                e => e.into(),
            })?;
        if let Message::Error { message } = m {
            return Err(ControlError::Refused(message));
        }
        Ok((m, p))
    }

    /// Publishes a snapshot and its `.sig` text; with `rollback`, as an operator's rollback
    /// carrying that order.
    pub async fn publish(
        &self,
        snapshot: &[u8],
        sig: String,
        rollback: Option<&[u8]>,
    ) -> Result<Published, ControlError> {
        let msg = Message::Publish {
            sig,
            rollback: rollback.map(dragnet_rules::snapshot::hex),
        };
        match self.request(&msg, snapshot).await? {
            (
                Message::Published {
                    version,
                    sha256,
                    size,
                    online,
                    rollback,
                },
                _,
            ) => Ok(Published {
                version,
                sha256,
                size,
                online,
                rollback,
            }),
            (other, _) => Err(ProtoError::Unexpected {
                got: other.kind(),
                expected: "published",
            }
            .into()),
        }
    }

    /// The fleet table.
    pub async fn fleet(&self) -> Result<Vec<GatewayStatus>, ControlError> {
        match self.request(&Message::FleetRequest, &[]).await? {
            (Message::Fleet, json) => serde_json::from_slice(&json).map_err(|e| {
                ControlError::Proto(ProtoError::BadHeader {
                    reason: format!("the fleet table is not valid JSON: {e}"),
                })
            }),
            (other, _) => Err(ProtoError::Unexpected {
                got: other.kind(),
                expected: "fleet",
            }
            .into()),
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        self.conn.close(quinn::VarInt::from_u32(0), b"done");
        self.endpoint.wait_idle().await;
    }
}

/// The fleet as a text table (`dragnet rules fleet`).
pub fn fleet_table(rows: &[GatewayStatus], now: u64) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<6} {:>10} {:<16} {:>8} {:<6} {:>10} {:<21} LAST ERROR",
        "NAME", "STATE", "VERSION", "SHA256", "SEEN", "OFFER", "BYTES", "REMOTE"
    );
    for g in rows {
        let sha = g
            .sha256
            .as_deref()
            .map_or("-", |s| s.get(..16).unwrap_or(s));
        let seen = if g.last_seen == 0 {
            "-".to_string()
        } else {
            format!("{}s", now.saturating_sub(g.last_seen))
        };
        let _ = writeln!(
            s,
            "{:<20} {:<6} {:>10} {:<16} {:>8} {:<6} {:>10} {:<21} {}",
            g.name,
            if g.connected { "up" } else { "down" },
            g.version,
            sha,
            seen,
            g.last_offer_kind.as_deref().unwrap_or("-"),
            g.last_offer_bytes,
            g.remote,
            g.last_error.as_deref().unwrap_or("-")
        );
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_the_upper_half() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(500) && j <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn metrics_register_and_count() {
        let mut r = Registry::with_prefix("dragnet");
        let m = ControlMetrics::register(&mut r);
        m.refuse("signature");
        assert_eq!(m.refused_count("signature"), 1);
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, &r).unwrap();
        assert!(
            t.contains("dragnet_control_refused_total{reason=\"signature\"} 1"),
            "{t}"
        );
        assert!(t.contains("dragnet_control_connected 0"), "{t}");
    }

    #[test]
    fn the_fleet_table_has_a_row_per_gateway() {
        let g = GatewayStatus {
            name: "gw-1".into(),
            fingerprint: "ab".into(),
            remote: "127.0.0.1:5000".into(),
            version: 3,
            sha256: Some("cd".repeat(32)),
            last_seen: 90,
            connected: true,
            last_error: Some("refused".into()),
            last_offer_kind: Some("delta".into()),
            last_offer_bytes: 12,
            bytes_sent: 12,
        };
        let t = fleet_table(&[g], 100);
        assert_eq!(t.lines().count(), 2);
        assert!(
            t.contains("gw-1") && t.contains("delta") && t.contains("10s") && t.contains("refused"),
            "{t}"
        );
    }
}
