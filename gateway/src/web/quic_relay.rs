//! # QUIC relay: read the SNI from a client's Initial packets, then forward or drop the flow
//!
//! One UDP socket faces the clients. Each client address (the 4-tuple, this socket being the
//! other end) is a *flow* with its own upstream UDP socket connected to the configured
//! `upstream`. A flow's first datagrams go through an [`InitialSniffer`], which decrypts the
//! client's Initial packets with the keys anyone can derive from their Destination Connection
//! ID (RFC 9001 §5.2) and reassembles the ClientHello; while the hello is incomplete the relay
//! holds the flow's datagrams (at most `pending_datagrams`), then decides once:
//!
//! - **allowed** (engine allow or tag): the held datagrams go upstream in order, and so does
//!   everything else the flow sends; the upstream's datagrams go back to the client;
//! - **blocked**: this and every later datagram of the flow are dropped (counted); the client's
//!   handshake times out.
//!
//! A flow whose first datagram is not an Initial this relay can read (a short header after a
//! NAT rebinding, a QUIC version other than 1 and 2) cannot be classified: `unclassified`
//! decides (default: forward, counted). Classification stays open for the flow's whole life: a
//! later Initial of another connection ID is tried with its own keys, and if it decrypts it is a
//! new connection attempt on the same 4-tuple (or the answer to a Retry, RFC 9000 §17.2.5.2,
//! whose keys come from the Retry's Source Connection ID) and is classified afresh; if it does
//! not, it is the client's continuation of the connection already decided (after the server's
//! first Initial the client addresses the server's connection ID, RFC 9000 §7.2, but keeps the
//! first Initial keys) and follows the flow's verdict. Sending junk first therefore does not buy
//! an unscreened handshake. The verdict is per flow: the most recent connection attempt on a
//! 4-tuple decides for all of it.
//!
//! **Split.** [`Classifier`] and [`Flow`] are the sans-IO core (datagrams, a monotonic `now`
//! and Unix seconds in, a [`Step`] out) and are tested with captured quinn datagrams; [`serve`]
//! is the tokio shell around them: the client socket, the flow table, one upstream socket and
//! one reader task per forwarded flow, and expiry.
//!
//! **Cost model.** Per datagram of a decided flow: one hash lookup, one long-header peek, a
//! relaxed atomic add or two; no allocation. A new classification costs one key derivation and
//! one AES-GCM open per Initial packet (see [`super::quic`]); a pending flow holds a ~20 KiB
//! sniffer (pooled) and its held datagrams; a forwarded flow holds a UDP socket, a reader task
//! and a [`MAX_UPSTREAM_DATAGRAM`]-byte buffer. `max_flows` bounds the table; flows expire after
//! `flow_idle_secs` without traffic, and a flow whose ClientHello is not complete within
//! `hello_timeout_ms` is removed.
//!
//! Standards: RFC 9000 (§7.2 connection IDs during the handshake, §12.2 coalescing, §14.1
//! datagram size, §17.2 long headers, §17.2.5 Retry), RFC 9001 (§5.2 Initial secrets), RFC 9369
//! (QUIC v2), RFC 4787 (NAT UDP mapping behaviour, the model of the flow table).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::quic::{peek_initial, InitialHeader, InitialSniffer, QuicError, Version, MAX_CID_LEN};
use super::sni::{check_range, config_err, decide, Fallback, VerdictCounters};
use super::tls::HelloInfo;
use crate::config::{parse_sockaddr, ConfigError};
use crate::store::Store;

/// Largest upstream→client datagram relayed; a larger one is dropped (counted `oversized`).
/// QUIC never relies on IP fragmentation (RFC 9000 §14) and probes the path MTU with datagrams
/// it can afford to lose, so the bound only caps the MTU the server discovers; deployed servers
/// stay near 1,200–1,500 bytes.
pub const MAX_UPSTREAM_DATAGRAM: usize = 4096;
/// Largest client datagram held while a flow's ClientHello is incomplete: an Initial that the
/// sniffer accepts is at most [`super::quic::MAX_INITIAL_PACKET`] bytes, and a datagram that
/// carries one stays within the path MTU.
pub const MAX_HELD_DATAGRAM: usize = 1500;
/// Idle sniffers kept for reuse.
const SNIFFER_POOL: usize = 64;

/// What happens to a flow that cannot be classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unclassified {
    /// Relay it unscreened (counted): QUIC flows that predate the relay or use a version it
    /// cannot read keep working.
    Forward,
    /// Drop it (counted).
    Drop,
}

/// `[web.quic]`: the QUIC (HTTP/3) relay. Every key is optional; the relay is off by default.
///
/// ```toml
/// [web.quic]
/// enabled = false
/// listen = "127.0.0.1:8443"     # UDP
/// upstream = ""                 # "ip:port" every allowed flow is relayed to
/// flow_idle_secs = 30           # a flow without traffic this long is forgotten
/// max_flows = 4096              # beyond it, datagrams of new flows are dropped (counted)
/// hello_timeout_ms = 5000       # a flow's ClientHello must be complete within this
/// pending_datagrams = 8         # datagrams held per flow while its ClientHello is incomplete
/// unclassified = "forward"      # first datagram not a readable Initial: forward | drop
/// no_sni = "allow"              # a ClientHello without server_name: allow | block
/// warn = "allow"                # a warn verdict (no warning page over QUIC): allow | block
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicRelayConfig {
    pub enabled: bool,
    /// UDP listen address (`ip:port`).
    pub listen: String,
    /// Where allowed flows go (`ip:port`).
    pub upstream: String,
    /// Seconds without a datagram in either direction before a flow is forgotten.
    pub flow_idle_secs: u64,
    /// Most flows at once.
    pub max_flows: usize,
    /// Milliseconds from a flow's first Initial to its complete ClientHello.
    pub hello_timeout_ms: u64,
    /// Datagrams held per flow while its ClientHello is incomplete (a post-quantum hello spans
    /// two or three; a larger ALPN or ticket list a few more).
    pub pending_datagrams: usize,
    pub unclassified: Unclassified,
    pub no_sni: Fallback,
    pub warn: Fallback,
}

impl Default for QuicRelayConfig {
    fn default() -> Self {
        QuicRelayConfig {
            enabled: false,
            listen: "127.0.0.1:8443".into(),
            upstream: String::new(),
            flow_idle_secs: 30,
            max_flows: 4096,
            hello_timeout_ms: 5000,
            pending_datagrams: 8,
            unclassified: Unclassified::Forward,
            no_sni: Fallback::Allow,
            warn: Fallback::Allow,
        }
    }
}

impl QuicRelayConfig {
    /// Checks everything that can be checked without binding sockets; errors name
    /// `web.quic.<key>`. A disabled relay is not checked.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let key = |k: &str| format!("web.quic.{k}");
        let listen = parse_sockaddr(&key("listen"), &self.listen)?;
        if self.upstream.is_empty() {
            return Err(config_err(
                key("upstream"),
                "the QUIC relay is enabled but has nowhere to send allowed flows: set upstream \
                 (ip:port)",
            ));
        }
        if parse_sockaddr(&key("upstream"), &self.upstream)? == listen {
            return Err(config_err(
                key("upstream"),
                "is the relay's own listen address: every datagram would loop",
            ));
        }
        check_range(key("flow_idle_secs"), self.flow_idle_secs, 1, 3600)?;
        check_range(key("max_flows"), self.max_flows as u64, 1, 1 << 20)?;
        check_range(key("hello_timeout_ms"), self.hello_timeout_ms, 1, 60_000)?;
        check_range(
            key("pending_datagrams"),
            self.pending_datagrams as u64,
            1,
            64,
        )?;
        Ok(())
    }
}

/// Why a client datagram was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The flow's ClientHello was blocked.
    Blocked,
    /// The flow could not be classified and `unclassified = "drop"`.
    Unclassified,
    /// An Initial that failed authentication while the flow was undecided (the server drops it
    /// too, RFC 9001 §5.3).
    Decrypt,
    /// A datagram the server discards (RFC 9000 §14.1: an Initial in a datagram under 1200
    /// bytes; a truncated header …), or a flow refused for breaking RFC 9000 after its first
    /// Initial (forbidden frames, CRYPTO data that changes on retransmission).
    Malformed,
    /// The flow's CRYPTO stream is not a usable ClientHello.
    BadHello,
    /// The flow already holds `pending_datagrams` datagrams (or this one is too large to hold).
    PendingFull,
    /// Held for a connection attempt that a newer one on the same flow replaced.
    Superseded,
    /// Held when the flow's ClientHello did not complete within `hello_timeout_ms`.
    HelloTimeout,
    /// A new flow while `max_flows` flows are open.
    TableFull,
    /// An upstream datagram larger than [`MAX_UPSTREAM_DATAGRAM`].
    Oversized,
}

impl DropReason {
    /// The stable metric label.
    pub const fn label(self) -> &'static str {
        match self {
            DropReason::Blocked => "blocked",
            DropReason::Unclassified => "unclassified",
            DropReason::Decrypt => "decrypt",
            DropReason::Malformed => "malformed",
            DropReason::BadHello => "bad_hello",
            DropReason::PendingFull => "pending_full",
            DropReason::Superseded => "superseded",
            DropReason::HelloTimeout => "hello_timeout",
            DropReason::TableFull => "table_full",
            DropReason::Oversized => "oversized",
        }
    }

    const ALL: [DropReason; 10] = [
        DropReason::Blocked,
        DropReason::Unclassified,
        DropReason::Decrypt,
        DropReason::Malformed,
        DropReason::BadHello,
        DropReason::PendingFull,
        DropReason::Superseded,
        DropReason::HelloTimeout,
        DropReason::TableFull,
        DropReason::Oversized,
    ];
}

/// QUIC relay counters (`dragnet_web_quic_*`). Handles are resolved at construction; the data
/// path does one relaxed atomic add per event.
#[derive(Debug, Clone)]
pub struct QuicRelayMetrics {
    /// Datagrams received from clients.
    pub datagrams: Counter,
    /// ClientHellos decided, by engine action.
    pub verdicts: VerdictCounters,
    /// Flows created, and open now.
    pub flows_opened: Counter,
    pub flows_open: Gauge,
    unclassified_fam: Family<Labels, Counter>,
    /// Flows whose first datagram was not an Initial (short header, 0-RTT, Handshake).
    pub unclassified_not_initial: Counter,
    /// Flows whose first datagram has a QUIC version the relay cannot read.
    pub unclassified_version: Counter,
    /// Connection attempts classified on a flow that had been classified before.
    pub reclassified: Counter,
    /// ClientHellos with Encrypted Client Hello (decided on the outer name).
    pub ech: Counter,
    /// ClientHellos without a server name (decided by `no_sni`).
    pub no_sni: Counter,
    dropped_fam: Family<Labels, Counter>,
    dropped: [Counter; DropReason::ALL.len()],
    bytes_fam: Family<Labels, Counter>,
    /// Bytes relayed client → upstream.
    pub bytes_to_upstream: Counter,
    /// Bytes relayed upstream → client.
    pub bytes_to_client: Counter,
    /// Upstream socket errors (bind, send, ICMP errors reported on receive).
    pub upstream_errors: Counter,
}

type Labels = Vec<(&'static str, &'static str)>;

impl Default for QuicRelayMetrics {
    fn default() -> Self {
        let unclassified_fam: Family<Labels, Counter> = Family::default();
        let u = |r: &'static str| unclassified_fam.get_or_create(&vec![("reason", r)]).clone();
        let dropped_fam: Family<Labels, Counter> = Family::default();
        let dropped = DropReason::ALL.map(|r| {
            dropped_fam
                .get_or_create(&vec![("reason", r.label())])
                .clone()
        });
        let bytes_fam: Family<Labels, Counter> = Family::default();
        let b = |d: &'static str| bytes_fam.get_or_create(&vec![("direction", d)]).clone();
        QuicRelayMetrics {
            datagrams: Counter::default(),
            verdicts: VerdictCounters::default(),
            flows_opened: Counter::default(),
            flows_open: Gauge::default(),
            unclassified_not_initial: u("not_initial"),
            unclassified_version: u("unsupported_version"),
            unclassified_fam,
            reclassified: Counter::default(),
            ech: Counter::default(),
            no_sni: Counter::default(),
            dropped,
            dropped_fam,
            bytes_to_upstream: b("to_upstream"),
            bytes_to_client: b("to_client"),
            bytes_fam,
            upstream_errors: Counter::default(),
        }
    }
}

impl QuicRelayMetrics {
    /// Registers every counter under `web_quic_` in `reg` (pass the `dragnet` sub-registry).
    pub fn register(&self, reg: &mut Registry) {
        let r = reg.sub_registry_with_prefix("web_quic");
        r.register(
            "datagrams",
            "Datagrams received from QUIC clients",
            self.datagrams.clone(),
        );
        r.register(
            "verdicts",
            "QUIC ClientHellos decided, by engine action (no SNI: the no_sni fallback)",
            self.verdicts_family(),
        );
        r.register(
            "flows_opened",
            "Client flows (UDP 4-tuples) created",
            self.flows_opened.clone(),
        );
        r.register(
            "flows_open",
            "Client flows in the table",
            self.flows_open.clone(),
        );
        r.register(
            "flows_unclassified",
            "Flows whose first datagram was not a readable Initial, by reason",
            self.unclassified_fam.clone(),
        );
        r.register(
            "reclassified",
            "New connection attempts (new Destination Connection ID) classified on a known flow",
            self.reclassified.clone(),
        );
        r.register(
            "ech_hellos",
            "ClientHellos with Encrypted Client Hello (decided on the outer name)",
            self.ech.clone(),
        );
        r.register(
            "no_sni_hellos",
            "ClientHellos without a server name",
            self.no_sni.clone(),
        );
        r.register(
            "dropped",
            "Datagrams not relayed, by reason",
            self.dropped_fam.clone(),
        );
        r.register(
            "bytes",
            "Bytes relayed, by direction",
            self.bytes_fam.clone(),
        );
        r.register(
            "upstream_errors",
            "Upstream socket errors",
            self.upstream_errors.clone(),
        );
    }

    fn verdicts_family(&self) -> Family<Labels, Counter> {
        self.verdicts.family()
    }

    /// Datagrams dropped for one reason so far.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.dropped_counter(r).get()
    }

    fn dropped_counter(&self, r: DropReason) -> &Counter {
        // `ALL` holds every variant, so the index is always found.
        let i = DropReason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        &self.dropped[i]
    }

    #[inline]
    fn drop_n(&self, r: DropReason, n: usize) {
        if n > 0 {
            self.dropped_counter(r).inc_by(n as u64);
        }
    }
}

/// What the shell does with a client datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send it upstream.
    Forward,
    /// The flow was just allowed: send its held datagrams ([`Flow::take_held`]) upstream, in
    /// order, then this one.
    Release,
    /// Held by the flow until its ClientHello is complete.
    Hold,
    /// Not relayed (already counted).
    Drop(DropReason),
}

/// A connection as the relay identifies it: the version and Destination Connection ID of an
/// Initial (RFC 9001 §5.2: what the Initial keys are derived from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Binding {
    version: Version,
    dcid: [u8; MAX_CID_LEN],
    len: u8,
}

impl Binding {
    fn of(h: &InitialHeader) -> Binding {
        let mut dcid = [0; MAX_CID_LEN];
        let id = h.dcid();
        let len = id.len().min(MAX_CID_LEN);
        dcid[..len].copy_from_slice(&id[..len]);
        Binding {
            version: h.version,
            dcid,
            len: len as u8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The ClientHello is not complete yet: datagrams are held.
    Pending,
    /// Relayed both ways.
    Forward,
    /// Dropped, for this reason.
    Drop(DropReason),
}

/// One client flow's classification state (sans IO).
#[derive(Debug)]
pub struct Flow {
    state: State,
    /// While pending: the sniffer reading this flow's Initials (from the classifier's pool).
    sniffer: Option<Box<InitialSniffer>>,
    /// The connection the current verdict (or pending classification) is about, once known.
    bound: Option<Binding>,
    /// Datagrams held while pending.
    held: Vec<Vec<u8>>,
    /// When the current classification started (the ClientHello deadline counts from here).
    since: Instant,
}

impl Flow {
    /// A flow that has sent nothing yet.
    pub fn new(now: Instant) -> Flow {
        Flow {
            state: State::Pending,
            sniffer: None,
            bound: None,
            held: Vec::new(),
            since: now,
        }
    }

    /// Relay upstream datagrams to the client (the flow is allowed or unclassified-forwarded).
    pub fn forwarding(&self) -> bool {
        self.state == State::Forward
    }

    /// Still waiting for its ClientHello.
    pub fn pending(&self) -> bool {
        self.state == State::Pending
    }

    /// The datagrams held while pending, oldest first (after [`Step::Release`]).
    pub fn take_held(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.held)
    }

    /// Datagrams held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether a pending flow's ClientHello missed its deadline.
    pub fn hello_overdue(&self, now: Instant, limit: Duration) -> bool {
        self.state == State::Pending && now.saturating_duration_since(self.since) >= limit
    }
}

/// The relay's decision logic (sans IO): feeds flows' datagrams to sniffers, asks the engine,
/// counts. One per relay task.
#[derive(Debug)]
pub struct Classifier {
    cfg: Arc<QuicRelayConfig>,
    store: Arc<Store>,
    metrics: Arc<QuicRelayMetrics>,
    /// Trial decryption of an Initial with a new connection ID on a decided flow.
    spare: Box<InitialSniffer>,
    pool: Vec<Box<InitialSniffer>>,
}

impl Classifier {
    pub fn new(
        cfg: Arc<QuicRelayConfig>,
        store: Arc<Store>,
        metrics: Arc<QuicRelayMetrics>,
    ) -> Classifier {
        Classifier {
            cfg,
            store,
            metrics,
            spare: Box::new(InitialSniffer::new()),
            pool: Vec::new(),
        }
    }

    /// Decides what to do with datagram `d` of `flow`. `now` is a monotonic clock, `unix_now`
    /// the wall clock in seconds (rule expiry). Drops are counted here.
    pub fn on_datagram(&mut self, flow: &mut Flow, d: &[u8], now: Instant, unix_now: u64) -> Step {
        let initial = peek_initial(d).map(|h| Binding::of(&h));
        let step = match flow.state {
            State::Pending => self.pending(flow, d, initial, now, unix_now, true),
            State::Forward | State::Drop(_) => self.decided(flow, d, initial, now, unix_now),
        };
        if let Step::Drop(r) = step {
            self.metrics.drop_n(r, 1);
        }
        step
    }

    /// Forgets `flow` (expiry): its sniffer goes back to the pool, held datagrams are counted
    /// as dropped for the hello deadline if it was still pending.
    pub fn retire(&mut self, flow: &mut Flow) {
        self.metrics
            .drop_n(DropReason::HelloTimeout, flow.take_held().len());
        self.release_sniffer(flow);
    }

    fn take_sniffer(&mut self) -> Box<InitialSniffer> {
        self.pool
            .pop()
            .unwrap_or_else(|| Box::new(InitialSniffer::new()))
    }

    fn release_sniffer(&mut self, flow: &mut Flow) {
        if let Some(mut s) = flow.sniffer.take() {
            if self.pool.len() < SNIFFER_POOL {
                s.reset();
                self.pool.push(s);
            }
        }
    }

    fn verdict(flow: &Flow) -> Step {
        match flow.state {
            State::Forward => Step::Forward,
            State::Drop(r) => Step::Drop(r),
            // Not reached: only decided flows ask for their verdict.
            State::Pending => Step::Hold,
        }
    }

    /// A decided flow. Only an Initial of a connection other than the decided one can change
    /// anything.
    fn decided(
        &mut self,
        flow: &mut Flow,
        d: &[u8],
        initial: Option<Binding>,
        now: Instant,
        unix_now: u64,
    ) -> Step {
        let Some(b) = initial else {
            return Self::verdict(flow);
        };
        if flow.bound == Some(b) {
            // A retransmission of the decided connection's first flight.
            return Self::verdict(flow);
        }
        // Another connection ID: the client's continuation (it addresses the server's ID after
        // the server's first Initial, RFC 9000 §7.2, but keeps the first keys, RFC 9001 §5.2,
        // so the packet does not decrypt with keys from its own ID), or a new attempt on the
        // 4-tuple or the answer to a Retry (keys from its own ID). A trial decryption tells.
        self.spare.reset();
        match self.spare.feed(d) {
            Ok(Some(info)) => {
                self.metrics.reclassified.inc();
                flow.bound = Some(b);
                flow.since = now;
                self.settle(flow, &info, unix_now)
            }
            Ok(None) => {
                // A new attempt whose ClientHello continues in later datagrams: this sniffer
                // now belongs to the flow.
                self.metrics.reclassified.inc();
                let fresh = self.take_sniffer();
                let s = std::mem::replace(&mut self.spare, fresh);
                self.release_sniffer(flow);
                flow.sniffer = Some(s);
                flow.state = State::Pending;
                flow.bound = Some(b);
                flow.since = now;
                flow.held.clear();
                self.hold(flow, d)
            }
            Err(_) => Self::verdict(flow),
        }
    }

    fn pending(
        &mut self,
        flow: &mut Flow,
        d: &[u8],
        initial: Option<Binding>,
        now: Instant,
        unix_now: u64,
        may_retry: bool,
    ) -> Step {
        let sniffer = match &mut flow.sniffer {
            Some(s) => s,
            None => flow.sniffer.insert(self.take_sniffer()),
        };
        match sniffer.feed(d) {
            Ok(Some(info)) => {
                if flow.bound.is_none() {
                    flow.bound = initial;
                }
                self.release_sniffer(flow);
                self.settle(flow, &info, unix_now)
            }
            Ok(None) => {
                if flow.bound.is_none() {
                    flow.bound = initial;
                }
                self.hold(flow, d)
            }
            // quic.rs: an Initial of another version or connection ID on a flow the sniffer
            // is bound to is a new connection attempt (or the answer to a Retry): follow it.
            Err(QuicError::Malformed(_))
                if may_retry
                    && flow.bound.is_some()
                    && initial.is_some()
                    && initial != flow.bound =>
            {
                sniffer.reset();
                self.metrics.reclassified.inc();
                self.metrics
                    .drop_n(DropReason::Superseded, flow.take_held().len());
                flow.bound = None;
                flow.since = now;
                self.pending(flow, d, initial, now, unix_now, false)
            }
            Err(QuicError::NotInitial) if flow.bound.is_none() && flow.held.is_empty() => {
                self.metrics.unclassified_not_initial.inc();
                self.unclassified(flow)
            }
            Err(QuicError::UnsupportedVersion(_))
                if flow.bound.is_none() && flow.held.is_empty() =>
            {
                self.metrics.unclassified_version.inc();
                self.unclassified(flow)
            }
            // 0-RTT or Handshake packets while the ClientHello is incomplete: part of the flow,
            // held with it.
            Err(QuicError::NotInitial) => self.hold(flow, d),
            Err(QuicError::UnsupportedVersion(_)) => Step::Drop(DropReason::Malformed),
            // RFC 9001 §5.3: the server drops a packet that fails authentication; so do we,
            // and the flow stays open for the authentic ones.
            Err(QuicError::Decrypt) => Step::Drop(DropReason::Decrypt),
            // Before anything authentic arrived: a datagram the server discards too.
            Err(QuicError::Malformed(_)) if flow.bound.is_none() => {
                Step::Drop(DropReason::Malformed)
            }
            Err(QuicError::Malformed(_)) => self.refuse(flow, DropReason::Malformed),
            Err(QuicError::Hello(_)) => self.refuse(flow, DropReason::BadHello),
        }
    }

    /// Decides on a complete ClientHello.
    fn settle(&mut self, flow: &mut Flow, info: &HelloInfo, unix_now: u64) -> Step {
        let m = &self.metrics;
        if info.ech {
            m.ech.inc();
        }
        if info.sni().is_none() {
            m.no_sni.inc();
        }
        let d = {
            let a = self.store.load();
            let d = decide(&a, info, self.cfg.no_sni, self.cfg.warn, unix_now);
            if let Some(name) = info.sni() {
                self.store
                    .shadow_compare(crate::store::Plane::Web, d.action, |e| {
                        e.check_domain(name.as_bytes(), unix_now)
                    });
            }
            crate::web::sni::after_decision(&self.store, &a, d, info.sni(), None, unix_now)
        };
        m.verdicts.count(d.action);
        if d.pass {
            flow.state = State::Forward;
            Step::Release
        } else {
            tracing::debug!(sni = ?info.sni(), action = ?d.action, "QUIC flow blocked");
            self.refuse(flow, DropReason::Blocked)
        }
    }

    /// Drops the flow from now on (and what it holds).
    fn refuse(&mut self, flow: &mut Flow, r: DropReason) -> Step {
        self.metrics.drop_n(r, flow.take_held().len());
        self.release_sniffer(flow);
        flow.state = State::Drop(r);
        Step::Drop(r)
    }

    fn unclassified(&mut self, flow: &mut Flow) -> Step {
        self.release_sniffer(flow);
        match self.cfg.unclassified {
            Unclassified::Forward => {
                flow.state = State::Forward;
                Step::Forward
            }
            Unclassified::Drop => {
                flow.state = State::Drop(DropReason::Unclassified);
                Step::Drop(DropReason::Unclassified)
            }
        }
    }

    fn hold(&mut self, flow: &mut Flow, d: &[u8]) -> Step {
        if flow.held.len() >= self.cfg.pending_datagrams || d.len() > MAX_HELD_DATAGRAM {
            return Step::Drop(DropReason::PendingFull);
        }
        flow.held.push(d.to_vec());
        Step::Hold
    }
}

/// Activity shared by a flow's entry and its upstream reader task.
#[derive(Debug)]
struct Shared {
    /// Milliseconds since the relay's epoch of the last datagram in either direction.
    last_ms: AtomicU64,
    /// Relay upstream datagrams to the client.
    forward: AtomicBool,
}

impl Shared {
    fn touch(&self, epoch: Instant) {
        let ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self, epoch: Instant) -> Instant {
        epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A forwarded flow's upstream socket and the task that reads it; dropping it stops the task.
#[derive(Debug)]
struct Link {
    sock: Arc<UdpSocket>,
    task: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Entry {
    flow: Flow,
    shared: Arc<Shared>,
    link: Option<Link>,
}

/// What the shell needs besides the table.
#[derive(Debug)]
struct Ctx {
    client: Arc<UdpSocket>,
    upstream: SocketAddr,
    metrics: Arc<QuicRelayMetrics>,
    epoch: Instant,
}

/// Serves the QUIC relay on `socket` until the task is dropped. Returns only if `cfg` does not
/// validate (the error names the `web.quic` key).
pub async fn serve(
    socket: UdpSocket,
    store: Arc<Store>,
    cfg: Arc<QuicRelayConfig>,
    metrics: Arc<QuicRelayMetrics>,
) -> Result<(), ConfigError> {
    QuicRelayConfig {
        enabled: true,
        ..(*cfg).clone()
    }
    .validate()?;
    let upstream = parse_sockaddr("web.quic.upstream", &cfg.upstream)?;
    let ctx = Ctx {
        client: Arc::new(socket),
        upstream,
        metrics: metrics.clone(),
        epoch: Instant::now(),
    };
    let mut classifier = Classifier::new(cfg.clone(), store, metrics.clone());
    let mut flows: HashMap<SocketAddr, Entry> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    // Expiry granularity: a quarter of the shorter timeout, between 50 ms and 1 s.
    let tick = Duration::from_millis(
        (cfg.hello_timeout_ms
            .min(cfg.flow_idle_secs.saturating_mul(1000))
            / 4)
        .clamp(50, 1000),
    );
    let mut sweeper = tokio::time::interval(tick);
    sweeper.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = ctx.client.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let Some(d) = buf.get(..n) else { continue };
                on_client(&ctx, &cfg, &mut classifier, &mut flows, d, from).await;
            }
            _ = sweeper.tick() => sweep(&ctx, &cfg, &mut classifier, &mut flows, Instant::now()),
        }
    }
}

async fn on_client(
    ctx: &Ctx,
    cfg: &QuicRelayConfig,
    classifier: &mut Classifier,
    flows: &mut HashMap<SocketAddr, Entry>,
    d: &[u8],
    from: SocketAddr,
) {
    let m = &ctx.metrics;
    m.datagrams.inc();
    let now = Instant::now();
    if !flows.contains_key(&from) {
        if flows.len() >= cfg.max_flows {
            sweep(ctx, cfg, classifier, flows, now);
        }
        if flows.len() >= cfg.max_flows {
            m.drop_n(DropReason::TableFull, 1);
            return;
        }
        m.flows_opened.inc();
        m.flows_open.inc();
        flows.insert(
            from,
            Entry {
                flow: Flow::new(now),
                shared: Arc::new(Shared {
                    last_ms: AtomicU64::new(0),
                    forward: AtomicBool::new(false),
                }),
                link: None,
            },
        );
    }
    let Some(e) = flows.get_mut(&from) else {
        return;
    };
    e.shared.touch(ctx.epoch);
    let step = classifier.on_datagram(&mut e.flow, d, now, crate::unix_now());
    e.shared
        .forward
        .store(e.flow.forwarding(), Ordering::Relaxed);
    match step {
        Step::Hold | Step::Drop(_) => {}
        Step::Forward => send_up(ctx, e, from, d).await,
        Step::Release => {
            for held in e.flow.take_held() {
                send_up(ctx, e, from, &held).await;
            }
            send_up(ctx, e, from, d).await;
        }
    }
}

/// Sends a client datagram upstream, opening the flow's upstream socket on first use.
async fn send_up(ctx: &Ctx, e: &mut Entry, client: SocketAddr, d: &[u8]) {
    let m = &ctx.metrics;
    if e.link.is_none() {
        match open_link(ctx, e.shared.clone(), client).await {
            Ok(l) => e.link = Some(l),
            Err(err) => {
                tracing::debug!(upstream = %ctx.upstream, %err, "QUIC upstream socket failed");
                m.upstream_errors.inc();
                return;
            }
        }
    }
    let Some(link) = &e.link else { return };
    match link.sock.send(d).await {
        Ok(n) => {
            m.bytes_to_upstream.inc_by(n as u64);
        }
        Err(_) => {
            m.upstream_errors.inc();
        }
    }
}

async fn open_link(ctx: &Ctx, shared: Arc<Shared>, client: SocketAddr) -> std::io::Result<Link> {
    let any: SocketAddr = if ctx.upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(any).await?;
    sock.connect(ctx.upstream).await?;
    let sock = Arc::new(sock);
    let task = tokio::spawn(upstream_to_client(
        sock.clone(),
        ctx.client.clone(),
        client,
        shared,
        ctx.epoch,
        ctx.metrics.clone(),
    ));
    Ok(Link { sock, task })
}

/// Relays the upstream's datagrams of one flow back to its client while the flow forwards.
async fn upstream_to_client(
    up: Arc<UdpSocket>,
    client_sock: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
    epoch: Instant,
    m: Arc<QuicRelayMetrics>,
) {
    // One byte more than relayed, to tell a datagram of exactly the limit from a larger one
    // that the kernel truncated.
    let mut buf = vec![0u8; MAX_UPSTREAM_DATAGRAM + 1];
    loop {
        let n = match up.recv(&mut buf).await {
            Ok(n) => n,
            // ICMP errors (port unreachable) surface here on a connected socket.
            Err(_) => {
                m.upstream_errors.inc();
                continue;
            }
        };
        shared.touch(epoch);
        if n > MAX_UPSTREAM_DATAGRAM {
            m.drop_n(DropReason::Oversized, 1);
            continue;
        }
        if !shared.forward.load(Ordering::Relaxed) {
            continue;
        }
        let Some(d) = buf.get(..n) else { continue };
        if client_sock.send_to(d, client).await.is_ok() {
            m.bytes_to_client.inc_by(n as u64);
        }
    }
}

/// Forgets flows idle for `flow_idle_secs` and pending flows past `hello_timeout_ms`.
fn sweep(
    ctx: &Ctx,
    cfg: &QuicRelayConfig,
    classifier: &mut Classifier,
    flows: &mut HashMap<SocketAddr, Entry>,
    now: Instant,
) {
    let idle = Duration::from_secs(cfg.flow_idle_secs);
    let hello = Duration::from_millis(cfg.hello_timeout_ms);
    flows.retain(|_, e| {
        let idle_out = e.shared.last(ctx.epoch) + idle <= now;
        if idle_out || e.flow.hello_overdue(now, hello) {
            classifier.retire(&mut e.flow);
            ctx.metrics.flows_open.dec();
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use dragnet_rules::Action;

    const DCID_A2: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

    fn classifier(cfg: QuicRelayConfig) -> (Classifier, Arc<QuicRelayMetrics>) {
        let store = Arc::new(Store::new(crate::examples::engine(0).unwrap(), 0));
        let m = Arc::new(QuicRelayMetrics::default());
        (Classifier::new(Arc::new(cfg), store, m.clone()), m)
    }

    /// The first datagrams a real quinn client sends for `name` (from `ep`), up to and including
    /// the one that completes its ClientHello.
    ///
    /// Each call has its own sink socket, so that late datagrams of an earlier connection of
    /// the same endpoint (retransmissions, a close) do not mix in.
    async fn quinn_first_flight(
        ep: &quinn::Endpoint,
        name: &str,
        alpn: Vec<Vec<u8>>,
    ) -> Vec<Vec<u8>> {
        let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        tls.alpn_protocols = alpn;
        let qc = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let connecting = ep
            .connect_with(
                quinn::ClientConfig::new(Arc::new(qc)),
                sink.local_addr().unwrap(),
                name,
            )
            .unwrap();
        let mut s = InitialSniffer::new();
        let mut out = Vec::new();
        let mut buf = [0u8; 65_536];
        loop {
            // A guard against a hang, not a timing assertion.
            let (n, _) = tokio::time::timeout(Duration::from_secs(20), sink.recv_from(&mut buf))
                .await
                .expect("quinn sent no Initial")
                .unwrap();
            out.push(buf[..n].to_vec());
            if s.feed(&buf[..n]).unwrap().is_some() {
                drop(connecting);
                return out;
            }
        }
    }

    fn quinn_endpoint() -> quinn::Endpoint {
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
    }

    fn big_alpn() -> Vec<Vec<u8>> {
        // ~4.3 KB of ALPN names: quinn spreads the ClientHello over several datagrams.
        let mut alpn: Vec<Vec<u8>> = (0..40u8).map(|i| vec![b'a' + i % 26; 100]).collect();
        alpn.push(b"h3".to_vec());
        alpn
    }

    fn now() -> Instant {
        Instant::now()
    }

    #[tokio::test]
    async fn allowed_and_blocked_first_flights() {
        let (mut c, m) = classifier(QuicRelayConfig::default());
        let ep = quinn_endpoint();
        let allowed = quinn_first_flight(&ep, "www.notevil.example", vec![]).await;
        assert_eq!(allowed.len(), 1);
        let mut f = Flow::new(now());
        assert_eq!(c.on_datagram(&mut f, &allowed[0], now(), 0), Step::Release);
        assert!(f.forwarding());
        // A retransmission, a short-header packet: forwarded.
        assert_eq!(c.on_datagram(&mut f, &allowed[0], now(), 0), Step::Forward);
        assert_eq!(c.on_datagram(&mut f, &[0x40; 40], now(), 0), Step::Forward);

        let ep2 = quinn_endpoint();
        let blocked = quinn_first_flight(&ep2, "login.evil.example", vec![]).await;
        let mut g = Flow::new(now());
        let blocked_step = Step::Drop(DropReason::Blocked);
        assert_eq!(c.on_datagram(&mut g, &blocked[0], now(), 0), blocked_step);
        assert_eq!(c.on_datagram(&mut g, &blocked[0], now(), 0), blocked_step);
        assert_eq!(c.on_datagram(&mut g, &[0x40; 40], now(), 0), blocked_step);
        assert_eq!(m.verdicts.get(Action::Block), 1);
        assert_eq!(m.verdicts.get(Action::Allow), 1);
        assert_eq!(m.dropped(DropReason::Blocked), 3);
        assert!(!c.pool.is_empty(), "sniffers go back to the pool");
    }

    #[tokio::test]
    async fn a_hello_over_several_datagrams_is_held_then_released() {
        let (mut c, m) = classifier(QuicRelayConfig::default());
        let ep = quinn_endpoint();
        let flight = quinn_first_flight(&ep, "Big.Example.ORG", big_alpn()).await;
        assert!(flight.len() >= 2, "a multi-datagram hello");
        let mut f = Flow::new(now());
        let last = flight.len() - 1;
        for d in &flight[..last] {
            assert_eq!(c.on_datagram(&mut f, d, now(), 0), Step::Hold);
        }
        assert_eq!(f.held(), last);
        assert_eq!(
            c.on_datagram(&mut f, &flight[last], now(), 0),
            Step::Release
        );
        assert_eq!(f.take_held(), flight[..last].to_vec(), "held in order");

        // The same hello with room for one datagram only: the rest is dropped and counted.
        let (mut c, m2) = classifier(QuicRelayConfig {
            pending_datagrams: 1,
            ..QuicRelayConfig::default()
        });
        let mut f = Flow::new(now());
        assert_eq!(c.on_datagram(&mut f, &flight[0], now(), 0), Step::Hold);
        if flight.len() > 2 {
            assert_eq!(
                c.on_datagram(&mut f, &flight[1], now(), 0),
                Step::Drop(DropReason::PendingFull)
            );
            assert_eq!(m2.dropped(DropReason::PendingFull), 1);
        }
        assert_eq!(m.verdicts.get(Action::Allow), 1);
    }

    #[tokio::test]
    async fn a_new_connection_on_the_same_flow_is_classified_afresh() {
        let (mut c, m) = classifier(QuicRelayConfig::default());
        let ep = quinn_endpoint();
        let blocked = quinn_first_flight(&ep, "evil.example", vec![]).await;
        let allowed = quinn_first_flight(&ep, "www.notevil.example", vec![]).await;
        let mut f = Flow::new(now());
        assert_eq!(
            c.on_datagram(&mut f, &blocked[0], now(), 0),
            Step::Drop(DropReason::Blocked)
        );
        // Same 4-tuple, new Destination Connection ID, decryptable: a new attempt.
        assert_eq!(c.on_datagram(&mut f, &allowed[0], now(), 0), Step::Release);
        assert_eq!(m.reclassified.get(), 1);
        // A retransmission of the blocked attempt re-decides (blocked) …
        assert_eq!(
            c.on_datagram(&mut f, &blocked[0], now(), 0),
            Step::Drop(DropReason::Blocked)
        );
        // … an Initial of another ID that does not decrypt with its own keys (the client's
        // continuation after the server's first Initial) follows the flow's verdict.
        let mut continuation = allowed[0].clone();
        continuation[6] ^= 0x55; // first byte of the DCID
        assert_eq!(
            c.on_datagram(&mut f, &continuation, now(), 0),
            Step::Drop(DropReason::Blocked)
        );
        assert_eq!(c.on_datagram(&mut f, &allowed[0], now(), 0), Step::Release);
        assert_eq!(
            c.on_datagram(&mut f, &continuation, now(), 0),
            Step::Forward
        );

        // While pending: a second attempt replaces the first one's held datagrams.
        let big = quinn_first_flight(&ep, "big.example", big_alpn()).await;
        let mut g = Flow::new(now());
        assert_eq!(c.on_datagram(&mut g, &big[0], now(), 0), Step::Hold);
        assert_eq!(
            c.on_datagram(&mut g, &blocked[0], now(), 0),
            Step::Drop(DropReason::Blocked)
        );
        assert_eq!(m.dropped(DropReason::Superseded), 1);
    }

    #[test]
    fn unclassifiable_first_datagrams_follow_the_config() {
        for (policy, want) in [
            (Unclassified::Forward, Step::Forward),
            (Unclassified::Drop, Step::Drop(DropReason::Unclassified)),
        ] {
            let (mut c, m) = classifier(QuicRelayConfig {
                unclassified: policy,
                ..QuicRelayConfig::default()
            });
            let mut f = Flow::new(now());
            assert_eq!(c.on_datagram(&mut f, &[0x40; 1200], now(), 0), want);
            assert_eq!(c.on_datagram(&mut f, &[0x41; 100], now(), 0), want);
            let mut other = vec![0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8];
            other.extend(DCID_A2);
            other.resize(1200, 0);
            let mut g = Flow::new(now());
            assert_eq!(c.on_datagram(&mut g, &other, now(), 0), want);
            assert_eq!(m.unclassified_not_initial.get(), 1);
            assert_eq!(m.unclassified_version.get(), 1);
        }
    }

    #[tokio::test]
    async fn junk_first_does_not_buy_an_unscreened_handshake() {
        let (mut c, _) = classifier(QuicRelayConfig::default());
        let ep = quinn_endpoint();
        let blocked = quinn_first_flight(&ep, "evil.example", vec![]).await;
        let mut f = Flow::new(now());
        assert_eq!(
            c.on_datagram(&mut f, &[0x40; 1200], now(), 0),
            Step::Forward
        );
        assert_eq!(
            c.on_datagram(&mut f, &blocked[0], now(), 0),
            Step::Drop(DropReason::Blocked)
        );
    }

    #[tokio::test]
    async fn forged_and_short_datagrams_are_dropped_while_pending() {
        let (mut c, m) = classifier(QuicRelayConfig::default());
        let ep = quinn_endpoint();
        let flight = quinn_first_flight(&ep, "www.notevil.example", vec![]).await;
        let mut f = Flow::new(now());
        let mut forged = flight[0].clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            c.on_datagram(&mut f, &forged, now(), 0),
            Step::Drop(DropReason::Decrypt)
        );
        // RFC 9000 §14.1: an Initial in a datagram under 1200 bytes.
        assert_eq!(
            c.on_datagram(&mut f, &flight[0][..1000], now(), 0),
            Step::Drop(DropReason::Malformed)
        );
        assert!(f.pending());
        assert_eq!(c.on_datagram(&mut f, &flight[0], now(), 0), Step::Release);
        assert_eq!(m.dropped(DropReason::Decrypt), 1);
        assert_eq!(m.dropped(DropReason::Malformed), 1);
    }

    #[tokio::test]
    async fn hello_deadline_and_retirement() {
        let (mut c, m) = classifier(QuicRelayConfig::default());
        let ep = quinn_endpoint();
        let flight = quinn_first_flight(&ep, "big.example", big_alpn()).await;
        let t0 = now();
        let mut f = Flow::new(t0);
        assert_eq!(c.on_datagram(&mut f, &flight[0], t0, 0), Step::Hold);
        let limit = Duration::from_millis(5000);
        assert!(!f.hello_overdue(t0 + Duration::from_millis(4999), limit));
        assert!(f.hello_overdue(t0 + limit, limit));
        c.retire(&mut f);
        assert_eq!(m.dropped(DropReason::HelloTimeout), 1);
        assert_eq!(f.held(), 0);
        // A decided flow is never overdue.
        let mut g = Flow::new(t0);
        c.on_datagram(&mut g, &[0x40; 1200], t0, 0);
        assert!(!g.hello_overdue(t0 + Duration::from_secs(60), limit));
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = QuicRelayConfig::default();
        assert!(!c.enabled);
        assert_eq!(c.flow_idle_secs, 30);
        c.validate().unwrap();
        let base = QuicRelayConfig {
            enabled: true,
            upstream: "192.0.2.1:443".into(),
            ..QuicRelayConfig::default()
        };
        base.validate().unwrap();
        let key_of = |c: QuicRelayConfig| c.validate().unwrap_err().key;
        assert_eq!(
            key_of(QuicRelayConfig {
                upstream: String::new(),
                ..base.clone()
            }),
            "web.quic.upstream"
        );
        assert_eq!(
            key_of(QuicRelayConfig {
                upstream: "127.0.0.1:8443".into(),
                ..base.clone()
            }),
            "web.quic.upstream"
        );
        assert_eq!(
            key_of(QuicRelayConfig {
                flow_idle_secs: 0,
                ..base.clone()
            }),
            "web.quic.flow_idle_secs"
        );
        assert_eq!(
            key_of(QuicRelayConfig {
                max_flows: 0,
                ..base.clone()
            }),
            "web.quic.max_flows"
        );
        assert_eq!(
            key_of(QuicRelayConfig {
                pending_datagrams: 65,
                ..base.clone()
            }),
            "web.quic.pending_datagrams"
        );
        assert_eq!(
            key_of(QuicRelayConfig {
                listen: "x".into(),
                ..base
            }),
            "web.quic.listen"
        );
        let t: QuicRelayConfig = toml::from_str(
            "enabled = true\nupstream = \"10.0.0.1:443\"\nunclassified = \"drop\"\n",
        )
        .unwrap();
        assert_eq!(t.unclassified, Unclassified::Drop);
        assert!(toml::from_str::<QuicRelayConfig>("flow_idle = 3").is_err());
    }

    #[test]
    fn metrics_register() {
        let m = QuicRelayMetrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        m.drop_n(DropReason::TableFull, 2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("web_quic_dropped_total{reason=\"table_full\"} 2"),
            "{text}"
        );
        for r in DropReason::ALL {
            assert!(text.contains(&format!("reason=\"{}\"", r.label())));
        }
        assert!(text.contains("web_quic_verdicts_total{action=\"allow\"} 0"));
    }
}
