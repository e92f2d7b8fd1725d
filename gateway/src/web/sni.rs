//! # Transparent TLS port: read the SNI, decide, then splice or refuse
//!
//! Connections redirected to this port (or sent to it on purpose) start with the client's
//! ClientHello (RFC 8446 §4.1.2). The plane reads it with [`HelloReader`] under a deadline,
//! asks the engine about the `server_name` (RFC 6066 §3) and then either
//!
//! - **allows** (engine allow or tag): connects to the upstream — the configured `upstream`, or
//!   the connection's original destination (Linux `SO_ORIGINAL_DST`, set by an iptables
//!   `REDIRECT`) — replays every byte read so far unchanged and splices both directions until
//!   either side closes or the connection stays idle for `idle_timeout_secs`;
//! - **blocks**: sends a fatal TLS alert (RFC 8446 §6; `access_denied` or `unrecognized_name`)
//!   and closes, or resets the connection (`SO_LINGER` 0), as configured.
//!
//! The gateway never terminates TLS and never sees the plaintext: what it learns is the
//! ClientHello's clear-text name. With Encrypted Client Hello (draft-ietf-tls-esni) that is the
//! *outer*, provider-wide name; the plane counts ECH hellos and decides on the outer name as for
//! any other hello, never blocking on ECH alone (STANDARDS.md: "with ECH only the outer (provider)
//! name is visible"). A hello without a name (clients connecting to an IP address) follows
//! `no_sni`. What is not a usable ClientHello (plain HTTP, malformed, too large, an IP literal as
//! the name) is closed and counted by reason.
//!
//! **Cost model.** Per connection: one 16.5 KiB [`HelloReader`] and the raw bytes read before
//! the decision (at most [`MAX_RAW`] plus one 4 KiB read), both freed before splicing; one
//! engine lookup; then tokio's `copy_bidirectional` with its two 8 KiB buffers. Per read while
//! splicing: a monotonic clock read and two relaxed atomic stores/adds (activity, bytes).
//! `max_connections` bounds the total.
//!
//! Standards: RFC 8446 (§4.1.2 ClientHello, §5.1 records, §6 alerts), RFC 6066 §3
//! (server_name), RFC 1122 §4.2.2.13 (closing with unread data sends RST), draft-ietf-tls-esni
//! (ECH).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dragnet_rules::Action;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::tls::{alert, AlertDescription, HelloError, HelloInfo, HelloReader, MAX_HELLO};
use crate::config::{parse_sockaddr, ConfigError};
use crate::store::{Active, Plane, Store};

/// Most raw bytes read from a client before its ClientHello is complete.
///
/// Why twice [`MAX_HELLO`]: the reader bounds the hello itself, but not the record headers
/// around it (RFC 8446 §5.1 lets a sender cut a handshake message into records as small as one
/// byte, six raw bytes per byte of hello). Real clients use one to three records; a hello cut
/// into thousands of tiny records is an evasion attempt and is refused as too large.
pub const MAX_RAW: usize = 2 * MAX_HELLO;

/// After a fatal alert: how long, and how many bytes, the plane keeps reading (and discarding)
/// before it closes. RFC 1122 §4.2.2.13: closing a socket with unread data sends a RST, which
/// can destroy the alert before the client has read it; a half-close and a short drain let the
/// alert arrive first.
const ALERT_LINGER: Duration = Duration::from_secs(2);
const ALERT_DRAIN_BYTES: usize = 64 * 1024;

/// How the plane refuses a blocked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockWith {
    /// A fatal TLS alert (RFC 8446 §6), then a normal close: the browser shows a TLS error
    /// naming the alert.
    Alert,
    /// A TCP reset (`SO_LINGER` 0): looks like a network failure to the client.
    Reset,
}

/// The alert sent for a blocked name (RFC 8446 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockAlert {
    /// access_denied(49): the closest meaning for "refused by policy".
    AccessDenied,
    /// unrecognized_name(112, RFC 6066 §3): as if no such server were here.
    UnrecognizedName,
}

impl BlockAlert {
    fn description(self) -> AlertDescription {
        match self {
            BlockAlert::AccessDenied => AlertDescription::AccessDenied,
            BlockAlert::UnrecognizedName => AlertDescription::UnrecognizedName,
        }
    }
}

/// What the web plane does where the engine cannot or does not give a plain answer: a hello
/// without a name (`no_sni`), or a `warn` verdict, which a TLS or QUIC client cannot be shown
/// (the warning page works through the DNS plane's sinkhole and plain HTTP, STANDARDS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    Allow,
    Block,
}

/// `[web.tls]`: the transparent TLS port. Every key is optional; the plane is off by default.
///
/// ```toml
/// [web.tls]
/// enabled = false
/// listen = "127.0.0.1:8443"        # TCP; iptables REDIRECT sends port 443 here
/// upstream = ""                    # "ip:port" every allowed connection goes to, or:
/// original_destination = false     # Linux SO_ORIGINAL_DST (iptables REDIRECT); not with upstream
/// hello_timeout_ms = 5000          # the whole ClientHello must arrive within this
/// connect_timeout_ms = 5000        # connecting to the upstream
/// idle_timeout_secs = 300          # a spliced connection idle this long is closed
/// max_connections = 4096           # beyond it, new connections are closed at once (counted)
/// block_with = "alert"             # alert | reset
/// alert = "access_denied"          # access_denied | unrecognized_name
/// no_sni = "allow"                 # a hello without server_name: allow | block
/// warn = "allow"                   # a warn verdict (no warning page over TLS): allow | block
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SniConfig {
    pub enabled: bool,
    /// TCP listen address (`ip:port`).
    pub listen: String,
    /// Where allowed connections go (`ip:port`); empty with `original_destination`.
    pub upstream: String,
    /// Send each allowed connection where the client meant it to go: the address an iptables
    /// `REDIRECT` rewrote, read back with `SO_ORIGINAL_DST` (Linux only).
    pub original_destination: bool,
    /// Milliseconds the client has to deliver its whole ClientHello.
    pub hello_timeout_ms: u64,
    /// Milliseconds to connect to the upstream before giving up (`internal_error` alert).
    pub connect_timeout_ms: u64,
    /// Seconds without a byte in either direction before a spliced connection is closed.
    pub idle_timeout_secs: u64,
    /// Most connections at once (reading a hello or spliced).
    pub max_connections: usize,
    pub block_with: BlockWith,
    /// The alert of `block_with = "alert"`.
    pub alert: BlockAlert,
    pub no_sni: Fallback,
    pub warn: Fallback,
}

impl Default for SniConfig {
    fn default() -> Self {
        SniConfig {
            enabled: false,
            listen: "127.0.0.1:8443".into(),
            upstream: String::new(),
            original_destination: false,
            hello_timeout_ms: 5000,
            connect_timeout_ms: 5000,
            idle_timeout_secs: 300,
            max_connections: 4096,
            block_with: BlockWith::Alert,
            alert: BlockAlert::AccessDenied,
            no_sni: Fallback::Allow,
            warn: Fallback::Allow,
        }
    }
}

pub(crate) fn config_err(key: String, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

/// Checks that `v` is within `lo..=hi`, naming `key` otherwise.
pub(crate) fn check_range(key: String, v: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(config_err(key, format!("{v} is outside {lo}..={hi}")))
    }
}

impl SniConfig {
    /// Checks everything that can be checked without binding sockets; errors name
    /// `web.tls.<key>`. A disabled plane is not checked.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let key = |k: &str| format!("web.tls.{k}");
        let listen = parse_sockaddr(&key("listen"), &self.listen)?;
        match (self.upstream.is_empty(), self.original_destination) {
            (true, false) => {
                return Err(config_err(
                    key("upstream"),
                    "the TLS plane is enabled but has nowhere to send allowed connections: set \
                     upstream (ip:port) or original_destination = true",
                ))
            }
            (false, true) => {
                return Err(config_err(
                    key("upstream"),
                    "set either upstream or original_destination = true, not both",
                ))
            }
            (false, false) => {
                if parse_sockaddr(&key("upstream"), &self.upstream)? == listen {
                    return Err(config_err(
                        key("upstream"),
                        "is the plane's own listen address: every connection would loop",
                    ));
                }
            }
            (true, true) => {
                if !cfg!(any(target_os = "linux", target_os = "android")) {
                    return Err(config_err(
                        key("original_destination"),
                        "needs Linux (SO_ORIGINAL_DST); set upstream instead",
                    ));
                }
            }
        }
        check_range(key("hello_timeout_ms"), self.hello_timeout_ms, 1, 60_000)?;
        check_range(
            key("connect_timeout_ms"),
            self.connect_timeout_ms,
            1,
            60_000,
        )?;
        check_range(key("idle_timeout_secs"), self.idle_timeout_secs, 1, 86_400)?;
        check_range(
            key("max_connections"),
            self.max_connections as u64,
            1,
            1 << 20,
        )?;
        Ok(())
    }
}

/// Label sets of the plane's families.
type Labels = Vec<(&'static str, &'static str)>;

/// Verdict counters by engine action, resolved once (one atomic add per decision).
#[derive(Debug, Clone)]
pub struct VerdictCounters {
    fam: Family<Labels, Counter>,
    allow: Counter,
    tag: Counter,
    warn: Counter,
    block: Counter,
}

impl Default for VerdictCounters {
    fn default() -> Self {
        let fam: Family<Labels, Counter> = Family::default();
        let c = |a: &'static str| fam.get_or_create(&vec![("action", a)]).clone();
        VerdictCounters {
            allow: c("allow"),
            tag: c("tag"),
            warn: c("warn"),
            block: c("block"),
            fam,
        }
    }
}

impl VerdictCounters {
    /// Counts one decision.
    #[inline]
    pub fn count(&self, a: Action) {
        match a {
            Action::Allow => &self.allow,
            Action::Tag => &self.tag,
            Action::Warn => &self.warn,
            Action::Block => &self.block,
        }
        .inc();
    }

    /// The family, for registration.
    pub(crate) fn family(&self) -> Family<Labels, Counter> {
        self.fam.clone()
    }

    /// The count for one action (tests, status).
    pub fn get(&self, a: Action) -> u64 {
        match a {
            Action::Allow => &self.allow,
            Action::Tag => &self.tag,
            Action::Warn => &self.warn,
            Action::Block => &self.block,
        }
        .get()
    }
}

/// Why the plane closed a connection without splicing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The engine (or `no_sni` / `warn`) said block.
    Blocked,
    /// `max_connections` was reached.
    OverLimit,
    /// The client did not start with a TLS handshake record.
    NotTls,
    /// TLS, but the first message is not a ClientHello.
    NotClientHello,
    /// The hello (or its record framing) is larger than the plane reads.
    TooLarge,
    /// The hello breaks its wire format.
    Malformed,
    /// The server name cannot be used (an IP literal, a bad character …).
    BadSni,
    /// The hello did not arrive within `hello_timeout_ms`.
    HelloTimeout,
    /// The client closed (or reset) before its hello was complete.
    ClientClosed,
    /// `original_destination` is on, but the connection was not redirected (or it would loop
    /// back to this port).
    NoOriginalDestination,
    /// The upstream could not be reached (an `internal_error` alert was sent).
    UpstreamUnreachable,
}

impl Refusal {
    /// The stable metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Refusal::Blocked => "blocked",
            Refusal::OverLimit => "over_limit",
            Refusal::NotTls => "not_tls",
            Refusal::NotClientHello => "not_client_hello",
            Refusal::TooLarge => "too_large",
            Refusal::Malformed => "malformed",
            Refusal::BadSni => "bad_sni",
            Refusal::HelloTimeout => "hello_timeout",
            Refusal::ClientClosed => "client_closed",
            Refusal::NoOriginalDestination => "no_original_destination",
            Refusal::UpstreamUnreachable => "upstream_unreachable",
        }
    }

    const ALL: [Refusal; 11] = [
        Refusal::Blocked,
        Refusal::OverLimit,
        Refusal::NotTls,
        Refusal::NotClientHello,
        Refusal::TooLarge,
        Refusal::Malformed,
        Refusal::BadSni,
        Refusal::HelloTimeout,
        Refusal::ClientClosed,
        Refusal::NoOriginalDestination,
        Refusal::UpstreamUnreachable,
    ];

    fn of(e: &HelloError) -> Refusal {
        match e {
            HelloError::NotTls => Refusal::NotTls,
            HelloError::NotClientHello => Refusal::NotClientHello,
            HelloError::TooLarge => Refusal::TooLarge,
            HelloError::Malformed(_) => Refusal::Malformed,
            HelloError::BadSni(_) => Refusal::BadSni,
        }
    }
}

/// TLS plane counters (`dragnet_web_tls_*`). Handles are resolved at construction; the data
/// path does one relaxed atomic add per event.
#[derive(Debug, Clone)]
pub struct SniMetrics {
    /// Connections accepted (within `max_connections`).
    pub accepted: Counter,
    /// Connections open now (reading a hello or spliced).
    pub open: Gauge,
    /// Decisions by engine action (also counted per rule category in the store).
    pub verdicts: VerdictCounters,
    /// Connections closed without splicing, by [`Refusal`].
    refused_fam: Family<Labels, Counter>,
    refused: [Counter; Refusal::ALL.len()],
    /// Connections spliced to an upstream.
    pub spliced: Counter,
    /// Hellos with an encrypted_client_hello extension (decided on the outer name).
    pub ech: Counter,
    /// Hellos without a server_name (decided by `no_sni`).
    pub no_sni: Counter,
    /// Spliced connections closed for idleness.
    pub idle_timeouts: Counter,
    bytes_fam: Family<Labels, Counter>,
    /// Bytes relayed client → upstream (the replayed hello included).
    pub bytes_to_upstream: Counter,
    /// Bytes relayed upstream → client.
    pub bytes_to_client: Counter,
}

impl Default for SniMetrics {
    fn default() -> Self {
        let refused_fam: Family<Labels, Counter> = Family::default();
        let refused = Refusal::ALL.map(|r| {
            refused_fam
                .get_or_create(&vec![("reason", r.label())])
                .clone()
        });
        let bytes_fam: Family<Labels, Counter> = Family::default();
        let b = |d: &'static str| bytes_fam.get_or_create(&vec![("direction", d)]).clone();
        SniMetrics {
            accepted: Counter::default(),
            open: Gauge::default(),
            verdicts: VerdictCounters::default(),
            refused,
            refused_fam,
            spliced: Counter::default(),
            ech: Counter::default(),
            no_sni: Counter::default(),
            idle_timeouts: Counter::default(),
            bytes_to_upstream: b("to_upstream"),
            bytes_to_client: b("to_client"),
            bytes_fam,
        }
    }
}

impl SniMetrics {
    /// Registers every counter under `web_tls_` in `reg` (pass the `dragnet` sub-registry, as
    /// for the SIP and DNS planes).
    pub fn register(&self, reg: &mut Registry) {
        let r = reg.sub_registry_with_prefix("web_tls");
        r.register(
            "connections_accepted",
            "TLS connections accepted",
            self.accepted.clone(),
        );
        r.register(
            "connections_open",
            "TLS connections open (reading the ClientHello or spliced)",
            self.open.clone(),
        );
        r.register(
            "verdicts",
            "ClientHellos decided, by engine action (no SNI: the no_sni fallback)",
            self.verdicts.fam.clone(),
        );
        r.register(
            "refused",
            "Connections closed without splicing, by reason",
            self.refused_fam.clone(),
        );
        r.register(
            "spliced",
            "Connections spliced to the upstream",
            self.spliced.clone(),
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
            "idle_timeouts",
            "Spliced connections closed after idle_timeout_secs without traffic",
            self.idle_timeouts.clone(),
        );
        r.register(
            "bytes",
            "Bytes relayed, by direction",
            self.bytes_fam.clone(),
        );
    }

    /// Connections refused for one reason so far.
    pub fn refused(&self, r: Refusal) -> u64 {
        self.refused_counter(r).get()
    }

    fn refused_counter(&self, r: Refusal) -> &Counter {
        // `ALL` lists every variant in discriminant order, so the index is always in range.
        let i = Refusal::ALL.iter().position(|x| *x == r).unwrap_or(0);
        &self.refused[i]
    }

    #[inline]
    fn refuse(&self, r: Refusal) {
        self.refused_counter(r).inc();
    }
}

/// A decision about one ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The engine's action; for a hello without a name, the `no_sni` fallback's.
    pub action: Action,
    /// Splice (true) or refuse (false): allow and tag pass, block does not, warn and a missing
    /// name follow their fallbacks.
    pub pass: bool,
}

/// Decides on a hello's name with the active snapshot and counts the decision in the store
/// (per plane, action and rule category). Shared by the TLS and QUIC paths.
///
/// [`after_decision`] then applies the breaker and records the hit event.
pub fn decide(
    a: &Active,
    info: &HelloInfo,
    no_sni: Fallback,
    warn: Fallback,
    now: u64,
) -> Decision {
    let Some(name) = info.sni() else {
        let action = match no_sni {
            Fallback::Allow => Action::Allow,
            Fallback::Block => Action::Block,
        };
        a.count(Plane::Web, action, None);
        return Decision {
            action,
            pass: no_sni == Fallback::Allow,
        };
    };
    let v = a.engine.check_domain(name.as_bytes(), now);
    a.count(Plane::Web, v.action, v.rule.map(|_| v.category));
    let pass = match v.action {
        Action::Allow | Action::Tag => true,
        Action::Warn => warn == Fallback::Allow,
        Action::Block => false,
    };
    Decision {
        action: v.action,
        pass,
    }
}

/// Reads from `r` until the ClientHello is complete, `deadline` passes or the stream fails;
/// returns the hello and every byte read (the hello and whatever followed it in the same reads),
/// to be replayed to the upstream unchanged.
pub async fn read_hello<R: AsyncRead + Unpin>(
    r: &mut R,
    deadline: Instant,
) -> Result<(HelloInfo, Vec<u8>), Refusal> {
    let mut reader = Box::new(HelloReader::new());
    let mut raw: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Err(_) => return Err(Refusal::HelloTimeout),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(Refusal::ClientClosed),
            Ok(Ok(n)) => n,
        };
        let Some(got) = chunk.get(..n) else {
            return Err(Refusal::ClientClosed);
        };
        let result = reader.feed(got);
        // Judged on the bytes the hello took, not on how the reads were cut.
        if reader.consumed() > MAX_RAW && result.is_ok() {
            return Err(Refusal::TooLarge);
        }
        raw.extend_from_slice(got);
        match result {
            Ok(None) => {}
            Ok(Some(info)) => return Ok((info, raw)),
            Err(e) => return Err(Refusal::of(&e)),
        }
    }
}

/// Where an allowed connection goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    Fixed(SocketAddr),
    Original,
}

/// Serves the transparent TLS port on `listener` until the task is dropped. Returns only if
/// `cfg` does not validate (the error names the `web.tls` key).
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    cfg: Arc<SniConfig>,
    metrics: Arc<SniMetrics>,
) -> Result<(), ConfigError> {
    let enabled = SniConfig {
        enabled: true,
        ..(*cfg).clone()
    };
    enabled.validate()?;
    let target = if cfg.original_destination {
        Target::Original
    } else {
        Target::Fixed(parse_sockaddr("web.tls.upstream", &cfg.upstream)?)
    };
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                // EMFILE and friends: back off a little instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics.refuse(Refusal::OverLimit);
            drop(stream);
            continue;
        };
        metrics.accepted.inc();
        let (store, cfg, metrics) = (store.clone(), cfg.clone(), metrics.clone());
        tokio::spawn(async move {
            metrics.open.inc();
            connection(stream, peer, target, &store, &cfg, &metrics).await;
            metrics.open.dec();
            drop(permit);
        });
    }
}

async fn connection(
    mut client: TcpStream,
    peer: SocketAddr,
    target: Target,
    store: &Store,
    cfg: &SniConfig,
    m: &SniMetrics,
) {
    let _ = client.set_nodelay(true);
    let deadline = Instant::now() + Duration::from_millis(cfg.hello_timeout_ms);
    let (info, raw) = match read_hello(&mut client, deadline).await {
        Ok(x) => x,
        Err(r) => {
            tracing::trace!(%peer, reason = r.label(), "TLS connection closed before a decision");
            m.refuse(r);
            let _ = client.shutdown().await;
            return;
        }
    };
    if info.ech {
        m.ech.inc();
    }
    if info.sni().is_none() {
        m.no_sni.inc();
    }
    let now = crate::unix_now();
    let d = {
        let a = store.load();
        let d = decide(&a, &info, cfg.no_sni, cfg.warn, now);
        if let Some(name) = info.sni() {
            store.shadow_compare(Plane::Web, d.action, |e| {
                e.check_domain(name.as_bytes(), now)
            });
        }
        after_decision(store, &a, d, info.sni(), Some(peer.ip()), now)
    };
    m.verdicts.count(d.action);
    if !d.pass {
        tracing::debug!(%peer, sni = ?info.sni(), action = ?d.action, "TLS connection blocked");
        m.refuse(Refusal::Blocked);
        match cfg.block_with {
            BlockWith::Alert => close_with_alert(client, cfg.alert.description()).await,
            BlockWith::Reset => reset(client),
        }
        return;
    }
    let to = match target {
        Target::Fixed(a) => a,
        Target::Original => match original_destination(&client) {
            Some(a) => a,
            None => {
                m.refuse(Refusal::NoOriginalDestination);
                close_with_alert(client, AlertDescription::InternalError).await;
                return;
            }
        },
    };
    let connect = TcpStream::connect(to);
    let mut up =
        match tokio::time::timeout(Duration::from_millis(cfg.connect_timeout_ms), connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) | Err(_) => {
                tracing::debug!(%peer, upstream = %to, "TLS upstream unreachable");
                m.refuse(Refusal::UpstreamUnreachable);
                // RFC 8446 §6.2: internal_error, "an internal error unrelated to the peer".
                close_with_alert(client, AlertDescription::InternalError).await;
                return;
            }
        };
    let _ = up.set_nodelay(true);
    if up.write_all(&raw).await.is_err() {
        m.refuse(Refusal::UpstreamUnreachable);
        close_with_alert(client, AlertDescription::InternalError).await;
        return;
    }
    m.bytes_to_upstream.inc_by(raw.len() as u64);
    // Free the hello's bytes before the long splice.
    drop(raw);
    m.spliced.inc();
    splice(client, up, Duration::from_secs(cfg.idle_timeout_secs), m).await;
}

/// Copies both directions (each half-closed on its own EOF) until both are done, an error
/// occurs, or nothing moved for `idle`.
async fn splice(client: TcpStream, up: TcpStream, idle: Duration, m: &SniMetrics) {
    let (to_up, to_client) = (Some(&m.bytes_to_upstream), Some(&m.bytes_to_client));
    if super::splice::splice(client, up, idle, to_up, to_client).await {
        m.idle_timeouts.inc();
    }
}

/// Sends a fatal alert (RFC 8446 §6) and closes gracefully: half-close, then read and discard
/// briefly so that the close does not turn into a RST that destroys the alert
/// (RFC 1122 §4.2.2.13).
async fn close_with_alert(mut s: TcpStream, desc: AlertDescription) {
    let done = tokio::time::timeout(ALERT_LINGER, async {
        if s.write_all(&alert(desc)).await.is_err() {
            return;
        }
        let _ = s.shutdown().await;
        let mut sink = [0u8; 2048];
        let mut drained = 0usize;
        while drained < ALERT_DRAIN_BYTES {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    });
    let _ = done.await;
}

/// Closes with a TCP reset: `SO_LINGER` with a zero timeout makes close(2) send RST and drop
/// the connection at once.
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// The destination the client asked for before an iptables `REDIRECT` sent it here
/// (`SO_ORIGINAL_DST`, `IP6T_SO_ORIGINAL_DST`); `None` when the connection was not redirected.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn original_destination(s: &TcpStream) -> Option<SocketAddr> {
    let local = s.local_addr().ok()?;
    let sock = socket2::SockRef::from(s);
    let orig = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    let orig = orig.ok()?.as_socket()?;
    // Without a redirect, conntrack (when loaded) reports the connection's own destination:
    // this port. Connecting there would loop.
    (orig != local).then_some(orig)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn original_destination(_: &TcpStream) -> Option<SocketAddr> {
    None
}

/// The breaker and hit events for a TLS or QUIC decision (see [`crate::hits`]): a block the
/// breaker downgrades to a tag passes.
pub fn after_decision(
    store: &Store,
    a: &Active,
    d: Decision,
    sni: Option<&str>,
    source: Option<std::net::IpAddr>,
    now: u64,
) -> Decision {
    let (Some(h), Some(name)) = (store.hits(), sni) else {
        return d;
    };
    let action = h.gate(Plane::Web, d.action);
    if d.action != Action::Allow {
        let mut v = a.engine.check_domain(name.as_bytes(), now);
        v.action = action;
        let facts = crate::events::Facts {
            domain: Some(name.as_bytes()),
            ..Default::default()
        };
        h.hit(Plane::Web, &v, &a.engine, source, facts, "");
    }
    if action == d.action {
        d
    } else {
        Decision { action, pass: true }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn rfc8448_stream() -> Vec<u8> {
        // RFC 8448 §3 "Simple 1-RTT Handshake": the client's handshake record (record header
        // and the 196-byte ClientHello, SNI "server"), transcribed from the RFC.
        let hex = "16030100c4010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d99\
                   12ec18a2ef6283024dece7000006130113031302010000910000000b00090000\
                   06736572766572ff01000100000a00140012001d001700180019010001010102\
                   0103010400230000003300260024001d002099381de560e4bd43d23d8e435a7d\
                   bafeb3c06e51c13cae4d5413691e529aaf2c002b0003020304000d0020001e04\
                   0305030603020308040805080604010501060102010402050206020202002d00\
                   020101001c00024001";
        let d: Vec<u8> = hex
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| (c as char).to_digit(16).unwrap() as u8)
            .collect();
        d.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    /// A hello built by this test (not by the parser) for `name`.
    fn hello_for(name: Option<&str>, ech: bool) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(n) = name {
            let n = n.as_bytes();
            let list_len = n.len() + 3;
            exts.extend([0, 0]);
            exts.extend(((list_len + 2) as u16).to_be_bytes());
            exts.extend((list_len as u16).to_be_bytes());
            exts.push(0);
            exts.extend((n.len() as u16).to_be_bytes());
            exts.extend(n);
        }
        if ech {
            exts.extend([0xfe, 0x0d, 0, 5, 0, 0, 1, 0, 1]);
        }
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.push(0);
        body.extend([0, 2, 0x13, 0x01, 1, 0]);
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut msg = vec![1, 0];
        msg.extend((body.len() as u16).to_be_bytes());
        msg.extend(body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend((msg.len() as u16).to_be_bytes());
        rec.extend(msg);
        rec
    }

    fn info_of(stream: &[u8]) -> HelloInfo {
        HelloReader::new().feed(stream).unwrap().unwrap()
    }

    fn active() -> Store {
        Store::new(crate::examples::engine(0).unwrap(), 0)
    }

    #[test]
    fn defaults_are_off_and_valid() {
        let c = SniConfig::default();
        assert!(!c.enabled);
        c.validate().unwrap();
        let on = SniConfig {
            enabled: true,
            upstream: "127.0.0.1:443".into(),
            ..SniConfig::default()
        };
        on.validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = SniConfig {
            enabled: true,
            upstream: "127.0.0.1:443".into(),
            ..SniConfig::default()
        };
        let key_of = |c: SniConfig| c.validate().unwrap_err().key;
        assert_eq!(
            key_of(SniConfig {
                upstream: String::new(),
                ..base.clone()
            }),
            "web.tls.upstream"
        );
        assert_eq!(
            key_of(SniConfig {
                original_destination: true,
                ..base.clone()
            }),
            "web.tls.upstream"
        );
        assert_eq!(
            key_of(SniConfig {
                upstream: "127.0.0.1:8443".into(),
                ..base.clone()
            }),
            "web.tls.upstream",
            "a loop to itself"
        );
        assert_eq!(
            key_of(SniConfig {
                listen: "nowhere".into(),
                ..base.clone()
            }),
            "web.tls.listen"
        );
        assert_eq!(
            key_of(SniConfig {
                hello_timeout_ms: 0,
                ..base.clone()
            }),
            "web.tls.hello_timeout_ms"
        );
        assert_eq!(
            key_of(SniConfig {
                max_connections: 0,
                ..base.clone()
            }),
            "web.tls.max_connections"
        );
        assert_eq!(
            key_of(SniConfig {
                idle_timeout_secs: 0,
                ..base.clone()
            }),
            "web.tls.idle_timeout_secs"
        );
        let e = SniConfig {
            connect_timeout_ms: 70_000,
            ..base
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.key, "web.tls.connect_timeout_ms");
        assert!(e.reason.contains("70000"), "{e}");
    }

    #[test]
    fn toml_keys_and_unknown_keys() {
        let c: SniConfig = toml::from_str(
            "enabled = true\nupstream = \"10.0.0.1:443\"\nblock_with = \"reset\"\n\
             alert = \"unrecognized_name\"\nno_sni = \"block\"\nwarn = \"block\"\n",
        )
        .unwrap();
        assert_eq!(c.block_with, BlockWith::Reset);
        assert_eq!(c.alert, BlockAlert::UnrecognizedName);
        assert_eq!((c.no_sni, c.warn), (Fallback::Block, Fallback::Block));
        assert_eq!(c.hello_timeout_ms, 5000, "defaults fill the rest");
        c.validate().unwrap();
        assert!(toml::from_str::<SniConfig>("upsteam = \"x\"").is_err());
        assert!(toml::from_str::<SniConfig>("block_with = \"drop\"").is_err());
    }

    #[test]
    fn decisions_follow_the_engine_and_the_fallbacks() {
        let s = active();
        let a = s.load();
        let d = |name: Option<&str>, ech: bool, no_sni, warn| {
            decide(&a, &info_of(&hello_for(name, ech)), no_sni, warn, 0)
        };
        let allow = Fallback::Allow;
        let block = Fallback::Block;
        let blocked = d(Some("login.evil.example"), false, allow, allow);
        assert_eq!((blocked.action, blocked.pass), (Action::Block, false));
        let clean = d(Some("www.notevil.example"), false, block, block);
        assert_eq!((clean.action, clean.pass), (Action::Allow, true));
        // ECH: the outer name decides, both ways.
        assert!(!d(Some("evil.example"), true, allow, allow).pass);
        assert!(d(Some("cdn.provider.example"), true, allow, allow).pass);
        // No name: the fallback.
        assert!(d(None, false, allow, allow).pass);
        let nb = d(None, false, block, allow);
        assert_eq!((nb.action, nb.pass), (Action::Block, false));
        // Every decision was counted in the store for the web plane.
        drop(a);
        let web: u64 = s
            .hit_totals()
            .iter()
            .filter(|(p, ..)| *p == Plane::Web)
            .map(|t| t.3)
            .sum();
        assert_eq!(web, 6);
        assert!(s
            .hit_totals()
            .iter()
            .any(|(p, act, cat, n)| *p == Plane::Web
                && *act == "block"
                && cat == "phishing"
                && *n == 2));
    }

    #[tokio::test]
    async fn hello_is_read_across_pieces_and_kept_verbatim() {
        let stream = rfc8448_stream();
        let (mut tx, mut rx) = tokio::io::duplex(64);
        let far = Instant::now() + Duration::from_secs(30);
        let mut extra = stream.clone();
        extra.extend(b"early");
        let writer = tokio::spawn(async move {
            for piece in extra.chunks(7) {
                tx.write_all(piece).await.unwrap();
            }
            tx
        });
        let (info, raw) = read_hello(&mut rx, far).await.unwrap();
        let _tx = writer.await.unwrap();
        assert_eq!(info.sni(), Some("server"));
        assert!(
            raw.starts_with(&stream),
            "every byte read is kept, in order"
        );
        assert!(raw.len() <= stream.len() + 5);
    }

    #[tokio::test]
    async fn refusals_by_reason() {
        let far = Instant::now() + Duration::from_secs(30);
        let r = |bytes: &'static [u8]| async move { read_hello(&mut &bytes[..], far).await };
        assert_eq!(r(b"GET / HTTP/1.1\r\n").await.unwrap_err(), Refusal::NotTls);
        assert_eq!(
            r(&[0x15, 3, 3, 0, 2, 2, 40]).await.unwrap_err(),
            Refusal::NotClientHello
        );
        assert_eq!(
            r(&[0x16, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff])
                .await
                .unwrap_err(),
            Refusal::TooLarge
        );
        assert_eq!(
            r(&[0x16, 3, 1, 0, 0]).await.unwrap_err(),
            Refusal::Malformed
        );
        assert_eq!(r(&[0x16, 3, 1]).await.unwrap_err(), Refusal::ClientClosed);
        let ip = hello_for(Some("192.0.2.1"), false);
        assert_eq!(
            read_hello(&mut &ip[..], far).await.unwrap_err(),
            Refusal::BadSni
        );
        // A stream that never completes: the deadline ends it.
        let (_tx, mut rx) = tokio::io::duplex(64);
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            read_hello(&mut rx, soon).await.unwrap_err(),
            Refusal::HelloTimeout
        );
    }

    /// A valid ClientHello handshake message of exactly `total` bytes, filled by a padding
    /// extension (RFC 7685).
    fn padded_hello(total: usize) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
        let pad = total - 4 - body.len() - 2 - 4;
        body.extend(((pad + 4) as u16).to_be_bytes());
        body.extend([0, 21]);
        body.extend((pad as u16).to_be_bytes());
        body.resize(body.len() + pad, 0);
        let mut msg = vec![1, 0];
        msg.extend((body.len() as u16).to_be_bytes());
        msg.extend(body);
        msg
    }

    /// The message cut into one-byte handshake records: six raw bytes per byte.
    fn one_byte_records(msg: &[u8]) -> Vec<u8> {
        msg.iter().flat_map(|b| [0x16, 3, 1, 0, 1, *b]).collect()
    }

    #[tokio::test]
    async fn tiny_records_beyond_the_raw_bound_are_refused() {
        let far = Instant::now() + Duration::from_secs(30);
        // 2 000 bytes of hello in 12 000 raw bytes: read.
        let small = padded_hello(2000);
        let (info, raw) = read_hello(&mut &one_byte_records(&small)[..], far)
            .await
            .unwrap();
        assert_eq!((info.sni(), raw.len()), (None, 12_000));
        // 6 000 bytes in 36 000 raw bytes, beyond MAX_RAW: refused, although whole it is fine.
        let big = padded_hello(6000);
        let mut whole = vec![0x16, 3, 1, 0x17, 0x70];
        whole.extend(&big);
        assert!(HelloReader::new().feed(&whole).unwrap().is_some());
        let r = read_hello(&mut &one_byte_records(&big)[..], far).await;
        assert!(
            matches!(r, Err(Refusal::TooLarge)),
            "not refused as too large"
        );
    }

    #[test]
    fn metrics_register_and_count() {
        let m = SniMetrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        m.refuse(Refusal::NotTls);
        m.refuse(Refusal::NotTls);
        m.verdicts.count(Action::Block);
        assert_eq!(m.refused(Refusal::NotTls), 2);
        assert_eq!(m.refused(Refusal::Blocked), 0);
        assert_eq!(m.verdicts.get(Action::Block), 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("web_tls_refused_total{reason=\"not_tls\"} 2"),
            "{text}"
        );
        assert!(text.contains("web_tls_verdicts_total{action=\"block\"} 1"));
        for r in Refusal::ALL {
            assert!(text.contains(&format!("reason=\"{}\"", r.label())));
        }
    }
}
